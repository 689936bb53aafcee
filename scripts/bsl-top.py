#!/usr/bin/env python3
"""buddyslab top: a live view of a running process's allocator, like slabtop and /proc/buddyinfo.

usage: buddyslab top PID [--interval SECONDS] [--count N] [--once] [--bytes]
       buddyslab top            (lists the processes that publish their statistics)

The process must publish its statistics page, /dev/shm/buddyslab.PID: start it with
`buddyslab run --top -- PROGRAM` or BUDDYSLAB_OPTIONS=publish=1. The page is readable by the same
user only (mode 0600). While we watch, the process refreshes it about ten times a second; when
nobody watches it is not written at all.

  --interval S   seconds between refreshes (default 1; at least 0.1)
  --count N      stop after N refreshes (default: until q or Ctrl-C)
  --once         one refresh, printed without clearing the screen (same as --count 1)
  --bytes        exact byte counts instead of KiB/MiB/GiB

A History section draws reserved, resident, live (allocated) and dirty-free memory over the last
refreshes (up to 240), one character per refresh. On a terminal the screen is redrawn at every
refresh (q or Ctrl-C quits). Otherwise each refresh
is printed as one block of lines that ends with an empty line, for scripts and logs.

Exit status: 0 after the last refresh or when the process exits, 1 when the process cannot be
watched (not running, not publishing, another user's, not a buddyslab page), 2 for a usage error.
The page's layout and protocol are in include/buddyslab_shm.h: `--layout` prints the offsets
this script uses (the tests compare them with the C structure).
"""
import collections
import errno
import fcntl
import glob
import mmap
import os
import select
import shutil
import signal
import struct
import subprocess
import sys
import time


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bsltools.py: beside us (python3 -I)
from bsltools import flag_value, human  # noqa: E402
import bsltools  # noqa: E402

PROG = "buddyslab top"
USAGE = "usage: buddyslab top PID [--interval SECONDS] [--count N] [--once] [--bytes]"
SHM_DIR = "/dev/shm"
SHM_PREFIX = "buddyslab."

# ---- include/buddyslab_shm.h ------------------------------------------------------------------
# struct bsl_shm_page, field by field (little-endian x86-64/aarch64 natural alignment; no padding
# is needed anywhere in this layout). Keep in step with the header: the 'layout' test checks it.
SHM_MAGIC = 0x42534C53484D3031  # "BSLSHM01"
SHM_VERSION = 4
SHM_BUDGETS = 16
SHM_BUDGET_NAME = 56
SHM_ZONES = 2     # LOW32, NORMAL
SHM_ORDERS = 11   # orders 0..10
SHM_CLASSES = 64
SHM_SITES = 16
SHM_SITE_FRAMES = 8
ZONE_NAMES = ("LOW32", "NORMAL")
PAGE_SIZE = 4096

HEADER_FIELDS = [  # (name, struct code)
    ("magic", "Q"), ("version", "I"), ("pid", "I"), ("seq", "Q"), ("watchers", "Q"),
    ("updated_ms", "Q"), ("updates", "Q"), ("rseq", "I"), ("shards", "I"),
    ("reserved", "Q"), ("committed", "Q"), ("allocated", "Q"), ("slab_bytes", "Q"),
    ("large_bytes", "Q"), ("huge_bytes", "Q"), ("free_dirty", "Q"), ("free_clean", "Q"),
    ("purged_total", "Q"), ("cached", "Q"), ("rss", "Q"),
]
CLASS_FIELDS = [("size", "I"), ("order", "I"), ("inuse", "Q"), ("slabs", "Q"), ("objs_per_slab", "Q"),
                ("refills", "Q"), ("drains", "Q")]

OOM_FIELDS = [("soft_limit", "Q"), ("hard_limit", "Q"), ("oom_events", "Q"), ("oom_reclaims", "Q"),
              ("oom_reports", "Q"), ("oom_failed", "Q"), ("oom_tracking", "I"), ("nbudgets", "I")]
BUDGET_FIELDS = [("name", "%ds" % SHM_BUDGET_NAME), ("budget", "Q"), ("live", "Q"), ("failed", "Q")]
TRACK_FIELDS = [("track_mode", "I"), ("nsites", "I"), ("sample_bytes", "Q"), ("track_nsites", "Q")]
SITE_FIELDS = [("idx", "I"), ("nframes", "I"), ("live", "q"), ("mblocks", "q"), ("allocs", "Q"),
               ("frames", "%dQ" % SHM_SITE_FRAMES)]

HEADER = struct.Struct("<" + "".join(c for _, c in HEADER_FIELDS))
NR_FREE = struct.Struct("<%dQ" % (SHM_ZONES * SHM_ORDERS))
CLASS = struct.Struct("<" + "".join(c for _, c in CLASS_FIELDS))
OOM = struct.Struct("<" + "".join(c for _, c in OOM_FIELDS))
BUDGET = struct.Struct("<" + "".join(c for _, c in BUDGET_FIELDS))
OFF_NR_FREE = HEADER.size
OFF_CLASSES = OFF_NR_FREE + NR_FREE.size
OFF_OOM = OFF_CLASSES + SHM_CLASSES * CLASS.size
OFF_BUDGETS = OFF_OOM + OOM.size
TRACK = struct.Struct("<" + "".join(c for _, c in TRACK_FIELDS))
SITE = struct.Struct("<" + "".join(c for _, c in SITE_FIELDS))
OFF_TRACK = OFF_BUDGETS + SHM_BUDGETS * BUDGET.size
OFF_SITES = OFF_TRACK + TRACK.size
PAGE_BYTES = OFF_SITES + SHM_SITES * SITE.size


def offsets(fields, base=0):
    """(name, offset) of each field of a packed struct starting at base."""
    out, off = [], base
    for n, c in fields:
        out.append((n, off))
        off += struct.calcsize("<" + c)
    return out


def field_offset(name):
    return dict(offsets(HEADER_FIELDS))[name]


OFF_SEQ = field_offset("seq")
OFF_WATCHERS = field_offset("watchers")
OFF_UPDATES = field_offset("updates")


def print_layout():
    """The offsets used here, in the format the tools test compares with offsetof()."""
    def fields(fs, base=0, prefix=""):
        for n, off in offsets(fs, base):
            print("%s%s %d" % (prefix, n, off))
    fields(HEADER_FIELDS)
    print("nr_free %d" % OFF_NR_FREE)
    print("classes %d" % OFF_CLASSES)
    fields(CLASS_FIELDS, prefix="class.")
    print("sizeof_class %d" % CLASS.size)
    fields(OOM_FIELDS, OFF_OOM)
    print("budgets %d" % OFF_BUDGETS)
    fields(BUDGET_FIELDS, prefix="budget.")
    print("sizeof_budget %d" % BUDGET.size)
    fields(TRACK_FIELDS, OFF_TRACK)
    print("sites %d" % OFF_SITES)
    fields(SITE_FIELDS, prefix="site.")
    print("sizeof_site %d" % SITE.size)
    print("sizeof_page %d" % PAGE_BYTES)
    print("magic_value %#x" % SHM_MAGIC)
    print("version_value %d" % SHM_VERSION)
    print("zones %d orders %d classes %d budgets %d sites %d frames %d" % (SHM_ZONES, SHM_ORDERS, SHM_CLASSES,
                                                                        SHM_BUDGETS, SHM_SITES, SHM_SITE_FRAMES))


def decode(buf):
    page = dict(zip([n for n, _ in HEADER_FIELDS], HEADER.unpack_from(buf, 0)))
    flat = NR_FREE.unpack_from(buf, OFF_NR_FREE)
    page["nr_free"] = [list(flat[z * SHM_ORDERS:(z + 1) * SHM_ORDERS]) for z in range(SHM_ZONES)]
    names = [n for n, _ in CLASS_FIELDS]
    page["classes"] = [dict(zip(names, CLASS.unpack_from(buf, OFF_CLASSES + i * CLASS.size)))
                       for i in range(SHM_CLASSES)]
    page.update(zip([n for n, _ in OOM_FIELDS], OOM.unpack_from(buf, OFF_OOM)))
    names = [n for n, _ in BUDGET_FIELDS]
    page["budgets"] = []
    for i in range(min(page["nbudgets"], SHM_BUDGETS)):
        b = dict(zip(names, BUDGET.unpack_from(buf, OFF_BUDGETS + i * BUDGET.size)))
        b["name"] = b["name"].split(b"\0", 1)[0].decode(errors="replace")
        page["budgets"].append(b)
    page.update(zip([n for n, _ in TRACK_FIELDS], TRACK.unpack_from(buf, OFF_TRACK)))
    page["sites"] = []
    for i in range(min(page["nsites"], SHM_SITES)):
        v = SITE.unpack_from(buf, OFF_SITES + i * SITE.size)
        st = {"idx": v[0], "nframes": v[1], "live": v[2], "blocks": v[3] / 1000.0, "allocs": v[4]}
        st["frames"] = list(v[5:5 + min(v[1], SHM_SITE_FRAMES)])
        page["sites"].append(st)
    return page


# ---- errors -------------------------------------------------------------------------------------
class Unwatchable(Exception):
    """The process cannot be watched; the message says why and what to do."""


def comm_of(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def process_state(pid):
    """'alive', 'gone' or 'other-user' (alive, but we may not signal it)."""
    try:
        os.kill(pid, 0)
        return "alive"
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        return "other-user"


def maps_buddyslab(pid):
    """True/False when /proc/PID/maps says whether libbuddyslab is loaded, None when unreadable."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return any("buddyslab" in line for line in f)
    except OSError:
        return None


def launcher_children(pid):
    """The children of pid when it is the supervisor of `buddyslab run` (bsl-cli.py), else []."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
        if not any(a.endswith(b"bsl-cli.py") for a in argv):
            return []
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


HOW_TO_PUBLISH = ("start it with `buddyslab run --top -- PROGRAM ARGS...` or with "
                  "BUDDYSLAB_OPTIONS=publish=1 in its environment")


def user_name(uid):
    try:
        import pwd
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except (ImportError, KeyError):
        return "uid %d" % uid


def explain_missing(pid, path):
    state = process_state(pid)
    if state == "gone":
        return "no process with pid %d is running" % pid
    name = comm_of(pid) or "?"
    if state == "other-user":
        return ("process %d (%s) belongs to another user, and %s does not exist: buddyslab top "
                "watches only processes of the same user" % (pid, name, path))
    children = launcher_children(pid)
    if children:
        return ("process %d is the `buddyslab run` launcher, not the program it runs: watch the program, "
                "pid %s" % (pid, " or ".join(str(c) for c in children)))
    loaded = maps_buddyslab(pid)
    if loaded is False:
        return ("process %d (%s) does not run buddyslab (libbuddyslab.so is not in /proc/%d/maps), "
                "so it publishes no statistics: %s" % (pid, name, pid, HOW_TO_PUBLISH))
    return ("process %d (%s) does not publish its statistics (no %s): %s"
            % (pid, name, path, HOW_TO_PUBLISH))


# ---- the shared page ----------------------------------------------------------------------------
class Watch:
    """The mapped page of one process, with our watcher count held on it."""

    def __init__(self, pid):
        self.pid = pid
        self.path = os.path.join(SHM_DIR, "%s%d" % (SHM_PREFIX, pid))
        self.attached = False
        self.fd = -1
        self.mm = None
        self._atomic = None
        self._cell = None
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise Unwatchable(explain_missing(pid, self.path))
        except PermissionError:
            try:
                owner = user_name(os.stat(self.path).st_uid)
            except OSError:
                owner = "another user"
            raise Unwatchable("permission denied opening %s: it belongs to %s and is readable by its owner "
                              "only (mode 0600); buddyslab top watches only processes of the same user "
                              "(run it as that user)" % (self.path, owner))
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Unwatchable("%s is a symbolic link, not a buddyslab statistics page; refusing it" % self.path)
            raise Unwatchable("cannot open %s: %s" % (self.path, e.strerror))
        st = os.fstat(self.fd)
        if st.st_size < PAGE_BYTES:
            os.close(self.fd)
            raise Unwatchable("%s is %d bytes, too small for a buddyslab statistics page (%d bytes); "
                              "is it from another program?" % (self.path, st.st_size, PAGE_BYTES))
        self.mm = mmap.mmap(self.fd, PAGE_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        magic, version, ppid = struct.unpack_from("<QII", self.mm, 0)
        if magic != SHM_MAGIC:
            self.close()
            if magic == 0:
                raise Unwatchable("%s is not initialised yet (the process is starting); try again" % self.path)
            raise Unwatchable("%s is not a buddyslab statistics page (bad magic %#x)" % (self.path, magic))
        if version != SHM_VERSION:
            self.close()
            raise Unwatchable("%s has layout version %d; this buddyslab top reads version %d: use the "
                              "buddyslab launcher that matches the library the process runs"
                              % (self.path, version, SHM_VERSION))
        if ppid != pid:
            self.close()
            raise Unwatchable("%s says it belongs to pid %d, not %d (left over from an earlier process?)"
                              % (self.path, ppid, pid))
        if process_state(pid) == "gone":
            self.close()
            raise Unwatchable("process %d is not running; %s was left behind (the process was killed "
                              "before it could remove it): remove it with rm" % (pid, self.path))
        self._setup_atomic()

    # Watcher count: the process reads it to decide whether to refresh the page. Atomic with
    # libatomic when it is installed (so that C watchers and we agree); otherwise under an
    # flock of the file, which serialises all the Python watchers.
    def _setup_atomic(self):
        try:
            import ctypes
            import ctypes.util
            name = ctypes.util.find_library("atomic") or "libatomic.so.1"
            lib = ctypes.CDLL(name)
            lib.__atomic_fetch_add_8.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int]
            lib.__atomic_fetch_add_8.restype = ctypes.c_uint64
            lib.__atomic_compare_exchange_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                                                        ctypes.c_int, ctypes.c_int]
            lib.__atomic_compare_exchange_8.restype = ctypes.c_bool
            self._cell = ctypes.c_uint64.from_buffer(self.mm, OFF_WATCHERS)
            self._atomic = (ctypes, lib)
        except (ImportError, OSError, AttributeError):
            self._cell = None
            self._atomic = None

    def _add(self, delta):
        """Add delta (+1 or -1) to watchers; a decrement never goes below zero."""
        if self._atomic:
            ctypes, lib = self._atomic
            addr = ctypes.addressof(self._cell)
            if delta > 0:
                lib.__atomic_fetch_add_8(addr, delta, 5)
                return
            expected = ctypes.c_uint64(self._cell.value)
            while expected.value > 0:
                if lib.__atomic_compare_exchange_8(addr, ctypes.byref(expected), expected.value - 1, 5, 5):
                    return
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            (v,) = struct.unpack_from("<Q", self.mm, OFF_WATCHERS)
            v = v + delta if v + delta >= 0 else 0
            struct.pack_into("<Q", self.mm, OFF_WATCHERS, v)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def attach(self):
        if not self.attached:
            self._add(1)
            self.attached = True

    def detach(self):
        if self.attached:
            self.attached = False
            self._add(-1)

    def updates(self):
        return struct.unpack_from("<Q", self.mm, OFF_UPDATES)[0]

    def read(self):
        """A consistent copy of the page (seqlock), decoded."""
        for attempt in range(10000):
            s1 = struct.unpack_from("<Q", self.mm, OFF_SEQ)[0]
            if s1 & 1:
                time.sleep(0.0005 if attempt > 10 else 0)
                continue
            buf = self.mm[:PAGE_BYTES]
            s2 = struct.unpack_from("<Q", self.mm, OFF_SEQ)[0]
            if s1 == s2 and struct.unpack_from("<Q", buf, OFF_SEQ)[0] == s1:
                return decode(buf)
        raise Unwatchable("%s: the page is being rewritten all the time; cannot get a consistent copy" % self.path)

    def close(self):
        try:
            self.detach()
        finally:
            self._cell = None  # releases the buffer export, so that the mmap can close
            if self.mm is not None:
                try:
                    self.mm.close()
                except BufferError:
                    pass
                self.mm = None
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1


# ---- rendering ----------------------------------------------------------------------------------


SPARKS = "\u2581\u2582\u2583\u2584\u2585\u2586\u2587\u2588"
HISTORY = (("reserved", "reserved"), ("resident", "rss"), ("live", "allocated"), ("dirty free", "free_dirty"))


def spark(values, top):
    """One character per value, scaled to 0 .. top."""
    if top <= 0:
        return SPARKS[0] * len(values)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v * len(SPARKS) / (top + 1)))] for v in values)


def render_history(history, size, width):
    """Reserved, resident, live and free-dirty memory over the last refreshes, one line each, all on
    the scale of the largest reserved figure seen (oldest on the left)."""
    width = max(8, width)
    h = list(history)[-width:]
    top = max(max(s[f] for s in h) for _, f in HISTORY)
    out = ["History (last %d refreshes, oldest left; scale 0 .. %s)" % (len(h), size(top))]
    for label, f in HISTORY:
        vals = [s[f] for s in h]
        out.append("  %-10s %s  now %s, max %s" % (label, spark(vals, top).ljust(width), size(vals[-1]),
                                                 size(max(vals))))
    return out


def render(page, pid, name, refresh, count, now_ms, exact, max_rows=None, history=None, width=60):
    size = (lambda n: str(n)) if exact else human
    out = []
    age = now_ms - page["updated_ms"] if page["updated_ms"] else None
    age_s = ("updated %d ms ago" % age) if age is not None and age >= 0 else "never updated"
    if age is not None and age > 2000:
        age_s += " (stale: is the process stopped?)"
    front = "rseq per-CPU caches" if page["rseq"] else "per-thread caches"
    out.append("buddyslab top - pid %d (%s)  refresh %d%s  page %s, update #%d"
               % (pid, name, refresh, "/%d" % count if count else "", age_s, page["updates"]))
    out.append("")
    out.append("Memory (%s, %d buddy shards per zone)" % (front, page["shards"]))
    rows = [
        [("reserved", page["reserved"]), ("committed", page["committed"]), ("allocated", page["allocated"]),
         ("RSS", page["rss"])],
        [("slab", page["slab_bytes"]), ("large", page["large_bytes"]), ("huge", page["huge_bytes"]),
         ("cached", page["cached"])],
        [("free dirty", page["free_dirty"]), ("free clean", page["free_clean"]),
         ("purged", page["purged_total"])],
    ]
    for row in rows:
        out.append("  " + "".join(("%s %s" % (k, size(v))).ljust(26) for k, v in row).rstrip())
    out.append("")
    out.append("Buddy free blocks per order (order 0 = 4 KiB, like /proc/buddyinfo)")
    out.append("  %-7s" % "zone" + "".join("%7d" % o for o in range(SHM_ORDERS)) + "   %10s" % "free")
    for z in range(SHM_ZONES):
        nf = page["nr_free"][z]
        free = sum(n << o for o, n in enumerate(nf)) * PAGE_SIZE
        out.append("  %-7s" % ZONE_NAMES[z] + "".join("%7d" % n for n in nf) + "   %10s" % size(free))
    out.append("")
    classes = [c for c in page["classes"] if c["slabs"] or c["refills"] or c["inuse"]]
    for c in classes:
        c["mem"] = c["slabs"] * (PAGE_SIZE << c["order"])
        c["objs"] = c["slabs"] * c["objs_per_slab"]
    classes.sort(key=lambda c: (-c["mem"], -c["inuse"], c["size"]))
    total_mem = sum(c["mem"] for c in classes)
    out.append("Size classes by memory (%d active, %s in slabs; INUSE includes cached objects)"
               % (len(classes), size(total_mem)))
    out.append("  %7s %10s %10s %5s %8s %5s %11s %10s %10s" % ("SIZE", "INUSE", "OBJS", "USE%", "SLABS", "ORDER",
                                                             "MEMORY", "REFILLS", "DRAINS"))
    shown = classes if max_rows is None else classes[:max(0, max_rows)]
    for c in shown:
        use = "%d%%" % (c["inuse"] * 100 // c["objs"]) if c["objs"] else "-"
        out.append("  %7d %10d %10d %5s %8d %5d %11s %10d %10d" % (c["size"], c["inuse"], c["objs"], use, c["slabs"],
                                                                   c["order"], size(c["mem"]), c["refills"],
                                                                   c["drains"]))
    if len(shown) < len(classes):
        out.append("  ... %d more (a taller terminal shows them)" % (len(classes) - len(shown)))
    if page["soft_limit"] or page["hard_limit"] or page["budgets"]:
        track = {0: "off", 1: "every allocation", 2: "sampled"}.get(page["oom_tracking"], "?")
        out.append("")
        out.append("Soft OOM (soft limit %s, hard limit %s; tracking %s)  events %d  reclaims %d  reports %d  "
                   "refused %d" % (size(page["soft_limit"]) if page["soft_limit"] else "none",
                                   size(page["hard_limit"]) if page["hard_limit"] else "none", track,
                                   page["oom_events"], page["oom_reclaims"], page["oom_reports"], page["oom_failed"]))
        if page["budgets"]:
            out.append("  %-32s %12s %12s %5s %10s" % ("BUDGET", "LIVE", "LIMIT", "USE%", "REFUSED"))
            for b in page["budgets"]:
                use = "%d%%" % (b["live"] * 100 // b["budget"]) if b["budget"] else "-"
                out.append("  %-32s %12s %12s %5s %10d" % (b["name"][:32], size(b["live"]),
                                                          size(b["budget"]) if b["budget"] else "none", use,
                                                          b["failed"]))
    if page.get("track_mode"):
        out.append("")
        out += render_sites(page, pid, size, now_ms, max_rows)
    if history:
        out.append("")
        out += render_history(history, size, width)
    return out


# ---- allocation sites ---------------------------------------------------------------------------
class Symbolizer:
    """Return addresses of a live process -> "function (file:line)", through /proc/PID/maps and
    addr2line (binutils); "module+0xoffset" where addr2line or the symbol is missing."""

    def __init__(self, pid):
        self.pid, self.maps, self.cache, self.etype = pid, [], {}, {}
        self.addr2line = shutil.which("addr2line")
        self.reload()

    def reload(self):
        maps = []
        try:
            with open("/proc/%d/maps" % self.pid) as f:
                for line in f:
                    p = line.split(None, 5)
                    if len(p) < 6 or not p[5].strip().startswith("/"):
                        continue
                    lo, hi = (int(x, 16) for x in p[0].split("-"))
                    maps.append((lo, hi, int(p[2], 16), p[5].strip()))
        except OSError:
            pass
        self.maps = maps
        self.base = {}
        for lo, hi, off, path in maps:
            if off == 0 and path not in self.base:
                self.base[path] = lo

    def module(self, addr):
        for lo, hi, off, path in self.maps:
            if lo <= addr < hi:
                return path
        return None

    def elf_addr(self, path, addr):
        """The address as the ELF file names it: unchanged for a fixed executable (ET_EXEC),
        relative to the load base for PIE programs and shared objects (ET_DYN)."""
        if path not in self.etype:
            try:
                with open(path, "rb") as f:
                    hdr = f.read(18)
                self.etype[path] = struct.unpack_from("<H", hdr, 16)[0] if hdr[:4] == b"\x7fELF" else 0
            except OSError:
                self.etype[path] = 0
        return addr if self.etype[path] == 2 else addr - self.base.get(path, 0)

    def names(self, addrs):
        """{addr: (function or None, "file:line" or None, module)} for return addresses."""
        want = {}
        for a in addrs:
            if a in self.cache:
                continue
            path = self.module(a)
            if path is None:
                self.cache[a] = (None, None, None)
                continue
            want.setdefault(path, []).append(a)
        for path, lst in want.items():
            res = {}
            if self.addr2line and os.path.exists(path):
                # a return address points after the call: look up the call (addr - 1)
                args = ["%#x" % (self.elf_addr(path, a) - 1) for a in lst]
                try:
                    p = subprocess.run([self.addr2line, "-f", "-C", "-e", path] + args, capture_output=True,
                                       text=True, timeout=10)
                    lines = p.stdout.split("\n")
                    for i, a in enumerate(lst):
                        fn, loc = lines[2 * i:2 * i + 2] if len(lines) >= 2 * i + 2 else ("??", "??:0")
                        fn = None if fn.startswith("??") else fn
                        loc = None if loc.startswith("??") else os.path.basename(loc.split(" ")[0])
                        res[a] = (fn, loc)
                except (OSError, subprocess.SubprocessError):
                    pass
            for a in lst:
                fn, loc = res.get(a, (None, None))
                self.cache[a] = (fn, loc, path)
        return {a: self.cache[a] for a in addrs}

    def describe(self, addr):
        fn, loc, path = self.names([addr])[addr]
        if fn:
            return fn + (" (%s)" % loc if loc else "")
        if path:
            return "%s+%#x" % (os.path.basename(path), self.elf_addr(path, addr))
        return "%#x" % addr


_symbolizers = {}
_site_prev = {}  # pid -> (time ms, {site idx: live bytes}) of the previous refresh


def site_label(sym, frames):
    """The first frame outside buddyslab and the C library's allocation wrappers, then its caller."""
    info = sym.names(frames)
    shown = []
    for a in frames:
        fn, loc, path = info[a]
        base = os.path.basename(path or "")
        if base.startswith("libbuddyslab") or (fn or "").startswith(("bsl_", "__libc_", "operator new")):
            continue
        shown.append(sym.describe(a))
        if len(shown) == 2:
            break
    return " < ".join(shown) if shown else (sym.describe(frames[0]) if frames else "[no stack]")


def render_sites(page, pid, size, now_ms, max_rows):
    sym = _symbolizers.get(pid)
    if sym is None:
        sym = _symbolizers[pid] = Symbolizer(pid)
    elif any(sym.module(a) is None for s in page["sites"] for a in s["frames"][:1]):
        sym.reload()  # a library loaded since
    sampled = page["track_mode"] == 2
    how = ("sampled, about one allocation per %s: live figures are estimates" % human(page["sample_bytes"])
           if sampled else "every allocation")
    out = ["Top allocation sites by live bytes (tracking %s; %d sites)" % (how, page["track_nsites"])]
    if not page["sites"]:
        out.append("  (no live tracked block yet)")
        return out
    prev_t, prev = _site_prev.get(pid, (None, {}))
    dt = (now_ms - prev_t) / 1000.0 if prev_t is not None and now_ms > prev_t else None
    out.append("  %12s %10s %12s %12s  %s" % ("LIVE", "BLOCKS", "ALLOCS", "GROWTH/s", "SITE (function < caller)"))
    shown = page["sites"] if max_rows is None else page["sites"][:max(1, max_rows)]
    for st in shown:
        growth = "-"
        if dt and st["idx"] in prev:
            g = (st["live"] - prev[st["idx"]]) / dt
            growth = ("+" if g >= 0 else "-") + size(int(abs(g)))
        blocks = ("%.0f" % st["blocks"]) if not sampled else ("~%.0f" % st["blocks"])
        out.append("  %12s %10s %12d %12s  %s" % (size(st["live"]), blocks, st["allocs"], growth,
                                                   site_label(sym, st["frames"])))
    _site_prev[pid] = (now_ms, {st["idx"]: st["live"] for st in page["sites"]})
    return out


# ---- listing ------------------------------------------------------------------------------------
def list_published():
    rows = []
    for path in sorted(glob.glob(os.path.join(SHM_DIR, SHM_PREFIX + "*"))):
        tail = path[len(os.path.join(SHM_DIR, SHM_PREFIX)):]
        if not tail.isdigit():
            continue
        pid = int(tail)
        state = process_state(pid)
        try:
            mine = os.stat(path).st_uid == os.geteuid()
        except OSError:
            continue
        if state == "gone":
            note = "not running (stale file)"
        elif not mine:
            note = "another user's"
        else:
            note = ""
        rows.append((pid, comm_of(pid) or "?", note))
    return rows


# ---- main ---------------------------------------------------------------------------------------
def usage_error(msg):
    bsltools.usage_error(PROG, USAGE, msg)


def parse_args(argv):
    pid = None
    interval, count, exact = 1.0, None, False
    once = False
    i = 0

    def value(i):
        return flag_value(argv, i, usage_error)

    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            sys.exit(0)
        elif a == "--layout":
            print_layout()
            sys.exit(0)
        elif a == "--interval" or a.startswith("--interval=") or a == "-d":
            v, i = value(i)
            try:
                interval = float(v)
            except ValueError:
                usage_error("--interval: '%s' is not a number of seconds" % v)
            if not interval >= 0.1 or interval > 86400:
                usage_error("--interval: %s is out of range (0.1 .. 86400 seconds)" % v)
        elif a == "--count" or a.startswith("--count=") or a == "-n":
            v, i = value(i)
            if not v.isdigit() or int(v) < 1:
                usage_error("--count: '%s' is not a positive integer" % v)
            count = int(v)
        elif a == "--once":
            once = True
        elif a == "--bytes":
            exact = True
        elif a.startswith("-"):
            usage_error("unknown option: %s" % a)
        elif pid is None:
            if not a.isdigit() or int(a) <= 0:
                usage_error("'%s' is not a process id" % a)
            pid = int(a)
        else:
            usage_error("one process at a time (got '%s' after %d)" % (a, pid))
        i += 1
    if once:
        count = 1
    return pid, interval, count, exact, once


def main(argv):
    pid, interval, count, exact, once = parse_args(argv)
    if pid is None:
        rows = list_published()
        sys.stderr.write("%s: which process? give its pid\n%s\n" % (PROG, USAGE))
        if rows:
            sys.stderr.write("processes that publish their statistics:\n")
            for p, name, note in rows:
                sys.stderr.write("  %7d  %s%s\n" % (p, name, "  (%s)" % note if note else ""))
        else:
            sys.stderr.write("no process publishes its statistics now: %s\n" % HOW_TO_PUBLISH)
        return 2

    tty = sys.stdout.isatty() and not once
    try:
        w = Watch(pid)
    except Unwatchable as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 1

    # SIGTERM and SIGHUP end the loop through the same path as Ctrl-C, so that the watcher count
    # always goes back down.
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    name = comm_of(pid) or "?"
    term_saved = None
    stdin_fd = None
    try:
        if tty and sys.stdin.isatty():
            try:
                import termios
                import tty as ttymod
                stdin_fd = sys.stdin.fileno()
                term_saved = termios.tcgetattr(stdin_fd)
                ttymod.setcbreak(stdin_fd)
            except (ImportError, OSError):
                term_saved, stdin_fd = None, None
        u0 = w.updates()
        w.attach()
        # The process refreshes the page from its next tick (within ~100 ms) now that someone
        # watches; wait for that first fresh copy rather than show the one left from before.
        deadline = time.monotonic() + 1.5
        while w.updates() == u0 and time.monotonic() < deadline:
            time.sleep(0.02)
        if w.updates() == u0:
            sys.stderr.write("%s: process %d did not refresh its statistics page within 1.5 s (is it "
                             "stopped?); showing the last copy\n" % (PROG, pid))
        n = 0
        history = collections.deque(maxlen=240)
        while True:
            n += 1
            page = w.read()
            history.append({f: page[f] for _, f in HISTORY})
            now_ms = int(time.monotonic() * 1000)
            if tty:
                try:
                    cols, rows = os.get_terminal_size()
                except OSError:
                    cols, rows = 0, 0
                cols = cols if cols >= 40 else 200  # 0: a terminal that does not know its size
                rows = rows if rows >= 10 else 60
                lines = render(page, pid, name, n, count, now_ms, exact, max_rows=max(3, rows - 26),
                               history=history, width=min(120, cols - 40))
                lines = [line[:cols] for line in lines]
                sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines) + "\n" +
                                 ("(q or Ctrl-C quits)\n" if stdin_fd is not None else ""))
            else:
                lines = render(page, pid, name, n, count, now_ms, exact, history=history)
                sys.stdout.write("\n".join(lines) + "\n\n")
            sys.stdout.flush()
            if count is not None and n >= count:
                break
            # Sleep one interval, ending early on q.
            end = time.monotonic() + interval
            while True:
                left = end - time.monotonic()
                if left <= 0:
                    break
                if stdin_fd is not None:
                    r, _, _ = select.select([stdin_fd], [], [], left)
                    if r:
                        ch = os.read(stdin_fd, 1)
                        if ch in (b"q", b"Q", b""):
                            return 0
                else:
                    time.sleep(left)
            if process_state(pid) == "gone" or not os.path.exists(w.path):
                sys.stdout.write("%s: process %d exited\n" % (PROG, pid))
                sys.stdout.flush()
                return 0
        return 0
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Unwatchable as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 1
    finally:
        w.close()
        if term_saved is not None:
            import termios
            termios.tcsetattr(stdin_fd, termios.TCSADRAIN, term_saved)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

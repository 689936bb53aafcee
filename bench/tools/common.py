"""Shared pieces of bench/run and bench/run-macro: paths, allocators, building, running a child
process with its rusage, small statistics and formatting helpers."""

import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
LIBDIR = "/usr/lib/x86_64-linux-gnu"

# Order = the interleaving order of every repetition (A B C D E).
ALLOCATOR_ORDER = ["glibc", "jemalloc", "mimalloc", "tcmalloc", "buddyslab"]
SYSTEM_LIBS = {
    "jemalloc": os.path.join(LIBDIR, "libjemalloc.so.2"),
    "mimalloc": os.path.join(LIBDIR, "libmimalloc.so.2"),
    "tcmalloc": os.path.join(LIBDIR, "libtcmalloc_minimal.so.4"),
}
BASELINE = "jemalloc"


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# building


class Build:
    """Where the harness, the glibc shim and (maybe) libbuddyslab.so are."""

    def __init__(self, harness, shim, bsl_so, how):
        self.harness = harness
        self.shim = shim
        self.bsl_so = bsl_so
        self.how = how


def _run_quiet(cmd, cwd=None):
    """Run a build command; on failure show its tail. Returns True on success."""
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        tail = "\n".join(p.stdout.splitlines()[-25:])
        warn(f"`{' '.join(shlex.quote(c) for c in cmd)}` failed:\n{tail}")
        return False
    return True


def _meson_build(build_dir):
    """Configure (if needed) and compile the top-level project's bench targets into build_dir.
    Returns (harness, shim, bsl_so or None) or None when the top-level project does not build."""
    if not shutil.which("meson"):
        return None
    if not os.path.exists(os.path.join(build_dir, "build.ninja")):
        log(f"bench: meson setup {os.path.relpath(build_dir, REPO)} (top-level project, release)")
        ok = _run_quiet(["meson", "setup", build_dir, REPO, "--buildtype=release",
                         "-Dbench=true", "-Dtests=false"])
        if not ok:
            return None
    if not _run_quiet(["meson", "compile", "-C", build_dir, "bsl-bench", "bsl-glibc-shim",
                       "bsl-mstress", "bsl-large-churn", "bsl-tiny"]):
        return None
    harness = os.path.join(build_dir, "bench", "bsl-bench")
    shim = os.path.join(build_dir, "bench", "libbsl-glibc-shim.so")
    bsl = None
    if _run_quiet(["meson", "compile", "-C", build_dir, "buddyslab:shared_library"]):
        cand = os.path.join(build_dir, "libbuddyslab.so")
        if os.path.exists(cand):
            bsl = cand
    else:
        # never measure a stale library silently: fall back to build/ (or --buddyslab) instead
        warn(f"libbuddyslab.so does not build in {build_dir} (see above); not using the "
             "previous one there")
    return harness, shim, bsl


def _newest_mtime(paths):
    return max(os.path.getmtime(p) for p in paths)


def _standalone_build(out_dir):
    """Compile the harness without meson (used while the top-level project does not configure)."""
    os.makedirs(out_dir, exist_ok=True)
    cases = sorted(os.path.join(BENCH_DIR, "cases", f)
                   for f in os.listdir(os.path.join(BENCH_DIR, "cases")) if f.endswith(".c"))
    hdir = os.path.join(BENCH_DIR, "harness")
    c_srcs = cases + [os.path.join(hdir, "util.c")]
    cc_src = os.path.join(hdir, "bench_main.cc")
    headers = [os.path.join(hdir, h) for h in ("bench.h", "util.h")]
    harness = os.path.join(out_dir, "bsl-bench")
    shim_src = os.path.join(BENCH_DIR, "macro", "glibc_shim.c")
    shim = os.path.join(out_dir, "libbsl-glibc-shim.so")
    srcs = c_srcs + [cc_src] + headers
    if not (os.path.exists(harness) and os.path.getmtime(harness) >= _newest_mtime(srcs)):
        log(f"bench: compiling the harness standalone into {os.path.relpath(out_dir, REPO)}")
        pc = subprocess.run(["pkg-config", "--cflags", "--libs", "benchmark"],
                            stdout=subprocess.PIPE, text=True)
        bm_flags = pc.stdout.split() if pc.returncode == 0 else ["-lbenchmark"]
        cflags = ["-O2", "-g", "-std=gnu11", "-D_GNU_SOURCE", "-fno-builtin-malloc",
                  "-fno-builtin-calloc", "-fno-builtin-realloc", "-fno-builtin-free",
                  "-Wall", "-Wextra", "-I", hdir]
        objs = []
        for src in c_srcs:
            obj = os.path.join(out_dir, os.path.basename(src) + ".o")
            if not _run_quiet(["cc"] + cflags + ["-c", src, "-o", obj]):
                return None
            objs.append(obj)
        obj = os.path.join(out_dir, "bench_main.cc.o")
        if not _run_quiet(["c++", "-O2", "-g", "-std=c++17", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                           "-I", hdir] + [f for f in bm_flags if not f.startswith("-l")]
                          + ["-c", cc_src, "-o", obj]):
            return None
        objs.append(obj)
        if not _run_quiet(["c++", "-o", harness] + objs + bm_flags + ["-lpthread"]):
            return None
    if not (os.path.exists(shim) and os.path.getmtime(shim) >= os.path.getmtime(shim_src)):
        if not _run_quiet(["cc", "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", shim,
                           shim_src]):
            return None
    return harness, shim, None


def build(args):
    """Build (or find) everything. args: build_dir, no_build, buddyslab."""
    build_dir = os.path.abspath(args.build_dir or os.path.join(REPO, "build-bench"))
    standalone_dir = os.path.join(build_dir, "standalone")
    res = None
    how = None
    if args.no_build:
        for h, s in ((os.path.join(build_dir, "bench", "bsl-bench"),
                      os.path.join(build_dir, "bench", "libbsl-glibc-shim.so")),
                     (os.path.join(standalone_dir, "bsl-bench"),
                      os.path.join(standalone_dir, "libbsl-glibc-shim.so"))):
            if os.path.exists(h):
                cand = os.path.join(build_dir, "libbuddyslab.so")
                res = (h, s, cand if os.path.exists(cand) else None)
                how = "existing build in " + os.path.dirname(h)
                break
        if not res:
            sys.exit(f"bench: --no-build given but no harness found under {build_dir}")
    else:
        res = _meson_build(build_dir)
        how = "meson build of the top-level project in " + build_dir
        if not res:
            warn("the top-level project does not build yet: compiling the harness standalone")
            res = _standalone_build(standalone_dir)
            how = "standalone compile in " + standalone_dir
        if not res:
            sys.exit("bench: cannot build the harness")
    harness, shim, bsl = res
    if args.buddyslab:
        bsl = os.path.abspath(args.buddyslab)
    elif not bsl:
        cand = os.path.join(REPO, "build", "libbuddyslab.so")
        if os.path.exists(cand):
            bsl = cand
    return Build(harness, shim, bsl, how)


def allocators(build_, wanted):
    """[(name, preload path or None)] for the allocators asked for, skipping missing ones."""
    names = ALLOCATOR_ORDER if not wanted else [a.strip() for a in wanted.split(",") if a.strip()]
    out = []
    for name in names:
        label = None
        if "=" in name:  # LABEL=PATH: another build of any allocator under its own name
            label, name = name.split("=", 1)
        if name == "glibc":
            out.append((name, None))
            continue
        if name == "buddyslab":
            path = build_.bsl_so
        elif name in SYSTEM_LIBS:
            path = SYSTEM_LIBS[name]
        elif os.path.exists(name):  # a path to any other malloc .so
            path = os.path.abspath(name)
            name = re.sub(r"^lib|\.so.*$", "", os.path.basename(name))
        else:
            warn(f"unknown allocator '{name}' (known: {', '.join(ALLOCATOR_ORDER)} or a .so path)")
            continue
        if not path or not os.path.exists(path):
            warn(f"skipping {name}: {path or 'libbuddyslab.so'} not found")
            continue
        name = label or name
        if any(n == name for n, _ in out):  # two builds of one allocator: results must not merge
            name = "%s#%d" % (name, sum(1 for n, _ in out if n == name or n.startswith(name + "#")) + 1)
        out.append((name, path))
    return out


def child_env(preload, extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = preload
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------
# running a child


class Result:
    def __init__(self, rc, wall_s, maxrss_kb, timed_out):
        self.rc = rc                # exit status, or -signal
        self.wall_s = wall_s
        self.maxrss_kb = maxrss_kb  # wait4 ru_maxrss of the child (and its waited-for children)
        self.timed_out = timed_out

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out

    def describe(self):
        if self.timed_out:
            return "timeout"
        if self.rc < 0:
            try:
                return "killed by " + signal.Signals(-self.rc).name
            except ValueError:
                return f"killed by signal {-self.rc}"
        return f"exit {self.rc}"


TIME_BIN = "/usr/bin/time"
_warned_time = []


def run_child(cmd, env, stdout_path=None, stderr_path=None, stdin_path=None, timeout=None,
              cwd=None):
    """Run cmd; return a Result with the wall time and the child's peak RSS. The child gets its
    own process group, killed as a whole on timeout.

    The peak RSS comes from GNU time (/usr/bin/time -f %M), which forks the command from a small
    process: Linux carries the pre-exec address space's high-water mark into ru_maxrss, so a
    command forked straight from this (large) python process would report at least python's
    RSS, both in wait4 and in its own getrusage."""
    use_time = os.access(TIME_BIN, os.X_OK)
    if not use_time and not _warned_time:
        _warned_time.append(1)
        warn(f"{TIME_BIN} not found: peak RSS includes the driver's own RSS")
    rss_file = None
    if env.get("LD_PRELOAD"):
        # preload into the command only, not into GNU time (a broken allocator must not take
        # the measuring process down with it)
        env = dict(env)
        cmd = ["/usr/bin/env", "LD_PRELOAD=" + env.pop("LD_PRELOAD")] + list(cmd)
    if use_time:
        fd, rss_file = tempfile.mkstemp(prefix="bsl-bench-time.")
        os.close(fd)
        cmd = [TIME_BIN, "-f", "BSLRSS %M", "-o", rss_file, "--"] + list(cmd)
    fout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    ferr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    timed_out = [False]
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=fout, stderr=ferr, stdin=fin, cwd=cwd,
                             start_new_session=True)

        def kill():
            timed_out[0] = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        while True:
            try:
                _, status, ru = os.wait4(p.pid, 0)
                break
            except InterruptedError:
                continue
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc  # already reaped: keep Popen from waiting again
        maxrss = ru.ru_maxrss
        if rss_file:
            maxrss = None
            try:
                with open(rss_file) as f:
                    for line in f:
                        m = re.match(r"Command terminated by signal (\d+)", line)
                        if m:
                            rc = -int(m.group(1))
                        m = re.match(r"Command exited with non-zero status (\d+)", line)
                        if m:
                            rc = int(m.group(1))
                        m = re.match(r"BSLRSS (\d+)", line)
                        if m:
                            maxrss = int(m.group(1))
            except OSError:
                pass
            finally:
                os.unlink(rss_file)
        return Result(rc, wall, maxrss, timed_out[0])
    finally:
        for f in (fout, ferr, fin):
            if hasattr(f, "close"):
                f.close()


# ---------------------------------------------------------------------------------------------
# statistics and formatting


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def spread(xs):
    """(max - min) / median of the samples, or None."""
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m else None


def geomean(xs):
    xs = [x for x in xs if x and x > 0]
    if not xs:
        return None
    import math
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def fmt_time_ns(ns):
    if ns is None:
        return "-"
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= div:
            v = ns / div
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{ns:.3g} ns" if ns < 100 else f"{ns:.0f} ns"


def fmt_s(s):
    return "-" if s is None else (f"{s:.3g} s" if s < 100 else f"{s:.0f} s")


def fmt_mib_kb(kb):
    if kb is None:
        return "-"
    mib = kb / 1024.0
    return f"{mib:.3g} MiB" if mib < 1000 else f"{mib:.0f} MiB"


def fmt_ratio(r):
    if r is None:
        return ""
    return f"{r:.2f}×" if r < 10 else f"{r:.1f}×"


def md_table(header, rows, align=None):
    """Markdown table with padded columns (readable as plain text too)."""
    cols = len(header)
    align = align or ["l"] + ["r"] * (cols - 1)
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(cols)]
    widths = [max(w, 3) for w in widths]

    def line(cells):
        out = []
        for i, c in enumerate(cells):
            c = str(c)
            out.append(c.ljust(widths[i]) if align[i] == "l" else c.rjust(widths[i]))
        return "| " + " | ".join(out) + " |"

    sep = []
    for i in range(cols):
        w = widths[i]
        sep.append(":" + "-" * (w - 1) if align[i] == "l" else "-" * (w - 1) + ":")
    return "\n".join([line(header), "| " + " | ".join(sep) + " |"] + [line(r) for r in rows])


def check_idle():
    """Warn when other work is running: timings on a busy machine are noise."""
    try:
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
    except (OSError, ValueError):
        return None
    n = os.cpu_count() or 1
    if load > 0.5 * n:
        warn(f"load average is {load:.1f} on {n} CPUs: other work is running, timings will be "
             "noisy (and ratios unfair to whichever allocator ran during a burst)")
    return load


def machine_info():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["nproc"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    info["kernel"] = os.uname().release
    try:
        info["glibc"] = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        pass
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            info["thp"] = f.read().strip()
    except OSError:
        pass
    return info


def lib_version(path):
    """The real file behind a .so path (its name carries the version)."""
    return os.path.basename(os.path.realpath(path)) if path else "libc.so.6"


def git_describe():
    try:
        p = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        rev = p.stdout.strip() or "no commit"
        p = subprocess.run(["git", "--no-optional-locks", "-C", REPO, "status", "--porcelain", "--",
                            "src", "include"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return rev + ("+dirty" if p.stdout.strip() else "")
    except OSError:
        return "unknown"


def timestamp():
    return time.strftime("%Y%m%d-%H%M%S")

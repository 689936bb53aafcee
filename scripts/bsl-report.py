#!/usr/bin/env python3
"""buddyslab report: render a saved leak report or soft OOM report.

usage: buddyslab report FILE.json [--format text|folded|svg|pprof|heap] [--output FILE]
                                  [--limit N] [--kind KINDS] [--title TEXT] [--width PIXELS]

FILE.json is the JSON report a process writes at exit with leak tracking on
(`buddyslab run --leaks --report FILE.json -- PROGRAM`, or BUDDYSLAB_OPTIONS=leak=1,
leak_report=FILE.json), or the JSON lines of soft OOM reports (`buddyslab run --oom-report FILE`
writes them to FILE.json, one report a line); '-' reads standard input. Format 1 of both is read.

  --format text    (default) a leak report's records sorted by kind (definitely lost, indirectly
                   lost, still reachable), then by bytes, largest first, each with its stack; a
                   soft OOM file: every report in it, its sites in rank order
  --format folded  one line per distinct stack, "root;caller;...;allocating_function BYTES",
                   the input of flame-graph tools (flamegraph.pl, inferno, speedscope)
  --format svg     a flame graph of bytes by stack: one self-contained SVG file (no scripts,
                   no external fonts); hover a frame to see its function, bytes and blocks
  --format pprof   pprof's profile.proto, gzipped (go tool pprof, speedscope): sample
                   types leaked_objects, leaked_space (the default: definitely and indirectly
                   lost), inuse_objects, inuse_space (every record: the live heap when the report
                   lists reachable blocks too, leak_reachable=1); a label "kind" on each sample.
                   Binary: needs --output (or a pipe)
  --format heap    the legacy gperftools heap profile text (google-pprof, jeprof): in-use objects
                   and bytes per stack of addresses, then MAPPED_LIBRARIES; read it with
                   `google-pprof --text PROGRAM FILE.heap`
  --output FILE    write there instead of standard output
  --limit N        text: show the first N records only (per report; default: all)
  --kind KINDS     only these kinds of record, comma-separated: definite, indirect, reachable
                   (definitely_lost, indirectly_lost, still_reachable; default: all in the file;
                   still-reachable blocks are in the file only with leak_reachable=1)
  --title TEXT     svg: the title line (default: from the report)
  --width PIXELS   svg: image width (default 1200)
Folded stacks and flame graphs of a soft OOM file show the live bytes of its last report.
Frames the process gave no file:line for (a program linked with -static has no libdw: its report
names functions and module+offset only) get them here from addr2line (binutils) where the module
is on this machine: read a report where the programs it names were built.

Exit status: 0, 1 when the file cannot be read, is not a leak or soft OOM report, or has a format
version this script does not know; 2 for a usage error.
"""
import gzip
import html
import json
import os
import re
import shutil
import subprocess
import sys
import zlib


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bsltools.py: beside us (python3 -I)
from bsltools import flag_value, human  # noqa: E402
import bsltools  # noqa: E402

PROG = "buddyslab report"
USAGE = ("usage: buddyslab report FILE.json [--format text|folded|svg|pprof|heap] [--output FILE] [--limit N] "
         "[--kind KINDS] [--title TEXT] [--width PIXELS]")

# ---- The report schema, in one place -------------------------------------------------------------
# The names the leak tracker (src/leakcheck/) uses in its JSON report. For each field, the
# candidate keys in order: the first one present wins. Adapt these when the report format changes;
# nothing below reads the JSON keys directly.
SCHEMA = {
    # top level: an object with a list of sites (or the list itself)
    "sites": ("sites", "leaks", "records"),
    # per site
    "bytes": ("bytes", "size", "total_bytes", "leaked_bytes"),
    "blocks": ("blocks", "count", "nblocks", "allocations"),
    "stack": ("stack", "frames", "backtrace", "trace"),
    "site_kind": ("kind",),  # definitely_lost, indirectly_lost, still_reachable (optional)
    "indirect_bytes": ("indirect_bytes",),
    "indirect_blocks": ("indirect_blocks",),
    # per frame (a frame may also be a plain string: the function name)
    "function": ("function", "func", "symbol", "name"),
    "file": ("file", "filename", "source"),
    "line": ("line", "lineno"),
    "module": ("module", "object", "library", "dso"),
    "offset": ("offset", "module_offset"),
    "address": ("address", "pc", "ip"),
    # optional report metadata, shown in headers and titles
    "program": ("program", "command", "exe", "argv0"),
    "pid": ("pid",),
    "mode": ("mode",),                  # "full" or "sampled"
    "sample_bytes": ("sample_bytes", "leak_sample"),
    "summary": ("summary",),            # {kind: {"bytes": N, "blocks": N}}
    "mappings": ("mappings",),          # executable mappings, as lines of /proc/self/maps
}
# Site kinds, as the report names them, and how the text output says them.
KINDS = {"definitely_lost": "definitely lost", "indirectly_lost": "indirectly lost",
         "still_reachable": "still reachable", "suppressed": "suppressed"}
KIND_ALIASES = {"definite": "definitely_lost", "definitely": "definitely_lost", "lost": "definitely_lost",
                "indirect": "indirectly_lost", "indirectly": "indirectly_lost", "reachable": "still_reachable"}
# The output formats of --format.
OUTPUT_FORMATS = ("text", "folded", "svg", "pprof", "heap")
# The order of a leak report's records (docs/LEAKS.md, and the library's own text report): by kind,
# then by bytes. Records of another kind (or none: a list of sites from another tool) come last.
KIND_ORDER = {"definitely_lost": 0, "indirectly_lost": 1, "still_reachable": 2}
# The tools whose reports we read ("tool" at the top level) and the format versions we know.
TOOLS = {"buddyslab-leak": "leak report", "buddyslab-oom": "soft OOM report"}
FORMATS = (1,)
# Order of each site's frames in the file: "leaf-first" (frame 0 is the function that called
# malloc, as in a backtrace) or "root-first".
STACK_ORDER = "leaf-first"


SYMVER = re.compile(r"@@?[A-Za-z_][A-Za-z0-9_.]*$")


class BadReport(Exception):
    pass


def pick(obj, field, default=None):
    for k in SCHEMA[field]:
        if k in obj:
            return obj[k]
    return default


def as_count(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or v != v:
        raise BadReport("%s is %r, not a non-negative number" % (what, v))
    return int(round(v))


def as_offset(v):
    if v is None:
        return None
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v, 0)
        except ValueError:
            return None
    return None


class Frame:
    __slots__ = ("function", "file", "line", "module", "offset", "address")

    def __init__(self, function=None, file=None, line=None, module=None, offset=None, address=None):
        self.function, self.file, self.line = function, file, line
        self.module, self.offset, self.address = module, offset, address

    def label(self):
        """The frame's name in folded stacks and flame graphs: the function, else module+offset."""
        if self.function:
            name = self.function
        elif self.module and self.offset is not None:
            name = "%s+%#x" % (os.path.basename(self.module), self.offset)
        elif self.module:
            name = os.path.basename(self.module)
        elif self.address is not None:
            name = "%#x" % self.address
        else:
            name = "??"
        # A symbol version (__libc_start_main@@GLIBC_2.34) is noise in a graph.
        name = SYMVER.sub("", name) or name
        # ';' separates frames and a newline ends a line in the folded format.
        return name.replace(";", ":").replace("\n", " ").replace("\r", " ")

    def describe(self):
        """One line of a text stack: function at file:line (module+offset)."""
        s = self.function or "??"
        if self.file:
            s += " at %s" % self.file
            if self.line:
                s += ":%s" % self.line
        where = None
        if self.module:
            where = os.path.basename(self.module)
            if self.offset is not None:
                where += "+%#x" % self.offset
        elif self.address is not None:
            where = "%#x" % self.address
        if where:
            s += " (%s)" % where
        return s


class Site:
    __slots__ = ("bytes", "blocks", "frames", "kind", "indirect_bytes", "indirect_blocks", "oom")

    def __init__(self, nbytes, blocks, frames, kind=None, indirect_bytes=0, indirect_blocks=0, oom=None):
        self.bytes, self.blocks, self.frames = nbytes, blocks, frames  # frames: leaf first
        self.kind, self.indirect_bytes, self.indirect_blocks = kind, indirect_bytes, indirect_blocks
        self.oom = oom  # a soft OOM report's site: its raw object (rank, badness, budget_name, ...)

    def folded_key(self):
        return ";".join(f.label() for f in reversed(self.frames)) or "[no stack]"


def parse_frame(raw, where):
    if isinstance(raw, str):
        return Frame(function=raw)
    if not isinstance(raw, dict):
        raise BadReport("%s is %s, not an object or a string" % (where, type(raw).__name__))
    line = pick(raw, "line")
    if line is not None and (isinstance(line, bool) or not isinstance(line, (int, str))):
        raise BadReport("%s: line is %r" % (where, line))

    def text(field):
        v = pick(raw, field)
        if v is None or v == "":
            return None
        if not isinstance(v, str):
            raise BadReport("%s: %s is %r, not a string" % (where, SCHEMA[field][0], v))
        return v
    return Frame(function=text("function"), file=text("file"), line=line or None, module=text("module"),
                 offset=as_offset(pick(raw, "offset")), address=as_offset(pick(raw, "address")))


def read_text(path):
    try:
        if path == "-":
            data = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                data = f.read()
    except FileNotFoundError:
        raise BadReport("no such file")
    except IsADirectoryError:
        raise BadReport("is a directory")
    except PermissionError:
        raise BadReport("permission denied")
    except UnicodeDecodeError:
        raise BadReport("not a text file (a leak report is JSON)")
    except OSError as e:
        raise BadReport(e.strerror or str(e))
    if not data.strip():
        raise BadReport("the file is empty (did the program exit before writing its report?)")
    return data


def parse_json(data):
    """The documents of the file: one JSON value, or JSON lines (the soft OOM reports: one object a
    line, appended by each report)."""
    try:
        return [json.loads(data)]
    except ValueError as e:
        first = e
    lines = [l for l in data.splitlines() if l.strip()]
    if len(lines) > 1:
        try:
            docs = [json.loads(l) for l in lines]
        except ValueError:
            docs = None
        if docs and all(isinstance(d, dict) for d in docs):
            return docs
    hint = ""
    if data.lstrip()[:1] not in ("{", "["):
        hint = ("; it looks like a text report: write a JSON one with a report path that ends in "
                ".json (buddyslab run --report FILE.json; soft OOM reports: the JSON lines in FILE.json "
                "beside --oom-report FILE)")
    raise BadReport("not valid JSON (%s)%s" % (first, hint))


def check_version(doc, where):
    """A report of ours in a format version we know, or BadReport naming what it is."""
    tool = doc.get("tool")
    if tool is not None and tool not in TOOLS:
        raise BadReport("%sa report of '%s', not a buddyslab leak or soft OOM report" % (where, tool))
    if tool is None and "format" not in doc:
        return None  # a list of sites from elsewhere: read with SCHEMA's candidate keys
    fmt = doc.get("format")
    if fmt not in FORMATS or isinstance(fmt, bool):
        raise BadReport("%s%s format %s: this version of buddyslab report reads format %s only (a newer "
                        "buddyslab wrote it? render it with that version's 'buddyslab report')" % (
                            where, TOOLS.get(tool, "report"), json.dumps(fmt),
                            " and ".join(str(f) for f in FORMATS)))
    return tool


def parse_stack(raw, where):
    stack = pick(raw, "stack", [])
    if not isinstance(stack, list):
        raise BadReport("%s: the stack is %s, not a list of frames" % (where, type(stack).__name__))
    frames = [parse_frame(f, "%s, frame %d" % (where, j)) for j, f in enumerate(stack)]
    if STACK_ORDER == "root-first":
        frames.reverse()
    return frames


def leak_sites(doc):
    if isinstance(doc, list):
        raw_sites = doc
    elif isinstance(doc, dict):
        raw_sites = pick(doc, "sites")
        if raw_sites is None:
            raise BadReport("no list of sites (expected a key %s): this does not look like a buddyslab leak "
                            "report" % " or ".join("'%s'" % k for k in SCHEMA["sites"]))
    else:
        raise BadReport("the top level is %s; a leak report is a JSON object" % type(doc).__name__)
    if not isinstance(raw_sites, list):
        raise BadReport("'%s' is %s, not a list" % (SCHEMA["sites"][0], type(raw_sites).__name__))
    sites = []
    for i, raw in enumerate(raw_sites):
        where = "site %d" % (i + 1)
        if not isinstance(raw, dict):
            raise BadReport("%s is %s, not an object" % (where, type(raw).__name__))
        nbytes = pick(raw, "bytes")
        if nbytes is None:
            raise BadReport("%s has no byte count (expected a key %s)" % (where, " or ".join(
                "'%s'" % k for k in SCHEMA["bytes"])))
        nbytes = as_count(nbytes, "%s: bytes" % where)
        blocks = pick(raw, "blocks", 0)
        blocks = as_count(blocks, "%s: blocks" % where)
        frames = parse_stack(raw, where)
        kind = pick(raw, "site_kind")
        if kind is not None and not isinstance(kind, str):
            raise BadReport("%s: kind is %r, not a string" % (where, kind))
        ib = as_count(pick(raw, "indirect_bytes", 0), "%s: indirect_bytes" % where)
        ik = as_count(pick(raw, "indirect_blocks", 0), "%s: indirect_blocks" % where)
        sites.append(Site(nbytes, blocks, frames, kind, ib, ik))
    return sites


def oom_sites(doc, where):
    """A soft OOM report's sites (docs/OOM.md, format 1), in rank order: live bytes and blocks."""
    raw_sites = doc.get("sites")
    if not isinstance(raw_sites, list):
        raise BadReport("%sno list of sites ('sites') in this soft OOM report" % where)
    sites = []
    for i, raw in enumerate(raw_sites):
        w = "%ssite %d" % (where, i + 1)
        if not isinstance(raw, dict):
            raise BadReport("%s is %s, not an object" % (w, type(raw).__name__))
        if "live_bytes" not in raw:
            raise BadReport("%s has no live byte count ('live_bytes')" % w)
        sites.append(Site(as_count(raw["live_bytes"], "%s: live_bytes" % w),
                          as_count(raw.get("live_blocks", 0), "%s: live_blocks" % w),
                          parse_stack(raw, w), oom=raw))
    return sites


class Loaded:
    """What a file holds: tool ("buddyslab-leak", "buddyslab-oom", or None for a list of sites from
    elsewhere) and its reports, each (metadata, [Site]): one for a leak report, one a line for soft
    OOM reports."""

    def __init__(self, tool, reports):
        self.tool, self.reports = tool, reports


def load(path):
    """A Loaded from a JSON report, or BadReport saying what is wrong."""
    docs = parse_json(read_text(path))
    if len(docs) == 1:
        doc = docs[0]
        if not isinstance(doc, (dict, list)):
            raise BadReport("the top level is %s; a leak report is a JSON object" % type(doc).__name__)
        tool = check_version(doc, "") if isinstance(doc, dict) else None
        if tool == "buddyslab-oom":
            return Loaded(tool, [(doc, oom_sites(doc, ""))])
        return Loaded(tool, [(doc if isinstance(doc, dict) else {}, leak_sites(doc))])
    # JSON lines: soft OOM reports, one a line.
    reports = []
    for i, doc in enumerate(docs):
        where = "line %d: " % (i + 1)
        tool = check_version(doc, where)
        if tool != "buddyslab-oom":
            raise BadReport("%sseveral JSON objects, one a line, are soft OOM reports ('tool': 'buddyslab-oom'); "
                            "this one is %s" % (where, "'%s'" % tool if tool else "not one"))
        reports.append((doc, oom_sites(doc, where)))
    return Loaded("buddyslab-oom", reports)


def add_lines(loaded):
    """File and line, from addr2line, for the frames that have a module (on this machine) and an
    offset but no file. The offset is from the module's load bias, what addr2line expects; it is a
    return address, so the call is the byte before it. Nothing changes without addr2line."""
    a2l = shutil.which("addr2line")
    if not a2l:
        return
    want = {}  # module -> frames
    for _, sites in loaded.reports:
        for s in sites:
            for f in s.frames:
                if not f.file and f.module and f.offset and os.path.isfile(f.module):
                    want.setdefault(f.module, []).append(f)
    for mod, frames in want.items():
        offs = sorted({f.offset for f in frames})
        try:
            p = subprocess.run([a2l, "-f", "-C", "-e", mod] + ["%#x" % (o - 1) for o in offs],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            continue
        out = p.stdout.split("\n")
        got = {}
        for i, o in enumerate(offs):  # two lines each: the function, then file:line
            if 2 * i + 1 >= len(out):
                break
            fn, loc = out[2 * i], out[2 * i + 1].split(" (discriminator")[0]
            file, _, line = loc.rpartition(":")
            if file and not file.startswith("??") and line.isdigit() and int(line) > 0:
                got[o] = (None if fn.startswith("??") else fn, file, int(line))
        for f in frames:
            if f.offset in got:
                fn, f.file, f.line = got[f.offset]
                f.function = f.function or fn


def is_sampled(meta):
    return pick(meta, "mode") == "sampled" or bool(pick(meta, "sample_bytes"))




def describe_source(meta):
    parts = []
    prog = pick(meta, "program")
    if isinstance(prog, list):
        prog = " ".join(str(p) for p in prog)
    if prog:
        parts.append(str(prog))
    pid = pick(meta, "pid")
    if pid is not None:
        parts.append("pid %s" % pid)
    return ", ".join(parts)


def totals(sites):
    return sum(s.bytes for s in sites), sum(s.blocks for s in sites)


# ---- text ----------------------------------------------------------------------------------------
def render_text(meta, sites, limit=None, all_sites=None, kinds=None):
    """A leak report as text. sites: the records to show (--kind applied); all_sites: every record of
    the file (for the totals when the file has no summary); kinds: the --kind set, or None."""
    all_sites = sites if all_sites is None else all_sites
    nbytes, nblocks = totals(sites)
    out = []
    src = describe_source(meta)
    out.append("buddyslab leak report%s" % (" (%s)" % src if src else ""))
    if is_sampled(meta):
        sb = pick(meta, "sample_bytes")
        out.append("sampled%s: byte and block counts are estimates" % (
            " (about one allocation per %s bytes)" % sb if sb else ""))
    summary = pick(meta, "summary")
    if isinstance(summary, dict):
        parts = []
        for k, v in summary.items():
            if (isinstance(v, dict) and isinstance(v.get("bytes"), int) and isinstance(v.get("blocks"), int)
                    and (v["blocks"] or k == "definitely_lost")):
                parts.append("%s %s in %d blocks" % (KINDS.get(k, k.replace("_", " ")), human(v["bytes"]), v["blocks"]))
        if parts:
            out.append("summary: " + "; ".join(parts))
    verdict = leak_verdict(meta, sites, all_sites, kinds)
    if verdict:
        out.append(verdict)
    if not sites:
        return "\n".join(out) + "\n"
    out.append("%s (%d bytes) in %d blocks, %d record%s" % (human(nbytes), nbytes, nblocks, len(sites),
                                                            "" if len(sites) == 1 else "s"))
    order = sorted(range(len(sites)), key=lambda i: (KIND_ORDER.get(sites[i].kind, len(KIND_ORDER)),
                                                     -sites[i].bytes, -sites[i].blocks, i))
    shown = order if limit is None else order[:limit]
    for rank, i in enumerate(shown, 1):
        s = sites[i]
        share = 100.0 * s.bytes / nbytes if nbytes else 0.0
        kind = ("%s: " % KINDS.get(s.kind, s.kind.replace("_", " "))) if s.kind else ""
        held = ""
        if s.indirect_blocks:
            held = " (and holds %s in %d indirectly lost blocks)" % (human(s.indirect_bytes), s.indirect_blocks)
        out.append("")
        out.append("#%d  %s%s (%d bytes) in %d block%s, %.1f%%%s" % (
            rank, kind, human(s.bytes), s.bytes, s.blocks, "" if s.blocks == 1 else "s", share, held))
        append_frames(out, s)
    if len(shown) < len(order):
        rest = [sites[i] for i in order[len(shown):]]
        rb, rn = totals(rest)
        out.append("")
        out.append("... %d more record%s: %s in %d blocks (--limit to show more)" % (
            len(rest), "" if len(rest) == 1 else "s", human(rb), rn))
    return "\n".join(out) + "\n"


def append_frames(out, s):
    if not s.frames:
        out.append("    (no stack recorded)")
    for j, f in enumerate(s.frames):
        out.append("    #%-2d %s" % (j, f.describe()))


def kind_totals(meta, all_sites, kind):
    """(bytes, blocks) of one kind: from the summary when the file has one (it counts records that
    are not listed, e.g. still reachable blocks without leak_reachable=1), else from the records (a
    record without a kind counts as lost)."""
    summary = pick(meta, "summary")
    if isinstance(summary, dict) and isinstance(summary.get(kind), dict):
        v = summary[kind]
        if isinstance(v.get("bytes"), int) and isinstance(v.get("blocks"), int):
            return v["bytes"], v["blocks"]
    if kind == "definitely_lost":
        return totals([s for s in all_sites if s.kind in (None, kind)])
    return totals([s for s in all_sites if s.kind == kind])


def leak_verdict(meta, sites, all_sites, kinds):
    """One line saying whether anything leaked: 'no leaks' only when nothing is definitely or
    indirectly lost, 'every block was freed' only when nothing is left at all."""
    lb, ln = [a + b for a, b in zip(kind_totals(meta, all_sites, "definitely_lost"),
                                    kind_totals(meta, all_sites, "indirectly_lost"))]
    rb, rn = kind_totals(meta, all_sites, "still_reachable")
    if ln == 0 and rn == 0 and not all_sites:
        return "no leaks: every block was freed"
    if ln == 0:
        listed = any(s.kind == "still_reachable" for s in all_sites)
        return "no leaks: nothing definitely or indirectly lost; still reachable: %s in %d blocks%s" % (
            human(rb), rn, "" if listed or not rn else " (not listed: leak_reachable=1 lists them)")
    if not sites:
        if kinds is not None:
            return "no records of the kinds asked for (--kind %s): %s in %d blocks lost, see the summary" % (
                ",".join(sorted(KINDS[k] for k in kinds)), human(lb), ln)
        return "no records listed: %s in %d blocks lost, see the summary" % (human(lb), ln)
    return None


# ---- soft OOM reports ---------------------------------------------------------------------------
OOM_EVENTS = {"soft_limit": "soft limit crossed", "hard_limit": "hard limit crossed",
              "no_memory": "the system refused memory", "request": "report on request (bsl_oom_report)"}


def oom_event_line(doc):
    ev = doc.get("event")
    if ev == "budget":
        what = "budget '%s' crossed" % doc.get("budget")
    else:
        what = OOM_EVENTS.get(ev, "event %s" % ev)
    req, weight = doc.get("request"), doc.get("request_weight")
    if isinstance(req, int) and req:
        what += ": %s requested" % human(req)
        if isinstance(weight, int) and weight != req:
            what += " (counted as %s: a sampled allocation)" % human(weight)
    return "%s (oom_action=%s)" % (what, doc.get("action"))


def render_oom_text(loaded, limit=None):
    reports = loaded.reports
    meta0 = reports[0][0]
    out = ["buddyslab soft OOM reports (%s): %d soft OOM report%s" % (
        describe_source(meta0) or "pid ?", len(reports), "" if len(reports) == 1 else "s")]
    if meta0.get("tracking") == "sampled":
        out.append("sampled: about one allocation per %s; live bytes and blocks are estimates" %
                   human(meta0.get("sample_bytes") or 0))
    for n, (doc, sites) in enumerate(reports, 1):
        out.append("")
        out.append("report %d of %d: %s" % (n, len(reports), oom_event_line(doc)))
        rc = doc.get("reclaim")
        if isinstance(rc, dict) and rc.get("ran"):
            out.append("  reclaimed%s: %s returned to the OS, committed %s -> %s" % (
                " %s ms before" % rc["age_ms"] if rc.get("age_ms") else " first", human(rc.get("bytes", 0)),
                human(rc.get("committed_before", 0)), human(rc.get("committed_after", 0))))
        pr = doc.get("process")
        if isinstance(pr, dict):
            out.append("  process: committed %s, soft limit %s, hard limit %s; tracked live %s" % (
                human(pr.get("committed", 0)), human(pr["soft_limit"]) if pr.get("soft_limit") else "none",
                human(pr["hard_limit"]) if pr.get("hard_limit") else "none", human(pr.get("tracked_live", 0))))
        for b in doc.get("budgets") or []:
            if isinstance(b, dict) and b.get("budget"):
                out.append("  %s '%s': %s live of %s%s%s" % (
                    "tag" if b.get("tag") else "budget", b.get("name"), human(b.get("live_bytes", 0)),
                    human(b["budget"]), ", OVER" if b.get("over") else "",
                    ", %d allocations refused" % b["failed"] if b.get("failed") else ""))
        if doc.get("suppressed"):
            out.append("  (%d events before this one were not reported: oom_interval_ms)" % doc["suppressed"])
        out.append("  %d site%s ranked by badness (share of the bytes over budget or limit + growth):" % (
            len(sites), "" if len(sites) == 1 else "s"))
        shown = sites if limit is None else sites[:limit]
        for s in shown:
            o = s.oom
            extra = []
            if o.get("budget_name"):
                extra.append("budget '%s'" % o["budget_name"])
            if o.get("tag"):
                extra.append("tag %s" % o["tag"])
            out.append("")
            out.append("#%s  %s (%d bytes) live in %d block%s, badness %s (over %s, growth %s)%s" % (
                o.get("rank", "?"), human(s.bytes), s.bytes, s.blocks, "" if s.blocks == 1 else "s",
                human(o.get("badness", 0)), human(o.get("over", 0)), human(o.get("growth", 0)),
                ", " + ", ".join(extra) if extra else ""))
            append_frames(out, s)
        if len(shown) < len(sites):
            out.append("")
            out.append("... %d more site%s (--limit to show more)" % (len(sites) - len(shown),
                                                                    "" if len(sites) - len(shown) == 1 else "s"))
    return "\n".join(out) + "\n"


# ---- folded -------------------------------------------------------------------------------------
def fold(sites):
    """{folded stack: (bytes, blocks)}, identical stacks merged."""
    acc = {}
    for s in sites:
        k = s.folded_key()
        b, n = acc.get(k, (0, 0))
        acc[k] = (b + s.bytes, n + s.blocks)
    return acc


def render_folded(meta, sites):
    return "".join("%s %d\n" % (k, v[0]) for k, v in sorted(fold(sites).items()) if v[0] > 0)


# ---- svg flame graph ----------------------------------------------------------------------------
class Node:
    __slots__ = ("name", "bytes", "blocks", "children")

    def __init__(self, name):
        self.name, self.bytes, self.blocks, self.children = name, 0, 0, {}


def build_tree(sites):
    root = Node("all")
    for key, (b, n) in fold(sites).items():
        if b <= 0:
            continue
        root.bytes += b
        root.blocks += n
        node = root
        for name in key.split(";"):
            node = node.children.setdefault(name, Node(name))
            node.bytes += b
            node.blocks += n
    return root


def frame_color(name):
    # Warm colours, the same for the same function in every graph.
    h = zlib.crc32(name.encode("utf-8", "replace"))
    r = 205 + (h & 0x3F) % 50
    g = 80 + ((h >> 8) & 0xFF) % 150
    b = 40 + ((h >> 16) & 0xFF) % 50
    return "rgb(%d,%d,%d)" % (r, g, b)


def render_svg(meta, sites, title=None, width=1200, empty="no leaks: every block was freed", oom=False):
    root = build_tree(sites)
    frame_h, pad, font = 17, 10, 12
    top_h, bottom_h = 44, 24
    chart_w = width - 2 * pad

    def depth(n):
        return 1 + max((depth(c) for c in n.children.values()), default=0)
    levels = depth(root) if root.bytes else 1
    height = top_h + levels * frame_h + bottom_h
    nbytes, nblocks = root.bytes, root.blocks
    src = describe_source(meta)
    if title is None and oom:
        title = "buddyslab soft OOM (%s): %s live in %d blocks%s" % (
            oom_event_line(meta).split(" (oom_action")[0], human(nbytes), nblocks,
            ", sampled estimates" if meta.get("tracking") == "sampled" else "")
    elif title is None:
        title = "buddyslab leaks: %s in %d blocks%s%s" % (human(nbytes), nblocks, " (%s)" % src if src else "",
                                                          ", sampled estimates" if is_sampled(meta) else "")
    e = html.escape
    out = []
    out.append('<?xml version="1.0" encoding="UTF-8" standalone="no"?>')
    out.append('<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" '
               'viewBox="0 0 %d %d" font-family="Verdana, DejaVu Sans, sans-serif" font-size="%d">'
               % (width, height, width, height, font))
    out.append('<!-- buddyslab flame graph: bytes by allocation stack; one rectangle per frame, its width '
               'proportional to the bytes allocated under it; roots at the bottom. -->')
    out.append('<style>.f:hover rect{stroke:#000;stroke-width:0.5} .f text{pointer-events:none}</style>')
    out.append('<rect x="0" y="0" width="%d" height="%d" fill="#fdf6e8"/>' % (width, height))
    out.append('<text x="%d" y="24" text-anchor="middle" font-size="16">%s</text>' % (width // 2, e(title)))
    out.append('<text x="%d" y="%d" fill="#555">frame width = %s by that stack; hover a frame for '
               'details</text>' % (pad, height - 8, "live bytes at the report" if oom else
                                   "bytes still allocated at exit"))
    if not nbytes:
        out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % (width // 2, top_h + frame_h, e(empty)))
        out.append("</svg>")
        return "\n".join(out) + "\n"
    scale = chart_w / float(nbytes)
    char_w = font * 0.6
    min_w = 0.1  # narrower frames are not drawn (they could not be seen)

    def draw(node, x, level):
        w = node.bytes * scale
        if w < min_w:
            return
        y = top_h + (levels - 1 - level) * frame_h
        share = 100.0 * node.bytes / nbytes
        tip = "%s: %s (%d bytes) in %d block%s, %.2f%%" % (node.name, human(node.bytes), node.bytes, node.blocks,
                                                          "" if node.blocks == 1 else "s", share)
        out.append('<g class="f"><title>%s</title><rect x="%.3f" y="%d" width="%.3f" height="%d" rx="2" '
                   'fill="%s"/>' % (e(tip), x, y, w, frame_h - 1,
                                    "#e0c8a0" if level == 0 else frame_color(node.name)))
        fit = int((w - 6) / char_w)
        if fit >= 3:
            label = node.name if len(node.name) <= fit else node.name[:fit - 2] + ".."
            out.append('<text x="%.3f" y="%d">%s</text>' % (x + 3, y + frame_h - 5, e(label)))
        out.append("</g>")
        cx = x
        for name in sorted(node.children):
            child = node.children[name]
            draw(child, cx, level + 1)
            cx += child.bytes * scale

    draw(root, float(pad), 0)
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---- pprof (profile.proto) and the legacy heap profile ------------------------------------------
# Both need to know which object each return address is in: the report's "mappings" (lines of
# /proc/self/maps, executable ones only, written by the library since the mappings were added to
# the JSON), else mappings made up from each frame's module, address and offset.
MAPS_LINE = re.compile(r"^\s*([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+(\S{4})\s+([0-9a-fA-F]+)\s+(\S+)\s+(\d+)\s*(.*)$")
PAGE = 4096


class Mapping:
    __slots__ = ("start", "limit", "offset", "perms", "dev", "inode", "path", "id")

    def __init__(self, start, limit, offset, path, perms="r-xp", dev="00:00", inode=0):
        self.start, self.limit, self.offset, self.path = start, limit, offset, path
        self.perms, self.dev, self.inode, self.id = perms, dev, inode, 0

    def maps_line(self):
        """The mapping as a line of /proc/self/maps (what google-pprof and jeprof parse)."""
        return "%x-%x %s %08x %s %d%s" % (self.start, self.limit, self.perms, self.offset, self.dev, self.inode,
                                          " " * 10 + self.path if self.path else "")


def report_mappings(meta, sites):
    """[Mapping] sorted by address, without overlaps: the report's own, else made up from frames."""
    raw = pick(meta, "mappings") if isinstance(meta, dict) else None
    maps = []
    if isinstance(raw, list):
        for line in raw:
            m = MAPS_LINE.match(line) if isinstance(line, str) else None
            if m and "x" in m.group(3):
                lo, hi = int(m.group(1), 16), int(m.group(2), 16)
                if hi > lo:
                    maps.append(Mapping(lo, hi, int(m.group(4), 16), m.group(7).strip(), m.group(3), m.group(5),
                                        int(m.group(6))))
    if not maps:
        # One mapping per module: the pages its frames are in, the file offset from its load bias
        # (pc - offset); exact for the usual objects, whose text is at the same offset in the file
        # and in memory.
        spans = {}
        for s in sites:
            for f in s.frames:
                if f.module and f.address is not None and f.offset is not None and f.address >= f.offset:
                    bias = f.address - f.offset
                    lo, hi, b = spans.get(f.module, (f.address, f.address, bias))
                    spans[f.module] = (min(lo, f.address), max(hi, f.address), b)
        for path, (lo, hi, bias) in spans.items():
            start = lo & ~(PAGE - 1)
            maps.append(Mapping(start, (hi | (PAGE - 1)) + 1, max(start - bias, 0), path))
    maps.sort(key=lambda m: (m.start, m.limit))
    out = []
    for m in maps:
        if out and m.start < out[-1].limit:
            continue  # overlapping: keep the first
        out.append(m)
    for i, m in enumerate(out):
        m.id = i + 1
    return out


def find_mapping(maps, addr):
    lo, hi = 0, len(maps)
    while lo < hi:
        mid = (lo + hi) // 2
        if maps[mid].limit <= addr:
            lo = mid + 1
        elif maps[mid].start > addr:
            hi = mid
        else:
            return maps[mid]
    return None


LOST = ("definitely_lost", "indirectly_lost")


def is_lost(site):
    """Lost memory: definitely or indirectly lost records (a record without a kind is a leak)."""
    return site.kind is None or site.kind in LOST


class Proto:
    """A protocol buffer message, written field by field (the wire format: varint keys, varints,
    length-delimited bytes)."""

    def __init__(self):
        self.buf = bytearray()

    @staticmethod
    def varint(v):
        if v < 0:
            v += 1 << 64  # int64: two's complement, ten bytes
        out = bytearray()
        while True:
            b = v & 0x7F
            v >>= 7
            if v:
                out.append(b | 0x80)
            else:
                out.append(b)
                return out

    def num(self, field, v, always=False):
        """A varint field (int64, uint64, bool); zero, the default, is left out unless always."""
        if v or always:
            self.buf += self.varint(field << 3) + self.varint(int(v))
        return self

    def lendel(self, field, data):
        """A length-delimited field: bytes, a string, an embedded message."""
        if isinstance(data, Proto):
            data = data.buf
        elif isinstance(data, str):
            data = data.encode("utf-8", "replace")
        self.buf += self.varint((field << 3) | 2) + self.varint(len(data)) + data
        return self

    def packed(self, field, values):
        """A repeated varint field, packed (as proto3 writes it)."""
        if values:
            body = bytearray()
            for v in values:
                body += self.varint(int(v))
            self.lendel(field, bytes(body))
        return self


def render_pprof(meta, sites, path=None):
    """profile.proto, gzipped: the report's records as samples of four values (leaked objects and
    bytes, in-use objects and bytes), leaf first, with a label "kind"; functions, files and lines
    from the report (every mapping says so, so that pprof does not look for symbols)."""
    strings, string_ids = [""], {"": 0}

    def sid(s):
        s = "" if s is None else str(s)
        i = string_ids.get(s)
        if i is None:
            i = string_ids[s] = len(strings)
            strings.append(s)
        return i

    maps = report_mappings(meta, sites)
    functions, function_ids = [], {}
    locations, location_ids = [], {}
    by_mapping = {}  # mapping id -> [Frame] located in it

    def function_id(f):
        key = (f.function, f.file)
        i = function_ids.get(key)
        if i is None:
            name = SYMVER.sub("", f.function) or f.function
            i = function_ids[key] = len(functions) + 1
            functions.append(Proto().num(1, i).num(2, sid(name)).num(3, sid(f.function)).num(4, sid(f.file)))
        return i

    def location_id(f):
        key = (f.address, f.function, f.file, f.line, f.module, f.offset)
        i = location_ids.get(key)
        if i is None:
            i = location_ids[key] = len(locations) + 1
            m = find_mapping(maps, f.address) if f.address is not None else None
            loc = Proto().num(1, i).num(2, m.id if m else 0).num(3, f.address or 0)
            if f.function:
                line = int(f.line) if f.line and str(f.line).isdigit() else 0
                loc.lendel(4, Proto().num(1, function_id(f)).num(2, line))
            if m:
                by_mapping.setdefault(m.id, []).append(f)
            locations.append(loc)
        return i

    prof = Proto()
    types = (("leaked_objects", "count"), ("leaked_space", "bytes"),
             ("inuse_objects", "count"), ("inuse_space", "bytes"))
    for t, unit in types:
        prof.lendel(1, Proto().num(1, sid(t)).num(2, sid(unit)))
    kind_key = sid("kind")
    for s in sites:
        lost = is_lost(s)
        sample = Proto().packed(1, [location_id(f) for f in s.frames])
        sample.packed(2, [s.blocks if lost else 0, s.bytes if lost else 0, s.blocks, s.bytes])
        if s.kind:
            sample.lendel(3, Proto().num(1, kind_key).num(2, sid(s.kind)))
        prof.lendel(2, sample)
    for m in maps:
        frames = by_mapping.get(m.id, [])
        has_files = bool(frames) and all(f.file for f in frames)
        mp = Proto().num(1, m.id).num(2, m.start).num(3, m.limit).num(4, m.offset).num(5, sid(m.path))
        mp.num(7, bool(frames) and all(f.function for f in frames)).num(8, has_files)
        mp.num(9, has_files and all(f.line for f in frames))
        prof.lendel(3, mp)
    for loc in locations:
        prof.lendel(4, loc)
    for fn in functions:
        prof.lendel(5, fn)
    # Comments and the metadata, before the string table is written.
    comments = ["buddyslab leak report%s" % (" (%s)" % describe_source(meta) if describe_source(meta) else "")]
    if is_sampled(meta):
        comments.append("sampled: values are estimates (about one allocation per %s bytes)"
                        % (pick(meta, "sample_bytes") or "?"))
    comments.append("leaked_*: definitely and indirectly lost blocks; inuse_*: every block in the report "
                    "(still reachable ones only with leak_reachable=1)")
    comment_ids = [sid(c) for c in comments]
    period_type = Proto().num(1, sid("space")).num(2, sid("bytes"))
    default_type = sid("leaked_space")
    for s in strings:
        prof.lendel(6, s)
    if path and path != "-":
        try:
            prof.num(9, int(os.stat(path).st_mtime * 1e9))
        except OSError:
            pass
    prof.lendel(11, period_type)
    sb = pick(meta, "sample_bytes")
    prof.num(12, sb if isinstance(sb, int) and sb > 0 else 1)
    prof.packed(13, comment_ids)
    prof.num(14, default_type)
    return gzip.compress(bytes(prof.buf), mtime=0)


def render_heap(meta, sites):
    """The legacy heap profile text of gperftools (google-pprof, jeprof): one line per stack with
    in-use objects and bytes (the allocated counts in brackets are the same: the report knows live
    blocks only), then the mappings. Frames without an address cannot be written and are left out."""
    acc = {}
    skipped = 0
    for s in sites:
        key = tuple(f.address for f in s.frames if f.address is not None)
        if not key:
            skipped += 1
            continue
        n, b = acc.get(key, (0, 0))
        acc[key] = (n + s.blocks, b + s.bytes)
    if skipped:
        sys.stderr.write("%s: %d record%s without addresses left out of the heap profile\n"
                         % (PROG, skipped, "" if skipped == 1 else "s"))
    tn = sum(v[0] for v in acc.values())
    tb = sum(v[1] for v in acc.values())
    out = ["heap profile: %6d: %8d [%6d: %8d] @ heapprofile" % (tn, tb, tn, tb)]
    for key, (n, b) in sorted(acc.items(), key=lambda kv: (-kv[1][1], kv[0])):
        out.append("%6d: %8d [%6d: %8d] @ %s" % (n, b, n, b, " ".join("0x%016x" % a for a in key)))
    out.append("")
    out.append("MAPPED_LIBRARIES:")
    out.extend(m.maps_line() for m in report_mappings(meta, sites))
    return "\n".join(out) + "\n"


# ---- main ---------------------------------------------------------------------------------------
def usage_error(msg):
    bsltools.usage_error(PROG, USAGE, msg)


def main(argv):
    path = None
    fmt, output, limit, title, width = "text", None, None, None, 1200
    kinds = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            return 0
        name = a.split("=", 1)[0]
        if name in ("--format", "-f", "--output", "-o", "--limit", "--kind", "--title", "--width") and a.startswith("-"):
            val, i = flag_value(argv, i, usage_error)
            if name in ("--format", "-f"):
                if val not in OUTPUT_FORMATS:
                    usage_error("--format: '%s' is not one of %s" % (val, ", ".join(OUTPUT_FORMATS)))
                fmt = val
            elif name in ("--output", "-o"):
                output = val
            elif name == "--limit":
                if not val.isdigit() or int(val) < 1:
                    usage_error("--limit: '%s' is not a positive integer" % val)
                limit = int(val)
            elif name == "--kind":
                kinds = set()
                for k in val.split(","):
                    k = KIND_ALIASES.get(k.strip(), k.strip())
                    if k not in KINDS or k == "suppressed":
                        usage_error("--kind: '%s' is not one of definite, indirect, reachable" % val)
                    kinds.add(k)
            elif name == "--title":
                title = val
            elif name == "--width":
                if not val.isdigit() or not 200 <= int(val) <= 100000:
                    usage_error("--width: '%s' is not a width in pixels (200 .. 100000)" % val)
                width = int(val)
        elif a.startswith("-") and a != "-":
            usage_error("unknown option: %s" % a)
        elif path is None:
            path = a
        else:
            usage_error("one report at a time (got '%s' after '%s')" % (a, path))
        i += 1
    if path is None:
        usage_error("which report? give the path of a JSON leak report")
    try:
        loaded = load(path)
    except BadReport as e:
        sys.stderr.write("%s: %s: %s\n" % (PROG, path, e))
        return 1
    add_lines(loaded)
    meta, all_sites = loaded.reports[-1]  # a soft OOM file: folded and svg show its last report
    sites = all_sites
    if kinds is not None:
        sites = [s for s in sites if s.kind is None or s.kind in kinds]
    if fmt == "pprof" and not (output and output != "-") and sys.stdout.isatty():
        usage_error("--format pprof writes a binary (gzipped) file: give --output FILE.pb.gz")
    oom = loaded.tool == "buddyslab-oom"
    if oom and fmt in ("pprof", "heap"):
        usage_error("--format %s exports leak reports; a soft OOM report renders as text, folded or svg" % fmt)
    if fmt == "text":
        text = render_oom_text(loaded, limit) if oom else render_text(meta, sites, limit, all_sites, kinds)
    elif fmt == "folded":
        text = render_folded(meta, sites)
    elif fmt == "svg":
        empty = ("no sites in this soft OOM report" if oom else
                 leak_verdict(meta, sites, all_sites, kinds) or "no records")
        text = render_svg(meta, sites, title, width, empty, oom)
    elif fmt == "heap":
        text = render_heap(meta, sites)
    else:
        text = render_pprof(meta, sites, path)
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    if output and output != "-":
        try:
            with open(output, "wb") as f:
                f.write(data)
        except OSError as e:
            sys.stderr.write("%s: cannot write %s: %s\n" % (PROG, output, e.strerror or e))
            return 1
        sys.stderr.write("%s: wrote %s (%s, %d bytes)\n" % (PROG, output, fmt, len(data)))
    else:
        try:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        except BrokenPipeError:
            try:
                sys.stdout = open(os.devnull, "w")
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""bsl-cli.py: the buddyslab command line (run, stats, top, report, options, test, bench, lib, help).

The `buddyslab` launcher (bash, a few lines) finds python3 and this file and execs it with:
  BSL_PROG            the launcher's name, for messages
  BSL_LAUNCHER_DIR    the launcher's directory (symlinks resolved): a source tree when meson.build
                      and src/ are there, else <prefix>/bin of an install
  BSL_INSTALL_LIBDIR  the libdir meson configured at install (empty in a source tree)
  BSL_CALLER_LD_PRELOAD  the caller's LD_PRELOAD (the launcher runs us without it)
Everything else (flags, option strings, finding and building the library, the supervisor of
`run`) is here; top and report are bsl-top.py and bsl-report.py next to this file. Option strings
are read by the library itself (bsltools.options_explain): no size or option parsing here.
"""
import glob
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bsltools  # noqa: E402  (after the path is set: we run with python3 -I -S)
from bsltools import human  # noqa: E402

PROG = os.environ.get("BSL_PROG") or "buddyslab"
LAUNCHER_DIR = os.environ.get("BSL_LAUNCHER_DIR") or os.path.dirname(HERE)
INSTALL_LIBDIR = os.environ.get("BSL_INSTALL_LIBDIR", "")
CALLER_LD_PRELOAD = os.environ.get("BSL_CALLER_LD_PRELOAD", "")
# A source tree has meson.build and src/ next to the launcher; otherwise we are installed.
SRC_ROOT = LAUNCHER_DIR if (os.path.isfile(os.path.join(LAUNCHER_DIR, "meson.build")) and
                            os.path.isdir(os.path.join(LAUNCHER_DIR, "src"))) else None
BUILD_DIR = os.environ.get("BUDDYSLAB_BUILDDIR") or os.path.join(LAUNCHER_DIR, "build")
# The caller's options: kept for the program, never applied to us or to top and report.
CALLER_OPTIONS = os.environ.pop("BUDDYSLAB_OPTIONS", "")
for _k in ("BSL_PROG", "BSL_LAUNCHER_DIR", "BSL_INSTALL_LIBDIR", "BSL_CALLER_LD_PRELOAD"):
    os.environ.pop(_k, None)

USAGE = """\
usage: {p} <command> [options] [-- ...]

commands:
  run [RUN-OPTIONS] -- PROGRAM [ARGS...]
        run PROGRAM with libbuddyslab.so preloaded (built on first use in a source tree), wait
        for it, say where its reports went; the exit status is PROGRAM's (128+N after signal N)
  stats [RUN-OPTIONS] -- PROGRAM [ARGS...]
        same as: run --stats -- PROGRAM [ARGS...]
  top PID [--interval SECONDS] [--count N] [--once] [--bytes]
        live view of a running process's zones, buddy free lists and size classes (like
        slabtop and /proc/buddyinfo); the process must publish them: start it with
        '{p} run --top -- PROGRAM' or BUDDYSLAB_OPTIONS=publish=1. 'top' alone lists them
  report FILE.json [--format text|folded|svg|pprof|heap] [--output FILE] [--limit N]
        render a saved leak report (from '{p} run --leaks --report FILE.json') or the soft OOM
        reports of --oom-report FILE (FILE.json) as text, as folded stacks for flame-graph
        tools, as a self-contained SVG flame graph, as a gzipped pprof profile (go tool pprof)
        or a gperftools heap profile (google-pprof)
  options [STRING]
        read STRING (default: $BUDDYSLAB_OPTIONS) as the library reads it and print every
        option's value, one key=value line each; a bad entry: the library's message, status 1
  test [--builddir DIR] [-Dopt=value ...] [-- MESON-TEST-ARGS...]
        install what the test suite needs (Debian, as root), configure a fresh build
        directory (default: build-test), compile, run meson test --print-errorlogs
  bench [ARGS...]
        run the benchmark suite (bench/run ARGS...)
  lib   print the path of libbuddyslab.so (building it first if needed)
  help  print this help

run options:
  --stats           print zone/buddy/slab statistics on stderr when PROGRAM exits (stats=1)
  --leaks           track every allocation and report the leaks at exit (leak=1)
  --sample BYTES    track about one allocation per BYTES allocated, cheaper than --leaks
                    (leak_sample=BYTES; sizes like 4096, 512K, 64M)
  --report PATH     write the leak report to PATH instead of stderr, as JSON when PATH ends in
                    .json (leak_report=PATH; implies --leaks unless --sample is given)
  --top, --publish  publish live statistics for '{p} top PID' (publish=1)
  --soft-limit SIZE soft OOM policy: when committed memory crosses SIZE, reclaim, then act
                    (soft_limit=SIZE); sites get tracked, sampled unless --leaks
  --hard-limit SIZE allocations that would commit more than SIZE fail with ENOMEM after reclaim
  --budget PATTERN:SIZE
                    a budget of live bytes for every site with a frame whose function matches
                    PATTERN ('*' wildcards), or tag:NAME:SIZE for bsl_tag_push(NAME); repeatable
  --oom-action report|fail|abort
                    past a limit or budget, after reclaim: rank the sites on stderr (report,
                    the default), refuse the over-budget sites' allocations (fail), or abort
  --oom-report PATH append soft OOM reports to PATH (text) and PATH.json (JSON lines)
  --no-rseq         use the per-thread cache fallback instead of rseq per-CPU caches (rseq=0)
  --options STR     append STR to BUDDYSLAB_OPTIONS as is (e.g. --options decay_ms=1000,thp=0)
  -q, --quiet       print nothing of our own: no "allocator active" line, no summary at exit
The library checks every option value before PROGRAM starts (the same check and message as at
start); a bad one is a usage error.

environment:
  BUDDYSLAB_LIB       use this libbuddyslab.so instead of searching for one
  BUDDYSLAB_BUILDDIR  build directory used by 'run' (default: <launcher dir>/build)
  BUDDYSLAB_OPTIONS   options already set here are kept; the flags above are added after them

Every option: docs/OPTIONS.md. Preloading, services, limits, troubleshooting: LD_PRELOAD.md.
"""

RUN_USAGE = ("{p} run [--stats] [--leaks] [--sample BYTES] [--report PATH] [--top] [--soft-limit SIZE] "
             "[--hard-limit SIZE] [--budget PATTERN:SIZE]... [--oom-action ACTION] [--oom-report PATH] [--no-rseq] "
             "[--options STR] [-q] -- PROGRAM [ARGS...]")
usage_line = RUN_USAGE  # the usage line of the command being parsed


def say(msg):
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    sys.stderr.flush()


def die(msg, code=1):
    say(msg)
    sys.exit(code)


def usage_error(msg):
    bsltools.usage_error(PROG, "usage: %s  (see '%s help')" % (usage_line.format(p=PROG), PROG), msg)


def usage(out=sys.stdout):
    out.write(USAGE.format(p=PROG))


# ---- the library: found (or built) --------------------------------------------------------------
def lib_candidates():
    yield os.path.join(BUILD_DIR, "libbuddyslab.so")
    for d in sorted(glob.glob(os.path.join(LAUNCHER_DIR, "..", "lib", "*", ""))) + \
            [os.path.join(LAUNCHER_DIR, "..", "lib", ""), os.path.join(LAUNCHER_DIR, "..", "lib64", "")]:
        yield d + "libbuddyslab.so"
    if INSTALL_LIBDIR:
        yield os.path.join(INSTALL_LIBDIR, "libbuddyslab.so")
    if shutil.which("pkg-config"):
        p = subprocess.run(["pkg-config", "--variable=libdir", "buddyslab"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if p.returncode == 0 and p.stdout.strip():
            yield os.path.join(p.stdout.strip(), "libbuddyslab.so")


def find_lib():
    """An absolute, canonical path of an existing libbuddyslab.so, or None."""
    env = os.environ.get("BUDDYSLAB_LIB")
    if env:
        if not os.path.isfile(env):
            die("BUDDYSLAB_LIB=%s: no such file" % env)
        lib = env
    else:
        lib = next((c for c in lib_candidates() if os.path.isfile(c)), None)
        if lib is None:
            return None
    # Canonical directory (the program may chdir; ld.so resolves relative paths from cwd).
    lib = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(lib))), os.path.basename(lib))
    if any(c.isspace() or c == ":" for c in lib):
        die("library path '%s' contains a space or colon, which LD_PRELOAD cannot express; use BUDDYSLAB_LIB "
            "with a path without them" % lib)
    return lib


def build_lib():
    if not SRC_ROOT:
        die("libbuddyslab.so not found (looked in %s and %s/../lib); set BUDDYSLAB_LIB=/path/to/libbuddyslab.so"
            % (BUILD_DIR, LAUNCHER_DIR))
    say("libbuddyslab.so not found: building it in %s (first use; this takes a minute)" % BUILD_DIR)
    rc = subprocess.call([os.path.join(SRC_ROOT, "scripts", "setup-deps")])
    if rc:
        sys.exit(rc)
    if not os.path.isfile(os.path.join(BUILD_DIR, "meson-private", "coredata.dat")):
        # Only the library: the test suite and benchmarks have their own dependencies
        # (turn them on with: meson configure build -Dtests=true -Dbench=true).
        say("meson setup %s -Dtests=false -Dbench=false" % BUILD_DIR)
        if subprocess.call(["meson", "setup", BUILD_DIR, SRC_ROOT, "-Dtests=false", "-Dbench=false"],
                           stdout=sys.stderr.fileno()):
            die("meson setup failed")
    say("meson compile -C %s" % BUILD_DIR)
    if subprocess.call(["meson", "compile", "-C", BUILD_DIR], stdout=sys.stderr.fileno()):
        die("meson compile failed")
    say("built %s" % os.path.join(BUILD_DIR, "libbuddyslab.so"))


def ensure_lib():
    lib = find_lib()
    if lib:
        return lib
    build_lib()
    return find_lib() or die("the build finished but %s/libbuddyslab.so is missing" % BUILD_DIR)


def explain(lib, options):
    try:
        return bsltools.options_explain(lib, options)
    except bsltools.OptionsUnavailable as e:
        die(str(e))


# ---- run ----------------------------------------------------------------------------------------
def comma_free(flag, value):
    if "," in value:
        usage_error("%s: '%s' contains a comma, which BUDDYSLAB_OPTIONS cannot express" % (flag, value))


def absolute_file(flag, value):
    """A file the program will write: absolute (it may change directory), in an existing directory."""
    if not value:
        usage_error("%s needs a file name (e.g. %s leaks.json)" % (flag, flag))
    path = value if os.path.isabs(value) else os.path.join(os.getcwd(), value)
    comma_free(flag, path)
    if path.endswith("/") or os.path.isdir(path):
        usage_error("%s: '%s' is a directory; give a file name (e.g. leaks.json)" % (flag, path))
    if not os.path.isdir(os.path.dirname(path)):
        usage_error("%s: directory %s does not exist" % (flag, os.path.dirname(path)))
    return path


def parse_run(argv):
    """The run flags: returns (fragments, quiet, command). fragments: (flag, "key=value") in order,
    each checked by the library later."""
    frags, quiet, leaks, sample, report, publish = [], False, False, None, None, False
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0] if a.startswith("--") else a
        if a == "--":
            i += 1
            break
        if a == "--stats":
            frags.append((a, "stats=1"))
        elif a == "--no-rseq":
            frags.append((a, "rseq=0"))
        elif a == "--leaks":
            leaks = True
        elif a in ("--top", "--publish"):
            publish = True
        elif a in ("-q", "--quiet"):
            quiet = True
        elif a in ("-h", "--help"):
            usage()
            sys.exit(0)
        elif name in ("--sample", "--report", "--soft-limit", "--hard-limit", "--budget", "--oom-action",
                      "--oom-report", "--options"):
            v, i = bsltools.flag_value(argv, i, usage_error)
            if name == "--sample":
                comma_free(name, v)
                sample = v
            elif name == "--report":
                report = absolute_file(name, v)
                if len(report.encode()) > 255:
                    usage_error("--report: the path is longer than 255 bytes")
            elif name in ("--soft-limit", "--hard-limit"):
                comma_free(name, v)
                frags.append((name, "%s=%s" % (name[2:].replace("-", "_"), v)))
            elif name == "--budget":
                comma_free(name, v)
                frags.append((name, "budget=" + v))
            elif name == "--oom-action":
                comma_free(name, v)
                frags.append((name, "oom_action=" + v))
            elif name == "--oom-report":
                frags.append((name, "oom_report=" + absolute_file(name, v)))
            elif v:
                frags.append((name, v))
        elif a.startswith("-"):
            usage_error("unknown option for run: %s" % a)
        else:
            break  # first word of the program (no "--")
        i += 1
    cmd = argv[i:]
    if not cmd:
        usage_error("run: no program given")
    if leaks:
        frags.append(("--leaks", "leak=1"))
    if sample is not None:
        frags.append(("--sample", "leak_sample=" + sample))
    if report is not None:
        frags.append(("--report", "leak_report=" + report))
    if publish:
        frags.append(("--top", "publish=1"))
    return frags, quiet, cmd


def compose(lib, frags):
    """The program's BUDDYSLAB_OPTIONS: the caller's, then the flags' (the last value of a key
    wins), checked by the library. Returns (string, Options)."""
    for flag, frag in frags:
        if flag != "--options" and explain(lib, frag).bad:
            usage_error("%s: the library refused '%s' (its message above)" % (flag, frag.split("=", 1)[1]))
    options = ",".join([s for s in [CALLER_OPTIONS] if s] + [f for _, f in frags])
    opts = explain(lib, options)
    if opts.bad:
        usage_error("the library refused %d entr%s of BUDDYSLAB_OPTIONS=%s (its message%s above)" % (
            opts.bad, "y" if opts.bad == 1 else "ies", options, "" if opts.bad == 1 else "s"))
    # A report needs something that writes one: without --sample, --report means --leaks.
    if any(f == "--report" for f, _ in frags) and not (opts.on("leak") or opts.on("leak_sample")):
        options += ",leak=1"
        opts = explain(lib, options)
    return options, opts


def warn_unpreloadable(prog):
    """Tell the user when the preload will silently not happen (a static program that has buddyslab
    linked in needs none)."""
    path = shutil.which(prog)
    if not path or not os.path.isabs(path):
        return
    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            head = f.read(64)
            if st.st_mode & 0o6000:
                say("warning: %s is setuid/setgid: the dynamic linker ignores LD_PRELOAD for it (see LD_PRELOAD.md)"
                    % path)
                return
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
                return
            # The program headers: a dynamic executable has PT_INTERP (3), a static one does not.
            e = "<" if head[5] == 1 else ">"
            if head[4] == 2:
                phoff, = struct.unpack_from(e + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(e + "HH", head, 54)
            else:
                phoff, = struct.unpack_from(e + "I", head, 28)
                phentsize, phnum = struct.unpack_from(e + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return
    types = [struct.unpack_from(e + "I", table, k * phentsize)[0] for k in range(len(table) // max(phentsize, 1))]
    if types and 3 not in types and not links_buddyslab(path):
        say("warning: %s is statically linked: LD_PRELOAD has no effect; link build/libbuddyslab.a instead "
            "(see LD_PRELOAD.md)" % path)


def links_buddyslab(path):
    """Whether the (static) executable has buddyslab linked in: then it reads BUDDYSLAB_OPTIONS itself
    (the name is in the library's read-only data, stripped or not), and --leaks, --budget, ... work."""
    try:
        with open(path, "rb") as f:
            return b"BUDDYSLAB_OPTIONS\0" in f.read(256 << 20)
    except OSError:
        return False


def cmd_run(argv):
    frags, quiet, cmd = parse_run(argv)
    if not shutil.which(cmd[0]):
        say("%s: command not found (or not executable)" % cmd[0])
        return 127
    lib = ensure_lib()
    options, opts = compose(lib, frags)
    if (opts.on("leak") or opts.on("leak_sample")) and opts.get("leak_report"):
        # The report file is the program's (the process we start, whatever it execs): the library
        # gives every other process of the tree FILE.<pid>.ext (child_reports below finds them).
        options += ",leak_report_parent=%d" % os.getpid()
    # Our library goes first: the first preloaded object that defines malloc wins.
    preload = " ".join([lib] + [p for p in CALLER_LD_PRELOAD.replace(":", " ").split() if p != lib])
    name = os.path.basename(cmd[0])
    if not quiet:
        extra = ("statistics: printed on stderr when %s exits" % name if opts.on("stats") else
                 "statistics: off (add --stats to print them)")
        if opts.on("leak") or opts.on("leak_sample"):
            extra += "; leak report: %s at exit" % (opts.get("leak_report") or "stderr")
        if opts.on("soft_limit") or opts.on("hard_limit") or opts.lists.get("budget"):
            extra += "; soft OOM reports: %s" % (opts.get("oom_report") or "stderr")
        say("allocator active: LD_PRELOAD=%s%s; %s" % (lib, " BUDDYSLAB_OPTIONS=" + options if options else "", extra))
        warn_unpreloadable(cmd[0])
    env = dict(os.environ)
    env["LD_PRELOAD"] = preload
    if options:
        env["BUDDYSLAB_OPTIONS"] = options
    return supervise(cmd, env, opts, quiet)


# ---- the supervisor -----------------------------------------------------------------------------
# Signals sent to us are passed on to the program. A SIGINT, SIGQUIT or SIGHUP that the terminal
# sent to the whole foreground process group already reached the program and is not sent a second
# time. When the program is killed by signal N, the status is 128+N: for signals that do not dump
# core we then kill ourselves with the same signal, so that a calling shell also sees it (a shell
# loop stops on Ctrl-C); for the others we exit with 128+N.
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's ^C, ^\, hangup)
FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGALRM]
TTY_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT}
RERAISE = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGPIPE,
           signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2}


def signame(n):
    try:
        return signal.Signals(n).name
    except ValueError:
        return "signal %d" % n


def supervise(cmd, env, opts, quiet):
    # Block the signals we wait for before the program exists, so none is lost; the program
    # gets our original mask back, and default dispositions for what Python set to "ignore".
    waitset = set(FORWARDED) | {signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waitset)
    start = time.time()
    try:
        pid = os.posix_spawnp(cmd[0], cmd, env, setsigmask=old_mask, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except FileNotFoundError:
        say("%s: command not found" % cmd[0])
        return 127
    except PermissionError:
        say("%s: permission denied (not executable?)" % cmd[0])
        return 126
    except OSError as e:
        say("%s: cannot start it: %s" % (cmd[0], e.strerror or e))
        return 126

    publish = opts.on("publish")
    if publish and not quiet:
        say("%s is pid %d; watch it with: %s top %d" % (os.path.basename(cmd[0]), pid, PROG, pid))

    status = None
    while status is None:
        info = signal.sigtimedwait(waitset, 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD:
            sig = info.si_signo
            from_tty = info.si_code == SI_KERNEL and sig in TTY_SIGNALS
            try:
                same_group = os.getpgid(pid) == os.getpgrp()
            except OSError:
                same_group = False
            if not (from_tty and same_group):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        try:
            wpid, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == pid:
            status = st
    if status is None:
        status = 0
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    code = 128 + sig if sig else os.WEXITSTATUS(status)

    # A program killed by a signal (or that left with _exit) did not remove its statistics page.
    shm = "/dev/shm/buddyslab.%d" % pid
    stale = False
    if publish and os.path.exists(shm):
        try:
            if os.stat(shm).st_uid == os.geteuid():
                os.unlink(shm)
                stale = True
        except OSError:
            pass

    if not quiet:
        summary(cmd[0], pid, sig, code, opts, publish, shm, stale, start)

    if sig:
        sys.stderr.flush()
        sys.stdout.flush()
        if sig in RERAISE:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        os._exit(code)
    return code


def child_reports(path, start):
    """The reports the program's child processes wrote beside path (FILE.<pid>.ext: the library
    never lets them overwrite the program's) during this run, oldest first."""
    d, base = os.path.split(path)
    stem, dot, ext = base.rpartition(".") if "." in base.lstrip(".") else (base, "", "")
    pat = re.compile(re.escape(stem) + r"\.(\d+)" + (re.escape(dot + ext) if dot else "") + "$")
    found = []
    try:
        names = os.listdir(d or ".")
    except OSError:
        return []
    for name in names:
        if pat.match(name):
            full = os.path.join(d, name)
            try:
                mtime = os.stat(full).st_mtime
            except OSError:
                continue
            if mtime >= start - 1:
                found.append((mtime, full))
    return [f for _, f in sorted(found)]


def summary(prog, pid, sig, code, opts, publish, shm, stale, start):
    name = os.path.basename(prog)
    stats = opts.on("stats")
    leak = opts.on("leak") or opts.on("leak_sample")
    oom = opts.on("soft_limit") or opts.on("hard_limit") or bool(opts.lists.get("budget"))
    if not (stats or leak or publish or sig or oom):
        return
    if sig:
        lines = ["%s (pid %d) was killed by signal %d (%s); exit status %d" % (name, pid, sig, signame(sig), code)]
    else:
        head = "%s (pid %d) exited with status %d" % (name, pid, code)
        if code and leak and opts.get("leak_exitcode") == str(code):
            head += " (leak_exitcode: leaks were found)"
        lines = [head]
    if stats:
        lines.append("  statistics: not printed (a signal ends the program before its exit handlers run)" if sig
                     else "  statistics: printed on stderr above")
    if leak:
        report = opts.get("leak_report")
        if not report:
            lines.append("  leak report: not written (the program was killed before it could write one)" if sig else
                         "  leak report: printed on stderr above (save it as JSON with --report FILE.json)")
        else:
            # The tracker replaces %p with the process id (one report per process of a tree).
            path = os.path.abspath(report.replace("%p", str(pid)))
            try:
                st = os.stat(path)
                fresh = st.st_mtime >= start - 1
            except OSError:
                st, fresh = None, False
            if fresh:
                line = "  leak report: %s (%s)" % (path, human(st.st_size))
                if path.endswith(".json"):
                    line += "; render it with: %s report %s [--format text|folded|svg|pprof|heap]" % (PROG, path)
                lines.append(line)
            if "%p" not in report:
                kids = child_reports(path, start)
                if kids:
                    lines.append("  leak reports of %d child process%s (each FILE.<pid>): %s" % (
                        len(kids), "" if len(kids) == 1 else "es", ", ".join(kids[:8]) +
                        (", ... (%d more)" % (len(kids) - 8) if len(kids) > 8 else "")))
            elif sig:
                lines.append("  leak report: %s not written (the program was killed before it could write it)" % path)
            else:
                lines.append("  leak report: %s was not written (see the library's messages above)" % path)
    if oom:
        path = opts.get("oom_report").replace("%p", str(pid))
        if not path:
            lines.append("  soft OOM reports: on stderr above, if a limit or budget was crossed")
        elif os.path.exists(path):
            lines.append("  soft OOM reports: %s (%s), JSON lines in %s.json" % (path, human(os.stat(path).st_size),
                                                                               path))
        else:
            lines.append("  soft OOM reports: none (no limit or budget was crossed)")
    if publish:
        lines.append("  live statistics: published in %s while it ran%s" % (
            shm, " (left behind when it ended; removed)" if stale else ""))
    for line in lines:
        say(line)


# ---- options, lib, test, bench, top, report -----------------------------------------------------
def cmd_options(argv):
    global usage_line
    usage_line = "{p} options [STRING]"
    if argv and argv[0] in ("-h", "--help"):
        usage()
        return 0
    if len(argv) > 1:
        usage_error("options takes one string (key=value,key=value)")
    opts = explain(ensure_lib(), argv[0] if argv else CALLER_OPTIONS)
    for k, vs in opts.lists.items():
        for v in vs:
            print("%s=%s" % (k, v))
    return 1 if opts.bad else 0


def cmd_test(argv):
    global usage_line
    if not SRC_ROOT:
        die("'test' needs the source tree (meson.build next to %s)" % PROG)
    usage_line = "{p} test [--builddir DIR] [-Dopt=value ...] [-- MESON-TEST-ARGS...]"
    builddir, setup_args, i = "build-test", [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a.split("=", 1)[0] == "--builddir":
            builddir, i = bsltools.flag_value(argv, i, usage_error)
        elif a.startswith("-D") and len(a) > 2:
            setup_args.append(a)
        elif a in ("-h", "--help"):
            usage()
            return 0
        else:
            usage_error("unknown option for test: %s" % a)
        i += 1
    test_args = argv[i:]
    if not builddir:
        usage_error("--builddir needs a non-empty value")
    # Relative build directories are relative to the source tree (like ./buddyslab from there).
    builddir = os.path.join(SRC_ROOT, builddir)
    rc = subprocess.call([os.path.join(SRC_ROOT, "scripts", "setup-deps"), "--test"])
    if rc:
        return rc
    # A fresh build directory, but never delete something that is not a meson build directory.
    if os.path.lexists(builddir):
        real = os.path.realpath(builddir)
        if real in ("/", os.path.realpath(SRC_ROOT), os.path.realpath(os.environ.get("HOME") or "/")):
            die("refusing to remove %s" % builddir)
        if os.path.isdir(os.path.join(builddir, "meson-private")) or (os.path.isdir(builddir) and
                                                                       not os.listdir(builddir)):
            say("removing old %s" % builddir)
            shutil.rmtree(builddir)
        else:
            die("%s exists and is not a meson build directory; remove it or pick another --builddir" % builddir)
    say("meson setup %s%s" % (builddir, "".join(" " + a for a in setup_args)))
    if subprocess.call(["meson", "setup", builddir, SRC_ROOT] + setup_args):
        die("meson setup failed")
    say("meson compile -C %s" % builddir)
    if subprocess.call(["meson", "compile", "-C", builddir]):
        die("meson compile failed")
    say("meson test -C %s --print-errorlogs%s" % (builddir, "".join(" " + a for a in test_args)))
    rc = subprocess.call(["meson", "test", "-C", builddir, "--print-errorlogs"] + test_args)
    if rc == 0:
        say("tests passed")
    else:
        say("tests failed (meson test exit status %d); logs: %s/meson-logs/testlog.txt" % (rc, builddir))
    return rc


def cmd_bench(argv):
    runner = os.path.join(SRC_ROOT, "bench", "run") if SRC_ROOT else None
    if not runner or not os.path.isfile(runner):
        say("no benchmark runner: %s does not exist in this tree yet" % (runner or "bench/run (needs the source tree)"))
        return 2
    if os.access(runner, os.X_OK):
        os.execv(runner, [runner] + argv)
    os.execvp("bash", ["bash", runner] + argv)


def exec_script(name, argv):
    script = os.path.join(HERE, name)
    if not os.path.isfile(script):
        die("cannot find %s (looked in %s); reinstall buddyslab" % (name, HERE))
    # -I -S: the user's PYTHONPATH and site packages do not change our scripts; they use the
    # standard library only (and bsltools.py next to them).
    os.execv(sys.executable, [sys.executable, "-I", "-S", script] + argv)


def main(argv):
    global usage_line
    if not argv:
        usage(sys.stderr)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "run":
        return cmd_run(rest)
    if cmd == "stats":
        return cmd_run(["--stats"] + rest)
    if cmd == "top":
        exec_script("bsl-top.py", rest)
    if cmd == "report":
        exec_script("bsl-report.py", rest)
    if cmd == "options":
        return cmd_options(rest)
    if cmd == "test":
        return cmd_test(rest)
    if cmd == "bench":
        return cmd_bench(rest)
    if cmd == "lib":
        usage_line = "{p} lib"
        if rest:
            usage_error("lib takes no arguments")
        print(ensure_lib())
        return 0
    if cmd in ("help", "-h", "--help"):
        usage()
        return 0
    say("unknown command: %s" % cmd)
    usage(sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

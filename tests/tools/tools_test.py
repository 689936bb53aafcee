#!/usr/bin/env python3
"""Tests of the user-facing tools: the `buddyslab` launcher (run, top, report) and its install.

  tools_test.py CHECK --launcher PATH --lib SO [--target EXE] [--layout EXE] [--data DIR]
                [--builddir DIR] [--meson CMD]

CHECK is one of:
  run-status     exit statuses 0 and 3 kept, 128+N after a signal (also when the signal is sent to
                 the launcher and passed on), stdin and stdout pass through, --stats output
  run-usage      bad flags and commands: a usage line and exit status 2; unknown program: 127; bad
                 option values refused with the library's own message; `options` lists them all
  run-children   --report FILE.json with a program that starts others: FILE.json stays the program's,
                 children write FILE.<pid>.json and the summary lists those present
  run-publish    --top: /dev/shm/buddyslab.<pid> exists (mode 0600) while the program runs and is
                 gone after, also when the program is killed by a signal
  run-reports    --leaks --report FILE.json: the summary says where the report went (or that the
                 build has no leak tracker); a written report renders in every format
  top            `buddyslab top PID --count 2 --interval 0.3 --bytes` on a live program: the numbers
                 shown are the program's own bsl_stats_get / buddyinfo / slab classes; the watcher
                 count goes back to 0 after it ends and after Ctrl-C
  top-budgets    with a budget: top's soft OOM section shows it with the live bytes the program reports
  top-errors     a process that does not publish, the launcher's own pid, no such process, another
                 user's page
  top-layout     the page layout top reads is the C structure's (offsetof)
  report         folded output equals the expected file; the SVG is well-formed XML with frame
                 widths proportional to bytes; text output sorted by kind, then bytes; bad files
                 and unknown format versions rejected clearly
  report-clean   'no leaks' only when nothing is lost; 'every block was freed' only when nothing is left
  report-oom     a soft OOM report (JSON lines) renders: every report as text, the last one folded / SVG
  install        `meson install --destdir`: the installed launcher finds its library and scripts

Every failure prints the command, its exit status and its output.
"""
import argparse
import json
import os
import re
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ARGS = None
TIMEOUT = 60


def fail(msg, proc=None):
    print("FAIL: " + msg, flush=True)
    if proc is not None:
        show(proc)
    sys.exit(1)


def show(p):
    print("--- command: %s" % " ".join(map(str, p.args)))
    print("--- exit status: %s" % p.returncode)
    for name in ("stdout", "stderr"):
        v = getattr(p, name, None)
        if v:
            print("--- %s:\n%s" % (name, v if isinstance(v, str) else v.decode("utf-8", "replace")))
    sys.stdout.flush()


def check(cond, msg, proc=None):
    if not cond:
        fail(msg, proc)


def env_base(extra=None):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS", "PYTHONMALLOC"):
        env.pop(k, None)
    env["BUDDYSLAB_LIB"] = ARGS.lib
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


def launcher(*args, stdin_data=None, env=None, timeout=TIMEOUT):
    cmd = [ARGS.launcher] + list(args)
    return subprocess.run(cmd, input=stdin_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env or env_base(), timeout=timeout)


def shell_status(*args):
    """Run the launcher from sh and return the status the shell sees ($?) and the process."""
    cmd = ["sh", "-c", '"$@"; echo "status=$?"', "sh", ARGS.launcher] + list(args)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_base(),
                       timeout=TIMEOUT)
    m = re.search(r"status=(\d+)", p.stdout)
    check(m, "no status line from sh", p)
    return int(m.group(1)), p


# ---- run ----------------------------------------------------------------------------------------
def t_run_status():
    py = sys.executable
    for code in (0, 3):
        p = launcher("run", "--", py, "-c", "import sys; l = [bytearray(200) for _ in range(5000)]; "
                     "print('hello', len(l)); sys.exit(%d)" % code)
        check(p.returncode == code, "exit status %d not kept" % code, p)
        check(p.stdout == "hello 5000\n", "the program's stdout did not pass through", p)
        check("allocator active: LD_PRELOAD=%s" % os.path.realpath(ARGS.lib) in p.stderr,
              "no 'allocator active' line naming the library", p)
    # A status from sh, the simplest real program.
    p = launcher("run", "-q", "--", "sh", "-c", "exit 3")
    check(p.returncode == 3 and p.stderr == "", "sh exit 3 under -q: status 3 and nothing on stderr", p)

    # Killed by a signal: 128+N as the shell sees it; the summary names the signal.
    st, p = shell_status("run", "--", "sh", "-c", "kill -TERM $$")
    check(st == 128 + signal.SIGTERM, "a program killed by SIGTERM: expected status 143, got %d" % st, p)
    check("killed by signal 15 (SIGTERM)" in p.stderr, "the summary does not name the signal", p)
    st, p = shell_status("run", "--", "sh", "-c", "kill -KILL $$")
    check(st == 128 + signal.SIGKILL, "a program killed by SIGKILL: expected 137, got %d" % st, p)
    st, p = shell_status("run", "--", py, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    check(st == 128 + signal.SIGSEGV, "a program killed by SIGSEGV: expected 139, got %d" % st, p)

    # stdin passes through (a background child would get /dev/null).
    p = launcher("run", "-q", "--", "cat", stdin_data="line one\nline two\n")
    check(p.returncode == 0 and p.stdout == "line one\nline two\n", "stdin did not reach the program", p)

    # --stats: the library's report at exit, and the summary says where it went.
    p = launcher("run", "--stats", "--", py, "-c", "l = [bytearray(300) for _ in range(20000)]; print(len(l))")
    check(p.returncode == 0 and p.stdout == "20000\n", "--stats changed the program's output or status", p)
    for needle in ("=== buddyslab", "--- zoneinfo ---", "--- buddyinfo", "--- slabinfo ---", "--- totals ---",
                   "statistics: printed on stderr when python", "statistics: printed on stderr above"):
        check(needle in p.stderr, "--stats: %r missing from stderr" % needle, p)
    p = launcher("stats", "--", py, "-c", "print(1)")
    check(p.returncode == 0 and "--- slabinfo ---" in p.stderr, "'stats' is not run --stats", p)

    # Signals sent to the launcher reach the program: SIGTERM, then SIGINT (from kill, not a
    # terminal). The launcher then dies of the same signal.
    for sig in (signal.SIGTERM, signal.SIGINT):
        with tempfile.TemporaryDirectory() as d:
            ready = os.path.join(d, "ready")
            script = ("import os, time\nopen(%r, 'w').write(str(os.getpid()))\ntime.sleep(30)\n" % ready)
            proc = subprocess.Popen([ARGS.launcher, "run", "-q", "--", py, "-c", script], env=env_base(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.time() + 20
            while not (os.path.exists(ready) and open(ready).read()) and time.time() < deadline:
                time.sleep(0.05)
            check(os.path.exists(ready), "the program did not start")
            child = int(open(ready).read())
            t0 = time.time()
            proc.send_signal(sig)
            try:
                out, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                fail("the launcher did not end within 15 s of %s" % sig.name)
            check(time.time() - t0 < 10, "the program was not stopped by the forwarded %s" % sig.name)
            check(proc.returncode == -sig, "after %s the launcher's status is %s, expected death by the same "
                  "signal" % (sig.name, proc.returncode))
            check(not os.path.exists("/proc/%d" % child) or open("/proc/%d/stat" % child).read().split()[2] == "Z",
                  "the program (pid %d) still runs after the launcher got %s" % (child, sig.name))
    print("ok: run keeps exit statuses (0, 3, 128+N), passes signals, stdin and stdout; --stats reports")


def t_run_children():
    """--report FILE.json (no %p) with a program that starts others: the file the launcher names
    stays the program's; a child process writes FILE.<pid>.json, listed by the summary when it is
    there before the program exits (issue 16: `bash -c '(sleep 1; perl -e 1) & echo done'` left
    perl's report in the file named as bash's)."""
    py = sys.executable
    child = "%s -c \"import os; open('py.pid', 'w').write(str(os.getpid()))\"" % py

    def wait_for(path, what, p):
        deadline = time.time() + 30
        while time.time() < deadline and not os.path.exists(path):
            time.sleep(0.1)
        check(os.path.exists(path), "%s never appeared (%s)" % (what, sorted(os.listdir(os.path.dirname(path)))), p)

    def check_kids(d, stem, files, p):
        for f in files:
            if re.fullmatch(re.escape(stem) + r"\.\d+\.json", f):
                pid = json.load(open(os.path.join(d, f)))["pid"]
                check(f == "%s.%d.json" % (stem, pid), "%s holds the report of pid %s" % (f, pid), p)

    with tempfile.TemporaryDirectory() as d:
        # A child that outlives the program: its report comes after the summary.
        p = subprocess.run([ARGS.launcher, "run", "--leaks", "--report", "f.json", "--", "bash", "-c",
                            "(sleep 1; %s) & echo done" % child], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env_base(), timeout=TIMEOUT)
        m = re.search(r"bash \(pid (\d+)\) exited with status 0", p.stderr)
        check(p.returncode == 0 and m and "leak report: %s" % os.path.join(d, "f.json") in p.stderr,
              "the launcher names bash's report", p)
        wait_for(os.path.join(d, "py.pid"), "py.pid (the background python)", p)
        kid = open(os.path.join(d, "py.pid")).read()
        wait_for(os.path.join(d, "f.%s.json" % kid), "python's report f.%s.json" % kid, p)
        time.sleep(0.3)
        files = sorted(os.listdir(d))
        owner = json.load(open(os.path.join(d, "f.json")))["pid"]
        check(owner == int(m.group(1)), "f.json holds the report of pid %s, not bash's (%s); files %s" % (
            owner, m.group(1), files), p)
        check_kids(d, "f", files, p)
    with tempfile.TemporaryDirectory() as d:
        # A child that ends before the program: the summary lists its report.
        p = subprocess.run([ARGS.launcher, "run", "--leaks", "--report", "g.json", "--", "bash", "-c",
                            "%s; echo done" % child], cwd=d, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env_base(), timeout=TIMEOUT)
        kid = open(os.path.join(d, "py.pid")).read()
        path = os.path.join(d, "g.%s.json" % kid)
        check(p.returncode == 0 and os.path.exists(path), "python's report g.<pid>.json: %s" % os.listdir(d), p)
        check("child process" in p.stderr and path in p.stderr, "the summary lists the child's report %s" % path, p)
        m = re.search(r"bash \(pid (\d+)\) exited", p.stderr)
        check(json.load(open(os.path.join(d, "g.json")))["pid"] == int(m.group(1)), "g.json is bash's", p)
        check_kids(d, "g", sorted(os.listdir(d)), p)
    print("ok: --report FILE.json stays the program's; children write FILE.<pid>.json, listed when present")


def t_run_usage():
    py = sys.executable
    cases = [
        ("run", "--bogus", "--", "true"),
        ("run",),
        ("run", "--"),
        ("run", "--sample", "abc", "--", "true"),
        ("run", "--sample", "12Q", "--", "true"),
        ("run", "--sample"),
        ("run", "--report"),
        ("run", "--report=", "--", "true"),
        ("run", "--report", "/nonexistent-dir-for-test/x.json", "--", "true"),
        ("run", "--report", "/tmp/a,b.json", "--", "true"),
        ("run", "--options"),
        ("run", "--soft-limit", "lots", "--", "true"),
        ("run", "--hard-limit"),
        ("run", "--budget", "nosize", "--", "true"),
        ("run", "--budget", "f:12Q", "--", "true"),
        ("run", "--budget", "a:1M,b:2M", "--", "true"),
        ("run", "--oom-action", "explode", "--", "true"),
        ("run", "--oom-report", "/nonexistent-dir-for-test/o.txt", "--", "true"),
        ("top", "--interval", "0", "1"),
        ("top", "notapid"),
        ("top", "1", "--count", "0"),
        ("top", "--bogus", "1"),
        ("report",),
        ("report", "x.json", "--format", "png"),
        ("report", "x.json", "--bogus"),
        ("lib", "extra"),
        ("test", "--bogus"),
    ]
    for args in cases:
        p = launcher(*args)
        check(p.returncode == 2, "'%s' should be a usage error (status 2)" % " ".join(args), p)
        check(re.search(r"^usage: .*buddyslab", p.stderr, re.M), "'%s': no usage line on stderr" % " ".join(args), p)
    p = launcher("no-such-command")
    check(p.returncode == 2 and "unknown command" in p.stderr, "unknown command: status 2 and says so", p)
    p = launcher()
    check(p.returncode == 2 and "usage:" in p.stderr, "no command: usage and status 2", p)
    p = launcher("run", "--", "no-such-program-xyz")
    check(p.returncode == 127 and "command not found" in p.stderr, "an unknown program: 127", p)
    p = launcher("help")
    check(p.returncode == 0 and "report FILE.json" in p.stdout and "top PID" in p.stdout, "help lists top and report", p)
    p = launcher("run", "--help")
    check(p.returncode == 0 and "--leaks" in p.stdout and "--top" in p.stdout, "run --help lists the new flags", p)
    for sub in ("top", "report"):
        p = launcher(sub, "--help")
        check(p.returncode == 0 and ("buddyslab %s" % sub) in p.stdout, "%s --help" % sub, p)
    # One parser of options, the library's: a bad value is refused with the library's own line
    # (the one a program prints at start), before anything runs.
    for args, line in ((("--sample", "12Q"), "option 'leak_sample': bad value '12Q' (expected a size"),
                       (("--soft-limit", "lots"), "option 'soft_limit': bad value 'lots'"),
                       (("--budget", "nosize"), "option 'budget': bad value 'nosize'"),
                       (("--oom-action", "explode"), "option 'oom_action': bad value 'explode'"),
                       (("--options", "decay_ms=soon"), "option 'decay_ms': bad value 'soon'"),
                       (("--options", "no_such_key=1"), "unknown option 'no_such_key'")):
        with tempfile.TemporaryDirectory() as d:
            mark = os.path.join(d, "ran")
            p = launcher("run", *args, "--", "touch", mark)
            check(p.returncode == 2 and line in p.stderr and not os.path.exists(mark),
                  "run %s: status 2, the library's line '%s', and the program not started" % (" ".join(args), line), p)
    p = launcher("run", "-q", "--", "true", env=env_base({"BUDDYSLAB_OPTIONS": "thp=maybe"}))
    check(p.returncode == 2 and "option 'thp': bad value 'maybe'" in p.stderr,
          "a bad value already in BUDDYSLAB_OPTIONS is refused by the library", p)
    # `options`: every option of docs/OPTIONS.md resolved by the library, sizes in bytes, lists
    # one line per value; the caller's BUDDYSLAB_OPTIONS by default.
    p = launcher("options", "leak_sample=64K,budget=f:1M,stats,budget=tag:t:2G,oom_action=fail")
    got = dict(l.split("=", 1) for l in p.stdout.splitlines() if not l.startswith("budget="))
    documented = set(re.findall(r"^\| `(\w+)` \|", open(os.path.join(ARGS.data, "..", "..", "docs", "OPTIONS.md")).read(),
                                re.M))
    check(p.returncode == 0 and p.stderr == "" and set(got) | {"budget"} == documented and
          got["leak_sample"] == "65536" and got["stats"] == "1" and got["oom_action"] == "fail" and
          [l for l in p.stdout.splitlines() if l.startswith("budget=")] == ["budget=f:1M", "budget=tag:t:2G"],
          "options: every documented option (%s) with its value" % sorted(documented), p)
    p = launcher("options", env=env_base({"BUDDYSLAB_OPTIONS": "decay_ms=5,bogus"}))
    check(p.returncode == 1 and "\ndecay_ms=5\n" in p.stdout and "unknown option 'bogus'" in p.stderr,
          "options reads BUDDYSLAB_OPTIONS by default; a bad entry: the library's line, status 1", p)
    # --sample accepts the library's size syntax.
    p = launcher("run", "-q", "--sample", "64K", "--", py, "-c", "pass")
    check(p.returncode == 0, "--sample 64K should be accepted", p)
    print("ok: %d bad command lines give a usage line and status 2" % len(cases))


def start_target(extra_run_args, n, size, via_launcher=True, env_extra=None):
    if via_launcher:
        cmd = [ARGS.launcher, "run"] + extra_run_args + ["--", ARGS.target, str(n), str(size)]
        env = env_base(env_extra)
    else:
        cmd = [ARGS.target, str(n), str(size)]
        env = env_base(env_extra)
        env["LD_PRELOAD"] = ARGS.lib
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            text=True)
    lines = []
    deadline = time.time() + 30
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line == "ready\n":
            break
    if not lines or lines[-1] != "ready\n":
        proc.kill()
        out, err = proc.communicate()
        fail("the test program did not get ready:\n%s%s\n--- stderr:\n%s" % ("".join(lines), out, err))
    return proc, lines


def parse_target(lines):
    info = {"buddy": {}}
    for line in lines:
        if line.startswith("pid "):
            info["pid"] = int(line.split()[1])
        elif line.startswith("stats "):
            info["stats"] = {k: int(v) for k, v in (kv.split("=") for kv in line.split()[1:])}
        elif line.startswith("buddy "):
            parts = line.split()
            info["buddy"][parts[1]] = [int(x) for x in parts[2:]]
        elif line.startswith("{"):
            info["json"] = json.loads(line)
    return info


def stop_target(proc):
    try:
        out, err = proc.communicate(timeout=30)  # closes its stdin: the program then exits
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        fail("the test program did not exit after its stdin closed")
    return proc.returncode, out, err


def t_run_publish():
    proc, lines = start_target(["--top"], 10, 64)
    pid = parse_target(lines)["pid"]
    path = "/dev/shm/buddyslab.%d" % pid
    try:
        check(os.path.exists(path), "--top: %s does not exist while the program runs" % path)
        st = os.stat(path)
        check(stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid(),
              "%s: mode %o owner %d, expected 0600 and us" % (path, stat.S_IMODE(st.st_mode), st.st_uid))
    finally:
        rc, out, err = stop_target(proc)
    check(rc == 0, "the program under --top exited with %d:\n%s" % (rc, err))
    check("watch it with: buddyslab top %d" % pid in err, "--top: the launcher did not say how to watch it:\n" + err)
    check("publish=1" in err, "--top did not set publish=1:\n" + err)
    check(not os.path.exists(path), "%s is still there after the program exited" % path)

    # Killed by a signal: the library cannot remove its page; the launcher does.
    proc, lines = start_target(["--top"], 10, 64)
    pid = parse_target(lines)["pid"]
    path = "/dev/shm/buddyslab.%d" % pid
    check(os.path.exists(path), "--top: %s missing" % path)
    os.kill(pid, signal.SIGKILL)
    rc, out, err = stop_target(proc)
    check(rc == -signal.SIGKILL, "launcher status after the program's SIGKILL: %s" % rc)
    check(not os.path.exists(path), "%s left behind after SIGKILL:\n%s" % (path, err))
    check("removed" in err, "the summary does not say the stale page was removed:\n" + err)
    print("ok: --top publishes /dev/shm/buddyslab.PID (0600) while running; gone after exit and after SIGKILL")


def t_run_reports():
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        report = os.path.join(d, "leaks.json")
        prog = ("import ctypes\nlibc = ctypes.CDLL(None)\nlibc.malloc.restype = ctypes.c_void_p\n"
                "for i in range(100): libc.malloc(1000)\nprint('done')\n")
        # A relative --report is made absolute (the program may chdir).
        p = subprocess.run([ARGS.launcher, "run", "--leaks", "--report", "leaks.json", "--", py, "-c", prog],
                           cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_base(),
                           timeout=TIMEOUT)
        check(p.stdout == "done\n", "the program's output changed under --leaks", p)
        check("leak=1" in p.stderr and "leak_report=%s" % report in p.stderr,
              "--leaks --report did not set leak=1,leak_report=ABSOLUTE", p)
        if "not available in this build" in p.stderr:
            check(p.returncode == 0, "status", p)
            check("leak report: %s was not written" % report in p.stderr,
                  "without a leak tracker the summary must say the report was not written", p)
            print("ok: --leaks --report: this build has no leak tracker, and the summary says the report was "
                  "not written")
            return
        check("leak report: %s" % report in p.stderr and os.path.exists(report),
              "the summary does not point at the written report", p)
        for fmt in ("text", "folded", "svg"):
            r = launcher("report", report, "--format", fmt)
            check(r.returncode == 0, "the tracker's report does not render as %s" % fmt, r)
        r = launcher("report", report, "--format", "svg")
        ET.fromstring(r.stdout)
        r = launcher("report", report)
        check("100 blocks" in r.stdout and "100000 bytes" in r.stdout,
              "the report of 100 leaked blocks of 1000 bytes does not show them", r)
        # --sample, and %p in the report path (the tracker writes one report per process).
        p = subprocess.run([ARGS.launcher, "run", "--sample", "4K", "--report", "s-%p.json", "--", py, "-c", prog],
                           cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_base(),
                           timeout=TIMEOUT)
        m = re.search(r"leak report: (\S+/s-(\d+)\.json) ", p.stderr)
        check(p.returncode == 0 and "leak_sample=4K" in p.stderr and m and os.path.exists(m.group(1)),
              "--sample 4K --report s-%p.json: the summary should name the written file", p)
        r = launcher("report", m.group(1))
        check(r.returncode == 0 and "estimates" in r.stdout, "a sampled report says its counts are estimates", r)
        # --report without --leaks means --leaks.
        p = subprocess.run([ARGS.launcher, "run", "--report", "l2.json", "--", py, "-c", prog], cwd=d,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_base(), timeout=TIMEOUT)
        check("leak=1" in p.stderr, "--report alone does not turn leak tracking on", p)
    # The soft OOM flags: a budget crossed by a Python program, its report where --oom-report says.
    with tempfile.TemporaryDirectory() as d:
        prog = "x = [bytearray(1000) for i in range(30000)]\nprint('done')\n"
        p = subprocess.run([ARGS.launcher, "run", "--soft-limit", "16M", "--budget", "tag:none:1G", "--oom-report",
                            "oom.txt", "--", py, "-c", prog], cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env_base(), timeout=TIMEOUT)
        rep = os.path.join(d, "oom.txt")
        check(p.returncode == 0 and p.stdout == "done\n", "oom_action=report must not change the program", p)
        check("soft_limit=16M" in p.stderr and "budget=tag:none:1G" in p.stderr and "oom_report=%s" % rep in p.stderr,
              "--soft-limit/--budget/--oom-report must set soft_limit, budget and an absolute oom_report", p)
        check(os.path.exists(rep) and "soft limit crossed" in open(rep).read(), "the soft limit report in oom.txt", p)
        check(os.path.exists(rep + ".json") and "soft OOM reports: %s" % rep in p.stderr,
              "the JSON beside it, and the summary naming the file", p)
        for fmt in ("text", "folded", "svg"):
            r = launcher("report", rep + ".json", "--format", fmt)
            check(r.returncode == 0 and (fmt != "text" or "soft limit crossed" in r.stdout),
                  "the soft OOM JSON lines render as %s" % fmt, r)
    print("ok: --leaks --report writes a report that renders as text, folded and svg; the soft OOM flags work")


# ---- top ----------------------------------------------------------------------------------------
TOP_TOTALS = {"reserved": "reserved", "committed": "committed", "allocated": "allocated", "RSS": "rss",
              "slab": "slab", "large": "large", "huge": "huge", "cached": "cached", "free dirty": "free_dirty",
              "free clean": "free_clean", "purged": "purged"}


def parse_top(text):
    """The blocks `buddyslab top --bytes` printed, each as a dict."""
    blocks = [b for b in re.split(r"(?m)^(?=buddyslab top - pid )", text) if b.strip()]
    out = []
    for b in blocks:
        blk = {"totals": {}, "buddy": {}, "classes": {}, "budgets": {}, "oom": None, "sites": [], "sites_head": None}
        m = re.match(r"buddyslab top - pid (\d+) \((.*?)\)  refresh (\d+)/(\d+)  page updated (\d+) ms ago, "
                     r"update #(\d+)", b)
        check(m, "top: unexpected header:\n" + b)
        blk["pid"], blk["refresh"], blk["of"], blk["update"] = int(m.group(1)), int(m.group(3)), int(m.group(4)), \
            int(m.group(6))
        section = None
        for line in b.split("\n"):
            if line.startswith("Memory ("):
                section = "mem"
            elif line.startswith("Buddy free blocks"):
                section = "buddy"
            elif line.startswith("Size classes"):
                section = "classes"
            elif line.startswith("History ("):
                section = "history"
            elif line.startswith("Top allocation sites"):
                section = "sites"
                blk["sites_head"] = line
            elif section == "sites" and re.match(r"  +\d+ +~?\d+ +\d+ +\S+  ", line):
                p = line.split(None, 4)
                blk["sites"].append({"live": int(p[0]), "blocks": int(p[1].lstrip("~")), "allocs": int(p[2]),
                                     "growth": p[3], "site": p[4]})
            elif line.startswith("Soft OOM ("):
                section = "oom"
                blk["oom"] = line
            elif section == "oom" and re.match(r"  \S+ +\d+ +(\d+|none) +(\d+%|-) +\d+$", line):
                p = line.split()
                blk["budgets"][p[0]] = {"live": int(p[1]), "budget": 0 if p[2] == "none" else int(p[2]),
                                        "failed": int(p[4])}
            elif section == "mem" and line.startswith("  "):
                for k, v in re.findall(r"(free dirty|free clean|[A-Za-z]+) (\d+)", line):
                    blk["totals"][TOP_TOTALS[k]] = int(v)
            elif section == "buddy" and re.match(r"  (LOW32|NORMAL) ", line):
                parts = line.split()
                blk["buddy"][parts[0]] = [int(x) for x in parts[1:12]]
                blk["buddy_free_" + parts[0]] = int(parts[12])
            elif section == "classes" and re.match(r"\s+\d", line):
                p = line.split()
                blk["classes"][int(p[0])] = {"inuse": int(p[1]), "objs": int(p[2]), "slabs": int(p[4]),
                                             "order": int(p[5]), "mem": int(p[6])}
        out.append(blk)
    return out


def read_watchers(pid):
    with open("/dev/shm/buddyslab.%d" % pid, "rb") as f:
        data = f.read(64)
    return struct.unpack_from("<Q", data, 24)[0]


def t_top():
    n, size = 2000, 3000
    for mode in ("exact", "rseq"):
        run_args = ["--top", "--options", "decay_ms=-1"]
        if mode == "exact":
            # Per-thread caches: the tick thread cannot empty the main thread's cache, so every
            # number stays what the program printed. (With rseq it may flush the CPU's cache that
            # it runs on, which moves objects between caches and slabs: see the second round.)
            run_args.insert(1, "--no-rseq")
        proc, lines = start_target(run_args, n, size)
        try:
            info = parse_target(lines)
            pid = info["pid"]
            p = launcher("top", str(pid), "--count", "2", "--interval", "0.3", "--bytes", timeout=30)
            check(p.returncode == 0, "top failed", p)
            blocks = parse_top(p.stdout)
            check(len(blocks) == 2, "top --count 2 printed %d blocks" % len(blocks), p)
            check([b["refresh"] for b in blocks] == [1, 2] and all(b["of"] == 2 for b in blocks),
                  "refresh counters", p)
            check(blocks[1]["update"] > blocks[0]["update"], "the page was not refreshed between the two refreshes", p)
            check(read_watchers(pid) == 0, "the watcher count is %d after top ended" % read_watchers(pid), p)
            s = info["stats"]
            slabs = {c["size"]: c for c in info["json"]["slabs"] if c["zone"] != "LOW32"}
            for b in blocks:
                t = b["totals"]
                check(b["pid"] == pid, "top shows pid %d" % b["pid"], p)
                # Consistency of what top shows.
                check(t["committed"] == t["slab"] + t["large"] + t["huge"] + t["free_dirty"],
                      "committed != slab + large + huge + free dirty", p)
                check(b["buddy_free_NORMAL"] == sum(c << o for o, c in enumerate(b["buddy"]["NORMAL"])) * 4096,
                      "buddy free column != sum of the orders", p)
                check(b["buddy_free_NORMAL"] + b["buddy_free_LOW32"] == t["free_dirty"] + t["free_clean"],
                      "free blocks != free dirty + free clean", p)
                row = b["classes"].get(3072)
                check(row is not None, "no 3072-byte class row", p)
                check(row["inuse"] >= n and row["objs"] >= row["inuse"], "3072 class: %d in use < %d" % (row["inuse"], n), p)
                check(row["mem"] == row["slabs"] * (4096 << row["order"]), "class memory != slabs << order", p)
                # Against the program's own bsl_stats_get: always equal.
                for k in ("reserved", "allocated", "large", "huge"):
                    check(t[k] == s[k], "%s: top shows %d, bsl_stats_get said %d" % (k, t[k], s[k]), p)
                check(abs(t["rss"] - s["rss"]) <= 4 << 20, "RSS: top %d vs program %d" % (t["rss"], s["rss"]), p)
                check(t["allocated"] >= n * 3072, "allocated %d < %d blocks of 3072" % (t["allocated"], n), p)
                if mode == "exact":
                    for k in ("committed", "slab", "cached", "free_dirty", "free_clean", "purged"):
                        check(t[k] == s[k], "%s: top shows %d, bsl_stats_get said %d" % (k, t[k], s[k]), p)
                    for z in ("LOW32", "NORMAL"):
                        check(b["buddy"][z] == info["buddy"][z], "buddyinfo %s: top %s, program %s"
                              % (z, b["buddy"][z], info["buddy"][z]), p)
                    check(set(b["classes"]) == set(slabs), "classes shown %s, program's %s"
                          % (sorted(b["classes"]), sorted(slabs)), p)
                    for sz, c in slabs.items():
                        r = b["classes"][sz]
                        check((r["inuse"], r["slabs"], r["order"]) == (c["inuse"], c["slabs"], c["order"]),
                              "class %d: top inuse/slabs/order %s, program %s" % (
                                  sz, (r["inuse"], r["slabs"], r["order"]), (c["inuse"], c["slabs"], c["order"])), p)
                else:
                    check(row["inuse"] >= n, "rseq: 3072 class in use", p)
            check(blocks[-1]["oom"] is None, "no soft OOM section without a limit or budget", p)
            mems = [c["mem"] for c in blocks[-1]["classes"].values()]
            check(mems == sorted(mems, reverse=True), "classes are not sorted by memory: %s" % mems, p)

            # Human units by default, and Ctrl-C (SIGINT) gives the watcher count back.
            tp = subprocess.Popen([ARGS.launcher, "top", str(pid), "--interval", "0.2"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env_base())
            deadline = time.time() + 10
            while read_watchers(pid) == 0 and time.time() < deadline:
                time.sleep(0.02)
            check(read_watchers(pid) == 1, "a running top does not hold the watcher count")
            time.sleep(0.5)
            tp.send_signal(signal.SIGINT)
            out, err = tp.communicate(timeout=10)
            check(tp.returncode == 0, "top after SIGINT: status %s\n%s" % (tp.returncode, err))
            check(re.search(r"allocated \d+\.\d (KiB|MiB)", out), "top without --bytes shows no human sizes:\n" + out)
            check(read_watchers(pid) == 0, "the watcher count is %d after top got SIGINT" % read_watchers(pid))
        finally:
            rc, out, err = stop_target(proc)
        check(rc == 0, "the test program exited with %d:\n%s" % (rc, err))
        # The process is gone: top says so.
        p = launcher("top", str(pid), "--once")
        check(p.returncode == 1 and "no process" in p.stderr, "top on an exited process", p)
    print("ok: top shows the program's own numbers (exact with per-thread caches; totals, classes and "
          "consistency with rseq), two refreshes, watcher count released")


def t_top_budgets():
    # The soft OOM section: a budget on 'main' (every block of the target is allocated under main),
    # full tracking so that the numbers are exact, compared with the program's own JSON statistics.
    n, size = 2000, 3000
    proc, lines = start_target(["--top", "--no-rseq", "--budget", "main:1G", "--options", "decay_ms=-1,oom_sample=0"],
                               n, size)
    try:
        info = parse_target(lines)
        pid = info["pid"]
        p = launcher("top", str(pid), "--count", "1", "--bytes", timeout=30)
        check(p.returncode == 0, "top failed", p)
        blk = parse_top(p.stdout)[0]
        check(blk["oom"] and "tracking every allocation" in blk["oom"], "top shows the soft OOM section", p)
        mine = {b["name"]: b for b in info["json"]["oom"]["budgets"]}
        check("main" in blk["budgets"] and "main" in mine, "budget 'main' shown: %s" % blk["budgets"], p)
        got, want = blk["budgets"]["main"], mine["main"]
        check(got["budget"] == 1 << 30 and got["live"] == want["live_bytes"] and got["live"] >= n * size,
              "budget 'main': top %s, the program's statistics %s" % (got, want), p)
    finally:
        rc, out, err = stop_target(proc)
    check(rc == 0, "the test program exited with %d:\n%s" % (rc, err))
    print("ok: top shows the soft OOM section; budget 'main' holds %d bytes, as the program says" % got["live"])


def t_top_sites():
    # With the leak tracker on (every allocation), top lists the allocation sites by live bytes:
    # the target's blocks all come from top_target_fill, so that site leads with exactly n blocks
    # of `size` bytes; between two refreshes nothing is allocated, so its growth is zero.
    n, size = 1500, 5000
    proc, lines = start_target(["--top", "--leaks"], n, size)
    try:
        pid = parse_target(lines)["pid"]
        p = launcher("top", str(pid), "--count", "2", "--interval", "0.3", "--bytes", timeout=60)
        check(p.returncode == 0, "top failed", p)
        blocks = parse_top(p.stdout)
        check(len(blocks) == 2, "two refreshes", p)
        first, second = blocks
        check(first["sites_head"] and "every allocation" in first["sites_head"],
              "top shows no allocation sites section with tracking on", p)
        check(first["sites"], "no site rows", p)
        top = first["sites"][0]
        check("top_target_fill" in top["site"], "the top site is not named top_target_fill: %s" % top, p)
        check(top["live"] == n * size and top["blocks"] == n and top["allocs"] >= n,
              "top site: live %d in %d blocks, the program holds %d in %d" % (top["live"], top["blocks"], n * size, n), p)
        lives = [x["live"] for x in first["sites"]]
        check(lives == sorted(lives, reverse=True), "sites not sorted by live bytes: %s" % lives, p)
        again = [x for x in second["sites"] if "top_target_fill" in x["site"]]
        check(again and again[0]["growth"] in ("+0", "-0"),
              "second refresh: growth of a site that did not allocate should be 0: %s" % again, p)
    finally:
        rc, out, err = stop_target(proc)
    check(rc == 0, "the test program exited with %d:\n%s" % (rc, err))
    # Without tracking: no sites section.
    proc, lines = start_target(["--top"], 10, 64)
    try:
        pid = parse_target(lines)["pid"]
        p = launcher("top", str(pid), "--count", "1", "--bytes", timeout=30)
        check(p.returncode == 0 and parse_top(p.stdout)[0]["sites_head"] is None,
              "top shows a sites section without tracking", p)
    finally:
        stop_target(proc)
    print("ok: top lists the allocation sites: top_target_fill %d bytes in %d blocks, growth 0" % (n * size, n))


def t_top_errors():
    # Preloaded but not publishing.
    proc, lines = start_target([], 10, 64, via_launcher=False)
    try:
        pid = parse_target(lines)["pid"]
        p = launcher("top", str(pid), "--once")
        check(p.returncode == 1, "top on a process that does not publish: status 1", p)
        check("does not publish" in p.stderr and "buddyslab run --top" in p.stderr and "publish=1" in p.stderr,
              "the error does not say how to publish", p)
        # Listing: no argument.
        p = launcher("top")
        check(p.returncode == 2 and "usage:" in p.stderr, "top without a pid: usage, status 2", p)
    finally:
        stop_target(proc)

    # The launcher's own pid (it loads the library to read options, and publishes nothing): top
    # names the program it runs instead.
    proc, lines = start_target(["--top"], 10, 64)
    try:
        pid = parse_target(lines)["pid"]
        p = launcher("top", str(proc.pid), "--once")
        check(p.returncode == 1 and "`buddyslab run` launcher" in p.stderr and ("pid %d" % pid) in p.stderr,
              "top on the launcher's pid %d: status 1, names the program's pid %d" % (proc.pid, pid), p)
    finally:
        stop_target(proc)

    # A process that does not run buddyslab at all.
    sleeper = subprocess.Popen(["sleep", "30"], env=env_base())
    try:
        p = launcher("top", str(sleeper.pid), "--once")
        check(p.returncode == 1 and "does not run buddyslab" in p.stderr, "top on a process without buddyslab", p)
    finally:
        sleeper.kill()
        sleeper.wait()

    # Another user's page: the file is 0600.
    proc, lines = start_target(["--top"], 10, 64)
    try:
        pid = parse_target(lines)["pid"]
        path = "/dev/shm/buddyslab.%d" % pid
        if os.geteuid() == 0:
            # Root may open anything: watch as an unprivileged user instead.
            import pwd
            try:
                nobody = pwd.getpwnam("nobody")
            except KeyError:
                nobody = None
            script = os.path.join(os.path.dirname(os.path.realpath(ARGS.launcher)), "scripts", "bsl-top.py")
            p = None
            if nobody:
                def drop():
                    os.setgid(nobody.pw_gid)
                    os.setuid(nobody.pw_uid)
                py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
                try:
                    p = subprocess.run([py, "-I", "-S", script, str(pid), "--once"], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, preexec_fn=drop, cwd="/", timeout=TIMEOUT)
                except PermissionError as e:
                    p = None
                    print("skip: user nobody cannot run %s (%s): another user's page not tested" % (py, e))
            if p is not None and p.returncode == 2 and "can't open file" in p.stderr:
                print("skip: user nobody cannot read %s: another user's page not tested" % script)
            elif p is not None:
                check(p.returncode == 1, "another user's page: status 1", p)
                check("permission denied" in p.stderr and "same user" in p.stderr,
                      "another user's page: the error does not say why", p)
                print("ok: another user's page (watched as nobody) is refused with a clear message")
            if not nobody:
                print("skip: no 'nobody' user to test another user's page")
        else:
            os.chmod(path, 0)
            p = launcher("top", str(pid), "--once")
            os.chmod(path, 0o600)
            check(p.returncode == 1 and "permission denied" in p.stderr and "same user" in p.stderr,
                  "an unreadable page: the error does not say why", p)
    finally:
        stop_target(proc)
    print("ok: top explains a process that does not publish, one without buddyslab, one that is gone")


def t_top_layout():
    c = subprocess.run([ARGS.layout], stdout=subprocess.PIPE, text=True, check=True).stdout
    p = launcher("top", "--layout")
    check(p.returncode == 0, "top --layout", p)
    check(p.stdout == c, "the page layout in scripts/bsl-top.py differs from include/buddyslab_shm.h:\n"
          "--- C (offsetof):\n%s--- bsl-top.py:\n%s" % (c, p.stdout))
    print("ok: bsl-top.py reads struct bsl_shm_page at the C offsets (%d lines)" % len(c.splitlines()))


# ---- report -------------------------------------------------------------------------------------
def t_report():
    known = os.path.join(ARGS.data, "leak_report.json")
    expected = open(os.path.join(ARGS.data, "leak_report.folded")).read()

    p = launcher("report", known, "--format", "folded")
    check(p.returncode == 0, "report --format folded", p)
    if p.stdout != expected:
        import difflib
        fail("folded output differs from leak_report.folded:\n" + "".join(difflib.unified_diff(
            expected.splitlines(True), p.stdout.splitlines(True), "expected", "got")))

    # Text: every site, sorted as docs/LEAKS.md says (and as the library writes them): by kind
    # (definitely lost, indirectly lost, still reachable), then by bytes, largest first.
    p = launcher("report", known)
    check(p.returncode == 0, "report (text)", p)
    recs = [(k, int(x)) for k, x in re.findall(r"^#\d+\s+([a-z ]+): \S+ \S+ \((\d+) bytes\)", p.stdout, re.M)]
    doc = json.load(open(known))
    order = {"definitely lost": 0, "indirectly lost": 1, "still reachable": 2}
    check(sorted(recs, key=lambda r: (order[r[0]], -r[1])) == recs and
          sorted(r[1] for r in recs) == sorted(s["bytes"] for s in doc["leaks"]),
          "text: records not all shown or not sorted by kind, then bytes: %s" % recs, p)
    check("make_buffer at src/buf.c:42 (server+0x1e08)" in p.stdout, "text: frame with file, line, module+offset", p)
    check("101.5 KiB (103936 bytes) in 37 blocks, 7 records" in p.stdout, "text: totals line", p)
    p = launcher("report", known, "--limit", "2")
    check(p.returncode == 0 and "5 more records" in p.stdout, "text --limit 2", p)
    p = launcher("report", known, "--limit", "6")
    check(p.returncode == 0 and "1 more record: 6.0 KiB in 6 blocks" in p.stdout,
          "text --limit 6 leaves out the one indirectly lost record (it sorts after the definitely lost)", p)

    # SVG: well-formed, rectangles proportional to bytes, children inside their parents.
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "leaks.svg")
        p = launcher("report", known, "--format", "svg", "--output", out)
        check(p.returncode == 0 and os.path.exists(out), "report --format svg --output", p)
        text = open(out, encoding="utf-8").read()
    check("<script" not in text and "@import" not in text and "href" not in text,
          "the SVG must be self-contained (no scripts, links or imported fonts)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        fail("the SVG is not well-formed XML: %s\n%s" % (e, text[:2000]))
    ns = "{http://www.w3.org/2000/svg}"
    check(root.tag == ns + "svg", "root element is %s" % root.tag)
    frames = []
    for g in root.iter(ns + "g"):
        title = g.find(ns + "title")
        rect = g.find(ns + "rect")
        if title is None or rect is None:
            continue
        m = re.match(r"(.*): \S+ \S+ \((\d+) bytes\) in (\d+) blocks?, ", title.text)
        check(m, "frame title %r does not give function and bytes" % title.text)
        frames.append({"name": m.group(1), "bytes": int(m.group(2)), "x": float(rect.get("x")),
                       "y": float(rect.get("y")), "w": float(rect.get("width")), "h": float(rect.get("height"))})
    total = sum(s["bytes"] for s in doc["leaks"])
    check(frames and frames[0]["name"] == "all" and frames[0]["bytes"] == total, "the first frame is 'all' = %d" % total)
    scale = frames[0]["w"] / total
    for f in frames:
        check(abs(f["w"] - f["bytes"] * scale) <= 0.002, "frame %s: width %.3f, %d bytes -> expected %.3f"
              % (f["name"], f["w"], f["bytes"], f["bytes"] * scale))
    # Each stack of the folded output is a column of frames, one level up per frame.
    for line in expected.splitlines():
        stack, nbytes = line.rsplit(" ", 1)
        leaf = stack.split(";")[-1]
        depth = len(stack.split(";"))
        y_leaf = frames[0]["y"] - depth * 17
        check(any(f["name"] == leaf and abs(f["y"] - y_leaf) < 0.01 for f in frames),
              "no frame %r at depth %d" % (leaf, depth))
    # Children lie inside their parent (the frame one level below that covers them).
    for f in frames[1:]:
        below = [g for g in frames if abs(g["y"] - (f["y"] + 17)) < 0.01 and g["x"] - 0.002 <= f["x"]
                 and f["x"] + f["w"] <= g["x"] + g["w"] + 0.002]
        check(below, "frame %s (x %.3f w %.3f) has no parent under it" % (f["name"], f["x"], f["w"]))
    # Merged stacks: make_buffer's frame carries both of its sites.
    mb = [f for f in frames if f["name"] == "make_buffer"]
    check(len(mb) == 1 and mb[0]["bytes"] == 65536 + 1024, "make_buffer frame should merge 2 sites: %s" % mb)

    # --kind: only the definitely lost records (the vector's indirectly lost 6144 bytes go).
    p = launcher("report", known, "--format", "folded", "--kind", "definite")
    check(p.returncode == 0 and "int const&) 2048\n" in p.stdout and "make_buffer 66560\n" in p.stdout,
          "--kind definite", p)
    p = launcher("report", known, "--kind", "bogus")
    check(p.returncode == 2 and "usage:" in p.stderr, "--kind bogus is a usage error", p)

    # Bad input: a clear message and status 1.
    with tempfile.TemporaryDirectory() as d:
        bad = {
            "notjson.json": ("buddyslab: 3 leaks\n", "not valid JSON"),
            "empty.json": ("", "empty"),
            "nosites.json": ('{"pid": 1}', "no list of sites"),
            "badbytes.json": ('{"sites": [{"bytes": "many", "stack": []}]}', "site 1: bytes"),
            "nobytes.json": ('{"sites": [{"blocks": 1}]}', "site 1 has no byte count"),
            "badstack.json": ('{"sites": [{"bytes": 1, "stack": 7}]}', "not a list of frames"),
            "badframe.json": ('{"sites": [{"bytes": 1, "stack": [3]}]}', "frame 0"),
            "number.json": ("42", "top level"),
        }
        for name, (content, needle) in bad.items():
            path = os.path.join(d, name)
            with open(path, "w") as f:
                f.write(content)
            for fmt in ("text", "svg"):
                p = launcher("report", path, "--format", fmt)
                check(p.returncode == 1 and needle in p.stderr and path in p.stderr,
                      "%s (%s): expected status 1 and %r" % (name, fmt, needle), p)
        p = launcher("report", os.path.join(d, "missing.json"))
        check(p.returncode == 1 and "no such file" in p.stderr, "a missing file", p)
        # An unknown format version: a message naming it (not "no list of sites").
        for tool in ("buddyslab-leak", "buddyslab-oom"):
            path = os.path.join(d, "v7-%s.json" % tool)
            with open(path, "w") as f:
                f.write('{"tool": "%s", "format": 7, "pid": 1, "records_v7": []}\n' % tool)
            p = launcher("report", path)
            check(p.returncode == 1 and "format 7" in p.stderr and "format 1" in p.stderr and
                  "no list of sites" not in p.stderr, "%s format 7: the message must name the version" % tool, p)
        path = os.path.join(d, "other.json")
        with open(path, "w") as f:
            f.write('{"tool": "heaptrack", "sites": []}')
        p = launcher("report", path)
        check(p.returncode == 1 and "heaptrack" in p.stderr, "another tool's report is named as such", p)
        # An empty report is fine: no leaks.
        path = os.path.join(d, "none.json")
        with open(path, "w") as f:
            f.write('{"sites": []}')
        p = launcher("report", path)
        check(p.returncode == 0 and "no leaks" in p.stdout, "an empty report: 'no leaks'", p)
        p = launcher("report", path, "--format", "svg")
        check(p.returncode == 0, "an empty report as SVG", p)
        ET.fromstring(p.stdout)
        p = launcher("report", path, "--format", "folded")
        check(p.returncode == 0 and p.stdout == "", "an empty report folds to nothing", p)
    print("ok: report: folded == expected, SVG well-formed with %d frames proportional to bytes, text sorted, "
          "bad files rejected" % len(frames))


def t_report_clean():
    """'no leaks' only when nothing is lost, and no claim that every block was freed when some are
    still reachable (issue 16: 'no leaks: every block was freed' next to 'still reachable 495.5 KiB
    in 96 blocks')."""
    doc = json.load(open(os.path.join(ARGS.data, "leak_report.json")))
    zero = {"bytes": 0, "blocks": 0}
    with tempfile.TemporaryDirectory() as d:
        def write(name, summary, leaks):
            path = os.path.join(d, name)
            with open(path, "w") as f:
                json.dump(dict(doc, summary=summary, leaks=leaks), f)
            return path
        # Nothing lost, 96 blocks still reachable (not listed: leak_reachable=0).
        reach = write("reach.json", {"definitely_lost": zero, "indirectly_lost": zero,
                                     "still_reachable": {"bytes": 507392, "blocks": 96}, "suppressed": zero}, [])
        for fmt in ("text", "svg"):
            p = launcher("report", reach, "--format", fmt)
            check(p.returncode == 0 and "every block was freed" not in p.stdout and "no leaks" in p.stdout and
                  "495.5 KiB in 96 blocks" in p.stdout and "still reachable" in p.stdout,
                  "%s: nothing lost, 96 blocks reachable: 'no leaks' and the reachable blocks, not 'every block "
                  "was freed'" % fmt, p)
        # Blocks lost but none of the kinds asked for: not "no leaks".
        p = launcher("report", os.path.join(ARGS.data, "leak_report.json"), "--kind", "reachable")
        check(p.returncode == 0 and "no leaks" not in p.stdout and "every block was freed" not in p.stdout and
              "definitely lost" in p.stdout, "--kind reachable of a report with leaks must not say 'no leaks'", p)
        # Everything freed: the only case for that sentence.
        clean = write("clean.json", {"definitely_lost": zero, "indirectly_lost": zero, "still_reachable": zero,
                                     "suppressed": zero}, [])
        p = launcher("report", clean)
        check(p.returncode == 0 and "no leaks: every block was freed" in p.stdout, "a clean report", p)
        # Records listed, none lost (leak_reachable=1): 'no leaks' said too.
        keep = dict(doc["leaks"][0], kind="still_reachable")
        del keep["indirect_bytes"], keep["indirect_blocks"]
        listed = write("listed.json", {"definitely_lost": zero, "indirectly_lost": zero,
                                       "still_reachable": {"bytes": 65536, "blocks": 16}, "suppressed": zero}, [keep])
        p = launcher("report", listed)
        check(p.returncode == 0 and "no leaks" in p.stdout and "every block was freed" not in p.stdout and
              "still reachable: 64.0 KiB (65536 bytes) in 16 blocks" in p.stdout, "reachable records listed", p)
    print("ok: report says 'no leaks' only when nothing is lost, 'every block was freed' only when nothing is left")


def t_report_oom():
    """`report` on a soft OOM report (JSON lines, one object per report; issue 16: it said 'site 1
    has no byte count')."""
    path = os.path.join(ARGS.data, "oom_report.json")
    docs = [json.loads(l) for l in open(path) if l.strip()]
    p = launcher("report", path)
    check(p.returncode == 0 and "no byte count" not in p.stderr, "report on a soft OOM report", p)
    out = p.stdout
    check("2 soft OOM reports" in out, "text: the count of reports in the file", p)
    check("budget 'runaway_*' crossed: 1.0 KiB requested" in out, "text: the first report's event and request", p)
    check("report on request (bsl_oom_report)" in out, "text: the second report's event", p)
    check(out.count("runaway_alloc at src/runaway.c:43 (runaway+0x1311)") == 2, "text: the runaway's frame, twice", p)
    check("well_behaved_alloc at src/runaway.c:53" in out, "text: the well-behaved site in the last report", p)
    check("#1  64.0 MiB (67105784 bytes) live in 65533 blocks" in out, "text: rank 1 of the first report", p)
    check("#2  5.4 MiB (5678820 bytes) live in 1386 blocks" in out, "text: rank 2 of the last report", p)
    check("budget 'runaway_*': 98.9 MiB live of 64.0 MiB, OVER" in out, "text: the budgets of the last report", p)
    # Folded and SVG: the last report's sites by live bytes.
    p = launcher("report", path, "--format", "folded")
    last = docs[-1]["sites"]
    want = sorted("%s %d" % (";".join(f["function"] for f in reversed(s["stack"]))
                             .replace("__libc_start_main@@GLIBC_2.34", "__libc_start_main"), s["live_bytes"])
                  for s in last)
    check(p.returncode == 0 and sorted(p.stdout.splitlines()) == want, "folded: the last report's live bytes\n%s"
          % "\n".join(want), p)
    p = launcher("report", path, "--format", "svg")
    check(p.returncode == 0 and "runaway_alloc" in p.stdout, "svg of a soft OOM report", p)
    ET.fromstring(p.stdout)
    print("ok: report renders soft OOM reports (text: every report; folded, svg: the last one)")


# ---- install ------------------------------------------------------------------------------------
def t_install():
    if not ARGS.meson:
        print("skip: meson not found")
        sys.exit(77)
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run(ARGS.meson.split() + ["install", "-C", ARGS.builddir, "--no-rebuild", "--quiet",
                                                 "--destdir", d], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=120)
        check(p.returncode == 0, "meson install --destdir failed", p)
        found = {}
        for dirpath, _, files in os.walk(d):
            for f in files:
                found.setdefault(f, os.path.join(dirpath, f))
        for f in ("buddyslab", "bsl-cli.py", "bsltools.py", "bsl-top.py", "bsl-report.py", "libbuddyslab.so"):
            check(f in found, "meson install did not install %s (installed: %s)" % (f, sorted(found)))
        exe = found["buddyslab"]
        check(os.access(exe, os.X_OK) and os.path.basename(os.path.dirname(exe)) == "bin",
              "the launcher is not an executable in bin/: %s" % exe)
        src = open(ARGS.launcher).read().splitlines()
        inst = open(exe).read().splitlines()
        diff = [(a, b) for a, b in zip(src, inst) if a != b]
        check(len(src) == len(inst) and len(diff) == 2 and all("@BSL_INSTALL_" in a for a, _ in diff),
              "the installed launcher should differ from the source only in its two install paths: %s" % diff[:5])
        env = dict(os.environ)
        for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS", "BUDDYSLAB_LIB", "BUDDYSLAB_BUILDDIR"):
            env.pop(k, None)
        p = subprocess.run([exe, "lib"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        check(p.returncode == 0 and p.stdout.strip().endswith("libbuddyslab.so"), "installed 'lib'", p)
        p = subprocess.run([exe, "report", os.path.join(ARGS.data, "leak_report.json"), "--format", "folded"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        check(p.returncode == 0 and p.stdout == open(os.path.join(ARGS.data, "leak_report.folded")).read(),
              "installed 'report'", p)
        p = subprocess.run([exe, "run", "--stats", "--", sys.executable, "-c", "print('hi')"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
        check(p.returncode == 0 and p.stdout == "hi\n" and "--- slabinfo ---" in p.stderr, "installed 'run'", p)
        p = subprocess.run([exe, "top", "--layout"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        check(p.returncode == 0, "installed 'top'", p)
        # The installed launcher reads options with the installed library (bsltools beside the scripts).
        p = subprocess.run([exe, "options", "soft_limit=2M"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=env)
        check(p.returncode == 0 and "\nsoft_limit=2097152\n" in p.stdout, "installed 'options'", p)
        p = subprocess.run([exe, "run", "--sample", "12Q", "--", "true"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
        check(p.returncode == 2 and "option 'leak_sample': bad value '12Q'" in p.stderr,
              "installed 'run' with a bad size", p)
    print("ok: meson install puts the launcher in bin/ and its scripts in share/buddyslab; it finds both")


CHECKS = {"top-budgets": t_top_budgets, "run-status": t_run_status, "run-usage": t_run_usage, "run-publish": t_run_publish,
          "run-reports": t_run_reports, "run-children": t_run_children, "top": t_top, "top-errors": t_top_errors,
          "top-sites": t_top_sites, "top-layout": t_top_layout,
          "report": t_report, "report-clean": t_report_clean, "report-oom": t_report_oom, "install": t_install}


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=sorted(CHECKS))
    ap.add_argument("--launcher", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--target")
    ap.add_argument("--layout")
    ap.add_argument("--data", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--builddir")
    ap.add_argument("--meson")
    ARGS = ap.parse_args()
    # Every command here forks and waits: stdin from /dev/null (meson passes the terminal's down),
    # except where a check gives a program its own input.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    CHECKS[ARGS.check]()


if __name__ == "__main__":
    main()

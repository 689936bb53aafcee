#!/usr/bin/env python3
"""Drivers for the 'preload' test suite: real programs under LD_PRELOAD=libbuddyslab.so.

  preload_driver.py compare --lib SO [--stdin FILE] [--env K=V]... -- CMD...
      Run CMD without and with LD_PRELOAD=SO; exit status, stdout and stderr must be identical.
      Then run it once more with BUDDYSLAB_OPTIONS=stats=1: same stdout, and stderr must show the
      library's statistics (proof that the preloaded allocator was active).
  preload_driver.py python --lib SO [--env K=V]...
      compare for py_workload.py run by this very interpreter (sys.executable).
  preload_driver.py sqlite --lib SO --sqlite PATH [--rows N]
      compare for the sqlite3 shell fed a generated script (one transaction of N inserts, queries).
  preload_driver.py active --lib SO
      python3 with BUDDYSLAB_OPTIONS=stats=1 prints the stats; malloc called through ctypes returns
      blocks bsl_owns() recognises.
  preload_driver.py options --lib SO -- CMD...
      BUDDYSLAB_OPTIONS=bogus=1 (and other bad settings) print exactly one line on stderr, naming the
      key, and CMD still works (same stdout as without the library).
  preload_driver.py static --archive LIBA --include DIR... --src FILE -- CC...
      Link FILE with `CC -static` against LIBA and run it.

Command lines and outputs are printed on failure so that the test log explains itself.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT = 240


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def base_env(extra=()):
    env = dict(os.environ)
    # Anything inherited that would change the allocator or the program's behaviour goes.
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS", "MALLOC_CHECK_", "MALLOC_PERTURB_", "GLIBC_TUNABLES"):
        env.pop(k, None)
    env["PYTHONHASHSEED"] = "0"
    env["LC_ALL"] = "C"
    for kv in extra:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def run(cmd, env, stdin_data=None, label=""):
    try:
        p = subprocess.run(cmd, env=env, input=stdin_data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("%s: %s timed out after %d s" % (label, " ".join(cmd), TIMEOUT))
    return p


def describe(p, label):
    def clip(b):
        s = b.decode("utf-8", "replace")
        return s if len(s) < 3000 else s[:1500] + "\n[...]\n" + s[-1500:]
    sig = ""
    if p.returncode < 0:
        sig = " (killed by signal %d)" % -p.returncode
    return "--- %s: exit %d%s\n--- stdout:\n%s\n--- stderr:\n%s" % (label, p.returncode, sig, clip(p.stdout),
                                                                  clip(p.stderr))


def first_diff(a, b):
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return "line %d:\n  glibc:     %r\n  buddyslab: %r" % (i + 1, x[:300], y[:300])
    return "line %d: one output is longer (%d vs %d lines)" % (min(len(la), len(lb)) + 1, len(la), len(lb))


def preload_env(lib, extra=(), options=None):
    env = base_env(extra)
    env["LD_PRELOAD"] = lib
    if options is not None:
        env["BUDDYSLAB_OPTIONS"] = options
    return env


def compare(lib, cmd, stdin_data=None, extra_env=(), check_active=True):
    print("command: " + " ".join(cmd), flush=True)
    ref = run(cmd, base_env(extra_env), stdin_data, "glibc run")
    if ref.returncode != 0:
        fail("the reference run without LD_PRELOAD failed\n" + describe(ref, "glibc"))
    got = run(cmd, preload_env(lib, extra_env), stdin_data, "preloaded run")
    if got.returncode != ref.returncode:
        fail("exit status differs under LD_PRELOAD\n" + describe(got, "buddyslab"))
    if got.stdout != ref.stdout:
        fail("stdout differs under LD_PRELOAD at " + first_diff(ref.stdout, got.stdout) + "\n" +
             describe(got, "buddyslab"))
    if got.stderr != ref.stderr:
        fail("stderr differs under LD_PRELOAD at " + first_diff(ref.stderr, got.stderr) + "\n" +
             describe(got, "buddyslab"))
    print("identical output with and without LD_PRELOAD (%d bytes of stdout)" % len(ref.stdout))
    if check_active:
        st = run(cmd, preload_env(lib, extra_env, "stats=1"), stdin_data, "stats=1 run")
        if st.returncode != 0 or st.stdout != ref.stdout:
            fail("run with BUDDYSLAB_OPTIONS=stats=1 differs\n" + describe(st, "buddyslab stats=1"))
        if not re.search(rb"buddyslab", st.stderr, re.I):
            fail("BUDDYSLAB_OPTIONS=stats=1 printed no buddyslab statistics: the library was not active\n" +
                 describe(st, "buddyslab stats=1"))
        print("stats=1: the preloaded allocator was active (%d bytes of stats on stderr)" % len(st.stderr))


def cmd_compare(a):
    data = open(a.stdin, "rb").read() if a.stdin else None
    compare(a.lib, a.cmd, data, a.env, not a.no_active_check)


def cmd_python(a):
    compare(a.lib, [sys.executable, os.path.join(HERE, "py_workload.py")] + a.args, None, a.env)


def sqlite_script(rows):
    out = ["PRAGMA cache_size = -65536;",
           "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, blob BLOB);",
           "BEGIN;"]
    x = 12345
    for i in range(rows):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        name = "name-%d-%s" % (x % 1000, "y" * (x % 40))
        out.append("INSERT INTO t(grp, name, val, blob) VALUES (%d, '%s', %d.%02d, zeroblob(%d));"
                   % (x % 97, name, x % 100000, x % 100, x % 300))
    out += [
        "COMMIT;",
        "CREATE INDEX t_grp ON t(grp, val);",
        "SELECT count(*), sum(val), max(length(name)), sum(length(blob)) FROM t;",
        "SELECT grp, count(*), round(avg(val), 3), min(name), max(name) FROM t GROUP BY grp ORDER BY grp;",
        "SELECT name, count(*) AS c FROM t GROUP BY name ORDER BY c DESC, name LIMIT 40;",
        "SELECT id, grp, val FROM t WHERE grp = 13 ORDER BY val DESC, id LIMIT 25;",
        "SELECT grp, group_concat(substr(name, 1, 9), ',') FROM (SELECT * FROM t WHERE id % 500 = 0 ORDER BY id)"
        " GROUP BY grp ORDER BY grp LIMIT 20;",
        "SELECT a.grp, count(*) FROM t a JOIN t b ON a.id = b.id + 1 AND a.grp = b.grp GROUP BY a.grp"
        " ORDER BY 2 DESC, 1 LIMIT 10;",
        "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 20000)"
        " SELECT count(*), sum(length(printf('%0100d', n))) FROM c;",
        "SELECT json_group_array(json_object('g', grp, 'n', c)) FROM"
        " (SELECT grp, count(*) AS c FROM t GROUP BY grp ORDER BY grp LIMIT 10);",
        "UPDATE t SET name = name || '-upd' WHERE id % 3 = 0;",
        "DELETE FROM t WHERE id % 5 = 0;",
        "SELECT count(*), sum(length(name)) FROM t;",
        "SELECT grp, count(*) FROM t GROUP BY grp HAVING count(*) > 400 ORDER BY grp;",
        "CREATE TABLE s AS SELECT grp, name FROM t ORDER BY name DESC;",
        "SELECT count(DISTINCT name) FROM s;",
        "VACUUM;",
        "PRAGMA integrity_check;",
    ]
    return ("\n".join(out) + "\n").encode()


def cmd_sqlite(a):
    script = sqlite_script(a.rows)
    with tempfile.TemporaryDirectory(prefix="bsl-sqlite-") as d:
        # an on-disk database in a fresh directory for every run
        db = os.path.join(d, "test.db")
        # Each run must start from an empty database: a small wrapper removes it first.
        cmd = ["/bin/sh", "-c", 'rm -f "$0" "$0"-journal; exec "$1" -batch "$0"', db, a.sqlite]
        compare(a.lib, cmd, script, (), True)
        # and an in-memory database
        compare(a.lib, [a.sqlite, "-batch", ":memory:"], script, (), False)


def cmd_active(a):
    code = (
        "import ctypes, sys\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "libc.malloc.argtypes = [ctypes.c_size_t]\n"
        "libc.free.argtypes = [ctypes.c_void_p]\n"
        "try:\n"
        "    owns = libc.bsl_owns\n"
        "except AttributeError:\n"
        "    print('bsl_owns not found: buddyslab is not loaded'); sys.exit(3)\n"
        "owns.argtypes = [ctypes.c_void_p]\n"
        "bad = 0\n"
        "for n in (1, 100, 5000, 300000, 10 << 20):\n"
        "    p = libc.malloc(n)\n"
        "    if not p or owns(p) != 1:\n"
        "        print('malloc(%d) = %r not owned' % (n, p)); bad += 1\n"
        "    libc.free(p)\n"
        "d = {str(i): [i] * 10 for i in range(100000)}\n"
        "print('ok' if not bad else 'bad', len(d))\n"
    )
    cmd = [sys.executable, "-c", code]
    # Without the library: bsl_owns must not exist (sanity check of the check itself).
    ref = run(cmd, base_env(), None, "glibc")
    if ref.returncode != 3:
        fail("without LD_PRELOAD the probe should not find bsl_owns\n" + describe(ref, "glibc"))
    got = run(cmd, preload_env(a.lib), None, "preloaded")
    if got.returncode != 0 or got.stdout.strip() != b"ok 100000" or got.stderr:
        fail("malloc under LD_PRELOAD is not buddyslab's\n" + describe(got, "buddyslab"))
    print("ctypes: malloc under LD_PRELOAD returns buddyslab blocks")
    st = run(cmd, preload_env(a.lib, (), "stats=1"), None, "stats=1")
    if st.returncode != 0 or st.stdout.strip() != b"ok 100000":
        fail("python3 with BUDDYSLAB_OPTIONS=stats=1 failed\n" + describe(st, "stats=1"))
    if not re.search(rb"buddyslab", st.stderr, re.I):
        fail("BUDDYSLAB_OPTIONS=stats=1: no buddyslab statistics on stderr\n" + describe(st, "stats=1"))
    print("stats=1: %d bytes of statistics on stderr, first line: %r" %
          (len(st.stderr), st.stderr.splitlines()[0][:120] if st.stderr else b""))
    # stats=0 (explicit) prints nothing
    z = run(cmd, preload_env(a.lib, (), "stats=0"), None, "stats=0")
    if z.returncode != 0 or z.stderr:
        fail("BUDDYSLAB_OPTIONS=stats=0 printed something or failed\n" + describe(z, "stats=0"))


def cmd_options(a):
    cmd = a.cmd
    ref = run(cmd, base_env(), None, "glibc")
    if ref.returncode != 0:
        fail("reference run failed\n" + describe(ref, "glibc"))
    cases = [
        ("bogus=1", "bogus", False),
        ("decay_ms=notanumber", "decay_ms", False),
        ("thp=maybe", "thp", False),
        ("bogus=1,stats=0", "bogus", False),
        ("stats=0,frobnicate=7,decay_ms=100", "frobnicate", False),
    ]
    for opts, key, _ in cases:
        p = run(cmd, preload_env(a.lib, (), opts), None, "BUDDYSLAB_OPTIONS=" + opts)
        lines = p.stderr.decode("utf-8", "replace").splitlines()
        if p.returncode != 0 or p.stdout != ref.stdout:
            fail("BUDDYSLAB_OPTIONS=%s broke the program\n%s" % (opts, describe(p, opts)))
        if len(lines) != 1:
            fail("BUDDYSLAB_OPTIONS=%s: expected exactly one line on stderr, got %d\n%s" %
                 (opts, len(lines), describe(p, opts)))
        if key not in lines[0]:
            fail("BUDDYSLAB_OPTIONS=%s: the stderr line does not name '%s': %r" % (opts, key, lines[0]))
        print("BUDDYSLAB_OPTIONS=%s -> %r" % (opts, lines[0]))
    # the bad key is ignored but the good ones around it still apply: stats=1 after a bogus key
    p = run(cmd, preload_env(a.lib, (), "bogus=1,stats=1"), None, "bogus=1,stats=1")
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode != 0 or p.stdout != ref.stdout:
        fail("BUDDYSLAB_OPTIONS=bogus=1,stats=1 broke the program\n" + describe(p, "bogus=1,stats=1"))
    bogus_lines = [l for l in err.splitlines() if "bogus" in l]
    if len(bogus_lines) != 1:
        fail("BUDDYSLAB_OPTIONS=bogus=1,stats=1: %d lines name 'bogus'\n%s" %
             (len(bogus_lines), describe(p, "bogus=1,stats=1")))
    if not re.search(r"buddyslab", err.replace(bogus_lines[0], ""), re.I):
        fail("BUDDYSLAB_OPTIONS=bogus=1,stats=1: stats=1 was not honoured after the bad key\n" +
             describe(p, "bogus=1,stats=1"))
    # good options print nothing
    for opts in ("stats=0", "rseq=0", "decay_ms=0", "thp=0,decay_ms=5000", "rseq=1,thp=1"):
        p = run(cmd, preload_env(a.lib, (), opts), None, opts)
        if p.returncode != 0 or p.stdout != ref.stdout or p.stderr:
            fail("BUDDYSLAB_OPTIONS=%s (valid) printed something or failed\n%s" % (opts, describe(p, opts)))
    print("valid options print nothing")


def cmd_static(a):
    cc = a.cmd
    with tempfile.TemporaryDirectory(prefix="bsl-static-") as d:
        exe = os.path.join(d, "static_prog")
        link = cc + ["-static", "-O2"] + ["-I" + inc for inc in a.include] + [a.src, a.archive, "-pthread", "-o", exe]
        print("link: " + " ".join(link), flush=True)
        p = subprocess.run(link, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        if p.returncode != 0:
            fail("static link failed\n" + describe(p, "link"))
        if p.stderr:
            print("linker warnings:\n" + p.stderr.decode("utf-8", "replace"))
        f = subprocess.run(["file", exe], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) \
            if os.path.exists("/usr/bin/file") else None
        if f is not None and b"statically linked" not in f.stdout and b"static-pie" not in f.stdout:
            fail("the program is not statically linked: " + f.stdout.decode())
        for opts in (None, "rseq=0"):
            env = base_env()
            if opts:
                env["BUDDYSLAB_OPTIONS"] = opts
            r = run([exe], env, None, "static program")
            if r.returncode != 0 or not r.stdout.startswith(b"static: ok"):
                fail("static program failed (BUDDYSLAB_OPTIONS=%s)\n%s" % (opts, describe(r, "static")))
            if opts == "rseq=0" and b"(rseq=0)" not in r.stdout:
                fail("BUDDYSLAB_OPTIONS=rseq=0 not honoured by the static program\n" + describe(r, "static"))
            print((r.stdout.decode().strip()) + "  [BUDDYSLAB_OPTIONS=%s]" % opts)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--lib", required=True)
    c.add_argument("--stdin")
    c.add_argument("--env", action="append", default=[])
    c.add_argument("--no-active-check", action="store_true")
    c.add_argument("cmd", nargs="+")
    py = sub.add_parser("python")
    py.add_argument("--lib", required=True)
    py.add_argument("--env", action="append", default=[])
    py.add_argument("args", nargs="*")
    s = sub.add_parser("sqlite")
    s.add_argument("--lib", required=True)
    s.add_argument("--sqlite", required=True)
    s.add_argument("--rows", type=int, default=50000)
    ac = sub.add_parser("active")
    ac.add_argument("--lib", required=True)
    o = sub.add_parser("options")
    o.add_argument("--lib", required=True)
    o.add_argument("cmd", nargs="+")
    st = sub.add_parser("static")
    st.add_argument("--archive", required=True)
    st.add_argument("--include", required=True, action="append")
    st.add_argument("--src", required=True)
    st.add_argument("cmd", nargs="+")
    a = ap.parse_args()
    if getattr(a, "lib", None) and not os.path.exists(a.lib):
        fail("library %s does not exist" % a.lib)
    {"compare": cmd_compare, "python": cmd_python, "sqlite": cmd_sqlite, "active": cmd_active,
     "options": cmd_options, "static": cmd_static}[a.what](a)
    print("PASS")


if __name__ == "__main__":
    main()

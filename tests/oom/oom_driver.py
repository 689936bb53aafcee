#!/usr/bin/env python3
"""Driver for the 'oom' test suite: tests/oom/runaway.c (a runaway allocation site and a
well-behaved one in one program) under the soft OOM policy, with its output, exit status and
reports checked.

  oom_driver.py CASE --lib SO --prog EXE --src RUNAWAY_C

Cases:
  report-full, report-sampled   oom_action=report: nothing fails; the report names runaway_alloc at
                                its file:line, ranks it first, with bytes within 10 % of the truth
  fail-full, fail-sampled       oom_action=fail: only the runaway's allocations fail, at the budget
  abort                         oom_action=abort: the report, the message, death by SIGABRT
  soft-fail-full, -sampled      the soft limit under oom_action=fail: the biggest site is the victim
  tag-report, tag-fail          a budget on bsl_tag_push("cache") instead of a function pattern
  api                           the budget set from code (bsl_budget_set), no options
  reclaim                       the soft limit: reclaim runs first (stats and purged bytes prove it)
                                and a report follows only when reclaim was not enough
  watermarks                    a soft limit lowers the zones' dirty watermarks to 1/8 of it
  hard                          the hard limit: ENOMEM at the limit, allocation works after freeing
  handler                       a handler frees memory and asks for a retry: nothing fails
  threads                       frees from another thread take the bytes off the account
  rate-limit                    many events, one report (oom_interval_ms)
  fork                          fork() from threads at their budget: no deadlock
  bad-syntax                    bad budget / oom_action / size values: one line naming the key each
  rlimit                        the system refuses memory (RLIMIT_AS): reclaim, report, ENOMEM; or a
                                handler frees and the allocation is retried
  dlopen                        a budget on a function of a library dlopen'ed after the first crossing
  python                        python3 with a budget on its bytearray buffers under oom_action=fail:
                                MemoryError near the budget, the rest of the program unaffected
  static-budget                 fail-full on runaway.c linked with -static and the archive
                                (--static-prog; no LD_PRELOAD): the budget names runaway_* by the
                                executable's own symbol table
  static-soft-limit             soft-fail-sampled on the same static program
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from bsl_elf import has_interp  # noqa: E402

TIMEOUT = 120
MiB = 1 << 20


def tmpdir():
    d = tempfile.mkdtemp(prefix="bsl-oom-")
    atexit.register(shutil.rmtree, d, True)
    return d


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def run(args, lib, prog, opts, label):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS", "GLIBC_TUNABLES"):
        env.pop(k, None)
    if lib:  # None: a static program (no loader to preload into)
        env["LD_PRELOAD"] = lib
    if opts is not None:
        env["BUDDYSLAB_OPTIONS"] = opts
    cmd = [prog] + args
    try:
        p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        fail("%s: timed out after %d s (a deadlock?)" % (label, TIMEOUT))
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    p.desc = "%s: BUDDYSLAB_OPTIONS=%s %s: exit %s\n--- stdout ---\n%s\n--- stderr ---\n%s" % (
        label, opts, " ".join(cmd), p.returncode, out[-4000:], err[-6000:])
    p.out, p.err = out, err
    p.kv = {}
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            p.kv[k] = v
    return p


def check(cond, p, what):
    if not cond:
        fail("%s\n%s" % (what, p.desc))


def num(p, key):
    check(key in p.kv, p, "no %s= line" % key)
    return int(p.kv[key])


def parse_fields(value):
    """'events:1,reclaims:2' -> {'events': 1, ...} (numbers where they are)."""
    d = {}
    for part in value.split(","):
        k, v = part.split(":", 1)
        d[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return d


def fields(p, key):
    """The fields of the program's last key= line."""
    check(key in p.kv, p, "no %s= line" % key)
    return parse_fields(p.kv[key])


def within(x, truth, tol=0.10):
    return truth > 0 and abs(x - truth) <= tol * truth


def source_line(src, marker):
    with open(src) as f:
        for i, line in enumerate(f, 1):
            if marker in line:
                return i
    fail("marker %s not in %s" % (marker, src))


def json_lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def site_named(report, func):
    for s in report["sites"]:
        if s["stack"] and s["stack"][0]["function"] == func:
            return s
    return None


def check_runaway_frame(p, site, src, what):
    check(site is not None, p, "%s: no site with runaway_alloc on top" % what)
    top = site["stack"][0]
    line = source_line(src, "RUNAWAY_LINE")
    check(top["file"] and top["file"].endswith("runaway.c") and top["line"] == line, p,
          "%s: runaway_alloc's frame is %s:%s, expected runaway.c:%d" % (what, top["file"], top["line"], line))


def case_report(a, sampled, tag=False):
    tmp = tmpdir()
    rep = os.path.join(tmp, "oom.txt")
    budget = "tag:cache:32M" if tag else "runaway_*:64M"
    limit = (32 if tag else 64) * MiB
    opts = "budget=%s,oom_report=%s%s" % (budget, rep, "" if sampled else ",oom_sample=0")
    final = os.path.join(tmp, "final.json")
    p = run(["tag" if tag else "budget", final], a.lib, a.prog, opts, "report")
    check(p.returncode == 0, p, "the program must complete")
    check(num(p, "runaway_fail") == 0 and num(p, "well_fail") == 0, p, "oom_action=report: nothing may fail")
    check("buddyslab soft OOM" not in p.err, p, "the report must go to oom_report's file, not stderr")
    # The report written when the budget was crossed: text, and JSON beside it.
    text = open(rep).read()
    check("budget '%s' crossed" % budget.rsplit(":", 1)[0] in text, p, "no crossing report in %s:\n%s" % (rep, text))
    check("in runaway_alloc " in text and "runaway.c:%d" % source_line(a.src, "RUNAWAY_LINE") in text, p,
          "the report must name runaway_alloc with its file:line:\n" + text)
    first = json_lines(rep + ".json")[0]
    check(first["event"] == "budget" and first["sites"], p, "JSON beside the text: %s" % first)
    top = first["sites"][0]
    check_runaway_frame(p, top, a.src, "crossing report, rank 1")
    check(within(top["live_bytes"], limit), p, "at the crossing the runaway holds its budget: %d vs %d bytes" %
          (top["live_bytes"], limit))
    check(site_named(first, "well_behaved_alloc") is None, p, "a budget report lists only over-budget sites")
    check(first["reclaim"]["ran"], p, "reclaim must run before the first report")
    # The request is what the program asked for (runaway_alloc(1024)), not a sampled block's weight
    # (issue 16: "63.9 MiB live + 64.7 KiB requested" for a 1,572-byte malloc).
    check(first["request"] == 1024, p, "the crossing report's request is %s, the program asked for 1024" %
          first["request"])
    check(re.search(r"budget '[^']*' crossed: [\d.]+ MiB live \+ 1\.0 KiB requested", text), p,
          "the text must say '+ 1.0 KiB requested':\n" + text[:2000])
    # The report on request at the end: both sites, bytes within 10 % of what the program holds.
    last = json_lines(final)[-1]
    run_site = site_named(last, "runaway_alloc")
    check_runaway_frame(p, run_site, a.src, "final report")
    well = site_named(last, "well_behaved_alloc")
    check(well is not None, p, "the final report must list the well-behaved site")
    check(within(run_site["live_bytes"], num(p, "runaway_bytes")), p, "runaway bytes %d, truth %d" %
          (run_site["live_bytes"], num(p, "runaway_bytes")))
    # The well-behaved site holds only 6 MiB: sampled one allocation per 64 KiB, its estimate's
    # relative standard error is about sqrt(64K / 6M) = 10 %; allow 5 of them (exact when full).
    tol = 5 * (65536.0 / num(p, "well_bytes")) ** 0.5 if sampled else 0.10
    check(within(well["live_bytes"], num(p, "well_bytes"), tol), p, "well-behaved bytes %d, truth %d" %
          (well["live_bytes"], num(p, "well_bytes")))
    check(last["sites"][0]["site"] == run_site["site"], p, "the runaway must rank first")
    if tag:
        check(run_site["tag"] == "cache" and well["tag"] is None, p, "tags in the report: %s / %s" %
              (run_site["tag"], well["tag"]))
    st = fields(p, "stats")
    check(st["reclaims"] >= st["reports"] >= 1, p, "every report follows a reclaim: %s" % st)
    check(first["reclaim"]["committed_before"] >= first["reclaim"]["committed_after"] > 0, p,
          "the reclaim's figures: %s" % first["reclaim"])
    check(st["tracking"] == (2 if sampled else 1), p, "tracking mode %s" % st["tracking"])
    # Frees take the bytes off the account (exact in full mode; sampled: every sampled block goes).
    key = "budget[%s]" % ("tag:cache" if tag else "runaway_*")
    after = [l for l in p.out.splitlines() if l.startswith(key + "=")]
    check(len(after) == 2 and after[-1].startswith(key + "=live:0,blocks:0,"), p, "after freeing everything: %s" % after)


def case_fail(a, sampled, tag=False):
    budget = "tag:cache:32M" if tag else "runaway_*:64M"
    limit = (32 if tag else 64) * MiB
    opts = "budget=%s,oom_action=fail,oom_report=/dev/null,stats=1%s" % (budget, "" if sampled else ",oom_sample=0")
    p = run(["tag" if tag else "budget", "/dev/null"], a.lib, a.prog, opts, "fail")
    check(p.returncode == 0, p, "the program must complete")
    check(num(p, "well_fail") == 0, p, "the well-behaved site must never fail")
    check("bad_errno" not in p.kv, p, "refused allocations must set errno to ENOMEM")
    got = num(p, "runaway_bytes")
    if sampled:
        check(within(got, limit), p, "sampled: the runaway got %d bytes, budget %d" % (got, limit))
    else:
        check(limit - 1024 <= got <= limit, p, "full tracking: the runaway got %d bytes, budget %d (exact)" % (got, limit))
    check(num(p, "runaway_fail") == 96 * 1024 - got // 1024, p, "every runaway allocation past the budget fails")
    bi = fields(p, "budget[%s]" % ("tag:cache" if tag else "runaway_*"))
    check(bi["failed"] == num(p, "runaway_fail"), p, "the account counts its refusals: %s" % bi)
    # stats=1 at exit: the policy's section, the account emptied by the frees, its refusals.
    line = "%s '%s': 0 B live in 0 blocks, budget %d.0 MiB, %d refused" % (
        "tag" if tag else "budget", "cache" if tag else "runaway_*", limit // MiB, num(p, "runaway_fail"))
    check("--- soft OOM ---" in p.err and line in p.err, p, "stats=1 must show: " + line)


def case_soft_fail(a, sampled):
    # No budget: past the 64 MiB soft limit (after reclaim) the site with the most live bytes is the
    # victim and its allocations fail until the process is back under; the well-behaved site goes on.
    opts = "soft_limit=64M,oom_action=fail,oom_report=/dev/null" + ("" if sampled else ",oom_sample=0")
    p = run(["budget", "/dev/null"], a.lib, a.prog, opts, "soft-fail")
    check(p.returncode == 0 and num(p, "well_fail") == 0, p, "the well-behaved site must not fail")
    check(40 * MiB <= num(p, "runaway_bytes") <= 64 * MiB and num(p, "runaway_fail") > 0, p,
          "the runaway (the victim) must stop below the soft limit")
    check("bad_errno" not in p.kv, p, "ENOMEM")


def case_abort(a):
    opts = "budget=runaway_*:64M,oom_action=abort"
    p = run(["budget", ""], a.lib, a.prog, opts, "abort")
    check(p.returncode == -signal.SIGABRT, p, "oom_action=abort: death by SIGABRT expected")
    msg = re.search(r"buddyslab: soft OOM: budget 'runaway_\*' over budget \(([\d.]+) MiB live \+ 1\.0 KiB requested"
                    r"(?: \(counted as [\d.]+ [KM]iB: a sampled allocation\))? > "
                    r"64\.0 MiB budget\): aborting \(oom_action=abort\)", p.err)
    check(msg is not None, p, "the abort message")
    check(within(float(msg.group(1)) * MiB, 64 * MiB), p, "live bytes in the message")
    rep = p.err.find("buddyslab soft OOM: budget 'runaway_*' crossed")
    check(0 <= rep < msg.start() and "in runaway_alloc " in p.err[rep:msg.start()], p,
          "the report (naming runaway_alloc) must come before the message")
    check("runaway_ok" not in p.kv, p, "it must die at the budget, before its summary")


def case_api(a):
    final = os.path.join(tmpdir(), "final.json")
    p = run(["api", final, "runaway_*"], a.lib, a.prog, "oom_report=/dev/null", "api")
    check(p.returncode == 0 and "api_error" not in p.kv, p, "bsl_budget_set must work with no options")
    last = json_lines(final)[-1]
    site = site_named(last, "runaway_alloc")
    check_runaway_frame(p, site, a.src, "api")
    check(site["budget_name"] == "runaway_*" and site["budget"] == 64 * MiB, p, "budget from code: %s" % site)
    check(within(site["live_bytes"], num(p, "runaway_bytes")), p, "bytes %d vs %d" %
          (site["live_bytes"], num(p, "runaway_bytes")))
    check(fields(p, "stats")["events"] >= 1, p, "the budget must be crossed")


def case_watermarks(a):
    # A soft limit caps the zones' dirty-frame watermarks at 1/8 of it: the 60 MiB freed do not
    # stay committed (the buddy purges them as they are freed, past 16 MiB).
    p = run(["reclaim"], a.lib, a.prog, "soft_limit=128M,decay_ms=-1", "watermarks")
    check(p.returncode == 0 and num(p, "h_ok") == 1, p, "oom_action=report: nothing fails")
    check(num(p, "dirty_before") <= 16 * MiB, p, "dirty frames above 1/8 of the soft limit must be purged")
    stats = [l for l in p.out.splitlines() if l.startswith("stats=")]
    check(len(stats) == 2 and ",reports:0," in stats[0] and ",reports:1," in stats[1], p,
          "no report until the second 64 MiB block crosses the limit")


def case_reclaim(a):
    p = run(["reclaim", "code"], a.lib, a.prog, "decay_ms=-1", "reclaim")
    check(p.returncode == 0 and num(p, "h_ok") == 1, p, "oom_action=report: nothing fails")
    stats = [l for l in p.out.splitlines() if l.startswith("stats=")]
    check(len(stats) == 2, p, "two stats lines")
    s1, s2 = (parse_fields(line[len("stats="):]) for line in stats)
    check(num(p, "dirty_before") >= 55 * MiB, p, "60 MiB freed must stay dirty with decay_ms=-1")
    check(s1["reclaims"] >= 1 and s1["reclaimed"] >= 48 * MiB and num(p, "purged_step1") >= 48 * MiB, p,
          "crossing the soft limit must first return the dirty frames: %s" % s1)
    check(s1["reports"] == 0 and s1["events"] == 0, p, "reclaim was enough: no report, no event: %s" % s1)
    check(s2["reports"] == 1 and s2["events"] == 1 and s2["reclaims"] >= 2, p, "second crossing: %s" % s2)
    check(0 < s2["reclaim_seq"] < s2["report_seq"], p, "the reclaim must precede the report: %s" % s2)
    check("soft limit crossed" in p.err and "reclaimed first:" in p.err, p, "the report says reclaim ran")


def case_hard(a):
    p = run(["hard"], a.lib, a.prog, "hard_limit=128M,oom_report=/dev/null", "hard")
    check(p.returncode == 0, p, "the program must complete")
    check(p.kv.get("hard_errno") == "ENOMEM", p, "allocation at the hard limit: NULL with ENOMEM")
    check(96 <= num(p, "hard_mb") <= 128, p, "MiB allocated before the hard limit: %s" % p.kv.get("hard_mb"))
    check(num(p, "after_free_ok") == 1, p, "after freeing, allocation works again (reclaim makes room)")
    check(fields(p, "stats")["failed"] >= 1, p, "the refusal is counted")


def case_handler(a):
    p = run(["handler", "/dev/null"], a.lib, a.prog, "budget=runaway_*:64M,oom_action=fail,oom_sample=0", "handler")
    check(p.returncode == 0, p, "the program must complete")
    st = fields(p, "stats")
    check(num(p, "runaway_fail") == 0 and num(p, "well_fail") == 0, p, "the handler freed memory: nothing fails")
    check(st["handler_calls"] >= 1 and st["handler_recovered"] == st["handler_calls"], p, "handler stats: %s" % st)
    check(st["reports"] == 1 and st["events"] == 0, p, "the handler resolved every crossing (one report: its own): %s" % st)
    check("handler=kind:1,budget:runaway_*,live:" in p.out, p, "the handler sees the budget event")
    check(num(p, "handler_report") == 0, p, "bsl_oom_report from the handler must work (no deadlock)")


def case_threads(a):
    p = run(["threads"], a.lib, a.prog, "budget=runaway_*:1G,oom_sample=0", "threads")
    lines = [l for l in p.out.splitlines() if l.startswith("budget[runaway_*]=")]
    check(p.returncode == 0 and len(lines) == 4, p, "four budget lines")
    check(lines[0].startswith("budget[runaway_*]=live:%d,blocks:%d," % (96 * MiB, 96 * 1024)), p, "live before")
    check(lines[1].startswith("budget[runaway_*]=live:0,blocks:0,"), p, "frees from another thread must count")
    # 1 KiB grown by realloc to 4K, 16K, 64K, 256K, 1M (the loop stops at 2 MiB's bound): the account
    # holds each block's final requested size exactly, then nothing once another thread freed them.
    check(lines[2].startswith("budget[runaway_*]=live:%d,blocks:32," % (32 * MiB)), p, "reallocs must move the bytes")
    check(lines[3].startswith("budget[runaway_*]=live:0,blocks:0,"), p, "frees of realloc'ed blocks must count")


def case_rate(a):
    p = run(["budget", "/dev/null"], a.lib, a.prog, "budget=runaway_*:8M,oom_sample=0,oom_interval_ms=60000", "rate")
    st = fields(p, "stats")
    check(p.returncode == 0 and st["events"] >= 2, p, "the program hovers over its budget: %s" % st)
    check(st["reports"] == 1 and st["suppressed"] == st["events"] - 1, p, "one report, the rest counted: %s" % st)
    check(p.err.count("buddyslab soft OOM: budget") == 1, p, "exactly one report on stderr")


def case_fork(a):
    p = run(["fork"], a.lib, a.prog, "budget=tag:cache:4M,oom_action=fail,oom_report=/dev/null", "fork")
    check(p.returncode == 0 and num(p, "fork_bad") == 0, p, "every child must exit 0")
    check(num(p, "churn_fails") > 0, p, "the threads must hit their budget while the parent forks")


PY_RUNAWAY = r"""
import sys
cache = []
try:
    for i in range(2000):                     # 200 MB at most
        cache.append(bytearray(100_000))      # the runaway: 100 KB buffers
    print("no MemoryError")
except MemoryError:
    print("runaway_mb=%d" % (len(cache) * 100_000 // 2**20))
d = {i: str(i) * 10 for i in range(200_000)}  # everyone else carries on
print("rest_ok=%d" % len(d))
"""


def case_python(a):
    # A real program: Python's bytearray buffers get a 64 MiB budget with oom_action=fail. The
    # pattern matches PyByteArray_Resize or bytearray___init__, whichever frames the build keeps.
    p = run(["-c", PY_RUNAWAY], a.lib, sys.executable, "budget=*yte*rray*:64M,oom_action=fail,oom_report=/dev/null",
            "python")
    check(p.returncode == 0 and "no MemoryError" not in p.out, p, "the runaway must get MemoryError")
    check(56 <= num(p, "runaway_mb") <= 70, p, "MemoryError near the 64 MiB budget")
    check(num(p, "rest_ok") == 200000, p, "the rest of the program must carry on")


def case_rlimit(a):
    # The system refusing memory (RLIMIT_AS here; overcommit or a cgroup alike): reclaim, then the
    # report names who holds the memory, and the allocation fails with ENOMEM.
    tmp = tmpdir()
    rep = os.path.join(tmp, "oom.txt")
    p = run(["rlimit"], a.lib, a.prog, "budget=nothing_matches_this:1G,oom_report=" + rep, "rlimit")
    check(p.returncode == 0 and num(p, "rlimit_refused") == 1 and p.kv.get("rlimit_errno") == "ENOMEM", p,
          "under RLIMIT_AS the allocation must fail with ENOMEM")
    check(100 <= num(p, "rlimit_live_mb") <= 400, p, "MiB held when refused")
    first = json_lines(rep + ".json")[0]
    check(first["event"] == "no_memory" and first["reclaim"]["ran"], p, "a no_memory report after reclaim: %s" %
          {k: first[k] for k in ("event", "reclaim")})
    # Names come from dladdr only here (symbolizing needs memory): the frame is the program's.
    top = first["sites"][0]
    check(top["stack"] and (top["stack"][0]["module"] or "").endswith("oom_runaway"), p, "rank 1: %s" % top)
    check(within(top["live_bytes"], num(p, "rlimit_live_mb") * MiB, 0.15), p, "the runaway's bytes")
    check("the system refused memory" in open(rep).read(), p, "the text report says what happened")
    # A handler that frees memory and asks for a retry: the allocations go on.
    p = run(["rlimit", "handler"], a.lib, a.prog, "budget=nothing_matches_this:1G,oom_report=/dev/null", "rlimit")
    st = fields(p, "stats")
    check(p.returncode == 0 and "handler=kind:4," in p.out, p, "the handler sees BSL_OOM_NO_MEMORY")
    check(st["handler_recovered"] >= 1 and st["events"] == 0, p, "the retries succeed: %s" % st)


def case_dlopen(a):
    # Budgets match code loaded after they were set (and after the index of function ranges was
    # built): lk_lib_leak in a dlopen'ed library is refused at its 16 MiB budget, exactly.
    lib = os.path.join(os.path.dirname(os.path.dirname(a.prog)), "leak", "libleaky.so")
    p = run(["dlopen", lib], a.lib, a.prog, "budget=runaway_*:2M,budget=lk_lib_*:16M,oom_action=fail,oom_sample=0,"
            "oom_report=/dev/null", "dlopen")
    check(p.returncode == 0 and num(p, "early_ok") == 2048, p, "runaway_alloc refused at its 2 MiB budget")
    check(num(p, "lib_ok") == 16 * 1024 and p.kv.get("lib_errno") == "ENOMEM", p,
          "lk_lib_leak (dlopen'ed) refused at its 16 MiB budget")


def static_prog(a):
    """a, with the statically linked runaway program and nothing to preload."""
    if not a.static_prog:
        fail("static cases need --static-prog")
    if has_interp(a.static_prog):
        fail("%s is not statically linked (it has a PT_INTERP)" % a.static_prog)
    return argparse.Namespace(**dict(vars(a), prog=a.static_prog, lib=None))


def case_bad(a):
    opts = "budget=foo,budget=bar:12X,budget=tag::1M,oom_action=explode,soft_limit=lots,budget=ok_*:1M"
    p = run(["plain"], a.lib, a.prog, opts, "bad-syntax")
    check(p.returncode == 0 and num(p, "plain_ok") == 1, p, "bad options must not stop the program")
    lines = [l for l in p.err.splitlines() if l.startswith("buddyslab: ")]
    want = [r"option 'budget': bad value 'foo' \(expected PATTERN:SIZE", r"option 'budget': bad value 'bar:12X'",
            r"option 'budget': bad value 'tag::1M'", r"option 'oom_action': bad value 'explode'.*keeping 'report'",
            r"option 'soft_limit': bad value 'lots'"]
    for w in want:
        check(sum(1 for l in lines if re.search(w, l)) == 1, p, "one line matching %r" % w)
    check(len(lines) == len(want), p, "exactly one line per bad value, nothing for the good budget")


CASES = {
    "report-full": lambda a: case_report(a, False),
    "report-sampled": lambda a: case_report(a, True),
    "fail-full": lambda a: case_fail(a, False),
    "fail-sampled": lambda a: case_fail(a, True),
    "abort": case_abort,
    "soft-fail-full": lambda a: case_soft_fail(a, False),
    "soft-fail-sampled": lambda a: case_soft_fail(a, True),
    "tag-report": lambda a: case_report(a, True, tag=True),
    "tag-fail": lambda a: case_fail(a, False, tag=True),
    "api": case_api,
    "reclaim": case_reclaim,
    "watermarks": case_watermarks,
    "hard": case_hard,
    "handler": case_handler,
    "threads": case_threads,
    "rate-limit": case_rate,
    "fork": case_fork,
    "bad-syntax": case_bad,
    "python": case_python,
    "rlimit": case_rlimit,
    "dlopen": case_dlopen,
    "static-budget": lambda a: case_fail(static_prog(a), False),
    "static-soft-limit": lambda a: case_soft_fail(static_prog(a), True),
}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--lib", required=True)
    ap.add_argument("--prog", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--static-prog")
    a = ap.parse_args()
    CASES[a.case](a)
    print("ok: " + a.case)

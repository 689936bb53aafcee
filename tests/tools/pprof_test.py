#!/usr/bin/env python3
"""The pprof and legacy heap profile exports of `buddyslab report`, read by the real tools.

  pprof_test.py --launcher PATH --lib SO --target EXE [--data DIR] [--go GO] [--google-pprof PPROF]

The target (pprof_target.c) loses 200000 bytes in 4 blocks at pp_leak_site and keeps 300000
bytes in 3 blocks reachable at pp_keep_site (plus 3000 lost and 5000 reachable bytes at two
smaller sites). It runs under the launcher with --leaks and leak_reachable=1; the report is
converted with --format pprof and --format heap, and:

  go tool pprof -top -unit=B -sample_index=leaked_space    top: pp_leak_site 200000B
                              -sample_index=leaked_objects top: pp_leak_site 4
                              -sample_index=inuse_space    top: pp_keep_site 300000B
                              -tagfocus=kind=still_reachable  only the reachable sites
  google-pprof --text --show_bytes TARGET F.heap           top: pp_keep_site 300000 (live heap)
        (the --kind definite,indirect heap)                top: pp_leak_site 200000 (leaks)

Both again from the report without its "mappings" (the mappings made up from the frames), and
from tests/tools/leak_report.json (a hand-written report). The gzipped profile is also decoded
here (string table, sample types, ids) so that a broken encoding fails even with one tool.
Exit status 77 (skipped) when neither `go` (Debian golang-go) nor `google-pprof` (Debian
google-perftools; jeprof is used in its place) is installed, or when the build has no leak tracker.
"""
import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ARGS = None
TIMEOUT = 120


def fail(msg, proc=None):
    print("FAIL: " + msg, flush=True)
    if proc is not None:
        print("--- command: %s" % " ".join(map(str, proc.args)))
        print("--- exit status: %s" % proc.returncode)
        for name in ("stdout", "stderr"):
            v = getattr(proc, name, None)
            if v:
                print("--- %s:\n%s" % (name, v))
    sys.stdout.flush()
    sys.exit(1)


def check(cond, msg, proc=None):
    if not cond:
        fail(msg, proc)


def env_base(home):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS", "PYTHONMALLOC"):
        env.pop(k, None)
    env["BUDDYSLAB_LIB"] = ARGS.lib
    env["LC_ALL"] = "C"
    # go tool pprof keeps fetched profiles under $HOME/pprof (PPROF_TMPDIR); google-pprof too.
    env["PPROF_TMPDIR"] = home
    env.setdefault("HOME", home)
    env["PPROF_TOOLS"] = ""
    return env


def run(cmd, env, cwd=None):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                          timeout=TIMEOUT)


# ---- decoding profile.proto (enough to check the structure) --------------------------------------
def varint(buf, i):
    v = shift = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, i


def fields(buf):
    """[(field number, value)]: ints for varints, bytes for length-delimited fields."""
    out, i = [], 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v = bytes(buf[i:i + n])
            check(len(v) == n, "profile: a field runs past the end of its message")
            i += n
        else:
            fail("profile: wire type %d (we write varints and length-delimited fields only)" % wt)
        out.append((num, v))
    return out


def packed(v):
    if isinstance(v, int):
        return [v]
    out, i = [], 0
    while i < len(v):
        x, i = varint(v, i)
        out.append(x)
    return out


def decode_profile(path):
    raw = open(path, "rb").read()
    check(raw[:2] == b"\x1f\x8b", "%s is not gzipped" % path)
    top = fields(gzip.decompress(raw))
    strings = [v.decode("utf-8") for n, v in top if n == 6]
    check(strings and strings[0] == "", "profile: the string table must start with \"\"")

    def s(i):
        check(0 <= i < len(strings), "profile: string index %d out of the table" % i)
        return strings[i]
    types = []
    for n, v in top:
        if n == 1:
            f = dict(fields(v))
            types.append((s(f.get(1, 0)), s(f.get(2, 0))))
    funcs = {dict(fields(v)).get(1): dict(fields(v)) for n, v in top if n == 5}
    locs = {}
    for n, v in top:
        if n == 4:
            f = fields(v)
            d = dict(f)
            lines = [dict(fields(x)) for k, x in f if k == 4]
            check(d.get(1) and d[1] not in locs, "profile: location ids must be unique and non-zero")
            locs[d[1]] = [s(funcs[ln[1]].get(2, 0)) for ln in lines]
    maps = [dict(fields(v)) for n, v in top if n == 3]
    check(all(m.get(1) for m in maps), "profile: mapping ids must be non-zero")
    samples = []
    for n, v in top:
        if n == 2:
            f = fields(v)
            ids = [x for k, y in f if k == 1 for x in packed(y)]
            vals = [x for k, y in f if k == 2 for x in packed(y)]
            check(len(vals) == len(types), "profile: a sample has %d values for %d types" % (len(vals), len(types)))
            check(all(i in locs for i in ids), "profile: a sample names an unknown location")
            labels = {s(dict(fields(y)).get(1, 0)): s(dict(fields(y)).get(2, 0)) for k, y in f if k == 3}
            leaf = locs[ids[0]][0] if ids and locs[ids[0]] else None
            samples.append((leaf, vals, labels))
    default = dict(top).get(14)
    return {"types": types, "samples": samples, "default": s(default) if default else None, "maps": maps,
            "strings": strings}


# ---- the tools ----------------------------------------------------------------------------------
def top_row(out, unit_re):
    """The first row of a -top / --text table: (value, function)."""
    for line in out.splitlines():
        m = re.match(r"^\s*(\d+)%s\s+[\d.]+%%\s+[\d.]+%%\s+\d+%s\s+[\d.]+%%\s+(\S.*?)\s*$" % (unit_re, unit_re), line)
        if m:
            return int(m.group(1)), m.group(2)
    return None


def go_pprof(go, env, profile, *flags):
    p = run([go, "tool", "pprof", "-top", "-unit=B"] + list(flags) + [profile], env)
    check(p.returncode == 0, "go tool pprof %s failed" % " ".join(flags), p)
    return p


def check_go(go, env, profile, what, expect_leak, expect_keep):
    """expect_*: (function, bytes, blocks) at the top of the leaked and the in-use views."""
    for index, (fn, val) in (("leaked_space", expect_leak[:2]), ("leaked_objects", (expect_leak[0], expect_leak[2])),
                             ("inuse_space", expect_keep[:2])):
        p = go_pprof(go, env, profile, "-sample_index=" + index)
        row = top_row(p.stdout, "B?")
        check(row == (val, fn), "%s: go tool pprof -sample_index=%s: top should be %s %d, got %s"
              % (what, index, fn, val, row), p)
    # The default view is the leaks; -tagfocus on the kind label keeps one kind.
    p = go_pprof(go, env, profile)
    check("Type: leaked_space" in p.stdout, "%s: the default sample type should be leaked_space" % what, p)
    p = go_pprof(go, env, profile, "-sample_index=inuse_space", "-tagfocus=kind=still_reachable")
    check(top_row(p.stdout, "B?") == (expect_keep[1], expect_keep[0]) and expect_leak[0] not in p.stdout,
          "%s: -tagfocus=kind=still_reachable should leave the reachable sites only" % what, p)


def check_gperf(gp, env, target, heap, what, fn, nbytes):
    p = run([gp, "--text", "--show_bytes", target, heap], env)
    check(p.returncode == 0, "%s: %s --text failed" % (what, os.path.basename(gp)), p)
    row = top_row(p.stdout, "")
    check(row == (nbytes, fn), "%s: %s --text: top should be %s %d, got %s" % (what, os.path.basename(gp), fn, nbytes,
                                                                           row), p)


def report(env, *args):
    p = run([ARGS.launcher, "report"] + list(args), env)
    check(p.returncode == 0, "buddyslab report %s" % " ".join(args), p)
    return p


def main():
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launcher", required=True)
    ap.add_argument("--lib", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--data", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--go")
    ap.add_argument("--google-pprof")
    ARGS = ap.parse_args()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)

    go = shutil.which(ARGS.go or "go")
    gp = shutil.which(ARGS.google_pprof or "google-pprof") or shutil.which("jeprof")
    with tempfile.TemporaryDirectory() as d:
        env = env_base(d)
        if go and run([go, "tool", "pprof", "-h"], env).returncode not in (0, 2):
            go = None
        if not go and not gp:
            print("skip: neither go (Debian golang-go) nor google-pprof (Debian google-perftools) is installed")
            sys.exit(77)
        print("tools: %s, %s" % (go and (go + " tool pprof") or "no go", gp or "no google-pprof"), flush=True)

        # The target's report, reachable blocks included: the live heap at exit.
        target = os.path.realpath(ARGS.target)
        rep = os.path.join(d, "r.json")
        p = run([ARGS.launcher, "run", "--leaks", "--report", rep, "--options", "leak_reachable=1", "--", target], env)
        if "not available in this build" in p.stderr:
            print("skip: this build has no leak tracker")
            sys.exit(77)
        check(p.returncode == 0 and os.path.exists(rep), "the target under --leaks --report", p)
        doc = json.load(open(rep))
        got = sorted((r["kind"], r["stack"][0]["function"], r["bytes"], r["blocks"]) for r in doc["leaks"])
        want = sorted([("definitely_lost", "pp_leak_site", 200000, 4), ("still_reachable", "pp_keep_site", 300000, 3),
                       ("definitely_lost", "pp_small_leak", 3000, 1), ("still_reachable", "pp_small_keep", 5000, 1)])
        check(got == want, "the target's report: %s, expected %s" % (got, want))
        maps = doc.get("mappings")
        check(isinstance(maps, list) and any(line.endswith(" " + target) and " r-xp " in line for line in maps),
              "the report should list the executable mappings, the target's among them: %s" % maps)

        # The same report without its mappings: they are made up from the frames.
        bare = os.path.join(d, "bare.json")
        del doc["mappings"]
        json.dump(doc, open(bare, "w"))

        leak, keep = ("pp_leak_site", 200000, 4), ("pp_keep_site", 300000, 3)
        for name, src in (("report", rep), ("report without mappings", bare)):
            pb = src + ".pb.gz"
            report(env, src, "--format", "pprof", "-o", pb)
            prof = decode_profile(pb)
            check([t for t, _ in prof["types"]] == ["leaked_objects", "leaked_space", "inuse_objects", "inuse_space"],
                  "%s: sample types %s" % (name, prof["types"]))
            check(prof["default"] == "leaked_space", "%s: default sample type %s" % (name, prof["default"]))
            tops = {lf: (v, lb.get("kind")) for lf, v, lb in prof["samples"]}
            check(tops.get("pp_leak_site") == ([4, 200000, 4, 200000], "definitely_lost") and
                  tops.get("pp_keep_site") == ([0, 0, 3, 300000], "still_reachable"),
                  "%s: decoded samples %s" % (name, tops))
            check(prof["maps"] and prof["strings"][prof["maps"][0].get(5, 0)] == target,
                  "%s: the first mapping should be the program's" % name)
            heap_all, heap_lost = src + ".heap", src + ".lost.heap"
            report(env, src, "--format", "heap", "-o", heap_all)
            report(env, src, "--format", "heap", "--kind", "definite,indirect", "-o", heap_lost)
            text = open(heap_all).read()
            check(text.startswith("heap profile:      9:   508000 [     9:   508000] @ heapprofile\n") and
                  "\nMAPPED_LIBRARIES:\n" in text, "%s: the heap profile's header and mappings:\n%s" % (name, text))
            if go:
                check_go(go, env, pb, name, leak, keep)
            if gp:
                check_gperf(gp, env, target, heap_all, name + ", live heap", "pp_keep_site", 300000)
                check_gperf(gp, env, target, heap_lost, name + ", leaks", "pp_leak_site", 200000)

        # The hand-written report of the other tests (no mappings; programs that do not exist
        # here): the functions come from the report itself.
        known = os.path.join(ARGS.data, "leak_report.json")
        pb = os.path.join(d, "known.pb.gz")
        report(env, known, "--format", "pprof", "-o", pb)
        decode_profile(pb)
        if go:
            p = go_pprof(go, env, pb, "-sample_index=leaked_space")
            check(top_row(p.stdout, "B?") == (66560, "make_buffer"),
                  "leak_report.json: go tool pprof: top should be make_buffer 66560", p)
        p = report(env, known, "--format", "heap")
        check(p.stdout.startswith("heap profile:     36:   103424 [    36:   103424] @ heapprofile\n") and
              "/opt/server/bin/server\n" in p.stdout and "1 record without addresses left out" in p.stderr,
              "leak_report.json as a heap profile (its record without a stack left out, with a message)", p)

        # Usage: an unknown format is refused with the list of formats.
        p = run([ARGS.launcher, "report", known, "--format", "proto"], env)
        check(p.returncode == 2 and "pprof" in p.stderr, "--format proto: usage error naming the formats", p)
    tools = [t for t, found in (("go tool pprof", go), (gp and os.path.basename(gp), gp)) if found]
    print("ok: %s read the exported profiles; top sites pp_leak_site (leaked, 200000 bytes) and pp_keep_site "
          "(in use, 300000 bytes)" % " and ".join(tools))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Cost of buddyslab's soft OOM policy (limits and budgets enforced, never crossed), against no policy.

  bench/oom_overhead.py [--build DIR] [--reps N] [--quick] [--only NAME,...] [--configs C,...] [--out FILE.md]

A benchmark, not a test. The workloads and the measuring are those of tests/leak/leak_overhead.py
(imported from its path): bench-mix, bench-larson (bsl-bench), python (bench/macro/alloc_heavy.py),
cxx (tests/preload/cxx_workload).
Configurations (LD_PRELOAD=libbuddyslab.so and BUDDYSLAB_OPTIONS unless said otherwise):
  none                no options: the baseline of every ratio
  jemalloc            Debian's libjemalloc.so.2 preloaded instead, for scale
  soft_limit          soft_limit=16G: a process limit never crossed (the checks on the slow paths;
                      a limit also turns on sampled site tracking)
  budget-sampled      budget=no_such_function_*:1G: sampled tracking (oom_sample=64K by default) and
                      one pattern matched against every new site, which never matches
  budget-sampled-hit  budget=main:16G: a pattern nearly every site matches: every sampled
                      allocation is charged to the account (never crossed)
  budget-full         budget=main:16G,oom_sample=0: every allocation tracked and charged, exactly
  leak-sample-64K     leak_sample=64K: the leak tracker alone at the same rate (report at exit to a file)
  leak-full           leak=1: every allocation tracked by the leak tracker (report at exit to a file)
Then a second table (bench/oom_enforce.c, bsl-oom-enforce): what a budget at its limit under
oom_action=fail costs the rest of the program, untagged malloc(64)/free pairs timed: no budget, a tag
budget enforced (only allocations under the tag are tracked in full), a pattern budget enforced
(every allocation is). Left out with --no-enforce.
The library is copied once at start, so a rebuild during the run does not mix versions. Before
measuring, the options are checked to take effect (a bad budget must complain on stderr, a tiny
budget on 'main' must be crossed, and no configuration may print anything at all).
For bsl-bench the figure is Google Benchmark's time per item and its CPU time per item; for
programs, the wall time of the whole run (exit report included) and its CPU time (user+sys).
"""
import argparse
import glob
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("leak_overhead", os.path.join(ROOT, "tests", "leak", "leak_overhead.py"))
lo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lo)

CONFIGS = {
    "none": "",
    "jemalloc": None,  # preloads jemalloc instead
    "soft_limit": "soft_limit=16G",
    "budget-sampled": "budget=no_such_function_*:1G",
    "budget-sampled-hit": "budget=main:16G",
    "budget-full": "budget=main:16G,oom_sample=0",
    "leak-sample-64K": "leak_sample=64K,leak_report={rep}",
    "leak-full": "leak=1,leak_report={rep}",
}
JEMALLOC = (sorted(glob.glob("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")) +
            sorted(glob.glob("/usr/lib/*/libjemalloc.so.2")) + [""])[0]


def env_for(cfg, lib, tmp, options=None):
    """The environment of one configuration (or of raw options, for the checks)."""
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS"):
        env.pop(k, None)
    if cfg == "jemalloc":
        env["LD_PRELOAD"] = JEMALLOC
        return env
    env["LD_PRELOAD"] = lib
    opts = CONFIGS.get(cfg, "") if options is None else options
    if opts:
        env["BUDDYSLAB_OPTIONS"] = opts.format(rep=os.path.join(tmp, "reports", "leak-%p.json"))
    return env


# leak_overhead's bench_case()/program() look these up at call time: point them at our configurations.
lo.env_for = env_for
lo.prefix_for = lambda cfg, tmp: []


def find(build, rel):
    """rel under --build, else under the first bench/test-enabled build directory that has it."""
    dirs = [build] + [os.path.join(ROOT, d) for d in ("build-bench", "build-test", "build-full", "build-leak",
                                                      "build-tests", "build")]
    return next((os.path.join(d, rel) for d in dirs if os.path.exists(os.path.join(d, rel))), os.path.join(build, rel))


def check_options(lib, tmp, configs):
    """Fail loudly unless the library is loaded, reads its options and enforces a budget."""
    def stderr_of(cfg, options=None, code="pass"):
        p = subprocess.run([sys.executable, "-c", code], env=env_for(cfg, lib, tmp, options),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        return p.stderr.decode(errors="replace")
    err = stderr_of("x", "budget=foo")
    if "budget" not in err:
        sys.exit("options not read: budget=foo printed nothing (is %s preloaded?)" % lib)
    err = stderr_of("x", "budget=main:1K,oom_sample=0", "x = [str(i) * 10 for i in range(100000)]")
    if "budget 'main' crossed" not in err:
        sys.exit("budget=main:1K was not enforced; stderr: %r" % err[-500:])
    for cfg in configs:
        err = stderr_of(cfg)
        if err.strip():
            sys.exit("configuration %s prints on stderr: %r" % (cfg, err[-500:]))
    print("options checked: bad budget rejected, budget on 'main' enforced, configurations silent", flush=True)


def enforce_table(exe, reps, pairs):
    """bsl-oom-enforce in its three modes, interleaved: ns per untagged pair, median."""
    if not os.path.exists(exe):
        return "(bsl-oom-enforce not built: no enforcement table)\n"
    modes = [("no budget", 0), ("tag budget at its limit", 1), ("pattern budget at its limit", 2)]
    got = {m: [] for _, m in modes}
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS"):
        env.pop(k, None)
    for _ in range(reps):
        for _, m in modes:
            out = subprocess.run([exe, str(m), str(pairs)], env=env, stdout=subprocess.PIPE, text=True,
                                 timeout=300).stdout.split()
            got[m].append(float(out[out.index("ns_per_pair") + 1]))
            print("enforce mode %d: %s ns/pair (refused %s)" % (m, got[m][-1], out[out.index("refused") + 1]),
                  flush=True)
    base = statistics.median(got[0])
    rows = ["| untagged malloc(64)/free | %s |" % " | ".join(
        "%.1f ns (%.2fx)" % (statistics.median(got[m]), statistics.median(got[m]) / base) for _, m in modes)]
    return ("Enforcing a budget exactly (oom_action=fail, 1 MiB budget filled with 4 MiB asked), what the rest of "
            "the program pays; median of %d reps:\n\n| | %s |\n|---|---|---|---|\n%s\n"
            % (reps, " | ".join(n for n, _ in modes), "\n".join(rows)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"),
                    help="build directory with libbuddyslab.so (bsl-bench and the C++ workload are taken from "
                         "it or from build-bench, build-test, ...)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 rep, shorter runs")
    ap.add_argument("--only", default="", help="comma-separated workloads")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", default="")
    ap.add_argument("--no-enforce", action="store_true", help="skip the enforcement table")
    a = ap.parse_args()
    bench = find(a.build, os.path.join("bench", "bsl-bench"))
    cxx = find(a.build, os.path.join("tests", "preload", "preload_cxx_workload"))
    reps = 1 if a.quick else a.reps
    min_time = 0.1 if a.quick else 0.5
    workloads = [  # as in tests/leak/leak_overhead.py
        ("bench-mix", "ns/pair", lo.bench_case(bench, "malloc_free_mix/real_time", min_time)),
        ("bench-larson", "ns/item", lo.bench_case(bench, "larson/real_time/threads:2", min_time)),
        ("python", "s", lo.program([sys.executable, os.path.join(ROOT, "bench", "macro", "alloc_heavy.py"),
                                    "0.25" if a.quick else "0.5"])),
        ("cxx", "s", lo.program([cxx, "1" if a.quick else "2"])),
    ]
    if a.only:
        keep = set(a.only.split(","))
        workloads = [w for w in workloads if w[0] in keep]
    configs = [c for c in a.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        sys.exit("unknown configuration(s): %s (known: %s)" % (",".join(unknown), ",".join(CONFIGS)))
    if "jemalloc" in configs and not JEMALLOC:
        print("libjemalloc.so.2 not found: jemalloc left out", file=sys.stderr)
        configs.remove("jemalloc")
    for path in (bench, cxx):
        if not os.path.exists(path):
            sys.exit("%s not built (meson setup build-bench -Dbench=true -Dtests=true; ninja -C build-bench)" % path)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bsl-oom-bench-") as tmp:
        lib = os.path.join(tmp, "libbuddyslab.so")
        shutil.copy(os.path.join(a.build, "libbuddyslab.so"), lib)  # frozen: others may rebuild meanwhile
        reports = os.path.join(tmp, "reports")
        os.mkdir(reports)
        check_options(lib, tmp, configs)
        results = lo.run_interleaved(workloads, configs, reps, lib, tmp, reports)
    lines = ["| workload | none | " + " | ".join(c for c in configs if c != "none") + " |",
             "|---" * (len(configs) + 1 if "none" in configs else len(configs) + 2) + "|"]
    for name, unit, _ in workloads:
        bw, bc = lo.medians(results, name, "none")
        cells = ["%.4g %s (cpu %.4g)" % (bw, unit, bc) if bw else "n/a"]
        for cfg in configs:
            w, c = lo.medians(results, name, cfg)
            if cfg == "none":
                continue
            if w is None:
                cells.append("n/a")
                continue
            cells.append("%.2fx (cpu %.2fx)" % (w / bw, c / bc) if bw and bc else "%.4g %s (cpu %.4g)" % (w, unit, c))
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    head = ("Soft OOM policy overhead: median of %d rep(s), interleaved; `none` = buddyslab without options "
            "(absolute: wall time, CPU time in parentheses), the others as ratios to it: wall (CPU). "
            "bsl-bench: time per item; programs: whole run. %s, %d CPUs, %s, %.0f s.\n"
            % (reps, platform.node() or "host", os.cpu_count() or 0, time.strftime("%Y-%m-%d %H:%M"),
               time.time() - started))
    legend = "\n".join("- `%s`: %s" % (c, "LD_PRELOAD=" + JEMALLOC if c == "jemalloc" else
                                       "`%s`" % CONFIGS[c].replace(",leak_report={rep}", "") if CONFIGS[c]
                                       else "no options") for c in configs)
    text = head + "\n" + "\n".join(lines) + "\n\n" + legend + "\n"
    if not a.no_enforce:
        text += "\n" + enforce_table(find(a.build, os.path.join("bench", "bsl-oom-enforce")), reps,
                                     500000 if a.quick else 5000000)
    print("\n" + text)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()

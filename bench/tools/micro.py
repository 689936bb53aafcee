"""bench/run: the micro-benchmark driver.

Builds the harness, lists its benchmark instances, and runs each instance in its own process
(so peak RSS is per case) under every allocator, interleaved: for each repetition, for each
case, A B C D E. Then it takes medians and writes Markdown, JSON and plots (report.py)."""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import common
from common import log, warn
import report

STANDARD_KEYS = {
    "name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions",
    "repetition_index", "threads", "iterations", "real_time", "cpu_time", "time_unit",
    "bytes_per_second", "items_per_second", "label", "error_occurred", "error_message",
    "aggregate_name", "aggregate_unit", "big_o", "rms",
}
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
REGEX_META = re.compile(r"([.^$*+?()\[\]{}|\\])")


def display_name(name):
    """'larson/real_time/threads:2' -> 'larson/threads:2'."""
    return name.replace("/real_time", "").replace("/iterations:1", "")


def list_instances(harness, env):
    p = subprocess.run([harness, "--benchmark_list_tests"], env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {harness} --benchmark_list_tests failed:\n{p.stderr}")
    return [l.strip() for l in p.stdout.splitlines() if l.strip()]


def parse_gbench_json(path):
    """(entry, context) of the single iteration run in a --benchmark_out file."""
    with open(path) as f:
        data = json.load(f)
    runs = [b for b in data.get("benchmarks", []) if b.get("run_type", "iteration") == "iteration"]
    return (runs[0] if runs else None), data.get("context", {})


def run_one(b, inst, alloc, preload, rep, args, raw_dir, extra_env):
    tag = f"{alloc}.r{rep}.{re.sub(r'[^A-Za-z0-9_.-]+', '_', display_name(inst))}"
    out_json = os.path.join(raw_dir, tag + ".json")
    series = os.path.join(raw_dir, "series", tag + ".csv")
    env = common.child_env(preload, dict(extra_env, BENCH_ALLOCATOR=alloc,
                                         BENCH_SERIES_OUT=series, BENCH_REQUIRE_RUN="1"))
    cmd = [b.harness, "--benchmark_filter=^" + REGEX_META.sub(r"\\\1", inst) + "$",
           f"--benchmark_min_time={args.min_time}", "--benchmark_out=" + out_json,
           "--benchmark_out_format=json"]
    res = common.run_child(cmd, env, stdout_path=os.path.join(raw_dir, tag + ".out"),
                           stderr_path=os.path.join(raw_dir, tag + ".err"), timeout=args.timeout)
    sample = {"rep": rep, "wait4_maxrss_kb": res.maxrss_kb, "wall_s": res.wall_s,
              "raw": os.path.relpath(out_json, common.BENCH_DIR)}
    entry, ctx = None, {}
    if os.path.exists(out_json):
        try:
            entry, ctx = parse_gbench_json(out_json)
        except (ValueError, OSError):
            entry = None
    if entry is not None and entry.get("error_occurred"):
        sample["error"] = "case failed: " + str(entry.get("error_message", ""))
        return sample
    if not res.ok:
        sample["error"] = res.describe()
        try:
            with open(os.path.join(raw_dir, tag + ".err"), errors="replace") as f:
                lines = [l.strip() for l in f if l.strip()]
            msg = [l for l in lines if "bench:" in l or "rror" in l or "abort" in l.lower()]
            if msg:
                sample["error"] += ": " + msg[-1][:120]
        except OSError:
            pass
        return sample
    if entry is None:
        sample["error"] = "no result in the benchmark's JSON output"
        return sample
    impl = ctx.get("malloc_impl", "")
    want = os.path.realpath(preload) if preload else None
    got = os.path.realpath(impl) if impl.startswith("/") else impl
    if want and got != want:
        sample["error"] = f"LD_PRELOAD not effective: malloc comes from {impl}"
        return sample
    scale = UNIT_NS.get(entry.get("time_unit", "ns"), 1.0)
    sample["real_ns"] = entry["real_time"] * scale
    ips = entry.get("items_per_second")
    sample["ns_per_op"] = 1e9 / ips if ips else sample["real_ns"]
    sample["iterations"] = entry.get("iterations")
    sample["threads"] = entry.get("threads", 1)
    sample["items_per_second"] = ips
    sample["label"] = entry.get("label", "")
    sample["counters"] = {k: v for k, v in entry.items()
                          if k not in STANDARD_KEYS and isinstance(v, (int, float))}
    if os.path.exists(series):
        sample["series"] = os.path.relpath(series, common.BENCH_DIR)
    return sample


def aggregate(cases, allocs, samples, baseline):
    """Medians per (case, allocator) and ratios to the baseline."""
    out = []
    for inst in cases:
        row = {"name": inst, "display": display_name(inst), "allocators": {}}
        for alloc, _ in allocs:
            ss = samples[inst][alloc]
            good = [s for s in ss if "error" not in s]
            bad = [s for s in ss if "error" in s]
            cell = {
                "samples": ss,
                "n_ok": len(good),
                "n_failed": len(bad),
                "errors": sorted({s["error"] for s in bad}),
                "ns_per_op": common.median([s["ns_per_op"] for s in good]),
                "ns_per_op_spread": common.spread([s["ns_per_op"] for s in good]),
                "maxrss_kb": common.median([s["wait4_maxrss_kb"] for s in good]),
                "items_per_second": common.median([s.get("items_per_second") for s in good]),
                "counters": {},
            }
            keys = sorted({k for s in good for k in s.get("counters", {})})
            for k in keys:
                cell["counters"][k] = common.median([s["counters"].get(k) for s in good])
            row["allocators"][alloc] = cell
        base = row["allocators"].get(baseline, {})
        for alloc, cell in row["allocators"].items():
            for key, rkey in (("ns_per_op", "time_ratio"), ("maxrss_kb", "rss_ratio")):
                b, v = base.get(key), cell.get(key)
                cell[rkey] = (v / b) if (b and v) else None
        out.append(row)
    return out


def main(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Run the buddyslab micro benchmarks under several allocators "
                    "(use --macro for the real-program benchmarks).")
    ap.add_argument("--quick", action="store_true",
                    help="fast pass: 1 repetition, short min time, shrunken heavy cases")
    ap.add_argument("--filter", metavar="REGEX", help="only cases whose name matches (re.search)")
    ap.add_argument("--allocators", metavar="LIST",
                    help="comma-separated, in run order (default: "
                         + ",".join(common.ALLOCATOR_ORDER) + "); a path to a .so, or LABEL=PATH, also works")
    ap.add_argument("--reps", type=int, help="repetitions of the interleaved round (default 3, "
                                             "--quick 1)")
    ap.add_argument("--min-time", type=float,
                    help="Google Benchmark min time per case in seconds (default 0.5, --quick 0.05)")
    ap.add_argument("--max-threads", type=int,
                    help="upper end of thread_scaling, N of larson (default: online CPUs)")
    ap.add_argument("--baseline", default=common.BASELINE, help="ratios are to this allocator")
    ap.add_argument("--out", help="results directory (default bench/results/latest)")
    ap.add_argument("--build-dir", help="meson build dir (default <repo>/build-bench)")
    ap.add_argument("--no-build", action="store_true", help="use the existing build, build nothing")
    ap.add_argument("--buddyslab", metavar="SO", help="libbuddyslab.so to preload (default: the "
                    "one built in the build dir, else <repo>/build/libbuddyslab.so)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per case process")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)

    args.reps = args.reps or (1 if args.quick else 3)
    args.min_time = args.min_time or (0.05 if args.quick else 0.5)
    out_dir = os.path.abspath(args.out or os.path.join(common.RESULTS_DIR, "latest"))

    b = common.build(args)
    extra_env = {}
    if args.quick:
        extra_env["BENCH_QUICK"] = "1"
    if args.max_threads:
        extra_env["BENCH_MAX_THREADS"] = str(args.max_threads)
    cases = list_instances(b.harness, common.child_env(None, extra_env))
    if args.filter:
        rx = re.compile(args.filter)
        cases = [c for c in cases if rx.search(c) or rx.search(display_name(c))]
    if args.list:
        for c in cases:
            print(display_name(c))
        return 0
    if not cases:
        sys.exit("bench: no case matches the filter")
    allocs = common.allocators(b, args.allocators)
    if not allocs:
        sys.exit("bench: no allocator to run")
    names = [a for a, _ in allocs]
    baseline = args.baseline if args.baseline in names else names[0]
    if baseline != args.baseline:
        warn(f"baseline {args.baseline} is not being run: ratios are to {baseline}")

    stamp = common.timestamp()
    raw_dir = os.path.join(common.RESULTS_DIR, "raw", stamp + "-micro")
    os.makedirs(os.path.join(raw_dir, "series"), exist_ok=True)
    load = common.check_idle()
    log(f"bench: harness {b.harness} ({b.how})")
    for a, p in allocs:
        log(f"bench:   {a:<10} {p or '(nothing preloaded)'}")
    log(f"bench: {len(cases)} cases x {len(allocs)} allocators x {args.reps} reps, "
        f"min_time {args.min_time}s{', quick' if args.quick else ''}; raw output in "
        f"{os.path.relpath(raw_dir, common.REPO)}")

    samples = {c: {a: [] for a, _ in allocs} for c in cases}
    t_start = time.time()
    width = max(len(display_name(c)) for c in cases)
    for rep in range(args.reps):
        for ci, inst in enumerate(cases):
            cells = []
            for alloc, preload in allocs:
                s = run_one(b, inst, alloc, preload, rep, args, raw_dir, extra_env)
                samples[inst][alloc].append(s)
                cells.append(f"{alloc} " + (common.fmt_time_ns(s["ns_per_op"])
                                            if "error" not in s else "FAIL"))
                if "error" in s:
                    warn(f"{display_name(inst)} under {alloc}: {s['error']}")
            elapsed = time.time() - t_start
            done = rep * len(cases) + ci + 1
            eta = elapsed / done * (args.reps * len(cases) - done)
            log(f"[{rep + 1}/{args.reps} {ci + 1:>2}/{len(cases)}] "
                f"{display_name(inst):<{width}}  " + "  ".join(cells)
                + f"   (eta {eta / 60:.1f} min)")

    rows = aggregate(cases, allocs, samples, baseline)
    meta = {
        "kind": "micro",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "quick": args.quick,
        "reps": args.reps,
        "min_time_s": args.min_time,
        "baseline": baseline,
        "allocators": [{"name": a, "preload": p, "file": common.lib_version(p)}
                       for a, p in allocs],
        "buddyslab_rev": common.git_describe(),
        "harness": b.harness,
        "build": b.how,
        "machine": common.machine_info(),
        "elapsed_s": time.time() - t_start,
        "loadavg_at_start": load,
        "raw_dir": os.path.relpath(raw_dir, common.BENCH_DIR),
        "filter": args.filter,
        "env": {k: v for k, v in extra_env.items()},
    }
    report.write_micro(meta, rows, out_dir, plots=not args.no_plots)
    failed = sum(c["n_failed"] for r in rows for c in r["allocators"].values())
    log(f"bench: done in {(time.time() - t_start) / 60:.1f} min; results in "
        f"{os.path.relpath(out_dir, common.REPO)}/")
    return 1 if failed else 0

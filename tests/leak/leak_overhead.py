#!/usr/bin/env python3
"""Cost of buddyslab's leak tracker, against no tracking, Valgrind and heaptrack (not a test).

  tests/leak/leak_overhead.py [--build DIR] [--reps N] [--quick] [--only NAME,...] [--out FILE.md]

Workloads (the same for every configuration):
  bench-mix     bsl-bench malloc_free_mix: time per malloc/free pair, realistic size mix
  bench-larson  bsl-bench larson, 2 threads: a server-like producer/consumer pattern
  python        python3 bench/macro/alloc_heavy.py 0.5: a real allocation-heavy program
  cxx           tests/preload/cxx_workload 2 (4 threads, containers, strings)
  perl          perl bench/macro/hash_churn.pl 0.25: big nested hashes built and churned
  bash          bash running 300 command substitutions: start-up and fork children
Configurations:
  glibc         nothing preloaded
  buddyslab     LD_PRELOAD=libbuddyslab.so, no tracking (the baseline of the ratios)
  leak=1        full tracking, report at exit written to a file
  sample=512K   leak_sample=512K (one sample per ~512 KiB allocated), report at exit
  sample=64K    leak_sample=64K
  valgrind      valgrind --leak-check=full on glibc's malloc
  heaptrack     heaptrack on glibc's malloc (recording only; the analysis is not counted)
For bsl-bench the figure is Google Benchmark's time per item (min_time per process, median of
the reps); for programs, the wall time of the whole run including the exit report (median).
CPU time (user+sys) is shown next to wall time: on a loaded machine it is the steadier figure.
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def env_for(cfg, lib, tmp):
    env = dict(os.environ)
    for k in ("LD_PRELOAD", "BUDDYSLAB_OPTIONS"):
        env.pop(k, None)
    rep = os.path.join(tmp, "leak-%p.json")
    if cfg != "glibc" and cfg not in ("valgrind", "heaptrack"):
        env["LD_PRELOAD"] = lib
    if cfg == "leak=1":
        env["BUDDYSLAB_OPTIONS"] = "leak=1,leak_report=" + rep
    elif cfg.startswith("sample="):
        env["BUDDYSLAB_OPTIONS"] = "leak_sample=%s,leak_report=%s" % (cfg.split("=")[1], rep)
    return env


def prefix_for(cfg, tmp):
    if cfg == "valgrind":
        return ["valgrind", "--leak-check=full", "-q", "--log-file=" + os.path.join(tmp, "vg.log")]
    if cfg == "heaptrack":
        return ["heaptrack", "-o", os.path.join(tmp, "ht")]
    return []


def run_timed(cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return p, wall, cpu


def bench_case(bench, case, min_time):
    def measure(cfg, lib, tmp):
        out = os.path.join(tmp, "gb.json")
        cmd = prefix_for(cfg, tmp) + [bench, "--benchmark_filter=^%s$" % case, "--benchmark_min_time=%s" % min_time,
                                      "--benchmark_format=json", "--benchmark_out=" + out,
                                      "--benchmark_out_format=json"]
        p, wall, cpu = run_timed(cmd, env_for(cfg, lib, tmp))
        if p.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(cmd), p.stderr.decode()[-2000:]))
        with open(out) as f:
            doc = json.load(f)
        b = [x for x in doc["benchmarks"] if x.get("run_type", "iteration") == "iteration"][0]
        per_item = 1e9 / b["items_per_second"] if b.get("items_per_second") else b["real_time"]
        # the same per item in CPU time of the benchmark thread (steadier on a loaded machine)
        per_item_cpu = per_item * b["cpu_time"] / b["real_time"] if b.get("real_time") else per_item
        return per_item, per_item_cpu
    return measure


def program(cmd):
    def measure(cfg, lib, tmp):
        full = prefix_for(cfg, tmp) + cmd
        p, wall, cpu = run_timed(full, env_for(cfg, lib, tmp))
        if p.returncode != 0:
            raise RuntimeError("%s failed: %s" % (" ".join(full), p.stderr.decode()[-2000:]))
        return wall, cpu
    return measure


def medians(results, name, cfg):
    """(median value, median cpu) of one workload and configuration, or (None, None)."""
    rs = results.get((name, cfg))
    if not rs:
        return None, None
    return statistics.median(v for v, _ in rs), statistics.median(c for _, c in rs)


def run_interleaved(workloads, configs, reps, lib, tmp, clean_dir):
    """Every workload, rep and configuration, the configurations interleaved (drifts of the machine hit
    them alike); files left in clean_dir (reports, traces) are removed after each run.
    Returns {(workload, configuration): [(value, cpu), ...]}."""
    results = {}
    for name, unit, measure in workloads:
        for r in range(reps):
            for cfg in configs:
                try:
                    v, cpu = measure(cfg, lib, tmp)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print("%s / %s: %s" % (name, cfg, e), file=sys.stderr)
                    continue
                results.setdefault((name, cfg), []).append((v, cpu))
                print("%-13s %-18s rep %d: %.4g %s (cpu %.4g)" % (name, cfg, r + 1, v, unit, cpu), flush=True)
                for f in os.listdir(clean_dir):
                    os.unlink(os.path.join(clean_dir, f))
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=next((d for d in (os.path.join(ROOT, "build-leak"), os.path.join(ROOT, "build"))
                                             if os.path.exists(os.path.join(d, "libbuddyslab.so"))),
                                            os.path.join(ROOT, "build")),
                    help="meson build directory with libbuddyslab.so, bench/bsl-bench and the tests")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 rep, shorter runs")
    ap.add_argument("--only", default="", help="comma-separated workloads")
    ap.add_argument("--configs", default="glibc,buddyslab,leak=1,sample=512K,sample=64K,valgrind,heaptrack")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    lib = os.path.join(a.build, "libbuddyslab.so")
    bench = os.path.join(a.build, "bench", "bsl-bench")
    cxx = os.path.join(a.build, "tests", "preload", "preload_cxx_workload")
    reps = 1 if a.quick else a.reps
    min_time = 0.1 if a.quick else 0.5
    workloads = [
        ("bench-mix", "ns/pair", bench_case(bench, "malloc_free_mix/real_time", min_time)),
        ("bench-larson", "ns/item", bench_case(bench, "larson/real_time/threads:2", min_time)),
        ("python", "s", program([sys.executable, os.path.join(ROOT, "bench", "macro", "alloc_heavy.py"),
                                 "0.25" if a.quick else "0.5"])),
        ("cxx", "s", program([cxx, "1" if a.quick else "2"])),
        ("perl", "s", program(["perl", os.path.join(ROOT, "bench", "macro", "hash_churn.pl"),
                               "0.1" if a.quick else "0.25"])),
        ("bash", "s", program(["bash", "-c", "for i in $(seq %d); do x=$(echo $i); done" % (100 if a.quick else 300)])),
    ]
    if a.only:
        keep = set(a.only.split(","))
        workloads = [w for w in workloads if w[0] in keep]
    configs = [c for c in a.configs.split(",") if c]
    missing = [t for t in ("valgrind", "heaptrack") if t in configs and not shutil.which(t)]
    configs = [c for c in configs if c not in missing]
    with tempfile.TemporaryDirectory(prefix="bsl-leak-bench-") as tmp:
        results = run_interleaved(workloads, configs, reps, lib, tmp, tmp)
    lines = ["| workload | " + " | ".join(configs) + " |", "|---" * (len(configs) + 1) + "|"]
    for name, unit, _ in workloads:
        bw, bc = medians(results, name, "buddyslab")
        cells = []
        for cfg in configs:
            w, c = medians(results, name, cfg)
            if w is None:
                cells.append("n/a")
            elif bw:
                cells.append("%.4g %s wall (%.2fx), cpu %.2fx" % (w, unit, w / bw, c / bc))
            else:
                cells.append("%.4g %s wall, cpu %.4g" % (w, unit, c))
        lines.append("| %s | %s |" % (name, " | ".join(cells)))
    table = "\n".join(lines)
    print("\nMedian of %d rep(s); ratio = against buddyslab without tracking.\n" % reps)
    print(table)
    if a.out:
        with open(a.out, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()

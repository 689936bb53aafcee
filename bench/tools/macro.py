"""bench/run --macro (bench/run-macro): real programs under LD_PRELOAD.

Each program runs under every allocator, interleaved (for each repetition, for each program,
A B C D E), after one untimed warm-up run. Measured: wall time and peak RSS (GNU time's
ru_maxrss of the process tree; for redis, of the server). Every run's output is hashed and the
hashes must agree across allocators and repetitions."""

import argparse
import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import common
from common import log, warn
import report

MACRO_DIR = os.path.join(common.BENCH_DIR, "macro")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def sha256_file(path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def links_other_malloc(binary):
    """True when the program links an allocator itself (then 'glibc' needs the shim)."""
    try:
        p = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True)
        return bool(re.search(r"lib(jemalloc|tcmalloc|mimalloc)", p.stdout))
    except OSError:
        return False


class Program:
    """A command whose stdout (and optional output file) is hashed."""

    def __init__(self, name, display, cmd, stdin=None, env=None, output_file=None, cwd=None,
                 binary=None):
        self.name, self.display, self.cmd = name, display, cmd
        self.stdin, self.env, self.output_file, self.cwd = stdin, env or {}, output_file, cwd
        self.binary = binary or cmd[0]
        self.note = ""

    def available(self):
        return bool(shutil_which(self.binary))

    def run(self, preload, raw_prefix, timeout):
        out = raw_prefix + ".out"
        err = raw_prefix + ".err"
        if self.output_file and os.path.exists(self.output_file):
            os.remove(self.output_file)
        res = common.run_child(self.cmd, common.child_env(preload, self.env), stdout_path=out,
                               stderr_path=err, stdin_path=self.stdin, timeout=timeout,
                               cwd=self.cwd)
        if not res.ok:
            return res, None, res.describe() + _err_tail(err)
        h = sha256_file(out)
        if self.output_file:
            if not os.path.exists(self.output_file):
                return res, None, "no output file"
            sha256_file(self.output_file, h)
        return res, h.hexdigest()[:16], None


def _err_tail(path):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
        return (": " + lines[-1][:150]) if lines else ""
    except OSError:
        return ""


def shutil_which(b):
    import shutil
    return shutil.which(b)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis(Program):
    """redis-server under the allocator; redis-cli --pipe loads a data set (sets, deletes a
    third, refills), redis-benchmark runs a bounded request count on 127.0.0.1, DEBUG DIGEST
    hashes the final data set. Time = the client phase; RSS = the server."""

    def __init__(self, workdir, data, requests):
        super().__init__("redis", "redis-server + redis-benchmark", ["redis-server"])
        self.workdir, self.data, self.requests = workdir, data, requests

    def available(self):
        return all(shutil_which(b) for b in ("redis-server", "redis-cli", "redis-benchmark"))

    def _cli(self, port, *args, stdin=None, timeout=120):
        return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port)] + list(args),
                              stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout, env=common.child_env(None))

    def run(self, preload, raw_prefix, timeout):
        port = free_port()
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
               "--enable-debug-command", "yes", "--loglevel", "warning", "--dir", self.workdir]
        result = []
        th = threading.Thread(target=lambda: result.append(common.run_child(
            cmd, common.child_env(preload), stdout_path=raw_prefix + ".server.log",
            stderr_path=raw_prefix + ".server.err", timeout=timeout)))
        th.start()
        log_path = raw_prefix + ".out"
        outputs = []
        error = None
        try:
            deadline = time.time() + 15
            while True:
                if not th.is_alive():
                    error = "server exited at start"
                    break
                try:
                    if self._cli(port, "ping", timeout=2).stdout.strip() == "PONG":
                        break
                except subprocess.TimeoutExpired:
                    pass
                if time.time() > deadline:
                    error = "server did not answer PING"
                    break
                time.sleep(0.05)
            t0 = time.perf_counter()
            if not error:
                with open(self.data, "rb") as f:
                    p = self._cli(port, "--pipe", stdin=f, timeout=timeout)
                outputs.append(p.stdout)
                m = re.search(r"errors: (\d+), replies: (\d+)", p.stdout)
                if p.returncode != 0 or not m or m.group(1) != "0":
                    error = "redis-cli --pipe failed: " + p.stdout.strip()[-150:]
            if not error:
                p = subprocess.run(
                    ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-n",
                     str(self.requests), "-c", "16", "-P", "8", "-d", "64", "-q", "-t",
                     "set,get,incr,lpush,rpush,lpop,rpop,sadd,hset,lrange_100,mset"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    timeout=timeout, env=common.child_env(None))
                outputs.append(p.stdout)
                if p.returncode != 0:
                    error = "redis-benchmark failed: " + p.stdout.strip()[-150:]
            digest = None
            if not error:
                d = self._cli(port, "DEBUG", "DIGEST").stdout.strip()
                n = self._cli(port, "DBSIZE").stdout.strip()
                outputs.append(f"digest {d}\ndbsize {n}\n")
                if not re.fullmatch(r"[0-9a-f]{40}", d):
                    error = "DEBUG DIGEST failed: " + d[:100]
                digest = hashlib.sha256(f"{d} {n}".encode()).hexdigest()[:16]
            wall = time.perf_counter() - t0
        finally:
            if th.is_alive():
                try:
                    self._cli(port, "SHUTDOWN", "NOSAVE", timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            th.join(30)
            with open(log_path, "w") as f:
                f.write("\n".join(outputs))
        if th.is_alive() or not result:
            return common.Result(-9, wall, None, True), None, "server did not shut down"
        res = result[0]
        srv = common.Result(res.rc, wall, res.maxrss_kb, res.timed_out)
        if error:
            if res.rc < 0:
                error += f" (server {res.describe()})"
            return srv, None, error
        # SHUTDOWN NOSAVE ends the server with exit status 0; anything else is a crash
        if res.rc != 0:
            return srv, None, "server " + res.describe() + _err_tail(raw_prefix + ".server.err")
        return srv, digest, None


class Filtered(Program):
    """A program whose stdout carries timings: only the lines matching `keep` (a regex, its
    first group when it has one) are hashed."""

    def __init__(self, *a, keep, **kw):
        super().__init__(*a, **kw)
        self.keep = re.compile(keep)

    def run(self, preload, raw_prefix, timeout):
        res, h, err = super().run(preload, raw_prefix, timeout)
        if err:
            return res, h, err
        kept = []
        with open(raw_prefix + ".out", errors="replace") as f:
            for m in self.keep.finditer(f.read()):
                kept.append(m.group(1) if m.groups() else m.group(0))
        if not kept:
            return res, None, "no checked line in the output"
        return res, hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16], None


def bench_bin(name):
    """A program of the macro suite built with the harness (bench/meson.build)."""
    return os.path.join(os.path.dirname(BUILD.harness), name) if BUILD else name


BUILD = None


def programs(workdir, scale):
    os.makedirs(workdir, exist_ok=True)

    def gen(kind, ext):
        path = os.path.join(workdir, f"{kind}-{scale:g}.{ext}")
        if not os.path.exists(path):
            subprocess.run([PYTHON, os.path.join(MACRO_DIR, "gen.py"), kind, str(scale), path],
                           check=True)
        return path

    progs = []
    py = os.path.join(MACRO_DIR, "alloc_heavy.py")
    progs.append(Program("python3", "python3 (pymalloc)", [PYTHON, py, str(scale)],
                         env={"PYTHONHASHSEED": "0"}))
    p = Program("python3-malloc", "python3 (PYTHONMALLOC=malloc)", [PYTHON, py, str(scale)],
                env={"PYTHONHASHSEED": "0", "PYTHONMALLOC": "malloc"})
    p.note = ("PYTHONMALLOC=malloc sends every object to malloc; by default pymalloc serves "
              "objects <= 512 B from its own mmap'd arenas and the allocator matters less")
    progs.append(p)
    if shutil_which("sqlite3"):
        progs.append(Program("sqlite3", "sqlite3 :memory: (inserts + queries)",
                             ["sqlite3", ":memory:"], stdin=gen("sqlite", "sql")))
    if shutil_which("redis-server"):
        r = Redis(workdir, gen("redis", "resp"), int(150_000 * scale))
        if links_other_malloc(shutil_which("redis-server")):
            r.note = ("redis-server links libjemalloc: its 'glibc' row preloads "
                      "libbsl-glibc-shim.so (forwards malloc & co. to glibc); under the other "
                      "allocators jemalloc stays loaded but unused")
        progs.append(r)
    lua = os.path.join(MACRO_DIR, "tables_strings.lua")
    progs.append(Program("lua5.4", "lua5.4 (tables + strings)", ["lua5.4", lua, str(scale)]))
    perl = os.path.join(MACRO_DIR, "hash_churn.pl")
    progs.append(Program("perl", "perl (big nested hashes: build, delete, sort, split/join)",
                         ["perl", perl, str(scale)],
                         env={"PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}))
    if shutil_which("db_bench"):
        db = os.path.join(workdir, "rocksdb")
        p = Filtered("rocksdb", "rocksdb db_bench (fillrandom + 2 readers)",
                     ["db_bench", "--benchmarks=fillrandom,readrandom", "--db=" + db,
                      f"--num={int(200_000 * scale)}", f"--reads={int(100_000 * scale)}",
                      "--threads=2", "--value_size=100", "--seed=42", "--compression_type=none",
                      "--disable_wal=1", "--cache_size=8388608", "--write_buffer_size=4194304",
                      "--histogram=0"],
                     keep=r"(\d+ operations;|\(\d+ of \d+ found\))")
        p.note = "db_bench prints timings: only the operation and found counts are checked"
        progs.append(p)
    progs.append(Program("mstress", "mstress-like (2 threads, mixed lifetimes, restarted)",
                         [bench_bin("bsl-mstress"), "2", str(int(100 * scale)), "40"]))
    progs.append(Program("large-churn", "large-block churn (20 x 5-25 MiB, zero-filled)",
                         [bench_bin("bsl-large-churn"), str(int(400 * scale))]))
    progs.append(Program("tiny-simple", "tiny: malloc/free of small sizes, 100 live",
                         [bench_bin("bsl-tiny"), "simple", str(int(200_000 * scale))]))
    progs.append(Program("tiny-bignum", "tiny: bignum factorials and Fibonacci",
                         [bench_bin("bsl-tiny"), "bignum", str(int(100 * scale))]))
    cfile = gen("cfile", "c")
    obj = os.path.join(workdir, "cfile.o")
    progs.append(Program("gcc", "gcc -O2 -c (large generated file)",
                         ["gcc", "-O2", "-c", os.path.basename(cfile), "-o", obj],
                         output_file=obj, cwd=workdir))
    return progs


def main(argv):
    ap = argparse.ArgumentParser(
        prog="bench/run-macro",
        description="Real programs under LD_PRELOAD: python3, sqlite3, redis, lua5.4, gcc.")
    ap.add_argument("--quick", action="store_true", help="1 repetition, workloads at 1/4 scale")
    ap.add_argument("--filter", metavar="REGEX", help="only programs whose name matches")
    ap.add_argument("--allocators", metavar="LIST", help="comma-separated, in run order")
    ap.add_argument("--reps", type=int, help="repetitions (default 3, --quick 1)")
    ap.add_argument("--scale", type=float, help="workload scale (default 1, --quick 0.25)")
    ap.add_argument("--baseline", default=common.BASELINE)
    ap.add_argument("--out", help="results directory (default bench/results/latest)")
    ap.add_argument("--build-dir")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--buddyslab", metavar="SO")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per program run")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    scale = args.scale or (0.25 if args.quick else 1.0)
    out_dir = os.path.abspath(args.out or os.path.join(common.RESULTS_DIR, "latest"))

    global BUILD
    b = BUILD = common.build(args)
    allocs = common.allocators(b, args.allocators)
    if not allocs:
        sys.exit("bench: no allocator to run")
    names = [a for a, _ in allocs]
    baseline = args.baseline if args.baseline in names else names[0]
    build_dir = os.path.abspath(args.build_dir or os.path.join(common.REPO, "build-bench"))
    progs = [p for p in programs(os.path.join(build_dir, "macro-work"), scale) if p.available()]
    if args.filter:
        rx = re.compile(args.filter)
        progs = [p for p in progs if rx.search(p.name) or rx.search(p.display)]
    if not progs:
        sys.exit("bench: no program to run")

    def preload_for(prog, alloc, path):
        if alloc == "glibc" and links_other_malloc(shutil_which(prog.binary) or prog.binary):
            if b.shim and os.path.exists(b.shim):
                return b.shim
            warn(f"{prog.name} links another malloc and the glibc shim is missing")
        return path

    stamp = common.timestamp()
    raw_dir = os.path.join(common.RESULTS_DIR, "raw", stamp + "-macro")
    os.makedirs(raw_dir, exist_ok=True)
    common.check_idle()
    log(f"bench: {len(progs)} programs x {len(allocs)} allocators x {args.reps} reps, "
        f"scale {scale:g}; raw output in {os.path.relpath(raw_dir, common.REPO)}")
    for p in progs:  # warm-up: page cache, generated inputs, and a first correctness check
        res, h, err = p.run(preload_for(p, "glibc", None),
                            os.path.join(raw_dir, f"warmup.{p.name}"), args.timeout)
        if err:
            warn(f"warm-up run of {p.name} (glibc) failed: {err}")

    samples = {p.name: {a: [] for a in names} for p in progs}
    t_start = time.time()
    width = max(len(p.display) for p in progs)
    for rep in range(args.reps):
        for pi, p in enumerate(progs):
            cells = []
            for alloc, path in allocs:
                res, h, err = p.run(preload_for(p, alloc, path),
                                    os.path.join(raw_dir, f"{alloc}.r{rep}.{p.name}"), args.timeout)
                s = {"rep": rep, "wall_s": res.wall_s, "maxrss_kb": res.maxrss_kb, "hash": h}
                if err:
                    s["error"] = err
                    warn(f"{p.name} under {alloc}: {err}")
                samples[p.name][alloc].append(s)
                cells.append(f"{alloc} " + (common.fmt_s(res.wall_s) if not err else "FAIL"))
            log(f"[{rep + 1}/{args.reps} {pi + 1}/{len(progs)}] {p.display:<{width}}  "
                + "  ".join(cells))

    rows = []
    for p in progs:
        row = {"name": p.name, "display": p.display, "allocators": {}, "note": p.note}
        hashes = set()
        for alloc in names:
            ss = samples[p.name][alloc]
            good = [s for s in ss if "error" not in s]
            hashes |= {s["hash"] for s in good}
            walls = [s["wall_s"] for s in good]
            cell = {"samples": ss, "n_ok": len(good), "n_failed": len(ss) - len(good),
                    "errors": sorted({s["error"] for s in ss if "error" in s}),
                    "wall_s": common.median(walls),
                    # ns_per_op: the wall time in ns, so the shared report code can rank it
                    "ns_per_op": (common.median(walls) or 0) * 1e9 or None,
                    "ns_per_op_spread": common.spread(walls),
                    "maxrss_kb": common.median([s["maxrss_kb"] for s in good])}
            row["allocators"][alloc] = cell
        base = row["allocators"][baseline]
        for cell in row["allocators"].values():
            for key, rkey in (("ns_per_op", "time_ratio"), ("maxrss_kb", "rss_ratio")):
                bv, v = base.get(key), cell.get(key)
                cell[rkey] = v / bv if bv and v else None
        row["hashes"] = sorted(hashes)
        row["outputs"] = ("-" if not hashes else "equal" if len(hashes) == 1
                          else f"DIFFER ({len(hashes)} distinct)")
        if len(hashes) > 1:
            warn(f"{p.name}: outputs differ across allocators/repetitions: {sorted(hashes)}")
        rows.append(row)

    meta = {
        "kind": "macro", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": args.quick,
        "reps": args.reps, "scale": scale, "baseline": baseline,
        "allocators": [{"name": a, "preload": p, "file": common.lib_version(p)} for a, p in allocs],
        "buddyslab_rev": common.git_describe(), "build": b.how, "machine": common.machine_info(),
        "elapsed_s": time.time() - t_start, "raw_dir": os.path.relpath(raw_dir, common.BENCH_DIR),
        "filter": args.filter,
    }
    report.write_macro(meta, rows, out_dir, plots=not args.no_plots)
    log(f"bench: done in {(time.time() - t_start) / 60:.1f} min; results in "
        f"{os.path.relpath(out_dir, common.REPO)}/")
    bad = any(r["outputs"].startswith("DIFFER") for r in rows) or any(
        c["n_failed"] for r in rows for c in r["allocators"].values())
    return 1 if bad else 0

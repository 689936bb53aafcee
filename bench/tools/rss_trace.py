#!/usr/bin/env python3
"""RSS over time of one macro workload under each allocator (bench/README.md).

    bench/tools/rss_trace.py [--out DIR] [--interval S] NAME -- COMMAND ARGS...

Runs COMMAND once per allocator (glibc, jemalloc, mimalloc, tcmalloc, buddyslab; the buddyslab
library from --buddyslab or build-bench/), samples the resident set of the process tree from
/proc every --interval seconds, and writes DIR/NAME_rss_<allocator>.csv (seconds, MiB) and
DIR/NAME_rss.png (one line per allocator). Under buddyslab it also runs the command once more with
publish=1 and reads the statistics page the way `buddyslab top` does, for reserved, committed,
allocated (live) and free-dirty memory over time (DIR/NAME_bsl_<field>.csv, second plot)."""

import argparse
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402


def tree_rss_kib(pid):
    """Sum of VmRSS over pid and its descendants (kB)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


# The totals at the start of struct bsl_shm_page (include/buddyslab_shm.h).
SHM_HEAD = struct.Struct("<QIIQQQQII" + "Q" * 11)
SHM_FIELDS = ["reserved", "committed", "allocated", "slab_bytes", "large_bytes", "huge_bytes",
              "free_dirty", "free_clean", "purged_total", "cached", "rss"]


def shm_sample(pid):
    path = f"/dev/shm/buddyslab.{pid}"
    try:
        with open(path, "r+b") as f:
            buf = f.read(SHM_HEAD.size)
            if len(buf) < SHM_HEAD.size:
                return None
            # raise watchers so the process keeps the page fresh
            f.seek(24)
            (w,) = struct.unpack("<Q", f.read(8))
            if w == 0:
                f.seek(24)
                f.write(struct.pack("<Q", 1))
            v = SHM_HEAD.unpack(buf)
            return dict(zip(SHM_FIELDS, v[9:]))
    except OSError:
        return None


def trace(cmd, env, interval, shm=False):
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows, srows = [], []
    while p.poll() is None:
        t = time.time() - t0
        rows.append((t, tree_rss_kib(p.pid) / 1024))
        if shm:
            s = shm_sample(p.pid)
            if s:
                srows.append((t, s))
        time.sleep(interval)
    return rows, srows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "latest"))
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--buddyslab", default=os.path.join(common.REPO, "build-bench", "libbuddyslab.so"))
    ap.add_argument("--allocators", default=",".join(common.ALLOCATOR_ORDER))
    ap.add_argument("name")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    os.makedirs(a.out, exist_ok=True)
    series = {}
    for alloc in a.allocators.split(","):
        preload = None if alloc == "glibc" else a.buddyslab if alloc == "buddyslab" else \
            common.SYSTEM_LIBS.get(alloc, alloc)
        if preload and not os.path.exists(preload):
            common.warn(f"skipping {alloc}: {preload} not found")
            continue
        name = os.path.basename(alloc).split(".so")[0] if alloc.endswith(".so") else alloc
        rows, _ = trace(cmd, common.child_env(preload), a.interval)
        series[name] = rows
        with open(os.path.join(a.out, f"{a.name}_rss_{name}.csv"), "w") as f:
            f.write("seconds,rss_mib\n" + "".join(f"{t:.3f},{r:.2f}\n" for t, r in rows))
        common.log(f"{a.name} {name}: peak {max(r for _, r in rows) if rows else 0:.1f} MiB, "
                   f"{rows[-1][0] if rows else 0:.2f} s")
    bsl = None
    if "buddyslab" in a.allocators.split(",") and os.path.exists(a.buddyslab):
        env = common.child_env(a.buddyslab, {"BUDDYSLAB_OPTIONS": "publish=1"})
        _, srows = trace(cmd, env, a.interval, shm=True)
        bsl = srows
        with open(os.path.join(a.out, f"{a.name}_bsl_series.csv"), "w") as f:
            f.write("seconds," + ",".join(SHM_FIELDS) + "\n")
            for t, s in srows:
                f.write(f"{t:.3f}," + ",".join(str(s[k]) for k in SHM_FIELDS) + "\n")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        common.warn("matplotlib missing: no plot")
        return 0
    n = 2 if bsl else 1
    fig, axes = plt.subplots(n, 1, figsize=(9, 4 * n), squeeze=False)
    ax = axes[0][0]
    for name, rows in series.items():
        ax.plot([t for t, _ in rows], [r for _, r in rows], label=name,
                lw=2 if name == "buddyslab" else 1, color="red" if name == "buddyslab" else None)
    ax.set_title(f"{a.name}: resident set over time")
    ax.set_xlabel("seconds")
    ax.set_ylabel("RSS (MiB)")
    ax.legend()
    if bsl:
        ax = axes[1][0]
        for k in ("reserved", "rss", "committed", "allocated", "free_dirty"):
            ax.plot([t for t, _ in bsl], [s[k] / 2**20 for _, s in bsl], label=k)
        ax.set_title(f"{a.name} under buddyslab: reserved, resident, live (allocated), dirty free")
        ax.set_xlabel("seconds")
        ax.set_ylabel("MiB")
        ax.legend()
    fig.tight_layout()
    out = os.path.join(a.out, f"{a.name}_rss.png")
    fig.savefig(out, dpi=90)
    common.log(f"plot: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

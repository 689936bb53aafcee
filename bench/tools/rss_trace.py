#!/usr/bin/env python3
"""RSS over time of one macro workload under each allocator (bench/README.md).

    bench/tools/rss_trace.py [--out DIR] [--interval S] [--rounds N] NAME -- COMMAND ARGS...

Runs COMMAND under each allocator (glibc, jemalloc, mimalloc, tcmalloc, buddyslab; the buddyslab
library from --buddyslab or build-bench/; LABEL=PATH for any other .so), --rounds times
interleaved (every allocator once per round), samples the resident set (VmRSS) of the process
tree from /proc/PID/status every --interval seconds, and writes DIR/NAME_rss_<allocator>.csv
(seconds, MiB: the round with the median peak), DIR/NAME_rss.md (peak RSS and run time of every
round, median and spread) and the plot: DIR/NAME_rss.svg (always; written by this script, no
dependency) and DIR/NAME_rss.png (when matplotlib is there), one line per allocator. Under
buddyslab it also runs the command once more with publish=1 and reads the statistics page the way
`buddyslab top` does, for reserved, committed, allocated (live) and free-dirty memory over time
(DIR/NAME_bsl_series.csv, second panel)."""

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


def write_table(path, a, cmd, runs):
    """Peak RSS and run time per allocator: every round, the median and the spread."""
    import statistics
    base = None
    lines = [f"# {a.name}: resident set over time", "",
             f"`{' '.join(cmd)}`, sampled from /proc/PID/status every {a.interval * 1000:.0f} ms, "
             f"{a.rounds} interleaved round(s). Peak = the largest sample (MiB); time = until exit (s).", "",
             "| allocator | peak RSS, median | ratio to first | peaks of the rounds | time, median | times of the rounds |",
             "|---|--:|--:|---|--:|---|"]
    for name, rs in runs.items():
        peaks = [max((r for _, r in rows), default=0) for rows in rs]
        times = [rows[-1][0] if rows else 0 for rows in rs]
        pm = statistics.median(peaks)
        base = base or pm
        lines.append(f"| {name} | {pm:.1f} | {pm / base:.2f}x | {' / '.join(f'{p:.1f}' for p in peaks)} | "
                     f"{statistics.median(times):.2f} | {' / '.join(f'{t:.2f}' for t in times)} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


COLORS = {"glibc": "#1f77b4", "jemalloc": "#2ca02c", "mimalloc": "#9467bd", "tcmalloc": "#ff7f0e",
          "buddyslab": "#d62728"}
EXTRA_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def _svg_panel(out, top, title, curves, w=900, h=340):
    """One chart at y offset `top`: curves = [(label, color, width, [(x, y)...])]. Appends to out."""
    ml, mr, mt, mb = 60, 170, 28, 40
    xs = [x for *_, pts in curves for x, _ in pts] or [0, 1]
    ys = [y for *_, pts in curves for _, y in pts] or [0, 1]
    xmax = max(xs) or 1
    ymax = max(ys) or 1

    def nice(v):
        import math
        e = 10 ** math.floor(math.log10(v))
        return next(m * e for m in (1, 2, 2.5, 5, 10) if m * e >= v)
    xstep, ystep = nice(xmax / 8), nice(ymax / 6)
    pw, ph = w - ml - mr, h - mt - mb

    def px(x):
        return ml + pw * x / (xstep * max(1, -(-xmax // xstep)))

    def py(y):
        return top + mt + ph - ph * y / (ystep * max(1, -(-ymax // ystep)))
    out.append(f'<text x="{w / 2 - mr / 2:.0f}" y="{top + 18}" text-anchor="middle" font-weight="bold">{title}</text>')
    nx, ny = int(max(1, -(-xmax // xstep))), int(max(1, -(-ymax // ystep)))
    for i in range(ny + 1):
        y = py(i * ystep)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{ml + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end">{i * ystep:g}</text>')
    for i in range(nx + 1):
        x = px(i * xstep)
        out.append(f'<line x1="{x:.1f}" y1="{top + mt}" x2="{x:.1f}" y2="{top + mt + ph}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + mt + ph + 16}" text-anchor="middle">{i * xstep:g}</text>')
    out.append(f'<rect x="{ml}" y="{top + mt}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{top + h - 6}" text-anchor="middle">seconds</text>')
    out.append(f'<text x="14" y="{top + mt + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {top + mt + ph / 2})">MiB</text>')
    for i, (label, color, width, pts) in enumerate(curves):
        if pts:
            d = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="{width}" points="{d}"/>')
        ly = top + mt + 14 + 18 * i
        out.append(f'<line x1="{ml + pw + 12}" y1="{ly - 4}" x2="{ml + pw + 36}" y2="{ly - 4}" '
                   f'stroke="{color}" stroke-width="{max(2, width)}"/>')
        peak = max((y for _, y in pts), default=0)
        out.append(f'<text x="{ml + pw + 42}" y="{ly}">{label} ({peak:.1f})</text>')


def write_svg(path, name, series, bsl):
    """The plot without matplotlib: RSS of every allocator; buddyslab's own series below."""
    w, h = 900, 340
    out = []
    curves = []
    for i, (label, rows) in enumerate(series.items()):
        color = COLORS.get(label, EXTRA_COLORS[i % len(EXTRA_COLORS)])
        curves.append((label, color, 2.5 if label == "buddyslab" else 1.2, rows))
    _svg_panel(out, 0, f"{name}: resident set over time (peak MiB in the legend)", curves, w, h)
    n = 1
    if bsl:
        keys = [("reserved", "#7f7f7f"), ("rss", "#d62728"), ("committed", "#ff7f0e"),
                ("allocated", "#2ca02c"), ("free_dirty", "#1f77b4")]
        curves = [(k, c, 1.5, [(t, s[k] / 2**20) for t, s in bsl]) for k, c in keys]
        _svg_panel(out, h, f"{name} under buddyslab: reserved, resident, committed, live, dirty free", curves, w, h)
        n = 2
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h * n}" '
                f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n')
        f.write("\n".join(out) + "\n</svg>\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(common.RESULTS_DIR, "latest"))
    ap.add_argument("--interval", type=float, default=0.02)
    ap.add_argument("--buddyslab", default=os.path.join(common.REPO, "build-bench", "libbuddyslab.so"))
    ap.add_argument("--allocators", default=",".join(common.ALLOCATOR_ORDER))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--replot", action="store_true", help="only redraw the plots from the CSVs in --out")
    ap.add_argument("name")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    os.makedirs(a.out, exist_ok=True)
    if a.replot:
        return plot(a, *load_csvs(a))
    series, runs, labels = {}, {}, []
    for alloc in a.allocators.split(","):
        label, path = alloc.split("=", 1) if "=" in alloc else (alloc, None)
        preload = path if path else None if alloc == "glibc" else a.buddyslab if alloc == "buddyslab" else \
            common.SYSTEM_LIBS.get(alloc, alloc)
        if preload and not os.path.exists(preload):
            common.warn(f"skipping {alloc}: {preload} not found")
            continue
        name = os.path.basename(label).split(".so")[0] if label.endswith(".so") else label
        labels.append((name, preload))
    for rnd in range(a.rounds):
        for name, preload in labels:
            rows, _ = trace(cmd, common.child_env(preload), a.interval)
            runs.setdefault(name, []).append(rows)
            common.log(f"{a.name} {name} round {rnd + 1}: peak {max(r for _, r in rows) if rows else 0:.1f} MiB, "
                       f"{rows[-1][0] if rows else 0:.2f} s")
    for name, rs in runs.items():
        rs = sorted(rs, key=lambda rows: max((r for _, r in rows), default=0))
        rows = rs[len(rs) // 2]  # the round with the median peak
        series[name] = rows
        with open(os.path.join(a.out, f"{a.name}_rss_{name}.csv"), "w") as f:
            f.write("seconds,rss_mib\n" + "".join(f"{t:.3f},{r:.2f}\n" for t, r in rows))
    write_table(os.path.join(a.out, f"{a.name}_rss.md"), a, cmd, runs)
    bsl = None
    bsl_so = dict(labels).get("buddyslab")
    if bsl_so:
        env = common.child_env(bsl_so, {"BUDDYSLAB_OPTIONS": "publish=1"})
        _, srows = trace(cmd, env, a.interval, shm=True)
        bsl = srows
        with open(os.path.join(a.out, f"{a.name}_bsl_series.csv"), "w") as f:
            f.write("seconds," + ",".join(SHM_FIELDS) + "\n")
            for t, s in srows:
                f.write(f"{t:.3f}," + ",".join(str(s[k]) for k in SHM_FIELDS) + "\n")
    return plot(a, series, bsl)


def load_csvs(a):
    """The series a previous run wrote to --out."""
    import glob
    series = {}
    prefix = os.path.join(a.out, f"{a.name}_rss_")
    for path in sorted(glob.glob(prefix + "*.csv")):
        with open(path) as f:
            rows = [tuple(float(v) for v in line.split(",")) for line in list(f)[1:] if line.strip()]
        series[path[len(prefix):-4]] = rows
    order = {n: i for i, n in enumerate(common.ALLOCATOR_ORDER)}
    series = dict(sorted(series.items(), key=lambda kv: order.get(kv[0], len(order))))
    bsl = None
    spath = os.path.join(a.out, f"{a.name}_bsl_series.csv")
    if os.path.exists(spath):
        with open(spath) as f:
            lines = list(f)
        keys = lines[0].strip().split(",")[1:]
        bsl = []
        for line in lines[1:]:
            v = line.strip().split(",")
            bsl.append((float(v[0]), dict(zip(keys, (int(x) for x in v[1:])))))
    return series, bsl


def plot(a, series, bsl):
    svg = os.path.join(a.out, f"{a.name}_rss.svg")
    write_svg(svg, a.name, series, bsl)
    common.log(f"plot: {svg}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        common.warn("matplotlib missing: no PNG plot (the SVG is written)")
        return 0
    n = 2 if bsl else 1
    fig, axes = plt.subplots(n, 1, figsize=(9, 4 * n), squeeze=False)
    ax = axes[0][0]
    for name, rows in series.items():
        ax.plot([t for t, _ in rows], [r for _, r in rows], label=name,
                lw=2 if name == "buddyslab" else 1, color=COLORS.get(name))
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

"""Markdown, JSON and PNG output of bench/run and bench/run-macro."""

import csv
import glob
import json
import os
import shutil

import common
from common import fmt_mib_kb, fmt_ratio, fmt_time_ns, md_table, warn

COLORS = {"glibc": "#8c8c8c", "jemalloc": "#222222", "mimalloc": "#4c72b0",
          "tcmalloc": "#55a868", "buddyslab": "#d62728"}
NOISY = 0.10  # spread (max-min)/median above which a cell gets a dagger
BSL = "buddyslab"
# memory counters in the order of a workload's life (others follow, sorted)
COUNTER_ORDER = ["rss_base_kb", "rss_start_kb", "rss_full_kb", "rss_big_kb", "live_kb",
                 "rss_after_free_kb", "rss_after_free_big_kb", "rss_after_idle_kb",
                 "rss_after_trim_kb", "rss_small_kb", "rss_end_kb"]


def _color(name, i):
    return COLORS.get(name, ["#8172b2", "#937860", "#da8bc3", "#ccb974"][i % 4])


def _clean(out_dir, patterns):
    for pat in patterns:
        for f in glob.glob(os.path.join(out_dir, pat)):
            os.remove(f)


def _header(meta, title):
    m = meta["machine"]
    lines = [f"# {title}", ""]
    mode = "quick pass" if meta.get("quick") else "full run"
    lines.append(f"- {meta['date']}, {mode}: median of {meta['reps']} interleaved repetition(s)"
                 + (f", Google Benchmark min time {meta['min_time_s']} s per case"
                    if "min_time_s" in meta else "")
                 + (f", filter `{meta['filter']}`" if meta.get("filter") else ""))
    lines.append(f"- machine: {m.get('cpu', '?')}, {m.get('nproc', '?')} CPUs, "
                 f"{m.get('mem_total_kb', 0) / 1048576:.0f} GiB, Linux {m.get('kernel', '?')}, "
                 f"{m.get('glibc', '?')}, THP {m.get('thp', '?')}")
    libs = ", ".join(f"{a['name']} = `{a['file']}`" for a in meta["allocators"])
    lines.append(f"- allocators (run in this order): {libs}")
    lines.append(f"- buddyslab source: {meta.get('buddyslab_rev', '?')}; "
                 f"ratios are to **{meta['baseline']}** (< 1 = faster / smaller)")
    if meta.get("elapsed_s"):
        lines.append(f"- took {meta['elapsed_s'] / 60:.1f} min; raw output: "
                     f"`bench/{meta.get('raw_dir', '?')}`")
    lines.append("")
    return lines


def _rank(row, alloc, key):
    vals = sorted((c[key], a) for a, c in row["allocators"].items() if c.get(key))
    for i, (_, a) in enumerate(vals):
        if a == alloc:
            return i + 1, len(vals)
    return None, len(vals)


def _cell(cell, key, ratio_key, fmt, is_base, best, spread_key=None):
    if cell["n_ok"] == 0:
        err = cell["errors"][0] if cell["errors"] else "failed"
        return "FAIL (" + err.split(":")[0] + ")"
    v = cell.get(key)
    s = fmt(v)
    if best:
        s = f"**{s}**"
    if not is_base and cell.get(ratio_key):
        s += " " + fmt_ratio(cell[ratio_key])
    if spread_key and (cell.get(spread_key) or 0) > NOISY:
        s += " †"
    if cell["n_failed"]:
        s += f" ⚠{cell['n_failed']}"
    return s


def _summary(rows, names, baseline):
    out = []
    for a in names:
        tr = [r["allocators"][a].get("time_ratio") for r in rows]
        rr = [r["allocators"][a].get("rss_ratio") for r in rows]
        fastest = sum(1 for r in rows if _rank(r, a, "ns_per_op")[0] == 1)
        slower = sum(1 for x in tr if x and x > 1.10)
        faster = sum(1 for x in tr if x and x < 1 / 1.10)
        failed = sum(1 for r in rows if r["allocators"][a]["n_failed"])
        out.append([a, fmt_ratio(common.geomean(tr)) if a != baseline else "1.00× (baseline)",
                    fmt_ratio(common.geomean(rr)) if a != baseline else "1.00× (baseline)",
                    str(fastest), str(faster), str(slower), str(failed)])
    return md_table(["allocator", "geomean time", "geomean peak RSS", "fastest in",
                     f">10% faster than {baseline}", f">10% slower than {baseline}",
                     "cases with failures"], out)


def _wins_losses(rows, baseline, key="time_ratio", what="time", n=8):
    have = [(r["allocators"][BSL].get(key), r) for r in rows
            if BSL in r["allocators"] and r["allocators"][BSL].get(key)]
    if not have:
        return []
    have.sort(key=lambda x: x[0])
    lines = []
    val = "ns_per_op" if key == "time_ratio" else "maxrss_kb"
    fmt = fmt_time_ns if key == "time_ratio" else fmt_mib_kb

    def item(ratio, r):
        c, b = r["allocators"][BSL], r["allocators"][baseline]
        rank, of = _rank(r, BSL, val)
        return (f"- `{r['display']}`: **{fmt_ratio(ratio)}** ({fmt(c[val])} vs {fmt(b[val])}; "
                f"rank {rank}/{of})")

    wins = [x for x in have if x[0] < 0.95][:n]
    losses = [x for x in reversed(have) if x[0] > 1.05][:n]
    lines.append(f"Best {what} vs {baseline}:")
    lines += [item(*x) for x in wins] or ["- (none below 0.95×)"]
    lines.append("")
    lines.append(f"Worst {what} vs {baseline}:")
    lines += [item(*x) for x in losses] or ["- (none above 1.05×)"]
    lines.append("")
    return lines


def micro_tables(meta, rows):
    """The Markdown body (also printed to the terminal)."""
    names = [a["name"] for a in meta["allocators"]]
    base = meta["baseline"]
    has_bsl = BSL in names
    lines = []

    lines += ["## Summary", "", _summary(rows, names, base), ""]
    if has_bsl:
        lines += ["## Where buddyslab wins and loses", ""]
        lines += _wins_losses(rows, base)
        lines += _wins_losses(rows, base, key="rss_ratio", what="peak RSS", n=5)

    # time table
    hdr = ["case"] + names + (["bsl rank"] if has_bsl else [])
    body = []
    for r in rows:
        best = _rank_best(r, "ns_per_op")
        line = [r["display"]]
        for a in names:
            c = r["allocators"][a]
            line.append(_cell(c, "ns_per_op", "time_ratio", fmt_time_ns, a == base, a == best,
                              "ns_per_op_spread"))
        if has_bsl:
            rk, of = _rank(r, BSL, "ns_per_op")
            line.append(f"{rk}/{of}" if rk else "-")
        body.append(line)
    lines += ["## Time per operation", "",
              f"Median time per item (one malloc+free, or one realloc step; multi-threaded cases: "
              f"wall time / items of all threads). Ratio = time / {base}'s time. "
              f"**Bold** = fastest. † = repetitions spread more than {NOISY:.0%}. "
              f"⚠n = n repetitions failed.", "", md_table(hdr, body), ""]

    # peak RSS table
    body = []
    for r in rows:
        best = _rank_best(r, "maxrss_kb")
        line = [r["display"]]
        for a in names:
            c = r["allocators"][a]
            line.append(_cell(c, "maxrss_kb", "rss_ratio", fmt_mib_kb, a == base, a == best))
        if has_bsl:
            rk, of = _rank(r, BSL, "maxrss_kb")
            line.append(f"{rk}/{of}" if rk else "-")
        body.append(line)
    lines += ["## Peak RSS per case", "",
              "ru_maxrss of the process that ran the case (wait4), harness included (a few MiB). "
              f"Ratio = RSS / {base}'s.", "", md_table(hdr, body), ""]

    # memory counters
    body = []
    for r in rows:
        keys = []
        for c in r["allocators"].values():
            for k in c.get("counters", {}):
                if k.endswith("_kb") and k != "maxrss_kb" and k not in keys:
                    keys.append(k)
        keys.sort(key=lambda k: (COUNTER_ORDER.index(k) if k in COUNTER_ORDER
                                 else len(COUNTER_ORDER), k))
        for k in keys:
            bv = r["allocators"].get(base, {}).get("counters", {}).get(k)
            line = [f"{r['display']} {k[:-3]}"]
            for a in names:
                v = r["allocators"][a].get("counters", {}).get(k)
                s = fmt_mib_kb(v)
                if a != base and v and bv:
                    s += " " + fmt_ratio(v / bv)
                line.append(s)
            body.append(line)
    if body:
        lines += ["## Memory over a workload's life", "",
                  "RSS read from /proc/self/statm at the points named (see bench/README.md).",
                  "", md_table(["case / reading"] + names, body), ""]

    # failures
    fails = []
    for r in rows:
        for a in names:
            c = r["allocators"][a]
            for e in c["errors"]:
                fails.append(f"- `{r['display']}` under {a}: {e} ({c['n_failed']} of "
                             f"{c['n_failed'] + c['n_ok']} runs)")
    if fails:
        lines += ["## Failures", ""] + fails + [""]
    return lines


def _rank_best(row, key):
    vals = [(c[key], a) for a, c in row["allocators"].items() if c.get(key)]
    return min(vals)[1] if vals else None


def write_micro(meta, rows, out_dir, plots=True):
    os.makedirs(out_dir, exist_ok=True)
    _clean(out_dir, ["micro*.md", "micro*.json", "micro*.png", "thread_scaling.png",
                     "phase_change*.png", "phase_change_rss_*.csv"])
    with open(os.path.join(out_dir, "micro.json"), "w") as f:
        json.dump({"meta": meta, "cases": rows}, f, indent=1)

    # RSS-over-time series of phase_change: the last good repetition of each allocator
    series = {}
    for r in rows:
        if not r["name"].startswith("phase_change"):
            continue
        for a, c in r["allocators"].items():
            good = [s for s in c["samples"] if "error" not in s and s.get("series")]
            if good:
                src = os.path.join(common.BENCH_DIR, good[-1]["series"])
                dst = os.path.join(out_dir, f"phase_change_rss_{a}.csv")
                if os.path.exists(src):
                    shutil.copyfile(src, dst)
                    series[a] = dst

    body = micro_tables(meta, rows)
    images = []
    if plots:
        images = plot_micro(meta, rows, series, out_dir)
    lines = _header(meta, "buddyslab micro benchmarks")
    lines += body
    if images:
        lines += ["## Plots", ""] + [f"![{t}]({os.path.basename(p)})" for t, p in images] + [""]
    if series:
        lines += ["RSS-over-time series of phase_change: "
                  + ", ".join(f"[{a}](phase_change_rss_{a}.csv)" for a in series), ""]
    text = "\n".join(lines)
    with open(os.path.join(out_dir, "micro.md"), "w") as f:
        f.write(text)
    print("\n".join(body))


# ---------------------------------------------------------------------------------------------
# plots


def _mpl():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        warn("matplotlib is not available to this python: no plots "
             "(install python3-matplotlib, or run bench/run with /usr/bin/python3)")
        return None


def _ratio_bars(plt, rows, names, base, key, xlabel, title, path):
    others = [a for a in names if a != base]
    rows = [r for r in rows if any(r["allocators"][a].get(key) for a in others)]
    if not rows or not others:
        return None
    n, k = len(rows), len(others)
    h = 0.8 / k
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.36 * n * max(1, k / 3.5)))
    lo, hi = 1.0, 1.0
    for j, a in enumerate(others):
        ys, xs = [], []
        for i, r in enumerate(rows):
            v = r["allocators"][a].get(key)
            if v:
                ys.append(i + (j - (k - 1) / 2) * h)
                xs.append(v)
                lo, hi = min(lo, v), max(hi, v)
        is_bsl = a == BSL
        ax.barh(ys, [x - 1 for x in xs], left=1, height=h * 0.92, color=_color(a, j),
                label=a, alpha=1.0 if is_bsl else 0.75, edgecolor="black" if is_bsl else "none",
                linewidth=0.6)
        if is_bsl:
            for y, x in zip(ys, xs):
                ax.text(x * (1.04 if x >= 1 else 0.96), y, fmt_ratio(x), va="center",
                        ha="left" if x >= 1 else "right", fontsize=7, color="#8b0000")
    ax.set_xscale("log")
    xmin, xmax = min(lo, 0.5) / 1.6, max(hi, 2.0) * 1.6
    ax.set_xlim(xmin, xmax)
    nice = [m * 10.0 ** e for e in range(-4, 5) for m in (1, 2, 5)]
    ticks = [t for t in nice if xmin <= t <= xmax]
    if len(ticks) > 14:
        ticks = [t for t in ticks if str(t).lstrip("0.").startswith("1")]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}×" for t in ticks])
    ax.minorticks_off()
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_yticks(range(n))
    ax.set_yticklabels([r["display"] for r in rows], fontsize=8)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scaling(plt, meta, rows, names, out_dir):
    fams = {}
    for r in rows:
        base, _, rest = r["display"].partition("/threads:")
        if rest.isdigit():
            fams.setdefault(base, []).append((int(rest), r))
    fams = {f: v for f, v in fams.items() if len(v) > 1}
    if not fams:
        return None
    fig, axes = plt.subplots(1, len(fams), figsize=(5.5 * len(fams), 4.2), squeeze=False)
    for ax, (fam, pts) in zip(axes[0], sorted(fams.items(), key=lambda x: x[0] != "thread_scaling")):
        pts.sort(key=lambda x: x[0])
        for j, a in enumerate(names):
            xs = [t for t, r in pts if r["allocators"][a].get("items_per_second")]
            ys = [r["allocators"][a]["items_per_second"] / 1e6 for t, r in pts
                  if r["allocators"][a].get("items_per_second")]
            if xs:
                ax.plot(xs, ys, marker="o", color=_color(a, j), label=a,
                        linewidth=2.5 if a == BSL else 1.4)
        ax.set_xticks([t for t, _ in pts])
        ax.set_xlabel("threads")
        ax.set_ylabel("million malloc+free per second (all threads)")
        ax.set_title(fam)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.axvline(meta["machine"].get("nproc") or 0, color="gray", linestyle=":", linewidth=1)
        ax.legend(fontsize=8)
    fig.suptitle(f"Thread scaling (dotted line: {meta['machine'].get('nproc')} CPUs)")
    fig.tight_layout()
    path = os.path.join(out_dir, "thread_scaling.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _read_series(path):
    t, rss, ph = [], [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            t.append(float(row["t_s"]))
            rss.append(int(row["rss_kb"]) / 1024.0)
            ph.append(row["phase"])
    return t, rss, ph


def _phase_plot(plt, meta, series, out_dir):
    if not series:
        return None
    names = [a["name"] for a in meta["allocators"] if a["name"] in series]
    fig, ax = plt.subplots(figsize=(11, 5))
    ref = meta["baseline"] if meta["baseline"] in series else names[0]
    for j, a in enumerate(names):
        t, rss, ph = _read_series(series[a])
        ax.plot(t, rss, color=_color(a, j), label=a, linewidth=2.4 if a == BSL else 1.3)
        if a == ref:
            start = 0
            for i in range(1, len(ph) + 1):
                if i == len(ph) or ph[i] != ph[start]:
                    if ph[start] in ("idle", "idle_end", "hold_big", "hold_small"):
                        ax.axvspan(t[start], t[i - 1], color="gray", alpha=0.08, linewidth=0)
                    ax.text((t[start] + t[i - 1]) / 2, 1.0, ph[start], rotation=90, fontsize=7,
                            va="top", ha="center", transform=ax.get_xaxis_transform(),
                            color="#555555")
                    start = i
    ax.set_xlabel(f"seconds (phase labels from {ref}'s run; shaded = idle / holding)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("phase_change: RSS over time (allocate big, free, idle, allocate small, free, idle)")
    ax.grid(alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    path = os.path.join(out_dir, "phase_change_rss.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_micro(meta, rows, series, out_dir):
    plt = _mpl()
    if not plt:
        return []
    names = [a["name"] for a in meta["allocators"]]
    base = meta["baseline"]
    images = []
    p = _ratio_bars(plt, rows, names, base, "time_ratio",
                    f"time per operation relative to {base} (log scale; left of 1 = faster)",
                    f"Micro benchmarks: time vs {base}", os.path.join(out_dir, "micro_time_ratio.png"))
    if p:
        images.append(("time ratio", p))
    p = _ratio_bars(plt, rows, names, base, "rss_ratio",
                    f"peak RSS relative to {base} (log scale; left of 1 = smaller)",
                    f"Micro benchmarks: peak RSS vs {base}", os.path.join(out_dir, "micro_rss_ratio.png"))
    if p:
        images.append(("peak RSS ratio", p))
    p = _scaling(plt, meta, rows, names, out_dir)
    if p:
        images.append(("thread scaling", p))
    p = _phase_plot(plt, meta, series, out_dir)
    if p:
        images.append(("phase change RSS over time", p))
    return images


# ---------------------------------------------------------------------------------------------
# macro


def macro_tables(meta, rows):
    names = [a["name"] for a in meta["allocators"]]
    base = meta["baseline"]
    has_bsl = BSL in names
    lines = ["## Summary", "", _summary(rows, names, base), ""]
    hdr = ["program"] + names + (["bsl rank"] if has_bsl else []) + ["outputs"]
    for key, ratio_key, fmt, title, note in (
            ("ns_per_op", "time_ratio", lambda ns: common.fmt_s(ns / 1e9 if ns else None),
             "Wall time", "Median wall time of the run. "),
            ("maxrss_kb", "rss_ratio", fmt_mib_kb, "Peak RSS",
             "ru_maxrss (wait4) of the measured process tree (redis: the server). ")):
        body = []
        for r in rows:
            best = _rank_best(r, key)
            line = [r["display"]]
            for a in names:
                line.append(_cell(r["allocators"][a], key, ratio_key, fmt, a == base, a == best,
                                  "ns_per_op_spread" if key == "ns_per_op" else None))
            if has_bsl:
                rk, of = _rank(r, BSL, key)
                line.append(f"{rk}/{of}" if rk else "-")
            line.append(r["outputs"])
            body.append(line)
        lines += [f"## {title}", "", note + f"Ratio = value / {base}'s. **Bold** = best. "
                  f"† = repetitions spread more than {NOISY:.0%}.", "", md_table(hdr, body), ""]
    notes = [f"- `{r['display']}`: {r['note']}" for r in rows if r.get("note")]
    if notes:
        lines += ["## Notes", ""] + notes + [""]
    fails = []
    for r in rows:
        for a in names:
            for e in r["allocators"][a]["errors"]:
                fails.append(f"- `{r['display']}` under {a}: {e}")
    if fails:
        lines += ["## Failures", ""] + fails + [""]
    return lines


def write_macro(meta, rows, out_dir, plots=True):
    os.makedirs(out_dir, exist_ok=True)
    _clean(out_dir, ["macro*.md", "macro*.json", "macro*.png"])
    with open(os.path.join(out_dir, "macro.json"), "w") as f:
        json.dump({"meta": meta, "programs": rows}, f, indent=1)
    body = macro_tables(meta, rows)
    images = []
    if plots:
        plt = _mpl()
        if plt:
            names = [a["name"] for a in meta["allocators"]]
            p = _ratio_bars(plt, rows, names, meta["baseline"], "time_ratio",
                            f"wall time relative to {meta['baseline']} (log; left of 1 = faster)",
                            "Macro benchmarks: wall time", os.path.join(out_dir, "macro_time_ratio.png"))
            if p:
                images.append(("macro time ratio", p))
            p = _ratio_bars(plt, rows, names, meta["baseline"], "rss_ratio",
                            f"peak RSS relative to {meta['baseline']} (log; left of 1 = smaller)",
                            "Macro benchmarks: peak RSS", os.path.join(out_dir, "macro_rss_ratio.png"))
            if p:
                images.append(("macro peak RSS ratio", p))
    lines = _header(meta, "buddyslab macro benchmarks (real programs under LD_PRELOAD)") + body
    if images:
        lines += ["## Plots", ""] + [f"![{t}]({os.path.basename(p)})" for t, p in images] + [""]
    with open(os.path.join(out_dir, "macro.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(body))

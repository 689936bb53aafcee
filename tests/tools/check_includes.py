#!/usr/bin/env python3
"""The layering of src/, checked: builds the directory-level include graph and fails when a
directory includes one of a layer above it or beside it, or when the graph has a cycle.

Every `#include "DIR/..."` in src/DIR2/ is an edge DIR2 -> DIR (includes within one directory and
of the public headers in include/ are not edges). The layers, bottom up, are LAYERS below: an edge
must go to a strictly lower layer, so two directories on one layer (the tracking layer's two
consumers, src/leakcheck and src/oom) may not include each other. A directory of src/ that LAYERS
does not name fails the check too: a new module has to be given its place.

    check_includes.py SRC_DIR            check (exit 1 with one line per violation)
    check_includes.py --print SRC_DIR    also print the graph (directories and edges)
    check_includes.py [--print] --archive LIB.a [--nm NM] SRC_DIR
                                         the same rules over the link graph too: an edge DIR2 -> DIR
                                         for every symbol an object of src/DIR2 uses and one of
                                         src/DIR defines (nm over the static archive), so that a
                                         call needs no include to be seen
"""
import os
import re
import subprocess
import sys

# Bottom up; a tuple is one layer of peers that must not include each other.
LAYERS = [
    ("os",),         # platform: every system call, the environment
    ("zones",),      # arenas, page descriptors, huge mappings
    ("buddy",),      # free_area per shard
    ("slab",),       # size classes, per-CPU caches, the heap walk
    ("track",),      # sampling, sites, block map, unwind, symbols, report output
    ("leakcheck", "oom"),  # the tracking layer's consumers: the leak report, the soft OOM policy
    ("malloc",),     # the public API: hook dispatch, fork table, options
]
RANK = {d: i for i, layer in enumerate(LAYERS) for d in layer}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def graph(src):
    """{dir: {included dir: [file that includes it, ...]}} over the directories of src."""
    dirs = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    g = {d: {} for d in dirs}
    for d in dirs:
        for root, _, files in os.walk(os.path.join(src, d)):
            for f in sorted(files):
                if not f.endswith((".c", ".h", ".cc", ".S")):
                    continue
                path = os.path.join(root, f)
                with open(path, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                for inc in INCLUDE.findall(text):
                    top = inc.split("/")[0] if "/" in inc else None
                    if top and top != d and top in g:
                        g[d].setdefault(top, []).append(os.path.relpath(path, src))
    return g


def cycles(g):
    """Every elementary cycle's directories, found by depth-first search (the graph is tiny)."""
    found = []
    def dfs(start, node, path):
        for nxt in g[node]:
            if nxt == start:
                found.append(path[:])
            elif nxt not in path and nxt > start:
                path.append(nxt)
                dfs(start, nxt, path)
                path.pop()
    for d in sorted(g):
        dfs(d, d, [d])
    return found


# The C library's allocation functions: code that frees what libc handed it (syms.c frees the
# demangler's result) calls libc's free, which in this library happens to be ours.
LIBC = {"malloc", "free", "calloc", "realloc", "memalign", "posix_memalign", "aligned_alloc", "valloc",
        "pvalloc", "malloc_usable_size"}


def link_graph(archive, nm, dirs):
    """{dir: {dir it uses symbols of: [symbol, ...]}} from the archive's members (src_DIR_FILE.o).
    A prelinked archive (meson.build: one `ld -r` object) is read through the objects meson
    compiled beside it, in LIB.a.p/."""
    members = subprocess.run(["ar", "t", archive], capture_output=True, text=True).stdout.split()
    objdir = archive + ".p"
    if not any(m.startswith("src_") for m in members) and os.path.isdir(objdir):
        objs = sorted(os.path.join(objdir, f) for f in os.listdir(objdir) if f.startswith("src_") and f.endswith(".o"))
        if not objs:
            raise SystemExit(f"check_includes: {archive} is prelinked and {objdir} holds no objects")
        out = subprocess.run([nm, "-A"] + objs, capture_output=True, text=True, check=True).stdout
        out = "\n".join(":" + line[len(objdir) + 1:] for line in out.splitlines() if line.startswith(objdir + "/"))
    else:
        out = subprocess.run([nm, "-A", archive], capture_output=True, text=True, check=True).stdout
    defined, used = {}, []
    for line in out.splitlines():
        m = re.match(r"^[^:]*:([^:]+):\s*(?:[0-9a-fA-F]+)?\s+([A-Za-z])\s+(\S+)$", line)
        if not m:
            continue
        member, kind, sym = m.groups()
        d = next((x for x in dirs if member.startswith("src_" + x + "_")), None)
        if d is None:
            continue
        if kind in "Uw":
            used.append((d, sym))
        elif kind.isupper() or kind in "vV":
            defined.setdefault(sym, d)
    g = {d: {} for d in dirs}
    for d, sym in used:
        e = defined.get(sym)
        if e and e != d and sym not in LIBC:
            g[d].setdefault(e, []).append(sym)
    return g


def check(g, what):
    bad = []
    for d in sorted(g):
        if d not in RANK:
            bad.append(f"src/{d}/ is on no layer: give it its place in LAYERS ({__file__})")
            continue
        for e, files in sorted(g[d].items()):
            if e not in RANK:
                continue
            if RANK[e] > RANK[d]:
                bad.append(f"src/{d} {what} src/{e}, a layer above it: {', '.join(sorted(set(files))[:6])}")
            elif RANK[e] == RANK[d]:
                bad.append(f"src/{d} {what} src/{e}, beside it on its layer: {', '.join(sorted(set(files))[:6])}")
    for c in cycles(g):
        bad.append(f"cycle ({what}): " + " -> ".join("src/" + x for x in c + [c[0]]))
    return bad


def show_graph(g, what):
    print(f"{what}: directories:", " ".join(sorted(g)))
    for d in sorted(g, key=lambda x: (RANK.get(x, 99), x)):
        for e in sorted(g[d], key=lambda x: (RANK.get(x, 99), x)):
            print(f"  {d} -> {e}  ({len(g[d][e])}, e.g. {sorted(g[d][e])[0]})")


def main(argv):
    show, archive, nm, args = False, None, "nm", []
    it = iter(argv)
    for a in it:
        if a == "--print":
            show = True
        elif a == "--archive":
            archive = next(it, None)
        elif a == "--nm":
            nm = next(it, "nm")
        else:
            args.append(a)
    if len(args) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    g = graph(args[0])
    if show:
        show_graph(g, "includes")
    bad = check(g, "includes")
    nlink = 0
    if archive:
        lg = link_graph(archive, nm, sorted(g))
        nlink = sum(len(v) for v in lg.values())
        if show:
            show_graph(lg, "links to")
        bad += check(lg, "links to")
    for b in bad:
        print("check_includes: " + b)
    if not bad:
        print(f"check_includes: {len(g)} directories, {sum(len(v) for v in g.values())} include edges"
              + (f", {nlink} link edges" if archive else "") + ", all downward, no cycle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

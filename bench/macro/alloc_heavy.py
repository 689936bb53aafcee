"""Allocation-heavy python3 workload for bench/run-macro.

Deterministic: prints the same lines under every allocator (the driver hashes stdout).
Usage: python3 alloc_heavy.py [scale]   (scale 1.0 = about 2 s on a 2.3 GHz core)"""

import hashlib
import json
import sys


class Node:
    def __init__(self, key, value, children=None):
        self.key = key
        self.value = value
        self.children = children or []


class Slot:
    __slots__ = ("a", "b", "c")

    def __init__(self, a, b, c):
        self.a, self.b, self.c = a, b, c


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        yield x >> 33


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    n = int(120_000 * scale)
    h = hashlib.sha256()
    rnd = lcg(42)

    # 1. a big dict of mixed values, then most of it deleted (dict resizes, many sizes)
    d = {}
    for i in range(n):
        r = next(rnd)
        d[f"key:{i}:{r % 997}"] = (r, str(r) * (1 + r % 5), [i, r % 13, "x" * (r % 40)])
    for i, k in enumerate(list(d)):
        if i % 4:
            del d[k]
    h.update(str(len(d)).encode())
    h.update(str(sum(v[0] % 1000 for v in d.values())).encode())

    # 2. strings: build, split, join, replace, format
    words = [f"w{next(rnd) % 5000:04d}" for _ in range(n)]
    text = " ".join(words)
    for _ in range(3):
        text = text.replace("w1", "W-one-").replace("w2", "w22")
        parts = text.split(" ")
        text = ",".join(reversed(parts)).replace(",", " ")
    h.update(hashlib.sha256(text.encode()).digest())
    counts = {}
    for w in text.split():
        counts[w] = counts.get(w, 0) + 1
    h.update(str(sorted(counts.items())[:50]).encode())

    # 3. JSON round trips of a nested structure
    doc = [{"id": i, "name": f"item-{i}", "tags": [f"t{j}" for j in range(i % 7)],
            "attrs": {"a": i * 0.5, "b": str(i) * 3}} for i in range(n // 8)]
    for _ in range(3):
        s = json.dumps(doc, sort_keys=True)
        doc = json.loads(s)
    h.update(hashlib.sha256(s.encode()).digest())

    # 4. object graphs: build a tree of instances, walk it, drop it
    for rep in range(3):
        root = Node("root", 0)
        level = [root]
        made = 1
        while made < n // 2:
            nxt = []
            for node in level:
                for c in range(3):
                    child = Node(f"{node.key}/{c}", made, [])
                    node.children.append(child)
                    nxt.append(child)
                    made += 1
            level = nxt
        total, stack = 0, [root]
        while stack:
            x = stack.pop()
            total += x.value
            stack.extend(x.children)
        h.update(str(total + rep).encode())
        del root, level, nxt, stack

    # 5. many short-lived small objects and tuples, sorted
    slots = [Slot(next(rnd) % 1000, i, (i, i + 1)) for i in range(n)]
    slots.sort(key=lambda s: (s.a, -s.b))
    h.update(str([(s.a, s.b) for s in slots[:100]]).encode())
    del slots

    # 6. growing buffers (realloc)
    buf = bytearray()
    lst = []
    for i in range(n * 4):
        buf += b"%d;" % i
        if i % 1000 == 0:
            lst.append(bytes(buf[-500:]))
    h.update(hashlib.sha256(bytes(buf)).digest())
    h.update(str(len(lst)).encode())

    print(f"alloc_heavy scale={scale} n={n}")
    print(h.hexdigest())


if __name__ == "__main__":
    main()

"""Allocation-heavy Python workload with deterministic output.

Run once with glibc malloc and once with LD_PRELOAD=libbuddyslab.so; the outputs must be identical.
Optional argument: scale (default 1).
"""
import gc
import hashlib
import json
import re
import sys
import threading
import zlib


def digest(obj):
    return hashlib.sha256(repr(obj).encode()).hexdigest()[:16]


def dicts_and_lists(scale):
    d = {}
    for i in range(60000 * scale):
        d["k%d" % i] = [i, str(i) * (i % 7), {"x": i % 13}]
    # delete every third key, then re-add with different value sizes
    for i in range(0, 60000 * scale, 3):
        del d["k%d" % i]
    for i in range(0, 60000 * scale, 3):
        d["k%d" % i] = "v" * (i % 300)
    total = sum(len(v) if isinstance(v, str) else v[0] for v in d.values())
    nested = [[j * i for j in range(i % 50)] for i in range(20000)]
    flat = sorted((x for row in nested for x in row), reverse=True)[:1000]
    return len(d), total, digest(flat)


def strings(scale):
    parts = []
    s = ""
    for i in range(20000 * scale):
        s += chr(65 + i % 26)
        if len(s) > 1000:
            parts.append(s)
            s = ""
    big = "".join(parts) * 3
    words = re.findall(r"[A-M]+", big)
    up = big.lower().replace("abc", "<ABC>").split("<")
    b = bytearray()
    for i in range(200000):
        b += bytes([i & 0xFF]) * (i % 5)
    comp = zlib.compress(bytes(b), 6)
    assert zlib.decompress(comp) == bytes(b)
    return len(big), len(words), len(up), digest(words[:100]), len(b), zlib.crc32(comp)


def json_roundtrip(scale):
    doc = {
        "items": [
            {"id": i, "name": "item-%05d" % i, "tags": ["t%d" % (i % 17), "u%d" % (i % 5)],
             "price": round(i * 1.25, 2), "nested": {"a": [i, i + 1, None, True]}}
            for i in range(15000 * scale)
        ],
        "meta": {"count": 15000 * scale, "unicode": "\u00e9\u4e2d\u6587\U0001F600"},
    }
    text = json.dumps(doc, sort_keys=True)
    back = json.loads(text)
    assert back == doc
    pretty = json.dumps(back, indent=2, ensure_ascii=False, sort_keys=True)
    again = json.loads(pretty)
    assert again == doc
    return len(text), len(pretty), hashlib.sha256(text.encode()).hexdigest()[:16]


def compile_code(scale):
    results = []
    for n in range(200 * scale):
        src = "\n".join(
            ["def f%d(x):" % n]
            + ["    y%d = x * %d + %d" % (k, k, n) for k in range(40)]
            + ["    return " + " + ".join("y%d" % k for k in range(40))]
        )
        code = compile(src, "<gen%d>" % n, "exec")
        ns = {}
        exec(code, ns)
        results.append(ns["f%d" % n](n))
    return sum(results), digest(results[-10:])


def classes_and_gc(scale):
    class Node:
        __slots__ = ("val", "children", "parent")

        def __init__(self, val, parent=None):
            self.val = val
            self.children = []
            self.parent = parent

    root = Node(0)
    frontier = [root]
    count = 1
    while count < 100000 * scale:
        nxt = []
        for node in frontier:
            for k in range(3):
                c = Node(node.val * 3 + k, node)
                node.children.append(c)
                nxt.append(c)
                count += 1
        frontier = nxt
    s = 0
    stack = [root]
    while stack:
        n = stack.pop()
        s = (s + n.val) % 1000000007
        stack.extend(n.children)
    # reference cycles collected by the gc
    del root, frontier, nxt, stack
    gc.collect()
    return count, s


def threads(scale):
    out = [None] * 4

    def work(k):
        acc = []
        for i in range(30000 * scale):
            acc.append(("t%d" % k, i, str(i * k)))
            if len(acc) > 5000:
                acc = acc[2500:]
        out[k] = digest(acc[-50:])

    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def bigints(scale):
    f = 1
    for i in range(1, 3000 * scale):
        f *= i
    return f.bit_length(), f % 1000003, hex(f)[2:22]


def main():
    scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    for name, fn in [("dicts_and_lists", dicts_and_lists), ("strings", strings), ("json", json_roundtrip),
                     ("compile", compile_code), ("classes_and_gc", classes_and_gc), ("threads", threads),
                     ("bigints", bigints)]:
        print(name, fn(scale))
    print("done")


if __name__ == "__main__":
    main()

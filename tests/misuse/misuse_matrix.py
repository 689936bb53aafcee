#!/usr/bin/env python3
"""The hardening options compose: every misuse case of misuse_cases.py under every combination of
junk=1, canary=1, quarantine=1M and guard=1 (16, the defaults included).

usage: misuse_matrix.py --prog PATH [--jobs N] [--only CASE,...] [--extra-options STR]

Each run is checked like a single misuse test (misuse_driver.run_case): a double free, an invalid
free, a use of a freed block or a sized-free mismatch is caught with exactly the message it gets
under the defaults (the function name included, the pointer checked), and a case that only a
hardening option catches is caught exactly when that option is on. Prints one line per failure
and a summary; exits 1 if anything failed.
"""
import argparse
import itertools
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import misuse_cases  # noqa: E402
from misuse_driver import run_case  # noqa: E402


def combos():
    for k in range(len(misuse_cases.HARDENING) + 1):
        for c in itertools.combinations(misuse_cases.HARDENING, k):
            yield frozenset(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prog', required=True)
    ap.add_argument('--jobs', type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument('--only', default=None, help='comma-separated case names')
    ap.add_argument('--extra-options', default='', help='added to every run (e.g. rseq=0)')
    a = ap.parse_args()

    cases = misuse_cases.CHECKED + misuse_cases.HARDENING_ONLY
    if a.only:
        want = set(a.only.split(','))
        cases = [c for c in cases if c[0] in want]
    runs = []
    for opts in combos():
        for name, _, expect in cases:
            kind, message = expect(opts)
            o = ','.join(x for x in (misuse_cases.options_string(opts), a.extra_options) if x)
            runs.append((name, kind, message, o or None))

    t0 = time.monotonic()

    def one(r):
        name, kind, message, o = r
        return run_case(a.prog, name, kind, message=message, options=o, timeout=60)

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        results = list(ex.map(one, runs))
    failed = [rep for ok, rep in results if not ok]
    for rep in failed:
        print(rep)
    print('%d runs (%d cases x 16 option combinations), %d failed, %.1f s' %
          (len(runs), len(cases), len(failed), time.monotonic() - t0))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

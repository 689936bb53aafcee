#!/usr/bin/env python3
"""Run the libFuzzer target for a bounded time on a fresh corpus started from the seeds.

usage: run_libfuzzer.py --fuzzer BIN --replay BIN --workdir DIR [--time SECONDS] [-- LIBFUZZER-ARGS...]

DIR/seeds is (re)written by `REPLAY --make-seeds`; DIR/corpus starts empty (with --keep-corpus it
keeps what earlier runs found); a crashing input lands in DIR/artifacts/. Prints libFuzzer's final
statistics (executions, coverage) and fails when libFuzzer found a crash, timed out an input or did
not run at all. A longer run is the same command with a larger --time (see tests/README.md).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--fuzzer', required=True)
    ap.add_argument('--replay', required=True)
    ap.add_argument('--workdir', required=True)
    ap.add_argument('--time', type=int, default=20)
    ap.add_argument('--keep-corpus', action='store_true')
    ap.add_argument('extra', nargs='*')
    a = ap.parse_args()

    seeds = os.path.join(a.workdir, 'seeds')
    corpus = os.path.join(a.workdir, 'corpus')
    artifacts = os.path.join(a.workdir, 'artifacts') + '/'
    if not a.keep_corpus:
        shutil.rmtree(corpus, ignore_errors=True)
    for d in (seeds, corpus, artifacts):
        os.makedirs(d, exist_ok=True)
    env = dict(os.environ)
    env.pop('BUDDYSLAB_OPTIONS', None)
    r = subprocess.run([a.replay, '--make-seeds', seeds], env=env)
    if r.returncode != 0:
        print('FAIL: could not write the seeds')
        return 1
    cmd = [a.fuzzer, '-max_total_time=%d' % a.time, '-print_final_stats=1', '-rss_limit_mb=3072',
           '-timeout=30', '-max_len=4096', '-artifact_prefix=' + artifacts] + a.extra + [corpus, seeds]
    print('running: ' + ' '.join(cmd), flush=True)
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=a.time * 3 + 120)
    out = r.stdout.decode(errors='replace')
    stats = dict(re.findall(r'^stat::(\w+):\s*(\d+)', out, re.M))
    progress = [l for l in out.splitlines() if re.match(r'#\d+\s', l)]
    execs = int(stats.get('number_of_executed_units', 0))
    print('libFuzzer exit status %d; %s' % (r.returncode, ', '.join('%s=%s' % kv for kv in sorted(stats.items()))))
    if progress:
        print('last progress line: ' + progress[-1])
    crashes = sorted(os.listdir(artifacts))
    if r.returncode != 0 or execs == 0 or crashes:
        print('FAIL: libFuzzer exit status %d, %d executions, artifacts: %s' %
              (r.returncode, execs, ', '.join(os.path.join(artifacts, c) for c in crashes) or 'none'))
        print('reproduce: %s %s' % (a.fuzzer, os.path.join(artifacts, crashes[0]) if crashes else ''))
        print('--- libFuzzer output (last 60 lines) ---')
        print('\n'.join(out.splitlines()[-60:]))
        return 1
    print('ok: %d executions in %d s, corpus %d inputs' % (execs, a.time, len(os.listdir(corpus))))
    return 0


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Run one conf_misuse case and check that buddyslab stopped it.

usage: conf_misuse.py --prog PATH --case NAME --expect abort|segv [--what REGEX]
                      [--options STR] [--preload LIB]

The child is `PROG CASE`, with BUDDYSLAB_OPTIONS=STR, LD_PRELOAD=LIB when given (preload mode),
stdin from /dev/null and core dumps off. It prints "PTR 0x..." before its bug.
  --expect abort  killed by SIGABRT, and stderr holds exactly one line from the allocator,
                  "buddyslab: FUNC(): WHAT: pointer PTR", WHAT matching REGEX (from its start),
                  PTR the pointer the child printed
  --expect segv   killed by SIGSEGV (a guard page), without an allocator line
A child that prints "SURVIVED" got through its bug unnoticed. On failure the script prints the
command, what was wrong and everything the child wrote, and exits 1.
"""
import argparse
import os
import re
import resource
import signal
import subprocess
import sys

LINE = re.compile(r'^buddyslab: ([A-Za-z_]+\(\)): (.*): pointer (0x[0-9a-fA-F]+)$')


def how(rc):
    if rc < 0:
        try:
            return 'killed by %s' % signal.Signals(-rc).name
        except ValueError:
            return 'killed by signal %d' % -rc
    return 'exit status %d' % rc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prog', required=True)
    ap.add_argument('--case', required=True)
    ap.add_argument('--expect', required=True, choices=['abort', 'segv'])
    ap.add_argument('--what', default='.', help='regex the allocator message must match (after "FUNC(): ")')
    ap.add_argument('--options', default=None)
    ap.add_argument('--preload', default=None)
    ap.add_argument('--timeout', type=float, default=30)
    a = ap.parse_args()

    env = dict(os.environ)
    env.pop('BUDDYSLAB_OPTIONS', None)
    env.pop('LD_PRELOAD', None)
    shown = ''
    if a.options:
        env['BUDDYSLAB_OPTIONS'] = a.options
        shown += 'BUDDYSLAB_OPTIONS=%s ' % a.options
    if a.preload:
        env['LD_PRELOAD'] = a.preload
        shown += 'LD_PRELOAD=%s ' % a.preload
    cmd = [a.prog, a.case]
    shown += ' '.join(cmd)
    try:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=a.timeout,
                           preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
    except subprocess.TimeoutExpired:
        print('FAIL: %s: HANG (no end after %.0f s)' % (shown, a.timeout))
        return 1
    out = r.stdout.decode(errors='replace')
    err = r.stderr.decode(errors='replace')
    problems = []
    m = re.search(r'^PTR (0x[0-9a-fA-F]+)$', out, re.M)
    child_ptr = int(m.group(1), 16) if m else None
    if 'SURVIVED' in out:
        problems.append('the bug went unnoticed: the program ran on to its end')
    if re.search(r'^FAILED ', out, re.M):
        problems.append('the program could not set the case up')
    lines = [l for l in err.splitlines() if l.startswith('buddyslab:')]
    if a.expect == 'abort':
        if r.returncode != -signal.SIGABRT:
            problems.append('expected death by SIGABRT, got %s' % how(r.returncode))
        if len(lines) != 1:
            problems.append('expected exactly one "buddyslab:" line on stderr, got %d' % len(lines))
        else:
            lm = LINE.match(lines[0])
            if not lm:
                problems.append('the line does not read "buddyslab: FUNC(): WHAT: pointer 0x...": %r' % lines[0])
            else:
                if not re.match(a.what, lm.group(2)):
                    problems.append('the message %r does not match %r' % (lm.group(2), a.what))
                if child_ptr is None:
                    problems.append('the program did not print its PTR line')
                elif int(lm.group(3), 16) != child_ptr:
                    problems.append('the message names %s, the bad pointer is %#x' % (lm.group(3), child_ptr))
    else:
        if r.returncode != -signal.SIGSEGV:
            problems.append('expected death by SIGSEGV, got %s' % how(r.returncode))
        if lines:
            problems.append('unexpected allocator line: %r' % lines[0])
    if problems:
        print('FAIL: %s' % shown)
        for p in problems:
            print('  - ' + p)
        print('  %s; stdout:\n%s  stderr:\n%s' % (how(r.returncode), indent(out), indent(err)))
        return 1
    print('ok: %s: %s; %s' % (shown, how(r.returncode), lines[0] if lines else '(no allocator line)'))
    return 0


def indent(s):
    return ''.join('    ' + l + '\n' for l in s.splitlines()) or '    (empty)\n'


if __name__ == '__main__':
    sys.exit(main())

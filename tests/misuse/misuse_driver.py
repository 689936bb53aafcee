#!/usr/bin/env python3
"""Run one heap-misuse case in a child process and check how the allocator reacted.

usage: misuse_driver.py --prog PATH --case NAME --expect abort|segv|exit0|survive
                        [--message TEXT | --line TEMPLATE] [--options STR] [--stdout TEXT]

The child is `PROG CASE` with BUDDYSLAB_OPTIONS=STR (when given) and core dumps off. It prints
"PTR 0x..." before it misbehaves: the pointer the message must name ("PTR any": any pointer).

  --expect abort   killed by SIGABRT, and stderr holds exactly one line from the allocator,
                   "buddyslab: TEXT: pointer PTR" (TEXT is matched literally, PTR numerically),
                   or the line given by --line, where {ptr} stands for the pointer
  --expect segv    killed by SIGSEGV (guard pages), with no allocator message
  --expect exit0   exits with status 0 and prints the --stdout line
  --expect survive exits with status 0 without an allocator message: the misuse is not caught
                   (misuse_matrix.py: what a hardening option is needed for)
A child that prints "SURVIVED" got through its misuse unnoticed. On failure the driver prints the
command, the expectation and everything the child wrote, and exits 1.
"""
import argparse
import os
import re
import resource
import signal
import subprocess
import sys


def no_core():
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def status(rc):
    if rc < 0:
        try:
            return 'killed by %s' % signal.Signals(-rc).name
        except ValueError:
            return 'killed by signal %d' % -rc
    return 'exit status %d' % rc


def run_case(prog, case, expect, message=None, line=None, options=None, stdout=None, timeout=60.0, env=None):
    """Run `prog case` and check it against the expectation. Returns (ok, report): report is one
    line when ok, else the command, the problems and everything the child wrote."""
    env = dict(os.environ if env is None else env)
    env.pop('BUDDYSLAB_OPTIONS', None)
    if options is not None:
        env['BUDDYSLAB_OPTIONS'] = options
    cmd = [prog, case]
    shown = ('BUDDYSLAB_OPTIONS=%s ' % options if options is not None else '') + ' '.join(cmd)
    try:
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, preexec_fn=no_core)
    except subprocess.TimeoutExpired:
        return False, 'FAIL: %s: timed out after %.0f s' % (shown, timeout)
    out = r.stdout.decode(errors='replace')
    err = r.stderr.decode(errors='replace')
    problems = []

    ptr = None
    m = re.search(r'^PTR (0x[0-9a-fA-F]+|any)$', out, re.M)
    if m:
        ptr = m.group(1)
    if 'SURVIVED' in out and expect != 'survive':
        problems.append('the misuse went unnoticed (the program ran on after it)')
    if re.search(r'^FAILED ', out, re.M):
        problems.append('the program could not set the case up')
    alloc_lines = [l for l in err.splitlines() if l.startswith('buddyslab:')]

    if expect == 'abort':
        if r.returncode != -signal.SIGABRT:
            problems.append('expected to be killed by SIGABRT, got %s' % status(r.returncode))
        if line is not None:
            template = line
        elif message is not None:
            template = 'buddyslab: ' + message + ': pointer {ptr}'
        else:
            template = None
            problems.append('--message or --line is required with --expect abort')
        if template is not None and len(alloc_lines) != 1:
            problems.append('expected exactly one "buddyslab:" line on stderr, got %d' % len(alloc_lines))
        elif template is not None:
            got = alloc_lines[0]
            pattern = '(0x[0-9a-f]+)'.join(re.escape(part) for part in template.split('{ptr}'))
            m = re.fullmatch(pattern, got)
            if not m:
                problems.append('wrong message:\n      got      %r\n      expected %r' % (got, template))
            elif '{ptr}' in template:
                if ptr is None:
                    problems.append('the program did not print the PTR line')
                elif ptr != 'any' and int(m.group(1), 16) != int(ptr, 16):
                    problems.append('the message names pointer %s, the misused pointer is %s' % (m.group(1), ptr))
    elif expect == 'segv':
        if r.returncode != -signal.SIGSEGV:
            problems.append('expected to be killed by SIGSEGV, got %s' % status(r.returncode))
        if alloc_lines:
            problems.append('unexpected allocator message: %r' % alloc_lines[0])
    else:  # exit0, survive
        if r.returncode != 0:
            problems.append('expected exit status 0, got %s' % status(r.returncode))
        if alloc_lines:
            problems.append('unexpected allocator message: %r' % alloc_lines[0])
        if stdout is not None and stdout not in out.splitlines():
            problems.append('the program did not print %r' % stdout)

    if problems:
        text = ['FAIL: %s' % shown] + ['  - ' + p for p in problems]
        text.append('  %s; stdout:\n%s  stderr:\n%s' % (status(r.returncode), indent(out), indent(err)))
        return False, '\n'.join(text)
    first = alloc_lines[0] if alloc_lines else '(no allocator message)'
    return True, 'ok: %s: %s; %s' % (shown, status(r.returncode), first)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prog', required=True)
    ap.add_argument('--case', required=True)
    ap.add_argument('--expect', required=True, choices=['abort', 'segv', 'exit0', 'survive'])
    ap.add_argument('--message', default=None, help='what the allocator must say (before ": pointer")')
    ap.add_argument('--line', default=None, help='the whole line the allocator must print; {ptr}: the pointer')
    ap.add_argument('--options', default=None, help='BUDDYSLAB_OPTIONS for the child')
    ap.add_argument('--stdout', default=None, help='a line the child must print (exit0)')
    ap.add_argument('--timeout', type=float, default=60)
    a = ap.parse_args()
    ok, report = run_case(a.prog, a.case, a.expect, message=a.message, line=a.line, options=a.options,
                          stdout=a.stdout, timeout=a.timeout)
    print(report)
    return 0 if ok else 1


def indent(s):
    return ''.join('    ' + l + '\n' for l in s.splitlines()) or '    (empty)\n'


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Write docs/MISUSE.md: what buddyslab (defaults, each hardening option, all four) and its peers
(glibc, and jemalloc, mimalloc, tcmalloc where installed) do with each heap misuse.

usage: misuse_table.py --prog MISUSE_PLAIN --lib LIBBUDDYSLAB_SO [--out PATH] [--check PATH]
                       [--jobs N] [--no-peers]

misuse_plain is misuse_prog built without buddyslab: every allocator comes in by LD_PRELOAD (glibc:
nothing preloaded). The cases are those of misuse_cases.py. Each run is classified:

  caught    killed by SIGABRT after printing a diagnostic
  reported  printed a diagnostic and ran on
  SIGSEGV   killed by a signal without a diagnostic (SIGSEGV, SIGBUS, a bare SIGABRT; for
            buddyslab's guard=1 row that is the guard page faulting at the write)
  silent    ran on and exited normally, nothing said
  hung      killed after the time limit
  n/a       the allocator lacks the function (free_sized), or the case could not be set up

--out writes the file (default: stdout). --check compares buddyslab's columns (and its messages)
with a checked-in copy and exits 1 when they differ; the peers' columns are not compared, they vary
with their versions. Peers are found with `ldconfig -p`: libjemalloc.so.2, libmimalloc.so.2,
libtcmalloc_minimal.so.4 (Debian: apt-get install libjemalloc2 libmimalloc2.0 libgoogle-perftools4).
"""
import argparse
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import misuse_cases  # noqa: E402

BSL_COLUMNS = [
    ('buddyslab', frozenset()),
    ('buddyslab junk=1', frozenset(['junk'])),
    ('buddyslab canary=1', frozenset(['canary'])),
    ('buddyslab quarantine=1M', frozenset(['quarantine'])),
    ('buddyslab guard=1', frozenset(['guard'])),
    ('buddyslab all four', frozenset(misuse_cases.HARDENING)),
]
PEERS = [('jemalloc', 'libjemalloc.so.2'), ('mimalloc', 'libmimalloc.so.2'), ('tcmalloc', 'libtcmalloc_minimal.so.4')]
TIMEOUT = 20


def no_core():
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def ldconfig_path(soname):
    try:
        out = subprocess.run(['ldconfig', '-p'], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout
    except OSError:
        out = ''
    for line in out.splitlines():  # "\tlibjemalloc.so.2 (libc6,x86-64) => /lib/.../libjemalloc.so.2"
        parts = line.strip().split(' => ')
        if len(parts) == 2 and parts[0].split()[0] == soname and os.path.exists(parts[1]):
            return parts[1]
    for d in ('/lib/x86_64-linux-gnu', '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib'):
        p = os.path.join(d, soname)
        if os.path.exists(p):
            return p
    return None


def package_version(path):
    """The Debian package version of the file at path, or ''."""
    try:
        pkg = subprocess.run(['dpkg', '-S', os.path.realpath(path)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        if not pkg:
            pkg = subprocess.run(['dpkg', '-S', path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True).stdout
        name = pkg.split(':')[0].strip()
        if not name:
            return ''
        v = subprocess.run(['dpkg-query', '-W', '-f', '${Version}', name], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True).stdout.strip()
        return v
    except OSError:
        return ''


def clean_message(err):
    """The first diagnostic line, with addresses, sizes of chunks and file:line replaced."""
    for line in err.splitlines():
        line = line.strip()
        if not line:
            continue
        line = re.sub(r'0x[0-9a-fA-F]+', 'PTR', line)
        line = re.sub(r'\b[0-9a-f]{8,}\b', 'PTR', line)
        line = re.sub(r'^(<jemalloc>: )?[\w./-]+\.(c|cc|cpp|h):\d+:?\]?\s*', r'\1', line)
        m = re.fullmatch(r'buddyslab: (.*): pointer PTR', line)
        if m:  # buddyslab's own format: keep "<function>: <what>" whole
            return m.group(1)
        if len(line) > 70:
            line = line[:67] + '...'
        return line
    return ''


def classify(rc, out, err, timed_out):
    if timed_out:
        return 'hung', ''
    if re.search(r'^UNSUPPORTED ', out, re.M) and rc == 3:
        return 'n/a', ''
    if re.search(r'^FAILED ', out, re.M):
        return 'n/a', ''
    msg = clean_message(err)
    if rc == -signal.SIGABRT and msg:
        return 'caught', msg
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = 'signal %d' % -rc
        return name, msg
    if msg:
        return 'reported', msg
    if rc == 0:
        return 'silent', ''
    return 'exit %d' % rc, ''


def run(prog, case, preload, options):
    env = dict(os.environ)
    for k in ('LD_PRELOAD', 'BUDDYSLAB_OPTIONS', 'MALLOC_CONF', 'MIMALLOC_OPTIONS', 'GLIBC_TUNABLES',
              'MALLOC_PERTURB_', 'MALLOC_CHECK_', 'TCMALLOC_DEBUG'):  # meson test sets MALLOC_PERTURB_
        env.pop(k, None)
    if preload:
        env['LD_PRELOAD'] = preload
    if options:
        env['BUDDYSLAB_OPTIONS'] = options
    try:
        r = subprocess.run([prog, case], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=TIMEOUT, preexec_fn=no_core)
    except subprocess.TimeoutExpired:
        return classify(0, '', '', True)
    return classify(r.returncode, r.stdout.decode(errors='replace'), r.stderr.decode(errors='replace'), False)


def esc(s):
    return s.replace('|', '\\|')


def render(cases, columns, cells, messages):
    L = []
    L.append('# Heap misuse: buddyslab and its peers')
    L.append('')
    L.append('Generated by `tests/misuse/misuse_table.py` (the `misuse-table` test regenerates it into the')
    L.append('build directory and fails when buddyslab\'s columns differ from this file; the peers\' columns')
    L.append('are not compared, they vary with their versions). Each case is one run of `misuse_plain CASE`')
    L.append('(`tests/misuse/misuse_prog.c` built without buddyslab), the allocator preloaded; glibc is the')
    L.append('program with nothing preloaded. Regenerate by hand with')
    L.append('')
    L.append('```')
    L.append('python3 tests/misuse/misuse_table.py --prog build/tests/misuse/misuse_plain \\')
    L.append('    --lib build/libbuddyslab.so --out docs/MISUSE.md')
    L.append('```')
    L.append('')
    L.append('* **caught**: killed by SIGABRT after a diagnostic; **reported**: a diagnostic, then the program')
    L.append('  ran on; **SIGSEGV** (or another signal): killed without a diagnostic (for buddyslab\'s')
    L.append('  `guard=1` that is the guard page faulting at the bad write itself); **silent**: nothing, the')
    L.append('  program exited normally; **hung**: killed after %d s; **n/a**: the allocator lacks the' % TIMEOUT)
    L.append('  function (glibc 2.36, jemalloc, mimalloc and tcmalloc have no `free_sized`).')
    L.append('* buddyslab\'s hardening options: `junk=1`, `canary=1`, `quarantine=1M`, `guard=1` (docs/OPTIONS.md);')
    L.append('  "all four" sets them together. The `hardening-matrix` test runs the same cases under all 16')
    L.append('  combinations and checks each message.')
    L.append('')
    L.append('| misuse | ' + ' | '.join(c[0] for c in columns) + ' |')
    L.append('| :--- | ' + ' | '.join(':---' for _ in columns) + ' |')
    for name, bug, _ in cases:
        row = [cells[(name, col[0])][0] for col in columns]
        L.append('| %s (`%s`) | %s |' % (esc(bug), name, ' | '.join(row)))
    L.append('')
    L.append('## The messages')
    L.append('')
    L.append('buddyslab prints one line, `buddyslab: <function>: <what>: pointer <PTR>`, and aborts; the table')
    L.append('shows `<function>: <what>` under the defaults and, where a hardening option changes it, under the')
    L.append('first such option (`canary=1` knows the exact size a sized free should have given). The peers:')
    L.append('the first line they printed, addresses replaced by PTR and source locations dropped.')
    L.append('')
    peer_cols = [c[0] for c in columns if not c[0].startswith('buddyslab')]
    hdr = ['buddyslab', 'buddyslab with an option'] + peer_cols
    L.append('| misuse | ' + ' | '.join(hdr) + ' |')
    L.append('| :--- | ' + ' | '.join(':---' for _ in hdr) + ' |')
    for name, bug, _ in cases:
        base = messages.get((name, 'buddyslab'), '')
        other = ''
        for col in columns[1:]:
            if col[0].startswith('buddyslab') and messages.get((name, col[0]), '') not in ('', base):
                other = '%s: `%s`' % (col[0][len('buddyslab '):], esc(messages[(name, col[0])]))
                break
        row = ['`%s`' % esc(base) if base else '', other]
        for col in peer_cols:
            m = messages.get((name, col), '')
            row.append('`%s`' % esc(m) if m else '')
        L.append('| `%s` | %s |' % (name, ' | '.join(row)))
    L.append('')
    return '\n'.join(L)


def tables(text):
    """Each markdown table of text as (header cells, rows of cells)."""
    out, cur = [], None
    for line in text.splitlines():
        if line.startswith('|'):
            cells = [c.strip() for c in re.split(r'(?<!\\)\|', line.strip())[1:-1]]
            if cur is None:
                cur = (cells, [])
                out.append(cur)
            elif not all(re.fullmatch(r':?-+:?', c) for c in cells):
                cur[1].append(cells)
        else:
            cur = None
    return out


def buddyslab_view(text):
    """The first column and every column whose header starts with 'buddyslab', of every table."""
    view = []
    for header, rows in tables(text):
        keep = [0] + [i for i, h in enumerate(header) if h.startswith('buddyslab')]
        view.append([[header[i] for i in keep]] + [[r[i] if i < len(r) else '' for i in keep] for r in rows])
    return view


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--prog', required=True, help='misuse_plain')
    ap.add_argument('--lib', required=True, help='libbuddyslab.so')
    ap.add_argument('--out', default=None)
    ap.add_argument('--check', default=None)
    ap.add_argument('--jobs', type=int, default=2 * (os.cpu_count() or 1))
    ap.add_argument('--no-peers', action='store_true', help='buddyslab and glibc only')
    a = ap.parse_args()

    lib = os.path.abspath(a.lib)
    columns = [(title, lib, misuse_cases.options_string(opts)) for title, opts in BSL_COLUMNS]
    glibc = os.confstr('CS_GNU_LIBC_VERSION') if hasattr(os, 'confstr') else 'glibc'
    columns.append((glibc or 'glibc', None, None))
    if not a.no_peers:
        for name, soname in PEERS:
            path = ldconfig_path(soname)
            if not path:
                print('misuse_table: %s (%s) not installed: column left out' % (name, soname), file=sys.stderr)
                continue
            v = package_version(path)
            columns.append(('%s %s' % (name, v) if v else name, path, None))

    cases = misuse_cases.CHECKED + misuse_cases.HARDENING_ONLY
    jobs = [(name, col) for name, _, _ in cases for col in columns]

    def one(j):
        name, (title, preload, options) = j
        return (name, title), run(a.prog, name, preload, options)

    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        results = dict(ex.map(one, jobs))
    messages = {k: v[1] for k, v in results.items()}
    text = render(cases, columns, results, messages)

    if a.out:
        with open(a.out, 'w') as f:
            f.write(text)
        print('misuse_table: wrote %s (%d cases x %d columns)' % (a.out, len(cases), len(columns)))
    else:
        sys.stdout.write(text)
    if a.check:
        if not os.path.exists(a.check):
            print('misuse_table: %s does not exist (write it with --out %s)' % (a.check, a.check))
            return 1
        with open(a.check) as f:
            want = buddyslab_view(f.read())
        got = buddyslab_view(text)
        if want != got:
            print('misuse_table: buddyslab\'s columns differ from %s:' % a.check)
            for t, (w, g) in enumerate(zip(want, got)):
                for i in range(max(len(w), len(g))):
                    wr = w[i] if i < len(w) else None
                    gr = g[i] if i < len(g) else None
                    if wr != gr:
                        print('  table %d row %d:\n    checked in: %s\n    now:        %s' % (t + 1, i, wr, gr))
            if len(want) != len(got):
                print('  %d tables checked in, %d now' % (len(want), len(got)))
            print('(regenerate: misuse_table.py ... --out %s, and review the change)' % a.check)
            return 1
        print('misuse_table: buddyslab\'s columns match %s' % a.check)
    return 0


if __name__ == '__main__':
    sys.exit(main())

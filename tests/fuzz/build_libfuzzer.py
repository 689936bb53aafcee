#!/usr/bin/env python3
"""Build the libFuzzer binary with clang: the allocator's sources are compiled into it with
coverage instrumentation (-fsanitize=fuzzer-no-link), so that libFuzzer is guided by the
allocator's own branches, and the fuzz target with -fsanitize=fuzzer. Called by
tests/fuzz/meson.build.

usage: build_libfuzzer.py --cc CLANG --cxx CLANG++ --out BINARY --depfile FILE
                          [--sanitize LIST] [--rename-prefix P] [--skip NAME ...]
                          [--cflag FLAG ...] --target FUZZ.c -- LIBRARY-SOURCES...

--sanitize undefined: UBSan over the allocator and the target; buddyslab stays the process's
malloc. --sanitize address(,undefined) needs --rename-prefix: ASan brings its own malloc, so the
allocator's public allocation functions are renamed in its objects (objcopy --redefine-sym malloc
-> P malloc, ...) and in the target (-Dmalloc=Pmalloc ...). The process (libFuzzer, libc) then
runs on ASan's malloc while the target drives buddyslab under its new names, and ASan checks the
allocator's own accesses to its globals, its stacks and any ASan-managed memory. (ASan cannot see
overflows inside buddyslab's blocks: they live in buddyslab's mappings, which ASan does not track.)
--skip NAME leaves a source out (new.c: operator new stays ASan's).
"""
import argparse
import os
import subprocess
import sys

# The allocation API buddyslab exports under libc's names (src/malloc/malloc.c).
RENAMED = ['malloc', 'free', 'calloc', 'realloc', 'reallocarray', 'memalign', 'aligned_alloc', 'posix_memalign',
           'valloc', 'pvalloc', 'malloc_usable_size', 'free_sized', 'free_aligned_sized', 'malloc_trim', 'mallopt',
           'mallinfo', 'mallinfo2', 'malloc_stats', '__libc_malloc', '__libc_free', '__libc_calloc',
           '__libc_realloc', '__libc_memalign', '__libc_valloc', '__libc_pvalloc', '__posix_memalign']


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--cc', required=True)
    ap.add_argument('--cxx', required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--depfile', required=True)
    ap.add_argument('--sanitize', default='')
    ap.add_argument('--cflag', action='append', default=[])
    ap.add_argument('--target', required=True)
    ap.add_argument('--rename-prefix', default='')
    ap.add_argument('--skip', action='append', default=[])
    ap.add_argument('sources', nargs='+')
    a = ap.parse_args()

    objdir = a.out + '.objs'
    os.makedirs(objdir, exist_ok=True)
    san = ['-fsanitize=' + a.sanitize, '-fno-sanitize-recover=all'] if a.sanitize else []
    base = ['-O1', '-g', '-fno-omit-frame-pointer'] + a.cflag + san
    objs, deps = [], set()
    # The target must really call what it tests: -fno-builtin (clang folds e.g. aligned_alloc with a
    # bad alignment to NULL without calling it).
    sources = [s for s in a.sources if os.path.basename(s) not in a.skip]
    # FUZZ_INPUT_OWNED: whether libFuzzer's copy of each input must be a buddyslab block.
    target_flags = ['-fsanitize=fuzzer', '-fno-builtin', '-DFUZZ_INPUT_OWNED=%d' % (0 if a.rename_prefix else 1)]
    redefine = None
    if a.rename_prefix:
        redefine = os.path.join(objdir, 'redefine-syms.txt')
        with open(redefine, 'w') as f:
            for name in RENAMED:
                f.write('%s %s%s\n' % (name, a.rename_prefix, name))
        target_flags += ['-D%s=%s%s' % (n, a.rename_prefix, n) for n in RENAMED if not n.startswith('__')]
    units = [(s, ['-fsanitize=fuzzer-no-link']) for s in sources] + [(a.target, target_flags)]
    for i, (src, cov) in enumerate(units):
        cxx = src.endswith(('.cc', '.cpp', '.cxx'))
        obj = os.path.join(objdir, '%02d-%s.o' % (i, os.path.basename(src)))
        dep = obj + '.d'
        cmd = [a.cxx if cxx else a.cc] + cov + base + (['-std=c++17'] if cxx else ['-std=gnu11']) + \
              ['-MD', '-MF', dep, '-c', src, '-o', obj]
        r = subprocess.run(cmd)
        if r.returncode != 0:
            print('build_libfuzzer: failed: ' + ' '.join(cmd), file=sys.stderr)
            return 1
        if redefine and src != a.target:
            r = subprocess.run(['objcopy', '--redefine-syms=' + redefine, obj])
            if r.returncode != 0:
                print('build_libfuzzer: objcopy failed on ' + obj, file=sys.stderr)
                return 1
        objs.append(obj)
        with open(dep) as f:
            text = f.read().replace('\\\n', ' ')
        deps.update(text.split(':', 1)[1].split())
    link = [a.cxx, '-fsanitize=fuzzer'] + san + ['-g'] + objs + ['-o', a.out, '-lpthread']
    r = subprocess.run(link)
    if r.returncode != 0:
        print('build_libfuzzer: failed: ' + ' '.join(link), file=sys.stderr)
        return 1
    with open(a.depfile, 'w') as f:
        f.write('%s: %s\n' % (a.out.replace(' ', '\\ '), ' '.join(d.replace(' ', '\\ ') for d in sorted(deps))))
    return 0


if __name__ == '__main__':
    sys.exit(main())

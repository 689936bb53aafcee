"""The heap-misuse cases of misuse_prog that misuse_matrix.py and misuse_table.py run, with what
buddyslab must say for each (tests/meson.build registers the single cases itself).

A case is (name, bug, expect): `name` is misuse_prog's argument, `bug` the row label of
docs/MISUSE.md, `expect(opts)` what buddyslab must do under the hardening options `opts` (a set
of 'junk', 'canary', 'quarantine', 'guard'): ('abort', MESSAGE) for one line
"buddyslab: MESSAGE: pointer PTR" and SIGABRT, ('segv', None) for a fault at once (guard page),
or ('survive', None) when the misuse goes unnoticed (exit status 0, no message).
"""

HARDENING = ('junk', 'canary', 'quarantine', 'guard')
# The option string of each hardening option as the matrix and the table set it.
OPTION = {'junk': 'junk=1', 'canary': 'canary=1', 'quarantine': 'quarantine=1M', 'guard': 'guard=1'}

NOT_OURS = 'invalid pointer (not allocated by buddyslab)'
NOT_START = 'invalid pointer (not the start of a block)'
FREED = 'use after free detected (the block is free)'
ALIGN_4096 = 'alignment mismatch (alignment given 4096, the block is not aligned to it)'


def always(message):
    return lambda opts: ('abort', message)


def sized(func, given, class_range, exact, guard_range=None):
    """A size mismatch: by default the check knows the block's class range, with canary=1 the
    exact size asked for. guard_range: the range under guard=1 where it differs (a large block of
    9-64 frames is rounded up to a power of two for the per-CPU caches, but not when guarded)."""
    def expect(opts):
        allocated = exact if 'canary' in opts else guard_range if guard_range and 'guard' in opts else class_range
        return ('abort', '%s: size mismatch (size given %s, size allocated %s)' % (func, given, allocated))
    return expect


# Every double free, invalid free, use of a freed block and sized-free mismatch: the matrix runs
# each under all 16 combinations of the hardening options, and the message must never change
# (except that canary=1 knows the exact size asked for, and guard=1 a large block's frames).
CHECKED = [
    ('double-free-small', 'double free, small block', always('free(): double free detected')),
    ('double-free-small-drained', 'double free, small block pushed out of the caches first',
     always('free(): double free detected')),
    ('double-free-small-reused-key', 'double free, small block freed, reused and freed', always('free(): double free detected')),
    ('double-free-large', 'double free, large block (100 KiB)', always('free(): double free detected')),
    ('double-free-huge', 'double free, huge block (8 MiB)', always('free(): double free detected')),
    ('free-stack', 'free of a stack address', always('free(): ' + NOT_OURS)),
    ('free-static', 'free of a static array', always('free(): ' + NOT_OURS)),
    ('free-mmap', 'free of an mmap\'d page', always('free(): ' + NOT_OURS)),
    ('free-interior-small', 'free of an interior pointer, small block', always('free(): ' + NOT_START)),
    ('free-interior-large', 'free of an interior pointer, large block', always('free(): ' + NOT_START)),
    ('free-interior-huge', 'free of an interior pointer, huge block',
     always('free(): invalid pointer (inside a huge block)')),
    ('free-misaligned', 'free of a misaligned pointer (+1)', always('free(): invalid pointer (misaligned)')),
    ('free-misaligned-8', 'free of a misaligned pointer (+8)', always('free(): invalid pointer (misaligned)')),
    ('free-misaligned-large', 'free of a misaligned pointer, large block (+8)', always('free(): ' + NOT_START)),
    ('realloc-freed-small', 'realloc of a freed small block', always('realloc(): double free detected')),
    ('realloc-freed-large', 'realloc of a freed large block', always('realloc(): double free detected')),
    ('realloc-foreign', 'realloc of a stack address', always('realloc(): ' + NOT_OURS)),
    ('usable-size-foreign', 'malloc_usable_size of a stack address', always('malloc_usable_size(): ' + NOT_OURS)),
    ('usable-size-freed-small', 'malloc_usable_size of a freed small block', always('malloc_usable_size(): ' + FREED)),
    ('usable-size-freed-large', 'malloc_usable_size of a freed large block', always('malloc_usable_size(): ' + FREED)),
    ('usable-size-freed-huge', 'malloc_usable_size of a freed huge block', always('malloc_usable_size(): ' + FREED)),
    ('free-sized-small', 'free_sized, wrong size (24-byte block, 4000 given)',
     sized('free_sized()', 4000, '0..32', 24)),
    ('free-sized-large', 'free_sized, wrong size (100000-byte block, half given)',
     sized('free_sized()', 50000, '65537..131072', 100000, '98305..102400')),
    ('free-sized-huge', 'free_sized, wrong size (8 MiB block, 1 MiB given)',
     sized('free_sized()', 1048576, '2097153..8388608', 8388608)),
    ('free-sized-freed', 'free_sized of a freed block', always('free_sized(): double free detected')),
    ('free-aligned-sized-align', 'free_aligned_sized, wrong alignment (4096 for a 64-aligned block)',
     always('free_aligned_sized(): ' + ALIGN_4096)),
    ('delete-sized', 'sized operator delete, wrong size (24-byte object, 4000 given)',
     sized('operator delete()', 4000, '0..32', 24)),
    ('delete-array-sized', 'sized operator delete[], wrong size (100000-byte array, 24 given)',
     sized('operator delete[]()', 24, '65537..131072', 100000, '98305..102400')),
    ('delete-aligned', 'aligned operator delete, wrong alignment (4096 for a 64-aligned block)',
     always('operator delete(): ' + ALIGN_4096)),
]


OVERFLOW = 'free(): heap overflow detected (the canary after the block was overwritten)'


def _overflow(opts):
    return ('abort', OVERFLOW) if 'canary' in opts else ('survive', None)


def _waf_small(opts):
    if 'quarantine' in opts:
        return ('abort', 'free(): write after free detected (a quarantined block changed)')
    return ('survive', None)


def _waf_large(opts):
    if 'quarantine' in opts:
        return ('abort', 'exit(): write after free detected (a quarantined block changed)')
    return ('survive', None)


def _guard(opts):
    # the write lands on the canary when there is one (the usable size is then the size asked for)
    if 'canary' in opts:
        return ('abort', OVERFLOW)
    return ('segv', None) if 'guard' in opts else ('survive', None)


# What only a hardening option catches: the matrix checks these under every combination too.
HARDENING_ONLY = [
    ('overflow-small', '1-byte heap overflow, small block', _overflow),
    ('overflow-large', '1-byte heap overflow, large block', _overflow),
    ('guard', 'write just past a large block\'s usable size', _guard),
    ('write-after-free', 'write after free, small block (then 4 MB of other frees)', _waf_small),
    ('write-after-free-large', 'write after free, large block (then exit)', _waf_large),
]


def options_string(opts):
    return ','.join(OPTION[o] for o in HARDENING if o in opts)

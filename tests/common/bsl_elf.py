"""ELF facts the test drivers check about the programs they run (tests/leak, tests/oom)."""
import struct


def has_interp(path):
    """Whether the ELF64 executable at path names a dynamic loader (a PT_INTERP header)."""
    with open(path, "rb") as f:
        h = f.read(64)
        phoff, = struct.unpack_from("<Q", h, 32)
        phentsize, phnum = struct.unpack_from("<HH", h, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", ph, i * phentsize)[0] == 3 for i in range(phnum))

"""ELF facts the test drivers check about the programs and libraries they run (tests/leak, tests/oom, tests/footprint)."""
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


def section(path, name):
    """(file offset, size) of the section called name (bytes, e.g. b".text") in the ELF64 file at
    path, or None."""
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        sh_name, _type, _flags, _addr, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return sh_name, off, size

    _, stroff, _ = header(shstrndx)
    for i in range(shnum):
        sh_name, off, size = header(i)
        start = stroff + sh_name
        if data[start:data.index(b"\0", start)] == name:
            return off, size
    return None

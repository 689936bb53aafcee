#!/usr/bin/env python3
"""The restartable sequences' abort handlers (src/slab/pcp_rseq_x86_64.h) lie in the first 64 KiB
window of the library's text, with the start-up code every process runs.

The kernel reads a handler's signature whenever it returns to a thread whose rseq_cs is set (after
any preemption once the thread has run a sequence), so the page that holds the handlers is
resident in every process and is faulted in again by every fork child that mallocs. In a section
named .text.bsl_rseq_abort they landed on the library's last text page (file offset 0x30b46 of
0x31000): one more page per process. Finds every signature (0x53053053) followed by a jmp in
.text of libbuddyslab.so (argv[1]) and checks its window."""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from bsl_elf import section  # noqa: E402

SIG = struct.pack("<I", 0x53053053)
WINDOW = 64 << 10


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit("not an ELF64 file")
    text = section(sys.argv[1], b".text")
    if not text:
        sys.exit("no .text section")
    off, size = text
    handlers = []
    i = data.find(SIG, off, off + size)
    while i >= 0:
        if data[i + 4] in (0xE9, 0xEB):  # the handler's jmp back to the sequence's start
            handlers.append(i)
        i = data.find(SIG, i + 1, off + size)
    if not handlers:
        sys.exit("FAIL: no abort handler found in .text")
    first = off // WINDOW
    late = [h for h in handlers if h // WINDOW != first]
    print("%d abort handlers at file offsets %#x..%#x; .text %#x..%#x" %
          (len(handlers), handlers[0], handlers[-1], off, off + size))
    if late:
        sys.exit("FAIL: %d handlers outside the text's first 64 KiB window (%#x..)" % (len(late), late[0]))


if __name__ == "__main__":
    main()

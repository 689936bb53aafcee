"""bsltools: what the buddyslab scripts share (bsl-cli.py, bsl-top.py, bsl-report.py).

Installed next to them (<prefix>/share/buddyslab); each script puts its own directory first on
sys.path before importing this module, because the launcher runs them with `python3 -I -S`
(isolated: neither the script's directory nor site packages are on the path by default).
Standard library only.

  human(n)                      1536 -> "1.5 KiB"
  usage_error(prog, usage, msg) "PROG: MSG" and the usage line on stderr, exit status 2
  flag_value(argv, i)           the value of "--flag VALUE" or "--flag=VALUE"
  Options, options_explain(lib, s)
                                an options string read by the library itself (bsl_options_explain)
"""
import ctypes
import os
import sys

# ---- formatting ---------------------------------------------------------------------------------
UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human(n):
    """Bytes in binary units: '512 B', '1.5 KiB', '3.0 GiB' (negative numbers keep their sign)."""
    n = float(n)
    for unit in UNITS:
        if abs(n) < 1024 or unit == UNITS[-1]:
            return ("%d B" % n) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


# ---- command lines ------------------------------------------------------------------------------
def usage_error(prog, usage, msg):
    """A usage error: what is wrong, the command's usage line, exit status 2."""
    sys.stderr.write("%s: %s\n%s\n" % (prog, msg, usage))
    sys.stderr.flush()
    sys.exit(2)


def flag_value(argv, i, on_missing):
    """The value of the flag argv[i], given as "--flag=VALUE" or "--flag VALUE": returns (value,
    index of the last word used). on_missing(msg) is called (and must not return) when the value
    is missing."""
    a = argv[i]
    if a.startswith("-") and "=" in a:
        return a.split("=", 1)[1], i
    if i + 1 >= len(argv):
        on_missing("option %s needs a value" % a)
    return argv[i + 1], i + 1


# ---- options: the library is the one parser -----------------------------------------------------
class Options:
    """An options string as the library reads it (every option's resolved value, from the
    library's bsl_options_explain). values[key] is the last value as text (sizes in bytes),
    lists[key] every value of a repeatable option. bad: how many entries the library refused
    (it printed one line on stderr for each)."""

    def __init__(self, text, bad):
        self.values = {}
        self.lists = {}
        for line in text.splitlines():
            k, eq, v = line.partition("=")
            if not eq:
                continue
            self.values[k] = v
            self.lists.setdefault(k, []).append(v)
        self.bad = bad

    def get(self, key, default=""):
        return self.values.get(key, default)

    def on(self, key):
        """The option is set to something other than 0 or empty (a flag, a size, a path)."""
        return self.values.get(key, "") not in ("", "0")


class OptionsUnavailable(Exception):
    pass


def options_explain(lib, options):
    """Read `options` (a BUDDYSLAB_OPTIONS string) with the library at path `lib`: returns an
    Options. The library prints its one line per bad entry on our stderr, exactly as the program
    would print it at start. Loading the library does not make it our malloc (dlopen binds it
    locally) and bsl_options_explain does not initialise the allocator."""
    try:
        so = ctypes.CDLL(lib)
        fn = so.bsl_options_explain
    except (OSError, AttributeError) as e:
        raise OptionsUnavailable("%s: cannot read options with it (%s); is it an older build? rebuild it" % (lib, e))
    fn.argtypes = (ctypes.c_char_p, ctypes.c_int)
    fn.restype = ctypes.c_int
    r, w = os.pipe()
    try:
        sys.stderr.flush()
        # The output is a few kilobytes at most (one line per option; list values are bounded by
        # the library's 4 KiB buffer), well under a pipe's capacity: write all, then read.
        bad = fn((options or "").encode("utf-8", "surrogateescape"), w)
        os.close(w)
        w = -1
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        if w >= 0:
            os.close(w)
        os.close(r)
    if bad < 0:
        raise OptionsUnavailable("%s: bsl_options_explain failed" % lib)
    return Options(b"".join(chunks).decode("utf-8", "surrogateescape"), bad)

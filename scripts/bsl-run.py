#!/usr/bin/env python3
"""bsl-run.py: the supervisor behind `buddyslab run` (the launcher execs it; not meant to be run alone).

  bsl-run.py [--quiet] [--preload LIST] [--options STR] -- PROGRAM [ARGS...]

Starts PROGRAM with LD_PRELOAD=LIST and BUDDYSLAB_OPTIONS=STR (set for PROGRAM only: this
process itself runs without them), waits for it, then says on stderr where its reports went
(statistics, leak report, published statistics page) and exits with PROGRAM's status.

Signals: SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2 and SIGALRM sent to this process are
passed on to PROGRAM. A SIGINT, SIGQUIT or SIGHUP that the terminal sent to the whole foreground
process group already reached PROGRAM and is not sent a second time. When PROGRAM is killed by
signal N, the status is 128+N: for signals that do not dump core (SIGINT, SIGTERM, SIGKILL, ...)
this process then kills itself with the same signal, so that a calling shell also sees the
signal (and a shell loop stops on Ctrl-C); for the others it exits with 128+N.
"""
import os
import signal
import sys
import time

PROG = "buddyslab"
SI_KERNEL = 0x80  # si_code of a signal the kernel sent (the terminal's ^C, ^\, hangup)

FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGALRM]
TTY_SIGNALS = {signal.SIGHUP, signal.SIGINT, signal.SIGQUIT}
# Re-raised on ourselves after the program died of them: they neither dump core nor stop.
RERAISE = {signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGPIPE,
           signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2}


def say(msg):
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    sys.stderr.flush()


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return str(n)


def parse_options(s):
    """BUDDYSLAB_OPTIONS as the library reads it: comma-separated, last one wins, bare key = 1."""
    opts = {}
    for item in (s or "").split(","):
        if not item:
            continue
        k, eq, v = item.partition("=")
        opts[k] = v if eq else "1"
    return opts


def is_on(opts, key):
    v = opts.get(key, "0")
    return v not in ("", "0")


def signame(n):
    try:
        return signal.Signals(n).name
    except ValueError:
        return "signal %d" % n


def main(argv):
    quiet = False
    preload = None
    options = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            i += 1
            break
        if a == "--quiet":
            quiet = True
        elif a in ("--preload", "--options") and i + 1 < len(argv):
            if a == "--preload":
                preload = argv[i + 1]
            else:
                options = argv[i + 1]
            i += 1
        else:
            say("bsl-run.py: bad argument %r (this helper is started by `buddyslab run`)" % a)
            return 2
        i += 1
    cmd = argv[i:]
    if not cmd:
        say("bsl-run.py: no program given")
        return 2

    env = dict(os.environ)
    for k, v in (("LD_PRELOAD", preload), ("BUDDYSLAB_OPTIONS", options)):
        if v is None:
            continue
        if v:
            env[k] = v
        else:
            env.pop(k, None)
    opts = parse_options(env.get("BUDDYSLAB_OPTIONS", ""))

    # Block the signals we wait for before the program exists, so none is lost; the program
    # gets our original mask back, and default dispositions for what Python set to "ignore".
    waitset = set(FORWARDED) | {signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, waitset)
    start = time.time()
    try:
        pid = os.posix_spawnp(cmd[0], cmd, env, setsigmask=old_mask,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except FileNotFoundError:
        say("%s: command not found" % cmd[0])
        return 127
    except PermissionError:
        say("%s: permission denied (not executable?)" % cmd[0])
        return 126
    except OSError as e:
        say("%s: cannot start it: %s" % (cmd[0], e.strerror or e))
        return 126

    publish = is_on(opts, "publish")
    if publish and not quiet:
        say("%s is pid %d; watch it with: %s top %d" % (os.path.basename(cmd[0]), pid, PROG, pid))

    status = None
    while status is None:
        info = signal.sigtimedwait(waitset, 1.0)
        if info is not None and info.si_signo != signal.SIGCHLD:
            sig = info.si_signo
            from_tty = info.si_code == SI_KERNEL and sig in TTY_SIGNALS
            try:
                same_group = os.getpgid(pid) == os.getpgrp()
            except OSError:
                same_group = False
            if not (from_tty and same_group):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        try:
            wpid, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == pid:
            status = st
    if status is None:
        status = 0

    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        code = 128 + sig
    else:
        sig = 0
        code = os.WEXITSTATUS(status)

    # A program killed by a signal (or that left with _exit) did not remove its statistics page.
    shm = "/dev/shm/buddyslab.%d" % pid
    stale = False
    if publish and os.path.exists(shm):
        try:
            if os.stat(shm).st_uid == os.geteuid():
                os.unlink(shm)
                stale = True
        except OSError:
            pass

    if not quiet:
        summary(cmd[0], pid, sig, code, opts, publish, shm, stale, start)

    if sig:
        sys.stderr.flush()
        sys.stdout.flush()
        if sig in RERAISE:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)
        os._exit(code)
    return code


def summary(prog, pid, sig, code, opts, publish, shm, stale, start):
    name = os.path.basename(prog)
    lines = []
    stats = is_on(opts, "stats")
    leak = is_on(opts, "leak") or is_on(opts, "leak_sample")
    if sig:
        head = "%s (pid %d) was killed by signal %d (%s); exit status %d" % (name, pid, sig, signame(sig), code)
    else:
        head = "%s (pid %d) exited with status %d" % (name, pid, code)
        if code and opts.get("leak_exitcode") == str(code) and (is_on(opts, "leak") or is_on(opts, "leak_sample")):
            head += " (leak_exitcode: leaks were found)"
    oom = any(opts.get(k, "0") not in ("", "0") for k in ("soft_limit", "hard_limit")) or opts.get("budget")
    if not (stats or leak or publish or sig or oom):
        return
    lines.append(head)
    if stats:
        if sig:
            lines.append("  statistics: not printed (a signal ends the program before its exit handlers run)")
        else:
            lines.append("  statistics: printed on stderr above")
    if leak:
        report = opts.get("leak_report", "")
        if not report:
            if sig:
                lines.append("  leak report: not written (the program was killed before it could write one)")
            else:
                lines.append("  leak report: printed on stderr above (save it as JSON with --report FILE.json)")
        else:
            # The tracker replaces %p with the process id (one report per process of a tree).
            path = report.replace("%p", str(pid))
            path = path if os.path.isabs(path) else os.path.abspath(path)
            try:
                st = os.stat(path)
                fresh = st.st_mtime >= start - 1
            except OSError:
                st, fresh = None, False
            if fresh:
                line = "  leak report: %s (%s)" % (path, human(st.st_size))
                if path.endswith(".json"):
                    line += "; render it with: %s report %s [--format text|folded|svg]" % (PROG, path)
                lines.append(line)
            elif sig:
                lines.append("  leak report: %s not written (the program was killed before it could write it)" % path)
            else:
                lines.append("  leak report: %s was not written (see the library's messages above)" % path)
    if oom:
        path = opts.get("oom_report", "").replace("%p", str(pid))
        if not path:
            lines.append("  soft OOM reports: on stderr above, if a limit or budget was crossed")
        elif os.path.exists(path):
            lines.append("  soft OOM reports: %s (%s), JSON lines in %s.json" % (path, human(os.stat(path).st_size), path))
        else:
            lines.append("  soft OOM reports: none (no limit or budget was crossed)")
    if publish:
        lines.append("  live statistics: published in %s while it ran%s" % (
            shm, " (left behind when it ended; removed)" if stale else ""))
    for line in lines:
        say(line)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

/* The leak report's steps: lock the block map, scan, write, and the report at exit.
 *
 * Locking: report_lock serializes reports (taken outside the tracker's locks; the snapshot then
 * holds every block map shard while the scan runs). fork(): leak_fork_locks, outer phase. */
#include "leakcheck/leak_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

long opt_leak = 0, opt_leak_sample = 0, opt_leak_depth = 16, opt_leak_exitcode = 0, opt_leak_reachable = 0;
long opt_leak_report_parent = 0;
char opt_leak_report[256], opt_leak_suppressions[256];

/* ---- whose file leak_report is ----
 * Without '%p', every process of a tree that inherits the options would write the same file, the
 * last one overwriting the others (a shell's child after the launcher named the shell's report).
 * The file belongs to one process: the one that started tracking (its pid, below), and with
 * leak_report_parent set only if its parent then was that pid (the launcher's direct child: the
 * program it started, exec'd or not). Any other process, a forked child (another pid) or a program
 * exec'd further down (another parent), writes FILE.<pid>.ext: the pid before the extension. */
static long owner_pid;  /* the process that started tracking */
static int owner_ok;    /* it owns the file (leak_report_parent unset or its parent) */

static const char *report_path(const char *path, char *buf, size_t cap)
{
    if (!path || !*path || path != opt_leak_report || strstr(path, "%p"))
        return path; /* stderr, an explicit path (bsl_leak_report), or one per process already */
    if (owner_ok && os_getpid() == owner_pid)
        return path;
    size_t n = strlen(path);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path, *dot = strrchr(base, '.');
    size_t at = dot && dot > base ? (size_t)(dot - path) : n; /* before the extension, else at the end */
    if (n + 24 > cap)
        return path;
    memcpy(buf, path, at);
    size_t k = at + (size_t)os_snprintf(buf + at, cap - at, ".%ld", os_getpid());
    memcpy(buf + k, path + at, n - at + 1);
    return buf;
}

static os_lock_t report_lock = OS_LOCK_INIT(LOCK_RANK_LEAK_REPORT);

void leak_fork_locks(os_lock_visit_fn visit) { visit(&report_lock); }

void leak_start(void)
{
    int g = track_guard;
    track_guard = 1;
    leak_scan_init();
    owner_pid = os_getpid();
    owner_ok = !opt_leak_report_parent || os_getppid() == opt_leak_report_parent;
    leak_fatal_start();
    track_guard = g;
}

long leak_report(const char *path, int at_exit)
{
    if (!track_mode() || track_stopped())
        return -1;
    int g = track_guard;
    if (g) { /* exit() from a signal handler that interrupted the tracker: its locks may be ours */
        os_printf(2, "buddyslab: leak report skipped: the process exits from inside the leak tracker\n");
        return -1;
    }
    int saved = errno;
    track_guard = 1;
    os_lock(&report_lock);
    track_report_begin();
    size_t n = 0;
    struct track_block *b = track_blocks_lock_snapshot(&n);
    if (b)
        leak_scan(b, n);
    /* A lost block that another thread freed (or freed and got again) during the scan is not a
     * leak: under full tracking frees go on while the snapshot is scanned (track_block_unchanged). */
    for (size_t i = 0; b && i < n; i++)
        if ((b[i].state == LEAK_UNREACHED || b[i].state == LEAK_INDIRECT) && !track_block_unchanged(&b[i]))
            b[i].state = LEAK_FREED;
    track_blocks_unlock();
    /* Blocks freed by what the scan called (see track_deferred) are not the program's leaks. */
    uintptr_t freed[64];
    size_t nfreed = track_deferred(freed, 64);
    for (size_t d = 0; b && d < nfreed; d++)
        for (size_t i = 0; i < n; i++)
            if (b[i].start == freed[d])
                b[i].state = LEAK_FREED;
    track_drain_deferred();
    long lost = 0;
    char own[600];
    if (b) {
        lost = (long)leak_report_write(b, n, report_path(path, own, sizeof own), at_exit);
        track_free(b);
    } else {
        os_printf(2, "buddyslab: leak report: out of memory\n");
    }
    track_report_end();
    os_unlock(&report_lock);
    track_guard = g;
    errno = saved;
    return lost;
}

void leak_at_exit(void)
{
    if (!track_mode() || track_stopped() || !(opt_leak || opt_leak_sample))
        return; /* tracking only for the soft OOM policy: no leak report, and it goes on */
    if (os_getpid() != owner_pid && !track_tracked_since_fork()) {
        /* A forked child that tracked no block of its own (a shell's subshell, under sampling
         * nearly every short child): what it holds is the parent's heap, which the parent reports.
         * Writing a report here cost each child a heap scan and a file (bash: 1.5-4x). */
        track_stop();
        return;
    }
    long lost = leak_report(opt_leak_report, 1);
    track_stop();
    if (lost > 0 && opt_leak_exitcode) {
        fflush(NULL);
        os_exit_group((int)opt_leak_exitcode); /* not _exit: that is ours too (src/malloc/exit.c) */
    }
}

/* The leak report when the program does not exit normally: death by a signal (abort(), a fault,
 * kill) and _exit(). Valgrind's memcheck reports in both cases; LSan reports only at exit().
 *
 * Signals: leak_fatal_start catches the terminating signals that are at their default action when
 * tracking starts (a program that handles or ignores one keeps it; a handler the program installs
 * later replaces ours). The handler runs once (SA_RESETHAND), writes the report as at exit, then
 * dies of the same signal with its default action, so the parent sees the same status (core dump
 * included) as without the library. It is an async-signal context: the report takes the tracker's
 * locks and allocates from the tracker's own pages, which is safe only when this thread holds no
 * allocator lock and is not inside the tracker (a fault inside the allocator, abort() from a misuse
 * report under a lock): then it says so on stderr and writes nothing. Other threads go on running
 * and release what they hold. Not covered: a thread interrupted inside the dynamic loader or libdw
 * (the symbolizer would wait for their locks), SIGKILL, and a fault from stack overflow without an
 * alternate stack (the kernel cannot run any handler).
 *
 * _exit() and _Exit() (src/malloc/exit.c) call leak_at_fast_exit: a report only in the process
 * that started tracking. A fork() child's _exit is how a child leaves without running its parent's
 * cleanups (after an exec failure, a worker's end); a report there is noise, and a child forked by
 * a signal handler that interrupted malloc (glibc's tst-mallocfork2) hung in it. A vfork() child
 * runs in its parent's memory and must write nothing either (another pid). Fatal signals report in
 * fork children too: the pid for them is the one recorded at start or by the fork child handler
 * (vfork runs no fork handlers).
 *
 * The process that writes reports is track_proc.report_pid (0: none, tracking without a report),
 * beside what else a fork child writes of the tracker (track.h: one copied page in a child).
 *
 * Locking: none of its own; report_pid is written before any other thread of this process exists
 * (start: under the tracking start; fork child: one thread) and read after. */
#include "leakcheck/leak_int.h"

#include <errno.h>
#include <signal.h>

long opt_leak_fatal = 1;

static long start_pid;     /* the process that started tracking: the only one whose _exit reports */
static int fatal_reported; /* set by the first fatal signal's handler */

static const int fatal_signals[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGSYS, SIGTRAP,
                                    SIGQUIT, SIGTERM, SIGINT, SIGHUP, SIGPIPE};

static void on_fatal_signal(int sig)
{
    int saved = errno;
    if (!__atomic_exchange_n(&fatal_reported, 1, __ATOMIC_ACQ_REL) && os_getpid() == track_proc.report_pid) {
        if (os_lock_depth || track_guard) {
            os_printf(2, "buddyslab: %s inside the allocator: no leak report\n", os_signal_name(sig));
        } else {
            os_printf(2, "buddyslab: terminated by %s: leak report of the process as it was\n",
                      os_signal_name(sig));
            leak_report(opt_leak_report, 1);
            track_stop();
        }
    }
    os_die_by_signal(sig);
    errno = saved; /* a signal whose default action is to be ignored: the program goes on */
}

void leak_fatal_start(void)
{
    if (!(opt_leak || opt_leak_sample))
        return; /* tracking for the soft OOM policy alone: no report */
    track_proc.report_pid = start_pid = os_getpid();
    if (opt_leak_fatal)
        os_catch_default_signals(fatal_signals, (int)(sizeof(fatal_signals) / sizeof(fatal_signals[0])),
                                 on_fatal_signal);
}

BSL_RARE void leak_fork_child(void) /* with the rest of a fork child's path: see exit.c */
{
    if (track_proc.report_pid)
        track_proc.report_pid = os_getpid();
}

BSL_RARE void leak_at_fast_exit(void) /* with the rest of a fork child's path: see malloc/exit.c */
{
    if (start_pid && opt_leak_fatal && os_getpid() == start_pid && !os_lock_depth && !track_guard)
        leak_at_exit();
}

/* The leak report: which tracked blocks the program can no longer reach, at exit and on demand.
 * A consumer of the tracking layer (src/track/track.h): it snapshots the block map, scans the
 * process conservatively (scan.c) and writes the report (report.c). See docs/DESIGN.md, "Leak
 * tracker", and docs/LEAKS.md. It knows nothing of the soft OOM policy. */
#ifndef BSL_LEAKCHECK_H
#define BSL_LEAKCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "track/track.h"

/* Its options (the table in src/malloc/options.c points at them). */
BSL_HIDDEN extern long opt_leak, opt_leak_sample, opt_leak_depth, opt_leak_exitcode, opt_leak_reachable, opt_leak_fatal;
BSL_HIDDEN extern long opt_leak_report_parent;
BSL_HIDDEN extern char opt_leak_report[256], opt_leak_suppressions[256];

/* After tracking started (track_start), outside every lock: what the scan needs from the dynamic
 * loader. */
BSL_HIDDEN void leak_start(void);
/* Classify and report to path ("" or NULL: stderr; *.json: JSON). Returns the unsuppressed
 * definitely lost blocks, or -1 when tracking is off or stopped. */
BSL_HIDDEN long leak_report(const char *path, int at_exit);
/* At normal process exit (the library destructor): write the report when options leak or
 * leak_sample ask for one (tracking for the soft OOM policy alone writes none and goes on). */
BSL_HIDDEN void leak_at_exit(void);
/* The report when the program dies (fatal.c): after tracking started, catch the terminating
 * signals still at their default action (option leak_fatal); from _exit()/_Exit(): the report at
 * exit, in the process that started tracking or a fork() child of it, never in a vfork() child. */
BSL_HIDDEN void leak_fatal_start(void);
BSL_HIDDEN void leak_at_fast_exit(void);
/* fork(), in the child: it writes its own reports now. */
BSL_HIDDEN void leak_fork_child(void);
/* fork(): the report lock (outer phase: a report symbolizes, and libdw uses stdio). */
BSL_HIDDEN void leak_fork_locks(os_lock_visit_fn visit);

#endif

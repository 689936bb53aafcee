/* The leak report's internals shared by its files (leak.c: the report's steps; scan.c: the
 * conservative scan; report.c: records, suppressions, output). Memory comes from track_alloc
 * between track_report_begin and _end (listed as scratch: the heap walk skips it). */
#ifndef BSL_LEAK_INT_H
#define BSL_LEAK_INT_H

#include "leakcheck/leakcheck.h"

/* What the scan finds of a tracked block (struct track_block's state). */
enum { LEAK_UNREACHED = 0, LEAK_REACHABLE = 1, LEAK_INDIRECT = 2, LEAK_FREED = 3 /* freed during the report */ };

/* ---- the scan (scan.c) ---- */
/* Once at start (outside any lock): what the scan needs from the dynamic loader. */
BSL_HIDDEN void leak_scan_init(void);
/* Classify every tracked block. Call with the map locked (track_blocks_lock_snapshot). */
BSL_HIDDEN void leak_scan(struct track_block *blocks, size_t n);

/* ---- the report (report.c) ---- */
/* Write the report of the classified blocks to path ("" or NULL: stderr; *.json: JSON). Returns
 * the number of definitely lost blocks that are not suppressed. */
BSL_HIDDEN size_t leak_report_write(const struct track_block *blocks, size_t n, const char *path, int at_exit);

#endif

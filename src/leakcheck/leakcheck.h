/* Leak tracker: the hooks layer's view of it (see docs/DESIGN.md, "Hooks").
 *
 * The public API calls these only while bsl_hooks_on is set, so with tracking off they cost one
 * predictable branch per call. They may allocate only through bsl_raw_malloc/bsl_raw_free (the
 * allocator's own pages, no hooks), and must guard against re-entry (an unwinder or symbolizer
 * calling the public malloc from inside a hook). */
#ifndef BSL_LEAKCHECK_H
#define BSL_LEAKCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

/* Called once after the allocator is initialised, outside every allocator lock, when option leak
 * or leak_sample is set or the soft OOM policy needs sites (or later, by the first budget set from
 * code). Returns 1 when the hooks must be called from now on, 0 otherwise. */
BSL_HIDDEN int leak_init(void);
/* An allocation of `size` bytes is about to be made: decide whether it is tracked (sampling), and
 * if so capture its site and ask the soft OOM policy. Returns a ticket for leak_after_alloc: 0 (not
 * tracked), LEAK_REFUSE (the policy refuses it: fail with ENOMEM), or the site. */
#define LEAK_REFUSE UINT64_MAX
BSL_HIDDEN uint64_t leak_before_alloc(size_t size);
/* The allocation succeeded: the block at p enters the tracker (ticket from leak_before_alloc). */
BSL_HIDDEN void leak_after_alloc(void *p, size_t size, uint64_t ticket);
/* Both halves, for a block already handed out (the policy is asked but cannot refuse it). */
BSL_HIDDEN void leak_on_alloc(void *p, size_t size);
/* The block at p (p != NULL, maybe never tracked) is about to be given back. */
BSL_HIDDEN void leak_on_free(void *p);
/* 0: no tracking, 1: every allocation, 2: sampled. */
BSL_HIDDEN int leak_tracking_mode(void);
/* At normal process exit (the library destructor): write the report when configured. */
BSL_HIDDEN void leak_at_exit(void);

#endif

/* Reclaim: give back to the OS everything the allocator holds that no block uses. One path for
 * malloc_trim / bsl_purge (src/malloc/malloc.c) and the soft OOM policy's direct reclaim
 * (src/oom/policy.c). */
#ifndef BSL_RECLAIM_H
#define BSL_RECLAIM_H

#include <stddef.h>

#include "os/os.h"

/* In this order: the debug quarantine (when quarantine_free is given and the debug hooks are on:
 * every block leaving it is checked, misuse reported as `func`, then freed with quarantine_free),
 * cached huge mappings, every per-CPU cache (rseq mode; else the caller's), the transfer caches,
 * the spare slabs, and finally every free dirty buddy frame (purged: it reads as zero afterwards).
 * Each step feeds the next: objects go back to slabs, empty slabs to the buddy allocator, whose
 * coalesced free blocks are purged. Returns the bytes the last step purged. Takes no lock itself;
 * the caller may hold the OOM policy's (lock order, os/lock_rank.h). Debug builds (BSL_DEBUG >= 2)
 * check the buddy and slab structures afterwards. */
BSL_HIDDEN size_t bsl_reclaim(void (*quarantine_free)(void *), const char *func);

#endif

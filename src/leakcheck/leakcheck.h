/* Leak tracker: the hooks layer's view of it (see docs/DESIGN.md, "Hooks").
 *
 * The public API calls these only while bsl_hooks_on is set, so with tracking off they cost one
 * predictable branch per call. They may allocate only through bsl_raw_malloc/bsl_raw_free (the
 * allocator's own pages, no hooks), and must guard against re-entry (an unwinder or symbolizer
 * calling the public malloc from inside a hook). */
#ifndef BSL_LEAKCHECK_H
#define BSL_LEAKCHECK_H

#include <stddef.h>

#include "os/os.h"

/* Called once after the allocator is initialised, outside every allocator lock, when option leak
 * or leak_sample is set. Returns 1 when the hooks must be called from now on, 0 otherwise. */
BSL_HIDDEN int leak_init(void);
/* A block of `size` requested bytes was handed out at p (p != NULL). */
BSL_HIDDEN void leak_on_alloc(void *p, size_t size);
/* The block at p (p != NULL, maybe never tracked) is about to be given back. */
BSL_HIDDEN void leak_on_free(void *p);
/* At normal process exit (the library destructor): write the report when configured. */
BSL_HIDDEN void leak_at_exit(void);

#endif

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

#include "oom/oom.h"
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
/* ---- the sampled fast path, inlined into the public entry points ----
 * With leak_sample (or the soft OOM policy's sampling) nearly every call is not sampled. Deciding
 * that inline, before the generic hooked path (init check, debug features, Valgrind quieting),
 * keeps sampled tracking close to the untracked cost. leakcheck.c owns this state. */
BSL_HIDDEN extern uint64_t lk_sample_bytes; /* 0: full tracking */
BSL_HIDDEN extern int lk_force;             /* sampling suspended (the soft OOM policy enforcing) */
BSL_HIDDEN extern __thread int64_t lk_countdown; /* bytes until this thread's next sampled allocation */
/* A counter per hash bucket of 4 KiB pages holding sampled blocks alive, so that free() of an
 * unsampled block (nearly all of them) is a multiply and a load, without a lock. Hashing the page,
 * not the block, keeps neighbouring frees on the same cache line of the filter. */
#define LK_FILTER_BITS 16
BSL_HIDDEN extern uint16_t lk_filter[1u << LK_FILTER_BITS];
static inline uint16_t *lk_filter_of(uintptr_t p)
{
    return &lk_filter[((p >> 12) * 0x9E3779B97F4A7C15ull) >> (64 - LK_FILTER_BITS)];
}
/* 1: an allocation of n bytes is not sampled (its bytes are taken off the countdown): the caller
 * may skip the hooks. 0: leak_before_alloc decides (full tracking, a large block, the countdown
 * running out, or sampling suspended). */
static inline int leak_unsampled_alloc(size_t n)
{
    if (!lk_sample_bytes || n >= lk_sample_bytes || __atomic_load_n(&lk_force, __ATOMIC_RELAXED) ||
        oom_force_here())
        return 0;
    int64_t c = lk_countdown - (int64_t)n;
    if (unlikely(c <= 0))
        return 0;
    lk_countdown = c;
    return 1;
}
/* 1: the block at p cannot be a tracked one (sampled mode, no sampled block alive on its page). */
static inline int leak_untracked_free(const void *p)
{
    return lk_sample_bytes && !__atomic_load_n(lk_filter_of((uintptr_t)p), __ATOMIC_RELAXED);
}

/* 0: no tracking, 1: every allocation, 2: sampled. */
BSL_HIDDEN int leak_tracking_mode(void);
/* At normal process exit (the library destructor): write the report when configured. */
BSL_HIDDEN void leak_at_exit(void);
/* fork(): src/malloc/fork.c's table calls these (the locks and prepare only when the process has
 * threads): the outer locks (report, resize, site, symbols), then the block map shards, the thread
 * registry and liburcu's locks. */
BSL_HIDDEN void leak_fork_locks(os_lock_visit_fn visit);
BSL_HIDDEN void leak_fork_prepare(int careful);
BSL_HIDDEN void leak_fork_parent(void);
BSL_HIDDEN void leak_fork_child(void);

#endif

/* The hook dispatch: the one place where the public API calls into the tracking layer
 * (src/track/) on malloc and free, and where its two consumers meet: the soft OOM policy's tag
 * labels a new site and its enforcement suspends sampling for the thread (oom_force_here); the
 * leak report needs nothing per call. malloc.c calls these only while HOOK_LEAK is set in
 * bsl_hooks_on, so with tracking off they cost one predictable branch. */
#ifndef BSL_MALLOC_HOOKS_H
#define BSL_MALLOC_HOOKS_H

#include "malloc/debug.h"
#include "malloc/internal.h"
#include "oom/oom.h"
#include "track/track.h"

/* An allocation of n bytes is about to be made: a ticket for hook_after_alloc, or HOOK_REFUSE (the
 * soft OOM policy refuses it: fail with ENOMEM). */
#define HOOK_REFUSE TRACK_REFUSE
static inline uint64_t hook_before_alloc(size_t n) { return track_before_alloc(n, oom_tag, oom_force_here()); }
/* The allocation succeeded: the block at p enters the tracker. */
static inline void hook_after_alloc(void *p, size_t n, uint64_t ticket) { track_after_alloc(p, n, ticket); }
/* Both halves, for a block already handed out (the policy is asked but cannot refuse it). */
static inline void hook_on_alloc(void *p, size_t n) { track_after_alloc(p, n, hook_before_alloc(n)); }
/* The block at p (p != NULL, maybe never tracked) is about to be given back. With sampling, only
 * blocks the allocator's frame marks say may be tracked are looked up (bsl_maybe_tracked). */
static inline void hook_on_free(void *p)
{
    if ((bsl_hooks_on & HOOK_FULL) || bsl_maybe_tracked(p))
        track_on_free(p);
}

/* The sampled fast path, inlined into malloc: 1 when the call may skip the hooks (an allocation
 * that is not sampled). While a tag's budget is enforced exactly the policy holds this path off
 * (track_lean_hold_add), so that hook_before_alloc sees the thread's tag: the test costs no load of
 * the tag here. Frees need no such test: the untracked path's free_slow asks for blocks in marked
 * frames. */
static inline int hook_unsampled_alloc(size_t n) { return track_unsampled_alloc(n); }

/* At init (inside the init lock; does not allocate): the tracker allocates through bsl_raw_*. */
BSL_HIDDEN void hooks_init(void);
/* Start site tracking (leak/leak_sample set, or the soft OOM policy needs sites): full for leak=1,
 * else sampled per leak_sample or oom_sample. Outside every allocator lock. Returns the bits to set
 * in bsl_hooks_on: HOOK_LEAK (sampled), HOOK_LEAK | HOOK_FULL (every block), or 0 (unavailable). */
BSL_HIDDEN unsigned hooks_start_tracking(void);

#endif

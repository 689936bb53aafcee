/* The lock order of the whole library: one rank per os_lock_t, outermost first. This table is the
 * lock-order documentation; each lock's declaration says what it protects.
 *
 * The rule: a thread takes a lock (os_lock, which waits) only when every lock it holds has a lower
 * rank. No two locks of one rank are ever held at once (slab never holds two kmem_cache locks,
 * buddy never two shard locks), with one exception: fork()'s prepare handler takes every lock, in
 * this order, rank by rank (src/malloc/fork.c: its table follows this one, and debug builds check
 * on every fork that it visits the ranks in order). os_trylock never waits, so it may take a lock
 * of any rank; the lock then counts as held like any other. Debug builds (BSL_DEBUG >= 1, see
 * os/check.h) check the rule on every os_lock and report a violation naming both locks.
 *
 * Why each lock sits where it does (outermost first): */
#ifndef BSL_LOCK_RANK_H
#define BSL_LOCK_RANK_H

/* X(name, what): the rank LOCK_RANK_<name>; `what` names the lock in the debug check's messages. */
#define BSL_LOCK_RANKS(X)                                                                                   \
    /* bsl_tracking_lock (malloc/oom_api.c): held while the leak tracker starts, which allocates, sets */   \
    /* up the site table and takes the tracker's locks: everything else nests inside it. */                \
    X(TRACKING_START, "bsl_tracking_lock (tracking start)")                                                 \
    /* init_lock (malloc/init.c): first-use initialisation; it sets up every layer below. */                \
    X(INIT, "init_lock (first-use initialisation)")                                                         \
    /* oom_policy_lock (oom/policy.c): an OOM evaluation reclaims (every allocator lock from the tick */    \
    /* down), runs the program's handler (which allocates) and reports (tracker and symbol locks). */      \
    X(OOM_POLICY, "oom_policy_lock (soft OOM evaluation)")                                                  \
    /* oom_acct_lock (oom/budget.c): budget accounts; a site's account is resolved by symbolizing it, */   \
    /* under this lock (so before LEAK_SYMS). */                                                           \
    X(OOM_ACCT, "oom_acct_lock (OOM budget accounts)")                                                      \
    /* The leak tracker's locks (src/leakcheck, reserved here; the block map shards are lk_lock_t, not */  \
    /* ranked). Report first (it walks everything), then the site table's resize and creation, the */      \
    /* symbolizer, the thread registry. Their holders allocate (bsl_raw_malloc): allocator ranks follow. */ \
    X(LEAK_REPORT, "leak report_lock")                                                                      \
    X(LEAK_RESIZE, "leak resize_lock (site table resize)")                                                  \
    X(LEAK_SITE, "leak site_lock (site creation)")                                                          \
    X(LEAK_SYMS, "leak lk_sym_lock (symbolizer)")                                                           \
    X(LEAK_THREADS, "leak treg_lock (thread registry)")                                                     \
    /* q_lock (malloc/debug.c): the quarantine; blocks leaving it are freed after it is released, but */   \
    /* it sits above the allocator so that a flush under it could free. */                                \
    X(QUARANTINE, "q_lock (debug quarantine)")                                                              \
    /* tick_lock (malloc/decay.c, trylock only): held while the tick drains caches, shrinks slabs, */      \
    /* purges buddy blocks and huge mappings: above every lock that work takes. */                         \
    X(TICK, "tick_lock (decay tick)")                                                                       \
    /* drain_lock (slab/pcp.c): serialises drainers of other CPUs' caches; a drain frees to the slabs. */  \
    X(PCP_DRAIN, "drain_lock (per-CPU cache drain)")                                                        \
    /* pcp_lock (slab/pcp.c): cache creation and free slot arrays; a new slot array is meta_alloc'd. */    \
    X(PCP, "pcp_lock (per-CPU cache set-up)")                                                               \
    /* kmem_cache lock (slab/slab.h): one class's slabs; new slabs come from the buddy (taken after */     \
    /* dropping it today, but the order allows taking a shard under it). */                                \
    X(SLAB, "kmem_cache lock")                                                                              \
    /* recs_lock (slab/recs.c): free lists of the tracker's record arrays; nothing is called under it */  \
    /* (taken by release_slab with no kmem_cache lock held, and from the tracker's hooks). */              \
    X(RECS, "recs_lock (block record arrays)")                                                              \
    /* buddy shard lock (buddy/buddy.h): free lists of one shard; a purge under it accounts in the zone. */ \
    X(BUDDY, "buddy shard lock")                                                                            \
    /* zone->lock (zones/zones.h): a zone's counters only. */                                              \
    X(ZONE, "zone lock")                                                                                    \
    /* huge_lock (zones/huge.c): huge mappings, live list and cache; never held while mapping. */          \
    X(HUGE, "huge_lock (huge mappings)")                                                                    \
    /* pagemap_lock (zones/zones.c): pagemap writes; a new leaf is meta_alloc'd under it. */               \
    X(PAGEMAP, "pagemap_lock")                                                                              \
    /* meta_lock (zones/zones.c): the metadata bump allocator; innermost, it only calls mmap. */           \
    X(META, "meta_lock (metadata)")

enum lock_rank {
    LOCK_RANK_NONE, /* 0: a lock nobody gave a rank (the debug check reports it when taken) */
#define BSL_LOCK_RANK_ENUM(name, what) LOCK_RANK_##name,
    BSL_LOCK_RANKS(BSL_LOCK_RANK_ENUM)
#undef BSL_LOCK_RANK_ENUM
    LOCK_RANK_NR
};

#endif

/* Buddy allocator: power-of-two blocks of page frames, split and coalesced, per shard.
 *
 * Each arena belongs to exactly one shard, so a block is always freed to the shard that owns its
 * address and coalescing never crosses a lock. A request tries the caller's CPU's shard, then
 * steals from the other shards of the zone, then grows the zone by an arena, then falls back
 * along the zonelist (NORMAL -> LOW32). Requests are exact: a block of 2^order frames is split
 * down and its unused tail goes straight back to the free lists (the kernel's alloc_pages_exact).
 *
 * Anti-fragmentation (the kernel's grouping of pageblocks by mobility): every MAX_ORDER block of
 * an arena (4 MiB, a *pageblock*) serves one kind of request, slabs (PB_SLAB) or large blocks
 * (PB_LARGE), fixed when the pageblock is first split and forgotten when it coalesces whole again.
 * Free blocks below MAX_ORDER sit on the list of their pageblock's kind, whole free pageblocks on
 * one shared list. A request takes, in this order: a block of its own kind, a whole free pageblock,
 * never-used arena space, and only then a block of the other kind (stealing the largest one, and
 * the pageblock with it when that block is at least half of it). So a long-lived slab does not land
 * in the hole a large block left and pin it, and large blocks freed next to each other coalesce.
 *
 * Free frames are dirty (may be resident) or clean (purged or never touched), frame by frame: the
 * arena's dirty_bits, with each free block's head counting its own (ndirty; PG_DIRTY when > 0).
 * Blocks with dirty frames sit on the shard's dirty list, oldest first, and at the head of their
 * free list (clean ones at the tail), so resident frames are reused first. A merged block is
 * stamped with its oldest dirty part's free time, split pieces keep their block's (a busy
 * split-and-merge never makes idle frames young again). The dirty-memory policy
 * (purge.c):
 *  - growth is RSS-neutral beyond a reserve: a request handed clean frames while the zone holds
 *    more dirty frames than its reserve (a quarter of its frames in use, at most
 *    BUDDY_DIRTY_FLOOR) purges as many dirty frames, oldest first (in its shard, then the zone's
 *    others). Free frames that could not serve the request that needed new ones are resident for
 *    nothing: give them back. So frames in use plus free dirty frames grow past the peak of the
 *    frames in use by the reserve at most. The reserve follows refaults: once rule 1 has purged
 *    as many frames as the zone has in use, growth is faulting back what it purged (big blocks
 *    freed and asked for again, mstress), and the reserve doubles, up to the frames in use; a
 *    tick that saw little of it halves it again (buddy_relax_reserve);
 *  - frames free longer than decay_ms are purged (the tick and buddy_free check);
 *  - a free keeps the shard's free dirty frames within twice its recent peak of frames in use, and
 *    the tick within an eighth of it (both with a floor); the peak follows the live heap down by
 *    a quarter per tick, so memory freed for reuse stays and memory freed for good goes within
 *    a few ticks; the zone's high watermark (a share of the machine's memory) purges at once;
 *  - buddy_purge(0) (malloc_trim) purges everything.
 * A clean block reads as zeros, which calloc exploits. */
#ifndef BSL_BUDDY_H
#define BSL_BUDDY_H

#include "zones/zones.h"

#define BUDDY_MAX_SHARDS 16

/* Pageblock kinds: what a pageblock's blocks are handed out for. */
enum pb_type { PB_SLAB = 0, PB_LARGE = 1, PB_NR = 2 };

/* The free blocks of one order: one list per pageblock kind (order MAX_ORDER: list 0 only, whole
 * pageblocks have no kind), dirty blocks at the head, clean ones at the tail. A free block's head
 * descriptor keeps the list it is on in `size_class` (unused while PG_BUDDY). */
struct free_area {
    struct page *head[PB_NR], *tail[PB_NR]; /* doubly linked through page.next/prev */
    size_t nr_free;                         /* blocks on the lists, every kind */
};

/* Locking: lock protects every field, the buddy state of every frame of the shard's arenas, each
 * of its arenas' `fresh` and `pb_type`. Its rank (LOCK_RANK_BUDDY, os/lock_rank.h)
 * is below the kmem_caches' and above the zones'; never two shard locks at once. The `_locked`
 * functions assert it (bsl_assert_locked). */
struct buddy_shard {
    os_lock_t lock;
    uint8_t zone, id;
    struct free_area free_area[MAX_ORDER + 1];
    struct page *dirty_head, *dirty_tail; /* free dirty blocks, oldest first */
    struct arena *arenas;                 /* arenas owned by this shard (newest first) */
    size_t nr_free_pages;                 /* frames in free blocks (dirty + clean) */
    size_t nr_dirty_pages;                /* frames in free dirty blocks */
    size_t nr_pages;                      /* frames in owned arenas handed to the buddy */
    uint64_t last_decay_ms;
    uint64_t nr_alloc, nr_free_calls, nr_steal, purged_pages;
    uint64_t nr_fallback;                 /* requests served from the other kind's pageblocks */
    uint64_t offset_pages;                /* dirty frames purged to offset clean growth */
    /* The recent peak of frames in use: raised to the frames in use before every free, lowered by
     * a quarter toward them at each tick (buddy_trim_to_live). The live-heap bounds follow it, not
     * the frames in use of the moment: a program whose heap empties and refills (a request loop, a
     * batch of objects freed and made again) keeps the frames it will reuse, and one whose heap
     * shrank for good gives them back within a few ticks. */
    size_t peak_used;
} __attribute__((aligned(64)));

/* buddy_shards[shard][zone]: the shards in use (buddy_nr_shards) of every zone share pages. */
BSL_HIDDEN extern struct buddy_shard buddy_shards[BUDDY_MAX_SHARDS][NR_ZONES];
BSL_HIDDEN extern unsigned buddy_nr_shards;
BSL_HIDDEN extern long buddy_decay_ms; /* option decay_ms; -1: never purge on a timer */

BSL_HIDDEN void buddy_init(unsigned nr_shards);

/* Allocate exactly `npages` frames from `zone` (or its fallbacks), aligned to 2^min_order frames.
 * Returns the head frame (arena and zone set, flags 0: the caller marks it), or NULL.
 * *zeroed: 1 when every frame of the block is known to read as zero. */
BSL_HIDDEN struct page *buddy_alloc_type(int zone, size_t npages, unsigned min_order, unsigned cpu, unsigned type,
                                         int *zeroed);
/* A large block (PB_LARGE pageblocks). */
static inline struct page *buddy_alloc(int zone, size_t npages, unsigned min_order, unsigned cpu, int *zeroed)
{
    return buddy_alloc_type(zone, npages, min_order, cpu, PB_LARGE, zeroed);
}
/* Whether zone (or its fallbacks) holds a free block of at least `order` (racy reads: a hint, for
 * the OOM policy's retry after a reclaim that coalesced free blocks). */
BSL_HIDDEN int buddy_can_serve(int zone, unsigned order);
/* Give back the `npages` frames starting at `head` (they become dirty). */
BSL_HIDDEN void buddy_free(struct page *head, size_t npages);
/* Grow a block in place to new_n frames when the frames after it are free: 1 on success. */
BSL_HIDDEN int buddy_extend(struct page *head, size_t old_n, size_t new_n);
/* Shrink a block in place: frames [new_n, old_n) go back to the free lists. */
BSL_HIDDEN void buddy_shrink(struct page *head, size_t old_n, size_t new_n);
/* Purge dirty blocks free since before now - age_ms (age 0: all). Returns bytes purged. */
BSL_HIDDEN size_t buddy_purge(uint64_t age_ms);
/* The tick: lower each shard's recent peak of frames in use (peak_used) a quarter of the way to the
 * frames in use, and purge its oldest dirty blocks down to its share of that peak (free dirty
 * frames at most 1/BUDDY_DIRTY_LIVE_DIV of it, with a floor of BUDDY_DIRTY_FLOOR per zone).
 * Returns bytes purged. */
BSL_HIDDEN size_t buddy_trim_to_live(void);
#define BUDDY_DIRTY_LIVE_DIV 8
/* Rule 1's reserve: dirty frames up to used >> shift (at most the floor), the shift between these
 * (used/4 while growth is not refaulting what it purges, up to used/1 while it is). */
#define BUDDY_RESERVE_SHIFT_MAX 2
#define BUDDY_RESERVE_SHIFT_MIN 0
/* The tick: a zone whose rule-1 purges since the last tick were under a quarter of its frames in
 * use steps its reserve back toward used >> BUDDY_RESERVE_SHIFT_MAX. */
BSL_HIDDEN void buddy_relax_reserve(void);
/* The zone's reserve shift now (stats, tests). */
BSL_HIDDEN unsigned buddy_reserve_shift(int zone);
#define BUDDY_DIRTY_FLOOR (((size_t)8 << 20) >> PAGE_SHIFT)
/* Frames that may be resident (in use, or free and dirty) in every shard, in bytes: read without
 * the locks (for the soft OOM limits: a moment stale at worst). */
BSL_HIDDEN size_t buddy_committed_bytes(void);
/* Verify the free lists, dirty lists and counters of every shard; returns 0 or prints what is
 * wrong and returns -1. Walks every frame: for tests and debugging. */
BSL_HIDDEN int buddy_check(void);

/* fork(): every shard lock, for src/malloc/fork.c's table. */
BSL_HIDDEN void buddy_fork_locks(os_lock_visit_fn visit);

static inline unsigned order_for_pages(size_t npages)
{
    return npages <= 1 ? 0 : (unsigned)(64 - __builtin_clzl(npages - 1));
}

#endif

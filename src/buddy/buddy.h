/* Buddy allocator: power-of-two blocks of page frames, split and coalesced, per shard.
 *
 * Each arena belongs to exactly one shard, so a block is always freed to the shard that owns its
 * address and coalescing never crosses a lock. A request tries the caller's CPU's shard, then
 * steals from the other shards of the zone, then grows the zone by an arena, then falls back
 * along the zonelist (NORMAL -> LOW32). Requests are exact: a block of 2^order frames is split
 * down and its unused tail goes straight back to the free lists (the kernel's alloc_pages_exact).
 *
 * Free blocks are dirty (their frames may be resident) or clean (purged or never touched). Dirty
 * blocks sit on the shard's dirty list, oldest first; they are purged (madvise) once they have been
 * free for decay_ms, when the shard holds more dirty frames than its zone's high watermark, and
 * by buddy_purge(). A clean block reads as zeros, which calloc exploits. */
#ifndef BSL_BUDDY_H
#define BSL_BUDDY_H

#include "zones/zones.h"

#define BUDDY_MAX_SHARDS 16

struct free_area {
    struct page *head; /* doubly linked through page.next/prev, NULL terminated */
    size_t nr_free;    /* blocks on the list */
};

/* Locking: lock protects every field, the buddy state of every frame of the shard's arenas, and
 * each of its arenas' `fresh`. Lock order: kmem_cache lock -> shard lock -> zone lock. */
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
} __attribute__((aligned(64)));

BSL_HIDDEN extern struct buddy_shard buddy_shards[NR_ZONES][BUDDY_MAX_SHARDS];
BSL_HIDDEN extern unsigned buddy_nr_shards;
BSL_HIDDEN extern long buddy_decay_ms; /* option decay_ms; -1: never purge on a timer */

BSL_HIDDEN void buddy_init(unsigned nr_shards);

/* Allocate exactly `npages` frames from `zone` (or its fallbacks), aligned to 2^min_order frames.
 * Returns the head frame (arena and zone set, flags 0: the caller marks it), or NULL.
 * *zeroed: 1 when every frame of the block is known to read as zero. */
BSL_HIDDEN struct page *buddy_alloc(int zone, size_t npages, unsigned min_order, unsigned cpu, int *zeroed);
/* Give back the `npages` frames starting at `head` (they become dirty). */
BSL_HIDDEN void buddy_free(struct page *head, size_t npages);
/* Grow a block in place to new_n frames when the frames after it are free: 1 on success. */
BSL_HIDDEN int buddy_extend(struct page *head, size_t old_n, size_t new_n);
/* Shrink a block in place: frames [new_n, old_n) go back to the free lists. */
BSL_HIDDEN void buddy_shrink(struct page *head, size_t old_n, size_t new_n);
/* Purge dirty blocks free since before now - age_ms (age 0: all). Returns bytes purged. */
BSL_HIDDEN size_t buddy_purge(uint64_t age_ms);
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

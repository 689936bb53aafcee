/* The buddy allocator's dirty-memory policy (see buddy.h): which free frames stay resident.
 *
 * Four rules, all purging the oldest dirty blocks first (the dirty list is sorted by free time):
 *  1. RSS-neutral growth (offset_growth in buddy.c calls purge_oldest_locked): clean frames handed
 *     out (counted exactly, from the arena's dirty bits) while the zone holds more dirty frames
 *     than its reserve (used >> the zone's reserve shift, at most BUDDY_DIRTY_FLOOR; buddy.c's
 *     reserve[]: a quarter, up to all of it while growth refaults what it purged) are paid for by
 *     purging as many dirty frames, down to the reserve;
 *  2. decay: blocks free longer than decay_ms are purged (checked on buddy_free at most every
 *     decay_ms / 8, and by the tick);
 *  3. the live heap: on a free, a shard keeps at most twice as many dirty frames as its recent
 *     peak of frames in use (peak_used; at least its share of BUDDY_DIRTY_FLOOR); at each tick,
 *     at most 1/BUDDY_DIRTY_LIVE_DIV of that peak, which the tick lowers a quarter of the way to
 *     the frames in use (idle memory goes back while the program runs on). The bound followed the
 *     frames in use of the moment until the peak replaced it: a loop that fills 6 MiB of 64-byte
 *     objects and frees them all purged and faulted back the whole batch every round, 18 ms a
 *     round against glibc's and jemalloc's 1.7;
 *  4. the zone's high watermark (a share of the machine's memory, or of the soft OOM limit):
 *     above it, purge down to the low watermark at once.
 * Every function here runs under the shard's lock except the public ones, which take it. */
#include "buddy/buddy_int.h"

/* The metadata of a free block's frames other than its head (their descriptors and slab bitmaps)
 * holds nothing while the block is free: every field is written again before a frame is used (a
 * descriptor read after a purge is all zero, which is what a tail frame holds). Give back the whole
 * pages of it: after a 1 GiB peak this is most of what stays resident. */
static void purge_block_meta(struct page *pg)
{
    size_t n = (size_t)1 << pg->order;
    uintptr_t d0 = ((uintptr_t)(pg + 1) + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
    uintptr_t d1 = (uintptr_t)(pg + n) & ~(uintptr_t)(PAGE_SIZE - 1);
    if (d1 > d0)
        os_purge((void *)d0, d1 - d0);
    uintptr_t b0 = ((uintptr_t)slab_bitmap(pg) + PAGE_SIZE - 1) & ~(uintptr_t)(PAGE_SIZE - 1);
    uintptr_t b1 = (uintptr_t)(slab_bitmap(pg) + n * (SLAB_BITMAP_BYTES / 8)) & ~(uintptr_t)(PAGE_SIZE - 1);
    if (b1 > b0)
        os_purge((void *)b0, b1 - b0);
}

void purge_block_locked(struct buddy_shard *sh, struct page *pg)
{
    bsl_assert_locked(&sh->lock);
    os_purge(page_address(pg), (size_t)PAGE_SIZE << pg->order);
    if (pg->order >= 6)
        purge_block_meta(pg);
    dirty_del_locked(sh, pg);
    sh->purged_pages += pg->ndirty; /* what was resident, at most (the clean part was already purged) */
    dbits_assign(pg->arena, page_to_pfn(pg->arena, pg), (size_t)1 << pg->order, 0);
    pg->ndirty = 0;
    pg->flags &= (uint8_t)~PG_DIRTY;
    unsigned list = pg->size_class; /* clean now: to the tail of its list */
    area_del_locked(sh, pg);
    area_add_locked(sh, pg, list, 0);
}

size_t purge_oldest_locked(struct buddy_shard *sh, size_t need)
{
    bsl_assert_locked(&sh->lock);
    size_t before = sh->purged_pages;
    struct page *pg;
    while (sh->purged_pages - before < need && (pg = sh->dirty_head) != NULL)
        purge_block_locked(sh, pg);
    size_t got = sh->purged_pages - before;
    sh->offset_pages += got;
    return got;
}

/* Purge blocks freed at or before `cutoff`, and, above the high watermark, the oldest blocks
 * until the shard is back under its low watermark. */
static size_t decay_locked(struct buddy_shard *sh, uint64_t cutoff, int all)
{
    bsl_assert_locked(&sh->lock);
    size_t before = sh->purged_pages;
    struct zone *z = &zones[sh->zone];
    size_t high = z->wmark_high / buddy_nr_shards, low = z->wmark_low / buddy_nr_shards;
    int over = sh->nr_dirty_pages > high;
    struct page *pg;
    while ((pg = sh->dirty_head) != NULL) {
        if (!all && pg->freed_ms > cutoff && !(over && sh->nr_dirty_pages > low))
            break;
        purge_block_locked(sh, pg);
    }
    return (sh->purged_pages - before) << PAGE_SHIFT;
}

/* The live-heap bound on a free: a shard holding more dirty frames than twice its recent peak of
 * frames in use (and than its share of BUDDY_DIRTY_FLOOR) purges its oldest down to 3/4 of that
 * bound, so that the purges come in batches. */
static void live_bound_locked(struct buddy_shard *sh)
{
    bsl_assert_locked(&sh->lock);
    size_t bound = sh->peak_used * 2, floor = BUDDY_DIRTY_FLOOR / buddy_nr_shards;
    if (bound < floor)
        bound = floor;
    if (sh->nr_dirty_pages <= bound || buddy_decay_ms < 0) /* decay_ms=-1: policy purges off */
        return;
    struct page *pg;
    while (sh->nr_dirty_pages > bound - bound / 4 && (pg = sh->dirty_head) != NULL)
        purge_block_locked(sh, pg);
}

void maybe_decay_locked(struct buddy_shard *sh, uint64_t now)
{
    bsl_assert_locked(&sh->lock);
    struct zone *z = &zones[sh->zone];
    if (sh->nr_dirty_pages > z->wmark_high / buddy_nr_shards) {
        decay_locked(sh, 0, 0);
        return;
    }
    live_bound_locked(sh);
    if (buddy_decay_ms < 0 || !sh->dirty_head)
        return;
    uint64_t step = (uint64_t)buddy_decay_ms / 8;
    if (now - sh->last_decay_ms < step)
        return;
    sh->last_decay_ms = now;
    if (now >= (uint64_t)buddy_decay_ms)
        decay_locked(sh, now - (uint64_t)buddy_decay_ms, 0);
}

size_t buddy_purge(uint64_t age_ms)
{
    size_t total = 0;
    uint64_t now = os_now_ms();
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[s][z];
            if (!__atomic_load_n(&sh->nr_dirty_pages, __ATOMIC_RELAXED))
                continue;
            os_lock(&sh->lock);
            if (age_ms == 0)
                total += decay_locked(sh, 0, 1);
            else if (now >= age_ms)
                total += decay_locked(sh, now - age_ms, 0);
            os_unlock(&sh->lock);
        }
    return total;
}

size_t buddy_trim_to_live(void)
{
    size_t total = 0;
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[s][z];
            if (!__atomic_load_n(&sh->nr_pages, __ATOMIC_RELAXED))
                continue;
            os_lock(&sh->lock); /* with no dirty frames too: the peak comes down all the same */
            size_t used = sh->nr_pages - sh->nr_free_pages;
            sh->peak_used = used > sh->peak_used ? used : sh->peak_used - (sh->peak_used - used) / 4;
            size_t keep = sh->peak_used / BUDDY_DIRTY_LIVE_DIV;
            if (keep < BUDDY_DIRTY_FLOOR / buddy_nr_shards)
                keep = BUDDY_DIRTY_FLOOR / buddy_nr_shards;
            if (sh->nr_dirty_pages > keep) {
                size_t before = sh->purged_pages;
                struct page *pg;
                while (sh->nr_dirty_pages > keep && (pg = sh->dirty_head) != NULL)
                    purge_block_locked(sh, pg);
                total += (sh->purged_pages - before) << PAGE_SHIFT;
            }
            os_unlock(&sh->lock);
        }
    return total;
}

size_t buddy_committed_bytes(void)
{
    size_t pages = 0;
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned i = 0; i < buddy_nr_shards; i++) {
            const struct buddy_shard *sh = &buddy_shards[i][z];
            size_t n = __atomic_load_n(&sh->nr_pages, __ATOMIC_RELAXED),
                   f = __atomic_load_n(&sh->nr_free_pages, __ATOMIC_RELAXED),
                   d = __atomic_load_n(&sh->nr_dirty_pages, __ATOMIC_RELAXED);
            if (f <= n) /* racy reads: skip a torn moment rather than wrap */
                pages += n - f + d;
        }
    return pages << PAGE_SHIFT;
}

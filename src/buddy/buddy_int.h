/* Internals shared by buddy.c (split, coalesce, kinds), purge.c (the dirty-memory policy) and
 * check.c (buddy_check). Every function here runs with the shard's lock held. */
#ifndef BSL_BUDDY_INT_H
#define BSL_BUDDY_INT_H

#include "buddy/buddy.h"

static inline struct buddy_shard *shard_of(const struct arena *ar) { return &buddy_shards[ar->shard][ar->zone]; }

/* The list a free block of `order` in a pageblock of kind `type` belongs on. */
static inline unsigned list_of(unsigned order, unsigned type) { return order == MAX_ORDER ? 0 : type; }

/* The kind of the pageblock holding pfn. */
static inline unsigned pb_type_of(const struct arena *ar, size_t pfn) { return ar->pb_type[pfn >> MAX_ORDER]; }

/* Bits set in x, inline: the x86-64 baseline has no popcnt instruction, and __builtin_popcountll
 * became a call to libgcc's __popcountdi2, linked at the end of the library's text (away from the
 * hot code: src/meson.build's link order). */
static inline unsigned popcount64(uint64_t x)
{
    x -= (x >> 1) & 0x5555555555555555ull;
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    return (unsigned)((x * 0x0101010101010101ull) >> 56);
}

static inline unsigned word_count(uint64_t x) { return x == ~(uint64_t)0 ? 64 : x ? popcount64(x) : 0; }

/* The arena's dirty bits of frames [pfn, pfn + n): count, set, clear (struct arena.dirty_bits).
 * Blocks are naturally aligned: a range is inside one word or made of whole words, except for
 * the pieces of an exact allocation's trimmed tail. */
static inline size_t dbits_count(const struct arena *ar, size_t pfn, size_t n)
{
    const uint64_t *w = &ar->dirty_bits[pfn >> 6];
    size_t b = pfn & 63, c = 0;
    if (b + n <= 64) {
        uint64_t m = (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << b;
        uint64_t x = *w & m;
        return x == m ? n : x ? popcount64(x) : 0;
    }
    if (b) {
        c += popcount64(*w++ >> b);
        n -= 64 - b;
    }
    for (; n >= 64; n -= 64)
        c += word_count(*w++);
    if (n)
        c += popcount64(*w & (((uint64_t)1 << n) - 1));
    return c;
}

static inline void dbits_assign(struct arena *ar, size_t pfn, size_t n, int set)
{
    uint64_t *w = &ar->dirty_bits[pfn >> 6];
    size_t b = pfn & 63;
    if (b + n <= 64) {
        uint64_t m = (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << b;
        *w = set ? *w | m : *w & ~m;
        return;
    }
    if (b) {
        uint64_t m = ~(uint64_t)0 << b;
        *w = set ? *w | m : *w & ~m;
        w++;
        n -= 64 - b;
    }
    for (; n >= 64; n -= 64) { /* a few words: stores, not a call to memset */
        *w++ = set ? ~(uint64_t)0 : 0;
        __asm__("" : "+r"(w));
    }
    if (n) {
        uint64_t m = ((uint64_t)1 << n) - 1;
        *w = set ? *w | m : *w & ~m;
    }
}

/* Free lists: dirty blocks at the head (reused first), clean ones at the tail. */
static inline void area_add_locked(struct buddy_shard *sh, struct page *pg, unsigned list, int dirty)
{
    bsl_assert_locked(&sh->lock);
    struct free_area *fa = &sh->free_area[pg->order];
    pg->size_class = (uint8_t)list;
    if (dirty || !fa->head[list]) {
        pg->prev = NULL;
        pg->next = fa->head[list];
        if (fa->head[list])
            fa->head[list]->prev = pg;
        else
            fa->tail[list] = pg;
        fa->head[list] = pg;
    } else {
        pg->next = NULL;
        pg->prev = fa->tail[list];
        fa->tail[list]->next = pg;
        fa->tail[list] = pg;
    }
    fa->nr_free++;
}

static inline void area_del_locked(struct buddy_shard *sh, struct page *pg)
{
    bsl_assert_locked(&sh->lock);
    struct free_area *fa = &sh->free_area[pg->order];
    unsigned list = pg->size_class;
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        fa->head[list] = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    else
        fa->tail[list] = pg->prev;
    fa->nr_free--;
}

/* Put pg on the dirty list just before `next`, a dirty block that sorts at or after it, or with no
 * `next` at the tail (the list stays oldest first: the caller stamps pg accordingly). */
static inline void dirty_insert_locked(struct buddy_shard *sh, struct page *pg, struct page *next)
{
    bsl_assert_locked(&sh->lock);
    struct page *prev = next ? next->dprev : sh->dirty_tail;
    bsl_assert(1, (!next || next->freed_ms >= pg->freed_ms) && (!prev || prev->freed_ms <= pg->freed_ms));
    pg->dnext = next;
    pg->dprev = prev;
    if (prev)
        prev->dnext = pg;
    else
        sh->dirty_head = pg;
    if (next)
        next->dprev = pg;
    else
        sh->dirty_tail = pg;
    sh->nr_dirty_pages += pg->ndirty;
}

static inline void dirty_del_locked(struct buddy_shard *sh, struct page *pg)
{
    bsl_assert_locked(&sh->lock);
    if (pg->dprev)
        pg->dprev->dnext = pg->dnext;
    else
        sh->dirty_head = pg->dnext;
    if (pg->dnext)
        pg->dnext->dprev = pg->dprev;
    else
        sh->dirty_tail = pg->dprev;
    sh->nr_dirty_pages -= pg->ndirty;
}

/* purge.c */
/* Purge one dirty free block (it stays on its free list, now clean: moved to the list's tail). */
BSL_HIDDEN void purge_block_locked(struct buddy_shard *sh, struct page *pg);
/* After a free: purge what decay_ms and the high watermark ask for (rate-limited). */
BSL_HIDDEN void maybe_decay_locked(struct buddy_shard *sh, uint64_t now);
/* Purge the oldest dirty blocks until at least `need` frames are purged; returns the frames purged. */
BSL_HIDDEN size_t purge_oldest_locked(struct buddy_shard *sh, size_t need);

#endif

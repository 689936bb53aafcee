/* buddy_check(): walks every list and every frame of every shard. For tests and debugging. */
#include "buddy/buddy_int.h"

static int fail(const char *what, unsigned z, unsigned s, size_t v)
{
    os_printf(2, "buddyslab: buddy_check: zone %u shard %u: %s (%zu)\n", z, s, what, v);
    return -1;
}

int buddy_check(void)
{
    for (unsigned z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[s][z];
            os_lock(&sh->lock);
            size_t free_pages = 0, dirty_pages = 0, nr_pages = 0, heads = 0;
            int rc = 0;
            for (unsigned o = 0; o <= MAX_ORDER && !rc; o++) {
                size_t n = 0;
                for (unsigned l = 0; l < PB_NR && !rc; l++) {
                    int seen_clean = 0;
                    struct page *last = NULL;
                    for (struct page *pg = sh->free_area[o].head[l]; pg; last = pg, pg = pg->next, n++) {
                        struct arena *ar = pg->arena;
                        size_t pfn = page_to_pfn(ar, pg);
                        if (!(pg->flags & PG_BUDDY) || pg->order != o)
                            rc = fail("free list entry not a free block of its order", z, s, pfn);
                        else if (pg->size_class != l || (o == MAX_ORDER && l != 0))
                            rc = fail("free block on the wrong kind's list", z, s, pfn);
                        else if ((pg->flags & PG_DIRTY) && seen_clean)
                            rc = fail("dirty block after a clean one on a free list", z, s, pfn);
                        else if (pfn & (((size_t)1 << o) - 1))
                            rc = fail("free block not naturally aligned", z, s, pfn);
                        else if (pfn + ((size_t)1 << o) > ar->fresh || ar->shard != s)
                            rc = fail("free block outside the shard's carved arena", z, s, pfn);
                        else if (pg->next && pg->next->prev != pg)
                            rc = fail("broken free list link", z, s, pfn);
                        else if (pg->ndirty != dbits_count(ar, pfn, (size_t)1 << o) || (pg->ndirty > 0) != !!(pg->flags & PG_DIRTY))
                            rc = fail("free block's ndirty does not match its dirty bits", z, s, pfn);
                        if (rc)
                            break;
                        seen_clean |= !(pg->flags & PG_DIRTY);
                        free_pages += (size_t)1 << o;
                    }
                    if (!rc && last != sh->free_area[o].tail[l])
                        rc = fail("free list tail pointer wrong", z, s, o);
                }
                if (!rc && n != sh->free_area[o].nr_free)
                    rc = fail("nr_free does not match the list", z, s, o);
            }
            for (struct page *pg = sh->dirty_head; pg && !rc; pg = pg->dnext) {
                if ((pg->flags & (PG_BUDDY | PG_DIRTY)) != (PG_BUDDY | PG_DIRTY))
                    rc = fail("clean or busy block on the dirty list", z, s, 0);
                else if (pg->dnext && pg->dnext->freed_ms < pg->freed_ms)
                    rc = fail("dirty list not oldest first", z, s, 0);
                dirty_pages += pg->ndirty;
            }
            /* Every frame is in at most one free block: count heads covering each frame. */
            for (struct arena *ar = sh->arenas; ar && !rc; ar = ar->next) {
                nr_pages += ar->fresh - ARENA_META_PAGES;
                for (size_t q = 0; q < ARENA_META_PAGES && !rc; q++)
                    if (ar->pages[q].flags)
                        rc = fail("descriptor of a metadata frame in use", z, s, q);
                for (size_t pfn = ARENA_META_PAGES; pfn < ar->fresh && !rc;) {
                    struct page *pg = &ar->pages[pfn];
                    if (pg->flags & PG_BUDDY) {
                        heads++;
                        size_t end = pfn + ((size_t)1 << pg->order);
                        for (size_t q = pfn + 1; q < end; q++)
                            if (ar->pages[q].flags & (PG_BUDDY | PG_LARGE | PG_SLAB)) {
                                rc = fail("frame of a free block is also in use or free twice", z, s, q);
                                break;
                            }
                        pfn = end;
                    } else {
                        if (dbits_count(ar, pfn, 1)) {
                            rc = fail("dirty bit set on a frame not in a free block", z, s, pfn);
                            break;
                        }
                        pfn++;
                    }
                }
            }
            if (!rc && free_pages != sh->nr_free_pages)
                rc = fail("nr_free_pages does not match the lists", z, s, free_pages);
            if (!rc && dirty_pages != sh->nr_dirty_pages)
                rc = fail("nr_dirty_pages does not match the dirty list", z, s, dirty_pages);
            if (!rc && nr_pages != sh->nr_pages)
                rc = fail("nr_pages does not match the carved arenas", z, s, nr_pages);
            size_t listed = 0;
            for (unsigned o = 0; o <= MAX_ORDER; o++)
                listed += sh->free_area[o].nr_free;
            if (!rc && listed != heads)
                rc = fail("a free block is missing from the free lists", z, s, heads);
            os_unlock(&sh->lock);
            if (rc)
                return rc;
        }
    return 0;
}


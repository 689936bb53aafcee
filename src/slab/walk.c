/* The heap walk over the arenas (slab.h): page descriptors from the first frame on, a slab head's
 * objects from its free-object bitmap, large blocks whole, free buddy blocks skipped. Racy by
 * design: nothing is locked, so the caller (the leak scan, which runs while the program does)
 * must tolerate a block that was freed or reused meanwhile. Also the home of the free mark. */
#include "slab/pcp.h"
#include "slab/slab.h"

#include <string.h>

uintptr_t slab_free_key;

struct walk {
    void (*fn)(uintptr_t start, size_t len, int kind, void *arg);
    void *arg;
};

static void walk_arena(uintptr_t base, void *arg)
{
    const struct walk *w = arg;
    const struct page *pages = (const struct page *)base;
    const struct arena *ar = zone_arena_of((const void *)base);
    /* Frames from `fresh` on were never used: their descriptors are zero, and reading them would
     * fault in pages of descriptors for nothing (most of a 64 MiB arena in a short program). */
    size_t end = ar ? __atomic_load_n(&ar->fresh, __ATOMIC_RELAXED) : ARENA_PAGES;
    if (end > ARENA_PAGES)
        end = ARENA_PAGES;
    size_t pfn = ARENA_META_PAGES;
    while (pfn < end) {
        const struct page *pg = &pages[pfn];
        uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_RELAXED);
        uintptr_t addr = base + (pfn << PAGE_SHIFT);
        size_t np = 1;
        if ((f & PG_SLAB) && pg->head == pg) {
            np = pg->npages ? pg->npages : 1;
            if (np > end - pfn)
                np = end - pfn;
            unsigned cls = pg->size_class;
            uint32_t total = pg->total;
            if (cls < SLAB_NR_CLASSES && total && total <= 256) {
                uint64_t freebits[4];
                memcpy(freebits, slab_bitmap(pg), sizeof(freebits));
                size_t osz = slab_class_size[cls];
                if ((size_t)total * osz > np << PAGE_SHIFT)
                    total = (uint32_t)((np << PAGE_SHIFT) / osz);
                for (uint32_t k = 0; k < total; k++)
                    if (!(freebits[k / 64] >> (k % 64) & 1)) /* not free in its slab */
                        w->fn(addr + (uintptr_t)k * osz, osz, SLAB_WALK_OBJECT, w->arg);
            }
        } else if (f & PG_LARGE) {
            np = pg->npages ? pg->npages : 1;
            if (np > end - pfn)
                np = end - pfn;
            size_t bytes = (np - ((f & PG_GUARD) && np > 1 ? 1 : 0)) << PAGE_SHIFT;
            w->fn(addr, bytes, SLAB_WALK_LARGE, w->arg);
        } else if (f & PG_BUDDY) {
            np = (size_t)1 << (pg->order <= MAX_ORDER ? pg->order : 0);
        } else if (f == PG_LCACHED) { /* a large block in a per-CPU cache: free for the program */
            np = pg->npages ? pg->npages : 1;
            if (np > end - pfn)
                np = end - pfn;
        }
        pfn += np;
    }
}

void slab_heap_walk(void (*fn)(uintptr_t start, size_t len, int kind, void *arg), void *arg)
{
    struct walk w = {fn, arg};
    zones_for_each_arena(walk_arena, &w);
}

/* ---- the tracker's block records (recs.c) ---- */
struct recs_walk {
    void (*fn)(uintptr_t start, uint64_t rec, void *arg);
    void *arg;
};

static void recs_walk_arena(uintptr_t base, void *arg)
{
    const struct recs_walk *w = arg;
    struct page *pages = (struct page *)base;
    const struct arena *ar = zone_arena_of((const void *)base);
    size_t end = ar ? __atomic_load_n(&ar->fresh, __ATOMIC_RELAXED) : ARENA_PAGES; /* see walk_arena */
    if (end > ARENA_PAGES)
        end = ARENA_PAGES;
    for (size_t pfn = ARENA_META_PAGES; pfn < end;) {
        struct page *pg = &pages[pfn];
        uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
        uintptr_t addr = base + (pfn << PAGE_SHIFT);
        size_t np = 1;
        if ((f & PG_SLAB) && pg->head == pg) {
            np = pg->npages ? pg->npages : 1;
            const uint64_t *a = __atomic_load_n(&pg->obj_recs, __ATOMIC_ACQUIRE);
            unsigned cls = pg->size_class;
            uint32_t total = pg->total;
            if (a && cls < SLAB_NR_CLASSES && total && total <= 256) {
                size_t osz = slab_class_size[cls];
                for (uint32_t k = 0; k < total; k++) {
                    uint64_t r = __atomic_load_n(&a[k], __ATOMIC_RELAXED);
                    /* the array may have gone to another slab meanwhile: then its records are not ours */
                    if (r && __atomic_load_n(&pg->obj_recs, __ATOMIC_ACQUIRE) == a)
                        w->fn(addr + (uintptr_t)k * osz, r, w->arg);
                }
            }
        } else if (f & PG_LARGE) {
            np = pg->npages ? pg->npages : 1;
            uint64_t r = __atomic_load_n(&pg->large_rec, __ATOMIC_RELAXED);
            if (r)
                w->fn(addr, r, w->arg);
        } else if (f & PG_BUDDY) {
            np = (size_t)1 << (pg->order <= MAX_ORDER ? pg->order : 0);
        } else if (f == PG_LCACHED) {
            np = pg->npages ? pg->npages : 1;
        }
        pfn += np < end - pfn ? np : end - pfn;
    }
}

void slab_recs_walk(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg)
{
    struct recs_walk w = {fn, arg};
    zones_for_each_arena(recs_walk_arena, &w);
}

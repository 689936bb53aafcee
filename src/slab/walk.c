/* The heap walk over the arenas (slab.h): page descriptors from the first frame on, a slab head's
 * objects from its free-object bitmap, large blocks whole, free buddy blocks skipped. Racy by
 * design: nothing is locked, so the caller (the leak scan, which runs while the program does)
 * must tolerate a block that was freed or reused meanwhile. Also the home of the free mark. */
#include "slab/pcp.h"
#include "slab/slab.h"

#include <string.h>

uintptr_t slab_free_key;

/* Every block head of the arena at base: fn(head descriptor, its flags, address, frames) for each
 * slab (head frame) and large block; free buddy blocks and large blocks waiting in a per-CPU cache
 * are stepped over. The one frame walk of both heap walks below. */
typedef void arena_block_fn(const struct page *pg, uint8_t f, uintptr_t addr, size_t np, void *arg);

static void arena_blocks(uintptr_t base, arena_block_fn *fn, void *arg)
{
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
        uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
        size_t np = 1;
        if (((f & PG_SLAB) && pg->head == pg) || (f & PG_LARGE) || f == PG_LCACHED) {
            np = pg->npages ? pg->npages : 1;
            if (np > end - pfn)
                np = end - pfn;
            if (f != PG_LCACHED) /* a large block in a per-CPU cache: free for the program */
                fn(pg, f, base + (pfn << PAGE_SHIFT), np, arg);
        } else if (f & PG_BUDDY) {
            np = (size_t)1 << (pg->order <= MAX_ORDER ? pg->order : 0);
        }
        pfn += np;
    }
}

struct walk {
    void (*fn)(uintptr_t start, size_t len, int kind, void *arg);
    void *arg;
};

static void heap_block(const struct page *pg, uint8_t f, uintptr_t addr, size_t np, void *arg)
{
    const struct walk *w = arg;
    if (f & PG_LARGE) {
        size_t bytes = (np - ((f & PG_GUARD) && np > 1 ? 1 : 0)) << PAGE_SHIFT;
        w->fn(addr, bytes, SLAB_WALK_LARGE, w->arg);
        return;
    }
    unsigned cls = pg->size_class;
    uint32_t total = pg->total;
    if (cls >= SLAB_NR_CLASSES || !total || total > 256)
        return;
    uint64_t freebits[4];
    memcpy(freebits, slab_bitmap(pg), sizeof(freebits));
    size_t osz = slab_class_size[cls];
    if ((size_t)total * osz > np << PAGE_SHIFT)
        total = (uint32_t)((np << PAGE_SHIFT) / osz);
    for (uint32_t k = 0; k < total; k++)
        if (!(freebits[k / 64] >> (k % 64) & 1)) /* not free in its slab */
            w->fn(addr + (uintptr_t)k * osz, osz, SLAB_WALK_OBJECT, w->arg);
}

static void walk_arena(uintptr_t base, void *arg) { arena_blocks(base, heap_block, arg); }

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

static void recs_block(const struct page *pg, uint8_t f, uintptr_t addr, size_t np, void *arg)
{
    (void)np;
    const struct recs_walk *w = arg;
    if (f & PG_LARGE) {
        uint64_t r = __atomic_load_n(&pg->large_rec, __ATOMIC_RELAXED);
        if (r)
            w->fn(addr, r, w->arg);
        return;
    }
    const uint64_t *a = __atomic_load_n(&pg->obj_recs, __ATOMIC_ACQUIRE);
    unsigned cls = pg->size_class;
    uint32_t total = pg->total;
    if (!a || cls >= SLAB_NR_CLASSES || !total || total > 256)
        return;
    size_t osz = slab_class_size[cls];
    for (uint32_t k = 0; k < total; k++) {
        uint64_t r = __atomic_load_n(&a[k], __ATOMIC_RELAXED);
        /* the array may have gone to another slab meanwhile: then its records are not ours */
        if (r && __atomic_load_n(&pg->obj_recs, __ATOMIC_ACQUIRE) == a)
            w->fn(addr + (uintptr_t)k * osz, r, w->arg);
    }
}

static void recs_walk_arena(uintptr_t base, void *arg) { arena_blocks(base, recs_block, arg); }

void slab_recs_walk(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg)
{
    struct recs_walk w = {fn, arg};
    zones_for_each_arena(recs_walk_arena, &w);
}

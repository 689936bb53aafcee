/* The buddy allocator proper. See buddy.h for the model and the locking rules. */
#include "buddy/buddy.h"

struct buddy_shard buddy_shards[NR_ZONES][BUDDY_MAX_SHARDS];
unsigned buddy_nr_shards = 1;
long buddy_decay_ms = 10000;

void buddy_init(unsigned nr_shards)
{
    if (nr_shards < 1)
        nr_shards = 1;
    if (nr_shards > BUDDY_MAX_SHARDS)
        nr_shards = BUDDY_MAX_SHARDS;
    buddy_nr_shards = nr_shards;
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < BUDDY_MAX_SHARDS; s++) {
            buddy_shards[z][s].zone = (uint8_t)z;
            buddy_shards[z][s].id = (uint8_t)s;
        }
}

static inline struct buddy_shard *shard_of(const struct arena *ar) { return &buddy_shards[ar->zone][ar->shard]; }

/* ---- list helpers (shard lock held) ---- */
static void area_add_locked(struct free_area *fa, struct page *pg)
{
    pg->prev = NULL;
    pg->next = fa->head;
    if (fa->head)
        fa->head->prev = pg;
    fa->head = pg;
    fa->nr_free++;
}

static void area_del_locked(struct free_area *fa, struct page *pg)
{
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        fa->head = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    fa->nr_free--;
}

static void dirty_add_locked(struct buddy_shard *sh, struct page *pg)
{
    pg->dnext = NULL;
    pg->dprev = sh->dirty_tail;
    if (sh->dirty_tail)
        sh->dirty_tail->dnext = pg;
    else
        sh->dirty_head = pg;
    sh->dirty_tail = pg;
    sh->nr_dirty_pages += (size_t)1 << pg->order;
}

static void dirty_del_locked(struct buddy_shard *sh, struct page *pg)
{
    if (pg->dprev)
        pg->dprev->dnext = pg->dnext;
    else
        sh->dirty_head = pg->dnext;
    if (pg->dnext)
        pg->dnext->dprev = pg->dprev;
    else
        sh->dirty_tail = pg->dprev;
    sh->nr_dirty_pages -= (size_t)1 << pg->order;
}

/* Put a block on the free lists as is (no coalescing). */
static void set_free_locked(struct buddy_shard *sh, struct arena *ar, struct page *pg, unsigned order, int dirty,
                            uint64_t ms)
{
    pg->flags = (uint8_t)(PG_BUDDY | (dirty ? PG_DIRTY : 0));
    pg->order = (uint8_t)order;
    pg->zone = ar->zone;
    pg->arena = ar;
    area_add_locked(&sh->free_area[order], pg);
    sh->nr_free_pages += (size_t)1 << order;
    if (dirty) {
        /* Keep the dirty list sorted: a block re-freed with an older stamp takes the newest. */
        if (sh->dirty_tail && sh->dirty_tail->freed_ms > ms)
            ms = sh->dirty_tail->freed_ms;
        pg->freed_ms = ms;
        dirty_add_locked(sh, pg);
    }
}

/* Take a free block off the lists; returns whether it was dirty. */
static int take_free_locked(struct buddy_shard *sh, struct page *pg)
{
    int dirty = pg->flags & PG_DIRTY;
    area_del_locked(&sh->free_area[pg->order], pg);
    if (dirty)
        dirty_del_locked(sh, pg);
    sh->nr_free_pages -= (size_t)1 << pg->order;
    pg->flags = 0;
    return dirty;
}

/*
 * Freeing a block of 2^order frames at pfn, the buddy algorithm: the block's buddy is the block of
 * the same order whose pfn differs only in bit `order` (pfn ^ 2^order). If the buddy is free and
 * of the same order, the two merge into one block of order+1 at the lower pfn, and the merge is
 * tried again one order up, until the buddy is busy, split differently, or MAX_ORDER is reached.
 * Arenas start on a MAX_ORDER boundary, so pfns relative to the arena have the same alignment as
 * the addresses. A merged block is dirty if any part was dirty (it will be purged whole).
 */
static void free_one_locked(struct buddy_shard *sh, struct arena *ar, size_t pfn, unsigned order, int dirty,
                            uint64_t ms)
{
    while (order < MAX_ORDER) {
        size_t bpfn = pfn ^ ((size_t)1 << order);
        if (bpfn + ((size_t)1 << order) > ar->fresh)
            break;
        struct page *b = &ar->pages[bpfn];
        if (!(b->flags & PG_BUDDY) || b->order != order)
            break;
        if (b->flags & PG_DIRTY) {
            ms = (dirty && ms > b->freed_ms) ? ms : b->freed_ms;
            dirty = 1;
        }
        take_free_locked(sh, b);
        pfn &= ~((size_t)1 << order);
        order++;
    }
    set_free_locked(sh, ar, &ar->pages[pfn], order, dirty, ms);
}

/* Free [pfn, pfn+n) as naturally aligned power-of-two blocks, each coalesced. */
static void free_range_locked(struct buddy_shard *sh, struct arena *ar, size_t pfn, size_t n, int dirty,
                              uint64_t ms)
{
    while (n) {
        unsigned o = pfn ? (unsigned)__builtin_ctzl(pfn) : MAX_ORDER;
        if (o > MAX_ORDER)
            o = MAX_ORDER;
        while (((size_t)1 << o) > n)
            o--;
        free_one_locked(sh, ar, pfn, o, dirty, ms);
        pfn += (size_t)1 << o;
        n -= (size_t)1 << o;
    }
}

/* fresh: may carve never-used arena space when no free block fits (else NULL). */
static struct page *alloc_locked(struct buddy_shard *sh, size_t npages, unsigned order, int *zeroed, int fresh)
{
    struct page *pg = NULL;
    unsigned o;
    for (o = order; o <= MAX_ORDER; o++)
        if (sh->free_area[o].head) {
            pg = sh->free_area[o].head;
            break;
        }
    int dirty = 0;
    uint64_t ms = 0;
    struct arena *ar;
    if (pg) {
        ar = pg->arena;
        ms = pg->freed_ms;
        dirty = take_free_locked(sh, pg);
    } else {
        /* Carve a fresh MAX_ORDER block from an arena: never touched, so clean. */
        if (!fresh)
            return NULL;
        for (ar = sh->arenas; ar; ar = ar->next)
            if (ar->fresh < ARENA_PAGES)
                break;
        if (!ar)
            return NULL;
        pg = &ar->pages[ar->fresh];
        ar->fresh += MAX_ORDER_PAGES;
        sh->nr_pages += MAX_ORDER_PAGES;
        o = MAX_ORDER;
    }
    size_t pfn = page_to_pfn(ar, pg);
    while (o > order) { /* split: the upper halves go back, the lower half is kept */
        o--;
        set_free_locked(sh, ar, &ar->pages[pfn + ((size_t)1 << o)], o, dirty, ms);
    }
    if (npages < ((size_t)1 << order)) /* trim the tail: exact allocation */
        free_range_locked(sh, ar, pfn + npages, ((size_t)1 << order) - npages, dirty, ms);
    pg->flags = 0;
    pg->arena = ar;
    pg->zone = ar->zone;
    sh->nr_alloc++;
    *zeroed = !dirty;
    return pg;
}

/* A new arena: its first MAX_ORDER block minus the descriptor frames goes on the free lists;
 * the rest is carved lazily (fresh), so an arena costs nothing until used. */
static void add_arena_locked(struct buddy_shard *sh, struct arena *ar)
{
    ar->next = sh->arenas;
    sh->arenas = ar;
    ar->fresh = MAX_ORDER_PAGES;
    sh->nr_pages += MAX_ORDER_PAGES - ARENA_META_PAGES;
    free_range_locked(sh, ar, ARENA_META_PAGES, MAX_ORDER_PAGES - ARENA_META_PAGES, 0, 0);
}

static const int zonelist[NR_ZONES][3] = {
    [ZONE_LOW32] = {ZONE_LOW32, -1, -1},
    [ZONE_NORMAL] = {ZONE_NORMAL, ZONE_LOW32, -1},
    [ZONE_HUGE] = {-1, -1, -1},
};

struct page *buddy_alloc(int zone, size_t npages, unsigned min_order, unsigned cpu, int *zeroed)
{
    unsigned order = order_for_pages(npages);
    if (order < min_order)
        order = min_order;
    if (order > MAX_ORDER || npages == 0)
        return NULL;
    unsigned home = cpu % buddy_nr_shards;
    for (int i = 0; i < 3 && zonelist[zone][i] >= 0; i++) {
        int z = zonelist[zone][i];
        /* Free blocks of any shard first (their frames are likely resident already), then
         * never-used arena space, home shard first; only then a new arena. Carving fresh space
         * while another shard held free blocks made a thread that migrates between CPUs grow its
         * RSS: bench batch_lifo (100k mixed blocks) peaked at 2.6x jemalloc's. */
        for (int fresh = 0; fresh <= 1; fresh++)
            for (unsigned k = 0; k < buddy_nr_shards; k++) {
                struct buddy_shard *sh = &buddy_shards[z][(home + k) % buddy_nr_shards];
                os_lock(&sh->lock);
                struct page *pg = alloc_locked(sh, npages, order, zeroed, fresh);
                if (pg && k)
                    sh->nr_steal++;
                os_unlock(&sh->lock);
                if (pg)
                    return pg;
            }
        struct buddy_shard *sh = &buddy_shards[z][home];
        struct arena *ar = zone_grow(z, home);
        os_lock(&sh->lock);
        if (ar)
            add_arena_locked(sh, ar);
        struct page *pg = alloc_locked(sh, npages, order, zeroed, 1);
        os_unlock(&sh->lock);
        if (pg)
            return pg;
    }
    return NULL;
}

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

static void purge_block_locked(struct buddy_shard *sh, struct page *pg)
{
    os_purge(page_address(pg), (size_t)PAGE_SIZE << pg->order);
    if (pg->order >= 6)
        purge_block_meta(pg);
    dirty_del_locked(sh, pg);
    pg->flags &= (uint8_t)~PG_DIRTY;
    sh->purged_pages += (size_t)1 << pg->order;
}

/* Purge blocks freed at or before `cutoff`, and, above the high watermark, the oldest blocks
 * until the shard is back under its low watermark. */
static size_t decay_locked(struct buddy_shard *sh, uint64_t cutoff, int all)
{
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

static void maybe_decay_locked(struct buddy_shard *sh, uint64_t now)
{
    struct zone *z = &zones[sh->zone];
    if (sh->nr_dirty_pages > z->wmark_high / buddy_nr_shards) {
        decay_locked(sh, 0, 0);
        return;
    }
    if (buddy_decay_ms < 0 || !sh->dirty_head)
        return;
    uint64_t step = (uint64_t)buddy_decay_ms / 8;
    if (now - sh->last_decay_ms < step)
        return;
    sh->last_decay_ms = now;
    if (now >= (uint64_t)buddy_decay_ms)
        decay_locked(sh, now - (uint64_t)buddy_decay_ms, 0);
}

void buddy_free(struct page *head, size_t npages)
{
    struct arena *ar = head->arena;
    struct buddy_shard *sh = shard_of(ar);
    uint64_t now = os_now_ms();
    os_lock(&sh->lock);
    head->flags = 0;
    free_range_locked(sh, ar, page_to_pfn(ar, head), npages, 1, now);
    sh->nr_free_calls++;
    maybe_decay_locked(sh, now);
    os_unlock(&sh->lock);
}

/* The free block containing pfn, or NULL when the frame is in use. */
static struct page *free_block_of_locked(struct arena *ar, size_t pfn)
{
    for (unsigned o = 0; o <= MAX_ORDER; o++) {
        size_t h = pfn & ~(((size_t)1 << o) - 1);
        struct page *p = &ar->pages[h];
        if ((p->flags & PG_BUDDY) && p->order == o)
            return p;
    }
    return NULL;
}

int buddy_extend(struct page *head, size_t old_n, size_t new_n)
{
    struct arena *ar = head->arena;
    struct buddy_shard *sh = shard_of(ar);
    size_t pfn = page_to_pfn(ar, head);
    size_t start = pfn + old_n, end = pfn + new_n;
    if (end > ARENA_PAGES)
        return 0;
    os_lock(&sh->lock);
    if (end > ar->fresh) {
        os_unlock(&sh->lock);
        return 0;
    }
    for (size_t q = start; q < end;) { /* first pass: is every frame free? */
        struct page *b = free_block_of_locked(ar, q);
        if (!b) {
            os_unlock(&sh->lock);
            return 0;
        }
        q = page_to_pfn(ar, b) + ((size_t)1 << b->order);
    }
    uint64_t now = os_now_ms();
    for (size_t q = start; q < end;) { /* second pass: claim, giving back what sticks out */
        struct page *b = free_block_of_locked(ar, q);
        size_t h = page_to_pfn(ar, b), bend = h + ((size_t)1 << b->order);
        uint64_t ms = b->freed_ms;
        int dirty = take_free_locked(sh, b);
        if (h < q)
            free_range_locked(sh, ar, h, q - h, dirty, dirty ? ms : now);
        if (bend > end)
            free_range_locked(sh, ar, end, bend - end, dirty, dirty ? ms : now);
        q = bend;
    }
    os_unlock(&sh->lock);
    return 1;
}

void buddy_shrink(struct page *head, size_t old_n, size_t new_n)
{
    struct arena *ar = head->arena;
    struct buddy_shard *sh = shard_of(ar);
    uint64_t now = os_now_ms();
    os_lock(&sh->lock);
    free_range_locked(sh, ar, page_to_pfn(ar, head) + new_n, old_n - new_n, 1, now);
    os_unlock(&sh->lock);
}

size_t buddy_purge(uint64_t age_ms)
{
    size_t total = 0;
    uint64_t now = os_now_ms();
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[z][s];
            os_lock(&sh->lock);
            if (age_ms == 0)
                total += decay_locked(sh, 0, 1);
            else if (now >= age_ms)
                total += decay_locked(sh, now - age_ms, 0);
            os_unlock(&sh->lock);
        }
    return total;
}

static int fail(const char *what, unsigned z, unsigned s, size_t v)
{
    os_printf(2, "buddyslab: buddy_check: zone %u shard %u: %s (%zu)\n", z, s, what, v);
    return -1;
}

int buddy_check(void)
{
    for (unsigned z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[z][s];
            os_lock(&sh->lock);
            size_t free_pages = 0, dirty_pages = 0, nr_pages = 0, heads = 0;
            int rc = 0;
            for (unsigned o = 0; o <= MAX_ORDER && !rc; o++) {
                size_t n = 0;
                for (struct page *pg = sh->free_area[o].head; pg; pg = pg->next, n++) {
                    struct arena *ar = pg->arena;
                    size_t pfn = page_to_pfn(ar, pg);
                    if (!(pg->flags & PG_BUDDY) || pg->order != o)
                        rc = fail("free list entry not a free block of its order", z, s, pfn);
                    else if (pfn & (((size_t)1 << o) - 1))
                        rc = fail("free block not naturally aligned", z, s, pfn);
                    else if (pfn + ((size_t)1 << o) > ar->fresh || ar->shard != s)
                        rc = fail("free block outside the shard's carved arena", z, s, pfn);
                    else if (pg->next && pg->next->prev != pg)
                        rc = fail("broken free list link", z, s, pfn);
                    if (rc)
                        break;
                    free_pages += (size_t)1 << o;
                }
                if (!rc && n != sh->free_area[o].nr_free)
                    rc = fail("nr_free does not match the list", z, s, o);
            }
            for (struct page *pg = sh->dirty_head; pg && !rc; pg = pg->dnext) {
                if ((pg->flags & (PG_BUDDY | PG_DIRTY)) != (PG_BUDDY | PG_DIRTY))
                    rc = fail("clean or busy block on the dirty list", z, s, 0);
                else if (pg->dnext && pg->dnext->freed_ms < pg->freed_ms)
                    rc = fail("dirty list not oldest first", z, s, 0);
                dirty_pages += (size_t)1 << pg->order;
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

void buddy_fork_locks(os_lock_visit_fn visit)
{
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < BUDDY_MAX_SHARDS; s++)
            visit(&buddy_shards[z][s].lock);
}

size_t buddy_committed_bytes(void)
{
    size_t pages = 0;
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned i = 0; i < buddy_nr_shards; i++) {
            const struct buddy_shard *sh = &buddy_shards[z][i];
            size_t n = __atomic_load_n(&sh->nr_pages, __ATOMIC_RELAXED),
                   f = __atomic_load_n(&sh->nr_free_pages, __ATOMIC_RELAXED),
                   d = __atomic_load_n(&sh->nr_dirty_pages, __ATOMIC_RELAXED);
            if (f <= n) /* racy reads: skip a torn moment rather than wrap */
                pages += n - f + d;
        }
    return pages << PAGE_SHIFT;
}

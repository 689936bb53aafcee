/* The buddy allocator proper: split, coalesce, pageblock kinds, extend and shrink. See buddy.h for
 * the model and the locking rules; the dirty-memory policy is in purge.c, buddy_check in check.c. */
#include "buddy/buddy_int.h"

BSL_BIG_BSS struct buddy_shard buddy_shards[BUDDY_MAX_SHARDS][NR_ZONES];
unsigned buddy_nr_shards = 1;
long buddy_decay_ms = 10000;

void buddy_init(unsigned nr_shards)
{
    if (nr_shards < 1)
        nr_shards = 1;
    if (nr_shards > BUDDY_MAX_SHARDS)
        nr_shards = BUDDY_MAX_SHARDS;
    buddy_nr_shards = nr_shards;
    /* Only the shards in use: the others are never locked or read (every loop stops at
     * buddy_nr_shards). The table is indexed [shard][zone], so the shards in use of every zone
     * are contiguous: with 2 shards, 6 x 576 bytes, one or two of its 7 .bss pages (indexed
     * [zone][shard], each zone's shards started 9 KiB apart: 3-4 pages). */
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < nr_shards; s++) {
            buddy_shards[s][z].zone = (uint8_t)z;
            buddy_shards[s][z].id = (uint8_t)s;
            os_lock_init(&buddy_shards[s][z].lock, LOCK_RANK_BUDDY);
        }
}

/* Put a block on the free lists as is (no coalescing), on its pageblock kind's list. `ndirty` is
 * the number of its frames whose dirty bit is set (the caller knows it or counted it). A dirty
 * block, stamped `ms`, goes on the dirty list before `next` (a block stamped no older, from the
 * caller's merge or split: see free_one_locked), or with no `next` at the tail, stamped at least
 * the tail's time. */
static void set_free_locked(struct buddy_shard *sh, struct arena *ar, struct page *pg, unsigned order, size_t ndirty,
                            uint64_t ms, struct page *next)
{
    bsl_assert_locked(&sh->lock);
    bsl_assert(1, !(pg->flags & (PG_SLAB | PG_LARGE | PG_BUDDY))); /* not in use, not free already */
    bsl_assert(2, ndirty == dbits_count(ar, page_to_pfn(ar, pg), (size_t)1 << order));
    pg->flags = (uint8_t)(PG_BUDDY | (ndirty ? PG_DIRTY : 0));
    pg->order = (uint8_t)order;
    pg->zone = ar->zone;
    pg->arena = ar;
    pg->ndirty = (uint32_t)ndirty;
    area_add_locked(sh, pg, list_of(order, pb_type_of(ar, page_to_pfn(ar, pg))), ndirty != 0);
    sh->nr_free_pages += (size_t)1 << order;
    if (ndirty) {
        if (!next && sh->dirty_tail && sh->dirty_tail->freed_ms > ms)
            ms = sh->dirty_tail->freed_ms; /* the clock is per CPU: never out of order */
        pg->freed_ms = ms;
        dirty_insert_locked(sh, pg, next);
    }
}

/* Take a free block off the lists; returns how many of its frames are dirty (bits left as they are). */
static size_t take_free_locked(struct buddy_shard *sh, struct page *pg)
{
    bsl_assert_locked(&sh->lock);
    size_t ndirty = pg->ndirty;
    area_del_locked(sh, pg);
    if (ndirty)
        dirty_del_locked(sh, pg);
    sh->nr_free_pages -= (size_t)1 << pg->order;
    pg->flags = 0;
    pg->ndirty = 0;
    return ndirty;
}

/*
 * Freeing a block of 2^order frames at pfn, the buddy algorithm: the block's buddy is the block of
 * the same order whose pfn differs only in bit `order` (pfn ^ 2^order). If the buddy is free and
 * of the same order, the two merge into one block of order+1 at the lower pfn, and the merge is
 * tried again one order up, until the buddy is busy, split differently, or MAX_ORDER is reached.
 * Arenas start on a MAX_ORDER boundary, so pfns relative to the arena have the same alignment as
 * the addresses. A merged block counts the dirty frames of its parts (ndirty); it is dirty if any
 * part was, stamped with its OLDEST dirty part's time and placed where that part was on the dirty
 * list (before its `next`). The oldest, not the newest: a block that a busy loop splits and merges
 * again and again (a 64 KiB buffer taken from a big free block and freed at once) would otherwise
 * keep the whole block young, and its idle frames resident, forever; the price is that the part
 * freed last may be purged up to decay_ms early. Splitting keeps the parent's stamp likewise
 * (alloc_locked, buddy_extend). The caller gives the block's own stamp and place (`ms`, `next`,
 * as for set_free_locked). Frames' dirty bits are already what they must be: freeing sets them
 * (buddy_free), splitting and merging leave them.
 */
static void free_one_locked(struct buddy_shard *sh, struct arena *ar, size_t pfn, unsigned order, uint64_t ms,
                            struct page *next)
{
    bsl_assert_locked(&sh->lock);
    /* The block is aligned to its size, inside the arena's used part, and not free already. */
    bsl_assert(1, order <= MAX_ORDER && (pfn & (((size_t)1 << order) - 1)) == 0 &&
                      pfn + ((size_t)1 << order) <= ar->fresh && !(ar->pages[pfn].flags & PG_BUDDY));
    size_t ndirty = dbits_count(ar, pfn, (size_t)1 << order);
    while (order < MAX_ORDER) {
        size_t bpfn = pfn ^ ((size_t)1 << order);
        if (bpfn + ((size_t)1 << order) > ar->fresh)
            break;
        struct page *b = &ar->pages[bpfn];
        if (!(b->flags & PG_BUDDY) || b->order != order)
            break;
        if (b->flags & PG_DIRTY) {
            if (b == next) /* leaving the list: the place is before the block after it */
                next = b->dnext;
            if (!ndirty || b->freed_ms < ms) {
                ms = b->freed_ms;
                next = b->dnext;
            }
        }
        ndirty += take_free_locked(sh, b);
        pfn &= ~((size_t)1 << order);
        order++;
    }
    set_free_locked(sh, ar, &ar->pages[pfn], order, ndirty, ms, next);
}

/* Free [pfn, pfn+n) as naturally aligned power-of-two blocks, each coalesced (dirty bits as set);
 * `ms` and `next` as for free_one_locked. */
static void free_range_locked(struct buddy_shard *sh, struct arena *ar, size_t pfn, size_t n, uint64_t ms,
                              struct page *next)
{
    bsl_assert_locked(&sh->lock);
    while (n) {
        unsigned o = pfn ? (unsigned)__builtin_ctzl(pfn) : MAX_ORDER;
        if (o > MAX_ORDER)
            o = MAX_ORDER;
        while (((size_t)1 << o) > n)
            o--;
        free_one_locked(sh, ar, pfn, o, ms, next);
        pfn += (size_t)1 << o;
        n -= (size_t)1 << o;
    }
}

/* The smallest block of order >= `order` on list `list`: the smallest dirty one when want_dirty,
 * else the smallest of any. */
static struct page *find_locked(struct buddy_shard *sh, unsigned order, unsigned list, int want_dirty)
{
    bsl_assert_locked(&sh->lock);
    for (unsigned o = order; o < MAX_ORDER; o++) {
        struct page *pg = sh->free_area[o].head[list];
        if (pg && (!want_dirty || (pg->flags & PG_DIRTY)))
            return pg;
    }
    return NULL;
}

/* The largest block of order >= `order` on list `list` (a fallback steals big: fewer fallbacks). */
static struct page *find_largest_locked(struct buddy_shard *sh, unsigned order, unsigned list)
{
    bsl_assert_locked(&sh->lock);
    for (unsigned o = MAX_ORDER; o-- > order;)
        if (sh->free_area[o].head[list])
            return sh->free_area[o].head[list];
    return NULL;
}

/* Where alloc_locked may look: free blocks of its kind and whole pageblocks (0), never-used arena
 * space (1), the other kind's blocks (2). */
enum { FROM_FREE = 0, FROM_FRESH = 1, FROM_OTHER = 2 };

/* *clean: how many of the npages frames handed out are clean (read as zero, cost RSS when touched). */
static struct page *alloc_locked(struct buddy_shard *sh, size_t npages, unsigned order, unsigned type, int *zeroed,
                                 size_t *clean, int from)
{
    bsl_assert_locked(&sh->lock);
    struct page *pg = NULL, *whole = sh->free_area[MAX_ORDER].head[0];
    struct arena *ar;
    if (from == FROM_FREE) {
        /* Resident frames first: a dirty block of this kind, a dirty whole pageblock; then clean. */
        pg = find_locked(sh, order, type, 1);
        if (!pg && whole && (whole->flags & PG_DIRTY))
            pg = whole;
        if (!pg)
            pg = find_locked(sh, order, type, 0);
        if (!pg)
            pg = whole;
    } else if (from == FROM_OTHER) {
        pg = find_largest_locked(sh, order, type ^ 1);
        if (pg) {
            sh->nr_fallback++;
            if (pg->order >= MAX_ORDER - 1) /* most of the pageblock: it changes kind */
                pg->arena->pb_type[page_to_pfn(pg->arena, pg) >> MAX_ORDER] = (uint8_t)type;
        }
    }
    size_t dirty = 0; /* dirty frames in the block taken */
    uint64_t ms = 0;
    struct page *next = NULL; /* the pieces given back keep the block's stamp and place */
    unsigned o;
    if (pg) {
        ar = pg->arena;
        o = pg->order;
        ms = pg->freed_ms;
        if (pg->flags & PG_DIRTY)
            next = pg->dnext;
        dirty = take_free_locked(sh, pg);
    } else {
        if (from != FROM_FRESH)
            return NULL;
        /* Carve a fresh MAX_ORDER block from an arena: never touched, so clean. */
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
    if (o == MAX_ORDER) /* a whole pageblock: it takes the request's kind */
        ar->pb_type[pfn >> MAX_ORDER] = (uint8_t)type;
    int mixed = dirty && dirty != ((size_t)1 << o); /* else every piece is as dirty as the block */
    while (o > order) { /* split: the upper halves go back, the lower half is kept */
        o--;
        size_t up = pfn + ((size_t)1 << o);
        set_free_locked(sh, ar, &ar->pages[up], o,
                        mixed ? dbits_count(ar, up, (size_t)1 << o) : dirty ? (size_t)1 << o : 0, ms, next);
    }
    if (npages < ((size_t)1 << order)) /* trim the tail: exact allocation */
        free_range_locked(sh, ar, pfn + npages, ((size_t)1 << order) - npages, ms, next);
    /* The frames handed out are in use: their bits go. */
    size_t d = mixed ? dbits_count(ar, pfn, npages) : dirty ? npages : 0;
    if (d)
        dbits_assign(ar, pfn, npages, 0);
    pg->flags = 0;
    pg->arena = ar;
    pg->zone = ar->zone;
    sh->nr_alloc++;
    *zeroed = !d;
    *clean = npages - d;
    return pg;
}

/* A new arena: its first MAX_ORDER block minus the descriptor frames goes on the free lists (a
 * slab pageblock: the first requests are small); the rest is carved lazily (fresh), so an arena
 * costs nothing until used. */
static void add_arena_locked(struct buddy_shard *sh, struct arena *ar)
{
    bsl_assert_locked(&sh->lock);
    ar->next = sh->arenas;
    sh->arenas = ar;
    ar->fresh = MAX_ORDER_PAGES;
    ar->pb_type[0] = PB_SLAB;
    sh->nr_pages += MAX_ORDER_PAGES - ARENA_META_PAGES;
    free_range_locked(sh, ar, ARENA_META_PAGES, MAX_ORDER_PAGES - ARENA_META_PAGES, 0, NULL);
}

/* Rule 1 across zones: clean frames handed out are offset by freed huge mappings' resident pages
 * first (they serve only huge requests, and a program whose small heap grows after it freed its
 * big buffers has no use for them), then by the zone's dirty frames (offset_growth). Returns the
 * clean frames still to offset. Called under the shard lock, as the zone's own purges are. */
static size_t offset_huge(size_t clean)
{
    size_t h = huge_offset(clean << PAGE_SHIFT) >> PAGE_SHIFT;
    return h >= clean ? 0 : clean - h;
}

static const int zonelist[NR_ZONES][3] = {
    [ZONE_LOW32] = {ZONE_LOW32, -1, -1},
    [ZONE_NORMAL] = {ZONE_NORMAL, ZONE_LOW32, -1},
    [ZONE_HUGE] = {-1, -1, -1},
};

/* Zone z's frames in use and free dirty frames (racy sums over the shards, without their locks: a
 * hint). */
static void zone_sums(int z, size_t *used, size_t *dirty)
{
    *used = *dirty = 0;
    for (unsigned k = 0; k < buddy_nr_shards; k++) {
        const struct buddy_shard *sh = &buddy_shards[k][z];
        size_t n = __atomic_load_n(&sh->nr_pages, __ATOMIC_RELAXED), f = __atomic_load_n(&sh->nr_free_pages, __ATOMIC_RELAXED);
        *used += f <= n ? n - f : 0;
        *dirty += __atomic_load_n(&sh->nr_dirty_pages, __ATOMIC_RELAXED);
    }
}

/* Rule 1's reserve, per zone (buddy.h): dirty frames up to the frames in use >> shift are kept
 * without offset. `churn` counts the frames rule 1 purged since the shift last changed; once they
 * reach the frames in use (the program refaults what was purged for it: a working set that the
 * reserve does not hold), the shift steps down toward BUDDY_RESERVE_SHIFT_MIN; each tick that saw
 * little churn steps it back up toward BUDDY_RESERVE_SHIFT_MAX (buddy_relax_reserve). Read and
 * written with relaxed atomics by any shard's holder: a hint, like the sums it is compared with. */
static struct {
    unsigned shift;
    size_t churn;
} reserve[NR_ZONES] = {[0 ... NR_ZONES - 1] = {BUDDY_RESERVE_SHIFT_MAX, 0}};

static void reserve_note_purge(int z, size_t got, size_t used)
{
    size_t churn = __atomic_add_fetch(&reserve[z].churn, got, __ATOMIC_RELAXED);
    unsigned shift = __atomic_load_n(&reserve[z].shift, __ATOMIC_RELAXED);
    if (churn >= used && shift > BUDDY_RESERVE_SHIFT_MIN) {
        __atomic_store_n(&reserve[z].shift, shift - 1, __ATOMIC_RELAXED);
        __atomic_store_n(&reserve[z].churn, 0, __ATOMIC_RELAXED);
    }
}

void buddy_relax_reserve(void)
{
    for (int z = 0; z < NR_ZONES; z++) {
        size_t used, dirty;
        zone_sums(z, &used, &dirty);
        unsigned shift = __atomic_load_n(&reserve[z].shift, __ATOMIC_RELAXED);
        if (__atomic_load_n(&reserve[z].churn, __ATOMIC_RELAXED) < used / 4 && shift < BUDDY_RESERVE_SHIFT_MAX)
            __atomic_store_n(&reserve[z].shift, shift + 1, __ATOMIC_RELAXED);
        __atomic_store_n(&reserve[z].churn, 0, __ATOMIC_RELAXED);
    }
}

unsigned buddy_reserve_shift(int zone) { return __atomic_load_n(&reserve[zone].shift, __ATOMIC_RELAXED); }

/* Growth is RSS-neutral (buddy.h): `need` clean frames were just handed out in zone z; purge as
 * many dirty frames, oldest first, from shard `first` (its lock held by the caller and released
 * here), then from the zone's other shards. */
static void offset_growth(int z, struct buddy_shard *first, size_t need)
{
    bsl_assert_locked(&first->lock);
    /* The reserve: free dirty frames up to the zone's frames in use >> its shift (at most
     * BUDDY_DIRTY_FLOOR) are kept without offset (racy sums over the shards: a hint). */
    size_t used, dirty;
    zone_sums(z, &used, &dirty);
    size_t keep = used >> __atomic_load_n(&reserve[z].shift, __ATOMIC_RELAXED);
    if (keep > BUDDY_DIRTY_FLOOR)
        keep = BUDDY_DIRTY_FLOOR;
    if (dirty <= keep) {
        os_unlock(&first->lock);
        return;
    }
    if (need > dirty - keep)
        need = dirty - keep;
    size_t got = first->nr_dirty_pages ? purge_oldest_locked(first, need) : 0;
    os_unlock(&first->lock);
    for (unsigned k = 0; got < need && k < buddy_nr_shards; k++) {
        struct buddy_shard *sh = &buddy_shards[k][z];
        if (sh == first || !__atomic_load_n(&sh->nr_dirty_pages, __ATOMIC_RELAXED))
            continue;
        os_lock(&sh->lock);
        got += purge_oldest_locked(sh, need - got);
        os_unlock(&sh->lock);
    }
    if (got)
        reserve_note_purge(z, got, used);
}

/* Whether any shard of zone z holds dirty frames (racy: a hint). */
static int zone_has_dirty(int z)
{
    for (unsigned k = 0; k < buddy_nr_shards; k++)
        if (__atomic_load_n(&buddy_shards[k][z].nr_dirty_pages, __ATOMIC_RELAXED))
            return 1;
    return 0;
}

struct page *buddy_alloc_type(int zone, size_t npages, unsigned min_order, unsigned cpu, unsigned type, int *zeroed)
{
    unsigned order = order_for_pages(npages);
    if (order < min_order)
        order = min_order;
    if (order > MAX_ORDER || npages == 0 || type >= PB_NR)
        return NULL;
    unsigned home = cpu % buddy_nr_shards;
    for (int i = 0; i < 3 && zonelist[zone][i] >= 0; i++) {
        int z = zonelist[zone][i];
        /* Free blocks of any shard first (their frames are likely resident already), then
         * never-used arena space, home shard first, then the other kind's blocks; only then a new
         * arena. Carving fresh space while another shard held free blocks made a thread that
         * migrates between CPUs grow its RSS: bench batch_lifo (100k mixed blocks) peaked at 2.6x
         * jemalloc's. */
        for (int from = FROM_FREE; from <= FROM_OTHER; from++)
            for (unsigned k = 0; k < buddy_nr_shards; k++) {
                struct buddy_shard *sh = &buddy_shards[(home + k) % buddy_nr_shards][z];
                os_lock(&sh->lock);
                size_t clean = 0;
                struct page *pg = alloc_locked(sh, npages, order, type, zeroed, &clean, from);
                if (pg && k)
                    sh->nr_steal++;
                if (pg && clean)
                    clean = offset_huge(clean);
                if (pg && clean && zone_has_dirty(z))
                    offset_growth(z, sh, clean);
                else
                    os_unlock(&sh->lock);
                if (pg)
                    return pg;
            }
        struct buddy_shard *sh = &buddy_shards[home][z];
        struct arena *ar = zone_grow(z, home);
        os_lock(&sh->lock);
        if (ar)
            add_arena_locked(sh, ar);
        /* The new arena's first pageblock (a slab one, after the descriptor frames) first: a small
         * program's slabs then sit next to the descriptors and bitmaps that describe them, and
         * the second pageblock is not carved (nor its descriptors touched) until needed. */
        size_t clean = 0;
        struct page *pg = alloc_locked(sh, npages, order, type, zeroed, &clean, FROM_FREE);
        if (!pg)
            pg = alloc_locked(sh, npages, order, type, zeroed, &clean, FROM_FRESH);
        if (pg && clean)
            clean = offset_huge(clean);
        if (pg && clean && zone_has_dirty(z))
            offset_growth(z, sh, clean);
        else
            os_unlock(&sh->lock);
        if (pg)
            return pg;
    }
    return NULL;
}

int buddy_can_serve(int zone, unsigned order)
{
    for (int i = 0; i < 3 && zonelist[zone][i] >= 0; i++)
        for (unsigned k = 0; k < buddy_nr_shards; k++) {
            const struct buddy_shard *sh = &buddy_shards[k][zonelist[zone][i]];
            for (unsigned o = order; o <= MAX_ORDER; o++)
                if (__atomic_load_n(&sh->free_area[o].nr_free, __ATOMIC_RELAXED))
                    return 1;
        }
    return 0;
}

void buddy_free(struct page *head, size_t npages)
{
    struct arena *ar = head->arena;
    struct buddy_shard *sh = shard_of(ar);
    uint64_t now = os_now_ms();
    /* A block is released once: a second release of a block that is still free by itself finds
     * PG_BUDDY on its head (one merged into a bigger free block has a tail's flags: not caught). */
    bsl_assert(1, !(head->flags & PG_BUDDY));
    os_lock(&sh->lock);
    size_t used = sh->nr_pages - sh->nr_free_pages; /* the heap only grew since the last free */
    if (used > sh->peak_used)
        sh->peak_used = used;
    head->flags = 0;
    dbits_assign(ar, page_to_pfn(ar, head), npages, 1); /* frames that were in use: maybe resident */
    free_range_locked(sh, ar, page_to_pfn(ar, head), npages, now, NULL);
    sh->nr_free_calls++;
    maybe_decay_locked(sh, now);
    os_unlock(&sh->lock);
}

/* The free block containing pfn, or NULL when the frame is in use. */
static struct page *free_block_of_locked(struct arena *ar, size_t pfn)
{
    bsl_assert_locked(&shard_of(ar)->lock);
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
    for (size_t q = start; q < end;) { /* second pass: claim, giving back what sticks out */
        struct page *b = free_block_of_locked(ar, q);
        size_t h = page_to_pfn(ar, b), bend = h + ((size_t)1 << b->order);
        uint64_t ms = b->freed_ms; /* stamp and place: meaningful only for the dirty frames it gives back */
        struct page *next = (b->flags & PG_DIRTY) ? b->dnext : NULL;
        if (b->order == MAX_ORDER) /* a whole pageblock joins the block's kind */
            ar->pb_type[h >> MAX_ORDER] = pb_type_of(ar, pfn);
        take_free_locked(sh, b);
        if (h < q)
            free_range_locked(sh, ar, h, q - h, ms, next);
        if (bend > end)
            free_range_locked(sh, ar, end, bend - end, ms, next);
        q = bend;
    }
    size_t d = dbits_count(ar, start, end - start), clean = (end - start) - d;
    if (d) /* the claimed frames are in use now */
        dbits_assign(ar, start, end - start, 0);
    if (clean && zone_has_dirty(ar->zone))
        offset_growth(ar->zone, sh, clean);
    else
        os_unlock(&sh->lock);
    return 1;
}

void buddy_shrink(struct page *head, size_t old_n, size_t new_n)
{
    struct arena *ar = head->arena;
    struct buddy_shard *sh = shard_of(ar);
    uint64_t now = os_now_ms();
    os_lock(&sh->lock);
    dbits_assign(ar, page_to_pfn(ar, head) + new_n, old_n - new_n, 1);
    free_range_locked(sh, ar, page_to_pfn(ar, head) + new_n, old_n - new_n, now, NULL);
    os_unlock(&sh->lock);
}

void buddy_fork_locks(os_lock_visit_fn visit)
{
    for (int z = 0; z < NR_ZONES; z++)
        for (unsigned s = 0; s < buddy_nr_shards; s++)
            visit(&buddy_shards[s][z].lock);
}

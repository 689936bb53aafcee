/* The HUGE zone: blocks above the largest buddy block, each its own 2 MiB-aligned mapping
 * (whole sections, so a section never has two owners), resized with mremap.
 *
 * Transparent huge pages. A block that has lived a second (the tick checks) is advised
 * MADV_HUGEPAGE for khugepaged to collapse: random reads over a long-lived 1 GiB heap got 22 %
 * faster (0.67-0.78 vs 0.88-1.0 s). A block is advised when it is handed out only in a program
 * seen to write its big blocks whole (thp_learn: two freed blocks in a row that were never advised
 * and had at least 7/8 of the sampled pages of their fresh part resident): one fault per 2 MiB
 * instead of 512 and far fewer TLB misses (large-block churn: 112 k -> 38 k faults, memset's CPU
 * time a third). Every 8th block then keeps 4 KiB pages as a probe (MADV_NOHUGEPAGE if its extent
 * was advised), so that a program that turns to sparse use is seen; one sparse block ends it. A
 * program that touches its big blocks sparsely never gets 2 MiB pages at hand-out, so its resident
 * set does not round up to 2 MiB per touched page. (The first version measured a THP first touch
 * of 1 GiB 2-4x slower than 4 KiB faults on this machine; on the same machine in December 2026 it
 * took 2.0-2.7 s of CPU against 3.4-3.9 s.)
 *
 * Freed mappings are kept in a cache of extents (up to HUGE_CACHE of them, HUGE_CACHE_BYTES in
 * all), each a run of whole sections whose first `ndirty` bytes may be resident (the rest was
 * purged or never touched). A request takes the cached extent at least its size whose resident
 * front covers most of it, the smallest such, and splits off the tail (which stays cached,
 * resident pages and all; no system call); without one, it gets a fresh mapping. What the block
 * still lacks of resident pages is then filled with the resident fronts of other cached extents,
 * moved into place with mremap(MREMAP_FIXED): the kernel moves page tables, 2 MiB at a time when
 * both sides are section aligned, without copying or faulting. So a program that frees a 20 MiB
 * buffer and asks for one of 23 MiB (mimalloc-bench's malloc-large) faults nothing in again as
 * long as 23 MiB of freed pages are cached. Resident cached bytes stay within
 * max(HUGE_DIRTY_MIN, live huge bytes / 2): a freed mapping keeps as much of its front resident as
 * fits and the rest is purged (reads as zero). A calloc takes the extent with the fewest resident
 * bytes, purges those, and never gathers. realloc grows a block into the cached extent right
 * after it (often its own split-off tail) or into free address space, and a shrink's tail becomes
 * a cached extent. The tick unmaps extents unused for decay_ms.
 *
 * A block gathered from several extents is several VMAs. mremap resizes only within one VMA, so
 * such a block shrinks by munmap, grows in place by MAP_FIXED_NOREPLACE, and moves range by range
 * (move_range: kernels before 6.17 move one VMA per call, so a range that fails is moved in halves).
 *
 * Locking: huge_lock protects the descriptor free list, the cache, the live list and the counters;
 * a block's other fields belong to whoever holds the block (a cached extent is held by the cache,
 * an extent taken out of it by the thread that took it). pagemap_set and meta_alloc take their
 * own locks and are never called under huge_lock. */
#include "zones/zones.h"

int huge_thp = 1;
static os_lock_t huge_lock = OS_LOCK_INIT(LOCK_RANK_HUGE);
static struct huge_block *free_descs;
static size_t huge_bytes_total, huge_count;
#define HUGE_CACHE 16
#define HUGE_CACHE_BYTES ((size_t)512 << 20)
#define HUGE_GATHER 6 /* extents moved into one request at most (each move may add a kernel VMA) */
static struct huge_block *cache; /* freed extents, newest first */
static size_t cache_bytes, cache_count, cache_dirty; /* cache_dirty: sum of the extents' ndirty */
#define HUGE_DIRTY_MIN ((size_t)64 << 20)
static struct huge_block *live_head;
/* Unadvised freed blocks found densely written in a row (saturating at 8; a sparse one resets
 * it): from THP_DENSE_RUN on, blocks are advised MADV_HUGEPAGE when handed out (huge_thp only),
 * except every THP_PROBE-th, which keeps 4 KiB pages so that its use is seen at its free. */
static unsigned thp_dense, thp_count;
#define THP_DENSE_RUN 2
#define THP_PROBE 8

static void live_add_locked(struct huge_block *hb)
{
    bsl_assert_locked(&huge_lock);
    hb->prev_live = NULL;
    hb->next_live = live_head;
    if (live_head)
        live_head->prev_live = hb;
    live_head = hb;
}

static void live_del_locked(struct huge_block *hb)
{
    bsl_assert_locked(&huge_lock);
    if (hb->prev_live)
        hb->prev_live->next_live = hb->next_live;
    else
        live_head = hb->next_live;
    if (hb->next_live)
        hb->next_live->prev_live = hb->prev_live;
}

static void cache_push_locked(struct huge_block *hb)
{
    bsl_assert_locked(&huge_lock);
    hb->next_free = cache;
    cache = hb;
    cache_bytes += hb->map_size;
    cache_count++;
    cache_dirty += hb->ndirty;
}

static struct huge_block *cache_unlink_locked(struct huge_block **pp)
{
    bsl_assert_locked(&huge_lock);
    struct huge_block *hb = *pp;
    *pp = hb->next_free;
    cache_bytes -= hb->map_size;
    cache_count--;
    cache_dirty -= hb->ndirty;
    return hb;
}

/* Extents over the cache's limits, oldest first (the list is newest first: its tail), taken out
 * onto *out for the caller to unmap outside the lock. */
static void cache_trim_locked(struct huge_block **out)
{
    bsl_assert_locked(&huge_lock);
    while (cache_count > HUGE_CACHE || cache_bytes > HUGE_CACHE_BYTES) {
        struct huge_block **pp = &cache;
        while ((*pp)->next_free)
            pp = &(*pp)->next_free;
        struct huge_block *hb = cache_unlink_locked(pp);
        hb->next_free = *out;
        *out = hb;
    }
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* The cached extent of `zone`, based at a multiple of `align` and at least `map` bytes, a request
 * of `map` bytes should take, taken out of the cache, or NULL: for malloc, the one whose resident
 * front covers most of the request, then the smallest; for calloc (`zero`), the one with the fewest
 * resident bytes to purge, then the smallest. */
static struct huge_block *cache_take(size_t map, size_t align, int zone, int zero)
{
    struct huge_block **pp, **fit = NULL;
    os_lock(&huge_lock);
    for (pp = &cache; *pp; pp = &(*pp)->next_free) {
        struct huge_block *c = *pp;
        if (c->zone != zone || (huge_base(c) & (align - 1)) != 0 || c->map_size < map)
            continue;
        if (!fit) {
            fit = pp;
            continue;
        }
        struct huge_block *f = *fit;
        size_t cc = min_size(c->ndirty, map), fc = min_size(f->ndirty, map);
        if (zero ? (cc < fc || (cc == fc && c->map_size < f->map_size))
                 : (cc > fc || (cc == fc && c->map_size < f->map_size)))
            fit = pp;
    }
    struct huge_block *hb = fit ? cache_unlink_locked(fit) : NULL;
    os_unlock(&huge_lock);
    return hb;
}

/* Whether the cache holds resident bytes (read without the lock: a hint). */
static int cache_has_dirty(void) { return __atomic_load_n(&cache_dirty, __ATOMIC_RELAXED) != 0; }

static struct huge_block *desc_get(void)
{
    os_lock(&huge_lock);
    struct huge_block *hb = free_descs;
    if (hb)
        free_descs = hb->next_free;
    os_unlock(&huge_lock);
    if (!hb)
        hb = meta_alloc(sizeof(*hb));
    return hb;
}

static void desc_put(struct huge_block *hb)
{
    os_lock(&huge_lock);
    hb->next_free = free_descs;
    free_descs = hb;
    os_unlock(&huge_lock);
}

static void account(long bytes, long count)
{
    os_lock(&huge_lock);
    huge_bytes_total += (size_t)bytes;
    huge_count += (size_t)count;
    os_unlock(&huge_lock);
}

static size_t section_round(size_t size) { return (size + SECTION_SIZE - 1) & ~(SECTION_SIZE - 1); }

static void unmap_block(struct huge_block *hb)
{
    pagemap_set(huge_base(hb), hb->map_size, 0); /* before the range goes back to the kernel */
    os_release((void *)huge_base(hb), hb->map_size);
    desc_put(hb);
}

static void unmap_list(struct huge_block *hb)
{
    while (hb) {
        struct huge_block *next = hb->next_free;
        unmap_block(hb);
        hb = next;
    }
}

/* Back into the cache (newest), trimmed to its limits. */
static void cache_put(struct huge_block *hb)
{
    struct huge_block *old = NULL;
    os_lock(&huge_lock);
    cache_push_locked(hb);
    cache_trim_locked(&old);
    os_unlock(&huge_lock);
    unmap_list(old);
}

/* Cut the extent or block hb (held, not cached) to its first `map` bytes; the rest becomes an
 * extent of its own, resident pages and all, returned for the caller to cache. NULL when no
 * descriptor could be had (hb is unchanged). */
static struct huge_block *split_tail(struct huge_block *hb, size_t map)
{
    struct huge_block *t = desc_get();
    if (!t)
        return NULL;
    uintptr_t base = huge_base(hb);
    t->xbase = (base + map) ^ HUGE_XBASE;
    t->map_size = hb->map_size - map;
    t->usable = t->map_size;
    t->ndirty = hb->ndirty > map ? hb->ndirty - map : 0;
    t->zone = hb->zone;
    t->live = 0;
    t->advised = hb->advised;
    t->stamp_ms = hb->stamp_ms;
    if (pagemap_set(base + map, t->map_size, (uintptr_t)t | PAGEMAP_HUGE_TAG) != 0) {
        pagemap_set(base + map, t->map_size, (uintptr_t)hb | PAGEMAP_HUGE_TAG);
        desc_put(t);
        return NULL;
    }
    hb->map_size = hb->usable = map;
    hb->ndirty = min_size(hb->ndirty, map);
    return t;
}

/* A freed extent (not live, not accounted) into the cache: its front stays resident as far as the
 * cached resident bytes stay within half the live huge bytes (or HUGE_DIRTY_MIN); the rest is
 * purged. */
static void cache_free_extent(struct huge_block *hb)
{
    os_lock(&huge_lock);
    size_t dirty_max = huge_bytes_total / 2 > HUGE_DIRTY_MIN ? huge_bytes_total / 2 : HUGE_DIRTY_MIN;
    size_t room = cache_dirty < dirty_max ? (dirty_max - cache_dirty) & ~(SECTION_SIZE - 1) : 0;
    os_unlock(&huge_lock);
    hb->ndirty = min_size(hb->map_size, room);
    if (hb->ndirty < hb->map_size)
        os_purge((void *)(huge_base(hb) + hb->ndirty), hb->map_size - hb->ndirty);
    hb->stamp_ms = os_now_ms();
    cache_put(hb);
}

/* Move [from, from + len) to [to, to + len), replacing what is there (whole sections: page tables
 * move, 2 MiB at a time when both sides are section aligned; nothing is copied or faulted). A
 * kernel before 6.17 moves one VMA per mremap, and a range gathered from several extents spans
 * several: such a range is moved in halves. Returns the bytes moved, a prefix of the range. */
static size_t move_range(uintptr_t from, uintptr_t to, size_t len)
{
    if (os_remap((void *)from, len, len, 1, (void *)to))
        return len;
    if (len <= SECTION_SIZE)
        return 0;
    size_t half = (len / 2) & ~(SECTION_SIZE - 1);
    size_t moved = move_range(from, to, half);
    return moved < half ? moved : half + move_range(from + half, to + half, len - half);
}

/* Fill the live block hb past its resident front (hb->ndirty) with the resident fronts of other
 * cached extents of its zone, the most resident first, moved in (nothing is copied or faulted);
 * hb->ndirty grows with them. */
static void gather(struct huge_block *hb)
{
    uintptr_t base = huge_base(hb);
    size_t off = hb->ndirty;
    for (int moves = 0; off < hb->map_size && moves < HUGE_GATHER; moves++) {
        struct huge_block **pp, **best = NULL, *b;
        os_lock(&huge_lock);
        for (pp = &cache; *pp; pp = &(*pp)->next_free)
            if ((*pp)->zone == hb->zone && (*pp)->ndirty && (!best || (*pp)->ndirty > (*best)->ndirty))
                best = pp;
        b = best ? cache_unlink_locked(best) : NULL;
        os_unlock(&huge_lock);
        if (!b)
            return;
        uintptr_t from = huge_base(b);
        size_t len = min_size(b->ndirty, hb->map_size - off);
        pagemap_set(from, len, 0); /* the source range is vacated by the move */
        size_t moved = move_range(from, base + off, len);
        if (moved < len)
            pagemap_set(from + moved, len - moved, (uintptr_t)b | PAGEMAP_HUGE_TAG);
        off += moved;
        hb->ndirty = off;
        if (moved == b->map_size) {
            desc_put(b);
        } else {
            b->xbase = (from + moved) ^ HUGE_XBASE;
            b->map_size -= moved;
            b->usable = b->map_size;
            b->ndirty -= moved;
            cache_put(b);
        }
        if (moved < len)
            return;
    }
}

/* Whether the freed block hb, never advised, was written densely: at least 7/8 of the pages of up
 * to four sections (first, last and two between) of the part that was not resident when it was
 * handed out (recycled pages say nothing of this block's use) resident. A program whose big blocks
 * are written whole (buffers, arrays, matrices) gets 2 MiB pages for the next ones: one fault per
 * 2 MiB instead of 512, and far fewer TLB misses; one that touches its big blocks sparsely does
 * not, so its resident set does not round up to 2 MiB per touched page. (A block with 2 MiB pages
 * reads dense however it is used: only unadvised ones teach.) */
static void thp_learn(struct huge_block *hb)
{
    uintptr_t base = huge_base(hb) + hb->ndirty;
    size_t nsec = hb->ndirty < hb->map_size ? (hb->map_size - hb->ndirty) >> SECTION_SHIFT : 0;
    size_t step = nsec > 4 ? (nsec - 1) / 3 : 1;
    int pages = 0, resident = 0;
    if (nsec == 0)
        return;
    for (size_t i = 0, k = 0; i < nsec && k < 4; i += step, k++) {
        int r = os_resident_pages((void *)(base + (i << SECTION_SHIFT)), SECTION_SIZE);
        if (r < 0)
            return;
        resident += r;
        pages += (int)(SECTION_SIZE >> PAGE_SHIFT);
    }
    unsigned d = __atomic_load_n(&thp_dense, __ATOMIC_RELAXED);
    d = resident * 8 >= pages * 7 ? (d < 8 ? d + 1 : 8) : 0;
    __atomic_store_n(&thp_dense, d, __ATOMIC_RELAXED);
}

static int thp_dense_mode(void) { return huge_thp && __atomic_load_n(&thp_dense, __ATOMIC_RELAXED) >= THP_DENSE_RUN; }

/* A block being handed out in a program that writes its big blocks whole: 2 MiB pages (advise),
 * or 4 KiB ones for a probe (a cached extent keeps the advice of its last life). */
static void thp_set(struct huge_block *hb, int advise)
{
    if (hb->advised != advise) {
        os_advise_huge((void *)huge_base(hb), hb->map_size, advise);
        hb->advised = (uint8_t)advise;
    }
}

void *huge_alloc(size_t size, size_t align, int zone, int zero)
{
    if (size > ((size_t)1 << ADDR_BITS))
        return NULL;
    size_t map = section_round(size);
    if (align < SECTION_SIZE)
        align = SECTION_SIZE;
    int dense = thp_dense_mode();
    int advise = dense && __atomic_add_fetch(&thp_count, 1, __ATOMIC_RELAXED) % THP_PROBE != 0;
    struct huge_block *hb = cache_take(map, align, zone, zero);
    if (hb && hb->map_size > map) {
        struct huge_block *t = split_tail(hb, map);
        if (t) {
            cache_put(t);
        } else if (hb->map_size / 2 > map) {
            cache_put(hb); /* no descriptor for the tail, and too big to hand out whole */
            hb = NULL;
        }
    }
    if (hb) {
        account((long)hb->map_size, 1);
        hb->live = 1;
        hb->usable = hb->map_size;
        hb->stamp_ms = os_now_ms();
        os_lock(&huge_lock);
        live_add_locked(hb);
        os_unlock(&huge_lock);
        void *p = (void *)huge_base(hb);
        if (zero && hb->ndirty) {
            os_purge(p, hb->ndirty);
            hb->ndirty = 0;
        } else if (!zero && hb->ndirty < hb->map_size) {
            gather(hb);
        }
        if (dense)
            thp_set(hb, advise);
        return p;
    }
    hb = desc_get();
    if (!hb)
        return NULL;
    /* Charged to the kernel's overcommit accounting: a block that cannot possibly be backed (in the
     * heuristic mode, more than RAM + swap) fails here with ENOMEM, as glibc's would, instead of
     * succeeding and getting the program OOM-killed when it is touched. */
    void *p = os_map_committed(map, align, zone == ZONE_LOW32);
    if (!p && huge_release_cache()) /* a cached mapping of another size may be in the way */
        p = os_map_committed(map, align, zone == ZONE_LOW32);
    if (!p) {
        desc_put(hb);
        return NULL;
    }
    hb->xbase = (uintptr_t)p ^ HUGE_XBASE;
    hb->map_size = map;
    hb->usable = map;
    hb->zone = (uint8_t)zone;
    hb->live = 1;
    hb->advised = 0;
    hb->ndirty = 0;
    hb->stamp_ms = os_now_ms();
    if (pagemap_set(huge_base(hb), map, (uintptr_t)hb | PAGEMAP_HUGE_TAG) != 0) {
        os_release(p, map);
        desc_put(hb);
        return NULL;
    }
    account((long)map, 1);
    os_lock(&huge_lock);
    live_add_locked(hb);
    os_unlock(&huge_lock);
    if (advise)
        thp_set(hb, 1);
    if (!zero && cache_has_dirty()) /* smaller freed extents, still resident: moved in */
        gather(hb);
    return p;
}

void huge_free(struct huge_block *hb)
{
    account(-(long)hb->map_size, -1);
    hb->live = 0; /* its pagemap entries stay while cached: a second free is still caught */
    os_lock(&huge_lock);
    live_del_locked(hb);
    os_unlock(&huge_lock);
    if (huge_thp && !hb->advised)
        thp_learn(hb);
    cache_free_extent(hb);
}

BSL_RARE size_t huge_offset(size_t bytes)
{
    size_t done = 0;
    while (done < bytes && __atomic_load_n(&cache_dirty, __ATOMIC_RELAXED)) {
        struct huge_block **pp, **old = NULL;
        os_lock(&huge_lock);
        for (pp = &cache; *pp; pp = &(*pp)->next_free)
            if ((*pp)->ndirty && (!old || (*pp)->stamp_ms < (*old)->stamp_ms))
                old = pp;
        struct huge_block *hb = old ? cache_unlink_locked(old) : NULL;
        os_unlock(&huge_lock);
        if (!hb)
            break;
        size_t cut = section_round(bytes - done);
        if (cut > hb->ndirty)
            cut = hb->ndirty;
        os_purge((void *)(huge_base(hb) + hb->ndirty - cut), cut); /* the back of its resident front */
        hb->ndirty -= cut;
        done += cut;
        cache_put(hb);
    }
    return done;
}

size_t huge_release_cache(void)
{
    os_lock(&huge_lock);
    size_t bytes = cache_bytes;
    os_unlock(&huge_lock);
    if (bytes)
        huge_tick(os_now_ms(), 0);
    return bytes;
}

size_t huge_live_bytes(void) { return __atomic_load_n(&huge_bytes_total, __ATOMIC_RELAXED); }

BSL_RARE void huge_tick(uint64_t now, uint64_t age_ms)
{
    struct huge_block *old = NULL;
    os_lock(&huge_lock);
    for (struct huge_block *hb = live_head; hb && huge_thp; hb = hb->next_live)
        if (!hb->advised && now - hb->stamp_ms >= 1000) {
            os_advise_huge((void *)huge_base(hb), hb->map_size, 1);
            hb->advised = 1;
        }
    for (struct huge_block **pp = &cache; *pp;) {
        struct huge_block *c = *pp;
        if (age_ms == 0 || now - c->stamp_ms >= age_ms) {
            cache_unlink_locked(pp);
            c->next_free = old;
            old = c;
        } else {
            pp = &c->next_free;
        }
    }
    os_unlock(&huge_lock);
    unmap_list(old);
}

/* Ordering rule: a range's pagemap entries are cleared BEFORE the range goes back to the kernel
 * (munmap, a shrinking mremap, or a moving mremap that vacates it): the moment it is returned,
 * another thread's mmap may get it and register it, and a late clear would unregister that block. */
/* The cached extent that starts where hb ends, taken out of the cache, or NULL. */
static struct huge_block *cache_take_after(struct huge_block *hb)
{
    uintptr_t end = huge_base(hb) + hb->map_size;
    struct huge_block **pp, *c = NULL;
    os_lock(&huge_lock);
    for (pp = &cache; *pp; pp = &(*pp)->next_free)
        if (huge_base(*pp) == end && (*pp)->zone == hb->zone) {
            c = cache_unlink_locked(pp);
            break;
        }
    os_unlock(&huge_lock);
    return c;
}

void *huge_realloc(struct huge_block *hb, size_t size)
{
    if (size == 0 || size > ((size_t)1 << ADDR_BITS)) /* section_round would wrap to a shrink */
        return NULL;
    size_t map = section_round(size), old = hb->map_size;
    uintptr_t base = huge_base(hb), tag = (uintptr_t)hb | PAGEMAP_HUGE_TAG;
    if (map == old)
        return (void *)base;
    if (map < old) { /* shrink in place: the tail is a freed extent */
        struct huge_block *t = split_tail(hb, map);
        if (!t) {
            pagemap_set(base + map, old - map, 0);
            if (!os_remap((void *)base, old, map, 0, NULL) && os_release((void *)(base + map), old - map) != 0) {
                pagemap_set(base + map, old - map, tag);
                return NULL;
            }
        }
        account((long)map - (long)old, 0);
        hb->map_size = hb->usable = map;
        hb->ndirty = min_size(hb->ndirty, map);
        if (t)
            cache_free_extent(t);
        return (void *)base;
    }
    /* Grow in place into a cached extent right after the block (after a split, its tail often
     * is), taking what it needs of it... */
    struct huge_block *c = cache_take_after(hb);
    if (c) {
        size_t need = map - old;
        struct huge_block *t = c->map_size > need ? split_tail(c, need) : NULL;
        if (c->map_size > need && !t) {
            cache_put(c);
        } else {
            pagemap_set(base + old, c->map_size, tag);
            account((long)c->map_size, 0);
            hb->map_size = hb->usable = old + c->map_size;
            desc_put(c);
            if (t)
                cache_put(t);
            return huge_realloc(hb, size); /* done, or more to grow */
        }
    }
    /* ...or into free address space after it: by mremap, or by a mapping right after it when the
     * block is several VMAs (gathered)... */
    void *p = NULL;
    if (hb->zone != ZONE_LOW32 || base + map <= ((uintptr_t)1 << 32)) {
        p = os_remap((void *)base, old, map, 0, NULL);
        if (!p && os_map_committed_at((void *)(base + old), map - old) == 0)
            p = (void *)base;
    }
    if (p) {
        if (pagemap_set(base + old, map - old, tag) != 0) {
            os_release((void *)(base + old), map - old);
            return NULL;
        }
    } else {
        /* ...else move the pages (no copy) into a fresh 2 MiB-aligned mapping: one mremap for a
         * block of one VMA, page-table moves range by range for a gathered one. */
        void *dst = os_reserve(map, SECTION_SIZE, hb->zone == ZONE_LOW32);
        if (!dst)
            return NULL;
        if (pagemap_set((uintptr_t)dst, map, tag) != 0) {
            os_release(dst, map);
            return NULL;
        }
        pagemap_set(base, old, 0); /* the old range is vacated by the move */
        p = os_remap((void *)base, old, map, 1, dst);
        if (!p && os_commit_fixed(dst, map) == 0) {
            size_t moved = move_range(base, (uintptr_t)dst, old);
            if (moved == old)
                p = dst;
            else if (move_range((uintptr_t)dst, base, moved) != moved)
                os_abort(); /* half of the block here, half there, and it cannot move back */
        }
        if (!p) {
            pagemap_set(base, old, tag);
            pagemap_set((uintptr_t)dst, map, 0);
            os_release(dst, map);
            return NULL;
        }
        hb->xbase = (uintptr_t)p ^ HUGE_XBASE;
        hb->advised = 0; /* a moved mapping keeps its advice (mremap moves the VMA's flags) */
        if (huge_thp && hb->stamp_ms + 1000 <= os_now_ms()) {
            os_advise_huge(p, map, 1);
            hb->advised = 1;
        }
    }
    account((long)map - (long)old, 0);
    hb->map_size = hb->usable = map;
    return p;
}

void huge_fork_locks(os_lock_visit_fn visit) { visit(&huge_lock); }

void huge_stats(size_t *bytes, size_t *count, size_t *cached, size_t *cached_dirty)
{
    os_lock(&huge_lock);
    *bytes = huge_bytes_total;
    *count = huge_count;
    *cached = cache_bytes;
    if (cached_dirty)
        *cached_dirty = cache_dirty;
    os_unlock(&huge_lock);
}

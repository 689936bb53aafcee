/* The HUGE zone: blocks above the largest buddy block, each its own 2 MiB-aligned mapping
 * (whole sections, so a section never has two owners), resized with mremap.
 *
 * Transparent huge pages are advised lazily: a fresh block gets 4 KiB faults, and only a block that
 * has lived a second (the tick checks) is advised MADV_HUGEPAGE for khugepaged to collapse. On
 * this machine a 2 MiB THP fault on touch made first-touch of 1 GiB 2-4x slower (1.2-2.5 s vs
 * 0.55 s) while random reads over a long-lived 1 GiB heap got 22 % faster (0.67-0.78 vs 0.88-1.0 s).
 *
 * Freed mappings are kept in a small cache (up to HUGE_CACHE blocks, HUGE_CACHE_BYTES in all) and
 * reused for any request: the closest in size is resized with mremap (a shrink gives the tail back,
 * a growth keeps the resident pages and moves them if it must, never copying), so a program that
 * frees a 20 MiB buffer and asks for another (mimalloc-bench's malloc-large) does not fault its
 * pages in again. They stay resident (dirty) while the dirty ones add up to at most
 * max(HUGE_DIRTY_MIN, live huge bytes / 4); past that a freed mapping is purged at once (no RSS,
 * reads as zero). A calloc that gets a dirty one purges it. The tick unmaps those unused for
 * decay_ms.
 *
 * Locking: huge_lock protects the descriptor free list, the cache, the live list and the counters;
 * a block's other fields belong to whoever holds the block. */
#include "zones/zones.h"

int huge_thp = 1;
static os_lock_t huge_lock = OS_LOCK_INIT(LOCK_RANK_HUGE);
static struct huge_block *free_descs;
static size_t huge_bytes_total, huge_count;
#define HUGE_CACHE 8
#define HUGE_CACHE_BYTES ((size_t)512 << 20)
static struct huge_block *cache; /* freed mappings, newest first */
static size_t cache_bytes, cache_count, cache_dirty; /* cache_dirty: bytes of the dirty ones */
#define HUGE_DIRTY_MIN ((size_t)64 << 20)
static struct huge_block *live_head;

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

/* The cached mapping of `zone` aligned to `align` closest to `map` bytes (the smallest at least
 * that big, else the biggest), taken out of the cache. */
static struct huge_block *cache_take(size_t map, size_t align, int zone)
{
    struct huge_block **pp, **best = NULL;
    os_lock(&huge_lock);
    for (pp = &cache; *pp; pp = &(*pp)->next_free) {
        struct huge_block *c = *pp;
        if (c->zone != zone || (huge_base(c) & (align - 1)) != 0)
            continue;
        if (!best) {
            best = pp;
            continue;
        }
        size_t b = (*best)->map_size;
        if (c->map_size >= map ? (b < map || c->map_size < b) : (b < map && c->map_size > b))
            best = pp;
    }
    struct huge_block *hb = NULL;
    if (best) {
        hb = *best;
        *best = hb->next_free;
        cache_bytes -= hb->map_size;
        cache_count--;
        if (hb->dirty)
            cache_dirty -= hb->map_size;
    }
    os_unlock(&huge_lock);
    return hb;
}

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

void *huge_alloc(size_t size, size_t align, int zone, int zero)
{
    if (size > ((size_t)1 << ADDR_BITS))
        return NULL;
    size_t map = section_round(size);
    if (align < SECTION_SIZE)
        align = SECTION_SIZE;
    struct huge_block *hb = cache_take(map, align, zone);
    if (hb) {
        account((long)hb->map_size, 1);
        hb->live = 1;
        hb->usable = hb->map_size;
        hb->stamp_ms = os_now_ms();
        os_lock(&huge_lock);
        live_add_locked(hb);
        os_unlock(&huge_lock);
        /* To the size asked for; an alignment above a section needs a block that stays put. */
        void *p = hb->map_size == map || align > SECTION_SIZE ? (void *)huge_base(hb) : huge_realloc(hb, map);
        if (p && hb->map_size >= map && hb->map_size / 2 <= map) { /* usable: at most twice the request */
            if (zero && hb->dirty)
                os_purge(p, hb->map_size);
            hb->dirty = 0;
            return p;
        }
        huge_free(hb); /* could not resize: back to the cache, and a fresh mapping */
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
    hb->dirty = 0;
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
    return p;
}

static void unmap_block(struct huge_block *hb)
{
    pagemap_set(huge_base(hb), hb->map_size, 0); /* before the range goes back to the kernel */
    os_release((void *)huge_base(hb), hb->map_size);
    desc_put(hb);
}

void huge_free(struct huge_block *hb)
{
    account(-(long)hb->map_size, -1);
    hb->live = 0; /* its pagemap entries stay while cached: a second free is still caught */
    os_lock(&huge_lock);
    live_del_locked(hb);
    int keep = cache_count < HUGE_CACHE && cache_bytes + hb->map_size <= HUGE_CACHE_BYTES;
    /* Resident free huge memory follows the live heap: dirty while it stays within a quarter of
     * the live huge bytes (or HUGE_DIRTY_MIN), purged otherwise. */
    size_t dirty_max = huge_bytes_total / 4 > HUGE_DIRTY_MIN ? huge_bytes_total / 4 : HUGE_DIRTY_MIN;
    int dirty = keep && cache_dirty + hb->map_size <= dirty_max;
    if (keep) {
        cache_count++;
        cache_bytes += hb->map_size;
        if (dirty)
            cache_dirty += hb->map_size;
    }
    os_unlock(&huge_lock);
    if (!keep) {
        unmap_block(hb);
        return;
    }
    if (!dirty)
        os_purge((void *)huge_base(hb), hb->map_size);
    hb->dirty = (uint8_t)dirty;
    hb->stamp_ms = os_now_ms();
    os_lock(&huge_lock);
    hb->next_free = cache;
    cache = hb;
    os_unlock(&huge_lock);
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

void huge_tick(uint64_t now, uint64_t age_ms)
{
    struct huge_block *old = NULL;
    os_lock(&huge_lock);
    for (struct huge_block *hb = live_head; hb && huge_thp; hb = hb->next_live)
        if (!hb->advised && now - hb->stamp_ms >= 1000) {
            os_advise_huge((void *)huge_base(hb), hb->map_size);
            hb->advised = 1;
        }
    for (struct huge_block **pp = &cache; *pp;) {
        struct huge_block *c = *pp;
        if (age_ms == 0 || now - c->stamp_ms >= age_ms) {
            *pp = c->next_free;
            cache_bytes -= c->map_size;
            cache_count--;
            if (c->dirty)
                cache_dirty -= c->map_size;
            c->next_free = old;
            old = c;
        } else {
            pp = &c->next_free;
        }
    }
    os_unlock(&huge_lock);
    while (old) {
        struct huge_block *c = old;
        old = c->next_free;
        unmap_block(c);
    }
}

/* Ordering rule: a range's pagemap entries are cleared BEFORE the range goes back to the kernel
 * (munmap, a shrinking mremap, or a moving mremap that vacates it): the moment it is returned,
 * another thread's mmap may get it and register it, and a late clear would unregister that block. */
void *huge_realloc(struct huge_block *hb, size_t size)
{
    size_t map = section_round(size);
    uintptr_t tag = (uintptr_t)hb | PAGEMAP_HUGE_TAG;
    if (map == hb->map_size)
        return (void *)huge_base(hb);
    if (map < hb->map_size) { /* shrink in place */
        pagemap_set(huge_base(hb) + map, hb->map_size - map, 0);
        void *p = os_remap((void *)huge_base(hb), hb->map_size, map, 0, NULL);
        if (!p) {
            pagemap_set(huge_base(hb) + map, hb->map_size - map, tag);
            return NULL;
        }
        account((long)map - (long)hb->map_size, 0);
        hb->map_size = hb->usable = map;
        return p;
    }
    /* Grow in place when the address space after the block is free (then it is ours)... */
    void *p = os_remap((void *)huge_base(hb), hb->map_size, map, 0, NULL);
    if (p) {
        if (pagemap_set(huge_base(hb) + hb->map_size, map - hb->map_size, tag) != 0) {
            os_remap(p, map, hb->map_size, 0, NULL);
            return NULL;
        }
    } else {
        /* ...else move the pages (no copy) into a fresh 2 MiB-aligned reservation. */
        void *dst = os_reserve(map, SECTION_SIZE, hb->zone == ZONE_LOW32);
        if (!dst)
            return NULL;
        if (pagemap_set((uintptr_t)dst, map, tag) != 0) {
            os_release(dst, map);
            return NULL;
        }
        pagemap_set(huge_base(hb), hb->map_size, 0); /* the old range is vacated by the move */
        p = os_remap((void *)huge_base(hb), hb->map_size, map, 1, dst);
        if (!p) {
            pagemap_set(huge_base(hb), hb->map_size, tag);
            pagemap_set((uintptr_t)dst, map, 0);
            os_release(dst, map);
            return NULL;
        }
        hb->xbase = (uintptr_t)p ^ HUGE_XBASE;
        hb->advised = 0; /* a moved mapping keeps its advice (mremap moves the VMA's flags) */
        if (huge_thp && hb->stamp_ms + 1000 <= os_now_ms()) {
            os_advise_huge(p, map);
            hb->advised = 1;
        }
    }
    account((long)map - (long)hb->map_size, 0);
    hb->map_size = hb->usable = map;
    return p;
}

void huge_fork_locks(os_lock_visit_fn visit) { visit(&huge_lock); }

void huge_stats(size_t *bytes, size_t *count, size_t *cached)
{
    os_lock(&huge_lock);
    *bytes = huge_bytes_total;
    *count = huge_count;
    *cached = cache_bytes;
    os_unlock(&huge_lock);
}

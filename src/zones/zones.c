/* Zones, arenas and the pagemap. Locks (ranks in os/lock_rank.h): zone->lock, huge_lock (huge.c,
 * which takes pagemap_lock and meta_lock, never while holding huge_lock), pagemap_lock, meta_lock.
 * zone->lock protects only the zone's counters: an arena belongs to its buddy shard. */
#include "zones/zones.h"

#include <stdint.h>

struct zone zones[NR_ZONES];
BSL_BIG_BSS uintptr_t *pagemap_top[1u << (ADDR_BITS - 34)];
BSL_BIG_BSS uint64_t arena_bitmap[1u << (ADDR_BITS - ARENA_SHIFT - 6)];
static os_lock_t pagemap_lock = OS_LOCK_INIT(LOCK_RANK_PAGEMAP);

#define LEAF_ENTRIES (1u << (34 - SECTION_SHIFT))

/* ---- metadata bump allocator ---- */
#define META_CHUNK ((size_t)4 << 20)
static os_lock_t meta_lock = OS_LOCK_INIT(LOCK_RANK_META);
static uintptr_t meta_cur, meta_end;
static size_t meta_total;
/* Every metadata reservation starts with this header (64 bytes), so they can be listed. */
struct meta_chunk {
    struct meta_chunk *next;
    size_t size;
};
static struct meta_chunk *meta_chunks; /* meta_lock */

void meta_for_each_chunk(void (*fn)(uintptr_t start, size_t size, void *arg), void *arg)
{
    /* Chunks are only ever prepended and never freed, and a chunk's header never changes: take the
     * head under the lock, then walk without it, so that fn may allocate. */
    os_lock(&meta_lock);
    struct meta_chunk *head = meta_chunks;
    os_unlock(&meta_lock);
    for (struct meta_chunk *c = head; c; c = c->next)
        fn((uintptr_t)c, c->size, arg);
}

/* The words of arena_bitmap that ever held a bit: [arena_word_lo, arena_word_hi], widened before
 * the bit is set (atomics, no lock). The bitmap spans the whole address space (256 KiB); walking
 * all of it cost the leak scan of a short program 0.2 ms and faulted in its untouched pages. */
static size_t arena_word_lo = SIZE_MAX, arena_word_hi;

static void arena_words_widen(size_t w)
{
    size_t v = __atomic_load_n(&arena_word_lo, __ATOMIC_RELAXED);
    while (w < v && !__atomic_compare_exchange_n(&arena_word_lo, &v, w, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
    v = __atomic_load_n(&arena_word_hi, __ATOMIC_RELAXED);
    while (w > v && !__atomic_compare_exchange_n(&arena_word_hi, &v, w, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

void zones_for_each_arena(void (*fn)(uintptr_t base, void *arg), void *arg)
{
    size_t lo = __atomic_load_n(&arena_word_lo, __ATOMIC_ACQUIRE), hi = __atomic_load_n(&arena_word_hi, __ATOMIC_ACQUIRE);
    for (size_t wi = lo; wi <= hi && wi < sizeof(arena_bitmap) / sizeof(arena_bitmap[0]); wi++) {
        uint64_t bits = __atomic_load_n(&arena_bitmap[wi], __ATOMIC_RELAXED);
        while (bits) {
            unsigned bit = (unsigned)__builtin_ctzll(bits);
            bits &= bits - 1;
            fn(((uintptr_t)wi * 64 + bit) << ARENA_SHIFT, arg);
        }
    }
}

/* One pagemap entry per section, tagged; a block's sections are consecutive entries. */
void zones_for_each_huge(void (*fn)(uintptr_t base, size_t usable, void *arg), void *arg)
{
    for (size_t t = 0; t < sizeof(pagemap_top) / sizeof(pagemap_top[0]); t++) {
        uintptr_t *leaf = __atomic_load_n(&pagemap_top[t], __ATOMIC_ACQUIRE);
        if (!leaf)
            continue;
        uintptr_t prev = 0;
        for (size_t i = 0; i < (1u << (34 - SECTION_SHIFT)); i++) {
            uintptr_t e = __atomic_load_n(&leaf[i], __ATOMIC_RELAXED);
            if (e == prev || !(e & PAGEMAP_HUGE_TAG)) {
                prev = e;
                continue;
            }
            prev = e;
            const struct huge_block *hb = pagemap_huge(e);
            if (hb->live)
                fn(huge_base(hb), hb->usable, arg);
        }
    }
}

void *meta_alloc(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    os_lock(&meta_lock);
    if (meta_cur + size > meta_end) {
        size_t big = size + 64 > META_CHUNK;
        size_t chunk = big ? (size + 64 + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) : META_CHUNK;
        struct meta_chunk *c = os_reserve(chunk, PAGE_SIZE, 0);
        if (!c) {
            os_unlock(&meta_lock);
            return NULL;
        }
        c->size = chunk;
        c->next = meta_chunks;
        meta_chunks = c;
        meta_total += chunk;
        if (big) { /* a big one-off: keep the current chunk for small requests */
            os_unlock(&meta_lock);
            return (char *)c + 64;
        }
        meta_cur = (uintptr_t)c + 64;
        meta_end = (uintptr_t)c + chunk;
    }
    void *r = (void *)meta_cur;
    meta_cur += size;
    os_unlock(&meta_lock);
    return r; /* fresh anonymous memory: already zero */
}

size_t meta_bytes(void) { return __atomic_load_n(&meta_total, __ATOMIC_RELAXED); }

/* ---- pagemap ---- */
int pagemap_set(uintptr_t addr, size_t size, uintptr_t entry)
{
    os_lock(&pagemap_lock);
    for (uintptr_t a = addr; a < addr + size; a += SECTION_SIZE) {
        uintptr_t *leaf = pagemap_top[a >> 34];
        if (!leaf) {
            leaf = meta_alloc(LEAF_ENTRIES * sizeof(uintptr_t));
            if (!leaf) {
                os_unlock(&pagemap_lock);
                return -1;
            }
            __atomic_store_n(&pagemap_top[a >> 34], leaf, __ATOMIC_RELEASE);
        }
        __atomic_store_n(&leaf[(a >> SECTION_SHIFT) & (LEAF_ENTRIES - 1)], entry, __ATOMIC_RELEASE);
    }
    os_unlock(&pagemap_lock);
    return 0;
}

/* ---- zones ---- */
void zones_init(void)
{
    static const char *names[NR_ZONES] = {"LOW32", "NORMAL", "HUGE"};
    for (int z = 0; z < NR_ZONES; z++) {
        zones[z].name = names[z];
        os_lock_init(&zones[z].lock, LOCK_RANK_ZONE);
        /* Watermarks on free-but-committed (dirty) frames. Above high, a shard purges its oldest
         * dirty blocks down to low at once; below, only decay_ms purges. High was 256 MiB at first:
         * a program that frees and reallocates 150 MiB of large blocks (bench batch_random, size
         * mix) then paid a page fault per page on every round, 3.6x slower than jemalloc. */
        zones[z].wmark_min = 0;
        zones[z].wmark_low = ZONE_WMARK_LOW_DEFAULT;
        zones[z].wmark_high = ZONE_WMARK_HIGH_DEFAULT;
    }
}

void zones_cap_dirty(size_t max_bytes)
{
    size_t cap = max_bytes ? max_bytes >> PAGE_SHIFT : (size_t)-1;
    for (int z = 0; z < NR_ZONES; z++) {
        size_t high = ZONE_WMARK_HIGH_DEFAULT < cap ? ZONE_WMARK_HIGH_DEFAULT : cap;
        size_t low = ZONE_WMARK_LOW_DEFAULT < cap / 2 ? ZONE_WMARK_LOW_DEFAULT : cap / 2;
        __atomic_store_n(&zones[z].wmark_low, low, __ATOMIC_RELAXED);
        __atomic_store_n(&zones[z].wmark_high, high, __ATOMIC_RELAXED);
    }
}

struct arena *zone_grow(int zid, unsigned shard)
{
    struct zone *z = &zones[zid];
    void *base = os_reserve(ARENA_SIZE, ARENA_SIZE, zid == ZONE_LOW32);
    if (!base && huge_release_cache()) /* address space is short: cached huge mappings go first */
        base = os_reserve(ARENA_SIZE, ARENA_SIZE, zid == ZONE_LOW32);
    struct arena *ar = base ? meta_alloc(sizeof(*ar)) : NULL;
    if (!ar || pagemap_set((uintptr_t)base, ARENA_SIZE, (uintptr_t)ar) != 0) {
        if (base)
            os_release(base, ARENA_SIZE);
        return NULL; /* an arena struct may stay in metadata, unused */
    }
    ar->base = (uintptr_t)base;
    ar->pages = (struct page *)base;
    arena_words_widen(ar->base >> (ARENA_SHIFT + 6));
    __atomic_fetch_or(&arena_bitmap[ar->base >> (ARENA_SHIFT + 6)], (uint64_t)1 << ((ar->base >> ARENA_SHIFT) & 63),
                      __ATOMIC_RELEASE);
    ar->zone = (uint8_t)zid;
    ar->shard = (uint8_t)shard;
    ar->fresh = 0;
    os_lock(&z->lock);
    z->nr_arenas++;
    z->reserved += ARENA_SIZE;
    os_unlock(&z->lock);
    return ar;
}

struct arena *zone_arena_of(const void *addr)
{
    uintptr_t e = pagemap_entry(addr);
    return (e && !(e & PAGEMAP_HUGE_TAG)) ? (struct arena *)e : NULL;
}

void zones_fork_locks(os_lock_visit_fn visit)
{
    for (int z = 0; z < NR_ZONES; z++)
        visit(&zones[z].lock);
    huge_fork_locks(visit);
    visit(&pagemap_lock);
    visit(&meta_lock);
}

/* The public allocation API: maps sizes to layers (small -> slab, large -> buddy, huge -> zones)
 * and owns the glibc contract (errno, alignment, realloc edge cases, usable size, aliases). */
#include "malloc/debug.h"
#include "malloc/hooks.h"
#include "malloc/internal.h"
#include "oom/oom.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <string.h>

/* ---- the size router ----
 * Every allocation entry point ends here, by size and zone:
 *   small (a size class serves it)  -> a slab object: NORMAL through the per-CPU caches (malloc,
 *                                      calloc and memalign pop them inline and come here when the
 *                                      cache is empty), LOW32 from its kmem_cache directly (LOW32
 *                                      objects never enter the caches);
 *   large (up to MAX_ORDER_BYTES)   -> exactly as many buddy frames as it needs, in the zone;
 *   above, or the HUGE zone         -> a huge mapping in the zone.
 * Every path checks the OOM commit limits first (oom_commit_ok: over the hard limit after a
 * reclaim fails it) and, when the layer below refuses, lets the OOM policy reclaim and tries once
 * more. bsl_zone_malloc and realloc's moves reach it through zone_alloc. */
static inline void *small_get(int zone, unsigned c)
{
    if (zone == ZONE_NORMAL)
        return pcp_alloc_slow(c);
    void *p;
    return slab_alloc_bulk(zone, c, &p, 1, pcp_cpu_hint()) == 1 ? p : NULL;
}

static inline void *small_alloc_zone(int zone, unsigned c)
{
    if (PCP_HAVE_RSEQ && !pcp_use_rseq && zone == ZONE_NORMAL) { /* fallback mode: the fast path's sequence always fails */
        void *p = pcp_pop(c);
        if (likely(p)) {
            ((uintptr_t *)p)[1] = 0; /* clear the free key (small_out) */
            return p;
        }
    }
    bsl_ensure_init();
    if (unlikely(!oom_commit_ok(slab_class_size[c]))) { /* over the hard limit after reclaim */
        errno = ENOMEM;
        return NULL;
    }
    void *p = small_get(zone, c);
    if (unlikely(!p) && oom_alloc_failed(slab_class_size[c])) /* reclaimed: once more */
        p = small_get(zone, c);
    if (unlikely(!p))
        errno = ENOMEM;
    else
        ((uintptr_t *)p)[1] = 0; /* clear the free key (see slab_free_key) */
    bsl_tick_maybe();
    return p;
}

/* The NORMAL zone's small slow path: the per-CPU cache of class c is empty. */
static __attribute__((noinline)) void *small_alloc_slow(unsigned c) { return small_alloc_zone(ZONE_NORMAL, c); }

/* A large block leaves the allocator: mark its head and clear what calloc wants cleared. */
static void *large_out(struct page *pg, size_t npages, size_t n, int zeroed, int guard, int zero)
{
    pg->npages = (uint32_t)(npages + guard);
    pg->large_rec = 0; /* the buddy's fields were there (slab/recs.c) */
    __atomic_store_n(&pg->flags, (uint8_t)(PG_LARGE | (zeroed ? PG_ZEROED : 0) | (guard ? PG_GUARD : 0)),
                     __ATOMIC_RELEASE);
    void *p = page_address(pg);
    if (guard) /* an overflow past the last page faults at once */
        os_protect((char *)p + (npages << PAGE_SHIFT), PAGE_SIZE, 0);
    if (zero && !zeroed) {
        /* A big dirty block: its frames may be resident or not (purged, or never written by
         * the block's last owner), and only the resident ones (or swapped out) can hold
         * anything but zeros. Clearing just those keeps the frames the caller will write
         * mapped. Purging them all (the fallback, where /proc/self/pagemap cannot be read)
         * made the caller fault in every page it then touched, ~10 us each on this project's
         * VMs: bench calloc_large 1 MiB (3 bytes touched a round) took 40 us against
         * glibc's 9 (a memset of the whole block). */
        if (n < ((size_t)128 << 10))
            memset(p, 0, n);
        else if (os_zero_resident(p, npages << PAGE_SHIFT) != 0)
            os_purge(p, npages << PAGE_SHIFT);
    }
    return p;
}

/* Blocks above SLAB_MAX_SIZE: whole frames from the buddy allocator, or a huge mapping.
 * align: 0 or a power of two > 16. zero: the block must read as zeros.
 * Sizes the per-CPU caches hold (NORMAL zone, 9-64 frames, no guard, page alignment at most) are
 * rounded up to the cache's power of two and served from the caller's cache first: a hit does not
 * check the commit limit (the block was committed already) and ticks once in LARGE_TICK_EVERY hits
 * (the clock read was a quarter of a 256 KiB malloc/free pair). It must tick: a program that only
 * cycles a cached size (a server idling on 64 KiB buffers) would otherwise never decay the rest. */
#define LARGE_TICK_EVERY 16
static __thread unsigned large_hits __attribute__((tls_model("initial-exec")));

static void *large_alloc_try(int zone, size_t n, size_t align, int zero, int *limited)
{
    bsl_ensure_init();
    size_t npages = (n + PAGE_SIZE - 1) >> PAGE_SHIFT;
    int guard = opt_guard && npages < MAX_ORDER_PAGES;
    int bin = zone == ZONE_NORMAL && !guard && align <= PAGE_SIZE ? pcp_large_bin(npages) : -1;
    if (bin >= 0) {
        npages = pcp_large_pages(bin);
        void *c = pcp_large_alloc(bin);
        if (c) {
            if (unlikely(++large_hits % LARGE_TICK_EVERY == 0))
                bsl_tick_maybe();
            return large_out(arena_page(c), npages, n, 0, 0, zero);
        }
    }
    bsl_tick_maybe();
    if (unlikely(!oom_commit_ok(n))) { /* over the hard limit after reclaim */
        *limited = 1;
        return NULL;
    }
    if (zone != ZONE_HUGE && n <= MAX_ORDER_BYTES && align <= MAX_ORDER_BYTES) {
        if (npages == 0)
            npages = 1;
        unsigned min_order = align > PAGE_SIZE ? (unsigned)__builtin_ctzl(align) - PAGE_SHIFT : 0;
        int zeroed;
        struct page *pg = buddy_alloc(zone, npages + guard, min_order, pcp_cpu_hint(), &zeroed);
        if (likely(pg))
            return large_out(pg, npages, n, zeroed, guard, zero);
    }
    return huge_alloc(n, align, zone, zero); /* a reused dirty mapping is purged for calloc */
}

static __attribute__((noinline)) void *large_alloc_zone(int zone, size_t n, size_t align, int zero)
{
    int limited = 0;
    void *p = large_alloc_try(zone, n, align, zero, &limited);
    if (unlikely(!p) && !limited && n <= ((size_t)1 << ADDR_BITS) && oom_alloc_failed(n)) /* the OS refused */
        p = large_alloc_try(zone, n, align, zero, &limited);    /* reclaim freed some: once more */
    if (!p)
        errno = ENOMEM;
    return p;
}

/* The NORMAL zone's: malloc, calloc and memalign call it as before the zones joined the router,
 * so that their inlined fast paths set up no zone argument. */
static __attribute__((noinline)) void *large_alloc(size_t n, size_t align, int zero)
{
    return large_alloc_zone(ZONE_NORMAL, n, align, zero);
}

/* A small object leaves the allocator: clear the free key (see slab_free_key). */
static inline void *small_out(void *p)
{
    if (likely(p))
        ((uintptr_t *)p)[1] = 0;
    return p;
}

/* What a call did to a block that is free already: free, realloc and the sized frees free it a
 * second time; malloc_usable_size reads it. */
static const char *freed_what(const char *func)
{
    return func[0] == 'm' ? "use after free detected (the block is free)" : "double free detected";
}

/* free() found the free key in a small object: a double free, unless the program happened to
 * store exactly that value there. Decide exactly: is the object free (in a cache, a transfer cache
 * or free in its slab's bitmap)? */
static __attribute__((noinline, cold)) void free_key_hit(void *p, const char *func)
{
    struct page *pg = arena_page(p);
    if (pcp_holds(p, pg->size_class) || slab_object_is_free(p))
        bsl_misuse(func, freed_what(func), p);
}

static __attribute__((noinline, cold, noreturn)) void small_bad_pointer(void *p, const char *func)
{
    bsl_misuse(func, ((uintptr_t)p & 15) ? "invalid pointer (misaligned)" : "invalid pointer (not the start of a block)",
               p);
}

/* Misuse checks on a small object about to be freed: a pointer that is not the start of an object
 * of its slab (interior or misaligned), or one carrying the free key. Cheap: the slab offset is a
 * mask of p by the order on the descriptor line already loaded (slab_offset), the boundary test is
 * one multiply (slab_on_boundary), and the key is one load of the object's second word, which the
 * caller likely has in cache. Returns 0 and marks the object freed, or 1 when either check failed:
 * the caller then leaves for its slow path, which classifies p again and reports the misuse (or,
 * for the key, decides exactly with free_key_hit). Reporting from the slow path keeps the fast
 * paths leaves: no call, no saved register, no misuse argument held live. */
static inline int small_in(void *p, const struct page *pg)
{
    uintptr_t *w = p, key = slab_free_key ^ (uintptr_t)p;
    if (unlikely(!slab_on_boundary(slab_offset(p, pg), pg->size_class)))
        return 1;
    if (unlikely(w[1] == key))
        return 1;
    w[1] = key;
    return 0;
}

static inline void *do_malloc(size_t n)
{
    if (likely(n <= SLAB_MAX_SIZE)) {
        unsigned c = slab_class_of(n);
        void *p = pcp_fast_pop(c);
        if (likely(p))
            return small_out(p);
        return small_alloc_slow(c); /* tail call: no register saves on the fast path */
    }
    return large_alloc(n, 0, 0);
}

/* The size router for a zone (bsl_zone_malloc, and realloc moving a block of a zone): HUGE blocks
 * are 2 MiB-aligned mappings whatever their size. */
static void *zone_alloc(int zone, size_t n)
{
    if (zone == ZONE_NORMAL)
        return do_malloc(n);
    if (zone == ZONE_LOW32 && n <= SLAB_MAX_SIZE)
        return small_alloc_zone(ZONE_LOW32, slab_class_of(n));
    if (n > ((size_t)1 << ADDR_BITS)) {
        errno = ENOMEM;
        return NULL;
    }
    return large_alloc_zone(zone, n ? n : 1, zone == ZONE_HUGE ? SECTION_SIZE : 0, 0);
}

/* The block holding p, classified. Aborts on a pointer that is not the start of a live block. */
enum kind { K_SLAB, K_LARGE, K_HUGE };
struct blk {
    enum kind kind;
    size_t usable;
    struct page *pg;
    struct huge_block *hb;
};

static void classify(void *p, const char *func, struct blk *b)
{
    uintptr_t e = pagemap_entry(p);
    if (unlikely(!e))
        bsl_misuse(func, "invalid pointer (not allocated by buddyslab)", p);
    if (e & PAGEMAP_HUGE_TAG) {
        struct huge_block *hb = pagemap_huge(e);
        if (unlikely((uintptr_t)p != huge_base(hb)))
            bsl_misuse(func, "invalid pointer (inside a huge block)", p);
        if (unlikely(!hb->live))
            bsl_misuse(func, freed_what(func), p);
        b->kind = K_HUGE;
        b->hb = hb;
        b->usable = hb->usable;
        return;
    }
    struct page *pg = arena_page(p);
    uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
    b->pg = pg;
    if (f & PG_SLAB) {
        struct page *head = pg->head;
        uint32_t size = slab_class_size[pg->size_class];
        if (unlikely((size_t)((char *)p - (char *)slab_base(head)) % size))
            small_bad_pointer(p, func); /* the fast paths leave for here on such a pointer */
        b->kind = K_SLAB;
        b->usable = size;
        return;
    }
    int at_head = ((uintptr_t)p & (PAGE_SIZE - 1)) == 0;
    if ((f & PG_LARGE) && at_head) {
        b->kind = K_LARGE;
        b->usable = (size_t)(pg->npages - ((f & PG_GUARD) ? 1 : 0)) << PAGE_SHIFT;
        return;
    }
    if (((f & PG_BUDDY) || f == PG_LCACHED) && at_head) /* free in the buddy lists or a per-CPU cache */
        bsl_misuse(func, freed_what(func), p);
    bsl_misuse(func, "invalid pointer (not the start of a block)", p);
}

/* The zone of a classified block. */
static int blk_zone(const void *p, const struct blk *b)
{
    if (b->kind == K_HUGE)
        return b->hb->zone;
    if (b->kind == K_SLAB)
        return (b->pg->flags & PG_LOW32) ? ZONE_LOW32 : ZONE_NORMAL;
    return zone_arena_of(p)->zone;
}

/* Sampled site tracking (HOOK_LEAK without HOOK_FULL) lets free() of untracked blocks skip the
 * hooks: frames holding tracked blocks carry PG_TRACKED, which fails the fast path's test and
 * brings the block here, where the tracker forgets it before it can be reused. A large block (always
 * here) is looked up when its head descriptor holds a record; huge blocks always. `raw`: the allocator's own blocks (bsl_raw_free), never
 * tracked, though they may share a marked frame. */
static inline __attribute__((always_inline)) void free_slow_body(void *p, int raw)
{
    if (!p)
        return;
    struct blk b;
    classify(p, "free()", &b);
    if (!raw && unlikely(b.kind == K_HUGE    ? bsl_hooks_on == HOOK_LEAK
                         : b.kind == K_LARGE ? __atomic_load_n(&b.pg->large_rec, __ATOMIC_RELAXED) != 0
                                             : (__atomic_load_n(&b.pg->flags, __ATOMIC_RELAXED) & PG_TRACKED) != 0))
        track_on_free(p);
    switch (b.kind) {
    case K_SLAB: /* classify() checked the boundary: small_in() fails only on the free key */
        if (small_in(p, b.pg))
            free_key_hit(p, "free()"); /* aborts on a real double free */
        ((uintptr_t *)p)[1] = slab_free_key ^ (uintptr_t)p;
        if (b.pg->flags & PG_LOW32)
            slab_free_bulk(&p, 1); /* LOW32 objects never enter the per-CPU caches */
        else
            pcp_free_slow(p, b.pg->size_class);
        break;
    case K_LARGE:
        if (b.pg->flags & PG_GUARD)
            os_protect((char *)p + b.usable, PAGE_SIZE, 1);
        else if (pcp_large_free(p, b.pg))
            return; /* cached: the hits that take it back out tick (large_alloc_try) */
        buddy_free(b.pg, b.pg->npages);
        break;
    case K_HUGE:
        huge_free(b.hb);
        break;
    }
    bsl_tick_maybe();
}

static __attribute__((noinline)) void free_slow(void *p) { free_slow_body(p, 0); }
static __attribute__((noinline)) void raw_free_slow(void *p) { free_slow_body(p, 1); }

/* The bin was full (or there is no cache yet). Only p is passed: the class is read again from the
 * descriptor, so the fast path need not keep it in a register across the restartable sequence. */
static __attribute__((noinline)) void small_free_slow(void *p)
{
    unsigned c = arena_page(p)->size_class;
    if (PCP_HAVE_RSEQ && !pcp_use_rseq && likely(pcp_push(p, c))) /* fallback mode (pcp_fast_push) */
        return;
    pcp_free_slow(p, c);
    bsl_tick_maybe();
}

static inline __attribute__((always_inline)) void do_free_body(void *p, int raw)
{
    if (likely(addr_in_arena(p))) {
        struct page *pg = arena_page(p);
        if (likely(pg->flags == PG_SLAB)) { /* a NORMAL-zone slab, no tracked block: the per-CPU caches take it */
            unsigned c = pg->size_class;
            if (unlikely(small_in(p, pg)))
                return raw ? raw_free_slow(p) : free_slow(p); /* a bad pointer or the free key: decided exactly there */
            if (likely(pcp_fast_push(p, c)))
                return;
            return small_free_slow(p); /* a tail call keeps this path free of register saves */
        }
    }
    raw ? raw_free_slow(p) : free_slow(p);
}

static inline void do_free(void *p) { do_free_body(p, 0); }

/* The class do_memalign serves (align, n) from (the first class whose size is a multiple of the
 * alignment: every object of it is aligned), or SLAB_NR_CLASSES when it maps whole frames. */
static unsigned memalign_class(size_t align, size_t n)
{
    if (n > SLAB_MAX_SIZE || align > PAGE_SIZE)
        return SLAB_NR_CLASSES;
    unsigned c = slab_class_of(n);
    while (c < SLAB_NR_CLASSES && slab_class_size[c] % align)
        c++;
    return c;
}

/* ---- sized deallocation: free_sized, free_aligned_sized, sized and aligned operator delete ----
 * The size and alignment given must fit the block. By default the check is what the free path
 * knows anyway: a size the block's class (small), frame count (large) or section count (huge)
 * can have been asked for, allowing for what realloc keeps in place (a small block down to half its
 * class, any size up to 64 bytes; a huge block down to half its mapping, and a cached mapping of up
 * to twice the size reused). With canary=1 the exact size asked for is known: it must match. */
#define SIZE_NONE SIZE_MAX /* a free without a size (aligned operator delete) */

static inline int pow2(size_t x) { return x && !(x & (x - 1)); }

/* The sizes malloc, calloc or realloc can have been asked for to give a block of b's shape. */
static void size_range(const struct blk *b, size_t *lo, size_t *hi)
{
    size_t u = b->usable, half;
    *hi = u;
    *lo = 0;
    switch (b->kind) {
    case K_SLAB:
        *lo = u <= 64 ? 0 : u / 2;
        break;
    case K_LARGE: /* whole frames, resized exactly by realloc; the per-CPU caches' sizes hold any
                   * request that rounds up to them (large_alloc_try) */
        *lo = u == PAGE_SIZE ? 0 : u - PAGE_SIZE + 1;
        if (pcp_large_exact(u >> PAGE_SHIFT))
            *lo = u / 2 + 1;
        break;
    case K_HUGE: /* whole sections, kept by realloc down to half; a cached mapping of up to twice */
        half = ((u / 2) + SECTION_SIZE - 1) & ~(SECTION_SIZE - 1);
        *lo = half <= SECTION_SIZE ? 0 : half - SECTION_SIZE + 1;
        break;
    }
}

static __attribute__((noinline, cold, noreturn)) void size_mismatch(void *p, const char *func, size_t size, size_t lo,
                                                                    size_t hi)
{
    char what[160];
    if (lo == hi)
        os_snprintf(what, sizeof(what), "size mismatch (size given %zu, size allocated %zu)", size, lo);
    else
        os_snprintf(what, sizeof(what), "size mismatch (size given %zu, size allocated %zu..%zu)", size, lo, hi);
    bsl_misuse(func, what, p);
}

/* A block about to be freed (or read by malloc_usable_size) that carries the free key in its second
 * word is free already when it waits in the quarantine or, for a small object, sits in a cache or
 * free in its slab. */
static void check_live(void *p, const struct blk *b, const char *func)
{
    if (likely(((uintptr_t *)p)[1] != (slab_free_key ^ (uintptr_t)p)))
        return;
    if (opt_quarantine && debug_quarantined(p))
        bsl_misuse(func, freed_what(func), p);
    if (b->kind == K_SLAB)
        free_key_hit(p, func);
}

/* Every check of a free that was given a size and/or an alignment (size SIZE_NONE, align 0: none):
 * a foreign or interior pointer, a block free already, then the size and alignment. */
static void check_free(void *p, struct blk *b, size_t size, size_t align, const char *func)
{
    classify(p, func, b);
    check_live(p, b, func);
    if (align > 1 && ((uintptr_t)p & (align - 1))) {
        char what[96];
        os_snprintf(what, sizeof(what), "alignment mismatch (alignment given %zu, the block is not aligned to it)",
                    align);
        bsl_misuse(func, what, p);
    }
    if (size == SIZE_NONE)
        return;
    if (opt_canary) { /* the exact size asked for (malloc(0) asked for 1: either is right) */
        size_t n = debug_requested(p, b->usable, func);
        if (size != n && !(size == 0 && n == 1))
            size_mismatch(p, func, size, n, n);
        return;
    }
    size_t lo, hi;
    size_range(b, &lo, &hi);
    if (size >= lo && size <= hi)
        return;
    if (align > 16 && b->kind == K_SLAB && memalign_class(align, size) == b->pg->size_class)
        return;
    /* A block from memalign, posix_memalign or aligned_alloc freed with free_sized (C23 wants
     * free_aligned_sized there, but real programs mix them): any alignment the pointer has may have
     * been asked for, and picked a bigger class. No false alarm on such a program; the check keeps
     * its teeth for pointers that are not that aligned. */
    if (align <= 16 && b->kind == K_SLAB)
        for (size_t a = 32; a <= PAGE_SIZE && !((uintptr_t)p & (a - 1)); a <<= 1)
            if (memalign_class(a, size) == b->pg->size_class)
                return;
    size_mismatch(p, func, size, lo, hi);
}

static __attribute__((noinline)) void sized_free_slow(void *p, size_t size, size_t align, const char *func)
{
    if (!p)
        return;
    struct blk b;
    check_free(p, &b, size, align, func);
    free_slow(p);
}

/* Whether a free of a class-c object may name `size`: sizes in [s/2, s] fit, any up to s when
 * s <= 64 (size_range). One subtraction and one unsigned compare. */
static inline int sized_fits(size_t size, unsigned c)
{
    size_t s = slab_class_size[c], lo = (s >> 1) & -(size_t)(s > 64); /* branch-free: s > 64 ? s / 2 : 0 */
    return size - lo <= s - lo;
}

/* free() with the size (and alignment) the caller gives: the fast path of free plus one compare. */
static inline void do_free_sized(void *p, size_t size, size_t align, const char *func)
{
    if (likely(addr_in_arena(p))) {
        struct page *pg = arena_page(p);
        if (likely(pg->flags == PG_SLAB)) {
            unsigned c = pg->size_class;
            if (unlikely(!sized_fits(size, c) || ((uintptr_t)p & (align ? align - 1 : 0))))
                return sized_free_slow(p, size, align, func); /* the full check, which may still pass */
            if (unlikely(small_in(p, pg)))
                return sized_free_slow(p, size, align, func); /* a bad pointer or the free key */
            if (likely(pcp_fast_push(p, c)))
                return;
            return small_free_slow(p);
        }
    }
    sized_free_slow(p, size, align, func);
}

static void *do_memalign(size_t align, size_t n)
{
    if (align <= 16)
        return do_malloc(n);
    unsigned c = memalign_class(align, n);
    if (c < SLAB_NR_CLASSES) {
        void *p = pcp_pop(c);
        return p ? small_out(p) : small_alloc_slow(c);
    }
    if (n > ((size_t)1 << ADDR_BITS) || align > ((size_t)1 << 40)) {
        errno = ENOMEM;
        return NULL;
    }
    return large_alloc(n > PAGE_SIZE ? n : PAGE_SIZE, align, 0);
}

/* ---- hooks: leak tracking and debugging features, one predictable branch when off ----
 * While bsl_hooks_on is set (HOOK_LEAK and/or HOOK_DEBUG), every public entry point takes these
 * paths instead of the fast ones. */
struct bsl_hooks_word bsl_hooks = {HOOK_INIT};

enum hook_kind { HK_MALLOC, HK_CALLOC, HK_ALIGN, HK_ZONE };
static void *do_calloc(size_t nmemb, size_t size);
static void *do_realloc(void *p, size_t n);
static void *zone_malloc(bsl_zone_id zone, size_t size);

static size_t usable_of(void *p, const char *func)
{
    struct blk b;
    classify(p, func, &b);
    return b.usable;
}

static __attribute__((noinline, cold)) void *hooked_alloc(enum hook_kind k, size_t arg, size_t n)
{
    bsl_ensure_init();
    unsigned h = __atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE);
    uint64_t ticket = 0;
    if (h & HOOK_LEAK) {
        ticket = hook_before_alloc(n);
        if (unlikely(ticket == HOOK_REFUSE)) { /* the soft OOM policy: this site is over budget */
            errno = ENOMEM;
            return NULL;
        }
    }
    if (h & HOOK_DEBUG)
        n = debug_user_size(n);
    size_t m = (h & HOOK_DEBUG) ? debug_size(n) : n;
    debug_vg_quiet(1);
    void *p = k == HK_MALLOC   ? do_malloc(m)
              : k == HK_CALLOC ? do_calloc(1, m)
              : k == HK_ALIGN  ? do_memalign(arg, m)
                               : zone_malloc((bsl_zone_id)arg, m);
    size_t usable = p && (h & HOOK_DEBUG) ? usable_of(p, "malloc()") : 0;
    debug_vg_quiet(0);
    if (p) {
        if (h & HOOK_DEBUG)
            debug_on_alloc(p, n, usable, k == HK_CALLOC);
        if (h & HOOK_LEAK)
            hook_after_alloc(p, n, ticket);
    }
    return p;
}

static void quiet_free(void *p)
{
    debug_vg_quiet(1);
    do_free(p);
    debug_vg_quiet(0);
}

/* free, realloc's free of the old block, and the sized frees (size SIZE_NONE, align 0: not given).
 * With debugging features every check runs before the block is touched: a free of a block that is
 * free already (waiting in the quarantine, or in a cache) is reported as such before the canary
 * check or the junk fill could read or erase what shows it. */
static __attribute__((noinline, cold)) void hooked_free_f(void *p, const char *func, size_t size, size_t align)
{
    if (!p)
        return;
    bsl_ensure_init();
    unsigned h = __atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE);
    if (h & HOOK_DEBUG) {
        struct blk b;
        debug_vg_quiet(1);
        check_free(p, &b, size, align, func);
        debug_vg_quiet(0);
        if (h & HOOK_LEAK)
            hook_on_free(p);
        if (debug_on_free(p, b.usable, quiet_free, func))
            return; /* quarantined */
    } else {
        if (size != SIZE_NONE || align) {
            struct blk b;
            check_free(p, &b, size, align, func);
        }
        if (h & HOOK_LEAK)
            hook_on_free(p);
    }
    quiet_free(p);
}

static void hooked_free(void *p) { hooked_free_f(p, "free()", SIZE_NONE, 0); }

/* With debugging features a realloc always moves (catching use after realloc, and keeping
 * canaries simple). With only leak tracking, the hooks forget the old block before it can be
 * reused by another thread, and learn the result (or the old block again when realloc fails). */
static __attribute__((noinline, cold)) void *hooked_realloc(void *p, size_t n)
{
    if (!p)
        return hooked_alloc(HK_MALLOC, 0, n);
    if (n == 0) {
        hooked_free(p);
        return NULL;
    }
    bsl_ensure_init();
    unsigned h = __atomic_load_n(&bsl_hooks_on, __ATOMIC_ACQUIRE);
    if (h & HOOK_DEBUG) {
        struct blk b;
        debug_vg_quiet(1);
        check_free(p, &b, SIZE_NONE, 0, "realloc()");
        size_t old = debug_requested(p, b.usable, "realloc()");
        debug_vg_quiet(0);
        void *q = hooked_alloc(HK_ZONE, (size_t)blk_zone(p, &b), n); /* in the block's zone */
        if (!q)
            return NULL;
        memcpy(q, p, old < n ? old : n);
        hooked_free_f(p, "realloc()", SIZE_NONE, 0);
        return q;
    }
    if (!(h & HOOK_LEAK))
        return do_realloc(p, n);
    size_t old = usable_of(p, "realloc()");
    uint64_t ticket = hook_before_alloc(n);
    if (unlikely(ticket == HOOK_REFUSE)) { /* the soft OOM policy: p stays as it was */
        errno = ENOMEM;
        return NULL;
    }
    hook_on_free(p);
    void *q = do_realloc(p, n);
    if (q)
        hook_after_alloc(q, n, ticket);
    else
        hook_on_alloc(p, old);
    return q;
}

void *bsl_raw_malloc(size_t n) { return do_malloc(n); }
void *bsl_raw_calloc(size_t n) { return do_calloc(1, n); }
void bsl_raw_free(void *p) { do_free_body(p, 1); }

/* struct track_core's mark (sampled tracking; the tracker serialises calls for one frame): count the
 * frame's tracked blocks, flag it PG_TRACKED while any is live. A large block is not marked: its
 * record sits in its own head descriptor (large_rec, slab/recs.c), which free_slow reads instead
 * (two atomic flag updates per sampled large block were 7 % of malloc_free/262144 under
 * leak_sample=512K). Huge blocks are not marked either (free_slow looks every one up). */
void bsl_frame_mark(void *p, int sign)
{
    if (!addr_in_arena(p))
        return;
    struct page *pg = arena_page(p);
    uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_RELAXED);
    int on;
    if (f & PG_SLAB) {
        if (sign < 0 && !pg->ntracked)
            return; /* a stale record's (its free went unseen) */
        pg->ntracked += (uint32_t)sign;
        on = pg->ntracked != 0;
    } else {
        return;
    }
    if (on)
        __atomic_fetch_or(&pg->flags, PG_TRACKED, __ATOMIC_RELEASE);
    else
        __atomic_fetch_and(&pg->flags, (uint8_t)~PG_TRACKED, __ATOMIC_RELEASE);
}

/* struct track_core's rec. A slab object's slot is found as free finds the object (the frame's
 * descriptor, the offset's boundary test and index: one multiply each); a pointer that is not an
 * object's start has none (an invalid free reaches the tracker before classify reports it). A
 * large block's is its head descriptor's. Huge blocks have none (NULL: the tracker's map). */
uint64_t *bsl_block_record(void *p, int create)
{
    if (!addr_in_arena(p))
        return NULL;
    struct page *pg = arena_page(p);
    uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
    if (f & PG_SLAB) {
        uint32_t off = slab_offset(p, pg);
        unsigned c = pg->size_class;
        struct page *head = pg->head;
        if (!slab_on_boundary(off, c))
            return TRACK_REC_NONE;
        uint32_t i = slab_index(off, c);
        if (i >= head->total)
            return TRACK_REC_NONE;
        uint64_t *a = __atomic_load_n(&head->obj_recs, __ATOMIC_ACQUIRE);
        if (unlikely(!a)) {
            if (!create)
                return TRACK_REC_NONE;
            if (!(a = slab_recs_get(head)))
                return TRACK_REC_NOMEM;
        }
        return &a[i];
    }
    if ((f & PG_LARGE) && !((uintptr_t)p & (PAGE_SIZE - 1)))
        return &pg->large_rec;
    return create ? TRACK_REC_NOMEM : TRACK_REC_NONE;
}

int bsl_maybe_tracked(const void *p)
{
    if (addr_in_arena(p)) {
        const struct page *pg = arena_page(p);
        uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
        if ((f & PG_LARGE) && !((uintptr_t)p & (PAGE_SIZE - 1)))
            return __atomic_load_n(&pg->large_rec, __ATOMIC_RELAXED) != 0; /* not marked: see bsl_frame_mark */
        return (f & PG_TRACKED) != 0;
    }
    return 1; /* huge (or not ours: the free path then reports it) */
}

/* Only sampled site tracking is on, and this call is not sampled: skip the hooks (see
 * hook_unsampled_alloc). HOOK_LEAK alone implies initialised (HOOK_INIT is clear). */
#define LEAN_ALLOC(n) (bsl_hooks_on == HOOK_LEAK && hook_unsampled_alloc(n))
#define LEAN_FREE(p) (bsl_hooks_on == HOOK_LEAK) /* free_slow asks the tracker for marked frames */

BSL_EXPORT void *malloc(size_t n)
{
    if (unlikely(bsl_hooks_on)) {
        if (LEAN_ALLOC(n))
            return do_malloc(n);
        return hooked_alloc(HK_MALLOC, 0, n);
    }
    return do_malloc(n);
}

static inline void free_entry(void *p)
{
    if (unlikely(bsl_hooks_on)) {
        if (LEAN_FREE(p))
            return do_free(p);
        return hooked_free(p);
    }
    do_free(p);
}

BSL_EXPORT void free(void *p) { free_entry(p); }

/* operator new (new.c): malloc's fast path; everything else (hooks, large sizes, an empty bin,
 * and NULL: the new-handler loop and std::bad_alloc) in new.c's bsl_new_slow, reached by a tail
 * call, so that the exception never unwinds through a frame of this file. A C program linked with
 * the static archive does not pull new.c in (nothing of its references it), nor libstdc++ (new.c
 * reaches it through weak references only). Weak: the libFuzzer build leaves new.c out. */
BSL_HIDDEN void *bsl_new_slow(size_t n) __attribute__((weak));
void *bsl_new(size_t n)
{
    if (likely(!bsl_hooks_on && n <= SLAB_MAX_SIZE)) {
        void *p = pcp_fast_pop(slab_class_of(n));
        if (likely(p))
            return small_out(p);
    }
    return bsl_new_slow(n);
}

/* operator delete (new.c): free's body, without the jump through the GOT to the exported free. */
void bsl_delete(void *p) { free_entry(p); }

static void *do_calloc(size_t nmemb, size_t size)
{
    size_t n;
    if (unlikely(__builtin_mul_overflow(nmemb, size, &n))) {
        errno = ENOMEM;
        return NULL;
    }
    if (likely(n <= SLAB_MAX_SIZE)) {
        void *p = do_malloc(n);
        if (likely(p))
            memset(p, 0, n);
        return p;
    }
    return large_alloc(n, 0, 1);
}

BSL_EXPORT void *calloc(size_t nmemb, size_t size)
{
    if (unlikely(bsl_hooks_on)) {
        size_t n;
        if (__builtin_mul_overflow(nmemb, size, &n)) {
            errno = ENOMEM;
            return NULL;
        }
        if (LEAN_ALLOC(n))
            return do_calloc(1, n);
        return hooked_alloc(HK_CALLOC, 0, n);
    }
    return do_calloc(nmemb, size);
}

static void *do_realloc(void *p, size_t n)
{
    if (!p)
        return do_malloc(n);
    if (n == 0) { /* glibc: free and return NULL */
        do_free(p);
        return NULL;
    }
    struct blk b;
    classify(p, "realloc()", &b);
    switch (b.kind) {
    case K_SLAB:
        if (unlikely(((uintptr_t *)p)[1] == (slab_free_key ^ (uintptr_t)p)))
            free_key_hit(p, "realloc()");
        if (n <= b.usable && (n >= b.usable / 2 || b.usable <= 64))
            return p;
        break;
    case K_LARGE:
        if (n > SLAB_MAX_SIZE / 2 && n <= MAX_ORDER_BYTES && !(b.pg->flags & PG_GUARD)) {
            size_t old_pages = b.pg->npages, new_pages = (n + PAGE_SIZE - 1) >> PAGE_SHIFT;
            int bin = pcp_large_bin(new_pages);
            if (new_pages == old_pages || (bin >= 0 && pcp_large_pages(bin) == old_pages))
                return p; /* the same frames, or the same per-CPU cache size (a block it can keep) */
            if (new_pages < old_pages) { /* shrink in place */
                buddy_shrink(b.pg, old_pages, new_pages);
                b.pg->npages = (uint32_t)new_pages;
                return p;
            }
            if (oom_commit_ok((new_pages - old_pages) << PAGE_SHIFT) &&
                buddy_extend(b.pg, old_pages, new_pages)) { /* grow into the free buddy neighbour */
                b.pg->npages = (uint32_t)new_pages;
                b.pg->flags &= (uint8_t)~PG_ZEROED;
                return p;
            }
        }
        break;
    case K_HUGE:
        if (n > MAX_ORDER_BYTES) {
            if (n <= b.usable && n > b.usable / 2)
                return p;
            if (n > b.usable && !oom_commit_ok(n - b.usable)) {
                errno = ENOMEM;
                return NULL;
            }
            void *q = huge_realloc(b.hb, n); /* mremap: no copy */
            if (q)
                return q;
        }
        break;
    }
    void *q = zone_alloc(blk_zone(p, &b), n); /* a moved block stays in its zone */
    if (unlikely(!q))
        return NULL; /* errno is ENOMEM, p is untouched */
    memcpy(q, p, n < b.usable ? n : b.usable);
    do_free(p);
    return q;
}

BSL_EXPORT void *realloc(void *p, size_t n)
{
    if (unlikely(bsl_hooks_on)) {
        if (p && n && LEAN_FREE(p) && !bsl_maybe_tracked(p) && LEAN_ALLOC(n))
            return do_realloc(p, n); /* neither the old block nor the new one is tracked (a block
                                      * resized in place must not keep a tracked record's size) */
        return hooked_realloc(p, n);
    }
    return do_realloc(p, n);
}

BSL_EXPORT void *reallocarray(void *p, size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

BSL_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (!pow2(align) || align < sizeof(void *))
        return EINVAL;
    int saved = errno;
    void *p = bsl_hooks_on ? hooked_alloc(HK_ALIGN, align, n) : do_memalign(align, n);
    errno = saved;
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

BSL_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (!pow2(align)) {
        errno = EINVAL;
        return NULL;
    }
    return bsl_hooks_on ? hooked_alloc(HK_ALIGN, align, n) : do_memalign(align, n);
}

BSL_EXPORT void *memalign(size_t align, size_t n)
{
    if (align > SIZE_MAX / 2 + 1) { /* glibc: no power of two to round up to */
        errno = EINVAL;
        return NULL;
    }
    if (!pow2(align)) /* glibc: round a bad alignment up to a power of two */
        align = align ? (size_t)1 << (64 - __builtin_clzl(align)) : 1;
    return bsl_hooks_on ? hooked_alloc(HK_ALIGN, align, n) : do_memalign(align, n);
}

BSL_EXPORT void *valloc(size_t n) { return bsl_hooks_on ? hooked_alloc(HK_ALIGN, PAGE_SIZE, n) : do_memalign(PAGE_SIZE, n); }

BSL_EXPORT void *pvalloc(size_t n)
{
    size_t r;
    if (__builtin_add_overflow(n, PAGE_SIZE - 1, &r)) {
        errno = ENOMEM;
        return NULL;
    }
    r &= ~(PAGE_SIZE - 1);
    r = r ? r : PAGE_SIZE;
    return bsl_hooks_on ? hooked_alloc(HK_ALIGN, PAGE_SIZE, r) : do_memalign(PAGE_SIZE, r);
}

BSL_EXPORT size_t malloc_usable_size(void *p)
{
    if (!p)
        return 0;
    struct blk b;
    if (unlikely(bsl_hooks_on & HOOK_DEBUG)) { /* with canaries the slack is not the caller's */
        debug_vg_quiet(1);
        check_free(p, &b, SIZE_NONE, 0, "malloc_usable_size()");
        size_t n = debug_requested(p, b.usable, "malloc_usable_size()");
        debug_vg_quiet(0);
        return n;
    }
    check_free(p, &b, SIZE_NONE, 0, "malloc_usable_size()");
    return b.usable;
}

BSL_EXPORT void free_sized(void *p, size_t size)
{
    if (unlikely(bsl_hooks_on))
        return hooked_free_f(p, "free_sized()", size, 0);
    do_free_sized(p, size, 0, "free_sized()");
}

static __attribute__((noinline, cold)) void bad_alignment(void *p, size_t align, const char *func)
{
    char what[64];
    os_snprintf(what, sizeof(what), "invalid alignment %zu", align);
    bsl_misuse(func, what, p);
}

/* The sized operator delete (new.c). */
void bsl_free_sized_checked(void *p, size_t size, const char *func)
{
    if (unlikely(bsl_hooks_on))
        return hooked_free_f(p, func, size, 0);
    do_free_sized(p, size, 0, func);
}

/* The aligned operator delete (new.c): size SIZE_NONE when not given. */
void bsl_free_checked(void *p, size_t size, size_t align, const char *func)
{
    if (unlikely(align && !pow2(align)) && p)
        bad_alignment(p, align, func);
    if (unlikely(bsl_hooks_on))
        return hooked_free_f(p, func, size, align);
    do_free_sized(p, size, align, func);
}

BSL_EXPORT void free_aligned_sized(void *p, size_t align, size_t size)
{
    if (unlikely(!pow2(align)) && p) /* aligned_alloc accepts only powers of two */
        bad_alignment(p, align, "free_aligned_sized()");
    bsl_free_checked(p, size, align, "free_aligned_sized()");
}

static size_t purge(const char *func)
{
    bsl_ensure_init();
    if (bsl_hooks_on & HOOK_DEBUG)
        debug_flush_quarantine(quiet_free, func); /* checks every block it releases */
    return slab_reclaim(os_now_ms()); /* cached huge mappings too */
}

BSL_EXPORT int malloc_trim(size_t pad)
{
    (void)pad;
    return purge("malloc_trim()") > 0;
}

BSL_EXPORT int mallopt(int param, int value)
{
    (void)param;
    (void)value;
    return 1;
}

BSL_EXPORT struct mallinfo2 mallinfo2(void)
{
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof(mi));
    bsl_stats_t s;
    bsl_stats_get(&s);
    size_t hb, hn, hc;
    huge_stats(&hb, &hn, &hc, NULL);
    mi.arena = s.committed;
    mi.ordblks = 1;
    mi.hblks = hn;
    mi.hblkhd = hb;
    mi.uordblks = s.allocated;
    mi.fordblks = s.free_dirty + s.free_clean;
    mi.keepcost = s.free_dirty;
    return mi;
}

BSL_EXPORT struct mallinfo mallinfo(void)
{
    struct mallinfo2 m2 = mallinfo2();
    struct mallinfo m;
    m.arena = (int)m2.arena;
    m.ordblks = (int)m2.ordblks;
    m.smblks = (int)m2.smblks;
    m.hblks = (int)m2.hblks;
    m.hblkhd = (int)m2.hblkhd;
    m.usmblks = (int)m2.usmblks;
    m.fsmblks = (int)m2.fsmblks;
    m.uordblks = (int)m2.uordblks;
    m.fordblks = (int)m2.fordblks;
    m.keepcost = (int)m2.keepcost;
    return m;
}

BSL_EXPORT void malloc_stats(void)
{
    /* Not cancellable (glibc bug 22830's scenario): an asynchronous cancellation inside
     * bsl_stats_get would leave a kmem_cache or shard lock held for good. Its writes are raw
     * syscalls, no cancellation point either. */
    int cancel_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    bsl_stats_t s;
    bsl_stats_get(&s);
    os_printf(2, "Arena 0:\nsystem bytes     = %10zu\nin use bytes     = %10zu\n", s.committed, s.allocated);
    os_printf(2, "Total (incl. mmap):\nsystem bytes     = %10zu\nin use bytes     = %10zu\n",
              s.committed + s.huge_bytes, s.allocated);
    os_printf(2, "max mmap regions = %10zu\nmax mmap bytes   = %10zu\n", (size_t)0, s.huge_bytes);
    pthread_setcancelstate(cancel_state, NULL);
}

#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmissing-attributes"
#endif
/* glibc's internal names, used by some programs and by libc itself. */
BSL_EXPORT void *__libc_malloc(size_t n) __attribute__((alias("malloc")));
BSL_EXPORT void __libc_free(void *p) __attribute__((alias("free")));
BSL_EXPORT void *__libc_calloc(size_t a, size_t b) __attribute__((alias("calloc")));
BSL_EXPORT void *__libc_realloc(void *p, size_t n) __attribute__((alias("realloc")));
BSL_EXPORT void *__libc_memalign(size_t a, size_t n) __attribute__((alias("memalign")));
BSL_EXPORT void *__libc_valloc(size_t n) __attribute__((alias("valloc")));
BSL_EXPORT void *__libc_pvalloc(size_t n) __attribute__((alias("pvalloc")));
BSL_EXPORT int __posix_memalign(void **o, size_t a, size_t n) __attribute__((alias("posix_memalign")));

/* ---- bsl_* extensions ---- */
static void *zone_malloc(bsl_zone_id zone, size_t size)
{
    if ((unsigned)zone >= BSL_NR_ZONES) {
        errno = EINVAL;
        return NULL;
    }
    bsl_ensure_init();
    _Static_assert((int)BSL_ZONE_LOW32 == ZONE_LOW32 && (int)BSL_ZONE_NORMAL == ZONE_NORMAL &&
                       (int)BSL_ZONE_HUGE == ZONE_HUGE,
                   "the public zone ids are the internal ones");
    return zone_alloc((int)zone, size);
}

BSL_EXPORT void *bsl_zone_malloc(bsl_zone_id zone, size_t size)
{
    if (unlikely(bsl_hooks_on))
        return hooked_alloc(HK_ZONE, (size_t)zone, size);
    return zone_malloc(zone, size);
}

BSL_EXPORT int bsl_zone_of(const void *ptr)
{
    uintptr_t e = pagemap_entry(ptr);
    if (!e)
        return -1;
    if (e & PAGEMAP_HUGE_TAG)
        return pagemap_huge(e)->zone;
    return ((struct arena *)e)->zone;
}

BSL_EXPORT int bsl_owns(const void *ptr)
{
    uintptr_t e = pagemap_entry(ptr);
    if (!e)
        return 0;
    if (e & PAGEMAP_HUGE_TAG) {
        struct huge_block *hb = pagemap_huge(e);
        return hb->live && huge_base(hb) == (uintptr_t)ptr;
    }
    struct page *pg = arena_page(ptr);
    uint8_t f = __atomic_load_n(&pg->flags, __ATOMIC_ACQUIRE);
    if (f & PG_SLAB) {
        size_t off = (size_t)((const char *)ptr - (const char *)slab_base(pg->head));
        if (off % slab_class_size[pg->size_class] || off / slab_class_size[pg->size_class] >= pg->head->total)
            return 0;
        return !slab_object_is_free(ptr) && !pcp_holds(ptr, pg->size_class);
    }
    return (f & PG_LARGE) && ((uintptr_t)ptr & (PAGE_SIZE - 1)) == 0;
}

BSL_EXPORT int bsl_using_rseq(void)
{
    bsl_ensure_init();
    return pcp_use_rseq;
}

BSL_EXPORT size_t bsl_purge(void) { return purge("bsl_purge()"); }

BSL_EXPORT int bsl_check_heap(void)
{
    bsl_ensure_init();
    return (buddy_check() == 0 && slab_check() == 0) ? 0 : -1;
}

BSL_EXPORT const char *bsl_version(void) { return BSL_VERSION; }

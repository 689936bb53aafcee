/* Slab layer: size classes, slabs (kmem_cache), and the per-CPU caches in front of them.
 *
 * Size classes are 16 bytes apart up to 256 B, then eight per power of two up to 8 KiB and four up
 * to 32 KiB, so internal waste stays under 12.5 % up to 8 KiB (25 % above): page-sized buffers
 * with a header (sqlite's 4 KiB pages + 136 B, perl's 4080 B arenas) land in a class at most 512 B
 * bigger. A slab is an order-k buddy block carved into objects of one
 * class; its head frame's descriptor holds the slab state (inuse, total) and a 256-bit free-object
 * bitmap in the arena's metadata frames holds which objects are free. The slab layer never reads
 * or writes an object: a new slab costs no touching of its memory, a refill walks one bitmap line
 * instead of a chain of objects (each a cache miss when other CPUs freed them), and a use after
 * free or an overflow cannot corrupt the allocator's free lists, as there are none in the objects.
 *
 * Front end (pcp.h): a per-CPU cache of free objects per class, touched only inside restartable
 * sequences (or a per-thread cache when rseq is not there). Caches refill from and drain to the
 * kmem_caches in batches; this is the only channel between the two, so the kmem_cache need not
 * know which front end is in use. */
#ifndef BSL_SLAB_H
#define BSL_SLAB_H

#include "buddy/buddy.h"

#define SLAB_NR_CLASSES 64
#define SLAB_MAX_SIZE 32768u

BSL_HIDDEN extern const uint32_t slab_class_size[SLAB_NR_CLASSES];
BSL_HIDDEN extern const uint8_t slab_small_class[65];
/* slab_div_magic[c] = 1 + UINT64_MAX / size: for an offset x < 2^32, x is a multiple of the class
 * size exactly when x * magic <= magic - 1 (Lemire's divisibility test): one multiply, no divide. */
BSL_HIDDEN extern uint64_t slab_div_magic[SLAB_NR_CLASSES];
static inline int slab_on_boundary(uint32_t off, unsigned c)
{
    return (uint64_t)off * slab_div_magic[c] <= slab_div_magic[c] - 1;
}
/* off / size of class c for an offset x < 2^32, from the same magic: the high half of x * magic
 * (Lemire's fastdiv), no divide. */
static inline uint32_t slab_index(uint32_t off, unsigned c)
{
    return (uint32_t)(((unsigned __int128)off * slab_div_magic[c]) >> 64);
}

/* Offset of p in the slab whose frame descriptor is pg. A slab is a buddy block of 2^order frames,
 * so it is aligned to its size (arenas are aligned, and buddy blocks are aligned within them), and
 * every frame of a slab carries the order: the offset is a mask of p, with no load of the head
 * descriptor (free's fast path saved that dependent load: see docs/DESIGN.md, fast path costs). */
static inline uint32_t slab_offset(const void *p, const struct page *pg)
{
    return (uint32_t)(uintptr_t)p & (((uint32_t)PAGE_SIZE << pg->order) - 1);
}

static inline unsigned slab_class_of(size_t n) /* pre: n <= SLAB_MAX_SIZE */
{
    if (likely(n <= 1024))
        return slab_small_class[(n + 15) >> 4];
    unsigned lg = 63u - (unsigned)__builtin_clzl(n - 1);
    if (lg < 13) /* 1 KiB < n <= 8 KiB: eight classes per power of two */
        return 32 + (lg - 10) * 8 + (unsigned)(((n - 1) >> (lg - 3)) & 7);
    return 56 + (lg - 13) * 4 + (unsigned)(((n - 1) >> (lg - 2)) & 3);
}

/* One cache per (zone, class), the kernel's kmem_cache.
 *
 * In front of the slabs sits a transfer cache (xfer): a stack of free object pointers that
 * per-CPU caches drain whole batches into and refill whole batches from, without touching the
 * objects (the kernel's sheaves-in-a-barn idea, tcmalloc's transfer cache). Only when it is full
 * (drain) or empty (refill) are objects marked free in, or taken from, their slabs' bitmaps.
 * Objects in xfer count as in use by their slabs.
 *
 * Locking: lock protects xfer, partial, spare, the slab fields (inuse, on_partial, next/prev, the
 * bitmap) of every slab of this cache, and the counters. Rank LOCK_RANK_SLAB (os/lock_rank.h): outside
 * the buddy shards; never two kmem_cache locks at once. */
struct kmem_cache {
    os_lock_t lock;
    uint32_t size;          /* object size */
    uint16_t objs_per_slab;
    uint8_t order;          /* slab = 2^order frames */
    uint8_t zone;
    struct page *partial;   /* slabs with free objects, most recently freed-into first */
    struct page *spare;     /* one empty slab kept to absorb alloc/free churn */
    void **xfer;            /* transfer cache: xfer[0, nr_xfer) are free objects */
    uint32_t nr_xfer, xfer_cap; /* xfer_cap: about 128 KiB of objects, 4 .. 512 */
    uint32_t busy;          /* refilled or drained since the last idle check */
    size_t nr_partial;
    size_t nr_slabs;        /* slabs owned, spare included */
    size_t nr_inuse;        /* objects out of slabs (with callers or in per-CPU caches) */
    uint64_t nr_refill, nr_drain, nr_slab_alloc, nr_slab_free;
} __attribute__((aligned(64)));

/* One row per zone that has slabs: LOW32 and NORMAL (ZONE_HUGE, the last zone, has none, and its
 * row was 8 KiB of .bss that start-up wrote and the tick read in every process). */
#define SLAB_NR_ZONES ZONE_HUGE
BSL_HIDDEN extern struct kmem_cache kmem_caches[SLAB_NR_ZONES][SLAB_NR_CLASSES];

BSL_HIDDEN void slab_init(void);
/* Take up to n objects of class c from zone's caches into out[]; returns how many (0: no memory). */
BSL_HIDDEN unsigned slab_alloc_bulk(int zone, unsigned c, void **out, unsigned n, unsigned cpu);
/* Give objects back to their slabs (any zones and classes mixed). */
BSL_HIDDEN void slab_free_bulk(void *const *objs, unsigned n);
/* Give a batch of NORMAL-zone objects of class c back, through the transfer cache when it has room. */
BSL_HIDDEN void slab_free_batch(unsigned c, void *const *objs, unsigned n);
/* Move every transfer cache's objects back to their slabs (malloc_trim). */
BSL_HIDDEN void slab_flush_transfer(void);
/* Zero the unused slots of every transfer cache (see pcp_wipe_stale). */
BSL_HIDDEN void slab_wipe_stale(void);
/* Periodic: the NORMAL-zone classes that saw no refill or drain since the previous call (bit c),
 * and shrinking them: their transfer caches go back to the slabs and their spare slabs (and every
 * LOW32 spare) back to the buddy allocator, so an idle class pins no pages. */
BSL_HIDDEN uint64_t slab_idle_classes(void);
BSL_HIDDEN void slab_shrink(uint64_t classes);
/* Give every cache's spare empty slab back to the buddy allocator (malloc_trim). */
BSL_HIDDEN void slab_release_spares(void);
/* Whether obj is free in its slab's bitmap or in its transfer cache (under the cache lock). */
BSL_HIDDEN int slab_object_is_free(const void *obj);
/* Verify every slab of every cache; 0 or -1 with a message. */
BSL_HIDDEN int slab_check(void);
/* fork(): every kmem_cache lock, for src/malloc/fork.c's table. */
BSL_HIDDEN void slab_fork_locks(os_lock_visit_fn visit);

/* The free mark of a small object (double-free detection, always on): the public API's free()
 * writes slab_free_key ^ p into the second word of the object (objects are at least 16 bytes),
 * its malloc() clears it. A free that finds the mark already there is probably a double free;
 * free_check_slow() (src/malloc) verifies it exactly (is the object on a freelist or in a cache?)
 * before calling it one. The slab layer itself never touches an object: the key lives here so
 * that a heap walk can tell objects waiting free in a cache from live ones. */
BSL_HIDDEN extern uintptr_t slab_free_key;
/* words: a copy of the object at obj (at least 16 bytes). */
static inline int slab_marked_free(uintptr_t obj, const uintptr_t *words) { return words[1] == (slab_free_key ^ obj); }

/* The heap walk (walk.c; the leak scan's), lock-free and racy: every block handed out from the
 * arenas, with no lock taken, so blocks may come and go meanwhile (arena memory stays mapped).
 * SLAB_WALK_OBJECT: a slab object not free in its slab (it may still wait in a per-CPU or transfer
 * cache: slab_marked_free tells); SLAB_WALK_LARGE: a large block, its guard page left out. */
enum { SLAB_WALK_OBJECT = 1, SLAB_WALK_LARGE = 2 };
BSL_HIDDEN void slab_heap_walk(void (*fn)(uintptr_t start, size_t len, int kind, void *arg), void *arg);

static inline void *slab_base(const struct page *head) { return page_address(head); }

/* The leak tracker's block records (recs.c): the record array of the slab at head, given one now
 * if it has none (NULL: out of metadata); release_slab's part; fork. */
BSL_HIDDEN uint64_t *slab_recs_get(struct page *head);
BSL_HIDDEN void slab_recs_release(struct page *head);
BSL_HIDDEN void slab_recs_fork_locks(os_lock_visit_fn visit);
/* Every nonzero record (walk.c): fn(block start, record, arg). Racy as the heap walk is: records
 * may be written meanwhile; an array found to have left its slab is skipped. */
BSL_HIDDEN void slab_recs_walk(void (*fn)(uintptr_t start, uint64_t rec, void *arg), void *arg);

#endif

/* Zones: address space reserved from the OS in demand-paged arenas, cut into 4 KiB page frames
 * with one descriptor (struct page) per frame, found from any pointer in O(1).
 *
 * Layout: every arena is ARENA_SIZE (64 MiB) bytes aligned to ARENA_SIZE, and its first
 * ARENA_META_PAGES frames hold the descriptors of all its frames, then one 32-byte free-object
 * bitmap per frame (used for the frame that heads a slab). So the descriptor of the frame
 * holding p is plain arithmetic: (p & ~ARENA_MASK) + ((p & ARENA_MASK) >> 12) * 64, no load at all;
 * the descriptors of the metadata frames themselves stay zero (flags 0: never a valid block).
 * Untouched frames cost no RSS, nor do their descriptors (demand paging).
 *
 * The pagemap says who owns each 2 MiB section of the address space: an arena (the entry is its
 * struct arena *), a huge block (its descriptor | 1), or nobody (0: a foreign pointer). Entries are
 * written under pagemap_lock and read without locks; an arena's sections are never unmapped, a
 * huge block's are cleared before its mapping goes away. free() reads the pagemap to reject
 * foreign pointers, but the descriptor's address does not depend on it, so the CPU overlaps the
 * two loads. */
#ifndef BSL_ZONES_H
#define BSL_ZONES_H

#include "os/os.h"

#define PAGE_SHIFT OS_PAGE_SHIFT
#define PAGE_SIZE OS_PAGE_SIZE
#define MAX_ORDER 10 /* largest buddy block: 2^10 frames = 4 MiB */
#define MAX_ORDER_PAGES ((size_t)1 << MAX_ORDER)
#define MAX_ORDER_BYTES (MAX_ORDER_PAGES << PAGE_SHIFT)
#define SECTION_SHIFT 21 /* 2 MiB: pagemap granule and huge-page size */
#define ARENA_SHIFT 26   /* 64 MiB arenas, aligned to their size */
#define ARENA_SIZE ((size_t)1 << ARENA_SHIFT)
#define ARENA_MASK (ARENA_SIZE - 1)
#define ARENA_PAGES (ARENA_SIZE >> 12)
#define SLAB_BITMAP_BYTES 32 /* per frame: a free-object bitmap of up to 256 objects for a slab head */
/* Metadata frames at the arena's base: the descriptors (1 MiB), then the slab bitmaps (512 KiB). */
#define ARENA_META_PAGES ((ARENA_PAGES * 64 + ARENA_PAGES * SLAB_BITMAP_BYTES) / 4096) /* 384 */
#define SECTION_SIZE ((size_t)1 << SECTION_SHIFT)
#define ADDR_BITS 47

enum zone_id { ZONE_LOW32 = 0, ZONE_NORMAL = 1, ZONE_HUGE = 2, NR_ZONES = 3 };

/* Page flags (struct page.flags). */
#define PG_BUDDY 0x01 /* head of a free buddy block: order, lru, dirty, freed_ms valid */
#define PG_DIRTY 0x02 /* free block some of whose frames may be resident (ndirty > 0; arena dirty_bits) */
#define PG_LARGE 0x04 /* head of an allocated large block: npages valid */
#define PG_SLAB 0x08  /* frame of a slab: head valid on every frame, slab fields on the head */
#define PG_ZEROED 0x10 /* PG_LARGE: the block was clean (all zero) when handed out */
#define PG_LOW32 0x20  /* PG_SLAB of the LOW32 zone: its objects bypass the per-CPU caches */
#define PG_GUARD 0x40  /* PG_LARGE: the block's last frame is an inaccessible guard page (option guard) */
/* PG_SLAB frame holding blocks that sampled site tracking recorded (ntracked > 0): free()'s fast
 * path, which wants flags == PG_SLAB, leaves such frames for free_slow, which tells the tracker.
 * Set and cleared, with ntracked, only under the tracker's block map shard of the frame (the
 * tracker's core mark callback), which serialises the marks of one frame. (A large block's record
 * is in its head descriptor, large_rec, which free_slow reads: no mark.) */
#define PG_TRACKED 0x80

struct arena;

/* One descriptor per 4 KiB frame: 64 bytes, one cache line.
 * Locking: buddy state (PG_BUDDY/PG_DIRTY, order, lru, dirty, freed_ms) is protected by the lock
 * of the buddy shard that owns the arena; large-block state (PG_LARGE, npages) belongs to the
 * block's owner (whoever holds the pointer); slab state by the kmem_cache lock of its class, except
 * flags/size_class/head which are written before the slab is published and then only read. */
struct page {
    uint8_t flags;
    uint8_t order;      /* PG_BUDDY: order of the free block. PG_SLAB: slab order (every frame) */
    uint8_t size_class; /* PG_SLAB: size class of every object in the slab */
    uint8_t zone;       /* zone of the arena (set on block heads) */
    union {
        uint32_t npages; /* PG_LARGE: frames in the block; PG_SLAB head: frames in the slab */
        uint32_t ndirty; /* PG_BUDDY: frames of the free block whose dirty bit is set (arena dirty_bits) */
    };
    struct page *head;  /* PG_SLAB: the slab's head frame (itself on the head) */
    struct page *next, *prev; /* PG_BUDDY: free_area list; PG_SLAB head: kmem_cache partial list */
    union {
        struct { /* PG_BUDDY */
            struct page *dnext, *dprev; /* shard's dirty list, oldest first (purge decay) */
            uint64_t freed_ms;          /* when the block became free and dirty */
        };
        struct {                /* PG_SLAB head (free objects: the slab bitmap, slab_bitmap()) */
            uint32_t inuse;     /* objects handed out (to callers or per-CPU caches) */
            uint32_t total;     /* objects in the slab (at most 256) */
            uint32_t on_partial;
            uint32_t ntracked;  /* every slab frame: its blocks that sampled tracking recorded (PG_TRACKED) */
            union {             /* the leak tracker's block records (slab/recs.c, the kernel's slabobj_ext) */
                uint64_t *obj_recs; /* PG_SLAB head: one per object, NULL until the tracker keeps one */
                uint64_t large_rec; /* PG_LARGE head: the block's (0: none) */
            };
        };
    };
    struct arena *arena; /* block heads: the arena the frame belongs to */
};
_Static_assert(sizeof(struct page) == 64, "struct page is one cache line");

/* An arena: ARENA_SIZE bytes owned by one buddy shard of one zone. The struct lives in metadata;
 * the descriptors live at the arena's base. Immutable after creation except `fresh`,
 * `pb_type` and `dirty_bits` (protected by the owning shard's lock). */
struct arena {
    uintptr_t base;      /* aligned to ARENA_SIZE; == (uintptr_t)pages */
    struct page *pages;  /* ARENA_PAGES descriptors; [0, ARENA_META_PAGES) describe themselves */
    uint8_t zone;
    uint8_t shard;
    size_t fresh;        /* first pfn never given to the buddy lists (protected by the shard lock) */
    /* Kind (enum pb_type) of each MAX_ORDER pageblock while it is split (shard lock). */
    uint8_t pb_type[ARENA_PAGES >> MAX_ORDER];
    /* One bit per frame (shard lock): set on a free frame that may be resident (used since it was
     * last purged). Invariants (buddy_check): a frame in use or never used has its bit clear; a free
     * block's head counts its set bits in `ndirty` and is PG_DIRTY exactly when ndirty > 0. So
     * buddy_alloc knows how many frames of what it hands out are clean, even when a block is made
     * of dirty and clean parts merged or split (src/buddy/purge.c, rule 1). */
    uint64_t dirty_bits[ARENA_PAGES / 64];
    struct arena *next;  /* owning shard's arena list (shard lock) */
};

/* A zone: a pool of arenas with a purpose, growth policy and watermarks (in frames).
 * Locking: lock protects nr_arenas and reserved (arenas themselves belong to buddy shards). */
struct zone {
    os_lock_t lock;
    const char *name;
    unsigned nr_arenas;
    size_t reserved;        /* bytes of address space reserved for this zone */
    size_t wmark_min, wmark_low, wmark_high; /* free dirty frames; above high: purge now */
};

BSL_HIDDEN extern struct zone zones[NR_ZONES];
#define ZONE_WMARK_LOW_DEFAULT (((size_t)256 << 20) >> PAGE_SHIFT)
#define ZONE_WMARK_HIGH_DEFAULT (((size_t)1 << 30) >> PAGE_SHIFT)
/* Cap every zone's dirty-frame watermarks: high at max_bytes, low at half of it (0: the defaults).
 * The soft OOM policy caps them at 1/8 of the soft limit, so that free frames the allocator keeps
 * can take at most that share of the limit before the buddy purges them on its own. */
BSL_HIDDEN void zones_cap_dirty(size_t max_bytes);
BSL_HIDDEN extern uintptr_t *pagemap_top[1u << (ADDR_BITS - 34)];
/* One bit per 64 MiB slot of the address space: set while the slot is an arena. Arenas are never
 * unmapped, so a bit once set stays set. 256 KiB of demand-zero .bss; free() tests it with one
 * load instead of walking the two-level pagemap. */
BSL_HIDDEN extern uint64_t arena_bitmap[1u << (ADDR_BITS - ARENA_SHIFT - 6)];

/* Whether addr lies in an arena (then arena_page(addr) is its descriptor). */
static inline int addr_in_arena(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (unlikely(a >> ADDR_BITS))
        return 0;
    uint64_t w = __atomic_load_n(&arena_bitmap[a >> (ARENA_SHIFT + 6)], __ATOMIC_RELAXED);
    return (int)(w >> ((a >> ARENA_SHIFT) & 63)) & 1;
}

BSL_HIDDEN void zones_init(void);
/* Reserve a new arena for `zone`, owned by buddy shard `shard`. NULL when out of address space. */
BSL_HIDDEN struct arena *zone_grow(int zone, unsigned shard);
/* The arena holding `addr`, or NULL when the address is not in an arena. */
BSL_HIDDEN struct arena *zone_arena_of(const void *addr);
/* fork(): the zone locks, huge_lock, pagemap_lock and meta_lock, in that (lock) order. */
BSL_HIDDEN void zones_fork_locks(os_lock_visit_fn visit);

/* Pagemap entry of the section holding `addr` (see above), 0 for a foreign address. */
static inline uintptr_t pagemap_entry(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    if (unlikely(a >> ADDR_BITS))
        return 0;
    uintptr_t *leaf = __atomic_load_n(&pagemap_top[a >> 34], __ATOMIC_ACQUIRE);
    if (unlikely(!leaf))
        return 0;
    return __atomic_load_n(&leaf[(a >> SECTION_SHIFT) & ((1u << (34 - SECTION_SHIFT)) - 1)], __ATOMIC_RELAXED);
}
#define PAGEMAP_HUGE_TAG ((uintptr_t)1)

/* Descriptor of the frame holding `addr`, which must lie in an arena (check the pagemap first). */
static inline struct page *arena_page(const void *addr)
{
    uintptr_t a = (uintptr_t)addr;
    return (struct page *)((a & ~ARENA_MASK) + ((a & ARENA_MASK) >> PAGE_SHIFT) * sizeof(struct page));
}

/* Descriptor of the frame holding `addr`, NULL when the address is not in an arena. */
static inline struct page *virt_to_page(const void *addr)
{
    uintptr_t e = pagemap_entry(addr);
    if (unlikely(!e || (e & PAGEMAP_HUGE_TAG)))
        return NULL;
    return arena_page(addr);
}

static inline size_t page_to_pfn(const struct arena *ar, const struct page *pg)
{
    return (size_t)(pg - ar->pages);
}
/* The first byte of the frame a descriptor describes (pure arithmetic, like arena_page). */
static inline void *page_address(const struct page *pg)
{
    uintptr_t d = (uintptr_t)pg;
    return (void *)((d & ~ARENA_MASK) + ((d & ARENA_MASK) / sizeof(struct page) << PAGE_SHIFT));
}

/* The free-object bitmap of the slab headed by descriptor `head`: bit i set = object i is free. */
static inline uint64_t *slab_bitmap(const struct page *head)
{
    uintptr_t d = (uintptr_t)head, base = d & ~ARENA_MASK;
    return (uint64_t *)(base + ARENA_PAGES * sizeof(struct page) +
                        (d - base) / sizeof(struct page) * SLAB_BITMAP_BYTES);
}

/* Set (or clear, with entry 0) the pagemap entries of [addr, addr+size), section aligned.
 * Returns -1 when a leaf table cannot be allocated. */
BSL_HIDDEN int pagemap_set(uintptr_t addr, size_t size, uintptr_t entry);

/* ---- Huge blocks: mapped directly, 2 MiB aligned, THP advised; one descriptor each. ---- */
struct huge_block {
    uintptr_t xbase;     /* base ^ HUGE_XBASE (huge_base()): a plain pointer here would make a
                          * leaked block look reachable to Valgrind's leak scan */
    size_t map_size;     /* bytes mapped, a multiple of SECTION_SIZE */
    size_t usable;       /* bytes the caller may use (<= map_size) */
    size_t ndirty;       /* cached: bytes at its front that may be resident (the rest was purged or
                          * never touched), a multiple of SECTION_SIZE; held by the cache */
    uint8_t zone;        /* the zone it was asked from: HUGE, or NORMAL/LOW32 above MAX_ORDER */
    uint8_t live;        /* 1 while allocated: catches double frees */
    uint8_t advised;     /* MADV_HUGEPAGE given (once it proved long-lived) */
    uint64_t stamp_ms;   /* live: when allocated; cached: when freed */
    struct huge_block *next_free; /* descriptor free list, or the cache of freed mappings */
    struct huge_block *next_live, *prev_live; /* live blocks (huge_lock), for lazy THP advice */
};
BSL_HIDDEN extern int huge_thp; /* advise MADV_HUGEPAGE (option thp) */
/* A huge block for `zone` (the zone bsl_zone_of reports; LOW32 maps below 4 GiB); with `zero`, one
 * that reads as zeros (a reused dirty mapping is purged). */
BSL_HIDDEN void *huge_alloc(size_t size, size_t align, int zone, int zero);
BSL_HIDDEN void huge_free(struct huge_block *hb);
/* Resize in place or by mremap; NULL when it cannot (the block is unchanged). */
BSL_HIDDEN void *huge_realloc(struct huge_block *hb, size_t size);
/* Live huge blocks: bytes mapped and count; *cached: bytes of freed mappings kept for reuse,
 * *cached_dirty (if not NULL): how many of those may be resident. */
BSL_HIDDEN void huge_stats(size_t *bytes, size_t *count, size_t *cached, size_t *cached_dirty);
/* Periodic (the tick): advise MADV_HUGEPAGE on live blocks older than a second, and unmap cached
 * freed mappings older than age_ms (age_ms 0: all of them). */
BSL_HIDDEN void huge_tick(uint64_t now, uint64_t age_ms);
/* RSS-neutral growth across zones (buddy.c): `bytes` of clean frames were just handed out; purge as
 * many bytes of the cached extents' resident fronts (whole sections, oldest extent first). Returns
 * the bytes purged (0 at once, without a lock, when nothing cached is resident). */
BSL_HIDDEN size_t huge_offset(size_t bytes);
/* Bytes of live huge blocks, read without the lock (for limits: may be a moment stale). */
BSL_HIDDEN size_t huge_live_bytes(void);
/* fork(): huge_lock (visited by zones_fork_locks, after the zone locks). */
BSL_HIDDEN void huge_fork_locks(os_lock_visit_fn visit);
#define HUGE_XBASE ((uintptr_t)0xb5a1000000000000ull) /* makes the value non-canonical */
static inline uintptr_t huge_base(const struct huge_block *hb) { return hb->xbase ^ HUGE_XBASE; }
/* Unmap every cached freed mapping now (address space is short: RLIMIT_AS). Returns bytes freed. */
BSL_HIDDEN size_t huge_release_cache(void);
static inline struct huge_block *pagemap_huge(uintptr_t entry)
{
    return (struct huge_block *)(entry & ~PAGEMAP_HUGE_TAG);
}

/* ---- Metadata: the allocator's own structures, from its own pages (never malloc). ---- */
BSL_HIDDEN void *meta_alloc(size_t size); /* zeroed, 64-byte aligned, never freed */
BSL_HIDDEN size_t meta_bytes(void);
/* Call fn on every metadata reservation (fn may allocate; chunks added meanwhile are missed). The leak
 * tracker excludes them from its roots: stale pointers there must not make leaks look reachable. */
BSL_HIDDEN void meta_for_each_chunk(void (*fn)(uintptr_t start, size_t size, void *arg), void *arg);
/* ---- heap walks (the leak scan's): lock-free and racy, for a caller that tolerates blocks
 * changing under it ---- */
/* Every arena's base address (arenas are never unmapped: their descriptors stay readable). */
BSL_HIDDEN void zones_for_each_arena(void (*fn)(uintptr_t base, void *arg), void *arg);
/* Every live huge block, once: its base and usable bytes. It may be freed and unmapped meanwhile:
 * read it with os_read_self. */
BSL_HIDDEN void zones_for_each_huge(void (*fn)(uintptr_t base, size_t usable, void *arg), void *arg);

#endif

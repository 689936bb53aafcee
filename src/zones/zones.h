/* Zones: address space reserved from the OS in big demand-paged arenas, cut into 4 KiB page
 * frames with one descriptor (struct page) per frame, found from any pointer in O(1).
 *
 * Layout: an arena is [base, base + npages * 4 KiB), base aligned to the largest buddy block
 * (4 MiB) so that buddy blocks are naturally aligned in memory. Its descriptors live in a separate
 * reservation (pages[]), also demand paged: a frame never touched costs no descriptor RSS either.
 *
 * The pagemap maps each 2 MiB section of the address space to its owner: an arena (the entry is
 * a biased pointer such that entry + (addr >> 12) * sizeof(struct page) is the frame's
 * descriptor), a huge block (entry is its descriptor | 1), or nothing (0: a foreign pointer).
 * Entries are written under pagemap_lock and read without locks; an arena's sections are never
 * unmapped, a huge block's are cleared before its mapping goes away. */
#ifndef BSL_ZONES_H
#define BSL_ZONES_H

#include "os/os.h"

#define PAGE_SHIFT OS_PAGE_SHIFT
#define PAGE_SIZE OS_PAGE_SIZE
#define MAX_ORDER 10 /* largest buddy block: 2^10 frames = 4 MiB */
#define MAX_ORDER_PAGES ((size_t)1 << MAX_ORDER)
#define MAX_ORDER_BYTES (MAX_ORDER_PAGES << PAGE_SHIFT)
#define SECTION_SHIFT 21 /* 2 MiB: pagemap granule and huge-page size */
#define SECTION_SIZE ((size_t)1 << SECTION_SHIFT)
#define ADDR_BITS 47

enum zone_id { ZONE_LOW32 = 0, ZONE_NORMAL = 1, ZONE_HUGE = 2, NR_ZONES = 3 };

/* Page flags (struct page.flags). */
#define PG_BUDDY 0x01 /* head of a free buddy block: order, lru, dirty, freed_ms valid */
#define PG_DIRTY 0x02 /* free block whose frames may be resident (not purged since last use) */
#define PG_LARGE 0x04 /* head of an allocated large block: npages valid */
#define PG_SLAB 0x08  /* frame of a slab: head valid on every frame, slab fields on the head */
#define PG_ZEROED 0x10 /* PG_LARGE: the block was clean (all zero) when handed out */

struct arena;

/* One descriptor per 4 KiB frame: 64 bytes, one cache line.
 * Locking: buddy state (PG_BUDDY/PG_DIRTY, order, lru, dirty, freed_ms) is protected by the lock
 * of the buddy shard that owns the arena; large-block state (PG_LARGE, npages) belongs to the
 * block's owner (whoever holds the pointer); slab state by the kmem_cache lock of its class, except
 * flags/size_class/head which are written before the slab is published and then only read. */
struct page {
    uint8_t flags;
    uint8_t order;      /* PG_BUDDY: order of the free block. PG_SLAB head: slab order */
    uint8_t size_class; /* PG_SLAB: size class of every object in the slab */
    uint8_t zone;       /* zone of the arena (set on block heads) */
    uint32_t npages;    /* PG_LARGE: frames in the block; PG_SLAB head: frames in the slab */
    struct page *head;  /* PG_SLAB: the slab's head frame (itself on the head) */
    struct page *next, *prev; /* PG_BUDDY: free_area list; PG_SLAB head: kmem_cache partial list */
    union {
        struct { /* PG_BUDDY */
            struct page *dnext, *dprev; /* shard's dirty list, oldest first (purge decay) */
            uint64_t freed_ms;          /* when the block became free and dirty */
        };
        struct {                /* PG_SLAB head */
            void *freelist;     /* freed objects, linked through their first word */
            uint32_t inuse;     /* objects handed out (to callers or per-CPU caches) */
            uint32_t bump;      /* objects [bump, total) were never handed out */
            uint32_t total;     /* objects in the slab */
            uint32_t on_partial;
        };
    };
    struct arena *arena; /* block heads: the arena the frame belongs to */
};
_Static_assert(sizeof(struct page) == 64, "struct page is one cache line");

/* A reservation owned by one buddy shard of one zone. Immutable after creation except `fresh`. */
struct arena {
    uintptr_t base;      /* aligned to MAX_ORDER_BYTES */
    size_t npages;       /* a multiple of MAX_ORDER_PAGES */
    struct page *pages;  /* npages descriptors */
    uint8_t zone;
    uint8_t shard;
    size_t fresh;        /* first pfn never given to the buddy lists (protected by the shard lock) */
    struct arena *next;  /* zone's arena list (zone lock) */
};

/* A zone: a pool of arenas with a purpose, growth policy and watermarks (in frames).
 * Locking: lock protects arenas, nr_arenas, reserved, next_arena_size. */
struct zone {
    os_lock_t lock;
    const char *name;
    struct arena *arenas;
    unsigned nr_arenas;
    size_t reserved;        /* bytes of address space reserved for this zone */
    size_t next_arena_size; /* halves when a reservation fails, down to MAX_ORDER_BYTES */
    size_t wmark_min, wmark_low, wmark_high; /* free dirty frames; above high: purge now */
};

BSL_HIDDEN extern struct zone zones[NR_ZONES];
BSL_HIDDEN extern uintptr_t *pagemap_top[1u << (ADDR_BITS - 34)];

BSL_HIDDEN void zones_init(void);
/* Reserve a new arena for `zone`, owned by buddy shard `shard`. NULL when out of address space. */
BSL_HIDDEN struct arena *zone_grow(int zone, unsigned shard);
BSL_HIDDEN void zones_prefork(void);
BSL_HIDDEN void zones_postfork_parent(void);
BSL_HIDDEN void zones_postfork_child(void);

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

static inline struct page *pagemap_page(uintptr_t entry, const void *addr)
{
    return (struct page *)(entry + ((uintptr_t)addr >> PAGE_SHIFT) * sizeof(struct page));
}

/* Descriptor of the frame holding `addr`, NULL when the address is not in an arena. */
static inline struct page *virt_to_page(const void *addr)
{
    uintptr_t e = pagemap_entry(addr);
    if (unlikely(!e || (e & PAGEMAP_HUGE_TAG)))
        return NULL;
    return pagemap_page(e, addr);
}

static inline size_t page_to_pfn(const struct arena *ar, const struct page *pg)
{
    return (size_t)(pg - ar->pages);
}
static inline void *page_address(const struct arena *ar, const struct page *pg)
{
    return (void *)(ar->base + (page_to_pfn(ar, pg) << PAGE_SHIFT));
}

/* Set (or clear, with entry 0) the pagemap entries of [addr, addr+size), section aligned.
 * Returns -1 when a leaf table cannot be allocated. */
BSL_HIDDEN int pagemap_set(uintptr_t addr, size_t size, uintptr_t entry);

/* ---- Huge blocks: mapped directly, 2 MiB aligned, THP advised; one descriptor each. ---- */
struct huge_block {
    uintptr_t base;
    size_t map_size;     /* bytes mapped, a multiple of SECTION_SIZE */
    size_t usable;       /* bytes the caller may use (<= map_size) */
    uint8_t zone;        /* ZONE_HUGE */
    uint8_t live;        /* 1 while allocated: catches double frees */
    struct huge_block *next_free;
};
BSL_HIDDEN extern int huge_thp; /* advise MADV_HUGEPAGE (option thp) */
BSL_HIDDEN void *huge_alloc(size_t size, size_t align);
BSL_HIDDEN void huge_free(struct huge_block *hb);
/* Resize in place or by mremap; NULL when it cannot (the block is unchanged). */
BSL_HIDDEN void *huge_realloc(struct huge_block *hb, size_t size);
BSL_HIDDEN void huge_stats(size_t *bytes, size_t *count);
static inline struct huge_block *pagemap_huge(uintptr_t entry)
{
    return (struct huge_block *)(entry & ~PAGEMAP_HUGE_TAG);
}

/* ---- Metadata: the allocator's own structures, from its own pages (never malloc). ---- */
BSL_HIDDEN void *meta_alloc(size_t size); /* zeroed, 64-byte aligned, never freed */
BSL_HIDDEN size_t meta_bytes(void);

#endif

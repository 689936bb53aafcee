/* kmem_caches: slabs of one size class, refilled from and drained to by the per-CPU caches. */
#include "slab/slab.h"

/* The tables malloc's fast path reads sit in .data.rel.ro, not .rodata: the loader writes that
 * segment's pages (relocations) before it makes them read-only, so they are anonymous and a fork
 * child inherits their page tables, where a child's first read of a .rodata page is a fault (the
 * kernel copies no page tables for file-backed mappings): one fault per forked child that
 * mallocs (a shell's subshells). */
#define SLAB_FAST_TABLE __attribute__((section(".data.rel.ro")))
SLAB_FAST_TABLE const uint32_t slab_class_size[SLAB_NR_CLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128,
    144, 160, 176, 192, 208, 224, 240, 256,
    288, 320, 352, 384, 416, 448, 480, 512,
    576, 640, 704, 768, 832, 896, 960, 1024,
    1152, 1280, 1408, 1536, 1664, 1792, 1920, 2048,
    2304, 2560, 2816, 3072, 3328, 3584, 3840, 4096,
    4608, 5120, 5632, 6144, 6656, 7168, 7680, 8192,
    10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768,
};

/* slab_small_class[(n + 15) >> 4] for n <= 1024. */
SLAB_FAST_TABLE const uint8_t slab_small_class[65] = {
    0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23,
    23, 24, 24, 24, 24, 25, 25, 25, 25, 26, 26, 26, 26, 27, 27, 27,
    27, 28, 28, 28, 28, 29, 29, 29, 29, 30, 30, 30, 30, 31, 31, 31,
    31,
};

BSL_BIG_BSS struct kmem_cache kmem_caches[SLAB_NR_ZONES][SLAB_NR_CLASSES];
uint64_t slab_div_magic[SLAB_NR_CLASSES];

/* Bits of word w of a slab bitmap that stand for objects (the slab has `total` of them). */
static inline uint64_t bitmap_valid(uint32_t total, unsigned w)
{
    unsigned lo = w * 64;
    return total >= lo + 64 ? ~(uint64_t)0 : total > lo ? ((uint64_t)1 << (total - lo)) - 1 : 0;
}

/* Smallest order whose slab wastes at most 1/8 and holds at least 8 objects, or order 3. */
static unsigned slab_order_for(uint32_t size)
{
    for (unsigned o = 0; o <= 5; o++) {
        size_t bytes = PAGE_SIZE << o, n = bytes / size, waste = bytes - n * size;
        if (n >= 1 && waste * 8 <= bytes && (n >= 8 || o >= 3))
            return o;
    }
    return 5;
}

void slab_init(void)
{
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
        slab_div_magic[c] = 1 + UINT64_MAX / slab_class_size[c];
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
            struct kmem_cache *kc = &kmem_caches[z][c];
            kc->size = slab_class_size[c];
            kc->order = (uint8_t)slab_order_for(kc->size);
            kc->objs_per_slab = (uint16_t)((PAGE_SIZE << kc->order) / kc->size);
            kc->zone = (uint8_t)z;
            os_lock_init(&kc->lock, LOCK_RANK_SLAB);
        }
}

static __attribute__((noreturn, noinline)) void slab_corrupt(const void *obj, const char *what)
{
    os_printf(2, "buddyslab: free(): %s: pointer %p\n", what, obj);
    os_abort();
}

static void partial_add_locked(struct kmem_cache *kc, struct page *s)
{
    bsl_assert_locked(&kc->lock);
    s->prev = NULL;
    s->next = kc->partial;
    if (kc->partial)
        kc->partial->prev = s;
    kc->partial = s;
    s->on_partial = 1;
    kc->nr_partial++;
}

static void partial_del_locked(struct kmem_cache *kc, struct page *s)
{
    bsl_assert_locked(&kc->lock);
    if (s->prev)
        s->prev->next = s->next;
    else
        kc->partial = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->on_partial = 0;
    kc->nr_partial--;
}

/* A new slab from the buddy allocator; every frame points at the head. Called without locks. */
static struct page *new_slab(struct kmem_cache *kc, unsigned c, unsigned cpu)
{
    int zeroed;
    size_t npages = (size_t)1 << kc->order;
    struct page *head = buddy_alloc_type(kc->zone, npages, kc->order, cpu, PB_SLAB, &zeroed);
    if (!head)
        return NULL;
    for (size_t i = 0; i < npages; i++) {
        struct page *pg = head + i;
        pg->size_class = (uint8_t)c;
        pg->order = kc->order; /* on every frame: slab_offset() */
        pg->head = head;
        pg->zone = head->zone;
        pg->ntracked = 0;
        __atomic_store_n(&pg->flags, (uint8_t)(PG_SLAB | (kc->zone == ZONE_LOW32 ? PG_LOW32 : 0)), __ATOMIC_RELEASE);
    }
    head->npages = (uint32_t)npages;
    head->inuse = 0;
    head->total = kc->objs_per_slab;
    head->on_partial = 0;
    head->obj_recs = NULL; /* the buddy's fields were there (recs.c) */
    uint64_t *bm = slab_bitmap(head); /* every object free: bits [0, total) */
    for (unsigned w = 0; w < SLAB_BITMAP_BYTES / 8; w++)
        bm[w] = bitmap_valid(head->total, w);
    return head;
}

static void release_slab(struct page *head)
{
    slab_recs_release(head);
    size_t npages = head->npages;
    for (size_t i = 1; i < npages; i++)
        head[i].flags = 0;
    buddy_free(head, npages);
}

unsigned slab_alloc_bulk(int zone, unsigned c, void **out, unsigned n, unsigned cpu)
{
    struct kmem_cache *kc = &kmem_caches[zone][c];
    unsigned got = 0;
    os_lock(&kc->lock);
    kc->busy = 1;
    if (kc->nr_xfer) { /* whole batches first: no object is touched */
        got = kc->nr_xfer < n ? kc->nr_xfer : n;
        kc->nr_xfer -= got;
        for (unsigned i = 0; i < got; i++)
            out[i] = kc->xfer[kc->nr_xfer + i];
        kc->nr_refill++;
        os_unlock(&kc->lock);
        return got;
    }
    while (got < n) {
        struct page *s = kc->partial;
        if (!s) {
            if (kc->spare) {
                s = kc->spare;
                kc->spare = NULL;
            } else {
                os_unlock(&kc->lock);
                s = new_slab(kc, c, cpu);
                os_lock(&kc->lock);
                if (!s)
                    break;
                kc->nr_slabs++;
                kc->nr_slab_alloc++;
            }
            partial_add_locked(kc, s);
        }
        /* Free objects come from the bitmap, lowest address first: no object is read or written,
         * so a slab whose objects were freed by other CPUs in any order costs one line here. */
        unsigned took = 0;
        uint64_t *bm = slab_bitmap(s);
        char *base = slab_base(s);
        uint32_t size = kc->size;
        for (unsigned w = 0; w < SLAB_BITMAP_BYTES / 8 && got < n; w++) {
            uint64_t word = bm[w];
            while (word && got < n) {
                unsigned bit = (unsigned)__builtin_ctzll(word);
                word &= word - 1;
                out[got++] = base + (size_t)(w * 64 + bit) * size;
                took++;
            }
            bm[w] = word;
        }
        s->inuse += took;
        bsl_assert(1, s->inuse <= s->total);
        if (s->inuse == s->total)
            partial_del_locked(kc, s);
    }
    kc->nr_inuse += got;
    /* Kept apart: GCC otherwise adds {got, 1} to both counters at once with a vector constant from
     * .rodata, a page a fork child has no page table for (one more fault in each child that
     * refills: see the tables' SLAB_FAST_TABLE). */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    kc->nr_refill++;
    os_unlock(&kc->lock);
    return got;
}

void slab_free_bulk(void *const *objs, unsigned n)
{
    struct kmem_cache *locked = NULL;
    struct page *to_release = NULL; /* empty slabs, linked through next, freed after unlocking */
    for (unsigned i = 0; i < n; i++) {
        void *obj = objs[i];
        struct page *head = arena_page(obj)->head; /* obj came from a cache: it is ours */
        struct kmem_cache *kc = &kmem_caches[head->zone][head->size_class];
        if (kc != locked) {
            if (locked) {
                locked->nr_drain++;
                os_unlock(&locked->lock);
            }
            os_lock(&kc->lock);
            locked = kc;
        }
        /* A slab is at most 128 KiB, so the offset fits 32 bits: index and boundary test by the
         * class's multiply magic (slab.h), no divide; the division was a fifth of a drain to the
         * slabs (batch_fifo, 64-byte objects). */
        uint32_t off = (uint32_t)((char *)obj - (char *)slab_base(head));
        size_t idx = slab_index(off, head->size_class);
        if (unlikely(!slab_on_boundary(off, head->size_class)))
            slab_corrupt(obj, "invalid pointer (not the start of a block)");
        uint64_t *w = &slab_bitmap(head)[idx / 64], bit = (uint64_t)1 << (idx % 64);
        if (unlikely(head->inuse == 0 || (*w & bit)))
            slab_corrupt(obj, "double free detected");
        *w |= bit;
        head->inuse--;
        kc->nr_inuse--;
        if (head->inuse == 0) {
            if (head->on_partial)
                partial_del_locked(kc, head);
            /* Keep one empty slab per cache; give the rest back to the buddy allocator. */
            if (!kc->spare) {
                kc->spare = head;
            } else {
                kc->nr_slabs--;
                kc->nr_slab_free++;
                head->next = to_release;
                to_release = head;
            }
        } else if (!head->on_partial) {
            partial_add_locked(kc, head);
        }
    }
    if (locked) {
        locked->nr_drain++;
        os_unlock(&locked->lock);
    }
    while (to_release) {
        struct page *s = to_release;
        to_release = s->next;
        release_slab(s);
    }
}

/* Transfer cache capacity: about 128 KiB of objects, between 4 and 512 of them. The floor was 16:
 * the classes above 8 KiB then held up to 512 KiB each (16 x 32 KiB), a third of what mstress
 * (bench/macro/mstress.c) kept cached at its peak; their per-CPU batches are 2 to 4 objects. */
static uint32_t xfer_cap_for(uint32_t size)
{
    uint32_t n = (128u << 10) / size;
    return n < 4 ? 4 : n > 512 ? 512 : n;
}

void slab_free_batch(unsigned c, void *const *objs, unsigned n)
{
    struct kmem_cache *kc = &kmem_caches[ZONE_NORMAL][c];
    if (unlikely(!__atomic_load_n(&kc->xfer, __ATOMIC_ACQUIRE))) {
        void **x = meta_alloc(xfer_cap_for(kc->size) * sizeof(void *));
        os_lock(&kc->lock);
        if (!kc->xfer && x) {
            kc->xfer_cap = xfer_cap_for(kc->size);
            __atomic_store_n(&kc->xfer, x, __ATOMIC_RELEASE);
        } /* a lost race leaves x unused in metadata: at most once per class */
        os_unlock(&kc->lock);
    }
    os_lock(&kc->lock);
    kc->busy = 1;
    if (kc->xfer && kc->xfer_cap - kc->nr_xfer >= n) {
        for (unsigned i = 0; i < n; i++)
            kc->xfer[kc->nr_xfer + i] = objs[i];
        kc->nr_xfer += n;
        kc->nr_drain++;
        os_unlock(&kc->lock);
        return;
    }
    os_unlock(&kc->lock);
    slab_free_bulk(objs, n);
}

static void flush_one(struct kmem_cache *kc)
{
    void *buf[64];
    for (;;) {
        os_lock(&kc->lock);
        unsigned n = kc->nr_xfer < 64 ? kc->nr_xfer : 64;
        kc->nr_xfer -= n;
        for (unsigned i = 0; i < n; i++)
            buf[i] = kc->xfer[kc->nr_xfer + i];
        os_unlock(&kc->lock);
        if (!n)
            break;
        slab_free_bulk(buf, n);
    }
}

static void release_spare(struct kmem_cache *kc)
{
    os_lock(&kc->lock);
    struct page *s = kc->spare;
    kc->spare = NULL;
    if (s) {
        kc->nr_slabs--;
        kc->nr_slab_free++;
    }
    os_unlock(&kc->lock);
    if (s)
        release_slab(s);
}

void slab_flush_transfer(void)
{
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
        flush_one(&kmem_caches[ZONE_NORMAL][c]);
}

void slab_wipe_stale(void)
{
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
        struct kmem_cache *kc = &kmem_caches[ZONE_NORMAL][c];
        os_lock(&kc->lock);
        for (uint32_t i = kc->nr_xfer; kc->xfer && i < kc->xfer_cap; i++)
            kc->xfer[i] = NULL;
        os_unlock(&kc->lock);
    }
}

void slab_release_spares(void)
{
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
            release_spare(&kmem_caches[z][c]);
}

uint64_t slab_idle_classes(void)
{
    uint64_t idle = 0;
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
        if (!__atomic_exchange_n(&kmem_caches[ZONE_NORMAL][c].busy, 0, __ATOMIC_RELAXED))
            idle |= (uint64_t)1 << c;
    return idle;
}

void slab_shrink(uint64_t classes)
{
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
        struct kmem_cache *kc = &kmem_caches[ZONE_NORMAL][c];
        if (!(classes >> c & 1))
            continue;
        if (__atomic_load_n(&kc->nr_xfer, __ATOMIC_RELAXED))
            flush_one(kc);
        if (__atomic_load_n(&kc->spare, __ATOMIC_RELAXED))
            release_spare(kc);
    }
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
        if (__atomic_load_n(&kmem_caches[ZONE_LOW32][c].spare, __ATOMIC_RELAXED))
            release_spare(&kmem_caches[ZONE_LOW32][c]);
}

int slab_object_is_free(const void *obj)
{
    struct page *head = arena_page(obj)->head;
    struct kmem_cache *kc = &kmem_caches[head->zone][head->size_class];
    int found = 0;
    os_lock(&kc->lock);
    for (uint32_t i = 0; i < kc->nr_xfer && !found; i++)
        found = kc->xfer[i] == obj;
    size_t idx = (size_t)((const char *)obj - (const char *)slab_base(head)) / kc->size;
    if (!found && (slab_bitmap(head)[idx / 64] >> (idx % 64) & 1))
        found = 1;
    os_unlock(&kc->lock);
    return found;
}

int slab_check(void)
{
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
            struct kmem_cache *kc = &kmem_caches[z][c];
            int rc = 0;
            os_lock(&kc->lock);
            size_t n = 0;
            for (struct page *s = kc->partial; s && !rc; s = s->next, n++) {
                const uint64_t *bm = slab_bitmap(s);
                size_t free_objs = 0;
                for (unsigned w = 0; w < SLAB_BITMAP_BYTES / 8; w++) {
                    free_objs += (size_t)__builtin_popcountll(bm[w]);
                    if (bm[w] & ~bitmap_valid(s->total, w)) /* no bit past the last object */
                        rc = -1;
                }
                if (rc || (s->flags & PG_SLAB) == 0 || s->size_class != c || !s->on_partial ||
                    s->inuse + free_objs != s->total || s->inuse >= s->total) {
                    os_printf(2, "buddyslab: slab_check: class %u (%u B) slab %p inconsistent\n", c,
                              kc->size, slab_base(s));
                    rc = -1;
                }
            }
            for (uint32_t i = 0; i < kc->nr_xfer && !rc; i++) { /* transfer cache: live slab slots */
                const void *o = kc->xfer[i];
                struct page *pg = virt_to_page(o);
                size_t off = pg ? (size_t)((const char *)o - (const char *)slab_base(pg->head)) : 0;
                if (!pg || !(pg->flags & PG_SLAB) || pg->size_class != c || off % kc->size ||
                    off / kc->size >= pg->head->total ||
                    (slab_bitmap(pg->head)[off / kc->size / 64] >> (off / kc->size % 64) & 1)) {
                    os_printf(2, "buddyslab: slab_check: class %u transfer cache holds a bad object %p\n", c, o);
                    rc = -1;
                }
            }
            if (!rc && n != kc->nr_partial) {
                os_printf(2, "buddyslab: slab_check: class %u partial count %zu != %zu\n", c, n, kc->nr_partial);
                rc = -1;
            }
            os_unlock(&kc->lock);
            if (rc)
                return rc;
        }
    return 0;
}

void slab_fork_locks(os_lock_visit_fn visit)
{
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++)
            visit(&kmem_caches[z][c].lock);
    slab_recs_fork_locks(visit);
}

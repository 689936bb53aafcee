/* Per-CPU cache slow paths: creating caches, refilling from and draining to the kmem_caches,
 * draining other CPUs' caches, and the per-thread fallback's lifecycle.
 *
 * Locking: pcp_lock protects cache creation (pcp_slots[]) and the free list of slot arrays; a
 * cache's bins are never locked (see pcp.h). drain_lock serialises the drainers of other CPUs'
 * caches (and idle_sig[]); it is taken before any slab lock, never under one.
 *
 * Draining a cache another thread may be using (pcp_drain_cids), in rseq mode:
 *   1. stop its bins: base_lo = 0xffffffff, end_lo = 0, so every pop and push (single or bulk)
 *      fails over to the slow path, whose refills and drains then go straight to the slabs;
 *   2. os_rseq_fence(): a sequence that read the old bounds and had not committed is restarted and
 *      sees the stopped ones; a sequence that committed did so before the fence returned, so the
 *      drainer now reads every bin's final top and owns the bins;
 *   3. give the objects back to their slabs and set top = base;
 *   4. fence again, so that no sequence still holds the old top when the bounds come back (one
 *      that loaded top before step 3 and the restored bounds after it would commit a stale top);
 *   5. restore the bounds from pcp_slots[cid].
 * No cost on the fast path: the stopped state is the bounds the fast path compares anyway. */
#include "slab/pcp.h"

#include <pthread.h>

/* pcp_layout.h's struct rseq offsets, checked against the kernel's header where it is installed
 * (the ABI never changes; headers before Linux 6.3 lack node_id and mm_cid, whose offset follows
 * from flags': two 32-bit fields after it). */
#if defined(__has_include)
#if __has_include(<linux/rseq.h>)
#include <linux/rseq.h>
_Static_assert(offsetof(struct rseq, cpu_id) == RSEQ_OFF_CPU_ID, "struct rseq: cpu_id");
_Static_assert(offsetof(struct rseq, rseq_cs) == RSEQ_OFF_RSEQ_CS, "struct rseq: rseq_cs");
_Static_assert(offsetof(struct rseq, flags) + 4 + 4 == RSEQ_OFF_MM_CID, "struct rseq: mm_cid after flags, node_id");
_Static_assert(sizeof(struct rseq_cs) == 32 && offsetof(struct rseq_cs, start_ip) == 8 &&
                   offsetof(struct rseq_cs, post_commit_offset) == 16 && offsetof(struct rseq_cs, abort_ip) == 24,
               "struct rseq_cs: the assembly's descriptor is .long version, flags; .quad start, length, abort");
#endif
#endif

BSL_BIG_BSS struct pcp pcp_cpus[PCP_MAX_CID] __attribute__((aligned(4096)));
static struct pcp pcp_none; /* never written */
__thread struct pcp *pcp_mine __attribute__((tls_model("initial-exec"))) = &pcp_none;
struct pcp_read_mostly pcp_rm;
static long rseq_area_off; /* thread pointer -> glibc's struct rseq (when rseq_live) */

/* Fallback mode's stand-in for struct rseq (the fast paths' sequences read it through
 * bsl_rseq_tp_off): cpu_id -1 makes every sequence fail to its caller's slow path, which serves the
 * per-thread cache (pcp.h, pcp_fast_pop). The sequences store their descriptor into rseq_cs,
 * which no kernel reads here. */
static __thread struct {
    uint32_t cpu_id_start;
    int32_t cpu_id;
    uint64_t rseq_cs;
} pcp_no_rseq __attribute__((tls_model("initial-exec"), aligned(32))) = {0, -1, 0};

static os_lock_t pcp_lock = OS_LOCK_INIT(LOCK_RANK_PCP);
static os_lock_t drain_lock = OS_LOCK_INIT(LOCK_RANK_PCP_DRAIN);
static uint32_t bin_cap[PCP_NR_BINS];
static uint32_t bin_first[PCP_NR_BINS]; /* bin c's slots start at slot bin_first[c] of the array */
static size_t slots_per_cache;
BSL_BIG_BSS static void **pcp_slots[PCP_MAX_CID];  /* each id's slot array, set once under pcp_lock */
unsigned pcp_cid_end;                  /* ids at or above this never had a cache (pcp_lock to raise) */
/* Per cache id: the sum of all its bins' tops at the last pcp_drain_idle, and of its large bins'
 * tops at the last pcp_large_idle. Side by side: the two arrays were two pages of every process. */
struct idle_sigs {
    uint64_t all, large;
};
BSL_BIG_BSS static struct idle_sigs idle_sig[PCP_MAX_CID];
static int fence_broken;               /* os_rseq_fence failed once: drain the caller's cache only */
static int rseq_live; /* rseq registered by glibc, whether or not we use it */
#define PCP_MAX_BATCH 64

/* Fallback lifecycle: 0 no cache yet, 1 cache live, 2 thread exiting (use the central lists). */
static __thread int tls_state __attribute__((tls_model("initial-exec")));
static pthread_key_t tls_key;
static int tls_key_ok;
struct tls_cache {
    struct tls_cache *next; /* while on free_tls (overlays the cache's first bin) */
};
static struct tls_cache *free_tls; /* caches of exited threads (fallback mode), reused; pcp_lock */

/* A bin holds at most 512 objects and about 32 KiB of them (at least 4): with 64 classes, a cache
 * full of big objects would otherwise pin megabytes per CPU. The count limit was 128: a program
 * that keeps a thousand 64-byte objects in flight (bench batch_*, n:1000) then went through the
 * transfer cache and the slab bitmaps for seven of every eight of them, 9.6 ns per malloc+free
 * against 6.6 ns now. The byte limit is what bounds the memory a cache pins: 512 objects reach it
 * at 64 bytes; smaller classes hold at most 8-24 KiB. */
static uint32_t cap_for(uint32_t size)
{
    uint32_t n = (32u << 10) / size;
    return n > 512 ? 512 : n < 4 ? 4 : n;
}

/* A large bin holds one block (64, 128 or 256 KiB: at most 448 KiB a cache). A cached block is
 * resident whatever it last held, and every cache id that a thread ever ran on keeps its bins until
 * they go idle for a tick, so the bins' capacity times the ids in use is memory the program does
 * not see: with 4, 2 and 2 blocks (1 MiB a cache) the mstress-like macro workload peaked at
 * 22.7-23.4 MiB, with one block each at 21.2-21.8, without the bins at 19.6-20.3 (glibc 13.2).
 * One block is what a malloc/free cycle of one size needs: malloc_free/262144 and
 * thread_scaling kept the same times (bench/run, 3 reps). */
#define LARGE_CAP 1

/* Half a bin, at least one object: a full bin gives this many back to make room. */
static inline unsigned batch_of(unsigned c)
{
    unsigned b = bin_cap[c] / 2;
    return b > PCP_MAX_BATCH ? PCP_MAX_BATCH : b ? b : 1;
}

/* A refill's batch starts small and doubles with the class's refills (4, 8, 16, 32, then
 * batch_of): a program that uses a class for a handful of objects does not pin a batch of 64
 * (16 KiB of 256-byte objects) per class and per cache (bench/macro/tiny.c: 39 classes, 507 KiB
 * cached for about 40 KiB live). The count is the kmem_cache's, read without its lock (a hint). */
static inline unsigned refill_batch(unsigned c)
{
    unsigned b = batch_of(c);
    uint64_t r = __atomic_load_n(&kmem_caches[ZONE_NORMAL][c].nr_refill, __ATOMIC_RELAXED);
    if (r < 4 && (4u << r) < b)
        b = 4u << r;
    return b;
}

static inline uint32_t *tp_field(long off)
{
    return (uint32_t *)((char *)__builtin_thread_pointer() + off);
}

void pcp_init(int rseq_wanted)
{
    slots_per_cache = 0;
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
        bin_cap[c] = cap_for(slab_class_size[c]);
        bin_first[c] = (uint32_t)slots_per_cache;
        slots_per_cache += bin_cap[c];
    }
    for (unsigned c = SLAB_NR_CLASSES; c < PCP_NR_BINS; c++) {
        bin_cap[c] = LARGE_CAP;
        bin_first[c] = (uint32_t)slots_per_cache;
        slots_per_cache += bin_cap[c];
    }
    long off;
    int has_cid;
    rseq_live = os_rseq_probe(&off, &has_cid) == 0;
    rseq_area_off = rseq_live ? off : 0;
    /* The fast paths' sequences fail while the stand-in is named (set before the first
     * allocation: every entry point initialises before it reaches them). */
    bsl_rseq_tp_off = (long)((char *)&pcp_no_rseq - (char *)__builtin_thread_pointer());
    bsl_rseq_cid_off = bsl_rseq_tp_off + 4;
#if PCP_HAVE_RSEQ
    if (rseq_live && rseq_wanted) {
        bsl_rseq_tp_off = off;
        /* mm_cid is dense and bounded by the threads running at once, so a 2-thread program on a
         * 64-CPU machine uses 2 caches, not 64. */
        bsl_rseq_cid_off = off + (has_cid ? RSEQ_OFF_MM_CID : RSEQ_OFF_CPU_ID);
        pcp_use_rseq = rseq_wanted;
    }
#else
    (void)rseq_wanted;
#endif
    if (!pcp_use_rseq)
        tls_key_ok = 0; /* created lazily by the first thread that needs a cache */
}

unsigned pcp_cpu_hint(void)
{
    if (rseq_live) {
        int cpu = (int)*tp_field(rseq_area_off + RSEQ_OFF_CPU_ID);
        if (cpu >= 0)
            return (unsigned)cpu;
    }
    return 0;
}

/* A slot array from meta_alloc, after head bytes of header, that does not cross a 4 GiB line, so
 * the low 32 bits of its addresses are ordered as the addresses are (the bins compare them with <
 * and >, see pcp.h). Returns the start of the header. */
static void *slots_alloc(size_t head)
{
    size_t bytes = head + slots_per_cache * sizeof(void *);
    for (int tries = 0; tries < 4; tries++) {
        void *s = meta_alloc(bytes);
        if (!s || (uint64_t)(uint32_t)(uintptr_t)s + bytes < ((uint64_t)1 << 32))
            return s;
        /* crosses the line (odds bytes / 4 GiB): leave it, metadata is never freed */
    }
    return NULL;
}

/* Fallback mode: a thread's cache is a struct pcp followed by its slot array. */
static struct pcp *tls_cache_get(void)
{
    os_lock(&pcp_lock);
    struct tls_cache *t = free_tls;
    if (t)
        free_tls = t->next;
    os_unlock(&pcp_lock);
    if (t)
        return (struct pcp *)t;
    return slots_alloc(sizeof(struct pcp));
}

static void tls_cache_put(struct pcp *pc)
{
    struct tls_cache *t = (struct tls_cache *)pc;
    os_lock(&pcp_lock);
    t->next = free_tls;
    free_tls = t;
    os_unlock(&pcp_lock);
}

static void pcp_setup(struct pcp *pc, void **slots)
{
    /* The bins' 32-bit bounds compare exactly only if the array stays below a 4 GiB line. */
    bsl_assert(1, (uint64_t)(uint32_t)(uintptr_t)slots + slots_per_cache * sizeof(void *) < ((uint64_t)1 << 32));
    for (unsigned c = 0; c < PCP_NR_BINS; c++) {
        struct pcp_bin *b = &pc->bins[c];
        b->base_lo = (uint32_t)(uintptr_t)slots;
        b->end_lo = (uint32_t)(uintptr_t)(slots + bin_cap[c]);
        __atomic_store_n(&b->top, slots, __ATOMIC_RELEASE); /* publish last: top != NULL is "set up" */
        slots += bin_cap[c];
    }
}

static inline int pcp_is_setup(const struct pcp *pc)
{
    return __atomic_load_n(&pc->bins[PCP_NR_BINS - 1].top, __ATOMIC_ACQUIRE) != NULL;
}

/* Large blocks leave a cache for the buddy allocator. */
static void large_give_back(void *const *blocks, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct page *pg = arena_page(blocks[i]);
        buddy_free(pg, pg->npages); /* clears PG_LCACHED */
    }
}

/* Objects of bin c leave a cache: slab objects to their slabs, large blocks to the buddy allocator. */
static void give_back(unsigned c, void *const *objs, unsigned n)
{
    if (c < SLAB_NR_CLASSES)
        slab_free_bulk(objs, n);
    else
        large_give_back(objs, n);
}

/* rseq mode: the current id's cache slot, or NULL when rseq is not live for this thread or the id
 * is too big (the same tests the assembly makes). */
static struct pcp *rseq_current_pcp(void)
{
    if ((int)*tp_field(bsl_rseq_tp_off + RSEQ_OFF_CPU_ID) < 0)
        return NULL;
    unsigned cid = *tp_field(bsl_rseq_cid_off);
    return cid < PCP_MAX_CID ? &pcp_cpus[cid] : NULL;
}

/* rseq mode: make sure the current id has a cache. Returns 0 when it cannot have one. */
static int rseq_ensure_cache(void)
{
    struct pcp *pc = rseq_current_pcp();
    if (!pc)
        return 0;
    if (pcp_is_setup(pc))
        return 1;
    /* Set up under the lock: the thread may migrate, and another may set up the same id. */
    os_lock(&pcp_lock);
    int ok = 1;
    if (!pcp_is_setup(pc)) {
        void **slots = slots_alloc(0);
        if (slots) {
            unsigned cid = (unsigned)(pc - pcp_cpus);
            pcp_slots[cid] = slots;
            pcp_setup(pc, slots);
            if (cid >= pcp_cid_end) /* after the setup: a scan below the end sees a set-up cache */
                __atomic_store_n(&pcp_cid_end, cid + 1, __ATOMIC_RELEASE);
        } else
            ok = 0;
    }
    os_unlock(&pcp_lock);
    return ok;
}

static void tls_destructor(void *arg)
{
    (void)arg;
    struct pcp *pc = pcp_mine;
    tls_state = 2;
    if (pc == &pcp_none)
        return;
    pcp_mine = &pcp_none; /* frees from here on (other destructors) go to the central lists */
    for (unsigned c = 0; c < PCP_NR_BINS; c++) {
        struct pcp_bin *b = &pc->bins[c];
        uint32_t n = pcp_bin_count(b);
        if (n)
            give_back(c, pcp_bin_base(b), n);
    }
    tls_cache_put(pc);
}

/* Fallback mode: make sure this thread has its cache. Returns 0 while it cannot have one. */
static int tls_ensure_cache(void)
{
    if (tls_state == 1)
        return 1;
    if (tls_state == 2)
        return 0;
    tls_state = 2; /* guards against re-entry from pthread_key_create/setspecific */
    os_lock(&pcp_lock);
    if (!tls_key_ok && pthread_key_create(&tls_key, tls_destructor) == 0)
        tls_key_ok = 1;
    os_unlock(&pcp_lock);
    struct pcp *pc = tls_key_ok ? tls_cache_get() : NULL;
    if (!pc) {
        tls_state = 0;
        return 0;
    }
    pcp_setup(pc, (void **)(pc + 1));
    pcp_mine = pc;
    pthread_setspecific(tls_key, (void *)1);
    tls_state = 1;
    return 1;
}

static unsigned push_bulk(void *const *in, unsigned n, unsigned c)
{
    if (pcp_use_rseq)
        return pcp_rseq_push_bulk(in, n, c);
    struct pcp_bin *b = &pcp_mine->bins[c];
    unsigned k = (b->end_lo - (uint32_t)(uintptr_t)b->top) / 8u;
    if (k > n)
        k = n;
    for (unsigned i = 0; i < k; i++)
        b->top[i] = in[i];
    b->top += k;
    return k;
}

static unsigned pop_bulk(void **out, unsigned n, unsigned c)
{
    if (pcp_use_rseq)
        return pcp_rseq_pop_bulk(out, n, c);
    struct pcp_bin *b = &pcp_mine->bins[c];
    unsigned k = pcp_bin_count(b);
    if (k > n)
        k = n;
    b->top -= k;
    for (unsigned i = 0; i < k; i++)
        out[i] = b->top[i];
    return k;
}

void *pcp_alloc_slow(unsigned c)
{
    void *buf[PCP_MAX_BATCH];
    unsigned cpu = pcp_cpu_hint();
    int cached = pcp_use_rseq ? rseq_ensure_cache() : tls_ensure_cache();
    if (cached) {
        void *p = pcp_pop(c); /* the cache may have been refilled meanwhile (migration) */
        if (p)
            return p;
    }
    unsigned n = slab_alloc_bulk(ZONE_NORMAL, c, buf, cached ? refill_batch(c) : 1, cpu);
    if (n == 0)
        return NULL;
    if (n > 1) {
        /* The bin pops its top first: pushed highest address first, the objects go out in address
         * order (buf[0], then buf[1], ...), so a program that uses few objects of a class touches
         * the fewest pages of a fresh slab (1152 B objects: 0 and 1152 share a page, 3456 spans two). */
        for (unsigned i = 1, j = n - 1; i < j; i++, j--) {
            void *t = buf[i];
            buf[i] = buf[j];
            buf[j] = t;
        }
        unsigned pushed = push_bulk(buf + 1, n - 1, c);
        if (pushed < n - 1) /* migrated to a CPU whose bin is full or has no cache */
            slab_free_bulk(buf + 1 + pushed, n - 1 - pushed);
    }
    return buf[0];
}

void pcp_free_slow(void *p, unsigned c)
{
    void *buf[PCP_MAX_BATCH];
    int cached = pcp_use_rseq ? rseq_ensure_cache() : tls_ensure_cache();
    if (cached) {
        if (pcp_push(p, c))
            return;
        unsigned n = pop_bulk(buf, batch_of(c), c);
        if (n)
            slab_free_batch(c, buf, n);
        if (pcp_push(p, c))
            return;
    }
    slab_free_bulk(&p, 1);
}

void pcp_flush_classes(uint64_t classes, int large)
{
    void *buf[PCP_MAX_BATCH];
    if (!pcp_use_rseq && tls_state != 1)
        return;
    for (unsigned c = 0; c < PCP_NR_BINS; c++) {
        unsigned n;
        if (c < SLAB_NR_CLASSES ? !(classes >> c & 1) : !large)
            continue;
        while ((n = pop_bulk(buf, PCP_MAX_BATCH, c)) > 0)
            give_back(c, buf, n);
    }
}

int pcp_large_idle(void)
{
    struct pcp *pc = pcp_use_rseq ? rseq_current_pcp() : pcp_mine;
    if (!pc || !pcp_is_setup(pc))
        return 0;
    uint64_t sig = 0;
    for (unsigned c = SLAB_NR_CLASSES; c < PCP_NR_BINS; c++)
        sig += (uintptr_t)__atomic_load_n(&pc->bins[c].top, __ATOMIC_RELAXED);
    uint64_t *last = pcp_use_rseq ? &idle_sig[pc - pcp_cpus].large : &idle_sig[0].large; /* fallback: a hint */
    int idle = sig == *last;
    *last = sig;
    return idle;
}

void *pcp_large_alloc(int bin)
{
    return pcp_pop((unsigned)bin);
}

int pcp_large_free(void *p, struct page *pg)
{
    if (!pcp_large_exact(pg->npages) || pg->zone != ZONE_NORMAL)
        return 0;
    int bin = pcp_large_bin(pg->npages);
    int cached = pcp_use_rseq ? rseq_ensure_cache() : tls_ensure_cache();
    if (!cached)
        return 0;
    __atomic_store_n(&pg->flags, (uint8_t)PG_LCACHED, __ATOMIC_RELEASE);
    if (pcp_push(p, (unsigned)bin))
        return 1;
    void *buf[PCP_MAX_BATCH];
    unsigned n = pop_bulk(buf, batch_of((unsigned)bin), (unsigned)bin); /* full: half of it goes (the one block of a large bin) */
    large_give_back(buf, n);
    if (pcp_push(p, (unsigned)bin))
        return 1;
    __atomic_store_n(&pg->flags, (uint8_t)PG_LARGE, __ATOMIC_RELAXED); /* migrated to a full bin: the caller frees it */
    return 0;
}

void pcp_wipe_stale(void)
{
    struct pcp *pc = pcp_use_rseq ? rseq_current_pcp() : pcp_mine;
    if (pc && pcp_is_setup(pc))
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            struct pcp_bin *b = &pc->bins[c];
            void **end = pcp_bin_base(b) + bin_cap[c];
            for (void **s = b->top; s < end; s++)
                *s = NULL;
        }
    slab_wipe_stale();
}

/* Steps 1-5 of the comment at the top, for the ids in cids[0, n). Caller holds drain_lock.
 * Returns 0, or -1 when the kernel cannot fence (nothing was drained). */
static int drain_cids(const unsigned *cids, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            struct pcp_bin *b = &pcp_cpus[cids[i]].bins[c];
            __atomic_store_n(&b->base_lo, 0xffffffffu, __ATOMIC_RELAXED);
            __atomic_store_n(&b->end_lo, 0u, __ATOMIC_RELAXED);
        }
    int ok = os_rseq_fence() == 0;
    for (unsigned i = 0; ok && i < n; i++)
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            struct pcp_bin *b = &pcp_cpus[cids[i]].bins[c];
            void **base = pcp_slots[cids[i]] + bin_first[c];
            void **top = __atomic_load_n(&b->top, __ATOMIC_ACQUIRE);
            if (top > base)
                give_back(c, base, (unsigned)(top - base));
            __atomic_store_n(&b->top, base, __ATOMIC_RELEASE);
        }
    if (ok && os_rseq_fence() != 0)
        ok = 0; /* cannot happen after one fence worked; restoring is still safe: nothing raced */
    for (unsigned i = 0; i < n; i++)
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            struct pcp_bin *b = &pcp_cpus[cids[i]].bins[c];
            void **base = pcp_slots[cids[i]] + bin_first[c];
            __atomic_store_n(&b->base_lo, (uint32_t)(uintptr_t)base, __ATOMIC_RELEASE);
            __atomic_store_n(&b->end_lo, (uint32_t)(uintptr_t)(base + bin_cap[c]), __ATOMIC_RELEASE);
        }
    if (!ok)
        fence_broken = 1;
    return ok ? 0 : -1;
}

/* Drain every cache whose ids are selected by `want` (all set-up ones, or only those idle since
 * the last call). */
static void drain_where(int idle_only)
{
    BSL_BIG_BSS static unsigned cids[PCP_MAX_CID]; /* under drain_lock */
    unsigned n = 0;
    os_lock(&drain_lock);
    for (unsigned cid = 0, end = pcp_cids_used(); cid < end; cid++) {
        struct pcp *pc = &pcp_cpus[cid];
        if (!pcp_is_setup(pc))
            continue;
        uint64_t sig = 0;
        size_t held = 0;
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            sig += (uintptr_t)__atomic_load_n(&pc->bins[c].top, __ATOMIC_RELAXED);
            held += pcp_bin_count(&pc->bins[c]);
        }
        int idle = sig == idle_sig[cid].all;
        idle_sig[cid].all = sig;
        /* The tick leaves the caller's own cache alone: tick() already gave back its idle
         * classes, and stopping the cache of the thread that runs the tick made tests/exhaust
         * corrupt a slab's partial list (a slab unlinked with a stale prev): not understood yet,
         * see the note in DESIGN.md. */
        if (held && (!idle_only || (idle && pc != rseq_current_pcp())))
            cids[n++] = cid;
    }
    int fenced = n == 0 || (!fence_broken && drain_cids(cids, n) == 0);
    os_unlock(&drain_lock);
    if (!fenced && !idle_only)
        pcp_flush_classes(~(uint64_t)0, 1); /* no fence: the caller's own cache is all it can reach */
}

void pcp_flush_all(void)
{
    if (pcp_use_rseq)
        drain_where(0);
    else
        pcp_flush_classes(~(uint64_t)0, 1);
}

void pcp_drain_idle(void)
{
    if (pcp_use_rseq)
        drain_where(1);
}

void pcp_cached(size_t *objs, size_t *bytes)
{
    size_t o = 0, b = 0;
    for (unsigned cid = 0, end = pcp_cids_used(); cid < end; cid++) {
        struct pcp *pc = &pcp_cpus[cid];
        if (!pcp_is_setup(pc))
            continue;
        for (unsigned c = 0; c < PCP_NR_BINS; c++) {
            uint32_t n = pcp_bin_count(&pc->bins[c]);
            o += n;
            b += (size_t)n * (c < SLAB_NR_CLASSES ? slab_class_size[c] : pcp_large_pages((int)c) << PAGE_SHIFT);
        }
    }
    *objs = o;
    *bytes = b;
}

static int bin_holds(const struct pcp_bin *b, const void *obj)
{
    void **top = __atomic_load_n(&b->top, __ATOMIC_RELAXED);
    if (!top)
        return 0;
    uint32_t n = pcp_bin_count(b);
    for (uint32_t i = 1; i <= n; i++)
        if (__atomic_load_n(&top[-(long)i], __ATOMIC_RELAXED) == obj)
            return 1;
    return 0;
}

int pcp_holds(const void *obj, unsigned c)
{
    if (!pcp_use_rseq)
        return tls_state == 1 && bin_holds(&pcp_mine->bins[c], obj);
    for (unsigned cid = 0, end = pcp_cids_used(); cid < end; cid++) {
        const struct pcp *pc = &pcp_cpus[cid];
        if (pcp_is_setup(pc) && bin_holds(&pc->bins[c], obj))
            return 1;
    }
    return 0;
}

size_t slab_reclaim(uint64_t now_ms)
{
    huge_tick(now_ms, 0);
    pcp_flush_all();
    slab_flush_transfer();
    slab_release_spares();
    size_t purged = buddy_purge(0);
    bsl_assert(2, buddy_check() == 0 && slab_check() == 0);
    return purged;
}

void pcp_rseq_forget(void)
{
    if (!rseq_live)
        return;
    uint64_t *cs = (uint64_t *)(void *)((char *)__builtin_thread_pointer() + rseq_area_off + RSEQ_OFF_RSEQ_CS);
    if (*cs)
        __atomic_store_n(cs, 0, __ATOMIC_RELAXED);
}

void pcp_fork_locks(os_lock_visit_fn visit)
{
    visit(&drain_lock);
    visit(&pcp_lock);
}

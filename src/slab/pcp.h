/* Per-CPU caches: the allocation fast path.
 *
 * A cache (struct pcp) holds, per size class, a stack of free objects (bin). In rseq mode there is
 * one cache per concurrency id (the kernel's mm_cid where it fills it, else the CPU number) in
 * pcp_cpus[], and bins are touched only inside restartable sequences (pcp_rseq_<arch>.h): no locks,
 * no atomics; the kernel restarts a sequence that was preempted, migrated or signalled before its
 * single committing store. In fallback mode (no rseq, or option rseq=0) each thread has its own
 * cache in TLS and the same bins are touched with plain loads and stores (on x86-64 from the slow
 * paths only: malloc's and free's sequences fail to them in that mode, see pcp_fast_pop).
 *
 * A bin is a stack of object pointers in its own slot array [base, base + cap): `top` points past
 * the last cached object. To keep the bin at 16 bytes, only the low 32 bits of base and of
 * base + cap are kept: comparing them with the low 32 bits of `top` is exact, because the array
 * never crosses a 4 GiB line (jemalloc's cache_bin trick, with ordered compares: pop fails when
 * lo32(top) <= base_lo, push when lo32(top) >= end_lo). Pop and push are then one load of `top`,
 * one compare, one load or store of the slot, and one store of `top` that commits. A bin is
 * stopped (every operation fails) by base_lo = 0xffffffff, end_lo = 0: another thread drains a
 * CPU's cache that way (pcp.c), at no cost to the fast path.
 * (A count plus a slots pointer made a malloc/free pair ~3x slower: the slot address then depends
 * on two loads, one of them store-forwarded from the previous operation.)
 *
 * Invariant: base <= top <= base + cap; [base, top) are free objects of the bin's class, counted as
 * in use by their slabs. A bin never set up is all zero: top == NULL has the low bits of both
 * bounds (0), so pop and push fail over to the slow path, which sets the cache up. The layout of
 * struct pcp_bin is shared with the assembly. */
#ifndef BSL_PCP_H
#define BSL_PCP_H

#include "slab/pcp_layout.h" /* PCP_MAX_CID, PCP_SHIFT, the bin's offsets: shared with the assembly */
#include "slab/slab.h"

#include <stddef.h>

struct pcp_bin {
    void **top;       /* offset 0: one past the last cached object */
    uint32_t base_lo; /* offset 8: low 32 bits of the slot array's start (top == base: empty) */
    uint32_t end_lo;  /* offset 12: low 32 bits of its end (top == end: full) */
};

/* Objects in the bin; 0 while it is stopped for a drain (a racy reader may see that state). */
static inline uint32_t pcp_bin_count(const struct pcp_bin *b)
{
    uint32_t t = (uint32_t)(uintptr_t)__atomic_load_n(&b->top, __ATOMIC_RELAXED);
    uint32_t lo = __atomic_load_n(&b->base_lo, __ATOMIC_RELAXED);
    return t > lo ? (t - lo) / 8u : 0;
}
static inline void **pcp_bin_base(const struct pcp_bin *b)
{
    return (void **)((uintptr_t)b->top - ((uint32_t)(uintptr_t)b->top - b->base_lo));
}
_Static_assert(sizeof(struct pcp_bin) == (1u << PCP_BIN_SHIFT) && offsetof(struct pcp_bin, top) == PCP_BIN_TOP &&
                   offsetof(struct pcp_bin, base_lo) == PCP_BIN_BASE_LO &&
                   offsetof(struct pcp_bin, end_lo) == PCP_BIN_END_LO,
               "struct pcp_bin's layout is shared with the rseq assembly (pcp_layout.h)");

/* Bins [0, SLAB_NR_CLASSES) hold slab objects of their class. The PCP_LARGE_BINS after them hold
 * large blocks (whole buddy blocks of the NORMAL zone) of 2^(PCP_LARGE_MIN_ORDER + k) frames:
 * 64, 128 and 256 KiB. A large request of 9-64 frames is rounded up to its bin's power of two, so
 * that the block has no tail given back to the buddy lists: a cached block and its buddy then
 * coalesce as soon as the block leaves the cache. (Bins of non-power-of-two sizes left a freed
 * tail beside each cached block that could not merge while the block sat in a cache; requests of
 * the next order then found no dirty block, took clean frames, and rule 1 purged what the caches'
 * neighbours held.) A cached large block's head has flags PG_LCACHED and keeps npages: it is in
 * use for the buddy allocator and free for the program (free() of it is a double free). Only the
 * frames a program wrote are resident: a 33-frame request in a 64-frame block leaves the rest
 * untouched (clean) unless an earlier owner wrote it. */
#define PCP_LARGE_BINS 3
#define PCP_LARGE_MIN_ORDER 4
#define PCP_NR_BINS (SLAB_NR_CLASSES + PCP_LARGE_BINS)
#define PG_LCACHED PG_DIRTY /* without PG_BUDDY: head of a large block held by a per-CPU cache */

struct pcp {
    struct pcp_bin bins[1u << (PCP_SHIFT - PCP_BIN_SHIFT)]; /* PCP_NR_BINS used; the rest pads */
};
_Static_assert(sizeof(struct pcp) == (1u << PCP_SHIFT) && PCP_NR_BINS <= (1u << (PCP_SHIFT - PCP_BIN_SHIFT)),
               "the rseq assembly computes &pcp_cpus[cid].bins[c] as cid << PCP_SHIFT | c << PCP_BIN_SHIFT");

/* The large bin of a block of npages frames (before rounding), or -1 when no bin holds that size. */
static inline int pcp_large_bin(size_t npages)
{
    if (npages <= ((size_t)1 << (PCP_LARGE_MIN_ORDER - 1)) ||
        npages > ((size_t)1 << (PCP_LARGE_MIN_ORDER + PCP_LARGE_BINS - 1)))
        return -1;
    unsigned order = npages <= 1 ? 0 : (unsigned)(64 - __builtin_clzl(npages - 1));
    return (int)(SLAB_NR_CLASSES + order - PCP_LARGE_MIN_ORDER);
}
/* Frames of a large bin's blocks. */
static inline size_t pcp_large_pages(int bin)
{
    return (size_t)1 << (PCP_LARGE_MIN_ORDER + (unsigned)(bin - SLAB_NR_CLASSES));
}
/* Whether a block of npages frames is one of the large bins' sizes. */
static inline int pcp_large_exact(size_t npages)
{
    int bin = pcp_large_bin(npages);
    return bin >= 0 && pcp_large_pages(bin) == npages;
}

/* Demand-zero .bss: untouched ids cost nothing. Page-aligned, so that each cache covers whole cache
 * lines and no two ids (nor a cache and another variable) share one: a cache is written by the
 * CPU that owns its id alone. */
BSL_HIDDEN extern struct pcp pcp_cpus[PCP_MAX_CID];
BSL_HIDDEN extern unsigned pcp_cid_end;
/* Scans of every cache stop here: ids at or above it never had one. Never read past it: on some
 * kernels (this project's VMs among them) reading an untouched page commits it like a write, and
 * a scan of all PCP_MAX_CID caches cost 1 MiB of RSS. */
static inline unsigned pcp_cids_used(void) { return __atomic_load_n(&pcp_cid_end, __ATOMIC_ACQUIRE); }
/* Fallback mode: this thread's cache, at the head of its slot array (pcp.c, tls_ensure_cache), or
 * &pcp_none (every bin empty and full at once: pops and pushes fail to the slow path) while it has
 * none. A pointer, not the 2 KiB cache: initial-exec TLS of a library that a program dlopen()s
 * (the launcher reads options that way) comes out of glibc's static TLS surplus, 1664 bytes. */
BSL_HIDDEN extern __thread struct pcp *pcp_mine __attribute__((tls_model("initial-exec")));
/* What every malloc and free reads, written only while the library starts: a cache line of its
 * own. Next to a written field (bin 0 of cache 0 followed these in .bss) every CPU's fast path
 * missed whenever the thread on id 0 pushed or popped a 16-byte object, and thread_scaling stayed
 * flat from 1 to 16 threads on a 16-CPU machine. */
struct pcp_read_mostly {
    long tp_off;  /* thread pointer -> struct rseq */
    long cid_off; /* thread pointer -> the id that indexes pcp_cpus */
    int use_rseq;
} __attribute__((aligned(64)));
BSL_HIDDEN extern struct pcp_read_mostly pcp_rm;
#define pcp_use_rseq (pcp_rm.use_rseq)
#define bsl_rseq_tp_off (pcp_rm.tp_off)
#define bsl_rseq_cid_off (pcp_rm.cid_off)

/* Restartable sequences: pop (an object or NULL: empty bin, or no cache for this CPU yet), push
 * (1, or 0 when the bin is full or there is no cache), bulk (the number moved). One file per arch. */
#if defined(__x86_64__)
#include "slab/pcp_rseq_x86_64.h"
#else
#include "slab/pcp_rseq_none.h"
#endif

static inline void *pcp_pop(unsigned c)
{
    if (likely(pcp_use_rseq))
        return pcp_rseq_pop(c);
    struct pcp_bin *b = &pcp_mine->bins[c];
    void **t = b->top;
    if (unlikely((uint32_t)(uintptr_t)t == b->base_lo))
        return NULL;
    b->top = --t;
    return *t;
}

static inline int pcp_push(void *p, unsigned c)
{
    if (likely(pcp_use_rseq))
        return pcp_rseq_push(p, c);
    struct pcp_bin *b = &pcp_mine->bins[c];
    void **t = b->top;
    if (unlikely((uint32_t)(uintptr_t)t == b->end_lo))
        return 0;
    *t = p;
    b->top = t + 1;
    return 1;
}

/* The fast paths' operations (malloc.c). Where the architecture has the sequences, they are all
 * there is: in fallback mode bsl_rseq_tp_off names a per-thread stand-in for struct rseq whose
 * cpu_id is -1 (pcp.c), so every sequence fails and the caller's slow path serves the per-thread
 * cache with pcp_pop/pcp_push. The rseq fast path then carries no front-end test (its load, test
 * and branch were about 0.3 ns of a 4.6 ns malloc/free pair); fallback mode pays a call per
 * operation instead. */
static inline void *pcp_fast_pop(unsigned c)
{
    return PCP_HAVE_RSEQ ? pcp_rseq_pop(c) : pcp_pop(c);
}

static inline int pcp_fast_push(void *p, unsigned c)
{
    return PCP_HAVE_RSEQ ? pcp_rseq_push(p, c) : pcp_push(p, c);
}

/* Slow paths (pcp.c): refill the current cache and return one object (NULL: out of memory), and
 * drain the current cache to make room for p, then cache or free it. */
BSL_HIDDEN void *pcp_alloc_slow(unsigned c);
BSL_HIDDEN void pcp_free_slow(void *p, unsigned c);
/* Large blocks: a cached block of `bin` (its head still PG_LCACHED: the caller marks it), or NULL.
 * pcp_large_free caches a NORMAL-zone block of a bin's size (1; its head becomes PG_LCACHED) or
 * returns 0 (the caller gives it to the buddy allocator). */
BSL_HIDDEN void *pcp_large_alloc(int bin);
BSL_HIDDEN int pcp_large_free(void *p, struct page *pg);
/* Select the front end; rseq_wanted=0 forces the per-thread fallback. */
BSL_HIDDEN void pcp_init(int rseq_wanted);
/* The current CPU (or concurrency id) as a shard hint. */
BSL_HIDDEN unsigned pcp_cpu_hint(void);
/* Give back every object cached in every per-CPU cache (rseq mode, where the kernel can fence
 * restartable sequences; otherwise the caller's cache only), or in this thread's TLS cache. */
BSL_HIDDEN void pcp_flush_all(void);
/* Direct reclaim, the whole core at once: cached huge mappings back to the kernel, every per-CPU
 * cache (pcp_flush_all) and transfer cache emptied, spare slabs released, every free dirty frame
 * purged. Returns the bytes purged (buddy_purge). malloc_trim/bsl_purge and the soft OOM policy's
 * reclaim call it; the caller holds no allocator lock. */
BSL_HIDDEN size_t slab_reclaim(uint64_t now_ms);
/* rseq mode: give back the contents of every per-CPU cache that no thread has touched since the
 * last call (the tick's, every tick interval). */
BSL_HIDDEN void pcp_drain_idle(void);
/* Zero the slots above each bin's top in this thread's cache and the transfer caches' unused
 * slots: copies of pointers to blocks now in use (for memcheck's leak scan at exit). */
BSL_HIDDEN void pcp_wipe_stale(void);
/* Give back what the current cache holds of the classes in `classes` (bit c), straight to the slabs,
 * and its large blocks when `large`. */
BSL_HIDDEN void pcp_flush_classes(uint64_t classes, int large);
/* Whether the current cache's large bins are as they were at the last call (the tick's: the
 * ticking thread gives back its large blocks when it has not used them for a tick interval). */
BSL_HIDDEN int pcp_large_idle(void);
/* Objects and bytes held in caches, for statistics. */
BSL_HIDDEN void pcp_cached(size_t *objs, size_t *bytes);
/* Whether obj sits in a per-CPU cache or this thread's cache (racy scan: for debugging). */
BSL_HIDDEN int pcp_holds(const void *obj, unsigned c);
BSL_HIDDEN void pcp_fork_locks(os_lock_visit_fn visit);
/* Outside any restartable sequence: clear this thread's rseq_cs (the sequences leave it set, as
 * librseq's do; the kernel clears it when it next finds the thread outside the section). Safe in a
 * signal handler (fork() from one): a sequence the signal interrupted was already sent to its
 * abort handler, which stores rseq_cs again before it restarts, and one interrupted before its
 * store makes the store when it resumes (the store is the instruction right before the start). */
BSL_HIDDEN void pcp_rseq_forget(void);

#endif

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

struct pcp {
    struct pcp_bin bins[1u << (PCP_SHIFT - PCP_BIN_SHIFT)]; /* SLAB_NR_CLASSES used; the rest pads */
};
_Static_assert(sizeof(struct pcp) == (1u << PCP_SHIFT) && SLAB_NR_CLASSES <= (1u << (PCP_SHIFT - PCP_BIN_SHIFT)),
               "the rseq assembly computes &pcp_cpus[cid].bins[c] as cid << PCP_SHIFT | c << PCP_BIN_SHIFT");

/* Demand-zero .bss: untouched ids cost nothing. Page-aligned, so that each cache covers whole cache
 * lines and no two ids (nor a cache and another variable) share one: a cache is written by the
 * CPU that owns its id alone. */
BSL_HIDDEN extern struct pcp pcp_cpus[PCP_MAX_CID];
BSL_HIDDEN extern unsigned pcp_cid_end;
/* Scans of every cache stop here: ids at or above it never had one. Never read past it: on some
 * kernels (this project's VMs among them) reading an untouched page commits it like a write, and
 * a scan of all PCP_MAX_CID caches cost 1 MiB of RSS. */
static inline unsigned pcp_cids_used(void) { return __atomic_load_n(&pcp_cid_end, __ATOMIC_ACQUIRE); }
BSL_HIDDEN extern __thread struct pcp pcp_tls __attribute__((tls_model("initial-exec")));
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
    struct pcp_bin *b = &pcp_tls.bins[c];
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
    struct pcp_bin *b = &pcp_tls.bins[c];
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
/* Give back what the current cache holds of the classes in `classes` (bit c), straight to the slabs. */
BSL_HIDDEN void pcp_flush_classes(uint64_t classes);
/* Objects and bytes held in caches, for statistics. */
BSL_HIDDEN void pcp_cached(size_t *objs, size_t *bytes);
/* Whether obj sits in a per-CPU cache or this thread's cache (racy scan: for debugging). */
BSL_HIDDEN int pcp_holds(const void *obj, unsigned c);
BSL_HIDDEN void pcp_fork_locks(os_lock_visit_fn visit);

#endif

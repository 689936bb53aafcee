/* The leak tracker's block records kept beside the blocks, as the kernel keeps its allocation tags
 * beside slab objects (slabobj_ext, hung off each slab): a slab's head descriptor points at an array
 * of one 64-bit record per object, and a large block's head descriptor holds its own. The tracker
 * finds a block's record with the arithmetic free already does (the frame's descriptor, the
 * object's index from its offset: slab_index), where it used to hash the address into a table of
 * records under a shard lock. No lock: a block's record is written by whoever owns the block (its
 * allocation, its free), as the block itself is. With two threads passing blocks between them
 * (larson) the shard's lock, count and table lines went from core to core on every call.
 *
 * Arrays come from metadata (meta_alloc: never roots of the leak scan, never freed) and are reused:
 * a released slab's array is zeroed and goes on the free list of its length, so an array that a
 * racy walk still reads is only ever a record array (slab_recs_walk checks it still belongs to
 * the slab it read it from).
 *
 * Locking: recs_lock guards the free lists; nothing is called under it (rank RECS: a leaf). A
 * slab's obj_recs goes from NULL to an array once while the slab lives (compare-and-swap: two
 * threads may race to give it one) and back to NULL in release_slab, when no object of it is
 * live; a large block's record is cleared when the block leaves the allocator (large_out). */
#include "slab/slab.h"

#include <string.h>

static os_lock_t recs_lock = OS_LOCK_INIT(LOCK_RANK_RECS);
static uint64_t *recs_free[257]; /* by length (a slab's object count, 1 .. 256); linked through [0] */

uint64_t *slab_recs_get(struct page *head)
{
    uint64_t *a = __atomic_load_n(&head->obj_recs, __ATOMIC_ACQUIRE);
    if (a)
        return a;
    uint32_t total = head->total;
    if (!total || total > 256)
        return NULL;
    os_lock(&recs_lock);
    a = recs_free[total];
    if (a) {
        recs_free[total] = (uint64_t *)a[0];
        a[0] = 0;
    }
    os_unlock(&recs_lock);
    if (!a && !(a = meta_alloc(total * sizeof(uint64_t))))
        return NULL;
    uint64_t *expect = NULL;
    if (__atomic_compare_exchange_n(&head->obj_recs, &expect, a, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return a;
    os_lock(&recs_lock); /* another thread gave the slab one first */
    a[0] = (uint64_t)(uintptr_t)recs_free[total];
    recs_free[total] = a;
    os_unlock(&recs_lock);
    return expect;
}

void slab_recs_release(struct page *head)
{
    uint64_t *a = head->obj_recs;
    if (!a)
        return;
    __atomic_store_n(&head->obj_recs, NULL, __ATOMIC_RELEASE);
    uint32_t total = head->total;
    memset(a, 0, total * sizeof(uint64_t)); /* records whose free went unseen */
    os_lock(&recs_lock);
    a[0] = (uint64_t)(uintptr_t)recs_free[total];
    recs_free[total] = a;
    os_unlock(&recs_lock);
}

void slab_recs_fork_locks(os_lock_visit_fn visit) { visit(&recs_lock); }

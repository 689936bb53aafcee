/* The HUGE zone: blocks above the largest buddy block, each its own 2 MiB-aligned mapping
 * (whole sections, so a section never has two owners), advised MADV_HUGEPAGE, resized with mremap.
 * Descriptors are recycled through a free list. Locking: huge_lock protects the free list and the
 * counters; a block's own fields belong to whoever holds the block. */
#include "zones/zones.h"

int huge_thp = 1;
static os_lock_t huge_lock = OS_LOCK_INIT;
static struct huge_block *free_descs;
static size_t huge_bytes_total, huge_count;

static struct huge_block *desc_get(void)
{
    os_lock(&huge_lock);
    struct huge_block *hb = free_descs;
    if (hb)
        free_descs = hb->next_free;
    os_unlock(&huge_lock);
    if (!hb)
        hb = meta_alloc(sizeof(*hb));
    return hb;
}

static void desc_put(struct huge_block *hb)
{
    os_lock(&huge_lock);
    hb->next_free = free_descs;
    free_descs = hb;
    os_unlock(&huge_lock);
}

static void account(long bytes, long count)
{
    os_lock(&huge_lock);
    huge_bytes_total += (size_t)bytes;
    huge_count += (size_t)count;
    os_unlock(&huge_lock);
}

static size_t section_round(size_t size) { return (size + SECTION_SIZE - 1) & ~(SECTION_SIZE - 1); }

void *huge_alloc(size_t size, size_t align, int zone)
{
    if (size > ((size_t)1 << ADDR_BITS))
        return NULL;
    size_t map = section_round(size);
    if (align < SECTION_SIZE)
        align = SECTION_SIZE;
    struct huge_block *hb = desc_get();
    if (!hb)
        return NULL;
    void *p = os_reserve(map, align, zone == ZONE_LOW32);
    if (!p) {
        desc_put(hb);
        return NULL;
    }
    if (huge_thp)
        os_advise_huge(p, map);
    hb->base = (uintptr_t)p;
    hb->map_size = map;
    hb->usable = map;
    hb->zone = (uint8_t)zone;
    hb->live = 1;
    if (pagemap_set(hb->base, map, (uintptr_t)hb | PAGEMAP_HUGE_TAG) != 0) {
        os_release(p, map);
        desc_put(hb);
        return NULL;
    }
    account((long)map, 1);
    return p;
}

void huge_free(struct huge_block *hb)
{
    hb->live = 0;
    pagemap_set(hb->base, hb->map_size, 0);
    os_release((void *)hb->base, hb->map_size);
    account(-(long)hb->map_size, -1);
    desc_put(hb);
}

/* Ordering rule: a range's pagemap entries are cleared BEFORE the range goes back to the kernel
 * (munmap, a shrinking mremap, or a moving mremap that vacates it): the moment it is returned,
 * another thread's mmap may get it and register it, and a late clear would unregister that block. */
void *huge_realloc(struct huge_block *hb, size_t size)
{
    size_t map = section_round(size);
    uintptr_t tag = (uintptr_t)hb | PAGEMAP_HUGE_TAG;
    if (map == hb->map_size)
        return (void *)hb->base;
    if (map < hb->map_size) { /* shrink in place */
        pagemap_set(hb->base + map, hb->map_size - map, 0);
        void *p = os_remap((void *)hb->base, hb->map_size, map, 0, NULL);
        if (!p) {
            pagemap_set(hb->base + map, hb->map_size - map, tag);
            return NULL;
        }
        account((long)map - (long)hb->map_size, 0);
        hb->map_size = hb->usable = map;
        return p;
    }
    /* Grow in place when the address space after the block is free (then it is ours)... */
    void *p = os_remap((void *)hb->base, hb->map_size, map, 0, NULL);
    if (p) {
        if (pagemap_set(hb->base + hb->map_size, map - hb->map_size, tag) != 0) {
            os_remap(p, map, hb->map_size, 0, NULL);
            return NULL;
        }
    } else {
        /* ...else move the pages (no copy) into a fresh 2 MiB-aligned reservation. */
        void *dst = os_reserve(map, SECTION_SIZE, hb->zone == ZONE_LOW32);
        if (!dst)
            return NULL;
        if (pagemap_set((uintptr_t)dst, map, tag) != 0) {
            os_release(dst, map);
            return NULL;
        }
        pagemap_set(hb->base, hb->map_size, 0); /* the old range is vacated by the move */
        p = os_remap((void *)hb->base, hb->map_size, map, 1, dst);
        if (!p) {
            pagemap_set(hb->base, hb->map_size, tag);
            pagemap_set((uintptr_t)dst, map, 0);
            os_release(dst, map);
            return NULL;
        }
        hb->base = (uintptr_t)p;
        if (huge_thp)
            os_advise_huge(p, map);
    }
    account((long)map - (long)hb->map_size, 0);
    hb->map_size = hb->usable = map;
    return p;
}

void huge_prefork(void) { os_lock(&huge_lock); }
void huge_postfork_parent(void) { os_unlock(&huge_lock); }
void huge_postfork_child(void) { os_lock_reinit(&huge_lock); }

void huge_stats(size_t *bytes, size_t *count)
{
    os_lock(&huge_lock);
    *bytes = huge_bytes_total;
    *count = huge_count;
    os_unlock(&huge_lock);
}

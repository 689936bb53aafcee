/* The statistics page for `buddyslab top` (layout and protocol: include/buddyslab_shm.h). */
#include "buddyslab_shm.h"
#include "malloc/internal.h"
#include "oom/oom.h"
#include "track/track.h"

#include <string.h>

static struct bsl_shm_page *page;
static char path[64];

#define SHM_BYTES 8192 /* two pages since version 3 (64 size classes) */
_Static_assert(sizeof(struct bsl_shm_page) <= SHM_BYTES, "the statistics page fits its mapping");
_Static_assert(BSL_SHM_CLASSES == SLAB_NR_CLASSES && BSL_SHM_ORDERS == MAX_ORDER + 1, "shm layout matches");

void publish_init(void)
{
    os_snprintf(path, sizeof(path), "/dev/shm/buddyslab.%ld", os_getpid());
    page = os_map_shared_file(path, SHM_BYTES);
    if (!page) {
        os_printf(2, "buddyslab: option 'publish': cannot create %s; statistics are not published\n", path);
        return;
    }
    page->version = BSL_SHM_VERSION;
    page->pid = (uint32_t)os_getpid();
    __atomic_store_n(&page->magic, BSL_SHM_MAGIC, __ATOMIC_RELEASE);
}

/* The tracker's sites with the most live bytes (a racy view: top is no account). Called between
 * the seqlock's two stores, from the tick, outside every allocator lock. */
static void publish_sites(void)
{
    int mode = track_mode();
    page->track_mode = track_stopped() ? 0 : (uint32_t)mode;
    page->sample_bytes = track_sample_bytes;
    page->track_nsites = mode ? track_nsites : 0;
    struct track_site_stat top[BSL_SHM_SITES];
    unsigned n = mode && !track_stopped() ? track_sites_top(top, BSL_SHM_SITES) : 0;
    for (unsigned i = 0; i < n; i++) {
        struct bsl_shm_site *d = &page->sites[i];
        const uintptr_t *frames;
        unsigned depth = track_site_frames(top[i].site, &frames);
        d->idx = track_site_idx(top[i].site);
        d->nframes = depth < BSL_SHM_SITE_FRAMES ? depth : BSL_SHM_SITE_FRAMES;
        d->live = top[i].bytes;
        d->mblocks = top[i].mblocks;
        d->allocs = top[i].allocs;
        for (unsigned f = 0; f < d->nframes; f++)
            d->frames[f] = frames[f];
    }
    page->nsites = n;
}

BSL_RARE void publish_update(void)
{
    if (!page || !__atomic_load_n(&page->watchers, __ATOMIC_ACQUIRE))
        return;
    bsl_stats_t s;
    bsl_stats_get(&s);
    uint64_t nr_free[BSL_SHM_ZONES][BSL_SHM_ORDERS];
    for (int z = 0; z < BSL_SHM_ZONES; z++) {
        size_t f[MAX_ORDER + 1];
        bsl_stats_buddyinfo((bsl_zone_id)z, f);
        for (int o = 0; o <= MAX_ORDER; o++)
            nr_free[z][o] = f[o];
    }
    struct bsl_shm_class cls[BSL_SHM_CLASSES];
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
        const struct kmem_cache *kc = &kmem_caches[ZONE_NORMAL][c];
        cls[c] = (struct bsl_shm_class){kc->size, kc->order, kc->nr_inuse, kc->nr_slabs, kc->objs_per_slab,
                                        kc->nr_refill, kc->nr_drain};
    }
    uint64_t seq = page->seq;
    __atomic_store_n(&page->seq, seq + 1, __ATOMIC_RELAXED); /* odd: being written */
    __atomic_thread_fence(__ATOMIC_RELEASE);
    page->updated_ms = os_clock_ms(); /* top compares it with its own CLOCK_MONOTONIC */
    page->updates++;
    page->rseq = (uint32_t)pcp_use_rseq;
    page->shards = buddy_nr_shards;
    page->reserved = s.reserved;
    page->committed = s.committed;
    page->allocated = s.allocated;
    page->slab_bytes = s.slab_bytes;
    page->large_bytes = s.large_bytes;
    page->huge_bytes = s.huge_bytes;
    page->free_dirty = s.free_dirty;
    page->free_clean = s.free_clean;
    page->purged_total = s.purged_total;
    page->cached = s.cached;
    page->rss = s.rss;
    memcpy(page->nr_free, nr_free, sizeof(nr_free));
    memcpy(page->classes, cls, sizeof(cls));
    oom_publish(page);
    publish_sites();
    __atomic_store_n(&page->seq, seq + 2, __ATOMIC_RELEASE); /* even: consistent */
}

void publish_exit(void)
{
    if (page)
        os_unlink(path);
}

BSL_RARE void publish_postfork_child(void) /* with the rest of a fork child's path: see exit.c */
{
    /* The page belongs to the parent; a child that wants one publishes under its own pid. */
    if (page) /* no store otherwise: a page written after fork() is copied (fork.c) */
        page = NULL;
    if (opt_publish)
        publish_init();
}

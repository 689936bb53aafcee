/* Statistics: the kernel-style views (zoneinfo, buddyinfo, slabinfo) as text and as JSON. */
#include "malloc/internal.h"
#include "oom/oom.h"

#include <string.h>

BSL_EXPORT int bsl_stats_get(bsl_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!bsl_inited)
        return 0;
    size_t in_use_pages = 0, slab_pages = 0, xfer_bytes = 0;
    /* Objects in per-CPU caches count as in use in their kmem_cache: subtract them, read before and
     * after the caches (the transfer caches under each cache's lock), and subtract the smaller
     * reading. Objects moving between a per-CPU cache and its transfer cache while we read are
     * then counted at most once too many, never subtracted twice: the total never falls below the
     * blocks the program holds (mallinfo's uordblks read 0 with live blocks, tests/conformance). */
    size_t cached_objs, cached_before, cached_after;
    pcp_cached(&cached_objs, &cached_before);
    for (int z = 0; z < NR_ZONES; z++) {
        out->reserved += zones[z].reserved;
        for (unsigned s = 0; s < buddy_nr_shards; s++) {
            struct buddy_shard *sh = &buddy_shards[s][z];
            os_lock(&sh->lock);
            in_use_pages += sh->nr_pages - sh->nr_free_pages;
            out->free_dirty += sh->nr_dirty_pages << PAGE_SHIFT;
            out->free_clean += (sh->nr_free_pages - sh->nr_dirty_pages) << PAGE_SHIFT;
            out->purged_total += sh->purged_pages << PAGE_SHIFT;
            out->nmalloc += sh->nr_alloc;
            out->nfree += sh->nr_free_calls;
            os_unlock(&sh->lock);
        }
        for (unsigned c = 0; z < SLAB_NR_ZONES && c < SLAB_NR_CLASSES; c++) {
            struct kmem_cache *kc = &kmem_caches[z][c];
            os_lock(&kc->lock);
            slab_pages += kc->nr_slabs << kc->order;
            out->allocated += (kc->nr_inuse - kc->nr_xfer) * kc->size;
            xfer_bytes += (size_t)kc->nr_xfer * kc->size;
            out->slab_object_bytes += kc->nr_slabs * kc->objs_per_slab * kc->size;
            os_unlock(&kc->lock);
        }
    }
    size_t hcount;
    pcp_cached(&cached_objs, &cached_after);
    size_t cached_bytes = cached_before < cached_after ? cached_before : cached_after;
    out->cached = cached_bytes + xfer_bytes;
    out->allocated -= cached_bytes < out->allocated ? cached_bytes : out->allocated;
    size_t hcached;
    huge_stats(&out->huge_bytes, &hcount, &hcached, NULL);
    out->reserved += out->huge_bytes + hcached;
    out->slab_bytes = slab_pages << PAGE_SHIFT;
    out->large_bytes = (in_use_pages - slab_pages) << PAGE_SHIFT;
    out->allocated += out->large_bytes + out->huge_bytes;
    out->committed = (in_use_pages << PAGE_SHIFT) + out->free_dirty + out->huge_bytes;
    out->rss = os_rss();
    return 0;
}

BSL_EXPORT int bsl_stats_buddyinfo(bsl_zone_id zone, size_t nr_free[BSL_MAX_ORDER + 1])
{
    _Static_assert(BSL_MAX_ORDER == MAX_ORDER, "public and internal MAX_ORDER agree");
    if ((int)zone < 0 || zone >= BSL_ZONE_HUGE)
        return -1;
    for (int o = 0; o <= MAX_ORDER; o++)
        nr_free[o] = 0;
    if (!bsl_inited)
        return 0;
    for (unsigned s = 0; s < buddy_nr_shards; s++) {
        struct buddy_shard *sh = &buddy_shards[s][zone];
        os_lock(&sh->lock);
        for (int o = 0; o <= MAX_ORDER; o++)
            nr_free[o] += sh->free_area[o].nr_free;
        os_unlock(&sh->lock);
    }
    return 0;
}

/* The kernel's __fragmentation_index companion (mm/vmstat.c unusable_free_index): free frames in
 * blocks smaller than 2^order, over all free frames. */
static int unusable_index(const size_t nr_free[MAX_ORDER + 1], unsigned order)
{
    size_t total = 0, usable = 0;
    for (unsigned o = 0; o <= MAX_ORDER; o++) {
        total += nr_free[o] << o;
        if (o >= order)
            usable += nr_free[o] << o;
    }
    return total ? (int)((total - usable) * 1000 / total) : 0;
}

BSL_EXPORT int bsl_stats_unusable_index(bsl_zone_id zone, unsigned order)
{
    size_t nr_free[MAX_ORDER + 1];
    if (order > MAX_ORDER || bsl_stats_buddyinfo(zone, nr_free) != 0)
        return -1;
    return unusable_index(nr_free, order);
}

static const char *front_end(void)
{
    if (!pcp_use_rseq)
        return "per-thread caches (rseq fallback)";
    return bsl_rseq_cid_off - bsl_rseq_tp_off == 24 ? "per-CPU caches on rseq, indexed by mm_cid"
                                                      : "per-CPU caches on rseq, indexed by cpu_id";
}

BSL_EXPORT void bsl_stats_print(int fd)
{
    bsl_ensure_init();
    bsl_stats_t s;
    bsl_stats_get(&s);
    os_printf(fd, "=== buddyslab %s statistics (pid %ld) ===\n", BSL_VERSION, os_getpid());
    os_printf(fd, "front end: %s; buddy shards per zone: %u; decay_ms: %ld\n", front_end(), buddy_nr_shards,
              buddy_decay_ms);
    os_printf(fd, "--- zoneinfo ---\n");
    for (int z = 0; z < NR_ZONES; z++) {
        struct zone *zn = &zones[z];
        size_t free_p = 0, dirty_p = 0, managed = 0;
        for (unsigned sh = 0; sh < buddy_nr_shards; sh++) {
            free_p += buddy_shards[sh][z].nr_free_pages;
            dirty_p += buddy_shards[sh][z].nr_dirty_pages;
            managed += buddy_shards[sh][z].nr_pages;
        }
        if (z == ZONE_HUGE) {
            size_t hb, hn, hc, hd;
            huge_stats(&hb, &hn, &hc, &hd);
            os_printf(fd, "Zone %-6s  blocks %zu  mapped %zu KiB  cached (freed, for reuse) %zu KiB (resident %zu KiB)\n",
                      zn->name, hn, hb >> 10, hc >> 10, hd >> 10);
            continue;
        }
        os_printf(fd,
                  "Zone %-6s  arenas %u  reserved %zu MiB  managed %zu pages  free %zu (dirty %zu)  "
                  "wmark min %zu low %zu high %zu  growth reserve in-use/%u\n",
                  zn->name, zn->nr_arenas, zn->reserved >> 20, managed, free_p, dirty_p, zn->wmark_min,
                  zn->wmark_low, zn->wmark_high, 1u << buddy_reserve_shift(z));
    }
    os_printf(fd, "--- buddyinfo (free blocks per order; order 0 = 4 KiB) ---\n");
    for (int z = 0; z < ZONE_HUGE; z++)
        for (unsigned sh = 0; sh < buddy_nr_shards; sh++) {
            struct buddy_shard *b = &buddy_shards[sh][z];
            if (!b->nr_pages)
                continue;
            char line[512];
            size_t n = os_snprintf(line, sizeof(line), "Zone %-6s shard %2u ", zones[z].name, sh);
            for (int o = 0; o <= MAX_ORDER; o++)
                n += os_snprintf(line + n, sizeof(line) - n, "%7zu", b->free_area[o].nr_free);
            os_printf(fd, "%s   steals %lu purged %zu KiB\n", line, (unsigned long)b->nr_steal,
                      (size_t)(b->purged_pages << PAGE_SHIFT) >> 10);
        }
    os_printf(fd, "--- extfrag: unusable free space index per order (0.000 all usable .. 1.000 none) ---\n");
    for (int z = 0; z < ZONE_HUGE; z++) {
        size_t nr_free[MAX_ORDER + 1];
        bsl_stats_buddyinfo((bsl_zone_id)z, nr_free);
        char line[512];
        size_t n = os_snprintf(line, sizeof(line), "Zone %-6s ", zones[z].name);
        for (unsigned o = 0; o <= MAX_ORDER; o++) {
            int u = unusable_index(nr_free, o);
            n += os_snprintf(line + n, sizeof(line) - n, " %d.%03d", u / 1000, u % 1000);
        }
        os_printf(fd, "%s\n", line);
    }
    os_printf(fd, "--- slabinfo ---\n");
    os_printf(fd, "%-16s %8s %8s %6s %5s %8s %8s %8s %8s %10s %10s\n", "# name", "objsize", "inuse", "total",
              "order", "slabs", "partial", "xfer", "waste%", "refills", "drains");
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
            struct kmem_cache *kc = &kmem_caches[z][c];
            if (!kc->nr_slabs && !kc->nr_refill)
                continue;
            size_t total = kc->nr_slabs * kc->objs_per_slab;
            size_t slab_bytes = kc->nr_slabs * (PAGE_SIZE << kc->order);
            size_t waste = slab_bytes ? (slab_bytes - total * kc->size) * 100 / slab_bytes : 0;
            char name[32];
            os_snprintf(name, sizeof(name), "%s-%u", z == ZONE_LOW32 ? "low32" : "kmalloc", kc->size);
            os_printf(fd, "%-16s %8u %8zu %6zu %5u %8zu %8zu %8u %8zu %10lu %10lu\n", name, kc->size, kc->nr_inuse,
                      total, kc->order, kc->nr_slabs, kc->nr_partial, kc->nr_xfer, waste,
                      (unsigned long)kc->nr_refill, (unsigned long)kc->nr_drain);
        }
    os_printf(fd, "--- totals ---\n");
    os_printf(fd,
              "reserved %zu MiB  committed %zu KiB  allocated %zu KiB  (slab %zu KiB, large %zu KiB, huge %zu KiB)\n",
              s.reserved >> 20, s.committed >> 10, s.allocated >> 10, s.slab_bytes >> 10, s.large_bytes >> 10,
              s.huge_bytes >> 10);
    os_printf(fd, "free dirty %zu KiB  free clean %zu KiB  purged %zu KiB  metadata %zu KiB  RSS %zu KiB\n",
              s.free_dirty >> 10, s.free_clean >> 10, s.purged_total >> 10, meta_bytes() >> 10, s.rss >> 10);
    size_t live_slab = s.allocated - s.large_bytes - s.huge_bytes;
    os_printf(fd,
              "fragmentation: slab slots used %zu%% (live %zu KiB, cached %zu KiB, slots %zu KiB); "
              "RSS / allocated %zu.%02zu\n",
              s.slab_object_bytes ? live_slab * 100 / s.slab_object_bytes : 0, live_slab >> 10, s.cached >> 10,
              s.slab_object_bytes >> 10, s.allocated ? s.rss / s.allocated : 0,
              s.allocated ? (s.rss % s.allocated) * 100 / s.allocated : 0);
    oom_print(fd, 0);
}

BSL_EXPORT void bsl_stats_print_json(int fd)
{
    bsl_ensure_init();
    bsl_stats_t s;
    bsl_stats_get(&s);
    os_printf(fd, "{\"version\":\"%s\",\"pid\":%ld,\"rseq\":%d,\"shards\":%u,", BSL_VERSION, os_getpid(),
              pcp_use_rseq, buddy_nr_shards);
    os_printf(fd,
              "\"totals\":{\"reserved\":%zu,\"committed\":%zu,\"allocated\":%zu,\"slab\":%zu,\"large\":%zu,"
              "\"huge\":%zu,\"free_dirty\":%zu,\"free_clean\":%zu,\"purged\":%zu,\"metadata\":%zu,\"rss\":%zu},",
              s.reserved, s.committed, s.allocated, s.slab_bytes, s.large_bytes, s.huge_bytes, s.free_dirty,
              s.free_clean, s.purged_total, meta_bytes(), s.rss);
    os_printf(fd, "\"zones\":[");
    for (int z = 0; z < ZONE_HUGE; z++) {
        os_printf(fd, "%s{\"name\":\"%s\",\"reserved\":%zu,\"shards\":[", z ? "," : "", zones[z].name,
                  zones[z].reserved);
        for (unsigned sh = 0; sh < buddy_nr_shards; sh++) {
            struct buddy_shard *b = &buddy_shards[sh][z];
            os_printf(fd, "%s{\"managed\":%zu,\"free\":%zu,\"dirty\":%zu,\"free_area\":[", sh ? "," : "",
                      b->nr_pages, b->nr_free_pages, b->nr_dirty_pages);
            for (int o = 0; o <= MAX_ORDER; o++)
                os_printf(fd, "%s%zu", o ? "," : "", b->free_area[o].nr_free);
            os_printf(fd, "]}");
        }
        size_t nr_free[MAX_ORDER + 1];
        bsl_stats_buddyinfo((bsl_zone_id)z, nr_free);
        os_printf(fd, "],\"unusable_index\":[");
        for (unsigned o = 0; o <= MAX_ORDER; o++)
            os_printf(fd, "%s%d", o ? "," : "", unusable_index(nr_free, o));
        os_printf(fd, "]}");
    }
    os_printf(fd, "],\"slabs\":[");
    int first = 1;
    for (int z = 0; z < SLAB_NR_ZONES; z++)
        for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
            struct kmem_cache *kc = &kmem_caches[z][c];
            if (!kc->nr_slabs && !kc->nr_refill)
                continue;
            os_printf(fd, "%s{\"zone\":\"%s\",\"size\":%u,\"inuse\":%zu,\"slabs\":%zu,\"order\":%u,\"partial\":%zu}",
                      first ? "" : ",", zones[z].name, kc->size, kc->nr_inuse, kc->nr_slabs, kc->order,
                      kc->nr_partial);
            first = 0;
        }
    os_printf(fd, "]");
    oom_print(fd, 1);
    os_printf(fd, "}\n");
}

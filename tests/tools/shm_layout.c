/* Prints the offsets of struct bsl_shm_page (include/buddyslab_shm.h) in the format of
 * `scripts/bsl-top.py --layout`; the tools test compares the two, so that `buddyslab top` reads
 * the page the library writes. */
#include <stddef.h>
#include <stdio.h>

#include "buddyslab_shm.h"

#define F(name) printf("%s %zu\n", #name, offsetof(struct bsl_shm_page, name))
#define C(name) printf("class.%s %zu\n", #name, offsetof(struct bsl_shm_class, name))
#define B(name) printf("budget.%s %zu\n", #name, offsetof(struct bsl_shm_budget, name))
#define S(name) printf("site.%s %zu\n", #name, offsetof(struct bsl_shm_site, name))

int main(void)
{
    F(magic); F(version); F(pid); F(seq); F(watchers); F(updated_ms); F(updates); F(rseq); F(shards);
    F(reserved); F(committed); F(allocated); F(slab_bytes); F(large_bytes); F(huge_bytes);
    F(free_dirty); F(free_clean); F(purged_total); F(cached); F(rss);
    F(nr_free);
    F(classes);
    C(size); C(order); C(inuse); C(slabs); C(objs_per_slab); C(refills); C(drains);
    printf("sizeof_class %zu\n", sizeof(struct bsl_shm_class));
    F(soft_limit); F(hard_limit); F(oom_events); F(oom_reclaims); F(oom_reports); F(oom_failed);
    F(oom_tracking); F(nbudgets);
    F(budgets);
    B(name); B(budget); B(live); B(failed);
    printf("sizeof_budget %zu\n", sizeof(struct bsl_shm_budget));
    F(track_mode); F(nsites); F(sample_bytes); F(track_nsites);
    F(sites);
    S(idx); S(nframes); S(live); S(mblocks); S(allocs); S(frames);
    printf("sizeof_site %zu\n", sizeof(struct bsl_shm_site));
    printf("sizeof_page %zu\n", sizeof(struct bsl_shm_page));
    printf("magic_value %#llx\n", (unsigned long long)BSL_SHM_MAGIC);
    printf("version_value %d\n", BSL_SHM_VERSION);
    printf("zones %d orders %d classes %d budgets %d sites %d frames %d\n", BSL_SHM_ZONES, BSL_SHM_ORDERS,
           BSL_SHM_CLASSES, BSL_SHM_BUDGETS, BSL_SHM_SITES, BSL_SHM_SITE_FRAMES);
    return 0;
}

/* bsl_zone_malloc goes through the same size router as malloc (src/malloc/malloc.c): the OOM
 * policy's hard limit holds for every zone, and realloc keeps a block in its zone when it moves it.
 * (Before one router, bsl_zone_malloc's LOW32 and HUGE paths skipped the commit check, and realloc
 * moved a LOW32 block to NORMAL.) */
#include "bsl_test.h"

#include <malloc.h>

#define MiB ((size_t)1 << 20)
#define GiB4 ((uint64_t)1 << 32)

static void test_hard_limit(void)
{
    /* Committed memory here is a few MiB; a 1 GiB block must cross a 256 MiB hard limit. */
    CHECK(bsl_oom_set_limits(0, 256 * MiB) == 0);
    for (int z = 0; z < BSL_NR_ZONES; z++) {
        errno = 0;
        void *p = bsl_zone_malloc((bsl_zone_id)z, 1024 * MiB);
        CHECKF(p == NULL && errno == ENOMEM, "zone %d: a 1 GiB block under a 256 MiB hard limit: %p errno %d", z, p,
               errno);
        free(p);
        void *q = bsl_zone_malloc((bsl_zone_id)z, 100); /* small ones still fit */
        CHECKF(q != NULL && bsl_zone_of(q) == z, "zone %d: a small block under the limit: %p", z, q);
        free(q);
    }
    CHECK(bsl_oom_set_limits(0, 0) == 0);
    void *p = bsl_zone_malloc(BSL_ZONE_HUGE, 1024 * MiB); /* the limit was what refused it */
    CHECKF(p != NULL && bsl_zone_of(p) == BSL_ZONE_HUGE, "HUGE 1 GiB without a limit: %p errno %d", p, errno);
    free(p);
}

static void check_in(void *p, int z, size_t n)
{
    CHECKF(p != NULL && bsl_zone_of(p) == z, "realloc to %zu: %p in zone %d, not %d", n, p, p ? bsl_zone_of(p) : -1, z);
    if (p && z == BSL_ZONE_LOW32)
        CHECKF((uint64_t)(uintptr_t)p + n <= GiB4, "LOW32 block %p (+%zu) above 4 GiB", p, n);
    if (p && z == BSL_ZONE_HUGE)
        CHECKF(((uintptr_t)p & (2 * MiB - 1)) == 0, "HUGE block %p not 2 MiB aligned", p);
}

static void test_realloc_keeps_zone(void)
{
    static const size_t steps[] = {100, 3000, 200000, 3 * MiB, 64, 9 * MiB, 50};
    for (int z = 0; z < BSL_NR_ZONES; z++) {
        unsigned char *p = bsl_zone_malloc((bsl_zone_id)z, 16);
        check_in(p, z, 16);
        if (!p)
            continue;
        p[0] = (unsigned char)(z + 1);
        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
            if (z == BSL_ZONE_LOW32 && steps[i] > 4 * MiB)
                continue; /* LOW32 may not have 9 MiB below 4 GiB to spare */
            unsigned char *q = realloc(p, steps[i]);
            check_in(q, z, steps[i]);
            if (!q)
                break;
            CHECK(q[0] == (unsigned char)(z + 1));
            p = q;
        }
        free(p);
    }
}

int main(void)
{
    bsl_test_begin("zone_router");
    test_realloc_keeps_zone();
    test_hard_limit();
    return bsl_test_end();
}

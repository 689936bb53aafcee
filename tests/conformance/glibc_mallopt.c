/* mallopt accepts glibc's parameters (the scenario of glibc malloc/tst-mallopt): each of
 * M_ARENA_MAX, M_ARENA_TEST, M_CHECK_ACTION, M_MMAP_MAX, M_MMAP_THRESHOLD, M_MXFAST, M_PERTURB,
 * M_TOP_PAD and M_TRIM_THRESHOLD with a usual value returns 1 (success), and the allocator keeps
 * working afterwards in every size range (with M_PERTURB set, blocks still hold what was written). */
#include "conf.h"

#include <malloc.h>

int main(void)
{
    conf_begin("glibc_mallopt", 60);
    struct {
        int param, value;
        const char *name;
    } opts[] = {
        {M_ARENA_MAX, 8, "M_ARENA_MAX"},         {M_ARENA_TEST, 1, "M_ARENA_TEST"},
        {M_CHECK_ACTION, 1, "M_CHECK_ACTION"},   {M_MMAP_MAX, 64 * 1024, "M_MMAP_MAX"},
        {M_MMAP_THRESHOLD, 64 * 1024, "M_MMAP_THRESHOLD"}, {M_MXFAST, 0, "M_MXFAST"},
        {M_PERTURB, 0x55, "M_PERTURB"},          {M_TOP_PAD, 0, "M_TOP_PAD"},
        {M_TRIM_THRESHOLD, -1, "M_TRIM_THRESHOLD"},
    };
    for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
        int rc = mallopt(opts[i].param, opts[i].value);
        CHECKF(rc == 1, "mallopt(%s, %d) = %d, want 1", opts[i].name, opts[i].value, rc);
    }
    size_t sizes[] = {1, 100, 4000, 40000, 70 * KiB, 5 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        unsigned char *p = malloc(sizes[i]);
        CHECK(p != NULL);
        bsl_fill(p, sizes[i], i);
        unsigned char *q = calloc(1, sizes[i]);
        CHECK(q != NULL && bsl_all_zero(q, sizes[i]));
        CHECK(bsl_check(p, sizes[i], i) == (size_t)-1);
        free(p);
        free(q);
    }
    return conf_end();
}

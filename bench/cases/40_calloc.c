/* calloc_large/mib:M: calloc(1, M MiB), read three bytes (they must be zero), write them, free.
 * Fresh pages from the OS are already zero, so an allocator that knows a block is fresh can skip
 * the memset; one that recycles a dirty block must clear all M MiB. Since the bytes written here
 * dirty the block, a recycled block that is not cleared again fails the run. */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

static void bm_calloc_large(bench_state *st)
{
    size_t size = (size_t)bench_range(st, 0) << 20;
    while (bench_keep_running(st)) {
        volatile unsigned char *p = calloc(1, size);
        if (!p) {
            bench_fail(st, "calloc returned NULL");
            break;
        }
        if (p[0] | p[size / 2] | p[size - 1]) {
            bench_fail(st, "calloc returned memory that is not zeroed");
            free((void *)p);
            break;
        }
        p[0] = 1;
        p[size / 2] = 1;
        p[size - 1] = 1;
        free((void *)p);
    }
    bench_set_items(st, bench_iterations(st));
    bench_set_bytes(st, bench_iterations(st) * (int64_t)size);
}

static void def_calloc_large(bench_def *d)
{
    bench_def_arg_names(d, "mib", NULL);
    bench_def_arg(d, 1);
    bench_def_arg(d, 4);
    bench_def_arg(d, 16);
    bench_def_arg(d, 64);
    bench_def_unit(d, BENCH_US);
}
BENCH_CASE("calloc_large", bm_calloc_large, def_calloc_large)

/* realloc growth: a buffer that grows, the way vectors and string builders grow.
 *   realloc_double/max:M            16 B doubled up to M (log2 steps)
 *   realloc_append/step:S/max:M     grown by S bytes at a time up to M (a string builder)
 *   realloc_append_mixed/...        the same, with a small malloc kept alive between steps, so
 *                                   the buffer's neighbour is taken and growing in place is harder
 * Every step writes the new last byte; the first byte is checked at the end (realloc must keep
 * the contents). One item = one realloc call. */
#include <stdlib.h>

#include "bench.h"
#include "util.h"

static void bm_realloc_double(bench_state *st)
{
    size_t max = (size_t)bench_range(st, 0);
    int64_t steps = 0;
    while (bench_keep_running(st)) {
        unsigned char *p = malloc(16);
        if (!p) {
            bench_fail(st, "malloc returned NULL");
            break;
        }
        p[0] = 0xA5;
        for (size_t size = 32; size <= max; size *= 2) {
            unsigned char *q = realloc(p, size);
            if (!q) {
                bench_fail(st, "realloc returned NULL");
                break;
            }
            p = q;
            p[size - 1] = 1;
            steps++;
        }
        if (p[0] != 0xA5)
            bench_fail(st, "realloc lost the buffer's contents");
        free(p);
    }
    bench_set_items(st, steps);
}

static void def_realloc_double(bench_def *d)
{
    bench_def_arg_names(d, "max", NULL);
    bench_def_arg(d, 1 << 20);
}
BENCH_CASE("realloc_double", bm_realloc_double, def_realloc_double)

static void append_run(bench_state *st, int mixed)
{
    size_t step = (size_t)bench_range(st, 0);
    size_t max = (size_t)bench_range(st, 1);
    size_t nsteps = max / step;
    void **keep = mixed ? bench_map(nsteps * sizeof *keep) : NULL;
    int64_t steps = 0;
    while (bench_keep_running(st)) {
        unsigned char *p = NULL;
        size_t k = 0;
        for (size_t size = step; size <= max; size += step) {
            unsigned char *q = realloc(p, size);
            if (!q) {
                bench_fail(st, "realloc returned NULL");
                break;
            }
            if (!p)
                q[0] = 0x5A;
            p = q;
            p[size - 1] = 1;
            steps++;
            if (mixed) {
                size_t small = 16 + (k % 48);
                void *s = malloc(small);
                if (!s) {
                    bench_fail(st, "malloc returned NULL");
                    break;
                }
                bench_touch(s, small);
                keep[k++] = s;
            }
        }
        if (p && p[0] != 0x5A)
            bench_fail(st, "realloc lost the buffer's contents");
        free(p);
        for (size_t i = 0; i < k; i++)
            free(keep[i]);
    }
    bench_set_items(st, steps);
    bench_unmap(keep, nsteps * sizeof *keep);
}

static void bm_realloc_append(bench_state *st) { append_run(st, 0); }
static void bm_realloc_append_mixed(bench_state *st) { append_run(st, 1); }

static void def_realloc_append(bench_def *d)
{
    bench_def_arg_names(d, "step", "max");
    bench_def_args(d, 16, 64 << 10);
    bench_def_args(d, 4096, 1 << 20);
}
static void def_realloc_append_mixed(bench_def *d)
{
    bench_def_arg_names(d, "step", "max");
    bench_def_args(d, 16, 64 << 10);
}
BENCH_CASE("realloc_append", bm_realloc_append, def_realloc_append)
BENCH_CASE("realloc_append_mixed", bm_realloc_append_mixed, def_realloc_append_mixed)

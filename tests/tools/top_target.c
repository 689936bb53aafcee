/* The live process that the tools tests watch with `buddyslab top`.
 *
 * usage: top_target NBLOCKS SIZE
 *
 * Linked with nothing special: it runs under `buddyslab run --top` (or LD_PRELOAD with
 * BUDDYSLAB_OPTIONS=publish=1) and finds the bsl_* functions of the preloaded library with
 * dlsym(RTLD_DEFAULT, ...). It allocates NBLOCKS blocks of SIZE bytes and writes to them, waits
 * until the allocator's periodic tick has nothing left to tidy (two snapshots in a row agree), and
 * prints its own view of the heap:
 *
 *   pid PID
 *   stats reserved=N committed=N allocated=N slab=N large=N huge=N free_dirty=N free_clean=N
 *         purged=N cached=N rss=N                               (one line; bsl_stats_get)
 *   buddy LOW32 N N ... N                                       (bsl_stats_buddyinfo, orders 0..10)
 *   buddy NORMAL N N ... N
 *   {"version":...}                                             (bsl_stats_print_json)
 *   ready
 *
 * Then it blocks until its standard input reaches end of file, frees the blocks and exits 0.
 * Nothing here allocates after the blocks are in place: output is formatted into a static buffer
 * and written with write(2), so the numbers stay what they were when printed. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buddyslab.h"

typedef int (*stats_get_fn)(bsl_stats_t *);
typedef int (*buddyinfo_fn)(bsl_zone_id, size_t *);
typedef void (*print_json_fn)(int);

static char out[8192];
static size_t out_len;

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + out_len, sizeof(out) - out_len, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_len += (size_t)n < sizeof(out) - out_len ? (size_t)n : sizeof(out) - out_len - 1;
}

static void flush_out(void)
{
    size_t off = 0;
    while (off < out_len) {
        ssize_t w = write(1, out + off, out_len - off);
        if (w <= 0)
            exit(1);
        off += (size_t)w;
    }
    out_len = 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

struct snap {
    bsl_stats_t s;
    size_t nr_free[2][BSL_MAX_ORDER + 1];
};

static void take(struct snap *sn, stats_get_fn get, buddyinfo_fn bi)
{
    memset(sn, 0, sizeof(*sn));
    get(&sn->s);
    sn->s.rss = 0; /* the resident size moves with the kernel's bookkeeping; not compared */
    bi(BSL_ZONE_LOW32, sn->nr_free[0]);
    bi(BSL_ZONE_NORMAL, sn->nr_free[1]);
}

/* The blocks: one allocation site of its own, which `buddyslab top` names when tracking is on. */
__attribute__((noinline)) int top_target_fill(void **blocks, long n, long size)
{
    for (long i = 0; i < n; i++) {
        blocks[i] = malloc((size_t)size);
        if (!blocks[i]) {
            fprintf(stderr, "top_target: malloc(%ld) failed\n", size);
            return 1;
        }
        memset(blocks[i], (int)i, (size_t)size);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: top_target NBLOCKS SIZE\n");
        return 2;
    }
    long n = atol(argv[1]), size = atol(argv[2]);
    stats_get_fn get = (stats_get_fn)dlsym(RTLD_DEFAULT, "bsl_stats_get");
    buddyinfo_fn bi = (buddyinfo_fn)dlsym(RTLD_DEFAULT, "bsl_stats_buddyinfo");
    print_json_fn pj = (print_json_fn)dlsym(RTLD_DEFAULT, "bsl_stats_print_json");
    if (!get || !bi || !pj) {
        fprintf(stderr, "top_target: bsl_stats_get not found: not running under buddyslab (LD_PRELOAD?)\n");
        return 1;
    }
    void **blocks = malloc((size_t)(n > 0 ? n : 1) * sizeof(void *));
    if (top_target_fill(blocks, n, size) != 0)
        return 1;

    /* The tick (every 100 ms in a publishing process) flushes the caches of classes that went
     * idle; wait until two snapshots 150 ms apart agree. */
    struct snap a, b;
    take(&a, get, bi);
    for (int tries = 0; tries < 40; tries++) {
        sleep_ms(150);
        take(&b, get, bi);
        if (memcmp(&a, &b, sizeof(a)) == 0)
            break;
        a = b;
    }

    bsl_stats_t s;
    get(&s);
    emit("pid %ld\n", (long)getpid());
    emit("stats reserved=%zu committed=%zu allocated=%zu slab=%zu large=%zu huge=%zu free_dirty=%zu "
         "free_clean=%zu purged=%zu cached=%zu rss=%zu\n",
         s.reserved, s.committed, s.allocated, s.slab_bytes, s.large_bytes, s.huge_bytes, s.free_dirty,
         s.free_clean, s.purged_total, s.cached, s.rss);
    static const char *const names[2] = {"LOW32", "NORMAL"};
    for (int z = 0; z < 2; z++) {
        size_t nf[BSL_MAX_ORDER + 1];
        bi((bsl_zone_id)z, nf);
        emit("buddy %s", names[z]);
        for (int o = 0; o <= BSL_MAX_ORDER; o++)
            emit(" %zu", nf[o]);
        emit("\n");
    }
    flush_out();
    pj(1);
    emit("ready\n");
    flush_out();

    char c;
    while (read(0, &c, 1) > 0)
        ;
    for (long i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    return 0;
}

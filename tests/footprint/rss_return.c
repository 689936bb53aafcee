/* Footprint: 1 GiB in mixed sizes (small slab objects, large buddy blocks, huge mappings), all
 * freed; RSS must fall back to within a few MiB of where it started: at once with malloc_trim(0)
 * (mode "trim"), or by itself within the decay time (mode "decay", run with a short decay_ms and
 * a loop that keeps allocating and freeing a little, so the allocator's tick runs), or with no
 * allocation call at all (mode "idle", run with background_thread=1).
 * usage: rss_return trim|decay|idle */
#include "buddyslab.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

/* RSS from /proc/self/statm with plain syscalls: no allocation, so an "idle" program stays idle. */
static size_t rss(void)
{
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    unsigned long size = 0, res = 0;
    if (sscanf(buf, "%lu %lu", &size, &res) != 2)
        return 0;
    return (size_t)res * 4096;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define MiB ((size_t)1 << 20)
static void *volatile sink;

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "trim";
    static void *blocks[4000000];
    size_t n = 0, total = 0;
    free(malloc(1));
    size_t start = rss();
    while (total < 1024 * MiB) { /* 60 % of the bytes in small objects, 30 % large, 10 % huge */
        uint64_t r = rnd() % 1000;
        size_t sz = r < 990 ? 16 + rnd() % 2000 : r < 999 ? 33 * 1024 + rnd() % (2 * MiB) : 5 * MiB + rnd() % (8 * MiB);
        void *p = malloc(sz);
        if (!p) {
            fprintf(stderr, "rss_return: malloc(%zu) failed after %zu MiB\n", sz, total / MiB);
            return 1;
        }
        memset(p, 0xa5, sz);
        blocks[n++] = p;
        total += sz;
    }
    size_t peak = rss();
    for (size_t i = 0; i < n; i++) /* free in an order unrelated to allocation */
        free(blocks[(i * 7919) % n]);
    size_t after_free = rss();
    size_t settled;
    if (strcmp(mode, "trim") == 0) {
        malloc_trim(0);
        settled = rss();
    } else if (strcmp(mode, "idle") == 0) {
        /* Idle: no allocation call at all; only the background thread can give memory back. */
        for (int i = 0; i < 500; i++) {
            usleep(20000);
            settled = rss();
            if (settled <= start + 4 * MiB)
                break;
        }
    } else {
        /* Decay: the program goes on allocating and freeing a little, as a server idling would. */
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            for (int i = 0; i < 100; i++) {
                sink = malloc(64 * 1024); /* through a volatile: the compiler may not drop the pair */
                free(sink);
            }
            usleep(20000);
            clock_gettime(CLOCK_MONOTONIC, &t);
            settled = rss();
        } while (settled > start + 4 * MiB && (t.tv_sec - t0.tv_sec) < 10);
    }
    printf("rss_return(%s): %zu blocks, %zu MiB; RSS start %zu MiB, peak %zu MiB, after free %zu MiB, "
           "settled %zu MiB\n",
           mode, n, total / MiB, start / MiB, peak / MiB, after_free / MiB, settled / MiB);
    if (settled > start + 4 * MiB) {
        fprintf(stderr, "rss_return(%s): RSS %zu MiB did not fall back to within 4 MiB of %zu MiB\n", mode,
                settled / MiB, start / MiB);
        bsl_stats_print(2);
        return 1;
    }
    if (peak < start + 900 * MiB) {
        fprintf(stderr, "rss_return: peak RSS %zu MiB: the workload did not commit its memory\n", peak / MiB);
        return 1;
    }
    return 0;
}

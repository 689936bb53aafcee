/* The floor: a program that allocates almost nothing must not pay for the allocator's tables.
 * Runs itself twice, without and with libbuddyslab.so preloaded (argv[1]), each child doing a few
 * hundred small allocations and reporting its RSS; buddyslab's may exceed glibc's by at most
 * 1 MiB (here: glibc 1.3 MiB, mimalloc 1.9, buddyslab 2.0; the slabs of 27 size classes and the
 * library's own code are most of the difference). It failed at 2.8 MiB over
 * glibc's while the library linked libstdc++ and a scan of the per-CPU caches read all 1024 of
 * them (reading an untouched page commits it on some kernels). Also checks that the library does
 * not pull in libstdc++. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsl_selfrun.h"

static long rss_kib(void)
{
    char b[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, b, sizeof b - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return -1;
    b[n] = 0;
    long size, res;
    return sscanf(b, "%ld %ld", &size, &res) == 2 ? res * 4 : -1;
}

static long child(const char *preload)
{
    char buf[64];
    return bsl_run_self("rss_floor", preload, buf, sizeof buf) == 0 ? atol(buf) : -1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        void *live[64] = {0};
        for (int i = 0; i < 640; i++) {
            free(live[i % 64]);
            live[i % 64] = malloc(16 + (size_t)(i * 37) % 500);
        }
        for (int i = 0; i < 64; i++)
            free(live[i]);
        char *maps = NULL;
        size_t cap = 0;
        FILE *f = fopen("/proc/self/maps", "r");
        int stdcxx = 0;
        while (f && getline(&maps, &cap, f) > 0)
            stdcxx |= strstr(maps, "libstdc++") != NULL;
        if (f)
            fclose(f);
        free(maps);
        if (stdcxx) {
            fprintf(stderr, "rss_floor: libstdc++ is mapped into a C program\n");
            return 1;
        }
        printf("%ld\n", rss_kib());
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: rss_floor LIBBUDDYSLAB.so\n");
        return 2;
    }
    long glibc = child(NULL), bsl = child(argv[1]);
    printf("rss_floor: glibc %ld KiB, buddyslab %ld KiB\n", glibc, bsl);
    if (glibc <= 0 || bsl <= 0) {
        fprintf(stderr, "rss_floor: a child failed\n");
        return 1;
    }
    if (bsl > glibc + 1024) {
        fprintf(stderr, "rss_floor: buddyslab's RSS is %ld KiB over glibc's (at most 1024)\n", bsl - glibc);
        return 1;
    }
    return 0;
}

/* util.c: see util.h. No function here calls malloc. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

size_t bench_mix_size(bench_rng *r)
{
    uint64_t band = bench_rng_below(r, 100);
    if (band < 45)
        return bench_rng_range(r, 8, 64);
    if (band < 75)
        return bench_rng_range(r, 65, 256);
    if (band < 89)
        return bench_rng_range(r, 257, 1024);
    if (band < 96)
        return bench_rng_range(r, 1025, 4096);
    if (band < 99)
        return bench_rng_range(r, 4097, 32768);
    return bench_rng_range(r, 32769, 262144);
}

/* A few cached tables: cases ask for them on every run (Google Benchmark calls a case several
 * times while it sizes the iteration count). */
#define MIX_CACHE 32
static struct {
    size_t mask;
    uint64_t seed;
    uint32_t *table;
} mix_cache[MIX_CACHE];
static pthread_mutex_t mix_lock = PTHREAD_MUTEX_INITIALIZER;

const uint32_t *bench_mix_table(size_t mask, uint64_t seed)
{
    uint32_t *t = NULL;
    pthread_mutex_lock(&mix_lock);
    for (int i = 0; i < MIX_CACHE; i++) {
        if (mix_cache[i].table && mix_cache[i].mask == mask && mix_cache[i].seed == seed) {
            t = mix_cache[i].table;
            break;
        }
    }
    if (!t) {
        t = bench_map((mask + 1) * sizeof *t);
        bench_rng r = bench_rng_seed(seed ^ 0x6D69785F73697A65ull);
        for (size_t i = 0; i <= mask; i++)
            t[i] = (uint32_t)bench_mix_size(&r);
        for (int i = 0; i < MIX_CACHE; i++) {
            if (!mix_cache[i].table) {
                mix_cache[i].mask = mask;
                mix_cache[i].seed = seed;
                mix_cache[i].table = t;
                break;
            }
        }
    }
    pthread_mutex_unlock(&mix_lock);
    return t;
}

void bench_touch_pages(void *p, size_t n)
{
    volatile unsigned char *c = (volatile unsigned char *)p;
    for (size_t off = 0; off < n; off += 4096)
        c[off] = 1;
    c[n - 1] = 1;
}

long bench_rss_kb(void)
{
    static long page_kb;
    if (!page_kb)
        page_kb = sysconf(_SC_PAGESIZE) / 1024;
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    /* "size resident shared text lib data dt" in pages */
    char *s = buf;
    while (*s && *s != ' ')
        s++;
    return strtol(s, NULL, 10) * page_kb;
}

long bench_maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

int bench_malloc_trim(void)
{
    return malloc_trim(0);
}

void *bench_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        static const char msg[] = "bench: mmap of bookkeeping memory failed\n";
        (void)!write(2, msg, sizeof msg - 1);
        abort();
    }
    return p;
}

void bench_unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes);
}

int bench_quick(void)
{
    const char *e = getenv("BENCH_QUICK");
    return e && *e && strcmp(e, "0") != 0;
}

int bench_max_threads(void)
{
    const char *e = getenv("BENCH_MAX_THREADS");
    if (e && atoi(e) > 0)
        return atoi(e);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void bench_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* util.h: workload helpers shared by the C cases. Nothing here calls malloc: bookkeeping memory
 * comes from mmap so that it costs every allocator the same. */
#ifndef BSL_BENCH_UTIL_H
#define BSL_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- deterministic random numbers (the same stream under every allocator) ------------------ */

typedef struct bench_rng {
    uint64_t s;
} bench_rng;

static inline bench_rng bench_rng_seed(uint64_t seed)
{
    bench_rng r = {seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull};
    return r;
}

/* splitmix64 */
static inline uint64_t bench_rng_next(bench_rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n). */
static inline uint64_t bench_rng_below(bench_rng *r, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)bench_rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t bench_rng_range(bench_rng *r, size_t lo, size_t hi)
{
    return lo + (size_t)bench_rng_below(r, (uint64_t)(hi - lo + 1));
}

/* ---- the realistic size mix ---------------------------------------------------------------
 * Sizes drawn uniformly inside bands, bands weighted like a typical C/C++ program's heap
 * traffic: mostly small objects, a thin tail of large buffers.
 *      8..64 B   45%      65..256 B  30%      257..1024 B 14%
 *   1..4 KiB     7%    4..32 KiB     3%    32..256 KiB  1%        (mean about 2.3 KiB) */
size_t bench_mix_size(bench_rng *r);
/* `mask+1` (a power of two) sizes from the mix, precomputed so that drawing a size in a timed
 * loop is one load. `seed` picks the stream. Lives for the whole process; do not free. */
const uint32_t *bench_mix_table(size_t mask, uint64_t seed);
#define BENCH_MIX_MASK 4095u

/* Write the first and the last byte, as a program initialising its object would at least. */
static inline void bench_touch(void *p, size_t n)
{
    volatile unsigned char *c = (volatile unsigned char *)p;
    c[0] = (unsigned char)n;
    c[n - 1] = (unsigned char)n;
}

/* Write one byte in each page of [p, p+n) (plus the last byte): makes the block resident. */
void bench_touch_pages(void *p, size_t n);

/* ---- memory readings --------------------------------------------------------------------- */

/* Resident set size now, from /proc/self/statm (KiB). Async-signal-safe, no malloc. */
long bench_rss_kb(void);
/* Peak RSS of the process so far (getrusage ru_maxrss, KiB). */
long bench_maxrss_kb(void);

/* malloc_trim(0) where the process's malloc has one (glibc's otherwise, which is harmless:
 * it trims glibc's own unused arenas). Returns what malloc_trim returned. */
int bench_malloc_trim(void);

/* ---- bookkeeping memory, outside the allocator under test -------------------------------- */

void *bench_map(size_t bytes);          /* zeroed, page-aligned; aborts on failure */
void bench_unmap(void *p, size_t bytes);

/* ---- environment knobs ------------------------------------------------------------------- */

/* BENCH_QUICK=1: the heavy cases (fragmentation, phase change, ...) shrink to a few MiB. */
int bench_quick(void);
/* Number of online CPUs, or BENCH_MAX_THREADS when set (>0). */
int bench_max_threads(void);
/* Seconds since an arbitrary start (CLOCK_MONOTONIC). */
double bench_now(void);
/* Sleep this many seconds (nanosleep; no allocation). */
void bench_sleep(double seconds);

static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

#ifdef __cplusplus
}
#endif
#endif

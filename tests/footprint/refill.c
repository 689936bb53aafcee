/* Footprint: memory freed to be reused stays resident. A loop fills a batch of small objects (6 MiB
 * of 64-byte ones, or of a mix of sizes up to 64 KiB), frees all of it and fills it again, as a
 * request loop or a batch job does. After the first rounds, the rounds must fault (almost) no
 * page in: the allocator keeps the frames its live heap just used. Until the live-heap bound
 * followed the recent peak of the heap, every free of the last objects purged the whole batch and
 * every round faulted it back (1,450 faults a round, 10x glibc's time).
 * The allowance is two rounds' worth over 20 rounds: the tick may trim idle memory once or twice.
 *
 * The "big-churn" case is mimalloc-bench mstress's pattern: a small live heap (30,000 64-byte
 * objects) and a ring of 4 big blocks of 64 KiB .. 1.1 MiB, the oldest freed and a new one written
 * each step. Growth purges as many dirty frames as it takes clean ones (rule 1, buddy.h), and with
 * a reserve fixed at a quarter of the frames in use, the block just freed was purged before a
 * request of its size came again: 23 % of the pages written were faulted in (74,600 faults,
 * glibc's count). The reserve grows while growth refaults what it purged; the allowance is 8 %
 * (2.4 % measured).
 * usage: refill (fails with a message, exit 1) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

static size_t mix_size(size_t i, size_t fixed)
{
    if (fixed)
        return fixed;
    uint64_t h = (uint64_t)i * 0x9E3779B97F4A7C15ull;
    unsigned band = (unsigned)(h >> 58); /* 0..63 */
    return band < 40 ? 16 + (h >> 20) % 200 : band < 60 ? 256 + (h >> 20) % 3800 : 4096 + (h >> 20) % 61440;
}

static int run(const char *what, size_t n, size_t fixed)
{
    void **p = calloc(n, sizeof *p);
    if (!p)
        return 1;
    size_t bytes = 0;
    long before = 0;
    const int rounds = 22, warm = 2;
    for (int r = 0; r < rounds; r++) {
        if (r == warm)
            before = minflt();
        for (size_t i = 0; i < n; i++) {
            size_t s = mix_size(i, fixed);
            p[i] = malloc(s);
            if (!p[i]) {
                fprintf(stderr, "refill %s: malloc(%zu) failed\n", what, s);
                return 1;
            }
            memset(p[i], (int)r, s);
            if (r == 0)
                bytes += s;
        }
        for (size_t i = n; i-- > 0;)
            free(p[i]);
    }
    long faults = minflt() - before, per_round = (long)(bytes / 4096);
    free(p);
    printf("refill %s: %zu blocks, %zu KiB a round: %ld page faults over %d rounds (a round is %ld pages)\n", what,
           n, bytes >> 10, faults, rounds - warm, per_round);
    if (faults > 2 * per_round) {
        fprintf(stderr, "refill %s: the rounds faulted %ld pages back in, more than two rounds' worth (%ld): "
                        "freed memory was purged and refaulted instead of reused\n",
                what, faults, 2 * per_round);
        return 1;
    }
    return 0;
}

static int big_churn(void)
{
    enum { NSMALL = 30000, ITERS = 3000, RING = 4 };
    void **small = malloc(NSMALL * sizeof *small), *big[RING] = {0};
    if (!small)
        return 1;
    for (int i = 0; i < NSMALL; i++)
        if (!(small[i] = malloc(64)))
            return 1;
        else
            memset(small[i], 1, 64);
    uint64_t x = 88172645463325252ull;
    long before = 0;
    size_t pages = 0;
    for (int it = 0; it < ITERS; it++) {
        if (it == ITERS / 4) { /* past the first growth */
            before = minflt();
            pages = 0;
        }
        free(big[it % RING]);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t n = (64 << 10) + (size_t)(x >> 20) % ((1100 << 10) - (64 << 10));
        if (!(big[it % RING] = malloc(n))) {
            fprintf(stderr, "refill big-churn: malloc(%zu) failed\n", n);
            return 1;
        }
        memset(big[it % RING], it, n);
        pages += n / 4096;
    }
    long faults = minflt() - before;
    for (int k = 0; k < RING; k++)
        free(big[k]);
    for (int i = 0; i < NSMALL; i++)
        free(small[i]);
    free(small);
    printf("refill big-churn: %ld page faults for %zu pages written (%.1f %%)\n", faults, pages,
           100.0 * (double)faults / (double)pages);
    if (faults * 100 > (long)pages * 8) {
        fprintf(stderr, "refill big-churn: %ld page faults, more than 8 %% of the %zu pages written: the big "
                        "blocks just freed were purged instead of reused\n",
                faults, pages);
        return 1;
    }
    return 0;
}

int main(void)
{
    int rc = big_churn(); /* first: the other cases' freed frames would be its reserve */
    rc |= run("64-byte", 100000, 64);
    rc |= run("mixed", 4000, 0);
    return rc;
}

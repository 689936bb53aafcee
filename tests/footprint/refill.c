/* Footprint: memory freed to be reused stays resident. A loop fills a batch of small objects (6 MiB
 * of 64-byte ones, or of a mix of sizes up to 64 KiB), frees all of it and fills it again, as a
 * request loop or a batch job does. After the first rounds, the rounds must fault (almost) no
 * page in: the allocator keeps the frames its live heap just used. Until the live-heap bound
 * followed the recent peak of the heap, every free of the last objects purged the whole batch and
 * every round faulted it back (1,450 faults a round, 10x glibc's time).
 * The allowance is two rounds' worth over 20 rounds: the tick may trim idle memory once or twice.
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

int main(void)
{
    int rc = run("64-byte", 100000, 64);
    rc |= run("mixed", 4000, 0);
    return rc;
}

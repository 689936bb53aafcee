/* Large-block churn for bench/run-macro (the shape of mimalloc-bench's malloc-large, written
 * anew): 20 live buffers of 5-25 MiB; each step replaces a random one by a new buffer of a random
 * size, zero-filled the way C++'s make_unique<char[]>(n) does it (operator new, then memset), and
 * the new one is allocated before the old one is freed (unique_ptr::reset). What it measures is
 * whether a just-freed big block serves the next big request without faulting its pages in again.
 *
 * Usage: bsl-large-churn [steps]   (default 500). Prints one deterministic line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUF 20
#define MIN_SIZE ((size_t)5 << 20)
#define MAX_SIZE ((size_t)25 << 20)

int main(int argc, char **argv)
{
    long steps = argc > 1 ? atol(argv[1]) : 500;
    char *buf[NBUF] = {0};
    size_t len[NBUF] = {0};
    uint64_t r = 42, sum = 0;
    for (long s = 0; s < steps; s++) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t i = (size_t)(r >> 33) % NBUF;
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        size_t n = MIN_SIZE + (size_t)(r >> 20) % (MAX_SIZE - MIN_SIZE);
        char *p = malloc(n);
        if (!p) {
            fprintf(stderr, "large_churn: out of memory\n");
            return 1;
        }
        memset(p, 0, n);
        p[n / 2] = (char)s;
        if (buf[i])
            sum += (unsigned char)buf[i][len[i] / 2] + (unsigned char)buf[i][len[i] - 1];
        free(buf[i]);
        buf[i] = p;
        len[i] = n;
    }
    for (size_t i = 0; i < NBUF; i++)
        free(buf[i]);
    printf("large_churn: %ld steps, checksum %llu\n", steps, (unsigned long long)sum);
    return 0;
}

/* Programs that allocate almost nothing, for bench/run-macro: their peak RSS is the allocator's
 * floor (its metadata, tables and first pages), in the spirit of mimalloc-bench's glibc-simple
 * and cfrac (written anew).
 *
 *   bsl-tiny simple [n]   malloc/free of small random sizes, at most 100 blocks live (n rounds)
 *   bsl-tiny bignum [n]   arbitrary-precision factorials and Fibonacci numbers: every
 *                         intermediate number is a fresh malloc'd limb array, freed soon after
 * Prints one deterministic line. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static int simple(long rounds)
{
    void *live[100] = {0};
    uint64_t sum = 0;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 100; i++) {
            size_t n = 8 + rnd() % 248;
            if (live[i]) {
                sum += ((unsigned char *)live[i])[0];
                free(live[i]);
            }
            live[i] = malloc(n);
            memset(live[i], (int)(n & 0xff), n);
        }
    for (int i = 0; i < 100; i++)
        free(live[i]);
    printf("simple: %ld rounds, checksum %llu\n", rounds, (unsigned long long)sum);
    return 0;
}

/* A number: n limbs of base 10^9, little-endian. */
struct num {
    size_t n;
    uint32_t *l;
};

static struct num num_new(size_t n)
{
    struct num x = {n, calloc(n ? n : 1, sizeof(uint32_t))};
    return x;
}

static struct num mul_small(struct num a, uint32_t m)
{
    struct num r = num_new(a.n + 2);
    uint64_t carry = 0;
    size_t i;
    for (i = 0; i < a.n; i++) {
        uint64_t v = (uint64_t)a.l[i] * m + carry;
        r.l[i] = (uint32_t)(v % 1000000000u);
        carry = v / 1000000000u;
    }
    while (carry) {
        r.l[i++] = (uint32_t)(carry % 1000000000u);
        carry /= 1000000000u;
    }
    r.n = i;
    return r;
}

static struct num add(struct num a, struct num b)
{
    size_t n = (a.n > b.n ? a.n : b.n) + 1;
    struct num r = num_new(n);
    uint32_t carry = 0;
    size_t i;
    for (i = 0; i < n - 1; i++) {
        uint32_t v = (i < a.n ? a.l[i] : 0) + (i < b.n ? b.l[i] : 0) + carry;
        carry = v >= 1000000000u;
        r.l[i] = carry ? v - 1000000000u : v;
    }
    if (carry)
        r.l[i++] = carry;
    r.n = i;
    return r;
}

static uint64_t digest(struct num a)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < a.n; i++)
        h = (h ^ a.l[i]) * 1099511628211ull;
    return h;
}

static int bignum(long n)
{
    uint64_t h = 0;
    for (long rep = 0; rep < n; rep++) {
        struct num f = num_new(1);
        f.l[0] = 1;
        for (uint32_t k = 2; k <= 1500; k++) { /* 1500! */
            struct num g = mul_small(f, k);
            free(f.l);
            f = g;
        }
        h = h * 31 + digest(f);
        free(f.l);
        struct num a = num_new(1), b = num_new(1);
        b.l[0] = 1;
        for (int k = 0; k < 5000; k++) { /* F(5000) */
            struct num c = add(a, b);
            free(a.l);
            a = b;
            b = c;
        }
        h = h * 31 + digest(b);
        free(a.l);
        free(b.l);
    }
    printf("bignum: %ld reps, digest %016llx\n", n, (unsigned long long)h);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "simple";
    long n = argc > 2 ? atol(argv[2]) : 0;
    if (!strcmp(mode, "simple"))
        return simple(n ? n : 200000);
    if (!strcmp(mode, "bignum"))
        return bignum(n ? n : 100);
    fprintf(stderr, "usage: bsl-tiny simple|bignum [n]\n");
    return 2;
}

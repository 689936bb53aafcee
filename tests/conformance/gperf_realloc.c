/* realloc keeps contents over growing and shrinking (the scenario of gperftools' realloc_unittest).
 *
 * For every pair (src, dst) of sizes from a sequence (0 .. 40 one by one, then growing by half, up
 * to 6 MiB, crossing the small, large and huge ranges; a size over 256 KiB with its neighbours and every
 * 16th size): a block of src
 * bytes is filled with a pattern, realloc'd to dst, and the first min(src, dst) bytes must be
 * unchanged; the new tail is writable. Then one block is grown one byte at a time for 5,000
 * steps and shrunk back, then grown and shrunk geometrically between 1 byte and 8 MiB, checking
 * the common prefix at every step. */
#include "conf.h"

#include <malloc.h>

/* 0 .. 40 one by one, then by half again up to 6 MiB: every size class range is crossed. */
static size_t next_size(size_t s) { return s < 40 ? s + 1 : s + s / 2 + 1; }

static void pair(size_t src, size_t dst)
{
    unsigned char *p = malloc(src);
    CHECK(p != NULL);
    uint64_t seed = src * 1000003 + dst;
    bsl_fill(p, src, seed);
    unsigned char *q = realloc(p, dst);
    if (dst == 0) {
        CHECKF(q == NULL, "realloc(%zu -> 0) = %p: glibc frees and returns NULL", src, (void *)q);
        free(q);
        return;
    }
    CHECKF(q != NULL, "realloc(%zu -> %zu) failed", src, dst);
    size_t keep = src < dst ? src : dst;
    size_t off = bsl_check(q, keep, seed);
    CHECKF(off == (size_t)-1, "realloc(%zu -> %zu): byte %zu of the kept %zu changed", src, dst, off, keep);
    if (dst > src)
        memset(q + src, 0xcd, dst - src);
    free(q);
}

int main(void)
{
    conf_begin("gperf_realloc", 60);
    size_t sizes[200];
    int n = 0;
    for (size_t s = 0; s <= 6 * MiB && n < 200; s = next_size(s))
        sizes[n++] = s;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            if ((sizes[i] <= 256 * KiB && sizes[j] <= 256 * KiB) || j == i - 1 || j == i + 1 ||
                (sizes[i] <= 256 * KiB && i % 16 == 0) || (sizes[j] <= 256 * KiB && j % 16 == 0))
                pair(sizes[i], sizes[j]); /* a size over 256 KiB: with neighbours and every 16th (they are costly) */

    /* one byte at a time, up and down */
    unsigned char *p = NULL;
    for (size_t s = 1; s <= 5000; s++) {
        p = realloc(p, s);
        CHECK(p != NULL);
        p[s - 1] = (unsigned char)(s * 7);
        if (s % 97 == 0)
            for (size_t k = 0; k < s; k++)
                if (p[k] != (unsigned char)((k + 1) * 7)) {
                    CHECKF(0, "growing by one byte: byte %zu changed at size %zu", k, s);
                    break;
                }
    }
    for (size_t s = 5000; s >= 1; s--) {
        p = realloc(p, s);
        CHECK(p != NULL);
        if (s % 101 == 0)
            for (size_t k = 0; k < s; k++)
                if (p[k] != (unsigned char)((k + 1) * 7)) {
                    CHECKF(0, "shrinking by one byte: byte %zu changed at size %zu", k, s);
                    break;
                }
    }
    free(p);

    /* geometric up and down through every range */
    p = malloc(1);
    size_t cur = 1;
    bsl_fill(p, 1, 9);
    for (int round = 0; round < 3; round++) {
        for (size_t s = 2; s <= 8 * MiB; s *= 2) {
            p = realloc(p, s);
            CHECK(p != NULL);
            CHECK(bsl_check(p, cur, 9) == (size_t)-1);
            bsl_fill(p, s, 9);
            cur = s;
        }
        for (size_t s = 4 * MiB - 3; s >= 1; s /= 3) {
            p = realloc(p, s);
            CHECK(p != NULL);
            CHECK(bsl_check(p, s, 9) == (size_t)-1);
            cur = s;
        }
    }
    free(p);
    return conf_end();
}

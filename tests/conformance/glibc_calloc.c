/* calloc hands out zeroed memory (the scenario of glibc malloc/tst-calloc).
 *
 * Fixed sizes (5, 6, 15, 17, 31, 96 bytes and a few past the slab classes): many blocks at once,
 * each checked zero and then dirtied with 0xff before it is freed, so later rounds get recycled
 * dirty memory and must still see zeros. Random nmemb x size products, the same way. Large
 * (32 KiB .. 4 MiB) and huge (> 4 MiB) blocks recycled dirty. Zero-sized products (0 x 0,
 * 0 x UINT_MAX, SIZE_MAX x 0, ...) do not crash, and return a block that can be freed or NULL.
 * Overflowing products give NULL + ENOMEM. */
#include "conf.h"

#include <limits.h>
#include <malloc.h>

#define N 5000

static void check_zero_dirty(unsigned char *p, size_t n, const char *what)
{
    CHECKF(bsl_all_zero(p, n), "%s: calloc block %p of %zu bytes is not zeroed", what, (void *)p, n);
    memset(p, 0xff, n);
}

static void fixed(size_t size, int count)
{
    static unsigned char *ptrs[N];
    int i;
    for (i = 0; i < count; i++) {
        ptrs[i] = calloc(1, conf_size(size));
        CHECKF(ptrs[i] != NULL, "calloc(1, %zu) #%d failed", size, i);
        check_zero_dirty(ptrs[i], size, "fixed");
    }
    while (i-- > 0)
        free(ptrs[i]);
}

static void random_products(bsl_rng *r)
{
    static unsigned char *ptrs[N];
    static size_t sz[N];
    for (int round = 0; round < 2; round++) {
        int i;
        for (i = 0; i < N; i++) {
            size_t n = 1 + bsl_rand_below(r, 10), elem = 1 + bsl_rand_below(r, round == 1 ? 3000 : 100);
            sz[i] = n * elem;
            ptrs[i] = calloc(conf_size(n), conf_size(elem));
            CHECKF(ptrs[i] != NULL, "calloc(%zu, %zu) failed", n, elem);
            check_zero_dirty(ptrs[i], sz[i], "random");
        }
        /* free every other one first, so the next round mixes fresh and recycled objects */
        for (i = 0; i < N; i += 2)
            free(ptrs[i]);
        for (i = 1; i < N; i += 2)
            free(ptrs[i]);
    }
}

static void big(void)
{
    size_t sizes[] = {33 * KiB, 100 * KiB, 1 * MiB, 4 * MiB - 4096, 4 * MiB, 5 * MiB + 123, 9 * MiB};
    for (int round = 0; round < 3; round++)
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            unsigned char *p = calloc(sizes[i] / 16, 16);
            CHECKF(p != NULL, "calloc(%zu) failed", sizes[i] / 16 * 16);
            if (p) {
                check_zero_dirty(p, sizes[i] / 16 * 16, "big");
                free(p);
            }
        }
}

static void zero_products(void)
{
    size_t pairs[][2] = {{0, 0}, {0, UINT_MAX}, {UINT_MAX, 0}, {0, SIZE_MAX}, {SIZE_MAX, 0}, {0, 1}, {1, 0}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        void *p = calloc(conf_size(pairs[i][0]), conf_size(pairs[i][1]));
        free(p); /* a unique block or NULL: both may be freed */
    }
    CHECK(1);
}

static void overflow(void)
{
    size_t pairs[][2] = {{SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
                         {SIZE_MAX / 1000, 1001}, {65537, SIZE_MAX / 65536}};
    for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
        errno = 0;
        void *p = calloc(conf_size(pairs[i][0]), conf_size(pairs[i][1]));
        CHECKF(p == NULL && errno == ENOMEM, "calloc(%zu, %zu) = %p errno %d: the product overflows", pairs[i][0],
               pairs[i][1], p, errno);
    }
}

int main(void)
{
    conf_begin("glibc_calloc", 60);
    bsl_rng r;
    bsl_rng_seed(&r, 2000);
    size_t fixed_sizes[] = {15, 5, 17, 6, 31, 96, 1000, 4096, 20000};
    for (size_t i = 0; i < sizeof fixed_sizes / sizeof *fixed_sizes; i++)
        fixed(fixed_sizes[i], fixed_sizes[i] > 1000 ? 500 : N);
    random_products(&r);
    big();
    zero_products();
    overflow();
    return conf_end();
}

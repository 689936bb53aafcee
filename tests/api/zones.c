/* bsl_zone_malloc / bsl_zone_of / bsl_owns. */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)
#define GiB4 ((uint64_t)1 << 32)

static int static_var;
static const char rodata[] = "read-only data";

static const char *zname(int z)
{
    switch (z) {
    case BSL_ZONE_LOW32: return "LOW32";
    case BSL_ZONE_NORMAL: return "NORMAL";
    case BSL_ZONE_HUGE: return "HUGE";
    default: return "?";
    }
}

static const size_t sizes[] = {0, 1, 16, 100, 512, 4000, 4096, 20000, 65536, 300 * KiB, 1 * MiB, 3 * MiB, 4 * MiB,
                               5 * MiB, 9 * MiB};
#define NSIZES (sizeof sizes / sizeof *sizes)

static void check_zone_block(int z, size_t n, void *p)
{
    CHECKF(p != NULL, "bsl_zone_malloc(%s, %zu) failed (errno %d)", zname(z), n, errno);
    if (!p)
        return;
    CHECKF(((uintptr_t)p & 15) == 0, "bsl_zone_malloc(%s, %zu)=%p misaligned", zname(z), n, p);
    CHECKF(bsl_owns(p) == 1, "bsl_zone_malloc(%s, %zu)=%p not owned", zname(z), n, p);
    int got = bsl_zone_of(p);
    CHECKF(got == z, "bsl_zone_of(bsl_zone_malloc(%s, %zu)) = %d", zname(z), n, got);
    CHECKF(malloc_usable_size(p) >= n, "usable size %zu < %zu in zone %s", malloc_usable_size(p), n, zname(z));
    if (z == BSL_ZONE_LOW32)
        CHECKF((uint64_t)(uintptr_t)p + (n ? n : 1) <= GiB4, "LOW32 block %p (+%zu) above 4 GiB", p, n);
    if (z == BSL_ZONE_HUGE)
        CHECKF(((uintptr_t)p & (2 * MiB - 1)) == 0, "HUGE block %p (%zu bytes) not 2 MiB aligned", p, n);
}

static void test_each_zone(void)
{
    for (int z = 0; z < BSL_NR_ZONES; z++) {
        void *live[NSIZES];
        for (size_t i = 0; i < NSIZES; i++) {
            size_t n = sizes[i];
            errno = 0;
            void *p = bsl_zone_malloc((bsl_zone_id)z, n);
            if (z == BSL_ZONE_LOW32 && n > 4 * MiB && p == NULL) {
                /* LOW32 is served by the buddy allocator only (largest block 4 MiB): a bigger
                 * request may fail, but then cleanly */
                CHECKF(errno == ENOMEM, "bsl_zone_malloc(LOW32, %zu) = NULL with errno %d", n, errno);
                live[i] = NULL;
                continue;
            }
            check_zone_block(z, n, p);
            live[i] = p;
            if (p)
                bsl_fill(p, n, (uintptr_t)p + (uint64_t)z);
        }
        for (size_t i = 0; i < NSIZES; i++) {
            if (!live[i])
                continue;
            CHECKF(bsl_check(live[i], sizes[i], (uintptr_t)live[i] + (uint64_t)z) == (size_t)-1,
                   "zone %s block of %zu bytes corrupted", zname(z), sizes[i]);
            CHECK(bsl_zone_of(live[i]) == z);
            free(live[i]);
            CHECKF(bsl_owns(live[i]) == 0, "zone %s block of %zu still owned after free", zname(z), sizes[i]);
        }
    }
    /* many LOW32 blocks, freed in another order, all below 4 GiB */
    enum { N = 3000 };
    static void *v[N];
    for (int i = 0; i < N; i++) {
        size_t n = 16 + (size_t)(i * 131) % 20000;
        v[i] = bsl_zone_malloc(BSL_ZONE_LOW32, n);
        CHECK(v[i] != NULL);
        CHECK((uint64_t)(uintptr_t)v[i] + n <= GiB4);
        memset(v[i], i & 0xff, n);
    }
    for (int i = N - 1; i >= 0; i -= 2)
        free(v[i]);
    for (int i = N - 2; i >= 0; i -= 2)
        free(v[i]);
    /* zone blocks can be realloc'd and freed like any malloc block */
    unsigned char *h = bsl_zone_malloc(BSL_ZONE_HUGE, 100);
    CHECK(h != NULL);
    bsl_fill(h, 100, 42);
    h = realloc(h, 3 * MiB);
    CHECK(h != NULL && bsl_check(h, 100, 42) == (size_t)-1 && bsl_owns(h) == 1);
    free(h);
}

static void test_malloc_zone(void)
{
    void *p = malloc(100);
    CHECKF(bsl_zone_of(p) == BSL_ZONE_NORMAL, "plain malloc(100) in zone %d", bsl_zone_of(p));
    free(p);
    p = malloc(300 * KiB);
    CHECKF(bsl_zone_of(p) == BSL_ZONE_NORMAL, "plain malloc(300 KiB) in zone %d", bsl_zone_of(p));
    free(p);
    p = malloc(20 * MiB);
    int z = bsl_zone_of(p);
    CHECKF(z == BSL_ZONE_NORMAL || z == BSL_ZONE_HUGE, "plain malloc(20 MiB) in zone %d", z);
    free(p);
}

static void test_foreign(void)
{
    int local = 0;
    CHECK(bsl_zone_of(&local) == -1);
    CHECK(bsl_owns(&local) == 0);
    CHECK(bsl_zone_of(&static_var) == -1);
    CHECK(bsl_owns(&static_var) == 0);
    CHECK(bsl_zone_of(rodata) == -1);
    CHECK(bsl_owns(rodata) == 0);
    CHECK(bsl_zone_of((const void *)test_foreign) == -1);
    CHECK(bsl_zone_of(NULL) == -1);
    CHECK(bsl_owns(NULL) == 0);
    CHECK(bsl_zone_of((void *)(uintptr_t)16) == -1);
    CHECK(bsl_owns((void *)(uintptr_t)16) == 0);
    CHECK(bsl_zone_of((void *)(uintptr_t)-4096) == -1);
    CHECK(bsl_owns((void *)(uintptr_t)-4096) == 0);
    CHECK(bsl_zone_of((void *)((uintptr_t)1 << 47)) == -1);
    CHECK(bsl_owns((void *)((uintptr_t)1 << 47)) == 0);
    /* memory we mapped ourselves, including a 2 MiB aligned one and one in the low 4 GiB */
    size_t len = 4 * MiB;
    unsigned char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(m != MAP_FAILED);
    unsigned char *m2 = (unsigned char *)(((uintptr_t)m + 2 * MiB - 1) & ~(2 * MiB - 1));
    CHECK(bsl_zone_of(m) == -1 && bsl_owns(m) == 0);
    CHECK(bsl_zone_of(m2) == -1 && bsl_owns(m2) == 0);
    CHECK(bsl_zone_of(m + 4096) == -1 && bsl_owns(m + 4096) == 0);
    munmap(m, len);
    unsigned char *lo = mmap(NULL, 65536, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (lo != MAP_FAILED) {
        CHECK(bsl_zone_of(lo) == -1 && bsl_owns(lo) == 0);
        munmap(lo, 65536);
    }
    /* pointers into our blocks that are not their start */
    unsigned char *p = malloc(100);
    CHECK(bsl_owns(p) == 1);
    CHECK(bsl_owns(p + 16) == 0);
    CHECK(bsl_owns(p + 1) == 0);
    free(p);
    p = malloc(1 * MiB);
    CHECK(bsl_owns(p) == 1 && bsl_owns(p + 4096) == 0 && bsl_owns(p + 512 * KiB) == 0);
    free(p);
    p = malloc(10 * MiB);
    CHECK(bsl_owns(p) == 1 && bsl_owns(p + 4096) == 0 && bsl_owns(p + 2 * MiB) == 0);
    free(p);
}

static void test_invalid_zone(void)
{
    int bad[] = {BSL_NR_ZONES, 4, 100, -1, -100, 0x7fffffff};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        void *p = bsl_zone_malloc((bsl_zone_id)bad[i], 64);
        CHECKF(p == NULL && errno == EINVAL, "bsl_zone_malloc(%d, 64) = %p errno %d", bad[i], p, errno);
    }
}

static void *thread_zone(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        int z = i % BSL_NR_ZONES;
        size_t n = (z == BSL_ZONE_HUGE) ? 1000 : 16 + (size_t)i * 7 % 3000;
        if (z == BSL_ZONE_HUGE && i % 30 != 2)
            continue;
        void *p = bsl_zone_malloc((bsl_zone_id)z, n);
        CHECKF(p != NULL && bsl_zone_of(p) == z, "thread: bsl_zone_malloc(%s, %zu) = %p in zone %d", zname(z), n, p,
               bsl_zone_of(p));
        memset(p, 1, n);
        free(p);
    }
    return NULL;
}

int main(void)
{
    bsl_test_begin("zones");
    test_each_zone();
    test_malloc_zone();
    test_foreign();
    test_invalid_zone();
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_zone, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return bsl_test_end();
}

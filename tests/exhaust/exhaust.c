/* Out of memory. With RLIMIT_AS set low (first thing in main, before the allocator maps anything
 * of its own), allocations of every kind eventually fail with NULL and errno == ENOMEM; the
 * process keeps running, every block it got is intact, and once memory is freed it allocates
 * again. Absurd sizes (SIZE_MAX, SIZE_MAX/2, overflowing calloc/reallocarray, huge alignments)
 * fail cleanly whatever the limit. bsl_check_heap() passes after each phase.
 * usage: exhaust [limit MiB=256] [reuse-after-huge] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Blocks are chained through their first word; the second word holds the size (so any block
 * of 16+ bytes can be checked: its first/last 64 bytes and the words in between carry a pattern). */
typedef struct node {
    struct node *next;
    size_t n;
} node;

static void mark(node *b, size_t n)
{
    b->n = n;
    unsigned char *p = (unsigned char *)b;
    size_t lo = n < 64 ? n : 64;
    for (size_t i = sizeof(node); i < lo; i++)
        p[i] = (unsigned char)(i ^ (uintptr_t)b);
    for (size_t i = n > 64 ? n - 64 : lo; i < n; i++)
        p[i] = (unsigned char)(i ^ (uintptr_t)b);
}

static int intact(const node *b)
{
    const unsigned char *p = (const unsigned char *)b;
    size_t n = b->n, lo = n < 64 ? n : 64;
    for (size_t i = sizeof(node); i < lo; i++)
        if (p[i] != (unsigned char)(i ^ (uintptr_t)b))
            return 0;
    for (size_t i = n > 64 ? n - 64 : lo; i < n; i++)
        if (p[i] != (unsigned char)(i ^ (uintptr_t)b))
            return 0;
    return 1;
}

enum how { H_MALLOC, H_CALLOC, H_MEMALIGN, H_POSIX_MEMALIGN, H_LOW32 };
static const char *how_name[] = {"malloc", "calloc", "memalign", "posix_memalign", "bsl_zone_malloc(LOW32)"};

/* One allocation; on failure checks the failure is a clean ENOMEM. */
static node *alloc1(enum how h, size_t n)
{
    errno = 0;
    void *p = NULL;
    switch (h) {
    case H_MALLOC:
        p = malloc(n);
        break;
    case H_CALLOC:
        p = calloc(n / 16, 16);
        if (p)
            CHECKF(bsl_all_zero(p, n < 4096 ? n : 4096), "calloc(%zu) not zeroed near exhaustion", n);
        break;
    case H_MEMALIGN:
        p = memalign(4096, n);
        if (p)
            CHECK(((uintptr_t)p & 4095) == 0);
        break;
    case H_POSIX_MEMALIGN: {
        errno = 12345;
        int rc = posix_memalign(&p, 256, n);
        CHECKF(rc == 0 || rc == ENOMEM, "posix_memalign returned %d", rc);
        CHECKF(errno == 12345, "posix_memalign changed errno to %d", errno); /* POSIX: errno untouched */
        if (rc)
            return NULL;
        break;
    }
    case H_LOW32:
        p = bsl_zone_malloc(BSL_ZONE_LOW32, n);
        break;
    }
    if (!p && h != H_POSIX_MEMALIGN)
        CHECKF(errno == ENOMEM, "%s(%zu) returned NULL with errno %d (%s), not ENOMEM", how_name[h], n, errno,
               strerror(errno));
    if (p)
        mark(p, n);
    return p;
}

/* Allocate blocks of size n until the allocator says no. Returns the chain; *count, *bytes. */
static node *fill(enum how h, size_t n, size_t *count)
{
    node *head = NULL;
    size_t k = 0;
    for (;;) {
        node *b = alloc1(h, n);
        if (!b)
            break;
        b->next = head;
        head = b;
        k++;
    }
    *count = k;
    return head;
}

/* At most max blocks of size n, or fewer when the allocator says no. */
static node *fill_upto(enum how h, size_t n, size_t max)
{
    node *head = NULL;
    for (size_t k = 0; k < max; k++) {
        node *b = alloc1(h, n);
        CHECKF(b != NULL, "%s(%zu) failed after %zu blocks with no limit", how_name[h], n, k);
        if (!b)
            break;
        b->next = head;
        head = b;
    }
    return head;
}

static size_t drain(node *head, size_t *bad)
{
    size_t k = 0;
    while (head) {
        node *next = head->next;
        if (!intact(head))
            (*bad)++;
        free(head);
        head = next;
        k++;
    }
    return k;
}

static void absurd_sizes(void)
{
    static const size_t sizes[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX / 2, SIZE_MAX / 2 + 1,
                                   (size_t)1 << 62, (size_t)1 << 48, (size_t)1 << 47};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        errno = 0;
        void *p = malloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "malloc(%#zx)=%p errno=%d", n, p, errno);
        errno = 0;
        p = calloc(1, n);
        CHECKF(p == NULL && errno == ENOMEM, "calloc(1, %#zx)=%p errno=%d", n, p, errno);
        errno = 0;
        p = memalign(64, n);
        CHECKF(p == NULL && errno == ENOMEM, "memalign(64, %#zx)=%p errno=%d", n, p, errno);
        errno = 0;
        p = aligned_alloc(4096, n);
        CHECKF(p == NULL && errno == ENOMEM, "aligned_alloc(4096, %#zx)=%p errno=%d", n, p, errno);
        p = NULL;
        errno = 1234;
        CHECKF(posix_memalign(&p, 16, n) == ENOMEM && p == NULL, "posix_memalign(16, %#zx)", n);
        CHECKF(errno == 1234, "posix_memalign(16, %#zx) changed errno to %d", n, errno);
        CHECKF(posix_memalign(&p, 1 * MiB, n) == ENOMEM && p == NULL, "posix_memalign(1 MiB, %#zx)", n);
        CHECKF(errno == 1234, "posix_memalign(1 MiB, %#zx) changed errno to %d", n, errno);
        errno = 0;
        p = valloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "valloc(%#zx)=%p errno=%d", n, p, errno);
        errno = 0;
        p = pvalloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "pvalloc(%#zx)=%p errno=%d", n, p, errno);
        for (int z = BSL_ZONE_LOW32; z <= BSL_ZONE_HUGE; z++) {
            errno = 0;
            p = bsl_zone_malloc((bsl_zone_id)z, n);
            CHECKF(p == NULL && errno == ENOMEM, "bsl_zone_malloc(%d, %#zx)=%p errno=%d", z, n, p, errno);
        }
        /* realloc that cannot grow: NULL, ENOMEM, the old block intact and still ours */
        node *b = malloc(100);
        mark(b, 100);
        errno = 0;
        void *q = realloc(b, n);
        CHECKF(q == NULL && errno == ENOMEM, "realloc(100 -> %#zx)=%p errno=%d", n, q, errno);
        CHECK(intact(b) && bsl_owns(b) == 1);
        node *l = malloc(100 * KiB);
        mark(l, 100 * KiB);
        errno = 0;
        q = realloc(l, n);
        CHECKF(q == NULL && errno == ENOMEM, "realloc(100K -> %#zx)=%p errno=%d", n, q, errno);
        CHECK(intact(l) && bsl_owns(l) == 1);
        free(b);
        free(l);
    }
    /* multiplication overflow */
    static const size_t pairs[][2] = {{SIZE_MAX, 2}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
                                      {(size_t)1 << 33, (size_t)1 << 31}, {3, SIZE_MAX / 3 + 1}};
    for (unsigned i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        errno = 0;
        void *p = calloc(pairs[i][0], pairs[i][1]);
        CHECKF(p == NULL && errno == ENOMEM, "calloc(%#zx, %#zx)=%p errno=%d", pairs[i][0], pairs[i][1], p, errno);
        void *b = malloc(10);
        memset(b, 7, 10);
        errno = 0;
        p = reallocarray(b, pairs[i][0], pairs[i][1]);
        CHECKF(p == NULL && errno == ENOMEM, "reallocarray(%#zx, %#zx)=%p errno=%d", pairs[i][0], pairs[i][1], p, errno);
        CHECK(((unsigned char *)b)[9] == 7);
        free(b);
    }
    /* huge alignments: 1 TiB and beyond cannot be had; nothing may crash or leak space. A valid
     * alignment is never EINVAL (glibc's tst-malloc-too-large): ENOMEM from all three, and
     * posix_memalign returns it without touching errno or *memptr. */
    static const size_t aligns[] = {(size_t)1 << 40, (size_t)1 << 41, (size_t)1 << 46, (size_t)1 << 62,
                                    (size_t)1 << 63};
    for (unsigned i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
        size_t al = aligns[i];
        void *p = (void *)0x1;
        errno = 1234;
        int rc = posix_memalign(&p, al, 16);
        CHECKF(rc == ENOMEM && p == (void *)0x1, "posix_memalign(&p, %#zx, 16)=%d p=%p", al, rc, p);
        CHECKF(errno == 1234, "posix_memalign(&p, %#zx, 16) changed errno to %d", al, errno);
        errno = 0;
        p = aligned_alloc(al, al);
        CHECKF(p == NULL && errno == ENOMEM, "aligned_alloc(%#zx)=%p errno=%d", al, p, errno);
        errno = 0;
        p = memalign(al, 16);
        CHECKF(p == NULL && errno == ENOMEM, "memalign(%#zx, 16)=%p errno=%d", al, p, errno);
    }
    /* beyond 2^63 no power of two is left to round up to: EINVAL, as glibc */
    errno = 0;
    void *odd = memalign(((size_t)1 << 63) + 1, 16);
    CHECKF(odd == NULL && errno == EINVAL, "memalign(2^63 + 1, 16)=%p errno=%d", odd, errno);
    CHECK(bsl_check_heap() == 0);
}

/* A thread started before exhaustion (its stack is mapped) allocates during it: NULL + ENOMEM
 * there too, in its own (per-CPU or per-thread) cache path. */
static int phase_flag; /* 1: main has exhausted memory, go; 2: thread done */
static size_t thread_got;

static void *starved_thread(void *arg)
{
    (void)arg;
    while (__atomic_load_n(&phase_flag, __ATOMIC_ACQUIRE) != 1)
        usleep(1000);
    size_t bad = 0;
    node *h = fill(H_MALLOC, 200, &thread_got);
    errno = 0;
    void *p = malloc(1 * MiB);
    CHECKF(p == NULL && errno == ENOMEM, "thread: malloc(1 MiB) at exhaustion=%p errno=%d", p, errno);
    drain(h, &bad);
    CHECK(bad == 0);
    __atomic_store_n(&phase_flag, 2, __ATOMIC_RELEASE);
    return NULL;
}

/* Mode "reuse-after-huge": the address space of freed huge blocks serves other sizes. Huge blocks
 * (24 MiB) until ENOMEM, all freed, then 100 KiB blocks until ENOMEM: they must get at least 3/4
 * of the address space the huge blocks had. */
static int reuse_after_huge(void)
{
    size_t nh = 0, c = 0, bad = 0;
    node *h = fill(H_MALLOC, 24 * MiB, &nh);
    CHECK(nh > 0);
    drain(h, &bad); /* no malloc_trim: the allocator must find the space itself when it runs out */
    node *s = fill(H_MALLOC, 100 * KiB, &c);
    printf("reuse-after-huge: %zu x 24 MiB (%zu MiB) until ENOMEM, freed; then %zu x 100 KiB (%zu MiB) until ENOMEM\n", nh,
           nh * 24, c, c * 100 / 1024);
    CHECKF(c * 100 * KiB >= nh * 24 * MiB / 4 * 3,
           "after freeing %zu MiB of huge blocks only %zu MiB of 100 KiB blocks could be allocated", nh * 24,
           c * 100 / 1024);
    drain(s, &bad);
    CHECK(bad == 0);
    CHECK(bsl_check_heap() == 0);
    return bsl_test_end();
}

int main(int argc, char **argv)
{
    size_t limit = (argc > 1 ? (size_t)atol(argv[1]) : 256) * MiB;
    struct rlimit old, rl;
    getrlimit(RLIMIT_AS, &old);
    rl.rlim_cur = limit; /* the soft limit only, so that it can be lifted again without privileges */
    rl.rlim_max = old.rlim_max;
    if (setrlimit(RLIMIT_AS, &rl) != 0) {
        perror("setrlimit(RLIMIT_AS)");
        return 1;
    }
    bsl_test_begin("exhaust");
    if (argc > 2 && !strcmp(argv[2], "reuse-after-huge"))
        return reuse_after_huge();
    absurd_sizes();

    /* Each kind of block until the allocator runs out; then free and do it again. */
    static const struct {
        enum how h;
        size_t n;
    } phases[] = {
        /* LOW32 first: arenas stay reserved once mapped, and NORMAL requests may fall back to
         * LOW32 arenas but not the other way round */
        {H_LOW32, 100 * KiB},  {H_LOW32, 300},
        {H_MALLOC, 8 * MiB},   {H_MALLOC, 1 * MiB},   {H_MALLOC, 100 * KiB},   {H_MALLOC, 4000},
        {H_MALLOC, 64},        {H_CALLOC, 3 * MiB},   {H_CALLOC, 20000},       {H_MEMALIGN, 40 * KiB},
        {H_POSIX_MEMALIGN, 2000},
    };
    size_t first_total = 0;
    for (unsigned ph = 0; ph < sizeof(phases) / sizeof(phases[0]); ph++) {
        size_t n = phases[ph].n, c1 = 0, c2 = 0, bad = 0;
        double t0 = bsl_now();
        node *h = fill(phases[ph].h, n, &c1);
        CHECKF(c1 > 0, "%s(%zu): not a single block under the limit", how_name[phases[ph].h], n);
        /* at the limit: every other kind of request fails cleanly too, and nothing crashes */
        /* (A 64 MiB request may still fit where the last small one did not: a new 64 MiB arena is
         * reserved with 64 MiB of alignment slack. Above the limit nothing fits.) */
        errno = 0;
        void *x = malloc(1024 * MiB);
        CHECKF(x == NULL && errno == ENOMEM, "malloc(1 GiB) at exhaustion=%p errno=%d", x, errno);
        node *again = alloc1(phases[ph].h, n);
        CHECKF(again == NULL, "%s(%zu) failed, then succeeded right after", how_name[phases[ph].h], n);
        /* a smaller size may still fit in what is left: use it up as well */
        size_t cs = 0;
        node *small = fill(H_MALLOC, 48, &cs);
        CHECK(drain(small, &bad) == cs);
        size_t d = drain(h, &bad);
        CHECK(d == c1);
        CHECKF(bad == 0, "%s(%zu): %zu blocks corrupted", how_name[phases[ph].h], n, bad);
        CHECK(bsl_check_heap() == 0);
        /* memory is back: the same again */
        h = fill(phases[ph].h, n, &c2);
        CHECKF(c2 * 10 >= c1 * 9, "%s(%zu): %zu blocks the first time, only %zu after freeing", how_name[phases[ph].h], n,
               c1, c2);
        drain(h, &bad);
        CHECK(bad == 0);
        malloc_trim(0);
        CHECK(bsl_check_heap() == 0);
        printf("%-24s %8zu B: %7zu blocks (%4zu MiB) until ENOMEM, %7zu again after freeing, +%zu x 48 B (%.2f s)\n",
               how_name[phases[ph].h], n, c1, c1 * n / MiB, c2, cs, bsl_now() - t0);
        first_total += c1 * n;
    }

    /* A thread allocating during exhaustion. */
    size_t c = 0, bad = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, starved_thread, NULL) == 0);
    node *h = fill(H_MALLOC, 256 * KiB, &c);
    __atomic_store_n(&phase_flag, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    CHECK(phase_flag == 2);
    printf("thread at exhaustion: %zu blocks of 200 B, then ENOMEM\n", thread_got);
    drain(h, &bad);
    CHECK(bad == 0);
    CHECK(bsl_check_heap() == 0);

    /* Finally the program is healthy: a normal workload runs. */
    for (int i = 0; i < 10000; i++) {
        void *p = malloc(1 + (size_t)i % 5000);
        CHECK(p != NULL);
        free(p);
    }
    /* Lift the limit (back to the hard limit, which was left alone): large requests work again. */
    CHECK(setrlimit(RLIMIT_AS, &old) == 0);
    errno = 0;
    void *big = malloc(512 * MiB);
    CHECKF(big != NULL, "malloc(512 MiB) after lifting the limit failed: errno %d", errno);
    if (big)
        memset(big, 1, 512 * MiB);
    free(big);
    node *again = fill_upto(H_MALLOC, 8 * MiB, 64);
    CHECK(drain(again, &bad) == 64);
    printf("exhaust: RLIMIT_AS %zu MiB, %zu MiB handed out in the first fills\n", limit / MiB, first_total / MiB);
    return bsl_test_end();
}

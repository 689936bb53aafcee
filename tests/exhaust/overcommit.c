/* The kernel's overcommit policy decides a request that could never be backed. With
 * vm.overcommit_memory=0 (heuristic) the kernel refuses a single private writable mapping larger
 * than RAM + swap, and glibc's malloc then returns NULL with ENOMEM; a program that probes with a
 * huge malloc must get that too, not a block it gets OOM-killed for when it touches it. With mode 2
 * (strict) the limit is what is left below CommitLimit. Mode 1 (always overcommit): nothing to
 * check, the test is skipped (exit 77).
 *
 * Each kind of request beyond the limit fails cleanly (NULL + ENOMEM, posix_memalign returns
 * ENOMEM, realloc keeps the old block), and requests the kernel accepts still work.
 * No RLIMIT_AS here: the refusal must come from the overcommit policy. */
#include "bsl_test.h"

#include <malloc.h>

#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* A /proc/meminfo field in bytes, 0 when missing. */
static size_t meminfo(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    size_t kb = 0, n = strlen(key);
    while (f && fgets(line, sizeof(line), f))
        if (!strncmp(line, key, n) && line[n] == ':') {
            kb = (size_t)strtoull(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return kb * 1024;
}

int main(void)
{
    bsl_test_begin("overcommit");
    long mode = read_long("/proc/sys/vm/overcommit_memory");
    size_t ram = meminfo("MemTotal"), swap = meminfo("SwapTotal");
    size_t limit, commit = meminfo("CommitLimit"), committed = meminfo("Committed_AS");
    if (mode == 0)
        limit = ram + swap;
    else if (mode == 2)
        limit = commit > committed ? commit - committed : 0;
    else {
        printf("SKIP: vm.overcommit_memory=%ld (the kernel accepts every mapping)\n", mode);
        return 77;
    }
    CHECK(ram > 0);
    /* beyond what the kernel would ever back, rounded to 2 MiB sections */
    size_t beyond = (limit + 2 * GiB) & ~(2 * MiB - 1);
    printf("vm.overcommit_memory=%ld, RAM %zu MiB, swap %zu MiB, limit %zu MiB: asking for %zu MiB\n", mode,
           ram / MiB, swap / MiB, limit / MiB, beyond / MiB);
    size_t sizes[] = {beyond, beyond + beyond / 2, (size_t)1 << 40};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t n = sizes[i];
        errno = 0;
        void *p = malloc(n);
        CHECKF(p == NULL && errno == ENOMEM, "malloc(%zu MiB)=%p errno=%d", n / MiB, p, errno);
        errno = 0;
        p = calloc(1, n);
        CHECKF(p == NULL && errno == ENOMEM, "calloc(1, %zu MiB)=%p errno=%d", n / MiB, p, errno);
        errno = 0;
        p = memalign(2 * MiB, n);
        CHECKF(p == NULL && errno == ENOMEM, "memalign(2 MiB, %zu MiB)=%p errno=%d", n / MiB, p, errno);
        errno = 0;
        p = aligned_alloc(64 * MiB, n);
        CHECKF(p == NULL && errno == ENOMEM, "aligned_alloc(64 MiB, %zu MiB)=%p errno=%d", n / MiB, p, errno);
        p = (void *)0x1;
        int rc = posix_memalign(&p, 4096, n);
        CHECKF(rc == ENOMEM && p == (void *)0x1, "posix_memalign(4096, %zu MiB)=%d p=%p", n / MiB, rc, p);
        errno = 0;
        p = bsl_zone_malloc(BSL_ZONE_HUGE, n);
        CHECKF(p == NULL && errno == ENOMEM, "bsl_zone_malloc(HUGE, %zu MiB)=%p errno=%d", n / MiB, p, errno);
        /* realloc of a huge block (mremap in place or into a new mapping) and of a small one */
        unsigned char *h = malloc(8 * MiB);
        CHECK(h != NULL);
        memset(h, 0x5c, 8 * MiB);
        errno = 0;
        p = realloc(h, n);
        CHECKF(p == NULL && errno == ENOMEM, "realloc(8 MiB -> %zu MiB)=%p errno=%d", n / MiB, p, errno);
        CHECK(h[0] == 0x5c && h[8 * MiB - 1] == 0x5c && bsl_owns(h) == 1);
        free(h);
        unsigned char *s = malloc(100);
        CHECK(s != NULL);
        memset(s, 0x3a, 100);
        errno = 0;
        p = realloc(s, n);
        CHECKF(p == NULL && errno == ENOMEM, "realloc(100 -> %zu MiB)=%p errno=%d", n / MiB, p, errno);
        CHECK(s[99] == 0x3a && bsl_owns(s) == 1);
        free(s);
    }
    /* What the kernel accepts still works: a block of a quarter of the limit (not touched beyond
     * its first and last pages), and many touched huge blocks of 16..64 MiB. */
    if (limit / 4 > 8 * MiB) {
        unsigned char *q = malloc(limit / 4);
        CHECKF(q != NULL, "malloc(%zu MiB) (a quarter of the limit) failed", limit / 4 / MiB);
        if (q) {
            q[0] = 1;
            q[limit / 4 - 1] = 2;
            free(q);
        }
    }
    for (int i = 0; i < 32; i++) {
        size_t n = (size_t)(16 + (i % 4) * 16) * MiB;
        unsigned char *b = i & 1 ? calloc(1, n) : malloc(n);
        CHECKF(b != NULL, "%s(%zu MiB) failed", i & 1 ? "calloc" : "malloc", n / MiB);
        if (b) {
            for (size_t off = 0; off < n; off += 1 * MiB)
                b[off] = (unsigned char)i;
            free(b);
        }
    }
    CHECK(bsl_check_heap() == 0);
    return bsl_test_end();
}

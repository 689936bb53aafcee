/* The aligned allocators at every alignment (the scenario of gperftools' memalign_unittest).
 *
 * For every power-of-two alignment from 1 (sizeof(void *) for posix_memalign) to 1 MiB and sizes
 * 0 .. 64 one by one (every eighth from page alignments up) and then growing by half up to 512 KiB (256 KiB from 64 KiB alignments up), and
 * 3 MiB at alignments 1, 4 KiB and 1 MiB, memalign and posix_memalign return
 * an aligned block whose every byte can be written (each is filled with its own pattern and
 * checked after its neighbours were filled too, so two blocks that overlap are caught). posix_memalign
 * rejects alignment 0, 1 (below sizeof(void *)), non powers of two and SIZE_MAX/2+1 with EINVAL or
 * ENOMEM and leaves *memptr alone; huge sizes give ENOMEM. valloc and pvalloc are page-aligned;
 * pvalloc(0) and valloc(0) can be freed; pvalloc rounds up to a page. */
#include "conf.h"

#include <malloc.h>

/* 0 .. 64 one by one, then by half again: every small class, and its neighbours further up. */
static size_t next_size(size_t s) { return s < 64 ? s + 1 : s + s / 2 + 1; }

static void fill_check_pair(size_t align, size_t size, int posix)
{
    unsigned char *a = NULL, *b = NULL;
    if (posix) {
        CHECKF(posix_memalign((void **)&a, align, size) == 0, "posix_memalign(%zu, %zu)", align, size);
        CHECKF(posix_memalign((void **)&b, align, size) == 0, "posix_memalign(%zu, %zu)", align, size);
    } else {
        a = memalign(align, size);
        b = memalign(align, size);
    }
    CHECKF(a && b, "%s(%zu, %zu) failed", posix ? "posix_memalign" : "memalign", align, size);
    if (!a || !b)
        return;
    CHECKF(((uintptr_t)a & (align - 1)) == 0 && ((uintptr_t)b & (align - 1)) == 0, "%s(%zu, %zu): %p %p misaligned",
           posix ? "posix_memalign" : "memalign", align, size, (void *)a, (void *)b);
    bsl_fill(a, size, (uint64_t)(uintptr_t)a);
    bsl_fill(b, size, (uint64_t)(uintptr_t)b);
    CHECKF(bsl_check(a, size, (uint64_t)(uintptr_t)a) == (size_t)-1 && bsl_check(b, size, (uint64_t)(uintptr_t)b) == (size_t)-1,
           "align %zu size %zu: blocks %p and %p overlap", align, size, (void *)a, (void *)b);
    free(a);
    free(b);
}

int main(void)
{
    conf_begin("gperf_memalign", 60);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t a = 1; a <= 1 * MiB; a *= 2)
        for (size_t s = 0; s <= 512 * KiB; s = next_size(s)) {
            if (a >= 4 * KiB && s < 64 && s % 8 != 1)
                continue; /* page alignments: a few small sizes are enough */
            if (a >= 64 * KiB && s > 256 * KiB)
                break;
            fill_check_pair(a, s, 0);
            if (a >= sizeof(void *))
                fill_check_pair(a, s, 1);
            if (next_size(s) > 512 * KiB && (a == 1 || a == 4 * KiB)) { /* and a huge block */
                fill_check_pair(a, 3 * MiB + 5, 0);
                if (a >= sizeof(void *))
                    fill_check_pair(a, 3 * MiB + 5, 1);
            }
        }

    fill_check_pair(1 * MiB, 3 * MiB + 5, 0); /* a huge block at the largest alignment */
    fill_check_pair(1 * MiB, 3 * MiB + 5, 1);

    void *sentinel = &page, *p = sentinel;
    size_t bad[] = {0, 1, sizeof(void *) / 2, sizeof(void *) + 1, 3 * sizeof(void *), 4097, SIZE_MAX / 2 + 2};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        p = sentinel;
        int rc = posix_memalign(&p, conf_size(bad[i]), 10);
        CHECKF(rc == EINVAL && p == sentinel, "posix_memalign(%zu, 10) = %d", bad[i], rc);
    }
    p = sentinel;
    int rc = posix_memalign(&p, conf_size(SIZE_MAX / 2 + 1), 10);
    CHECKF((rc == EINVAL || rc == ENOMEM) && p == sentinel, "posix_memalign(SIZE_MAX/2+1, 10) = %d", rc);
    p = sentinel;
    rc = posix_memalign(&p, 64, conf_size(SIZE_MAX - 100));
    CHECKF(rc == ENOMEM && p == sentinel, "posix_memalign(64, SIZE_MAX-100) = %d", rc);

    for (size_t s = 0; s <= 3 * MiB; s = next_size(s) * 2) {
        unsigned char *v = valloc(s);
        CHECKF(v && ((uintptr_t)v & (page - 1)) == 0, "valloc(%zu) = %p", s, (void *)v);
        if (v && s)
            memset(v, 1, s);
        free(v);
        size_t rounded = s ? (s + page - 1) / page * page : page;
        v = pvalloc(s);
        CHECKF(v && ((uintptr_t)v & (page - 1)) == 0, "pvalloc(%zu) = %p", s, (void *)v);
        if (v)
            memset(v, 2, rounded); /* pvalloc gives whole pages */
        free(v);
    }
    return conf_end();
}

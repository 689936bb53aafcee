/* The HUGE zone's cache of freed mappings (src/zones/huge.c): a request is served with the resident
 * pages of freed blocks (a bigger cached extent split, smaller ones moved in by mremap) instead of
 * faulting fresh pages in; every live block stays memory of its own; calloc reads as zero whatever
 * it reused; realloc of a block gathered from several extents keeps its contents; the cache
 * empties with malloc_trim(0). */
#include "bsl_test.h"

#include <malloc.h>
#include <sys/resource.h>

#define MiB ((size_t)1 << 20)
#define PAGE 4096

static long minflt(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_minflt;
}

/* One word per page: the block's tag and the page's index, so pages that moved keep their value. */
static void tag_pages(unsigned char *p, size_t n, uint64_t tag)
{
    for (size_t off = 0; off < n; off += PAGE)
        *(uint64_t *)(p + off) = tag * 1000003 + off / PAGE;
}

static size_t check_pages(const unsigned char *p, size_t n, uint64_t tag)
{
    for (size_t off = 0; off < n; off += PAGE)
        if (*(const uint64_t *)(p + off) != tag * 1000003 + off / PAGE)
            return off;
    return (size_t)-1;
}

static size_t first_nonzero_page(const unsigned char *p, size_t n)
{
    for (size_t off = 0; off < n; off += PAGE)
        if (*(const uint64_t *)(p + off) || p[off + PAGE - 1])
            return off;
    return (size_t)-1;
}

/* Freed 20 + 12 MiB, touched: a 28 MiB request takes the 20 MiB block and the front of the 12 MiB
 * one, and writing all of it faults (almost) nothing in; the rest of the 12 MiB one serves next. */
static void test_reuse_faults(void)
{
    malloc_trim(0);
    unsigned char *a = malloc(20 * MiB), *b = malloc(12 * MiB);
    CHECK(a && b);
    memset(a, 1, 20 * MiB);
    memset(b, 2, 12 * MiB);
    free(a);
    free(b);
    long f0 = minflt();
    unsigned char *c = malloc(28 * MiB);
    CHECK(c != NULL);
    memset(c, 3, 28 * MiB);
    long faults = minflt() - f0;
    CHECKF(faults < (long)(28 * MiB / PAGE / 8), "28 MiB from 32 MiB of freed resident blocks: %ld page faults", faults);
    f0 = minflt();
    unsigned char *d = malloc(4 * MiB + 1);
    CHECK(d != NULL);
    memset(d, 4, 4 * MiB + 1);
    faults = minflt() - f0;
    CHECKF(faults < (long)(6 * MiB / PAGE / 2), "6 MiB after 4 MiB left resident: %ld page faults", faults);
    for (size_t off = 0; off < 28 * MiB; off += PAGE)
        if (c[off] != 3 || c[off + PAGE - 1] != 3) {
            CHECKF(0, "gathered block overwritten at %zu", off);
            break;
        }
    free(c);
    free(d);
    malloc_trim(0);
}

/* Random churn over 8 slots of 4.5-30 MiB: malloc, calloc, realloc up and down, free; every page
 * of every live block tagged and checked after each step. */
static void test_churn(void)
{
    enum { SLOTS = 8, STEPS = 150 };
    unsigned char *p[SLOTS] = {0};
    size_t n[SLOTS] = {0};
    uint64_t tag[SLOTS] = {0};
    bsl_rng r;
    bsl_rng_seed(&r, 13);
    for (int s = 0; s < STEPS; s++) {
        int i = (int)bsl_rand_below(&r, SLOTS);
        size_t sz = 4 * MiB + MiB / 2 + (size_t)bsl_rand_below(&r, 26 * MiB);
        unsigned op = (unsigned)bsl_rand_below(&r, 8);
        if (p[i] && op < 2) { /* realloc: contents kept up to the smaller size */
            unsigned char *q = realloc(p[i], sz);
            CHECKF(q != NULL, "realloc(%zu -> %zu) failed", n[i], sz);
            if (!q)
                continue;
            size_t keep = n[i] < sz ? n[i] : sz;
            size_t bad = check_pages(q, keep, tag[i]);
            CHECKF(bad == (size_t)-1, "step %d: realloc %zu -> %zu lost page at %zu", s, n[i], sz, bad);
            p[i] = q;
            n[i] = sz;
            tag[i] = (uint64_t)s + 1;
            tag_pages(q, sz, tag[i]);
        } else {
            free(p[i]);
            if (op < 4) {
                p[i] = calloc(1, sz);
                CHECK(p[i] != NULL);
                size_t nz = p[i] ? first_nonzero_page(p[i], sz) : (size_t)-1;
                CHECKF(nz == (size_t)-1, "step %d: calloc(%zu) not zero at page %zu", s, sz, nz);
            } else {
                p[i] = malloc(sz);
                CHECK(p[i] != NULL);
            }
            n[i] = sz;
            tag[i] = (uint64_t)s + 1;
            if (p[i]) {
                CHECKF(malloc_usable_size(p[i]) >= sz, "usable %zu < %zu", malloc_usable_size(p[i]), sz);
                CHECK(bsl_owns(p[i]) == 1);
                tag_pages(p[i], sz, tag[i]);
            }
        }
        for (int j = 0; j < SLOTS; j++) {
            if (!p[j])
                continue;
            size_t bad = check_pages(p[j], n[j], tag[j]);
            if (bad != (size_t)-1) {
                CHECKF(0, "step %d: slot %d (%zu bytes at %p) page at %zu overwritten", s, j, n[j], (void *)p[j], bad);
                return;
            }
        }
    }
    for (int j = 0; j < SLOTS; j++)
        free(p[j]);
    malloc_trim(0);
    bsl_stats_t st;
    CHECK(bsl_stats_get(&st) == 0);
    CHECKF(st.huge_bytes == 0, "huge bytes %zu after freeing everything", st.huge_bytes);
}

int main(void)
{
    bsl_test_begin("huge_reuse");
    test_reuse_faults();
    test_churn();
    return bsl_test_end();
}

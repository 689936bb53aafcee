/* Slab layer: size classes (coverage, waste <= 25 %), every class's objects (alignment, usable
 * size, distinctness, slab membership), bulk alloc/free bookkeeping, empty slabs returned. */
#include "slab/pcp.h"
#include "buddyslab.h"
#include "bsl_test.h"

#include <malloc.h>
#include <string.h>

int main(void)
{
    bsl_test_begin("test_slab");
    /* Classes: strictly increasing, 16-byte multiples, and slab_class_of picks the tightest. */
    for (unsigned c = 1; c < SLAB_NR_CLASSES; c++)
        CHECK(slab_class_size[c] > slab_class_size[c - 1] && slab_class_size[c] % 16 == 0);
    CHECK(slab_class_size[SLAB_NR_CLASSES - 1] == SLAB_MAX_SIZE);
    for (size_t n = 0; n <= SLAB_MAX_SIZE; n++) {
        unsigned c = slab_class_of(n);
        CHECK(c < SLAB_NR_CLASSES);
        CHECK(slab_class_size[c] >= n);
        CHECK(c == 0 || slab_class_size[c - 1] < n);
        /* Waste under 25 %, except below 16 bytes of slack, which malloc's 16-byte alignment
         * (max_align_t) forces on any allocator (17 B -> 32 B). */
        CHECK(n == 0 || (slab_class_size[c] - n) * 4 < slab_class_size[c] || slab_class_size[c] - n < 16);
    }
    /* Every class through malloc: usable size is the class size, alignment 16 (and natural for
     * powers of two up to a page), all objects distinct and inside a slab of their class. */
    for (unsigned c = 0; c < SLAB_NR_CLASSES; c++) {
        size_t size = slab_class_size[c];
        enum { N = 300 };
        static void *p[N];
        for (int i = 0; i < N; i++) {
            p[i] = malloc(size);
            CHECK(p[i] != NULL);
            CHECK(((uintptr_t)p[i] & 15) == 0);
            if ((size & (size - 1)) == 0 && size <= PAGE_SIZE)
                CHECK(((uintptr_t)p[i] & (size - 1)) == 0);
            CHECK(malloc_usable_size(p[i]) == size);
            struct page *pg = virt_to_page(p[i]);
            CHECK(pg && (pg->flags & PG_SLAB) && pg->size_class == c);
            /* free's fast path finds the offset by masking (slab_offset): on every frame of a
             * multi-frame slab it must be the offset from the slab's first byte */
            CHECK(slab_offset(p[i], pg) == (uint32_t)((char *)p[i] - (char *)slab_base(pg->head)));
            CHECK(slab_offset(p[i], pg) % size == 0);
            memset(p[i], (int)(i & 0xff), size);
        }
        for (int i = 0; i < N; i++) {
            const unsigned char *b = p[i];
            CHECK(b[0] == (i & 0xff) && b[size - 1] == (i & 0xff)); /* no two objects overlap */
        }
        for (int i = 0; i < N; i++)
            free(p[i]);
    }
    CHECK(slab_check() == 0);

    /* Bulk interface on the LOW32 zone (no per-CPU cache in front of it). */
    enum { M = 2000 };
    static void *objs[M];
    unsigned c = slab_class_of(200);
    struct kmem_cache *kc = &kmem_caches[ZONE_LOW32][c];
    size_t inuse0 = kc->nr_inuse;
    unsigned got = 0;
    while (got < M) {
        unsigned n = slab_alloc_bulk(ZONE_LOW32, c, objs + got, M - got > 37 ? 37 : M - got, 0);
        CHECK(n > 0);
        got += n;
    }
    CHECK(kc->nr_inuse == inuse0 + M);
    for (int i = 0; i < M; i++) {
        CHECK((uintptr_t)objs[i] + 256 <= ((uintptr_t)1 << 32));
        CHECK(bsl_zone_of(objs[i]) == BSL_ZONE_LOW32);
    }
    size_t slabs_full = kc->nr_slabs;
    CHECK(slabs_full >= M / kc->objs_per_slab);
    slab_free_bulk(objs, M);
    CHECK(kc->nr_inuse == inuse0);
    CHECK(kc->nr_slabs <= 1 + (inuse0 ? slabs_full : 0)); /* empty slabs went back, one spare kept */
    CHECK(slab_check() == 0);
    CHECK(buddy_check() == 0);
    return bsl_test_end();
}

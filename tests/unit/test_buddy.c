/* Buddy allocator invariants after random sequences: split/coalesce, exact sizes, no overlap,
 * in-place grow/shrink, zeroed blocks, and every frame accounted for once everything is freed. */
#include "buddy/buddy.h"
#include "buddyslab.h"
#include "bsl_test.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 512
struct blk {
    struct page *pg;
    size_t npages;
    unsigned char tag;
};
static struct blk blk[SLOTS];

static void fill(struct blk *b)
{
    unsigned char *p = page_address(b->pg);
    for (size_t i = 0; i < b->npages; i++) { /* first and last byte of each frame */
        p[i * PAGE_SIZE] = b->tag;
        p[i * PAGE_SIZE + PAGE_SIZE - 1] = b->tag;
    }
}

static void verify(const struct blk *b)
{
    const unsigned char *p = page_address(b->pg);
    for (size_t i = 0; i < b->npages; i++) {
        CHECK(p[i * PAGE_SIZE] == b->tag);
        CHECK(p[i * PAGE_SIZE + PAGE_SIZE - 1] == b->tag);
    }
}

static size_t free_pages_total(int zone)
{
    size_t n = 0;
    for (unsigned s = 0; s < buddy_nr_shards; s++)
        n += buddy_shards[s][zone].nr_free_pages;
    return n;
}
static size_t managed_total(int zone)
{
    size_t n = 0;
    for (unsigned s = 0; s < buddy_nr_shards; s++)
        n += buddy_shards[s][zone].nr_pages;
    return n;
}

/* The sequence the tests always used (xorshift64* from this state). */
static bsl_rng rng = {0x9E3779B97F4A7C15ULL};

int main(void)
{
    bsl_test_begin("test_buddy"); /* initialises the allocator */
    /* No purging on a timer here: the purge checks below must find the dirty frames. */
    CHECK(bsl_option_set("decay_ms", "-1") == 0);
    size_t base_free = free_pages_total(ZONE_NORMAL), base_managed = managed_total(ZONE_NORMAL);
    size_t base_used = base_managed - base_free; /* frames used by the allocator's own startup */

    /* Exactness: a 5-frame request takes 5 frames; the other 3 of its order-3 block stay free. */
    int zeroed;
    struct page *pg = buddy_alloc(ZONE_NORMAL, 5, 0, 0, &zeroed);
    CHECK(pg != NULL);
    size_t used = managed_total(ZONE_NORMAL) - free_pages_total(ZONE_NORMAL);
    CHECK(used == base_used + 5);
    CHECK(((uintptr_t)page_address(pg) & (PAGE_SIZE - 1)) == 0);
    buddy_free(pg, 5);
    CHECK(buddy_check() == 0);

    /* Alignment: min_order 6 gives a 256 KiB-aligned block even for one frame. */
    pg = buddy_alloc(ZONE_NORMAL, 1, 6, 0, &zeroed);
    CHECK(pg && ((uintptr_t)page_address(pg) & ((PAGE_SIZE << 6) - 1)) == 0);
    buddy_free(pg, 1);

    /* Random sequence: allocate, free, grow and shrink in place, with contents checked. */
    unsigned long ops = 0, grown = 0, shrunk = 0;
    for (int round = 0; round < 20000; round++) {
        struct blk *b = &blk[bsl_rand(&rng) % SLOTS];
        if (b->pg) {
            verify(b);
            unsigned long r = bsl_rand(&rng) % 8;
            if (r == 0 && b->npages < MAX_ORDER_PAGES) {
                size_t want = b->npages + 1 + bsl_rand(&rng) % 16;
                if (want > MAX_ORDER_PAGES)
                    want = MAX_ORDER_PAGES;
                if (buddy_extend(b->pg, b->npages, want)) {
                    b->npages = want;
                    fill(b);
                    grown++;
                }
            } else if (r == 1 && b->npages > 1) {
                size_t want = 1 + bsl_rand(&rng) % (b->npages - 1);
                buddy_shrink(b->pg, b->npages, want);
                b->npages = want;
                shrunk++;
            } else {
                buddy_free(b->pg, b->npages);
                b->pg = NULL;
            }
        } else {
            size_t n = (bsl_rand(&rng) % 4 == 0) ? 1 + bsl_rand(&rng) % MAX_ORDER_PAGES : 1 + bsl_rand(&rng) % 12;
            b->pg = buddy_alloc(ZONE_NORMAL, n, 0, (unsigned)bsl_rand(&rng), &zeroed);
            CHECK(b->pg != NULL);
            if (zeroed) { /* a clean block must read as zero */
                const unsigned char *p = page_address(b->pg);
                CHECK(p[0] == 0 && p[n * PAGE_SIZE - 1] == 0);
            }
            b->npages = n;
            b->tag = (unsigned char)(1 + bsl_rand(&rng) % 255);
            fill(b);
        }
        ops++;
        if (round % 2000 == 0)
            CHECK(buddy_check() == 0);
    }
    CHECK(grown > 0 && shrunk > 0);
    for (int i = 0; i < SLOTS; i++) { /* no overlap: every survivor still holds its own tag */
        if (blk[i].pg)
            verify(&blk[i]);
    }
    for (int i = 0; i < SLOTS; i++)
        if (blk[i].pg) {
            buddy_free(blk[i].pg, blk[i].npages);
            blk[i].pg = NULL;
        }
    CHECK(buddy_check() == 0);
    /* Everything accounted for: all frames but the startup ones are free again... */
    CHECK(managed_total(ZONE_NORMAL) - free_pages_total(ZONE_NORMAL) == base_used);
    /* ...and coalesced: no free block below MAX_ORDER except around the startup frames. */
    size_t small_blocks = 0;
    for (unsigned s = 0; s < buddy_nr_shards; s++)
        for (int o = 0; o < MAX_ORDER; o++)
            small_blocks += buddy_shards[s][ZONE_NORMAL].free_area[o].nr_free;
    CHECK(small_blocks <= (MAX_ORDER + 1) * (buddy_nr_shards * 2 + base_used));

    /* Purge: every dirty frame goes back to the OS and the block reads zero afterwards. */
    size_t purged = buddy_purge(0);
    CHECK(purged > 0);
    for (unsigned s = 0; s < buddy_nr_shards; s++)
        CHECK(buddy_shards[s][ZONE_NORMAL].nr_dirty_pages == 0);
    pg = buddy_alloc(ZONE_NORMAL, 64, 0, 0, &zeroed);
    CHECK(pg && zeroed);
    const unsigned char *p = page_address(pg);
    for (size_t i = 0; i < 64 * PAGE_SIZE; i += 512)
        CHECK(p[i] == 0);
    buddy_free(pg, 64);

    /* Decay reaches idle frames next to a busy buffer: a block freed long ago that a loop splits
     * (a 16-frame buffer taken from it) and merges again (the buffer freed) keeps its old stamp,
     * so a purge of blocks older than 100 ms takes it. With the merge stamped by its newest part
     * the pageblock's frames stayed resident however long they were idle. */
    buddy_purge(0);
    struct page *big = buddy_alloc(ZONE_NORMAL, MAX_ORDER_PAGES, 0, 0, &zeroed);
    CHECK(big != NULL);
    memset(page_address(big), 1, MAX_ORDER_PAGES * PAGE_SIZE);
    char *lo = page_address(big), *hi = lo + MAX_ORDER_PAGES * PAGE_SIZE;
    buddy_free(big, MAX_ORDER_PAGES); /* one dirty pageblock, the only dirty block */
    usleep(200 * 1000);
    for (int i = 0; i < 10; i++) {
        struct page *b = buddy_alloc(ZONE_NORMAL, 16, 0, 0, &zeroed);
        CHECK(b && !zeroed && (char *)page_address(b) >= lo && (char *)page_address(b) < hi); /* from the idle block */
        buddy_free(b, 16);
    }
    buddy_purge(100); /* at once: the block freed last is a few microseconds old */
    size_t dirty_left = 0;
    for (unsigned s = 0; s < buddy_nr_shards; s++)
        dirty_left += buddy_shards[s][ZONE_NORMAL].nr_dirty_pages;
    CHECK(dirty_left == 0);
    CHECK(buddy_check() == 0);

    /* Over MAX_ORDER is not the buddy's job. */
    CHECK(buddy_alloc(ZONE_NORMAL, MAX_ORDER_PAGES + 1, 0, 0, &zeroed) == NULL);
    CHECK(buddy_check() == 0);
    printf("buddy: %lu operations, %lu grown in place, %lu shrunk in place\n", ops, grown, shrunk);
    return bsl_test_end();
}

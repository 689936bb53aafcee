/* Fuzz target: bytes -> a sequence of allocation calls on buddyslab, with a pattern in every block
 * checked before it is reallocated or freed, and bsl_check_heap() (zones, buddy lists, slabs,
 * transfer caches) every 256 operations, on request, and at the end of every input.
 *
 * Built two ways (tests/fuzz/meson.build): with clang -fsanitize=fuzzer (libFuzzer's main; the
 * allocator's own sources are compiled into the same binary with coverage instrumentation, so
 * libFuzzer is guided by the allocator's branches, and buddyslab is the malloc of the whole
 * process, libFuzzer included), and with the project compiler against libbuddyslab.a plus
 * fuzz_replay.c's main (replays files, or runs seeded random inputs, without clang).
 *
 * Input format: a stream of operations; each takes an opcode byte, a slot byte (64 slots) and
 * 3 size bytes (fewer at the end of the input are read as zero). Any failed check aborts (a crash
 * for libFuzzer, which saves the input). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buddyslab.h"

void free_sized(void *p, size_t size); /* C23, exported by buddyslab; glibc 2.36 does not declare it */

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define NSLOTS 64
#define EDGE (4 * KiB)           /* patterns cover the first and the last EDGE bytes of a block */
#define LIVE_MAX (96 * MiB)      /* no new block while this much is live */
#define HUGE_PER_INPUT 6         /* huge (mmap) blocks per input, to bound the time per input */

/* The pattern loops are the harness's own work: no coverage instrumentation there (its comparison
 * tracing would take most of the time), so libFuzzer spends its time in the allocator. */
#if defined(__clang__)
#define NOCOV __attribute__((no_sanitize("coverage"), noinline))
#else
#define NOCOV
#endif

typedef struct slot {
    unsigned char *p;
    size_t n;
    uint32_t seed;
    int zone; /* -1: any (malloc & co) */
} slot;

static slot slots[NSLOTS];
static size_t live_bytes;
static unsigned huge_count;
static unsigned long ops_done;

static __attribute__((noreturn)) void fail(const char *what, const void *p, size_t n, size_t x)
{
    char buf[256];
    int len = snprintf(buf, sizeof(buf), "fuzz_alloc: CHECK failed: %s (block %p, %zu bytes, %zu)\n", what, p, n, x);
    if (len > 0)
        (void)!write(2, buf, (size_t)len);
    abort();
}

#define REQUIRE(cond, what, p, n, x)                                                                              \
    do {                                                                                                           \
        if (!(cond))                                                                                               \
            fail(what, p, n, x);                                                                                   \
    } while (0)

/* Byte i of a block: depends on the block's seed and on i (so a prefix checks with a smaller n). */
static inline unsigned char pat(uint32_t seed, size_t i)
{
    uint32_t x = seed ^ (uint32_t)(i >> 3) * 0x9E3779B1u;
    x ^= x >> 15;
    return (unsigned char)(x >> ((i & 3) * 8));
}

static NOCOV void fill(unsigned char *p, size_t n, uint32_t seed)
{
    size_t head = n < EDGE ? n : EDGE;
    for (size_t i = 0; i < head; i++)
        p[i] = pat(seed, i);
    for (size_t i = n > 2 * EDGE ? n - EDGE : head; i < n; i++)
        p[i] = pat(seed, i);
}

/* Check the pattern of a block filled with (n_filled, seed), over its first `upto` bytes. */
static NOCOV void check(const unsigned char *p, size_t n_filled, size_t upto, uint32_t seed)
{
    size_t head = n_filled < EDGE ? n_filled : EDGE;
    size_t tail0 = n_filled > 2 * EDGE ? n_filled - EDGE : head;
    for (size_t i = 0; i < head && i < upto; i++)
        REQUIRE(p[i] == pat(seed, i), "block contents changed (head)", p, n_filled, i);
    for (size_t i = tail0; i < n_filled && i < upto; i++)
        REQUIRE(p[i] == pat(seed, i), "block contents changed (tail)", p, n_filled, i);
}

/* calloc: the edges in full, and one word in every 512 bytes in between. */
static NOCOV void zeroed(const unsigned char *p, size_t n)
{
    size_t head = n < EDGE ? n : EDGE;
    for (size_t i = 0; i < head; i++)
        REQUIRE(p[i] == 0, "calloc block not zeroed", p, n, i);
    for (size_t i = n > 2 * EDGE ? n - EDGE : head; i < n; i++)
        REQUIRE(p[i] == 0, "calloc block not zeroed", p, n, i);
    for (size_t i = head; i + 8 <= n; i += 512)
        REQUIRE(p[i] == 0 && p[i + 7] == 0, "calloc block not zeroed", p, n, i);
}

static void release(slot *s)
{
    if (!s->p)
        return;
    check(s->p, s->n, s->n, s->seed);
    REQUIRE(bsl_owns(s->p) == 1, "live block not owned", s->p, s->n, 0);
    if (s->n & 1)
        free_sized(s->p, s->n);
    else
        free(s->p);
    live_bytes -= s->n;
    s->p = NULL;
}

/* A size from 3 bytes: small sizes most often, class boundaries, large, around the 4 MiB
 * buddy/huge boundary, huge. */
static size_t decode_size(const uint8_t b[3])
{
    static const uint32_t classes[] = {16,    32,    48,    64,    80,    96,    112,   128,   160,   192,
                                       224,   256,   320,   384,   448,   512,   640,   768,   896,   1024,
                                       1280,  1536,  1792,  2048,  2560,  3072,  3584,  4096,  5120,  6144,
                                       7168,  8192,  10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768};
    unsigned sel = b[0];
    unsigned v = (unsigned)b[1] << 8 | b[2];
    if (sel == 0)
        return 0;
    if (sel < 128)
        return 1 + v % 1024;
    if (sel < 176) /* a class size, one below, or one above */
        return classes[v % 40] + (size_t)(v / 40 % 3) - 1;
    if (sel < 200)
        return 1 + v % (32 * KiB);
    if (sel < 236)
        return 32 * KiB + 1 + ((size_t)v * 37) % (1 * MiB);
    if (sel < 248) /* page multiples up to the largest buddy block, and just beyond */
        return (size_t)(1 + v % 1025) * 4096 - (v & 1);
    return 4 * MiB + ((size_t)v * 181) % (8 * MiB);
}

/* Bound the memory and the mmap work of one input: a block of n bytes, a mapping of its own? */
static int can_allocate_map(size_t n, int mapping)
{
    if (live_bytes + n > LIVE_MAX)
        return 0;
    if (mapping && ++huge_count > HUGE_PER_INPUT)
        return 0;
    return 1;
}

static int can_allocate(size_t n)
{
    return can_allocate_map(n, n > 4 * MiB);
}

static void got(slot *s, void *p, size_t n, uint32_t seed, int zone)
{
    s->p = p;
    s->n = n;
    s->seed = seed;
    s->zone = zone;
    live_bytes += n;
    REQUIRE(malloc_usable_size(p) >= n, "usable size below the requested size", p, n, malloc_usable_size(p));
    fill(p, n, seed);
}

static size_t pick_align(uint8_t b)
{
    return (size_t)1 << (3 + b % 18); /* 8 .. 1 MiB */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
#if defined(FUZZ_INPUT_OWNED)
    /* libFuzzer hands the target a heap copy of the input (new uint8_t[size]): 1 when the process's
     * malloc must be buddyslab (libFuzzer's own allocations go through it), 0 when it must not
     * (the ASan build, where buddyslab runs renamed beside ASan's malloc). */
    if (size)
        REQUIRE(bsl_owns(data) == FUZZ_INPUT_OWNED, "libFuzzer's input buffer: not the expected malloc", data, size,
                (size_t)bsl_owns(data));
#endif
    size_t pos = 0;
    huge_count = 0;
    uint32_t serial = 1;
    while (pos < size) {
        uint8_t op = data[pos], sl = pos + 1 < size ? data[pos + 1] : 0, b[3];
        for (int k = 0; k < 3; k++)
            b[k] = pos + 2 + (size_t)k < size ? data[pos + 2 + k] : 0;
        pos += 5;
        slot *s = &slots[sl % NSLOTS];
        size_t n = decode_size(b);
        uint32_t seed = serial++ * 0x85EBCA77u ^ (uint32_t)pos;
        void *p = NULL;
        ops_done++;
        switch (op % 16) {
        case 0: /* malloc */
        case 1:
            release(s);
            if (!can_allocate(n))
                break;
            p = malloc(n);
            REQUIRE(p != NULL, "malloc failed", p, n, 0);
            got(s, p, n, seed, -1);
            break;
        case 2: { /* calloc, sometimes overflowing */
            release(s);
            size_t nm = 1 + b[2] % 7, each = n / nm;
            if (b[0] == 255) {
                errno = 0;
                p = calloc(SIZE_MAX / (nm + 1) + 1, nm + 1); /* the product overflows */
                REQUIRE(p == NULL && errno == ENOMEM, "calloc overflow not rejected", p, nm, (size_t)errno);
                break;
            }
            if (!can_allocate(each * nm))
                break;
            p = calloc(nm, each);
            REQUIRE(p != NULL, "calloc failed", p, each * nm, 0);
            zeroed(p, each * nm);
            got(s, p, each * nm, seed, -1);
            break;
        }
        case 3: /* realloc (from NULL, to 0, grow, shrink, same) */
        case 4: {
            if (!s->p && !can_allocate(n))
                break;
            if (s->p && n > s->n && !can_allocate(n - s->n))
                break;
            if (s->p)
                check(s->p, s->n, s->n, s->seed);
            if (n == 0 && s->p) {
                p = realloc(s->p, 0); /* glibc: frees, returns NULL */
                REQUIRE(p == NULL, "realloc(p, 0) returned a block", p, 0, 0);
                live_bytes -= s->n;
                s->p = NULL;
                break;
            }
            p = realloc(s->p, n);
            REQUIRE(p != NULL || n == 0, "realloc failed", s->p, n, 0);
            if (!p)
                break;
            if (s->p) {
                check(p, s->n, n, s->seed); /* the common prefix is kept */
                live_bytes -= s->n;
                s->p = NULL;
            }
            got(s, p, n, seed, -1);
            break;
        }
        case 5: { /* memalign / aligned_alloc / posix_memalign */
            release(s);
            size_t al = pick_align(b[2] ^ sl);
            if (!can_allocate(n + al))
                break;
            int rc = 0;
            switch (sl % 3) {
            case 0:
                p = memalign(al, n);
                break;
            case 1:
                p = aligned_alloc(al, n);
                break;
            default:
                rc = posix_memalign(&p, al, n);
                REQUIRE(rc == 0, "posix_memalign failed", p, n, al);
                break;
            }
            REQUIRE(p != NULL, "aligned allocation failed", p, n, al);
            REQUIRE(((uintptr_t)p & (al - 1)) == 0, "block misaligned", p, n, al);
            got(s, p, n, seed, -1);
            break;
        }
        case 6: { /* bad alignments are rejected without side effects */
            void *q = (void *)0x1;
            size_t bad = (size_t)(b[1] | 1) * 3; /* odd and above 1: never a power of two */
            REQUIRE(posix_memalign(&q, bad, 16) == EINVAL && q == (void *)0x1, "bad alignment accepted", q, 16, bad);
            errno = 0;
            p = aligned_alloc(bad, 16);
            REQUIRE(p == NULL && errno == EINVAL, "aligned_alloc accepted a bad alignment", p, 16, bad);
            break;
        }
        case 7: /* free */
        case 8:
            release(s);
            break;
        case 9: { /* zones */
            release(s);
            int z = b[0] % 3;
            size_t m = z == BSL_ZONE_LOW32 && n > 4 * MiB ? n % (4 * MiB) : n; /* LOW32: up to 4 MiB */
            if (!can_allocate_map(m, m > 4 * MiB || z == BSL_ZONE_HUGE))
                break;
            p = bsl_zone_malloc((bsl_zone_id)z, m);
            REQUIRE(p != NULL, "bsl_zone_malloc failed", p, m, (size_t)z);
            int zo = bsl_zone_of(p);
            /* blocks above 4 MiB are direct mappings whatever the zone asked for */
            REQUIRE(zo == z || (m > 4 * MiB && zo >= 0), "block in the wrong zone", p, m, (size_t)zo);
            got(s, p, m, seed, z);
            break;
        }
        case 10: /* the slack up to malloc_usable_size() is the caller's too */
            if (s->p) {
                size_t us = malloc_usable_size(s->p);
                REQUIRE(us >= s->n, "usable size shrank", s->p, s->n, us);
                size_t extra = us - s->n < 256 ? us - s->n : 256;
                memset(s->p + s->n, 0x77, extra);
                check(s->p, s->n, s->n, s->seed);
            }
            break;
        case 11: /* reallocarray, with overflow */
            if (s->p && s->zone < 0) {
                errno = 0;
                p = reallocarray(s->p, SIZE_MAX / 2, 3);
                REQUIRE(p == NULL && errno == ENOMEM, "reallocarray overflow not rejected", p, 0, 0);
                check(s->p, s->n, s->n, s->seed);
            }
            break;
        case 12: /* valloc / pvalloc */
            release(s);
            if (!can_allocate(n + 4096))
                break;
            p = (b[2] & 1) ? valloc(n) : pvalloc(n);
            REQUIRE(p != NULL && ((uintptr_t)p & 4095) == 0, "valloc/pvalloc", p, n, 0);
            got(s, p, n, seed, -1);
            break;
        case 13: /* invariants */
            REQUIRE(bsl_check_heap() == 0, "bsl_check_heap", NULL, 0, ops_done);
            break;
        case 14: /* give memory back to the OS now and then */
            if (b[0] < 16)
                malloc_trim(0);
            break;
        default: /* ownership of every live block */
            for (int i = 0; i < NSLOTS; i++)
                if (slots[i].p)
                    REQUIRE(bsl_owns(slots[i].p) == 1, "live block not owned", slots[i].p, slots[i].n, (size_t)i);
            break;
        }
        if ((ops_done & 255) == 0)
            REQUIRE(bsl_check_heap() == 0, "bsl_check_heap", NULL, 0, ops_done);
    }
    for (int i = 0; i < NSLOTS; i++)
        release(&slots[i]);
    REQUIRE(live_bytes == 0, "live byte count", NULL, live_bytes, 0);
    REQUIRE(bsl_check_heap() == 0, "bsl_check_heap at the end of the input", NULL, 0, ops_done);
    return 0;
}

/* Multi-threaded mixed-lifetime stress for bench/run-macro (in the spirit of mimalloc-bench's
 * mstress, written anew): T threads, restarted every round, each allocating blocks whose sizes
 * are spread over powers of two (1 % of them 100x bigger, 0.1 % 1000x), keeping some for the
 * thread's whole life, most for a short while, and passing others to whichever thread picks them
 * up from a shared transfer array (so blocks are freed by another thread, often in a later round).
 * Every block is filled when allocated and checked when freed.
 *
 * Usage: bsl-mstress [threads [scale [rounds]]]   (defaults 2, 50, 10)
 * Prints one deterministic line ("mstress: ok ...") or exits 1 on a corrupted block. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TRANSFER 1000
static _Atomic(uint64_t *) transfer[TRANSFER];
static int scale = 50;
static atomic_long bad;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A block of n words: word 0 holds n, every other word n ^ index. */
static uint64_t *block_new(uint64_t *r)
{
    uint64_t n = 1 + (rnd(r) % 8 ? (1u << (rnd(r) % 8)) + rnd(r) % 16 : rnd(r) % 64);
    uint64_t c = rnd(r) % 1000;
    if (c == 0)
        n *= 1000; /* up to about 2 MiB */
    else if (c < 10)
        n *= 100;
    uint64_t *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "mstress: out of memory\n");
        exit(1);
    }
    p[0] = n;
    for (uint64_t i = 1; i < n; i++)
        p[i] = n ^ i;
    return p;
}

static void block_free(uint64_t *p)
{
    if (!p)
        return;
    uint64_t n = p[0];
    for (uint64_t i = 1; i < n; i += 1 + i / 8) /* a sample of the words: checks without dominating */
        if (p[i] != (n ^ i))
            atomic_fetch_add(&bad, 1);
    free(p);
}

struct arg {
    unsigned id, round;
};

static void *stress(void *a_)
{
    struct arg *a = a_;
    uint64_t r = 0x9e3779b97f4a7c15ull * (a->id + 1) + a->round * 7919 + 1;
    size_t nlive = (size_t)scale * 20, nretain = (size_t)scale * 5, steps = (size_t)scale * 1000;
    uint64_t **live = calloc(nlive, sizeof *live), **retain = calloc(nretain, sizeof *retain);
    size_t nret = 0;
    for (size_t s = 0; s < steps; s++) {
        uint64_t c = rnd(&r) % 100;
        if (c < 50) { /* short-lived: replace a random live block */
            size_t i = rnd(&r) % nlive;
            block_free(live[i]);
            live[i] = block_new(&r);
        } else if (c < 55 && nret < nretain) { /* lives as long as the thread */
            retain[nret++] = block_new(&r);
        } else if (c < 75) { /* hand a block to another thread (or a later round) */
            size_t i = rnd(&r) % nlive, t = rnd(&r) % TRANSFER;
            uint64_t *old = atomic_exchange(&transfer[t], live[i]);
            live[i] = old;
        } else { /* free a random live block */
            size_t i = rnd(&r) % nlive;
            block_free(live[i]);
            live[i] = NULL;
        }
    }
    for (size_t i = 0; i < nlive; i++)
        block_free(live[i]);
    for (size_t i = 0; i < nret; i++)
        block_free(retain[i]);
    free(live);
    free(retain);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned threads = argc > 1 ? (unsigned)atoi(argv[1]) : 2;
    scale = argc > 2 ? atoi(argv[2]) : 50;
    unsigned rounds = argc > 3 ? (unsigned)atoi(argv[3]) : 10;
    pthread_t *t = calloc(threads, sizeof *t);
    struct arg *args = calloc(threads, sizeof *args);
    for (unsigned round = 0; round < rounds; round++) {
        for (unsigned i = 0; i < threads; i++) {
            args[i] = (struct arg){i, round};
            pthread_create(&t[i], NULL, stress, &args[i]);
        }
        for (unsigned i = 0; i < threads; i++)
            pthread_join(t[i], NULL);
    }
    for (unsigned i = 0; i < TRANSFER; i++)
        block_free(atomic_exchange(&transfer[i], NULL));
    free(t);
    free(args);
    if (atomic_load(&bad)) {
        fprintf(stderr, "mstress: %ld corrupted words\n", atomic_load(&bad));
        return 1;
    }
    printf("mstress: ok, %u threads, scale %d, %u rounds\n", threads, scale, rounds);
    return 0;
}

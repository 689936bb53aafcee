/* A heap that lives through many kinds of operations keeps every block intact (in the spirit of
 * glibc malloc/tst-mallocstate, without the obsolete malloc_get_state/malloc_set_state).
 *
 * Tasks: blocks of 1..64 bytes (and a second set of 1..4096), each with a random pattern and
 * one pending action: free, realloc larger, realloc to the same size, realloc one byte smaller
 * (a 1-byte block then goes to realloc(p, 0): freed, NULL). The tasks run in a shuffled order,
 * interleaved with unrelated heap activity (a pool of 32 slots allocated and freed at random), and
 * after every single step the whole heap (every task and every pool block) is checked. A second
 * shuffled pass frees what is left. */
#include "conf.h"

#include <malloc.h>

enum { A_FREE, A_REALLOC, A_REALLOC_SAME, A_REALLOC_SMALLER, A_COUNT };
enum { MAXSZ = 64, NTASK = A_COUNT * MAXSZ, NPOOL = 32 };

struct alloc {
    unsigned char *data;
    size_t size;
    uint64_t seed;
};
struct task {
    struct alloc a;
    int action;
};

static struct task tasks[NTASK];
static struct alloc pool[NPOOL];
static bsl_rng rng;
static uint64_t pool_seed = 1000000;

static void check_alloc(const struct alloc *a, int idx)
{
    if (!a->data)
        return;
    size_t off = bsl_check(a->data, a->size, a->seed);
    CHECKF(off == (size_t)-1, "block %d (%p, %zu bytes) changed at byte %zu", idx, (void *)a->data, a->size, off);
}

static void full_check(void)
{
    for (int i = 0; i < NTASK; i++)
        check_alloc(&tasks[i].a, i);
    for (int i = 0; i < NPOOL; i++)
        check_alloc(&pool[i], 1000 + i);
}

static void shuffle(void)
{
    for (int i = 0; i < NTASK - 1; i++) {
        int j = i + (int)bsl_rand_below(&rng, (uint64_t)(NTASK - i));
        struct task t = tasks[i];
        tasks[i] = tasks[j];
        tasks[j] = t;
    }
}

static void pool_activity(size_t maxsz)
{
    if (bsl_rand_below(&rng, 4))
        return;
    struct alloc *a = &pool[bsl_rand_below(&rng, NPOOL)];
    if (!a->data) {
        a->size = bsl_rand_below(&rng, maxsz + 1);
        a->data = malloc(a->size);
        CHECK(a->data != NULL);
        a->seed = pool_seed++;
        bsl_fill(a->data, a->size, a->seed);
    } else {
        check_alloc(a, 0);
        free(a->data);
        a->data = NULL;
    }
}

static void run(size_t scale, uint64_t seed)
{
    bsl_rng_seed(&rng, seed);
    for (int i = 0; i < NTASK; i++) {
        tasks[i].a.size = (size_t)(1 + i / A_COUNT) * scale;
        tasks[i].a.seed = seed * 100000 + (uint64_t)i;
        tasks[i].action = i % A_COUNT;
    }
    shuffle();
    for (int i = 0; i < NTASK; i++) {
        tasks[i].a.data = malloc(tasks[i].a.size);
        CHECK(tasks[i].a.data != NULL);
        bsl_fill(tasks[i].a.data, tasks[i].a.size, tasks[i].a.seed);
    }
    full_check();

    shuffle();
    for (int i = 0; i < NTASK; i++) {
        pool_activity(scale > 1 ? 32768 : 4096);
        struct task *t = &tasks[i];
        check_alloc(&t->a, i);
        switch (t->action) {
        case A_FREE:
            free(t->a.data);
            t->a.data = NULL;
            break;
        case A_REALLOC:
            t->a.data = realloc(t->a.data, t->a.size + MAXSZ * scale);
            CHECK(t->a.data != NULL);
            break;
        case A_REALLOC_SAME:
            t->a.data = realloc(t->a.data, t->a.size);
            CHECK(t->a.data != NULL);
            break;
        case A_REALLOC_SMALLER: {
            size_t n = t->a.size - 1;
            unsigned char *q = realloc(t->a.data, n);
            if (n == 0) {
                CHECKF(q == NULL, "realloc(p, 0) = %p: did not free", (void *)q);
                free(q);
                t->a.data = NULL;
                t->action = A_FREE;
            } else {
                CHECK(q != NULL);
                t->a.data = q;
                t->a.size = n;
            }
            break;
        }
        }
        check_alloc(&t->a, i);
        full_check();
    }

    shuffle();
    for (int i = 0; i < NTASK; i++) {
        pool_activity(scale > 1 ? 32768 : 4096);
        if (tasks[i].action != A_FREE) {
            check_alloc(&tasks[i].a, i);
            free(tasks[i].a.data);
            tasks[i].a.data = NULL;
        }
        if (i % 8 == 0)
            full_check();
    }
    for (int i = 0; i < NPOOL; i++) {
        check_alloc(&pool[i], 1000 + i);
        free(pool[i].data);
        pool[i].data = NULL;
    }
}

int main(void)
{
    conf_begin("glibc_mallocstate", 60);
    run(1, 1);   /* 1..64 bytes */
    run(64, 2);  /* 64..4096 bytes, pool blocks up to 32 KiB */
    return conf_end();
}

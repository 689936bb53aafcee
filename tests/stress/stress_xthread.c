/* Cross-thread frees.
 * Part 1 (all-to-all): N threads; each allocates blocks, fills them, and sends them to a random other
 *   thread's inbox (a mutex-protected ring); every thread checks and frees what it receives. So every
 *   thread frees blocks allocated by every other thread.
 * Part 2 (one way): producers only allocate, consumers only free. Memory freed remotely must be
 *   reusable: the peak RSS stays far below the bytes pushed through.
 * usage: stress_xthread [threads=8] [blocks per thread=60000] */
#include "bsl_test.h"

#include <malloc.h>
#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define QCAP 2048

typedef struct item {
    unsigned char *p;
    size_t n;
    uint64_t seed;
    int from;
} item;

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    item buf[QCAP];
    unsigned head, count;
} queue;

static void q_init(queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->nonempty, NULL);
    pthread_cond_init(&q->nonfull, NULL);
    q->head = q->count = 0;
}

/* non-blocking push: 0 when full */
static int q_trypush(queue *q, item it)
{
    pthread_mutex_lock(&q->mu);
    if (q->count == QCAP) {
        pthread_mutex_unlock(&q->mu);
        return 0;
    }
    q->buf[(q->head + q->count++) % QCAP] = it;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
    return 1;
}

static void q_push(queue *q, item it)
{
    pthread_mutex_lock(&q->mu);
    while (q->count == QCAP)
        pthread_cond_wait(&q->nonfull, &q->mu);
    q->buf[(q->head + q->count++) % QCAP] = it;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->mu);
}

/* pop up to max items; returns how many */
static int q_pop(queue *q, item *out, int max, int wait)
{
    pthread_mutex_lock(&q->mu);
    while (wait && q->count == 0)
        pthread_cond_wait(&q->nonempty, &q->mu);
    int n = 0;
    while (n < max && q->count) {
        out[n++] = q->buf[q->head];
        q->head = (q->head + 1) % QCAP;
        q->count--;
    }
    if (n)
        pthread_cond_broadcast(&q->nonfull);
    pthread_mutex_unlock(&q->mu);
    return n;
}

static int nthreads = 8;
static long per_thread = 60000;
static queue *inbox;
static int producers_done;
static unsigned long nalloc, nfreed;

static size_t rsize(bsl_rng *r)
{
    uint64_t x = bsl_rand(r);
    switch (x % 8) {
    case 0: return 16 + (x >> 8) % 48;
    case 1:
    case 2:
    case 3: return 16 + (x >> 8) % 512;
    case 4:
    case 5: return 512 + (x >> 8) % 4096;
    case 6: return 4096 + (x >> 8) % (28 * KiB);
    default: return (x >> 40) % 16 == 0 ? 32 * KiB + (x >> 8) % (224 * KiB) : 64 + (x >> 8) % 256;
    }
}

static void consume(item *it, int me)
{
    size_t off = bsl_check(it->p, it->n, it->seed);
    CHECKF(off == (size_t)-1, "thread %d: block %p (%zu bytes) from thread %d corrupted at %zu", me, (void *)it->p,
           it->n, it->from, off);
    CHECKF(bsl_owns(it->p) == 1, "received block %p not owned", (void *)it->p);
    free(it->p);
    __atomic_fetch_add(&nfreed, 1, __ATOMIC_RELAXED);
}

static void *all_to_all(void *arg)
{
    int me = (int)(long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 4242 + (uint64_t)me);
    item got[64];
    for (long i = 0; i < per_thread; i++) {
        size_t n = rsize(&r);
        unsigned char *p = (i % 5 == 0) ? calloc(1, n) : malloc(n);
        CHECK(p != NULL);
        item it = {p, n, (uintptr_t)p * 2654435761u ^ (uint64_t)i ^ ((uint64_t)me << 40), me};
        bsl_fill(p, n, it.seed);
        __atomic_fetch_add(&nalloc, 1, __ATOMIC_RELAXED);
        int to = (me + 1 + (int)bsl_rand_below(&r, (uint64_t)nthreads - 1)) % nthreads;
        if (!q_trypush(&inbox[to], it))
            consume(&it, me); /* receiver is behind: free locally */
        if (i % 4 == 3) {
            int k = q_pop(&inbox[me], got, 64, 0);
            for (int j = 0; j < k; j++)
                consume(&got[j], me);
        }
    }
    __atomic_fetch_add(&producers_done, 1, __ATOMIC_ACQ_REL);
    /* After every producer finished nothing new arrives: drain until then and once more after. */
    for (;;) {
        int done = __atomic_load_n(&producers_done, __ATOMIC_ACQUIRE) == nthreads;
        int k;
        while ((k = q_pop(&inbox[me], got, 64, 0)) > 0)
            for (int j = 0; j < k; j++)
                consume(&got[j], me);
        if (done)
            break;
        sched_yield();
    }
    return NULL;
}

/* ---- part 2: one-way producer -> consumer ---- */
static queue pc[2];
static long pc_blocks = 400000;

static void *producer(void *arg)
{
    int q = (int)(long)arg;
    bsl_rng r;
    bsl_rng_seed(&r, 99 + (uint64_t)q);
    for (long i = 0; i < pc_blocks; i++) {
        size_t n = 65 + bsl_rand_below(&r, 8 * KiB);
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        item it = {p, n, (uintptr_t)p ^ (uint64_t)i, q};
        /* fill the ends only: this part is about memory reuse, not bandwidth */
        bsl_fill(p, 64, it.seed);
        p[n - 1] = (unsigned char)i;
        q_push(&pc[q], it);
    }
    item end = {NULL, 0, 0, q};
    q_push(&pc[q], end);
    return NULL;
}

static void *consumer(void *arg)
{
    int q = (int)(long)arg;
    item got[128];
    long i = 0;
    for (;;) {
        int k = q_pop(&pc[q], got, 128, 1);
        for (int j = 0; j < k; j++, i++) {
            if (!got[j].p)
                return NULL;
            CHECK(bsl_check(got[j].p, 64, got[j].seed) == (size_t)-1);
            CHECK(got[j].p[got[j].n - 1] == (unsigned char)i);
            free(got[j].p);
        }
    }
}

static long vm_hwm_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6))
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        nthreads = atoi(argv[1]);
    if (argc > 2)
        per_thread = atol(argv[2]);
    if (nthreads < 2)
        nthreads = 2;
    bsl_test_begin("stress_xthread");
    double t0 = bsl_now();
    inbox = malloc(sizeof *inbox * (size_t)nthreads);
    for (int i = 0; i < nthreads; i++)
        q_init(&inbox[i]);
    pthread_t *t = malloc(sizeof *t * (size_t)nthreads);
    for (long i = 0; i < nthreads; i++)
        CHECK(pthread_create(&t[i], NULL, all_to_all, (void *)i) == 0);
    for (int i = 0; i < nthreads; i++)
        pthread_join(t[i], NULL);
    CHECKF(nalloc == nfreed, "allocated %lu blocks, freed %lu", nalloc, nfreed);
    double t1 = bsl_now();
    printf("all-to-all: %d threads, %lu blocks in %.2f s\n", nthreads, nalloc, t1 - t0);

    long hwm0 = vm_hwm_kib();
    q_init(&pc[0]);
    q_init(&pc[1]);
    pthread_t pt[4];
    for (long i = 0; i < 2; i++) {
        CHECK(pthread_create(&pt[2 * i], NULL, producer, (void *)i) == 0);
        CHECK(pthread_create(&pt[2 * i + 1], NULL, consumer, (void *)i) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(pt[i], NULL);
    long hwm1 = vm_hwm_kib();
    double through_mib = 2.0 * (double)pc_blocks * (64 + 4096) / (double)MiB;
    printf("one-way: %.0f MiB pushed through, peak RSS %ld -> %ld KiB in %.2f s\n", through_mib, hwm0, hwm1,
           bsl_now() - t1);
    /* at most 2 x QCAP blocks (<= 8 KiB) are in flight: remote frees must be recycled */
    CHECKF(hwm1 - hwm0 < 512 * 1024, "peak RSS grew by %ld KiB while at most ~%zu KiB were live", hwm1 - hwm0,
           (size_t)2 * QCAP * 8);
    bsl_stats_t s;
    bsl_stats_get(&s);
    CHECKF(s.committed < (size_t)1 << 30, "committed %zu bytes after the one-way test", s.committed);
    free(t);
    free(inbox);
    return bsl_test_end();
}

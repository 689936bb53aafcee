/* Allocation failure under threads (the scenario of glibc malloc/tst-malloc-thread-fail).
 *
 * A child process lowers RLIMIT_AS to 24 MiB above what it maps already and takes all the memory
 * the allocator can still give with 1 MiB blocks but 24 MiB. Then for each size (144 bytes and one
 * page with malloc, realloc, calloc, valloc, pvalloc; alignment 128 with 512 bytes, one page and
 * 17 pages for aligned_alloc, memalign and posix_memalign) and each function in turn, 4 threads
 * and the main thread allocate until the allocator says no, chaining
 * their blocks. Every result is aligned (calloc ones are zero); every failure is clean: NULL with
 * errno == ENOMEM, and for posix_memalign the return value ENOMEM with *memptr untouched and
 * errno unchanged (it reports through its return value only). After a barrier all threads free
 * their chains, and the same request succeeds again. CONF_VERBOSE=1 prints how many blocks each
 * function got before ENOMEM. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>

enum fn { F_MALLOC, F_REALLOC, F_ALIGNED_ALLOC, F_MEMALIGN, F_POSIX_MEMALIGN, F_VALLOC, F_PVALLOC, F_CALLOC, F_COUNT };
static const char *fn_name[] = {"malloc", "realloc", "aligned_alloc", "memalign", "posix_memalign", "valloc", "pvalloc",
                                "calloc"};
static const int align_sensitive[] = {0, 0, 1, 1, 1, 0, 0, 0};

#define NTHREADS 4
static enum fn func;
static size_t asize, alignment, pagesize;
static pthread_barrier_t start_b, end_b;

struct node {
    struct node *next;
};

static void *__attribute__((noinline)) zeroed(size_t a, size_t b) { return calloc(a, b); }

static void *alloc1(void)
{
    void *p = NULL;
    size_t want = 16;
    errno = 0;
    switch (func) {
    case F_MALLOC:
        p = malloc(asize);
        break;
    case F_REALLOC: {
        void *q = realloc(NULL, 16);
        if (!q)
            break;
        p = realloc(q, asize);
        if (!p) {
            int e = errno;
            free(q);
            errno = e;
        }
        break;
    }
    case F_ALIGNED_ALLOC:
        p = aligned_alloc(alignment, asize);
        want = alignment;
        break;
    case F_MEMALIGN:
        p = memalign(alignment, asize);
        want = alignment;
        break;
    case F_POSIX_MEMALIGN: {
        void *sentinel = &want;
        p = sentinel;
        errno = EDOM;
        int rc = posix_memalign(&p, alignment, asize);
        if (rc != 0) {
            CHECKF(rc == ENOMEM, "posix_memalign(%zu, %zu) returned %d, want ENOMEM", alignment, asize, rc);
            CHECKF(errno == EDOM, "posix_memalign(%zu, %zu) failed and changed errno from EDOM to %d (%s); it "
                   "reports through its return value", alignment, asize, errno, strerror(errno));
            CHECKF(p == sentinel, "posix_memalign failed and wrote *memptr");
            errno = ENOMEM;
            p = NULL;
        } else {
            CHECKF(errno == EDOM, "posix_memalign succeeded and changed errno to %d", errno);
        }
        want = alignment;
        break;
    }
    case F_VALLOC:
        p = valloc(asize);
        want = pagesize;
        break;
    case F_PVALLOC:
        p = pvalloc(asize);
        want = pagesize;
        break;
    case F_CALLOC:
        p = zeroed(1, asize);
        if (p)
            CHECKF(bsl_all_zero(p, asize), "calloc(1, %zu) = %p not zeroed", asize, p);
        break;
    default:
        break;
    }
    if (!p)
        CHECKF(errno == ENOMEM, "%s(align=%zu, size=%zu) failed with errno %d (%s), want ENOMEM", fn_name[func],
               alignment, asize, errno, strerror(errno));
    else
        CHECKF(((uintptr_t)p & (want - 1)) == 0, "%s(align=%zu, size=%zu) = %p not aligned to %zu", fn_name[func],
               alignment, asize, p, want);
    return p;
}

static void *worker(void *arg)
{
    unsigned long *count = arg;
    pthread_barrier_wait(&start_b);
    struct node *head = NULL;
    for (;;) {
        struct node *e = alloc1();
        if (!e)
            break;
        e->next = head;
        head = e;
        (*count)++;
    }
    pthread_barrier_wait(&end_b);
    while (head) {
        struct node *n = head->next;
        free(head);
        head = n;
    }
    return NULL;
}

static size_t vm_size(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * pagesize;
}

/* One round: the threads and the main thread allocate with `func` until it fails, then free. */
static void one_function(pthread_attr_t *small)
{
    pthread_barrier_init(&start_b, NULL, NTHREADS + 1);
    pthread_barrier_init(&end_b, NULL, NTHREADS + 1);
    pthread_t th[NTHREADS];
    unsigned long counts[NTHREADS + 1] = {0};
    for (int i = 0; i < NTHREADS; i++) {
        int rc = pthread_create(&th[i], small, worker, &counts[i]);
        CHECKF(rc == 0, "pthread_create: %s", strerror(rc));
    }
    worker(&counts[NTHREADS]);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start_b);
    pthread_barrier_destroy(&end_b);
    unsigned long total = 0;
    for (int i = 0; i <= NTHREADS; i++)
        total += counts[i];
    CHECKF(total > 0, "%s(align=%zu, size=%zu): nothing could be allocated", fn_name[func], alignment, asize);
    if (getenv("CONF_VERBOSE"))
        printf("%s(align=%zu, size=%zu): %lu blocks, %zu MiB before ENOMEM\n", fn_name[func], alignment, asize, total,
               (size_t)(total * asize) >> 20);
    /* memory is back: the same request succeeds again */
    void *p = alloc1();
    CHECKF(p != NULL, "%s(align=%zu, size=%zu) fails after everything was freed", fn_name[func], alignment, asize);
    free(p);
}

static void functions_of_set(pthread_attr_t *small)
{
    for (int f = 0; f < F_COUNT; f++) {
        if (align_sensitive[f] != (alignment != 0))
            continue;
        func = (enum fn)f;
        conf_phase = fn_name[f];
        malloc_trim(0); /* what the last function freed is back in the free lists (quarantine, caches) */
        one_function(small);
    }
}

/* All of it in one child process (glibc forks one per function; here the child's limit and
 * ballast are set up once, and each function starts from a heap the last one emptied). */
static void run_all(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        conf_child(60);
        pthread_attr_t small;
        pthread_attr_init(&small);
        pthread_attr_setstacksize(&small, 256 * KiB);
        struct rlimit rl;
        getrlimit(RLIMIT_AS, &rl);
        size_t target = vm_size() + 24 * MiB + NTHREADS * 300 * KiB;
        if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > target) {
            rl.rlim_cur = target;
            CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
        }
        /* Ballast: the allocator reserves address space 64 MiB at a time, so the limit alone would
         * leave the threads most of an arena to fill. Take that space with 1 MiB blocks (never
         * written, so never faulted in, unless junk=1) until nothing is left, and give 24 MiB back. */
        static void *ballast[512];
        int nb = 0;
        while (nb < 512 && (ballast[nb] = malloc(1 * MiB - 8 * KiB)) != NULL) /* room for a canary and a guard page */
            nb++;
        for (int i = 0; i < 24 && nb > 0; i++)
            free(ballast[--nb]);
        alignment = 0;
        asize = 144;
        functions_of_set(&small);
        asize = pagesize;
        functions_of_set(&small);
        alignment = 128;
        asize = 512;
        functions_of_set(&small);
        asize = pagesize;
        functions_of_set(&small);
        asize = 17 * pagesize;
        functions_of_set(&small);
        while (nb > 0)
            free(ballast[--nb]);
        fflush(NULL);
        _exit(bsl_test_nfailed ? 1 : 0);
    }
    conf_track(pid);
    CHECKF(conf_wait_status(pid, 0, "the allocating child"), "the child failed (its checks are above)");
}

int main(void)
{
    conf_begin("glibc_thread_fail", 100);
    pagesize = (size_t)sysconf(_SC_PAGESIZE);
    run_all();
    return conf_end();
}

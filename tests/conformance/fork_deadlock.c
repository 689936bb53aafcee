/* fork() while other threads are inside stdio and malloc (the scenario of glibc
 * malloc/tst-malloc-fork-deadlock, glibc bug 19431).
 *
 * One thread forks in a loop: half of the children _exit(17) at once, the other half first
 * allocate and free a few blocks (small, large, a burst) and then _exit(17); the parent waits for
 * each. Meanwhile other threads loop on:
 *   - fflush(NULL) (takes the stdio list lock and every stream's lock);
 *   - getline() on a pipe fed by a writer thread (lines up to 50,000 bytes, so getline's buffer
 *     grows through realloc into the large-block range), with rewind-free reading;
 *   - fopen("/dev/null") + getline (EOF) + fclose, and fopen/fprintf/fclose of a temp file;
 *   - malloc/free of varied sizes: bursts of hundreds of small blocks (more than a per-CPU cache
 *     holds), blocks over 32 KiB (buddy path) and over 4 MiB (huge mappings).
 * A deadlock between the allocator's fork handlers and stdio's locks, or a child stuck on a lock
 * inherited in the locked state, stops the forks: the watchdog prints HANG. Runs for [seconds]
 * (default 2.5) and needs at least 20 forks.
 * usage: fork_deadlock [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static volatile int stop;
static unsigned long nforks, nlines, nflush, nopen, nalloc;
static int pipefd[2];
static char tmpl[256];

static void child_work(void)
{
    conf_child(10);
    void *v[300];
    for (int i = 0; i < 300; i++)
        v[i] = malloc((size_t)(i % 40) * 24 + 8);
    for (int i = 0; i < 300; i++)
        free(v[i]);
    void *big = malloc(100 * KiB), *huge = malloc(5 * MiB);
    if (!big || !huge)
        _exit(2);
    memset(big, 1, 100 * KiB);
    free(big);
    free(huge);
}

static void *forker(void *arg)
{
    (void)arg;
    int me = conf_slot("forker");
    unsigned long i = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        conf_at(me, "fork() with stdio and malloc busy in other threads");
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "fork: %s\n", strerror(errno));
            exit(1);
        }
        if (pid == 0) {
            if (i & 1)
                child_work();
            _exit(17);
        }
        conf_track(pid);
        conf_at(me, "waitpid() for a child (the child may be stuck in the allocator)");
        CHECK(conf_wait_status(pid, 17, "fork_deadlock child"));
        __atomic_fetch_add(&nforks, 1, __ATOMIC_RELAXED);
        i++;
    }
    conf_at(me, "done");
    return NULL;
}

static void *pipe_writer(void *arg)
{
    (void)arg;
    int me = conf_slot("pipe writer");
    static char line[50001];
    memset(line, 'x', sizeof line);
    unsigned n = 0;
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        size_t len = (n++ % 5 == 0) ? 50000 : 1 + n % 3000;
        line[len] = '\n';
        size_t off = 0;
        conf_at(me, "write() to the pipe");
        while (off <= len) {
            ssize_t w = write(pipefd[1], line + off, len + 1 - off);
            if (w <= 0)
                goto out;
            off += (size_t)w;
        }
        line[len] = 'x';
    }
out:
    conf_at(me, "done");
    close(pipefd[1]);
    return NULL;
}

static void *pipe_reader(void *arg)
{
    (void)arg;
    int me = conf_slot("pipe reader");
    FILE *f = fdopen(pipefd[0], "r");
    CHECK(f != NULL);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    conf_at(me, "getline() on the pipe");
    while ((n = getline(&line, &cap, f)) > 0) {
        CHECK(line[n - 1] == '\n' && line[0] == 'x');
        __atomic_fetch_add(&nlines, 1, __ATOMIC_RELAXED);
    }
    conf_at(me, "done");
    free(line);
    fclose(f);
    return NULL;
}

static void *opener(void *arg)
{
    (void)arg;
    int me = conf_slot("fopen/getline/fclose");
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        conf_at(me, "fopen(/dev/null), getline, fclose");
        FILE *f = fopen("/dev/null", "r");
        CHECK(f != NULL);
        char *line = NULL;
        size_t cap = 0;
        CHECK(getline(&line, &cap, f) == -1);
        free(line);
        fclose(f);
        conf_at(me, "fopen(temp file), fprintf, fclose");
        f = fopen(tmpl, "w");
        CHECK(f != NULL);
        fprintf(f, "%lu %s\n", nopen, "some text to buffer");
        fclose(f);
        __atomic_fetch_add(&nopen, 1, __ATOMIC_RELAXED);
    }
    conf_at(me, "done");
    return NULL;
}

static void *flusher(void *arg)
{
    (void)arg;
    int me = conf_slot("fflush(NULL)");
    conf_at(me, "fflush(NULL)");
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        CHECK(fflush(NULL) == 0);
        __atomic_fetch_add(&nflush, 1, __ATOMIC_RELAXED);
    }
    conf_at(me, "done");
    return NULL;
}

static void *allocator(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    int me = conf_slot("allocator");
    static __thread void *burst[600];
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        uint64_t x = bsl_rand(&r) % 16;
        conf_at(me, x < 8 ? "malloc/free of a burst of small blocks" : x < 15 ? "malloc/realloc/free of a large block"
                                                                             : "malloc/free of a huge block");
        if (x < 8) { /* a burst of hundreds of small blocks: misses the per-CPU cache */
            int n = 200 + (int)bsl_rand_below(&r, 400);
            size_t sz = 16 + bsl_rand_below(&r, 1000);
            for (int i = 0; i < n; i++) {
                burst[i] = malloc(sz);
                CHECK(burst[i] != NULL);
                *(volatile char *)burst[i] = 1;
            }
            for (int i = 0; i < n; i++)
                free(burst[i]);
        } else if (x < 15) { /* large blocks: the buddy allocator */
            size_t sz = 33 * KiB + bsl_rand_below(&r, 2 * MiB);
            unsigned char *p = malloc(sz);
            CHECK(p != NULL);
            p[0] = p[sz - 1] = 1;
            p = realloc(p, sz + 50 * KiB);
            CHECK(p != NULL);
            free(p);
        } else { /* huge: its own mapping */
            void *p = malloc(4 * MiB + 1 + bsl_rand_below(&r, 4 * MiB));
            CHECK(p != NULL);
            free(p);
        }
        __atomic_fetch_add(&nalloc, 1, __ATOMIC_RELAXED);
    }
    conf_at(me, "done");
    return NULL;
}

int main(int argc, char **argv)
{
    conf_begin("fork_deadlock", 20);
    double secs = argc > 1 ? atof(argv[1]) : 2.5;
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(tmpl, sizeof tmpl, "%s/conf-fork-deadlock-%d", tmp, (int)getpid());
    CHECK(pipe(pipefd) == 0);

    pthread_t th[8];
    int n = 0;
    CHECK(pthread_create(&th[n++], NULL, pipe_writer, NULL) == 0);
    CHECK(pthread_create(&th[n++], NULL, pipe_reader, NULL) == 0);
    CHECK(pthread_create(&th[n++], NULL, opener, NULL) == 0);
    CHECK(pthread_create(&th[n++], NULL, flusher, NULL) == 0);
    CHECK(pthread_create(&th[n++], NULL, allocator, (void *)1) == 0);
    CHECK(pthread_create(&th[n++], NULL, allocator, (void *)2) == 0);
    CHECK(pthread_create(&th[n++], NULL, forker, NULL) == 0);

    double t0 = bsl_now();
    while (bsl_now() - t0 < secs)
        usleep(20000);
    while (__atomic_load_n(&nforks, __ATOMIC_RELAXED) < 20 && bsl_now() - t0 < 15)
        usleep(20000);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    conf_phase = "joining the threads";
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    unlink(tmpl);
    printf("fork_deadlock: %lu forks, %lu getline lines, %lu fflush(NULL), %lu fopen/fclose, %lu allocation rounds in "
           "%.1f s\n", nforks, nlines, nflush, nopen, nalloc, bsl_now() - t0);
    CHECKF(nforks >= 20, "only %lu forks", nforks);
    return conf_end();
}

/* The process's malloc is interposed everywhere, and blocks move freely between threads (the
 * scenarios of glibc malloc/tst-interpose-nothread, -thread, -static-*).
 *
 * - libc's own allocations go through the interposed malloc: a file of lines 0, 45, 80, 2, 8201,
 *   0 and 17 characters long is written with fprintf and read back with getline (which grows its
 *   buffer with realloc), in the main thread and in a second thread; strdup, asprintf, and
 *   open_memstream buffers are our blocks (bsl_owns) and are freed by other threads;
 * - the program break never moves (buddyslab does not use brk; a libc malloc would);
 * - fork works and the child can allocate;
 * - 6 threads allocate patterned blocks of random sizes and pass them through a shared queue to
 *   other threads, which check and free them (remote frees in every size range). */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static void *initial_brk;
__attribute__((constructor)) static void save_brk(void) { initial_brk = sbrk(0); }

static const int line_lengths[] = {0, 45, 80, 2, 8201, 0, 17, -1};
static char temp_path[256];

static void line_string(int number, char *buf, size_t length)
{
    for (size_t i = 0; i + 2 < length; i++)
        buf[i] = (char)('A' + (number + (int)i) % 26);
    buf[length - 2] = '\n';
    buf[length - 1] = 0;
}

static void *read_lines(void *arg)
{
    (void)arg;
    FILE *f = fopen(temp_path, "r");
    CHECK(f != NULL);
    char *actual = NULL;
    size_t cap = 0;
    for (int lineno = 0;; lineno++) {
        errno = 0;
        ssize_t n = getline(&actual, &cap, f);
        CHECKF(n != 0, "getline returned 0");
        if (n < 0) {
            CHECKF(errno == 0, "getline: %s", strerror(errno));
            CHECKF(line_lengths[lineno] < 0, "end of file after line %d", lineno);
            break;
        }
        CHECKF(line_lengths[lineno] >= 0, "no end of file after line %d", lineno);
        CHECKF(n == line_lengths[lineno] + 1, "line %d: length %zd, want %d", lineno, n, line_lengths[lineno] + 1);
        char expected[8300];
        line_string(lineno, expected, (size_t)line_lengths[lineno] + 2);
        CHECKF(strcmp(actual, expected) == 0, "line %d differs", lineno);
    }
    CHECK(CONF_BSL(bsl_owns)(actual) == 1);
    fclose(f);
    return actual; /* freed by the main thread */
}

/* ---- cross-thread queue ---- */
#define QCAP 1024
static struct item {
    unsigned char *p;
    size_t n;
    uint64_t seed;
} queue[QCAP];
static int qhead, qtail, qcount, producers_left;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static unsigned long consumed;

static void push(struct item it)
{
    pthread_mutex_lock(&qlock);
    while (qcount == QCAP)
        pthread_cond_wait(&qcond, &qlock);
    queue[qtail] = it;
    qtail = (qtail + 1) % QCAP;
    qcount++;
    pthread_cond_broadcast(&qcond);
    pthread_mutex_unlock(&qlock);
}

static int pop(struct item *it)
{
    pthread_mutex_lock(&qlock);
    while (qcount == 0 && producers_left > 0)
        pthread_cond_wait(&qcond, &qlock);
    if (qcount == 0) {
        pthread_mutex_unlock(&qlock);
        return 0;
    }
    *it = queue[qhead];
    qhead = (qhead + 1) % QCAP;
    qcount--;
    pthread_cond_broadcast(&qcond);
    pthread_mutex_unlock(&qlock);
    return 1;
}

static void *producer(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    for (int i = 0; i < 15000; i++) {
        uint64_t x = bsl_rand(&r);
        size_t n = x % 100 == 0 ? 33 * KiB + (x >> 8) % (300 * KiB) : x % 1000 == 1 ? 4 * MiB + (x >> 8) % MiB
                                                                                        : 1 + (x >> 8) % 2048;
        struct item it = {NULL, n, x};
        if (x % 7 == 0) {
            char *s = NULL;
            CHECK(asprintf(&s, "%0*d", (int)(n % 300) + 1, i) > 0);
            it.p = (unsigned char *)s;
            it.n = strlen(s);
            it.seed = 0;
        } else {
            it.p = malloc(n);
            CHECK(it.p != NULL);
            bsl_fill(it.p, n, x);
        }
        push(it);
    }
    pthread_mutex_lock(&qlock);
    producers_left--;
    pthread_cond_broadcast(&qcond);
    pthread_mutex_unlock(&qlock);
    return NULL;
}

static void *consumer(void *arg)
{
    (void)arg;
    struct item it;
    while (pop(&it)) {
        if (it.seed)
            CHECKF(bsl_check(it.p, it.n, it.seed) == (size_t)-1, "a block of %zu bytes changed on its way", it.n);
        else
            CHECK(strlen((char *)it.p) == it.n);
        free(it.p);
        __atomic_fetch_add(&consumed, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

int main(void)
{
    conf_begin("glibc_interpose", 60);
    CHECKF(sbrk(0) == initial_brk, "the break moved before main: %p -> %p", initial_brk, sbrk(0));

    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(temp_path, sizeof temp_path, "%s/conf-interpose-XXXXXX", tmp);
    int fd = mkstemp(temp_path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    CHECK(f != NULL);
    for (int i = 0; line_lengths[i] >= 0; i++) {
        char buf[8300];
        line_string(i, buf, (size_t)line_lengths[i] + 2);
        fprintf(f, "%s", buf);
    }
    CHECK(fclose(f) == 0);

    conf_phase = "getline";
    free(read_lines(NULL));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, read_lines, NULL) == 0);
    void *line = NULL;
    pthread_join(t, &line);
    free(line); /* allocated by the other thread's getline */
    unlink(temp_path);

    char *s = strdup("interposed");
    CHECK(s && CONF_BSL(bsl_owns)(s) == 1);
    char *ms = NULL;
    size_t mslen = 0;
    FILE *m = open_memstream(&ms, &mslen);
    CHECK(m != NULL);
    for (int i = 0; i < 2000; i++)
        fprintf(m, "%d,", i);
    fclose(m);
    CHECK(ms && mslen > 5000 && CONF_BSL(bsl_owns)(ms) == 1);
    free(ms);
    free(s);

    conf_phase = "fork";
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        conf_child(20);
        void *p = malloc(1000), *q = malloc(100000);
        _exit(p && q ? 55 : 1);
    }
    conf_track(pid);
    CHECK(conf_wait_status(pid, 55, "fork child"));

    conf_phase = "cross-thread queue";
    enum { NP = 3, NC = 3 };
    pthread_t pt[NP], ct[NC];
    producers_left = NP;
    for (long i = 0; i < NC; i++)
        CHECK(pthread_create(&ct[i], NULL, consumer, NULL) == 0);
    for (long i = 0; i < NP; i++)
        CHECK(pthread_create(&pt[i], NULL, producer, (void *)(i + 1)) == 0);
    for (int i = 0; i < NP; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < NC; i++)
        pthread_join(ct[i], NULL);
    CHECKF(consumed == NP * 15000UL, "consumed %lu of %lu blocks", consumed, NP * 15000UL);

    CHECKF(sbrk(0) == initial_brk, "the program break moved: %p -> %p (a malloc other than buddyslab's?)", initial_brk,
           sbrk(0));
    return conf_end();
}

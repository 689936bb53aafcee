/* A program with a runaway allocation site and a well-behaved one, for the soft OOM policy tests
 * (oom_driver.py runs it under LD_PRELOAD with various BUDDYSLAB_OPTIONS and checks its output,
 * exit status and reports). Every line it prints is "key=value". Modes (argv[1]):
 *   budget    the runaway allocates RUNAWAY_MB in 1 KiB blocks, the well-behaved site WELL_MB in 4 KiB
 *             blocks; NULLs are counted per site; then bsl_oom_report(argv[2]) and everything is freed
 *   tag       the same, the runaway's allocations made under bsl_tag_push("cache")
 *   api       budget mode with the budget set by bsl_budget_set (argv[3]) instead of the options
 *   threads   the runaway's blocks are freed by another thread; accounting must return to zero;
 *             then 32 blocks grown by realloc from 1 KiB to 2 MiB, through sizes in every layer
 *   reclaim   60 MiB freed (dirty, decay off), then growth past a 128 MiB soft limit (set from
 *             code when argv[2] is "code"): reclaim first, then a report when it is not enough
 *   hard      1 MiB blocks until NULL under a hard limit, then free and allocate again
 *   handler   budget mode with a handler that frees the runaway's oldest blocks and asks to retry
 *   fork      4 threads allocate under a tag while the main thread forks 20 children that allocate
 *             and write a report; no deadlock, every child exits 0
 *   rlimit    RLIMIT_AS 256 MiB above the start: 1 MiB blocks until the system refuses; with argv[2]
 *             "handler", a handler frees 16 of them and asks for a retry
 *   dlopen    after a first budget crossing, loads argv[2] (tests/leak's libleaky.so) and allocates
 *             through its lk_lib_leak until refused: budgets match functions of code loaded later
 *   plain     a few allocations (for option syntax checks)
 * Built twice: preloaded (oom_runaway) and statically linked with the archive (oom_runaway_static,
 * -DRUNAWAY_STATIC: no dlopen mode, which would make the static link warn). */
#ifndef RUNAWAY_STATIC
#include <dlfcn.h>
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buddyslab.h"

#define RUNAWAY_MB 96
#define WELL_MB 8

static void *blocks[RUNAWAY_MB * 1024 + 16];
static size_t nblocks, oldest;
static void *well[WELL_MB * 256];

/* The two sites. noinline: each is one frame of its own on every stack. */
__attribute__((noinline)) void *runaway_alloc(size_t n)
{
    return malloc(n); /* RUNAWAY_LINE */
}

__attribute__((noinline)) void *runaway_realloc(void *p, size_t n)
{
    return realloc(p, n);
}

__attribute__((noinline)) void *well_behaved_alloc(size_t n)
{
    return malloc(n); /* WELL_LINE */
}

static void print_budget(const char *name)
{
    bsl_budget_info_t bi;
    if (bsl_budget_get(name, &bi) == 0)
        printf("budget[%s]=live:%zu,blocks:%zu,budget:%zu,failed:%llu,over:%d\n", name, bi.live_bytes, bi.live_blocks,
               bi.budget, (unsigned long long)bi.failed, bi.over);
}

static void print_stats(void)
{
    bsl_oom_stats_t s;
    bsl_oom_stats(&s);
    printf("stats=events:%llu,reclaims:%llu,reclaimed:%llu,reports:%llu,suppressed:%llu,failed:%llu,"
           "handler_calls:%llu,handler_recovered:%llu,reclaim_seq:%llu,report_seq:%llu,tracking:%d\n",
           (unsigned long long)s.events, (unsigned long long)s.reclaims, (unsigned long long)s.reclaimed_bytes,
           (unsigned long long)s.reports, (unsigned long long)s.reports_suppressed, (unsigned long long)s.failed,
           (unsigned long long)s.handler_calls, (unsigned long long)s.handler_recovered,
           (unsigned long long)s.last_reclaim_seq, (unsigned long long)s.last_report_seq, s.tracking);
}

static void run_sites(int tagged)
{
    size_t ok = 0, fail = 0, wok = 0, wfail = 0;
    for (size_t i = 0; i < (size_t)RUNAWAY_MB * 1024; i++) {
        if (i % 64 == 0 && wok + wfail < (size_t)WELL_MB * 256) { /* the well-behaved site, interleaved */
            void *w = well_behaved_alloc(4096);
            if (w) {
                memset(w, 1, 64);
                well[wok++] = w;
            } else {
                wfail++;
            }
        }
        if (tagged)
            bsl_tag_push("cache");
        void *p = runaway_alloc(1024);
        if (tagged)
            bsl_tag_pop();
        if (p) {
            memset(p, 2, 64);
            blocks[nblocks++] = p;
            ok++;
        } else {
            if (errno != ENOMEM)
                printf("bad_errno=%d\n", errno);
            fail++;
        }
    }
    printf("runaway_ok=%zu\nrunaway_fail=%zu\nrunaway_bytes=%zu\nwell_ok=%zu\nwell_fail=%zu\nwell_bytes=%zu\n", ok,
           fail, ok * 1024, wok, wfail, wok * 4096);
}

static void free_all(void)
{
    for (size_t i = oldest; i < nblocks; i++)
        free(blocks[i]);
    nblocks = oldest = 0;
    for (size_t i = 0; i < (size_t)WELL_MB * 256; i++) {
        free(well[i]);
        well[i] = NULL;
    }
}

static void *freer(void *arg)
{
    (void)arg;
    for (size_t i = 0; i < nblocks; i++)
        free(blocks[i]);
    return NULL;
}

static int handler(const bsl_oom_event *ev, void *arg)
{
    (void)arg;
    /* Drop the oldest 16 MiB of the runaway's blocks (a cache shedding entries) and retry. */
    size_t drop = 16 * 1024;
    for (size_t i = 0; i < drop && oldest < nblocks; i++)
        free(blocks[oldest++]);
    printf("handler=kind:%d,budget:%s,live:%zu,limit:%zu\n", (int)ev->kind, ev->budget ? ev->budget : "-", ev->live,
           ev->limit);
    static int reported;
    if (!reported++) /* the API may be used from the handler (it holds the policy's lock) */
        printf("handler_report=%d\n", bsl_oom_report("/dev/null"));
    return BSL_OOM_RETRY;
}

static void *churn(void *arg)
{
    static __thread void *ring[256];
    size_t fails = 0;
    for (int i = 0; i < 20000; i++) {
        bsl_tag_push("cache");
        void *p = runaway_alloc((size_t)1024 * (1 + (size_t)(i + (int)(intptr_t)arg) % 64));
        bsl_tag_pop();
        fails += !p;
        free(ring[i % 256]);
        ring[i % 256] = p;
    }
    for (int i = 0; i < 256; i++)
        free(ring[i]);
    return (void *)fails;
}

static int free_some(const bsl_oom_event *ev, void *arg)
{
    (void)arg;
    for (int i = 0; i < 16 && oldest < nblocks; i++)
        free(blocks[oldest++]);
    printf("handler=kind:%d,request:%zu\n", (int)ev->kind, ev->request);
    return BSL_OOM_RETRY;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "plain";
    const char *report = argc > 2 ? argv[2] : "";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (!strcmp(mode, "budget") || !strcmp(mode, "tag") || !strcmp(mode, "api") || !strcmp(mode, "handler")) {
        if (!strcmp(mode, "api") && bsl_budget_set(argc > 3 ? argv[3] : "runaway_*", (size_t)64 << 20) != 0)
            printf("api_error=%d\n", errno);
        if (!strcmp(mode, "handler"))
            bsl_oom_set_handler(handler, NULL);
        run_sites(!strcmp(mode, "tag"));
        print_budget(!strcmp(mode, "tag") ? "tag:cache" : argc > 3 ? argv[3] : "runaway_*");
        print_stats();
        if (bsl_oom_report(report) != 0)
            printf("report_error=1\n");
        free_all();
        print_budget(!strcmp(mode, "tag") ? "tag:cache" : argc > 3 ? argv[3] : "runaway_*");
        return 0;
    }
    if (!strcmp(mode, "threads")) {
        run_sites(0);
        print_budget("runaway_*");
        pthread_t t;
        pthread_create(&t, NULL, freer, NULL);
        pthread_join(t, NULL);
        nblocks = 0;
        print_budget("runaway_*");
        for (int i = 0; i < 32; i++) {
            blocks[i] = runaway_alloc(1024);
            for (size_t n = 4096; n <= ((size_t)2 << 20); n *= 4)
                blocks[i] = runaway_realloc(blocks[i], n); /* slab -> large -> huge sizes */
        }
        nblocks = 32;
        print_budget("runaway_*");
        pthread_create(&t, NULL, freer, NULL);
        pthread_join(t, NULL);
        nblocks = 0;
        print_budget("runaway_*");
        free_all();
        return 0;
    }
    if (!strcmp(mode, "reclaim")) {
        /* Run with soft_limit=128M,decay_ms=-1. 100 MiB of 1 MiB blocks, 60 MiB of them freed:
         * dirty frames the allocator keeps (no decay), still committed. */
        static void *big[100];
        for (int i = 0; i < 100; i++) {
            big[i] = malloc(1 << 20);
            memset(big[i], 3, 1 << 20);
        }
        for (int i = 40; i < 100; i++)
            free(big[i]);
        bsl_stats_t s0, s1, s2;
        bsl_stats_get(&s0);
        printf("dirty_before=%zu\n", s0.free_dirty);
        /* "code": the limit is set only now, over the 60 MiB already dirty (set at start, the zone
         * watermarks it lowers would have purged them as they were freed). */
        if (!strcmp(report, "code"))
            bsl_oom_set_limits((size_t)128 << 20, 0);
        /* A 64 MiB block (a fresh huge mapping): 100 + 64 > 128 MiB unless the dirty 60 MiB go back
         * to the OS first. They do: no report. */
        void *h1 = malloc((size_t)64 << 20);
        memset(h1, 5, (size_t)64 << 20);
        bsl_stats_get(&s1);
        printf("purged_step1=%zu\n", s1.purged_total - s0.purged_total);
        print_stats();
        /* Another 64 MiB: 40 + 64 + 64 > 128 MiB with nothing left to reclaim: reclaim, then report. */
        void *h2 = malloc((size_t)64 << 20);
        memset(h2, 6, (size_t)64 << 20);
        bsl_stats_get(&s2);
        printf("purged_step2=%zu\n", s2.purged_total - s1.purged_total);
        printf("h_ok=%d\n", h1 && h2);
        print_stats();
        free(h1);
        free(h2);
        for (int i = 0; i < 40; i++)
            free(big[i]);
        return 0;
    }
    if (!strcmp(mode, "hard")) {
        size_t n = 0;
        static void *m[4096];
        while (n < 4096) {
            void *p = malloc(1 << 20);
            if (!p) {
                printf("hard_errno=%s\n", errno == ENOMEM ? "ENOMEM" : "other");
                break;
            }
            memset(p, 4, 4096);
            m[n++] = p;
        }
        printf("hard_mb=%zu\n", n);
        for (size_t i = 0; i < n; i++)
            free(m[i]);
        void *again = malloc(1 << 20);
        printf("after_free_ok=%d\n", again != NULL);
        free(again);
        print_stats();
        return 0;
    }
    if (!strcmp(mode, "fork")) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&t[i], NULL, churn, (void *)(intptr_t)(i * 7));
        int bad = 0;
        for (int k = 0; k < 20; k++) {
            pid_t pid = fork();
            if (pid == 0) {
                void *p = well_behaved_alloc(100);
                int r = bsl_oom_report("/dev/null");
                free(p);
                _exit(p && r == 0 ? 0 : 1);
            }
            int st = 0;
            if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                bad++;
        }
        size_t fails = 0;
        for (int i = 0; i < 4; i++) {
            void *r;
            pthread_join(t[i], &r);
            fails += (size_t)r;
        }
        printf("fork_bad=%d\nchurn_fails=%zu\n", bad, fails);
        print_budget("tag:cache");
        print_stats();
        return 0;
    }
    if (!strcmp(mode, "rlimit")) {
        FILE *f = fopen("/proc/self/statm", "r");
        unsigned long vm = 0;
        if (!f || fscanf(f, "%lu", &vm) != 1)
            return 2;
        fclose(f);
        struct rlimit rl = {(vm << 12) + ((size_t)256 << 20), (vm << 12) + ((size_t)256 << 20)};
        setrlimit(RLIMIT_AS, &rl);
        if (!strcmp(report, "handler"))
            bsl_oom_set_handler(free_some, NULL);
        int refused = 0;
        while (nblocks < 1024) {
            void *p = runaway_alloc(1 << 20);
            if (!p) {
                printf("rlimit_errno=%s\n", errno == ENOMEM ? "ENOMEM" : "other");
                refused = 1;
                break;
            }
            memset(p, 7, 4096);
            blocks[nblocks++] = p;
        }
        printf("rlimit_refused=%d\nrlimit_live_mb=%zu\n", refused, nblocks - oldest);
        print_stats();
        free_all();
        return 0;
    }
#ifndef RUNAWAY_STATIC
    if (!strcmp(mode, "dlopen")) {
        /* First, sites resolved against the modules loaded at start (the index gets built). */
        size_t early = 0;
        while (early < 4096 && runaway_alloc(1024))
            early++;
        void *h = dlopen(report, RTLD_NOW);
        void *(*lib_alloc)(size_t) = h ? (void *(*)(size_t))dlsym(h, "lk_lib_leak") : NULL;
        if (!lib_alloc) {
            printf("dlopen_error=%s\n", dlerror());
            return 2;
        }
        size_t ok = 0;
        while (ok < 64 * 1024 && lib_alloc(1024))
            ok++;
        printf("early_ok=%zu\nlib_ok=%zu\nlib_errno=%s\n", early, ok, errno == ENOMEM ? "ENOMEM" : "other");
        print_budget("lk_lib_*");
        return 0;
    }
#endif
    /* plain */
    void *p = malloc(100);
    free(p);
    printf("plain_ok=1\n");
    return 0;
}

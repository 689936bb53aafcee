/* fork() from inside the soft OOM handler (docs/OOM.md; the handler runs in the allocating thread,
 * in the middle of an allocation, like an application's out-of-memory callback that spawns a
 * helper or a crash reporter).
 *
 * The handler forks; the child arms its watchdog, allocates and frees in many sizes (small,
 * large, huge, calloc, realloc) and in a new thread, and _exits 0; the handler waits for it and
 * returns BSL_OOM_CONTINUE. Three ways into the handler:
 *   1. the process soft limit (committed + 8 MiB), crossed with 1 MiB blocks, several times;
 *   2. a tag budget (tag:conffork, 2 MiB) crossed with 64 KiB blocks allocated under the tag;
 *   3. the hard limit (committed + 16 MiB): allocations fail with ENOMEM after the handler.
 * Reports go to a temporary file. A fork that deadlocks on the policy's lock (held while the
 * handler runs) is caught by the watchdog: HANG; a child stuck in the allocator fails its wait.
 * In preload mode the bsl_* functions are found with dlsym. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static unsigned long calls[5], children_ok, children_bad;
static char report_path[256];

static int child_alloc(uint64_t seed)
{
    int bad = 0;
    for (size_t n = 1; n <= 6 * MiB; n = n * 2 + 3) {
        unsigned char *p = malloc(n), *c = calloc(1, n);
        if (!p || !c)
            return 1;
        bsl_fill(p, n, seed + n);
        bad |= !bsl_all_zero(c, n);
        p = realloc(p, n + 100);
        if (!p || bsl_check(p, n, seed + n) != (size_t)-1)
            bad = 1;
        free(p);
        free(c);
    }
    return bad;
}

static void *child_thread(void *arg) { return (void *)(intptr_t)child_alloc((uint64_t)(uintptr_t)arg); }

static int on_oom(const bsl_oom_event *ev, void *arg)
{
    (void)arg;
    if (ev->kind >= 1 && ev->kind <= 4)
        calls[ev->kind]++;
    if (children_bad)
        return BSL_OOM_CONTINUE; /* one failure says it all: do not wait for more stuck children */
    const char *saved = conf_phase;
    conf_phase = "fork() inside the soft OOM handler";
    pid_t pid = fork();
    if (pid < 0) {
        children_bad++;
        return BSL_OOM_CONTINUE;
    }
    if (pid == 0) {
        conf_child(5);
        conf_phase = "child of a fork from the soft OOM handler: allocating";
        int bad = child_alloc(77);
        /* The policy lock stays the handler frame's in the child too: a thread that would
         * evaluate a limit or budget waits for the handler to return, as in the parent (docs/OOM.md).
         * So the child lifts the limits before its own thread allocates. */
        CONF_BSL(bsl_oom_set_limits)(0, 0);
        pthread_t t;
        void *ret = (void *)1;
        if (pthread_create(&t, NULL, child_thread, (void *)78) != 0 || pthread_join(t, &ret) != 0)
            bad = 1;
        _exit(bad || ret != NULL);
    }
    conf_track(pid);
    conf_phase = "waitpid() in the soft OOM handler";
    if (conf_wait_status(pid, 0, "child of the OOM handler's fork"))
        children_ok++;
    else
        children_bad++;
    conf_phase = saved;
    return BSL_OOM_CONTINUE;
}

static size_t committed(void)
{
    bsl_oom_stats_t st;
    CONF_BSL(bsl_oom_stats)(&st);
    return st.committed;
}

int main(void)
{
    conf_begin("fork_oom", 25); /* 4.5-9 s at a load of 7 on 2 CPUs; 15 s tripped once in a loaded run */
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(report_path, sizeof report_path, "%s/conf-fork-oom-%d.txt", tmp, (int)getpid());
    CHECK(CONF_BSL(bsl_option_set)("oom_report", report_path) == 0);
    CHECK(CONF_BSL(bsl_option_set)("oom_interval_ms", "0") == 0);
    CONF_BSL(bsl_oom_set_handler)(on_oom, NULL);

    enum { NB = 64 };
    void *b[NB];
    int nb;

    /* 1. soft limit */
    conf_phase = "crossing the soft limit";
    for (int round = 0; round < 4; round++) {
        CHECK(CONF_BSL(bsl_oom_set_limits)(committed() + 8 * MiB, 0) == 0);
        for (nb = 0; nb < 24; nb++) {
            b[nb] = malloc(1 * MiB);
            CHECK(b[nb] != NULL);
            memset(b[nb], 1, 1 * MiB);
        }
        while (nb > 0)
            free(b[--nb]);
        CONF_BSL(bsl_oom_set_limits)(0, 0);
        CONF_BSL(bsl_purge)();
        usleep(20000); /* reclaims are at most every 10 ms */
    }
    CHECKF(calls[BSL_OOM_SOFT_LIMIT] > 0, "the handler was never called for the soft limit");

    /* 2. tag budget */
    conf_phase = "crossing a tag budget";
    if (CONF_BSL(bsl_budget_set)("tag:conffork", 2 * MiB) == 0) {
        CHECK(CONF_BSL(bsl_tag_push)("conffork") == 0);
        for (nb = 0; nb < NB; nb++) {
            b[nb] = malloc(64 * KiB);
            CHECK(b[nb] != NULL);
        }
        CHECK(CONF_BSL(bsl_tag_pop)() == 0);
        while (nb > 0)
            free(b[--nb]);
        CHECKF(calls[BSL_OOM_BUDGET] > 0, "the handler was never called for the budget");
        CONF_BSL(bsl_budget_set)("tag:conffork", 0);
    } else {
        printf("fork_oom: budgets unavailable here (%s): tag budget part skipped\n", strerror(errno));
    }

    /* 3. hard limit */
    conf_phase = "reaching the hard limit";
    CHECK(CONF_BSL(bsl_oom_set_limits)(0, committed() + 16 * MiB) == 0);
    int failed = 0;
    for (nb = 0; nb < NB; nb++) {
        errno = 0;
        b[nb] = malloc(1 * MiB);
        if (!b[nb]) {
            CHECKF(errno == ENOMEM, "malloc failed at the hard limit with errno %d", errno);
            failed = 1;
            break;
        }
        memset(b[nb], 2, 1 * MiB);
    }
    CHECKF(failed, "64 MiB allocated under a hard limit of committed + 16 MiB");
    while (nb > 0)
        free(b[--nb]);
    CONF_BSL(bsl_oom_set_limits)(0, 0);
    CHECKF(calls[BSL_OOM_HARD_LIMIT] > 0, "the handler was never called for the hard limit");

    CONF_BSL(bsl_oom_set_handler)(NULL, NULL);
    unlink(report_path);
    char json[300];
    snprintf(json, sizeof json, "%s.json", report_path);
    unlink(json);
    printf("fork_oom: handler calls: soft limit %lu, budget %lu, hard limit %lu; children ok %lu, failed %lu\n",
           calls[BSL_OOM_SOFT_LIMIT], calls[BSL_OOM_BUDGET], calls[BSL_OOM_HARD_LIMIT], children_ok, children_bad);
    CHECKF(children_bad == 0, "%lu children of a fork in the OOM handler failed", children_bad);
    CHECK(children_ok > 0);
    return conf_end();
}

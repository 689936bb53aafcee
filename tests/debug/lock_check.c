/* The debug build's lock checks trip on real bugs (linked with libbuddyslab-debug.a, compiled with
 * -DBSL_DEBUG=2 so that the inline os_lock carries the check too).
 *
 * Each case runs in a forked child (stdin from /dev/null, its stderr to a pipe, killed after a
 * timeout) and must end as stated:
 *   order      a buddy shard lock, then a kmem_cache lock (rank SLAB < BUDDY): SIGABRT, and the
 *              message names both locks;
 *   relock     the same lock twice (a self-deadlock in a release build): SIGABRT, named;
 *   locked     purge_oldest_locked on a shard whose lock this thread does not hold: SIGABRT, the
 *              message names the lock;
 *   unlock     os_unlock of a lock this thread does not hold: SIGABRT;
 *   ok         locks in rank order, released out of order, a trylock against the order (it never
 *              waits), a `_locked` function with its lock held, fork() with threads: exit 0.
 * Against a library without the checks, the first four do not abort (two hang until the timeout):
 * this test fails there. */
#include "buddy/buddy_int.h"
#include "buddyslab.h"
#include "os/os.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static os_lock_t slab_like = OS_LOCK_INIT(LOCK_RANK_SLAB);
static os_lock_t buddy_like = OS_LOCK_INIT(LOCK_RANK_BUDDY);
static os_lock_t meta_like = OS_LOCK_INIT(LOCK_RANK_META);

static void *spin(void *arg)
{
    for (int i = 0; i < 20000; i++)
        free(malloc((size_t)(i % 3000) + 1));
    return arg;
}

static int run_case(const char *c)
{
    free(malloc(64)); /* the allocator is initialised (shards have their ranks) */
    struct buddy_shard *sh = &buddy_shards[0][ZONE_NORMAL];
    if (!strcmp(c, "order")) {
        os_lock(&buddy_like);
        os_lock(&slab_like); /* wrong: SLAB ranks before BUDDY */
    } else if (!strcmp(c, "relock")) {
        os_lock(&slab_like);
        os_lock(&slab_like);
    } else if (!strcmp(c, "locked")) {
        purge_oldest_locked(sh, 1);
    } else if (!strcmp(c, "unlock")) {
        os_unlock(&slab_like);
    } else if (!strcmp(c, "ok")) {
        os_lock(&slab_like);
        os_lock(&buddy_like);
        os_lock(&meta_like);
        os_unlock(&buddy_like); /* out of order: allowed */
        if (!os_trylock(&buddy_like)) /* against the order, but a trylock never waits */
            return 2;
        os_unlock(&meta_like);
        os_unlock(&buddy_like);
        os_unlock(&slab_like);
        os_lock(&sh->lock);
        purge_oldest_locked(sh, 0);
        os_unlock(&sh->lock);
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, spin, NULL);
        for (int i = 0; i < 20; i++) { /* fork visits every lock: the table is checked against the ranks */
            pid_t p = fork();
            if (p == 0) {
                free(malloc(100));
                _exit(0);
            }
            int st;
            if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return 3;
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        bsl_purge(); /* level 2: buddy_check and slab_check after the reclaim */
    } else {
        return 4;
    }
    return 0;
}

/* Runs case c in a child; returns its wait status (-1: timed out) and its stderr in err. */
static int spawn(const char *self, const char *c, char *err, size_t cap)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -2;
    pid_t p = fork();
    if (p == 0) {
        int in = open("/dev/null", O_RDONLY);
        dup2(in, 0);
        dup2(fd[1], 2);
        close(fd[0]);
        alarm(20);
        execl(self, self, c, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd[0], err + n, cap - 1 - n)) > 0) /* EOF when the child ends */
        n += (size_t)r;
    err[n] = 0;
    close(fd[0]);
    int st;
    if (waitpid(p, &st, 0) != p)
        return -2;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        return -1;
    return st;
}

static int expect_abort(const char *self, const char *c, const char *m1, const char *m2)
{
    char err[4096];
    int st = spawn(self, c, err, sizeof(err));
    int ok = st >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT && strstr(err, m1) && (!m2 || strstr(err, m2));
    printf("%s %s: %s", ok ? "ok  " : "FAIL", c, st == -1 ? "timed out (no check: a deadlock)\n" : err[0] ? err : "(no message)\n");
    if (!ok && st >= 0 && WIFEXITED(st))
        printf("     exited with %d instead of aborting\n", WEXITSTATUS(st));
    return ok;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        return run_case(argv[1]);
    const char *self = "/proc/self/exe";
    char path[4096];
    ssize_t n = readlink(self, path, sizeof(path) - 1);
    if (n <= 0)
        return 1;
    path[n] = 0;
    int ok = 1;
    ok &= expect_abort(path, "order", "lock order violation: taking kmem_cache lock", "while holding buddy shard lock");
    ok &= expect_abort(path, "relock", "which this thread holds already", "kmem_cache lock");
    ok &= expect_abort(path, "locked", "lock not held: &sh->lock (buddy shard lock", NULL);
    ok &= expect_abort(path, "unlock", "lock not held", "kmem_cache lock");
    char err[4096];
    int st = spawn(path, "ok", err, sizeof(err));
    int good = st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("%s ok: status %d %s\n", good ? "ok  " : "FAIL", st, err);
    ok &= good;
    return ok ? 0 : 1;
}

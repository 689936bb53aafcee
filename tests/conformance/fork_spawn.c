/* vfork + exec, posix_spawn and popen in a loop while other threads allocate (the process-creation
 * paths that do not run fork handlers, next to fork's own; compare glibc's tst-vfork*, tst-spawn*
 * and tst-popen under an interposed malloc).
 *
 * One thread starts /bin/true in turn with vfork()+execve() (nothing between the two but the
 * exec: the child shares the parent's memory), posix_spawn(), posix_spawnp() with file actions,
 * and popen("echo ...") whose output is read back; each child must exit 0. Three threads allocate
 * and free meanwhile (small bursts, large and huge blocks, patterns checked). Under LD_PRELOAD the
 * children run with buddyslab too. Runs for [seconds] (default 2) and needs 20 children.
 * usage: fork_spawn [seconds] */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>
#include <spawn.h>

extern char **environ;
static volatile int stop;
static unsigned long nspawn, nalloc;

static void *allocator(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    int me = conf_slot("allocator");
    conf_at(me, "malloc/free");
    struct {
        unsigned char *p;
        size_t n;
    } s[128] = {{0}};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int i = (int)bsl_rand_below(&r, 128);
        if (s[i].p) {
            CHECKF(bsl_check(s[i].p, s[i].n, (uint64_t)(uintptr_t)s[i].p) == (size_t)-1, "block of %zu changed", s[i].n);
            free(s[i].p);
        }
        uint64_t x = bsl_rand(&r);
        s[i].n = x % 50 == 0 ? 33 * KiB + (x >> 8) % MiB : x % 2000 == 1 ? 4 * MiB + (x >> 8) % MiB : 1 + (x >> 8) % 3000;
        s[i].p = malloc(s[i].n);
        CHECK(s[i].p != NULL);
        bsl_fill(s[i].p, s[i].n, (uint64_t)(uintptr_t)s[i].p);
        __atomic_fetch_add(&nalloc, 1, __ATOMIC_RELAXED);
    }
    for (int i = 0; i < 128; i++)
        free(s[i].p);
    conf_at(me, "done");
    return NULL;
}

/* vfork in its own frame: the child only execs or _exits, never returns from here. */
static pid_t __attribute__((noinline)) vfork_exec(char *const argv[])
{
    pid_t pid = vfork();
    if (pid == 0) {
        execve(argv[0], argv, environ);
        _exit(127);
    }
    return pid;
}

static void spawner(double secs)
{
    char *argv_true[] = {"/bin/true", NULL};
    double t0 = bsl_now();
    unsigned long i = 0;
    while ((bsl_now() - t0 < secs || nspawn < 20) && bsl_now() - t0 < 15) {
        pid_t pid = -1;
        switch (i++ % 4) {
        case 0:
            conf_phase = "vfork + execve";
            pid = vfork_exec(argv_true);
            break;
        case 1:
            conf_phase = "posix_spawn";
            CHECK(posix_spawn(&pid, "/bin/true", NULL, NULL, argv_true, environ) == 0);
            break;
        case 2: {
            conf_phase = "posix_spawnp with file actions";
            posix_spawn_file_actions_t fa;
            posix_spawn_file_actions_init(&fa);
            posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
            posix_spawn_file_actions_adddup2(&fa, 1, 2);
            posix_spawnattr_t at;
            posix_spawnattr_init(&at);
            posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
            sigset_t none;
            sigemptyset(&none);
            posix_spawnattr_setsigmask(&at, &none);
            CHECK(posix_spawnp(&pid, "true", &fa, &at, argv_true, environ) == 0);
            posix_spawn_file_actions_destroy(&fa);
            posix_spawnattr_destroy(&at);
            break;
        }
        case 3: {
            conf_phase = "popen";
            FILE *f = popen("echo conformance-popen", "r");
            CHECK(f != NULL);
            char buf[64] = "";
            CHECK(fgets(buf, sizeof buf, f) != NULL);
            CHECKF(strcmp(buf, "conformance-popen\n") == 0, "popen read '%s'", buf);
            int st = pclose(f);
            CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pclose status %#x", st);
            nspawn++;
            continue;
        }
        }
        CHECK(pid > 0);
        conf_track(pid);
        conf_phase = "waiting for /bin/true";
        CHECK(conf_wait_status(pid, 0, "/bin/true"));
        nspawn++;
    }
}

int main(int argc, char **argv)
{
    conf_begin("fork_spawn", 20);
    double secs = argc > 1 ? atof(argv[1]) : 2.0;
    pthread_t th[3];
    for (long i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, allocator, (void *)(i + 1)) == 0);
    double t0 = bsl_now();
    spawner(secs);
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    printf("fork_spawn: %lu children (vfork+exec, posix_spawn, posix_spawnp, popen), %lu allocations in %.1f s\n",
           nspawn, nalloc, bsl_now() - t0);
    CHECKF(nspawn >= 20, "only %lu children", nspawn);
    return conf_end();
}

/* fork() in a single-threaded program (a shell forking its subshells) must not cost the child more
 * page faults than under glibc's malloc: every page the allocator's fork handlers write is copied
 * on write, and every 64 KiB window of the library's text a child executes is faulted in again
 * (a child gets no page tables for file-backed text). Runs itself twice, without and with
 * libbuddyslab.so preloaded (argv[1]); each run forks N children that _exit at once and reports
 * the children's minor faults per fork (getrusage). buddyslab may add at most 2 per fork. Before
 * the handlers stopped writing unchanged variables and the child's path (atfork child handlers,
 * _exit) moved to one text window, it added 4 (glibc 17, buddyslab 21 on the development VM; 16
 * after). Children that malloc and exit() are measured too and printed, not checked: their extra
 * faults are the allocator's metadata pages the child writes (glibc 24-25, buddyslab 27; 29
 * before).
 *
 * With a second argument (BUDDYSLAB_OPTIONS that turn tracking on, e.g. leak_sample=512K), a third
 * run has them, and its _exit children are held to the same bound: at most 2 faults more than under
 * glibc, the tracker's fork child handlers writing one page (struct track_proc, src/track/track.h).
 * Before those fields shared a page, the registry was fixed at once in the child and
 * leak_at_fast_exit sat outside the child's text window, sampled tracking took 2 to 5 more than
 * glibc (20-22 vs 16-18 on the development VM, failing 5 runs of 6); 0 to 1 after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bsl_selfrun.h"

#define FORKS 200

static double child_faults_per_fork(int mode)
{
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    for (int i = 0; i < FORKS; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            if (mode == 1) {
                void *p = malloc(100);
                free(p);
                exit(0);
            }
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return -1;
    }
    getrusage(RUSAGE_CHILDREN, &after);
    return (double)(after.ru_minflt - before.ru_minflt) / FORKS;
}

/* Run this program under `preload` (NULL: none); its "--child" output is two numbers. */
static int run(const char *preload, double out[2])
{
    char buf[128];
    if (bsl_run_self("fork_faults", preload, buf, sizeof buf) != 0 || sscanf(buf, "%lf %lf", &out[0], &out[1]) != 2)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) {
        void *keep[64];
        for (int i = 0; i < 64; i++) /* a heap to inherit: the allocator is set up and in use */
            keep[i] = malloc(16 + (size_t)i * 24);
        double a = child_faults_per_fork(0), b = child_faults_per_fork(1);
        for (int i = 0; i < 64; i++)
            free(keep[i]);
        if (a < 0 || b < 0)
            return 1;
        printf("%.2f %.2f\n", a, b);
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: fork_faults LIBBUDDYSLAB.so [TRACKING-OPTIONS]\n");
        return 2;
    }
    double g[2], b[2], t[2];
    unsetenv("BUDDYSLAB_OPTIONS");
    if (run(NULL, g) != 0 || run(argv[1], b) != 0) {
        fprintf(stderr, "fork_faults: a run failed\n");
        return 1;
    }
    if (argc > 2) {
        setenv("BUDDYSLAB_OPTIONS", argv[2], 1);
        int r = run(argv[1], t);
        unsetenv("BUDDYSLAB_OPTIONS");
        if (r != 0) {
            fprintf(stderr, "fork_faults: the run with %s failed\n", argv[2]);
            return 1;
        }
        printf("with %s: _exit at once: buddyslab %.1f (untracked %.1f, glibc %.1f); malloc, free, exit(): %.1f "
               "(untracked %.1f)\n", argv[2], t[0], b[0], g[0], t[1], b[1]);
        if (t[0] > g[0] + 2) {
            printf("FAIL: with %s a child that only _exits takes %.1f more faults than under glibc (at most 2)\n",
                   argv[2], t[0] - g[0]);
            return 1;
        }
    }
    printf("child faults per fork: _exit at once: glibc %.1f, buddyslab %.1f; malloc, free, exit(): glibc %.1f, "
           "buddyslab %.1f\n", g[0], b[0], g[1], b[1]);
    if (b[0] > g[0] + 2) {
        printf("FAIL: a child that only _exits takes %.1f more faults than under glibc (at most 2)\n", b[0] - g[0]);
        return 1;
    }
    return 0;
}

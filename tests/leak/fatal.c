/* A program that leaks one block at lk_fatal (777 bytes), keeps one reachable, then leaves without
 * exit(): argv[1] says how (abort, segv, term, _exit, _Exit, double-free, handled-term, vfork,
 * fork-_exit: the program exits normally after a fork child left with _exit).
 * The driver (leak_driver.py, case fatal) checks the report written on the way out and that the
 * exit status is what the program gets without the library. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leak_common.h"

void *volatile keep;

NOINLINE void lk_fatal(void)
{
    void *p = malloc(777);
    touch(p, 777);
}

NOINLINE void keep_fatal(void)
{
    keep = malloc(99);
    touch(keep, 99);
}

static void on_term(int sig)
{
    (void)sig;
    exit(3); /* the program's own handler: a normal exit, reported by the destructor */
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "abort";
    lk_fatal();
    keep_fatal();
    scrub_stack();
    printf("fatal: %s\n", how);
    fflush(stdout);
    if (!strcmp(how, "abort"))
        abort();
    if (!strcmp(how, "segv"))
        *(volatile int *)(uintptr_t)8 = 1;
    if (!strcmp(how, "term"))
        kill(getpid(), SIGTERM);
    if (!strcmp(how, "_exit"))
        _exit(7);
    if (!strcmp(how, "_Exit"))
        _Exit(7);
    if (!strcmp(how, "double-free")) {
        void *p = malloc(5000);
        touch(p, 5000);
        free(p);
        free(p);
    }
    if (!strcmp(how, "handled-term")) {
        signal(SIGTERM, on_term);
        kill(getpid(), SIGTERM);
    }
    /* A child that leaves with _exit writes nothing: a vfork child shares our memory, a fork
     * child's _exit is how children leave. We exit normally and report. */
    if (!strcmp(how, "vfork") || !strcmp(how, "fork-_exit")) {
        pid_t pid = how[0] == 'v' ? vfork() : fork();
        if (pid == 0)
            _exit(0);
        int st = 0;
        waitpid(pid, &st, 0);
        return WIFEXITED(st) ? WEXITSTATUS(st) : 100;
    }
    pause();
    return 99;
}

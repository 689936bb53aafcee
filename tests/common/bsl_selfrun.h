/* Tests that compare glibc's malloc with buddyslab in one process tree (tests/footprint): run this
 * very program again, with `--child`, under a preloaded library or none, and read what it prints. */
#ifndef BSL_SELFRUN_H
#define BSL_SELFRUN_H

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run /proc/self/exe --child (argv[0] `name`) with LD_PRELOAD=preload (NULL: unset), its stdout
 * into out (at most cap - 1 bytes, NUL-terminated). Returns 0 when it exited with status 0 and
 * printed something, else -1. */
static inline int bsl_run_self(const char *name, const char *preload, char *out, size_t cap)
{
    int fds[2];
    if (cap == 0 || pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(fds[1], 1);
        if (preload)
            setenv("LD_PRELOAD", preload, 1);
        else
            unsetenv("LD_PRELOAD");
        execl("/proc/self/exe", name, "--child", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t got = 0;
    ssize_t n;
    while (got < cap - 1 && (n = read(fds[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = 0;
    close(fds[0]);
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    return got > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

#endif

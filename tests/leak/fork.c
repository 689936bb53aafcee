/* fork() while other threads allocate and free: the child works (allocates, leaks, exits
 * normally and writes its own report), the parent goes on and leaks after the children. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "leak_common.h"

static volatile int stop;

static void *busy(void *arg)
{
    (void)arg;
    while (!stop) {
        void *p[16];
        for (int i = 0; i < 16; i++) {
            p[i] = malloc(16 + i * 40);
            touch(p[i], 16);
        }
        for (int i = 0; i < 16; i++)
            free(p[i]);
    }
    return NULL;
}

NOINLINE void lk_in_child(void) { touch(malloc(4321), 4321); }
NOINLINE void lk_in_parent(void) { touch(malloc(1111), 1111); }

int main(void)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, busy, NULL);
    int children = 0;
    for (int i = 0; i < 8; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int k = 0; k < 100; k++)
                free(malloc(100 + k));
            lk_in_child();
            scrub_stack();
            exit(0);
        }
        int st;
        if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            children++;
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    lk_in_parent();
    scrub_stack();
    printf("fork: %d children ok\n", children);
    return children == 8 ? 0 : 1;
}

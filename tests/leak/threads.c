/* Threads: a leak in a thread that exited; a block held only by a blocked thread's stack
 * (reachable); a block a finished thread published in a global (reachable). Mode "exit-thread":
 * the program exits from a thread while main waits in pthread_join (its stack still holds a
 * pointer: reachable). Mode "stale": the three leaking threads run at once (three stacks, of
 * which the later threads reuse at most two) and leave the pointer in their dead frames (no
 * scrub): still definitely lost, as a dead thread's frames are not roots (only its TLS and
 * descriptor at the top of its stack block, glibc's static TLS size). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "leak_common.h"

void *volatile g_from_thread;
static pthread_barrier_t ready;
static int blocker[2];

NOINLINE void *lk_in_thread(void)
{
    void *p = malloc(300);
    touch(p, 300);
    return p;
}

static void *leaker(void *arg)
{
    (void)arg;
    void *p = lk_in_thread();
    p = NULL;
    scrub_stack();
    return p;
}

NOINLINE void stale_inner(void)
{
    void *volatile p = lk_in_thread(); /* stays in this frame after the thread ends */
    (void)p;
}

static pthread_barrier_t stale_all;

static void *stale_leaker(void *arg)
{
    (void)arg;
    volatile char pad[16384]; /* below it, deeper than the thread's exit path reaches */
    pad[0] = 0;
    pthread_barrier_wait(&stale_all); /* all three alive: three stacks */
    stale_inner();
    return (void *)(uintptr_t)pad[0];
}

NOINLINE void *keep_on_stack(void)
{
    void *p = malloc(123);
    touch(p, 123);
    return p;
}

static void *holder(void *arg)
{
    (void)arg;
    void *volatile mine = keep_on_stack();
    scrub_stack();
    pthread_barrier_wait(&ready);
    char c;
    while (read(blocker[0], &c, 1) < 0) /* blocks until exit */
        ;
    return (void *)mine;
}

NOINLINE void keep_from_thread(void) { g_from_thread = malloc(55); touch(g_from_thread, 55); }

static void *publisher(void *arg)
{
    (void)arg;
    keep_from_thread();
    return NULL;
}

static void *exiter(void *arg)
{
    (void)arg;
    scrub_stack();
    printf("threads: done\n");
    fflush(stdout);
    exit(0);
}

NOINLINE void *keep_main_stack(void)
{
    void *p = malloc(77);
    touch(p, 77);
    return p;
}

int main(int argc, char **argv)
{
    pthread_t t;
    if (pipe(blocker) != 0)
        return 2;
    pthread_barrier_init(&ready, NULL, 2);
    if (argc > 1 && strcmp(argv[1], "stale") == 0) {
        pthread_t s[3];
        pthread_barrier_init(&stale_all, NULL, 3);
        for (int i = 0; i < 3; i++)
            pthread_create(&s[i], NULL, stale_leaker, NULL);
        for (int i = 0; i < 3; i++)
            pthread_join(s[i], NULL);
    } else {
        for (int i = 0; i < 3; i++) { /* three threads, one after the other (recycled stacks) */
            pthread_create(&t, NULL, leaker, NULL);
            pthread_join(t, NULL);
        }
    }
    pthread_create(&t, NULL, publisher, NULL);
    pthread_join(t, NULL);
    pthread_t h;
    pthread_create(&h, NULL, holder, NULL);
    pthread_barrier_wait(&ready);
    if (argc > 1 && strcmp(argv[1], "exit-thread") == 0) {
        void *volatile mine = keep_main_stack();
        pthread_create(&t, NULL, exiter, NULL);
        pthread_join(t, NULL); /* never returns: the thread exits the process */
        return mine != NULL;
    }
    scrub_stack();
    printf("threads: done\n");
    return 0;
}

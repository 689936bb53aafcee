/* Linked with `cc -static` against libbuddyslab.a: malloc (and what libc.a allocates internally)
 * must be buddyslab's. Prints "static: ok" and exits 0 on success. */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bsl_test.h" /* CHECK, as in every suite (tests/common/) */

static void *thread_main(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    void *v[256];
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 256; i++) {
            size_t n = 16 + (size_t)((i * 131 + round * 7 + (int)id) % 5000);
            v[i] = malloc(n);
            if (!v[i] || bsl_owns(v[i]) != 1) {
                fprintf(stderr, "thread %lu: malloc(%zu) = %p not ours\n", (unsigned long)id, n, v[i]);
                return (void *)1;
            }
            memset(v[i], (int)id, n);
        }
        for (int i = 0; i < 256; i++)
            free(v[i]);
    }
    return NULL;
}

int main(void)
{
    void *p = malloc(10);
    CHECK(p != NULL);
    CHECK(bsl_owns(p) == 1);
    free(p);
    /* allocations made inside libc.a go through our malloc too */
    char *s = strdup("static linking");
    CHECK(s != NULL && bsl_owns(s) == 1);
    free(s);
    char *a = NULL;
    CHECK(asprintf(&a, "%d-%s", 42, "x") > 0 && bsl_owns(a) == 1);
    free(a);
    void *m = NULL;
    CHECK(posix_memalign(&m, 4096, 10000) == 0 && ((uintptr_t)m & 4095) == 0 && bsl_owns(m) == 1);
    free(m);
    m = memalign(64, 100);
    CHECK(m != NULL && bsl_owns(m) == 1);
    m = realloc(m, 1 << 20);
    CHECK(m != NULL && bsl_owns(m) == 1);
    free(m);
    void *c = calloc(100, 100);
    CHECK(c != NULL && bsl_owns(c) == 1);
    CHECK(malloc_usable_size(c) >= 10000);
    free(c);
    void *h = malloc(10 << 20);
    CHECK(h != NULL && bsl_owns(h) == 1);
    free(h);
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, thread_main, (void *)(i + 1)) == 0);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(t[i], &r);
        CHECK(r == NULL);
    }
    FILE *f = tmpfile(); /* stdio buffers come from malloc */
    CHECK(f != NULL);
    if (f) {
        fprintf(f, "hello %d\n", 1);
        fclose(f);
    }
    if (bsl_test_nfailed) /* only with BSL_TEST_KEEP_GOING=1: a failed CHECK exits otherwise */
        return bsl_test_end();
    printf("static: ok (rseq=%d)\n", bsl_using_rseq());
    return 0;
}

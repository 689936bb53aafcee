/* bsl_using_rseq() reports the mode the environment asks for.
 * BSL_EXPECT_RSEQ (required): 1 = rseq per-CPU caches expected, 0 = per-thread fallback expected.
 * Registered with the default environment (1 on Linux 6.x + glibc 2.36, which registers rseq),
 * with BUDDYSLAB_OPTIONS=rseq=0, with GLIBC_TUNABLES=glibc.pthread.rseq=0 and under valgrind (0). */
#include "bsl_test.h"

#include <pthread.h>
#include <sys/rseq.h>

static int want;

static void *thread_main(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        void *p = malloc(32 + (size_t)i % 500);
        CHECK(p != NULL && bsl_owns(p) == 1);
        free(p);
    }
    CHECKF(bsl_using_rseq() == want, "thread: bsl_using_rseq() = %d, want %d", bsl_using_rseq(), want);
    return NULL;
}

int main(void)
{
    const char *e = getenv("BSL_EXPECT_RSEQ");
    if (!e || (strcmp(e, "0") && strcmp(e, "1"))) {
        fprintf(stderr, "rseq_mode: set BSL_EXPECT_RSEQ=0 or 1\n");
        return 2;
    }
    want = atoi(e);
    const char *opt = getenv("BUDDYSLAB_OPTIONS"), *tun = getenv("GLIBC_TUNABLES");
    fprintf(stderr, "rseq_mode: BSL_EXPECT_RSEQ=%d BUDDYSLAB_OPTIONS=%s GLIBC_TUNABLES=%s glibc __rseq_size=%u\n",
            want, opt ? opt : "", tun ? tun : "", (unsigned)__rseq_size);

    bsl_test_begin("rseq_mode"); /* checks that malloc is ours and the mode equals BSL_EXPECT_RSEQ */
    CHECKF(bsl_using_rseq() == want, "bsl_using_rseq() = %d, want %d", bsl_using_rseq(), want);
    if (want == 1)
        CHECKF(__rseq_size > 0, "expected rseq but glibc did not register it (__rseq_size == 0)");

    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, thread_main, NULL) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(bsl_using_rseq() == want);
    return bsl_test_end();
}

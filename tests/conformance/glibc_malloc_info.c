/* malloc_info writes an XML report and malloc_stats a text one, from any thread, while threads
 * allocate (the scenario of glibc malloc/tst-malloc_info, hardened_malloc test/malloc_info.c).
 *
 * malloc_info(0, fp) returns 0 and writes a document that starts with "<malloc" and ends with
 * "</malloc>"; malloc_info(1, fp) (no options are defined) returns EINVAL. Four threads allocate
 * and free (keeping some blocks alive so there is something to report) while the main thread calls
 * malloc_info and malloc_stats (stderr silenced) repeatedly; nothing crashes or hangs. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

static volatile int stop;

static void *churn(void *arg)
{
    bsl_rng r;
    bsl_rng_seed(&r, (uint64_t)(uintptr_t)arg);
    void *slots[64] = {0};
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        int i = (int)bsl_rand_below(&r, 64);
        free(slots[i]);
        slots[i] = malloc(bsl_rand_below(&r, 5) == 0 ? 40000 + bsl_rand_below(&r, 100000) : 1 + bsl_rand_below(&r, 2000));
        CHECK(slots[i] != NULL);
    }
    for (int i = 0; i < 64; i++)
        free(slots[i]);
    return NULL;
}

static char *report(int options, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    CHECK(f != NULL);
    *rc = malloc_info(options, f);
    fclose(f);
    return buf;
}

int main(void)
{
    conf_begin("glibc_malloc_info", 60);
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        CHECK(pthread_create(&th[i], NULL, churn, (void *)i) == 0);

    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    CHECK(saved >= 0 && devnull >= 0);
    for (int round = 0; round < 50; round++) {
        int rc;
        char *x = report(0, &rc);
        CHECKF(rc == 0, "malloc_info(0, fp) = %d", rc);
        CHECKF(x && strncmp(x, "<malloc", 7) == 0, "malloc_info output starts with %.40s", x ? x : "(null)");
        size_t n = x ? strlen(x) : 0;
        while (n && (x[n - 1] == '\n' || x[n - 1] == ' '))
            n--;
        CHECKF(n >= 9 && memcmp(x + n - 9, "</malloc>", 9) == 0, "malloc_info output does not end with </malloc>");
        if (round == 0)
            printf("malloc_info: %zu bytes of XML\n", strlen(x));
        free(x);
        x = report(1, &rc);
        CHECKF(rc == EINVAL, "malloc_info(1, fp) = %d, want EINVAL", rc);
        free(x);
        dup2(devnull, 2);
        malloc_stats();
        dup2(saved, 2);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    close(devnull);
    close(saved);
    return conf_end();
}

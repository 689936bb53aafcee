/* mallinfo2 and mallinfo report the heap (the scenario of glibc malloc/tst-mallinfo2, and
 * hardened_malloc's mallinfo/mallinfo2 tests).
 *
 * mallinfo2's fields are size_t wide. After allocating 19 blocks of 160*i bytes (i = 1..19) and
 * keeping them, uordblks (bytes in use) has grown by at least their total; after a 1 MiB and a
 * 6 MiB block it has grown by 7 MiB more, and after freeing everything it has come back down. The
 * old mallinfo's int fields agree with mallinfo2 where those fit. Both can be called from
 * several threads at once while they allocate. */
#include "conf.h"

#include <malloc.h>
#include <pthread.h>

#pragma GCC diagnostic ignored "-Wdeprecated-declarations" /* mallinfo: the old interface is tested too */

static void *volatile keep[32];

static void *spin(void *arg)
{
    (void)arg;
    for (int i = 0; i < 2000; i++) {
        void *p = malloc((size_t)(i % 700) * 8 + 1);
        struct mallinfo2 m = mallinfo2();
        struct mallinfo o = mallinfo();
        CHECKF(m.uordblks > 0 && o.uordblks != 0, "with a live block of %zu bytes: mallinfo2().uordblks %zu, "
               "mallinfo().uordblks %d (arena %zu)", (size_t)(i % 700) * 8 + 1, m.uordblks, o.uordblks, m.arena);
        free(p);
    }
    return NULL;
}

int main(void)
{
    conf_begin("glibc_mallinfo", 60);
    struct mallinfo2 mi1 = mallinfo2(), mi2, mi3, mi4;
    CHECK(sizeof mi1.arena == sizeof(size_t) && sizeof mi1.uordblks == sizeof(size_t));
    size_t total = 0;
    for (int i = 1; i < 20; i++) {
        keep[i] = malloc(160 * (size_t)i);
        CHECK(keep[i] != NULL);
        memset(keep[i], i, 160 * (size_t)i);
        total += 160 * (size_t)i;
    }
    mi2 = mallinfo2();
    CHECKF(mi2.uordblks >= mi1.uordblks + total, "uordblks %zu -> %zu after allocating %zu bytes", mi1.uordblks,
           mi2.uordblks, total);
    CHECKF(mi2.arena >= mi2.uordblks || mi2.hblkhd > 0, "arena %zu < uordblks %zu", mi2.arena, mi2.uordblks);
    keep[20] = malloc(1 * MiB);
    keep[21] = malloc(6 * MiB);
    CHECK(keep[20] && keep[21]);
    mi3 = mallinfo2();
    CHECKF(mi3.uordblks + mi3.hblkhd >= mi2.uordblks + mi2.hblkhd + 7 * MiB,
           "uordblks+hblkhd %zu -> %zu after 7 MiB more", mi2.uordblks + mi2.hblkhd, mi3.uordblks + mi3.hblkhd);
    struct mallinfo old = mallinfo();
    CHECKF(old.uordblks == (int)mi3.uordblks || old.uordblks == (int)mallinfo2().uordblks,
           "mallinfo().uordblks %d, mallinfo2().uordblks %zu", old.uordblks, mi3.uordblks);
    for (int i = 1; i < 22; i++) {
        free(keep[i]);
        keep[i] = NULL;
    }
    mi4 = mallinfo2();
    CHECKF(mi4.uordblks + mi4.hblkhd + total / 2 < mi3.uordblks + mi3.hblkhd,
           "uordblks+hblkhd %zu -> %zu after freeing everything", mi3.uordblks + mi3.hblkhd, mi4.uordblks + mi4.hblkhd);
    printf("mallinfo2: arena %zu uordblks %zu fordblks %zu hblks %zu hblkhd %zu keepcost %zu\n", mi3.arena,
           mi3.uordblks, mi3.fordblks, mi3.hblks, mi3.hblkhd, mi3.keepcost);

    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        CHECK(pthread_create(&th[i], NULL, spin, NULL) == 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    return conf_end();
}

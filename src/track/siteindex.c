/* The site index of a program without a dynamic loader (cc -static with the archive): what
 * liburcu's lock-free hash table does for sites.c in a dynamic program, which gets liburcu
 * through dlopen. A static program cannot dlopen, and linking liburcu's own archives in would
 * need them on every user's link line, pull in its helper threads, and make their allocations
 * the program's unless told apart by code range. Sites are never deleted, so the index needs
 * none of RCU's machinery: an open-addressing table of (hash, site) slots, read without a lock;
 * inserted into under sites.c's site_lock; grown by building a bigger table and publishing it.
 *
 * Locking and publication: `index` and every slot are written only with site_lock held (the
 * _locked functions). A slot's hash is stored before its site pointer (release), and a reader
 * loads the pointer (acquire) before the hash, so a reader sees either an empty slot or a whole
 * one. A grown table is filled before it is published (release). An old table is never freed: a
 * reader may still be probing it (no grace periods to wait for); it holds every site it held, so
 * a reader there misses at most sites published since, and the caller then takes site_lock and
 * looks again in the current table (track_sindex_lookup is the check, the insert the authority).
 * The old tables together are smaller than the current one. */
#include "track/track_int.h"

struct sindex_slot {
    uint64_t hash;    /* valid once site is set */
    const void *site; /* NULL: empty; set once, never cleared */
};
struct sindex {
    size_t mask;  /* slots - 1 (a power of two) */
    size_t count; /* slots in use (site_lock) */
    struct sindex_slot slot[];
};
static struct sindex *index_cur; /* the current table: acquire/release (NULL before the first insert) */

const void *track_sindex_lookup(uint64_t hash, int (*match)(const void *site, const void *key), const void *key)
{
    const struct sindex *t = __atomic_load_n(&index_cur, __ATOMIC_ACQUIRE);
    if (!t)
        return NULL;
    for (size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
        const void *s = __atomic_load_n(&t->slot[i].site, __ATOMIC_ACQUIRE);
        if (!s)
            return NULL;
        if (t->slot[i].hash == hash && match(s, key))
            return s;
    }
}

static void put(struct sindex *t, uint64_t hash, const void *site)
{
    size_t i = hash & t->mask;
    while (t->slot[i].site)
        i = (i + 1) & t->mask;
    t->slot[i].hash = hash;
    __atomic_store_n(&t->slot[i].site, site, __ATOMIC_RELEASE);
    t->count++;
}

int track_sindex_add_locked(uint64_t hash, const void *site)
{
    struct sindex *t = index_cur;
    if (!t || (t->count + 1) * 2 > t->mask + 1) { /* at most half full: probes stay short */
        size_t n = t ? (t->mask + 1) * 2 : 4096;
        struct sindex *nt = track_alloc(sizeof(*nt) + n * sizeof(nt->slot[0]));
        if (!nt)
            return -1;
        nt->mask = n - 1;
        for (size_t i = 0; t && i <= t->mask; i++)
            if (t->slot[i].site)
                put(nt, t->slot[i].hash, t->slot[i].site);
        __atomic_store_n(&index_cur, nt, __ATOMIC_RELEASE); /* the old table stays: see the top */
        t = nt;
    }
    put(t, hash, site);
    return 0;
}

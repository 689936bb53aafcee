/* Known leaks and known non-leaks in one program, each at its own site. */
#include <stdio.h>
#include <stdlib.h>

#include "leak_common.h"

struct node {
    struct node *next, *child;
    char pad[48];
}; /* 64 bytes */

void *volatile g_global;         /* keep_global's block: reachable from .bss */
char *volatile g_interior;       /* points inside keep_interior's block */
struct node *volatile g_list;    /* a reachable list */
static void *volatile g_data_ptr = (void *)1; /* in .data */

NOINLINE void *lk_direct(void)
{
    void *p = malloc(100);
    touch(p, 100);
    return p;
}

NOINLINE struct node *lk_child(void)
{
    struct node *c = malloc(200);
    touch(c, 200);
    return c;
}

NOINLINE void lk_parent(void)
{
    struct node *p = malloc(sizeof(*p));
    touch(p, sizeof(*p));
    p->next = NULL;
    p->child = lk_child();
}

NOINLINE void lk_realloc_chain(void)
{
    char *p = malloc(16);
    touch(p, 16);
    size_t sizes[] = {64, 1000, 40000, 3000};
    for (unsigned i = 0; i < 4; i++) {
        p = realloc(p, sizes[i]);
        touch(p, sizes[i]);
    }
}

NOINLINE void lk_cycle(void)
{
    struct node *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    touch(a, sizeof(*a));
    touch(b, sizeof(*b));
    a->next = b;
    b->next = a;
    a->child = b->child = NULL;
}

NOINLINE void lk_calloc(void) { touch(calloc(10, 30), 300); }

NOINLINE void lk_memalign(void)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, 256) == 0)
        touch(p, 256);
}

NOINLINE void lk_large(void) { touch(malloc(100000), 100000); }

NOINLINE void lk_huge(void) { touch(malloc(6u << 20), 4096); }

NOINLINE void lk_many(void)
{
    for (int i = 0; i < 10; i++)
        touch(malloc(24), 24);
}

NOINLINE void keep_global(void)
{
    g_global = malloc(33);
    touch(g_global, 33);
}

NOINLINE void keep_interior(void)
{
    char *p = malloc(64);
    touch(p, 64);
    g_interior = p + 10;
}

NOINLINE void keep_list(void)
{
    for (int i = 0; i < 3; i++) {
        struct node *n = malloc(sizeof(*n));
        touch(n, sizeof(*n));
        n->child = NULL;
        n->next = g_list;
        g_list = n;
    }
}

NOINLINE void keep_data(void) { g_data_ptr = malloc(48); }

NOINLINE void freed(void)
{
    for (int i = 0; i < 5; i++) {
        void *p = malloc(500 + i);
        touch(p, 500);
        free(p);
    }
    void *q = malloc(70000);
    touch(q, 70000);
    free(q);
}

int main(void)
{
    void *p = lk_direct();
    p = NULL;
    lk_parent();
    lk_realloc_chain();
    lk_cycle();
    lk_calloc();
    lk_memalign();
    lk_large();
    lk_huge();
    lk_many();
    keep_global();
    keep_interior();
    keep_list();
    keep_data();
    freed();
    scrub_stack();
    printf("basic: done%s\n", p ? "?" : "");
    return 0;
}

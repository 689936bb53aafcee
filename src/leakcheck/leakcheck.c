/* Placeholder until the leak tracker lands: leak tracking is not available in this build, and
 * says so instead of pretending to track. */
#include "leakcheck/leakcheck.h"

int leak_init(void)
{
    os_printf(2, "buddyslab: leak tracking (options leak, leak_sample) is not available in this build\n");
    return 0;
}

void leak_on_alloc(void *p, size_t size)
{
    (void)p;
    (void)size;
}

void leak_on_free(void *p) { (void)p; }

void leak_at_exit(void) {}

/* Architectures without our rseq assembly: the operations always fail, and pcp_init() never
 * selects rseq mode, so the per-thread fallback carries the load. */
#include "slab/pcp.h"

void *pcp_rseq_pop(unsigned c) { (void)c; return NULL; }
int pcp_rseq_push(void *p, unsigned c) { (void)p; (void)c; return 0; }
unsigned pcp_rseq_pop_bulk(void **out, unsigned n, unsigned c) { (void)out; (void)n; (void)c; return 0; }
unsigned pcp_rseq_push_bulk(void *const *in, unsigned n, unsigned c) { (void)in; (void)n; (void)c; return 0; }

/* Architectures without rseq sequences here: the operations always fail and pcp_init() never
 * selects rseq mode, so the per-thread fallback carries the load. */
#ifndef BSL_PCP_RSEQ_NONE_H
#define BSL_PCP_RSEQ_NONE_H

#define PCP_HAVE_RSEQ 0

static inline void *pcp_rseq_pop(unsigned c) { (void)c; return NULL; }
static inline int pcp_rseq_push(void *p, unsigned c) { (void)p; (void)c; return 0; }
static inline unsigned pcp_rseq_pop_bulk(void **out, unsigned n, unsigned c) { (void)out; (void)n; (void)c; return 0; }
static inline unsigned pcp_rseq_push_bulk(void *const *in, unsigned n, unsigned c) { (void)in; (void)n; (void)c; return 0; }

#endif

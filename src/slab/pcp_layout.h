/* Layout constants shared by the C code and the rseq assembly (pcp_rseq_<arch>.h), which gets them
 * as strings (PCP_STR): one definition for both, checked against the structs they describe
 * (_Static_assert below for struct pcp_bin and struct pcp, in pcp.c for the kernel's struct rseq
 * and struct rseq_cs). Plain #defines only: the assembly needs literals. */
#ifndef BSL_PCP_LAYOUT_H
#define BSL_PCP_LAYOUT_H

/* Caches: ids at or above PCP_MAX_CID use the kmem_caches directly; a cache is 1 << PCP_SHIFT bytes
 * (the assembly computes &pcp_cpus[cid].bins[c] as cid << PCP_SHIFT plus c << PCP_BIN_SHIFT). */
#define PCP_MAX_CID 1024
#define PCP_SHIFT 11
/* struct pcp_bin: 1 << PCP_BIN_SHIFT bytes; its fields' offsets. */
#define PCP_BIN_SHIFT 4
#define PCP_BIN_TOP 0
#define PCP_BIN_BASE_LO 8
#define PCP_BIN_END_LO 12

/* The kernel's struct rseq (linux/rseq.h; ABI, never changes): cpu_id_start at 0, cpu_id at 4
 * (negative while not registered), rseq_cs at 8, flags at 16; Linux 6.3+ adds node_id at 20 and
 * mm_cid at 24 (getauxval(AT_RSEQ_FEATURE_SIZE) says whether the kernel fills them). */
#define RSEQ_OFF_CPU_ID 4
#define RSEQ_OFF_RSEQ_CS 8
#define RSEQ_OFF_MM_CID 24
/* The signature that must precede an abort handler: glibc registers its struct rseq with it. */
#define PCP_RSEQ_SIG 0x53053053

#define PCP_STR_(x) #x
#define PCP_STR(x) PCP_STR_(x)

#endif

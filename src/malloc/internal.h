/* The public API layer's shared state: initialisation, options, misuse reports. */
#ifndef BSL_MALLOC_INTERNAL_H
#define BSL_MALLOC_INTERNAL_H

#include "buddyslab.h"
#include "slab/pcp.h"

#define BSL_EXPORT __attribute__((visibility("default")))

BSL_HIDDEN extern int bsl_inited;
BSL_HIDDEN void bsl_init_slow(void);
static inline void bsl_ensure_init(void)
{
    if (unlikely(!__atomic_load_n(&bsl_inited, __ATOMIC_ACQUIRE)))
        bsl_init_slow();
}

/* ---- options: one table (options.c) drives the env parser, bsl_option_set and the docs ---- */
enum opt_kind { OPT_BOOL, OPT_INT };
struct bsl_option {
    const char *name;
    enum opt_kind kind;
    long def, min, max;
    long *value;
    const char *help;
};
BSL_HIDDEN extern const struct bsl_option bsl_options[];
BSL_HIDDEN extern const unsigned bsl_nr_options;
BSL_HIDDEN extern long opt_stats, opt_rseq, opt_decay_ms, opt_thp, opt_shards, opt_background_thread;
/* Parse BUDDYSLAB_OPTIONS (no allocation). Bad entries: one line on stderr each, defaults kept. */
BSL_HIDDEN void options_parse_env(void);
/* Apply option values to the layers below (after init and after bsl_option_set). */
BSL_HIDDEN void options_apply(void);

/* Periodic maintenance (decay.c): call from slow paths; cheap when it is not yet time. */
BSL_HIDDEN void bsl_tick_maybe(void);
BSL_HIDDEN void bsl_tick_postfork_child(void);

/* Heap misuse: print one line naming the pointer and abort (glibc's convention). */
BSL_HIDDEN __attribute__((noreturn, cold)) void bsl_misuse(const char *func, const char *what, const void *p);

#endif

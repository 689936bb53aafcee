/* Prints docs/OPTIONS.md from the options table in src/malloc/options.c (the one source of truth).
 * Linked with the static archive to reach the table. Usage: gen-options > docs/OPTIONS.md */
#include <stdio.h>

#include "malloc/internal.h"

int main(void)
{
    printf("# BUDDYSLAB_OPTIONS\n\n");
    printf("Generated from the options table in `src/malloc/options.c` by `tools/gen-options`; the\n"
           "`options-doc` test fails when this file and the table differ. Set options as\n"
           "`BUDDYSLAB_OPTIONS=\"key=value,key=value\"` (a bare `key` means `key=1`), or from code with\n"
           "`bsl_option_set(\"key\", \"value\")`. A bad key or value prints one line naming it and keeps\n"
           "the previous value.\n\n");
    printf("| name | kind | default | meaning | example |\n");
    printf("| :--- | :--- | :------ | :------ | :------ |\n");
    for (unsigned i = 0; i < bsl_nr_options; i++) {
        const struct bsl_option *o = &bsl_options[i];
        const char *kind = o->kind == OPT_BOOL   ? "bool"
                           : o->kind == OPT_INT  ? "integer"
                           : o->kind == OPT_SIZE ? "size"
                           : o->kind == OPT_LIST ? "list"
                                                 : "string";
        char def[64], ex[96];
        switch (o->kind) {
        case OPT_BOOL:
            snprintf(def, sizeof def, "%ld", o->def);
            snprintf(ex, sizeof ex, "`%s=%d`", o->name, o->def ? 0 : 1);
            break;
        case OPT_INT:
            snprintf(def, sizeof def, "%ld", o->def);
            snprintf(ex, sizeof ex, "`%s=%ld`", o->name, o->def == o->min ? o->max < 64 ? o->max : o->def + 1 : o->min);
            break;
        case OPT_SIZE:
            snprintf(def, sizeof def, "%ld", o->def);
            snprintf(ex, sizeof ex, "`%s=64M`", o->name);
            break;
        default:
            snprintf(def, sizeof def, "(empty)");
            snprintf(ex, sizeof ex, "`%s=PATH`", o->name);
        }
        if (o->kind == OPT_STR && o->sdef[0])
            snprintf(def, sizeof def, "%s", o->sdef);
        if (o->example)
            snprintf(ex, sizeof ex, "%s", o->example);
        printf("| `%s` | %s | %s | %s | %s |\n", o->name, kind, def, o->help, ex);
    }
    return 0;
}

/* One leak made inside the C library (strdup), for the report's frames outward of main: they get
 * names but no file and line (src/track/out.c), where libc's own frame above main gets both when
 * the C library's debug information is installed (libc6-dbg). */
#include <stdio.h>
#include <string.h>

char *volatile g_sink;

int main(void)
{
    g_sink = strdup("past main");
    g_sink = NULL; /* lost */
    puts("past_main: done");
    return 0;
}

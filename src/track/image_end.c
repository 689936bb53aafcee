/* The last object of the library's image: see image_begin.c. */
#include "track/track_int.h"

BSL_HIDDEN __attribute__((used, noinline)) int track_image_text_end(void) { return 3; }
BSL_HIDDEN __attribute__((used, noinline, cold)) int track_image_cold_end(void) { return 4; }
BSL_HIDDEN __attribute__((used)) char track_image_data_end[1] = {1};
BSL_HIDDEN __attribute__((used)) char track_image_bss_end[1];
BSL_HIDDEN __attribute__((used)) BSL_BIG_BSS char track_image_lbss_end[1];

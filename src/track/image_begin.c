/* The first object of the library's image, image_end.c the last: their markers bound the
 * library's code and data when it is linked into a program (the static archive), where the
 * program's segments are not ours alone (unwind.c: track_own_code, track_own_data).
 *
 * Invariant: this file is the first of bsl_sources and image_end.c the last, and the archive is
 * prelinked (meson.build: `ld -r` into one object), so in each section kind the library's
 * contribution is one input section that starts with this file's part and ends with image_end.c's.
 * The sections that hold anything the tracker must tell apart: .text (the allocation path),
 * .text.unlikely (the cold hooked paths and the .cold parts of hot functions), .data, .bss and
 * .lbss.bsl (BSL_BIG_BSS: the big zeroed tables, which hold block addresses). */
#include "track/track_int.h"

BSL_HIDDEN __attribute__((used, noinline)) int track_image_text_begin(void) { return 1; }
BSL_HIDDEN __attribute__((used, noinline, cold)) int track_image_cold_begin(void) { return 2; }
BSL_HIDDEN __attribute__((used)) char track_image_data_begin[1] = {1};
BSL_HIDDEN __attribute__((used)) char track_image_bss_begin[1];
BSL_HIDDEN __attribute__((used)) BSL_BIG_BSS char track_image_lbss_begin[1]; /* the big zeroed tables */

/* Text helpers: positions in a source, UTF-8 encoding, and "did you mean"
 * hints from an edit distance. */
#ifndef RZ_COMMON_TEXT_H
#define RZ_COMMON_TEXT_H

#include "common/internal.h"

/* LINE:COLUMN (1-based) of byte `off` in `src` (clamped to `len`). */
RZ_HIDDEN void rz__text_position(const char *src, size_t len, size_t off,
                                 uint32_t *line, uint32_t *column);

/* Encode code point `cp` (at most 0x10FFFF; the caller rejects others) as
 * UTF-8 into `out`; returns the bytes written, 1 to 4. */
RZ_HIDDEN size_t rz__utf8_put(uint32_t cp, char out[4]);
/* Well-formed UTF-8: no overlongs, surrogates or code points past U+10FFFF. */
RZ_HIDDEN bool rz__utf8_valid(const unsigned char *s, size_t n);
/* Where the first sequence that is not well-formed starts; `n` if none. */
RZ_HIDDEN size_t rz__utf8_bad_at(const unsigned char *s, size_t n);

/* Optimal string alignment distance (edits plus adjacent transpositions,
 * so "frist" is one step from "first"); `limit` + 1 when it is larger than
 * `limit` or a string is over 64 bytes. */
RZ_HIDDEN size_t rz__edit_distance(const char *a, const char *b, size_t limit);

/* The closest of some candidates to a misspelt name. */
typedef struct rz__suggest {
    const char *want;
    const char *best;   /* borrowed from the candidate given; NULL: none */
    size_t dist, limit;
} rz__suggest;

/* A limit that grows with the name: none below 3 bytes (short names are all
 * close to each other), 1 below 6, 2 below 10, else 3. */
RZ_HIDDEN void rz__suggest_init(rz__suggest *s, const char *want);
/* With an explicit limit. */
RZ_HIDDEN void rz__suggest_init_limit(rz__suggest *s, const char *want,
                                      size_t limit);
RZ_HIDDEN void rz__suggest_try(rz__suggest *s, const char *cand);
/* "; did you mean 'x'?" in `buf`, or "" when nothing was close. */
RZ_HIDDEN const char *rz__suggest_text(const rz__suggest *s, char *buf,
                                       size_t cap);

#endif

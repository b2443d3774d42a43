/* JSON helpers every area may use: RFC 6901 pointers, mapping a pointer back
 * to LINE:COLUMN in the source text, and typed field readers whose errors
 * carry the JSON pointer of the offending field. */
#ifndef RZ_COMMON_JSON_H
#define RZ_COMMON_JSON_H

#include <cjson/cJSON.h>

#include "common/array.h"
#include "common/internal.h"

/* ---- Pointers (pointer.c) ---- */

/* Append one RFC 6901 reference token (escaping ~ and /) to `b`. */
RZ_HIDDEN void rz__pointer_push(rz__buf *b, const char *token, size_t n);
/* Next token of `*p` (which starts at '/'), unescaped into `tok`; false at
 * the end. Tokens longer than `cap` are truncated (they then match nothing). */
RZ_HIDDEN bool rz__pointer_next(const char **p, char *tok, size_t cap,
                                size_t *toklen);
/* With `p` just past a string's opening quote: just past its closing one
 * (or `end`). */
RZ_HIDDEN const char *rz__json_string_end(const char *p, const char *end);
/* LINE:COLUMN of the value at `pointer` in the JSON text `src` (valid
 * JSON), or of the deepest part of the pointer that exists. */
RZ_HIDDEN void rz__json_locate(const char *src, size_t len, const char *pointer,
                               uint32_t *line, uint32_t *column);

/* ---- Strict field readers (fields.c) ----
 * Absent fields leave *out untouched and return RZ_OK; present ones of the
 * wrong type or out of range return RZ_EINVALID with the JSON pointer
 * `base`/`name` set in rz_error_last(). */
/* RZ_EINVALID with pointer `base`/`name` and "POINTER: what" as message. */
RZ_HIDDEN int rz__json_field_error(const char *base, const char *name,
                                   const char *what);
RZ_HIDDEN int rz__json_u64(const cJSON *obj, const char *name, uint64_t max,
                           const char *base, uint64_t *out);
/* A money field "<x>_micros" (whole micro-dollars, <= max), or for one
 * release its cents spelling "<x>_cents" converted exactly (x 10,000,
 * checked against max). Both at once, or a bad value: RZ_EINVALID naming
 * the field. `name` must end in "_micros". Absent: RZ_OK, *out untouched;
 * *found (may be NULL) says whether either was there. */
RZ_HIDDEN int rz__json_money(const cJSON *obj, const char *name, uint64_t max,
                             const char *base, uint64_t *out, bool *found);
RZ_HIDDEN int rz__json_real(const cJSON *obj, const char *name, double lo,
                            double hi, const char *base, double *out);
/* Strings up to RZ__JSON_STR_MAX bytes; *out borrowed from the document. */
#define RZ__JSON_STR_MAX 1024
RZ_HIDDEN int rz__json_str(const cJSON *obj, const char *name,
                           const char *base, const char **out);
RZ_HIDDEN int rz__json_obj(const cJSON *obj, const char *name,
                           const char *base, const cJSON **out);
RZ_HIDDEN int rz__json_strv(const cJSON *obj, const char *name,
                            const char *base, rz__strv *out);
RZ_HIDDEN int rz__json_labels(const cJSON *obj, const char *name,
                              const char *base, rz__labels *out);
/* Copy members of `src` missing from `dst` (recursively into objects and
 * arrays of objects), so unknown fields survive a round trip. */
RZ_HIDDEN int rz__json_keep_unknown(cJSON *dst, const cJSON *src);
/* A list document: an array, or an object holding the array under `key`. */
RZ_HIDDEN int rz__json_list(const cJSON *root, const char *key,
                            const cJSON **arr);
/* What a strict reader refuses before cJSON sees the text (cJSON keeps
 * any bytes in strings and rounds every number to a double): text that is
 * not UTF-8, a \u0000 escape, an integer literal past 2^53 (one with a
 * fraction or an exponent is a float, approximate by nature). RZ_ESYNTAX
 * naming the byte; RZ_OK for anything else, malformed JSON included. */
RZ_HIDDEN int rz__json_text_check(const char *s, size_t len);
/* Whether `s` is one JSON value cJSON parses (RFC 8259, nesting up to
 * cJSON's limit), allocating nothing: after cJSON_Parse returned NULL, true
 * means memory ran out, not that the text is malformed. */
RZ_HIDDEN bool rz__json_valid(const char *s, size_t len);
/* Parse a whole document with a size cap; RZ_ESYNTAX with the offset,
 * RZ_ENOMEM when memory ran out. */
RZ_HIDDEN int rz__json_parse(cJSON **out, const char *json, size_t len);
/* "MAJOR.MINOR" (a string, or a number such as 8.6), each part 0..999. */
RZ_HIDDEN int rz__json_major_minor(const cJSON *obj, const char *name,
                                   const char *base, uint32_t *major,
                                   uint32_t *minor);

/* Builds element `i` of a `list` of elements from `item` (its pointer
 * `base`, "/i"). */
typedef int (*rz__json_item_fn)(void *list, size_t i, const cJSON *item,
                                const char *base);
/* Parse a list document (rz__json_list) into a new array of `count`
 * elements of `elem_size` bytes, one `item` call each; on failure the
 * elements built so far go to `free_list`, which also frees the array. */
RZ_HIDDEN int rz__json_parse_list(void **out, size_t *count, const char *json,
                                  size_t len, const char *key, size_t elem_size,
                                  rz__json_item_fn item,
                                  void (*free_list)(void *list, size_t n));

#endif

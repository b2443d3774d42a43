/* Internal helpers shared by every area: errors, diagnostics, buffers, maps. */
#ifndef RZ_INTERNAL_H
#define RZ_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

#define RZ_HIDDEN __attribute__((visibility("hidden")))
#define RZ_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define RZ_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RZ_NPOS ((size_t)-1)

/* Set the thread's last error and return `code`. */
RZ_HIDDEN int rz__error(int code, const char *fmt, ...) RZ_PRINTF(2, 3);
RZ_HIDDEN int rz__error_at(int code, const char *file, uint32_t line,
                           uint32_t column, const char *pointer,
                           const char *fmt, ...) RZ_PRINTF(6, 7);

/* Append a diagnostic. `diags` may be NULL (then only counts as the last
 * error). Returns `code`. */
RZ_HIDDEN int rz__diag(rz_diags *diags, rz_severity sev, int code,
                       const char *file, uint32_t line, uint32_t column,
                       const char *pointer, const char *fmt, ...) RZ_PRINTF(8, 9);
RZ_HIDDEN int rz__vdiag(rz_diags *diags, rz_severity sev, int code,
                        const char *file, uint32_t line, uint32_t column,
                        const char *pointer, const char *fmt, va_list ap);

/* malloc, calloc and realloc as the library calls them: release with free.
 * A test arms rz__alloc_fail_at(n, persist) to make the nth call from then
 * on return NULL, and with `persist` every later one too (0 disarms);
 * rz__alloc_calls() counts the calls made since arming. Tests only. */
RZ_HIDDEN void *rz__malloc(size_t n);
RZ_HIDDEN void *rz__calloc(size_t n, size_t size);
RZ_HIDDEN void *rz__realloc(void *p, size_t n);
RZ_HIDDEN void rz__alloc_fail_at(long n, bool persist);
RZ_HIDDEN long rz__alloc_calls(void);

RZ_HIDDEN char *rz__strdup(const char *s);          /* NULL-safe */
RZ_HIDDEN char *rz__strndup(const char *s, size_t n);
RZ_HIDDEN char *rz__asprintf(const char *fmt, ...) RZ_PRINTF(1, 2);

/* Growable byte buffer; `data` is always NUL-terminated when non-NULL. */
typedef struct rz__buf {
    char *data;
    size_t len, cap;
    bool failed;   /* an allocation failed; further appends are no-ops */
} rz__buf;

RZ_HIDDEN void rz__buf_append(rz__buf *b, const void *p, size_t n);
RZ_HIDDEN void rz__buf_puts(rz__buf *b, const char *s);
RZ_HIDDEN void rz__buf_printf(rz__buf *b, const char *fmt, ...) RZ_PRINTF(2, 3);
RZ_HIDDEN char *rz__buf_take(rz__buf *b);  /* returns data (or NULL), resets */
/* Room for n more bytes at b->data + b->len and a NUL after them, or NULL
 * (then b->failed): the caller writes them and adds n to b->len. */
RZ_HIDDEN char *rz__buf_room(rz__buf *b, size_t n);
RZ_HIDDEN void rz__buf_free(rz__buf *b);

/* Open-addressing hash map from borrowed string keys to size_t values. */
typedef struct rz__map {
    const char **keys;
    uint64_t *hashes;   /* compared before keys: most probes never strcmp */
    size_t *vals;
    size_t cap, len;
} rz__map;

RZ_HIDDEN int rz__map_init(rz__map *m, size_t expected);
RZ_HIDDEN void rz__map_free(rz__map *m);
/* RZ_OK, RZ_EEXISTS (value left unchanged) or RZ_ENOMEM. */
RZ_HIDDEN int rz__map_put(rz__map *m, const char *key, size_t val);
RZ_HIDDEN size_t rz__map_get(const rz__map *m, const char *key); /* RZ_NPOS */
/* The entry of a key equal to `key` now borrows `key` (the old string is
 * about to go); RZ_ENOENT if there is none. */
RZ_HIDDEN int rz__map_rekey(rz__map *m, const char *key);

/* Read a whole file ("-" is stdin) up to `max` bytes; RZ_ETOOBIG beyond. */
RZ_HIDDEN int rz__read_file(const char *path, size_t max, char **out,
                            size_t *len);

/* Shortest text that reads back as exactly `d` (%.15g/%.16g/%.17g). */
RZ_HIDDEN void rz__number_format(double d, char *buf, size_t cap);
/* JSON text of `v` with every number exact (cJSON rounds some, and drops
 * the sign of -0). Release with free; NULL when out of memory. */
typedef struct cJSON cJSON;
RZ_HIDDEN char *rz__json_print(const cJSON *v, bool pretty);
/* Turn every number of a tree into raw text of that form, in place. */
RZ_HIDDEN bool rz__json_raw_numbers(cJSON *v);
/* `s` as cJSON prints a string, quotes included, byte for byte (records
 * printed without a tree must read as the tree's did; NULL prints ""):
 * appended to b; or its length, and the text put at o (no NUL), which
 * returns past it. */
RZ_HIDDEN void rz__json_quote(rz__buf *b, const char *s);
RZ_HIDDEN size_t rz__json_quoted_len(const char *s);
RZ_HIDDEN char *rz__json_quoted_put(char *o, const char *s);

/* Milliseconds on the monotonic clock / since the epoch. */
RZ_HIDDEN uint64_t rz__now_ms(void);
/* Tests only: a clock rz__now_ms reads instead of CLOCK_MONOTONIC (NULL:
 * the real one), to put a timer's due between two of a caller's reads. */
RZ_HIDDEN extern uint64_t (*rz__test_now_ms)(void);
RZ_HIDDEN uint64_t rz__wall_ms(void);

#endif

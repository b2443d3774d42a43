/* Content-addressed files: the store behind file outputs (`type: file`,
 * docs/flow-format.md). A blob is kept once, under its SHA-256, at
 * DIR/sha256/<2 hex>/<64 hex>, read-only; copies out are checked against
 * the digest on the way. Files are streamed in fixed chunks, never held
 * whole in memory, and capped as they are read (a file growing past its
 * stat size cannot slip by). Used by the attempt for file outputs and
 * inputs (lib/exec/files.c).
 */
#ifndef RZ_STORE_BLOB_H
#define RZ_STORE_BLOB_H

#include <stdbool.h>
#include <stdint.h>

#include "common/internal.h"

#define RZ_BLOB_HEX 64

/* Whether `name` may name a file in an output folder: relative, 1 to 1024
 * bytes, components of 1 to 255 bytes, none "." or "..", no control byte
 * or backslash. False with the reason in `why`. */
RZ_HIDDEN bool rz__blob_name_ok(const char *name, char *why, size_t cap);

/* Stores the regular file `name` under folder `from` (opened without
 * following a symlink at any level) in `dir`: *size and `hex` (65 bytes)
 * set. RZ_ETOOBIG past `max` bytes, RZ_EINVAL for a name or a file that
 * is not a plain one; the store is unchanged on failure. */
RZ_HIDDEN int rz__blob_put(const char *dir, const char *from, const char *name,
                           uint64_t max, char hex[RZ_BLOB_HEX + 1], uint64_t *size);

/* Copies blob `hex` to `dest` (created, mode 0444), hashing it on the
 * way: RZ_EIO (and no `dest`) if the stored bytes no longer match,
 * RZ_ENOENT if there is no such blob. */
RZ_HIDDEN int rz__blob_copy_out(const char *dir, const char *hex, const char *dest);

/* A set of digests (32 bytes each): the blobs some record names (the
 * sweep's mark), or the files a run made (lib/exec/file_refs.c). Either
 * added in bulk in any order (rz__blob_set_scan) and then sorted once by
 * rz__blob_set_seal, or added one at a time to a sorted set by
 * rz__blob_set_insert, which keeps it sorted; rz__blob_set_has wants it
 * sorted. A zeroed struct is an empty, sorted set. */
typedef struct rz__blob_set {
    unsigned char (*d)[32];
    size_t n, cap;
} rz__blob_set;
/* Every run of exactly 64 lowercase hex digits in `text` added (a record
 * is not parsed: what looks like a digest anywhere, escaped JSON included,
 * is kept, so nothing a record names can be missed). */
RZ_HIDDEN int rz__blob_set_scan(rz__blob_set *s, const char *text, size_t len);
RZ_HIDDEN void rz__blob_set_seal(rz__blob_set *s);
/* `d` added to a sorted set, which stays sorted (once: already there, it
 * is not added again). */
RZ_HIDDEN int rz__blob_set_insert(rz__blob_set *s, const unsigned char d[32]);
/* The 32 bytes of a digest in 64 lowercase hex digits; false for any
 * other string. */
RZ_HIDDEN bool rz__blob_digest_of(const char *hex, unsigned char d[32]);
RZ_HIDDEN bool rz__blob_set_has(const rz__blob_set *s, const unsigned char d[32]);
RZ_HIDDEN void rz__blob_set_free(rz__blob_set *s);

/* Blobs of `dir` not in `keep` and last written before `before_ms` (ms
 * since the epoch) removed, and leftover partial writes as old; how many
 * and their bytes in *removed and *bytes. A blob is moved aside
 * (sha256/<xx>/gc.<hex>) before it is removed; what a sweep that died
 * left so is removed first on the same terms, or put back. A name that is
 * not a blob's is left alone. */
RZ_HIDDEN int rz__blob_sweep(const char *dir, const rz__blob_set *keep,
                             uint64_t before_ms, size_t *removed, uint64_t *bytes);

#endif

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

#endif

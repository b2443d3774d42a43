/* rhizos/common.h — version, export macro, status codes, errors, memory.
 *
 * Every fallible function returns an int: RZ_OK (0) or a negative rz_status.
 * Detail about the last failure on this thread (message, source location or
 * JSON pointer) is in rz_error_last(); it stays valid until the next call into
 * the library on the same thread.
 */
#ifndef RHIZOS_COMMON_H
#define RHIZOS_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define RZ_EXTERN __declspec(dllexport)
#elif defined(__GNUC__)
#  define RZ_EXTERN __attribute__((visibility("default")))
#else
#  define RZ_EXTERN
#endif

/* On a function returning a status: the compiler warns when a caller
 * drops it. Ignore one on purpose with (void)! and a comment saying why:
 * GCC does not take a plain (void) cast as using the value. */
#if defined(__GNUC__) || defined(__clang__)
#  define RZ_NODISCARD __attribute__((warn_unused_result))
#else
#  define RZ_NODISCARD
#endif

/* The status table. New codes go at the end; never renumber. */
#define RZ_STATUS_MAP(X)                                                     \
    X(OK,           0,  "success")                                           \
    X(ENOMEM,      -1,  "out of memory")                                     \
    X(EINVAL,      -2,  "invalid argument")                                  \
    X(EIO,         -3,  "input/output error")                                \
    X(ENOENT,      -4,  "not found")                                         \
    X(ESYNTAX,     -5,  "syntax error")                                      \
    X(EINVALID,    -6,  "validation failed")                                 \
    X(ECYCLE,      -7,  "dependency cycle")                                  \
    X(EDUPLICATE,  -8,  "duplicate identifier")                              \
    X(EUNKNOWN,    -9,  "reference to an unknown node or port")              \
    X(ETYPE,      -10,  "type mismatch")                                     \
    X(EMODULE,    -11,  "unknown module or version")                         \
    X(EUNCONNECTED, -12, "required input not connected")                     \
    X(EEXPR,      -13,  "malformed expression")                              \
    X(EUPSTREAM,  -14,  "reference to a step that is not upstream")          \
    X(ECREDENTIAL, -15, "malformed credential reference")                    \
    X(ECONFIG,    -16,  "invalid module configuration")                      \
    X(ESTATE,     -17,  "operation not allowed in the current state")        \
    X(ETIMEOUT,   -18,  "timed out")                                         \
    X(EEXEC,      -19,  "execution failed")                                  \
    X(ETOOBIG,    -20,  "input too large")                                   \
    X(EEXISTS,    -21,  "already exists")                                    \
    X(EDB,        -22,  "database error")                                    \
    X(ECANCELED,  -23,  "cancelled")                                         \
    X(EUNSUPPORTED, -24, "not supported")                                    \
    X(EMANIFEST,  -25,  "invalid module manifest")                           \
    X(EINTERNAL,  -26,  "internal error")                                    \
    X(EAUTH,      -27,  "authentication failed")                             \
    X(EEXPIRED,   -28,  "expired")                                           \
    X(EEXISTS_DIFFERENT, -29, "exists with different fields")                \
    X(EFUNDS,     -30,  "insufficient funds")                                \
    X(ELINKED,    -31,  "a linked operation failed")                         \
    X(EPOSTED,    -32,  "already posted")                                    \
    X(EVOIDED,    -33,  "already voided")                                    \
    X(EAMOUNT,    -34,  "amount exceeds what is pending")                    \
    X(EOVERFLOW,  -35,  "amount overflow")                                   \
    X(EDENIED,    -36,  "permission denied")                                 \
    X(ECONNECT,   -37,  "cannot reach the server")                           \
    X(EPROTOCOL,  -38,  "unexpected reply from the server")

typedef enum rz_status {
#define RZ__STATUS_ENUM(name, value, text) RZ_##name = value,
    RZ_STATUS_MAP(RZ__STATUS_ENUM)
#undef RZ__STATUS_ENUM
    RZ__STATUS_LAST = -38
} rz_status;

/* "out of memory"; never NULL, "unknown status" for codes not in the table. */
RZ_EXTERN const char *rz_strerror(int code);
/* "RZ_ENOMEM"; never NULL, "RZ_EUNKNOWN_STATUS" for codes not in the table. */
RZ_EXTERN const char *rz_status_name(int code);

/* Detail of the last failure on the calling thread. */
typedef struct rz_error {
    int code;              /* an rz_status, RZ_OK when nothing failed */
    char message[512];     /* human-readable, no trailing newline */
    char file[256];        /* source the error refers to, "" if none */
    uint32_t line;         /* 1-based; 0 if unknown */
    uint32_t column;       /* 1-based; 0 if unknown */
    char pointer[256];     /* JSON pointer into the document, "" if none */
} rz_error;

/* Never NULL. Borrowed: valid until the next library call on this thread. */
RZ_EXTERN const rz_error *rz_error_last(void);
RZ_EXTERN void rz_error_clear(void);

/* Release memory the library handed out (strings, buffers). NULL is fine. */
RZ_EXTERN void rz_free(void *ptr);

/* Runtime version of the library, e.g. "0.1.0". */
RZ_EXTERN const char *rz_version(void);

/* The folder of the data that ships with RhizOS: `what` is "modules" (the
 * example module registry), "prices" (the price tables of estimates) or
 * "console" (the web console's built files, when built with -Dui).
 * An installed library answers $datadir/rhizos/<what>; a library loaded
 * from its build tree (a build.ninja beside its folder) answers the source
 * tree's examples/modules or data/prices, or the build tree's
 * console/dist, so a checkout runs without installing. Never the working
 * directory. Release with rz_free; NULL with RZ_EINVAL for another `what`,
 * RZ_ENOENT when the folder is missing. */
RZ_EXTERN char *rz_data_path(const char *what);

/* Create folder `path` and any missing parents (mkdir -p), each new one
 * with permission bits `mode` (e.g. 0700); folders that exist are left as
 * they are. RZ_EINVAL for an empty path; RZ_EIO naming the folder that
 * could not be made (or a path that exists and is not a folder), with
 * errno kept as the system left it. */
RZ_EXTERN RZ_NODISCARD int rz_fs_mkdirs(const char *path, unsigned mode);

/* Diagnostics: every problem found in one pass, compiler style. */
typedef enum rz_severity { RZ_SEV_ERROR = 0, RZ_SEV_WARNING = 1, RZ_SEV_NOTE = 2 } rz_severity;

typedef struct rz_diag {
    const char *file;      /* "" if none */
    uint32_t line;         /* 1-based; 0 if unknown */
    uint32_t column;       /* 1-based; 0 if unknown */
    int code;              /* an rz_status; its name is the diagnostic code */
    rz_severity severity;
    const char *message;
    const char *pointer;   /* JSON pointer of the offending value, "" if none */
} rz_diag;

typedef struct rz_diags rz_diags;

RZ_EXTERN RZ_NODISCARD int rz_diags_new(rz_diags **out);
RZ_EXTERN void rz_diags_free(rz_diags *d);
RZ_EXTERN size_t rz_diags_count(const rz_diags *d);
RZ_EXTERN size_t rz_diags_error_count(const rz_diags *d);
/* Borrowed: valid until the list is changed or freed. NULL if out of range. */
RZ_EXTERN const rz_diag *rz_diags_get(const rz_diags *d, size_t i);
/* Sort by file, line, column (stable); parsers append in discovery order. */
RZ_EXTERN void rz_diags_sort(rz_diags *d);
/* "FILE:LINE:COLUMN: error: MESSAGE\n" per entry; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_diags_to_text(const rz_diags *d, char **out);
/* [{"file","line","column","code","message"}]; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_diags_to_json(const rz_diags *d, char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_COMMON_H */

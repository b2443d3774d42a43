/* Private to lib/flow: the loading pipeline.
 *
 * Every syntax is first turned into a cJSON tree (JSON directly, YAML and
 * CBOR by small converters), then one lowering pass (lower.c) turns the tree
 * into the rz_flow model. Locations are never computed on the happy path:
 * diagnostics name a JSON pointer and rz__flow_locate() maps it back to the
 * kept source (JSON text or YAML document) only when a problem is reported.
 */
#ifndef RZ_FLOW_LOADER_H
#define RZ_FLOW_LOADER_H

#include "common/json.h"
#include "common/text.h"
#include "flow/model.h"

/* Bump allocator: the model's strings and arrays live here so that a flow
 * of 100k nodes costs a few large allocations, not millions of small ones. */
typedef struct rz__arena_chunk rz__arena_chunk;
typedef struct rz__arena {
    rz__arena_chunk *head;
} rz__arena;

RZ_HIDDEN void *rz__arena_alloc(rz__arena *a, size_t n);   /* zeroed */
RZ_HIDDEN char *rz__arena_strndup(rz__arena *a, const char *s, size_t n);
RZ_HIDDEN char *rz__arena_strdup(rz__arena *a, const char *s); /* NULL-safe */
RZ_HIDDEN void rz__arena_free(rz__arena *a);
/* Forget everything allocated, keeping one chunk for reuse. */
RZ_HIDDEN void rz__arena_reset(rz__arena *a);

/* The flow as allocated: the public model plus what only loading needs. */
typedef struct rz__flow_impl {
    struct rz_flow pub;
    rz__arena arena;
} rz__flow_impl;

#define RZ_FLOW_ARENA(f) (&((rz__flow_impl *)(f))->arena)

/* A shape problem held back until the whole document has parsed: a
 * syntax error later in a streamed document replaces them all. */
typedef struct rz__pending {
    int code;
    rz_severity sev;
    uint32_t line, column;   /* explicit location, or 0 to locate pointer */
    char *pointer, *message;
} rz__pending;

/* One parse: where problems go and how bad they were. */
typedef struct rz__load {
    rz_flow *f;
    rz_diags *diags;
    int status;          /* ESYNTAX / ETOOBIG / ENOMEM win over EINVALID */
    size_t problems;
    bool defer;          /* hold shape problems in `pending` */
    rz__pending *pending;
    size_t n_pending, cap_pending;
} rz__load;

/* Report a problem at an explicit location / at a JSON pointer. */
RZ_HIDDEN void rz__load_diag_at(rz__load *ld, int code, uint32_t line,
                                uint32_t column, const char *pointer,
                                const char *fmt, ...) RZ_PRINTF(6, 7);
RZ_HIDDEN void rz__load_diag(rz__load *ld, int code, const char *pointer,
                             const char *fmt, ...) RZ_PRINTF(4, 5);

/* A warning: reported, but the parse still succeeds. */
RZ_HIDDEN void rz__load_warn(rz__load *ld, int code, const char *pointer,
                             const char *fmt, ...) RZ_PRINTF(4, 5);
/* A problem at an explicit location that a later syntax error replaces
 * (held back like pointer problems while ld->defer is set). */
RZ_HIDDEN void rz__load_diag_pos(rz__load *ld, int code, uint32_t line,
                                 uint32_t column, const char *fmt, ...)
    RZ_PRINTF(5, 6);

/* Duplicate keys in one map, O(1) per key: a short list while a map is
 * small, a hash once it grows. Keys are borrowed. */
typedef struct rz__keyset {
    const char *keys[16];
    uint32_t lines[16], cols[16];
    size_t n;
    rz__map big;          /* key -> (line << 32 | column) past 16 keys */
    bool hashed;
} rz__keyset;
/* True (and the first one's position) if `key` was seen; else records it.
 * Out of memory counts as "not seen". */
RZ_HIDDEN bool rz__keyset_seen(rz__keyset *ks, const char *key, uint32_t line,
                               uint32_t col, uint32_t *fline, uint32_t *fcol);
RZ_HIDDEN void rz__keyset_free(rz__keyset *ks);

/* JSON: parse and lower in one streaming pass. */
RZ_HIDDEN void rz__json_load(rz__load *ld, const char *text, size_t len);
/* YAML, CBOR: build a cJSON tree, or report and return NULL. */
RZ_HIDDEN cJSON *rz__yaml_tree(rz__load *ld, const void *data, size_t len);
RZ_HIDDEN cJSON *rz__cbor_tree(rz__load *ld, const void *data, size_t len);
RZ_HIDDEN void rz__yaml_doc_free(void *doc);

/* Lowering. A lowerer over an `arena_tree` copies the values it keeps
 * (config, inputs, extra keys); otherwise it detaches them from the tree.
 * Builder nodes and connections may be fed one at a time (streaming), then
 * the rest of the document through rz__lower_root. */
typedef struct rz__lower rz__lower;
RZ_HIDDEN rz__lower *rz__lower_new(rz__load *ld, bool arena_tree);
RZ_HIDDEN void rz__lower_node(rz__lower *L, cJSON *node);
RZ_HIDDEN void rz__lower_conn(rz__lower *L, cJSON *conn);
RZ_HIDDEN void rz__lower_root(rz__lower *L, cJSON *root, bool streamed_nodes,
                              bool streamed_conns);
RZ_HIDDEN void rz__lower_free(rz__lower *L);
/* The whole of a (malloc'd cJSON) tree at once. */
RZ_HIDDEN void rz__flow_lower(rz__load *ld, cJSON *root);

/* A FluxGraph key kept in `extra` as is, not under `ui:` (`top`: a key of
 * the flow, else of a step). */
RZ_HIDDEN bool rz__flux_kept_key(const char *k, bool top);

/* Locations in the kept YAML source (JSON: rz__json_locate). */
RZ_HIDDEN void rz__yaml_locate(void *doc, const char *pointer,
                               uint32_t *line, uint32_t *column);
/* Scalar resolution of the YAML reader (YAML 1.2 core schema): *out a new
 * cJSON value for a plain scalar, NULL when it is a string; RZ_ENOMEM (a
 * string is then not assumed). */
RZ_HIDDEN int rz__yaml_resolve_plain(const char *s, size_t n, cJSON **out);

/* Writers over a canonical export tree. */
RZ_HIDDEN int rz__yaml_emit(const cJSON *root, char **out, size_t *len);
RZ_HIDDEN int rz__cbor_emit(const cJSON *root, unsigned char **out, size_t *len);

#endif

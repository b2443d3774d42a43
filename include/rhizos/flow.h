/* rhizos/flow.h — flow documents: load, validate, export.
 *
 * A flow is a DAG of steps (builder "nodes"), each an instance of a module.
 * It loads from the JSON builder format, the YAML FluxGraph DSL or CBOR into
 * one model. Loading checks syntax and shape; rz_flow_validate checks the
 * graph against a module registry. Both report every problem found into an
 * rz_diags list with FILE:LINE:COLUMN. The formats: docs/formats.md and
 * docs/flow-format.md.
 */
#ifndef RHIZOS_FLOW_H
#define RHIZOS_FLOW_H

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_flow rz_flow;
typedef struct rz_registry rz_registry;

typedef enum rz_format {
    RZ_FORMAT_AUTO = 0,  /* by file extension, else by content */
    RZ_FORMAT_JSON = 1,  /* builder format (or FluxGraph shape written as JSON) */
    RZ_FORMAT_YAML = 2,  /* FluxGraph DSL */
    RZ_FORMAT_CBOR = 3
} rz_format;

/* Hard limits that keep hostile documents from exhausting memory. */
#define RZ_FLOW_MAX_BYTES  (256u * 1024u * 1024u)
#define RZ_FLOW_MAX_DEPTH  64
/* Most elements one for_each step runs (a longer list fails the step, or
 * the load when the list is written out). */
#define RZ_FLOW_FOR_EACH_MAX 10000u
/* Most levels of nested lists one for_each step walks (`for_each_depth`):
 * a map within a map within ... */
#define RZ_FLOW_FOR_EACH_DEPTH_MAX 4u

/* Parse a document held in memory. `filename` names it in diagnostics (may
 * be NULL: "<input>"). On failure *out is NULL, problems are appended to
 * `diags` (may be NULL) and the first is also in rz_error_last(). */
RZ_EXTERN RZ_NODISCARD int rz_flow_parse(rz_flow **out, const void *data,
                                         size_t len, rz_format format,
                                         const char *filename, rz_diags *diags);
/* Read and parse a file ("-" reads stdin). */
RZ_EXTERN RZ_NODISCARD int rz_flow_load(rz_flow **out, const char *path,
                                        rz_format format, rz_diags *diags);
RZ_EXTERN void rz_flow_free(rz_flow *flow);

/* Check the graph against `reg` (NULL: structure only, modules unchecked):
 * duplicate ids, unknown nodes and ports, type mismatches, unknown modules,
 * unconnected required inputs, expressions, credential references, config,
 * cycles. Returns RZ_OK or RZ_EINVALID with every problem in `diags`.
 * Resolves each step's module; `reg` must outlive the flow after this. */
RZ_EXTERN RZ_NODISCARD int rz_flow_validate(rz_flow *flow,
                                            const rz_registry *reg,
                                            rz_diags *diags);

/* rz_flow_validate, then sub-flows: each step `flow: PATH` (a flow file
 * relative to the flow's own file) is replaced by the child's steps, ids
 * "<step>-<child step>", the child loaded, expanded and validated first
 * (its problems located in its own file; the interface's — inputs the
 * child lacks or requires, outputs it does not declare, cycles between
 * files, more than 8 levels — at the step). On RZ_OK *flow is the
 * expanded flow (the one passed is freed; one without sub-flows is kept
 * as it is), validated against `reg`. On failure *flow is unchanged.
 * Reads files: for flows a user runs, not documents a server receives
 * (rz_flow_validate refuses an unexpanded sub-flow step). */
RZ_EXTERN RZ_NODISCARD int rz_flow_expand(rz_flow **flow,
                                          const rz_registry *reg,
                                          rz_diags *diags);

/* How rz_flow_expand_with finds sub-flows. A named sub-flow, `flow:
 * flow://NAME@N` (version N of a flow deployed by name) or `flow://NAME`
 * (its active version), is resolved by `named` if set, else read from
 * `flows_dir` (NAME@N.yaml, .yml or .json there; NAME.yaml and so on
 * without @N), else refused with a located error. */
typedef struct rz_flow_expand_opts {
    int version;                /* RZ_FLOW_EXPAND_OPTS_VERSION */
    int no_files;               /* nonzero: a `flow: FILE` step is an error
                                   (a server never reads a file a document
                                   names) */
    int keep_named;             /* nonzero: named sub-flow steps stay as they
                                   are, for the orchestrator to expand */
    const char *flows_dir;      /* NULL: none */
    /* The named flow's document: RZ_OK with *text (malloc'd; the library
     * frees it) and *found (the version it is, for 0 the active one), or a
     * negative status with the reason written to `why` (`cap` bytes). */
    int (*named)(void *ctx, const char *name, unsigned long long version,
                 char **text, unsigned long long *found, char *why, size_t cap);
    void *named_ctx;
} rz_flow_expand_opts;
#define RZ_FLOW_EXPAND_OPTS_VERSION 1
#define RZ_FLOW_EXPAND_OPTS_INIT { RZ_FLOW_EXPAND_OPTS_VERSION, 0, 0, NULL, NULL, NULL }

/* rz_flow_expand with `opts` (NULL: the defaults, as rz_flow_expand).
 * Named sub-flows count against the same depth, size and cycle limits;
 * a named flow's own sub-flows must be named ones. */
RZ_EXTERN RZ_NODISCARD int rz_flow_expand_with(rz_flow **flow,
                                               const rz_registry *reg,
                                               const rz_flow_expand_opts *opts,
                                               rz_diags *diags);

/* Where JSON pointer `pointer` ("/steps/a/flow") is in the text the flow
 * was loaded from: 1-based *line and *column of the value (of its nearest
 * enclosing value the text holds), or 0 and 0 when the flow keeps no text
 * (CBOR) or the pointer is NULL. For diagnostics that come by pointer,
 * such as an orchestrator's answer to POST /api/v1/flows/validate. */
RZ_EXTERN void rz_flow_locate(const rz_flow *flow, const char *pointer, uint32_t *line,
                              uint32_t *column);

/* Borrowed strings, valid while the flow lives. */
RZ_EXTERN const char *rz_flow_name(const rz_flow *flow);       /* never NULL */
RZ_EXTERN const char *rz_flow_file(const rz_flow *flow);       /* never NULL */
RZ_EXTERN rz_format rz_flow_format(const rz_flow *flow);
RZ_EXTERN size_t rz_flow_step_count(const rz_flow *flow);
RZ_EXTERN const char *rz_flow_step_id(const rz_flow *flow, size_t i);
RZ_EXTERN const char *rz_flow_step_module(const rz_flow *flow, size_t i);
/* The flow file a sub-flow step names (`flow:`), NULL for a module step
 * or a bad index: a flow holding one needs rz_flow_expand before it runs. */
RZ_EXTERN const char *rz_flow_step_subflow(const rz_flow *flow, size_t i);
/* The sub-flow step that step i came from ("<step>" or, nested,
 * "<step>-<inner step>"): rz_flow_expand marks each step it inlines with
 * `ui: {group: ...}`, which survives export and parsing. NULL for a step
 * of the flow itself or a bad index. Borrowed, valid while the flow lives. */
RZ_EXTERN const char *rz_flow_step_group(const rz_flow *flow, size_t i);
/* The steps step i waits for (its `needs`, the steps its expressions read,
 * its join), as step indices, unique and sorted; borrowed, valid while the
 * flow lives. Known once rz_flow_validate or rz_plan_build has run on the
 * flow; before that, and for a bad index, NULL with *n = 0. */
RZ_EXTERN const size_t *rz_flow_step_deps(const rz_flow *flow, size_t i, size_t *n);
/* Index of the step with this id, or (size_t)-1. */
RZ_EXTERN size_t rz_flow_step_find(const rz_flow *flow, const char *id);
/* Flow inputs from NAME=VALUE texts (what `rhizos flow run --input` takes):
 * VALUE is read as JSON if it parses as JSON (`n=3` a number, `on=true` a
 * boolean), else taken as a string; a later NAME replaces an earlier one.
 * RZ_EINVALID for a pair without NAME= or a VALUE holding a NUL (\u0000,
 * which JSON readers cut strings at). *out: a JSON object for rz_run_new
 * or a deployment's inputs; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_flow_inputs_parse(char **out,
                                                const char *const *pairs,
                                                size_t n);
/* How many outputs the flow declares (`outputs:`); a run's "outputs" are
 * then these, by name, rather than each final step's outputs by step id. */
RZ_EXTERN size_t rz_flow_output_count(const rz_flow *flow);

enum {
    RZ_EXPORT_PRETTY = 1 << 0,   /* indented output */
    RZ_EXPORT_BUILDER = 1 << 1,  /* JSON builder shape even for YAML sources */
};

/* Canonical JSON: keys in a fixed order, every credential value stripped
 * (only {credentialId, type} survive). Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_flow_to_json(const rz_flow *flow, unsigned flags,
                                           char **out, size_t *len);
/* FluxGraph YAML of the same flow. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_flow_to_yaml(const rz_flow *flow, char **out,
                                           size_t *len);
/* CBOR of the same flow; lossless: parse(to_cbor(f)) exports as f does. */
RZ_EXTERN RZ_NODISCARD int rz_flow_to_cbor(const rz_flow *flow,
                                           unsigned char **out, size_t *len);

/* A loaded flow's triggers, normalised, as a JSON array (release with
 * rz_free): [{"index", "type" ("manual", "cron", "webhook"), "name" (given,
 * else "<type>-<index>"), "enabled", and for cron "schedule", "tz" ("UTC"
 * when absent), "catchup" (default "one"), "overlap" (default "skip"); for a
 * webhook "secret" (the vault credential id) and "max_body_bytes" (default
 * 65536)}]; "[]" when it has none. RZ_EINVALID for a flow whose triggers
 * were never validated and are malformed. */
RZ_EXTERN RZ_NODISCARD int rz_flow_triggers(const rz_flow *f, char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_FLOW_H */

/* The in-memory flow model shared by the loaders, the validator, the planner
 * and the run state machine. Both syntaxes lower into this one shape.
 *
 * Locations: every element records the JSON pointer of its value in the
 * source document. rz__flow_locate() maps a pointer back to LINE:COLUMN on
 * demand (lazily, from the kept source), so the happy path pays nothing. */
#ifndef RZ_FLOW_MODEL_H
#define RZ_FLOW_MODEL_H

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"

typedef enum rz__backoff { RZ_BACKOFF_FIXED = 0, RZ_BACKOFF_EXPONENTIAL = 1 } rz__backoff;
typedef enum rz__on_failure { RZ_ON_FAILURE_FAIL = 0, RZ_ON_FAILURE_CONTINUE = 1 } rz__on_failure;
typedef enum rz__restart {
    RZ_RESTART_ON_FAILURE = 0, RZ_RESTART_ALWAYS, RZ_RESTART_NEVER
} rz__restart;
/* A service's default restarts (restart: {max_restarts}). */
#define RZ__SERVICE_MAX_RESTARTS 3u
/* When a step may run once its deps settle (`join:`, Airflow's trigger rules). */
typedef enum rz__join {
    RZ_JOIN_ALL_SUCCEEDED = 0, RZ_JOIN_ANY_SUCCEEDED, RZ_JOIN_ALL_DONE,
    RZ_JOIN_NONE_FAILED, RZ_JOIN_ONE_FAILED
} rz__join;
/* "all_succeeded", ... ; NULL out of range. */
RZ_HIDDEN const char *rz__join_name(rz__join j);

typedef struct rz__cred {
    char *field;          /* the module's credential name, e.g. "api" */
    char *credential_id;  /* NULL if the reference is malformed */
    char *type;           /* NULL if the reference is malformed */
    char *ptr;            /* JSON pointer of the reference */
    bool extra_fields;    /* the source held more than {credentialId, type} */
} rz__cred;

typedef struct rz__input {
    char *name;           /* input port name */
    cJSON *value;         /* literal, or a string holding ${{ ... }} */
    char *ptr;
} rz__input;

typedef struct rz__conn {
    char *id;             /* may be NULL (YAML has none) */
    char *src_node, *src_port, *dst_node, *dst_port;
    size_t src, dst;      /* step indices, RZ_NPOS until resolved */
    char *ptr;
} rz__conn;

typedef struct rz__flow_input {
    char *name;
    char *type;           /* "string", "number", ... or NULL */
    bool required;
    cJSON *def;           /* default value or NULL */
    char *ptr;
} rz__flow_input;

/* verify.replicas of a step: at most this many runs (the engine's
 * RZ_ENGINE_REPLICAS_MAX). */
#define RZ__STEP_REPLICAS_MAX 5u
#define RZ__APPROVERS_MAX 32

typedef struct rz__step {
    char *id;
    char *ptr;            /* "/nodes/3" or "/steps/split" */
    char *module_id;      /* "wordcount-split" */
    char *module_spec;    /* version spec, NULL = any */
    char *subflow;        /* `flow:` the flow file this step runs instead
                             of a module, relative to this flow's file;
                             NULL for a module step. rz_flow_expand
                             replaces such steps by the child's. */
    cJSON *config;        /* object, never NULL after load */
    cJSON *position;      /* builder {x,y} or NULL */
    rz__cred *creds; size_t n_creds;
    rz__input *inputs; size_t n_inputs;
    char **needs; size_t n_needs;
    char *when;           /* expression or NULL */
    struct {
        uint32_t max_attempts;   /* >= 1; 1 means no retry */
        rz__backoff backoff;
        uint32_t initial_ms, max_ms;
    } retry;
    uint32_t timeout_s;          /* 0 = none */
    uint32_t queue_timeout_s;    /* longest wait for a node; 0 = the
                                    orchestrator's default */
    rz__on_failure on_failure;
    uint32_t replicas;           /* verify.replicas: runs on distinct nodes
                                    whose majority is kept; 0/1 = one */
    rz__join join;
    bool is_exit;                /* the flow's on_exit step: runs last, after
                                    every other step (join all_done) */
    cJSON *for_each;             /* a list, or a string holding ${{ }} that
                                    gives one: the step runs once per
                                    element; NULL: once */
    uint32_t max_parallel;       /* for_each elements started at once; 0 =
                                    no bound of the step's own */
    uint32_t for_each_depth;     /* levels of nested lists for_each walks,
                                    each leaf an element; 0/1 = one list */
    cJSON *extra;                /* unknown keys, kept for round trips; or NULL */
    /* Services and events (docs/services.md). A service's restarts are
     * its retries: `restart` sets retry.max_attempts (max_restarts + 1)
     * and retry.initial_ms (backoff); RZ_RESTART_ALWAYS also restarts it
     * after a clean exit. */
    bool service;                /* kind: service, or its module's */
    bool kind_given, retry_given; /* written on the step (a service module
                                    checks them once resolved) */
    bool restart_given, ready_given, max_restarts_given;
    rz__restart restart;
    bool ready_line;             /* ready is reported: the line
                                    {"ready": true}, or the check below
                                    (which makes that line); else ready
                                    once started */
    char *ready_check;           /* ready: {tcp: PORT} as "tcp:PORT", or
                                    {http: URL} as the URL (exec/ready.h) */
    uint32_t ready_timeout_s;    /* the check's; 0: its default */
    char *on_step, *on_event;    /* on: {event: steps.<on_step>.events.
                                    <on_event>}: once per event; NULL none */

    /* Filled by rz_flow_validate / rz__flow_link: */
    const rz_module *module;     /* resolved module or NULL */
    size_t *deps; size_t n_deps; /* upstream step indices, unique, sorted */
} rz__step;

/* A service's attempts from its restart policy: max_restarts + 1, the
 * default's when not given, one with policy never. */
static inline void rz__step_service_restarts(rz__step *s)
{
    if (!s->max_restarts_given)
        s->retry.max_attempts = RZ__SERVICE_MAX_RESTARTS + 1;
    if (s->restart == RZ_RESTART_NEVER)
        s->retry.max_attempts = 1;
}

/* The step runs as element tasks (for_each, or once per event: `on`), its
 * own job waiting meanwhile. */
static inline bool rz__step_maps(const rz__step *s)
{
    return s->for_each != NULL || s->on_step != NULL;
}

/* The step's approval: {timeout_s?, default?, approvers?} (checked at load),
 * or NULL: a step that runs a module. */
static inline const cJSON *rz__step_approval(const rz__step *s)
{
    const cJSON *a = s->extra ? cJSON_GetObjectItemCaseSensitive(s->extra, "approval") : NULL;
    return cJSON_IsObject(a) ? a : NULL;
}

/* A service's budget (docs/services.md, "Billing by time"): `budget:
 * {max_cents_per_hour | max_micros_per_hour, hours?, interval_s?}`, kept
 * in the step's extra and checked at load. The engine holds one interval
 * at a time: interval_hold_micros = ceil(rate x interval_s / 3600). */
#define RZ__BUDGET_INTERVAL_S 60u
#define RZ__BUDGET_INTERVAL_MAX_S 3600u
#define RZ__BUDGET_HOURS_MAX 87600u          /* ten years */
/* Intervals of one job the engine's ledger ids can number (24 bits): a
 * budget whose hours hold more is refused at load. */
#define RZ__BUDGET_INTERVALS_MAX ((1u << 24) - 1u)
typedef struct rz__budget {
    uint64_t micros_per_hour;   /* 1..2^53 */
    uint32_t hours;             /* lifetime in hours; 0: no limit but the
                                   client's balance */
    uint32_t interval_s;        /* 1..RZ__BUDGET_INTERVAL_MAX_S */
} rz__budget;
/* The step's budget: false when it has none (or a malformed one, which
 * the loader refused already). */
RZ_HIDDEN bool rz__step_budget(const rz__step *s, rz__budget *out);
/* What one interval holds: ceil(micros_per_hour x interval_s / 3600),
 * computed without overflow (<= 2^53). */
RZ_HIDDEN uint64_t rz__budget_interval_micros(const rz__budget *b);

struct rz_flow {
    rz_format format;     /* syntax it was loaded from */
    bool builder;         /* builder shape (nodes/connections) vs FluxGraph */
    char *file;           /* name used in diagnostics */
    char *src; size_t src_len;   /* kept source text for lazy locations */
    void *yaml_doc;       /* kept yaml_document_t* for YAML sources, or NULL */

    char *id, *name, *version, *description, *created_at, *updated_at;
    cJSON *triggers;      /* FluxGraph triggers, kept verbatim, or NULL */
    cJSON *extra;         /* unknown top-level keys, or NULL */

    rz__flow_input *inputs; size_t n_inputs;
    rz__step *steps; size_t n_steps;
    rz__conn *conns; size_t n_conns;
    rz__input *outputs; size_t n_outputs;   /* flow outputs: name -> value
                                               or ${{ }} over steps */

    rz__map index;        /* step id -> index (first occurrence wins) */
    bool linked;          /* deps computed */
};

/* LINE:COLUMN of the value at `pointer` in the flow's source; falls back to
 * the nearest enclosing value that exists, (0,0) for CBOR or unknown. */
RZ_HIDDEN void rz__flow_locate(const rz_flow *f, const char *pointer,
                               uint32_t *line, uint32_t *column);
/* Diagnostic at a JSON pointer of the flow's source. */
RZ_HIDDEN int rz__flow_diag(const rz_flow *f, rz_diags *diags, int code,
                            const char *pointer, const char *fmt, ...)
    RZ_PRINTF(5, 6);

/* rz_flow_validate; `subflows`: sub-flow steps (`flow:`) pass, as steps
 * whose outputs rz_flow_expand checks (lib/flow/subflow.c). */
RZ_HIDDEN int rz__flow_validate(rz_flow *flow, const rz_registry *reg,
                                rz_diags *diags, bool subflows);

/* A named sub-flow reference, "flow://NAME" or "flow://NAME@N": NAME
 * (1-128 bytes, no '/', '@', control byte or leading '.') into `name`
 * (may be NULL), N into *version (0 without one). False with the reason in
 * `why`. */
RZ_HIDDEN bool rz__flow_named_ref(const char *ref, char *name, size_t cap,
                                  uint64_t *version, char *why, size_t whycap);

/* The canonical export tree in the FluxGraph shape (whatever shape the
 * flow came in), owning its values; NULL out of memory. */
RZ_HIDDEN cJSON *rz__flow_flux_tree(const rz_flow *f);

/* Compute every step's deps from needs, connections and ${{ steps.X }}
 * references in inputs and `when` (unknown names are ignored here; the
 * validator reports them). Idempotent. */
RZ_HIDDEN int rz__flow_link(rz_flow *f);

/* ---- Expressions: ${{ ... }} templates and conditions (lib/flow/expr.c) ----
 *
 * GitHub-Actions-shaped. Literals (numbers, 'str' / "str", true, false,
 * null); references steps.<id>.outputs.<port>[.<key>...],
 * steps.<id>.status|error|attempts|duration_ms, inputs.<name>[.<key>...],
 * flow.status|failed_steps, item[.<key>...] and index (aliases
 * each.value, each.index);
 * indexing a[i], a['k'], a.k; calls length contains startsWith endsWith
 * format join toJSON fromJSON default; operators, lowest first:
 * c ? a : b, ||, &&, == !=, < <= > >=, + -, * / %, unary !. A string value
 * is either one whole ${{ expr }} (evaluates to the typed value) or a
 * template mixing text and ${{ }} parts (evaluates to a string). `when`
 * accepts a bare expression or ${{ expr }}. docs/flow-format.md has the
 * semantics; the bounds are the RZ_EXPR_MAX_* below. */
#define RZ_EXPR_MAX_NESTING 64          /* (), [], calls, ?:, ! deep */
#define RZ_EXPR_MAX_HEIGHT 256          /* operator chains, a + b + ... */
#define RZ_EXPR_MAX_NODES 4096          /* terms in one text */
#define RZ_EXPR_MAX_ARGS 16             /* arguments of one call */
#define RZ_EXPR_MAX_STRING (512u * 1024u)   /* any string an evaluation builds */
#define RZ_EXPR_BUDGET (4u * 1024u * 1024u) /* string bytes one evaluation builds */
typedef struct rz__expr rz__expr;

/* RZ_REF_FLOW: flow.status / flow.failed_steps, known to the on_exit step.
 * RZ_REF_EACH: item / index (name "item", "index"; the alias each.value /
 * each.index has name "value", "index"), known to a for_each step's inputs
 * and config (one element's). */
typedef enum rz__ref_kind {
    RZ_REF_STEP = 1, RZ_REF_INPUT = 2, RZ_REF_FLOW = 3, RZ_REF_EACH = 4,
    RZ_REF_EVENT = 5      /* event.id|name|data: an `on: event` step's event */
} rz__ref_kind;

/* What a step reference reads: its outputs, or how it ran. */
typedef enum rz__ref_field {
    RZ_FIELD_OUTPUTS = 0, RZ_FIELD_STATUS, RZ_FIELD_ERROR, RZ_FIELD_ATTEMPTS,
    RZ_FIELD_DURATION_MS
} rz__ref_field;

typedef struct rz__ref {
    rz__ref_kind kind;
    const char *name;     /* step id, input name, or the flow field
                             (borrowed from the expr) */
    const char *port;     /* output port for steps' outputs, else NULL */
    rz__ref_field field;  /* steps: outputs (with a port) or a run field */
    uint32_t offset;      /* byte offset of the reference in the text */
} rz__ref;

/* Parse `text`. `is_condition`: bare expressions allowed. On a syntax error
 * returns RZ_EEXPR with a message in `err` and the byte offset in *err_off. */
RZ_HIDDEN int rz__expr_parse(rz__expr **out, const char *text, bool is_condition,
                             char *err, size_t errlen, size_t *err_off);
RZ_HIDDEN void rz__expr_free(rz__expr *e);
/* True if the text contains no ${{ }} at all (a plain literal string). */
RZ_HIDDEN bool rz__expr_is_literal(const rz__expr *e);
/* The parts of the text in order: plain text, or an expression (true) whose
 * source is the bytes between its ${{ and }} (a bare condition: the whole
 * text); *start and *len locate either in the text parsed. */
RZ_HIDDEN size_t rz__expr_part_count(const rz__expr *e);
RZ_HIDDEN bool rz__expr_part(const rz__expr *e, size_t i, size_t *start, size_t *len);
RZ_HIDDEN size_t rz__expr_ref_count(const rz__expr *e);
RZ_HIDDEN const rz__ref *rz__expr_ref(const rz__expr *e, size_t i);

/* Resolve a reference to a value (borrowed; NULL = absent, evaluates as null). */
typedef const cJSON *(*rz__resolve_fn)(const rz__ref *ref, void *ud);
/* Evaluate; *out is a new cJSON value the caller frees. A value of the
 * wrong type for an operator or function, or a bound passed, is RZ_EEXPR
 * with "... at offset N" (N: byte offset in the text). */
RZ_HIDDEN int rz__expr_eval(const rz__expr *e, rz__resolve_fn resolve, void *ud,
                            cJSON **out);
/* An expression without references is evaluated now: RZ_EEXPR with the
 * message in `err` and the offset in *err_off if that fails (1 / 0,
 * length(5), a bound passed). One with references is RZ_OK: its values are
 * known only when it runs. */
RZ_HIDDEN int rz__expr_check(const rz__expr *e, char *err, size_t errlen,
                             size_t *err_off);
/* Truthiness for `when`: false, null, 0, "" and absent are false. */
RZ_HIDDEN bool rz__json_truthy(const cJSON *v);

#endif

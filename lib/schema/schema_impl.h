/* Private to lib/schema (and the flow validator): the compiled form of a
 * JSON Schema and the cJSON-level entry points. */
#ifndef RZ_SCHEMA_IMPL_H
#define RZ_SCHEMA_IMPL_H

#include <cjson/cJSON.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "common/internal.h"
#include "rhizos/schema.h"

/* Type bits of the "type" keyword. */
enum {
    SC_NULL = 1, SC_BOOLEAN = 2, SC_OBJECT = 4, SC_ARRAY = 8, SC_NUMBER = 16,
    SC_STRING = 32, SC_INTEGER = 64
};

/* Deepest evaluation (public: RZ_SCHEMA_DEPTH_MAX) and default work budget
 * (schema nodes evaluated). */
#define SC_MAX_DEPTH RZ_SCHEMA_DEPTH_MAX
#define SC_DEFAULT_BUDGET 20000000u

typedef struct sc_node sc_node;

typedef struct sc_prop {
    const char *name;
    sc_node *node;
} sc_prop;

typedef struct sc_pattern {
    const char *src;
    pcre2_code *re;
    sc_node *node;          /* patternProperties only */
} sc_pattern;

typedef struct sc_dep {
    const char *name;
    sc_node *node;          /* schema form, or NULL */
    const char **names;     /* array form */
    size_t n_names;
} sc_dep;

typedef struct sc_list {
    sc_node **v;
    size_t n;
} sc_list;

struct sc_node {
    const cJSON *src;
    int boolean;            /* -1: an object schema; 0/1: false/true */
    sc_node *ref;           /* $ref target: every sibling is ignored */
    const char *ref_text;
    unsigned types;         /* 0: any */
    const cJSON *enum_;     /* array */
    const cJSON *const_;    /* NULL: no const */
    const cJSON *default_;
    /* numbers */
    bool has_min, has_max, has_xmin, has_xmax, has_mult;
    double min, max, xmin, xmax, mult;
    /* strings; -1: absent */
    int64_t min_len, max_len;
    sc_pattern pattern;     /* re NULL: absent */
    /* arrays */
    sc_node *items;         /* single-schema form */
    sc_list items_list;     /* array form (items_is_list) */
    bool items_is_list, unique;
    sc_node *additional_items, *contains;
    int64_t min_items, max_items;
    /* objects */
    sc_prop *props;
    size_t n_props;
    rz__map props_index;    /* name -> index in props (first wins) */
    sc_pattern *pprops;
    size_t n_pprops;
    sc_node *additional_props, *property_names;
    const char **required;
    size_t n_required;
    sc_dep *deps;
    size_t n_deps;
    int64_t min_props, max_props;
    /* combinators */
    sc_list all_of, any_of, one_of;
    sc_node *not_, *if_, *then_, *else_;
    uint32_t walk;          /* compile: $ref-loop check */
    bool ref_ok;            /* compile: its $ref chain ends */
};

struct rz_schema {
    cJSON *doc;             /* owned copy of the schema document */
    sc_node *root;
    sc_node **nodes;        /* every node, for freeing */
    size_t n_nodes, cap_nodes;
    pcre2_match_context *mctx;
};

/* ---- value.c: JSON values as JSON Schema sees them ---- */
RZ_HIDDEN bool rz__sc_is_integer(const cJSON *x);
RZ_HIDDEN unsigned rz__sc_type_bit(const cJSON *x);    /* one SC_* bit */
RZ_HIDDEN const char *rz__sc_type_name(const cJSON *x); /* "integer", ... */
RZ_HIDDEN bool rz__sc_equal(const cJSON *a, const cJSON *b);
RZ_HIDDEN uint64_t rz__sc_hash(const cJSON *x);
/* Is `x` an exact multiple of `m` (> 0) in their shortest decimal forms? */
RZ_HIDDEN bool rz__sc_multiple_of(double x, double m);
/* Shortest text that reads back as `x` ("0.7", "1e+300"). */
RZ_HIDDEN void rz__sc_fmt_number(char *buf, size_t cap, double x);
/* Unicode code points in a UTF-8 string. */
RZ_HIDDEN size_t rz__sc_utf8_len(const char *s);
/* Short rendering of a value for messages: numbers, quoted strings cut at
 * 40 code points, compact arrays/objects cut at 80 bytes. */
RZ_HIDDEN void rz__sc_render(rz__buf *b, const cJSON *x);

/* ---- compile.c ---- */
/* Compile a schema tree (copied). RZ_EINVAL / RZ_EUNSUPPORTED / RZ_ENOMEM,
 * with rz_error_last() naming the schema pointer. */
RZ_HIDDEN int rz__schema_compile(rz_schema **out, const cJSON *doc);
/* The schema compiled from `doc` once and kept in *slot (a module's
 * schema_cache), shared by every caller and freed by the slot's owner. A
 * racing caller may compile it too: the first to publish wins. A schema
 * that does not compile is not kept: the error comes back each time. */
RZ_HIDDEN int rz__schema_cached(void **slot, const cJSON *doc,
                                const rz_schema **out);

/* ---- eval.c ---- */
typedef struct rz__schema_opts {
    /* Values accepted by every schema unchecked (flow templates "${{"). */
    bool (*opaque)(const cJSON *x);
    uint64_t budget;        /* schema nodes evaluated at most; 0: default */
} rz__schema_opts;

/* RZ_OK, RZ_EINVALID (errors to fn), RZ_ETOOBIG (budget or depth, with
 * rz_error_last() set; errors found so far were given), RZ_ENOMEM. */
RZ_HIDDEN int rz__schema_eval(const rz_schema *s, const cJSON *instance,
                              const rz__schema_opts *opts,
                              rz_schema_error_fn fn, void *ud);
/* Add missing defaults into `instance` in place. RZ_OK, RZ_ENOMEM, or
 * RZ_ETOOBIG when a recursive schema would add more than
 * RZ_SCHEMA_DEFAULTS_MAX values (the instance then holds those added so
 * far). */
RZ_HIDDEN int rz__schema_defaults(const rz_schema *s, cJSON *instance);

#endif

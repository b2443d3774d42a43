/* Internal shape of a loaded module manifest (DESIGN §4), shared with the
 * validator, the planner and the executors. */
#ifndef RZ_MODULE_IMPL_H
#define RZ_MODULE_IMPL_H

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/module.h"

typedef struct rz__port {
    char *name;
    char *type;         /* "string", "number", "integer", "boolean", "object",
                           "array", "any", "file" (docs/flow-format.md) */
    bool required;      /* inputs only: must be connected or given */
} rz__port;

typedef struct rz__cred_decl {
    char *name;
    char *type;         /* exchange_api, llm_api, ... */
    bool required;
} rz__cred_decl;

struct rz_module {
    char *id, *version, *name, *description;
    char *dir;                  /* absolute folder of module.json */
    uint32_t ver[3];            /* parsed semver */
    cJSON *manifest;            /* the whole document */
    rz__port *inputs; size_t n_inputs;
    rz__port *outputs; size_t n_outputs;
    bool outputs_warn;          /* "outputs_check": "warn": a step whose
                                   outputs miss the declared ones succeeds
                                   with a warning ("strict", the default,
                                   fails it) */
    const cJSON *config;        /* JSON Schema (borrowed from manifest) or NULL */
    rz__cred_decl *creds; size_t n_creds;
    const cJSON *requirements;  /* borrowed from manifest or NULL */
    double estimate_seconds;    /* estimate.seconds, 0 if unknown */
    /* exec */
    char *adapter;              /* "process", "docker", ... */
    char **command;             /* argv, NULL-terminated (process adapter) */
    bool network;               /* exec.network: wants network in the sandbox */
    bool service;               /* "kind": "service": runs until stopped
                                   (docs/services.md); its steps are services */
    /* Containers (exec.adapter "docker"): the image reference (a tag,
     * optionally pinned name@sha256:...), exec.pull ("if-not-present",
     * "always", "never") and exec.read_only (default true). Borrowed from
     * the manifest; NULL when absent. */
    const char *image;
    const char *pull;
    bool read_only;
    /* WebAssembly (exec.adapter "wasm"): exec.module, a path relative to
     * `dir`, and exec.sha256, the file's digest (64 lowercase hex), checked
     * before every run. Borrowed from the manifest; NULL when absent. */
    const char *wasm_module;
    const char *wasm_sha256;
    /* "local_llm" (docs/modules.md, "A node-served model"): with the
     * step's config at `provider` equal to "local", the step is one
     * generation on a model its node serves, made by the llm adapter, and
     * the container is not run. Strings borrowed from the manifest;
     * provider NULL when the module has none. */
    struct {
        const char *provider, *model;      /* JSON pointers into config */
        const char *context;               /* pointer: the system message's
                                              data, or NULL */
        const char *instructions;          /* the system message's text */
        const char *input, *output;        /* ports: the user message, the
                                              text's place (an array gets
                                              [text]); NULL none */
        uint32_t max_tokens, max_prompt_tokens;
    } local_llm;
    uint32_t timeout_s;         /* exec.timeout_s default, 0 none */
    uint32_t memory_mb;         /* requirements.memory_mb, 0 unknown */
    uint32_t scratch_mb;        /* requirements.scratch_mb, 0 the default */
    /* Where it came from: the module.json path, or the URL of a manifest
     * served by an HTTP index (then `dir` is NULL). */
    char *origin;
    char *publisher;            /* hex key of a verified signature, or NULL */
    /* The compiled `config` schema (an rz_schema), built on first use
     * (rz__schema_cached: the flow validator, rz_engine_submit_module) and
     * freed with the module. */
    void *schema_cache;
    /* The canonical manifest and its digest (an rz__module_canon), made on
     * first use: an orchestrator sends the digest with every job and a
     * node checks it at every job. Published once, read without a lock. */
    void *canon_cache;
};

/* ---- A node-served model (local_llm.c) ---- */

/* Whether the step's `config` selects the module's node-served model
 * (its local_llm provider is "local"). */
RZ_HIDDEN bool rz__local_llm_on(const rz_module *m, const cJSON *config);
/* The model it names (a string in config), or NULL. */
RZ_HIDDEN const char *rz__local_llm_model(const rz_module *m, const cJSON *config);
/* The llm adapter's request ({"inputs": {"messages"}, "config": {"model",
 * "max_tokens", "max_prompt_tokens", "output"}}) made from the step's
 * request {inputs, config}; malloc'd. NULL with the error set. */
RZ_HIDDEN char *rz__local_llm_request(const rz_module *m, const char *request);
/* The value at JSON pointer `ptr` in `root` (objects and arrays), or NULL. */
RZ_HIDDEN const cJSON *rz__json_at(const cJSON *root, const char *ptr);

/* Port lookup by name; NULL if the module has none. */
RZ_HIDDEN const rz__port *rz__module_input(const rz_module *m, const char *name);
RZ_HIDDEN const rz__port *rz__module_output(const rz_module *m, const char *name);
/* Whether `v` is of port type `type` ("integer": a whole number; "any",
 * NULL or an unknown type: anything). */
RZ_HIDDEN bool rz__port_type_ok(const char *type, const cJSON *v);
/* A file output's value once stored (attempt.c): {"$file": {"sha256": 64
 * lower-case hex, "size": N, "name": its path under RZ_OUTPUT_DIR, "path"?:
 * where the storing machine keeps it}}. Its digest, or NULL if `v` is not
 * one. */
RZ_HIDDEN const char *rz__file_ref_digest(const cJSON *v);

/* ---- Versions (semver.c) ----
 * A version is strictly MAJOR.MINOR.PATCH (decimal, no leading zeros). A spec
 * selects versions: "" or NULL any, "1.2.3" exact, "1" / "1.2" prefix,
 * "^1.2" same major and >=, "~1.2.3" same major.minor and >=. */
typedef enum rz__spec_op {
    RZ_SPEC_ANY = 0, RZ_SPEC_EXACT, RZ_SPEC_PREFIX, RZ_SPEC_CARET, RZ_SPEC_TILDE
} rz__spec_op;

typedef struct rz__verspec {
    rz__spec_op op;
    uint32_t v[3];      /* missing parts are 0 */
    unsigned n;         /* how many parts were written (0..3) */
} rz__verspec;

/* RZ_OK or RZ_EINVAL. */
RZ_HIDDEN int rz__semver_parse(const char *s, uint32_t v[3]);
RZ_HIDDEN int rz__semver_cmp(const uint32_t a[3], const uint32_t b[3]);
/* RZ_OK or RZ_EINVAL (with rz_error_last() set) for a malformed spec. */
RZ_HIDDEN int rz__verspec_parse(const char *spec, rz__verspec *out);
RZ_HIDDEN bool rz__verspec_match(const rz__verspec *s, const uint32_t v[3]);

/* ---- Manifests (manifest.c) ----
 * Load <dir>/module.json; `dir` is absolute. Problems go to `diags` as
 * RZ_EMANIFEST with FILE:LINE:COLUMN; returns RZ_EMANIFEST (or RZ_ENOMEM). */
RZ_HIDDEN int rz__module_load(rz_module **out, const char *dir, rz_diags *diags);
RZ_HIDDEN void rz__module_free(rz_module *m);
/* The same from text already in memory; `file` names it in diagnostics and
 * `dir` (may be NULL: a remote manifest) is the folder for ./ commands. */
RZ_HIDDEN int rz__module_load_text(rz_module **out, const char *file,
                                   const char *text, size_t len,
                                   const char *dir, rz_diags *diags);
/* Canonical form of a manifest for signing: keys sorted at every level, no
 * whitespace, the top-level "signature" member left out. Release with free. */
RZ_HIDDEN int rz__manifest_canonical(const cJSON *manifest, char **out);

/* ---- Signatures (sign.c) ----
 * Check the "signature" of a loaded manifest. RZ_OK and *publisher (hex,
 * malloc'd; NULL when unsigned) when it is absent or valid; RZ_EAUTH with
 * rz_error_last() set when it is malformed or does not verify. */
RZ_HIDDEN int rz__manifest_check_sig(const cJSON *manifest, char **publisher);
/* RZ_OK when `trusted` is empty or the module's verified publisher is in
 * it; RZ_EAUTH (rz_error_last() set) otherwise. */
RZ_HIDDEN int rz__registry_trust_check(const rz_module *m,
                                       const char *const *trusted,
                                       size_t n_trusted);
/* Decode a 32-byte public key given as 64 hex digits or base64. */
RZ_HIDDEN int rz__pubkey_decode(const char *text, unsigned char pk[32]);

/* ---- HTTP (http.c) ----
 * GET `url` (http or https only) through the on-disk cache of `cache_dir`
 * with ETag revalidation. On a failed fetch with a cached copy, the copy is
 * returned and *stale set with the reason in rz_error_last(). Without one:
 * RZ_EIO (unreachable, HTTP error), RZ_ETOOBIG (over `max`), RZ_EINVAL (a
 * URL that is not http/https). The body is NUL-terminated; free it. */
typedef struct rz__fetch {
    char *body;
    size_t len;
    bool stale;             /* served from the cache after a failed fetch */
    bool from_cache;        /* 304 or stale */
    char reason[256];       /* why the fetch failed when stale */
} rz__fetch;
RZ_HIDDEN int rz__http_fetch(const char *url, const char *cache_dir,
                             size_t max, long timeout_ms, rz__fetch *out);
RZ_HIDDEN bool rz__is_url(const char *s);
/* $XDG_CACHE_HOME/rhizos/registry, else ~/.cache/rhizos/registry; malloc'd. */
RZ_HIDDEN char *rz__registry_default_cache(void);

/* ---- Registry (registry.c) ----
 * Index of the first module with `id` in rz_registry_get() order and how many
 * versions it has (ascending), or RZ_NPOS and 0. O(1). */
/* `ref` past a "chain://" prefix (the reference itself when it has none). */
RZ_HIDDEN const char *rz__module_ref_id(const char *ref);
RZ_HIDDEN size_t rz__registry_find(const rz_registry *reg, const char *id,
                                   size_t *count);

#endif

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
                           "array", "any" */
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
    const cJSON *config;        /* JSON Schema (borrowed from manifest) or NULL */
    rz__cred_decl *creds; size_t n_creds;
    const cJSON *requirements;  /* borrowed from manifest or NULL */
    double estimate_seconds;    /* estimate.seconds, 0 if unknown */
    /* exec */
    char *adapter;              /* "process", "docker", ... */
    char **command;             /* argv, NULL-terminated (process adapter) */
    bool network;               /* exec.network: wants network in the sandbox */
    uint32_t timeout_s;         /* exec.timeout_s default, 0 none */
    uint32_t memory_mb;         /* requirements.memory_mb, 0 unknown */
};

/* Port lookup by name; NULL if the module has none. */
RZ_HIDDEN const rz__port *rz__module_input(const rz_module *m, const char *name);
RZ_HIDDEN const rz__port *rz__module_output(const rz_module *m, const char *name);

#endif

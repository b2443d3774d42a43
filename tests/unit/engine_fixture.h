/* The engine tests' fixture (efx): a scratch folder, module files written
 * under it and registered, an engine open there with the test's options,
 * a credited client, nodes registered on demand; reopen as a restart
 * would; teardown. Failures fail the test through cmocka's asserts. */
#ifndef RZ_TEST_ENGINE_FIXTURE_H
#define RZ_TEST_ENGINE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "rhizos/engine.h"
#include "rhizos/module.h"

/* 36,000 micros per core-hour, 2 jobs at a time. */
#define EFX_NODE_CAPS "{\"cpu\":{\"cores\":4,\"threads\":8},\"memory_mb\":8192," \
    "\"storage\":{\"total_gb\":100,\"free_gb\":100},\"adapters\":[\"process\"]," \
    "\"prices\":{\"gpu_hour_micros\":0,\"cpu_hour_micros\":36000," \
    "\"memory_gb_hour_micros\":0},\"max_concurrent_jobs\":2}"

#define EFX_TEXT_IN "[{\"name\":\"text\",\"type\":\"string\"}]"
#define EFX_N_OUT "[{\"name\":\"n\",\"type\":\"integer\"}]"

/* A process module that asks 1 core for an estimated 10 s. */
typedef struct efx_module {
    const char *id;
    const char *inputs;    /* JSON array */
    const char *outputs;   /* JSON array */
    const char *more;      /* more members, each after a comma; or NULL */
    const char *version;   /* NULL: 1.0.0 */
} efx_module;

/* count@1.0.0: text in, n out. */
#define EFX_COUNT { "count", EFX_TEXT_IN, EFX_N_OUT, NULL, NULL }

typedef struct efx {
    char dir[64];             /* the engine's folder; modules in dir/modules */
    rz_engine *e;
    rz_registry *reg;         /* the modules; NULL when there are none */
    rz_ledger_id client;      /* (7, 1), credited by efx_new */
    rz_engine_opts opts;      /* what efx_reopen opens with */
    uint64_t node[4];         /* the first nodes efx_node_add registered */
    size_t n_nodes;
} efx;

/* A fixture in /tmp/rz-NAME-XXXXXX: the modules written and registered
 * (their registry replaces opts->registry), the engine open with *opts,
 * the client credited `credit` micros. */
efx *efx_new(const char *name, const efx_module *mods, size_t n_mods,
             const rz_engine_opts *opts, uint64_t credit);

/* A client account `id`, credited `micros` by the transfer `credit`. */
void efx_client_add(efx *f, rz_ledger_id id, rz_ledger_id credit, uint64_t micros);

/* Close and open again with f->opts, as after a restart. */
void efx_reopen(efx *f);

/* A node with `caps` registered at `now`: its id. */
uint64_t efx_node_add(efx *f, const char *caps, uint64_t now);

/* The flow `text` deployed for the client with `inputs` (JSON or NULL):
 * its id (the diagnostics printed when refused). */
uint64_t efx_deploy(efx *f, const char *text, const char *inputs, uint64_t now);

/* The deployment's status document (cJSON_Delete it). */
cJSON *efx_status(efx *f, uint64_t dep);

/* A step's status in such a document, or NULL. */
const char *efx_step_status(const cJSON *doc, const char *step);

/* A child to crash: the engine closed here and forked, open again in the
 * child. 0 in the child, the child's pid here. */
pid_t efx_fork(efx *f);

/* The child `pid` ended by a signal: `sig`, or any when 0. */
void efx_wait_signaled(pid_t pid, int sig);

/* rz_engine_check passes (its message printed when not). */
void efx_check(efx *f);

/* The account's available balance. */
uint64_t efx_available(efx *f, rz_ledger_id id);

/* Close, remove the folder, free; NULL is fine. */
void efx_free(efx *f);

#endif

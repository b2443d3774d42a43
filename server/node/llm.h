/* rhizos-node's [[llm]] model servers (docs/llm.md): their models for the
 * capabilities, and which one serves a job's model. The llm adapter
 * itself (requests, streams, generation) is the library's (lib/exec/llm.c,
 * through rz_attempt with adapter "llm"); here only what the node
 * advertises, over rz_llm_models. */
#ifndef RHIZOS_NODE_LLM_H
#define RHIZOS_NODE_LLM_H

#include <stddef.h>

#include "node.h"

struct cJSON;

#define LLM_NAME_MAX 200u            /* a model name, bytes */
#define LLM_MODELS_MAX 256u          /* advertised at most */

/* The "llm" object of the capabilities: {"models":[{..., "kind"}],
 * "price_1k_tokens_micros" | "price_second_micros", "servers":[{"kind","up"}]}
 * over every [[llm]]
 * server (a server that does not answer is "up": false, its models absent;
 * why goes to `why` for the caller to report, per server, '\n'-separated).
 * NULL when no server is configured or out of memory. */
struct cJSON *llm_caps(const node_config *cfg, char *why, size_t whylen);

/* The first [[llm]] server that lists `model` now (asked afresh), or -1. */
int llm_find(const node_config *cfg, const char *model);

/* The server as the llm adapter's list entry "KIND=URL" (rz_attempt_opts'
 * llm_servers). */
void llm_server_spec(const node_llm *srv, char *out, size_t len);

#endif /* RHIZOS_NODE_LLM_H */

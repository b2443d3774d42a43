/* The node's side of the orchestrator protocol: requests through
 * rz_client (CBOR on the node routes), capabilities and registration. */
#include <cjson/cJSON.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "rhizos/rhizos.h"
#include "node.h"
#include "llm.h"
#include "slurm.h"

int node_client_new(rz_client **c, const char *url, const char *token,
                    const node_config *cfg)
{
    int rc = rz_client_new(c, url, token);
    if (rc == RZ_OK && cfg->orchestrator_ca_file &&
        (rc = rz_client_set_ca_file(*c, cfg->orchestrator_ca_file)) != RZ_OK) {
        rz_client_free(*c);
        *c = NULL;
    }
    return rc;
}

int node_call(rz_client *c, const char *method, const char *path,
              const cJSON *body, int cbor, long *status, cJSON **reply)
{
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    char *raw = NULL;
    long st = 0;
    if (reply)
        *reply = NULL;
    if (body && !text)
        return RZ_ENOMEM;
    int rc = rz_client_call(c, method, path, text, cbor ? RZ_CLIENT_CBOR : 0,
                            &st, &raw);
    cJSON_free(text);
    if (status)
        *status = st;
    if (rc == RZ_OK && raw && reply && !(*reply = cJSON_Parse(raw)))
        rc = RZ_EPROTOCOL;
    rz_free(raw);
    return rc;
}

int node_status_lost(int rc)
{
    return rc == RZ_ENOENT || rc == RZ_ESTATE || rc == RZ_EAUTH;
}

int node_status_passes(int rc, long status)
{
    return rc == RZ_ECONNECT || (rc != RZ_OK && (status >= 500 || status == 429));
}

/* ---- capabilities ---- */

static void attach_benchmark(rz_caps *caps, const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/node-benchmark.json", dir);
    size_t n = 0;
    char *text = node_read_file(path, 4096, &n);
    rz_hw_bench b;
    if (text && rz_hw_bench_parse(&b, text, n) == RZ_OK)
        (void)!rz_caps_set_benchmark(caps, &b);   /* parsed: valid */
    free(text);
}

static int apply_config(rz_caps *caps, const node_config *cfg)
{
    int rc = rz_caps_set_prices(caps, cfg->gpu_hour_micros, cfg->cpu_hour_micros,
                                cfg->memory_gb_hour_micros);
    if (rc == RZ_OK)
        rc = rz_caps_set_market(caps, rz_caps_get(caps)->reputation,
                                cfg->max_concurrent_jobs);
    for (size_t i = 0; rc == RZ_OK && i < cfg->n_labels; i++)
        rc = rz_caps_set_label(caps, cfg->label_keys[i], cfg->label_values[i]);
    return rc;
}

/* What the agent really serves: processes, WebAssembly modules where a
 * runtime answers, and containers only when the configured engine answers
 * (it is asked, not just its socket found); the runtime "nvidia" only
 * when that engine runs GPU containers. */
static int apply_containers(rz_caps *caps, const node_config *cfg)
{
    rz_container_info ci;
    int rc = rz_container_probe(&ci, cfg->container_host);
    if (rc != RZ_OK)
        return rc;
    /* wasm only where a WebAssembly runtime answers (rz_wasm_runtime). */
    const char *adapters[3] = {"process"};
    size_t n = 1;
    if (ci.answers)
        adapters[n++] = "docker";
    if (rz_wasm_runtime())
        adapters[n++] = "wasm";
    const char *runtimes[] = {"docker", "nvidia"};
    rc = rz_caps_set_adapters(caps, adapters, n);
    if (rc == RZ_OK)
        rc = rz_caps_set_runtimes(caps, runtimes,
                                  !ci.answers ? 0 : ci.gpu ? 2 : 1);
    /* Ad-hoc images only where the operator allows some (the orchestrator
     * requires this label of such jobs). */
    if (rc == RZ_OK && ci.answers && cfg->n_allow_images)
        rc = rz_caps_set_label(caps, NODE_ADHOC_LABEL, "yes");
    return rc;
}

/* The [[llm]] servers' models (docs/llm.md), and the adapter "llm" when
 * there is one; a server that does not answer is said on stderr, not an
 * error: the node serves what else it can. */
static void add_llm(cJSON *j, const node_config *cfg)
{
    char why[2048];
    cJSON *llm = llm_caps(cfg, why, sizeof why);
    if (why[0])
        fprintf(stderr, "rhizos-node: warning: llm: %s\n", why);
    if (!llm)
        return;
    cJSON_AddItemToObject(j, "llm", llm);
    cJSON *ad = cJSON_GetObjectItemCaseSensitive(j, "adapters");
    if (cJSON_GetArraySize(cJSON_GetObjectItem(llm, "models")) > 0 &&
        cJSON_IsArray(ad))
        cJSON_AddItemToArray(ad, cJSON_CreateString("llm"));
}

/* No more memory than one job may take; the model servers' models. */
static char *restrict_json(const char *json, const node_config *cfg)
{
    cJSON *j = cJSON_Parse(json);
    if (!j)
        return NULL;
    add_llm(j, cfg);
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(j, "memory_mb");
    if (cfg->max_memory_mb && cJSON_IsNumber(mem) &&
        mem->valuedouble > cfg->max_memory_mb)
        cJSON_ReplaceItemInObjectCaseSensitive(
            j, "memory_mb", cJSON_CreateNumber(cfg->max_memory_mb));
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* A Slurm gateway advertises its partition, not this machine. Frees
 * `json`; NULL with err when Slurm does not answer. */
static char *slurm_caps(char *json, const node_config *cfg, char *err,
                        size_t errlen)
{
    cJSON *j = cJSON_Parse(json);
    free(json);
    char *out = NULL;
    if (!j)
        snprintf(err, errlen, "capabilities: out of memory");
    else if (slurm_caps_apply(j, cfg, err, errlen) == 0 &&
        !(out = cJSON_PrintUnformatted(j)))
        snprintf(err, errlen, "capabilities: out of memory");
    cJSON_Delete(j);
    return out;
}

char *node_capabilities(const char *dir, const node_config *cfg, char *err,
                        size_t errlen)
{
    rz_hw_opts ho = RZ_HW_OPTS_INIT;
    struct stat st;
    ho.data_dir = stat(dir, &st) == 0 ? dir : ".";
    ho.skip_runtimes = 1;   /* apply_containers asks the engine itself */
    rz_caps *caps = NULL;
    char *json = NULL, *out = NULL;
    int rc = rz_hw_detect(&caps, &ho);
    if (rc == RZ_OK) {
        attach_benchmark(caps, dir);
        rc = apply_config(caps, cfg);
    }
    if (rc == RZ_OK)
        rc = apply_containers(caps, cfg);
    if (rc == RZ_OK)
        rc = rz_caps_to_json(caps, 0, &json);
    if (rc == RZ_OK && !(out = restrict_json(json, cfg)))
        rc = RZ_ENOMEM;
    if (rc == RZ_OK && cfg->backend == NODE_BACKEND_SLURM &&
        !(out = slurm_caps(out, cfg, err, errlen))) {
        rz_free(json);
        rz_caps_free(caps);
        return NULL;
    }
    if (rc != RZ_OK)
        snprintf(err, errlen, "capabilities: %s", rz_error_last()->message[0]
                 ? rz_error_last()->message : rz_strerror(rc));
    rz_free(json);
    rz_caps_free(caps);
    return out;
}

/* ---- registration ---- */

uint64_t node_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The registration, signed by the node's key over the orchestrator's key,
 * a fresh timestamp and a nonce (docs/api.md "Node identity", version 2):
 * it proves the key is ours, and is good at that orchestrator only. */
static cJSON *register_body(const char *caps_json, const node_keys *k,
                            const char *orch_hex)
{
    char x[65], ed[65], nonce[RZ_AUTH_NONCE_HEX + 1], sig[RZ_AUTH_SIG_HEX + 1];
    unsigned char nb[RZ_AUTH_NONCE_HEX / 2];
    node_hex(x, k->x_pk, sizeof k->x_pk);
    node_hex(ed, k->ed_pk, sizeof k->ed_pk);
    randombytes_buf(nb, sizeof nb);
    node_hex(nonce, nb, sizeof nb);
    rz_auth_node_proof2 p = RZ_AUTH_NODE_PROOF2_INIT;
    p.action = "register";
    p.ed25519_hex = ed;
    p.x25519_hex = x;
    p.timestamp_ms = node_unix_ms();
    p.nonce_hex = nonce;
    p.orchestrator_hex = orch_hex;
    if (rz_auth_proof2_sign(&p, k->ed_sk, sig) != RZ_OK)
        return NULL;
    cJSON *body = cJSON_CreateObject();
    cJSON *caps = cJSON_Parse(caps_json);
    if (!body || !caps) {
        cJSON_Delete(body);
        cJSON_Delete(caps);
        return NULL;
    }
    cJSON_AddItemToObject(body, "capabilities", caps);
    cJSON_AddStringToObject(body, "x25519_public_key", x);
    cJSON_AddStringToObject(body, "ed25519_public_key", ed);
    cJSON_AddStringToObject(body, "orchestrator_public_key", orch_hex);
    cJSON_AddNumberToObject(body, "timestamp_ms", (double)p.timestamp_ms);
    cJSON_AddStringToObject(body, "nonce", nonce);
    cJSON_AddStringToObject(body, "signature", sig);
    return body;
}

/* The orchestrator's identity key into hex (65 bytes): what it answers
 * GET /api/v1/identity with, which must be the pinned key when the config
 * has one. A message in err when not. */
static int orchestrator_identity(rz_client *c, const char *url,
                                 const node_config *cfg, char hex[65],
                                 char *err, size_t errlen)
{
    cJSON *reply = NULL;
    int rc = node_call(c, "GET", "/api/v1/identity", NULL, 0, NULL, &reply);
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(reply, "x25519_public_key");
    if (rc != RZ_OK) {
        snprintf(err, errlen, "registering at %s: cannot read its identity "
                 "(GET /api/v1/identity; an orchestrator older than this node "
                 "has none): %s", url, rz_error_last()->message[0]
                 ? rz_error_last()->message : rz_strerror(rc));
    } else if (!cJSON_IsString(k) || strlen(k->valuestring) != 64) {
        rc = RZ_EPROTOCOL;
        snprintf(err, errlen, "registering at %s: its identity has no "
                 "x25519_public_key", url);
    } else if (cfg->orchestrator_key &&
               strcmp(cfg->orchestrator_key, k->valuestring) != 0) {
        rc = RZ_EAUTH;
        snprintf(err, errlen, "registering at %s: it answers with key %s, not "
                 "the one [orchestrator] key pins (%s); not registering",
                 url, k->valuestring, cfg->orchestrator_key);
    } else {
        memcpy(hex, k->valuestring, 65);
    }
    cJSON_Delete(reply);
    return rc;
}

/* {"id","token","account"} into *st (the token in guarded memory). */
static int take_reply(const cJSON *r, const char *url, node_state *st)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(r, "token");
    const cJSON *acct = cJSON_GetObjectItemCaseSensitive(r, "account");
    if (!cJSON_IsNumber(id) || id->valuedouble < 1 ||
        id->valuedouble >= 9007199254740992.0 || !cJSON_IsString(tok) ||
        !tok->valuestring[0] || !cJSON_IsString(acct) ||
        strlen(acct->valuestring) >= sizeof st->account ||
        strlen(url) >= sizeof st->url)
        return RZ_EPROTOCOL;
    node_state_free(st);
    size_t n = strlen(tok->valuestring);
    if (!(st->token = sodium_malloc(n + 1)))
        return RZ_ENOMEM;
    memcpy(st->token, tok->valuestring, n + 1);
    st->id = (uint64_t)id->valuedouble;
    strcpy(st->account, acct->valuestring);
    strcpy(st->url, url);
    return RZ_OK;
}

int node_register(const char *dir, const char *url, const node_config *cfg,
                  const node_keys *keys, node_state *st, char *err,
                  size_t errlen)
{
    char *caps = node_capabilities(dir, cfg, err, errlen);
    if (!caps && cfg->backend == NODE_BACKEND_SLURM) {
        /* Slurm away: said, and tried again with backoff. */
        fprintf(stderr, "rhizos-node: %s; registering later\n", err);
        return RZ_ESTATE;
    }
    if (!caps)
        return RZ_EINTERNAL;
    cJSON *parsed = cJSON_Parse(caps);
    int n_gpus = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(parsed, "gpus"));
    cJSON_Delete(parsed);
    cJSON *body = NULL, *reply = NULL;
    rz_client *c = NULL;
    char orch_hex[65];
    int rc = node_client_new(&c, url, NULL, cfg);
    if (rc == RZ_OK &&
        (rc = orchestrator_identity(c, url, cfg, orch_hex, err, errlen)) != RZ_OK) {
        free(caps);
        rz_client_free(c);
        return rc;
    }
    if (rc == RZ_OK && !(body = register_body(caps, keys, orch_hex)))
        rc = RZ_ENOMEM;
    free(caps);
    if (rc == RZ_OK)
        rc = node_call(c, "POST", "/api/v1/nodes/register", body, 0, NULL,
                       &reply);
    if (rc != RZ_OK)
        snprintf(err, errlen, "registering at %s: %s", url,
                 rz_error_last()->message[0] ? rz_error_last()->message
                                             : rz_strerror(rc));
    else if ((rc = take_reply(reply, url, st)) != RZ_OK)
        snprintf(err, errlen, "registering at %s: the reply lacks id, token "
                 "or account", url);
    else if (node_state_save(st, dir, err, errlen) != 0)
        rc = RZ_EIO;
    if (rc == RZ_OK)
        st->n_gpus = n_gpus > 0 ? (uint32_t)n_gpus : 0;
    if (reply) {
        /* The token was in the reply's memory too. */
        cJSON *tok = cJSON_GetObjectItemCaseSensitive(reply, "token");
        if (cJSON_IsString(tok))
            sodium_memzero(tok->valuestring, strlen(tok->valuestring));
    }
    cJSON_Delete(reply);
    cJSON_Delete(body);
    rz_client_free(c);
    return rc;
}

/* One assignment: check the module, open its credentials in memory, run it
 * as one attempt through its adapter (rz_attempt_*: protocol, limits,
 * scrubbing and failure reasons live there), report the result (retrying
 * until the orchestrator has it), wipe the secrets. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "blobs.h"
#include "llm.h"
#include "slurm.h"

#define MAX_CREDS 32
#define LOG_CAP (64u * 1024u)
/* A result body larger than this is never sent: the orchestrator refuses
 * bodies over its --max-body (default 1 MiB) for good. */
#define BODY_MAX (1000u * 1024u)
#define LOG_CUT (4u * 1024u)   /* the log tail kept when a body is too big */

typedef struct job {
    job_slot *s;
    const cJSON *asg;
    const char *module_id, *module_version, *digest, *step;
    char module_ref[160];
    const rz_module *m;
    cJSON *manifest;
    rz_registry *adhoc_reg;              /* an ad-hoc image's module */
    char adhoc_dir[PATH_MAX];
    const char *cred_names[MAX_CREDS];   /* fields, borrowed from asg */
    rz_secret *creds[MAX_CREDS];         /* values, NUL-terminated */
    size_t n_creds;
    char *outputs, *error, *log;
    uint64_t run_ms;
    int llm_server;                      /* an llm job's [[llm]]; -1 none */
    const char *llm_model;               /* borrowed from asg */
    int service;                         /* a service step (docs/services.md) */
    uint32_t ev_seq;                     /* its events sent so far */
    rz_service_rate rate;                /* the caps on its events */
} job;

static int deliver(agent *a, job *j, const char *what, const cJSON *body,
                   const char *kept, long *status_out);

static const char *str_at(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_at(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* ---- the module ---- */

/* NULL when the node can run it, else why not (static text or *why). */
static const char *check_module(agent *a, job *j, char *why, size_t n)
{
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(j->asg, "module");
    j->module_id = str_at(mod, "id");
    j->module_version = str_at(mod, "version");
    j->digest = str_at(mod, "digest");
    if (!j->module_id || !j->module_version)
        return "the assignment names no module";
    snprintf(j->module_ref, sizeof j->module_ref, "%s%s%s", j->module_id,
             *j->module_version ? "@" : "", j->module_version);
    /* The orchestrator resolved the module: it names one exact version and
     * the digest of its manifest, and the node runs nothing else. */
    if (!j->digest || strlen(j->digest) != 64)
        return "the assignment has no module digest";
    if (rz_registry_resolve(a->reg, j->module_id, j->module_version, &j->m)
        != RZ_OK) {
        snprintf(why, n, "module %s is not in this node's registries",
                 j->module_ref);
        return why;
    }
    if (strcmp(rz_module_version(j->m), j->module_version) != 0) {
        snprintf(why, n, "module %s: the assignment names a version range, "
                 "not an exact version", j->module_ref);
        return why;
    }
    char hex[65];
    if (rz_module_digest(j->m, hex) != RZ_OK || strcmp(hex, j->digest) != 0) {
        snprintf(why, n, "module %s differs here (manifest digest %.12s..., "
                 "the orchestrator's %.12s...)", j->module_ref, hex,
                 j->digest);
        return why;
    }
    char *text = NULL;
    if (rz_module_manifest_json(j->m, &text) == RZ_OK)
        j->manifest = cJSON_Parse(text);
    rz_free(text);
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(j->manifest, "exec");
    const char *adapter = str_at(ex, "adapter");
    /* A step on a node-served model runs the llm adapter, not the module's. */
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(j->asg, "request");
    char *cfg = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(req, "config"));
    bool local = cfg && strcmp(rz_module_step_adapter(j->m, cfg), "llm") == 0;
    cJSON_free(cfg);
    if (local)
        return NULL;
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(ex, "command");
    if (!rz_module_dir(j->m))
        return "the module has no local folder to run from";
    if (rz_attempt_adapter_check_at(adapter, a->cfg.container_host) != RZ_OK) {
        snprintf(why, n, "%.300s", rz_error_last()->message);
        return why;
    }
    if ((!adapter || strcmp(adapter, "process") == 0) &&
        (!cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) == 0))
        return "the module has no exec.command";
    return NULL;
}

/* ---- an ad-hoc image ---- */

/* The orchestrator allowed a client's image without a module (its
 * --allow-images policy) and marks the assignment so: "adhoc"
 * {"adapter":"docker","image","command"?} in place of "module". Only such
 * an assignment runs an image no registry names; it runs as a module whose
 * manifest is just that exec (DATA/adhoc/ID/ID/module.json while it runs).
 * NULL when it can run, else why not. */
static const char *check_adhoc(agent *a, job *j, const cJSON *adhoc,
                               char *why, size_t n)
{
    const char *image = str_at(adhoc, "image");
    const cJSON *cmd = cJSON_GetObjectItemCaseSensitive(adhoc, "command");
    const char *adapter = str_at(adhoc, "adapter");
    if (!image || !*image || !adapter || strcmp(adapter, "docker") != 0 ||
        (cmd && !cJSON_IsArray(cmd)))
        return "the ad-hoc assignment names no docker image";
    snprintf(j->module_ref, sizeof j->module_ref, "image %.140s", image);
    j->module_id = j->module_ref;
    /* The node's operator opts in too: the orchestrator's policy is not
     * this machine's. */
    if (!a->cfg.n_allow_images)
        return "this node runs no ad-hoc images (its operator allows them "
               "with [container] allow_images)";
    if (!node_config_image_allowed(&a->cfg, image)) {
        snprintf(why, n, "image \"%.200s\" matches no [container] "
                 "allow_images pattern of this node", image);
        return why;
    }
    if (rz_attempt_adapter_check_at("docker", a->cfg.container_host) != RZ_OK) {
        snprintf(why, n, "%.300s", rz_error_last()->message);
        return why;
    }
    char mid[40];
    snprintf(mid, sizeof mid, "adhoc-%" PRIu64, j->s->job);
    cJSON *man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "id", mid);
    cJSON_AddStringToObject(man, "version", "0.0.0");
    cJSON_AddStringToObject(man, "name", j->module_ref);
    cJSON_AddArrayToObject(man, "inputs");
    cJSON_AddArrayToObject(man, "outputs");
    cJSON_AddItemToObject(man, "exec", cJSON_Duplicate(adhoc, 1));
    char *text = cJSON_PrintUnformatted(man);
    j->manifest = man;
    /* A registry folder holds module folders: DATA/adhoc/ID/ID/module.json. */
    snprintf(j->adhoc_dir, sizeof j->adhoc_dir, "%s/adhoc/%s",
             a->o->data_dir, mid);
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/adhoc", a->o->data_dir);
    mkdir(path, 0700);
    mkdir(j->adhoc_dir, 0700);
    snprintf(path, sizeof path, "%s/%s", j->adhoc_dir, mid);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/%s/module.json", j->adhoc_dir, mid);
    FILE *f = text ? fopen(path, "w") : NULL;
    int ok = f && fputs(text, f) >= 0;
    ok = (f && fclose(f) == 0) && ok;
    cJSON_free(text);
    if (!ok || rz_registry_new(&j->adhoc_reg) != RZ_OK ||
        rz_registry_add_dir(j->adhoc_reg, j->adhoc_dir, NULL) != RZ_OK ||
        rz_registry_resolve(j->adhoc_reg, mid, "0.0.0", &j->m) != RZ_OK) {
        snprintf(why, n, "cannot prepare the image's job here: %.300s",
                 rz_error_last()->message);
        return why;
    }
    return NULL;
}

/* ---- an llm job ---- */

/* "adhoc" {"adapter":"llm","model"} with "request" {"prompt"|"messages",
 * "max_tokens","temperature"?} (docs/llm.md): the model must be one a
 * [[llm]] server of this node lists now. NULL when it can run. */
static const char *check_llm(agent *a, job *j, const cJSON *adhoc, char *why,
                             size_t n)
{
    j->llm_model = str_at(adhoc, "model");
    if (!j->llm_model || !*j->llm_model || strlen(j->llm_model) > LLM_NAME_MAX)
        return "the llm assignment names no model";
    snprintf(j->module_ref, sizeof j->module_ref, "llm %.140s", j->llm_model);
    j->module_id = j->module_ref;
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j->asg, "request")))
        return "the llm assignment has no request";
    if (!a->cfg.n_llm)
        return "this node has no [[llm]] model server";
    j->llm_server = llm_find(&a->cfg, j->llm_model);
    if (j->llm_server < 0) {
        snprintf(why, n, "model \"%.200s\" is not served here now (no "
                 "[[llm]] server lists it)", j->llm_model);
        return why;
    }
    return NULL;
}

/* The attempt's request: the job's {prompt|messages, max_tokens,
 * temperature} and its model as the llm adapter's inputs. */
static char *llm_request(const job *j)
{
    cJSON *in = cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j->asg,
                                                                 "request"), 1);
    cJSON *doc = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(in, "model");
    if (!in || !doc || !cJSON_AddStringToObject(in, "model", j->llm_model) ||
        !cJSON_AddItemToObject(doc, "inputs", in)) {
        cJSON_Delete(in);
        cJSON_Delete(doc);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    return text;
}

static void adhoc_cleanup(job *j)
{
    if (!j->adhoc_dir[0])
        return;
    char path[PATH_MAX + 64];
    const char *mid = strrchr(j->adhoc_dir, '/');
    mid = mid ? mid + 1 : j->adhoc_dir;   /* DATA/adhoc/ID: ID */
    snprintf(path, sizeof path, "%s/%.40s/module.json", j->adhoc_dir, mid);
    unlink(path);
    snprintf(path, sizeof path, "%s/%.40s", j->adhoc_dir, mid);
    rmdir(path);
    rmdir(j->adhoc_dir);
    rz_registry_free(j->adhoc_reg);
}

/* ---- credentials ---- */

/* The value, NUL-terminated, in a guarded buffer; the adapter decides how
 * the module receives it (RZ_CRED_<FIELD>, or a file). */
static int cred_entry(job *j, const char *field, const rz_secret *value)
{
    size_t vl = rz_secret_len(value);
    rz_secret *e = NULL;
    if (j->n_creds == MAX_CREDS || rz_secret_alloc(&e, vl + 1) != RZ_OK)
        return -1;
    unsigned char *p = rz_secret_bytes(e);
    memcpy(p, rz_secret_data(value), vl);
    p[vl] = '\0';
    rz_secret_truncate(e, vl);
    j->cred_names[j->n_creds] = field;
    j->creds[j->n_creds++] = e;
    return 0;
}

static const char *open_one(agent *a, job *j, const cJSON *c, const char *jid)
{
    const char *field = str_at(c, "field"), *b64 = str_at(c, "sealed");
    if (!field || !*field || !b64)
        return "a credential lacks field or sealed";
    size_t blen = strlen(b64), n = 0;
    unsigned char *sealed = malloc(blen + 1);
    if (!sealed || sodium_base642bin(sealed, blen + 1, b64, blen, NULL, &n,
                                     NULL, sodium_base64_VARIANT_ORIGINAL)) {
        free(sealed);
        return "a sealed credential is not base64";
    }
    rz_secret *value = NULL;
    int rc = rz_vault_unseal(&value, NULL, sealed, n, a->keys.x_pk,
                             a->keys.x_sk, jid, 0);
    free(sealed);
    if (rc != RZ_OK)
        return rc == RZ_EEXPIRED ? "a sealed credential has expired"
                                 : "a sealed credential does not open for "
                                   "this node's key and this job";
    if (memchr(rz_secret_data(value), '\0', rz_secret_len(value))) {
        rz_secret_free(value);
        return "a credential holds a NUL byte";
    }
    rc = cred_entry(j, field, value);
    rz_secret_free(value);
    return rc ? "too many credentials" : NULL;
}

static const char *open_credentials(agent *a, job *j)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j->asg, "credentials");
    char jid[24];
    snprintf(jid, sizeof jid, "%" PRIu64, j->s->job);
    const cJSON *c;
    cJSON_ArrayForEach(c, list) {
        const char *why = open_one(a, j, c, jid);
        if (why)
            return why;
    }
    return NULL;
}

static void wipe_credentials(job *j)
{
    for (size_t i = 0; i < j->n_creds; i++)
        rz_secret_free(j->creds[i]);
    j->n_creds = 0;
}

/* ---- running ---- */

static uint32_t job_timeout(const job *j)
{
    if (j->service)
        return 0;   /* it runs until it ends */
    double t = num_at(j->asg, "timeout_s");
    if (t <= 0)
        t = num_at(cJSON_GetObjectItemCaseSensitive(j->manifest, "exec"),
                   "timeout_s");
    return t <= 0 ? 0 : t > 4000000 ? 4000000u : (uint32_t)t;
}

/* The requirements the job was matched by, as its assignment carries them
 * (its submission's or step's own over its module's); from an
 * orchestrator that sends none, its module's. */
static const cJSON *job_reqs(const job *j)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j->asg, "requirements");
    return cJSON_IsObject(r) ? r
           : cJSON_GetObjectItemCaseSensitive(j->manifest, "requirements");
}

/* A generation (an llm job, a flow's llm step: requirements with "llm")
 * stops at `t` (its server's or its module's timeout_s; 0 none), or sooner
 * at the seconds its requirements priced it on ("llm": {"seconds"}, else
 * RZ_LLM_DEFAULT_SECONDS): a node priced per second is paid for no more
 * (docs/llm.md). */
static uint32_t llm_timeout(const job *j, uint32_t t)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(job_reqs(j), "llm");
    if (!cJSON_IsObject(l) || j->service)
        return t;
    double s = num_at(l, "seconds");
    if (s < 1)   /* priced on the default bound */
        s = RZ_LLM_DEFAULT_SECONDS;
    if (s > RZ_LLM_MAX_SECONDS)
        s = RZ_LLM_MAX_SECONDS;
    return !t || s < t ? (uint32_t)s : t;
}

static uint32_t job_memory(agent *a, const job *j)
{
    double req = num_at(job_reqs(j), "memory_mb");
    uint32_t mb = req > 0 && req < UINT32_MAX ? (uint32_t)req : 0;
    uint32_t cap = a->cfg.max_memory_mb;
    return cap && (mb == 0 || mb > cap) ? cap : mb;
}

/* ---- GPUs ---- */

/* The GPUs the step asks for, read as the matcher reads them ("gpu": N,
 * {"count": N}, {} for one). */
static uint32_t job_gpus(const job *j)
{
    const cJSON *reqs = job_reqs(j);
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(reqs, "gpu");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(reqs, "requirements");
    if ((!g || cJSON_IsNull(g)) && (!in || cJSON_IsNull(in)))
        return 0;   /* no GPU asked for: not printed and parsed for it */
    char *text = cJSON_PrintUnformatted(reqs);
    rz_reqs *r = NULL;
    uint32_t n = text && rz_reqs_parse(&r, text, strlen(text)) == RZ_OK
                 ? rz_reqs_get(r)->gpu_count : 0;
    rz_reqs_free(r);
    cJSON_free(text);
    return n <= 64 ? n : 0;
}

/* Under Slurm (slurm-run) the GPUs are the ones Slurm gave the job
 * (SLURM_JOB_GPUS, indices on this node), not this node's own count. */
static const char *slurm_gpus(uint32_t n, char names[][4], const char **ids,
                              char *why, size_t len)
{
    const char *env = getenv("SLURM_JOB_GPUS");
    uint32_t k = 0;
    for (const char *p = env; p && *p && k < n;) {
        size_t w = strspn(p, "0123456789");
        if (w == 0 || w > 3 || (p[w] && p[w] != ','))
            break;
        memcpy(names[k], p, w);
        names[k][w] = '\0';
        ids[k] = names[k];
        k++;
        p += w + (p[w] == ',');
    }
    ids[k == n ? k : 0] = NULL;
    if (k == n)
        return NULL;
    snprintf(why, len, "needs %" PRIu32 " GPU%s; Slurm gave this job %s", n,
             n == 1 ? "" : "s", env ? env : "none (no SLURM_JOB_GPUS)");
    return why;
}

const char *agent_take_gpus(agent *a, uint32_t n, uint64_t *mask,
                            char names[][4], const char **ids, char *why,
                            size_t len)
{
    *mask = 0;
    ids[0] = NULL;
    if (n == 0)
        return NULL;
    if (a->local && getenv("SLURM_JOB_ID"))
        return slurm_gpus(n, names, ids, why, len);
    pthread_mutex_lock(&a->mu);
    uint32_t total = a->st.n_gpus < 64 ? a->st.n_gpus : 64, k = 0;
    for (uint32_t i = 0; i < total && k < n; i++)
        if (!(a->gpus_busy >> i & 1u)) {
            *mask |= UINT64_C(1) << i;
            snprintf(names[k], 4, "%u", i);
            ids[k] = names[k];
            k++;
        }
    if (k == n)
        a->gpus_busy |= *mask;
    pthread_mutex_unlock(&a->mu);
    ids[k == n ? k : 0] = NULL;
    if (k == n)
        return NULL;
    *mask = 0;
    snprintf(why, len, "needs %" PRIu32 " GPU%s; %" PRIu32 " of this node's "
             "%" PRIu32 " are free", n, n == 1 ? "" : "s", k, total);
    return why;
}

void agent_give_back_gpus(agent *a, uint64_t mask)
{
    pthread_mutex_lock(&a->mu);
    a->gpus_busy &= ~mask;
    pthread_mutex_unlock(&a->mu);
}

/* Context, the request, the limits of this node, credentials (borrowed:
 * the attempt keeps its own copy to scrub with). */
static int start(agent *a, job *j, rz_attempt **att, const char *const *gpus)
{
    char run_id[40];
    snprintf(run_id, sizeof run_id, "job-%" PRIu64, j->s->job);
    rz_attempt_secret secrets[MAX_CREDS];
    for (size_t i = 0; i < j->n_creds; i++)
        secrets[i] = (rz_attempt_secret){
            j->cred_names[i], (const char *)rz_secret_data(j->creds[i]) };
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(j->asg, "request");
    int llm = j->llm_server >= 0;
    char *input = llm ? llm_request(j)
                : cJSON_IsObject(req) ? cJSON_PrintUnformatted(req) : NULL;
    if ((llm || cJSON_IsObject(req)) && !input)
        return RZ_ENOMEM;
    rz_attempt_opts ao = RZ_ATTEMPT_OPTS_INIT;
    ao.module = j->m;
    ao.request_json = input;
    ao.run_id = run_id;
    ao.step_id = j->step && *j->step ? j->step : "job";
    ao.attempt = j->s->attempt;
    ao.job_id = j->s->job;
    ao.secrets = secrets;
    ao.n_secrets = j->n_creds;
    ao.timeout_s = llm_timeout(j, job_timeout(j));
    ao.memory_mb = job_memory(a, j);
    ao.max_log = LOG_CAP;
    ao.max_output = (size_t)a->cfg.max_output_kb * 1024u;
    ao.sandbox = a->sandbox;
    ao.node_id = a->node_id;
    ao.container_host = a->cfg.container_host;
    ao.gpu_ids = gpus[0] ? gpus : NULL;
    ao.max_scratch_mb = a->cfg.max_scratch_mb;
    ao.max_file = (uint64_t)a->cfg.max_file_mb << 20;
    ao.max_files = (uint64_t)a->cfg.max_job_files_mb << 20;
    ao.service = j->service;
    /* File outputs and inputs (blobs.c). Under Slurm (slurm-run) the data
     * folder is the gateway's, shared: the gateway fetched the inputs
     * there and uploads the outputs from there (run_slurm). */
    char blobs[4096];
    node_blobs_dir(a, blobs, sizeof blobs);
    ao.blob_dir = blobs;
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(j->asg, "ready");
    ao.ready_check = j->service ? str_at(rd, "check") : NULL;
    double ready_s = num_at(rd, "timeout_s");
    ao.ready_timeout_s = ready_s >= 1 && ready_s <= 86400 * 30 ? (uint32_t)ready_s : 0;
    /* An llm job is the llm adapter's, on the server that lists its model;
     * a flow's llm step (a module with exec.adapter "llm") may use any. */
    char servers[NODE_CONFIG_MAX_LLM * (NODE_LLM_URL_MAX + 16)] = "";
    for (size_t i = 0; i < a->cfg.n_llm; i++) {
        if (llm && (int)i != j->llm_server)
            continue;
        size_t used = strlen(servers);
        if (used)
            servers[used++] = ' ';
        llm_server_spec(&a->cfg.llm[i], servers + used, sizeof servers - used);
    }
    ao.llm_servers = servers;
    if (llm) {
        ao.adapter = "llm";
        ao.timeout_s = llm_timeout(j, (uint32_t)a->cfg.llm[j->llm_server].timeout_s);
    }
    /* Unsandboxed, a slot's jobs refill one scratch folder, as the embedded
     * runner's steps do; without a pool each makes and removes its own. */
    if (!a->sandbox && !a->local && !j->s->scratch &&
        rz_scratch_pool_new(&j->s->scratch, NULL) != RZ_OK)
        j->s->scratch = NULL;
    int rc = rz_attempt_start_pooled(att, &ao, j->s->scratch);
    sodium_memzero(secrets, sizeof secrets);
    cJSON_free(input);
    return rc;
}

static int stop_requested(job_slot *s)
{
    pthread_mutex_lock(&s->a->mu);
    int stop = s->stop;
    pthread_mutex_unlock(&s->a->mu);
    return stop;
}

/* The lines the attempt has scrubbed since the last look, to the live
 * view (a poll of 200 ms at most apart). */
static void stream(rz_attempt *att, live_log *live, int flush)
{
    char *lines = NULL;
    if (live && rz_attempt_log_lines(att, flush, &lines) == RZ_OK)
        live_log_add(live, lines);
    rz_free(lines);
}

/* Events go to the orchestrator at most this many a call (it takes 1,024). */
#define EVENTS_PER_POST 1000

/* One batch of readiness and events (POST .../events, retried until it
 * answers; a seq it took already is a repeat there, so a resend after a
 * lost answer is taken once); emptied for the next. */
static void events_post(agent *a, job *j, cJSON **body)
{
    cJSON *b = *body;
    cJSON *evs = cJSON_GetObjectItemCaseSensitive(b, "events");
    long status = 0;
    if ((cJSON_GetArraySize(evs) || cJSON_HasObjectItem(b, "ready")) &&
        deliver(a, j, "events", b, NULL, &status) != RZ_OK) {
        char why[96];
        snprintf(why, sizeof why, "job %" PRIu64 ": events not taken (HTTP %ld)",
                 j->s->job, status);
        agent_note_event(a, "events_refused", why);
    }
    cJSON_Delete(b);
    *body = cJSON_CreateObject();
    cJSON_AddNumberToObject(*body, "attempt", j->s->attempt);
    cJSON_AddArrayToObject(*body, "events");
}

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* An event line, under the caps embedded runs have (rz_service_event_admit):
 * refused, the reason joins the live log and the service goes on. */
static void event_add(job *j, cJSON *b, live_log *live, size_t len,
                      const char *name, const char *key, const char *data)
{
    const char *no = rz_service_event_admit(&j->rate, len, mono_ms());
    if (no && !*no)
        return;   /* said once this second */
    if (no) {
        char msg[200];
        snprintf(msg, sizeof msg, "event '%.64s' refused: %s", name, no);
        live_log_add(live, msg);
        return;
    }
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "seq", ++j->ev_seq);
    cJSON_AddStringToObject(e, "name", name);
    if (key)
        cJSON_AddStringToObject(e, "id", key);
    cJSON *d = data ? cJSON_Parse(data) : NULL;
    if (d)
        cJSON_AddItemToObject(e, "data", d);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(b, "events"), e);
}

/* A service's stdout lines (rz_service_line sorts them): log lines join
 * its live log; readiness and events go to the orchestrator at once. */
static void service_out(agent *a, job *j, rz_attempt *att, live_log *live)
{
    char *text = NULL;
    if (!j->service || rz_attempt_out_lines(att, &text, NULL) != RZ_OK || !text)
        return;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "attempt", j->s->attempt);
    cJSON_AddArrayToObject(b, "events");
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *name = NULL, *key = NULL, *data = NULL;
        size_t len = strlen(line);
        rz_service_line_kind k = rz_service_line(line, len, &name, &key, &data);
        if (k == RZ_SERVICE_LINE_LOG)
            live_log_add(live, line);
        else if (k == RZ_SERVICE_LINE_READY && !cJSON_HasObjectItem(b, "ready"))
            cJSON_AddTrueToObject(b, "ready");
        else if (k == RZ_SERVICE_LINE_EVENT)
            event_add(j, b, live, len, name, key, data);
        if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(b, "events")) >=
            EVENTS_PER_POST)
            events_post(a, j, &b);
        rz_free(name);
        rz_free(key);
        rz_free(data);
    }
    rz_free(text);
    events_post(a, j, &b);
    cJSON_Delete(b);
}

/* Runs to the end or until told to stop; fills outputs/error/log. */
static void run(agent *a, job *j)
{
    rz_attempt *att = NULL;
    char names[64][4], why[160];
    const char *gpus[65];
    uint64_t held = 0;
    const char *no = agent_take_gpus(a, job_gpus(j), &held, names, gpus, why,
                               sizeof why);
    if (no) {
        j->error = strdup(no);
        return;
    }
    char fwhy[400];
    if (!a->local && node_blobs_fetch(a, j->s->job, cJSON_GetObjectItemCaseSensitive(
                                          j->asg, "request"), fwhy, sizeof fwhy) != 0) {
        agent_give_back_gpus(a, held);
        j->error = strdup(fwhy);
        node_blobs_release(a, j->s->job);
        return;
    }
    if (start(a, j, &att, gpus) != RZ_OK) {
        agent_give_back_gpus(a, held);
        node_blobs_release(a, j->s->job);
        j->error = strdup("cannot start: out of memory");
        return;
    }
    int stopped = 0, done;
    live_log *live = live_log_start(a, j->s);
    while ((done = rz_attempt_poll(att, 200)) == 0) {
        stream(att, live, 0);
        service_out(a, j, att, live);
        if (!stopped && stop_requested(j->s)) {
            rz_attempt_stop(att);
            stopped = 1;
        }
    }
    if (done == 1) {
        stream(att, live, 1);
        service_out(a, j, att, live);
    }
    /* The live lines go before the result, which then replaces them. */
    live_log_finish(live);
    rz_attempt_result res;
    if (rz_attempt_result_get(att, &res) == RZ_OK) {
        j->run_ms = res.run_ms;
        j->log = res.log_len ? strndup(res.log, res.log_len) : NULL;
        if (res.ok)
            j->outputs = strdup(res.outputs);
        else
            j->error = strdup(res.reason);
    }
    rz_attempt_free(att);
    agent_give_back_gpus(a, held);
    if (j->outputs && !a->local &&
        node_blobs_upload(a, j->s->job, &j->outputs, fwhy, sizeof fwhy) != 0) {
        free(j->outputs);
        j->outputs = NULL;
        j->error = strdup(fwhy);
    }
    /* The step's copies are its own, and the orchestrator has its files. */
    node_blobs_release(a, j->s->job);
}

/* ---- reporting ---- */

static cJSON *result_body(const job *j)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "attempt", j->s->attempt);
    cJSON *out = j->outputs ? cJSON_Parse(j->outputs) : NULL;
    if (cJSON_IsObject(out))
        cJSON_AddItemToObject(b, "outputs", out);
    else {
        cJSON_Delete(out);
        cJSON_AddStringToObject(b, "error", j->error ? j->error
                                : "outputs are not a JSON object");
    }
    cJSON_AddNumberToObject(b, "run_ms", (double)j->run_ms);
    if (j->log)
        cJSON_AddStringToObject(b, "log", j->log);
    return b;
}

/* Bytes of the body on the wire (CBOR); SIZE_MAX when it cannot be told. */
static size_t wire_size(const cJSON *b)
{
    char *text = cJSON_PrintUnformatted(b);
    unsigned char *cbor = NULL;
    size_t n = SIZE_MAX;
    if (!text || rz_wire_encode(text, strlen(text), &cbor, &n) != RZ_OK)
        n = SIZE_MAX;
    cJSON_free(text);
    rz_free(cbor);
    return n;
}

/* A body the orchestrator takes: the log cut to its last LOG_CUT bytes
 * first, then the outputs given up for a failure (outputs that grow on the
 * wire, such as many short floats, can pass the cap and still not fit). */
static cJSON *fitted_body(job *j)
{
    cJSON *b = result_body(j);
    if (wire_size(b) <= BODY_MAX)
        return b;
    if (j->log && strlen(j->log) > LOG_CUT) {
        const char *tail = j->log + strlen(j->log) - LOG_CUT;
        while ((*tail & 0xC0) == 0x80)
            tail++;
        char *cut = strdup(tail);
        if (cut) {
            sodium_memzero(j->log, strlen(j->log));
            free(j->log);
            j->log = cut;
        }
        cJSON_Delete(b);
        b = result_body(j);
        if (wire_size(b) <= BODY_MAX)
            return b;
    }
    char buf[96];
    snprintf(buf, sizeof buf, "outputs over %u KiB as sent to the "
             "orchestrator", BODY_MAX / 1024u);
    free(j->outputs);
    j->outputs = NULL;
    free(j->error);
    j->error = strdup(buf);
    cJSON_Delete(b);
    return result_body(j);
}

/* POST until the orchestrator answers; a connection failure, a 5xx or a
 * 429 is retried with backoff (the result is not dropped), any other
 * answer is final. With the agent stopping, one more try is all there is. *status:
 * the HTTP status of the last answer (0: none). `kept`: the outbox file of
 * this body, synced once the first try did not go through. */
static int deliver(agent *a, job *j, const char *what, const cJSON *body,
                   const char *kept, long *status_out)
{
    *status_out = 0;
    unsigned tries = 0;
    for (;;) {
        uint64_t node = 0, gen = 0;
        rz_client *c = agent_client(a, &node, &gen);
        if (!c)
            return RZ_ENOMEM;
        if (gen != j->s->generation) {
            agent_client_put(a, c, gen);
            return RZ_ESTATE;   /* registered anew: this attempt is void */
        }
        char path[96];
        snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/jobs/%" PRIu64
                 "/%s", node, j->s->job, what);
        long status = 0;
        int rc = node_call(c, "POST", path, body, 1, &status, NULL);
        *status_out = status;
        /* A refused result is about this attempt, not the registration. */
        agent_note(a, rc == RZ_ECONNECT ? rc : RZ_OK, 0);
        agent_client_put(a, c, gen);
        int transient = node_status_passes(rc, status);
        if (transient && kept && tries == 0)
            outbox_sync(kept);
        if (!transient || agent_stopping(a))
            return rc;
        agent_sleep(a, agent_backoff(&tries));
    }
}

static void decline(agent *a, job *j, const char *reason)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddNumberToObject(b, "attempt", j->s->attempt);
    cJSON_AddStringToObject(b, "reason", reason);
    long status;
    int rc = deliver(a, j, "decline", b, NULL, &status);
    cJSON_Delete(b);
    agent_say(a, "declined", j->s, j->module_ref[0] ? j->module_ref : NULL,
              reason, -1);
    if (rc != RZ_OK && rc != RZ_ECONNECT)
        agent_say(a, "decline-refused", j->s, NULL, rz_strerror(rc), -1);
}

/* The node's signature of the result as sent (docs/api.md "Node
 * identity"): the orchestrator checks it and keeps it with the job. */
static void sign_result(agent *a, job *j, cJSON *b)
{
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(b, "outputs");
    const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(b, "error"));
    char *text = out ? cJSON_PrintUnformatted(out) : NULL;
    const char *t = out ? text : err;
    char sig[RZ_AUTH_SIG_HEX + 1];
    rz_auth_result r = { j->s->job, j->s->attempt, !out, t, t ? strlen(t) : 0 };
    if (t && rz_auth_result_sign(&r, a->keys.ed_sk, sig) == RZ_OK)
        cJSON_AddStringToObject(b, "signature", sig);
    cJSON_free(text);
}

/* A result on its way: its body, kept on disk first (the outbox) when the
 * attempt is this registration's. */
typedef struct outgoing {
    cJSON *body;
    char path[PATH_MAX];
    int kept;
} outgoing;

/* The body made, signed, said and kept: a node stopped before the
 * orchestrator has it delivers it on its next start. */
static void result_keep(agent *a, job *j, outgoing *o)
{
    o->body = fitted_body(j);
    sign_result(a, j, o->body);
    agent_say(a, j->outputs ? "succeeded" : "failed", j->s, j->module_ref,
              j->outputs ? NULL : j->error, (long long)j->run_ms);
    uint64_t node = 0, gen = 0;
    int ours = agent_registration(a, &node, &gen) && gen == j->s->generation;
    o->kept = ours &&
              outbox_put(a, node, j->s->job, j->s->attempt, o->body, o->path,
                         sizeof o->path) == 0;
    if (ours && !o->kept)
        fprintf(stderr, "rhizos-node: job %" PRIu64 ": its result is not kept "
                "on disk (%s); delivering it from memory\n", j->s->job,
                strerror(errno));
}

static void result_send(agent *a, job *j, outgoing *o)
{
    long status;
    int rc = deliver(a, j, "result", o->body, o->kept ? o->path : NULL, &status);
    if (o->kept && (outbox_final(rc, status) || rc == RZ_ESTATE))
        outbox_done(a, o->path, j->s->job);
    pthread_mutex_lock(&a->mu);
    a->earn_stale = 1;   /* paid now, if accepted: the local API reads it */
    pthread_mutex_unlock(&a->mu);
    if (rc != RZ_OK)
        agent_say(a, "result-refused", j->s, j->module_ref,
                  rz_error_last()->message[0] ? rz_error_last()->message
                                              : rz_strerror(rc), -1);
    cJSON_Delete(o->body);
}

static void report(agent *a, job *j)
{
    outgoing o;
    result_keep(a, j, &o);
    result_send(a, j, &o);
}

/* ---- through Slurm ([backend] kind = "slurm", slurm.c) ---- */

static uint32_t job_cpus(const job *j)
{
    double n = num_at(job_reqs(j), "cpu_cores");
    return n >= 1 && n <= 65536 ? (uint32_t)n : 1;
}

/* slurm-run's result body into the job, as if it had run here. */
static void take_result(job *j, const cJSON *r)
{
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(r, "outputs");
    const char *err = str_at(r, "error"), *log = str_at(r, "log");
    double ms = num_at(r, "run_ms");
    if (cJSON_IsObject(out))
        j->outputs = cJSON_PrintUnformatted(out);
    else
        j->error = strdup(err ? err : "the step's result in the spool holds "
                          "neither outputs nor an error");
    j->log = log ? strdup(log) : NULL;
    j->run_ms = ms > 0 && ms < 9e15 ? (uint64_t)ms : 0;
}

/* The step's file outputs, made by slurm-run in the shared data folder,
 * sent to the orchestrator as a node's own are (job.c run). */
static void slurm_files_up(agent *a, job *j)
{
    char why[400];
    if (j->outputs && node_blobs_upload(a, j->s->job, &j->outputs, why,
                                        sizeof why) != 0) {
        free(j->outputs);
        j->outputs = NULL;
        free(j->error);
        j->error = strdup(why);
    }
}

/* The Slurm job's result kept in the outbox, then its spool folder and the
 * step's files removed, then sent: whoever sees the result at the
 * orchestrator finds them gone (run() removes a step's files before its
 * report too). A gateway stopped meanwhile delivers the kept result at its
 * next start; one not kept (no disk) leaves the spool until it is
 * delivered, for a restart to take the Slurm job up again. */
static void slurm_report(agent *a, job *j)
{
    outgoing o;
    result_keep(a, j, &o);
    if (o.kept) {
        slurm_job_cleanup(a, j->s);
        node_blobs_release(a, j->s->job);
    }
    result_send(a, j, &o);
    slurm_job_cleanup(a, j->s);
}

static void run_slurm(agent *a, job *j)
{
    uint32_t mem = job_memory(a, j);
    slurm_request rq = { .cpus = job_cpus(j),
                         .memory_mb = mem ? mem : a->cfg.slurm_default_memory_mb,
                         .gpus = job_gpus(j), .timeout_s = job_timeout(j) };
    slurm_outcome out = { 0 };
    char why[400];
    /* Its input files, into the data folder the compute node shares. */
    if (node_blobs_fetch(a, j->s->job, cJSON_GetObjectItemCaseSensitive(
                             j->asg, "request"), why, sizeof why) != 0) {
        j->error = strdup(why);
        report(a, j);
        node_blobs_release(a, j->s->job);
        return;
    }
    slurm_job_run(a, j->s, &rq, &out);
    switch (out.kind) {
    case SLURM_OUT_RESULT:
        if (out.result) {
            take_result(j, out.result);
            slurm_files_up(a, j);
        } else {
            j->error = out.error;
            j->run_ms = out.run_ms;
            out.error = NULL;
        }
        slurm_report(a, j);
        break;
    case SLURM_OUT_DECLINE:
        decline(a, j, out.error ? out.error : "Slurm did not run it");
        slurm_job_cleanup(a, j->s);
        break;
    case SLURM_OUT_WITHDRAWN:
        agent_say(a, "stopped", j->s, j->module_ref[0] ? j->module_ref : NULL,
                  "the orchestrator withdrew it; scancelled", -1);
        slurm_job_cleanup(a, j->s);
        break;
    case SLURM_OUT_LEFT:
        agent_say(a, "left", j->s, NULL, "the gateway stops; the Slurm job "
                  "goes on and is taken up again at the next start", -1);
        break;
    }
    if (out.kind != SLURM_OUT_LEFT)
        node_blobs_release(a, j->s->job);
    cJSON_Delete(out.result);
    free(out.error);
}

static void finish(job *j)
{
    wipe_credentials(j);
    if (j->log)
        sodium_memzero(j->log, strlen(j->log));
    free(j->log);
    free(j->outputs);
    free(j->error);
    cJSON_Delete(j->manifest);
    adhoc_cleanup(j);
}

/* NULL when the assignment can run here (its module resolved, its
 * credentials opened into `j`), else why not. */
static const char *vet(agent *a, job *j, char *why, size_t n)
{
    j->step = str_at(j->asg, "step");
    const cJSON *adhoc = cJSON_GetObjectItemCaseSensitive(j->asg, "adhoc");
    const char *kind = str_at(adhoc, "adapter");
    const char *no = j->s->refuse ? j->s->refuse
                   : kind && strcmp(kind, "llm") == 0 ? check_llm(a, j, adhoc, why, n)
                   : cJSON_IsObject(adhoc) ? check_adhoc(a, j, adhoc, why, n)
                   : check_module(a, j, why, n);
    return no ? no : open_credentials(a, j);
}

const char *job_vet(agent *a, job_slot *s, char *why, size_t n)
{
    job j = { .s = s, .asg = s->assignment, .llm_server = -1 };
    const char *no = vet(a, &j, why, n);
    finish(&j);
    return no;
}

/* A Slurm job an earlier gateway run submitted: followed to its end, its
 * module not looked at again (its credentials may have expired since;
 * the compute node opened them). */
static void resume_slurm(agent *a, job *j)
{
    const cJSON *mod = cJSON_GetObjectItemCaseSensitive(j->asg, "module");
    const char *id = str_at(mod, "id"), *v = str_at(mod, "version");
    if (id && v)
        snprintf(j->module_ref, sizeof j->module_ref, "%.80s@%.40s", id, v);
    run_slurm(a, j);
}

void *job_main(void *arg)
{
    job_slot *s = arg;
    agent *a = s->a;
    job j = { .s = s, .asg = s->assignment, .llm_server = -1,
              .service = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                  s->assignment, "service")) };
    char why[400];
    const char *no = s->slurm_id ? NULL : vet(a, &j, why, sizeof why);
    if (s->slurm_id) {
        resume_slurm(a, &j);
    } else if (no) {
        decline(a, &j, no);
    } else if (a->slurm) {
        agent_say(a, "started", s, j.module_ref, NULL, -1);
        run_slurm(a, &j);
    } else {
        agent_say(a, "started", s, j.module_ref, NULL, -1);
        run(a, &j);
        agent_slot_ended(a, s);   /* the next job may come while we report */
        int stop = stop_requested(s);
        if (stop == 1)
            agent_say(a, "stopped", s, j.module_ref,
                      "the orchestrator withdrew it", (long long)j.run_ms);
        else if (stop == 2)
            decline(a, &j, "the node is shutting down");
        else
            report(a, &j);
    }
    finish(&j);
    pthread_mutex_lock(&a->mu);
    cJSON_Delete(s->assignment);
    s->assignment = NULL;
    s->finished = 1;
    pthread_mutex_unlock(&a->mu);
    pthread_cond_broadcast(&a->slot_cv);   /* after the unlock: agent_slot_ended */
    return NULL;
}

cJSON *job_run_local(agent *a, job_slot *s)
{
    job j = { .s = s, .asg = s->assignment, .llm_server = -1,
              .service = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(
                  s->assignment, "service")) };
    char why[400];
    const char *no = vet(a, &j, why, sizeof why);
    if (no)
        j.error = strdup(no);
    else
        run(a, &j);
    cJSON *b = fitted_body(&j);
    finish(&j);
    return b;
}

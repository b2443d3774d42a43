/* Resume with a step cache (docs/triggers.md, "Resume and cache").
 *
 * When a step (or a for_each element) starts, its cache key is taken: a
 * SHA-256 over its step id, its module (id, version and its manifest),
 * its request as the run resolved it (inputs and config) and the ids of
 * its credentials (never their values). An approval step's key is over its
 * id, its approval settings and its request. The key is kept on the job.
 *
 * A deployment made with a reuse map ({key: {"outputs", "from", "ms"}},
 * rz_engine_deploy_reuse) looks each starting step's key up: a hit
 * succeeds the step at once with the entry's outputs (a START and a
 * SUCCEED event, replayed like any) and refunds its hold, so nothing runs
 * and nothing is paid for it; its status says "reused": true and where
 * from. The map is stored with the deployment's flow, so a step that
 * starts after a restart is looked up too. A module whose manifest says
 * "cacheable": false, and a step with `cache: false`, are never reused; a
 * step with `cache: {ttl_s: N}` only from results at most N s old.
 * rz_engine_reuse_map builds a map from an earlier deployment of the same
 * client: the orchestrator's resume. A map never crosses clients: it is
 * built from the caller's own deployment.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/engine_impl.h"
#include "flow/model.h"
#include "module/module_impl.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

/* The step's `cache:` (absent: true), false when it opts out. */
static bool step_cacheable(const rz__step *st, uint64_t *ttl_ms)
{
    const cJSON *c = st->extra ? cJSON_GetObjectItemCaseSensitive(st->extra, "cache") : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "ttl_s");
    *ttl_ms = cJSON_IsNumber(t) ? (uint64_t)t->valuedouble * 1000u : UINT64_MAX;
    if (cJSON_IsFalse(c))
        return false;
    const rz_module *m = st->module;
    const cJSON *mc = m && m->manifest
                          ? cJSON_GetObjectItemCaseSensitive(m->manifest, "cacheable") : NULL;
    return !cJSON_IsFalse(mc);
}

static void hash_text(crypto_hash_sha256_state *h, const char *s)
{
    if (!s)
        s = "";
    crypto_hash_sha256_update(h, (const unsigned char *)s, strlen(s) + 1);   /* with NUL */
}

static bool hash_json(crypto_hash_sha256_state *h, const cJSON *v)
{
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    hash_text(h, t ? t : "null");
    bool ok = !v || t;
    free(t);
    return ok;
}

/* The module's manifest hashed as hash_json hashes it, printed once per
 * deployment while its steps share one module (printing it was 3% of the
 * embedded runner's CPU a step). */
static bool hash_manifest(crypto_hash_sha256_state *h, rz__edep *d,
                          const cJSON *manifest)
{
    if (!manifest)
        return hash_json(h, NULL);
    if (d->key_manifest != manifest || !d->key_manifest_text) {
        free(d->key_manifest_text);
        d->key_manifest = manifest;
        d->key_manifest_text = cJSON_PrintUnformatted(manifest);
        if (!d->key_manifest_text)
            return false;
    }
    hash_text(h, d->key_manifest_text);
    return true;
}

/* Key of task `task` with its resolved request, as 64 hex digits; false
 * when it may not be cached (or memory ran out). */
static bool task_key(const rz_engine *e, rz__edep *d, size_t task,
                     const char *request, char out[65], uint64_t *ttl_ms)
{
    size_t si = task < d->n_steps ? task : rz_run_task_step(d->run, task, NULL);
    if (si >= d->n_steps)
        return false;
    /* Embedded: the caller's flow holds the resolved modules. */
    const rz_flow *f = e->local.dep == d->id && e->local.flow &&
                       e->local.flow->n_steps == d->n_steps ? e->local.flow : d->flow;
    const rz__step *st = &f->steps[si];
    if (!step_cacheable(st, ttl_ms))
        return false;
    crypto_hash_sha256_state h;
    crypto_hash_sha256_init(&h);
    hash_text(&h, "rhizos-step-key-v1");
    /* The step's id too: two steps that happen to ask the same of one
     * module are two results (one may have failed). */
    hash_text(&h, st->id);
    bool ok = true;
    const cJSON *ap = rz__step_approval(st);
    if (ap) {
        hash_text(&h, "approval");
        ok = hash_json(&h, ap);
    } else if (st->module) {
        hash_text(&h, st->module->id);
        hash_text(&h, st->module->version);
        ok = hash_manifest(&h, d, st->module->manifest);
    } else {
        return false;   /* an unresolved module: nothing to compare */
    }
    hash_text(&h, request);   /* rz_run_request's text: one spelling per request */
    for (size_t i = 0; ok && i < st->n_creds; i++) {
        hash_text(&h, st->creds[i].field ? st->creds[i].field : "");
        hash_text(&h, st->creds[i].credential_id ? st->creds[i].credential_id : "");
    }
    unsigned char dg[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&h, dg);
    sodium_bin2hex(out, 65, dg, sizeof dg);
    return ok;
}

int rz__engine_reuse_try(rz_engine *e, rz__edep *d, rz__ejob *j, size_t task,
                         const char *request, uint64_t now, bool *reused)
{
    *reused = false;
    char key[65];
    uint64_t ttl_ms;
    if (j->rep_head || !task_key(e, d, task, request, key, &ttl_ms))
        return RZ_OK;   /* replicated steps are decided by their set */
    free(j->cache_key);
    if (!(j->cache_key = rz__strdup(key)))
        return no_memory();
    j->cache_ms = now;
    const cJSON *hit = d->reuse ? cJSON_GetObjectItemCaseSensitive(d->reuse, key) : NULL;
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(hit, "outputs");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(hit, "ms");
    uint64_t at = cJSON_IsNumber(ms) ? (uint64_t)ms->valuedouble : 0;
    if (!cJSON_IsObject(out) || (ttl_ms != UINT64_MAX && (at > now || now - at > ttl_ms)))
        return RZ_OK;
    char *text = cJSON_PrintUnformatted(out);
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(hit, "from"));
    char *src = rz__strdup(from ? from : "an earlier run");
    if (!text || !src) {
        free(text);
        free(src);
        return no_memory();
    }
    /* Its state tells, but for memory: its event would replay a success. */
    if (rz_run_succeed(d->run, task, text, now) == RZ_ENOMEM) {
        free(text);
        free(src);
        return no_memory();
    }
    free(j->reused);
    j->reused = src;   /* before the event: an embedded runner tells it */
    int rc = rz__engine_step_event_add(e, d, RZ__STEP_EVENT_SUCCEED, task, now, text);
    if (rc == RZ_OK && rz_run_step_state(d->run, task) == RZ_STEP_SUCCEEDED) {
        free(j->outputs);
        j->outputs = text;
        j->cache_ms = at;
        text = NULL;
        rz__engine_finish(e, j, RZ_JOB_SUCCEEDED, RZ__OWE_REFUND);
        *reused = true;
    } else {
        free(j->reused);
        j->reused = NULL;
    }
    free(text);
    return rc;
}

int rz__engine_reuse_set(rz__edep *d, const char *json)
{
    cJSON_Delete(d->reuse);
    d->reuse = NULL;
    if (!json)
        return RZ_OK;
    d->reuse = cJSON_Parse(json);
    if (!cJSON_IsObject(d->reuse)) {
        cJSON_Delete(d->reuse);
        d->reuse = NULL;
        return rz__error(RZ_EINVAL, "the reuse map is not a JSON object");
    }
    for (const cJSON *c = d->reuse->child; c; c = c->next)
        if (strlen(c->string) != 64 || strspn(c->string, "0123456789abcdef") != 64 ||
            !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(c, "outputs")))
            return rz__error(RZ_EINVAL, "reuse map: '%.80s' is not a step key with "
                             "\"outputs\"", c->string);
    return RZ_OK;
}

/* The map as text, one entry at a time: a tree of 100,000 entries is tens
 * of MB. `seen` holds the keys written (owned), found in O(1): a lookup in
 * the object was quadratic. Only for_each elements can repeat a key (a
 * key hashes its step's id, unique in a flow), so without elements there
 * is no `seen` (at 100,000 steps its copies and table were ~14 MB at the
 * run's end, its peak). Each entry is printed as printing the whole object
 * printed it. */
typedef struct map_text {
    rz__buf b;
    rz__map seen;
    bool dedupe;              /* elements: `seen` is kept */
    bool any;
    const char *own;   /* the deployment's own results' name; NULL: its id */
} map_text;

static void map_text_free(map_text *m)
{
    for (size_t i = 0; m->seen.keys && i < m->seen.cap; i++)
        free((char *)m->seen.keys[i]);
    rz__map_free(&m->seen);
    rz__buf_free(&m->b);
}

static char *print_consumed(cJSON *v)
{
    char *t = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    return t;
}

/* One job's entry, when it succeeded with a key not written yet. */
static bool add_entry(map_text *m, const rz__ejob *j, uint64_t dep)
{
    if (!j || j->state != RZ_JOB_SUCCEEDED || !j->cache_key || !j->outputs ||
        (m->dedupe && rz__map_get(&m->seen, j->cache_key) != RZ_NPOS))
        return true;
    cJSON *o = cJSON_Parse(j->outputs);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return true;
    }
    char from[256];
    if (j->reused)
        snprintf(from, sizeof from, "%.150s", j->reused);
    else if (m->own)
        snprintf(from, sizeof from, "%s%.64s", m->own, j->step_id ? j->step_id : "?");
    else
        snprintf(from, sizeof from, "deployment %llu step %.64s", (unsigned long long)dep,
                 j->step_id ? j->step_id : "?");
    cJSON *x = cJSON_CreateObject();
    if (!x || !cJSON_AddItemToObject(x, "outputs", o)) {
        cJSON_Delete(o);
        cJSON_Delete(x);
        return false;
    }
    bool ok = cJSON_AddStringToObject(x, "from", from) &&
              cJSON_AddNumberToObject(x, "ms", (double)j->cache_ms);
    char *xt = print_consumed(x);
    char *kt = print_consumed(cJSON_CreateString(j->cache_key));
    char *key = m->dedupe ? rz__strdup(j->cache_key) : NULL;
    ok = ok && kt && xt &&
         (!m->dedupe || (key && rz__map_put(&m->seen, key, 0) == RZ_OK));
    if (ok) {
        if (m->any)
            rz__buf_puts(&m->b, ",");
        m->any = true;
        rz__buf_puts(&m->b, kt);
        rz__buf_puts(&m->b, ":");
        rz__buf_puts(&m->b, xt);
    } else {
        free(key);
    }
    free(kt);
    free(xt);
    return ok;
}

int rz_engine_reuse_map(const rz_engine *e, uint64_t deployment, char **json)
{
    return rz_engine_reuse_map_named(e, deployment, NULL, json);
}

int rz_engine_reuse_map_named(const rz_engine *e, uint64_t deployment,
                               const char *own, char **json)
{
    if (json)
        *json = NULL;
    if (!e || !json)
        return rz__error(RZ_EINVAL, "no engine or no output pointer");
    const rz__edep *d = rz__engine_dep_read(e, deployment);
    if (!d)
        return rz_error_last()->code;
    uint64_t first = d->first_job, n = d->n_steps;
    /* for_each elements: their jobs are listed in a finished status, kept
     * in memory while it runs. (Read before the jobs: a read-back
     * deployment lasts until the next read.) A status without them is not
     * parsed: at 20,000 steps its tree was 16 MB. */
    const char *fin = d->final_status;
    cJSON *st = fin && strstr(fin, "\"elements\":[") ? cJSON_Parse(fin) : NULL;
    const rz__edep *live = rz__engine_dep(e, deployment);
    map_text m;
    memset(&m, 0, sizeof m);
    m.own = own;
    m.dedupe = st || (live && live->n_el_jobs);
    bool ok = !m.dedupe || rz__map_init(&m.seen, (size_t)n) == RZ_OK;
    rz__buf_puts(&m.b, "{");
    for (uint64_t i = 0; ok && i < n; i++)
        ok = add_entry(&m, rz__engine_job_read(e, first + i), deployment);
    const cJSON *s, *el;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(st, "steps"))
        cJSON_ArrayForEach(el, cJSON_GetObjectItemCaseSensitive(s, "elements")) {
            const cJSON *jid = cJSON_GetObjectItemCaseSensitive(el, "job");
            if (ok && cJSON_IsNumber(jid))
                ok = add_entry(&m, rz__engine_job_read(e, (uint64_t)jid->valuedouble),
                               deployment);
        }
    cJSON_Delete(st);
    d = rz__engine_dep(e, deployment);   /* running: its element jobs */
    for (size_t k = 0; ok && d && k < d->n_el_jobs; k++)
        ok = add_entry(&m, rz__engine_job_read(e, d->el_jobs[k]), deployment);
    rz__buf_puts(&m.b, "}");
    *json = ok ? rz__buf_take(&m.b) : NULL;
    map_text_free(&m);
    return *json ? RZ_OK : no_memory();
}

void rz_engine_local_reuse(rz_engine *e, const char *reuse_json)
{
    if (e)
        e->local_reuse = reuse_json;
}

const char *rz_engine_task_reused_from(const rz_engine *e, uint64_t dep, size_t task)
{
    const rz__edep *d = e ? rz__engine_dep(e, dep ? dep : e->local.dep) : NULL;
    const rz__ejob *j = d && d->run ? rz__engine_task_job(e, d, task) : NULL;
    return j ? j->reused : NULL;
}

int rz_engine_deployment_flow(const rz_engine *e, uint64_t deployment, char **text,
                              char **inputs)
{
    if (text)
        *text = NULL;
    if (inputs)
        *inputs = NULL;
    if (!e || !text || !inputs)
        return rz__error(RZ_EINVAL, "no engine or no output pointer");
    if (!rz__engine_dep_read(e, deployment))
        return rz_error_last()->code;
    const rz__edep *d = rz__engine_dep(e, deployment);
    char *t = NULL, *in = NULL;
    int rc = RZ_OK;
    if (d && d->text) {
        t = rz__strdup(d->text);
        in = d->inputs ? rz__strdup(d->inputs) : NULL;
        if (!t || (d->inputs && !in))
            rc = no_memory();
    } else {
        rc = rz__engine_store_dep_flow(e, deployment, &t, &in);
    }
    if (rc == RZ_OK && t) {
        *text = rz__strdup(t);
        *inputs = in ? rz__strdup(in) : NULL;
        if (!*text || (in && !*inputs)) {
            rz_free(*text);
            *text = NULL;
            rc = no_memory();
        }
    }
    free(t);
    free(in);
    return rc;
}

int rz_engine_deploy_reuse(rz_engine *e, const char *text, size_t len, rz_ledger_id client,
                           const char *inputs_json, const char *reuse_json, uint64_t now_ms,
                           uint64_t *deployment, rz_diags *diags)
{
    if (deployment)
        *deployment = 0;
    rz__edep probe;
    memset(&probe, 0, sizeof probe);
    int rc = rz__engine_reuse_set(&probe, reuse_json);   /* refused before anything */
    cJSON_Delete(probe.reuse);
    if (rc != RZ_OK)
        return rc;
    return rz__engine_deploy(e, text, len, client, inputs_json, reuse_json, now_ms,
                             deployment, diags);
}

/* The step an entry's result is of: the word after its "from"'s last
 * " step " (both spellings end so: the key covers the step id, so an
 * entry carried from run to run keeps it). */
static bool entry_of_step(const cJSON *entry, const char *step)
{
    const char *from = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(entry, "from"));
    const char *at = NULL;
    for (const char *p = from; p && (p = strstr(p, " step ")); p++)
        at = p + 6;
    return at && strcmp(at, step) == 0;
}

int rz_engine_reuse_drop(char **out, const char *map, const char *step, uint64_t before_ms,
                         size_t *dropped)
{
    if (out)
        *out = NULL;
    if (dropped)
        *dropped = 0;
    if (!out || !map)
        return rz__error(RZ_EINVAL, "no map or no output pointer");
    cJSON *doc = cJSON_Parse(map);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return rz__error(RZ_EINVAL, "the step cache is not a JSON object");
    }
    size_t n = 0;
    for (cJSON *c = doc->child, *next; c; c = next) {
        next = c->next;
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(c, "ms");
        /* An entry without a time is older than any clear. */
        uint64_t at = cJSON_IsNumber(ms) && ms->valuedouble > 0 ? (uint64_t)ms->valuedouble : 0;
        if (at <= before_ms && (!step || entry_of_step(c, step))) {
            cJSON_Delete(cJSON_DetachItemViaPointer(doc, c));
            n++;
        }
    }
    *out = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!*out)
        return no_memory();
    if (dropped)
        *dropped = n;
    return RZ_OK;
}

/* Node routes: list, register, heartbeat, long-poll, result, decline,
 * deregister; and the assignment a node is handed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "apilimits.h"
#include "orch.h"

static const char *node_state_name(rz_node_state s)
{
    return s == RZ_NODE_ACTIVE ? "active" : s == RZ_NODE_LOST ? "lost" : "gone";
}

static cJSON *node_json(orch *o, uint64_t id, const rz_engine_node_info *ni)
{
    char *caps = NULL;
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "id", (double)id);
    cJSON_AddStringToObject(x, "state", node_state_name(ni->state));
    cJSON_AddNumberToObject(x, "load", ni->load);
    cJSON_AddNumberToObject(x, "jobs", ni->jobs);
    (void)!rz_engine_node_caps(o->e, id, &caps);   /* none: {} below */
    cJSON *c = parse_json_text(caps);
    rz_free(caps);
    cJSON_AddItemToObject(x, "capabilities", c ? c : cJSON_CreateObject());
    unsigned char ed[32];
    int bound = 0, retired = 0;
    if (rz_auth_node_identity(o->auth, id, ed, &bound, &retired) == RZ_OK) {
        char hex[65];
        hex_encode(ed, 32, hex);
        cJSON_AddStringToObject(x, "public_key", hex);
    } else {
        cJSON_AddNullToObject(x, "public_key");
    }
    /* "bound": its registration proved the key; "legacy": made before
     * keys were bound (docs/api.md). */
    cJSON_AddStringToObject(x, "identity", bound ? "bound" : "legacy");
    cJSON_AddBoolToObject(x, "retired", retired);
    cJSON_AddItemToObject(x, "verification", verify_json(o, id, true));
    return x;
}

/* One page, ids ascending after `after`; "next" is the id to pass as
 * `after` for the following page, null on the last. */
void r_nodes_list(req *q)
{
    orch *o = q->o;
    uint64_t limit, after;
    if (!query_u64(q, "limit", ORCH_NODES_PAGE, ORCH_NODES_PAGE_MAX, &limit) ||
        !query_u64(q, "after", 0, (uint64_t)1 << 53, &after))
        return;
    if (limit == 0) {
        reply_error(q, RZ_EINVAL, "\"limit\" must be a whole number from 1 to %u",
                    ORCH_NODES_PAGE_MAX);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(doc, "nodes");
    uint64_t n = rz_engine_node_count(o->e), id = after, listed = 0;
    while (id < n && listed < limit) {
        rz_engine_node_info ni;
        if (rz_engine_node_get(o->e, ++id, &ni) != RZ_OK)
            continue;
        cJSON_AddItemToArray(arr, node_json(o, id, &ni));
        listed++;
    }
    if (id < n)
        cJSON_AddNumberToObject(doc, "next", (double)id);
    else
        cJSON_AddNullToObject(doc, "next");
    reply_json(q, 200, doc);
}

/* The node of the path, which must be the caller's own (admin: any). */
bool own_node(req *q, uint64_t *node)
{
    if (!param_u64(q, 0, node))
        return false;
    rz_engine_node_info ni;
    if ((q->who.kind == P_NODE && q->who.node != *node) ||
        rz_engine_node_get(q->o->e, *node, &ni) != RZ_OK) {
        reply_error(q, RZ_ENOENT, "no node %llu", (unsigned long long)*node);
        return false;
    }
    return true;
}

/* ---- what one registration may store ---- */

/* Any string in the capabilities, at any depth, keys included. */
static const char *long_string(const cJSON *v, const char **key)
{
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next) {
        if (c->string && strlen(c->string) > ORCH_CAPS_STR_MAX) {
            *key = c->string;
            return "a key";
        }
        if (cJSON_IsString(c) && strlen(c->valuestring) > ORCH_CAPS_STR_MAX) {
            *key = c->string ? c->string : (v->string ? v->string : "");
            return "the value of";
        }
        const char *what = long_string(c, key);
        if (what)
            return what;
    }
    return NULL;
}

/* capabilities.labels: a bounded map of strings; every string bounded. */
static bool caps_bounded(req *q, const cJSON *caps)
{
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(caps, "labels"), *l;
    if (labels && !cJSON_IsNull(labels)) {
        if (!cJSON_IsObject(labels)) {
            reply_error(q, RZ_EINVAL, "\"capabilities.labels\" must be an object");
            return false;
        }
        if ((unsigned)cJSON_GetArraySize(labels) > ORCH_LABELS_MAX) {
            reply_error(q, RZ_EINVAL, "\"capabilities.labels\" has %d entries; "
                        "at most %u", cJSON_GetArraySize(labels), ORCH_LABELS_MAX);
            return false;
        }
        cJSON_ArrayForEach(l, labels) {
            if (strlen(l->string) > ORCH_LABEL_KEY_MAX) {
                reply_error(q, RZ_EINVAL, "\"capabilities.labels\": a key of "
                            "%zu bytes; at most %u", strlen(l->string),
                            ORCH_LABEL_KEY_MAX);
                return false;
            }
            if (!cJSON_IsString(l) || strlen(l->valuestring) > ORCH_LABEL_VALUE_MAX) {
                reply_error(q, RZ_EINVAL, "\"capabilities.labels.%.64s\" must be "
                            "a string of at most %u bytes", l->string,
                            ORCH_LABEL_VALUE_MAX);
                return false;
            }
        }
    }
    const char *key = NULL, *what = long_string(caps, &key);
    if (what) {
        reply_error(q, RZ_EINVAL, "\"capabilities\": %s \"%.64s\" is over %u "
                    "bytes", what, key, ORCH_CAPS_STR_MAX);
        return false;
    }
    return true;
}

/* ---- registration rate, per remote address ----
 * A token bucket per address in a fixed table (bounded memory whatever
 * the number of addresses): a slot is keyed by a keyed hash of the
 * address; a slot another address holds is taken over once its bucket has
 * refilled, else the two share it (the stricter outcome). */
#define RATE_SLOTS 4096

typedef struct rate_slot {
    char addr[48];
    double tokens;
    uint64_t at_ms;
} rate_slot;

static rate_slot *rate_table;
static unsigned char rate_key[crypto_shorthash_KEYBYTES];

static double refilled(const orch *o, const rate_slot *s, uint64_t now)
{
    double t = s->tokens + (double)(now - s->at_ms) / 1000.0 * o->opts.register_rate;
    return t > ORCH_REGISTER_BURST ? ORCH_REGISTER_BURST : t;
}

/* Take one token for `addr`; false when its bucket is empty. */
static bool rate_take(orch *o, const char *addr, uint64_t now)
{
    if (o->opts.register_rate == 0)
        return true;
    if (!rate_table) {
        if (!(rate_table = calloc(RATE_SLOTS, sizeof *rate_table)))
            return true;   /* no table: no limit rather than no service */
        crypto_shorthash_keygen(rate_key);
    }
    unsigned char h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)addr, strlen(addr), rate_key);
    rate_slot *s = &rate_table[(h[0] | (unsigned)h[1] << 8) % RATE_SLOTS];
    double t = !s->at_ms ? ORCH_REGISTER_BURST
             : now >= s->at_ms ? refilled(o, s, now) : s->tokens;
    if (strcmp(s->addr, addr) != 0 && t >= ORCH_REGISTER_BURST)
        snprintf(s->addr, sizeof s->addr, "%s", addr);
    s->at_ms = now;
    if (t < 1) {
        s->tokens = t;
        return false;
    }
    s->tokens = t - 1;
    return true;
}

static rz_auth_replay *replay;

void orch_rate_free(void)
{
    free(rate_table);
    rate_table = NULL;
    rz_auth_replay_free(replay);
    replay = NULL;
}

/* ---- proofs of a node's key ---- */

/* The fields of a signed request into *p (action set by the caller) and
 * checked: the orchestrator it names, signature, then freshness. Version 2
 * when the body has "orchestrator_public_key"; version 1 (names none, so
 * replayable at another orchestrator) only under --accept-v1-proofs. A
 * reply is sent when false. */
static bool proof_take(req *q, rz_auth_node_proof2 *p, const char **sig)
{
    uint64_t ts;
    char own[65];
    hex_encode(q->o->pk, 32, own);
    if (!body_str(q, "ed25519_public_key", true, &p->ed25519_hex) ||
        !body_u64(q, "timestamp_ms", true, (uint64_t)1 << 53, &ts, NULL) ||
        !body_str(q, "nonce", true, &p->nonce_hex) ||
        !body_str(q, "orchestrator_public_key", false, &p->orchestrator_hex) ||
        !body_str(q, "signature", true, sig))
        return false;
    p->timestamp_ms = ts;
    p->version = p->orchestrator_hex ? 2 : 1;
    if (p->version == 1 && !q->o->opts.accept_v1_proofs) {
        reply_error(q, RZ_EAUTH, "this orchestrator takes only proofs that name "
                    "it (version 2: \"orchestrator_public_key\" %s, from GET "
                    "/api/v1/identity): upgrade rhizos-node (it signs version 2 "
                    "since the last release), or start the orchestrator with "
                    "--accept-v1-proofs while old nodes remain", own);
        return false;
    }
    /* Signed for another orchestrator: a replay of what it was sent. */
    if (p->version == 2 && strcmp(p->orchestrator_hex, own) != 0) {
        reply_error(q, RZ_EAUTH, "this request was signed for another "
                    "orchestrator (key %.64s), not this one (key %s); sign "
                    "one naming this orchestrator", p->orchestrator_hex, own);
        return false;
    }
    int rc = rz_auth_proof2_verify(p, *sig);
    if (rc != RZ_OK) {
        /* Not the key's owner: 401, the message says which field. */
        reply_error(q, rc == RZ_EAUTH ? RZ_EAUTH : RZ_EINVAL, "%s",
                    rz_error_last()->message);
        return false;
    }
    if (!replay && rz_auth_replay_new(&replay, ORCH_PROOF_SLOTS,
                                      ORCH_PROOF_SKEW_MS) != RZ_OK) {
        reply_rz(q, RZ_ENOMEM);
        return false;
    }
    rc = rz_auth_replay_check(replay, p->nonce_hex, p->timestamp_ms,
                              orch_now_ms());
    if (rc == RZ_ETOOBIG)
        reply_limit(q, 5, "%s", rz_error_last()->message);
    else if (rc != RZ_OK)
        reply_error(q, rc == RZ_EINVAL ? RZ_EINVAL : RZ_EAUTH, "%s",
                    rz_error_last()->message);
    return rc == RZ_OK;
}

/* The capabilities of a registration, bounded, as compact JSON (malloc'd);
 * NULL with a reply sent. */
static char *caps_text(req *q)
{
    cJSON *caps;
    if (!body_obj(q, "capabilities", &caps))
        return NULL;
    if (!caps) {
        reply_error(q, RZ_EINVAL, "\"capabilities\" is required");
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(caps);
    if (!text) {
        reply_rz(q, RZ_ENOMEM);
        return NULL;
    }
    /* Anyone may register: what one registration may store is bounded. */
    if (strlen(text) > ORCH_CAPS_MAX) {
        reply_error(q, RZ_ETOOBIG, "\"capabilities\" has %zu bytes; at most %u",
                    strlen(text), ORCH_CAPS_MAX);
        free(text);
        return NULL;
    }
    if (!caps_bounded(q, caps)) {
        free(text);
        return NULL;
    }
    return text;
}

/* A new node for a key never seen, or the same node again: the engine's
 * side. *fresh: a new id (to take back if the binding fails). A reply is
 * sent when false. */
static bool engine_join(req *q, const unsigned char ed[32], const char *caps,
                        uint64_t *id, bool *fresh)
{
    orch *o = q->o;
    int retired = 0;
    int rc = rz_auth_identity_find(o->auth, ed, id, &retired);
    *fresh = rc == RZ_ENOENT;
    if (rc == RZ_OK && retired) {
        reply_error(q, RZ_EDENIED, "node %llu's key was retired; make a new "
                    "one (rhizos-node init --force)", (unsigned long long)*id);
        return false;
    }
    if (rc == RZ_OK)
        rc = rz_engine_node_rejoin(o->e, *id, caps, strlen(caps), orch_now_ms());
    else if (rc == RZ_ENOENT)
        rc = rz_engine_node_register(o->e, caps, strlen(caps), orch_now_ms(), id);
    if (rc != RZ_OK)
        reply_rz(q, rc);
    return rc == RZ_OK;
}

void r_node_register(req *q)
{
    static const char *const fields[] = { "capabilities", "x25519_public_key",
                                          "ed25519_public_key", "timestamp_ms",
                                          "nonce", "signature",
                                          "orchestrator_public_key", NULL };
    orch *o = q->o;
    rz_auth_node_proof2 p = { 2, "register", NULL, NULL, 0, NULL, NULL };
    const char *sig = NULL;
    unsigned char ed[32];
    if (!rate_take(o, orch_peer(q), orch_now_ms())) {
        reply_limit(q, 0, "too many registrations from this address; at most "
                    "%u at once and %u a second", ORCH_REGISTER_BURST,
                    o->opts.register_rate);
        return;
    }
    if (!body_fields(q, fields) ||
        !body_str(q, "x25519_public_key", true, &p.x25519_hex))
        return;
    char *text = caps_text(q);
    if (!text)
        return;
    if (!proof_take(q, &p, &sig)) {
        free(text);
        return;
    }
    hex_decode(p.ed25519_hex, ed, 32);   /* checked by the proof */
    uint64_t id = 0;
    bool fresh = false;
    bool joined = engine_join(q, ed, text, &id, &fresh);
    free(text);
    if (!joined)
        return;
    char token[80];
    rz_ledger_id account = rz_engine_node_account(id);
    auth_new_key("rzn_", token, sizeof token);
    int rc = auth_bind_node(o, ed, id, p.x25519_hex, token, account);
    if (rc != RZ_OK) {
        if (fresh)   /* the node exists without a way in; take it out again */
            (void)!rz_engine_node_deregister(o->e, id, orch_now_ms());
        sodium_memzero(token, sizeof token);
        reply_error(q, rc, "cannot bind the node's key: %s",
                    rz_error_last()->message);
        return;
    }
    char acct[33];
    rz_ledger_id_format(account, acct);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "id", (double)id);
    cJSON_AddStringToObject(doc, "token", token);
    cJSON_AddStringToObject(doc, "account", acct);
    cJSON_AddBoolToObject(doc, "new", fresh);
    sodium_memzero(token, sizeof token);
    orch_log(q->o, ORCH_LOG_INFO, "node_registered", "node", LOG_U64, (uint64_t)id,
             "new", LOG_STR, fresh ? "true" : "false", "peer", LOG_STR, orch_peer(q), NULL);
    reply_json(q, fresh ? 201 : 200, doc);
}

/* Retired: the key is refused from now on, the node leaves if it is still
 * there; its token still opens its payout account. */
static void retire(req *q, uint64_t node)
{
    orch *o = q->o;
    int rc = rz_auth_identity_retire(o->auth, node);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    rz_engine_node_info ni;
    if (rz_engine_node_get(o->e, node, &ni) == RZ_OK &&
        ni.state == RZ_NODE_ACTIVE) {
        rc = rz_engine_node_deregister(o->e, node, orch_now_ms());
        if (rc != RZ_OK) {
            reply_rz(q, rc);
            return;
        }
        orch_waiter_drop_node(o, node);
    }
    orch_log(o, ORCH_LOG_INFO, "node_retired", "node", LOG_U64, node, NULL);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "id", (double)node);
    cJSON_AddStringToObject(doc, "state", "retired");
    reply_json(q, 200, doc);
}

void r_node_retire(req *q)
{
    static const char *const fields[] = { "ed25519_public_key", "timestamp_ms",
                                          "nonce", "signature",
                                          "orchestrator_public_key", NULL };
    rz_auth_node_proof2 p = { 2, "retire", NULL, NULL, 0, NULL, NULL };
    const char *sig;
    unsigned char ed[32];
    uint64_t node = 0;
    /* Open to anyone like registration, so counted with it. */
    if (!rate_take(q->o, orch_peer(q), orch_now_ms())) {
        reply_limit(q, 0, "too many signed node requests from this address");
        return;
    }
    if (!body_fields(q, fields) || !proof_take(q, &p, &sig))
        return;
    hex_decode(p.ed25519_hex, ed, 32);
    int rc = rz_auth_identity_find(q->o->auth, ed, &node, NULL);
    if (rc != RZ_OK) {
        reply_error(q, rc, "%s", rc == RZ_ENOENT ? "this key names no node"
                                                 : rz_error_last()->message);
        return;
    }
    retire(q, node);
}

void r_node_retire_admin(req *q)
{
    uint64_t node;
    if (own_node(q, &node))
        retire(q, node);
}

static bool check_running(req *q)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(q->body, "running");
    if (!r || cJSON_IsNull(r))
        return true;
    bool ok = cJSON_IsArray(r);
    const cJSON *v;
    cJSON_ArrayForEach(v, r)
        ok = ok && cJSON_IsNumber(v) && v->valuedouble >= 0;
    if (!ok)
        reply_error(q, RZ_EINVAL, "\"running\" must be a list of job ids");
    return ok;
}

/* The heartbeat's "running" list (when sent) against the engine: a job
 * handed to the node that the node never got goes back to the queue. The
 * grace covers an assignment still on its way while the list was made. */
static int reconcile_running(orch *o, uint64_t node, const cJSON *body,
                             uint64_t now)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(body, "running"), *v;
    if (!cJSON_IsArray(r))
        return RZ_OK;
    size_t n = (size_t)cJSON_GetArraySize(r), i = 0;
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids)
        return RZ_ENOMEM;
    cJSON_ArrayForEach(v, r)
        ids[i++] = v->valuedouble < 9007199254740992.0   /* 2^53 */
                   ? (uint64_t)v->valuedouble : 0;
    int rc = rz_engine_node_running(o->e, node, ids, n,
                                    ORCH_RUNNING_GRACE_MS(o), now, NULL);
    free(ids);
    return rc;
}

void r_node_heartbeat(req *q)
{
    static const char *const fields[] = { "load", "running", NULL };
    uint64_t node;
    if (!own_node(q, &node) || !body_fields(q, fields) || !check_running(q))
        return;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(q->body, "load");
    double load = 0;
    if (l) {
        if (!cJSON_IsNumber(l) || !(l->valuedouble >= 0 && l->valuedouble <= 1)) {
            reply_error(q, RZ_EINVAL, "\"load\" must be a number from 0 to 1");
            return;
        }
        load = l->valuedouble;
    }
    uint64_t now = orch_now_ms();
    int rc = rz_engine_node_heartbeat(q->o->e, node, now, load);
    if (rc == RZ_OK)
        rc = reconcile_running(q->o, node, q->body, now);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "stop", orch_stops_take(q->o, node));
    reply_json(q, 200, doc);
}

/* ---- assignments ---- */

/* exec.timeout_s of a manifest, found by its digest: the same digest is
 * the same canonical manifest, so a module's text is parsed for it once,
 * not at every assignment. (The event loop is the only caller.) */
#define TIMEOUT_SEEN 16
static struct { char digest[65]; double timeout_s; } timeout_seen[TIMEOUT_SEEN];
static unsigned timeout_next;

static double manifest_timeout(const rz_module *mod, const char *hex)
{
    for (unsigned i = 0; *hex && i < TIMEOUT_SEEN; i++)
        if (strcmp(timeout_seen[i].digest, hex) == 0)
            return timeout_seen[i].timeout_s;
    double timeout_s = 0;
    char *man = NULL;
    if (rz_module_manifest_json(mod, &man) != RZ_OK)
        return 0;   /* out of memory: not kept, asked again next time */
    cJSON *doc = cJSON_Parse(man);
    const cJSON *exec = cJSON_GetObjectItemCaseSensitive(doc, "exec");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(exec, "timeout_s");
    if (cJSON_IsNumber(t) && t->valuedouble > 0)
        timeout_s = t->valuedouble;
    if (doc && *hex) {
        unsigned k = timeout_next++ % TIMEOUT_SEEN;
        memcpy(timeout_seen[k].digest, hex, 65);
        timeout_seen[k].timeout_s = timeout_s;
    }
    cJSON_Delete(doc);
    rz_free(man);
    return timeout_s;
}

static cJSON *module_json(orch *o, const char *id, const char *version,
                          double *timeout_s)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "version", version);
    const rz_module *mod = NULL;
    char hex[65] = "";
    *timeout_s = 0;
    if (rz_registry_resolve(o->reg, id, version, &mod) == RZ_OK) {
        (void)!rz_module_digest(mod, hex);   /* none: "" */
        *timeout_s = manifest_timeout(mod, hex);
    }
    cJSON_AddStringToObject(m, "digest", hex);
    return m;
}

/* Reseal one credential from the orchestrator's key to the node's. */
static int reseal(orch *o, const char *sealed_b64, const char *cred_id,
                  uint64_t job, const unsigned char node_pk[32], uint64_t now,
                  char **out_b64)
{
    size_t n = 0;
    unsigned char *sealed = b64_decode(sealed_b64, &n);
    if (!sealed)
        return RZ_ESYNTAX;
    rz_secret *s = NULL;
    int rc = rz_vault_unseal(&s, NULL, sealed, n, o->pk, o->sk,
                             RZ_VAULT_ORCHESTRATOR_JOB, now);
    free(sealed);
    if (rc != RZ_OK)
        return rc;
    char jid[24];
    snprintf(jid, sizeof jid, "%llu", (unsigned long long)job);
    unsigned char *out = NULL;
    size_t out_len = 0;
    rc = rz_vault_seal_value(&out, &out_len, rz_secret_data(s), rz_secret_len(s),
                             jid, cred_id, now + ORCH_CRED_TTL_MS, node_pk);
    rz_secret_free(s);
    if (rc == RZ_OK) {
        *out_b64 = b64_encode(out, out_len);
        rc = *out_b64 ? RZ_OK : RZ_ENOMEM;
    }
    rz_free(out);
    return rc;
}

/* The step's credentials, sealed to the node; a reason on failure. */
static int add_credentials(orch *o, cJSON *list, uint64_t dep, const char *step,
                           uint64_t job, uint64_t node, uint64_t now,
                           char *why, size_t cap)
{
    if (!dep)
        return RZ_OK;
    char *rec = auth_get_creds(o, dep);
    cJSON *doc = parse_json_text(rec);
    free(rec);
    cJSON *refs = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "steps"), step);
    cJSON *sealed = cJSON_GetObjectItemCaseSensitive(doc, "sealed");
    unsigned char pk[32];
    int rc = RZ_OK;
    if (cJSON_GetArraySize(refs) > 0 && auth_node_pk(o, node, pk) != RZ_OK) {
        snprintf(why, cap, "node %llu has no key to seal credentials to",
                 (unsigned long long)node);
        rc = RZ_ENOENT;
    }
    const cJSON *r;
    cJSON_ArrayForEach(r, refs) {
        if (rc != RZ_OK)
            break;
        const char *field = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "field"));
        const char *cid = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "credential_id"));
        const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(sealed, cid ? cid : ""));
        char *out = NULL;
        rc = field && cid && b64 ? reseal(o, b64, cid, job, pk, now, &out) : RZ_ENOENT;
        if (rc != RZ_OK) {
            snprintf(why, cap, "credential \"%s\" cannot be handed over: %s",
                     cid ? cid : "?", rz_strerror(rc));
            break;
        }
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "field", field);
        cJSON_AddStringToObject(c, "credential_id", cid);
        cJSON_AddStringToObject(c, "sealed", out);
        cJSON_AddItemToArray(list, c);
        free(out);
    }
    cJSON_Delete(doc);
    return rc;
}

static cJSON *assignment_json(orch *o, const rz_engine_assignment *a)
{
    cJSON *doc = cJSON_CreateObject();
    double timeout_s = 0;
    cJSON_AddNumberToObject(doc, "job", (double)a->job);
    cJSON_AddNumberToObject(doc, "attempt", a->attempt);
    if (a->deployment)
        cJSON_AddNumberToObject(doc, "deployment", (double)a->deployment);
    else
        cJSON_AddNullToObject(doc, "deployment");
    if (a->step[0])
        cJSON_AddStringToObject(doc, "step", a->step);
    else
        cJSON_AddNullToObject(doc, "step");
    cJSON *adhoc = a->exec_json ? cJSON_Parse(a->exec_json) : NULL;
    if (adhoc)   /* an image the orchestrator allowed; no module */
        cJSON_AddItemToObject(doc, "adhoc", adhoc);
    else
        cJSON_AddItemToObject(doc, "module", module_json(o, a->module_id,
                                                         a->module_version,
                                                         &timeout_s));
    cJSON *r = cJSON_Parse(a->request_json);
    cJSON_AddItemToObject(doc, "request", r ? r : cJSON_CreateObject());
    cJSON_AddNumberToObject(doc, "max_cost_micros", (double)a->max_cost_micros);
    /* What it was matched by: a gateway asks its scheduler for as much. */
    const char *reqs = rz_engine_job_requirements(o->e, a->job);
    cJSON *rq = reqs ? cJSON_Parse(reqs) : NULL;
    if (cJSON_IsObject(rq))
        cJSON_AddItemToObject(doc, "requirements", rq);
    else
        cJSON_Delete(rq);
    cJSON_AddArrayToObject(doc, "credentials");
    /* A service (docs/services.md) runs until it ends: no module timeout;
     * its node sends its readiness and events as they come. */
    bool service = rz_engine_job_service(o->e, a->job);
    if (service)
        cJSON_AddTrueToObject(doc, "service");
    uint32_t ready_s = 0;
    const char *check = rz_engine_job_ready_check(o->e, a->job, &ready_s);
    if (check) {
        cJSON *rd = cJSON_AddObjectToObject(doc, "ready");
        cJSON_AddStringToObject(rd, "check", check);
        if (ready_s)
            cJSON_AddNumberToObject(rd, "timeout_s", ready_s);
    }
    if (timeout_s > 0 && !service)
        cJSON_AddNumberToObject(doc, "timeout_s", timeout_s);
    return doc;
}

int orch_deliver(orch *o, struct evhttp_request *r, uint64_t node, bool cbor,
                 uint64_t t0_ns)
{
    req q;
    memset(&q, 0, sizeof q);
    q.o = o;
    q.r = r;
    q.cbor = cbor;
    q.route = orch_route_index(r_node_poll);
    q.t0_ns = t0_ns;
    for (;;) {
        uint64_t now = orch_now_ms();
        rz_engine_assignment a;
        int rc = rz_engine_poll(o->e, node, now, &a);
        if (rc == RZ_ENOENT)
            return 0;
        if (rc != RZ_OK) {
            reply_rz(&q, rc);
            return 1;
        }
        orch_observe_dispatch(o, a.job, now);
        cJSON *doc = assignment_json(o, &a);
        uint64_t job = a.job, dep = a.deployment;
        uint32_t attempt = a.attempt;
        char step[256], why[400] = "";
        snprintf(step, sizeof step, "%s", a.step);
        if (add_credentials(o, cJSON_GetObjectItemCaseSensitive(doc, "credentials"), dep, step,
                            job, node, now, why, sizeof why) == RZ_OK) {
            reply_json(&q, 200, doc);
            return 1;
        }
        /* The attempt cannot start without its credentials: it fails (a
         * deployment's retry policy decides what follows). */
        cJSON_Delete(doc);
        rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
        rep.attempt = attempt;
        rep.error = why;
        /* RZ_ESTATE: settled meanwhile; the reply says why either way. */
        (void)!rz_engine_report_result(o->e, node, job, &rep, now, NULL);
    }
}

/* One "JOB.ATTEMPT" of a poll's "ended" (job 1..2^53, attempt 1..2^32-1);
 * *end past it. */
static bool ended_one(const char *s, const char **end, uint64_t *job,
                      uint32_t *attempt)
{
    uint64_t v[2] = { 0, 0 };
    const uint64_t max[2] = { (uint64_t)1 << 53, UINT32_MAX };
    for (int k = 0; k < 2; k++) {
        if (k && *s++ != '.')
            return false;
        const char *from = s;
        while (*s >= '0' && *s <= '9' && s - from < 17)
            v[k] = v[k] * 10 + (uint64_t)(*s++ - '0');
        if (s == from || (*s >= '0' && *s <= '9') || !v[k] || v[k] > max[k])
            return false;
    }
    *job = v[0];
    *attempt = (uint32_t)v[1];
    *end = s;
    return true;
}

/* The poll's "ended": the attempts whose process ended on the node, their
 * results on the way (docs/api.md), parsed whole before any is applied.
 * false with a reply sent. */
static bool ended_list(req *q, uint64_t *jobs, uint32_t *atts, size_t *n)
{
    const char *s;
    *n = 0;
    if (!query_get(q, "ended", &s))
        return false;
    bool ok = true;
    while (s && ok) {
        ok = *n < API_POLL_ENDED_MAX && ended_one(s, &s, &jobs[*n], &atts[*n]) &&
             (*s == ',' || !*s);
        (*n)++;
        s = ok && *s == ',' ? s + 1 : NULL;
    }
    if (!ok)
        reply_error(q, RZ_EINVAL, "\"ended\" must be up to %u JOB.ATTEMPT "
                    "pairs (whole numbers from 1) separated by commas",
                    API_POLL_ENDED_MAX);
    return ok;
}

/* The ended attempts no longer hold their node's reservations: the
 * delivery below may hand the next job before their results come. One the
 * node no longer runs (its result taken, a stale attempt) is passed over. */
static bool ended_take(req *q, uint64_t node)
{
    uint64_t jobs[API_POLL_ENDED_MAX];
    uint32_t atts[API_POLL_ENDED_MAX];
    size_t n;
    if (!ended_list(q, jobs, atts, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        int rc = rz_engine_node_ended(q->o->e, node, jobs[i], atts[i],
                                      orch_now_ms());
        if (rc != RZ_OK && rc != RZ_ESTATE) {
            reply_rz(q, rc);
            return false;
        }
        q->o->nodes_ended += rc == RZ_OK;
    }
    return true;
}

void r_node_poll(req *q)
{
    uint64_t node, wait;
    if (!own_node(q, &node) ||
        !query_u64(q, "wait", ORCH_WAIT_DEFAULT, ORCH_WAIT_MAX, &wait) ||
        !ended_take(q, node))
        return;
    if (orch_deliver(q->o, q->r, node, q->cbor, q->t0_ns)) {
        q->answered = true;
        return;
    }
    if (wait == 0)
        reply_text(q, 204, NULL, NULL, 0);
    else
        orch_hold_poll(q, node, (unsigned)wait);
}

static bool get_job_param(req *q, uint64_t *job)
{
    return param_u64(q, 1, job);
}

static char *log_cut(const char *log, size_t *len)
{
    size_t n = strlen(log);
    if (n > ORCH_LOG_MAX) {
        n = ORCH_LOG_MAX;   /* keep the tail; start on a UTF-8 boundary */
        log += strlen(log) - n;
        while (n && ((unsigned char)*log & 0xC0) == 0x80)
            log++, n--;
    }
    *len = n;
    return (char *)log;
}

/* A result too big to take: the node's attempt fails with the reason (the
 * node and job are known from the path) rather than staying running until
 * reconciliation; the reply is the 413. */
void r_node_result_oversize(req *q, size_t len)
{
    orch *o = q->o;
    uint64_t node, job;
    if (!own_node(q, &node) || !get_job_param(q, &job))
        return;
    char why[200];
    snprintf(why, sizeof why, "result of %zu bytes is over the server's limit "
             "of %zu bytes", len, o->opts.max_body);
    rz_engine_job_info ji;
    if (rz_engine_job_get(o->e, job, &ji) == RZ_OK && ji.node == node &&
        (ji.state == RZ_JOB_RUNNING || ji.state == RZ_JOB_ASSIGNED)) {
        rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
        rep.attempt = ji.attempt;
        rep.error = why;
        /* The 413 is the answer; RZ_ESTATE means it was settled meanwhile. */
        (void)!rz_engine_report_result(o->e, node, job, &rep, orch_now_ms(),
                                       NULL);
    }
    reply_error(q, RZ_ETOOBIG, "%s", why);
}

/* The node's signature of its result, checked with its key: required of a
 * node whose key is bound, checked when given by a legacy one. `rec` gets
 * the record kept with the job (NULL: none). A reply is sent when false. */
static bool result_signed(req *q, uint64_t node, const rz_auth_result *r,
                          const char *sig, char **rec)
{
    unsigned char pk[32];
    int bound = 0;
    *rec = NULL;
    bool has_key = rz_auth_node_identity(q->o->auth, node, pk, &bound, NULL) == RZ_OK;
    if (!sig && !bound)
        return true;
    if (!sig) {
        reply_error(q, RZ_EDENIED, "a result must be signed by the node's key "
                    "(\"signature\"; docs/api.md)");
        return false;
    }
    int rc = has_key ? rz_auth_result_verify(r, pk, sig) : RZ_EAUTH;
    if (rc != RZ_OK) {
        reply_error(q, rc == RZ_EINVAL ? RZ_EINVAL : RZ_EDENIED, "result "
                    "refused: %s", has_key ? rz_error_last()->message
                                           : "the node has no key on record");
        return false;
    }
    char digest[RZ_AUTH_DIGEST_HEX + 1];
    rz_auth_digest_hex(r->text, r->text_len, digest);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "node", (double)node);
    cJSON_AddNumberToObject(d, "attempt", r->attempt);
    cJSON_AddStringToObject(d, "outcome", r->failed ? "error" : "outputs");
    cJSON_AddStringToObject(d, "sha256", digest);
    cJSON_AddStringToObject(d, "signature", sig);
    *rec = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    return true;
}

void r_node_result(req *q)
{
    static const char *const fields[] = { "attempt", "outputs", "error",
                                          "run_ms", "log", "signature", NULL };
    orch *o = q->o;
    uint64_t node, job, attempt, run_ms;
    cJSON *outputs;
    const char *error, *log;
    if (!own_node(q, &node) || !get_job_param(q, &job) ||
        !body_fields(q, fields) ||
        !body_u64(q, "attempt", true, UINT32_MAX, &attempt, NULL) ||
        !body_u64(q, "run_ms", true, (uint64_t)1 << 53, &run_ms, NULL) ||
        !body_obj(q, "outputs", &outputs) || !body_str(q, "error", false, &error) ||
        !body_str(q, "log", false, &log) || !orch_blobs_result_ok(q, job, outputs))
        return;
    if (!outputs == !error) {
        reply_error(q, RZ_EINVAL, "exactly one of \"outputs\" and \"error\"");
        return;
    }
    const char *sig;
    if (!body_str(q, "signature", false, &sig))
        return;
    char *out = outputs ? cJSON_PrintUnformatted(outputs) : NULL, *rec = NULL;
    if (outputs && !out) {
        reply_rz(q, RZ_ENOMEM);
        return;
    }
    rz_auth_result res = { job, (uint32_t)attempt, !outputs, out ? out : error,
                           strlen(out ? out : error) };
    if (!result_signed(q, node, &res, sig, &rec)) {
        free(out);
        return;
    }
    int repeat = 0;
    rz_engine_report rep = RZ_ENGINE_REPORT_INIT;
    rep.attempt = (uint32_t)attempt;
    rep.outputs_json = out;
    rep.error = error;
    rep.run_ms = run_ms;
    int rc = rz_engine_report_result(o->e, node, job, &rep, orch_now_ms(),
                                     &repeat);
    free(out);
    if (rc != RZ_OK) {
        free(rec);
        reply_rz(q, rc);
        return;
    }
    /* Kept once the engine took the report: a stale attempt's signature
     * never replaces the one of the result the job shows. */
    if (rec && !repeat && auth_put_result(o, job, rec) != RZ_OK)
        orch_log(o, ORCH_LOG_WARN, "result_signature_not_kept", "job", LOG_U64, job,
                 NULL);
    if (!repeat)
        orch_observe_step(o, job);
    free(rec);
    if (log && !repeat) {   /* the log of the report taken, kept once */
        size_t len;
        const char *tail = log_cut(log, &len);
        log_times t;
        orch_live_rebase(o, job, tail, len, &t);
        if (!t.n)   /* none streamed: every line had come by now */
            log_times_add(&t, 0, orch_now_ms());
        int prc = auth_put_log(o, job, (uint32_t)attempt, tail, len, &t, true);
        log_times_clear(&t);
        if (prc != RZ_OK)
            orch_log(o, ORCH_LOG_WARN, "job_log_not_kept", "job", LOG_U64, job, NULL);
    }
    if (!repeat)   /* the streamed log: replaced, or kept when none came */
        orch_live_end(o, job, !log);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddTrueToObject(doc, "accepted");
    reply_json(q, 200, doc);
}

void r_node_decline(req *q)
{
    static const char *const fields[] = { "attempt", "reason", NULL };
    uint64_t node, job, attempt;
    const char *reason;
    if (!own_node(q, &node) || !get_job_param(q, &job) ||
        !body_fields(q, fields) ||
        !body_u64(q, "attempt", true, UINT32_MAX, &attempt, NULL) ||
        !body_str(q, "reason", false, &reason))
        return;
    int rc = rz_engine_decline(q->o->e, node, job, (uint32_t)attempt,
                               orch_now_ms());
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddTrueToObject(doc, "accepted");
    reply_json(q, 200, doc);
}

void r_node_delete(req *q)
{
    uint64_t node;
    if (!own_node(q, &node))
        return;
    int rc = rz_engine_node_deregister(q->o->e, node, orch_now_ms());
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    orch_waiter_drop_node(q->o, node);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "id", (double)node);
    cJSON_AddStringToObject(doc, "state", "gone");
    reply_json(q, 200, doc);
}

/* ---- attribution ---- */

/* Does the record's signature hold now: the node's key over the job, the
 * attempt and the digest of the text the job keeps? */
static bool attest_holds(orch *o, const cJSON *rec, const rz_engine_job_info *ji)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(rec, "node");
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rec, "attempt");
    const char *outcome = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "outcome"));
    const char *sig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "signature"));
    const char *text = ji->state == RZ_JOB_SUCCEEDED ? ji->outputs_json : ji->error;
    unsigned char pk[32];
    if (!cJSON_IsNumber(n) || (uint64_t)n->valuedouble != ji->node ||
        !cJSON_IsNumber(a) || (uint32_t)a->valuedouble != ji->attempt ||
        !outcome || !sig || !text ||
        strcmp(outcome, ji->state == RZ_JOB_SUCCEEDED ? "outputs" : "error") != 0 ||
        rz_auth_node_identity(o->auth, ji->node, pk, NULL, NULL) != RZ_OK)
        return false;
    rz_auth_result r = { ji->id, ji->attempt, ji->state != RZ_JOB_SUCCEEDED,
                         text, strlen(text) };
    return rz_auth_result_verify(&r, pk, sig) == RZ_OK;
}

void orch_job_attest(orch *o, cJSON *j, const rz_engine_job_info *ji)
{
    if (ji->node)
        cJSON_AddNumberToObject(j, "node_id", (double)ji->node);
    else
        cJSON_AddNullToObject(j, "node_id");
    char *text = NULL;
    cJSON *rec = NULL;
    if (ji->state == RZ_JOB_SUCCEEDED || ji->state == RZ_JOB_FAILED) {
        if (rz_auth_result_get(o->auth, ji->id, &text) == RZ_OK)
            rec = cJSON_Parse(text);
        rz_free(text);
    }
    const char *sig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "signature"));
    const char *dig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "sha256"));
    if (sig && dig) {
        cJSON_AddStringToObject(j, "result_signature", sig);
        cJSON_AddStringToObject(j, "result_digest", dig);
        cJSON_AddBoolToObject(j, "result_verified", attest_holds(o, rec, ji));
    } else {
        cJSON_AddNullToObject(j, "result_signature");
        cJSON_AddNullToObject(j, "result_digest");
        cJSON_AddFalseToObject(j, "result_verified");
    }
    cJSON_Delete(rec);
}

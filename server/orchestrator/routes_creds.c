/* An account's stored credentials (docs/api.md "Stored credentials"):
 * PUT /api/v1/credentials/{id} takes a value sealed to this orchestrator
 * (GET /api/v1/keys) as `rhizos flow deploy` seals one, opens it only to
 * check it was sealed for this id, and keeps it sealed again to the
 * orchestrator's own key for long (CRED_SEAL_MS): the plain value is never
 * on disk, in a reply or in a log. GET lists ids, types and times only;
 * DELETE forgets one. A deploy takes the references it does not supply
 * from the caller's own stored credentials (creds_fill_stored), so a
 * console that only ever handles ids can deploy a flow that needs them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

/* As long as a trigger's credentials (SEAL_SELF_MS in flows.c). */
#define CRED_SEAL_MS (10ull * 365 * 86400 * 1000)
#define CRED_TYPE_MAX 64
/* Per account: bounds what one client keeps in the auth store. */
#define CREDS_MAX 256

/* Ids and types are names, not text: a vault name's characters. */
static bool name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._:@-") == n;
}

static bool id_param(req *q, const char **id)
{
    *id = q->params[0];
    if (!name_ok(*id, 64)) {
        reply_error(q, RZ_EINVAL, "a credential id is 1 to 64 letters, digits or "
                    "'.', '_', ':', '@', '-'");
        return false;
    }
    return true;
}

/* The sealed value opened (sealed for RZ_VAULT_ORCHESTRATOR_JOB and this
 * credential id, not expired) and sealed again to our own key for long:
 * base64, or NULL with the reason answered. */
static char *reseal_stored(req *q, const char *b64, const char *id, uint64_t now)
{
    orch *o = q->o;
    size_t n = 0;
    unsigned char *sealed = b64_decode(b64, &n);
    rz_secret *s = NULL;
    char *cid = NULL;
    int rc = sealed ? rz_vault_unseal(&s, &cid, sealed, n, o->pk, o->sk,
                                      RZ_VAULT_ORCHESTRATOR_JOB, now) : RZ_ESYNTAX;
    free(sealed);
    if (rc == RZ_OK && (!cid || strcmp(cid, id) != 0))
        rc = RZ_EAUTH;
    rz_free(cid);
    if (rc != RZ_OK) {
        rz_secret_free(s);
        reply_error(q, RZ_EINVAL, "\"sealed\" is not a value sealed to this orchestrator "
                    "for credential \"%s\" (or it expired): seal it as `rhizos credentials "
                    "put` does", id);
        return NULL;
    }
    unsigned char *out = NULL;
    size_t out_len = 0;
    char *res = NULL;
    if (rz_vault_seal_value(&out, &out_len, rz_secret_data(s), rz_secret_len(s),
                            RZ_VAULT_ORCHESTRATOR_JOB, id, now + CRED_SEAL_MS,
                            o->pk) == RZ_OK)
        res = b64_encode(out, out_len);
    rz_free(out);
    rz_secret_free(s);
    if (!res)
        reply_error(q, RZ_ENOMEM, "out of memory");
    return res;
}

/* A new id while the account holds CREDS_MAX already: refused (409). */
static bool room_for(req *q, const char *id)
{
    char *text = NULL;
    if (rz_auth_account_cred_get(q->o->auth, q->who.account, id, &text) == RZ_OK) {
        rz_free(text);
        return true;     /* a replacement */
    }
    cJSON *all = NULL;
    if (rz_auth_account_cred_list(q->o->auth, q->who.account, &text) == RZ_OK)
        all = cJSON_Parse(text);
    rz_free(text);
    int n = all ? cJSON_GetArraySize(all) : -1;
    cJSON_Delete(all);
    if (n < 0)
        reply_error(q, RZ_EDB, "cannot read the stored credentials");
    else if (n >= CREDS_MAX)
        reply_error(q, RZ_ESTATE, "an account keeps at most %d stored credentials: "
                    "remove one first", CREDS_MAX);
    return n >= 0 && n < CREDS_MAX;
}

void r_cred_put(req *q)
{
    static const char *const fields[] = { "type", "sealed", NULL };
    const char *id, *type, *b64;
    if (!id_param(q, &id) || !body_fields(q, fields) || !body_str(q, "type", true, &type) ||
        !body_str(q, "sealed", true, &b64))
        return;
    if (!name_ok(type, CRED_TYPE_MAX)) {
        reply_error(q, RZ_EINVAL, "\"type\" is 1 to %d letters, digits or "
                    "'.', '_', ':', '@', '-'", CRED_TYPE_MAX);
        return;
    }
    if (!room_for(q, id))
        return;
    uint64_t now = orch_now_ms();
    char *mine = reseal_stored(q, b64, id, now);
    if (!mine)
        return;
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddStringToObject(rec, "type", type);
    cJSON_AddNumberToObject(rec, "created_ms", (double)now);
    cJSON_AddStringToObject(rec, "sealed", mine);
    char *text = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    free(mine);
    int rc = text ? rz_auth_account_cred_put(q->o->auth, q->who.account, id, text)
                  : RZ_ENOMEM;
    free(text);
    if (rc != RZ_OK) {
        reply_error(q, RZ_EDB, "cannot store the credential");
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(doc, "id", id);
    cJSON_AddStringToObject(doc, "type", type);
    cJSON_AddNumberToObject(doc, "created_ms", (double)now);
    reply_json(q, 200, doc);
}

void r_creds_list(req *q)
{
    char *text = NULL;
    if (rz_auth_account_cred_list(q->o->auth, q->who.account, &text) != RZ_OK) {
        reply_error(q, RZ_EDB, "cannot read the stored credentials");
        return;
    }
    cJSON *all = cJSON_Parse(text);
    rz_free(text);
    cJSON *list = cJSON_CreateArray();
    const cJSON *r;
    cJSON_ArrayForEach(r, all) {
        /* Only these three: the record's sealed value never leaves. */
        cJSON *e = cJSON_CreateObject();
        static const char *const keep[] = { "id", "type", "created_ms" };
        for (size_t i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, keep[i]);
            if (v)
                cJSON_AddItemToObject(e, keep[i], cJSON_Duplicate(v, false));
        }
        cJSON_AddItemToArray(list, e);
    }
    cJSON_Delete(all);
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "credentials", list);
    reply_json(q, 200, doc);
}

void r_cred_delete(req *q)
{
    const char *id;
    if (!id_param(q, &id))
        return;
    int rc = rz_auth_account_cred_del(q->o->auth, q->who.account, id);
    if (rc == RZ_ENOENT)
        reply_error(q, RZ_ENOENT, "no stored credential \"%s\"", id);
    else if (rc != RZ_OK)
        reply_error(q, RZ_EDB, "cannot remove the credential");
    else
        reply_json(q, 200, cJSON_CreateObject());
}

/* ---- deploy ---- */

/* One reference `cid` (asking for `type`, NULL: any) the deploy did not
 * supply, taken from the caller's own store into `creds`; a stored one of
 * another type is refused. Not stored: left for the deploy to refuse as
 * "referenced but not supplied". False: answered. */
static bool fill_one(req *q, cJSON **creds, const char *cid, const char *type,
                     const char *step)
{
    if (!cid || cJSON_GetObjectItemCaseSensitive(*creds, cid))
        return true;
    char *text = NULL;
    if (rz_auth_account_cred_get(q->o->auth, q->who.account, cid, &text) != RZ_OK)
        return true;
    cJSON *rec = cJSON_Parse(text);
    rz_free(text);
    const char *have = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "type"));
    const char *sealed = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "sealed"));
    bool ok = true;
    if (type && have && strcmp(type, have) != 0) {
        reply_error(q, RZ_EINVALID, "step '%s': stored credential \"%s\" has type '%s', "
                    "the step asks for '%s'", step, cid, have, type);
        ok = false;
    } else if (sealed && !*creds &&
               !(*creds = cJSON_AddObjectToObject(q->body, "credentials"))) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        ok = false;
    } else if (sealed) {
        cJSON_AddStringToObject(*creds, cid, sealed);
    }
    cJSON_Delete(rec);
    return ok;
}

bool creds_fill_stored(req *q, const char *text, cJSON **creds)
{
    rz_flow *f = NULL;
    if (rz_flow_parse(&f, text, strlen(text), RZ_FORMAT_AUTO, "flow", NULL) != RZ_OK)
        return true;     /* the engine's validation says why */
    char *json = NULL, *tj = NULL;
    size_t len = 0;
    cJSON *doc = rz_flow_to_json(f, RZ_EXPORT_BUILDER, &json, &len) == RZ_OK
                 ? cJSON_ParseWithLength(json, len) : NULL;
    cJSON *trigs = rz_flow_triggers(f, &tj) == RZ_OK ? cJSON_Parse(tj) : NULL;
    rz_free(json);
    rz_free(tj);
    rz_flow_free(f);
    bool ok = true;
    const cJSON *node;
    cJSON_ArrayForEach(node, cJSON_GetObjectItemCaseSensitive(doc, "nodes")) {
        const char *step = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(node, "id"));
        const cJSON *refs = cJSON_GetObjectItemCaseSensitive(node, "credentials");
        for (const cJSON *c = refs ? refs->child : NULL; ok && c; c = c->next)
            ok = fill_one(q, creds,
                          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "credentialId")),
                          cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "type")),
                          step ? step : "");
        if (!ok)
            break;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, trigs) {
        if (!ok)
            break;
        ok = fill_one(q, creds,
                      cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "secret")),
                      NULL, "");
    }
    cJSON_Delete(doc);
    cJSON_Delete(trigs);
    return ok;
}

/* A flow's credentials sealed to an orchestrator for a deployment: the
 * "credentials" member of POST /api/v1/flows/deploy, made the same way by
 * the CLI and the bindings. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "flow/model.h"
#include "trigger/trigger_impl.h"
#include "vault/vault_impl.h"

/* Entry `i` sealed and added to `out` as "<id>":"<base64>". */
static int add_sealed(const rz_vault *v, size_t i, const char *id,
                      const unsigned char *pk, uint64_t expires_ms, cJSON *out)
{
    unsigned char *sealed = NULL;
    size_t n = 0;
    int rc = rz_vault_seal(v, i, RZ_VAULT_ORCHESTRATOR_JOB, expires_ms, pk,
                           &sealed, &n);
    if (rc != RZ_OK)
        return rc;
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = rz__malloc(cap);
    if (b64)
        sodium_bin2base64(b64, cap, sealed, n, sodium_base64_VARIANT_ORIGINAL);
    rz_free(sealed);
    bool ok = b64 && cJSON_AddStringToObject(out, id, b64);
    free(b64);
    return ok ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

/* The entry a reference names must be of the type it asks for, as
 * rz_vault_resolve_step checks before a local run: a discord_bot token must
 * never reach a step as its llm_api key. Located at the reference. */
static int check_type(const rz_vault *v, size_t i, const rz_flow *flow,
                      const rz__step *st, const rz__cred *c)
{
    const char *type = v->entries[i].type;
    if (!c->type || strcmp(type, c->type) == 0)
        return RZ_OK;   /* no type: malformed, the validator's to report */
    uint32_t line = 0, col = 0;
    rz__flow_locate(flow, c->ptr, &line, &col);
    return rz__error_at(RZ_ETYPE, rz_flow_file(flow), line, col, c->ptr,
                        "step '%s' credential '%s': vault entry '%s' has type '%s', "
                        "the reference asks for '%s'", st->id,
                        c->field ? c->field : "", c->credential_id, type, c->type);
}

/* Every distinct credentialId of the flow's steps, sealed once, after
 * checking every reference's type. References without an id are
 * malformed: the validator reports those, not this. */
static int seal_all(const rz_vault *v, const rz_flow *flow,
                    const unsigned char *pk, uint64_t expires_ms, cJSON *out)
{
    int rc = RZ_OK;
    for (size_t s = 0; rc == RZ_OK && s < flow->n_steps; s++) {
        const rz__step *st = &flow->steps[s];
        for (size_t c = 0; rc == RZ_OK && c < st->n_creds; c++) {
            const char *id = st->creds[c].credential_id;
            if (!id)
                continue;
            size_t i = rz_vault_find(v, id);
            if (i == RZ_NPOS)
                rc = rz__error(RZ_ENOENT, "the flow names credential '%s', "
                               "which is not in the vault", id);
            else
                rc = check_type(v, i, flow, st, &st->creds[c]);
            if (rc == RZ_OK && !cJSON_GetObjectItemCaseSensitive(out, id))
                rc = add_sealed(v, i, id, pk, expires_ms, out);
        }
    }
    /* A webhook trigger's HMAC key: the orchestrator checks signatures with it. */
    size_t k = 0;
    for (const cJSON *t = flow->triggers ? flow->triggers->child : NULL; rc == RZ_OK && t;
         t = t->next, k++) {
        cJSON *n = rz__trigger_normalize(t, k);
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(n, "secret"));
        size_t i = id ? rz_vault_find(v, id) : RZ_NPOS;
        if (id && i == RZ_NPOS)
            rc = rz__error(RZ_ENOENT, "the flow's webhook names credential '%s', "
                           "which is not in the vault", id);
        else if (id && !cJSON_GetObjectItemCaseSensitive(out, id))
            rc = add_sealed(v, i, id, pk, expires_ms, out);
        cJSON_Delete(n);
    }
    return rc;
}

int rz_vault_seal_flow(char **json, const rz_vault *v, const rz_flow *flow,
                       const unsigned char pk[RZ_VAULT_NODE_PK_BYTES],
                       uint64_t expires_ms)
{
    if (json)
        *json = NULL;
    if (!json || !v || !flow || !pk)
        return rz__error(RZ_EINVAL, "no output, vault, flow or key");
    if (!rz_vault_is_unlocked(v))
        return rz__error(RZ_ESTATE, "the vault is locked");
    if (!expires_ms)
        expires_ms = rz__wall_ms() + RZ_VAULT_SEAL_TTL_MS;
    cJSON *out = cJSON_CreateObject();
    int rc = out ? seal_all(v, flow, pk, expires_ms, out)
                 : rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK && !(*json = cJSON_PrintUnformatted(out)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(out);
    return rc;
}

/* Flow deployments over the API: deploy, status, cancel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "client/client_internal.h"

/* An object given as JSON text, or NULL; RZ_ESYNTAX when not an object. */
static int parse_object(const char *json, const char *what, cJSON **out)
{
    *out = NULL;
    if (!json)
        return RZ_OK;
    cJSON *v = cJSON_Parse(json);
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        return rz__error(RZ_ESYNTAX, "%s must be a JSON object", what);
    }
    *out = v;
    return RZ_OK;
}

static char *deploy_body(const char *text, size_t len, cJSON *inputs,
                         cJSON *creds, const rz_client_deploy_opts *o)
{
    cJSON *body = cJSON_CreateObject();
    char *flow = rz__strndup(text, len);
    bool ok = body && flow && cJSON_AddStringToObject(body, "flow", flow);
    if (ok && inputs)
        ok = cJSON_AddItemReferenceToObject(body, "inputs", inputs);
    if (ok && creds)
        ok = cJSON_AddItemReferenceToObject(body, "credentials", creds);
    if (ok && o && o->note)
        ok = cJSON_AddStringToObject(body, "note", o->note);
    if (ok && o && o->resume_from)
        ok = cJSON_AddNumberToObject(body, "resume_from", (double)o->resume_from);
    char *s = ok ? rz__json_print(body, false) : NULL;
    free(flow);
    cJSON_Delete(body);
    return s;
}

static rz_severity severity_of(const cJSON *d)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(d, "severity");
    if (cJSON_IsString(s) && strcmp(s->valuestring, "warning") == 0)
        return RZ_SEV_WARNING;
    if (cJSON_IsString(s) && strcmp(s->valuestring, "note") == 0)
        return RZ_SEV_NOTE;
    return RZ_SEV_ERROR;
}

static uint32_t u32_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > UINT32_MAX)
        return 0;
    return (uint32_t)v->valuedouble;
}

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : "";
}

/* The 422 reply's "diagnostics" into `diags`; returns how many errors. */
static size_t add_diags(const char *reply, rz_diags *diags)
{
    cJSON *root = reply ? cJSON_Parse(reply) : NULL;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "diagnostics");
    size_t errors = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, list) {
        if (!cJSON_IsObject(d))
            continue;
        int code = rz__status_from_name(str_of(d, "code"));
        rz_severity sev = severity_of(d);
        const char *msg = str_of(d, "message");
        if (diags)
            rz__diag(diags, sev, code < 0 ? code : RZ_EINVALID, str_of(d, "file"),
                     u32_of(d, "line"), u32_of(d, "column"), str_of(d, "pointer"),
                     "%s", msg);
        errors += sev == RZ_SEV_ERROR;
    }
    cJSON_Delete(root);
    return errors;
}

/* A JSON number that is a whole non-negative id. */
static bool id_of(const cJSON *v, uint64_t *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble > 9007199254740992.0)
        return false;
    *id = (uint64_t)v->valuedouble;
    return true;
}

int rz_client_deploy(rz_client *c, const char *text, size_t len,
                     const char *inputs_json, const char *credentials_json,
                     uint64_t *deployment, rz_diags *diags)
{
    return rz_client_deploy_ex(c, text, len, inputs_json, credentials_json, NULL,
                               deployment, diags);
}

int rz_client_deploy_ex(rz_client *c, const char *text, size_t len,
                        const char *inputs_json, const char *credentials_json,
                        const rz_client_deploy_opts *opts, uint64_t *deployment,
                        rz_diags *diags)
{
    if (opts && opts->version != 1)
        return rz__error(RZ_EINVAL, "rz_client_deploy_opts version %u is not 1",
                         (unsigned)opts->version);
    if (opts && opts->note && strlen(opts->note) > 1000)
        return rz__error(RZ_EINVAL, "the note is longer than 1000 bytes");
    if (opts && opts->resume_from > 9007199254740992ull)
        return rz__error(RZ_EINVAL, "resume_from is not a deployment id");
    if (deployment)
        *deployment = 0;
    if (!c || !text || !deployment)
        return rz__error(RZ_EINVAL, "client, text or deployment is NULL");
    if (memchr(text, '\0', len))
        return rz__error(RZ_ESYNTAX, "flow text has a NUL byte");
    cJSON *inputs, *creds = NULL;
    int rc = parse_object(inputs_json, "inputs", &inputs);
    if (rc == RZ_OK)
        rc = parse_object(credentials_json, "credentials", &creds);
    char *body = rc == RZ_OK ? deploy_body(text, len, inputs, creds, opts) : NULL;
    cJSON_Delete(inputs);
    cJSON_Delete(creds);
    if (rc != RZ_OK)
        return rc;
    if (!body)
        return rz__error(RZ_ENOMEM, "out of memory");
    char *reply = NULL;
    rc = rz_client_call(c, "POST", "/api/v1/flows/deploy", body, 0, NULL, &reply);
    free(body);
    if (rc == RZ_EINVALID) {
        char msg[sizeof rz_error_last()->message];
        snprintf(msg, sizeof msg, "%s", rz_error_last()->message);
        size_t n = add_diags(reply, diags);
        rz_free(reply);
        if (n == 0)     /* e.g. an unknown flow input: the message says it */
            return rz__error(RZ_EINVALID, "%s", msg);
        return rz__error(RZ_EINVALID, "%s (%zu error%s)", msg, n, n == 1 ? "" : "s");
    }
    if (rc != RZ_OK) {
        rz_free(reply);
        return rc;
    }
    cJSON *root = reply ? cJSON_Parse(reply) : NULL;
    bool ok = id_of(cJSON_GetObjectItemCaseSensitive(root, "id"), deployment);
    cJSON_Delete(root);
    rz_free(reply);
    return ok ? RZ_OK
              : rz__error(RZ_EPROTOCOL, "deploy reply from %s has no deployment id",
                          c->base);
}

int rz_client_flow_status(rz_client *c, uint64_t deployment, char **json)
{
    if (json)
        *json = NULL;
    if (!c || !json)
        return rz__error(RZ_EINVAL, "client or json is NULL");
    char path[64];
    snprintf(path, sizeof path, "/api/v1/flows/%llu/status",
             (unsigned long long)deployment);
    int rc = rz_client_call(c, "GET", path, NULL, 0, NULL, json);
    if (rc != RZ_OK) {
        rz_free(*json);
        *json = NULL;
        return rc;
    }
    if (!*json)
        return rz__error(RZ_EPROTOCOL, "empty status reply from %s%s", c->base, path);
    return RZ_OK;
}

int rz_client_flow_cancel(rz_client *c, uint64_t deployment)
{
    if (!c)
        return rz__error(RZ_EINVAL, "client is NULL");
    char path[64];
    snprintf(path, sizeof path, "/api/v1/flows/%llu", (unsigned long long)deployment);
    return rz_client_call(c, "DELETE", path, NULL, 0, NULL, NULL);
}

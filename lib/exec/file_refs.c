/* Which `$file` references a run may hand a step (exec_impl.h).
 *
 * A reference names a blob of the runner's store by digest, and a step's
 * input that is one gets a copy of that blob (files.c). Only the runner
 * makes references, from a `type: file` output it took; but a step's JSON
 * (`any`, `object`) output, a flow input or an expression (fromJSON) can
 * hold an object of the same shape naming any blob of the store, another
 * run's included. So a step is given a file only if its digest is one this
 * run's file outputs hold (taken here, or reused from the step cache).
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "exec/exec_impl.h"
#include "module/module_impl.h"

bool rz__file_refs_has(const rz__file_refs *k, const char *hex)
{
    unsigned char d[32];
    return rz__blob_digest_of(hex, d) && rz__blob_set_has(k, d);
}

/* A digest rz__file_ref_digest gave (64 lowercase hex digits) added. */
static int add(rz__file_refs *k, const char *hex)
{
    unsigned char d[32];
    return rz__blob_digest_of(hex, d) ? rz__blob_set_insert(k, d) : RZ_OK;
}

int rz__file_refs_learn(rz__file_refs *k, const rz_module *m, const char *outputs)
{
    if (!m || !outputs || !strstr(outputs, "\"$file\""))
        return RZ_OK;
    cJSON *o = cJSON_Parse(outputs);
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && o && i < m->n_outputs; i++) {
        if (!m->outputs[i].type || strcmp(m->outputs[i].type, "file") != 0)
            continue;   /* a JSON output's lookalike is not one */
        cJSON *v = cJSON_GetObjectItemCaseSensitive(o, m->outputs[i].name), *e;
        const char *hex = rz__file_ref_digest(v);
        if (hex)
            rc = add(k, hex);
        else if (cJSON_IsArray(v))   /* a for_each step's, one per element */
            cJSON_ArrayForEach(e, v) {
                if (rc == RZ_OK && (hex = rz__file_ref_digest(e)))
                    rc = add(k, hex);
            }
    }
    cJSON_Delete(o);
    return rc;
}

/* The first of `v`'s references (itself, or a list's element) that is not
 * known; NULL if none. */
static const char *unknown(const rz__file_refs *k, const cJSON *v)
{
    const char *hex = rz__file_ref_digest(v);
    if (hex)
        return rz__file_refs_has(k, hex) ? NULL : hex;
    const cJSON *e;
    if (cJSON_IsArray(v))
        cJSON_ArrayForEach(e, v) {
            if ((hex = rz__file_ref_digest(e)) && !rz__file_refs_has(k, hex))
                return hex;
        }
    return NULL;
}

int rz__file_refs_check(const rz__file_refs *k, const char *req)
{
    if (!req || !strstr(req, "\"$file\""))
        return RZ_OK;
    cJSON *j = cJSON_Parse(req);
    const cJSON *v;
    int rc = RZ_OK;
    /* What files.c hands over as files: an input, or a list's element. */
    cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(j, "inputs")) {
        const char *hex = unknown(k, v);
        if (hex) {
            rc = rz__error(RZ_EINVALID, "input '%s' is a '$file' reference this run "
                           "did not make (sha256:%.12s...): only a `type: file` "
                           "output makes one, never a step's JSON value, an input or "
                           "an expression (docs/flow-format.md, \"File outputs\")",
                           v->string, hex);
            break;
        }
    }
    cJSON_Delete(j);
    return rc;
}

void rz__file_refs_free(rz__file_refs *k)
{
    rz__blob_set_free(k);
}

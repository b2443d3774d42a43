/* What the console's flow builder asks without deploying anything: a
 * flow's diagnostics (with JSON pointers to the fields they are about),
 * its estimate (rent versus API per step), and the module palette. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/keyvalq_struct.h>

#include "builderjson.h"
#include "orch.h"

#define MODULES_PAGE 100u
#define MODULES_PAGE_MAX 1000u
#define QUERY_MAX 200u

/* The body's "flow" parsed and validated; diagnostics in d. NULL with
 * false: already answered (bad body). */
static bool parse_flow(req *q, rz_diags *d, rz_flow **flow, int *rc)
{
    static const char *const fields[] = { "flow", NULL };
    *flow = NULL;
    if (!body_fields(q, fields))
        return false;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(q->body, "flow");
    char *text = cJSON_IsString(f) ? strdup(f->valuestring)
               : cJSON_IsObject(f) ? cJSON_PrintUnformatted(f) : NULL;
    if (!text) {
        reply_error(q, cJSON_IsString(f) || cJSON_IsObject(f) ? RZ_ENOMEM : RZ_EINVAL,
                    "\"flow\" must be a YAML or JSON text, or an object");
        return false;
    }
    *rc = rz_flow_parse(flow, text, strlen(text), RZ_FORMAT_AUTO, "flow", d);
    if (*rc == RZ_OK)
        *rc = flows_expand(q, flow, q->o->reg, d);   /* named sub-flows too */
    free(text);
    if (*rc == RZ_ENOMEM) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return false;
    }
    return true;
}

/* 200 {"valid", "errors", "warnings", "diagnostics"}: an invalid flow is
 * a normal answer here, not an error. */
void r_flow_validate(req *q)
{
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    int rc = RZ_OK;
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    if (parse_flow(q, d, &flow, &rc)) {
        rz_diags_sort(d);
        reply_json(q, 200, builder_validate_json(rc, d));
    }
    rz_flow_free(flow);
    rz_diags_free(d);
}

static int add_table(rz_prices *p, const char *dir, const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rz_prices_add_file(p, path);
}

/* The shipped price tables, read once (as `rhizos flow estimate`). */
static rz_prices *prices(orch *o)
{
    if (o->prices)
        return o->prices;
    char *dir = rz_data_path("prices");
    rz_prices *p = NULL;
    if (dir && rz_prices_new(&p) == RZ_OK &&
        (add_table(p, dir, "nodes.json") != RZ_OK ||
         add_table(p, dir, "providers.json") != RZ_OK)) {
        rz_prices_free(p);
        p = NULL;
    }
    rz_free(dir);
    return o->prices = p;
}

void r_flow_estimate(req *q)
{
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    rz_estimate *e = NULL;
    int rc = RZ_OK;
    if (rz_diags_new(&d) != RZ_OK) {
        reply_error(q, RZ_ENOMEM, "out of memory");
        return;
    }
    if (!parse_flow(q, d, &flow, &rc)) {
        ;
    } else if (rc != RZ_OK) {
        rz_diags_sort(d);
        reply_diags(q, RZ_EINVALID, d);
    } else if (!prices(q->o)) {
        reply_error(q, RZ_ENOENT, "no price tables: the shipped data/prices is missing");
    } else if ((rc = rz_estimate_flow(&e, flow, q->o->prices)) != RZ_OK) {
        reply_rz(q, rc);
    } else {
        char *json = NULL;
        cJSON *doc = rz_estimate_to_json(e, &json) == RZ_OK ? cJSON_Parse(json) : NULL;
        rz_free(json);
        if (doc)
            reply_json(q, 200, doc);
        else
            reply_error(q, RZ_ENOMEM, "out of memory");
    }
    rz_estimate_free(e);
    rz_flow_free(flow);
    rz_diags_free(d);
}

/* ---- GET /api/v1/modules?q=&limit= ---- */

void r_modules(req *q)
{
    uint64_t limit;
    if (!query_u64(q, "limit", MODULES_PAGE, MODULES_PAGE_MAX, &limit))
        return;
    struct evkeyvalq qs;
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(q->r));
    if (query && evhttp_parse_query_str(query, &qs) != 0) {
        reply_error(q, RZ_EINVAL, "malformed query string");
        return;
    }
    const char *want = query ? evhttp_find_header(&qs, "q") : NULL;
    if (want && strlen(want) > QUERY_MAX) {
        reply_error(q, RZ_EINVAL, "\"q\" is at most %u bytes", QUERY_MAX);
    } else {
        cJSON *doc = cJSON_CreateObject();
        cJSON *arr = cJSON_AddArrayToObject(doc, "modules");
        size_t total = 0;
        for (size_t i = 0; i < rz_registry_count(q->o->reg); i++) {
            const rz_module *m = rz_registry_get(q->o->reg, i);
            if (!builder_module_matches(m, want))
                continue;
            if (total++ < limit)
                cJSON_AddItemToArray(arr, builder_module_json(m));
        }
        cJSON_AddNumberToObject(doc, "total", (double)total);
        reply_json(q, 200, doc);
    }
    if (query)
        evhttp_clear_headers(&qs);
}

/* The requirement-group table: one parsed copy of each distinct
 * requirements text, shared by the jobs that carry it (rz__req_group,
 * counted), in an open-addressing table keyed by an FNV-1a hash of the
 * text. A group also holds the heap of its queued jobs (queue.c), so like
 * jobs are matched once per pass, not once each.
 *
 * Memory only: on open, each loaded job sets its stored requirements again
 * (store.c), which rebuilds the table. Invariants:
 * - a group's refs count the jobs (finished ones included) that point to
 *   it; the last release frees it, after dropping it from the queue;
 * - no two entries hold equal texts, and every entry is reachable from its
 *   home slot by probing without an empty slot in between (a removal puts
 *   the rest of its cluster back);
 * - the stored text is what decides: max_cost_micros is written into it
 *   before it is interned, so jobs that differ in it are in different
 *   groups.
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "engine/engine_impl.h"

static int no_memory(void)
{
    return rz__error(RZ_ENOMEM, "out of memory");
}

static uint64_t text_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool table_grow(rz_engine *e)
{
    if ((e->n_req_groups + 1) * 2 <= e->cap_req_groups)
        return true;
    size_t cap = e->cap_req_groups ? e->cap_req_groups * 2 : 64;
    rz__req_group **t = rz__calloc(cap, sizeof *t);
    if (!t)
        return false;
    for (size_t i = 0; i < e->cap_req_groups; i++)
        if (e->req_groups[i]) {
            size_t k = e->req_groups[i]->hash & (cap - 1);
            while (t[k])
                k = (k + 1) & (cap - 1);
            t[k] = e->req_groups[i];
        }
    free(e->req_groups);
    e->req_groups = t;
    e->cap_req_groups = cap;
    return true;
}

/* The group of `text` (taken), made and parsed if new. */
static rz__req_group *reqs_intern(rz_engine *e, char *text, int *rc)
{
    uint64_t h = text_hash(text);
    size_t m = e->cap_req_groups - 1;
    rz__req_group **t = e->req_groups;
    for (size_t k = h & m; e->cap_req_groups && t[k]; k = (k + 1) & m)
        if (t[k]->hash == h && strcmp(t[k]->json, text) == 0) {
            free(text);
            t[k]->refs++;
            return t[k];
        }
    rz_reqs *r = NULL;
    *rc = rz_reqs_parse(&r, text, strlen(text));
    rz__req_group *x = *rc == RZ_OK ? rz__malloc(sizeof *x) : NULL;
    if (!x || !table_grow(e)) {
        if (*rc == RZ_OK)
            *rc = no_memory();
        free(x);
        rz_reqs_free(r);
        free(text);
        return NULL;
    }
    *x = (rz__req_group){ .json = text, .reqs = r, .refs = 1, .hash = h,
                      .q_prune_at = 1024 };
    m = e->cap_req_groups - 1;
    size_t k = h & m;
    while (e->req_groups[k])
        k = (k + 1) & m;
    e->req_groups[k] = x;
    e->n_req_groups++;
    return x;
}

void rz__engine_reqs_release(rz_engine *e, rz__req_group *x)
{
    if (!x || --x->refs)
        return;
    size_t m = e->cap_req_groups - 1, i = x->hash & m;
    while (e->req_groups[i] != x)
        i = (i + 1) & m;
    e->req_groups[i] = NULL;
    e->n_req_groups--;
    /* Put the rest of the cluster back where a lookup finds it. */
    for (size_t k = (i + 1) & m; e->req_groups[k]; k = (k + 1) & m) {
        rz__req_group *y = e->req_groups[k];
        e->req_groups[k] = NULL;
        size_t s = y->hash & m;
        while (e->req_groups[s])
            s = (s + 1) & m;
        e->req_groups[s] = y;
    }
    if (x->q_len)
        rz__engine_queue_drop(e, x);   /* only stale entries can be left */
    free(x->q);
    free(x->why);
    free(x->json);
    rz_reqs_free(x->reqs);
    free(x);
}

static int reqs_take(rz_engine *e, rz__ejob *j, char *text)
{
    int rc = RZ_OK;
    rz__req_group *x = reqs_intern(e, text, &rc);
    if (!x)
        return rc;
    /* After interning: `text` may have come from the old group. */
    rz__engine_reqs_release(e, j->req_group);
    j->req_group = x;
    j->reqs_json = x->json;
    j->reqs = x->reqs;
    return RZ_OK;
}

/* The common cases without a JSON round trip (a submission's hot path):
 * requirements kept as stored, or without a max_cost_micros of their own,
 * which is then written in front. REQS_SLOW: take the general path (it
 * also words the error of text the fast one could not parse). */
#define REQS_SLOW 1
static int reqs_fast(rz_engine *e, rz__ejob *j, const char *json,
                     uint64_t max_cost)
{
    const char *p = json ? json : "";
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    if (*p != '{' || strstr(p, "max_cost_cents") ||
        (max_cost != UINT64_MAX && strstr(p, "max_cost_micros")))
        return REQS_SLOW;
    char *text;
    if (max_cost == UINT64_MAX) {
        text = rz__strdup(p);
    } else {
        const char *rest = p + 1;
        while (*rest == ' ' || *rest == '\t' || *rest == '\n' || *rest == '\r')
            rest++;
        text = rz__asprintf("{\"max_cost_micros\":%llu%s%s",
                            (unsigned long long)max_cost, *rest == '}' ? "" : ",",
                            rest);
    }
    if (!text)
        return no_memory();
    return reqs_take(e, j, text) == RZ_OK ? RZ_OK : REQS_SLOW;
}

/* max_cost_cents (accepted for one release, and in jobs stored before
 * micro-dollars) becomes max_cost_micros, exactly. A bad value or both
 * keys are left for the parser to refuse. */
static void cents_to_micros(cJSON *doc)
{
    cJSON *c = cJSON_GetObjectItemCaseSensitive(doc, "max_cost_cents");
    if (!cJSON_IsNumber(c) || c->valuedouble < 0 ||
        c->valuedouble != (double)(uint64_t)c->valuedouble ||
        c->valuedouble > (double)((UINT64_C(1) << 53) / 10000) ||
        cJSON_GetObjectItemCaseSensitive(doc, "max_cost_micros"))
        return;
    double micros = c->valuedouble * 10000;
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "max_cost_cents");
    cJSON_AddNumberToObject(doc, "max_cost_micros", micros);
}

/* The requirements of a job, with max_cost_micros lowered to `max_cost`
 * (UINT64_MAX: as stored). */
int rz__engine_reqs_set(rz_engine *e, rz__ejob *j, const char *json,
                        uint64_t max_cost)
{
    int frc = reqs_fast(e, j, json, max_cost);
    if (frc != REQS_SLOW)
        return frc;
    cJSON *doc = json && *json ? cJSON_Parse(json) : cJSON_CreateObject();
    if (!doc || !cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return rz__error(json && *json ? RZ_EINVALID : RZ_ENOMEM,
                         "requirements must be a JSON object");
    }
    cents_to_micros(doc);
    if (max_cost != UINT64_MAX) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(doc, "max_cost_micros");
        if (!cJSON_IsNumber(m) || m->valuedouble < 0 ||
            m->valuedouble > (double)max_cost) {
            cJSON_DeleteItemFromObjectCaseSensitive(doc, "max_cost_micros");
            cJSON_AddNumberToObject(doc, "max_cost_micros", (double)max_cost);
        }
    }
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text)
        return no_memory();
    return reqs_take(e, j, text);
}

/* Linking: each step's upstream set from `needs`, connections and
 * ${{ steps.X... }} references, in O(V + E): edges are bucketed by source
 * (counting sort), so walking sources in order yields every deps list
 * already sorted, and a last-seen mark per target drops duplicates. */
#include <stdlib.h>
#include <string.h>

#include "flow/loader.h"

typedef struct edge {
    size_t src, dst;
} edge;

typedef struct edges {
    edge *v;
    size_t n, cap;
    bool failed;
} edges;

static void add(edges *es, size_t src, size_t dst)
{
    if (src == RZ_NPOS || dst == RZ_NPOS)
        return;
    edge *v = rz__grow(es->v, &es->cap, es->n + 1, sizeof *v, 64);
    if (!v) {
        es->failed = true;
        return;
    }
    es->v = v;
    es->v[es->n++] = (edge){src, dst};
}

static void refs_of_text(const rz_flow *f, edges *es, const char *text,
                         bool condition, size_t dst)
{
    /* Plain strings are the common case; skip the parser for them. */
    if (!condition && !strstr(text, "${{"))
        return;
    rz__expr *e;
    if (rz__expr_parse(&e, text, condition, NULL, 0, NULL) != RZ_OK)
        return;   /* the validator reports malformed expressions */
    for (size_t i = 0; i < rz__expr_ref_count(e); i++) {
        const rz__ref *r = rz__expr_ref(e, i);
        if (r->kind == RZ_REF_STEP)
            add(es, rz__map_get(&f->index, r->name), dst);
    }
    rz__expr_free(e);
}

static void refs_of_value(const rz_flow *f, edges *es, const cJSON *v, size_t dst)
{
    if (cJSON_IsString(v)) {
        refs_of_text(f, es, v->valuestring, false, dst);
        return;
    }
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next)
        refs_of_value(f, es, c, dst);
}

static void collect(rz_flow *f, edges *es)
{
    for (size_t i = 0; i < f->n_steps; i++) {
        const rz__step *s = &f->steps[i];
        for (size_t j = 0; j < s->n_needs; j++)
            add(es, rz__map_get(&f->index, s->needs[j]), i);
        for (size_t j = 0; j < s->n_inputs; j++)
            refs_of_value(f, es, s->inputs[j].value, i);
        if (s->when)
            refs_of_text(f, es, s->when, true, i);
        if (s->for_each)
            refs_of_value(f, es, s->for_each, i);
        if (s->on_step)   /* an event's listener waits for its source */
            add(es, rz__map_get(&f->index, s->on_step), i);
        if (s->is_exit)   /* it runs after every other step */
            for (size_t j = 0; j < f->n_steps; j++)
                if (!f->steps[j].is_exit)
                    add(es, j, i);
    }
    for (size_t i = 0; i < f->n_conns; i++) {
        rz__conn *c = &f->conns[i];
        c->src = c->src_node ? rz__map_get(&f->index, c->src_node) : RZ_NPOS;
        c->dst = c->dst_node ? rz__map_get(&f->index, c->dst_node) : RZ_NPOS;
        add(es, c->src, c->dst);
    }
}

int rz__flow_link(rz_flow *f)
{
    if (!f)
        return rz__error(RZ_EINVAL, "rz__flow_link: NULL flow");
    if (f->linked)
        return RZ_OK;
    size_t n = f->n_steps;
    edges es = {0};
    collect(f, &es);
    size_t *start = rz__calloc(n + 1, sizeof *start);
    size_t *last = rz__malloc((n ? n : 1) * sizeof *last);
    edge *sorted = rz__malloc((es.n ? es.n : 1) * sizeof *sorted);
    if (es.failed || !start || !last || !sorted) {
        free(es.v);
        free(start);
        free(last);
        free(sorted);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    /* Counting sort by source. */
    for (size_t i = 0; i < es.n; i++)
        start[es.v[i].src + 1]++;
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    for (size_t i = 0; i < es.n; i++)
        sorted[start[es.v[i].src]++] = es.v[i];
    free(es.v);
    /* `sorted` is now grouped by source, sources ascending. Count, then
     * fill; last[dst] holds the source last added to dst (+1, 0 = none). */
    for (size_t i = 0; i < n; i++) {
        f->steps[i].n_deps = 0;
        last[i] = 0;
    }
    for (size_t i = 0; i < es.n; i++) {
        edge e = sorted[i];
        if (last[e.dst] != e.src + 1) {
            last[e.dst] = e.src + 1;
            f->steps[e.dst].n_deps++;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += f->steps[i].n_deps;
    size_t *pool = rz__arena_alloc(RZ_FLOW_ARENA(f), (total ? total : 1) * sizeof *pool);
    if (!pool) {
        free(start);
        free(last);
        free(sorted);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        f->steps[i].deps = pool;
        pool += f->steps[i].n_deps;
        f->steps[i].n_deps = 0;
        last[i] = 0;
    }
    for (size_t i = 0; i < es.n; i++) {
        edge e = sorted[i];
        if (last[e.dst] != e.src + 1) {
            last[e.dst] = e.src + 1;
            rz__step *d = &f->steps[e.dst];
            d->deps[d->n_deps++] = e.src;
        }
    }
    free(start);
    free(last);
    free(sorted);
    f->linked = true;
    return RZ_OK;
}

/* Execution plans: Kahn's algorithm over step dependencies, in CSR arrays.
 *
 * Everything is a handful of flat arrays sized by the step and edge counts;
 * nothing is allocated per step, nothing recurses, so a 1M-step chain plans
 * as easily as a diamond. The one super-linear part is ordering steps by id
 * (a single O(V log V) sort up front); every stage is then filled in id order
 * by a counting pass over that global rank. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow/model.h"
#include "module/module_impl.h"
#include "rhizos/plan.h"

struct rz_plan {
    const rz_flow *flow;
    size_t n;            /* steps */
    size_t n_stages;
    size_t *order;       /* n step indices, stage by stage, each stage by id */
    size_t *stage_off;   /* n_stages + 1 offsets into order */
    size_t *crit;        /* critical path, upstream first */
    size_t crit_len;
    double crit_seconds;
};

/* Scratch arrays used while building; freed before rz_plan_build returns. */
typedef struct work {
    size_t *rank;        /* step -> position in id order */
    size_t *succ_off;    /* n + 1: CSR offsets of dependants */
    size_t *succ;        /* dependants, by upstream step */
    size_t *indeg;       /* remaining unplanned deps */
    size_t *level;       /* stage of each step */
    size_t *topo;        /* steps in the order Kahn removed them */
} work;

typedef struct id_key {
    const char *id;
    size_t idx;
} id_key;

static int cmp_id_key(const void *a, const void *b)
{
    const id_key *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void work_free(work *w)
{
    free(w->rank);
    free(w->succ_off);
    free(w->succ);
    free(w->indeg);
    free(w->level);
    free(w->topo);
}

static size_t edge_count(const rz_flow *f)
{
    size_t e = 0;
    for (size_t i = 0; i < f->n_steps; i++)
        e += f->steps[i].n_deps;
    return e;
}

/* rank[i] = position of step i when all steps are sorted by id; ties (only
 * possible in unvalidated flows) fall back to document order. */
static int rank_by_id(const rz_flow *f, size_t *rank)
{
    size_t n = f->n_steps;
    id_key *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys)
        return RZ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        keys[i].id = f->steps[i].id ? f->steps[i].id : "";
        keys[i].idx = i;
    }
    qsort(keys, n, sizeof *keys, cmp_id_key);
    for (size_t r = 0; r < n; r++)
        rank[keys[r].idx] = r;
    free(keys);
    return RZ_OK;
}

/* Invert deps (upstream lists) into dependants in CSR form. */
static void build_succ(const rz_flow *f, work *w)
{
    size_t n = f->n_steps;
    memset(w->succ_off, 0, (n + 1) * sizeof *w->succ_off);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < f->steps[i].n_deps; k++)
            w->succ_off[f->steps[i].deps[k] + 1]++;
    for (size_t i = 0; i < n; i++)
        w->succ_off[i + 1] += w->succ_off[i];
    /* indeg doubles as the fill cursor here; reset below. */
    memcpy(w->indeg, w->succ_off, n * sizeof *w->indeg);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < f->steps[i].n_deps; k++)
            w->succ[w->indeg[f->steps[i].deps[k]]++] = i;
    for (size_t i = 0; i < n; i++)
        w->indeg[i] = f->steps[i].n_deps;
}

/* Kahn's algorithm, level by level. Returns how many steps were planned;
 * fewer than n means the rest sit on or behind a cycle. */
static size_t kahn(size_t n, work *w, size_t *n_levels)
{
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++)
        if (w->indeg[i] == 0) {
            w->level[i] = 0;
            w->topo[tail++] = i;
        }
    size_t levels = tail ? 1 : 0;
    while (head < tail) {
        size_t u = w->topo[head++];
        for (size_t k = w->succ_off[u]; k < w->succ_off[u + 1]; k++) {
            size_t v = w->succ[k];
            if (--w->indeg[v] == 0) {
                /* FIFO order means u is v's last-planned dep, hence the
                 * deepest: v goes one stage after it. */
                w->level[v] = w->level[u] + 1;
                if (w->level[v] + 1 > levels)
                    levels = w->level[v] + 1;
                w->topo[tail++] = v;
            }
        }
    }
    *n_levels = levels;
    return tail;
}

/* Counting sort of steps by stage, visiting steps in id order so that every
 * stage comes out sorted by id. */
static void fill_stages(rz_plan *p, const work *w)
{
    size_t n = p->n;
    memset(p->stage_off, 0, (p->n_stages + 1) * sizeof *p->stage_off);
    for (size_t i = 0; i < n; i++)
        p->stage_off[w->level[i] + 1]++;
    for (size_t s = 0; s < p->n_stages; s++)
        p->stage_off[s + 1] += p->stage_off[s];
    /* Scratch that has served its purpose is recycled: indeg as the stage
     * cursors (n_stages <= n), succ_off (n + 1 slots) as rank -> step. */
    size_t *cursor = w->indeg;
    memcpy(cursor, p->stage_off, p->n_stages * sizeof *cursor);
    size_t *by_rank = w->succ_off;
    for (size_t i = 0; i < n; i++)
        by_rank[w->rank[i]] = i;
    for (size_t r = 0; r < n; r++) {
        size_t i = by_rank[r];
        p->order[cursor[w->level[i]]++] = i;
    }
}

static double step_weight(const rz__step *s)
{
    double est = s->module ? s->module->estimate_seconds : 0;
    return est > 0 ? est : 1.0;
}

/* Longest path by weight over the topological order. Ties between equally
 * long chains go to the smaller id, both for a step's predecessor and for
 * the end of the path. */
static int critical_path(rz_plan *p, const work *w)
{
    size_t n = p->n;
    const rz__step *steps = p->flow->steps;
    double *dist = malloc((n ? n : 1) * sizeof *dist);
    size_t *pred = malloc((n ? n : 1) * sizeof *pred);
    if (!dist || !pred) {
        free(dist);
        free(pred);
        return RZ_ENOMEM;
    }
    size_t end = RZ_NPOS;
    for (size_t t = 0; t < n; t++) {
        size_t v = w->topo[t];
        const rz__step *s = &steps[v];
        size_t best = RZ_NPOS;
        for (size_t k = 0; k < s->n_deps; k++) {
            size_t u = s->deps[k];
            if (best == RZ_NPOS || dist[u] > dist[best] ||
                (dist[u] == dist[best] && w->rank[u] < w->rank[best]))
                best = u;
        }
        pred[v] = best;
        dist[v] = step_weight(s) + (best == RZ_NPOS ? 0 : dist[best]);
        if (end == RZ_NPOS || dist[v] > dist[end] ||
            (dist[v] == dist[end] && w->rank[v] < w->rank[end]))
            end = v;
    }
    size_t len = 0;
    for (size_t v = end; v != RZ_NPOS; v = pred[v])
        len++;
    p->crit = malloc((len ? len : 1) * sizeof *p->crit);
    if (!p->crit) {
        free(dist);
        free(pred);
        return RZ_ENOMEM;
    }
    size_t i = len;
    for (size_t v = end; v != RZ_NPOS; v = pred[v])
        p->crit[--i] = v;
    p->crit_len = len;
    p->crit_seconds = end == RZ_NPOS ? 0 : dist[end];
    free(dist);
    free(pred);
    return RZ_OK;
}

/* ---- Cycles ---------------------------------------------------------------
 * Every unplanned step has an unplanned dep (its in-degree never reached
 * zero), so walking unplanned deps from any of them must loop. Walks are
 * coloured (0 new, 1 on this walk, 2 finished) so each step is visited once
 * and every disjoint cycle is reported once. */

#define CYCLE_TEXT_MAX 800

static void describe_cycle(const rz_flow *f, const size_t *cyc, size_t len,
                           rz__buf *b)
{
    for (size_t i = 0; i < len; i++) {
        if (b->len > CYCLE_TEXT_MAX && i + 1 < len) {
            /* The diagnostic line has to stay readable. */
            rz__buf_printf(b, " -> ... (%zu more) ... -> %s", len - i - 1,
                           f->steps[cyc[len - 1]].id);
            break;
        }
        rz__buf_printf(b, "%s%s", i ? " -> " : "", f->steps[cyc[i]].id);
    }
    rz__buf_printf(b, " -> %s", f->steps[cyc[0]].id);
}

/* The cycle is path[from..len) in upstream-walk order; report it downstream
 * first, starting at its earliest step in the document. */
static int report_cycle(const rz_flow *f, rz_diags *diags, size_t *path,
                        size_t from, size_t len)
{
    size_t *cyc = path + from, m = len - from;
    for (size_t i = 0; i < m / 2; i++) {
        size_t t = cyc[i];
        cyc[i] = cyc[m - 1 - i];
        cyc[m - 1 - i] = t;
    }
    size_t first = 0;
    for (size_t i = 1; i < m; i++)
        if (cyc[i] < cyc[first])
            first = i;
    size_t *rot = malloc(m * sizeof *rot);
    if (!rot)
        return RZ_ENOMEM;
    for (size_t i = 0; i < m; i++)
        rot[i] = cyc[(first + i) % m];
    rz__buf b = {0};
    describe_cycle(f, rot, m, &b);
    char *text = rz__buf_take(&b);
    const char *ptr = f->steps[rot[0]].ptr;
    free(rot);
    if (!text)
        return RZ_ENOMEM;
    rz__flow_diag(f, diags, RZ_ECYCLE, ptr, "cycle: %s", text);
    free(text);
    return RZ_OK;
}

static int first_open_dep(const rz__step *s, const unsigned char *color,
                          const work *w, size_t *out)
{
    for (size_t k = 0; k < s->n_deps; k++) {
        size_t u = s->deps[k];
        if (w->indeg[u] > 0 && color[u] != 2) {
            *out = u;
            return 1;
        }
    }
    return 0;
}

static int report_cycles(const rz_flow *f, rz_diags *diags, const work *w)
{
    size_t n = f->n_steps;
    unsigned char *color = calloc(n, 1);
    size_t *path = malloc(n * sizeof *path);
    size_t *pos = malloc(n * sizeof *pos);
    int rc = RZ_OK;
    if (!color || !path || !pos)
        rc = RZ_ENOMEM;
    for (size_t start = 0; rc == RZ_OK && start < n; start++) {
        if (w->indeg[start] == 0 || color[start])
            continue;
        size_t len = 0, v = start;
        for (;;) {
            color[v] = 1;
            pos[v] = len;
            path[len++] = v;
            size_t u;
            if (!first_open_dep(&f->steps[v], color, w, &u))
                break;   /* leads only into cycles already reported */
            if (color[u] == 1) {
                rc = report_cycle(f, diags, path, pos[u], len);
                break;
            }
            v = u;
        }
        for (size_t i = 0; i < len; i++)
            color[path[i]] = 2;
    }
    free(color);
    free(path);
    free(pos);
    return rc == RZ_OK ? RZ_ECYCLE : rc;
}

/* ---- Build ---------------------------------------------------------------- */

static int work_alloc(work *w, size_t n, size_t e)
{
    size_t n1 = n ? n : 1;
    w->rank = malloc(n1 * sizeof *w->rank);
    w->succ_off = malloc((n + 1) * sizeof *w->succ_off);
    w->succ = malloc((e ? e : 1) * sizeof *w->succ);
    w->indeg = malloc(n1 * sizeof *w->indeg);
    w->level = malloc(n1 * sizeof *w->level);
    w->topo = malloc(n1 * sizeof *w->topo);
    if (!w->rank || !w->succ_off || !w->succ || !w->indeg || !w->level ||
        !w->topo)
        return RZ_ENOMEM;
    return RZ_OK;
}

static int plan_fill(rz_plan *p, work *w, rz_diags *diags)
{
    const rz_flow *f = p->flow;
    size_t n = p->n;
    if (work_alloc(w, n, edge_count(f)) != RZ_OK)
        return RZ_ENOMEM;
    build_succ(f, w);
    if (kahn(n, w, &p->n_stages) < n)
        return report_cycles(f, diags, w);
    if (rank_by_id(f, w->rank) != RZ_OK)
        return RZ_ENOMEM;
    /* Critical path needs topo and rank; fill_stages then recycles scratch. */
    int rc = critical_path(p, w);
    if (rc != RZ_OK)
        return rc;
    p->order = malloc((n ? n : 1) * sizeof *p->order);
    p->stage_off = malloc((p->n_stages + 1) * sizeof *p->stage_off);
    if (!p->order || !p->stage_off)
        return RZ_ENOMEM;
    fill_stages(p, w);
    return RZ_OK;
}

int rz_plan_build(rz_plan **out, const rz_flow *flow, rz_diags *diags)
{
    *out = NULL;
    if (!flow)
        return rz__error(RZ_EINVAL, "rz_plan_build: flow is NULL");
    if (!flow->linked) {
        /* Linking only fills derived fields (deps); the flow is logically
         * unchanged, which is why the planner takes it const. */
        int rc = rz__flow_link((rz_flow *)flow);
        if (rc != RZ_OK)
            return rc;
    }
    rz_plan *p = calloc(1, sizeof *p);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    p->flow = flow;
    p->n = flow->n_steps;
    work w = {0};
    int rc = plan_fill(p, &w, diags);
    work_free(&w);
    if (rc != RZ_OK) {
        rz_plan_free(p);
        if (rc == RZ_ENOMEM)
            return rz__error(RZ_ENOMEM, "out of memory planning %zu steps",
                             flow->n_steps);
        return rc;   /* the cycle diagnostic already set the error */
    }
    *out = p;
    return RZ_OK;
}

void rz_plan_free(rz_plan *plan)
{
    if (!plan)
        return;
    free(plan->order);
    free(plan->stage_off);
    free(plan->crit);
    free(plan);
}

size_t rz_plan_stage_count(const rz_plan *plan)
{
    return plan ? plan->n_stages : 0;
}

size_t rz_plan_stage_size(const rz_plan *plan, size_t stage)
{
    if (!plan || stage >= plan->n_stages)
        return 0;
    return plan->stage_off[stage + 1] - plan->stage_off[stage];
}

size_t rz_plan_stage_step(const rz_plan *plan, size_t stage, size_t i)
{
    if (i >= rz_plan_stage_size(plan, stage))
        return RZ_NPOS;
    return plan->order[plan->stage_off[stage] + i];
}

const size_t *rz_plan_critical_path(const rz_plan *plan, size_t *len)
{
    if (len)
        *len = plan ? plan->crit_len : 0;
    return plan ? plan->crit : NULL;
}

double rz_plan_critical_seconds(const rz_plan *plan)
{
    return plan ? plan->crit_seconds : 0;
}

/* ---- JSON ----------------------------------------------------------------- */

static void json_string(rz__buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    rz__buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rz__buf_append(b, run, (size_t)(s - run));
        run = s + 1;
        switch (c) {
        case '"': rz__buf_puts(b, "\\\""); break;
        case '\\': rz__buf_puts(b, "\\\\"); break;
        case '\n': rz__buf_puts(b, "\\n"); break;
        case '\r': rz__buf_puts(b, "\\r"); break;
        case '\t': rz__buf_puts(b, "\\t"); break;
        default: {
            char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
            rz__buf_puts(b, esc);
        }
        }
    }
    rz__buf_append(b, run, (size_t)(s - run));
    rz__buf_puts(b, "\"");
}

/* Shortest text that reads back as the same double; integers without ".0". */
static void json_number(rz__buf *b, double v)
{
    if (!isfinite(v)) {
        rz__buf_puts(b, "null");
        return;
    }
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        rz__buf_printf(b, "%.0f", v);
        return;
    }
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof tmp, "%.17g", v);
    rz__buf_puts(b, tmp);
}

static const char *step_id(const rz_plan *p, size_t i)
{
    const char *id = p->flow->steps[i].id;
    return id ? id : "";
}

int rz_plan_to_json(const rz_plan *plan, char **out)
{
    *out = NULL;
    if (!plan)
        return rz__error(RZ_EINVAL, "rz_plan_to_json: plan is NULL");
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"stages\":[");
    for (size_t s = 0; s < plan->n_stages; s++) {
        rz__buf_puts(&b, s ? ",[" : "[");
        for (size_t k = plan->stage_off[s]; k < plan->stage_off[s + 1]; k++) {
            if (k > plan->stage_off[s])
                rz__buf_puts(&b, ",");
            json_string(&b, step_id(plan, plan->order[k]));
        }
        rz__buf_puts(&b, "]");
    }
    rz__buf_puts(&b, "],\"critical_path\":[");
    for (size_t i = 0; i < plan->crit_len; i++) {
        if (i)
            rz__buf_puts(&b, ",");
        json_string(&b, step_id(plan, plan->crit[i]));
    }
    rz__buf_puts(&b, "],\"critical_seconds\":");
    json_number(&b, plan->crit_seconds);
    rz__buf_printf(&b, ",\"steps\":%zu}", plan->n);
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

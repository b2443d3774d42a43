/* Execution plans: Kahn's algorithm over step dependencies, in CSR arrays.
 *
 * Everything is a handful of flat arrays sized by the step and edge counts;
 * nothing is allocated per step, nothing recurses, so a 1M-step chain plans
 * as easily as a diamond. Steps are ranked by id once, up front (a radix
 * sort on 8-byte prefixes; only ids sharing those fall back to strcmp), then
 * every stage is filled in id order by a counting pass over that rank, and
 * the critical path is relaxed during Kahn's own pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/graph.h"
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

/* What Kahn's pass touches per step, in one record: following an edge then
 * costs one cache miss, not one per array. 32-bit indices suffice: a step
 * takes more than a byte of a document capped at RZ_FLOW_MAX_BYTES. */
#define NONE UINT32_MAX
typedef struct node {
    double weight;       /* estimated seconds */
    double dist;         /* heaviest chain into the step, then through it */
    uint32_t rank;       /* position in id order */
    uint32_t indeg;      /* deps not planned yet */
    uint32_t level;      /* stage */
    uint32_t best;       /* heaviest dep so far (critical path), or NONE */
    uint32_t best_rank;  /* its rank, to break ties without a lookup */
} node;

/* Scratch used while building; freed before rz_plan_build returns. */
typedef struct work {
    node *nd;
    size_t *succ_off;    /* n + 1: CSR offsets of dependants */
    size_t *succ;        /* dependants, by upstream step */
    size_t *topo;        /* steps in the order Kahn removed them */
} work;

/* Ordering ids. strcmp over 100k scattered strings is dominated by cache
 * misses, so keys carry their first 8 bytes as a big-endian integer: a radix
 * sort on that settles nearly everything, and only runs of ids sharing all 8
 * bytes go to strcmp. */
typedef struct id_key {
    uint64_t prefix;     /* first 8 bytes, NUL-padded, big-endian */
    const char *id;
    size_t idx;
} id_key;

static uint64_t id_prefix(const char *s)
{
    uint64_t p = 0;
    size_t i = 0;
    for (; i < 8 && s[i]; i++)
        p = (p << 8) | (unsigned char)s[i];
    return i ? p << (8 * (8 - i)) : 0;
}

/* Only called on keys with equal prefixes that did not end within them. */
static int cmp_id_tail(const void *a, const void *b)
{
    const id_key *x = a, *y = b;
    int c = strcmp(x->id + 8, y->id + 8);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* LSD radix sort by prefix, one byte per pass; stable, so equal ids keep
 * document order. Returns whichever buffer holds the result. */
static id_key *radix_sort(id_key *a, id_key *tmp, size_t n)
{
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t i = 0; i < n; i++)
            count[((a[i].prefix >> shift) & 0xff) + 1]++;
        if (count[((a[0].prefix >> shift) & 0xff) + 1] == n)
            continue;   /* every key has this byte: nothing to do */
        for (size_t d = 0; d < 256; d++)
            count[d + 1] += count[d];
        for (size_t i = 0; i < n; i++)
            tmp[count[(a[i].prefix >> shift) & 0xff]++] = a[i];
        id_key *t = a;
        a = tmp;
        tmp = t;
    }
    return a;
}

static int rank_by_id(const rz_flow *f, node *nd)
{
    size_t n = f->n_steps;
    if (n == 0)
        return RZ_OK;
    id_key *keys = rz__malloc(2 * n * sizeof *keys);
    if (!keys)
        return RZ_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        keys[i].id = f->steps[i].id ? f->steps[i].id : "";
        keys[i].prefix = id_prefix(keys[i].id);
        keys[i].idx = i;
    }
    id_key *sorted = radix_sort(keys, keys + n, n);
    for (size_t r = 0; r < n;) {
        size_t end = r + 1;
        while (end < n && sorted[end].prefix == sorted[r].prefix)
            end++;
        /* A last prefix byte of 0 means the ids ended inside it: equal. */
        if (end - r > 1 && (sorted[r].prefix & 0xff))
            qsort(sorted + r, end - r, sizeof *sorted, cmp_id_tail);
        for (; r < end; r++)
            nd[sorted[r].idx].rank = (uint32_t)r;
    }
    free(keys);
    return RZ_OK;
}

static void work_free(work *w)
{
    free(w->nd);
    free(w->succ_off);
    free(w->succ);
    free(w->topo);
}

static size_t edge_count(const rz_flow *f)
{
    size_t e = 0;
    for (size_t i = 0; i < f->n_steps; i++)
        e += f->steps[i].n_deps;
    return e;
}

static double step_weight(const rz__step *s)
{
    double est = s->module ? s->module->estimate_seconds : 0;
    return est > 0 ? est : RZ_PLAN_DEFAULT_STEP_SECONDS;
}

/* Invert deps (upstream lists) into dependants in CSR form; note weights and
 * in-degrees on the way, while each step's record is at hand. */
static void build_succ(const rz_flow *f, work *w)
{
    size_t n = f->n_steps;
    memset(w->succ_off, 0, (n + 1) * sizeof *w->succ_off);
    for (size_t i = 0; i < n; i++) {
        const rz__step *s = &f->steps[i];
        w->nd[i].weight = step_weight(s);
        for (size_t k = 0; k < s->n_deps; k++)
            w->succ_off[s->deps[k] + 1]++;
    }
    for (size_t i = 0; i < n; i++)
        w->succ_off[i + 1] += w->succ_off[i];
    /* topo doubles as the fill cursor here. */
    size_t *cursor = w->topo;
    memcpy(cursor, w->succ_off, n * sizeof *cursor);
    for (size_t i = 0; i < n; i++) {
        const rz__step *s = &f->steps[i];
        w->nd[i].indeg = (uint32_t)s->n_deps;
        for (size_t k = 0; k < s->n_deps; k++)
            w->succ[cursor[s->deps[k]]++] = i;
    }
}

/* Kahn's algorithm, level by level, with the longest path relaxed along the
 * way: when a step is removed its chain is final and is pushed to its
 * dependants; equal chains go to the dep with the smaller id. Returns how
 * many steps were planned (fewer than n: the rest sit on or behind a cycle);
 * *end is where the critical path ends (ties again to the smaller id). */
static size_t kahn(size_t n, work *w, size_t *n_levels, size_t *end)
{
    node *nd = w->nd;
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < n; i++) {
        nd[i].best = NONE;
        nd[i].dist = 0;
        if (nd[i].indeg == 0) {
            nd[i].level = 0;
            w->topo[tail++] = i;
        }
    }
    size_t levels = tail ? 1 : 0, last = RZ_NPOS;
    while (head < tail) {
        size_t u = w->topo[head++];
        node *nu = &nd[u];
        double d = nu->weight + (nu->best == NONE ? 0 : nu->dist);
        nu->dist = d;
        if (last == RZ_NPOS || d > nd[last].dist ||
            (d == nd[last].dist && nu->rank < nd[last].rank))
            last = u;
        for (size_t k = w->succ_off[u]; k < w->succ_off[u + 1]; k++) {
            node *nv = &nd[w->succ[k]];
            if (nv->best == NONE || d > nv->dist ||
                (d == nv->dist && nu->rank < nv->best_rank)) {
                nv->best = (uint32_t)u;
                nv->best_rank = nu->rank;
                nv->dist = d;
            }
            if (--nv->indeg == 0) {
                /* FIFO order means u is v's last-planned dep, hence the
                 * deepest: v goes one stage after it. */
                nv->level = nu->level + 1;
                if (nv->level + 1 > levels)
                    levels = nv->level + 1;
                w->topo[tail++] = w->succ[k];
            }
        }
    }
    *n_levels = levels;
    *end = last;
    return tail;
}

/* Counting sort of steps by stage, visiting steps in id order so that every
 * stage comes out sorted by id. */
static void fill_stages(rz_plan *p, const work *w)
{
    size_t n = p->n;
    memset(p->stage_off, 0, (p->n_stages + 1) * sizeof *p->stage_off);
    for (size_t i = 0; i < n; i++)
        p->stage_off[w->nd[i].level + 1]++;
    for (size_t s = 0; s < p->n_stages; s++)
        p->stage_off[s + 1] += p->stage_off[s];
    /* Scratch that has served its purpose is recycled: succ_off as the
     * stage cursors (n_stages <= n), topo (n slots) as rank -> step. */
    size_t *cursor = w->succ_off;
    memcpy(cursor, p->stage_off, p->n_stages * sizeof *cursor);
    size_t *by_rank = w->topo;
    for (size_t i = 0; i < n; i++)
        by_rank[w->nd[i].rank] = i;
    for (size_t r = 0; r < n; r++) {
        size_t i = by_rank[r];
        p->order[cursor[w->nd[i].level]++] = i;
    }
}

static size_t next_best(const work *w, size_t v)
{
    return w->nd[v].best == NONE ? RZ_NPOS : w->nd[v].best;
}

/* Walk the heaviest-dep links back from the end of the critical path. */
static int critical_path(rz_plan *p, const work *w, size_t end)
{
    size_t len = 0;
    for (size_t v = end; v != RZ_NPOS; v = next_best(w, v))
        len++;
    p->crit = rz__malloc((len ? len : 1) * sizeof *p->crit);
    if (!p->crit)
        return RZ_ENOMEM;
    size_t i = len;
    for (size_t v = end; v != RZ_NPOS; v = next_best(w, v))
        p->crit[--i] = v;
    p->crit_len = len;
    p->crit_seconds = end == RZ_NPOS ? 0 : w->nd[end].dist;
    return RZ_OK;
}

/* ---- Cycles ---------------------------------------------------------------
 * Kahn left steps unplanned: every cycle is named by common/graph.c, the
 * finder and text rz_flow_validate uses too. */

typedef struct cycles {
    const rz_flow *f;
    rz_diags *diags;
    bool oom;
} cycles;

static const char *cycle_name(const void *ud, size_t i)
{
    const rz_flow *f = ud;
    return f->steps[i].id;
}

static void cycle_found(void *ud, const size_t *comp, size_t n_comp,
                        const size_t *cycle, size_t n_cycle)
{
    cycles *c = ud;
    rz__buf b = {0};
    rz__cycle_text(&b, cycle, n_cycle, cycle_name, c->f);
    if (b.failed)
        c->oom = true;
    else
        rz__flow_diag(c->f, c->diags, RZ_ECYCLE, c->f->steps[cycle[0]].ptr, "cycle: %s",
                      b.data);
    rz__buf_free(&b);
}

static int report_cycles(const rz_flow *f, rz_diags *diags)
{
    size_t n = f->n_steps, e = edge_count(f);
    size_t *off = rz__malloc((n + 1) * sizeof *off);
    size_t *dep = rz__malloc((e ? e : 1) * sizeof *dep);
    size_t *order = rz__malloc((n ? n : 1) * sizeof *order);
    cycles c = {f, diags, false};
    int rc = off && dep && order ? RZ_OK : RZ_ENOMEM;
    if (rc == RZ_OK) {
        off[0] = 0;
        for (size_t i = 0; i < n; i++) {
            const rz__step *s = &f->steps[i];
            memcpy(dep + off[i], s->deps, s->n_deps * sizeof *dep);
            off[i + 1] = off[i] + s->n_deps;
        }
        rz__graph g = {n, off, dep};
        rc = rz__graph_order(&g, order, cycle_found, &c);
    }
    free(off);
    free(dep);
    free(order);
    if (rc == RZ_OK && c.oom)
        rc = RZ_ENOMEM;
    return rc == RZ_OK ? RZ_ECYCLE : rc;
}

/* ---- Build ---------------------------------------------------------------- */

static int work_alloc(work *w, size_t n, size_t e)
{
    size_t n1 = n ? n : 1;
    w->nd = rz__malloc(n1 * sizeof *w->nd);
    w->succ_off = rz__malloc((n + 1) * sizeof *w->succ_off);
    w->succ = rz__malloc((e ? e : 1) * sizeof *w->succ);
    w->topo = rz__malloc(n1 * sizeof *w->topo);
    if (!w->nd || !w->succ_off || !w->succ || !w->topo)
        return RZ_ENOMEM;
    return RZ_OK;
}

static int plan_fill(rz_plan *p, work *w, rz_diags *diags)
{
    const rz_flow *f = p->flow;
    size_t n = p->n, end;
    if (work_alloc(w, n, edge_count(f)) != RZ_OK)
        return RZ_ENOMEM;
    /* Ranks first: the critical path breaks ties by id as Kahn goes. */
    if (rank_by_id(f, w->nd) != RZ_OK)
        return RZ_ENOMEM;
    build_succ(f, w);
    if (kahn(n, w, &p->n_stages, &end) < n)
        return report_cycles(f, diags);
    int rc = critical_path(p, w, end);
    if (rc != RZ_OK)
        return rc;
    p->order = rz__malloc((n ? n : 1) * sizeof *p->order);
    p->stage_off = rz__malloc((p->n_stages + 1) * sizeof *p->stage_off);
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
    if (flow->n_steps >= NONE)
        return rz__error(RZ_ETOOBIG, "%zu steps are more than a plan holds",
                         flow->n_steps);
    if (!flow->linked) {
        /* Linking only fills derived fields (deps); the flow is logically
         * unchanged, which is why the planner takes it const. */
        int rc = rz__flow_link((rz_flow *)flow);
        if (rc != RZ_OK)
            return rc;
    }
    rz_plan *p = rz__calloc(1, sizeof *p);
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
            rz__json_quote(&b, step_id(plan, plan->order[k]));
        }
        rz__buf_puts(&b, "]");
    }
    rz__buf_puts(&b, "],\"critical_path\":[");
    for (size_t i = 0; i < plan->crit_len; i++) {
        if (i)
            rz__buf_puts(&b, ",");
        rz__json_quote(&b, step_id(plan, plan->crit[i]));
    }
    rz__buf_puts(&b, "],\"critical_seconds\":");
    json_number(&b, plan->crit_seconds);
    rz__buf_printf(&b, ",\"steps\":%zu}", plan->n);
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

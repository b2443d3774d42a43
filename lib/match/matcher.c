/* The matcher: nodes with their free capacity, reservations, and one cached
 * candidate set per requirement group.
 *
 * A group (every job with the same requirement signature, as HTCondor's
 * autoclusters) holds the nodes that satisfy its static constraints, sorted
 * once by the policy, and a max segment tree over them whose leaf is 0 when
 * the node cannot take one more such job now, else a key: 1 (or 1 + how
 * full the node is, for binpack and spread), then the node's rank among
 * the candidates the policy's order tells apart, then whether it is
 * preferred (rz_matcher_prefer). Placing is a walk down that tree to the
 * leftmost best leaf: O(log n). A reservation or release changes one node,
 * and only that node's leaves in the groups that hold it are recomputed. */
#include <stdlib.h>
#include <string.h>

#include "match/match_impl.h"

#define UTIL_SCALE 1000000u
#define MAX_GROUPS 4096
#define NONE UINT32_MAX

typedef struct memb { uint32_t group, pos; } memb;

typedef struct mnode {
    rz_caps *caps;                     /* a clone, never changed */
    const rz_caps_info *info;          /* rz_caps_get(caps) */
    uint64_t feature_mask;             /* rz__caps_feature_mask */
    uint32_t cores_total, cores_used;
    uint64_t mem_total, mem_used, disk_total, disk_used;
    uint32_t jobs, max_jobs;           /* max_jobs 0: no limit */
    uint64_t gpu_free;                 /* bit i: GPU i is free */
    uint32_t n_gpus;
    bool removed;
    bool preferred;                    /* wins ties the policy leaves */
    memb *memb;                        /* the groups holding this node */
    uint32_t n_memb, cap_memb;
} mnode;

typedef struct group {
    char *sig;
    uint32_t cores, gpus;
    uint64_t mem, disk;
    uint32_t n, leaves;
    uint32_t *node;                    /* candidates in policy order */
    uint64_t *elig;                    /* GPUs of each that suit the job */
    unsigned __int128 *rate;           /* rate on each (rz__match_job_rate) */
    uint32_t *rank;                    /* n - class: equal for candidates
                                          the policy's order ties */
    uint64_t *tree;                    /* 2 x leaves; [1] is the root */
} group;

typedef struct resv {
    uint32_t node, gen, cores, next_free;
    uint64_t mem, disk, gpus;
    bool live;
} resv;

struct rz_matcher {
    rz_policy policy;
    mnode *nodes;
    size_t n_nodes, cap_nodes;
    rz__map ids;                       /* node id -> index */
    group *groups;
    size_t n_groups, cap_groups;
    rz__map sigs;                      /* signature -> group index */
    resv *res;
    size_t n_res, cap_res;
    uint32_t free_res;                 /* head of the free slot list */
    rz_matcher_stats stats;
};

/* ---- Lifetime ---- */

int rz_matcher_new(rz_matcher **out, rz_policy policy)
{
    *out = NULL;
    if ((unsigned)policy > RZ_POLICY_SPREAD)
        return rz__error(RZ_EINVAL, "unknown policy %d", (int)policy);
    rz_matcher *m = rz__calloc(1, sizeof *m);
    if (!m)
        return rz__error(RZ_ENOMEM, "out of memory");
    m->policy = policy;
    m->free_res = NONE;
    *out = m;
    return RZ_OK;
}

static void group_free(group *g)
{
    free(g->sig);
    free(g->node);
    free(g->elig);
    free(g->rate);
    free(g->rank);
    free(g->tree);
}

/* Forget every group (a node joined, or too many signatures seen). */
static void clear_groups(rz_matcher *m)
{
    for (size_t i = 0; i < m->n_groups; i++)
        group_free(&m->groups[i]);
    m->n_groups = 0;
    rz__map_free(&m->sigs);
    for (size_t i = 0; i < m->n_nodes; i++)
        m->nodes[i].n_memb = 0;
}

void rz_matcher_free(rz_matcher *m)
{
    if (!m)
        return;
    clear_groups(m);
    free(m->groups);
    for (size_t i = 0; i < m->n_nodes; i++) {
        rz_caps_free(m->nodes[i].caps);
        free(m->nodes[i].memb);
    }
    free(m->nodes);
    rz__map_free(&m->ids);
    free(m->res);
    free(m);
}

/* ---- Policies ---- */

static const char *const policy_names[] = {
    "cheapest", "fastest", "reputation", "binpack", "spread",
};

int rz_policy_parse(const char *name, rz_policy *out)
{
    for (size_t i = 0; name && i < RZ_ARRAY_LEN(policy_names); i++) {
        if (strcmp(name, policy_names[i]) == 0) {
            *out = (rz_policy)i;
            return RZ_OK;
        }
    }
    return rz__error(RZ_EINVAL, "unknown policy '%s' (cheapest, fastest, "
                     "reputation, binpack, spread)", name ? name : "");
}

const char *rz_policy_name(rz_policy p)
{
    return (unsigned)p < RZ_ARRAY_LEN(policy_names) ? policy_names[p] : "unknown";
}

/* ---- Nodes ---- */

/* Capacities and features of n from its caps; nothing used. */
static void node_fill(mnode *n)
{
    const rz_caps_info *c = n->info;
    n->cores_total = c->cores ? c->cores : c->threads;
    n->mem_total = c->memory_mb;
    n->disk_total = c->storage_free_gb;
    n->max_jobs = c->max_concurrent_jobs;
    n->n_gpus = (uint32_t)c->n_gpus;
    n->gpu_free = n->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << n->n_gpus) - 1;
    n->feature_mask = rz__caps_feature_mask(c);
}

int rz_matcher_add(rz_matcher *m, const rz_caps *node, size_t *index)
{
    if (!node || !*rz_caps_get(node)->id)
        return rz__error(RZ_EINVAL, "a node needs an id");
    if (m->n_nodes >= UINT32_MAX - 1)
        return rz__error(RZ_ETOOBIG, "too many nodes");
    if (rz__map_get(&m->ids, rz_caps_get(node)->id) != RZ_NPOS)
        return rz__error(RZ_EDUPLICATE, "node '%s' is already known",
                         rz_caps_get(node)->id);
    mnode *v = rz__grow(m->nodes, &m->cap_nodes, m->n_nodes + 1, sizeof *v, 64);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    m->nodes = v;
    mnode *n = &m->nodes[m->n_nodes];
    memset(n, 0, sizeof *n);
    if (rz_caps_clone(&n->caps, node) != RZ_OK)
        return RZ_ENOMEM;
    n->info = rz_caps_get(n->caps);
    if (rz__map_put(&m->ids, n->info->id, m->n_nodes) != RZ_OK) {
        rz_caps_free(n->caps);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    node_fill(n);
    if (index)
        *index = m->n_nodes;
    m->n_nodes++;
    clear_groups(m);   /* every cached candidate set may now be missing it */
    return RZ_OK;
}

int rz_matcher_readd(rz_matcher *m, const rz_caps *node, size_t *index)
{
    if (!node || !*rz_caps_get(node)->id)
        return rz__error(RZ_EINVAL, "a node needs an id");
    size_t i = rz__map_get(&m->ids, rz_caps_get(node)->id);
    if (i == RZ_NPOS)
        return rz__error(RZ_ENOENT, "no node '%s'", rz_caps_get(node)->id);
    mnode *n = &m->nodes[i];
    uint64_t all = n->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << n->n_gpus) - 1;
    if (!n->removed || n->jobs || n->cores_used || n->mem_used || n->disk_used ||
        n->gpu_free != all)
        return rz__error(RZ_ESTATE, "node '%s' is %s", n->info->id,
                         n->removed ? "still holding reservations" : "in placement");
    rz_caps *c = NULL;
    if (rz_caps_clone(&c, node) != RZ_OK)
        return rz__error(RZ_ENOMEM, "out of memory");
    (void)!rz__map_rekey(&m->ids, rz_caps_get(c)->id);   /* found above */
    rz_caps_free(n->caps);
    n->caps = c;
    n->info = rz_caps_get(c);
    node_fill(n);
    n->removed = false;
    n->preferred = false;
    if (index)
        *index = i;
    clear_groups(m);   /* its candidate sets changed with its caps */
    return RZ_OK;
}

size_t rz_matcher_count(const rz_matcher *m)
{
    return m->n_nodes;
}

const char *rz_matcher_node_id(const rz_matcher *m, size_t index)
{
    return index < m->n_nodes ? m->nodes[index].info->id : NULL;
}

int rz_matcher_usage(const rz_matcher *m, size_t index, rz_node_usage *out)
{
    if (index >= m->n_nodes)
        return rz__error(RZ_ENOENT, "no node %zu", index);
    const mnode *n = &m->nodes[index];
    out->cores_used = n->cores_used;
    out->cores_total = n->cores_total;
    out->memory_used_mb = n->mem_used;
    out->memory_total_mb = n->mem_total;
    out->storage_used_gb = n->disk_used;
    out->storage_total_gb = n->disk_total;
    out->gpus_total = n->n_gpus;
    uint64_t all = n->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << n->n_gpus) - 1;
    out->gpus_used = (uint32_t)__builtin_popcountll(all & ~n->gpu_free);
    out->jobs = n->jobs;
    return RZ_OK;
}

void rz_matcher_stats_get(const rz_matcher *m, rz_matcher_stats *out)
{
    *out = m->stats;
    out->groups = m->n_groups;
}

/* ---- Keys and the tree ---- */

/* The node's fullest resource, 0..UTIL_SCALE. */
static uint32_t util(const mnode *n)
{
    uint64_t u = 0, v;
    if (n->cores_total && (v = (uint64_t)n->cores_used * UTIL_SCALE / n->cores_total) > u)
        u = v;
    if (n->mem_total && (v = (uint64_t)((unsigned __int128)n->mem_used * UTIL_SCALE /
                                        n->mem_total)) > u)
        u = v;
    if (n->n_gpus) {
        uint64_t all = n->n_gpus >= 64 ? UINT64_MAX : (UINT64_C(1) << n->n_gpus) - 1;
        uint32_t used = (uint32_t)__builtin_popcountll(all & ~n->gpu_free);
        if ((v = (uint64_t)used * UTIL_SCALE / n->n_gpus) > u)
            u = v;
    }
    return (uint32_t)(u > UTIL_SCALE ? UTIL_SCALE : u);
}

static bool fits_now(const mnode *n, const group *g, uint64_t elig)
{
    return !n->removed && n->cores_total - n->cores_used >= g->cores &&
           n->mem_total - n->mem_used >= g->mem &&
           n->disk_total - n->disk_used >= g->disk &&
           (!n->max_jobs || n->jobs < n->max_jobs) &&
           (uint32_t)__builtin_popcountll(n->gpu_free & elig) >= g->gpus;
}

/* 0: it cannot take the job now. Else, from the top bits down: the
 * policy's key (< 2^20), the rank (< 2^32), preferred. Candidates are in
 * policy order, so without a preferred node the leftmost best leaf is the
 * one a key of the policy's alone would give. */
static uint64_t key_of(const rz_matcher *m, const mnode *n, const group *g, uint32_t pos)
{
    if (!fits_now(n, g, g->elig[pos]))
        return 0;
    uint64_t k = 1;
    if (m->policy == RZ_POLICY_BINPACK)
        k = 1 + util(n);
    else if (m->policy == RZ_POLICY_SPREAD)
        k = 1 + UTIL_SCALE - util(n);
    return k << 33 | (uint64_t)g->rank[pos] << 1 | n->preferred;
}

static void tree_set(group *g, uint32_t pos, uint64_t key)
{
    uint64_t *t = g->tree;
    size_t i = g->leaves + pos;
    t[i] = key;
    for (i >>= 1; i; i >>= 1) {
        uint64_t v = t[2 * i] > t[2 * i + 1] ? t[2 * i] : t[2 * i + 1];
        if (t[i] == v)
            break;   /* nothing above changes */
        t[i] = v;
    }
}

/* The leftmost leaf holding the largest key, or NONE when all are 0. */
static uint32_t tree_best(const group *g)
{
    const uint64_t *t = g->tree;
    if (!t[1])
        return NONE;
    size_t i = 1;
    while (i < g->leaves)
        i = t[2 * i] == t[i] ? 2 * i : 2 * i + 1;
    return (uint32_t)(i - g->leaves);
}

/* Recompute one node's leaf in every group that holds it. */
static void refresh(rz_matcher *m, uint32_t ni)
{
    mnode *n = &m->nodes[ni];
    for (uint32_t k = 0; k < n->n_memb; k++) {
        group *g = &m->groups[n->memb[k].group];
        uint32_t pos = n->memb[k].pos;
        tree_set(g, pos, key_of(m, n, g, pos));
    }
}

/* ---- Building a group ---- */

typedef struct cand {
    uint32_t node;
    uint64_t elig;
    unsigned __int128 rate;
    double rep, speed;
    rz_policy policy;
} cand;

static int cmp_rate(const cand *a, const cand *b)
{
    if (a->rate != b->rate)
        return a->rate < b->rate ? -1 : 1;
    if (a->rep != b->rep)
        return a->rep > b->rep ? -1 : 1;
    return a->node < b->node ? -1 : a->node > b->node;
}

static int cmp_cand(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    if (a->policy == RZ_POLICY_FASTEST && a->speed != b->speed)
        return a->speed > b->speed ? -1 : 1;
    if (a->policy == RZ_POLICY_REPUTATION && a->rep != b->rep)
        return a->rep > b->rep ? -1 : 1;
    return cmp_rate(a, b);
}

/* Does the policy's order tell a and b apart by more than the node? */
static bool cand_differ(const cand *a, const cand *b)
{
    cand x = *b;
    x.node = a->node;
    return cmp_cand(a, &x) != 0;
}

/* GPU jobs: the best compute capability among the suitable GPUs; CPU jobs:
 * the benchmark (0 when the node never ran one). */
static double speed_of(const rz_caps_info *c, const rz_reqs_info *q, uint64_t elig)
{
    if (!q->gpu_count)
        return c->bench_cpu_mops;
    double best = 0;
    for (uint32_t i = 0; i < c->n_gpus; i++)
        if (elig >> i & 1u) {
            double s = c->gpus[i].cc_major * 1000.0 + c->gpus[i].cc_minor;
            best = s > best ? s : best;
        }
    return best;
}

/* Does the node, entirely free, hold the job? Sets the suitable GPUs. */
static bool static_fit(const mnode *n, const rz_reqs *r, uint64_t *elig)
{
    const rz_reqs_info *q = &r->info;
    const rz_caps_info *c = n->info;
    if (n->removed || n->cores_total < q->cpu_cores || n->mem_total < q->memory_mb ||
        n->disk_total < q->storage_gb || n->n_gpus < q->gpu_count)
        return false;
    uint64_t e = 0;
    if (q->gpu_count)
        for (uint32_t i = 0; i < c->n_gpus; i++)
            if (rz__gpu_ok(&c->gpus[i], q))
                e |= UINT64_C(1) << i;
    *elig = e;
    /* The string comparisons last: most nodes fail on numbers first. */
    return (uint32_t)__builtin_popcountll(e) >= q->gpu_count &&
           rz__match_static(n->caps, n->feature_mask, r);
}

static int add_memb(mnode *n, uint32_t gi, uint32_t pos)
{
    if (n->n_memb == n->cap_memb) {
        uint32_t cap = n->cap_memb ? n->cap_memb * 2 : 8;
        memb *v = rz__realloc(n->memb, cap * sizeof *v);
        if (!v)
            return rz__error(RZ_ENOMEM, "out of memory");
        n->memb = v;
        n->cap_memb = cap;
    }
    n->memb[n->n_memb++] = (memb){ gi, pos };
    return RZ_OK;
}

static int group_fill(rz_matcher *m, group *g, const cand *cs, uint32_t gi,
                      const rz_reqs *r)
{
    g->leaves = 1;
    while (g->leaves < g->n)
        g->leaves *= 2;
    size_t n = g->n ? g->n : 1;
    g->node = rz__malloc(n * sizeof *g->node);
    g->elig = rz__malloc(n * sizeof *g->elig);
    g->rate = rz__malloc(n * sizeof *g->rate);
    g->rank = rz__malloc(n * sizeof *g->rank);
    g->tree = rz__calloc(2 * (size_t)g->leaves, sizeof *g->tree);
    if (!g->node || !g->elig || !g->rate || !g->rank || !g->tree)
        return rz__error(RZ_ENOMEM, "out of memory");
    uint32_t rank = g->n;
    for (uint32_t p = 0; p < g->n; p++) {
        if (p && cand_differ(&cs[p - 1], &cs[p]))
            rank--;
        g->node[p] = cs[p].node;
        g->elig[p] = cs[p].elig;
        g->rate[p] = cs[p].rate;
        g->rank[p] = rank;
        g->tree[g->leaves + p] = key_of(m, &m->nodes[cs[p].node], g, p);
        if (add_memb(&m->nodes[cs[p].node], gi, p) != RZ_OK)
            return RZ_ENOMEM;
    }
    for (size_t i = g->leaves - 1; i >= 1; i--)
        g->tree[i] = g->tree[2 * i] > g->tree[2 * i + 1] ? g->tree[2 * i] : g->tree[2 * i + 1];
    return RZ_OK;
}

static int collect(const rz_matcher *m, const rz_reqs *r, cand **out, uint32_t *count)
{
    cand *cs = rz__malloc((m->n_nodes ? m->n_nodes : 1) * sizeof *cs);
    if (!cs)
        return rz__error(RZ_ENOMEM, "out of memory");
    uint32_t k = 0;
    for (uint32_t i = 0; i < m->n_nodes; i++) {
        uint64_t elig = 0;
        if (!static_fit(&m->nodes[i], r, &elig))
            continue;
        const rz_caps_info *c = m->nodes[i].info;
        cs[k++] = (cand){ i, elig, rz__match_job_rate(m->nodes[i].caps, r), c->reputation,
                          speed_of(c, &r->info, elig), m->policy };
    }
    qsort(cs, k, sizeof *cs, cmp_cand);
    *out = cs;
    *count = k;
    return RZ_OK;
}

static int group_build(rz_matcher *m, const rz_reqs *r, size_t *out)
{
    if (m->n_groups >= MAX_GROUPS)
        clear_groups(m);
    group *v = rz__grow(m->groups, &m->cap_groups, m->n_groups + 1, sizeof *v, 16);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    m->groups = v;
    cand *cs = NULL;
    uint32_t n = 0;
    int rc = collect(m, r, &cs, &n);
    if (rc != RZ_OK)
        return rc;
    uint32_t gi = (uint32_t)m->n_groups;
    group *g = &m->groups[gi];
    memset(g, 0, sizeof *g);
    g->cores = r->info.cpu_cores;
    g->gpus = r->info.gpu_count;
    g->mem = r->info.memory_mb;
    g->disk = r->info.storage_gb;
    g->n = n;
    g->sig = rz__strdup(r->sig);
    rc = g->sig ? group_fill(m, g, cs, gi, r) : rz__error(RZ_ENOMEM, "out of memory");
    free(cs);
    if (rc == RZ_OK && rz__map_put(&m->sigs, g->sig, gi) != RZ_OK)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc != RZ_OK) {
        /* Memberships may point at this group: start over cleanly. */
        m->n_groups++;
        clear_groups(m);
        return rc;
    }
    m->n_groups++;
    m->stats.cache_builds++;
    *out = gi;
    return RZ_OK;
}

/* ---- Reservations ---- */

static int resv_alloc(rz_matcher *m, uint32_t *slot)
{
    if (m->free_res != NONE) {
        *slot = m->free_res;
        m->free_res = m->res[*slot].next_free;
        return RZ_OK;
    }
    if (m->n_res >= UINT32_MAX - 1)
        return rz__error(RZ_ETOOBIG, "too many reservations");
    resv *v = rz__grow(m->res, &m->cap_res, m->n_res + 1, sizeof *v, 256);
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    m->res = v;
    m->res[m->n_res].gen = 0;
    *slot = (uint32_t)m->n_res++;
    return RZ_OK;
}

/* The lowest-numbered `count` GPUs of `mask`. */
static uint64_t take_gpus(uint64_t mask, uint32_t count)
{
    uint64_t out = 0;
    for (uint32_t i = 0; i < count && mask; i++) {
        uint64_t low = mask & (~mask + 1);
        out |= low;
        mask &= mask - 1;
    }
    return out;
}

/* The hot path says only which kind of failure it is; the per-constraint
 * explanation is O(nodes) and comes from rz_matcher_explain(). */
static int fail(rz_matcher *m, const group *g)
{
    m->stats.failures++;
    if (g->n == 0)
        return rz__error(RZ_ENOENT, "no node meets the job's requirements");
    return rz__error(RZ_ENOENT, "all %u nodes that meet the job's requirements are busy",
                     g->n);
}

int rz_matcher_place(rz_matcher *m, const rz_reqs *r, rz_placement *out)
{
    memset(out, 0, sizeof *out);
    size_t gi = rz__map_get(&m->sigs, r->sig);
    if (gi == RZ_NPOS) {
        int rc = group_build(m, r, &gi);
        if (rc != RZ_OK)
            return rc;
    } else {
        m->stats.cache_hits++;
    }
    group *g = &m->groups[gi];
    uint32_t pos = tree_best(g);
    if (pos == NONE)
        return fail(m, g);
    uint32_t slot = 0;
    if (resv_alloc(m, &slot) != RZ_OK)
        return RZ_ENOMEM;
    uint32_t ni = g->node[pos];
    mnode *n = &m->nodes[ni];
    resv *v = &m->res[slot];
    v->node = ni;
    v->cores = g->cores;
    v->mem = g->mem;
    v->disk = g->disk;
    v->gpus = take_gpus(n->gpu_free & g->elig[pos], g->gpus);
    v->live = true;
    n->cores_used += v->cores;
    n->mem_used += v->mem;
    n->disk_used += v->disk;
    n->gpu_free &= ~v->gpus;
    n->jobs++;
    out->node = ni;
    out->node_id = n->info->id;
    out->cost_micros = rz__match_job_cost(g->rate[pos], r);
    out->ticket = ((uint64_t)v->gen << 32) | (slot + 1);
    refresh(m, ni);   /* last: may touch every group */
    m->stats.placements++;
    return RZ_OK;
}

int rz_matcher_release(rz_matcher *m, uint64_t ticket)
{
    uint64_t low = ticket & 0xffffffffu;
    uint32_t gen = (uint32_t)(ticket >> 32);
    if (low == 0 || low > m->n_res || !m->res[low - 1].live || m->res[low - 1].gen != gen)
        return rz__error(RZ_ENOENT, "no reservation with ticket %llu",
                         (unsigned long long)ticket);
    uint32_t slot = (uint32_t)(low - 1);
    resv *v = &m->res[slot];
    mnode *n = &m->nodes[v->node];
    n->cores_used -= v->cores;
    n->mem_used -= v->mem;
    n->disk_used -= v->disk;
    n->gpu_free |= v->gpus;
    n->jobs--;
    v->live = false;
    v->gen++;
    v->next_free = m->free_res;
    m->free_res = slot;
    refresh(m, v->node);
    m->stats.releases++;
    return RZ_OK;
}

int rz_matcher_prefer(rz_matcher *m, size_t index, int preferred)
{
    if (index >= m->n_nodes)
        return rz__error(RZ_ENOENT, "no node %zu", index);
    mnode *n = &m->nodes[index];
    if (n->preferred != (preferred != 0)) {
        n->preferred = preferred != 0;
        refresh(m, (uint32_t)index);
    }
    return RZ_OK;
}

int rz_matcher_set_trust(rz_matcher *m, size_t index, double reputation,
                         uint32_t unverified)
{
    if (index >= m->n_nodes)
        return rz__error(RZ_ENOENT, "no node at index %zu", index);
    const rz_caps_info *c = m->nodes[index].info;
    if (c->reputation == reputation && c->unverified == unverified)
        return RZ_OK;
    int rc = rz_caps_set_trust(m->nodes[index].caps, reputation, unverified);
    if (rc == RZ_OK)
        clear_groups(m);   /* eligibility and order may both have changed */
    return rc;
}

int rz_matcher_remove(rz_matcher *m, const char *node_id)
{
    size_t i = node_id ? rz__map_get(&m->ids, node_id) : RZ_NPOS;
    if (i == RZ_NPOS)
        return rz__error(RZ_ENOENT, "no node '%s'", node_id ? node_id : "");
    m->nodes[i].removed = true;
    refresh(m, (uint32_t)i);
    return RZ_OK;
}

/* ---- Read access for explain.c ---- */

int rz__matcher_view(const rz_matcher *m, size_t i, rz__mview *out)
{
    if (i >= m->n_nodes)
        return RZ_ENOENT;
    const mnode *n = &m->nodes[i];
    out->caps = n->caps;
    out->cores_free = n->cores_total - n->cores_used;
    out->mem_free = n->mem_total - n->mem_used;
    out->disk_free = n->disk_total - n->disk_used;
    out->gpu_free = n->gpu_free;
    out->slots_full = n->max_jobs && n->jobs >= n->max_jobs;
    out->removed = n->removed;
    return RZ_OK;
}

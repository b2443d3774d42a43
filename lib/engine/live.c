/* What the engine keeps in memory: live work only (engine_impl.h). Jobs and
 * deployments sit in arrays of pointers sorted by id (ids only grow, so a
 * new one is appended), found by binary search and walked in id order as
 * before. A finished one whose final record is committed is a candidate;
 * the next call that changes state drops the candidates, so a pointer a
 * call handed out stays valid until the next call, as engine.h promises.
 * Queries of finished ones read the store into a small cache. */
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "common/fs.h"
#include "engine/engine_impl.h"

/* Read-back copies: a few, so that one query reading several records keeps
 * the first (a step and its deployment; a replicated job and its up to
 * RZ_ENGINE_REPLICAS_MAX runs, rz_engine_job_get). Round robin: a record
 * stays valid for the next CACHE_SLOTS - 1 reads of others (a deployment:
 * until the next read of another, when their texts pass CACHE_DEP_BYTES;
 * no query holds two). */
#define CACHE_SLOTS 8
/* Deployments read back carry their final status, megabytes for a big
 * one: past this many bytes in all, the others leave before a new one
 * stays (the newest read is always kept, whatever its size). */
#define CACHE_DEP_BYTES (1u << 20)

struct rz__ecache {
    rz__ejob job[CACHE_SLOTS];
    rz__edep dep[CACHE_SLOTS];
    size_t dep_bytes[CACHE_SLOTS];
    unsigned next_job, next_dep;
    unsigned reads;   /* jobs read from the store, for SHED_READS */
};

/* Jobs read back between two sheds of the store's map: a walk of every
 * finished job (the step cache of a 100,000-step run, a finished status
 * built when asked) faults in the whole jobs table, which on /dev/shm
 * (embedded runs) counts as the process's memory (~40 MB there). */
#define SHED_READS 1024

/* The index of the first element whose id is >= id. */
#define LOWER_BOUND(arr, n, id, out)                                          \
    do {                                                                      \
        size_t lo_ = 0, hi_ = (n);                                            \
        while (lo_ < hi_) {                                                   \
            size_t mid_ = lo_ + (hi_ - lo_) / 2;                              \
            if ((arr)[mid_]->id < (id))                                       \
                lo_ = mid_ + 1;                                               \
            else                                                              \
                hi_ = mid_;                                                   \
        }                                                                     \
        (out) = lo_;                                                          \
    } while (0)

rz__ejob *rz__engine_job(const rz_engine *e, uint64_t id)
{
    /* Jobs are made in id order and leave in runs: where none left since
     * the first live one, `id` sits at its offset from it (a deployment's
     * steps all live till its end), found without a search. */
    size_t n = e->n_live_jobs;
    if (n && id >= e->jobs[0]->id && id - e->jobs[0]->id < n &&
        e->jobs[id - e->jobs[0]->id]->id == id)
        return e->jobs[id - e->jobs[0]->id];
    size_t i;
    LOWER_BOUND(e->jobs, e->n_live_jobs, id, i);
    return i < e->n_live_jobs && e->jobs[i]->id == id ? e->jobs[i] : NULL;
}

rz__edep *rz__engine_dep(const rz_engine *e, uint64_t id)
{
    size_t i;
    LOWER_BOUND(e->deps, e->n_live_deps, id, i);
    return i < e->n_live_deps && e->deps[i]->id == id ? e->deps[i] : NULL;
}

static int cmp_id(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int rz__engine_live_dep_ids(const rz_engine *e, uint64_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    uint64_t *v = e->n_live_jobs ? malloc(e->n_live_jobs * sizeof *v) : NULL;
    if (e->n_live_jobs && !v)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        const rz__ejob *j = e->jobs[i];
        const rz__ejob *h = !j->deployment && j->rep_head && j->rep_head != j->id
                          ? rz__engine_job(e, j->rep_head) : NULL;
        uint64_t d = j->deployment ? j->deployment : h ? h->deployment : 0;
        if (d)
            v[k++] = d;
    }
    if (k)
        qsort(v, k, sizeof *v, cmp_id);
    *out = v;
    *n = k;
    return RZ_OK;
}

bool rz__engine_live_add_job(rz_engine *e, rz__ejob *j)
{
    if (!rz__engine_grow((void **)&e->jobs, &e->cap_jobs, e->n_live_jobs + 1,
                         sizeof *e->jobs))
        return false;
    e->jobs[e->n_live_jobs++] = j;   /* ids only grow: still sorted */
    return true;
}

bool rz__engine_live_add_dep(rz_engine *e, rz__edep *d)
{
    if (!rz__engine_grow((void **)&e->deps, &e->cap_deps, e->n_live_deps + 1,
                         sizeof *e->deps))
        return false;
    e->deps[e->n_live_deps++] = d;
    return true;
}

void rz__engine_job_clear(rz_engine *e, rz__ejob *j)
{
    rz__engine_reqs_release(e, j->req_group);
    free(j->module_id);
    free(j->module_version);
    free(j->exec);
    free(j->request);
    free(j->step_id);
    free(j->outputs);
    free(j->error);
    free(j->declined);
    free(j->cache_key);
    free(j->reused);
}

bool rz__engine_job_done(const rz_engine *e, const rz__ejob *j)
{
    if (j->state < RZ_JOB_SUCCEEDED || j->owed != RZ__OWE_NONE || j->dirty ||
        j->paid_later)   /* its record still says it owes */
        return false;
    const rz__edep *d = j->deployment ? rz__engine_dep(e, j->deployment) : NULL;
    return !d || rz__engine_dep_finished(d);
}

void rz__engine_evict_later(rz_engine *e, uint64_t id, bool dep)
{
    /* Tagged: deployments with the top bit (ids never reach it). Out of
     * memory here only keeps the record in memory a while longer: a later
     * commit of the same record (or close) releases it. */
    uint64_t v = dep ? id | 1ull << 63 : id;
    if (rz__engine_grow((void **)&e->evict, &e->cap_evict, e->n_evict + 1,
                        sizeof *e->evict))
        e->evict[e->n_evict++] = v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A deployment leaving takes its finished steps along (those still owing
 * the ledger follow after their payment's commit). */
static void evict_dep_jobs(rz_engine *e, const rz__edep *d)
{
    for (size_t i = 0; i < d->n_steps; i++) {
        const rz__ejob *j = rz__engine_job(e, d->first_job + i);
        if (j)
            rz__engine_evict_later(e, j->id, false);
    }
    for (size_t k = 0; k < d->n_el_jobs; k++)   /* for_each elements */
        if (d->el_jobs[k])
            rz__engine_evict_later(e, d->el_jobs[k], false);
}

void rz__engine_evict(rz_engine *e)
{
    if (!e->n_evict)
        return;
    /* Deployments first: their jobs become candidates of this pass. */
    size_t k = 0;
    for (size_t i = 0; i < e->n_live_deps; i++) {
        rz__edep *d = e->deps[i];
        bool cand = false;
        for (size_t c = 0; c < e->n_evict && !cand; c++)
            cand = e->evict[c] == (d->id | 1ull << 63);
        if (cand && d->final_status && !d->dirty) {
            evict_dep_jobs(e, d);
            rz__engine_dep_free(d);
            free(d);
            e->gone_deps++;
            continue;
        }
        e->deps[k++] = d;
    }
    e->n_live_deps = k;
    qsort(e->evict, e->n_evict, sizeof *e->evict, cmp_u64);
    k = 0;
    size_t c = 0;
    for (size_t i = 0; i < e->n_live_jobs; i++) {
        rz__ejob *j = e->jobs[i];
        while (c < e->n_evict && e->evict[c] < j->id)
            c++;
        if (c < e->n_evict && e->evict[c] == j->id &&
            rz__engine_job_done(e, j)) {
            e->gone_jobs[j->state]++;
            e->gone_volume += rz__engine_charged(j);
            rz__engine_job_clear(e, j);
            free(j);
            continue;
        }
        e->jobs[k++] = j;
    }
    e->n_live_jobs = k;
    e->n_evict = 0;
}

static struct rz__ecache *cache(const rz_engine *e)
{
    return e->cache;   /* allocated at open: queries take a const engine */
}

const rz__ejob *rz__engine_job_read(const rz_engine *e, uint64_t id)
{
    const rz__ejob *j = rz__engine_job(e, id);
    if (j)
        return j;
    if (!id || id > e->n_jobs || !cache(e)) {
        rz__error(RZ_ENOENT, "no job %llu", (unsigned long long)id);
        return NULL;
    }
    struct rz__ecache *c = cache(e);
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        if (c->job[i].id == id)
            return &c->job[i];
    rz__ejob *slot = &c->job[c->next_job];
    c->next_job = (c->next_job + 1) % CACHE_SLOTS;
    rz__engine_job_clear((rz_engine *)e, slot);   /* it joined no group */
    memset(slot, 0, sizeof *slot);
    if (rz__engine_store_job(e, id, slot) != RZ_OK) {
        rz__engine_job_clear((rz_engine *)e, slot);
        memset(slot, 0, sizeof *slot);
        return NULL;
    }
    if (++c->reads % SHED_READS == 0)
        rz__lmdb_shed(e->map, e->map_len);
    return slot;
}

static size_t dep_text_bytes(const rz__edep *d)
{
    return (d->text ? strlen(d->text) : 0) + (d->inputs ? strlen(d->inputs) : 0) +
           (d->final_status ? strlen(d->final_status) : 0);
}

/* The oldest copies other than `keep` leave until the texts fit. */
static void dep_cache_bound(struct rz__ecache *c, unsigned keep)
{
    size_t sum = 0;
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        sum += c->dep_bytes[i];
    for (unsigned k = 1; k < CACHE_SLOTS && sum > CACHE_DEP_BYTES; k++) {
        unsigned i = (keep + k) % CACHE_SLOTS;   /* oldest first */
        if (!c->dep[i].id)
            continue;
        sum -= c->dep_bytes[i];
        c->dep_bytes[i] = 0;
        rz__engine_dep_free(&c->dep[i]);
    }
}

size_t rz__engine_cache_dep_bytes(const rz_engine *e)
{
    size_t sum = 0;
    for (unsigned i = 0; e && e->cache && i < CACHE_SLOTS; i++)
        sum += e->cache->dep_bytes[i];
    return sum;
}

const rz__edep *rz__engine_dep_read(const rz_engine *e, uint64_t id)
{
    const rz__edep *d = rz__engine_dep(e, id);
    if (d)
        return d;
    if (!id || id > e->n_deps || !cache(e)) {
        rz__error(RZ_ENOENT, "no deployment %llu", (unsigned long long)id);
        return NULL;
    }
    struct rz__ecache *c = cache(e);
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        if (c->dep[i].id == id)
            return &c->dep[i];
    unsigned at = c->next_dep;
    rz__edep *slot = &c->dep[at];
    c->next_dep = (c->next_dep + 1) % CACHE_SLOTS;
    rz__engine_dep_free(slot);
    c->dep_bytes[at] = 0;
    if (rz__engine_store_dep(e, id, slot) != RZ_OK) {
        rz__engine_dep_free(slot);
        return NULL;
    }
    c->dep_bytes[at] = dep_text_bytes(slot);
    dep_cache_bound(c, at);
    return slot;
}

void rz__engine_cache_clear(rz_engine *e)
{
    struct rz__ecache *c = e->cache;
    if (!c)
        return;
    for (unsigned i = 0; i < CACHE_SLOTS; i++) {
        rz__engine_job_clear(e, &c->job[i]);
        rz__engine_dep_free(&c->dep[i]);
    }
    memset(c, 0, sizeof *c);
}

void rz__engine_cache_free(rz_engine *e)
{
    rz__engine_cache_clear(e);
    free(e->cache);
    e->cache = NULL;
}

int rz__engine_cache_new(rz_engine *e)
{
    e->cache = rz__calloc(1, sizeof *e->cache);
    return e->cache ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

size_t rz__engine_live_jobs(const rz_engine *e)
{
    return e ? e->n_live_jobs : 0;
}

size_t rz__engine_live_deps(const rz_engine *e)
{
    return e ? e->n_live_deps : 0;
}

/* A big flow's parse builds a YAML tree several times the size of what is
 * kept (~1 KiB a step), freed after validation, and its end a status of
 * every step: glibc keeps those pages, interleaved with what lives on, so
 * a 100,000-step run's RSS would stay at the peak. */
void rz__engine_trim(size_t steps)
{
#ifdef __GLIBC__
    if (steps >= 4096)
        malloc_trim(0);
#else
    (void)steps;
#endif
}

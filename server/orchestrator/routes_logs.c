/* POST /api/v1/nodes/{id}/jobs/{job}/log: a running job's log lines, sent
 * by its node as they come (docs/api.md "Live logs").
 *
 * A chunk is {attempt, offset, lines}: `offset` is where `lines` starts in
 * the attempt's stream of log lines, in bytes. The job's stored log (the
 * same store and the same ORCH_LOG_MAX tail as a result's log) grows by
 * each new chunk; a chunk already taken (a retried POST) is answered again
 * and stores nothing; a chunk past the end (the node dropped lines it
 * could not send) is taken after a line that says how much is missing.
 * The first chunk of an attempt replaces what an earlier attempt left.
 * The result's log, when it comes, replaces the streamed one: it is the
 * attempt's authoritative tail, the same lines, so nothing shows twice.
 *
 * A running job's streamed log lives in memory (what GET shows) and
 * reaches the store at most every ORCH_LIVE_PUT_MS: a synced store write
 * per chunk would cost the one event loop ~10 ms each. Where each
 * attempt's stream stands is memory only too: after a restart of the
 * orchestrator, a running attempt's next chunk starts its log again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

uint64_t orch_live_put_ms = ORCH_LIVE_PUT_MS;

struct live_pos {
    uint64_t job;
    uint32_t attempt;
    uint64_t next;             /* bytes of the attempt's stream taken */
    char *log;                 /* the job's log now (its last ORCH_LOG_MAX
                                  bytes), NUL-terminated; NULL: none */
    size_t len;
    uint64_t put_ms;           /* when it was last stored */
    bool dirty;                /* lines not stored yet */
    log_times times;           /* when its lines arrived */
};

static void pos_clear(live_pos *p)
{
    log_times_clear(&p->times);
    free(p->log);
    p->log = NULL;
    p->len = 0;
    p->dirty = false;
}

/* Store what the store lacks of it. */
static void pos_put(orch *o, live_pos *p)
{
    /* No redo copy: a streamed log's loss at a crash is accepted, and a
     * copy could outlive the newer log a stop writes. */
    if (p->dirty && auth_put_log(o, p->job, p->attempt, p->log, p->len,
                                 &p->times, false) == RZ_OK)
        p->dirty = false;
    p->put_ms = orch_now_ms();
}

static bool job_live(orch *o, uint64_t job)
{
    rz_engine_job_info ji;
    return rz_engine_job_get(o->e, job, &ji) == RZ_OK &&
           (ji.state == RZ_JOB_RUNNING || ji.state == RZ_JOB_ASSIGNED);
}

/* The job's position; NULL when there is none and no room for one. New
 * ones start at attempt 0 (none taken yet). */
static live_pos *pos_of(orch *o, uint64_t job)
{
    for (size_t i = 0; i < o->n_live; i++)
        if (o->live[i].job == job)
            return &o->live[i];
    if (o->n_live == o->cap_live) {
        /* Jobs that finished since leave first: the table stays the size
         * of what runs. */
        size_t k = 0;
        for (size_t i = 0; i < o->n_live; i++)
            if (job_live(o, o->live[i].job))
                o->live[k++] = o->live[i];
            else {   /* ended without a result (cancelled, node lost) */
                pos_put(o, &o->live[i]);
                pos_clear(&o->live[i]);
            }
        o->n_live = k;
    }
    if (o->n_live == o->cap_live) {
        size_t cap = o->cap_live ? o->cap_live * 2 : 64;
        live_pos *v = realloc(o->live, cap * sizeof *v);
        if (!v)
            return NULL;
        o->live = v;
        o->cap_live = cap;
    }
    live_pos *p = &o->live[o->n_live++];
    *p = (live_pos){ .job = job };
    return p;
}

static live_pos *pos_find(orch *o, uint64_t job)
{
    for (size_t i = 0; i < o->n_live; i++)
        if (o->live[i].job == job)
            return &o->live[i];
    return NULL;
}

const char *orch_live_log(orch *o, uint64_t job)
{
    return orch_live_log_times(o, job, NULL);
}

const char *orch_live_log_times(orch *o, uint64_t job, const log_times **times)
{
    live_pos *p = pos_find(o, job);
    if (times)
        *times = p ? &p->times : NULL;
    return p && p->attempt ? p->log : NULL;
}

void orch_live_rebase(orch *o, uint64_t job, const char *log, size_t len,
                      log_times *out)
{
    live_pos *p = pos_find(o, job);
    *out = (log_times){0};
    if (!p || !p->log || !p->times.n)
        return;
    log_mark *v = malloc(p->times.n * sizeof *v);
    if (!v)
        return;
    memcpy(v, p->times.v, p->times.n * sizeof *v);
    *out = (log_times){ v, p->times.n, p->times.n };
    log_times_rebase(out, p->log, p->len, log, len, orch_now_ms());
}

uint64_t orch_live_taken(orch *o, uint64_t job, uint32_t *attempt)
{
    live_pos *p = pos_find(o, job);
    *attempt = p ? p->attempt : 0;
    return p ? p->next : 0;
}

void orch_live_end(orch *o, uint64_t job, bool keep)
{
    live_pos *p = pos_find(o, job);
    if (!p)
        return;
    if (keep)
        pos_put(o, p);
    pos_clear(p);
    *p = o->live[--o->n_live];
}

void orch_live_free(orch *o)
{
    for (size_t i = 0; i < o->n_live; i++) {
        pos_put(o, &o->live[i]);   /* a stop keeps what was streamed */
        pos_clear(&o->live[i]);
    }
    free(o->live);
    o->live = NULL;
    o->n_live = o->cap_live = 0;
}

/* A replica run that has voted stays running (unplaced) until its set is
 * decided; a late chunk must not replace the log its result brought. */
static bool reported_replica(const rz_engine *e, uint64_t job)
{
    rz_engine_replica_run runs[RZ_ENGINE_REPLICAS_MAX];
    size_t n = rz_engine_job_replicas(e, job, runs, RZ_ENGINE_REPLICAS_MAX);
    for (size_t i = 0; i < n && i < RZ_ENGINE_REPLICAS_MAX; i++)
        if (runs[i].job == job)
            return runs[i].has_digest != 0;
    return false;
}

/* Is the chunk for the job this node runs now, in its current attempt?
 * Else answered (404 no such job, 403 another node's, 409 not running or
 * another attempt). */
static bool chunk_fits(req *q, uint64_t node, uint64_t job, uint64_t attempt,
                       rz_engine_job_info *ji)
{
    if (rz_engine_job_get(q->o->e, job, ji) != RZ_OK) {
        reply_error(q, RZ_ENOENT, "no job %llu", (unsigned long long)job);
        return false;
    }
    if (ji->node != node) {
        reply_error(q, RZ_EDENIED, "job %llu is not assigned to node %llu",
                    (unsigned long long)job, (unsigned long long)node);
        return false;
    }
    if (ji->state != RZ_JOB_RUNNING && ji->state != RZ_JOB_ASSIGNED) {
        reply_error(q, RZ_ESTATE, "job %llu is %s: its log is closed",
                    (unsigned long long)job, rz_job_state_name(ji->state));
        return false;
    }
    if (attempt != ji->attempt) {
        reply_error(q, RZ_ESTATE, "job %llu is at attempt %u, not %llu",
                    (unsigned long long)job, ji->attempt,
                    (unsigned long long)attempt);
        return false;
    }
    if (reported_replica(q->o->e, job)) {
        reply_error(q, RZ_ESTATE, "job %llu has reported its result: its log "
                    "is closed", (unsigned long long)job);
        return false;
    }
    return true;
}

/* The job's log with `gap` and `add` (len n) after it, cut to its last
 * ORCH_LOG_MAX bytes on a UTF-8 boundary; stored when the last store is
 * ORCH_LIVE_PUT_MS old (the first chunk at once). */
static int append_log(orch *o, live_pos *p, const char *gap, const char *add,
                      size_t n)
{
    size_t gl = strlen(gap), len = p->len + gl + n;
    char *all = malloc(len + 1);
    if (!all)
        return RZ_ENOMEM;
    if (p->len)
        memcpy(all, p->log, p->len);
    memcpy(all + p->len, gap, gl);
    memcpy(all + p->len + gl, add, n);
    all[len] = '\0';
    size_t from = 0;
    if (len > ORCH_LOG_MAX) {
        from = len - ORCH_LOG_MAX;
        while (((unsigned char)all[from] & 0xC0) == 0x80)
            from++;
        memmove(all, all + from, len - from + 1);
    }
    bool first = !p->log;
    log_times_add(&p->times, p->len, orch_now_ms());
    log_times_shift(&p->times, from);
    free(p->log);
    p->log = all;
    p->len = len - from;
    p->dirty = true;
    if (first || orch_now_ms() >= p->put_ms + orch_live_put_ms)
        pos_put(o, p);
    return RZ_OK;
}

static void answer(req *q, uint64_t next, bool duplicate)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddTrueToObject(doc, "accepted");
    cJSON_AddBoolToObject(doc, "duplicate", duplicate);
    cJSON_AddNumberToObject(doc, "next_offset", (double)next);
    reply_json(q, 200, doc);
}

/* The deployment's watchers see the lines (a step_log event). */
static void tell_watchers(orch *o, const rz_engine_job_info *ji,
                          uint64_t offset, const char *lines)
{
    if (!ji->deployment)
        return;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "job", (double)ji->id);
    cJSON_AddStringToObject(ev, "step", ji->step ? ji->step : "");
    cJSON_AddNumberToObject(ev, "attempt", ji->attempt);
    cJSON_AddNumberToObject(ev, "offset", (double)offset);
    cJSON_AddStringToObject(ev, "lines", lines);
    char *text = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (text)
        orch_watch_log(o, ji->deployment, text);
    cJSON_free(text);
}

void r_node_log(req *q)
{
    static const char *const fields[] = { "attempt", "offset", "lines", NULL };
    orch *o = q->o;
    uint64_t node, job, attempt, offset;
    const char *lines;
    if (!own_node(q, &node) || !param_u64(q, 1, &job) ||
        !body_fields(q, fields) ||
        !body_u64(q, "attempt", true, UINT32_MAX, &attempt, NULL) ||
        !body_u64(q, "offset", true, (uint64_t)1 << 53, &offset, NULL) ||
        !body_str(q, "lines", true, &lines))
        return;
    size_t n = strlen(lines);
    if (n > ORCH_LOG_CHUNK_MAX) {
        reply_error(q, RZ_ETOOBIG, "a log chunk has at most %u bytes; this "
                    "one has %zu", ORCH_LOG_CHUNK_MAX, n);
        return;
    }
    if (n == 0) {
        reply_error(q, RZ_EINVAL, "\"lines\" is empty");
        return;
    }
    rz_engine_job_info ji;
    if (!chunk_fits(q, node, job, attempt, &ji))
        return;
    live_pos *p = pos_of(o, job);
    if (!p) {
        reply_rz(q, RZ_ENOMEM);
        return;
    }
    bool fresh = p->attempt != attempt;
    if (fresh) {
        pos_clear(p);
        *p = (live_pos){ .job = job, .attempt = (uint32_t)attempt };
    } else if (offset + n <= p->next) {
        answer(q, p->next, true);   /* taken already: a retried POST */
        return;
    } else if (offset < p->next) {
        reply_error(q, RZ_ESTATE, "the chunk at offset %llu overlaps the log "
                    "taken up to %llu", (unsigned long long)offset,
                    (unsigned long long)p->next);
        return;
    }
    char gap[96] = "";
    if (offset > p->next)
        snprintf(gap, sizeof gap, "[%llu bytes of the log missing here]\n",
                 (unsigned long long)(offset - p->next));
    int rc = append_log(o, p, gap, lines, n);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    p->next = offset + n;
    tell_watchers(o, &ji, offset, lines);
    answer(q, p->next, false);
}

char *orch_log_since(orch *o, uint64_t job, uint32_t attempt, uint64_t since_ms)
{
    uint32_t live_attempt = 0;
    (void)orch_live_taken(o, job, &live_attempt);
    const log_times *lt = NULL;
    const char *live = orch_live_log_times(o, job, &lt);
    if (live && (!attempt || attempt == live_attempt)) {
        size_t n = strlen(live);
        return strdup(live + log_times_since(lt, live, n, since_ms));
    }
    log_times t;
    char *log = auth_get_log_times(o, job, attempt, &t);
    if (log) {
        size_t n = strlen(log), from = log_times_since(&t, log, n, since_ms);
        memmove(log, log + from, n - from + 1);
    }
    log_times_clear(&t);
    return log;
}

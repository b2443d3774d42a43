/* `rhizos-node start`: register when needed, then two loops — heartbeats,
 * and a long-poll for work whenever a slot is free — plus a thread per job
 * slot that runs its jobs (job.c) one after another. Calls take kept-alive
 * clients (agent_client / agent_client_put). The main thread only waits
 * for SIGTERM/SIGINT (blocked everywhere else). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "apilimits.h"
#include "llm.h"
#include "slurm.h"

#define POLL_WAIT_S 25
/* A Slurm gateway's capacity changes under it (other users, drains): a
 * short hold, so that a partition seen full stops the asking soon. */
#define POLL_WAIT_SLURM_S 2

/* ---- small shared helpers ---- */

int agent_stopping(agent *a)
{
    pthread_mutex_lock(&a->mu);
    int s = a->stopping;
    pthread_mutex_unlock(&a->mu);
    return s;
}

int agent_sleep(agent *a, long ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&a->mu);
    while (!a->stopping &&
           pthread_cond_timedwait(&a->cv, &a->mu, &until) != ETIMEDOUT)
        ;
    int s = a->stopping;
    pthread_mutex_unlock(&a->mu);
    return s;
}

long agent_backoff(unsigned *tries)
{
    long base = 1000L << (*tries < 5 ? *tries : 5);
    if (base > 30000)
        base = 30000;
    if (*tries < 16)
        (*tries)++;
    /* Full jitter over the upper half: many nodes do not come back in step. */
    return base / 2 + (long)randombytes_uniform((uint32_t)(base / 2) + 1);
}

/* Clients of an older registration (their token is void), taken out
 * under a->mu into `old` (cap_idle long) to be freed outside it. */
static size_t drop_stale_idle(agent *a, rz_client **old)
{
    size_t n = 0;
    if (a->idle_generation != a->generation)
        while (a->n_idle)
            old[n++] = a->idle[--a->n_idle];
    a->idle_generation = a->generation;
    return n;
}

rz_client *agent_client(agent *a, uint64_t *node, uint64_t *generation)
{
    rz_client *c = NULL, *old[AGENT_IDLE_MAX];
    pthread_mutex_lock(&a->mu);
    size_t n_old = drop_stale_idle(a, old);
    if (a->st.id && a->st.token) {
        if (a->n_idle)
            c = a->idle[--a->n_idle];
        else if (node_client_new(&c, a->url, a->st.token, &a->cfg) != RZ_OK)
            c = NULL;
    }
    if (c) {
        *node = a->st.id;
        *generation = a->generation;
    }
    pthread_mutex_unlock(&a->mu);
    while (n_old)
        rz_client_free(old[--n_old]);
    /* A long poll's limit does not stay with the client. */
    if (c)
        (void)!rz_client_set_timeout(c, RZ_CLIENT_DEFAULT_TIMEOUT_MS);   /* > 0 */
    return c;
}

void agent_client_put(agent *a, rz_client *c, uint64_t generation)
{
    if (!c)
        return;
    pthread_mutex_lock(&a->mu);
    int keep = !a->stopping && generation == a->generation &&
               generation == a->idle_generation && a->n_idle < AGENT_IDLE_MAX;
    if (keep)
        a->idle[a->n_idle++] = c;
    pthread_mutex_unlock(&a->mu);
    if (!keep)
        rz_client_free(c);
}

int agent_registration(agent *a, uint64_t *node, uint64_t *generation)
{
    pthread_mutex_lock(&a->mu);
    int ok = a->st.id && a->st.token;
    if (ok) {
        *node = a->st.id;
        *generation = a->generation;
    }
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void agent_note(agent *a, int rc, uint64_t generation)
{
    char msg[600];
    snprintf(msg, sizeof msg, "%s", rz_error_last()->message[0]
             ? rz_error_last()->message : rz_strerror(rc));
    pthread_mutex_lock(&a->mu);
    if (rc != RZ_ECONNECT)
        a->last_contact_ms = node_unix_ms();
    if (rc == RZ_ECONNECT && !a->outage) {
        a->outage = 1;
        fprintf(stderr, "rhizos-node: cannot reach the orchestrator at %s "
                "(%s); retrying with backoff\n", a->url, msg);
    } else if (rc != RZ_ECONNECT && a->outage) {
        a->outage = 0;
        fprintf(stderr, "rhizos-node: the orchestrator at %s answers again\n",
                a->url);
    }
    if (generation && node_status_lost(rc) && generation == a->generation &&
        !a->need_register) {
        a->need_register = 1;
        fprintf(stderr, "rhizos-node: the orchestrator no longer knows node "
                "%" PRIu64 " (%s); registering again\n", a->st.id, msg);
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
}

size_t agent_running(const agent *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n_slots; i++)
        n += a->slots[i].busy && !a->slots[i].finished && !a->slots[i].ended;
    return n;
}

void agent_slot_ended(agent *a, job_slot *s)
{
    pthread_mutex_lock(&a->mu);
    s->ended = 1;
    pthread_mutex_unlock(&a->mu);
    /* The poller may ask for the next. Woken after the unlock, it finds the
     * mutex free: woken under it, it blocked on it at once (two more futex
     * calls and a switch on every hand-over). It reads `ended` under the
     * mutex, so no wakeup is lost. */
    pthread_cond_broadcast(&a->slot_cv);
}

const char *const agent_outcomes[AGENT_N_OUTCOMES] = {
    "succeeded", "failed", "declined", "stopped",
};

/* The local API's view of an event, under a->mu. */
static void record(agent *a, const char *event, const job_slot *s,
                   const char *module, const char *detail, long long run_ms)
{
    job_slot *slot = (job_slot *)s;
    if (strcmp(event, "started") == 0) {
        snprintf(slot->module, sizeof slot->module, "%s", module ? module : "");
        slot->started_ms = node_unix_ms();
        return;
    }
    int k = 0;
    while (k < AGENT_N_OUTCOMES && strcmp(agent_outcomes[k], event) != 0)
        k++;
    if (k == AGENT_N_OUTCOMES)
        return;
    a->finished[k]++;
    job_record *r = &a->recent[a->n_recent++ % AGENT_RECENT];
    memset(r, 0, sizeof *r);
    r->job = s->job;
    r->attempt = s->attempt;
    snprintf(r->module, sizeof r->module, "%s", module ? module : "");
    snprintf(r->outcome, sizeof r->outcome, "%s", event);
    snprintf(r->detail, sizeof r->detail, "%s", detail ? detail : "");
    r->run_ms = run_ms;
    r->ended_ms = node_unix_ms();
    slot->started_ms = 0;
}

void agent_say(agent *a, const char *event, const job_slot *s,
               const char *module, const char *detail, long long run_ms)
{
    pthread_mutex_lock(&a->mu);
    record(a, event, s, module, detail, run_ms);
    if (a->o->quiet) {
        pthread_mutex_unlock(&a->mu);
        return;
    }
    if (a->o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "event", event);
        cJSON_AddNumberToObject(j, "job", (double)s->job);
        cJSON_AddNumberToObject(j, "attempt", s->attempt);
        if (module)
            cJSON_AddStringToObject(j, "module", module);
        if (run_ms >= 0)
            cJSON_AddNumberToObject(j, "run_ms", (double)run_ms);
        if (detail)
            cJSON_AddStringToObject(j, "detail", detail);
        char *text = cJSON_PrintUnformatted(j);
        if (text)
            printf("%s\n", text);
        cJSON_free(text);
        cJSON_Delete(j);
    } else {
        printf("job %" PRIu64 " attempt %u %s", s->job, s->attempt, event);
        if (module)
            printf(" %s", module);
        if (run_ms >= 0)
            printf(" in %.2f s", (double)run_ms / 1000.0);
        if (detail)
            printf(": %s", detail);
        putchar('\n');
    }
    fflush(stdout);
    pthread_mutex_unlock(&a->mu);
}

/* ---- registration ---- */

static void say_registered(agent *a)
{
    if (a->o->quiet)
        return;
    if (a->o->json)
        printf("{\"event\":\"registered\",\"node\":%" PRIu64 ",\"account\":"
               "\"%s\"}\n", a->st.id, a->st.account);
    else
        printf("registered as node %" PRIu64 " at %s (payout account %s)\n",
               a->st.id, a->url, a->st.account);
    fflush(stdout);
}

/* 0 registered or retrying later, -1 a refusal worth giving up over. */
static int register_now(agent *a, unsigned *tries)
{
    node_state st = {0};
    char err[800];
    int rc = node_register(a->o->data_dir, a->url, &a->cfg, &a->keys, &st,
                           err, sizeof err);
    agent_note(a, rc == RZ_ECONNECT ? rc : RZ_OK, 0);
    if (rc == RZ_ECONNECT || (rc != RZ_OK && rc != RZ_EIO &&
                              rc != RZ_EINVAL && rc != RZ_EINTERNAL &&
                              rc != RZ_EDENIED && rc != RZ_ETOOBIG)) {
        agent_sleep(a, agent_backoff(tries));
        return 0;
    }
    if (rc != RZ_OK) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return -1;
    }
    *tries = 0;
    pthread_mutex_lock(&a->mu);
    node_state_free(&a->st);
    a->st = st;
    a->generation++;
    a->need_register = 0;
    /* Jobs of the old registration were given back to the queue. */
    for (size_t i = 0; i < a->n_slots; i++)
        if (a->slots[i].busy && a->slots[i].generation != a->generation)
            a->slots[i].stop = 1;
    pthread_mutex_unlock(&a->mu);
    say_registered(a);
    agent_challenge(a);   /* the first: until answered, claims are unproven */
    return 0;
}

/* ---- heartbeats ---- */

static cJSON *heartbeat_body(agent *a)
{
    cJSON *b = cJSON_CreateObject(), *running = cJSON_CreateArray();
    pthread_mutex_lock(&a->mu);
    /* A job whose result is on its way is still ours (listed), but its
     * slot is free again (not in the load). */
    size_t busy = agent_running(a);
    for (size_t i = 0; i < a->n_slots; i++)
        if (a->slots[i].busy && !a->slots[i].finished)
            cJSON_AddItemToArray(running,
                                 cJSON_CreateNumber((double)a->slots[i].job));
    /* Still ours until the orchestrator has the result. */
    for (size_t i = 0; i < a->n_outbox; i++)
        cJSON_AddItemToArray(running, cJSON_CreateNumber((double)a->outbox[i]));
    pthread_mutex_unlock(&a->mu);
    cJSON_AddNumberToObject(b, "load", (double)busy / (double)a->max_running);
    cJSON_AddItemToObject(b, "running", running);
    return b;
}

/* o[key] as a whole number in 1..max; 0 when absent, not a number, not
 * whole or out of range (the orchestrator's numbers are not trusted: a
 * cast of 1e300 or -1 is undefined). */
static uint64_t whole_at(const cJSON *o, const char *key, double max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= max) ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return 0;
    return (uint64_t)v->valuedouble;
}

#define JOB_ID_MAX 9007199254740992.0   /* 2^53: exact in a double */

static void apply_stops(agent *a, const cJSON *reply, uint64_t gen)
{
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(reply, "stop"), *s;
    pthread_mutex_lock(&a->mu);
    cJSON_ArrayForEach(s, stop) {
        uint64_t job = whole_at(s, "job", JOB_ID_MAX);
        uint64_t att = whole_at(s, "attempt", UINT32_MAX);
        int any = !cJSON_GetObjectItemCaseSensitive(s, "attempt");
        for (size_t i = 0; job && (att || any) && i < a->n_slots; i++) {
            job_slot *sl = &a->slots[i];
            if (sl->busy && sl->generation == gen && sl->job == job &&
                (any || sl->attempt == att))
                sl->stop = 1;
        }
    }
    pthread_mutex_unlock(&a->mu);
}

#define EARNINGS_EVERY_MS (30 * 1000)

/* The payout account's balance, for the local API: read after a job ends
 * and now and then, never on a reader's request, so that no reader makes
 * the node call out. */
static void read_earnings(agent *a, rz_client *c)
{
    char path[128];
    pthread_mutex_lock(&a->mu);
    int due = a->st.account[0] &&
              (a->earn_stale || node_unix_ms() - a->earn_at_ms >= EARNINGS_EVERY_MS);
    a->earn_stale = 0;
    snprintf(path, sizeof path, "/api/v1/accounts/%s", a->st.account);
    pthread_mutex_unlock(&a->mu);
    cJSON *reply = NULL;
    if (!due || node_call(c, "GET", path, NULL, 0, NULL, &reply) != RZ_OK) {
        cJSON_Delete(reply);
        return;
    }
    const cJSON *bal = cJSON_GetObjectItemCaseSensitive(reply, "balance_micros");
    const cJSON *pend = cJSON_GetObjectItemCaseSensitive(reply, "pending_micros");
    pthread_mutex_lock(&a->mu);
    if (cJSON_IsNumber(bal) && fabs(bal->valuedouble) < 9007199254740992.0) {
        a->earn_balance = (int64_t)bal->valuedouble;
        a->earn_pending = cJSON_IsNumber(pend) && fabs(pend->valuedouble) < 9007199254740992.0
                          ? (int64_t)pend->valuedouble : 0;
        a->earn_at_ms = node_unix_ms();
    }
    pthread_mutex_unlock(&a->mu);
    cJSON_Delete(reply);
}

static void *heartbeats(void *arg)
{
    agent *a = arg;
    long every = (long)(a->cfg.heartbeat_s * 1000);
    while (!agent_sleep(a, every)) {
        uint64_t node = 0, gen = 0;
        rz_client *c = agent_client(a, &node, &gen);
        if (!c)
            continue;
        char path[64];
        snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/heartbeat", node);
        cJSON *body = heartbeat_body(a), *reply = NULL;
        int rc = node_call(c, "POST", path, body, 1, NULL, &reply);
        agent_note(a, rc, gen);
        if (rc == RZ_OK) {
            apply_stops(a, reply, gen);
            read_earnings(a, c);
        }
        cJSON_Delete(reply);
        cJSON_Delete(body);
        agent_client_put(a, c, gen);
        agent_challenge(a);   /* one falls due now and then */
    }
    return NULL;
}

/* ---- containers left behind ---- */

#define REAP_EVERY_MS (60 * 1000)

static int holds_job(uint64_t job, void *ud)
{
    agent *a = ud;
    int held = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_slots && !held; i++)
        held = a->slots[i].busy && a->slots[i].job == job;
    pthread_mutex_unlock(&a->mu);
    return held;
}

/* Containers labelled with this node whose job it no longer holds (a crash,
 * a kill -9, a job the orchestrator took back): removed at start-up, before
 * any job is taken, and then every minute. Only where docker is served. */
static void reap_containers(agent *a)
{
    if (rz_attempt_adapter_check_at("docker", a->cfg.container_host) != RZ_OK)
        return;
    size_t removed = 0;
    if (rz_container_reap(a->cfg.container_host, a->node_id, holds_job, a,
                          &removed) != RZ_OK || !removed || a->o->quiet)
        return;
    pthread_mutex_lock(&a->mu);
    if (a->o->json)
        printf("{\"event\":\"reaped\",\"containers\":%zu}\n", removed);
    else
        printf("reaped %zu container%s left behind\n", removed,
               removed == 1 ? "" : "s");
    fflush(stdout);
    pthread_mutex_unlock(&a->mu);
}

static void *reaper(void *arg)
{
    agent *a = arg;
    while (!agent_sleep(a, REAP_EVERY_MS))
        reap_containers(a);
    return NULL;
}

/* ---- taking work ---- */

/* Slots whose job has finished are free again (their threads wait for
 * the next). */
static void reap(agent *a)
{
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_slots; i++) {
        job_slot *s = &a->slots[i];
        if (s->busy && s->finished) {
            s->busy = s->finished = s->ended = 0;
            s->stop = 0;
        }
    }
    pthread_mutex_unlock(&a->mu);
}

/* A free slot, waiting for one; NULL when stopping. Free: fewer than
 * max_concurrent_jobs jobs run (a job whose result is on its way does not
 * run) and a slot is left to hold the next. */
static job_slot *free_slot(agent *a)
{
    for (;;) {
        reap(a);
        pthread_mutex_lock(&a->mu);
        int joinable = 0;
        job_slot *got = NULL;
        for (size_t i = 0; i < a->n_slots && !a->stopping; i++) {
            if (!a->slots[i].busy && !got)
                got = &a->slots[i];
            joinable |= a->slots[i].finished;
        }
        if (got && agent_running(a) < a->max_running) {
            pthread_mutex_unlock(&a->mu);
            return got;
        }
        /* A job that finished after reap() looked broadcast before this
         * wait began: waiting would lose that wakeup (a second with the
         * slot idle). Reap it instead. (An attempt that ended did so under
         * a->mu, before agent_running looked or after this wait began.) */
        if (!a->stopping && !joinable) {
            struct timespec t;
            clock_gettime(CLOCK_REALTIME, &t);
            t.tv_sec += 1;
            pthread_cond_timedwait(&a->slot_cv, &a->mu, &t);
        }
        int stop = a->stopping;
        pthread_mutex_unlock(&a->mu);
        if (stop)
            return NULL;
    }
}

/* Another slot's live attempt of `job`: 2 the same attempt, 1 another. */
static int in_flight(agent *a, const job_slot *s, uint64_t job, uint32_t attempt)
{
    int found = 0;
    for (size_t i = 0; i < a->n_slots; i++) {
        const job_slot *o = &a->slots[i];
        if (o != s && o->busy && !o->finished && o->job == job)
            found = o->attempt == attempt ? 2 : found ? found : 1;
    }
    return found;
}

/* An assignment runs in its own thread; one whose job and attempt are not
 * whole numbers in range is skipped (nothing to decline it with), one for
 * a job already running here is declined (or skipped when it is the very
 * attempt running). job_main declines the other malformed ones. */
static int start_job(agent *a, job_slot *s, cJSON *asg, uint64_t gen)
{
    uint64_t job = whole_at(asg, "job", JOB_ID_MAX);
    uint64_t att = whole_at(asg, "attempt", UINT32_MAX);
    if (!job || !att) {
        fprintf(stderr, "rhizos-node: ignoring an assignment without a valid "
                "job and attempt (whole numbers from 1)\n");
        cJSON_Delete(asg);
        return -1;
    }
    pthread_mutex_lock(&a->mu);
    if (a->stopping) {   /* the slots' scratch folders may be on their way out */
        pthread_mutex_unlock(&a->mu);
        cJSON_Delete(asg);
        return -1;
    }
    int dup = in_flight(a, s, job, (uint32_t)att);
    if (dup == 2) {
        pthread_mutex_unlock(&a->mu);
        fprintf(stderr, "rhizos-node: job %" PRIu64 " attempt %u is already "
                "running here; ignoring its second assignment\n", job,
                (uint32_t)att);
        cJSON_Delete(asg);
        return -1;
    }
    s->a = a;
    s->busy = 1;
    s->finished = s->ended = 0;
    s->stop = 0;
    s->refuse = dup ? "another attempt of this job is running on this node"
                    : NULL;
    s->job = job;
    s->attempt = (uint32_t)att;
    s->generation = gen;
    s->assignment = asg;
    a->taken++;
    pthread_mutex_unlock(&a->mu);
    return agent_start_slot(a, s, asg);
}

/* A slot's thread runs its jobs one after another: no thread is made and
 * torn down for each (a short job's clone, stack release and exit). */
static void *slot_main(void *arg)
{
    job_slot *s = arg;
    agent *a = s->a;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!s->go && !s->quit)
            pthread_cond_wait(&s->go_cv, &a->mu);
        if (!s->go)
            break;
        s->go = 0;
        pthread_mutex_unlock(&a->mu);
        job_main(s);
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

int agent_start_slot(agent *a, job_slot *s, struct cJSON *asg)
{
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    if (!s->worker) {
        pthread_cond_init(&s->go_cv, NULL);
        rc = pthread_create(&s->thread, NULL, slot_main, s);
        s->worker = rc == 0;
        if (rc)
            pthread_cond_destroy(&s->go_cv);
    }
    if (rc == 0) {
        s->go = 1;
    } else {
        s->busy = 0;
        s->assignment = NULL;
    }
    pthread_mutex_unlock(&a->mu);
    if (rc == 0) {
        pthread_cond_signal(&s->go_cv);   /* after the unlock: agent_slot_ended */
        return 0;
    }
    cJSON_Delete(asg);
    fprintf(stderr, "rhizos-node: cannot start a thread: %s\n", strerror(rc));
    return -1;
}

/* The poll's "&ended=JOB.ATTEMPT,..." (docs/api.md), into buf: this
 * registration's attempts whose process ended and whose result is on its
 * way. The orchestrator frees their reservations, so the poll can bring
 * the next job before it has taken those results; an orchestrator that
 * does not know the field holds the poll until then, as before. */
static void ended_query(agent *a, uint64_t gen, char *buf, size_t cap)
{
    size_t len = 0, n = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_slots && n < API_POLL_ENDED_MAX; i++) {
        const job_slot *s = &a->slots[i];
        if (!s->busy || !s->ended || s->finished || s->generation != gen)
            continue;
        int w = snprintf(buf + len, cap - len, "%s%" PRIu64 ".%u",
                         n ? "," : "&ended=", s->job, s->attempt);
        if (w < 0 || (size_t)w >= cap - len) {
            buf[len] = '\0';   /* the rest go with their results */
            break;
        }
        len += (size_t)w;
        n++;
    }
    pthread_mutex_unlock(&a->mu);
}

/* One long-poll. Returns after an assignment, a quiet wait, or a failure
 * (which it has slept off). */
static void poll_once(agent *a, job_slot *s, unsigned *tries)
{
    uint64_t node = 0, gen = 0;
    rz_client *c = agent_client(a, &node, &gen);
    if (!c) {
        agent_sleep(a, agent_backoff(tries));
        return;
    }
    int wait = a->slurm ? POLL_WAIT_SLURM_S : POLL_WAIT_S;
    (void)!rz_client_set_timeout(c, (wait + 15) * 1000L);   /* > 0 */
    char ended[API_POLL_ENDED_MAX * 28 + 8], path[sizeof ended + 80];
    ended_query(a, gen, ended, sizeof ended);
    snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/jobs?wait=%d%s",
             node, wait, ended);
    long status = 0;
    cJSON *reply = NULL;
    int rc = node_call(c, "GET", path, NULL, 1, &status, &reply);
    agent_note(a, rc, gen);
    agent_client_put(a, c, gen);
    if (rc == RZ_OK) {
        *tries = 0;
        if (reply && status == 200)
            start_job(a, s, reply, gen);
        else
            cJSON_Delete(reply);
        return;
    }
    if (!node_status_lost(rc)) {
        if (rc != RZ_ECONNECT)
            fprintf(stderr, "rhizos-node: asking for work: %s\n",
                    rz_error_last()->message[0] ? rz_error_last()->message
                                                : rz_strerror(rc));
        agent_sleep(a, agent_backoff(tries));
    }
}

static int all_idle(agent *a)
{
    pthread_mutex_lock(&a->mu);
    int idle = 1;
    for (size_t i = 0; i < a->n_slots; i++)
        idle &= !a->slots[i].busy || a->slots[i].finished;
    pthread_mutex_unlock(&a->mu);
    return idle;
}

/* ---- model servers ---- */

void agent_note_event(agent *a, const char *event, const char *detail)
{
    if (a->o->quiet)
        return;
    pthread_mutex_lock(&a->mu);
    if (a->o->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", event);
        cJSON_AddStringToObject(o, "detail", detail);
        char *t = cJSON_PrintUnformatted(o);
        if (t)
            printf("%s\n", t);
        cJSON_free(t);
        cJSON_Delete(o);
    } else {
        printf("%s: %s\n", event, detail);
    }
    fflush(stdout);
    pthread_mutex_unlock(&a->mu);
}

/* The [[llm]] servers' models, read again every llm_refresh_s. A change is
 * advertised by registering again once no job runs (a registration voids
 * running attempts: the poller does it between polls); a server that stops
 * answering, or answers again, is said once, never fatal. */
static void *llm_refresher(void *arg)
{
    agent *a = arg;
    char why[2048], said[2048];
    cJSON *l = llm_caps(&a->cfg, said, sizeof said);
    char *seen = cJSON_PrintUnformatted(cJSON_GetObjectItem(l, "models"));
    cJSON_Delete(l);
    int changed = 0;
    long every = (long)(a->cfg.llm_refresh_s * 1000);
    while (!agent_sleep(a, every)) {
        l = llm_caps(&a->cfg, why, sizeof why);
        char *now = cJSON_PrintUnformatted(cJSON_GetObjectItem(l, "models"));
        cJSON_Delete(l);
        if (strcmp(why, said) != 0) {
            agent_note_event(a, why[0] ? "llm-server-down" : "llm-servers-up",
                             why[0] ? why : "every [[llm]] server answers");
            memcpy(said, why, sizeof said);
        }
        if (now && (!seen || strcmp(now, seen) != 0)) {
            changed = 1;
            cJSON_free(seen);
            seen = now;
            now = NULL;
        }
        cJSON_free(now);
        if (changed) {
            agent_note_event(a, "llm-models", "the served models changed; "
                             "registering again to advertise them once no "
                             "job runs");
            pthread_mutex_lock(&a->mu);
            a->want_register = 1;
            pthread_mutex_unlock(&a->mu);
            changed = 0;
        }
    }
    cJSON_free(seen);
    return NULL;
}

static void *poller(void *arg)
{
    agent *a = arg;
    unsigned reg_tries = 0, poll_tries = 0;
    while (!agent_stopping(a)) {
        int idle = all_idle(a);
        pthread_mutex_lock(&a->mu);
        if (a->want_register && idle) {
            a->want_register = 0;
            a->need_register = 1;
        }
        int reg = a->need_register, taken = (int)a->taken;
        pthread_mutex_unlock(&a->mu);
        if (reg) {
            if (register_now(a, &reg_tries) != 0) {
                a->fatal = 1;
                break;
            }
            continue;
        }
        if (a->o->once && taken > 0) {
            if (all_idle(a))
                break;
            agent_sleep(a, 100);
            continue;
        }
        if (a->slurm && !slurm_gw_can_take(a, NULL, 0)) {
            agent_sleep(a, 500);   /* the monitor says why, once */
            continue;
        }
        job_slot *s = free_slot(a);
        if (s)
            poll_once(a, s, &poll_tries);
    }
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_cond_broadcast(&a->slot_cv);
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* ---- setting up ---- */

/* --modules first (they win for an identical id@version), then the
 * configuration's, $RHIZOS_MODULES, the examples. */
static rz_registry *build_registry(agent *a)
{
    rz_registry *reg = NULL;
    rz_diags *d = NULL;
    if (rz_registry_new(&reg) != RZ_OK || rz_diags_new(&d) != RZ_OK) {
        rz_registry_free(reg);
        return NULL;
    }
    for (size_t i = 0; i < a->o->n_modules; i++)
        if (rz_registry_add(reg, a->o->modules[i], d) != RZ_OK)
            fprintf(stderr, "rhizos-node: warning: %s\n", rz_error_last()->message);
    if (a->cfg.modules && *a->cfg.modules)
        (void)!rz_registry_add_path_list(reg, a->cfg.modules, d);   /* in d */
    (void)!rz_registry_add_defaults(reg, d);   /* its problems are in d */
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        fprintf(stderr, "%s: warning: %s\n", x->file[0] ? x->file : "<registry>",
                x->message);
    }
    rz_diags_free(d);
    return reg;
}

static int choose_sandbox(agent *a)
{
    if (a->o->no_sandbox || !a->cfg.sandbox) {
        fprintf(stderr, "rhizos-node: warning: jobs from the network run "
                "without a sandbox (%s)\n", a->o->no_sandbox ? "--no-sandbox"
                : "sandbox = false in config.toml");
        a->sandbox = 0;
        return 0;
    }
    /* Read by the sandbox's probe, once, below: set before it. */
    if (a->cfg.step_uid_first) {
        char range[32];
        snprintf(range, sizeof range, "%u:%u", a->cfg.step_uid_first,
                 a->cfg.step_uid_count ? a->cfg.step_uid_count : 256);
        setenv("RHIZOS_SANDBOX_UIDS", range, 1);
    }
    const char *why = rz_sandbox_available() ? rz_sandbox_status() : NULL;
    if (a->cfg.step_uid_first && why && strstr(why, "step uid range")) {
        fprintf(stderr, "rhizos-node: [limits] step_uid_first: %s\n", why);
        return -1;
    }
    if (!rz_sandbox_available()) {
        fprintf(stderr, "rhizos-node: bubblewrap (bwrap) is not usable on "
                "this machine, and jobs from the network must run "
                "sandboxed: install bubblewrap, or pass --no-sandbox to run "
                "them unconfined\n");
        return -1;
    }
    if (rz_sandbox_status())   /* a layer missing here (no cgroup, ...) */
        fprintf(stderr, "rhizos-node: warning: sandbox: %s\n",
                rz_sandbox_status());
    a->sandbox = 1;
    return 0;
}

static int setup(agent *a, const node_opts *o)
{
    char path[PATH_MAX], err[800];
    a->o = o;
    snprintf(path, sizeof path, "%s/config.toml", o->data_dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "rhizos-node: %s: no node here (run `rhizos-node "
                "init --data %s` first)\n", path, o->data_dir);
        return -1;
    }
    /* Tightened to 0700 if it was opened up since `init`. */
    if (node_mkdirs(o->data_dir) != 0) {
        fprintf(stderr, "rhizos-node: %s: cannot make it private (0700): %s\n",
                o->data_dir, strerror(errno));
        return -1;
    }
    if (node_config_load(&a->cfg, path, err, sizeof err) != 0 ||
        node_keys_load(&a->keys, o->data_dir, err, sizeof err) != 0 ||
        node_state_load(&a->st, o->data_dir, err, sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return -1;
    }
    if (o->ca_file && node_config_set_ca_file(&a->cfg, o->ca_file) != 0)
        return -1;
    /* Said once here, not at every request the agent would retry. */
    if (a->cfg.orchestrator_ca_file && access(a->cfg.orchestrator_ca_file, R_OK) != 0) {
        fprintf(stderr, "rhizos-node: CA file %s: %s\n", a->cfg.orchestrator_ca_file,
                strerror(errno));
        return -1;
    }
    if (o->container_host &&
        node_config_set_container_host(&a->cfg, o->container_host, err,
                                       sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return -1;
    }
    node_hex(a->node_id, a->keys.ed_pk, 16);
    a->started_ms = node_unix_ms();
    snprintf(a->url, sizeof a->url, "%s", o->url ? o->url
             : a->cfg.orchestrator_url ? a->cfg.orchestrator_url
             : NODE_DEFAULT_URL);
    /* A registration belongs to one orchestrator. */
    a->need_register = a->st.id == 0 || strcmp(a->st.url, a->url) != 0;
    a->generation = a->need_register ? 0 : 1;
    if (choose_sandbox(a) != 0)
        return -1;
    /* Twice the slots: each may report its result while the next job
     * runs. A Slurm gateway's jobs run in Slurm: its slots are its jobs. */
    a->max_running = a->cfg.max_concurrent_jobs;
    a->n_slots = a->max_running * (a->cfg.backend == NODE_BACKEND_SLURM ? 1 : 2);
    if (!(a->reg = build_registry(a)) ||
        !(a->slots = calloc(a->n_slots, sizeof *a->slots))) {
        fprintf(stderr, "rhizos-node: out of memory\n");
        return -1;
    }
    return 0;
}

/* The slots' threads, ended once their jobs have (stop_jobs first). */
static void join_slots(agent *a)
{
    for (size_t i = 0; a->slots && i < a->n_slots; i++) {
        job_slot *s = &a->slots[i];
        pthread_mutex_lock(&a->mu);
        int on = s->worker;
        s->quit = 1;
        if (on)
            pthread_cond_signal(&s->go_cv);
        pthread_mutex_unlock(&a->mu);
        if (!on)
            continue;
        pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->go_cv);
        s->worker = 0;
    }
}

/* The slots' kept scratch folders, removed; no job runs. */
static void free_scratch(agent *a)
{
    for (size_t i = 0; a->slots && i < a->n_slots; i++) {
        rz_scratch_pool_free(a->slots[i].scratch);
        a->slots[i].scratch = NULL;
    }
}

static void teardown(agent *a)
{
    slurm_gw_free(a);
    join_slots(a);
    rz_registry_free(a->reg);
    free_scratch(a);
    outbox_spares_free(a);
    free(a->slots);
    free(a->outbox);
    node_state_free(&a->st);
    node_keys_free(&a->keys);
    node_config_free(&a->cfg);
    while (a->n_idle)
        rz_client_free(a->idle[--a->n_idle]);
    pthread_cond_destroy(&a->cv);
    pthread_cond_destroy(&a->slot_cv);
    pthread_mutex_destroy(&a->mu);
}

/* Stop every job; their threads kill the processes and give the work back. */
static void stop_jobs(agent *a)
{
    pthread_mutex_lock(&a->mu);
    a->stopping = 1;
    for (size_t i = 0; i < a->n_slots; i++)
        if (a->slots[i].busy && !a->slots[i].stop)
            a->slots[i].stop = 2;
    pthread_cond_broadcast(&a->cv);
    pthread_cond_broadcast(&a->slot_cv);
    pthread_mutex_unlock(&a->mu);
}

/* Until a signal arrives or the poller ends (--once, or a refusal). */
static int wait_for_end(agent *a, const sigset_t *set)
{
    for (;;) {
        struct timespec t = { 0, 200 * 1000000L };
        int sig = sigtimedwait(set, NULL, &t);
        if (sig > 0)
            return sig;
        if (agent_stopping(a))
            return 0;
    }
}

/* The agent's threads besides the jobs': started together, joined
 * together, whichever of them did start. */
typedef struct loops {
    pthread_t hb, poll, left, rp, lr;
    int hb_on, poll_on, left_on, rp_on, lr_on;
    outbox *ob;
    struct node_api *api;
} loops;

/* 0, or -1 when the agent cannot run: stop_jobs and join_loops then. */
static int start_loops(agent *a, loops *l)
{
    if (node_api_start(a, &l->api) != 0)
        return -1;
    reap_containers(a);   /* before the first job */
    l->rp_on = pthread_create(&l->rp, NULL, reaper, a) == 0;
    l->lr_on = a->cfg.n_llm && pthread_create(&l->lr, NULL, llm_refresher, a) == 0;
    l->ob = outbox_load(a);
    /* When no thread can deliver them, they stay on disk for the next start. */
    l->left_on = l->ob && pthread_create(&l->left, NULL, outbox_main, l->ob) == 0;
    l->hb_on = pthread_create(&l->hb, NULL, heartbeats, a) == 0;
    l->poll_on = l->hb_on && pthread_create(&l->poll, NULL, poller, a) == 0;
    return l->poll_on ? 0 : -1;
}

static void join_loops(loops *l)
{
    if (l->poll_on)
        pthread_join(l->poll, NULL);
    if (l->hb_on)
        pthread_join(l->hb, NULL);
    if (l->rp_on)
        pthread_join(l->rp, NULL);
    if (l->lr_on)
        pthread_join(l->lr, NULL);
    if (l->left_on)
        pthread_join(l->left, NULL);
    outbox_free(l->ob);
    node_api_stop(l->api);
}

/* A Slurm gateway's checks, then its jobs left in Slurm, before new
 * work. 0, or -1 said. */
static int start_slurm(agent *a)
{
    if (a->cfg.backend != NODE_BACKEND_SLURM)
        return 0;
    char why[1200];
    if (slurm_gw_start(a, why, sizeof why) != 0) {
        fprintf(stderr, "rhizos-node: slurm: %s\n", why);
        return -1;
    }
    slurm_gw_run(a);
    return 0;
}

int node_agent_run(const node_opts *o)
{
    agent a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    pthread_cond_init(&a.slot_cv, NULL);
    sigset_t set;   /* blocked before any thread (a gateway's) starts */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (setup(&a, o) != 0 || start_slurm(&a) != 0) {
        teardown(&a);
        return 1;
    }
    loops l = {0};
    if (start_loops(&a, &l) != 0) {
        stop_jobs(&a);
        join_loops(&l);
        teardown(&a);
        return 1;
    }
    int sig = wait_for_end(&a, &set);
    stop_jobs(&a);
    while (!all_idle(&a))
        usleep(50 * 1000);
    if (sig) {
        free_scratch(&a);
        outbox_spares_free(&a);
        /* The poller may sit in a long-poll for many seconds; nothing it
         * holds needs saving, so the process ends here. */
        node_api_forget(l.api);
        if (!o->quiet)
            fprintf(stderr, "rhizos-node: stopped (%s)\n",
                    sig == SIGTERM ? "SIGTERM" : "SIGINT");
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    join_loops(&l);
    reap(&a);
    int rc = a.fatal;
    teardown(&a);
    return rc;
}

/* ---- `rhizos-node slurm-run`: one spooled job on a compute node ---- */

static int spooled_job(agent *a, const char *dir, cJSON *asg)
{
    char path[PATH_MAX + 32];
    cJSON *result = NULL;
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(asg, "probe"))) {
        result = cJSON_CreateObject();
        cJSON_AddStringToObject(result, "probe", "ok");
    } else {
        job_slot s = { .a = a, .busy = 1, .assignment = asg };
        s.job = whole_at(asg, "job", JOB_ID_MAX);
        s.attempt = (uint32_t)whole_at(asg, "attempt", UINT32_MAX);
        if (!s.job || !s.attempt) {
            fprintf(stderr, "rhizos-node: %s/assignment.json names no job "
                    "and attempt\n", dir);
            return 1;
        }
        result = job_run_local(a, &s);
    }
    char *text = result ? cJSON_PrintUnformatted(result) : NULL;
    cJSON_Delete(result);
    snprintf(path, sizeof path, "%s/result.json", dir);
    int rc = text && node_write_private(path, text, strlen(text)) == 0;
    if (!rc)
        fprintf(stderr, "rhizos-node: %s: %s\n", path, strerror(errno));
    cJSON_free(text);
    return rc ? 0 : 1;
}

int node_agent_run_spooled(const node_opts *o, const char *dir)
{
    agent a;
    memset(&a, 0, sizeof a);
    pthread_mutex_init(&a.mu, NULL);
    pthread_cond_init(&a.cv, NULL);
    pthread_cond_init(&a.slot_cv, NULL);
    a.local = 1;
    if (setup(&a, o) != 0) {
        teardown(&a);
        return 1;
    }
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/assignment.json", dir);
    char *text = node_read_file(path, 4u * 1024u * 1024u, NULL);
    cJSON *asg = text ? cJSON_Parse(text) : NULL;
    free(text);
    int rc = 1;
    if (!cJSON_IsObject(asg))
        fprintf(stderr, "rhizos-node: %s: %s\n", path,
                asg ? "not a JSON object" : strerror(errno));
    else
        rc = spooled_job(&a, dir, asg);
    cJSON_Delete(asg);
    teardown(&a);
    return rc;
}

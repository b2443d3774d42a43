/* A running job's log lines, sent to the orchestrator as they come
 * (POST /api/v1/nodes/{id}/jobs/{job}/log, docs/api.md "Live logs").
 *
 * The job's thread hands over lines that the attempt has already scrubbed
 * of secrets (rz_attempt_log_lines) and never waits: the lines wait in a
 * bounded buffer, and a thread of their own posts them in chunks every
 * LIVE_EVERY_MS or once LIVE_CHUNK bytes are waiting, whichever comes
 * first. Each chunk says where it starts in the attempt's stream of lines
 * (`offset`, bytes), so a POST that is retried is taken once; when the
 * buffer is full the oldest waiting bytes go and the next chunk's offset
 * shows the gap. A chunk refused for good (the attempt is stale, the job is
 * no longer this node's) ends the stream; the result's log is sent all the
 * same. The thread starts with the first lines: a job that logs nothing
 * (most short steps) costs no thread. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent.h"

#define LIVE_EVERY_MS 250
#define LIVE_CHUNK (16u * 1024u)      /* sent at once when this much waits */
#define LIVE_CHUNK_MAX (32u * 1024u)  /* one POST at most (the orchestrator
                                         takes up to 64 KiB) */
#define LIVE_PENDING_MAX (256u * 1024u)
#define LIVE_FINISH_MS 2000           /* what is left, sent at the end */

struct live_log {
    agent *a;
    job_slot *s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *buf;                        /* waiting bytes: offsets base.. */
    size_t len, cap;
    uint64_t base;
    int finishing, dead;
    int started;                      /* the sender thread runs */
};

static void *live_main(void *arg);

/* ---- the job's side ---- */

static void drop_front(live_log *l, size_t n)
{
    memmove(l->buf, l->buf + n, l->len - n);
    l->len -= n;
    l->base += n;
}

void live_log_add(live_log *l, const char *lines)
{
    if (!l || !lines || !*lines)
        return;
    size_t n = strlen(lines);
    pthread_mutex_lock(&l->mu);
    if (!l->dead && !l->started) {
        /* No thread: no live view; the result carries the log. */
        l->started = pthread_create(&l->thread, NULL, live_main, l) == 0;
        l->dead = !l->started;
    }
    if (l->dead) {
        pthread_mutex_unlock(&l->mu);
        return;
    }
    if (n + 1 > LIVE_PENDING_MAX) {   /* keep the newest bytes only */
        l->base += l->len + (n + 1 - LIVE_PENDING_MAX);
        l->len = 0;
        lines += n + 1 - LIVE_PENDING_MAX;
        n = LIVE_PENDING_MAX - 1;
    } else if (l->len + n + 1 > LIVE_PENDING_MAX) {
        drop_front(l, l->len + n + 1 - LIVE_PENDING_MAX);
    }
    if (l->len + n + 1 > l->cap) {
        size_t cap = l->cap ? l->cap : 4096;
        while (cap < l->len + n + 1)
            cap *= 2;
        char *b = realloc(l->buf, cap);
        if (!b) {   /* no room: these lines only miss the live view; what
                       waits goes too, as offsets count from buf[0] */
            l->base += l->len + n + 1;
            l->len = 0;
            pthread_mutex_unlock(&l->mu);
            return;
        }
        l->buf = b;
        l->cap = cap;
    }
    memcpy(l->buf + l->len, lines, n);
    l->buf[l->len + n] = '\n';
    l->len += n + 1;
    if (l->len >= LIVE_CHUNK)
        pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* ---- the sender ---- */

static void deadline_in(struct timespec *t, long ms)
{
    clock_gettime(CLOCK_REALTIME, t);
    t->tv_sec += ms / 1000;
    t->tv_nsec += (ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* At most LIVE_CHUNK_MAX bytes, ending on a UTF-8 boundary. */
static size_t chunk_len(const char *buf, size_t len)
{
    if (len <= LIVE_CHUNK_MAX)
        return len;
    size_t n = LIVE_CHUNK_MAX;
    while (n > 0 && ((unsigned char)buf[n] & 0xC0) == 0x80)
        n--;
    return n;
}

/* One POST: 1 taken (or a duplicate), 0 try again later, -1 refused for
 * good (stop streaming). */
static int post(live_log *l, const char *text, size_t n, uint64_t offset)
{
    uint64_t node = 0, gen = 0;
    rz_client *c = agent_client(l->a, &node, &gen);
    if (!c)
        return 0;
    if (gen != l->s->generation) {
        agent_client_put(l->a, c, gen);
        return -1;   /* registered anew: this attempt is void */
    }
    char *chunk = strndup(text, n);
    cJSON *b = cJSON_CreateObject();
    int rc = RZ_ENOMEM;
    long status = 0;
    if (chunk && b) {
        cJSON_AddNumberToObject(b, "attempt", l->s->attempt);
        cJSON_AddNumberToObject(b, "offset", (double)offset);
        cJSON_AddStringToObject(b, "lines", chunk);
        char path[112];
        snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/jobs/%" PRIu64
                 "/log", node, l->s->job);
        rc = node_call(c, "POST", path, b, 1, &status, NULL);
    }
    cJSON_Delete(b);
    free(chunk);
    agent_client_put(l->a, c, gen);
    if (rc == RZ_OK)
        return 1;
    /* An outage, a 5xx or 429 (the key's request rate) pass; any other
     * answer is about this job and stays so. */
    return rc == RZ_ECONNECT || rc == RZ_ENOMEM || status >= 500 ||
           status == 429 || status == 0 ? 0 : -1;
}

/* Send what waits, a chunk at a time: 0 when it all went (or the stream
 * ended), 1 to try again later. */
static int send_waiting(live_log *l, unsigned *tries)
{
    pthread_mutex_lock(&l->mu);
    while (l->len && !l->dead) {
        size_t n = chunk_len(l->buf, l->len);
        uint64_t at = l->base;
        char *copy = malloc(n);
        if (!copy)
            break;
        memcpy(copy, l->buf, n);
        pthread_mutex_unlock(&l->mu);
        int r = post(l, copy, n, at);
        free(copy);
        pthread_mutex_lock(&l->mu);
        if (r < 0) {
            l->dead = 1;
            l->len = 0;
        } else if (r == 0) {
            pthread_mutex_unlock(&l->mu);
            if (*tries < 16)
                (*tries)++;
            return 1;
        } else {
            *tries = 0;
            /* Bytes dropped while it was on its way moved base on. */
            if (l->base < at + n)
                drop_front(l, (size_t)(at + n - l->base));
        }
    }
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static int past(const struct timespec *end)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return now.tv_sec > end->tv_sec ||
           (now.tv_sec == end->tv_sec && now.tv_nsec >= end->tv_nsec);
}

static void *live_main(void *arg)
{
    live_log *l = arg;
    unsigned tries = 0;
    int again = 0;
    struct timespec end = {0};
    for (;;) {
        if (again) {
            /* A failed try waits a little longer each time, up to 2 s:
             * the lines are for watching, not worth a long queue. */
            agent_sleep(l->a, tries < 3 ? 250L << tries : 2000L);
        } else {
            struct timespec t;
            deadline_in(&t, LIVE_EVERY_MS);
            pthread_mutex_lock(&l->mu);
            while (!l->finishing && l->len < LIVE_CHUNK &&
                   pthread_cond_timedwait(&l->cv, &l->mu, &t) != ETIMEDOUT)
                ;
            pthread_mutex_unlock(&l->mu);
        }
        pthread_mutex_lock(&l->mu);
        int finishing = l->finishing;
        pthread_mutex_unlock(&l->mu);
        if (finishing && !end.tv_sec)
            deadline_in(&end, LIVE_FINISH_MS);
        again = send_waiting(l, &tries);
        if (finishing && (!again || agent_stopping(l->a) || past(&end)))
            break;
    }
    return NULL;
}

live_log *live_log_start(agent *a, job_slot *s)
{
    if (a->local)
        return NULL;   /* slurm-run: no orchestrator; the result has it */
    live_log *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->a = a;
    l->s = s;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    return l;
}

void live_log_finish(live_log *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->finishing = 1;
    pthread_cond_signal(&l->cv);
    int started = l->started;
    pthread_mutex_unlock(&l->mu);
    if (started)
        pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->buf);
    free(l);
}

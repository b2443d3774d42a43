/* The Slurm backend through slurmrestd ([backend] slurmrestd, docs/scale.md):
 * the same capacity, submission, state, cancel and listing as the commands
 * of slurm.c, over slurmrestd's REST API (openapi/v0.0.38, what Debian 12's
 * 22.05 serves), on a unix socket or loopback TCP, with JWT when
 * slurmrestd_user and slurmrestd_token_file are set.
 *
 * The readers of its replies are pure and strict (tests/test_slurm_rest.c
 * feeds them malformed and hostile ones); slurm_restd at the end is the
 * backend slurm.c calls. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "node.h"
#include "slurm.h"

#define API "/slurm/v0.0.38/"
#define REPLY_MAX (32u * 1024u * 1024u)
#define TOKEN_MAX 16384u

/* ---- reading replies ---- */

static cJSON *parse_object(const char *text, size_t len, char *err,
                           size_t errlen)
{
    cJSON *j = text && len ? cJSON_ParseWithLength(text, len) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        snprintf(err, errlen, "slurmrestd's answer is not a JSON object");
        return NULL;
    }
    return j;
}

/* The array, or NULL (cJSON_ArrayForEach takes NULL as empty). */
static const cJSON *array_or_null(const cJSON *v)
{
    return cJSON_IsArray(v) ? v : NULL;
}

static const char *str_of(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

/* A whole number in [0, max]; -1 when absent, not a number, fractional or
 * out of range (a hostile reply's 1e300 or -5 is refused, not wrapped). */
static int num_of(const cJSON *o, const char *key, double max, uint64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) ||
        v->valuedouble > max || floor(v->valuedouble) != v->valuedouble)
        return -1;
    *out = (uint64_t)v->valuedouble;
    return 0;
}

/* Printable text only (Slurm's words go into logs and errors). */
static void clean_copy(char *out, size_t n, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 1 < n; s++)
        out[o++] = (unsigned char)*s >= 0x20 && *s != 0x7f ? *s : ' ';
    out[o] = '\0';
}

static int errors_of(const cJSON *j, char *out, size_t n)
{
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors"), *e;
    int first = 0;
    size_t o = 0;
    out[0] = '\0';
    cJSON_ArrayForEach(e, array_or_null(errs)) {
        const char *d = str_of(e, "description");
        const char *w = str_of(e, "error");
        /* 22.05 names the number three ways. */
        static const char *const keys[] = { "error_number", "error_code",
                                            "errno" };
        int num = 0;
        for (size_t i = 0; i < 3 && !num; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, keys[i]);
            if (cJSON_IsNumber(v) && v->valuedouble > 0 &&
                v->valuedouble < 1e6)
                num = (int)v->valuedouble;
        }
        if (!first)
            first = num;
        char one[420], text[260];
        clean_copy(text, sizeof text, d && *d ? d : w ? w : "error");
        if (w && d && *d && strcmp(w, d) != 0 && strlen(text) < 200) {
            char more[120];
            clean_copy(more, sizeof more, w);
            snprintf(one, sizeof one, "%s: %s (%d)", more, text, num);
        } else {
            snprintf(one, sizeof one, "%s (%d)", text, num);
        }
        int k = snprintf(out + o, n - o, "%s%s", o ? "; " : "", one);
        if (k < 0 || (size_t)k >= n - o)
            break;
        o += (size_t)k;
    }
    return first;
}

int slurm_rest_errors(const char *text, size_t len, char *out, size_t n)
{
    char err[80];
    cJSON *j = parse_object(text, len, err, sizeof err);
    out[0] = '\0';
    int first = j ? errors_of(j, out, n) : 0;
    cJSON_Delete(j);
    return first;
}

/* One entry of GET nodes counted when it lists the partition. */
static int rest_node(const cJSON *nd, const char *part, slurm_capacity *c,
                     char *err, size_t errlen)
{
    const char *name = str_of(nd, "name");
    if (!name || !*name) {
        snprintf(err, errlen, "a node of slurmrestd's answer has no name");
        return -1;
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(nd, "partitions"), *p;
    int member = 0;
    cJSON_ArrayForEach(p, array_or_null(parts))
        member |= cJSON_IsString(p) && strcmp(p->valuestring, part) == 0;
    if (!member)
        return 0;
    char shown[64];
    clean_copy(shown, sizeof shown, name);
    uint64_t cpus, cpus_alloc = 0, mem, mem_alloc = 0;
    if (num_of(nd, "cpus", UINT32_MAX, &cpus) != 0 ||
        (cJSON_GetObjectItemCaseSensitive(nd, "alloc_cpus") &&
         num_of(nd, "alloc_cpus", UINT32_MAX, &cpus_alloc) != 0) ||
        num_of(nd, "real_memory", (double)(UINT64_C(1) << 52), &mem) != 0 ||
        (cJSON_GetObjectItemCaseSensitive(nd, "alloc_memory") &&
         num_of(nd, "alloc_memory", (double)(UINT64_C(1) << 52), &mem_alloc) != 0)) {
        snprintf(err, errlen, "node %s: cpus, alloc_cpus, real_memory or "
                 "alloc_memory is not a whole number", shown);
        return -1;
    }
    uint32_t gpus = 0, gpus_used = 0;
    const char *gres = str_of(nd, "gres"), *used = str_of(nd, "gres_used");
    if ((gres && slurm_gres_count(gres, &gpus) != 0) ||
        (used && slurm_gres_count(used, &gpus_used) != 0)) {
        snprintf(err, errlen, "node %s: gres does not parse", shown);
        return -1;
    }
    /* "idle" with flags ["DRAIN"]: as scontrol writes it, IDLE+DRAIN. */
    const char *base = str_of(nd, "state");
    char state[512];
    size_t o = 0;
    for (const char *s = base ? base : ""; *s && o + 1 < sizeof state; s++)
        state[o++] = (char)toupper((unsigned char)*s);
    state[o] = '\0';
    const cJSON *flags = cJSON_GetObjectItemCaseSensitive(nd, "state_flags"), *f;
    cJSON_ArrayForEach(f, array_or_null(flags)) {
        if (!cJSON_IsString(f))
            continue;
        int k = snprintf(state + o, sizeof state - o, "+%s", f->valuestring);
        if (k < 0 || (size_t)k >= sizeof state - o) {
            state[0] = '\0';   /* too many flags to judge: not usable */
            break;
        }
        o += (size_t)k;
    }
    slurm_capacity_add(c, (uint32_t)cpus, (uint32_t)cpus_alloc, mem, mem_alloc,
                       gpus, gpus_used, slurm_node_state_usable(state));
    return 0;
}

int slurm_rest_parse_nodes(const char *text, size_t len, const char *partition,
                           slurm_capacity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    cJSON *j = parse_object(text, len, err, errlen), *nd;
    if (!j)
        return -1;
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(j, "nodes");
    int rc = cJSON_IsArray(nodes) ? 0 : -1;
    if (rc)
        snprintf(err, errlen, "slurmrestd's answer has no nodes");
    cJSON_ArrayForEach(nd, array_or_null(rc ? NULL : nodes))
        if ((rc = rest_node(nd, partition, out, err, errlen)) != 0)
            break;
    cJSON_Delete(j);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

int slurm_rest_parse_partition(const char *text, size_t len,
                               const char *partition, char *err,
                               size_t errlen)
{
    cJSON *j = parse_object(text, len, err, errlen), *p;
    if (!j)
        return -1;
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(j, "partitions");
    int rc = -1;
    cJSON_ArrayForEach(p, array_or_null(parts)) {
        const char *name = str_of(p, "name"), *state = str_of(p, "state");
        if (name && strcmp(name, partition) == 0) {
            rc = state && strcmp(state, "UP") == 0;
            break;
        }
    }
    if (rc < 0)
        snprintf(err, errlen, "Slurm has no partition \"%s\"", partition);
    cJSON_Delete(j);
    return rc;
}

/* A job record's state and exit into out (GET job/ID and GET jobs share
 * it). 0, or -1 with err. */
static int rest_jobinfo(const cJSON *jb, slurm_jobinfo *out, char *err,
                        size_t errlen)
{
    uint64_t id, ws = 0, restarts = 0, start = 0, end = 0;
    const char *state = str_of(jb, "job_state");
    if (num_of(jb, "job_id", 9007199254740992.0, &id) != 0 || id == 0 ||
        !state || !*state) {
        snprintf(err, errlen, "a job of slurmrestd's answer has no job_id "
                 "or job_state");
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->id = id;
    clean_copy(out->state, sizeof out->state, state);
    clean_copy(out->name, sizeof out->name, str_of(jb, "name"));
    clean_copy(out->reason, sizeof out->reason, str_of(jb, "state_reason"));
    out->phase = slurm_state_phase(out->state);
    /* exit_code is the wait status: code << 8 | signal. */
    if (cJSON_GetObjectItemCaseSensitive(jb, "exit_code") &&
        num_of(jb, "exit_code", 65535, &ws) != 0) {
        snprintf(err, errlen, "job %" PRIu64 ": exit_code is not a wait "
                 "status", id);
        return -1;
    }
    out->exit_code = (int)(ws >> 8);
    out->exit_signal = (int)(ws & 0x7f);
    (void)num_of(jb, "restart_cnt", UINT32_MAX, &restarts);
    if (restarts && (out->phase == SLURM_WAITING ||
                     out->phase == SLURM_RUNNING)) {
        /* 22.05's slurmrestd takes no "requeue": false: a job Slurm ran
         * again itself is retried elsewhere, as --no-requeue would. */
        snprintf(out->state, sizeof out->state, "REQUEUED");
        snprintf(out->reason, sizeof out->reason, "requeued by Slurm");
        out->phase = SLURM_RETRY;
    }
    if (out->phase != SLURM_WAITING && out->phase != SLURM_RUNNING &&
        num_of(jb, "start_time", 1e12, &start) == 0 &&
        num_of(jb, "end_time", 1e12, &end) == 0 && start && end >= start) {
        out->elapsed_s = end - start;
        out->has_elapsed = 1;
    }
    return 0;
}

int slurm_rest_parse_job(const char *text, size_t len, uint64_t id,
                         slurm_jobinfo *out, char *err, size_t errlen)
{
    cJSON *j = parse_object(text, len, err, errlen), *jb;
    if (!j)
        return -1;
    char errs[400];
    int num = errors_of(j, errs, sizeof errs), rc = -1;
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
    if (num == 2017) {   /* ESLURM_INVALID_JOB_ID: purged (MinJobAge) */
        rc = 1;
    } else if (!cJSON_IsArray(jobs)) {
        snprintf(err, errlen, "slurmrestd's answer has no jobs%s%s",
                 errs[0] ? ": " : "", errs);
    } else {
        snprintf(err, errlen, "slurmrestd's answer has no job %" PRIu64, id);
        cJSON_ArrayForEach(jb, jobs) {
            slurm_jobinfo ji;
            uint64_t jid;
            if (num_of(jb, "job_id", 9007199254740992.0, &jid) != 0 || jid != id)
                continue;
            rc = rest_jobinfo(jb, &ji, err, errlen);
            if (rc == 0)
                *out = ji;
            break;
        }
    }
    cJSON_Delete(j);
    return rc;
}

int slurm_rest_parse_jobs(const char *text, size_t len, const char *user,
                          slurm_qjob **out, size_t *n, char *err,
                          size_t errlen)
{
    *out = NULL;
    *n = 0;
    cJSON *j = parse_object(text, len, err, errlen), *jb;
    if (!j)
        return -1;
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(j, "jobs");
    if (!cJSON_IsArray(jobs)) {
        char errs[300];
        errors_of(j, errs, sizeof errs);
        snprintf(err, errlen, "slurmrestd's answer has no jobs%s%s",
                 errs[0] ? ": " : "", errs);
        cJSON_Delete(j);
        return -1;
    }
    size_t cap = 0;
    int rc = 0;
    cJSON_ArrayForEach(jb, jobs) {
        const char *name = str_of(jb, "name"), *who = str_of(jb, "user_name");
        slurm_qjob q;
        memset(&q, 0, sizeof q);
        if (slurm_job_name_parse(name, &q.job, &q.attempt) != 0 ||
            (user && (!who || strcmp(who, user) != 0)))
            continue;   /* not ours */
        slurm_jobinfo ji;
        if ((rc = rest_jobinfo(jb, &ji, err, errlen)) != 0)
            break;
        q.id = ji.id;
        q.phase = ji.phase;
        snprintf(q.state, sizeof q.state, "%s", ji.state);
        clean_copy(q.comment, sizeof q.comment, str_of(jb, "comment"));
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            slurm_qjob *v = realloc(*out, nc * sizeof *v);
            if (!v) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            *out = v;
            cap = nc;
        }
        (*out)[(*n)++] = q;
    }
    cJSON_Delete(j);
    if (rc) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int slurm_rest_parse_submit(const char *text, size_t len, uint64_t *id,
                            char *err, size_t errlen)
{
    cJSON *j = parse_object(text, len, err, errlen);
    if (!j)
        return -1;
    char errs[400];
    errors_of(j, errs, sizeof errs);
    int rc = 0;
    /* A job id means the job is queued: its errors are what sbatch says
     * as warnings ("Required node not available", "Job is in held
     * state"). */
    *id = 0;
    if (num_of(j, "job_id", 9007199254740992.0, id) != 0 || !*id) {
        snprintf(err, errlen, "%s", errs[0] ? errs
                 : "its answer is not a job id");
        *id = 0;
        rc = -1;
    }
    cJSON_Delete(j);
    return rc;
}

/* ---- the job description ---- */

/* One argument single-quoted for sh ('\'' for a quote). */
static int put_quoted(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = 3 + strlen(s) * 4;
    if (*len + need + 2 > *cap) {
        size_t nc = (*cap + need) * 2;
        char *b = realloc(*buf, nc);
        if (!b)
            return -1;
        *buf = b;
        *cap = nc;
    }
    char *o = *buf + *len;
    *o++ = ' ';
    *o++ = '\'';
    for (; *s; s++) {
        if (*s == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *s;
        }
    }
    *o++ = '\'';
    *o = '\0';
    *len = (size_t)(o - *buf);
    return 0;
}

char *slurm_rest_submit_body(const slurm_submit *sb, int hold)
{
    size_t len = 0, cap = 256;
    char *script = malloc(cap);
    if (!script)
        return NULL;
    len = (size_t)snprintf(script, cap, "#!/bin/sh\nexec");
    for (size_t i = 0; sb->argv && sb->argv[i]; i++)
        if (put_quoted(&script, &len, &cap, sb->argv[i]) != 0) {
            free(script);
            return NULL;
        }
    if (!sb->argv || !sb->argv[0])
        len = (size_t)snprintf(script, cap, "#!/bin/sh\ntrue");
    script[len++] = '\n';
    script[len] = '\0';
    cJSON *root = cJSON_CreateObject(), *job = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "script", script);
    free(script);
    cJSON_AddItemToObject(root, "job", job);
    cJSON_AddStringToObject(job, "name", sb->name);
    cJSON_AddStringToObject(job, "partition", sb->partition);
    if (sb->account)
        cJSON_AddStringToObject(job, "account", sb->account);
    if (sb->qos)
        cJSON_AddStringToObject(job, "qos", sb->qos);
    cJSON *nodes = cJSON_AddArrayToObject(job, "nodes");
    cJSON_AddItemToArray(nodes, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(nodes, cJSON_CreateNumber(1));
    cJSON_AddNumberToObject(job, "tasks", 1);
    cJSON_AddNumberToObject(job, "cpus_per_task", sb->rq->cpus);
    cJSON_AddNumberToObject(job, "memory_per_node", sb->rq->memory_mb);
    if (sb->rq->gpus) {
        char g[40];
        snprintf(g, sizeof g, "gpu:%u", sb->rq->gpus);
        cJSON_AddStringToObject(job, "gres", g);
    }
    char t[32];
    slurm_time_arg(t, sizeof t, sb->rq->timeout_s);
    if (t[0])
        cJSON_AddNumberToObject(job, "time_limit", strtod(t, NULL));
    /* Asked for, though 22.05 does not honour it: rest_jobinfo retries a
     * job Slurm requeued. */
    cJSON_AddFalseToObject(job, "requeue");
    if (hold)
        cJSON_AddTrueToObject(job, "hold");
    /* Only PATH goes with the job, as with sbatch --export=PATH. */
    cJSON *env = cJSON_AddObjectToObject(job, "environment");
    const char *path = getenv("PATH");
    cJSON_AddStringToObject(env, "PATH", path ? path : "/usr/bin:/bin");
    if (sb->comment)
        cJSON_AddStringToObject(job, "comment", sb->comment);
    char out[4200];
    if (sb->dir) {
        cJSON_AddStringToObject(job, "current_working_directory", sb->dir);
        snprintf(out, sizeof out, "%s/slurm.out", sb->dir);
        cJSON_AddStringToObject(job, "standard_output", out);
    } else {
        cJSON_AddStringToObject(job, "current_working_directory", "/");
        cJSON_AddStringToObject(job, "standard_output", "/dev/null");
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return text;
}

/* ---- talking to slurmrestd ---- */

typedef struct reply {
    char *body;
    size_t len, cap;
    long status;
} reply;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    reply *r = ud;
    size_t n = size * nmemb;
    if (r->len + n > REPLY_MAX)
        return 0;   /* too large: the transfer fails */
    if (r->len + n + 1 > r->cap) {   /* doubling: a large list is copied
                                        a few times, not once a chunk */
        size_t nc = r->cap ? r->cap : 16384;
        while (nc < r->len + n + 1)
            nc *= 2;
        char *b = realloc(r->body, nc);
        if (!b)
            return 0;
        r->body = b;
        r->cap = nc;
    }
    memcpy(r->body + r->len, p, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* The token file's token: its first line, a "SLURM_JWT=" prefix (what
 * `scontrol token` prints) taken off. 0, or -1 with why. */
static int read_token(const char *path, char *out, size_t n, char *why,
                      size_t wn)
{
    size_t len = 0;
    char *text = node_read_file(path, TOKEN_MAX, &len);
    if (!text) {
        snprintf(why, wn, "slurmrestd_token_file %s cannot be read", path);
        return -1;
    }
    char *t = text;
    if (strncmp(t, "SLURM_JWT=", 10) == 0)
        t += 10;
    size_t l = strcspn(t, "\r\n");
    int ok = l > 0 && l < n;
    for (size_t i = 0; ok && i < l; i++)
        ok = isgraph((unsigned char)t[i]);
    if (ok) {
        memcpy(out, t, l);
        out[l] = '\0';
    } else {
        snprintf(why, wn, "slurmrestd_token_file %s holds no token", path);
    }
    sodium_memzero(text, len);
    free(text);
    return ok ? 0 : -1;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_start(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* One request. 0 when slurmrestd answered (r->status, r->body), -1 with
 * why when it did not ("slurmrestd does not answer ..."). */
static int call(const node_config *cfg, const char *method, const char *path,
                const char *body, reply *r, char *why, size_t wn)
{
    memset(r, 0, sizeof *r);
    const char *where = cfg->slurm_rest;
    int unix_socket = strncmp(where, "unix:", 5) == 0;
    char url[400], hdr[TOKEN_MAX + 64];
    snprintf(url, sizeof url, "%s%s%s", unix_socket ? "http://slurmrestd"
             : where, API, path);
    struct curl_slist *h = NULL;
    pthread_once(&curl_once, curl_start);
    if (cfg->slurm_rest_token) {
        char tok[TOKEN_MAX];
        if (read_token(cfg->slurm_rest_token, tok, sizeof tok, why, wn) != 0)
            return -1;
        snprintf(hdr, sizeof hdr, "X-SLURM-USER-NAME: %s", cfg->slurm_rest_user);
        h = curl_slist_append(h, hdr);
        snprintf(hdr, sizeof hdr, "X-SLURM-USER-TOKEN: %s", tok);
        h = curl_slist_append(h, hdr);
        sodium_memzero(tok, sizeof tok);
        sodium_memzero(hdr, sizeof hdr);
    }
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    CURL *c = curl_easy_init();
    if (!c) {
        curl_slist_free_all(h);
        snprintf(why, wn, "slurmrestd does not answer (no curl handle)");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (unix_socket)
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, where + 5);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        snprintf(why, wn, "slurmrestd does not answer at %s (%s)", where,
                 curl_easy_strerror(rc));
        free(r->body);
        memset(r, 0, sizeof *r);
        return -1;
    }
    if (r->status == 401 || r->status == 403) {
        snprintf(why, wn, "slurmrestd at %s refuses this gateway (HTTP %ld:"
                 " check slurmrestd_user and the token in "
                 "slurmrestd_token_file)", where, r->status);
        free(r->body);
        memset(r, 0, sizeof *r);
        return -1;
    }
    return 0;
}

/* Does Slurm's error mean slurmctld is away rather than a refusal? Its
 * communication errors (1000-1999, 5000-5999) say so; 22.05's slurmrestd
 * answers a slurmctld that is down with an error of no number
 * ("Unspecified error"), as it does a token slurmctld refuses. */
static int ctld_away(int num, const char *words)
{
    return (num >= 1000 && num < 2000) || (num >= 5000 && num < 6000) ||
           (num == 0 && strstr(words, "Unspecified error")) ||
           strstr(words, "contact slurm controller") ||
           strstr(words, "Unable to contact") ||
           strstr(words, "Socket timed out") ||
           strstr(words, "Connection refused");
}

/* A reply with errors or a status other than 200, as why: "slurmctld
 * does not answer (slurmrestd: ...)" when that is what it says. */
static void reply_why(const reply *r, const char *what, char *why, size_t wn)
{
    char errs[400];
    int num = slurm_rest_errors(r->body, r->len, errs, sizeof errs);
    if (!errs[0])
        snprintf(errs, sizeof errs, "HTTP %ld", r->status);
    if (ctld_away(num, errs))
        snprintf(why, wn, "slurmctld does not answer (slurmrestd %s: %s%s)",
                 what, errs, num ? "" : "; or it refuses the token of "
                 "slurmrestd_token_file");
    else
        snprintf(why, wn, "slurmrestd %s: %s", what, errs);
}

/* ---- the backend ---- */

static int rest_capacity(const node_config *cfg, slurm_capacity *cap,
                         int *up, char *why, size_t n)
{
    char path[120], err[300];
    reply r;
    snprintf(path, sizeof path, "partition/%s", cfg->slurm_partition);
    if (call(cfg, "GET", path, NULL, &r, why, n) != 0)
        return -1;
    int rc = slurm_rest_parse_partition(r.body, r.len, cfg->slurm_partition,
                                        err, sizeof err);
    if (rc < 0) {
        char errs[400];
        int num = slurm_rest_errors(r.body, r.len, errs, sizeof errs);
        if (num == 2000 || (r.status == 200 && !errs[0]))
            snprintf(why, n, "%s", err);   /* no such partition */
        else
            reply_why(&r, "GET partition", why, n);
        free(r.body);
        return -1;
    }
    *up = rc;
    free(r.body);
    if (call(cfg, "GET", "nodes", NULL, &r, why, n) != 0)
        return -1;
    if (r.status != 200) {
        reply_why(&r, "GET nodes", why, n);
        free(r.body);
        return -1;
    }
    rc = slurm_rest_parse_nodes(r.body, r.len, cfg->slurm_partition, cap, err,
                                sizeof err);
    free(r.body);
    if (rc != 0)
        snprintf(why, n, "slurmrestd GET nodes: %s", err);
    return rc;
}

static int rest_queue(const node_config *cfg, slurm_qjob **v, size_t *nv,
                      char *why, size_t n)
{
    reply r;
    char err[300];
    *v = NULL;
    *nv = 0;
    if (call(cfg, "GET", "jobs", NULL, &r, why, n) != 0)
        return -1;
    if (r.status != 200) {
        reply_why(&r, "GET jobs", why, n);
        free(r.body);
        return -1;
    }
    /* Without JWT slurmrestd acts as this process's user, and lists every
     * user's jobs: only ours (squeue --me). */
    const char *user = cfg->slurm_rest_user;
    char buf[1024];
    struct passwd pw, *pwp = NULL;
    if (!user && getpwuid_r(geteuid(), &pw, buf, sizeof buf, &pwp) == 0 && pwp)
        user = pwp->pw_name;
    if (!user) {
        snprintf(why, n, "slurmrestd GET jobs: this process's user has no name");
        free(r.body);
        return -1;
    }
    int rc = slurm_rest_parse_jobs(r.body, r.len, user, v, nv, err, sizeof err);
    free(r.body);
    if (rc != 0)
        snprintf(why, n, "slurmrestd GET jobs: %s", err);
    return rc;
}

static int rest_job(const node_config *cfg, uint64_t id, slurm_jobinfo *ji)
{
    char path[64], why[300], err[300];
    reply r;
    snprintf(path, sizeof path, "job/%" PRIu64, id);
    if (call(cfg, "GET", path, NULL, &r, why, sizeof why) != 0)
        return -1;
    int rc = slurm_rest_parse_job(r.body, r.len, id, ji, err, sizeof err);
    free(r.body);
    return rc;
}

static int rest_submit(const node_config *cfg, const slurm_submit *sb,
                       int test, uint64_t *id, char *why, size_t n)
{
    char *body = slurm_rest_submit_body(sb, test);
    if (!body) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    reply r;
    int rc = call(cfg, "POST", "job/submit", body, &r, why, n);
    cJSON_free(body);
    if (rc != 0)
        return -1;
    char err[400];
    uint64_t got = 0;
    rc = slurm_rest_parse_submit(r.body, r.len, &got, err, sizeof err);
    if (rc != 0) {
        char errs[400];
        int num = slurm_rest_errors(r.body, r.len, errs, sizeof errs);
        if (ctld_away(num, errs))
            snprintf(why, n, "slurmctld does not answer (slurmrestd: %s)", err);
        else
            snprintf(why, n, "sbatch refused the job: %s", err);
    }
    free(r.body);
    if (rc == 0 && test) {
        /* Held, never run: only asked whether Slurm would take it. */
        char path[64];
        snprintf(path, sizeof path, "job/%" PRIu64, got);
        if (call(cfg, "DELETE", path, NULL, &r, why, n) == 0)
            free(r.body);
    } else if (rc == 0) {
        *id = got;
    }
    return rc;
}

static void rest_cancel(const node_config *cfg, uint64_t id)
{
    char path[64], why[300];
    reply r;
    snprintf(path, sizeof path, "job/%" PRIu64, id);
    if (call(cfg, "DELETE", path, NULL, &r, why, sizeof why) == 0)
        free(r.body);
}

const slurm_backend slurm_restd = {
    .name = "slurmrestd",
    .capacity = rest_capacity,
    .queue = rest_queue,
    .job = rest_job,
    .submit = rest_submit,
    .cancel = rest_cancel,
};

/* DATA/outbox: results that are finished but not yet accepted. Each is
 * written (0600) before its first delivery and removed once the
 * orchestrator has accepted it or refused it for good, so a node that stops
 * (or is killed) while the orchestrator is away does not lose the work it
 * was paid for: the next `start` delivers what is left. Until then the job
 * stays in the heartbeat's "running" list, so the orchestrator does not take
 * it back as never delivered.
 *
 * The file is synced to disk only when that first delivery does not go
 * through (outbox_sync): an fsync before every delivery was the largest
 * wait of a short job's round on the network (issue 22). What that gives
 * up: a machine that loses power during the first POST (milliseconds)
 * loses the result, as if the job had been running; the orchestrator
 * takes the job back when the node is lost. A killed process loses
 * nothing (the file is written). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"

#define OUTBOX_FILE_MAX (1024u * 1024u)

static void listed_add(agent *a, uint64_t job)
{
    pthread_mutex_lock(&a->mu);
    uint64_t *v = realloc(a->outbox, (a->n_outbox + 1) * sizeof *v);
    if (v) {
        a->outbox = v;
        a->outbox[a->n_outbox++] = job;
    }
    pthread_mutex_unlock(&a->mu);
}

static void listed_remove(agent *a, uint64_t job)
{
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n_outbox; i++)
        if (a->outbox[i] == job) {
            a->outbox[i] = a->outbox[--a->n_outbox];
            break;
        }
    pthread_mutex_unlock(&a->mu);
}

/* ---- spare files ----
 * A result's file made and removed for every job cost the node about a
 * tenth of its CPU (the file system's inode allocation and eviction). An
 * accepted result's file is renamed to DATA/outbox/spare-K.tmp instead, and
 * the next result is written into it and renamed to its own name. A spare's
 * name is no result's (the loader takes only .json), so a node killed while
 * it fills one loses nothing, as with a new file; the next start takes the
 * spares it finds up again (spare_adopt), so none is left for good. */

#define OUTBOX_SPARES 8u

static void spare_path(const agent *a, unsigned k, char *out, size_t cap)
{
    snprintf(out, cap, "%s/outbox/spare-%u.tmp", a->o->data_dir, k);
}

/* A spare to fill, or -1 when none waits. */
static int spare_take(agent *a)
{
    int k = -1;
    pthread_mutex_lock(&a->mu);
    if (a->spare_ready) {
        k = __builtin_ctz(a->spare_ready);
        a->spare_ready &= ~(1u << k);
    }
    pthread_mutex_unlock(&a->mu);
    return k;
}

/* Spare k is no longer a file (renamed to a result, or never made). */
static void spare_gone(agent *a, int k)
{
    pthread_mutex_lock(&a->mu);
    a->spare_held &= ~(1u << k);
    pthread_mutex_unlock(&a->mu);
}

/* `text` into spare k, then renamed to `path`: 0, or -1 (the spare gone). */
static int spare_fill(agent *a, int k, const char *path, const char *text,
                      size_t len)
{
    char sp[PATH_MAX];
    spare_path(a, k, sp, sizeof sp);
    int fd = open(sp, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    size_t done = 0;
    while (fd >= 0 && done < len) {
        ssize_t w = pwrite(fd, text + done, len - done, (off_t)done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int ok = fd >= 0 && done == len && ftruncate(fd, (off_t)len) == 0;
    if (fd >= 0)
        ok = close(fd) == 0 && ok;
    ok = ok && rename(sp, path) == 0;
    if (!ok)
        unlink(sp);
    spare_gone(a, k);
    return ok ? 0 : -1;
}

/* A taken result's file becomes a spare; removed when enough wait. The
 * rename is made under the lock: a spare is ready as soon as it is there. */
static void spare_keep(agent *a, const char *path)
{
    char sp[PATH_MAX];
    pthread_mutex_lock(&a->mu);
    unsigned free_bits = ~a->spare_held & ((1u << OUTBOX_SPARES) - 1);
    int k = free_bits ? __builtin_ctz(free_bits) : -1;
    if (k >= 0)
        spare_path(a, k, sp, sizeof sp);
    int kept = k >= 0 && rename(path, sp) == 0;
    if (kept) {
        a->spare_held |= 1u << k;
        a->spare_ready |= 1u << k;
    }
    pthread_mutex_unlock(&a->mu);
    if (!kept && unlink(path) != 0 && errno != ENOENT)
        fprintf(stderr, "rhizos-node: cannot remove %s: %s\n", path,
                strerror(errno));
}

/* DATA/outbox/`name`, seen at start: a file of spare K's name (an earlier
 * run's, maybe one it was filling when it was killed) is a spare again,
 * refilled by a result or removed at stop. A link or a folder of that name
 * is not taken up (spare_keep's rename replaces a link). */
static void spare_adopt(agent *a, const char *name, unsigned char type)
{
    char want[16];
    if (strncmp(name, "spare-", 6) != 0 || (type != DT_REG && type != DT_UNKNOWN))
        return;
    unsigned k = (unsigned)(name[6] - '0');   /* at worst its NUL: no spare */
    if (k >= OUTBOX_SPARES)
        return;
    snprintf(want, sizeof want, "spare-%u.tmp", k);
    if (strcmp(name, want) != 0)
        return;
    pthread_mutex_lock(&a->mu);
    a->spare_held |= 1u << k;
    a->spare_ready |= 1u << k;
    pthread_mutex_unlock(&a->mu);
}

void outbox_spares_free(agent *a)
{
    char sp[PATH_MAX];
    pthread_mutex_lock(&a->mu);
    for (unsigned k = 0; k < OUTBOX_SPARES; k++)
        if (a->spare_ready & (1u << k)) {
            spare_path(a, k, sp, sizeof sp);
            unlink(sp);
        }
    a->spare_held &= ~a->spare_ready;
    a->spare_ready = 0;
    pthread_mutex_unlock(&a->mu);
}

/* The result's file: a spare refilled, else a new file. */
static int put_text(agent *a, const char *dir, const char *path,
                    const char *text, size_t len)
{
    int k = spare_take(a);
    if (k >= 0 && spare_fill(a, k, path, text, len) == 0)
        return 0;
    int rc = node_write_file(path, text, len, 0);
    /* The folder is made the first time, not checked at every result. */
    if (rc != 0 && errno == ENOENT && node_mkdirs(dir) == 0)
        rc = node_write_file(path, text, len, 0);
    return rc;
}

int outbox_put(agent *a, uint64_t node, uint64_t job, uint32_t attempt,
               const cJSON *result, char *path, size_t cap)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/outbox", a->o->data_dir);
    if (snprintf(path, cap, "%s/%" PRIu64 "-%u.json", dir, job, attempt) >= (int)cap)
        return -1;
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "node", (double)node);
    cJSON_AddStringToObject(doc, "orchestrator", a->url);
    cJSON_AddNumberToObject(doc, "job", (double)job);
    cJSON_AddNumberToObject(doc, "attempt", attempt);
    cJSON_AddItemToObject(doc, "result", cJSON_Duplicate(result, 1));
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    int rc = text ? put_text(a, dir, path, text, strlen(text)) : -1;
    cJSON_free(text);
    if (rc == 0)
        listed_add(a, job);
    return rc;
}

void outbox_sync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 || fsync(fd) != 0)
        fprintf(stderr, "rhizos-node: cannot sync %s: %s\n", path,
                strerror(errno));
    if (fd >= 0)
        close(fd);
}

void outbox_done(agent *a, const char *path, uint64_t job)
{
    spare_keep(a, path);
    listed_remove(a, job);
}

int outbox_final(int rc, long status)
{
    return rc == RZ_OK || (rc != RZ_ECONNECT && status >= 400 && status < 500 &&
                           status != 429);
}

/* ---- what an earlier run left ---- */

typedef struct entry {
    char path[PATH_MAX];
    uint64_t job;
    uint32_t attempt;
    cJSON *result;
} entry;

/* A whole number from 1 to `max` (ids and attempts: exact in a double),
 * else 0. The file is the node's own, but a torn or edited one must not
 * turn into a wrong id. */
static uint64_t whole(const cJSON *v, double max)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= max) ||
        v->valuedouble != (double)(uint64_t)v->valuedouble)
        return 0;
    return (uint64_t)v->valuedouble;
}

int outbox_parse(const char *text, size_t len, uint64_t node_id, const char *url_want,
                 uint64_t *job_out, uint32_t *attempt_out, cJSON **result)
{
    *result = NULL;
    cJSON *doc = text ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(doc, "node");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(doc, "orchestrator");
    uint64_t job = whole(cJSON_GetObjectItemCaseSensitive(doc, "job"), 9007199254740992.0);
    uint64_t att = whole(cJSON_GetObjectItemCaseSensitive(doc, "attempt"), UINT32_MAX);
    cJSON *res = cJSON_DetachItemFromObjectCaseSensitive(doc, "result");
    /* Only a result of this very registration can still be accepted. */
    int ok = cJSON_IsString(url) && job && att && cJSON_IsObject(res) &&
             whole(node, 9007199254740992.0) == node_id && node_id &&
             strcmp(url->valuestring, url_want) == 0;
    if (ok) {
        *job_out = job;
        *attempt_out = (uint32_t)att;
        *result = res;
    } else {
        cJSON_Delete(res);
    }
    cJSON_Delete(doc);
    return ok ? 0 : -1;
}

static int parse_entry(agent *a, const char *path, entry *e)
{
    size_t len = 0;
    char *text = node_read_file(path, OUTBOX_FILE_MAX, &len);
    int rc = a->need_register ? -1
           : outbox_parse(text, len, a->st.id, a->url, &e->job, &e->attempt, &e->result);
    free(text);
    if (rc == 0)
        snprintf(e->path, sizeof e->path, "%s", path);
    return rc;
}

struct outbox {
    agent *a;
    entry *v;
    size_t n;
    uint64_t generation;
};

outbox *outbox_load(agent *a)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/outbox", a->o->data_dir);
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    outbox *ob = calloc(1, sizeof *ob);
    struct dirent *de;
    while (ob && (de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0) {
            spare_adopt(a, de->d_name, de->d_type);
            continue;   /* ".", "..", and an interrupted write's ".tmp" */
        }
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= (int)sizeof path)
            continue;
        entry *v = realloc(ob->v, (ob->n + 1) * sizeof *v);
        if (!v)
            break;
        ob->v = v;
        if (parse_entry(a, path, &ob->v[ob->n]) == 0) {
            listed_add(a, ob->v[ob->n].job);
            ob->n++;
        } else {
            fprintf(stderr, "rhizos-node: %s: a result of another registration "
                    "(or unreadable); dropped\n", path);
            unlink(path);
        }
    }
    closedir(d);
    if (ob && !ob->n) {
        free(ob->v);
        free(ob);
        return NULL;
    }
    if (ob) {
        ob->a = a;
        ob->generation = a->generation;
    }
    return ob;
}

/* Deliver one left-over result until it is accepted, refused for good, or
 * the node stops (then it stays for the next start). */
static void deliver_entry(outbox *ob, entry *e)
{
    agent *a = ob->a;
    unsigned tries = 0;
    while (!agent_stopping(a)) {
        uint64_t node = 0, gen = 0;
        rz_client *c = agent_client(a, &node, &gen);
        if (c && gen != ob->generation) {
            agent_client_put(a, c, gen);
            outbox_done(a, e->path, e->job);   /* registered anew: void */
            return;
        }
        long status = 0;
        int rc = RZ_ENOMEM;
        if (c) {
            char path[96];
            snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/jobs/%" PRIu64
                     "/result", node, e->job);
            rc = node_call(c, "POST", path, e->result, 1, &status, NULL);
            agent_note(a, rc == RZ_ECONNECT ? rc : RZ_OK, 0);
            agent_client_put(a, c, gen);
        }
        if (outbox_final(rc, status)) {
            job_slot s = { .job = e->job, .attempt = e->attempt };
            agent_say(a, rc == RZ_OK ? "delivered" : "result-refused", &s, NULL,
                      rc == RZ_OK ? "a result left by an earlier run"
                                  : rz_strerror(rc), -1);
            outbox_done(a, e->path, e->job);
            return;
        }
        agent_sleep(a, agent_backoff(&tries));
    }
}

void *outbox_main(void *arg)
{
    outbox *ob = arg;
    for (size_t i = 0; i < ob->n && !agent_stopping(ob->a); i++)
        deliver_entry(ob, &ob->v[i]);
    return NULL;
}

void outbox_free(outbox *ob)
{
    if (!ob)
        return;
    for (size_t i = 0; i < ob->n; i++)
        cJSON_Delete(ob->v[i].result);
    free(ob->v);
    free(ob);
}

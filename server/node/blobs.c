/* File outputs on the network (docs/flow-format.md, "File outputs"): a
 * step's files go from this node's blob store (DATA/blobs, the attempt's
 * blob_dir) to the orchestrator's, and the files a job's inputs name come
 * back the same way, in parts of BLOB_PART bytes (PUT and GET
 * /api/v1/blobs/{sha256}), each hashed as it comes: at most one part is
 * ever in memory.
 *
 * The store is a working folder, not an archive: each running job holds
 * the files it fetched or made (a table in memory), and a file leaves the
 * store when the last job holding it ends. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent.h"
#include "blobs.h"

#define BLOB_PART (512u * 1024u)
#define TRIES 5
#define PART_TIMEOUT_MS 60000L

/* The status a call's outcome counts as: 0 for no answer, or an answer cut
 * short (its bytes, for a GET, are in the writer). */
static long answered(int rc, long status)
{
    return rc == RZ_OK || status >= 400 ? status : 0;
}

/* Why a part's answer (st, from answered) was not one the loop takes: the
 * client's error says it for a failure, not for an answer it took. */
static const char *reply_why(int crc, long st)
{
    if (!st)
        return "no answer";
    return crc == RZ_OK ? "an answer it does not take" : rz_error_last()->message;
}

/* "offset" of a part's reply (where the orchestrator is); -1 without. */
static double reply_offset(const char *reply)
{
    cJSON *r = cJSON_Parse(reply ? reply : "");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(r, "offset");
    double v = cJSON_IsNumber(o) ? o->valuedouble : -1;
    cJSON_Delete(r);
    return v;
}

/* One of the node's clients (its kept-alive connection to the
 * orchestrator), for the parts of one job's files; NULL when not
 * registered. Given back with agent_client_put. */
static rz_client *take_client(agent *a, uint64_t *generation)
{
    uint64_t node;
    rz_client *c = agent_client(a, &node, generation);
    if (c)   /* a part of a slow link's file: more than a call's */
        (void)!rz_client_set_timeout(c, PART_TIMEOUT_MS);
    return c;
}

void node_blobs_dir(const agent *a, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs", a->o->data_dir);
}

/* ---- which jobs hold which files ---- */

typedef struct held {
    uint64_t job;
    char hex[RZ_BLOB_HEX_LEN + 1];
} held;

static pthread_mutex_t held_mu = PTHREAD_MUTEX_INITIALIZER;
static held *held_v;
static size_t held_n, held_cap;

/* Job `job` holds file `hex` until node_blobs_release: -1 out of memory. */
static int hold(uint64_t job, const char *hex)
{
    int rc = 0;
    pthread_mutex_lock(&held_mu);
    if (held_n == held_cap) {
        size_t cap = held_cap ? held_cap * 2 : 16;
        held *v = realloc(held_v, cap * sizeof *v);
        if (v) {
            held_v = v;
            held_cap = cap;
        }
    }
    if (held_n < held_cap) {
        held_v[held_n].job = job;
        memcpy(held_v[held_n++].hex, hex, RZ_BLOB_HEX_LEN + 1);
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&held_mu);
    return rc;
}

void node_blobs_release(agent *a, uint64_t job)
{
    char dir[4096], path[4400];
    node_blobs_dir(a, dir, sizeof dir);
    pthread_mutex_lock(&held_mu);
    for (size_t i = 0; i < held_n;) {
        if (held_v[i].job != job) {
            i++;
            continue;
        }
        held h = held_v[i];
        held_v[i] = held_v[--held_n];
        int other = 0;
        for (size_t k = 0; k < held_n && !other; k++)
            other = strcmp(held_v[k].hex, h.hex) == 0;
        if (!other) {
            snprintf(path, sizeof path, "%s/sha256/%.2s/%s", dir, h.hex, h.hex);
            unlink(path);
        }
    }
    if (!held_n) {
        free(held_v);
        held_v = NULL;
        held_cap = 0;
    }
    pthread_mutex_unlock(&held_mu);
}

/* ---- up ---- */

static int upload(agent *a, rz_client *c, uint64_t job, const char *hex, char *why,
                  size_t n)
{
    char dir[4096];
    node_blobs_dir(a, dir, sizeof dir);
    int fd;
    uint64_t size;
    if (rz_blob_open(dir, hex, &fd, &size) != RZ_OK) {
        snprintf(why, n, "file %.12s...: %s", hex, rz_error_last()->message);
        return -1;
    }
    char *buf = malloc(BLOB_PART);
    uint64_t off = 0;
    unsigned tries = 0, conflicts = 0;
    int rc = buf ? 1 : -1;
    if (!buf)
        snprintf(why, n, "out of memory");
    while (rc == 1) {
        size_t len = (size_t)(size - off < BLOB_PART ? size - off : BLOB_PART);
        if (len && pread(fd, buf, len, (off_t)off) != (ssize_t)len) {
            snprintf(why, n, "file %.12s...: %s", hex, strerror(errno));
            rc = -1;
            break;
        }
        char path[256];
        snprintf(path, sizeof path, "/api/v1/blobs/%s?job=%" PRIu64 "&offset=%" PRIu64
                 "&size=%" PRIu64, hex, job, off, size);
        long status;
        char *reply = NULL;
        int crc = rz_client_put_bytes(c, path, buf, len, &status, &reply);
        long st = answered(crc, status);
        double next = reply_offset(reply);
        rz_free(reply);
        if (st == 201)
            rc = 0;
        else if ((st == 200 || st == 409) && next >= 0 && next <= (double)size) {
            off = (uint64_t)next;   /* on, or from where the orchestrator is */
            tries = st == 200 ? 0 : tries;   /* a limit (429) counts per part */
        }
        else if ((st == 0 || st >= 500 || st == 429) && tries < TRIES &&
                 !agent_sleep(a, agent_backoff(&tries)))
            continue;   /* the same part again */
        else {
            snprintf(why, n, "uploading file %.12s... to the orchestrator: HTTP "
                     "%ld: %s", hex, st, reply_why(crc, st));
            rc = -1;
        }
        if (st == 409 && ++conflicts >= TRIES) {
            snprintf(why, n, "uploading file %.12s...: the orchestrator kept "
                     "asking for byte %.0f", hex, next);
            rc = -1;
        }
    }
    free(buf);
    close(fd);
    return rc;
}

/* The step's `$file` outputs (top level, or in a list) uploaded, each
 * reference left without this node's path. */
static int up_refs(agent *a, rz_client *c, uint64_t job, cJSON *v, char *why, size_t n)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "$file");
    const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    if (cJSON_IsObject(f) && rz_blob_hex_ok(hex)) {
        cJSON_DeleteItemFromObjectCaseSensitive(f, "path");
        if (hold(job, hex) != 0) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        return upload(a, c, job, hex, why, n);
    }
    for (cJSON *e = cJSON_IsArray(v) ? v->child : NULL; e; e = e->next)
        if (up_refs(a, c, job, e, why, n) != 0)
            return -1;
    return 0;
}

int node_blobs_upload(agent *a, uint64_t job, char **outputs, char *why, size_t n)
{
    if (!*outputs || !strstr(*outputs, "\"$file\""))
        return 0;
    cJSON *o = cJSON_Parse(*outputs);
    uint64_t gen = 0;
    rz_client *c = o ? take_client(a, &gen) : NULL;
    int rc = c ? 0 : -1;
    if (rc)
        snprintf(why, n, "cannot send the step's files: %s", o ? "no registration "
                 "with the orchestrator, or out of memory" : "out of memory");
    for (cJSON *v = c ? o->child : NULL; v && rc == 0; v = v->next)
        rc = up_refs(a, c, job, v, why, n);
    agent_client_put(a, c, gen);
    char *text = rc == 0 ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (rc == 0 && !text) {
        snprintf(why, n, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        free(*outputs);
        *outputs = strdup(text);
        cJSON_free(text);
        if (!*outputs) {
            snprintf(why, n, "out of memory");
            rc = -1;
        }
    }
    return rc;
}

/* ---- down ---- */

/* Where a GET's bytes go: the writer, at most `want` of them. */
typedef struct part {
    rz_blob_writer *w;
    uint64_t want, got;
    int write_failed;
} part;

static int on_part(void *ud, const void *data, size_t len)
{
    part *k = ud;
    if (len > k->want - k->got || rz_blob_writer_write(k->w, data, len) != RZ_OK) {
        k->write_failed = 1;
        return RZ_EIO;
    }
    k->got += len;
    return RZ_OK;
}

static int download(agent *a, rz_client *c, uint64_t job, const char *hex,
                    uint64_t size, char *why, size_t n)
{
    char dir[4096];
    int fd;
    uint64_t have;
    node_blobs_dir(a, dir, sizeof dir);
    if (rz_blob_open(dir, hex, &fd, &have) == RZ_OK) {
        close(fd);
        return 0;   /* here already (its copy out checks the digest) */
    }
    rz_blob_writer *w = NULL;
    if (rz_blob_writer_open(&w, dir, size) != RZ_OK) {
        snprintf(why, n, "%s", rz_error_last()->message);
        return -1;
    }
    unsigned tries = 0;
    int rc = 1;
    while (rc == 1) {
        uint64_t off = rz_blob_writer_size(w);
        if (off == size) {
            rc = rz_blob_writer_commit(w, hex, NULL) == RZ_OK ? 0 : -1;
            if (rc)
                snprintf(why, n, "file %.12s... from the orchestrator: %s", hex,
                         rz_error_last()->message);
            break;
        }
        char path[256];
        snprintf(path, sizeof path, "/api/v1/blobs/%s?job=%" PRIu64 "&offset=%"
                 PRIu64, hex, job, off);
        part k = { w, size - off < BLOB_PART * 2u ? size - off : BLOB_PART * 2u, 0, 0 };
        long status;
        int crc = rz_client_get_bytes(c, path, on_part, &k, &status);
        long st = k.write_failed ? 200 : answered(crc, status);
        if (st == 200 && k.got && !k.write_failed) {
            tries = 0;
            continue;
        }
        if (k.write_failed || (st == 200 && !k.got)) {
            snprintf(why, n, "file %.12s... from the orchestrator: more bytes than "
                     "its size (%" PRIu64 ") or a write failed", hex, size);
            rc = -1;
        } else if ((st == 0 || st >= 500 || st == 429) && tries < TRIES &&
                   !agent_sleep(a, agent_backoff(&tries))) {
            /* a part cut short: its bytes are in the writer, go on from there */
        } else {
            snprintf(why, n, "fetching input file %.12s... from the orchestrator: "
                     "HTTP %ld: %s", hex, st, reply_why(crc, st));
            rc = -1;
        }
    }
    rz_blob_writer_free(w);
    return rc;
}

static int down_refs(agent *a, rz_client *c, uint64_t job, const cJSON *v,
                     char *why, size_t n)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "$file");
    const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
    if (cJSON_IsObject(f) && rz_blob_hex_ok(hex)) {
        /* The node's cap on one file holds for what comes in too. */
        uint64_t cap = (uint64_t)a->cfg.max_file_mb << 20;
        if (!cJSON_IsNumber(sz) || sz->valuedouble < 0 ||
            sz->valuedouble > (double)cap) {
            snprintf(why, n, "input file %.12s... has no size or is over this "
                     "node's cap on one file ([limits] max_file_mb = %u)", hex,
                     (unsigned)a->cfg.max_file_mb);
            return -1;
        }
        if (hold(job, hex) != 0) {
            snprintf(why, n, "out of memory");
            return -1;
        }
        return download(a, c, job, hex, (uint64_t)sz->valuedouble, why, n);
    }
    for (const cJSON *e = cJSON_IsArray(v) ? v->child : NULL; e; e = e->next)
        if (down_refs(a, c, job, e, why, n) != 0)
            return -1;
    return 0;
}

int node_blobs_fetch(agent *a, uint64_t job, const cJSON *request, char *why, size_t n)
{
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(request, "inputs");
    char *text = in ? cJSON_PrintUnformatted(in) : NULL;
    int any = text && strstr(text, "\"$file\"");
    cJSON_free(text);
    if (!any)
        return 0;
    uint64_t gen = 0;
    rz_client *c = take_client(a, &gen);
    int rc = c ? 0 : -1;
    if (rc)
        snprintf(why, n, "cannot fetch the step's files: no registration with the "
                 "orchestrator, or out of memory");
    for (const cJSON *v = rc ? NULL : in->child; v && rc == 0; v = v->next)
        rc = down_refs(a, c, job, v, why, n);
    agent_client_put(a, c, gen);
    return rc;
}

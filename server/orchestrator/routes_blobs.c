/* File outputs on the network (docs/flow-format.md, "File outputs"): the
 * blobs nodes upload and fetch, in parts, through DATA/blobs (the same
 * content-addressed store as embedded runs: rhizos/store.h).
 *
 * evhttp holds a whole request body, so a file moves in parts of at most
 * ORCH_BLOB_PART_MAX bytes, each its own request: memory stays bounded by
 * one part whatever the file's size. An upload in progress is a writer
 * (a temporary file and a hash state) in a small table; a part must start
 * where the last one ended (else 409 saying where), and the last part's
 * commit checks the digest the path names before the blob is stored.
 * (libevent's server has no callback for a body as it arrives; a reply
 * streamed in chunks would need its own flow control: parts need
 * neither, and a node resumes a cut transfer where it stood.) The disk
 * work is on the loop: one part's write or read, one fsync a file.
 *
 * Who may read a blob is kept beside it, as hard links to it:
 * DATA/blobs/owners/a<account>/<hex> for the account whose job uploaded
 * it, and .../d<deployment>/<hex> (or j<job>/ for a standalone job) for
 * that job's deployment. A blob is an account's only once one of its jobs
 * sent its bytes (a node cannot claim another account's file by naming its
 * digest); any of the account's jobs may then name it (a resumed run
 * reuses an earlier run's outputs, never across accounts). A deployment's
 * total is the size of its folder; retention removes the folder, and a
 * blob left with no deployment's link (the store's and the accounts'
 * alone) leaves with its account links. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "orch.h"

typedef struct blob_up {
    char hex[RZ_BLOB_HEX_LEN + 1];
    uint64_t job, size, last_ms;
    rz_blob_writer *w;
} blob_up;

static void blobs_dir(const orch *o, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs", o->opts.data);
}

/* The owners folder of a job: its deployment's, or its own. */
static void owner_dir(const orch *o, uint64_t dep, uint64_t job, char *out, size_t cap)
{
    if (dep)
        snprintf(out, cap, "%s/blobs/owners/d%" PRIu64, o->opts.data, dep);
    else
        snprintf(out, cap, "%s/blobs/owners/j%" PRIu64, o->opts.data, job);
}

static void account_dir(const orch *o, rz_ledger_id account, char *out, size_t cap)
{
    char id[33];
    rz_ledger_id_format(account, id);
    snprintf(out, cap, "%s/blobs/owners/a%s", o->opts.data, id);
}

/* Whether the account's jobs uploaded blob `hex`; *size its size. */
static bool owned(const orch *o, rz_ledger_id account, const char *hex, uint64_t *size)
{
    char dir[4096], path[4400];
    struct stat st;
    account_dir(o, account, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s", dir, hex);
    if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    if (size)
        *size = (uint64_t)st.st_size;
    return true;
}

/* Bytes a deployment's (or job's) files take. */
static uint64_t owned_total(const orch *o, uint64_t dep, uint64_t job)
{
    char dir[4096], path[4400];
    owner_dir(o, dep, job, dir, sizeof dir);
    DIR *d = opendir(dir);
    uint64_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && lstat(path, &st) == 0 && S_ISREG(st.st_mode))
            n += (uint64_t)st.st_size;
    }
    if (d)
        closedir(d);
    return n;
}

static int mkdir_p(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static int link_into(const orch *o, const char *dir, const char *hex)
{
    char from[4200], to[4200];
    snprintf(from, sizeof from, "%s/blobs/sha256/%.2s/%s", o->opts.data, hex, hex);
    snprintf(to, sizeof to, "%s/%s", dir, hex);
    if (mkdir_p(dir) != 0 || (link(from, to) != 0 && errno != EEXIST)) {
        orch_log((orch *)o, ORCH_LOG_ERROR, "blob_not_owned", "dir", LOG_STR, dir,
                 "reason", LOG_STR, strerror(errno), NULL);
        return RZ_EIO;
    }
    return RZ_OK;
}

/* The blob, stored, made the job's deployment's and account's: the
 * deployment's link first, so a blob the account holds always has one. */
static int own(const orch *o, const rz_engine_job_info *ji, const char *hex)
{
    char dir[4096];
    owner_dir(o, ji->deployment, ji->id, dir, sizeof dir);
    int rc = link_into(o, dir, hex);
    account_dir(o, ji->client, dir, sizeof dir);
    return rc == RZ_OK ? link_into(o, dir, hex) : rc;
}

/* ---- uploads in progress ---- */

static void up_drop(orch *o, size_t i)
{
    rz_blob_writer_free(o->blob_ups[i].w);
    o->blob_ups[i] = o->blob_ups[--o->n_blob_ups];
}

/* Uploads idle past ORCH_BLOB_IDLE_MS are dropped (a node that went away). */
static void up_expire(orch *o, uint64_t now)
{
    for (size_t i = 0; i < o->n_blob_ups;)
        if (now - o->blob_ups[i].last_ms > ORCH_BLOB_IDLE_MS)
            up_drop(o, i);
        else
            i++;
}

static blob_up *up_find(orch *o, const char *hex, uint64_t job)
{
    for (size_t i = 0; i < o->n_blob_ups; i++)
        if (o->blob_ups[i].job == job && strcmp(o->blob_ups[i].hex, hex) == 0)
            return &o->blob_ups[i];
    return NULL;
}

int orch_blobs_start(orch *o)
{
    char dir[4096], path[4400];
    blobs_dir(o, dir, sizeof dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, "tmp.", 4) == 0) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    if (d)
        closedir(d);
    return 0;
}

void orch_blobs_free(orch *o)
{
    while (o->n_blob_ups)
        up_drop(o, 0);
    free(o->blob_ups);
    o->blob_ups = NULL;
}

/* ---- requests ---- */

static bool hex_param(req *q)
{
    if (rz_blob_hex_ok(q->params[0]))
        return true;
    reply_error(q, RZ_EINVAL, "\"%.70s\" is not a SHA-256 digest (64 lowercase "
                "hex digits)", q->params[0]);
    return false;
}

/* The job named by ?job=, which must be open on the calling node. */
static bool node_job(req *q, uint64_t *job, rz_engine_job_info *ji)
{
    if (!query_u64(q, "job", 0, UINT64_MAX, job))
        return false;
    if (!*job) {
        reply_error(q, RZ_EINVAL, "?job= names the job the file is for");
        return false;
    }
    if (rz_engine_job_get(q->o->e, *job, ji) != RZ_OK || ji->node != q->who.node ||
        (ji->state != RZ_JOB_RUNNING && ji->state != RZ_JOB_ASSIGNED)) {
        reply_error(q, RZ_EDENIED, "job %" PRIu64 " is not running on this node",
                    *job);
        return false;
    }
    return true;
}

static void reply_offset(req *q, int code, uint64_t offset, bool complete,
                         const char *msg)
{
    cJSON *doc = cJSON_CreateObject();
    if (msg) {
        cJSON *err = cJSON_AddObjectToObject(doc, "error");
        cJSON_AddStringToObject(err, "code", rz_status_name(RZ_ESTATE));
        cJSON_AddStringToObject(err, "message", msg);
    }
    cJSON_AddNumberToObject(doc, "offset", (double)offset);
    cJSON_AddBoolToObject(doc, "complete", complete);
    q->cbor = false;
    reply_json(q, code, doc);
}

/* The first part: the caps, then a new writer (an earlier one for the
 * same file and job starts again). */
static blob_up *up_start(req *q, const char *hex, uint64_t job,
                         const rz_engine_job_info *ji, uint64_t size)
{
    orch *o = q->o;
    uint64_t used = owned_total(o, ji->deployment, job);
    if (used + size > o->opts.max_run_files) {
        reply_error(q, RZ_ETOOBIG, "the run's files would take %" PRIu64 " bytes; "
                    "its cap is %" PRIu64, used + size, o->opts.max_run_files);
        return NULL;
    }
    if (!o->blob_ups && !(o->blob_ups = calloc(ORCH_BLOB_UPLOADS, sizeof *o->blob_ups))) {
        reply_rz(q, RZ_ENOMEM);
        return NULL;
    }
    blob_up *u = up_find(o, hex, job);
    if (u) {
        rz_blob_writer_free(u->w);
        u->w = NULL;
    } else if (o->n_blob_ups == ORCH_BLOB_UPLOADS) {
        reply_limit(q, 5, "%u uploads are under way; retry", ORCH_BLOB_UPLOADS);
        return NULL;
    } else {
        u = &o->blob_ups[o->n_blob_ups++];
        memset(u, 0, sizeof *u);
        memcpy(u->hex, hex, sizeof u->hex);
        u->job = job;
    }
    char dir[4096];
    blobs_dir(o, dir, sizeof dir);
    u->size = size;
    if (rz_blob_writer_open(&u->w, dir, size) != RZ_OK) {
        reply_rz(q, rz_error_last()->code);
        up_drop(o, (size_t)(u - o->blob_ups));
        return NULL;
    }
    return u;
}

void r_blob_put(req *q)
{
    orch *o = q->o;
    uint64_t job, offset, size, now = orch_now_ms();
    rz_engine_job_info ji;
    if (!hex_param(q) || !node_job(q, &job, &ji) ||
        !query_u64(q, "offset", 0, UINT64_MAX, &offset) ||
        !query_u64(q, "size", UINT64_MAX, UINT64_MAX, &size))
        return;
    const char *hex = q->params[0];
    struct evbuffer *in = evhttp_request_get_input_buffer(q->r);
    size_t len = evbuffer_get_length(in);
    if (size == UINT64_MAX) {
        reply_error(q, RZ_EINVAL, "?size= gives the whole file's size");
        return;
    }
    if (size > o->opts.max_file) {
        reply_error(q, RZ_ETOOBIG, "a file of %" PRIu64 " bytes is over the cap "
                    "on one file (%" PRIu64 ")", size, o->opts.max_file);
        return;
    }
    if (len > ORCH_BLOB_PART_MAX || offset > size || len > size - offset) {
        reply_error(q, len > ORCH_BLOB_PART_MAX ? RZ_ETOOBIG : RZ_EINVAL,
                    "a part is at most %u bytes, within the file's size",
                    ORCH_BLOB_PART_MAX);
        return;
    }
    up_expire(o, now);
    blob_up *u = up_find(o, hex, job);
    if (offset == 0 && !(u = up_start(q, hex, job, &ji, size)))
        return;
    if (!u || !u->w || u->size != size || rz_blob_writer_size(u->w) != offset) {
        char msg[160];
        uint64_t at = u && u->w && u->size == size ? rz_blob_writer_size(u->w) : 0;
        snprintf(msg, sizeof msg, "this upload is at byte %" PRIu64 ": send "
                 "from there", at);
        reply_offset(q, 409, at, false, msg);
        return;
    }
    u->last_ms = now;
    /* evhttp's body is a chain of buffers: written as they lie. */
    int rc = RZ_OK;
    struct evbuffer_iovec v[16];
    while (rc == RZ_OK && evbuffer_get_length(in)) {
        int n = evbuffer_peek(in, -1, NULL, v, 16);
        size_t took = 0;
        for (int i = 0; i < n && i < 16 && rc == RZ_OK; i++) {
            rc = rz_blob_writer_write(u->w, v[i].iov_base, v[i].iov_len);
            took += v[i].iov_len;
        }
        evbuffer_drain(in, took);
    }
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        up_drop(o, (size_t)(u - o->blob_ups));
        return;
    }
    if (rz_blob_writer_size(u->w) < size) {
        reply_offset(q, 200, rz_blob_writer_size(u->w), false, NULL);
        return;
    }
    rc = rz_blob_writer_commit(u->w, hex, NULL);
    up_drop(o, (size_t)(u - o->blob_ups));
    if (rc == RZ_OK)
        rc = own(o, &ji, hex);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    orch_log(o, ORCH_LOG_DEBUG, "blob_stored", "job", LOG_U64, job, "sha256",
             LOG_STR, hex, "size", LOG_U64, size, NULL);
    reply_offset(q, 201, size, true, NULL);
}

/* Whether JSON value `v` names blob `hex` as a `$file`, at any depth. */
static bool names_blob(const cJSON *v, const char *hex)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "$file");
    const char *h = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    if (cJSON_IsObject(v) && h && strcmp(h, hex) == 0)
        return true;
    for (const cJSON *c = v ? v->child : NULL; c; c = c->next)
        if (names_blob(c, hex))
            return true;
    return false;
}

/* Who may read blob `hex`: the owner of the deployment (?flow=) or job
 * (?job=) whose files hold it; a node running a job whose request names
 * it as an input, within that job's deployment. */
static bool may_read(req *q, const char *hex)
{
    orch *o = q->o;
    uint64_t job = 0, flow = 0;
    if (!query_u64(q, "job", 0, UINT64_MAX, &job) ||
        !query_u64(q, "flow", 0, UINT64_MAX, &flow))
        return false;
    bool ok = false;
    if (q->who.kind == P_NODE && job) {
        rz_engine_job_info ji;
        const char *text;
        if (rz_engine_job_get(o->e, job, &ji) == RZ_OK && ji.node == q->who.node &&
            (ji.state == RZ_JOB_RUNNING || ji.state == RZ_JOB_ASSIGNED) &&
            (text = rz_engine_job_request(o->e, job))) {
            cJSON *r = cJSON_Parse(text);
            ok = names_blob(cJSON_GetObjectItemCaseSensitive(r, "inputs"), hex) &&
                 owned(o, ji.client, hex, NULL);
            cJSON_Delete(r);
        }
    } else if (q->who.kind == P_CLIENT && flow && !job) {
        rz_engine_deployment_info di;
        ok = rz_engine_deployment_get(o->e, flow, &di) == RZ_OK &&
             rz_ledger_id_equal(di.client, q->who.account) &&
             owned(o, q->who.account, hex, NULL);
    } else if (q->who.kind == P_CLIENT && job && !flow) {
        rz_engine_job_info ji;
        ok = rz_engine_job_get(o->e, job, &ji) == RZ_OK &&
             rz_ledger_id_equal(ji.client, q->who.account) &&
             owned(o, q->who.account, hex, NULL);
    } else {
        reply_error(q, RZ_EINVAL, "name the job (?job=) or, for a deployment's "
                    "owner, the deployment (?flow=) the file belongs to");
        return false;
    }
    if (!ok)
        reply_error(q, RZ_ENOENT, "no file %.12s... for that %s", hex,
                    q->who.kind == P_NODE ? "job on this node" : job ? "job" : "deployment");
    return ok;
}

void r_blob_get(req *q)
{
    uint64_t offset, length;
    if (!hex_param(q) || !may_read(q, q->params[0]) ||
        !query_u64(q, "offset", 0, UINT64_MAX, &offset) ||
        !query_u64(q, "length", ORCH_BLOB_PART_MAX, ORCH_BLOB_PART_MAX, &length))
        return;
    char dir[4096];
    blobs_dir(q->o, dir, sizeof dir);
    int fd;
    uint64_t size;
    int rc = rz_blob_open(dir, q->params[0], &fd, &size);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    if (offset > size) {
        close(fd);
        reply_error(q, RZ_EINVAL, "offset %" PRIu64 " is past the file's %" PRIu64
                    " bytes", offset, size);
        return;
    }
    size_t n = (size_t)(size - offset < length ? size - offset : length);
    char *buf = malloc(n ? n : 1);
    ssize_t got = buf ? pread(fd, buf, n, (off_t)offset) : -1;
    close(fd);
    if (got != (ssize_t)n) {
        free(buf);
        reply_error(q, RZ_EIO, "reading the file failed");
        return;
    }
    char total[24];
    snprintf(total, sizeof total, "%" PRIu64, size);
    evhttp_add_header(evhttp_request_get_output_headers(q->r), "X-Rhizos-Blob-Size",
                      total);
    reply_text(q, 200, "application/octet-stream", buf, n);
    free(buf);
}

/* One `$file` of a result: uploaded by its account's jobs, of the size it
 * says. */
static bool ref_ok(req *q, const rz_engine_job_info *ji, const char *port,
                   const cJSON *it)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "$file");
    if (!f)
        return true;
    const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    const cJSON *sz = cJSON_GetObjectItemCaseSensitive(f, "size");
    uint64_t have = 0;
    if (rz_blob_hex_ok(hex) && cJSON_IsNumber(sz) &&
        owned(q->o, ji->client, hex, &have) && (double)have == sz->valuedouble)
        return true;
    reply_error(q, RZ_ESTATE, "output '%.64s' names file %.12s... that this "
                "account's jobs did not upload (PUT /api/v1/blobs/{sha256} first)",
                port ? port : "", hex ? hex : "?");
    return false;
}

/* A result may name only files its account's jobs uploaded: 409 otherwise. */
bool orch_blobs_result_ok(req *q, uint64_t job, const cJSON *outputs)
{
    rz_engine_job_info ji;
    if (!outputs || rz_engine_job_get(q->o->e, job, &ji) != RZ_OK)
        return true;   /* the engine says what is wrong */
    for (const cJSON *v = outputs->child; v; v = v->next) {
        if (!cJSON_IsArray(v) && !ref_ok(q, &ji, v->string, v))
            return false;
        for (const cJSON *e = cJSON_IsArray(v) ? v->child : NULL; e; e = e->next)
            if (!ref_ok(q, &ji, v->string, e))
                return false;
    }
    return true;
}

/* A blob several accounts hold (each uploaded the same bytes): once no
 * deployment or job links it any more (every link left is the store's or
 * an account's), every account link goes and the blob with them. Which
 * account a deployment link belongs to cannot be told from a link count,
 * so until then each account keeps its link; this reads the owners
 * folder, and only for such a blob. */
static void forget_shared(orch *o, const char *hex, const char *blob)
{
    char dir[4096], path[8192];
    snprintf(dir, sizeof dir, "%s/blobs/owners", o->opts.data);
    DIR *d = opendir(dir);
    struct dirent *e;
    struct stat st;
    nlink_t held = 1;   /* the store's */
    for (int pass = 0; d && pass < 2; pass++) {
        rewinddir(d);
        while ((e = readdir(d)))
            if (e->d_name[0] == 'a') {
                snprintf(path, sizeof path, "%s/%s/%s", dir, e->d_name, hex);
                if (pass == 0)
                    held += lstat(path, &st) == 0;
                else if (unlink(path) == 0) {
                    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                    rmdir(path);   /* once empty */
                }
            }
        if (pass == 0 && (lstat(blob, &st) != 0 || st.st_nlink != held))
            break;   /* a deployment or job still links it */
        if (pass == 1)
            unlink(blob);
    }
    if (d)
        closedir(d);
}

/* Retention: the removed deployments' and jobs' folders; a blob left with
 * no deployment's link goes, with its account's link (forget_shared: the
 * links of the accounts). */
void orch_blobs_forget(orch *o, const uint64_t *jobs, size_t n_jobs,
                       const uint64_t *deps, size_t n_deps)
{
    for (size_t i = 0; i < n_jobs + n_deps; i++) {
        char dir[4096], acct[4096], path[4400], blob[4400];
        rz_engine_deployment_info di;
        rz_engine_job_info ji;
        bool known;
        if (i < n_jobs) {
            owner_dir(o, 0, jobs[i], dir, sizeof dir);
            known = rz_engine_job_get(o->e, jobs[i], &ji) == RZ_OK;
            if (known)
                account_dir(o, ji.client, acct, sizeof acct);
        } else {
            owner_dir(o, deps[i - n_jobs], 0, dir, sizeof dir);
            known = rz_engine_deployment_get(o->e, deps[i - n_jobs], &di) == RZ_OK;
            if (known)
                account_dir(o, di.client, acct, sizeof acct);
        }
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            struct stat st;
            if (!rz_blob_hex_ok(e->d_name))
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            snprintf(blob, sizeof blob, "%s/blobs/sha256/%.2s/%s", o->opts.data,
                     e->d_name, e->d_name);
            unlink(path);
            if (lstat(blob, &st) != 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", acct, e->d_name);
            if (st.st_nlink == 1 || (st.st_nlink == 2 && known && unlink(path) == 0))
                unlink(blob);
            else if (st.st_nlink > 2)
                forget_shared(o, e->d_name, blob);   /* another's too? */
        }
        if (d) {
            closedir(d);
            rmdir(dir);
        }
        if (known)
            rmdir(acct);   /* once empty */
    }
}

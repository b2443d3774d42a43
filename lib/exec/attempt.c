/* One attempt of one job through an adapter (rhizos/exec.h, adapter.h).
 *
 * Everything every runtime shares happens here, once: the scratch folder
 * with the request file, the RZ_* context, the outputs protocol and cap,
 * secret scrubbing, UTF-8 cleaning of the log and the failure wording. The
 * embedded runner (runner.c) and the node agent (server/node/job.c) both
 * call this and nothing below it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "exec/adapter.h"
#include "exec/ready.h"
#include "module/module_impl.h"

#define REASON_LINE 300          /* bytes of the log quoted in a failure */
#define EMPTY_REQUEST "{\"inputs\":{},\"config\":{}}"

/* Runtimes in their own files (adapter.h). A weak reference is NULL when
 * the file is not built in, so a new runtime touches nothing here but this
 * list. */
RZ_HIDDEN extern const rz__adapter rz__docker_adapter __attribute__((weak));
RZ_HIDDEN extern const rz__adapter rz__wasm_adapter __attribute__((weak));

static const rz__adapter *find_adapter(const char *name)
{
    const rz__adapter *const all[] = { &rz__process_adapter,
                                       &rz__docker_adapter,
                                       &rz__wasm_adapter,
                                       &rz__llm_adapter };
    for (size_t i = 0; i < RZ_ARRAY_LEN(all); i++)
        if (all[i] && strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

struct rz_attempt {
    const rz__adapter *ad;
    void *state;                 /* the adapter's, NULL after cleanup */
    char *scratch;               /* removed by rz_attempt_free */
    rz__scratch_pool *pool;      /* where scratch goes back, or NULL */
    bool recyclable;             /* finished, its processes reaped */
    char **secrets;              /* sodium_malloc'ed values, to scrub */
    size_t n_secrets;
    uint32_t timeout_s, memory_mb;
    size_t max_output, max_log;
    uint64_t started;
    bool done, stopped;
    bool log_end_cut;            /* the adapter's log stopped at a cap */
    rz_attempt_result res;
    char *outputs, *reason, *log;
    char *local_req;             /* the llm adapter's request for a step on
                                    a node-served model, or NULL */
    /* Live log lines (rz__attempt_log_lines): bytes of log_so_far taken,
     * and what was taken but not yet handed out (wiped when freed). */
    uint64_t live_seen;
    rz__buf live;
    bool service;                /* stdout is a stream of lines */
    char *out_last;              /* its lines not taken when it ended */
    uint64_t out_dropped;
    /* File outputs (files.c): the store, the module's file outputs. */
    char *blob_dir;
    char **file_ports;
    size_t n_file_ports;
    uint64_t max_file, max_files;
    /* Its readiness check (ready.h): tried every READY_EVERY_MS until it
     * passes (then one {"ready": true} line is handed out first) or
     * ready_due passes (then it is stopped, ready_fail its reason). */
    bool ready_wait, ready_line;
    rz__ready_target ready;
    uint64_t ready_next, ready_due;
    uint32_t ready_timeout_s;
    rz__ready_probe probe;       /* the try under way, fd -1 between tries */
    char ready_why[256];
    char *ready_fail;
};

/* ---- the outputs protocol ---- */

/* 1 and its text if the file is non-empty, 0 if absent or empty, -1 (err
 * set) if unusable: too big, a symlink, a FIFO... */
static int read_outputs_file(const char *path, size_t max, char **text,
                             size_t *len, char *err, size_t err_len)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
        return 0;
    struct stat st;
    int rc = -1;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "the outputs file is not a regular file");
    } else if (st.st_size == 0) {
        rc = 0;
    } else if ((uint64_t)st.st_size > max) {
        snprintf(err, err_len, "the outputs file exceeds %zu bytes", max);
    } else if (!(*text = rz__malloc((size_t)st.st_size + 1))) {
        snprintf(err, err_len, "out of memory");
    } else {
        ssize_t n = read(fd, *text, (size_t)st.st_size);
        if (n > 0) {
            *len = (size_t)n;
            rc = 1;
        } else {
            snprintf(err, err_len, "the outputs file cannot be read");
        }
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static void parse_outputs(const char *text, size_t len, const char *source,
                          char **outputs, char *err, size_t err_len)
{
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (j && end)
        end += strspn(end, " \t\r\n");
    if (!j || !cJSON_IsObject(j) || (end && end < text + len && *end))
        snprintf(err, err_len, "no JSON object on %s", source);
    else if (!(*outputs = rz__json_print(j, false)))
        snprintf(err, err_len, "out of memory");
    cJSON_Delete(j);
}

void rz__exec_outputs(const char *file, size_t max_file, const char *out,
                      size_t out_len, bool over, char **outputs, char *err,
                      size_t err_len)
{
    *outputs = NULL;
    err[0] = '\0';
    char *text = NULL;
    size_t len = 0;
    int r = file ? read_outputs_file(file, max_file, &text, &len, err, err_len)
                 : 0;
    if (r > 0)
        parse_outputs(text, len, "$RZ_OUTPUT", outputs, err, err_len);
    else if (r == 0 && over)
        snprintf(err, err_len, "stdout exceeds %zu bytes", max_file);
    else if (r == 0)
        parse_outputs(out ? out : "", out_len, "stdout", outputs, err,
                      err_len);
    free(text);
}

/* ---- what comes back: scrubbed, valid UTF-8 ---- */

/* Replace every `needle` in *text with a marker; the unredacted text is
 * wiped before it is freed. */
static void redact(char **text, const char *needle)
{
    size_t nlen = strlen(needle);
    if (!*text || nlen == 0 || !strstr(*text, needle))
        return;
    rz__buf b = {0};
    const char *p = *text, *hit;
    while ((hit = strstr(p, needle))) {
        rz__buf_append(&b, p, (size_t)(hit - p));
        rz__buf_puts(&b, "[redacted]");
        p = hit + nlen;
    }
    rz__buf_puts(&b, p);
    char *out = rz__buf_take(&b);
    if (!out)
        return;
    sodium_memzero(*text, strlen(*text));
    free(*text);
    *text = out;
}

/* A module may echo a secret it was given: values are removed raw from
 * text (log, reason) and JSON-escaped from the outputs JSON. */
static void scrub(const rz_attempt *a, char **text, bool json)
{
    /* Longest first: a secret inside another would otherwise cut the
     * longer one and leave its tail. */
    size_t *order = rz__malloc((a->n_secrets ? a->n_secrets : 1) * sizeof *order);
    for (size_t i = 0; order && i < a->n_secrets; i++) {
        size_t k = i, len = strlen(a->secrets[i]);
        for (; k > 0 && strlen(a->secrets[order[k - 1]]) < len; k--)
            order[k] = order[k - 1];
        order[k] = i;
    }
    for (size_t n = 0; n < a->n_secrets; n++) {
        const char *v = a->secrets[order ? order[n] : n];
        if (!json) {
            redact(text, v);
            continue;
        }
        cJSON *s = cJSON_CreateString(v);
        char *q = s ? cJSON_PrintUnformatted(s) : NULL;
        cJSON_Delete(s);
        size_t ql = q ? strlen(q) : 0;
        if (ql > 2) {
            q[ql - 1] = '\0';
            redact(text, q + 1);
        }
        if (q)
            sodium_memzero(q, ql);
        cJSON_free(q);
    }
    free(order);
}

/* Bytes that are not valid UTF-8 (and NULs) become '?' in place: a log
 * travels as a JSON or CBOR text string. */
static void utf8_clean(char *s, size_t n)
{
    unsigned char *u = (unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t len = u[i] < 0x80 ? 1 : (u[i] & 0xE0) == 0xC0 ? 2
                   : (u[i] & 0xF0) == 0xE0 ? 3 : (u[i] & 0xF8) == 0xF0 ? 4 : 0;
        bool ok = len > 0 && i + len <= n && u[i] != 0 &&
                  !(len == 2 && u[i] < 0xC2);
        for (size_t k = 1; ok && k < len; k++)
            ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len == 3)
            ok = !(u[i] == 0xE0 && u[i + 1] < 0xA0) &&
                 !(u[i] == 0xED && u[i + 1] >= 0xA0);
        if (ok && len == 4)
            ok = !(u[i] == 0xF0 && u[i + 1] < 0x90) &&
                 !(u[i] == 0xF4 && u[i + 1] >= 0x90) && u[i] <= 0xF4;
        if (ok)
            i += len;
        else
            u[i++] = '?';
    }
}

/* The longest secret's length; 0 when none. */
static size_t longest_secret(const rz_attempt *a)
{
    size_t l = 0;
    for (size_t i = 0; i < a->n_secrets; i++) {
        size_t n = strlen(a->secrets[i]);
        l = n > l ? n : l;
    }
    return l;
}

/* The longest secret with a newline in it (0: none). Only such a one can
 * straddle a cut made just after a newline. */
static size_t longest_secret_nl(const rz_attempt *a)
{
    size_t l = 0;
    for (size_t i = 0; i < a->n_secrets; i++) {
        size_t n = strlen(a->secrets[i]);
        if (n > l && memchr(a->secrets[i], '\n', n))
            l = n;
    }
    return l;
}

/* Where the kept tail of a log of `len` bytes starts: its last max_log
 * bytes, unless that cut falls inside a secret, then just past it (a
 * suffix is not found by scrub). The adapter keeps longest-1 bytes more
 * than max_log, so a secret straddling our cut is whole in the buffer;
 * one cut by the adapter lies entirely before our cut. */
static size_t tail_start(const rz_attempt *a, const char *log, size_t len)
{
    if (len <= a->max_log)
        return 0;
    size_t cut = len - a->max_log;
    for (bool moved = true; moved;) {
        moved = false;
        for (size_t i = 0; i < a->n_secrets; i++) {
            size_t n = strlen(a->secrets[i]);
            size_t from = cut >= n ? cut - n + 1 : 0;
            for (size_t s = from; n && s < cut && s + n <= len; s++)
                if (s + n > cut && memcmp(log + s, a->secrets[i], n) == 0) {
                    cut = s + n;
                    moved = true;
                    break;
                }
        }
    }
    return cut;
}

/* "exit status 3: <last non-empty log line>". */
static char *exit_reason(int code, const char *log, size_t len)
{
    while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r' ||
                       log[len - 1] == ' ' || log[len - 1] == '\t'))
        len--;
    size_t start = len;
    while (start > 0 && log[start - 1] != '\n')
        start--;
    if (len - start > REASON_LINE)
        start = len - REASON_LINE;
    if (len == start)
        return rz__asprintf("exit status %d", code);
    return rz__asprintf("exit status %d: %.*s", code, (int)(len - start),
                        log + start);
}

static char *failure_reason(const rz_attempt *a, const rz__exec_outcome *o,
                            const char *log, size_t log_len)
{
    if (a->ready_fail)
        return rz__strdup(a->ready_fail);
    if (a->stopped)
        return rz__strdup("stopped");
    if (o->timed_out)
        return rz__asprintf("timed out after %" PRIu32 " s", a->timeout_s);
    if (o->failure)
        return rz__strdup(o->failure);
    if (o->oom && a->memory_mb)
        return rz__asprintf("killed for memory (limit %" PRIu32 " MB)",
                            a->memory_mb);
    if (o->oom)
        return rz__strdup("killed for memory");
    if (o->stdout_over || (o->outputs && strlen(o->outputs) > a->max_output))
        return rz__asprintf("outputs over %zu KiB", a->max_output / 1024);
    if (o->exit_code < 0)
        return rz__asprintf("killed by signal %d", -o->exit_code);
    if (o->exit_code > 0)
        return exit_reason(o->exit_code, log ? log : "", log_len);
    return rz__strdup(o->output_error && o->output_error[0]
                          ? o->output_error : "no JSON object on stdout");
}

/* Fill the result from what the adapter hands back, then release the
 * runtime's resources (the scratch folder goes with the attempt). */
static void finish(rz_attempt *a)
{
    rz__exec_outcome o;
    memset(&o, 0, sizeof o);
    o.exit_code = -1;
    a->ad->collect(a->state, &o);
    size_t from = o.log ? tail_start(a, o.log, o.log_len) : 0;
    /* A log cut at a cap may end with a secret's first bytes, which
     * scrub cannot know for one: what could be one goes. */
    size_t end = o.log_len, hold = longest_secret(a);
    a->log_end_cut = o.log_end_cut;
    if (o.log_end_cut && hold)
        end -= end < hold - 1 ? end : hold - 1;
    a->log = end > from ? rz__strndup(o.log + from, end - from) : NULL;
    scrub(a, &a->log, false);
    size_t log_len = a->log ? strlen(a->log) : 0;
    if (a->service && !o.outputs && o.exit_code == 0)
        o.outputs = "{}";   /* its stdout was lines, taken as they came */
    bool ok = !a->stopped && !o.failure && !o.timed_out && !o.oom &&
              !o.stdout_over &&
              o.exit_code == 0 && o.outputs &&
              strlen(o.outputs) <= a->max_output;
    char *files_why = NULL;
    if (ok && (a->outputs = rz__strdup(o.outputs)) && a->n_file_ports) {
        rz__files_ctx c = { a->blob_dir, a->scratch,
                            (char *const *)a->file_ports, a->n_file_ports,
                            a->max_file, a->max_files };
        uint64_t stored = 0;
        if (rz__files_outputs(&c, &a->outputs, &stored) != RZ_OK) {
            files_why = rz__strdup(rz_error_last()->message);
            ok = false;
            free(a->outputs);
            a->outputs = NULL;
        }
    }
    if (ok) {
        scrub(a, &a->outputs, true);
    } else if (files_why) {
        a->reason = files_why;
        scrub(a, &a->reason, false);
    } else {
        a->reason = failure_reason(a, &o, a->log, log_len);
        scrub(a, &a->reason, false);
    }
    if (a->log)
        utf8_clean(a->log, log_len);
    if (a->reason)
        utf8_clean(a->reason, strlen(a->reason));
    a->res.ok = ok && a->outputs;
    a->res.exit_code = o.exit_code;
    a->ad->cleanup(a->state);
    a->state = NULL;
    a->recyclable = !a->stopped && !o.timed_out;
    a->res.run_ms = rz__now_ms() - a->started;
    a->done = true;
}

/* Finished before it started; the reason holds no secret (it is scrubbed
 * all the same). */
static void fail_now(rz_attempt *a, char *reason)
{
    a->reason = reason ? reason : rz__strdup("out of memory");
    scrub(a, &a->reason, false);
    if (a->reason)
        utf8_clean(a->reason, strlen(a->reason));
    if (a->ad && a->state)
        a->ad->cleanup(a->state);
    a->state = NULL;
    a->res.exit_code = -1;
    a->done = true;
}

/* ---- the scratch folder ---- */

static int write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* <parent>/rz-<pidns>-<pid>-XXXXXX with in/request.json and an empty out/outputs.json
 * (present, so a module may simply open it for writing). */
static int make_scratch(rz_attempt *a, const char *parent, const char *req,
                        char **in_path, char **out_path)
{
    a->scratch = rz__scratch_take(a->pool, req);
    if (a->scratch) {
        *in_path = rz__asprintf("%s/in/request.json", a->scratch);
        *out_path = rz__asprintf("%s/out/outputs.json", a->scratch);
        return *in_path && *out_path ? RZ_OK
                                     : rz__error(RZ_ENOMEM, "out of memory");
    }
    int rc = rz__exec_mkdtemp(a->pool ? rz__scratch_pool_parent(a->pool)
                                      : parent, &a->scratch);
    if (rc != RZ_OK)
        return rc;
    char *in = rz__asprintf("%s/in", a->scratch);
    char *out = rz__asprintf("%s/out", a->scratch);
    *in_path = rz__asprintf("%s/in/request.json", a->scratch);
    *out_path = rz__asprintf("%s/out/outputs.json", a->scratch);
    if (!in || !out || !*in_path || !*out_path)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else if (mkdir(in, 0755) != 0 || mkdir(out, 0755) != 0 ||
             write_file(*in_path, req, strlen(req)) != 0 ||
             write_file(*out_path, "", 0) != 0)
        rc = rz__error(RZ_EIO, "scratch folder %s: %s", a->scratch,
                       strerror(errno));
    free(in);
    free(out);
    return rc;
}

/* ---- starting ---- */

static int copy_secrets(rz_attempt *a, const rz_attempt_opts *o)
{
    if (o->n_secrets == 0)
        return RZ_OK;
    /* sodium_malloc aborts the process unless libsodium was started,
     * and nothing else may have started it (a binding's first call). */
    if (sodium_init() < 0)
        return RZ_ENOMEM;
    a->secrets = rz__calloc(o->n_secrets, sizeof *a->secrets);
    if (!a->secrets)
        return RZ_ENOMEM;
    for (size_t i = 0; i < o->n_secrets; i++) {
        const char *v = o->secrets[i].value ? o->secrets[i].value : "";
        size_t n = strlen(v);
        if (!(a->secrets[i] = sodium_malloc(n + 1)))
            return RZ_ENOMEM;
        memcpy(a->secrets[i], v, n + 1);
        a->n_secrets++;
    }
    return RZ_OK;
}

/* RZ_RUN_ID, RZ_STEP_ID, RZ_ATTEMPT, RZ_JOB_ID, RZ_NODE_ID, the caller's
 * (borrowed); the first *owned entries are ours to free. */
static char **context_env(const rz_attempt_opts *o, size_t *owned)
{
    size_t extra = 0;
    while (o->env && o->env[extra])
        extra++;
    char **env = rz__calloc(extra + 6, sizeof *env);
    if (!env)
        return NULL;
    size_t n = 0;
    env[n++] = rz__asprintf("RZ_RUN_ID=%s", o->run_id ? o->run_id : "run");
    env[n++] = rz__asprintf("RZ_STEP_ID=%s", o->step_id ? o->step_id : "job");
    env[n++] = rz__asprintf("RZ_ATTEMPT=%" PRIu32,
                            o->attempt ? o->attempt : 1u);
    if (o->job_id)
        env[n++] = rz__asprintf("RZ_JOB_ID=%" PRIu64, o->job_id);
    if (o->node_id)
        env[n++] = rz__asprintf("RZ_NODE_ID=%s", o->node_id);
    *owned = n;
    bool failed = false;
    for (size_t i = 0; i < n; i++)
        failed |= env[i] == NULL;
    for (size_t i = 0; i < extra; i++)
        env[n + i] = (char *)o->env[i];
    if (failed) {
        for (size_t i = 0; i < n; i++)
            free(env[i]);
        free(env);
        return NULL;
    }
    return env;
}

static void free_env(char **env, size_t owned)
{
    for (size_t i = 0; env && i < owned; i++)
        free(env[i]);
    free(env);
}

static char *unavailable(const char *name, const char *why)
{
    return rz__asprintf("adapter '%s' is not available on this machine%s%s",
                        name, why && *why ? ": " : "", why ? why : "");
}

int rz_attempt_adapter_check(const char *adapter)
{
    return rz_attempt_adapter_check_at(adapter, NULL);
}

int rz_attempt_adapter_check_at(const char *adapter, const char *host)
{
    const char *name = adapter && *adapter ? adapter : "process";
    const rz__adapter *ad = find_adapter(name);
    char why[512] = "";
    if (ad && ad->probe(host, why, sizeof why))
        return RZ_OK;
    char *msg = unavailable(name, why);
    int rc = rz__error(RZ_EUNSUPPORTED, "%s", msg ? msg : "out of memory");
    free(msg);
    return rc;
}

/* A path under <scratch>/in/files/ as the module sees it (`inside`). */
static cJSON *inside_path(const cJSON *v, const char *prefix, size_t plen,
                          const char *inside)
{
    const char *s = cJSON_GetStringValue(v);
    if (!s || strncmp(s, prefix, plen) != 0)
        return NULL;
    char *p = rz__asprintf("%s/in/files/%s", inside, s + plen);
    cJSON *n = p ? cJSON_CreateString(p) : NULL;
    free(p);
    return n;
}

/* The file inputs' paths in *req (an input, or a list's element) given as
 * the module sees the scratch folder. */
static int files_inside(char **req, const char *scratch, const char *inside)
{
    char *prefix = rz__asprintf("%s/in/files/", scratch);
    cJSON *j = prefix ? cJSON_Parse(*req) : NULL;
    cJSON *inputs = cJSON_GetObjectItemCaseSensitive(j, "inputs"), *v, *e, *n, *next;
    size_t plen = prefix ? strlen(prefix) : 0;
    bool ok = j != NULL;
    /* The next member is taken first: a replaced one is freed. */
    for (v = inputs ? inputs->child : NULL; v; v = next) {
        next = v->next;
        for (e = cJSON_IsArray(v) ? v->child : NULL; e; e = n) {
            n = e->next;
            cJSON *p = inside_path(e, prefix, plen, inside);
            ok &= !p || cJSON_ReplaceItemViaPointer(v, e, p);
        }
        if ((n = inside_path(v, prefix, plen, inside)))   /* its key kept */
            ok &= cJSON_ReplaceItemInObjectCaseSensitive(inputs, v->string, n);
    }
    char *text = ok ? rz__json_print(j, false) : NULL;
    cJSON_Delete(j);
    free(prefix);
    if (!text)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(*req);
    *req = text;
    return RZ_OK;
}

/* The file outputs' folder (RZ_OUTPUT_DIR) where the module has any; file
 * inputs copied in, the request rewritten with their paths (*req_out, or
 * NULL when it is unchanged). */
static int files_prepare(rz_attempt *a, const char *req, const char *in_path,
                         char **req_out)
{
    *req_out = NULL;
    char *dir = a->n_file_ports ? rz__asprintf("%s/out/files", a->scratch) : NULL;
    int rc = a->n_file_ports && !dir ? rz__error(RZ_ENOMEM, "out of memory") : RZ_OK;
    if (dir && mkdir(dir, 0755) != 0 && errno != EEXIST)
        rc = rz__error(RZ_EIO, "%s: %s", dir, strerror(errno));
    free(dir);
    if (rc == RZ_OK)
        rc = rz__files_inputs(a->blob_dir, a->scratch, req, req_out);
    if (rc == RZ_OK && *req_out && a->ad->scratch_inside)
        rc = files_inside(req_out, a->scratch, a->ad->scratch_inside);
    if (rc == RZ_OK && *req_out && (unlink(in_path) != 0 ||
                                    write_file(in_path, *req_out,
                                               strlen(*req_out)) != 0))
        rc = rz__error(RZ_EIO, "%s: %s", in_path, strerror(errno));
    return rc;
}

/* The module's outputs of type file, and the store they go to. */
static int files_setup(rz_attempt *a, const rz_attempt_opts *o)
{
    if (o->version < 7)
        return RZ_OK;
    a->max_file = o->max_file ? o->max_file : RZ_ATTEMPT_DEFAULT_MAX_FILE;
    a->max_files = o->max_files ? o->max_files : RZ_ATTEMPT_DEFAULT_MAX_FILES;
    if (o->blob_dir && !(a->blob_dir = rz__strdup(o->blob_dir)))
        return RZ_ENOMEM;
    const rz_module *m = o->module;
    for (size_t k = 0; m && k < m->n_outputs; k++) {
        if (!m->outputs[k].type || strcmp(m->outputs[k].type, "file") != 0)
            continue;
        if (!a->file_ports &&
            !(a->file_ports = rz__calloc(m->n_outputs, sizeof *a->file_ports)))
            return RZ_ENOMEM;
        if (!(a->file_ports[a->n_file_ports] = rz__strdup(m->outputs[k].name)))
            return RZ_ENOMEM;
        a->n_file_ports++;
    }
    return RZ_OK;
}

/* Scratch, context, prepare, start; a failure is the attempt's reason. */
static void launch(rz_attempt *a, const rz_attempt_opts *o)
{
    const char *req = a->local_req ? a->local_req
                    : o->request_json ? o->request_json : EMPTY_REQUEST;
    char *in_path = NULL, *out_path = NULL, **env = NULL;
    size_t owned = 0;
    uint32_t max = o->version >= 4 && o->max_scratch_mb
                       ? o->max_scratch_mb : RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB;
    const rz_module *m = o->module;
    if (m && m->scratch_mb > max) {
        fail_now(a, rz__asprintf("the module asks for %" PRIu32 " MiB of "
                                 "scratch space (requirements.scratch_mb), "
                                 "over this runner's maximum of %" PRIu32
                                 " MiB", m->scratch_mb, max));
        return;
    }
    int rc = make_scratch(a, o->scratch_parent, req, &in_path, &out_path);
    char *files_req = NULL;
    if (rc == RZ_OK)
        rc = files_prepare(a, req, in_path, &files_req);
    if (files_req)
        req = files_req;
    if (rc == RZ_OK && !(env = context_env(o, &owned)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK) {
        size_t cap = a->max_output, extra = longest_secret(a);
        rz__exec_spec sp = {
            .module = m, .scratch = a->scratch, .request_path = in_path,
            .outputs_path = out_path, .request = req,
            .request_len = strlen(req), .env = (const char *const *)env,
            .secrets = o->secrets, .n_secrets = o->n_secrets,
            .timeout_s = o->timeout_s, .memory_mb = o->memory_mb,
            .cpus = o->cpus, .scratch_mb = m ? m->scratch_mb : 0,
            /* Twice the cap is read, so that outputs just over it (or
             * pretty-printed) are told apart from no outputs at all. */
            .max_stdout = cap > SIZE_MAX / 2 ? cap : 2 * cap,
            /* Room for a secret straddling the cut (tail_start). */
            .max_log = a->max_log + (extra ? extra - 1 : 0),
            .sandbox = o->sandbox,
            .network = o->network < 0 ? (m && m->network ? 1 : 0)
                                      : !!o->network,
            .run_id = o->run_id, .step_id = o->step_id,
            .node_id = o->node_id, .attempt = o->attempt ? o->attempt : 1,
            .job_id = o->job_id,
            .container_host = o->version >= 2 ? o->container_host : NULL,
            .gpu_ids = o->version >= 3 ? o->gpu_ids : NULL,
            .llm_servers = o->version >= 5 ? o->llm_servers : NULL,
            .max_file = a->max_file, .max_files = a->max_files,
            .file_outputs = a->n_file_ports > 0,
        };
        rc = a->service && !(a->ad->stream && a->ad->out_lines)
            ? rz__error(RZ_EUNSUPPORTED, "the %s adapter runs no services",
                        a->ad->name)
            : a->ad->prepare(&a->state, &sp);
        if (rc == RZ_OK)
            rc = a->ad->start(a->state);
        if (rc == RZ_OK && a->service)
            a->ad->stream(a->state);
    }
    free_env(env, owned);
    free(in_path);
    free(out_path);
    free(files_req);
    if (rc != RZ_OK)
        fail_now(a, rz__asprintf("cannot start: %s",
                                 rz_error_last()->message));
}

int rz_attempt_start(rz_attempt **out, const rz_attempt_opts *o)
{
    return rz__attempt_start_pooled(out, o, NULL);
}

int rz_attempt_start_pooled(rz_attempt **out, const rz_attempt_opts *o,
                            rz_scratch_pool *pool)
{
    return rz__attempt_start_pooled(out, o, pool);
}

int rz__attempt_start_pooled(rz_attempt **out, const rz_attempt_opts *o,
                             rz__scratch_pool *pool)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_attempt_start: out is NULL");
    *out = NULL;
    if (!o || o->version < 1 || o->version > RZ_ATTEMPT_OPTS_VERSION ||
        (!o->module && !(o->adapter && strcmp(o->adapter, "llm") == 0)) ||
        (o->n_secrets && !o->secrets))
        return rz__error(RZ_EINVAL, "rz_attempt_start: invalid options");
    for (size_t i = 0; i < o->n_secrets; i++)
        if (!o->secrets[i].name || !*o->secrets[i].name)
            return rz__error(RZ_EINVAL, "rz_attempt_start: a secret has "
                             "no name");
    rz_attempt *a = rz__calloc(1, sizeof *a);
    if (!a)
        return rz__error(RZ_ENOMEM, "out of memory");
    a->started = rz__now_ms();
    a->probe = (rz__ready_probe)RZ__READY_PROBE_INIT;
    a->timeout_s = o->timeout_s;
    a->memory_mb = o->memory_mb;
    a->max_output = o->max_output ? o->max_output : RZ_ATTEMPT_DEFAULT_MAX_OUTPUT;
    a->max_log = o->max_log ? o->max_log : RZ_ATTEMPT_DEFAULT_MAX_LOG;
    a->service = o->version >= 6 && o->service;
    const char *check = o->version >= 8 && a->service ? o->ready_check : NULL;
    char check_why[200] = "";
    a->ready_wait = check != NULL;
    a->ready_timeout_s = o->version >= 8 && o->ready_timeout_s
                             ? o->ready_timeout_s : RZ__READY_DEFAULT_TIMEOUT_S;
    a->ready_due = a->started + (uint64_t)a->ready_timeout_s * 1000u;
    int check_rc = check ? rz__ready_parse(check, &a->ready, check_why,
                                           sizeof check_why) : RZ_OK;
    if (copy_secrets(a, o) != RZ_OK || files_setup(a, o) != RZ_OK) {
        rz_attempt_free(a);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    const char *name = o->adapter ? o->adapter : o->module->adapter;
    if (!name || !*name)
        name = "process";
    /* A step on its node's model (the manifest's local_llm): the llm
     * adapter makes the one generation; the module's program never runs. */
    char *local_why = NULL;
    if (!o->adapter && o->module->local_llm.provider) {
        cJSON *rq = o->request_json ? cJSON_Parse(o->request_json) : NULL;
        if (rz__local_llm_on(o->module, cJSON_GetObjectItemCaseSensitive(rq, "config"))) {
            name = "llm";
            if (!(a->local_req = rz__local_llm_request(o->module, o->request_json)))
                local_why = rz__asprintf("a node-served model: %s",
                                         rz_error_last()->message);
        }
        cJSON_Delete(rq);
    }
    a->ad = find_adapter(name);
    /* Only an unsandboxed process leaves a folder nothing else holds. */
    if (a->ad == &rz__process_adapter && !o->sandbox)
        a->pool = pool;
    char why[512] = "";
    const char *host = o->version >= 2 ? o->container_host : NULL;
    if (local_why)
        fail_now(a, local_why);
    else if (check_rc != RZ_OK)
        fail_now(a, rz__asprintf("ready check '%.200s': %s", check, check_why));
    else if (!a->ad || !a->ad->probe(host, why, sizeof why))
        fail_now(a, unavailable(name, why));
    else
        launch(a, o);
    *out = a;
    return RZ_OK;
}

/* ---- running ---- */

#define LIVE_LINE_MAX 4096   /* a longer line is handed out in pieces */

/* What the adapter's log grew by since the last look, into a->live. */
static void live_take(rz_attempt *a)
{
    if (a->done || !a->state || !a->ad->log_so_far)
        return;
    size_t len = 0;
    uint64_t total = 0;
    const char *log = a->ad->log_so_far(a->state, &len, &total);
    if (!log || total <= a->live_seen)
        return;
    /* More than the adapter still holds is new: the lines between are
     * only in no live event (the result's tail may have them). Across
     * such a gap no secret can be matched whole: what was held back may
     * be a secret's start and the window's first bytes its end, so the
     * first goes and the second is cut as the final log's tail is. */
    uint64_t fresh = total - a->live_seen;
    size_t from = len - (fresh < len ? (size_t)fresh : len);
    if (fresh > len) {
        if (a->live.data)
            sodium_memzero(a->live.data, a->live.len);
        a->live.len = 0;
        from = tail_start(a, log, len);
    }
    size_t at = a->live.len;
    rz__buf_append(&a->live, log + from, len - from);
    a->live_seen = total;
    for (size_t i = at; a->live.data && i < a->live.len; i++)
        if (a->live.data[i] == '\0')
            a->live.data[i] = '?';   /* scrub works on C strings */
}

char *rz__attempt_log_lines(rz_attempt *a, bool flush)
{
    if (!a)
        return NULL;
    live_take(a);
    if (!a->live.data || a->live.len == 0)
        return NULL;
    char *text = rz__strndup(a->live.data, a->live.len);
    sodium_memzero(a->live.data, a->live.len);
    a->live.len = 0;
    scrub(a, &text, false);
    if (!text)
        return NULL;
    size_t len = strlen(text), hold = longest_secret(a);
    size_t hold_nl = longest_secret_nl(a);
    /* A secret's first bytes may end the text: hold back what could be.
     * Whole lines go at once unless a secret has a newline in it (a cut
     * just after a newline splits no other). At the end of a log a cap
     * cut, what was held back never goes. */
    bool drop = flush && a->log_end_cut && hold;
    size_t limit = flush && !drop ? len
                   : len > hold ? len - (hold ? hold - 1 : 0) : 0;
    size_t lines = flush || drop ? limit
                   : len > hold_nl ? len - (hold_nl ? hold_nl - 1 : 0) : 0;
    size_t cut = lines;
    while (!flush && !drop && cut > 0 && text[cut - 1] != '\n')
        cut--;
    if (cut == 0 && (flush || limit > LIVE_LINE_MAX))
        cut = limit;
    if (!drop)
        rz__buf_append(&a->live, text + cut, len - cut);
    char *out = cut ? rz__strndup(text, cut) : NULL;
    sodium_memzero(text, len);
    free(text);
    if (!out)
        return NULL;
    size_t n = strlen(out);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    utf8_clean(out, n);
    return out;
}

/* The ready line the check earned goes before what the service wrote. */
static char *with_ready_line(rz_attempt *a, char *text)
{
    if (!a->ready_line)
        return text;
    char *t = rz__asprintf("{\"ready\": true}%s%s", text ? "\n" : "",
                           text ? text : "");
    if (!t)
        return text;   /* out of memory: said with the next lines */
    a->ready_line = false;
    if (text)
        sodium_memzero(text, strlen(text));
    free(text);
    return t;
}

char *rz__attempt_out_lines(rz_attempt *a, uint64_t *dropped)
{
    *dropped = a ? a->out_dropped : 0;
    if (!a || !a->service || (!a->state && !a->out_last && !a->ready_line))
        return NULL;
    char *text = a->out_last;
    a->out_last = NULL;
    if (!text && a->state)
        text = a->ad->out_lines(a->state, dropped);
    text = with_ready_line(a, text);
    if (!text)
        return NULL;
    scrub(a, &text, false);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = '\0';
    utf8_clean(text, n);
    return text;
}

int rz_attempt_out_lines(rz_attempt *a, char **out, uint64_t *dropped)
{
    uint64_t d = 0;
    if (out)
        *out = NULL;
    if (!a || !out)
        return rz__error(RZ_EINVAL, "rz_attempt_out_lines: NULL argument");
    *out = rz__attempt_out_lines(a, &d);
    if (dropped)
        *dropped = d;
    return RZ_OK;
}

/* A copy of `v`'s text (cJSON_PrintUnformatted when `print`) into *out
 * (left alone when out is NULL or v absent); false: out of memory. */
static bool copy_out(char **out, const cJSON *v, bool print)
{
    if (!out || !v)
        return true;
    char *t = print ? cJSON_PrintUnformatted(v) : NULL;
    *out = rz__strdup(print ? t : v->valuestring);
    cJSON_free(t);
    return *out != NULL;
}

rz_service_line_kind rz_service_line(const char *line, size_t len, char **name,
                                     char **key, char **data_json)
{
    char **outs[] = { name, key, data_json };
    for (size_t i = 0; i < 3; i++)
        if (outs[i])
            *outs[i] = NULL;
    cJSON *x = line && len && line[0] == '{' ? cJSON_ParseWithLength(line, len) : NULL;
    size_t n = cJSON_IsObject(x) ? (size_t)cJSON_GetArraySize(x) : 0;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(x, "event");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(x, "data");
    rz_service_line_kind k = RZ_SERVICE_LINE_LOG;
    if (cJSON_IsString(ev) && (!id || cJSON_IsString(id)) &&
        n == 1u + (id != NULL) + (data != NULL))
        k = RZ_SERVICE_LINE_EVENT;
    else if (n == 1 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "ready")))
        k = RZ_SERVICE_LINE_READY;
    if (k == RZ_SERVICE_LINE_EVENT &&
        !(copy_out(name, ev, false) && copy_out(key, id, false) &&
          copy_out(data_json, data, true))) {
        for (size_t i = 0; i < 3; i++)   /* out of memory: kept as a log line */
            if (outs[i]) {
                free(*outs[i]);
                *outs[i] = NULL;
            }
        k = RZ_SERVICE_LINE_LOG;
    }
    cJSON_Delete(x);
    return k;
}

_Static_assert(RZ_SERVICE_EVENT_MAX == 65536u && RZ_SERVICE_EVENT_RATE == 1000u,
               "rz_service_event_admit's reasons name the caps");

const char *rz_service_event_admit(rz_service_rate *r, size_t len,
                                   uint64_t now_ms)
{
    if (!r)
        return "no rate window";
    if (now_ms - r->window_ms >= 1000) {
        r->window_ms = now_ms;
        r->in_window = 0;
        r->refused = 0;
    }
    if (len > RZ_SERVICE_EVENT_MAX)
        return "the line is over 65536 bytes";
    if (r->in_window >= RZ_SERVICE_EVENT_RATE)
        return r->refused++ ? "" : "over 1000 events a second (the rest of "
                                   "this second's are refused unsaid)";
    r->in_window++;
    return NULL;
}

int rz_attempt_log_lines(rz_attempt *a, int flush, char **out)
{
    if (out)
        *out = NULL;
    if (!a || !out)
        return rz__error(RZ_EINVAL, "rz_attempt_log_lines: NULL argument");
    *out = rz__attempt_log_lines(a, flush != 0);
    return RZ_OK;
}

void rz__attempt_status(const rz_attempt *a, char *buf, size_t len)
{
    if (len)
        buf[0] = '\0';
    if (a && !a->done && a->state && a->ad->status)
        a->ad->status(a->state, buf, len);
}

int rz_attempt_fd(const rz_attempt *a)
{
    return a && !a->done && a->state ? a->ad->fd(a->state) : -1;
}

#define READY_EVERY_MS 100u
#define READY_TRY_MS 250
#define READY_STEP_MS 5u         /* how soon a try under way is looked at again */

/* The try under way, or a new one when one is due: 1 passed, 0 not, -1
 * cannot be tried, 2 under way (or none due). Never blocks. */
static int ready_try(rz_attempt *a)
{
    if (a->probe.fd < 0) {
        if (rz__now_ms() < a->ready_next)
            return 2;
        int pid = a->ad->net_pid ? a->ad->net_pid(a->state) : 0;
        if (pid < 0)
            return 0;   /* no process to check from yet */
        if (rz__ready_probe_start(&a->probe, &a->ready, pid, READY_TRY_MS,
                                  a->ready_why, sizeof a->ready_why) < 0)
            return -1;
    }
    return rz__ready_probe_step(&a->probe, &a->ready, a->ready_why,
                                sizeof a->ready_why);
}

/* The readiness check, a step at a time; past its deadline, or when the
 * step's network cannot be entered, the attempt is stopped. */
static void ready_check(rz_attempt *a)
{
    if (!a->ready_wait || a->stopped)
        return;
    int r = ready_try(a);
    if (r == 2)
        return;
    rz__ready_probe_end(&a->probe);
    a->ready_next = rz__now_ms() + READY_EVERY_MS;
    if (r == 1) {
        a->ready_wait = false;
        a->ready_line = true;
    } else if (r < 0 || a->ready_next > a->ready_due) {
        a->ready_fail = r < 0
            ? rz__asprintf("not ready: %s", a->ready_why)
            : rz__asprintf("not ready within %" PRIu32 " s (%s)",
                           a->ready_timeout_s,
                           a->ready_why[0] ? a->ready_why : "not started");
        a->ready_wait = false;
        a->stopped = true;
        a->ad->stop(a->state);
    }
}

int rz__attempt_wake_ms(const rz_attempt *a)
{
    if (!a || a->done || !a->ready_wait || a->stopped)
        return -1;
    if (a->probe.fd >= 0)
        return (int)READY_STEP_MS;
    uint64_t now = rz__now_ms();
    return a->ready_next > now ? (int)(a->ready_next - now) : 0;
}

int rz_attempt_poll(rz_attempt *a, int timeout_ms)
{
    if (!a)
        return rz__error(RZ_EINVAL, "rz_attempt_poll: no attempt");
    if (a->done)
        return 1;
    ready_check(a);
    int wake = rz__attempt_wake_ms(a);
    if (wake >= 0 && timeout_ms > wake)
        timeout_ms = wake;
    int r = a->ad->poll(a->state, timeout_ms);
    if (r == 1) {
        rz__ready_probe_end(&a->probe);
        live_take(a);   /* the last of it, before the state goes */
        if (a->service)
            a->out_last = a->ad->out_lines(a->state, &a->out_dropped);
        finish(a);
    }
    return r;
}

void rz_attempt_stop(rz_attempt *a)
{
    if (!a || a->done)
        return;
    a->stopped = true;
    a->ad->stop(a->state);
}

int rz_attempt_result_get(const rz_attempt *a, rz_attempt_result *out)
{
    if (!a || !out)
        return rz__error(RZ_EINVAL, "rz_attempt_result_get: invalid "
                         "arguments");
    if (!a->done)
        return rz__error(RZ_ESTATE, "the attempt has not finished");
    *out = a->res;
    out->outputs = out->ok ? a->outputs : NULL;
    out->reason = out->ok ? NULL : a->reason ? a->reason : "out of memory";
    out->log = a->log;
    out->log_len = a->log ? strlen(a->log) : 0;
    return RZ_OK;
}

static void wipe_free(char *s)
{
    if (s)
        sodium_memzero(s, strlen(s));
    free(s);
}

void rz_attempt_free(rz_attempt *a)
{
    if (!a)
        return;
    rz__ready_probe_end(&a->probe);
    if (a->state) {
        a->ad->stop(a->state);
        a->ad->cleanup(a->state);
    }
    if (a->recyclable && a->pool) {
        rz__scratch_give(a->pool, a->scratch);
    } else {
        rz__exec_rm_tree(a->scratch);
        free(a->scratch);
    }
    for (size_t i = 0; i < a->n_secrets; i++)
        sodium_free(a->secrets[i]);
    free(a->secrets);
    wipe_free(a->outputs);
    wipe_free(a->reason);
    wipe_free(a->log);
    wipe_free(a->out_last);
    wipe_free(a->local_req);
    for (size_t i = 0; i < a->n_file_ports; i++)
        free(a->file_ports[i]);
    free(a->file_ports);
    free(a->blob_dir);
    free(a->ready_fail);
    if (a->live.data)
        sodium_memzero(a->live.data, a->live.len);
    free(a->live.data);
    free(a);
}

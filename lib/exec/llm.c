/* The llm adapter (docs/llm.md): a step or job whose module runs with
 * exec.adapter "llm" is one generation on a model server, not a program.
 *
 * The request's inputs (then its config) give "model", "prompt" or
 * "messages", "max_tokens" (default 256), "temperature" and, for a flow
 * step, "max_prompt_tokens": the bound the engine priced the step's prompt
 * at, so a prompt that could weigh more fails before it is sent. The model
 * servers come from rz_attempt_opts.llm_servers, else $RHIZOS_LLM_SERVERS
 * ("KIND=URL ..."); with more than one, the first that lists the model
 * serves it.
 *
 * libcurl blocks, so the generation runs on a thread of its own; the
 * attempt waits on a pipe that the thread writes to as text comes and when
 * it ends. The text streamed so far is the attempt's live log. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "exec/adapter.h"
#include "exec/llm.h"
#include "rhizos/match.h"

#define WAKE_MS 100u         /* the poller is woken at most this often */

typedef struct llm_state {
    rz__llm_server srv[RZ__LLM_SERVERS_MAX];
    int n_srv;
    char *srv_buf;
    char *model;
    cJSON *req;                     /* prompt|messages, max_tokens, ... */
    size_t max_text, max_log;
    uint32_t timeout_s;
    int wake[2];                    /* the thread writes, poll reads */
    pthread_t th;
    bool running;                   /* th was started and not joined */
    atomic_int stop, done;
    pthread_mutex_t mu;             /* log, log_total */
    char *log;                      /* streamed text, first max_log bytes */
    size_t log_len;
    uint64_t log_total;
    char *snap;                     /* log_so_far's copy */
    uint64_t last_wake_ms;
    rz__llm_result res;
    int rc;
    int server;                     /* the one used; -1 none */
    char why[RZ__LLM_ERROR_MAX + 128];
    char *outputs, *final_log;
    char *output;                   /* a module's port for the text too
                                       (a node-served model in place of
                                       its API: rz__local_llm_request) */
    bool output_list;               /* ... as [text] */
} llm_state;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int llm_probe(const char *host, char *why, size_t len)
{
    (void)host, (void)why, (void)len;
    return 1;   /* whether a server answers is the attempt's to find out */
}

/* ---- the request ---- */

/* inputs.key, else config.key. */
static const cJSON *field(const cJSON *doc, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "inputs"), key);
    return v ? v : cJSON_GetObjectItemCaseSensitive(
                       cJSON_GetObjectItemCaseSensitive(doc, "config"), key);
}

/* What the prompt can weigh in tokens (rz_llm_prompt_bound), as the
 * orchestrator and the engine price it. */
static uint64_t prompt_bound(const cJSON *req)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt"), *m;
    if (cJSON_IsString(p))
        return rz_llm_prompt_bound(strlen(p->valuestring), 1);
    uint64_t bytes = 0;
    size_t n = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(req, "messages")) {
        bytes += strlen(cJSON_GetStringValue(cJSON_GetObjectItem(m, "content")));
        n++;
    }
    return rz_llm_prompt_bound(bytes, n);
}

static int bad(const char *fmt, const char *detail)
{
    return rz__error(RZ_EINVALID, fmt, detail);
}

/* The generation request out of {inputs, config}; checked. */
static int read_request(llm_state *s, const char *text)
{
    cJSON *doc = cJSON_Parse(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        return bad("the llm request is not a JSON object%s", "");
    }
    const cJSON *model = field(doc, "model");
    const char *const copied[] = { "prompt", "messages", "max_tokens",
                                   "temperature" };
    int rc = RZ_OK;
    if (!cJSON_IsString(model) || !model->valuestring[0] ||
        strlen(model->valuestring) > RZ__LLM_NAME_MAX)
        rc = bad("an llm step needs \"model\": a name of 1 to 200 bytes%s", "");
    s->req = cJSON_CreateObject();
    for (size_t i = 0; rc == RZ_OK && i < RZ_ARRAY_LEN(copied); i++) {
        const cJSON *v = field(doc, copied[i]);
        cJSON *c = v ? cJSON_Duplicate(v, true) : NULL;
        if (v && (!c || !cJSON_AddItemToObject(s->req, copied[i], c))) {
            cJSON_Delete(c);
            rc = rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    if (rc == RZ_OK && !cJSON_HasObjectItem(s->req, "max_tokens"))
        cJSON_AddNumberToObject(s->req, "max_tokens", RZ_LLM_DEFAULT_MAX_TOKENS);
    const char *why = rc == RZ_OK ? rz__llm_request_check(s->req) : NULL;
    if (why)
        rc = bad("%s", why);
    const cJSON *mp = field(doc, "max_prompt_tokens");
    if (rc == RZ_OK && mp) {
        if (!cJSON_IsNumber(mp) || mp->valuedouble < 1)
            rc = bad("\"max_prompt_tokens\" must be a whole number of at "
                     "least 1%s", "");
        else if ((double)prompt_bound(s->req) > mp->valuedouble) {
            char n[160];
            snprintf(n, sizeof n, "%" PRIu64 " (its bytes, 16 per message "
                     "and 64) is over max_prompt_tokens %.0f",
                     prompt_bound(s->req), mp->valuedouble);
            rc = bad("the prompt's bound %s", n);
        }
    }
    if (rc == RZ_OK && !(s->model = rz__strdup(model->valuestring)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    const char *port = cJSON_GetStringValue(field(doc, "output"));
    if (rc == RZ_OK && port && !(s->output = rz__strdup(port)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    s->output_list = cJSON_IsTrue(field(doc, "output_list"));
    cJSON_Delete(doc);
    return rc;
}

static int llm_prepare(void **state, const rz__exec_spec *spec)
{
    llm_state *s = rz__calloc(1, sizeof *s);
    *state = s;
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    s->wake[0] = s->wake[1] = -1;
    s->server = -1;
    pthread_mutex_init(&s->mu, NULL);
    const char *list = spec->llm_servers ? spec->llm_servers
                                         : getenv("RHIZOS_LLM_SERVERS");
    if (!list || !*list)
        return rz__error(RZ_EUNSUPPORTED, "no model server is configured "
                         "here (rhizos-node: [[llm]]; embedded: --llm or "
                         "RHIZOS_LLM_SERVERS=\"ollama=http://HOST:PORT\")");
    char err[RZ__LLM_URL_MAX + 200];
    s->n_srv = rz__llm_servers_parse(list, &s->srv_buf, s->srv, err, sizeof err);
    if (s->n_srv < 0)
        return rz__error(RZ_EINVAL, "%s", err);
    int rc = read_request(s, spec->request);
    if (rc != RZ_OK)
        return rc;
    /* Room in the outputs for the counts and the model around the text. */
    size_t cap = spec->max_stdout / 2;
    s->max_text = cap > 1024 ? cap - 512 : cap;
    s->max_log = spec->max_log;
    s->timeout_s = spec->timeout_s;
    if (pipe2(s->wake, O_CLOEXEC | O_NONBLOCK) != 0)
        return rz__error(RZ_EIO, "pipe: %s", strerror(errno));
    return RZ_OK;
}

/* ---- the generation, on its thread ---- */

static void wake(llm_state *s)
{
    ssize_t w;
    do
        w = write(s->wake[1], "x", 1);
    while (w < 0 && errno == EINTR);   /* a full pipe already wakes */
}

static void on_piece(void *ud, const char *p, size_t n)
{
    llm_state *s = ud;
    pthread_mutex_lock(&s->mu);
    size_t room = s->max_log > s->log_len ? s->max_log - s->log_len : 0;
    size_t k = n < room ? n : room;
    char *nb = k ? realloc(s->log, s->log_len + k) : NULL;
    if (nb) {
        memcpy(nb + s->log_len, p, k);
        s->log = nb;
        s->log_len += k;
        s->log_total += k;   /* once the cap is reached it stays at len */
    }
    pthread_mutex_unlock(&s->mu);
    uint64_t now = mono_ms();
    if (now - s->last_wake_ms >= WAKE_MS) {
        s->last_wake_ms = now;
        wake(s);
    }
}

static int should_stop(void *ud)
{
    return atomic_load(&((llm_state *)ud)->stop);
}

/* With several servers, the first that lists the model now. */
static int pick_server(llm_state *s)
{
    return s->n_srv == 1 ? 0 : rz__llm_find(s->srv, s->n_srv, s->model,
                                            should_stop, s);
}

static void *generate(void *arg)
{
    llm_state *s = arg;
    s->server = pick_server(s);
    if (s->server < 0) {
        snprintf(s->res.error, sizeof s->res.error, "model \"%.200s\" is not "
                 "served here (none of the %d model servers lists it)",
                 s->model, s->n_srv);
        s->rc = -1;
    } else {
        rz__llm_server srv = s->srv[s->server];
        if (s->timeout_s && (srv.timeout_s <= 0 || s->timeout_s < srv.timeout_s))
            srv.timeout_s = s->timeout_s;
        s->rc = rz__llm_generate(&srv, s->model, s->req, s->max_text,
                                 on_piece, should_stop, s, &s->res);
    }
    atomic_store(&s->done, 1);
    wake(s);
    return NULL;
}

static int llm_start(void *state)
{
    llm_state *s = state;
    if (pthread_create(&s->th, NULL, generate, s) != 0)
        return rz__error(RZ_ENOMEM, "cannot start a thread");
    s->running = true;
    return RZ_OK;
}

static int llm_fd(const void *state)
{
    return ((const llm_state *)state)->wake[0];
}

static int llm_poll(void *state, int timeout_ms)
{
    llm_state *s = state;
    if (!atomic_load(&s->done)) {
        struct pollfd p = { s->wake[0], POLLIN, 0 };
        if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR)
            return rz__error(RZ_EIO, "poll: %s", strerror(errno));
    }
    char buf[64];
    while (read(s->wake[0], buf, sizeof buf) > 0)
        ;
    if (!atomic_load(&s->done))
        return 0;
    if (s->running) {
        pthread_join(s->th, NULL);
        s->running = false;
    }
    return 1;
}

static void llm_stop(void *state)
{
    if (state)
        atomic_store(&((llm_state *)state)->stop, 1);
}

static void llm_collect(void *state, rz__exec_outcome *out)
{
    llm_state *s = state;
    out->log = s->log;
    out->log_len = s->log_len;
    out->log_end_cut = s->log_total >= s->max_log && s->max_log;
    if (s->rc != 0) {
        out->failure = s->res.error[0] ? s->res.error : "the generation failed";
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", s->res.text);
    cJSON_AddNumberToObject(o, "tokens_in", (double)s->res.tokens_in);
    cJSON_AddNumberToObject(o, "tokens_out", (double)s->res.tokens_out);
    cJSON_AddStringToObject(o, "model", s->res.model);
    if (s->output) {
        cJSON *t = cJSON_CreateString(s->res.text), *l = NULL;
        if (t && s->output_list && (l = cJSON_CreateArray()))
            cJSON_AddItemToArray(l, t), t = l;
        cJSON_DeleteItemFromObjectCaseSensitive(o, s->output);
        if (!s->output_list || l)
            cJSON_AddItemToObject(o, s->output, t);
        else
            cJSON_Delete(t);
    }
    s->outputs = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    /* The log ends with what the node or runner shows of the call. */
    s->final_log = rz__asprintf("%.*s%sllm: %s on its %s server: %" PRIu64
                                " tokens in, %" PRIu64 " out",
                                (int)s->log_len, s->log ? s->log : "",
                                s->log_len ? "\n" : "", s->res.model,
                                rz__llm_kind_name(s->srv[s->server].kind),
                                s->res.tokens_in, s->res.tokens_out);
    if (s->final_log) {
        out->log = s->final_log;
        out->log_len = strlen(s->final_log);
    }
    out->exit_code = s->outputs ? 0 : -1;
    out->outputs = s->outputs;
    out->output_error = s->outputs ? NULL : "out of memory";
}

static void llm_cleanup(void *state)
{
    llm_state *s = state;
    if (!s)
        return;
    if (s->running) {
        atomic_store(&s->stop, 1);
        pthread_join(s->th, NULL);
    }
    for (int i = 0; i < 2; i++)
        if (s->wake[i] >= 0)
            close(s->wake[i]);
    pthread_mutex_destroy(&s->mu);
    rz__llm_result_free(&s->res);
    cJSON_Delete(s->req);
    free(s->srv_buf);
    free(s->model);
    free(s->output);
    free(s->log);
    free(s->snap);
    free(s->final_log);
    cJSON_free(s->outputs);
    free(s);
}

static const char *llm_log_so_far(void *state, size_t *len, uint64_t *total)
{
    llm_state *s = state;
    pthread_mutex_lock(&s->mu);
    char *copy = s->log_len ? malloc(s->log_len) : NULL;
    if (copy)
        memcpy(copy, s->log, s->log_len);
    *len = copy ? s->log_len : 0;
    *total = copy ? s->log_total : 0;
    pthread_mutex_unlock(&s->mu);
    free(s->snap);
    s->snap = copy;
    return copy;
}

const rz__adapter rz__llm_adapter = {
    "llm", llm_probe, llm_prepare, llm_start, llm_fd, llm_poll,
    llm_stop, llm_collect, llm_cleanup, NULL, llm_log_so_far, NULL, NULL, NULL, NULL,
};

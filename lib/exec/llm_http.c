/* The llm adapter's HTTP side (llm.h): model lists for the capabilities
 * and one streamed generation per job or step, over libcurl (loaded on
 * first use, common/lazy.h). Only http and https, no redirects, bounded
 * bodies; what the replies mean is llm_parse.c's. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/internal.h"
#include "exec/llm.h"
#include "rhizos/exec.h"

#define LIST_TIMEOUT_MS 10000L
#define CONNECT_TIMEOUT_MS 5000L
#define ERROR_BODY_MAX (64u * 1024u)

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

rz__llm_kind rz__llm_kind_of(const char *name)
{
    return !name ? 0 : strcmp(name, "ollama") == 0 ? RZ__LLM_OLLAMA
         : strcmp(name, "openai") == 0 ? RZ__LLM_OPENAI : 0;
}

const char *rz__llm_kind_name(rz__llm_kind k)
{
    return k == RZ__LLM_OPENAI ? "openai" : "ollama";
}

int rz__llm_servers_parse(const char *list, char **buf, rz__llm_server *srv,
                          char *err, size_t errlen)
{
    *buf = list ? strdup(list) : NULL;
    if (!*buf) {
        snprintf(err, errlen, list ? "out of memory" : "no model server given");
        return -1;
    }
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(*buf, " \t\n,;", &save); w;
         w = strtok_r(NULL, " \t\n,;", &save)) {
        char *eq = strchr(w, '=');
        if (eq)
            *eq = '\0';
        rz__llm_kind k = rz__llm_kind_of(w);
        char *url = eq ? eq + 1 : w + strlen(w);
        size_t len = strlen(url);
        while (len > 8 && url[len - 1] == '/')
            url[--len] = '\0';   /* paths are appended to it */
        if (!eq || !k) {
            snprintf(err, errlen, "model server \"%.60s\" is not KIND=URL with "
                     "KIND \"ollama\" or \"openai\"", w);
            return -1;
        }
        if ((strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) ||
            strlen(url) > RZ__LLM_URL_MAX || strpbrk(url, "?#@")) {
            snprintf(err, errlen, "model server URL \"%.80s\" is not http(s)://"
                     "HOST[:PORT][/PATH] (at most %u characters, no user, query "
                     "or fragment)", url, RZ__LLM_URL_MAX);
            return -1;
        }
        if (n == (int)RZ__LLM_SERVERS_MAX) {
            snprintf(err, errlen, "more than %u model servers", RZ__LLM_SERVERS_MAX);
            return -1;
        }
        srv[n++] = (rz__llm_server){ k, url, RZ__LLM_TIMEOUT_S };
    }
    if (!n)
        snprintf(err, errlen, "no model server given");
    return n ? n : -1;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static CURL *easy(const rz__llm_server *srv, const char *path, long timeout_ms)
{
    pthread_once(&once, global_init);
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char url[RZ__LLM_URL_MAX + 64];
    snprintf(url, sizeof url, "%s%s", srv->url, path);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    return h;
}

/* ---- a whole body ---- */

typedef struct body {
    char *buf;
    size_t len, max;
    int over;
} body;

static size_t collect(char *p, size_t sz, size_t n, void *ud)
{
    body *b = ud;
    size_t k = sz * n;
    if (k > b->max - b->len) {
        b->over = 1;
        return 0;
    }
    char *nb = realloc(b->buf, b->len + k + 1);
    if (!nb)
        return 0;
    memcpy(nb + b->len, p, k);
    b->buf = nb;
    b->len += k;
    b->buf[b->len] = '\0';
    return k;
}

/* Ollama's list has no context length; /api/show has it, per model (the
 * first RZ__LLM_SHOW_MAX). A model it says nothing of keeps none. */
static void add_context(const rz__llm_server *srv, cJSON *models)
{
    cJSON *m;
    unsigned asked = 0;
    cJSON_ArrayForEach(m, models) {
        if (asked++ == RZ__LLM_SHOW_MAX)
            break;
        CURL *h = easy(srv, "/api/show", LIST_TIMEOUT_MS);
        cJSON *q = cJSON_CreateObject();
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
        cJSON_AddStringToObject(q, "model", name);
        cJSON_AddStringToObject(q, "name", name);   /* older servers */
        char *qt = cJSON_PrintUnformatted(q);
        cJSON_Delete(q);
        body b = { NULL, 0, RZ__LLM_LIST_BYTES_MAX, 0 };
        long status = 0;
        struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
        if (h && qt) {
            curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, qt);
            curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
            curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
            if (curl_easy_perform(h) == CURLE_OK)
                curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        }
        uint64_t ctx = status == 200 && b.buf ? rz__llm_parse_show(b.buf, b.len) : 0;
        if (ctx)
            cJSON_AddNumberToObject(m, "context_length", (double)ctx);
        if (h)
            curl_easy_cleanup(h);
        curl_slist_free_all(hdr);
        cJSON_free(qt);
        free(b.buf);
    }
}

int rz__llm_list(const rz__llm_server *srv, int with_context, cJSON **models,
                 char *err, size_t errlen)
{
    *models = NULL;
    CURL *h = easy(srv, srv->kind == RZ__LLM_OLLAMA ? "/api/tags"
                                                     : "/v1/models",
                   LIST_TIMEOUT_MS);
    if (!h) {   /* where libcurl is missing, its loader says so */
        snprintf(err, errlen, "%s", curl_easy_strerror(CURLE_FAILED_INIT));
        return -1;
    }
    body b = { NULL, 0, RZ__LLM_LIST_BYTES_MAX, 0 };
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    int rc = -1;
    char why[RZ__LLM_ERROR_MAX + 1];
    if (b.over)
        snprintf(err, errlen, "the model list is over %u bytes",
                 RZ__LLM_LIST_BYTES_MAX);
    else if (cc != CURLE_OK)
        snprintf(err, errlen, "no answer (%s)", curl_easy_strerror(cc));
    else if (status != 200) {
        rz__llm_parse_error(b.buf, b.len, why, sizeof why);
        snprintf(err, errlen, "HTTP %ld listing models%s%s", status,
                 why[0] ? ": " : "", why);
    } else
        rc = rz__llm_parse_models(srv->kind, b.buf ? b.buf : "", b.len, models,
                              err, errlen);
    free(b.buf);
    if (rc == 0 && srv->kind == RZ__LLM_OLLAMA && with_context)
        add_context(srv, *models);
    return rc;
}

/* ---- one generation ---- */

typedef struct gen {
    CURL *h;
    rz__llm_stream st;
    body err;                        /* the body of a refusal */
    long status;
    int (*stop)(void *);
    void *ud;
    int stopped;
} gen;

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    gen *g = ud;
    size_t k = sz * n;
    if (!g->status)
        curl_easy_getinfo(g->h, CURLINFO_RESPONSE_CODE, &g->status);
    if (g->status != 200) {
        if (k > g->err.max - g->err.len)
            k = g->err.max - g->err.len;   /* the start says enough */
        return collect(p, 1, k, &g->err) == k ? sz * n : 0;
    }
    return rz__llm_stream_feed(&g->st, p, k) == 0 ? k : 0;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    gen *g = ud;
    if (g->stop && g->stop(g->ud))
        g->stopped = 1;
    return g->stopped;
}

/* The prompt's bytes: a stand-in count (one token per 4 bytes) for a
 * server that says none. */
static uint64_t prompt_bytes(const cJSON *req)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt"), *m;
    if (cJSON_IsString(p))
        return strlen(p->valuestring);
    uint64_t n = 0;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(req, "messages"))
        n += strlen(cJSON_GetStringValue(cJSON_GetObjectItem(m, "content")));
    return n;
}

static void outcome(gen *g, CURLcode cc, const cJSON *req, rz__llm_result *res)
{
    char why[RZ__LLM_ERROR_MAX + 1];
    if (g->stopped) {
        snprintf(res->error, sizeof res->error, "stopped");
        return;
    }
    if (g->status && g->status != 200) {
        rz__llm_parse_error(g->err.buf, g->err.len, why, sizeof why);
        snprintf(res->error, sizeof res->error, "%s%s (HTTP %ld from the "
                 "model server)", g->status == 404 ? "model not found: " : "",
                 why[0] ? why : "no reason given", g->status);
        return;
    }
    if (g->st.error[0]) {
        snprintf(res->error, sizeof res->error, "%s", g->st.error);
        return;
    }
    if (cc != CURLE_OK && cc != CURLE_PARTIAL_FILE) {
        snprintf(res->error, sizeof res->error, "the model server %s (%s)",
                 g->status ? "stopped answering" : "did not answer",
                 curl_easy_strerror(cc));
        return;
    }
    if (rz__llm_stream_close(&g->st) != 0) {
        snprintf(res->error, sizeof res->error, "%s", g->st.error);
        return;
    }
    res->text = g->st.text ? g->st.text : strdup("");
    g->st.text = NULL;
    if (g->st.have_usage) {
        res->tokens_in = g->st.tokens_in;
        res->tokens_out = g->st.tokens_out;
    } else {
        res->tokens_in = (prompt_bytes(req) + 3) / 4;
        res->tokens_out = g->st.pieces;
    }
    if (g->st.model[0])
        snprintf(res->model, sizeof res->model, "%s", g->st.model);
}

int rz__llm_generate(const rz__llm_server *srv, const char *model, const cJSON *req,
                 size_t max_text, void (*on_piece)(void *, const char *, size_t),
                 int (*stop)(void *), void *ud, rz__llm_result *res)
{
    memset(res, 0, sizeof *res);
    snprintf(res->model, sizeof res->model, "%s", model);
    uint64_t t0 = now_ms();
    const char *path = NULL;
    char *bodytext = rz__llm_request_body(srv->kind, model, req, &path);
    gen g = { .err = { NULL, 0, ERROR_BODY_MAX, 0 }, .stop = stop, .ud = ud };
    rz__llm_stream_init(&g.st, srv->kind, max_text);
    g.st.on_piece = on_piece;
    g.st.ud = ud;
    g.h = bodytext ? easy(srv, path, (long)(srv->timeout_s * 1000)) : NULL;
    if (!g.h) {
        snprintf(res->error, sizeof res->error, "%s", bodytext
                 ? curl_easy_strerror(CURLE_FAILED_INIT) : "out of memory");
        free(bodytext);
        return -1;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, srv->kind == RZ__LLM_OPENAI
                            ? "Accept: text/event-stream"
                            : "Accept: application/x-ndjson");
    curl_easy_setopt(g.h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(g.h, CURLOPT_POSTFIELDS, bodytext);
    curl_easy_setopt(g.h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(g.h, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(g.h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(g.h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(g.h, CURLOPT_XFERINFODATA, &g);
    CURLcode cc = curl_easy_perform(g.h);
    if (!g.status)
        curl_easy_getinfo(g.h, CURLINFO_RESPONSE_CODE, &g.status);
    outcome(&g, cc, req, res);
    curl_easy_cleanup(g.h);
    curl_slist_free_all(hdr);
    free(bodytext);
    free(g.err.buf);
    rz__llm_stream_free(&g.st);
    res->run_ms = now_ms() - t0;
    return res->text ? 0 : -1;
}

void rz__llm_result_free(rz__llm_result *r)
{
    if (r) {
        free(r->text);
        r->text = NULL;
    }
}

int rz_llm_models(char **out, const char *kind, const char *url, int details)
{
    if (out)
        *out = NULL;
    rz__llm_kind k = rz__llm_kind_of(kind);
    if (!out || !k || !url)
        return rz__error(RZ_EINVAL, "rz_llm_models: %s",
                         !out || !url ? "NULL argument"
                                      : "kind must be \"ollama\" or \"openai\"");
    char *list = rz__asprintf("%s=%s", kind, url), *buf = NULL;
    rz__llm_server srv[RZ__LLM_SERVERS_MAX];
    char err[RZ__LLM_ERROR_MAX + RZ__LLM_URL_MAX + 160];
    int n = list ? rz__llm_servers_parse(list, &buf, srv, err, sizeof err) : -1;
    int rc = RZ_OK;
    if (!list)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else if (n != 1)
        rc = rz__error(RZ_EINVAL, "%s", n < 0 ? err : "one URL, please");
    cJSON *models = NULL;
    if (rc == RZ_OK && rz__llm_list(&srv[0], details, &models, err, sizeof err) != 0)
        rc = rz__error(RZ_EIO, "%s", err);
    if (rc == RZ_OK && !(*out = cJSON_PrintUnformatted(models)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(models);
    free(buf);
    free(list);
    return rc;
}

int rz__llm_find(const rz__llm_server *srv, int n, const char *model,
                 int (*stop)(void *), void *ud)
{
    for (int i = 0; i < n && !(stop && stop(ud)); i++) {
        cJSON *models = NULL, *m;
        char err[RZ__LLM_ERROR_MAX + 80];
        int found = 0;
        if (rz__llm_list(&srv[i], 0, &models, err, sizeof err) == 0)
            cJSON_ArrayForEach(m, models)
                found |= strcmp(cJSON_GetStringValue(
                                    cJSON_GetObjectItem(m, "name")), model) == 0;
        cJSON_Delete(models);
        if (found)
            return i;
    }
    return -1;
}

int rz_llm_find(int *index, const char *servers, const char *model)
{
    if (index)
        *index = -1;
    if (!index || !servers || !model)
        return rz__error(RZ_EINVAL, "rz_llm_find: NULL argument");
    rz__llm_server srv[RZ__LLM_SERVERS_MAX];
    char err[RZ__LLM_ERROR_MAX + RZ__LLM_URL_MAX + 160], *buf = NULL;
    int n = rz__llm_servers_parse(servers, &buf, srv, err, sizeof err);
    if (n < 0)
        return rz__error(RZ_EINVAL, "%s", err);
    *index = rz__llm_find(srv, n, model, NULL, NULL);
    free(buf);
    return RZ_OK;
}

/* The llm adapter's HTTP side (llm.h): model lists for the capabilities
 * and one streamed generation per job, over libcurl. Only http and https,
 * no redirects, bounded bodies; what the replies mean is llm_parse.c's. */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llm.h"

#define LIST_TIMEOUT_MS 10000L
#define CONNECT_TIMEOUT_MS 5000L
#define ERROR_BODY_MAX (64u * 1024u)

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static const char *kind_name(node_llm_kind k)
{
    return k == NODE_LLM_OPENAI ? "openai" : "ollama";
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static CURL *easy(const node_llm *srv, const char *path, long timeout_ms)
{
    pthread_once(&once, global_init);
    CURL *h = curl_easy_init();
    if (!h)
        return NULL;
    char url[NODE_LLM_URL_MAX + 64];
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
 * first LLM_SHOW_MAX). A model it says nothing of keeps none. */
static void add_context(const node_llm *srv, cJSON *models)
{
    cJSON *m;
    unsigned asked = 0;
    cJSON_ArrayForEach(m, models) {
        if (asked++ == LLM_SHOW_MAX)
            break;
        CURL *h = easy(srv, "/api/show", LIST_TIMEOUT_MS);
        cJSON *q = cJSON_CreateObject();
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
        cJSON_AddStringToObject(q, "model", name);
        cJSON_AddStringToObject(q, "name", name);   /* older servers */
        char *qt = cJSON_PrintUnformatted(q);
        cJSON_Delete(q);
        body b = { NULL, 0, LLM_LIST_BYTES_MAX, 0 };
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
        uint64_t ctx = status == 200 && b.buf ? llm_parse_show(b.buf, b.len) : 0;
        if (ctx)
            cJSON_AddNumberToObject(m, "context_length", (double)ctx);
        if (h)
            curl_easy_cleanup(h);
        curl_slist_free_all(hdr);
        cJSON_free(qt);
        free(b.buf);
    }
}

/* GET the server's model list: 0 with the models, -1 with why. */
static int list_one(const node_llm *srv, int with_context, cJSON **models,
                    char *err, size_t errlen)
{
    *models = NULL;
    CURL *h = easy(srv, srv->kind == NODE_LLM_OLLAMA ? "/api/tags"
                                                     : "/v1/models",
                   LIST_TIMEOUT_MS);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    body b = { NULL, 0, LLM_LIST_BYTES_MAX, 0 };
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    int rc = -1;
    char why[LLM_ERROR_MAX + 1];
    if (b.over)
        snprintf(err, errlen, "the model list is over %u bytes",
                 LLM_LIST_BYTES_MAX);
    else if (cc != CURLE_OK)
        snprintf(err, errlen, "no answer (%s)", curl_easy_strerror(cc));
    else if (status != 200) {
        llm_parse_error(b.buf, b.len, why, sizeof why);
        snprintf(err, errlen, "HTTP %ld listing models%s%s", status,
                 why[0] ? ": " : "", why);
    } else
        rc = llm_parse_models(srv->kind, b.buf ? b.buf : "", b.len, models,
                              err, errlen);
    free(b.buf);
    if (rc == 0 && srv->kind == NODE_LLM_OLLAMA && with_context)
        add_context(srv, *models);
    return rc;
}

cJSON *llm_caps(const node_config *cfg, char *why, size_t whylen)
{
    if (whylen)
        why[0] = '\0';
    if (!cfg->n_llm)
        return NULL;
    cJSON *llm = cJSON_CreateObject();
    cJSON *all = cJSON_AddArrayToObject(llm, "models");
    cJSON_AddNumberToObject(llm, "price_1k_tokens_micros",
                            (double)cfg->llm_1k_tokens_micros);
    cJSON *servers = cJSON_AddArrayToObject(llm, "servers");
    for (size_t i = 0; i < cfg->n_llm; i++) {
        const node_llm *srv = &cfg->llm[i];
        cJSON *models = NULL, *m, *next;
        char err[LLM_ERROR_MAX + 80];
        int ok = list_one(srv, 1, &models, err, sizeof err) == 0;
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "kind", kind_name(srv->kind));
        cJSON_AddBoolToObject(s, "up", ok);
        cJSON_AddNumberToObject(s, "models", ok ? cJSON_GetArraySize(models) : 0);
        cJSON_AddItemToArray(servers, s);
        if (!ok) {
            size_t used = strlen(why);
            if (used + 1 < whylen)
                snprintf(why + used, whylen - used, "%s%s server %s: %s",
                         used ? "\n" : "", kind_name(srv->kind), srv->url, err);
            continue;
        }
        /* A model two servers serve is the first one's. */
        for (m = models ? models->child : NULL; m; m = next) {
            next = m->next;
            const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
            int dup = 0;
            const cJSON *x;
            cJSON_ArrayForEach(x, all)
                dup |= strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(x, "name")),
                              name) == 0;
            if (dup || cJSON_GetArraySize(all) >= (int)LLM_MODELS_MAX)
                continue;
            cJSON_AddStringToObject(m, "kind", kind_name(srv->kind));
            cJSON_AddItemToArray(all, cJSON_DetachItemViaPointer(models, m));
        }
        cJSON_Delete(models);
    }
    return llm;
}

int llm_find(const node_config *cfg, const char *model)
{
    for (size_t i = 0; i < cfg->n_llm; i++) {
        cJSON *models = NULL, *m;
        char err[LLM_ERROR_MAX + 80];
        int found = 0;
        if (list_one(&cfg->llm[i], 0, &models, err, sizeof err) == 0)
            cJSON_ArrayForEach(m, models)
                found |= strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")),
                                model) == 0;
        cJSON_Delete(models);
        if (found)
            return (int)i;
    }
    return -1;
}

/* ---- one generation ---- */

typedef struct gen {
    CURL *h;
    llm_stream st;
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
    return llm_stream_feed(&g->st, p, k) == 0 ? k : 0;
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

static void outcome(gen *g, CURLcode cc, const cJSON *req, llm_result *res)
{
    char why[LLM_ERROR_MAX + 1];
    if (g->stopped) {
        snprintf(res->error, sizeof res->error, "stopped");
        return;
    }
    if (g->status && g->status != 200) {
        llm_parse_error(g->err.buf, g->err.len, why, sizeof why);
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
    if (llm_stream_close(&g->st) != 0) {
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

int llm_generate(const node_llm *srv, const char *model, const cJSON *req,
                 size_t max_text, void (*on_piece)(void *, const char *, size_t),
                 int (*stop)(void *), void *ud, llm_result *res)
{
    memset(res, 0, sizeof *res);
    snprintf(res->model, sizeof res->model, "%s", model);
    uint64_t t0 = now_ms();
    const char *path = NULL;
    char *bodytext = llm_request_body(srv->kind, model, req, &path);
    gen g = { .err = { NULL, 0, ERROR_BODY_MAX, 0 }, .stop = stop, .ud = ud };
    llm_stream_init(&g.st, srv->kind, max_text);
    g.st.on_piece = on_piece;
    g.st.ud = ud;
    g.h = bodytext ? easy(srv, path, (long)(srv->timeout_s * 1000)) : NULL;
    if (!g.h) {
        free(bodytext);
        snprintf(res->error, sizeof res->error, "out of memory");
        return -1;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, srv->kind == NODE_LLM_OPENAI
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
    llm_stream_free(&g.st);
    res->run_ms = now_ms() - t0;
    return res->text ? 0 : -1;
}

void llm_result_free(llm_result *r)
{
    if (r) {
        free(r->text);
        r->text = NULL;
    }
}

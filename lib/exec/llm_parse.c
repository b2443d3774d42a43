/* What the llm adapter reads from model servers and writes to them (llm.h):
 * model lists, error bodies, requests, and streamed replies (Ollama's
 * NDJSON, OpenAI's server-sent events). No I/O here; every string kept is
 * UTF-8 without control characters and bounded, every number whole and
 * within 2^53, because what a server says ends up in the capabilities the
 * orchestrator checks and in a job's signed outputs. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec/llm.h"

#define WHOLE_MAX 9007199254740992.0   /* 2^53 */

/* ---- small checks ---- */

/* Length of the UTF-8 sequence at s (at most n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t k = s[0] >= 0xC2 && s[0] <= 0xDF ? 2
             : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
             : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : 0;
    if (!k || k > n)
        return 0;
    for (size_t i = 1; i < k; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;   /* overlong, surrogate, past U+10FFFF */
    return k;
}

/* A name as kept: 1..max bytes of UTF-8 without control characters. */
static int good_name(const char *s, size_t max)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return 0;
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)s + i;
        size_t k = utf8_len(u, n - i);
        if (!k || (k == 1 && (u[0] < 0x20 || u[0] == 0x7f)))
            return 0;
        i += k;
    }
    return 1;
}

/* Text as shown in an error: valid UTF-8 kept, control characters as
 * spaces, other bytes as '?', cut on a character at outlen - 1. */
static void sanitize(char *out, size_t outlen, const char *in, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outlen;) {
        const unsigned char *u = (const unsigned char *)in + i;
        size_t k = utf8_len(u, n - i);
        if (k > 1 && o + k < outlen) {
            memcpy(out + o, u, k);
            o += k;
            i += k;
            continue;
        }
        out[o++] = k == 1 && u[0] >= 0x20 && u[0] != 0x7f ? (char)u[0]
                 : k == 1 || k == 0 ? (u[0] < 0x20 || u[0] == 0x7f ? ' ' : '?')
                 : '?';
        i += k ? k : 1;
    }
    if (outlen)
        out[o] = '\0';
}

static int whole(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 &&
                                v->valuedouble <= WHOLE_MAX) ||
        v->valuedouble != floor(v->valuedouble))
        return 0;
    *out = (uint64_t)v->valuedouble;
    return 1;
}

/* JSON of exactly these bytes: trailing bytes other than white space
 * (a NUL, a second value) refuse it, as a strict reader would. */
static cJSON *parse_exact(const char *s, size_t n)
{
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    for (; o && end && end < s + n; end++)
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            cJSON_Delete(o);
            return NULL;
        }
    return o;
}

static const char *str_at(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- model lists ---- */

static void add_str(cJSON *m, const char *key, const char *v, size_t max)
{
    if (good_name(v, max))
        cJSON_AddStringToObject(m, key, v);
}

static void add_whole(cJSON *m, const char *key, const cJSON *v)
{
    uint64_t u;
    if (whole(v, &u) && u > 0)
        cJSON_AddNumberToObject(m, key, (double)u);
}

static int listed(const cJSON *arr, const char *name)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, arr)
        if (strcmp(str_at(m, "name"), name) == 0)
            return 1;
    return 0;
}

/* One entry of either list, or NULL when it is not well-formed. */
static cJSON *model_entry(rz__llm_kind kind, const cJSON *e)
{
    const char *name = str_at(e, kind == RZ__LLM_OLLAMA ? "name" : "id");
    if (!name && kind == RZ__LLM_OLLAMA)
        name = str_at(e, "model");
    if (!good_name(name, RZ__LLM_NAME_MAX))
        return NULL;
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "name", name)) {
        cJSON_Delete(m);
        return NULL;
    }
    if (kind == RZ__LLM_OLLAMA) {
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(e, "details");
        add_whole(m, "size_bytes", cJSON_GetObjectItemCaseSensitive(e, "size"));
        add_str(m, "quantization", str_at(d, "quantization_level"), 32);
        add_str(m, "family", str_at(d, "family"), 64);
        add_str(m, "parameters", str_at(d, "parameter_size"), 32);
        add_whole(m, "context_length",
                  cJSON_GetObjectItemCaseSensitive(e, "context_length"));
    } else {
        /* Not in OpenAI's own list; servers that know it say it so. */
        static const char *const ctx[] = { "context_length", "max_model_len",
                                           "context_window" };
        for (size_t i = 0; i < 3 && !cJSON_GetObjectItem(m, "context_length"); i++)
            add_whole(m, "context_length",
                      cJSON_GetObjectItemCaseSensitive(e, ctx[i]));
    }
    return m;
}

int rz__llm_parse_models(rz__llm_kind kind, const char *text, size_t len,
                     cJSON **models, char *err, size_t errlen)
{
    *models = NULL;
    if (len > RZ__LLM_LIST_BYTES_MAX) {
        snprintf(err, errlen, "the model list is over %u bytes",
                 RZ__LLM_LIST_BYTES_MAX);
        return -1;
    }
    cJSON *doc = parse_exact(text, len);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(
        doc, kind == RZ__LLM_OLLAMA ? "models" : "data");
    if (!cJSON_IsArray(list)) {
        snprintf(err, errlen, "the model list is not %s",
                 kind == RZ__LLM_OLLAMA ? "{\"models\":[...]}"
                                         : "{\"data\":[...]}");
        cJSON_Delete(doc);
        return -1;
    }
    cJSON *out = cJSON_CreateArray();
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        if (!out || cJSON_GetArraySize(out) >= (int)RZ__LLM_MODELS_MAX)
            break;
        cJSON *m = model_entry(kind, e);
        if (m && listed(out, cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"))))
            cJSON_Delete(m);
        else if (m)
            cJSON_AddItemToArray(out, m);
    }
    cJSON_Delete(doc);
    if (!out) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *models = out;
    return 0;
}

uint64_t rz__llm_parse_show(const char *text, size_t len)
{
    if (len > RZ__LLM_LIST_BYTES_MAX)
        return 0;
    cJSON *doc = parse_exact(text, len);
    const cJSON *info = cJSON_GetObjectItemCaseSensitive(doc, "model_info"), *e;
    static const char suffix[] = ".context_length";
    uint64_t ctx = 0;
    if (!cJSON_IsObject(info))
        info = NULL;
    cJSON_ArrayForEach(e, info) {
        size_t n = e->string ? strlen(e->string) : 0;
        uint64_t v;
        if (n > sizeof suffix - 1 &&
            strcmp(e->string + n - (sizeof suffix - 1), suffix) == 0 &&
            whole(e, &v) && v >= 1 && v <= UINT64_C(1) << 32) {
            ctx = v;
            break;
        }
    }
    cJSON_Delete(doc);
    return ctx;
}

void rz__llm_parse_error(const char *text, size_t len, char *out, size_t outlen)
{
    if (!outlen)
        return;
    out[0] = '\0';
    if (!text || !len)
        return;
    size_t cap = outlen - 1 < RZ__LLM_ERROR_MAX ? outlen : RZ__LLM_ERROR_MAX + 1;
    cJSON *doc = len <= RZ__LLM_LINE_MAX ? cJSON_ParseWithLength(text, len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    const char *msg = cJSON_IsString(e) ? e->valuestring : str_at(e, "message");
    if (msg)
        sanitize(out, cap, msg, strlen(msg));
    else
        sanitize(out, cap, text, len < cap ? len : cap);
    cJSON_Delete(doc);
}

/* ---- requests ---- */

const char *rz__llm_request_check(const cJSON *req)
{
    if (!cJSON_IsObject(req))
        return "the llm request is not an object";
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(req, "messages");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(req, "max_tokens");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "temperature");
    if (!p == !m)
        return "an llm request has exactly one of \"prompt\" and \"messages\"";
    if (p && (!cJSON_IsString(p) || !p->valuestring[0]))
        return "\"prompt\" must be a non-empty string";
    if (m) {
        int n = cJSON_GetArraySize(m);
        if (!cJSON_IsArray(m) || n < 1 || n > (int)RZ__LLM_MESSAGES_MAX)
            return "\"messages\" must be a list of 1 to 1024 messages";
        const cJSON *x;
        cJSON_ArrayForEach(x, m) {
            const char *role = str_at(x, "role");
            if (!cJSON_IsObject(x) || !good_name(role, 32) ||
                !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(x, "content")))
                return "each message must be {\"role\": \"...\", "
                       "\"content\": \"...\"}";
        }
    }
    uint64_t n = 0;
    if (!whole(mt, &n) || n < 1 || n > RZ__LLM_MAX_TOKENS)
        return "\"max_tokens\" must be a whole number from 1 to 1000000";
    if (t && (!cJSON_IsNumber(t) || !(t->valuedouble >= 0 &&
                                      t->valuedouble <= 2)))
        return "\"temperature\" must be a number from 0 to 2";
    return NULL;
}

/* [{role, content}] with only those two members. */
static cJSON *messages_of(const cJSON *req)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(req, "messages"), *x;
    cJSON *out = cJSON_CreateArray();
    if (!m) {
        cJSON *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", str_at(req, "prompt"));
        cJSON_AddItemToArray(out, u);
        return out;
    }
    cJSON_ArrayForEach(x, m) {
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "role", str_at(x, "role"));
        cJSON_AddStringToObject(c, "content", str_at(x, "content"));
        cJSON_AddItemToArray(out, c);
    }
    return out;
}

char *rz__llm_request_body(rz__llm_kind kind, const char *model,
                       const cJSON *req, const char **path)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(req, "prompt");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req, "temperature");
    double max = cJSON_GetObjectItemCaseSensitive(req, "max_tokens")->valuedouble;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "model", model);
    if (kind == RZ__LLM_OLLAMA) {
        *path = p ? "/api/generate" : "/api/chat";
        if (p)
            cJSON_AddStringToObject(b, "prompt", p->valuestring);
        else
            cJSON_AddItemToObject(b, "messages", messages_of(req));
        cJSON_AddBoolToObject(b, "stream", 1);
        cJSON *o = cJSON_AddObjectToObject(b, "options");
        cJSON_AddNumberToObject(o, "num_predict", max);
        if (t)
            cJSON_AddNumberToObject(o, "temperature", t->valuedouble);
    } else {
        *path = "/v1/chat/completions";
        cJSON_AddItemToObject(b, "messages", messages_of(req));
        cJSON_AddNumberToObject(b, "max_tokens", max);
        if (t)
            cJSON_AddNumberToObject(b, "temperature", t->valuedouble);
        cJSON_AddBoolToObject(b, "stream", 1);
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(b, "stream_options"),
                              "include_usage", 1);
    }
    char *text = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return text;
}

/* ---- streams ---- */

void rz__llm_stream_init(rz__llm_stream *s, rz__llm_kind kind, size_t max_text)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->max_text = max_text;
}

void rz__llm_stream_free(rz__llm_stream *s)
{
    free(s->text);
    free(s->line);
    free(s->ev);
    s->text = s->line = s->ev = NULL;
}

static int fail(rz__llm_stream *s, const char *fmt, const char *detail)
{
    char d[RZ__LLM_ERROR_MAX + 1] = "";
    if (detail)
        sanitize(d, sizeof d, detail, strlen(detail));
    snprintf(s->error, sizeof s->error, fmt, d);
    /* the cut may have split a character: the error is sent as JSON */
    size_t n = strlen(s->error), i = 0, k;
    while (i < n && (k = utf8_len((const unsigned char *)s->error + i, n - i)))
        i += k;
    s->error[i] = '\0';
    return -1;
}

static int grow(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return -1;
    *buf = b;
    *cap = c;
    return 0;
}

/* `p` with every byte that is not part of valid UTF-8 as U+FFFD (a
 * server's bad bytes must not make the job's outputs unsendable); NULL
 * when it is valid already or memory ran out (*oom). */
static char *valid_utf8(const char *p, size_t n, int *oom)
{
    size_t i = 0, k;
    while (i < n && (k = utf8_len((const unsigned char *)p + i, n - i)) != 0)
        i += k;
    *oom = 0;
    if (i == n)
        return NULL;
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) {
        *oom = 1;
        return NULL;
    }
    for (i = 0; i < n;) {
        k = utf8_len((const unsigned char *)p + i, n - i);
        if (k) {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    *o = '\0';
    return out;
}

static int piece(rz__llm_stream *s, const char *p)
{
    size_t n = strlen(p);
    if (!n)
        return 0;
    int oom;
    char *fixed = valid_utf8(p, n, &oom);
    if (oom)
        return fail(s, "out of memory%s", NULL);
    if (fixed) {
        int rc = piece(s, fixed);
        free(fixed);
        return rc;
    }
    if (n > s->max_text || s->text_len > s->max_text - n) {
        snprintf(s->error, sizeof s->error, "the completion is over %zu "
                 "bytes (the node's max_output_kb)", s->max_text);
        return -1;
    }
    if (grow(&s->text, &s->text_cap, s->text_len + n + 1) != 0)
        return fail(s, "out of memory%s", NULL);
    memcpy(s->text + s->text_len, p, n);
    s->text_len += n;
    s->text[s->text_len] = '\0';
    s->pieces++;
    if (s->on_piece)
        s->on_piece(s->ud, p, n);
    return 0;
}

static void keep_model(rz__llm_stream *s, const cJSON *o)
{
    const char *m = str_at(o, "model");
    if (good_name(m, RZ__LLM_NAME_MAX))
        snprintf(s->model, sizeof s->model, "%s", m);
}

static void keep_finish(rz__llm_stream *s, const char *f)
{
    if (good_name(f, sizeof s->finish - 1))
        snprintf(s->finish, sizeof s->finish, "%s", f);
}

/* The server's error inside a stream, if any. */
static int streamed_error(rz__llm_stream *s, const cJSON *o)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (!e || cJSON_IsNull(e))
        return 0;
    const char *msg = cJSON_IsString(e) ? e->valuestring : str_at(e, "message");
    return fail(s, "the model server failed: %s", msg ? msg : "no reason given");
}

static int ollama_line(rz__llm_stream *s, const char *line, size_t n)
{
    cJSON *o = parse_exact(line, n);
    int rc = 0;
    if (!cJSON_IsObject(o))
        rc = fail(s, "the model server sent a line that is not a JSON "
                  "object%s", NULL);
    else if ((rc = streamed_error(s, o)) == 0) {
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(o, "message");
        const char *p = str_at(o, "response");
        if (!p)
            p = str_at(msg, "content");
        keep_model(s, o);
        if (p)
            rc = piece(s, p);
        if (rc == 0 && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "done"))) {
            uint64_t in = 0, out = 0;
            int a = whole(cJSON_GetObjectItemCaseSensitive(o, "prompt_eval_count"), &in);
            int b = whole(cJSON_GetObjectItemCaseSensitive(o, "eval_count"), &out);
            s->tokens_in = in;
            s->tokens_out = out;
            s->have_usage = a || b;
            keep_finish(s, str_at(o, "done_reason"));
            s->done = 1;
        }
    }
    cJSON_Delete(o);
    return rc;
}

/* One server-sent event's data. */
static int openai_event(rz__llm_stream *s, const char *data, size_t n)
{
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->done = 1;
        return 0;
    }
    cJSON *o = parse_exact(data, n);
    int rc = 0;
    if (!cJSON_IsObject(o))
        rc = fail(s, "the model server sent an event that is not a JSON "
                  "object%s", NULL);
    else if ((rc = streamed_error(s, o)) == 0) {
        keep_model(s, o);
        const cJSON *ch = cJSON_GetArrayItem(
            cJSON_GetObjectItemCaseSensitive(o, "choices"), 0);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const char *p = str_at(d, "content");
        if (p)
            rc = piece(s, p);
        keep_finish(s, str_at(ch, "finish_reason"));
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
        uint64_t in = 0, out = 0;
        if (rc == 0 && cJSON_IsObject(u) &&
            whole(cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens"), &in) &&
            whole(cJSON_GetObjectItemCaseSensitive(u, "completion_tokens"), &out)) {
            s->tokens_in = in;
            s->tokens_out = out;
            s->have_usage = 1;
        }
    }
    cJSON_Delete(o);
    return rc;
}

static int openai_dispatch(rz__llm_stream *s)
{
    if (!s->have_ev)
        return 0;
    s->have_ev = 0;
    size_t n = s->ev_len;
    s->ev_len = 0;
    return openai_event(s, s->ev, n);
}

static int openai_line(rz__llm_stream *s, const char *line, size_t n)
{
    if (n == 0)
        return openai_dispatch(s);
    if (line[0] == ':')
        return 0;   /* a comment: keep-alive */
    if (n < 5 || memcmp(line, "data:", 5) != 0)
        return 0;   /* event:, id:, retry: and unknown fields */
    const char *v = line + 5;
    size_t vn = n - 5;
    if (vn && *v == ' ')
        v++, vn--;
    size_t need = s->ev_len + (s->have_ev ? 1 : 0) + vn;
    if (need > RZ__LLM_LINE_MAX)
        return fail(s, "an event from the model server is over 1 MiB%s", NULL);
    if (grow(&s->ev, &s->ev_cap, need + 1) != 0)
        return fail(s, "out of memory%s", NULL);
    if (s->have_ev)
        s->ev[s->ev_len++] = '\n';
    memcpy(s->ev + s->ev_len, v, vn);
    s->ev_len += vn;
    s->ev[s->ev_len] = '\0';
    s->have_ev = 1;
    return 0;
}

static int one_line(rz__llm_stream *s, char *line, size_t n)
{
    if (n && line[n - 1] == '\r')
        n--;
    line[n] = '\0';
    if (s->kind == RZ__LLM_OLLAMA)
        return n ? ollama_line(s, line, n) : 0;
    return openai_line(s, line, n);
}

int rz__llm_stream_feed(rz__llm_stream *s, const char *data, size_t n)
{
    if (s->error[0])
        return -1;
    for (size_t i = 0; i < n && !s->done;) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t take = nl ? (size_t)(nl - (data + i)) : n - i;
        if (s->line_len + take > RZ__LLM_LINE_MAX)
            return fail(s, "a line from the model server is over 1 MiB%s", NULL);
        if (grow(&s->line, &s->line_cap, s->line_len + take + 1) != 0)
            return fail(s, "out of memory%s", NULL);
        memcpy(s->line + s->line_len, data + i, take);
        s->line_len += take;
        i += take;
        if (!nl)
            break;
        i++;
        size_t len = s->line_len;
        s->line_len = 0;
        if (one_line(s, s->line, len) != 0)
            return -1;
    }
    return 0;
}

int rz__llm_stream_close(rz__llm_stream *s)
{
    if (s->error[0])
        return -1;
    if (!s->done && s->line_len) {   /* a last line without its newline */
        size_t len = s->line_len;
        s->line_len = 0;
        if (grow(&s->line, &s->line_cap, len + 1) != 0 ||
            one_line(s, s->line, len) != 0)
            return s->error[0] ? -1 : fail(s, "out of memory%s", NULL);
    }
    if (!s->done && s->kind == RZ__LLM_OPENAI && openai_dispatch(s) != 0)
        return -1;
    if (!s->done)
        return fail(s, "the model server's stream was cut before its end "
                    "(%s)", s->text_len ? "after part of the text"
                                        : "before any text");
    return 0;
}

/* libFuzzer target: rhizos-node's llm adapter readers (server/node/
 * llm_parse.c). The first byte picks the reader, the second the size of
 * the pieces a stream arrives in. What is kept must be sendable as is:
 * a model list and a completion's text and error pass the orchestrator's
 * strict JSON check (rz_wire_check_json: UTF-8, no NUL); a stream read in
 * pieces reads the same as whole; the text stays within its cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "exec/llm.h"
#include "rhizos/rhizos.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TEXT 4096u

static void sendable(cJSON *doc)
{
    char *t = cJSON_PrintUnformatted(doc);
    if (!t || rz_wire_check_json(t, strlen(t)) != RZ_OK)
        abort();
    cJSON_free(t);
}

static void models(rz__llm_kind k, const char *text, size_t n)
{
    cJSON *m = NULL;
    char err[256] = "";
    if (rz__llm_parse_models(k, text, n, &m, err, sizeof err) != 0) {
        if (m || !err[0])
            abort();
        return;
    }
    if (cJSON_GetArraySize(m) > (int)RZ__LLM_MODELS_MAX)
        abort();
    const cJSON *a, *b;
    cJSON_ArrayForEach(a, m) {
        const char *na = cJSON_GetStringValue(cJSON_GetObjectItem(a, "name"));
        if (!na || !*na || strlen(na) > RZ__LLM_NAME_MAX)
            abort();
        for (b = a->next; b; b = b->next)
            if (strcmp(na, cJSON_GetStringValue(cJSON_GetObjectItem(b, "name"))) == 0)
                abort();
    }
    sendable(m);
    cJSON_Delete(m);
}

static int read_stream(rz__llm_stream *s, rz__llm_kind k, const char *text,
                       size_t n, size_t step)
{
    rz__llm_stream_init(s, k, MAX_TEXT);
    for (size_t i = 0; i < n; i += step)
        if (rz__llm_stream_feed(s, text + i, i + step > n ? n - i : step) != 0)
            break;
    return rz__llm_stream_close(s);
}

static void stream(rz__llm_kind k, const char *text, size_t n, size_t step)
{
    rz__llm_stream a, b;
    int ra = read_stream(&a, k, text, n, n ? n : 1);
    int rb = read_stream(&b, k, text, n, step);
    if (ra != rb || a.text_len != b.text_len || a.tokens_in != b.tokens_in ||
        a.tokens_out != b.tokens_out || strcmp(a.error, b.error) != 0 ||
        (a.text_len && memcmp(a.text, b.text, a.text_len) != 0))
        abort();
    if (a.text_len > MAX_TEXT || (a.text && strlen(a.text) != a.text_len) ||
        (ra != 0 && !a.error[0]))
        abort();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "text", a.text ? a.text : "");
    cJSON_AddStringToObject(o, "error", a.error);
    cJSON_AddStringToObject(o, "model", a.model);
    cJSON_AddStringToObject(o, "finish", a.finish);
    sendable(o);
    cJSON_Delete(o);
    rz__llm_stream_free(&a);
    rz__llm_stream_free(&b);
}

static void error_body(const char *text, size_t n)
{
    char out[RZ__LLM_ERROR_MAX + 1];
    rz__llm_parse_error(text, n, out, sizeof out);
    if (strlen(out) > RZ__LLM_ERROR_MAX)
        abort();
    cJSON *o = cJSON_CreateString(out);
    sendable(o);
    cJSON_Delete(o);
}

static void request(const char *text, size_t n)
{
    cJSON *r = cJSON_ParseWithLength(text, n);
    if (r && !rz__llm_request_check(r)) {
        for (int k = RZ__LLM_OLLAMA; k <= RZ__LLM_OPENAI; k++) {
            const char *path = NULL;
            char *b = rz__llm_request_body((rz__llm_kind)k, "m", r, &path);
            cJSON *back = b ? cJSON_Parse(b) : NULL;
            if (!back || !path)
                abort();
            cJSON_Delete(back);
            free(b);
        }
    }
    cJSON_Delete(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const char *text = (const char *)data + 2;
    size_t n = size - 2, step = (size_t)(data[1] % 64) + 1;
    switch (data[0] % 7) {
    case 6: (void)rz__llm_parse_show(text, n); break;
    case 0: models(RZ__LLM_OLLAMA, text, n); break;
    case 1: models(RZ__LLM_OPENAI, text, n); break;
    case 2: stream(RZ__LLM_OLLAMA, text, n, step); break;
    case 3: stream(RZ__LLM_OPENAI, text, n, step); break;
    case 4: error_body(text, n); break;
    default: request(text, n); break;
    }
    return 0;
}

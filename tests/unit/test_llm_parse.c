/* The llm adapter's readers (lib/exec/llm_parse.c): model lists, error
 * bodies, requests, and streamed replies of both APIs, fed whole, byte by
 * byte and split anywhere; malformed, hostile and oversized input refused
 * with a reason, never half-kept. Then the adapter (llm.c) and its server
 * lists: every refusal that needs no server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "exec/llm.h"
#include "rhizos/rhizos.h"

/* ---- model lists ---- */

static cJSON *models_of(rz__llm_kind k, const char *text, char *err)
{
    cJSON *m = NULL;
    err[0] = '\0';
    int rc = rz__llm_parse_models(k, text, strlen(text), &m, err, 256);
    if (rc != 0) {
        assert_null(m);
        assert_true(err[0]);
        return NULL;
    }
    assert_non_null(m);
    return m;
}

static const char *name_at(const cJSON *arr, int i)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(arr, i), "name"));
}

static void ollama_tags(void **state)
{
    (void)state;
    char err[256];
    cJSON *m = models_of(RZ__LLM_OLLAMA,
        "{\"models\":[{\"name\":\"llama3:8b\",\"size\":4661224676,"
        "\"details\":{\"family\":\"llama\",\"parameter_size\":\"8.0B\","
        "\"quantization_level\":\"Q4_0\"}},"
        "{\"model\":\"only-model-key\"},"
        "{\"name\":\"llama3:8b\"},"                 /* a duplicate */
        "{\"name\":\"\"},{\"name\":7},\"str\",null,"
        "{\"name\":\"ctl\\u0001x\"},"
        "{\"name\":\"neg\",\"size\":-5,\"details\":{\"quantization_level\":3}},"
        "{\"name\":\"frac\",\"size\":1.5},{\"name\":\"huge\",\"size\":1e300}]}", err);
    assert_int_equal(cJSON_GetArraySize(m), 5);
    assert_string_equal(name_at(m, 0), "llama3:8b");
    const cJSON *a = cJSON_GetArrayItem(m, 0);
    assert_true(cJSON_GetObjectItem(a, "size_bytes")->valuedouble == 4661224676.0);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "quantization")), "Q4_0");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "family")), "llama");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(a, "parameters")), "8.0B");
    assert_string_equal(name_at(m, 1), "only-model-key");
    assert_string_equal(name_at(m, 2), "neg");
    /* what is not a whole size or a string is left out, the model kept */
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "size_bytes"));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "quantization"));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 3), "size_bytes"));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 4), "size_bytes"));
    cJSON_Delete(m);
}

static void openai_models(void **state)
{
    (void)state;
    char err[256];
    cJSON *m = models_of(RZ__LLM_OPENAI,
        "{\"object\":\"list\",\"data\":[{\"id\":\"gpt-x\",\"object\":\"model\"},"
        "{\"id\":\"vllm\",\"max_model_len\":32768},"
        "{\"id\":\"lm\",\"context_length\":4096,\"max_model_len\":1},"
        "{\"name\":\"not-an-id\"}]}", err);
    assert_int_equal(cJSON_GetArraySize(m), 3);
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 0), "context_length"));
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "context_length")
                ->valuedouble == 32768);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 2), "context_length")
                ->valuedouble == 4096);
    cJSON_Delete(m);
}

static void model_lists_refused(void **state)
{
    (void)state;
    char err[256];
    static const char *const bad[] = {
        "", "null", "[]", "{\"models\":{}}", "{\"data\":[]}" /* ollama wants models */,
        "{\"models\":[]} trailing", "{\"models\":[]", "not json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_null(models_of(RZ__LLM_OLLAMA, bad[i], err));
    assert_null(models_of(RZ__LLM_OPENAI, "{\"models\":[]}", err));
    assert_non_null(strstr(err, "{\"data\":[...]}"));
    /* over the size cap: refused before parsing */
    size_t n = RZ__LLM_LIST_BYTES_MAX + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    cJSON *m = NULL;
    assert_int_equal(rz__llm_parse_models(RZ__LLM_OLLAMA, big, n, &m, err, sizeof err), -1);
    assert_null(m);
    assert_non_null(strstr(err, "over"));
    free(big);
}

static void model_names_bounded(void **state)
{
    (void)state;
    char err[256];
    /* 300 models: the first RZ__LLM_MODELS_MAX kept; a name of 201 bytes and
     * one that is not UTF-8 are left out. */
    size_t cap = 64 * 1024;
    char *t = malloc(cap);
    size_t o = (size_t)snprintf(t, cap, "{\"models\":[{\"name\":\"");
    memset(t + o, 'a', RZ__LLM_NAME_MAX + 1);
    o += RZ__LLM_NAME_MAX + 1;
    o += (size_t)snprintf(t + o, cap - o, "\"},{\"name\":\"bad\xff\xfe\"},{\"name\":\"ff\xff\xb0\xb0\"},"
                          "{\"name\":\"\xed\xa0\x80surrogate\"},"
                          "{\"name\":\"ok-\xc3\xa9\"}");
    for (int i = 0; i < 300; i++)
        o += (size_t)snprintf(t + o, cap - o, ",{\"name\":\"m%d\"}", i);
    snprintf(t + o, cap - o, "]}");
    cJSON *m = models_of(RZ__LLM_OLLAMA, t, err);
    assert_int_equal(cJSON_GetArraySize(m), (int)RZ__LLM_MODELS_MAX);
    assert_string_equal(name_at(m, 0), "ok-\xc3\xa9");
    assert_string_equal(name_at(m, 1), "m0");
    cJSON_Delete(m);
    free(t);
}

static void ollama_show(void **state)
{
    (void)state;
    static const struct { const char *text; uint64_t want; } cases[] = {
        { "{\"model_info\":{\"general.architecture\":\"llama\","
          "\"llama.context_length\":131072}}", 131072 },
        { "{\"model_info\":{\"qwen2.context_length\":32768.0}}", 32768 },
        { "{\"model_info\":{\".context_length\":5,\"context_length\":6}}", 0 },
        { "{\"model_info\":{\"x.context_length\":-1}}", 0 },
        { "{\"model_info\":{\"x.context_length\":1.5}}", 0 },
        { "{\"model_info\":{\"x.context_length\":1e300}}", 0 },
        { "{\"model_info\":{\"x.context_length\":\"4096\"}}", 0 },
        { "{\"model_info\":[]}", 0 },
        { "{\"details\":{}}", 0 },
        { "{\"model_info\":{\"x.context_length\":4096}} junk", 0 },
        { "", 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        assert_int_equal(rz__llm_parse_show(cases[i].text, strlen(cases[i].text)),
                         cases[i].want);
}

/* ---- errors ---- */

static void error_bodies(void **state)
{
    (void)state;
    char out[RZ__LLM_ERROR_MAX + 1];
    const char *o1 = "{\"error\":\"model 'x' not found\"}";
    rz__llm_parse_error(o1, strlen(o1), out, sizeof out);
    assert_string_equal(out, "model 'x' not found");
    const char *o2 = "{\"error\":{\"message\":\"The model `x` does not exist\","
                     "\"type\":\"invalid_request_error\"}}";
    rz__llm_parse_error(o2, strlen(o2), out, sizeof out);
    assert_string_equal(out, "The model `x` does not exist");
    const char *o3 = "<html>\r\n502 Bad\x01Gateway\xff</html>";
    rz__llm_parse_error(o3, strlen(o3), out, sizeof out);
    assert_string_equal(out, "<html>  502 Bad Gateway?</html>");
    const char *o4 = "x\xff\xb0\xb0\xf5\x80\x80\x80y";   /* never UTF-8 */
    rz__llm_parse_error(o4, strlen(o4), out, sizeof out);
    assert_string_equal(out, "x???????y");
    rz__llm_parse_error("", 0, out, sizeof out);
    assert_string_equal(out, "");
    rz__llm_parse_error(NULL, 0, out, sizeof out);
    assert_string_equal(out, "");
    /* long: cut to RZ__LLM_ERROR_MAX, on a character */
    char big[2000];
    size_t n = (size_t)snprintf(big, sizeof big, "{\"error\":\"");
    for (int i = 0; i < 400; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "\xc3\xa9");
    snprintf(big + n, sizeof big - n, "\"}");
    rz__llm_parse_error(big, strlen(big), out, sizeof out);
    assert_true(strlen(out) <= RZ__LLM_ERROR_MAX);
    assert_int_equal(strlen(out) % 2, 0);
    char tiny[4];
    rz__llm_parse_error(o1, strlen(o1), tiny, sizeof tiny);
    assert_string_equal(tiny, "mod");
}

/* ---- requests ---- */

static const char *check(const char *json)
{
    static char why[256];
    cJSON *r = cJSON_Parse(json);
    const char *w = rz__llm_request_check(r);
    snprintf(why, sizeof why, "%s", w ? w : "");
    cJSON_Delete(r);
    return w ? why : NULL;
}

static void requests_checked(void **state)
{
    (void)state;
    assert_null(check("{\"prompt\":\"hi\",\"max_tokens\":5}"));
    assert_null(check("{\"messages\":[{\"role\":\"user\",\"content\":\"\"}],"
                      "\"max_tokens\":1,\"temperature\":2,\"model\":\"m\"}"));
    static const char *const bad[] = {
        "[]", "{\"max_tokens\":5}",
        "{\"prompt\":\"hi\",\"messages\":[],\"max_tokens\":5}",
        "{\"prompt\":\"\",\"max_tokens\":5}", "{\"prompt\":3,\"max_tokens\":5}",
        "{\"prompt\":\"hi\"}", "{\"prompt\":\"hi\",\"max_tokens\":0}",
        "{\"prompt\":\"hi\",\"max_tokens\":1.5}",
        "{\"prompt\":\"hi\",\"max_tokens\":1000001}",
        "{\"prompt\":\"hi\",\"max_tokens\":\"5\"}",
        "{\"prompt\":\"hi\",\"max_tokens\":5,\"temperature\":2.5}",
        "{\"prompt\":\"hi\",\"max_tokens\":5,\"temperature\":\"hot\"}",
        "{\"messages\":[],\"max_tokens\":5}",
        "{\"messages\":{},\"max_tokens\":5}",
        "{\"messages\":[{\"role\":\"user\"}],\"max_tokens\":5}",
        "{\"messages\":[{\"content\":\"x\"}],\"max_tokens\":5}",
        "{\"messages\":[\"x\"],\"max_tokens\":5}",
        "{\"messages\":[{\"role\":\"\\u0001\",\"content\":\"x\"}],\"max_tokens\":5}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *w = check(bad[i]);
        if (!w)
            fail_msg("accepted: %s", bad[i]);
    }
}

static void request_bodies(void **state)
{
    (void)state;
    cJSON *r = cJSON_Parse("{\"prompt\":\"hi\",\"max_tokens\":7,\"temperature\":0.5}");
    const char *path = NULL;
    char *b = rz__llm_request_body(RZ__LLM_OLLAMA, "m:1", r, &path);
    assert_string_equal(path, "/api/generate");
    assert_string_equal(b, "{\"model\":\"m:1\",\"prompt\":\"hi\",\"stream\":true,"
                        "\"options\":{\"num_predict\":7,\"temperature\":0.5}}");
    free(b);
    b = rz__llm_request_body(RZ__LLM_OPENAI, "gpt", r, &path);
    assert_string_equal(path, "/v1/chat/completions");
    assert_string_equal(b, "{\"model\":\"gpt\",\"messages\":[{\"role\":\"user\","
                        "\"content\":\"hi\"}],\"max_tokens\":7,\"temperature\":0.5,"
                        "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    free(b);
    cJSON_Delete(r);
    r = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"a\",\"x\":1}],"
                    "\"max_tokens\":2}");
    b = rz__llm_request_body(RZ__LLM_OLLAMA, "m", r, &path);
    assert_string_equal(path, "/api/chat");
    assert_string_equal(b, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
                        "\"content\":\"a\"}],\"stream\":true,\"options\":"
                        "{\"num_predict\":2}}");
    free(b);
    cJSON_Delete(r);
}

/* ---- streams ---- */

typedef struct seen {
    char text[4096];
    size_t n;
} seen;

static void collect(void *ud, const char *p, size_t n)
{
    seen *s = ud;
    assert_true(s->n + n < sizeof s->text);
    memcpy(s->text + s->n, p, n);
    s->n += n;
    s->text[s->n] = '\0';
}

/* Feed `text` in pieces of `step` bytes (0: whole); the close's result. */
static int feed(rz__llm_stream *st, rz__llm_kind k, const char *text, size_t step,
                size_t max, seen *sn)
{
    rz__llm_stream_init(st, k, max);
    memset(sn, 0, sizeof *sn);
    st->on_piece = collect;
    st->ud = sn;
    size_t n = strlen(text);
    if (!step)
        step = n ? n : 1;
    for (size_t i = 0; i < n; i += step)
        if (rz__llm_stream_feed(st, text + i, i + step > n ? n - i : step) != 0)
            return -2;
    return rz__llm_stream_close(st);
}

static const char OLLAMA_OK[] =
    "{\"model\":\"m\",\"response\":\"Hel\",\"done\":false}\n"
    "\n"
    "{\"model\":\"m\",\"response\":\"lo \\u00e9\",\"done\":false}\r\n"
    "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"!\"},\"done\":false}\n"
    "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\","
    "\"prompt_eval_count\":12,\"eval_count\":3}\n"
    "{\"response\":\"after the end\"}\n";

static void ollama_stream(void **state)
{
    (void)state;
    static const size_t steps[] = { 0, 1, 2, 3, 7, 64 };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        rz__llm_stream st;
        seen sn;
        assert_int_equal(feed(&st, RZ__LLM_OLLAMA, OLLAMA_OK, steps[i], 1024, &sn), 0);
        assert_string_equal(st.text, "Hello \xc3\xa9!");
        assert_string_equal(sn.text, st.text);
        assert_int_equal(st.tokens_in, 12);
        assert_int_equal(st.tokens_out, 3);
        assert_int_equal(st.have_usage, 1);
        assert_int_equal(st.pieces, 3);
        assert_string_equal(st.model, "m");
        assert_string_equal(st.finish, "stop");
        rz__llm_stream_free(&st);
    }
}

static void expect_fail(rz__llm_kind k, const char *text, size_t max,
                        const char *why)
{
    static const size_t steps[] = { 0, 1, 5 };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        rz__llm_stream st;
        seen sn;
        int rc = feed(&st, k, text, steps[i], max, &sn);
        if (rc == 0)
            fail_msg("accepted: %s", text);
        if (!strstr(st.error, why))
            fail_msg("\"%s\" lacks \"%s\"", st.error, why);
        /* once failed, nothing more is read */
        assert_int_equal(rz__llm_stream_feed(&st, "{}\n", 3), -1);
        rz__llm_stream_free(&st);
    }
}

static void ollama_stream_refused(void **state)
{
    (void)state;
    expect_fail(RZ__LLM_OLLAMA, "{\"response\":\"a\",\"done\":false}\n", 64,
                "cut before its end (after part");
    expect_fail(RZ__LLM_OLLAMA, "", 64, "cut before its end (before any");
    expect_fail(RZ__LLM_OLLAMA, "{\"error\":\"out of \\u0001memory\"}\n", 64,
                "the model server failed: out of  memory");
    expect_fail(RZ__LLM_OLLAMA, "{\"response\":\"a\"}\nnot json\n", 64,
                "not a JSON object");
    expect_fail(RZ__LLM_OLLAMA, "[1,2]\n", 64, "not a JSON object");
    expect_fail(RZ__LLM_OLLAMA, "{\"response\":\"a\"} {\"response\":\"b\"}\n", 64,
                "not a JSON object");
    expect_fail(RZ__LLM_OLLAMA, "{\"response\":\"12345678\"}\n{\"response\":\"9\"}\n",
                8, "over 8 bytes");
    /* a line over 1 MiB with no newline: refused as it grows */
    size_t n = RZ__LLM_LINE_MAX + 10;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    expect_fail(RZ__LLM_OLLAMA, big, 64, "over 1 MiB");
    free(big);
    /* a NUL inside a line: not JSON, not cut at the NUL */
    rz__llm_stream st;
    seen sn;
    static const char nul[] = "{\"response\":\"a\"}\0{\"x\":1}\n";
    rz__llm_stream_init(&st, RZ__LLM_OLLAMA, 64);
    assert_int_equal(rz__llm_stream_feed(&st, nul, sizeof nul - 1), -1);
    assert_non_null(strstr(st.error, "not a JSON object"));
    rz__llm_stream_free(&st);
    /* a last line without its newline is still read */
    assert_int_equal(feed(&st, RZ__LLM_OLLAMA, "{\"response\":\"z\",\"done\":true}",
                          0, 64, &sn), 0);
    assert_string_equal(st.text, "z");
    assert_int_equal(st.have_usage, 0);
    rz__llm_stream_free(&st);
    /* bytes that are not UTF-8 come out as U+FFFD: the text stays
     * sendable as JSON */
    assert_int_equal(feed(&st, RZ__LLM_OLLAMA, "{\"response\":\"a\xff\xc3" "b\"}\n"
                          "{\"done\":true}\n", 1, 64, &sn), 0);
    assert_string_equal(st.text, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
    rz__llm_stream_free(&st);
    /* a long error cut where it fits, never inside a character */
    char err[800];
    size_t o = (size_t)snprintf(err, sizeof err, "{\"error\":\"");
    for (int i = 0; i < 200; i++)
        o += (size_t)snprintf(err + o, sizeof err - o, "\xe2\x82\xac");
    snprintf(err + o, sizeof err - o, "\"}\n");
    assert_int_equal(feed(&st, RZ__LLM_OLLAMA, err, 0, 64, &sn), -2);
    size_t el = strlen(st.error);
    assert_true(el <= RZ__LLM_ERROR_MAX);
    assert_int_equal((el - strlen("the model server failed: ")) % 3, 0);
    rz__llm_stream_free(&st);
    /* hostile counts are not kept */
    assert_int_equal(feed(&st, RZ__LLM_OLLAMA, "{\"done\":true,\"prompt_eval_count\":-1,"
                          "\"eval_count\":1e300}\n", 0, 64, &sn), 0);
    assert_int_equal(st.tokens_in, 0);
    assert_int_equal(st.tokens_out, 0);
    assert_int_equal(st.have_usage, 0);
    assert_null(st.text);
    rz__llm_stream_free(&st);
}

static const char OPENAI_OK[] =
    ": keep-alive\n\n"
    "event: message\nid: 1\nretry: 10\n"
    "data: {\"model\":\"g\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
    "\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n"
    "data:{\"choices\":[{\"delta\":{\"content\":\" there\"}}]}\r\n\r\n"
    "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n"
    "data: [DONE]\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"after\"}}]}\n\n";

static void openai_stream(void **state)
{
    (void)state;
    static const size_t steps[] = { 0, 1, 2, 3, 11, 64 };
    for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
        rz__llm_stream st;
        seen sn;
        assert_int_equal(feed(&st, RZ__LLM_OPENAI, OPENAI_OK, steps[i], 1024, &sn), 0);
        assert_string_equal(st.text, "Hi there");
        assert_string_equal(sn.text, "Hi there");
        assert_int_equal(st.tokens_in, 9);
        assert_int_equal(st.tokens_out, 2);
        assert_string_equal(st.finish, "length");
        assert_string_equal(st.model, "g");
        rz__llm_stream_free(&st);
    }
    /* data split over two lines is one event; [DONE] without its blank
     * line at the close still ends it */
    rz__llm_stream st;
    seen sn;
    assert_int_equal(feed(&st, RZ__LLM_OPENAI,
                          "data: {\"choices\":[{\"delta\":\ndata: {\"content\":\"x\"}}]}\n\n"
                          "data: [DONE]", 0, 64, &sn), 0);
    assert_string_equal(st.text, "x");
    assert_int_equal(st.have_usage, 0);
    assert_int_equal(st.pieces, 1);
    rz__llm_stream_free(&st);
}

static void openai_stream_refused(void **state)
{
    (void)state;
    expect_fail(RZ__LLM_OPENAI, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
                64, "cut before its end");
    expect_fail(RZ__LLM_OPENAI, "data: {\"error\":{\"message\":\"rate limited\"}}\n\n",
                64, "failed: rate limited");
    expect_fail(RZ__LLM_OPENAI, "data: {not json\n\n", 64, "not a JSON object");
    expect_fail(RZ__LLM_OPENAI,
                "data: {\"choices\":[{\"delta\":{\"content\":\"0123456789\"}}]}\n\n",
                4, "over 4 bytes");
    /* many data lines adding up past 1 MiB: refused */
    size_t line = 1000, lines = RZ__LLM_LINE_MAX / line + 2;
    char *big = malloc(lines * (line + 7) + 1), *p = big;
    for (size_t i = 0; i < lines; i++) {
        memcpy(p, "data: ", 6);
        memset(p + 6, 'y', line);
        p[6 + line] = '\n';
        p += line + 7;
    }
    *p = '\0';
    expect_fail(RZ__LLM_OPENAI, big, 64, "over 1 MiB");
    free(big);
}

/* ---- server lists and the adapter's refusals (no server needed) ---- */

static void server_lists(void **state)
{
    (void)state;
    rz__llm_server srv[RZ__LLM_SERVERS_MAX];
    char *buf = NULL, err[700];
    assert_int_equal(rz__llm_servers_parse(
        " ollama=http://a:1/, openai=https://b/v1//;ollama=http://c", &buf,
        srv, err, sizeof err), 3);
    assert_int_equal(srv[0].kind, RZ__LLM_OLLAMA);
    assert_string_equal(srv[0].url, "http://a:1");   /* slashes trimmed */
    assert_int_equal(srv[1].kind, RZ__LLM_OPENAI);
    assert_string_equal(srv[1].url, "https://b/v1");
    assert_string_equal(srv[2].url, "http://c");
    free(buf);
    const char *bad[] = { "", "  ", "ollama", "vllm=http://a", "ollama=",
                          "ollama=ftp://a", "ollama=http://u@a",
                          "openai=http://a?x=1", "ollama=http://a#f",
                          "ollama=http://a ollama=http://b ollama=http://c "
                          "ollama=http://d ollama=http://e ollama=http://f "
                          "ollama=http://g ollama=http://h ollama=http://i" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(rz__llm_servers_parse(bad[i], &buf, srv, err,
                                               sizeof err), -1);
        assert_true(err[0]);
        free(buf);
    }
}

/* An llm attempt with no module: its reason, or NULL when it ran. */
static char *attempt_reason(const char *servers, const char *request)
{
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.adapter = "llm";
    o.llm_servers = servers;
    o.request_json = request;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    while (rz_attempt_poll(a, 1000) == 0)
        ;
    rz_attempt_result r;
    assert_int_equal(rz_attempt_result_get(a, &r), RZ_OK);
    char *why = r.ok ? NULL : strdup(r.reason);
    rz_attempt_free(a);
    return why;
}

static void adapter_refusals(void **state)
{
    (void)state;
    unsetenv("RHIZOS_LLM_SERVERS");
    const char *ok = "{\"inputs\":{\"prompt\":\"hi\"},\"config\":{\"model\":\"m\"}}";
    const struct { const char *servers, *request, *why; } cases[] = {
        { NULL, ok, "no model server is configured" },
        { "vllm=http://127.0.0.1:1", ok, "is not KIND=URL" },
        { "ollama=http://127.0.0.1:1", "[1]", "not a JSON object" },
        { "ollama=http://127.0.0.1:1", "{\"inputs\":{\"prompt\":\"hi\"}}",
          "needs \"model\"" },
        { "ollama=http://127.0.0.1:1",
          "{\"inputs\":{\"prompt\":\"hi\",\"messages\":[]},\"config\":{\"model\":\"m\"}}",
          "exactly one of" },
        { "ollama=http://127.0.0.1:1",
          "{\"inputs\":{\"prompt\":\"hi\"},\"config\":{\"model\":\"m\",\"max_tokens\":0}}",
          "max_tokens" },
        { "ollama=http://127.0.0.1:1",
          "{\"inputs\":{\"prompt\":\"hi\"},\"config\":{\"model\":\"m\",\"max_prompt_tokens\":81}}",
          "is over max_prompt_tokens 81" },   /* 2 + 16 + 64 = 82 */
        /* well formed: nobody answers on port 1 */
        { "ollama=http://127.0.0.1:1",
          "{\"inputs\":{\"prompt\":\"hi\"},\"config\":{\"model\":\"m\",\"max_prompt_tokens\":82}}",
          "did not answer" },
        { "ollama=http://127.0.0.1:1 openai=http://127.0.0.1:1", ok,
          "none of the 2 model servers lists it" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *why = attempt_reason(cases[i].servers, cases[i].request);
        assert_non_null(why);
        if (!strstr(why, cases[i].why))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, why, cases[i].why);
        free(why);
    }
    /* The environment's list when the options give none. */
    setenv("RHIZOS_LLM_SERVERS", "bogus", 1);
    char *why = attempt_reason(NULL, ok);
    assert_non_null(strstr(why, "is not KIND=URL"));
    free(why);
    unsetenv("RHIZOS_LLM_SERVERS");
    /* Only the llm adapter runs without a module. */
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_EINVAL);
    assert_null(a);
}

static void models_refused(void **state)
{
    (void)state;
    char *out = (char *)"x";
    assert_int_equal(rz_llm_models(&out, "vllm", "http://127.0.0.1:1", 0), RZ_EINVAL);
    assert_null(out);
    assert_int_equal(rz_llm_models(&out, "ollama", "file:///etc", 0), RZ_EINVAL);
    assert_int_equal(rz_llm_models(&out, "ollama", NULL, 0), RZ_EINVAL);
    assert_int_equal(rz_llm_models(NULL, "ollama", "http://a", 0), RZ_EINVAL);
    assert_int_equal(rz_llm_models(&out, "openai", "http://127.0.0.1:1", 1), RZ_EIO);
    assert_null(out);
    assert_non_null(strstr(rz_error_last()->message, "no answer"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ollama_tags),
        cmocka_unit_test(openai_models),
        cmocka_unit_test(model_lists_refused),
        cmocka_unit_test(model_names_bounded),
        cmocka_unit_test(ollama_show),
        cmocka_unit_test(error_bodies),
        cmocka_unit_test(requests_checked),
        cmocka_unit_test(request_bodies),
        cmocka_unit_test(ollama_stream),
        cmocka_unit_test(ollama_stream_refused),
        cmocka_unit_test(openai_stream),
        cmocka_unit_test(openai_stream_refused),
        cmocka_unit_test(server_lists),
        cmocka_unit_test(adapter_refusals),
        cmocka_unit_test(models_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

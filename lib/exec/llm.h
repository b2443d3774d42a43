/* The llm adapter (docs/llm.md): model servers that speak Ollama's API or
 * OpenAI's chat completions, listed for a node's capabilities
 * (rz_llm_models) and called for `llm` jobs and flow steps (llm.c, the
 * adapter; embedded runs and rhizos-node both use it).
 *
 * llm_parse.c holds what reads the servers' replies and writes their
 * requests: pure functions over bytes, no I/O (unit-tested and fuzzed with
 * hostile input). llm_http.c does the HTTP with libcurl. Nothing a server
 * sends is trusted: every string and number is bounded before it is kept. */
#ifndef RZ_EXEC_LLM_H
#define RZ_EXEC_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"

struct cJSON;

/* One model server. */
typedef enum { RZ__LLM_OLLAMA = 1, RZ__LLM_OPENAI = 2 } rz__llm_kind;
typedef struct rz__llm_server {
    rz__llm_kind kind;
    const char *url;                 /* http(s)://host[:port][/path], no
                                        trailing slash needed */
    double timeout_s;                /* one generation at most */
} rz__llm_server;
#define RZ__LLM_URL_MAX 512u
#define RZ__LLM_SERVERS_MAX 8u
#define RZ__LLM_TIMEOUT_S 300.0

#define RZ__LLM_MODELS_MAX 256u          /* per server; more are left out */
#define RZ__LLM_NAME_MAX 200u            /* a model name, bytes */
#define RZ__LLM_LIST_BYTES_MAX (4u << 20) /* a model list reply */
#define RZ__LLM_LINE_MAX (1u << 20)      /* one NDJSON line or SSE field */
#define RZ__LLM_ERROR_MAX 300u           /* a server's error as kept */
#define RZ__LLM_SHOW_MAX 32u             /* Ollama models asked for details */

/* ---- llm_parse.c ---- */

/* A model list (GET /api/tags for Ollama, GET /v1/models for OpenAI) as
 * the capabilities' shape: a JSON array of {"name", "size_bytes"?,
 * "quantization"?, "family"?, "parameters"?, "context_length"?}, names
 * unique, at most RZ__LLM_MODELS_MAX (entries that are not well-formed are
 * skipped). 0, or -1 with why in err for a reply that is not a list. */
RZ_HIDDEN int rz__llm_parse_models(rz__llm_kind kind, const char *text, size_t len,
                     struct cJSON **models, char *err, size_t errlen);

/* Ollama's POST /api/show reply: the context length its "model_info"
 * gives ("<architecture>.context_length", a whole number from 1 to 2^32),
 * 0 when none. */
RZ_HIDDEN uint64_t rz__llm_parse_show(const char *text, size_t len);

/* The error a server's reply body carries ({"error":"..."} or
 * {"error":{"message":"..."}}), printable and cut to RZ__LLM_ERROR_MAX; else
 * the body's first bytes as text; "" for none. */
RZ_HIDDEN void rz__llm_parse_error(const char *text, size_t len, char *out, size_t outlen);

/* The request of an llm job as the job gives it: "prompt" (a string) or
 * "messages" ([{"role","content"}], strings), "max_tokens" (1..
 * RZ__LLM_MAX_TOKENS), "temperature" (0..2, optional). NULL when it is well
 * formed, else why not (static text). */
#define RZ__LLM_MAX_TOKENS 1000000u
#define RZ__LLM_MESSAGES_MAX 1024u
RZ_HIDDEN const char *rz__llm_request_check(const struct cJSON *req);

/* The body to POST and the path it goes to ("/api/generate", "/api/chat"
 * or "/v1/chat/completions"), for a checked request. malloc'd JSON text,
 * NULL when out of memory. */
RZ_HIDDEN char *rz__llm_request_body(rz__llm_kind kind, const char *model,
                       const struct cJSON *req, const char **path);

/* A streamed reply read as it arrives: Ollama's NDJSON lines or OpenAI's
 * server-sent events. The text is kept up to max_text bytes (more is a
 * failure: the job's output cap); each piece also goes to on_piece. */
typedef struct rz__llm_stream {
    rz__llm_kind kind;
    size_t max_text;
    void (*on_piece)(void *ud, const char *piece, size_t n);
    void *ud;
    /* what was read */
    char *text;                      /* malloc'd, NUL-terminated */
    size_t text_len, text_cap;
    uint64_t tokens_in, tokens_out;  /* the server's counts, when given */
    int have_usage;                  /* the counts above were given */
    uint64_t pieces;                 /* content pieces seen */
    int done;                        /* the end the protocol marks */
    char model[RZ__LLM_NAME_MAX + 1];    /* as the server names it */
    char finish[32];                 /* done_reason / finish_reason */
    char error[RZ__LLM_ERROR_MAX + 1];   /* set once failed */
    /* the line being read; an event's data lines (SSE) */
    char *line, *ev;
    size_t line_len, line_cap, ev_len, ev_cap;
    int have_ev;
} rz__llm_stream;

RZ_HIDDEN void rz__llm_stream_init(rz__llm_stream *s, rz__llm_kind kind, size_t max_text);
/* Bytes as they come. 0, or -1 once failed (s->error says why; an error
 * the server streamed, a malformed line, a line over RZ__LLM_LINE_MAX, text
 * over max_text). Nothing is read after the end or a failure. */
RZ_HIDDEN int rz__llm_stream_feed(rz__llm_stream *s, const char *data, size_t n);
/* The stream closed: 0 when it had reached its end, else -1 with why (a
 * stream cut mid-way). */
RZ_HIDDEN int rz__llm_stream_close(rz__llm_stream *s);
RZ_HIDDEN void rz__llm_stream_free(rz__llm_stream *s);

/* ---- llm_http.c ---- */

/* GET the server's model list (with Ollama's context lengths when
 * `details`): 0 with the models (the shape of rz__llm_parse_models), -1
 * with why in err. */
RZ_HIDDEN int rz__llm_list(const rz__llm_server *srv, int details,
                           struct cJSON **models, char *err, size_t errlen);

/* The first of n servers whose model list names `model`, or -1; `stop`
 * (may be NULL) is asked before each server: nonzero gives up (-1). */
RZ_HIDDEN int rz__llm_find(const rz__llm_server *srv, int n, const char *model,
                           int (*stop)(void *), void *ud);

/* "ollama" or "openai" as a kind; 0 for neither. */
RZ_HIDDEN rz__llm_kind rz__llm_kind_of(const char *name);
RZ_HIDDEN const char *rz__llm_kind_name(rz__llm_kind k);

/* A server list "KIND=URL[ KIND=URL...]" (separated by spaces, commas or
 * semicolons) into srv (at most RZ__LLM_SERVERS_MAX; the URLs point into
 * `buf`, a copy the caller frees). The number read, or -1 with why. */
RZ_HIDDEN int rz__llm_servers_parse(const char *list, char **buf,
                                    rz__llm_server *srv, char *err,
                                    size_t errlen);

/* The outcome of one generation. */
typedef struct rz__llm_result {
    char *text;                      /* malloc'd; NULL on failure */
    uint64_t tokens_in, tokens_out;
    char model[RZ__LLM_NAME_MAX + 1];
    char error[RZ__LLM_ERROR_MAX + 64];  /* why it failed */
    uint64_t run_ms;
} rz__llm_result;

/* Generate on `srv` for a checked request: pieces go to on_piece as they
 * come; `stop` is asked now and then and ends the call when non-zero.
 * 0, or -1 with res->error. */
RZ_HIDDEN int rz__llm_generate(const rz__llm_server *srv, const char *model,
                 const struct cJSON *req, size_t max_text,
                 void (*on_piece)(void *, const char *, size_t),
                 int (*stop)(void *), void *ud, rz__llm_result *res);
RZ_HIDDEN void rz__llm_result_free(rz__llm_result *r);

#endif

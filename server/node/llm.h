/* The llm adapter of rhizos-node (docs/llm.md): model servers that speak
 * Ollama's API or OpenAI's chat completions, listed for the node's
 * capabilities and called for `llm` jobs.
 *
 * llm_parse.c holds what reads the servers' replies and writes their
 * requests: pure functions over bytes, no I/O (unit-tested and fuzzed with
 * hostile input). llm.c does the HTTP with libcurl. Nothing a server sends
 * is trusted: every string and number is bounded before it is kept. */
#ifndef RHIZOS_NODE_LLM_H
#define RHIZOS_NODE_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

struct cJSON;

#define LLM_MODELS_MAX 256u          /* per server; more are left out */
#define LLM_NAME_MAX 200u            /* a model name, bytes */
#define LLM_LIST_BYTES_MAX (4u << 20) /* a model list reply */
#define LLM_LINE_MAX (1u << 20)      /* one NDJSON line or SSE field */
#define LLM_ERROR_MAX 300u           /* a server's error as kept */
#define LLM_SHOW_MAX 32u             /* Ollama models asked for details */

/* ---- llm_parse.c ---- */

/* A model list (GET /api/tags for Ollama, GET /v1/models for OpenAI) as
 * the capabilities' shape: a JSON array of {"name", "size_bytes"?,
 * "quantization"?, "family"?, "parameters"?, "context_length"?}, names
 * unique, at most LLM_MODELS_MAX (entries that are not well-formed are
 * skipped). 0, or -1 with why in err for a reply that is not a list. */
int llm_parse_models(node_llm_kind kind, const char *text, size_t len,
                     struct cJSON **models, char *err, size_t errlen);

/* Ollama's POST /api/show reply: the context length its "model_info"
 * gives ("<architecture>.context_length", a whole number from 1 to 2^32),
 * 0 when none. */
uint64_t llm_parse_show(const char *text, size_t len);

/* The error a server's reply body carries ({"error":"..."} or
 * {"error":{"message":"..."}}), printable and cut to LLM_ERROR_MAX; else
 * the body's first bytes as text; "" for none. */
void llm_parse_error(const char *text, size_t len, char *out, size_t outlen);

/* The request of an llm job as the job gives it: "prompt" (a string) or
 * "messages" ([{"role","content"}], strings), "max_tokens" (1..
 * LLM_MAX_TOKENS), "temperature" (0..2, optional). NULL when it is well
 * formed, else why not (static text). */
#define LLM_MAX_TOKENS 1000000u
#define LLM_MESSAGES_MAX 1024u
const char *llm_request_check(const struct cJSON *req);

/* The body to POST and the path it goes to ("/api/generate", "/api/chat"
 * or "/v1/chat/completions"), for a checked request. malloc'd JSON text,
 * NULL when out of memory. */
char *llm_request_body(node_llm_kind kind, const char *model,
                       const struct cJSON *req, const char **path);

/* A streamed reply read as it arrives: Ollama's NDJSON lines or OpenAI's
 * server-sent events. The text is kept up to max_text bytes (more is a
 * failure: the job's output cap); each piece also goes to on_piece. */
typedef struct llm_stream {
    node_llm_kind kind;
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
    char model[LLM_NAME_MAX + 1];    /* as the server names it */
    char finish[32];                 /* done_reason / finish_reason */
    char error[LLM_ERROR_MAX + 1];   /* set once failed */
    /* the line being read; an event's data lines (SSE) */
    char *line, *ev;
    size_t line_len, line_cap, ev_len, ev_cap;
    int have_ev;
} llm_stream;

void llm_stream_init(llm_stream *s, node_llm_kind kind, size_t max_text);
/* Bytes as they come. 0, or -1 once failed (s->error says why; an error
 * the server streamed, a malformed line, a line over LLM_LINE_MAX, text
 * over max_text). Nothing is read after the end or a failure. */
int llm_stream_feed(llm_stream *s, const char *data, size_t n);
/* The stream closed: 0 when it had reached its end, else -1 with why (a
 * stream cut mid-way). */
int llm_stream_close(llm_stream *s);
void llm_stream_free(llm_stream *s);

/* ---- llm.c ---- */

/* The "llm" object of the capabilities: {"models":[{..., "kind"}],
 * "price_1k_tokens_micros", "servers":[{"kind","up"}]} over every [[llm]]
 * server (a server that does not answer is "up": false, its models absent;
 * why goes to `why` for the caller to report, per server, '\n'-separated).
 * NULL when no server is configured or out of memory. */
struct cJSON *llm_caps(const node_config *cfg, char *why, size_t whylen);

/* The first [[llm]] server that lists `model` now (asked afresh), or -1. */
int llm_find(const node_config *cfg, const char *model);

/* The outcome of one generation. */
typedef struct llm_result {
    char *text;                      /* malloc'd; NULL on failure */
    uint64_t tokens_in, tokens_out;
    char model[LLM_NAME_MAX + 1];
    char error[LLM_ERROR_MAX + 64];  /* why it failed */
    uint64_t run_ms;
} llm_result;

/* Generate on `srv` for a checked request: pieces go to on_piece as they
 * come; `stop` is asked now and then and ends the call when non-zero.
 * 0, or -1 with res->error. */
int llm_generate(const node_llm *srv, const char *model,
                 const struct cJSON *req, size_t max_text,
                 void (*on_piece)(void *, const char *, size_t),
                 int (*stop)(void *), void *ud, llm_result *res);
void llm_result_free(llm_result *r);

#endif /* RHIZOS_NODE_LLM_H */

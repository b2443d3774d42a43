/* Server-sent events (the text/event-stream format): a byte-at-a-time
 * line parser, so chunk boundaries never matter, over one long request. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client_internal.h"

#define EVENT_MAX_BYTES RZ_CLIENT_REPLY_MAX

/* One transfer: the parser plus what the HTTP side needs. */
typedef struct sse {
    rz__sse p;
    rz_client *c;
    long status;           /* HTTP status, read at the first body byte */
    bool is_stream;        /* 2xx with Content-Type text/event-stream */
    bool too_big, timed_out;
    rz__buf error_body;    /* the reply when it is not a stream */
    long idle_ms;
    uint64_t last_ms;      /* when bytes last arrived */
} sse;

static void reset_event(rz__sse *s)
{
    s->data.len = 0;
    if (s->data.data)
        s->data.data[0] = '\0';
    s->has_data = false;
    s->event[0] = '\0';
}

static void dispatch(rz__sse *s)
{
    if (s->has_data && !s->cb_rc)
        s->cb_rc = s->cb(s->ud, s->event[0] ? s->event : "message",
                         s->data.data ? s->data.data : "");
    reset_event(s);
}

/* One complete line (no terminator), per the event-stream field rules. */
static void field(rz__sse *s, const char *line, size_t n)
{
    if (n == 0) {
        dispatch(s);
        return;
    }
    if (line[0] == ':')
        return;                                 /* comment (keep-alive) */
    const char *colon = memchr(line, ':', n);
    size_t name_len = colon ? (size_t)(colon - line) : n;
    const char *val = colon ? colon + 1 : line + n;
    size_t val_len = (size_t)(line + n - val);
    if (val_len && *val == ' ')
        val++, val_len--;
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (s->has_data)
            rz__buf_append(&s->data, "\n", 1);
        rz__buf_append(&s->data, val, val_len);
        s->has_data = true;
        if (s->data.failed)
            s->nomem = true;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        size_t k = val_len < RZ__SSE_NAME_MAX ? val_len : RZ__SSE_NAME_MAX;
        memcpy(s->event, val, k);
        s->event[k] = '\0';
        if (memchr(s->event, '\0', k))
            s->event[0] = '\0';
    }
    /* id:, retry: and unknown fields are ignored: we do not reconnect. */
}

static void end_line(rz__sse *s)
{
    field(s, s->line.data ? s->line.data : "", s->line.len);
    s->line.len = 0;
}

void rz__sse_feed(rz__sse *s, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && !s->cb_rc && !s->nomem && !s->too_big) {
        if (p[i] == '\n' && s->after_cr) {
            s->after_cr = false;                /* CRLF: already ended */
            i++;
            continue;
        }
        if (p[i] == '\r' || p[i] == '\n') {
            s->after_cr = p[i++] == '\r';
            end_line(s);
            continue;
        }
        s->after_cr = false;
        size_t run = i;
        while (run < n && p[run] != '\r' && p[run] != '\n')
            run++;
        if (s->line.len + s->data.len + (run - i) > EVENT_MAX_BYTES) {
            s->too_big = true;
            break;
        }
        rz__buf_append(&s->line, p + i, run - i);
        if (s->line.failed)
            s->nomem = true;
        i = run;
    }
}

void rz__sse_free(rz__sse *s)
{
    rz__buf_free(&s->line);
    rz__buf_free(&s->data);
}

static bool stream_type(CURL *e)
{
    char *ctype = NULL;
    curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &ctype);
    return ctype && strncasecmp(ctype, "text/event-stream", 17) == 0;
}

static size_t on_bytes(char *p, size_t size, size_t n, void *ud)
{
    sse *s = ud;
    size_t len = size * n;
    s->last_ms = rz__now_ms();
    if (s->status == 0) {
        curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &s->status);
        s->is_stream = s->status >= 200 && s->status < 300 && stream_type(s->c->curl);
    }
    if (!s->is_stream) {
        if (s->error_body.len + len > 1u << 20) {
            s->too_big = true;
            return 0;
        }
        rz__buf_append(&s->error_body, p, len);
        return s->error_body.failed ? 0 : len;
    }
    rz__sse_feed(&s->p, p, len);
    return (s->p.cb_rc || s->p.nomem || s->p.too_big) ? 0 : len;
}

/* Called by libcurl about once a second even when nothing arrives. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un)
{
    sse *s = ud;
    if (s->idle_ms > 0 && rz__now_ms() - s->last_ms > (uint64_t)s->idle_ms) {
        s->timed_out = true;
        return 1;
    }
    return 0;
}

static int finish(sse *s, const char *path, CURLcode cc)
{
    rz_client *c = s->c;
    if (s->p.cb_rc)
        return s->p.cb_rc;
    if (s->p.nomem)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (s->p.too_big)
        return rz__error(RZ_ETOOBIG, "event from %s%s is over %zu bytes",
                         c->base, path, (size_t)EVENT_MAX_BYTES);
    if (s->too_big)
        return rz__error(RZ_ETOOBIG, "error reply from %s%s is over 1 MiB",
                         c->base, path);
    if (s->timed_out)
        return rz__error(s->status ? RZ_ETIMEOUT : RZ_ECONNECT,
                         "%s%s was silent for over %ld ms", c->base, path,
                         s->idle_ms);
    if (cc != CURLE_OK)
        return rz__client_curl_error(c, cc, path);
    long status = s->status;
    if (status == 0)
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 400) {
        const char *body = s->error_body.data;
        return rz__client_error_reply(c, path, status, body);
    }
    if (!s->is_stream)
        return rz__error(RZ_EPROTOCOL, "reply (HTTP %ld) from %s%s is not an "
                         "event stream", status, c->base, path);
    return RZ_OK;   /* an unterminated last event is dropped, as the format says */
}

int rz_client_events(rz_client *c, const char *path, long idle_ms,
                     rz_client_event_cb cb, void *ud)
{
    if (!c || !cb)
        return rz__error(RZ_EINVAL, "client or callback is NULL");
    if (idle_ms < 0)
        return rz__error(RZ_EINVAL, "idle_ms must be 0 or more");
    const char *extra[] = { "Accept: text/event-stream", NULL };
    struct curl_slist *headers = NULL;
    int rc = rz__client_prepare(c, path, extra, &headers);
    if (rc != RZ_OK)
        return rc;
    sse s = { .p = { .cb = cb, .ud = ud }, .c = c, .idle_ms = idle_ms,
              .last_ms = rz__now_ms() };
    CURL *e = c->curl;
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);   /* a stream may run for hours */
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, NULL);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_bytes);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    CURLcode cc = curl_easy_perform(e);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    rc = finish(&s, path, cc);
    rz__sse_free(&s.p);
    rz__buf_free(&s.error_body);
    return rc;
}

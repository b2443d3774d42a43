/* One HTTP request to the orchestrator: JSON or CBOR bodies, the API's
 * error shape mapped back to rz_status (docs/api.md). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "client/client_internal.h"


/* ---- global init: curl_global_init is not thread-safe, so once ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- handle ---- */

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static char *auth_header(const char *key)
{
    return rz__asprintf("Authorization: Bearer %s", key);
}

static void wipe_free(char *s)
{
    if (s) {
        sodium_memzero(s, strlen(s));
        free(s);
    }
}

int rz_client_new(rz_client **out, const char *url, const char *key)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8)))
        return rz__error(RZ_EINVAL, "orchestrator URL must start with http:// or https://");
    if (!header_safe(url) || strchr(url, ' '))
        return rz__error(RZ_EINVAL, "orchestrator URL has a space or line break");
    if (key && (!*key || !header_safe(key)))
        return rz__error(RZ_EINVAL, "API key is empty or has a line break");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK)
        return rz__error(RZ_EINTERNAL, "libcurl did not initialise: %s",
                         curl_easy_strerror(curl_init_rc));
    rz_client *c = rz__calloc(1, sizeof *c);
    if (!c)
        return rz__error(RZ_ENOMEM, "out of memory");
    c->timeout_ms = RZ_CLIENT_DEFAULT_TIMEOUT_MS;
    c->base = rz__strdup(url);
    c->auth = key ? auth_header(key) : NULL;
    c->curl = curl_easy_init();
    if (!c->base || (key && !c->auth) || !c->curl) {
        rz_client_free(c);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    size_t n = strlen(c->base);
    while (n > 0 && c->base[n - 1] == '/')
        c->base[--n] = '\0';
    *out = c;
    return RZ_OK;
}

void rz_client_free(rz_client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->base);
    free(c->ca_file);
    wipe_free(c->auth);
    free(c);
}

int rz_client_set_key(rz_client *c, const char *key)
{
    if (!c)
        return rz__error(RZ_EINVAL, "client is NULL");
    if (key && (!*key || !header_safe(key)))
        return rz__error(RZ_EINVAL, "API key is empty or has a line break");
    char *h = key ? auth_header(key) : NULL;
    if (key && !h)
        return rz__error(RZ_ENOMEM, "out of memory");
    wipe_free(c->auth);
    c->auth = h;
    return RZ_OK;
}

int rz_client_set_timeout(rz_client *c, long timeout_ms)
{
    if (!c)
        return rz__error(RZ_EINVAL, "client is NULL");
    if (timeout_ms < 0)
        return rz__error(RZ_EINVAL, "timeout must be 0 or more ms");
    c->timeout_ms = timeout_ms;
    return RZ_OK;
}

int rz_client_set_ca_file(rz_client *c, const char *path)
{
    if (!c)
        return rz__error(RZ_EINVAL, "client is NULL");
    char *copy = NULL;
    if (path) {
        if (access(path, R_OK) != 0)
            return rz__error(RZ_EIO, "CA file %s: %s", path, strerror(errno));
        if (!(copy = strdup(path)))
            return rz__error(RZ_ENOMEM, "out of memory");
    }
    free(c->ca_file);
    c->ca_file = copy;
    return RZ_OK;
}

/* ---- shared request plumbing ---- */

int rz__status_from_name(const char *name)
{
    if (!name)
        return 1;
    for (int s = RZ__STATUS_LAST; s <= 0; s++)
        if (strcmp(rz_status_name(s), name) == 0)
            return s;
    return 1;
}

static bool path_ok(const char *path)
{
    if (!path || path[0] != '/')
        return false;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static bool slist_add(struct curl_slist **list, const char *s)
{
    struct curl_slist *t = curl_slist_append(*list, s);
    if (t)
        *list = t;
    return t != NULL;
}

int rz__client_prepare(rz_client *c, const char *path,
                       const char *const *extra, struct curl_slist **headers)
{
    *headers = NULL;
    if (!path_ok(path))
        return rz__error(RZ_EINVAL, "request path must start with '/' and have no spaces");
    char *url = rz__asprintf("%s%s", c->base, path);
    if (!url)
        return rz__error(RZ_ENOMEM, "out of memory");
    struct curl_slist *h = NULL;
    /* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
    bool ok = slist_add(&h, "Expect:");
    if (ok && c->auth)
        ok = slist_add(&h, c->auth);
    for (size_t i = 0; ok && extra && extra[i]; i++)
        ok = slist_add(&h, extra[i]);
    if (!ok) {
        curl_slist_free_all(h);
        free(url);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    CURL *e = c->curl;
    curl_easy_reset(e);     /* keeps the connection cache */
    c->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url);
    free(url);              /* libcurl copied it */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, RZ_CLIENT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (c->ca_file)   /* peer and host name are verified either way */
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    *headers = h;
    return RZ_OK;
}

int rz__client_curl_error(rz_client *c, CURLcode rc, const char *path)
{
    const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        if (status == 0)
            return rz__error(RZ_ECONNECT, "cannot reach %s%s: %s", c->base, path, why);
        return rz__error(RZ_ETIMEOUT, "reply from %s%s timed out: %s", c->base, path, why);
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_TOO_MANY_REDIRECTS:
        return rz__error(RZ_EPROTOCOL, "unexpected reply from %s%s: %s", c->base, path, why);
    case CURLE_OUT_OF_MEMORY:
        return rz__error(RZ_ENOMEM, "out of memory");
    default:
        return rz__error(RZ_ECONNECT, "cannot reach %s%s: %s", c->base, path, why);
    }
}

int rz__client_error_reply(rz_client *c, const char *path, long http_status,
                           const char *json)
{
    cJSON *root = json ? cJSON_Parse(json) : NULL;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(root, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(err, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    int st = cJSON_IsString(code) ? rz__status_from_name(code->valuestring) : 1;
    if (st >= 0) {
        cJSON_Delete(root);
        return rz__error(RZ_EPROTOCOL, "HTTP %ld from %s%s without an error code "
                         "of the API", http_status, c->base, path);
    }
    rz__error(st, "%s", cJSON_IsString(msg) && msg->valuestring[0]
                            ? msg->valuestring : rz_strerror(st));
    cJSON_Delete(root);
    return st;
}

/* ---- one request ---- */

typedef struct reply_buf {
    rz__buf b;
    bool too_big;
} reply_buf;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    reply_buf *r = ud;
    size_t len = size * n;
    if (r->b.len + len > RZ_CLIENT_REPLY_MAX) {
        r->too_big = true;
        return 0;
    }
    rz__buf_append(&r->b, p, len);
    return r->b.failed ? 0 : len;
}

/* Is `s` (len bytes) exactly one JSON value? */
static bool is_json(const char *s, size_t len)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, len, &end, false);
    if (!v)
        return false;
    cJSON_Delete(v);
    while (end < s + len && *end && strchr(" \t\r\n", *end))
        end++;
    return end == s + len;
}

static bool has_type(const char *ctype, const char *want)
{
    size_t n = strlen(want);
    return ctype && strncasecmp(ctype, want, n) == 0 &&
           (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}

/* The reply body as JSON text (NULL when empty), from JSON or CBOR. */
static int reply_json(rz_client *c, const char *path, long status,
                      reply_buf *r, char **json)
{
    *json = NULL;
    if (r->b.len == 0)
        return RZ_OK;
    char *ctype = NULL;
    curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ctype);
    if (has_type(ctype, "application/cbor")) {
        if (rz_wire_decode((unsigned char *)r->b.data, r->b.len, json) != RZ_OK)
            return rz__error(RZ_EPROTOCOL, "malformed CBOR reply (HTTP %ld) "
                             "from %s%s: %s", status, c->base, path,
                             rz_error_last()->message);
        return RZ_OK;
    }
    if (!is_json(r->b.data, r->b.len))
        return rz__error(RZ_EPROTOCOL, "reply (HTTP %ld) from %s%s is not JSON",
                         status, c->base, path);
    *json = rz__buf_take(&r->b);
    return *json ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

static void set_method(CURL *e, const char *method, const void *body,
                       size_t len)
{
    if (strcmp(method, "GET") == 0 && !body) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        return;
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        return;
    }
    if (body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if (strcmp(method, "POST") != 0)
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
}

static bool method_ok(const char *m)
{
    if (!m || !*m || strlen(m) > 16)
        return false;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return false;
    return true;
}

/* Encode the body as the wire wants it; *owned is what to free after. */
static int request_body(const char *body_json, unsigned flags,
                        const void **body, size_t *len, unsigned char **owned)
{
    *body = NULL;
    *len = 0;
    *owned = NULL;
    if (!body_json)
        return RZ_OK;
    size_t n = strlen(body_json);
    if (flags & RZ_CLIENT_CBOR) {
        int rc = rz_wire_encode(body_json, n, owned, len);
        if (rc != RZ_OK)
            return rc;
        *body = *owned;
        return RZ_OK;
    }
    if (!is_json(body_json, n))
        return rz__error(RZ_ESYNTAX, "request body is not JSON");
    *body = body_json;
    *len = n;
    return RZ_OK;
}

/* Run the prepared request with `fn` taking the body; the headers go with
 * it. *status (may be NULL) gets the HTTP status; returns libcurl's code. */
static CURLcode run_request(rz_client *c, struct curl_slist *headers,
                            curl_write_callback fn, void *ud, long *status)
{
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, fn);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, ud);
    CURLcode cc = curl_easy_perform(c->curl);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);
    long st = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &st);
    if (status)
        *status = st;
    return cc;
}

/* One request with headers `hdr` (the body's type, what is accepted). */
static int perform(rz_client *c, const char *method, const char *path,
                   const void *body, size_t len, const char *const *hdr,
                   long *http_status, char **reply)
{
    struct curl_slist *headers = NULL;
    int rc = rz__client_prepare(c, path, hdr, &headers);
    if (rc != RZ_OK)
        return rc;
    reply_buf r = { 0 };
    set_method(c->curl, method, body, len);
    long status = 0;
    CURLcode cc = run_request(c, headers, on_body, &r, &status);
    if (http_status)
        *http_status = status;
    if (r.too_big)
        rc = rz__error(RZ_ETOOBIG, "reply from %s%s is over %zu bytes", c->base,
                       path, RZ_CLIENT_REPLY_MAX);
    else if (r.b.failed)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else if (cc != CURLE_OK)
        rc = rz__client_curl_error(c, cc, path);
    else if (status < 200 || status >= 600 || (status >= 300 && status < 400))
        rc = rz__error(RZ_EPROTOCOL, "HTTP %ld from %s%s", status, c->base, path);
    if (rc == RZ_OK) {
        char *json = NULL;
        rc = reply_json(c, path, status, &r, &json);
        if (rc == RZ_OK && status >= 400)
            rc = rz__client_error_reply(c, path, status, json);
        if (reply && (rc == RZ_OK || status >= 400))
            *reply = json;
        else
            free(json);
    }
    rz__buf_free(&r.b);
    return rc;
}

int rz_client_call(rz_client *c, const char *method, const char *path,
                   const char *body_json, unsigned flags, long *http_status,
                   char **reply)
{
    if (http_status)
        *http_status = 0;
    if (reply)
        *reply = NULL;
    if (!c)
        return rz__error(RZ_EINVAL, "client is NULL");
    if (!method_ok(method))
        return rz__error(RZ_EINVAL, "HTTP method must be an upper-case word");
    if (flags & ~RZ_CLIENT_CBOR)
        return rz__error(RZ_EINVAL, "unknown flags 0x%x", flags);
    const void *body;
    size_t len;
    unsigned char *owned;
    int rc = request_body(body_json, flags, &body, &len, &owned);
    if (rc != RZ_OK)
        return rc;
    const char *cbor_hdr[] = { "Content-Type: application/cbor",
                               "Accept: application/cbor", NULL };
    const char *json_hdr[] = { "Content-Type: application/json",
                               "Accept: application/json", NULL };
    rc = perform(c, method, path, body, len,
                 (flags & RZ_CLIENT_CBOR) ? cbor_hdr : json_hdr, http_status, reply);
    free(owned);
    return rc;
}

int rz_client_put_bytes(rz_client *c, const char *path, const void *data,
                        size_t len, long *http_status, char **reply)
{
    if (http_status)
        *http_status = 0;
    if (reply)
        *reply = NULL;
    if (!c || (!data && len))
        return rz__error(RZ_EINVAL, "client or data is NULL");
    const char *hdr[] = { "Content-Type: application/octet-stream",
                          "Accept: application/json", NULL };
    return perform(c, "PUT", path, data ? data : "", len, hdr, http_status, reply);
}


/* ---- bytes ---- */

#define ERROR_REPLY_MAX ((size_t)64 << 10)

typedef struct bytes_sink {
    CURL *e;
    rz_client_bytes_cb cb;
    void *ud;
    int cb_rc;          /* what cb stopped with; RZ_OK */
    reply_buf err;      /* an error reply's body, bounded */
} bytes_sink;

/* A 2xx body goes to the caller's callback, any other one is kept (to
 * read its error); the status is known once the headers are in. */
static size_t on_bytes(char *p, size_t size, size_t n, void *ud)
{
    bytes_sink *s = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(s->e, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        s->cb_rc = s->cb(s->ud, p, len);
        return s->cb_rc == RZ_OK ? len : 0;
    }
    if (s->err.b.len + len > ERROR_REPLY_MAX) {
        s->err.too_big = true;
        return 0;
    }
    rz__buf_append(&s->err.b, p, len);
    return s->err.b.failed ? 0 : len;
}

int rz_client_get_bytes(rz_client *c, const char *path, rz_client_bytes_cb cb,
                        void *ud, long *http_status)
{
    if (http_status)
        *http_status = 0;
    if (!c || !cb)
        return rz__error(RZ_EINVAL, "client or callback is NULL");
    const char *hdr[] = { "Accept: application/octet-stream, application/json",
                          NULL };
    struct curl_slist *headers = NULL;
    int rc = rz__client_prepare(c, path, hdr, &headers);
    if (rc != RZ_OK)
        return rc;
    bytes_sink s = { .e = c->curl, .cb = cb, .ud = ud, .cb_rc = RZ_OK };
    curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    long status = 0;
    CURLcode cc = run_request(c, headers, on_bytes, &s, &status);
    if (http_status)
        *http_status = status;
    if (s.cb_rc != RZ_OK)
        rc = s.cb_rc;
    else if (s.err.too_big)
        rc = rz__error(RZ_EPROTOCOL, "error reply (HTTP %ld) from %s%s is over "
                       "%zu bytes", status, c->base, path, ERROR_REPLY_MAX);
    else if (s.err.b.failed)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    else if (cc != CURLE_OK)
        rc = rz__client_curl_error(c, cc, path);
    else if (status < 200 || status >= 600 || (status >= 300 && status < 400))
        rc = rz__error(RZ_EPROTOCOL, "HTTP %ld from %s%s", status, c->base, path);
    else if (status >= 400) {
        char *json = NULL;
        rc = reply_json(c, path, status, &s.err, &json);
        if (rc == RZ_OK)
            rc = rz__client_error_reply(c, path, status, json);
        free(json);
    }
    rz__buf_free(&s.err.b);
    return rc;
}

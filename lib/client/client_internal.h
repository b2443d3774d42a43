/* Shared by the client's files: the handle and request plumbing. */
#ifndef RZ_CLIENT_INTERNAL_H
#define RZ_CLIENT_INTERNAL_H

#include <curl/curl.h>

#include "common/internal.h"
#include "rhizos/client.h"

struct rz_client {
    char *base;          /* no trailing slash */
    char *auth;          /* "Authorization: Bearer ..." or NULL; wiped on free */
    CURL *curl;          /* reused, so connections are kept alive */
    long timeout_ms;
    char *ca_file;       /* certificates to trust for https; NULL: system's */
    char errbuf[CURL_ERROR_SIZE];
};

/* Reset the handle and set what every request shares: URL (base + path),
 * key, limits. `headers` receives the list to free after the transfer;
 * extra headers (may be NULL) are appended. */
RZ_HIDDEN int rz__client_prepare(rz_client *c, const char *path,
                                 const char *const *extra,
                                 struct curl_slist **headers);
/* Map a failed transfer to RZ_ECONNECT / RZ_ETIMEOUT / RZ_EPROTOCOL. */
RZ_HIDDEN int rz__client_curl_error(rz_client *c, CURLcode rc,
                                    const char *path);
/* The rz_status of an error reply (JSON text, may be NULL), message set. */
RZ_HIDDEN int rz__client_error_reply(rz_client *c, const char *path,
                                     long http_status, const char *json);
/* "RZ_ENOENT" -> RZ_ENOENT; 1 when the name is not in the table. */
RZ_HIDDEN int rz__status_from_name(const char *name);

/* The text/event-stream parser, fed any chunks; calls cb per event until
 * cb returns non-zero (kept in cb_rc). Separate from the transfer so tests
 * can split a stream at every byte. */
#define RZ__SSE_NAME_MAX 64
typedef struct rz__sse {
    rz_client_event_cb cb;
    void *ud;
    int cb_rc;
    bool too_big, nomem;
    bool after_cr;         /* last byte was CR: a following LF is the same break */
    bool has_data;
    rz__buf line;
    rz__buf data;          /* data: lines joined with LF */
    char event[RZ__SSE_NAME_MAX + 1];
} rz__sse;

RZ_HIDDEN void rz__sse_feed(rz__sse *s, const char *p, size_t n);
RZ_HIDDEN void rz__sse_free(rz__sse *s);

#endif

/* The web console's files and the headers every reply of a console's
 * server carries: shared by rhizos-orchestrator (/) and rhizos-ui. */
#ifndef RHIZOS_SERVER_WEBFILES_H
#define RHIZOS_SERVER_WEBFILES_H

#include <stddef.h>

#include <event2/http.h>

/* No inline script or style, nothing from elsewhere, never framed. */
#define WEB_CSP "default-src 'self'; script-src 'self'; style-src 'self'; " \
                "img-src 'self' data:; font-src 'self'; connect-src 'self'; " \
                "worker-src 'self'; object-src 'none'; base-uri 'none'; " \
                "form-action 'self'; frame-ancestors 'none'"

/* nosniff, DENY framing, no referrer, the CSP: on every reply. */
void web_security_headers(struct evhttp_request *r);

/* What to answer for a GET or HEAD of `path` ("/a/b", as requested,
 * still encoded) from the console folder `dir`: status 200 (body, len,
 * type) or 304, with ETag and Cache-Control already set on r's output
 * headers; else status 0 and `error` (a static message) with its rz
 * status (RZ_ENOENT, RZ_ETOOBIG, RZ_EIO). A path the app routes itself
 * (no dot in its last segment, not under assets/) is index.html. Files
 * are opened one segment at a time beneath `dir`, never through a link,
 * never a dotfile. Release body with free(). */
typedef struct web_file {
    int status;
    int rz;
    const char *error;
    const char *type;
    char *body;
    size_t len;
} web_file;

void web_file_get(struct evhttp_request *r, const char *dir, const char *path,
                  web_file *out);

#endif

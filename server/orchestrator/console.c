/* The web console's files at / (--ui-dir, served by server/common/webfiles.c),
 * the headers every reply carries, and opt-in CORS (--cors-origin) for a
 * console served from elsewhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/keyvalq_struct.h>

#include "orch.h"
#include "webfiles.h"

/* Who may make a cross-origin preflight ask for (fetch's own list). */
#define CORS_HEADERS "Authorization, Content-Type, Accept, Last-Event-ID"

int orch_console_setup(orch *o)
{
    if (o->opts.ui_dir) {
        struct stat st;
        if (stat(o->opts.ui_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, ORCH_NAME ": --ui-dir: %s is not a folder\n",
                    o->opts.ui_dir);
            return -1;
        }
        o->console_dir = strdup(o->opts.ui_dir);
        return o->console_dir ? 0 : -1;
    }
    char *p = rz_data_path("console");   /* NULL: not built, not installed */
    o->console_dir = p ? strdup(p) : NULL;
    rz_free(p);
    return 0;
}

/* "scheme://host[:port]", http or https, nothing more: what a browser
 * sends as Origin. */
bool orch_cors_origin_ok(const char *s)
{
    const char *rest = strncmp(s, "https://", 8) == 0 ? s + 8
                     : strncmp(s, "http://", 7) == 0 ? s + 7 : NULL;
    if (!rest || !*rest || strlen(s) > 255)
        return false;
    for (const char *p = rest; *p; p++)
        if (!(*p == '.' || *p == '-' || *p == ':' || *p == '[' || *p == ']' ||
              (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

static bool origin_allowed(req *q)
{
    const char *origin = evhttp_find_header(evhttp_request_get_input_headers(q->r),
                                            "Origin");
    return origin && q->o->opts.cors_origin &&
           strcmp(origin, q->o->opts.cors_origin) == 0;
}

void orch_http_headers(req *q)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    web_security_headers(q->r);
    if (!q->o->opts.cors_origin)
        return;
    evhttp_add_header(h, "Vary", "Origin");
    if (origin_allowed(q)) {
        evhttp_add_header(h, "Access-Control-Allow-Origin", q->o->opts.cors_origin);
        evhttp_add_header(h, "Access-Control-Expose-Headers", "Retry-After, ETag");
    }
}

/* Is `m` one of the comma-separated methods of `allow`? */
static bool lists(const char *allow, const char *m)
{
    size_t n = strlen(m);
    for (const char *p = allow; (p = strstr(p, m)) != NULL; p += n)
        if ((p == allow || p[-1] == ' ') && (p[n] == ',' || !p[n]))
            return true;
    return false;
}

void orch_options(req *q, const char *allow)
{
    struct evkeyvalq *in = evhttp_request_get_input_headers(q->r);
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    const char *want = evhttp_find_header(in, "Access-Control-Request-Method");
    evhttp_add_header(h, "Allow", allow);
    if (evhttp_find_header(in, "Origin") && want) {   /* a CORS preflight */
        if (!origin_allowed(q)) {
            reply_error(q, RZ_EDENIED, "cross-origin requests from this origin "
                        "are not allowed (the server's --cors-origin)");
            return;
        }
        if (!lists(allow, want)) {
            reply_error(q, RZ_EDENIED, "method %.16s is not served here", want);
            return;
        }
        evhttp_add_header(h, "Access-Control-Allow-Methods", allow);
        evhttp_add_header(h, "Access-Control-Allow-Headers", CORS_HEADERS);
        evhttp_add_header(h, "Access-Control-Max-Age", "600");
    }
    reply_text(q, 204, NULL, NULL, 0);
}

void orch_console_serve(req *q, const char *path)
{
    if (!q->o->console_dir) {
        reply_error(q, RZ_ENOENT, "the web console was not built: build with "
                    "-Dui=enabled, or give --ui-dir DIR");
        return;
    }
    web_file f;
    web_file_get(q->r, q->o->console_dir, path, &f);
    if (f.status)
        reply_text(q, f.status, f.type, f.body, f.len);
    else
        reply_error(q, f.rz, "%s", f.error);
    free(f.body);
}

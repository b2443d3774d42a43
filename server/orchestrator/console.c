/* The web console's files at / (--ui-dir), the headers every reply carries,
 * and opt-in CORS (--cors-origin) for a console served from elsewhere.
 *
 * Files are opened one path segment at a time beneath the console folder,
 * never following a symbolic link, and no segment may start with a dot: a
 * request cannot leave the folder (.., a link out) or read a dotfile. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/keyvalq_struct.h>

#include "orch.h"

#define CONSOLE_FILE_MAX (16u * 1024u * 1024u)
#define CONSOLE_DEPTH_MAX 16

/* No inline script or style, nothing from elsewhere, never framed. */
#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; " \
            "img-src 'self' data:; font-src 'self'; connect-src 'self'; " \
            "worker-src 'self'; object-src 'none'; base-uri 'none'; " \
            "form-action 'self'; frame-ancestors 'none'"

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
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Content-Security-Policy", CSP);
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

/* ---- files ---- */

static const char *type_of(const char *name)
{
    static const struct { const char *ext, *type; } types[] = {
        { ".html", "text/html; charset=utf-8" },
        { ".js", "text/javascript; charset=utf-8" },
        { ".mjs", "text/javascript; charset=utf-8" },
        { ".css", "text/css; charset=utf-8" },
        { ".json", "application/json" },
        { ".map", "application/json" },
        { ".svg", "image/svg+xml" },
        { ".png", "image/png" },
        { ".jpg", "image/jpeg" },
        { ".webp", "image/webp" },
        { ".ico", "image/x-icon" },
        { ".woff2", "font/woff2" },
        { ".woff", "font/woff" },
        { ".wasm", "application/wasm" },
        { ".txt", "text/plain; charset=utf-8" },
    };
    const char *dot = strrchr(name, '.');
    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}

/* Open `rel` ("a/b/c", decoded) beneath `dir`: each segment a plain name
 * (no "", ".", "..", dotfile), no link followed. -1 with errno: ENOENT
 * when it is simply not there, EACCES for a refused name, else why. */
static int open_beneath(const char *dir, const char *rel)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *seg = rel;
    for (int depth = 0; fd >= 0; depth++) {
        const char *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        char name[256];
        if (!n || n >= sizeof name || seg[0] == '.' || depth == CONSOLE_DEPTH_MAX ||
            memchr(seg, '\\', n)) {
            close(fd);
            errno = EACCES;
            return -1;
        }
        memcpy(name, seg, n);
        name[n] = '\0';
        int next = openat(fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
                          (end ? O_DIRECTORY : 0));
        int err = errno;
        close(fd);
        if (next < 0) {
            errno = err == ENOENT || err == ENOTDIR ? ENOENT : EACCES;
            return -1;
        }
        if (!end)
            return next;
        fd = next;
        seg = end + 1;
    }
    return -1;
}

/* Strong enough for a file the build replaces whole: size, change time. */
static void etag_of(const struct stat *st, char *out, size_t cap)
{
    snprintf(out, cap, "\"%llx-%llx-%lx\"", (unsigned long long)st->st_size,
             (unsigned long long)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec);
}

static bool etag_matches(req *q, const char *etag)
{
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(q->r),
                                         "If-None-Match");
    return inm && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL);
}

/* 200 with the file, 304 when the client has it; false: fd is no file. */
static bool send_file(req *q, int fd, const char *rel)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    if ((uint64_t)st.st_size > CONSOLE_FILE_MAX) {
        reply_error(q, RZ_ETOOBIG, "the file is too big to serve");
        return true;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(q->r);
    char etag[80];
    etag_of(&st, etag, sizeof etag);
    evhttp_add_header(h, "ETag", etag);
    /* assets/ names carry their content's hash: they never change. */
    evhttp_add_header(h, "Cache-Control", strncmp(rel, "assets/", 7) == 0
                      ? "public, max-age=31536000, immutable" : "no-cache");
    if (etag_matches(q, etag)) {
        reply_text(q, 304, NULL, NULL, 0);
        return true;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len ? len : 1);
    while (buf && got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (!buf || got != len)
        reply_error(q, RZ_EIO, "cannot read the console's file");
    else
        reply_text(q, 200, type_of(rel), buf, len);
    free(buf);
    return true;
}

/* A path the app routes itself (/flows/12): no dot in its last segment,
 * not under assets/. */
static bool app_path(const char *rel)
{
    const char *last = strrchr(rel, '/');
    return strncmp(rel, "assets/", 7) != 0 && !strchr(last ? last + 1 : rel, '.');
}

void orch_console_serve(req *q, const char *path)
{
    if (!q->o->console_dir) {
        reply_error(q, RZ_ENOENT, "the web console was not built: build with "
                    "-Dui=enabled, or give --ui-dir DIR");
        return;
    }
    size_t n = 0;
    char *rel = evhttp_uridecode(path + 1, 0, &n);
    if (!rel || strlen(rel) != n) {   /* a NUL inside */
        free(rel);
        reply_error(q, RZ_ENOENT, "no such file");
        return;
    }
    if (n && rel[n - 1] == '/')   /* /flows/ is /flows */
        rel[n - 1] = '\0';
    const char *want = *rel ? rel : "index.html";
    int fd = open_beneath(q->o->console_dir, want);
    if (fd < 0 && errno == ENOENT && app_path(rel)) {
        want = "index.html";
        fd = open_beneath(q->o->console_dir, want);
    }
    if (fd < 0 || !send_file(q, fd, want))
        reply_error(q, RZ_ENOENT, "no such file");
    if (fd >= 0)
        close(fd);
    free(rel);
}

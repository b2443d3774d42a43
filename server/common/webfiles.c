/* The console's files (see webfiles.h).
 *
 * Files are opened one path segment at a time beneath the console folder,
 * never following a symbolic link, and no segment may start with a dot: a
 * request cannot leave the folder (.., a link out) or read a dotfile. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/keyvalq_struct.h>

#include "rhizos/common.h"
#include "webfiles.h"

#define CONSOLE_FILE_MAX (16u * 1024u * 1024u)
#define CONSOLE_DEPTH_MAX 16

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

/* Strong validators match by their quoted value anywhere in the list. */
static bool etag_matches(struct evhttp_request *r, const char *etag)
{
    const char *inm = evhttp_find_header(evhttp_request_get_input_headers(r),
                                         "If-None-Match");
    return inm && (strcmp(inm, "*") == 0 || strstr(inm, etag) != NULL);
}

/* 200 with the file, 304 when the client has it; false: fd is no file. */
static bool send_file(struct evhttp_request *r, int fd, const char *rel, web_file *out)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return false;
    if ((uint64_t)st.st_size > CONSOLE_FILE_MAX) {
        out->rz = RZ_ETOOBIG;
        out->error = "the file is too big to serve";
        return true;
    }
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    char etag[80];
    etag_of(&st, etag, sizeof etag);
    evhttp_add_header(h, "ETag", etag);
    /* assets/ names carry their content's hash: they never change. */
    evhttp_add_header(h, "Cache-Control", strncmp(rel, "assets/", 7) == 0
                      ? "public, max-age=31536000, immutable" : "no-cache");
    if (etag_matches(r, etag)) {
        out->status = 304;
        return true;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *buf = malloc(len ? len : 1);
    while (buf && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (!buf || got != len) {
        free(buf);
        out->rz = RZ_EIO;
        out->error = "cannot read the console's file";
        return true;
    }
    out->status = 200;
    out->type = type_of(rel);
    out->body = buf;
    out->len = len;
    return true;
}

/* A path the app routes itself (/flows/12): no dot in its last segment,
 * not under assets/. */
static bool app_path(const char *rel)
{
    const char *last = strrchr(rel, '/');
    return strncmp(rel, "assets/", 7) != 0 && !strchr(last ? last + 1 : rel, '.');
}

void web_security_headers(struct evhttp_request *r)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Content-Security-Policy", WEB_CSP);
}

void web_file_get(struct evhttp_request *r, const char *dir, const char *path,
                  web_file *out)
{
    *out = (web_file){ 0, RZ_ENOENT, "no such file", NULL, NULL, 0 };
    size_t n = 0;
    char *rel = evhttp_uridecode(path + (*path == '/'), 0, &n);
    if (!rel || strlen(rel) != n) {   /* a NUL inside */
        free(rel);
        return;
    }
    if (n && rel[n - 1] == '/')   /* /flows/ is /flows */
        rel[n - 1] = '\0';
    const char *want = *rel ? rel : "index.html";
    int fd = open_beneath(dir, want);
    if (fd < 0 && errno == ENOENT && app_path(rel)) {
        want = "index.html";
        fd = open_beneath(dir, want);
    }
    if (fd >= 0 && !send_file(r, fd, want, out))
        out->rz = RZ_ENOENT, out->error = "no such file";
    if (fd >= 0)
        close(fd);
    free(rel);
}

/* Strings, buffers, files and clocks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/array.h"
#include "common/internal.h"

char *rz__strdup(const char *s)
{
    return s ? rz__strndup(s, strlen(s)) : NULL;
}

char *rz__strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    char *p = rz__malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *rz__asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *p = rz__malloc((size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

static bool buf_reserve(rz__buf *b, size_t extra)
{
    if (b->failed)
        return false;
    char *p = NULL;
    if (extra < SIZE_MAX - b->len)   /* room for the NUL too */
        p = rz__grow(b->data, &b->cap, b->len + extra + 1, 1, 64);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->data = p;
    return true;
}

char *rz__buf_room(rz__buf *b, size_t n)
{
    return buf_reserve(b, n) ? b->data + b->len : NULL;
}

void rz__buf_append(rz__buf *b, const void *p, size_t n)
{
    if (!buf_reserve(b, n))
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void rz__buf_puts(rz__buf *b, const char *s)
{
    rz__buf_append(b, s, strlen(s));
}

void rz__buf_printf(rz__buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *rz__buf_take(rz__buf *b)
{
    char *p = b->failed ? NULL : b->data;
    if (b->failed)
        free(b->data);
    else if (!p)
        p = rz__strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
    return p;
}

void rz__buf_free(rz__buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

int rz__read_file(const char *path, size_t max, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    bool is_stdin = strcmp(path, "-") == 0;
    FILE *fp = is_stdin ? stdin : fopen(path, "rb");
    if (!fp)
        return rz__error_at(errno == ENOENT ? RZ_ENOENT : RZ_EIO, path, 0, 0,
                            NULL, "%s: %s", path, strerror(errno));
    rz__buf b = {0};
    char chunk[65536];
    size_t n;
    int rc = RZ_OK;
    while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
        if (b.len + n > max) {
            rc = rz__error_at(RZ_ETOOBIG, path, 0, 0, NULL,
                              "%s: larger than the limit of %zu bytes", path, max);
            break;
        }
        rz__buf_append(&b, chunk, n);
    }
    if (rc == RZ_OK && ferror(fp))
        rc = rz__error_at(RZ_EIO, path, 0, 0, NULL, "%s: read error", path);
    if (!is_stdin)
        fclose(fp);
    if (rc == RZ_OK && b.failed)
        rc = rz__error(RZ_ENOMEM, "out of memory reading %s", path);
    if (rc != RZ_OK) {
        rz__buf_free(&b);
        return rc;
    }
    *len = b.len;
    *out = rz__buf_take(&b);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

uint64_t (*rz__test_now_ms)(void);

uint64_t rz__now_ms(void)
{
    if (rz__test_now_ms)
        return rz__test_now_ms();
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t rz__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

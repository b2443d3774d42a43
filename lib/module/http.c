/* HTTP fetches for registry indexes and manifests, through an on-disk cache.
 *
 * libcurl with only http/https allowed (also on redirects), a connect and a
 * total timeout, and a size cap enforced while receiving. Each URL is cached
 * as <cache>/<sha256(url) hex>: the ETag on the first line, the body after
 * it. A cached ETag is sent as If-None-Match, and 304 serves the cached body.
 * When the fetch fails and a copy is cached, the copy is served and marked
 * stale, so a registry keeps working offline. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "common/array.h"
#include "common/fs.h"
#include "module/module_impl.h"

#define ETAG_MAX 256
#define MAX_REDIRECTS 5L

bool rz__is_url(const char *s)
{
    return s && (strncasecmp(s, "http://", 7) == 0 ||
                 strncasecmp(s, "https://", 8) == 0);
}

char *rz__registry_default_cache(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && *xdg == '/')
        return rz__asprintf("%s/rhizos/registry", xdg);
    const char *home = getenv("HOME");
    return rz__asprintf("%s/.cache/rhizos/registry", home && *home ? home : ".");
}

/* ---- cache files ---- */

static char *cache_path(const char *dir, const char *url)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    crypto_hash_sha256(h, (const unsigned char *)url, strlen(url));
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    return rz__asprintf("%s/%s", dir, hex);
}

typedef struct cached {
    char *text;         /* whole file */
    char etag[ETAG_MAX];
    const char *body;   /* into text */
    size_t len;
} cached;

/* A missing or unreadable cache entry is simply no entry. */
static void cache_read(const char *path, size_t max, cached *c)
{
    memset(c, 0, sizeof *c);
    size_t n;
    if (rz__read_file(path, max + ETAG_MAX + 1, &c->text, &n) != RZ_OK) {
        c->text = NULL;
        rz_error_clear();
        return;
    }
    char *nl = memchr(c->text, '\n', n);
    size_t el = nl ? (size_t)(nl - c->text) : 0;
    if (!nl || el >= ETAG_MAX || n - el - 1 > max) {
        free(c->text);
        c->text = NULL;
        return;
    }
    memcpy(c->etag, c->text, el);
    c->etag[el] = '\0';
    c->body = nl + 1;
    c->len = n - el - 1;
}

/* Write to a temporary name and rename, so readers never see half a file. */
static void cache_write(const char *dir, const char *path, const char *etag,
                        const char *body, size_t len)
{
    if (rz__mkdirs(dir) != RZ_OK)
        return;
    char *tmp = rz__asprintf("%s.%ld.tmp", path, (long)getpid());
    if (!tmp)
        return;
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fprintf(f, "%s\n", etag) >= 0 &&
              fwrite(body, 1, len, f) == len;
    if (f && fclose(f) != 0)
        ok = false;
    if (!ok || rename(tmp, path) != 0)
        unlink(tmp);
    free(tmp);
}

/* ---- libcurl ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct sink {
    char *data;
    size_t len, cap, max;
    bool too_big;
    char etag[ETAG_MAX];
} sink;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (n > s->max - s->len) {
        s->too_big = true;
        return 0;   /* aborts the transfer */
    }
    char *d = rz__grow(s->data, &s->cap, s->len + n + 1, 1, 4096);
    if (!d)
        return 0;
    s->data = d;
    memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* Keep the last response's ETag (a redirect's headers come first). */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    sink *s = ud;
    size_t n = size * nmemb;
    if (n > 5 && strncasecmp(p, "HTTP/", 5) == 0)
        s->etag[0] = '\0';
    if (n > 5 && strncasecmp(p, "etag:", 5) == 0) {
        size_t i = 5, e = n;
        while (i < e && (p[i] == ' ' || p[i] == '\t'))
            i++;
        while (e > i && (p[e - 1] == '\r' || p[e - 1] == '\n' || p[e - 1] == ' '))
            e--;
        if (e - i < ETAG_MAX && !memchr(p + i, '\n', e - i)) {
            memcpy(s->etag, p + i, e - i);
            s->etag[e - i] = '\0';
        }
    }
    return n;
}

typedef struct response {
    long status;
    CURLcode rc;
    char reason[CURL_ERROR_SIZE];
} response;

static int perform(const char *url, const char *etag, long timeout_ms,
                   sink *s, response *r)
{
    CURL *h = curl_easy_init();
    if (!h)
        return rz__error(RZ_ENOMEM, "cannot create a libcurl handle");
    struct curl_slist *hdrs = NULL;
    char *inm = etag && *etag ? rz__asprintf("If-None-Match: %s", etag) : NULL;
    if (inm)
        hdrs = curl_slist_append(NULL, inm);
    r->reason[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 10000 ? timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)s->max);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->reason);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "rhizos/" RZ_VERSION_STRING);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    r->rc = curl_easy_perform(h);
    r->status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    if (r->rc != CURLE_OK && !r->reason[0])
        snprintf(r->reason, sizeof r->reason, "%s", curl_easy_strerror(r->rc));
    curl_slist_free_all(hdrs);
    free(inm);
    curl_easy_cleanup(h);
    return RZ_OK;
}

/* The error for a failed fetch, in `why` for a stale-cache warning too. */
static int fetch_error(const char *url, const sink *s, const response *r,
                       size_t max, char *why, size_t cap)
{
    int code = RZ_EIO;
    if (s->too_big || r->rc == CURLE_FILESIZE_EXCEEDED) {
        code = RZ_ETOOBIG;
        snprintf(why, cap, "larger than the limit of %zu bytes", max);
    } else if (r->rc != CURLE_OK) {
        snprintf(why, cap, "%s", r->reason);
    } else {
        snprintf(why, cap, "HTTP status %ld", r->status);
    }
    return rz__error(code, "%s: %s", url, why);
}

int rz__http_fetch(const char *url, const char *cache_dir, size_t max,
                   long timeout_ms, rz__fetch *out)
{
    memset(out, 0, sizeof *out);
    if (!rz__is_url(url))
        return rz__error(RZ_EINVAL, "'%s' is not an http:// or https:// URL",
                         url ? url : "");
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK || sodium_init() < 0)
        return rz__error(RZ_EINTERNAL, "libcurl or libsodium failed to initialise");
    char *path = cache_dir ? cache_path(cache_dir, url) : NULL;
    if (cache_dir && !path)
        return rz__error(RZ_ENOMEM, "out of memory");
    cached c;
    memset(&c, 0, sizeof c);
    if (path)
        cache_read(path, max, &c);
    sink s = {.max = max};
    response r;
    int rc = perform(url, c.text ? c.etag : NULL, timeout_ms, &s, &r);
    if (rc == RZ_OK && r.rc == CURLE_OK && r.status == 304 && c.text) {
        out->from_cache = true;
    } else if (rc == RZ_OK && r.rc == CURLE_OK && r.status == 200 && !s.too_big) {
        if (path)
            cache_write(cache_dir, path, s.etag, s.data ? s.data : "", s.len);
        out->body = s.data ? s.data : rz__strdup("");
        out->len = s.len;
        s.data = NULL;
        rc = out->body ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    } else if (rc == RZ_OK) {
        rc = fetch_error(url, &s, &r, max, out->reason, sizeof out->reason);
        if (c.text && rc != RZ_ETOOBIG) {
            out->stale = out->from_cache = true;
            rc = RZ_OK;
        }
    }
    if (rc == RZ_OK && out->from_cache) {
        out->body = rz__malloc(c.len + 1);
        out->len = c.len;
        if (out->body) {
            memcpy(out->body, c.body, c.len);
            out->body[c.len] = '\0';
        } else {
            rc = rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    free(s.data);
    free(c.text);
    free(path);
    return rc;
}

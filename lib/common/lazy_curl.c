/* libcurl, loaded on first use (see common/lazy.h). Each function here has
 * libcurl's own prototype and forwards to the loaded one. */
#define CURL_DISABLE_TYPECHECK   /* the macros would rename our definitions */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "common/lazy.h"

#ifndef RZ_CURL_SONAME
#define RZ_CURL_SONAME "libcurl.so.4"
#endif

static struct {
    CURLcode (*global_init)(long);
    CURL *(*easy_init)(void);
    void (*easy_cleanup)(CURL *);
    void (*easy_reset)(CURL *);
    CURLcode (*easy_perform)(CURL *);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    const char *(*easy_strerror)(CURLcode);
    char *(*easy_escape)(CURL *, const char *, int);
    CURLcode (*easy_recv)(CURL *, void *, size_t, size_t *);
    CURLcode (*easy_send)(CURL *, const void *, size_t, size_t *);
    void (*free_)(void *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
    CURLU *(*url)(void);
    void (*url_cleanup)(CURLU *);
    CURLUcode (*url_get)(CURLU *, CURLUPart, char **, unsigned int);
    CURLUcode (*url_set)(CURLU *, CURLUPart, const char *, unsigned int);
} fn;
static bool loaded;
static char why[256];   /* why it did not load, written once */
static char msg[320];   /* curl_easy_strerror's answer then */
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define SYM(field, name) \
    ok = ok && (*(void **)&fn.field = dlsym(h, name)) != NULL

static void load(void)
{
    static const char *const names[] = { RZ_CURL_SONAME, "libcurl.so", NULL };
    void *h = rz__lazy_open(names, why, sizeof why);
    bool ok = h != NULL;
    SYM(global_init, "curl_global_init");
    SYM(easy_init, "curl_easy_init");
    SYM(easy_cleanup, "curl_easy_cleanup");
    SYM(easy_reset, "curl_easy_reset");
    SYM(easy_perform, "curl_easy_perform");
    SYM(easy_setopt, "curl_easy_setopt");
    SYM(easy_getinfo, "curl_easy_getinfo");
    SYM(easy_strerror, "curl_easy_strerror");
    SYM(easy_escape, "curl_easy_escape");
    SYM(easy_recv, "curl_easy_recv");
    SYM(easy_send, "curl_easy_send");
    SYM(free_, "curl_free");
    SYM(slist_append, "curl_slist_append");
    SYM(slist_free_all, "curl_slist_free_all");
    SYM(url, "curl_url");
    SYM(url_cleanup, "curl_url_cleanup");
    SYM(url_get, "curl_url_get");
    SYM(url_set, "curl_url_set");
    loaded = ok;   /* a library without one of them is not used at all */
    if (!ok) {
        const char *e = why[0] ? why : dlerror();
        snprintf(msg, sizeof msg, "libcurl is not available: %s",
                 e ? e : "a function is missing");
    }
}

static bool have(void)
{
    pthread_once(&once, load);
    return loaded;
}

CURLcode curl_global_init(long flags)
{
    return have() ? fn.global_init(flags) : CURLE_FAILED_INIT;
}

CURL *curl_easy_init(void)
{
    return have() ? fn.easy_init() : NULL;
}

/* Handles exist only if the library loaded: no check needed on these. */
void curl_easy_cleanup(CURL *c)
{
    if (c)
        fn.easy_cleanup(c);
}

void curl_easy_reset(CURL *c)
{
    fn.easy_reset(c);
}

CURLcode curl_easy_perform(CURL *c)
{
    return fn.easy_perform(c);
}

/* The one argument's type follows from the option's range (curl.h's
 * CURLOPTTYPE_*): long, a pointer (data or function), or curl_off_t. */
CURLcode curl_easy_setopt(CURL *c, CURLoption opt, ...)
{
    va_list ap;
    va_start(ap, opt);
    CURLcode rc;
    if (opt < CURLOPTTYPE_OBJECTPOINT) {
        long v = va_arg(ap, long);
        rc = fn.easy_setopt(c, opt, v);
    } else if (opt < CURLOPTTYPE_OFF_T || opt >= CURLOPTTYPE_BLOB) {
        void *v = va_arg(ap, void *);
        rc = fn.easy_setopt(c, opt, v);
    } else {
        curl_off_t v = va_arg(ap, curl_off_t);
        rc = fn.easy_setopt(c, opt, v);
    }
    va_end(ap);
    return rc;
}

/* Every CURLINFO takes one pointer to where the answer goes. */
CURLcode curl_easy_getinfo(CURL *c, CURLINFO info, ...)
{
    va_list ap;
    va_start(ap, info);
    void *p = va_arg(ap, void *);
    va_end(ap);
    return fn.easy_getinfo(c, info, p);
}

const char *curl_easy_strerror(CURLcode code)
{
    if (!have())
        return msg;
    return fn.easy_strerror(code);
}

char *curl_easy_escape(CURL *c, const char *s, int len)
{
    return have() ? fn.easy_escape(c, s, len) : NULL;
}

CURLcode curl_easy_recv(CURL *c, void *buf, size_t len, size_t *n)
{
    return fn.easy_recv(c, buf, len, n);
}

CURLcode curl_easy_send(CURL *c, const void *buf, size_t len, size_t *n)
{
    return fn.easy_send(c, buf, len, n);
}

void curl_free(void *p)
{
    if (p)
        fn.free_(p);
}

struct curl_slist *curl_slist_append(struct curl_slist *l, const char *s)
{
    return have() ? fn.slist_append(l, s) : NULL;
}

void curl_slist_free_all(struct curl_slist *l)
{
    if (l)
        fn.slist_free_all(l);
}

CURLU *curl_url(void)
{
    return have() ? fn.url() : NULL;
}

void curl_url_cleanup(CURLU *u)
{
    if (u)
        fn.url_cleanup(u);
}

CURLUcode curl_url_get(CURLU *u, CURLUPart what, char **part,
                       unsigned int flags)
{
    return fn.url_get(u, what, part, flags);
}

CURLUcode curl_url_set(CURLU *u, CURLUPart what, const char *part,
                       unsigned int flags)
{
    return fn.url_set(u, what, part, flags);
}

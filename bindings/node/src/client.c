/* The orchestrator client for Node: requests run on the libuv thread pool
 * (napi_create_async_work) so the event loop never waits on the network;
 * event streams run on a thread of their own, each with its own rz_client,
 * and reach JavaScript through a napi_threadsafe_function.
 *
 * The C client is one-thread-at-a-time: a handle's requests take a mutex
 * (index.js also chains them, so pool threads rarely wait on it). close()
 * during a request only marks the handle; the last request frees it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addon.h"
#include "rhizos/client.h"

typedef struct nclient {
    rz_client *c;
    char *url, *key;       /* for the event streams' own connections */
    char *ca;              /* opts.caFile, or NULL: the system's CAs */
    pthread_mutex_t mu;
} nclient;

static void wipe_free(char *s)
{
    if (s) {
        volatile char *v = s;
        while (*v)
            *v++ = '\0';
        free(s);
    }
}

void client_release(void *p)
{
    nclient *n = p;
    if (!n)
        return;
    rz_client_free(n->c);
    pthread_mutex_destroy(&n->mu);
    free(n->url);
    wipe_free(n->key);
    free(n->ca);
    free(n);
}

static char *dup_opt(const char *s, bool *ok)
{
    char *d = s ? strdup(s) : NULL;
    *ok = !s || d;
    return d;
}

/* clientNew(url, key|null, timeoutMs) -> handle */
napi_value js_client_new(napi_env env, napi_callback_info info)
{
    napi_value a[4];
    if (!args(env, info, a, 4))
        return NULL;
    int32_t timeout = 0;
    bool ok = true;
    char *url = get_str(env, a[0], "url");
    char *key = url ? get_opt_str(env, a[1], "apiKey", &ok) : NULL;
    char *ca = url && ok ? get_opt_str(env, a[3], "caFile", &ok) : NULL;
    if (!url || !ok || !get_int(env, a[2], &timeout)) {
        free(url);
        wipe_free(key);
        free(ca);
        return NULL;
    }
    nclient *n = calloc(1, sizeof *n);
    int rc = n ? rz_client_new(&n->c, url, key) : RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = rz_client_set_timeout(n->c, timeout);
    if (rc == RZ_OK && ca)
        rc = rz_client_set_ca_file(n->c, ca);
    if (rc == RZ_OK && pthread_mutex_init(&n->mu, NULL) != 0)
        rc = RZ_ENOMEM;
    if (rc != RZ_OK) {
        napi_value out = throw_rz(env, rc, NULL, "client");
        if (n)
            rz_client_free(n->c);
        free(n);
        free(url);
        wipe_free(key);
        free(ca);
        return out;
    }
    n->url = url;
    n->key = key;
    n->ca = ca;
    return wrap(env, K_CLIENT, n);
}

/* clientClose(handle): frees now, or after the requests in flight. */
napi_value js_client_close(napi_env env, napi_callback_info info)
{
    napi_value a[1];
    if (!args(env, info, a, 1))
        return NULL;
    box *b = get_box(env, a[0], K_CLIENT, false);
    if (!b)
        return NULL;
    if (b->busy)
        b->closing = true;
    else
        box_release(b);
    return NULL;
}

/* ---- one request on the thread pool ---------------------------------------- */

typedef struct call_work {
    napi_async_work work;
    napi_deferred deferred;
    napi_ref ref;          /* keeps the handle from the GC while in flight */
    box *b;
    char *method, *path, *body;
    int rc;
    long http;
    char *reply;
    rz_error err;
} call_work;

static void call_execute(napi_env env, void *data)
{
    (void)env;
    call_work *w = data;
    nclient *n = w->b->p;
    pthread_mutex_lock(&n->mu);
    w->rc = rz_client_call(n->c, w->method, w->path, w->body, 0, &w->http, &w->reply);
    if (w->rc != RZ_OK)
        w->err = *rz_error_last();
    pthread_mutex_unlock(&n->mu);
}

static void call_free(napi_env env, call_work *w)
{
    if (w->ref)
        napi_delete_reference(env, w->ref);
    free(w->method);
    free(w->path);
    free(w->body);
    rz_free(w->reply);
    free(w);
}

static void call_complete(napi_env env, napi_status status, void *data)
{
    call_work *w = data;
    box *b = w->b;
    if (--b->busy == 0 && b->closing)
        box_release(b);
    napi_value v = NULL, body = NULL;
    if (status == napi_ok && w->rc == RZ_OK) {
        if (w->reply)
            napi_create_string_utf8(env, w->reply, NAPI_AUTO_LENGTH, &v);
        else
            napi_get_null(env, &v);
        if (v)
            napi_resolve_deferred(env, w->deferred, v);
    }
    if (!v) {
        int rc = w->rc != RZ_OK ? w->rc : RZ_EINTERNAL;
        v = make_error(env, rc, &w->err, NULL, NULL);
        if (v) {
            set_num(env, v, "httpStatus", (double)w->http);
            if (w->reply &&
                napi_create_string_utf8(env, w->reply, NAPI_AUTO_LENGTH, &body) == napi_ok)
                napi_set_named_property(env, v, "body", body);
        } else {
            napi_get_undefined(env, &v);
        }
        napi_reject_deferred(env, w->deferred, v);
    }
    napi_delete_async_work(env, w->work);
    call_free(env, w);
}

/* clientCall(handle, method, path, bodyJson|null) -> Promise<string|null>;
 * rejects with Error{code, httpStatus, body}. */
napi_value js_client_call(napi_env env, napi_callback_info info)
{
    napi_value a[4];
    if (!args(env, info, a, 4))
        return NULL;
    box *b = get_box(env, a[0], K_CLIENT, true);
    if (!b)
        return NULL;
    call_work *w = calloc(1, sizeof *w);
    if (!w)
        return throw_code(env, "RZ_ENOMEM", "out of memory");
    bool ok = true;
    w->b = b;
    if (!(w->method = get_str(env, a[1], "method")) ||
        !(w->path = get_str(env, a[2], "path")) ||
        (w->body = get_opt_str(env, a[3], "body", &ok), !ok)) {
        call_free(env, w);
        return NULL;
    }
    napi_value promise, name;
    if (napi_create_reference(env, a[0], 1, &w->ref) != napi_ok ||
        napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
        napi_create_string_utf8(env, "rhizos.client", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_async_work(env, NULL, name, call_execute, call_complete, w,
                               &w->work) != napi_ok) {
        call_free(env, w);
        throw_napi(env);
        return NULL;
    }
    if (napi_queue_async_work(env, w->work) != napi_ok) {
        napi_delete_async_work(env, w->work);
        call_free(env, w);
        throw_napi(env);
        return NULL;
    }
    b->busy++;
    return promise;
}

/* ---- event streams on their own thread -------------------------------------- */

#define WATCH_MAGIC 0x72775463u

/* Shared by the reading thread, the JS handle and the tsfn's finalizer;
 * freed by whichever lets go last. */
typedef struct watch {
    unsigned magic;
    atomic_int refs;
    atomic_bool stop;           /* the consumer is gone: end at the next event */
    atomic_bool tsfn_gone;      /* finalized: the main thread must not touch it */
    napi_threadsafe_function tsfn;
    char *url, *key, *path, *ca;
    long idle_ms;
} watch;

/* What the thread hands to JavaScript: one event, or the end. */
typedef struct wmsg {
    char *event, *data;
    bool end;
    int rc;
    rz_error err;
} wmsg;

static void watch_unref(watch *w)
{
    if (atomic_fetch_sub(&w->refs, 1) != 1)
        return;
    free(w->url);
    wipe_free(w->key);
    free(w->path);
    free(w->ca);
    free(w);
}

static void wmsg_free(wmsg *m)
{
    if (m) {
        free(m->event);
        free(m->data);
        free(m);
    }
}

static bool post(watch *w, wmsg *m)
{
    if (atomic_load(&w->tsfn_gone) ||
        napi_call_threadsafe_function(w->tsfn, m, napi_tsfn_blocking) != napi_ok) {
        wmsg_free(m);
        return false;
    }
    return true;
}

static int on_event(void *ud, const char *event, const char *data)
{
    watch *w = ud;
    if (atomic_load(&w->stop))
        return 1;
    wmsg *m = calloc(1, sizeof *m);
    if (!m || !(m->event = strdup(event)) || !(m->data = strdup(data))) {
        wmsg_free(m);
        return RZ_ENOMEM;
    }
    if (!post(w, m))
        return 1;
    return strcmp(event, "end") == 0;   /* the last one: stop reading */
}

static void *watch_main(void *arg)
{
    watch *w = arg;
    rz_client *c = NULL;
    int rc = rz_client_new(&c, w->url, w->key);
    if (rc == RZ_OK)
        rc = rz_client_set_timeout(c, 0);
    if (rc == RZ_OK && w->ca)
        rc = rz_client_set_ca_file(c, w->ca);
    if (rc == RZ_OK)
        rc = rz_client_events(c, w->path, w->idle_ms, on_event, w);
    wmsg *m = calloc(1, sizeof *m);
    if (m) {
        m->end = true;
        m->rc = rc < 0 ? rc : RZ_OK;
        if (rc < 0)
            m->err = *rz_error_last();
    }
    /* Done with libcurl before JavaScript hears of the end: the process may
     * exit right after, and must not find this thread inside the library. */
    rz_client_free(c);
    if (m)
        post(w, m);
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_release);
    watch_unref(w);
    return NULL;
}

/* On the main thread: cb(event, data) for an event, cb(null, null, error?)
 * at the end. */
static void call_js(napi_env env, napi_value cb, void *context, void *data)
{
    (void)context;
    wmsg *m = data;
    if (env && cb) {
        napi_value argv[3], undef;
        napi_get_undefined(env, &undef);
        napi_get_null(env, &argv[0]);
        napi_get_null(env, &argv[1]);
        argv[2] = undef;
        if (!m->end) {
            napi_create_string_utf8(env, m->event, NAPI_AUTO_LENGTH, &argv[0]);
            napi_create_string_utf8(env, m->data, NAPI_AUTO_LENGTH, &argv[1]);
        } else if (m->rc != RZ_OK) {
            napi_value e = make_error(env, m->rc, &m->err, NULL, NULL);
            if (e)
                argv[2] = e;
        }
        napi_call_function(env, undef, cb, 3, argv, NULL);
    }
    wmsg_free(m);
}

static void tsfn_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    watch *w = data;
    atomic_store(&w->tsfn_gone, true);
    watch_unref(w);
}

static void watch_finalize(napi_env env, void *data, void *hint)
{
    (void)env;
    (void)hint;
    watch *w = data;
    atomic_store(&w->stop, true);
    watch_unref(w);
}

static watch *watch_new(const nclient *n, char *path, long idle_ms)
{
    watch *w = calloc(1, sizeof *w);
    bool ok = true;
    if (w) {
        w->magic = WATCH_MAGIC;
        w->url = dup_opt(n->url, &ok);
        w->key = ok ? dup_opt(n->key, &ok) : NULL;
        w->ca = ok ? dup_opt(n->ca, &ok) : NULL;
        w->path = path;
        w->idle_ms = idle_ms;
        atomic_init(&w->refs, 3);      /* thread, JS handle, tsfn finalizer */
        atomic_init(&w->stop, false);
        atomic_init(&w->tsfn_gone, false);
    }
    if (!w || !ok) {
        if (w) {
            free(w->url);
            wipe_free(w->key);
            free(w->ca);
            free(w);
        }
        free(path);
        return NULL;
    }
    return w;
}

/* clientWatch(handle, path, idleMs, cb) -> watch handle; the stream starts
 * at once. cb(event, data) per event, cb(null, null, error?) at the end. */
napi_value js_client_watch(napi_env env, napi_callback_info info)
{
    napi_value a[4];
    if (!args(env, info, a, 4))
        return NULL;
    box *b = get_box(env, a[0], K_CLIENT, true);
    int32_t idle = 0;
    napi_valuetype t;
    if (!b || !get_int(env, a[2], &idle))
        return NULL;
    if (napi_typeof(env, a[3], &t) != napi_ok || t != napi_function)
        return throw_code(env, "RZ_EINVAL", "callback must be a function");
    char *path = get_str(env, a[1], "path");
    if (!path)
        return NULL;
    watch *w = watch_new(b->p, path, idle < 0 ? 0 : idle);
    if (!w)
        return throw_code(env, "RZ_ENOMEM", "out of memory");
    napi_value name, handle;
    if (napi_create_string_utf8(env, "rhizos.watch", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_create_threadsafe_function(env, a[3], NULL, name, 0, 1, w, tsfn_finalize,
                                        NULL, call_js, &w->tsfn) != napi_ok) {
        atomic_store(&w->refs, 1);
        watch_unref(w);
        throw_napi(env);
        return NULL;
    }
    /* From here the tsfn finalizer owns one reference. */
    if (napi_create_external(env, w, watch_finalize, NULL, &handle) != napi_ok) {
        atomic_fetch_sub(&w->refs, 2);          /* no thread, no handle */
        napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
        throw_napi(env);
        return NULL;
    }
    pthread_attr_t attr;
    pthread_t th;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&th, &attr, watch_main, w) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        atomic_store(&w->stop, true);
        watch_unref(w);                         /* the thread's reference */
        napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
        return throw_code(env, "RZ_ENOMEM", "cannot start a thread for the event stream");
    }
    return handle;
}

/* clientWatchStop(watch, early): the thread ends at the next event. When
 * the consumer left early the process no longer waits for that event; at
 * the stream's own end it still waits for the thread to leave libcurl. */
napi_value js_client_watch_stop(napi_env env, napi_callback_info info)
{
    napi_value a[2];
    watch *w = NULL;
    napi_valuetype t;
    bool early = false;
    if (!args(env, info, a, 2))
        return NULL;
    napi_get_value_bool(env, a[1], &early);
    if (napi_typeof(env, a[0], &t) != napi_ok || t != napi_external ||
        napi_get_value_external(env, a[0], (void **)&w) != napi_ok || !w ||
        w->magic != WATCH_MAGIC)
        return throw_code(env, "RZ_EINVAL", "expected a watch handle");
    if (!atomic_exchange(&w->stop, true) && early && !atomic_load(&w->tsfn_gone))
        napi_unref_threadsafe_function(env, w->tsfn);
    return NULL;
}

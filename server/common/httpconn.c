/* Connection cap and request deadline for evhttp (httpconn.h).
 *
 * libevent 2.1.12 (Debian's) accepts and frees connections inside evhttp
 * and tells its user neither; 2.2's evhttp_set_max_connections and
 * newreqcb do not exist here. The one seam is the bufferevent callback:
 * every accepted connection's bufferevent is made by us. We keep a
 * reference to it, so it outlives evhttp's use: when evhttp frees the
 * connection it clears the bufferevent's callbacks and shuts its socket
 * for writing (the client sees the end at once), and a sweep every
 * SWEEP_MS (or every SWEEP_NEW accepts) finds it so and drops our
 * reference, which closes the socket.
 * A callback on its input buffer sees a request's first byte, which
 * starts the deadline; the request callback stops it (the connection is
 * found by its socket, the one key both sides know), so a request being
 * answered — a long poll, a stream — is never cut. Closing is a
 * shutdown() of the socket: evhttp sees the end of the stream and frees
 * the connection as it frees any the client closed.
 *
 * (A filter bufferevent, which has a free callback, was tried first: in
 * 2.1 it tells evhttp a reply is written once it is handed to the socket's
 * bufferevent, and evhttp then shuts the socket with the reply unsent.) */
#include "httpconn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

#define SWEEP_MS 100
/* ... or sooner, after this many new connections: a burst of short ones
 * would otherwise hold that many freed connections' buffers until then. */
#define SWEEP_NEW 64

typedef struct conn conn;

struct httpconn {
    httpconn_limits lim;
    httpconn_stats st;
    struct event *sweep;
    conn **all;            /* open, in no order; conn.at is the index */
    size_t cap_all;
    conn **by_fd;          /* the request callback's way in */
    size_t n_by_fd;
    unsigned fresh;        /* connections since the last sweep */
};

struct conn {
    httpconn *hc;
    struct bufferevent *bev;   /* evhttp's; we hold a reference */
    struct event *timer;       /* the deadline, or the cap's close */
    size_t at;
    int fd;                    /* indexed in by_fd from the first byte */
    bool reading;              /* a request begun and not yet dispatched */
    bool closing;              /* shut by us */
};

static void arm(conn *c, unsigned seconds)
{
    struct timeval tv = { (time_t)seconds, 0 };
    evtimer_add(c->timer, &tv);
}

static void conn_close(evutil_socket_t unused, short what, void *arg)
{
    (void)unused; (void)what;
    conn *c = arg;
    int fd = (int)bufferevent_getfd(c->bev);
    if (fd < 0 || c->closing)
        return;
    c->closing = true;
    if (c->reading)
        c->hc->st.expired++;
    shutdown(fd, SHUT_RDWR);
}

/* Index by descriptor so httpconn_dispatched finds the connection. When
 * the index cannot grow, the connection goes untimed rather than being
 * cut mid-answer: the server's idle timeout still applies. */
static void index_fd(conn *c)
{
    httpconn *hc = c->hc;
    int fd = (int)bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    if ((size_t)fd >= hc->n_by_fd) {
        size_t n = hc->n_by_fd ? hc->n_by_fd : 256;
        while (n <= (size_t)fd)
            n *= 2;
        conn **p = realloc(hc->by_fd, n * sizeof *p);
        if (!p) {
            evtimer_del(c->timer);
            c->reading = false;
            return;
        }
        for (size_t i = hc->n_by_fd; i < n; i++)
            p[i] = NULL;
        hc->by_fd = p;
        hc->n_by_fd = n;
    }
    hc->by_fd[fd] = c;
    c->fd = fd;
}

static void conn_input(struct evbuffer *in, const struct evbuffer_cb_info *info,
                       void *arg)
{
    (void)in;
    conn *c = arg;
    if (!info->n_added)
        return;
    if (c->fd < 0)
        index_fd(c);
    if (!c->reading && !c->closing && c->hc->lim.deadline_s) {
        c->reading = true;
        arm(c, c->hc->lim.deadline_s);
    }
}

static void conn_drop(conn *c)
{
    httpconn *hc = c->hc;
    if (c->fd >= 0 && (size_t)c->fd < hc->n_by_fd && hc->by_fd[c->fd] == c)
        hc->by_fd[c->fd] = NULL;
    hc->all[c->at] = hc->all[--hc->st.open];
    hc->all[c->at]->at = c->at;
    event_free(c->timer);
    bufferevent_decref(c->bev);   /* the last reference: closes the socket */
    free(c);
}

/* evhttp frees a connection by clearing its bufferevent's callbacks and
 * dropping its reference; ours is then the last. */
static bool released(const conn *c)
{
    bufferevent_event_cb ecb = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &ecb, NULL);
    return ecb == NULL;
}

static void sweep(evutil_socket_t unused, short what, void *arg)
{
    (void)unused; (void)what;
    httpconn *hc = arg;
    hc->fresh = 0;
    for (size_t i = hc->st.open; i-- > 0;)
        if (released(hc->all[i]))
            conn_drop(hc->all[i]);
}

static struct bufferevent *conn_new(struct event_base *base, void *arg)
{
    httpconn *hc = arg;
    hc->st.accepted++;
    if (++hc->fresh >= SWEEP_NEW)
        sweep(-1, 0, hc);
    if (hc->st.open == hc->cap_all) {
        size_t n = hc->cap_all ? hc->cap_all * 2 : 64;
        conn **p = realloc(hc->all, n * sizeof *p);
        if (!p)
            return NULL;   /* evhttp makes a bufferevent of its own */
        hc->all = p;
        hc->cap_all = n;
    }
    conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = hc->lim.make
        ? hc->lim.make(base, hc->lim.make_arg)
        : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c || !bev || !(c->timer = evtimer_new(base, conn_close, c)) ||
        !evbuffer_add_cb(bufferevent_get_input(bev), conn_input, c)) {
        if (c && c->timer)
            event_free(c->timer);
        free(c);
        /* NULL: evhttp makes a plain bufferevent of its own, untracked;
         * only a TLS server loses anything, and it has no memory left. */
        return bev;
    }
    bufferevent_incref(bev);
    c->hc = hc;
    c->bev = bev;
    c->fd = -1;
    c->at = hc->st.open;
    hc->all[hc->st.open++] = c;
    if (hc->lim.max && hc->st.open > hc->lim.max) {
        hc->st.refused++;
        arm(c, 0);   /* evhttp gives it its socket after we return */
    } else if (hc->lim.deadline_s) {
        c->reading = true;   /* the first request is owed from the accept */
        arm(c, hc->lim.deadline_s);
    }
    return bev;
}

httpconn *httpconn_attach(struct evhttp *http, struct event_base *base,
                          const httpconn_limits *lim)
{
    httpconn *hc = calloc(1, sizeof *hc);
    if (!hc || !(hc->sweep = event_new(base, -1, EV_PERSIST, sweep, hc))) {
        free(hc);
        return NULL;
    }
    struct timeval tv = { 0, SWEEP_MS * 1000 };
    event_add(hc->sweep, &tv);
    hc->lim = *lim;
    evhttp_set_bevcb(http, conn_new, hc);
    return hc;
}

void httpconn_dispatched(httpconn *hc, struct evhttp_request *r)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(r);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    int fd = bev ? (int)bufferevent_getfd(bev) : -1;
    if (!hc || fd < 0 || (size_t)fd >= hc->n_by_fd)
        return;
    conn *c = hc->by_fd[fd];
    if (!c || c->bev != bev || c->closing)
        return;
    c->reading = false;
    evtimer_del(c->timer);
    /* Bytes already here are the next (pipelined) request: its time runs. */
    if (hc->lim.deadline_s && evbuffer_get_length(bufferevent_get_input(bev))) {
        c->reading = true;
        arm(c, hc->lim.deadline_s);
    }
}

httpconn_stats httpconn_get_stats(const httpconn *hc)
{
    httpconn_stats none = { 0 };
    return hc ? hc->st : none;
}

void httpconn_free(httpconn *hc)
{
    if (!hc)
        return;
    sweep(-1, 0, hc);   /* evhttp_free has released them all */
    for (size_t i = hc->st.open; i-- > 0;)
        conn_drop(hc->all[i]);   /* (none, unless evhttp still runs) */
    event_free(hc->sweep);
    free(hc->all);
    free(hc->by_fd);
    free(hc);
}

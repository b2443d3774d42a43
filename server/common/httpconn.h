/* A cap on open HTTP connections and a deadline for each request to
 * arrive whole, for an evhttp server (libevent 2.1 has neither).
 *
 *   httpconn *hc = httpconn_attach(http, base, &limits);
 *   ... in the request callback, first:  httpconn_dispatched(hc, req);
 *   ... at shutdown: evhttp_free(http); httpconn_free(hc);
 *
 * A connection past the cap is closed as soon as it is accepted; one whose
 * request (or first request) has not arrived whole `deadline_s` seconds
 * after its first byte (or after the accept) is closed. A request that has
 * been dispatched is not timed by this: long polls and streams keep their
 * connection. Both close at the socket; the client sees the connection
 * closed with no reply. A connection evhttp has freed is counted out
 * within 100 ms. Single-threaded: the evhttp's event loop only. */
#ifndef RHIZOS_HTTPCONN_H
#define RHIZOS_HTTPCONN_H

#include <stdint.h>

struct evhttp;
struct evhttp_request;
struct event_base;
struct bufferevent;

typedef struct httpconn httpconn;

typedef struct httpconn_limits {
    unsigned max;          /* open connections; 0: no cap */
    unsigned deadline_s;   /* a request's arrival; 0: none */
    /* Makes each connection's real bufferevent (fd -1, closed on free),
     * e.g. a TLS one; NULL: a plain socket. */
    struct bufferevent *(*make)(struct event_base *, void *);
    void *make_arg;
} httpconn_limits;

typedef struct httpconn_stats {
    uint64_t open;       /* connections open now */
    uint64_t refused;    /* closed at once: over the cap */
    uint64_t expired;    /* closed: a request did not arrive in time */
    uint64_t accepted;   /* connections accepted since start: with the
                            requests, how well clients keep theirs alive */
} httpconn_stats;

/* Sets the evhttp's bufferevent callback (replacing any other: pass a TLS
 * maker in `lim->make` instead). NULL when out of memory. */
httpconn *httpconn_attach(struct evhttp *http, struct event_base *base,
                          const httpconn_limits *lim);

/* The request `r` arrived whole: its connection's deadline stops. */
void httpconn_dispatched(httpconn *hc, struct evhttp_request *r);

httpconn_stats httpconn_get_stats(const httpconn *hc);

/* After evhttp_free (which releases every connection). Accepts NULL. */
void httpconn_free(httpconn *hc);

#endif

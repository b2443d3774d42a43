/* rhizos-ui's server state, shared by main.c and http.c. */
#ifndef RHIZOS_UI_HTTP_H
#define RHIZOS_UI_HTTP_H

#include <event2/event.h>
#include <event2/http.h>

#include "ui.h"

typedef struct ui_opts {
    const char *listen;          /* "127.0.0.1:PORT"; loopback only */
    const char *data_dir;
    const char *ui_dir;          /* the console's files; NULL: not built */
    const char *container_host;
    bool open;                   /* xdg-open the address */
} ui_opts;

typedef struct ui_server {
    ui_opts opts;
    char token[65];              /* 32 random bytes, hex */
    struct event_base *base;
    struct evhttp *http;
    struct httpconn *conns;      /* the connection cap and request deadline */
    rz_registry *reg;
    rz_prices *prices;           /* the shipped tables; NULL: none */
    ui_runs *runs;
} ui_server;

/* The request handler on s->base (s->http) and its connection limits
 * (s->conns). 0, or -1 out of memory. */
int ui_http_start(ui_server *s);

#endif

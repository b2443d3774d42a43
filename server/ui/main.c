/* rhizos-ui: the web console on one machine (docs/console.md "On one
 * machine"). Started by `rhizos ui`, which passes --data and --modules as
 * the CLI resolves them; a program of its own so that libevent is loaded
 * only for this command. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>

#include "httpconn.h"
#include "ui_http.h"

#define DEFAULT_PORT 7190
#define MODULES_MAX 64

static void usage(FILE *out)
{
    fputs("usage: rhizos ui [--listen 127.0.0.1:PORT] [--data DIR] [--open]\n"
          "                 [--modules DIR]... [--ui-dir DIR] [--jobs N] [--no-sandbox]\n"
          "\n"
          "The web console on this machine: build flows, run them on the embedded\n"
          "engine and follow them, over the run history of --data (the runs\n"
          "`rhizos flow runs` lists). No server, no network: nodes, jobs and\n"
          "accounts are not shown.\n"
          "\n"
          "  --listen ADDR:PORT  a loopback address only (default 127.0.0.1:7190;\n"
          "                      when taken and not given, a free port)\n"
          "  --open              open the address in the desktop's browser\n"
          "  --ui-dir DIR        the console's built files (default: the installed\n"
          "                      or built ones)\n"
          "\n"
          "It prints http://127.0.0.1:PORT/#token=...: the token is new at each\n"
          "start and every API request needs it (as a bearer header: the console\n"
          "takes it from the address and removes it from the address bar). Only\n"
          "requests whose Host is an IP address or localhost are answered.\n",
          out);
}

/* ADDR:PORT or [ADDR6]:PORT, on loopback only. */
static int parse_listen(const char *s, char *host, size_t cap, unsigned *port)
{
    const char *colon = s[0] == '[' ? strstr(s, "]:") : strrchr(s, ':');
    if (!colon)
        return -1;
    const char *h = s[0] == '[' ? s + 1 : s;
    size_t n = (size_t)(colon - h);
    if (n >= cap)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    const char *p = colon + (s[0] == '[' ? 2 : 1);
    char *end;
    unsigned long v = strtoul(p, &end, 10);
    if (!*p || *end || v > 65535)
        return -1;
    *port = (unsigned)v;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127 ? 0 : -2;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6) ? 0 : -2;
    return strcmp(host, "localhost") == 0 ? (strcpy(host, "127.0.0.1"), 0) : -1;
}

static int make_token(char out[65])
{
    unsigned char b[32];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
        return -1;
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
    return 0;
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    event_base_loopbreak(arg);
}

/* The desktop's browser, not waited for; its failure is only said. */
static void open_browser(const char *url)
{
    pid_t pid = fork();
    if (pid == 0) {
        if (fork() == 0) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) {
                dup2(null, 1);
                dup2(null, 2);
            }
            execlp("xdg-open", "xdg-open", url, (char *)NULL);
            _exit(127);
        }
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static rz_registry *registry(char *const *dirs, size_t n)
{
    rz_registry *reg = NULL;
    rz_diags *d = NULL;
    if (rz_registry_new(&reg) != RZ_OK || rz_diags_new(&d) != RZ_OK) {
        rz_registry_free(reg);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (rz_registry_add(reg, dirs[i], d) != RZ_OK)
            fprintf(stderr, "rhizos ui: %s\n", rz_error_last()->message);
    (void)!rz_registry_add_defaults(reg, d);
    char *text = NULL;
    if (rz_diags_count(d) && rz_diags_to_text(d, &text) == RZ_OK)
        fputs(text, stderr);
    rz_free(text);
    rz_diags_free(d);
    return reg;
}

static rz_prices *shipped_prices(void)
{
    char *dir = rz_data_path("prices");
    rz_prices *p = NULL;
    char path[PATH_MAX];
    if (dir && rz_prices_new(&p) == RZ_OK) {
        snprintf(path, sizeof path, "%s/nodes.json", dir);
        int rc = rz_prices_add_file(p, path);
        snprintf(path, sizeof path, "%s/providers.json", dir);
        if (rc != RZ_OK || rz_prices_add_file(p, path) != RZ_OK) {
            rz_prices_free(p);
            p = NULL;
        }
    }
    rz_free(dir);
    return p;
}

typedef struct args {
    char *modules[MODULES_MAX];
    size_t n_modules;
    unsigned jobs;
    int sandbox;
    char host[64];
    unsigned port;
} args;

/* The options into s->opts and a; 0, else the exit status (help: 0 via
 * *done). */
static int parse_args(int argc, char **argv, ui_server *s, args *a, bool *done)
{
    static const struct option longs[] = {
        { "listen", required_argument, NULL, 'l' },
        { "data", required_argument, NULL, 'd' },
        { "modules", required_argument, NULL, 'm' },
        { "ui-dir", required_argument, NULL, 'u' },
        { "jobs", required_argument, NULL, 'j' },
        { "no-sandbox", no_argument, NULL, 'S' },
        { "container-host", required_argument, NULL, 'c' },
        { "open", no_argument, NULL, 'o' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    char *end;
    unsigned long v;
    *done = false;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (c) {
        case 'l': s->opts.listen = optarg; break;
        case 'd': s->opts.data_dir = optarg; break;
        case 'u': s->opts.ui_dir = optarg; break;
        case 'c': s->opts.container_host = optarg; break;
        case 'o': s->opts.open = true; break;
        case 'S': a->sandbox = 0; break;
        case 'm':
            if (a->n_modules == MODULES_MAX) {
                fprintf(stderr, "rhizos ui: at most %d --modules\n", MODULES_MAX);
                return 2;
            }
            a->modules[a->n_modules++] = optarg;
            break;
        case 'j':
            v = strtoul(optarg, &end, 10);
            if (!*optarg || *end || v < 1 || v > 4096) {
                fprintf(stderr, "rhizos ui: --jobs wants a number from 1 to 4096\n");
                return 2;
            }
            a->jobs = (unsigned)v;
            break;
        case 'h': usage(stdout); *done = true; return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !s->opts.data_dir) {
        usage(stderr);
        return 2;
    }
    int lrc = s->opts.listen ? parse_listen(s->opts.listen, a->host, sizeof a->host, &a->port)
                             : 0;
    if (lrc != 0) {
        fprintf(stderr, "rhizos ui: --listen %s: %s\n", s->opts.listen, lrc == -2
                ? "only a loopback address (127.0.0.1, ::1): the console runs "
                  "flows on this machine"
                : "want ADDR:PORT, e.g. 127.0.0.1:7190");
        return 2;
    }
    struct stat st;
    if (s->opts.ui_dir && (stat(s->opts.ui_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        fprintf(stderr, "rhizos ui: --ui-dir: %s is not a folder\n", s->opts.ui_dir);
        return 2;
    }
    return 0;
}

/* Listen, say where, serve until SIGINT or SIGTERM: the exit status. */
static int serve(ui_server *s, const char *host, unsigned port)
{
    struct evhttp_bound_socket *sock =
        evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port);
    if (!sock && !s->opts.listen)   /* the default taken: any free port */
        sock = evhttp_bind_socket_with_handle(s->http, host, 0);
    if (!sock) {
        fprintf(stderr, "rhizos ui: cannot listen on %s:%u: %s\n", host, port,
                strerror(errno));
        return 1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    char url[256];
    snprintf(url, sizeof url, strchr(host, ':') ? "http://[%s]:%u/#token=%s"
                                                : "http://%s:%u/#token=%s",
             host, port, s->token);
    printf("rhizos ui: the console of this machine (runs in %s)\n"
           "rhizos ui: open %s\n"
           "rhizos ui: Ctrl-C stops it (and the runs it started)\n",
           s->opts.data_dir, url);
    fflush(stdout);
    if (s->opts.open)
        open_browser(url);
    int status = 1;
    struct event *sigint = evsignal_new(s->base, SIGINT, on_signal, s->base);
    struct event *sigterm = evsignal_new(s->base, SIGTERM, on_signal, s->base);
    if (sigint && sigterm && event_add(sigint, NULL) == 0 && event_add(sigterm, NULL) == 0)
        status = event_base_dispatch(s->base) < 0;
    event_free(sigint);
    event_free(sigterm);
    return status;
}

int main(int argc, char **argv)
{
    ui_server s = { 0 };
    args a = { .sandbox = 1, .host = "127.0.0.1", .port = DEFAULT_PORT };
    bool done;
    int status = parse_args(argc, argv, &s, &a, &done);
    if (status || done)
        return status;
    char *shipped = NULL;
    if (!s.opts.ui_dir && (shipped = rz_data_path("console")) != NULL)
        s.opts.ui_dir = shipped;
    if (!s.opts.ui_dir)
        fprintf(stderr, "rhizos ui: the console was not built (-Dui=enabled): "
                "only the API is served\n");
    if (make_token(s.token) != 0) {
        fprintf(stderr, "rhizos ui: no random bytes for the token\n");
        rz_free(shipped);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    s.reg = registry(a.modules, a.n_modules);
    s.prices = shipped_prices();
    ui_runs_opts ro = { s.opts.data_dir, a.jobs, a.sandbox, s.opts.container_host, s.prices };
    s.base = event_base_new();
    status = 1;
    if (s.reg && s.base && ui_http_start(&s) == 0 && (s.runs = ui_runs_open(&ro)))
        status = serve(&s, a.host, a.port);
    if (s.http)
        evhttp_free(s.http);
    httpconn_free(s.conns);
    ui_runs_close(s.runs);
    if (s.base)
        event_base_free(s.base);
    rz_prices_free(s.prices);
    rz_registry_free(s.reg);
    rz_free(shipped);
    return status;
}

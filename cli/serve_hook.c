/* Webhooks of `rhizos flow serve --listen HOST:PORT`: POST
 * /hooks/<flow>/<name>, signed as on an orchestrator (X-Rhizos-Timestamp,
 * X-Rhizos-Signature: sha256=HMAC-SHA256 of "<timestamp>.<body>" with the
 * vault credential the trigger names, a 300 s window, X-Rhizos-Delivery
 * for idempotency). One call at a time, each read within 2 s: a small
 * server for one machine, not a public endpoint.
 *
 * Exactly once: a call that passes is recorded (DATA/serve/hooks/<flow>.
 * <name>.<delivery>.json, with its body, synced) before its run starts and
 * before the 202; the same delivery again is 409. At the next start a
 * recorded delivery whose run is not in the run store runs then. A record
 * whose run is there is removed once past KEEP_S (longer than the window,
 * so its id cannot come again while it could pass): at start and then
 * every minute while serving. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "serve.h"

#define HEAD_MAX 16384
#define WINDOW_S 300
#define KEEP_S 600              /* delivery records kept this long */

int serve_hook_listen(const char *spec)
{
    char host[64];
    const char *colon = spec ? strrchr(spec, ':') : NULL;
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    size_t hl = colon ? (size_t)(colon - spec) : 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (!colon || hl == 0 || hl >= sizeof host || port < 1 || port > 65535) {
        fprintf(stderr, "rhizos: --listen wants HOST:PORT (IPv4), not '%s'\n", spec);
        return -1;
    }
    memcpy(host, spec, hl);
    host[hl] = '\0';
    int fd = inet_pton(AF_INET, host, &a.sin_addr) == 1
                 ? socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) : -1;
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0) {
        fprintf(stderr, "rhizos: --listen %s: %s\n", spec,
                fd < 0 && errno == 0 ? "not an IPv4 address" : strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void reply(int fd, int code, const char *status, const char *json)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n", code, status,
                     strlen(json));
    /* MSG_NOSIGNAL: a caller that went away is no SIGPIPE for the server. */
    if (send(fd, head, (size_t)n, MSG_NOSIGNAL) == n)
        (void)!send(fd, json, strlen(json), MSG_NOSIGNAL);
}

static void refuse(int fd, int code, const char *status, const char *why)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(doc, "error"), "message", why);
    char *text = cJSON_PrintUnformatted(doc);
    reply(fd, code, status, text ? text : "{}");
    free(text);
    cJSON_Delete(doc);
}

/* The value of header `name` in the head (NUL-terminated), into buf. */
static const char *header(const char *head, const char *name, char *buf, size_t cap)
{
    size_t n = strlen(name);
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        const char *x = l + 2;
        if (strncasecmp(x, name, n) != 0 || x[n] != ':')
            continue;
        x += n + 1;
        while (*x == ' ' || *x == '\t')
            x++;
        size_t k = strcspn(x, "\r");
        if (k >= cap)
            return NULL;
        memcpy(buf, x, k);
        buf[k] = '\0';
        return buf;
    }
    return NULL;
}

static bool sig_ok(const shook *h, const char *ts, const char *sig, const char *body,
                   size_t len)
{
    unsigned char want[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
    size_t bin = 0;
    if (!sig || strncmp(sig, "sha256=", 7) != 0 || strlen(sig + 7) != 2 * sizeof got ||
        sodium_hex2bin(got, sizeof got, sig + 7, 2 * sizeof got, NULL, &bin, NULL) != 0 ||
        bin != sizeof got)
        return false;
    crypto_auth_hmacsha256_state st;
    crypto_auth_hmacsha256_init(&st, rz_secret_data(h->key), rz_secret_len(h->key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)ts, strlen(ts));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)".", 1);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)body, len);
    crypto_auth_hmacsha256_final(&st, want);
    return sodium_memcmp(want, got, sizeof got) == 0;
}

static bool delivery_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
            return false;
    return n >= 1 && n <= 64;
}

/* A whole call must arrive within REQUEST_S of the accept: the socket's
 * receive timeout bounds one read, not a caller sending a byte at a time,
 * who would otherwise hold this one-call-at-a-time server (and its cron
 * fires) for as long as it liked. */
#define REQUEST_S 5
static struct timespec call_deadline;

static ssize_t read_timed(int fd, void *p, size_t n)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long left_us = (call_deadline.tv_sec - now.tv_sec) * 1000000LL +
                        (call_deadline.tv_nsec - now.tv_nsec) / 1000;
    if (left_us <= 0)
        return -1;
    struct timeval tv = { (time_t)(left_us / 1000000), (suseconds_t)(left_us % 1000000) };
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return read(fd, p, n);
}

/* Read the head (up to its blank line) and as much body as came with it. */
static ssize_t read_head(int fd, char *buf, size_t cap, size_t *head_len)
{
    size_t got = 0;
    while (got < cap - 1) {
        ssize_t r = read_timed(fd, buf + got, cap - 1 - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end) {
            *head_len = (size_t)(end - buf) + 4;
            return (ssize_t)got;
        }
    }
    return -1;
}

static const shook *route(const char *head, const shook *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char path[300];
        snprintf(path, sizeof path, "POST /hooks/%s/%s HTTP/1.", h[i].flow, h[i].name);
        if (strncmp(head, path, strlen(path)) == 0)
            return &h[i];
    }
    return NULL;
}

static void record_path(const char *data, const shook *h, const char *delivery, char *buf,
                        size_t cap)
{
    snprintf(buf, cap, "%s/serve/hooks/%s.%s.%s.json", data, h->flow, h->name, delivery);
}

/* The run of a recorded delivery: its trigger input from the record.
 * `recorded`: as serve_spawn's. */
static pid_t run_delivery(cli *c, const shook *h, const char *delivery, const cJSON *rec,
                          int *recorded)
{
    char id[300];
    snprintf(id, sizeof id, "serve-%s-%s-%s", h->flow, h->name, delivery);
    const char *text = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "body"));
    cJSON *body = text ? cJSON_Parse(text) : NULL;
    cJSON *in = cJSON_CreateObject(), *tr = cJSON_CreateObject();
    cJSON_AddStringToObject(tr, "type", "webhook");
    cJSON_AddStringToObject(tr, "name", h->name);
    cJSON_AddStringToObject(tr, "delivery", delivery);
    cJSON_AddItemToObject(tr, "body", body ? body : cJSON_CreateString(text ? text : ""));
    cJSON_AddItemToObject(in, "trigger", tr);
    char *inputs = h->wants_trigger ? cJSON_PrintUnformatted(in) : NULL;
    pid_t pid = serve_spawn(c, h->file, h->flow, id, inputs ? inputs : "{}", recorded);
    free(inputs);
    cJSON_Delete(in);
    return pid;
}

/* Until the run's record is written (a byte on `fd`), or its process
 * ended before (the socket's end), or RECORDED_WAIT_S: the 202 names a run
 * that `flow runs RUN` finds. The wait is short (a record's write), and
 * bounded: the server answers one call at a time. */
#define RECORDED_WAIT_S 5
static void wait_recorded(int fd)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long left = RECORDED_WAIT_S * 1000;
    struct pollfd p = { fd, POLLIN, 0 };
    /* Readable: the byte, or the socket's end; only a signal asks again. */
    while (poll(&p, 1, (int)left) < 0 && errno == EINTR) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        left = RECORDED_WAIT_S * 1000 - ((t.tv_sec - t0.tv_sec) * 1000 +
                                         (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0)
            break;
    }
    close(fd);
}

/* A call that passed the checks: recorded, run, answered 202 once its run
 * is recorded. */
static void take(cli *c, int fd, const shook *h, const char *data, const char *delivery,
                 const char *body, size_t len)
{
    char path[4500], id[300], json[400];
    record_path(data, h, delivery, path, sizeof path);
    snprintf(id, sizeof id, "serve-%s-%s-%s", h->flow, h->name, delivery);
    snprintf(json, sizeof json, "{\"run\":\"%s\"}", id);
    if (access(path, F_OK) == 0) {
        reply(fd, 409, "Conflict", json);   /* this delivery was taken before */
        return;
    }
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddNumberToObject(rec, "t", (double)serve_now());
    char *b = malloc(len + 1);
    if (b) {
        memcpy(b, body, len);
        b[len] = '\0';
        cJSON_AddStringToObject(rec, "body", b);
    }
    char *text = b ? cJSON_PrintUnformatted(rec) : NULL;
    free(b);
    if (!text || strlen(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "body")))
                     != len || serve_write_synced(path, text) != 0) {
        refuse(fd, 500, "Internal Server Error", text ? "cannot record the call"
                                                      : "the body is not text");
    } else {
        if (getenv("RHIZOS_TEST_KILL_AFTER_FIRE"))
            raise(SIGKILL);   /* tests only: the window serve_hook_recover covers */
        int recorded = -1;
        if (run_delivery(c, h, delivery, rec, &recorded) > 0 && recorded >= 0)
            wait_recorded(recorded);
        else if (recorded >= 0)
            close(recorded);
        reply(fd, 202, "Accepted", json);
        if (!c->quiet)
            fprintf(stderr, "rhizos: flow serve: %s %s called: run %s\n", h->flow, h->name, id);
    }
    free(text);
    cJSON_Delete(rec);
}

/* Check one call against hook h; the body follows the head in buf. */
static void handle(cli *c, int fd, const shook *h, const char *data, char *buf, size_t got,
                   size_t head_len)
{
    char cl[32], ts[32], sig[128], dl[80], dbuf[80];
    buf[head_len - 2] = '\0';   /* the head alone, for header() */
    const char *lens = header(buf, "Content-Length", cl, sizeof cl);
    char *end = NULL;
    unsigned long long want = lens ? strtoull(lens, &end, 10) : 0;
    if (!lens) {
        refuse(fd, 411, "Length Required", "no Content-Length");
        return;
    }
    if (!end || end == lens || *end || *lens < '0' || *lens > '9') {
        refuse(fd, 400, "Bad Request", "Content-Length is not a number");
        return;
    }
    if (want > h->max_body) {
        refuse(fd, 413, "Payload Too Large", "the body is over the trigger's max_body_bytes");
        return;
    }
    char *body = malloc((size_t)want + 1);
    size_t have = got - head_len < want ? got - head_len : (size_t)want;
    if (!body)
        return;
    memcpy(body, buf + head_len, have);
    while (have < want) {
        ssize_t r = read_timed(fd, body + have, (size_t)want - have);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    const char *t = header(buf, "X-Rhizos-Timestamp", ts, sizeof ts);
    const char *s = header(buf, "X-Rhizos-Signature", sig, sizeof sig);
    const char *d = header(buf, "X-Rhizos-Delivery", dl, sizeof dl);
    /* Unix seconds: digits only, a dozen at most (no sign, no overflow). */
    bool t_ok = t && *t && strlen(t) <= 12 && strspn(t, "0123456789") == strlen(t);
    long long when = t_ok ? strtoll(t, NULL, 10) : 0;
    if (have < want)
        refuse(fd, 400, "Bad Request", "the body ended early");
    else if (!t_ok || !sig_ok(h, t, s, body, have))
        refuse(fd, 401, "Unauthorized", "missing or wrong X-Rhizos-Signature");
    else if (llabs(when - serve_now()) > WINDOW_S)
        refuse(fd, 401, "Unauthorized", "X-Rhizos-Timestamp is outside the 300 s window");
    else if (d && !delivery_ok(d))
        refuse(fd, 400, "Bad Request", "X-Rhizos-Delivery is 1-64 of A-Za-z0-9_-");
    else {
        /* Without a delivery id the signature names the call: the same
         * signed call again is the same delivery. */
        snprintf(dbuf, sizeof dbuf, "%s", d ? d : s + 7);
        dbuf[d ? sizeof dbuf - 1 : 32] = '\0';
        /* The hex is read in either case: one call, one spelling. */
        for (char *x = dbuf; !d && *x; x++)
            *x = (char)tolower((unsigned char)*x);
        take(c, fd, h, data, dbuf, body, have);
    }
    free(body);
}

/* Close after the reply has gone: a refused call's unread body would make
 * the kernel answer the close with a reset, which can reach the caller
 * before the reply does. So: end our side, read what the caller still
 * sends (at most 1 MiB and 2 s), then close. */
static void linger_close(int fd)
{
    char sink[4096];
    size_t drained = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct timeval tv = { 1, 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    shutdown(fd, SHUT_WR);
    for (ssize_t r; drained < (1u << 20) && clock_gettime(CLOCK_MONOTONIC, &t) == 0 &&
                    t.tv_sec - t0.tv_sec < 2 &&   /* a trickling caller gets no more */
                    (r = read(fd, sink, sizeof sink)) > 0;)
        drained += (size_t)r;
    close(fd);
}

void serve_hook_take(cli *c, int lfd, const shook *h, size_t n, const char *data)
{
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        return;
    struct timeval tv = { 2, 0 };   /* a slow caller gets no more */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    clock_gettime(CLOCK_MONOTONIC, &call_deadline);
    call_deadline.tv_sec += REQUEST_S;
    static char buf[HEAD_MAX];
    size_t head_len = 0;
    buf[0] = '\0';
    ssize_t got = read_head(fd, buf, sizeof buf, &head_len);
    const shook *hk = got > 0 ? route(buf, h, n) : NULL;
    if (got <= 0 && head_len == 0 && buf[0] == '\0')
        ;   /* it closed without a word (a probe): nothing to answer */
    else if (got <= 0)
        refuse(fd, 400, "Bad Request", "no request head (16 KiB at most)");
    else if (!hk)
        refuse(fd, 404, "Not Found", "no webhook there: POST /hooks/FLOW/NAME");
    else
        handle(c, fd, hk, data, buf, (size_t)got, head_len);
    linger_close(fd);
}

static cJSON *read_json(const char *path)
{
    FILE *f = fopen(path, "r");
    char *text = NULL;
    long n = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && n < (8l << 20) && fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)n + 1)))
        text[fread(text, 1, (size_t)n, f)] = '\0';
    if (f)
        fclose(f);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    return doc;
}

/* Records older than this are removed (tests shorten it). */
static double keep_s(void)
{
    const char *t = getenv("RHIZOS_TEST_HOOK_KEEP_S");
    return t && *t ? strtod(t, NULL) : KEEP_S;
}

/* Each record of a served hook: run it when `c` is given and its run is
 * missing (a crash took it); remove it when its run is there and it is
 * past keep_s(). */
static void scan(cli *c, const shook *h, size_t n, const char *data)
{
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/serve/hooks", data);
    if (rz_fs_mkdirs(dir, 0700) != RZ_OK)
        return;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        for (size_t i = 0; i < n; i++) {
            char prefix[220];
            snprintf(prefix, sizeof prefix, "%s.%s.", h[i].flow, h[i].name);
            size_t pl = strlen(prefix), nl = strlen(e->d_name);
            if (strncmp(e->d_name, prefix, pl) != 0 || nl < pl + 6 ||
                strcmp(e->d_name + nl - 5, ".json") != 0)
                continue;
            char delivery[80], path[4500], id[300];
            snprintf(delivery, sizeof delivery, "%.*s", (int)(nl - pl - 5), e->d_name + pl);
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            snprintf(id, sizeof id, "serve-%s-%s-%s", h[i].flow, h[i].name, delivery);
            cJSON *rec = read_json(path);
            double t = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(rec, "t"));
            bool ran = serve_run_recorded(data, id);
            if (c && rec && !ran) {
                if (!c->quiet)
                    fprintf(stderr, "rhizos: flow serve: %s %s: delivery %s was taken but "
                            "never ran (a crash): running it now\n", h[i].flow, h[i].name,
                            delivery);
                (void)run_delivery(c, &h[i], delivery, rec, NULL);
            } else if (ran && t + keep_s() < (double)serve_now()) {
                unlink(path);   /* past the window: its id cannot come again */
            }
            cJSON_Delete(rec);
        }
    }
    if (d)
        closedir(d);
}

void serve_hook_recover(cli *c, const shook *h, size_t n, const char *data)
{
    scan(c, h, n, data);
}

void serve_hook_expire(const shook *h, size_t n, const char *data)
{
    if (n)
        scan(NULL, h, n, data);
}

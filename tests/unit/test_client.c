/* The orchestrator client: JSON<->CBOR round trips and hostile CBOR, and
 * rz_client_* against an in-test HTTP server (a thread on a loopback port
 * answering canned HTTP/1.1 replies): success, empty, error mapping,
 * malformed and oversized replies, CBOR, server-sent events (split at every
 * byte), deploy diagnostics, and a closed port. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/client_internal.h"
#include "rhizos/client.h"

/* ------------------------------------------------------------------ */
/* wire                                                                */

static char *round_trip(const char *json)
{
    unsigned char *cbor = NULL;
    size_t n = 0;
    assert_int_equal(rz_wire_encode(json, strlen(json), &cbor, &n), RZ_OK);
    char *back = NULL;
    assert_int_equal(rz_wire_decode(cbor, n, &back), RZ_OK);
    rz_free(cbor);
    return back;
}

static void expect_round_trip(const char *json, const char *want)
{
    char *back = round_trip(json);
    assert_string_equal(back, want);
    rz_free(back);
}

static void test_wire_round_trips(void **state)
{
    expect_round_trip("{}", "{}");
    expect_round_trip("[]", "[]");
    expect_round_trip("{\"a\":[],\"b\":{},\"c\":[[],{}]}", "{\"a\":[],\"b\":{},\"c\":[[],{}]}");
    expect_round_trip("{\"job\": 7, \"outputs\": {\"text\": \"h\\u00e9llo \\ud83d\\ude00\", \"n\": [1, 2.5, -3]}}",
                      "{\"job\":7,\"outputs\":{\"text\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\",\"n\":[1,2.5,-3]}}");
    expect_round_trip("[true,false,null,\"\"]", "[true,false,null,\"\"]");
    expect_round_trip("[9007199254740992,-9007199254740992,0,-1]",
                      "[9007199254740992,-9007199254740992,0,-1]");
    expect_round_trip("[0.1,-2.75,1e300,-1e-300,123456.789]",
                      "[0.1,-2.75,1e+300,-1e-300,123456.789]");
    expect_round_trip("[-0.0]", "[-0]");
    expect_round_trip("\"a\\\"b\\\\c\\n\\t\"", "\"a\\\"b\\\\c\\n\\t\"");
    expect_round_trip("{\"a\":{\"b\":{\"c\":{\"d\":[1,[2,[3]]]}}}}",
                      "{\"a\":{\"b\":{\"c\":{\"d\":[1,[2,[3]]]}}}}");
}

static void test_wire_big_cbor_integers(void **state)
{
    /* CBOR can hold integers past 2^53; they come back exact. */
    const unsigned char umax[] = { 0x1b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    const unsigned char nmax[] = { 0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
    const unsigned char half[] = { 0xf9, 0x3c, 0x00 };             /* 1.0 */
    const unsigned char nan[] = { 0xf9, 0x7e, 0x00 };
    char *s = NULL;
    assert_int_equal(rz_wire_decode(umax, sizeof umax, &s), RZ_OK);
    assert_string_equal(s, "18446744073709551615");
    rz_free(s);
    assert_int_equal(rz_wire_decode(nmax, sizeof nmax, &s), RZ_OK);
    assert_string_equal(s, "-18446744073709551616");
    rz_free(s);
    assert_int_equal(rz_wire_decode(half, sizeof half, &s), RZ_OK);
    assert_string_equal(s, "1");
    rz_free(s);
    assert_int_equal(rz_wire_decode(nan, sizeof nan, &s), RZ_OK);
    assert_string_equal(s, "null");
    rz_free(s);
}

/* Refused, and nothing handed out; `line`: the case's, for the failure. */
static void expect_bad_at(const unsigned char *b, size_t n, int line)
{
    char *s = (char *)"untouched";
    int rc = rz_wire_decode(b, n, &s);
    if ((rc != RZ_ESYNTAX && rc != RZ_ETOOBIG) || s)
        fail_msg("the input of line %d: status %s, output %s", line,
                 rz_status_name(rc), s ? "set" : "none");
}

#define expect_bad(b, n) expect_bad_at((b), (n), __LINE__)
#define BAD(...) do { const unsigned char b_[] = { __VA_ARGS__ }; \
                      expect_bad(b_, sizeof b_); } while (0)

static void test_wire_refuses_hostile_items(void **state)
{
    (void)state;
    BAD(0x42, 'a', 'b');                            /* byte string */
    BAD(0xc1, 0x1a, 0, 0, 0, 1);                    /* tag 1 (epoch time) */
    BAD(0x9f, 0x01, 0x02, 0xff);                    /* indefinite array */
    BAD(0xbf, 0x61, 'a', 0x01, 0xff);               /* indefinite map */
    BAD(0x7f, 0x61, 'a', 0xff);                     /* indefinite text */
    BAD(0xa2, 0x61, 'a', 0x01, 0x61, 'a', 0x02);    /* duplicate key */
    BAD(0x63, 'a', 0x00, 'b');                      /* NUL in text */
    BAD(0xa1, 0x01, 0x02);                          /* integer key */
    BAD(0xf7);                                      /* undefined */
    BAD(0xf0);                                      /* simple value 16 */
    BAD(0x01, 0x02);                                /* trailing bytes */
    BAD(0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);  /* huge bytes */
    BAD(0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);  /* huge text */
    BAD(0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);  /* huge array */
    BAD(0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);  /* huge map */
    BAD(0x9a, 0xff, 0xff, 0xff, 0xff, 0x01);
    BAD(0xba, 0x32, 0x7d, 0x5d, 0x2c, 0x01);        /* 846M pairs declared (fuzz) */
    BAD(0x9a, 0x10, 0x00, 0x00, 0x00, 0x01, 0x02);  /* 268M entries, 2 present */
    expect_bad(NULL, 0);                            /* empty input */
    BAD(0x62, 0xc3, 0x28);                          /* text that is not UTF-8 */
    BAD(0x63, 0xed, 0xa0, 0x80);                    /* a UTF-16 surrogate */
    BAD(0x62, 0xc0, 0x80);                          /* overlong NUL */
    BAD(0xa1, 0x61, 0xff, 0x01);                    /* key not UTF-8 */
}

static void test_wire_refuses_deep_nesting(void **state)
{
    (void)state;
    unsigned char deep[101];
    memset(deep, 0x81, 100);                        /* [[[[...1...]]]] */
    deep[100] = 0x01;
    expect_bad(deep, sizeof deep);
}

static void test_wire_refuses_every_truncation(void **state)
{
    (void)state;
    unsigned char *cbor = NULL;
    size_t n = 0;
    const char *doc = "{\"a\":[1,2.5,\"xyz\",{\"b\":null}],\"c\":18446744073709}";
    assert_int_equal(rz_wire_encode(doc, strlen(doc), &cbor, &n), RZ_OK);
    for (size_t k = 0; k < n; k++)
        expect_bad(cbor, k);
    rz_free(cbor);
}

/* A wide map decodes; the same map with its last key repeating its first
 * is refused (the check spans the whole map). */
static void test_wire_finds_a_duplicate_key_across_a_wide_map(void **state)
{
    (void)state;
    enum { WIDE = 50000 };
    unsigned char *wide = malloc(5 + (size_t)WIDE * 8);
    assert_non_null(wide);
    size_t w = 0;
    wide[w++] = 0xba;
    wide[w++] = 0, wide[w++] = 0, wide[w++] = WIDE >> 8, wide[w++] = WIDE & 0xff;
    for (int i = 0; i < WIDE; i++) {
        char key[8];
        int kl = snprintf(key, sizeof key, "k%d", i);
        wide[w++] = (unsigned char)(0x60 + kl);
        memcpy(wide + w, key, (size_t)kl);
        w += (size_t)kl;
        wide[w++] = 0x01;
    }
    char *wj = NULL;
    assert_int_equal(rz_wire_decode(wide, w, &wj), RZ_OK);
    assert_non_null(strstr(wj, "\"k49999\":1"));
    rz_free(wj);
    /* The last pair, 0x66 "k49999" 0x01, becomes 0x62 "k0" 0x01. */
    memcpy(wide + w - 8, "\x62k0\x01", 4);
    char *dj = NULL;
    assert_int_equal(rz_wire_decode(wide, w - 4, &dj), RZ_ESYNTAX);
    assert_null(dj);
    free(wide);
}

/* Input over 64 MiB is refused before it is read. */
static void test_wire_refuses_input_over_64_mib(void **state)
{
    (void)state;
    size_t big = ((size_t)64 << 20) + 1;
    unsigned char *huge = calloc(1, big);
    assert_non_null(huge);
    char *s = NULL;
    assert_int_equal(rz_wire_decode(huge, big, &s), RZ_ETOOBIG);
    free(huge);
}

static void test_wire_encode_errors(void **state)
{
    unsigned char *cbor = (unsigned char *)"x";
    size_t n = 9;
    assert_int_equal(rz_wire_encode("{\"a\":", 5, &cbor, &n), RZ_ESYNTAX);
    assert_null(cbor);
    assert_int_equal(n, 0);
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = '\0';
    int rc = rz_wire_encode(deep, 200, &cbor, &n);
    assert_true(rc == RZ_ETOOBIG || rc == RZ_ESYNTAX);
    assert_null(cbor);
    assert_int_equal(rz_wire_encode(NULL, 0, &cbor, &n), RZ_EINVAL);
    /* Text after the value, and strings that are not UTF-8 (which the peer
     * could not decode), are refused (a fuzz finding). */
    assert_int_equal(rz_wire_encode("{} x", 4, &cbor, &n), RZ_ESYNTAX);
    assert_int_equal(rz_wire_encode("\"ab\":[1]", 9, &cbor, &n), RZ_ESYNTAX);
    assert_int_equal(rz_wire_encode("\"\xa7\xa7\"", 4, &cbor, &n), RZ_ESYNTAX);
    assert_int_equal(rz_wire_encode("{\"\xed\xa0\x80\":1}", 9, &cbor, &n), RZ_ESYNTAX);
    assert_null(cbor);
    assert_int_equal(rz_wire_encode("{\"a\":1,\"a\":2}", 13, &cbor, &n), RZ_ESYNTAX);
    assert_int_equal(rz_wire_encode("{\"a\0b\":1,\"a\0c\":2}", 17, &cbor, &n), RZ_ESYNTAX);
    assert_int_equal(rz_wire_encode(" [1] \n", 6, &cbor, &n), RZ_OK);
    rz_free(cbor);
}

/* ------------------------------------------------------------------ */
/* the in-test server                                                  */

typedef struct reply {
    const char *head;          /* status line and headers, CRLF CRLF included */
    const void *body;
    size_t body_len;
    size_t repeat;             /* send body this many times (0: once) */
    bool byte_at_a_time;
    bool stall;                /* after sending, wait for the client to hang up */
} reply;

#define MAX_REPLIES 8

typedef struct server {
    int fd;
    int port;
    pthread_t thread;
    reply replies[MAX_REPLIES];
    size_t n;
    /* the last request seen */
    char request[8192];
    unsigned char body[4096];
    size_t body_len;
} server;

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        c += k;
        n -= (size_t)k;
    }
}

static void read_request(server *s, int fd)
{
    size_t len = 0;
    char *end = NULL;
    while (!end && len < sizeof s->request - 1) {
        ssize_t k = recv(fd, s->request + len, sizeof s->request - 1 - len, 0);
        if (k <= 0)
            return;
        len += (size_t)k;
        s->request[len] = '\0';
        end = strstr(s->request, "\r\n\r\n");
    }
    if (!end)
        return;
    size_t have = len - (size_t)(end + 4 - s->request);
    const char *cl = strcasestr(s->request, "\r\nContent-Length:");
    size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0;
    if (want > sizeof s->body)
        want = sizeof s->body;
    memcpy(s->body, end + 4, have < want ? have : want);
    s->body_len = have < want ? have : want;
    while (s->body_len < want) {
        ssize_t k = recv(fd, s->body + s->body_len, want - s->body_len, 0);
        if (k <= 0)
            return;
        s->body_len += (size_t)k;
    }
    end[2] = '\0';      /* keep the headers only */
}

static void serve(server *s, const reply *r, int fd)
{
    read_request(s, fd);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    send_all(fd, r->head, strlen(r->head));
    for (size_t t = 0; t < (r->repeat ? r->repeat : 1); t++) {
        if (!r->byte_at_a_time) {
            send_all(fd, r->body, r->body_len);
            continue;
        }
        for (size_t i = 0; i < r->body_len; i++)
            send_all(fd, (const char *)r->body + i, 1);
    }
    if (r->stall) {
        char buf[256];
        while (recv(fd, buf, sizeof buf, 0) > 0)
            ;
    }
}

static void *server_main(void *ud)
{
    server *s = ud;
    for (size_t i = 0; i < s->n; i++) {
        struct pollfd p = { .fd = s->fd, .events = POLLIN };
        if (poll(&p, 1, 20000) <= 0)
            break;          /* the client never came: the test fails on its own */
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            break;
        serve(s, &s->replies[i], fd);
        shutdown(fd, SHUT_WR);
        close(fd);
    }
    return NULL;
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = 0 };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static server *server_start(const reply *replies, size_t n)
{
    server *s = calloc(1, sizeof *s);
    assert_non_null(s);
    assert_true(n <= MAX_REPLIES);
    memcpy(s->replies, replies, n * sizeof *replies);
    s->n = n;
    s->fd = listen_loopback(&s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
    return s;
}

static void server_stop(server *s)
{
    pthread_join(s->thread, NULL);
    close(s->fd);
    free(s);
}

static rz_client *client_for(const server *s, const char *key)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s->port);
    rz_client *c = NULL;
    assert_int_equal(rz_client_new(&c, url, key), RZ_OK);
    return c;
}

/* A reply with a JSON body (head built with the right length). */
typedef struct canned {
    char head[256];
    reply r;
} canned;

static void json_reply(canned *cr, const char *status, const char *ctype,
                       const void *body, size_t len)
{
    snprintf(cr->head, sizeof cr->head,
             "HTTP/1.1 %s\r\nContent-Type: %s\r\nConnection: close\r\n"
             "Content-Length: %zu\r\n\r\n", status, ctype, len);
    cr->r = (reply){ .head = cr->head, .body = body, .body_len = len };
}

/* One call against a server answering one canned reply. */
static int call_once(const char *status, const char *ctype, const char *body,
                     const char *method, const char *path, const char *req,
                     long *http, char **out, server **keep)
{
    canned cr;
    json_reply(&cr, status, ctype, body, strlen(body));
    server *s = server_start(&cr.r, 1);
    rz_client *c = client_for(s, "rzk_test");
    int rc = rz_client_call(c, method, path, req, 0, http, out);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    s->thread = 0;
    if (keep) {
        *keep = s;
    } else {
        close(s->fd);
        free(s);
    }
    return rc;
}

static void drop(server *s)
{
    close(s->fd);
    free(s);
}

/* ------------------------------------------------------------------ */
/* rz_client_call                                                      */

static void test_call_ok(void **state)
{
    long http = 0;
    char *out = NULL;
    server *s = NULL;
    int rc = call_once("201 Created", "application/json", "{\"id\":42,\"status\":\"queued\"}",
                       "POST", "/api/v1/jobs", "{\"module\":\"echo\"}", &http, &out, &s);
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(http, 201);
    assert_string_equal(out, "{\"id\":42,\"status\":\"queued\"}");
    assert_non_null(strstr(s->request, "POST /api/v1/jobs HTTP/1.1\r\n"));
    assert_non_null(strcasestr(s->request, "\r\nAuthorization: Bearer rzk_test\r\n"));
    assert_non_null(strcasestr(s->request, "\r\nContent-Type: application/json\r\n"));
    assert_int_equal(s->body_len, strlen("{\"module\":\"echo\"}"));
    assert_memory_equal(s->body, "{\"module\":\"echo\"}", s->body_len);
    rz_free(out);
    drop(s);
}

static void test_call_no_content(void **state)
{
    reply r = { .head = "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n" };
    server *s = server_start(&r, 1);
    rz_client *c = client_for(s, NULL);
    long http = 0;
    char *out = (char *)"x";
    assert_int_equal(rz_client_call(c, "GET", "/api/v1/nodes/1/jobs?wait=1",
                                    NULL, 0, &http, &out), RZ_OK);
    assert_int_equal(http, 204);
    assert_null(out);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    /* No key: no Authorization header at all. */
    assert_non_null(strstr(s->request, "GET /api/v1/nodes/1/jobs?wait=1 HTTP/1.1"));
    assert_null(strcasestr(s->request, "Authorization"));
    drop(s);
}

/* Bytes PUT as they are (NULs and all, no JSON check), the reply as a
 * call's: a 2xx's JSON, and an error's body with its message. */
static void test_put_bytes(void **state)
{
    (void)state;
    unsigned char part[3000];
    for (size_t i = 0; i < sizeof part; i++)
        part[i] = (unsigned char)(i * 7);
    canned cr[2];
    static const char ok[] = "{\"offset\":3000}";
    static const char conflict[] =
        "{\"error\":{\"code\":\"RZ_ESTATE\",\"message\":\"send byte 10\"},\"offset\":10}";
    json_reply(&cr[0], "200 OK", "application/json", ok, strlen(ok));
    json_reply(&cr[1], "409 Conflict", "application/json", conflict, strlen(conflict));
    reply rs[2] = { cr[0].r, cr[1].r };
    server *s = server_start(rs, 2);
    rz_client *c = client_for(s, "rzk_test");
    long http = 0;
    char *out = NULL;
    assert_int_equal(rz_client_put_bytes(c, "/api/v1/blobs/ab?offset=0", part,
                                         sizeof part, &http, &out), RZ_OK);
    assert_int_equal(http, 200);
    assert_string_equal(out, ok);
    rz_free(out);
    assert_int_equal(rz_client_put_bytes(c, "/api/v1/blobs/ab?offset=3000", "", 0,
                                         &http, &out), RZ_ESTATE);
    assert_int_equal(http, 409);
    assert_string_equal(out, conflict);
    assert_string_equal(rz_error_last()->message, "send byte 10");
    rz_free(out);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    assert_non_null(strstr(s->request, "PUT /api/v1/blobs/ab?offset=3000 HTTP/1.1\r\n"));
    assert_non_null(strcasestr(s->request, "\r\nContent-Type: application/octet-stream\r\n"));
    assert_non_null(strcasestr(s->request, "\r\nAuthorization: Bearer rzk_test\r\n"));
    assert_int_equal(s->body_len, 0);
    assert_int_equal(rz_client_put_bytes(NULL, "/x", part, 1, &http, &out), RZ_EINVAL);
    drop(s);
}

static void expect_error(const char *status, const char *code, int want)
{
    char body[256];
    snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"server says %s\"}}",
             code, code);
    long http = 0;
    char *out = NULL;
    int rc = call_once(status, "application/json", body, "GET", "/api/v1/jobs/9",
                       NULL, &http, &out, NULL);
    assert_int_equal(rc, want);
    assert_int_equal(http, atoi(status));
    char msg[128];
    snprintf(msg, sizeof msg, "server says %s", code);
    assert_string_equal(rz_error_last()->message, msg);
    assert_int_equal(rz_error_last()->code, want);
    assert_string_equal(out, body);      /* the body still comes back */
    rz_free(out);
}

static void test_call_error_mapping(void **state)
{
    expect_error("404 Not Found", "RZ_ENOENT", RZ_ENOENT);
    expect_error("402 Payment Required", "RZ_EFUNDS", RZ_EFUNDS);
    expect_error("401 Unauthorized", "RZ_EAUTH", RZ_EAUTH);
    expect_error("403 Forbidden", "RZ_EDENIED", RZ_EDENIED);
    expect_error("409 Conflict", "RZ_ESTATE", RZ_ESTATE);
    expect_error("413 Payload Too Large", "RZ_ETOOBIG", RZ_ETOOBIG);
    expect_error("400 Bad Request", "RZ_EINVAL", RZ_EINVAL);
    expect_error("500 Internal Server Error", "RZ_EDB", RZ_EDB);
    expect_error("400 Bad Request", "RZ_EPROTOCOL", RZ_EPROTOCOL);   /* last in the table */
}

static void test_call_unexpected_replies(void **state)
{
    long http = 0;
    char *out = NULL;
    /* 200 with HTML */
    assert_int_equal(call_once("200 OK", "text/html", "<html>hi</html>", "GET", "/health",
                               NULL, &http, &out, NULL), RZ_EPROTOCOL);
    assert_null(out);
    /* JSON with trailing garbage */
    assert_int_equal(call_once("200 OK", "application/json", "{\"a\":1} x", "GET", "/health",
                               NULL, &http, &out, NULL), RZ_EPROTOCOL);
    /* an error status without the API's error shape */
    assert_int_equal(call_once("502 Bad Gateway", "text/html", "<h1>bad gateway</h1>", "GET",
                               "/health", NULL, &http, &out, NULL), RZ_EPROTOCOL);
    assert_int_equal(http, 502);
    assert_null(out);
    assert_int_equal(call_once("404 Not Found", "application/json",
                               "{\"error\":{\"code\":\"RZ_EBOGUS\",\"message\":\"?\"}}", "GET",
                               "/x", NULL, &http, &out, NULL), RZ_EPROTOCOL);
    rz_free(out);
    assert_int_equal(call_once("404 Not Found", "application/json",
                               "{\"error\":{\"code\":\"RZ_OK\"}}", "GET",
                               "/x", NULL, &http, &out, NULL), RZ_EPROTOCOL);
    rz_free(out);
    /* a redirect is not followed */
    assert_int_equal(call_once("302 Found", "application/json", "{}", "GET", "/x",
                               NULL, &http, &out, NULL), RZ_EPROTOCOL);
    assert_null(out);
    /* not HTTP at all */
    reply r = { .head = "SSH-2.0-OpenSSH\r\n" };
    server *s = server_start(&r, 1);
    rz_client *c = client_for(s, "k");
    int rc = rz_client_call(c, "GET", "/health", NULL, 0, NULL, &out);
    assert_true(rc == RZ_EPROTOCOL || rc == RZ_ECONNECT);
    assert_null(out);
    rz_client_free(c);
    server_stop(s);
}

static void test_call_closed_port(void **state)
{
    int port;
    int fd = listen_loopback(&port);
    close(fd);          /* nothing listens there now */
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    rz_client *c = NULL;
    assert_int_equal(rz_client_new(&c, url, "rzk_secret_value"), RZ_OK);
    char *out = (char *)"x";
    long http = 7;
    assert_int_equal(rz_client_call(c, "GET", "/api/v1/stats", NULL, 0, &http, &out),
                     RZ_ECONNECT);
    assert_null(out);
    assert_int_equal(http, 0);
    assert_non_null(strstr(rz_error_last()->message, url));
    assert_null(strstr(rz_error_last()->message, "rzk_secret_value"));
    rz_client_free(c);
}

static void test_call_timeout(void **state)
{
    /* The server accepts, reads and says nothing: no reply within the limit. */
    reply r = { .head = "", .stall = true };
    server *s = server_start(&r, 1);
    rz_client *c = client_for(s, "k");
    assert_int_equal(rz_client_set_timeout(c, 300), RZ_OK);
    assert_int_equal(rz_client_call(c, "GET", "/slow", NULL, 0, NULL, NULL), RZ_ECONNECT);
    rz_client_free(c);
    server_stop(s);
}

static void test_call_too_big(void **state)
{
    static char chunk[1 << 16];
    memset(chunk, ' ', sizeof chunk);
    char head[256];
    size_t total = ((size_t)64 << 20) + sizeof chunk;
    snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
             "Connection: close\r\nContent-Length: %zu\r\n\r\n", total);
    reply r = { .head = head, .body = chunk, .body_len = sizeof chunk,
                .repeat = total / sizeof chunk };
    server *s = server_start(&r, 1);
    rz_client *c = client_for(s, "k");
    char *out = (char *)"x";
    assert_int_equal(rz_client_call(c, "GET", "/big", NULL, 0, NULL, &out), RZ_ETOOBIG);
    assert_null(out);
    rz_client_free(c);
    server_stop(s);
}

static void test_call_cbor(void **state)
{
    const char *req = "{\"load\":0.5,\"running\":[3,4]}";
    const char *rep = "{\"stop\":[{\"job\":3,\"attempt\":2}]}";
    unsigned char *rep_cbor = NULL, *req_cbor = NULL;
    size_t rep_n = 0, req_n = 0;
    assert_int_equal(rz_wire_encode(rep, strlen(rep), &rep_cbor, &rep_n), RZ_OK);
    assert_int_equal(rz_wire_encode(req, strlen(req), &req_cbor, &req_n), RZ_OK);
    canned ok, err;
    json_reply(&ok, "200 OK", "application/cbor", rep_cbor, rep_n);
    const char *e = "{\"error\":{\"code\":\"RZ_ESTATE\",\"message\":\"not yours\"}}";
    unsigned char *e_cbor = NULL;
    size_t e_n = 0;
    assert_int_equal(rz_wire_encode(e, strlen(e), &e_cbor, &e_n), RZ_OK);
    json_reply(&err, "409 Conflict", "application/cbor", e_cbor, e_n);
    reply rs[2] = { ok.r, err.r };
    server *s = server_start(rs, 2);
    rz_client *c = client_for(s, "rzn_token");
    char *out = NULL;
    long http = 0;
    assert_int_equal(rz_client_call(c, "POST", "/api/v1/nodes/1/heartbeat", req,
                                    RZ_CLIENT_CBOR, &http, &out), RZ_OK);
    assert_string_equal(out, rep);
    rz_free(out);
    assert_int_equal(rz_client_call(c, "POST", "/api/v1/nodes/1/jobs/3/result",
                                    req, RZ_CLIENT_CBOR, &http, &out), RZ_ESTATE);
    assert_int_equal(http, 409);
    assert_string_equal(rz_error_last()->message, "not yours");
    assert_string_equal(out, e);
    rz_free(out);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    /* The request went as CBOR, with the CBOR headers. */
    assert_int_equal(s->body_len, req_n);
    assert_memory_equal(s->body, req_cbor, req_n);
    assert_non_null(strcasestr(s->request, "\r\nContent-Type: application/cbor\r\n"));
    assert_non_null(strcasestr(s->request, "\r\nAccept: application/cbor\r\n"));
    drop(s);
    rz_free(rep_cbor);
    rz_free(req_cbor);
    rz_free(e_cbor);
}

static void test_call_bad_arguments(void **state)
{
    rz_client *c = (rz_client *)1;
    assert_int_equal(rz_client_new(&c, "ftp://x", NULL), RZ_EINVAL);
    assert_null(c);
    assert_int_equal(rz_client_new(&c, "127.0.0.1:8080", NULL), RZ_EINVAL);
    assert_int_equal(rz_client_new(&c, "http://x", "a\r\nX-Evil: 1"), RZ_EINVAL);
    assert_int_equal(rz_client_new(&c, "http://x", ""), RZ_EINVAL);
    assert_int_equal(rz_client_new(NULL, "http://x", NULL), RZ_EINVAL);
    assert_int_equal(rz_client_new(&c, "http://127.0.0.1:1", NULL), RZ_OK);
    assert_int_equal(rz_client_set_key(c, "bad\nkey"), RZ_EINVAL);
    assert_int_equal(rz_client_set_key(c, "rzn_ok"), RZ_OK);
    assert_int_equal(rz_client_set_key(c, NULL), RZ_OK);
    assert_int_equal(rz_client_set_timeout(c, -1), RZ_EINVAL);
    char *out = (char *)"x";
    assert_int_equal(rz_client_call(c, "GET", "no-slash", NULL, 0, NULL, &out), RZ_EINVAL);
    assert_null(out);
    assert_int_equal(rz_client_call(c, "GET", "/a b", NULL, 0, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_client_call(c, "get", "/a", NULL, 0, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_client_call(c, "POST", "/a", "{not json", 0, NULL, NULL), RZ_ESYNTAX);
    assert_int_equal(rz_client_call(c, "POST", "/a", "{}", 0x80, NULL, NULL), RZ_EINVAL);
    assert_int_equal(rz_client_call(NULL, "GET", "/a", NULL, 0, NULL, NULL), RZ_EINVAL);
    rz_client_free(c);
    rz_client_free(NULL);
}

/* ------------------------------------------------------------------ */
/* server-sent events                                                  */

typedef struct seen {
    char text[4096];      /* "name=data|" per event */
    int stop_after;       /* return 99 at this event (0: never) */
    int count;
} seen;

static int on_event(void *ud, const char *event, const char *data)
{
    seen *s = ud;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%s=%s|", event, data);
    s->count++;
    return s->stop_after && s->count == s->stop_after ? 99 : 0;
}

static const char STREAM[] =
    ": hello\r\n"
    "\r\n"
    "event: status\r\n"
    "data: {\"id\":7,\r\n"
    "data:  \"status\":\"running\"}\r\n"
    "\r\n"
    "id: 3\n"
    "retry: 1000\n"
    "event:status\n"
    "data:{\"id\":7}\n"
    "\n"
    "event: lonely\r"          /* an event without data is not dispatched */
    "\r"
    "data\r"                    /* a bare field name: empty data */
    "\r"
    ":keep-alive\n\n"
    "event: end\n"
    "data: {\"id\":7,\"status\":\"succeeded\"}\n"
    "\n"
    "data: unterminated";       /* dropped: the stream ended mid-event */

static const char STREAM_EVENTS[] =
    "status={\"id\":7,\n \"status\":\"running\"}|"
    "status={\"id\":7}|"
    "message=|"
    "end={\"id\":7,\"status\":\"succeeded\"}|";

static void parse_split(const char *text, size_t n, size_t cut1, size_t cut2,
                        seen *out)
{
    rz__sse p = { .cb = on_event, .ud = out };
    rz__sse_feed(&p, text, cut1);
    rz__sse_feed(&p, text + cut1, cut2 - cut1);
    rz__sse_feed(&p, text + cut2, n - cut2);
    rz__sse_free(&p);
}

static void test_sse_every_split(void **state)
{
    size_t n = sizeof STREAM - 1;
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b += (b < a + 3 ? 1 : 7)) {
            seen s = { 0 };
            parse_split(STREAM, n, a, b, &s);
            if (strcmp(s.text, STREAM_EVENTS) != 0)
                fail_msg("split at %zu,%zu: %s", a, b, s.text);
        }
    }
    /* Byte by byte. */
    seen s = { 0 };
    rz__sse p = { .cb = on_event, .ud = &s };
    for (size_t i = 0; i < n; i++)
        rz__sse_feed(&p, STREAM + i, 1);
    rz__sse_free(&p);
    assert_string_equal(s.text, STREAM_EVENTS);
}

static void test_sse_stop(void **state)
{
    seen s = { .stop_after = 2 };
    rz__sse p = { .cb = on_event, .ud = &s };
    rz__sse_feed(&p, STREAM, sizeof STREAM - 1);
    rz__sse_free(&p);
    assert_int_equal(p.cb_rc, 99);
    assert_int_equal(s.count, 2);
}

static void test_events_over_http(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";
    reply r = { .head = head, .body = STREAM, .body_len = sizeof STREAM - 1,
                .byte_at_a_time = true };
    canned missing;
    const char *e = "{\"error\":{\"code\":\"RZ_ENOENT\",\"message\":\"no deployment 8\"}}";
    json_reply(&missing, "404 Not Found", "application/json", e, strlen(e));
    canned plain;
    json_reply(&plain, "200 OK", "application/json", "{}", 2);
    reply stop = r;
    stop.byte_at_a_time = false;
    reply rs[] = { r, missing.r, plain.r, stop };
    server *s = server_start(rs, 4);
    rz_client *c = client_for(s, "rzk_k");
    seen got = { 0 };
    assert_int_equal(rz_client_events(c, "/api/v1/flows/7/events", 5000, on_event, &got),
                     RZ_OK);
    assert_string_equal(got.text, STREAM_EVENTS);
    assert_int_equal(rz_client_events(c, "/api/v1/flows/8/events", 0, on_event, &got),
                     RZ_ENOENT);
    assert_string_equal(rz_error_last()->message, "no deployment 8");
    assert_int_equal(rz_client_events(c, "/api/v1/flows/9/events", 0, on_event, &got),
                     RZ_EPROTOCOL);
    seen two = { .stop_after = 1 };
    assert_int_equal(rz_client_events(c, "/api/v1/flows/7/events", 0, on_event, &two), 99);
    assert_int_equal(two.count, 1);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    assert_non_null(strcasestr(s->request, "\r\nAccept: text/event-stream\r\n"));
    drop(s);
}

static void test_events_idle(void **state)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               "Connection: close\r\n\r\n";
    static const char first[] = "event: status\ndata: {}\n\n";
    reply r = { .head = head, .body = first, .body_len = sizeof first - 1, .stall = true };
    server *s = server_start(&r, 1);
    rz_client *c = client_for(s, "k");
    seen got = { 0 };
    assert_int_equal(rz_client_events(c, "/api/v1/flows/1/events", 200, on_event, &got),
                     RZ_ETIMEOUT);
    assert_string_equal(got.text, "status={}|");
    rz_client_free(c);
    server_stop(s);
}

/* ------------------------------------------------------------------ */
/* flows                                                               */

static void test_deploy(void **state)
{
    canned ok, bad, status, conflict;
    const char *ok_body = "{\"id\":12,\"status\":\"running\",\"held_micros\":30}";
    json_reply(&ok, "201 Created", "application/json", ok_body, strlen(ok_body));
    const char *bad_body =
        "{\"error\":{\"code\":\"RZ_EINVALID\",\"message\":\"the flow is invalid\"},"
        "\"diagnostics\":[{\"file\":\"flow.yaml\",\"line\":4,\"column\":9,"
        "\"code\":\"RZ_EUNKNOWN\",\"message\":\"unknown step 'x'\"},"
        "{\"file\":\"flow.yaml\",\"line\":7,\"column\":3,\"code\":\"RZ_EMODULE\","
        "\"severity\":\"error\",\"message\":\"no module 'nope'\"},"
        "{\"file\":\"flow.yaml\",\"line\":1,\"column\":1,\"code\":\"RZ_ECREDENTIAL\","
        "\"severity\":\"warning\",\"message\":\"unused credential\"}]}";
    json_reply(&bad, "422 Unprocessable Entity", "application/json", bad_body, strlen(bad_body));
    const char *st_body = "{\"id\":12,\"flow\":\"wc\",\"status\":\"running\",\"steps\":{},"
                          "\"outputs\":{},\"held_micros\":30,\"charged_micros\":0}";
    json_reply(&status, "200 OK", "application/json", st_body, strlen(st_body));
    const char *cf_body = "{\"error\":{\"code\":\"RZ_ESTATE\",\"message\":\"finished\"}}";
    json_reply(&conflict, "409 Conflict", "application/json", cf_body, strlen(cf_body));
    reply rs[] = { ok.r, bad.r, status.r, conflict.r };
    server *s = server_start(rs, 4);
    rz_client *c = client_for(s, "rzk_k");

    const char *flow = "name: wc\nsteps: []\n";
    uint64_t id = 0;
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), "{\"text\":\"a b\"}",
                                      "{\"openai\":\"c2VhbGVk\"}", &id, NULL), RZ_OK);
    assert_int_equal(id, 12);

    rz_diags *d = NULL;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), NULL, NULL, &id, d), RZ_EINVALID);
    assert_int_equal(id, 0);
    assert_int_equal(rz_diags_count(d), 3);
    assert_int_equal(rz_diags_error_count(d), 2);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_string_equal(x->file, "flow.yaml");
    assert_int_equal(x->line, 4);
    assert_int_equal(x->column, 9);
    assert_int_equal(x->code, RZ_EUNKNOWN);
    assert_string_equal(x->message, "unknown step 'x'");
    assert_int_equal(rz_diags_get(d, 2)->severity, RZ_SEV_WARNING);
    assert_non_null(strstr(rz_error_last()->message, "2 errors"));
    rz_diags_free(d);

    char *json = NULL;
    assert_int_equal(rz_client_flow_status(c, 12, &json), RZ_OK);
    assert_string_equal(json, st_body);
    rz_free(json);
    assert_int_equal(rz_client_flow_cancel(c, 12), RZ_ESTATE);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    assert_non_null(strstr(s->request, "DELETE /api/v1/flows/12 HTTP/1.1"));
    drop(s);

    /* Bad arguments change nothing and send nothing. */
    assert_int_equal(rz_client_new(&c, "http://127.0.0.1:1", NULL), RZ_OK);
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), "[1]", NULL, &id, NULL),
                     RZ_ESYNTAX);
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), NULL, "\"x\"", &id, NULL),
                     RZ_ESYNTAX);
    assert_int_equal(rz_client_deploy(c, "a\0b", 3, NULL, NULL, &id, NULL), RZ_ESYNTAX);
    assert_int_equal(rz_client_flow_status(c, 1, NULL), RZ_EINVAL);
    rz_client_free(c);
}

static void test_deploy_body(void **state)
{
    /* The server sees {"flow": text, "inputs": {...}, "credentials": {...}}. */
    canned ok;
    const char *ok_body = "{\"id\":1,\"status\":\"running\",\"held_micros\":0}";
    json_reply(&ok, "201 Created", "application/json", ok_body, strlen(ok_body));
    server *s = server_start(&ok.r, 1);
    rz_client *c = client_for(s, "rzk_k");
    const char *flow = "name: \"q\\\"uote\"\n";
    uint64_t id = 0;
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), "{\"n\":3}", NULL, &id, NULL),
                     RZ_OK);
    rz_client_free(c);
    pthread_join(s->thread, NULL);
    const char *want = "{\"flow\":\"name: \\\"q\\\\\\\"uote\\\"\\n\",\"inputs\":{\"n\":3}}";
    assert_int_equal(s->body_len, strlen(want));
    assert_memory_equal(s->body, want, s->body_len);
    drop(s);

    /* A reply without an id is a protocol error. */
    canned noid;
    json_reply(&noid, "201 Created", "application/json", "{\"id\":\"7\"}", 10);
    s = server_start(&noid.r, 1);
    c = client_for(s, "rzk_k");
    assert_int_equal(rz_client_deploy(c, flow, strlen(flow), NULL, NULL, &id, NULL),
                     RZ_EPROTOCOL);
    rz_client_free(c);
    server_stop(s);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wire_round_trips),
        cmocka_unit_test(test_wire_big_cbor_integers),
        cmocka_unit_test(test_wire_refuses_hostile_items),
        cmocka_unit_test(test_wire_refuses_deep_nesting),
        cmocka_unit_test(test_wire_refuses_every_truncation),
        cmocka_unit_test(test_wire_finds_a_duplicate_key_across_a_wide_map),
        cmocka_unit_test(test_wire_refuses_input_over_64_mib),
        cmocka_unit_test(test_wire_encode_errors),
        cmocka_unit_test(test_call_ok),
        cmocka_unit_test(test_call_no_content),
        cmocka_unit_test(test_put_bytes),
        cmocka_unit_test(test_call_error_mapping),
        cmocka_unit_test(test_call_unexpected_replies),
        cmocka_unit_test(test_call_closed_port),
        cmocka_unit_test(test_call_timeout),
        cmocka_unit_test(test_call_too_big),
        cmocka_unit_test(test_call_cbor),
        cmocka_unit_test(test_call_bad_arguments),
        cmocka_unit_test(test_sse_every_split),
        cmocka_unit_test(test_sse_stop),
        cmocka_unit_test(test_events_over_http),
        cmocka_unit_test(test_events_idle),
        cmocka_unit_test(test_deploy),
        cmocka_unit_test(test_deploy_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

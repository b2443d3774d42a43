/* A service's readiness check (lib/exec/ready.h): parsing, and tries
 * against a listener on this machine's loopback. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exec/ready.h"

static void test_parse(void **state)
{
    (void)state;
    rz__ready_target t;
    char why[200];
    assert_int_equal(rz__ready_parse("tcp:8080", &t, why, sizeof why), RZ_OK);
    assert_false(t.http);
    assert_int_equal(t.port, 8080);
    assert_string_equal(t.host, "127.0.0.1");
    assert_int_equal(rz__ready_parse("http://localhost:9/health?x=1", &t, why,
                                     sizeof why), RZ_OK);
    assert_true(t.http);
    assert_int_equal(t.port, 9);
    assert_string_equal(t.path, "/health?x=1");
    assert_int_equal(rz__ready_parse("http://10.0.0.2", &t, why, sizeof why), RZ_OK);
    assert_int_equal(t.port, 80);
    assert_string_equal(t.path, "/");
    static const char *const bad[][2] = {
        {"tcp:0", "1-65535"}, {"tcp:65536", "1-65535"}, {"tcp:8x", "1-65535"},
        {"http://example.com/", "IPv4"}, {"http://127.0.0.1:/", "port"},
        {"http://127.0.0.1/a b", "printable"}, {"https://127.0.0.1/", "tcp:PORT"},
        {"udp:53", "tcp:PORT"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(rz__ready_parse(bad[i][0], &t, why, sizeof why), RZ_EINVALID);
        assert_non_null(strstr(why, bad[i][1]));
    }
}

static int listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof sa;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &n), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A listener on the loopback (its fd) and *t naming it: "tcp:PORT", or
 * with `http` "http://127.0.0.1:PORT/health". */
static int listen_target(bool http, rz__ready_target *t)
{
    uint16_t port;
    int fd = listener(&port);
    char spec[64], why[200];
    snprintf(spec, sizeof spec, http ? "http://127.0.0.1:%u/health" : "tcp:%u", port);
    assert_int_equal(rz__ready_parse(spec, t, why, sizeof why), RZ_OK);
    return fd;
}

typedef struct server { int fd; const char *answer; } server;

/* Answers one request, after reading its head. */
static void *serve_one(void *arg)
{
    server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    char buf[1024];
    (void)!recv(c, buf, sizeof buf, 0);
    (void)!send(c, s->answer, strlen(s->answer), MSG_NOSIGNAL);
    close(c);
    return NULL;
}

static void test_tcp(void **state)
{
    (void)state;
    char why[200];
    rz__ready_target t;
    int fd = listen_target(false, &t);
    assert_int_equal(rz__ready_try(&t, 0, 500, why, sizeof why), 1);
    close(fd);   /* nothing listens now */
    assert_int_equal(rz__ready_try(&t, 0, 500, why, sizeof why), 0);
    assert_non_null(strstr(why, "refused"));
}

static int http_try(const char *answer, char *why, size_t why_len)
{
    rz__ready_target t;
    server s = { listen_target(true, &t), answer };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &s), 0);
    int r = rz__ready_try(&t, 0, 2000, why, why_len);
    pthread_join(th, NULL);
    close(s.fd);
    return r;
}

static void test_http(void **state)
{
    (void)state;
    char why[200];
    assert_int_equal(http_try("HTTP/1.1 200 OK\r\n\r\n", why, sizeof why), 1);
    assert_int_equal(http_try("HTTP/1.0 302 Found\r\n\r\n", why, sizeof why), 1);
    assert_int_equal(http_try("HTTP/1.1 503 Busy\r\n\r\n", why, sizeof why), 0);
    assert_string_equal(why, "GET /health: status 503");
    assert_int_equal(http_try("SSH-2.0-x\r\n", why, sizeof why), 0);
    assert_string_equal(why, "GET /health: no HTTP answer");
    assert_int_equal(http_try("", why, sizeof why), 0);
}

/* A try is stepped, never waited on: with a server that has accepted but
 * not answered, a step says "under way" (2) before the try's deadline, and
 * the answer, once sent, passes it. */
static void test_probe_does_not_block(void **state)
{
    (void)state;
    char why[200];
    rz__ready_target t;
    int lfd = listen_target(true, &t);
    rz__ready_probe p;
    assert_int_equal(rz__ready_probe_start(&p, &t, 0, 60000, why, sizeof why), 0);
    int r, c = -1;
    while ((r = rz__ready_probe_step(&p, &t, why, sizeof why)) == 2 && c < 0) {
        c = accept(lfd, NULL, NULL);   /* listener is blocking: the connect is made */
    }
    assert_int_equal(r, 2);
    assert_true(c >= 0);
    char buf[1024];
    assert_true(recv(c, buf, sizeof buf, 0) > 0);       /* the GET was sent */
    assert_int_equal(rz__ready_probe_step(&p, &t, why, sizeof why), 2);
    const char *ok = "HTTP/1.1 204 No Content\r\n\r\n";
    assert_int_equal(send(c, ok, strlen(ok), MSG_NOSIGNAL), (ssize_t)strlen(ok));
    struct pollfd pf = { p.fd, POLLIN, 0 };
    assert_int_equal(poll(&pf, 1, 5000), 1);
    assert_int_equal(rz__ready_probe_step(&p, &t, why, sizeof why), 1);
    rz__ready_probe_end(&p);
    rz__ready_probe_end(&p);   /* twice is fine */
    close(c);
    close(lfd);
}

static void test_no_such_namespace(void **state)
{
    (void)state;
    rz__ready_target t;
    char why[200];
    assert_int_equal(rz__ready_parse("tcp:1", &t, why, sizeof why), RZ_OK);
    /* pid 0x7ffffffe does not exist: the check cannot be tried at all. */
    assert_int_equal(rz__ready_try(&t, 0x7ffffffe, 100, why, sizeof why), -1);
    assert_non_null(strstr(why, "the step's network"));
}

/* A pid in our own network (bubblewrap's outer process, a reused pid):
 * refused, never checked from here, even with a listener that would pass. */
static void test_own_namespace_refused(void **state)
{
    (void)state;
    char why[200];
    rz__ready_target t;
    int fd = listen_target(false, &t);
    assert_int_equal(rz__ready_try(&t, 0, 500, why, sizeof why), 1);   /* it listens */
    assert_int_equal(rz__ready_try(&t, (int)getpid(), 500, why, sizeof why), -1);
    assert_non_null(strstr(why, "could not be told from this machine's"));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_probe_does_not_block),
        cmocka_unit_test(test_http),
        cmocka_unit_test(test_no_such_namespace),
        cmocka_unit_test(test_own_namespace_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

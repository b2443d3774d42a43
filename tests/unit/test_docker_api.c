/* Tests of the Docker Engine API client (lib/exec/docker_api.c) against a
 * real engine: RHIZOS_TEST_DOCKER_HOST names its socket (scripts/containers-up
 * starts one and writes it, with the demo image and the loopback registry,
 * to DIR/env). Without it the engine tests are skipped (exit 77) after the
 * offline ones ran. */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <pthread.h>
#include <sodium.h>

#include "common/internal.h"
#include "exec/docker_api.h"
#include "exec/exec_impl.h"
#include "rhizos/exec.h"
#include "rhizos/module.h"

static const char *host, *image, *remote, *digest;
static char label[64];       /* io.rhizos.test=<this run>, on every container */
static char scratch[256];

static rz__docker *open_engine(void)
{
    rz__docker *d = NULL;
    int rc = rz__docker_open(&d, host);
    if (rc != RZ_OK)
        fail_msg("open %s: %s", host, rz_error_last()->message);
    return d;
}

static int setup_scratch(void **state)
{
    (void)state;
    snprintf(scratch, sizeof scratch, "/tmp/rz-test-docker-XXXXXX");
    if (!mkdtemp(scratch))
        return -1;
    char p[300];
    snprintf(p, sizeof p, "%s/in", scratch);
    mkdir(p, 0777);
    snprintf(p, sizeof p, "%s/out", scratch);
    mkdir(p, 0777);
    /* The container runs as nobody. */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R 0777 '%s'", scratch);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown_scratch(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    return system(cmd) == 0 ? 0 : -1;
}

/* A container of the demo image with the limits an attempt gets. */
static rz__docker_spec base_spec(const char *const *cmd)
{
    static char bind[300];
    static const char *binds[2];
    static const char *labels[2];
    snprintf(bind, sizeof bind, "%s:/rz", scratch);
    binds[0] = bind;
    labels[0] = label;
    return (rz__docker_spec){
        .image = image, .cmd = cmd, .labels = labels, .binds = binds,
        .user = "65534:65534", .memory = 64 << 20, .nano_cpus = 500000000,
        .pids_limit = 64, .open_stdin = true,
    };
}

typedef struct run_result {
    int exit_code;
    bool oom;
    char *out, *err;
} run_result;

/* Create, attach with `in`, start, pump to the end, inspect, remove. */
static run_result run(rz__docker *d, const rz__docker_spec *spec, const char *in,
                      int limit_s)
{
    char *id = NULL;
    int rc = rz__docker_create(d, spec, &id);
    if (rc != RZ_OK)
        fail_msg("create: %s", rz_error_last()->message);
    rz__docker_stream *s = NULL;
    rc = rz__docker_attach(&s, d, id, in, in ? strlen(in) : 0, 1 << 20);
    if (rc != RZ_OK)
        fail_msg("attach: %s", rz_error_last()->message);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    rc = rz__docker_stream_run(s, rz__now_ms() + (uint64_t)limit_s * 1000);
    if (rc != RZ_OK)
        fail_msg("stream: %s", rz_error_last()->message);
    int code;
    assert_int_equal(rz__docker_wait(d, id, 10000, &code), RZ_OK);
    rz__docker_state st;
    assert_int_equal(rz__docker_inspect(d, id, &st), RZ_OK);
    assert_false(st.running);
    assert_int_equal(st.exit_code, code);
    run_result r = {code, st.oom_killed,
                    rz__strdup(rz__docker_stream_stdout(s, NULL, NULL)),
                    rz__strdup(rz__docker_stream_stderr(s, NULL, NULL))};
    /* Podman 4.3's attach now and then ends before the last of the output;
     * the engine's log has it all (the adapter does the same). */
    rz__docker_demux m;
    if (rz__docker_logs(d, id, 1 << 20, &m) == RZ_OK) {
        if (m.out.len > (r.out ? strlen(r.out) : 0)) {
            free(r.out);
            r.out = rz__strndup(m.out.data, m.out.len);
        }
        if (m.err.len > (r.err ? strlen(r.err) : 0)) {
            free(r.err);
            r.err = rz__strndup(m.err.data, m.err.len);
        }
    }
    rz__docker_demux_free(&m);
    rz__docker_stream_free(s);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    free(id);
    return r;
}

static void result_free(run_result *r)
{
    free(r->out);
    free(r->err);
}

/* ---- offline ---- */

static void test_resolve(void **state)
{
    (void)state;
    char *s = NULL;
    assert_int_equal(rz__docker_resolve(&s, "unix:///x/y.sock"), RZ_OK);
    assert_string_equal(s, "/x/y.sock");
    free(s);
    assert_int_equal(rz__docker_resolve(&s, "/a.sock"), RZ_OK);
    assert_string_equal(s, "/a.sock");
    free(s);
    setenv("DOCKER_HOST", "unix:///from/env.sock", 1);
    assert_int_equal(rz__docker_resolve(&s, NULL), RZ_OK);
    assert_string_equal(s, "/from/env.sock");
    free(s);
    assert_int_equal(rz__docker_resolve(&s, "/over.sock"), RZ_OK);
    assert_string_equal(s, "/over.sock");   /* override wins */
    free(s);
    setenv("DOCKER_HOST", "tcp://10.0.0.1:2375", 1);
    assert_int_equal(rz__docker_resolve(&s, NULL), RZ_EUNSUPPORTED);
    assert_null(s);
    assert_non_null(strstr(rz_error_last()->message, "DOCKER_HOST"));
    unsetenv("DOCKER_HOST");
    assert_int_equal(rz__docker_resolve(&s, NULL), RZ_OK);
    assert_true(strcmp(s, "/var/run/docker.sock") == 0
                || strcmp(s, "/run/podman/podman.sock") == 0);
    free(s);
}

static void test_ref_split(void **state)
{
    (void)state;
    char *n, *dg;
    assert_int_equal(rz__docker_ref_split("a/b:1", &n, &dg), RZ_OK);
    assert_string_equal(n, "a/b:1");
    assert_null(dg);
    free(n);
    const char *h = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    char ref[200];
    snprintf(ref, sizeof ref, "127.0.0.1:5000/x@%s", h);
    assert_int_equal(rz__docker_ref_split(ref, &n, &dg), RZ_OK);
    assert_string_equal(n, "127.0.0.1:5000/x");
    assert_string_equal(dg, h);
    free(n);
    free(dg);
    assert_int_equal(rz__docker_ref_split("x@sha256:12", &n, &dg), RZ_EINVALID);
    assert_null(n);
    assert_int_equal(rz__docker_ref_split("", &n, &dg), RZ_EINVALID);
}

static void test_demux(void **state)
{
    (void)state;
    const unsigned char s[] = {1, 0, 0, 0, 0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o',
                               2, 0, 0, 0, 0, 0, 0, 3, 'b', 'a', 'd',
                               1, 0, 0, 0, 0, 0, 0, 4, '!', '!', '!', '!'};
    /* Byte by byte: frames split anywhere. Cap 7 keeps "hello!!" only. */
    rz__docker_demux m;
    rz__docker_demux_init(&m, 7);
    for (size_t i = 0; i < sizeof s; i++)
        assert_int_equal(rz__docker_demux_feed(&m, s + i, 1), RZ_OK);
    assert_string_equal(m.out.data, "hello!!");
    assert_int_equal(m.out_dropped, 2);
    assert_string_equal(m.err.data, "bad");
    rz__docker_demux_free(&m);
    rz__docker_demux_init(&m, 0);
    assert_int_equal(rz__docker_demux_feed(&m, "{\"a\":1}\n", 8), RZ_EPROTOCOL);
    rz__docker_demux_free(&m);
}

/* A service's stdout (out_lines): over the cap, what is held goes and the
 * stream goes on, so later lines still arrive whole. */
static void test_demux_lines(void **state)
{
    (void)state;
    const unsigned char s[] = {1, 0, 0, 0, 0, 0, 0, 3, 'a', 'b', '\n',
                               1, 0, 0, 0, 0, 0, 0, 6, 'l', 'o', 'n', 'g', 'e', 'r',
                               1, 0, 0, 0, 0, 0, 0, 4, 'x', '\n', 'y', '\n'};
    rz__docker_demux m;
    rz__docker_demux_init(&m, 8);
    m.out_lines = true;
    assert_int_equal(rz__docker_demux_feed(&m, s, sizeof s), RZ_OK);
    /* "ab\n" went when "longer" came past the cap, and the unfinished
     * "longer" when "x\ny\n" did: the lines after arrive whole. */
    assert_int_equal(m.out.len, 4);
    assert_memory_equal(m.out.data, "x\ny\n", 4);
    assert_int_equal(m.out_dropped, 9);
    rz__docker_demux_free(&m);
}

static void test_unreachable(void **state)
{
    (void)state;
    rz__docker *d = NULL;
    assert_int_equal(rz__docker_open(&d, "/tmp/rz-no-such-engine.sock"), RZ_ECONNECT);
    assert_null(d);
    const char *msg = rz_error_last()->message;
    assert_non_null(strstr(msg, "/tmp/rz-no-such-engine.sock"));
    assert_non_null(strstr(msg, "DOCKER_HOST"));
    /* A socket file nobody listens on. */
    char path[] = "/tmp/rz-test-deaf-XXXXXX";
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    close(tfd);
    unlink(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(rz__docker_open(&d, path), RZ_ECONNECT);
    assert_non_null(strstr(rz_error_last()->message, path));
    close(fd);
    unlink(path);
}

/* ---- registry auth ---- */

static cJSON *decode_auth(const char *b64)
{
    unsigned char bin[512];
    size_t n = 0;
    assert_int_equal(sodium_base642bin(bin, sizeof bin - 1, b64, strlen(b64),
                                       NULL, &n, NULL,
                                       sodium_base64_VARIANT_URLSAFE), 0);
    bin[n] = 0;
    cJSON *j = cJSON_Parse((const char *)bin);
    assert_non_null(j);
    return j;
}

static const char *field(const cJSON *j, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, k));
}

static void test_registry_auth(void **state)
{
    (void)state;
    char *a = NULL;
    assert_int_equal(rz__docker_registry_auth(&a,
        "{\"username\": \"bob\", \"password\": \"s3cr-t/+?\", "
        "\"serveraddress\": \"127.0.0.1:5055\", \"extra\": 1}"), RZ_OK);
    /* base64url: no '+' or '/' even where the JSON would give them. */
    assert_null(strpbrk(a, "+/"));
    cJSON *j = decode_auth(a);
    assert_string_equal(field(j, "username"), "bob");
    assert_string_equal(field(j, "password"), "s3cr-t/+?");
    assert_string_equal(field(j, "serveraddress"), "127.0.0.1:5055");
    assert_null(cJSON_GetObjectItemCaseSensitive(j, "extra"));
    cJSON_Delete(j);
    rz__docker_auth_free(a);
    assert_int_equal(rz__docker_registry_auth(&a, "alice:pa:ss"), RZ_OK);
    j = decode_auth(a);
    assert_string_equal(field(j, "username"), "alice");
    assert_string_equal(field(j, "password"), "pa:ss");
    assert_null(field(j, "serveraddress"));
    cJSON_Delete(j);
    rz__docker_auth_free(a);
    /* Neither form: refused, and the value is never quoted back. */
    const char *bad[] = {"plaintoken-9f2c", ":nouser-9f2c", "user-9f2c:", "",
                         "{\"username\": \"only-9f2c\"}", "{not json-9f2c"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        a = (char *)"unchanged";
        assert_int_equal(rz__docker_registry_auth(&a, bad[i]), RZ_EINVALID);
        assert_null(a);
        assert_null(strstr(rz_error_last()->message, "9f2c"));
        assert_non_null(strstr(rz_error_last()->message, "user:password"));
    }
}

/* A fake engine on a unix socket: answers what opening a client asks,
 * then records the request of a pull, answers it with one line and ends. */
typedef struct fake_engine {
    int fd;
    char pull_request[4096];
    const char *ping_headers;   /* extra headers of its /_ping, or NULL */
    int versions, pings;        /* GET /version and /_ping served */
    int serve;                  /* connections to serve; 0: 8 */
} fake_engine;

static void fake_reply(int c, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\nContent-Type: "
                     "application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n", strlen(body));
    ssize_t w = write(c, head, (size_t)n);
    w = write(c, body, strlen(body));
    (void)w;
}

static void *fake_main(void *arg)
{
    fake_engine *f = arg;
    int most = f->serve ? f->serve : 8;
    for (int served = 0; served < most && !f->pull_request[0]; served++) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            break;
        char req[4096] = "";
        size_t len = 0;
        while (len < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
            ssize_t r = read(c, req + len, sizeof req - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            req[len] = 0;
        }
        req[len] = 0;
        if (strstr(req, "/_ping ") && f->ping_headers) {
            f->pings++;
            char head[512];
            int n = snprintf(head, sizeof head, "HTTP/1.1 200 OK\r\n%s"
                             "Content-Length: 2\r\nConnection: close\r\n"
                             "\r\nOK", f->ping_headers);
            ssize_t w = write(c, head, (size_t)n);
            (void)w;
        } else if (strstr(req, "/_ping ")) {
            f->pings++;
            fake_reply(c, "{}");
        } else if (strstr(req, "/version ")) {
            f->versions++;
            fake_reply(c, "{\"ApiVersion\": \"1.41\", \"Version\": \"fake\"}");
        }
        else if (!strstr(req, "/images/create"))
            fake_reply(c, "{}");
        else {
            snprintf(f->pull_request, sizeof f->pull_request, "%s", req);
            fake_reply(c, "{\"status\": \"Download complete\"}\n");
        }
        close(c);
    }
    return NULL;
}

static void test_registry_auth_sent(void **state)
{
    (void)state;
    char path[] = "/tmp/rz-test-fake-engine-XXXXXX";
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    close(tfd);
    unlink(path);
    fake_engine f = {.fd = socket(AF_UNIX, SOCK_STREAM, 0)};
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(f.fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f.fd, 4), 0);
    struct timeval tv = {10, 0};   /* accept gives up: a failure never hangs */
    assert_int_equal(setsockopt(f.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
    rz__docker *d = NULL;
    assert_int_equal(rz__docker_open(&d, path), RZ_OK);
    /* A bad credential changes nothing and is not quoted. */
    assert_int_equal(rz__docker_set_registry_auth(d, "nocolon-7e1"), RZ_EINVALID);
    assert_null(strstr(rz_error_last()->message, "nocolon-7e1"));
    assert_int_equal(rz__docker_set_registry_auth(d, "bob:hunter2"), RZ_OK);
    int rc = rz__docker_pull(d, "127.0.0.1:5055/private/img", NULL, NULL,
                             rz__now_ms() + 10000);
    if (rc != RZ_OK)
        print_message("pull: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
    pthread_join(th, NULL);
    close(f.fd);
    unlink(path);
    rz__docker_close(d);
    assert_non_null(strstr(f.pull_request, "POST /v1.41/images/create?"));
    char *hdr = strstr(f.pull_request, "X-Registry-Auth: ");
    assert_non_null(hdr);
    hdr += strlen("X-Registry-Auth: ");
    hdr[strcspn(hdr, "\r\n")] = 0;
    cJSON *j = decode_auth(hdr);
    assert_string_equal(field(j, "username"), "bob");
    assert_string_equal(field(j, "password"), "hunter2");
    cJSON_Delete(j);
    /* Never in the clear. */
    assert_null(strstr(f.pull_request, "hunter2"));
}

static void fake_listen(fake_engine *f, char *path)
{
    int tfd = mkstemp(path);
    assert_true(tfd >= 0);
    close(tfd);
    unlink(path);
    f->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    struct timeval tv = {10, 0};
    assert_int_equal(setsockopt(f->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
}

/* The version comes from /_ping's API-Version header, capped at ours, and
 * the engine's name from its Server header: no /version asked. */
static void test_version_from_ping(void **state)
{
    (void)state;
    static const struct { const char *hdrs, *version, *engine; } cases[] = {
        {"Api-Version: 1.40\r\nServer: Libpod/4.3.1 (linux)\r\n", "1.40",
         "Podman Engine 4.3.1"},
        {"API-Version: 1.45\r\nServer: Docker/26.1.0 (linux)\r\n", "1.41",
         "Docker Engine 26.1.0"},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        char path[] = "/tmp/rz-test-fake-engine-XXXXXX";
        fake_engine f = {.ping_headers = cases[i].hdrs, .serve = 1};
        fake_listen(&f, path);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
        rz__docker *d = NULL;
        int rc = rz__docker_open(&d, path);
        pthread_join(th, NULL);
        close(f.fd);
        unlink(path);
        if (rc != RZ_OK)
            fail_msg("open: %s", rz_error_last()->message);
        assert_string_equal(rz__docker_api_version(d), cases[i].version);
        assert_string_equal(rz__docker_engine(d), cases[i].engine);
        assert_int_equal(f.pings, 1);
        assert_int_equal(f.versions, 0);
        rz__docker_close(d);
    }
    /* No API-Version: /version after all. */
    char path[] = "/tmp/rz-test-fake-engine-XXXXXX";
    fake_engine f = {.serve = 2};
    fake_listen(&f, path);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, fake_main, &f), 0);
    rz__docker *d = NULL;
    int rc = rz__docker_open(&d, path);
    pthread_join(th, NULL);
    close(f.fd);
    unlink(path);
    assert_int_equal(rc, RZ_OK);
    assert_string_equal(rz__docker_api_version(d), "1.41");
    assert_string_equal(rz__docker_engine(d), "Docker Engine fake");
    assert_int_equal(f.pings, 1);
    assert_int_equal(f.versions, 1);
    rz__docker_close(d);
}

/* A node advertises GPU containers from what /info says, and a step's
 * devices go the way the engine takes them. */
static void test_info_gpu_mode(void **state)
{
    (void)state;
    char dir[] = "/tmp/rz-test-cdi-XXXXXX", empty[] = "/tmp/rz-test-cdi-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_non_null(mkdtemp(empty));
    char spec[64];
    snprintf(spec, sizeof spec, "%s/nvidia.yaml", dir);
    FILE *f = fopen(spec, "w");
    assert_non_null(f);
    fputs("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\n", f);
    fclose(f);
    char with_spec[256], without_spec[256];
    snprintf(with_spec, sizeof with_spec,
             "{\"NCPU\": 8, \"CDISpecDirs\": [\"%s\"]}", dir);
    snprintf(without_spec, sizeof without_spec,
             "{\"NCPU\": 8, \"CDISpecDirs\": [\"%s\", \"/nonexistent\"]}", empty);
    const struct { const char *body; rz__docker_gpu_mode mode; } cases[] = {
        /* Docker with the NVIDIA toolkit's runtime */
        {"{\"NCPU\": 8, \"Runtimes\": {\"runc\": {}, \"nvidia\": "
         "{\"path\": \"nvidia-container-runtime\"}}}", RZ__DOCKER_GPU_NVIDIA},
        /* Docker 25+ with CDI devices found */
        {"{\"Runtimes\": {\"runc\": {}}, \"CDISpecDirs\": [\"/etc/cdi\"], "
         "\"DiscoveredDevices\": [{\"Source\": \"cdi\", \"ID\": "
         "\"nvidia.com/gpu=0\"}]}", RZ__DOCKER_GPU_CDI},
        /* CDI devices, none of them a GPU */
        {"{\"DiscoveredDevices\": [{\"Source\": \"cdi\", \"ID\": "
         "\"vendor.example/fpga=0\"}]}", RZ__DOCKER_GPU_NONE},
        /* An older engine: only where specs would be */
        {with_spec, RZ__DOCKER_GPU_CDI},
        {without_spec, RZ__DOCKER_GPU_NONE},
        /* Podman here: runc and crun, nothing for GPUs */
        {"{\"NCPU\": 2, \"Runtimes\": {\"crun\": {}, \"runc\": {}}, "
         "\"CgroupDriver\": \"cgroupfs\"}", RZ__DOCKER_GPU_NONE},
        {"{}", RZ__DOCKER_GPU_NONE},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        rz__docker_info info;
        assert_int_equal(rz__docker_info_parse(cases[i].body, &info), RZ_OK);
        if (rz__docker_gpu_mode_of(&info) != cases[i].mode)
            fail_msg("case %zu: mode %d", i, (int)rz__docker_gpu_mode_of(&info));
    }
    rz__docker_info info;
    assert_int_equal(rz__docker_info_parse("[1]", &info), RZ_EPROTOCOL);
    assert_int_equal(rz__docker_info_parse("not json", &info), RZ_EPROTOCOL);
    unlink(spec);
    rmdir(dir);
    rmdir(empty);
}

static cJSON *device_requests(const rz__docker_spec *sp)
{
    char *body = rz__docker_create_body(sp);
    assert_non_null(body);
    assert_null(strstr(body, "\"all\""));
    assert_null(strstr(body, "\"Count\""));   /* never "-1: all GPUs" */
    cJSON *j = cJSON_Parse(body);
    free(body);
    assert_non_null(j);
    cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "HostConfig");
    cJSON *r = cJSON_DetachItemFromObjectCaseSensitive(h, "DeviceRequests");
    cJSON_Delete(j);
    return r;
}

/* The create request carries exactly the reserved GPUs. */
static void test_create_gpus(void **state)
{
    (void)state;
    const char *ids[] = {"1", "3", NULL};
    rz__docker_spec sp = {.image = "img", .gpu_ids = ids};
    cJSON *r = device_requests(&sp);
    char *text = cJSON_PrintUnformatted(r);
    assert_string_equal(text, "[{\"Driver\":\"nvidia\",\"DeviceIDs\":[\"1\",\"3\"],"
                              "\"Capabilities\":[[\"gpu\"]]}]");
    cJSON_free(text);
    cJSON_Delete(r);
    sp.gpu_cdi = true;
    r = device_requests(&sp);
    text = cJSON_PrintUnformatted(r);
    assert_string_equal(text, "[{\"Driver\":\"cdi\",\"DeviceIDs\":"
                              "[\"nvidia.com/gpu=1\",\"nvidia.com/gpu=3\"]}]");
    cJSON_free(text);
    cJSON_Delete(r);
    /* None reserved: no device request at all. */
    const char *none[] = {NULL};
    sp.gpu_ids = none;
    assert_null(device_requests(&sp));
    sp.gpu_ids = NULL;
    assert_null(device_requests(&sp));
}

/* Podman's own attach error is not the module's log; the module's lines,
 * even ones much like it, are kept whole. */
static void test_clean_stderr(void **state)
{
    (void)state;
    const char *in =
        "step one\n"
        "Error: read unixpacket @->/proc/self/fd/15/attach: read: connection "
        "reset by peer\n"
        "Error: write unixpacket @->/proc/self/fd/15/attach: write: broken "
        "pipe\n"
        "Error: read unixpacket is my own line\n"
        "partial";
    rz__buf b = {0};
    size_t used = rz__docker_clean_stderr(&b, in, strlen(in), false);
    assert_int_equal(used, strlen(in) - strlen("partial"));
    rz__buf_puts(&b, "");
    assert_string_equal(b.data, "step one\nError: read unixpacket is my own line\n");
    used += rz__docker_clean_stderr(&b, in + used, strlen(in) - used, true);
    assert_int_equal(used, strlen(in));
    assert_string_equal(b.data, "step one\nError: read unixpacket is my own "
                                "line\npartial");
    rz__buf_free(&b);
    /* Only the noise: nothing. */
    const char *noise = "Error: read unixpacket @->/proc/self/fd/9/attach: "
                        "read: connection reset by peer\n";
    assert_int_equal(rz__docker_clean_stderr(&b, noise, strlen(noise), true),
                     strlen(noise));
    assert_int_equal(b.len, 0);
    rz__buf_free(&b);
}

/* ---- against the engine ---- */

static void test_version(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    const char *v = rz__docker_api_version(d);
    unsigned maj = 0, min = 0;
    assert_int_equal(sscanf(v, "%u.%u", &maj, &min), 2);
    assert_true(maj == 1 && min >= 24 && min <= 41);  /* capped at ours */
    assert_true(strlen(rz__docker_engine(d)) > 2);
    rz__docker_info info;
    assert_int_equal(rz__docker_info_get(d, &info), RZ_OK);
    assert_true(info.ncpu > 0);
    rz__docker_close(d);
}

static void test_run_demo(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    static const char *const cmd[] = {"sh", "-c",
        "cat > /rz/in/got; wc -w < /rz/in/got; id -u; echo to-stderr >&2; "
        "echo x > /rz/out/o; (echo x > /etc/t) 2>/dev/null || echo ro >&2; exit 3", NULL};
    rz__docker_spec sp = base_spec(cmd);
    run_result r = run(d, &sp, "{\"inputs\":{\"text\":\"one two three\"}}", 30);
    assert_int_equal(r.exit_code, 3);
    assert_false(r.oom);
    assert_string_equal(r.out, "3\n65534\n");
    assert_string_equal(r.err, "to-stderr\nro\n");
    char p[300], *got = NULL;
    size_t len;
    snprintf(p, sizeof p, "%s/in/got", scratch);
    assert_int_equal(rz__read_file(p, 4096, &got, &len), RZ_OK);
    assert_string_equal(got, "{\"inputs\":{\"text\":\"one two three\"}}");
    free(got);
    result_free(&r);
    rz__docker_close(d);
}

static void test_empty_stdin(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    static const char *const cmd[] = {"sh", "-c", "cat; echo eof", NULL};
    rz__docker_spec sp = base_spec(cmd);
    run_result r = run(d, &sp, "", 20);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out, "eof\n");
    result_free(&r);
    /* Big stdin, echoed back while it is still being written. */
    size_t n = 3 << 20;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)('a' + i % 26);
    big[n] = '\0';
    static const char *const echo[] = {"cat", NULL};
    sp = base_spec(echo);
    char *id = NULL;
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_OK);
    rz__docker_stream *s = NULL;
    assert_int_equal(rz__docker_attach(&s, d, id, big, n, n), RZ_OK);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    assert_int_equal(rz__docker_stream_run(s, rz__now_ms() + 30000), RZ_OK);
    size_t len, dropped;
    const char *out = rz__docker_stream_stdout(s, &len, &dropped);
    assert_int_equal(len, n);
    assert_int_equal(dropped, 0);
    assert_memory_equal(out, big, n);
    rz__docker_stream_free(s);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    free(id);
    free(big);
    rz__docker_close(d);
}

/* Secrets as files: a host tmpfs folder bound read-only at /run/secrets
 * (nothing on disk, nothing in the environment): the container reads it,
 * the engine's description of the container does not hold it. A tmpfs
 * mount of the spec's kind is writable scratch for the container. */
static void test_secret_files(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    char dir[] = "/dev/shm/rz-test-secrets-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char file[200];
    snprintf(file, sizeof file, "%s/token", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("s3cr3t-planted-value", f);
    fclose(f);
    chmod(dir, 0755);
    chmod(file, 0644);
    char bind[300], sbind[300];
    snprintf(bind, sizeof bind, "%s:/rz", scratch);
    snprintf(sbind, sizeof sbind, "%s:/run/secrets:ro", dir);
    const char *binds[] = {bind, sbind, NULL};
    static const char *const tmpfs[] = {"/tmp:rw,size=1m", NULL};
    static const char *const env[] = {"RZ_CRED_TOKEN_FILE=/run/secrets/token", NULL};
    static const char *const cmd[] = {"sh", "-c",
        "tr a-z A-Z < \"$RZ_CRED_TOKEN_FILE\"; echo > /run/secrets/x 2>/dev/null "
        "&& echo writable; echo t > /tmp/t && cat /tmp/t", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.binds = binds;
    sp.tmpfs = tmpfs;
    sp.env = env;
    sp.open_stdin = false;
    char *id = NULL;
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_OK);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    int code;
    assert_int_equal(rz__docker_wait(d, id, 20000, &code), RZ_OK);
    rz__docker_demux m;
    assert_int_equal(rz__docker_logs(d, id, 0, &m), RZ_OK);
    assert_string_equal(m.out.data, "S3CR3T-PLANTED-VALUEt\n");
    rz__docker_demux_free(&m);
    char cmdline[400];
    snprintf(cmdline, sizeof cmdline,
             "curl -s --unix-socket %s http://d/containers/%s/json",
             rz__docker_socket(d), id);
    FILE *p = popen(cmdline, "r");
    rz__buf js = {0};
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, p)) > 0)
        rz__buf_append(&js, chunk, got);
    pclose(p);
    assert_non_null(js.data);
    assert_non_null(strstr(js.data, "RZ_CRED_TOKEN_FILE"));   /* it is the container */
    assert_null(strstr(js.data, "planted-value"));
    rz__buf_free(&js);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    free(id);
    unlink(file);
    rmdir(dir);
    rz__docker_close(d);
}

static void test_logs(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    static const char *const cmd[] = {"sh", "-c",
        "i=0; while [ $i -lt 2000 ]; do echo out-line-$i; echo err-$i >&2; "
        "i=$((i+1)); done", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.open_stdin = false;
    char *id = NULL;
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_OK);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    int code;
    assert_int_equal(rz__docker_wait(d, id, 30000, &code), RZ_OK);
    assert_int_equal(code, 0);
    rz__docker_demux m;
    assert_int_equal(rz__docker_logs(d, id, 1000, &m), RZ_OK);
    assert_int_equal(m.out.len, 1000);
    assert_true(m.out_dropped > 10000);
    assert_true(strncmp(m.out.data, "out-line-0\nout-line-1\n", 22) == 0);
    assert_true(strncmp(m.err.data, "err-0\nerr-1\n", 12) == 0);
    assert_null(strstr(m.out.data, "err-"));
    rz__docker_demux_free(&m);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    free(id);
    rz__docker_close(d);
}

static void test_oom(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    static const char *const cmd[] = {"awk", "BEGIN { s = \"xxxxxxxxxxxxxxxx\"; "
                                      "while (1) s = s s }", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.memory = 16 << 20;
    run_result r = run(d, &sp, NULL, 60);
    assert_int_equal(r.exit_code, 137);
    assert_true(r.oom);
    result_free(&r);
    rz__docker_close(d);
}

static void test_pids_limit(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    /* A fork bomb held by the pids limit: forks fail, the count stays low. */
    static const char *const cmd[] = {"sh", "-c",
        "for i in $(seq 1 200); do (echo s; sleep 2) & done; wait", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.pids_limit = 20;
    run_result r = run(d, &sp, NULL, 60);
    int n = 0;
    for (const char *p = r.out; (p = strchr(p, 's')); p++)
        n++;
    /* Podman 4.3 can lose some of a busy container's output (test_logs
     * covers capture), so only the bound is asserted, with the refused
     * forks that prove the limit was hit. */
    assert_true(n < 20);
    assert_non_null(strstr(r.err, "fork"));
    result_free(&r);
    rz__docker_close(d);
}

static bool host_ipv4(char *buf, size_t cap)
{
    struct ifaddrs *ifs, *i;
    bool found = false;
    if (getifaddrs(&ifs) != 0)
        return false;
    for (i = ifs; i && !found; i = i->ifa_next)
        if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)i->ifa_addr;
            if (ntohl(a->sin_addr.s_addr) >> 24 != 127) {
                inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)cap);
                found = true;
            }
        }
    freeifaddrs(ifs);
    return found;
}

static void test_network_none(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t al = sizeof a;
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof a), 0);  /* 0.0.0.0:any */
    assert_int_equal(listen(ls, 4), 0);
    getsockname(ls, (struct sockaddr *)&a, &al);
    int port = ntohs(a.sin_port);
    char ip[64] = "127.0.0.1";
    host_ipv4(ip, sizeof ip);
    char script[400];
    snprintf(script, sizeof script,
             "ip -o link 2>/dev/null | grep -cv ' lo:'; "
             "for h in 127.0.0.1 %s; do echo hi | nc -w 2 $h %d && echo reached $h; done; true",
             ip, port);
    const char *cmd[] = {"sh", "-c", script, NULL};
    rz__docker_spec sp = base_spec(cmd);
    run_result r = run(d, &sp, NULL, 30);
    assert_null(strstr(r.out, "reached"));
    struct pollfd pf = {ls, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 0), 0);   /* nobody came */
    close(ls);
    result_free(&r);
    rz__docker_close(d);
}

static void test_stop(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    /* Grace honoured: SIGTERM handled, exits on its own. */
    static const char *const polite[] = {"sh", "-c",
        "trap 'echo term; exit 3' TERM; echo up; while :; do sleep 0.1; done", NULL};
    rz__docker_spec sp = base_spec(polite);
    sp.open_stdin = false;
    char *id = NULL;
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_OK);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    usleep(500000);
    uint64_t t0 = rz__now_ms();
    assert_int_equal(rz__docker_stop(d, id, 10), RZ_OK);
    assert_true(rz__now_ms() - t0 < 8000);
    rz__docker_state st;
    assert_int_equal(rz__docker_inspect(d, id, &st), RZ_OK);
    assert_false(st.running);
    assert_int_equal(st.exit_code, 3);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    free(id);
    /* Grace over: SIGKILL; exit 137 under a memory limit is not OOM here. */
    static const char *const stubborn[] = {"sh", "-c",
        "trap '' TERM; while :; do sleep 0.1; done", NULL};
    sp = base_spec(stubborn);
    sp.open_stdin = false;
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_OK);
    assert_int_equal(rz__docker_start(d, id), RZ_OK);
    usleep(300000);
    t0 = rz__now_ms();
    assert_int_equal(rz__docker_stop(d, id, 1), RZ_OK);
    assert_true(rz__now_ms() - t0 >= 900);
    assert_int_equal(rz__docker_inspect(d, id, &st), RZ_OK);
    assert_false(st.running);
    assert_int_equal(st.exit_code, 137);
    assert_false(st.oom_killed);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);
    assert_int_equal(rz__docker_inspect(d, id, &st), RZ_ENOENT);
    assert_int_equal(rz__docker_remove(d, id), RZ_OK);  /* gone is fine */
    free(id);
    rz__docker_close(d);
}

static void test_list_remove(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    char mine[96];
    snprintf(mine, sizeof mine, "io.rhizos.node=test-%d", (int)getpid());
    const char *labels[] = {label, mine, NULL};
    static const char *const cmd[] = {"true", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.labels = labels;
    sp.open_stdin = false;
    char *a = NULL, *b = NULL;
    assert_int_equal(rz__docker_create(d, &sp, &a), RZ_OK);
    assert_int_equal(rz__docker_create(d, &sp, &b), RZ_OK);
    assert_int_equal(rz__docker_start(d, b), RZ_OK);
    char **ids;
    size_t n;
    assert_int_equal(rz__docker_list(d, mine, &ids, &n), RZ_OK);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        assert_true(strcmp(ids[i], a) == 0 || strcmp(ids[i], b) == 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rz__docker_remove(d, ids[i]), RZ_OK);
    rz__docker_ids_free(ids, n);
    assert_int_equal(rz__docker_list(d, mine, &ids, &n), RZ_OK);
    assert_int_equal(n, 0);
    rz__docker_ids_free(ids, n);
    free(a);
    free(b);
    rz__docker_close(d);
}

typedef struct progress { int calls; } progress;

static int on_progress(void *ud, const char *status, const char *id,
                       int64_t cur, int64_t tot)
{
    (void)status; (void)id; (void)cur; (void)tot;
    ((progress *)ud)->calls++;
    return 0;
}

static void test_pull_digest(void **state)
{
    (void)state;
    if (!remote || !digest)
        skip();
    rz__docker *d = open_engine();
    char ref[400];
    snprintf(ref, sizeof ref, "%s@%s", remote, digest);
    assert_int_equal(rz__docker_image_remove(d, ref), RZ_OK);
    assert_int_equal(rz__docker_image_inspect(d, ref, NULL), RZ_ENOENT);
    progress p = {0};
    int rc = rz__docker_pull(d, ref, on_progress, &p, rz__now_ms() + 60000);
    if (rc != RZ_OK)
        fail_msg("pull %s: %s", ref, rz_error_last()->message);
    assert_true(p.calls > 0);
    cJSON *img = NULL;
    assert_int_equal(rz__docker_image_inspect(d, ref, &img), RZ_OK);
    assert_true(rz__docker_image_has_digest(img, digest));
    cJSON_Delete(img);
    /* It runs. */
    static const char *const cmd[] = {"echo", "pulled", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.image = ref;
    run_result r = run(d, &sp, NULL, 30);
    assert_string_equal(r.out, "pulled\n");
    result_free(&r);
    rz__docker_close(d);
}

static void test_pull_wrong_digest(void **state)
{
    (void)state;
    if (!remote)
        skip();
    rz__docker *d = open_engine();
    char ref[400];
    snprintf(ref, sizeof ref, "%s@sha256:%s", remote,
             "1111111111111111111111111111111111111111111111111111111111111111");
    int rc = rz__docker_pull(d, ref, NULL, NULL, rz__now_ms() + 60000);
    assert_int_equal(rc, RZ_EINVALID);
    assert_non_null(strstr(rz_error_last()->message, "digest mismatch"));
    assert_non_null(strstr(rz_error_last()->message, "sha256:1111"));
    assert_int_equal(rz__docker_image_inspect(d, ref, NULL), RZ_ENOENT);
    rz__docker_close(d);
}

/* A step that needs GPUs, on an engine without GPU containers (this one):
 * it fails saying so, and no container is made. */
static void test_gpu_step_without_gpu_engine(void **state)
{
    (void)state;
    char dir[] = "/tmp/rz-test-gpu-mod-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char mdir[64], path[96];
    snprintf(mdir, sizeof mdir, "%s/gpu-step", dir);
    assert_int_equal(mkdir(mdir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", mdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "{\"id\":\"gpu-step\",\"version\":\"1.0.0\",\"name\":\"g\","
            "\"inputs\":[],\"outputs\":[],\"requirements\":{\"adapter\":"
            "\"docker\",\"gpu\":{\"count\":1}},\"exec\":{\"adapter\":\"docker\","
            "\"image\":\"%s\",\"command\":[\"true\"]}}", image);
    fclose(f);
    rz_registry *reg = NULL;
    const rz_module *m = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    assert_int_equal(rz_registry_resolve(reg, "gpu-step", "1.0.0", &m), RZ_OK);
    rz__docker *d = open_engine();
    /* (Also what links the docker adapter into this static test.) */
    rz_container_info ci;
    assert_int_equal(rz_container_probe(&ci, host), RZ_OK);
    assert_true(ci.answers);
    if (ci.gpu) {
        rz__docker_close(d);
        rz_registry_free(reg);
        skip();   /* an engine that runs GPU containers: not this check */
    }
    char **before, **after;
    size_t nb, na;
    assert_int_equal(rz__docker_list(d, "io.rhizos.run=gpu-run", &before, &nb), RZ_OK);
    const char *ids[] = {"0", NULL};
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.container_host = host;
    o.gpu_ids = ids;
    o.run_id = "gpu-run";
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    uint64_t give_up = rz__now_ms() + 30000;
    while (rz_attempt_poll(a, 100) == 0)
        assert_true(rz__now_ms() < give_up);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    assert_false(res.ok);
    if (!strstr(res.reason, "runs no GPU containers"))
        fail_msg("reason: %s", res.reason);
    assert_non_null(strstr(res.reason, "needs 1 GPU"));
    rz_attempt_free(a);
    assert_int_equal(rz__docker_list(d, "io.rhizos.run=gpu-run", &after, &na), RZ_OK);
    assert_int_equal(na, nb);
    rz__docker_ids_free(before, nb);
    rz__docker_ids_free(after, na);
    rz__docker_close(d);
    rz_registry_free(reg);
    unlink(path);
    rmdir(mdir);
    rmdir(dir);
}

/* A log cut at the stream's cap (stderr past 2 x max_output is dropped)
 * may end inside a secret: that start of it is never in the result. */
static void test_log_cut_inside_secret(void **state)
{
    (void)state;
    char dir[] = "/tmp/rz-test-cut-mod-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char mdir[64], path[96];
    snprintf(mdir, sizeof mdir, "%s/cut-log", dir);
    assert_int_equal(mkdir(mdir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", mdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* 1994 bytes, then the secret across the 2000-byte cap. */
    fprintf(f, "{\"id\":\"cut-log\",\"version\":\"1.0.0\",\"name\":\"c\","
            "\"inputs\":[],\"outputs\":[],\"exec\":{\"adapter\":\"docker\","
            "\"image\":\"%s\",\"command\":[\"sh\",\"-c\",\"printf '%%1994s' "
            "'' | tr ' ' x >&2; printf 'SECRETVALUE123\\\\n' >&2; "
            "echo '{}'\"]}}", image);
    fclose(f);
    rz_registry *reg = NULL;
    const rz_module *m = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    assert_int_equal(rz_registry_resolve(reg, "cut-log", "1.0.0", &m), RZ_OK);
    rz_attempt_secret sec = { "api-key", "SECRETVALUE123" };
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.container_host = host;
    o.run_id = "cut-run";
    o.secrets = &sec;
    o.n_secrets = 1;
    o.max_output = 1000;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    uint64_t give_up = rz__now_ms() + 60000;
    while (rz_attempt_poll(a, 100) == 0)
        assert_true(rz__now_ms() < give_up);
    rz_attempt_result res;
    assert_int_equal(rz_attempt_result_get(a, &res), RZ_OK);
    if (!res.log || !strstr(res.log, "xxxx"))
        fail_msg("no log: %s", res.reason ? res.reason : "?");
    for (size_t k = 4; k < strlen(sec.value); k++) {
        char part[32];
        snprintf(part, sizeof part, "%.*s", (int)k, sec.value);
        if (strstr(res.log, part))
            fail_msg("the secret's first %zu bytes in the log", k);
    }
    rz_attempt_free(a);
    rz_registry_free(reg);
    unlink(path);
    rmdir(mdir);
    rmdir(dir);
}

/* The same for live lines: a secret with a newline whose first line is
 * the last the stream kept (its cap) is not handed out at the end. */
static void test_live_lines_cut_inside_secret(void **state)
{
    (void)state;
    char dir[] = "/tmp/rz-test-cutl-mod-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char mdir[64], path[96];
    snprintf(mdir, sizeof mdir, "%s/cut-live", dir);
    assert_int_equal(mkdir(mdir, 0755), 0);
    snprintf(path, sizeof path, "%s/module.json", mdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* 1994 x, newline, "AAAA\n" ends at the 2000-byte cap; "BBBB" lost. */
    fprintf(f, "{\"id\":\"cut-live\",\"version\":\"1.0.0\",\"name\":\"c\","
            "\"inputs\":[],\"outputs\":[],\"exec\":{\"adapter\":\"docker\","
            "\"image\":\"%s\",\"command\":[\"sh\",\"-c\",\"printf '%%1994s' "
            "'' | tr ' ' x >&2; printf '\\\\nAAAA\\\\nBBBB\\\\n' >&2; "
            "echo '{}'\"]}}", image);
    fclose(f);
    rz_registry *reg = NULL;
    const rz_module *m = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    assert_int_equal(rz_registry_resolve(reg, "cut-live", "1.0.0", &m), RZ_OK);
    rz_attempt_secret sec = { "api-key", "AAAA\nBBBB" };
    rz_attempt_opts o = RZ_ATTEMPT_OPTS_INIT;
    o.module = m;
    o.container_host = host;
    o.run_id = "cutl-run";
    o.secrets = &sec;
    o.n_secrets = 1;
    o.max_output = 1000;
    rz_attempt *a = NULL;
    assert_int_equal(rz_attempt_start(&a, &o), RZ_OK);
    rz__buf all = {0};
    uint64_t give_up = rz__now_ms() + 60000;
    int r;
    while ((r = rz_attempt_poll(a, 100)) == 0) {
        assert_true(rz__now_ms() < give_up);
        char *l = rz__attempt_log_lines(a, false);
        if (l)
            rz__buf_printf(&all, "%s\n", l);
        free(l);
    }
    assert_int_equal(r, 1);
    char *l = rz__attempt_log_lines(a, true);
    if (l)
        rz__buf_printf(&all, "%s\n", l);
    free(l);
    assert_null(rz__attempt_log_lines(a, true));
    char *text = rz__buf_take(&all);
    if (!text || !strstr(text, "xxxx"))
        fail_msg("no live lines");
    if (strstr(text, "AAAA"))
        fail_msg("the secret's first line went out live");
    free(text);
    rz_attempt_free(a);
    rz_registry_free(reg);
    unlink(path);
    rmdir(mdir);
    rmdir(dir);
}

static void test_bad_image(void **state)
{
    (void)state;
    rz__docker *d = open_engine();
    static const char *const cmd[] = {"true", NULL};
    rz__docker_spec sp = base_spec(cmd);
    sp.image = "localhost/rz-no-such-image:nope";
    char **before, **after, *id = NULL;
    size_t nb, na;
    assert_int_equal(rz__docker_list(d, label, &before, &nb), RZ_OK);
    assert_int_equal(rz__docker_create(d, &sp, &id), RZ_ENOENT);
    assert_null(id);
    assert_non_null(strstr(rz_error_last()->message, "localhost/rz-no-such-image:nope"));
    assert_int_equal(rz__docker_list(d, label, &after, &na), RZ_OK);
    assert_int_equal(na, nb);   /* nothing left behind */
    rz__docker_ids_free(before, nb);
    rz__docker_ids_free(after, na);
    assert_int_equal(rz__docker_image_inspect(d, sp.image, NULL), RZ_ENOENT);
    assert_non_null(strstr(rz_error_last()->message, "rz-no-such-image"));
    if (remote) {
        char ref[400];
        snprintf(ref, sizeof ref, "%.*s/rz-no-such-image",
                 (int)(strchr(remote, '/') - remote), remote);
        assert_int_equal(rz__docker_pull(d, ref, NULL, NULL, rz__now_ms() + 60000),
                         RZ_ENOENT);
        assert_non_null(strstr(rz_error_last()->message, "rz-no-such-image"));
    }
    rz__docker_close(d);
}

int main(void)
{
    const struct CMUnitTest offline[] = {
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_ref_split),
        cmocka_unit_test(test_demux),
        cmocka_unit_test(test_demux_lines),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_registry_auth),
        cmocka_unit_test(test_registry_auth_sent),
        cmocka_unit_test(test_version_from_ping),
        cmocka_unit_test(test_info_gpu_mode),
        cmocka_unit_test(test_create_gpus),
        cmocka_unit_test(test_clean_stderr),
    };
    int failed = cmocka_run_group_tests_name("docker_api offline", offline, NULL, NULL);
    host = getenv("RHIZOS_TEST_DOCKER_HOST");
    image = getenv("RHIZOS_TEST_IMAGE");
    remote = getenv("RHIZOS_TEST_REMOTE_IMAGE");
    digest = getenv("RHIZOS_TEST_IMAGE_DIGEST");
    if (!host || !*host) {
        fprintf(stderr, "test_docker_api: RHIZOS_TEST_DOCKER_HOST is not set; engine "
                "tests skipped (scripts/containers-up starts one and writes DIR/env)\n");
        return failed ? 1 : 77;
    }
    if (!image || !*image)
        image = "localhost/rhizos-demo:latest";
    snprintf(label, sizeof label, "io.rhizos.test=%d", (int)getpid());
    const struct CMUnitTest engine[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_run_demo),
        cmocka_unit_test(test_empty_stdin),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_logs),
        cmocka_unit_test(test_oom),
        cmocka_unit_test(test_pids_limit),
        cmocka_unit_test(test_network_none),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_list_remove),
        cmocka_unit_test(test_pull_digest),
        cmocka_unit_test(test_pull_wrong_digest),
        cmocka_unit_test(test_bad_image),
        cmocka_unit_test(test_gpu_step_without_gpu_engine),
        cmocka_unit_test(test_log_cut_inside_secret),
        cmocka_unit_test(test_live_lines_cut_inside_secret),
    };
    failed += cmocka_run_group_tests_name("docker_api engine", engine,
                                          setup_scratch, teardown_scratch);
    /* Whatever a failed test left behind. */
    rz__docker *d = NULL;
    if (rz__docker_open(&d, host) == RZ_OK) {
        char **ids;
        size_t n;
        if (rz__docker_list(d, label, &ids, &n) == RZ_OK) {
            for (size_t i = 0; i < n; i++)
                rz__docker_remove(d, ids[i]);
            rz__docker_ids_free(ids, n);
        }
        rz__docker_close(d);
    }
    return failed ? 1 : 0;
}

/* libFuzzer target: rhizos-orchestrator's HTTP handler, from request bytes.
 *
 * The orchestrator's parts (everything but main.c) run in-process over an
 * engine in a temporary folder, as main.c sets them up, with libevent's
 * evhttp listening on a unix socket there (no network). Each input is
 * written to a fresh connection, which is then half-closed; the event loop
 * runs until the server closes it or a bounded number of passes (a held
 * long-poll or event stream is then dropped by closing it, as a client
 * would). A crash, a sanitizer report or a leak is a finding.
 *
 * The admin key is ADMIN_KEY (the seeds use it); wrong keys are not
 * throttled (one peer sends everything); state persists across inputs, as
 * in a running server. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <sodium.h>

#include "orch.h"

#ifndef RZ_SOURCE_ROOT
#define RZ_SOURCE_ROOT "."
#endif

#define ADMIN_KEY "rza_fuzz_0123456789abcdef0123456789abcdef"
#define PASSES 400

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static orch O;
static char dir[64] = "/tmp/rz-fuzz-http-XXXXXX";
static struct sockaddr_un addr;

/* A console folder (index.html, assets/) so / and its paths are served;
 * CORS for one origin. */
static void console_setup(void)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/console", dir);
    char file[160];
    snprintf(file, sizeof file, "%s/assets", path);
    if (mkdir(path, 0700) != 0 || mkdir(file, 0700) != 0)
        abort();
    static const char *const files[][2] = {
        { "index.html", "<!doctype html><title>c</title>" },
        { "assets/app-1a.js", "console.log(1)" },
        { ".env", "secret" },
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(file, sizeof file, "%s/%s", path, files[i][0]);
        FILE *f = fopen(file, "w");
        if (!f || fputs(files[i][1], f) < 0 || fclose(f) != 0)
            abort();
    }
    O.console_dir = path;
    O.opts.cors_origin = "http://localhost:5173";
}

static void setup(void)
{
    if (sodium_init() < 0 || !mkdtemp(dir))
        abort();
    O.spare_fd = -1;
    O.opts.data = dir;
    O.opts.listen = "unix";
    O.opts.max_body = 65536;
    O.opts.node_timeout_ms = 30000;
    O.opts.queue_timeout_s = 3600;
    O.opts.policy = RZ_POLICY_CHEAPEST;
    O.opts.register_rate = 0;   /* one peer sends everything */
    O.opts.quiet = true;
    /* main.c's defaults, but no throttle or request rate: one peer sends
     * everything. */
    O.opts.auth_failures = 0;
    O.opts.request_rate = 0;
    O.opts.request_burst = ORCH_REQUEST_BURST;
    O.opts.deposit_ttl_s = ORCH_DEPOSIT_TTL_S;
    O.opts.deposit_max_micros = ORCH_DEPOSIT_MAX_MICROS;
    O.opts.open_deposits = ORCH_OPEN_DEPOSITS;
    O.opts.pending_withdrawals = ORCH_PENDING_WITHDRAWALS;
    O.opts.watch_max = ORCH_WATCH_MAX;
    O.opts.queued_jobs = ORCH_QUEUED_JOBS;
    O.opts.running_deployments = ORCH_RUNNING_DEPLOYMENTS;
    if (!(O.base = event_base_new()) || orch_http_start(&O) != 0)
        abort();
    if (rz_registry_new(&O.reg) != RZ_OK ||
        rz_registry_add_dir(O.reg, RZ_SOURCE_ROOT "/examples/modules", NULL) != RZ_OK)
        abort();
    rz_engine_opts eo = RZ_ENGINE_OPTS_INIT;
    eo.registry = O.reg;
    eo.durable = 0;
    eo.node_timeout_ms = O.opts.node_timeout_ms;
    eo.queue_timeout_ms = O.opts.queue_timeout_s * 1000u;
    if (rz_engine_open(&O.e, dir, &eo) != RZ_OK || auth_open(&O) != RZ_OK ||
        auth_set_admin(&O, ADMIN_KEY, "the fuzz target") != RZ_OK)
        abort();
    unsigned char kp[64];
    if (!(O.sk = sodium_malloc(RZ_VAULT_NODE_SK_BYTES)) ||
        rz_vault_node_keypair(kp, kp + 32) != RZ_OK)
        abort();
    memcpy(O.pk, kp, 32);
    memcpy(O.sk, kp + 32, 32);
    /* money and admin routes fail closed without the audit log; named
     * flows, versions and webhooks need DATA/flows */
    if (audit_open(&O) != 0 || flows_open(&O) != 0)
        abort();
    orch_arm_wakeup(&O);
    console_setup();

    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/http.sock", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(fd, 64) != 0 || evhttp_accept_socket(O.http, fd) != 0)
        abort();
}

static void pass(void)
{
    event_base_loop(O.base, EVLOOP_NONBLOCK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    int c = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c < 0)
        abort();
    if (connect(c, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EAGAIN)
        abort();
    size_t off = 0;
    int closed = 0;
    char buf[65536];
    for (int i = 0; i < PASSES && !closed; i++) {
        if (off < size) {
            ssize_t n = write(c, data + off, size - off);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno != EAGAIN)
                off = size;      /* the server closed early: fine */
            if (off == size)
                shutdown(c, SHUT_WR);
        } else if (size == 0 && i == 0) {
            shutdown(c, SHUT_WR);
        }
        pass();
        for (;;) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n > 0)
                continue;
            if (n == 0 || (n < 0 && errno != EAGAIN))
                closed = 1;
            break;
        }
    }
    close(c);
    for (int i = 0; i < 8; i++)   /* the server sees the close, frees what it held */
        pass();
    return 0;
}

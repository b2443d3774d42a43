/* rhizos-orchestrator: options, keys, startup errors, signals. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/listener.h>
#include <sodium.h>

#include "orch.h"

static void usage_more(FILE *f);

static void usage(FILE *f)
{
    fputs("usage: " ORCH_NAME " --listen ADDR:PORT --data DIR [options]\n"
          "       " ORCH_NAME " check --data DIR\n"
          "       " ORCH_NAME " migrate --data DIR\n"
          "       " ORCH_NAME " backup --data DIR [--compact] OUT\n"
          "       " ORCH_NAME " restore BACKUP --data DIR\n"
          "\n"
          "The RhizOS orchestrator: the REST API of docs/api.md over the engine\n"
          "whose state lives in DIR (engine, ledger, auth).\n"
          "\n"
          "  --listen ADDR:PORT     where to listen (e.g. 127.0.0.1:8080)\n"
          "  --data DIR             state directory (created if missing)\n"
          "  --modules DIR|URL      a module registry (repeatable); then\n"
          "                         $RHIZOS_MODULES, then the shipped modules\n"
          "  --admin-key-file F     the admin key (else $RHIZOS_ADMIN_KEY, else\n"
          "                         DIR/admin.key, made on first start); at\n"
          "                         least 32 printable characters, 8 of them\n"
          "                         different (e.g. 32 random bytes as hex)\n"
          "  --metrics-key-file F   a key that may read GET /metrics and nothing\n"
          "                         else (else $RHIZOS_METRICS_KEY; default:\n"
          "                         none, only the admin key reads metrics);\n"
          "                         as strong as the admin key, and another\n"
          "  --max-body BYTES       request body limit (default 1048576)\n"
          "  --node-timeout-ms N    a node is lost after N ms of silence\n"
          "                         (default 30000)\n"
          "  --challenge-interval-ms N  capability challenges (docs/node.md):\n"
          "                         a node's claims are unverified until it\n"
          "                         answers one, then re-checked about every\n"
          "                         N ms (default 600000; 0: off, claims taken\n"
          "                         at their word)\n"
          "  --challenge-grace-ms N added to every challenge's time limit\n"
          "                         (default 10000)\n"
          "  --queue-timeout S      a job or step no node takes within S\n"
          "                         seconds fails, refunded, saying why (default\n"
          "                         3600; 0: wait forever); a job's or step's\n"
          "                         queue_timeout_s overrides it\n"
          "  --retention-days N     finished work older than N days leaves the\n"
          "                         stores, the ledger stays (default 90; 0: keep\n"
          "                         forever; also 12h, 30m, 45s)\n"
          "  --llm-price MICROS     per 1,000 tokens: an llm job's hold when it\n"
          "                         names no max_cost_micros, the most a node may\n"
          "                         charge (default 10000: $10 a million tokens)\n"
          "  --allow-images GLOB    clients may run container images matching\n"
          "                         GLOB without a module (POST /api/v1/jobs\n"
          "                         {\"image\"}; repeatable; default: none)\n"
          "  --policy P             placement: cheapest, fastest, reputation,\n"
          "                         binpack, spread (default cheapest)\n"
          "  --register-rate N      node registrations per second from one\n"
          "                         address, after a burst of 20 (default 1;\n"
          "                         0: no limit)\n"
          "  --auth-failures N      wrong API keys from one address, or of one\n"
          "                         key, before it is answered 429 for 1 s,\n"
          "                         doubling up to 5 min (default 10; 0: never)\n"
          "  --accept-v1-proofs     also take node registrations and retirements\n"
          "                         signed the old way (version 1: names no\n"
          "                         orchestrator, replayable at another) from\n"
          "                         nodes not yet upgraded (docs/api.md)\n"
          "  --verify-on-open       verify the whole ledger at start, however\n"
          "                         big (else a sample past 100000 records)\n"
          "  --tls-cert F, --tls-key F  serve HTTPS (PEM certificate chain and\n"
          "                         its key, mode 0600); TLS 1.2 or newer\n"
          "  --ui-dir DIR           the web console's built files, served at /\n"
          "                         (default: the shipped console, when built\n"
          "                         with -Dui=enabled)\n"
          "  --cors-origin ORIGIN   let a console served from ORIGIN (e.g.\n"
          "                         https://console.example:8443) call the API\n"
          "                         from a browser; default: same origin only\n"
          "  --routes               print the served routes and exit\n"
          "  --help, --version\n", f);
    usage_more(f);
}

static void usage_more(FILE *f)
{
    fputs("\nFile outputs nodes upload (docs/flow-format.md):\n"
          "  --max-file-mb N        MiB of one file (default 1024)\n"
          "  --max-run-files-mb N   MiB of one deployment's files (default 4096)\n", f);
    fputs("\nLogs, on stderr (docs/api.md \"Logs\"):\n"
          "  --log-level L          error, warn, info (default) or debug\n"
          "  --log-format F         text (default) or json: one line per event\n"
          "  --access-log           also a line per request (route, code, time)\n"
          "  --quiet                warnings and errors only (--log-level warn)\n"
          "\n"
          "Connections (docs/api.md):\n"
          "  --max-connections N    open connections at once; past it a new one\n"
          "                         is closed at once (default: the descriptor\n"
          "                         limit less 256; 0: no cap)\n"
          "  --read-deadline S      a request must arrive whole within S seconds\n"
          "                         of its first byte, a new connection's first\n"
          "                         within S of the accept (default 60; 0: none)\n"
          "\n"
          "Per-account limits (0 turns a rate off; docs/api.md \"Limits\"):\n"
          "  --request-rate N       requests a second per key after a burst\n"
          "  --request-burst N      (defaults 100 and 1000; 429 + Retry-After)\n"
          "  --max-streams N        event streams one key holds (default 64)\n"
          "  --max-open-deposits N  open deposit requests (default 16)\n"
          "  --max-pending-withdrawals N  pending withdrawals (default 16)\n"
          "  --max-deposit-micros N one deposit request, micro-dollars (default\n"
          "                         1000000000000: $1,000,000)\n"
          "  --deposit-ttl S        an unpaid deposit request expires after S\n"
          "                         seconds (default 86400)\n"
          "  --max-queued-jobs N    unfinished jobs per account (default 1000)\n"
          "  --max-running-deployments N  (default 100)\n"
          "\n"
          "  " ORCH_NAME " audit --data DIR [--verify]\n"
          "                         print (or only verify) the audit log of\n"
          "                         every admin and money operation\n", f);
}

/* The same order as the CLI: --modules, then rz_registry_add_defaults
 * ($RHIZOS_MODULES, the examples). */
static rz_registry *make_registry(const orch_opts *op)
{
    rz_registry *reg = NULL;
    rz_diags *d = NULL;
    if (rz_registry_new(&reg) != RZ_OK || rz_diags_new(&d) != RZ_OK) {
        rz_registry_free(reg);
        return NULL;
    }
    for (size_t i = 0; i < op->n_modules; i++)
        if (rz_registry_add(reg, op->modules[i], d) != RZ_OK)
            fprintf(stderr, ORCH_NAME ": %s\n", rz_error_last()->message);
    (void)!rz_registry_add_defaults(reg, d);   /* its problems are in d */
    for (size_t i = 0; i < rz_diags_count(d) && !op->quiet; i++) {
        const rz_diag *x = rz_diags_get(d, i);
        fprintf(stderr, ORCH_NAME ": %s: warning: %s\n",
                x->file[0] ? x->file : "<registry>", x->message);
    }
    rz_diags_free(d);
    return reg;
}

/* ---- keys ---- */

/* Read a small secret file, trailing whitespace cut. */
static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    char *s = n ? strdup(buf) : NULL;
    sodium_memzero(buf, sizeof buf);
    return s;
}

static int write_private(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return -1;
    bool ok = write(fd, data, len) == (ssize_t)len && fsync(fd) == 0;
    close(fd);
    if (!ok)
        unlink(path);
    return ok ? 0 : -1;
}

/* The admin key from --admin-key-file, $RHIZOS_ADMIN_KEY or DATA/admin.key,
 * read and checked before anything is created or opened, so that a
 * refused start changes nothing on disk. *key NULL with 0: there is none
 * yet (admin_key_make writes one once the directory exists). */
static int admin_key_load(orch *o, char **key, const char **from)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s/admin.key", o->opts.data);
    const char *env = getenv("RHIZOS_ADMIN_KEY");
    *key = NULL;
    *from = path;
    if (o->opts.admin_key_file) {
        *from = o->opts.admin_key_file;
        if (!(*key = read_secret(o->opts.admin_key_file))) {
            fprintf(stderr, ORCH_NAME ": cannot read the admin key from %s\n",
                    o->opts.admin_key_file);
            return -1;
        }
    } else if (env && *env) {
        *from = "$RHIZOS_ADMIN_KEY";
        if (!(*key = strdup(env)))
            return -1;
    } else {
        *key = read_secret(path);
    }
    if (*key && auth_check_admin(*key, *from) != RZ_OK) {
        sodium_memzero(*key, strlen(*key));
        free(*key);
        *key = NULL;
        return -1;
    }
    return 0;
}

/* The metrics key, if one is given: checked like the admin key, and
 * refused if it is the admin key (then it would not be a lesser key). */
static int metrics_key_load(orch *o, const char *admin)
{
    const char *env = getenv("RHIZOS_METRICS_KEY");
    const char *from = o->opts.metrics_key_file ? o->opts.metrics_key_file
                     : "$RHIZOS_METRICS_KEY";
    char *key = o->opts.metrics_key_file ? read_secret(o->opts.metrics_key_file)
              : env && *env ? strdup(env) : NULL;
    if (!key && o->opts.metrics_key_file) {
        fprintf(stderr, ORCH_NAME ": cannot read the metrics key from %s\n", from);
        return -1;
    }
    int rc = 0;
    if (key && auth_check_metrics_key(key, from) != RZ_OK)
        rc = -1;
    else if (key && admin && strcmp(key, admin) == 0) {
        fprintf(stderr, ORCH_NAME ": %s: the metrics key must differ from the "
                "admin key\n", from);
        rc = -1;
    } else if (key)
        rc = auth_set_metrics_key(o, key);
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    return rc;
}

static char *admin_key_make(const char *path)
{
    char fresh[80];
    auth_new_key("rza_", fresh, sizeof fresh);
    size_t n = strlen(fresh);
    fresh[n] = '\n';
    if (write_private(path, fresh, n + 1) != 0) {
        fprintf(stderr, ORCH_NAME ": cannot write %s: %s\n", path,
                strerror(errno));
        sodium_memzero(fresh, sizeof fresh);
        return NULL;
    }
    fresh[n] = '\0';
    char *key = strdup(fresh);
    sodium_memzero(fresh, sizeof fresh);
    fprintf(stderr, ORCH_NAME ": made an admin key; it is in %s\n", path);
    return key;
}

/* key: the one admin_key_load read (the caller's), or NULL: make one. */
static int admin_key_set(orch *o, const char *key, const char *from)
{
    char *made = key ? NULL : admin_key_make(from);
    if (!key && !made)
        return -1;
    int rc = auth_set_admin(o, key ? key : made, from);
    if (made) {
        sodium_memzero(made, strlen(made));
        free(made);
    }
    return rc == RZ_OK ? 0 : -1;
}

/* DATA/orchestrator.key: the X25519 pair (public then secret, 64 bytes). */
static int server_keypair(orch *o)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/orchestrator.key", o->opts.data);
    unsigned char buf[64];
    o->sk = sodium_malloc(RZ_VAULT_NODE_SK_BYTES);
    if (!o->sk)
        return -1;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf);
        close(fd);
        if (n != (ssize_t)sizeof buf) {
            fprintf(stderr, ORCH_NAME ": %s is not a key file\n", path);
            return -1;
        }
    } else if (rz_vault_node_keypair(buf, buf + 32) != RZ_OK ||
               write_private(path, buf, sizeof buf) != 0) {
        fprintf(stderr, ORCH_NAME ": cannot write %s: %s\n", path, strerror(errno));
        sodium_memzero(buf, sizeof buf);
        return -1;
    }
    memcpy(o->pk, buf, 32);
    memcpy(o->sk, buf + 32, 32);
    sodium_memzero(buf, sizeof buf);
    return 0;
}

/* ---- options ---- */

static bool parse_size(const char *s, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end || end == s || v == 0 || v > max || *s == '-')
        return false;
    *out = v;
    return true;
}

/* --retention-days: whole days, or a number with a unit (s, m, h, d) for
 * shorter ages (tests); 0 keeps everything. At most ten years. */
static bool parse_age(const char *s, uint64_t *ms)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-' || v > 3650ull * 86400)
        return false;
    uint64_t unit = 86400000u;
    if (*end && !end[1]) {
        switch (*end) {
        case 's': unit = 1000u; break;
        case 'm': unit = 60000u; break;
        case 'h': unit = 3600000u; break;
        case 'd': break;
        default: return false;
        }
    } else if (*end)
        return false;
    if (v * unit > 3650ull * 86400000u)
        return false;
    *ms = v * unit;
    return true;
}

/* The per-account limits, i counting from --request-rate in parse_opts's
 * order: whole numbers; only the rate may be 0 (off). */
static bool limit_opt(orch_opts *op, int i, const char *arg)
{
    static const struct { const char *name; uint64_t max; } lim[] = {
        { "--request-rate", 1000000 }, { "--request-burst", 1000000 },
        { "--max-streams", 100000 }, { "--max-open-deposits", 100000 },
        { "--max-pending-withdrawals", 100000 },
        { "--max-deposit-micros", (uint64_t)1 << 53 },
        { "--deposit-ttl", 31536000 }, { "--max-queued-jobs", 10000000 },
        { "--max-running-deployments", 10000000 } };
    uint64_t v = 0;
    bool zero = i == 0 && strcmp(arg, "0") == 0;
    if (!zero && !parse_size(arg, lim[i].max, &v)) {
        fprintf(stderr, ORCH_NAME ": %s: %s1 to %llu\n", lim[i].name,
                i == 0 ? "0 (off) or " : "", (unsigned long long)lim[i].max);
        return false;
    }
    switch (i) {
    case 0: op->request_rate = (unsigned)v; break;
    case 1: op->request_burst = (unsigned)v; break;
    case 2: op->watch_max = (unsigned)v; break;
    case 3: op->open_deposits = (unsigned)v; break;
    case 4: op->pending_withdrawals = (unsigned)v; break;
    case 5: op->deposit_max_micros = v; break;
    case 6: op->deposit_ttl_s = v; break;
    case 7: op->queued_jobs = (unsigned)v; break;
    default: op->running_deployments = (unsigned)v; break;
    }
    return true;
}

/* --log-level ('l'), --log-format ('f'), --access-log ('a'). */
static bool log_option(orch_opts *op, int which)
{
    if (which == 'a') {
        op->access_log = true;
        return true;
    }
    if (which == 'l') {
        op->log_level = orch_log_level_parse(optarg);
        if (op->log_level >= 0)
            return true;
        fprintf(stderr, ORCH_NAME ": --log-level: error, warn, info or debug\n");
        return false;
    }
    if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
        fprintf(stderr, ORCH_NAME ": --log-format: text or json\n");
        return false;
    }
    op->log_json = strcmp(optarg, "json") == 0;
    return true;
}

static int parse_opts(orch_opts *op, int argc, char **argv)
{
    enum { O_LISTEN = 256, O_DATA, O_MODULES, O_ADMIN, O_MAXBODY, O_TIMEOUT,
           O_POLICY, O_RATE, O_AUTH_FAILURES, O_QUEUE_TIMEOUT, O_ALLOW_IMAGES, O_QUIET, O_ROUTES,
           O_LLM_PRICE, O_RETENTION, O_MAX_FILE, O_MAX_RUN_FILES,
           O_VERIFY_ON_OPEN,
           O_HELP, O_VERSION, O_REQ_RATE, O_REQ_BURST, O_STREAMS, O_DEPOSITS,
           O_WITHDRAWALS, O_DEPOSIT_MAX, O_DEPOSIT_TTL, O_JOBS, O_DEPS,
           O_CHALLENGE_INTERVAL, O_CHALLENGE_GRACE, O_REFUSE_V1,
           O_METRICS_KEY, O_LOG_LEVEL, O_LOG_FORMAT, O_ACCESS_LOG, O_TLS_CERT,
           O_TLS_KEY, O_ACCEPT_V1, O_UI_DIR, O_CORS_ORIGIN, O_MAX_CONNS,
           O_READ_DEADLINE };
    static const struct option longs[] = {
        { "listen", required_argument, NULL, O_LISTEN },
        { "data", required_argument, NULL, O_DATA },
        { "modules", required_argument, NULL, O_MODULES },
        { "admin-key-file", required_argument, NULL, O_ADMIN },
        { "metrics-key-file", required_argument, NULL, O_METRICS_KEY },
        { "max-body", required_argument, NULL, O_MAXBODY },
        { "node-timeout-ms", required_argument, NULL, O_TIMEOUT },
        { "challenge-interval-ms", required_argument, NULL, O_CHALLENGE_INTERVAL },
        { "challenge-grace-ms", required_argument, NULL, O_CHALLENGE_GRACE },
        { "policy", required_argument, NULL, O_POLICY },
        { "queue-timeout", required_argument, NULL, O_QUEUE_TIMEOUT },
        { "llm-price", required_argument, NULL, O_LLM_PRICE },
        { "retention-days", required_argument, NULL, O_RETENTION },
        { "max-file-mb", required_argument, NULL, O_MAX_FILE },
        { "max-run-files-mb", required_argument, NULL, O_MAX_RUN_FILES },
        { "allow-images", required_argument, NULL, O_ALLOW_IMAGES },
        { "register-rate", required_argument, NULL, O_RATE },
        { "auth-failures", required_argument, NULL, O_AUTH_FAILURES },
        { "request-rate", required_argument, NULL, O_REQ_RATE },
        { "request-burst", required_argument, NULL, O_REQ_BURST },
        { "max-streams", required_argument, NULL, O_STREAMS },
        { "max-open-deposits", required_argument, NULL, O_DEPOSITS },
        { "max-pending-withdrawals", required_argument, NULL, O_WITHDRAWALS },
        { "max-deposit-micros", required_argument, NULL, O_DEPOSIT_MAX },
        { "deposit-ttl", required_argument, NULL, O_DEPOSIT_TTL },
        { "max-queued-jobs", required_argument, NULL, O_JOBS },
        { "max-running-deployments", required_argument, NULL, O_DEPS },
        { "quiet", no_argument, NULL, O_QUIET },
        { "log-level", required_argument, NULL, O_LOG_LEVEL },
        { "log-format", required_argument, NULL, O_LOG_FORMAT },
        { "access-log", no_argument, NULL, O_ACCESS_LOG },
        { "tls-cert", required_argument, NULL, O_TLS_CERT },
        { "tls-key", required_argument, NULL, O_TLS_KEY },
        { "verify-on-open", no_argument, NULL, O_VERIFY_ON_OPEN },
        { "refuse-v1-proofs", no_argument, NULL, O_REFUSE_V1 },
        { "accept-v1-proofs", no_argument, NULL, O_ACCEPT_V1 },
        { "ui-dir", required_argument, NULL, O_UI_DIR },
        { "cors-origin", required_argument, NULL, O_CORS_ORIGIN },
        { "max-connections", required_argument, NULL, O_MAX_CONNS },
        { "read-deadline", required_argument, NULL, O_READ_DEADLINE },
        { "routes", no_argument, NULL, O_ROUTES },
        { "help", no_argument, NULL, O_HELP },
        { "version", no_argument, NULL, O_VERSION },
        { NULL, 0, NULL, 0 }
    };
    uint64_t v;
    for (int c; (c = getopt_long(argc, argv, "h", longs, NULL)) != -1;) {
        switch (c) {
        case O_LISTEN: op->listen = optarg; break;
        case O_DATA: op->data = optarg; break;
        case O_MODULES: {
            const char **m = realloc(op->modules, (op->n_modules + 1) * sizeof *m);
            if (!m)
                return 1;
            op->modules = m;
            op->modules[op->n_modules++] = optarg;
            break;
        }
        case O_ADMIN: op->admin_key_file = optarg; break;
        case O_METRICS_KEY: op->metrics_key_file = optarg; break;
        case O_TLS_CERT: op->tls_cert = optarg; break;
        case O_TLS_KEY: op->tls_key = optarg; break;
        case O_MAXBODY:
            if (!parse_size(optarg, (uint64_t)1 << 32, &v)) {
                fprintf(stderr, ORCH_NAME ": --max-body: a size in bytes, 1 to 4 GiB\n");
                return 2;
            }
            op->max_body = (size_t)v;
            break;
        case O_TIMEOUT:
            if (!parse_size(optarg, 86400000, &v)) {
                fprintf(stderr, ORCH_NAME ": --node-timeout-ms: 1 to 86400000\n");
                return 2;
            }
            op->node_timeout_ms = v;
            break;
        case O_CHALLENGE_INTERVAL:
        case O_CHALLENGE_GRACE:
            if (strcmp(optarg, "0") != 0 && !parse_size(optarg, 86400000, &v)) {
                fprintf(stderr, ORCH_NAME ": --%s: 0 to 86400000\n",
                        c == O_CHALLENGE_GRACE ? "challenge-grace-ms"
                                               : "challenge-interval-ms");
                return 2;
            }
            if (c == O_CHALLENGE_GRACE)
                op->challenge_grace_ms = strcmp(optarg, "0") ? v : 0;
            else
                op->challenge_interval_ms = strcmp(optarg, "0") ? v : 0;
            break;
        case O_POLICY:
            if (rz_policy_parse(optarg, &op->policy) != RZ_OK) {
                fprintf(stderr, ORCH_NAME ": --policy: unknown policy \"%s\"\n", optarg);
                return 2;
            }
            break;
        case O_RATE:
            if (strcmp(optarg, "0") == 0) {
                op->register_rate = 0;
            } else if (!parse_size(optarg, 1000000, &v)) {
                fprintf(stderr, ORCH_NAME ": --register-rate: 0 to 1000000\n");
                return 2;
            } else {
                op->register_rate = (unsigned)v;
            }
            break;
        case O_AUTH_FAILURES:
            if (strcmp(optarg, "0") == 0) {
                op->auth_failures = 0;
            } else if (!parse_size(optarg, 1000000, &v)) {
                fprintf(stderr, ORCH_NAME ": --auth-failures: 0 to 1000000\n");
                return 2;
            } else {
                op->auth_failures = (unsigned)v;
            }
            break;
        case O_LLM_PRICE:
            if (!parse_size(optarg, UINT64_C(1000000000000), &v)) {
                fprintf(stderr, ORCH_NAME ": --llm-price: micro-dollars per "
                        "1,000 tokens, 1 to 1000000000000\n");
                return 2;
            }
            op->llm_price_micros = v;
            break;
        case O_MAX_FILE:
        case O_MAX_RUN_FILES:
            if (!parse_size(optarg, 1u << 24, &v)) {
                fprintf(stderr, ORCH_NAME ": --%s: MiB, 1 to 16777216\n",
                        c == O_MAX_FILE ? "max-file-mb" : "max-run-files-mb");
                return 2;
            }
            *(c == O_MAX_FILE ? &op->max_file : &op->max_run_files) = v << 20;
            break;
        case O_RETENTION:
            if (!parse_age(optarg, &op->retention_ms)) {
                fprintf(stderr, ORCH_NAME ": --retention-days: whole days (0: keep "
                        "forever), or an age with a unit: 12h, 30m, 45s\n");
                return 2;
            }
            break;
        case O_QUEUE_TIMEOUT:
            if (strcmp(optarg, "0") == 0) {
                op->queue_timeout_s = 0;
            } else if (!parse_size(optarg, 31536000, &v)) {
                fprintf(stderr, ORCH_NAME ": --queue-timeout: seconds, 0 to "
                        "31536000\n");
                return 2;
            } else {
                op->queue_timeout_s = v;
            }
            break;
        case O_ALLOW_IMAGES: {
            const char **m = realloc(op->allow_images,
                                     (op->n_allow_images + 1) * sizeof *m);
            if (!m || !*optarg) {
                free(m ? (void *)m : (void *)op->allow_images);
                op->allow_images = NULL;
                fprintf(stderr, ORCH_NAME ": --allow-images: a glob such as "
                        "'registry.local/*'\n");
                return 2;
            }
            op->allow_images = m;
            op->allow_images[op->n_allow_images++] = optarg;
            break;
        }
        case O_REQ_RATE: case O_REQ_BURST: case O_STREAMS: case O_DEPOSITS:
        case O_WITHDRAWALS: case O_DEPOSIT_MAX: case O_DEPOSIT_TTL: case O_JOBS:
        case O_DEPS:
            if (!limit_opt(op, c - O_REQ_RATE, optarg))
                return 2;
            break;
        case O_MAX_CONNS: case O_READ_DEADLINE:
            if (strcmp(optarg, "0") == 0) {
                v = 0;
            } else if (!parse_size(optarg, c == O_MAX_CONNS ? 10000000 : 86400, &v)) {
                fprintf(stderr, ORCH_NAME ": %s\n", c == O_MAX_CONNS
                        ? "--max-connections: 0 (no cap) to 10000000"
                        : "--read-deadline: seconds, 0 (none) to 86400");
                return 2;
            }
            if (c == O_MAX_CONNS)
                op->max_connections = (unsigned)v, op->max_connections_set = true;
            else
                op->read_deadline_s = (unsigned)v;
            break;
        case O_QUIET: op->quiet = true; op->log_level = ORCH_LOG_WARN; break;
        case O_LOG_LEVEL: case O_LOG_FORMAT: case O_ACCESS_LOG:
            if (!log_option(op, c == O_LOG_LEVEL ? 'l' : c == O_LOG_FORMAT ? 'f' : 'a'))
                return 2;
            break;
        case O_VERIFY_ON_OPEN: op->verify_on_open = true; break;
        case O_REFUSE_V1:   /* the default now; kept so old command lines start */
            fprintf(stderr, ORCH_NAME ": --refuse-v1-proofs is deprecated and "
                    "does nothing: version 1 node proofs are refused unless "
                    "--accept-v1-proofs\n");
            break;
        case O_ACCEPT_V1: op->accept_v1_proofs = true; break;
        case O_UI_DIR: op->ui_dir = optarg; break;
        case O_CORS_ORIGIN:
            if (!orch_cors_origin_ok(optarg)) {
                fprintf(stderr, ORCH_NAME ": --cors-origin: an origin such as "
                        "https://console.example:8443 (scheme, host, port; "
                        "lowercase, no path, no '*')\n");
                return 2;
            }
            op->cors_origin = optarg;
            break;
        case O_ROUTES: orch_print_routes(); exit(0);
        case 'h': case O_HELP: usage(stdout); exit(0);
        case O_VERSION: printf(ORCH_NAME " %s\n", rz_version()); exit(0);
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, ORCH_NAME ": unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    if (!op->listen || !op->data) {
        fprintf(stderr, ORCH_NAME ": --listen and --data are required\n");
        usage(stderr);
        return 2;
    }
    return 0;
}

/* "ADDR:PORT", "[v6]:PORT". */
static bool split_listen(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return false;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']')
        s++, hl -= 2;
    uint64_t p;
    if (hl >= cap || !parse_size(colon + 1, 65535, &p))
        return false;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (uint16_t)p;
    return true;
}

/* ---- lifecycle ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)sig, (void)what;
    orch *o = arg;
    if (o->stopping)
        return;
    o->stopping = true;
    if (o->sock)
        evhttp_del_accept_socket(o->http, o->sock);   /* no new connections */
    o->sock = NULL;
    orch_shutdown_streams(o);
    if (o->wake)
        evtimer_del(o->wake);
    /* Let the replies just queued reach their sockets. */
    struct timeval tv = { 0, 200000 };
    event_base_loopexit(o->base, &tv);
}

/* Other processes (`rhizos ledger verify --data`) read the ledger as of
 * its last checkpoint; keep that recent. Never inside an open group: its
 * ops are not acknowledged yet. */
static void on_ckpt(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    uint64_t now = orch_now_ms();
    bool dirty = o->writes != o->ckpt_writes;
    bool idle = o->writes == o->ckpt_seen;
    o->ckpt_seen = o->writes;
    bool due = (dirty && (idle || now - o->ckpt_at_ms >= 5000)) ||
               now - o->ckpt_at_ms >= 30000;
    if (!o->grouped && !o->stopping)
        quota_expire(o, false);
    orch_retain(o, now);
    if (!due || o->grouped || o->stopping)
        return;
    if (rz_ledger_checkpoint(rz_engine_ledger(o->e)) != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": ledger checkpoint: %s\n",
                rz_error_last()->message);
        return;
    }
    o->ckpt_writes = o->writes;
    o->ckpt_at_ms = now;
}

/* Every connection is a descriptor: take the hard limit, not the (often
 * 1024) soft one, so it takes far more idle sockets to run out. */
/* Raise the descriptor limit to the hard one; unless --max-connections
 * was given, connections may take all but 256 of it (the stores, logs
 * and pipes keep theirs, so a flood of clients cannot starve them). */
static void raise_fd_limit(orch_opts *op)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (!op->max_connections_set && rl.rlim_cur != RLIM_INFINITY) {
        rlim_t keep = rl.rlim_cur / 2 < 256 ? rl.rlim_cur / 2 : 256;
        rlim_t cap = rl.rlim_cur - keep;
        op->max_connections = (unsigned)(cap > 10000000 ? 10000000 : cap);
    }
}

/* accept() failed. Out of descriptors (EMFILE/ENFILE) the pending
 * connection keeps the socket readable, so libevent would retry at once,
 * forever, warning every time. Give back the spare descriptor kept for
 * this, accept that connection and close it (the client sees it refused
 * rather than hanging), take the spare again, and say so at most once a
 * minute. The listener's user data is evhttp's, so the server is found
 * through `listening`. */
static orch *listening;

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    (void)arg;
    orch *o = listening;
    int err = EVUTIL_SOCKET_ERROR();
    if ((err == EMFILE || err == ENFILE) && o->spare_fd >= 0) {
        close(o->spare_fd);
        int fd = accept(evconnlistener_get_fd(l), NULL, NULL);
        if (fd >= 0)
            close(fd);
        o->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    uint64_t now = orch_now_ms();
    if (!o->accept_logged_ms || now - o->accept_logged_ms >= 60000) {
        fprintf(stderr, ORCH_NAME ": cannot accept connections: %s; refusing "
                "new ones while it lasts\n", evutil_socket_error_to_string(err));
        o->accept_logged_ms = now;
    }
}

/* The loop, with epoll's changes to a descriptor's events merged until
 * its next wait: a request read, answered and written changes its
 * connection's registration four times (read off, read on, write on, write
 * off), and a status stream's chunk twice; merged, about half the calls.
 * The flag's one caveat, a watched descriptor dup()ed, does not arise: no
 * descriptor the loop watches is. */
static struct event_base *loop_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    (void)event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *b = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return b;
}

/* Everything that can refuse without touching the disk comes first. */
static int start(orch *o, const char *key, const char *key_from)
{
    raise_fd_limit(&o->opts);
    char host[256];
    uint16_t port;
    if (!split_listen(o->opts.listen, host, sizeof host, &port)) {
        fprintf(stderr, ORCH_NAME ": --listen: expected ADDR:PORT, not \"%s\"\n",
                o->opts.listen);
        return -1;
    }
    if (!(o->base = loop_new()) || orch_http_start(o) != 0) {
        fprintf(stderr, ORCH_NAME ": cannot start the event loop\n");
        return -1;
    }
    /* Before the data directory: a failed bind leaves nothing on disk. */
    errno = 0;
    o->sock = evhttp_bind_socket_with_handle(o->http, host, port);
    if (!o->sock) {
        fprintf(stderr, ORCH_NAME ": cannot listen on %s: %s\n", o->opts.listen,
                errno ? strerror(errno) : "not an address of this machine");
        return -1;
    }
    if (mkdir(o->opts.data, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, ORCH_NAME ": cannot create %s: %s\n", o->opts.data,
                strerror(errno));
        return -1;
    }
    o->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    listening = o;
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(o->sock),
                                on_accept_error);
    if (!(o->reg = make_registry(&o->opts)) || orch_stores_check(o->opts.data) != 0)
        return -1;
    rz_engine_opts eo = RZ_ENGINE_OPTS_INIT;
    eo.registry = o->reg;
    eo.policy = o->opts.policy;
    eo.node_timeout_ms = o->opts.node_timeout_ms;
    eo.queue_timeout_ms = o->opts.queue_timeout_s * 1000u;
    eo.challenge_interval_ms = o->opts.challenge_interval_ms;
    eo.challenge_grace_ms = o->opts.challenge_grace_ms;
    eo.ref_llm_1k_tokens_micros = o->opts.llm_price_micros;   /* llm steps */
    randombytes_buf(&eo.challenge_seed, sizeof eo.challenge_seed);
    int rc = rz_engine_open(&o->e, o->opts.data, &eo);
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": cannot open %s: %s%s\n", o->opts.data,
                rz_error_last()->message, rc == RZ_ESTATE
                ? " (is another orchestrator using it?)" : "");
        return -1;
    }
    if (auth_open(o) != RZ_OK || admin_key_set(o, key, key_from) != 0 ||
        server_keypair(o) != 0 || audit_open(o) != 0 ||
        orch_stores_agree(o->e, o->opts.data, o->opts.verify_on_open) != 0 ||
        auth_redo_replay(o) != RZ_OK || flows_open(o) != 0 ||
        orch_control_start(o) != 0 || orch_blobs_start(o) != 0)
        return -1;
    o->sig_term = evsignal_new(o->base, SIGTERM, on_signal, o);
    o->sig_int = evsignal_new(o->base, SIGINT, on_signal, o);
    o->keepalive = event_new(o->base, -1, EV_PERSIST, orch_keepalive, o);
    o->ckpt = event_new(o->base, -1, EV_PERSIST, on_ckpt, o);
    o->ckpt_at_ms = orch_now_ms();
    struct timeval ka = { 15, 0 }, one = { 1, 0 };
    if (!o->sig_term || !o->sig_int || !o->keepalive || !o->ckpt ||
        evsignal_add(o->sig_term, NULL) || evsignal_add(o->sig_int, NULL) ||
        event_add(o->keepalive, &ka) || event_add(o->ckpt, &one))
        return -1;
    signal(SIGPIPE, SIG_IGN);
    orch_arm_wakeup(o);
    orch_log(o, ORCH_LOG_INFO, "listening", "listen", LOG_STR, o->opts.listen,
             "data", LOG_STR, o->opts.data, "modules", LOG_U64,
             (uint64_t)rz_registry_count(o->reg), "version", LOG_STR, rz_version(), NULL);
    return 0;
}

static void finish(orch *o)
{
    orch_metrics_free(o);
    audit_head_settle(o);   /* in the group, if one is open: committed next */
    if (o->audit_head_ev)
        event_free(o->audit_head_ev);
    o->audit_head_ev = NULL;
    orch_live_free(o);   /* streamed logs: into the group committed next */
    orch_group_discard(o);
    auth_pass_free(o);
    if (o->http)
        evhttp_free(o->http);   /* frees the requests still held */
    httpconn_free(o->conns);
    orch_tls_free(o);
    if (o->wake)
        event_free(o->wake);
    if (o->sig_term)
        event_free(o->sig_term);
    if (o->sig_int)
        event_free(o->sig_int);
    if (o->keepalive)
        event_free(o->keepalive);
    if (o->ckpt)
        event_free(o->ckpt);
    if (o->spare_fd >= 0)
        close(o->spare_fd);
    while (o->waiters) {   /* only when evhttp never existed */
        waiter *w = o->waiters;
        o->waiters = w->next;
        event_free(w->timer);
        free(w);
    }
    for (size_t i = 0; i < o->n_stops; i++)
        free(o->stops[i].v);
    free(o->stops);
    orch_control_stop(o);
    flows_close(o);   /* frees its timer event: before the base goes */
    orch_blobs_free(o);
    if (o->base)
        event_base_free(o->base);
    rz_engine_close(o->e);
    auth_close(o);
    rz_registry_free(o->reg);
    sodium_free(o->sk);
    audit_close(o);
    free(o->opts.modules);
    free(o->opts.allow_images);
    free(o->console_dir);
    rz_prices_free(o->prices);
    orch_rate_free();
    quota_free();
}

/* Tests only (tests/e2e/orchestrator_abuse.py): RHIZOS_TEST_AUTH_FAULT
 * "kill" dies at a kept group's commit that holds redo copies (after the
 * engine's, the window auth_redo_replay covers); "fail" fails the first
 * such commit (the window the rebuild covers), "fail-always" every one. */
static bool test_fault_kill;
static unsigned test_fault_fails;

static bool test_auth_fault(orch *o, bool settle)
{
    if (!o->redo_group_max)
        return false;
    if (test_fault_kill && settle)
        raise(SIGKILL);
    if (!test_fault_fails)
        return false;
    test_fault_fails--;
    return true;
}

static void test_faults_from_env(void)
{
    const char *f = getenv("RHIZOS_TEST_AUTH_FAULT");
    if (!f)
        return;
    test_fault_kill = strcmp(f, "kill") == 0;
    test_fault_fails = strcmp(f, "fail") == 0 ? 1 : strcmp(f, "fail-always") == 0
                                                   ? UINT_MAX : 0;
    auth_commit_seam = test_auth_fault;
}

/* Tests only: RHIZOS_TEST_AUTH_TIMERS=in-pass fires the auth store's
 * timers inside the next pass (auth_timers_in_pass);
 * RHIZOS_TEST_LIVE_PUT_MS sets orch_live_put_ms. */
static void test_timers_from_env(void)
{
    const char *t = getenv("RHIZOS_TEST_AUTH_TIMERS");
    auth_timers_in_pass = t && strcmp(t, "in-pass") == 0;
    const char *live = getenv("RHIZOS_TEST_LIVE_PUT_MS");
    if (live)
        orch_live_put_ms = strtoull(live, NULL, 10);
}

int main(int argc, char **argv)
{
    static orch o;
    o.spare_fd = -1;
    o.opts.max_body = 1024 * 1024;
    o.opts.read_deadline_s = 60;
    o.opts.log_level = ORCH_LOG_INFO;
    o.opts.node_timeout_ms = 30000;
    o.opts.challenge_interval_ms = 600000;
    o.opts.queue_timeout_s = 3600;
    o.opts.retention_ms = ORCH_RETENTION_DAYS * 86400000ull;
    o.opts.max_file = ORCH_BLOB_FILE_MAX;
    o.opts.max_run_files = ORCH_BLOB_RUN_MAX;
    o.opts.llm_price_micros = ORCH_LLM_PRICE_MICROS;
    o.opts.policy = RZ_POLICY_CHEAPEST;
    o.opts.register_rate = ORCH_REGISTER_RATE;
    o.opts.auth_failures = RZ_AUTH_THROTTLE_DEFAULT_MAX_FAILURES;
    o.opts.deposit_ttl_s = ORCH_DEPOSIT_TTL_S;
    o.opts.deposit_max_micros = ORCH_DEPOSIT_MAX_MICROS;
    o.opts.open_deposits = ORCH_OPEN_DEPOSITS;
    o.opts.pending_withdrawals = ORCH_PENDING_WITHDRAWALS;
    o.opts.watch_max = ORCH_WATCH_MAX;
    o.opts.request_rate = ORCH_REQUEST_RATE;
    o.opts.request_burst = ORCH_REQUEST_BURST;
    o.opts.queued_jobs = ORCH_QUEUED_JOBS;
    o.opts.running_deployments = ORCH_RUNNING_DEPLOYMENTS;
    if (argc > 1 && strcmp(argv[1], "audit") == 0)
        return orch_audit_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "check") == 0)
        return orch_check_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "migrate") == 0)
        return orch_migrate_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "backup") == 0)
        return orch_backup_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "restore") == 0)
        return orch_restore_main(argc - 1, argv + 1);
    test_faults_from_env();
    test_timers_from_env();
    int rc = parse_opts(&o.opts, argc, argv);
    if (rc != 0) {
        free(o.opts.modules);
        free(o.opts.allow_images);
        return rc;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, ORCH_NAME ": libsodium cannot start\n");
        return 1;
    }
    char *key = NULL;
    const char *key_from = NULL;
    if (admin_key_load(&o, &key, &key_from) != 0 || metrics_key_load(&o, key) != 0) {
        if (key) {
            sodium_memzero(key, strlen(key));
            free(key);
        }
        finish(&o);
        return 1;
    }
    rc = orch_metrics_init(&o) == 0 && orch_tls_setup(&o) == 0 &&
         orch_console_setup(&o) == 0 ? start(&o, key, key_from) : -1;
    if (key) {
        sodium_memzero(key, strlen(key));
        free(key);
    }
    if (rc != 0) {
        finish(&o);
        return 1;
    }
    event_base_dispatch(o.base);
    orch_log(&o, ORCH_LOG_INFO, "stopped", NULL);
    finish(&o);
    return 0;
}

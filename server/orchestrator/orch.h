/* rhizos-orchestrator: the REST server of docs/api.md, a thin libevent
 * driver of the deterministic engine (include/rhizos/engine.h).
 *
 * One thread, one event loop. Every request runs to completion on the
 * loop; engine calls are serialised by construction. The requests of one
 * loop pass form an engine group (group commit): their replies are held
 * until the flush at the end of the pass has run orch_after() (drain the
 * engine's events: hand work to waiting long-polls, remember stops, mark
 * SSE watchers), made the group durable with one commit, sent them, pushed
 * status to watchers and re-armed the one wakeup timer. */
#ifndef RZ_ORCH_H
#define RZ_ORCH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "rhizos/rhizos.h"
#include "httpconn.h"

#define ORCH_NAME "rhizos-orchestrator"
#define AUDIT_KEY_BYTES 32               /* DATA/audit.key */
#define ORCH_LOG_MAX (64u * 1024u)      /* a job's log kept from its node */
#define ORCH_LOG_CHUNK_MAX (64u * 1024u) /* one live log chunk (routes_logs.c) */
#define ORCH_LIVE_PUT_MS 2000u         /* a streamed log stored at most this
                                           often (routes_logs.c) */
#define ORCH_SSE_LOG_BACKLOG (1024u * 1024u)  /* a stream's unsent bytes past
                                                which step_log events skip it */
#define ORCH_WAIT_MAX 60                 /* long-poll seconds */
#define ORCH_WAIT_DEFAULT 25
#define ORCH_CAPS_MAX 16384u            /* a node's capabilities, as JSON */
#define ORCH_CAPS_STR_MAX 1024u         /* any string in them, keys too */
#define ORCH_LABELS_MAX 64u             /* capabilities.labels entries */
#define ORCH_LABEL_KEY_MAX 64u
#define ORCH_LABEL_VALUE_MAX 256u
#define ORCH_REGISTER_BURST 20u         /* registrations per address at once */
#define ORCH_REGISTER_RATE 1u           /* ... and refilled per second */
/* A node's signed request (register, retire): its timestamp within this
 * of the server's clock; nonces kept in a table of this many slots. */
#define ORCH_PROOF_SKEW_MS 120000u
#define ORCH_PROOF_SLOTS 65536u
#define ORCH_NODES_PAGE 100u            /* GET /api/v1/nodes?limit= */
#define ORCH_NODES_PAGE_MAX 1000u
#define ORCH_WATCH_MAX 64                /* SSE streams one key may hold
                                            (default of --max-streams) */
#define ORCH_CRED_TTL_MS (10u * 60u * 1000u)  /* credentials sealed to a node */
/* How long a job handed to a node may be missing from its heartbeat's
 * "running" list before it counts as never delivered: half the node
 * timeout (a node heartbeats well within that). */
#define ORCH_RUNNING_GRACE_MS(o) ((o)->opts.node_timeout_ms / 2)

/* Who a key names (rhizos/auth.h), by the orchestrator's short names. */
typedef rz_auth_principal principal;
#define P_NONE RZ_AUTH_NONE
#define P_ADMIN RZ_AUTH_ADMIN
#define P_CLIENT RZ_AUTH_CLIENT
#define P_NODE RZ_AUTH_NODE
/* The metrics key (--metrics-key-file): GET /metrics and nothing else, so
 * a Prometheus server holds no key that can move money. */
#define P_METRICS (1u << 8)

typedef struct orch_opts {
    const char *listen;
    const char *data;
    const char **modules; size_t n_modules;
    const char *admin_key_file;
    const char *metrics_key_file;
    const char *tls_cert, *tls_key;   /* --tls-cert, --tls-key: HTTPS */
    size_t max_body;
    uint64_t node_timeout_ms;
    uint64_t challenge_interval_ms;   /* 0: no capability challenges */
    uint64_t challenge_grace_ms;      /* 0: the engine's default */
    uint64_t queue_timeout_s;   /* a job's wait for a node; 0: no limit */
    const char **allow_images; size_t n_allow_images;   /* globs; none: no
                                                           ad-hoc images */
    rz_policy policy;
    unsigned auth_failures;  /* wrong keys before a lock; 0: no throttle */
    unsigned register_rate;  /* registrations per second per address; 0: any */
    bool quiet;
    int log_level;           /* ORCH_LOG_* and below are written */
    bool log_json;           /* --log-format json */
    bool access_log;         /* --access-log: a line per reply */
    bool verify_on_open;   /* the whole ledger verified at start */
    bool accept_v1_proofs; /* node proofs may name no orchestrator (old nodes) */
    /* Per-account limits (quota.c; docs/api.md "Limits"). */
    uint64_t deposit_ttl_s;        /* an unpaid deposit request expires */
    uint64_t deposit_max_micros;   /* one deposit request at most */
    unsigned open_deposits;        /* open deposit requests per account */
    unsigned pending_withdrawals;  /* pending withdrawals per account */
    unsigned watch_max;            /* SSE streams per key */
    unsigned request_rate;         /* requests a second per key; 0: any */
    unsigned request_burst;        /* ... after a burst of this many */
    unsigned queued_jobs;          /* open standalone jobs per account */
    unsigned running_deployments;  /* running deployments per account */
    uint64_t llm_price_micros;     /* per 1,000 tokens: an llm job's hold
                                      (routes_llm.c) */
    const char *ui_dir;            /* --ui-dir: the console's files */
    const char *cors_origin;       /* --cors-origin: the one other origin */
    unsigned max_connections;      /* open at once (httpconn.h); 0: none */
    bool max_connections_set;      /* else from the descriptor limit */
    unsigned read_deadline_s;      /* a request's arrival; 0: none */
    uint64_t retention_ms;         /* --retention-days: finished work older
                                      than this leaves the stores (retain.c);
                                      0: kept forever */
    uint64_t max_file;             /* file outputs (routes_blobs.c): bytes of */
    uint64_t max_run_files;        /* one file, of one run's files */
} orch_opts;

#define ORCH_RETENTION_DAYS 90u

#define ORCH_LLM_PRICE_MICROS 10000u   /* $10 per million tokens */

#define ORCH_DEPOSIT_TTL_S 86400u
#define ORCH_DEPOSIT_MAX_MICROS 1000000000000ull   /* $1,000,000 */
#define ORCH_OPEN_DEPOSITS 16u
#define ORCH_PENDING_WITHDRAWALS 16u
#define ORCH_REQUEST_RATE 100u
#define ORCH_REQUEST_BURST 1000u
#define ORCH_QUEUED_JOBS 1000u
#define ORCH_RUNNING_DEPLOYMENTS 100u

/* A node's long-poll, held until work comes or its wait ends. */
typedef struct waiter {
    struct orch *o;
    struct evhttp_request *req;
    /* Its connection, kept: libevent detaches the request from a closed
     * connection before the close callback runs. */
    struct evhttp_connection *conn;
    uint64_t node;
    bool cbor;
    uint64_t t0_ns;          /* when the poll arrived (metrics) */
    struct event *timer;
    struct waiter *prev, *next;
} waiter;

/* A server-sent-events stream of one deployment's status. */
typedef struct watcher {
    struct orch *o;
    struct evhttp_request *req;
    struct evhttp_connection *conn;   /* as the waiter's */
    principal who;           /* whose stream (the per-key cap) */
    uint64_t dep;
    bool dirty;              /* status changed since last pushed */
    /* A stream of changes (?changes=1 or Last-Event-ID): "step" events
     * from the engine's change log after position `seq`, instead of the
     * whole status every time. */
    bool changes;
    bool started;            /* its first status (or resume) was sent */
    bool logs;               /* a status stream with ?logs=1: "step_log"
                                events too (streams of changes always) */
    char *resume;            /* Last-Event-ID until then, or NULL */
    uint64_t seq;
    struct watcher *prev, *next;
} watcher;

typedef struct stop_item { uint64_t job; uint32_t attempt; } stop_item;
typedef struct stop_list { stop_item *v; size_t n, cap; } stop_list;

/* Dispatch latency buckets in seconds (Prometheus histogram). */
#define ORCH_LAT_BUCKETS 11
extern const double orch_lat_bounds[ORCH_LAT_BUCKETS];

/* An API key looked up (keycache.c): a keyed hash of it, whom it names. */
typedef struct orch_key_slot {
    unsigned char hash[32];
    principal who;
    bool used;
} orch_key_slot;
#define ORCH_KEY_SLOTS 64

typedef struct orch {
    orch_opts opts;
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *sock;
    httpconn *conns;         /* the connection cap and request deadline */
    void *tls;               /* SSL_CTX * with --tls-cert (tls.c) */
    struct event *wake, *sig_term, *sig_int, *keepalive;
    bool stopping;
    bool changed;            /* a request may have queued work or freed room */
    uint64_t writes;         /* requests other than GET so far */
    /* Ledger freshness for other readers (main.c): checkpoint after ~1 s
     * idle following writes, at most every 5 s while busy, and every
     * 30 s regardless (changes made by ticks). */
    struct event *ckpt;
    uint64_t ckpt_writes, ckpt_seen, ckpt_at_ms;
    /* Retention (retain.c): the next pass is due then; the last pass. */
    uint64_t retain_next;
    rz_engine_compacted retained;
    /* Out of file descriptors (main.c): a spare descriptor to give back so
     * the pending connection can be accepted and closed, instead of
     * libevent's listener spinning on accept() and warning every time. */
    int spare_fd;
    uint64_t accept_logged_ms;      /* said so at most once a minute */

    rz_engine *e;
    rz_registry *reg;

    rz_auth *auth;           /* DATA/auth, and the admin key's hash */
    rz_auth_throttle *throttle;   /* wrong keys per address and per key */
    struct {                 /* keys found in the auth store (keycache.c) */
        orch_key_slot slot[ORCH_KEY_SLOTS];
        unsigned char salt[32];
        bool salted;
    } keys;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES];
    unsigned char *sk;       /* sodium_malloc'd */

    waiter *waiters;
    watcher *watchers;
    /* Event ids are "<epoch>-<position>": the engine's change log starts
     * again with the process, so an id from another run is not resumed. */
    uint64_t stream_epoch;

    /* Group commit (events.c): the requests of one event-loop pass change
     * the engine in memory; their replies wait in `held` until the pass's
     * one durable commit (the flush event, queued behind them). */
    struct event *flush;
    bool grouped;
    struct held_reply *held; size_t n_held, cap_held;
    /* Audited calls waiting for the pass's begin records (audit.c). */
    struct begun *begun; size_t n_begun, cap_begun;

    stop_list *stops; size_t n_stops;   /* by node id - 1 */
    /* Where each running attempt's live log stands (routes_logs.c). */
    struct live_pos *live; size_t n_live, cap_live;

    /* The audit log (audit.c): where it is and the end of its chain. */
    char audit_path[4096];
    uint64_t audit_seq, audit_bytes;   /* the chain's end (pending records
                                          too); the file's size */
    char audit_last[65];
    uint64_t audit_keyed_since;   /* first keyed record, as the auth store says */
    uint64_t audit_records, audit_ns;   /* appended, and the time they took */
    uint64_t audit_syncs;               /* the log's fdatasyncs */
    /* A pass's end records are in the log but the head has not moved past
     * them yet: it moves with the next auth commit, at the latest when
     * audit_head_ev fires (audit.c). */
    bool audit_head_due;
    /* A pass's end records, rendered (seq, hash) but not yet written: the
     * log's next write (with its fdatasync) takes them first. */
    char *audit_pend;
    size_t audit_pend_len;
    struct event *audit_head_ev;
    uint64_t audit_head_commits;  /* head moves committed on their own, not
                                     with a pass's commit of the auth store */
    /* The auth store's group kept open past its pass (auth_pass.c): each
     * write it holds has a redo copy in the engine's extra records, or is
     * one whose loss is accepted (the audit head). */
    bool auth_kept;
    bool auth_settle_due;         /* its timer fired inside a pass */
    bool auth_settle_late;        /* and a pass's end put it off once */
    bool auth_lag_in_pass;        /* tests: its timer fires in the next pass */
    uint64_t auth_covered;        /* such writes in the open group */
    struct auth_redo *redo; size_t n_redo, cap_redo;   /* their keys */
    uint64_t redo_seq;            /* the last copy's sequence number */
    uint64_t redo_group_max;      /* the highest in the open group */
    uint64_t redo_mark;           /* the auth store's durable mark */
    bool redo_failing;            /* a group's commit failed: rebuild due */
    uint64_t redo_retry_ms;       /* the rebuild's backoff */
    struct event *redo_retry_ev;
    bool redo_rebuild_due;        /* its timer fired inside a pass */
    bool redo_retry_in_pass;      /* tests: its timer fires in the next pass */
    uint64_t auth_commit_failures;
    uint64_t auth_redo_rebuilds;
    uint64_t redo_start_put, redo_start_stale, redo_start_gone;   /* at start */
    struct event *auth_lag_ev;
    uint64_t auth_pass_commits;   /* a pass's commits with writes */
    uint64_t auth_lag_commits;    /* kept groups committed later */
    /* DATA/audit.key, in sodium_malloc'd memory (read-only once loaded,
     * wiped by audit_close). */
    unsigned char *audit_key;
    uint64_t deposit_tick_ms;      /* last expiry pass over deposits */

    struct flows *flows;     /* named flows, versions, triggers (flows.c) */

    /* metrics (metrics.c) */
    unsigned char metrics_key[32];   /* BLAKE2b of the metrics key */
    bool has_metrics_key;
    struct route_stats *route_stats; /* one per route, then "unmatched" */
    struct module_stats *module_stats;   /* step durations by module */
    size_t n_module_stats;
    uint64_t started_ms;
    uint64_t nodes_ended;    /* attempts a poll said ended before their
                                result came (routes_nodes.c; said again by
                                a later poll: counted again) */
    uint64_t http_codes[600];
    uint64_t lat_count[ORCH_LAT_BUCKETS + 1];
    double lat_sum;
    uint64_t lat_n;

    struct evconnlistener *control;   /* DATA/control.sock (backup.c) */
    char *console_dir;       /* the console's files; NULL: not built */
    rz_prices *prices;       /* estimates' price tables, loaded on first use */
    /* File uploads under way (routes_blobs.c). */
    struct blob_up *blob_ups; size_t n_blob_ups;
} orch;

/* One request being answered. */
typedef struct req {
    orch *o;
    struct evhttp_request *r;
    const char *method;
    principal who;
    char params[3][80];      /* the {..} segments of the route, in order */
    cJSON *body;             /* parsed body (an object) or NULL */
    bool cbor;               /* answer in CBOR */
    bool answered;
    bool rate_owed;          /* a token to pay if refused (quota_rate_take) */
    uint64_t audit_of;       /* its audit begin record; 0: not audited */
    int route;               /* its index in the route table; -1: none */
    uint64_t t0_ns;          /* when it arrived (CLOCK_MONOTONIC) */
    /* Its query string, parsed by the first query_get (query_parsed).
     * Unparsed, the head is not initialized, and a copy of the request
     * (a held audited call's) is whole: parse only where it stays. */
    struct evkeyvalq query;
    bool query_parsed;
} req;

/* ---- tls.c ---- */
/* Load and check --tls-cert/--tls-key (0, or -1 said on stderr); attach
 * to o->http so every connection speaks TLS; free at the end. */
int orch_tls_setup(orch *o);
void orch_tls_maker(orch *o, httpconn_limits *lim);  /* TLS connections */
void orch_tls_free(orch *o);

/* ---- console.c: the console at /, every reply's headers, CORS ---- */
/* The console folder: --ui-dir (0, or -1 said: not a folder), else the
 * shipped one if built (rz_data_path). */
int orch_console_setup(orch *o);
bool orch_cors_origin_ok(const char *origin);
/* Security headers on every reply; CORS ones for --cors-origin. */
void orch_http_headers(req *q);
/* OPTIONS at a path whose methods are `allow` ("GET, HEAD, OPTIONS"):
 * 204, or a CORS preflight's answer. */
void orch_options(req *q, const char *allow);
/* GET/HEAD of a path outside the API: a console file, index.html for the
 * app's own paths, or 404. */
void orch_console_serve(req *q, const char *path);

/* ---- routes_builder.c: what the console's builder asks ---- */
void r_flow_validate(req *q);
void r_flow_estimate(req *q);
void r_modules(req *q);

/* ---- backup.c: backup and restore, and the control socket ---- */
/* Listen on DATA/control.sock, where `backup` asks the running server for
 * a consistent copy (a warning when it cannot: backups then need a stop). */
int orch_control_start(orch *o);
void orch_control_stop(orch *o);
int orch_backup_main(int argc, char **argv);
int orch_restore_main(int argc, char **argv);

/* ---- log.c ---- */
enum { ORCH_LOG_ERROR, ORCH_LOG_WARN, ORCH_LOG_INFO, ORCH_LOG_DEBUG };
enum { LOG_STR = 1, LOG_U64, LOG_F64 };
/* One line for `event` if level is enabled: then (key, LOG_*, value)
 * triples, NULL-terminated; LOG_U64 values are uint64_t. */
void orch_log(orch *o, int level, const char *event, ...);
/* "error", "warn", "info", "debug" -> ORCH_LOG_*, else -1. */
int orch_log_level_parse(const char *s);

/* ---- http.c ---- */
int orch_http_start(orch *o);
void orch_print_routes(void);
/* The route table, for the metrics: its size (the "unmatched" slot is
 * this index) and one route's method and path. */
size_t orch_route_count(void);
void orch_route_name(size_t i, const char **method, const char **path);
int orch_route_index(void (*fn)(req *q));
uint64_t orch_mono_ns(void);
uint64_t orch_now_ms(void);
void reply_json(req *q, int code, cJSON *doc);       /* takes doc */
void reply_text(req *q, int code, const char *type, const char *text, size_t len);
/* 410 when job (or deployment) `id` was removed by retention: true. */
bool reply_if_removed(req *q, bool deployment, uint64_t id);
void reply_error(req *q, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A call's end: "no reply" if it gave none, its body freed, the pass told
 * of a change (dispatch, or audit_begin_flush for a call that waited). */
void orch_request_done(req *q);
/* 429 (code RZ_EDENIED): a limit on the caller; retry later, with
 * Retry-After: retry_s seconds when not 0. */
void reply_limit(req *q, unsigned retry_s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The caller's address ("" if unknown). */
const char *orch_peer(req *q);
/* The library's last error as the reply for rc. */
void reply_rz(req *q, int rc);
void reply_diags(req *q, int rc, const rz_diags *d);
int http_status_of(int rc);
/* Body helpers: each answers 400 itself and returns false on bad input. */
bool body_fields(req *q, const char *const *allowed);
bool body_u64(req *q, const char *name, bool required, uint64_t max,
              uint64_t *out, bool *present);
bool body_obj(req *q, const char *name, cJSON **out);
bool body_str(req *q, const char *name, bool required, const char **out);
bool param_u64(req *q, int i, uint64_t *out);
bool param_account(req *q, int i, rz_ledger_id *out);
/* A query parameter's value in *value (NULL: not given), kept until the
 * request is done; the query string is parsed once a request. */
bool query_get(req *q, const char *name, const char **value);
bool query_u64(req *q, const char *name, uint64_t def, uint64_t max,
               uint64_t *out);
cJSON *parse_json_text(const char *text);
void orch_count_code(orch *o, int code);
/* A reply to a routed request (metrics.c): counted by route, method and
 * code, with its time since arrival. route -1: by code only. */
void orch_count_reply(orch *o, int route, int code, uint64_t t0_ns);
int orch_metrics_init(orch *o);
void orch_metrics_free(orch *o);

/* ---- auth.c ---- */
/* Whether key is the metrics key (compared in constant time by hash). */
bool auth_is_metrics_key(orch *o, const char *key);
int auth_check_metrics_key(const char *key, const char *from);
/* Keep the metrics key's hash (from --metrics-key-file). */
int auth_set_metrics_key(orch *o, const char *key);
/* The store and the throttle, and the redo copies a crash left in the
 * engine (open first) put back; messages on stderr. */
int auth_open(orch *o);
void auth_close(orch *o);

/* ---- auth_pass.c: a pass's writes to the auth store ---- */
/* A signed result's record / a job attempt's log kept in the auth store,
 * with a redo copy in the engine's extra records when in a pass (a log:
 * when `redo`, a result's; a streamed log has none and is committed with
 * its pass). Between passes a kept group is committed first. */
int auth_put_result(orch *o, uint64_t job, const char *rec);
int auth_put_log_bytes(orch *o, uint64_t job, uint32_t attempt,
                       const char *bytes, size_t len, bool redo);
/* A write whose loss at a crash is accepted (the audit head). */
void auth_write_covered(orch *o);
/* The pass's end (on_flush): commit the auth store's group, or keep it
 * open when every write it holds is covered. */
int auth_pass_commit(orch *o);
/* After the pass's replies are queued (on_flush): a kept group whose
 * time ran out inside the pass is committed once they are written; a
 * rebuild that came due inside it is made. */
void auth_pass_end(orch *o);
/* Commit a kept group now (between passes only: a timer, retention, a
 * backup, a stop, a pass that cannot group); nothing inside a pass. */
void auth_settle(orch *o);
/* Stopping: whatever group is open committed (in a pass or not). */
void auth_stop(orch *o);
/* At start, once the stores agree: the redo copies a crash left in the
 * engine put back (stderr says why not; the start then stops). */
int auth_redo_replay(orch *o);
void auth_pass_free(orch *o);
/* Tests only (main.c, from RHIZOS_TEST_AUTH_FAULT): asked before each
 * commit of a group holding redo copies (settle: a kept group's, between
 * passes); true fails that commit as a full store would. */
extern bool (*auth_commit_seam)(orch *o, bool settle);
/* ORCH_LIVE_PUT_MS; tests (main.c, RHIZOS_TEST_LIVE_PUT_MS): longer, so
 * that a streamed log's later chunks wait in memory for the stop. */
extern uint64_t orch_live_put_ms;
/* Tests only (main.c, from RHIZOS_TEST_AUTH_TIMERS=in-pass): the kept
 * group's and the rebuild's timers are not armed; each fires inside the
 * next pass instead, as
 * on a busy server (libevent runs a round's ready requests first). */
extern bool auth_timers_in_pass;
/* The admin key, checked for strength (rhizos/auth.h); a message on stderr
 * naming `from` when it is too weak. check: before any store is open. */
int auth_check_admin(const char *key, const char *from);
int auth_set_admin(orch *o, const char *key, const char *from);
int auth_lookup(orch *o, const char *key, principal *out);
/* ---- keycache.c: whom a key names, kept between its requests ---- */
/* auth_lookup's answer: from the cache, else the store (a found client or
 * node key is kept). */
int keycache_lookup(orch *o, const char *key, principal *out);
/* Forget every key (wiped): before any key is written, and at close. */
void keycache_clear(orch *o);
/* Seconds `client` (an address; IPv6 counted by its /64) must wait before
 * trying `key` (0: may try now); a failure to count with auth_failed. */
unsigned auth_wait_s(orch *o, const char *client, const char *key);
void auth_failed(orch *o, const char *client, const char *key);
/* A fresh random key "<prefix><64 hex>" (buf >= 70 bytes). */
void auth_new_key(const char *prefix, char *buf, size_t cap);
int auth_put_key(orch *o, const char *key, const principal *p);
/* rz_auth_identity_bind: the node's fresh token, its last one revoked. */
int auth_bind_node(orch *o, const unsigned char ed25519[32], uint64_t node,
                   const char *x25519_hex, const char *token, rz_ledger_id account);
int auth_node_pk(orch *o, uint64_t node, unsigned char pk[32]);
int auth_put_account(orch *o, rz_ledger_id id, const char *name,
                     const char *wallet);
int auth_put_creds(orch *o, uint64_t dep, const char *json);
/* NULL when none; release with free. */
char *auth_get_creds(orch *o, uint64_t dep);
/* log_times.c: when a job's log lines arrived (--since). A mark says the
 * lines from byte `pos` (to the next mark) had all arrived by `ms`. */
typedef struct log_mark { uint64_t pos, ms, first; } log_mark;
typedef struct log_times { log_mark *v; size_t n, cap; } log_times;
/* A chunk that starts at `pos` arrived at `ms` (marks at least 0.2 s apart). */
void log_times_add(log_times *t, uint64_t pos, uint64_t ms);
/* The log lost its first `cut` bytes. */
void log_times_shift(log_times *t, uint64_t cut);
void log_times_clear(log_times *t);
/* [[pos, ms], ...] (malloc'd; NULL when out of memory); and back (into
 * *out, which it overwrites: clear it first). */
char *log_times_json(const log_times *t);
void log_times_parse(const char *json, log_times *out);
/* A result's log replaced the streamed one: the marks moved onto the same
 * lines in it, the lines after them marked `now_ms`; none kept when the
 * streamed log's end is not found in it. */
void log_times_rebase(log_times *t, const char *old_log, size_t old_len,
                      const char *new_log, size_t new_len, uint64_t now_ms);
/* Where the lines that arrived at or after since_ms start in `log`: 0 when
 * no time is known (everything is shown), len when none did. */
size_t log_times_since(const log_times *t, const char *log, size_t len,
                       uint64_t since_ms);

/* A job attempt's log, with when its lines arrived (times: NULL or none
 * kept: not known), stored as the log, a NUL, the marks (log_times.c);
 * redo: a result's, with a redo copy (auth_put_log_bytes). */
int auth_put_log(orch *o, uint64_t job, uint32_t attempt, const char *log, size_t len,
                 const log_times *times, bool redo);
char *auth_get_log(orch *o, uint64_t job, uint32_t attempt);
/* The same with its marks into *times (cleared first). */
char *auth_get_log_times(orch *o, uint64_t job, uint32_t attempt, log_times *times);
rz_ledger_id auth_random_id(void);
bool hex_decode(const char *hex, unsigned char *out, size_t n);
void hex_encode(const unsigned char *in, size_t n, char *out);
char *b64_encode(const unsigned char *in, size_t n);
unsigned char *b64_decode(const char *in, size_t *n);

/* ---- audit.c ---- */
int audit_open(orch *o);
/* Wipe and free the key audit_open loaded (NULL-safe on a never-opened o). */
void audit_close(orch *o);
/* Record that q starts (its caller, route and amount), durably; false:
 * answered 500, do nothing. */
bool audit_begin(req *q, const char *path);
/* The same, grouped: q is kept (copied) and `run` on it once the pass's
 * begin records are durable together (audit_begin_flush, at the start of
 * the pass's flush; one write, one fdatasync, one move of the head). If
 * that fails each is answered 500 with nothing done. Then
 * orch_request_done. false: out of memory, nothing kept (use
 * audit_begin). */
bool audit_begin_later(req *q, const char *path, void (*run)(req *));
void audit_begin_flush(orch *o);
/* At shutdown: each kept call answered "stopping", undone. */
void audit_begin_drop(orch *o);
/* Record the outcome (HTTP status) of the operation whose begin record is
 * `of`, durably, before its reply goes; false: it failed (the reply must
 * become AUDIT_FAIL_JSON, a 500). */
bool audit_end(orch *o, uint64_t of, int code);
/* The end records of n operations (of[i] with code[i]): a pass's held
 * replies (group commit). They are kept in memory and written, with one
 * fdatasync, at the front of the log's next write (the next pass's begin
 * records, or audit_head_settle within AUDIT_HEAD_LAG_MS); the head moves
 * past them only after it. All or none: false, every reply must become
 * AUDIT_FAIL_JSON. */
bool audit_end_many(orch *o, const uint64_t *of, const int *code, size_t n);
/* Write and sync the pending end records, then move the head past them
 * (at shutdown, before the auth store closes, and from the timer). */
void audit_head_settle(orch *o);
#define AUDIT_FAIL_JSON "{\"error\":{\"code\":\"RZ_EIO\",\"message\":\"the " \
    "audit log cannot be written; the outcome of this operation is not "   \
    "recorded\"}}"
/* Check DATA's audit log (its chain, keyed with DATA/audit.key, and its
 * end and keyed records against the head the auth store keeps) without
 * changing anything; `print` (may be NULL) gets each record. *headed (may
 * be NULL): whether a head was there to check against (without it only
 * the chain itself is proven). `torn_ok`: a last record cut short by a
 * crash (which a start removes) is said on stderr, not a failure, as
 * `check` judges a start; `audit --verify` judges the log as it is. 0, or
 * -1 with audit_error(). */
int audit_check(const char *data, FILE *print, uint64_t *records,
                bool *headed, bool torn_ok);
const char *audit_error(void);
/* `rhizos-orchestrator audit --data DIR [--verify|--accept]` (argv[0] "audit"). */
int orch_audit_main(int argc, char **argv);

/* ---- quota.c ---- */
/* Is q (a route run by fn) an admin or money operation, or a job's
 * submit, cancel or result (all in the audit log)? */
bool quota_audited(const req *q, void (*fn)(req *q));
/* Take one request from the caller's bucket; false: answered 429 with
 * Retry-After. The admin key is not limited. A node's poll and reports on
 * its jobs (route fn) only need a token there: they pay one when refused,
 * through quota_rate_refused with the answer's status. */
bool quota_rate_take(req *q, void (*fn)(req *q));
void quota_rate_refused(req *q, int code);
/* Room for one more job (deployment false) or deployment of the caller's
 * account? Else answered 429. */
bool quota_client_room(req *q, bool deployment);
/* How many of the account's deposit requests (code RZ_LEDGER_CODE_DEPOSIT)
 * or withdrawals (RZ_LEDGER_CODE_WITHDRAW) are open. */
int quota_open_count(orch *o, rz_ledger_id account, uint32_t code,
                     uint64_t *n);
/* Expire the deposit requests that are due (at most every 30 s
 * unless `force`). */
void quota_expire(orch *o, bool force);
void quota_free(void);

/* ---- events.c ---- */
void orch_after(orch *o);
/* Open the pass's group (once) and queue its flush. */
void orch_group_open(orch *o);
/* Room for one more held reply? False when no group is open or there is
 * no memory: the reply is sent now. */
bool orch_hold_room(orch *o);
/* Keep a reply until the group is durable (takes body; NULL: none); its
 * audit end record (audit_of, 0: none) is written then, with the status
 * that is sent. False when it cannot be held (orch_hold_room): send it
 * now. */
bool orch_hold_reply(orch *o, struct evhttp_request *r, int code,
                     const char *reason, struct evbuffer *body,
                     uint64_t audit_of);
void orch_group_discard(orch *o);
void orch_hold_poll(req *q, uint64_t node, unsigned wait_s);
void orch_watch(req *q, uint64_t dep);
void orch_stop_add(orch *o, uint64_t node, uint64_t job, uint32_t attempt);
cJSON *orch_stops_take(orch *o, uint64_t node);
void orch_shutdown_streams(orch *o);
void orch_keepalive(evutil_socket_t fd, short what, void *arg);
void orch_arm_wakeup(orch *o);
void orch_waiter_drop_node(orch *o, uint64_t node);
/* A "step_log" event (`json`) to the deployment's streams of changes, and
 * to its status streams that asked for logs (?logs=1). No id: it does not
 * move the point a stream resumes from. */
void orch_watch_log(orch *o, uint64_t dep, const char *json);
bool orch_node_waiting(orch *o, uint64_t node);

/* ---- routes_*.c ---- */
void r_health(req *q);
void r_metrics(req *q);
void r_stats(req *q);
void r_keys(req *q);
void r_identity(req *q);
void r_nodes_list(req *q);
void r_node_register(req *q);
void orch_rate_free(void);   /* the registration buckets */
void r_node_heartbeat(req *q);
void r_node_poll(req *q);
void r_node_result(req *q);
/* POST .../result with a body over --max-body (authenticated). */
void r_node_result_oversize(req *q, size_t len);
void r_node_decline(req *q);
/* The node of the path ({id}), the caller's own (a node token names one);
 * false: answered 404. */
bool own_node(req *q, uint64_t *node);
/* routes_events.c: POST .../jobs/{job}/events, a service's readiness and
 * events (docs/services.md). */
void r_node_events(req *q);
/* routes_logs.c: POST .../jobs/{job}/log, a running job's log lines. */
typedef struct live_pos live_pos;
void r_node_log(req *q);
/* A running job's streamed log (NULL: none streamed): GET shows it;
 * *times (may be NULL) when its lines arrived. */
const char *orch_live_log(orch *o, uint64_t job);
const char *orch_live_log_times(orch *o, uint64_t job, const log_times **times);
/* The job's log at `attempt` (0: its current one, streamed or stored)
 * from the first line that arrived at or after since_ms (malloc'd; NULL:
 * none kept). */
char *orch_log_since(orch *o, uint64_t job, uint32_t attempt, uint64_t since_ms);
/* The streamed log's marks moved onto a result's log of the same job. */
void orch_live_rebase(orch *o, uint64_t job, const char *log, size_t len,
                      log_times *out);
/* Bytes of the job's streamed attempt (*attempt) taken so far; 0 and
 * attempt 0 when none streams. */
uint64_t orch_live_taken(orch *o, uint64_t job, uint32_t *attempt);
/* The job's attempt reported: forget its stream; `keep` stores what was
 * streamed first (a result without a log of its own). */
void orch_live_end(orch *o, uint64_t job, bool keep);
/* At shutdown: store what is not stored yet, free. */
void orch_live_free(orch *o);
void r_node_delete(req *q);
void r_node_retire(req *q);         /* POST /nodes/retire, signed by the key */
void r_node_retire_admin(req *q);   /* POST /nodes/{id}/retire, admin */
/* A job's node and its signed result: "node_id", "result_signature",
 * "result_digest", "result_verified" added to the job's JSON. */
void orch_job_attest(orch *o, cJSON *j, const rz_engine_job_info *ji);
/* routes_verify.c: GET/POST /api/v1/nodes/{id}/challenge, and a node's
 * verification as JSON ({"state","reputation","unverified"}; full: also
 * "claims" and "record"). */
void r_node_challenge_get(req *q);
void r_node_challenge_answer(req *q);
cJSON *verify_json(orch *o, uint64_t node, bool full);
/* Poll the engine for `node`: 1 answered with an assignment, 0 nothing. */
int orch_deliver(orch *o, struct evhttp_request *r, uint64_t node, bool cbor,
                 uint64_t t0_ns);
void r_job_submit(req *q);
void r_jobs_list(req *q);
void r_job_get(req *q);
void r_job_cancel(req *q);
void r_job_refund(req *q);
cJSON *job_json(orch *o, uint64_t id, bool with_log);
/* routes_llm.c: llm jobs and GET /api/v1/models (docs/llm.md). The llm
 * fields of a job body are refused on other jobs (false, replied); an llm
 * job's submission replies itself. */
bool llm_fields_elsewhere(req *q, bool llm);
void llm_job_submit(req *q, const rz_engine_module_job *mj);
void r_models(req *q);
void r_account_create(req *q);
void r_account_get(req *q);
void r_whoami(req *q);
void r_account_deposit(req *q);
void r_account_credit(req *q);
void r_account_withdraw(req *q);
void r_account_withdrawals(req *q);
void r_withdrawals_list(req *q);
void r_withdrawal_get(req *q);
void r_withdrawal_complete(req *q);
void r_withdrawal_fail(req *q);
void r_withdrawal_cancel(req *q);
void r_account_payments(req *q);
void r_payments_stats(req *q);
void r_deposit_confirm(req *q);
void r_deposit_cancel(req *q);
void r_flow_deploy(req *q);
/* routes_creds.c: an account's stored credentials. creds_fill_stored adds
 * to *creds (made in the body if NULL) each credential the flow `text`
 * references and the deploy did not supply, from the caller's own store;
 * false: answered (a stored one of another type than a step asks for). */
void r_cred_put(req *q);
void r_creds_list(req *q);
void r_cred_delete(req *q);

/* ---- routes_blobs.c: file outputs on the network ---- */
#define ORCH_BLOB_PART_MAX (1024u * 1024u)   /* one PUT's or GET's bytes */
#define ORCH_BLOB_UPLOADS 64u                /* under way at once */
#define ORCH_BLOB_IDLE_MS (10u * 60u * 1000u)   /* an upload left this long goes */
#define ORCH_BLOB_FILE_MAX (1024ull << 20)   /* as embedded runs (rz_runner_opts) */
#define ORCH_BLOB_RUN_MAX (4096ull << 20)
void r_blob_put(req *q);
void r_blob_get(req *q);
/* True when every `$file` of a result's outputs was uploaded for its run;
 * else a 409 was sent. */
bool orch_blobs_result_ok(req *q, uint64_t job, const cJSON *outputs);
void orch_blobs_forget(orch *o, const uint64_t *jobs, size_t n_jobs,
                       const uint64_t *deps, size_t n_deps);
void orch_blobs_free(orch *o);
/* Uploads a stop or crash cut short (their temporary files) removed: 0. */
int orch_blobs_start(orch *o);
bool creds_fill_stored(req *q, const char *text, cJSON **creds);
void r_flows_list(req *q);
void r_flow_status(req *q);
void r_flow_events(req *q);
/* routes_flow_logs.c: GET /api/v1/flows/{id}/logs. */
void r_flow_logs(req *q);
void r_flow_cancel(req *q);
void r_flow_pause(req *q);
void r_flow_resume(req *q);
void r_flow_approve(req *q);
void r_flow_reject(req *q);
/* The status object of a deployment with held and charged micros. */
char *flow_status_text(orch *o, uint64_t dep);
void orch_observe_dispatch(orch *o, uint64_t job, uint64_t now);
/* A job's result was taken: its billed run time into its module's
 * histogram (rhizos_step_duration_seconds). */
void orch_observe_step(orch *o, uint64_t job);
uint64_t orch_volume_micros(orch *o);

/* flows.c: named flows, their versions and triggers (docs/triggers.md). */
typedef struct flows flows;
int flows_open(orch *o);     /* DATA/flows; 0, or -1 said on stderr */
void flows_close(orch *o);
/* Before a deploy: its webhooks' secrets supplied? False: answered. */
bool flows_deploy_check(req *q, const char *text, const cJSON *creds);
/* A flow whose steps run the caller's named flows (flow://NAME@N): the
 * text expanded (takes `text`), *creds (made in the body if NULL) gaining
 * what the named flows were deployed with (flows_expand_creds); one without
 * sub-flows as it is; NULL:
 * answered (422 with the diagnostics), or `text` NULL. Files are never read. */
char *flows_expand_named(req *q, char *text, cJSON **creds);
/* rz_flow_validate, the caller's named sub-flows expanded first (*f
 * replaced); a file sub-flow refused. */
int flows_expand(req *q, rz_flow **f, const rz_registry *reg, rz_diags *d);
/* flows_expand; `creds` (may be NULL) gains the sealed credentials each
 * named flow's own deploy left, where it has none of that id. */
int flows_expand_creds(req *q, rz_flow **f, const rz_registry *reg, rz_diags *d,
                       cJSON *creds);
/* The credentials record kept with the named flow version deployment
 * `dep` ran (sealed to this orchestrator for long), or NULL. */
char *flows_dep_creds(orch *o, uint64_t dep);
/* Deployment `dep` finished: fire the flow triggers that follow its flow. */
void flows_on_finished(orch *o, uint64_t dep);
/* Would the owner's flow `self` with triggers `mine` close a cycle of flow
 * triggers? The cycle ("a -> b -> a") into `path`. */
bool flows_cycle(orch *o, rz_ledger_id owner, const char *self, const cJSON *mine,
                 char *path, size_t cap);
void r_event_publish(req *q);
/* A service step's event (taken, not a repeat) of job `job`: the flows of
 * the job's owner with an event trigger of that name run (data: its JSON
 * text, or NULL). */
void flows_on_service_event(orch *o, uint64_t job, const char *event, const char *data);
/* Clearing the step cache (flows.c): a mark that the owner's results of
 * `flow` (NULL: any) and `step` (NULL: any) up to `ms` are not reused;
 * and a reuse map of deployment `from` (replaced) without them. */
int flows_cache_clear(orch *o, rz_ledger_id owner, const char *flow, const char *step,
                      uint64_t ms);
int flows_cache_filter(orch *o, rz_ledger_id owner, uint64_t from, char **map);
void r_cache_clear(req *q);
void r_named_flow_trigger_disable(req *q);
void r_named_flow_trigger_enable(req *q);
void r_named_flow_diff(req *q);
/* After a deploy: the flow's version (new when the content is), the run's
 * record; "flow_id" and "version" added to reply (may be NULL). */
int flows_record_deploy(orch *o, rz_ledger_id owner, const char *text, const cJSON *inputs,
                        const char *creds_rec, const cJSON *creds, const char *note,
                        uint64_t dep, uint64_t now_ms, cJSON *reply);
/* "flow_id", "version" and "trigger" of a deployment's status. */
void flows_status_extra(orch *o, uint64_t dep, cJSON *doc);
/* Retention: the run records of `deps` (d/<dep>) and the marks of what
 * they fired (o/<dep>/...), in one commit. */
int flows_forget(orch *o, const uint64_t *deps, size_t n);
void r_named_flows_list(req *q);
void r_named_flow_get(req *q);
void r_named_flow_rollback(req *q);
void r_hook(req *q);

/* retain.c: one bounded retention pass when one is due (housekeeping
 * timer). */
void orch_retain(orch *o, uint64_t now);

/* stores.c: the data directory's stores before anything opens them, and
 * `rhizos-orchestrator check`. 0, or -1 with the reason printed. */
int orch_stores_check(const char *data);
/* The options of backup, restore and check: --data DIR, --compact (only
 * where `compact` is given), --help, then `operands` operands from argv[optind].
 * -1: go on; else the exit status, usage(stdout, 0) or usage(stderr, 2)
 * printed. */
int orch_data_opts(int argc, char **argv, int operands, const char **data,
                   bool *compact, int (*usage)(FILE *, int));
int orch_stores_agree(rz_engine *e, const char *data, bool full);
int orch_check_main(int argc, char **argv);
int orch_migrate_main(int argc, char **argv);

#endif

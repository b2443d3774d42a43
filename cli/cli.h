/* Shared state and helpers of the `rhizos` command-line shell. */
#ifndef RZ_CLI_H
#define RZ_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rhizos/rhizos.h"

/* Exit codes (DESIGN §5). */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef struct cli {
    bool json;
    bool quiet;
    bool no_sandbox;
    const char *jobs_arg;         /* --jobs: a number for `flow run`, a
                                     file for `match` */
    const char *vault;            /* --vault FILE */
    const char *type;             /* --type T */
    bool reveal;                  /* --reveal */
    const char *nodes;            /* --nodes FILE */
    const char *policy;           /* --policy P */
    const char *trusted[16];      /* --trusted-publisher KEY (repeatable) */
    size_t n_trusted;
    const char *prices;           /* --prices FILE (estimate tables) */
    const char *key_file;         /* --key FILE (module sign) */
    const char *data_dir;         /* NULL: default */
    const char *format;           /* export format, NULL: json */
    const char *modules[32];      /* --modules, in order given */
    size_t n_modules;
    const char *inputs[256];      /* --input k=v */
    size_t n_inputs;
    const char *orchestrator;     /* NULL until cli_connection() */
    const char *api_key;
    const char *api_key_file;     /* --api-key-file FILE */
    const char *context;          /* --context NAME (client config) */
    const char *ca_file;          /* --ca-file FILE: https trust */
    bool connection_resolved;
    char *owned_url, *owned_key, *owned_ca;  /* what cli_connection() made */
    const char *max_cost;         /* --max-cost DOLLARS (run) */
    const char *priority;         /* --priority N (run) */
    bool wait;                    /* --wait (run) */
    const char *configs[64];      /* --config k=v (run) */
    size_t n_configs;
    const char *labels[64];       /* --label k=v (run): node labels required */
    size_t n_labels;
    const char *queue_timeout;    /* --queue-timeout S (run) */
    const char *replicas;         /* --replicas K (run) */
    const char *image;            /* -i IMAGE (run -t docker) */
    const char *cmd[64];          /* --cmd ARG (run -i): the container's argv */
    size_t n_cmd;
    const char *gpus, *memory, *cpus;   /* --gpus N, --memory MB, --cpus N */
    const char *name;             /* --name N (account create) */
    const char *address;          /* --address A (account withdraw) */
    const char *tx;               /* --tx REF (admin withdrawal) */
    const char *reason;           /* --reason TEXT (admin withdrawal fail) */
    const char *limit;            /* --limit N (flow runs), NULL: default */
    bool prune;                   /* --prune (flow runs) */
    const char *older_than;       /* --older-than AGE (flow runs --prune) */
    const char *container_host;   /* --container-host URL (flow run) */
    const char *llm_servers;      /* --llm KIND=URL... (flow run) */
    bool follow;                  /* --follow (flow logs) */
    const char *attempt;          /* --attempt N (job logs) */
    const char *since;            /* --since T (flow logs, job logs) */
    const char *output;           /* -o PATH (flow file) */
    const char *listen;           /* --listen HOST:PORT (flow serve, ui) */
    const char *prompt;           /* -p PROMPT (run -t llm) */
    const char *model;            /* --model M (run -t llm) */
    const char *max_tokens;       /* --max-tokens N (run -t llm) */
    const char *temperature;      /* --temperature T (run -t llm) */
    const char *llm_timeout;      /* --timeout S (run -t llm) */
    const char *comment;          /* --comment TEXT (flow approve|reject) */
    const char *note;             /* --note TEXT (flow deploy) */
    uint64_t resume_from;         /* flow resume ID FILE: the deployment reused */
    const char *reuse_json;       /* flow resume RUN: its step cache */
    const char *resume_inputs;    /* ... its inputs (unless --input) */
    const char *resumed_run;      /* ... its id */
    const char *run_id;           /* flow run under this id (flow serve's
                                     fires); NULL: a new one */
    bool tell_recorded;           /* flow run: once the run is recorded, a
                                     byte to recorded_fd (a socket), then
                                     closed */
    int recorded_fd;
    char **args;                  /* positionals after "GROUP VERB" */
    int nargs;
    const char *ui_dir;           /* --ui-dir DIR (ui) */
    bool open;                    /* --open (ui) */
    const char *flow;             /* --flow NAME (flow cache) */
    const char *step;             /* --step ID (flow cache) */
    bool remote;                  /* --remote (flow cache clear) */
} cli;

int cli_flow(cli *c, const char *verb);
/* llm.c: rhizos models; run -t llm's body (NULL: said why) and its answer
 * printed (the exit code). */
int cli_models(cli *c, const char *verb);
void cli_models_usage(void);
char *cli_llm_body(cli *c, uint64_t max_cost, uint64_t priority,
                   uint64_t queue_timeout);
int cli_llm_show(const cli *c, const char *reply);
/* True when no llm option is given (else said why): for other runs. */
bool cli_llm_flags_unused(const cli *c);
void cli_flow_usage(void);
/* ui.c: `rhizos ui`, the console on this machine (execs rhizos-ui) */
int cli_ui(cli *c, const char *verb);
void cli_ui_usage(void);
int cli_match(cli *c, const char *verb);
void cli_match_usage(void);
int cli_vault(cli *c, const char *verb);
void cli_vault_usage(void);
int cli_ledger(cli *c, const char *verb);
void cli_ledger_usage(void);
int cli_module(cli *c, const char *verb);
void cli_module_usage(void);
/* rhizos flow estimate (cli/estimate.c). */
int cli_flow_estimate(cli *c);
int cli_schema(cli *c, const char *verb);
void cli_schema_usage(void);

/* A registry of --modules, $RHIZOS_MODULES and the default examples/modules,
 * trusting --trusted-publisher keys. Problems are printed; returns NULL when
 * out of memory or a trusted key is malformed. */
rz_registry *cli_registry(const cli *c);
/* How sub-flows expand here: named ones (flow://NAME@N) from the folder
 * $RHIZOS_FLOWS, or kept for the orchestrator (`keep_named`, deploy). */
const rz_flow_expand_opts *cli_expand_opts(bool keep_named);
/* The data directory: --data, else $XDG_DATA_HOME/rhizos, else
 * ~/.local/share/rhizos. Returns a malloc'd string. */
char *cli_data_dir(const cli *c);
/* Print diagnostics compiler-style on stderr (or nothing if empty). */
void cli_print_diags(const rz_diags *d);
/* "rhizos: <message from rz_error_last>" on stderr. */
void cli_error(const char *context, int rc);
/* prune.c: an age ("30d", "12h", "45m", "10s"; a bare number is days) in
 * ms: 0, or -1 when malformed. `flow runs --prune`; the bounded pass after
 * a recorded `flow run` (RHIZOS_RUNS_KEEP). */
int cli_age_parse(const char *s, uint64_t *ms);
/* --since: a duration ago with its unit (30s, 10m, 2h, 1d) or an RFC 3339
 * time, as unix ms; -1 when it is neither. */
int cli_since_parse(const char *s, uint64_t now_ms, uint64_t *since_ms);
int cli_runs_prune(cli *c);
void cli_runs_prune_auto(const char *data_dir);
bool cli_stderr_tty(void);
/* Open and unlock the vault of --vault / $RHIZOS_VAULT / the default path,
 * asking for the password if $RHIZOS_VAULT_PASSWORD is unset. Problems are
 * printed; NULL then. */
struct rz_vault *cli_vault_open_unlocked(const cli *c);

/* ---- Network commands (cli/net.c, cli/account.c, cli/deploy.c) ---- */
struct rz_client;
struct cJSON;
int cli_status(cli *c, const char *verb);
int cli_nodes(cli *c, const char *verb);
int cli_run(cli *c, const char *verb);
int cli_job(cli *c, const char *verb);
int cli_cancel(cli *c, const char *verb);
void cli_net_usage(void);
int cli_account(cli *c, const char *verb);
/* credentials.c: an account's credentials stored on the orchestrator. */
int cli_credentials(cli *c, const char *verb);
void cli_credentials_usage(void);
/* vault.c: ms since the epoch as "YYYY-MM-DDThh:mm:ssZ". */
void cli_iso_time(uint64_t ms, char *out, size_t cap);
/* deploy.c: the orchestrator's X25519 key (GET /api/v1/keys); false with
 * *ex set (printed). */
bool cli_orchestrator_key(struct rz_client *cl, unsigned char pk[32], int *ex);
void cli_account_usage(void);
int cli_admin(cli *c, const char *verb);
void cli_admin_usage(void);
int cli_flow_deploy(cli *c);
/* flow list | versions | rollback | schedule (named.c) */
int cli_flow_named(cli *c, const char *verb);
void cli_named_usage(void);
/* flow pause | resume | approve | reject (gate.c) */
int cli_flow_gate(cli *c, const char *verb);
/* flow resume RUN_ID [FILE] on this machine (flow.c) */
int cli_flow_resume_local(cli *c);
/* flow cache clear | list | stats (cache.c); and a run's step cache `*map`
 * (replaced) without what was cleared on this machine for flow `flow`: 0,
 * or -1 (said on stderr). */
int cli_flow_cache(cli *c);
/* flow publish EVENT [DATA] (serve_follow.c) */
int cli_flow_publish(cli *c);
void cli_cache_usage(void);
int cli_cache_filter(const cli *c, const char *flow, char **map);
void cli_gate_usage(void);
int cli_flow_status(cli *c);
int cli_flow_watch(cli *c);
int cli_flow_cancel(cli *c);
/* flow stop ID (stop.c): a deployment cancelled, an embedded run told to
 * stop (its `flow run` writes its pid with cli_live_pid_write). */
int cli_flow_stop(cli *c);
void cli_live_pid_write(const char *data_dir, const char *run_id);
void cli_live_pid_remove(const char *data_dir, const char *run_id);
/* logs.c: flow logs ID [STEP]; and the live log file `flow run` appends a
 * running step's lines to (DATA/live/RUN.log, "STEP\tline"), for --follow. */
int cli_flow_logs(cli *c);
/* files.c: flow file ID STEP OUTPUT [-o PATH], a step's file output. */
int cli_flow_file(cli *c);
int cli_job_logs(cli *c, uint64_t id);
char *cli_live_path(const char *data_dir, const char *run_id);
FILE *cli_live_open(const char *data_dir, const char *run_id);
void cli_live_write(FILE *f, const char *step, const char *lines);
void cli_deploy_usage(void);
/* Shell completion (cli/complete.c) from the command and option tables:
 * `verbs` space-separated ("" for none). */
typedef struct { const char *name, *verbs; } cli_command;
typedef struct { const char *name; bool takes_value; } cli_option;
int cli_completion(const char *shell, const cli_command *cmds, size_t n_cmds,
                   const cli_option *opts, size_t n_opts);

/* Fills c->orchestrator and c->api_key from the flags, the environment and
 * the client config (cli/config.c); 0, or -1 with the problem printed. */
int cli_connection(cli *c);
void cli_connection_free(cli *c);
/* A client for the resolved orchestrator and key; NULL (printed) when the
 * config, the key file or the URL is malformed. */
struct rz_client *cli_client(cli *c);
/* Print the failure; EXIT_UNREACHABLE for RZ_ECONNECT, else EXIT_FAILED. */
int cli_net_fail(const char *what, int rc);
/* One JSON request; EXIT_OK with *reply (rz_free) or the printed failure. */
int cli_request(struct rz_client *cl, const char *method, const char *path,
                const char *body, char **reply);
/* Dollars from integer micro-dollars with as many decimals as needed, at
 * least 2: "$12.34", "-$0.05", "$0.000834". */
void cli_money_u64(uint64_t micros, bool negative, char *buf, size_t cap);
/* The price tables of --prices, the shipped ones filling what it lacks;
 * NULL (printed) when none can be read. */
struct rz_prices *cli_prices(const cli *c);
void cli_money(int64_t micros, char *buf, size_t cap);
/* Dollars as typed ("12.34", "$0.000834", "5"; at most 6 decimals) into
 * exact micro-dollars, <= max. False on anything else. */
bool cli_parse_dollars(const char *s, uint64_t max, uint64_t *out);
/* Pretty JSON on stdout. */
void cli_print_json(const char *json);
/* A decimal number up to `max`, nothing else. */
bool cli_parse_u64(const char *s, uint64_t max, uint64_t *out);
int64_t cli_json_int(const struct cJSON *o, const char *name);
const char *cli_json_str(const struct cJSON *o, const char *name, const char *dflt);
/* --input NAME=VALUE as a JSON object (VALUE as JSON if it parses, else a
 * string); NULL (printed) on a malformed one. */
char *cli_inputs_json(const cli *c);

/* flow.c: `flow run` of c->args[0]; one flow loaded and validated
 * (problems printed; NULL then). serve.c: `flow serve`. */
int cli_flow_run(cli *c);
rz_flow *cli_flow_load(const cli *c, const char *path, const rz_registry *reg);
int cli_flow_serve(cli *c);
void cli_serve_usage(void);

#endif

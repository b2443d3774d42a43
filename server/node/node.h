/* The node agent's parts (server/node/): configuration, keys and state,
 * the orchestrator protocol, the start loop and one job. Private to
 * rhizos-node; only the public rz_* API is used underneath. */
#ifndef RHIZOS_NODE_H
#define RHIZOS_NODE_H

#include <stddef.h>
#include <stdint.h>

/* ---- config.c: DATA/config.toml, a small TOML subset ---- */

#define NODE_CONFIG_MAX_BYTES (64u * 1024u)
#define NODE_CONFIG_MAX_LABELS 64u
#define NODE_CONFIG_MAX_LIST 64u     /* entries of an array value */
#define NODE_CONFIG_MAX_LLM 8u       /* [[llm]] tables */

/* One model server this node fronts ([[llm]], docs/llm.md). */
typedef enum { NODE_LLM_OLLAMA = 1, NODE_LLM_OPENAI = 2 } node_llm_kind;
typedef struct node_llm {
    node_llm_kind kind;              /* kind = "ollama" | "openai" */
    char *url;                       /* url = "http://127.0.0.1:11434" */
    double timeout_s;                /* timeout_s: one generation (default
                                        NODE_LLM_TIMEOUT_S) */
} node_llm;
#define NODE_LLM_TIMEOUT_S 300.0
#define NODE_LLM_URL_MAX 512u
#define NODE_LLM_REFRESH_S 60.0

typedef struct node_config {
    char *orchestrator_url;          /* [orchestrator] url */
    char *orchestrator_ca_file;      /* [orchestrator] ca_file: trust this CA
                                        for https (else the system's) */
    char *orchestrator_key;          /* [orchestrator] key: the X25519 key
                                        (64 lowercase hex) it must answer
                                        GET /api/v1/identity with; NULL:
                                        whatever it answers */
    char *modules;                   /* [node] modules: colon list; NULL none */
    int sandbox;                     /* [node] sandbox (default true) */
    double heartbeat_s;              /* [node] heartbeat_s (default 5) */
    uint64_t gpu_hour_micros;         /* [pricing] */
    uint64_t cpu_hour_micros;
    uint64_t memory_gb_hour_micros;
    uint32_t max_concurrent_jobs;    /* [limits] (default 4) */
    uint32_t max_memory_mb;          /* [limits] per job; 0: no cap */
    uint32_t max_scratch_mb;         /* [limits] most scratch a step may ask
                                        for (default
                                        RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB) */
    uint32_t max_file_mb;            /* [limits] one file a job makes or
                                        takes (default 1024) */
    uint32_t max_job_files_mb;       /* [limits] all of one job's file
                                        outputs (default 4096) */
    uint32_t step_uid_first;         /* [limits] sandboxed jobs' host uids
                                        as root; 0: the library's range */
    uint32_t step_uid_count;         /* [limits] (default 256) */
    char *container_host;            /* [container] host: unix:///PATH;
                                        NULL: DOCKER_HOST and the defaults */
    char **allow_images;             /* [container] allow_images: globs of
                                        images run without a module; none
                                        by default */
    size_t n_allow_images;
    uint32_t max_output_kb;          /* [limits] outputs of one job (default
                                        NODE_DEFAULT_OUTPUT_KB) */
    uint64_t llm_1k_tokens_micros;   /* [pricing] per 1,000 tokens in and
                                        out of an llm job */
    uint64_t llm_second_micros;      /* [pricing] per second of an llm job's
                                        run instead (llm_per_second) */
    int llm_per_second;
    char **llm_model_prices;         /* [pricing] llm_model_prices:
                                        "MODEL=MICROS" (checked), a model's
                                        own price per 1,000 tokens */
    size_t n_llm_model_prices;
    char **llm_model_second_prices;  /* [pricing] llm_model_second_prices:
                                        the same, per second; a model is in
                                        one list at most */
    size_t n_llm_model_second_prices;
    double llm_refresh_s;            /* [node] llm_refresh_s: how often the
                                        model lists are read again */
    char *api_listen;                /* [api] listen: "off" or ADDR:PORT;
                                        NULL: NODE_API_DEFAULT, or a free
                                        port when that one is taken */
    node_llm llm[NODE_CONFIG_MAX_LLM];
    size_t n_llm;
    /* [backend]: where jobs run (docs/node.md "[backend]") */
    int backend;                     /* kind: NODE_BACKEND_* */
    char *slurm_partition;           /* partition (required for slurm) */
    char *slurm_account;             /* account; NULL: Slurm's default */
    char *slurm_qos;                 /* qos; NULL: Slurm's default */
    char *slurm_spool;               /* spool: a folder the compute nodes
                                        share (required for slurm) */
    char *slurm_command;             /* command: rhizos-node's path on the
                                        compute nodes; NULL: this one's */
    uint32_t slurm_default_memory_mb;/* default_memory_mb: --mem of a step
                                        that says none (default 512) */
    double slurm_poll_s;             /* poll_s: squeue every (default 2) */
    char *slurm_rest;                /* slurmrestd: "unix:/socket" or
                                        "http://host:port"; NULL: the
                                        commands (sinfo, sbatch, ...) */
    char *slurm_rest_user;           /* slurmrestd_user and */
    char *slurm_rest_token;          /* slurmrestd_token_file: JWT (the
                                        file read again each request) */
    size_t n_labels;                 /* [labels] key = "value" */
    char *label_keys[NODE_CONFIG_MAX_LABELS];
    char *label_values[NODE_CONFIG_MAX_LABELS];
} node_config;

#define NODE_BACKEND_LOCAL 0
#define NODE_BACKEND_SLURM 1

#define NODE_DEFAULT_URL "http://127.0.0.1:8080"
#define NODE_API_DEFAULT "127.0.0.1:7180"
/* localapi.c: split "ADDR:PORT" or "[ADDR6]:PORT" (an IP literal, port
 * 0-65535) into host (may be NULL) and port. 0, or -1 when malformed. */
int node_api_split(const char *s, char *host, size_t hostlen, unsigned *port);
/* Outputs, log tail (64 KiB) and the rest of a result stay well under the
 * orchestrator's default --max-body of 1 MiB. */
#define NODE_DEFAULT_OUTPUT_KB 512u
#define NODE_MAX_OUTPUT_KB 896u
#define NODE_DEFAULT_SCRATCH_MB 1024u   /* RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB */
#define NODE_MAX_SCRATCH_MB 1048576u    /* 1 TiB */
#define NODE_DEFAULT_FILE_MB 1024u      /* RZ_ATTEMPT_DEFAULT_MAX_FILE */
#define NODE_DEFAULT_JOB_FILES_MB 4096u /* RZ_ATTEMPT_DEFAULT_MAX_FILES */
#define NODE_MAX_FILE_MB 1048576u       /* 1 TiB */

void node_config_defaults(node_config *c);
/* Parse `len` bytes of text named `file` (for messages) over the values
 * already in *c. 0, or -1 with "FILE:LINE: message" in err. Unknown
 * sections and keys are errors: a misspelt limit must not pass silently.
 * On error *c may hold some of the new values: free it. */
int node_config_parse(node_config *c, const char *text, size_t len,
                      const char *file, char *err, size_t errlen);
/* Defaults, then the file. Larger than NODE_CONFIG_MAX_BYTES is an error. */
int node_config_load(node_config *c, const char *path, char *err,
                     size_t errlen);
void node_config_free(node_config *c);
/* [container] host from the command line (unix:///PATH); -1 and err when
 * it is not one. */
/* --ca-file over [orchestrator] ca_file (0, or -1 said on stderr). */
int node_config_set_ca_file(node_config *c, const char *path);
int node_config_set_container_host(node_config *c, const char *host,
                                   char *err, size_t errlen);
/* The label a node advertises when it runs ad-hoc images, and which the
 * orchestrator requires of an ad-hoc image's job (a [labels] key cannot
 * hold the '.'). */
#define NODE_ADHOC_LABEL "rhizos.adhoc_images"
/* The price of `model` here: its own in llm_model_prices (per 1,000
 * tokens) or llm_model_second_prices (per second), else the node's
 * (llm_second_micros when llm_per_second, else llm_1k_tokens_micros); *own
 * says whether it is its own, *per_second the unit. */
uint64_t node_llm_price(const node_config *c, const char *model, int *own,
                        int *per_second);

/* 1 when an allow_images glob matches `image`, else 0. */
int node_config_image_allowed(const node_config *c, const char *image);
/* The file `init` writes (malloc'd). */
char *node_config_format(const node_config *c);

/* ---- keys.c: DATA/keys and DATA/state.json ---- */

typedef struct node_keys {
    unsigned char ed_pk[32];
    unsigned char x_pk[32];
    unsigned char *ed_sk;            /* 64 bytes, sodium_malloc */
    unsigned char *x_sk;             /* 32 bytes, sodium_malloc */
} node_keys;

/* New key pairs written to DIR/keys (0700) as 0600 files. With `force`
 * existing files are replaced. 0 or -1 with err. */
int node_keys_create(const char *dir, int force, char *err, size_t errlen);
int node_keys_load(node_keys *k, const char *dir, char *err, size_t errlen);
void node_keys_free(node_keys *k);
void node_hex(char *out, const unsigned char *bin, size_t len);

typedef struct node_state {
    uint64_t id;                     /* 0: not registered */
    char account[33];
    char url[512];                   /* where it registered */
    char *token;                     /* sodium_malloc; NULL when none */
    uint32_t n_gpus;                 /* advertised at registration (not
                                        saved): job GPUs are their indexes */
} node_state;

/* DATA/state.json plus DATA/token. A missing state is id 0, not an error. */
int node_state_load(node_state *s, const char *dir, char *err, size_t errlen);
int node_state_save(const node_state *s, const char *dir, char *err,
                    size_t errlen);
void node_state_free(node_state *s);

/* Write `len` bytes to `path` through a 0600 temp file, synced, and rename. */
int node_write_private(const char *path, const void *data, size_t len);
/* The same, synced to disk only when `sync`: without it the file survives
 * the process being killed, not the machine losing power. */
int node_write_file(const char *path, const void *data, size_t len, int sync);
/* Create `path` and its parents (0700, rz_fs_mkdirs) and make it private
 * if it was opened up: -1 with errno set otherwise. */
int node_mkdirs(const char *path);
/* Whole file, NUL-terminated, at most `max` bytes; NULL with errno set
 * (EFBIG when larger). */
char *node_read_file(const char *path, size_t max, size_t *len);

/* ---- wire.c: the orchestrator protocol (docs/api.md) ---- */

struct cJSON;
struct rz_client;
struct rz_caps;

/* One request; `body` may be NULL, `cbor` selects the node protocol's
 * encoding. *reply (may be NULL) gets the parsed reply or NULL (204).
 * The rz_status of rz_client_call, or RZ_EPROTOCOL for a reply that is
 * not JSON. */
int node_call(struct rz_client *c, const char *method, const char *path,
              const struct cJSON *body, int cbor, long *status,
              struct cJSON **reply);
/* rz_client_new, trusting the config's ca_file when it names one (the
 * library refuses a file it cannot read: RZ_EIO, saying which). */
int node_client_new(struct rz_client **c, const char *url, const char *token,
                    const node_config *cfg);
/* The capabilities this node advertises: detected hardware, a stored
 * benchmark, the configuration's prices, limits and labels, "process" as
 * its only adapter. malloc'd JSON text, or NULL with err. */
char *node_capabilities(const char *dir, const node_config *cfg, char *err,
                        size_t errlen);
/* POST /api/v1/nodes/register and save DATA/state.json + DATA/token.
 * Returns an rz_status; err says why. */
int node_register(const char *dir, const char *url, const node_config *cfg,
                  const node_keys *keys, node_state *st, char *err,
                  size_t errlen);
/* Unix time in milliseconds (what signed requests carry). */
uint64_t node_unix_ms(void);
/* True for the answers that mean "this registration no longer counts". */
int node_status_lost(int rc);
/* True for an answer that passes: no answer, a 5xx, or 429 (the key's
 * request rate, Retry-After). A call that got one is tried again later;
 * any other answer is final. */
int node_status_passes(int rc, long status);

/* ---- agent.c / job.c: `rhizos-node start` ---- */

typedef struct node_opts {
    const char *data_dir;            /* resolved folder */
    const char *url;                 /* --orchestrator, NULL: config */
    const char *const *modules;      /* --modules, in order */
    size_t n_modules;
    int no_sandbox, once, quiet, json;
    const char *container_host;      /* --container-host, NULL: config */
    const char *ca_file;             /* --ca-file, NULL: config */
} node_opts;

/* Exit status of the command (0 on SIGTERM/SIGINT). */
int node_agent_run(const node_opts *o);
/* `rhizos-node slurm-run DIR` (slurm.c's batch jobs): DIR/assignment.json
 * run here, its result written to DIR/result.json. 0 when written. */
int node_agent_run_spooled(const node_opts *o, const char *dir);

#endif /* RHIZOS_NODE_H */

/* rhizos/exec.h — executing steps: one attempt of one job through an
 * adapter, the process adapter underneath, and the local runner.
 *
 * An attempt (rz_attempt_*) is what the embedded runner and the node agent
 * both drive: one run of a resolved module, through the adapter its manifest
 * names (exec.adapter: "process" today; others plug in beside it). What is
 * common to every adapter happens here, once (docs/formats.md, "Process
 * adapter protocol"):
 *   - the request {inputs, config} goes to the module as JSON on stdin and
 *     is written to <scratch>/in/request.json (a container sees the scratch
 *     folder as /rz);
 *   - outputs are one JSON object: the file <scratch>/out/outputs.json when
 *     the module wrote it (non-empty; the process adapter names it in
 *     $RZ_OUTPUT), else stdout;
 *   - context as RZ_RUN_ID, RZ_STEP_ID, RZ_ATTEMPT (1-based), and RZ_JOB_ID /
 *     RZ_NODE_ID when given;
 *   - secrets are delivered by the adapter (the process adapter: environment
 *     variables RZ_CRED_<NAME>; a container: files) and every value is
 *     scrubbed from what comes back: raw from the log and the failure
 *     reason, JSON-escaped from the outputs; unredacted text is wiped before
 *     it is freed;
 *   - the log (stderr tail) is made valid UTF-8, outputs over the cap fail
 *     the attempt, and failures have one wording: "timed out after N s",
 *     "exit status N: <last log line>", "killed by signal N",
 *     "outputs over N KiB", "no JSON object on stdout",
 *     "killed for memory (limit N MB)",
 *     "cannot start: ...", "adapter 'X' is not available on this machine".
 *
 * The process adapter (rz_proc_*) runs a module's command in a fresh scratch
 * directory, under bubblewrap when it is installed, in its own process
 * group, with rlimits; stderr is kept (bounded) as the log. In the sandbox
 * a step has no capabilities and, when the host is root, a host uid of
 * its own (a range no host user has; docs/node.md), sees
 * read-only system folders and an allow-list of /etc (no shadow, no
 * private keys), cannot make user namespaces, ptrace, mount, use the
 * keyring, bpf or perf (seccomp), gets a cgroup (pids, memory, CPU weight)
 * where this machine allows one, and writes to size-limited tmpfs (256 MiB
 * for the scratch folder and for /tmp): "process limit reached (N
 * processes); then ..." and "killed for memory (limit N MB ...)" say
 * which limit ended it.
 */
#ifndef RHIZOS_EXEC_H
#define RHIZOS_EXEC_H

#include "rhizos/common.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/run.h"
#include "rhizos/vault.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_proc rz_proc;

/* What a limit of 0 means in rz_proc_opts. */
#define RZ_PROC_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)     /* 16 MiB */
#define RZ_PROC_DEFAULT_MAX_LOG ((size_t)64 << 10)        /* 64 KiB */

typedef struct rz_proc_opts {
    int version;                  /* RZ_PROC_OPTS_VERSION */
    const char *const *argv;      /* argv[0] "./x" resolves against module_dir */
    const char *module_dir;       /* mounted read-only in the sandbox */
    const char *const *env;       /* extra "NAME=value" entries, NULL-ended */
    const char *input;            /* written to stdin, may be NULL */
    size_t input_len;
    const char *scratch_parent;   /* NULL: $TMPDIR (or /tmp)/rhizos-runs-UID */
    int network;                  /* 1: keep network access in the sandbox */
    int sandbox;                  /* 1 auto (bwrap if present), 0 never */
    uint32_t timeout_ms;          /* 0: none; enforced by killing the group */
    uint32_t memory_mb;           /* the step cgroup's cap in the sandbox
                                     (0: its default, 2048 MiB); else
                                     RLIMIT_AS (0: unlimited) */
    uint32_t cpu_seconds;         /* RLIMIT_CPU; 0: unlimited */
    size_t max_output;            /* bytes of stdout kept; 0:
                                     RZ_PROC_DEFAULT_MAX_OUTPUT */
    size_t max_log;               /* bytes of stderr kept (tail); 0:
                                     RZ_PROC_DEFAULT_MAX_LOG */
} rz_proc_opts;

#define RZ_PROC_OPTS_VERSION 1
#define RZ_PROC_OPTS_INIT { RZ_PROC_OPTS_VERSION, NULL, NULL, NULL, NULL, 0, \
                            NULL, 0, 1, 0, 0, 0, 0, 0 }

/* Start the process; returns at once. */
RZ_EXTERN RZ_NODISCARD int rz_proc_spawn(rz_proc **out,
                                         const rz_proc_opts *opts);
/* A file descriptor that becomes readable when the process needs attention
 * (for poll/epoll/libevent); call rz_proc_poll then. */
RZ_EXTERN int rz_proc_fd(const rz_proc *p);
/* Move I/O along, waiting at most timeout_ms (0: don't wait). Returns 1 when
 * the process has exited and its output is complete, 0 while it runs. */
RZ_EXTERN int rz_proc_poll(rz_proc *p, int timeout_ms);
/* Kill the whole process group (SIGKILL). */
RZ_EXTERN void rz_proc_kill(rz_proc *p);
/* After completion: exit status (0-255), or -signal if killed. */
RZ_EXTERN int rz_proc_exit_code(const rz_proc *p);
RZ_EXTERN int rz_proc_timed_out(const rz_proc *p);
/* Borrowed, valid while the process object lives. The outputs are the JSON
 * object the module produced (NULL if it produced none or not an object). */
RZ_EXTERN const char *rz_proc_outputs(const rz_proc *p);
RZ_EXTERN const char *rz_proc_log(const rz_proc *p, size_t *len);
/* Kills if still running, removes the scratch directory, frees. */
RZ_EXTERN void rz_proc_free(rz_proc *p);
/* 1 if bubblewrap is usable on this machine. */
RZ_EXTERN int rz_sandbox_available(void);
/* NULL when every layer of the sandbox works here; else one line on what
 * is missing ("no memory cgroup for steps (...)", "bubblewrap older than
 * 0.8: ...", "bubblewrap not found"). Static storage. */
RZ_EXTERN const char *rz_sandbox_status(void);
/* The runtime of the "wasm" adapter here, e.g. "node:wasi (Node.js
 * v20.20.2)"; NULL when none answers (then the adapter is unavailable).
 * Asked once per process (node is started once, ~50 ms); $RHIZOS_WASM_NODE
 * names the node program ("" for none). Static storage. */
RZ_EXTERN const char *rz_wasm_runtime(void);

/* ---- One attempt of one job through an adapter ---- */

typedef struct rz_attempt rz_attempt;

/* A secret the module receives. The value is borrowed until
 * rz_attempt_start returns (the adapter keeps its own, wiped copy); it must
 * not hold a NUL byte. The name is the credential's field: the process
 * adapter sets RZ_CRED_<NAME> (upper-cased, other characters '_'); a
 * container adapter writes /run/secrets/<name, lower-cased> (a tmpfs folder
 * bound read-only) and sets RZ_CRED_<NAME>_FILE; the wasm adapter gives
 * the module the same files and variables. */
typedef struct rz_attempt_secret {
    const char *name;
    const char *value;
} rz_attempt_secret;

/* What a limit of 0 means in rz_attempt_opts (max_output and max_log). */
#define RZ_ATTEMPT_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)  /* 16 MiB */
#define RZ_ATTEMPT_DEFAULT_MAX_LOG ((size_t)64 << 10)     /* 64 KiB */

typedef struct rz_attempt_opts {
    int version;                   /* RZ_ATTEMPT_OPTS_VERSION */
    const rz_module *module;       /* resolved, with a local folder */
    const char *adapter;           /* NULL: the module's exec.adapter */
    const char *request_json;      /* {inputs, config}; NULL: empty ones */
    /* Context, passed to the module as RZ_* variables. */
    const char *run_id;            /* RZ_RUN_ID; NULL: "run" */
    const char *step_id;           /* RZ_STEP_ID; NULL: "job" */
    uint32_t attempt;              /* RZ_ATTEMPT, 1-based; 0: 1 */
    uint64_t job_id;               /* RZ_JOB_ID when non-zero */
    const char *node_id;           /* RZ_NODE_ID when non-NULL */
    const char *const *env;        /* extra "NAME=value", NULL-ended */
    const rz_attempt_secret *secrets;
    size_t n_secrets;
    /* Limits; 0: none (max_output: RZ_ATTEMPT_DEFAULT_MAX_OUTPUT, max_log:
     * RZ_ATTEMPT_DEFAULT_MAX_LOG). */
    uint32_t timeout_s;
    uint32_t memory_mb;
    uint32_t cpus;                 /* where the adapter can bound it */
    size_t max_output;             /* bytes of the outputs JSON */
    size_t max_log;                /* bytes of log tail kept */
    int sandbox;                   /* 1 auto (bwrap if present), 0 never */
    int network;                   /* -1: the manifest's exec.network */
    const char *scratch_parent;    /* NULL: $TMPDIR (or /tmp)/rhizos-runs-UID */
    /* The container engine for the docker adapter: "unix:///path" or a
     * socket path. NULL: DOCKER_HOST, else /var/run/docker.sock, else
     * /run/podman/podman.sock. (Version 2; version 1 callers get NULL.) */
    const char *container_host;
    /* The GPUs reserved for this attempt, NULL-ended (device indexes such
     * as "0", or UUIDs); NULL: none. A docker step gets exactly these
     * (never all of them), and fails where the engine runs no GPU
     * containers. (Version 3.) */
    const char *const *gpu_ids;
    /* The most scratch space (MiB) a module may ask for with
     * requirements.scratch_mb; a module asking for more fails to start,
     * saying so. 0: RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB. (Version 4.) */
    uint32_t max_scratch_mb;
    /* The model servers of the llm adapter (docs/llm.md): "KIND=URL"
     * entries (KIND "ollama" or "openai") separated by spaces, commas or
     * semicolons; with several, the first that lists the step's model
     * serves it. NULL: $RHIZOS_LLM_SERVERS. An llm attempt may have no
     * module (adapter "llm": an ad-hoc llm job). (Version 5.) */
    const char *llm_servers;
    /* A service step's attempt (docs/services.md): its stdout is a stream
     * of lines the caller takes as they come (events, readiness, log) and
     * no cap stops it; its outputs are those of an outputs file, else {}.
     * Adapters that cannot stream refuse it. (Version 6.) */
    int service;
    /* File outputs (`type: file`, docs/flow-format.md): the blob store
     * folder (content-addressed, lib/store/blob.c) where a step's file
     * outputs are stored and its file inputs are read from; NULL: none, a
     * step with a file output or input fails saying so. The most bytes of
     * one file, and of all the step's files (what is left of the run's
     * cap); 0: RZ_ATTEMPT_DEFAULT_MAX_FILE / _MAX_FILES. (Version 7.) */
    const char *blob_dir;
    uint64_t max_file;
    uint64_t max_files;
    /* A service's readiness check (docs/services.md): "tcp:PORT" or an
     * http:// URL (host an IPv4 address or localhost), tried from inside
     * the step's network (its sandbox's or container's) until it passes,
     * when the attempt's stdout gets the line {"ready": true}; not passed
     * within ready_timeout_s (0: 60), the attempt fails saying why. NULL:
     * none. (Version 8.) */
    const char *ready_check;
    uint32_t ready_timeout_s;
} rz_attempt_opts;

#define RZ_ATTEMPT_DEFAULT_MAX_SCRATCH_MB 1024u
#define RZ_ATTEMPT_DEFAULT_MAX_FILE ((uint64_t)1 << 30)    /* 1 GiB */
#define RZ_ATTEMPT_DEFAULT_MAX_FILES ((uint64_t)4 << 30)   /* 4 GiB */
#define RZ_ATTEMPT_OPTS_VERSION 8
#define RZ_ATTEMPT_OPTS_INIT { RZ_ATTEMPT_OPTS_VERSION, NULL, NULL, NULL, \
                               NULL, NULL, 0, 0, NULL, NULL, NULL, 0, 0, 0, \
                               0, 0, 0, 1, -1, NULL, NULL, NULL, 0, NULL, 0, \
                               NULL, 0, 0, NULL, 0 }

/* Start an attempt; returns at once. An attempt that cannot start (unknown
 * or unavailable adapter, command not found, no scratch folder) is still
 * made, already finished and failed with the reason, so a caller has one
 * path for every failure. Errors: RZ_EINVAL for bad options (no module),
 * RZ_ENOMEM. */
RZ_EXTERN RZ_NODISCARD int rz_attempt_start(rz_attempt **out,
                                            const rz_attempt_opts *opts);

/* Scratch folders that finished unsandboxed process attempts leave for the
 * next, refilled in place instead of made and removed (on ext4 that is a
 * third of a short step's CPU): what the embedded runner does, for a
 * caller that runs attempts one after another, such as a node's job slot.
 * A kept folder is reused only when it holds exactly the protocol's
 * layout, else it is removed and a new one made. One pool is used by one
 * thread at a time. parent as rz_attempt_opts' scratch_parent (NULL: the
 * default). Freeing the pool removes the folders it keeps. */
typedef struct rz_scratch_pool rz_scratch_pool;
RZ_EXTERN RZ_NODISCARD int rz_scratch_pool_new(rz_scratch_pool **out,
                                               const char *parent);
RZ_EXTERN void rz_scratch_pool_free(rz_scratch_pool *pool);
/* rz_attempt_start whose scratch folder comes from and goes back to `pool`
 * (NULL: none) when it runs unsandboxed in a process; a sandboxed or
 * container attempt ignores it. */
RZ_EXTERN RZ_NODISCARD int rz_attempt_start_pooled(rz_attempt **out,
                                                   const rz_attempt_opts *opts,
                                                   rz_scratch_pool *pool);

/* A descriptor that becomes readable when the attempt needs attention (for
 * poll/epoll/libevent); -1 when it has nothing to wait on (finished, or the
 * adapter cannot offer one): call rz_attempt_poll without waiting then. */
RZ_EXTERN int rz_attempt_fd(const rz_attempt *a);

/* Move the attempt along, waiting at most timeout_ms (0: don't wait).
 * 1 when it has finished and its result is ready, 0 while it runs, or a
 * negative rz_status. */
RZ_EXTERN RZ_NODISCARD int rz_attempt_poll(rz_attempt *a, int timeout_ms);

/* Stop it (cancel): the attempt finishes failed with "stopped", keeping the
 * log written so far. Call rz_attempt_poll until it returns 1 for that log. */
RZ_EXTERN void rz_attempt_stop(rz_attempt *a);

/* After rz_attempt_poll returned 1. Pointers are borrowed until
 * rz_attempt_free; outputs (ok) or reason (failed) is non-NULL, scrubbed. */
typedef struct rz_attempt_result {
    int ok;                        /* 1: succeeded with outputs */
    const char *outputs;           /* the JSON object, when ok */
    const char *reason;            /* why it failed, when not ok */
    const char *log;               /* stderr tail, UTF-8; may be NULL */
    size_t log_len;
    uint64_t run_ms;               /* from start to finish */
    int exit_code;                 /* 0-255, -signal, or -1 if none */
} rz_attempt_result;

RZ_EXTERN RZ_NODISCARD int rz_attempt_result_get(const rz_attempt *a,
                                                 rz_attempt_result *out);

/* A service attempt's stdout lines (rz_attempt_opts.service) written
 * since the last call, scrubbed of its secrets and UTF-8 clean, '\n'-
 * separated without the last newline (release with rz_free), or NULL
 * when no whole line is new; after rz_attempt_poll returned 1, the lines
 * it wrote last. *dropped (may be NULL): bytes of stdout its cap threw
 * away so far. Errors: RZ_EINVAL (NULL). */
RZ_EXTERN RZ_NODISCARD int rz_attempt_out_lines(rz_attempt *a, char **out,
                                                uint64_t *dropped);

/* What one line of a service's stdout is (docs/services.md): exactly
 * {"ready": true}; {"event": NAME, "id"?: KEY, "data"?: VALUE} with nothing
 * else, KEY a string (then *name, *key (NULL when absent) and *data_json,
 * the data printed compactly or NULL when absent, are malloc'ed: release
 * with rz_free; each may be a NULL pointer when not wanted); or anything
 * else, a log line. */
typedef enum rz_service_line_kind {
    RZ_SERVICE_LINE_LOG = 0, RZ_SERVICE_LINE_READY, RZ_SERVICE_LINE_EVENT
} rz_service_line_kind;
RZ_EXTERN rz_service_line_kind rz_service_line(const char *line, size_t len,
                                               char **name, char **key,
                                               char **data_json);

/* The caps on a service's events (docs/services.md), the same embedded
 * and on a node: an event line over RZ_SERVICE_EVENT_MAX bytes, or past
 * RZ_SERVICE_EVENT_RATE events in one second from one service, is refused
 * (the service goes on). One rz_service_rate per service attempt, zeroed
 * to start. */
#define RZ_SERVICE_EVENT_MAX (64u * 1024u)
#define RZ_SERVICE_EVENT_RATE 1000u
typedef struct rz_service_rate {
    uint64_t window_ms;            /* the current second's start */
    uint32_t in_window;            /* events let through in it */
    uint32_t refused;              /* events refused for the rate in it */
} rz_service_rate;
/* NULL when the event line of `len` bytes may go (it is counted), else why
 * it is refused ("the line is over 65536 bytes"; "over 1000 events a
 * second ..." for the first refused for the rate in a second, and "" for
 * the rest of that second's, so a flood makes one log line a second, not
 * one an event; static text). */
RZ_EXTERN const char *rz_service_event_admit(rz_service_rate *r, size_t len,
                                             uint64_t now_ms);

/* The log lines written since the last call, as they come (adapters that
 * stream their log: process, docker), scrubbed of the attempt's secrets
 * and UTF-8 clean: *out gets them '\n'-separated without the last newline
 * (release with rz_free), or NULL when no whole line is new. A line is
 * held back while a secret could still straddle its end; `flush` (once
 * rz_attempt_poll returned 1) gives the rest. Lines a fast writer pushes
 * past the adapter's log window before a call are not given (the result's
 * log tail stays the authoritative one). Errors: RZ_EINVAL (NULL). */
RZ_EXTERN RZ_NODISCARD int rz_attempt_log_lines(rz_attempt *a, int flush,
                                                char **out);

/* Stops it if it still runs, removes its scratch folder, wipes what it kept
 * of secrets, frees. NULL is fine. */
RZ_EXTERN void rz_attempt_free(rz_attempt *a);

/* RZ_OK if this machine can run attempts of `adapter` ("process", ...);
 * else RZ_EUNSUPPORTED with "adapter 'X' is not available on this machine"
 * (and why, where the adapter says) in rz_error_last(). */
RZ_EXTERN RZ_NODISCARD int rz_attempt_adapter_check(const char *adapter);
/* The same against a given container engine (see container_host in
 * rz_attempt_opts; NULL: the default one). For "docker", the reason names
 * the socket tried and how to point at another. */
RZ_EXTERN RZ_NODISCARD int rz_attempt_adapter_check_at(
    const char *adapter, const char *container_host);

/* The models one model server lists (Ollama's GET /api/tags, OpenAI's
 * GET /v1/models; 10 s at most), for a node's capabilities: *out gets a
 * JSON array of {"name", "size_bytes"?, "quantization"?, "family"?,
 * "parameters"?, "context_length"?} (release with rz_free); with
 * `details`, Ollama's context lengths are asked for too (POST /api/show,
 * the first 32 models). kind: "ollama" or "openai"; url: http(s)://...
 * Errors: RZ_EINVAL (a bad kind or URL), RZ_EIO (no answer, an HTTP error
 * or a reply that is not a model list: rz_error_last() says which),
 * RZ_ENOMEM. */
RZ_EXTERN RZ_NODISCARD int rz_llm_models(char **out, const char *kind,
                                         const char *url, int details);

/* Which model server of `servers` ("KIND=URL ..." as
 * rz_attempt_opts.llm_servers) serves `model`: *index gets the first whose
 * model list names it (0-based), -1 when none does (a server that does not
 * answer lists nothing). Errors: RZ_EINVAL (NULL, a bad list), RZ_ENOMEM. */
RZ_EXTERN RZ_NODISCARD int rz_llm_find(int *index, const char *servers,
                                       const char *model);

/* What this machine's container engine offers, for a node's capabilities
 * and for a runner that has docker steps. */
typedef struct rz_container_info {
    int answers;                  /* 1: the engine at `socket` answered */
    int gpu;                      /* 1: it reports an NVIDIA runtime or CDI
                                     devices (GPU containers) */
    char socket[256];             /* the socket tried */
    char engine[96];              /* "Podman Engine 4.3.1", ... */
    char why[512];                /* when it does not answer: why, and how
                                     to point at one */
} rz_container_info;

/* Ask the engine at `container_host` (NULL: DOCKER_HOST, else the default
 * sockets). RZ_OK whether or not it answers (see out->answers); an error
 * only for bad arguments or no memory. */
RZ_EXTERN RZ_NODISCARD int rz_container_probe(rz_container_info *out,
                                              const char *container_host);

/* Reaping, after a crash or a lost job: remove every container (running or
 * not) labelled io.rhizos.node=`node_id` whose io.rhizos.job is not held,
 * as `held(job, userdata)` says (asked after the listing, so a container
 * started meanwhile is never taken for a dangling one). *removed (may be
 * NULL) counts them. Errors: the engine's (RZ_ECONNECT when none answers). */
typedef int (*rz_container_held_fn)(uint64_t job, void *userdata);
RZ_EXTERN RZ_NODISCARD int rz_container_reap(const char *container_host,
                                             const char *node_id,
                                             rz_container_held_fn held,
                                             void *userdata, size_t *removed);

/* Local runner: drives an rz_run to completion on this machine. */
typedef enum rz_event_kind {
    RZ_EVENT_STEP_STARTED = 1,
    RZ_EVENT_STEP_SUCCEEDED,
    RZ_EVENT_STEP_FAILED,      /* final failure */
    RZ_EVENT_STEP_RETRYING,    /* failed, will retry */
    RZ_EVENT_STEP_SKIPPED,
    RZ_EVENT_STEP_CANCELLED,
    RZ_EVENT_RUN_FINISHED,
    RZ_EVENT_NOTICE,           /* something the user should know once */
    RZ_EVENT_PROGRESS          /* nothing changed; a few times a second
                                  while steps run, for live elapsed time.
                                  While a step's runtime prepares it (an
                                  image pull), `step` is that step and
                                  `message` one line such as "pulling
                                  IMAGE: 12.3/40.1 MB" */,
    RZ_EVENT_STEP_LOG          /* a running step's log (stderr) lines as
                                  they come, where its runtime streams
                                  them (docker): `message` one or more
                                  lines, '\n'-separated, scrubbed of its
                                  secrets. The log in the step's result
                                  stays the authoritative tail */,
    RZ_EVENT_RUN_RECORDED      /* once, when the run is recorded
                                  (data_dir or store): its first record
                                  is written, so a reader of the store
                                  finds the run from now on (a caller
                                  tells its id then); `message` NULL, or
                                  why it could not be written (a NOTICE
                                  said so too). It may come after step
                                  events: the record is written while the
                                  first steps start */
} rz_event_kind;

typedef struct rz_event {
    rz_event_kind kind;
    const rz_run *run;
    size_t step;              /* (size_t)-1 for run-level events */
    uint32_t attempt;
    uint64_t elapsed_ms;      /* since the run started */
    const char *message;      /* error, log tail or notice; may be NULL */
} rz_event;

typedef void (*rz_event_cb)(const rz_event *ev, void *userdata);

typedef struct rz_runner_opts {
    int version;                   /* RZ_RUNNER_OPTS_VERSION */
    unsigned jobs;                 /* parallel steps; 0: number of cores */
    const char *inputs_json;       /* flow inputs, may be NULL */
    const char *run_id;            /* NULL: generated */
    const char *const *env;        /* extra "NAME=value" for every step */
    int sandbox;                   /* 1 auto, 0 never */
    rz_event_cb on_event;          /* may be NULL */
    void *userdata;
    volatile int *cancel;          /* set non-zero to cancel; may be NULL */
    /* Secret environment of one step: its credentials as
     * "RZ_CRED_<NAME>=value" (rz_vault_resolve_step's form; the adapter
     * delivers each as its secret <NAME>). Called before each
     * attempt; an error fails the attempt with rz_error_last()'s message,
     * which must hold no secret. Every value is also scrubbed from the
     * step's outputs and failure reason. The list is released with
     * step_env_free. Both may be NULL. */
    int (*step_env)(size_t step, char ***env, void *userdata);
    void (*step_env_free)(char **env, void *userdata);
    /* Credentials from an unlocked vault (rz_vault_resolve_step), when
     * step_env is NULL. Borrowed for the run; may be NULL. */
    const rz_vault *vault;
    /* Record the run in the run store of this folder (rz_store_run_put):
     * when it starts, so a run in progress or killed leaves a trace, and
     * when it ends. A record that cannot be written is a NOTICE event
     * ("run not recorded in DIR: ..."), and rz_runner_run returns its
     * error with the finished run still in *out. NULL: none. */
    const char *data_dir;
    /* The container engine for docker steps (rz_attempt_opts'
     * container_host); NULL: the default one. Version 3. */
    const char *container_host;
    /* Memory cap (MiB) of a step whose module asks for no memory_mb; 0:
     * the sandbox's own default (2048 MiB, under a cgroup). Version 4. */
    uint32_t default_memory_mb;
    /* The most scratch space (MiB) a step's module may ask for
     * (rz_attempt_opts' max_scratch_mb); 0: the default. Version 5. */
    uint32_t max_scratch_mb;
    /* What the run cost: each step's run time (every attempt; a for_each
     * step's, its elements') priced as renting the cheapest node class of
     * these tables that fits its module (rz_prices_rent_step), written to
     * the run as "run_ms" and "cost_micros" per step and in all. An
     * embedded run is charged nothing; this is what the machine time would
     * cost to rent. Borrowed for the run; NULL: not priced. Version 6. */
    const struct rz_prices *prices;
    /* Resume with a step cache (docs/triggers.md): earlier results as
     * rz_engine_reuse_map gives them (a finished run's record keeps its
     * own as "step_cache"); a step whose key is there is not run but
     * takes those outputs (its STEP_SUCCEEDED event says "reused from
     * ..."). NULL: none. Version 7. */
    const char *reuse_json;
    /* The model servers of llm steps (rz_attempt_opts' llm_servers);
     * NULL: $RHIZOS_LLM_SERVERS. Version 8. */
    const char *llm_servers;
    /* Record the run, as data_dir does, in this run store, open already
     * (borrowed; used instead of data_dir): a process running several
     * flows at once holds its store open once (LMDB allows one
     * environment per process). A store may be written by several
     * runners' threads and read meanwhile. NULL: data_dir's. Version 9. */
    struct rz_store *store;
    /* File outputs (docs/flow-format.md): stored in data_dir/blobs (else
     * in the run's private folder, gone with it), at most max_file_mb MiB
     * a file and max_run_files_mb MiB for the whole run; 0: 1024 and 4096.
     * Version 10. */
    uint32_t max_file_mb;
    uint32_t max_run_files_mb;
} rz_runner_opts;

#define RZ_RUNNER_OPTS_VERSION 10
#define RZ_RUNNER_OPTS_INIT { RZ_RUNNER_OPTS_VERSION, 0, NULL, NULL, NULL, 1, \
                              NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                              0, 0, NULL, NULL, NULL, NULL, 0, 0 }

/* Before a run: RZ_OK when this machine can run every step of a validated
 * flow, else RZ_EUNSUPPORTED, with rz_error_last() naming the steps that
 * need a container engine, the socket tried and how to point at one
 * (opts->container_host, DOCKER_HOST). Asks the engine only when a step
 * runs in a container. An approval step without approval.timeout_s is
 * RZ_EUNSUPPORTED too (nobody can decide it on one machine). `opts` may
 * be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_runner_check(const rz_flow *flow,
                                           const rz_runner_opts *opts);

/* Run a validated flow (modules resolved by rz_flow_validate) to the end.
 * *out receives the finished run even when it failed (check its state);
 * the return value is an error when the run could not be carried out
 * (*out NULL) or, with *out set, when its record (data_dir) could not be
 * written. */
RZ_EXTERN RZ_NODISCARD int rz_runner_run(rz_run **out, const rz_flow *flow,
                                         const rz_runner_opts *opts);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_EXEC_H */

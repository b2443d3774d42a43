/* The adapter interface (DESIGN §7): how one attempt runs on one runtime.
 *
 * attempt.c owns everything common: the scratch folder with in/request.json
 * and out/, the RZ_* context, secret scrubbing, UTF-8 cleaning of the log,
 * the outputs cap and the failure wording. An adapter only runs the thing
 * and hands back what happened. Adding a runtime is one file that defines
 * a `const rz__adapter rz__<name>_adapter` (see the weak references in
 * attempt.c) and one line in lib/exec/meson.build.
 *
 * Calls, in order: probe (any time), prepare, start, then fd/poll until
 * poll returns 1, collect; stop at any time after start; cleanup always
 * (also after a failed prepare or start), exactly once, on whatever state
 * prepare left (NULL included).
 */
#ifndef RZ_EXEC_ADAPTER_H
#define RZ_EXEC_ADAPTER_H

#include "exec/exec_impl.h"
#include "rhizos/module.h"

/* What an adapter is asked to run. Everything is borrowed for the life of
 * the attempt, except secrets, which are only valid during prepare: an
 * adapter that needs them later keeps its own copy and wipes it. */
typedef struct rz__exec_spec {
    const rz_module *module;
    const char *scratch;          /* absolute; in/request.json and out/ exist */
    const char *request_path;     /* <scratch>/in/request.json */
    const char *outputs_path;     /* <scratch>/out/outputs.json (empty) */
    const char *request;          /* the same JSON, for stdin */
    size_t request_len;
    const char *const *env;       /* RZ_RUN_ID, RZ_STEP_ID, RZ_ATTEMPT,
                                     RZ_JOB_ID, RZ_NODE_ID, the caller's */
    const rz_attempt_secret *secrets;
    size_t n_secrets;
    uint32_t timeout_s, memory_mb, cpus;
    uint32_t scratch_mb;          /* the scratch and /tmp; 0: the default */
    size_t max_stdout;            /* bytes of stdout read at most */
    size_t max_log;
    int sandbox, network;         /* network resolved: 0 or 1 */
    /* Labels a runtime can tag its objects with, for reaping. */
    const char *run_id, *step_id, *node_id;
    uint32_t attempt;
    uint64_t job_id;
    const char *container_host;   /* NULL: the default engine */
    const char *const *gpu_ids;   /* reserved GPUs, NULL-ended; NULL: none */
    const char *llm_servers;      /* the llm adapter's; NULL: the default */
    /* File outputs (<scratch>/out/files, RZ_OUTPUT_DIR): the most bytes
     * of one file and of all of them a sandbox copies out of the step. */
    uint64_t max_file, max_files;
    /* The module has file outputs: RZ_OUTPUT_DIR names that folder as the
     * module sees it (scratch_inside + "/out/files" where the adapter has
     * one). */
    bool file_outputs;
} rz__exec_spec;

/* What happened; pointers borrowed from the adapter's state until cleanup. */
typedef struct rz__exec_outcome {
    int exit_code;                /* 0-255, -signal; -1 when none */
    bool timed_out;               /* the adapter enforced spec.timeout_s */
    bool oom;                     /* killed for memory, where it can tell */
    bool stdout_over;             /* stdout went past spec.max_stdout */
    const char *outputs;          /* the JSON object, normalised; or NULL */
    const char *output_error;     /* why outputs is NULL, if known */
    const char *log;              /* stderr (or merged logs) tail */
    size_t log_len;
    bool log_end_cut;             /* the log stops where a cap cut it, not
                                     where the module's output ended */
    /* The runtime failed around the module (an image pull, the engine
     * going away): the whole reason, which wins over the rest. */
    const char *failure;
} rz__exec_outcome;

typedef struct rz__adapter {
    const char *name;
    /* 1 if the runtime answers here (at `host`, for a container engine;
     * NULL: its default), else 0 with why (may stay empty). */
    int (*probe)(const char *host, char *why, size_t why_len);
    /* Everything but starting: command, image, mounts, secrets, limits. */
    int (*prepare)(void **state, const rz__exec_spec *spec);
    int (*start)(void *state);
    int (*fd)(const void *state);             /* -1: none, poll often */
    int (*poll)(void *state, int timeout_ms); /* 1 finished, 0, <0 error */
    void (*stop)(void *state);                /* cancel; poll still ends */
    void (*collect)(void *state, rz__exec_outcome *out);
    void (*cleanup)(void *state);             /* NULL-safe, frees */
    /* Optional (NULL: none): one line on what the runtime does before the
     * module runs, e.g. "pulling IMAGE: 12.3/40.1 MB"; "" when nothing. */
    void (*status)(void *state, char *buf, size_t len);
    /* Optional (NULL: the log only comes at the end): the module's log
     * (stderr) as it grows, for live log lines: *total counts every byte
     * it wrote so far, the text returned is the last *len of them (or the
     * first, once a cap stops its growth: then *total stays *len). NULL
     * when none yet. Borrowed until the next call on the state. */
    const char *(*log_so_far)(void *state, size_t *len, uint64_t *total);
    /* Optional (NULL: the runtime runs no services): after start, stdout
     * is a stream of lines (a service's, docs/services.md) and never a
     * reason to stop it; out_lines takes the whole lines written since
     * the last call (malloc'ed, NULL when none) and says in *dropped how
     * many bytes a cap threw away so far. */
    void (*stream)(void *state);
    char *(*out_lines)(void *state, uint64_t *dropped);
    /* Optional (NULL: this process's own): after start, a process in the
     * step's network namespace for a readiness check (ready.h), 0 when the
     * step shares this process's, -1 while it is not known yet. */
    int (*net_pid)(void *state);
    /* Where the module sees the scratch folder ("/rz" in a container or
     * under WASI); NULL: at its own path. File inputs' paths are given
     * under it. */
    const char *scratch_inside;
} rz__adapter;

RZ_HIDDEN extern const rz__adapter rz__process_adapter;
RZ_HIDDEN extern const rz__adapter rz__llm_adapter;

/* A secret's file name under /run/secrets: its name lower-cased, anything
 * but [a-z0-9._-] as '_', no leading dot (docker and wasm adapters); and
 * "RZ_CRED_<FILE upper-cased>_FILE=/run/secrets/<file>". Malloc'ed. */
RZ_HIDDEN char *rz__exec_secret_file(const char *name);
RZ_HIDDEN char *rz__exec_secret_file_env(const char *file);

/* The protocol's outputs, shared by adapters: a non-empty outputs file
 * wins over stdout. Sets *outputs (malloc'ed, normalised JSON) or writes
 * why not into err. `over`: stdout was cut at its cap. */
RZ_HIDDEN void rz__exec_outputs(const char *file, size_t max_file,
                                const char *out, size_t out_len, bool over,
                                char **outputs, char *err, size_t err_len);

/* Remove a folder and everything in it, symlinks unfollowed. */
RZ_HIDDEN void rz__exec_rm_tree(const char *path);

/* Sandbox limits beyond rz_proc_opts; 0: the defaults of sandbox.h. */
typedef struct rz__proc_limits {
    uint32_t cpus;                /* CPU weight */
    uint32_t pids_max;
    uint32_t scratch_mb;          /* the scratch and /tmp tmpfs, each */
    uint64_t file_cap, files_cap; /* file outputs copied out of a sandboxed
                                     step: bytes a file, bytes in all */
} rz__proc_limits;

/* rz_proc_spawn in a scratch folder the caller made and removes; outputs
 * come from outputs_path or stdout. lim may be NULL. */
/* The process adapter's stream mode (adapter.h `stream`, `out_lines`). */
RZ_HIDDEN void rz__proc_stream(rz_proc *p);
RZ_HIDDEN char *rz__proc_out_take(rz_proc *p, uint64_t *dropped);

RZ_HIDDEN int rz__proc_spawn_in(rz_proc **out, const rz_proc_opts *opts,
                                const char *scratch, const char *outputs_path,
                                const rz__proc_limits *lim);

/* Tests only: the child stack kept for the next start (its lowest page,
 * the guard), or NULL. */
RZ_HIDDEN void *rz__proc_test_kept_stack(void);

/* One process an adapter starts: the process adapter's steps and the wasm
 * adapter's runtime. An adapter's state begins with one, so the functions
 * below are its start, fd, poll and stop (process.c). */
typedef struct rz__proc_launch {
    rz_proc_opts po;
    rz__proc_limits lim;
    const char *scratch, *outputs_path;
    rz_proc *proc;
} rz__proc_launch;

/* The options every such process takes from the spec: the timeout (a 64-bit
 * product, clamped: days must not wrap to seconds), caps, sandbox, limits
 * and folders. argv, env, input, network and memory are the adapter's. */
RZ_HIDDEN void rz__proc_launch_init(rz__proc_launch *l,
                                    const rz__exec_spec *sp);
RZ_HIDDEN int rz__proc_launch_start(void *state);
RZ_HIDDEN int rz__proc_launch_fd(const void *state);
RZ_HIDDEN int rz__proc_launch_poll(void *state, int timeout_ms);
RZ_HIDDEN void rz__proc_launch_stop(void *state);
/* What the process says of its end: exit, timeout, memory, limits,
 * outputs and log. */
RZ_HIDDEN void rz__proc_launch_collect(void *state, rz__exec_outcome *o);
/* A service's stream of stdout lines, and the pid whose network a ready
 * check enters (adapter.h `stream`, `out_lines`, `net_pid`). */
RZ_HIDDEN void rz__proc_launch_stream(void *state);
RZ_HIDDEN char *rz__proc_launch_out_lines(void *state, uint64_t *dropped);
RZ_HIDDEN int rz__proc_launch_net_pid(void *state);

#endif

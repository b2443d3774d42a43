/* rhizos/exec.h — executing steps: the process adapter and the local runner.
 *
 * The process adapter (DESIGN §4) runs a module's command with the job
 * request {inputs, config} as JSON on stdin, credentials as RZ_CRED_<NAME>,
 * context as RZ_RUN_ID / RZ_STEP_ID / RZ_ATTEMPT, and reads one JSON object
 * of outputs from stdout (or the file named by $RZ_OUTPUT). Each process runs
 * in a fresh scratch directory, under bubblewrap when it is installed, in its
 * own process group, with rlimits; stderr is kept (bounded) as the log.
 */
#ifndef RHIZOS_EXEC_H
#define RHIZOS_EXEC_H

#include "rhizos/common.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/run.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_proc rz_proc;

typedef struct rz_proc_opts {
    int version;                  /* RZ_PROC_OPTS_VERSION */
    const char *const *argv;      /* argv[0] "./x" resolves against module_dir */
    const char *module_dir;       /* mounted read-only in the sandbox */
    const char *const *env;       /* extra "NAME=value" entries, NULL-ended */
    const char *input;            /* written to stdin, may be NULL */
    size_t input_len;
    const char *scratch_parent;   /* NULL: $TMPDIR or /tmp */
    int network;                  /* 1: keep network access in the sandbox */
    int sandbox;                  /* 1 auto (bwrap if present), 0 never */
    uint32_t timeout_ms;          /* 0: none; enforced by killing the group */
    uint32_t memory_mb;           /* RLIMIT_AS; 0: unlimited */
    uint32_t cpu_seconds;         /* RLIMIT_CPU; 0: unlimited */
    size_t max_output;            /* bytes of stdout kept; 0: 16 MiB */
    size_t max_log;               /* bytes of stderr kept (tail); 0: 64 KiB */
} rz_proc_opts;

#define RZ_PROC_OPTS_VERSION 1
#define RZ_PROC_OPTS_INIT { RZ_PROC_OPTS_VERSION, NULL, NULL, NULL, NULL, 0, \
                            NULL, 0, 1, 0, 0, 0, 0, 0 }

/* Start the process; returns at once. */
RZ_EXTERN int rz_proc_spawn(rz_proc **out, const rz_proc_opts *opts);
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
                                  while steps run, for live elapsed time */
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
    /* Secret environment of one step, e.g. its credentials as
     * "RZ_CRED_<NAME>=value" (rz_vault_resolve_step). Called before each
     * attempt; an error fails the attempt with rz_error_last()'s message,
     * which must hold no secret. Every value is also scrubbed from the
     * step's outputs and failure reason. The list is released with
     * step_env_free. Both may be NULL. */
    int (*step_env)(size_t step, char ***env, void *userdata);
    void (*step_env_free)(char **env, void *userdata);
} rz_runner_opts;

#define RZ_RUNNER_OPTS_VERSION 1
#define RZ_RUNNER_OPTS_INIT { RZ_RUNNER_OPTS_VERSION, 0, NULL, NULL, NULL, 1, \
                              NULL, NULL, NULL, NULL, NULL }

/* Run a validated flow (modules resolved by rz_flow_validate) to the end.
 * *out receives the finished run even when it failed (check its state);
 * the return value is an error only when the run could not be carried out. */
RZ_EXTERN int rz_runner_run(rz_run **out, const rz_flow *flow,
                            const rz_runner_opts *opts);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_EXEC_H */

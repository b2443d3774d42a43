/* Internal helpers of the process adapter, for the attempt layer
 * (adapter.h) and the tests. */
#ifndef RZ_EXEC_IMPL_H
#define RZ_EXEC_IMPL_H

#include "common/internal.h"
#include "rhizos/exec.h"
#include "store/blob.h"

/* Why rz_proc_outputs() is NULL after completion ("stdout is not a JSON
 * object", "stdout exceeded 16777216 bytes", ...), or NULL when there are
 * outputs or the process has not completed. Borrowed like the outputs. */
RZ_HIDDEN const char *rz__proc_output_error(const rz_proc *p);

/* 1 if the process wrote more than max_output bytes to stdout (and was
 * killed for it). */
RZ_HIDDEN int rz__proc_output_over(const rz_proc *p);

/* After completion, when a sandbox limit decided the failure: the whole
 * reason ("process limit reached (512 processes); then timed out",
 * "killed for memory (limit 2048 MB, the default ...)"); else NULL. */
RZ_HIDDEN const char *rz__proc_limit_reason(const rz_proc *p);
/* Bytes the process wrote to stderr so far, kept or not. */
RZ_HIDDEN uint64_t rz__proc_log_total(const rz_proc *p);
/* 1 if the step's cgroup saw the kernel kill for memory. */
RZ_HIDDEN int rz__proc_oom(const rz_proc *p);
/* 1 if sandboxed steps get a cgroup (pids, memory) here. */
RZ_HIDDEN int rz__sandbox_has_cgroup(void);

/* 1 if a bwrap program was found on PATH, usable or not (after the probe
 * rz_sandbox_available() runs). */
RZ_HIDDEN int rz__sandbox_installed(void);
/* How many times the sandbox's state changed after its probe (a failed
 * check let the helper go): a notice told before is out of date. */
RZ_HIDDEN unsigned rz__sandbox_changes(void);
/* The adapter's one-line status of a running attempt ("" when none), e.g.
 * an image pull's progress; for the runner's RZ_EVENT_PROGRESS. */
RZ_HIDDEN void rz__attempt_status(const rz_attempt *a, char *buf, size_t len);

/* How soon (ms) the attempt wants rz_attempt_poll called again whatever its
 * fd says (a readiness check to try or under way); -1: only when its fd is
 * ready. */
RZ_HIDDEN int rz__attempt_wake_ms(const rz_attempt *a);

/* The log lines an attempt wrote since the last call, scrubbed of its
 * secrets and UTF-8 clean, as one malloc'ed text without the last newline;
 * NULL when no whole line is new. A line is held back while a secret could
 * still straddle its end; `flush` (once the attempt finished) gives the
 * rest. Only for adapters that stream their log (log_so_far); for the
 * runner's RZ_EVENT_STEP_LOG. */
RZ_HIDDEN char *rz__attempt_log_lines(rz_attempt *a, bool flush);

/* A service attempt's stdout lines written since the last call, scrubbed
 * of its secrets (malloc'ed, without the last newline; NULL when none),
 * and in *dropped the bytes its stdout cap threw away so far. NULL for an
 * attempt that is no service. `flush`: the attempt finished, take what
 * is left too. */
RZ_HIDDEN char *rz__attempt_out_lines(rz_attempt *a, uint64_t *dropped);

/* rz_container_probe without asking whether the engine runs GPU
 * containers (out->gpu stays 0): for callers that only need it to answer. */
RZ_HIDDEN int rz__container_answers(rz_container_info *out, const char *host);

/* A new, private (0700) folder <P>/rz-<pidns>-<pid>-XXXXXX, P as
 * rz__exec_scratch_parent(parent) gives it. *out is malloc'ed. */
RZ_HIDDEN int rz__exec_mkdtemp(const char *parent, char **out);
/* This user's private folder tmp/rhizos-runs-UID (made 0700 when missing;
 * *made: just now), malloc'ed; NULL when the name is taken by anything
 * but a folder this user owns that no one else may use (another user's,
 * group or world bits set, a link, a file): the caller then works in tmp
 * itself. Shared by steps' scratch folders and the engine's folders. */
RZ_HIDDEN char *rz__exec_user_dir(const char *tmp, bool *made);
/* Where scratch folders go, as a real path in *out (malloc'ed): parent
 * itself when given; NULL or "": rz__exec_user_dir of $TMPDIR (else
 * /tmp), or that tmp when the folder is refused. Starts the sweeps
 * (rz__exec_sweep_scratch) of the parent returned, and of tmp when the
 * user's folder was just made or is refused. */
RZ_HIDDEN int rz__exec_scratch_parent(const char *parent, char **out);
/* Once per process and parent, on a detached thread: remove the scratch
 * folders in `parent` whose maker is dead (scratch_sweep.c). */
RZ_HIDDEN void rz__exec_sweep_scratch(const char *parent);
/* The inode of this process's pid namespace (0: unknown). */
RZ_HIDDEN unsigned long long rz__exec_pidns(void);

/* Scratch folders that finished unsandboxed attempts leave for the next
 * (scratch.c): one pool per runner, not shared between threads. parent as
 * rz__exec_mkdtemp's. Freeing the pool removes the folders it keeps. */
typedef struct rz_scratch_pool rz__scratch_pool;   /* public: exec.h */
RZ_HIDDEN int rz__scratch_pool_new(rz__scratch_pool **out, const char *parent);
RZ_HIDDEN void rz__scratch_pool_free(rz__scratch_pool *p);
RZ_HIDDEN const char *rz__scratch_pool_parent(const rz__scratch_pool *p);
/* A kept folder, renamed to a fresh name and holding exactly
 * in/request.json (= req) and an empty out/outputs.json; NULL when none
 * is kept (or none was sound: those are removed). Malloc'ed. */
RZ_HIDDEN char *rz__scratch_take(rz__scratch_pool *p, const char *req);
/* Back to the pool (owned from here), or removed when p is NULL or full. */
RZ_HIDDEN void rz__scratch_give(rz__scratch_pool *p, char *folder);
/* rz_attempt_start whose scratch folder comes from and goes back to pool
 * (NULL: none) when it runs unsandboxed in a process. */
RZ_HIDDEN int rz__attempt_start_pooled(rz_attempt **out,
                                       const rz_attempt_opts *o,
                                       rz__scratch_pool *pool);

/* File outputs and inputs of an attempt (files.c, docs/flow-format.md). */
typedef struct rz__files_ctx {
    const char *blob_dir;         /* the blob store; NULL: none here */
    const char *scratch;          /* files are under <scratch>/out/files */
    char *const *ports;           /* the module's outputs of type file */
    size_t n_ports;
    uint64_t file_cap, files_cap; /* bytes a file, bytes in all */
} rz__files_ctx;
/* The request with each input that is a file reference (or a list's
 * element that is one) replaced by the absolute path of a read-only copy
 * under <scratch>/in/files, the digest checked as it is copied: *out
 * (malloc'd), or NULL when nothing was replaced. */
RZ_HIDDEN int rz__files_inputs(const char *blob_dir, const char *scratch,
                               const char *req, char **out);
/* Each file output of *outputs (a JSON object; a string naming a file
 * under <scratch>/out/files) stored in the blob store and replaced by its
 * reference (rz__file_ref_digest), *outputs rewritten; *stored: the bytes
 * stored. An error names the output and, past a cap, the cap. */
RZ_HIDDEN int rz__files_outputs(const rz__files_ctx *c, char **outputs,
                                uint64_t *stored);
/* The bytes of the file references among outputs' members. */
RZ_HIDDEN uint64_t rz__files_size(const char *outputs);

/* The digests of the file references a run made (file_refs.c): only those
 * may reach a step as files. */
typedef rz__blob_set rz__file_refs;   /* kept sorted (rz__blob_set_insert) */
/* Those of a step's outputs (module m's, as taken: `type: file` ports,
 * each a reference or a list of them) added. */
RZ_HIDDEN int rz__file_refs_learn(rz__file_refs *k, const rz_module *m,
                                  const char *outputs);
RZ_HIDDEN bool rz__file_refs_has(const rz__file_refs *k, const char *hex);
/* RZ_EINVALID naming the input when a request's input (or a list's
 * element) is a reference not in k: a forged one. */
RZ_HIDDEN int rz__file_refs_check(const rz__file_refs *k, const char *req);
RZ_HIDDEN void rz__file_refs_free(rz__file_refs *k);

#endif

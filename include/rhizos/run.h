/* rhizos/run.h — the run state machine of one flow execution.
 *
 * Deterministic and free of I/O: the caller passes the time (milliseconds on
 * any monotonic clock) and reports what its executors did. The machine says
 * which steps may start, wires upstream outputs into inputs, evaluates `when`,
 * schedules retries with backoff, expires timeouts and applies on_failure.
 *
 * Rules: a step is examined once every dependency has settled; its `when`
 * is then evaluated (false: SKIPPED). A step with a dependency that was
 * skipped, cancelled, or failed with on_failure: fail is SKIPPED at once,
 * and so on downstream; a dependency that failed with on_failure: continue
 * counts as done and its outputs are absent (expressions see null). A step
 * with a `join:` other than all_succeeded waits for every dependency
 * instead, then runs if its rule is met (any_succeeded, all_done,
 * none_failed, one_failed: docs/flow-format.md) or is SKIPPED with the rule
 * as its reason; none_failed gives up at the first failure, a cancelled
 * dependency cancels it.
 * Expressions also read how a settled dependency ran: steps.X.status (the
 * rz_step_state_name), .error, .attempts and .duration_ms (the `now` of its
 * first start to that of its last end), so a `when` on a failed step's
 * status makes an error handler. The flow's on_exit step depends on every
 * other step (join all_done) and reads flow.status / flow.failed_steps.
 * A step with `for_each` runs once per element of its list: when it may
 * run, the list is evaluated and each element becomes a task of its own
 * (see "Tasks" below) that retries, times out and fails as the step would;
 * at most `max_parallel` of them are started or waiting to retry at once.
 * The step is RUNNING meanwhile, and settles when every element has: it
 * succeeds if all did, its outputs a list per port in element order; the
 * first element to fail (on_failure: fail) stops the elements not started
 * (SKIPPED) and the step fails once those running end; with continue the
 * others go on, and the step fails with its lists (null where an element
 * failed) still handed on. An empty list succeeds at once with empty
 * lists; a value that is not a list, or longer than RZ_FLOW_FOR_EACH_MAX,
 * fails the step.
 * Independent branches keep running after a
 * failure. The run is done when every step has settled: CANCELLED if
 * cancelled, else FAILED if a step failed with on_failure: fail, else
 * SUCCEEDED. Every call is O(what it touches); a whole run is
 * O(steps + edges).
 */
#ifndef RHIZOS_RUN_H
#define RHIZOS_RUN_H

#include "rhizos/common.h"
#include "rhizos/flow.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_run rz_run;

typedef enum rz_step_state {
    RZ_STEP_PENDING = 0,   /* waiting for dependencies */
    RZ_STEP_READY,         /* may start now */
    RZ_STEP_BACKOFF,       /* failed, retry scheduled at a later time */
    RZ_STEP_RUNNING,
    RZ_STEP_SUCCEEDED,
    RZ_STEP_FAILED,
    RZ_STEP_SKIPPED,       /* `when` was false, or an upstream step failed */
    RZ_STEP_CANCELLED
} rz_step_state;

typedef enum rz_run_state {
    RZ_RUN_RUNNING = 0,
    RZ_RUN_SUCCEEDED,
    RZ_RUN_FAILED,
    RZ_RUN_CANCELLED
} rz_run_state;

/* "pending", "ready", ... as used in JSON output. */
RZ_EXTERN const char *rz_step_state_name(rz_step_state s);
RZ_EXTERN const char *rz_run_state_name(rz_run_state s);

/* Start a run of a validated flow. `inputs_json` is an object of flow inputs
 * (NULL: none; declared defaults apply; a missing required input is
 * RZ_EINVALID). `run_id` (NULL: "run") is copied. A run holds fewer than
 * 2^32 - 1 tasks (RZ_ETOOBIG). */
RZ_EXTERN RZ_NODISCARD int rz_run_new(rz_run **out, const rz_flow *flow,
                                      const char *inputs_json,
                                      const char *run_id, uint64_t now_ms);
RZ_EXTERN void rz_run_free(rz_run *run);

/* Tasks. The functions below that take a `step` take a task: the steps
 * are tasks 0 .. step count - 1, and each for_each element made so far is
 * one more, numbered in the order they were made (a deterministic order:
 * the same calls make the same tasks). A task that is an element runs its
 * step's module with its own request; its state, attempts, error, log and
 * outputs are its own. A for_each step itself is never ready: it cannot be
 * started, completed or asked for a request (RZ_ESTATE); rz_run_fail on it
 * while it runs fails the whole map (elements not running are skipped). */
RZ_EXTERN size_t rz_run_task_count(const rz_run *run);
/* The step task `task` belongs to (itself for a step), and in *element
 * (may be NULL) its place in the step's list, or (size_t)-1 for a step.
 * (size_t)-1 if there is no such task. */
RZ_EXTERN size_t rz_run_task_step(const rz_run *run, size_t task,
                                  size_t *element);

/* Fill `steps` with up to `cap` steps that may start at `now_ms`; returns how
 * many there are in all (which may exceed cap). Promotes due retries, the
 * earliest due first (then the lower index). Steps are listed in the order
 * they became ready. O(log n) a retry promoted, plus the steps listed. */
RZ_EXTERN size_t rz_run_ready(rz_run *run, uint64_t now_ms, size_t *steps,
                              size_t cap);
/* READY -> RUNNING; counts an attempt. */
RZ_EXTERN RZ_NODISCARD int rz_run_start(rz_run *run, size_t step,
                                        uint64_t now_ms);
/* The job request of a ready or started step: {"inputs":{...},"config":{...}}
 * with every ${{ }} in `inputs` and in `config` strings resolved (nested
 * objects and arrays too); builder connections feed the source step's
 * output port into the input port (left out if the source produced none),
 * then the step's own `inputs` are applied over them. RZ_EEXPR if an
 * expression cannot be evaluated; RZ_EINVALID if a required input of the
 * step's module would receive null (the step must not start). Release with
 * rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_run_request(const rz_run *run, size_t step,
                                          char **out);
/* RUNNING -> SUCCEEDED with a JSON object of outputs (NULL: {}). Outputs
 * that are not a JSON object, or (module "outputs_check": "strict", the
 * default) that lack an output the module declares or hold one of another
 * type, fail the step as rz_run_fail would (retrying if attempts remain; the
 * step's error says why) and return RZ_EINVALID. With "warn" the step
 * succeeds and the run record shows a "warning". RZ_ENOMEM (the run
 * unchanged) when memory ran out, reading the outputs too. */
RZ_EXTERN RZ_NODISCARD int rz_run_succeed(rz_run *run, size_t step,
                                          const char *outputs_json,
                                          uint64_t now_ms);
/* RUNNING -> BACKOFF (if attempts remain and the run is not cancelled),
 * FAILED, or CANCELLED once the run is cancelled (the step was stopped by
 * the cancel); `reason` (NULL: "failed") is copied. The retry after failed
 * attempt n falls due initial_ms later (fixed) or initial_ms * 2^(n-1)
 * capped at max_ms (exponential). */
RZ_EXTERN RZ_NODISCARD int rz_run_fail(rz_run *run, size_t step,
                                       const char *reason, uint64_t now_ms);
/* Fail every RUNNING step whose timeout has passed at `now_ms`, the earliest
 * deadline first (then the lower index); their indices go to `expired` in
 * that order (up to cap; the caller must stop them). Returns the count.
 * O(log n) a step due: nothing else is looked at. */
RZ_EXTERN size_t rz_run_tick(rz_run *run, uint64_t now_ms, size_t *expired,
                             size_t cap);
/* rz_run_tick for one step, with `note` (NULL: none) appended to its
 * reason ("timed out after N s" + note): for a caller that knows more about
 * why the step did not finish in time. Returns 1 if the step was RUNNING and
 * its timeout had passed at `now_ms` (it failed as rz_run_tick would fail
 * it), 0 if not (nothing changes), or a negative rz_status. */
RZ_EXTERN RZ_NODISCARD int rz_run_expire(rz_run *run, size_t step,
                                         const char *note, uint64_t now_ms);
/* Earliest time something changes on its own (a retry falls due, a timeout
 * expires); UINT64_MAX if nothing is scheduled. O(1). */
RZ_EXTERN uint64_t rz_run_next_wakeup(const rz_run *run);
/* Cancel: pending/ready/backoff steps become CANCELLED; running ones are left
 * for the caller to stop and report with rz_run_fail, which makes them
 * CANCELLED too (or rz_run_succeed, if they finished first). RZ_ESTATE once
 * the run is done; cancelling twice is fine. */
RZ_EXTERN RZ_NODISCARD int rz_run_cancel(rz_run *run, uint64_t now_ms);

RZ_EXTERN rz_run_state rz_run_state_get(const rz_run *run);
RZ_EXTERN int rz_run_done(const rz_run *run);   /* 1 when nothing can change */
RZ_EXTERN const char *rz_run_id(const rz_run *run);
RZ_EXTERN const rz_flow *rz_run_flow(const rz_run *run);
RZ_EXTERN rz_step_state rz_run_step_state(const rz_run *run, size_t step);
RZ_EXTERN uint32_t rz_run_step_attempts(const rz_run *run, size_t step);
/* Why the step failed or was skipped. Borrowed, valid until the step changes
 * state; NULL if none. */
RZ_EXTERN const char *rz_run_step_error(const rz_run *run, size_t step);

/* When step `step` first started and last ended, in ms after the run's
 * creation (the `now_ms` of rz_run_new); *ended_ms is 0 while it has not
 * ended. RZ_ESTATE if it never started. */
RZ_EXTERN RZ_NODISCARD int rz_run_step_times(const rz_run *run, size_t step,
                                             uint64_t *started_ms,
                                             uint64_t *ended_ms);
/* The inputs step `step` was given, as a JSON object, rebuilt from the
 * settled steps and flow inputs it reads (as rz_run_request built them):
 * for a record of what ran. RZ_ESTATE if it never started (or is a
 * for_each step: ask its elements), RZ_EEXPR /
 * RZ_EINVALID if they cannot be built. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_run_step_inputs(const rz_run *run, size_t step,
                                              char **out);

/* Keep a step's log (the stderr of its last attempt) in the run record:
 * at most the last RZ_RUN_LOG_MAX bytes, control bytes and broken UTF-8
 * replaced by '?'. Replaces any earlier log of the step. */
#define RZ_RUN_LOG_MAX (64u * 1024u)
RZ_EXTERN RZ_NODISCARD int rz_run_set_step_log(rz_run *run, size_t step,
                                               const char *log, size_t len);
/* Borrowed, valid until the log is replaced; NULL if none. */
RZ_EXTERN const char *rz_run_step_log(const rz_run *run, size_t step);

/* {"id","flow","status","steps":{"<id>":{"status","attempts","outputs",
 *  "error"?,"log"?,"elements"?:[{"status","attempts","outputs",...}]}},
 *  "outputs":{...},"error"?,"failed_steps"?:[ids]}:
 * "elements" are a for_each step's, in list order.
 * "outputs" holds the flow's declared outputs by name (null until the run
 * is done; "error" says why they could not be evaluated, which fails the
 * run) or, for a flow that declares none, the outputs of each final step
 * (one no step but on_exit depends on) that succeeded, by step id.
 * "failed_steps" lists the steps that failed, when any did. Release with
 * rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_run_to_json(const rz_run *run, char **out);
/* rz_run_to_json's document without "steps": its status, outputs, error,
 * failed steps and cost, the same size at any step count (the whole one
 * is ~1.5 KiB a step as text, several times that as a tree). Release with
 * rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_run_summary_to_json(const rz_run *run, char **out);
/* Outputs of one step as a JSON object ("{}" if none). Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_run_step_outputs(const rz_run *run, size_t step,
                                               char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_RUN_H */

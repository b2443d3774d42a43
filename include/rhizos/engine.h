/* rhizos/engine.h — the orchestrator's brain as a deterministic state machine.
 *
 * Events in (register, heartbeat, submit, poll, result, deploy, cancel, tick),
 * decisions out (assignments, settlements, finished jobs and deployments),
 * state in LMDB at DATA_DIR/engine and money in the escrow ledger at
 * DATA_DIR/ledger (opened by the engine). Time is always passed in as
 * `now_ms` (any monotonic millisecond clock, used consistently); the engine
 * reads no clock, starts no thread and does no I/O besides LMDB and the
 * ledger, so a simulator can drive it through thousands of faults.
 *
 * Durability: every call that changes state commits one LMDB write
 * transaction before it returns (plus the ledger's own durable batch when
 * money moves), or, inside a group, at rz_engine_group_commit, so whatever
 * was acknowledged survives a crash; reopening
 * resumes nodes, jobs and every deployment where it stood. Heartbeats are
 * kept in memory only: after a reopen every node gets a fresh grace period
 * that starts at the first call with a `now`.
 *
 * Ids: nodes, jobs and deployments are numbered from 1 by the engine.
 * Not thread-safe: one engine per process, calls serialised by the caller.
 * See docs/engine.md.
 */
#ifndef RHIZOS_ENGINE_H
#define RHIZOS_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"
#include "rhizos/flow.h"
#include "rhizos/ledger.h"
#include "rhizos/match.h"
#include "rhizos/run.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_engine rz_engine;

/* What RZ_ENGINE_OPTS_INIT holds; a 0 in the fields that say so means the
 * same. */
#define RZ_ENGINE_DEFAULT_NODE_TIMEOUT_MS 30000u
#define RZ_ENGINE_DEFAULT_MAX_ATTEMPTS 5u
#define RZ_ENGINE_DEFAULT_FEE_BPS 500u              /* 5% */
#define RZ_ENGINE_DEFAULT_REF_GPU_HOUR_MICROS 4000000u   /* $4.00 */
#define RZ_ENGINE_DEFAULT_REF_CPU_HOUR_MICROS 100000u    /* $0.10 */
/* Per 1,000 tokens: the hold of an llm step (docs/llm.md). */
#define RZ_ENGINE_DEFAULT_REF_LLM_1K_TOKENS_MICROS 10000u  /* $10 a million */
#define RZ_ENGINE_DEFAULT_REF_MEMORY_GB_HOUR_MICROS 10000u /* $0.01 */
#define RZ_ENGINE_DEFAULT_ESTIMATE_FACTOR_PCT 200u
#define RZ_ENGINE_DEFAULT_STEP_SECONDS 60u
/* A report bills at most the time the engine measured from handing the
 * job to its node (rz_engine_poll) to the report's arrival, plus this much
 * (the default of rz_engine_opts.run_tolerance_ms): none, the engine's
 * clock is the basis of what is billed. */
#define RZ_ENGINE_RUN_TOLERANCE_MS 0u

typedef struct rz_engine_opts {
    int version;
    rz_policy policy;               /* placement policy */
    const rz_registry *registry;    /* modules for deployments; borrowed, must
                                       outlive the engine; NULL: no deploys */
    /* A node is lost after this long without a heartbeat or poll;
     * 0: RZ_ENGINE_DEFAULT_NODE_TIMEOUT_MS. */
    uint64_t node_timeout_ms;
    uint32_t max_attempts;          /* dispatches of one job (attempt) before
                                       lost nodes make it fail; 0:
                                       RZ_ENGINE_DEFAULT_MAX_ATTEMPTS */
    uint32_t fee_bps;               /* platform fee; 500 = 5% */
    int durable;                    /* 1: fsync every commit (default) */
    /* Reference prices for the maximum cost of a deployment step without its
     * own max_cost_micros: the match cost formula with these prices, the
     * module's requirements and estimate x estimate_factor_pct / 100. */
    uint64_t ref_gpu_hour_micros, ref_cpu_hour_micros, ref_memory_gb_hour_micros;
    uint32_t estimate_factor_pct;   /* 0: RZ_ENGINE_DEFAULT_ESTIMATE_FACTOR_PCT */
    uint32_t default_step_seconds;  /* estimate of a module without one;
                                       0: RZ_ENGINE_DEFAULT_STEP_SECONDS */
    /* How long a job may wait in the queue for a node, for jobs and steps
     * that do not say (their queue_timeout_ms); 0: no limit. Past it the
     * job fails with its waiting reason and its hold is refunded. */
    uint64_t queue_timeout_ms;
    /* How much more run time than the engine measured between handing a
     * job over and its report a node may bill (rz_engine_report_result);
     * 0 (the default): none, billed = min(reported, measured). An embedder
     * whose clock is coarser than its nodes' may allow a little. */
    uint64_t run_tolerance_ms;
    /* Capability challenges (docs/node.md, "Verification"). 0: off, every
     * node's claims are taken at its word (embedded mode, simulators).
     * Else a node's CPU, memory and GPU claims are unverified from its
     * registration until it answers a challenge (rz_engine_node_challenge),
     * and a new challenge falls due at intervals drawn between half and
     * one and a half times this. */
    uint64_t challenge_interval_ms;
    /* Nonces and intervals are a function of this, the node and the
     * challenge's number: a server passes a random one at each start. */
    uint64_t challenge_seed;
    uint32_t challenge_cpu_iterations;  /* hash-chain length; 0: default */
    uint32_t challenge_memory_mb;   /* most memory one challenge asks to
                                       fill; 0: default */
    uint64_t challenge_grace_ms;    /* added to every time limit (the
                                       network, a busy node); 0: default */
    /* The reference price of an llm step (a module with exec.adapter
     * "llm") without its own max_cost_micros: its tokens (config
     * max_tokens + max_prompt_tokens) at this many micros per 1,000; 0:
     * RZ_ENGINE_DEFAULT_REF_LLM_1K_TOKENS_MICROS. (Version 2.) */
    uint64_t ref_llm_1k_tokens_micros;
} rz_engine_opts;

#define RZ_ENGINE_DEFAULT_CHALLENGE_CPU_ITERATIONS 200000u
#define RZ_ENGINE_DEFAULT_CHALLENGE_MEMORY_MB 64u
#define RZ_ENGINE_DEFAULT_CHALLENGE_GRACE_MS 10000u

#define RZ_ENGINE_OPTS_VERSION 2
#define RZ_ENGINE_OPTS_INIT { RZ_ENGINE_OPTS_VERSION, RZ_POLICY_CHEAPEST, NULL, \
    RZ_ENGINE_DEFAULT_NODE_TIMEOUT_MS, RZ_ENGINE_DEFAULT_MAX_ATTEMPTS,        \
    RZ_ENGINE_DEFAULT_FEE_BPS, 1, RZ_ENGINE_DEFAULT_REF_GPU_HOUR_MICROS,       \
    RZ_ENGINE_DEFAULT_REF_CPU_HOUR_MICROS,                                     \
    RZ_ENGINE_DEFAULT_REF_MEMORY_GB_HOUR_MICROS,                               \
    RZ_ENGINE_DEFAULT_ESTIMATE_FACTOR_PCT, RZ_ENGINE_DEFAULT_STEP_SECONDS, 0, \
    RZ_ENGINE_RUN_TOLERANCE_MS, 0, 0, 0, 0, 0, 0 }

/* Open (creating if missing) DATA_DIR/engine and DATA_DIR/ledger and resume
 * what was there: settlements a crash interrupted are completed, holds of
 * submissions that were never acknowledged are refunded, deployments are
 * rebuilt by replaying their recorded step events. opts may be NULL. A
 * second writer on the same DATA_DIR gets RZ_ESTATE. */
RZ_EXTERN RZ_NODISCARD int rz_engine_open(rz_engine **out, const char *data_dir,
                                          const rz_engine_opts *opts);
/* Close; NULL is fine. Everything acknowledged is already durable. */
RZ_EXTERN void rz_engine_close(rz_engine *e);
/* The engine's ledger (accounts, deposits, verify). Borrowed: valid until
 * rz_engine_close. Do not hold, settle or refund engine jobs through it. */
RZ_EXTERN rz_ledger *rz_engine_ledger(rz_engine *e);

/* ---- Nodes ---- */

typedef enum rz_node_state {
    RZ_NODE_ACTIVE = 1,
    RZ_NODE_LOST = 2,      /* missed heartbeats; must register again */
    RZ_NODE_GONE = 3       /* deregistered */
} rz_node_state;

/* Register a node from its capabilities (docs/formats.md; its "id" is
 * replaced by the engine's). Creates the node's payout account in the
 * ledger. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_register(rz_engine *e,
                                                   const char *caps_json,
                                                   size_t len, uint64_t now_ms,
                                                   uint64_t *node_id);
/* Node `node` registers again (its key is bound to this id): a lost or
 * gone one is active again with these capabilities and a fresh heartbeat;
 * an active one counts a heartbeat and takes the new capabilities when it
 * holds no job (else it keeps its own until then: its jobs' reservations
 * are on them). Its payout account is the same. RZ_ENOENT unknown node. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_rejoin(rz_engine *e, uint64_t node,
                                                 const char *caps_json,
                                                 size_t len, uint64_t now_ms);
/* `load` is what the node reports (0..1 utilisation); kept for display.
 * RZ_ENOENT unknown node, RZ_ESTATE for a lost or gone one. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_heartbeat(rz_engine *e, uint64_t node,
                                                    uint64_t now_ms,
                                                    double load);
/* The node leaves; its jobs go back to the queue. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_deregister(rz_engine *e,
                                                     uint64_t node,
                                                     uint64_t now_ms);
/* The server holds a long-poll of `node` (waiting 1) or no longer does (0).
 * Among the nodes the placement policy ranks equal, a waiting one is chosen
 * first, so a job can be handed over in the pass of its submission instead
 * of at the next poll of a busy node; the policy's order is kept otherwise.
 * A placement on a waiting node ends its wait (the poll is answered with
 * it). An input like the others (the same calls give the same placements),
 * but not state: it is not committed and is 0 for every node after open.
 * RZ_ENOENT for an unknown node; a lost or gone one is ignored. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_waiting(rz_engine *e, uint64_t node,
                                                  int waiting);
/* The payout account of a node: a fixed function of its id. */
RZ_EXTERN rz_ledger_id rz_engine_node_account(uint64_t node);

typedef struct rz_engine_node_info {
    uint64_t id;
    rz_node_state state;
    uint64_t registered_ms, last_heartbeat_ms;
    double load;
    uint32_t jobs;          /* assigned or running on it now */
    rz_ledger_id account;
} rz_engine_node_info;
RZ_EXTERN RZ_NODISCARD int rz_engine_node_get(const rz_engine *e, uint64_t node,
                                              rz_engine_node_info *out);

/* ---- Jobs ---- */

typedef enum rz_job_state {
    RZ_JOB_PENDING = 0,     /* deployment step: waiting for dependencies or
                               for a retry to fall due */
    RZ_JOB_QUEUED,
    RZ_JOB_ASSIGNED,        /* placed on a node, not yet picked up */
    RZ_JOB_RUNNING,         /* the node took it (poll) */
    RZ_JOB_SUCCEEDED,
    RZ_JOB_FAILED,
    RZ_JOB_CANCELLED
} rz_job_state;
RZ_EXTERN const char *rz_job_state_name(rz_job_state s);

typedef struct rz_engine_job_spec {
    int version;
    rz_ledger_id client;            /* a client account in the ledger */
    const char *requirements_json;  /* docs/formats.md; NULL: none */
    const char *module_id;          /* NULL: "" */
    const char *module_version;     /* NULL: "" */
    const char *request_json;       /* {"inputs":{...},"config":{...}}; NULL: {} */
    uint64_t max_cost_micros;        /* held in escrow; >= 1 */
    int32_t priority;               /* higher first; FIFO within a priority */
    /* Longest wait in the queue for a node (from each time it is queued);
     * 0: the engine's opts.queue_timeout_ms. */
    uint64_t queue_timeout_ms;
    /* An ad-hoc job without a module (a server allowed its image): what
     * the node runs, {"adapter":"docker","image":"...","command":[...]?}
     * or an llm job's {"adapter":"llm","model":"..."} (docs/llm.md),
     * handed over with the assignment; NULL: a module job. */
    const char *exec_json;
    /* Version 2: redundant execution (docs/engine.md, "Replicas"). 0 or 1:
     * one run. 2..RZ_ENGINE_REPLICAS_MAX: the job runs on that many
     * distinct nodes (so distinct payout accounts), each run holding
     * max_cost_micros (k holds in all, taken together or not at all); the
     * outputs a strict majority agrees on (SHA-256 of the outputs text) are
     * the job's, the agreeing runs are paid, the others are refunded. */
    uint32_t replicas;
} rz_engine_job_spec;
#define RZ_ENGINE_JOB_SPEC_VERSION 2
#define RZ_ENGINE_JOB_SPEC_INIT { RZ_ENGINE_JOB_SPEC_VERSION, {0, 0}, NULL, \
                                  NULL, NULL, NULL, 0, 0, 0, NULL, 0 }
#define RZ_ENGINE_REPLICAS_MAX 5u

/* Hold max_cost_micros of the client's money and queue the job. RZ_EFUNDS
 * (nothing changes) when the client cannot cover it. The requirements'
 * max_cost_micros is lowered to the hold, so only nodes whose estimate fits
 * the hold are chosen. */
RZ_EXTERN RZ_NODISCARD int rz_engine_submit(rz_engine *e,
                                            const rz_engine_job_spec *spec,
                                            uint64_t now_ms, uint64_t *job_id);

/* A standalone job of a module of the engine's registry, given as a client
 * gives it (POST /api/v1/jobs). */
typedef struct rz_engine_module_job {
    int version;
    rz_ledger_id client;            /* a client account in the ledger */
    const char *module;             /* "<id>" or "<id>@<version spec>"
                                       (rz_registry_resolve's forms); the
                                       id may carry a "chain://" prefix */
    const char *inputs_json;        /* a JSON object; NULL: {} */
    const char *config_json;        /* a JSON object; NULL: {} */
    const char *requirements_json;  /* a JSON object whose members replace
                                       the module's; NULL: none */
    uint64_t max_cost_micros;        /* 0: rz_engine_reference_cost of the
                                       job's requirements */
    int32_t priority;               /* higher first; FIFO within a priority */
    uint64_t queue_timeout_ms;      /* as rz_engine_job_spec's */
    uint32_t replicas;              /* version 2: as rz_engine_job_spec's */
} rz_engine_module_job;
#define RZ_ENGINE_MODULE_JOB_VERSION 2
#define RZ_ENGINE_MODULE_JOB_INIT { RZ_ENGINE_MODULE_JOB_VERSION, {0, 0}, \
                                    NULL, NULL, NULL, NULL, 0, 0, 0, 0 }

/* Check a module job the way a deployment step is checked, then submit it
 * (rz_engine_submit). The module is resolved in the registry of the
 * options; the config gets the module's defaults, then must satisfy its
 * JSON Schema; the requirements are the manifest's, with its
 * estimate.seconds as estimate_seconds, member by member replaced by the
 * job's; the request the node receives is {"inputs","config"} with that
 * config. Errors (nothing held, nothing queued; the message in
 * rz_error_last()): RZ_EINVAL a malformed module reference, a member that
 * is not a JSON object, or an engine opened without a registry; RZ_EMODULE
 * no such module; RZ_EINVALID the config breaks the schema (its first
 * problem, as "config<JSON pointer>: <message>"), the schema does not
 * compile, or the requirements are malformed; then rz_engine_submit's
 * (RZ_EFUNDS). */
RZ_EXTERN RZ_NODISCARD int rz_engine_submit_module(rz_engine *e,
                                                   const rz_engine_module_job *spec,
                                                   uint64_t now_ms,
                                                   uint64_t *job_id);

/* What a node is given to run. Strings are borrowed: valid until the next
 * call into the engine. */
typedef struct rz_engine_assignment {
    uint64_t job;
    uint32_t attempt;       /* report it back with the result */
    uint64_t deployment;    /* 0: a standalone job */
    const char *step;       /* step id, "" for standalone jobs */
    const char *module_id, *module_version;
    const char *request_json;
    uint64_t max_cost_micros;
    const char *exec_json;  /* an ad-hoc job's (rz_engine_job_spec); NULL:
                               a module job */
} rz_engine_assignment;

/* A node asks for work (counts as a heartbeat): assigns queued jobs, then
 * hands over one job placed on this node. RZ_OK with *out filled, RZ_ENOENT
 * when there is none, RZ_ESTATE for a lost or gone node. */
RZ_EXTERN RZ_NODISCARD int rz_engine_poll(rz_engine *e, uint64_t node,
                                          uint64_t now_ms,
                                          rz_engine_assignment *out);

/* Node `node` says its attempt `attempt` of `job` ended (its process is
 * gone) and its result is on the way: the job stays RUNNING and the
 * node's until the result (rz_engine_report_result) or the node's loss,
 * but no longer holds its reservation, so the node's next poll (or this
 * call's commit) can hand it the next job before the result is taken.
 * RZ_OK (also when said before); RZ_ESTATE when the node does not run
 * that attempt (its result was taken, or it is stale), or already has as
 * many results due as its max_concurrent_jobs (64 without one): nothing
 * changes, the slot frees with the result. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_ended(rz_engine *e, uint64_t node,
                                                uint64_t job, uint32_t attempt,
                                                uint64_t now_ms);

/* The task of its deployment's run (rz_run's numbering: a step, or one of
 * a for_each step's elements) that job `job` runs, into *task. RZ_ENOENT
 * if `job` is not a job of a running deployment held in memory. */
RZ_EXTERN RZ_NODISCARD int rz_engine_job_task(const rz_engine *e, uint64_t job,
                                              size_t *task);

/* What a node reports of one attempt of a job it holds. */
typedef struct rz_engine_report {
    int version;                /* RZ_ENGINE_REPORT_VERSION */
    uint32_t attempt;           /* the assignment's attempt */
    const char *outputs_json;   /* success (error NULL): a JSON object;
                                   NULL: {} */
    const char *error;          /* NULL: success; else why it failed */
    uint64_t run_ms;            /* the run time the node measured */
} rz_engine_report;
#define RZ_ENGINE_REPORT_VERSION 1
#define RZ_ENGINE_REPORT_INIT { RZ_ENGINE_REPORT_VERSION, 0, NULL, NULL, 0 }

/* Node `node` reports an attempt of `job`: success or failure as the report
 * says. The job costs the node's price for its run time (the match cost
 * formula), capped at the hold; the run time billed (and shown as the
 * job's run_ms) is the engine's own measure, now_ms minus the time of the
 * poll that handed the job over (plus the options' run_tolerance_ms, 0 by
 * default), bounded by the node's run_ms: min(reported, measured). RZ_OK
 * also for an exact repeat of a report already taken (nothing changes
 * again); *was_repeat (may be NULL) says which:
 * 1 a repeat, 0 this report was taken. RZ_ESTATE for a node that does not
 * hold the job or a stale attempt, and for a repeat of a taken attempt
 * with other content (outputs, error or run_ms); RZ_ENOENT unknown job;
 * RZ_EINVAL a report of another version. */
RZ_EXTERN RZ_NODISCARD int rz_engine_report_result(rz_engine *e, uint64_t node,
                                                   uint64_t job,
                                                   const rz_engine_report *report,
                                                   uint64_t now_ms,
                                                   int *was_repeat);
/* Services (docs/services.md): a running service step's node says it is
 * ready (its dependants start; a repeat changes nothing), or that it
 * emitted event `name` (1-64 of [A-Za-z0-9_.-]) with `data_json` (a JSON
 * value of at most RZ_ENGINE_EVENT_MAX bytes; NULL: null), number `seq`
 * (from 1) of this attempt's events. A node sends each event until it is
 * acknowledged, in order: one at or before the last taken from the
 * attempt is a repeat (*was_repeat 1, may be NULL; nothing changes), and
 * so is one whose `key` (the service's own id of the event, 1 to
 * RZ_ENGINE_EVENT_KEY_MAX bytes; NULL: none) the step gave before, in any
 * attempt. Each
 * listener (`on: {event: steps.S.events.NAME}`) gets one run of it. Both
 * are recorded like a step's result: a reopened engine replays them.
 * RZ_ESTATE if the node does not hold that attempt of a service job;
 * RZ_EINVALID for a bad name or data; RZ_ETOOBIG for data over the cap, or
 * a listener that holds its most events (the others took it). */
#define RZ_ENGINE_EVENT_MAX (64u * 1024u)
#define RZ_ENGINE_EVENT_KEY_MAX 128u
/* 1 if job `job` runs a service step of a running deployment (its node
 * streams its stdout and reports readiness and events), else 0. */
RZ_EXTERN int rz_engine_job_service(const rz_engine *e, uint64_t job);
/* A service job's readiness check ("tcp:PORT" or an http:// URL, as
 * rz_attempt_opts.ready_check) and its timeout in *timeout_s (0: the
 * default; may be NULL); NULL when it has none. Borrowed from the flow. */
RZ_EXTERN const char *rz_engine_job_ready_check(const rz_engine *e, uint64_t job,
                                                uint32_t *timeout_s);
RZ_EXTERN RZ_NODISCARD int rz_engine_report_ready(rz_engine *e, uint64_t node,
                                                  uint64_t job, uint32_t attempt,
                                                  uint64_t now_ms);
RZ_EXTERN RZ_NODISCARD int rz_engine_report_event(rz_engine *e, uint64_t node,
                                                  uint64_t job, uint32_t attempt,
                                                  uint32_t seq, const char *key,
                                                  const char *name,
                                                  const char *data_json,
                                                  uint64_t now_ms, int *was_repeat);
/* Cancel a standalone job that has not finished: its hold is refunded (a
 * node running it is told by a RZ_EV_JOB_STOP event). RZ_ESTATE when it has
 * finished; deployment steps are cancelled with their deployment. */
RZ_EXTERN RZ_NODISCARD int rz_engine_job_cancel(rz_engine *e, uint64_t job,
                                                uint64_t now_ms);

typedef struct rz_engine_job_info {
    uint64_t id;
    rz_job_state state;
    uint32_t attempt;          /* dispatches so far (0: never queued) */
    uint64_t node;             /* holder now, or the one that finished it */
    int32_t priority;
    rz_ledger_id client;
    uint64_t max_cost_micros;
    uint64_t cost_micros;       /* charged; set once it succeeded (a service
                                   billed by time: what its intervals were
                                   charged so far, its max_cost_micros one
                                   interval's hold; docs/services.md) */
    uint64_t run_ms;
    uint64_t deployment;       /* 0: standalone */
    const char *step;          /* borrowed like rz_engine_assignment */
    const char *module_id, *module_version;
    const char *outputs_json;  /* NULL until it succeeded */
    const char *error;         /* NULL unless it failed */
    /* Queued and no active node can run it now: why, per constraint, in
     * the matcher's words ("no node offers adapter 'docker'", "needs 12288
     * MB VRAM; the largest free GPU has 8192 MB", "no active node").
     * Worked out when the job is queued and again when placement is tried
     * after the nodes changed, per requirement group; memory only (NULL
     * after open until the next try). NULL when placed or finished, or
     * when only its turn in the queue keeps it waiting. Borrowed like
     * `step`. */
    const char *waiting_reason;
    uint64_t queue_deadline_ms;  /* queued: fails at this time if still
                                    waiting; 0: no limit */
    const char *exec_json;       /* an ad-hoc job's; NULL: a module job */
    /* Redundant execution: on the job a client submitted, how many runs it
     * asked for (0: one); its max_cost_micros is then what all its runs
     * hold (k x the maximum of one) and cost_micros what its paid runs cost
     * together. On each other run, the job it is a replica of (0: none),
     * max_cost_micros and cost_micros 0 (its money is counted on that job;
     * rz_engine_job_replicas shows each run's), and a step's deployment
     * and step. */
    uint32_t replicas;
    uint64_t replica_of;
} rz_engine_job_info;
RZ_EXTERN RZ_NODISCARD int rz_engine_job_get(const rz_engine *e, uint64_t job,
                                             rz_engine_job_info *out);

/* One run of a replicated job (rz_engine_job_replicas). */
typedef struct rz_engine_replica_run {
    uint64_t job;               /* the run's job id (the first is the job's) */
    uint64_t node;              /* the node that ran it (or holds it); 0 none */
    rz_job_state state;
    /* "pending" (not all runs reported), "agreed" (in the majority: paid),
     * "disagreed" (outputs differ from the majority's: not paid, the
     * node's `disagreed` count grows), "failed" (an error or it never
     * reported: not paid), "no_majority" (no strict majority: nobody is
     * paid, the job fails), "cancelled". */
    const char *verdict;
    int has_digest;             /* it reported outputs */
    unsigned char digest[32];   /* SHA-256 of its outputs text */
    uint64_t cost_micros;       /* paid for it (agreed only) */
    uint64_t run_ms;
} rz_engine_replica_run;

/* The runs of job `job` (the job a client submitted, or any of its runs),
 * the first being the job itself, at most `max` into `out`. Returns how
 * many runs the job has (0: it is not replicated, or unknown). */
RZ_EXTERN size_t rz_engine_job_replicas(const rz_engine *e, uint64_t job,
                                        rz_engine_replica_run *out, size_t max);
/* The ledger id under which a job's hold and settlement are recorded. */
RZ_EXTERN rz_ledger_id rz_engine_job_ledger_id(uint64_t job);
/* The requirements job `job` was matched by (docs/formats.md: its
 * module's, with what its submission or step set in their place), as JSON
 * text borrowed until the next call that changes state; NULL when the job
 * is not open (a node is told them with its assignment). */
RZ_EXTERN const char *rz_engine_job_requirements(const rz_engine *e, uint64_t job);
/* The request job `job`'s node is handed ({"inputs","config"}), as JSON
 * text borrowed like rz_engine_job_requirements; NULL when the job is not
 * open. What the orchestrator reads to tell whether a node may fetch a
 * file an input names (docs/flow-format.md, "File outputs"). */
RZ_EXTERN const char *rz_engine_job_request(const rz_engine *e, uint64_t job);

/* ---- Deployments ---- */

/* Parse `text` (YAML or JSON flow document), validate it against the
 * registry of the options (problems go to `diags`, which may be NULL:
 * RZ_EINVALID), hold every step's maximum cost (the step's own
 * max_cost_micros, else the reference estimate of rz_engine_opts) in one
 * atomic batch (RZ_EFUNDS: nothing held), and start it: every step becomes a
 * job that is queued when the run makes it ready. inputs_json: flow inputs
 * (NULL: none). */
RZ_EXTERN RZ_NODISCARD int rz_engine_deploy(rz_engine *e, const char *text,
                                            size_t len, rz_ledger_id client,
                                            const char *inputs_json,
                                            uint64_t now_ms,
                                            uint64_t *deployment,
                                            rz_diags *diags);
/* {"id","status","steps":{"<id>":{"status","attempts","outputs","module",
 *  "needs","job","job_status","dispatches"}},"outputs":{...}}: the shape of
 * `rhizos flow run --json` plus each step's module id (none for an
 * approval step), the ids of the steps it waits for (rz_flow_step_deps),
 * its job id, the job's own state (rz_job_state_name) and how many times
 * it was dispatched in all. "status"
 * and "attempts" are the run's: a step stays "running" on its attempt while
 * its job, declined or lost by a node, is "queued" again. A step that timed
 * out before any node took its job says so: "timed out after N s waiting for
 * a node (no node took it)". Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_status(const rz_engine *e,
                                                       uint64_t deployment,
                                                       char **json);
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_state(const rz_engine *e,
                                                      uint64_t deployment,
                                                      rz_run_state *out);
/* What changed, for event streams that send changes instead of whole
 * statuses. Every commit that touches a step's job (it was started, queued,
 * placed, taken, reported, retried, skipped, cancelled) appends the step to
 * the running deployment's change log; a step logged again leaves its older
 * entry, so each step is listed once, at its latest change. Writes up to
 * `cap` indices of steps changed after log position `since` (0: all since
 * the engine opened) and sets *next (may be NULL) to the position to pass
 * next time; a `since` past the end gives 0 steps and the end. O(entries
 * after since), not O(steps). The log is memory only: a reopened engine
 * starts again at 0 (a server tells its streams apart by its start), and it
 * is dropped when the deployment finishes (0 steps; its final status says
 * all). Unknown deployment: 0 and *next = 0. */
RZ_EXTERN size_t rz_engine_deployment_changes(const rz_engine *e,
                                              uint64_t deployment,
                                              uint64_t since, size_t *steps,
                                              size_t cap, uint64_t *next);
/* One step of a running deployment as rz_engine_deployment_status writes it
 * under "steps", plus "step": its id, but without a for_each step's
 * "elements" (a change of any element logs its step; the whole status has
 * them). O(1) in the elements. RZ_ESTATE once the deployment has
 * finished (rz_engine_deployment_status has it), RZ_ENOENT no such
 * deployment or step. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_step_status(const rz_engine *e,
                                                            uint64_t deployment,
                                                            size_t step,
                                                            char **json);
/* Cancel: waiting steps are cancelled, running ones stopped, every hold
 * not yet settled refunded. Cancelling a finished deployment is RZ_ESTATE. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_cancel(rz_engine *e,
                                                       uint64_t deployment,
                                                       uint64_t now_ms);
/* Resume with a step cache (docs/triggers.md, "Resume and cache").
 * rz_engine_reuse_map: the results of `deployment`'s steps (and for_each
 * elements) that succeeded, as {"<step key>":{"outputs","from","ms"}}
 * (release with rz_free); the key of a step is taken when it starts: a
 * SHA-256 of its step id, module (id, version, manifest), resolved inputs and
 * config and its credential ids. rz_engine_deploy_reuse: rz_engine_deploy,
 * where a step whose key is in `reuse_json` succeeds at once with those
 * outputs (its hold refunded, nothing charged; its status "reused": true,
 * "reused_from"). A module with "cacheable": false in its manifest, or a
 * step with `cache: false`, is never reused; `cache: {ttl_s: N}` takes
 * only results at most N s old. The map is stored with the deployment.
 * RZ_EINVAL for a malformed map (nothing held). */
RZ_EXTERN RZ_NODISCARD int rz_engine_reuse_map(const rz_engine *e,
                                               uint64_t deployment,
                                               char **json);
/* rz_engine_reuse_map with the deployment's own results' "from" named
 * `own` followed by the step's id (an embedded runner's "run <id> step
 * S") instead of "deployment N step S": a record takes the text as it is,
 * not parsed and printed again (~15 MB at 100,000 steps). */
RZ_EXTERN RZ_NODISCARD int rz_engine_reuse_map_named(const rz_engine *e,
                                                     uint64_t deployment,
                                                     const char *own,
                                                     char **json);
/* The flow text and inputs (NULL: none) a deployment was made with;
 * release both with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_flow(const rz_engine *e,
                                                     uint64_t deployment,
                                                     char **text, char **inputs);
RZ_EXTERN RZ_NODISCARD int rz_engine_deploy_reuse(rz_engine *e, const char *text,
                                                  size_t len, rz_ledger_id client,
                                                  const char *inputs_json,
                                                  const char *reuse_json,
                                                  uint64_t now_ms,
                                                  uint64_t *deployment,
                                                  rz_diags *diags);
/* Clearing a step cache (docs/triggers.md, "Clearing the cache"): `map`
 * (a reuse map as rz_engine_reuse_map gives it, or a run record's
 * "step_cache") without the entries of step `step` (NULL: of every step)
 * whose result was taken at or before `before_ms`, into *out (release with
 * rz_free); how many were dropped into *dropped (may be NULL). An entry's
 * step is the last word of its "from" ("deployment 12 step fetch", "run R
 * step fetch"). Pure: nothing is read or written but the text. RZ_EINVAL
 * for a map that is not a JSON object; *out is NULL on failure. */
RZ_EXTERN RZ_NODISCARD int rz_engine_reuse_drop(char **out, const char *map,
                                                const char *step,
                                                uint64_t before_ms,
                                                size_t *dropped);
/* Pause (paused != 0) or resume a running deployment. While paused no
 * step starts and its queued jobs go to no node (their queue deadline
 * stops; rz_engine_job_info.waiting_reason says so): jobs already
 * assigned finish, retries and ready steps wait, holds stay, approval
 * steps may still be decided. A resume queues the held jobs again in
 * their order, their deadline counted from then. The flag is durable with the
 * deployment; its status shows "paused": true. Pausing a paused one or
 * resuming a running one changes nothing. RZ_ESTATE once it has finished,
 * RZ_ENOENT no such deployment. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_pause(rz_engine *e,
                                                      uint64_t deployment,
                                                      int paused,
                                                      uint64_t now_ms);
/* Decide approval step `step` (a step with `approval:` and no module) that
 * awaits a decision (listed in the status's "awaiting_approval"): approve
 * succeeds it with outputs {"approved":true,"by","comment"}; reject fails
 * it with "rejected by <by>[: <comment>]". `by` names the decider (the
 * caller checks who may decide); `comment` may be NULL. Recorded as a step
 * event, so a reopen replays it. RZ_ENOENT no such deployment or step,
 * RZ_EINVALID not an approval step, RZ_ESTATE not awaiting a decision
 * (not reached yet, or decided) or the deployment has finished. */
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_approve(rz_engine *e,
                                                        uint64_t deployment,
                                                        const char *step,
                                                        int approve,
                                                        const char *by,
                                                        const char *comment,
                                                        uint64_t now_ms);

/* ---- Declines and listings (for servers) ---- */

/* A node turns down attempt `attempt` of `job` that it holds (it cannot run
 * the module, or its copy's digest differs): the job goes back to the queue
 * with the next attempt and is never placed on this node again; after
 * max_attempts dispatches it fails (refunded; a deployment step fails
 * through its run). RZ_ENOENT unknown job, RZ_ESTATE when the node does not
 * hold that attempt. */
RZ_EXTERN RZ_NODISCARD int rz_engine_decline(rz_engine *e, uint64_t node,
                                             uint64_t job, uint32_t attempt,
                                             uint64_t now_ms);

/* Reconcile with the jobs a node says it is running (its heartbeat's list,
 * `n_running` job ids). A job the engine has had RUNNING on that node for
 * at least grace_ms that the list lacks never reached the node (the
 * assignment was lost between the server and the node): it goes back to
 * the queue with the next attempt like a job of a lost node (nothing
 * charged; after max_attempts dispatches it fails) and a RZ_EV_JOB_STOP is
 * emitted for the node. After a reopen the grace of each running job starts
 * at its first reconcile. Not a heartbeat. *requeued (may be NULL): how
 * many went back. RZ_ENOENT unknown node, RZ_ESTATE lost or gone. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_running(rz_engine *e, uint64_t node,
                                                  const uint64_t *running,
                                                  size_t n_running,
                                                  uint64_t grace_ms,
                                                  uint64_t now_ms,
                                                  size_t *requeued);

/* Job ids newest first: up to `cap` ids below `before` (0: from the newest)
 * whose client is *client (NULL: every job's), standalone jobs and
 * deployment steps alike; ids retention removed are skipped. Returns how
 * many were written. O(jobs). */
RZ_EXTERN size_t rz_engine_job_list(const rz_engine *e,
                                    const rz_ledger_id *client,
                                    uint64_t before, uint64_t *ids, size_t cap);
/* Deployment ids, the same way. */
RZ_EXTERN size_t rz_engine_deployment_list(const rz_engine *e,
                                           const rz_ledger_id *client,
                                           uint64_t before, uint64_t *ids,
                                           size_t cap);

typedef struct rz_engine_deployment_info {
    uint64_t id;
    rz_ledger_id client;       /* the account that deployed and pays */
    rz_run_state state;
    uint64_t created_ms;
    uint64_t first_job;        /* step i is job first_job + i */
    size_t n_steps;
} rz_engine_deployment_info;
RZ_EXTERN RZ_NODISCARD int rz_engine_deployment_get(const rz_engine *e,
                                                    uint64_t deployment,
                                                    rz_engine_deployment_info *out);
/* The jobs of a running deployment's for_each elements made so far (each
 * its own job and hold, made when its step's list was known; not the steps'
 * first_job + i): up to `cap` ids into `jobs` (may be NULL with cap 0), in
 * the order they were made; returns how many there are in all. 0 for a
 * finished deployment: its status lists each element's "job". */
RZ_EXTERN size_t rz_engine_deployment_element_jobs(const rz_engine *e,
                                                   uint64_t deployment,
                                                   uint64_t *jobs, size_t cap);

/* Nodes are numbered 1..rz_engine_node_count (lost and gone ones stay). */
RZ_EXTERN uint64_t rz_engine_node_count(const rz_engine *e);
/* The capabilities a node registered with (its "id" the engine's), as JSON;
 * release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_caps(const rz_engine *e,
                                               uint64_t node, char **json);

/* When a job was submitted and last queued (`now` of those calls; queued
 * is kept in memory only: 0 for jobs queued before the engine was opened).
 * For dispatch latency: the time from queued to handed to a node. */
RZ_EXTERN RZ_NODISCARD int rz_engine_job_times(const rz_engine *e, uint64_t job,
                                               uint64_t *submitted_ms,
                                               uint64_t *queued_ms);

/* The maximum cost a deployment step without its own max_cost_micros is
 * given, for `requirements_json` (docs/formats.md, with
 * "estimate_seconds"; NULL: none): the match cost formula at the options'
 * reference prices for the estimate (else default_step_seconds) x
 * estimate_factor_pct / 100, at least 1 cent. A server uses it as a standalone job's default. */
RZ_EXTERN RZ_NODISCARD int rz_engine_reference_cost(const rz_engine *e,
                                                    const char *requirements_json,
                                                    uint64_t *micros);

/* ---- Group commit (for servers) ----
 * Between rz_engine_group_begin and rz_engine_group_commit, calls change
 * the engine in memory only and return as usual; the commit makes all of
 * them durable at once: the submissions' holds in one ledger batch, then
 * one LMDB write transaction, then the settlements and refunds owed. A
 * server answers the requests of a group only after its commit returned
 * RZ_OK, so one fsync pays for many requests. Inside a group a submission
 * checks its client's funds against the ledger less the holds the group
 * has not written yet; should the ledger refuse such a hold at the commit
 * after all (money taken out of the ledger directly meanwhile), the job
 * fails with max_cost_micros 0 and an error saying so. A failed commit
 * leaves the handle refusing changes (reopen it: what was not committed is
 * gone, orphan holds are refunded). rz_engine_check is refused inside a
 * group; rz_engine_close commits an open group. */
RZ_EXTERN RZ_NODISCARD int rz_engine_group_begin(rz_engine *e);
RZ_EXTERN RZ_NODISCARD int rz_engine_group_commit(rz_engine *e);
/* 1 inside a group, else 0. */
RZ_EXTERN int rz_engine_in_group(const rz_engine *e);
/* ---- Extra records (for servers) ----
 * A caller's own records (a key of 1 to RZ_ENGINE_EXTRA_KEY_MAX bytes,
 * any bytes as the value), written by the engine's next commit (the open
 * group's, else the next call that changes state, or rz_engine_close) in
 * the same LMDB transaction as the engine's own changes: durable
 * together with them, or not at all. Puts and deletes apply in call
 * order; a delete of a key not stored is no error. A put makes that
 * commit happen; deletes wait for one with a change of its own (a call's,
 * rz_engine_compact's, or rz_engine_close's, which writes them alone
 * too): a crash before it loses them, so the caller must allow for a
 * record it deleted coming back. A value over RZ_ENGINE_EXTRA_VAL_MAX
 * bytes, or one that would make those waiting for a commit hold over
 * RZ_ENGINE_EXTRA_PENDING_MAX bytes, is RZ_ETOOBIG. A server keeps in them
 * a redo copy of what another store of its holds in a transaction not yet
 * durable, so that the engine's fsync covers both (the orchestrator's
 * auth store, docs/engine.md "Extra records"). rz_engine_extra_each calls
 * fn with each stored record in key order (not the ones waiting for a
 * commit); fn returning nonzero stops it with RZ_ECANCELED. */
#define RZ_ENGINE_EXTRA_KEY_MAX 256
#define RZ_ENGINE_EXTRA_VAL_MAX (1024 * 1024)
#define RZ_ENGINE_EXTRA_PENDING_MAX (64 * 1024 * 1024)
RZ_EXTERN RZ_NODISCARD int rz_engine_extra_put(rz_engine *e, const void *key,
                                               size_t klen, const void *val,
                                               size_t vlen);
RZ_EXTERN RZ_NODISCARD int rz_engine_extra_del(rz_engine *e, const void *key,
                                               size_t klen);
typedef int (*rz_engine_extra_fn)(void *arg, const void *key, size_t klen,
                                  const void *val, size_t vlen);
RZ_EXTERN RZ_NODISCARD int rz_engine_extra_each(rz_engine *e,
                                                rz_engine_extra_fn fn, void *arg);

/* Micros the open group will hold from `client` at its commit (0 outside
 * a group); rz_engine_available leaves them, and a server's withdrawals go
 * through rz_engine_withdraw, which checks it. */
RZ_EXTERN uint64_t rz_engine_group_pending(const rz_engine *e,
                                           rz_ledger_id client);
/* What `client` may still hold or withdraw: its ledger balance less what
 * it holds, less what an open group will hold at its commit and what its
 * running services owe for intervals decided but not paid yet (billing by
 * time). Every hold the engine makes is checked against it. */
RZ_EXTERN RZ_NODISCARD int rz_engine_available(const rz_engine *e,
                                               rz_ledger_id client,
                                               uint64_t *micros);
/* rz_ledger_withdraw_request (ledger.h) checked against
 * rz_engine_available first: RZ_EFUNDS "insufficient available: ..." and
 * nothing changes when `micros` is more. A server's withdrawals go through
 * it, never the ledger directly, so they cannot take money running
 * services owe. A replayed `id` is the ledger's to answer. Refused with
 * RZ_EDB, as every change is, by an engine whose commit failed. */
RZ_EXTERN RZ_NODISCARD int rz_engine_withdraw(rz_engine *e, rz_ledger_id id,
                                              rz_ledger_id account,
                                              uint64_t micros);

/* What `client` has open: standalone jobs not finished (pending, queued,
 * assigned or running) and deployments still running; either out-param
 * may be NULL. For a server's per-account limits. O(jobs + deployments),
 * in memory. */
RZ_EXTERN void rz_engine_client_open(const rz_engine *e, rz_ledger_id client,
                                     uint64_t *jobs, uint64_t *deployments);

/* ---- Time, events, invariants ---- */

/* Lose silent nodes (re-queueing their jobs), expire step timeouts, start
 * retries that fell due, assign queued jobs. */
RZ_EXTERN RZ_NODISCARD int rz_engine_tick(rz_engine *e, uint64_t now_ms);
/* Earliest time a tick would change something by itself (a heartbeat
 * deadline, a retry, a timeout); UINT64_MAX if none. */
RZ_EXTERN uint64_t rz_engine_next_wakeup(const rz_engine *e);

typedef enum rz_engine_event_type {
    RZ_EV_JOB_ASSIGNED = 1,     /* job placed on node (deliver on its poll) */
    RZ_EV_JOB_STOP,             /* node should stop job/attempt (timeout,
                                   cancel, or the node was lost) */
    RZ_EV_JOB_FINISHED,         /* job reached state (succeeded/failed/
                                   cancelled) */
    RZ_EV_DEPLOYMENT_FINISHED,  /* deployment reached run_state */
    RZ_EV_NODE_LOST
} rz_engine_event_type;

typedef struct rz_engine_event {
    rz_engine_event_type type;
    uint64_t job, node, deployment;
    uint32_t attempt;
    rz_job_state state;          /* JOB_* events */
    rz_run_state run_state;      /* DEPLOYMENT_FINISHED */
} rz_engine_event;

/* Decisions since the last call, oldest first: 1 and *out filled, or 0 when
 * there are none. Events live in memory only (a restarted server reads
 * states instead). At most RZ_ENGINE_EVENTS_MAX are kept; older ones are
 * dropped first. */
#define RZ_ENGINE_EVENTS_MAX 65536u
RZ_EXTERN int rz_engine_next_event(rz_engine *e, rz_engine_event *out);

typedef struct rz_engine_stats {
    uint64_t nodes_active, nodes_lost;
    uint64_t jobs[RZ_JOB_CANCELLED + 1];   /* by rz_job_state */
    uint64_t deployments_running, deployments_done;
    uint64_t assignments, requeues, results_rejected, commits;
} rz_engine_stats;
RZ_EXTERN void rz_engine_stats_get(const rz_engine *e, rz_engine_stats *out);
/* What succeeded jobs were charged in all (the sum of their cost_micros,
 * as rz_engine_job_get gives it), and services billed by time what their
 * intervals were: O(jobs in memory), without reading the finished jobs'
 * records. 0 for NULL. */
RZ_EXTERN uint64_t rz_engine_volume_micros(const rz_engine *e);

/* Check every invariant: no job both queued and placed, no node's capacity
 * oversubscribed, every job's hold open exactly while the job is open,
 * deployments and their steps agree, the ledger verifies. RZ_OK, or
 * RZ_EINTERNAL with the first breach in rz_error_last(). O(jobs + nodes).
 * Not const: it remembers which finished jobs' holds it has checked, so a
 * second check reads only what changed; finished jobs no longer in memory
 * are read from the store and checked by the first check after open. */
RZ_EXTERN RZ_NODISCARD int rz_engine_check(rz_engine *e);
/* The same with rz_ledger_verify_sample(ledger, n) in place of the full
 * ledger verify: what a server runs at every start (the engine's side and
 * its holds in the ledger are still checked whole). */
RZ_EXTERN RZ_NODISCARD int rz_engine_check_sampled(rz_engine *e, size_t n);

/* ---- Retention (docs/scale.md "Retention") ----
 * Finished work older than an age leaves the store, so that it stops
 * growing with everything ever run: a deployment that finished (its step
 * events, flow and record), then its jobs, and standalone jobs that
 * finished and are settled. Nothing the ledger needs goes: a job that is
 * open or owes the ledger, or whose hold is open, stays; the ledger keeps
 * every transfer. A removed id is never given again, and the totals
 * (rz_engine_stats_get, rz_engine_volume_micros) count what was removed.
 * A query of a removed id answers RZ_ENOENT; rz_engine_compacted_id tells
 * it from an id never given. LMDB reuses the freed pages; the file does
 * not shrink (a compacting backup does that). */
typedef struct rz_engine_compacted {
    uint64_t jobs, deployments, events;   /* removed by this call */
    int more;                             /* it stopped before the end of
                                             what it walks: call again */
    uint64_t total_jobs, total_deployments, total_events;   /* ever */
} rz_engine_compacted;
/* Told what a pass removes before it commits (ids in increasing order):
 * the caller removes its own records of them (logs, results); non-zero
 * stops the pass, which then removes nothing. */
typedef int (*rz_engine_compact_fn)(void *userdata, const uint64_t *jobs,
                                    size_t n_jobs, const uint64_t *deployments,
                                    size_t n_deployments);
/* One bounded pass: at most `budget` records (jobs, deployments, step
 * events; never more than 65,536) removed, in one write transaction, of
 * what ended before now_ms - older_than_ms; the next call goes on where
 * this one stopped. fn may be NULL; out may be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_engine_compact(rz_engine *e, uint64_t now_ms,
                                             uint64_t older_than_ms, size_t budget,
                                             rz_engine_compact_fn fn, void *userdata,
                                             rz_engine_compacted *out);
/* 1 if job (deployment non-zero: deployment) `id` was removed by
 * retention, else 0. */
RZ_EXTERN int rz_engine_compacted_id(const rz_engine *e, int deployment,
                                      uint64_t id);

/* ---- Verification: reputation and capability challenges (verify.c) ----
 * See docs/node.md. */

/* A node's record, counted by the engine (stored with the node). */
typedef struct rz_engine_record {
    uint64_t succeeded;          /* attempts it reported done */
    uint64_t failed;             /* attempts it reported failed */
    uint64_t declined;           /* assignments it turned down */
    uint64_t lost;               /* times it went silent holding jobs */
    uint64_t challenges_passed, challenges_failed;   /* failed: wrong,
                                                        late or unanswered */
    uint64_t disagreed;          /* outputs outvoted by other replicas */
} rz_engine_record;

/* Reputation from a record, in [0, 1] rounded down to 0.01:
 *   good = succeeded + challenges_passed
 *   bad  = failed + declined / 2 + 2 lost + 4 challenges_failed
 *          + 4 disagreed
 *   reputation = (good + 4) / (good + bad + 4)
 * A new node starts at 1; a fault weighs by how much it says about the
 * node (a decline is honest; an unanswered challenge or an outvoted result
 * is not), and every success earns some of it back. */
RZ_EXTERN double rz_engine_reputation(const rz_engine_record *r);

typedef enum rz_verify_state {
    RZ_VERIFY_OFF = 0,        /* challenges off: claims taken at their word */
    RZ_VERIFY_UNVERIFIED,     /* some claim not (or no longer) verified */
    RZ_VERIFY_PENDING,        /* unverified, a challenge outstanding */
    RZ_VERIFY_VERIFIED        /* every claim passed its latest challenge */
} rz_verify_state;
/* "off", "unverified", "pending", "verified". */
RZ_EXTERN const char *rz_verify_state_name(rz_verify_state s);

typedef struct rz_engine_node_trust {
    double reputation;           /* rz_engine_reputation(&record) */
    rz_verify_state state;
    uint32_t claims;             /* RZ_CAP_* it claims (CPU; memory when
                                    memory_mb > 0; GPU when it lists any) */
    uint32_t unverified;         /* RZ_CAP_* not verified (0 when off) */
    uint64_t challenge_deadline_ms;   /* outstanding challenge; 0: none */
    rz_engine_record record;
} rz_engine_node_trust;
RZ_EXTERN RZ_NODISCARD int rz_engine_node_trust_get(const rz_engine *e,
                                                    uint64_t node,
                                                    rz_engine_node_trust *out);

/* The challenge `node` is to answer now, as JSON to release with rz_free:
 * {"seq","nonce","cpu":{"iterations"},"memory":{"mb"}?,"gpu":{"n"}?,
 *  "time_limit_ms"}: the outstanding one again, else a new one when one is
 * due (from registration on, then at random intervals). The time limit
 * runs from the first time it is handed out and is derived from the
 * node's claimed speed (its benchmark) plus challenge_grace_ms. RZ_ENOENT
 * when none is due or challenges are off; RZ_ENOENT/RZ_ESTATE for an
 * unknown, lost or gone node. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_challenge(rz_engine *e, uint64_t node,
                                                    uint64_t now_ms,
                                                    char **json);
/* The node's answer to its outstanding challenge (rz_challenge_answer's
 * JSON). Each claim whose answer is right and on time is verified, every
 * other claim unverified; *passed (may be NULL) is 1 when all were right.
 * A wrong, late or malformed answer is a failed challenge, not an error
 * (RZ_OK, *passed 0). RZ_ENOENT when no challenge is outstanding or `seq`
 * is not its number; RZ_ENOENT/RZ_ESTATE for an unknown, lost or gone
 * node. */
RZ_EXTERN RZ_NODISCARD int rz_engine_node_answer(rz_engine *e, uint64_t node,
                                                 const char *answer_json,
                                                 size_t len, uint64_t now_ms,
                                                 int *passed);
/* What a node computes for a challenge (rz_engine_node_challenge's JSON):
 * {"seq","cpu":"<hex>","memory":"<hex>"?,"gpu":"<hex>"?}, to release with
 * rz_free. The memory part allocates and fills the buffer asked for; when
 * that fails the answer leaves "memory" out (the claim fails). The GPU
 * part computes its matrix product on the CPU (docs/node.md: the GPU path
 * is not proven on real GPUs). RZ_EINVAL for a malformed challenge. */
RZ_EXTERN RZ_NODISCARD int rz_challenge_answer(const char *challenge_json,
                                               size_t len, char **answer_json);

/* ---- Embedded mode (lib/engine/local.c) ----
 * `rhizos flow run` (rz_runner_run) drives an engine of its own with one
 * in-process node for this machine: the flow is deployed like any other,
 * the node polls, runs each assignment with the process adapter and reports
 * its result. Open that engine without a registry (the flow's modules are
 * resolved already) and with zero reference prices. See docs/engine.md. */

/* Register this machine as a node: caps_json is its capabilities as the
 * caller probed them (rz_hw_detect, rz_caps_to_json; NULL: none), with
 * prices set to zero and max_concurrent_jobs to jobs. No I/O. */
RZ_EXTERN RZ_NODISCARD int rz_engine_local_node(rz_engine *e,
                                                const char *caps_json,
                                                unsigned jobs, uint64_t now_ms,
                                                uint64_t *node);

/* A run that follows a local deployment: `run` is a run of the deployed
 * flow made with rz_run_new at the deploy's now_ms with the same inputs.
 * Every step event of the deployment is applied to it as the engine records
 * it (the same events a reopened engine replays), so after each engine call
 * it is in the deployment's state, under the caller's run id and flow. It
 * must outlive the deployment's last event. on_change (may be NULL) is
 * called after each event applied, from inside the engine call: it may read
 * the run, not call the engine. At most max_started steps (0: no limit) are
 * started at once, so a step's timeout and attempt count start when a slot
 * is free for it, not while it waits. */
typedef struct rz_engine_replica {
    int version;
    rz_run *run;
    unsigned max_started;
    void (*on_change)(void *userdata);
    void *userdata;
    /* Version 2. Non-zero: the deployment runs on `run` itself instead of
     * a run of its own that `run` follows: one run in memory, not two (at
     * 100,000 steps each is ~40 MB). `run` must be fresh (nothing but
     * rz_run_new, and reading it) and outlive the engine, which never
     * frees it; what the caller adds to it (step logs) is then part of
     * the deployment's status. Only the engine moves its steps: not even
     * rz_run_ready (it promotes due retries the engine would then never
     * start). */
    int share;
} rz_engine_replica;
#define RZ_ENGINE_REPLICA_VERSION 2
#define RZ_ENGINE_REPLICA_INIT { RZ_ENGINE_REPLICA_VERSION, NULL, 0, NULL, NULL, 0 }

/* Deploy a validated flow to run locally. The deployment runs on `flow`
 * itself (not a copy: it must outlive the deployment) and stores its JSON
 * export; every step holds the reference cost (no max_cost_micros, no
 * module requirements), paid by a new client account credited with exactly
 * its holds. `replica` may be NULL. RZ_EINVAL for an engine opened with a
 * registry. */
RZ_EXTERN RZ_NODISCARD int rz_engine_local_deploy(rz_engine *e,
                                                  const rz_flow *flow,
                                                  const char *inputs_json,
                                                  const rz_engine_replica *replica,
                                                  uint64_t now_ms,
                                                  uint64_t *deployment);

/* RZ_OK, or RZ_EINTERNAL once the replica refused a step event (it no
 * longer follows the deployment; a bug, not a user error). */
RZ_EXTERN RZ_NODISCARD int rz_engine_local_check(const rz_engine *e);

/* Embedded resume (docs/triggers.md): the next rz_engine_local_deploy
 * reuses the results in `reuse_json` (rz_engine_reuse_map's shape; NULL:
 * none) as rz_engine_deploy_reuse does. Borrowed until that deploy. */
RZ_EXTERN void rz_engine_local_reuse(rz_engine *e, const char *reuse_json);
/* Where task `task` of running deployment `deployment` (0: the embedded
 * one being made) took its outputs from when it was reused ("deployment
 * 3 step a"), else NULL. Borrowed until the task changes. */
RZ_EXTERN const char *rz_engine_task_reused_from(const rz_engine *e,
                                                 uint64_t deployment,
                                                 size_t task);
/* When running deployment `deployment` next takes an approval step's
 * default decision (UINT64_MAX: none), and in *forever (may be NULL) the
 * id of an approval step that waits with no timeout, or NULL: for an
 * embedded runner, which has nobody to ask. */
RZ_EXTERN uint64_t rz_engine_approval_wait(const rz_engine *e,
                                           uint64_t deployment,
                                           const char **forever);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_ENGINE_H */

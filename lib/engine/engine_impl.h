/* Internal state of the engine, shared by its files.
 *
 * Everything lives in memory (arrays indexed by id) and is mirrored in LMDB:
 * a call marks what it touched dirty and commits it in one write transaction
 * at its end (rz__engine_commit). A commit holds what the call changed and
 * nothing else, so its cost does not grow with a deployment: per step, that
 * step's job record, its step events (appended, never rewritten) and the
 * deployment's small record (state, event count); the flow text and inputs
 * are written once, with the deployment's first commit ("dflow"), and its
 * final status once, when it finishes. A step's job gets its record when
 * it first changes (queued, skipped, cancelled), not at the deploy (but a
 * replicated step's, below): a
 * pending step's job is made again on open from the flow, with the amount
 * of its hold in the ledger (held, and committed there, before the deploy
 * is). On open each deployment's run is rebuilt from its flow by replaying
 * its step events; a transaction is all or nothing, so a crash leaves the
 * state of the last acknowledged call.
 * Money moves in the ledger, ordered so that
 * a crash between the two stores is repaired on open: holds go to the ledger
 * before the job that owns them is committed (an orphan hold is refunded on
 * open), settlements and refunds are committed as owed first and paid after
 * (an owed one is paid again on open; ledger ids make that a replay). The
 * mark that a job paid (owed cleared) is stored with the next commit that
 * has a change of its own, or by the first call RZ__PAID_WRITE_MS after
 * the payment: a commit for it alone would only spare that replay
 * (engine.c rz__engine_paid_later).
 *
 * A caller's extra records (extra.c) are written in the same transaction
 * as the commit they wait for, so they are durable exactly when its
 * changes are: a server's redo copy of a result's record in another store
 * is there after a crash if and only if the result is. Their deletes ride
 * with a later commit of a change of its own (a compaction's, the
 * close's) and may be lost at a crash (the caller then meets the record
 * again).
 *
 * A replicated job's votes are members of its runs' job records, and its
 * verdict finishes every run in the commit of the last vote (replica.c).
 *
 * A node may say that a running attempt ended before its result arrives
 * (rz_engine_node_ended, a poll's "ended"): the job stays RUNNING on that
 * node (in its `held`, so a lost node or a heartbeat that no longer lists
 * it requeues it as before), its matcher reservation is released, and its
 * record says so ("result_due"), committed with whatever that call or pass
 * hands the node next. A crash after that hand-over and before the result
 * is stored opens with the job still RUNNING, result due, unreserved (a
 * reopen reserves only what runs: the node's next job fits as before); the
 * node resends the result from its outbox and it is taken as any result.
 * A node that lost the result (its disk) no longer lists the job: it is
 * requeued after the grace, its hold still open, so it runs again and is
 * paid once. No money moves at the mark: the hold, and a time-billed
 * job's interval, run until the result as before; at most the node's
 * max_concurrent_jobs attempts are reserved at once, and the node runs
 * no more than that (its own count leaves out attempts that ended); its
 * results due never outnumber its reserved attempts at the mark (nor
 * max_concurrent_jobs, RZ__RESULTS_DUE_MAX without one), so a node that
 * says attempts ended and keeps their results holds at most twice the
 * jobs its resources allow, not the whole queue.
 *
 * Memory holds live work only (live.c): jobs that are not finished, owe
 * the ledger, or belong to a running deployment, and running deployments.
 * Once a finished one's final record is committed it leaves memory at the
 * start of the next call that changes state (pointers stay valid until
 * then); queries read it back from the store, the one copy of it. Open
 * loads the same set, so a crash loses nothing that was in memory only:
 * what was evicted had been committed, and what was not yet committed is
 * rebuilt as before. A replica set needs no rule of its own: its verdict
 * finishes all its runs in one call, so while it is undecided every run is
 * open and in memory (replica.c works on live runs only), and once decided
 * each run leaves like any finished job (queries of a decided set read its
 * runs back: rz__engine_job_read). A replicated step's job and its runs
 * are written at the deploy (their set is made and held then), not lazily:
 * open never has to derive a set. */
#ifndef RZ_ENGINE_IMPL_H
#define RZ_ENGINE_IMPL_H

#include <lmdb.h>

#include "common/internal.h"
#include "rhizos/engine.h"
#include "rhizos/module.h"

/* Namespaces of the engine's ledger ids: {RZ__EID(kind), number}. */
#define RZ__EID(kind) (0x525a454e47000000ull | (uint64_t)(kind))
enum { RZ__EID_JOB = 1, RZ__EID_HOLD = 2, RZ__EID_SETTLE = 3,
       RZ__EID_REFUND = 4, RZ__EID_NODE = 5,
       RZ__EID_IV_HOLD = 6,     /* billing.c: {kind, job << 24 | interval} */
       RZ__EID_IV_SETTLE = 7 };

/* A settlement owed to the ledger (job.owed). */
enum { RZ__OWE_NONE = 0, RZ__OWE_SETTLE = 1, RZ__OWE_REFUND = 2 };

/* A node's capability challenge (verify.c): seq and the record are
 * stored, the rest is memory only (after a reopen a new one falls due). */
typedef struct rz__echal {
    uint32_t seq;             /* challenges issued to the node so far */
    bool pending;             /* challenge `seq` is outstanding */
    uint64_t deadline;        /* its answer is late after this */
    uint64_t next_due;        /* a new one may be issued from then */
} rz__echal;

typedef struct rz__enode {
    uint64_t id;
    rz_node_state state;
    rz_caps *caps;
    size_t mindex;            /* index in the matcher; RZ_NPOS if not in it */
    uint64_t registered_ms, last_hb;
    double load;
    uint32_t jobs;            /* assigned or running here */
    uint64_t *held; size_t n_held, cap_held;   /* those jobs' ids */
    bool waiting;             /* a poll is held (memory only; see
                                 rz_engine_node_waiting) */
    uint64_t heard;           /* the node's own last call (memory only; 0
                                 after open: the grace given then is not
                                 the node's word; billing.c) */
    bool dirty;
    rz_engine_record rec;     /* its record, for its reputation */
    uint32_t claims, unverified;   /* RZ_CAP_* bits (verify.c) */
    rz__echal ch;
    /* Its caps as its record holds them (a quoted JSON string), printed
     * once for the trust they were printed with (store.c): the record is
     * rewritten at every outcome, the caps change far more seldom. */
    char *caps_rec;
    size_t caps_rec_len;
    double caps_rec_rep;
    uint32_t caps_rec_unv;
} rz__enode;

/* An entry of a requirement group's queue (queue.c). */
typedef struct rz__heap_ent {
    int32_t priority;
    uint64_t job;
    uint32_t gen;
} rz__heap_ent;

/* A requirement group: the requirements shared by every job whose stored
 * text is equal, one parsed copy, counted (a queue of like jobs holds one,
 * not one each; requirements.c). */
typedef struct rz__req_group {
    char *json;
    rz_reqs *reqs;
    size_t refs;
    uint64_t hash;
    /* The group's queued jobs: a heap on (priority desc, id asc), stale
     * entries dropped lazily (queue.c). */
    rz__heap_ent *q; size_t q_len, q_cap, q_prune_at;
    /* Why its jobs fit no active node (waiting.c): NULL not worked out, ""
     * they fit; as of why_ms and the engine's nodes_epoch then. */
    char *why;
    uint64_t why_ms, why_epoch;
} rz__req_group;

typedef struct rz__ejob {
    uint64_t id;
    rz_ledger_id client;
    const char *reqs_json;    /* requirements as stored (max cost applied) */
    const rz_reqs *reqs;      /* both borrowed from `req_group` */
    rz__req_group *req_group;
    char *module_id, *module_version, *request;
    char *exec;               /* an ad-hoc job's exec JSON; NULL: a module */
    uint64_t max_cost;
    uint64_t node;            /* holder (assigned/running) or finisher */
    uint64_t ticket;          /* matcher reservation while placed */
    uint64_t deployment;      /* 0: standalone */
    size_t step;
    char *step_id;            /* the step's id; NULL for standalone jobs */
    char *outputs, *error;
    uint64_t cost, run_ms;
    uint64_t submitted_ms;
    uint64_t done_node;       /* the accepted final report: (node, attempt) */
    uint64_t queued_ms;       /* last enqueue (memory only; 0 after open) */
    uint64_t queue_timeout_ms;   /* as submitted; 0: opts.queue_timeout_ms */
    uint64_t queue_deadline;  /* queued: fails if still queued then; 0: never */
    uint64_t running_ms;      /* handed to its node (memory only; 0 after
                                 open: rz_engine_node_running starts it) */
    uint64_t handed_ms;       /* handed to its node (stored): the start of
                                 the run time it may bill; 0: unknown */
    uint64_t *declined;       /* nodes that declined it: never placed there */
    size_t n_declined;
    /* Redundant execution (replica.c): the set is the head (the job the
     * client sees) and the jobs rep_first .. rep_first + replicas - 2
     * (replicas, vote, verdict, out_digest: with the bytes at the end). */
    uint64_t rep_head;        /* the set's head; 0: not replicated */
    uint64_t rep_first;       /* on the head: its first replica */
    /* Step cache (reuse.c): the key taken when it started, when its
     * outputs were made, and where they came from when it was reused. */
    char *cache_key, *reused;
    uint64_t cache_ms;
    uint64_t ended_ms;        /* first written finished (0: before this
                                 was kept; retention then goes by
                                 submitted_ms) */
    /* Billing by time (billing.c): a service step with a budget holds one
     * interval at a time; max_cost is one interval's hold (iv, iv_running,
     * iv_owed: at the end). */
    uint64_t iv_start;        /* engine time interval iv began to run */
    uint64_t iv_paid_micros;  /* intervals 1 .. iv - 1: what they paid */
    uint64_t iv_owed_micros, iv_owed_node;
    /* Its 4-byte fields, then its bytes (the struct is made for every
     * step at deploy, 100,000 of them at once: no padding between). */
    rz_job_state state;
    int32_t priority;
    uint32_t attempt;
    int owed;                 /* RZ__OWE_* not yet applied to the ledger */
    uint32_t done_attempt;
    uint32_t queue_gen;       /* heap entries of older generations are stale */
    uint32_t iv;              /* the interval whose hold is open (from 1);
                                 0: not billed by time */
    bool placed;              /* holds a reservation */
    bool result_due;          /* RUNNING, its node said the attempt ended
                                 (rz_engine_node_ended): its reservation is
                                 released, it stays in the node's `held`
                                 until the result (stored: a reopen must not
                                 reserve it again beside the node's next) */
    bool done_known;          /* done_digest is set (records written before
                                 it was kept have none) */
    bool held;                /* queued, but its deployment is paused: in no
                                 heap until the resume (memory only: open
                                 sets it from the deployment's flag) */
    bool dirty;
    bool paid_later;          /* paid, its mark not stored yet: in e->paid */
    bool hold_checked;        /* rz_engine_check saw its final ledger state */
    uint8_t replicas;         /* on the head: runs in the set (2..5) */
    uint8_t vote;             /* RZ__VOTE_*: its run's outcome is in; it
                                 stays RUNNING, unplaced, until the verdict */
    uint8_t verdict;          /* RZ__VERDICT_*, once every run voted */
    bool iv_running;          /* an attempt runs it (from its hand-over to
                                 the end of the attempt) */
    bool iv_owed;             /* committed, not yet in the ledger: the
                                 settlement of interval iv - 1 (iv_owed_micros
                                 to node iv_owed_node) and the hold of iv */
    unsigned char done_digest[32];   /* of that report's content (engine.c
                                        report_digest) */
    unsigned char out_digest[32];   /* SHA-256 of the outputs it reported */
} rz__ejob;

enum { RZ__VOTE_NONE = 0, RZ__VOTE_OK, RZ__VOTE_FAILED };
enum { RZ__VERDICT_NONE = 0, RZ__VERDICT_AGREED, RZ__VERDICT_DISAGREED,
       RZ__VERDICT_FAILED, RZ__VERDICT_NO_MAJORITY, RZ__VERDICT_CANCELLED };

typedef struct rz__edep {
    uint64_t id;
    rz_ledger_id client;
    char *text;               /* the flow document as deployed */
    char *inputs;             /* NULL: none */
    uint64_t created_ms;
    uint64_t first_job;       /* step i is job first_job + i */
    size_t n_steps;
    rz_flow *flow;
    rz_run *run;              /* NULL once finished (status kept instead) */
    char *final_status;       /* status JSON once finished */
    /* Finished on an embedded caller's run and flow (local.c, `share`),
     * which outlive the engine: the status is built from them when asked
     * (rz_engine_deployment_status), never kept, and not stored (the
     * folder is the runner's, never reopened; a reopen replays the
     * events). At 100,000 steps the text is ~16 MB and its pages ~20. */
    bool final_lazy;
    rz_run *kept_run;
    rz_flow *kept_flow;
    rz_run_state state;
    uint32_t n_events;        /* step events recorded */
    bool cancelled;           /* a CANCEL event was applied */
    bool paused;              /* no step starts (rz_engine_deployment_pause) */
    size_t *appr; size_t n_appr;   /* the flow's approval steps (approval.c) */
    char *reuse_text;         /* the reuse map as given (stored with the flow) */
    struct cJSON *reuse;      /* parsed, or NULL (reuse.c) */
    /* The last module manifest a step key hashed, printed (reuse.c; its
     * flow, and so the manifest, lives as long as the deployment). */
    const struct cJSON *key_manifest;
    char *key_manifest_text;
    bool flow_stored;         /* text and inputs are in "dflow" (store.c) */
    bool run_shared;          /* `run` is an embedded caller's: not freed */
    bool flow_shared;         /* `flow` is an embedded caller's (local.c):
                                 borrowed, and its text is dropped once
                                 stored (one parsed flow, not two) */
    bool dirty;
    /* Change log for streams (rz_engine_deployment_changes; memory only,
     * dropped when it finishes): step indices in the order their jobs were
     * touched, a step's older entry marked RZ__LOG_DEAD when it is logged
     * again, so each step is listed once, at its latest change; log_at[i]
     * is the position (1-based) of step i's entry, 0 none. */
    uint32_t *log; size_t n_log, cap_log;
    uint32_t *log_at;
    /* for_each elements (fanout.c): the job of task n_steps + k is
     * el_jobs[k], 0 if its hold was refused (the map failed). */
    uint64_t *el_jobs; size_t n_el_jobs, cap_el_jobs;
    bool fan_due;             /* elements wait for their jobs (memory ran
                                 out, or a crash followed): the next tick
                                 makes them (memory only) */
    bool start_due;           /* a started task's job was not queued (memory
                                 ran out after its start was recorded): the
                                 next tick queues it (deploy.c; memory only) */
    uint64_t ended_ms;        /* first written finished (0: unknown, as
                                 for created_ms) */
} rz__edep;

struct rz__step;
/* fanout.c: jobs for the for_each elements the run made since the last
 * call, held in linked batches and written in this call's commit; if the
 * holds are refused the maps that asked fail instead (a recorded event). */
RZ_HIDDEN int rz__engine_fan_out(rz_engine *e, rz__edep *d, uint64_t now);
/* The job of task `task` of `d` (a step's or an element's); NULL if none. */
RZ_HIDDEN struct rz__ejob *rz__engine_task_job(const rz_engine *e, const rz__edep *d,
                                               size_t task);
/* After a replay: each element of the rebuilt run finds its job record. */
RZ_HIDDEN int rz__engine_fan_out_rebuild(rz_engine *e, rz__edep *d);
/* deploy.c: fill a new job for task `task` of step `st` (as the deploy does). */
RZ_HIDDEN int rz__engine_step_job_fill(rz_engine *e, struct rz__ejob *j,
                                       const rz__edep *d, const struct rz__step *st,
                                       size_t task, uint64_t now);
/* deploy.c: rz_engine_deploy of `text`, a document of `flow`, which the
 * deployment borrows instead of parsing the text again (embedded mode:
 * the caller's flow outlives the deployment). */
RZ_HIDDEN int rz__engine_deploy_shared(rz_engine *e, const char *text,
                                       const rz_flow *flow, rz_ledger_id client,
                                       const char *inputs_json,
                                       const char *reuse_json, uint64_t now_ms,
                                       uint64_t *deployment);
/* local.c: credit an embedded deployment's client with `amount` more, for
 * holds made after its deploy (`tag`: unique per credit). */
RZ_HIDDEN int rz__engine_local_credit(rz_engine *e, const rz__edep *d,
                                      uint64_t amount, uint64_t tag);

/* approval.c: approval steps of a deployment whose flow was just loaded;
 * their default decisions due at `now`; the earliest one to come. */
RZ_HIDDEN int rz__engine_dep_approvals(rz__edep *d);
RZ_HIDDEN int rz__engine_approvals_due(rz_engine *e, rz__edep *d, uint64_t now);
RZ_HIDDEN uint64_t rz__engine_approvals_next(const rz__edep *d);
/* reuse.c: take the key of task `task` starting with `request`; on a hit
 * in the deployment's reuse map the task succeeds now (*reused). */
RZ_HIDDEN int rz__engine_reuse_try(rz_engine *e, rz__edep *d, struct rz__ejob *j,
                                   size_t task, const char *request, uint64_t now,
                                   bool *reused);
/* Parse `json` (NULL: none) as d's reuse map; RZ_EINVAL if malformed. */
RZ_HIDDEN int rz__engine_reuse_set(rz__edep *d, const char *json);
/* deploy.c: rz_engine_deploy with a reuse map (NULL: none). */
RZ_HIDDEN int rz__engine_deploy(rz_engine *e, const char *text, size_t len,
                                rz_ledger_id client, const char *inputs_json,
                                const char *reuse_json, uint64_t now_ms,
                                uint64_t *deployment, rz_diags *diags);
/* store.c: the flow text and inputs of deployment `id` as stored
 * (release with free). */
RZ_HIDDEN int rz__engine_store_dep_flow(const rz_engine *e, uint64_t id, char **text,
                                        char **inputs);
/* The pause holds j: its deployment (its replica set's) is paused. */
RZ_HIDDEN bool rz__engine_job_paused(const rz_engine *e, const rz__ejob *j);
/* Is task `task` an approval step (started without a job in the queue)? */
RZ_HIDDEN bool rz__engine_is_approval(const rz__edep *d, size_t task);
/* The "paused" and "awaiting_approval" members of a running deployment's
 * status, added to `doc`; false: out of memory. */
RZ_HIDDEN bool rz__engine_dep_waits_json(const rz__edep *d, struct cJSON *doc);

#define RZ__LOG_DEAD UINT32_MAX

/* deploy.c: step `step` of `d` changed (its job was touched). */
RZ_HIDDEN void rz__engine_dep_log(rz__edep *d, size_t step);
/* Drop the change log (the deployment finished). */
RZ_HIDDEN void rz__engine_dep_log_free(rz__edep *d);

/* A step event of a deployment, replayed on open to rebuild its rz_run. */
typedef enum rz__step_event_kind {
    RZ__STEP_EVENT_START = 1, RZ__STEP_EVENT_SUCCEED, RZ__STEP_EVENT_FAIL,
    RZ__STEP_EVENT_TICK, RZ__STEP_EVENT_CANCEL,
    RZ__STEP_EVENT_READY,     /* a service is ready (service.c) */
    RZ__STEP_EVENT_EMIT,      /* a service emitted an event: text is
                                 {"attempt","seq","name","data"} */
    RZ__STEP_EVENT_STOP       /* a service was stopped for good (its
                                 budget; billing.c): text is the reason */
} rz__step_event_kind;

/* service.c: apply a READY or EMIT step event to `run` (replay, replica). */
RZ_HIDDEN int rz__engine_service_apply(rz_run *run, rz__step_event_kind kind,
                                       size_t step, uint64_t now, const char *text);

typedef struct rz__step_event {
    uint64_t dep;
    uint32_t seq;
    rz__step_event_kind kind;
    size_t step;
    uint64_t now;
    char *text;               /* outputs (SUCCEED) or reason (FAIL) */
} rz__step_event;

/* Embedded mode (local.c): deployment `dep` is followed by a replica run
 * that is given each of its step events as it is recorded, and at most
 * max_started of its steps are started (not yet settled) at once. Zeroed:
 * off. */
typedef struct rz__elocal {
    uint64_t dep;
    rz_run *replica;
    size_t max_started;       /* 0: no cap */
    size_t started;           /* RUNNING steps of the replica */
    bool diverged;            /* the replica refused an event */
    bool shared;              /* the replica is the deployment's own run */
    void (*on_change)(void *userdata);   /* after each event applied */
    void *userdata;
    const struct rz_flow *flow;   /* the caller's, modules resolved (the
                                     engine's own copy has none) */
} rz__elocal;

#define RZ__EVENTS_MAX RZ_ENGINE_EVENTS_MAX

struct rz_engine {
    rz_engine_opts opts;
    MDB_env *env;
    void *map; size_t map_len;   /* data.mdb's mapping (store.c); NULL unknown */
    MDB_dbi db_meta, db_nodes, db_jobs, db_deps;
    MDB_dbi db_step_events;   /* named "devs" on disk */
    MDB_dbi db_dep_flows;     /* "dflow": each deployment's text, once */
    MDB_dbi db_by_client;     /* "bycl": client, kind, id -> nothing */
    MDB_dbi db_extra;         /* "extra": a caller's records (extra.c) */
    bool index_mark;          /* the next commit marks "bycl" complete */
    rz_ledger *ledger;
    rz_matcher *matcher;

    rz__enode *nodes; size_t n_nodes, cap_nodes;   /* nodes[i].id == i + 1 */
    uint64_t *node_by_mindex; size_t cap_mindex;   /* matcher index -> id */
    /* Live work only (live.c), sorted by id; n_jobs and n_deps are the
     * ids given so far (the next is n + 1), live or not. */
    rz__ejob **jobs; size_t n_live_jobs, cap_jobs;
    rz__edep **deps; size_t n_live_deps, cap_deps;
    uint64_t n_jobs, n_deps;
    uint64_t *evict; size_t n_evict, cap_evict;   /* finished, committed:
                                                    candidates (live.c) */
    uint64_t gone_jobs[RZ_JOB_CANCELLED + 1];     /* left memory, by state */
    uint64_t gone_deps;
    uint64_t gone_volume;     /* cost of the succeeded ones that left */
    bool gone_checked;        /* rz_engine_check walked the stored ones */
    struct rz__ecache *cache; /* finished ones read back (live.c) */
    /* Retention (store.c, rz_engine_compact): what compaction removed, as
     * the "ret" table holds it, and where its next pass starts (memory
     * only: after open it starts from the first record). */
    MDB_dbi db_ret;
    struct rz__eret {
        uint64_t max_job, max_dep;     /* highest ids removed */
        uint64_t jobs[RZ_JOB_CANCELLED + 1], deps, volume, events;
    } ret;
    uint64_t ret_job_next, ret_dep_next;

    /* The requirement groups: an open-addressing table (requirements.c),
     * and those with queued jobs (queue.c). */
    rz__req_group **req_groups; size_t n_req_groups, cap_req_groups;
    rz__req_group **queued_groups;
    size_t n_queued_groups, cap_queued_groups;
    bool assign_dirty;        /* something changed that may allow a placement */
    uint64_t nodes_epoch;     /* counts changes to the set of active nodes */
    uint64_t shed_faults;     /* page faults in commits since the last shed */
    uint64_t queue_next;      /* no queue deadline falls before this (may be
                                 early: a job placed since; waiting.c) */
    bool resumed;             /* heartbeat grace given after open */

    rz__step_event *step_events;                   /* to commit */
    size_t n_step_events, cap_step_events;
    uint64_t *dirty_nodes; size_t n_dirty_nodes, cap_dirty_nodes;
    uint64_t *dirty_jobs; size_t n_dirty_jobs, cap_dirty_jobs;
    uint64_t *dirty_deps; size_t n_dirty_deps, cap_dirty_deps;
    uint64_t *paid; size_t n_paid, cap_paid;   /* paid marks not stored */
    uint64_t paid_at;         /* e->now at the first of them */
    bool broken;              /* a commit failed: memory is ahead of disk */
    bool dirty_lost;          /* a change was not listed (memory ran out):
                                 the next commit refuses */
    uint64_t *owed; size_t n_owed, cap_owed;       /* jobs owing the ledger */
    uint64_t *bill; size_t n_bill, cap_bill;       /* jobs billed by time
                                                      (billing.c), open or
                                                      owing an interval */
    bool owed_lost;           /* one was not listed (memory ran out): the
                                 next payment looks through live jobs */
    bool bill_stopped;        /* the last rz__bill_pay stopped a job whose
                                 next interval's hold was refused: commit
                                 before the other payments (engine.c) */

    rz_engine_event *events; size_t ev_head, ev_len;

    /* A caller's records to write with the next commit, in call order
     * (rz_engine_extra_put/del, extra.c). */
    struct rz__extra_op *extra; size_t n_extra, cap_extra;
    size_t n_extra_puts;    /* puts among them: a commit is due */
    size_t extra_bytes;     /* their keys and values */
    bool closing;           /* rz_engine_close: deletes alone commit too */

    /* Group commit (rz_engine_group_begin): jobs whose hold is not in the
     * ledger yet, and what they hold per client. */
    bool in_group;
    uint64_t *group_holds; size_t n_group_holds, cap_group_holds;
    struct rz__group_sum *group_sums; size_t n_group_sums, cap_group_sums;

    rz_engine_stats stats;
    rz__elocal local;         /* embedded mode (local.c) */
    const char *local_reuse;  /* the next local deploy's reuse map (reuse.c) */
    uint64_t now;             /* `now` of the call in progress */
    char scratch_step[1];     /* "" */
};

/* The most holds a group defers before it writes them (one ledger batch);
 * also how far past a missing hold rz_engine_open looks for orphans. */
#define RZ__GROUP_HOLDS_MAX 1024

/* A put (val non-NULL, or vlen 0 with put set) or a delete of one of a
 * caller's records (extra.c). */
typedef struct rz__extra_op {
    unsigned char *key; size_t klen;
    unsigned char *val; size_t vlen;
    bool put;
} rz__extra_op;

typedef struct rz__group_sum {
    rz_ledger_id client;
    uint64_t micros;
} rz__group_sum;

/* store.c */
RZ_HIDDEN int rz__engine_store_open(rz_engine *e, const char *dir);
RZ_HIDDEN void rz__engine_store_close(rz_engine *e);
/* The client index ("bycl") has one entry per stored job and deployment
 * and its completion mark (rz_engine_check). */
RZ_HIDDEN int rz__engine_store_index_check(const rz_engine *e);
RZ_HIDDEN int rz__engine_commit(rz_engine *e);
/* Tests only (tests/sim): called after each commit of the engine's store,
 * where a simulated crash may strike; NULL otherwise. */
RZ_HIDDEN extern void (*rz__engine_commit_seam)(void);
RZ_HIDDEN int rz__engine_load(rz_engine *e);
/* A caller's records (extra.c) into the commit's transaction, sealed as
 * the engine's own (store.c); forgotten once committed (extra.c). */
RZ_HIDDEN int rz__engine_extra_write(rz_engine *e, MDB_txn *txn);
RZ_HIDDEN void rz__engine_extra_clear(rz_engine *e);
/* Whether they need a commit of their own: a put does, deletes wait for
 * a commit with a change of its own (a compaction's, the close's). */
RZ_HIDDEN bool rz__engine_extra_due(const rz_engine *e);
/* Drop the store's mapped pages from RSS (every SHED_COMMITS commits). */
RZ_HIDDEN void rz__engine_store_shed(rz_engine *e);
/* Drops n's printed caps: call when n->caps is replaced or freed. */
RZ_HIDDEN void rz__engine_node_caps_forget(rz__enode *n);
/* After a big deployment's parse or end: give freed heap pages back. */
RZ_HIDDEN void rz__engine_trim(size_t steps);
/* Record a step event of `d` for the next commit (and the replica). */
RZ_HIDDEN int rz__engine_step_event_add(rz_engine *e, rz__edep *d,
                                        rz__step_event_kind kind, size_t step,
                                        uint64_t now, const char *text);
/* The same in two parts, so the run changes only once recording its event
 * cannot fail: room for one more event, then the event (taking `text`,
 * malloc'ed or NULL). */
RZ_HIDDEN int rz__engine_step_event_room(rz_engine *e);
RZ_HIDDEN void rz__engine_step_event_put(rz_engine *e, rz__edep *d,
                                         rz__step_event_kind kind, size_t step,
                                         uint64_t now, char *text);
/* Replay the stored step events of `d` into its run. */
RZ_HIDDEN int rz__engine_replay(rz_engine *e, rz__edep *d);

/* Results a node may have due at once (rz_engine_node_ended) when its
 * caps set no max_concurrent_jobs (else that many): a node that never
 * sends them cannot take the whole queue. */
#define RZ__RESULTS_DUE_MAX 64u

/* Mark for the next commit. */
RZ_HIDDEN void rz__engine_touch_node(rz_engine *e, rz__enode *n);
RZ_HIDDEN void rz__engine_touch_job(rz_engine *e, rz__ejob *j);
RZ_HIDDEN void rz__engine_touch_dep(rz_engine *e, rz__edep *d);
/* A paid job's mark waits for the next commit with a change of its own, or
 * for the first call RZ__PAID_WRITE_MS later (rz_engine_next_wakeup). */
#define RZ__PAID_WRITE_MS 50
RZ_HIDDEN void rz__engine_paid_later(rz_engine *e, rz__ejob *j);
/* The waiting marks join the dirty jobs (rz__engine_commit, first). */
RZ_HIDDEN void rz__engine_paid_merge(rz_engine *e);
/* Grow *arr (of elements of `size`) to hold `need`; false when out of memory. */
RZ_HIDDEN bool rz__engine_grow(void **arr, size_t *cap, size_t need, size_t size);

/* engine.c */
RZ_HIDDEN rz__ejob *rz__engine_job(const rz_engine *e, uint64_t id);
RZ_HIDDEN rz__enode *rz__engine_node(rz_engine *e, uint64_t id);
RZ_HIDDEN rz__edep *rz__engine_dep(const rz_engine *e, uint64_t id);
static inline const rz__enode *rz__engine_node_const(const rz_engine *e,
                                                     uint64_t id)
{
    return id >= 1 && id <= e->n_nodes ? &e->nodes[id - 1] : NULL;
}
RZ_HIDDEN rz__ejob *rz__engine_job_new(rz_engine *e);
RZ_HIDDEN void rz__engine_unplace(rz_engine *e, rz__ejob *j, bool stop);
RZ_HIDDEN void rz__engine_finish(rz_engine *e, rz__ejob *j, rz_job_state st,
                                 int owe);
RZ_HIDDEN void rz__engine_emit(rz_engine *e, rz_engine_event_type type,
                               const rz__ejob *j, uint64_t node);
RZ_HIDDEN int rz__engine_pay(rz_engine *e);
/* Calls that change state start here: RZ_EDB once a commit failed;
 * e->now = now. */
RZ_HIDDEN int rz__engine_begin(rz_engine *e, uint64_t now);
/* Calls that changed state end here: commit what they changed and pay what
 * they settled (both wait for the group's commit inside a group). Returns
 * the commit's failure, else `rc`, else the payment's status. */
RZ_HIDDEN int rz__engine_commit_call(rz_engine *e, int rc);
RZ_HIDDEN int rz__engine_place_job(rz_engine *e, rz__ejob *j, uint64_t node);
RZ_HIDDEN rz_ledger_id rz__engine_hold_id(uint64_t job);
RZ_HIDDEN void rz__engine_jobs_truncate(rz_engine *e, size_t n);
/* RZ_EV_DEPLOYMENT_FINISHED for `d`. */
RZ_HIDDEN void rz__engine_emit_deployment_finished(rz_engine *e,
                                                   const rz__edep *d);
RZ_HIDDEN bool rz__engine_declined(const rz__ejob *j, uint64_t node);
/* The reference maximum cost of requirements without their own: the match
 * cost formula at the options' reference prices (deploy.c). */
RZ_HIDDEN uint64_t rz__engine_ref_cost(const rz_engine *e, const rz_reqs *r);

/* Place `j` now (RZ_ENOENT: no node has room for it). */
RZ_HIDDEN int rz__engine_assign_one(rz_engine *e, rz__ejob *j);

/* live.c: what is in memory. rz__engine_job/rz__engine_dep find live ones
 * only (NULL: unknown or finished and gone). */
RZ_HIDDEN bool rz__engine_live_add_job(rz_engine *e, rz__ejob *j);
/* The deployments of the jobs in memory (steps, for_each elements, and
 * replica runs of a step whose head is in memory), sorted, repeats kept:
 * *out malloc'd (NULL when none). O(live jobs). */
RZ_HIDDEN int rz__engine_live_dep_ids(const rz_engine *e, uint64_t **out, size_t *n);
RZ_HIDDEN bool rz__engine_live_add_dep(rz_engine *e, rz__edep *d);
RZ_HIDDEN void rz__engine_job_clear(rz_engine *e, rz__ejob *j);
/* j (finished, committed) may leave memory: kept while it owes the ledger
 * (or its record does: a paid mark not stored) or its deployment runs. */
RZ_HIDDEN bool rz__engine_job_done(const rz_engine *e, const rz__ejob *j);
/* After a commit: `id` was written in its final state (a job, or with
 * dep set a deployment); it leaves at the next rz__engine_evict. */
RZ_HIDDEN void rz__engine_evict_later(rz_engine *e, uint64_t id, bool dep);
/* Drop the candidates from memory (start of a call that changes state). */
RZ_HIDDEN void rz__engine_evict(rz_engine *e);
/* A job or deployment live or read back from the store (valid until the
 * next call into the engine; read-only). NULL: none (RZ_ENOENT set, or
 * the store's error). */
RZ_HIDDEN const rz__ejob *rz__engine_job_read(const rz_engine *e, uint64_t id);
/* Finished: its final status is kept, or built when asked (final_lazy). */
static inline bool rz__engine_dep_finished(const rz__edep *d)
{
    return d->final_status || d->final_lazy;
}
RZ_HIDDEN const rz__edep *rz__engine_dep_read(const rz_engine *e, uint64_t id);
/* Bytes of text the read-back deployments hold (tests). */
RZ_HIDDEN size_t rz__engine_cache_dep_bytes(const rz_engine *e);
RZ_HIDDEN int rz__engine_cache_new(rz_engine *e);
RZ_HIDDEN void rz__engine_cache_free(rz_engine *e);
/* Every read-back copy dropped, the slots kept (nothing to allocate, so
 * nothing that can fail). */
RZ_HIDDEN void rz__engine_cache_clear(rz_engine *e);
/* For tests: how many jobs and deployments memory holds. */
RZ_HIDDEN size_t rz__engine_live_jobs(const rz_engine *e);
RZ_HIDDEN size_t rz__engine_live_deps(const rz_engine *e);

/* store.c: one record read back (fields as load gives them; a job joins no
 * requirement group, a deployment gets no flow). RZ_ENOENT: none. */
RZ_HIDDEN int rz__engine_store_job(const rz_engine *e, uint64_t id,
                                   rz__ejob *out);
RZ_HIDDEN int rz__engine_store_dep(const rz_engine *e, uint64_t id,
                                   rz__edep *out);
/* The newest ids below `top` + 1 in table `deps` or jobs, live ones as
 * memory has them, stored ones as the store does, whose client matches
 * (NULL: any). */
RZ_HIDDEN size_t rz__engine_store_list(const rz_engine *e, bool deps,
                                       const rz_ledger_id *client,
                                       uint64_t top, uint64_t *ids,
                                       size_t cap);
/* Calls fn for every stored job not in memory (rz_engine_check). */
RZ_HIDDEN int rz__engine_store_each_gone(rz_engine *e,
                                         int (*fn)(rz_engine *, rz__ejob *));

/* Calls fn for every job id retention removed (rz_engine_check). */
RZ_HIDDEN int rz__engine_store_each_removed(rz_engine *e,
                                            int (*fn)(rz_engine *, uint64_t));

/* group.c */
/* Hold for a job submitted inside a group: checked now, written by
 * rz__engine_group_flush (at the latest at the commit). */
RZ_HIDDEN int rz__engine_group_hold(rz_engine *e, rz__ejob *j);
/* Write the holds a group deferred (before any other hold of a job id). */
RZ_HIDDEN int rz__engine_group_flush(rz_engine *e);

/* requirements.c */
/* The requirements of a job, with max_cost_micros lowered to `max_cost`
 * (UINT64_MAX: as stored); the job joins the group of the result. */
RZ_HIDDEN int rz__engine_reqs_set(rz_engine *e, rz__ejob *j, const char *json,
                                  uint64_t max_cost);
/* Drop one reference to `x` (NULL: none); the last frees it. */
RZ_HIDDEN void rz__engine_reqs_release(rz_engine *e, rz__req_group *x);

/* queue.c */
/* Queue `j` for its next attempt. */
RZ_HIDDEN int rz__engine_enqueue(rz_engine *e, rz__ejob *j);
/* Room for `n` more queued jobs of group `g` (the queue, the dirty list)
 * and its waiting reason worked out: the next `n` rz__engine_enqueue of
 * its jobs in this call cannot fail. A submission reserves before it takes
 * its holds, so nothing can fail once money is held. */
RZ_HIDDEN int rz__engine_queue_reserve(rz_engine *e, rz__req_group *g, size_t n);
/* Push a QUEUED job's entry (rz__engine_enqueue, and resume on open). */
RZ_HIDDEN bool rz__engine_queue_push(rz_engine *e, const rz__ejob *j);
/* Make every queued job held exactly when its deployment is paused
 * (rz_engine_deployment_pause). */
RZ_HIDDEN int rz__engine_queue_pause_sync(rz_engine *e);
/* Forget group `g`, whose heap holds stale entries only. */
RZ_HIDDEN void rz__engine_queue_drop(rz_engine *e, const rz__req_group *g);
/* Place queued jobs in priority order while nodes have room. */
RZ_HIDDEN int rz__engine_assign_all(rz_engine *e);

/* waiting.c */
/* Work out again why g's jobs fit no node, unless what is known is recent
 * and the nodes are the same (force: even then, unless it is a reason). */
RZ_HIDDEN int rz__engine_why_refresh(rz_engine *e, rz__req_group *g,
                                     bool force);
/* j's waiting reason (NULL: none), for rz_engine_job_get. */
RZ_HIDDEN const char *rz__engine_waiting_reason(const rz__ejob *j);
/* Fail queued jobs whose queue deadline passed at e->now (refunded; a step
 * through its run). O(queued), and only when one may be due. */
RZ_HIDDEN int rz__engine_queue_expire(rz_engine *e);
/* No queue deadline is earlier (O(1); UINT64_MAX if none). */
RZ_HIDDEN uint64_t rz__engine_queue_next(const rz_engine *e);

/* deploy.c */
RZ_HIDDEN int rz__engine_dep_advance(rz_engine *e, rz__edep *d, uint64_t now);
/* A deployment step's job reached an outcome: feed it into the run. */
RZ_HIDDEN int rz__engine_dep_report(rz_engine *e, rz__ejob *j,
                                    const char *outputs, const char *error,
                                    uint64_t now);
/* The same in two parts: what it allocates, made first (so a caller may
 * fail before it changes anything), then the report, which takes it. */
typedef struct rz__dep_texts {
    char *event, *kept;
} rz__dep_texts;
RZ_HIDDEN int rz__engine_dep_report_prep(rz_engine *e, const char *outputs,
                                         const char *error, rz__dep_texts *t);
RZ_HIDDEN int rz__engine_dep_report_with(rz_engine *e, rz__ejob *j,
                                         const char *outputs, const char *error,
                                         uint64_t now, rz__dep_texts *t);
RZ_HIDDEN int rz__engine_dep_rebuild(rz_engine *e, rz__edep *d);
/* Deployment `id` as stored, its flow's text included (store.c). */
RZ_HIDDEN int rz__engine_store_dep_read(rz_engine *e, uint64_t id,
                                        rz__edep *out);
/* Between calls: running deployment d read back as a reopen would (its
 * stored flow, its stored step events replayed) equals its run in memory;
 * RZ_EINTERNAL naming where they part (rz_engine_check's property,
 * for tests: O(its events)). */
RZ_HIDDEN int rz__engine_dep_readback(rz_engine *e, const rz__edep *d);
RZ_HIDDEN void rz__engine_dep_free(rz__edep *d);

/* submit.c: a module's requirements (its manifest's, with its estimate as
 * estimate_seconds), member by member replaced by `overrides` (may be
 * NULL), as JSON text to free; NULL when out of memory. m may be NULL. */
RZ_HIDDEN char *rz__engine_module_reqs(const rz_module *m,
                                       const struct cJSON *overrides);

/* verify.c: reputation and challenges. */
typedef enum rz__outcome {
    RZ__OUT_SUCCEEDED, RZ__OUT_FAILED, RZ__OUT_DECLINED, RZ__OUT_LOST,
    RZ__OUT_DISAGREED
} rz__outcome;
/* A new node: its claims from its caps, unverified when challenges are on,
 * its first challenge due now, its trust written into its caps (before the
 * matcher copies them). */
RZ_HIDDEN int rz__verify_register(rz_engine *e, rz__enode *n, uint64_t now);
/* n registers again with `caps` (not yet its own): its claims from them,
 * unverified again when challenges are on, a challenge due now, its trust
 * written into them. */
RZ_HIDDEN void rz__verify_rejoin(rz_engine *e, rz__enode *n, rz_caps *caps,
                                 uint64_t now);
/* After open placed the jobs nodes held: their trust into the matcher. */
RZ_HIDDEN void rz__verify_resume(rz_engine *e);
/* Count an outcome in n's record; the matcher sees the new reputation. */
RZ_HIDDEN void rz__verify_outcome(rz_engine *e, uint64_t node, rz__outcome o);
/* Fail challenges past their deadline at e->now. */
RZ_HIDDEN void rz__verify_tick(rz_engine *e);
/* The earliest outstanding challenge deadline + 1 (UINT64_MAX: none). */
RZ_HIDDEN uint64_t rz__verify_next(const rz_engine *e);
/* The node record's verification members (store.c prints them as
 * decimal strings): their keys and values, RZ__VERIFY_FIELDS of each. */
#define RZ__VERIFY_FIELDS 9
RZ_HIDDEN size_t rz__verify_fields(const rz__enode *n,
                                   const char *keys[RZ__VERIFY_FIELDS],
                                   uint64_t vals[RZ__VERIFY_FIELDS]);
RZ_HIDDEN int rz__verify_load(rz_engine *e, rz__enode *n,
                              const struct cJSON *rec);

/* replica.c: redundant execution. */
/* Hold and queue the k - 1 replicas of head `id` (its own hold is taken
 * with theirs, in one linked batch outside a group; the head's queue
 * entry is reserved, so its enqueue after this cannot fail). The holds
 * are the last thing that can fail: an error leaves nothing held. */
RZ_HIDDEN int rz__replica_submit(rz_engine *e, uint64_t id, uint32_t k);
/* A sibling of j runs, ran or is placed on `node`: j must go elsewhere. */
RZ_HIDDEN bool rz__replica_excluded(const rz_engine *e, const rz__ejob *j,
                                    uint64_t node);
/* A deployment step's set, made at deploy (its holds are taken with the
 * steps'); its replicas wait PENDING until the step starts. */
RZ_HIDDEN int rz__replica_step_new(rz_engine *e, uint64_t id, uint32_t k);
/* The step of head h started (its request is built): queue its replicas. */
RZ_HIDDEN int rz__replica_step_start(rz_engine *e, rz__ejob *h);
/* A step's head failed outside a report (its nodes lost too often): its
 * vote; true when that is what it was (rz__engine_dep_report returns). */
RZ_HIDDEN bool rz__replica_step_failed(rz_engine *e, rz__ejob *j);
/* j's run reported (j unplaced, its run_ms and cost set): its vote, and the
 * verdict once every run of its set voted. `kept` (owned): the outputs or
 * the error as reported. */
RZ_HIDDEN int rz__replica_report(rz_engine *e, rz__ejob *j,
                                 const char *outputs, const char *error,
                                 char *kept);
/* j's set has every vote and no verdict (the verdict ran out of memory
 * after the last vote was committed): true, and the verdict tried again.
 * Called when a run repeats its report, so a set is never stuck. */
RZ_HIDDEN bool rz__replica_redecide(rz_engine *e, rz__ejob *j, int *rc);
/* rz__engine_finish on a member of an undecided set: a cancel cancels the
 * set; any other end is the member's vote (a failure). true: handled. */
RZ_HIDDEN bool rz__replica_finish(rz_engine *e, rz__ejob *j, rz_job_state st);
/* The job record's replica members (store.c). */
RZ_HIDDEN bool rz__replica_save(struct cJSON *rec, const rz__ejob *j);
RZ_HIDDEN int rz__replica_load(rz__ejob *j, const struct cJSON *rec);

/* What j was charged: a succeeded job its cost; a service billed by time
 * its intervals so far, and its last once that was settled (its cost is 0
 * unless it was). */
static inline uint64_t rz__engine_charged(const rz__ejob *j)
{
    return j->iv ? j->iv_paid_micros + j->cost
                 : j->state == RZ_JOB_SUCCEEDED ? j->cost : 0;
}

/* billing.c: billing by time (docs/services.md). */
/* A new job of service step `st` with a budget: billed by time (iv 1, one
 * interval held, matched on one interval's price); else unchanged. */
RZ_HIDDEN int rz__bill_fill(rz_engine *e, rz__ejob *j, const rz__edep *d,
                            const struct rz__step *st);
/* j is billed by time: keep it in e->bill (open). */
RZ_HIDDEN int rz__bill_track(rz_engine *e, const rz__ejob *j);
/* Drop jobs of ids above n (a rejected deploy; rz__engine_jobs_truncate). */
RZ_HIDDEN void rz__bill_truncate(rz_engine *e, uint64_t n);
/* Interval ends due at `now`: settle and hold the next, or stop. */
RZ_HIDDEN int rz__bill_tick(rz_engine *e, uint64_t now);
/* The earliest interval end (UINT64_MAX: none; 0: a payment is owed). */
RZ_HIDDEN uint64_t rz__bill_next(const rz_engine *e);
/* Move what the last commit recorded as owed by intervals (first of all
 * payments: a job's final settlement needs its current hold). A hold of
 * the next interval the ledger refuses (RZ_EFUNDS) stops its job in
 * memory (e->bill_stopped): the caller commits before paying the rest. */
RZ_HIDDEN int rz__bill_pay(rz_engine *e);
/* What `client` may hold or withdraw (billing.c): the ledger's available
 * plus `back`, less what an open group holds at its commit and what the
 * roll-overs decided but not yet paid owe. Every hold and withdrawal is
 * checked against it. */
RZ_HIDDEN int rz__engine_available(const rz_engine *e, rz_ledger_id client,
                                   uint64_t back, uint64_t *out);
/* RZ_OK if `amount` fits in it, else RZ_EFUNDS "insufficient available". */
RZ_HIDDEN int rz__engine_cover(const rz_engine *e, rz_ledger_id client,
                               uint64_t amount);
/* The last, partial interval of a service that ended by itself at `now`. */
RZ_HIDDEN uint64_t rz__bill_final_cost(rz_engine *e, const rz__ejob *j,
                                       uint64_t now);
/* The ledger id of interval k's hold (k = 1: the job's own). */
RZ_HIDDEN rz_ledger_id rz__bill_hold_id(uint64_t job, uint32_t k);
/* Job `job`'s first hold still open, of any interval (*open: its number,
 * 1 for the job's own hold; 0: none open or none made), read from the
 * ledger alone: for a job whose record is gone (rz_engine_check). */
RZ_HIDDEN int rz__bill_open_hold(const rz_engine *e, uint64_t job, uint32_t *open);
/* rz_engine_check for a job billed by time. */
RZ_HIDDEN int rz__bill_check(rz_engine *e, rz__ejob *j);
/* The "billing" member of j's status view; false: out of memory. */
RZ_HIDDEN bool rz__bill_json(const rz_engine *e, const rz__ejob *j,
                             struct cJSON *view);
/* Apply a STOP step event to `run` (replay, replica). */
RZ_HIDDEN int rz__bill_stop_apply(rz_run *run, size_t step, uint64_t now,
                                  const char *reason);

/* local.c: embedded mode hooks. */
RZ_HIDDEN void rz__engine_local_event(rz_engine *e, const rz__edep *d,
                                      rz__step_event_kind kind, size_t step,
                                      uint64_t now, const char *text);
/* How many more steps of `d` may start now; SIZE_MAX without a cap. */
RZ_HIDDEN size_t rz__engine_local_room(const rz_engine *e, const rz__edep *d);

#endif

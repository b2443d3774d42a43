/* The running agent, shared by agent.c (loops) and job.c (one job). */
#ifndef RHIZOS_NODE_AGENT_H
#define RHIZOS_NODE_AGENT_H

#include <pthread.h>
#include <stdint.h>

#include "rhizos/rhizos.h"
#include "node.h"

struct cJSON;

typedef struct agent agent;

/* One job held by this node. A slot is busy from the assignment until its
 * thread has finished; `stop` asks the thread to kill the process. A slot
 * whose attempt has `ended` (its process is gone, its result on the way)
 * no longer counts against max_concurrent_jobs: the node asks for its next
 * job at once, its poll saying which attempts ended, and the orchestrator
 * frees their slots and hands the next job before it takes the results. */
typedef struct job_slot {
    agent *a;
    int busy, finished, ended;
    pthread_t thread;            /* the slot's, made with its first job */
    pthread_cond_t go_cv;        /* its next job (`go`) or the end (`quit`) */
    int worker, go, quit;        /* under a->mu */
    uint64_t job;
    uint32_t attempt;
    uint64_t generation;         /* registration it was assigned under */
    int stop;                    /* 1: orchestrator said stop; 2: shutdown */
    const char *refuse;          /* declined without a look: why (static) */
    struct cJSON *assignment;    /* owned by the thread while it runs */
    char module[96];             /* for the local API: set at "started" */
    uint64_t started_ms;         /* 0 until then */
    uint64_t slurm_id;           /* a Slurm job taken up again at start
                                    (slurm.c): follow it, submit nothing */
    rz_scratch_pool *scratch;    /* unsandboxed: the scratch folders its
                                    jobs leave for the next (job.c) */
} job_slot;

/* A job that ended here, as the local API lists it. */
typedef struct job_record {
    uint64_t job;
    uint32_t attempt;
    char module[96];
    char outcome[16];            /* one of agent_outcomes */
    char detail[160];            /* why it failed or was declined */
    long long run_ms;            /* -1: it did not run */
    uint64_t ended_ms;
} job_record;

#define AGENT_RECENT 32
/* Clients kept for reuse: the poller, heartbeats, a result and a live log
 * a slot at once on a small node; beyond it a client is made and freed. */
#define AGENT_IDLE_MAX 8
#define AGENT_N_OUTCOMES 4
/* "succeeded", "failed", "declined", "stopped". */
extern const char *const agent_outcomes[AGENT_N_OUTCOMES];

struct agent {
    const node_opts *o;
    char url[512];
    node_config cfg;
    node_keys keys;
    rz_registry *reg;
    int sandbox;
    /* RZ_NODE_ID and the io.rhizos.node label of its containers: the first
     * 16 bytes of its public key in hex, the same across registrations,
     * so a restarted node finds what it left behind. */
    char node_id[33];

    pthread_mutex_t mu;          /* guards everything below */
    pthread_cond_t cv;           /* stop, registration: the loops' sleeps */
    pthread_cond_t slot_cv;      /* a slot freed or its attempt ended: only
                                    the poller waits (and stop) */
    node_state st;
    uint64_t generation;         /* bumps with every registration */
    int need_register;
    int want_register;           /* register again once no job runs (the
                                    served models changed) */
    int stopping;
    int outage;                  /* the orchestrator is unreachable */
    int fatal;                   /* exit status when a loop gave up */
    unsigned taken;              /* assignments taken (for --once) */
    job_slot *slots;
    size_t n_slots;              /* max_running, twice over where results
                                    are reported while the next job runs */
    size_t max_running;          /* [limits] max_concurrent_jobs */
    uint64_t *outbox;            /* jobs whose results wait in DATA/outbox */
    size_t n_outbox;
    unsigned spare_ready;        /* bit k: DATA/outbox/spare-k.tmp waits to
                                    hold the next result (outbox.c) */
    unsigned spare_held;         /* bit k: that name is a file or being made */
    uint64_t gpus_busy;          /* bit i: GPU i is a running job's */
    rz_client *idle[AGENT_IDLE_MAX];   /* clients given back
                                    (agent_client_put), each with its
                                    kept-alive connection */
    size_t n_idle;
    uint64_t idle_generation;    /* the registration they carry the token of */

    /* What the local API shows (localapi.c); written by agent_say, the
     * heartbeats and the challenge runner. */
    uint64_t started_ms;
    uint64_t last_contact_ms;    /* the orchestrator's last answer */
    char challenge[40];          /* "passed", "failed", or "" */
    job_record recent[AGENT_RECENT];   /* a ring: n_recent % AGENT_RECENT */
    size_t n_recent;
    uint64_t finished[AGENT_N_OUTCOMES];
    int64_t earn_balance, earn_pending;   /* the payout account, read */
    uint64_t earn_at_ms;                  /* when read; 0 never */
    int earn_stale;                       /* a job ended since */
    struct slurm_gw *slurm;      /* [backend] kind = "slurm" (slurm.c) */
    int local;                   /* slurm-run: one spooled job, no
                                    orchestrator (no live log) */
};

/* localapi.c: the local API on its own thread (docs/node.md "Local API").
 * 0 with *api (NULL when [api] listen = "off"), or -1 having said why: an
 * address set in config.toml that cannot be bound stops the start. */
struct node_api;
int node_api_start(agent *a, struct node_api **api);
/* After the agent has stopped: joins the thread, removes DATA/api.addr.
 * NULL is fine. */
void node_api_stop(struct node_api *api);
/* Only removes DATA/api.addr: for a process about to _exit. */
void node_api_forget(struct node_api *api);

/* A client for the current registration: *node and *generation say which.
 * NULL when not registered or out of memory. One given back by
 * agent_client_put is taken again first: its connection to the
 * orchestrator is reused (keep-alive), not made anew for every call. */
rz_client *agent_client(agent *a, uint64_t *node, uint64_t *generation);
/* Give back a client of agent_client (NULL is fine): kept for the next
 * caller while it is of the current registration and there is room, else
 * freed. */
void agent_client_put(agent *a, rz_client *c, uint64_t generation);
/* The current registration without a client: 0 when not registered. */
int agent_registration(agent *a, uint64_t *node, uint64_t *generation);
/* Slots whose job runs now (busy, its attempt not yet ended); under a->mu. */
size_t agent_running(const agent *a);
/* The attempt of slot s is over: its slot no longer counts as running, and
 * the poller may ask for the next job while the result is delivered. */
void agent_slot_ended(agent *a, job_slot *s);
/* Record the outcome of a call to the orchestrator: says once per outage
 * that it is unreachable and when it is back; flags re-registration for
 * a registration the orchestrator no longer knows. */
void agent_note(agent *a, int rc, uint64_t generation);
/* challenge.c: fetch the orchestrator's capability challenge, if one is
 * due, and answer it. */
void agent_challenge(agent *a);
/* Sleep up to `ms`, waking early when the agent stops. 1 if stopping. */
int agent_sleep(agent *a, long ms);
/* Next exponential backoff delay: 1 s doubling to 30 s, jittered. */
long agent_backoff(unsigned *tries);
int agent_stopping(agent *a);
/* A line about the node itself (not one job): "EVENT: DETAIL", or
 * {"event","detail"} with --json; nothing with --quiet. */
void agent_note_event(agent *a, const char *event, const char *detail);
/* One line per event: text, or JSON with --json; nothing with --quiet. */
void agent_say(agent *a, const char *event, const job_slot *s,
               const char *module, const char *detail, long long run_ms);

/* job.c: the GPUs of a job. The orchestrator reserved a count of this
 * node's GPUs; which ones is the node's to say: the lowest indexes below
 * st.n_gpus that no running job holds, held (bits in *mask) until
 * agent_give_back_gpus. ids gets "0", "3", ... (NULL-ended; the strings in
 * `names`, 64 of 4 bytes). NULL when it could, else why not (in `why`),
 * with nothing taken. */
const char *agent_take_gpus(agent *a, uint32_t n, uint64_t *mask,
                            char names[][4], const char **ids, char *why,
                            size_t len);
void agent_give_back_gpus(agent *a, uint64_t mask);

/* job.c: the thread of one assignment. */
void *job_main(void *slot);
/* Run slot s (filled and busy, its assignment `asg`) on the slot's thread
 * (made with its first job; it then waits for the next): 0; else the slot
 * is free again, asg deleted, the reason on stderr, -1. */
int agent_start_slot(agent *a, job_slot *s, struct cJSON *asg);
/* job.c: `rhizos-node slurm-run`: the slot's assignment vetted and run
 * here, its result body ({outputs}|{error}, run_ms, log) returned
 * (NULL: out of memory). */
struct cJSON *job_run_local(agent *a, job_slot *s);
/* What job_main checks before it runs the slot's assignment, and nothing
 * more (the fuzz target's seam): NULL when it would run, else why not
 * (static text or `why`). Nothing is run or sent; the slot keeps its
 * assignment. */
const char *job_vet(agent *a, job_slot *s, char *why, size_t n);

/* livelog.c: a running job's log lines, sent as they come (batched, in
 * a thread of their own made with the first lines, bounded). NULL when it
 * cannot start: the job runs all the same, its log goes with the result. */
typedef struct live_log live_log;
live_log *live_log_start(agent *a, job_slot *s);
/* Lines already scrubbed (rz_attempt_log_lines), '\n'-separated; never
 * waits on the network. NULL `l` is fine. */
void live_log_add(live_log *l, const char *lines);
/* Send what waits (for at most about 2 s), stop the thread, free. */
void live_log_finish(live_log *l);

/* outbox.c: DATA/outbox/<job>-<attempt>.json, results not yet accepted. */
typedef struct outbox outbox;
/* Keep `result` (the body of POST .../result) for `node` before sending
 * it, not yet synced; its path goes to `path`. 0, or -1 with errno. */
int outbox_put(agent *a, uint64_t node, uint64_t job, uint32_t attempt,
               const struct cJSON *result, char *path, size_t cap);
/* Its first delivery did not go through: sync it to disk (outbox.c). */
void outbox_sync(const char *path);
/* The orchestrator has it, or refused it for good: forget it (the file
 * is kept as a spare for a later result). */
void outbox_done(agent *a, const char *path, uint64_t job);
/* Remove the spare files; no job runs. */
void outbox_spares_free(agent *a);
/* True when an answer ends a result's delivery: accepted, or refused for
 * good (a 4xx other than 429). */
int outbox_final(int rc, long status);
/* Results an earlier run left for this registration (others are dropped);
 * NULL when none. Deliver them with outbox_main on a thread. The spares it
 * left are this run's: call before any result is put. */
outbox *outbox_load(agent *a);
/* One outbox file's text: 0 with its job, attempt and result (the caller
 * frees it) when it is a result of registration `node` at `url`, else -1.
 * (outbox_load's check; the fuzz target's seam.) */
int outbox_parse(const char *text, size_t len, uint64_t node, const char *url,
                 uint64_t *job, uint32_t *attempt, struct cJSON **result);
void *outbox_main(void *outbox);
void outbox_free(outbox *ob);

#endif /* RHIZOS_NODE_AGENT_H */

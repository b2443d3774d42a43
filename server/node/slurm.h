/* The node's Slurm backend ([backend] kind = "slurm", docs/node.md): a
 * gateway on a login node that hands each job to Slurm as a batch job.
 * slurm_parse.c holds the pure parts (what the Slurm commands print, the
 * job names, the state map, sbatch's arguments); slurm.c runs the commands
 * and tracks the jobs. */
#ifndef RHIZOS_NODE_SLURM_H
#define RHIZOS_NODE_SLURM_H

#include <stddef.h>
#include <stdint.h>

/* ---- slurm_parse.c ---- */

/* What the partition offers, from `scontrol show node -o`: every node
 * listing the partition, the usable ones (not drained, down, failing or
 * not responding) counted in the totals, what Slurm has allocated (to any
 * user) taken off in the free counts. */
typedef struct slurm_capacity {
    uint32_t nodes, usable;
    uint32_t cpus, cpus_free, max_node_cpus;
    uint64_t mem_mb, mem_free_mb, max_node_mem_mb;
    uint32_t gpus, gpus_free, max_node_gpus;
} slurm_capacity;

/* 0, or -1 with err for text that is not scontrol's (a line without
 * NodeName=, a number that is not one). Nodes of other partitions are
 * skipped. */
int slurm_parse_nodes(const char *text, size_t len, const char *partition,
                      slurm_capacity *out, char *err, size_t errlen);

/* Where a Slurm job state leaves the rhizos job. */
typedef enum slurm_phase {
    SLURM_WAITING = 0,   /* PENDING, CONFIGURING, REQUEUED, SUSPENDED, ... */
    SLURM_RUNNING,       /* RUNNING, COMPLETING */
    SLURM_DONE,          /* COMPLETED: the spool holds the result */
    SLURM_FAILED,        /* FAILED, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE */
    SLURM_TIMEOUT,       /* TIMEOUT */
    SLURM_RETRY,         /* CANCELLED, NODE_FAIL, PREEMPTED: declined, so
                            the orchestrator runs it elsewhere */
    SLURM_UNKNOWN        /* a state this code does not know */
} slurm_phase;

slurm_phase slurm_state_phase(const char *state);
const char *slurm_phase_name(slurm_phase p);

/* "rhizos-<job>-<attempt>" with job and attempt whole numbers from 1 (no
 * sign, no leading zero). 0 and the numbers, or -1. */
int slurm_job_name_parse(const char *name, uint64_t *job, uint32_t *attempt);
void slurm_job_name(char *out, size_t n, uint64_t job, uint32_t attempt);

/* One line of `squeue -h -t all -o %i|%j|%T|%k` (the comment may be left
 * out): only jobs whose name is a rhizos job name; other users' and other
 * names are skipped. */
typedef struct slurm_qjob {
    uint64_t id;              /* Slurm's job id */
    uint64_t job;
    uint32_t attempt;
    slurm_phase phase;
    char state[32];
    char comment[80];         /* the gateway's: "rhizos-node:<node id>" */
} slurm_qjob;

/* *out (malloc'd, *n entries; NULL when none), or -1 with err. */
int slurm_parse_queue(const char *text, size_t len, slurm_qjob **out,
                      size_t *n, char *err, size_t errlen);

/* `scontrol show job -o ID`: the fields the gateway reads. */
typedef struct slurm_jobinfo {
    uint64_t id;
    char name[80];
    char state[32];
    char reason[128];
    int exit_code, exit_signal;   /* ExitCode=C:S */
    slurm_phase phase;
    uint64_t elapsed_s;           /* sacct's ElapsedRaw, when has_elapsed */
    int has_elapsed;
} slurm_jobinfo;

int slurm_parse_job(const char *text, size_t len, slurm_jobinfo *out,
                    char *err, size_t errlen);

/* `sacct -n -P -X -j ID -o JobID,JobName,State,ExitCode,Reason[,ElapsedRaw]`:
 * the line of job `id` ("12|rhizos-5-2|CANCELLED by 0|0:15|None|4"; the
 * state's first word is the state; ElapsedRaw, whole seconds, may be left
 * out). 0, or -1 with err (no such line, or not sacct's). */
int slurm_parse_sacct(const char *text, size_t len, uint64_t id,
                      slurm_jobinfo *out, char *err, size_t errlen);
/* `scontrol show config`: does the cluster keep accounting (an
 * AccountingStorageType other than accounting_storage/none)? */
int slurm_config_accounting(const char *text, size_t len);

/* `sbatch --parsable`'s answer: "ID" or "ID;cluster". 0 or -1. */
int slurm_parse_sbatch(const char *text, size_t len, uint64_t *id);

/* What one job asks of Slurm. */
typedef struct slurm_request {
    uint32_t cpus;           /* --cpus-per-task (at least 1) */
    uint32_t memory_mb;      /* --mem (always: without it a job takes the
                                whole node under CR_Core_Memory) */
    uint32_t gpus;           /* --gres=gpu:N when > 0 */
    uint32_t timeout_s;      /* --time, in whole minutes rounded up past
                                the step's own limit; 0: none */
} slurm_request;

/* The --time value for a step timeout: the step's limit plus a minute of
 * grace (the adapter's own limit fires first, with its clear reason),
 * rounded up to minutes. "" for 0. */
void slurm_time_arg(char *out, size_t n, uint32_t timeout_s);

/* The last meaningful line of a command's stderr, trimmed of "sbatch:
 * error: " prefixes and control characters, at most n-1 bytes. */
void slurm_error_line(char *out, size_t n, const char *text, size_t len);

/* Shared with slurm_rest.c: a node state ("IDLE", "MIXED+DRAIN", "DOWN*")
 * that takes jobs; the GPUs a Gres string names (-1: does not parse); one
 * node of the partition counted into the totals. */
int slurm_node_state_usable(const char *state);
int slurm_gres_count(const char *gres, uint32_t *out);
void slurm_capacity_add(slurm_capacity *c, uint32_t cpus, uint32_t cpus_alloc,
                        uint64_t mem, uint64_t mem_alloc, uint32_t gpus,
                        uint32_t gpus_alloc, int usable);

/* ---- slurm_rest.c: slurmrestd's answers (openapi/v0.0.38), read
 * strictly: pure functions, fed malformed replies in the unit test ---- */

/* The errors array of a reply as one line ("Invalid partition name
 * specified (2000)"; "" when none), and the first error number (0: none). */
int slurm_rest_errors(const char *text, size_t len, char *out, size_t n);

/* GET nodes: as slurm_parse_nodes. 0, or -1 with err. */
int slurm_rest_parse_nodes(const char *text, size_t len, const char *partition,
                           slurm_capacity *out, char *err, size_t errlen);
/* GET partition/NAME: 1 up, 0 known but not up, -1 with err (not known:
 * err says so, or not slurmrestd's answer). */
int slurm_rest_parse_partition(const char *text, size_t len,
                               const char *partition, char *err,
                               size_t errlen);
/* GET jobs: this user's rhizos jobs (user NULL: anyone's), as
 * slurm_parse_queue. */
int slurm_rest_parse_jobs(const char *text, size_t len, const char *user,
                          slurm_qjob **out, size_t *n, char *err,
                          size_t errlen);
/* GET job/ID: 0 with *out (elapsed from its start and end once ended; a
 * job Slurm requeued itself reads as REQUEUED, to be retried), 1 Slurm
 * no longer knows it, -1 with err. */
int slurm_rest_parse_job(const char *text, size_t len, uint64_t id,
                         slurm_jobinfo *out, char *err, size_t errlen);
/* POST job/submit: 0 with the id (queued, whatever errors it lists
 * besides), or -1 with Slurm's words in err. */
int slurm_rest_parse_submit(const char *text, size_t len, uint64_t *id,
                            char *err, size_t errlen);

/* What a batch job is, for either way of submitting it. */
typedef struct slurm_submit {
    const char *name, *partition, *account, *qos;   /* account, qos: NULL */
    const char *comment;          /* "rhizos-node:<node id>" */
    const char *dir;              /* its spool folder: cwd and slurm.out */
    const slurm_request *rq;
    const char *const *argv;      /* what the batch script execs */
} slurm_submit;

/* The job description slurmrestd takes (POST job/submit): malloc'd JSON,
 * the arguments quoted into the script (22.05's slurmrestd mishandles
 * "argv"), or NULL. hold: a job that only proves Slurm would take it. */
char *slurm_rest_submit_body(const slurm_submit *sb, int hold);

/* ---- the two ways to Slurm: the commands (slurm.c's slurm_commands)
 * or slurmrestd (slurm_rest.c's slurm_restd); the gateway uses one ---- */

struct node_config;
typedef struct slurm_backend {
    const char *name;
    /* The partition's nodes and whether it is up. 0, or -1 with why
     * ("Slurm has no partition ...", "slurmctld does not answer (...)",
     * "slurmrestd does not answer ..."). */
    int (*capacity)(const struct node_config *cfg, slurm_capacity *cap,
                    int *up, char *why, size_t n);
    /* This gateway's user's rhizos jobs (finished ones for MinJobAge). */
    int (*queue)(const struct node_config *cfg, slurm_qjob **v, size_t *nv,
                 char *why, size_t n);
    /* 0 with *ji, 1 Slurm no longer knows the job, -1 no answer. */
    int (*job)(const struct node_config *cfg, uint64_t id, slurm_jobinfo *ji);
    /* 0 with *id; -1 with why ("sbatch refused the job: ..." for a
     * refusal). test: only whether Slurm would take it, nothing runs. */
    int (*submit)(const struct node_config *cfg, const slurm_submit *sb,
                  int test, uint64_t *id, char *why, size_t n);
    void (*cancel)(const struct node_config *cfg, uint64_t id);
} slurm_backend;

extern const slurm_backend slurm_commands, slurm_restd;

/* ---- slurm.c: the gateway (needs agent.h's types) ---- */

struct agent;
struct job_slot;
struct cJSON;
typedef struct slurm_gw slurm_gw;

/* The partition's usable capacity written over a registration's
 * capabilities (cores, threads, memory, GPUs; label slurm.partition).
 * 0, or -1 with err when Slurm does not answer. */
int slurm_caps_apply(struct cJSON *caps, const struct node_config *cfg,
                     char *err, size_t n);

/* Before the first job: the rhizos-node command for the compute nodes,
 * the spool (SPOOL/<node id>), Slurm answering, and a probe job that
 * proves the spool is shared. 0, or -1 with why (the gateway does not
 * start). */
int slurm_gw_start(struct agent *a, char *why, size_t n);
/* Jobs an earlier run left in Slurm taken up again (threads of their own),
 * then the partition watched every poll_s. */
void slurm_gw_run(struct agent *a);
void slurm_gw_free(struct agent *a);
/* 1 when the gateway may ask for work now, else 0 with why (Slurm away,
 * the partition down, drained or full). */
int slurm_gw_can_take(struct agent *a, char *why, size_t n);

typedef enum slurm_out_kind {
    SLURM_OUT_RESULT = 1,    /* result (the spool's) or error: report it */
    SLURM_OUT_DECLINE,       /* error says why: decline (runs elsewhere) */
    SLURM_OUT_LEFT,          /* the gateway stops: the Slurm job goes on */
    SLURM_OUT_WITHDRAWN      /* the orchestrator withdrew it: scancelled */
} slurm_out_kind;

typedef struct slurm_outcome {
    slurm_out_kind kind;
    struct cJSON *result;    /* slurm-run's result.json; NULL: see error */
    char *error;             /* malloc'd */
    uint64_t run_ms;         /* measured by the gateway (no result.json) */
} slurm_outcome;

/* Submit the slot's assignment (or, for a recovered slot, its slurm_id)
 * and follow it until it ends, is withdrawn, or the gateway stops. */
void slurm_job_run(struct agent *a, struct job_slot *s,
                   const slurm_request *rq, slurm_outcome *out);
/* The job's spool folder, once its outcome is kept or delivered. */
void slurm_job_cleanup(struct agent *a, const struct job_slot *s);

#endif /* RHIZOS_NODE_SLURM_H */

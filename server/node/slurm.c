/* The Slurm backend: rhizos-node on a login node as a gateway. Each job is
 * one Slurm batch job named rhizos-<job>-<attempt> that runs
 * `rhizos-node slurm-run` on a compute node, which runs the step through
 * the same adapters as any node and writes its result into the shared
 * spool (SPOOL/<node id>/<job>-<attempt>/). The gateway tracks it with
 * `scontrol show job` (and, where the cluster keeps accounting, reads the
 * final state and run time from sacct), reports the result, and
 * advertises what the partition can take.
 *
 * Slurm is reached through one of two backends (slurm.h's slurm_backend):
 * the commands here (sinfo, scontrol, squeue, sbatch, scancel), or
 * slurmrestd's REST API (slurm_rest.c) when [backend] slurmrestd is set;
 * everything else (the spool, tracking, recovery, when work is taken) is
 * shared. Commands run with posix_spawnp and an argument vector, never a
 * shell string; what they print is read by slurm_parse.c. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "slurm.h"

extern char **environ;

#define CMD_TIMEOUT_MS 30000
#define CMD_OUT_MAX (4u * 1024u * 1024u)
#define MONITOR_MIN_MS 1000
#define PROBE_WAIT_S 120
#define RESULT_MAX (2u * 1024u * 1024u)
#define REFUSED_RECHECK_MS 5000
#define SACCT_TRIES 5

struct slurm_gw {
    agent *a;
    pthread_t monitor;
    int monitoring;
    char command[PATH_MAX];      /* rhizos-node on the compute nodes */
    char spool[PATH_MAX];        /* SPOOL/<node id> */
    /* guarded by a->mu */
    char why[512];               /* why no work is taken now; "" takes */
    slurm_capacity cap;
    slurm_qjob *queue;           /* this user's rhizos jobs, one squeue a
                                    pass (NULL: none or not read) */
    size_t n_queue;
    int accounting;              /* the cluster keeps accounting: sacct
                                    knows a job scontrol has forgotten */
    char refused[400];           /* sbatch refuses every job of this
                                    gateway (account, QoS): why; "" not */
    uint64_t refused_checked_ms; /* when that was last asked again */
};

/* What the last registration advertised (slurm_caps_apply), so that the
 * monitor can tell when the partition has changed under it. */
static pthread_mutex_t adv_mu = PTHREAD_MUTEX_INITIALIZER;
static slurm_capacity advertised;

/* ---- running a command ---- */

typedef struct cmd_out {
    char *out, *err;             /* NUL-terminated, malloc'd */
    size_t out_len, err_len;
    int status;                  /* exit status; -1 not run, killed */
    char line[400];              /* stderr's last line, or why it did not run */
} cmd_out;

static void cmd_free(cmd_out *c)
{
    free(c->out);
    free(c->err);
    memset(c, 0, sizeof *c);
}

static int grow_append(char **buf, size_t *len, const char *p, size_t n)
{
    if (*len + n > CMD_OUT_MAX)
        n = CMD_OUT_MAX - *len;
    char *b = realloc(*buf, *len + n + 1);
    if (!b)
        return -1;
    memcpy(b + *len, p, n);
    *len += n;
    b[*len] = '\0';
    *buf = b;
    return 0;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - t0->tv_sec) * 1000 + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Both pipes read until closed, or CMD_TIMEOUT_MS (then the child is
 * killed). */
static void drain(int fo, int fe, cmd_out *c, pid_t pid)
{
    struct pollfd p[2] = { { fo, POLLIN, 0 }, { fe, POLLIN, 0 } };
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[8192];
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        long left = CMD_TIMEOUT_MS - elapsed_ms(&t0);
        if (left <= 0) {
            kill(pid, SIGKILL);
            snprintf(c->line, sizeof c->line, "no answer in %d s",
                     CMD_TIMEOUT_MS / 1000);
            break;
        }
        if (poll(p, 2, (int)left) < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n > 0)
                (void)!grow_append(i ? &c->err : &c->out,
                                   i ? &c->err_len : &c->out_len, buf,
                                   (size_t)n);
            else if (n == 0 || errno != EINTR)
                p[i].fd = -1;
        }
    }
}

/* argv[0] found on PATH; 0 when it ran (c->status its exit status), -1
 * when it could not be started or did not end (c->line says why). */
static int cmd_run(const char *const argv[], cmd_out *c)
{
    memset(c, 0, sizeof *c);
    c->status = -1;
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 };
    if (pipe2(po, O_CLOEXEC) != 0 || pipe2(pe, O_CLOEXEC) != 0) {
        snprintf(c->line, sizeof c->line, "pipe: %s", strerror(errno));
        if (po[0] >= 0) {
            close(po[0]);
            close(po[1]);
        }
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    /* The agent's threads block SIGTERM and ignore SIGPIPE: the commands
     * get neither. */
    posix_spawnattr_t at;
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, &at, (char *const *)argv,
                          environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        snprintf(c->line, sizeof c->line, "%s: %s", argv[0], strerror(rc));
        close(po[0]);
        close(pe[0]);
        return -1;
    }
    drain(po[0], pe[0], c, pid);
    close(po[0]);
    close(pe[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (c->line[0])   /* timed out */
        return -1;
    c->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (c->err)
        slurm_error_line(c->line, sizeof c->line, c->err, c->err_len);
    if (!c->line[0] && c->status != 0)
        snprintf(c->line, sizeof c->line, "%s exited with status %d",
                 argv[0], c->status);
    return 0;
}

/* ---- capacity ---- */

/* The commands' capacity: sinfo for the partition, scontrol for its
 * nodes. */
static int cmd_capacity(const node_config *cfg, slurm_capacity *cap,
                        int *upp, char *why, size_t n)
{
    const char *nodes[] = { "scontrol", "show", "node", "-o", NULL };
    char part[80];
    snprintf(part, sizeof part, "--partition=%s", cfg->slurm_partition);
    const char *avail[] = { "sinfo", "-h", part, "-o", "%a", NULL };
    cmd_out c;
    if (cmd_run(avail, &c) != 0 || c.status != 0) {
        snprintf(why, n, "slurmctld does not answer (sinfo: %s)", c.line);
        cmd_free(&c);
        return -1;
    }
    int known = c.out_len > 0, up = c.out && strncmp(c.out, "up", 2) == 0;
    cmd_free(&c);
    if (!known) {
        snprintf(why, n, "Slurm has no partition \"%s\"", cfg->slurm_partition);
        return -1;
    }
    if (cmd_run(nodes, &c) != 0 || c.status != 0) {
        snprintf(why, n, "slurmctld does not answer (scontrol: %s)", c.line);
        cmd_free(&c);
        return -1;
    }
    char err[200];
    int rc = slurm_parse_nodes(c.out ? c.out : "", c.out_len,
                               cfg->slurm_partition, cap, err, sizeof err);
    cmd_free(&c);
    if (rc != 0) {
        snprintf(why, n, "scontrol show node: %s", err);
        return -1;
    }
    *upp = up;
    return 0;
}

static const slurm_backend *backend_of(const node_config *cfg)
{
    return cfg->slurm_rest ? &slurm_restd : &slurm_commands;
}

/* The partition as Slurm sees it now, and why no work is taken ("" when
 * it is). 0, or -1 with why (unreachable, unknown partition, an answer
 * that does not parse). */
static int capacity_now(const node_config *cfg, slurm_capacity *cap,
                        char *why, size_t n)
{
    int up = 0;
    if (backend_of(cfg)->capacity(cfg, cap, &up, why, n) != 0)
        return -1;
    if (!up)
        snprintf(why, n, "partition \"%s\" is not up", cfg->slurm_partition);
    else if (!cap->usable)
        snprintf(why, n, "partition \"%s\" has no usable node (%u drained, "
                 "down or not responding)", cfg->slurm_partition, cap->nodes);
    else if (!cap->cpus_free)
        snprintf(why, n, "partition \"%s\" is full (0 of %u CPUs free)",
                 cfg->slurm_partition, cap->cpus);
    else
        why[0] = '\0';
    return 0;
}

int slurm_caps_apply(cJSON *caps, const node_config *cfg, char *err,
                     size_t n)
{
    slurm_capacity cap;
    char why[512];
    if (capacity_now(cfg, &cap, why, sizeof why) != 0) {
        snprintf(err, n, "slurm: %s", why);
        return -1;
    }
    pthread_mutex_lock(&adv_mu);
    advertised = cap;
    pthread_mutex_unlock(&adv_mu);
    /* The partition's usable nodes as one node: its CPUs, memory and GPUs
     * in total. A step still runs on one Slurm node: one larger than any
     * node is turned down before sbatch (slurm_job_run). */
    cJSON *v, *cpu = cJSON_GetObjectItemCaseSensitive(caps, "cpu");
    const char *const cores[] = { "cores", "threads" };
    for (size_t i = 0; i < 2; i++)
        if ((v = cJSON_GetObjectItemCaseSensitive(cpu, cores[i])))
            cJSON_SetNumberValue(v, cap.cpus);
    if ((v = cJSON_GetObjectItemCaseSensitive(caps, "memory_mb")))
        cJSON_SetNumberValue(v, (double)cap.mem_mb);
    if ((v = cJSON_GetObjectItemCaseSensitive(caps, "memory_available_mb")))
        cJSON_SetNumberValue(v, (double)cap.mem_free_mb);
    cJSON *gpus = cJSON_CreateArray();
    for (uint32_t i = 0; i < cap.gpus && i < 1024; i++) {
        cJSON *g = cJSON_CreateObject();
        cJSON_AddNumberToObject(g, "index", i);
        cJSON_AddStringToObject(g, "vendor", "nvidia");
        cJSON_AddStringToObject(g, "model", "slurm gres/gpu");
        cJSON_AddItemToArray(gpus, g);
    }
    if (cJSON_GetObjectItemCaseSensitive(caps, "gpus"))
        cJSON_ReplaceItemInObjectCaseSensitive(caps, "gpus", gpus);
    else
        cJSON_AddItemToObject(caps, "gpus", gpus);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(caps, "labels");
    if (!cJSON_IsObject(labels))
        labels = cJSON_AddObjectToObject(caps, "labels");
    cJSON_DeleteItemFromObjectCaseSensitive(labels, "slurm.partition");
    cJSON_AddStringToObject(labels, "slurm.partition", cfg->slurm_partition);
    return 0;
}

/* Slurm's rhizos jobs, by name (squeue knows finished jobs for MinJobAge). */
static int cmd_queue(const node_config *cfg, slurm_qjob **v, size_t *n,
                     char *why, size_t wn)
{
    (void)cfg;
    const char *argv[] = { "squeue", "-h", "--me", "-t", "all", "-o",
                           "%i|%j|%T|%k", NULL };
    cmd_out c;
    char err[200];
    if (cmd_run(argv, &c) != 0 || c.status != 0) {
        snprintf(why, wn, "squeue: %.250s", c.line);
        cmd_free(&c);
        return -1;
    }
    int rc = slurm_parse_queue(c.out ? c.out : "", c.out_len, v, n, err,
                               sizeof err);
    cmd_free(&c);
    if (rc != 0)
        snprintf(why, wn, "squeue: %s", err);
    return rc;
}

static int queue_now(const agent *a, slurm_qjob **v, size_t *n, char *why,
                     size_t wn)
{
    return backend_of(&a->cfg)->queue(&a->cfg, v, n, why, wn);
}

static uint64_t mono_ms(void);
static int test_only(agent *a, char *why, size_t n);
static int unreachable(const char *why);

/* Why no work is taken while Slurm refuses every job (a->mu held). */
static void refused_why(const slurm_gw *g, char *why, size_t n)
{
    snprintf(why, n, "Slurm refuses every job of this gateway (sbatch: "
             "%.300s); check [backend] account, qos and partition against "
             "sacctmgr's associations", g->refused);
}

/* A refusal of every job (refuse_all) asked again every
 * REFUSED_RECHECK_MS with a job Slurm only tests, never runs: why names
 * it until Slurm takes such a job again. Slurm away or the partition
 * unusable says so first. */
static void refused_now(slurm_gw *g, char *why, size_t n)
{
    agent *a = g->a;
    pthread_mutex_lock(&a->mu);
    int refused = g->refused[0] != '\0';
    int due = refused && mono_ms() - g->refused_checked_ms >= REFUSED_RECHECK_MS;
    pthread_mutex_unlock(&a->mu);
    if (!refused || why[0])
        return;
    char line[400] = "";
    int rc = due ? test_only(a, line, sizeof line) : 1;
    pthread_mutex_lock(&a->mu);
    if (due)
        g->refused_checked_ms = mono_ms();
    if (rc == 0)
        g->refused[0] = '\0';
    else if (rc == 1 && due)
        snprintf(g->refused, sizeof g->refused, "%s", line);
    if (g->refused[0])
        refused_why(g, why, n);
    pthread_mutex_unlock(&a->mu);
}

/* One look at the partition: says once when the gateway stops taking work
 * and why, and when it takes it again; a change of the usable totals is
 * advertised by registering again once no job runs. */
static void monitor_once(slurm_gw *g)
{
    agent *a = g->a;
    slurm_capacity cap;
    char why[512];
    if (capacity_now(&a->cfg, &cap, why, sizeof why) != 0)
        memset(&cap, 0, sizeof cap);
    refused_now(g, why, sizeof why);
    /* One squeue for every job of this gateway (look() reads it), not a
     * scontrol per job and pass. */
    slurm_qjob *q = NULL;
    size_t nq = 0;
    char qwhy[300];
    if (queue_now(a, &q, &nq, qwhy, sizeof qwhy) != 0)
        q = NULL, nq = 0;
    pthread_mutex_lock(&a->mu);
    int changed = strcmp(why, g->why) != 0;
    if (changed)
        memcpy(g->why, why, sizeof g->why);
    g->cap = cap;
    free(g->queue);
    g->queue = q;
    g->n_queue = nq;
    pthread_mutex_unlock(&a->mu);
    if (changed)
        agent_note_event(a, why[0] ? "slurm-not-taking-work"
                                   : "slurm-taking-work",
                         why[0] ? why : "the partition has room again");
    pthread_mutex_lock(&adv_mu);
    int moved = cap.usable && (cap.cpus != advertised.cpus ||
                               cap.mem_mb != advertised.mem_mb ||
                               cap.gpus != advertised.gpus);
    pthread_mutex_unlock(&adv_mu);
    if (moved) {
        pthread_mutex_lock(&a->mu);
        int already = a->want_register;
        a->want_register = 1;
        pthread_mutex_unlock(&a->mu);
        if (!already) {
            char d[200];
            snprintf(d, sizeof d, "the partition now has %u CPUs, %" PRIu64
                     " MiB, %u GPUs usable; registering again to advertise "
                     "them once no job runs", cap.cpus, cap.mem_mb, cap.gpus);
            agent_note_event(a, "slurm-capacity", d);
        }
    }
}

static void *monitor_main(void *arg)
{
    slurm_gw *g = arg;
    long every = (long)(g->a->cfg.slurm_poll_s * 1000);
    if (every < MONITOR_MIN_MS)
        every = MONITOR_MIN_MS;
    while (!agent_sleep(g->a, every))
        monitor_once(g);
    return NULL;
}

int slurm_gw_can_take(agent *a, char *why, size_t n)
{
    pthread_mutex_lock(&a->mu);
    int ok = !a->slurm->why[0];
    snprintf(why, n, "%s", a->slurm->why);
    pthread_mutex_unlock(&a->mu);
    return ok;
}

/* ---- the spool ---- */

static void job_dir(const slurm_gw *g, char *out, size_t n, uint64_t job,
                    uint32_t attempt)
{
    snprintf(out, n, "%s/%" PRIu64 "-%" PRIu32, g->spool, job, attempt);
}

static int write_text(const char *dir, const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%.3900s/%.64s", dir, name);
    return node_write_private(path, text, strlen(text));
}

static char *read_text(const char *dir, const char *name, size_t max)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%.3900s/%.64s", dir, name);
    return node_read_file(path, max, NULL);
}

/* The folder and what is in it (files only: the spool holds nothing
 * else). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

void slurm_job_cleanup(agent *a, const job_slot *s)
{
    char dir[PATH_MAX + 40];
    job_dir(a->slurm, dir, sizeof dir, s->job, s->attempt);
    remove_dir(dir);
}

/* ---- submitting ---- */

/* What the batch script execs: rhizos-node slurm-run with the gateway's
 * data folder and options, and the job's folder. Returns the new count
 * (argv NULL-ended; room for 64). */
static size_t run_args(agent *a, const char **argv, size_t k, const char *dir)
{
    argv[k++] = a->slurm->command;
    argv[k++] = "slurm-run";
    argv[k++] = "--data";
    argv[k++] = a->o->data_dir;
    for (size_t i = 0; i < a->o->n_modules && k < 56; i++) {
        argv[k++] = "--modules";
        argv[k++] = a->o->modules[i];
    }
    if (a->o->no_sandbox)
        argv[k++] = "--no-sandbox";
    if (a->o->container_host) {
        argv[k++] = "--container-host";
        argv[k++] = a->o->container_host;
    }
    argv[k++] = dir;
    argv[k] = NULL;
    return k;
}

/* sbatch's arguments' text. */
typedef struct sbatch_args {
    char name[120], part[100], acct[100], qos[100], cpus[40], mem[40],
         gres[40], time[40], out[PATH_MAX + 20], dir[PATH_MAX + 20],
         script[PATH_MAX + 20], comment[100];
} sbatch_args;

/* Where and what the job asks for: partition, account, QoS, one task on
 * one node, CPUs, memory, GPUs and time. Returns the new count. */
static size_t sbatch_resources(sbatch_args *b, const char **argv, size_t k,
                               const slurm_submit *sb)
{
    const slurm_request *rq = sb->rq;
    snprintf(b->part, sizeof b->part, "--partition=%s", sb->partition);
    argv[k++] = b->part;
    if (sb->account) {
        snprintf(b->acct, sizeof b->acct, "--account=%s", sb->account);
        argv[k++] = b->acct;
    }
    if (sb->qos) {
        snprintf(b->qos, sizeof b->qos, "--qos=%s", sb->qos);
        argv[k++] = b->qos;
    }
    argv[k++] = "--nodes=1";
    argv[k++] = "--ntasks=1";
    snprintf(b->cpus, sizeof b->cpus, "--cpus-per-task=%u", rq->cpus);
    argv[k++] = b->cpus;
    snprintf(b->mem, sizeof b->mem, "--mem=%u", rq->memory_mb);
    argv[k++] = b->mem;
    if (rq->gpus) {
        snprintf(b->gres, sizeof b->gres, "--gres=gpu:%u", rq->gpus);
        argv[k++] = b->gres;
    }
    char t[32];
    slurm_time_arg(t, sizeof t, rq->timeout_s);
    if (t[0]) {
        snprintf(b->time, sizeof b->time, "--time=%s", t);
        argv[k++] = b->time;
    }
    return k;
}

/* `sbatch` of the batch script (it only execs its arguments) with
 * rhizos-node slurm-run DIR as the arguments, or `sbatch --test-only` of
 * the smallest job. 0 with the Slurm id, or -1 with why. */
static int cmd_submit(const node_config *cfg, const slurm_submit *sb,
                      int test, uint64_t *id, char *why, size_t n)
{
    (void)cfg;
    sbatch_args b;
    const char *argv[96];
    size_t k = 0;
    argv[k++] = "sbatch";
    argv[k++] = test ? "--test-only" : "--parsable";
    if (!test) {
        snprintf(b.name, sizeof b.name, "--job-name=%s", sb->name);
        argv[k++] = b.name;
    }
    k = sbatch_resources(&b, argv, k, sb);
    if (test) {
        argv[k++] = "--output=/dev/null";
        argv[k++] = "--wrap=true";
    } else {
        /* The gateway retries elsewhere itself: Slurm must not requeue.
         * Only PATH goes with the job (no token or secret of the
         * gateway's environment). */
        argv[k++] = "--no-requeue";
        argv[k++] = "--export=PATH";
        snprintf(b.comment, sizeof b.comment, "--comment=%s", sb->comment);
        argv[k++] = b.comment;
        snprintf(b.out, sizeof b.out, "--output=%s/slurm.out", sb->dir);
        argv[k++] = b.out;
        snprintf(b.dir, sizeof b.dir, "--chdir=%s", sb->dir);
        argv[k++] = b.dir;
        snprintf(b.script, sizeof b.script, "%s/batch.sh", sb->dir);
        argv[k++] = b.script;
        for (size_t i = 0; sb->argv[i] && k + 1 < sizeof argv / sizeof *argv; i++)
            argv[k++] = sb->argv[i];
    }
    argv[k] = NULL;
    cmd_out c;
    if (cmd_run(argv, &c) != 0) {
        snprintf(why, n, "sbatch did not run: %s", c.line);
        cmd_free(&c);
        return -1;
    }
    if (c.status != 0 ||
        (!test && slurm_parse_sbatch(c.out ? c.out : "", c.out_len, id) != 0)) {
        snprintf(why, n, "sbatch refused the job: %s", c.line[0] ? c.line
                 : "its answer is not a job id");
        cmd_free(&c);
        return -1;
    }
    cmd_free(&c);
    return 0;
}

/* The job of the spool folder dir submitted through the gateway's
 * backend. 0 with the Slurm id, or -1 with why. */
static int submit(agent *a, const char *dir, const char *name,
                  const slurm_request *rq, uint64_t *id, char *why, size_t n)
{
    const char *argv[64];
    char comment[64];
    snprintf(comment, sizeof comment, "rhizos-node:%s", a->node_id);
    run_args(a, argv, 0, dir);
    slurm_submit sb = { .name = name, .partition = a->cfg.slurm_partition,
                        .account = a->cfg.slurm_account,
                        .qos = a->cfg.slurm_qos, .comment = comment,
                        .dir = dir, .rq = rq, .argv = argv };
    return backend_of(&a->cfg)->submit(&a->cfg, &sb, 0, id, why, n);
}

/* Would Slurm take the smallest job of this gateway (its partition,
 * account and QoS)? Asked without running anything (sbatch --test-only,
 * or a held job slurmrestd takes and the gateway cancels). 0 yes, 1
 * refused (why: Slurm's words), -1 no answer. */
static int test_only(agent *a, char *why, size_t n)
{
    static const char prefix[] = "sbatch refused the job: ";
    slurm_request rq = { .cpus = 1, .memory_mb = 64 };
    const char *none[] = { NULL };
    slurm_submit sb = { .name = "rhizos-test-only",
                        .partition = a->cfg.slurm_partition,
                        .account = a->cfg.slurm_account,
                        .qos = a->cfg.slurm_qos, .rq = &rq, .argv = none };
    char line[600];
    uint64_t id = 0;
    if (backend_of(&a->cfg)->submit(&a->cfg, &sb, 1, &id, line,
                                    sizeof line) == 0)
        return 0;
    const char *w = strncmp(line, prefix, sizeof prefix - 1) == 0
                  ? line + sizeof prefix - 1 : line;
    snprintf(why, n, "%.390s", w);
    return unreachable(line) ? -1 : 1;
}

/* sbatch refused a job: when it refuses even the smallest one, every job
 * would be refused (an account or QoS Slurm no longer allows), so the
 * gateway stops taking work until it is taken again (refused_now). */
static void refuse_all(agent *a)
{
    char line[400] = "";
    if (test_only(a, line, sizeof line) != 1)
        return;
    slurm_gw *g = a->slurm;
    char why[512];
    pthread_mutex_lock(&a->mu);
    snprintf(g->refused, sizeof g->refused, "%s", line);
    g->refused_checked_ms = mono_ms();
    refused_why(g, why, sizeof why);
    int changed = strcmp(why, g->why) != 0;
    if (changed)
        snprintf(g->why, sizeof g->why, "%s", why);
    pthread_mutex_unlock(&a->mu);
    if (changed)
        agent_note_event(a, "slurm-not-taking-work", why);
}

/* The job's folder with the assignment and the batch script. */
static int prepare(agent *a, const job_slot *s, const char *dir, char *why,
                   size_t n)
{
    char *text = cJSON_PrintUnformatted(s->assignment);
    int ok = text && node_mkdirs(dir) == 0 &&
             write_text(dir, "assignment.json", text) == 0 &&
             write_text(dir, "batch.sh", "#!/bin/sh\nexec \"$@\"\n") == 0;
    cJSON_free(text);
    if (!ok) {
        snprintf(why, n, "cannot write the job into the spool %s: %s",
                 a->slurm->spool, strerror(errno));
        return -1;
    }
    char path[PATH_MAX + 20];
    snprintf(path, sizeof path, "%s/batch.sh", dir);
    chmod(path, 0700);
    return 0;
}

/* ---- tracking ---- */

static int stop_of(agent *a, const job_slot *s)
{
    pthread_mutex_lock(&a->mu);
    int stop = s->stop;
    pthread_mutex_unlock(&a->mu);
    return stop;
}

static void cmd_cancel(const node_config *cfg, uint64_t id)
{
    (void)cfg;
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, id);
    const char *argv[] = { "scancel", num, NULL };
    cmd_out c;
    (void)cmd_run(argv, &c);
    cmd_free(&c);
}

static void scancel(agent *a, uint64_t id)
{
    backend_of(&a->cfg)->cancel(&a->cfg, id);
}

/* result.json as written by slurm-run; NULL when absent or not JSON. */
static cJSON *spool_result(const char *dir)
{
    char *text = read_text(dir, "result.json", RESULT_MAX);
    cJSON *r = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (r && !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        r = NULL;
    }
    return r;
}

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* A final state: the outcome from the spool's result, or from Slurm's
 * word when the step left none. */
static void ended(const char *dir, const slurm_jobinfo *ji, uint64_t run_ms,
                  slurm_outcome *out)
{
    out->result = spool_result(dir);
    out->run_ms = run_ms;
    if (out->result) {
        out->kind = SLURM_OUT_RESULT;
        return;
    }
    char msg[400];
    out->kind = SLURM_OUT_RESULT;
    switch (ji->phase) {
    case SLURM_RETRY:
        out->kind = SLURM_OUT_DECLINE;
        snprintf(msg, sizeof msg, "Slurm job %" PRIu64 " ended %s (reason %s) "
                 "before the step finished", ji->id, ji->state, ji->reason);
        break;
    case SLURM_TIMEOUT:
        snprintf(msg, sizeof msg, "Slurm job %" PRIu64 " hit its time limit "
                 "(TIMEOUT)", ji->id);
        break;
    case SLURM_DONE:
        snprintf(msg, sizeof msg, "Slurm job %" PRIu64 " completed but left "
                 "no result in the spool (is it shared with the compute "
                 "nodes?)", ji->id);
        break;
    default:
        snprintf(msg, sizeof msg, "Slurm job %" PRIu64 " ended %s (exit code "
                 "%d, signal %d, reason %s) without a result", ji->id,
                 ji->state, ji->exit_code, ji->exit_signal, ji->reason);
        break;
    }
    out->error = strdup(msg);
}

/* The monitor's last squeue says the job waits or runs: its phase, else
 * SLURM_UNKNOWN (ended, or not listed yet: scontrol is asked). */
static slurm_phase cached_phase(agent *a, uint64_t id)
{
    slurm_phase p = SLURM_UNKNOWN;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; a->slurm && i < a->slurm->n_queue; i++)
        if (a->slurm->queue[i].id == id &&
            (a->slurm->queue[i].phase == SLURM_WAITING ||
             a->slurm->queue[i].phase == SLURM_RUNNING))
            p = a->slurm->queue[i].phase;
    pthread_mutex_unlock(&a->mu);
    return p;
}

/* `scontrol show job`: 0 with *ji, 1 Slurm no longer knows it, -1 no
 * answer. */
static int cmd_job(const node_config *cfg, uint64_t id, slurm_jobinfo *ji)
{
    (void)cfg;
    char num[24], err[200];
    snprintf(num, sizeof num, "%" PRIu64, id);
    const char *argv[] = { "scontrol", "show", "job", "-o", num, NULL };
    cmd_out c;
    int ran = cmd_run(argv, &c), rc = -1;
    if (ran == 0 && c.status != 0 && strstr(c.line, "Invalid job id"))
        rc = 1;
    else if (ran == 0 && c.status == 0 &&
             slurm_parse_job(c.out ? c.out : "", c.out_len, ji, err,
                             sizeof err) == 0)
        rc = 0;
    cmd_free(&c);
    return rc;
}

const slurm_backend slurm_commands = {
    .name = "commands",
    .capacity = cmd_capacity,
    .queue = cmd_queue,
    .job = cmd_job,
    .submit = cmd_submit,
    .cancel = cmd_cancel,
};

/* A job's final state from the accounting database: 1, or 0 when sacct
 * does not know it (yet) or fails. */
static int sacct_job(uint64_t id, slurm_jobinfo *ji)
{
    char num[24], err[200];
    snprintf(num, sizeof num, "%" PRIu64, id);
    const char *argv[] = { "sacct", "-n", "-P", "-X", "-j", num, "-o",
                           "JobID,JobName,State,ExitCode,Reason,ElapsedRaw",
                           NULL };
    cmd_out c;
    int ok = cmd_run(argv, &c) == 0 && c.status == 0 &&
             slurm_parse_sacct(c.out ? c.out : "", c.out_len, id, ji, err,
                               sizeof err) == 0 &&
             ji->phase != SLURM_WAITING && ji->phase != SLURM_RUNNING &&
             ji->phase != SLURM_UNKNOWN;
    cmd_free(&c);
    return ok;
}

/* A job scontrol says has ended, as the accounting database has it:
 * slurmctld hands the end to slurmdbd a moment later, so sacct is asked a
 * few times. Its state and ElapsedRaw (what Slurm charged the account)
 * are said in the job's log, and the elapsed time is the job's run time
 * when the step left no result of its own. 1 with *ji, or 0 (the
 * gateway's own measure then). */
static int accounted(agent *a, const job_slot *s, uint64_t id, slurm_jobinfo *ji)
{
    for (int i = 0; i < SACCT_TRIES; i++) {
        if (sacct_job(id, ji)) {
            char d[300];
            snprintf(d, sizeof d, "sacct: Slurm job %" PRIu64 " %s, elapsed %"
                     PRIu64 " s", id, ji->state, ji->elapsed_s);
            agent_say(a, "accounted", s, NULL, d, -1);
            return 1;
        }
        if (agent_sleep(a, 1000))
            break;
    }
    return 0;
}

/* Does the cluster keep accounting (scontrol show config)? */
static int accounting_on(void)
{
    const char *argv[] = { "scontrol", "show", "config", NULL };
    cmd_out c;
    int on = cmd_run(argv, &c) == 0 && c.status == 0 &&
             slurm_config_accounting(c.out ? c.out : "", c.out_len);
    cmd_free(&c);
    return on;
}

/* One look at the job: 1 when it has ended (out filled), 0 not yet. */
static int look(agent *a, const job_slot *s, const char *dir, uint64_t id,
                uint64_t *started, slurm_outcome *out)
{
    slurm_phase cached = cached_phase(a, id);
    if (cached != SLURM_UNKNOWN) {
        if (cached == SLURM_RUNNING && !*started)
            *started = mono_ms();
        return 0;
    }
    slurm_jobinfo ji;
    int rc = backend_of(&a->cfg)->job(&a->cfg, id, &ji);
    if (rc == 1) {
        /* Purged (MinJobAge) while the gateway was away: sacct, where the
         * cluster keeps accounting, else the spool says. */
        if (a->slurm->accounting && sacct_job(id, &ji)) {
            ended(dir, &ji, ji.has_elapsed ? ji.elapsed_s * 1000u
                            : *started ? mono_ms() - *started : 0, out);
            return 1;
        }
        memset(&ji, 0, sizeof ji);
        ji.id = id;
        snprintf(ji.state, sizeof ji.state, "UNKNOWN");
        snprintf(ji.reason, sizeof ji.reason, "Slurm no longer knows it");
        ji.phase = SLURM_FAILED;
        ended(dir, &ji, 0, out);
        return 1;
    }
    if (rc != 0)
        return 0;   /* slurmctld away: the monitor says so; wait */
    if (ji.phase == SLURM_RUNNING && !*started)
        *started = mono_ms();
    if (ji.phase == SLURM_WAITING || ji.phase == SLURM_RUNNING ||
        ji.phase == SLURM_UNKNOWN)
        return 0;
    if (ji.phase == SLURM_RETRY && strcmp(ji.state, "REQUEUED") == 0)
        scancel(a, id);   /* requeued by Slurm itself: it must not run */
    uint64_t run_ms = *started ? mono_ms() - *started : 0;
    if (ji.has_elapsed)   /* slurmrestd's start and end: what Slurm charged */
        run_ms = ji.elapsed_s * 1000u;
    slurm_jobinfo acct;
    if (s->job && a->slurm->accounting && accounted(a, s, id, &acct) &&
        acct.has_elapsed)
        run_ms = acct.elapsed_s * 1000u;
    ended(dir, &ji, run_ms, out);
    return 1;
}

/* Does sbatch's error say slurmctld is away rather than that it refused
 * the job? */
static int unreachable(const char *why)
{
    static const char *const words[] = { "contact slurm controller",
        "Unable to contact", "Socket timed out", "Connection refused",
        "Zero Bytes were transmitted", "no answer in", "did not run",
        "slurmctld does not answer", "slurmrestd does not answer",
        "refuses this gateway (HTTP", NULL };
    for (size_t i = 0; words[i]; i++)
        if (strstr(why, words[i]))
            return 1;
    return 0;
}

/* sbatch, and again every few seconds while slurmctld is away (a job that
 * came while the outage was not yet seen waits for it); a refusal is
 * final. 0, or -1 with why (also when the job was withdrawn meanwhile). */
static int submit_when_up(agent *a, const job_slot *s, const char *dir,
                          const char *name, const slurm_request *rq,
                          uint64_t *id, char *why, size_t n)
{
    int said = 0;
    for (;;) {
        if (submit(a, dir, name, rq, id, why, n) == 0)
            return 0;
        if (!unreachable(why) || stop_of(a, s))
            return -1;
        if (!said++)
            agent_say(a, "waiting", s, NULL, why, -1);
        agent_sleep(a, 3000);
    }
}

void slurm_job_run(agent *a, job_slot *s, const slurm_request *rq,
                   slurm_outcome *out)
{
    slurm_gw *g = a->slurm;
    char dir[PATH_MAX + 40], name[80], why[600];
    memset(out, 0, sizeof *out);
    job_dir(g, dir, sizeof dir, s->job, s->attempt);
    slurm_job_name(name, sizeof name, s->job, s->attempt);
    uint64_t id = s->slurm_id;
    if (!id) {
        slurm_capacity cap;
        pthread_mutex_lock(&a->mu);
        cap = g->cap;
        pthread_mutex_unlock(&a->mu);
        if (cap.usable && (rq->cpus > cap.max_node_cpus ||
                           rq->memory_mb > cap.max_node_mem_mb ||
                           rq->gpus > cap.max_node_gpus)) {
            snprintf(why, sizeof why, "no node of Slurm partition \"%s\" has "
                     "%u CPUs, %u MiB and %u GPUs (the largest: %u CPUs, "
                     "%" PRIu64 " MiB, %u GPUs)", a->cfg.slurm_partition,
                     rq->cpus, rq->memory_mb, rq->gpus, cap.max_node_cpus,
                     cap.max_node_mem_mb, cap.max_node_gpus);
            out->kind = SLURM_OUT_DECLINE;
            out->error = strdup(why);
            return;
        }
        int refused = 0;
        if (prepare(a, s, dir, why, sizeof why) != 0 ||
            (refused = submit_when_up(a, s, dir, name, rq, &id, why,
                                      sizeof why)) != 0) {
            remove_dir(dir);
            if (refused && !stop_of(a, s))
                refuse_all(a);
            out->kind = stop_of(a, s) == 2 ? SLURM_OUT_LEFT
                      : stop_of(a, s) == 1 ? SLURM_OUT_WITHDRAWN
                      : SLURM_OUT_DECLINE;
            out->error = strdup(why);
            return;
        }
        char num[24];
        snprintf(num, sizeof num, "%" PRIu64 "\n", id);
        (void)!write_text(dir, "slurm_id", num);   /* else found by name */
        snprintf(why, sizeof why, "as Slurm job %" PRIu64, id);
        agent_say(a, "submitted", s, NULL, why, -1);
    }
    uint64_t started = 0;
    long every = (long)(a->cfg.slurm_poll_s * 1000);
    for (;;) {
        int stop = stop_of(a, s);
        if (stop == 1) {
            scancel(a, id);
            out->kind = SLURM_OUT_WITHDRAWN;
            return;
        }
        if (stop == 2) {   /* the gateway stops; the job goes on */
            out->kind = SLURM_OUT_LEFT;
            return;
        }
        if (look(a, s, dir, id, &started, out))
            return;
        agent_sleep(a, every);
    }
}

/* ---- start-up: the command, a probe job, jobs left running ---- */

/* A job that runs `rhizos-node slurm-run` on a compute node: it proves the
 * command, the data folder and the spool are all there, and shared. */
static int probe(agent *a, char *why, size_t n)
{
    slurm_gw *g = a->slurm;
    char dir[PATH_MAX + 40];
    snprintf(dir, sizeof dir, "%s/probe-%ld", g->spool, (long)getpid());
    remove_dir(dir);
    job_slot s = { .a = a };
    s.assignment = cJSON_CreateObject();
    cJSON_AddTrueToObject(s.assignment, "probe");
    slurm_request rq = { .cpus = 1, .memory_mb = 64, .timeout_s = 60 };
    uint64_t id = 0;
    int rc = prepare(a, &s, dir, why, n);
    cJSON_Delete(s.assignment);
    if (rc == 0)
        rc = submit(a, dir, "rhizos-probe", &rq, &id, why, n);
    uint64_t t0 = mono_ms(), started = 0;
    slurm_outcome out = {0};
    int done = 0;
    while (rc == 0 && !(done = look(a, &s, dir, id, &started, &out)) &&
           mono_ms() - t0 < PROBE_WAIT_S * 1000u && !agent_stopping(a))
        agent_sleep(a, 500);
    if (rc == 0 && !done) {
        scancel(a, id);
        snprintf(why, n, "the probe job (Slurm job %" PRIu64 ") did not run "
                 "within %d s", id, PROBE_WAIT_S);
        rc = -1;
    } else if (rc == 0) {
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(out.result, "probe");
        if (!cJSON_IsString(p) || strcmp(p->valuestring, "ok") != 0) {
            char *log = read_text(dir, "slurm.out", 4096);
            snprintf(why, n, "the probe job (Slurm job %" PRIu64 ") left no "
                     "answer in %s: the spool must be a folder the compute "
                     "nodes share, with %s and %s reachable there%s%.300s",
                     id, g->spool, g->command, a->o->data_dir,
                     log ? "; its output: " : "", log ? log : "");
            free(log);
            rc = -1;
        }
    }
    cJSON_Delete(out.result);
    free(out.error);
    remove_dir(dir);
    return rc;
}

/* The Slurm id of a spool folder's job: its slurm_id file, else the newest
 * job of that name submitted by this node (its comment: sbatch answered,
 * the gateway died before writing the file). */
static uint64_t find_id(const agent *a, const char *dir, uint64_t job,
                        uint32_t attempt, const slurm_qjob *q, size_t nq)
{
    char *text = read_text(dir, "slurm_id", 64);
    uint64_t id = 0, named = 0;
    if (text)
        (void)!slurm_parse_sbatch(text, strlen(text), &id);
    free(text);
    char mine[64];
    snprintf(mine, sizeof mine, "rhizos-node:%s", a->node_id);
    for (size_t i = 0; !id && i < nq; i++)
        if (q[i].job == job && q[i].attempt == attempt &&
            strcmp(q[i].comment, mine) == 0 && q[i].id > named)
            named = q[i].id;
    return id ? id : named;
}

/* One spool folder at start-up: its job taken up again in a free slot
 * (never submitted again), or its folder removed when Slurm never had it. */
static void recover_one(agent *a, const char *name, const slurm_qjob *q,
                        size_t nq)
{
    char dir[PATH_MAX + 300], jn[80];
    uint64_t job;
    uint32_t attempt;
    snprintf(jn, sizeof jn, "rhizos-%.60s", name);
    if (slurm_job_name_parse(jn, &job, &attempt) != 0)
        return;
    snprintf(dir, sizeof dir, "%s/%s", a->slurm->spool, name);
    uint64_t id = find_id(a, dir, job, attempt, q, nq);
    char *text = read_text(dir, "assignment.json", RESULT_MAX);
    cJSON *asg = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!id || !asg || a->need_register) {
        /* Never submitted, unreadable, or of a registration that is gone
         * (the orchestrator gave those jobs back): nothing to take up. */
        if (id)
            scancel(a, id);
        cJSON_Delete(asg);
        remove_dir(dir);
        return;
    }
    pthread_mutex_lock(&a->mu);
    job_slot *s = NULL;
    for (size_t i = 0; i < a->n_slots && !s; i++)
        if (!a->slots[i].busy)
            s = &a->slots[i];
    if (s) {
        memset(s, 0, sizeof *s);
        s->a = a;
        s->busy = 1;
        s->job = job;
        s->attempt = attempt;
        s->generation = a->generation;
        s->assignment = asg;
        s->slurm_id = id;
    }
    pthread_mutex_unlock(&a->mu);
    if (!s) {
        cJSON_Delete(asg);
        return;   /* more than the slots: left for the next start */
    }
    char why[120];
    snprintf(why, sizeof why, "Slurm job %" PRIu64 " taken up again", id);
    agent_say(a, "recovered", s, NULL, why, -1);
    (void)agent_start_slot(a, s, asg);
}

static void recover(agent *a)
{
    slurm_qjob *q = NULL;
    size_t nq = 0;
    char why[300];
    if (queue_now(a, &q, &nq, why, sizeof why) != 0) {
        fprintf(stderr, "rhizos-node: slurm: cannot list jobs to recover "
                "(%s); relying on the spool's records\n", why);
    }
    DIR *d = opendir(a->slurm->spool);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] >= '1' && e->d_name[0] <= '9')
            recover_one(a, e->d_name, q, nq);
    if (d)
        closedir(d);
    free(q);
}

int slurm_gw_start(agent *a, char *why, size_t n)
{
    slurm_gw *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(why, n, "out of memory");
        return -1;
    }
    g->a = a;
    a->slurm = g;
    if (a->cfg.slurm_command) {
        snprintf(g->command, sizeof g->command, "%s", a->cfg.slurm_command);
    } else {
        ssize_t l = readlink("/proc/self/exe", g->command,
                             sizeof g->command - 1);
        if (l <= 0) {
            snprintf(why, n, "cannot tell this program's path (set [backend] "
                     "command)");
            return -1;
        }
        g->command[l] = '\0';
    }
    snprintf(g->spool, sizeof g->spool, "%s/%s", a->cfg.slurm_spool,
             a->node_id);
    if (node_mkdirs(g->spool) != 0) {
        snprintf(why, n, "spool %s: %s", g->spool, strerror(errno));
        return -1;
    }
    slurm_capacity cap;
    char w[512];
    if (capacity_now(&a->cfg, &cap, w, sizeof w) != 0) {
        snprintf(why, n, "%s", w);
        return -1;
    }
    g->cap = cap;
    memcpy(g->why, w, sizeof g->why);
    /* Through slurmrestd the job's own start and end give its run time;
     * sacct is the commands'. */
    g->accounting = !a->cfg.slurm_rest && accounting_on();
    if (!a->need_register) {
        /* Kept from the last run: taken as what it advertised (a change
         * from here on is advertised again). */
        pthread_mutex_lock(&adv_mu);
        advertised = cap;
        pthread_mutex_unlock(&adv_mu);
    }
    if (w[0])
        fprintf(stderr, "rhizos-node: slurm: not taking work yet: %s\n", w);
    if (probe(a, why, n) != 0)
        return -1;
    return 0;
}

void slurm_gw_run(agent *a)
{
    recover(a);
    a->slurm->monitoring =
        pthread_create(&a->slurm->monitor, NULL, monitor_main, a->slurm) == 0;
}

void slurm_gw_free(agent *a)
{
    if (!a->slurm)
        return;
    if (a->slurm->monitoring)
        pthread_join(a->slurm->monitor, NULL);
    free(a->slurm->queue);
    free(a->slurm);
    a->slurm = NULL;
}

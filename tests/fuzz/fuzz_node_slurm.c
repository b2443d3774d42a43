/* libFuzzer target: rhizos-node's Slurm readers (server/node/
 * slurm_parse.c, and slurm_rest.c's readers of slurmrestd's JSON). The
 * first byte picks the reader (READERS). What is kept holds its
 * invariants: a partition's free counts never exceed its totals, a queue
 * entry names a job and attempt from 1, a job's exit code is a byte, and
 * an error line is printable and bounded; sacct's line is job 1's, its
 * state one word. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slurm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A partition's free counts never exceed its totals; a refusal says why
 * and keeps nothing. */
static void check_capacity(int rc, const slurm_capacity *c, const char *err)
{
    if (rc == 0) {
        if (c->usable > c->nodes || c->cpus_free > c->cpus ||
            c->mem_free_mb > c->mem_mb || c->gpus_free > c->gpus ||
            c->max_node_cpus > c->cpus)
            abort();
    } else if (!err[0] || c->nodes) {
        abort();
    }
}

/* Each queue entry names a job and attempt from 1; a refusal says why and
 * keeps nothing. Frees v. */
static void check_queue(int rc, slurm_qjob *v, size_t k, const char *err)
{
    if (rc == 0) {
        for (size_t i = 0; i < k; i++)
            if (!v[i].job || !v[i].attempt || !v[i].id)
                abort();
    } else if (v || k || !err[0]) {
        abort();
    }
    free(v);
}

/* A job read as job 1 is job 1, its exit code and signal bytes, its state
 * named. */
static int job_bad(const slurm_jobinfo *ji)
{
    return ji->id != 1 || ji->exit_code > 255 || ji->exit_signal > 255 ||
           !ji->state[0];
}

static void read_nodes(const char *text, size_t n)
{
    char err[256] = "";
    slurm_capacity c;
    check_capacity(slurm_parse_nodes(text, n, "debug", &c, err, sizeof err),
                   &c, err);
}

static void read_queue(const char *text, size_t n)
{
    char err[256] = "";
    slurm_qjob *v = NULL;
    size_t k = 0;
    check_queue(slurm_parse_queue(text, n, &v, &k, err, sizeof err), v, k,
                err);
}

static void read_job(const char *text, size_t n)
{
    char err[256] = "";
    slurm_jobinfo ji;
    if (slurm_parse_job(text, n, &ji, err, sizeof err) == 0 &&
        (ji.exit_code > 255 || ji.exit_signal > 255 || !ji.state[0]))
        abort();
}

static void read_sbatch(const char *text, size_t n)
{
    uint64_t id = 0;
    if (slurm_parse_sbatch(text, n, &id) == 0 && id == 0)
        abort();
}

/* sacct's line of job 1, its state one word. */
static void read_sacct(const char *text, size_t n)
{
    char err[256] = "";
    slurm_jobinfo ji;
    if (slurm_parse_sacct(text, n, 1, &ji, err, sizeof err) == 0 &&
        (job_bad(&ji) || strchr(ji.state, ' ')))
        abort();
    (void)slurm_config_accounting(text, n);
}

static void read_error_line(const char *text, size_t n)
{
    char line[64];
    slurm_error_line(line, sizeof line, text, n);
    size_t l = strlen(line);
    for (size_t i = 0; i < l; i++)
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
            abort();
    if (l >= sizeof line)
        abort();
}

/* slurmrestd: GET nodes, and the partition's state from the same text. */
static void rest_nodes(const char *text, size_t n)
{
    char err[256] = "";
    slurm_capacity c;
    check_capacity(slurm_rest_parse_nodes(text, n, "debug", &c, err,
                                          sizeof err), &c, err);
    (void)slurm_rest_parse_partition(text, n, "debug", err, sizeof err);
}

static void rest_jobs(const char *text, size_t n)
{
    char err[256] = "";
    slurm_qjob *v = NULL;
    size_t k = 0;
    check_queue(slurm_rest_parse_jobs(text, n, "root", &v, &k, err,
                                      sizeof err), v, k, err);
}

static void rest_job(const char *text, size_t n)   /* GET job/1 */
{
    char err[256] = "";
    slurm_jobinfo ji;
    if (slurm_rest_parse_job(text, n, 1, &ji, err, sizeof err) == 0 &&
        job_bad(&ji))
        abort();
}

/* POST job/submit, and any reply's errors. */
static void rest_submit(const char *text, size_t n)
{
    char err[256] = "";
    uint64_t id = 0;
    char words[200];
    if (slurm_rest_parse_submit(text, n, &id, err, sizeof err) == 0 && !id)
        abort();
    (void)slurm_rest_errors(text, n, words, sizeof words);
    for (size_t i = 0; words[i]; i++)
        if ((unsigned char)words[i] < 0x20)
            abort();
}

/* By the first byte, modulo their count: the commands' readers, then
 * slurmrestd's (the seeds' first bytes pick them in this order). */
static void (*const READERS[])(const char *text, size_t n) = {
    read_nodes, read_queue, read_job, read_sbatch, read_sacct,
    read_error_line, rest_nodes, rest_jobs, rest_job, rest_submit,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    READERS[data[0] % (sizeof READERS / sizeof READERS[0])](
        (const char *)data + 1, size - 1);
    return 0;
}

/* libFuzzer target: rhizos-node's Slurm readers (server/node/
 * slurm_parse.c, and slurm_rest.c's readers of slurmrestd's JSON). The
 * first byte picks the reader. What is kept holds its
 * invariants: a partition's free counts never exceed its totals, a queue
 * entry names a job and attempt from 1, a job's exit code is a byte, and
 * an error line is printable and bounded; sacct's line is job 1's, its
 * state one word. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slurm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The commands' readers (0 to 5). */
static void command_readers(unsigned pick, const char *text, size_t n)
{
    char err[256] = "";
    switch (pick) {
    case 0: {
        slurm_capacity c;
        if (slurm_parse_nodes(text, n, "debug", &c, err, sizeof err) == 0) {
            if (c.usable > c.nodes || c.cpus_free > c.cpus ||
                c.mem_free_mb > c.mem_mb || c.gpus_free > c.gpus ||
                c.max_node_cpus > c.cpus)
                abort();
        } else if (!err[0] || c.nodes) {
            abort();
        }
        break;
    }
    case 1: {
        slurm_qjob *v = NULL;
        size_t k = 0;
        if (slurm_parse_queue(text, n, &v, &k, err, sizeof err) == 0) {
            for (size_t i = 0; i < k; i++)
                if (!v[i].job || !v[i].attempt || !v[i].id)
                    abort();
        } else if (v || k || !err[0]) {
            abort();
        }
        free(v);
        break;
    }
    case 2: {
        slurm_jobinfo ji;
        if (slurm_parse_job(text, n, &ji, err, sizeof err) == 0 &&
            (ji.exit_code > 255 || ji.exit_signal > 255 || !ji.state[0]))
            abort();
        break;
    }
    case 4: {   /* sacct's line of job 1 */
        slurm_jobinfo ji;
        if (slurm_parse_sacct(text, n, 1, &ji, err, sizeof err) == 0 &&
            (ji.id != 1 || ji.exit_code > 255 || ji.exit_signal > 255 ||
             !ji.state[0] || strchr(ji.state, ' ')))
            abort();
        (void)slurm_config_accounting(text, n);
        break;
    }
    case 3: {
        uint64_t id = 0;
        if (slurm_parse_sbatch(text, n, &id) == 0 && id == 0)
            abort();
        break;
    }
    default: {
        char line[64];
        slurm_error_line(line, sizeof line, text, n);
        size_t l = strlen(line);
        for (size_t i = 0; i < l; i++)
            if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                abort();
        if (l >= sizeof line)
            abort();
        break;
    }
    }
}

/* slurmrestd's readers (6 to 9). */
static void rest_readers(unsigned pick, const char *text, size_t n)
{
    char err[256] = "";
    switch (pick) {
    case 6: {   /* slurmrestd: GET nodes */
        slurm_capacity c;
        if (slurm_rest_parse_nodes(text, n, "debug", &c, err, sizeof err) == 0) {
            if (c.usable > c.nodes || c.cpus_free > c.cpus ||
                c.mem_free_mb > c.mem_mb || c.gpus_free > c.gpus ||
                c.max_node_cpus > c.cpus)
                abort();
        } else if (!err[0] || c.nodes) {
            abort();
        }
        (void)slurm_rest_parse_partition(text, n, "debug", err, sizeof err);
        break;
    }
    case 7: {   /* GET jobs */
        slurm_qjob *v = NULL;
        size_t k = 0;
        if (slurm_rest_parse_jobs(text, n, "root", &v, &k, err, sizeof err) == 0) {
            for (size_t i = 0; i < k; i++)
                if (!v[i].job || !v[i].attempt || !v[i].id)
                    abort();
        } else if (v || k || !err[0]) {
            abort();
        }
        free(v);
        break;
    }
    case 8: {   /* GET job/1 */
        slurm_jobinfo ji;
        if (slurm_rest_parse_job(text, n, 1, &ji, err, sizeof err) == 0 &&
            (ji.id != 1 || ji.exit_code > 255 || ji.exit_signal > 255 ||
             !ji.state[0]))
            abort();
        break;
    }
    case 9: {   /* POST job/submit, and any reply's errors */
        uint64_t id = 0;
        char words[200];
        if (slurm_rest_parse_submit(text, n, &id, err, sizeof err) == 0 && !id)
            abort();
        (void)slurm_rest_errors(text, n, words, sizeof words);
        for (size_t i = 0; words[i]; i++)
            if ((unsigned char)words[i] < 0x20)
                abort();
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0] % 10u;
    if (pick >= 6)
        rest_readers(pick, (const char *)data + 1, size - 1);
    else
        command_readers(pick, (const char *)data + 1, size - 1);
    return 0;
}

/* rhizos-node's Slurm readers (server/node/slurm_parse.c): scontrol's node
 * and job lines as Slurm 22.05 prints them, squeue's lines, sbatch's
 * answer, job names, the state map and sbatch's --time; then malformed
 * and random input, which must be refused or read without overrunning
 * (ASan watches), never half-kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slurm.h"
#include "slurm_expect.h"

/* As `scontrol show node -o` printed it on the CI's cluster (OS= holds
 * spaces), plus a drained node, a GPU node and a node of another
 * partition. */
static const char NODES[] =
    "NodeName=vm Arch=x86_64 CoresPerSocket=1  CPUAlloc=1 CPUEfctv=2 "
    "CPUTot=2 CPULoad=4.60 AvailableFeatures=(null) ActiveFeatures=(null) "
    "Gres=(null) NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8 "
    "OS=Linux 6.18.44-fc-v1272 #1 SMP PREEMPT_DYNAMIC @0  RealMemory=23081 "
    "AllocMem=100 FreeMem=20230 Sockets=2 Boards=1 State=MIXED "
    "ThreadsPerCore=1 TmpDisk=0 Weight=1 Owner=N/A MCS_label=N/A "
    "Partitions=debug  BootTime=2026-12-04T18:46:48 "
    "CfgTRES=cpu=2,mem=23081M,billing=2 AllocTRES=cpu=1,mem=100M "
    "CapWatts=n/a\n"
    "NodeName=d1 CPUAlloc=0 CPUTot=64 RealMemory=512000 AllocMem=0 "
    "State=IDLE+DRAIN Partitions=debug,long Gres=gpu:8 "
    "Reason=disk is failing [root@2026-12-05T06:00:00]\n"
    "NodeName=g1 CPUAlloc=8 CPUTot=32 RealMemory=256000 AllocMem=1000 "
    "State=ALLOCATED Partitions=long,debug Gres=gpu:a100:4(S:0-1),gpu:t4:1 "
    "AllocTRES=cpu=8,mem=1000M,gres/gpu=3\n"
    "NodeName=o1 CPUAlloc=0 CPUTot=8 RealMemory=8000 State=IDLE "
    "Partitions=other\n"
    "NodeName=x1 CPUAlloc=0 CPUTot=8 RealMemory=8000 State=IDLE* "
    "Partitions=debug\n";

static void nodes_capacity(void **state)
{
    (void)state;
    slurm_capacity c;
    char err[256] = "";
    assert_int_equal(slurm_parse_nodes(NODES, strlen(NODES), "debug", &c,
                                       err, sizeof err), 0);
    expect_debug_capacity(&c);
    /* Another partition sees only its own nodes. */
    assert_int_equal(slurm_parse_nodes(NODES, strlen(NODES), "other", &c,
                                       err, sizeof err), 0);
    assert_int_equal(c.nodes, 1);
    assert_int_equal(c.cpus, 8);
    /* A partition named in no line: nothing, not an error. */
    assert_int_equal(slurm_parse_nodes(NODES, strlen(NODES), "deb", &c,
                                       err, sizeof err), 0);
    assert_int_equal(c.nodes, 0);
    assert_int_equal(slurm_parse_nodes("", 0, "debug", &c, err, sizeof err), 0);
    assert_int_equal(c.nodes, 0);
}

static void nodes_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "CPUTot=2 Partitions=debug\n",                         /* no name */
        "NodeName=a CPUTot=two CPUAlloc=0 RealMemory=1 Partitions=debug\n",
        "NodeName=a CPUTot=-2 CPUAlloc=0 RealMemory=1 Partitions=debug\n",
        "NodeName=a CPUTot=2 RealMemory=1 Partitions=debug\n", /* no alloc */
        "NodeName=a CPUTot=2 CPUAlloc=0 Partitions=debug\n",   /* no mem */
        "NodeName=a CPUTot=99999999999 CPUAlloc=0 RealMemory=1 Partitions=debug\n",
        "NodeName=a CPUTot=2 CPUAlloc=0 RealMemory=1 AllocMem=x Partitions=debug\n",
        "NodeName=a CPUTot=2 CPUAlloc=0 RealMemory=1 Gres=gpu:a:b:c Partitions=debug\n",
        "NodeName=a CPUTot=2 CPUAlloc=0 RealMemory=1 Gres=gpu:99999999999 Partitions=debug\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slurm_capacity c;
        char err[256] = "";
        assert_int_equal(slurm_parse_nodes(bad[i], strlen(bad[i]), "debug", &c,
                                           err, sizeof err), -1);
        assert_true(err[0]);
        assert_int_equal(c.nodes, 0);   /* nothing half-kept */
    }
    /* A NUL inside is refused, not read as the end. */
    static const char nul[] = "NodeName=a CPUTot=2\0 CPUAlloc=0 RealMemory=1 "
                              "Partitions=debug\n";
    slurm_capacity c;
    char err[256];
    assert_int_equal(slurm_parse_nodes(nul, sizeof nul - 1, "debug", &c, err,
                                       sizeof err), -1);
}

static void states(void **state)
{
    (void)state;
    assert_int_equal(slurm_state_phase("PENDING"), SLURM_WAITING);
    assert_int_equal(slurm_state_phase("RUNNING"), SLURM_RUNNING);
    assert_int_equal(slurm_state_phase("COMPLETING"), SLURM_RUNNING);
    assert_int_equal(slurm_state_phase("COMPLETED"), SLURM_DONE);
    assert_int_equal(slurm_state_phase("FAILED"), SLURM_FAILED);
    assert_int_equal(slurm_state_phase("OUT_OF_MEMORY"), SLURM_FAILED);
    assert_int_equal(slurm_state_phase("TIMEOUT"), SLURM_TIMEOUT);
    assert_int_equal(slurm_state_phase("CANCELLED"), SLURM_RETRY);
    assert_int_equal(slurm_state_phase("CANCELLED by 0"), SLURM_RETRY);
    assert_int_equal(slurm_state_phase("NODE_FAIL"), SLURM_RETRY);
    assert_int_equal(slurm_state_phase("PREEMPTED"), SLURM_RETRY);
    assert_int_equal(slurm_state_phase("CANCEL"), SLURM_UNKNOWN);
    assert_int_equal(slurm_state_phase("running"), SLURM_UNKNOWN);
    assert_int_equal(slurm_state_phase(""), SLURM_UNKNOWN);
    assert_int_equal(slurm_state_phase(NULL), SLURM_UNKNOWN);
    assert_string_equal(slurm_phase_name(SLURM_RETRY), "retry");
    assert_string_equal(slurm_phase_name((slurm_phase)99), "unknown");
}

static void names(void **state)
{
    (void)state;
    uint64_t j;
    uint32_t a;
    char buf[64];
    slurm_job_name(buf, sizeof buf, 123, 4);
    assert_string_equal(buf, "rhizos-123-4");
    assert_int_equal(slurm_job_name_parse(buf, &j, &a), 0);
    assert_int_equal(j, 123);
    assert_int_equal(a, 4);
    assert_int_equal(slurm_job_name_parse("rhizos-9007199254740992-4294967295",
                                          &j, &a), 0);
    assert_int_equal(a, UINT32_MAX);
    static const char *const bad[] = {
        "rhizos-0-1", "rhizos-1-0", "rhizos-01-1", "rhizos-1-01", "rhizos-1",
        "rhizos--1", "rhizos-1-", "rhizos-1-1x", "rhizos-+1-1", "rhizos- 1-1",
        "rhizos-9007199254740993-1", "rhizos-1-4294967296", "Rhizos-1-1",
        "x.sh", "", "rhizos-1-1-1", "rhizos-99999999999999999999999-1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(slurm_job_name_parse(bad[i], &j, &a), -1);
    assert_int_equal(slurm_job_name_parse(NULL, &j, &a), -1);
}

static void queue(void **state)
{
    (void)state;
    static const char q[] =
        "41|rhizos-7-1|RUNNING\n"
        "42|x.sh|PENDING\n"                       /* not ours */
        "43_1|rhizos-8-1|PENDING\n"               /* an array: never ours */
        "\n"
        "44|rhizos-8-2|CANCELLED\r\n"
        "45|rhizos-9-1|SOMETHING_NEW";
    slurm_qjob *v = NULL;
    size_t n = 0;
    char err[256] = "";
    assert_int_equal(slurm_parse_queue(q, strlen(q), &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(v[0].id, 41);
    assert_int_equal(v[0].job, 7);
    assert_int_equal(v[0].phase, SLURM_RUNNING);
    assert_int_equal(v[1].id, 44);
    assert_int_equal(v[1].attempt, 2);
    assert_int_equal(v[1].phase, SLURM_RETRY);
    assert_string_equal(v[1].state, "CANCELLED");
    assert_string_equal(v[1].comment, "");
    assert_int_equal(v[2].phase, SLURM_UNKNOWN);
    free(v);
    assert_int_equal(slurm_parse_queue("", 0, &v, &n, err, sizeof err), 0);
    assert_null(v);
    assert_int_equal(n, 0);
    static const char c4[] = "41|rhizos-7-1|RUNNING|rhizos-node:ab12\n"
                             "42|rhizos-7-2|PENDING|a|b\n";
    assert_int_equal(slurm_parse_queue(c4, strlen(c4), &v, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0].comment, "rhizos-node:ab12");
    assert_string_equal(v[1].comment, "a|b");
    free(v);
    static const char *const bad[] = { "41 rhizos-7-1 RUNNING",
                                       "41|rhizos-7-1", "x|rhizos-7-1|RUNNING",
                                       "00|rhizos-4-1|PENDING" };   /* fuzz */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(slurm_parse_queue(bad[i], strlen(bad[i]), &v, &n,
                                           err, sizeof err), -1);
        assert_null(v);
        assert_int_equal(n, 0);
    }
}

static void job_info(void **state)
{
    (void)state;
    static const char j[] =
        "JobId=12 JobName=rhizos-5-2 UserId=root(0) GroupId=root(0) "
        "JobState=CANCELLED Reason=None Dependency=(null) ExitCode=0:15 "
        "RunTime=00:00:03 Command=/tmp/x.sh /bin/echo hi there "
        "WorkDir=/tmp StdOut=/tmp/o.txt\n";
    slurm_jobinfo ji;
    char err[256];
    assert_int_equal(slurm_parse_job(j, strlen(j), &ji, err, sizeof err), 0);
    assert_int_equal(ji.id, 12);
    assert_string_equal(ji.name, "rhizos-5-2");
    assert_string_equal(ji.state, "CANCELLED");
    assert_int_equal(ji.phase, SLURM_RETRY);
    assert_string_equal(ji.reason, "None");
    assert_int_equal(ji.exit_code, 0);
    assert_int_equal(ji.exit_signal, 15);
    static const char *const bad[] = {
        "JobName=x JobState=RUNNING", "JobId=x JobState=RUNNING",
        "JobId=1 JobName=x", "JobId=1 JobState=", "JobId=1 JobState=FAILED ExitCode=1",
        "JobId=1 JobState=FAILED ExitCode=a:b", "JobId=1 JobState=FAILED ExitCode=300:0",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(slurm_parse_job(bad[i], strlen(bad[i]), &ji, err,
                                         sizeof err), -1);
}

/* sacct's line of a job that scontrol has forgotten, and whether the
 * cluster keeps accounting at all. */
static void sacct_and_config(void **state)
{
    (void)state;
    static const char t[] = "11|other|COMPLETED|0:0|None\n"
                            "12|rhizos-5-2|CANCELLED by 0|0:15|None\n";
    slurm_jobinfo ji;
    char err[256];
    assert_int_equal(slurm_parse_sacct(t, strlen(t), 12, &ji, err, sizeof err), 0);
    assert_string_equal(ji.state, "CANCELLED");
    assert_int_equal(ji.phase, SLURM_RETRY);
    assert_string_equal(ji.name, "rhizos-5-2");
    assert_int_equal(ji.exit_signal, 15);
    static const char f[] = "13|rhizos-6-1|FAILED|2:0|NonZeroExitCode";
    assert_int_equal(slurm_parse_sacct(f, strlen(f), 13, &ji, err, sizeof err), 0);
    assert_int_equal(ji.phase, SLURM_FAILED);
    assert_int_equal(ji.exit_code, 2);
    assert_string_equal(ji.reason, "NonZeroExitCode");
    assert_int_equal(ji.has_elapsed, 0);
    /* With ElapsedRaw: the run time Slurm accounted, in seconds. */
    static const char e[] = "15|rhizos-7-1|COMPLETED|0:0|None|42\n";
    assert_int_equal(slurm_parse_sacct(e, strlen(e), 15, &ji, err, sizeof err), 0);
    assert_int_equal(ji.phase, SLURM_DONE);
    assert_int_equal(ji.has_elapsed, 1);
    assert_int_equal(ji.elapsed_s, 42);
    static const char *const bad[] = { "", "12|x", "12|x||0:0|None", "12|x|FAILED|0|n",
                                       "12|x|FAILED|a:b|n", "12|x|FAILED|300:0|n",
                                       "14|x|FAILED|0:0|n", "12|x|FAILED|0:0|n|-3",
                                       "12|x|FAILED|0:0|n|1:02", "12|x|FAILED|0:0|n|99999999999" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(slurm_parse_sacct(bad[i], strlen(bad[i]), 12, &ji, err,
                                           sizeof err), -1);
    static const char none[] = "AccountingStorageHost   = (null)\n"
                               "AccountingStorageType   = accounting_storage/none\n";
    static const char dbd[] = "AccountingStorageType   = accounting_storage/slurmdbd\n";
    assert_int_equal(slurm_config_accounting(none, strlen(none)), 0);
    assert_int_equal(slurm_config_accounting(dbd, strlen(dbd)), 1);
    assert_int_equal(slurm_config_accounting("", 0), 0);
}

static void sbatch_and_args(void **state)
{
    (void)state;
    uint64_t id = 0;
    assert_int_equal(slurm_parse_sbatch("17\n", 3, &id), 0);
    assert_int_equal(id, 17);
    assert_int_equal(slurm_parse_sbatch("18;rhizos\n", 10, &id), 0);
    assert_int_equal(id, 18);
    assert_int_equal(slurm_parse_sbatch("", 0, &id), -1);
    assert_int_equal(slurm_parse_sbatch("0\n", 2, &id), -1);
    assert_int_equal(slurm_parse_sbatch("Submitted batch job 3\n", 22, &id), -1);
    char t[32];
    slurm_time_arg(t, sizeof t, 0);
    assert_string_equal(t, "");
    slurm_time_arg(t, sizeof t, 1);
    assert_string_equal(t, "2");
    slurm_time_arg(t, sizeof t, 60);
    assert_string_equal(t, "2");
    slurm_time_arg(t, sizeof t, 61);
    assert_string_equal(t, "3");
    slurm_time_arg(t, sizeof t, UINT32_MAX);
    assert_string_equal(t, "71582790");
    char e[64];
    static const char err1[] = "sbatch: error: invalid partition specified: x\n"
                               "sbatch: error: Batch job submission failed: "
                               "Invalid partition name specified\n\n";
    slurm_error_line(e, sizeof e, err1, strlen(err1));
    assert_string_equal(e, "Invalid partition name specified");
    slurm_error_line(e, sizeof e, "", 0);
    assert_string_equal(e, "");
    slurm_error_line(e, 8, "a\x01\x1b[31mbcdefghij", 16);
    assert_string_equal(e, "a[31mbc");
}

/* Random bytes and mutated real lines: every reader either refuses or
 * reads within bounds (ASan and UBSan watch the build in CI). */
static void fuzzish(void **state)
{
    (void)state;
    static const char *const seeds[] = { NODES, "41|rhizos-7-1|RUNNING\n",
        "JobId=12 JobName=rhizos-5-2 JobState=FAILED ExitCode=1:0\n",
        "17;c\n" };
    static const char alphabet[] = "=|:+*,()-_ \n\r\t0123456789NodeNameCPU"
                                   "TotAllocRealMemoryGresgpuStateJob";
    uint32_t seed = 12345;
    char buf[2048];
    for (int iter = 0; iter < 20000; iter++) {
        const char *s = seeds[iter % 4];
        size_t n = strlen(s);
        if (n > sizeof buf)
            n = sizeof buf;
        memcpy(buf, s, n);
        for (int k = 0; k < 1 + iter % 8; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % (n ? n : 1);
            seed = seed * 1103515245u + 12345u;
            char c = (iter & 16) ? (char)(seed >> 16)
                                 : alphabet[(seed >> 16) % (sizeof alphabet - 1)];
            if (n)
                buf[at] = c;
        }
        seed = seed * 1103515245u + 12345u;
        size_t len = (iter & 32) ? (seed >> 8) % (n + 1) : n;
        char *copy = malloc(len ? len : 1);   /* exact size: overruns show */
        memcpy(copy, buf, len);
        slurm_capacity c;
        slurm_qjob *v = NULL;
        size_t nq = 0;
        slurm_jobinfo ji;
        uint64_t id;
        char err[128];
        if (slurm_parse_nodes(copy, len, "debug", &c, err, sizeof err) == 0)
            assert_true(c.usable <= c.nodes && c.cpus_free <= c.cpus);
        if (slurm_parse_queue(copy, len, &v, &nq, err, sizeof err) == 0)
            for (size_t i = 0; i < nq; i++)
                assert_true(v[i].job >= 1 && v[i].attempt >= 1);
        free(v);
        (void)slurm_parse_job(copy, len, &ji, err, sizeof err);
        (void)slurm_parse_sbatch(copy, len, &id);
        (void)slurm_parse_sacct(copy, len, 1, &ji, err, sizeof err);
        (void)slurm_config_accounting(copy, len);
        slurm_error_line(err, sizeof err, copy, len);
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nodes_capacity),
        cmocka_unit_test(nodes_malformed),
        cmocka_unit_test(states),
        cmocka_unit_test(names),
        cmocka_unit_test(queue),
        cmocka_unit_test(job_info),
        cmocka_unit_test(sacct_and_config),
        cmocka_unit_test(sbatch_and_args),
        cmocka_unit_test(fuzzish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

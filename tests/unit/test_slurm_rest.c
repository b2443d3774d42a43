/* rhizos-node's slurmrestd readers and client (server/node/slurm_rest.c):
 * replies as 22.05's slurmrestd (openapi/v0.0.38) gives them on the CI's
 * cluster, trimmed to the fields read; then malformed and hostile ones,
 * which must be refused or read without overrunning (ASan watches), never
 * half-kept; the job description it sends; and the client against a tiny
 * fake slurmrestd on a unix socket for the replies no real one gives
 * (garbage, an endless body, 401, a dropped connection). The behaviour
 * through a real slurmrestd is tests/e2e/slurm.py's SlurmRest. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <pwd.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "node.h"
#include "slurm.h"
#include "slurm_expect.h"

#define META "\"meta\":{\"plugin\":{\"type\":\"openapi/v0.0.38\"}},"

static const char NODES[] = "{" META "\"errors\":[],\"nodes\":["
    "{\"name\":\"vm\",\"state\":\"mixed\",\"state_flags\":[],"
    "\"partitions\":[\"debug\"],\"cpus\":2,\"alloc_cpus\":1,"
    "\"real_memory\":23081,\"alloc_memory\":100,\"gres\":\"\","
    "\"gres_used\":\"\"},"
    "{\"name\":\"d1\",\"state\":\"idle\",\"state_flags\":[\"DRAIN\"],"
    "\"partitions\":[\"debug\",\"long\"],\"cpus\":64,\"alloc_cpus\":0,"
    "\"real_memory\":512000,\"alloc_memory\":0,\"gres\":\"gpu:8\"},"
    "{\"name\":\"g1\",\"state\":\"allocated\",\"state_flags\":[],"
    "\"partitions\":[\"long\",\"debug\"],\"cpus\":32,\"alloc_cpus\":8,"
    "\"real_memory\":256000,\"alloc_memory\":1000,"
    "\"gres\":\"gpu:a100:4(S:0-1),gpu:t4:1\","
    "\"gres_used\":\"gpu:a100:2(IDX:0,1),gpu:t4:1(IDX:4)\"},"
    "{\"name\":\"o1\",\"state\":\"idle\",\"partitions\":[\"other\"],"
    "\"cpus\":8,\"real_memory\":8000},"
    "{\"name\":\"x1\",\"state\":\"idle\",\"state_flags\":[\"NOT_RESPONDING\"],"
    "\"partitions\":[\"debug\"],\"cpus\":8,\"alloc_cpus\":0,"
    "\"real_memory\":8000,\"alloc_memory\":0}]}";

static void nodes_capacity(void **state)
{
    (void)state;
    slurm_capacity c;
    char err[256] = "";
    assert_int_equal(slurm_rest_parse_nodes(NODES, strlen(NODES), "debug", &c,
                                            err, sizeof err), 0);
    expect_debug_capacity(&c);
    assert_int_equal(slurm_rest_parse_nodes(NODES, strlen(NODES), "other", &c,
                                            err, sizeof err), 0);
    assert_int_equal(c.usable, 1);
    assert_int_equal(c.cpus, 8);
}

static void nodes_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "null", "[]", "{", "{\"nodes\":{}}", "{\"nodes\":3}",
        "{\"nodes\":[{\"state\":\"idle\",\"partitions\":[\"debug\"]}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":-2,\"real_memory\":1}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":1e300,\"real_memory\":1}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":2.5,\"real_memory\":1}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":\"2\",\"real_memory\":1}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":2,\"real_memory\":1,\"alloc_cpus\":null}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":2,\"real_memory\":1,\"gres\":\"gpu:a100:x\"}]}",
        "{\"nodes\":[{\"name\":\"a\",\"partitions\":[\"debug\"],"
        "\"cpus\":2,\"real_memory\":1,\"gres\":\"gpu:99999999999\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        slurm_capacity c;
        memset(&c, 0x5a, sizeof c);
        char err[256] = "";
        assert_int_equal(slurm_rest_parse_nodes(bad[i], strlen(bad[i]),
                                                "debug", &c, err, sizeof err),
                         -1);
        assert_true(err[0] != '\0');
        assert_int_equal(c.nodes, 0);   /* nothing half-kept */
        assert_int_equal(c.cpus, 0);
    }
    /* A node of another partition is not read, whatever it holds; a
     * state with hundreds of flags is not usable, not an overrun. */
    char many[20000];
    size_t o = (size_t)snprintf(many, sizeof many, "{\"nodes\":[{\"name\":"
        "\"a\",\"partitions\":[\"debug\"],\"cpus\":2,\"real_memory\":1,"
        "\"state\":\"idle\",\"state_flags\":[");
    for (int i = 0; i < 500; i++)
        o += (size_t)snprintf(many + o, sizeof many - o, "%s\"FLAG%d\"",
                              i ? "," : "", i);
    snprintf(many + o, sizeof many - o, "]}]}");
    slurm_capacity c;
    char err[256];
    assert_int_equal(slurm_rest_parse_nodes(many, strlen(many), "debug", &c,
                                            err, sizeof err), 0);
    assert_int_equal(c.nodes, 1);
    assert_int_equal(c.usable, 0);
}

static void partition(void **state)
{
    (void)state;
    char err[256];
    static const char up[] = "{" META "\"errors\":[],\"partitions\":"
        "[{\"name\":\"debug\",\"state\":\"UP\",\"total_cpus\":2}]}";
    static const char down[] = "{\"partitions\":[{\"name\":\"debug\","
        "\"state\":\"DOWN\"}]}";
    static const char none[] = "{" META "\"errors\":[{\"error\":\"Invalid "
        "partition name specified\",\"errno\":2000}],\"partitions\":[]}";
    assert_int_equal(slurm_rest_parse_partition(up, strlen(up), "debug", err,
                                                sizeof err), 1);
    assert_int_equal(slurm_rest_parse_partition(down, strlen(down), "debug",
                                                err, sizeof err), 0);
    assert_int_equal(slurm_rest_parse_partition(none, strlen(none), "debug",
                                                err, sizeof err), -1);
    assert_string_equal(err, "Slurm has no partition \"debug\"");
    assert_int_equal(slurm_rest_parse_partition(up, strlen(up), "long", err,
                                                sizeof err), -1);
    char words[300];
    assert_int_equal(slurm_rest_errors(none, strlen(none), words,
                                       sizeof words), 2000);
    assert_string_equal(words, "Invalid partition name specified (2000)");
    /* 22.05 names the number three ways, and a description beside. */
    static const char three[] = "{\"errors\":[{\"description\":\"unable "
        "to kill JobId=9\",\"error_number\":2017,\"error\":\"Invalid job id "
        "specified\"},{\"error_code\":9001,\"error\":\"Failure during "
        "parsing\"},{\"error\":\"a\\u0001b\"}]}";
    assert_int_equal(slurm_rest_errors(three, strlen(three), words,
                                       sizeof words), 2017);
    assert_string_equal(words, "Invalid job id specified: unable to kill "
                        "JobId=9 (2017); Failure during parsing (9001); "
                        "a b (0)");
    assert_int_equal(slurm_rest_errors("nope", 4, words, sizeof words), 0);
    assert_string_equal(words, "");
}

static const char JOB[] = "{" META "\"errors\":[],\"jobs\":[{"
    "\"job_id\":12,\"name\":\"rhizos-5-2\",\"job_state\":\"FAILED\","
    "\"state_reason\":\"NonZeroExitCode\",\"exit_code\":768,"
    "\"restart_cnt\":0,\"start_time\":1796488539,\"end_time\":1796488542,"
    "\"user_name\":\"root\",\"comment\":\"rhizos-node:abc\"}]}";

static void job(void **state)
{
    (void)state;
    slurm_jobinfo ji;
    char err[256];
    assert_int_equal(slurm_rest_parse_job(JOB, strlen(JOB), 12, &ji, err,
                                          sizeof err), 0);
    assert_int_equal(ji.id, 12);
    assert_string_equal(ji.name, "rhizos-5-2");
    assert_string_equal(ji.state, "FAILED");
    assert_int_equal(ji.phase, SLURM_FAILED);
    assert_int_equal(ji.exit_code, 3);
    assert_int_equal(ji.exit_signal, 0);
    assert_string_equal(ji.reason, "NonZeroExitCode");
    assert_true(ji.has_elapsed);
    assert_int_equal(ji.elapsed_s, 3);
    /* Another id in the answer is not this job. */
    assert_int_equal(slurm_rest_parse_job(JOB, strlen(JOB), 13, &ji, err,
                                          sizeof err), -1);
    /* Purged: Slurm no longer knows it. */
    static const char gone[] = "{" META "\"errors\":[{\"description\":"
        "\"Unable to find JobId=99999\",\"error_number\":2017,\"error\":"
        "\"Invalid job id specified\",\"source\":\"slurm_load_job\"}],"
        "\"jobs\":[]}";
    assert_int_equal(slurm_rest_parse_job(gone, strlen(gone), 99999, &ji, err,
                                          sizeof err), 1);
    /* Running: no elapsed yet. A job Slurm requeued itself (22.05's
     * slurmrestd does not take "requeue": false) is to be retried. */
    static const char run[] = "{\"jobs\":[{\"job_id\":7,\"job_state\":"
        "\"RUNNING\",\"start_time\":5,\"end_time\":0,\"restart_cnt\":0}]}";
    assert_int_equal(slurm_rest_parse_job(run, strlen(run), 7, &ji, err,
                                          sizeof err), 0);
    assert_int_equal(ji.phase, SLURM_RUNNING);
    assert_false(ji.has_elapsed);
    static const char again[] = "{\"jobs\":[{\"job_id\":7,\"job_state\":"
        "\"PENDING\",\"restart_cnt\":1}]}";
    assert_int_equal(slurm_rest_parse_job(again, strlen(again), 7, &ji, err,
                                          sizeof err), 0);
    assert_int_equal(ji.phase, SLURM_RETRY);
    assert_string_equal(ji.state, "REQUEUED");
    static const char *const bad[] = {
        "", "[]", "{\"jobs\":{}}", "{\"jobs\":[{\"job_id\":7}]}",
        "{\"jobs\":[{\"job_id\":7,\"job_state\":\"\"}]}",
        "{\"jobs\":[{\"job_id\":7,\"job_state\":3}]}",
        "{\"jobs\":[{\"job_id\":7,\"job_state\":\"FAILED\",\"exit_code\":-1}]}",
        "{\"jobs\":[{\"job_id\":7,\"job_state\":\"FAILED\",\"exit_code\":1e9}]}",
        "{\"jobs\":[{\"job_id\":7,\"job_state\":\"FAILED\",\"exit_code\":\"0\"}]}",
        "{\"errors\":[{\"error\":\"Unspecified\",\"errno\":-1}],\"jobs\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(slurm_rest_parse_job(bad[i], strlen(bad[i]), 7, &ji,
                                              err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
    /* A hostile state and name: kept short and printable, the state
     * unknown (the gateway waits on it). */
    char big[9000];
    int k = snprintf(big, sizeof big, "{\"jobs\":[{\"job_id\":7,"
                     "\"job_state\":\"");
    memset(big + k, 'A', 4000);
    snprintf(big + k + 4000, sizeof big - (size_t)k - 4000,
             "\",\"name\":\"a\\nb\\u001bc\"}]}");
    assert_int_equal(slurm_rest_parse_job(big, strlen(big), 7, &ji, err,
                                          sizeof err), 0);
    assert_int_equal(strlen(ji.state), sizeof ji.state - 1);
    assert_int_equal(ji.phase, SLURM_UNKNOWN);
    assert_string_equal(ji.name, "a b c");
}

static void jobs(void **state)
{
    (void)state;
    static const char list[] = "{" META "\"errors\":[],\"jobs\":["
        "{\"job_id\":3,\"name\":\"rhizos-5-2\",\"job_state\":\"RUNNING\","
        "\"user_name\":\"root\",\"comment\":\"rhizos-node:abc\"},"
        "{\"job_id\":4,\"name\":\"rhizos-5-2\",\"job_state\":\"PENDING\","
        "\"user_name\":\"alice\",\"comment\":\"rhizos-node:abc\"},"
        "{\"job_id\":5,\"name\":\"someone-else\",\"job_state\":\"RUNNING\","
        "\"user_name\":\"root\"},"
        "{\"job_id\":6,\"name\":\"rhizos-9-1\",\"job_state\":\"CANCELLED\","
        "\"user_name\":\"root\"}]}";
    slurm_qjob *q = NULL;
    size_t n = 0;
    char err[256];
    assert_int_equal(slurm_rest_parse_jobs(list, strlen(list), "root", &q, &n,
                                           err, sizeof err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(q[0].id, 3);
    assert_int_equal(q[0].job, 5);
    assert_int_equal(q[0].attempt, 2);
    assert_int_equal(q[0].phase, SLURM_RUNNING);
    assert_string_equal(q[0].comment, "rhizos-node:abc");
    assert_int_equal(q[1].id, 6);
    assert_int_equal(q[1].phase, SLURM_RETRY);
    assert_string_equal(q[1].comment, "");
    free(q);
    /* Anyone's without a user (unix socket with rest_auth/local). */
    assert_int_equal(slurm_rest_parse_jobs(list, strlen(list), NULL, &q, &n,
                                           err, sizeof err), 0);
    assert_int_equal(n, 3);
    free(q);
    static const char *const bad[] = {
        "", "{}", "{\"jobs\":null}",
        "{\"jobs\":[{\"job_id\":0,\"name\":\"rhizos-1-1\",\"job_state\":\"RUNNING\"}]}",
        "{\"jobs\":[{\"job_id\":3,\"name\":\"rhizos-1-1\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        q = (slurm_qjob *)&n;
        assert_int_equal(slurm_rest_parse_jobs(bad[i], strlen(bad[i]), NULL,
                                               &q, &n, err, sizeof err), -1);
        assert_null(q);
        assert_int_equal(n, 0);
    }
    /* Many jobs: the list grows. */
    size_t cap = 200 * 120 + 64, o;
    char *text = malloc(cap);
    o = (size_t)snprintf(text, cap, "{\"jobs\":[");
    for (int i = 1; i <= 200; i++)
        o += (size_t)snprintf(text + o, cap - o, "%s{\"job_id\":%d,\"name\":"
                              "\"rhizos-%d-1\",\"job_state\":\"PENDING\"}",
                              i > 1 ? "," : "", i, i);
    snprintf(text + o, cap - o, "]}");
    assert_int_equal(slurm_rest_parse_jobs(text, strlen(text), NULL, &q, &n,
                                           err, sizeof err), 0);
    assert_int_equal(n, 200);
    assert_int_equal(q[199].job, 200);
    free(q);
    free(text);
}

static void submit(void **state)
{
    (void)state;
    uint64_t id = 9;
    char err[256];
    static const char ok[] = "{" META "\"errors\":[],\"job_id\":121,"
        "\"step_id\":\"BATCH\",\"job_submit_user_msg\":\"\"}";
    assert_int_equal(slurm_rest_parse_submit(ok, strlen(ok), &id, err,
                                             sizeof err), 0);
    assert_int_equal(id, 121);
    /* Queued with what sbatch says as a warning. */
    static const char held[] = "{\"errors\":[{\"error_code\":2042,\"error\":"
        "\"Job is in held state, pending scheduler release\"}],\"job_id\":122}";
    assert_int_equal(slurm_rest_parse_submit(held, strlen(held), &id, err,
                                             sizeof err), 0);
    assert_int_equal(id, 122);
    static const char refused[] = "{\"errors\":[{\"error_code\":2000,"
        "\"error\":\"Invalid partition name specified\"}]}";
    assert_int_equal(slurm_rest_parse_submit(refused, strlen(refused), &id,
                                             err, sizeof err), -1);
    assert_string_equal(err, "Invalid partition name specified (2000)");
    assert_int_equal(id, 0);
    static const char *const bad[] = { "", "{}", "{\"job_id\":0}",
        "{\"job_id\":-4}", "{\"job_id\":\"12\"}", "{\"job_id\":1.5}",
        "{\"job_id\":1e30}" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(slurm_rest_parse_submit(bad[i], strlen(bad[i]), &id,
                                                 err, sizeof err), -1);
}

static void submit_body(void **state)
{
    (void)state;
    slurm_request rq = { .cpus = 2, .memory_mb = 300, .gpus = 1,
                         .timeout_s = 90 };
    const char *argv[] = { "/usr/bin/rhizos-node", "slurm-run", "--data",
                           "/srv/it's here", "/spool/1-1", NULL };
    slurm_submit sb = { .name = "rhizos-1-1", .partition = "debug",
                        .account = "proj", .comment = "rhizos-node:abc",
                        .dir = "/spool/1-1", .rq = &rq, .argv = argv };
    char *text = slurm_rest_submit_body(&sb, 0);
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    cJSON *job = cJSON_GetObjectItem(j, "job");
    assert_string_equal(cJSON_GetObjectItem(j, "script")->valuestring,
                        "#!/bin/sh\nexec '/usr/bin/rhizos-node' 'slurm-run' "
                        "'--data' '/srv/it'\\''s here' '/spool/1-1'\n");
    assert_string_equal(cJSON_GetObjectItem(job, "name")->valuestring,
                        "rhizos-1-1");
    assert_string_equal(cJSON_GetObjectItem(job, "account")->valuestring,
                        "proj");
    assert_null(cJSON_GetObjectItem(job, "qos"));
    assert_int_equal(cJSON_GetObjectItem(job, "cpus_per_task")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(job, "memory_per_node")->valueint,
                     300);
    assert_string_equal(cJSON_GetObjectItem(job, "gres")->valuestring,
                        "gpu:1");
    assert_int_equal(cJSON_GetObjectItem(job, "time_limit")->valueint, 3);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(job, "requeue")));
    assert_null(cJSON_GetObjectItem(job, "hold"));
    assert_string_equal(cJSON_GetObjectItem(job, "standard_output")
                        ->valuestring, "/spool/1-1/slurm.out");
    /* Only PATH goes with the job. */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(job,
                                                            "environment")), 1);
    cJSON_Delete(j);
    cJSON_free(text);
    /* The test-only job: held, nothing to run, its output nowhere. */
    const char *none[] = { NULL };
    slurm_submit t = { .name = "rhizos-test-only", .partition = "debug",
                       .rq = &rq, .argv = none };
    text = slurm_rest_submit_body(&t, 1);
    j = cJSON_Parse(text);
    job = cJSON_GetObjectItem(j, "job");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(job, "hold")));
    assert_string_equal(cJSON_GetObjectItem(j, "script")->valuestring,
                        "#!/bin/sh\ntrue\n");
    assert_string_equal(cJSON_GetObjectItem(job, "standard_output")
                        ->valuestring, "/dev/null");
    cJSON_Delete(j);
    cJSON_free(text);
}

/* ---- the client against a fake slurmrestd ---- */

typedef struct fake {
    int fd;
    const char *reply;        /* the whole HTTP answer; NULL: close */
    int endless;              /* a body that never ends (past the cap) */
    char seen[8192];          /* the last request's head */
} fake;

static void *fake_main(void *arg)
{
    fake *f = arg;
    for (;;) {
        int c = accept(f->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        size_t o = 0;
        ssize_t r;
        while (o + 1 < sizeof f->seen &&
               (r = read(c, f->seen + o, sizeof f->seen - 1 - o)) > 0) {
            o += (size_t)r;
            f->seen[o] = '\0';
            if (strstr(f->seen, "\r\n\r\n"))
                break;
        }
        if (f->endless) {
            static const char head[] = "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/json\r\n\r\n[";
            (void)!write(c, head, sizeof head - 1);
            char chunk[65536];
            memset(chunk, '1', sizeof chunk);
            while (write(c, chunk, sizeof chunk) > 0)
                ;
        } else if (f->reply) {
            (void)!write(c, f->reply, strlen(f->reply));
        }
        close(c);
    }
}

/* A fake slurmrestd on a unix socket in a fresh folder, with a token
 * file, and the gateway's configuration for it. */
typedef struct rig {
    char dir[32], sock[64], tokf[64], where[80];
    fake f;
    pthread_t th;
    node_config cfg;
} rig;

static void rig_start(rig *r)
{
    signal(SIGPIPE, SIG_IGN);   /* as in rhizos-node: the fake's writes */
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/rz-slurm-rest-XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    snprintf(r->sock, sizeof r->sock, "%s/s", r->dir);
    snprintf(r->tokf, sizeof r->tokf, "%s/token", r->dir);
    snprintf(r->where, sizeof r->where, "unix:%s", r->sock);
    FILE *t = fopen(r->tokf, "w");
    fputs("SLURM_JWT=sekrit.token.value\n", t);
    fclose(t);
    r->f.fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", r->sock);
    assert_int_equal(bind(r->f.fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(r->f.fd, 8), 0);
    pthread_create(&r->th, NULL, fake_main, &r->f);
    r->cfg.slurm_partition = "debug";
    r->cfg.slurm_rest = r->where;
    r->cfg.slurm_rest_user = "svc";
    r->cfg.slurm_rest_token = r->tokf;
}

static void rig_stop(rig *r)
{
    shutdown(r->f.fd, SHUT_RDWR);
    close(r->f.fd);
    pthread_join(r->th, NULL);
    unlink(r->sock);
    unlink(r->tokf);
    rmdir(r->dir);
}

static void client_replies(void **state)
{
    (void)state;
    rig r;
    rig_start(&r);
    slurm_capacity cap;
    char why[600];
    int up = 0;
    /* Garbage instead of JSON. */
    r.f.reply = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello";
    assert_int_equal(slurm_restd.capacity(&r.cfg, &cap, &up, why, sizeof why), -1);
    assert_non_null(strstr(why, "slurmrestd"));
    /* The JWT went as slurmrestd takes it, over the socket. */
    assert_non_null(strstr(r.f.seen, "GET /slurm/v0.0.38/partition/debug "));
    assert_non_null(strstr(r.f.seen, "X-SLURM-USER-NAME: svc\r\n"));
    assert_non_null(strstr(r.f.seen, "X-SLURM-USER-TOKEN: sekrit.token.value\r\n"));
    /* 401: a refusal of the token, said without the token. */
    r.f.reply = "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\n\r\n"
                "Authentication failure";
    assert_int_equal(slurm_restd.capacity(&r.cfg, &cap, &up, why, sizeof why), -1);
    assert_non_null(strstr(why, "refuses this gateway (HTTP 401"));
    assert_null(strstr(why, "sekrit"));
    /* A reply that is a job of another id. */
    slurm_jobinfo ji;
    r.f.reply = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                "{\"jobs\":[{\"job_id\":8,\"job_state\":\"COMPLETED\"}]}";
    assert_int_equal(slurm_restd.job(&r.cfg, 7, &ji), -1);
    /* A refused submission says Slurm's words. */
    r.f.reply = "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n"
                "{\"errors\":[{\"error_code\":2000,\"error\":\"Invalid partition "
                "name specified\"}]}";
    slurm_request rq = { .cpus = 1, .memory_mb = 64 };
    const char *argv[] = { "/bin/true", NULL };
    slurm_submit sb = { .name = "rhizos-1-1", .partition = "debug",
                        .comment = "rhizos-node:x", .dir = r.dir, .rq = &rq,
                        .argv = argv };
    uint64_t id = 0;
    assert_int_equal(slurm_restd.submit(&r.cfg, &sb, 0, &id, why, sizeof why), -1);
    assert_string_equal(why, "sbatch refused the job: Invalid partition name "
                        "specified (2000)");
    assert_non_null(strstr(r.f.seen, "POST /slurm/v0.0.38/job/submit "));
    rig_stop(&r);
}

static void client_failures(void **state)
{
    (void)state;
    rig r;
    rig_start(&r);
    char why[600];
    /* An answer that never ends: cut at the cap, not kept. */
    r.f.endless = 1;
    slurm_qjob *q = NULL;
    size_t n = 0;
    assert_int_equal(slurm_restd.queue(&r.cfg, &q, &n, why, sizeof why), -1);
    assert_null(q);
    assert_non_null(strstr(why, "slurmrestd does not answer"));
    r.f.endless = 0;
    /* A dropped connection. */
    slurm_jobinfo ji;
    r.f.reply = NULL;
    assert_int_equal(slurm_restd.job(&r.cfg, 7, &ji), -1);
    /* A token file that is not there: said, nothing sent. */
    slurm_capacity cap;
    int up = 0;
    unlink(r.tokf);
    r.f.seen[0] = '\0';
    assert_int_equal(slurm_restd.capacity(&r.cfg, &cap, &up, why, sizeof why), -1);
    assert_non_null(strstr(why, "slurmrestd_token_file"));
    assert_string_equal(r.f.seen, "");
    rig_stop(&r);
    /* Nobody listening. */
    r.cfg.slurm_rest_token = NULL;
    r.cfg.slurm_rest_user = NULL;
    assert_int_equal(slurm_restd.capacity(&r.cfg, &cap, &up, why, sizeof why), -1);
    assert_non_null(strstr(why, "slurmrestd does not answer at unix:"));
}

/* Without JWT slurmrestd acts as the gateway's own user and GET jobs lists
 * every user's: another user's job named and commented as ours is not
 * ours (the commands' squeue --me), or recovery takes it up. */
static void client_queue_own(void **state)
{
    (void)state;
    rig r;
    rig_start(&r);
    r.cfg.slurm_rest_user = NULL;
    r.cfg.slurm_rest_token = NULL;
    const struct passwd *pw = getpwuid(geteuid());
    assert_non_null(pw);
    static char reply[2048];
    snprintf(reply, sizeof reply, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
             "{\"jobs\":[{\"job_id\":7,\"job_state\":\"RUNNING\",\"name\":"
             "\"rhizos-5-1\",\"user_name\":\"%s\",\"comment\":\"rhizos-node:abc\"},"
             "{\"job_id\":9,\"job_state\":\"RUNNING\",\"name\":\"rhizos-5-1\","
             "\"user_name\":\"rz-not-%s\",\"comment\":\"rhizos-node:abc\"}]}",
             pw->pw_name, pw->pw_name);
    r.f.reply = reply;
    slurm_qjob *q = NULL;
    size_t n = 0;
    char why[600];
    assert_int_equal(slurm_restd.queue(&r.cfg, &q, &n, why, sizeof why), 0);
    assert_int_equal(n, 1);
    assert_int_equal(q[0].id, 7);
    free(q);
    rig_stop(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(nodes_capacity),
        cmocka_unit_test(nodes_malformed),
        cmocka_unit_test(partition),
        cmocka_unit_test(job),
        cmocka_unit_test(jobs),
        cmocka_unit_test(submit),
        cmocka_unit_test(submit_body),
        cmocka_unit_test(client_replies),
        cmocka_unit_test(client_failures),
        cmocka_unit_test(client_queue_own),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

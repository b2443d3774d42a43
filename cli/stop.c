/* rhizos flow stop ID: end a run that goes on until it is stopped (a
 * service, docs/services.md). A number is a deployment: cancelled, as
 * `flow cancel` does. Anything else is an embedded run that `flow run`
 * is running on this machine under --data: that process wrote its pid
 * beside the live log it holds locked (DATA/live/RUN.pid, RUN.log); it is
 * sent SIGTERM, which it takes as Ctrl-C (the services stopped, what was
 * handled kept, the run recorded as cancelled), and this waits for it. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define STOP_WAIT_S 60

static char *pid_path(const char *data_dir, const char *run_id)
{
    char *live = cli_live_path(data_dir, run_id);
    size_t n = live ? strlen(live) : 0;
    if (n > 4)
        memcpy(live + n - 4, ".pid", 4);   /* RUN.log -> RUN.pid */
    return live;
}

void cli_live_pid_write(const char *data_dir, const char *run_id)
{
    char *path = pid_path(data_dir, run_id);
    FILE *f = path ? fopen(path, "we") : NULL;
    if (f) {
        fprintf(f, "%ld\n", (long)getpid());
        fclose(f);
    }
    free(path);
}

void cli_live_pid_remove(const char *data_dir, const char *run_id)
{
    char *path = pid_path(data_dir, run_id);
    if (path)
        unlink(path);
    free(path);
}

/* Is the run's live log still held (its `flow run` alive)? */
static bool held(const char *live)
{
    FILE *f = fopen(live, "re");
    if (!f)
        return false;
    bool busy = flock(fileno(f), LOCK_SH | LOCK_NB) != 0;
    fclose(f);
    return busy;
}

static int stop_run(cli *c, const char *id)
{
    char *dir = cli_data_dir(c);
    char *live = dir ? cli_live_path(dir, id) : NULL, *pp = dir ? pid_path(dir, id) : NULL;
    FILE *f = pp ? fopen(pp, "re") : NULL;
    long pid = 0;
    int ex = EXIT_FAILED;
    if (!live || !pp) {
        fprintf(stderr, "rhizos: flow stop: out of memory\n");
    } else if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 1 || !held(live)) {
        fprintf(stderr, "rhizos: flow stop: run '%s' is not running on this "
                "machine under %s (rhizos flow runs lists the runs)\n", id, dir);
    } else if (kill((pid_t)pid, SIGTERM) != 0) {
        fprintf(stderr, "rhizos: flow stop: run '%s' (pid %ld): %s\n", id, pid,
                strerror(errno));
    } else {
        struct timespec ts = { 0, 100000000L };
        int i = 0;
        while (held(live) && i++ < STOP_WAIT_S * 10)
            nanosleep(&ts, NULL);
        if (held(live))
            fprintf(stderr, "rhizos: flow stop: run '%s' (pid %ld) was told to "
                    "stop and has not ended after %d s\n", id, pid, STOP_WAIT_S);
        else {
            if (!c->quiet)
                printf("run %s stopped\n", id);
            ex = EXIT_OK;
        }
    }
    if (f)
        fclose(f);
    free(pp);
    free(live);
    free(dir);
    return ex;
}

int cli_flow_stop(cli *c)
{
    if (c->nargs != 1 || !*c->args[0]) {
        fprintf(stderr, "rhizos: flow stop: wants one run or deployment id. "
                        "Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    uint64_t id;
    if (cli_parse_u64(c->args[0], UINT64_MAX, &id))
        return cli_flow_cancel(c);
    return stop_run(c, c->args[0]);
}

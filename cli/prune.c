/* The run history's retention: `rhizos flow runs --prune [--older-than
 * AGE]`, and after each recorded `flow run` one bounded pass on its own
 * (RHIZOS_RUNS_KEEP, default 90d, 0 keeps everything). Runs that ended
 * before the age go from DATA's run store, a few hundred a transaction;
 * live log files left by runs that were killed (no writer holds their
 * lock) go once they are as old; then the file outputs (DATA/blobs) as
 * old that no kept run names (after --prune always, after a run when it
 * removed runs). The store tells a killed run from one going itself (its
 * record's lock, lib/store/run_lock.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rhizos/rhizos.h"

#define PRUNE_BATCH 256
#define AUTO_BATCHES 4          /* what one `flow run` removes at most */
#define KEEP_DEFAULT_MS (90ull * 86400000)

int cli_age_parse(const char *s, uint64_t *ms)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || end == s || *s == '-' || *s == '+')
        return -1;
    uint64_t unit = 86400000;
    if (*end && !end[1]) {
        switch (*end) {
        case 's': unit = 1000; break;
        case 'm': unit = 60000; break;
        case 'h': unit = 3600000; break;
        case 'd': break;
        default: return -1;
        }
    } else if (*end)
        return -1;
    if (v > 36500ull * 86400000 / unit)
        return -1;
    *ms = v * unit;
    return 0;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* DATA/live/RUN.log files older than `before` that no run holds. */
static size_t prune_live(const char *data_dir, uint64_t before)
{
    size_t n = strlen(data_dir) + 8, removed = 0;
    char *dir = malloc(n);
    if (!dir)
        return 0;
    snprintf(dir, n, "%s/live", data_dir);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d && dfd >= 0)
        close(dfd);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".log") != 0)
            continue;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (fd < 0)
            continue;
        uint64_t mtime = 0;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            mtime = (uint64_t)st.st_mtim.tv_sec * 1000;
        /* Held: its run still writes it, whatever its age. */
        if (mtime && mtime < before && flock(fd, LOCK_EX | LOCK_NB) == 0 &&
            unlinkat(dfd, e->d_name, 0) == 0)
            removed++;
        close(fd);
    }
    if (d)
        closedir(d);
    free(dir);
    return removed;
}

/* Up to `batches` passes (0: until done). */
typedef struct pruned {
    size_t runs, logs, blobs;
    uint64_t blob_bytes;
} pruned;

static int prune(const char *data_dir, uint64_t age_ms, size_t batches, pruned *p)
{
    memset(p, 0, sizeof *p);
    uint64_t now = now_ms(), before = now > age_ms ? now - age_ms : 0;
    rz_store *st = NULL;
    int rc = rz_store_open(&st, data_dir);
    for (size_t b = 0, got = PRUNE_BATCH; rc == RZ_OK && got == PRUNE_BATCH &&
         (!batches || b < batches); b++) {
        rc = rz_store_run_prune(st, before, PRUNE_BATCH, &got);
        p->runs += rc == RZ_OK ? got : 0;
    }
    if (rc == RZ_OK && (!batches || p->runs))
        rc = rz_store_blobs_sweep(st, before, &p->blobs, &p->blob_bytes);
    rz_store_close(st);
    if (rc == RZ_OK)
        p->logs = prune_live(data_dir, before);
    return rc;
}

int cli_runs_prune(cli *c)
{
    uint64_t age = KEEP_DEFAULT_MS;
    if (c->older_than && cli_age_parse(c->older_than, &age) != 0) {
        fprintf(stderr, "rhizos: --older-than wants an age: 30d, 12h, 45m, 10s "
                "(a bare number is days), not '%s'\n", c->older_than);
        return EXIT_USAGE;
    }
    char *dir = cli_data_dir(c);
    pruned p;
    int rc = dir ? prune(dir, age, 0, &p) : RZ_ENOMEM;
    if (rc != RZ_OK)
        cli_error(dir, rc);
    else if (c->json)
        printf("{\"removed_runs\":%zu,\"removed_live_logs\":%zu,\"removed_blobs\":%zu,"
               "\"removed_blob_bytes\":%llu}\n", p.runs, p.logs, p.blobs,
               (unsigned long long)p.blob_bytes);
    else
        printf("removed %zu run%s and %zu live log%s that ended before %s ago, "
               "and %zu file output%s (%llu bytes) no kept run names\n",
               p.runs, p.runs == 1 ? "" : "s", p.logs, p.logs == 1 ? "" : "s",
               c->older_than ? c->older_than : "90d", p.blobs, p.blobs == 1 ? "" : "s",
               (unsigned long long)p.blob_bytes);
    free(dir);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

void cli_runs_prune_auto(const char *data_dir)
{
    uint64_t age = KEEP_DEFAULT_MS;
    const char *env = getenv("RHIZOS_RUNS_KEEP");
    if (env && cli_age_parse(env, &age) != 0) {
        fprintf(stderr, "rhizos: RHIZOS_RUNS_KEEP: an age such as 30d (0 keeps "
                "every run), not '%s': nothing pruned\n", env);
        return;
    }
    pruned p;
    if (age && prune(data_dir, age, AUTO_BATCHES, &p) != RZ_OK)
        fprintf(stderr, "rhizos: pruning old runs: %s\n", rz_error_last()->message);
}

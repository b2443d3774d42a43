/* rhizos flow logs ID [STEP] [--follow] [--since T] [--json]: the steps'
 * logs of a run, as "STEP | line"; rhizos job logs ID [--follow] [--since
 * T]: one job's, as it printed them.
 *
 * --since T: lines carry no time of their own. A deployment's and a job's
 * are timed by when they reached the orchestrator (?since=MS filters them
 * there); an embedded run keeps only each step's end, so a step that ended
 * before T is left out and one that did not is shown whole: a line is
 * hidden only when it is known to be older.
 *
 * A number is a deployment (GET /api/v1/flows/ID/logs); with --follow the
 * deployment's event stream adds the lines its nodes send as they come,
 * each once (a step_log's offset against the snapshot's log_end), until it
 * ends. Anything else is an embedded run recorded under --data: its record
 * has each step's log; while `flow run` runs it, it also appends the lines
 * as they come to DATA/live/RUN.log, which --follow reads until the run is
 * over (the file goes when the run ends). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rhizos/rhizos.h"

#define POLL_NS 200000000L       /* a followed file is read this often */
#define RECORD_EVERY 5           /* and the run's record every 5th time */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* YYYY-MM-DDTHH:MM:SS[.fff...](Z|+HH:MM|-HH:MM), as unix ms. */
static int rfc3339(const char *s, uint64_t *ms)
{
    int y, mo, d, h, mi, sec, used = 0;
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
               &used) != 6 || used != 19 || y < 1970 || mo < 1 || mo > 12 ||
        d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    const char *p = s + used;
    uint64_t frac = 0;
    if (*p == '.') {
        int k = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, k++)
            if (k < 3)
                frac = frac * 10 + (uint64_t)(*p - '0');
        if (!k)
            return -1;
        for (; k < 3; k++)
            frac *= 10;
    }
    long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om, n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5 || oh > 23 || om > 59)
            return -1;
        off = (*p == '-' ? -1 : 1) * (oh * 3600L + om * 60L);
        p += 6;
    } else {
        return -1;
    }
    if (*p)
        return -1;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                     .tm_hour = h, .tm_min = mi, .tm_sec = sec };
    time_t t = timegm(&tm);
    if (t == (time_t)-1 || (long long)t - off < 0)
        return -1;
    *ms = (uint64_t)((long long)t - off) * 1000 + frac;
    return 0;
}

int cli_since_parse(const char *s, uint64_t now_ms, uint64_t *since_ms)
{
    size_t n = s ? strlen(s) : 0;
    if (n && strchr("smhd", s[n - 1]) && s[0] >= '0' && s[0] <= '9') {
        uint64_t ago;
        if (cli_age_parse(s, &ago) != 0)
            return -1;
        *since_ms = ago < now_ms ? now_ms - ago : 1;
        return 0;
    }
    return s && rfc3339(s, since_ms) == 0 && *since_ms ? 0 : -1;
}

/* c->since as unix ms (0: none); false when malformed (said). */
static bool since_of(const cli *c, const char *verb, uint64_t *ms)
{
    *ms = 0;
    if (!c->since || cli_since_parse(c->since, wall_ms(), ms) == 0)
        return true;
    fprintf(stderr, "rhizos: %s: --since wants a duration with its unit (30s, "
            "10m, 2h, 1d) or an RFC 3339 time (2026-12-05T16:00:00Z), not '%s'\n",
            verb, c->since);
    return false;
}

static void print_lines(const char *label, const char *text, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t k = i;
        while (k < n && text[k] != '\n')
            k++;
        printf("%s | %.*s\n", label, (int)(k - i), text + i);
        i = k + 1;
    }
    fflush(stdout);
}

static void entry_label(const cJSON *e, char *out, size_t len)
{
    const cJSON *el = cJSON_GetObjectItemCaseSensitive(e, "element");
    const char *step = cli_json_str(e, "step", "?");
    if (cJSON_IsNumber(el))
        snprintf(out, len, "%s[%d]", step, (int)el->valuedouble);
    else
        snprintf(out, len, "%s", step);
}

/* ---- a deployment ---- */

typedef struct follow {
    const cli *c;
    const char *step;          /* only this one; NULL: all */
    uint64_t id;
    cJSON *seen;               /* "<job>" -> {"attempt", "end"} printed */
    bool shown;                /* the snapshot was printed */
    int rc;
    uint64_t since;            /* --since, unix ms; 0: none */
} follow;

static char *logs_path(uint64_t id, const char *step, uint64_t since)
{
    char *path = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&path, &n);
    if (!f)
        return NULL;
    fprintf(f, "/api/v1/flows/%" PRIu64 "/logs", id);
    for (const unsigned char *s = (const unsigned char *)step; s && *s; s++) {
        if (s == (const unsigned char *)step)
            fputs("?step=", f);
        if ((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
            (*s >= 'A' && *s <= 'Z') || *s == '-' || *s == '_' || *s == '.')
            fputc(*s, f);
        else
            fprintf(f, "%%%02X", *s);
    }
    if (since)
        fprintf(f, "%csince=%" PRIu64, step ? '&' : '?', since);
    return fclose(f) == 0 ? path : (free(path), NULL);
}

/* Print the snapshot; remember how far each running job's stream was. */
static int snapshot(follow *fw, rz_client *cl, bool json)
{
    char *path = logs_path(fw->id, fw->step, fw->since), *reply = NULL;
    int ex = path ? cli_request(cl, "GET", path, NULL, &reply) : EXIT_FAILED;
    free(path);
    if (ex != EXIT_OK)
        return ex;
    if (json) {
        cli_print_json(reply);
        rz_free(reply);
        return EXIT_OK;
    }
    cJSON *doc = cJSON_Parse(reply), *e;
    rz_free(reply);
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "steps")) {
        char label[300], key[32];
        entry_label(e, label, sizeof label);
        const char *log = cli_json_str(e, "log", NULL);
        if (log)
            print_lines(label, log, strlen(log));
        snprintf(key, sizeof key, "%" PRId64, cli_json_int(e, "job"));
        cJSON *mark = cJSON_AddObjectToObject(fw->seen, key);
        cJSON_AddNumberToObject(mark, "attempt", (double)cli_json_int(e, "attempt"));
        cJSON_AddNumberToObject(mark, "end", cJSON_HasObjectItem(e, "log_end")
                                ? (double)cli_json_int(e, "log_end") : -1);
    }
    cJSON_Delete(doc);
    return EXIT_OK;
}

/* A step_log: what is past the snapshot's end of that attempt's stream. */
static void on_lines(follow *fw, const cJSON *s)
{
    const char *step = cli_json_str(s, "step", "?");
    const char *lines = cli_json_str(s, "lines", "");
    if (fw->step && strcmp(step, fw->step) != 0)
        return;
    char key[32];
    snprintf(key, sizeof key, "%" PRId64, cli_json_int(s, "job"));
    cJSON *mark = cJSON_GetObjectItemCaseSensitive(fw->seen, key);
    long long attempt = cli_json_int(s, "attempt");
    long long off = cli_json_int(s, "offset"), n = (long long)strlen(lines);
    long long end = mark && cli_json_int(mark, "attempt") == attempt
                    ? cli_json_int(mark, "end") : -1;
    long long from = end > off ? end - off : 0;
    if (from < n)
        print_lines(step, lines + from, (size_t)(n - from - (lines[n - 1] == '\n')));
    if (!mark)
        mark = cJSON_AddObjectToObject(fw->seen, key);
    cJSON_DeleteItemFromObjectCaseSensitive(mark, "attempt");
    cJSON_DeleteItemFromObjectCaseSensitive(mark, "end");
    cJSON_AddNumberToObject(mark, "attempt", (double)attempt);
    cJSON_AddNumberToObject(mark, "end", (double)(off + n));
}

static int on_event(void *ud, const char *event, const char *data)
{
    follow *fw = ud;
    if (!fw->shown) {
        /* The stream is open: nothing streamed from here on is missed. */
        rz_client *cl = cli_client((cli *)fw->c);
        fw->rc = cl ? snapshot(fw, cl, false) : EXIT_USAGE;
        rz_client_free(cl);
        fw->shown = true;
        if (fw->rc != EXIT_OK)
            return 1;
    }
    if (strcmp(event, "step_log") == 0) {
        cJSON *s = cJSON_Parse(data);
        if (cJSON_IsObject(s))
            on_lines(fw, s);
        cJSON_Delete(s);
    }
    return strcmp(event, "end") == 0;   /* the deployment is over */
}

static int deployment_logs(cli *c, uint64_t id, const char *step)
{
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    follow fw = { c, step, id, cJSON_CreateObject(), false, EXIT_OK, 0 };
    if (!since_of(c, "flow logs", &fw.since)) {
        cJSON_Delete(fw.seen);
        rz_client_free(cl);
        return EXIT_USAGE;
    }
    int ex;
    if (!c->follow || c->json) {   /* --json: the snapshot */
        ex = snapshot(&fw, cl, c->json);
    } else {
        char path[96];
        snprintf(path, sizeof path, "/api/v1/flows/%" PRIu64 "/events?changes=1", id);
        int rc = rz_client_events(cl, path, 0, on_event, &fw);
        ex = fw.rc != EXIT_OK ? fw.rc
           : rc == RZ_OK || rc == 1 ? EXIT_OK : cli_net_fail(NULL, rc);
    }
    cJSON_Delete(fw.seen);
    rz_client_free(cl);
    return ex;
}

/* ---- a job ---- */

/* The job's log as it stands; following, new lines every POLL_NS until the
 * job is over. "log" keeps the attempt's last ORCH_LOG_MAX bytes and
 * "log_end" says where that tail ends in the attempt's stream, so what is
 * new since the last look is the log's last (log_end - seen) bytes. When
 * the job ends, its result's log (the same lines' authoritative tail)
 * replaces the streamed one and has no log_end: what follows what was
 * printed is found by the printed text, at worst printed again whole. */
typedef struct job_follow {
    long long attempt;      /* -1: nothing printed yet */
    long long end;          /* stream bytes printed; -1: unknown */
    char *seen;             /* the log as last printed */
} job_follow;

static bool job_over(const char *status)
{
    return !strcmp(status, "succeeded") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

/* What of the finished log `fin` follows the printed `seen`. */
static const char *after_seen(const char *fin, const char *seen, long long end)
{
    size_t n = strlen(seen);
    if (end >= 0 && (size_t)end == n && strncmp(fin, seen, n) == 0)
        return fin + n;                 /* the whole stream was kept */
    size_t k = n < 256 ? n : 256;       /* else: after the printed tail */
    const char *hit = NULL;
    for (const char *p = fin; k && (p = strstr(p, seen + n - k)); p++)
        hit = p;
    return hit ? hit + k : NULL;
}

static void job_print(job_follow *jf, const cJSON *j)
{
    const char *log = cli_json_str(j, "log", "");
    long long attempt = cli_json_int(j, "attempt");
    const cJSON *le = cJSON_GetObjectItemCaseSensitive(j, "log_end");
    long long end = cJSON_IsNumber(le) ? (long long)le->valuedouble : -1;
    size_t n = strlen(log);
    const char *from = log;
    if (jf->attempt >= 0 && jf->attempt != attempt)
        printf("--- attempt %lld ---\n", attempt);
    else if (jf->attempt >= 0 && end >= 0 && jf->end >= 0) {
        /* Fewer than printed: the stream started again (an orchestrator
         * restart); more than kept: lines went by unseen. Either way the
         * whole log. */
        long long fresh = end - jf->end;
        from = fresh >= 0 && fresh <= (long long)n ? log + n - (size_t)fresh : log;
    }
    else if (jf->attempt >= 0 && jf->seen) {
        const char *rest = after_seen(log, jf->seen, jf->end);
        if (!rest)
            printf("--- the job's kept log, whole ---\n");
        from = rest ? rest : log;
    }
    fwrite(from, 1, n - (size_t)(from - log), stdout);
    fflush(stdout);
    jf->attempt = attempt;
    jf->end = end >= 0 ? end : (long long)n;
    free(jf->seen);
    jf->seen = strdup(log);
}

int cli_job_logs(cli *c, uint64_t id)
{
    uint64_t attempt = 0;
    if (c->attempt && (!cli_parse_u64(c->attempt, UINT32_MAX, &attempt) || !attempt)) {
        fprintf(stderr, "rhizos: job logs: --attempt wants an attempt's number "
                        "(1, 2, ...), not '%s'\n", c->attempt);
        return EXIT_USAGE;
    }
    if (attempt && c->follow) {
        fprintf(stderr, "rhizos: job logs: --attempt shows an attempt's kept log; "
                        "--follow follows the job's last one: give one of them\n");
        return EXIT_USAGE;
    }
    uint64_t since;
    if (!since_of(c, "job logs", &since))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char path[128];
    snprintf(path, sizeof path, "/api/v1/jobs/%" PRIu64 "?attempt=%" PRIu64, id, attempt);
    /* --since until a line was printed: what follows it is new anyway. */
    if (since)
        snprintf(path + strlen(path), sizeof path - strlen(path), "&since=%" PRIu64, since);
    job_follow jf = { -1, -1, NULL };
    struct timespec ts = { 0, POLL_NS };
    int ex;
    for (;;) {
        char *reply = NULL;
        ex = cli_request(cl, "GET", path, NULL, &reply);
        cJSON *j = ex == EXIT_OK ? cJSON_Parse(reply) : NULL;
        rz_free(reply);
        if (ex != EXIT_OK)
            break;
        bool over = job_over(cli_json_str(j, "status", ""));
        if (c->json) {
            char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(j, "log"));
            cli_print_json(text ? text : "null");
            free(text);
        } else {
            job_print(&jf, j);
        }
        char *amp = jf.seen && *jf.seen ? strstr(path, "&since=") : NULL;
        if (amp)
            *amp = '\0';
        if (over && !strcmp(cli_json_str(j, "status", ""), "failed"))
            ex = EXIT_FAILED;
        cJSON_Delete(j);
        if (over || !c->follow || c->json)
            break;
        nanosleep(&ts, NULL);
    }
    free(jf.seen);
    rz_client_free(cl);
    return ex;
}

/* ---- an embedded run ---- */

char *cli_live_path(const char *data_dir, const char *run_id)
{
    size_t n = strlen(data_dir) + strlen(run_id) + 16;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/live/%s.log", data_dir, run_id);
    return p;
}

FILE *cli_live_open(const char *data_dir, const char *run_id)
{
    char *path = cli_live_path(data_dir, run_id);
    char *dir = path ? strdup(path) : NULL;
    FILE *f = NULL;
    if (dir) {
        *strrchr(dir, '/') = '\0';
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            f = fopen(path, "we");
    }
    /* Held while the run goes: a follower that can take it knows the
     * writer is gone (killed), whatever the record still says. */
    if (f && flock(fileno(f), LOCK_EX | LOCK_NB) != 0) {
        fclose(f);
        f = NULL;
    }
    free(dir);
    free(path);
    return f;
}

void cli_live_write(FILE *f, const char *step, const char *lines)
{
    for (const char *l = lines; l && *l;) {
        size_t n = strcspn(l, "\n");
        fprintf(f, "%s\t%.*s\n", step, (int)n, l);
        l += n + (l[n] == '\n');
    }
    fflush(f);
}

/* The record's steps (and elements) with their logs. */
/* Did this step (or element) of the record end before `since`? Its lines
 * are then all older; one still running, or ended since, is shown whole. */
static bool ended_before(const cJSON *s, uint64_t since)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "finished_ms");
    return since && cJSON_IsNumber(f) && f->valuedouble < (double)since;
}

static void print_record(const cJSON *rec, const char *only, uint64_t since)
{
    const cJSON *s, *e;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rec, "steps")) {
        if (only && strcmp(s->string, only) != 0)
            continue;
        const char *log = cli_json_str(s, "log", NULL);
        if (log && !ended_before(s, since))
            print_lines(s->string, log, strlen(log));
        int k = 0;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(s, "elements")) {
            char label[300];
            snprintf(label, sizeof label, "%s[%d]", s->string, k++);
            log = cli_json_str(e, "log", NULL);
            if (log && !ended_before(e, since) && !ended_before(s, since))
                print_lines(label, log, strlen(log));
        }
    }
}

static cJSON *record(rz_store *st, const char *id, int *rc)
{
    char *json = NULL;
    *rc = rz_store_run_get(st, id, &json);
    cJSON *rec = *rc == RZ_OK ? cJSON_Parse(json) : NULL;
    if (*rc == RZ_OK && !rec)
        *rc = RZ_ENOMEM;
    rz_free(json);
    return rec;
}

static bool running(const cJSON *rec)
{
    const char *s = cli_json_str(rec, "status", "");
    return strcmp(s, "running") == 0 || strcmp(s, "pending") == 0;
}

/* New whole lines of the live file ("STEP\tline"), printed (not those of
 * a step the record says ended before `since`). */
static void tail(FILE *f, const char *only, const cJSON *rec, uint64_t since,
                 char **buf, size_t *cap)
{
    ssize_t n;
    long at = ftell(f);
    while ((n = getline(buf, cap, f)) > 0) {
        if ((*buf)[n - 1] != '\n') {       /* a line still being written */
            fseek(f, at, SEEK_SET);
            break;
        }
        at = ftell(f);
        char *tab = strchr(*buf, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(rec, "steps"), *buf);
        if ((!only || strcmp(*buf, only) == 0) && !ended_before(st, since))
            print_lines(*buf, tab + 1, (size_t)(n - 1 - (tab + 1 - *buf)));
    }
    clearerr(f);
}

static int run_logs(cli *c, const char *id, const char *step)
{
    uint64_t since;
    if (!since_of(c, "flow logs", &since))
        return EXIT_USAGE;
    char *dir = cli_data_dir(c);
    rz_store *st = NULL;
    int rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
    /* `flow run` tells a run's id only once its record is written. */
    cJSON *rec = rc == RZ_OK ? record(st, id, &rc) : NULL;
    if (rc == RZ_ENOENT)
        fprintf(stderr, "rhizos: no run '%s' recorded in %s (rhizos flow runs "
                "lists them)\n", id, dir);
    else if (rc != RZ_OK)
        cli_error(dir ? dir : "rhizos", rc);
    else if (step && !cJSON_HasObjectItem(cJSON_GetObjectItemCaseSensitive(rec, "steps"), step)) {
        fprintf(stderr, "rhizos: run '%s' has no step '%s'\n", id, step);
        rc = RZ_ENOENT;
    }
    char *live = rc == RZ_OK && c->follow ? cli_live_path(dir, id) : NULL;
    FILE *f = live && running(rec) ? fopen(live, "re") : NULL;
    if (rc == RZ_OK && c->json) {
        cJSON *s;
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(rec, "steps"))
            if (ended_before(s, since) && cJSON_HasObjectItem(s, "log"))
                cJSON_ReplaceItemInObjectCaseSensitive(s, "log", cJSON_CreateString(""));
        char *text = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(rec, "steps"));
        cli_print_json(text ? text : "{}");
        free(text);
    } else if (rc == RZ_OK && !f) {
        print_record(rec, step, since);   /* over, or nothing streams it */
    } else if (rc == RZ_OK) {
        char *buf = NULL;
        size_t cap = 0;
        struct timespec ts = { 0, POLL_NS };
        for (int i = 1; ; i++) {
            tail(f, step, rec, since, &buf, &cap);
            if (i % RECORD_EVERY == 0) {
                cJSON_Delete(rec);
                rec = record(st, id, &rc);
                if (rc != RZ_OK || !running(rec))
                    break;
                if (flock(fileno(f), LOCK_SH | LOCK_NB) == 0) {
                    tail(f, step, rec, since, &buf, &cap);
                    fprintf(stderr, "rhizos: run '%s' is no longer running "
                            "(its process is gone, killed?) though its record "
                            "says it is\n", id);
                    rc = RZ_ESTATE;
                    break;
                }
            }
            nanosleep(&ts, NULL);
        }
        tail(f, step, rec, since, &buf, &cap);   /* what came before the end */
        free(buf);
        if (rc != RZ_OK && rc != RZ_ESTATE)
            cli_error(dir, rc);
    }
    if (f)
        fclose(f);
    free(live);
    cJSON_Delete(rec);
    rz_store_close(st);
    free(dir);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

int cli_flow_logs(cli *c)
{
    if (c->nargs < 1 || c->nargs > 2) {
        fprintf(stderr, "rhizos: flow logs: wrong number of arguments. "
                        "Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    const char *step = c->nargs == 2 ? c->args[1] : NULL;
    if (step && !*step) {
        fprintf(stderr, "rhizos: flow logs: the step's id is empty\n");
        return EXIT_USAGE;
    }
    uint64_t id;
    if (cli_parse_u64(c->args[0], UINT64_MAX, &id))
        return deployment_logs(c, id, step);
    if (!*c->args[0]) {
        fprintf(stderr, "rhizos: flow logs: no run or deployment id\n");
        return EXIT_USAGE;
    }
    return run_logs(c, c->args[0], step);
}

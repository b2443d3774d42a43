/* Flow and event triggers of `rhizos flow serve` (docs/triggers.md, "On
 * one machine"), and `rhizos flow publish EVENT [DATA]`.
 *
 * Both go through a spool, DATA/serve/spool/<kind>.<id>.json, written
 * whole and synced: the end of a served run that a served flow follows
 * (kind "flow", id the run's), or an event published (kind "event"). Each
 * pass runs, for every item and every trigger it matches, the follower
 * as run serve-<flow>-<trigger>-<id> unless the run store has that run,
 * then removes the item. So a kill -9 between the runs' start and the
 * removal neither doubles a fire (the run is recorded) nor loses one (the
 * item is still there). The spool is the user's own folder: whoever can
 * write it may publish, as whoever can run `rhizos` as that user.
 *
 * Circles of flow triggers among the served flows are refused at start,
 * as an orchestrator refuses them at deploy. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "serve.h"

#define EVENT_TTL_S 3600        /* an event no server took within this is dropped */
#define SPOOL_FILE_MAX (8l << 20)

static void spool_dir(const char *data, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s/serve/spool", data);
}

static bool word_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

/* Does flow `from` reach `to` by following flow triggers? The path into
 * `path` when it does. */
static bool reaches(const sfollow *f, size_t n, const char *from, const char *to,
                    char *path, size_t cap, unsigned depth)
{
    if (depth > n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (f[i].event || strcmp(f[i].source, from) != 0)
            continue;
        size_t k = strlen(path);
        snprintf(path + k, cap - k, " -> %s", f[i].flow);
        if (!strcmp(f[i].flow, to) || reaches(f, n, f[i].flow, to, path, cap, depth + 1))
            return true;
        path[k] = '\0';
    }
    return false;
}

int serve_follow_check(const sfollow *f, size_t n, const char *const *served, size_t n_served)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].event)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s", f[i].flow);
        if (reaches(f, n, f[i].flow, f[i].flow, path, sizeof path, 0)) {
            fprintf(stderr, "rhizos: flow serve: %s: the flow triggers would run in a circle "
                    "(%s)\n", f[i].file, path);
            return -1;
        }
        bool known = false;
        for (size_t k = 0; k < n_served; k++)
            known = known || !strcmp(served[k], f[i].source);
        if (!known)
            fprintf(stderr, "rhizos: flow serve: %s: trigger '%s' follows flow '%s', which "
                    "is not served here: it will not fire\n", f[i].file, f[i].name,
                    f[i].source);
    }
    return 0;
}

/* Write item `doc` as spool/<kind>.<id>.json, synced. */
static int spool_put(const char *data, const char *kind, const char *id, const cJSON *doc)
{
    char dir[4200], path[4600];
    spool_dir(data, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.%s.json", dir, kind, id);
    char *text = cJSON_PrintUnformatted(doc);
    int rc = text && rz_fs_mkdirs(dir, 0700) == RZ_OK ? serve_write_synced(path, text) : -1;
    free(text);
    return rc;
}

void serve_follow_ended(const sfollow *f, size_t n, const char *data, const char *flow,
                        const char *run)
{
    bool wanted = false;
    for (size_t i = 0; i < n; i++)
        wanted = wanted || (!f[i].event && !strcmp(f[i].source, flow));
    if (!wanted)
        return;
    rz_store *st = NULL;
    char *json = NULL;
    cJSON *rec = NULL;
    if (rz_store_open(&st, data) == RZ_OK && rz_store_run_get(st, run, &json) == RZ_OK)
        rec = cJSON_Parse(json);
    rz_free(json);
    rz_store_close(st);
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "status"));
    if (!status || !strcmp(status, "running")) {
        /* Killed before its record said how it ended: nothing to follow. */
        fprintf(stderr, "rhizos: flow serve: run %s of %s ended without a final record: "
                "its flow triggers do not fire\n", run, flow);
        cJSON_Delete(rec);
        return;
    }
    cJSON *item = cJSON_CreateObject();
    cJSON_AddStringToObject(item, "type", "flow");
    cJSON_AddStringToObject(item, "flow", flow);
    cJSON_AddStringToObject(item, "status", status);
    cJSON_AddStringToObject(item, "run", run);
    cJSON *outs = cJSON_DetachItemFromObjectCaseSensitive(rec, "outputs");
    cJSON_AddItemToObject(item, "outputs", outs ? outs : cJSON_CreateObject());
    if (spool_put(data, "flow", run, item) != 0)
        fprintf(stderr, "rhizos: flow serve: cannot spool the end of %s: %s\n", run,
                strerror(errno));
    cJSON_Delete(item);
    cJSON_Delete(rec);
}

static bool status_matches(const char *want, const char *got)
{
    bool ok = !strcmp(got, "succeeded");
    return !strcmp(want, "any") || (!strcmp(want, "succeeded") ? ok : !ok);
}

/* The follower's run id for spooled item `id`; a long one is shortened
 * by a digest (the run store takes ids under 300 bytes). */
static void follower_id(const sfollow *f, const char *id, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "serve-%s-%s-%s", f->flow, f->name, id);
    if (n < 0 || (size_t)n >= 280) {
        unsigned char h[16];
        char hex[33];
        crypto_generichash(h, sizeof h, (const unsigned char *)id, strlen(id), NULL, 0);
        sodium_bin2hex(hex, sizeof hex, h, sizeof h);
        snprintf(buf, cap, "serve-%s-%s-%s", f->flow, f->name, hex);
    }
}

/* Run follower `f` for item `it` (id `id`), unless it ran already. */
static void fire(cli *c, const sfollow *f, const cJSON *it, const char *id, const char *data)
{
    char run[400];
    follower_id(f, id, run, sizeof run);
    if (serve_run_recorded(data, run))
        return;   /* fired before a crash: done */
    cJSON *in = cJSON_CreateObject(), *tr = cJSON_Duplicate(it, true);
    cJSON_DeleteItemFromObjectCaseSensitive(tr, "t");
    cJSON_AddStringToObject(tr, "name", f->name);
    cJSON_AddItemToObject(in, "trigger", tr);
    char *inputs = f->wants_trigger ? cJSON_PrintUnformatted(in) : NULL;
    pid_t pid = serve_spawn(c, f->file, f->flow, run, inputs ? inputs : "{}", NULL);
    if (pid > 0 && !c->quiet)
        fprintf(stderr, "rhizos: flow serve: %s %s fired: run %s\n", f->flow, f->name, run);
    free(inputs);
    cJSON_Delete(in);
}

static cJSON *read_item(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *text = NULL;
    long n = fp && fseek(fp, 0, SEEK_END) == 0 ? ftell(fp) : -1;
    if (n >= 0 && n < SPOOL_FILE_MAX && fseek(fp, 0, SEEK_SET) == 0 &&
        (text = malloc((size_t)n + 1)))
        text[fread(text, 1, (size_t)n, fp)] = '\0';
    if (fp)
        fclose(fp);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    return doc;
}

void serve_follow_pass(cli *c, const sfollow *f, size_t n, const char *data)
{
    char dir[4200];
    spool_dir(data, dir, sizeof dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *name = e->d_name, *dot = strchr(name, '.');
        size_t nl = strlen(name);
        if (!dot || nl < 6 || strcmp(name + nl - 5, ".json") != 0)
            continue;   /* ".", "..", a ".tmp" being written */
        char path[4600], id[300];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        snprintf(id, sizeof id, "%.*s", (int)(nl - 5 - (size_t)(dot + 1 - name)), dot + 1);
        bool event = !strncmp(name, "event.", 6);
        cJSON *it = read_item(path);
        const char *src = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                                                   it, event ? "event" : "flow"));
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "status"));
        double t = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(it, "t"));
        if (event && src && t + EVENT_TTL_S < (double)serve_now()) {
            fprintf(stderr, "rhizos: flow serve: event %s (%s) waited over an hour for a "
                    "server: dropped\n", id, src);
        } else {
            for (size_t i = 0; src && i < n; i++)
                if (f[i].event == event && !strcmp(f[i].source, src) &&
                    (event || (st && status_matches(f[i].status, st))))
                    fire(c, &f[i], it, id, data);
        }
        cJSON_Delete(it);
        unlink(path);   /* after the runs started: see the top */
    }
    if (d)
        closedir(d);
}

/* rhizos flow publish EVENT [DATA]: spooled for `flow serve` on this
 * machine (the flows served with an `event: EVENT` trigger run). */
int cli_flow_publish(cli *c)
{
    if (c->nargs < 1 || c->nargs > 2) {
        fprintf(stderr, "rhizos: flow publish: wants EVENT [DATA_JSON]. "
                        "Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    if (!word_ok(c->args[0], 64)) {
        fprintf(stderr, "rhizos: flow publish: an event is 1-64 of letters, digits, '_' "
                        "or '-', not '%s'\n", c->args[0]);
        return EXIT_USAGE;
    }
    cJSON *dj = c->nargs == 2 ? cJSON_Parse(c->args[1]) : cJSON_CreateNull();
    if (!dj) {
        fprintf(stderr, "rhizos: flow publish: DATA is not JSON: %.80s\n", c->args[1]);
        return EXIT_USAGE;
    }
    unsigned char r[6];
    char hex[13], id[64];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(id, sizeof id, "%" PRId64 "-%s", (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
             hex);
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "type", "event");
    cJSON_AddStringToObject(it, "event", c->args[0]);
    cJSON_AddItemToObject(it, "data", dj);
    cJSON_AddNumberToObject(it, "t", (double)serve_now());
    char *data = cli_data_dir(c);
    int rc = data ? spool_put(data, "event", id, it) : -1;
    if (rc != 0)
        fprintf(stderr, "rhizos: flow publish: cannot write the event under %s: %s\n",
                data ? data : "the data folder", strerror(errno));
    else if (c->json)
        printf("{\"event\":\"%s\",\"id\":\"%s\"}\n", c->args[0], id);
    else
        printf("%s\n", id);
    if (rc == 0 && !c->quiet && !c->json)
        fprintf(stderr, "rhizos: event %s published under %s: `rhizos flow serve` runs the "
                "flows that wait for it (within a second; within the hour if none runs now)\n",
                c->args[0], data);
    free(data);
    cJSON_Delete(it);
    return rc == 0 ? EXIT_OK : EXIT_FAILED;
}

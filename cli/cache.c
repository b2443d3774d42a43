/* rhizos flow cache clear | list | stats: the step cache that `flow resume`
 * reuses (docs/triggers.md, "Clearing the cache").
 *
 * On this machine the cache is the "step_cache" each finished run's record
 * keeps. A clear is a mark in DATA/cache-clears.json ([{"flow","step",
 * "ms"}], written whole and synced): results of the matching steps taken
 * at or before "ms" are never reused again (the records keep their history
 * until `flow runs --prune` removes them). With --remote the same clear is
 * asked of the orchestrator, for the caller's account only. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "serve.h"

#define MARKS_MAX 256
#define LIST_DEFAULT 20

void cli_cache_usage(void)
{
    printf(
"       rhizos flow cache clear         [--flow NAME] [--step ID] [--data DIR]\n"
"                                       [--remote]\n"
"       rhizos flow cache list          [--flow NAME] [--step ID] [--data DIR]\n"
"                                       [--limit N] [--json]\n"
"       rhizos flow cache stats         [--data DIR] [--limit N] [--json]\n"
"\n"
"The step cache is what `flow resume` reuses: the outputs of steps that\n"
"succeeded, keyed by module, config, inputs and credential ids. `cache clear`\n"
"makes every result taken until now (of flow NAME, of step ID) never reused\n"
"again: the next resume runs those steps (and pays for them on a network).\n"
"On this machine it covers the runs recorded under --data; with --remote it\n"
"asks the orchestrator (DELETE /api/v1/cache) for your account only: another\n"
"account's cache is never touched. `cache list` shows the reusable results of\n"
"the newest runs here (--limit N runs, 0: all; default 20); `cache stats`\n"
"counts them by flow.\n");
}

static char *marks_path(const cli *c)
{
    char *dir = cli_data_dir(c), *p = NULL;
    if (dir && (p = malloc(strlen(dir) + 32)))
        sprintf(p, "%s/cache-clears.json", dir);
    free(dir);
    return p;
}

/* The marks ([] when none yet); NULL when the file is unreadable. */
static cJSON *marks_read(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? cJSON_CreateArray() : NULL;
    /* At most MARKS_MAX marks of two 128-byte names: well under 1 MiB. */
    char *buf = malloc(1u << 20);
    size_t n = buf ? fread(buf, 1, (1u << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    cJSON *m = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    if (!cJSON_IsArray(m)) {
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

static const char *str_of(const cJSON *o, const char *k)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

int cli_cache_filter(const cli *c, const char *flow, char **map)
{
    char *path = marks_path(c);
    cJSON *marks = path ? marks_read(path) : NULL;
    free(path);
    if (!marks) {
        fprintf(stderr, "rhizos: cannot read the step cache's clears (cache-clears.json)\n");
        return -1;
    }
    int rc = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, marks) {
        const char *mf = str_of(m, "flow");
        if (mf && (!flow || strcmp(mf, flow) != 0))
            continue;
        char *out = NULL;
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(m, "ms");
        if (rz_engine_reuse_drop(&out, *map, str_of(m, "step"),
                                 cJSON_IsNumber(ms) ? (uint64_t)ms->valuedouble : 0,
                                 NULL) != RZ_OK) {
            cli_error("step cache", rz_error_last()->code);
            rc = -1;
            break;
        }
        free(*map);
        *map = out;
    }
    cJSON_Delete(marks);
    return rc;
}

static bool name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n >= 1 && n <= 128 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* A newer mark covers the older ones it implies (as on an orchestrator). */
static bool covers(const char *f, const char *s, const cJSON *m)
{
    const char *mf = str_of(m, "flow"), *ms = str_of(m, "step");
    return (!f || (mf && !strcmp(f, mf))) && (!s || (ms && !strcmp(s, ms)));
}

static int clear_local(cli *c)
{
    char *path = marks_path(c);
    cJSON *marks = path ? marks_read(path) : NULL, *keep = cJSON_CreateArray();
    int ex = EXIT_FAILED;
    if (!marks) {
        fprintf(stderr, "rhizos: flow cache clear: cannot read %s\n", path ? path : "");
        goto out;
    }
    const cJSON *m;
    cJSON_ArrayForEach(m, marks)
        if (!covers(c->flow, c->step, m))
            cJSON_AddItemToArray(keep, cJSON_Duplicate(m, true));
    bool all = cJSON_GetArraySize(keep) >= MARKS_MAX;   /* then: all, up to now */
    if (all) {
        cJSON_Delete(keep);
        keep = cJSON_CreateArray();
    }
    cJSON *mine = cJSON_CreateObject();
    cJSON_AddItemToObject(mine, "flow", c->flow && !all ? cJSON_CreateString(c->flow)
                                                        : cJSON_CreateNull());
    cJSON_AddItemToObject(mine, "step", c->step && !all ? cJSON_CreateString(c->step)
                                                        : cJSON_CreateNull());
    cJSON_AddNumberToObject(mine, "ms", (double)now_ms());
    cJSON_AddItemToArray(keep, mine);
    char *text = cJSON_PrintUnformatted(keep);
    char *dir = cli_data_dir(c);
    if (!text || !dir || rz_fs_mkdirs(dir, 0700) != RZ_OK ||
        serve_write_synced(path, text) != 0) {
        fprintf(stderr, "rhizos: flow cache clear: cannot write %s: %s\n", path,
                strerror(errno));
    } else {
        ex = EXIT_OK;
        char *mt = c->json ? cJSON_PrintUnformatted(mine) : NULL;
        if (mt)
            cli_print_json(mt);
        else if (!c->quiet)
            printf("step cache cleared on this machine%s%s%s%s: those results are not "
                   "reused again\n", c->flow ? ": flow " : "", c->flow ? c->flow : "",
                   c->step ? ", step " : "", c->step ? c->step : "");
        free(mt);
    }
    free(dir);
    free(text);
out:
    cJSON_Delete(marks);
    cJSON_Delete(keep);
    free(path);
    return ex;
}

static int clear_remote(cli *c)
{
    char path[400];
    snprintf(path, sizeof path, "/api/v1/cache%s%s%s%s%s", c->flow || c->step ? "?" : "",
             c->flow ? "flow=" : "", c->flow ? c->flow : "", c->flow && c->step ? "&" : "",
             c->step ? "step=" : "");
    if (c->step)
        snprintf(path + strlen(path), sizeof path - strlen(path), "%s", c->step);
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *r = NULL;
    int ex = cli_request(cl, "DELETE", path, NULL, &r);
    if (ex == EXIT_OK && c->json)
        cli_print_json(r);
    else if (ex == EXIT_OK && !c->quiet)
        printf("step cache of your account cleared%s%s%s%s: those results are not reused "
               "again\n", c->flow ? ": flow " : "", c->flow ? c->flow : "",
               c->step ? ", step " : "", c->step ? c->step : "");
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

/* The reusable entries of the newest runs: [{run, flow, step, from, ms}]. */
static cJSON *entries(const cli *c, size_t limit)
{
    char *dir = cli_data_dir(c), *list = NULL;
    rz_store *st = NULL;
    cJSON *out = NULL;
    int rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = rz_store_run_list_newest(st, limit, &list, NULL);
    if (rc != RZ_OK) {
        cli_error(dir ? dir : "data", rc);
        goto done;
    }
    out = cJSON_CreateArray();
    cJSON *runs = cJSON_Parse(list);
    const cJSON *run;
    cJSON_ArrayForEach(run, runs) {
        const char *id = str_of(run, "id"), *flow = str_of(run, "flow");
        char *rec = NULL, *map = NULL;
        if (!id || (c->flow && (!flow || strcmp(flow, c->flow) != 0)) ||
            rz_store_run_get(st, id, &rec) != RZ_OK)
            continue;
        cJSON *doc = cJSON_Parse(rec);
        rz_free(rec);
        cJSON *cache = cJSON_GetObjectItemCaseSensitive(doc, "step_cache");
        map = cJSON_IsObject(cache) ? cJSON_PrintUnformatted(cache) : NULL;
        cJSON_Delete(doc);
        cJSON *left = map && cli_cache_filter(c, flow, &map) == 0 ? cJSON_Parse(map) : NULL;
        free(map);
        for (const cJSON *e = left ? left->child : NULL; e; e = e->next) {
            const char *from = str_of(e, "from"), *at = NULL;
            for (const char *p = from; p && (p = strstr(p, " step ")); p++)
                at = p + 6;
            if (c->step && (!at || strcmp(at, c->step) != 0))
                continue;
            cJSON *x = cJSON_CreateObject();
            cJSON_AddStringToObject(x, "run", id);
            cJSON_AddStringToObject(x, "flow", flow ? flow : "");
            cJSON_AddStringToObject(x, "step", at ? at : "?");
            cJSON_AddStringToObject(x, "from", from ? from : "");
            cJSON_AddNumberToObject(x, "ms", cJSON_GetNumberValue(
                                                 cJSON_GetObjectItemCaseSensitive(e, "ms")));
            cJSON_AddItemToArray(out, x);
        }
        cJSON_Delete(left);
    }
    cJSON_Delete(runs);
done:
    rz_free(list);
    rz_store_close(st);
    free(dir);
    return out;
}

static int list_or_stats(cli *c, bool stats)
{
    uint64_t limit = LIST_DEFAULT;
    if (c->limit && !cli_parse_u64(c->limit, 1000000, &limit)) {
        fprintf(stderr, "rhizos: --limit wants a number of runs (0: all)\n");
        return EXIT_USAGE;
    }
    cJSON *all = entries(c, (size_t)limit);
    if (!all)
        return EXIT_FAILED;
    cJSON *doc = all;
    if (stats) {   /* {"entries": N, "runs": N, "flows": {name: N}} */
        doc = cJSON_CreateObject();
        cJSON *flows = cJSON_CreateObject(), *runs = cJSON_CreateObject();
        const cJSON *e;
        cJSON_ArrayForEach(e, all) {
            const char *f = str_of(e, "flow");
            cJSON *n = cJSON_GetObjectItemCaseSensitive(flows, f);
            if (n)
                cJSON_SetNumberValue(n, n->valuedouble + 1);
            else
                cJSON_AddNumberToObject(flows, f, 1);
            if (!cJSON_GetObjectItemCaseSensitive(runs, str_of(e, "run")))
                cJSON_AddTrueToObject(runs, str_of(e, "run"));
        }
        cJSON_AddNumberToObject(doc, "entries", cJSON_GetArraySize(all));
        cJSON_AddNumberToObject(doc, "runs", cJSON_GetArraySize(runs));
        cJSON_AddItemToObject(doc, "flows", flows);
        cJSON_Delete(runs);
        cJSON_Delete(all);
    }
    char *text = c->json ? cJSON_PrintUnformatted(doc) : NULL;
    if (text) {
        cli_print_json(text);
    } else if (stats) {
        printf("%d reusable step result(s) in %d run(s)\n",
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "entries")),
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(doc, "runs")));
        for (const cJSON *f = cJSON_GetObjectItemCaseSensitive(doc, "flows")->child; f;
             f = f->next)
            printf("  %-24s %d\n", f->string, (int)f->valuedouble);
    } else {
        printf("%-36s %-20s %-20s %s\n", "RUN", "FLOW", "STEP", "TAKEN");
        const cJSON *e;
        cJSON_ArrayForEach(e, doc) {
            time_t t = (time_t)(cJSON_GetNumberValue(
                                    cJSON_GetObjectItemCaseSensitive(e, "ms")) / 1000);
            char when[32];
            struct tm tm;
            strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
            printf("%-36s %-20s %-20s %s\n", str_of(e, "run"), str_of(e, "flow"),
                   str_of(e, "step"), when);
        }
    }
    free(text);
    cJSON_Delete(doc);
    return EXIT_OK;
}

int cli_flow_cache(cli *c)
{
    const char *verb = c->nargs == 1 ? c->args[0] : NULL;
    bool clear = verb && !strcmp(verb, "clear");
    if (!verb || (!clear && strcmp(verb, "list") != 0 && strcmp(verb, "stats") != 0)) {
        fprintf(stderr, "rhizos: flow cache: wants clear, list or stats. "
                        "Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    if ((c->flow && !name_ok(c->flow)) || (c->step && !name_ok(c->step))) {
        fprintf(stderr, "rhizos: flow cache: --flow and --step are 1-128 of letters, "
                        "digits, '_' or '-'\n");
        return EXIT_USAGE;
    }
    if (c->remote && !clear) {
        fprintf(stderr, "rhizos: flow cache %s: only `clear` goes to an orchestrator "
                        "(--remote); `flow status` shows a deployment's results\n", verb);
        return EXIT_USAGE;
    }
    if (clear)
        return c->remote ? clear_remote(c) : clear_local(c);
    return list_or_stats(c, !strcmp(verb, "stats"));
}

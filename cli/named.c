/* rhizos flow list | versions | rollback | schedule | disable | enable:
 * named flows on an orchestrator, their versions and their triggers
 * (docs/triggers.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"

void cli_named_usage(void)
{
    printf(
"       rhizos flow list                [--json]\n"
"       rhizos flow versions NAME|ID    [--json]\n"
"       rhizos flow rollback NAME|ID VERSION\n"
"       rhizos flow schedule NAME|ID    [--limit N] [--json]\n"
"       rhizos flow diff NAME|ID V1 [V2] [--json]   steps added, removed, changed\n"
"                                       from version V1 to V2 (default: the active)\n"
"       rhizos flow disable NAME|ID TRIGGER   switch a trigger off (any version),\n"
"       rhizos flow enable NAME|ID TRIGGER    and on again (a cron one from now)\n");
}

static bool args(const cli *c, const char *verb, int n)
{
    if (c->nargs == n)
        return true;
    fprintf(stderr, "rhizos: flow %s: wrong number of arguments. "
                    "Try 'rhizos flow --help'.\n", verb);
    return false;
}

static cJSON *get(rz_client *cl, const char *path, int *ex)
{
    char *reply = NULL;
    *ex = cli_request(cl, "GET", path, NULL, &reply);
    cJSON *doc = *ex == EXIT_OK ? cJSON_Parse(reply) : NULL;
    rz_free(reply);
    if (*ex == EXIT_OK && !doc) {
        fprintf(stderr, "rhizos: unexpected reply from the orchestrator\n");
        *ex = EXIT_FAILED;
    }
    return doc;
}

/* A named flow's id from its name or its number (the caller's own). */
static bool resolve(rz_client *cl, const char *arg, uint64_t *id, int *ex)
{
    cJSON *doc = get(cl, "/api/v1/named-flows", ex);
    const cJSON *f;
    *id = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(doc, "flows")) {
        char num[24];
        snprintf(num, sizeof num, "%" PRId64, cli_json_int(f, "id"));
        if (strcmp(cli_json_str(f, "name", ""), arg) == 0 || strcmp(num, arg) == 0)
            *id = (uint64_t)cli_json_int(f, "id");
    }
    cJSON_Delete(doc);
    if (*ex == EXIT_OK && !*id) {
        fprintf(stderr, "rhizos: no flow named '%s' (see 'rhizos flow list')\n", arg);
        *ex = EXIT_FAILED;
    }
    return *ex == EXIT_OK;
}

static void when(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int flow_list(const cli *c, rz_client *cl)
{
    int ex;
    cJSON *doc = get(cl, "/api/v1/named-flows", &ex);
    if (doc && c->json) {
        char *s = cJSON_PrintUnformatted(doc);
        cli_print_json(s);
        free(s);
    } else if (doc) {
        printf("%-6s %-24s %-9s %s\n", "ID", "NAME", "VERSION", "TRIGGERS");
        const cJSON *f, *t;
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(doc, "flows")) {
            char ver[32], trig[256] = "";
            snprintf(ver, sizeof ver, "%" PRId64 "/%" PRId64, cli_json_int(f, "active"),
                     cli_json_int(f, "latest"));
            cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(f, "triggers")) {
                size_t n = strlen(trig);
                snprintf(trig + n, sizeof trig - n, "%s%s", n ? ", " : "",
                         cJSON_IsString(t) ? t->valuestring : "?");
            }
            printf("%-6" PRId64 " %-24s %-9s %s\n", cli_json_int(f, "id"),
                   cli_json_str(f, "name", "?"), ver, trig[0] ? trig : "-");
        }
    }
    cJSON_Delete(doc);
    return ex;
}

static cJSON *named(rz_client *cl, const char *arg, unsigned count, int *ex)
{
    uint64_t id;
    if (!resolve(cl, arg, &id, ex))
        return NULL;
    char path[96];
    snprintf(path, sizeof path, "/api/v1/named-flows/%" PRIu64 "?count=%u", id, count);
    return get(cl, path, ex);
}

static void print_json(const cJSON *doc)
{
    char *s = cJSON_PrintUnformatted(doc);
    cli_print_json(s);
    free(s);
}

static int flow_versions(const cli *c, rz_client *cl)
{
    int ex;
    cJSON *doc = named(cl, c->args[0], 0, &ex);
    if (doc && c->json) {
        print_json(cJSON_GetObjectItemCaseSensitive(doc, "versions"));
    } else if (doc) {
        int64_t active = cli_json_int(doc, "active");
        printf("  %-8s %-14s %-21s %s\n", "VERSION", "DIGEST", "CREATED", "NOTE");
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(doc, "versions")) {
            char at[32], dg[16];
            when(cli_json_int(v, "created_ms"), at, sizeof at);
            snprintf(dg, sizeof dg, "%.12s", cli_json_str(v, "digest", ""));
            printf("%c %-8" PRId64 " %-14s %-21s %s\n",
                   cli_json_int(v, "version") == active ? '*' : ' ',
                   cli_json_int(v, "version"), dg, at, cli_json_str(v, "note", ""));
        }
    }
    cJSON_Delete(doc);
    return ex;
}

static int flow_rollback(const cli *c, rz_client *cl)
{
    int ex;
    uint64_t id;
    char *end = NULL;
    unsigned long long v = strtoull(c->args[1], &end, 10);
    if (!end || *end || v == 0) {
        fprintf(stderr, "rhizos: flow rollback: VERSION must be a version number\n");
        return EXIT_USAGE;
    }
    if (!resolve(cl, c->args[0], &id, &ex))
        return ex;
    char path[96], body[64], *reply = NULL;
    snprintf(path, sizeof path, "/api/v1/named-flows/%" PRIu64 "/rollback", id);
    snprintf(body, sizeof body, "{\"version\":%llu}", v);
    ex = cli_request(cl, "POST", path, body, &reply);
    if (ex == EXIT_OK && c->json)
        cli_print_json(reply);
    else if (ex == EXIT_OK)
        printf("flow %s: version %llu is active; its triggers run from now on\n",
               c->args[0], v);
    rz_free(reply);
    return ex;
}

/* flow disable | enable NAME TRIGGER */
static int flow_switch(const cli *c, rz_client *cl, bool on)
{
    const char *t = c->args[1];
    size_t n = strlen(t);
    if (n < 1 || n > 64 || strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_-") != n) {
        fprintf(stderr, "rhizos: flow %s: '%s' is not a trigger name (see 'rhizos flow "
                "schedule NAME')\n", on ? "enable" : "disable", t);
        return EXIT_USAGE;
    }
    int ex;
    uint64_t id;
    if (!resolve(cl, c->args[0], &id, &ex))
        return ex;
    char path[200], *reply = NULL;
    snprintf(path, sizeof path, "/api/v1/named-flows/%" PRIu64 "/triggers/%s/%s", id, t,
             on ? "enable" : "disable");
    ex = cli_request(cl, "POST", path, NULL, &reply);
    if (ex == EXIT_OK && c->json)
        cli_print_json(reply);
    else if (ex == EXIT_OK)
        printf("flow %s: trigger %s %s\n", c->args[0], t,
               on ? "enabled (a cron one fires from now on)" : "disabled");
    rz_free(reply);
    return ex;
}

static void print_names(const char *mark, const cJSON *arr)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
        printf("  %s step %s\n", mark, cJSON_IsString(x) ? x->valuestring : "?");
}

static int flow_diff(const cli *c, rz_client *cl)
{
    int ex;
    uint64_t id, v[2] = { 0, 0 };
    for (int i = 1; i < c->nargs; i++)
        if (!cli_parse_u64(c->args[i], UINT32_MAX, &v[i - 1]) || !v[i - 1]) {
            fprintf(stderr, "rhizos: flow diff: '%s' is not a version number\n", c->args[i]);
            return EXIT_USAGE;
        }
    if (!resolve(cl, c->args[0], &id, &ex))
        return ex;
    char path[128];
    snprintf(path, sizeof path, "/api/v1/named-flows/%" PRIu64 "/diff?from=%" PRIu64
             "&to=%" PRIu64, id, v[0], v[1]);
    cJSON *d = get(cl, path, &ex);
    if (ex == EXIT_OK && c->json) {
        char *t = cJSON_PrintUnformatted(d);
        cli_print_json(t ? t : "{}");
        free(t);
    } else if (ex == EXIT_OK) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(d, "steps"), *x, *f;
        printf("flow %s: version %lld -> %lld\n", c->args[0],
               (long long)cli_json_int(d, "from"), (long long)cli_json_int(d, "to"));
        print_names("+", cJSON_GetObjectItemCaseSensitive(st, "added"));
        print_names("-", cJSON_GetObjectItemCaseSensitive(st, "removed"));
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(st, "changed")) {
            printf("  ~ step %s:", cli_json_str(x, "step", "?"));
            cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(x, "fields"))
                printf(" %s", cJSON_IsString(f) ? f->valuestring : "?");
            printf("\n");
        }
        cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(d, "flow"))
            printf("  ~ %s\n", cJSON_IsString(f) ? f->valuestring : "?");
    }
    cJSON_Delete(d);
    return ex;
}

static int flow_schedule(const cli *c, rz_client *cl)
{
    unsigned count = 5;
    if (c->limit) {
        char *end = NULL;
        unsigned long n = strtoul(c->limit, &end, 10);
        if (!end || *end || n > 100) {
            fprintf(stderr, "rhizos: --limit must be 0..100\n");
            return EXIT_USAGE;
        }
        count = (unsigned)n;
    }
    int ex;
    cJSON *doc = named(cl, c->args[0], count, &ex);
    if (doc && c->json) {
        print_json(doc);
    } else if (doc) {
        printf("flow %s (id %" PRId64 "), version %" PRId64 "\n", cli_json_str(doc, "name", "?"),
               cli_json_int(doc, "id"), cli_json_int(doc, "active"));
        const cJSON *t, *n, *e;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(doc, "active_triggers")) {
            const char *type = cli_json_str(t, "type", "?"), *name = cli_json_str(t, "name", "?");
            bool on = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "enabled")) &&
                      !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "disabled"));
            if (strcmp(type, "cron") == 0)
                printf("  %s: cron \"%s\" in %s, catchup %s, overlap %s%s\n", name,
                       cli_json_str(t, "schedule", "?"), cli_json_str(t, "tz", "UTC"),
                       cli_json_str(t, "catchup", "?"), cli_json_str(t, "overlap", "?"),
                       on ? "" : " (disabled)");
            else
                printf("  %s: %s%s\n", name, type, on ? "" : " (disabled)");
            cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(t, "next"))
                printf("    next %s\n", cli_json_str(n, "local", "?"));
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(doc, "triggers"), name);
            cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(st, "events")) {
                char at[32];
                when(cli_json_int(e, "t") * 1000, at, sizeof at);
                printf("    %s %s", at, cli_json_str(e, "what", "?"));
                if (cJSON_GetObjectItemCaseSensitive(e, "deployment"))
                    printf(" run %" PRId64, cli_json_int(e, "deployment"));
                if (cJSON_GetObjectItemCaseSensitive(e, "reason"))
                    printf(": %s", cli_json_str(e, "reason", ""));
                printf("\n");
            }
        }
    }
    cJSON_Delete(doc);
    return ex;
}

int cli_flow_named(cli *c, const char *verb)
{
    bool list = strcmp(verb, "list") == 0, rollback = strcmp(verb, "rollback") == 0;
    bool diff = strcmp(verb, "diff") == 0;
    bool on = strcmp(verb, "enable") == 0, sw = on || strcmp(verb, "disable") == 0;
    if (diff ? !args(c, verb, c->nargs == 2 ? 2 : 3)
             : !args(c, verb, list ? 0 : rollback || sw ? 2 : 1))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    int ex = list ? flow_list(c, cl)
           : rollback ? flow_rollback(c, cl)
           : diff ? flow_diff(c, cl)
           : sw ? flow_switch(c, cl, on)
           : strcmp(verb, "versions") == 0 ? flow_versions(c, cl) : flow_schedule(c, cl);
    rz_client_free(cl);
    return ex;
}

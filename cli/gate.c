/* rhizos flow pause | resume ID, flow approve | reject ID STEP [--comment T]:
 * a deployment held, and the decisions of its approval steps
 * (docs/triggers.md, "Pause, resume, approval"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

void cli_gate_usage(void)
{
    printf(
"       rhizos flow pause ID | resume ID\n"
"       rhizos flow resume ID [FILE]    [--input NAME=VALUE]... [--note TEXT]\n"
"       rhizos flow resume RUN_ID [FILE] [--data DIR] [--input NAME=VALUE]...\n"
"       rhizos flow approve ID STEP     [--comment TEXT]\n"
"       rhizos flow reject ID STEP      [--comment TEXT]\n"
"\n"
"`pause` stops a deployment from starting steps (running ones finish, holds\n"
"stay); `resume` lets a paused one go on. `resume` of a failed or cancelled\n"
"deployment runs it again as a new one that re-runs only what did not\n"
"succeed: a step whose module, config and inputs are unchanged takes the\n"
"earlier outputs, costs nothing and shows as \"reused\" (with FILE: that\n"
"flow, deployed as `deploy` would, reusing what is unchanged). With a\n"
"RUN_ID of `flow runs` it does the same on this machine: the run's file (or\n"
"FILE) with its inputs, its succeeded steps reused.\n"
"A step with `approval:` waits until its owner\n"
"or one of its approvers runs `approve` (the step's outputs are approved,\n"
"by, comment) or `reject` (the step fails, the steps after it are skipped);\n"
"`flow status` lists what awaits approval.\n");
}

/* Path "/api/v1/flows/<id>/<rest>" for the deployment argument. */
static bool path_for(const cli *c, const char *verb, int n, const char *rest,
                     char *path, size_t cap)
{
    uint64_t id;
    if (c->nargs != n) {
        fprintf(stderr, "rhizos: flow %s: wrong number of arguments. "
                        "Try 'rhizos flow --help'.\n", verb);
        return false;
    }
    if (!cli_parse_u64(c->args[0], UINT64_MAX, &id)) {
        fprintf(stderr, "rhizos: flow: '%s' is not a deployment id\n", c->args[0]);
        return false;
    }
    snprintf(path, cap, "/api/v1/flows/%" PRIu64 "/%s", id, rest);
    return true;
}

/* The step id as a path segment: the same rule as step ids in flows. */
static bool step_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-'))
            return false;
    return n > 0 && n <= 64;
}

static void print_reply(const char *r, const char *id, const char *what)
{
    cJSON *s = cJSON_Parse(r);
    printf("flow %s %s: %s%s\n", id, what, cli_json_str(s, "status", "?"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "paused")) ? ", paused" : "");
    cJSON_Delete(s);
}

/* rhizos flow resume ID [FILE]: a paused deployment goes on; a finished
 * one runs again with its step cache (a new deployment). */
static int flow_resume(cli *c)
{
    uint64_t id;
    if (c->nargs >= 1 && !cli_parse_u64(c->args[0], UINT64_MAX, &id) &&
        strncmp(c->args[0], "run-", 4) == 0)
        return cli_flow_resume_local(c);   /* a run recorded on this machine */
    if (c->nargs < 1 || c->nargs > 2 || !cli_parse_u64(c->args[0], UINT64_MAX, &id)) {
        fprintf(stderr, "rhizos: flow resume: give a deployment id (and a flow FILE "
                        "to resume with). Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    if (c->nargs == 2) {   /* the changed flow, deployed with the cache */
        c->resume_from = id;
        c->args++;
        c->nargs--;
        return cli_flow_deploy(c);
    }
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char path[64], *r = NULL;
    snprintf(path, sizeof path, "/api/v1/flows/%" PRIu64 "/resume", id);
    int ex = cli_request(cl, "POST", path, NULL, &r);
    cJSON *s = ex == EXIT_OK ? cJSON_Parse(r) : NULL;
    if (ex == EXIT_OK && c->json) {
        cli_print_json(r);
    } else if (ex == EXIT_OK && cJSON_GetObjectItemCaseSensitive(s, "resumed_from")) {
        long long nid = (long long)cli_json_int(s, "id");
        printf("%lld\n", nid);
        if (!c->quiet)
            fprintf(stderr, "rhizos: flow %" PRIu64 " resumed as flow %lld (steps that "
                            "succeeded are reused); follow it with 'rhizos flow watch "
                            "%lld'\n", id, nid, nid);
    } else if (ex == EXIT_OK) {
        print_reply(r, c->args[0], "resumed");
    }
    cJSON_Delete(s);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

int cli_flow_gate(cli *c, const char *verb)
{
    if (!strcmp(verb, "resume"))
        return flow_resume(c);
    bool decide = !strcmp(verb, "approve") || !strcmp(verb, "reject");
    char path[200], rest[120];
    if (decide && c->nargs == 2 && !step_ok(c->args[1])) {
        fprintf(stderr, "rhizos: flow %s: '%s' is not a step id\n", verb, c->args[1]);
        return EXIT_USAGE;
    }
    if (decide)
        snprintf(rest, sizeof rest, "steps/%s/%s", c->nargs == 2 ? c->args[1] : "", verb);
    else
        snprintf(rest, sizeof rest, "%s", verb);
    if (!path_for(c, verb, decide ? 2 : 1, rest, path, sizeof path))
        return EXIT_USAGE;
    if (c->comment && !decide) {
        fprintf(stderr, "rhizos: flow %s: --comment is for approve and reject\n", verb);
        return EXIT_USAGE;
    }
    char *body = NULL;
    if (decide) {
        cJSON *b = cJSON_CreateObject();
        if (c->comment)
            cJSON_AddStringToObject(b, "comment", c->comment);
        body = cJSON_PrintUnformatted(b);
        cJSON_Delete(b);
    }
    rz_client *cl = cli_client(c);
    if (!cl) {
        free(body);
        return EXIT_USAGE;
    }
    char *r = NULL;
    int ex = cli_request(cl, "POST", path, body, &r);
    if (ex == EXIT_OK && c->json) {
        cli_print_json(r);
    } else if (ex == EXIT_OK) {
        char what[100];
        if (decide)
            snprintf(what, sizeof what, "step %s %s", c->args[1],
                     verb[0] == 'a' ? "approved" : "rejected");
        else
            snprintf(what, sizeof what, "%s", verb[0] == 'p' ? "paused" : "resumed");
        print_reply(r, c->args[0], what);
    }
    free(body);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

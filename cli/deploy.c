/* rhizos flow deploy | status | watch | cancel — flows on an orchestrator. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "cli.h"
#include "rhizos/client.h"
#include "rhizos/vault.h"

#define FLOW_MAX_BYTES (64u << 20)

void cli_deploy_usage(void)
{
    printf(
"       rhizos flow deploy FILE         [--input NAME=VALUE]... [--vault F]\n"
"                                       [--note TEXT]\n"
"       rhizos flow status ID           [--json]\n"
"       rhizos flow status NAME         [--json]   a named flow's triggers: next\n"
"                                       fires, fired, missed, refused, failed\n"
"       rhizos flow watch ID            [--json]\n"
"       rhizos flow cancel ID\n"
"\n"
"deploy/status/watch/cancel talk to --orchestrator URL with --api-key KEY.\n"
"`deploy` checks the flow locally first (steps whose modules this machine\n"
"lacks are left to the orchestrator), seals the credentials the flow names\n"
"from the vault to the orchestrator's key, and prints the deployment id\n"
"(--json: {\"id\": N}). `status --json` prints the shape of `flow run --json`\n"
"plus each step's job, the job's own status and dispatches, and the money\n"
"held and charged; a running step whose job waits for a node shows as\n"
"\"running (queued for a node)\". `watch` prints a line per step change\n"
"and the log lines of running steps as their nodes send them (\"[t] step |\n"
"line\") until the deployment ends (--json: each status as a line, once)\n"
"and exits 0 only if it succeeded; on a terminal a summary line (done,\n"
"running, waiting, elapsed) stays under them on stderr.\n");
}

static bool need(const cli *c, const char *verb, int n)
{
    if (c->nargs == n)
        return true;
    fprintf(stderr, "rhizos: flow %s: wrong number of arguments. "
                    "Try 'rhizos flow --help'.\n", verb);
    return false;
}

static bool flow_id(const char *s, uint64_t *id)
{
    if (cli_parse_u64(s, UINT64_MAX, id))
        return true;
    fprintf(stderr, "rhizos: flow: '%s' is not a deployment id\n", s);
    return false;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- deploy ---- */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rhizos: %s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FLOW_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, FLOW_MAX_BYTES + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > FLOW_MAX_BYTES;
    if (f != stdin)
        fclose(f);
    if (bad) {
        fprintf(stderr, "rhizos: %s: unreadable or over %u bytes\n", path, FLOW_MAX_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Only unknown-module errors (the orchestrator's registry decides those)? */
static bool only_module_errors(const rz_diags *d)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (x->severity == RZ_SEV_ERROR && x->code != RZ_EMODULE)
            return false;
    }
    return true;
}

/* Parse and check the flow here; NULL (printed) when it is invalid. */
static rz_flow *check_locally(const cli *c, const char *path, const char *text,
                              size_t len, rz_registry **reg, bool *expanded)
{
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    if (rz_diags_new(&d) != RZ_OK)
        return NULL;
    int rc = rz_flow_parse(&flow, text, len, RZ_FORMAT_AUTO, path, d);
    /* Sub-flows are read here, beside the file; their modules are checked
     * below like the parent's (the orchestrator may have those we lack). */
    rz_flow *parsed = flow;
    /* Named sub-flows (flow://NAME@N) are the orchestrator's to expand. */
    if (rc == RZ_OK)
        rc = rz_flow_expand_with(&flow, NULL, cli_expand_opts(true), d);
    *expanded = rc == RZ_OK && flow != parsed;   /* a new flow replaced it */
    *reg = rc == RZ_OK ? cli_registry(c) : NULL;
    if (rc == RZ_OK && *reg &&
        rz_flow_expand_with(&flow, *reg, cli_expand_opts(true), d) != RZ_OK &&
        only_module_errors(d))
        rc = RZ_OK;
    else if (rc == RZ_OK && rz_diags_error_count(d) > 0)
        rc = RZ_EINVALID;
    if (rc != RZ_OK) {
        if (rz_diags_error_count(d) == 0)
            cli_error(path, rc);
        rz_diags_sort(d);
        cli_print_diags(d);
        rz_flow_free(flow);
        flow = NULL;
    }
    rz_diags_free(d);
    return flow;
}

bool cli_orchestrator_key(rz_client *cl, unsigned char pk[RZ_VAULT_NODE_PK_BYTES],
                          int *ex)
{
    char *r = NULL;
    *ex = cli_request(cl, "GET", "/api/v1/keys", NULL, &r);
    if (*ex != EXIT_OK)
        return false;
    cJSON *o = cJSON_Parse(r);
    const char *hex = cli_json_str(o, "x25519_public_key", "");
    size_t n = 0;
    bool ok = strlen(hex) == 2 * RZ_VAULT_NODE_PK_BYTES &&
              sodium_hex2bin(pk, RZ_VAULT_NODE_PK_BYTES, hex, strlen(hex), NULL, &n, NULL) == 0 &&
              n == RZ_VAULT_NODE_PK_BYTES;
    if (!ok) {
        fprintf(stderr, "rhizos: the orchestrator's /api/v1/keys reply has no usable key\n");
        *ex = EXIT_FAILED;
    }
    cJSON_Delete(o);
    rz_free(r);
    return ok;
}

/* {"<credentialId>":"<base64 sealed>"} for the flow, or NULL when it
 * needs none; *ex says why on failure. */
static char *sealed_credentials(const cli *c, rz_client *cl, const rz_flow *flow, int *ex)
{
    *ex = EXIT_OK;
    char *trig = NULL;
    bool hook = rz_flow_triggers(flow, &trig) == RZ_OK && strstr(trig, "\"secret\":");
    rz_free(trig);
    if (rz_vault_flow_references(flow) == 0 && !hook)
        return NULL;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES];
    rz_vault *v = NULL;
    char *json = NULL;
    if (!cli_orchestrator_key(cl, pk, ex))
        return NULL;
    if (!(v = cli_vault_open_unlocked(c))) {
        *ex = EXIT_FAILED;      /* printed */
        return NULL;
    }
    int rc = rz_vault_seal_flow(&json, v, flow, pk, 0);
    rz_vault_close(v);
    const rz_error *e = rz_error_last();
    if (rc != RZ_OK && e->code == rc && e->line)   /* located at the reference */
        fprintf(stderr, "%s:%u:%u: error: %s\n", e->file, e->line, e->column, e->message);
    else if (rc != RZ_OK)
        cli_error(NULL, rc);
    if (rc != RZ_OK)
        *ex = EXIT_FAILED;
    return json;
}

/* The server's diagnostics, under the local file's name. */
static void print_remote_diags(const char *path, const rz_diags *d)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        const char *sev = x->severity == RZ_SEV_WARNING ? "warning"
                        : x->severity == RZ_SEV_NOTE ? "note" : "error";
        fprintf(stderr, "%s:%u:%u: %s: %s\n", path, x->line, x->column, sev, x->message);
    }
}

static int deploy_send(const cli *c, rz_client *cl, const char *path, const char *text,
                       size_t len, const char *inputs, const char *creds)
{
    rz_diags *d = NULL;
    uint64_t id = 0;
    if (rz_diags_new(&d) != RZ_OK)
        return EXIT_FAILED;
    rz_client_deploy_opts o = RZ_CLIENT_DEPLOY_OPTS_INIT;
    o.note = c->note;
    o.resume_from = c->resume_from;
    int rc = rz_client_deploy_ex(cl, text, len, inputs, creds, &o, &id, d);
    int ex = EXIT_OK;
    if (rc == RZ_EINVALID) {
        print_remote_diags(path, d);
        if (rz_diags_error_count(d) == 0)
            cli_error(path, rc);
        ex = EXIT_FAILED;
    } else if (rc != RZ_OK) {
        ex = cli_net_fail(path, rc);
    } else if (c->json) {
        printf("{\"id\": %" PRIu64 "}\n", id);
    } else {
        printf("%" PRIu64 "\n", id);
        if (!c->quiet && c->resume_from)
            fprintf(stderr, "rhizos: deployed %s as flow %" PRIu64 ", reusing what "
                            "flow %" PRIu64 " computed where nothing changed; follow it "
                            "with 'rhizos flow watch %" PRIu64 "'\n", path, id,
                    c->resume_from, id);
        else if (!c->quiet)
            fprintf(stderr, "rhizos: deployed %s as flow %" PRIu64 "; follow it with "
                            "'rhizos flow watch %" PRIu64 "'\n", path, id, id);
    }
    rz_diags_free(d);
    return ex;
}

int cli_flow_deploy(cli *c)
{
    if (!need(c, "deploy", 1))
        return EXIT_USAGE;
    const char *path = c->args[0];
    char *inputs = cli_inputs_json(c);
    if (!inputs)
        return EXIT_USAGE;
    size_t len = 0;
    char *text = read_text(path, &len);
    rz_registry *reg = NULL;
    bool expanded_flow = false;
    rz_flow *flow = text ? check_locally(c, path, text, len, &reg, &expanded_flow) : NULL;
    rz_client *cl = flow ? cli_client(c) : NULL;
    int ex = !text || !flow ? EXIT_FAILED : !cl ? EXIT_USAGE : EXIT_OK;
    char *creds = ex == EXIT_OK ? sealed_credentials(c, cl, flow, &ex) : NULL;
    /* What runs is the flow as checked: with sub-flows, the expanded one. */
    char *expanded = NULL;
    if (ex == EXIT_OK && expanded_flow &&
        rz_flow_to_json(flow, 0, &expanded, &len) != RZ_OK) {
        cli_error(path, RZ_ENOMEM);
        ex = EXIT_FAILED;
    }
    if (ex == EXIT_OK)
        ex = deploy_send(c, cl, path, expanded ? expanded : text, len, inputs, creds);
    rz_free(expanded);
    if (creds)
        sodium_memzero(creds, strlen(creds));
    rz_free(creds);
    rz_client_free(cl);
    rz_flow_free(flow);
    rz_registry_free(reg);
    free(text);
    free(inputs);
    return ex;
}

/* ---- status ---- */

static void print_output(const char *step, const cJSON *port)
{
    char *v = cJSON_PrintUnformatted(port);
    if (v && strlen(v) > 200)
        strcpy(v + 197, "...");
    printf("  %s%s%s: %s\n", step ? step : "", step ? "." : "", port->string,
           v ? v : "?");
    free(v);
}

/* A final step's outputs by port ("step.port: value"), or a flow's
 * declared output that is not an object ("name: value"). */
static void print_outputs(const cJSON *outputs)
{
    const cJSON *step, *port;
    cJSON_ArrayForEach(step, outputs) {
        if (!cJSON_IsObject(step)) {
            print_output(NULL, step);
            continue;
        }
        cJSON_ArrayForEach(port, step)
            print_output(step->string, port);
    }
}

/* "charged $0.07 of $140.00 held, the rest refunded" once finished, "holds
 * $140.00, charged $0.03 so far" while it runs: a finished flow holds
 * nothing any more. */
static void money_words(const cJSON *s, char *buf, size_t cap)
{
    char held[32], charged[32];
    cli_money(cli_json_int(s, "held_micros"), held, sizeof held);
    cli_money(cli_json_int(s, "charged_micros"), charged, sizeof charged);
    if (strcmp(cli_json_str(s, "status", "?"), "running") == 0)
        snprintf(buf, cap, "holds %s, charged %s so far", held, charged);
    else
        snprintf(buf, cap, "charged %s of %s held, the rest refunded", charged, held);
}

/* The run's status of a step, with what its job is doing where the two
 * differ: a "running" step whose job waits in the queue (not taken yet, or
 * declined or lost by a node and queued again) has not started anywhere. */
static const char *step_words(const cJSON *st, char *buf, size_t cap)
{
    const char *run = cli_json_str(st, "status", "?");
    const char *job = cli_json_str(st, "job_status", "");
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "reused"))) {
        snprintf(buf, cap, "%s (reused from %s)", run, cli_json_str(st, "reused_from", "?"));
        return buf;
    }
    const char *why = strcmp(job, "queued") == 0 ? "queued for a node"
                    : strcmp(job, "assigned") == 0 ? "sent to a node, not started"
                    : NULL;
    if (strcmp(run, "running") != 0 || !why)
        return run;
    const char *reason = cli_json_str(st, "waiting_reason", NULL);
    if (reason && strcmp(job, "queued") == 0)
        snprintf(buf, cap, "%s (queued for a node: %s)", run, reason);
    else
        snprintf(buf, cap, "%s (%s)", run, why);
    return buf;
}

/* One row of the status table: a step, or one of its for_each elements. */
static void print_step_row(const char *name, const cJSON *st)
{
    char job[24] = "-";
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(st, "job");
    if (cJSON_IsNumber(j))
        snprintf(job, sizeof job, "%lld", (long long)j->valuedouble);
    char words[320];
    printf("  %-20s %8lld %8s  %s\n", name, (long long)cli_json_int(st, "attempts"),
           job, step_words(st, words, sizeof words));
    const char *err = cli_json_str(st, "error", NULL);
    if (err)
        printf("  %-20s error: %s\n", "", err);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(st, "billing");
    if (cJSON_IsObject(b)) {   /* a service billed by time */
        char paid[48], hold[48];
        cli_money_u64((uint64_t)cli_json_int(b, "paid_micros"), false, paid, sizeof paid);
        cli_money_u64((uint64_t)cli_json_int(b, "interval_hold_micros"), false, hold,
                      sizeof hold);
        printf("  %-20s billed by time: %lld intervals of %lld s paid (%s), %s held "
               "an interval\n", "", (long long)cli_json_int(b, "intervals_paid"),
               (long long)cli_json_int(b, "interval_s"), paid, hold);
    }
}

/* A for_each step's elements: each one while there are at most 20, else a
 * count per status and the (first 20) that did not succeed. */
#define ELEMENT_ROWS 20
static void print_elements(const char *step, const cJSON *els)
{
    int n = cJSON_GetArraySize(els), shown = 0, k = 0;
    if (!n)
        return;
    if (n > ELEMENT_ROWS) {
        const char *names[] = { "succeeded", "running", "pending", "ready", "backoff",
                                "failed", "skipped", "cancelled" };
        printf("  %-20s %d elements:", "", n);
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            int c = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, els)
                c += strcmp(cli_json_str(e, "status", ""), names[i]) == 0;
            if (c)
                printf(" %d %s", c, names[i]);
        }
        printf("\n");
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, els) {
        bool ok = strcmp(cli_json_str(e, "status", ""), "succeeded") == 0;
        if (n <= ELEMENT_ROWS || (!ok && shown < ELEMENT_ROWS)) {
            char name[96];
            snprintf(name, sizeof name, "%.60s[%d]", step, k);
            print_step_row(name, e);
            shown++;
        }
        k++;
    }
}

static void print_flow_status(const cJSON *s)
{
    char money[128];
    money_words(s, money, sizeof money);
    printf("flow %lld (%s): %s, %s\n", (long long)cli_json_int(s, "id"),
           cli_json_str(s, "flow", "?"), cli_json_str(s, "status", "?"), money);
    const cJSON *trig = cJSON_GetObjectItemCaseSensitive(s, "trigger");
    if (cJSON_GetObjectItemCaseSensitive(s, "version"))
        printf("  version %lld of named flow %lld%s%s\n", (long long)cli_json_int(s, "version"),
               (long long)cli_json_int(s, "flow_id"), trig ? ", started by trigger " : "",
               trig ? cli_json_str(trig, "name", "?") : "");
    printf("  %-20s %8s %8s  %s\n", "STEP", "ATTEMPTS", "JOB", "STATUS");
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(s, "steps")) {
        print_step_row(st->string, st);
        print_elements(st->string, cJSON_GetObjectItemCaseSensitive(st, "elements"));
    }
    print_outputs(cJSON_GetObjectItemCaseSensitive(s, "outputs"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "paused")))
        printf("  paused: no step starts until 'rhizos flow resume'\n");
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(s, "awaiting_approval"))
        printf("  awaiting approval: %s (rhizos flow approve|reject %lld %s)\n",
               cli_json_str(w, "step", "?"), (long long)cli_json_int(s, "id"),
               cli_json_str(w, "step", "?"));
    const cJSON *failed = cJSON_GetObjectItemCaseSensitive(s, "failed_steps"), *f;
    if (cJSON_GetArraySize(failed) > 0) {
        printf("  failed steps:");
        cJSON_ArrayForEach(f, failed)
            printf(" %s", cJSON_IsString(f) ? f->valuestring : "?");
        printf("\n");
    }
}

int cli_flow_status(cli *c)
{
    uint64_t id;
    /* A name: the named flow's triggers, with their fires, misses,
     * refusals and failures (as `flow schedule NAME`). */
    if (c->nargs == 1 && !cli_parse_u64(c->args[0], UINT64_MAX, &id) && c->args[0][0] &&
        strspn(c->args[0], "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-0123456789")
            == strlen(c->args[0]))
        return cli_flow_named(c, "schedule");
    if (!need(c, "status", 1) || !flow_id(c->args[0], &id))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *json = NULL;
    int rc = rz_client_flow_status(cl, id, &json);
    int ex = rc == RZ_OK ? EXIT_OK : cli_net_fail(NULL, rc);
    if (ex == EXIT_OK && c->json) {
        cli_print_json(json);
    } else if (ex == EXIT_OK) {
        cJSON *s = cJSON_Parse(json);
        print_flow_status(s);
        cJSON_Delete(s);
    }
    rz_free(json);
    rz_client_free(cl);
    return ex;
}

/* ---- watch ---- */

typedef struct watch {
    const cli *c;
    double t0;
    cJSON *seen;           /* step id -> last status printed */
    char *last;            /* the last status object (JSON text) */
    bool ended;
    bool finished_before;  /* the first event was already the end */
    bool tty;              /* a live summary line on stderr */
    bool line_shown;
} watch;

static void clear_line(watch *w)
{
    if (w->line_shown)
        fputs("\r\033[K", stderr);
    w->line_shown = false;
}

/* "3/6 done, 2 running, 1 waiting, 12.3 s": from what each step last
 * showed, redrawn after every event (output lines go above it). */
static void summary(watch *w)
{
    if (!w->tty || w->finished_before)
        return;
    unsigned total = 0, done = 0, running = 0, waiting = 0;
    const cJSON *st;
    cJSON_ArrayForEach(st, w->seen) {
        const char *v = cJSON_IsString(st) ? st->valuestring : "";
        total++;
        if (strstr(v, "queued") || strncmp(v, "pending", 7) == 0)
            waiting++;
        else if (strncmp(v, "running", 7) == 0)
            running++;
        else
            done++;
    }
    fflush(stdout);
    fprintf(stderr, "\r\033[K%u/%u done, %u running, %u waiting, %.1f s", done, total,
            running, waiting, now_s() - w->t0);
    fflush(stderr);
    w->line_shown = true;
}

/* A step of a flow that had already finished: the times the run recorded
 * (since it began), not the watcher's. */
static void finished_step_line(const cJSON *st, const char *now)
{
    const cJSON *at = cJSON_GetObjectItemCaseSensitive(st, "started_ms");
    const cJSON *took = cJSON_GetObjectItemCaseSensitive(st, "duration_ms");
    if (!cJSON_IsNumber(at)) {
        printf("  %9s %-20s %s", "", st->string, now);   /* never started */
        return;
    }
    double end = at->valuedouble + (cJSON_IsNumber(took) ? took->valuedouble : 0);
    printf("[%7.1fs] %-20s %s", end / 1000.0, st->string, now);
    if (cJSON_IsNumber(took))
        printf(" in %.2f s", took->valuedouble / 1000.0);
}

static void step_lines(watch *w, const cJSON *s)
{
    const cJSON *st;
    cJSON_ArrayForEach(st, cJSON_GetObjectItemCaseSensitive(s, "steps")) {
        char words[320];
        const char *now = step_words(st, words, sizeof words);
        const cJSON *before = cJSON_GetObjectItemCaseSensitive(w->seen, st->string);
        if (cJSON_IsString(before) && strcmp(before->valuestring, now) == 0)
            continue;
        if (!before && strcmp(now, "pending") == 0) {
            cJSON_AddStringToObject(w->seen, st->string, now);
            continue;       /* nothing to say yet */
        }
        clear_line(w);
        if (w->finished_before)
            finished_step_line(st, now);
        else
            printf("[%7.1fs] %-20s %s", now_s() - w->t0, st->string, now);
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(st, "job");
        long long att = cli_json_int(st, "attempts");
        long long sent = cli_json_int(st, "dispatches");
        if (cJSON_IsNumber(j) && sent > att)   /* declined or lost, resent */
            printf("  (job %lld, attempt %lld, dispatch %lld)",
                   (long long)j->valuedouble, att, sent);
        else if (cJSON_IsNumber(j))
            printf("  (job %lld, attempt %lld)", (long long)j->valuedouble, att);
        const char *err = cli_json_str(st, "error", NULL);
        printf("%s%s\n", err ? ": " : "", err ? err : "");
        cJSON_DeleteItemFromObjectCaseSensitive(w->seen, st->string);
        cJSON_AddStringToObject(w->seen, st->string, now);
    }
    fflush(stdout);
    summary(w);
}

/* A stream of changes: one step's status, {"step":"<id>",...}, shown as
 * step_lines shows it in a whole status. */
static int on_step(watch *w, cJSON *s)
{
    cJSON *id = cJSON_DetachItemFromObjectCaseSensitive(s, "step");
    cJSON *doc = cJSON_CreateObject();
    cJSON *steps = doc ? cJSON_AddObjectToObject(doc, "steps") : NULL;
    if (cJSON_IsString(id) && steps &&
        cJSON_AddItemToObject(steps, id->valuestring, s))
        step_lines(w, doc);
    else
        cJSON_Delete(s);
    cJSON_Delete(id);
    cJSON_Delete(doc);
    return 0;
}

/* A running step's log lines as its node sends them, shown as `flow run`
 * shows a local step's: "[t] step | line". */
static int on_log(watch *w, cJSON *s)
{
    const char *step = cli_json_str(s, "step", "?");
    const char *l = cli_json_str(s, "lines", NULL);
    double t = now_s() - w->t0;
    clear_line(w);
    while (l && *l) {
        size_t n = strcspn(l, "\n");
        printf("[%7.1fs] %-20s | %.*s\n", t, step, (int)n, l);
        l += n + (l[n] == '\n');
    }
    fflush(stdout);
    summary(w);
    cJSON_Delete(s);
    return 0;
}

static int on_event(void *ud, const char *event, const char *data)
{
    watch *w = ud;
    cJSON *s = cJSON_Parse(data);
    if (!cJSON_IsObject(s)) {
        cJSON_Delete(s);
        return 0;           /* not a status: nothing of ours */
    }
    if (strcmp(event, "step") == 0)
        return on_step(w, s);
    if (strcmp(event, "step_log") == 0)
        return on_log(w, s);
    if (!w->last && strcmp(event, "end") == 0)
        w->finished_before = true;
    if (w->c->json) {
        /* Each status once: the end repeats the last change's status. */
        char *line = cJSON_PrintUnformatted(s);
        if (!w->last || strcmp(w->last, line ? line : data) != 0)
            printf("%s\n", line ? line : data);
        fflush(stdout);
        free(w->last);
        w->last = line ? line : strdup(data);
        w->ended = w->ended || strcmp(event, "end") == 0;
        cJSON_Delete(s);
        return 0;
    } else {
        step_lines(w, s);
    }
    free(w->last);
    w->last = strdup(data);
    w->ended = w->ended || strcmp(event, "end") == 0;
    cJSON_Delete(s);
    return 0;
}

static int watch_result(watch *w)
{
    clear_line(w);
    cJSON *s = w->last ? cJSON_Parse(w->last) : NULL;
    const char *status = cli_json_str(s, "status", "?");
    if (!w->c->json) {
        if (w->finished_before)
            printf("flow %lld had already finished: %s\n",
                   (long long)cli_json_int(s, "id"), status);
        else
            printf("flow %lld %s after %.1f s\n", (long long)cli_json_int(s, "id"),
                   status, now_s() - w->t0);
        print_outputs(cJSON_GetObjectItemCaseSensitive(s, "outputs"));
    }
    int ex = strcmp(status, "succeeded") == 0 ? EXIT_OK : EXIT_FAILED;
    cJSON_Delete(s);
    return ex;
}

int cli_flow_watch(cli *c)
{
    uint64_t id;
    if (!need(c, "watch", 1) || !flow_id(c->args[0], &id))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    watch w = { c, now_s(), cJSON_CreateObject(), NULL, false, false,
                !c->json && !c->quiet && cli_stderr_tty(), false };
    char path[64];
    /* Changes, not the whole status at every change (--json prints each
     * status as it comes, so it keeps those). */
    snprintf(path, sizeof path, "/api/v1/flows/%" PRIu64 "/events%s", id,
             c->json ? "" : "?changes=1");
    int rc = rz_client_events(cl, path, 0, on_event, &w);
    if (rc == RZ_OK && !w.ended) {
        /* The stream closed early: ask once where the deployment stands. */
        char *json = NULL;
        rc = rz_client_flow_status(cl, id, &json);
        if (rc == RZ_OK) {
            free(w.last);
            w.last = strdup(json);
        }
        rz_free(json);
    }
    int ex = rc == RZ_OK ? watch_result(&w) : cli_net_fail(NULL, rc);
    cJSON_Delete(w.seen);
    free(w.last);
    rz_client_free(cl);
    return ex;
}

/* ---- cancel ---- */

int cli_flow_cancel(cli *c)
{
    uint64_t id;
    if (!need(c, "cancel", 1) || !flow_id(c->args[0], &id))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char path[64], *r = NULL;
    snprintf(path, sizeof path, "/api/v1/flows/%" PRIu64, id);
    int ex = cli_request(cl, "DELETE", path, NULL, &r);
    if (ex == EXIT_OK && c->json) {
        cli_print_json(r);
    } else if (ex == EXIT_OK) {
        cJSON *s = cJSON_Parse(r);
        char money[128];
        money_words(s, money, sizeof money);
        printf("flow %" PRIu64 " %s: %s\n", id, cli_json_str(s, "status", "cancelled"),
               money);
        cJSON_Delete(s);
    }
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

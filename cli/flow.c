/* rhizos flow validate | plan | run | runs | export (serve: serve.c) */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

void cli_flow_usage(void)
{
    printf(
"usage: rhizos flow validate FILE...   [--json] [--modules DIR]\n"
"       rhizos flow plan FILE           [--json | --format dot|mermaid]\n"
"       rhizos flow run FILE            [--input NAME=VALUE]... [--data DIR]\n"
"                                       [--jobs N] [--no-sandbox] [--json]\n"
"                                       [--container-host unix:///PATH]\n"
"                                       [--prices FILE|DIR]\n"
"                                       [--llm KIND=URL]\n"
"       rhizos flow runs [RUN_ID]       [--data DIR] [--limit N] [--json]\n"
"       rhizos flow logs ID [STEP]      [--follow] [--since T] [--json] [--data DIR]\n"
"       rhizos flow file ID STEP OUTPUT [-o PATH|-] [--data DIR]   save a step's\n"
"                                       file output (of a deployment or a run),\n"
"                                       its digest checked\n"
"       rhizos flow stop ID             end a run that runs until stopped (a\n"
"                                       service): an embedded run on this machine\n"
"                                       [--data DIR], or a deployment (as cancel)\n"
"       rhizos flow export FILE         [--format json|yaml|cbor]\n"
"       rhizos flow estimate FILE       [--json] [--prices FILE|DIR]\n"
);
    cli_serve_usage();
    cli_deploy_usage();
    cli_named_usage();
    cli_gate_usage();
    cli_cache_usage();
    printf(
"\n"
"FILE is a JSON builder document or a FluxGraph YAML file ('-' reads stdin).\n"
"Problems are printed as FILE:LINE:COLUMN: error: MESSAGE, all at once;\n"
"with --json, `validate` prints [{\"file\",\"line\",\"column\",\"code\",\"message\"}].\n"
"`run` executes steps on this machine through their adapters (host\n"
"processes; containers through the Docker Engine API at --container-host,\n"
"else DOCKER_HOST, else /var/run/docker.sock or /run/podman/podman.sock), in\n"
"parallel where the graph allows, records the run under --data and exits 0\n"
"only if the run succeeded. A run here is charged nothing; its record\n"
"says what its steps' time would cost to rent (\"cost_micros\": the\n"
"cheapest fitting node class of the shipped price tables, or --prices).\n"
"A step `flow: FILE` runs that flow file (a sub-flow, read beside FILE);\n"
"`flow: flow://NAME@N` runs version N of a named flow: `deploy` leaves it to\n"
"the orchestrator, here it is read from $RHIZOS_FLOWS/NAME@N.yaml;\n"
"`rhizos --orchestrator URL flow validate` has that orchestrator check it.\n"
"`runs` lists the newest 20 recorded runs with that cost (a run whose\n"
"process was killed before its end shows as killed)\n"
"(--limit N: N of them, 0: all; --json prints the same list); `runs RUN_ID`\n"
"shows one run: its steps with status, attempts, times, cost, inputs,\n"
"outputs, errors and logs (--json: the whole record).\n"
"`serve` runs the flows' cron triggers on this machine until stopped, each\n"
"fire a `flow run` recorded under --data as serve-FLOW-TRIGGER-TIME, once\n"
"(a restart neither loses nor repeats a fire); with --listen it takes\n"
"signed webhook calls at POST /hooks/FLOW/NAME (docs/triggers.md). A served\n"
"flow with `{type: flow, flow: NAME}` runs when a served run of NAME ends\n"
"(circles refused); one with `{event: NAME}` when `flow publish NAME [DATA]`\n"
"is run with the same --data. `overlap: queue` runs a fire due while the\n"
"last run runs after it (at most 10 waiting).\n"
"`plan --format dot` prints the graph for Graphviz (rhizos flow plan F\n"
"--format dot | dot -Tsvg > flow.svg); `--format mermaid` for Markdown\n"
"pages; the critical path is drawn heavier.\n");
}

static int need_args(const cli *c, const char *verb, int min, int max)
{
    if (c->nargs < min || (max >= 0 && c->nargs > max)) {
        fprintf(stderr, "rhizos: flow %s: wrong number of arguments. "
                        "Try 'rhizos flow --help'.\n", verb);
        return -1;
    }
    return 0;
}

/* Load and validate one flow; diagnostics go to `all` (JSON mode) or are
 * printed. Returns the flow, or NULL if it has errors. `keep_named`:
 * named sub-flows are left for an orchestrator to check. */
static rz_flow *load_checked(const cli *c, const char *path, const rz_registry *reg,
                             rz_diags *all, bool keep_named)
{
    rz_diags *d = all;
    if (!d && rz_diags_new(&d) != RZ_OK)
        return NULL;
    rz_flow *flow = NULL;
    int rc = rz_flow_load(&flow, path, RZ_FORMAT_AUTO, d);
    if (rc == RZ_OK)
        rc = rz_flow_expand_with(&flow, reg, cli_expand_opts(keep_named), d);
    /* Errors without a diagnostic (unreadable file, no memory) still say why. */
    if (rc != RZ_OK && rz_diags_error_count(d) == 0)
        cli_error(path, rc);
    if (!all) {
        rz_diags_sort(d);
        cli_print_diags(d);
        rz_diags_free(d);
    }
    if (rc != RZ_OK) {
        rz_flow_free(flow);
        return NULL;
    }
    return flow;
}

/* Whether the flow still runs a named sub-flow (kept for the orchestrator). */
static bool runs_named(const rz_flow *f)
{
    for (size_t i = 0; i < rz_flow_step_count(f); i++)
        if (rz_flow_step_subflow(f, i))
            return true;
    return false;
}

/* One diagnostic of the orchestrator's answer in the file's terms: one
 * about the document sent ("flow") located by its pointer in the file
 * (`at`: the flow as loaded); a named flow's as the orchestrator located
 * it. Added to `out` (--json), else printed. */
static void remote_diag(const cJSON *dg, const char *path, const rz_flow *at, cJSON *out)
{
    const char *file = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dg, "file"));
    const char *ptr = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dg, "pointer"));
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dg, "message"));
    const char *sev = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dg, "severity"));
    double l = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(dg, "line"));
    double k = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(dg, "column"));
    uint32_t line = l >= 0 && l <= UINT32_MAX ? (uint32_t)l : 0;
    uint32_t col = k >= 0 && k <= UINT32_MAX ? (uint32_t)k : 0;
    if (!file || strcmp(file, "flow") == 0) {
        file = path;
        rz_flow_locate(at, ptr, &line, &col);
    }
    cJSON *o = out ? cJSON_Duplicate(dg, true) : NULL;
    if (o) {
        cJSON_ReplaceItemInObjectCaseSensitive(o, "file", cJSON_CreateString(file));
        cJSON_ReplaceItemInObjectCaseSensitive(o, "line", cJSON_CreateNumber(line));
        cJSON_ReplaceItemInObjectCaseSensitive(o, "column", cJSON_CreateNumber(col));
        cJSON_AddItemToArray(out, o);
    } else if (!out && line) {
        fprintf(stderr, "%s:%u:%u: %s: %s\n", file, line, col, sev ? sev : "error",
                msg ? msg : "?");
    } else if (!out) {
        fprintf(stderr, "%s: %s: %s\n", file, sev ? sev : "error", msg ? msg : "?");
    }
}

/* The flow (files expanded here) validated by the orchestrator, which
 * expands its named sub-flows from the caller's own named flows; its
 * diagnostics printed, or added to `out` (--json). */
static int validate_there(cli *c, rz_client **cl, const char *path, const rz_flow *flow,
                          cJSON *out)
{
    if (!*cl && !(*cl = cli_client(c)))
        return EXIT_USAGE;
    char *text = NULL, *reply = NULL, *body = NULL;
    size_t len = 0;
    cJSON *req = rz_flow_to_json(flow, 0, &text, &len) == RZ_OK ? cJSON_CreateObject() : NULL;
    if (req && cJSON_AddStringToObject(req, "flow", text))
        body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    rz_free(text);
    if (!body) {
        cli_error(path, RZ_ENOMEM);
        return EXIT_FAILED;
    }
    int ex = cli_request(*cl, "POST", "/api/v1/flows/validate", body, &reply);
    free(body);
    cJSON *doc = ex == EXIT_OK ? cJSON_Parse(reply) : NULL;
    rz_free(reply);
    if (ex != EXIT_OK)
        return ex;
    /* Expanded, the flow is new text: locate in the file as written. */
    rz_flow *file = NULL;
    if (strcmp(path, "-") == 0 || rz_flow_load(&file, path, RZ_FORMAT_AUTO, NULL) != RZ_OK)
        file = NULL;
    const cJSON *dg;
    cJSON_ArrayForEach(dg, cJSON_GetObjectItemCaseSensitive(doc, "diagnostics"))
        remote_diag(dg, path, file ? file : flow, out);
    rz_flow_free(file);
    const cJSON *valid = cJSON_GetObjectItemCaseSensitive(doc, "valid");
    ex = cJSON_IsBool(valid) ? (cJSON_IsTrue(valid) ? EXIT_OK : EXIT_FAILED) : EXIT_FAILED;
    if (!cJSON_IsBool(valid))
        fprintf(stderr, "rhizos: %s: the orchestrator's answer is not a validation\n", path);
    cJSON_Delete(doc);
    return ex;
}

/* The diagnostics of every file as one JSON list: the local ones, then
 * the orchestrator's. */
static void print_all_json(rz_diags *all, cJSON *there)
{
    char *json = NULL;
    rz_diags_sort(all);
    cJSON *list = rz_diags_to_json(all, &json) == RZ_OK ? cJSON_Parse(json) : NULL;
    rz_free(json);
    cJSON *x;
    while (list && there && (x = cJSON_DetachItemFromArray(there, 0)))
        cJSON_AddItemToArray(list, x);
    char *text = list ? cJSON_PrintUnformatted(list) : NULL;
    if (text)
        cli_print_json(text);
    free(text);
    cJSON_Delete(list);
}

static int flow_validate(cli *c)
{
    if (need_args(c, "validate", 1, -1) != 0)
        return EXIT_USAGE;
    rz_registry *reg = cli_registry(c);
    rz_diags *all = NULL;
    if (!reg || (c->json && rz_diags_new(&all) != RZ_OK))
        return EXIT_FAILED;
    /* --orchestrator given: named sub-flows are checked there. */
    bool there = c->orchestrator != NULL;
    cJSON *remote = all ? cJSON_CreateArray() : NULL;
    rz_client *cl = NULL;
    int status = EXIT_OK;
    for (int i = 0; i < c->nargs; i++) {
        rz_flow *flow = load_checked(c, c->args[i], reg, all, there);
        int ex = !flow ? EXIT_FAILED
               : there && runs_named(flow) ? validate_there(c, &cl, c->args[i], flow, remote)
               : EXIT_OK;
        if (ex == EXIT_OK && !c->json && !c->quiet)
            printf("%s: ok (%zu step%s)\n", c->args[i], rz_flow_step_count(flow),
                   rz_flow_step_count(flow) == 1 ? "" : "s");
        if (ex != EXIT_OK && status == EXIT_OK)
            status = ex;
        rz_flow_free(flow);
        if (ex == EXIT_USAGE || ex == EXIT_UNREACHABLE)
            break;
    }
    if (all) {
        print_all_json(all, remote);
        rz_diags_free(all);
    }
    cJSON_Delete(remote);
    rz_client_free(cl);
    rz_registry_free(reg);
    return status;
}

static void print_plan_text(const rz_flow *flow, const rz_plan *plan)
{
    size_t n = rz_plan_stage_count(plan);
    for (size_t s = 0; s < n; s++) {
        printf("stage %zu:", s + 1);
        for (size_t i = 0; i < rz_plan_stage_size(plan, s); i++)
            printf(" %s", rz_flow_step_id(flow, rz_plan_stage_step(plan, s, i)));
        printf("\n");
    }
    size_t len;
    const size_t *path = rz_plan_critical_path(plan, &len);
    printf("critical path:");
    for (size_t i = 0; i < len; i++)
        printf("%s%s", i ? " -> " : " ", rz_flow_step_id(flow, path[i]));
    printf(" (%.1f s estimated)\n", rz_plan_critical_seconds(plan));
}

static bool on_path(const size_t *path, size_t len, size_t a, size_t b)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (path[i] == a && path[i + 1] == b)
            return true;
    return false;
}

/* A step id or module as a quoted DOT string or Mermaid label. */
static void print_quoted(const char *s, bool mermaid)
{
    for (; *s; s++) {
        if (mermaid && *s == '"')
            fputs("#quot;", stdout);
        else if (mermaid && (*s == '<' || *s == '>'))
            fputs(*s == '<' ? "#lt;" : "#gt;", stdout);
        else if (!mermaid && (*s == '"' || *s == '\\'))
            printf("\\%c", *s);
        else if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
}

/* The graph for Graphviz (`dot -Tsvg`) or Mermaid, steps in plan order,
 * the critical path drawn heavier. */
static void print_plan_graph(const rz_flow *flow, const rz_plan *plan, bool mermaid)
{
    size_t len, n = rz_flow_step_count(flow);
    const size_t *path = rz_plan_critical_path(plan, &len);
    if (mermaid)
        printf("flowchart LR\n");
    else {
        printf("digraph \"");
        print_quoted(rz_flow_name(flow), false);
        printf("\" {\n  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    }
    for (size_t s = 0; s < rz_plan_stage_count(plan); s++)
        for (size_t k = 0; k < rz_plan_stage_size(plan, s); k++) {
            size_t i = rz_plan_stage_step(plan, s, k);
            const char *mod = rz_flow_step_module(flow, i);
            printf(mermaid ? "  s%zu[\"" : "  s%zu [label=\"", i);
            print_quoted(rz_flow_step_id(flow, i), mermaid);
            if (mod) {
                fputs(mermaid ? "<br/>" : "\\n", stdout);
                print_quoted(mod, mermaid);
            }
            printf(mermaid ? "\"]\n" : "\"];\n");
        }
    for (size_t i = 0; i < n; i++) {
        size_t nd;
        const size_t *deps = rz_flow_step_deps(flow, i, &nd);
        for (size_t k = 0; k < nd; k++) {
            bool crit = on_path(path, len, deps[k], i);
            if (mermaid) {
                printf("  s%zu %s s%zu\n", deps[k], crit ? "==>" : "-->", i);
            } else {
                printf("  s%zu -> s%zu%s;\n", deps[k], i,
                       crit ? " [penwidth=2.5, color=\"#c0392b\"]" : "");
            }
        }
    }
    if (!mermaid)
        printf("}\n");
}

static int flow_plan(cli *c)
{
    if (need_args(c, "plan", 1, 1) != 0)
        return EXIT_USAGE;
    const char *fmt = c->format ? c->format : c->json ? "json" : "text";
    if (strcmp(fmt, "text") && strcmp(fmt, "json") && strcmp(fmt, "dot") &&
        strcmp(fmt, "mermaid")) {
        fprintf(stderr, "rhizos: flow plan --format: text, json, dot or mermaid\n");
        return EXIT_USAGE;
    }
    rz_registry *reg = cli_registry(c);
    rz_flow *flow = reg ? load_checked(c, c->args[0], reg, NULL, false) : NULL;
    int status = EXIT_FAILED;
    rz_plan *plan = NULL;
    rz_diags *d = NULL;
    if (flow && rz_diags_new(&d) == RZ_OK) {
        int rc = rz_plan_build(&plan, flow, d);
        cli_print_diags(d);
        if (rc != RZ_OK && rz_diags_error_count(d) == 0)
            cli_error(c->args[0], rc);
    }
    if (plan) {
        char *json = NULL;
        if (strcmp(fmt, "dot") == 0 || strcmp(fmt, "mermaid") == 0)
            print_plan_graph(flow, plan, fmt[0] == 'm');
        else if (strcmp(fmt, "text") == 0)
            print_plan_text(flow, plan);
        else if (rz_plan_to_json(plan, &json) == RZ_OK)
            cli_print_json(json);
        rz_free(json);
        status = EXIT_OK;
    }
    rz_diags_free(d);
    rz_plan_free(plan);
    rz_flow_free(flow);
    rz_registry_free(reg);
    return status;
}

static int flow_export(cli *c)
{
    if (need_args(c, "export", 1, 1) != 0)
        return EXIT_USAGE;
    const char *fmt = c->format ? c->format : "json";
    if (strcmp(fmt, "json") && strcmp(fmt, "yaml") && strcmp(fmt, "cbor")) {
        fprintf(stderr, "rhizos: --format must be json, yaml or cbor, not '%s'\n", fmt);
        return EXIT_USAGE;
    }
    rz_diags *d = NULL;
    rz_flow *flow = NULL;
    if (rz_diags_new(&d) != RZ_OK)
        return EXIT_FAILED;
    int rc = rz_flow_load(&flow, c->args[0], RZ_FORMAT_AUTO, d);
    cli_print_diags(d);
    if (rc != RZ_OK && rz_diags_error_count(d) == 0)
        cli_error(c->args[0], rc);
    rz_diags_free(d);
    if (rc != RZ_OK)
        return EXIT_FAILED;
    char *out = NULL;
    size_t len = 0;
    if (strcmp(fmt, "json") == 0)
        rc = rz_flow_to_json(flow, RZ_EXPORT_PRETTY, &out, &len);
    else if (strcmp(fmt, "yaml") == 0)
        rc = rz_flow_to_yaml(flow, &out, &len);
    else
        rc = rz_flow_to_cbor(flow, (unsigned char **)&out, &len);
    if (rc == RZ_OK) {
        fwrite(out, 1, len, stdout);
        if (strcmp(fmt, "json") == 0)
            fputc('\n', stdout);
    } else {
        cli_error(c->args[0], rc);
    }
    rz_free(out);
    rz_flow_free(flow);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

/* ---- flow run ---- */

typedef struct progress {
    const cli *c;
    bool tty;
    bool status_shown;
    size_t total;
    cJSON *reused;       /* step id -> where its outputs came from */
    FILE *live;          /* DATA/live/RUN.log (flow logs --follow) or NULL */
    char *header;        /* "running FLOW ... as RUN", until told */
    FILE *held;          /* what comes before it, told after it */
    char *held_buf;
    size_t held_len;
} progress;

static void count_states(const rz_run *run, size_t n, size_t *done,
                         size_t *running)
{
    *done = *running = 0;
    for (size_t i = 0; i < n; i++) {
        rz_step_state s = rz_run_step_state(run, i);
        if (s == RZ_STEP_RUNNING)
            (*running)++;
        else if (s >= RZ_STEP_SUCCEEDED)
            (*done)++;
    }
}

static const char *event_word(rz_event_kind k)
{
    switch (k) {
    case RZ_EVENT_STEP_STARTED: return "started";
    case RZ_EVENT_STEP_SUCCEEDED: return "succeeded";
    case RZ_EVENT_STEP_FAILED: return "FAILED";
    case RZ_EVENT_STEP_RETRYING: return "failed, will retry";
    case RZ_EVENT_STEP_SKIPPED: return "skipped";
    case RZ_EVENT_STEP_CANCELLED: return "cancelled";
    default: return "";
    }
}

/* The bottom line of the TTY view, redrawn in place. */
static void draw_status(progress *p, const rz_event *ev)
{
    size_t done, running;
    count_states(ev->run, p->total, &done, &running);
    if (p->status_shown)
        fputs("\r\033[K", stderr);
    fprintf(stderr, "  %zu/%zu done, %zu running, %zu queued  %.1fs",
            done, p->total, running, p->total - done - running,
            (double)ev->elapsed_ms / 1000.0);
    /* A step's own progress (an image pull), on the same redrawn line. */
    if (ev->kind == RZ_EVENT_PROGRESS && ev->message)
        fprintf(stderr, "  %s: %.100s",
                rz_flow_step_id(rz_run_flow(ev->run), ev->step), ev->message);
    p->status_shown = true;
    fflush(stderr);
}

/* Up to `cap` bytes of a formatted piece at line + *len; *len counts what
 * the whole would take, so a line that did not fit shows as *len >= cap. */
static void line_add(char *line, size_t cap, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void line_add(char *line, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + (*len < cap ? *len : cap - 1),
                      *len < cap ? cap - *len : 1, fmt, ap);
    va_end(ap);
    *len += n > 0 ? (size_t)n : 0;
}

/* "[  1.20s] step  succeeded" and what goes with it, into line (cap bytes,
 * NUL-ended, cut where it does not fit); the whole line's length. */
static size_t format_step_line(char *line, size_t cap, const rz_event *ev, double t)
{
    size_t len = 0;
    const char *step = rz_flow_step_id(rz_run_flow(ev->run), ev->step);
    line_add(line, cap, &len, "[%7.2fs] %-20s %s", t, step, event_word(ev->kind));
    if (ev->kind == RZ_EVENT_STEP_STARTED && ev->attempt > 1)
        line_add(line, cap, &len, " (attempt %u)", ev->attempt);
    if (ev->kind == RZ_EVENT_STEP_SUCCEEDED && ev->message)   /* "reused from ..." */
        line_add(line, cap, &len, " (%s)", ev->message);
    if (ev->message && (ev->kind == RZ_EVENT_STEP_FAILED ||
                        ev->kind == RZ_EVENT_STEP_RETRYING ||
                        ev->kind == RZ_EVENT_STEP_SKIPPED)) {
        size_t n = strcspn(ev->message, "\n");
        line_add(line, cap, &len, ": %.*s", (int)(n > 200 ? 200 : n), ev->message);
    }
    line_add(line, cap, &len, "\n");
    return len;
}

/* A step's line in one write (stderr is unbuffered: each piece printed on
 * its own was a write, two or more a step event, and a reader of the file
 * could see half a line). */
static void print_step_line(FILE *out, const rz_event *ev, double t)
{
    char line[512];
    size_t len = format_step_line(line, sizeof line, ev, t);
    char *big = len < sizeof line ? NULL : malloc(len + 1);
    if (big)
        format_step_line(big, len + 1, ev, t);
    else if (len >= sizeof line)   /* out of memory: the line cut short */
        line[sizeof line - 2] = '\n';
    fputs(big ? big : line, out);
    free(big);
}

/* A step's log lines as they come: "[  1.20s] step | line". */
static void print_log_lines(FILE *out, const rz_event *ev)
{
    const char *step = rz_flow_step_id(rz_run_flow(ev->run), ev->step);
    double t = (double)ev->elapsed_ms / 1000.0;
    for (const char *l = ev->message; l && *l;) {
        size_t n = strcspn(l, "\n");
        fprintf(out, "[%7.2fs] %-20s | %.*s\n", t, step, (int)n, l);
        l += n + (l[n] == '\n');
    }
}

/* The run's id is told once its record is written (RZ_EVENT_RUN_RECORDED),
 * so whoever reads it from this line (`flow logs RUN --follow`, `flow runs
 * RUN`) finds the run; the lines of the steps that started meanwhile come
 * after it, in their order. */
static void header_make(progress *p, const cli *c, const char *run_id, bool recorded)
{
    int n = -1;
    if (c->quiet || c->json)
        return;
    if (c->resumed_run)
        n = asprintf(&p->header, "rhizos: resuming %s: running %s (%zu step%s) as %s\n",
                     c->resumed_run, c->args[0], p->total, p->total == 1 ? "" : "s",
                     run_id);
    else
        n = asprintf(&p->header, "rhizos: running %s (%zu step%s) as %s\n", c->args[0],
                     p->total, p->total == 1 ? "" : "s", run_id);
    if (n < 0)
        p->header = NULL;
    if (p->header && recorded)
        p->held = open_memstream(&p->held_buf, &p->held_len);
}

static void header_tell(progress *p)
{
    if (p->header)
        fputs(p->header, stderr);
    free(p->header);
    p->header = NULL;
    if (p->held && fclose(p->held) == 0)
        fwrite(p->held_buf, 1, p->held_len, stderr);
    p->held = NULL;
    free(p->held_buf);
    p->held_buf = NULL;
    fflush(stderr);
}

static void on_event(const rz_event *ev, void *ud)
{
    progress *p = ud;
    if (ev->kind == RZ_EVENT_RUN_RECORDED) {
        header_tell(p);
        if (p->c->tell_recorded) {   /* flow serve's webhook answers now */
            (void)!send(p->c->recorded_fd, "r", 1, MSG_NOSIGNAL);
            close(p->c->recorded_fd);
        }
        return;
    }
    if (ev->kind == RZ_EVENT_STEP_LOG && p->live)
        cli_live_write(p->live, rz_flow_step_id(rz_run_flow(ev->run), ev->step),
                       ev->message);
    if (ev->kind == RZ_EVENT_PROGRESS) {
        if (p->tty && !p->c->quiet && !p->held)
            draw_status(p, ev);
        return;
    }
    if (p->c->quiet && ev->kind == RZ_EVENT_STEP_SUCCEEDED && ev->message) {
        if (!p->reused)
            p->reused = cJSON_CreateObject();
        cJSON_AddStringToObject(p->reused, rz_flow_step_id(rz_run_flow(ev->run), ev->step),
                                ev->message + strlen("reused from "));
    }
    if (p->c->quiet && ev->kind != RZ_EVENT_STEP_FAILED && ev->kind != RZ_EVENT_NOTICE)
        return;
    FILE *out = p->held ? p->held : stderr;
    if (p->tty && p->status_shown)
        fputs("\r\033[K", out);
    double t = (double)ev->elapsed_ms / 1000.0;
    if (ev->kind == RZ_EVENT_NOTICE) {
        fprintf(out, "rhizos: note: %s\n", ev->message ? ev->message : "");
    } else if (ev->kind == RZ_EVENT_STEP_LOG) {
        print_log_lines(out, ev);
    } else if (ev->kind != RZ_EVENT_RUN_FINISHED) {
        print_step_line(out, ev, t);
        if (ev->kind == RZ_EVENT_STEP_SUCCEEDED && ev->message) {   /* "reused from ..." */
            if (!p->reused)
                p->reused = cJSON_CreateObject();
            cJSON_AddStringToObject(p->reused,
                                    rz_flow_step_id(rz_run_flow(ev->run), ev->step),
                                    ev->message + strlen("reused from "));
        }
    }
    if (p->tty && !p->held && ev->kind != RZ_EVENT_RUN_FINISHED)
        draw_status(p, ev);
    else if (p->tty && p->status_shown)
        p->status_shown = false;
    fflush(out);
}

static int parse_jobs(const char *s, unsigned *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 4096)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static volatile int cancel_flag;
static volatile sig_atomic_t cancel_signal;

/* The run stops cleanly (steps cancelled, the record written), then the
 * exit status says which signal stopped it, as a shell expects: 130 for
 * Ctrl-C, 143 for SIGTERM. */
static void on_sigint(int sig)
{
    cancel_signal = sig;
    cancel_flag = 1;
}

/* One line per output port, "step.port: value" (or "name: value" for a
 * flow output, step NULL) as compact JSON, long values cut: the whole
 * record is one --json away. */
static void print_output_line(const char *step, const cJSON *port)
{
    enum { MAX_SHOWN = 160 };
    char *text = cJSON_PrintUnformatted(port);
    if (!text)
        return;
    size_t len = strlen(text);
    const char *dot = step ? "." : "";
    step = step ? step : "";
    if (len > MAX_SHOWN)
        printf("  %s%s%s: %.*s... (%zu bytes; --json shows all)\n", step, dot,
               port->string, MAX_SHOWN, text, len);
    else
        printf("  %s%s%s: %s\n", step, dot, port->string, text);
    free(text);
}

/* An embedded run is charged nothing: what its steps' time would cost to
 * rent, when it was priced ("cost_micros" in the record). */
static void print_cost(const cJSON *rec)
{
    const cJSON *cost = cJSON_GetObjectItemCaseSensitive(rec, "cost_micros");
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(rec, "run_ms");
    if (!cJSON_IsNumber(cost) || !cJSON_IsNumber(ms))
        return;
    char money[48];
    cli_money_u64((uint64_t)cost->valuedouble, false, money, sizeof money);
    printf("cost: %s to rent for %.2fs of step time (run here: charged nothing)", money,
           ms->valuedouble / 1000.0);
    const cJSON *un = cJSON_GetObjectItemCaseSensitive(rec, "unpriced_steps"), *u;
    if (cJSON_GetArraySize(un) > 0) {
        printf("; no node class prices");
        cJSON_ArrayForEach(u, un)
            printf(" %s", cJSON_IsString(u) ? u->valuestring : "?");
    }
    printf("\n");
}

static void print_outputs(const rz_run *run)
{
    /* The run without its steps: the whole one as a tree was ~150 MB at
     * 100,000 steps, most of the run's peak memory. */
    char *json = NULL;
    if (rz_run_summary_to_json(run, &json) != RZ_OK)
        return;
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(doc, "outputs");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(doc, "status");
    const cJSON *o, *port;
    const rz_flow *flow = rz_run_flow(run);
    for (size_t i = 0; i < rz_flow_step_count(flow); i++) {
        const char *err = rz_run_step_error(run, i);
        if (err)
            printf("step %s: %s\n", rz_flow_step_id(flow, i), err);
    }
    if (cJSON_GetArraySize(outs) > 0)
        printf("outputs:\n");
    if (rz_flow_output_count(rz_run_flow(run)))   /* the flow's own, by name */
        cJSON_ArrayForEach(o, outs)
            print_output_line(NULL, o);
    else
        cJSON_ArrayForEach(o, outs)
            cJSON_ArrayForEach(port, o)
                print_output_line(o->string, port);
    const cJSON *failed = cJSON_GetObjectItemCaseSensitive(doc, "failed_steps");
    const cJSON *run_err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (cJSON_IsString(run_err))
        printf("error: %s\n", run_err->valuestring);
    if (cJSON_GetArraySize(failed) > 0 && cJSON_IsString(st) &&
        strcmp(st->valuestring, "succeeded") == 0) {
        printf("failed (handled):");
        cJSON_ArrayForEach(o, failed)
            printf(" %s", cJSON_IsString(o) ? o->valuestring : "?");
        printf("\n");
    }
    print_cost(doc);
    printf("run %s %s\n", rz_run_id(run), cJSON_IsString(st) ? st->valuestring : "?");
    cJSON_Delete(doc);
}

static bool shipped_prices(void)
{
    char *dir = rz_data_path("prices");
    bool found = dir != NULL;
    rz_free(dir);
    return found;
}

/* The run as JSON, each reused step marked "reused": true, "reused_from". */
static void print_run_json(const char *json, const cJSON *reused)
{
    cJSON *doc = reused ? cJSON_Parse(json) : NULL;
    const cJSON *r;
    cJSON *steps = cJSON_GetObjectItemCaseSensitive(doc, "steps");
    cJSON_ArrayForEach(r, reused) {
        cJSON *s = cJSON_GetObjectItemCaseSensitive(steps, r->string);
        if (s) {
            cJSON_AddTrueToObject(s, "reused");
            cJSON_AddStringToObject(s, "reused_from", r->valuestring);
        }
    }
    char *t = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cli_print_json(t ? t : json);
    free(t);
    cJSON_Delete(doc);
}

rz_flow *cli_flow_load(const cli *c, const char *path, const rz_registry *reg)
{
    return load_checked(c, path, reg, NULL, false);
}

/* The file outputs' caps (docs/flow-format.md): a whole number of MiB
 * from 1 to 1,048,576 in the variable, or unset (the default). */
static bool env_mb(const char *name, uint32_t *out)
{
    const char *v = getenv(name);
    *out = 0;
    if (!v || !*v)
        return true;
    char *end = NULL;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || v[0] == '-' || n < 1 || n > (1ul << 20)) {
        fprintf(stderr, "rhizos: %s wants a number of MiB from 1 to 1048576, "
                "not '%s'\n", name, v);
        return false;
    }
    *out = (uint32_t)n;
    return true;
}

static void *sandbox_probe(void *arg)
{
    (void)arg;
    (void)rz_sandbox_available();
    return NULL;
}

static int flow_run(cli *c)
{
    if (need_args(c, "run", 1, 1) != 0)
        return EXIT_USAGE;
    unsigned jobs = 0;
    if (c->jobs_arg && parse_jobs(c->jobs_arg, &jobs) != 0) {
        fprintf(stderr, "rhizos: --jobs wants a number from 1 to 4096, not '%s'\n",
                c->jobs_arg);
        return EXIT_USAGE;
    }
    char *inputs = c->resume_inputs && !c->n_inputs ? strdup(c->resume_inputs)
                                                    : cli_inputs_json(c);
    if (!inputs)
        return EXIT_USAGE;
    rz_registry *reg = cli_registry(c);
    rz_flow *flow = reg ? load_checked(c, c->args[0], reg, NULL, false) : NULL;
    if (!flow) {
        free(inputs);
        rz_registry_free(reg);
        return EXIT_FAILED;
    }
    rz_runner_opts check = RZ_RUNNER_OPTS_INIT;
    check.container_host = c->container_host;
    if (rz_runner_check(flow, &check) != RZ_OK) {
        fprintf(stderr, "rhizos: %s\nrhizos: nothing was run\n",
                rz_error_last()->message);
        free(inputs);
        rz_flow_free(flow);
        rz_registry_free(reg);
        return EXIT_FAILED;
    }
    uint32_t file_mb = 0, run_files_mb = 0;
    if (!env_mb("RHIZOS_MAX_FILE_MB", &file_mb) ||
        !env_mb("RHIZOS_MAX_RUN_FILES_MB", &run_files_mb)) {
        free(inputs);
        rz_flow_free(flow);
        rz_registry_free(reg);
        return EXIT_USAGE;
    }
    char run_id[300];
    if (c->run_id)
        snprintf(run_id, sizeof run_id, "%s", c->run_id);
    else if (rz_store_run_id_make(run_id, sizeof run_id) != RZ_OK)
        snprintf(run_id, sizeof run_id, "run");   /* cannot happen: 300 bytes fit */
    progress p = { c, cli_stderr_tty(), false, rz_flow_step_count(flow), NULL, NULL,
                   NULL, NULL, NULL, 0 };
    /* Ask for the vault password once, and only if a step needs a secret. */
    rz_vault *vault = NULL;
    char *data_dir = cli_data_dir(c);
    if (rz_vault_flow_references(flow) > 0 &&
        !(vault = cli_vault_open_unlocked(c))) {
        free(data_dir);
        free(inputs);
        rz_flow_free(flow);
        rz_registry_free(reg);
        return EXIT_FAILED;
    }
    /* What the run would cost to rent, in its record: the tables that
     * ship, or --prices (then they must read). */
    rz_prices *prices = c->prices || shipped_prices() ? cli_prices(c) : NULL;
    if (c->prices && !prices) {
        free(data_dir);
        free(inputs);
        rz_vault_close(vault);
        rz_flow_free(flow);
        rz_registry_free(reg);
        return EXIT_FAILED;
    }
    rz_runner_opts opts = RZ_RUNNER_OPTS_INIT;
    opts.prices = prices;
    opts.jobs = jobs;
    opts.inputs_json = inputs;
    opts.run_id = run_id;
    opts.sandbox = c->no_sandbox ? 0 : 1;
    opts.on_event = on_event;
    opts.userdata = &p;
    opts.cancel = &cancel_flag;
    opts.vault = vault;
    /* On record from the start, so `flow runs` shows it while it goes and
     * a killed run still leaves a trace. */
    opts.data_dir = data_dir;
    opts.container_host = c->container_host;
    opts.reuse_json = c->reuse_json;
    opts.llm_servers = c->llm_servers;
    opts.max_file_mb = file_mb;
    opts.max_run_files_mb = run_files_mb;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    /* Lines as they come, for `flow logs RUN --follow` (best effort: the
     * record keeps each step's log in any case); made before the run's id
     * is told, so a follower started on that line finds it. */
    p.live = data_dir ? cli_live_open(data_dir, run_id) : NULL;
    if (p.live)   /* for `flow stop RUN` */
        cli_live_pid_write(data_dir, run_id);
    header_make(&p, c, run_id, data_dir != NULL);
    if (!p.held)
        header_tell(&p);   /* nothing to wait for */
    rz_run *run = NULL;
    int rc = rz_runner_run(&run, flow, &opts);
    header_tell(&p);   /* not recorded, or the run could not start */
    if (p.live) {
        char *live = cli_live_path(data_dir, run_id);
        cli_live_pid_remove(data_dir, run_id);
        fclose(p.live);
        if (live)
            unlink(live);   /* the record has the logs now */
        free(live);
    }
    if (p.tty && p.status_shown)
        fputs("\r\033[K", stderr);
    int status = EXIT_FAILED;
    if (run) {
        char *json = NULL;
        if (c->json && rz_run_to_json(run, &json) == RZ_OK)
            print_run_json(json, p.reused);
        else if (!c->json)
            print_outputs(run);
        rz_free(json);
        if (rz_run_state_get(run) == RZ_RUN_SUCCEEDED)
            status = EXIT_OK;
    } else {
        cli_error(c->args[0], rc);
    }
    if (run && data_dir)
        cli_runs_prune_auto(data_dir);   /* the history stays bounded */
    rz_run_free(run);
    rz_prices_free(prices);
    cJSON_Delete(p.reused);
    rz_vault_close(vault);
    free(data_dir);
    rz_flow_free(flow);
    rz_registry_free(reg);
    free(inputs);
    if (cancel_signal && status != EXIT_OK)
        status = 128 + cancel_signal;
    return status;
}

/* The sandbox's probe (its helper started, its root built, its first
 * cell made ahead) on a thread of its own from the start, while the
 * modules and the flow are read: at one step it is most of the run's
 * start. The runner waits for what is left of it before its first step,
 * whose own start carries the probe's last part (the sandbox's check: see
 * sandbox.c); a run that ends before (a flow with errors) does not: the
 * probe makes no host folder, and what it started ends with the process
 * (its cgroups are swept by the next runner). */
int cli_flow_run(cli *c)
{
    pthread_t probe;
    if (!c->no_sandbox && c->nargs == 1 &&
        pthread_create(&probe, NULL, sandbox_probe, NULL) == 0)
        pthread_detach(probe);
    return flow_run(c);
}

#define RUNS_DEFAULT_LIMIT 20

/* --limit: a count of 0 (all) or more; absent: the default. */
static int parse_limit(const char *s, size_t *out)
{
    if (!s) {
        *out = RUNS_DEFAULT_LIMIT;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno || v > SIZE_MAX)
        return -1;
    *out = (size_t)v;
    return 0;
}

static void print_runs_table(const cJSON *arr, size_t more)
{
    const cJSON *r;
    if (cJSON_GetArraySize(arr) == 0) {
        printf("no runs recorded\n");
        return;
    }
    printf("%-28s %-10s %5s %9s %10s  %s\n", "RUN", "STATUS", "STEPS", "SECONDS", "COST",
           "FLOW");
    cJSON_ArrayForEach(r, arr) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r, "status");
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(r, "file");
        double t0 = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "started_ms"));
        double t1 = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "finished_ms"));
        char secs[32] = "-";   /* a run still going has no end yet */
        if (t1 > 0)
            snprintf(secs, sizeof secs, "%.2f", (t1 - t0) / 1000.0);
        const cJSON *cost = cJSON_GetObjectItemCaseSensitive(r, "cost_micros");
        char money[48] = "-";   /* not priced (no tables, or an older record) */
        if (cJSON_IsNumber(cost))
            cli_money_u64((uint64_t)cost->valuedouble, false, money, sizeof money);
        bool gone = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "process_gone"));
        printf("%-28s %-10s %5d %9s %10s  %s\n",
               cJSON_IsString(id) ? id->valuestring : "?",
               gone ? "killed" : cJSON_IsString(st) ? st->valuestring : "?",
               (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(r, "steps")),
               secs, money, cJSON_IsString(file) ? file->valuestring : "");
    }
    if (more)
        printf("(%zu more; --limit 0 for all)\n", more);
}

/* "12.34s": a step's "duration_ms", or (records before it) the time
 * between its wall-clock "started_ms" and "finished_ms"; "-" without an
 * end. ("started_ms" is now counted from the run's start.) */
static void span(char *buf, size_t cap, const cJSON *o)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "duration_ms");
    if (cJSON_IsNumber(d) && d->valuedouble >= 0) {
        snprintf(buf, cap, "%.2fs", d->valuedouble / 1000.0);
        return;
    }
    const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(o, "started_ms");
    const cJSON *t1 = cJSON_GetObjectItemCaseSensitive(o, "finished_ms");
    if (cJSON_IsNumber(t0) && cJSON_IsNumber(t1) && t1->valuedouble >= t0->valuedouble &&
        t1->valuedouble > 0)
        snprintf(buf, cap, "%.2fs", (t1->valuedouble - t0->valuedouble) / 1000.0);
    else
        snprintf(buf, cap, "-");
}

static void print_json_field_in(const char *ind, const char *label, const cJSON *v)
{
    char *text = v ? cJSON_PrintUnformatted(v) : NULL;
    if (text)
        printf("%s%-8s %s\n", ind, label, text);
    free(text);
}

static void print_json_field(const char *label, const cJSON *v)
{
    print_json_field_in("    ", label, v);
}

/* One step (or for_each element) of a run record: `head`, status,
 * attempts, time, then its details indented by `ind`. */
static void print_task(const char *head, const char *ind, const cJSON *s)
{
    char took[32];
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "status"));
    int attempts = (int)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "attempts"));
    span(took, sizeof took, s);
    const cJSON *cost = cJSON_GetObjectItemCaseSensitive(s, "cost_micros");
    char money[64] = "";
    if (cJSON_IsNumber(cost)) {
        memcpy(money, ", ", 3);
        cli_money_u64((uint64_t)cost->valuedouble, false, money + 2, sizeof money - 2);
    }
    printf("%s: %s, %d attempt%s, %s%s\n", head, st ? st : "?", attempts,
           attempts == 1 ? "" : "s", took, money);
    const char *why = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "error"));
    if (why)
        printf("%s%-8s %s\n", ind, "error", why);
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(s, "inputs");
    if (cJSON_GetArraySize(in) > 0)
        print_json_field_in(ind, "inputs", in);
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(s, "outputs");
    if (cJSON_GetArraySize(out) > 0)
        print_json_field_in(ind, "outputs", out);
    const char *log = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "log"));
    for (const char *p = log; p && *p;) {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        printf("%s| %.*s\n", ind, n, p);
        p += n + (nl != NULL);
    }
}

/* One recorded run in detail: the header, the flow's outputs, then each
 * step with how it ran, what it got and gave, why it failed, its log. A
 * run whose process is gone is "killed", as in the list. */
static void print_run_detail(const cJSON *rec)
{
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "id"));
    const char *status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "status"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rec, "process_gone")))
        status = "killed";
    const char *file = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "file"));
    const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "error"));
    char took[32];
    span(took, sizeof took, rec);
    printf("run %s %s (%s) %s\n", id ? id : "?", status ? status : "?", took,
           file ? file : "");
    if (err)
        printf("error: %s\n", err);
    print_cost(rec);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(rec, "outputs"), *o;
    if (cJSON_GetArraySize(outs) > 0) {
        printf("outputs:\n");
        cJSON_ArrayForEach(o, outs)
            print_json_field(o->string, o);
    }
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(rec, "steps"), *s;
    cJSON_ArrayForEach(s, steps) {
        char head[300];
        snprintf(head, sizeof head, "step %s", s->string);
        print_task(head, "    ", s);
        /* A for_each step's elements, each as it ran, in list order. */
        const cJSON *els = cJSON_GetObjectItemCaseSensitive(s, "elements"), *e;
        int k = 0;
        cJSON_ArrayForEach(e, els) {
            snprintf(head, sizeof head, "  element %d", k++);
            print_task(head, "      ", e);
        }
    }
}

static int flow_run_show(cli *c, const char *id)
{
    char *dir = cli_data_dir(c);
    rz_store *st = NULL;
    char *json = NULL;
    int rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
    if (rc == RZ_OK)   /* "process_gone" told by the store, as in the list */
        rc = rz_store_run_get(st, id, &json);
    cJSON *rec = rc == RZ_OK ? cJSON_Parse(json) : NULL;
    if (rc == RZ_ENOENT)
        fprintf(stderr, "rhizos: no run '%s' recorded in %s (rhizos flow runs lists "
                "them)\n", id, dir);
    else if (rc != RZ_OK)
        cli_error(dir, rc);
    else if (!rec)
        fprintf(stderr, "rhizos: out of memory\n");
    else if (c->json)
        cli_print_json(json);
    else
        print_run_detail(rec);
    cJSON_Delete(rec);
    rz_free(json);
    rz_store_close(st);
    free(dir);
    return rc == RZ_OK && rec ? EXIT_OK : EXIT_FAILED;
}

static int flow_runs(cli *c)
{
    size_t limit;
    if (need_args(c, "runs", 0, c->prune ? 0 : 1) != 0)
        return EXIT_USAGE;
    if (c->prune)
        return cli_runs_prune(c);
    if (c->older_than) {
        fprintf(stderr, "rhizos: --older-than goes with --prune\n");
        return EXIT_USAGE;
    }
    if (c->nargs == 1)
        return flow_run_show(c, c->args[0]);
    if (parse_limit(c->limit, &limit) != 0) {
        fprintf(stderr, "rhizos: --limit wants a number (0 for all), not '%s'\n",
                c->limit);
        return EXIT_USAGE;
    }
    char *dir = cli_data_dir(c);
    rz_store *st = NULL;
    char *json = NULL;
    size_t total = 0;
    int rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = rz_store_run_list_newest(st, limit, &json, &total);
    cJSON *arr = rc == RZ_OK ? cJSON_Parse(json) : NULL;
    if (rc == RZ_OK && !cJSON_IsArray(arr))
        rc = RZ_ENOMEM;   /* the store wrote it: only memory can fail */
    if (rc != RZ_OK) {
        cli_error(dir, rc);
    } else {
        size_t shown = (size_t)cJSON_GetArraySize(arr);
        size_t more = total > shown ? total - shown : 0;
        char *text = c->json ? cJSON_PrintUnformatted(arr) : NULL;
        if (c->json && !text) {
            rc = RZ_ENOMEM;
            fprintf(stderr, "rhizos: out of memory\n");
        } else if (c->json) {
            cli_print_json(text);
        } else {
            print_runs_table(arr, more);
        }
        free(text);
    }
    cJSON_Delete(arr);
    rz_free(json);
    rz_store_close(st);
    free(dir);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

/* rhizos flow resume RUN_ID [FILE]: the flow (its recorded file, or FILE)
 * run again on this machine with that run's step cache and inputs. */
int cli_flow_resume_local(cli *c)
{
    if (need_args(c, "resume", 1, 2) != 0)
        return EXIT_USAGE;
    char *dir = cli_data_dir(c), *json = NULL;
    rz_store *st = NULL;
    int rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
    if (rc == RZ_OK)
        rc = rz_store_run_get(st, c->args[0], &json);
    rz_store_close(st);
    cJSON *rec = rc == RZ_OK ? cJSON_Parse(json) : NULL;
    rz_free(json);
    if (rc == RZ_ENOENT)
        fprintf(stderr, "rhizos: no run '%s' recorded in %s (rhizos flow runs lists "
                "them)\n", c->args[0], dir);
    else if (rc != RZ_OK)
        cli_error(dir, rc);
    free(dir);
    const cJSON *cache = cJSON_GetObjectItemCaseSensitive(rec, "step_cache");
    const char *file = c->nargs == 2 ? c->args[1]
                     : cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(rec, "file"));
    int ex = EXIT_FAILED;
    if (rec && !cJSON_IsObject(cache))
        fprintf(stderr, "rhizos: run '%s' kept no step cache (it did not finish, or an "
                "older rhizos ran it): run the flow again\n", c->args[0]);
    else if (rec && (!file || !strcmp(file, "-")))
        fprintf(stderr, "rhizos: run '%s' read its flow from stdin: give the file "
                "(rhizos flow resume %s FILE)\n", c->args[0], c->args[0]);
    else if (rec) {
        char *map = cJSON_PrintUnformatted(cache);
        /* What was cleared since is not reused. */
        if (map && cli_cache_filter(c, cJSON_GetStringValue(
                       cJSON_GetObjectItemCaseSensitive(rec, "flow")), &map) != 0) {
            free(map);
            map = NULL;
        }
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(rec, "inputs");
        char *inputs = cJSON_IsObject(in) ? cJSON_PrintUnformatted(in) : NULL;
        char *args[1] = { (char *)file };
        c->reuse_json = map;
        c->resume_inputs = inputs;
        c->resumed_run = c->args[0];
        c->args = args;
        c->nargs = 1;
        ex = map ? cli_flow_run(c) : EXIT_FAILED;
        c->nargs = 0;
        free(map);
        free(inputs);
    }
    cJSON_Delete(rec);
    return ex;
}

int cli_flow(cli *c, const char *verb)
{
    if (strcmp(verb, "validate") == 0)
        return flow_validate(c);
    if (strcmp(verb, "plan") == 0)
        return flow_plan(c);
    if (strcmp(verb, "run") == 0)
        return cli_flow_run(c);
    if (strcmp(verb, "serve") == 0)
        return cli_flow_serve(c);
    if (strcmp(verb, "cache") == 0)
        return cli_flow_cache(c);
    if (strcmp(verb, "publish") == 0)
        return cli_flow_publish(c);
    if (strcmp(verb, "runs") == 0)
        return flow_runs(c);
    if (strcmp(verb, "export") == 0)
        return flow_export(c);
    if (strcmp(verb, "estimate") == 0)
        return cli_flow_estimate(c);
    if (strcmp(verb, "deploy") == 0)
        return cli_flow_deploy(c);
    if (strcmp(verb, "status") == 0)
        return cli_flow_status(c);
    if (strcmp(verb, "watch") == 0)
        return cli_flow_watch(c);
    if (strcmp(verb, "cancel") == 0)
        return cli_flow_cancel(c);
    if (strcmp(verb, "stop") == 0)
        return cli_flow_stop(c);
    if (strcmp(verb, "logs") == 0)
        return cli_flow_logs(c);
    if (strcmp(verb, "file") == 0)
        return cli_flow_file(c);
    if (!strcmp(verb, "list") || !strcmp(verb, "versions") || !strcmp(verb, "rollback") ||
        !strcmp(verb, "schedule") || !strcmp(verb, "diff") || !strcmp(verb, "enable") ||
        !strcmp(verb, "disable"))
        return cli_flow_named(c, verb);
    if (!strcmp(verb, "pause") || !strcmp(verb, "resume") || !strcmp(verb, "approve") ||
        !strcmp(verb, "reject"))
        return cli_flow_gate(c, verb);
    fprintf(stderr, "rhizos: unknown command 'flow %s'. Try 'rhizos flow --help'.\n", verb);
    return EXIT_USAGE;
}

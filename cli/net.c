/* rhizos status | nodes | run | job | cancel — and the plumbing every
 * network command shares: one client, error → exit code, money, JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rhizos/client.h"

void cli_net_usage(void)
{
    printf(
"usage: rhizos status                  the orchestrator's health and counts\n"
"       rhizos nodes                   the nodes it knows (a table)\n"
"       rhizos run -t TYPE [--input NAME=VALUE]... [--config NAME=VALUE]...\n"
"                  [--label KEY=VALUE]... [--max-cost DOLLARS] [--priority N]\n"
"                  [--queue-timeout S] [--replicas K] [--wait]\n"
"                                      submit one job of module TYPE[@VERSION];\n"
"                                      --wait waits for it and prints its outputs\n"
"       rhizos run -t docker -i IMAGE [--cmd ARG]... [--gpus N] [--memory MB]\n"
"                  [--cpus N] [--config NAME=VALUE]... [--label KEY=VALUE]...\n"
"                  [--wait]            run a container image without a module\n"
"                                      (the orchestrator must allow it:\n"
"                                      --allow-images); it gets {inputs, config}\n"
"                                      on stdin and in /rz/in/request.json\n"
"  run options: --config NAME=VALUE a config value (JSON if it parses, else a\n"
"               string); --label KEY=VALUE only nodes with that label;\n"
"               --queue-timeout S fail (refunded) if no node takes it in S s;\n"
"               --replicas K run it on K (2..5) distinct nodes and keep the\n"
"               majority's outputs; only agreeing runs are paid (K holds);\n"
"               --cmd ARG one argument of the image's command, in order\n"
"               (default: its own); --gpus N, --memory MB, --cpus N its needs\n"
"       rhizos run -t llm -p PROMPT [--model M] [--max-tokens N]\n"
"                                      text from a model a node serves; waits\n"
"                                      and prints it (rhizos models --help)\n"
"       rhizos job [ID]                one job (without ID: your jobs, newest first)\n"
"       rhizos job logs ID [--follow]  its log as its node sent it; --follow keeps\n"
"                                      printing lines as they come, until it ends\n"
"       rhizos job logs ID --attempt N an earlier attempt's log (the last 8\n"
"                                      attempts' are kept, 64 KiB each)\n""       rhizos job logs ID --since T   only the lines that reached the\n"
"                                      orchestrator at or after T (10m, 2h, or\n"
"                                      2026-12-05T16:00:00Z)\n"
"       rhizos cancel ID               cancel a job that has not finished; its\n"
"                                      hold is refunded\n"
"\n"
"Every network command talks to --orchestrator URL (env RHIZOS_URL, default\n"
"http://127.0.0.1:8080) with --api-key KEY (env RHIZOS_API_KEY). --json prints\n"
"the orchestrator's JSON (docs/api.md); money stays integer micros there and is\n"
"shown as dollars otherwise. `status --json` prints {\"url\",\"health\",\"stats\"}\n"
"(stats null without a key).\n"
"Exit status: 0 ok, 1 refused or failed (a job that --wait saw fail), 2 usage,\n"
"3 the orchestrator cannot be reached.\n");
}

/* ---- shared ---- */

rz_client *cli_client(cli *c)
{
    rz_client *cl = NULL;
    if (cli_connection(c) != 0)
        return NULL;
    int rc = rz_client_new(&cl, c->orchestrator, c->api_key);
    if (rc == RZ_OK && c->ca_file && (rc = rz_client_set_ca_file(cl, c->ca_file)) != RZ_OK) {
        rz_client_free(cl);
        cl = NULL;
    }
    if (rc != RZ_OK)
        cli_error(c->orchestrator, rc);
    return cl;
}

int cli_net_fail(const char *what, int rc)
{
    cli_error(what, rc);
    if (rc == RZ_EAUTH)
        fprintf(stderr, "rhizos: give the key with --api-key-file FILE, RHIZOS_API_KEY, "
                "or api_key_file in the client config (see rhizos --help)\n");
    return rc == RZ_ECONNECT ? EXIT_UNREACHABLE : EXIT_FAILED;
}

void cli_money_u64(uint64_t micros, bool negative, char *buf, size_t cap)
{
    char frac[8];
    snprintf(frac, sizeof frac, "%06" PRIu64, micros % 1000000);
    size_t n = 6;
    while (n > 2 && frac[n - 1] == '0')   /* as many decimals as needed, >= 2 */
        n--;
    frac[n] = '\0';
    snprintf(buf, cap, "%s$%" PRIu64 ".%s", negative ? "-" : "", micros / 1000000, frac);
}

void cli_money(int64_t micros, char *buf, size_t cap)
{
    uint64_t a = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
    cli_money_u64(a, micros < 0, buf, cap);
}

bool cli_parse_dollars(const char *s, uint64_t max, uint64_t *out)
{
    if (*s == '$')
        s++;
    uint64_t whole = 0, frac = 0;
    int nd = 0, nf = -1;
    for (; *s; s++) {
        if (*s == '.' && nf < 0 && nd > 0) {
            nf = 0;
        } else if (*s >= '0' && *s <= '9') {
            if (nf >= 0) {
                if (++nf > 6)
                    return false;   /* below a micro-dollar */
                frac = frac * 10 + (uint64_t)(*s - '0');
            } else {
                if (++nd > 13)
                    return false;
                whole = whole * 10 + (uint64_t)(*s - '0');
            }
        } else {
            return false;
        }
    }
    if (nd == 0 || nf == 0)
        return false;
    for (int i = nf < 0 ? 0 : nf; i < 6; i++)
        frac *= 10;
    if (whole > (max - frac) / 1000000)
        return false;
    *out = whole * 1000000 + frac;
    return true;
}

/* JSON re-spaced token by token, never parsed: numbers keep every digit
 * the server or the library wrote (a parse to double would round past
 * 2^53). pretty: two-space indents, else one line without blanks. */
static void emit_json(const char *s, bool pretty)
{
    int depth = 0;
    bool in_str = false, esc = false;
    for (; *s; s++) {
        char ch = *s;
        if (in_str) {
            putchar(ch);
            in_str = esc || ch != '"';
            esc = !esc && ch == '\\';
            continue;
        }
        if (ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r')
            continue;
        const char *next = s + 1;
        while (*next == ' ' || *next == '\n' || *next == '\t' || *next == '\r')
            next++;
        if (ch == '"') {
            in_str = true;
            putchar(ch);
        } else if ((ch == '{' || ch == '[') && pretty && *next != '}' && *next != ']') {
            printf("%c\n%*s", ch, 2 * ++depth, "");
        } else if ((ch == '}' || ch == ']') && pretty && s[-1] != '{' && s[-1] != '[') {
            printf("\n%*s%c", 2 * --depth, "", ch);
        } else if (ch == ',' && pretty) {
            printf(",\n%*s", 2 * depth, "");
        } else if (ch == ':' && pretty) {
            fputs(": ", stdout);
        } else {
            putchar(ch);
        }
    }
    putchar('\n');
}

/* Every --json output: one line when piped (a line per document, for
 * scripts and jq), indented on a terminal. */
void cli_print_json(const char *json)
{
    emit_json(json ? json : "null", isatty(STDOUT_FILENO) == 1);
}

bool cli_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

int64_t cli_json_int(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

const char *cli_json_str(const cJSON *o, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

/* NAME=VALUE options as a JSON object; VALUE is JSON when it parses as
 * JSON, else a string (always a string when `strings`). */
static cJSON *kv_object(const char *const *kvs, size_t n, const char *opt,
                        bool strings)
{
    cJSON *obj = cJSON_CreateObject();
    for (size_t i = 0; obj && i < n; i++) {
        const char *kv = kvs[i];
        const char *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            fprintf(stderr, "rhizos: %s wants NAME=VALUE, not '%s'\n", opt, kv);
            cJSON_Delete(obj);
            return NULL;
        }
        char *name = strndup(kv, (size_t)(eq - kv));
        cJSON *v = strings ? NULL : cJSON_Parse(eq + 1);
        if (!v)
            v = cJSON_CreateString(eq + 1);
        cJSON_DeleteItemFromObjectCaseSensitive(obj, name);
        cJSON_AddItemToObject(obj, name, v);
        free(name);
    }
    return obj;
}

/* Flow inputs from --input NAME=VALUE, by the library's rule (VALUE as JSON
 * if it parses, else a string; no NUL), for `flow run` and `flow deploy`
 * alike. Returns malloc'd JSON, or NULL having said why. */
char *cli_inputs_json(const cli *c)
{
    char *lib = NULL;
    if (rz_flow_inputs_parse(&lib, c->inputs, c->n_inputs) != RZ_OK) {
        fprintf(stderr, "rhizos: --%s\n", rz_error_last()->message);
        return NULL;
    }
    char *s = strdup(lib);   /* the callers free() it */
    rz_free(lib);
    if (!s)
        fprintf(stderr, "rhizos: out of memory\n");
    return s;
}

/* One request; on failure prints why. *reply gets the body on success. */
int cli_request(rz_client *cl, const char *method, const char *path,
                const char *body, char **reply)
{
    char *out = NULL;
    int rc = rz_client_call(cl, method, path, body, 0, NULL, &out);
    if (rc != RZ_OK) {
        rz_free(out);
        if (reply)
            *reply = NULL;
        return cli_net_fail(NULL, rc);
    }
    if (reply)
        *reply = out;
    else
        rz_free(out);
    return EXIT_OK;
}

static bool wrong_args(const char *cmd, int nargs, int min, int max)
{
    if (nargs >= min && nargs <= max)
        return false;
    fprintf(stderr, "rhizos: %s: wrong number of arguments. Try 'rhizos %s --help'.\n",
            cmd, cmd);
    return true;
}

static bool parse_id(const char *what, const char *s, uint64_t *id)
{
    if (cli_parse_u64(s, UINT64_MAX, id))
        return true;
    fprintf(stderr, "rhizos: %s wants a numeric id, not '%s'\n", what, s);
    return false;
}

/* ---- status ---- */

static void print_counts(const cJSON *o)
{
    const char *sep = "";
    const cJSON *v;
    cJSON_ArrayForEach(v, o) {
        printf("%s%s %lld", sep, v->string, (long long)v->valuedouble);
        sep = ", ";
    }
    printf("\n");
}

static void print_status(const char *url, const cJSON *health, const cJSON *stats)
{
    printf("orchestrator  %s: %s, version %s\n", url, cli_json_str(health, "status", "?"),
           cli_json_str(health, "version", "?"));
    if (!stats) {
        printf("(no --api-key: counts need a key)\n");
        return;
    }
    printf("nodes         ");
    print_counts(cJSON_GetObjectItemCaseSensitive(stats, "nodes"));
    printf("jobs          ");
    print_counts(cJSON_GetObjectItemCaseSensitive(stats, "jobs"));
    printf("queue depth   %lld\n", (long long)cli_json_int(stats, "queue_depth"));
    printf("deployments   ");
    print_counts(cJSON_GetObjectItemCaseSensitive(stats, "deployments"));
}

int cli_status(cli *c, const char *verb)
{
    if (wrong_args("status", c->nargs, 0, 0))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *h = NULL, *s = NULL;
    int ex = cli_request(cl, "GET", "/health", NULL, &h);
    if (ex == EXIT_OK && c->api_key)
        ex = cli_request(cl, "GET", "/api/v1/stats", NULL, &s);
    if (ex == EXIT_OK) {
        cJSON *health = cJSON_Parse(h), *stats = s ? cJSON_Parse(s) : NULL;
        if (c->json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "url", c->orchestrator);
            cJSON_AddItemToObject(o, "health", health);
            cJSON_AddItemToObject(o, "stats", stats ? stats : cJSON_CreateNull());
            char *text = cJSON_PrintUnformatted(o);
            cli_print_json(text);
            free(text);
            cJSON_Delete(o);
        } else {
            print_status(c->orchestrator, health, stats);
            cJSON_Delete(health);
            cJSON_Delete(stats);
        }
    }
    rz_free(h);
    rz_free(s);
    rz_client_free(cl);
    return ex;
}

/* ---- nodes ---- */

/* "16 cores, 64 GiB, 1x H100 80 GiB" from a capability object. */
static void describe_caps(const cJSON *caps, char *buf, size_t cap)
{
    const cJSON *cpu = cJSON_GetObjectItemCaseSensitive(caps, "cpu");
    long long cores = (long long)cli_json_int(cpu, "cores");
    long long mem_mb = (long long)cli_json_int(caps, "memory_mb");
    int n = snprintf(buf, cap, "%lld cores, %lld GiB", cores, mem_mb / 1024);
    const cJSON *gpus = cJSON_GetObjectItemCaseSensitive(caps, "gpus");
    int ngpu = cJSON_GetArraySize(gpus);
    if (ngpu > 0 && n > 0 && (size_t)n < cap) {
        const cJSON *g = cJSON_GetArrayItem(gpus, 0);
        snprintf(buf + n, cap - (size_t)n, ", %dx %s %lld GiB", ngpu,
                 cli_json_str(g, "model", "GPU"),
                 (long long)cli_json_int(g, "vram_mb") / 1024);
    }
}

/* "cpu $0.036/h, mem $0.005/GB-h", and the GPU price only for a node that
 * has GPUs (a price for hardware it lacks means nothing). */
static void describe_prices(const cJSON *caps, char *buf, size_t cap)
{
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(caps, "prices");
    char gpu[32], cpu[32], mem[32];
    cli_money(cli_json_int(p, "gpu_hour_micros"), gpu, sizeof gpu);
    cli_money(cli_json_int(p, "cpu_hour_micros"), cpu, sizeof cpu);
    cli_money(cli_json_int(p, "memory_gb_hour_micros"), mem, sizeof mem);
    int n = 0;
    if (cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(caps, "gpus")) > 0)
        n = snprintf(buf, cap, "gpu %s/h, ", gpu);
    snprintf(buf + (n > 0 && (size_t)n < cap ? n : 0), cap - (n > 0 && (size_t)n < cap
             ? (size_t)n : 0), "cpu %s/h, mem %s/GB-h", cpu, mem);
}

typedef struct node_row {
    char id[24], state[16], load[16], jobs[24], hw[128], prices[96];
} node_row;

/* Columns as wide as their widest cell, so long hardware lines never push
 * the prices out of line. */
static void print_nodes(const cJSON *root)
{
    const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(root, "nodes");
    size_t count = (size_t)cJSON_GetArraySize(nodes);
    node_row *rows = count ? calloc(count + 1, sizeof *rows) : NULL;
    if (!rows) {
        printf(count ? "(out of memory)\n" : "no nodes\n");
        return;
    }
    rows[0] = (node_row){ "ID", "STATE", "LOAD", "JOBS", "HARDWARE", "PRICES" };
    int w[5] = { 2, 5, 4, 4, 8 };
    size_t r = 1;
    const cJSON *n;
    cJSON_ArrayForEach(n, nodes) {
        node_row *x = &rows[r++];
        const cJSON *caps = cJSON_GetObjectItemCaseSensitive(n, "capabilities");
        const cJSON *load = cJSON_GetObjectItemCaseSensitive(n, "load");
        snprintf(x->id, sizeof x->id, "%lld", (long long)cli_json_int(n, "id"));
        snprintf(x->state, sizeof x->state, "%s", cli_json_str(n, "state", "?"));
        snprintf(x->load, sizeof x->load, "%.2f", cJSON_IsNumber(load) ? load->valuedouble : 0.0);
        snprintf(x->jobs, sizeof x->jobs, "%lld", (long long)cli_json_int(n, "jobs"));
        describe_caps(caps, x->hw, sizeof x->hw);
        describe_prices(caps, x->prices, sizeof x->prices);
        const char *cells[5] = { x->id, x->state, x->load, x->jobs, x->hw };
        for (int k = 0; k < 5; k++)
            if ((int)strlen(cells[k]) > w[k])
                w[k] = (int)strlen(cells[k]);
    }
    for (size_t i = 0; i < r; i++)
        printf("%-*s  %-*s  %*s  %*s  %-*s  %s\n", w[0], rows[i].id, w[1], rows[i].state,
               w[2], rows[i].load, w[3], rows[i].jobs, w[4], rows[i].hw, rows[i].prices);
    free(rows);
}

/* Every node: the server answers a page at a time ("next" is the id to
 * ask after; null or absent on the last page). */
static int fetch_nodes(rz_client *cl, cJSON **out)
{
    cJSON *all = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(all, "nodes");
    uint64_t after = 0;
    for (;;) {
        char path[96], *r = NULL;
        snprintf(path, sizeof path, "/api/v1/nodes?limit=1000&after=%llu",
                 (unsigned long long)after);
        int ex = cli_request(cl, "GET", path, NULL, &r);
        cJSON *page = ex == EXIT_OK ? cJSON_Parse(r) : NULL;
        rz_free(r);
        if (ex != EXIT_OK || !page) {
            cJSON_Delete(all);
            if (ex == EXIT_OK)
                fprintf(stderr, "rhizos: nodes: the orchestrator's reply is not JSON\n");
            return ex != EXIT_OK ? ex : EXIT_FAILED;
        }
        cJSON *nodes = cJSON_GetObjectItemCaseSensitive(page, "nodes"), *n;
        while (cJSON_IsArray(nodes) && (n = cJSON_DetachItemFromArray(nodes, 0)))
            cJSON_AddItemToArray(list, n);
        const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "next");
        bool more = cJSON_IsNumber(next) && next->valuedouble > (double)after;
        if (more)
            after = (uint64_t)next->valuedouble;
        cJSON_Delete(page);
        if (!more)
            break;
    }
    *out = all;   /* the whole list: no "next" */
    return EXIT_OK;
}

int cli_nodes(cli *c, const char *verb)
{
    if (wrong_args("nodes", c->nargs, 0, 0))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    cJSON *root = NULL;
    int ex = fetch_nodes(cl, &root);
    if (ex == EXIT_OK && c->json) {
        char *text = cJSON_PrintUnformatted(root);
        if (text)
            cli_print_json(text);
        free(text);
    } else if (ex == EXIT_OK) {
        print_nodes(root);
    }
    cJSON_Delete(root);
    rz_client_free(cl);
    return ex;
}

/* ---- jobs ---- */

static bool job_finished(const char *status)
{
    return !strcmp(status, "succeeded") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

/* A replicated job's runs: node, verdict, cost, digest prefix. */
static void print_replicas(const cJSON *j)
{
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(j, "replicas"), *r;
    if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "replica_of")))
        printf("  a run of job %lld\n", (long long)cli_json_int(j, "replica_of"));
    cJSON_ArrayForEach(r, runs) {
        char cost[32], node[24] = "-";
        cli_money(cli_json_int(r, "cost_micros"), cost, sizeof cost);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(r, "node");
        if (cJSON_IsNumber(n))
            snprintf(node, sizeof node, "%lld", (long long)n->valuedouble);
        const char *d = cli_json_str(r, "digest", NULL);
        printf("  run job %lld on node %s: %s, paid %s%s%.12s\n",
               (long long)cli_json_int(r, "job"), node,
               cli_json_str(r, "verdict", "?"), cost, d ? ", outputs " : "",
               d ? d : "");
    }
}

#define LOG_TAIL_LINES 40

/* The last lines of a job's log, indented; --json has all of it. */
static void print_log_tail(const char *log)
{
    if (!log || !*log)
        return;
    size_t len = strlen(log), lines = 0;
    const char *start = log + len;
    if (start > log && start[-1] == '\n')
        start--;
    while (start > log && lines < LOG_TAIL_LINES) {
        start--;
        if (*start == '\n' && ++lines == LOG_TAIL_LINES) {
            start++;
            break;
        }
    }
    size_t earlier = 0;
    for (const char *p = log; p < start; p++)
        earlier += *p == '\n';
    if (earlier)
        printf("  log (last %d lines; %zu before them in --json):\n", LOG_TAIL_LINES,
               earlier);
    else
        printf("  log:\n");
    for (const char *p = start; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        printf("    %.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
}

static void print_job(const cJSON *j)
{
    char max[32], cost[32];
    cli_money(cli_json_int(j, "max_cost_micros"), max, sizeof max);
    cli_money(cli_json_int(j, "cost_micros"), cost, sizeof cost);
    const char *image = cli_json_str(j, "image", NULL);
    printf("job %lld  %s  %s %s", (long long)cli_json_int(j, "id"),
           cli_json_str(j, "status", "?"), image ? "image" : "module",
           image ? image : cli_json_str(j, "module", "?"));
    const char *ver = image ? NULL : cli_json_str(j, "version", NULL);
    printf("%s%s\n", ver && *ver ? "@" : "", ver ? ver : "");
    printf("  attempt %lld, node ", (long long)cli_json_int(j, "attempt"));
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(j, "node");
    if (cJSON_IsNumber(node))
        printf("%lld", (long long)node->valuedouble);
    else
        printf("-");
    printf(", priority %lld, max cost %s, cost %s",
           (long long)cli_json_int(j, "priority"), max, cost);
    if (cli_json_int(j, "run_ms") > 0)
        printf(", ran %.2f s", (double)cli_json_int(j, "run_ms") / 1000.0);
    printf("\n");
    const cJSON *dep = cJSON_GetObjectItemCaseSensitive(j, "deployment");
    if (cJSON_IsNumber(dep))
        printf("  flow %lld, step %s\n", (long long)dep->valuedouble,
               cli_json_str(j, "step", "?"));
    const char *err = cli_json_str(j, "error", NULL);
    if (err)
        printf("  error: %s\n", err);
    const char *why = cli_json_str(j, "waiting_reason", NULL);
    if (why)
        printf("  queued: %s\n", why);
    print_replicas(j);
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs");
    const cJSON *o;
    cJSON_ArrayForEach(o, outs) {
        char *v = cJSON_PrintUnformatted(o);
        printf("  %s: %s\n", o->string, v ? v : "?");
        free(v);
    }
    print_log_tail(cli_json_str(j, "log", NULL));
}

static void print_jobs(const cJSON *root)
{
    const cJSON *jobs = cJSON_GetObjectItemCaseSensitive(root, "jobs");
    if (cJSON_GetArraySize(jobs) == 0) {
        printf("no jobs\n");
        return;
    }
    printf("%-8s %-10s %-24s %6s %10s %10s\n", "ID", "STATUS", "MODULE", "NODE",
           "MAX COST", "COST");
    const cJSON *j;
    cJSON_ArrayForEach(j, jobs) {
        char max[32], cost[32], node[24] = "-";
        cli_money(cli_json_int(j, "max_cost_micros"), max, sizeof max);
        cli_money(cli_json_int(j, "cost_micros"), cost, sizeof cost);
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "node");
        if (cJSON_IsNumber(n))
            snprintf(node, sizeof node, "%lld", (long long)n->valuedouble);
        printf("%-8lld %-10s %-24s %6s %10s %10s\n", (long long)cli_json_int(j, "id"),
               cli_json_str(j, "status", "?"), cli_json_str(j, "module", "?"), node, max, cost);
    }
}

/* Print a job reply as asked; returns the exit code for a finished job. */
static int show_job(const cli *c, const char *reply)
{
    cJSON *j = cJSON_Parse(reply);
    if (c->json)
        cli_print_json(reply);
    else
        print_job(j);
    int ex = strcmp(cli_json_str(j, "status", ""), "failed") == 0 ||
             strcmp(cli_json_str(j, "status", ""), "cancelled") == 0 ? EXIT_FAILED : EXIT_OK;
    cJSON_Delete(j);
    return ex;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Poll GET /api/v1/jobs/ID until it finishes, backing off to 2 s. Why it
 * waits for a node goes to stderr each time it changes. */
static int wait_job(rz_client *cl, uint64_t id, char **reply)
{
    char path[64];
    snprintf(path, sizeof path, "/api/v1/jobs/%" PRIu64, id);
    long delay = 100;
    char *said = NULL;
    for (;;) {
        int ex = cli_request(cl, "GET", path, NULL, reply);
        if (ex != EXIT_OK) {
            free(said);
            return ex;
        }
        cJSON *j = cJSON_Parse(*reply);
        bool done = job_finished(cli_json_str(j, "status", ""));
        const char *why = cli_json_str(j, "waiting_reason", NULL);
        if (!done && why && (!said || strcmp(said, why) != 0)) {
            fprintf(stderr, "job %" PRIu64 " queued: %s\n", id, why);
            free(said);
            said = strdup(why);
        }
        cJSON_Delete(j);
        if (done)
            free(said);
        if (done)
            return EXIT_OK;
        rz_free(*reply);
        *reply = NULL;
        sleep_ms(delay);
        delay = delay * 3 / 2 > 2000 ? 2000 : delay * 3 / 2;
    }
}

/* --replicas K as "verify": {"replicas": K}; false (said why) if bad. */
static bool add_verify(const cli *c, cJSON *o)
{
    uint64_t k = 0;
    if (c->replicas && (!cli_parse_u64(c->replicas, 5, &k) || k < 1)) {
        fprintf(stderr, "rhizos: --replicas wants a whole number from 1 to 5, "
                "not '%s'\n", c->replicas);
        return false;
    }
    cJSON *v = k ? cJSON_AddObjectToObject(o, "verify") : NULL;
    if (v)
        cJSON_AddNumberToObject(v, "replicas", (double)k);
    return true;
}

static char *job_body(const cli *c, uint64_t max_cost, uint64_t priority,
                      uint64_t queue_timeout)
{

    cJSON *o = cJSON_CreateObject();
    cJSON *inputs = kv_object(c->inputs, c->n_inputs, "--input", false);
    cJSON *config = kv_object(c->configs, c->n_configs, "--config", false);
    cJSON *labels = kv_object(c->labels, c->n_labels, "--label", true);
    if (!o || !inputs || !config || !labels) {
        cJSON_Delete(o);
        cJSON_Delete(inputs);
        cJSON_Delete(config);
        cJSON_Delete(labels);
        return NULL;
    }
    cJSON *reqs = cJSON_CreateObject();
    if (c->image) {
        cJSON_AddStringToObject(o, "image", c->image);
        if (c->n_cmd) {
            cJSON *cmd = cJSON_AddArrayToObject(o, "command");
            for (size_t i = 0; i < c->n_cmd; i++)
                cJSON_AddItemToArray(cmd, cJSON_CreateString(c->cmd[i]));
        }
    } else {
        cJSON_AddStringToObject(o, "module", c->type);
    }
    cJSON_AddItemToObject(o, "inputs", inputs);
    if (c->n_configs)
        cJSON_AddItemToObject(o, "config", config);
    else
        cJSON_Delete(config);
    if (c->n_labels)
        cJSON_AddItemToObject(reqs, "labels", labels);
    else
        cJSON_Delete(labels);
    static const struct { size_t off; const char *key, *opt; } res[] = {
        { offsetof(cli, gpus), "gpu", "--gpus" },   /* the count */
        { offsetof(cli, memory), "memory_mb", "--memory" },
        { offsetof(cli, cpus), "cpu_cores", "--cpus" },
    };
    for (size_t i = 0; i < sizeof res / sizeof res[0]; i++) {
        const char *v = *(const char *const *)((const char *)c + res[i].off);
        uint64_t n = 0;
        if (!v)
            continue;
        if (!cli_parse_u64(v, 1u << 30, &n) || !n) {
            fprintf(stderr, "rhizos: %s wants a whole number from 1, not '%s'\n",
                    res[i].opt, v);
            cJSON_Delete(reqs);
            cJSON_Delete(o);
            return NULL;
        }
        cJSON_AddNumberToObject(reqs, res[i].key, (double)n);
    }
    if (reqs->child)
        cJSON_AddItemToObject(o, "requirements", reqs);
    else
        cJSON_Delete(reqs);
    if (c->max_cost)
        cJSON_AddNumberToObject(o, "max_cost_micros", (double)max_cost);
    if (c->priority)
        cJSON_AddNumberToObject(o, "priority", (double)priority);
    if (c->queue_timeout)
        cJSON_AddNumberToObject(o, "queue_timeout_s", (double)queue_timeout);
    if (!add_verify(c, o)) {
        cJSON_Delete(o);
        return NULL;
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int cli_run(cli *c, const char *verb)
{
    uint64_t max_cost = 0, priority = 0;
    if (wrong_args("run", c->nargs, 0, 0))
        return EXIT_USAGE;
    if (!c->type && !c->image) {
        fprintf(stderr, "rhizos: run needs -t TYPE (a module id). Try 'rhizos run --help'.\n");
        return EXIT_USAGE;
    }
    bool llm = c->type && strcmp(c->type, "llm") == 0;
    if (!llm && !cli_llm_flags_unused(c))
        return EXIT_USAGE;
    if (c->image && c->type && strcmp(c->type, "docker") != 0) {
        fprintf(stderr, "rhizos: -i IMAGE runs a container: use it with -t docker, "
                "not -t %s\n", c->type);
        return EXIT_USAGE;
    }
    if (!c->image && (c->n_cmd || c->gpus || c->memory || c->cpus)) {
        fprintf(stderr, "rhizos: --cmd, --gpus, --memory and --cpus go with "
                "-t docker -i IMAGE\n");
        return EXIT_USAGE;
    }
    if (!c->image && strcmp(c->type, "docker") == 0) {
        fprintf(stderr, "rhizos: -t docker needs -i IMAGE\n");
        return EXIT_USAGE;
    }
    if (c->max_cost && (!cli_parse_dollars(c->max_cost, 9007199254740992ull, &max_cost) ||
                        !max_cost)) {
        fprintf(stderr, "rhizos: --max-cost wants dollars above 0 with at most 6 "
                "decimals (0.05, $1.25, 0.000834), not '%s'\n", c->max_cost);
        return EXIT_USAGE;
    }
    if (c->priority && !cli_parse_u64(c->priority, 1000000, &priority)) {
        fprintf(stderr, "rhizos: --priority wants a number from 0 to 1000000, not '%s'\n",
                c->priority);
        return EXIT_USAGE;
    }
    uint64_t queue_timeout = 0;
    if (c->queue_timeout &&
        (!cli_parse_u64(c->queue_timeout, 31536000, &queue_timeout) || !queue_timeout)) {
        fprintf(stderr, "rhizos: --queue-timeout wants seconds from 1 to 31536000, "
                "not '%s'\n", c->queue_timeout);
        return EXIT_USAGE;
    }
    char *body = llm ? cli_llm_body(c, max_cost, priority, queue_timeout)
                     : job_body(c, max_cost, priority, queue_timeout);
    if (!body)
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl) {
        free(body);
        return EXIT_USAGE;
    }
    char *r = NULL;
    int ex = cli_request(cl, "POST", "/api/v1/jobs", body, &r);
    free(body);
    if (ex == EXIT_OK && (c->wait || llm)) {   /* an llm answer is waited for */
        cJSON *j = cJSON_Parse(r);
        uint64_t id = (uint64_t)cli_json_int(j, "id");
        cJSON_Delete(j);
        if (!c->quiet && !c->json && !llm)
            fprintf(stderr, "rhizos: job %" PRIu64 " submitted; waiting for it\n", id);
        rz_free(r);
        r = NULL;
        ex = wait_job(cl, id, &r);
    }
    if (ex == EXIT_OK)
        ex = llm ? cli_llm_show(c, r) : show_job(c, r);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

int cli_job(cli *c, const char *verb)
{
    uint64_t id = 0;
    if (c->nargs >= 1 && strcmp(c->args[0], "logs") == 0) {
        if (wrong_args("job logs", c->nargs - 1, 1, 1))
            return EXIT_USAGE;
        return parse_id("job logs", c->args[1], &id) ? cli_job_logs(c, id)
                                                     : EXIT_USAGE;
    }
    if (wrong_args("job", c->nargs, 0, 1))
        return EXIT_USAGE;
    if (c->nargs == 1 && !parse_id("job", c->args[0], &id))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char path[64], *r = NULL;
    if (c->nargs == 1)
        snprintf(path, sizeof path, "/api/v1/jobs/%" PRIu64, id);
    else
        snprintf(path, sizeof path, "/api/v1/jobs");
    int ex = cli_request(cl, "GET", path, NULL, &r);
    cJSON *root = ex == EXIT_OK ? cJSON_Parse(r) : NULL;
    if (ex == EXIT_OK && c->json)
        cli_print_json(r);
    else if (ex == EXIT_OK && c->nargs == 1)
        print_job(root);
    else if (ex == EXIT_OK)
        print_jobs(root);
    /* One job that failed is a failure of the command, as `run --wait`. */
    if (ex == EXIT_OK && c->nargs == 1 &&
        strcmp(cli_json_str(root, "status", ""), "failed") == 0)
        ex = EXIT_FAILED;
    cJSON_Delete(root);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

int cli_cancel(cli *c, const char *verb)
{
    uint64_t id = 0;
    if (wrong_args("cancel", c->nargs, 1, 1))
        return EXIT_USAGE;
    if (!parse_id("cancel", c->args[0], &id))
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char path[80], *r = NULL, *refund = NULL;
    snprintf(path, sizeof path, "/api/v1/jobs/%" PRIu64, id);
    int ex = cli_request(cl, "DELETE", path, NULL, &r);
    if (ex == EXIT_OK) {
        /* What the hold gave back (idempotent once cancelled). */
        snprintf(path, sizeof path, "/api/v1/jobs/%" PRIu64 "/refund", id);
        ex = cli_request(cl, "POST", path, NULL, &refund);
    }
    if (ex == EXIT_OK && c->json) {
        cli_print_json(refund);
    } else if (ex == EXIT_OK) {
        cJSON *o = cJSON_Parse(refund);
        char back[32], charged[32];
        cli_money(cli_json_int(o, "refunded_micros"), back, sizeof back);
        cli_money(cli_json_int(o, "charged_micros"), charged, sizeof charged);
        printf("cancelled job %" PRIu64 ": refunded %s, charged %s\n", id, back, charged);
        cJSON_Delete(o);
    }
    rz_free(r);
    rz_free(refund);
    rz_client_free(cl);
    return ex;
}

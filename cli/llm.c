/* rhizos run -t llm -p PROMPT [--model M] [--max-tokens N] and rhizos
 * models: text generation on the network's model servers (docs/llm.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rhizos/client.h"

void cli_models_usage(void)
{
    printf(
"usage: rhizos models [--json]\n"
"       rhizos run -t llm -p PROMPT [--model M] [--max-tokens N]\n"
"                  [--temperature T] [--timeout S] [--max-cost DOLLARS] [--json]\n"
"\n"
"models: what the network's nodes serve through their [[llm]] model servers\n"
"(GET /api/v1/models): each model, the nodes serving it, their price per\n"
"million tokens (prompt and completion) or per second of the run, size,\n"
"quantisation and context length where the server says them. --json prints\n"
"the orchestrator's JSON, prices as integer micro-dollars per 1,000 tokens\n"
"(price_1k_tokens_micros) or per second (price_second_micros).\n"
"\n"
"run -t llm: one completion. -p PROMPT is the prompt; --model M one of\n"
"`rhizos models` (default: the first listed); --max-tokens N the longest\n"
"completion (default 256); --temperature T from 0 to 2; --timeout S the\n"
"longest run (default 300), what a node priced per second is paid for at\n"
"most. It waits for the answer and prints its text, then tokens and cost\n"
"on stderr; --json prints the job. The hold covers max_tokens plus the prompt at the orchestrator's\n"
"--llm-price unless --max-cost says more; what is charged is the tokens\n"
"the node's server counted at the node's price, or the run's seconds on a\n"
"node priced per second.\n");
}

/* The first model `GET /api/v1/models` lists; NULL (said why) if none. */
static char *first_model(cli *c)
{
    rz_client *cl = cli_client(c);
    char *r = NULL, *name = NULL;
    if (cl && cli_request(cl, "GET", "/api/v1/models", NULL, &r) == EXIT_OK) {
        cJSON *doc = cJSON_Parse(r);
        const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "models"), 0);
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(m, "name"));
        if (n)
            name = strdup(n);
        else
            fprintf(stderr, "rhizos: no node serves a model now (rhizos models); "
                    "name one with --model\n");
        cJSON_Delete(doc);
    }
    rz_free(r);
    rz_client_free(cl);
    if (name && !c->quiet)
        fprintf(stderr, "rhizos: no --model given; using %s\n", name);
    return name;
}

bool cli_llm_flags_unused(const cli *c)
{
    if (!c->prompt && !c->model && !c->max_tokens && !c->temperature &&
        !c->llm_timeout)
        return true;
    fprintf(stderr, "rhizos: -p, --model, --max-tokens, --temperature and "
            "--timeout go with -t llm\n");
    return false;
}

/* --max-tokens, --timeout and --temperature, checked (false: said why). */
static bool llm_numbers(const cli *c, uint64_t *max_tokens, uint64_t *timeout,
                        double *temp)
{
    if (c->max_tokens && (!cli_parse_u64(c->max_tokens, 1000000, max_tokens) ||
                          !*max_tokens)) {
        fprintf(stderr, "rhizos: --max-tokens wants a whole number from 1 to "
                "1000000, not '%s'\n", c->max_tokens);
        return false;
    }
    if (c->llm_timeout && (!cli_parse_u64(c->llm_timeout, RZ_LLM_MAX_SECONDS, timeout) ||
                           !*timeout)) {
        fprintf(stderr, "rhizos: --timeout wants a whole number of seconds from 1 "
                "to %u, not '%s'\n", RZ_LLM_MAX_SECONDS, c->llm_timeout);
        return false;
    }
    char *end = NULL;
    if (c->temperature) {
        *temp = strtod(c->temperature, &end);
        if (!*c->temperature || *end || !(*temp >= 0 && *temp <= 2)) {
            fprintf(stderr, "rhizos: --temperature wants a number from 0 to 2, "
                    "not '%s'\n", c->temperature);
            return false;
        }
    }
    return true;
}

char *cli_llm_body(cli *c, uint64_t max_cost, uint64_t priority,
                   uint64_t queue_timeout)
{
    if (!c->prompt || !*c->prompt) {
        fprintf(stderr, "rhizos: run -t llm needs -p PROMPT. Try 'rhizos models "
                "--help'.\n");
        return NULL;
    }
    if (c->n_inputs || c->n_configs || c->image || c->n_cmd || c->gpus ||
        c->memory || c->cpus) {
        fprintf(stderr, "rhizos: run -t llm takes -p PROMPT, not --input, "
                "--config, -i, --cmd, --gpus, --memory or --cpus\n");
        return NULL;
    }
    uint64_t max_tokens = 256, timeout = 0;
    double temp = 0;
    if (!llm_numbers(c, &max_tokens, &timeout, &temp))
        return NULL;
    char *picked = c->model ? NULL : first_model(c);
    const char *model = c->model ? c->model : picked;
    if (!model)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "llm");
    cJSON_AddStringToObject(o, "model", model);
    cJSON_AddStringToObject(o, "prompt", c->prompt);
    cJSON_AddNumberToObject(o, "max_tokens", (double)max_tokens);
    if (c->temperature)
        cJSON_AddNumberToObject(o, "temperature", temp);
    if (timeout)
        cJSON_AddNumberToObject(o, "timeout_s", (double)timeout);
    if (c->max_cost)
        cJSON_AddNumberToObject(o, "max_cost_micros", (double)max_cost);
    if (c->priority)
        cJSON_AddNumberToObject(o, "priority", (double)priority);
    if (c->queue_timeout)
        cJSON_AddNumberToObject(o, "queue_timeout_s", (double)queue_timeout);
    if (c->n_labels) {
        cJSON *labels = cJSON_AddObjectToObject(
            cJSON_AddObjectToObject(o, "requirements"), "labels");
        for (size_t i = 0; i < c->n_labels; i++) {
            const char *eq = strchr(c->labels[i], '=');
            if (!eq || eq == c->labels[i]) {
                fprintf(stderr, "rhizos: --label wants KEY=VALUE, not '%s'\n",
                        c->labels[i]);
                cJSON_Delete(o);
                free(picked);
                return NULL;
            }
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - c->labels[i]), c->labels[i]);
            cJSON_AddStringToObject(labels, key, eq + 1);
        }
    }
    free(picked);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int cli_llm_show(const cli *c, const char *reply)
{
    cJSON *j = cJSON_Parse(reply);
    const char *status = cli_json_str(j, "status", "");
    int ok = strcmp(status, "succeeded") == 0;
    if (c->json) {
        cli_print_json(reply);
    } else if (ok) {
        const cJSON *out = cJSON_GetObjectItem(j, "outputs");
        const char *text = cli_json_str(out, "text", "");
        size_t n = strlen(text);
        printf("%s%s", text, n && text[n - 1] == '\n' ? "" : "\n");
        if (!c->quiet) {
            char cost[32];
            cli_money(cli_json_int(j, "cost_micros"), cost, sizeof cost);
            fprintf(stderr, "job %lld: %s on node %lld, %lld tokens in, %lld out, "
                    "charged %s\n", (long long)cli_json_int(j, "id"),
                    cli_json_str(out, "model", "?"), (long long)cli_json_int(j, "node"),
                    (long long)cli_json_int(out, "tokens_in"),
                    (long long)cli_json_int(out, "tokens_out"), cost);
        }
    } else {
        fprintf(stderr, "rhizos: job %lld %s: %s\n", (long long)cli_json_int(j, "id"),
                status, cli_json_str(j, "error", "no reason given"));
    }
    cJSON_Delete(j);
    return ok ? EXIT_OK : EXIT_FAILED;
}

/* ---- rhizos models ---- */

static void size_text(const cJSON *n, char *buf, size_t cap)
{
    int64_t b = cli_json_int(n, "size_bytes");
    if (b <= 0)
        snprintf(buf, cap, "-");
    else if (b >= 1000000000)
        snprintf(buf, cap, "%.1f GB", (double)b / 1e9);
    else
        snprintf(buf, cap, "%.0f MB", (double)b / 1e6);
}

/* A node's price for a model: per million tokens, or per second. */
static void price_text(const cJSON *n, char *buf, size_t cap)
{
    char m[32];
    bool per_s = cJSON_GetObjectItem(n, "price_second_micros") != NULL;
    cli_money(per_s ? cli_json_int(n, "price_second_micros")
                    : cli_json_int(n, "price_1k_tokens_micros") * 1000, m, sizeof m);
    snprintf(buf, cap, "%s/%s", m, per_s ? "s" : "1M tok");
}

int cli_models(cli *c, const char *verb)
{
    (void)verb;
    if (c->nargs) {
        fprintf(stderr, "rhizos: models takes no arguments\n");
        return EXIT_USAGE;
    }
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *r = NULL;
    int ex = cli_request(cl, "GET", "/api/v1/models", NULL, &r);
    if (ex == EXIT_OK && c->json) {
        cli_print_json(r);
    } else if (ex == EXIT_OK) {
        cJSON *doc = cJSON_Parse(r);
        const cJSON *m, *n;
        int rows = 0;
        printf("%-32s %6s %20s %9s %8s %8s\n", "MODEL", "NODE", "PRICE",
               "SIZE", "QUANT", "CONTEXT");
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(doc, "models")) {
            cJSON_ArrayForEach(n, cJSON_GetObjectItem(m, "nodes")) {
                char price[48], size[32], ctx[24];
                price_text(n, price, sizeof price);
                size_text(n, size, sizeof size);
                int64_t cl_ = cli_json_int(n, "context_length");
                snprintf(ctx, sizeof ctx, cl_ > 0 ? "%lld" : "-", (long long)cl_);
                printf("%-32s %6lld %20s %9s %8s %8s\n", cli_json_str(m, "name", "?"),
                       (long long)cli_json_int(n, "node"), price, size,
                       cli_json_str(n, "quantization", "-"), ctx);
                rows++;
            }
        }
        if (!rows)
            printf("(no node serves a model now)\n");
        cJSON_Delete(doc);
    }
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

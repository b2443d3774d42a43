/* rhizos match: offline placement of jobs on nodes (DESIGN §4, §5). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MATCH_FILE_MAX ((size_t)512 << 20)

void cli_match_usage(void)
{
    printf(
"usage: rhizos match --nodes NODES.json --jobs JOBS.json [--policy P] [--json]\n"
"\n"
"Places each job, in file order, on a node whose hardware fits, reserving\n"
"its capacity as it goes. NODES.json: an array of node capabilities (what\n"
"`rhizos-node info --json` prints); JOBS.json: [{\"id\", \"requirements\":{...}}].\n"
"Policies: cheapest (default), fastest, reputation, binpack, spread.\n"
"--json prints {\"placements\":[{\"job\",\"node\",\"cost_micros\",\"reason\"}],...}.\n"
"Exit status: 0 every job placed, 1 some job fits no node or a file is\n"
"invalid, 2 usage error.\n");
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rhizos: %s: cannot open\n", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *b2 = cap >= MATCH_FILE_MAX ? NULL : realloc(buf, cap * 2);
            if (!b2) {
                fprintf(stderr, "rhizos: %s: too large\n", path);
                free(buf);
                buf = NULL;
                break;
            }
            buf = b2;
            cap *= 2;
        }
    }
    if (f != stdin)
        fclose(f);
    *len = n;
    return buf;
}

static void input_error(const char *path)
{
    const rz_error *e = rz_error_last();
    fprintf(stderr, "rhizos: %s: %s\n", path, e->message);
}

typedef struct outcome {
    const char *node;       /* NULL: none */
    uint64_t cost;
    char *reason;
} outcome;

static int place_all(rz_matcher *m, rz_reqs **jobs, size_t n, outcome *res)
{
    for (size_t i = 0; i < n; i++) {
        rz_placement p;
        int rc = rz_matcher_place(m, jobs[i], &p);
        if (rc == RZ_OK) {
            res[i].node = p.node_id;
            res[i].cost = p.cost_micros;
        } else if (rc == RZ_ENOENT) {
            if (rz_matcher_explain(m, jobs[i], &res[i].reason) != RZ_OK)
                res[i].reason = NULL;
        } else {
            cli_error("match", rc);
            return -1;
        }
    }
    return 0;
}

static void print_text(rz_reqs **jobs, size_t n, const outcome *res)
{
    size_t placed = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = rz_reqs_get(jobs[i])->id;
        char label[32];
        if (!*id)
            snprintf(label, sizeof label, "#%zu", i + 1), id = label;
        if (res[i].node) {
            char m[32];
            cli_money_u64(res[i].cost, false, m, sizeof m);
            printf("%-20s -> %-20s %s\n", id, res[i].node, m);
            placed++;
            total += res[i].cost;
        } else {
            printf("%-20s -> (none): %s\n", id, res[i].reason ? res[i].reason : "");
        }
    }
    char m[32];
    cli_money_u64(total, false, m, sizeof m);
    printf("placed %zu of %zu jobs; estimated cost %s\n", placed, n, m);
}

static int print_json(rz_reqs **jobs, size_t n, const outcome *res, const char *policy)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "placements");
    size_t placed = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        cJSON *p = cJSON_CreateObject();
        const char *id = rz_reqs_get(jobs[i])->id;
        cJSON_AddItemToObject(p, "job", *id ? cJSON_CreateString(id) : cJSON_CreateNull());
        if (res[i].node) {
            cJSON_AddStringToObject(p, "node", res[i].node);
            cJSON_AddNumberToObject(p, "cost_micros", (double)res[i].cost);
            cJSON_AddNullToObject(p, "reason");
            placed++;
            total += res[i].cost;
        } else {
            cJSON_AddNullToObject(p, "node");
            cJSON_AddNullToObject(p, "cost_micros");
            cJSON_AddStringToObject(p, "reason", res[i].reason ? res[i].reason : "");
        }
        cJSON_AddItemToArray(arr, p);
    }
    cJSON_AddStringToObject(o, "policy", policy);
    cJSON_AddNumberToObject(o, "placed", (double)placed);
    cJSON_AddNumberToObject(o, "unplaced", (double)(n - placed));
    cJSON_AddNumberToObject(o, "total_cost_micros", (double)total);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s)
        return -1;
    cli_print_json(s);
    free(s);
    return 0;
}

static int run(cli *c, rz_policy policy, rz_caps **nodes, size_t nn,
               rz_reqs **jobs, size_t nj)
{
    rz_matcher *m;
    if (rz_matcher_new(&m, policy) != RZ_OK) {
        cli_error("match", RZ_ENOMEM);
        return EXIT_FAILED;
    }
    for (size_t i = 0; i < nn; i++) {
        int rc = rz_matcher_add(m, nodes[i], NULL);
        if (rc != RZ_OK) {
            fprintf(stderr, "rhizos: %s: node %zu: %s\n", c->nodes, i,
                    rz_error_last()->message);
            rz_matcher_free(m);
            return EXIT_FAILED;
        }
    }
    outcome *res = calloc(nj ? nj : 1, sizeof *res);
    int rc = !res || place_all(m, jobs, nj, res) != 0 ? -1 : 0;
    size_t unplaced = 0;
    if (rc == 0) {
        for (size_t i = 0; i < nj; i++)
            unplaced += res[i].node == NULL;
        if (c->json)
            rc = print_json(jobs, nj, res, rz_policy_name(policy));
        else
            print_text(jobs, nj, res);
    }
    for (size_t i = 0; res && i < nj; i++)
        rz_free(res[i].reason);
    free(res);
    rz_matcher_free(m);   /* after printing: node ids are borrowed from it */
    return rc != 0 ? EXIT_FAILED : unplaced ? EXIT_FAILED : EXIT_OK;
}

int cli_match(cli *c, const char *verb)
{
    (void)verb;
    if (!c->nodes || !c->jobs_arg || c->nargs > 0) {
        fprintf(stderr, "rhizos: match needs --nodes FILE and --jobs FILE\n");
        cli_match_usage();
        return EXIT_USAGE;
    }
    rz_policy policy = RZ_POLICY_CHEAPEST;
    if (c->policy && rz_policy_parse(c->policy, &policy) != RZ_OK) {
        fprintf(stderr, "rhizos: %s\n", rz_error_last()->message);
        return EXIT_USAGE;
    }
    size_t nlen = 0, jlen = 0, nn = 0, nj = 0;
    char *ntext = slurp(c->nodes, &nlen);
    char *jtext = ntext ? slurp(c->jobs_arg, &jlen) : NULL;
    rz_caps **nodes = NULL;
    rz_reqs **jobs = NULL;
    int status = EXIT_FAILED;
    if (!ntext || !jtext)
        goto out;
    if (rz_caps_parse_list(&nodes, &nn, ntext, nlen) != RZ_OK) {
        input_error(c->nodes);
        goto out;
    }
    if (rz_reqs_parse_list(&jobs, &nj, jtext, jlen) != RZ_OK) {
        input_error(c->jobs_arg);
        goto out;
    }
    status = run(c, policy, nodes, nn, jobs, nj);
out:
    rz_caps_free_list(nodes, nn);
    rz_reqs_free_list(jobs, nj);
    free(ntext);
    free(jtext);
    return status;
}

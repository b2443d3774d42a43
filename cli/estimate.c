/* rhizos flow estimate FILE [--json] [--prices FILE|DIR] */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The price tables that ship (rz_data_path): installed, or the source
 * tree's data/prices for a build-tree binary; never the working folder's. */
static bool default_prices_dir(char *out, size_t cap)
{
    char *p = rz_data_path("prices");
    int w = p ? snprintf(out, cap, "%s", p) : -1;
    rz_free(p);
    return w > 0 && (size_t)w < cap;
}

static int add_table(rz_prices *p, const char *dir, const char *name)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = rz_prices_add_file(p, path);
    if (rc != RZ_OK)
        cli_error(NULL, rc);
    return rc;
}

/* --prices (a file with "nodes" and/or "providers", or a folder with
 * nodes.json and providers.json); the default tables fill what is missing. */
rz_prices *cli_prices(const cli *c)
{
    rz_prices *p;
    if (rz_prices_new(&p) != RZ_OK)
        return NULL;
    int rc = RZ_OK;
    if (c->prices && is_dir(c->prices)) {
        rc = add_table(p, c->prices, "nodes.json");
        if (rc == RZ_OK)
            rc = add_table(p, c->prices, "providers.json");
    } else if (c->prices && (rc = rz_prices_add_file(p, c->prices)) != RZ_OK) {
        cli_error(NULL, rc);
    }
    char dir[PATH_MAX + 32];
    bool have_default = default_prices_dir(dir, sizeof dir);
    if (rc == RZ_OK && !rz_prices_node_count(p) && have_default)
        rc = add_table(p, dir, "nodes.json");
    if (rc == RZ_OK && !rz_prices_provider_count(p) && have_default)
        rc = add_table(p, dir, "providers.json");
    if (rc == RZ_OK && !rz_prices_node_count(p) && !rz_prices_provider_count(p)) {
        fprintf(stderr, "rhizos: no price tables: give --prices FILE\n");
        rc = RZ_ENOENT;
    }
    if (rc != RZ_OK) {
        rz_prices_free(p);
        return NULL;
    }
    return p;
}

static rz_flow *load_valid(const char *path, const rz_registry *reg)
{
    rz_diags *d;
    if (rz_diags_new(&d) != RZ_OK)
        return NULL;
    rz_flow *flow = NULL;
    int rc = rz_flow_load(&flow, path, RZ_FORMAT_AUTO, d);
    if (rc == RZ_OK)
        rc = rz_flow_expand_with(&flow, reg, cli_expand_opts(false), d);
    if (rc != RZ_OK && rz_diags_error_count(d) == 0)
        cli_error(path, rc);
    rz_diags_sort(d);
    cli_print_diags(d);
    rz_diags_free(d);
    if (rc != RZ_OK) {
        rz_flow_free(flow);
        return NULL;
    }
    return flow;
}

static void money(char *buf, size_t cap, uint64_t micros)
{
    cli_money_u64(micros, false, buf, cap);
}

static void print_text(const rz_estimate *e, const rz_prices *p)
{
    printf("%-16s %-28s %-26s %-34s %s\n", "STEP", "MODULE", "RENT",
           "API", "PICK");
    for (size_t i = 0; i < rz_estimate_count(e); i++) {
        const rz_step_estimate *s = rz_estimate_get(e, i);
        char rent[64] = "-", api[96] = "-", m[32];
        if (s->rent_ok) {
            money(m, sizeof m, s->rent_micros);
            snprintf(rent, sizeof rent, "%s %s", m, s->node_class);
        }
        if (s->api_ok) {
            money(m, sizeof m, s->api_micros);
            snprintf(api, sizeof api, "%s %s/%s", m, s->provider, s->api_model);
        }
        printf("%-16s %-28s %-26s %-34s %s\n", s->step, s->module, rent, api,
               rz_choice_name(s->choice));
        if (!s->rent_ok)
            printf("%16s   no node: %s\n", "", s->rent_reason);
        if (!s->api_ok && *s->api_reason)
            printf("%16s   no API price: %s\n", "", s->api_reason);
    }
    char total[32];
    money(total, sizeof total, rz_estimate_total_micros(e));
    printf("total: %s (%" PRIu64 " micros)%s\n", total, rz_estimate_total_micros(e),
           rz_estimate_complete(e) ? "" : ", some steps could not be priced");
    printf("prices: nodes of %s, providers of %s\n",
           *rz_prices_nodes_date(p) ? rz_prices_nodes_date(p) : "-",
           *rz_prices_providers_date(p) ? rz_prices_providers_date(p) : "-");
}

int cli_flow_estimate(cli *c)
{
    if (c->nargs != 1) {
        fprintf(stderr, "rhizos: flow estimate: wrong number of arguments. "
                        "Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    rz_prices *p = cli_prices(c);
    rz_registry *reg = p ? cli_registry(c) : NULL;
    rz_flow *flow = reg ? load_valid(c->args[0], reg) : NULL;
    rz_estimate *e = NULL;
    int status = EXIT_FAILED;
    int rc = flow ? rz_estimate_flow(&e, flow, p) : RZ_EINVALID;
    if (flow && rc != RZ_OK)
        cli_error(c->args[0], rc);
    if (e) {
        char *json = NULL;
        if (!c->json)
            print_text(e, p);
        else if (rz_estimate_to_json(e, &json) == RZ_OK)
            cli_print_json(json);
        rz_free(json);
        /* An estimate with an unpriced step still prints, but says so. */
        status = rz_estimate_complete(e) ? EXIT_OK : EXIT_FAILED;
    }
    rz_estimate_free(e);
    rz_flow_free(flow);
    rz_registry_free(reg);
    rz_prices_free(p);
    return status;
}

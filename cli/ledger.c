/* rhizos ledger verify|export: the escrow ledger of a data directory, read
 * only, also while an orchestrator writes it (LMDB readers never block). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"

void cli_ledger_usage(void)
{
    printf("usage: rhizos ledger verify [--data DIR] [--json]\n"
           "       rhizos ledger export [--data DIR] [--json]\n"
           "\n"
           "verify  check every ledger invariant (balances against transfers,\n"
           "        debits = credits, no limited account below zero, each\n"
           "        pending transfer resolved at most once); exit 0 when\n"
           "        consistent, 1 with the first breach\n"
           "export  every account and transfer (text, or JSON with --json)\n"
           "\n"
           "The ledger is DIR/ledger; a running writer's state is seen as of\n"
           "its last checkpoint (a running orchestrator checkpoints within a\n"
           "few seconds).\n");
}

static int open_reader(const cli *c, rz_ledger **l)
{
    char *dir = cli_data_dir(c);
    if (!dir) {
        fprintf(stderr, "rhizos: out of memory\n");
        return EXIT_FAILED;
    }
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.read_only = 1;
    int rc = rz_ledger_open(l, dir, &o);
    free(dir);
    if (rc != RZ_OK) {
        cli_error("ledger", rc);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

static int verify(cli *c, rz_ledger *l)
{
    int rc = rz_ledger_verify(l);
    rz_ledger_stats st;
    int src = rc == RZ_OK ? rz_ledger_stats_get(l, &st) : rc;
    if (c->json) {
        if (rc == RZ_OK && src == RZ_OK) {
            char s[128];
            snprintf(s, sizeof s, "{\"consistent\":true,\"accounts\":%llu,"
                     "\"transfers\":%llu}", (unsigned long long)st.accounts,
                     (unsigned long long)st.transfers);
            cli_print_json(s);
        } else {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddBoolToObject(o, "consistent", false);
            cJSON_AddStringToObject(o, "code", rz_status_name(rc));
            cJSON_AddStringToObject(o, "breach", rz_error_last()->message);
            char *s = cJSON_PrintUnformatted(o);
            if (s)
                cli_print_json(s);
            free(s);
            cJSON_Delete(o);
        }
    } else if (rc == RZ_OK && src == RZ_OK) {
        if (!c->quiet)
            printf("ledger consistent: %llu accounts, %llu transfers, %llu "
                   "open holds, %llu micros in escrow, %llu micros in fees, "
                   "as of the last checkpoint (a running orchestrator "
                   "checkpoints within a few seconds)\n",
                   (unsigned long long)st.accounts,
                   (unsigned long long)st.transfers,
                   (unsigned long long)st.open_pending,
                   (unsigned long long)(st.escrow_held_micros +
                                        st.escrow_micros),
                   (unsigned long long)st.fees_micros);
    } else {
        cli_error("ledger verify", rc);
    }
    return rc == RZ_OK && src == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

static int export(cli *c, rz_ledger *l)
{
    char *out;
    int rc = rz_ledger_export(l, c->json, &out);
    if (rc != RZ_OK) {
        cli_error("ledger export", rc);
        return EXIT_FAILED;
    }
    fputs(out, stdout);
    rz_free(out);
    return EXIT_OK;
}

int cli_ledger(cli *c, const char *verb)
{
    bool is_verify = strcmp(verb, "verify") == 0;
    if (!is_verify && strcmp(verb, "export") != 0) {
        fprintf(stderr, "rhizos: unknown ledger command '%s'\n", verb);
        cli_ledger_usage();
        return EXIT_USAGE;
    }
    if (c->nargs) {
        fprintf(stderr, "rhizos: ledger %s takes no arguments\n", verb);
        return EXIT_USAGE;
    }
    rz_ledger *l;
    int rc = open_reader(c, &l);
    if (rc != EXIT_OK)
        return rc;
    rc = is_verify ? verify(c, l) : export(c, l);
    rz_ledger_close(l);
    return rc;
}

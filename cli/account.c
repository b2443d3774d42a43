/* rhizos account create | balance | deposit | withdraw | history | credit |
 * confirm — escrow accounts on an orchestrator (docs/api.md). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rhizos/client.h"

#define MAX_MICROS 9007199254740992ull    /* exact in a JSON number */

void cli_account_usage(void)
{
    printf(
"usage: rhizos account create [--name N]        a client account and its API key\n"
"                                               (admin key; the key is shown once)\n"
"       rhizos account balance [ID|me]          available and held money\n"
"       rhizos account deposit AMOUNT           ask for a deposit address\n"
"       rhizos account withdraw AMOUNT [--address A]\n"
"       rhizos account withdrawals [ID|me]      withdrawals and their status\n"
"       rhizos account history [ID|me]          payments, newest first\n"
"       rhizos account credit ID AMOUNT         test credits (admin)\n"
"       rhizos account confirm DEPOSIT_ID       mark a deposit paid (admin)\n"
"\n"
"AMOUNT is in dollars with at most 6 decimals (12.34, $0.50, 0.000834: the\n"
"ledger counts micro-dollars). ID is an account id (32 hex digits); without\n"
"one, the account of --api-key. --json prints the orchestrator's JSON, whose\n"
"amounts are integer micro-dollars (*_micros).\n");
}

static bool hex_id(const char *s)
{
    size_t n = strlen(s);
    if (n != 32)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static bool account_arg(const char *s)
{
    if (strcmp(s, "me") == 0 || hex_id(s))
        return true;
    fprintf(stderr, "rhizos: account: '%s' is not an account id (32 lowercase hex "
                    "digits) or 'me'\n", s);
    return false;
}

static bool amount_arg(const char *s, uint64_t *micros)
{
    if (cli_parse_dollars(s, MAX_MICROS, micros) && *micros > 0)
        return true;
    fprintf(stderr, "rhizos: account: the amount is dollars above 0 with at most "
                    "6 decimals (12.34, 0.000834), not '%s'\n", s);
    return false;
}

static bool nargs_ok(const cli *c, const char *verb, int min, int max)
{
    if (c->nargs >= min && c->nargs <= max)
        return true;
    fprintf(stderr, "rhizos: account %s: wrong number of arguments. "
                    "Try 'rhizos account --help'.\n", verb);
    return false;
}

/* The id of the key's own account ("me" resolved), into id[33]. */
static int my_account(rz_client *cl, char id[33])
{
    char *r = NULL;
    int ex = cli_request(cl, "GET", "/api/v1/accounts/me", NULL, &r);
    if (ex != EXIT_OK)
        return ex;
    cJSON *o = cJSON_Parse(r);
    const char *s = cli_json_str(o, "id", "");
    ex = hex_id(s) ? EXIT_OK : EXIT_FAILED;
    if (ex == EXIT_OK)
        memcpy(id, s, 33);
    else
        fprintf(stderr, "rhizos: the orchestrator's account reply has no id\n");
    cJSON_Delete(o);
    rz_free(r);
    return ex;
}

static void print_account(const cJSON *a)
{
    char bal[32], held[32];
    cli_money(cli_json_int(a, "balance_micros"), bal, sizeof bal);
    cli_money(cli_json_int(a, "pending_micros"), held, sizeof held);
    printf("account %s (%s)\n  available %s\n  held      %s\n",
           cli_json_str(a, "id", "?"), cli_json_str(a, "kind", "?"), bal, held);
}

/* Newest first; amounts signed as seen from the account (+ in, - out),
 * each movement named from -> to ("you", "escrow", "node 3", ...). */
static void print_payments(const cJSON *root)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "payments");
    if (cJSON_GetArraySize(list) == 0) {
        printf("no payments\n");
        return;
    }
    printf("%6s %-17s %14s %-8s %8s  %s\n", "SEQ", "KIND", "AMOUNT", "STATUS", "JOB",
           "FROM -> TO");
    const cJSON *p;
    cJSON_ArrayForEach(p, list) {
        char amt[32], job[24] = "-";
        bool out = strcmp(cli_json_str(p, "direction", "out"), "in") != 0;
        cli_money_u64((uint64_t)cli_json_int(p, "amount_micros"), out, amt + 1,
                      sizeof amt - 1);
        amt[0] = out ? ' ' : '+';
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(p, "job");
        if (cJSON_IsNumber(j))
            snprintf(job, sizeof job, "%lld", (long long)j->valuedouble);
        printf("%6lld %-17s %14s %-8s %8s  %s -> %s\n", (long long)cli_json_int(p, "seq"),
               cli_json_str(p, "kind", "?"), amt[0] == ' ' ? amt + 1 : amt,
               cli_json_str(p, "status", "?"), job,
               cli_json_str(p, "debit_name", cli_json_str(p, "debit", "?")),
               cli_json_str(p, "credit_name", cli_json_str(p, "credit", "?")));
    }
}

static char *amount_body(uint64_t micros, const char *address)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "amount_micros", (double)micros);
    if (address)
        cJSON_AddStringToObject(o, "address", address);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Each verb: check arguments (2 on a mistake), then talk. */

static int do_create(cli *c, rz_client *cl, char **r)
{
    cJSON *o = cJSON_CreateObject();
    if (c->name)
        cJSON_AddStringToObject(o, "name", c->name);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    int ex = cli_request(cl, "POST", "/api/v1/accounts", body, r);
    free(body);
    if (ex == EXIT_OK && !c->json) {
        cJSON *a = cJSON_Parse(*r);
        printf("account %s\napi key %s\n", cli_json_str(a, "id", "?"),
               cli_json_str(a, "api_key", "?"));
        if (!c->quiet)
            fprintf(stderr, "rhizos: the key is shown only once: keep it "
                            "(RHIZOS_API_KEY or --api-key)\n");
        cJSON_Delete(a);
    }
    return ex;
}

static int do_balance(cli *c, rz_client *cl, char **r)
{
    char path[80];
    snprintf(path, sizeof path, "/api/v1/accounts/%s", c->nargs ? c->args[0] : "me");
    int ex = cli_request(cl, "GET", path, NULL, r);
    if (ex == EXIT_OK && !c->json) {
        cJSON *a = cJSON_Parse(*r);
        print_account(a);
        cJSON_Delete(a);
    }
    return ex;
}

static int do_move(cli *c, rz_client *cl, char **r, bool deposit, uint64_t micros)
{
    char id[33], path[96];
    int ex = my_account(cl, id);
    if (ex != EXIT_OK)
        return ex;
    snprintf(path, sizeof path, "/api/v1/accounts/%s/%s", id, deposit ? "deposit" : "withdraw");
    char *body = amount_body(micros, deposit ? NULL : c->address);
    ex = cli_request(cl, "POST", path, body, r);
    free(body);
    if (ex == EXIT_OK && !c->json) {
        cJSON *o = cJSON_Parse(*r);
        char amt[32];
        cli_money(cli_json_int(o, "amount_micros"), amt, sizeof amt);
        if (deposit)
            printf("deposit %s of %s %s\n  pay to %s\n", cli_json_str(o, "deposit_id", "?"),
                   amt, cli_json_str(o, "status", "?"), cli_json_str(o, "address", "?"));
        else
            printf("withdrawal %s of %s %s\n", cli_json_str(o, "withdrawal_id", "?"), amt,
                   cli_json_str(o, "status", "?"));
        cJSON_Delete(o);
    }
    return ex;
}

static int do_history(cli *c, rz_client *cl, char **r)
{
    char id[33], path[96];
    int ex = EXIT_OK;
    if (c->nargs && strcmp(c->args[0], "me") != 0)
        snprintf(id, sizeof id, "%s", c->args[0]);
    else
        ex = my_account(cl, id);
    if (ex != EXIT_OK)
        return ex;
    snprintf(path, sizeof path, "/api/v1/accounts/%s/payments", id);
    ex = cli_request(cl, "GET", path, NULL, r);
    if (ex == EXIT_OK && !c->json) {
        cJSON *o = cJSON_Parse(*r);
        print_payments(o);
        cJSON_Delete(o);
    }
    return ex;
}

static void print_withdrawals(const cJSON *root)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "withdrawals");
    if (cJSON_GetArraySize(list) == 0) {
        printf("no withdrawals\n");
        return;
    }
    printf("%-32s %14s %-10s %s\n", "ID", "AMOUNT", "STATUS", "ADDRESS / TX");
    const cJSON *w;
    cJSON_ArrayForEach(w, list) {
        char amt[32];
        cli_money(cli_json_int(w, "amount_micros"), amt, sizeof amt);
        printf("%-32s %14s %-10s %s%s%s\n", cli_json_str(w, "id", "?"), amt,
               cli_json_str(w, "status", "?"), cli_json_str(w, "address", "-"),
               cJSON_GetObjectItemCaseSensitive(w, "tx") ? " / " : "",
               cli_json_str(w, "tx", ""));
    }
}

static int do_withdrawals(cli *c, rz_client *cl, char **r, const char *id)
{
    char me[33], path[96];
    int ex = EXIT_OK;
    if (!id || !strcmp(id, "me")) {
        ex = my_account(cl, me);
        id = me;
    }
    if (ex != EXIT_OK)
        return ex;
    snprintf(path, sizeof path, "/api/v1/accounts/%s/withdrawals", id);
    ex = cli_request(cl, "GET", path, NULL, r);
    if (ex == EXIT_OK && !c->json) {
        cJSON *o = cJSON_Parse(*r);
        print_withdrawals(o);
        cJSON_Delete(o);
    }
    return ex;
}

static int do_credit(cli *c, rz_client *cl, char **r, uint64_t micros)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/accounts/%s/test-credits", c->args[0]);
    char *body = amount_body(micros, NULL);
    int ex = cli_request(cl, "POST", path, body, r);
    free(body);
    if (ex == EXIT_OK && !c->json) {
        cJSON *a = cJSON_Parse(*r);
        print_account(a);
        cJSON_Delete(a);
    }
    return ex;
}

static int do_confirm(cli *c, rz_client *cl, char **r)
{
    char path[96];
    snprintf(path, sizeof path, "/api/v1/deposits/%s/confirm", c->args[0]);
    int ex = cli_request(cl, "POST", path, NULL, r);
    if (ex == EXIT_OK && !c->json) {
        cJSON *o = cJSON_Parse(*r);
        char amt[32];
        cli_money(cli_json_int(o, "amount_micros"), amt, sizeof amt);
        printf("deposit %s of %s %s\n", cli_json_str(o, "deposit_id", "?"), amt,
               cli_json_str(o, "status", "?"));
        cJSON_Delete(o);
    }
    return ex;
}

/* Arguments of each verb; 0 when they are fine. */
static int check(cli *c, const char *verb, uint64_t *micros)
{
    if (!strcmp(verb, "create"))
        return nargs_ok(c, verb, 0, 0) ? 0 : -1;
    if (!strcmp(verb, "balance") || !strcmp(verb, "history") ||
        !strcmp(verb, "withdrawals"))
        return nargs_ok(c, verb, 0, 1) && (!c->nargs || account_arg(c->args[0])) ? 0 : -1;
    if (!strcmp(verb, "deposit") || !strcmp(verb, "withdraw"))
        return nargs_ok(c, verb, 1, 1) && amount_arg(c->args[0], micros) ? 0 : -1;
    if (!strcmp(verb, "credit"))
        return nargs_ok(c, verb, 2, 2) && account_arg(c->args[0]) &&
               strcmp(c->args[0], "me") && amount_arg(c->args[1], micros) ? 0 : -1;
    if (!strcmp(verb, "confirm")) {
        if (!nargs_ok(c, verb, 1, 1))
            return -1;
        if (hex_id(c->args[0]))
            return 0;
        fprintf(stderr, "rhizos: account confirm: '%s' is not a deposit id (32 hex digits)\n",
                c->args[0]);
        return -1;
    }
    fprintf(stderr, "rhizos: unknown command 'account %s'. Try 'rhizos account --help'.\n",
            verb);
    return -1;
}

int cli_account(cli *c, const char *verb)
{
    uint64_t micros = 0;
    if (check(c, verb, &micros) != 0)
        return EXIT_USAGE;
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *r = NULL;
    int ex;
    if (!strcmp(verb, "create"))
        ex = do_create(c, cl, &r);
    else if (!strcmp(verb, "balance"))
        ex = do_balance(c, cl, &r);
    else if (!strcmp(verb, "deposit") || !strcmp(verb, "withdraw"))
        ex = do_move(c, cl, &r, !strcmp(verb, "deposit"), micros);
    else if (!strcmp(verb, "history"))
        ex = do_history(c, cl, &r);
    else if (!strcmp(verb, "withdrawals"))
        ex = do_withdrawals(c, cl, &r, c->nargs ? c->args[0] : NULL);
    else if (!strcmp(verb, "credit"))
        ex = do_credit(c, cl, &r, micros);
    else
        ex = do_confirm(c, cl, &r);
    if (ex == EXIT_OK && c->json)
        cli_print_json(r);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

/* ---- rhizos admin: the treasury's side ---- */

void cli_admin_usage(void)
{
    printf(
"usage: rhizos admin withdrawals                 the newest withdrawals of every\n"
"                                                account (admin key)\n"
"       rhizos admin withdrawal complete ID --tx REF\n"
"                                                paid out: record the external\n"
"                                                transaction, post the hold\n"
"       rhizos admin withdrawal fail ID [--tx REF] [--reason TEXT]\n"
"                                                not paid: the money goes back\n"
"                                                to the account's available\n"
"\n"
"A withdrawal is pending until one of these; a completed one cannot fail and\n"
"a failed one cannot complete. Repeating the same call is harmless.\n");
}

static int withdrawal_verb(cli *c, rz_client *cl, char **r)
{
    const char *what = c->nargs ? c->args[0] : "";
    bool complete = !strcmp(what, "complete");
    if ((!complete && strcmp(what, "fail")) || c->nargs != 2 || !hex_id(c->args[1]) ||
        (complete && !c->tx)) {
        fprintf(stderr, "rhizos: admin withdrawal: want complete ID --tx REF or "
                        "fail ID [--tx REF] [--reason TEXT] (ID: 32 hex digits). "
                        "Try 'rhizos admin --help'.\n");
        return EXIT_USAGE;
    }
    cJSON *o = cJSON_CreateObject();
    if (c->tx)
        cJSON_AddStringToObject(o, "tx", c->tx);
    if (c->reason && !complete)
        cJSON_AddStringToObject(o, "reason", c->reason);
    char *body = cJSON_PrintUnformatted(o), path[96];
    cJSON_Delete(o);
    snprintf(path, sizeof path, "/api/v1/withdrawals/%s/%s", c->args[1], what);
    int ex = cli_request(cl, "POST", path, body, r);
    free(body);
    if (ex == EXIT_OK && !c->json) {
        cJSON *w = cJSON_Parse(*r);
        char amt[32];
        cli_money(cli_json_int(w, "amount_micros"), amt, sizeof amt);
        printf("withdrawal %s of %s %s%s%s\n", cli_json_str(w, "id", "?"), amt,
               cli_json_str(w, "status", "?"),
               cJSON_GetObjectItemCaseSensitive(w, "tx") ? ", tx " : "",
               cli_json_str(w, "tx", ""));
        cJSON_Delete(w);
    }
    return ex;
}

int cli_admin(cli *c, const char *verb)
{
    bool list = !strcmp(verb, "withdrawals");
    if (!list && strcmp(verb, "withdrawal")) {
        fprintf(stderr, "rhizos: unknown command 'admin %s'. Try 'rhizos admin "
                        "--help'.\n", verb);
        return EXIT_USAGE;
    }
    if (list && c->nargs) {
        fprintf(stderr, "rhizos: admin withdrawals takes no arguments\n");
        return EXIT_USAGE;
    }
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *r = NULL;
    int ex;
    if (list) {
        ex = cli_request(cl, "GET", "/api/v1/withdrawals", NULL, &r);
        if (ex == EXIT_OK && !c->json) {
            cJSON *o = cJSON_Parse(r);
            print_withdrawals(o);
            cJSON_Delete(o);
        }
    } else {
        ex = withdrawal_verb(c, cl, &r);
    }
    if (ex == EXIT_OK && c->json)
        cli_print_json(r);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

/* rhizos credentials: the credentials an account keeps on its orchestrator,
 * so that a flow deployed elsewhere (the web console) can name them by id
 * only. `put` seals a vault entry's value to the orchestrator's key as
 * `flow deploy` does; the orchestrator keeps it sealed to its own key and
 * never answers it (docs/api.md "Stored credentials"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "cli.h"
#include "rhizos/client.h"

void cli_credentials_usage(void)
{
    printf(
"usage: rhizos credentials put NAME [--vault FILE]\n"
"                         store vault entry NAME (its name or id) on the\n"
"                         orchestrator under that id, for flows deployed\n"
"                         elsewhere (the web console) that name it; the value\n"
"                         is sealed to the orchestrator's key here and never\n"
"                         shown again; a second put replaces it\n"
"       rhizos credentials list\n"
"                         the ids, types and times stored (never values)\n"
"       rhizos credentials rm NAME\n"
"                         forget a stored credential\n"
"\n"
"A deploy takes each credential a flow names and does not supply from the\n"
"deployer's own stored ones (the step's type must match). Ids are 1 to 64\n"
"letters, digits or . _ : @ -. Needs --orchestrator and --api-key (a client\n"
"key) as the other network commands do.\n");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The value of vault entry `name` sealed to `pk` for credential id `name`,
 * base64; its type in *type (static storage of the vault, copied). */
static char *seal_entry(const cli *c, const char *name, const unsigned char pk[32],
                        char *type, size_t cap)
{
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v)
        return NULL;
    size_t i = rz_vault_find(v, name);
    rz_secret *s = NULL;
    unsigned char *sealed = NULL;
    size_t n = 0;
    char *b64 = NULL;
    rz_vault_entry e;
    int rc = i == (size_t)-1 ? RZ_ENOENT : rz_vault_get(v, i, &e);
    if (rc == RZ_OK)
        snprintf(type, cap, "%s", e.type);
    if (rc == RZ_OK)
        rc = rz_vault_reveal(v, i, &s);
    if (rc == RZ_OK)
        rc = rz_vault_seal_value(&sealed, &n, rz_secret_data(s), rz_secret_len(s),
                                 RZ_VAULT_ORCHESTRATOR_JOB, name,
                                 now_ms() + RZ_VAULT_SEAL_TTL_MS, pk);
    rz_secret_free(s);
    rz_vault_close(v);
    if (rc == RZ_ENOENT && i == (size_t)-1)
        fprintf(stderr, "rhizos: no vault entry '%s'\n", name);
    else if (rc != RZ_OK)
        cli_error(name, rc);
    if (rc == RZ_OK) {
        size_t bl = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
        if ((b64 = malloc(bl)))
            sodium_bin2base64(b64, bl, sealed, n, sodium_base64_VARIANT_ORIGINAL);
    }
    rz_free(sealed);
    return b64;
}

static int do_put(cli *c, rz_client *cl, char **r)
{
    unsigned char pk[32];
    int ex;
    if (!cli_orchestrator_key(cl, pk, &ex))
        return ex;
    char type[128];
    char *b64 = seal_entry(c, c->args[0], pk, type, sizeof type);
    if (!b64)
        return EXIT_FAILED;
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "type", type);
    cJSON_AddStringToObject(body, "sealed", b64);
    free(b64);
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    char path[128];
    snprintf(path, sizeof path, "/api/v1/credentials/%s", c->args[0]);
    ex = text ? cli_request(cl, "PUT", path, text, r) : EXIT_FAILED;
    free(text);
    if (ex == EXIT_OK && !c->json && !c->quiet)
        printf("stored %s (%s) on the orchestrator\n", c->args[0], type);
    return ex;
}

static int do_list(const cli *c, rz_client *cl, char **r)
{
    int ex = cli_request(cl, "GET", "/api/v1/credentials", NULL, r);
    if (ex != EXIT_OK || c->json || c->quiet)
        return ex;
    cJSON *doc = cJSON_Parse(*r);
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(doc, "credentials");
    if (!cJSON_GetArraySize(list))
        printf("(no stored credentials)\n");
    else
        printf("%-32s %-20s %s\n", "ID", "TYPE", "STORED");
    const cJSON *e;
    cJSON_ArrayForEach(e, list) {
        char t[32];
        const cJSON *ms = cJSON_GetObjectItemCaseSensitive(e, "created_ms");
        cli_iso_time((uint64_t)cJSON_GetNumberValue(ms), t, sizeof t);
        printf("%-32s %-20s %s\n", cli_json_str(e, "id", ""), cli_json_str(e, "type", ""), t);
    }
    cJSON_Delete(doc);
    return ex;
}

static int do_rm(const cli *c, rz_client *cl, char **r)
{
    char path[128];
    snprintf(path, sizeof path, "/api/v1/credentials/%s", c->args[0]);
    int ex = cli_request(cl, "DELETE", path, NULL, r);
    if (ex == EXIT_OK && !c->json && !c->quiet)
        printf("removed %s from the orchestrator\n", c->args[0]);
    return ex;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    return n >= 1 && n <= 64 &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._:@-") == n;
}

int cli_credentials(cli *c, const char *verb)
{
    bool list = !strcmp(verb, "list");
    if (!list && strcmp(verb, "put") && strcmp(verb, "rm")) {
        fprintf(stderr, "rhizos: unknown credentials command '%s'. "
                "Try 'rhizos credentials --help'.\n", verb);
        return EXIT_USAGE;
    }
    if (c->nargs != (list ? 0 : 1)) {
        fprintf(stderr, "rhizos: usage: rhizos credentials %s. "
                "Try 'rhizos credentials --help'.\n", list ? "list" : verb[0] == 'p'
                ? "put NAME" : "rm NAME");
        return EXIT_USAGE;
    }
    if (!list && !id_ok(c->args[0])) {
        fprintf(stderr, "rhizos: credential id '%.80s': 1 to 64 letters, digits or "
                ". _ : @ -\n", c->args[0]);
        return EXIT_USAGE;
    }
    rz_client *cl = cli_client(c);
    if (!cl)
        return EXIT_USAGE;
    char *r = NULL;
    int ex = list ? do_list(c, cl, &r) : verb[0] == 'p' ? do_put(c, cl, &r) : do_rm(c, cl, &r);
    if (ex == EXIT_OK && c->json)
        cli_print_json(r);
    rz_free(r);
    rz_client_free(cl);
    return ex;
}

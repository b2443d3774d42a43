/* rhizos module list | show | keygen | sign | verify */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"

#define MANIFEST_MAX (4u * 1024u * 1024u)

void cli_module_usage(void)
{
    printf(
"usage: rhizos module list [--json]\n"
"       rhizos module show ID[@SPEC] [--json]\n"
"       rhizos module keygen SECRETKEYFILE\n"
"       rhizos module sign MANIFEST --key SECRETKEYFILE\n"
"       rhizos module verify MANIFEST [--trusted-publisher KEY]...\n"
"\n"
"Modules come from --modules DIR|URL (repeatable), $RHIZOS_MODULES\n"
"(colon-separated) and the modules that ship ($datadir/rhizos/modules, or\n"
"the source tree's examples/modules for a build-tree rhizos); ID may be\n"
"written chain://ID.\n"
"With --trusted-publisher KEY, only modules signed by a trusted key load.\n"
"keygen writes a new Ed25519 secret key (mode 0600) and prints the public\n"
"key; sign adds a \"signature\" to MANIFEST (a module.json or its folder)\n"
"in place; verify exits 0 only if the signature holds (and is trusted).\n");
}

static int need(const cli *c, const char *verb, int n)
{
    if (c->nargs == n)
        return 0;
    fprintf(stderr, "rhizos: module %s: wrong number of arguments. "
                    "Try 'rhizos module --help'.\n", verb);
    return -1;
}

/* ---- list / show ---- */

static int module_list(cli *c)
{
    if (need(c, "list", 0) != 0)
        return EXIT_USAGE;
    rz_registry *reg = cli_registry(c);
    if (!reg)
        return EXIT_FAILED;
    size_t n = rz_registry_count(reg);
    cJSON *arr = c->json ? cJSON_CreateArray() : NULL;
    if (!c->json)
        printf("%-24s %-9s %-8s %s\n", "ID", "VERSION", "SIGNED", "NAME");
    for (size_t i = 0; i < n; i++) {
        const rz_module *m = rz_registry_get(reg, i);
        if (!c->json) {
            printf("%-24s %-9s %-8s %s\n", rz_module_id(m), rz_module_version(m),
                   rz_module_publisher(m) ? "yes" : "no", rz_module_name(m));
            continue;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", rz_module_id(m));
        cJSON_AddStringToObject(o, "version", rz_module_version(m));
        cJSON_AddStringToObject(o, "name", rz_module_name(m));
        cJSON_AddStringToObject(o, "description", rz_module_description(m));
        cJSON_AddStringToObject(o, "origin", rz_module_origin(m));
        if (rz_module_publisher(m))
            cJSON_AddStringToObject(o, "publisher", rz_module_publisher(m));
        else
            cJSON_AddNullToObject(o, "publisher");
        cJSON_AddItemToArray(arr, o);
    }
    int status = EXIT_OK;
    if (arr) {
        char *s = cJSON_PrintUnformatted(arr);
        if (s)
            cli_print_json(s);
        else
            status = EXIT_FAILED;
        free(s);
        cJSON_Delete(arr);
    } else if (c->json) {
        status = EXIT_FAILED;
    }
    rz_registry_free(reg);
    return status;
}

static void show_ports(const cJSON *m, const char *key)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(m, key), *p;
    printf("%s:", key);
    if (!cJSON_GetArraySize(arr))
        printf(" none");
    cJSON_ArrayForEach(p, arr) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        printf(" %s:%s", cJSON_IsString(name) ? name->valuestring : "?",
               cJSON_IsString(type) ? type->valuestring : "any");
    }
    printf("\n");
}

/* The config schema's properties, one per line: "  seconds  number = 1  (the
 * pause)", required ones marked. */
static void show_config(const cJSON *schema)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties"), *p;
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
    printf("config:");
    if (!cJSON_GetArraySize(props))
        printf(" none");
    printf("\n");
    cJSON_ArrayForEach(p, props) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        const cJSON *dflt = cJSON_GetObjectItemCaseSensitive(p, "default");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(p, "description");
        bool required = false;
        const cJSON *r;
        cJSON_ArrayForEach(r, req)
            required = required || (cJSON_IsString(r) && strcmp(r->valuestring, p->string) == 0);
        char *d = dflt ? cJSON_PrintUnformatted(dflt) : NULL;
        printf("  %-20s %-8s%s%s%s%s%s\n", p->string,
               cJSON_IsString(type) ? type->valuestring : "any",
               required ? " (required)" : "", d ? " = " : "", d ? d : "",
               cJSON_IsString(desc) ? "  " : "",
               cJSON_IsString(desc) ? desc->valuestring : "");
        free(d);
    }
}

static void show_text(const rz_module *m, const cJSON *man)
{
    printf("%s@%s  %s\n", rz_module_id(m), rz_module_version(m), rz_module_name(m));
    if (*rz_module_description(m))
        printf("  %s\n", rz_module_description(m));
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(man, "kind");
    if (cJSON_IsString(kind) && strcmp(kind->valuestring, "service") == 0)
        printf("kind: service (runs until stopped; docs/services.md)\n");
    printf("origin: %s\n", rz_module_origin(m));
    printf("signed by: %s\n", rz_module_publisher(m) ? rz_module_publisher(m)
                                                     : "(unsigned)");
    show_ports(man, "inputs");
    show_ports(man, "outputs");
    const cJSON *creds = cJSON_GetObjectItemCaseSensitive(man, "credentials"), *x;
    printf("credentials:");
    if (!cJSON_GetArraySize(creds))
        printf(" none");
    cJSON_ArrayForEach(x, creds) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(x, "name");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(x, "type");
        printf(" %s:%s%s", cJSON_IsString(n) ? n->valuestring : "?",
               cJSON_IsString(t) ? t->valuestring : "?",
               cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(x, "required"))
                   ? "(optional)" : "");
    }
    printf("\n");
    show_config(cJSON_GetObjectItemCaseSensitive(man, "config"));
    const char *keys[] = { "requirements", "estimate", "api_alternative", "exec" };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(man, keys[i]);
        char *s = v ? cJSON_PrintUnformatted(v) : NULL;
        if (s)
            printf("%s: %s\n", keys[i], s);
        free(s);
    }
}

static int module_show(cli *c)
{
    if (need(c, "show", 1) != 0)
        return EXIT_USAGE;
    rz_registry *reg = cli_registry(c);
    if (!reg)
        return EXIT_FAILED;
    /* "chain://" is stripped by the registry; split "<id>@<spec>" here. */
    const char *ref = c->args[0];
    const char *bare = strncmp(ref, "chain://", 8) == 0 ? ref + 8 : ref;
    const char *at = strchr(bare, '@');
    char *id = at ? strndup(bare, (size_t)(at - bare)) : strdup(bare);
    const rz_module *m = NULL;
    int rc = id ? rz_registry_resolve(reg, id, at ? at + 1 : NULL, &m) : RZ_ENOMEM;
    int status = EXIT_FAILED;
    char *json = NULL;
    if (rc != RZ_OK)
        cli_error(ref, rc);
    else if ((rc = rz_module_manifest_json(m, &json)) != RZ_OK)
        cli_error(ref, rc);
    if (json) {
        cJSON *man = cJSON_Parse(json);
        if (c->json)
            cli_print_json(json);
        else if (man)
            show_text(m, man);
        cJSON_Delete(man);
        status = EXIT_OK;
    }
    rz_free(json);
    free(id);
    rz_registry_free(reg);
    return status;
}

/* ---- keys and signatures ---- */

static int module_keygen(cli *c)
{
    if (need(c, "keygen", 1) != 0)
        return EXIT_USAGE;
    char pub[65];
    int rc = rz_sign_keygen(c->args[0], pub);
    if (rc != RZ_OK) {
        cli_error(NULL, rc);
        return EXIT_FAILED;
    }
    if (!c->quiet)
        fprintf(stderr, "secret key written to %s (keep it private); "
                        "public key:\n", c->args[0]);
    printf("%s\n", pub);
    return EXIT_OK;
}

/* MANIFEST may name the module folder. Returns a malloc'd path. */
static char *manifest_path(const char *arg)
{
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode)) {
        size_t n = strlen(arg) + sizeof "/module.json";
        char *p = malloc(n);
        if (p)
            snprintf(p, n, "%s/module.json", arg);
        return p;
    }
    return strdup(arg);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rhizos: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MANIFEST_MAX + 1);
    size_t n = buf ? fread(buf, 1, MANIFEST_MAX + 1, f) : 0;
    bool err = ferror(f);
    fclose(f);
    if (!buf || err || n > MANIFEST_MAX) {
        fprintf(stderr, "rhizos: %s: %s\n", path, !buf ? "out of memory"
                : err ? "read error" : "larger than 4 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Replace `path` atomically, keeping its permission bits. */
static int write_back(const char *path, const char *text)
{
    struct stat st;
    mode_t mode = stat(path, &st) == 0 ? (st.st_mode & 07777) : 0644;
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = false;
    ok = ok && chmod(tmp, mode) == 0 && rename(tmp, path) == 0;
    if (!ok) {
        fprintf(stderr, "rhizos: %s: cannot write: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return ok ? 0 : -1;
}

static int module_sign(cli *c)
{
    const char *key = c->key_file;
    if (need(c, "sign", 1) != 0)
        return EXIT_USAGE;
    if (!key) {
        fprintf(stderr, "rhizos: module sign: --key SECRETKEYFILE is needed\n");
        return EXIT_USAGE;
    }
    char *path = manifest_path(c->args[0]);
    size_t len = 0;
    char *text = path ? slurp(path, &len) : NULL;
    char *signed_text = NULL;
    int status = EXIT_FAILED;
    if (text) {
        int rc = rz_manifest_sign(text, len, key, &signed_text);
        if (rc != RZ_OK)
            cli_error(path, rc);
        else if (write_back(path, signed_text) == 0)
            status = EXIT_OK;
    }
    if (status == EXIT_OK && !c->quiet)
        printf("signed %s\n", path);
    rz_free(signed_text);
    free(text);
    free(path);
    return status;
}

static int module_verify(cli *c)
{
    if (need(c, "verify", 1) != 0)
        return EXIT_USAGE;
    char *path = manifest_path(c->args[0]);
    size_t len = 0;
    char *text = path ? slurp(path, &len) : NULL;
    int status = EXIT_FAILED;
    char *pub = NULL;
    if (text) {
        int rc = rz_manifest_verify(text, len, c->trusted, c->n_trusted, &pub);
        if (rc == RZ_EINVAL) {
            cli_error("--trusted-publisher", rc);
            status = EXIT_USAGE;
        } else if (rc != RZ_OK) {
            cli_error(path, rc);
        } else {
            printf("%s: good signature by %s%s\n", path, pub,
                   c->n_trusted ? " (trusted)" : "");
            status = EXIT_OK;
        }
    }
    rz_free(pub);
    free(text);
    free(path);
    return status;
}

int cli_module(cli *c, const char *verb)
{
    if (strcmp(verb, "list") == 0)
        return module_list(c);
    if (strcmp(verb, "show") == 0)
        return module_show(c);
    if (strcmp(verb, "keygen") == 0)
        return module_keygen(c);
    if (strcmp(verb, "sign") == 0)
        return module_sign(c);
    if (strcmp(verb, "verify") == 0)
        return module_verify(c);
    fprintf(stderr, "rhizos: unknown command 'module %s'. Try 'rhizos module "
                    "--help'.\n", verb);
    return EXIT_USAGE;
}

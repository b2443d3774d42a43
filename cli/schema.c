/* rhizos schema validate SCHEMA.json INSTANCE.json */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SCHEMA_FILE_MAX ((size_t)256 << 20)

void cli_schema_usage(void)
{
    printf(
"usage: rhizos schema validate SCHEMA.json INSTANCE.json [--json]\n"
"\n"
"Checks INSTANCE against the JSON Schema (draft-07) in SCHEMA. Each error is\n"
"printed as INSTANCE:LINE:COLUMN: error: /pointer: message on stderr;\n"
"--json prints [{\"file\",\"line\",\"column\",\"code\",\"message\"}] on stdout\n"
"instead ([] when valid). SCHEMA may use local $refs only. \"-\" reads stdin.\n"
"Exit status: 0 valid, 1 invalid (or INSTANCE is not JSON), 2 usage error\n"
"or an unreadable or invalid schema.\n");
}

/* The whole file, or NULL with the reason printed. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "rhizos: %s: cannot open\n", path);
        return NULL;
    }
    size_t cap = 1 << 14, n = 0, got;
    char *buf = malloc(cap);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n < cap)
            continue;
        char *b2 = cap >= SCHEMA_FILE_MAX ? NULL : realloc(buf, cap * 2);
        if (!b2) {
            fprintf(stderr, "rhizos: %s: too large\n", path);
            free(buf);
            buf = NULL;
            break;
        }
        buf = b2;
        cap *= 2;
    }
    bool err = ferror(f);
    if (f != stdin)
        fclose(f);
    if (buf && err) {
        fprintf(stderr, "rhizos: %s: read error\n", path);
        free(buf);
        buf = NULL;
    }
    *len = n;
    return buf;
}

static rz_schema *load_schema(const char *path)
{
    size_t len;
    char *text = slurp(path, &len);
    if (!text)
        return NULL;
    rz_schema *s;
    int rc = rz_schema_compile(&s, text, len);
    free(text);
    if (rc == RZ_OK)
        return s;
    const rz_error *e = rz_error_last();
    if (rc == RZ_ESYNTAX)
        fprintf(stderr, "rhizos: %s:%u:%u: not valid JSON\n", path, e->line,
                e->column);
    else
        cli_error(path, rc);
    return NULL;
}

static int print_result(const cli *c, const rz_diags *d)
{
    if (!c->json) {
        cli_print_diags(d);
        return 0;
    }
    char *json = NULL;
    if (rz_diags_to_json(d, &json) != RZ_OK) {
        cli_error("printing errors", RZ_ENOMEM);
        return -1;
    }
    cli_print_json(json);
    rz_free(json);
    return 0;
}

static int validate(cli *c)
{
    if (c->nargs != 2) {
        cli_schema_usage();
        return EXIT_USAGE;
    }
    const char *schema_path = c->args[0], *inst_path = c->args[1];
    if (strcmp(schema_path, "-") == 0 && strcmp(inst_path, "-") == 0) {
        fprintf(stderr, "rhizos: only one of SCHEMA and INSTANCE can be stdin\n");
        return EXIT_USAGE;
    }
    rz_schema *s = load_schema(schema_path);
    if (!s)
        return EXIT_USAGE;
    size_t len;
    char *text = slurp(inst_path, &len);
    if (!text) {
        rz_schema_free(s);
        return EXIT_USAGE;
    }
    rz_diags *d = NULL;
    int rc = rz_diags_new(&d);
    if (rc == RZ_OK)
        rc = rz_schema_check(s, text, len, inst_path, d);
    free(text);
    rz_schema_free(s);
    int out = rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
    if (rc == RZ_ENOMEM)
        cli_error(inst_path, rc);
    else if (print_result(c, d) != 0)
        out = EXIT_FAILED;
    rz_diags_free(d);
    return out;
}

int cli_schema(cli *c, const char *verb)
{
    if (strcmp(verb, "validate") == 0)
        return validate(c);
    fprintf(stderr, "rhizos: schema: unknown command '%s'\n", verb);
    cli_schema_usage();
    return EXIT_USAGE;
}

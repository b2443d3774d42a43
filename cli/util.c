/* Helpers shared by the command groups: registries, paths, diagnostics. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* A broken manifest does not make the command fail (a flow may not use
 * it), so its problems are warnings: the module is skipped. */
static void print_registry_diags(const rz_diags *d)
{
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        const char *file = x->file[0] ? x->file : "<registry>";
        const char *tail = x->code == RZ_EMANIFEST ? " (module skipped)" : "";
        if (x->line)
            fprintf(stderr, "%s:%u:%u: warning: %s%s\n", file, x->line,
                    x->column, x->message, tail);
        else
            fprintf(stderr, "%s: warning: %s%s\n", file, x->message, tail);
    }
}

const rz_flow_expand_opts *cli_expand_opts(bool keep_named)
{
    static rz_flow_expand_opts o = RZ_FLOW_EXPAND_OPTS_INIT;
    const char *dir = getenv("RHIZOS_FLOWS");
    o.flows_dir = dir && dir[0] ? dir : NULL;
    o.keep_named = keep_named;
    return &o;
}

rz_registry *cli_registry(const cli *c)
{
    rz_registry *reg;
    rz_diags *d;
    if (rz_registry_new(&reg) != RZ_OK)
        return NULL;
    if (rz_diags_new(&d) != RZ_OK) {
        rz_registry_free(reg);
        return NULL;
    }
    /* Trust first: it applies to the modules added after it. */
    for (size_t i = 0; i < c->n_trusted; i++)
        if (rz_registry_trust(reg, c->trusted[i]) != RZ_OK) {
            fprintf(stderr, "rhizos: --trusted-publisher: %s\n",
                    rz_error_last()->message);
            rz_diags_free(d);
            rz_registry_free(reg);
            return NULL;
        }
    /* Registries added first win for an identical id@version: the user's
     * own --modules (folders or http(s) index URLs), then the environment,
     * then the examples. */
    for (size_t i = 0; i < c->n_modules; i++)
        if (rz_registry_add(reg, c->modules[i], d) != RZ_OK)
            fprintf(stderr, "rhizos: %s\n", rz_error_last()->message);
    (void)!rz_registry_add_defaults(reg, d);   /* its problems are in d */
    print_registry_diags(d);
    rz_diags_free(d);
    return reg;
}

char *cli_data_dir(const cli *c)
{
    if (c->data_dir)
        return strdup(c->data_dir);
    const char *xdg = getenv("XDG_DATA_HOME");
    char buf[PATH_MAX];
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/rhizos", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.local/share/rhizos",
                 getenv("HOME") ? getenv("HOME") : ".");
    return strdup(buf);
}

void cli_print_diags(const rz_diags *d)
{
    if (!d || rz_diags_count(d) == 0)
        return;
    char *text = NULL;
    if (rz_diags_to_text(d, &text) == RZ_OK)
        fputs(text, stderr);
    rz_free(text);
}

void cli_error(const char *context, int rc)
{
    const rz_error *e = rz_error_last();
    const char *msg = e->code == rc && e->message[0] ? e->message : rz_strerror(rc);
    if (context)
        fprintf(stderr, "rhizos: %s: %s\n", context, msg);
    else
        fprintf(stderr, "rhizos: %s\n", msg);
}

bool cli_stderr_tty(void)
{
    return isatty(STDERR_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb");
}

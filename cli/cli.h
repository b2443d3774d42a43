/* Shared state and helpers of the `rhizos` command-line shell. */
#ifndef RZ_CLI_H
#define RZ_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include "rhizos/rhizos.h"

/* Exit codes (DESIGN §5). */
enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

typedef struct cli {
    bool json;
    bool quiet;
    bool no_sandbox;
    const char *jobs_arg;         /* --jobs: a number for `flow run`, a
                                     file for `match` */
    const char *vault;            /* --vault FILE */
    const char *type;             /* --type T */
    bool reveal;                  /* --reveal */
    const char *nodes;            /* --nodes FILE */
    const char *policy;           /* --policy P */
    const char *trusted[16];      /* --trusted-publisher KEY (repeatable) */
    size_t n_trusted;
    const char *prices;           /* --prices FILE (estimate tables) */
    const char *key_file;         /* --key FILE (module sign) */
    const char *data_dir;         /* NULL: default */
    const char *format;           /* export format, NULL: json */
    const char *modules[32];      /* --modules, in order given */
    size_t n_modules;
    const char *inputs[256];      /* --input k=v */
    size_t n_inputs;
    const char *orchestrator;
    const char *api_key;
    char **args;                  /* positionals after "GROUP VERB" */
    int nargs;
} cli;

int cli_flow(cli *c, const char *verb);
void cli_flow_usage(void);
int cli_match(cli *c, const char *verb);
void cli_match_usage(void);
int cli_vault(cli *c, const char *verb);
void cli_vault_usage(void);
int cli_ledger(cli *c, const char *verb);
void cli_ledger_usage(void);
int cli_module(cli *c, const char *verb);
void cli_module_usage(void);
/* rhizos flow estimate (cli/estimate.c). */
int cli_flow_estimate(cli *c);
int cli_schema(cli *c, const char *verb);
void cli_schema_usage(void);

/* A registry of --modules, $RHIZOS_MODULES and the default examples/modules,
 * trusting --trusted-publisher keys. Problems are printed; returns NULL when
 * out of memory or a trusted key is malformed. */
rz_registry *cli_registry(const cli *c);
/* The data directory: --data, else $XDG_DATA_HOME/rhizos, else
 * ~/.local/share/rhizos. Returns a malloc'd string. */
char *cli_data_dir(const cli *c);
/* Print diagnostics compiler-style on stderr (or nothing if empty). */
void cli_print_diags(const rz_diags *d);
/* "rhizos: <message from rz_error_last>" on stderr. */
void cli_error(const char *context, int rc);
bool cli_stderr_tty(void);
/* Open and unlock the vault of --vault / $RHIZOS_VAULT / the default path,
 * asking for the password if $RHIZOS_VAULT_PASSWORD is unset. Problems are
 * printed; NULL then. */
struct rz_vault *cli_vault_open_unlocked(const cli *c);

#endif

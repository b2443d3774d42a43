/* rhizos — the command-line shell over librhizos. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage_options(FILE *out);

static void usage(FILE *out)
{
    fprintf(out,
"usage: rhizos [OPTIONS] COMMAND [ARGS]\n"
"\n"
"Flows (embedded: no server needed):\n"
"  flow validate FILE...   check flows against the module registry\n"
"  flow plan FILE          stages in execution order and the critical path\n"
"  flow run FILE           run a flow on this machine\n"
"  flow runs               list the runs recorded under --data\n"
"  flow serve FILE...      run the flows' cron triggers here until stopped\n"
"  flow export FILE        canonical JSON with credential values stripped\n"
"  flow estimate FILE      cost per step: rented node vs API [--prices F]\n"
"  ui                      the web console on this machine [--listen A:P]\n"
"                          [--open]; see ui --help\n"
"\n"
"Modules (--modules DIR|URL, --trusted-publisher KEY):\n"
"  module list|show|keygen|sign|verify   registry contents and signatures\n"
"\n"
"Credential vault (--vault FILE, env RHIZOS_VAULT):\n"
"  vault init|add|list|show|rm|passwd   secrets for modules; see vault --help\n"
"\n"
"Placement (offline):\n"
"  match --nodes F --jobs F [--policy P]   which node gets which job\n"
"\n"
"Escrow ledger (of --data DIR, also while an orchestrator runs):\n"
"  ledger verify|export    check its invariants; dump accounts and transfers\n"
"\n"
"JSON Schema (draft-07):\n"
"  schema validate SCHEMA INSTANCE   check a JSON document against a schema\n"
"\n"
"Network (--orchestrator URL, --api-key-file FILE; or the client config):\n"
"  status                  the orchestrator's health and counts\n"
"  nodes                   its nodes\n"
"  run -t TYPE             submit a job [--input k=v] [--max-cost DOLLARS]\n"
"                          [--priority N] [--wait]; see run --help\n"
"  run -t docker -i IMAGE  a container image without a module\n"
"  run -t llm -p PROMPT    text from a model a node serves [--model M]\n"
"                          [--max-tokens N] [--timeout S]; see models --help\n"
"  models                  the models the network serves, by whom, at\n"
"                          what price\n"
"  job [ID], cancel ID    show your jobs or one; cancel one (refunded)\n"
"  job logs ID [--follow|--attempt N] [--since T]   one job's log, live\n"
"                          with --follow\n"
"  account VERB ...        escrow accounts: balance, withdraw...; account --help\n"
"  admin withdrawal ...    the treasury's side of withdrawals; admin --help\n"
"  flow deploy FILE, flow status|watch|cancel ID   flows on the network\n"
"  flow stop ID            end a run of services: an embedded one on this\n"
"                          machine, or a deployment (as cancel)\n"
"  flow logs ID [STEP] [--follow] [--since T]   steps' logs of a\n"
"                          deployment or a run\n"
"  flow file ID STEP OUTPUT [-o PATH]   save a step's file output\n"
"  flow list, flow versions|schedule|rollback|diff NAME   named flows, triggers\n"
"  flow disable|enable NAME TRIGGER   switch a flow's trigger off or on\n"
"  flow pause|resume ID, flow approve|reject ID STEP   hold a run; decide a gate\n"
"  flow cache clear|list|stats   the step cache that flow resume reuses\n"
"  credentials put|list|rm   vault entries kept sealed on the orchestrator, for\n"
"                          flows deployed by id (the console); credentials --help\n"
"\n");
    usage_options(out);
}

static void usage_options(FILE *out)
{
    fprintf(out,
"Options:\n"
"  --json                  machine-readable output\n"
"  --modules DIR           add a module registry folder (repeatable;\n"
"                          also $RHIZOS_MODULES, colon-separated)\n"
"  --data DIR              where runs are recorded (default\n"
"                          $XDG_DATA_HOME/rhizos)\n"
"  --input NAME=VALUE      a flow input for `flow run` (repeatable; VALUE is\n"
"                          JSON if it parses as JSON, else a string)\n"
"  --jobs N                steps run in parallel (default: number of cores)\n"
"  --no-sandbox            run steps without bubblewrap\n"
"  --format json|yaml|cbor output syntax of `flow export` (default json)\n"
"  --orchestrator URL      orchestrator address (env RHIZOS_URL, default\n"
"                          http://127.0.0.1:8080)\n"
"  --api-key-file FILE     read the API key from FILE (mode 0600; env\n"
"                          RHIZOS_API_KEY_FILE): keeps it out of argv\n"
"  --api-key KEY           API key (env RHIZOS_API_KEY)\n"
"  --context NAME          a [context.NAME] of the client config (env\n"
"                          RHIZOS_CONTEXT)\n"
"  --ca-file FILE          trust these PEM certificates for https (env\n"
"                          RHIZOS_CA_FILE; config ca_file)\n"
"  -t, --type TYPE         module of `run` (also the vault entry type)\n"
"  --max-cost DOLLARS      most a job may cost (run), e.g. 0.05\n"
"  --priority N            higher runs first (run)\n"
"  --wait                  wait for the job and print its outputs (run)\n"
"  --config --label --queue-timeout --replicas --cmd --gpus --memory --cpus\n"
"                          more for run: see run --help\n"
"  --name N, --address A   account name (create), payout address (withdraw)\n"
"  --tx REF, --reason TEXT a withdrawal's transaction, why it failed (admin)\n"
"  --comment TEXT          a note with a decision (flow approve|reject)\n"
"  --note TEXT             the author's note on a new version (flow deploy)\n"
"  --limit N               at most N entries, newest first (flow runs:\n"
"                          default 20, 0 for all)\n"
"  --prune [--older-than AGE]  flow runs: remove runs that ended more than\n"
"                          AGE ago (default 90d; flow run prunes on its own:\n"
"                          RHIZOS_RUNS_KEEP, 0 keeps all)\n"
"  --container-host URL    container engine for docker steps (flow run):\n"
"                          unix:///PATH (default: DOCKER_HOST, then the\n"
"                          Docker and Podman sockets)\n"
"  --follow                flow logs, job logs: keep printing lines as they come\n"
"  -o, --output PATH       flow file: where to save it (- for stdout)\n"
"  --since T               flow logs, job logs: only lines that came at or\n"
"                          after T: a duration ago (30s, 10m, 2h, 1d) or an\n"
"                          RFC 3339 time (2026-12-05T16:00:00Z); a deployment's\n"
"                          or job's lines are timed as they reach the\n"
"                          orchestrator (within ~1 s), an embedded run's only\n"
"                          by their step's end\n"
"  --listen HOST:PORT      flow serve: take webhook calls there (IPv4)\n"
"  --flow NAME, --step ID  flow cache: only that flow's, that step's results\n"
"  --remote                flow cache clear: on the orchestrator (your account)\n"
"  --llm KIND=URL          model server(s) for llm steps (flow run; KIND\n"
"                          ollama or openai, several space-separated;\n"
"                          default: RHIZOS_LLM_SERVERS)\n"
"  -q, --quiet             print only results and errors\n"
"  -h, --help              this help;  rhizos help COMMAND for more\n"
"  -V, --version           print the version\n"
"\n"
"\n"
"Client config: $XDG_CONFIG_HOME/rhizos/config.toml (or RHIZOS_CONFIG):\n"
"  orchestrator = \"http://127.0.0.1:8080\"\n"
"  api_key_file = \"~/.config/rhizos/key\"   # never the key itself\n"
"  context = \"lab\"                          # the default context\n"
"  [context.lab]\n"
"  orchestrator = \"http://10.0.0.2:8080\"\n"
"The flag wins over the environment, which wins over the config.\n"
"\n"
"Shell completion: rhizos completion bash|zsh|fish\n"
"\n"
"Exit status: 0 success, 1 the thing failed (invalid flow, run failed),\n"
"2 usage error, 3 cannot reach the orchestrator, 130 interrupted (Ctrl-C).\n");
}

enum { OPT_JSON = 256, OPT_MODULES, OPT_DATA, OPT_INPUT, OPT_JOBS,
       OPT_NO_SANDBOX, OPT_FORMAT, OPT_ORCH, OPT_KEY, OPT_VAULT, OPT_TYPE,
       OPT_REVEAL, OPT_NODES, OPT_POLICY, OPT_TRUSTED, OPT_PRICES,
       OPT_KEYFILE, OPT_MAX_COST, OPT_PRIORITY, OPT_WAIT, OPT_NAME,
       OPT_ADDRESS, OPT_TX, OPT_REASON, OPT_LIMIT, OPT_CONFIG, OPT_LABEL, OPT_QUEUE_TIMEOUT,
       OPT_REPS,
       OPT_CMD, OPT_GPUS, OPT_MEMORY, OPT_CPUS, OPT_CONTAINER_HOST,
       OPT_KEY_FILE, OPT_CONTEXT, OPT_CA_FILE, OPT_MODEL, OPT_MAX_TOKENS, OPT_TEMPERATURE,
       OPT_LLM_TIMEOUT,
       OPT_COMMENT, OPT_NOTE, OPT_LLM, OPT_FOLLOW, OPT_PRUNE, OPT_OLDER_THAN,
       OPT_LISTEN, OPT_OPEN, OPT_UI_DIR, OPT_ATTEMPT, OPT_FLOW, OPT_STEP, OPT_REMOTE,
       OPT_SINCE };

static const struct option long_opts[] = {
    { "json", no_argument, NULL, OPT_JSON },
    { "modules", required_argument, NULL, OPT_MODULES },
    { "data", required_argument, NULL, OPT_DATA },
    { "input", required_argument, NULL, OPT_INPUT },
    { "jobs", required_argument, NULL, OPT_JOBS },
    { "no-sandbox", no_argument, NULL, OPT_NO_SANDBOX },
    { "format", required_argument, NULL, OPT_FORMAT },
    { "orchestrator", required_argument, NULL, OPT_ORCH },
    { "api-key", required_argument, NULL, OPT_KEY },
    { "api-key-file", required_argument, NULL, OPT_KEY_FILE },
    { "context", required_argument, NULL, OPT_CONTEXT },
    { "ca-file", required_argument, NULL, OPT_CA_FILE },
    { "vault", required_argument, NULL, OPT_VAULT },
    { "type", required_argument, NULL, 't' },
    { "reveal", no_argument, NULL, OPT_REVEAL },
    { "nodes", required_argument, NULL, OPT_NODES },
    { "policy", required_argument, NULL, OPT_POLICY },
    { "trusted-publisher", required_argument, NULL, OPT_TRUSTED },
    { "prices", required_argument, NULL, OPT_PRICES },
    { "key", required_argument, NULL, OPT_KEYFILE },
    { "max-cost", required_argument, NULL, OPT_MAX_COST },
    { "priority", required_argument, NULL, OPT_PRIORITY },
    { "wait", no_argument, NULL, OPT_WAIT },
    { "config", required_argument, NULL, OPT_CONFIG },
    { "label", required_argument, NULL, OPT_LABEL },
    { "queue-timeout", required_argument, NULL, OPT_QUEUE_TIMEOUT },
    { "replicas", required_argument, NULL, OPT_REPS },
    { "image", required_argument, NULL, 'i' },
    { "cmd", required_argument, NULL, OPT_CMD },
    { "gpus", required_argument, NULL, OPT_GPUS },
    { "memory", required_argument, NULL, OPT_MEMORY },
    { "cpus", required_argument, NULL, OPT_CPUS },
    { "name", required_argument, NULL, OPT_NAME },
    { "address", required_argument, NULL, OPT_ADDRESS },
    { "tx", required_argument, NULL, OPT_TX },
    { "reason", required_argument, NULL, OPT_REASON },
    { "limit", required_argument, NULL, OPT_LIMIT },
    { "container-host", required_argument, NULL, OPT_CONTAINER_HOST },
    { "prompt", required_argument, NULL, 'p' },
    { "model", required_argument, NULL, OPT_MODEL },
    { "max-tokens", required_argument, NULL, OPT_MAX_TOKENS },
    { "timeout", required_argument, NULL, OPT_LLM_TIMEOUT },
    { "temperature", required_argument, NULL, OPT_TEMPERATURE },
    { "comment", required_argument, NULL, OPT_COMMENT },
    { "note", required_argument, NULL, OPT_NOTE },
    { "llm", required_argument, NULL, OPT_LLM },
    { "follow", no_argument, NULL, OPT_FOLLOW },
    { "attempt", required_argument, NULL, OPT_ATTEMPT },
    { "prune", no_argument, NULL, OPT_PRUNE },
    { "older-than", required_argument, NULL, OPT_OLDER_THAN },
    { "listen", required_argument, NULL, OPT_LISTEN },
    { "open", no_argument, NULL, OPT_OPEN },
    { "ui-dir", required_argument, NULL, OPT_UI_DIR },
    { "flow", required_argument, NULL, OPT_FLOW },
    { "step", required_argument, NULL, OPT_STEP },
    { "remote", no_argument, NULL, OPT_REMOTE },
    { "since", required_argument, NULL, OPT_SINCE },
    { "output", required_argument, NULL, 'o' },
    { "quiet", no_argument, NULL, 'q' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, 'V' },
    { NULL, 0, NULL, 0 },
};

/* The options of account and admin verbs. */
static void account_option(cli *c, int ch)
{
    const char **slot = ch == OPT_NAME ? &c->name : ch == OPT_ADDRESS ? &c->address
                      : ch == OPT_TX ? &c->tx : &c->reason;
    *slot = optarg;
}

/* The options of flow, job and ui verbs. */
static void flow_option(cli *c, int ch)
{
    switch (ch) {
    case OPT_LIMIT: c->limit = optarg; break;
    case OPT_COMMENT: c->comment = optarg; break;
    case OPT_NOTE: c->note = optarg; break;
    case OPT_FOLLOW: c->follow = true; break;
    case OPT_ATTEMPT: c->attempt = optarg; break;
    case OPT_PRUNE: c->prune = true; break;
    case OPT_OLDER_THAN: c->older_than = optarg; break;
    case OPT_LISTEN: c->listen = optarg; break;
    case OPT_OPEN: c->open = true; break;
    case OPT_UI_DIR: c->ui_dir = optarg; break;
    case OPT_FLOW: c->flow = optarg; break;      /* flow cache */
    case OPT_STEP: c->step = optarg; break;
    case OPT_REMOTE: c->remote = true; break;
    case OPT_SINCE: c->since = optarg; break;
    case 'o': c->output = optarg; break;
    }
}

static bool add_arg(const char **v, size_t *n, const char *opt)
{
    if (*n == 64) {
        fprintf(stderr, "rhizos: too many %s\n", opt);
        return false;
    }
    v[(*n)++] = optarg;
    return true;
}

/* Where network commands connect (cli/config.c resolves the rest). */
static void net_option(cli *c, int ch)
{
    const char **slot = ch == OPT_ORCH ? &c->orchestrator : ch == OPT_KEY ? &c->api_key
                      : ch == OPT_KEY_FILE ? &c->api_key_file
                      : ch == OPT_CA_FILE ? &c->ca_file : &c->context;
    *slot = optarg;
}

/* The options only `run` (and `flow run`: --container-host) reads. */
static bool run_option(cli *c, int ch)
{
    switch (ch) {
    case OPT_CONFIG: return add_arg(c->configs, &c->n_configs, "--config");
    case OPT_LABEL: return add_arg(c->labels, &c->n_labels, "--label");
    case OPT_CMD: return add_arg(c->cmd, &c->n_cmd, "--cmd");
    case OPT_QUEUE_TIMEOUT: c->queue_timeout = optarg; break;
    case OPT_REPS: c->replicas = optarg; break;
    case 'i': c->image = optarg; break;
    case OPT_GPUS: c->gpus = optarg; break;
    case OPT_MEMORY: c->memory = optarg; break;
    case OPT_CPUS: c->cpus = optarg; break;
    case OPT_WAIT: c->wait = true; break;
    case OPT_CONTAINER_HOST: c->container_host = optarg; break;
    case 'p': c->prompt = optarg; break;
    case OPT_MODEL: c->model = optarg; break;
    case OPT_MAX_TOKENS: c->max_tokens = optarg; break;
    case OPT_TEMPERATURE: c->temperature = optarg; break;
    case OPT_LLM_TIMEOUT: c->llm_timeout = optarg; break;
    case OPT_LLM: c->llm_servers = optarg; break;
    }
    return true;
}

/* A missing value (':') or an unknown option: said, -1. */
static int bad_option(char **argv, int ch)
{
    if (ch == ':')   /* for a long option optopt is its enum value, not a letter */
        fprintf(stderr, "rhizos: option '%s' needs a value\n", argv[optind - 1]);
    else if (optopt > 0 && optopt < 128 && optopt != '?')
        fprintf(stderr, "rhizos: unknown option '-%c'\n", optopt);
    else
        fprintf(stderr, "rhizos: unknown option '%s'\n", argv[optind - 1]);
    fprintf(stderr, "Try 'rhizos --help'.\n");
    return -1;
}

static int parse_options(cli *c, int argc, char **argv, bool *help)
{
    int ch;
    opterr = 0;
    /* The leading ':' makes a missing value ':' rather than '?'. */
    while ((ch = getopt_long(argc, argv, ":qhVt:i:p:o:", long_opts, NULL)) != -1) {
        switch (ch) {
        case OPT_JSON: c->json = true; break;
        case OPT_MODULES:
            if (c->n_modules == (sizeof(c->modules) / sizeof((c->modules)[0]))) {
                fprintf(stderr, "rhizos: too many --modules\n");
                return -1;
            }
            c->modules[c->n_modules++] = optarg;
            break;
        case OPT_DATA: c->data_dir = optarg; break;
        case OPT_INPUT:
            if (c->n_inputs == (sizeof(c->inputs) / sizeof((c->inputs)[0]))) {
                fprintf(stderr, "rhizos: too many --input\n");
                return -1;
            }
            c->inputs[c->n_inputs++] = optarg;
            break;
        case OPT_JOBS: c->jobs_arg = optarg; break;
        case OPT_VAULT: c->vault = optarg; break;
        case OPT_TYPE:
        case 't': c->type = optarg; break;
        case OPT_MAX_COST: c->max_cost = optarg; break;
        case OPT_PRIORITY: c->priority = optarg; break;
        case OPT_CONFIG: case OPT_LABEL: case OPT_QUEUE_TIMEOUT: case 'i': case OPT_CONTAINER_HOST:
        case OPT_CMD: case OPT_GPUS: case OPT_MEMORY: case OPT_CPUS: case OPT_WAIT: case OPT_REPS:
        case 'p': case OPT_MODEL: case OPT_MAX_TOKENS: case OPT_TEMPERATURE:
        case OPT_LLM_TIMEOUT:
        case OPT_LLM:
            if (!run_option(c, ch)) return -1;
            break;
        case OPT_NAME: case OPT_ADDRESS: case OPT_TX: case OPT_REASON:
            account_option(c, ch); break;
        case OPT_LIMIT: case OPT_COMMENT: case OPT_NOTE: case OPT_FOLLOW:
        case OPT_ATTEMPT: case OPT_PRUNE: case OPT_OLDER_THAN: case OPT_LISTEN:
        case OPT_OPEN: case OPT_UI_DIR: case OPT_FLOW: case OPT_STEP: case OPT_REMOTE:
        case OPT_SINCE: case 'o':
            flow_option(c, ch); break;
        case OPT_REVEAL: c->reveal = true; break;
        case OPT_NODES: c->nodes = optarg; break;
        case OPT_POLICY: c->policy = optarg; break;
        case OPT_TRUSTED:
            if (c->n_trusted == sizeof c->trusted / sizeof c->trusted[0]) {
                fprintf(stderr, "rhizos: too many --trusted-publisher\n");
                return -1;
            }
            c->trusted[c->n_trusted++] = optarg;
            break;
        case OPT_PRICES: c->prices = optarg; break;
        case OPT_KEYFILE: c->key_file = optarg; break;
        case OPT_NO_SANDBOX: c->no_sandbox = true; break;
        case OPT_FORMAT: c->format = optarg; break;
        case OPT_ORCH: case OPT_KEY: case OPT_KEY_FILE: case OPT_CONTEXT: case OPT_CA_FILE:
            net_option(c, ch); break;
        case 'q': c->quiet = true; break;
        case 'h': *help = true; break;
        case 'V':
            printf("rhizos %s (librhizos %s)\n", RZ_VERSION_STRING, rz_version());
            exit(EXIT_OK);
        default:
            return bad_option(argv, ch);
        }
    }
    return 0;
}

/* Command groups: `rhizos GROUP [VERB] ARGS...`. A group without verbs
 * (needs_verb 0) gets every positional after its name as arguments. */
static const struct {
    const char *name;
    int needs_verb;
    int (*run)(cli *c, const char *verb);
    void (*usage)(void);
    const char *verbs;       /* for shell completion, space-separated */
} groups[] = {
    { "flow", 1, cli_flow, cli_flow_usage,
      "validate plan run runs export estimate deploy status watch cancel stop list versions "
      "rollback schedule pause resume approve reject diff logs file serve cache publish enable "
      "disable" },
    { "vault", 1, cli_vault, cli_vault_usage, "init add list show rm passwd" },
    { "credentials", 1, cli_credentials, cli_credentials_usage, "put list rm" },
    { "match", 0, cli_match, cli_match_usage, "" },
    { "ledger", 1, cli_ledger, cli_ledger_usage, "verify export" },
    { "schema", 1, cli_schema, cli_schema_usage, "validate" },
    { "module", 1, cli_module, cli_module_usage, "list show keygen sign verify" },
    { "status", 0, cli_status, cli_net_usage, "" },
    { "nodes", 0, cli_nodes, cli_net_usage, "" },
    { "run", 0, cli_run, cli_net_usage, "" },
    { "job", 0, cli_job, cli_net_usage, "logs" },
    { "cancel", 0, cli_cancel, cli_net_usage, "" },
    { "models", 0, cli_models, cli_models_usage, "" },
    { "account", 1, cli_account, cli_account_usage,
      "create balance deposit withdraw withdrawals history credit confirm" },
    { "admin", 1, cli_admin, cli_admin_usage, "withdrawal" },
    { "ui", 0, cli_ui, cli_ui_usage, "" },
};
#define N_GROUPS (sizeof groups / sizeof groups[0])

/* `rhizos help [COMMAND]`. */
static int help_command(const char *name)
{
    if (!name) {
        usage(stdout);
        return EXIT_OK;
    }
    for (size_t i = 0; i < N_GROUPS; i++)
        if (strcmp(name, groups[i].name) == 0) {
            groups[i].usage();
            return EXIT_OK;
        }
    fprintf(stderr, "rhizos: no command '%s'. Try 'rhizos --help'.\n", name);
    return EXIT_USAGE;
}

/* `rhizos completion SHELL`, from the tables above. */
static int completion(const char *shell)
{
    cli_command cmds[N_GROUPS + 2];
    for (size_t i = 0; i < N_GROUPS; i++)
        cmds[i] = (cli_command){ groups[i].name, groups[i].verbs };
    cmds[N_GROUPS] = (cli_command){ "help", "" };
    cmds[N_GROUPS + 1] = (cli_command){ "completion", "bash zsh fish" };
    size_t n_opts = 0;
    cli_option opts[sizeof long_opts / sizeof long_opts[0]];
    for (const struct option *o = long_opts; o->name; o++)
        opts[n_opts++] = (cli_option){ o->name, o->has_arg == required_argument };
    return cli_completion(shell, cmds, N_GROUPS + 2, opts, n_opts);
}

int main(int argc, char **argv)
{
    cli c = {0};
    bool help = false;
    if (parse_options(&c, argc, argv, &help) != 0)
        return EXIT_USAGE;
    char **pos = argv + optind;
    int npos = argc - optind;
    if (npos == 0) {
        usage(help ? stdout : stderr);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    const char *group = pos[0];
    const char *verb = npos > 1 ? pos[1] : NULL;
    c.args = pos + 2;
    c.nargs = npos > 2 ? npos - 2 : 0;
    for (size_t i = 0; i < N_GROUPS; i++) {
        if (strcmp(group, groups[i].name) != 0)
            continue;
        if (help || (groups[i].needs_verb && !verb)) {
            groups[i].usage();
            return help ? EXIT_OK : EXIT_USAGE;
        }
        if (!groups[i].needs_verb) {
            c.args = pos + 1;
            c.nargs = npos - 1;
        }
        int rc = groups[i].run(&c, groups[i].needs_verb ? verb : NULL);
        cli_connection_free(&c);
        return rc;
    }
    if (strcmp(group, "help") == 0) {
        if (npos > 2) {
            fprintf(stderr, "rhizos: help takes one command name\n");
            return EXIT_USAGE;
        }
        return help_command(verb);
    }
    if (strcmp(group, "completion") == 0) {
        if (help || npos != 2) {
            fprintf(help ? stdout : stderr, "usage: rhizos completion bash|zsh|fish\n"
                    "  bash: source <(rhizos completion bash)   (e.g. in ~/.bashrc)\n"
                    "  zsh:  source <(rhizos completion zsh)    (e.g. in ~/.zshrc)\n"
                    "  fish: rhizos completion fish > ~/.config/fish/completions/rhizos.fish\n");
            return help ? EXIT_OK : EXIT_USAGE;
        }
        return completion(verb);
    }
    fprintf(stderr, "rhizos: unknown command '%s'. Try 'rhizos --help'.\n", group);
    return EXIT_USAGE;
}

/* rhizos-node — the node agent: what this machine offers the network,
 * and the loop that sells it (server/node/, docs/node.md). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rhizos/rhizos.h"
#include "node/node.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define MAX_MODULES 32

typedef struct opts {
    int json, force, no_sandbox, once, quiet;
    const char *data_dir;
    const char *url;
    const char *container_host;
    const char *ca_file;
    const char *modules[MAX_MODULES];
    size_t n_modules;
} opts;

static void usage(FILE *out)
{
    fprintf(out,
"usage: rhizos-node [OPTIONS] COMMAND\n"
"\n"
"  init          create this node: keys in DATA/keys and DATA/config.toml\n"
"                (orchestrator URL, prices, limits, labels)\n"
"  register      detect the hardware and register with the orchestrator;\n"
"                prints the node id and its payout account\n"
"  start         register if needed, then take jobs and run them until\n"
"                SIGTERM/SIGINT (docs/node.md)\n"
"  info          the detected hardware: a summary, or with --json the node\n"
"                capabilities this node advertises (docs/hardware.md)\n"
"  benchmark     measure CPU and memory bandwidth (about 2 s) and store the\n"
"                result for `info` in DATA/node-benchmark.json\n"
"  status        what the running node is doing: its orchestrator, jobs,\n"
"                verification and earnings, from its local API\n"
"  slurm-run DIR run one spooled job on a Slurm compute node (the batch jobs\n"
"                of a [backend] kind = \"slurm\" gateway submit it)\n"
"\n"
"Options:\n"
"  --data DIR          where the node keeps its files (default\n"
"                      $XDG_DATA_HOME/rhizos-node); one folder per node\n"
"  --orchestrator URL  instead of [orchestrator] url of config.toml\n"
"  --ca-file FILE      register, start: trust the CA certificates in FILE\n"
"                      (PEM) for an https orchestrator, instead of\n"
"                      [orchestrator] ca_file (default: the system's CAs)\n"
"  --force             init: replace an existing node's keys and config\n"
"  --modules DIR|URL   start: a module registry searched first (repeatable;\n"
"                      then $RHIZOS_MODULES, then the shipped modules)\n"
"  --no-sandbox        start: run jobs without bubblewrap (trusted work only)\n"
"  --container-host URL  start, info: the container engine (unix:///PATH)\n"
"                      instead of [container] host of config.toml\n"
"  --once              start: exit after the first job has finished\n"
"  --quiet             start: no line per job\n"
"  --json              machine-readable output\n"
"  -h, --help          this help; rhizos-node help COMMAND for one\n");
}

/* `rhizos-node help CMD`, `rhizos-node CMD --help`: one command's use. */
static const struct {
    const char *cmd, *text;
} command_help[] = {
    { "init",
      "usage: rhizos-node init [--data DIR] [--orchestrator URL] [--force]\n\n"
      "Create this node: its keys in DATA/keys (0600) and DATA/config.toml with the\n"
      "orchestrator URL, prices, limits and labels to edit (docs/node.md). An\n"
      "existing node is kept unless --force, which replaces its keys: the old\n"
      "identity and its unpaid earnings are then out of reach.\n" },
    { "register",
      "usage: rhizos-node register [--data DIR] [--orchestrator URL] [--ca-file FILE]\n"
      "                            [--json]\n\n"
      "Detect the hardware and register it, signed with the node's key, with the\n"
      "orchestrator; prints the node id and its payout account. Registering again\n"
      "keeps the same id.\n" },
    { "start",
      "usage: rhizos-node start [--data DIR] [--orchestrator URL] [--modules DIR|URL]...\n"
      "                         [--no-sandbox] [--container-host URL] [--ca-file FILE]\n"
      "                         [--once] [--quiet]\n\n"
      "Register if needed, then take jobs and run them until SIGTERM or SIGINT\n"
      "(running jobs are stopped and reported). --modules: a registry searched\n"
      "first; --no-sandbox runs steps without the sandbox (trusted work only);\n"
      "--once exits after the first job; --quiet prints no line per job.\n" },
    { "info",
      "usage: rhizos-node info [--data DIR] [--container-host URL] [--json]\n\n"
      "The detected hardware as a summary, or with --json the capabilities this\n"
      "node advertises (docs/hardware.md).\n" },
    { "slurm-run",
      "usage: rhizos-node slurm-run [--data DIR] [--modules DIR|URL]... [--no-sandbox]\n"
      "                             [--container-host URL] DIR\n\n"
      "Run the job in DIR/assignment.json here, as `start` would, and write its\n"
      "result to DIR/result.json; talks to no orchestrator. The Slurm batch jobs\n"
      "of a gateway ([backend] kind = \"slurm\", docs/node.md) run it on a compute\n"
      "node, with the gateway's data folder and spool shared there.\n" },
    { "benchmark",
      "usage: rhizos-node benchmark [--data DIR]\n\n"
      "Measure CPU and memory bandwidth (about 2 s) and keep the result for `info`\n"
      "in DATA/node-benchmark.json.\n" },
    { "status",
      "usage: rhizos-node status [--data DIR] [--json]\n\n"
      "What the node started on DIR is doing, read from its local API (the address\n"
      "in DATA/api.addr; [api] listen in config.toml): its orchestrator connection,\n"
      "verification, running and recent jobs, and its payout account's balance.\n"
      "--json prints the API's answer. Exits 3 when no node runs there.\n" },
};

static int help_for(const char *cmd)
{
    for (size_t i = 0; i < sizeof command_help / sizeof command_help[0]; i++)
        if (strcmp(cmd, command_help[i].cmd) == 0) {
            fputs(command_help[i].text, stdout);
            return EXIT_OK;
        }
    fprintf(stderr, "rhizos-node: unknown command '%s'\nTry 'rhizos-node --help'.\n", cmd);
    return EXIT_USAGE;
}

/* --data, else $XDG_DATA_HOME/rhizos-node, else ~/.local/share/rhizos-node. */
static void data_dir(const opts *o, char *buf, size_t n)
{
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (o->data_dir)
        snprintf(buf, n, "%s", o->data_dir);
    else if (xdg && *xdg)
        snprintf(buf, n, "%s/rhizos-node", xdg);
    else
        snprintf(buf, n, "%s/.local/share/rhizos-node", home ? home : ".");
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "rhizos-node: %s: %s\n", what,
            *rz_error_last()->message ? rz_error_last()->message : rz_strerror(rc));
}

/* The summary's line for the [[llm]] servers' models (docs/llm.md). */
static void print_llm(const char *caps_json)
{
    cJSON *c = cJSON_Parse(caps_json);
    const cJSON *llm = cJSON_GetObjectItemCaseSensitive(c, "llm"), *m;
    if (llm) {
        const cJSON *ps = cJSON_GetObjectItem(llm, "price_second_micros");
        printf("llm       %.6f USD per %s; models:",
               cJSON_GetNumberValue(ps ? ps : cJSON_GetObjectItem(llm, "price_1k_tokens_micros"))
               / 1e6, ps ? "second" : "1000 tokens");
        int n = 0;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(llm, "models"))
            printf("%s %s", n++ ? "," : "",
                   cJSON_GetStringValue(cJSON_GetObjectItem(m, "name")));
        printf("%s\n", n ? "" : " none (no [[llm]] server answers)");
    }
    cJSON_Delete(c);
}

/* The same object `start` registers: the hardware, the config's prices
 * and labels, and the adapters this node really serves. */
static int cmd_info(const opts *o)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], err[800];
    data_dir(o, dir, sizeof dir);
    node_config cfg;
    node_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/config.toml", dir);
    if (access(path, F_OK) == 0 &&
        node_config_load(&cfg, path, err, sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return EXIT_FAILED;
    }
    if (o->container_host && node_config_set_container_host(
            &cfg, o->container_host, err, sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        node_config_free(&cfg);
        return EXIT_USAGE;
    }
    char *json = node_capabilities(dir, &cfg, err, sizeof err);
    node_config_free(&cfg);
    if (!json) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return EXIT_FAILED;
    }
    rz_caps *caps = NULL;
    char *text = NULL;
    int rc = rz_caps_parse(&caps, json, strlen(json));
    if (rc == RZ_OK)
        rc = o->json ? rz_caps_to_json(caps, 1, &text)
                     : rz_caps_to_text(caps, &text);
    rz_caps_free(caps);
    if (rc != RZ_OK) {
        free(json);
        fail("formatting", rc);
        return EXIT_FAILED;
    }
    fputs(text, stdout);
    if (!o->json)
        print_llm(json);
    free(json);
    if (o->json)
        fputc('\n', stdout);
    else   /* the wasm adapter's runtime, or why there is none */
        printf("wasm      %s\n", rz_wasm_runtime() ? rz_wasm_runtime()
                                                  : "no runtime answers");
    rz_free(text);
    return EXIT_OK;
}

static int store_benchmark(const char *dir, const char *json)
{
    char d[PATH_MAX], path[PATH_MAX + 32];
    snprintf(d, sizeof d, "%s", dir);
    if (node_mkdirs(d) != 0) {
        fprintf(stderr, "rhizos-node: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/node-benchmark.json", dir);
    size_t n = strlen(json);
    char *text = malloc(n + 2);
    if (text) {
        memcpy(text, json, n);
        memcpy(text + n, "\n", 2);
    }
    /* 0600 like everything else in the data folder. */
    if (!text || node_write_private(path, text, n + 1) != 0) {
        fprintf(stderr, "rhizos-node: cannot write %s: %s\n", path, strerror(errno));
        free(text);
        return -1;
    }
    free(text);
    return 0;
}

static int cmd_benchmark(const opts *o)
{
    rz_hw_bench b;
    int rc = rz_hw_benchmark(&b, 1.5);
    if (rc != RZ_OK) {
        fail("benchmark", rc);
        return EXIT_FAILED;
    }
    char *json = NULL, dir[PATH_MAX];
    if (rz_hw_bench_to_json(&b, &json) != RZ_OK) {
        fail("benchmark", RZ_ENOMEM);
        return EXIT_FAILED;
    }
    data_dir(o, dir, sizeof dir);
    int stored = store_benchmark(dir, json);
    if (o->json)
        printf("%s\n", json);
    else
        printf("cpu     %.0f Mops/s (one thread, integer + float)\n"
               "memory  %.0f MB/s (memcpy of 64 MiB)\n"
               "took    %.2f s; stored in %s/node-benchmark.json\n",
               b.cpu_mops, b.memory_mbps, b.seconds, dir);
    rz_free(json);
    return stored == 0 ? EXIT_OK : EXIT_FAILED;
}

/* ---- init / register / start ---- */

static const char *url_of(const opts *o, const node_config *cfg)
{
    return o->url ? o->url : cfg->orchestrator_url ? cfg->orchestrator_url
                                                   : NODE_DEFAULT_URL;
}

static int valid_url(const char *url)
{
    return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
}

static int write_config(const char *dir, const opts *o, char *err, size_t n)
{
    node_config cfg;
    node_config_defaults(&cfg);
    cfg.orchestrator_url = strdup(o->url ? o->url : NODE_DEFAULT_URL);
    char *text = cfg.orchestrator_url ? node_config_format(&cfg) : NULL;
    node_config_free(&cfg);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/config.toml", dir);
    int rc = text ? node_write_private(path, text, strlen(text)) : -1;
    if (rc != 0)
        snprintf(err, n, "cannot write %.600s: %s", path, strerror(errno));
    free(text);
    return rc;
}

/* A new identity makes an old registration meaningless. */
static void forget_registration(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/state.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/token", dir);
    unlink(path);
}

static void print_init(const opts *o, const char *dir)
{
    node_keys k;
    char err[600], ed[65], x[65];
    if (node_keys_load(&k, dir, err, sizeof err) != 0)
        return;
    node_hex(ed, k.ed_pk, sizeof k.ed_pk);
    node_hex(x, k.x_pk, sizeof k.x_pk);
    node_keys_free(&k);
    if (o->json)
        printf("{\"data\":\"%s\",\"ed25519_public_key\":\"%s\","
               "\"x25519_public_key\":\"%s\"}\n", dir, ed, x);
    else
        printf("node created in %s\n"
               "  identity key (Ed25519)  %s\n"
               "  sealing key (X25519)    %s\n"
               "  configuration           %s/config.toml\n"
               "next: rhizos-node start --data %s (it registers on first start)\n",
               dir, ed, x, dir, dir);
}

static int cmd_init(const opts *o)
{
    char dir[PATH_MAX], path[PATH_MAX + 16], err[800];
    data_dir(o, dir, sizeof dir);
    if (o->url && !valid_url(o->url)) {
        fprintf(stderr, "rhizos-node: --orchestrator must start with http:// "
                "or https://\n");
        return EXIT_USAGE;
    }
    snprintf(path, sizeof path, "%s/config.toml", dir);
    if (!o->force && access(path, F_OK) == 0) {
        fprintf(stderr, "rhizos-node: %s already holds a node (%s exists); "
                "use --force to replace its keys and configuration\n", dir, path);
        return EXIT_FAILED;
    }
    if (node_mkdirs(dir) != 0) {
        fprintf(stderr, "rhizos-node: cannot create %s: %s\n", dir, strerror(errno));
        return EXIT_FAILED;
    }
    if (node_keys_create(dir, o->force, err, sizeof err) != 0 ||
        write_config(dir, o, err, sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        return EXIT_FAILED;
    }
    forget_registration(dir);
    print_init(o, dir);
    return EXIT_OK;
}

static int load_node(const char *dir, node_config *cfg, node_keys *k)
{
    char path[PATH_MAX + 16], err[800];
    snprintf(path, sizeof path, "%s/config.toml", dir);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "rhizos-node: %s: no node here (run `rhizos-node "
                "init --data %s` first)\n", path, dir);
        return -1;
    }
    if (node_config_load(cfg, path, err, sizeof err) != 0 ||
        node_keys_load(k, dir, err, sizeof err) != 0) {
        fprintf(stderr, "rhizos-node: %s\n", err);
        node_config_free(cfg);
        return -1;
    }
    return 0;
}

static int cmd_register(const opts *o)
{
    char dir[PATH_MAX], err[800];
    data_dir(o, dir, sizeof dir);
    node_config cfg;
    node_keys k;
    if (load_node(dir, &cfg, &k) != 0)
        return EXIT_FAILED;
    const char *url = url_of(o, &cfg);
    node_state st = {0};
    if (o->ca_file && node_config_set_ca_file(&cfg, o->ca_file) != 0) {
        node_config_free(&cfg);
        node_keys_free(&k);
        return EXIT_FAILED;
    }
    int rc = node_register(dir, url, &cfg, &k, &st, err, sizeof err);
    if (rc != RZ_OK)
        fprintf(stderr, "rhizos-node: %s\n", err);
    else if (o->json)
        printf("{\"id\":%" PRIu64 ",\"account\":\"%s\",\"orchestrator\":\"%s\"}\n",
               st.id, st.account, st.url);
    else
        printf("registered as node %" PRIu64 " at %s\npayout account %s\n",
               st.id, st.url, st.account);
    node_state_free(&st);
    node_keys_free(&k);
    node_config_free(&cfg);
    return rc == RZ_OK ? EXIT_OK
         : rc == RZ_ECONNECT ? EXIT_UNREACHABLE : EXIT_FAILED;
}

static int cmd_start(const opts *o)
{
    char dir[PATH_MAX];
    data_dir(o, dir, sizeof dir);
    if (o->url && !valid_url(o->url)) {
        fprintf(stderr, "rhizos-node: --orchestrator must start with http:// "
                "or https://\n");
        return EXIT_USAGE;
    }
    node_opts no = { .data_dir = dir, .url = o->url, .modules = o->modules,
                     .n_modules = o->n_modules, .no_sandbox = o->no_sandbox,
                     .container_host = o->container_host, .ca_file = o->ca_file,
                     .once = o->once, .quiet = o->quiet, .json = o->json };
    return node_agent_run(&no) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* `rhizos-node status`: GET /status of the local API. */
static int fetch_status(const char *dir, cJSON **out)
{
    char path[PATH_MAX + 16], url[128];
    snprintf(path, sizeof path, "%s/api.addr", dir);
    size_t len = 0;
    char *addr = node_read_file(path, 256, &len);
    if (!addr) {
        fprintf(stderr, "rhizos-node: no node is running on %s (%s: %s)\n",
                dir, path, strerror(errno));
        return EXIT_UNREACHABLE;
    }
    addr[strcspn(addr, "\r\n")] = '\0';
    if (node_api_split(addr, NULL, 0, NULL) != 0) {
        fprintf(stderr, "rhizos-node: %s: not an ADDRESS:PORT\n", path);
        free(addr);
        return EXIT_FAILED;
    }
    snprintf(url, sizeof url, "http://%s", addr);
    free(addr);
    rz_client *c = NULL;
    int rc = rz_client_new(&c, url, NULL);
    if (rc == RZ_OK)
        rc = node_call(c, "GET", "/status", NULL, 0, NULL, out);
    rz_client_free(c);
    if (rc != RZ_OK) {
        fail(url, rc);
        return rc == RZ_ECONNECT ? EXIT_UNREACHABLE : EXIT_FAILED;
    }
    return EXIT_OK;
}

static const char *str_in(const cJSON *o, const char *k)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return s ? s : "";
}

static double num_in(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

static void print_status(const cJSON *st)
{
    const cJSON *node = cJSON_GetObjectItemCaseSensitive(st, "node");
    const cJSON *orch = cJSON_GetObjectItemCaseSensitive(st, "orchestrator");
    const cJSON *slots = cJSON_GetObjectItemCaseSensitive(st, "slots");
    const cJSON *earn = cJSON_GetObjectItemCaseSensitive(st, "earnings"), *j;
    double id = num_in(node, "id");
    if (id == id)
        printf("node      %.0f (payout account %s)\n", id, str_in(node, "account"));
    else
        printf("node      not registered yet\n");
    printf("orchest.  %s (%s)\n", str_in(orch, "url"), str_in(orch, "state"));
    printf("verified  %s\n", str_in(st, "verification"));
    printf("slots     %.0f of %.0f busy\n", num_in(slots, "busy"), num_in(slots, "total"));
    if (cJSON_IsObject(earn))
        printf("earnings  $%.6f available, $%.6f pending\n",
               num_in(earn, "balance_micros") / 1e6, num_in(earn, "pending_micros") / 1e6);
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(st, "running"))
        printf("running   job %.0f attempt %.0f %s for %.1f s\n", num_in(j, "job"),
               num_in(j, "attempt"), str_in(j, "module"), num_in(j, "elapsed_ms") / 1000.0);
    int n = 0;
    cJSON_ArrayForEach(j, cJSON_GetObjectItemCaseSensitive(st, "recent")) {
        if (n++ == 10)
            break;
        printf("%-9s job %.0f attempt %.0f %s", n == 1 ? "recent" : "",
               num_in(j, "job"), num_in(j, "attempt"), str_in(j, "outcome"));
        if (*str_in(j, "module"))
            printf(" %s", str_in(j, "module"));
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "run_ms")))
            printf(" in %.2f s", num_in(j, "run_ms") / 1000.0);
        if (*str_in(j, "detail"))
            printf(": %s", str_in(j, "detail"));
        putchar('\n');
    }
}

static int cmd_status(const opts *o)
{
    char dir[PATH_MAX];
    data_dir(o, dir, sizeof dir);
    cJSON *st = NULL;
    int rc = fetch_status(dir, &st);
    if (rc != EXIT_OK)
        return rc;
    if (o->json) {
        char *text = cJSON_PrintUnformatted(st);
        printf("%s\n", text ? text : "null");
        cJSON_free(text);
    } else {
        print_status(st);
    }
    cJSON_Delete(st);
    return EXIT_OK;
}

static int cmd_slurm_run(const opts *o, int n, char **args)
{
    if (n != 1 || args[0][0] != '/') {
        fprintf(stderr, "rhizos-node: slurm-run takes one absolute folder\n");
        return EXIT_USAGE;
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "rhizos-node: libsodium cannot start\n");
        return EXIT_FAILED;
    }
    char dir[PATH_MAX];
    data_dir(o, dir, sizeof dir);
    node_opts no = { .data_dir = dir, .modules = o->modules,
                     .n_modules = o->n_modules, .no_sandbox = o->no_sandbox,
                     .container_host = o->container_host, .quiet = 1 };
    return node_agent_run_spooled(&no, args[0]) == 0 ? EXIT_OK : EXIT_FAILED;
}

/* The options: 0 to go on, else the exit status (--version, a mistake). */
static int parse_opts(int argc, char **argv, opts *o, int *help)
{
    static const struct option longs[] = {
        { "json", no_argument, NULL, 'j' },
        { "data", required_argument, NULL, 'd' },
        { "orchestrator", required_argument, NULL, 'o' },
        { "force", no_argument, NULL, 'f' },
        { "modules", required_argument, NULL, 'm' },
        { "no-sandbox", no_argument, NULL, 'S' },
        { "container-host", required_argument, NULL, 'C' },
        { "ca-file", required_argument, NULL, 'A' },
        { "once", no_argument, NULL, '1' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'j': o->json = 1; break;
        case 'd': o->data_dir = optarg; break;
        case 'o': o->url = optarg; break;
        case 'f': o->force = 1; break;
        case 'S': o->no_sandbox = 1; break;
        case 'C': o->container_host = optarg; break;
        case 'A': o->ca_file = optarg; break;
        case '1': o->once = 1; break;
        case 'q': o->quiet = 1; break;
        case 'm':
            if (o->n_modules == MAX_MODULES) {
                fprintf(stderr, "rhizos-node: at most %d --modules\n", MAX_MODULES);
                return EXIT_USAGE;
            }
            o->modules[o->n_modules++] = optarg;
            break;
        case 'h': *help = 1; break;
        case 'V':
            printf("rhizos-node %s (librhizos %s)\n", RZ_VERSION_STRING, rz_version());
            return -1;
        default:
            fprintf(stderr, "Try 'rhizos-node --help'.\n");
            return EXIT_USAGE;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts o = {0};
    int help = 0, rc = parse_opts(argc, argv, &o, &help);
    if (rc != 0)
        return rc < 0 ? EXIT_OK : rc;
    if (optind >= argc) {
        usage(help ? stdout : stderr);
        return help ? EXIT_OK : EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "help") == 0 && optind + 2 >= argc) {
        if (optind + 1 < argc)
            return help_for(argv[optind + 1]);
        usage(stdout);
        return EXIT_OK;
    }
    if (help)
        return help_for(cmd);
    if (strcmp(cmd, "slurm-run") == 0)
        return cmd_slurm_run(&o, argc - optind - 1, argv + optind + 1);
    if (optind + 1 < argc) {
        fprintf(stderr, "rhizos-node: unexpected argument '%s'\n", argv[optind + 1]);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "info") == 0)
        return cmd_info(&o);
    if (strcmp(cmd, "benchmark") == 0)
        return cmd_benchmark(&o);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(&o);
    if (sodium_init() < 0) {
        fprintf(stderr, "rhizos-node: libsodium cannot start\n");
        return EXIT_FAILED;
    }
    if (strcmp(cmd, "init") == 0)
        return cmd_init(&o);
    if (strcmp(cmd, "register") == 0)
        return cmd_register(&o);
    if (strcmp(cmd, "start") == 0)
        return cmd_start(&o);
    fprintf(stderr, "rhizos-node: unknown command '%s'\nTry 'rhizos-node --help'.\n", cmd);
    return EXIT_USAGE;
}

/* The wasm adapter (issue 23): a WebAssembly module (WASI preview1) run by
 * Node.js's node:wasi inside the process adapter's sandbox.
 *
 * The module file is checked against the manifest's exec.sha256 before
 * every run (and the runner checks the very bytes it compiles). The
 * runtime is `node --no-warnings -e <wasm_runner.js>` (embedded at build
 * time: no file to install), so node's ExperimentalWarning for WASI never
 * reaches the log. Its settings, secrets included, come as one JSON line
 * on its stdin, never in its environment or on the host's disk; the
 * module's stdin is in/request.json. The module sees only /rz/in, /rz/out,
 * /tmp (of the scratch) and /run/secrets; WASI preview1 cannot open
 * sockets, and the sandbox has no network either.
 *
 * Memory: the module's linear memory is capped at the step's memory_mb
 * (its maximum rewritten, the default 2048 MiB when none is asked for);
 * the sandbox's cgroup, where there is one, holds the whole runtime to
 * that plus RUNTIME_MB for node itself. RLIMIT_AS is never used: V8
 * reserves far more address space than it touches.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include <sodium.h>

#include "exec/adapter.h"
#include "exec/wasm_runner_js.h"
#include "module/module_impl.h"

#define RUNTIME_MB 256u           /* node and V8 beside the linear memory */
#define DEFAULT_LINEAR_MB 2048u
#define MAX_PAGES 65536u          /* wasm32: 4 GiB */
#define MAX_MODULE_BYTES ((size_t)256 << 20)
#define PROBE_TIMEOUT_MS 15000u
#define NODE_DIRS "/usr/local/bin:/usr/bin:/bin"
/* No ExperimentalWarning in the log; and no V8 fast API calls, through
 * which node:wasi's calls (fd_write...) can start a garbage collection
 * that frees what they use: node 20 then crashes (SIGSEGV or SIGABRT) in
 * about a third of runs of a module that grows its memory. */
#define NODE_FLAGS "--no-warnings", "--no-turbo-fast-api-calls"

/* ---- the runtime ---- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static char *node_path;           /* NULL: no runtime here */
static char runtime_name[96];
static char runtime_why[256];

/* $RHIZOS_WASM_NODE (a path; "" for none), else node or nodejs in the
 * folders the sandbox has. */
static char *find_node(void)
{
    const char *env = getenv("RHIZOS_WASM_NODE");
    if (env)
        return *env && access(env, X_OK) == 0 ? rz__strdup(env) : NULL;
    const char *names[] = { "node", "nodejs" };
    for (size_t n = 0; n < RZ_ARRAY_LEN(names); n++)
        for (const char *d = NODE_DIRS; *d;) {
            size_t len = strcspn(d, ":");
            char *p = rz__asprintf("%.*s/%s", (int)len, d, names[n]);
            if (p && access(p, X_OK) == 0)
                return p;
            free(p);
            d += len + (d[len] == ':');
        }
    return NULL;
}

/* Node answers when it instantiates an empty module under a preview1
 * WASI and says its version. */
static const char probe_js[] =
    "const {WASI}=require('node:wasi');"
    "new WASI({version:'preview1'});"
    "new WebAssembly.Instance(new WebAssembly.Module(new Uint8Array("
    "[0,97,115,109,1,0,0,0])));"
    "process.stdout.write(JSON.stringify({version:process.version}))";

static void probe_runtime(void)
{
    char *node = find_node();
    if (!node) {
        snprintf(runtime_why, sizeof runtime_why, "no Node.js (node:wasi) "
                 "found in " NODE_DIRS " or $RHIZOS_WASM_NODE");
        return;
    }
    const char *argv[] = { node, NODE_FLAGS, "-e", probe_js, NULL };
    const char *env[] = { "NODE_OPTIONS=", NULL };
    rz_proc_opts po = RZ_PROC_OPTS_INIT;
    po.argv = argv;
    po.env = env;
    po.sandbox = 0;
    po.timeout_ms = PROBE_TIMEOUT_MS;
    rz_proc *p = NULL;
    int rc = rz_proc_spawn(&p, &po);
    while (rc == RZ_OK && (rc = rz_proc_poll(p, 1000)) == 0)
        ;
    const char *out = rc > 0 && rz_proc_exit_code(p) == 0 ? rz_proc_outputs(p)
                                                          : NULL;
    cJSON *j = out ? cJSON_Parse(out) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (cJSON_IsString(v)) {
        snprintf(runtime_name, sizeof runtime_name,
                 "node:wasi (Node.js %.40s)", v->valuestring);
        node_path = node;
        node = NULL;
    } else {
        size_t len = 0;
        const char *log = p ? rz_proc_log(p, &len) : NULL;
        snprintf(runtime_why, sizeof runtime_why, "%s does not run WASI "
                 "preview1 modules%s%.*s", node, len ? ": " : "",
                 (int)(len > 120 ? 120 : len), log ? log : "");
    }
    cJSON_Delete(j);
    rz_proc_free(p);
    free(node);
}

const char *rz_wasm_runtime(void)
{
    pthread_once(&probe_once, probe_runtime);
    return node_path ? runtime_name : NULL;
}

static int wasm_probe(const char *host, char *why, size_t n)
{
    (void)host;
    if (rz_wasm_runtime())
        return 1;
    snprintf(why, n, "%s", runtime_why);
    return 0;
}

/* ---- the module file ---- */

/* RZ_OK when the file's SHA-256 is the manifest's; else why not. */
static int check_digest(const char *path, const char *want)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return rz__error(RZ_ENOENT, "wasm module %s: %s", path,
                         strerror(errno));
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char buf[65536];
    size_t total = 0;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (total += (size_t)r) > MAX_MODULE_BYTES) {
            int e = r < 0 ? errno : EFBIG;
            close(fd);
            return rz__error(RZ_EIO, "wasm module %s: %s", path, strerror(e));
        }
        crypto_hash_sha256_update(&st, buf, (size_t)r);
    }
    close(fd);
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    crypto_hash_sha256_final(&st, h);
    sodium_bin2hex(hex, sizeof hex, h, sizeof h);
    if (strcmp(hex, want) != 0)
        return rz__error(RZ_EAUTH, "wasm module %s: its sha256 is %s, not "
                         "the manifest's %s: refused", path, hex, want);
    return RZ_OK;
}

/* ---- the adapter ---- */

typedef struct wasm_state {
    rz__proc_launch l;         /* first: the launch functions take it */
    const char *argv[6];
    char *settings;            /* the runner's stdin, secrets in it: wiped */
    size_t settings_len;
    char tag[33];              /* marks the runner's own failure line */
    char *failure;             /* that line's text, from collect */
} wasm_state;

static void wasm_cleanup(void *state)
{
    wasm_state *st = state;
    if (!st)
        return;
    rz_proc_free(st->l.proc);
    if (st->settings) {
        sodium_memzero(st->settings, st->settings_len);
        free(st->settings);
    }
    free(st->failure);
    free(st);
}

/* The environment's first entries; /rz/out is preopened, so the file
 * outputs' folder is in it. */
#define ENV_OUT ",\"env\":{\"RZ_OUTPUT\":\"/rz/out/outputs.json\""
#define ENV_FILES "\"RZ_OUTPUT_DIR\":\"/rz/out/files\""

/* The runner's settings; the module's environment is the spec's RZ_*
 * context, RZ_OUTPUT and RZ_CRED_<NAME>_FILE for each secret. A buffer
 * that holds secrets is wiped wherever it goes (rz__buf reallocates, so
 * its capacity is reserved once, from the sizes, before any secret). */
static int build_settings(wasm_state *st, const rz__exec_spec *sp,
                          const char *path, uint32_t pages)
{
    size_t need = 1024 + 2 * strlen(path) + 2 * strlen(sp->scratch);
    for (size_t i = 0; sp->env && sp->env[i]; i++)
        need += 6 * strlen(sp->env[i]) + 8;
    for (size_t i = 0; i < sp->n_secrets; i++)
        need += 6 * (strlen(sp->secrets[i].name) +
                     strlen(sp->secrets[i].value ? sp->secrets[i].value : ""))
                + 64;
    rz__buf b = { .data = rz__calloc(1, need), .cap = need };
    if (!b.data)
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__buf_puts(&b, "{\"module\":");
    rz__json_quote(&b, path);
    rz__buf_printf(&b, ",\"sha256\":\"%s\",\"max_pages\":%u,\"tag\":\"%s\","
                   "\"scratch\":", sp->module->wasm_sha256, pages, st->tag);
    rz__json_quote(&b, sp->scratch);
    rz__buf_puts(&b, sp->file_outputs ? ENV_OUT "," ENV_FILES : ENV_OUT);
    for (size_t i = 0; sp->env && sp->env[i]; i++) {
        const char *eq = strchr(sp->env[i], '=');
        if (!eq || eq == sp->env[i])
            continue;
        char *name = rz__strndup(sp->env[i], (size_t)(eq - sp->env[i]));
        if (!name) {
            b.failed = true;
            break;
        }
        rz__buf_puts(&b, ",");
        rz__json_quote(&b, name);
        rz__buf_puts(&b, ":");
        rz__json_quote(&b, eq + 1);
        free(name);
    }
    char **files = rz__calloc(sp->n_secrets + 1, sizeof *files);
    for (size_t i = 0; files && i < sp->n_secrets; i++) {
        files[i] = rz__exec_secret_file(sp->secrets[i].name);
        char *var = files[i] ? rz__exec_secret_file_env(files[i]) : NULL;
        char *eq = var ? strchr(var, '=') : NULL;
        if (!eq) {
            b.failed = true;
            free(var);
            break;
        }
        *eq = '\0';
        rz__buf_puts(&b, ",");
        rz__json_quote(&b, var);
        rz__buf_puts(&b, ":");
        rz__json_quote(&b, eq + 1);
        free(var);
    }
    rz__buf_puts(&b, "},\"secrets\":{");
    for (size_t i = 0; files && !b.failed && i < sp->n_secrets; i++) {
        rz__buf_puts(&b, i ? "," : "");
        rz__json_quote(&b, files[i]);
        rz__buf_puts(&b, ":");
        const char *v = sp->secrets[i].value;
        rz__json_quote(&b, v ? v : "");
    }
    rz__buf_puts(&b, "}}\n");
    for (size_t i = 0; files && i < sp->n_secrets; i++)
        free(files[i]);
    bool moved = b.cap != need;
    st->settings_len = b.cap;
    st->settings = b.data;
    if (!files || b.failed || moved) {
        free(files);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    free(files);
    st->l.po.input = st->settings;
    st->l.po.input_len = b.len;
    return RZ_OK;
}

static int wasm_prepare(void **state, const rz__exec_spec *sp)
{
    const rz_module *m = sp->module;
    *state = NULL;
    if (!m->wasm_module || !m->wasm_sha256)
        return rz__error(RZ_EMANIFEST, "module '%s' has no exec.module and "
                         "exec.sha256", m->id);
    if (!m->dir)
        return rz__error(RZ_EMANIFEST, "module '%s' has no local folder for "
                         "its wasm file", m->id);
    if (!rz_wasm_runtime())
        return rz__error(RZ_EUNSUPPORTED, "%s", runtime_why);
    wasm_state *st = rz__calloc(1, sizeof *st);
    if (!st)
        return rz__error(RZ_ENOMEM, "out of memory");
    *state = st;
    rz__proc_launch_init(&st->l, sp);
    char *path = rz__asprintf("%s/%s", m->dir, m->wasm_module);
    if (!path)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = check_digest(path, m->wasm_sha256);
    unsigned char nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(st->tag, sizeof st->tag, nonce, sizeof nonce);
    uint32_t mb = sp->memory_mb ? sp->memory_mb : DEFAULT_LINEAR_MB;
    uint64_t pages = (uint64_t)mb * 16u;
    if (pages > MAX_PAGES)
        pages = MAX_PAGES;
    if (rc == RZ_OK)
        rc = build_settings(st, sp, path, (uint32_t)pages);
    free(path);
    if (rc != RZ_OK)
        return rc;
    const char *words[] = { node_path, NODE_FLAGS, "-e", rz__wasm_runner_js,
                            NULL };
    memcpy(st->argv, words, sizeof words);
    static const char *const env[] = { "NODE_OPTIONS=", NULL };
    st->l.po.argv = st->argv;
    st->l.po.env = env;
    st->l.po.network = 0;
    /* Only a cgroup holds the runtime as a whole; under RLIMIT_AS node
     * would not even start. */
    st->l.po.memory_mb = sp->sandbox && rz_sandbox_available() &&
                         rz__sandbox_has_cgroup()
                             ? (uint32_t)(pages / 16u) + RUNTIME_MB : 0;
    return RZ_OK;
}

/* Where the runner's own line starts in the log (the newline before the
 * tag), or len when it has none. */
static size_t tag_at(const wasm_state *st, const char *log, size_t len)
{
    size_t n = strlen(st->tag);
    for (size_t i = 0; log && i + n < len; i++)
        if ((i == 0 || log[i - 1] == '\n') && log[i + n] == ' ' &&
            memcmp(log + i, st->tag, n) == 0)
            return i > 0 && log[i - 1] == '\n' ? i - 1 : i;
    return len;
}

/* The process's outcome, less the runner's own line: its text is the
 * failure when nothing else (a limit, the timeout) says why. */
static void wasm_collect(void *state, rz__exec_outcome *o)
{
    wasm_state *st = state;
    rz__proc_launch_collect(&st->l, o);
    size_t at = tag_at(st, o->log, o->log_len);
    if (at < o->log_len) {
        const char *line = o->log + at + (o->log[at] == '\n');
        line += strlen(st->tag) + 1;
        size_t n = strcspn(line, "\n");
        free(st->failure);
        st->failure = rz__strndup(line, n);
        o->log_len = at;
        if (!o->failure && !o->timed_out)
            o->failure = st->failure;
    }
}

static const char *wasm_log_so_far(void *state, size_t *len, uint64_t *total)
{
    const wasm_state *st = state;
    const rz_proc *p = st->l.proc;
    const char *log = rz_proc_log(p, len);
    size_t at = tag_at(st, log, *len);
    *total = rz__proc_log_total(p) - (*len - at);
    *len = at;
    return log;
}

/* A service (docs/services.md): the module's stdout is the runner's fd 1
 * (wasm_runner.js), so its lines are read as they come, as a process's;
 * WASI preview1 has no sockets, so a TCP or HTTP ready check finds
 * nothing there (ready: line is the one that fits). */
const rz__adapter rz__wasm_adapter = {
    "wasm", wasm_probe, wasm_prepare, rz__proc_launch_start,
    rz__proc_launch_fd, rz__proc_launch_poll, rz__proc_launch_stop,
    wasm_collect, wasm_cleanup, NULL, wasm_log_so_far, rz__proc_launch_stream,
    rz__proc_launch_out_lines, rz__proc_launch_net_pid, "/rz",
};

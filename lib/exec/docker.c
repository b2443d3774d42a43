/* The docker adapter (adapter.h): one container per attempt, through the
 * Docker Engine API client (docker_api.h), never the docker CLI.
 *
 * The container sees the attempt's scratch folder at /rz (the request in
 * /rz/in/request.json and on stdin; outputs in /rz/out/outputs.json or on
 * stdout), RZ_* context in its environment, secrets only as files of a
 * tmpfs folder bound read-only at /run/secrets (RZ_CRED_<NAME>_FILE names
 * each: the environment shows in the engine's inspect output). No network
 * unless exec.network, a read-only root unless exec.read_only is false,
 * memory/CPU/pids limits, every capability dropped, no-new-privileges, and
 * io.rhizos.* labels so a node can reap what a crash left behind.
 *
 * Nothing blocks the caller's poll loop for long: a pull runs on its own
 * thread (its own client) and wakes the loop through a pipe; the container's
 * stdio is the attach stream's descriptor; a stop is SIGTERM, then SIGKILL
 * after a grace period, both sent without waiting. Cleanup always removes
 * the container and wipes the secrets folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "exec/adapter.h"
#include "exec/docker_api.h"
#include "module/module_impl.h"

#define PIDS_LIMIT 256
#define GRACE_MS 3000            /* SIGTERM to SIGKILL */
#define GONE_MS 10000            /* after SIGKILL, give up on the stream */
#define EXIT_WAIT_MS 5000        /* stream ended, exit not yet recorded */
#define DEFAULT_LOG ((size_t)64 << 10)
#define TMP_MOUNT "/tmp:rw,nosuid,nodev,size=64m"
#define SECRETS_PARENT "/dev/shm"

/* ---- a pull on its own thread ---- */

#define PULL_LAYERS 64           /* counted for progress; more are not */

/* Shared by the attempt and the pulling thread; whoever lets go last frees
 * it, so an attempt cleaned up mid-pull never waits for the registry. */
typedef struct pull_job {
    pthread_mutex_t mu;
    int refs;
    bool done, abort;
    int rc;
    char err[512];
    int pipe[2];                 /* the thread writes a byte when done */
    char *host, *ref;
    char *cred;                  /* registry_auth credential, or NULL */
    uint64_t deadline;
    /* Bytes per layer, summed into the status line the runner shows. */
    struct { char id[72]; int64_t cur, total; } layers[PULL_LAYERS];
    size_t n_layers;
    char status[160];
} pull_job;

static void pull_release(pull_job *p)
{
    pthread_mutex_lock(&p->mu);
    int left = --p->refs;
    pthread_mutex_unlock(&p->mu);
    if (left > 0)
        return;
    pthread_mutex_destroy(&p->mu);
    close(p->pipe[0]);
    close(p->pipe[1]);
    free(p->host);
    free(p->ref);
    rz__docker_auth_free(p->cred);
    free(p);
}

/* The layer's slot, added when new; NULL past PULL_LAYERS. */
static size_t pull_layer(pull_job *p, const char *id)
{
    for (size_t i = 0; i < p->n_layers; i++)
        if (!strcmp(p->layers[i].id, id))
            return i;
    if (p->n_layers == PULL_LAYERS)
        return PULL_LAYERS;
    snprintf(p->layers[p->n_layers].id, sizeof p->layers[0].id, "%s", id);
    p->layers[p->n_layers].cur = p->layers[p->n_layers].total = 0;
    return p->n_layers++;
}

/* Downloads are summed over layers ("12.3/40.1 MB"); before any, the
 * engine's own word ("Pulling fs layer") is the status. */
static void pull_status_update(pull_job *p, const char *status,
                               const char *id, int64_t current, int64_t total)
{
    if (id && *id && total > 0) {
        size_t k = pull_layer(p, id);
        if (k < PULL_LAYERS) {
            p->layers[k].cur = current < total ? current : total;
            p->layers[k].total = total;
        }
    } else if (id && *id && status && !strcmp(status, "Download complete")) {
        size_t k = pull_layer(p, id);
        if (k < PULL_LAYERS)
            p->layers[k].cur = p->layers[k].total;
    }
    int64_t cur = 0, all = 0;
    for (size_t i = 0; i < p->n_layers; i++) {
        cur += p->layers[i].cur;
        all += p->layers[i].total;
    }
    if (all > 0)
        snprintf(p->status, sizeof p->status, "pulling %s: %.1f/%.1f MB",
                 p->ref, (double)cur / 1e6, (double)all / 1e6);
    else
        snprintf(p->status, sizeof p->status, "pulling %s: %s", p->ref,
                 status && *status ? status : "waiting");
}

static int pull_progress(void *ud, const char *status, const char *id,
                         int64_t current, int64_t total)
{
    pull_job *p = ud;
    pthread_mutex_lock(&p->mu);
    pull_status_update(p, status, id, current, total);
    bool abort = p->abort;
    pthread_mutex_unlock(&p->mu);
    return abort;
}

static void *pull_main(void *arg)
{
    pull_job *p = arg;
    rz__docker *d = NULL;
    int rc = rz__docker_open(&d, p->host);
    if (rc == RZ_OK && p->cred)
        rc = rz__docker_set_registry_auth(d, p->cred);
    if (rc == RZ_OK)
        rc = rz__docker_pull(d, p->ref, pull_progress, p, p->deadline);
    pthread_mutex_lock(&p->mu);
    p->rc = rc;
    if (rc != RZ_OK)
        snprintf(p->err, sizeof p->err, "%s", rz_error_last()->message);
    p->done = true;
    pthread_mutex_unlock(&p->mu);
    rz__docker_close(d);
    ssize_t w = write(p->pipe[1], "x", 1);
    (void)w;
    pull_release(p);
    return NULL;
}

static int pull_begin(pull_job **out, const char *host, const char *ref,
                      const char *cred, uint64_t deadline)
{
    pull_job *p = rz__calloc(1, sizeof *p);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    p->pipe[0] = p->pipe[1] = -1;
    p->refs = 2;
    p->deadline = deadline;
    p->host = host ? rz__strdup(host) : NULL;
    p->ref = rz__strdup(ref);
    p->cred = cred ? rz__strdup(cred) : NULL;
    if (p->ref)
        snprintf(p->status, sizeof p->status, "pulling %s", ref);
    pthread_attr_t at;
    pthread_t th;
    int rc = RZ_OK;
    if (!p->ref || (host && !p->host) || (cred && !p->cred)) {
        rc = rz__error(RZ_ENOMEM, "out of memory");
    } else if (pipe2(p->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        rc = rz__error(RZ_EIO, "pipe: %s", strerror(errno));
    } else {
        pthread_mutex_init(&p->mu, NULL);
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, pull_main, p) != 0)
            rc = rz__error(RZ_EIO, "cannot start a thread for the pull");
        pthread_attr_destroy(&at);
        if (rc != RZ_OK)
            pthread_mutex_destroy(&p->mu);
    }
    if (rc != RZ_OK) {
        if (p->pipe[0] >= 0) {
            close(p->pipe[0]);
            close(p->pipe[1]);
        }
        free(p->host);
        free(p->ref);
        rz__docker_auth_free(p->cred);
        free(p);
        return rc;
    }
    *out = p;
    return RZ_OK;
}

/* 1 when the thread has finished (rc and err then hold its result). */
static int pull_finished(pull_job *p, int *rc, char *err, size_t err_len)
{
    char drain[8];
    while (read(p->pipe[0], drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&p->mu);
    bool done = p->done;
    if (done) {
        *rc = p->rc;
        snprintf(err, err_len, "%s", p->err);
    }
    pthread_mutex_unlock(&p->mu);
    return done;
}

static void pull_abandon(pull_job *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->abort = true;
    pthread_mutex_unlock(&p->mu);
    pull_release(p);
}

/* ---- the attempt ---- */

typedef enum phase { PH_READY, PH_PULL, PH_RUN, PH_DONE } phase;

typedef struct dk_state {
    rz__docker *d;
    char *host;
    const char *image;           /* the module's, borrowed */
    bool need_pull;
    rz__docker_spec cs;          /* the lists below are owned */
    char **env, **labels, **binds, **tmpfs, **gpus;
    char *user, *secrets_dir, *outputs_path, *request;
    char *registry_cred;         /* for the pull only, never a file */
    size_t request_len, max_stdout, max_log;
    uint32_t timeout_s;
    uint64_t deadline;           /* 0: none */
    phase ph;
    pull_job *pull;
    char *id;
    rz__docker_stream *st;
    bool timed_out, stopping, killed;
    uint64_t kill_at;
    int exit_code;
    bool oom, stdout_over;
    bool service;                /* stdout is lines (dk_stream) */
    uint64_t out_dropped;
    int net_pid;                 /* its State.Pid once known, for a ready check */
    char *failure, *outputs;
    char output_error[256];
    const char *log;
    size_t log_len;
    char pulled[160];            /* the pull's last line, until read once */
    rz__docker_demux logs;       /* the engine's copy, when the stream lost it */
    bool have_logs;
    /* stderr without the engine's own attach errors: as it comes (the last
     * 2 x max_log bytes of it; raw bytes read, bytes kept in all), and the
     * final log. */
    rz__buf live_err, final_err;
    bool log_end_cut;
    size_t live_raw;
    uint64_t live_total;
} dk_state;

static int dk_probe(const char *host, char *why, size_t n)
{
    rz__docker *d = NULL;
    if (rz__docker_open(&d, host) == RZ_OK) {
        rz__docker_close(d);
        return 1;
    }
    snprintf(why, n, "%s", rz_error_last()->message);
    return 0;
}

/* `gpu`: also ask /info (0.25 s on Podman) whether it runs GPU
 * containers; without, out->gpu stays 0. */
static int probe_at(rz_container_info *out, const char *host, bool gpu)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_container_probe: out is NULL");
    memset(out, 0, sizeof *out);
    char *sock = NULL;
    if (rz__docker_resolve(&sock, host) == RZ_OK)
        snprintf(out->socket, sizeof out->socket, "%s", sock);
    free(sock);
    rz__docker *d = NULL;
    if (rz__docker_open(&d, host) != RZ_OK) {
        snprintf(out->why, sizeof out->why, "%s", rz_error_last()->message);
        return RZ_OK;
    }
    out->answers = 1;
    snprintf(out->engine, sizeof out->engine, "%s", rz__docker_engine(d));
    rz__docker_info info;
    if (gpu && rz__docker_info_get(d, &info) == RZ_OK)
        out->gpu = rz__docker_gpu_mode_of(&info) != RZ__DOCKER_GPU_NONE;
    rz__docker_close(d);
    return RZ_OK;
}

int rz_container_probe(rz_container_info *out, const char *host)
{
    return probe_at(out, host, true);
}

int rz__container_answers(rz_container_info *out, const char *host)
{
    return probe_at(out, host, false);
}

int rz_container_reap(const char *host, const char *node_id,
                      rz_container_held_fn held, void *ud, size_t *removed)
{
    if (removed)
        *removed = 0;
    if (!node_id || !*node_id || !held)
        return rz__error(RZ_EINVAL, "rz_container_reap: invalid arguments");
    char *label = rz__asprintf("io.rhizos.node=%s", node_id);
    if (!label)
        return rz__error(RZ_ENOMEM, "out of memory");
    rz__docker *d = NULL;
    char **ids = NULL, **jobs = NULL;
    size_t n = 0;
    int rc = rz__docker_open(&d, host);
    if (rc == RZ_OK)
        rc = rz__docker_list_labels(d, label, "io.rhizos.job", &ids, &jobs, &n);
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        char *end;
        unsigned long long job = strtoull(jobs[i], &end, 10);
        if (jobs[i][0] && !*end && held((uint64_t)job, ud))
            continue;
        /* Killed first: a forced remove stops with the container's grace
         * period, and a shell as PID 1 ignores SIGTERM. */
        (void)!rz__docker_kill(d, ids[i], "KILL");   /* 409: already exited */
        int r = rz__docker_remove(d, ids[i]);
        if (r == RZ_OK && removed)
            (*removed)++;
    }
    rz__docker_ids_free(ids, n);
    rz__docker_ids_free(jobs, n);
    rz__docker_close(d);
    free(label);
    return rc;
}

static void free_list(char **v, bool wipe)
{
    for (size_t i = 0; v && v[i]; i++) {
        if (wipe)
            sodium_memzero(v[i], strlen(v[i]));
        free(v[i]);
    }
    free(v);
}

static void dk_cleanup(void *state)
{
    dk_state *s = state;
    if (!s)
        return;
    pull_abandon(s->pull);
    rz__docker_stream_free(s->st);
    if (s->have_logs)
        rz__docker_demux_free(&s->logs);
    /* Killed first: a forced remove of a running container waits out its
     * grace period (a shell as PID 1 ignores SIGTERM). */
    if (s->id && s->d && s->ph == PH_RUN)
        (void)!rz__docker_kill(s->d, s->id, "KILL");   /* 409: exited */
    if (s->id && s->d)
        (void)rz__docker_remove(s->d, s->id);
    rz__docker_close(s->d);
    if (s->secrets_dir)
        rz__exec_rm_tree(s->secrets_dir);   /* tmpfs: gone with the unlink */
    free(s->secrets_dir);
    free(s->id);
    free(s->host);
    free_list(s->env, true);
    free_list(s->labels, false);
    free_list(s->binds, false);
    free_list(s->tmpfs, false);
    free_list(s->gpus, false);
    rz__buf_free(&s->live_err);
    rz__buf_free(&s->final_err);
    free(s->user);
    free(s->outputs_path);
    if (s->request)
        sodium_memzero(s->request, s->request_len);
    free(s->request);
    free(s->failure);
    free(s->outputs);
    rz__docker_auth_free(s->registry_cred);
    free(s);
}

/* A secret's file name: its name lower-cased (the runner hands names over
 * from RZ_CRED_<NAME>, the node as declared), anything but [a-z0-9._-] as
 * '_' and no leading dot; the variable is RZ_CRED_<NAME>_FILE. */
char *rz__exec_secret_file(const char *name)
{
    char *f = rz__strdup(name);
    for (char *c = f; c && *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch >= 'A' && ch <= 'Z')
            *c = (char)(ch + 32);
        ch = (unsigned char)*c;
        bool ok = (ch >= 'a' && ch <= 'z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
                  (ch == '.' && c != f);
        if (!ok)
            *c = '_';
    }
    return f;
}

char *rz__exec_secret_file_env(const char *file)
{
    char *e = rz__asprintf("RZ_CRED_%s_FILE=/run/secrets/%s", file, file);
    for (char *c = e ? e + 8 : NULL; c && *c != '='; c++) {
        unsigned char ch = (unsigned char)*c;
        *c = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32)
           : ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) ? *c
           : '_';
    }
    return e;
}

static int write_secret(const char *dir, const char *file, const char *value)
{
    char *path = rz__asprintf("%s/%s", dir, file);
    if (!path)
        return rz__error(RZ_ENOMEM, "out of memory");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  0400);
    free(path);
    size_t len = strlen(value), off = 0;
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, value + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (fd < 0 || off < len || close(fd) != 0)
        return rz__error(RZ_EIO, "cannot write the secret '%s' for the "
                         "container", file);
    return RZ_OK;
}

/* 1 if declared credential name `decl` is `name` as an environment name
 * (the runner hands names over as RZ_CRED_<NAME>: "registry-login" arrives
 * as "REGISTRY_LOGIN"), the mapping lib/vault/resolve.c applies. */
static bool same_cred_name(const char *decl, const char *name)
{
    for (; *decl && *name; decl++, name++) {
        char c = *decl;
        c = c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A')
          : (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ? c : '_';
        if (c != (*name >= 'a' && *name <= 'z' ? *name - 'a' + 'A' : *name))
            return false;
    }
    return *decl == *name;
}

/* The declared name when the module declares credential `name` as type
 * registry_auth, else NULL. */
static const char *registry_auth_decl(const rz_module *m, const char *name)
{
    for (size_t i = 0; i < m->n_creds; i++)
        if (same_cred_name(m->creds[i].name, name))
            return m->creds[i].type && !strcmp(m->creds[i].type, "registry_auth")
                       ? m->creds[i].name : NULL;
    return NULL;
}

/* The registry_auth credential, kept for the pull; checked now so a bad
 * one fails before anything runs, naming the credential, never its value. */
static int take_registry_auth(dk_state *s, const rz__exec_spec *sp)
{
    for (size_t i = 0; i < sp->n_secrets; i++) {
        const char *decl = registry_auth_decl(sp->module, sp->secrets[i].name);
        if (!decl)
            continue;
        const char *v = sp->secrets[i].value ? sp->secrets[i].value : "";
        char *auth = NULL, why[512];
        if (rz__docker_registry_auth(&auth, v) != RZ_OK) {
            snprintf(why, sizeof why, "%s", rz_error_last()->message);
            return rz__error(RZ_EINVALID, "credential '%s' (registry_auth): %s",
                             decl, why);
        }
        rz__docker_auth_free(auth);
        rz__docker_auth_free(s->registry_cred);
        if (!(s->registry_cred = rz__strdup(v)))
            return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}

/* The secrets as files in a fresh 0700 folder on tmpfs (never on disk),
 * and their RZ_CRED_<NAME>_FILE variables appended to env at *n. */
static int make_secrets(dk_state *s, const rz__exec_spec *sp, size_t *n)
{
    if (sp->n_secrets == 0)
        return RZ_OK;
    s->secrets_dir = rz__strdup(SECRETS_PARENT "/rz-secrets-XXXXXX");
    if (!s->secrets_dir)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (!mkdtemp(s->secrets_dir)) {
        int rc = rz__error(RZ_EIO, "no tmpfs folder for the container's "
                           "secrets in " SECRETS_PARENT ": %s", strerror(errno));
        free(s->secrets_dir);
        s->secrets_dir = NULL;
        return rc;
    }
    for (size_t i = 0; i < sp->n_secrets; i++) {
        if (registry_auth_decl(sp->module, sp->secrets[i].name))
            continue;                 /* the engine's, not the module's */
        char *file = rz__exec_secret_file(sp->secrets[i].name);
        int rc = file ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
        if (rc == RZ_OK)
            rc = write_secret(s->secrets_dir, file,
                              sp->secrets[i].value ? sp->secrets[i].value : "");
        if (rc == RZ_OK && !(s->env[(*n)++] = rz__exec_secret_file_env(file)))
            rc = rz__error(RZ_ENOMEM, "out of memory");
        free(file);
        if (rc != RZ_OK)
            return rc;
    }
    return RZ_OK;
}

/* NULL-terminated list of up to `max` formatted entries; NULLs skipped. */
static char **list_of(size_t max)
{
    return rz__calloc(max + 1, sizeof(char *));
}

static int make_labels(dk_state *s, const rz__exec_spec *sp)
{
    if (!(s->labels = list_of(6)))
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t n = 0;
    s->labels[n++] = rz__asprintf("io.rhizos.run=%s",
                                  sp->run_id ? sp->run_id : "run");
    s->labels[n++] = rz__asprintf("io.rhizos.step=%s",
                                  sp->step_id ? sp->step_id : "job");
    s->labels[n++] = rz__asprintf("io.rhizos.attempt=%" PRIu32, sp->attempt);
    if (sp->job_id)
        s->labels[n++] = rz__asprintf("io.rhizos.job=%" PRIu64, sp->job_id);
    if (sp->node_id)
        s->labels[n++] = rz__asprintf("io.rhizos.node=%s", sp->node_id);
    for (size_t i = 0; i < n; i++)
        if (!s->labels[i])
            return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

static int make_mounts(dk_state *s, const rz__exec_spec *sp)
{
    if (!(s->binds = list_of(3)) || !(s->tmpfs = list_of(1)))
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t n = 0;
    s->binds[n++] = rz__asprintf("%s:/rz", sp->scratch);
    if (s->secrets_dir)
        s->binds[n++] = rz__asprintf("%s:/run/secrets:ro", s->secrets_dir);
    /* File inputs' copies (attempt.c), read-only inside too. */
    char *in = rz__asprintf("%s/in/files", sp->scratch);
    struct stat st;
    if (in && lstat(in, &st) == 0 && S_ISDIR(st.st_mode))
        s->binds[n++] = rz__asprintf("%s:/rz/in/files:ro", in);
    free(in);
    s->tmpfs[0] = rz__strdup(TMP_MOUNT);
    for (size_t i = 0; i < n; i++)
        if (!s->binds[i])
            return rz__error(RZ_ENOMEM, "out of memory");
    if (!s->tmpfs[0])
        return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

/* Whether the image must be pulled first, by the module's policy. */
static int check_image(dk_state *s, const rz_module *m)
{
    const char *policy = m->pull ? m->pull : "if-not-present";
    if (strcmp(policy, "always") == 0) {
        s->need_pull = true;
        return RZ_OK;
    }
    int rc = rz__docker_image_inspect(s->d, s->image, NULL);
    if (rc == RZ_ENOENT && strcmp(policy, "never") == 0)
        return rz__error(RZ_ENOENT, "image %s is not present and pull is "
                         "'never'", s->image);
    if (rc == RZ_ENOENT) {
        s->need_pull = true;
        return RZ_OK;
    }
    return rc;
}

/* Exactly the GPUs reserved for the attempt, as the engine takes them;
 * a step that needs GPUs fails on an engine that runs no GPU containers
 * rather than run without them. */
static int give_gpus(dk_state *s, const rz__exec_spec *sp)
{
    size_t n = 0;
    while (sp->gpu_ids && sp->gpu_ids[n])
        n++;
    if (n == 0)
        return RZ_OK;
    rz__docker_info info;
    int rc = rz__docker_info_get(s->d, &info);
    if (rc != RZ_OK)
        return rc;
    rz__docker_gpu_mode mode = rz__docker_gpu_mode_of(&info);
    if (mode == RZ__DOCKER_GPU_NONE)
        return rz__error(RZ_EUNSUPPORTED, "the container engine at %s runs no "
                         "GPU containers (no NVIDIA runtime or CDI devices), "
                         "and this step needs %zu GPU%s",
                         rz__docker_socket(s->d), n, n == 1 ? "" : "s");
    if (!(s->gpus = list_of(n)))
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(s->gpus[i] = rz__strdup(sp->gpu_ids[i])))
            return rz__error(RZ_ENOMEM, "out of memory");
    s->cs.gpu_ids = (const char *const *)s->gpus;
    s->cs.gpu_cdi = mode == RZ__DOCKER_GPU_CDI;
    return RZ_OK;
}

static int describe(dk_state *s, const rz__exec_spec *sp)
{
    const rz_module *m = sp->module;
    rz__docker_spec *c = &s->cs;
    c->image = s->image;
    c->cmd = (const char *const *)m->command;   /* NULL: the image's CMD */
    c->env = (const char *const *)s->env;
    c->labels = (const char *const *)s->labels;
    c->binds = (const char *const *)s->binds;
    c->tmpfs = (const char *const *)s->tmpfs;
    c->workdir = "/rz";
    c->network = sp->network != 0;
    c->writable_rootfs = !m->read_only;
    c->open_stdin = true;
    c->memory = (int64_t)sp->memory_mb << 20;
    c->nano_cpus = (int64_t)sp->cpus * 1000000000;
    c->pids_limit = PIDS_LIMIT;
    int rc = give_gpus(s, sp);
    if (rc != RZ_OK)
        return rc;
    /* Rootful engines map the container's root to ours: a non-root caller
     * runs it as itself, so the scratch folder (0700, ours) is usable. */
    if (geteuid() != 0) {
        s->user = rz__asprintf("%u:%u", (unsigned)geteuid(),
                               (unsigned)getegid());
        if (!s->user)
            return rz__error(RZ_ENOMEM, "out of memory");
        c->user = s->user;
    }
    return RZ_OK;
}

static int dk_prepare(void **state, const rz__exec_spec *sp)
{
    *state = NULL;
    const rz_module *m = sp->module;
    if (!m->image || !*m->image)
        return rz__error(RZ_EMANIFEST, "module '%s' has no exec.image", m->id);
    dk_state *s = rz__calloc(1, sizeof *s);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *state = s;
    s->exit_code = -1;
    s->image = m->image;
    s->timeout_s = sp->timeout_s;
    s->max_stdout = sp->max_stdout;
    s->max_log = sp->max_log ? sp->max_log : DEFAULT_LOG;
    s->request_len = sp->request_len;
    s->request = rz__strndup(sp->request ? sp->request : "", sp->request_len);
    s->outputs_path = rz__strdup(sp->outputs_path);
    s->host = sp->container_host ? rz__strdup(sp->container_host) : NULL;
    if (!s->request || !s->outputs_path ||
        (sp->container_host && !s->host))
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t n_env = 0;
    while (sp->env && sp->env[n_env])
        n_env++;
    if (!(s->env = list_of(n_env + sp->n_secrets + 1)))
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_env; i++)
        if (!(s->env[i] = rz__strdup(sp->env[i])))
            return rz__error(RZ_ENOMEM, "out of memory");
    /* File outputs: written through the scratch's bind, taken after. */
    if (sp->file_outputs && !(s->env[n_env++] = rz__strdup("RZ_OUTPUT_DIR=/rz/out/files")))
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = rz__docker_open(&s->d, s->host);
    if (rc == RZ_OK)
        rc = check_image(s, m);
    if (rc == RZ_OK)
        rc = take_registry_auth(s, sp);
    if (rc == RZ_OK)
        rc = make_secrets(s, sp, &n_env);
    if (rc == RZ_OK)
        rc = make_labels(s, sp);
    if (rc == RZ_OK)
        rc = make_mounts(s, sp);
    if (rc == RZ_OK)
        rc = describe(s, sp);
    return rc;
}

/* Create, attach (before start, so no output is missed), start. */
static int launch_container(dk_state *s)
{
    int rc = rz__docker_create(s->d, &s->cs, &s->id);
    if (rc == RZ_OK)
        rc = rz__docker_attach(&s->st, s->d, s->id, s->request,
                               s->request_len, s->max_stdout);
    if (rc == RZ_OK && s->service)
        rz__docker_stream_lines(s->st);
    if (rc == RZ_OK)
        rc = rz__docker_start(s->d, s->id);
    if (rc == RZ_OK)
        s->ph = PH_RUN;
    return rc;
}

static int dk_start(void *state)
{
    dk_state *s = state;
    if (s->timeout_s)
        s->deadline = rz__now_ms() + (uint64_t)s->timeout_s * 1000u;
    if (!s->need_pull)
        return launch_container(s);
    int rc = pull_begin(&s->pull, s->host, s->image, s->registry_cred,
                        s->deadline);
    if (rc == RZ_OK)
        s->ph = PH_PULL;
    return rc;
}

static int dk_fd(const void *state)
{
    const dk_state *s = state;
    if (s->ph == PH_PULL)
        return s->pull->pipe[0];
    if (s->ph == PH_RUN)
        return rz__docker_stream_fd(s->st);
    return -1;
}

static void fail_with(dk_state *s, char *reason)
{
    free(s->failure);
    s->failure = reason ? reason : rz__strdup("out of memory");
    s->ph = PH_DONE;
}

/* SIGTERM now, SIGKILL after the grace period (from poll). */
static void begin_stop(dk_state *s)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->kill_at = rz__now_ms() + GRACE_MS;
    (void)rz__docker_kill(s->d, s->id, "TERM");
}

/* The stream ended: the container exited. Its state, stdout, stderr. */
static bool exited(const rz__docker_state *st)
{
    return !st->running && (strcmp(st->status, "exited") == 0 ||
                            strcmp(st->status, "stopped") == 0 ||
                            strcmp(st->status, "dead") == 0);
}

static void finish_container(dk_state *s)
{
    rz__docker_state st;
    int rc = rz__docker_inspect(s->d, s->id, &st);
    /* The stream can end a moment before the engine records the exit. */
    int code;
    if (rc == RZ_OK && !exited(&st) &&
        rz__docker_wait(s->d, s->id, EXIT_WAIT_MS, &code) == RZ_OK)
        rc = rz__docker_inspect(s->d, s->id, &st);
    if (rc == RZ_OK && exited(&st)) {
        s->exit_code = st.exit_code;
        s->oom = st.oom_killed && !s->stopping;
    } else if (!s->stopping) {
        fail_with(s, rc != RZ_OK
                     ? rz__asprintf("the container engine lost the container: "
                                    "%s", rz_error_last()->message)
                     : rz__asprintf("the container's output ended, but the "
                                    "engine says it is '%s'", st.status));
    }
    size_t out_len, dropped, err_len;
    const char *out = rz__docker_stream_stdout(s->st, &out_len, &dropped);
    size_t err_dropped;
    const char *err = rz__docker_stream_stderr(s->st, &err_len, &err_dropped);
    /* Podman 4.3's attach now and then ends before the last of a
     * container's output (all of it when it exits at once); its log file
     * has it all: the longer stdout wins. */
    bool lost = !dropped && !s->stopping && rc == RZ_OK && !s->service;
    if (lost) {
        s->have_logs = true;   /* initialised by the call, freed at cleanup */
        lost = rz__docker_logs(s->d, s->id, s->max_stdout + 1, &s->logs) == RZ_OK &&
               s->logs.out.len > out_len;
    }
    if (lost) {
        out = s->logs.out.data;
        out_len = s->logs.out.len;
        dropped = s->logs.out_dropped;
        if (s->logs.err.len > err_len) {
            err = s->logs.err.data;
            err_len = s->logs.err.len;
            err_dropped = s->logs.err_dropped;
        }
    }
    if (s->service) {
        /* Its stdout was lines, taken as they came (the attempt keeps
         * the last of them); its outputs are the file's alone. */
        out = "";
        out_len = 0;
        dropped = 0;
    }
    s->stdout_over = dropped > 0;
    rz__exec_outputs(s->outputs_path, s->max_stdout, out, out_len,
                     s->stdout_over, &s->outputs, s->output_error,
                     sizeof s->output_error);
    (void)rz__docker_clean_stderr(&s->final_err, err, err_len, true);
    err = s->final_err.data;
    err_len = err ? s->final_err.len : 0;
    if (err_len > s->max_log) {
        err += err_len - s->max_log;
        err_len = s->max_log;
    }
    s->log = err;
    s->log_len = err_len;
    s->log_end_cut = err_dropped > 0;   /* stderr keeps its head */
    s->ph = PH_DONE;
}

static int poll_pull(dk_state *s, int timeout_ms)
{
    if (s->deadline && rz__now_ms() >= s->deadline) {
        s->timed_out = true;
        s->ph = PH_DONE;
        return 1;
    }
    struct pollfd pf = {s->pull->pipe[0], POLLIN, 0};
    (void)poll(&pf, 1, timeout_ms);
    int rc;
    char err[512];
    if (!pull_finished(s->pull, &rc, err, sizeof err))
        return 0;
    /* A pull faster than the progress cadence is still seen once. */
    pthread_mutex_lock(&s->pull->mu);
    if (rc == RZ_OK)
        snprintf(s->pulled, sizeof s->pulled, "%s", s->pull->status);
    pthread_mutex_unlock(&s->pull->mu);
    pull_abandon(s->pull);
    s->pull = NULL;
    if (rc == RZ_ETIMEOUT) {
        s->timed_out = true;
        s->ph = PH_DONE;
        return 1;
    }
    if (rc != RZ_OK) {
        fail_with(s, rz__asprintf("cannot pull image %s: %s", s->image, err));
        return 1;
    }
    if (launch_container(s) != RZ_OK) {
        fail_with(s, rz__asprintf("cannot start: %s",
                                  rz_error_last()->message));
        return 1;
    }
    return 0;
}

static int poll_run(dk_state *s, int timeout_ms)
{
    uint64_t now = rz__now_ms();
    uint64_t due = s->stopping ? s->kill_at : s->deadline;
    if (due && due > now && due - now < (uint64_t)timeout_ms)
        timeout_ms = (int)(due - now);
    else if (due && due <= now)
        timeout_ms = 0;
    struct pollfd pf = {rz__docker_stream_fd(s->st),
                        rz__docker_stream_events(s->st), 0};
    (void)poll(&pf, 1, timeout_ms);
    int r = rz__docker_stream_pump(s->st);
    if (r != 0) {
        finish_container(s);
        return 1;
    }
    now = rz__now_ms();
    if (!s->stopping && s->deadline && now >= s->deadline) {
        s->timed_out = true;
        begin_stop(s);
    } else if (s->stopping && !s->killed && now >= s->kill_at) {
        s->killed = true;
        (void)rz__docker_kill(s->d, s->id, "KILL");
    } else if (s->killed && now >= s->kill_at + GONE_MS) {
        finish_container(s);   /* the engine never ended the stream */
        return 1;
    }
    return 0;
}

static int dk_poll(void *state, int timeout_ms)
{
    dk_state *s = state;
    switch (s->ph) {
    case PH_PULL:
        return poll_pull(s, timeout_ms);
    case PH_RUN:
        return poll_run(s, timeout_ms);
    default:
        return 1;
    }
}

static void dk_stop(void *state)
{
    dk_state *s = state;
    if (!s)
        return;
    if (s->ph == PH_PULL) {
        pull_abandon(s->pull);
        s->pull = NULL;
        s->ph = PH_DONE;
    } else if (s->ph == PH_RUN) {
        begin_stop(s);
    }
}

static void dk_collect(void *state, rz__exec_outcome *o)
{
    dk_state *s = state;
    o->exit_code = s->exit_code;
    o->timed_out = s->timed_out;
    o->oom = s->oom;
    o->stdout_over = s->stdout_over;
    o->outputs = s->outputs;
    o->output_error = s->output_error[0] ? s->output_error : NULL;
    o->log = s->log;
    o->log_len = s->log_len;
    o->log_end_cut = s->log_end_cut;
    o->failure = s->failure;
}

static void dk_status(void *state, char *buf, size_t len)
{
    dk_state *s = state;
    if (s->pulled[0]) {
        snprintf(buf, len, "%s", s->pulled);
        s->pulled[0] = '\0';
        return;
    }
    if (s->ph != PH_PULL || !s->pull)
        return;
    pthread_mutex_lock(&s->pull->mu);
    snprintf(buf, len, "%s", s->pull->status);
    pthread_mutex_unlock(&s->pull->mu);
}

RZ_HIDDEN extern const rz__adapter rz__docker_adapter;
/* The attach stream keeps stderr from its start (up to its cap). */
/* The attach stream's stderr, whole lines, without the engine's noise. */
static const char *dk_log_so_far(void *state, size_t *len, uint64_t *total)
{
    dk_state *s = state;
    size_t raw = 0;
    const char *err = s->st ? rz__docker_stream_stderr(s->st, &raw, NULL)
                            : NULL;
    if (err && raw > s->live_raw) {
        size_t before = s->live_err.len;
        s->live_raw += rz__docker_clean_stderr(&s->live_err, err + s->live_raw,
                                    raw - s->live_raw, false);
        s->live_total += s->live_err.len - before;
        size_t keep = s->max_log;
        if (s->live_err.len > 2 * keep) {   /* only the tail is looked at */
            memmove(s->live_err.data,
                    s->live_err.data + s->live_err.len - keep, keep);
            s->live_err.len = keep;
        }
    }
    *len = s->live_err.len;
    *total = s->live_total;
    return s->live_err.data;
}

/* A service's stdout lines (adapter.h `stream`): the attach stream hands
 * them over as they come; the lines still held when it exits are taken
 * before the state goes (finish_container keeps them for out_lines). */
static void dk_stream(void *state)
{
    dk_state *s = state;
    s->service = true;
    if (s->st)
        rz__docker_stream_lines(s->st);
}

static char *dk_out_lines(void *state, uint64_t *dropped)
{
    dk_state *s = state;
    size_t d = 0;
    char *lines = s->st ? rz__docker_stream_out_take(s->st, &d) : NULL;
    if (s->st)
        s->out_dropped = d;
    *dropped = s->out_dropped;
    return lines;
}

/* The container's own network namespace, where its ready check is made:
 * its first process's (State.Pid), as the engine reports it. */
static int dk_net_pid(void *state)
{
    dk_state *s = state;
    rz__docker_state st;
    if (s->net_pid > 0 || s->ph != PH_RUN || !s->id ||
        rz__docker_inspect(s->d, s->id, &st) != RZ_OK)
        return s->net_pid > 0 ? s->net_pid : -1;
    if (st.running && st.pid > 0)
        s->net_pid = st.pid;
    return s->net_pid > 0 ? s->net_pid : -1;
}

const rz__adapter rz__docker_adapter = {
    "docker", dk_probe, dk_prepare, dk_start, dk_fd, dk_poll,
    dk_stop, dk_collect, dk_cleanup, dk_status, dk_log_so_far, dk_stream,
    dk_out_lines, dk_net_pid, "/rz",
};

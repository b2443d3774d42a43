/* Docker Engine API client over the engine's unix socket (see docker_api.h). */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>

#include "exec/docker_api.h"

#define DEFAULT_CAP ((size_t)16 << 20)
#define MAX_BODY ((size_t)64 << 20)
#define STOPPED_RING 16

struct rz__docker {
    CURL *curl;
    char *socket;
    char version[16];     /* negotiated API version */
    char engine[96];
    long timeout_ms;
    char *stopped[STOPPED_RING];  /* containers this client stopped */
    size_t stopped_next;
    char *auth;                   /* X-Registry-Auth for pulls, or NULL */
    /* What the last /_ping's headers said ("" when nothing). */
    char ping_api[16], ping_server[96];
};

/* ---- endpoint and errors ---- */

static int unreachable(const char *sock, const char *why)
{
    return rz__error(RZ_ECONNECT,
                     "no container engine answers at %s (%s); start Docker or "
                     "'podman system service', or point DOCKER_HOST (unix://PATH) "
                     "or --container-host at its socket", sock, why);
}

int rz__docker_resolve(char **out, const char *override)
{
    *out = NULL;
    const char *h = override && *override ? override : getenv("DOCKER_HOST");
    const char *from = override && *override ? "container host" : "DOCKER_HOST";
    if (h && *h) {
        if (strncmp(h, "unix://", 7) == 0)
            h += 7;
        else if (strstr(h, "://"))
            return rz__error(RZ_EUNSUPPORTED,
                             "%s '%s': only unix:// sockets are supported", from, h);
        if (!*h)
            return rz__error(RZ_EINVALID, "%s names no socket path", from);
        *out = rz__strdup(h);
        return *out ? RZ_OK : RZ_ENOMEM;
    }
    static const char *const defaults[] = {"/var/run/docker.sock",
                                           "/run/podman/podman.sock"};
    const char *pick = defaults[0];
    for (size_t i = 0; i < RZ_ARRAY_LEN(defaults); i++)
        if (access(defaults[i], F_OK) == 0) {
            pick = defaults[i];
            break;
        }
    *out = rz__strdup(pick);
    return *out ? RZ_OK : RZ_ENOMEM;
}

/* ---- HTTP ---- */

typedef struct body_sink {
    rz__buf buf;
    size_t max;
    bool over;
    /* Optional line consumer (the pull stream): gets each complete line. */
    int (*line)(void *ud, const char *s, size_t n);
    void *ud;
    int line_rc;
    rz__docker_demux *demux;   /* optional frame consumer (logs) */
} body_sink;

static size_t on_body(char *p, size_t sz, size_t nm, void *ud)
{
    body_sink *s = ud;
    size_t n = sz * nm;
    if (s->demux) {
        if (rz__docker_demux_feed(s->demux, p, n) != RZ_OK) {
            s->line_rc = RZ_EPROTOCOL;
            return 0;
        }
        return n;
    }
    if (s->buf.len + n > s->max) {
        s->over = true;
        return 0;
    }
    rz__buf_append(&s->buf, p, n);
    if (s->buf.failed)
        return 0;
    if (s->line) {
        char *nl;
        while ((nl = memchr(s->buf.data, '\n', s->buf.len))) {
            size_t ln = (size_t)(nl - s->buf.data);
            s->line_rc = s->line(s->ud, s->buf.data, ln);
            memmove(s->buf.data, nl + 1, s->buf.len - ln - 1);
            s->buf.len -= ln + 1;
            s->buf.data[s->buf.len] = '\0';
            if (s->line_rc)
                return 0;
        }
    }
    return n;
}

typedef struct progress_guard {
    uint64_t deadline_ms;
    bool expired;
} progress_guard;

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c,
                       curl_off_t e)
{
    (void)a; (void)b; (void)c; (void)e;
    progress_guard *g = ud;
    if (g->deadline_ms && rz__now_ms() > g->deadline_ms) {
        g->expired = true;
        return 1;
    }
    return 0;
}

/* Percent-encode for a query value or path segment. */
static char *esc(rz__docker *d, const char *s)
{
    char *e = curl_easy_escape(d->curl, s, 0);
    char *r = rz__strdup(e);
    curl_free(e);
    return r;
}

/* The headers of a /_ping: API-Version and Server (case aside). */
static size_t on_ping_header(char *h, size_t size, size_t n, void *ud)
{
    rz__docker *d = ud;
    size_t len = size * n;
    static const struct { const char *name; size_t off, cap; } want[] = {
        {"api-version:", offsetof(rz__docker, ping_api), 16},
        {"server:", offsetof(rz__docker, ping_server), 96},
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(want); i++) {
        size_t k = strlen(want[i].name);
        if (len <= k || strncasecmp(h, want[i].name, k) != 0)
            continue;
        const char *v = h + k;
        size_t vl = len - k;
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' ||
                      v[vl - 1] == ' '))
            vl--;
        snprintf((char *)d + want[i].off, want[i].cap, "%.*s", (int)vl, v);
    }
    return len;
}

/* One request. `path` is below the version prefix unless it starts with
 * '!' (then it is sent as is, for /version). The answer's status in *status;
 * the body in sink. Errors only for transport failures. */
static int http(rz__docker *d, const char *method, const char *path,
                const char *json, long *status, body_sink *sink,
                uint64_t deadline_ms)
{
    char *url = path[0] == '!' ? rz__asprintf("http://d%s", path + 1)
                               : rz__asprintf("http://d/v%s%s", d->version, path);
    if (!url)
        return RZ_ENOMEM;
    CURL *c = d->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, d->socket);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    if (strcmp(path, "!/_ping") == 0) {
        d->ping_api[0] = d->ping_server[0] = '\0';
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_ping_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, d);
    }
    progress_guard g = {deadline_ms, false};
    if (deadline_ms) {
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, &g);
    } else if (d->timeout_ms > 0) {
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, d->timeout_ms);
    }
    struct curl_slist *hdrs = NULL;
    if (json) {
        hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    /* Only a pull carries the registry's credential. */
    char *auth = d->auth && !strncmp(path, "/images/create", 14)
                     ? rz__asprintf("X-Registry-Auth: %s", d->auth) : NULL;
    if (auth)
        hdrs = curl_slist_append(hdrs, auth);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    CURLcode rc = curl_easy_perform(c);
    for (struct curl_slist *h = auth ? hdrs : NULL; h; h = h->next)
        sodium_memzero(h->data, strlen(h->data));   /* the credential's copy */
    curl_slist_free_all(hdrs);
    if (auth) {
        sodium_memzero(auth, strlen(auth));
        free(auth);
    }
    free(url);
    *status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    if (rc == CURLE_OK)
        return RZ_OK;
    if (sink->line_rc)
        return sink->line_rc < 0 ? sink->line_rc : RZ_ECANCELED;
    if (g.expired || rc == CURLE_OPERATION_TIMEDOUT)
        return rz__error(RZ_ETIMEOUT, "container engine at %s: %s %s timed out",
                         d->socket, method, path[0] == '!' ? path + 1 : path);
    if (sink->over)
        return rz__error(RZ_ETOOBIG, "container engine answer over %zu bytes",
                         sink->max);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST)
        return unreachable(d->socket, curl_easy_strerror(rc));
    return rz__error(RZ_EPROTOCOL, "container engine at %s: %s", d->socket,
                     curl_easy_strerror(rc));
}

/* The engine's own words from an error body ({"message": ...}). */
static const char *engine_message(const char *body, char *buf, size_t cap)
{
    cJSON *j = body ? cJSON_Parse(body) : NULL;
    const char *m = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    snprintf(buf, cap, "%s", m ? m : (body && *body ? body : "no message"));
    cJSON_Delete(j);
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

/* A request whose JSON answer (if any) is parsed into *out. */
static int call(rz__docker *d, const char *method, const char *path,
                const char *json, long *status, cJSON **out, char *err,
                size_t err_cap)
{
    if (out)
        *out = NULL;
    body_sink s = {.max = MAX_BODY};
    int rc = http(d, method, path, json, status, &s, 0);
    if (rc == RZ_OK && *status >= 400 && err)
        engine_message(s.buf.data, err, err_cap);
    if (rc == RZ_OK && *status < 300 && out && s.buf.len) {
        *out = cJSON_Parse(s.buf.data);
        if (!*out)
            rc = rz__error(RZ_EPROTOCOL, "container engine at %s: %s %s answered "
                           "something that is not JSON", d->socket, method, path);
    }
    rz__buf_free(&s.buf);
    return rc;
}

static int refused(rz__docker *d, const char *what, long status, const char *msg)
{
    return rz__error(RZ_EEXEC, "container engine at %s refused to %s (HTTP %ld): %s",
                     d->socket, what, status, msg);
}

/* ---- client ---- */

/* "1.41" < "1.9"? compare as major.minor numbers. */
static int version_cmp(const char *a, const char *b)
{
    unsigned am = 0, an = 0, bm = 0, bn = 0;
    sscanf(a, "%u.%u", &am, &an);
    sscanf(b, "%u.%u", &bm, &bn);
    if (am != bm)
        return am < bm ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

/* Podman answers /version in about 0.4 s (its /_ping in under 1 ms), and
 * each phase of an attempt opens a client of its own: the negotiated
 * version is kept per socket file for the life of the process, and an open
 * that finds it only pings. A new engine on the same path is a new socket
 * file (another inode), which negotiates again. */
static struct {
    pthread_mutex_t mu;
    char socket[256];
    dev_t dev;
    ino_t ino;
    char version[16], engine[96];
    bool have_info;        /* /info (0.25 s on Podman), kept the same way */
    rz__docker_info info;
} negotiated = { .mu = PTHREAD_MUTEX_INITIALIZER };

static bool negotiated_get(rz__docker *d, const struct stat *st)
{
    pthread_mutex_lock(&negotiated.mu);
    bool hit = negotiated.version[0] && strcmp(negotiated.socket, d->socket) == 0 &&
               negotiated.dev == st->st_dev && negotiated.ino == st->st_ino;
    if (hit) {
        memcpy(d->version, negotiated.version, sizeof d->version);
        memcpy(d->engine, negotiated.engine, sizeof d->engine);
    }
    pthread_mutex_unlock(&negotiated.mu);
    return hit;
}

static void negotiated_put(const rz__docker *d, const struct stat *st)
{
    if (strlen(d->socket) >= sizeof negotiated.socket)
        return;
    pthread_mutex_lock(&negotiated.mu);
    snprintf(negotiated.socket, sizeof negotiated.socket, "%s", d->socket);
    negotiated.have_info = false;
    negotiated.dev = st->st_dev;
    negotiated.ino = st->st_ino;
    memcpy(negotiated.version, d->version, sizeof d->version);
    memcpy(negotiated.engine, d->engine, sizeof d->engine);
    pthread_mutex_unlock(&negotiated.mu);
}

/* 1: the engine whose version is cached answers; 0: negotiate again;
 * <0: it does not answer (the transport's error). */
static int ping(rz__docker *d)
{
    long status = 0;
    int rc = call(d, "GET", "!/_ping", NULL, &status, NULL, NULL, 0);
    if (rc != RZ_OK)
        return rc;
    return status == 200;
}

static int negotiate(rz__docker *d);
static int version_cmp(const char *a, const char *b);

/* The API version and engine from a /_ping's headers (Docker and Podman
 * send API-Version), which spares a /version (0.4 s on Podman): false when
 * it carried none. The engine's minimum version is not told there; an
 * engine that is past 1.41 refuses our calls in its own words. */
static bool from_ping(rz__docker *d)
{
    unsigned maj, min;
    if (sscanf(d->ping_api, "%u.%u", &maj, &min) != 2)
        return false;
    snprintf(d->version, sizeof d->version, "%s",
             version_cmp(d->ping_api, RZ_DOCKER_API_MAX) < 0
                 ? d->ping_api : RZ_DOCKER_API_MAX);
    /* "Libpod/4.3.1 (linux)", "Docker/24.0.7 (linux)" */
    const char *sv = d->ping_server;
    size_t n = strcspn(sv, "/");
    const char *ver = sv[n] ? sv + n + 1 : "?";
    int vl = (int)strcspn(ver, " ");
    if (n == 6 && strncmp(sv, "Libpod", 6) == 0)
        snprintf(d->engine, sizeof d->engine, "Podman Engine %.*s", vl, ver);
    else if (n == 6 && strncmp(sv, "Docker", 6) == 0)
        snprintf(d->engine, sizeof d->engine, "Docker Engine %.*s", vl, ver);
    else
        snprintf(d->engine, sizeof d->engine, "%s", *sv ? sv : "Docker Engine ?");
    return true;
}

int rz__docker_open(rz__docker **out, const char *override)
{
    *out = NULL;
    rz__docker *d = rz__calloc(1, sizeof *d);
    if (!d)
        return RZ_ENOMEM;
    int rc = rz__docker_resolve(&d->socket, override);
    if (rc != RZ_OK) {
        free(d);
        return rc;
    }
    d->timeout_ms = 30000;
    d->curl = curl_easy_init();
    if (!d->curl) {
        rz__docker_close(d);
        return RZ_ENOMEM;
    }
    if (access(d->socket, F_OK) != 0) {
        rc = unreachable(d->socket, "no such socket");
        rz__docker_close(d);
        return rc;
    }
    struct stat st;
    bool known = stat(d->socket, &st) == 0 && negotiated_get(d, &st);
    rc = ping(d);
    if (rc == 1 && !known && !from_ping(d))
        rc = 0;
    if (rc == 0)
        rc = negotiate(d);
    else if (rc == 1)
        rc = RZ_OK;
    if (rc == RZ_OK && !known && stat(d->socket, &st) == 0)
        negotiated_put(d, &st);
    if (rc != RZ_OK) {
        rz__docker_close(d);
        return rc;
    }
    *out = d;
    return RZ_OK;
}

/* GET /version: the highest API version both sides speak, and the
 * engine's name for messages. */
static int negotiate(rz__docker *d)
{
    long status;
    cJSON *v = NULL;
    int rc = call(d, "GET", "!/version", NULL, &status, &v, NULL, 0);
    if (rc == RZ_OK && (status != 200 || !v))
        rc = rz__error(RZ_EPROTOCOL, "%s answered GET /version with HTTP %ld: "
                       "not a Docker Engine API", d->socket, status);
    if (rc != RZ_OK) {
        cJSON_Delete(v);
        return rc;
    }
    const char *api = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "ApiVersion"));
    const char *min = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "MinAPIVersion"));
    if (!api) {
        cJSON_Delete(v);
        return rz__error(RZ_EPROTOCOL, "%s: /version carries no ApiVersion", d->socket);
    }
    const char *use = version_cmp(api, RZ_DOCKER_API_MAX) < 0 ? api : RZ_DOCKER_API_MAX;
    if (min && version_cmp(min, RZ_DOCKER_API_MAX) > 0) {
        rc = rz__error(RZ_EUNSUPPORTED, "the engine at %s needs API %s or newer; "
                       "RhizOS speaks up to %s", d->socket, min, RZ_DOCKER_API_MAX);
        cJSON_Delete(v);
        return rc;
    }
    snprintf(d->version, sizeof d->version, "%s", use);
    /* The product's name: the first component, else the platform. */
    const cJSON *comp = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v, "Components"), 0);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(comp, "Name"));
    const char *ver = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "Version"));
    snprintf(d->engine, sizeof d->engine, "%s %s", name ? name : "Docker Engine",
             ver ? ver : "?");
    cJSON_Delete(v);
    return RZ_OK;
}

void rz__docker_close(rz__docker *d)
{
    if (!d)
        return;
    if (d->curl)
        curl_easy_cleanup(d->curl);
    for (size_t i = 0; i < STOPPED_RING; i++)
        free(d->stopped[i]);
    rz__docker_auth_free(d->auth);
    free(d->socket);
    free(d);
}

void rz__docker_set_timeout(rz__docker *d, long timeout_ms) { d->timeout_ms = timeout_ms; }
const char *rz__docker_socket(const rz__docker *d) { return d->socket; }
const char *rz__docker_api_version(const rz__docker *d) { return d->version; }
const char *rz__docker_engine(const rz__docker *d) { return d->engine; }

static bool cdi_nvidia_spec(const char *dir)
{
    DIR *dh = opendir(dir);
    if (!dh)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(dh))) {
        size_t n = strlen(e->d_name);
        found = strstr(e->d_name, "nvidia") &&
                ((n > 5 && strcmp(e->d_name + n - 5, ".yaml") == 0) ||
                 (n > 5 && strcmp(e->d_name + n - 5, ".json") == 0));
    }
    closedir(dh);
    return found;
}

/* The cached /info of this client's engine, if any (see negotiated). */
static bool info_cached(const rz__docker *d, rz__docker_info *out, bool store)
{
    struct stat st;
    if (stat(d->socket, &st) != 0)
        return false;
    pthread_mutex_lock(&negotiated.mu);
    bool same = strcmp(negotiated.socket, d->socket) == 0 &&
                negotiated.dev == st.st_dev && negotiated.ino == st.st_ino;
    bool hit = same && negotiated.have_info && !store;
    if (hit)
        *out = negotiated.info;
    if (same && store) {
        negotiated.info = *out;
        negotiated.have_info = true;
    }
    pthread_mutex_unlock(&negotiated.mu);
    return hit;
}

static int info_fetch(rz__docker *d, rz__docker_info *out);

int rz__docker_info_get(rz__docker *d, rz__docker_info *out)
{
    if (info_cached(d, out, false))
        return RZ_OK;
    int rc = info_fetch(d, out);
    if (rc == RZ_OK)
        (void)info_cached(d, out, true);
    return rc;
}

/* What /info tells about GPU containers and the machine. */
static void info_parse(const cJSON *j, rz__docker_info *out)
{
    memset(out, 0, sizeof *out);
    const cJSON *rt, *runtimes = cJSON_GetObjectItemCaseSensitive(j, "Runtimes");
    cJSON_ArrayForEach(rt, runtimes)
        if (rt->string && strncmp(rt->string, "nvidia", 6) == 0)
            out->nvidia_runtime = true;
    const cJSON *dirs = cJSON_GetObjectItemCaseSensitive(j, "CDISpecDirs");
    const cJSON *dev, *devs = cJSON_GetObjectItemCaseSensitive(j, "DiscoveredDevices");
    cJSON_ArrayForEach(dev, devs) {
        const char *src = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dev, "Source"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(dev, "ID"));
        if (src && strcmp(src, "cdi") == 0 && id &&
            strncmp(id, "nvidia.com/gpu", 14) == 0)
            out->cdi = true;
    }
    /* Engines before DiscoveredDevices say only where specs would be (and
     * name those folders even when they are empty): look there, the engine
     * being on this machine. */
    const cJSON *dir;
    cJSON_ArrayForEach(dir, dirs)
        if (!devs && cJSON_IsString(dir) && cdi_nvidia_spec(dir->valuestring))
            out->cdi = true;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "NCPU");
    out->ncpu = cJSON_IsNumber(n) ? n->valueint : 0;
    n = cJSON_GetObjectItemCaseSensitive(j, "MemTotal");
    out->mem_total = cJSON_IsNumber(n) ? (int64_t)n->valuedouble : 0;
    const char *cg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "CgroupDriver"));
    snprintf(out->cgroup_driver, sizeof out->cgroup_driver, "%s", cg ? cg : "");
}

int rz__docker_info_parse(const char *json, rz__docker_info *out)
{
    cJSON *j = json ? cJSON_Parse(json) : NULL;
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        memset(out, 0, sizeof *out);
        return rz__error(RZ_EPROTOCOL, "/info is not a JSON object");
    }
    info_parse(j, out);
    cJSON_Delete(j);
    return RZ_OK;
}

rz__docker_gpu_mode rz__docker_gpu_mode_of(const rz__docker_info *info)
{
    return info->nvidia_runtime ? RZ__DOCKER_GPU_NVIDIA
           : info->cdi          ? RZ__DOCKER_GPU_CDI
                                : RZ__DOCKER_GPU_NONE;
}

static int info_fetch(rz__docker *d, rz__docker_info *out)
{
    memset(out, 0, sizeof *out);
    long status;
    cJSON *j = NULL;
    char msg[256];
    int rc = call(d, "GET", "/info", NULL, &status, &j, msg, sizeof msg);
    if (rc != RZ_OK)
        return rc;
    if (status != 200) {
        cJSON_Delete(j);
        return refused(d, "describe itself (/info)", status, msg);
    }
    info_parse(j, out);
    cJSON_Delete(j);
    return RZ_OK;
}

/* Podman 4.3 writes its own error into the attach stream's stderr when
 * the connection ends first ("Error: read unixpacket @->/proc/self/fd/15/
 * attach: read: connection reset by peer", or "Error: write unixpacket
 * ...: write: broken pipe"): not the module's log. */
static bool attach_noise(const char *line, size_t n)
{
    static const char *const heads[] = {"Error: read unixpacket ",
                                        "Error: write unixpacket "};
    size_t h = 0;
    for (size_t k = 0; k < RZ_ARRAY_LEN(heads) && !h; k++)
        if (n >= strlen(heads[k]) && memcmp(line, heads[k], strlen(heads[k])) == 0)
            h = strlen(heads[k]);
    for (size_t i = h; h && i + 9 <= n; i++)
        if (memcmp(line + i, "/attach: ", 9) == 0)
            return true;
    return false;
}

size_t rz__docker_clean_stderr(rz__buf *dst, const char *p, size_t n,
                               bool all)
{
    size_t at = 0;
    while (at < n) {
        const char *nl = memchr(p + at, '\n', n - at);
        if (!nl && !all)
            break;
        size_t len = nl ? (size_t)(nl - (p + at)) + 1 : n - at;
        if (!attach_noise(p + at, len))
            rz__buf_append(dst, p + at, len);
        at += len;
    }
    return at;
}

/* ---- images ---- */

int rz__docker_ref_split(const char *ref, char **name, char **digest)
{
    *name = *digest = NULL;
    if (!ref || !*ref)
        return rz__error(RZ_EINVALID, "empty image reference");
    const char *at = strchr(ref, '@');
    if (at) {
        const char *h = at + 1;
        bool ok = strncmp(h, "sha256:", 7) == 0 && strlen(h + 7) == 64;
        for (size_t i = 7; ok && h[i]; i++)
            ok = (h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f');
        if (!ok || at == ref)
            return rz__error(RZ_EINVALID, "image reference '%s': a pinned digest "
                             "is @sha256: and 64 lowercase hex digits", ref);
        *digest = rz__strdup(h);
    }
    *name = at ? rz__strndup(ref, (size_t)(at - ref)) : rz__strdup(ref);
    if (!*name || (at && !*digest)) {
        free(*name);
        free(*digest);
        *name = *digest = NULL;
        return RZ_ENOMEM;
    }
    return RZ_OK;
}

/* GET /<kind>/<id>/json: RZ_OK with *status 200 (and *out) or 404 (the
 * caller words it); another answer is the engine's refusal to `what`. */
static int get_object(rz__docker *d, const char *kind, const char *id,
                      const char *what, long *status, cJSON **out)
{
    *out = NULL;
    char *e = esc(d, id);
    char *path = e ? rz__asprintf("/%s/%s/json", kind, e) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    char msg[512];
    int rc = call(d, "GET", path, NULL, status, out, msg, sizeof msg);
    free(path);
    if (rc == RZ_OK && *status != 200 && *status != 404) {
        cJSON_Delete(*out);
        *out = NULL;
        rc = refused(d, what, *status, msg);
    }
    return rc;
}

int rz__docker_image_inspect(rz__docker *d, const char *image, cJSON **out)
{
    if (out)
        *out = NULL;
    long status;
    cJSON *j = NULL;
    int rc = get_object(d, "images", image, "inspect an image", &status, &j);
    if (rc != RZ_OK)
        return rc;
    if (status == 404)
        return rz__error(RZ_ENOENT, "image '%s' is not in the container engine at %s",
                         image, d->socket);
    if (out)
        *out = j;
    else
        cJSON_Delete(j);
    return RZ_OK;
}

int rz__docker_image_remove(rz__docker *d, const char *image)
{
    char *e = esc(d, image);
    char *path = e ? rz__asprintf("/images/%s?force=1", e) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    long status;
    char msg[256];
    int rc = call(d, "DELETE", path, NULL, &status, NULL, msg, sizeof msg);
    free(path);
    if (rc == RZ_OK && status >= 300 && status != 404)
        rc = refused(d, "remove an image", status, msg);
    return rc;
}

bool rz__docker_image_has_digest(const cJSON *inspect, const char *digest)
{
    const cJSON *r, *rd = cJSON_GetObjectItemCaseSensitive(inspect, "RepoDigests");
    size_t dl = strlen(digest);
    cJSON_ArrayForEach(r, rd) {
        const char *s = cJSON_GetStringValue(r);
        const char *at = s ? strrchr(s, '@') : NULL;
        if (at && strlen(at + 1) == dl && strcmp(at + 1, digest) == 0)
            return true;
    }
    return false;
}

typedef struct pull_ctx {
    rz__docker_progress_fn cb;
    void *ud;
    char error[512];
} pull_ctx;

static int on_pull_line(void *ud, const char *s, size_t n)
{
    pull_ctx *p = ud;
    char *line = rz__strndup(s, n);
    cJSON *j = line ? cJSON_Parse(line) : NULL;
    free(line);
    if (!j)
        return 0;  /* not a JSON line: nothing to report */
    const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
    /* A refused pull (404, 401) answers {"message": ...} as its one line. */
    if (!err && !cJSON_GetObjectItemCaseSensitive(j, "status"))
        err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
    int rc = 0;
    if (err) {
        snprintf(p->error, sizeof p->error, "%s", err);
    } else if (p->cb) {
        const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "status"));
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "id"));
        const cJSON *pd = cJSON_GetObjectItemCaseSensitive(j, "progressDetail");
        const cJSON *cur = cJSON_GetObjectItemCaseSensitive(pd, "current");
        const cJSON *tot = cJSON_GetObjectItemCaseSensitive(pd, "total");
        if (st)
            rc = p->cb(p->ud, st, id ? id : "",
                       cJSON_IsNumber(cur) ? (int64_t)cur->valuedouble : 0,
                       cJSON_IsNumber(tot) ? (int64_t)tot->valuedouble : 0);
    }
    cJSON_Delete(j);
    return rc ? 1 : 0;
}

/* Whether the last path component carries a tag. */
static bool has_tag(const char *name)
{
    const char *slash = strrchr(name, '/');
    return strchr(slash ? slash + 1 : name, ':') != NULL;
}

static bool looks_missing(const char *msg)
{
    static const char *const hints[] = {"not found", "manifest unknown",
                                        "name unknown", "does not exist",
                                        "No such image"};
    for (size_t i = 0; i < RZ_ARRAY_LEN(hints); i++)
        if (strstr(msg, hints[i]))
            return true;
    return false;
}

/* ---- registry auth ---- */

static void wipe_json(cJSON *j)
{
    for (cJSON *c = j ? j->child : NULL; c; c = c->next)
        if (cJSON_IsString(c) && c->valuestring)
            sodium_memzero(c->valuestring, strlen(c->valuestring));
    cJSON_Delete(j);
}

/* {"username", "password", "serveraddress"} from the credential's JSON or
 * "user:password"; NULL when it is neither. */
static cJSON *auth_fields(const char *cred)
{
    cJSON *out = cJSON_CreateObject();
    if (!out)
        return NULL;
    bool ok = false;
    if (cred[0] == '{') {
        cJSON *in = cJSON_Parse(cred);
        const char *keys[] = {"username", "password", "serveraddress"};
        ok = in != NULL;
        for (size_t i = 0; ok && i < RZ_ARRAY_LEN(keys); i++) {
            const char *v = cJSON_GetStringValue(
                cJSON_GetObjectItemCaseSensitive(in, keys[i]));
            if (v)
                ok = cJSON_AddStringToObject(out, keys[i], v) != NULL;
            else if (i < 2)
                ok = false;           /* username and password are needed */
        }
        wipe_json(in);
    } else {
        const char *colon = strchr(cred, ':');
        if (colon && colon != cred && colon[1]) {
            char *user = rz__strndup(cred, (size_t)(colon - cred));
            ok = user && cJSON_AddStringToObject(out, "username", user) &&
                 cJSON_AddStringToObject(out, "password", colon + 1);
            free(user);
        }
    }
    if (!ok) {
        wipe_json(out);
        return NULL;
    }
    return out;
}

int rz__docker_registry_auth(char **out, const char *credential)
{
    *out = NULL;
    cJSON *f = credential ? auth_fields(credential) : NULL;
    if (!f)
        return rz__error(RZ_EINVALID, "a registry_auth credential is JSON with "
                         "\"username\" and \"password\" (and \"serveraddress\"), "
                         "or user:password");
    char *json = cJSON_PrintUnformatted(f);
    wipe_json(f);
    if (!json)
        return rz__error(RZ_ENOMEM, "out of memory");
    size_t n = strlen(json);
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE);
    char *b = rz__malloc(cap);
    if (b)
        sodium_bin2base64(b, cap, (const unsigned char *)json, n,
                          sodium_base64_VARIANT_URLSAFE);
    sodium_memzero(json, n);
    free(json);
    if (!b)
        return rz__error(RZ_ENOMEM, "out of memory");
    *out = b;
    return RZ_OK;
}

void rz__docker_auth_free(char *auth)
{
    if (!auth)
        return;
    sodium_memzero(auth, strlen(auth));
    free(auth);
}

int rz__docker_set_registry_auth(rz__docker *d, const char *credential)
{
    char *auth = NULL;
    if (credential) {
        int rc = rz__docker_registry_auth(&auth, credential);
        if (rc != RZ_OK)
            return rc;
    }
    rz__docker_auth_free(d->auth);
    d->auth = auth;
    return RZ_OK;
}

int rz__docker_pull(rz__docker *d, const char *ref, rz__docker_progress_fn cb,
                    void *ud, uint64_t deadline_ms)
{
    char *name, *digest;
    int rc = rz__docker_ref_split(ref, &name, &digest);
    if (rc != RZ_OK)
        return rc;
    char *full = digest ? rz__strdup(ref)
                        : rz__asprintf("%s%s", name, has_tag(name) ? "" : ":latest");
    char *e = full ? esc(d, full) : NULL;
    char *path = e ? rz__asprintf("/images/create?fromImage=%s", e) : NULL;
    free(e);
    if (!path) {
        free(full);
        free(name);
        free(digest);
        return RZ_ENOMEM;
    }
    pull_ctx pc = {cb, ud, ""};
    body_sink s = {.max = MAX_BODY, .line = on_pull_line, .ud = &pc};
    long status;
    /* No deadline: the pull takes as long as the image needs, not the
     * control calls' bound. */
    long saved = d->timeout_ms;
    if (!deadline_ms)
        d->timeout_ms = 0;
    rc = http(d, "POST", path, NULL, &status, &s, deadline_ms);
    d->timeout_ms = saved;
    free(path);
    if (rc == RZ_OK && s.buf.len && !pc.error[0])
        on_pull_line(&pc, s.buf.data, s.buf.len);  /* a last line without \n */
    if (rc == RZ_ECANCELED)
        rz__error(rc, "pull of '%s' aborted", ref);
    else if (rc == RZ_OK && (status >= 400 || pc.error[0])) {
        const char *msg = pc.error[0] ? pc.error
                                      : engine_message(s.buf.data, pc.error, sizeof pc.error);
        if (digest && looks_missing(msg))
            rc = rz__error(RZ_EINVALID, "digest mismatch: the registry has no '%s' "
                           "with digest %s (%s)", name, digest, msg);
        else if (looks_missing(msg))
            rc = rz__error(RZ_ENOENT, "image '%s' not found: %s", full, msg);
        else
            rc = rz__error(RZ_EEXEC, "pull of '%s' failed: %s", full, msg);
    }
    rz__buf_free(&s.buf);
    if (rc == RZ_OK && digest) {
        /* Trust what the engine stored, not the stream's words. */
        cJSON *img = NULL;
        rc = rz__docker_image_inspect(d, full, &img);
        if (rc == RZ_OK && !rz__docker_image_has_digest(img, digest)) {
            rz__docker_image_remove(d, full);
            rc = rz__error(RZ_EINVALID, "digest mismatch: '%s' pulled, but the "
                           "image does not carry %s; removed it again", name, digest);
        }
        cJSON_Delete(img);
    }
    free(full);
    free(name);
    free(digest);
    return rc;
}

/* ---- containers ---- */

static cJSON *string_array(const char *const *v)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && v && v[i]; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

/* "k=v" pairs into an object; a pair without '=' maps to "". */
static cJSON *pairs_object(const char *const *v, char sep)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && v && v[i]; i++) {
        const char *eq = strchr(v[i], sep);
        char *k = eq ? rz__strndup(v[i], (size_t)(eq - v[i])) : rz__strdup(v[i]);
        if (k)
            cJSON_AddStringToObject(o, k, eq ? eq + 1 : "");
        free(k);
    }
    return o;
}

char *rz__docker_create_body(const rz__docker_spec *s)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "Image", s->image);
    if (s->cmd)
        cJSON_AddItemToObject(b, "Cmd", string_array(s->cmd));
    if (s->env)
        cJSON_AddItemToObject(b, "Env", string_array(s->env));
    cJSON_AddItemToObject(b, "Labels", pairs_object(s->labels, '='));
    if (s->user)
        cJSON_AddStringToObject(b, "User", s->user);
    if (s->workdir)
        cJSON_AddStringToObject(b, "WorkingDir", s->workdir);
    cJSON_AddBoolToObject(b, "AttachStdin", s->open_stdin);
    cJSON_AddBoolToObject(b, "OpenStdin", s->open_stdin);
    cJSON_AddBoolToObject(b, "StdinOnce", s->open_stdin);
    cJSON_AddBoolToObject(b, "AttachStdout", true);
    cJSON_AddBoolToObject(b, "AttachStderr", true);
    cJSON_AddBoolToObject(b, "Tty", false);
    if (!s->network)
        cJSON_AddBoolToObject(b, "NetworkDisabled", true);

    cJSON *h = cJSON_AddObjectToObject(b, "HostConfig");
    if (s->binds)
        cJSON_AddItemToObject(h, "Binds", string_array(s->binds));
    if (s->tmpfs)
        cJSON_AddItemToObject(h, "Tmpfs", pairs_object(s->tmpfs, ':'));
    cJSON_AddStringToObject(h, "NetworkMode", s->network ? "bridge" : "none");
    if (s->memory > 0) {
        cJSON_AddNumberToObject(h, "Memory", (double)s->memory);
        cJSON_AddNumberToObject(h, "MemorySwap", (double)s->memory);
    }
    if (s->nano_cpus > 0)
        cJSON_AddNumberToObject(h, "NanoCpus", (double)s->nano_cpus);
    if (s->pids_limit > 0)
        cJSON_AddNumberToObject(h, "PidsLimit", (double)s->pids_limit);
    static const char *const all[] = {"ALL", NULL};
    cJSON_AddItemToObject(h, "CapDrop", string_array(all));
    static const char *const nnp[] = {"no-new-privileges", NULL};
    cJSON_AddItemToObject(h, "SecurityOpt", string_array(nnp));
    cJSON_AddBoolToObject(h, "ReadonlyRootfs", !s->writable_rootfs);
    if (s->gpu_ids && s->gpu_ids[0]) {
        cJSON *reqs = cJSON_AddArrayToObject(h, "DeviceRequests");
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(reqs, r);
        if (s->gpu_cdi) {
            cJSON_AddStringToObject(r, "Driver", "cdi");
            cJSON *ids = cJSON_AddArrayToObject(r, "DeviceIDs");
            for (size_t i = 0; s->gpu_ids[i]; i++) {
                char *n = rz__asprintf("nvidia.com/gpu=%s", s->gpu_ids[i]);
                cJSON_AddItemToArray(ids, cJSON_CreateString(n ? n : ""));
                free(n);
            }
        } else {
            cJSON_AddStringToObject(r, "Driver", "nvidia");
            cJSON_AddItemToObject(r, "DeviceIDs", string_array(s->gpu_ids));
            cJSON *caps = cJSON_AddArrayToObject(r, "Capabilities");
            static const char *const gpu[] = {"gpu", NULL};
            cJSON_AddItemToArray(caps, string_array(gpu));
        }
    }
    char *out = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return out;
}

int rz__docker_create(rz__docker *d, const rz__docker_spec *spec, char **id)
{
    *id = NULL;
    if (!spec->image || !*spec->image)
        return rz__error(RZ_EINVALID, "a container needs an image");
    char *body = rz__docker_create_body(spec);
    char *path = NULL;
    if (spec->name) {
        char *e = esc(d, spec->name);
        path = e ? rz__asprintf("/containers/create?name=%s", e) : NULL;
        free(e);
    } else {
        path = rz__strdup("/containers/create");
    }
    if (!body || !path) {
        free(body);
        free(path);
        return RZ_ENOMEM;
    }
    long status;
    cJSON *j = NULL;
    char msg[512];
    int rc = call(d, "POST", path, body, &status, &j, msg, sizeof msg);
    free(body);
    free(path);
    if (rc != RZ_OK)
        return rc;
    if (status == 404) {
        cJSON_Delete(j);
        return rz__error(RZ_ENOENT, "image '%s' not found in the container engine "
                         "at %s (pull it first): %s", spec->image, d->socket, msg);
    }
    if (status != 201) {
        cJSON_Delete(j);
        return refused(d, "create a container", status, msg);
    }
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "Id"));
    *id = s ? rz__strdup(s) : NULL;
    cJSON_Delete(j);
    if (!s)
        return rz__error(RZ_EPROTOCOL, "container create answered no Id");
    return *id ? RZ_OK : RZ_ENOMEM;
}

/* POST/DELETE on a container path with a simple answer. ok2 is a second
 * status that also counts as success (304 for start/stop of a container
 * already there). */
static int container_op(rz__docker *d, const char *method, const char *id,
                        const char *suffix, const char *what, long ok2)
{
    char *e = esc(d, id);
    char *path = e ? rz__asprintf("/containers/%s%s", e, suffix) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    long status;
    char msg[512];
    int rc = call(d, method, path, NULL, &status, NULL, msg, sizeof msg);
    free(path);
    if (rc != RZ_OK)
        return rc;
    if (status == 404 && ok2 != 404)
        return rz__error(RZ_ENOENT, "no container '%.12s' in the engine at %s",
                         id, d->socket);
    if (status >= 300 && status != ok2)
        return refused(d, what, status, msg);
    return RZ_OK;
}

int rz__docker_start(rz__docker *d, const char *id)
{
    return container_op(d, "POST", id, "/start", "start a container", 304);
}

static void remember_stopped(rz__docker *d, const char *id)
{
    size_t i = d->stopped_next++ % STOPPED_RING;
    free(d->stopped[i]);
    d->stopped[i] = rz__strdup(id);
}

static bool was_stopped(const rz__docker *d, const char *id)
{
    for (size_t i = 0; i < STOPPED_RING; i++)
        if (d->stopped[i] && strcmp(d->stopped[i], id) == 0)
            return true;
    return false;
}

int rz__docker_stop(rz__docker *d, const char *id, int grace_s)
{
    if (grace_s < 0)
        grace_s = 0;
    char suffix[32];
    snprintf(suffix, sizeof suffix, "/stop?t=%d", grace_s);
    remember_stopped(d, id);
    /* The engine waits out the grace period before it answers. */
    long saved = d->timeout_ms;
    if (saved > 0)
        d->timeout_ms = saved + (long)grace_s * 1000;
    int rc = container_op(d, "POST", id, suffix, "stop a container", 304);
    d->timeout_ms = saved;
    return rc;
}

int rz__docker_kill(rz__docker *d, const char *id, const char *signal)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, "/kill?signal=%s", signal);
    remember_stopped(d, id);
    /* 409: not running (any more): nothing to signal. */
    return container_op(d, "POST", id, suffix, "signal a container", 409);
}

int rz__docker_remove(rz__docker *d, const char *id)
{
    return container_op(d, "DELETE", id, "?force=1&v=1", "remove a container", 404);
}

int rz__docker_wait(rz__docker *d, const char *id, long timeout_ms,
                    int *exit_code)
{
    *exit_code = -1;
    char *e = esc(d, id);
    char *path = e ? rz__asprintf("/containers/%s/wait", e) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    long saved = d->timeout_ms;
    d->timeout_ms = timeout_ms;
    long status;
    cJSON *j = NULL;
    char msg[512];
    int rc = call(d, "POST", path, NULL, &status, &j, msg, sizeof msg);
    d->timeout_ms = saved;
    free(path);
    if (rc != RZ_OK)
        return rc;
    if (status == 404)
        rc = rz__error(RZ_ENOENT, "no container '%.12s' in the engine at %s", id,
                       d->socket);
    else if (status != 200)
        rc = refused(d, "wait for a container", status, msg);
    else {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "StatusCode");
        if (!cJSON_IsNumber(c))
            rc = rz__error(RZ_EPROTOCOL, "container wait answered no StatusCode");
        else
            *exit_code = c->valueint;
    }
    cJSON_Delete(j);
    return rc;
}

/* cgroup v2 memory.events or v1 memory.oom_control of a live container:
 * whether the kernel OOM-killed something in it. */
static bool cgroup_oom(int pid)
{
    if (pid <= 0)
        return false;
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512], mem[400] = "", uni[400] = "";
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b)
            continue;
        if (strncmp(a + 1, "memory:", 7) == 0 || strstr(a + 1, ",memory:"))
            snprintf(mem, sizeof mem, "%s", b + 1);
        else if (a[1] == ':')
            snprintf(uni, sizeof uni, "%s", b + 1);
    }
    fclose(f);
    char file[512];
    if (mem[0])
        snprintf(file, sizeof file, "/sys/fs/cgroup/memory%s/memory.oom_control", mem);
    else
        snprintf(file, sizeof file, "/sys/fs/cgroup%s/memory.events", uni);
    f = fopen(file, "r");
    if (!f)
        return false;
    bool oom = false;
    long long n;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "oom_kill %lld", &n) == 1 && n > 0)
            oom = true;
    fclose(f);
    return oom;
}

int rz__docker_inspect(rz__docker *d, const char *id, rz__docker_state *st)
{
    memset(st, 0, sizeof *st);
    st->exit_code = -1;
    long status;
    cJSON *j = NULL;
    int rc = get_object(d, "containers", id, "inspect a container", &status, &j);
    if (rc != RZ_OK)
        return rc;
    if (status == 404)
        return rz__error(RZ_ENOENT, "no container '%.12s' in the engine at %s", id,
                         d->socket);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "State");
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "HostConfig");
    st->running = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "Running"));
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, "ExitCode");
    st->exit_code = cJSON_IsNumber(x) ? x->valueint : -1;
    const char *sts = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "Status"));
    snprintf(st->status, sizeof st->status, "%s", sts ? sts : "");
    x = cJSON_GetObjectItemCaseSensitive(h, "Memory");
    st->memory = cJSON_IsNumber(x) ? (int64_t)x->valuedouble : 0;
    x = cJSON_GetObjectItemCaseSensitive(s, "Pid");
    int pid = cJSON_IsNumber(x) && x->valuedouble > 0 && x->valuedouble < 1e9
                  ? x->valueint : 0;
    st->pid = pid;
    st->oom_killed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "OOMKilled"))
                     || (st->running && cgroup_oom(pid))
                     || (!st->running && st->exit_code == 137 && st->memory > 0
                         && !was_stopped(d, id));
    cJSON_Delete(j);
    return RZ_OK;
}

int rz__docker_logs(rz__docker *d, const char *id, size_t cap,
                    rz__docker_demux *m)
{
    rz__docker_demux_init(m, cap);
    char *e = esc(d, id);
    char *path = e ? rz__asprintf("/containers/%s/logs?stdout=1&stderr=1", e) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    body_sink s = {.max = MAX_BODY, .demux = m};
    long status;
    int rc = http(d, "GET", path, NULL, &status, &s, 0);
    free(path);
    if (rc == RZ_OK && status == 404)
        rc = rz__error(RZ_ENOENT, "no container '%.12s' in the engine at %s", id,
                       d->socket);
    else if (rc == RZ_OK && status != 200)
        rc = refused(d, "give a container's logs", status, "");
    return rc;
}

int rz__docker_list(rz__docker *d, const char *label, char ***ids, size_t *n)
{
    return rz__docker_list_labels(d, label, NULL, ids, NULL, n);
}

/* One container of a listing: its Id, and label `key` (or "") into vals. */
static bool list_entry(const cJSON *c, const char *key, char **id, char **val)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(c, "Id"));
    if (!s)
        return true;   /* skipped */
    *id = rz__strdup(s);
    if (!key)
        return *id != NULL;
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(c, "Labels");
    const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(l, key));
    *val = rz__strdup(v ? v : "");
    return *id && *val;
}

int rz__docker_list_labels(rz__docker *d, const char *label, const char *key,
                           char ***ids, char ***vals, size_t *n)
{
    *ids = NULL;
    if (vals)
        *vals = NULL;
    *n = 0;
    cJSON *f = cJSON_CreateObject();
    cJSON *l = cJSON_AddArrayToObject(f, "label");
    cJSON_AddItemToArray(l, cJSON_CreateString(label));
    char *fj = cJSON_PrintUnformatted(f);
    cJSON_Delete(f);
    char *e = fj ? esc(d, fj) : NULL;
    free(fj);
    char *path = e ? rz__asprintf("/containers/json?all=1&filters=%s", e) : NULL;
    free(e);
    if (!path)
        return RZ_ENOMEM;
    long status;
    cJSON *j = NULL;
    char msg[512];
    int rc = call(d, "GET", path, NULL, &status, &j, msg, sizeof msg);
    free(path);
    if (rc != RZ_OK)
        return rc;
    if (status != 200 || !cJSON_IsArray(j)) {
        cJSON_Delete(j);
        return refused(d, "list containers", status, msg);
    }
    size_t cnt = (size_t)cJSON_GetArraySize(j);
    char **v = rz__calloc(cnt ? cnt : 1, sizeof *v);
    char **w = key ? rz__calloc(cnt ? cnt : 1, sizeof *w) : NULL;
    bool ok = v && (!key || w);
    const cJSON *c;
    size_t k = 0;
    cJSON_ArrayForEach(c, j) {
        if (!ok)
            break;
        ok = list_entry(c, key, &v[k], w ? &w[k] : NULL);
        if (v[k])
            k++;
    }
    cJSON_Delete(j);
    if (!ok) {
        rz__docker_ids_free(v, cnt);
        rz__docker_ids_free(w, cnt);
        return RZ_ENOMEM;
    }
    *ids = v;
    if (vals)
        *vals = w;
    *n = k;
    return RZ_OK;
}

void rz__docker_ids_free(char **ids, size_t n)
{
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
}

/* ---- stream demultiplexing ---- */

void rz__docker_demux_init(rz__docker_demux *m, size_t cap)
{
    memset(m, 0, sizeof *m);
    m->cap = cap ? cap : DEFAULT_CAP;
}

void rz__docker_demux_free(rz__docker_demux *m)
{
    rz__buf_free(&m->out);
    rz__buf_free(&m->err);
}

int rz__docker_demux_feed(rz__docker_demux *m, const void *p, size_t n)
{
    const unsigned char *s = p;
    while (n) {
        if (m->left == 0) {
            size_t take = 8 - m->hdr_len < n ? 8 - m->hdr_len : n;
            memcpy(m->hdr + m->hdr_len, s, take);
            m->hdr_len += take;
            s += take;
            n -= take;
            if (m->hdr_len < 8)
                break;
            m->hdr_len = 0;
            if (m->hdr[0] > 2 || m->hdr[1] || m->hdr[2] || m->hdr[3])
                return rz__error(RZ_EPROTOCOL, "container output stream: not a "
                                 "stdout/stderr frame header");
            m->stream = m->hdr[0] == 2 ? 2 : 1;   /* stdin (0) echoes count as stdout */
            m->left = (uint32_t)m->hdr[4] << 24 | (uint32_t)m->hdr[5] << 16
                      | (uint32_t)m->hdr[6] << 8 | m->hdr[7];
            continue;
        }
        size_t take = m->left < n ? m->left : n;
        rz__buf *b = m->stream == 2 ? &m->err : &m->out;
        size_t *dropped = m->stream == 2 ? &m->err_dropped : &m->out_dropped;
        if (m->stream != 2 && m->out_lines && b->len + take > m->cap) {
            /* A line longer than the cap, or lines not taken: what is held
             * goes (the rest of its line then reads as a malformed one). */
            *dropped += b->len;
            b->len = 0;
        }
        size_t room = b->len < m->cap ? m->cap - b->len : 0;
        size_t keep = take < room ? take : room;
        if (keep)
            rz__buf_append(b, s, keep);
        *dropped += take - keep;
        if (b->failed)
            return RZ_ENOMEM;
        s += take;
        n -= take;
        m->left -= (uint32_t)take;
    }
    return RZ_OK;
}

/* ---- hijacked attach ---- */

struct rz__docker_stream {
    CURL *curl;
    int fd;
    unsigned char *in;
    size_t in_len, in_off;
    bool in_closed, eof;
    rz__docker_demux demux;
};

static int send_all_blocking(CURL *c, const char *p, size_t n, int fd)
{
    while (n) {
        size_t sent = 0;
        CURLcode rc = curl_easy_send(c, p, n, &sent);
        if (rc == CURLE_AGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            if (poll(&pf, 1, 5000) <= 0)
                return RZ_ETIMEOUT;
            continue;
        }
        if (rc != CURLE_OK)
            return RZ_EIO;
        p += sent;
        n -= sent;
    }
    return RZ_OK;
}

/* Read the HTTP answer head (up to the blank line) byte by byte, so that no
 * byte of the raw stream after it is consumed here. */
static int read_head(CURL *c, int fd, char *buf, size_t cap)
{
    size_t len = 0;
    uint64_t until = rz__now_ms() + 10000;
    while (len + 1 < cap) {
        size_t got = 0;
        CURLcode rc = curl_easy_recv(c, buf + len, 1, &got);
        if (rc == CURLE_AGAIN) {
            if (rz__now_ms() > until)
                return RZ_ETIMEOUT;
            struct pollfd pf = {fd, POLLIN, 0};
            poll(&pf, 1, 1000);
            continue;
        }
        if (rc != CURLE_OK || got == 0)
            return RZ_EIO;
        len++;
        buf[len] = '\0';
        if (len >= 4 && memcmp(buf + len - 4, "\r\n\r\n", 4) == 0)
            return RZ_OK;
    }
    return RZ_ETOOBIG;
}

int rz__docker_attach(rz__docker_stream **out, rz__docker *d, const char *id,
                      const void *in, size_t in_len, size_t cap)
{
    *out = NULL;
    rz__docker_stream *a = rz__calloc(1, sizeof *a);
    if (!a)
        return RZ_ENOMEM;
    rz__docker_demux_init(&a->demux, cap);
    a->fd = -1;
    if (in_len) {
        a->in = rz__malloc(in_len);
        if (!a->in) {
            rz__docker_stream_free(a);
            return RZ_ENOMEM;
        }
        memcpy(a->in, in, in_len);
        a->in_len = in_len;
    }
    a->curl = curl_easy_init();
    if (!a->curl) {
        rz__docker_stream_free(a);
        return RZ_ENOMEM;
    }
    /* curl connects; the request and the raw stream after it are ours. */
    curl_easy_setopt(a->curl, CURLOPT_UNIX_SOCKET_PATH, d->socket);
    curl_easy_setopt(a->curl, CURLOPT_URL, "http://d/");
    curl_easy_setopt(a->curl, CURLOPT_CONNECT_ONLY, 1L);
    curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    CURLcode cc = curl_easy_perform(a->curl);
    if (cc != CURLE_OK) {
        rz__docker_stream_free(a);
        return unreachable(d->socket, curl_easy_strerror(cc));
    }
    curl_socket_t sock;
    curl_easy_getinfo(a->curl, CURLINFO_ACTIVESOCKET, &sock);
    a->fd = (int)sock;
    char *e = esc(d, id);
    char *req = e ? rz__asprintf(
        "POST /v%s/containers/%s/attach?stream=1&stdin=1&stdout=1&stderr=1 HTTP/1.1\r\n"
        "Host: d\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
        d->version, e) : NULL;
    free(e);
    if (!req) {
        rz__docker_stream_free(a);
        return RZ_ENOMEM;
    }
    int rc = send_all_blocking(a->curl, req, strlen(req), a->fd);
    free(req);
    char head[2048];
    if (rc == RZ_OK)
        rc = read_head(a->curl, a->fd, head, sizeof head);
    if (rc != RZ_OK) {
        rz__docker_stream_free(a);
        return rz__error(rc, "container engine at %s: attach to '%.12s' failed",
                         d->socket, id);
    }
    int code = 0;
    sscanf(head, "HTTP/%*s %d", &code);
    if (code != 101 && code != 200) {
        rz__docker_stream_free(a);
        if (code == 404)
            return rz__error(RZ_ENOENT, "no container '%.12s' in the engine at %s",
                             id, d->socket);
        return rz__error(RZ_EEXEC, "container engine at %s refused to attach "
                         "(HTTP %d)", d->socket, code);
    }
    *out = a;
    return RZ_OK;
}

int rz__docker_stream_fd(const rz__docker_stream *a) { return a->fd; }

short rz__docker_stream_events(const rz__docker_stream *a)
{
    return (short)(POLLIN | (a->in_closed ? 0 : POLLOUT));
}

int rz__docker_stream_pump(rz__docker_stream *a)
{
    while (!a->in_closed) {
        if (a->in_off == a->in_len) {
            /* Half-close: the engine passes EOF on to the container's stdin. */
            shutdown(a->fd, SHUT_WR);
            a->in_closed = true;
            break;
        }
        size_t sent = 0;
        CURLcode rc = curl_easy_send(a->curl, a->in + a->in_off,
                                     a->in_len - a->in_off, &sent);
        if (rc == CURLE_AGAIN)
            break;
        if (rc != CURLE_OK) {
            /* The container closed its stdin early: not our failure. */
            a->in_closed = true;
            break;
        }
        a->in_off += sent;
    }
    char buf[16384];
    for (;;) {
        size_t got = 0;
        CURLcode rc = curl_easy_recv(a->curl, buf, sizeof buf, &got);
        if (rc == CURLE_AGAIN)
            return 0;
        if (rc != CURLE_OK)
            return rz__error(RZ_EIO, "container attach stream: %s",
                             curl_easy_strerror(rc));
        if (got == 0) {
            a->eof = true;
            return 1;
        }
        int r = rz__docker_demux_feed(&a->demux, buf, got);
        if (r != RZ_OK)
            return r;
    }
}

int rz__docker_stream_run(rz__docker_stream *a, uint64_t deadline_ms)
{
    for (;;) {
        int rc = rz__docker_stream_pump(a);
        if (rc != 0)
            return rc < 0 ? rc : RZ_OK;
        uint64_t now = rz__now_ms();
        if (deadline_ms && now >= deadline_ms)
            return rz__error(RZ_ETIMEOUT, "container still running at its deadline");
        int wait = deadline_ms ? (int)(deadline_ms - now) : 1000;
        struct pollfd pf = {a->fd, rz__docker_stream_events(a), 0};
        poll(&pf, 1, wait > 1000 ? 1000 : wait);
    }
}

const char *rz__docker_stream_stdout(const rz__docker_stream *a, size_t *len,
                                     size_t *dropped)
{
    if (len)
        *len = a->demux.out.len;
    if (dropped)
        *dropped = a->demux.out_dropped;
    return a->demux.out.data ? a->demux.out.data : "";
}

const char *rz__docker_stream_stderr(const rz__docker_stream *a, size_t *len,
                                     size_t *dropped)
{
    if (len)
        *len = a->demux.err.len;
    if (dropped)
        *dropped = a->demux.err_dropped;
    return a->demux.err.data ? a->demux.err.data : "";
}

void rz__docker_stream_lines(rz__docker_stream *a)
{
    a->demux.out_lines = true;
}

char *rz__docker_stream_out_take(rz__docker_stream *a, size_t *dropped)
{
    rz__buf *b = &a->demux.out;
    *dropped = a->demux.out_dropped;
    size_t n = b->len;
    while (n > 0 && b->data[n - 1] != '\n')
        n--;
    char *lines = n ? rz__strndup(b->data, n) : NULL;
    if (!lines)
        return NULL;
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    return lines;
}

void rz__docker_stream_free(rz__docker_stream *a)
{
    if (!a)
        return;
    if (a->curl)
        curl_easy_cleanup(a->curl);
    if (a->in)
        sodium_memzero(a->in, a->in_len);   /* the request may hold inputs */
    free(a->in);
    rz__docker_demux_free(&a->demux);
    free(a);
}

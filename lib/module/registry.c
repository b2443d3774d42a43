/* The module registry: every manifest of one or more local folders, sorted by
 * id then version, with an id -> first-index map so a flow of 100k steps
 * resolves each step in O(1) plus the (few) versions of its module. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include "common/array.h"
#include "module/module_impl.h"

#define RZ_REGISTRY_MAX_ENTRIES 100000

#define TRUSTED_MAX 64

struct rz_registry {
    rz_module **mods;
    size_t len, cap;
    rz__map by_id;     /* id (borrowed from the module) -> first index */
    char *trusted[TRUSTED_MAX];  /* publisher keys as given (hex or base64) */
    size_t n_trusted;
    char *cache_dir;   /* NULL: rz__registry_default_cache() */
    long timeout_ms;
    size_t max_index, max_manifest;
};

int rz_registry_new(rz_registry **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = rz__calloc(1, sizeof **out);
    if (!*out)
        return rz__error(RZ_ENOMEM, "out of memory");
    (*out)->timeout_ms = RZ_REGISTRY_DEFAULT_TIMEOUT_MS;
    (*out)->max_index = RZ_REGISTRY_DEFAULT_INDEX_MAX;
    (*out)->max_manifest = RZ_MODULE_MANIFEST_MAX;
    return RZ_OK;
}

void rz_registry_free(rz_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->len; i++)
        rz__module_free(reg->mods[i]);
    free(reg->mods);
    rz__map_free(&reg->by_id);
    for (size_t i = 0; i < reg->n_trusted; i++)
        free(reg->trusted[i]);
    free(reg->cache_dir);
    free(reg);
}

size_t rz_registry_count(const rz_registry *reg)
{
    return reg ? reg->len : 0;
}

const rz_module *rz_registry_get(const rz_registry *reg, size_t i)
{
    return reg && i < reg->len ? reg->mods[i] : NULL;
}

static int cmp_mod(const void *a, const void *b)
{
    const rz_module *x = *(rz_module *const *)a, *y = *(rz_module *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : rz__semver_cmp(x->ver, y->ver);
}

/* Sort and rebuild the id index; run once per folder, not per module. */
static int reindex(rz_registry *reg)
{
    if (reg->len > 1)   /* qsort must not see the NULL of an empty list */
        qsort(reg->mods, reg->len, sizeof *reg->mods, cmp_mod);
    rz__map_free(&reg->by_id);
    if (rz__map_init(&reg->by_id, reg->len) != RZ_OK)
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < reg->len; i++) {
        int rc = rz__map_put(&reg->by_id, reg->mods[i]->id, i);
        if (rc == RZ_ENOMEM)
            return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}

size_t rz__registry_find(const rz_registry *reg, const char *id, size_t *count)
{
    *count = 0;
    if (!reg || !id)
        return RZ_NPOS;
    size_t first = rz__map_get(&reg->by_id, id);
    if (first == RZ_NPOS)
        return RZ_NPOS;
    size_t n = first;
    while (n < reg->len && strcmp(reg->mods[n]->id, id) == 0)
        n++;
    *count = n - first;
    return first;
}

/* Linear over the modules added so far in this folder too, hence the check
 * against both the index (earlier folders) and the pending tail. */
static bool have(const rz_registry *reg, size_t indexed, const rz_module *m)
{
    size_t n;
    size_t first = rz__registry_find(reg, m->id, &n);
    for (size_t i = 0; first != RZ_NPOS && i < n; i++)
        if (rz__semver_cmp(reg->mods[first + i]->ver, m->ver) == 0)
            return true;
    for (size_t i = indexed; i < reg->len; i++)
        if (strcmp(reg->mods[i]->id, m->id) == 0 &&
            rz__semver_cmp(reg->mods[i]->ver, m->ver) == 0)
            return true;
    return false;
}

static int push(rz_registry *reg, rz_module *m)
{
    rz_module **p = rz__grow(reg->mods, &reg->cap, reg->len + 1, sizeof *p, 16);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    reg->mods = p;
    reg->mods[reg->len++] = m;
    return RZ_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names of the sub-folders holding a module.json, sorted so diagnostics and
 * duplicate resolution do not depend on readdir order. */
static int list_module_dirs(const char *dir, char ***out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (!d)
        return rz__error_at(errno == ENOMEM ? RZ_ENOMEM : RZ_ENOENT, dir, 0, 0,
                            NULL, "%s: cannot read module folder: %s", dir,
                            strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = RZ_OK;
    struct dirent *e;
    while (rc == RZ_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *path = rz__asprintf("%s/%s/module.json", dir, e->d_name);
        struct stat st;
        bool ok = path && stat(path, &st) == 0 && S_ISREG(st.st_mode);
        if (!path)
            rc = RZ_ENOMEM;
        free(path);
        if (!ok)
            continue;
        char **p = rz__grow(names, &cap, n + 1, sizeof *p, 16);
        if (!p) {
            rc = RZ_ENOMEM;
            break;
        }
        names = p;
        if (!(names[n] = rz__strdup(e->d_name)))
            rc = RZ_ENOMEM;
        else
            n++;
    }
    closedir(d);
    if (rc == RZ_OK)
        qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return rc == RZ_OK ? RZ_OK : rz__error(rc, "out of memory");
}

/* Signature and trust of a loaded module; a refused one is reported as an
 * RZ_EAUTH diagnostic at its origin, freed, and *m set to NULL. */
static void check_trust(const rz_registry *reg, rz_module **m, rz_diags *diags)
{
    int rc = rz__manifest_check_sig((*m)->manifest, &(*m)->publisher);
    if (rc == RZ_OK)
        rc = rz__registry_trust_check(*m, (const char *const *)reg->trusted,
                                      reg->n_trusted);
    if (rc == RZ_OK)
        return;
    rz__diag(diags, RZ_SEV_ERROR, RZ_EAUTH, (*m)->origin, 0, 0, "/signature",
             "module %s@%s refused: %s", (*m)->id, (*m)->version,
             rz_error_last()->message);
    rz__module_free(*m);
    *m = NULL;
}

/* Keep a freshly loaded module unless refused or already present. */
static int admit(rz_registry *reg, size_t indexed, rz_module *m, rz_diags *diags)
{
    check_trust(reg, &m, diags);
    if (!m)
        return RZ_OK;
    if (have(reg, indexed, m)) {
        rz__module_free(m);
        return RZ_OK;
    }
    int rc = push(reg, m);
    if (rc != RZ_OK)
        rz__module_free(m);
    return rc;
}

static int add_one(rz_registry *reg, size_t indexed, const char *dir,
                   rz_diags *diags)
{
    rz_module *m;
    int rc = rz__module_load(&m, dir, diags);
    if (rc == RZ_EMANIFEST)
        return RZ_OK;   /* reported and skipped */
    if (rc != RZ_OK)
        return rc;
    return admit(reg, indexed, m, diags);
}

int rz_registry_add_dir(rz_registry *reg, const char *dir, rz_diags *diags)
{
    if (!reg || !dir)
        return rz__error(RZ_EINVAL, "registry or folder is NULL");
    char *abs = realpath(dir, NULL);
    if (!abs)
        return rz__error_at(errno == ENOMEM ? RZ_ENOMEM : RZ_ENOENT, dir, 0, 0,
                            NULL, "%s: cannot read module folder: %s", dir,
                            strerror(errno));
    char **names;
    size_t n;
    int rc = list_module_dirs(abs, &names, &n);
    size_t indexed = reg->len;
    for (size_t i = 0; rc == RZ_OK && i < n; i++) {
        char *sub = rz__asprintf("%s/%s", abs, names[i]);
        rc = sub ? add_one(reg, indexed, sub, diags)
                 : rz__error(RZ_ENOMEM, "out of memory");
        free(sub);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(abs);
    /* Reindex even after a failure: modules pushed so far must be findable. */
    int rc2 = reindex(reg);
    return rc != RZ_OK ? rc : rc2;
}

/* Length of the list entry at `p`. A URL's own colons (scheme, port) are
 * not separators: its entry ends at the first ':' after the host part. */
static size_t entry_len(const char *p)
{
    if (!rz__is_url(p))
        return strcspn(p, ":");
    const char *host = strstr(p, "://") + 3;
    const char *path = host + strcspn(host, "/");
    return (size_t)(path - p) + strcspn(path, ":");
}

int rz_registry_add(rz_registry *reg, const char *dir_or_url, rz_diags *diags)
{
    if (dir_or_url && rz__is_url(dir_or_url))
        return rz_registry_add_url(reg, dir_or_url, diags);
    return rz_registry_add_dir(reg, dir_or_url, diags);
}

int rz_registry_add_path_list(rz_registry *reg, const char *list,
                              rz_diags *diags)
{
    if (!reg || !list)
        return rz__error(RZ_EINVAL, "registry or list is NULL");
    int first = RZ_OK;
    const char *p = list;
    /* Every folder is tried; the first failure is returned after all. */
    while (*p) {
        size_t n = entry_len(p);
        if (n > 0) {
            char *dir = rz__strndup(p, n);
            int rc = dir ? rz_registry_add(reg, dir, diags)
                         : rz__error(RZ_ENOMEM, "out of memory");
            free(dir);
            if (rc != RZ_OK && first == RZ_OK)
                first = rc;
            if (rc == RZ_ENOMEM)
                return rc;
        }
        p += n;
        if (*p == ':')
            p++;
    }
    return first;
}

const char *rz__module_ref_id(const char *ref)
{
    return ref && strncmp(ref, "chain://", 8) == 0 ? ref + 8 : ref;
}

static int resolve_id(const rz_registry *reg, const char *id,
                      const char *spec, const rz_module **out);

/* "chain://<id>" and "chain://<id>@<spec>" (the spec then given inside the
 * reference, so `spec` must be empty) resolve like "<id>" and <spec>. */
int rz_registry_resolve(const rz_registry *reg, const char *id,
                        const char *spec, const rz_module **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!reg || !id)
        return rz__error(RZ_EINVAL, "registry or id is NULL");
    const char *bare = rz__module_ref_id(id);
    const char *at = bare != id ? strchr(bare, '@') : NULL;
    if (!at)
        return resolve_id(reg, bare, spec, out);
    if (spec && *spec)
        return rz__error(RZ_EINVAL, "module reference '%s' carries a version "
                         "and another one, '%s', is given too", id, spec);
    char *name = rz__strndup(bare, (size_t)(at - bare));
    if (!name)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = resolve_id(reg, name, at + 1, out);
    free(name);
    return rc;
}

static int resolve_id(const rz_registry *reg, const char *id,
                      const char *spec, const rz_module **out)
{
    rz__verspec vs;
    int rc = rz__verspec_parse(spec, &vs);
    if (rc != RZ_OK)
        return rc;
    size_t n;
    size_t first = rz__registry_find(reg, id, &n);
    if (first == RZ_NPOS)
        return rz__error(RZ_ENOENT, "no module '%s' in the registry", id);
    /* Versions ascend, so the last match is the highest. */
    for (size_t i = n; i-- > 0;) {
        if (rz__verspec_match(&vs, reg->mods[first + i]->ver)) {
            *out = reg->mods[first + i];
            return RZ_OK;
        }
    }
    return rz__error(RZ_EMODULE, "no version of module '%s' matches '%s'",
                     id, spec ? spec : "");
}

/* ---- Options ---- */

int rz_registry_trust(rz_registry *reg, const char *publisher_key)
{
    if (!reg || !publisher_key)
        return rz__error(RZ_EINVAL, "registry or key is NULL");
    unsigned char pk[32];
    int rc = rz__pubkey_decode(publisher_key, pk);
    if (rc != RZ_OK)
        return rc;
    if (reg->n_trusted == TRUSTED_MAX)
        return rz__error(RZ_ETOOBIG, "more than %d trusted publishers",
                         TRUSTED_MAX);
    if (!(reg->trusted[reg->n_trusted] = rz__strdup(publisher_key)))
        return rz__error(RZ_ENOMEM, "out of memory");
    reg->n_trusted++;
    return RZ_OK;
}

int rz_registry_set_cache_dir(rz_registry *reg, const char *dir)
{
    if (!reg)
        return rz__error(RZ_EINVAL, "registry is NULL");
    char *d = dir ? rz__strdup(dir) : NULL;
    if (dir && !d)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(reg->cache_dir);
    reg->cache_dir = d;
    return RZ_OK;
}

int rz_registry_set_http_limits(rz_registry *reg, long timeout_ms,
                                size_t max_index_bytes)
{
    if (!reg || timeout_ms <= 0 || max_index_bytes == 0)
        return rz__error(RZ_EINVAL, "registry is NULL or a limit is zero");
    reg->timeout_ms = timeout_ms;
    reg->max_index = max_index_bytes;
    return RZ_OK;
}

/* ---- HTTP indexes ---- */

typedef struct remote {
    rz_registry *reg;
    const char *index_url;
    const char *cache;
    rz_diags *diags;
    size_t indexed;
} remote;

static int fetch(remote *r, const char *url, size_t max, rz__fetch *f)
{
    int rc = rz__http_fetch(url, r->cache, max, r->reg->timeout_ms, f);
    if (rc == RZ_OK && f->stale)
        rz__diag(r->diags, RZ_SEV_WARNING, RZ_EIO, url, 0, 0, "",
                 "unreachable (%s); using the cached copy", f->reason);
    return rc;
}

/* A manifest URL relative to the index URL, as a browser would resolve it. */
static char *join_url(const char *base, const char *rel)
{
    CURLU *u = curl_url();
    char *out = NULL, *s = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, rel, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &s, 0) == CURLUE_OK)
        out = rz__strdup(s);
    curl_free(s);
    curl_url_cleanup(u);
    return out;
}

static bool sha256_matches(const char *hex, const char *data, size_t len)
{
    unsigned char h[crypto_hash_sha256_BYTES];
    char got[crypto_hash_sha256_BYTES * 2 + 1];
    crypto_hash_sha256(h, (const unsigned char *)data, len);
    sodium_bin2hex(got, sizeof got, h, sizeof h);
    return strlen(hex) == sizeof got - 1 && strcasecmp(hex, got) == 0;
}

static void entry_bad(remote *r, size_t i, const char *fmt, ...) RZ_PRINTF(3, 4);

static void entry_bad(remote *r, size_t i, const char *fmt, ...)
{
    char ptr[48], msg[400];
    snprintf(ptr, sizeof ptr, "/modules/%zu", i);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rz__diag(r->diags, RZ_SEV_ERROR, RZ_EMANIFEST, r->index_url, 0, 0, ptr,
             "module %zu of the index: %s", i, msg);
}

/* The manifest text of entry `i`: fetched (and checked against "sha256")
 * or the inline object printed. *origin names it in diagnostics. */
static int entry_text(remote *r, size_t i, const cJSON *e, char **text,
                      size_t *len, char **origin)
{
    *text = *origin = NULL;
    const cJSON *man = cJSON_GetObjectItemCaseSensitive(e, "manifest");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(e, "sha256");
    if (cJSON_IsObject(man)) {
        *origin = rz__asprintf("%s#/modules/%zu/manifest", r->index_url, i);
        *text = cJSON_Print(man);
        *len = *text ? strlen(*text) : 0;
        return *origin && *text ? RZ_OK : RZ_ENOMEM;
    }
    if (!cJSON_IsString(man)) {
        entry_bad(r, i, "'manifest' must be a URL or a manifest object");
        return RZ_EMANIFEST;
    }
    if (!(*origin = join_url(r->index_url, man->valuestring)) ||
        !rz__is_url(*origin)) {
        entry_bad(r, i, "'%s' is not an http(s) URL", man->valuestring);
        return RZ_EMANIFEST;
    }
    rz__fetch f;
    int rc = fetch(r, *origin, r->reg->max_manifest, &f);
    if (rc == RZ_ENOMEM)
        return rc;
    if (rc != RZ_OK) {
        entry_bad(r, i, "%s", rz_error_last()->message);
        return RZ_EMANIFEST;
    }
    if (cJSON_IsString(sha) && !sha256_matches(sha->valuestring, f.body, f.len)) {
        entry_bad(r, i, "%s does not match its sha256 %s", *origin,
                  sha->valuestring);
        free(f.body);
        return RZ_EMANIFEST;
    }
    *text = f.body;
    *len = f.len;
    return RZ_OK;
}

/* The index's "id" and "version" must be what the manifest says. */
static bool entry_agrees(remote *r, size_t i, const cJSON *e, const rz_module *m)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(e, "version");
    if (!cJSON_IsString(id) || !cJSON_IsString(ver)) {
        entry_bad(r, i, "needs string 'id' and 'version'");
        return false;
    }
    if (strcmp(id->valuestring, m->id) || strcmp(ver->valuestring, m->version)) {
        entry_bad(r, i, "the index says %s@%s but the manifest is %s@%s",
                  id->valuestring, ver->valuestring, m->id, m->version);
        return false;
    }
    return true;
}

static int add_entry(remote *r, size_t i, const cJSON *e)
{
    if (!cJSON_IsObject(e)) {
        entry_bad(r, i, "must be an object {id, version, manifest, sha256}");
        return RZ_OK;
    }
    char *text, *origin;
    size_t len = 0;
    int rc = entry_text(r, i, e, &text, &len, &origin);
    rz_module *m = NULL;
    if (rc == RZ_OK)
        rc = rz__module_load_text(&m, origin, text, len, NULL, r->diags);
    free(text);
    free(origin);
    if (rc == RZ_EMANIFEST)
        return RZ_OK;
    if (rc != RZ_OK)
        return rc == RZ_ENOMEM ? rz__error(rc, "out of memory") : rc;
    if (!entry_agrees(r, i, e, m)) {
        rz__module_free(m);
        return RZ_OK;
    }
    return admit(r->reg, r->indexed, m, r->diags);
}

static int add_index(remote *r, const char *body, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *mods = cJSON_GetObjectItemCaseSensitive(root, "modules");
    if (!cJSON_IsArray(mods)) {
        cJSON_Delete(root);
        return rz__error_at(RZ_ESYNTAX, r->index_url, 0, 0, "", "%s: not a "
                            "module index (a JSON object {\"modules\": [...]})",
                            r->index_url);
    }
    int rc = RZ_OK;
    size_t i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, mods) {
        if (i == RZ_REGISTRY_MAX_ENTRIES) {
            rc = rz__error_at(RZ_ETOOBIG, r->index_url, 0, 0, "/modules",
                              "%s: more than %d modules", r->index_url,
                              RZ_REGISTRY_MAX_ENTRIES);
            break;
        }
        if ((rc = add_entry(r, i++, e)) != RZ_OK)
            break;
    }
    cJSON_Delete(root);
    return rc;
}

/* "module index URL: reason", with the URL as the error's file. */
static int index_error(int rc, const char *url)
{
    char why[sizeof rz_error_last()->message];   /* formatted over below */
    snprintf(why, sizeof why, "%s", rz_error_last()->message);
    return rz__error_at(rc, url, 0, 0, "", "module index %s", why);
}

int rz_registry_add_url(rz_registry *reg, const char *url, rz_diags *diags)
{
    if (!reg || !url)
        return rz__error(RZ_EINVAL, "registry or URL is NULL");
    char *cache = reg->cache_dir ? rz__strdup(reg->cache_dir)
                                 : rz__registry_default_cache();
    if (!cache)
        return rz__error(RZ_ENOMEM, "out of memory");
    remote r = {.reg = reg, .index_url = url, .cache = cache, .diags = diags,
                .indexed = reg->len};
    rz__fetch f;
    int rc = fetch(&r, url, reg->max_index, &f);
    if (rc == RZ_OK)
        rc = add_index(&r, f.body, f.len);
    else
        rc = index_error(rc, url);
    free(f.body);
    free(cache);
    int rc2 = reindex(reg);
    return rc != RZ_OK ? rc : rc2;
}

int rz_registry_add_defaults(rz_registry *reg, rz_diags *diags)
{
    if (!reg)
        return rz__error(RZ_EINVAL, "registry is NULL");
    const char *env = getenv("RHIZOS_MODULES");
    int rc = env && *env ? rz_registry_add_path_list(reg, env, diags) : RZ_OK;
    if (rc == RZ_ENOMEM)
        return rc;
    char *shipped = rz_data_path("modules");   /* missing: not a problem */
    if (shipped)
        (void)!rz_registry_add_dir(reg, shipped, diags);   /* problems: diags */
    free(shipped);
    rz_error_clear();
    return rc;
}

/* The module registry: every manifest of one or more local folders, sorted by
 * id then version, with an id -> first-index map so a flow of 100k steps
 * resolves each step in O(1) plus the (few) versions of its module. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "module/module_impl.h"

struct rz_registry {
    rz_module **mods;
    size_t len, cap;
    rz__map by_id;     /* id (borrowed from the module) -> first index */
};

int rz_registry_new(rz_registry **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

void rz_registry_free(rz_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->len; i++)
        rz__module_free(reg->mods[i]);
    free(reg->mods);
    rz__map_free(&reg->by_id);
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
    if (reg->len == reg->cap) {
        size_t cap = reg->cap ? reg->cap * 2 : 16;
        rz_module **p = realloc(reg->mods, cap * sizeof *p);
        if (!p)
            return rz__error(RZ_ENOMEM, "out of memory");
        reg->mods = p;
        reg->cap = cap;
    }
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
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) {
                rc = RZ_ENOMEM;
                break;
            }
            names = p;
        }
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

static int add_one(rz_registry *reg, size_t indexed, const char *dir,
                   rz_diags *diags)
{
    rz_module *m;
    int rc = rz__module_load(&m, dir, diags);
    if (rc == RZ_EMANIFEST)
        return RZ_OK;   /* reported and skipped */
    if (rc != RZ_OK)
        return rc;
    if (have(reg, indexed, m)) {
        rz__module_free(m);
        return RZ_OK;
    }
    rc = push(reg, m);
    if (rc != RZ_OK)
        rz__module_free(m);
    return rc;
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

int rz_registry_add_path_list(rz_registry *reg, const char *list,
                              rz_diags *diags)
{
    if (!reg || !list)
        return rz__error(RZ_EINVAL, "registry or list is NULL");
    int first = RZ_OK;
    const char *p = list;
    /* Every folder is tried; the first failure is returned after all. */
    while (*p) {
        size_t n = strcspn(p, ":");
        if (n > 0) {
            char *dir = rz__strndup(p, n);
            int rc = dir ? rz_registry_add_dir(reg, dir, diags)
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

int rz_registry_resolve(const rz_registry *reg, const char *id,
                        const char *spec, const rz_module **out)
{
    if (!out)
        return rz__error(RZ_EINVAL, "out is NULL");
    *out = NULL;
    if (!reg || !id)
        return rz__error(RZ_EINVAL, "registry or id is NULL");
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

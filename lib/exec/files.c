/* File outputs and inputs of an attempt (`type: file`, exec_impl.h).
 *
 * A step writes a file under RZ_OUTPUT_DIR (<scratch>/out/files; in the
 * sandbox its init copies that folder out of the step's tmpfs, capped) and
 * returns its path relative to it. Here it is taken into the blob store
 * (lib/store/blob.c: streamed, hashed, capped as read, no link followed)
 * and the output becomes a reference by digest. A dependant gets each
 * referenced blob copied (its digest checked on the way) into
 * <scratch>/in/files, read-only (the sandbox binds in/ read-only), and the
 * copy's absolute path as the input's value.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "exec/exec_impl.h"
#include "module/module_impl.h"
#include "store/blob.h"

/* ---- inputs ---- */

/* The last part of a stored name, or "file" for one that is not sound
 * (a forged reference). */
static const char *base_of(const cJSON *ref)
{
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(ref, "$file"), "name"));
    char why[120];
    if (!name || !rz__blob_name_ok(name, why, sizeof why))
        return "file";
    const char *slash = strrchr(name, '/');
    return slash ? slash + 1 : name;
}

/* `ref` copied to <scratch>/in/files/<digest>/<base> (once per name) and
 * replaced in its parent by that path. */
static int materialize(const char *blob_dir, const char *scratch,
                       const char *port, cJSON *parent, cJSON *ref)
{
    const char *hex = rz__file_ref_digest(ref);
    if (!blob_dir)
        return rz__error(RZ_EUNSUPPORTED, "input '%s' is a file, and this runner "
                         "keeps no blob store", port);
    char *dir = rz__asprintf("%s/in/files/%s", scratch, hex);
    char *path = dir ? rz__asprintf("%s/%s", dir, base_of(ref)) : NULL;
    char *top = rz__asprintf("%s/in/files", scratch);
    int rc = path && top ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    struct stat st;
    if (rc == RZ_OK && lstat(path, &st) != 0) {
        /* The digest's folder may hold the same bytes under another name. */
        if ((mkdir(top, 0755) != 0 && errno != EEXIST) ||
            (mkdir(dir, 0755) != 0 && errno != EEXIST))
            rc = rz__error(RZ_EIO, "%s: %s", dir, strerror(errno));
        else if ((rc = rz__blob_copy_out(blob_dir, hex, path)) != RZ_OK)
            rc = rz__error(rc, "input '%s': file sha256:%.12s...: %s%s", port, hex,
                           rc == RZ_ENOENT ? "not in this machine's blob store"
                                           : rz_error_last()->message,
                           rc == RZ_ENOENT ? " (the step that made it ran elsewhere, "
                                             "or the store was cleared)" : "");
    }
    cJSON *s = rc == RZ_OK ? cJSON_CreateString(path) : NULL;
    /* An object's member keeps its key (cJSON copies it before the old
     * member, which holds it, goes). */
    if (rc == RZ_OK &&
        (!s || !(cJSON_IsObject(parent)
                     ? cJSON_ReplaceItemInObjectCaseSensitive(parent, ref->string, s)
                     : cJSON_ReplaceItemViaPointer(parent, ref, s)))) {
        cJSON_Delete(s);
        rc = rz__error(RZ_ENOMEM, "out of memory");
    }
    free(top);
    free(dir);
    free(path);
    return rc;
}

int rz__files_inputs(const char *blob_dir, const char *scratch, const char *req,
                     char **out)
{
    *out = NULL;
    if (!strstr(req, "\"$file\""))
        return RZ_OK;   /* the common case, without a parse */
    cJSON *j = cJSON_Parse(req);
    cJSON *inputs = cJSON_GetObjectItemCaseSensitive(j, "inputs");
    int rc = RZ_OK, n = 0;
    cJSON *v, *next;
    /* An input's value, or an element of a list (a for_each's outputs). */
    for (v = inputs ? inputs->child : NULL; rc == RZ_OK && v; v = next) {
        next = v->next;
        if (rz__file_ref_digest(v)) {
            rc = materialize(blob_dir, scratch, v->string, inputs, v);
            n++;
        } else if (cJSON_IsArray(v)) {
            cJSON *e, *enext;
            for (e = v->child; rc == RZ_OK && e; e = enext) {
                enext = e->next;
                if (rz__file_ref_digest(e)) {
                    rc = materialize(blob_dir, scratch, v->string, v, e);
                    n++;
                }
            }
        }
    }
    if (rc == RZ_OK && n && !(*out = rz__json_print(j, false)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(j);
    return rc;
}

/* ---- outputs ---- */

/* One output's value (its name under RZ_OUTPUT_DIR) taken into the store
 * and replaced by its reference. */
static int take(const rz__files_ctx *c, cJSON *outputs, const char *port,
                uint64_t *left)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(outputs, port);
    const char *name = cJSON_GetStringValue(v);
    if (!v)
        return RZ_OK;   /* the manifest check says what is missing */
    if (!name)
        return rz__error(RZ_EINVALID, "output '%s' is a file: its value is its "
                         "path under RZ_OUTPUT_DIR, a string", port);
    char *from = rz__asprintf("%s/out/files", c->scratch);
    char hex[RZ_BLOB_HEX + 1];
    uint64_t size = 0, cap = c->file_cap < *left ? c->file_cap : *left;
    int rc = from ? rz__blob_put(c->blob_dir, from, name, cap, hex, &size)
                  : rz__error(RZ_ENOMEM, "out of memory");
    free(from);
    if (rc == RZ_ETOOBIG)
        return rz__error(rc, "output '%s' ('%.200s') is over %s (%" PRIu64
                         " MiB; docs/flow-format.md, \"File outputs\")", port, name,
                         cap == c->file_cap ? "the cap on a file"
                                            : "the step's share of the run's cap "
                                              "on files",
                         cap >> 20);
    if (rc != RZ_OK)
        return rz__error(rc, "output '%s': %s%s", port, rz_error_last()->message,
                         rc == RZ_ENOENT
                             ? " (a file output is a regular file under RZ_OUTPUT_DIR; "
                               "links, fifos and folders are not taken)" : "");
    *left -= size;
    cJSON *ref = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(ref, "$file");
    char *path = rz__asprintf("%s/sha256/%.2s/%s", c->blob_dir, hex, hex);
    if (!f || !path || !cJSON_AddStringToObject(f, "sha256", hex) ||
        !cJSON_AddNumberToObject(f, "size", (double)size) ||
        !cJSON_AddStringToObject(f, "name", name) ||
        !cJSON_AddStringToObject(f, "path", path) ||
        !cJSON_ReplaceItemInObjectCaseSensitive(outputs, port, ref)) {
        cJSON_Delete(ref);
        rc = rz__error(RZ_ENOMEM, "out of memory");
    }
    free(path);
    return rc;
}

int rz__files_outputs(const rz__files_ctx *c, char **outputs, uint64_t *stored)
{
    *stored = 0;
    if (!c->n_ports)
        return RZ_OK;
    if (!c->blob_dir)
        return rz__error(RZ_EUNSUPPORTED, "output '%s' is a file, and this runner "
                         "keeps no blob store for file outputs (docs/flow-format.md, "
                         "\"File outputs\")", c->ports[0]);
    cJSON *o = cJSON_Parse(*outputs);
    if (!o)
        return rz__error(RZ_ENOMEM, "out of memory");   /* checked JSON before */
    uint64_t left = c->files_cap;
    int rc = RZ_OK;
    for (size_t i = 0; rc == RZ_OK && i < c->n_ports; i++)
        rc = take(c, o, c->ports[i], &left);
    char *text = rc == RZ_OK ? rz__json_print(o, false) : NULL;
    cJSON_Delete(o);
    if (rc == RZ_OK && !text)
        rc = rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK) {
        free(*outputs);
        *outputs = text;
        *stored = c->files_cap - left;
    }
    return rc;
}

uint64_t rz__files_size(const char *outputs)
{
    uint64_t n = 0;
    if (!outputs || !strstr(outputs, "\"$file\""))
        return 0;
    cJSON *o = cJSON_Parse(outputs), *v;
    cJSON_ArrayForEach(v, o) {
        if (rz__file_ref_digest(v))
            n += (uint64_t)cJSON_GetObjectItemCaseSensitive(
                     cJSON_GetObjectItemCaseSensitive(v, "$file"), "size")->valuedouble;
    }
    cJSON_Delete(o);
    return n;
}

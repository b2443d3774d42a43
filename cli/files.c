/* `rhizos flow file ID STEP OUTPUT [-o PATH]`: a step's file output (a
 * `$file` reference, docs/flow-format.md "File outputs") saved where its
 * owner wants it. A deployment's comes from the orchestrator in parts
 * (GET /api/v1/blobs/{sha256}?flow=ID&offset=&length=), an embedded run's
 * from DATA/blobs. Either way the bytes are hashed as they are written to
 * a temporary file beside PATH, which takes PATH's name only once size and
 * digest match the reference: a transfer cut short, a damaged blob or a
 * wrong server leaves nothing behind, and an existing file is never
 * overwritten (the owner removes it or names another). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "cli.h"
#include "rhizos/client.h"
#include "rhizos/store.h"

#define PART ((uint64_t)1 << 20)   /* the blob route's largest part */

typedef struct ref {
    char hex[65];
    uint64_t size;
    char name[256];              /* the last part of its name */
} ref;

typedef struct sink {
    int fd;
    crypto_hash_sha256_state h;
    uint64_t done, size;
    bool progress;               /* a line on stderr (a terminal, big file) */
    bool over;                   /* more bytes came than the reference says */
} sink;

/* steps.STEP.outputs.OUTPUT of a status or record, or of one element of
 * a list output with "OUTPUT.N" (a for_each step's); false: said why. */
static bool find_ref(const cJSON *doc, const char *step, const char *output,
                     ref *r)
{
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "steps"), step);
    if (!s) {
        fprintf(stderr, "rhizos: flow file: no step '%s'\n", step);
        return false;
    }
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(s, "outputs");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(outs, output);
    const char *dot = strrchr(output, '.');
    if (!v && dot && dot[1] && strspn(dot + 1, "0123456789") == strlen(dot + 1)) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(dot - output), output);
        v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(outs, name),
                               atoi(dot + 1));
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "$file");
    const char *hex = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "sha256"));
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(f, "name"));
    if (!v) {
        fprintf(stderr, "rhizos: flow file: step '%s' has no output '%s'%s\n", step,
                output, outs ? "" : " (it has no outputs yet)");
        return false;
    }
    if (!hex || !rz_blob_hex_ok(hex) || !cJSON_IsNumber(size) ||
        size->valuedouble < 0 || size->valuedouble > 9007199254740992.0) {
        fprintf(stderr, "rhizos: flow file: output '%s' of step '%s' is not a "
                "file (a module's output of type: file)\n", output, step);
        return false;
    }
    memcpy(r->hex, hex, 65);
    r->size = (uint64_t)size->valuedouble;
    const char *base = name ? strrchr(name, '/') : NULL;
    base = base ? base + 1 : name;
    snprintf(r->name, sizeof r->name, "%s", base && *base && strcmp(base, ".") &&
             strcmp(base, "..") ? base : r->hex);
    return true;
}

static int take(void *ud, const void *data, size_t len)
{
    sink *k = ud;
    if (len > k->size - k->done) {
        k->over = true;
        return RZ_EPROTOCOL;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = write(k->fd, (const char *)data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return RZ_EIO;
        off += (size_t)n;
    }
    crypto_hash_sha256_update(&k->h, data, len);
    uint64_t before = k->done;
    k->done += len;
    if (k->progress && (before >> 20) != (k->done >> 20))
        fprintf(stderr, "\r%" PRIu64 " / %" PRIu64 " MiB", k->done >> 20, k->size >> 20);
    return RZ_OK;
}

/* A deployment's file, part by part; false: said why. */
static bool fetch_remote(cli *c, uint64_t dep, const ref *r, sink *k)
{
    rz_client *cl = cli_client(c);
    if (!cl)
        return false;
    int rc = RZ_OK;
    while (rc == RZ_OK && k->done < r->size) {
        char path[200];
        uint64_t want = r->size - k->done < PART ? r->size - k->done : PART;
        snprintf(path, sizeof path, "/api/v1/blobs/%s?flow=%" PRIu64 "&offset=%"
                 PRIu64 "&length=%" PRIu64, r->hex, dep, k->done, want);
        uint64_t before = k->done;
        rc = rz_client_get_bytes(cl, path, take, k, NULL);
        if (rc == RZ_OK && k->done == before) {
            fprintf(stderr, "rhizos: flow file: the orchestrator sent an empty "
                    "part at byte %" PRIu64 " of %" PRIu64 "\n", before, r->size);
            rz_client_free(cl);
            return false;
        }
    }
    rz_client_free(cl);
    if (k->over)
        fprintf(stderr, "rhizos: flow file: the orchestrator sent more bytes "
                "than the file has\n");
    else if (rc != RZ_OK)
        cli_net_fail("flow file", rc);
    return rc == RZ_OK;
}

/* An embedded run's file from DATA/blobs; false: said why. */
static bool fetch_local(const char *data_dir, const ref *r, sink *k)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/blobs", data_dir);
    int fd = -1;
    uint64_t size = 0;
    int rc = rz_blob_open(dir, r->hex, &fd, &size);
    if (rc == RZ_ENOENT) {
        fprintf(stderr, "rhizos: flow file: %s holds no file %.12s... any more "
                "(removed by flow runs --prune?)\n", dir, r->hex);
        return false;
    }
    if (rc != RZ_OK) {
        cli_error("flow file", rc);
        return false;
    }
    static char buf[1 << 16];
    ssize_t n;
    while (rc == RZ_OK && (n = read(fd, buf, sizeof buf)) != 0)
        rc = n < 0 ? (errno == EINTR ? RZ_OK : RZ_EIO) : take(k, buf, (size_t)n);
    close(fd);
    if (rc != RZ_OK)
        fprintf(stderr, "rhizos: flow file: reading %.12s... from %s: %s\n", r->hex,
                dir, rc == RZ_EIO ? strerror(errno) : "larger than its reference");
    return rc == RZ_OK;
}

/* Size and digest as the reference says? Else said. */
static bool matches(sink *k, const ref *r)
{
    unsigned char d[crypto_hash_sha256_BYTES];
    char hex[65];
    crypto_hash_sha256_final(&k->h, d);
    sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    if (k->done == r->size && strcmp(hex, r->hex) == 0)
        return true;
    fprintf(stderr, "rhizos: flow file: got %" PRIu64 " bytes with sha256 %.12s..., "
            "not the %" PRIu64 " with %.12s... of the reference: nothing saved\n",
            k->done, hex, r->size, r->hex);
    return false;
}

/* The reference, from the orchestrator (a numeric id) or the store. */
static cJSON *lookup(cli *c, const char *id, uint64_t *dep, int *ex)
{
    char *json = NULL;
    int rc;
    if (cli_parse_u64(id, UINT64_MAX, dep)) {
        rz_client *cl = cli_client(c);
        if (!cl) {
            *ex = EXIT_USAGE;
            return NULL;
        }
        rc = rz_client_flow_status(cl, *dep, &json);
        rz_client_free(cl);
        if (rc != RZ_OK)
            *ex = cli_net_fail(NULL, rc);
    } else {
        char *dir = cli_data_dir(c);
        rz_store *st = NULL;
        rc = dir ? rz_store_open(&st, dir) : RZ_ENOMEM;
        if (rc == RZ_OK)
            rc = rz_store_run_get(st, id, &json);
        if (rc == RZ_ENOENT)
            fprintf(stderr, "rhizos: no run '%s' recorded in %s (rhizos flow runs "
                    "lists them)\n", id, dir);
        else if (rc != RZ_OK)
            cli_error(dir ? dir : "rhizos", rc);
        rz_store_close(st);
        free(dir);
        *ex = EXIT_FAILED;
    }
    cJSON *doc = rc == RZ_OK ? cJSON_Parse(json) : NULL;
    rz_free(json);
    return doc;
}

static int save(cli *c, const char *id, uint64_t dep, const ref *r, const char *to)
{
    bool out = strcmp(to, "-") == 0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.rhizos-part-XXXXXX", to);
    int fd = out ? STDOUT_FILENO : mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "rhizos: flow file: %s: %s\n", to, strerror(errno));
        return EXIT_FAILED;
    }
    sink k = { .fd = fd, .size = r->size,
               .progress = !out && cli_stderr_tty() && r->size >= (8u << 20) };
    crypto_hash_sha256_init(&k.h);
    char *dir = dep ? NULL : cli_data_dir(c);
    bool ok = dep ? fetch_remote(c, dep, r, &k) : dir && fetch_local(dir, r, &k);
    free(dir);
    if (k.progress)
        fputs("\r\033[K", stderr);
    ok = ok && matches(&k, r);
    if (!out) {
        ok = ok && fsync(k.fd) == 0;
        close(k.fd);
        /* link, not rename: a file made meanwhile under `to` is kept */
        if (ok && link(tmp, to) != 0) {
            fprintf(stderr, "rhizos: flow file: %s: %s\n", to, strerror(errno));
            ok = false;
        }
        unlink(tmp);
    }
    if (ok && !out && !c->quiet)
        fprintf(stderr, "%s: %" PRIu64 " bytes, sha256 %s (%s)\n", to, r->size,
                r->hex, id);
    return ok ? EXIT_OK : EXIT_FAILED;
}

int cli_flow_file(cli *c)
{
    if (c->nargs != 3) {
        fprintf(stderr, "rhizos: flow file: wrong number of arguments: flow file "
                "ID STEP OUTPUT [-o PATH]. Try 'rhizos flow --help'.\n");
        return EXIT_USAGE;
    }
    uint64_t dep = 0;
    int ex = EXIT_FAILED;
    cJSON *doc = lookup(c, c->args[0], &dep, &ex);
    if (!doc)
        return ex;
    ref r;
    bool found = find_ref(doc, c->args[1], c->args[2], &r);
    cJSON_Delete(doc);
    if (!found)
        return EXIT_FAILED;
    const char *to = c->output ? c->output : r.name;
    if (strcmp(to, "-") != 0 && access(to, F_OK) == 0) {
        fprintf(stderr, "rhizos: flow file: %s exists: remove it or name another "
                "with -o PATH\n", to);
        return EXIT_FAILED;
    }
    return save(c, c->args[0], dep, &r, to);
}

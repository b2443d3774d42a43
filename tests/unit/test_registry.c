/* HTTP module indexes (a real server on 127.0.0.1: tests/data/registry/
 * server.py), the on-disk cache with ETag revalidation, unreachable hosts,
 * oversized and malformed indexes; manifest signatures and trusted
 * publishers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "module/module_impl.h"
#include "helpers.h"

#define SERVER RZ_SOURCE_ROOT "/tests/data/registry/server.py"

typedef struct env {
    char tmp[64];
    char www[96], cache[96], log[96];
    pid_t pid;
    int port;
    char base[64];          /* http://127.0.0.1:PORT */
} env;

static int start_server(env *e)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    e->pid = fork();
    assert_true(e->pid >= 0);
    if (e->pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execlp("python3", "python3", SERVER, e->www, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%d", &e->port), 1);
    fclose(f);
    snprintf(e->base, sizeof e->base, "http://127.0.0.1:%d", e->port);
    return 0;
}

static void stop_server(env *e)
{
    if (e->pid > 0) {
        kill(e->pid, SIGTERM);
        waitpid(e->pid, NULL, 0);
        e->pid = 0;
    }
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    if (!e || !tmp_dir_make(e->tmp, sizeof e->tmp, "registry"))
        return -1;
    snprintf(e->www, sizeof e->www, "%s/www", e->tmp);
    snprintf(e->cache, sizeof e->cache, "%s/cache", e->tmp);
    snprintf(e->log, sizeof e->log, "%s/log", e->tmp);
    mkdir(e->www, 0700);
    start_server(e);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    stop_server(e);
    if (tmp_dir_remove(e->tmp) != 0)
        return -1;
    free(e);
    return 0;
}

/* Lines "STATUS PATH" the server logged that equal `line`. */
static int logged(const env *e, const char *line)
{
    FILE *f = fopen(e->log, "r");
    int n = 0;
    char buf[512];
    while (f && fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = '\0';
        n += strcmp(buf, line) == 0;
    }
    if (f)
        fclose(f);
    return n;
}

static void serve(const env *e, const char *name, const char *text)
{
    char path[160];
    snprintf(path, sizeof path, "%s/%s", e->www, name);
    file_write(path, text);
}

static char *url(const env *e, const char *path)
{
    static char buf[4][160];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", e->base, path);
    return buf[k];
}

static rz_registry *new_reg(const env *e)
{
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_set_cache_dir(reg, e->cache), RZ_OK);
    assert_int_equal(rz_registry_set_http_limits(reg, 5000, 1u << 20), RZ_OK);
    return reg;
}

static const char *const ALPHA =
    "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"name\":\"Alpha\","
    "\"exec\":{\"adapter\":\"docker\",\"image\":\"busybox\"}}";

static const char *const INDEX =
    "{\"modules\":["
    "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"manifest\":\"mods/alpha.json\"},"
    "{\"id\":\"beta\",\"version\":\"0.4.1\",\"manifest\":{\"id\":\"beta\","
    "\"version\":\"0.4.1\",\"exec\":{\"adapter\":\"docker\",\"image\":\"x\"}}}"
    "]}";

static void expect_version(const rz_registry *reg, const char *id,
                           const char *spec, const char *version)
{
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, id, spec, &m), RZ_OK);
    assert_string_equal(rz_module_version(m), version);
}

static void test_index(void **state)
{
    env *e = *state;
    char p[160];
    snprintf(p, sizeof p, "%s/mods", e->www);
    mkdir(p, 0700);
    serve(e, "mods/alpha.json", ALPHA);
    serve(e, "index.json", INDEX);
    rz_registry *reg = new_reg(e);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_registry_add_url(reg, url(e, "index.json"), d), RZ_OK);
    assert_int_equal(rz_diags_count(d), 0);
    assert_int_equal(rz_registry_count(reg), 2);
    expect_version(reg, "alpha", "^1", "1.2.0");
    expect_version(reg, "chain://alpha", NULL, "1.2.0");
    expect_version(reg, "chain://beta@~0.4.0", NULL, "0.4.1");
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, "chain://beta@0.4", "0.4", &m),
                     RZ_EINVAL);
    assert_int_equal(rz_registry_resolve(reg, "alpha", NULL, &m), RZ_OK);
    assert_null(rz_module_dir(m));
    assert_string_equal(rz_module_origin(m), url(e, "mods/alpha.json"));
    assert_int_equal(logged(e, "200 /index.json"), 1);
    assert_int_equal(logged(e, "200 /mods/alpha.json"), 1);

    /* A second load revalidates: 304, same modules from the cache. */
    rz_registry *again = new_reg(e);
    assert_int_equal(rz_registry_add_url(again, url(e, "index.json"), d), RZ_OK);
    assert_int_equal(rz_registry_count(again), 2);
    assert_int_equal(logged(e, "304 /index.json"), 1);
    assert_int_equal(logged(e, "304 /mods/alpha.json"), 1);
    assert_int_equal(rz_diags_count(d), 0);

    /* A changed index is fetched anew (200) and wins over the cache. */
    serve(e, "index.json", "{\"modules\":[{\"id\":\"alpha\",\"version\":"
          "\"1.2.0\",\"manifest\":\"mods/alpha.json\"}]}");
    rz_registry *third = new_reg(e);
    assert_int_equal(rz_registry_add_url(third, url(e, "index.json"), d), RZ_OK);
    assert_int_equal(rz_registry_count(third), 1);
    assert_int_equal(logged(e, "200 /index.json"), 2);

    /* Server gone: the cached copy is served with a warning. */
    stop_server(e);
    rz_registry *offline = new_reg(e);
    assert_int_equal(rz_registry_add_url(offline, url(e, "index.json"), d), RZ_OK);
    assert_int_equal(rz_registry_count(offline), 1);
    assert_true(rz_diags_count(d) >= 1);
    const rz_diag *w = rz_diags_get(d, 0);
    assert_int_equal(w->severity, RZ_SEV_WARNING);
    assert_string_equal(w->file, url(e, "index.json"));
    assert_non_null(strstr(w->message, "cached copy"));
    assert_int_equal(rz_diags_error_count(d), 0);

    rz_registry_free(reg);
    rz_registry_free(again);
    rz_registry_free(third);
    rz_registry_free(offline);
    rz_diags_free(d);
}

/* A port nobody listens on: bind an ephemeral one, then close it. */
static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

static void test_unreachable(void **state)
{
    env *e = *state;
    char u[96];
    snprintf(u, sizeof u, "http://127.0.0.1:%d/index.json", closed_port());
    rz_registry *reg = new_reg(e);
    assert_int_equal(rz_registry_add_url(reg, u, NULL), RZ_EIO);
    const rz_error *err = rz_error_last();
    assert_int_equal(err->code, RZ_EIO);
    assert_non_null(strstr(err->message, u));
    assert_non_null(strstr(err->message, "onnect"));   /* curl's reason */
    assert_int_equal(rz_registry_count(reg), 0);

    /* Not http(s): refused before any I/O. */
    assert_int_equal(rz_registry_add_url(reg, "file:///etc/passwd", NULL), RZ_EINVAL);
    assert_int_equal(rz_registry_add_url(reg, "ftp://127.0.0.1/x", NULL), RZ_EINVAL);
    /* A redirect to another protocol is not followed. */
    char r[200];
    snprintf(r, sizeof r, "%s/redirect?to=file:///etc/passwd", e->base);
    assert_int_equal(rz_registry_add_url(reg, r, NULL), RZ_EIO);
    assert_non_null(strstr(rz_error_last()->message, "redirect"));
    /* 404 without a cached copy. */
    assert_int_equal(rz_registry_add_url(reg, url(e, "nope.json"), NULL), RZ_EIO);
    assert_non_null(strstr(rz_error_last()->message, "404"));
    rz_registry_free(reg);
}

static void test_oversized(void **state)
{
    env *e = *state;
    size_t n = 4096;
    char *big = malloc(n + 64);
    assert_non_null(big);
    strcpy(big, "{\"modules\":[], \"pad\":\"");
    size_t k = strlen(big);
    memset(big + k, 'x', n);
    strcpy(big + k + n, "\"}");
    serve(e, "big.json", big);
    free(big);
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_set_cache_dir(reg, e->cache), RZ_OK);
    assert_int_equal(rz_registry_set_http_limits(reg, 5000, 1024), RZ_OK);
    assert_int_equal(rz_registry_add_url(reg, url(e, "big.json"), NULL), RZ_ETOOBIG);
    assert_non_null(strstr(rz_error_last()->message, "1024"));
    assert_int_equal(rz_registry_set_http_limits(reg, 0, 10), RZ_EINVAL);
    assert_int_equal(rz_registry_set_http_limits(reg, 10, 0), RZ_EINVAL);
    rz_registry_free(reg);
}

static bool has_msg(const rz_diags *d, const char *needle)
{
    for (size_t i = 0; i < rz_diags_count(d); i++)
        if (strstr(rz_diags_get(d, i)->message, needle))
            return true;
    return false;
}

static void test_malformed(void **state)
{
    env *e = *state;
    rz_registry *reg = new_reg(e);
    serve(e, "garbage.json", "this is not json {");
    assert_int_equal(rz_registry_add_url(reg, url(e, "garbage.json"), NULL), RZ_ESYNTAX);
    serve(e, "notlist.json", "{\"modules\": 5}");
    assert_int_equal(rz_registry_add_url(reg, url(e, "notlist.json"), NULL), RZ_ESYNTAX);
    serve(e, "array.json", "[1,2,3]");
    assert_int_equal(rz_registry_add_url(reg, url(e, "array.json"), NULL), RZ_ESYNTAX);
    serve(e, "empty.json", "");
    assert_int_equal(rz_registry_add_url(reg, url(e, "empty.json"), NULL), RZ_ESYNTAX);

    /* Bad entries are reported and skipped; the good one loads. */
    serve(e, "alpha.json", ALPHA);
    char idx[2048];
    snprintf(idx, sizeof idx, "{\"modules\":["
        "7,"
        "{\"id\":\"alpha\",\"version\":\"1.2.0\"},"
        "{\"id\":\"alpha\",\"version\":\"9.9.9\",\"manifest\":\"alpha.json\"},"
        "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"manifest\":\"alpha.json\","
        "\"sha256\":\"00\"},"
        "{\"id\":\"gone\",\"version\":\"1.0.0\",\"manifest\":\"gone.json\"},"
        "{\"id\":\"f\",\"version\":\"1.0.0\",\"manifest\":\"file:///etc/passwd\"},"
        "{\"id\":\"bad\",\"version\":\"1.0.0\",\"manifest\":{\"id\":\"bad\"}},"
        "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"manifest\":\"%s/alpha.json\"}"
        "]}", e->base);
    serve(e, "mixed.json", idx);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_registry_add_url(reg, url(e, "mixed.json"), d), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 1);
    expect_version(reg, "alpha", NULL, "1.2.0");
    assert_true(has_msg(d, "must be an object"));
    assert_true(has_msg(d, "'manifest' must be a URL"));
    assert_true(has_msg(d, "the index says alpha@9.9.9"));
    assert_true(has_msg(d, "does not match its sha256"));
    assert_true(has_msg(d, "404"));
    assert_true(has_msg(d, "is not an http(s) URL"));
    assert_true(has_msg(d, "missing required field 'version'"));
    rz_diags_free(d);
    rz_registry_free(reg);
}

static void test_path_list_urls(void **state)
{
    env *e = *state;
    serve(e, "index.json", "{\"modules\":[{\"id\":\"beta\",\"version\":\"0.4.1\","
          "\"manifest\":{\"id\":\"beta\",\"version\":\"0.4.1\",\"exec\":"
          "{\"adapter\":\"docker\",\"image\":\"beta:1\"}}}]}");
    char list[512];
    snprintf(list, sizeof list, "%s/index.json:%s/tests/data/modules/good",
             e->base, RZ_SOURCE_ROOT);
    rz_registry *reg = new_reg(e);
    assert_int_equal(rz_registry_add_path_list(reg, list, NULL), RZ_OK);
    expect_version(reg, "beta", "^0.4", "0.4.1");
    expect_version(reg, "split", "^1.2", "1.10.1");
    rz_registry_free(reg);
}

/* ---- signatures ---- */

static char *sign_text(const char *key, const char *text)
{
    char *out = NULL;
    assert_int_equal(rz_manifest_sign(text, strlen(text), key, &out), RZ_OK);
    return out;
}

/* A key pair in the test's folder: the secret key's path, the public hex. */
static void keypair(const env *e, const char *name, char key[128], char pub[65])
{
    snprintf(key, 128, "%s/%s.key", e->tmp, name);
    assert_int_equal(rz_sign_keygen(key, pub), RZ_OK);
}

/* `signed_text` with a value changed after signing. */
static char *tampered_copy(const char *signed_text)
{
    cJSON *doc = cJSON_Parse(signed_text);
    cJSON_ReplaceItemInObject(doc, "name", cJSON_CreateString("Alpha!"));
    char *out = cJSON_Print(doc);
    cJSON_Delete(doc);
    return out;
}

/* The public key `pub` (hex) in standard base64. */
static void base64_key(const char *pub, char b64[64])
{
    unsigned char raw[32];
    assert_int_equal(rz__pubkey_decode(pub, raw), RZ_OK);
    static const char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < 32; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 |
                     (i + 1 < 32 ? (unsigned)raw[i + 1] << 8 : 0) |
                     (i + 2 < 32 ? raw[i + 2] : 0);
        b64[o++] = tbl[v >> 18 & 63];
        b64[o++] = tbl[v >> 12 & 63];
        b64[o++] = i + 1 < 32 ? tbl[v >> 6 & 63] : '=';
        b64[o++] = i + 2 < 32 ? tbl[v & 63] : '=';
    }
    b64[o] = '\0';
}

static void test_keygen_is_private_and_never_clobbers(void **state)
{
    env *e = *state;
    char key[128], key2[128], pub[65], pub2[65];
    keypair(e, "pub", key, pub);
    assert_int_equal(strlen(pub), 64);
    struct stat st;
    assert_int_equal(stat(key, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(rz_sign_keygen(key, pub2), RZ_EEXISTS);
    keypair(e, "other", key2, pub2);
    assert_string_not_equal(pub, pub2);
}

static void test_verify_names_the_publisher_and_checks_trust(void **state)
{
    env *e = *state;
    char key[128], key2[128], pub[65], pub2[65];
    keypair(e, "pub", key, pub);
    keypair(e, "other", key2, pub2);
    char *signed_alpha = sign_text(key, ALPHA);
    char *who = NULL;
    size_t n = strlen(signed_alpha);
    assert_int_equal(rz_manifest_verify(signed_alpha, n, NULL, 0, &who), RZ_OK);
    assert_string_equal(who, pub);
    rz_free(who);
    const char *tr[] = { pub }, *tr2[] = { pub2 }, *bad[] = { "zz" };
    assert_int_equal(rz_manifest_verify(signed_alpha, n, tr, 1, NULL), RZ_OK);
    assert_int_equal(rz_manifest_verify(signed_alpha, n, tr2, 1, NULL), RZ_EAUTH);
    assert_int_equal(rz_manifest_verify(signed_alpha, n, bad, 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_manifest_verify(ALPHA, strlen(ALPHA), NULL, 0, NULL), RZ_EAUTH);
    assert_int_equal(rz_manifest_verify("[]", 2, NULL, 0, NULL), RZ_ESYNTAX);
    rz_free(signed_alpha);
}

/* Re-signing replaces the signature; whitespace and key order do not
 * matter (canonical form), a changed value does. */
static void test_signature_covers_the_canonical_form(void **state)
{
    env *e = *state;
    char key[128], key2[128], pub[65], pub2[65];
    keypair(e, "pub", key, pub);
    keypair(e, "other", key2, pub2);
    char *signed_alpha = sign_text(key, ALPHA);
    const char *tr[] = { pub }, *tr2[] = { pub2 };
    char *twice = sign_text(key2, signed_alpha);
    assert_int_equal(rz_manifest_verify(twice, strlen(twice), tr2, 1, NULL), RZ_OK);
    cJSON *doc = cJSON_Parse(signed_alpha);
    cJSON *sig = cJSON_DetachItemFromObject(doc, "signature");
    cJSON_AddItemToObject(doc, "signature", sig);   /* moved to the end */
    char *reordered = cJSON_Print(doc);
    cJSON_Delete(doc);
    assert_int_equal(rz_manifest_verify(reordered, strlen(reordered), tr, 1, NULL), RZ_OK);
    char *tampered = tampered_copy(signed_alpha);
    assert_int_equal(rz_manifest_verify(tampered, strlen(tampered), NULL, 0, NULL), RZ_EAUTH);
    assert_non_null(strstr(rz_error_last()->message, "does not verify"));
    rz_free(signed_alpha);
    rz_free(twice);
    free(reordered);
    free(tampered);
}

static void test_malformed_signature_members_are_refused(void **state)
{
    (void)state;
    static const char *const broken[] = {
        "{\"id\":\"a\",\"signature\":5}",
        "{\"id\":\"a\",\"signature\":{\"publisher\":\"00\",\"sig\":\"AA==\"}}",
        "{\"id\":\"a\",\"signature\":{\"sig\":\"AA==\"}}",
    };
    for (size_t i = 0; i < sizeof broken / sizeof *broken; i++)
        assert_int_equal(rz_manifest_verify(broken[i], strlen(broken[i]), NULL, 0,
                                            NULL), RZ_EAUTH);
}

static void test_sign_refuses_a_key_others_can_read(void **state)
{
    env *e = *state;
    char key[128], pub[65];
    keypair(e, "pub", key, pub);
    assert_int_equal(chmod(key, 0644), 0);
    char *out = (char *)1;
    assert_int_equal(rz_manifest_sign(ALPHA, strlen(ALPHA), key, &out), RZ_EAUTH);
    assert_null(out);
}

/* An HTTP index with a signed manifest, a tampered one and an unsigned
 * one; the public key of the signer in `pub`. */
static void serve_signed_index(env *e, char pub[65])
{
    char key[128];
    keypair(e, "pub", key, pub);
    char *signed_alpha = sign_text(key, ALPHA);
    char *tampered = tampered_copy(signed_alpha);
    serve(e, "signed.json", signed_alpha);
    serve(e, "tampered.json", tampered);
    serve(e, "signed-index.json", "{\"modules\":["
          "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"manifest\":\"signed.json\"},"
          "{\"id\":\"alpha\",\"version\":\"1.2.0\",\"manifest\":\"tampered.json\"},"
          "{\"id\":\"beta\",\"version\":\"0.4.1\",\"manifest\":{\"id\":\"beta\","
          "\"version\":\"0.4.1\",\"exec\":{\"adapter\":\"docker\",\"image\":\"beta:1\"}}}]}");
    rz_free(signed_alpha);
    free(tampered);
}

static void test_trusting_registry_loads_only_signed_modules(void **state)
{
    env *e = *state;
    char pub[65];
    serve_signed_index(e, pub);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_registry *reg = new_reg(e);
    assert_int_equal(rz_registry_trust(reg, "not a key"), RZ_EINVAL);
    assert_int_equal(rz_registry_trust(reg, pub), RZ_OK);
    assert_int_equal(rz_registry_add_url(reg, url(e, "signed-index.json"), d), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 1);          /* beta is unsigned */
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, "alpha", NULL, &m), RZ_OK);
    assert_string_equal(rz_module_publisher(m), pub);
    assert_true(has_msg(d, "does not verify"));
    assert_true(has_msg(d, "not signed"));
    assert_int_equal(rz_diags_error_count(d), 2);
    rz_registry_free(reg);
    rz_diags_free(d);
}

/* Without trusted keys unsigned modules load, a bad signature does not. */
static void test_open_registry_loads_unsigned_modules(void **state)
{
    env *e = *state;
    char pub[65];
    serve_signed_index(e, pub);
    rz_registry *reg = new_reg(e);
    assert_int_equal(rz_registry_add_url(reg, url(e, "signed-index.json"), NULL), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 2);
    const rz_module *m;
    assert_int_equal(rz_registry_resolve(reg, "beta", NULL, &m), RZ_OK);
    assert_null(rz_module_publisher(m));
    rz_registry_free(reg);
}

/* Folder registries obey the same rule (base64 keys work too). */
static void test_folder_registry_checks_signatures(void **state)
{
    env *e = *state;
    char key[128], pub[65];
    keypair(e, "pub", key, pub);
    char *signed_alpha = sign_text(key, ALPHA);
    char *tampered = tampered_copy(signed_alpha);
    char dir[160], path[200];
    snprintf(dir, sizeof dir, "%s/mods", e->tmp);
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/alpha", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/alpha/module.json", dir);
    file_write(path, signed_alpha);
    char b64[64];
    base64_key(pub, b64);
    rz_registry *reg;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_trust(reg, b64), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 1);
    rz_registry_free(reg);
    file_write(path, tampered);
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, dir, NULL), RZ_OK);
    assert_int_equal(rz_registry_count(reg), 0);
    rz_registry_free(reg);
    rz_free(signed_alpha);
    free(tampered);
}

/* $RHIZOS_MODULES first, then the modules that ship (this test links the
 * library from its build tree: the source's examples/modules); never the
 * working directory's examples/modules, wherever the program stands. */
static void test_defaults(void **state)
{
    (void)state;
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char *shipped = rz_data_path("modules");
    assert_non_null(shipped);
    assert_string_equal(shipped, RZ_SOURCE_ROOT "/examples/modules");
    rz_free(shipped);
    assert_null(rz_data_path("secrets"));
    assert_int_equal(rz_error_last()->code, RZ_EINVAL);
    /* The console is built: the build tree's console/dist, never the
     * source tree's console/ (its sources), or missing until -Dui built it. */
    char *console = rz_data_path("console");
    if (console) {
        size_t n = strlen(console);
        assert_true(n > 13 && strcmp(console + n - 13, "/console/dist") == 0);
        assert_string_not_equal(console, RZ_SOURCE_ROOT "/console/dist");
    } else {
        assert_int_equal(rz_error_last()->code, RZ_ENOENT);
    }
    rz_free(console);

    assert_int_equal(setenv("RHIZOS_MODULES",
                            RZ_SOURCE_ROOT "/tests/data/modules/extra", 1), 0);
    /* A folder with its own examples/modules/evil: not picked up. */
    char tmp[] = "/tmp/rz-defaults-XXXXXX";
    assert_non_null(mkdtemp(tmp));
    char path[4200];
    snprintf(path, sizeof path, "%s/examples", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/examples/modules", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/examples/modules/evil", tmp);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/examples/modules/evil/module.json", tmp);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"id\": \"evil\", \"version\": \"1.0.0\", \"exec\": {\"adapter\": "
          "\"process\", \"command\": [\"true\"]}}", f);
    fclose(f);
    size_t counts[3];
    const char *dirs[3] = { "/", RZ_SOURCE_ROOT, tmp };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(chdir(dirs[i]), 0);
        rz_registry *reg = NULL;
        assert_int_equal(rz_registry_new(&reg), RZ_OK);
        assert_int_equal(rz_registry_add_defaults(reg, NULL), RZ_OK);
        counts[i] = rz_registry_count(reg);
        const rz_module *m = NULL;
        assert_int_equal(rz_registry_resolve(reg, "count", "2", &m), RZ_OK);
        assert_string_equal(rz_module_origin(m) + strlen(rz_module_origin(m))
                            - strlen("extra/count-2/module.json"),
                            "extra/count-2/module.json");
        assert_int_equal(rz_registry_resolve(reg, "echo", NULL, &m), RZ_OK);
        assert_int_not_equal(rz_registry_resolve(reg, "evil", NULL, &m), RZ_OK);
        rz_registry_free(reg);
    }
    assert_true(counts[0] > 2);
    assert_int_equal(counts[1], counts[0]);
    assert_int_equal(counts[2], counts[0]);
    assert_int_equal(chdir(cwd), 0);
    snprintf(path, sizeof path, "rm -rf '%s'", tmp);
    assert_int_equal(system(path), 0);

    assert_int_equal(unsetenv("RHIZOS_MODULES"), 0);
    assert_int_equal(rz_registry_add_defaults(NULL, NULL), RZ_EINVAL);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_path_list_urls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keygen_is_private_and_never_clobbers, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_names_the_publisher_and_checks_trust,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_signature_covers_the_canonical_form, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_malformed_signature_members_are_refused,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_sign_refuses_a_key_others_can_read, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_trusting_registry_loads_only_signed_modules,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_registry_loads_unsigned_modules, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_folder_registry_checks_signatures, setup,
                                        teardown),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

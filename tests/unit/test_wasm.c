/* The wasm adapter through rz_attempt (issue 23), in process: outputs,
 * the digest refusal, the memory cap, the timeout, secrets as files and
 * scrubbed, a bad manifest path. Uses the demo module meson built
 * (RZ_WASM_STEP); every test skips when it was not built or no runtime
 * answers here. The same cases through the CLI and a node: e2e-wasm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <sodium.h>

#include "rhizos/rhizos.h"

static char tmp_root[256];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The whole file, malloc'ed. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t cap = 1 << 20, n = 0, r;
    char *data = malloc(cap);
    assert_non_null(data);
    while ((r = fread(data + n, 1, cap - n, f)) > 0)
        if ((n += r) == cap) {
            data = realloc(data, cap *= 2);
            assert_non_null(data);
        }
    fclose(f);
    *len = n;
    return data;
}

static bool usable(void)
{
    return access(RZ_WASM_STEP, R_OK) == 0 && rz_wasm_runtime() != NULL;
}

static void copy_file(const char *from, const char *to)
{
    size_t len = 0;
    char *data = slurp(from, &len);
    FILE *f = fopen(to, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
    free(data);
}

static void sha256_hex(const char *path, char hex[65])
{
    size_t len = 0;
    char *data = slurp(path, &len);
    unsigned char h[32];
    crypto_hash_sha256(h, (const unsigned char *)data, len);
    sodium_bin2hex(hex, 65, h, sizeof h);
    free(data);
}

/* A registry folder with one wasm module "w" whose manifest says `exec`
 * (after "adapter":"wasm"); @SHA@ in it becomes the file's digest. */
static rz_registry *registry_with(const char *exec)
{
    char dir[400], path[450], hex[65];
    snprintf(dir, sizeof dir, "%s/reg-XXXXXX", tmp_root);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/w/step.wasm", dir);
    copy_file(RZ_WASM_STEP, path);
    sha256_hex(path, hex);
    char ex[600];
    const char *at = strstr(exec, "@SHA@");
    if (at)
        snprintf(ex, sizeof ex, "%.*s%s%s", (int)(at - exec), exec, hex, at + 5);
    else
        snprintf(ex, sizeof ex, "%s", exec);
    char json[1200];
    snprintf(json, sizeof json,
             "{\"id\":\"w\",\"version\":\"1.0.0\",\"name\":\"w\","
             "\"inputs\":[],\"outputs\":[],"
             "\"exec\":{\"adapter\":\"wasm\"%s}}", ex);
    snprintf(path, sizeof path, "%s/w/module.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    assert_int_equal(fclose(f), 0);
    rz_registry *r = NULL;
    assert_int_equal(rz_registry_new(&r), RZ_OK);
    assert_int_equal(rz_registry_add_dir(r, dir, NULL), RZ_OK);
    return r;
}

static const rz_module *module_w(const rz_registry *r)
{
    const rz_module *m = NULL;
    assert_int_equal(rz_registry_resolve(r, "w", NULL, &m), RZ_OK);
    return m;
}

static rz_attempt *run(rz_attempt_opts *o, rz_attempt_result *res)
{
    o->scratch_parent = tmp_root;
    rz_attempt *a = NULL;
    if (rz_attempt_start(&a, o) != RZ_OK)
        fail_msg("rz_attempt_start: %s", rz_error_last()->message);
    int r;
    uint64_t give_up = now_ms() + 60000;
    while ((r = rz_attempt_poll(a, 100)) == 0)
        assert_true(now_ms() < give_up);
    assert_int_equal(r, 1);
    assert_int_equal(rz_attempt_result_get(a, res), RZ_OK);
    return a;
}

static const char *SHA_EXEC = ",\"module\":\"./step.wasm\",\"sha256\":\"@SHA@\"";

/* One test's module "w" (registry_with(exec)), the options of its attempts
 * (30 s each unless a test says otherwise) and the last attempt run. */
typedef struct wasm_case {
    rz_registry *reg;
    rz_attempt_opts o;
    rz_attempt *a;
    rz_attempt_result res;
} wasm_case;

/* Skips the test where the demo module or a runtime is missing. */
static void case_open(wasm_case *c, const char *exec, const char *request)
{
    if (!usable())
        skip();
    rz_attempt_opts init = RZ_ATTEMPT_OPTS_INIT;
    c->reg = registry_with(exec);
    c->o = init;
    c->o.module = module_w(c->reg);
    c->o.request_json = request;
    c->o.timeout_s = 30;
    c->a = NULL;
}

/* Runs c->o to its end, the attempt before freed. */
static void case_run(wasm_case *c)
{
    rz_attempt_free(c->a);
    c->a = run(&c->o, &c->res);
}

static void case_close(wasm_case *c)
{
    rz_attempt_free(c->a);
    rz_registry_free(c->reg);
}

static void outputs_and_context(void **state)
{
    (void)state;
    wasm_case c;
    case_open(&c, SHA_EXEC,
              "{\"inputs\":{\"text\":\"abc\"},\"config\":{\"rounds\":3}}");
    case_run(&c);
    assert_true(c.res.ok);
    /* FNV-1a 64 of "abc", then twice of the previous digest's bytes. */
    assert_string_equal(c.res.outputs,
                        "{\"hash\":\"0fbcc0d36f945fb3\",\"rounds\":3,\"bytes\":3}");
    assert_non_null(c.res.log);
    assert_non_null(strstr(c.res.log, "hashed 3 bytes, 3 rounds"));
    assert_null(strstr(c.res.log, "ExperimentalWarning"));
    case_close(&c);
}

static void digest_mismatch_is_refused(void **state)
{
    (void)state;
    wasm_case c;
    case_open(&c, ",\"module\":\"./step.wasm\",\"sha256\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\"",
        NULL);
    case_run(&c);
    assert_false(c.res.ok);
    assert_non_null(strstr(c.res.reason, "cannot start: wasm module "));
    assert_non_null(strstr(c.res.reason, "not the manifest's 0000"));
    assert_non_null(strstr(c.res.reason, ": refused"));
    assert_int_equal(c.res.exit_code, -1);      /* nothing ran */
    case_close(&c);
}

static void memory_cap_and_timeout(void **state)
{
    (void)state;
    wasm_case c;
    case_open(&c, SHA_EXEC, "{\"inputs\":{},\"config\":{\"mode\":\"grow\"}}");
    c.o.memory_mb = 16;
    case_run(&c);
    assert_false(c.res.ok);
    assert_string_equal(c.res.reason, "out of memory: the module's linear "
                        "memory reached its cap (16 MiB, from memory_mb) and "
                        "it exited with 4");
    /* The runner's own line is the reason, not part of the log. */
    assert_non_null(strstr(c.res.log, "malloc failed after 1"));
    assert_null(strstr(c.res.log, "out of memory"));

    c.o.request_json = "{\"inputs\":{},\"config\":{\"mode\":\"spin\"}}";
    c.o.memory_mb = 0;
    c.o.timeout_s = 1;
    case_run(&c);
    assert_false(c.res.ok);
    assert_string_equal(c.res.reason, "timed out after 1 s");
    case_close(&c);
}

static void secrets_are_files_and_scrubbed(void **state)
{
    (void)state;
    wasm_case c;
    rz_attempt_secret sec = { "API", "tok-\"quoted\"\\-42" };
    case_open(&c, SHA_EXEC, "{\"inputs\":{},\"config\":{\"mode\":\"secret\","
                            "\"secret_name\":\"api\"}}");
    c.o.secrets = &sec;
    c.o.n_secrets = 1;
    case_run(&c);
    assert_true(c.res.ok);
    char want[64];
    snprintf(want, sizeof want, "{\"secret_len\":%zu}", strlen(sec.value));
    assert_string_equal(c.res.outputs, want);
    assert_non_null(strstr(c.res.log, "the secret is [redacted]"));
    assert_null(strstr(c.res.log, sec.value));

    /* Its environment: the context, RZ_OUTPUT and the secret's file name
     * as WASI paths; never the secret's value. */
    c.o.request_json = "{\"inputs\":{},\"config\":{\"mode\":\"env\"}}";
    c.o.run_id = "run-7";
    c.o.step_id = "hash";
    c.o.attempt = 2;
    case_run(&c);
    assert_true(c.res.ok);
    assert_string_equal(c.res.outputs,
        "{\"RZ_RUN_ID\":\"run-7\",\"RZ_STEP_ID\":\"hash\",\"RZ_ATTEMPT\":\"2\","
        "\"RZ_OUTPUT\":\"/rz/out/outputs.json\","
        "\"RZ_CRED_API_FILE\":\"/run/secrets/api\",\"RZ_CRED_API\":null,"
        "\"HOME\":\"/tmp\"}");
    case_close(&c);
}

static void unsandboxed_too(void **state)
{
    (void)state;
    wasm_case c;
    case_open(&c, SHA_EXEC,
              "{\"inputs\":{\"text\":\"abc\"},\"config\":{\"mode\":\"escape\"}}");
    c.o.sandbox = 0;
    case_run(&c);
    /* WASI's preopens hold without the sandbox. */
    assert_false(c.res.ok);
    assert_non_null(strstr(c.res.reason, "exit status 3: open /etc/passwd: "));
    case_close(&c);
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmp_root, sizeof tmp_root, "%s/rz-wasm-test-XXXXXX",
             t && *t ? t : "/tmp");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(outputs_and_context),
        cmocka_unit_test(digest_mismatch_is_refused),
        cmocka_unit_test(memory_cap_and_timeout),
        cmocka_unit_test(secrets_are_files_and_scrubbed),
        cmocka_unit_test(unsandboxed_too),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

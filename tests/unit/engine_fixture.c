/* The engine tests' fixture: see engine_fixture.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_fixture.h"
#include "helpers.h"

static void module_write(const char *root, const efx_module *m)
{
    char path[256], text[2048];
    snprintf(path, sizeof path, "%s/%s", root, m->id);
    mkdir(path, 0700);
    int n = snprintf(text, sizeof text,
                     "{\"id\":\"%s\",\"version\":\"%s\",\"name\":\"%s\","
                     "\"description\":\"test\",\"inputs\":%s,\"outputs\":%s%s,"
                     "\"requirements\":{\"adapter\":\"process\",\"cpu_cores\":1},"
                     "\"estimate\":{\"seconds\":10},"
                     "\"exec\":{\"adapter\":\"process\",\"command\":[\"true\"]}}",
                     m->id, m->version ? m->version : "1.0.0", m->id, m->inputs,
                     m->outputs, m->more ? m->more : "");
    assert_true(n > 0 && (size_t)n < sizeof text);
    snprintf(path, sizeof path, "%s/%s/module.json", root, m->id);
    file_write(path, text);
}

efx *efx_new(const char *name, const efx_module *mods, size_t n_mods,
             const rz_engine_opts *opts, uint64_t credit)
{
    efx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_non_null(tmp_dir_make(f->dir, sizeof f->dir, name));
    f->opts = *opts;
    if (n_mods) {
        char root[128];
        snprintf(root, sizeof root, "%s/modules", f->dir);
        mkdir(root, 0700);
        for (size_t i = 0; i < n_mods; i++)
            module_write(root, &mods[i]);
        assert_int_equal(rz_registry_new(&f->reg), RZ_OK);
        assert_int_equal(rz_registry_add_dir(f->reg, root, NULL), RZ_OK);
        f->opts.registry = f->reg;
    }
    efx_reopen(f);
    f->client = rz_ledger_id_make(7, 1);
    efx_client_add(f, f->client, rz_ledger_id_make(7, 2), credit);
    return f;
}

void efx_client_add(efx *f, rz_ledger_id id, rz_ledger_id credit, uint64_t micros)
{
    rz_ledger *l = rz_engine_ledger(f->e);
    assert_int_equal(rz_ledger_create_account(l, id, RZ_LEDGER_CLIENT), RZ_OK);
    assert_int_equal(rz_ledger_test_credit(l, credit, id, micros), RZ_OK);
}

void efx_reopen(efx *f)
{
    rz_engine_close(f->e);
    f->e = NULL;
    int rc = rz_engine_open(&f->e, f->dir, &f->opts);
    if (rc != RZ_OK)
        fprintf(stderr, "open: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
}

uint64_t efx_node_add(efx *f, const char *caps, uint64_t now)
{
    uint64_t id = 0;
    assert_int_equal(rz_engine_node_register(f->e, caps, strlen(caps), now, &id),
                     RZ_OK);
    if (f->n_nodes < sizeof f->node / sizeof f->node[0])
        f->node[f->n_nodes++] = id;
    return id;
}

uint64_t efx_deploy(efx *f, const char *text, const char *inputs, uint64_t now)
{
    uint64_t d = 0;
    rz_diags *diags = NULL;
    assert_int_equal(rz_diags_new(&diags), RZ_OK);
    int rc = rz_engine_deploy(f->e, text, strlen(text), f->client, inputs, now,
                              &d, diags);
    if (rc != RZ_OK) {
        char *t = NULL;
        (void)!rz_diags_to_text(diags, &t);   /* diagnostics of a failure */
        fprintf(stderr, "deploy: %s %s\n", rz_error_last()->message, t ? t : "");
        rz_free(t);
    }
    rz_diags_free(diags);
    assert_int_equal(rc, RZ_OK);
    return d;
}

cJSON *efx_status(efx *f, uint64_t dep)
{
    char *json = NULL;
    assert_int_equal(rz_engine_deployment_status(f->e, dep, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    rz_free(json);
    assert_non_null(doc);
    return doc;
}

const char *efx_step_status(const cJSON *doc, const char *step)
{
    const cJSON *s = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "steps"), step);
    return cJSON_GetStringValue(cJSON_GetObjectItem(s, "status"));
}

pid_t efx_fork(efx *f)
{
    rz_engine_close(f->e);
    f->e = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        efx_reopen(f);
    return pid;
}

void efx_wait_signaled(pid_t pid, int sig)
{
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    if (sig)
        assert_int_equal(WTERMSIG(st), sig);
}

void efx_check(efx *f)
{
    int rc = rz_engine_check(f->e);
    if (rc != RZ_OK)
        fprintf(stderr, "check: %s\n", rz_error_last()->message);
    assert_int_equal(rc, RZ_OK);
}

uint64_t efx_available(efx *f, rz_ledger_id id)
{
    rz_ledger_account a;
    assert_int_equal(rz_ledger_balance(rz_engine_ledger(f->e), id, &a), RZ_OK);
    return rz_ledger_available(&a);
}

void efx_free(efx *f)
{
    if (!f)
        return;
    rz_engine_close(f->e);
    rz_registry_free(f->reg);
    assert_int_equal(tmp_dir_remove(f->dir), 0);
    free(f);
}

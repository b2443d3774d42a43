/* Credential vault: round trips, wrong passwords, every byte flip and every
 * truncation of a file, moved and retyped entries, KDF caps, password
 * change, crashes in the middle of a write, sealing to a node, and the
 * resolution of a flow's credential references, and concurrent writers
 * (processes saving at once lose no entry). Every vault here uses a
 * tiny custom KDF cost (1 pass, 8 KiB) so hundreds of unlocks take
 * milliseconds; the cost levels themselves are measured in bench/vault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "flow/model.h"
#include "rhizos/rhizos.h"
#include "rhizos/vault.h"
#include "vault/vault_impl.h"
#include "helpers.h"

#define PW "correct horse battery staple"
#define SECRET1 "sk-live-7f3a9c1e0b2d4f6a8c0e1f2a3b4c5d6e"
#define SECRET2 "xoxb-1234567890-abcdefghijklmnop"

typedef struct fx {
    char dir[64];
    char path[128];
} fx;

static rz_vault_opts tiny(void)
{
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.kdf = RZ_VAULT_KDF_CUSTOM;
    o.opslimit = 1;
    o.memlimit = 8192;
    return o;
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (!tmp_dir_make(f->dir, sizeof f->dir, "vault"))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/vault", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    int rc = tmp_dir_remove(f->dir);
    free(f);
    return rc == 0 ? 0 : -1;
}

static void spit(const char *path, const unsigned char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

static rz_vault *make_vault(const char *path, int entries)
{
    rz_vault_opts o = tiny();
    rz_vault *v;
    assert_int_equal(rz_vault_create(&v, path, PW, strlen(PW), &o), RZ_OK);
    if (entries > 0)
        assert_int_equal(rz_vault_add(v, "binance", "exchange_api", "{\"exchange\":\"binance\"}",
                                      SECRET1, strlen(SECRET1), NULL), RZ_OK);
    if (entries > 1)
        assert_int_equal(rz_vault_add(v, "slack-bot", "my.custom-type", NULL,
                                      SECRET2, strlen(SECRET2), NULL), RZ_OK);
    assert_int_equal(rz_vault_save(v), RZ_OK);
    return v;
}

static rz_vault *reopen(const char *path, const char *pw)
{
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, path, NULL), RZ_OK);
    assert_int_equal(rz_vault_unlock(v, pw, strlen(pw)), RZ_OK);
    return v;
}

static void assert_value(const rz_vault *v, const char *key, const char *want)
{
    size_t i = rz_vault_find(v, key);
    assert_int_not_equal(i, (size_t)-1);
    rz_secret *s;
    assert_int_equal(rz_vault_reveal(v, i, &s), RZ_OK);
    assert_int_equal(rz_secret_len(s), strlen(want));
    assert_memory_equal(rz_secret_data(s), want, strlen(want));
    assert_int_equal(rz_secret_data(s)[strlen(want)], 0);
    rz_secret_free(s);
}

/* The last error must never carry a password or a secret value. */
static void assert_clean_error(void)
{
    const char *m = rz_error_last()->message;
    assert_null(strstr(m, PW));
    assert_null(strstr(m, SECRET1));
    assert_null(strstr(m, SECRET2));
    assert_null(strstr(m, "sk-live"));
}

/* ---- Round trips ----------------------------------------------------------- */

static void test_round_trip(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    char id[RZ_VAULT_ID_LEN + 1];
    assert_int_equal(rz_vault_add(v, "db", "database_url", "{}", "postgres://u:p@h/db", 19, id),
                     RZ_OK);
    assert_int_equal(strlen(id), RZ_VAULT_ID_LEN);
    assert_int_equal(rz_vault_save(v), RZ_OK);
    rz_vault_close(v);

    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    v = reopen(f->path, PW);
    assert_int_equal(rz_vault_count(v), 3);
    rz_vault_entry e;
    assert_int_equal(rz_vault_get(v, 0, &e), RZ_OK);
    assert_string_equal(e.name, "binance");
    assert_string_equal(e.type, "exchange_api");
    assert_string_equal(e.metadata, "{\"exchange\":\"binance\"}");
    assert_int_equal(e.value_len, strlen(SECRET1));
    assert_true(e.created_ms > 1600000000000ull && e.created_ms == e.updated_ms);
    assert_int_equal(rz_vault_get(v, 1, &e), RZ_OK);
    assert_string_equal(e.type, "my.custom-type");
    assert_string_equal(e.metadata, "{}");
    assert_int_equal(rz_vault_get(v, 3, &e), RZ_ENOENT);
    assert_value(v, "binance", SECRET1);
    assert_value(v, "slack-bot", SECRET2);
    assert_value(v, id, "postgres://u:p@h/db");
    assert_int_equal(rz_vault_find(v, id), 2);
    assert_int_equal(rz_vault_find(v, "nope"), (size_t)-1);

    /* The file holds no name, type, metadata or value in the clear. */
    size_t len;
    unsigned char *img = (unsigned char *)file_read(f->path, &len);
    const char *needles[] = { "binance", "exchange_api", "slack-bot", SECRET1, SECRET2,
                              "postgres" };
    for (size_t i = 0; i < sizeof needles / sizeof *needles; i++)
        assert_null(memmem(img, len, needles[i], strlen(needles[i])));
    free(img);
    rz_vault_close(v);
}

static void test_update_remove(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    rz_vault_entry before;
    assert_int_equal(rz_vault_get(v, 0, &before), RZ_OK);
    uint64_t created = before.created_ms;
    struct timespec ts = { 0, 3000000 };
    nanosleep(&ts, NULL);
    assert_int_equal(rz_vault_update(v, "binance", "{\"rotated\":true}", "new-key", 7), RZ_OK);
    assert_int_equal(rz_vault_remove(v, "slack-bot"), RZ_OK);
    assert_int_equal(rz_vault_remove(v, "slack-bot"), RZ_ENOENT);
    assert_int_equal(rz_vault_update(v, "ghost", NULL, "x", 1), RZ_ENOENT);
    assert_int_equal(rz_vault_save(v), RZ_OK);
    rz_vault_close(v);

    v = reopen(f->path, PW);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_entry e;
    assert_int_equal(rz_vault_get(v, 0, &e), RZ_OK);
    assert_string_equal(e.metadata, "{\"rotated\":true}");
    assert_int_equal(e.created_ms, created);
    assert_true(e.updated_ms > e.created_ms);
    assert_value(v, "binance", "new-key");
    rz_vault_close(v);
}

static void test_add_refuses_a_taken_name(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "binance", "llm_api", NULL, "x", 1, NULL), RZ_EEXISTS);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_add_refuses_bad_names(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "", "llm_api", NULL, "x", 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_add(v, "has space", "llm_api", NULL, "x", 1, NULL), RZ_EINVAL);
    assert_clean_error();
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_add_name_length_limit(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    char longname[RZ_VAULT_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(rz_vault_add(v, longname, "llm_api", NULL, "x", 1, NULL), RZ_EINVAL);
    longname[RZ_VAULT_NAME_MAX] = '\0';
    assert_int_equal(rz_vault_add(v, longname, "llm_api", NULL, "x", 1, NULL), RZ_OK);
    rz_vault_close(v);
}

static void test_add_refuses_bad_types(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "t", "Upper", NULL, "x", 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_add(v, "t", "", NULL, "x", 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_add_refuses_bad_metadata(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "t", "llm_api", "[1]", "x", 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_add(v, "t", "llm_api", "{bad", "x", 1, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_add_refuses_an_empty_value(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "t", "llm_api", NULL, "", 0, NULL), RZ_EINVAL);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_add_refuses_an_oversized_value(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    char *big = calloc(1, RZ_VAULT_VALUE_MAX + 1);
    assert_int_equal(rz_vault_add(v, "t", "llm_api", NULL, big, RZ_VAULT_VALUE_MAX + 1, NULL),
                     RZ_ETOOBIG);
    free(big);
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

static void test_known_types(void **state)
{
    (void)state;
    assert_true(rz_vault_type_is_known("wallet_private_key"));
    assert_true(rz_vault_type_is_known("telegram_bot"));
    assert_false(rz_vault_type_is_known("custom_thing"));
    assert_false(rz_vault_type_is_known(NULL));
}

static void test_create_never_clobbers(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault_opts o = tiny();
    rz_vault *v = (rz_vault *)1;
    assert_int_equal(rz_vault_create(&v, f->path, PW, strlen(PW), &o), RZ_EEXISTS);
    assert_null(v);
}

static void test_open_missing_file_is_enoent(void **state)
{
    fx *f = *state;
    char other[160];
    snprintf(other, sizeof other, "%s/none", f->dir);
    rz_vault *v = (rz_vault *)1;
    assert_int_equal(rz_vault_open(&v, other, NULL), RZ_ENOENT);
    assert_null(v);
}

static void test_open_refuses_a_file_that_is_no_vault(void **state)
{
    fx *f = *state;
    char other[160];
    snprintf(other, sizeof other, "%s/none", f->dir);
    rz_vault *v;
    spit(other, (const unsigned char *)"hello", 5);
    assert_int_equal(rz_vault_open(&v, other, NULL), RZ_ESYNTAX);
    spit(other, (const unsigned char *)"", 0);
    assert_int_equal(rz_vault_open(&v, other, NULL), RZ_ESYNTAX);
}

static void test_open_refuses_a_folder(void **state)
{
    fx *f = *state;
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, f->dir, NULL), RZ_EIO);
}

static void test_open_refuses_unknown_opts_version(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault_opts o = tiny();
    o.version = 99;
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, f->path, &o), RZ_EINVAL);
}

static void test_create_refuses_a_tiny_memlimit(void **state)
{
    fx *f = *state;
    rz_vault_opts o = tiny();
    o.memlimit = 100;
    rz_vault *v;
    assert_int_equal(rz_vault_create(&v, f->path, PW, strlen(PW), &o), RZ_EINVAL);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_null_handles_are_fine(void **state)
{
    (void)state;
    rz_vault_close(NULL);
    rz_vault_lock(NULL);
    rz_secret_free(NULL);
    rz_vault_env_free(NULL);
}

/* ---- Passwords and locking ----------------------------------------------- */

static void test_wrong_password(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 2));
    size_t len0, len1;
    unsigned char *before = (unsigned char *)file_read(f->path, &len0);
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, f->path, NULL), RZ_OK);
    assert_false(rz_vault_is_unlocked(v));
    const char *bad[] = { "correct horse battery stapl", "", "Correct horse battery staple" };
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rz_vault_unlock(v, bad[i], strlen(bad[i])), RZ_EAUTH);
        assert_string_equal(rz_status_name(rz_error_last()->code), "RZ_EAUTH");
        assert_non_null(strstr(rz_error_last()->message, "password"));
        assert_clean_error();
        assert_false(rz_vault_is_unlocked(v));
        assert_int_equal(rz_vault_count(v), 0);
    }
    rz_secret *s;
    assert_int_equal(rz_vault_reveal(v, 0, &s), RZ_ESTATE);
    assert_null(s);
    assert_int_equal(rz_vault_save(v), RZ_ESTATE);
    rz_vault_close(v);
    unsigned char *after = (unsigned char *)file_read(f->path, &len1);
    assert_int_equal(len0, len1);
    assert_memory_equal(before, after, len0);
    free(before);
    free(after);
}

static void test_lock_discards_unsaved_changes(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "unsaved", "llm_api", NULL, "u", 1, NULL), RZ_OK);
    rz_vault_lock(v);
    assert_false(rz_vault_is_unlocked(v));
    assert_int_equal(rz_vault_count(v), 0);
    assert_int_equal(rz_vault_find(v, "binance"), (size_t)-1);
    assert_int_equal(rz_vault_add(v, "x", "llm_api", NULL, "u", 1, NULL), RZ_ESTATE);
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_OK);
    assert_int_equal(rz_vault_count(v), 1);   /* unsaved change discarded */
    assert_value(v, "binance", SECRET1);
    rz_vault_close(v);
}

static void test_unlock_again_checks_the_password_and_keeps_state(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    assert_int_equal(rz_vault_add(v, "unsaved", "llm_api", NULL, "u", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_unlock(v, "nope", 4), RZ_EAUTH);
    assert_true(rz_vault_is_unlocked(v));
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_OK);
    assert_int_equal(rz_vault_count(v), 2);
    rz_vault_close(v);
}

static void test_kdf_cost_and_path(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    uint64_t ops, mem;
    rz_vault_kdf_cost(v, &ops, &mem);
    assert_int_equal(ops, 1);
    assert_int_equal(mem, 8192);
    assert_string_equal(rz_vault_path(v), f->path);
    rz_vault_close(v);
}

/* A locked handle reads the file again: another writer's change (here a
 * whole other vault under another password) is what unlock sees. */
static void test_unlock_reads_a_file_replaced_while_locked(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    rz_vault_lock(v);
    char other[160];
    snprintf(other, sizeof other, "%s/other", f->dir);
    rz_vault_opts o = tiny();
    rz_vault *w;
    assert_int_equal(rz_vault_create(&w, other, "pw2", 3, &o), RZ_OK);
    assert_int_equal(rz_vault_add(w, "fresh", "llm_api", NULL, "f", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(w), RZ_OK);
    rz_vault_close(w);
    assert_int_equal(rename(other, f->path), 0);
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_EAUTH);
    assert_int_equal(rz_vault_unlock(v, "pw2", 3), RZ_OK);
    assert_int_equal(rz_vault_count(v), 1);
    assert_value(v, "fresh", "f");
    rz_vault_close(v);
}

/* A file gone bad while locked is refused, and the handle stays usable
 * for nothing but close. */
static void test_unlock_refuses_a_file_gone_bad_while_locked(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    rz_vault_lock(v);
    spit(f->path, (const unsigned char *)"garbage", 7);
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_ESYNTAX);
    assert_false(rz_vault_is_unlocked(v));
    rz_vault_close(v);
}

static void test_passwd_new_salt_same_vault_id(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    size_t len0;
    unsigned char *before = (unsigned char *)file_read(f->path, &len0);
    rz_vault_opts o = tiny();
    o.opslimit = 2;
    assert_int_equal(rz_vault_passwd(v, "new pw", 6, &o), RZ_OK);
    assert_value(v, "binance", SECRET1);   /* still usable in memory */
    rz_vault_close(v);
    size_t len1;
    unsigned char *after = (unsigned char *)file_read(f->path, &len1);
    assert_memory_not_equal(before + 28, after + 28, 16);   /* salt */
    assert_memory_equal(before + 44, after + 44, 16);   /* vault id kept */
    free(before);
    free(after);
}

static void test_passwd_new_password_opens_old_does_not(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    rz_vault_opts o = tiny();
    o.opslimit = 2;
    assert_int_equal(rz_vault_passwd(v, "new pw", 6, &o), RZ_OK);
    rz_vault_close(v);
    assert_int_equal(rz_vault_open(&v, f->path, NULL), RZ_OK);
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_EAUTH);
    assert_int_equal(rz_vault_unlock(v, "new pw", 6), RZ_OK);
    uint64_t ops;
    rz_vault_kdf_cost(v, &ops, NULL);
    assert_int_equal(ops, 2);
    assert_int_equal(rz_vault_count(v), 2);
    assert_value(v, "binance", SECRET1);
    assert_value(v, "slack-bot", SECRET2);
    rz_vault_close(v);
}

static void test_passwd_null_opts_keep_the_cost(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    rz_vault_opts o = tiny();
    o.opslimit = 2;
    assert_int_equal(rz_vault_passwd(v, "new pw", 6, &o), RZ_OK);
    assert_int_equal(rz_vault_passwd(v, PW, strlen(PW), NULL), RZ_OK);
    rz_vault_close(v);
    v = reopen(f->path, PW);
    uint64_t ops;
    rz_vault_kdf_cost(v, &ops, NULL);
    assert_int_equal(ops, 2);
    assert_value(v, "slack-bot", SECRET2);
    rz_vault_close(v);
}

static void test_passwd_needs_an_unlocked_vault(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 1);
    rz_vault_lock(v);
    assert_int_equal(rz_vault_passwd(v, "x", 1, NULL), RZ_ESTATE);
    rz_vault_close(v);
}

/* ---- Tampering --------------------------------------------------------------- */

/* Opening then unlocking the image must fail; returns the status. */
static int try_image(const unsigned char *img, size_t len)
{
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.max_memlimit = 1024 * 1024;   /* keeps flipped memlimits cheap */
    rz_vault *v;
    int rc = rz_vault_open_mem(&v, img, len, &o);
    if (rc == RZ_OK) {
        rc = rz_vault_unlock(v, PW, strlen(PW));
        rz_vault_close(v);
    } else
        assert_null(v);
    return rc;
}

static void test_every_flip_and_truncation(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    size_t len;
    unsigned char *img = (unsigned char *)file_read(f->path, &len);
    assert_int_equal(try_image(img, len), RZ_OK);
    static const unsigned char flips[] = { 0x01, 0x80, 0xff };
    size_t detected = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            img[i] ^= flips[k];
            int rc = try_image(img, len);
            img[i] ^= flips[k];
            if (rc == RZ_OK)
                fail_msg("flip 0x%02x at byte %zu went undetected", flips[k], i);
            assert_true(rc == RZ_EAUTH || rc == RZ_ESYNTAX || rc == RZ_EUNSUPPORTED ||
                        rc == RZ_ETOOBIG);
            detected++;
        }
    }
    assert_int_equal(detected, 3 * len);
    for (size_t n = 0; n < len; n++)
        if (try_image(img, n) == RZ_OK)
            fail_msg("truncation to %zu bytes went undetected", n);
    /* Appending is caught too. */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, img, len);
    longer[len] = 0;
    assert_int_equal(try_image(longer, len + 1), RZ_EAUTH);
    free(longer);

    /* A flipped file on disk: the same answer through rz_vault_open. */
    img[len / 2] ^= 0x10;
    spit(f->path, img, len);
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, f->path, NULL), RZ_OK);
    assert_int_equal(rz_vault_unlock(v, PW, strlen(PW)), RZ_EAUTH);
    rz_vault_close(v);
    free(img);
}

static void test_entry_moved_or_retyped(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    rz__ventry *a = &v->entries[0], *b = &v->entries[1];
    rz_secret *s;

    /* b's ciphertext placed under a's id (same type as a via retype). */
    unsigned char *ct = malloc(b->ct_len);
    memcpy(ct, b->ct, b->ct_len);
    free(a->ct);
    a->ct = ct;
    a->ct_len = b->ct_len;
    memcpy(a->nonce, b->nonce, sizeof a->nonce);
    assert_int_equal(rz_vault_reveal(v, 0, &s), RZ_EAUTH);
    assert_clean_error();
    char *type = a->type;
    a->type = strdup(b->type);
    free(type);
    assert_int_equal(rz_vault_reveal(v, 0, &s), RZ_EAUTH);   /* right type, wrong id */
    rz_vault_close(v);

    /* Retype an entry in place, and save: the value no longer verifies. */
    remove(f->path);
    v = make_vault(f->path, 2);
    free(v->entries[1].type);
    v->entries[1].type = strdup("exchange_api");
    assert_int_equal(rz_vault_save(v), RZ_OK);
    rz_vault_close(v);
    v = reopen(f->path, PW);
    assert_int_equal(rz_vault_reveal(v, 1, &s), RZ_EAUTH);
    assert_null(s);
    assert_value(v, "binance", SECRET1);
    /* A new id for the same ciphertext. */
    v->entries[0].rid[0] ^= 1;
    assert_int_equal(rz_vault_reveal(v, 0, &s), RZ_EAUTH);
    rz_vault_close(v);

    /* An entry copied into another vault (other vault id and key). */
    char other[160];
    snprintf(other, sizeof other, "%s/other", f->dir);
    rz_vault *w = make_vault(other, 1);
    remove(f->path);
    v = make_vault(f->path, 1);
    memcpy(v->entries[0].rid, w->entries[0].rid, RZ__VAULT_RAWID_LEN);
    memcpy(v->entries[0].nonce, w->entries[0].nonce, RZ__VAULT_NONCE_LEN);
    free(v->entries[0].ct);
    v->entries[0].ct = malloc(w->entries[0].ct_len);
    memcpy(v->entries[0].ct, w->entries[0].ct, w->entries[0].ct_len);
    assert_int_equal(rz_vault_reveal(v, 0, &s), RZ_EAUTH);
    rz_vault_close(v);
    rz_vault_close(w);
}

static void put64(unsigned char *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

/* The vault file at f->path (one entry) as bytes, for editing its header. */
static unsigned char *vault_image(const fx *f, size_t *len)
{
    rz_vault_close(make_vault(f->path, 1));
    return (unsigned char *)file_read(f->path, len);
}

static void test_open_refuses_a_huge_memlimit(void **state)
{
    size_t len;
    unsigned char *img = vault_image(*state, &len);
    rz_vault *v;
    put64(img + 20, 64ull << 30);   /* a hostile file asks for 64 GiB */
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_ETOOBIG);
    assert_null(v);
    assert_non_null(strstr(rz_error_last()->message, "65536 MiB"));
    put64(img + 20, (1ull << 30) + 1024);   /* just above 1 GiB */
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_ETOOBIG);
    free(img);
}

static void test_open_refuses_too_many_passes(void **state)
{
    size_t len;
    unsigned char *img = vault_image(*state, &len);
    rz_vault *v;
    put64(img + 12, 5);   /* above SENSITIVE's passes */
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_ETOOBIG);
    put64(img + 12, UINT64_MAX);
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_ETOOBIG);
    free(img);
}

static void test_open_refuses_zero_passes(void **state)
{
    size_t len;
    unsigned char *img = vault_image(*state, &len);
    rz_vault *v;
    put64(img + 12, 0);
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_ESYNTAX);
    free(img);
}

static void test_open_accepts_a_cost_within_the_caps(void **state)
{
    size_t len;
    unsigned char *img = vault_image(*state, &len);
    rz_vault *v;
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_OK);
    rz_vault_close(v);
    free(img);
}

static void test_open_caps_lowered_by_the_caller(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    o.max_memlimit = 4096;
    rz_vault *v;
    assert_int_equal(rz_vault_open(&v, f->path, &o), RZ_ETOOBIG);
}

/* Format version and KDF id are checked before any work. */
static void test_open_refuses_a_newer_format_or_kdf(void **state)
{
    size_t len;
    unsigned char *img = vault_image(*state, &len);
    rz_vault *v;
    img[8] = 2;
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_EUNSUPPORTED);
    img[8] = 1;
    img[10] = 2;
    assert_int_equal(rz_vault_open_mem(&v, img, len, NULL), RZ_EUNSUPPORTED);
    free(img);
}

/* Options cannot create what a reader would refuse. */
static void test_create_refuses_costs_a_reader_would_refuse(void **state)
{
    fx *f = *state;
    rz_vault *v;
    rz_vault_opts o = tiny();
    o.memlimit = (uint64_t)RZ_VAULT_MAX_MEMLIMIT + 1;
    assert_int_equal(rz_vault_create(&v, f->path, PW, strlen(PW), &o), RZ_EINVAL);
    o = tiny();
    o.opslimit = RZ_VAULT_MAX_OPSLIMIT + 1;
    assert_int_equal(rz_vault_create(&v, f->path, PW, strlen(PW), &o), RZ_EINVAL);
    o.kdf = (rz_vault_kdf)42;
    assert_int_equal(rz_vault_create(&v, f->path, PW, strlen(PW), &o), RZ_EINVAL);
    assert_int_equal(access(f->path, F_OK), -1);
}

static void test_body_decoder_hostile(void **state)
{
    (void)state;
    rz__ventry *e;
    size_t n;
    unsigned char buf[512];
    memset(buf, 0xff, sizeof buf);
    assert_int_equal(rz__vault_body_decode(buf, sizeof buf, &e, &n), RZ_ESYNTAX);
    assert_null(e);
    memset(buf, 0, sizeof buf);
    assert_int_equal(rz__vault_body_decode(buf, 3, &e, &n), RZ_ESYNTAX);
    assert_int_equal(rz__vault_body_decode(buf, 4, &e, &n), RZ_OK);   /* empty table */
    assert_int_equal(n, 0);
    rz__vault_entries_free(e, n);
    assert_int_equal(rz__vault_body_decode(buf, 5, &e, &n), RZ_ESYNTAX);   /* trailing */
    /* One entry with a name length running past the end. */
    buf[0] = 1;
    buf[4 + 16] = 200;
    assert_int_equal(rz__vault_body_decode(buf, 120, &e, &n), RZ_ESYNTAX);
    /* Random garbage never crashes and never succeeds with entries. */
    srand(7);
    for (int round = 0; round < 2000; round++) {
        size_t len = (size_t)rand() % sizeof buf;
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)rand();
        buf[0] = (unsigned char)(rand() % 3);
        buf[1] = buf[2] = buf[3] = 0;
        if (rz__vault_body_decode(buf, len, &e, &n) == RZ_OK)
            rz__vault_entries_free(e, n);
    }
}

/* A valid body whose two entries share a name is refused. */
static void test_body_duplicates(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    free(v->entries[1].name);
    v->entries[1].name = strdup("binance");
    size_t sz = rz__vault_body_size(v->entries, v->n);
    unsigned char *buf = malloc(sz);
    rz__vault_body_encode(v->entries, v->n, buf);
    rz__ventry *e;
    size_t n;
    assert_int_equal(rz__vault_body_decode(buf, sz, &e, &n), RZ_ESYNTAX);
    free(v->entries[1].name);
    v->entries[1].name = strdup("other");
    sz = rz__vault_body_size(v->entries, v->n);
    buf = realloc(buf, sz);
    rz__vault_body_encode(v->entries, v->n, buf);
    assert_int_equal(rz__vault_body_decode(buf, sz, &e, &n), RZ_OK);
    assert_int_equal(n, 2);
    assert_string_equal(e[1].name, "other");
    assert_string_equal(e[0].id, v->entries[0].id);
    rz__vault_entries_free(e, n);
    free(buf);
    rz_vault_close(v);
}

/* ---- Crashes while writing ------------------------------------------------ */

static int crash_at;

static void crash_hook(int step)
{
    if (step == crash_at)
        raise(SIGKILL);
}

/* Count entries e0..e(k-1); every one must be there, in order. */
static size_t consistent_count(const char *path)
{
    rz_vault *v = reopen(path, PW);
    size_t n = rz_vault_count(v);
    for (size_t i = 0; i < n; i++) {
        rz_vault_entry e;
        char name[32];
        snprintf(name, sizeof name, "e%zu", i);
        assert_int_equal(rz_vault_get(v, i, &e), RZ_OK);
        assert_string_equal(e.name, name);
        assert_value(v, name, name);
    }
    rz_vault_close(v);
    return n;
}

static void add_and_save(const char *path, size_t i)
{
    rz_vault *v = reopen(path, PW);
    char name[32];
    snprintf(name, sizeof name, "e%zu", i);
    if (rz_vault_add(v, name, "llm_api", NULL, name, strlen(name), NULL) != RZ_OK ||
        rz_vault_save(v) != RZ_OK)
        _exit(3);
    rz_vault_close(v);
}

static void test_crash_at_each_step(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 0));
    for (int step = 1; step <= 4; step++) {
        size_t before = consistent_count(f->path);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            crash_at = step;
            rz__vault_write_hook = crash_hook;
            add_and_save(f->path, before);
            _exit(0);
        }
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        size_t after = consistent_count(f->path);
        /* Before the rename the old vault stands; after it, the new one. */
        assert_int_equal(after, step < 4 ? before : before + 1);
    }
}

static void test_crash_random_kills(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 0));
    srand((unsigned)time(NULL));
    size_t last = 0;
    for (int round = 0; round < 12; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            for (size_t i = last;; i++)
                add_and_save(f->path, i);
        }
        struct timespec ts = { 0, (long)(rand() % 20000) * 1000L };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int st;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFSIGNALED(st));
        size_t n = consistent_count(f->path);
        assert_true(n >= last);
        last = n;
    }
}

/* ---- Sealing to a node -------------------------------------------------- */

#define SEAL_NOW 1700000000000ull

typedef struct sealed {
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    unsigned char *box;
    size_t len;
    char id[RZ_VAULT_ID_LEN + 1];
} sealed;

/* Entry 0 of a two-entry vault sealed to a fresh node key for "job-42",
 * expiring a minute after SEAL_NOW. */
static void seal_one(const fx *f, sealed *b)
{
    assert_int_equal(rz_vault_node_keypair(b->pk, b->sk), RZ_OK);
    rz_vault *v = make_vault(f->path, 2);
    assert_int_equal(rz_vault_seal(v, 0, "job-42", SEAL_NOW + 60000, b->pk, &b->box,
                                   &b->len), RZ_OK);
    memcpy(b->id, v->entries[0].id, sizeof b->id);
    rz_vault_close(v);
}

static int unseal(const sealed *b, size_t len, const char *job, uint64_t now)
{
    rz_secret *s = NULL;
    int rc = rz_vault_unseal(&s, NULL, b->box, len, b->pk, b->sk, job, now);
    if (rc != RZ_OK)
        assert_null(s);
    rz_secret_free(s);
    return rc;
}

static void test_node_keypairs_differ(void **state)
{
    (void)state;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    unsigned char pk2[RZ_VAULT_NODE_PK_BYTES], sk2[RZ_VAULT_NODE_SK_BYTES];
    assert_int_equal(rz_vault_node_keypair(pk, sk), RZ_OK);
    assert_int_equal(rz_vault_node_keypair(pk2, sk2), RZ_OK);
    assert_memory_not_equal(pk, pk2, sizeof pk);
}

static void test_seal_round_trip(void **state)
{
    sealed b;
    seal_one(*state, &b);
    assert_null(memmem(b.box, b.len, SECRET1, strlen(SECRET1)));
    assert_null(memmem(b.box, b.len, "job-42", 6));
    rz_secret *s;
    char *cred;
    assert_int_equal(rz_vault_unseal(&s, &cred, b.box, b.len, b.pk, b.sk, "job-42",
                                     SEAL_NOW), RZ_OK);
    assert_int_equal(rz_secret_len(s), strlen(SECRET1));
    assert_memory_equal(rz_secret_data(s), SECRET1, strlen(SECRET1));
    assert_string_equal(cred, b.id);
    rz_secret_free(s);
    rz_free(cred);
    rz_free(b.box);
}

static void test_unseal_refuses_another_job(void **state)
{
    sealed b;
    seal_one(*state, &b);
    rz_secret *s;
    char *cred;
    assert_int_equal(rz_vault_unseal(&s, &cred, b.box, b.len, b.pk, b.sk, "job-43",
                                     SEAL_NOW), RZ_EAUTH);
    assert_null(s);
    assert_null(cred);
    assert_clean_error();
    assert_int_equal(unseal(&b, b.len, "job-4", SEAL_NOW), RZ_EAUTH);
    rz_free(b.box);
}

static void test_unseal_refuses_an_expired_box(void **state)
{
    sealed b;
    seal_one(*state, &b);
    assert_int_equal(unseal(&b, b.len, "job-42", SEAL_NOW + 60000), RZ_EEXPIRED);
    assert_clean_error();
    /* now_ms = 0 reads the clock: a box that expired in 2023 is refused. */
    assert_int_equal(unseal(&b, b.len, "job-42", 0), RZ_EEXPIRED);
    rz_free(b.box);
}

static void test_unseal_refuses_another_nodes_key(void **state)
{
    sealed b;
    seal_one(*state, &b);
    assert_int_equal(rz_vault_node_keypair(b.pk, b.sk), RZ_OK);
    assert_int_equal(unseal(&b, b.len, "job-42", SEAL_NOW), RZ_EAUTH);
    rz_free(b.box);
}

static void test_unseal_refuses_altered_bytes(void **state)
{
    sealed b;
    seal_one(*state, &b);
    for (size_t i = 0; i < b.len; i += 7) {
        b.box[i] ^= 0x20;
        assert_int_equal(unseal(&b, b.len, "job-42", SEAL_NOW), RZ_EAUTH);
        b.box[i] ^= 0x20;
    }
    rz_free(b.box);
}

static void test_unseal_refuses_bad_lengths_and_job(void **state)
{
    sealed b;
    seal_one(*state, &b);
    assert_int_not_equal(unseal(&b, b.len - 1, "job-42", SEAL_NOW), RZ_OK);
    assert_int_equal(unseal(&b, 10, "job-42", SEAL_NOW), RZ_ESYNTAX);
    assert_int_equal(unseal(&b, b.len, "", SEAL_NOW), RZ_EINVAL);
    rz_free(b.box);
}

static void test_seal_value_round_trip(void **state)
{
    (void)state;
    sealed b;
    assert_int_equal(rz_vault_node_keypair(b.pk, b.sk), RZ_OK);
    assert_int_equal(rz_vault_seal_value(&b.box, &b.len, "v", 1, "j", "c", UINT64_MAX,
                                         b.pk), RZ_OK);
    assert_int_equal(b.len, 1 + 1 + 1 + 20 + RZ_VAULT_SEAL_OVERHEAD);
    rz_secret *s;
    assert_int_equal(rz_vault_unseal(&s, NULL, b.box, b.len, b.pk, b.sk, "j", 0), RZ_OK);
    assert_int_equal(rz_secret_data(s)[0], 'v');
    rz_secret_free(s);
    rz_free(b.box);
}

static void test_seal_value_refuses_bad_arguments(void **state)
{
    (void)state;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    assert_int_equal(rz_vault_node_keypair(pk, sk), RZ_OK);
    unsigned char *box;
    size_t len;
    assert_int_equal(rz_vault_seal_value(&box, &len, "", 0, "j", "c", 1, pk), RZ_EINVAL);
    assert_int_equal(rz_vault_seal_value(&box, &len, "v", 1, "", "c", 1, pk), RZ_EINVAL);
    assert_int_equal(rz_vault_seal_value(&box, &len, "v", 1, "j", NULL, 1, pk), RZ_EINVAL);
    assert_null(box);
}

static void test_seal_unknown_entry_is_enoent(void **state)
{
    fx *f = *state;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    assert_int_equal(rz_vault_node_keypair(pk, sk), RZ_OK);
    rz_vault *v = make_vault(f->path, 2);
    unsigned char *box;
    size_t len;
    assert_int_equal(rz_vault_seal(v, 9, "j", 1, pk, &box, &len), RZ_ENOENT);
    rz_vault_close(v);
}

/* ---- Flows ---------------------------------------------------------------- */

static const char *flow_yaml =
    "flux: 1\nname: trade\nsteps:\n"
    "  fetch:\n    module: m\n    credentials:\n"
    "      api: {credentialId: binance, type: exchange_api}\n"
    "      bot-token: {credentialId: slack-bot, type: my.custom-type}\n"
    "  plain:\n    module: m\n"
    "  missing:\n    module: m\n    credentials:\n"
    "      api: {credentialId: kraken, type: exchange_api}\n"
    "  mistyped:\n    module: m\n    credentials:\n"
    "      key: {credentialId: binance, type: llm_api}\n"
    "  clash:\n    module: m\n    credentials:\n"
    "      api-key: {credentialId: binance, type: exchange_api}\n"
    "      api_key: {credentialId: binance, type: exchange_api}\n"
    "  byid:\n    module: m\n    credentials:\n"
    "      db: {credentialId: ID, type: database_url}\n";

static rz_flow *load_flow(const char *db_id)
{
    char *text = strdup(flow_yaml);
    char *at = strstr(text, "ID,");
    size_t need = strlen(text) + RZ_VAULT_ID_LEN + 1;
    char *out = malloc(need);
    snprintf(out, need, "%.*s%s%s", (int)(at - text), text, db_id, at + 2);
    rz_flow *fl;
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    int rc = rz_flow_parse(&fl, out, strlen(out), RZ_FORMAT_YAML, "trade.yaml", d);
    if (rc != RZ_OK) {
        char *t = NULL;
        (void)!rz_diags_to_text(d, &t);   /* diagnostics of a failure */
        fail_msg("flow did not parse: %s", t ? t : "?");
    }
    rz_diags_free(d);
    free(out);
    free(text);
    return fl;
}

static void test_resolve_step(void **state)
{
    fx *f = *state;
    rz_vault *v = make_vault(f->path, 2);
    char id[RZ_VAULT_ID_LEN + 1];
    assert_int_equal(rz_vault_add(v, "db", "database_url", NULL, "postgres://x", 12, id), RZ_OK);
    rz_flow *fl = load_flow(id);
    char **env;

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "fetch"), &env), RZ_OK);
    assert_string_equal(env[0], "RZ_CRED_API=" SECRET1);
    assert_string_equal(env[1], "RZ_CRED_BOT_TOKEN=" SECRET2);
    assert_null(env[2]);
    rz_vault_env_free(env);

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "plain"), &env), RZ_OK);
    assert_null(env[0]);
    rz_vault_env_free(env);

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "byid"), &env), RZ_OK);
    assert_string_equal(env[0], "RZ_CRED_DB=postgres://x");
    rz_vault_env_free(env);

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "missing"), &env),
                     RZ_ENOENT);
    assert_null(env);
    const char *m = rz_error_last()->message;
    assert_non_null(strstr(m, "'missing'"));
    assert_non_null(strstr(m, "'api'"));
    assert_non_null(strstr(m, "kraken"));
    assert_clean_error();

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "mistyped"), &env),
                     RZ_ETYPE);
    m = rz_error_last()->message;
    assert_non_null(strstr(m, "'mistyped'"));
    assert_non_null(strstr(m, "'key'"));
    assert_non_null(strstr(m, "exchange_api"));
    assert_clean_error();

    assert_int_equal(rz_vault_resolve_step(v, fl, rz_flow_step_find(fl, "clash"), &env),
                     RZ_EDUPLICATE);
    assert_clean_error();
    assert_int_equal(rz_vault_resolve_step(v, fl, 99, &env), RZ_EINVAL);

    /* A malformed reference (what a loader error leaves behind). */
    size_t fi = rz_flow_step_find(fl, "fetch");
    char *saved = fl->steps[fi].creds[0].credential_id;
    fl->steps[fi].creds[0].credential_id = NULL;
    assert_int_equal(rz_vault_resolve_step(v, fl, fi, &env), RZ_ECREDENTIAL);
    fl->steps[fi].creds[0].credential_id = saved;

    /* A value with a NUL byte cannot travel in the environment. */
    assert_int_equal(rz_vault_update(v, "binance", NULL, "ab\0cd", 5), RZ_OK);
    assert_int_equal(rz_vault_resolve_step(v, fl, fi, &env), RZ_EINVAL);
    assert_null(strstr(rz_error_last()->message, "ab"));

    /* A retyped entry is caught at decryption, named by step and field. */
    assert_int_equal(rz_vault_update(v, "binance", NULL, SECRET1, strlen(SECRET1)), RZ_OK);
    free(v->entries[1].type);
    v->entries[1].type = strdup("my.custom-type");   /* unchanged: still fine */
    v->entries[1].rid[3] ^= 4;
    assert_int_equal(rz_vault_resolve_step(v, fl, fi, &env), RZ_EAUTH);
    assert_non_null(strstr(rz_error_last()->message, "'bot-token'"));
    assert_clean_error();

    rz_vault_lock(v);
    assert_int_equal(rz_vault_resolve_step(v, fl, fi, &env), RZ_ESTATE);
    rz_flow_free(fl);
    rz_vault_close(v);
}

/* ---- Sealing a flow's credentials to an orchestrator ---------------------- */

static rz_flow *parse_yaml(const char *text)
{
    rz_flow *fl;
    assert_int_equal(rz_flow_parse(&fl, text, strlen(text), RZ_FORMAT_YAML, "f.yaml",
                                   NULL), RZ_OK);
    return fl;
}

/* The sealed value of `id` in `doc`, opened as the orchestrator would. */
static void assert_sealed(const cJSON *doc, const char *id, const unsigned char *pk,
                          const unsigned char *sk, uint64_t now, const char *want,
                          const char *entry_id)
{
    const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, id));
    assert_non_null(b64);
    unsigned char box[512];
    size_t len = 0;
    assert_int_equal(sodium_base642bin(box, sizeof box, b64, strlen(b64), NULL, &len,
                                       NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    rz_secret *s;
    char *cred;
    assert_int_equal(rz_vault_unseal(&s, &cred, box, len, pk, sk,
                                     RZ_VAULT_ORCHESTRATOR_JOB, now), RZ_OK);
    assert_int_equal(rz_secret_len(s), strlen(want));
    assert_memory_equal(rz_secret_data(s), want, strlen(want));
    assert_string_equal(cred, entry_id);
    rz_secret_free(s);
    rz_free(cred);
}

/* Each distinct credentialId once, by name or by id, sealed for the
 * orchestrator's job id with a one-hour default expiry. */
static void test_seal_flow(void **state)
{
    fx *f = *state;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    assert_int_equal(rz_vault_node_keypair(pk, sk), RZ_OK);
    rz_vault *v = make_vault(f->path, 2);
    char id[RZ_VAULT_ID_LEN + 1], text[1024];
    assert_int_equal(rz_vault_add(v, "db", "database_url", NULL, "postgres://x", 12, id),
                     RZ_OK);
    snprintf(text, sizeof text, "flux: 1\nname: t\nsteps:\n"
             "  a:\n    module: m\n    credentials:\n"
             "      api: {credentialId: binance, type: exchange_api}\n"
             "      bot: {credentialId: slack-bot, type: my.custom-type}\n"
             "  b:\n    module: m\n    credentials:\n"
             "      key: {credentialId: binance, type: exchange_api}\n"
             "  c:\n    module: m\n    credentials:\n"
             "      db: {credentialId: %s, type: database_url}\n"
             "  d:\n    module: m\n", id);
    rz_flow *fl = parse_yaml(text);
    uint64_t now = rz__wall_ms();
    char *json = NULL;
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_OK);
    assert_null(strstr(json, SECRET1));
    cJSON *doc = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(doc), 3);
    assert_sealed(doc, "binance", pk, sk, now, SECRET1, v->entries[0].id);
    assert_sealed(doc, "slack-bot", pk, sk, now, SECRET2, v->entries[1].id);
    assert_sealed(doc, id, pk, sk, now, "postgres://x", id);
    /* Expired an hour later. */
    const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(doc, "binance"));
    unsigned char box[512];
    size_t len = 0;
    assert_int_equal(sodium_base642bin(box, sizeof box, b64, strlen(b64), NULL, &len,
                                       NULL, sodium_base64_VARIANT_ORIGINAL), 0);
    rz_secret *s;
    assert_int_equal(rz_vault_unseal(&s, NULL, box, len, pk, sk, RZ_VAULT_ORCHESTRATOR_JOB,
                                     now + RZ_VAULT_SEAL_TTL_MS + 60000), RZ_EEXPIRED);
    cJSON_Delete(doc);
    rz_free(json);
    rz_flow_free(fl);
    /* A flow without references: an empty object. */
    fl = parse_yaml("flux: 1\nname: t\nsteps:\n  d:\n    module: m\n");
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_OK);
    assert_string_equal(json, "{}");
    rz_free(json);
    rz_flow_free(fl);
    /* A webhook trigger's secret is sealed too (the orchestrator checks
     * signatures with it); one the vault lacks is named. */
    fl = parse_yaml("flux: 1\nname: t\ntriggers:\n"
                    "  - webhook: {name: gh, secret: {credentialId: slack-bot}}\n"
                    "steps:\n  d:\n    module: m\n");
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_OK);
    doc = cJSON_Parse(json);
    assert_int_equal(cJSON_GetArraySize(doc), 1);
    assert_sealed(doc, "slack-bot", pk, sk, now, SECRET2, v->entries[1].id);
    cJSON_Delete(doc);
    rz_free(json);
    rz_flow_free(fl);
    fl = parse_yaml("flux: 1\nname: t\ntriggers:\n"
                    "  - webhook: {name: gh, secret: {credentialId: nowhere}}\n"
                    "steps:\n  d:\n    module: m\n");
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_ENOENT);
    assert_non_null(strstr(rz_error_last()->message, "webhook names credential 'nowhere'"));
    rz_flow_free(fl);
    rz_vault_close(v);
}

/* A credential the vault lacks is named; a locked vault is refused. */
static void test_seal_flow_errors(void **state)
{
    fx *f = *state;
    unsigned char pk[RZ_VAULT_NODE_PK_BYTES], sk[RZ_VAULT_NODE_SK_BYTES];
    assert_int_equal(rz_vault_node_keypair(pk, sk), RZ_OK);
    rz_vault *v = make_vault(f->path, 2);
    rz_flow *fl = parse_yaml("flux: 1\nname: t\nsteps:\n"
                             "  a:\n    module: m\n    credentials:\n"
                             "      api: {credentialId: binance, type: exchange_api}\n"
                             "  b:\n    module: m\n    credentials:\n"
                             "      api: {credentialId: kraken, type: exchange_api}\n");
    char *json = (char *)"untouched";
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_ENOENT);
    assert_null(json);
    assert_non_null(strstr(rz_error_last()->message, "'kraken'"));
    assert_clean_error();
    /* An entry of another type than the reference asks for: refused as a
     * local run refuses it, located at the reference, nothing sealed. */
    rz_flow *wrong = parse_yaml("flux: 1\nname: t\nsteps:\n"
                                "  a:\n    module: m\n    credentials:\n"
                                "      llm: {credentialId: slack-bot, type: llm_api}\n");
    json = (char *)"untouched";
    assert_int_equal(rz_vault_seal_flow(&json, v, wrong, pk, 0), RZ_ETYPE);
    assert_null(json);
    assert_string_equal(rz_error_last()->message, "step 'a' credential 'llm': vault "
                        "entry 'slack-bot' has type 'my.custom-type', the reference "
                        "asks for 'llm_api'");
    assert_int_equal(rz_error_last()->line, 7);
    assert_int_equal(rz_error_last()->column, 7);   /* the reference's key */
    assert_string_equal(rz_error_last()->pointer, "/steps/a/credentials/llm");
    rz_flow_free(wrong);
    rz_vault_lock(v);
    assert_int_equal(rz_vault_seal_flow(&json, v, fl, pk, 0), RZ_ESTATE);
    assert_int_equal(rz_vault_seal_flow(&json, NULL, fl, pk, 0), RZ_EINVAL);
    assert_null(json);
    rz_flow_free(fl);
    rz_vault_close(v);
}

/* ---- Concurrent writers ------------------------------------------------ */

#define WRITERS 20

/* A child: read the vault, add one entry, wait until every writer has
 * read it (the pipe closes), then save. Exit status 0 on success. */
static void writer_child(const char *path, int i, int gate)
{
    char name[32], value[32];
    snprintf(name, sizeof name, "w%02d", i);
    snprintf(value, sizeof value, "value-%02d", i);
    rz_vault *v = NULL;
    char c;
    int ok = rz_vault_open(&v, path, NULL) == RZ_OK &&
             rz_vault_unlock(v, PW, strlen(PW)) == RZ_OK &&
             rz_vault_add(v, name, "llm_api", NULL, value, strlen(value), NULL) == RZ_OK &&
             read(gate, &c, 1) == 0 && rz_vault_save(v) == RZ_OK;
    rz_vault_close(v);
    _exit(ok ? 0 : 1);
}

static void test_parallel_writers_lose_nothing(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    pid_t pids[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(gate[1]);
            writer_child(f->path, i, gate[0]);
        }
    }
    close(gate[0]);
    close(gate[1]);   /* every child saves at once */
    for (int i = 0; i < WRITERS; i++) {
        int st = 0;
        assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    rz_vault *v = reopen(f->path, PW);
    assert_int_equal(rz_vault_count(v), WRITERS + 1);
    for (int i = 0; i < WRITERS; i++) {
        char name[32], value[32];
        snprintf(name, sizeof name, "w%02d", i);
        snprintf(value, sizeof value, "value-%02d", i);
        assert_value(v, name, value);
    }
    rz_vault_close(v);
}

static void test_save_keeps_another_writers_add(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault *a = reopen(f->path, PW), *b = reopen(f->path, PW);
    assert_int_equal(rz_vault_add(a, "from-a", "llm_api", NULL, "a", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(a), RZ_OK);
    assert_int_equal(rz_vault_add(b, "from-b", "llm_api", NULL, "b", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(b), RZ_OK);
    assert_int_equal(rz_vault_count(b), 3);   /* b now shows a's entry too */
    rz_vault_close(a);
    rz_vault_close(b);
    rz_vault *v = reopen(f->path, PW);
    assert_value(v, "from-a", "a");
    assert_value(v, "from-b", "b");
    rz_vault_close(v);
}

static void test_save_keeps_another_writers_removal(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 2));
    rz_vault *a = reopen(f->path, PW), *b = reopen(f->path, PW);
    assert_int_equal(rz_vault_remove(a, "slack-bot"), RZ_OK);
    assert_int_equal(rz_vault_save(a), RZ_OK);
    assert_int_equal(rz_vault_add(b, "from-b", "llm_api", NULL, "b", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(b), RZ_OK);
    rz_vault_close(a);
    rz_vault_close(b);
    rz_vault *v = reopen(f->path, PW);
    assert_int_equal(rz_vault_find(v, "slack-bot"), (size_t)-1);
    assert_int_equal(rz_vault_count(v), 2);
    rz_vault_close(v);
}

static void test_save_applies_this_writers_update_over_another_save(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault *a = reopen(f->path, PW), *b = reopen(f->path, PW);
    assert_int_equal(rz_vault_add(a, "from-a", "llm_api", NULL, "a", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(a), RZ_OK);
    assert_int_equal(rz_vault_update(b, "binance", NULL, "rotated", 7), RZ_OK);
    assert_int_equal(rz_vault_save(b), RZ_OK);
    rz_vault_close(a);
    rz_vault_close(b);
    rz_vault *v = reopen(f->path, PW);
    assert_value(v, "binance", "rotated");
    assert_value(v, "from-a", "a");
    rz_vault_close(v);
}

static void test_save_refuses_a_name_another_writer_added(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault *a = reopen(f->path, PW), *b = reopen(f->path, PW);
    assert_int_equal(rz_vault_add(a, "dup", "llm_api", NULL, "a", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(a), RZ_OK);
    assert_int_equal(rz_vault_add(b, "dup", "llm_api", NULL, "b", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(b), RZ_EEXISTS);
    assert_int_equal(rz_vault_count(b), 2);   /* b's own view is kept */
    rz_vault_close(a);
    rz_vault_close(b);
    rz_vault *v = reopen(f->path, PW);
    assert_value(v, "dup", "a");
    rz_vault_close(v);
}

static void test_save_refuses_after_a_password_change_elsewhere(void **state)
{
    fx *f = *state;
    rz_vault_close(make_vault(f->path, 1));
    rz_vault *a = reopen(f->path, PW), *b = reopen(f->path, PW);
    rz_vault_opts o = tiny();
    assert_int_equal(rz_vault_passwd(a, "new password", 12, &o), RZ_OK);
    assert_int_equal(rz_vault_add(b, "from-b", "llm_api", NULL, "b", 1, NULL), RZ_OK);
    assert_int_equal(rz_vault_save(b), RZ_ESTATE);
    assert_clean_error();
    rz_vault_close(a);
    rz_vault_close(b);
    rz_vault *v = reopen(f->path, "new password");
    assert_int_equal(rz_vault_count(v), 1);
    rz_vault_close(v);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_update_remove),
        T(test_add_refuses_a_taken_name),
        T(test_add_refuses_bad_names),
        T(test_add_name_length_limit),
        T(test_add_refuses_bad_types),
        T(test_add_refuses_bad_metadata),
        T(test_add_refuses_an_empty_value),
        T(test_add_refuses_an_oversized_value),
        T(test_known_types),
        T(test_create_never_clobbers),
        T(test_open_missing_file_is_enoent),
        T(test_open_refuses_a_file_that_is_no_vault),
        T(test_open_refuses_a_folder),
        T(test_open_refuses_unknown_opts_version),
        T(test_create_refuses_a_tiny_memlimit),
        T(test_null_handles_are_fine),
        T(test_wrong_password),
        T(test_lock_discards_unsaved_changes),
        T(test_unlock_again_checks_the_password_and_keeps_state),
        T(test_kdf_cost_and_path),
        T(test_unlock_reads_a_file_replaced_while_locked),
        T(test_unlock_refuses_a_file_gone_bad_while_locked),
        T(test_passwd_new_salt_same_vault_id),
        T(test_passwd_new_password_opens_old_does_not),
        T(test_passwd_null_opts_keep_the_cost),
        T(test_passwd_needs_an_unlocked_vault),
        T(test_every_flip_and_truncation),
        T(test_entry_moved_or_retyped),
        T(test_open_refuses_a_huge_memlimit),
        T(test_open_refuses_too_many_passes),
        T(test_open_refuses_zero_passes),
        T(test_open_accepts_a_cost_within_the_caps),
        T(test_open_caps_lowered_by_the_caller),
        T(test_open_refuses_a_newer_format_or_kdf),
        T(test_create_refuses_costs_a_reader_would_refuse),
        cmocka_unit_test(test_body_decoder_hostile),
        T(test_body_duplicates),
        T(test_crash_at_each_step),
        T(test_crash_random_kills),
        T(test_node_keypairs_differ),
        T(test_seal_round_trip),
        T(test_unseal_refuses_another_job),
        T(test_unseal_refuses_an_expired_box),
        T(test_unseal_refuses_another_nodes_key),
        T(test_unseal_refuses_altered_bytes),
        T(test_unseal_refuses_bad_lengths_and_job),
        T(test_seal_value_round_trip),
        T(test_seal_value_refuses_bad_arguments),
        T(test_seal_unknown_entry_is_enoent),
        T(test_resolve_step),
        T(test_seal_flow),
        T(test_seal_flow_errors),
        T(test_parallel_writers_lose_nothing),
        T(test_save_keeps_another_writers_add),
        T(test_save_keeps_another_writers_removal),
        T(test_save_applies_this_writers_update_over_another_save),
        T(test_save_refuses_a_name_another_writer_added),
        T(test_save_refuses_after_a_password_change_elsewhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

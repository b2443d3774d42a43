/* rhizos vault: init | add NAME --type T | list | show NAME [--reveal] |
 * rm NAME | passwd.
 *
 * Passwords and values never come from argv (other users read it in ps):
 * the master password is $RHIZOS_VAULT_PASSWORD or a no-echo prompt on
 * /dev/tty, a new one $RHIZOS_VAULT_NEW_PASSWORD or a prompt asked twice,
 * a value stdin (when it is not a terminal) or a no-echo prompt. Everything
 * read is kept in the library's guarded memory and wiped after use. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rhizos/vault.h"

#define PASSWORD_MAX 1024

void cli_vault_usage(void)
{
    printf(
"usage: rhizos vault COMMAND [--vault FILE]\n"
"\n"
"  init                   create an empty vault\n"
"  add NAME --type T [KEY=VALUE...]\n"
"                         add a secret; the value is read from stdin, or\n"
"                         asked without echo; KEY=VALUE pairs are metadata\n"
"  list                   names, types and ids (never values)\n"
"  show NAME [--reveal]   metadata; --reveal also prints the value\n"
"  rm NAME                remove an entry\n"
"  passwd                 change the master password (re-encrypts all)\n"
"\n"
"Types: exchange_api llm_api twitter_oauth discord_bot telegram_bot\n"
"database_url wallet_private_key, or any custom [a-z0-9_.-] name.\n"
"\n"
"The vault is --vault FILE, else $RHIZOS_VAULT, else\n"
"$XDG_CONFIG_HOME/rhizos/vault (~/.config/rhizos/vault).\n"
"The master password is $RHIZOS_VAULT_PASSWORD or asked on the terminal;\n"
"`passwd` takes the new one from $RHIZOS_VAULT_NEW_PASSWORD or asks twice.\n"
"`init` and `passwd` use the key-derivation cost $RHIZOS_VAULT_KDF:\n"
"interactive, moderate (default) or sensitive (1 GiB, seconds).\n");
}

/* ---- Paths ------------------------------------------------------------- */

static char *vault_path(const cli *c)
{
    if (c->vault)
        return strdup(c->vault);
    const char *env = getenv("RHIZOS_VAULT");
    if (env && *env)
        return strdup(env);
    char buf[PATH_MAX];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    if (xdg && *xdg)
        snprintf(buf, sizeof buf, "%s/rhizos/vault", xdg);
    else
        snprintf(buf, sizeof buf, "%s/.config/rhizos/vault",
                 getenv("HOME") ? getenv("HOME") : ".");
    return strdup(buf);
}

/* mkdir -p of the folder holding `path`, private to the user; -1 with
 * errno set on failure. */
static int make_parent(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    return rz_fs_mkdirs(buf, 0700) == RZ_OK ? 0 : -1;
}

/* ---- Reading secrets ----------------------------------------------------- */

/* A copy of an environment variable in guarded memory, or NULL if unset. */
static rz_secret *from_env(const char *name)
{
    const char *v = getenv(name);
    rz_secret *s;
    if (!v || rz_secret_alloc(&s, strlen(v)) != RZ_OK)
        return NULL;
    memcpy(rz_secret_bytes(s), v, strlen(v));
    return s;
}

/* Read one line from `fd` into a guarded buffer (without the newline). */
static rz_secret *read_line(int fd, size_t max)
{
    rz_secret *s;
    if (rz_secret_alloc(&s, max) != RZ_OK)
        return NULL;
    unsigned char *b = rz_secret_bytes(s);
    size_t n = 0;
    for (;;) {
        unsigned char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || ch == '\n')
            break;
        if (n == max) {
            rz_secret_free(s);
            fprintf(stderr, "rhizos: input longer than %zu bytes\n", max);
            return NULL;
        }
        b[n++] = ch;
    }
    if (n > 0 && b[n - 1] == '\r')
        n--;
    rz_secret_truncate(s, n);
    return s;
}

/* Ask on /dev/tty with echo off. NULL (and a message) if there is none. */
static rz_secret *prompt(const char *question, size_t max)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "rhizos: no terminal to ask on (%s); see rhizos vault --help\n",
                question);
        return NULL;
    }
    struct termios old, quiet;
    int have_tc = tcgetattr(fd, &old) == 0;
    if (have_tc) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(fd, TCSAFLUSH, &quiet);
    }
    if (write(fd, question, strlen(question)) < 0 || write(fd, ": ", 2) < 0) {
        /* A prompt we cannot show is still answered on the same tty. */
    }
    rz_secret *s = read_line(fd, max);
    if (have_tc)
        tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0) {
        /* nothing more to say on a broken tty */
    }
    close(fd);
    return s;
}

static rz_secret *password(void)
{
    rz_secret *s = from_env("RHIZOS_VAULT_PASSWORD");
    return s ? s : prompt("Vault password", PASSWORD_MAX);
}

static bool same(const rz_secret *a, const rz_secret *b)
{
    return rz_secret_len(a) == rz_secret_len(b) &&
           memcmp(rz_secret_data(a), rz_secret_data(b), rz_secret_len(a)) == 0;
}

/* A new password: from `env`, else asked twice. */
static rz_secret *new_password(const char *env)
{
    rz_secret *s = from_env(env);
    if (s)
        return s;
    s = prompt("New vault password", PASSWORD_MAX);
    if (!s)
        return NULL;
    rz_secret *again = prompt("Repeat the new password", PASSWORD_MAX);
    if (!again || !same(s, again)) {
        if (again)
            fprintf(stderr, "rhizos: the passwords differ\n");
        rz_secret_free(s);
        rz_secret_free(again);
        return NULL;
    }
    rz_secret_free(again);
    if (rz_secret_len(s) == 0)
        fprintf(stderr, "rhizos: warning: the vault password is empty\n");
    return s;
}

/* A secret value: all of stdin when it is a pipe or file (one trailing
 * newline dropped), else a no-echo prompt. */
static rz_secret *read_value(const char *name)
{
    if (isatty(STDIN_FILENO)) {
        char q[256];
        snprintf(q, sizeof q, "Value for %s", name);
        return prompt(q, RZ_VAULT_VALUE_MAX);
    }
    rz_secret *s;
    if (rz_secret_alloc(&s, RZ_VAULT_VALUE_MAX + 1) != RZ_OK)
        return NULL;
    unsigned char *b = rz_secret_bytes(s);
    size_t n = 0;
    while (n <= RZ_VAULT_VALUE_MAX) {
        ssize_t r = read(STDIN_FILENO, b + n, RZ_VAULT_VALUE_MAX + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    if (n > RZ_VAULT_VALUE_MAX) {
        fprintf(stderr, "rhizos: value longer than %u bytes\n", RZ_VAULT_VALUE_MAX);
        rz_secret_free(s);
        return NULL;
    }
    if (n > 0 && b[n - 1] == '\n')
        n--;
    if (n > 0 && b[n - 1] == '\r')
        n--;
    rz_secret_truncate(s, n);
    return s;
}

/* ---- Opening ------------------------------------------------------------- */

static int kdf_from_env(rz_vault_opts *o)
{
    const char *k = getenv("RHIZOS_VAULT_KDF");
    if (!k || !*k || strcmp(k, "moderate") == 0)
        o->kdf = RZ_VAULT_KDF_MODERATE;
    else if (strcmp(k, "interactive") == 0)
        o->kdf = RZ_VAULT_KDF_INTERACTIVE;
    else if (strcmp(k, "sensitive") == 0)
        o->kdf = RZ_VAULT_KDF_SENSITIVE;
    else {
        fprintf(stderr, "rhizos: RHIZOS_VAULT_KDF must be interactive, moderate or sensitive\n");
        return -1;
    }
    return 0;
}

/* Open and unlock the vault; prints the problem and returns NULL. */
rz_vault *cli_vault_open_unlocked(const cli *c)
{
    char *path = vault_path(c);
    rz_vault *v = NULL;
    int rc = path ? rz_vault_open(&v, path, NULL) : RZ_ENOMEM;
    if (rc == RZ_ENOENT)
        fprintf(stderr, "rhizos: no vault at %s (create one with `rhizos vault init`)\n", path);
    else if (rc != RZ_OK)
        cli_error(path, rc);
    free(path);
    if (rc != RZ_OK)
        return NULL;
    rz_secret *pw = password();
    if (!pw) {
        rz_vault_close(v);
        return NULL;
    }
    rc = rz_vault_unlock(v, (const char *)rz_secret_data(pw), rz_secret_len(pw));
    rz_secret_free(pw);
    if (rc != RZ_OK) {
        cli_error(NULL, rc);
        rz_vault_close(v);
        return NULL;
    }
    return v;
}

static int save(rz_vault *v)
{
    int rc = rz_vault_save(v);
    if (rc != RZ_OK) {
        cli_error(rz_vault_path(v), rc);
        return EXIT_FAILED;
    }
    return EXIT_OK;
}

/* ---- Commands ------------------------------------------------------------ */

static int cmd_init(const cli *c)
{
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    if (kdf_from_env(&o) != 0)
        return EXIT_USAGE;
    char *path = vault_path(c);
    if (!path || make_parent(path) != 0) {
        fprintf(stderr, "rhizos: cannot create the folder of %s: %s\n",
                path ? path : "the vault", strerror(errno));
        free(path);
        return EXIT_FAILED;
    }
    rz_secret *pw = new_password("RHIZOS_VAULT_PASSWORD");
    if (!pw) {
        free(path);
        return EXIT_FAILED;
    }
    rz_vault *v;
    int rc = rz_vault_create(&v, path, (const char *)rz_secret_data(pw), rz_secret_len(pw), &o);
    rz_secret_free(pw);
    if (rc != RZ_OK)
        cli_error(NULL, rc);
    else if (!c->quiet)
        printf("created vault %s\n", path);
    rz_vault_close(v);
    free(path);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

/* KEY=VALUE arguments as a JSON object (values that parse as JSON are kept
 * typed, others are strings). NULL on a malformed pair. */
static char *metadata_from_args(const cli *c)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 1; o && i < c->nargs; i++) {
        const char *eq = strchr(c->args[i], '=');
        if (!eq || eq == c->args[i]) {
            fprintf(stderr, "rhizos: metadata must be KEY=VALUE, not '%s'\n", c->args[i]);
            cJSON_Delete(o);
            return NULL;
        }
        char *key = strndup(c->args[i], (size_t)(eq - c->args[i]));
        cJSON *val = cJSON_Parse(eq + 1);
        if (!val)
            val = cJSON_CreateString(eq + 1);
        cJSON_DeleteItemFromObjectCaseSensitive(o, key);
        cJSON_AddItemToObject(o, key, val);
        free(key);
    }
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

static int cmd_add(const cli *c)
{
    if (c->nargs < 1 || !c->type) {
        fprintf(stderr, "rhizos: usage: rhizos vault add NAME --type TYPE [KEY=VALUE...]\n");
        return EXIT_USAGE;
    }
    const char *name = c->args[0];
    char *meta = metadata_from_args(c);
    if (!meta)
        return EXIT_USAGE;
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v) {
        free(meta);
        return EXIT_FAILED;
    }
    int rc = RZ_EEXISTS;
    if (rz_vault_find(v, name) != (size_t)-1)
        fprintf(stderr, "rhizos: vault entry '%s' exists (remove it first)\n", name);
    else {
        rz_secret *val = read_value(name);
        if (!val)
            rc = RZ_EINVAL;
        else {
            char id[RZ_VAULT_ID_LEN + 1];
            rc = rz_vault_add(v, name, c->type, meta, rz_secret_data(val), rz_secret_len(val), id);
            rz_secret_free(val);
            if (rc != RZ_OK)
                cli_error(name, rc);
            else if ((rc = save(v)) == EXIT_OK && !c->quiet)
                printf("added %s (%s, id %s)%s\n", name, c->type, id,
                       rz_vault_type_is_known(c->type) ? "" : " [custom type]");
        }
    }
    free(meta);
    rz_vault_close(v);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

void cli_iso_time(uint64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static cJSON *entry_json(const rz_vault_entry *e)
{
    cJSON *o = cJSON_CreateObject();
    char t[32];
    cJSON_AddStringToObject(o, "id", e->id);
    cJSON_AddStringToObject(o, "name", e->name);
    cJSON_AddStringToObject(o, "type", e->type);
    cli_iso_time(e->created_ms, t, sizeof t);
    cJSON_AddStringToObject(o, "created", t);
    cli_iso_time(e->updated_ms, t, sizeof t);
    cJSON_AddStringToObject(o, "updated", t);
    cJSON *meta = cJSON_Parse(e->metadata);
    cJSON_AddItemToObject(o, "metadata", meta ? meta : cJSON_CreateObject());
    return o;
}

static void print_json(cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    if (s)
        cli_print_json(s);
    free(s);
    cJSON_Delete(j);
}

static int cmd_list(const cli *c)
{
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v)
        return EXIT_FAILED;
    size_t n = rz_vault_count(v);
    cJSON *arr = c->json ? cJSON_CreateArray() : NULL;
    if (!c->json && n == 0 && !c->quiet)
        printf("(the vault is empty)\n");
    else if (!c->json && !c->quiet)
        printf("%-24s %-20s %-32s %s\n", "NAME", "TYPE", "ID", "UPDATED");
    for (size_t i = 0; i < n; i++) {
        rz_vault_entry e;
        (void)!rz_vault_get(v, i, &e);   /* i < count: cannot fail */
        char t[32];
        cli_iso_time(e.updated_ms, t, sizeof t);
        if (arr)
            cJSON_AddItemToArray(arr, entry_json(&e));
        else
            printf("%-24s %-20s %-32s %s\n", e.name, e.type, e.id, t);
    }
    if (arr)
        print_json(arr);
    rz_vault_close(v);
    return EXIT_OK;
}

static int cmd_show(const cli *c)
{
    if (c->nargs != 1) {
        fprintf(stderr, "rhizos: usage: rhizos vault show NAME [--reveal]\n");
        return EXIT_USAGE;
    }
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v)
        return EXIT_FAILED;
    size_t i = rz_vault_find(v, c->args[0]);
    if (i == (size_t)-1) {
        fprintf(stderr, "rhizos: no vault entry '%s'\n", c->args[0]);
        rz_vault_close(v);
        return EXIT_FAILED;
    }
    rz_secret *s = NULL;
    int rc = c->reveal ? rz_vault_reveal(v, i, &s) : RZ_OK;
    if (rc != RZ_OK) {
        cli_error(c->args[0], rc);
        rz_vault_close(v);
        return EXIT_FAILED;
    }
    rz_vault_entry e;
    (void)!rz_vault_get(v, i, &e);   /* found above */
    if (c->json) {
        cJSON *o = entry_json(&e);
        if (s)
            cJSON_AddStringToObject(o, "value", (const char *)rz_secret_data(s));
        print_json(o);   /* the JSON text copy lives briefly in ordinary memory */
    } else if (c->quiet && s) {
        fwrite(rz_secret_data(s), 1, rz_secret_len(s), stdout);
        putchar('\n');
    } else {
        char t[32];
        printf("name:     %s\nid:       %s\ntype:     %s%s\n", e.name, e.id, e.type,
               rz_vault_type_is_known(e.type) ? "" : " (custom)");
        cli_iso_time(e.created_ms, t, sizeof t);
        printf("created:  %s\n", t);
        cli_iso_time(e.updated_ms, t, sizeof t);
        printf("updated:  %s\nmetadata: %s\nlength:   %zu bytes\n", t, e.metadata, e.value_len);
        if (s) {
            fputs("value:    ", stdout);
            fwrite(rz_secret_data(s), 1, rz_secret_len(s), stdout);
            putchar('\n');
        }
    }
    fflush(stdout);
    rz_secret_free(s);
    rz_vault_close(v);
    return EXIT_OK;
}

static int cmd_rm(const cli *c)
{
    if (c->nargs != 1) {
        fprintf(stderr, "rhizos: usage: rhizos vault rm NAME\n");
        return EXIT_USAGE;
    }
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v)
        return EXIT_FAILED;
    int rc = rz_vault_remove(v, c->args[0]);
    int ex = EXIT_FAILED;
    if (rc != RZ_OK)
        cli_error(NULL, rc);
    else if ((ex = save(v)) == EXIT_OK && !c->quiet)
        printf("removed %s\n", c->args[0]);
    rz_vault_close(v);
    return ex;
}

static int cmd_passwd(const cli *c)
{
    rz_vault_opts o = RZ_VAULT_OPTS_INIT;
    bool new_cost = getenv("RHIZOS_VAULT_KDF") && *getenv("RHIZOS_VAULT_KDF");
    if (new_cost && kdf_from_env(&o) != 0)
        return EXIT_USAGE;
    rz_vault *v = cli_vault_open_unlocked(c);
    if (!v)
        return EXIT_FAILED;
    rz_secret *pw = new_password("RHIZOS_VAULT_NEW_PASSWORD");
    int rc = RZ_EINVAL;
    if (pw) {
        rc = rz_vault_passwd(v, (const char *)rz_secret_data(pw), rz_secret_len(pw),
                             new_cost ? &o : NULL);
        rz_secret_free(pw);
        if (rc != RZ_OK)
            cli_error(rz_vault_path(v), rc);
        else if (!c->quiet)
            printf("password changed; %zu entries re-encrypted\n", rz_vault_count(v));
    }
    rz_vault_close(v);
    return rc == RZ_OK ? EXIT_OK : EXIT_FAILED;
}

int cli_vault(cli *c, const char *verb)
{
    static const struct {
        const char *name;
        int (*run)(const cli *c);
    } verbs[] = {
        { "init", cmd_init }, { "add", cmd_add }, { "list", cmd_list },
        { "show", cmd_show }, { "rm", cmd_rm }, { "passwd", cmd_passwd },
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(verb, verbs[i].name) == 0)
            return verbs[i].run(c);
    fprintf(stderr, "rhizos: unknown vault command '%s'. Try 'rhizos vault --help'.\n", verb);
    return EXIT_USAGE;
}

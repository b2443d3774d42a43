/* Where the network commands connect and with which key.
 *
 * A key on the command line lands in shell history and in every `ps`; so
 * the key may come from a file instead (--api-key-file, RHIZOS_API_KEY_FILE,
 * or `api_key_file` in the client config), and that file must be the
 * user's alone, as ssh insists for its keys. The config file never holds a
 * key itself: it is the kind of file people paste into issues.
 *
 * Precedence, first wins: the flag, the environment, the chosen context's
 * line in the config, the config's top-level line, the built-in default.
 * The config is read only by commands that connect, so a broken config
 * never stops `flow run`. It is a small TOML subset on purpose (strings,
 * comments, [context.NAME] tables); anything else is an error with
 * FILE:LINE, so a typo is never silently ignored. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define KEY_MAX 4096
#define LINE_MAX_LEN 4096

typedef struct {
    char *orchestrator, *api_key_file, *ca_file;
} endpoint;

typedef struct {
    char path[PATH_MAX];
    char *context;            /* top-level `context = "NAME"` */
    endpoint top, chosen;     /* top level; the chosen [context.NAME] */
    bool found_chosen;
} config;

static void config_clear(config *f)
{
    free(f->context);
    free(f->top.orchestrator);
    free(f->top.api_key_file);
    free(f->top.ca_file);
    free(f->chosen.orchestrator);
    free(f->chosen.api_key_file);
    free(f->chosen.ca_file);
}

static int bad(const config *f, int line, const char *what)
{
    fprintf(stderr, "rhizos: %s:%d: %s\n", f->path, line, what);
    return -1;
}

/* A basic TOML string ("..." with \" \\ \n \t escapes) at *p; the rest of
 * the line may hold only a comment. */
static char *parse_string(const config *f, int line, const char *p)
{
    if (*p != '"')
        return bad(f, line, "expected a string in double quotes"), NULL;
    char *out = malloc(strlen(p) + 1), *o = out;
    if (!out)
        return bad(f, line, "out of memory"), NULL;
    for (p++; *p && *p != '"'; p++) {
        if (*p == '\\') {
            p++;
            char e = *p == 'n' ? '\n' : *p == 't' ? '\t' : *p;
            if (e != '"' && e != '\\' && e != '\n' && e != '\t') {
                free(out);
                return bad(f, line, "unknown escape in string"), NULL;
            }
            *o++ = e;
        } else if ((unsigned char)*p < 0x20) {
            free(out);
            return bad(f, line, "control character in string"), NULL;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    if (*p != '"') {
        free(out);
        return bad(f, line, "unterminated string"), NULL;
    }
    for (p++; *p == ' ' || *p == '\t'; p++)
        ;
    if (*p && *p != '#') {
        free(out);
        return bad(f, line, "unexpected text after the value"), NULL;
    }
    return out;
}

static bool is_name(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-')
            return false;
    return true;
}

/* `[context.NAME]`: *into is where its keys go, NULL for a context that
 * is not the chosen one (read, checked, dropped). */
static int parse_table(config *f, int line, const char *p, const char *want,
                       endpoint **into)
{
    const char *end = strchr(p, ']');
    if (!end || strncmp(p, "[context.", 9) != 0)
        return bad(f, line, "the only tables are [context.NAME]");
    const char *name = p + 9;
    size_t len = (size_t)(end - name);
    if (!is_name(name, len))
        return bad(f, line, "a context name is letters, digits, '-' and '_'");
    for (end++; *end == ' ' || *end == '\t'; end++)
        ;
    if (*end && *end != '#')
        return bad(f, line, "unexpected text after the table name");
    bool chosen = want && strlen(want) == len && memcmp(name, want, len) == 0;
    *into = chosen ? &f->chosen : NULL;
    if (chosen)
        f->found_chosen = true;
    return 0;
}

static int parse_key(config *f, int line, char *p, endpoint *into, bool top)
{
    char *eq = strchr(p, '=');
    if (!eq)
        return bad(f, line, "expected KEY = \"VALUE\"");
    char *k_end = eq;
    while (k_end > p && (k_end[-1] == ' ' || k_end[-1] == '\t'))
        k_end--;
    *k_end = '\0';
    char *v = eq + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strcmp(p, "api_key") == 0)
        return bad(f, line, "a key does not go in the config file: put it in a "
                   "file only you can read and name that file with api_key_file");
    char **slot = strcmp(p, "orchestrator") == 0 ? &into->orchestrator
                : strcmp(p, "api_key_file") == 0 ? &into->api_key_file
                : strcmp(p, "ca_file") == 0 ? &into->ca_file
                : top && strcmp(p, "context") == 0 ? &f->context : NULL;
    if (!slot) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown key '%.60s' (known: orchestrator, "
                 "api_key_file, ca_file%s)", p, top ? ", context" : "");
        return bad(f, line, msg);
    }
    char *s = parse_string(f, line, v);
    if (!s)
        return -1;
    if (*slot) {
        free(s);
        return bad(f, line, "this key is set twice");
    }
    *slot = s;
    return 0;
}

/* Reads the config if there is one. `want`: the context asked for by flag
 * or environment (NULL: the file's own `context`, if any). Two passes, as
 * the file may name its default context before or after the table. */
static int config_read(config *f, const char *want)
{
    FILE *fp = fopen(f->path, "r");
    if (!fp) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "rhizos: %s: %s\n", f->path, strerror(errno));
        return -1;
    }
    /* Pass 0 reads the top level and checks every table; pass 1, once the
     * context is known, keeps the chosen table's keys. */
    for (int pass = 0; pass < 2; pass++) {
        char buf[LINE_MAX_LEN + 2];
        int line = 0, rc = 0;
        endpoint *into = &f->top, scratch = {0};
        rewind(fp);
        while (rc == 0 && fgets(buf, sizeof buf, fp)) {
            line++;
            size_t n = strlen(buf);
            if (n > LINE_MAX_LEN) {
                rc = bad(f, line, "line too long");
                break;
            }
            while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
                         buf[n - 1] == ' ' || buf[n - 1] == '\t'))
                buf[--n] = '\0';
            char *p = buf;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '\0' || *p == '#')
                continue;
            if (*p == '[') {
                endpoint *t = NULL;
                rc = parse_table(f, line, p, pass == 1 ? want : NULL, &t);
                free(scratch.orchestrator);
                free(scratch.api_key_file);
                free(scratch.ca_file);
                scratch = (endpoint){0};
                into = t ? t : &scratch;
            } else if (pass == 0) {
                rc = parse_key(f, line, p, into, into == &f->top);
            } else if (into == &f->chosen) {
                rc = parse_key(f, line, p, into, false);
            }
        }
        free(scratch.orchestrator);
        free(scratch.api_key_file);
        free(scratch.ca_file);
        if (rc != 0 || ferror(fp)) {
            fclose(fp);
            return -1;
        }
        if (!want)
            want = f->context;
        if (!want)
            break;
    }
    fclose(fp);
    return 0;
}

/* $XDG_CONFIG_HOME/rhizos/config.toml, else ~/.config/rhizos/config.toml;
 * RHIZOS_CONFIG names another file. */
static void config_path(config *f)
{
    const char *env = getenv("RHIZOS_CONFIG"), *xdg = getenv("XDG_CONFIG_HOME");
    if (env && *env)
        snprintf(f->path, sizeof f->path, "%s", env);
    else if (xdg && *xdg)
        snprintf(f->path, sizeof f->path, "%s/rhizos/config.toml", xdg);
    else
        snprintf(f->path, sizeof f->path, "%s/.config/rhizos/config.toml",
                 getenv("HOME") ? getenv("HOME") : ".");
}

/* "~/x" → $HOME/x; a relative path is taken from the config's folder. */
static char *config_relative(const config *f, const char *p)
{
    char buf[PATH_MAX];
    const char *home = getenv("HOME");
    if (p[0] == '~' && p[1] == '/' && home)
        snprintf(buf, sizeof buf, "%s/%s", home, p + 2);
    else if (p[0] == '/')
        snprintf(buf, sizeof buf, "%s", p);
    else {
        const char *slash = strrchr(f->path, '/');
        int dir = slash ? (int)(slash - f->path) : 1;
        snprintf(buf, sizeof buf, "%.*s/%s", dir, slash ? f->path : ".", p);
    }
    return strdup(buf);
}

/* The key in `path`: one line, the user's alone. Never prints the key. */
static char *read_key_file(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "rhizos: API key file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "rhizos: API key file %s: not a regular file\n", path);
        fclose(fp);
        return NULL;
    }
    if (st.st_mode & 077) {
        fprintf(stderr, "rhizos: API key file %s can be read by others (mode %04o); "
                "run: chmod 600 %s\n", path, (unsigned)(st.st_mode & 07777), path);
        fclose(fp);
        return NULL;
    }
    char *key = calloc(1, KEY_MAX + 2);
    size_t n = key ? fread(key, 1, KEY_MAX + 1, fp) : 0;
    fclose(fp);
    if (!key)
        return NULL;
    while (n && (key[n - 1] == '\n' || key[n - 1] == '\r'))
        key[--n] = '\0';
    const char *why = n == 0 ? "is empty" : n > KEY_MAX ? "is too long for a key" : NULL;
    for (size_t i = 0; !why && i < n; i++)
        if ((unsigned char)key[i] <= 0x20 || key[i] == 0x7f)
            why = "holds more than one line or a space (a key is one word)";
    if (why) {
        fprintf(stderr, "rhizos: API key file %s %s\n", path, why);
        free(key);
        return NULL;
    }
    return key;
}

int cli_connection(cli *c)
{
    if (c->connection_resolved)
        return 0;
    const char *want = c->context ? c->context : getenv("RHIZOS_CONTEXT");
    if (want && !*want)
        want = NULL;
    config f = {0};
    config_path(&f);
    int rc = config_read(&f, want);
    if (rc == 0 && (want || f.context) && !f.found_chosen) {
        fprintf(stderr, "rhizos: %s: no [context.%s] table\n", f.path,
                want ? want : f.context);
        rc = -1;
    }
    const char *env_url = getenv("RHIZOS_URL"), *env_key = getenv("RHIZOS_API_KEY"),
               *env_file = getenv("RHIZOS_API_KEY_FILE");
    if (rc == 0 && !c->orchestrator) {
        const char *u = env_url && *env_url ? env_url : f.chosen.orchestrator
                      ? f.chosen.orchestrator : f.top.orchestrator
                      ? f.top.orchestrator : DEFAULT_URL;
        c->orchestrator = c->owned_url = strdup(u);
        if (!c->orchestrator)
            rc = -1;
    }
    if (rc == 0 && !c->api_key) {
        char *file = NULL;
        if (c->api_key_file)
            file = strdup(c->api_key_file);
        else if (env_key && *env_key)
            c->api_key = env_key;
        else if (env_file && *env_file)
            file = strdup(env_file);
        else if (f.chosen.api_key_file || f.top.api_key_file)
            file = config_relative(&f, f.chosen.api_key_file ? f.chosen.api_key_file
                                                             : f.top.api_key_file);
        if (file) {
            c->api_key = c->owned_key = read_key_file(file);
            if (!c->api_key)
                rc = -1;
        }
        free(file);
    }
    const char *env_ca = getenv("RHIZOS_CA_FILE");
    if (rc == 0 && !c->ca_file && env_ca && *env_ca)
        c->ca_file = env_ca;
    else if (rc == 0 && !c->ca_file && (f.chosen.ca_file || f.top.ca_file))
        c->ca_file = c->owned_ca = config_relative(&f, f.chosen.ca_file ? f.chosen.ca_file
                                                                       : f.top.ca_file);
    config_clear(&f);
    c->connection_resolved = rc == 0;
    return rc;
}

void cli_connection_free(cli *c)
{
    free(c->owned_url);
    free(c->owned_ca);
    if (c->owned_key) {
        memset(c->owned_key, 0, strlen(c->owned_key));
        free(c->owned_key);
    }
}

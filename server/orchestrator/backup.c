/* `rhizos-orchestrator backup` and `restore` (docs/ledger.md, "Backup and
 * restore"), and the control socket through which a running server takes
 * a backup.
 *
 * The stores commit in separate transactions (the ledger's holds, the
 * engine's LMDB, then settlements; the auth and flows stores; the audit
 * log), so copies of them taken one after the other while requests are
 * served are from different moments: a job without its hold, a settlement
 * of a job the engine still runs. A consistent copy is taken between two
 * event-loop passes, when no group is open: the ledger is checkpointed
 * (its LMDB holds every acknowledged batch and its journal is settled),
 * and the files are copied while the loop waits, so nothing is written
 * meanwhile. A running server does that itself when asked on DATA/
 * control.sock (a Unix socket only the data directory's owner reaches);
 * a stopped one's directory is copied under the ledger's writer lock, so
 * no server starts meanwhile. The order, so that a copy is whole even if
 * a write slipped in: the engine, the ledger (data.mdb, then its journal),
 * the auth store, the other stores, then the audit log (after the auth
 * store: the log may be ahead of the head the store keeps, never behind),
 * then the key files. The copy is made in OUT.partial-PID, synced, renamed
 * to OUT, and checked as `check` does. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <lmdb.h>

#include "orch.h"

#define CONTROL_SOCK "control.sock"
#define CONTROL_LINE_MAX 4200u
#define BACKUP_WAIT_S 600

/* Stores first, in this order; then any other folder; then files. */
static const char *const FIRST[] = { "engine", "ledger", "auth", "flows" };

static int say(char *err, size_t cap, const char *fmt, const char *a, int e)
{
    char m[512];
    snprintf(m, sizeof m, fmt, a);
    snprintf(err, cap, "%s%s%s", m, e ? ": " : "", e ? strerror(e) : "");
    return -1;
}

static int copy_file(const char *from, const char *to, char *err, size_t cap)
{
    int in = open(from, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return say(err, cap, "cannot read %.400s", from, errno);
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0) {
        int e = errno;
        close(in);
        return say(err, cap, "cannot create %.400s", to, e);
    }
    char buf[1 << 16];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0)
        for (ssize_t off = 0; off < n && rc == 0;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w <= 0)
                rc = say(err, cap, "cannot write %.400s", to, errno);
            else
                off += w;
        }
    if (rc == 0 && n < 0)
        rc = say(err, cap, "cannot read %.400s", from, errno);
    if (rc == 0 && fsync(out) != 0)
        rc = say(err, cap, "cannot sync %.400s", to, errno);
    close(in);
    close(out);
    return rc;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Not copied: LMDB's lock files (made anew), the control socket, our own
 * unfinished copies, anything hidden. */
static bool skipped(const char *name)
{
    return name[0] == '.' || strcmp(name, "lock.mdb") == 0 ||
           strcmp(name, CONTROL_SOCK) == 0 || strstr(name, ".partial-") != NULL;
}

static int copy_entry(const char *from, const char *to, const char *name,
                      int depth, char *err, size_t cap);

/* The folder's entries: FIRST's stores in order (at the top), then the
 * other folders, then the files. */
static int copy_dir(const char *from, const char *to, int depth, char *err, size_t cap)
{
    if (mkdir(to, 0700) != 0)
        return say(err, cap, "cannot create %.400s", to, errno);
    for (size_t i = 0; depth == 0 && i < sizeof FIRST / sizeof FIRST[0]; i++)
        if (copy_entry(from, to, FIRST[i], depth, err, cap) != 0)
            return -1;
    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir(from);
        if (!d)
            return say(err, cap, "cannot read %.400s", from, errno);
        struct dirent *de;
        int rc = 0;
        while (rc == 0 && (de = readdir(d)) != NULL) {
            bool first = false;
            for (size_t i = 0; depth == 0 && i < sizeof FIRST / sizeof FIRST[0]; i++)
                first |= strcmp(de->d_name, FIRST[i]) == 0;
            bool dir = de->d_type == DT_DIR;
            if (first || skipped(de->d_name) || dir != (pass == 0))
                continue;
            rc = copy_entry(from, to, de->d_name, depth, err, cap);
        }
        closedir(d);
        if (rc != 0)
            return rc;
    }
    return sync_dir(to) == 0 ? 0 : say(err, cap, "cannot sync %.400s", to, errno);
}

static int copy_entry(const char *from, const char *to, const char *name,
                      int depth, char *err, size_t cap)
{
    char src[PATH_MAX], dst[PATH_MAX];
    if (snprintf(src, sizeof src, "%s/%s", from, name) >= (int)sizeof src ||
        snprintf(dst, sizeof dst, "%s/%s", to, name) >= (int)sizeof dst)
        return say(err, cap, "%.400s: path too long", from, 0);
    struct stat st;
    if (lstat(src, &st) != 0)
        return errno == ENOENT ? 0 : say(err, cap, "cannot read %.400s", src, errno);
    if (S_ISDIR(st.st_mode) && depth == 0) {
        if (strcmp(name, "ledger") != 0)
            return copy_dir(src, dst, depth + 1, err, cap);
        /* The ledger's LMDB, then its journal: a journal newer than its
         * data.mdb is replayed; an older one is refused. */
        if (mkdir(dst, 0700) != 0)
            return say(err, cap, "cannot create %.400s", dst, errno);
        static const char *const order[] = { "data.mdb", "journal" };
        for (size_t i = 0; i < 2; i++) {
            char s2[PATH_MAX + 16], d2[PATH_MAX + 16];
            snprintf(s2, sizeof s2, "%s/%s", src, order[i]);
            snprintf(d2, sizeof d2, "%s/%s", dst, order[i]);
            if (access(s2, F_OK) == 0 && copy_file(s2, d2, err, cap) != 0)
                return -1;
        }
        return sync_dir(dst) == 0 ? 0 : say(err, cap, "cannot sync %.400s", dst, errno);
    }
    if (!S_ISREG(st.st_mode))
        return 0;   /* sockets, links: not state */
    return copy_file(src, dst, err, cap);
}

/* ---- compaction (after the copy, in the backup command's process) ---- */

static int compact_store(const char *dir, char *err, size_t cap)
{
    char path[PATH_MAX + 32], tmp[PATH_MAX + 32];
    struct stat st;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &st) != 0 || st.st_size == 0)
        return 0;
    snprintf(tmp, sizeof tmp, "%s/.compact", dir);
    MDB_env *env = NULL;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, (size_t)st.st_size + (1u << 20));
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 64);
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_RDONLY, 0600);
    if (rc == 0 && mkdir(tmp, 0700) != 0)
        rc = errno;
    if (rc == 0)
        rc = mdb_env_copy2(env, tmp, MDB_CP_COMPACT);
    mdb_env_close(env);
    char lock[PATH_MAX + 32], out[PATH_MAX + 48];
    snprintf(lock, sizeof lock, "%s/lock.mdb", dir);
    snprintf(out, sizeof out, "%s/data.mdb", tmp);
    unlink(lock);
    if (rc == 0 && (rename(out, path) != 0 || chmod(path, 0600) != 0))
        rc = errno;
    unlink(out);
    rmdir(tmp);
    if (rc != 0) {
        snprintf(err, cap, "cannot compact %.400s: %s", dir, mdb_strerror(rc));
        return -1;
    }
    return 0;
}

static int compact_all(const char *root, char *err, size_t cap)
{
    DIR *d = opendir(root);
    if (!d)
        return say(err, cap, "cannot read %.400s", root, errno);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char sub[PATH_MAX];
        if (de->d_type != DT_DIR || de->d_name[0] == '.' ||
            snprintf(sub, sizeof sub, "%s/%s", root, de->d_name) >= (int)sizeof sub)
            continue;
        rc = compact_store(sub, err, cap);
    }
    closedir(d);
    return rc;
}

/* An unfinished copy (two levels, as copy_dir makes them). */
static void remove_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        char p[PATH_MAX];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name) >= (int)sizeof p)
            continue;
        if (de->d_type == DT_DIR && depth < 2)
            remove_tree(p, depth + 1);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Copy `data` to `out` (absent): into out.partial-PID, then renamed. */
static int backup_to(const char *data, const char *out, char *err, size_t cap)
{
    char partial[PATH_MAX];
    if (snprintf(partial, sizeof partial, "%s.partial-%ld", out, (long)getpid()) >=
        (int)sizeof partial)
        return say(err, cap, "%.400s: path too long", out, 0);
    int rc = copy_dir(data, partial, 0, err, cap);
    if (rc == 0 && rename(partial, out) != 0)
        rc = say(err, cap, "cannot rename the copy to %.400s", out, errno);
    if (rc != 0)
        remove_tree(partial, 0);   /* never to pass for a backup */
    return rc;
}

/* ---- the running server's side: DATA/control.sock ---- */

typedef struct control_req {
    orch *o;
    struct bufferevent *bev;
    char *out;
    struct event *retry;
} control_req;

static void control_done(control_req *c, const char *line)
{
    if (c->retry)
        event_free(c->retry);
    c->retry = NULL;
    free(c->out);
    c->out = NULL;
    struct evbuffer *o = bufferevent_get_output(c->bev);
    evbuffer_add_printf(o, "%s\n", line);
    bufferevent_disable(c->bev, EV_READ);
}

static void control_backup(evutil_socket_t fd, short what, void *arg);

/* Between passes only: an open group has changes not yet committed. */
static void control_try(control_req *c)
{
    orch *o = c->o;
    if (o->grouped || o->stopping) {
        if (o->stopping) {
            control_done(c, "error the server is stopping");
            return;
        }
        struct timeval ms = { 0, 1000 };
        if (!c->retry)
            c->retry = evtimer_new(o->base, control_backup, c);
        if (c->retry)
            evtimer_add(c->retry, &ms);
        return;
    }
    char err[700] = "";
    uint64_t t0 = orch_mono_ns();
    auth_settle(o);   /* a kept group's writes into the copy (auth_pass.c) */
    int rc = rz_ledger_checkpoint(rz_engine_ledger(o->e));
    if (rc != RZ_OK)
        snprintf(err, sizeof err, "ledger checkpoint: %s", rz_error_last()->message);
    else
        rc = backup_to(o->opts.data, c->out, err, sizeof err);
    char line[800];
    snprintf(line, sizeof line, rc == 0 ? "ok" : "error %s", err);
    orch_log(o, rc == 0 ? ORCH_LOG_INFO : ORCH_LOG_ERROR, "backup", "to", LOG_STR,
             c->out, "ms", LOG_F64, (double)(orch_mono_ns() - t0) / 1e6,
             "error", LOG_STR, err, NULL);
    control_done(c, line);
}

static void control_backup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    control_try(arg);
}

static void control_free(control_req *c)
{
    if (c->retry)
        event_free(c->retry);
    bufferevent_free(c->bev);
    free(c->out);
    free(c);
}

static void control_read(struct bufferevent *bev, void *arg)
{
    control_req *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->out || c->retry)
        return;   /* one request per connection */
    size_t n = 0;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
    if (!line) {
        if (evbuffer_get_length(in) > CONTROL_LINE_MAX)
            control_done(c, "error the request is too long");
        return;
    }
    if (strncmp(line, "backup /", 8) != 0 || n > CONTROL_LINE_MAX || strlen(line) != n) {
        control_done(c, "error expected: backup /ABSOLUTE/PATH");
    } else if (!(c->out = strdup(line + 7))) {
        control_done(c, "error out of memory");
    } else {
        control_try(c);
    }
    free(line);
}

static void control_write(struct bufferevent *bev, void *arg)
{
    control_req *c = arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        control_free(c);   /* the answer is out */
}

static void control_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        control_req *c = arg;
        if (!c->retry || !c->out)
            control_free(c);
        else
            bufferevent_disable(c->bev, EV_READ);   /* answered into nothing */
    }
}

static void control_accept(struct evconnlistener *l, evutil_socket_t fd,
                           struct sockaddr *sa, int len, void *arg)
{
    (void)l, (void)sa, (void)len;
    orch *o = arg;
    control_req *c = calloc(1, sizeof *c);
    if (c)
        c->bev = bufferevent_socket_new(o->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c || !c->bev) {
        free(c);
        evutil_closesocket(fd);
        return;
    }
    c->o = o;
    bufferevent_setcb(c->bev, control_read, control_write, control_event, c);
    bufferevent_enable(c->bev, EV_READ);
}

int orch_control_start(orch *o)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/" CONTROL_SOCK, o->opts.data) >=
        (int)sizeof sa.sun_path) {
        orch_log(o, ORCH_LOG_WARN, "control_socket", "error", LOG_STR,
                 "the data directory's path is too long for a Unix socket: "
                 "backups need the server stopped", NULL);
        return 0;
    }
    unlink(sa.sun_path);   /* one left by a server that died: we hold the stores */
    mode_t old = umask(0077);
    o->control = evconnlistener_new_bind(o->base, control_accept, o,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 8,
                                         (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (!o->control)   /* the API still serves; a backup then needs a stop */
        orch_log(o, ORCH_LOG_WARN, "control_socket", "error", LOG_STR,
                 strerror(errno), NULL);
    return 0;
}

void orch_control_stop(orch *o)
{
    if (!o->control)
        return;
    evconnlistener_free(o->control);
    o->control = NULL;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" CONTROL_SOCK, o->opts.data);
    unlink(path);
}

/* ---- the commands ---- */

static int backup_usage(FILE *f, int rc)
{
    fputs("usage: " ORCH_NAME " backup --data DIR [--compact] OUT\n"
          "\n"
          "Copy the data directory DIR to OUT (a new folder): the engine,\n"
          "ledger (with its journal), auth and flows stores, the audit log and\n"
          "the key files, all as of one moment. A running orchestrator takes\n"
          "the copy itself between two requests (asked on DIR/control.sock;\n"
          "OUT must be writable by it); a stopped one's directory is copied\n"
          "under its lock. --compact rewrites each store's copy without free\n"
          "pages (mdb_env_copy2 with MDB_CP_COMPACT). The copy is then checked\n"
          "as `check` does. It holds the keys: keep it as private as DIR.\n"
          "Exit 0: done and checked; 1: failed (why on stderr); 2: usage.\n"
          "Restore with `" ORCH_NAME " restore OUT --data NEWDIR`.\n", f);
    return rc;
}

/* OUT as an absolute path whose parent exists and which does not. */
static bool out_path(const char *arg, char *abs, size_t cap)
{
    char parent[PATH_MAX], copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", arg);
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    char *slash = strrchr(copy, '/');
    const char *base = slash ? slash + 1 : copy;
    if (slash == copy)
        snprintf(parent, sizeof parent, "/");
    else if (slash)
        snprintf(parent, sizeof parent, "%.*s", (int)(slash - copy), copy);
    else
        snprintf(parent, sizeof parent, ".");
    char real[PATH_MAX];
    struct stat st;
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..") || !realpath(parent, real)) {
        fprintf(stderr, ORCH_NAME " backup: %s: the folder it goes in must exist\n", arg);
        return false;
    }
    if (lstat(arg, &st) == 0) {
        fprintf(stderr, ORCH_NAME " backup: %s exists; give a new folder\n", arg);
        return false;
    }
    if (snprintf(abs, cap, "%s/%s", strcmp(real, "/") ? real : "", base) >= (int)cap) {
        fprintf(stderr, ORCH_NAME " backup: %s: path too long\n", arg);
        return false;
    }
    return true;
}

/* Ask the running server (0), or -1 said on stderr; 1: nobody listens. */
static int ask_server(const char *data, const char *out)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (snprintf(sa.sun_path, sizeof sa.sun_path, "%s/" CONTROL_SOCK, data) >=
        (int)sizeof sa.sun_path)
        return 1;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (fd >= 0)
            close(fd);
        return 1;
    }
    struct timeval tv = { BACKUP_WAIT_S, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char ask[PATH_MAX + 16], reply[1024];
    int n = snprintf(ask, sizeof ask, "backup %s\n", out);
    size_t got = 0;
    bool sent = write(fd, ask, (size_t)n) == n;
    ssize_t r;
    while (sent && got < sizeof reply - 1 &&
           (r = read(fd, reply + got, sizeof reply - 1 - got)) > 0)
        got += (size_t)r;
    close(fd);
    reply[got] = '\0';
    reply[strcspn(reply, "\n")] = '\0';
    if (strcmp(reply, "ok") == 0)
        return 0;
    fprintf(stderr, ORCH_NAME " backup: the running orchestrator: %s\n",
            got ? (strncmp(reply, "error ", 6) ? reply : reply + 6)
                : "no answer (it stopped?)");
    return -1;
}

/* Copy a stopped server's directory holding the ledger's writer lock. */
static int copy_stopped(const char *data, const char *out)
{
    char journal[PATH_MAX], err[700] = "";
    snprintf(journal, sizeof journal, "%s/ledger/journal", data);
    int fd = open(journal, O_RDONLY | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, ORCH_NAME " backup: %s is in use by an orchestrator that "
                "does not answer on %s/" CONTROL_SOCK "\n", data, data);
        close(fd);
        return -1;
    }
    int rc = backup_to(data, out, err, sizeof err);
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        fprintf(stderr, ORCH_NAME " backup: %s\n", err);
    return rc;
}

static int check_copy(const char *dir)
{
    char *args[] = { (char *)"check", (char *)"--data", (char *)dir, NULL };
    return orch_check_main(3, args);
}

int orch_backup_main(int argc, char **argv)
{
    const char *data;
    bool compact = false;
    int ex = orch_data_opts(argc, argv, 1, &data, &compact, backup_usage);
    if (ex >= 0)
        return ex;
    char out[PATH_MAX], err[700] = "";
    struct stat st;
    char ledger[PATH_MAX];
    snprintf(ledger, sizeof ledger, "%s/ledger", data);
    if (stat(ledger, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, ORCH_NAME " backup: %s is not an orchestrator's data "
                "directory (no ledger/)\n", data);
        return 1;
    }
    if (!out_path(argv[optind], out, sizeof out))
        return 1;
    int rc = ask_server(data, out);
    if (rc == 1)
        rc = copy_stopped(data, out);
    if (rc == 0 && compact && compact_all(out, err, sizeof err) != 0) {
        fprintf(stderr, ORCH_NAME " backup: %s (the uncompacted copy is in %s)\n",
                err, out);
        return 1;
    }
    if (rc != 0)
        return 1;
    if (check_copy(out) != 0) {
        fprintf(stderr, ORCH_NAME " backup: the copy in %s fails its check\n", out);
        return 1;
    }
    printf("%s: backup of %s%s\n", out, data, compact ? " (compacted)" : "");
    return 0;
}

static bool empty_or_absent(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *de;
    bool empty = true;
    while (empty && (de = readdir(d)) != NULL)
        empty = !strcmp(de->d_name, ".") || !strcmp(de->d_name, "..");
    closedir(d);
    return empty;
}

static int restore_usage(FILE *f, int rc)
{
    fputs("usage: " ORCH_NAME " restore BACKUP --data DIR\n", f);
    if (rc == 0)
        fputs("\n"
              "Check the backup BACKUP (as `check` does), then copy it into DIR,\n"
              "which must be absent or empty, and check the result. Then start\n"
              "the orchestrator on DIR (with --verify-on-open to cross-check\n"
              "every job's hold against the ledger). Exit 0: restored; 1:\n"
              "refused or failed (why on stderr; DIR is left as it was); 2: usage.\n",
              f);
    return rc;
}

int orch_restore_main(int argc, char **argv)
{
    const char *data;
    int ex = orch_data_opts(argc, argv, 1, &data, NULL, restore_usage);
    if (ex >= 0)
        return ex;
    const char *from = argv[optind];
    if (!empty_or_absent(data)) {
        fprintf(stderr, ORCH_NAME " restore: %s is not empty; restore into a new "
                "folder (move the old one aside first)\n", data);
        return 1;
    }
    if (check_copy(from) != 0) {
        fprintf(stderr, ORCH_NAME " restore: %s fails its check; nothing restored\n",
                from);
        return 1;
    }
    char err[700] = "";
    rmdir(data);   /* empty: it is made again, 0700 */
    int rc = backup_to(from, data, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, ORCH_NAME " restore: %s\n", err);
        return 1;
    }
    if (check_copy(data) != 0)
        return 1;
    printf("%s: restored from %s\n", data, from);
    return 0;
}

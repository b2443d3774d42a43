/* The process adapter's sandbox (see sandbox.h for the layers).
 *
 * Everything that can be decided once is decided in the probe: whether the
 * helper runs (as root), else bwrap's path and which of its options work,
 * the /etc entries that exist, the compiled seccomp program, passwd/group,
 * the cgroup roots. Through bwrap a step then costs a few open/mkdir/write
 * calls and the bwrap exec; through the helper, a request and a clone.
 */
#include "exec/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "exec/adapter.h"
#include "exec/exec_impl.h"

#ifdef RZ_HAVE_SECCOMP
#include <seccomp.h>
#endif

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define SHM_MB 64u
#define RMDIR_TRIES 100          /* x 1 ms while a killed step's tasks exit */
#define MEM_SETTLE_TRIES 1000    /* x 1 ms while an ended step's tmpfs goes */
#define MEM_SETTLE_ROOM (4ull << 20)   /* the cell's own, besides a /tmp */

/* ---- string vectors ---- */

void rz__argv_push_own(rz__argv *s, char *str)
{
    if (!str || s->failed) {
        free(str);
        s->failed = true;
        return;
    }
    if (s->n + 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = rz__realloc(s->v, cap * sizeof *v);
        if (!v) {
            free(str);
            s->failed = true;
            return;
        }
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = str;
    s->v[s->n] = NULL;
}

void rz__argv_push(rz__argv *s, const char *str)
{
    rz__argv_push_own(s, rz__strdup(str));
}

void rz__argv_free(rz__argv *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i])
            sodium_memzero(s->v[i], strlen(s->v[i]));
        free(s->v[i]);
    }
    free(s->v);
    memset(s, 0, sizeof *s);
}

static void push3(rz__argv *a, const char *opt, const char *x, const char *y)
{
    rz__argv_push(a, opt);
    rz__argv_push(a, x);
    if (y)
        rz__argv_push(a, y);
}

/* ---- what the probe found ---- */

enum cg_kind { CG_MEMORY, CG_PIDS, CG_CPU };
static const char *const cg_names[] = { "memory", "pids", "cpu" };

static struct {
    char *bwrap;
    /* ok and helper change after the probe only when a failed check lets
     * the helper go (rz__sbx_check_failed), maybe beside another thread's
     * step start. */
    atomic_int ok;            /* bwrap runs with the options below */
    bool inner_uid;           /* host is root: --uid/--gid 65534 inside */
    atomic_bool helper;       /* steps start through sandbox_helper.c */
    /* The helper's check failed and bubblewrap could not take over: the
     * steps asked to be sandboxed fail (never run without one). */
    atomic_bool broken;
    bool new_opts;            /* --disable-userns, --size (bwrap >= 0.8) */
    char **etc;               /* allow-listed /etc entries that exist */
    size_t n_etc;
    char *passwd, *group;
    unsigned char *bpf;       /* the seccomp program; NULL: none */
    size_t bpf_len;
    uint32_t uid_first, uid_count; /* helper: the steps' host uids */
    int uid_lock;             /* RZ__SBX_UID_LOCK, open (uid_take) */
    int cg_version;           /* 0 none, 1, 2 */
    int cg_saved;             /* rz__sbx_test_cells: the probe's version */
    char *cg_base[RZ__SBX_CG_MAX];  /* v1: per controller; v2: [0] */
    char status[512];
} sb = { .uid_lock = -1 };

#define MAX_CELLS 256   /* cells (and step uids) at most */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static atomic_uint cg_seq;

/* Where status_add writes: sb.status during the probe; a copy of it
 * while a failed check changes what the probe found (rz__sbx_check_failed),
 * published once written (status_shown), as others may read the status. */
#define STATUS_CAP sizeof sb.status
static char *status_at = sb.status;
static _Atomic(const char *) status_shown;

static void status_add(const char *fmt, const char *arg)
{
    size_t n = strlen(status_at);
    if (n + 3 >= STATUS_CAP)
        return;
    if (n)
        n += (size_t)snprintf(status_at + n, STATUS_CAP - n, "; ");
    snprintf(status_at + n, STATUS_CAP - n, fmt, arg);
}

static char *find_bwrap(void)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = DEFAULT_PATH;
    while (*path) {
        size_t len = strcspn(path, ":");
        char *c = rz__asprintf("%.*s/bwrap", (int)len, path);
        struct stat st;
        if (c && len && c[0] == '/' && stat(c, &st) == 0 &&
            S_ISREG(st.st_mode) && access(c, X_OK) == 0)
            return c;
        free(c);
        path += len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* What interpreters and TLS clients read; never shadow, gshadow, sudoers,
 * ssl/private, ssh host keys or the machine's own configuration. passwd
 * and group are synthesized; resolv.conf and hosts only with network.
 * Each entry is a bind mount, about 0.4 ms of every step: keep it short. */
static const char *const etc_allow[] = {
    "ld.so.cache", "alternatives", "localtime", "nsswitch.conf",
    "gai.conf", "services", "protocols", "mime.types", "os-release",
    "ssl/certs", "ssl/openssl.cnf", "pki/tls/certs", "pki/ca-trust",
    "crypto-policies",
};
static const char *const etc_net[] = { "resolv.conf", "hosts" };

static void find_etc(void)
{
    size_t cap = RZ_ARRAY_LEN(etc_allow) + 8;
    sb.etc = rz__calloc(cap, sizeof *sb.etc);
    if (!sb.etc)
        return;
    for (size_t i = 0; i < RZ_ARRAY_LEN(etc_allow); i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "/etc/%s", etc_allow[i]);
        if (access(p, F_OK) == 0 && (sb.etc[sb.n_etc] = rz__strdup(p)))
            sb.n_etc++;
    }
    /* Debian's python3.X folders (sitecustomize). */
    DIR *d = opendir("/etc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL && sb.n_etc < cap) {
        if (strncmp(e->d_name, "python3", 7) == 0 &&
            (sb.etc[sb.n_etc] = rz__asprintf("/etc/%s", e->d_name)))
            sb.n_etc++;
    }
    if (d)
        closedir(d);
}

/* The host uids (and gids, the same numbers) of helper-run steps: one per
 * cell, from RHIZOS_SANDBOX_UIDS=FIRST:COUNT or the default range. A uid
 * shared with a host user (65534 is the host's nobody too) would let that
 * user's processes read a step's /proc/PID/environ, where its secrets are;
 * so a range that /etc/passwd or /etc/group uses anywhere is refused, and
 * steps then run through bwrap. 0 or -1 with the reason in status. */
/* A user's subordinate ids (/etc/subuid, /etc/subgid: "NAME:FIRST:COUNT")
 * that overlap the step range: that user could map one of them in a user
 * namespace of its own, become a step's uid on the host and read the
 * step's /proc (its environment holds secrets). */
static void sub_ids_overlap(const char *path, unsigned long long first,
                            unsigned long long count, char *who, size_t cap)
{
    FILE *f = fopen(path, "re");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char name[128];
        unsigned long long start, n;
        if (line[0] == '#' || sscanf(line, "%127[^:]:%llu:%llu", name, &start, &n) != 3)
            continue;
        if (start < first + count && first < start + n) {
            snprintf(who, cap, "the subordinate ids of %.64s (%llu-%llu) in %s", name,
                     start, start + n - 1, path);
            break;
        }
    }
    if (f)
        fclose(f);
}

static int uid_lock_open(void);

static int uid_range(void)
{
    unsigned long long first = RZ__SBX_UID_FIRST, count = RZ__SBX_UID_COUNT;
    const char *env = getenv("RHIZOS_SANDBOX_UIDS");
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        first = strtoull(env, &end, 10);
        if (errno || end == env || *end != ':' ||
            (count = strtoull(end + 1, &end, 10), errno || *end)) {
            status_add("RHIZOS_SANDBOX_UIDS=%s is not FIRST:COUNT; the "
                       "sandbox helper is not used", env);
            return -1;
        }
    }
    char range[64];
    snprintf(range, sizeof range, "%llu-%llu", first, first + count - 1);
    if (count == 0 || first == 0 || first + count > 0xffffffffull ||
        (first <= 65535 && first + count > 65534)) {
        status_add("the step uid range %s is empty, holds root or nobody, "
                   "or is too large; the sandbox helper is not used", range);
        return -1;
    }
    sb.uid_first = (uint32_t)first;
    sb.uid_count = (uint32_t)(count < MAX_CELLS ? count : MAX_CELLS);
    FILE *f = fopen("/etc/passwd", "re");
    struct passwd *pw;
    char who[160] = "";
    while (f && !who[0] && (pw = fgetpwent(f)) != NULL)
        if ((pw->pw_uid >= first && pw->pw_uid < first + count) ||
            (pw->pw_gid >= first && pw->pw_gid < first + count))
            snprintf(who, sizeof who, "user %.64s (%u) in /etc/passwd",
                     pw->pw_name, (unsigned)pw->pw_uid);
    if (f)
        fclose(f);
    f = fopen("/etc/group", "re");
    struct group *gr;
    while (f && !who[0] && (gr = fgetgrent(f)) != NULL)
        if (gr->gr_gid >= first && gr->gr_gid < first + count)
            snprintf(who, sizeof who, "group %.64s (%u) in /etc/group",
                     gr->gr_name, (unsigned)gr->gr_gid);
    if (f)
        fclose(f);
    if (!who[0])
        sub_ids_overlap("/etc/subuid", first, count, who, sizeof who);
    if (!who[0])
        sub_ids_overlap("/etc/subgid", first, count, who, sizeof who);
    if (who[0]) {
        char msg[300];
        snprintf(msg, sizeof msg, "the step uid range %s is used by %s; "
                 "set RHIZOS_SANDBOX_UIDS=FIRST:COUNT to a free range "
                 "(the sandbox helper is not used)", range, who);
        status_add("%s", msg);
        return -1;
    }
    if (uid_lock_open() != 0) {
        status_add("the step uids' lock file %s cannot be opened; the "
                   "sandbox helper is not used", RZ__SBX_UID_LOCK_DIR "/"
                   RZ__SBX_UID_LOCK_FILE);
        return -1;
    }
    return 0;
}

/* The steps' uids are the host's: two root runners on one host (two
 * nodes, a node and a CLI run) must not give the same one to their steps,
 * or a step of one could read the other's /proc (its environment). Each
 * uid is taken with an open-file-description lock on byte `uid` of one
 * host-wide file, held while a cell runs as it and dropped with the cell
 * (or by the kernel when the runner dies). The file is opened at the
 * probe: where it cannot be, the helper is not used. */
static int uid_lock_open(void)
{
    if (mkdir(RZ__SBX_UID_LOCK_DIR, 0755) != 0 && errno != EEXIST)
        return -1;
    sb.uid_lock = open(RZ__SBX_UID_LOCK_DIR "/" RZ__SBX_UID_LOCK_FILE,
                       O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    return sb.uid_lock >= 0 ? 0 : -1;
}

static int uid_lock_op(uint32_t uid, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
                        .l_start = (off_t)uid, .l_len = 1 };
    return fcntl(sb.uid_lock, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* A uid that NSS knows (LDAP, sssd: users /etc/passwd does not list,
 * which the probe's scan of the files cannot see); its name in `who`. */
static bool uid_known(uint32_t uid, char *who, size_t cap)
{
    char buf[4096];
    struct passwd pw, *pr = NULL;
    struct group gr, *gp = NULL;
    if (getpwuid_r((uid_t)uid, &pw, buf, sizeof buf, &pr) == 0 && pr) {
        snprintf(who, cap, "user %.64s", pr->pw_name);
        return true;
    }
    if (getgrgid_r((gid_t)uid, &gr, buf, sizeof buf, &gp) == 0 && gp) {
        snprintf(who, cap, "group %.64s", gp->gr_name);
        return true;
    }
    return false;
}

enum { UID_OURS, UID_TAKEN, UID_KNOWN };

/* Take `uid` for a cell: locked here, and no host user or group by that
 * number. */
static int uid_take(uint32_t uid)
{
    int e = uid_lock_op(uid, F_WRLCK);
    if (e == -EAGAIN || e == -EACCES)
        return UID_TAKEN;   /* another runner's */
    char who[80];
    if (e == 0 && uid_known(uid, who, sizeof who)) {
        (void)uid_lock_op(uid, F_UNLCK);
        return UID_KNOWN;
    }
    return e == 0 ? UID_OURS : UID_TAKEN;
}

/* Names for the ids a step can meet; nothing of the host's users. */
static void make_passwd(uid_t uid, gid_t gid)
{
    const char *fmt_user = "%s:x:%u:%u:%s:/nonexistent:/usr/sbin/nologin\n";
    char own[160] = "", own_g[80] = "";
    if (uid != 0 && uid != RZ__SBX_UID)
        snprintf(own, sizeof own, fmt_user, "rhizos", (unsigned)uid,
                 (unsigned)gid, "rhizos step");
    if (gid != 0 && gid != RZ__SBX_UID)
        snprintf(own_g, sizeof own_g, "rhizos:x:%u:\n", (unsigned)gid);
    sb.passwd = rz__asprintf("root:x:0:0:root:/root:/usr/sbin/nologin\n"
                             "nobody:x:%u:%u:nobody:/nonexistent:"
                             "/usr/sbin/nologin\n%s", RZ__SBX_UID,
                             RZ__SBX_UID, own);
    sb.group = rz__asprintf("root:x:0:\nnogroup:x:%u:\n%s", RZ__SBX_UID,
                            own_g);
}

/* ---- seccomp ---- */

#ifdef RZ_HAVE_SECCOMP
/* Refused with EPERM: debugging other processes, the kernel keyring,
 * mounts, eBPF, perf, loading kernels or modules, host administration. */
static const char *const denied_calls[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "keyctl", "add_key", "request_key",
    "mount", "umount", "umount2", "pivot_root", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    "bpf", "perf_event_open", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "reboot", "swapon", "swapoff", "syslog", "acct",
    "quotactl", "setns", "open_by_handle_at", "name_to_handle_at",
    "lookup_dcookie", "iopl", "ioperm", "settimeofday", "clock_settime",
    "clock_adjtime", "adjtimex", "vhangup",
};

static int deny_rules(scmp_filter_ctx ctx)
{
    for (size_t i = 0; i < RZ_ARRAY_LEN(denied_calls); i++) {
        int nr = seccomp_syscall_resolve_name(denied_calls[i]);
        if (nr != __NR_SCMP_ERROR &&
            seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0) != 0)
            return -1;
    }
    /* New user namespaces, also where bwrap cannot disable them: unshare
     * and clone by flag; clone3 hides its flags in memory, so it answers
     * ENOSYS and the C library falls back to clone. */
    const scmp_datum_t nu = CLONE_NEWUSER;
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, nu, nu)) != 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, nu, nu)) != 0)
        return -1;
    int nr3 = seccomp_syscall_resolve_name("clone3");
    if (nr3 != __NR_SCMP_ERROR &&
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr3, 0) != 0)
        return -1;
    return 0;
}

/* The same rules as a binary tree of syscall numbers, not a list: every
 * step's init installs the filter, and the kernel, at install, runs it
 * for each syscall number to cache which are always allowed; with the
 * list each allowed number walked all ~45 rules (an install took ~100 us
 * of the step's start, ~35 as a tree: benchmarks.md, session 13). A
 * libseccomp before 2.5 has no such setting and keeps the list. */
static void tree_order(scmp_filter_ctx ctx)
{
#if SCMP_VER_MAJOR > 2 || (SCMP_VER_MAJOR == 2 && SCMP_VER_MINOR >= 5)
    (void)seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
#else
    (void)ctx;
#endif
}

/* Compiled once; other architectures' calls (int 0x80) kill the step. */
static void build_seccomp(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int fd = -1;
    if (ctx)
        tree_order(ctx);
    if (!ctx || seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
                                 SCMP_ACT_KILL_PROCESS) != 0 ||
        deny_rules(ctx) != 0 ||
        (fd = memfd_create("rz-seccomp", MFD_CLOEXEC)) < 0 ||
        seccomp_export_bpf(ctx, fd) != 0)
        goto out;
    off_t len = lseek(fd, 0, SEEK_END);
    if (len <= 0 || len > 65536 || lseek(fd, 0, SEEK_SET) != 0 ||
        !(sb.bpf = rz__malloc((size_t)len)))
        goto out;
    if (read(fd, sb.bpf, (size_t)len) != len) {
        free(sb.bpf);
        sb.bpf = NULL;
        goto out;
    }
    sb.bpf_len = (size_t)len;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    if (!sb.bpf)
        status_add("%s", "no seccomp filter (libseccomp failed)");
}
#else
static void build_seccomp(void)
{
    status_add("%s", "no seccomp filter (built without libseccomp)");
}
#endif

/* ---- cgroups ---- */

static int write_at(const char *dir, const char *name, const char *value)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, value, strlen(value));
    int e = errno;
    close(fd);
    errno = e;
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static long long read_key(const char *dir, const char *file, const char *key)
{
    char p[PATH_MAX], buf[1024];
    snprintf(p, sizeof p, "%s/%s", dir, file);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    size_t kl = strlen(key);
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1
                                                      : NULL)
        if (strncmp(l, key, kl) == 0 && l[kl] == ' ')
            return strtoll(l + kl + 1, NULL, 10);
    return -1;
}

/* This process's cgroup path in the hierarchy holding `ctl` (v1), or the
 * unified one (ctl NULL). */
static char *own_cgroup(const char *ctl)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[1024];
    char *path = NULL;
    while (f && !path && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctls = c1 + 1;
        bool match = !ctl ? *ctls == '\0' : false;
        for (const char *t = ctls; ctl && *t;) {
            size_t len = strcspn(t, ",");
            if (len == strlen(ctl) && strncmp(t, ctl, len) == 0)
                match = true;
            t += len + (t[len] == ',');
        }
        if (match)
            path = rz__strdup(c2 + 1);
    }
    if (f)
        fclose(f);
    return path;
}

/* Mount point of the v1 hierarchy holding `ctl`, or of cgroup2 (NULL). */
static char *cgroup_mount(const char *ctl)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[2048];
    char *mnt = NULL;
    while (f && !mnt && fgets(line, sizeof line, f)) {
        char *fields[6] = { 0 }, *save = NULL, *t = strtok_r(line, " ", &save);
        for (int i = 0; t && i < 6; i++, t = strtok_r(NULL, " ", &save))
            fields[i] = t;
        while (t && strcmp(t, "-") != 0)
            t = strtok_r(NULL, " ", &save);
        char *fstype = t ? strtok_r(NULL, " ", &save) : NULL;
        char *src = fstype ? strtok_r(NULL, " ", &save) : NULL;
        char *opts = src ? strtok_r(NULL, " \n", &save) : NULL;
        if (!opts || !fields[4])
            continue;
        if (!ctl && strcmp(fstype, "cgroup2") == 0) {
            mnt = rz__strdup(fields[4]);
        } else if (ctl && strcmp(fstype, "cgroup") == 0) {
            for (char *o = strtok_r(opts, ",", &save); o;
                 o = strtok_r(NULL, ",", &save))
                if (strcmp(o, ctl) == 0)
                    mnt = rz__strdup(fields[4]);
        }
    }
    if (f)
        fclose(f);
    return mnt;
}

/* A child can be made (and removed) under `base`. */
static bool can_nest(const char *base)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/rz-probe-%ld", base, (long)getpid());
    if (mkdir(p, 0755) != 0)
        return false;
    rmdir(p);
    return true;
}

static char *cg_join(const char *mnt, const char *path)
{
    return rz__asprintf("%s%s", mnt, strcmp(path, "/") ? path : "");
}

static bool find_cgroup_v2(void)
{
    char *mnt = cgroup_mount(NULL), *path = own_cgroup(NULL);
    char *base = mnt && path ? cg_join(mnt, path) : NULL;
    free(mnt);
    free(path);
    if (!base)
        return false;
    char ctl[PATH_MAX], buf[256] = "";
    snprintf(ctl, sizeof ctl, "%s/cgroup.controllers", base);
    FILE *f = fopen(ctl, "re");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            buf[0] = '\0';
        fclose(f);
    }
    if (!strstr(buf, "memory") || !strstr(buf, "pids")) {
        free(base);   /* hybrid: the unified tree holds no controller */
        return false;
    }
    /* Children get the controllers only if this cgroup hands them down,
     * which it cannot while it holds processes (ours): then a delegated,
     * empty cgroup is needed, and we say so. */
    if (write_at(base, "cgroup.subtree_control", "+memory +pids") != 0 ||
        !can_nest(base)) {
        status_add("no cgroup for steps (cgroup v2 at %s does not delegate "
                   "memory and pids to children: run the node in a "
                   "delegated cgroup); no pids or memory cap", base);
        free(base);
        sb.cg_version = -1;
        return true;
    }
    (void)write_at(base, "cgroup.subtree_control", "+cpu");
    sb.cg_base[0] = base;
    sb.cg_version = 2;
    return true;
}

static void find_cgroup_v1(void)
{
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++) {
        char *mnt = cgroup_mount(cg_names[i]), *path = own_cgroup(cg_names[i]);
        char *base = mnt && path ? cg_join(mnt, path) : NULL;
        free(mnt);
        free(path);
        if (base && can_nest(base)) {
            sb.cg_base[i] = base;
            sb.cg_version = 1;
        } else {
            free(base);
            if (i != CG_CPU)
                status_add("no %s cgroup for steps (cannot create one under "
                           "this process's cgroup)", cg_names[i]);
        }
    }
}

static void cg_sweep(const char *base);

static void find_cgroups(void)
{
    if (!find_cgroup_v2())
        find_cgroup_v1();
    if (sb.cg_version < 0)
        sb.cg_version = 0;
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        if (sb.cg_base[i])
            cg_sweep(sb.cg_base[i]);
}

/* ---- the bwrap command line ---- */

/* A pipe holding `data`, for bwrap's --seccomp and --ro-bind-data (it
 * reads to EOF); -1 on failure. */
static int data_fd(const void *data, size_t len)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    ssize_t w = write(p[1], data, len);
    close(p[1]);
    if (w != (ssize_t)len) {
        close(p[0]);
        return -1;
    }
    return p[0];
}

/* Hand `fd` to bwrap; returns its number there, or -1 when full or fd<0. */
static int pass_fd(rz__sbx *s, int fd)
{
    if (fd < 0)
        return -1;
    if (s->n_fds >= RZ__SBX_MAX_FDS) {
        close(fd);
        return -1;
    }
    s->fds[s->n_fds] = fd;
    return 3 + (int)s->n_fds++;
}

static void push_fd(rz__sbx *s, rz__argv *a, const char *opt, int fd,
                    const char *dest)
{
    int n = pass_fd(s, fd);
    if (n < 0) {
        a->failed = true;
        return;
    }
    char num[16];
    snprintf(num, sizeof num, "%d", n);
    push3(a, opt, num, dest);
}

static void push_size(rz__argv *a, uint32_t mb)
{
    if (!sb.new_opts)
        return;
    rz__argv_push(a, "--size");
    rz__argv_push_own(a, rz__asprintf("%llu", (unsigned long long)mb << 20));
}

/* The fixed part: namespaces, identity, the system read-only, /etc's
 * allow-list, /proc, /dev, a bounded /tmp, the seccomp filter. */
static void base_args(rz__sbx *s, rz__argv *a, int network)
{
    static const char *const roots[] = { "/bin", "/sbin", "/lib", "/lib32",
                                         "/lib64", "/libx32" };
    rz__argv_push(a, sb.bwrap);
    rz__argv_push(a, "--unshare-all");
    rz__argv_push(a, "--unshare-user");
    if (network)
        rz__argv_push(a, "--share-net");
    if (sb.new_opts)
        rz__argv_push(a, "--disable-userns");
    if (sb.inner_uid) {
        push3(a, "--uid", "65534", NULL);
        push3(a, "--gid", "65534", NULL);
        push3(a, "--cap-drop", "ALL", NULL);   /* the bounding set too */
    }
    rz__argv_push(a, "--die-with-parent");
    rz__argv_push(a, "--new-session");
    push3(a, "--ro-bind", "/usr", "/usr");
    for (size_t i = 0; i < RZ_ARRAY_LEN(roots); i++) {
        struct stat st;
        char target[PATH_MAX];
        if (lstat(roots[i], &st) != 0)
            continue;
        ssize_t n = S_ISLNK(st.st_mode)
                        ? readlink(roots[i], target, sizeof target - 1) : -1;
        if (n > 0) {
            target[n] = '\0';
            push3(a, "--symlink", target, roots[i]);
        } else if (S_ISDIR(st.st_mode)) {
            push3(a, "--ro-bind", roots[i], roots[i]);
        }
    }
    for (size_t i = 0; i < sb.n_etc; i++)
        push3(a, "--ro-bind-try", sb.etc[i], sb.etc[i]);
    for (size_t i = 0; network && i < RZ_ARRAY_LEN(etc_net); i++) {
        char p[64];
        snprintf(p, sizeof p, "/etc/%s", etc_net[i]);
        push3(a, "--ro-bind-try", p, p);
    }
    if (sb.passwd && sb.group) {
        push_fd(s, a, "--ro-bind-data",
                data_fd(sb.passwd, strlen(sb.passwd)), "/etc/passwd");
        push_fd(s, a, "--ro-bind-data",
                data_fd(sb.group, strlen(sb.group)), "/etc/group");
    }
    push3(a, "--proc", "/proc", NULL);
    push3(a, "--dev", "/dev", NULL);
    push_size(a, SHM_MB);
    push3(a, "--tmpfs", "/dev/shm", NULL);
    push_size(a, s->scratch_mb ? s->scratch_mb : RZ__SBX_DEFAULT_SCRATCH_MB);
    push3(a, "--tmpfs", "/tmp", NULL);
    if (sb.bpf) {
        int fd = data_fd(sb.bpf, sb.bpf_len);
        push_fd(s, a, "--seccomp", fd, NULL);
    }
}

/* RZ_OUTPUT_DIR a tmpfs of files_cap bytes (and a page, so a full one
 * is over the cap): bwrap tells its child's pid on --info-fd and waits on
 * --block-fd until rz__sbx_files_attach has opened the tmpfs. Without
 * --size (bwrap < 0.8) the host's folder is bound: -1. */
static int files_tmpfs(rz__sbx *s, rz__argv *a, const rz__sbx_opts *o, char *files)
{
    int info[2], block[2];
    if (!sb.new_opts || !o->files_cap)
        return -1;
    if (pipe2(info, O_CLOEXEC) != 0)
        return -1;
    /* A socket: the byte that lets it go is sent without a SIGPIPE should
     * bwrap be gone. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, block) != 0) {
        close(info[0]);
        close(info[1]);
        return -1;
    }
    s->files_info = info[0];
    s->files_block = block[1];
    s->files = files;
    s->file_cap = o->file_cap ? o->file_cap : o->files_cap;
    s->files_cap = o->files_cap;
    push_fd(s, a, "--info-fd", info[1], NULL);
    push_fd(s, a, "--block-fd", block[0], NULL);
    rz__argv_push(a, "--size");
    rz__argv_push_own(a, rz__asprintf("%llu", (unsigned long long)o->files_cap +
                                      (unsigned long long)sysconf(_SC_PAGESIZE)));
    push3(a, "--tmpfs", files, NULL);
    return 0;
}

/* The scratch folder: a bounded tmpfs at its path, the host's entries
 * bound into it (read-only), the outputs file writable. What the step
 * writes beyond that stays in its memory-charged tmpfs. */
static int scratch_args(rz__sbx *s, rz__argv *a, const rz__sbx_opts *o)
{
    push_size(a, s->scratch_mb);
    push3(a, "--tmpfs", o->scratch, NULL);
    DIR *d = opendir(o->scratch);
    if (!d)
        return rz__error(RZ_EIO, "scratch %s: %s", o->scratch,
                         strerror(errno));
    size_t slen = strlen(o->scratch);
    bool out_top = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = rz__asprintf("%s/%s", o->scratch, e->d_name);
        bool is_out = p && o->output_path && strcmp(p, o->output_path) == 0;
        out_top |= is_out;
        if (p)
            push3(a, is_out ? "--bind" : "--ro-bind", p, p);
        free(p);
    }
    closedir(d);
    if (o->output_path && !out_top &&
        strncmp(o->output_path, o->scratch, slen) == 0 &&
        o->output_path[slen] == '/')
        push3(a, "--bind", o->output_path, o->output_path);
    /* The file outputs' folder beside it (RZ_OUTPUT_DIR), writable. */
    const char *slash = o->output_path ? strrchr(o->output_path, '/') : NULL;
    char *files = slash ? rz__asprintf("%.*s/files", (int)(slash - o->output_path),
                                       o->output_path) : NULL;
    struct stat fst;
    if (files && lstat(files, &fst) == 0 && S_ISDIR(fst.st_mode)) {
        if (files_tmpfs(s, a, o, files) == 0)
            files = NULL;   /* s->files now */
        else
            push3(a, "--bind", files, files);
    }
    free(files);
    if (a->failed)
        return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

/* ---- the step's cgroup ---- */

/* A cell's memory limit about to be set to `mem`: the ended step's /tmp
 * (tmpfs, charged to the cell, not reclaimable without swap) may still be
 * on its way out, its mount namespace let go of by the spare (the cell's
 * spare-first order) while we go on. Lowered under it, the limit fails
 * (v1: EBUSY) or kills the cell (v2: OOM); so wait for it, 1 ms a look,
 * for at most MEM_SETTLE_TRIES, then write and let the kernel say. */
static void cg_mem_settle(const char *dir, unsigned long long mem)
{
    for (int t = 0; t < MEM_SETTLE_TRIES; t++) {
        long long shm = read_key(dir, "memory.stat", "shmem");
        if (shm < 0 || (unsigned long long)shm + MEM_SETTLE_ROOM <= mem)
            return;
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL);
    }
}

int (*rz__sbx_mem_limit_seam)(void);

static int cg_limits(const rz__sbx *s, const rz__sbx_opts *o,
                     const char *dir, int kind)
{
    char v[32];
    unsigned long long mem = (unsigned long long)s->memory_mb << 20;
    (void)o;
    uint32_t cpus = s->cpus ? s->cpus : 1;
    if (sb.cg_version == 2 || kind == CG_MEMORY) {
        cg_mem_settle(dir, mem);
        if (rz__sbx_mem_limit_seam && rz__sbx_mem_limit_seam() != 0) {
            errno = EBUSY;
            return -1;
        }
    }
    if (sb.cg_version == 2) {
        snprintf(v, sizeof v, "%llu", mem);
        if (write_at(dir, "memory.max", v) != 0)
            return -1;
        (void)write_at(dir, "memory.swap.max", "0");
        snprintf(v, sizeof v, "%u", s->pids_max);
        if (write_at(dir, "pids.max", v) != 0)
            return -1;
        snprintf(v, sizeof v, "%u", cpus > 100 ? 10000u : 100u * cpus);
        (void)write_at(dir, "cpu.weight", v);
        return 0;
    }
    switch (kind) {
    case CG_MEMORY:
        snprintf(v, sizeof v, "%llu", mem);
        /* memsw may never be below the limit: raised first when a reused
         * cell's limit goes up, lowered after when it goes down. */
        (void)write_at(dir, "memory.memsw.limit_in_bytes", v);
        if (write_at(dir, "memory.limit_in_bytes", v) != 0)
            return -1;
        (void)write_at(dir, "memory.memsw.limit_in_bytes", v);  /* no swap */
        return 0;
    case CG_PIDS:
        snprintf(v, sizeof v, "%u", s->pids_max);
        return write_at(dir, "pids.max", v);
    default:
        snprintf(v, sizeof v, "%u", cpus > 256 ? 262144u : 1024u * cpus);
        return write_at(dir, "cpu.shares", v);
    }
}

static void kill_members(const char *dir);

/* Empty `dir` of tasks and remove it; 0 once it is gone. */
static int cg_remove(const char *dir)
{
    for (int t = 0; t < RMDIR_TRIES; t++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY && errno != EAGAIN)
            return -1;
        kill_members(dir);
        struct timespec ms = { 0, 1000000L };
        nanosleep(&ms, NULL);
    }
    return -1;
}

/* The pid in a folder name of ours: a cell's rz-PID-SEQ, or can_nest's
 * rz-probe-PID (left when exit cut a probe short there); 0 if neither. */
static long cg_maker(const char *name)
{
    long pid;
    unsigned seq;
    char end;
    if (sscanf(name, "rz-%ld-%u%c", &pid, &seq, &end) == 2 ||
        sscanf(name, "rz-probe-%ld%c", &pid, &end) == 1)
        return pid;
    return 0;
}

/* A runner killed before its steps ended (kill -9) leaves their cgroups
 * behind, named rz-PID-SEQ: remove those of processes that are gone, so
 * they neither pile up nor collide with a later process given that PID. */
static void cg_sweep(const char *base)
{
    DIR *d = opendir(base);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        long pid = cg_maker(e->d_name);
        if (pid <= 0 || pid == (long)getpid() ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;   /* not ours, or its process lives */
        char *dir = rz__asprintf("%s/%s", base, e->d_name);
        if (dir)
            (void)cg_remove(dir);   /* best effort: a stale, empty folder */
        free(dir);
    }
    if (d)
        closedir(d);
}

/* The file a process writes "0" to, to join a cgroup (rz__sbx.procs).
 * On v1, `tasks`: it moves the writing thread alone, which for the
 * one-thread processes that join (a zygote, an init, bwrap's child before
 * its exec) is all of them, and takes no global lock. A write to v1's
 * cgroup.procs moves a whole process under the kernel's threadgroup lock,
 * whose writer waits for an RCU grace period (8 or 16 ms here even when
 * idle): at one step that wait was the longest thing in series. v2 has
 * only cgroup.procs (a thread moves alone only in a threaded cgroup). */
static const char *join_file(void)
{
    return sb.cg_version == 1 ? "tasks" : "cgroup.procs";
}

/* `limits`: write the step's limits (s's) too; false: the kernel's (none). */
static int cgroup_create(rz__sbx *s, const rz__sbx_opts *o, bool limits)
{
    unsigned seq = atomic_fetch_add(&cg_seq, 1);
    for (int k = 0; k < RZ__SBX_CG_MAX; k++) {
        if (!sb.cg_base[k])
            continue;
        char *dir = rz__asprintf("%s/rz-%ld-%u", sb.cg_base[k],
                                 (long)getpid(), seq);
        if (!dir)
            return rz__error(RZ_ENOMEM, "out of memory");
        /* Our SEQs are unique: an existing folder is a dead process's
         * that had our PID. */
        int made = mkdir(dir, 0755);
        if (made != 0 && errno == EEXIST && cg_remove(dir) == 0)
            made = mkdir(dir, 0755);
        if (made != 0) {
            int e = errno;
            free(dir);
            return rz__error(RZ_EIO, "cgroup for the step: %s", strerror(e));
        }
        s->cg[s->n_cg] = dir;
        s->cg_kind[s->n_cg] = k;
        char procs[PATH_MAX];
        snprintf(procs, sizeof procs, "%s/%s", dir, join_file());
        s->procs[s->n_cg] = open(procs, O_WRONLY | O_CLOEXEC);
        s->n_cg++;
        if (s->procs[s->n_cg - 1] < 0 ||
            (limits && cg_limits(s, o, dir, k) != 0))
            return rz__error(RZ_EIO, "cgroup %s: %s", dir, strerror(errno));
    }
    return RZ_OK;
}

/* ---- cells: the helper's cgroups, one per concurrent step, reused ----
 *
 * A cell is a set of cgroups with a process of the helper's inside (the
 * zygote) that starts steps, which are born there: a step's start makes,
 * joins and removes no cgroup (a process's move through v1's
 * cgroup.procs waits for an RCU grace period, 4-13 ms a step on this
 * loaded machine; see join_file).
 * The limits are written per step; the OOM and pids counters are read
 * before and after; leftovers are killed at the end as before. */

typedef struct cell {
    char *cg[RZ__SBX_CG_MAX];
    int kind[RZ__SBX_CG_MAX];
    size_t n_cg;
    int zsock;
    pid_t zpid;
    pid_t spare;    /* its zygote's spare init, our child; -1: none */
    uint32_t uid;   /* its steps' host uid and gid, its own */
    bool locked;    /* uid_take'n: unlocked once nothing runs as it */
    bool busy;
    /* The limits its cgroups hold (only the runner writes them): a step
     * with the same limits as the last rewrites none (5 writes, and a
     * memory limit written may make the kernel reclaim). */
    bool known;
    uint32_t memory_mb, pids_max, cpus;
} cell;

static pthread_mutex_t cells_mu = PTHREAD_MUTEX_INITIALIZER;
static cell *cells[MAX_CELLS];
/* A slot being set up or torn down: its uid is nobody else's meanwhile;
 * one whose processes could not be proven dead keeps it for good. */
static cell cell_reserved = { .busy = true, .zpid = -1 };

/* Everything of the cell killed and gone: its zygote (our child) reaped,
 * each cgroup emptied and removed. false: some process may still run as
 * the cell's uid, whose slot must then never be given out again. Without
 * cgroups the zygote is all there is: a step's init is our child, reaped
 * by the process adapter, and takes its namespace's processes with it. */
static bool cell_free(cell *c)
{
    if (!c)
        return true;
    if (c->zpid > 0) {
        kill(c->zpid, SIGKILL);
        while (waitpid(c->zpid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    /* After the zygote: it makes no spare any more, and its notes of
     * those it made are all queued. */
    rz__sbx_helper_cell_end(c->zsock, &c->spare);
    if (c->zsock >= 0)
        close(c->zsock);
    bool gone = true;
    for (size_t i = 0; i < c->n_cg; i++) {
        gone &= cg_remove(c->cg[i]) == 0;   /* kills what it holds */
        free(c->cg[i]);
    }
    if (gone && c->locked)
        (void)uid_lock_op(c->uid, F_UNLCK);
    free(c);
    return gone;
}

/* The cell's memory usage and limit files handed to its process, which
 * reads them as a step ends (rz__sbx_helper_cell_memory); none where
 * there is no memory cgroup. */
static void cell_memory_files(const cell *c)
{
    for (size_t k = 0; k < c->n_cg; k++) {
        if (sb.cg_version != 2 && c->kind[k] != CG_MEMORY)
            continue;
        char u[PATH_MAX], l[PATH_MAX];
        snprintf(u, sizeof u, "%s/%s", c->cg[k], sb.cg_version == 2
                 ? "memory.current" : "memory.usage_in_bytes");
        snprintf(l, sizeof l, "%s/%s", c->cg[k], sb.cg_version == 2
                 ? "memory.max" : "memory.limit_in_bytes");
        int uf = open(u, O_RDONLY | O_CLOEXEC), lf = open(l, O_RDONLY | O_CLOEXEC);
        if (uf >= 0 && lf >= 0)
            rz__sbx_helper_cell_memory(c->zsock, uf, lf);
        if (uf >= 0)
            close(uf);
        if (lf >= 0)
            close(lf);
        return;
    }
}

/* A cell with the first step's limits (`s`'s) from the start: its process
 * joins the cgroups before this returns, and a limit of 0 there (memory:
 * every page it touched was an OOM kill) would end it. */
static int cell_new(const rz__sbx *s, const rz__sbx_opts *o, uint32_t uid,
                    cell **out, bool *retire)
{
    rz__sbx tmp;
    memset(&tmp, 0, sizeof tmp);
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        tmp.procs[i] = -1;
    tmp.files_info = tmp.files_block = tmp.files_fd = -1;
    tmp.memory_mb = s->memory_mb;
    tmp.pids_max = s->pids_max;
    tmp.cpus = s->cpus;
    cell *c = rz__calloc(1, sizeof *c);
    if (!c)
        return rz__error(RZ_ENOMEM, "out of memory");
    c->zsock = -1;
    c->spare = -1;
    c->uid = uid;
    c->locked = true;
    int rc = sb.cg_version > 0 ? cgroup_create(&tmp, o, true) : RZ_OK;
    c->n_cg = tmp.n_cg;
    for (size_t i = 0; i < tmp.n_cg; i++) {
        c->cg[i] = tmp.cg[i];
        c->kind[i] = tmp.cg_kind[i];
    }
    if (rc == RZ_OK) {
        int e = rz__sbx_helper_cell(tmp.procs, tmp.n_cg, uid, &c->zsock,
                                    &c->zpid);
        if (e != 0)
            rc = rz__error(RZ_EEXEC, "the sandbox helper cannot start a "
                           "process for the step's cgroup: %s; step not run",
                           strerror(-e));
    }
    rz__sbx_started(&tmp);   /* closes the join-file descriptors */
    if (rc != RZ_OK) {
        *retire = !cell_free(c);
        return rc;
    }
    cell_memory_files(c);
    c->known = sb.cg_version > 0;   /* written above: not again */
    c->memory_mb = tmp.memory_mb;
    c->pids_max = tmp.pids_max;
    c->cpus = tmp.cpus;
    *out = c;
    return RZ_OK;
}

static long long cg_counter(const char *dir, int kind, bool oom)
{
    if (oom && (sb.cg_version == 2 || kind == CG_MEMORY))
        return read_key(dir, sb.cg_version == 2 ? "memory.events"
                                                : "memory.oom_control",
                        "oom_kill");
    if (!oom && (sb.cg_version == 2 || kind == CG_PIDS))
        return read_key(dir, "pids.events", "max");
    return -1;
}

/* A new cell, busy, in a free slot whose uid is ours alone (uid_take):
 * a uid another runner holds is passed over this time; one a host user
 * or group has is never used (its slot stays reserved). */
static int cell_add(rz__sbx *s, const rz__sbx_opts *o, size_t *slot)
{
    const size_t max = sb.uid_count;
    bool passed[MAX_CELLS] = { false };
    size_t n_passed = 0;
    for (;;) {
        size_t f = max;
        pthread_mutex_lock(&cells_mu);
        for (size_t k = 0; k < max && f == max; k++)
            if (!cells[k] && !passed[k])
                f = k;
        if (f < max)
            cells[f] = &cell_reserved;   /* its uid is being set up */
        pthread_mutex_unlock(&cells_mu);
        if (f == max)
            return rz__error(RZ_ESTATE, "too many sandboxed steps at once "
                             "(%zu step uids, %zu of them held by other "
                             "runners on this host)", max, n_passed);
        uint32_t uid = sb.uid_first + (uint32_t)f;
        int t = uid_take(uid);
        cell *c = NULL;
        bool retire = t == UID_KNOWN;
        int rc = t == UID_OURS ? cell_new(s, o, uid, &c, &retire) : RZ_OK;
        if (rc == RZ_OK && c)
            c->busy = true;
        pthread_mutex_lock(&cells_mu);
        cells[f] = c ? c : retire ? &cell_reserved : NULL;
        pthread_mutex_unlock(&cells_mu);
        if (c) {
            *slot = f;
            return RZ_OK;
        }
        if (rc != RZ_OK)
            return rc;
        passed[f] = true;
        n_passed += t == UID_TAKEN;
    }
}

/* ---- the first cell, made ahead ----
 *
 * A cell's zygote joins its cgroups as it starts: with the cell's setup
 * that was paid at the first step. The probe makes the first cell's
 * cgroups (with no limits: the first step's cell_take writes its own,
 * `known` false) before it starts the helper, which forks the cell's
 * zygote into them before it builds its root: the zygote's fork and
 * moves run beside the root's making and the runner's start. Once the
 * helper is up the probe gives that zygote the uid the first step's cell
 * would have had (the lowest this runner can take; the probe's step gets
 * the next). */

static void sbx_blank(rz__sbx *s)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        s->procs[i] = -1;
    s->files_info = s->files_block = s->files_fd = s->pid_ns = -1;
}

static void probe_uid_drop(uint32_t uid);

/* The early cgroups no cell took: the zygote reaped, the folders gone. */
static void ahead_drop(rz__sbx *t)
{
    rz__sbx_helper_early_drop();
    for (size_t i = 0; i < t->n_cg; i++) {
        (void)cg_remove(t->cg[i]);
        free(t->cg[i]);
        t->cg[i] = NULL;
    }
    t->n_cg = 0;
}

/* The early zygote made the cell of `uid` (taken, its slot reserved),
 * with t's cgroups (taken from t); else both let go of. */
static void ahead_take(rz__sbx *t, uint32_t uid)
{
    cell *c = rz__calloc(1, sizeof *c);
    if (!c) {
        ahead_drop(t);
        probe_uid_drop(uid);
        return;
    }
    c->zsock = -1;
    c->spare = -1;
    c->uid = uid;
    c->locked = true;
    c->n_cg = t->n_cg;
    for (size_t i = 0; i < t->n_cg; i++) {
        c->cg[i] = t->cg[i];
        c->kind[i] = t->cg_kind[i];
        t->cg[i] = NULL;
    }
    t->n_cg = 0;
    bool retire = false;
    if (rz__sbx_helper_cell_early(uid, &c->zsock, &c->zpid) != 0) {
        retire = !cell_free(c);   /* its zygote reaped: the cgroups empty */
        c = NULL;
    } else {
        cell_memory_files(c);
    }
    pthread_mutex_lock(&cells_mu);
    cells[uid - sb.uid_first] = c ? c : retire ? &cell_reserved : NULL;
    pthread_mutex_unlock(&cells_mu);
}

/* Cell `c`'s limits set for this step, its counters' values before it
 * noted; RZ_OK or an error, *busy set when a memory limit was refused for
 * what the cell still holds (cgroup v1's EBUSY: an ended step's /tmp
 * still charged to it past cg_mem_settle's wait). */
static int cell_limits(rz__sbx *s, const rz__sbx_opts *o, cell *c, bool *busy)
{
    bool same = c->known && c->memory_mb == s->memory_mb &&
                c->pids_max == s->pids_max && c->cpus == s->cpus;
    c->known = false;   /* until every write below has been done */
    for (size_t k = 0; k < c->n_cg; k++) {
        s->cg[k] = c->cg[k];
        s->cg_kind[k] = c->kind[k];
        if (!same && cg_limits(s, o, c->cg[k], c->kind[k]) != 0) {
            *busy = errno == EBUSY;
            return rz__error(RZ_EIO, "cgroup %s: %s", c->cg[k],
                             strerror(errno));
        }
        long long v = cg_counter(c->cg[k], c->kind[k], true);
        s->oom0 = v > s->oom0 ? v : s->oom0;
        v = cg_counter(c->cg[k], c->kind[k], false);
        s->pids0 = v > s->pids0 ? v : s->pids0;
    }
    c->memory_mb = s->memory_mb;
    c->pids_max = s->pids_max;
    c->cpus = s->cpus;
    c->known = true;
    return RZ_OK;
}

static void cell_release(rz__sbx *s, bool drop);

/* A free cell (made when none is), its limits set for this step. A cell
 * whose memory cannot be lowered yet (what its last step left, on its way
 * out, slower than the settle's wait) is dropped and a new one made: the
 * step starts all the same, at most one cell later. */
static int cell_take(rz__sbx *s, const rz__sbx_opts *o)
{
    const size_t max = sb.uid_count;   /* one uid per cell */
    for (int fresh = 0;; fresh++) {
        size_t i = fresh ? max : 0;
        pthread_mutex_lock(&cells_mu);
        while (i < max && !(cells[i] && !cells[i]->busy))   /* not reserved */
            i++;
        if (i < max)
            cells[i]->busy = true;
        pthread_mutex_unlock(&cells_mu);
        if (i == max) {
            int rc = cell_add(s, o, &i);
            if (rc != RZ_OK)
                return rc;
        }
        s->in_cell = true;
        s->cell = i;
        s->n_cg = cells[i]->n_cg;
        s->oom0 = s->pids0 = 0;
        bool busy = false;
        int rc = cell_limits(s, o, cells[i], &busy);
        if (rc == RZ_OK || !busy || fresh)
            return rc;
        cell_release(s, true);
    }
}

/* Give the cell back (or drop it, its zygote gone); s forgets it. */
static void helper_end_if_idle(void);

static void cell_release(rz__sbx *s, bool drop)
{
    if (!s->in_cell)
        return;
    pthread_mutex_lock(&cells_mu);
    cell *c = cells[s->cell];
    if (drop)
        cells[s->cell] = &cell_reserved;   /* until its processes are dead */
    else
        c->busy = false;
    pthread_mutex_unlock(&cells_mu);
    if (drop && cell_free(c)) {
        pthread_mutex_lock(&cells_mu);
        cells[s->cell] = NULL;
        pthread_mutex_unlock(&cells_mu);
    }
    for (size_t k = 0; k < s->n_cg; k++)
        s->cg[k] = NULL;
    s->n_cg = 0;
    s->in_cell = false;
    helper_end_if_idle();
}

size_t rz__sbx_cell_pids(pid_t *out, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&cells_mu);
    for (size_t i = 0; i < MAX_CELLS && n < max; i++)
        if (cells[i] && cells[i] != &cell_reserved && cells[i]->zpid > 0)
            out[n++] = cells[i]->zpid;
    pthread_mutex_unlock(&cells_mu);
    return n;
}

static void kill_members_but(const char *dir, pid_t keep, pid_t keep2,
                             uint64_t only_ns);

/* What the cell's counters say of this step; its leftovers killed: every
 * member of its pid namespace (where a step's processes all are: a step
 * can make no namespace, nor join one), never its zygote nor the spare
 * init the zygote makes for the next step as soon as this one's init has
 * ended (a namespace of its own, and maybe not yet noted to us); with the
 * step's namespace unknown, all but the zygote and the noted spare. They
 * are found in the first of the cell's cgroups: every process of a cell
 * descends from its zygote, which joined them all, and none can leave one
 * (that is a write to a root-owned cgroup.procs, and a step is not root
 * and has no capability). Then the zygote may make the next spare, if it
 * has not. */
static void cell_finish(rz__sbx *s, rz__sbx_report *r)
{
    pid_t zpid = cells[s->cell]->zpid, spare = cells[s->cell]->spare;
    for (size_t k = 0; k < s->n_cg; k++) {
        long long oom = cg_counter(s->cg[k], s->cg_kind[k], true);
        long long pids = cg_counter(s->cg[k], s->cg_kind[k], false);
        if (r && oom > s->oom0)
            r->oom = true;
        if (r && pids > s->pids0)
            r->pids_hit = true;
    }
    struct stat ns;
    if (s->n_cg > 0)
        kill_members_but(s->cg[0], zpid, spare,
                         s->pid_ns >= 0 && fstat(s->pid_ns, &ns) == 0
                             ? (uint64_t)ns.st_ino : 0);
    rz__sbx_helper_cell_done(cells[s->cell]->zsock);
    cell_release(s, false);
}

/* ---- the probe ---- */

/* The sandbox check's programs (see "the helper's check"): in a step's
 * sandbox (NULL: the helper's own, rz__sbx_true, in its root: it starts
 * no libc; /bin/true where there is none), and in the helper's own step;
 * tests set others. */
static const char *check_in_step, *check_alone = "/bin/true";

/* rz__sbx_test_probe_hold (tests only): where the probe stops once. */
static int hold_where, hold_note = -1, hold_fd = -1;

void rz__sbx_test_probe_hold(int where, int note, int hold)
{
    hold_where = where;
    hold_note = note;
    hold_fd = hold;
}

static void probe_hold(int where, const char *what)
{
    if (hold_where != where)
        return;
    hold_where = 0;
    char c;
    if (write(hold_note, what, strlen(what) + 1) > 0)
        while (read(hold_fd, &c, 1) < 0 && errno == EINTR)
            ;
}

/* Run `bwrap <base> -- true` the way a step runs. */
static bool try_bwrap(void)
{
    rz__sbx s;
    memset(&s, 0, sizeof s);
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        s.procs[i] = -1;
    s.files_info = s.files_block = s.files_fd = -1;
    rz__argv a = { 0 };
    base_args(&s, &a, 0);
    push3(&a, "--chdir", "/", NULL);
    rz__argv_push(&a, "--");
    rz__argv_push(&a, "true");
    bool ok = false;
    pid_t pid = a.failed ? -1 : fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
            dup2(null, 2) < 0)
            _exit(127);
        int from = rz__sbx_enter(&s);
        if (from < 0)
            _exit(127);
        for (int fd = from; fd < 1024; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
        char *envp[] = { "PATH=" DEFAULT_PATH, NULL };
        execve(sb.bwrap, a.v, envp);
        _exit(127);
    }
    int status = -1;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    ok = pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    rz__sbx_started(&s);
    rz__argv_free(&a);
    return ok;
}

static void probe_uid_drop(uint32_t uid)
{
    (void)uid_lock_op(uid, F_UNLCK);
    pthread_mutex_lock(&cells_mu);
    cells[uid - sb.uid_first] = NULL;
    pthread_mutex_unlock(&cells_mu);
}

/* A uid no other runner's step has, from slot `from` on, its slot
 * reserved; 0 if none. */
static uint32_t uid_reserve(uint32_t from)
{
    for (uint32_t k = from; k < sb.uid_count; k++)
        if (uid_take(sb.uid_first + k) == UID_OURS) {
            pthread_mutex_lock(&cells_mu);
            cells[k] = &cell_reserved;
            pthread_mutex_unlock(&cells_mu);
            return sb.uid_first + k;
        }
    return 0;
}

/* The helper started, its early zygote forked into *cg's cgroups (made
 * by the probe; none without cgroups or if they could not be made:
 * `early` false), and the first cell's uid reserved (*uid) while it
 * builds its root: its look-up through NSS loads libraries. false: no
 * helper, no uid. */
static bool helper_up(rz__sbx *cg, bool early, uint32_t *uid)
{
    rz__sbx_tmpl t = { sb.etc, sb.n_etc, sb.passwd, sb.group, sb.bpf,
                       sb.bpf_len };
    *uid = 0;
    if (!sb.passwd || !sb.group) {
        rz__sbx_started(cg);
        return false;
    }
    bool up = rz__sbx_helper_start(&t, early, cg->procs, cg->n_cg) == 0;
    rz__sbx_started(cg);   /* the zygote has its own copies */
    *uid = up ? uid_reserve(0) : 0;
    probe_hold(RZ__SBX_HOLD_WAITING, "root");
    up = up && *uid && rz__sbx_helper_ready() == 0;
    if (!up && *uid)
        probe_uid_drop(*uid);
    if (!up)
        *uid = 0;
    return up;
}

/* Run the check's program through the helper the way a step runs (no
 * cell, no limits), as `uid`, in the folder `dir`. */
static bool probe_step(uint32_t uid, const char *dir)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC), ep[2] = { -1, -1 };
    bool ok = false;
    if (null >= 0 && pipe2(ep, O_CLOEXEC) == 0) {
        char *argv[] = { "true", NULL }, *envp[] = { NULL };
        rz__sbx s;
        sbx_blank(&s);
        s.helper = true;
        rz__sbx_launch l;
        memset(&l, 0, sizeof l);
        l.scratch = dir;
        l.uid = uid;
        l.exe = check_alone;
        l.argv = argv;
        l.envp = envp;
        l.fsize.rlim_cur = l.fsize.rlim_max = RLIM_INFINITY;
        l.nofile.rlim_cur = l.nofile.rlim_max = 64;
        int stdio[3] = { null, null, null };
        pid_t pid = -1;
        int rc = rz__sbx_spawn(&pid, &s, &l, stdio, ep[1]);
        close(ep[1]);
        int e = 0;
        ssize_t n = read(ep[0], &e, sizeof e);
        int status = -1;
        if (rc == RZ_OK)
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        ok = rc == RZ_OK && n == 0 && WIFEXITED(status) &&
             WEXITSTATUS(status) == 0;
        close(ep[0]);
    }
    if (null >= 0)
        close(null);
    return ok;
}

/* Start the helper, its first cell made ahead (see above) in *cg's
 * cgroups. Whether its steps can run is the first steps' check (see "the
 * helper's check"). */
static bool try_helper(rz__sbx *cg, bool early)
{
    uint32_t uid = 0;
    if (!helper_up(cg, early, &uid)) {
        ahead_drop(cg);
        return false;
    }
    ahead_take(cg, uid);
    return true;
}

static void cells_drop_idle(void);

/* Whether bwrap works here: 0.8's options first; then without them
 * (older bwrap: seccomp still refuses user namespaces). */
static bool probe_bwrap(bool root)
{
    if (!sb.bwrap) {
        status_add("%s", "bubblewrap not found");
        return false;
    }
    sb.inner_uid = root;
    bool ok = false;
    for (int n = 1; n >= 0 && !ok; n--) {
        sb.new_opts = n;
        ok = try_bwrap();
    }
    if (!ok)
        status_add("%s", "bubblewrap cannot create a sandbox here (no user "
                   "namespaces?)");
    else if (!sb.new_opts)
        status_add("%s", "bubblewrap older than 0.8: no --disable-userns, "
                   "no tmpfs size limits (seccomp refuses user namespaces)");
    return ok;
}

static void probe(void)
{
    sb.bwrap = find_bwrap();
    bool root = geteuid() == 0;
    /* As root, the helper: cheaper, and the step is nobody on the host
     * too. RHIZOS_SANDBOX=bwrap keeps bwrap (for comparison). */
    const char *want = getenv("RHIZOS_SANDBOX");
    bool helper = root && !(want && strcmp(want, "bwrap") == 0);
    find_cgroups();
    sb.cg_saved = sb.cg_version;
    /* The first cell's cgroups (see "the first cell, made ahead").
     * Without them, the first step makes its cell, or says why not. */
    rz__sbx cg;
    sbx_blank(&cg);
    bool early = helper && (sb.cg_version <= 0 ||
                            cgroup_create(&cg, NULL, false) == RZ_OK);
    make_passwd(root ? RZ__SBX_UID : geteuid(), root ? RZ__SBX_UID : getegid());
    find_etc();
    build_seccomp();
    /* The helper's steps' network namespaces: one per step (unset,
     * "fresh", and anything else: the tighter one), or a cell's, reused
     * while empty ("cell": faster, but a later step can read the earlier
     * ones' loopback counters; docs/security.md). The helper reads it at
     * each of its starts. */
    const char *net = getenv("RHIZOS_SANDBOX_NET");
    if (net && *net && strcmp(net, "cell") != 0 && strcmp(net, "fresh") != 0)
        status_add("RHIZOS_SANDBOX_NET=%s is not cell or fresh; each step "
                   "gets a fresh network namespace", net);
    if (helper && uid_range() == 0) {
        sb.ok = try_helper(&cg, early);
        sb.helper = sb.ok;
        if (sb.ok)
            return;
        cells_drop_idle();   /* the one made ahead, if it was */
        status_add("%s", "the sandbox helper cannot start here; using "
                   "bubblewrap");
    } else {
        rz__sbx_started(&cg);
        ahead_drop(&cg);
    }
    sb.ok = probe_bwrap(root);
}

/* ---- the helper's check ----
 *
 * The probe runs no step of its own: the steps started through the
 * helper until one has passed ask their inits for the check
 * (rz__sbx_launch: a program that exits 0, rz__sbx_true, in the step's own
 * sandbox, before the step), so
 * the first step's start is the probe's last part. A check that fails
 * leaves its step unstarted; the probe's step (the check's program
 * through the helper, no cell, no limits, in a folder of its own that a
 * killed runner's successor sweeps) then says whether the helper works.
 * If it does, the step's own limits failed it: it is started again
 * without a check and fails as it would. If not, the helper is let go as
 * when it cannot start: bubblewrap is probed, the step is prepared again
 * through it (where it fails too, this step and the later ones fail:
 * never without a sandbox), and the status says so
 * (rz__sbx_changes: the runner tells it again). */

static atomic_bool helper_checked;
static atomic_uint sbx_changes;
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;

void rz__sbx_test_check_exe(const char *in_step, const char *alone)
{
    check_in_step = in_step;
    check_alone = alone ? alone : "/bin/true";
}

const char *rz__sbx_check_exe(void)
{
    if (atomic_load(&helper_checked))
        return NULL;
    if (check_in_step)
        return check_in_step;
    return rz__sbx_true_len ? RZ__SBX_TRUE_PATH : "/bin/true";
}

void rz__sbx_check_passed(void)
{
    atomic_store(&helper_checked, true);
}

unsigned rz__sbx_changes(void)
{
    return atomic_load(&sbx_changes);
}

/* Whether the helper's own step runs: 1 yes, 0 no, -1 it could not be
 * tried (no free uid, no folder): that says nothing of the helper. */
static int helper_works(void)
{
    uint32_t uid = uid_reserve(0);
    char *dir = NULL;
    int ok = !uid || rz__exec_mkdtemp(NULL, &dir) != RZ_OK ? -1
                                                           : probe_step(uid, dir);
    if (uid)
        probe_uid_drop(uid);
    rz__exec_rm_tree(dir);
    free(dir);
    return ok;
}

/* A helper let go (below) ends once none of its cells is taken: idle
 * ones are ended, a taken one's step ends first (cell_release). */
static atomic_bool helper_let_go, helper_ended;

static void helper_end_if_idle(void)
{
    if (!atomic_load(&helper_let_go) || atomic_load(&helper_ended))
        return;
    cells_drop_idle();
    bool any = false;
    pthread_mutex_lock(&cells_mu);
    for (size_t i = 0; i < MAX_CELLS && !any; i++)
        any = cells[i] != NULL;
    pthread_mutex_unlock(&cells_mu);
    if (!any && !atomic_exchange(&helper_ended, true))
        rz__sbx_helper_end();
}

void rz__sbx_check_why(int why, char *buf, size_t cap)
{
    int st = why < 0 ? -1 - why : 0;
    if (why > 0)
        snprintf(buf, cap, "%s", strerror(why));
    else if (why < 0 && WIFEXITED(st))
        snprintf(buf, cap, "exit status %d", WEXITSTATUS(st));
    else if (why < 0 && WIFSIGNALED(st))
        snprintf(buf, cap, "killed by signal %d", WTERMSIG(st));
    else
        snprintf(buf, cap, "no reason given");
}

static char broken_why[96];   /* set before sb.broken */

static int broken_error(void)
{
    return rz__error(RZ_EEXEC, "the sandbox stopped working: the sandbox "
                     "helper's check failed (%s) and bubblewrap cannot take "
                     "over", broken_why);
}

/* A copy of the status to add to (status_at), never one a reader may hold;
 * caller holds check_mu. Out of memory: nothing is added. */
static char status_none[sizeof sb.status];   /* a sink */

static void status_begin(void)
{
    const char *now = atomic_load(&status_shown);
    char *copy = malloc(STATUS_CAP);
    if (copy)
        memcpy(copy, now ? now : sb.status, STATUS_CAP);
    else
        status_none[0] = '\0';
    status_at = copy ? copy : status_none;
}

/* The copy shown from now on (the one it replaces is kept: a reader may
 * hold it). */
static void status_end(void)
{
    if (status_at != status_none)
        atomic_store(&status_shown, status_at);
}

int rz__sbx_check_failed(int why, bool *unchecked)
{
    *unchecked = false;
    pthread_mutex_lock(&check_mu);
    if (sb.helper && !atomic_load(&helper_checked)) {
        int works = helper_works();
        if (works > 0) {
            atomic_store(&helper_checked, true);
        } else if (works < 0) {
            *unchecked = true;   /* its own error shows; the next checks */
        } else {
            /* Steps started meanwhile still go to the helper (and fail
             * their check): bwrap's options are set before it is used.
             * Without bwrap the steps fail: a run asked to be sandboxed
             * never goes on without one (sb.ok stays). */
            char text[96];
            rz__sbx_check_why(why, text, sizeof text);
            status_begin();
            status_add("the sandbox helper's check failed (%s): using "
                       "bubblewrap", text);
            snprintf(broken_why, sizeof broken_why, "%s", text);
            if (!probe_bwrap(geteuid() == 0))
                atomic_store(&sb.broken, true);
            status_end();
            sb.helper = false;
            atomic_store(&helper_let_go, true);
            helper_end_if_idle();
            atomic_fetch_add(&sbx_changes, 1);
        }
    }
    pthread_mutex_unlock(&check_mu);
    return atomic_load(&sb.broken) ? broken_error() : RZ_OK;
}

int rz__sbx_available(void)
{
    pthread_once(&probe_once, probe);
    return sb.ok;
}

int rz__sbx_installed(void)
{
    pthread_once(&probe_once, probe);
    return sb.bwrap != NULL || sb.helper;
}

const char *rz__sbx_status(void)
{
    pthread_once(&probe_once, probe);
    const char *st = atomic_load(&status_shown);
    st = st ? st : sb.status;
    return st[0] ? st : NULL;
}

int rz__sbx_has_cgroup(void)
{
    pthread_once(&probe_once, probe);
    return sb.cg_version > 0;
}

/* ---- one step ---- */

void (*rz__sbx_cell_seam)(void);

/* The step through the helper, in a cell (cell_take). *let_go: no cell,
 * as the helper was let go since sb.helper was read (rz__sbx_check_failed
 * on another thread: it ends once no cell is taken, and cannot start
 * again): the step goes as the later ones do. Neither a restart (the
 * helper's own step failed) nor a wait (the let-go is final, and what
 * takes over was set before sb.helper was cleared) would do better. */
static int helper_prepare(rz__sbx *s, const rz__sbx_opts *o, bool *let_go)
{
    s->helper = true;
    s->network = o->network;
    if (o->moddir && !(s->moddir = rz__strdup(o->moddir)))
        return rz__error(RZ_ENOMEM, "out of memory");
    if (rz__sbx_cell_seam)
        rz__sbx_cell_seam();
    int rc = cell_take(s, o);
    *let_go = rc != RZ_OK && !s->in_cell && atomic_load(&helper_let_go);
    if (*let_go) {
        s->helper = false;
        s->network = false;
        free(s->moddir);
        s->moddir = NULL;
    }
    return rc;
}

int rz__sbx_prepare(rz__sbx *s, rz__argv *a, const rz__sbx_opts *o)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        s->procs[i] = -1;
    s->files_info = s->files_block = s->files_fd = s->pid_ns = -1;
    if (!rz__sbx_available())
        return rz__error(RZ_EUNSUPPORTED, "sandbox not available");
    /* broken read after helper: a failed check sets it before it clears
     * helper, so a step that finds no helper also finds why. */
    bool helper = atomic_load(&sb.helper);
    if (atomic_load(&sb.broken))
        return broken_error();
    s->memory_mb = o->memory_mb ? o->memory_mb : RZ__SBX_DEFAULT_MEMORY_MB;
    s->pids_max = o->pids_max ? o->pids_max : RZ__SBX_DEFAULT_PIDS;
    s->scratch_mb = o->scratch_mb ? o->scratch_mb
                                  : RZ__SBX_DEFAULT_SCRATCH_MB;
    s->cpus = o->cpus;
    if (helper) {
        bool let_go = false;
        int rc = helper_prepare(s, o, &let_go);
        if (!let_go)
            return rc;
        if (atomic_load(&sb.broken))   /* never without a sandbox */
            return broken_error();
    }
    base_args(s, a, o->network);
    int rc = scratch_args(s, a, o);
    if (rc == RZ_OK && o->moddir)
        push3(a, "--ro-bind", o->moddir, o->moddir);
    /* A program outside the system folders (a virtualenv's python). */
    char *dir = rz__strdup(o->exe);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (rc == RZ_OK && slash && slash != dir && dir[0] == '/' &&
        !rz__sbx_path_under(dir, "/usr") &&
        !(o->moddir && rz__sbx_path_under(dir, o->moddir))) {
        *slash = '\0';
        push3(a, "--ro-bind-try", dir, dir);
    }
    free(dir);
    push3(a, "--chdir", o->scratch, NULL);
    rz__argv_push(a, "--");
    if (rc == RZ_OK && a->failed)
        rc = rz__error(RZ_ENOMEM, "sandbox: out of memory or descriptors");
    if (rc == RZ_OK && sb.cg_version > 0)
        rc = cgroup_create(s, o, true);
    return rc;
}

int rz__sbx_enter(const rz__sbx *s)
{
    for (size_t i = 0; i < s->n_cg; i++)
        if (s->procs[i] >= 0 && write(s->procs[i], "0", 1) != 1)
            return -1;
    int from = 3 + (int)s->n_fds;
    int tmp[RZ__SBX_MAX_FDS];
    for (size_t i = 0; i < s->n_fds; i++)
        if ((tmp[i] = fcntl(s->fds[i], F_DUPFD_CLOEXEC, from)) < 0)
            return -1;
    for (size_t i = 0; i < s->n_fds; i++)
        if (dup2(tmp[i], 3 + (int)i) < 0)
            return -1;
    return from;
}

int rz__sbx_spawn(pid_t *pid, rz__sbx *s, rz__sbx_launch *l,
                  const int stdio[3], int errpipe)
{
    l->moddir = s->moddir;
    l->network = s->network;
    l->scratch_mb = s->scratch_mb ? s->scratch_mb : RZ__SBX_DEFAULT_SCRATCH_MB;
    l->cg_procs = s->procs;
    l->n_cg = s->in_cell ? 0 : s->n_cg;
    char why[256] = "";
    /* A cell whose zygote died is dropped (what its cgroups hold killed)
     * and another taken: each try drops one, so this ends. A zygote that
     * died after its clone started nothing (the go socket), so the step
     * is sent again with nothing of it running. */
    for (int tries = 0;; tries++) {
        /* The cell's own uid (a cell taken again may be another one);
         * outside a cell (the probe) the caller's, taken by it. */
        if (s->in_cell)
            l->uid = cells[s->cell]->uid;
        int cellfd = s->in_cell ? cells[s->cell]->zsock : -1;
        pid_t *spare = s->in_cell ? &cells[s->cell]->spare : NULL;
        int e = rz__sbx_helper_spawn(pid, l, stdio, errpipe, cellfd, spare,
                                     &s->pid_ns, why, sizeof why);
        if (e == 0)
            return RZ_OK;
        if (e != -EPIPE || !s->in_cell || tries > MAX_CELLS)
            break;
        cell_release(s, true);
        rz__sbx_opts o = { .cpus = s->cpus };
        if (cell_take(s, &o) != RZ_OK)
            return RZ_EEXEC;   /* its error says why */
    }
    return rz__error(RZ_EEXEC, "%s", why);
}

void rz__sbx_started(rz__sbx *s)
{
    for (size_t i = 0; i < s->n_fds; i++)
        close(s->fds[i]);
    s->n_fds = 0;
    for (size_t i = 0; i < s->n_cg; i++) {
        if (s->procs[i] >= 0)
            close(s->procs[i]);
        s->procs[i] = -1;
    }
}

/* Up to `max` pids listed in cgroup `dir` (those visible here). */
static size_t read_members(const char *dir, pid_t *out, size_t max)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/cgroup.procs", dir);
    FILE *f = fopen(p, "re");
    long pid;
    size_t n = 0;
    while (f && n < max && fscanf(f, "%ld", &pid) == 1)
        if (pid > 0)
            out[n++] = (pid_t)pid;
    if (f)
        fclose(f);
    return n;
}

#define KILL_BATCH 1024

/* `pid` (whose pidfd the caller holds: the number is that process's
 * while it lives) is in the pid namespace of inode `ns`. */
static bool in_pid_ns(pid_t pid, uint64_t ns)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%ld/ns/pid", (long)pid);
    return stat(path, &st) == 0 && (uint64_t)st.st_ino == ns;
}

/* Kill what cgroup `dir` holds but `keep` and `keep2` (with `only_ns`,
 * only the members of that pid namespace): by cgroup.kill where there is
 * one (v2) and nothing is kept, else by pidfd. A pid read
 * from cgroup.procs may belong to some host process by the time it is
 * signalled (the member exited and the pid was reused); a pidfd names one
 * process for good, and a pid
 * still listed after its pidfd was opened was that process's all along
 * (a pid is not reused while its holder lives, and the signal fails if
 * the holder is gone). The caller loops (cg_remove) while members stay. */
static void kill_members_but(const char *dir, pid_t keep, pid_t keep2,
                             uint64_t only_ns)
{
    if (keep <= 0 && sb.cg_version == 2 &&
        write_at(dir, "cgroup.kill", "1") == 0)
        return;
    pid_t *pids = malloc(2 * KILL_BATCH * sizeof *pids);
    int *pfd = malloc(KILL_BATCH * sizeof *pfd);
    size_t n = pids && pfd ? read_members(dir, pids, KILL_BATCH) : 0, opened = 0;
    for (size_t i = 0; i < n; i++) {
        pfd[i] = -1;
#ifdef SYS_pidfd_open
        if (pids[i] != keep && pids[i] != keep2)
            pfd[i] = (int)syscall(SYS_pidfd_open, pids[i], 0);
#endif
        if (pfd[i] >= 0 && only_ns && !in_pid_ns(pids[i], only_ns)) {
            close(pfd[i]);
            pfd[i] = -1;
        }
        opened += pfd[i] >= 0;
    }
    size_t m = opened ? read_members(dir, pids + KILL_BATCH, KILL_BATCH) : 0;
    for (size_t i = 0; i < n; i++) {
        if (pfd[i] < 0)
            continue;
        for (size_t k = 0; k < m; k++)
            if (pids[KILL_BATCH + k] == pids[i]) {
#ifdef SYS_pidfd_send_signal
                (void)syscall(SYS_pidfd_send_signal, pfd[i], SIGKILL, NULL, 0);
#endif
                break;
            }
        close(pfd[i]);
    }
    free(pids);
    free(pfd);
}

static void kill_members(const char *dir)
{
    kill_members_but(dir, -1, -1, 0);
}

void rz__sbx_finish(rz__sbx *s, rz__sbx_report *r)
{
    rz__sbx_started(s);
    if (s->in_cell)
        cell_finish(s, r);
    if (s->pid_ns >= 0)
        close(s->pid_ns);
    s->pid_ns = -1;
    for (size_t i = 0; i < s->n_cg; i++) {
        const char *dir = s->cg[i];
        bool mem = sb.cg_version == 2 || s->cg_kind[i] == CG_MEMORY;
        if (r && mem && !r->oom)
            r->oom = read_key(dir, sb.cg_version == 2 ? "memory.events"
                                                      : "memory.oom_control",
                              "oom_kill") > 0;
        if (r && !r->pids_hit)
            r->pids_hit = read_key(dir, "pids.events", "max") > 0;
        (void)cg_remove(dir);   /* a leftover is swept at the next start */
        free(s->cg[i]);
        s->cg[i] = NULL;
    }
    s->n_cg = 0;
    free(s->moddir);
    s->moddir = NULL;
    int *fds[] = { &s->files_info, &s->files_block, &s->files_fd };
    for (size_t i = 0; i < RZ_ARRAY_LEN(fds); i++) {
        if (*fds[i] >= 0)
            close(*fds[i]);
        *fds[i] = -1;
    }
    free(s->files);
    s->files = NULL;
}

/* ---- bwrap's files tmpfs ---- */

#define ATTACH_WAIT_MS 10000

/* The sandbox's pid from bwrap's --info-fd ({"child-pid": N, ...}). */
static pid_t info_child_pid(int fd)
{
    char buf[1024];
    size_t n = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n < sizeof buf - 1 && !memchr(buf, '}', n)) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, ATTACH_WAIT_MS) <= 0)
            return -1;
        ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        n += (size_t)r;
    }
    buf[n] = '\0';
    const char *k = strstr(buf, "\"child-pid\"");
    const char *colon = k ? strchr(k, ':') : NULL;
    long pid = colon ? strtol(colon + 1, NULL, 10) : 0;
    return pid > 0 ? (pid_t)pid : -1;
}

int rz__sbx_files_attach(rz__sbx *s)
{
    if (s->files_info < 0)
        return RZ_OK;
    pid_t pid = info_child_pid(s->files_info);
    close(s->files_info);
    s->files_info = -1;
    struct stat host;
    char *path = pid > 0 ? rz__asprintf("/proc/%ld/root%s", (long)pid, s->files) : NULL;
    int rc = RZ_OK;
    if (!path || lstat(s->files, &host) != 0) {
        rc = rz__error(RZ_EIO, "the step's RZ_OUTPUT_DIR: bwrap said no pid");
    } else {
        /* Until bwrap's last pivot the path is the host's folder (the same
         * device) or absent; then it is the tmpfs, and the step has not
         * started: nothing of it can have made a link there. */
        for (int ms = 0; ms < ATTACH_WAIT_MS && s->files_fd < 0; ms++) {
            int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            struct stat st;
            if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev != host.st_dev) {
                s->files_fd = fd;
                break;
            }
            if (fd >= 0)
                close(fd);
            if (kill(pid, 0) != 0)
                break;
            struct timespec pause = { 0, 1000000 };
            nanosleep(&pause, NULL);
        }
        if (s->files_fd < 0)
            rc = rz__error(RZ_EIO, "the step's RZ_OUTPUT_DIR tmpfs could not be "
                           "reached (%s)", path);
    }
    free(path);
    ssize_t w = send(s->files_block, "x", 1, MSG_NOSIGNAL);
    (void)w;
    close(s->files_block);
    s->files_block = -1;
    return rc;
}

int rz__sbx_files_copy(rz__sbx *s, bool copy, char *line, size_t cap)
{
    if (!s->files)
        return 0;
    rz__outdir_copy c = { s->file_cap, s->files_cap, 0, NULL };
    struct statvfs vf;
    int to = open(s->files, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int from = s->files_fd >= 0 ? fcntl(s->files_fd, F_DUPFD_CLOEXEC, 3) : -1;
    int rc = -1;
    if (from >= 0 && fstatvfs(from, &vf) == 0 && vf.f_bavail == 0)
        c.over = "the files together";
    else if (!copy)
        rc = 0;
    else if (from >= 0 && to >= 0)
        rc = rz__outdir_copy_tree(&c, from, to, 0), from = -1;
    if (from >= 0)
        close(from);
    if (to >= 0)
        close(to);
    if (rc == 0)
        return 0;
    if (c.over)
        snprintf(line, cap, "\nrhizos: the step's file outputs (RZ_OUTPUT_DIR) are "
                 "over their cap: %s (at most %llu MiB a file, %llu MiB in all)\n",
                 c.over, (unsigned long long)(s->file_cap >> 20),
                 (unsigned long long)(s->files_cap >> 20));
    else
        snprintf(line, cap, "\nrhizos: the step's file outputs could not be "
                 "copied out: %s\n", s->files_fd < 0 ? "its RZ_OUTPUT_DIR was not reached"
                                                      : strerror(errno));
    return -1;
}

/* Every idle cell ended. */
static void cells_drop_idle(void)
{
    for (size_t i = 0; i < MAX_CELLS; i++) {
        pthread_mutex_lock(&cells_mu);
        cell *c = cells[i];
        bool idle = c && c != &cell_reserved && !c->busy;
        if (idle)
            cells[i] = &cell_reserved;
        pthread_mutex_unlock(&cells_mu);
        if (idle) {
            bool gone = cell_free(c);
            pthread_mutex_lock(&cells_mu);
            cells[i] = gone ? NULL : &cell_reserved;
            pthread_mutex_unlock(&cells_mu);
        }
    }
}

void rz__sbx_test_cells(bool cgroups)
{
    pthread_once(&probe_once, probe);
    cells_drop_idle();
    sb.cg_version = cgroups ? sb.cg_saved : 0;
}

void rz__sbx_uid_range(uint32_t *first, uint32_t *count)
{
    pthread_once(&probe_once, probe);
    *first = sb.helper ? sb.uid_first : 0;
    *count = sb.helper ? sb.uid_count : 0;
}

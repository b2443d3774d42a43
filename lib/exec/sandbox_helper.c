/* The pre-started sandbox helper (see sandbox_helper.h).
 *
 * bwrap exec'd per step cost 6-14 ms here, nearly all of it building a new
 * root (some 40 bind mounts, pivot_root) and exec'ing bwrap itself. The
 * helper builds that root once, in a mount namespace of its own, and per
 * step only copies it: a clone into new mount, pid, net, ipc and uts
 * namespaces, then the few mounts that differ per step (/proc, /tmp,
 * /dev/shm, the scratch tmpfs and its binds, the module's folder). A
 * cell makes that clone and the mounts every step has ahead, between
 * steps (make_spare), so a step's start waits only for its own mounts.
 *
 * The step's processes are the runner's children (CLONE_PARENT), so the
 * runner waits for them, kills their group and reads their exit as it did
 * bwrap's. Each step is two processes, as under bwrap: `init` (pid 1 of
 * the step's pid namespace, root, no exec) that reaps and exits with the
 * step's status (128+N for a signal), and the step itself, which runs as
 * the uid/gid the runner chose (no user namespace: the host sees the same
 * id; one of a range no host user has, so no other process on the host
 * shares it), with no capability (bounding set included), no new
 * privileges and the seccomp filter.
 *
 * Everything after fork() here runs in a single-threaded copy of the
 * runner and touches none of the library's state; the copy execs this
 * file as a program of its own (helper_exec) where it can.
 */
#include "exec/sandbox_helper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ_MAGIC 0x727a7362u         /* "rzsb" */
#define MAX_REQ_BYTES (8u << 20)
#define MAX_FDS 40
#define MAX_BINDS 24
#define SHM_MB 64u
#define CHOWN_DEPTH 32

#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C   /* linux/sockios.h: a socket's network namespace */
#endif
#ifndef PIDFD_GET_MNT_NAMESPACE
#define PIDFD_GET_MNT_NAMESPACE _IO(0xFF, 3)   /* linux/pidfd.h, 6.11 */
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif

/* The request, in a memfd: this header, then NUL-ended strings: scratch,
 * program, the outputs file ("" for none), argv[argc], envp[envc], then
 * per bind "<r|w><d|f>/target".
 * The descriptors come alongside in this order: memfd, stdin, stdout,
 * stderr, error pipe, scratch (O_PATH), the step's end of its go socket
 * (see send_once), the host's outputs file (written, see copy_out; else
 * /dev/null), the host's file outputs folder (see copy_files; else
 * /dev/null), each bind's detached mount tree
 * (open_tree clones: a tree of another mount namespace cannot be cloned
 * from inside the helper's), join files (tasks or cgroup.procs) x n_cg. */
typedef struct req_hdr {
    uint32_t magic, network, scratch_mb, argc, envc, n_cg, n_binds, uid;
    struct rlimit fsize, nofile, as, cpu;
    uint32_t limit_as, limit_cpu;
    uint32_t check, unused;   /* check: see rz__sbx_launch */
    uint64_t strings_len;
    uint64_t out_cap;   /* bytes of the outputs file copied out at most */
    uint64_t file_cap, files_cap;   /* of the file outputs (copy_files) */
} req_hdr;

/* ---- the runner's side ---- */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int sock = -1;           /* to the helper; -1: not running */
static int life_w = -1;         /* closes when the runner exits */
static pid_t helper = -1;
static int copy_r = -1;         /* a byte here: the helper is the runner's
                                 * copy (its program's exec refused) */
static bool own_program;        /* the helper that answered runs it */
static rz__sbx_tmpl tmpl;       /* borrowed from sandbox.c, for restarts */
static bool starting;           /* forked; its first answer not read */
static pid_t early = -1;        /* the helper's early zygote (our child)
                                 * until a cell takes it */
static pid_t *early_seen;       /* shared with the helper: its fork of the
                                 * early zygote writes the pid here (0:
                                 * none), read once the helper answered or
                                 * is gone */
static const int *early_cg;     /* its join files, read by the fork */
static size_t early_n_cg;
static bool fresh_net;          /* a network namespace per step, none
                                 * shared; RHIZOS_SANDBOX_NET=cell: a
                                 * cell's, reused while empty */

static _Noreturn void helper_main(int s, int life, bool with_early);
static void helper_exec(int s, int life, bool with_early, char **env);
static void program_env(char **env, size_t cap);
static bool no_program;   /* rz__sbx_test_no_program */

/* The early zygote no cell took, killed and reaped; caller holds mu. */
static void early_reap_locked(void)
{
    if (early > 0) {
        kill(early, SIGKILL);
        while (waitpid(early, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    early = -1;
}

/* The early zygote a helper that answered or is gone forked, or -1. The
 * kernel wrote its pid as it forked it (CLONE_PARENT_SETTID), so even a
 * helper killed right after that fork leaves it known. */
static pid_t early_forked(void)
{
    pid_t pid = early_seen ? __atomic_load_n(early_seen, __ATOMIC_ACQUIRE) : 0;
    return pid > 0 ? pid : -1;
}

/* Reap a helper that is gone (or make it go), and its early zygote no
 * cell took; caller holds mu. */
static void helper_stop(void)
{
    if (sock >= 0)
        close(sock);
    if (life_w >= 0)
        close(life_w);
    sock = life_w = -1;
    if (helper > 0) {
        kill(helper, SIGKILL);
        while (waitpid(helper, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    helper = -1;
    if (copy_r >= 0)
        close(copy_r);
    copy_r = -1;
    if (starting)   /* its early zygote not heard of yet */
        early = early_forked();
    starting = false;
    early_reap_locked();
}

/* The page early_seen maps, from a memfd (early_seen_fd) that the helper
 * maps again after its exec (helper_exec); none: no early zygote. */
static int early_seen_fd = -1;

static void early_page(void)
{
    int fd = memfd_create("rz-early", MFD_CLOEXEC);
    void *m = fd >= 0 && ftruncate(fd, sizeof *early_seen) == 0
                  ? mmap(NULL, sizeof *early_seen, PROT_READ | PROT_WRITE,
                         MAP_SHARED, fd, 0)
                  : MAP_FAILED;
    early_seen = m == MAP_FAILED ? NULL : m;
    if (early_seen)
        early_seen_fd = fd;
    else if (fd >= 0)
        close(fd);
}

/* The helper's program started with no copy of the runner made: a child
 * that shares our memory (clone(CLONE_VM | CLONE_VFORK), as process.c's
 * steps and posix_spawn) sets its descriptors and signals and execs it
 * (helper_exec). A fork copied the runner's page tables, and that copy
 * took copy-on-write faults and was torn down at its exec: ~0.5-0.9 ms of
 * CPU, in series on a one-step run's start. We are suspended meanwhile and
 * our signals blocked; the child sets its handlers before it unblocks any
 * (none of ours may run in it, on our memory). Its pid, or -1 where the
 * exec was refused (it has exited, reaped here): then the helper is forked
 * as the runner's copy. */
static volatile bool launch_refused;

typedef struct launch_args {
    int s, life;
    bool with_early;
    char **env;   /* the program's environment (program_env) */
} launch_args;

static int launch_main(void *arg)
{
    const launch_args *a = arg;
    helper_exec(a->s, a->life, a->with_early, a->env);
    launch_refused = true;   /* our parent reads it once we have exited */
    _exit(127);
}

#define LAUNCH_STACK (256u << 10)   /* as process.c's: touched as used */

static pid_t helper_launch(int s, int life, bool with_early)
{
    if (rz__sbx_program_len == 0 || no_program)
        return -1;
    /* Its lowest page a guard: an overflow faults, not writes our memory. */
    long page = sysconf(_SC_PAGESIZE);
    size_t guard = page > 0 ? (size_t)page : 4096u;
    void *stack = mmap(NULL, guard + LAUNCH_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED)
        return -1;
    if (mprotect(stack, guard, PROT_NONE) != 0) {
        munmap(stack, guard + LAUNCH_STACK);
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* The environment read here, before the clone: another thread's
     * setenv may replace `environ` while the child runs. */
    char *env[16];
    program_env(env, sizeof env / sizeof *env);
    launch_args a = { s, life, with_early, env };
    launch_refused = false;
    pid_t pid = clone(launch_main, (char *)stack + guard + LAUNCH_STACK,
                      CLONE_VM | CLONE_VFORK | SIGCHLD, &a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, guard + LAUNCH_STACK);
    if (pid > 0 && launch_refused) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        pid = -1;
    }
    return pid;
}

/* Caller holds mu. A helper started (`starting`): its first answer comes
 * once its root is built (helper_ready_locked). `with_early`: it forks
 * the first cell's zygote first, into early_cg's cgroups. Its program
 * exec'd (helper_launch), or else the runner's copy forked. */
static int helper_fork_locked(bool with_early)
{
    int sv[2], life[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    if (pipe2(life, O_CLOEXEC) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    if (with_early && !early_seen)
        early_page();
    if (early_seen)
        *early_seen = 0;
    const char *net = getenv("RHIZOS_SANDBOX_NET");   /* read per start */
    fresh_net = !net || strcmp(net, "cell") != 0;   /* see sandbox.c */
    int cp[2] = { -1, -1 };
    if (pipe2(cp, O_CLOEXEC | O_NONBLOCK) != 0)
        cp[0] = cp[1] = -1;
    pid_t pid = helper_launch(sv[1], life[0], with_early && early_seen);
    if (pid < 0)
        pid = fork();
    if (pid == 0) {
        close(sv[0]);
        close(life[1]);
        (void)!write(cp[1], "c", 1);   /* before its first answer */
        helper_main(sv[1], life[0], with_early && early_seen);
    }
    int e = errno;
    close(sv[1]);
    close(life[0]);
    if (cp[1] >= 0)
        close(cp[1]);
    if (copy_r >= 0)
        close(copy_r);
    copy_r = cp[0];
    if (pid < 0) {
        close(sv[0]);
        close(life[1]);
        return -e;
    }
    sock = sv[0];
    life_w = life[1];
    helper = pid;
    starting = true;
    return 0;
}

/* One int from the helper; false if it is gone. */
static bool helper_int(int32_t *v)
{
    ssize_t n;
    while ((n = recv(sock, v, sizeof *v, 0)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)sizeof *v;
}

/* Caller holds mu. The helper's first answer, once its root is built: 0
 * or the errno of what failed. */
static int helper_ready_locked(void)
{
    if (!starting)
        return sock >= 0 ? 0 : -EPIPE;
    int32_t status = EIO;
    if (!helper_int(&status) || status != 0) {
        helper_stop();
        return -(status ? status : EIO);
    }
    starting = false;
    early = early_forked();
    char c;
    own_program = copy_r >= 0 && read(copy_r, &c, 1) != 1;
    if (copy_r >= 0)
        close(copy_r);
    copy_r = -1;
    return 0;
}

static bool ended;   /* rz__sbx_helper_end: never started again */

/* Caller holds mu: a helper that answers (started, or restarted). */
static int helper_up_locked(void)
{
    if (ended)
        return -ESRCH;
    if (starting)
        return helper_ready_locked();
    if (sock >= 0)
        return 0;
    int rc = helper_fork_locked(false);
    return rc == 0 ? helper_ready_locked() : rc;
}

int rz__sbx_helper_start(const rz__sbx_tmpl *t, bool with_early,
                         const int *cg_procs, size_t n_cg)
{
    pthread_mutex_lock(&mu);
    tmpl = *t;
    early_cg = cg_procs;
    early_n_cg = n_cg;
    int rc = sock >= 0 ? 0 : helper_fork_locked(with_early);
    early_cg = NULL;
    early_n_cg = 0;
    pthread_mutex_unlock(&mu);
    return rc;
}

int rz__sbx_helper_ready(void)
{
    pthread_mutex_lock(&mu);
    int rc = helper_ready_locked();
    pthread_mutex_unlock(&mu);
    return rc;
}

void rz__sbx_helper_end(void)
{
    pthread_mutex_lock(&mu);
    ended = true;
    helper_stop();
    pthread_mutex_unlock(&mu);
}

bool rz__sbx_helper_own_program(void)
{
    pthread_mutex_lock(&mu);
    bool own = helper > 0 && own_program;
    pthread_mutex_unlock(&mu);
    return own;
}

pid_t rz__sbx_helper_pid(void)
{
    pthread_mutex_lock(&mu);
    pid_t p = helper;
    pthread_mutex_unlock(&mu);
    return p;
}

static void put_str(char **at, const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    memcpy(*at, s ? s : "", n);
    *at += n;
}

static size_t vec_len(char *const *v, uint32_t *count)
{
    size_t n = 0;
    *count = 0;
    for (; v && v[*count]; (*count)++)
        n += strlen(v[*count]) + 1;
    return n;
}

/* What the step gets of the host: a detached clone of each mount. */
typedef struct binds {
    char *target[MAX_BINDS];
    int fd[MAX_BINDS];
    size_t n;
} binds;

static int bind_add(binds *b, const char *path, bool rw)
{
    struct stat st;
    if (b->n >= MAX_BINDS)
        return -E2BIG;
    if (lstat(path, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return 0;   /* links, fifos: not handed in */
    size_t len = strlen(path);
    char *t = malloc(len + 3);
    if (!t)
        return -ENOMEM;
    t[0] = rw ? 'w' : 'r';
    t[1] = S_ISDIR(st.st_mode) ? 'd' : 'f';
    memcpy(t + 2, path, len + 1);
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path,
                          OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                          AT_SYMLINK_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        free(t);
        return -e;
    }
    b->target[b->n] = t;
    b->fd[b->n++] = fd;
    return 0;
}

static void binds_free(binds *b)
{
    for (size_t i = 0; i < b->n; i++) {
        free(b->target[i]);
        close(b->fd[i]);
    }
    b->n = 0;
}

/* The scratch's entries read-only, the module's folder and the program's
 * (outside the system folders) read-only. Not the outputs file nor the
 * top entry holding it: the step writes it in its own tmpfs and its init
 * copies at most out_cap bytes of it to the host's (copy_out), so a step
 * cannot fill the host's /dev/shm through it. Only an outputs file outside
 * the scratch folder is bound, writable. */
static int collect_binds(binds *b, const rz__sbx_launch *l)
{
    DIR *d = opendir(l->scratch);
    if (!d)
        return -errno;
    const char *out = l->output_path;
    size_t slen = strlen(l->scratch);
    bool out_inside = out && rz__sbx_path_under(out, l->scratch) &&
                      out[slen] == '/';
    int rc = 0;
    struct dirent *e;
    char p[PATH_MAX];
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", l->scratch, e->d_name);
        if (out_inside && rz__sbx_path_under(out, p))
            continue;   /* made in the step's tmpfs */
        rc = bind_add(b, p, false);
    }
    closedir(d);
    if (rc == 0 && out && *out && !out_inside)
        rc = bind_add(b, out, true);
    if (rc == 0 && l->moddir && !rz__sbx_path_is_system(l->moddir))
        rc = bind_add(b, l->moddir, false);
    /* The program's own folder, when it is outside the system's. */
    char dir[PATH_MAX] = "";
    const char *slash = strrchr(l->exe, '/');
    if (slash && slash != l->exe && l->exe[0] == '/' &&
        (size_t)(slash - l->exe) < sizeof dir)
        memcpy(dir, l->exe, (size_t)(slash - l->exe));
    if (rc == 0 && dir[0] && !rz__sbx_path_is_system(dir) &&
        !rz__sbx_path_under(dir, l->scratch) &&
        !(l->moddir && rz__sbx_path_under(dir, l->moddir)))
        rc = bind_add(b, dir, false);
    return rc;
}

/* The host's <out>/files (attempt.c makes it where the module has file
 * outputs), for the init's copy_files; else /dev/null. */
static int open_files_dir(const rz__sbx_launch *l)
{
    const char *slash = l->output_path ? strrchr(l->output_path, '/') : NULL;
    char dir[PATH_MAX];
    int fd = -1;
    if (slash && snprintf(dir, sizeof dir, "%.*s/files",
                          (int)(slash - l->output_path), l->output_path) <
                     (int)sizeof dir)
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd >= 0 ? fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* The request in a memfd; -errno on failure. */
static int write_request(const rz__sbx_launch *l, const binds *b)
{
    req_hdr h;
    memset(&h, 0, sizeof h);
    h.magic = REQ_MAGIC;
    h.network = (uint32_t)l->network;
    h.scratch_mb = l->scratch_mb;
    h.uid = l->uid;
    h.n_cg = (uint32_t)l->n_cg;
    h.n_binds = (uint32_t)b->n;
    h.fsize = l->fsize;
    h.nofile = l->nofile;
    h.as = l->as;
    h.cpu = l->cpu;
    h.limit_as = l->limit_as;
    h.limit_cpu = l->limit_cpu;
    h.check = l->check_exe != NULL;
    h.out_cap = l->out_cap;
    h.file_cap = l->file_cap;
    h.files_cap = l->files_cap;
    const char *out = l->output_path ? l->output_path : "";
    const char *check = l->check_exe ? l->check_exe : "";
    size_t n = vec_len(l->argv, &h.argc) + vec_len(l->envp, &h.envc);
    n += strlen(l->scratch) + strlen(l->exe) + strlen(out) + 3;
    n += strlen(check) + 1;
    for (size_t i = 0; i < b->n; i++)
        n += strlen(b->target[i]) + 1;
    if (n > MAX_REQ_BYTES)
        return -E2BIG;
    h.strings_len = n;
    char *buf = malloc(sizeof h + n);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, &h, sizeof h);
    char *at = buf + sizeof h;
    put_str(&at, l->scratch);
    put_str(&at, l->exe);
    put_str(&at, out);
    put_str(&at, check);
    for (uint32_t i = 0; i < h.argc; i++)
        put_str(&at, l->argv[i]);
    for (uint32_t i = 0; i < h.envc; i++)
        put_str(&at, l->envp[i]);
    for (size_t i = 0; i < b->n; i++)
        put_str(&at, b->target[i]);
    int fd = memfd_create("rz-step", MFD_CLOEXEC);
    size_t len = sizeof h + n, off = 0;
    while (fd >= 0 && off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w <= 0) {
            close(fd);
            fd = -1;
            break;
        }
        off += (size_t)w;
    }
    explicit_bzero(buf, len);   /* the environment may hold secrets */
    free(buf);
    return fd >= 0 ? fd : -EIO;
}

/* One request and its answer on `to`; *got (if not NULL) a descriptor
 * that came with the answer, or -1. A step's request ('r') is answered
 * once: the pid, or a refusal (negative) when nothing is started.
 * SENT_NOT: the request could not be sent (nothing was started: safe to
 * send again; a cell killed for memory between steps, say); SENT_LOST:
 * the other side went before answering, with or without a clone made
 * (whose init waits for a go that will not come: send_once finds it by
 * its hello, or the go socket's end, and the step may be sent again). */
enum { SENT_NOT = 1, SENT_LOST = 2 };
/* A spare init's note of itself: RZ__SBX_SPARE_NOTE (sandbox_helper.h). */
#define SPARE_NOTE RZ__SBX_SPARE_NOTE
/* A request's bytes: its kind ('r' a step, 'z' a cell) and, for a cell,
 * its steps' uid. Two 32-bit fields: no padding, so no byte sent is
 * uninitialised. */
typedef struct msg {
    uint32_t kind;
    uint32_t uid;
} msg;

/* One answer from `to` into *answer (and its descriptor into *fd, if
 * any came), a cell's spare notes on the way recorded in *spare (NULL:
 * none expected). The byte count of the answer, as recvmsg's. */
static ssize_t recv_answer(int to, int32_t *answer, int *fd, pid_t *spare,
                           int flags)
{
    for (;;) {
        int32_t a[2] = { 0, 0 };
        struct iovec iov = { a, sizeof a };
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int) * MAX_FDS) +
                     CMSG_SPACE(sizeof(struct ucred))];
        } u;
        memset(&u, 0, sizeof u);
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                            .msg_control = u.buf,
                            .msg_controllen = sizeof u.buf };
        ssize_t n;
        while ((n = recvmsg(to, &m, MSG_CMSG_CLOEXEC | flags)) < 0 &&
               errno == EINTR)
            ;
        pid_t from = -1;
        for (struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; h;
             h = CMSG_NXTHDR(&m, h)) {
            if (h->cmsg_level == SOL_SOCKET &&
                h->cmsg_type == SCM_CREDENTIALS &&
                h->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
                struct ucred cr;
                memcpy(&cr, CMSG_DATA(h), sizeof cr);
                from = cr.pid;
            }
            if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS &&
                h->cmsg_len >= CMSG_LEN(sizeof(int))) {
                int got;
                memcpy(&got, CMSG_DATA(h), sizeof got);
                if (fd && *fd < 0)
                    *fd = got;
                else
                    close(got);
            }
        }
        /* The spare's own note: its pid as the kernel stamped it. */
        if (n == (ssize_t)sizeof a && a[0] == SPARE_NOTE) {
            if (spare && from > 0)
                *spare = from;
            continue;
        }
        *answer = a[0];
        return n;
    }
}

/* `len` bytes of `data` on `to` with the `n` (<= MAX_FDS) descriptors
 * `fds` (none: n 0); what sendmsg returns, retried while interrupted. */
static ssize_t send_with_fds(int to, const void *data, size_t len,
                             const int *fds, size_t n, int flags)
{
    struct iovec iov = { (void *)data, len };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    if (n > 0) {
        m.msg_control = u.buf;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    ssize_t r;
    while ((r = sendmsg(to, &m, flags)) < 0 && errno == EINTR)
        ;
    return r;
}

static int exchange(int to, msg req, const int *fds, size_t n_fds,
                    pid_t *pid, int *got, pid_t *spare)
{
    ssize_t n = send_with_fds(to, &req, sizeof req, fds, n_fds, MSG_NOSIGNAL);
    if (n != (ssize_t)sizeof req)
        return SENT_NOT;
    int32_t answer = 0;
    int fd = -1;
    n = recv_answer(to, &answer, &fd, spare, 0);
    if (got)
        *got = fd;
    else if (fd >= 0)
        close(fd);
    if (n != (ssize_t)sizeof answer)
        return SENT_LOST;
    *pid = answer;
    if (spare && *pid > 0 && *pid == *spare)
        *spare = -1;   /* the step's init now: the caller's to reap */
    return 0;
}

int rz__sbx_helper_cell(const int *cg_procs, size_t n_cg, uint32_t uid,
                        int *zsock, pid_t *zpid)
{
    *zsock = -1;
    *zpid = -1;
    pthread_mutex_lock(&mu);
    int rc = 0;
    for (int tries = 0; tries < 2; tries++) {
        if ((rc = helper_up_locked()) != 0)
            break;
        pid_t pid = -1;
        msg req = { 'z', uid };
        if (exchange(sock, req, cg_procs, n_cg, &pid, zsock, NULL) == 0) {
            rc = pid > 0 && *zsock >= 0 ? 0 : (pid < 0 ? pid : -EIO);
            int on = 1;   /* spare inits' notes carry their pids */
            if (rc == 0 && setsockopt(*zsock, SOL_SOCKET, SO_PASSCRED, &on,
                                      sizeof on) != 0)
                rc = -errno;
            if (rc == 0)
                *zpid = pid;
            break;
        }
        helper_stop();
        rc = -EPIPE;
    }
    pthread_mutex_unlock(&mu);
    if (rc != 0 && *zsock >= 0) {
        close(*zsock);
        *zsock = -1;
    }
    return rc;
}

int rz__sbx_helper_cell_early(uint32_t uid, int *zsock, pid_t *zpid)
{
    *zsock = -1;
    *zpid = -1;
    pthread_mutex_lock(&mu);
    int rc = -ENOENT, none[1] = { -1 };
    pid_t pid = -1;
    msg req = { 'Z', uid };
    if (sock >= 0 && helper_up_locked() == 0 && early > 0) {
        if (exchange(sock, req, none, 0, &pid, zsock, NULL) != 0) {
            helper_stop();   /* gone: the next spawn starts another */
            rc = -EPIPE;
        } else {
            rc = pid == early && *zsock >= 0 ? 0 : (pid < 0 ? pid : -EIO);
        }
    }
    int on = 1;   /* spare inits' notes carry their pids */
    if (rc == 0 && setsockopt(*zsock, SOL_SOCKET, SO_PASSCRED, &on,
                              sizeof on) != 0)
        rc = -errno;
    if (rc == 0) {
        *zpid = early;   /* the cell's now */
        early = -1;
    }
    early_reap_locked();   /* none left, or untaken */
    pthread_mutex_unlock(&mu);
    if (rc != 0 && *zsock >= 0) {
        close(*zsock);
        *zsock = -1;
    }
    return rc;
}

void rz__sbx_helper_early_drop(void)
{
    pthread_mutex_lock(&mu);
    early_reap_locked();
    pthread_mutex_unlock(&mu);
}

void rz__sbx_helper_cell_memory(int zsock, int usage, int limit)
{
    msg req = { 'm', 0 };
    int fds[2] = { usage, limit };
    (void)send_with_fds(zsock, &req, sizeof req, fds, 2,
                        MSG_DONTWAIT | MSG_NOSIGNAL);
}

void rz__sbx_helper_cell_done(int zsock)
{
    msg m = { 'f', 0 };
    (void)!send(zsock, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

#define CELL_END_WAIT_MS 2000

void rz__sbx_helper_cell_end(int zsock, pid_t *spare)
{
    /* Every spare holds the cell's socket until it has noted itself:
     * its end (the zygote gone) means every note is queued. A zygote
     * killed with a message of ours unread (the last 'f') makes the first
     * read fail with ECONNRESET, ahead of the notes: read on to the end
     * (a spare is made as the last init ends, whether 'f' was read). */
    int32_t answer;
    struct pollfd pf = { zsock, POLLIN, 0 };
    while (zsock >= 0 && poll(&pf, 1, CELL_END_WAIT_MS) > 0) {
        ssize_t n = recv_answer(zsock, &answer, NULL, spare, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != ECONNRESET && errno != EAGAIN))
            break;   /* the end, or nothing more will come */
    }
    if (*spare > 0 && kill(*spare, SIGKILL) == 0)
        while (waitpid(*spare, NULL, __WALL) < 0 && errno == EINTR)
            ;
    *spare = -1;
}

/* A step's go socket. The step's init says hello on it first thing (the
 * kernel stamps the message with the init's pid as the runner sees it)
 * and execs nothing of the step (only the sandbox's check, which
 * ends with it) until the runner sends 'g', which it does only once
 * it holds the step's pid: so a step whose start answer was lost (its
 * starter died after the clone) never runs, with or without cgroups, and
 * the runner can find its init, kill and reap it, and start the step
 * again with nothing of the first try running beside it. */
#define FD_GO_SLOT 6
#define LOST_WAIT_MS 5000

/* After a lost answer: the init that may have been cloned, killed and
 * reaped (it is our child: CLONE_PARENT), or proven never made (the
 * socket's other end closed with no hello). Bounded: a copy of the
 * step's end held by a concurrent fork of ours only delays the EOF; the
 * init then ends by itself when `go` closes, having run nothing. */
static pid_t reap_unstarted(int go)
{
    char c;
    struct iovec iov = { &c, 1 };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(struct ucred))];
    } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct pollfd pf = { go, POLLIN, 0 };
    int r;
    while ((r = poll(&pf, 1, LOST_WAIT_MS)) < 0 && errno == EINTR)
        ;
    ssize_t n = -1;
    if (r > 0)
        while ((n = recvmsg(go, &m, MSG_DONTWAIT)) < 0 && errno == EINTR)
            ;
    pid_t init = -1;
    for (struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&m) : NULL; h;
         h = CMSG_NXTHDR(&m, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_CREDENTIALS) {
            struct ucred cr;
            memcpy(&cr, CMSG_DATA(h), sizeof cr);
            init = cr.pid;
        }
    if (init <= 0 || kill(init, SIGKILL) != 0)
        return -1;
    while (waitpid(init, NULL, __WALL) < 0 && errno == EINTR)
        ;
    return init;
}

/* `pid`'s pid namespace, held open, or -1: while held its inode number is
 * its alone (an ended namespace's number goes to the next one made). */
static int pid_ns_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/ns/pid", (long)pid);
    return open(path, O_RDONLY | O_CLOEXEC);
}

/* One try: a fresh go socket, the request, and 'g' once the pid is ours;
 * as exchange(). fds[FD_GO_SLOT] is set here. *ns (if not NULL): the
 * init's pid namespace, opened while it waits for the 'g' (it cannot have
 * ended), the step's for good; the caller's to close. */
static int send_once(int to, int *fds, size_t n, pid_t *pid, pid_t *spare,
                     int *ns)
{
    int go[2], on = 1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, go) != 0)
        return -errno;
    if (setsockopt(go[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
        int e = errno;
        close(go[0]);
        close(go[1]);
        return -e;
    }
    fds[FD_GO_SLOT] = go[1];
    int r = exchange(to, (msg){ 'r', 0 }, fds, n, pid, NULL, spare);
    close(go[1]);   /* the step's end: only the init's copy is left */
    fds[FD_GO_SLOT] = -1;
    if (r == 0 && *pid > 0) {
        if (ns)
            *ns = pid_ns_of(*pid);
        (void)!send(go[0], "g", 1, MSG_NOSIGNAL);   /* a failed init: EPIPE */
    } else if (r == SENT_LOST) {
        pid_t gone = reap_unstarted(go[0]);
        if (spare && gone > 0 && gone == *spare)
            *spare = -1;   /* reaped: never to be signalled again */
    }
    close(go[0]);
    return r;
}

/* Send a step's request to its cell (cell >= 0) or to the helper itself,
 * which is restarted once if it died; a step never runs without one.
 * Whether the process died before taking the request or after its clone
 * (the answer lost), the step did not run (see send_once): -EPIPE, and
 * it may be sent again (the caller takes another cell). */
static int send_step(int cell, int *fds, size_t n, pid_t *pid,
                     pid_t *spare, int *ns, char *why, size_t why_len)
{
    if (cell >= 0) {
        /* The cell is this step's alone: no lock. Its zygote gone, the
         * caller takes another cell. */
        int r = send_once(cell, fds, n, pid, spare, ns);
        if (r == 0)
            return 0;
        snprintf(why, why_len, "the sandbox's process for this cgroup %s",
                 r == SENT_LOST ? "died while starting the step (which "
                 "never ran)" : r < 0 ? strerror(-r) : "died; step not run");
        return r < 0 ? r : -EPIPE;
    }
    int rc = 0;
    pthread_mutex_lock(&mu);
    for (int tries = 0; rc == 0 && tries < 2; tries++) {
        if ((rc = helper_up_locked()) != 0) {
            snprintf(why, why_len, "the sandbox helper could not be "
                     "(re)started: %s; step not run", strerror(-rc));
            break;
        }
        int r = send_once(sock, fds, n, pid, NULL, ns);
        if (r == 0)
            break;
        if (r < 0) {
            rc = r;
            snprintf(why, why_len, "sandbox: %s", strerror(-r));
            break;
        }
        helper_stop();
        if (tries == 1) {
            rc = -EPIPE;
            snprintf(why, why_len, "the sandbox helper died twice; step not "
                     "run");
        }
    }
    pthread_mutex_unlock(&mu);
    return rc;
}

int rz__sbx_helper_spawn(pid_t *pid, const rz__sbx_launch *l,
                         const int stdio[3], int errpipe, int cell,
                         pid_t *spare, int *ns, char *why,
                         size_t why_len)
{
    *pid = -1;
    if (ns)
        *ns = -1;
    int fds[MAX_FDS], n = 0, rc = 0;
    binds b = { .n = 0 };
    if (l->n_cg > 3)
        return -EINVAL;
    int sfd = open(l->scratch, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sfd < 0 || (rc = collect_binds(&b, l)) != 0) {
        rc = rc ? rc : -errno;
        snprintf(why, why_len, "sandbox: the step's folders: %s",
                 strerror(-rc));
        if (sfd >= 0)
            close(sfd);
        binds_free(&b);
        return rc;
    }
    int memfd = write_request(l, &b);
    if (memfd < 0) {
        snprintf(why, why_len, "sandbox request: %s", strerror(-memfd));
        close(sfd);
        binds_free(&b);
        return memfd;
    }
    fds[n++] = memfd;
    fds[n++] = stdio[0];
    fds[n++] = stdio[1];
    fds[n++] = stdio[2];
    fds[n++] = errpipe;
    fds[n++] = sfd;
    fds[n++] = -1;   /* FD_GO_SLOT: a new go socket per try */
    int ofd = l->output_path && *l->output_path
                  ? open(l->output_path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)
                  : open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (ofd < 0) {
        rc = -errno;
        snprintf(why, why_len, "sandbox: the step's outputs file: %s",
                 strerror(-rc));
        close(memfd);
        close(sfd);
        binds_free(&b);
        return rc;
    }
    fds[n++] = ofd;
    int ffd = open_files_dir(l);
    fds[n++] = ffd;
    for (size_t i = 0; i < b.n; i++)
        fds[n++] = b.fd[i];
    for (size_t i = 0; i < l->n_cg; i++)
        fds[n++] = l->cg_procs[i];
    rc = send_step(cell, fds, (size_t)n, pid, spare, ns, why, why_len);
    if (ftruncate(memfd, 0) != 0) {
        /* closed below all the same */
    }
    close(memfd);
    close(sfd);
    close(ofd);
    if (ffd >= 0)
        close(ffd);
    binds_free(&b);
    if (rc == 0 && *pid < 0) {
        rc = *pid;
        snprintf(why, why_len, "the sandbox helper could not start the "
                 "step: %s", strerror(-rc));
        *pid = -1;
    }
    return rc;
}

/* ---- the helper's side: the root, built once ---- */

static const char *const sys_dirs[] = { "/usr", "/bin", "/sbin", "/lib",
                                        "/lib32", "/lib64", "/libx32" };

bool rz__sbx_path_under(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

bool rz__sbx_path_is_system(const char *path)
{
    for (size_t i = 0; i < sizeof sys_dirs / sizeof *sys_dirs; i++)
        if (rz__sbx_path_under(path, sys_dirs[i]))
            return true;
    return false;
}

/* mkdir -p of `path` (absolute) under the current root; the last component
 * a file when `file`. Its first `known` bytes name a folder that is there
 * (0: none known; else `path` goes on with a '/' there), so a step's
 * mounts do not make each folder of their long paths from the root (14
 * failing mkdirs a step). */
static int make_path_from(const char *path, size_t known, bool file)
{
    char p[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof p || path[0] != '/' || known > n ||
        (known && known < n && path[known] != '/'))
        return -1;
    if (known && known == n)
        return file ? -1 : 0;   /* the known folder itself */
    memcpy(p, path, n + 1);
    for (char *s = p + known + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    struct stat st;
    if (file && lstat(p, &st) == 0)
        return 0;   /* there already (maybe in a read-only bind) */
    if (file) {
        int fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        close(fd);
        return 0;
    }
    return mkdir(p, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

static int make_path(const char *path, bool file)
{
    return make_path_from(path, 0, file);
}

/* Every mount at or below `t` (a bind's submounts included) read-only,
 * nosuid, nodev, as bwrap's --ro-bind makes them: a remount of the top
 * alone would leave a mount under /usr writable. mount_setattr
 * (Linux 5.12) does the tree at once; else each mount is remounted. */
static int ro_tree(const char *t)
{
#if defined(SYS_mount_setattr) && defined(MOUNT_ATTR_RDONLY)
    struct mount_attr a;
    memset(&a, 0, sizeof a);
    a.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if (syscall(SYS_mount_setattr, AT_FDCWD, t, AT_RECURSIVE, &a,
                sizeof a) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
#endif
    const unsigned long ro = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID |
                             MS_NODEV;
    if (mount(NULL, t, NULL, ro, NULL) != 0)
        return -1;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096], at[PATH_MAX];
    int rc = 0;
    /* Mount points as mountinfo's fifth field (octal escapes kept: such
     * a path fails its remount, and so the whole bind). */
    while (rc == 0 && fgets(line, sizeof line, f))
        if (sscanf(line, "%*s %*s %*s %*s %4095s", at) == 1 &&
            rz__sbx_path_under(at, t) && strcmp(at, t) != 0)
            rc = mount(NULL, at, NULL, ro, NULL);
    fclose(f);
    return rc;
}

/* A read-only bind of the host's `src` at `dst` in the new root `root`. */
static int bind_ro(const char *src, const char *root, const char *dst,
                   bool must)
{
    struct stat st;
    if (stat(src, &st) != 0)
        return must ? -1 : 0;
    char t[PATH_MAX];
    snprintf(t, sizeof t, "%s%s", root, dst);
    if (make_path(t, !S_ISDIR(st.st_mode)) != 0 ||
        mount(src, t, NULL, MS_BIND | MS_REC, NULL) != 0 || ro_tree(t) != 0)
        return -1;
    return 0;
}

static int write_file_at(const char *root, const char *path, const char *s)
{
    char t[PATH_MAX];
    snprintf(t, sizeof t, "%s%s", root, path);
    int fd = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t n = strlen(s);
    ssize_t w = write(fd, s, n);
    close(fd);
    return w == (ssize_t)n ? 0 : -1;
}

/* /dev as bwrap's --dev has it: the harmless devices and the usual links. */
static int make_dev(const char *root)
{
    static const struct { const char *name; unsigned maj, min; } devs[] = {
        { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 },
        { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
    };
    static const char *const links[][2] = {
        { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
        { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
        { "/proc/kcore", "core" },
    };
    char t[PATH_MAX];
    snprintf(t, sizeof t, "%s/dev", root);
    /* Its own mount: the root is nodev, the devices here must open. */
    if (make_path(t, false) != 0 ||
        mount("rz-dev", t, "tmpfs", MS_NOSUID, "mode=0755,size=64k") != 0)
        return -1;
    snprintf(t, sizeof t, "%s/dev/shm", root);
    if (make_path(t, false) != 0)
        return -1;
    for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
        snprintf(t, sizeof t, "%s/dev/%s", root, devs[i].name);
        if (mknod(t, S_IFCHR | 0666, makedev(devs[i].maj, devs[i].min)) != 0)
            return -1;
        chmod(t, 0666);   /* past the umask */
    }
    for (size_t i = 0; i < sizeof links / sizeof *links; i++) {
        snprintf(t, sizeof t, "%s/dev/%s", root, links[i][1]);
        if (symlink(links[i][0], t) != 0)
            return -1;
    }
    return 0;
}

/* An /etc at `dir` in the new root: the allow-list bound read-only,
 * passwd and group; with `net` the resolver's files too, as under bwrap
 * (a step without network has no use for them and does not see them). */
static int build_etc(const rz__sbx_tmpl *t, const char *root,
                     const char *dir, bool net)
{
    static const char *const net_files[] = { "/etc/resolv.conf",
                                             "/etc/hosts" };
    char at[PATH_MAX], p[PATH_MAX];
    size_t n = strlen("/etc");
    for (size_t i = 0; i < t->n_etc; i++) {
        snprintf(at, sizeof at, "%s%s", dir, t->etc[i] + n);
        if (bind_ro(t->etc[i], root, at, false) != 0)
            return -1;
    }
    for (size_t i = 0; net && i < sizeof net_files / sizeof *net_files;
         i++) {
        snprintf(at, sizeof at, "%s%s", dir, net_files[i] + n);
        if (bind_ro(net_files[i], root, at, false) != 0)
            return -1;
    }
    snprintf(p, sizeof p, "%s%s", root, dir);
    if (make_path(p, false) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/passwd", dir);
    snprintf(at, sizeof at, "%s/group", dir);
    return write_file_at(root, p, t->passwd) == 0 &&
                   write_file_at(root, at, t->group) == 0
               ? 0 : -1;
}

/* The check's program (rz__sbx_true) at RZ__SBX_TRUE_PATH in the root,
 * root's and read-only as the rest of it; none where it was not built. */
static int write_check_program(const char *root)
{
    if (rz__sbx_true_len == 0)
        return 0;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s%s", root, RZ__SBX_TRUE_PATH);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
    ssize_t w = fd >= 0 ? write(fd, rz__sbx_true, rz__sbx_true_len) : -1;
    if (fd >= 0)
        close(fd);
    return w == (ssize_t)rz__sbx_true_len ? 0 : -1;
}

/* The root every step copies: a tmpfs with the system folders and /etc's
 * allow-list bound read-only, passwd/group, /dev; then pivot_root into it
 * so that no host mount is left in this namespace (a step's copy costs
 * only what it holds). */
static int build_root(const rz__sbx_tmpl *t)
{
    const char *root = "/tmp";   /* a mount point that exists; ours alone */
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("rz-root", root, "tmpfs", MS_NOSUID | MS_NODEV,
              "mode=0755,size=8m") != 0)
        return -1;
    for (size_t i = 0; i < sizeof sys_dirs / sizeof *sys_dirs; i++) {
        struct stat st;
        char target[PATH_MAX], at[PATH_MAX];
        if (lstat(sys_dirs[i], &st) != 0)
            continue;
        ssize_t n = S_ISLNK(st.st_mode)
                        ? readlink(sys_dirs[i], target, sizeof target - 1)
                        : -1;
        snprintf(at, sizeof at, "%s%s", root, sys_dirs[i]);
        if (n > 0) {
            target[n] = '\0';
            if (symlink(target, at) != 0)
                return -1;
        } else if (S_ISDIR(st.st_mode) &&
                   bind_ro(sys_dirs[i], root, sys_dirs[i], true) != 0) {
            return -1;
        }
    }
    static const char *const dirs[] = { "/proc", "/tmp", "/etc", "/.old",
                                        "/.rz-ids", "/.rz-net" };
    char p[PATH_MAX];
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        snprintf(p, sizeof p, "%s%s", root, dirs[i]);
        if (make_path(p, false) != 0)
            return -1;
    }
    /* Steps open the files in these through their binds, never list
     * them; /.rz-net is the init's only (it binds its etc over /etc), a
     * mount of its own so that a cell can drop it whole (cell_mnt_split). */
    snprintf(p, sizeof p, "%s/.rz-ids", root);
    if (chmod(p, 0711) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/.rz-net", root);
    if (chmod(p, 0700) != 0 ||
        mount("rz-net", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=0700,size=64k") != 0 ||
        build_etc(t, root, "/etc", false) != 0 ||
        build_etc(t, root, "/.rz-net/etc", true) != 0 || make_dev(root) != 0 ||
        write_check_program(root) != 0)
        return -1;
    snprintf(p, sizeof p, "%s/.old", root);
    if (chdir(root) != 0 || syscall(SYS_pivot_root, ".", ".old") != 0 ||
        chdir("/") != 0 || umount2("/.old", MNT_DETACH) != 0 ||
        rmdir("/.old") != 0)
        return -1;
    return 0;
}

/* ---- the helper's side: one step ---- */

typedef struct step {
    req_hdr h;
    char *buf;
    const char *scratch, *exe, *out, *check;
    char **argv, **envp;
    const char *bind[MAX_BINDS];
    int fds[MAX_FDS];
    int n_fds;
} step;

static int fd_at(const step *s, int i)
{
    return i < s->n_fds ? s->fds[i] : -1;
}

enum { FD_MEM, FD_IN, FD_OUT, FD_ERR, FD_ERRPIPE, FD_SCRATCH, FD_GO,
       FD_OUTFILE, FD_FILES, FD_REST };
_Static_assert(FD_GO == FD_GO_SLOT, "the go socket's place");

static const char *next_str(char **at, char *end)
{
    char *s = *at;
    char *z = s < end ? memchr(s, '\0', (size_t)(end - s)) : NULL;
    if (!z)
        return NULL;
    *at = z + 1;
    return s;
}

/* Parse what the memfd holds; 0 or -1. */
static int parse_step(step *s)
{
    int fd = fd_at(s, FD_MEM);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < (off_t)sizeof s->h ||
        st.st_size > (off_t)(MAX_REQ_BYTES + sizeof s->h))
        return -1;
    size_t len = (size_t)st.st_size;
    s->buf = malloc(len + 1);
    if (!s->buf || pread(fd, s->buf, len, 0) != (ssize_t)len)
        return -1;
    memcpy(&s->h, s->buf, sizeof s->h);
    if (s->h.magic != REQ_MAGIC || s->h.strings_len != len - sizeof s->h ||
        s->h.argc == 0 || s->h.argc > (1u << 20) || s->h.envc > (1u << 20) ||
        s->h.n_binds > MAX_BINDS || s->h.n_cg > 3 || s->h.uid == 0 ||
        s->h.uid == (uint32_t)-1 ||
        s->n_fds != FD_REST + (int)s->h.n_binds + (int)s->h.n_cg)
        return -1;
    char *at = s->buf + sizeof s->h, *end = s->buf + len;
    if (!(s->scratch = next_str(&at, end)) || !(s->exe = next_str(&at, end)) ||
        !(s->out = next_str(&at, end)) || !(s->check = next_str(&at, end)) ||
        (s->h.check && s->check[0] != '/'))
        return -1;
    s->argv = calloc(s->h.argc + 1, sizeof *s->argv);
    s->envp = calloc(s->h.envc + 1, sizeof *s->envp);
    if (!s->argv || !s->envp)
        return -1;
    for (uint32_t i = 0; i < s->h.argc; i++)
        if (!(s->argv[i] = (char *)next_str(&at, end)))
            return -1;
    for (uint32_t i = 0; i < s->h.envc; i++)
        if (!(s->envp[i] = (char *)next_str(&at, end)))
            return -1;
    for (uint32_t i = 0; i < s->h.n_binds; i++) {
        const char *b = next_str(&at, end);
        if (!b || (b[0] != 'r' && b[0] != 'w') ||
            (b[1] != 'd' && b[1] != 'f') || b[2] != '/')
            return -1;
        s->bind[i] = b;
    }
    return s->scratch[0] == '/' && (!s->out[0] || s->out[0] == '/') ? 0 : -1;
}

/* Hand the host's folder entries to the step's uid: it is not root on the
 * host any more, and the runner (root) made them. `skip`: an entry not
 * handed over (at the top only). */
static void chown_tree(int dirfd, int depth, uid_t uid, const char *skip)
{
    /* A description of its own: a dup would share the caller's offset. */
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") ||
            (skip && !strcmp(e->d_name, skip)))
            continue;
        /* A reused folder's entries are the step user's already: a chown
         * would still journal a new ctime. */
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            st.st_uid != uid || st.st_gid != uid)
            fchownat(dirfd, e->d_name, uid, uid, AT_SYMLINK_NOFOLLOW);
        if (e->d_type == DT_DIR && depth < CHOWN_DEPTH) {
            int sub = openat(dirfd, e->d_name,
                             O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                chown_tree(sub, depth + 1, uid, NULL);
                close(sub);
            }
        }
    }
    closedir(d);
}

/* Attach a detached tree the runner cloned at `dst`. */
static int attach(int tree, const char *dst, bool ro)
{
    int rc = (int)syscall(SYS_move_mount, tree, "", AT_FDCWD, dst,
                          MOVE_MOUNT_F_EMPTY_PATH);
    if (rc == 0 && ro)
        rc = mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY |
                   MS_NOSUID | MS_NODEV, NULL);
    return rc;
}

/* `own`: the root folder is that uid's and gid's; 0: root's. */
static int tmpfs_at(const char *dst, uint32_t mb, const char *mode,
                    uint32_t own)
{
    char opts[128];
    snprintf(opts, sizeof opts, "mode=%s,size=%llu,uid=%u,gid=%u", mode,
             (unsigned long long)mb << 20, own, own);
    return mount("tmpfs", dst, "tmpfs", MS_NOSUID | MS_NODEV, opts);
}

/* A mount point for `path` (a host path that the root lacks): under /tmp
 * or /dev/shm it is made in the step's own tmpfs there; elsewhere its top
 * folder gets a small tmpfs of the step's own, so nothing a step makes is
 * seen by another. */
static int mount_point(const char *path, bool file, char tops[][NAME_MAX + 2],
                       int *n_tops)
{
    size_t known = rz__sbx_path_under(path, "/tmp") ? strlen("/tmp")
                   : rz__sbx_path_under(path, "/dev/shm") ? strlen("/dev/shm")
                                                            : 0;
    if (!known) {
        char top[NAME_MAX + 2];
        size_t n = strcspn(path + 1, "/");
        known = 1 + n;   /* its tmpfs is there below */
        if (n == 0 || n > NAME_MAX || path[1 + n] != '/')
            return -1;
        snprintf(top, sizeof top, "/%.*s", (int)n, path + 1);
        if (!strcmp(top, "/proc") || !strcmp(top, "/dev") ||
            !strcmp(top, "/etc") || rz__sbx_path_is_system(top))
            return -1;
        bool done = false;
        for (int i = 0; i < *n_tops; i++)
            done |= strcmp(tops[i], top) == 0;
        if (!done) {
            if ((mkdir(top, 0755) != 0 && errno != EEXIST) ||
                tmpfs_at(top, 1, "0755", 0) != 0)
                return -1;
            snprintf(tops[(*n_tops)++], NAME_MAX + 2, "%s", top);
        }
    }
    return make_path_from(path, path[known] ? known : 0, file);
}

/* `file` (passwd or group) naming the steps' uid, made once per uid in
 * the root's /.rz-ids (the root is shared and still writable here; a
 * rename makes it whole at once), then bound over `etc`/`file`,
 * read-only. */
static int bind_id_file(const char *etc, const char *file, const char *base,
                        uint32_t uid)
{
    char path[64], tmp[80], line[128];
    snprintf(path, sizeof path, "/.rz-ids/%s-%u", file, uid);
    if (access(path, F_OK) != 0) {
        if (file[0] == 'p')
            snprintf(line, sizeof line, "rhizos:x:%u:%u:rhizos step:"
                     "/nonexistent:/usr/sbin/nologin\n", uid, uid);
        else
            snprintf(line, sizeof line, "rhizos:x:%u:\n", uid);
        snprintf(tmp, sizeof tmp, "/.rz-ids/.%s-%u.%ld", file, uid,
                 (long)syscall(SYS_gettid));
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            return -1;
        size_t nb = strlen(base), nl = strlen(line);
        bool ok = write(fd, base, nb) == (ssize_t)nb &&
                  write(fd, line, nl) == (ssize_t)nl;
        close(fd);
        if (!ok || rename(tmp, path) != 0) {
            unlink(tmp);
            return -1;
        }
    }
    char dst[64];
    snprintf(dst, sizeof dst, "%s/%s", etc, file);
    if (mount(path, dst, NULL, MS_BIND, NULL) != 0 ||
        mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID |
              MS_NODEV, NULL) != 0)
        return -1;
    return 0;
}

static int host_proc = -1;     /* the host's /proc (the root has none);
                                * never a step's (its init closes it) */

/* A cell's two mount namespaces: `net_mnt`, with the network steps' /etc
 * under /.rz-net, which only their inits are cloned from, and `cell_mnt`,
 * the one it runs in, without it: every other step's namespace is a copy
 * of the cell's, so it would copy (and tear down) those ~17 binds it never
 * sees. -1: none (the helper's own, which has both). Each with its root
 * (O_PATH): see mnt_enter. */
static int net_mnt = -1, cell_mnt = -1;
static int net_root = -1, cell_root = -1;

static int mnt_ns_open(void)
{
    return host_proc < 0 ? -1
                         : openat(host_proc, "self/ns/mnt", O_RDONLY | O_CLOEXEC);
}

static int root_open(void)
{
    return open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
}

/* Enter mount namespace `ns` with `root` (a directory in it) as root and
 * cwd. setns alone moves both to the top mount on the namespace's root,
 * which is the host's `/` where the runner was started chrooted into a
 * mount point (schroot, `unshare --root`), not the sandbox's root. */
static int mnt_enter(int ns, int root)
{
    if (setns(ns, CLONE_NEWNS) != 0 || fchdir(root) != 0 || chroot(".") != 0 ||
        chdir("/") != 0)
        return -1;
    return 0;
}

static void fd_drop(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* 0, split or (no descriptor to be had) left whole; -1: neither. */
static int cell_mnt_split(void)
{
    int net = mnt_ns_open(), nroot = root_open(), own = -1, oroot = -1;
    if (net < 0 || nroot < 0 || unshare(CLONE_NEWNS) != 0) {
        fd_drop(&net);
        fd_drop(&nroot);
        return 0;   /* one namespace with both, as the helper's */
    }
    if (umount2("/.rz-net", MNT_DETACH) == 0 && (own = mnt_ns_open()) >= 0 &&
        (oroot = root_open()) >= 0) {
        net_mnt = net;
        net_root = nroot;
        cell_mnt = own;
        cell_root = oroot;
        return 0;
    }
    fd_drop(&own);
    int rc = mnt_enter(net, nroot);   /* whole again, or a copy of it */
    close(net);
    close(nroot);
    return rc;
}

/* A cell's mount namespaces, copies of the helper's that each of its
 * steps copies in turn: passwd and group naming its uid, in both /etcs
 * (once per cell: no mount per step for them). */
static int cell_ids(uint32_t uid, const rz__sbx_tmpl *t)
{
    static const char *const etcs[] = { "/etc", "/.rz-net/etc" };
    if (unshare(CLONE_NEWNS) != 0)
        return -1;
    for (size_t i = 0; i < sizeof etcs / sizeof *etcs; i++)
        if (bind_id_file(etcs[i], "passwd", t->passwd, uid) != 0 ||
            bind_id_file(etcs[i], "group", t->group, uid) != 0)
            return -1;
    return cell_mnt_split();
}

/* Loopback up, as bwrap does: servers on 127.0.0.1 inside a step work. */
static void loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq r;
    memset(&r, 0, sizeof r);
    snprintf(r.ifr_name, sizeof r.ifr_name, "lo");
    if (fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &r) == 0) {
        r.ifr_flags |= IFF_UP | IFF_RUNNING;
        ioctl(fd, SIOCSIFFLAGS, &r);
    }
    if (fd >= 0)
        close(fd);
}

/* The outputs file's folder in the step's tmpfs (root's, as the host's
 * out/ was read-only to the step), held open for copy_out; -1: none. */
static int out_dir = -1;
static const char *out_name;

static bool out_inside(const step *s)
{
    size_t n = strlen(s->scratch);
    return s->out[0] && rz__sbx_path_under(s->out, s->scratch) &&
           s->out[n] == '/';
}

/* The scratch folder's entry that holds the outputs file (in `buf`), which
 * the step never sees: it writes its own in its tmpfs (make_out); NULL
 * when the file is not inside. */
static const char *out_top(const step *s, char buf[NAME_MAX + 1])
{
    if (!out_inside(s))
        return NULL;
    const char *at = s->out + strlen(s->scratch) + 1;
    size_t n = strcspn(at, "/");
    if (n == 0 || n > NAME_MAX)
        return NULL;
    memcpy(buf, at, n);
    buf[n] = '\0';
    return buf;
}

/* The empty outputs file, the step's to write, where the runner said. */
static int make_out(const step *s)
{
    if (!out_inside(s))
        return 0;   /* none, or bound from the host */
    char dir[PATH_MAX];
    const char *slash = strrchr(s->out, '/');
    size_t n = (size_t)(slash - s->out);
    if (n >= sizeof dir || !slash[1])
        return -1;
    memcpy(dir, s->out, n);
    dir[n] = '\0';
    if (make_path_from(dir, strlen(s->scratch), false) != 0)
        return -1;
    out_dir = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    out_name = slash + 1;
    int fd = out_dir >= 0 ? openat(out_dir, out_name, O_WRONLY | O_CREAT |
                                   O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644) : -1;
    int rc = fd >= 0 && fchown(fd, s->h.uid, s->h.uid) == 0 ? 0 : -1;
    if (fd >= 0)
        close(fd);
    /* RZ_OUTPUT_DIR: the step's own, in its tmpfs, where the host has
     * one to copy it to (the module has file outputs). */
    struct stat hf;
    if (rc == 0 && fstat(fd_at(s, FD_FILES), &hf) == 0 && S_ISDIR(hf.st_mode) &&
        (mkdirat(out_dir, "files", 0755) != 0 ||
                    fchownat(out_dir, "files", s->h.uid, s->h.uid,
                             AT_SYMLINK_NOFOLLOW) != 0))
        rc = -1;
    return rc;
}

/* After the step: its file outputs folder copied to the host's, which the
 * attempt takes into the blob store; the step's tmpfs goes with it. Past
 * a cap the log says which and the step fails: -1. */
static int copy_files(const step *s, int host, int err)
{
    struct stat st;
    if (out_dir < 0 || host < 0 || fstat(host, &st) != 0 || !S_ISDIR(st.st_mode))
        return 0;
    int from = openat(out_dir, "files", O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                      O_CLOEXEC);
    if (from < 0)
        return 0;
    rz__outdir_copy c = { s->h.file_cap, s->h.files_cap, 0, NULL };
    if (rz__outdir_copy_tree(&c, from, host, 0) == 0)
        return 0;
    if (c.over)
        dprintf(err, "\nrhizos: the step's file outputs (RZ_OUTPUT_DIR) are "
                "over their cap: %s (at most %llu MiB a file, %llu MiB in "
                "all)\n", c.over, (unsigned long long)(s->h.file_cap >> 20),
                (unsigned long long)(s->h.files_cap >> 20));
    else
        dprintf(err, "\nrhizos: the step's file outputs could not be copied "
                "out: %s\n", strerror(errno));
    return -1;
}

/* After the step: its outputs file copied to the host's, up to out_cap
 * bytes. Larger, nothing is copied and the log says why (the attempt's
 * reason quotes its last line): -1. The file is the step's: opened without
 * following a link or blocking on a fifo, and copied only if regular. */
static int copy_out(const step *s, int host, int err)
{
    int fd = out_dir >= 0 ? openat(out_dir, out_name, O_RDONLY | O_NOFOLLOW |
                                   O_NONBLOCK | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return 0;   /* none: the host's stays empty */
    }
    uint64_t done = 0;
    char buf[16384];
    ssize_t r = 0;
    bool over = (uint64_t)st.st_size > s->h.out_cap;
    while (!over && (r = read(fd, buf, sizeof buf)) > 0) {
        over = done + (uint64_t)r > s->h.out_cap;   /* grew meanwhile */
        for (ssize_t off = 0; !over && off < r;) {
            ssize_t w = write(host, buf + off, (size_t)(r - off));
            if (w <= 0)
                break;
            off += w;
        }
        done += (uint64_t)r;
    }
    close(fd);
    if (!over)
        return 0;
    if (ftruncate(host, 0) != 0) {
        /* a partial copy is refused as JSON all the same */
    }
    dprintf(err, "\nrhizos: the step's output is larger than %llu KiB (its "
            "outputs file; the most a step may write, [limits] "
            "max_output_kb on a node)\n",
            (unsigned long long)(s->h.out_cap >> 10));
    return -1;
}

/* What every step's init mounts in its copy of the root whatever the
 * step: its pid namespace's /proc, /tmp of `mb` MiB, /dev/shm. */
static int common_mounts(uint32_t mb)
{
    return mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                 NULL) == 0 &&
                   tmpfs_at("/tmp", mb, "1777", 0) == 0 &&
                   tmpfs_at("/dev/shm", SHM_MB, "1777", 0) == 0
               ? 0 : -1;
}

/* The step's own mounts, after common_mounts. */
static int step_mounts(const step *s)
{
    char tops[4][NAME_MAX + 2];
    int n_tops = 0;
    uint32_t mb = s->h.scratch_mb;
    if ((s->h.network &&
         (mount("/.rz-net/etc", "/etc", NULL, MS_BIND | MS_REC, NULL) != 0 ||
          mount(NULL, "/etc", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY |
                MS_NOSUID | MS_NODEV, NULL) != 0)) ||
        mount_point(s->scratch, false, tops, &n_tops) != 0 ||
        tmpfs_at(s->scratch, mb, "0755", s->h.uid) != 0)
        return -1;
    /* The host's entries, each at its own path, in the order the runner
     * gave them (the scratch's before what is nested in them). */
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < s->h.n_binds; i++) {
        const char *b = s->bind[i], *dst = b + 2;
        bool inside = rz__sbx_path_under(dst, s->scratch);
        rc = (inside ? make_path_from(dst, strlen(s->scratch), b[1] == 'f')
                     : mount_point(dst, b[1] == 'f', tops, &n_tops)) == 0 &&
             attach(fd_at(s, FD_REST + (int)i), dst, b[0] == 'r') == 0
                 ? 0 : -1;
    }
    if (rc == 0)
        rc = make_out(s);
    /* Nothing of the root is the step's to change. */
    for (int i = 0; rc == 0 && i < n_tops; i++)
        rc = mount(NULL, tops[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY |
                   MS_NOSUID | MS_NODEV, NULL);
    if (rc == 0)
        rc = mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY |
                   MS_NOSUID | MS_NODEV, NULL);
    return rc;
}

/* The step's request asks for the sandbox's check (rz__sbx_launch) and it
 * has not passed yet: a failure says so, not its errno. */
static bool checking;

static int check_status = -1;   /* the check's wait status, once ended */

/* Checking: RZ__SBX_CHECK_FAILED, then why (rz__sbx_launch); else the
 * errno. */
static _Noreturn void fail_to(int errpipe)
{
    int e = errno ? errno : EIO;
    int v[2] = { RZ__SBX_CHECK_FAILED, check_status >= 0 ? -1 - check_status
                                                         : e };
    ssize_t w = checking ? write(errpipe, v, sizeof v)
                         : write(errpipe, &e, sizeof e);
    (void)w;
    _exit(127);
}

/* The signals a step sets back to the default (signals_of_runner). */
static int step_dfl[NSIG];
static int n_step_dfl;

/* The capability bounding set emptied: what an exec may ever gain. A
 * cell's process does it once for all its steps (each drop is a credential
 * commit, 41 of them a step were the dearest part of its start); it keeps
 * its own effective capabilities, which its steps' inits need for their
 * mounts and which each step gives up at setresuid. */
static bool bset_empty;

static int drop_bset(void)
{
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
            return -1;
    bset_empty = true;
    return 0;
}

/* The step: its stdio, limits, then nobody with nothing, then exec. */
static _Noreturn void step_exec(const step *s, const rz__sbx_tmpl *t)
{
    int ep = fd_at(s, FD_ERRPIPE);
    /* exec resets every handled signal but keeps the ignored ones: those
     * the helper ignores (signals_of_runner) go back to the default. */
    for (int i = 0; i < n_step_dfl; i++)
        signal(step_dfl[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* Above 2 first, so no dup2 clobbers another. */
    if ((ep = fcntl(ep, F_DUPFD_CLOEXEC, 3)) < 0)
        _exit(127);
    int hi[3];
    for (int i = 0; i < 3; i++)
        if ((hi[i] = fcntl(fd_at(s, FD_IN + i), F_DUPFD_CLOEXEC, 3)) < 0)
            fail_to(ep);
    for (int i = 0; i < 3; i++)
        if (dup2(hi[i], i) < 0)
            fail_to(ep);
    if (syscall(SYS_close_range, 3u, ~0u, 4u /* CLOEXEC */) != 0)
        for (int fd = 3; fd < 65536; fd++)
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    struct rlimit zero = { 0, 0 };
    setrlimit(RLIMIT_CORE, &zero);
    if (setrlimit(RLIMIT_NOFILE, &s->h.nofile) != 0 ||
        setrlimit(RLIMIT_FSIZE, &s->h.fsize) != 0 ||
        (s->h.limit_as && setrlimit(RLIMIT_AS, &s->h.as) != 0) ||
        (s->h.limit_cpu && setrlimit(RLIMIT_CPU, &s->h.cpu) != 0))
        fail_to(ep);
    if (chdir(s->scratch) != 0 ||
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail_to(ep);
    if (!bset_empty && drop_bset() != 0)
        fail_to(ep);
    gid_t g = s->h.uid;
    if (setgroups(0, &g) != 0 || setresgid(g, g, g) != 0 ||
        setresuid(s->h.uid, s->h.uid, s->h.uid) != 0)
        fail_to(ep);
    if (t->bpf) {
        struct sock_fprog prog = {
            .len = (unsigned short)(t->bpf_len / sizeof(struct sock_filter)),
            .filter = (struct sock_filter *)t->bpf,
        };
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
            fail_to(ep);
    }
    execve(s->exe, s->argv, s->envp);
    fail_to(ep);
}

/* A step that failed with its scratch or /tmp full gets that said as the
 * last line of its log, which the attempt's reason quotes. */
static void say_if_full(const step *s, int err)
{
    const char *where[] = { s->scratch, "/tmp" };
    const char *name[] = { "scratch folder", "/tmp" };
    for (int i = 0; i < 2; i++) {
        struct statvfs v;
        if (statvfs(where[i], &v) == 0 &&
            (unsigned long long)v.f_bavail * v.f_frsize < (64u << 10)) {
            dprintf(err, "\nrhizos: the step's %s is full (%u MiB; a module "
                    "asks for more with requirements.scratch_mb)\n", name[i],
                    s->h.scratch_mb);
            return;
        }
    }
}

/* Fresh network namespaces, made while this process waits for its next
 * request: creating one is the dearest part of a step's clone (~0.5 ms of
 * CPU here, against ~0.05 for each other namespace), so a step takes one
 * made earlier. Outside a cell each is handed to one step only; in a
 * cell it becomes the cell's (cell_net_take). */
#define NET_POOL 2
static int net_pool[NET_POOL];
static int n_net;
static int host_net = -1;   /* the helper's own, opened before its root
                               * (which has no /proc) was built */

/* A cell's spare: the next step's init, made ahead (make_spare) so that
 * a step's start waits for no clone, network namespace or common mount;
 * used by one step only, as the inits made per step are. */
static pid_t spare_pid = -1;
static int spare_sock = -1;    /* to it: the step's request goes there */
static uint32_t spare_mb;      /* its /tmp's size: the last step's */
static bool spare_broken;      /* one could not be handed a step: no more */
static bool spare_ready;       /* it has noted itself to the runner */

/* One more namespace, its loopback up, into the pool; 0 or -1. */
static int net_pool_fill(void)
{
    if (host_net < 0 || n_net >= NET_POOL || unshare(CLONE_NEWNET) != 0)
        return -1;
    int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int fd = sk >= 0 ? ioctl(sk, SIOCGSKNS) : -1;
    if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) == 0)
        loopback_up();
    if (sk >= 0)
        close(sk);
    if (setns(host_net, CLONE_NEWNET) != 0)
        _exit(1);   /* steps with the host's network would not get it */
    if (fd < 0)
        return -1;
    net_pool[n_net++] = fd;
    return 0;
}

/* A cell's loopback namespace, which its steps without network use one
 * after another: making and freeing one per step was ~1 ms of CPU a step
 * (loopback's registration and IPv4 sysctls, then cleanup_net in a kernel
 * worker). A step gets it only when nothing of the last one is in it:
 * the last process put in it (an init, or a spare that became one) has
 * ended, so every process of that pid namespace has (an init's end waits
 * for its namespace's last task), their descriptors closed; and the
 * namespace holds no socket (sockets the kernel keeps after a close: TCP
 * in TIME_WAIT or closing; a listener or unix socket kept alive in flight
 * in an SCM_RIGHTS loop; a bound netlink socket). Else the cell takes a
 * fresh one from the pool and the old one goes with its last holder. A
 * step cannot change it: it runs with no capability, so lo, addresses,
 * routes, sysctls and netfilter stay as made. What passes from one step
 * to the next is counters (lo's packet counts, /proc/net/snmp and
 * netstat): docs/security.md. */
static int cell_net = -1;
static int cell_net_owner = -1;   /* pidfd of its last occupant; -1: none
                                   * known (then never reused) */
static bool cell_net_used;        /* someone was put in it */
#define NET_VIEWS 5
#define NET_VIEW_FLOWLABEL 4   /* absent without IPv6: then none can be */
static const char *const net_view_names[NET_VIEWS] = {
    "self/net/sockstat", "self/net/sockstat6", "self/net/unix",
    "self/net/netlink", "self/net/ip6_flowlabel" };
static int net_view[NET_VIEWS] = { -1, -1, -1, -1, -1 };   /* opened inside */

static void cell_net_drop(void)
{
    for (int i = 0; i < NET_VIEWS; i++) {
        if (net_view[i] >= 0)
            close(net_view[i]);
        net_view[i] = -1;
    }
    if (cell_net >= 0)
        close(cell_net);
    if (cell_net_owner >= 0)
        close(cell_net_owner);
    cell_net = cell_net_owner = -1;
    cell_net_used = false;
}

/* Close this copy of the pool (in a new process: its parent's pool is
 * its parent's). */
static void net_pool_drop(void)
{
    for (int i = 0; i < n_net; i++)
        close(net_pool[i]);
    n_net = 0;
}

/* A namespace for one step, or -1 (the step then makes its own). */
static int net_pool_take(void)
{
    if (n_net == 0)
        net_pool_fill();
    return n_net > 0 ? net_pool[--n_net] : -1;
}

/* The running step's mount namespace, held: the last reference to it
 * tears every mount of the step down and waits for an RCU grace period
 * (synchronize_rcu_expedited: ~0.25 ms asleep here). Without the hold
 * that is the exit of the step's init, before the runner can reap it;
 * with it, this process lets go of it once the init is gone, when no
 * request waits (else after its answer: mnt_let_go). Linux 6.11 and
 * later; elsewhere only the init's pidfd is held. */
static int held_mnt = -1, held_pidfd = -1;
static int ended_mnt = -1;   /* an ended step's, not let go of yet */

static void mnt_let_go(void)
{
    if (ended_mnt >= 0)
        close(ended_mnt);
    ended_mnt = -1;
}

/* The running step's init has ended: its namespace is to be let go of. */
static void mnt_ended(void)
{
    mnt_let_go();
    ended_mnt = held_mnt;
    if (held_pidfd >= 0)
        close(held_pidfd);
    held_mnt = held_pidfd = -1;
}

/* Every copy closed (in a new init: its cell's are not its own). */
static void mnt_release(void)
{
    mnt_ended();
    mnt_let_go();
}

/* A spare's copy of the ended step's namespace, often the last reference
 * to it: dropping that waits for the grace period, so a child sharing our
 * memory and descriptors drops it, beside the spare's own making and its
 * wait for its step's request. The step starts only once that child is
 * gone (mnt_drop_wait): the namespace's tmpfs is charged to the cell's
 * memory until then. */
static pid_t mnt_dropper = -1;

static int mnt_drop_main(void *fd)
{
    syscall(SYS_close, (long)(intptr_t)fd);
    syscall(SYS_exit, 0);
    return 0;
}

static void mnt_drop_aside(void)
{
    static char stack[16384] __attribute__((aligned(64)));
    if (ended_mnt < 0)
        return;
    /* No exit signal: only mnt_drop_wait reaps it (__WALL). */
    int pid = clone(mnt_drop_main, stack + sizeof stack, CLONE_VM | CLONE_FILES,
                    (void *)(intptr_t)ended_mnt);
    if (pid > 0) {
        mnt_dropper = pid;
        ended_mnt = -1;   /* the child's to close; else mnt_release's */
    }
}

static void mnt_drop_wait(void)
{
    while (mnt_dropper > 0 && waitpid(mnt_dropper, NULL, __WALL) < 0 &&
           errno == EINTR)
        ;
    mnt_dropper = -1;
}

static void mnt_hold(pid_t pid)
{
    mnt_ended();   /* let go of after this request's answer */
#ifdef SYS_pidfd_open
    /* The pidfd alone still says when the init is gone (wait_request). */
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int ns = pfd >= 0 ? ioctl(pfd, PIDFD_GET_MNT_NAMESPACE, 0) : -1;
    if (ns >= 0 && fcntl(ns, F_SETFD, FD_CLOEXEC) != 0) {
        close(ns);
        ns = -1;
    }
    if (pfd >= 0 && fcntl(pfd, F_SETFD, FD_CLOEXEC) != 0) {
        close(pfd);
        pfd = -1;
    }
    held_mnt = ns;
    held_pidfd = pfd;
#else
    (void)pid;
#endif
}

static void make_spare(int s, int life);

/* The cell's memory cgroup's usage and limit files (the runner's 'm');
 * -1: not known. */
static int mem_usage = -1, mem_limit = -1;
#define SPARE_ROOM (4ull << 20)    /* a spare takes well under a MiB */

int rz__sbx_mem_bytes(const char *buf, unsigned long long *v)
{
    if (strcmp(buf, "max\n") == 0) {
        *v = ULLONG_MAX;
        return 0;
    }
    char *end = NULL;
    errno = 0;
    *v = strtoull(buf, &end, 10);
    return errno == 0 && buf[0] >= '0' && buf[0] <= '9' &&
                   (end[0] == '\0' || (end[0] == '\n' && end[1] == '\0'))
               ? 0 : -1;
}

/* A memory cgroup file's number of bytes; 0 or -1. */
static int mem_read(int fd, unsigned long long *v)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return rz__sbx_mem_bytes(buf, v);
}

/* What the ended step left charged to the cell leaves room for a spare
 * under the limit. Unknown: no. */
static bool spare_room(void)
{
    unsigned long long use, lim;
    return mem_usage >= 0 && mem_limit >= 0 && mem_read(mem_usage, &use) == 0 &&
           mem_read(mem_limit, &lim) == 0 && use < lim &&
           lim - use > SPARE_ROOM;
}

/* Wait for the next request on `s`. Once the running step's init has
 * ended (and so every process of its pid namespace), the next step's
 * spare is made at once, while the runner reaps that init and reads its
 * counters, rather than on its 'f'. The ended step's mount namespace is
 * let go of there too; the last reference to it waits for an RCU grace
 * period (milliseconds under load) during which this process would answer
 * nothing. Where the step's charge leaves room, the spare is made first
 * and drops the last reference (its copy, closed as it starts), so the
 * wait is that spare's alone; else the namespace goes first: its tmpfs
 * is charged to the cell's memory, whose limit is still the ended step's,
 * and a spare made on top of it could be killed for memory that the
 * step's counters would then report. */
static void wait_request(int s, int life)
{
    for (;;) {
        struct pollfd pf[2] = { { s, POLLIN, 0 }, { held_pidfd, POLLIN, 0 } };
        int n = poll(pf, held_pidfd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno != EINTR)
            return;
        if (n > 0 && held_pidfd >= 0 && pf[1].revents) {
            bool room = spare_room();
            mnt_ended();
            if (!room)
                mnt_let_go();
            make_spare(s, life);
            mnt_let_go();
        }
        if (n > 0 && pf[0].revents)
            return;
    }
}

/* The files of `net_view_names` opened from inside namespace `ns`
 * (/proc/self/net follows the opener's namespace and keeps it); 0 or -1. */
static int net_view_open(int ns)
{
    if (host_proc < 0 || host_net < 0 || setns(ns, CLONE_NEWNET) != 0)
        return -1;
    int rc = 0;
    for (int i = 0; i < NET_VIEWS; i++)
        if ((net_view[i] = openat(host_proc, net_view_names[i],
                                  O_RDONLY | O_CLOEXEC)) < 0 &&
            !(i == NET_VIEW_FLOWLABEL && errno == ENOENT))
            rc = -1;
    /* No TCP metrics kept (RTT, window of closed connections to
     * 127.0.0.1), as in a fresh namespace: not one step's for the next. */
    int nm = openat(host_proc, "sys/net/ipv4/tcp_no_metrics_save",
                    O_WRONLY | O_CLOEXEC);
    if (nm < 0 || write(nm, "1", 1) != 1)
        rc = -1;
    if (nm >= 0)
        close(nm);
    if (setns(host_net, CLONE_NEWNET) != 0)
        _exit(1);   /* steps with the host's network would not get it */
    return rc;
}

/* View `i` read from its start into buf; its length or -1. */
static ssize_t net_view_read(int i, char *buf, size_t size)
{
    if (lseek(net_view[i], 0, SEEK_SET) != 0)
        return -1;
    size_t len = 0;
    ssize_t n;
    while (len < size - 1 &&
           (n = read(net_view[i], buf + len, size - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return len < size - 1 ? (ssize_t)len : -1;   /* too long: not empty */
}

/* Every "inuse N" and "tw N" of a sockstat is 0 ("orphan" and "alloc"
 * are the host's, not the namespace's). */
static bool sockstat_empty(const char *buf)
{
    for (const char *at = buf; (at = strpbrk(at, "it")) != NULL; at++) {
        int n = -1;
        if ((strncmp(at, "inuse ", 6) == 0 && sscanf(at + 6, "%d", &n) == 1) ||
            (strncmp(at, "tw ", 3) == 0 && (at == buf || at[-1] == ' ') &&
             sscanf(at + 3, "%d", &n) == 1))
            if (n != 0)
                return false;
    }
    return true;
}

/* View `i` is its header line alone (no IPv6 flow label: absent). */
static bool net_view_header_only(int i, char *buf, size_t size)
{
    if (i == NET_VIEW_FLOWLABEL && net_view[i] < 0)
        return true;
    return net_view_read(i, buf, size) >= 0 && strchr(buf, '\n') != NULL &&
           strchr(buf, '\n')[1] == '\0';
}

/* No socket in the cell's namespace: sockstat's counts, no unix socket,
 * no netlink socket with a port (the kernel's own have port 0); and no
 * IPv6 flow label, which a step may make shareable and leave lingering
 * up to a minute after its socket closed (IPV6_FLOWLABEL_MGR: no
 * privilege), where the next step would find it. */
static bool cell_net_empty(void)
{
    char buf[8192];
    for (int i = 0; i < 2; i++)
        if (net_view_read(i, buf, sizeof buf) <= 0 || !sockstat_empty(buf))
            return false;
    if (!net_view_header_only(2, buf, sizeof buf) ||
        !net_view_header_only(NET_VIEW_FLOWLABEL, buf, sizeof buf))
        return false;   /* a unix socket, a flow label */
    if (net_view_read(3, buf, sizeof buf) < 0)
        return false;
    const char *line = strchr(buf, '\n');
    while (line && line[1]) {
        unsigned long long sk;
        int proto;
        unsigned port = 1;
        if (sscanf(line + 1, "%llx %d %u", &sk, &proto, &port) != 3 ||
            port != 0)
            return false;
        line = strchr(line + 1, '\n');
    }
    return true;
}

/* Its last occupant (and so all of its pid namespace) has ended. */
static bool cell_net_vacant(void)
{
    if (!cell_net_used)
        return true;
    struct pollfd pf = { cell_net_owner, POLLIN, 0 };
    return cell_net_owner >= 0 && poll(&pf, 1, 0) == 1;
}

/* A step's namespace in a cell: the cell's when it is vacant and empty,
 * else a fresh one, which becomes the cell's. A descriptor of the
 * caller's, or -1; *shared: it is the cell's (the caller then names its
 * occupant, cell_net_occupied). */
static int cell_net_take(bool *shared)
{
    *shared = false;
    if (fresh_net)
        return net_pool_take();
    if (cell_net >= 0 && !(cell_net_vacant() && cell_net_empty()))
        cell_net_drop();   /* its holders keep it; no one joins it again */
    if (cell_net < 0) {
        int fresh = net_pool_take();
        if (fresh < 0 || net_view_open(fresh) != 0) {
            cell_net_drop();
            return fresh;   /* one step's only, as outside a cell */
        }
        cell_net = fresh;
    }
    int fd = fcntl(cell_net, F_DUPFD_CLOEXEC, 0);
    *shared = fd >= 0;
    return fd;
}

/* `pidfd` (of the process just put in the cell's namespace; -1: none
 * could be had, and then it is never reused) is its occupant now. */
static void cell_net_occupied(int pidfd)
{
    if (cell_net_owner >= 0)
        close(cell_net_owner);
    cell_net_owner = pidfd;
    cell_net_used = true;
}

/* Fill the pool while no request waits on `s`. */
static void net_pool_idle(int s)
{
    struct pollfd pf = { s, POLLIN, 0 };
    while (n_net < (cell_net >= 0 ? 1 : NET_POOL) && poll(&pf, 1, 0) == 0)
        if (net_pool_fill() != 0)
            break;
}

/* The step's network: the pooled namespace `net` (closed here) or, when
 * there was none, a new one; with the host's, nothing. */
static int join_net(const step *s, int net)
{
    int rc = 0;
    if (net >= 0) {
        rc = setns(net, CLONE_NEWNET);
        close(net);
    } else if (!s->h.network) {
        rc = unshare(CLONE_NEWNET);
        if (rc == 0)
            loopback_up();
    }
    return rc;
}

typedef struct step_args {
    const step *s;
    const rz__sbx_tmpl *t;
} step_args;

static int step_main(void *arg)
{
    const step_args *a = arg;
    step_exec(a->s, a->t);
}

/* The step, as posix_spawn starts a child: clone(CLONE_VM | CLONE_VFORK)
 * on a stack of its own, so that this process's memory is not
 * copied (and torn down) once more per step; this process waits until
 * the step has exec'd or failed. Not fork(): the runner's atfork handlers
 * (node's libuv reopens its signal pipe) would run here and could take
 * the step's descriptors. step_exec changes only what is the step's own
 * (its descriptor table, signal handlers, limits, credentials, filter). */
#define STEP_STACK (64u << 10)
static pid_t spawn_step(const step *s, const rz__sbx_tmpl *t)
{
    /* The child runs on it only until it execs or exits (CLONE_VFORK:
     * we wait), so one stack of this process's own serves every spawn,
     * with no map and unmap (a TLB flush of every CPU the two ran on). */
    static char stack[STEP_STACK] __attribute__((aligned(64)));
    step_args a = { s, t };
    return clone(step_main, stack + STEP_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD,
                 &a);
}

/* The sandbox's check (rz__sbx_launch): its program started as the step
 * would be (its uid, limits, filter), in the step's namespaces and cgroups,
 * while this init makes the step's own mounts (it runs in "/", its stdio
 * /dev/null: nothing of the step's). Nothing of the step runs before its
 * end is read (check_passes). The copy of the bounding set's flag is this
 * init's again after (the check's process shares our memory, and the
 * step drops its own set). */
static pid_t check_pid = -1;

static void check_start(const step *s, const rz__sbx_tmpl *t)
{
    char *argv[] = { "true", NULL }, *envp[] = { NULL };
    int null = checking ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
    if (null < 0)
        return;   /* checking, check_passes says it failed */
    step chk = *s;
    chk.exe = s->check;
    chk.argv = argv;
    chk.envp = envp;
    chk.scratch = "/";
    for (int i = FD_IN; i <= FD_ERR && i < chk.n_fds; i++)
        chk.fds[i] = null;
    bool bset = bset_empty;
    check_pid = spawn_step(&chk, t);
    bset_empty = bset;
    close(null);
}

static bool check_passes(void)
{
    int status = -1;
    while (check_pid > 0 && waitpid(check_pid, &status, 0) < 0 &&
           errno == EINTR)
        ;
    if (check_pid > 0)
        check_status = status;
    return check_pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void on_chld(int sig)
{
    (void)sig;
}

/* pid 1 of the step's namespaces: mounts, then the step, then reaps until
 * it ends; gone with it (every other task of the namespace goes too) or
 * when the runner exits (its end of the life pipe closes). */
/* The runner's argument strings, [arg_lo, arg_hi), as the helper found
 * them in /proc/self/stat; 0 when it could not. */
static unsigned long arg_lo, arg_hi;

static void args_find(void)
{
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    char *at = n > 0 ? (buf[n] = '\0', strrchr(buf, ')')) : NULL;
    unsigned long v[2] = { 0, 0 };
    /* Fields 48 and 49 (arg_start, arg_end); the 3rd follows ") ". */
    for (int field = 3; at && *at && field <= 49; field++) {
        char *end = NULL;
        at += strspn(at, ") ");
        unsigned long x = strtoul(at, &end, 10);
        if (field >= 48)
            v[field - 48] = x;
        at = end && end != at ? end : at + strcspn(at, " ");
    }
    if (v[0] && v[1] > v[0] && v[1] - v[0] < (1ul << 24)) {
        arg_lo = v[0];
        arg_hi = v[1];
    }
}

/* What the step sees of its pid 1 (/proc/1/cmdline and comm): a name,
 * not the runner's arguments, of which this process is a copy. Its own
 * copy of the strings is overwritten (PR_SET_MM needs CAP_SYS_RESOURCE,
 * which a container's root may lack); a last byte left non-zero makes
 * the kernel read up to the first NUL, as for setproctitle. */
static void init_rename(void)
{
    static const char name[] = "rz-step-init";
    prctl(PR_SET_NAME, name, 0, 0, 0);
    if (!arg_lo)
        return;
    char *a = (char *)arg_lo;
    size_t len = arg_hi - arg_lo, n = sizeof name < len ? sizeof name : len;
    memset(a, 0, len);
    memcpy(a, name, n - 1);
    if (len > n)
        a[len - 1] = ' ';
}

static _Noreturn void step_run(const step *s, const rz__sbx_tmpl *t,
                               int life);

/* What a new init leaves of its cell: the pool's and the held namespaces'
 * descriptors, the host's network, its name. */
static void init_detach(void)
{
    net_pool_drop();   /* the next steps' namespaces are not this one's */
    cell_net_drop();
    mnt_release();
    close(host_net);
    close(host_proc);
    fd_drop(&net_mnt);   /* the cell's */
    fd_drop(&cell_mnt);
    fd_drop(&net_root);
    fd_drop(&cell_root);
    if (mem_usage >= 0)
        close(mem_usage);    /* the cell's */
    if (mem_limit >= 0)
        close(mem_limit);
    mem_usage = mem_limit = -1;
    if (spare_sock >= 0)
        close(spare_sock);   /* the cell's, to its spare */
    init_rename();
}

static _Noreturn void step_init(const step *s, const rz__sbx_tmpl *t,
                                int life, int net)
{
    int ep = fd_at(s, FD_ERRPIPE), go = fd_at(s, FD_GO);
    checking = s->h.check != 0;
    /* Hello first: found by the runner should our starter die now. It
     * fails (EPIPE) once the runner has sent 'g' and closed its end:
     * then the read below decides, as always. */
    (void)!send(go, "h", 1, MSG_NOSIGNAL);
    init_detach();
    if (setsid() < 0 || join_net(s, net) != 0)
        fail_to(ep);
    for (uint32_t i = 0; i < s->h.n_cg; i++) {
        int fd = fd_at(s, FD_REST + (int)s->h.n_binds + (int)i);
        if (write(fd, "0", 1) != 1)
            fail_to(ep);
    }
    /* Its cgroups are its root: /proc/self/cgroup names no host path. */
    if (unshare(CLONE_NEWCGROUP) != 0)
        fail_to(ep);
    if (common_mounts(s->h.scratch_mb) != 0)
        fail_to(ep);
    check_start(s, t);
    if (step_mounts(s) != 0)
        fail_to(ep);
    step_run(s, t, life);
}

/* The host scratch's entries become the step's, only once it is sure to
 * start: a step whose check fails may be started again by bubblewrap as
 * the caller, who must still own them. */
static void scratch_give(const step *s)
{
    char top_out[NAME_MAX + 1];
    chown_tree(fd_at(s, FD_SCRATCH), 0, s->h.uid, out_top(s, top_out));
}

/* The step's start and its reaping, once every mount is made. */
static _Noreturn void step_run(const step *s, const rz__sbx_tmpl *t,
                               int life)
{
    int ep = fd_at(s, FD_ERRPIPE), go = fd_at(s, FD_GO);
    sigset_t chld, old;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_chld;
    sigaction(SIGCHLD, &sa, NULL);
    if (!checking)
        scratch_give(s);   /* while the runner reads our pid */
    /* Nothing of the step runs until the runner holds our pid
     * (send_once). Its end closed with our hello unread reports
     * ECONNRESET once, before the 'g' queued ahead of it. */
    char c = 0;
    ssize_t got;
    while ((got = read(go, &c, 1)) < 0 &&
           (errno == EINTR || errno == ECONNRESET))
        ;
    if (got != 1 || c != 'g')
        _exit(128 + SIGKILL);
    if (checking) {
        if (!check_passes())
            fail_to(ep);
        checking = false;
        int ok = RZ__SBX_CHECK_OK;
        if (write(ep, &ok, sizeof ok) != sizeof ok)
            _exit(127);
        scratch_give(s);
    }
    mnt_drop_wait();
    pid_t leader = spawn_step(s, t);
    if (leader < 0)
        fail_to(ep);
    int err = fcntl(fd_at(s, FD_ERR), F_DUPFD_CLOEXEC, 3);
    int host_out = fcntl(fd_at(s, FD_OUTFILE), F_DUPFD_CLOEXEC, 3);
    int host_files = fcntl(fd_at(s, FD_FILES), F_DUPFD_CLOEXEC, 3);
    for (int i = 0; i < s->n_fds; i++)
        close(s->fds[i]);
    struct pollfd pf = { life, POLLIN, 0 };
    for (;;) {
        int status;
        pid_t r;
        while ((r = waitpid(-1, &status, WNOHANG)) > 0)
            if (r == leader) {
                int code = WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                               : WEXITSTATUS(status);
                if (code != 0)
                    say_if_full(s, err);
                if (copy_out(s, host_out, err) != 0 && code == 0)
                    code = 1;
                if (code == 0 && copy_files(s, host_files, err) != 0)
                    code = 1;
                _exit(code);
            }
        if (ppoll(&pf, 1, NULL, &old) > 0 && pf.revents)
            _exit(128 + SIGKILL);   /* the runner is gone */
    }
}

static int recv_step(int s, step *st, msg *req)
{
    msg got;
    memset(&got, 0, sizeof got);
    struct iovec iov = { &got, sizeof got };
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    ssize_t n;
    while ((n = recvmsg(s, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (n <= 0)
        return -1;   /* the runner closed its end */
    *req = got;
    if (n != (ssize_t)sizeof got)
        req->kind = 0;   /* not ours: answered -EINVAL */
    memset(st, 0, sizeof *st);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                if (st->n_fds < MAX_FDS)
                    st->fds[st->n_fds++] = fd;
                else
                    close(fd);
            }
        }
    return 0;
}

static void step_free(step *st)
{
    for (int i = 0; i < st->n_fds; i++)
        close(st->fds[i]);
    if (st->buf)
        explicit_bzero(st->buf, sizeof st->h + st->h.strings_len);
    free(st->buf);
    free(st->argv);
    free(st->envp);
}

static uint32_t cell_uid;   /* a cell's: its steps' uid; 0 in the helper */

/* The spare's life: everything a step's init does before it knows the
 * step (its network namespace, from the pool; its cgroup namespace;
 * /proc, /tmp, /dev/shm), then the step's request, forwarded by the cell
 * on `sp`, and the rest as step_init. Gone with the cell (sp closes) or
 * the runner (life). A failure before the request is said to the step. */
static _Noreturn void spare_main(int s, int sp, int life, int net,
                                 uint32_t mb)
{
    /* Noted to the runner first (see make_spare), then ready. */
    int32_t note[2] = { SPARE_NOTE, 0 };
    (void)!send(s, note, sizeof note, MSG_NOSIGNAL);
    close(s);
    (void)!send(sp, "n", 1, MSG_NOSIGNAL);
    mnt_drop_aside();
    init_detach();
    int err = 0;
    if (setsid() < 0 || setns(net, CLONE_NEWNET) != 0 ||
        unshare(CLONE_NEWCGROUP) != 0 || common_mounts(mb) != 0)
        err = errno ? errno : EIO;
    close(net);
    struct pollfd pf[2] = { { sp, POLLIN, 0 }, { life, POLLIN, 0 } };
    while (poll(pf, 2, -1) < 0 && errno == EINTR)
        ;
    step st;
    msg req;
    if (pf[1].revents || !(pf[0].revents & POLLIN) ||
        recv_step(sp, &st, &req) != 0)
        _exit(0);
    close(sp);
    /* Hello first, as step_init: the runner finds us by it. */
    if (fd_at(&st, FD_GO) >= 0)
        (void)!send(fd_at(&st, FD_GO), "h", 1, MSG_NOSIGNAL);
    int ep = fd_at(&st, FD_ERRPIPE);
    if (ep < 0)
        _exit(127);
    int parsed = req.kind == 'r' ? parse_step(&st) : -1;
    checking = parsed == 0 && st.h.check;
    if (err) {
        errno = err;
        fail_to(ep);
    }
    errno = EINVAL;
    if (ftruncate(fd_at(&st, FD_MEM), 0) != 0) {
        /* the cell's copy (spare_take): closed below all the same */
    }
    if (parsed != 0 || st.h.uid != cell_uid || st.h.network || st.h.n_cg)
        fail_to(ep);
    if (st.h.scratch_mb != mb &&
        (umount2("/tmp", MNT_DETACH) != 0 ||
         tmpfs_at("/tmp", st.h.scratch_mb, "1777", 0) != 0))
        fail_to(ep);
    if (checking)
        mnt_drop_wait();   /* the check runs as the step would */
    check_start(&st, &tmpl);
    if (step_mounts(&st) != 0)
        fail_to(ep);
    step_run(&st, &tmpl, life);
}

/* A step's init (or spare): cloned into namespaces `ns`, the runner's
 * child; *pidfd its pidfd (CLONE_PIDFD: no pid can be reused before we
 * hold it), or -1. Returns as clone: 0 in the child. */
static long clone_init(long ns, int *pidfd)
{
    *pidfd = -1;
    long pid = syscall(SYS_clone, CLONE_PARENT | CLONE_PIDFD | ns, NULL,
                       pidfd, NULL, NULL);
    if (pid > 0 && *pidfd >= 0)
        fcntl(*pidfd, F_SETFD, FD_CLOEXEC);
    return pid;
}

/* A cell's spare, made as soon as the last step's init has ended
 * (wait_request), so while the runner reaps it and reads its counters,
 * or on the runner's 'f' where no pidfd told that: the cell's cgroups
 * never hold a spare beside a running step's init, but for a step with
 * network, which does not use it. It notes itself to the runner,
 * unasked, on the cell's socket, whose copy it holds until then (so the
 * socket's end, the zygote gone, means every note is queued), and only
 * then tells the cell it is ready: it is handed a step only after, so
 * its note comes ahead of the answer naming it. The runner's kill of a
 * step's leftovers passes it over (it is in a pid namespace of its own,
 * not the step's), and the runner reaps it if the cell ends with it
 * unused (rz__sbx_helper_cell_end): it is the runner's child
 * (CLONE_PARENT, as every init). */
static void make_spare(int s, int life)
{
    if (spare_pid > 0 || spare_broken || !cell_uid || !spare_mb)
        return;
    bool shared;
    int net = cell_net_take(&shared), sp[2];
    if (net < 0)
        return;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
        close(net);
        return;
    }
    const long ns = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    int pidfd = -1;
    long pid = clone_init(ns, &pidfd);
    if (pid == 0) {
        close(sp[0]);
        spare_main(s, sp[1], life, net, spare_mb);
    }
    close(sp[1]);
    close(net);
    if (shared && pid > 0)
        cell_net_occupied(pidfd);
    else if (pidfd >= 0)
        close(pidfd);
    if (pid < 0) {
        close(sp[0]);
        return;
    }
    spare_pid = (pid_t)pid;
    spare_sock = sp[0];
    spare_ready = false;
}

/* Before any answer: the spare (if any) has noted itself, so that the
 * runner has its pid before the answer that may name it, and before it
 * kills the next step's leftovers. One that does not (gone) is dropped. */
#define SPARE_READY_MS 2000

static void spare_wait_ready(void)
{
    if (spare_pid <= 0 || spare_ready)
        return;
    struct pollfd pf = { spare_sock, POLLIN, 0 };
    char c = 0;
    int r;
    while ((r = poll(&pf, 1, SPARE_READY_MS)) < 0 && errno == EINTR)
        ;
    if (r > 0 && recv(spare_sock, &c, 1, MSG_DONTWAIT) == 1 && c == 'n') {
        spare_ready = true;
        return;
    }
    close(spare_sock);   /* it ends with its EOF; the runner reaps it */
    spare_sock = -1;
    spare_pid = -1;
    spare_broken = true;
}

/* The step's request (its descriptors) handed to the spare; 0 or -1.
 * The request itself goes in a copy: the runner empties its own once
 * it has the step's pid, which may be before the spare has read it. */
static int spare_take(const step *st)
{
    size_t len = sizeof st->h + st->h.strings_len, off = 0;
    int copy = memfd_create("rz-step", MFD_CLOEXEC);
    while (copy >= 0 && off < len) {
        ssize_t w = write(copy, st->buf + off, len - off);
        if (w <= 0) {
            close(copy);
            copy = -1;
        } else {
            off += (size_t)w;
        }
    }
    if (copy < 0)
        return -1;   /* the step is started the other way */
    int fds[MAX_FDS];
    memcpy(fds, st->fds, sizeof(int) * (size_t)st->n_fds);
    fds[FD_MEM] = copy;
    msg req = { 'r', 0 };
    ssize_t n = send_with_fds(spare_sock, &req, sizeof req, fds,
                              (size_t)st->n_fds, MSG_NOSIGNAL);
    close(copy);
    close(spare_sock);
    spare_sock = -1;
    if (n != (ssize_t)sizeof req) {
        spare_broken = true;   /* the runner reaps it at the cell's end */
        spare_pid = -1;
        return -1;
    }
    return 0;
}

/* The early zygote's spare, made as soon as its cell is set up (its
 * memory files, 'm', the probe's last message to it), not at its first
 * request: the runner's first step comes after its own start-up (its
 * first record), and finds the init made. Its /tmp has the default size
 * (spare_main sizes it again for a step that asks another). */
static bool early_spare;

static void early_spare_make(int s, int life)
{
    if (!early_spare)
        return;
    early_spare = false;
    if (!spare_mb)
        spare_mb = RZ__SBX_DEFAULT_SCRATCH_MB;
    make_spare(s, life);
}

/* A zygote: a process that sits in one cell's cgroups, so the steps it
 * starts are born there, with no cgroup work of their own. */
static _Noreturn void serve(int s, int life, bool is_helper);
static int32_t early_adopt(uint32_t uid, int *peer);

static int32_t make_zygote(step *st, uint32_t uid, int s, int life,
                           int *peer)
{
    int sv[2];
    *peer = -1;
    if (st->n_fds > 3 || uid == 0 || uid == (uint32_t)-1 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -EINVAL;
    long pid = syscall(SYS_clone, CLONE_PARENT, NULL, NULL, NULL, NULL);
    if (pid == 0) {
        close(s);
        close(sv[0]);
        net_pool_drop();   /* the helper's namespaces stay the helper's */
        for (int i = 0; i < st->n_fds; i++)
            if (write(st->fds[i], "0", 1) != 1)
                _exit(1);
        for (int i = 0; i < st->n_fds; i++)
            close(st->fds[i]);
        cell_uid = uid;
        if (cell_ids(uid, &tmpl) != 0 || drop_bset() != 0)
            _exit(1);   /* its socket closes: the runner sees -EPIPE */
        prctl(PR_SET_NAME, "rz-sandbox-cell", 0, 0, 0);
        serve(sv[1], life, false);
    }
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return -e;
    }
    *peer = sv[0];
    return (int32_t)pid;
}

/* Answer with `answer` and, when fd >= 0, that descriptor. */
static int reply(int s, int32_t answer, int fd)
{
    return send_with_fds(s, &answer, sizeof answer, &fd, fd >= 0 ? 1 : 0,
                         MSG_NOSIGNAL) == (ssize_t)sizeof answer ? 0 : -1;
}

/* rz__sbx_test_die_after_clone (tests only): the process that started a
 * step exits before answering, once: while the file at the path given
 * (opened by a helper started after the call, before it builds its root:
 * the path is the host's) starts with '1', which the firing process turns
 * to '0'. A hidden function, not the environment: no installed program
 * can be made to do this. */
static int die_after_clone = -1;
static char die_after_clone_path[PATH_MAX];

void rz__sbx_test_die_after_clone(const char *flag)
{
    pthread_mutex_lock(&mu);
    snprintf(die_after_clone_path, sizeof die_after_clone_path, "%s",
             flag ? flag : "");
    pthread_mutex_unlock(&mu);
}

/* rz__sbx_test_die_before_root (tests only): a helper started after the
 * call exits right after forking its early zygote, as if killed then. */
static bool die_before_root;

void rz__sbx_test_die_before_root(bool on)
{
    pthread_mutex_lock(&mu);
    die_before_root = on;
    pthread_mutex_unlock(&mu);
}

/* rz__sbx_test_no_program (tests only): helpers started after the call
 * go on as the runner's copy, as where the exec is refused. */
static bool no_program;

void rz__sbx_test_no_program(bool on)
{
    pthread_mutex_lock(&mu);
    no_program = on;
    pthread_mutex_unlock(&mu);
}

static bool hook_fires(void)
{
    char c = 0;
    return die_after_clone >= 0 && pread(die_after_clone, &c, 1, 0) == 1 &&
           c == '1' && pwrite(die_after_clone, "0", 1, 0) == 1;
}

/* A new init for `st` (no spare), in the cell's network namespace if
 * nothing of the last step is in it (cell_net_take), else a fresh one;
 * the host's for a step with network. Returns as clone; *net: the
 * namespace's descriptor, for the caller to close. */
static long init_new(const step *st, int s, int life, bool is_helper,
                     int *net)
{
    const long ns = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    bool shared = false;
    int pidfd = -1;
    *net = st->h.network ? -1
           : is_helper ? net_pool_take() : cell_net_take(&shared);
    bool with_etc = st->h.network && net_mnt >= 0;
    if (with_etc && mnt_enter(net_mnt, net_root) != 0) {
        if (mnt_enter(cell_mnt, cell_root) != 0)
            _exit(1);   /* the runner sees the cell gone */
        return -1;
    }
    long pid = clone_init(ns, &pidfd);
    if (pid == 0) {
        close(s);
        step_init(st, &tmpl, life, *net);
    }
    if (with_etc && mnt_enter(cell_mnt, cell_root) != 0)
        _exit(1);   /* the runner sees the cell gone and makes another */
    if (shared && pid > 0)
        cell_net_occupied(pidfd);
    else if (pidfd >= 0)
        close(pidfd);
    return pid;
}

/* The runner's 'm': the memory cgroup's usage and limit files, kept
 * (a second 'm' replaces them). */
static void cell_memory_take(step *st)
{
    if (st->n_fds == 2) {
        if (mem_usage >= 0)
            close(mem_usage);
        if (mem_limit >= 0)
            close(mem_limit);
        mem_usage = st->fds[0];
        mem_limit = st->fds[1];
        st->n_fds = 0;
    }
    step_free(st);
}

static _Noreturn void serve(int s, int life, bool is_helper)
{
    /* The pool is filled ahead only in a cell's zygote: the helper itself
     * serves steps only for the probe, or where there are no cgroups. */
    bool serves_steps = false;
    for (;;) {
        step st;
        msg req;
        wait_request(s, life);
        if (recv_step(s, &st, &req) != 0)
            _exit(0);
        char kind = req.kind;
        if (kind == 'm' && !is_helper) {
            cell_memory_take(&st);   /* no answer */
            early_spare_make(s, life);
            continue;
        }
        if (kind == 'f' && !is_helper) {
            /* The runner is done with the last step (its leftovers
             * killed, rz__sbx_helper_cell_done): the next one's init is
             * made now if it was not at the last init's end (no pidfd
             * here), and the pool filled only if empty: the next request
             * follows at once, and a namespace takes ~0.5 ms to make. */
            step_free(&st);
            make_spare(s, life);
            if (n_net == 0)
                net_pool_idle(s);
            continue;
        }
        int32_t answer = -EINVAL;
        int peer = -1;
        if (kind == 'z' && is_helper) {
            answer = make_zygote(&st, req.uid, s, life, &peer);
        } else if (kind == 'Z' && is_helper) {
            answer = early_adopt(req.uid, &peer);
        } else if (kind == 'r' && parse_step(&st) == 0 &&
                   (is_helper || st.h.uid == cell_uid)) {
            serves_steps = !is_helper;
            long pid = -1;
            int net = -1;
            spare_wait_ready();
            if (spare_pid > 0 && spare_ready && !st.h.network &&
                st.h.n_cg == 0 && spare_take(&st) == 0) {
                pid = spare_pid;   /* a fresh one, made ahead */
                spare_pid = -1;
            } else {
                pid = init_new(&st, s, life, is_helper, &net);
            }
            spare_mb = st.h.scratch_mb;
            answer = pid > 0 ? (int32_t)pid : -errno;
            if (pid > 0 && hook_fires())
                _exit(1);   /* the test hook: gone before the answer */
            if (pid > 0 && !is_helper)
                mnt_hold((pid_t)pid);
            if (net >= 0)
                close(net);   /* the step's (and the cell's, if shared) */
        }
        step_free(&st);
        int r = reply(s, answer, peer);
        if (peer >= 0)
            close(peer);
        if (r != 0)
            _exit(0);
        mnt_let_go();
        if (serves_steps)
            net_pool_idle(s);
    }
}

/* ---- the helper's side: the early zygote ----
 *
 * The first cell's zygote is forked before the helper builds its root, so
 * that its move into its cgroups runs beside the root's making and the
 * runner's start. It waits in the host's mount namespace, running
 * nothing, until the runner gives it a uid ('Z'): then it enters the
 * helper's (whose root is built by then) and becomes a cell's zygote as
 * make_zygote's child does. The runner reaps it if no cell takes it. */

static int early_sock = -1;   /* the helper's, to it, until taken */
static pid_t early_pid = -1;

static _Noreturn void early_main(int ez, int life, const int *cg, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (write(cg[i], "0", 1) != 1)
            _exit(1);
    for (size_t i = 0; i < n; i++)
        close(cg[i]);
    prctl(PR_SET_NAME, "rz-sandbox-cell", 0, 0, 0);
    struct pollfd pf[2] = { { ez, POLLIN, 0 }, { life, POLLIN, 0 } };
    while (poll(pf, 2, -1) < 0)
        if (errno != EINTR)
            _exit(1);
    step st;
    msg req;
    if (pf[1].revents || recv_step(ez, &st, &req) != 0 || req.kind != 'Z' ||
        st.n_fds != 3 || mnt_enter(st.fds[0], st.fds[2]) != 0)
        _exit(1);   /* the runner sees -EPIPE at its first step */
    close(ez);
    close(st.fds[0]);
    close(st.fds[2]);
    cell_uid = req.uid;
    if (cell_ids(req.uid, &tmpl) != 0 || drop_bset() != 0)
        _exit(1);
    early_spare = true;
    serve(st.fds[1], life, false);
}

/* Fork the early zygote (the runner's child: CLONE_PARENT); the
 * join-file descriptors given are closed here either way. */
static void early_fork(int s, int life, const int *cg, size_t n)
{
    int sv[2];
    long pid = -1;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0) {
        pid = syscall(SYS_clone, CLONE_PARENT | CLONE_PARENT_SETTID, NULL,
                      early_seen, NULL, NULL);
        if (pid > 0 && die_before_root)
            _exit(1);
        if (pid == 0) {
            munmap(early_seen, sizeof *early_seen);   /* the runner's page */
            close(s);
            close(sv[0]);
            early_main(sv[1], life, cg, n);
        }
        close(sv[1]);
        if (pid > 0)
            early_sock = sv[0];
        else
            close(sv[0]);
    }
    early_pid = pid > 0 ? (pid_t)pid : -1;
    for (size_t i = 0; i < n; i++)
        close(cg[i]);
}

/* 'Z': the early zygote becomes the cell of `uid`, entering the helper's
 * mount namespace and root (mnt_enter); *peer: the runner's end of its
 * socket. */
static int32_t early_adopt(uint32_t uid, int *peer)
{
    int sv[2];
    *peer = -1;
    if (early_sock < 0 || uid == 0 || uid == (uint32_t)-1)
        return -EINVAL;
    int fds[3] = { openat(host_proc, "self/ns/mnt", O_RDONLY | O_CLOEXEC),
                   -1, root_open() };
    if (fds[0] < 0 || fds[2] < 0 ||
        socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        int e = errno;
        fd_drop(&fds[0]);
        fd_drop(&fds[2]);
        return -e;
    }
    fds[1] = sv[1];
    msg m = { 'Z', uid };
    bool sent = send_with_fds(early_sock, &m, sizeof m, fds, 3,
                              MSG_NOSIGNAL) == (ssize_t)sizeof m;
    int e = errno;
    close(fds[0]);
    close(fds[2]);
    close(sv[1]);
    close(early_sock);
    early_sock = -1;
    if (!sent) {
        close(sv[0]);
        return -e;
    }
    *peer = sv[0];
    return (int32_t)early_pid;
}

/* Close every descriptor from 3 on but the `n` in `keep`. */
static void close_all_but(const int *keep, size_t n)
{
    for (int fd = 3; fd < 65536; fd++) {
        bool kept = false, above = true;
        for (size_t i = 0; i < n; i++) {
            kept |= keep[i] == fd;
            above &= keep[i] < fd;
        }
        if (above) {
            if (syscall(SYS_close_range, (unsigned)fd, ~0u, 0u) == 0)
                return;
            for (; fd < 65536; fd++)
                close(fd);
            return;
        }
        if (!kept)
            close(fd);
    }
}

/* What the runner does not die of, the helper and its cells do not die of
 * either: they share its process group, so a terminal's SIGHUP (nohup) or
 * SIGINT (a runner that cancels on it) reaches them too, and the runner
 * decides (its life pipe, its cancel). A signal the runner ignores or
 * handles is ignored here (a handler's copy is not this process's to run);
 * the step resets those, its start one call a signal the runner set. */
static void signals_of_runner(void)
{
    struct sigaction old, ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    n_step_dfl = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGCHLD || sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, NULL, &old) != 0 ||   /* libc's own: invalid */
            (sig != SIGPIPE && !(old.sa_flags & SA_SIGINFO) &&
             old.sa_handler == SIG_DFL))
            continue;
        if (sigaction(sig, &ign, NULL) == 0)
            step_dfl[n_step_dfl++] = sig;
    }
    signal(SIGCHLD, SIG_DFL);   /* reaped here: waitpid needs it */
}

/* The helper's life once its descriptors and signals are set: its early
 * zygote, its root, then steps. `cg`: the early zygote's join files. */
static _Noreturn void helper_run(int s, int life, const int *cg, size_t n_cg,
                                 bool with_early)
{
    /* The root's files (the check program, /etc) are for the steps' uids
     * to read and run, whatever umask the embedding program keeps. */
    umask(022);
    prctl(PR_SET_NAME, "rz-sandbox", 0, 0, 0);
    host_net = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    host_proc = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (die_after_clone_path[0])
        die_after_clone = open(die_after_clone_path, O_RDWR | O_CLOEXEC);
    if (with_early)
        early_fork(s, life, cg, n_cg);
    if (early_seen)   /* the runner's page: not for the cells */
        munmap(early_seen, sizeof *early_seen);
    early_seen = NULL;
    int32_t status = build_root(&tmpl) == 0 ? 0 : (errno ? errno : EIO);
    if (send(s, &status, sizeof status, MSG_NOSIGNAL) != sizeof status ||
        status != 0)
        _exit(1);
    serve(s, life, true);
}

/* The helper's descriptors: `own` and the early zygote's cgroups (after
 * them in keep[]); 0, 1 and 2 /dev/null; every other is the runner's, not
 * ours to hold. Returns how many are kept. */
static size_t helper_fds(const int *own, size_t n_own, bool with_early,
                         int *keep)
{
    size_t n_keep = 0, n_cg = with_early ? early_n_cg : 0;
    for (; n_keep < n_own; n_keep++)
        keep[n_keep] = own[n_keep];
    for (size_t i = 0; i < n_cg && n_keep < MAX_FDS; i++)
        keep[n_keep++] = early_cg[i];
    close_all_but(keep, n_keep);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    return n_keep;
}

static _Noreturn void helper_main(int s, int life, bool with_early)
{
    int keep[MAX_FDS], own[2] = { s, life };
    size_t n_keep = helper_fds(own, 2, with_early, keep);
    signals_of_runner();
    args_find();
    helper_run(s, life, keep + 2, n_keep - 2, with_early);
}

/* ---- the helper as a program of its own ----
 *
 * The helper, its cells and every step's init are clones of the helper;
 * as copies of the runner each clone would copy the runner's ~80 mappings
 * and heap and take copy-on-write faults in both processes after it. So
 * the helper execs a small program (rz-sandbox: this file and outdir.c,
 * libc only, embedded in the library) from a sealed memfd as it starts,
 * and the clones are of that. Where the exec cannot be made (no memfd, a
 * kernel that refuses to exec one), the helper goes on as the runner's
 * copy: the same code either way. */

/* The embedded program in a sealed, executable memfd; -1 if not made. */
static int program_fd(void)
{
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
    unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
    int fd = memfd_create("rz-sandbox", flags | MFD_EXEC);
    if (fd < 0 && errno == EINVAL)
        fd = memfd_create("rz-sandbox", flags);   /* before Linux 6.3 */
    for (size_t off = 0; fd >= 0 && off < rz__sbx_program_len;) {
        ssize_t w = write(fd, rz__sbx_program + off,
                          rz__sbx_program_len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    if (fd >= 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK |
                         F_SEAL_GROW | F_SEAL_WRITE) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The template in a memfd for the program (program_tmpl reads it): two
 * u64 (n_etc, bpf_len), the filter, then NUL-ended etc[], passwd, group. */
static int tmpl_fd(void)
{
    int fd = memfd_create("rz-sandbox-tmpl", 0);   /* inherited */
    uint64_t head[2] = { tmpl.n_etc, tmpl.bpf ? tmpl.bpf_len : 0 };
    bool ok = fd >= 0 && write(fd, head, sizeof head) == sizeof head &&
              write(fd, tmpl.bpf, head[1]) == (ssize_t)head[1];
    for (size_t i = 0; ok && i <= tmpl.n_etc + 1; i++) {
        const char *str = i < tmpl.n_etc ? tmpl.etc[i]
                          : i == tmpl.n_etc ? tmpl.passwd : tmpl.group;
        size_t len = strlen(str) + 1;
        ok = write(fd, str, len) == (ssize_t)len;
    }
    if (!ok && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

#define PROG_EARLY 1         /* the flags argument's bits */
#define PROG_DIE_BEFORE_ROOT 2
#define PROG_FRESH_NET 4

/* The environment the program gets: the sanitizers' settings alone. */
static void program_env(char **env, size_t cap)
{
    extern char **environ;
    size_t n = 0;
    for (char **e = environ; e && *e && n + 1 < cap; e++)
        if (strncmp(*e, "ASAN_", 5) == 0 || strncmp(*e, "UBSAN_", 6) == 0 ||
            strncmp(*e, "LSAN_", 5) == 0)
            env[n++] = *e;
    env[n] = NULL;
}

/* Exec the program, if it can be: it goes on as helper_main would, with
 * the same descriptors, named in its arguments (rz__sbx_helper_program).
 * Returns if not (helper_launch's child, which then exits). It writes our
 * memory only where the runner never reads (signals_of_runner's list) and
 * reads no global the runner's other threads may change (`env`: built by
 * helper_launch before the clone). */
static void helper_exec(int s, int life, bool with_early, char **env)
{
    if (rz__sbx_program_len == 0 || no_program)
        return;
    int prog = program_fd(), t = tmpl_fd();
    if (prog < 0 || t < 0) {
        if (prog >= 0)
            close(prog);
        if (t >= 0)
            close(t);
        return;
    }
    int keep[MAX_FDS], own[5] = { s, life, t, prog,
                                  with_early ? early_seen_fd : -1 };
    /* Our handlers first: helper_fds unblocks every signal (and as
     * helper_launch's child we share the runner's memory). */
    signals_of_runner();   /* exec keeps what is ignored */
    size_t n_keep = helper_fds(own, 5, with_early, keep);
    char num[MAX_FDS][16], *argv[MAX_FDS + 4];
    unsigned flags = (with_early ? PROG_EARLY : 0) |
                     (die_before_root ? PROG_DIE_BEFORE_ROOT : 0) |
                     (fresh_net ? PROG_FRESH_NET : 0);
    size_t n = 0;
    argv[n++] = "rz-sandbox";
    snprintf(num[0], sizeof num[0], "%u", flags);
    argv[n++] = num[0];
    argv[n++] = die_after_clone_path;
    for (size_t i = 0; i < n_keep; i++) {
        if (i != 3)   /* the program itself stays close-on-exec */
            fcntl(keep[i], F_SETFD, 0);
        snprintf(num[i + 1], sizeof num[i + 1], "%d", keep[i]);
        argv[n++] = num[i + 1];
    }
    argv[n] = NULL;
    fexecve(prog, argv, env);
}

/* The program's template (tmpl_fd's memfd, closed); 0 or -1. */
static int program_tmpl(int fd)
{
    struct stat st;
    uint64_t head[2];
    char *buf = fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof head &&
                st.st_size < (off_t)MAX_REQ_BYTES ? malloc((size_t)st.st_size + 1)
                                                   : NULL;
    size_t len = buf ? (size_t)st.st_size : 0;
    if (!buf || pread(fd, buf, len, 0) != (ssize_t)len)
        return -1;
    close(fd);
    buf[len] = '\0';
    memcpy(head, buf, sizeof head);
    if (head[0] > 1024 || head[1] > len - sizeof head)
        return -1;
    char **etc = calloc(head[0] + 1, sizeof *etc), *at = buf + sizeof head;
    char *end = buf + len;
    tmpl.bpf = head[1] ? (const unsigned char *)at : NULL;
    tmpl.bpf_len = head[1];
    at += head[1];
    for (size_t i = 0; etc && i < head[0] + 2; i++) {
        const char *str = next_str(&at, end);
        if (!str)
            return -1;
        if (i < head[0])
            etc[i] = (char *)str;
        else if (i == head[0])
            tmpl.passwd = str;
        else
            tmpl.group = str;
    }
    tmpl.etc = etc;
    tmpl.n_etc = head[0];
    return etc ? 0 : -1;
}

int rz__sbx_helper_program(int argc, char **argv)
{
    /* argv: name, flags, the hook's path, s, life, template, program,
     * early_seen's memfd (-1: none), the early zygote's join files. */
    if (argc < 8)
        return 2;
    unsigned flags = (unsigned)atoi(argv[1]);
    int s = atoi(argv[3]), life = atoi(argv[4]), page = atoi(argv[7]);
    int cg[MAX_FDS];
    size_t n_cg = 0;
    for (int i = 8; i < argc && n_cg < MAX_FDS; i++)
        cg[n_cg++] = atoi(argv[i]);
    void *m = page >= 0 && (flags & PROG_EARLY)
                  ? mmap(NULL, sizeof *early_seen, PROT_READ | PROT_WRITE,
                         MAP_SHARED, page, 0)
                  : MAP_FAILED;
    early_seen = m == MAP_FAILED ? NULL : m;   /* none: no early zygote */
    if (page >= 0)
        close(page);
    fcntl(s, F_SETFD, FD_CLOEXEC);
    fcntl(life, F_SETFD, FD_CLOEXEC);   /* argv[6]: closed by the exec */
    if (program_tmpl(atoi(argv[5])) != 0)
        return 1;
    snprintf(die_after_clone_path, sizeof die_after_clone_path, "%s",
             argv[2]);
    die_before_root = flags & PROG_DIE_BEFORE_ROOT;
    fresh_net = flags & PROG_FRESH_NET;
    /* What signals_of_runner ignored, exec kept ignored. */
    n_step_dfl = 0;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig != SIGKILL && sig != SIGSTOP &&
            sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            step_dfl[n_step_dfl++] = sig;
    }
    arg_lo = (unsigned long)argv[0];
    arg_hi = (unsigned long)(argv[argc - 1] + strlen(argv[argc - 1]) + 1);
    helper_run(s, life, cg, n_cg, (flags & PROG_EARLY) && early_seen);
}

/* The process adapter: one module command as a child process.
 *
 * The child is started with clone(CLONE_VM | CLONE_VFORK) into its own
 * session (so its process group can be killed as a whole), with pipes for
 * stdin/stdout/stderr, a clean environment, rlimits and a fresh scratch
 * directory as cwd and HOME. Under bubblewrap, when it works here, the
 * system is mounted read-only and the network is unshared unless asked for.
 *
 * All I/O is non-blocking and multiplexed on one epoll descriptor that also
 * watches a pidfd (exit) and a timerfd (deadline), so a caller can wait on
 * rz_proc_fd() alone. Without pidfd_open (Linux < 5.3) exits are noticed by
 * polling every NO_PIDFD_TICK_MS.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include <sodium.h>

#include "exec/adapter.h"
#include "exec/sandbox.h"
#include "module/module_impl.h"

#define MAX_FILE_BYTES ((rlim_t)4 << 30)   /* RLIMIT_FSIZE: 4 GiB per file */
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define OUTPUT_NAME ".rz-output.json"
#define IO_CHUNK 65536
#define PUMP_BUDGET ((size_t)1 << 20)    /* bytes per stream per poll call */
#define DRAIN_BUDGET ((size_t)64 << 20)  /* bytes read after the exit */
#define NO_PIDFD_TICK_MS 50
#define RMTREE_MAX_DEPTH 256

struct rz_proc {
    pid_t pid;                 /* session and group leader */
    int epfd, pidfd, timerfd;  /* pidfd is -1 without pidfd_open */
    int in_fd, out_fd, err_fd; /* our pipe ends; -1 once closed */
    char *input;
    size_t input_len, input_off;
    rz__buf out;
    size_t max_output;
    bool out_over;             /* stdout went past max_output */
    bool stream;               /* a service's: stdout is taken as lines
                                  (rz__proc_out_take), never a cap's kill */
    uint64_t out_dropped;      /* stream: bytes dropped past the cap */
    char *log;                 /* stderr tail, see log_append */
    size_t log_len, max_log;
    uint64_t log_total;        /* every byte written to stderr */
    char *scratch, *output_path;
    uint64_t file_cap, files_cap;  /* see rz__proc_limits */
    bool own_scratch;          /* made here, removed by rz_proc_free */
    bool reaped, timed_out, done;
    bool sandboxed;            /* the child is bwrap */
    bool check_failed;         /* the sandbox's check: see spawn */
    int check_why;             /* why it failed (RZ__SBX_CHECK_FAILED) */
    bool unchecked;            /* started again without the check */
    rz__sbx sbx;               /* its cgroup and descriptors */
    rz__sbx_report hit;        /* limits the cgroup enforced */
    uint32_t cpus, scratch_mb, pids_max; /* sandbox limits, 0: defaults */
    uint32_t memory_mb;        /* asked for; 0: the sandbox's default */
    uint32_t timeout_ms;
    char limit_reason[160];
    int exit_code;
    char *outputs;             /* cJSON-allocated */
    char output_error[160];
};

/* Set "NAME=value", replacing an entry with the same name. */
static void env_set(rz__argv *env, char *entry)
{
    if (!entry) {
        env->failed = true;
        return;
    }
    size_t name_len = strcspn(entry, "=");
    for (size_t i = 0; i < env->n; i++) {
        if (strncmp(env->v[i], entry, name_len) == 0 &&
            env->v[i][name_len] == '=') {
            sodium_memzero(env->v[i], strlen(env->v[i]));
            free(env->v[i]);
            env->v[i] = entry;
            return;
        }
    }
    rz__argv_push_own(env, entry);
}

/* ---- paths ---- */

static bool is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           access(path, X_OK) == 0;
}

/* Full path of `name` on the colon-separated `path`; NULL if none. */
static char *find_in_path(const char *name, const char *path)
{
    while (path && *path) {
        size_t len = strcspn(path, ":");
        char *cand = len ? rz__asprintf("%.*s/%s", (int)len, path, name)
                         : rz__asprintf("./%s", name);
        if (cand && is_executable_file(cand))
            return cand;
        free(cand);
        path += len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* ---- the sandbox (sandbox.c) ---- */

static char *system_path(void)
{
    const char *p = getenv("PATH");
    return rz__strdup(p && *p ? p : DEFAULT_PATH);
}

int rz_sandbox_available(void)
{
    return rz__sbx_available();
}

int rz__sandbox_installed(void)
{
    return rz__sbx_installed();
}

unsigned rz__sandbox_changes(void)
{
    return rz__sbx_changes();
}

const char *rz_sandbox_status(void)
{
    return rz__sbx_status();
}

int rz__sandbox_has_cgroup(void)
{
    return rz__sbx_has_cgroup();
}

/* ---- scratch directory ---- */

/* A directory under `dirfd` opened for reading without following a link;
 * one we may not read (a step's, mode 0) made readable first, through a
 * descriptor: a process still alive (a sweep removes a dead runner's
 * folders) may swap the name for a symlink meanwhile, and a chmod by name
 * would follow it. O_PATH opens a directory we cannot read yet. */
static int open_to_remove(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
                    O_CLOEXEC);
    if (fd >= 0 || errno != EACCES)
        return fd;
    int pfd = openat(dirfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -1;
    char self[40];
    snprintf(self, sizeof self, "/proc/self/fd/%d", pfd);
    (void)chmod(self, S_IRWXU);   /* fchmod refuses an O_PATH descriptor */
    fd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(pfd);
    return fd;
}

/* Remove `name` under `dirfd` and everything below it, making unreadable
 * directories readable first. Symlinks are removed, never followed.
 * `type`: its d_type where a listing said (DT_UNKNOWN: not known); a
 * folder is not first unlinked as a file. */
static void rm_tree_at(int dirfd, const char *name, int depth,
                       unsigned char type)
{
    if (type != DT_DIR && (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT))
        return;
    if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ||
        depth >= RMTREE_MAX_DEPTH)
        return;
    int fd = open_to_remove(dirfd, name);   /* not empty, or not ours */
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
            rm_tree_at(fd, e->d_name, depth + 1, e->d_type);
    }
    closedir(d);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

void rz__exec_rm_tree(const char *path)
{
    if (path)
        rm_tree_at(AT_FDCWD, path, 0, DT_UNKNOWN);
}

int rz__exec_mkdtemp(const char *parent, char **out)
{
    *out = NULL;
    char *real = NULL;
    int rc = rz__exec_scratch_parent(parent, &real);
    if (rc != RZ_OK)
        return rc;
    char *tmpl = rz__asprintf("%s/rz-%llx-%ld-XXXXXX", real, rz__exec_pidns(),
                              (long)getpid());
    if (!tmpl) {
        free(real);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    if (!mkdtemp(tmpl)) {
        int e = errno;
        rc = rz__error(RZ_EIO, "scratch directory in %s: %s", real, strerror(e));
        free(real);
        free(tmpl);
        return rc;
    }
    free(real);
    *out = tmpl;
    return RZ_OK;
}

static int make_scratch(rz_proc *p, const char *parent)
{
    char *tmpl;
    int rc = rz__exec_mkdtemp(parent, &tmpl);
    if (rc != RZ_OK)
        return rc;
    p->scratch = tmpl;
    p->own_scratch = true;
    p->output_path = rz__asprintf("%s/%s", tmpl, OUTPUT_NAME);
    if (!p->output_path)
        return rz__error(RZ_ENOMEM, "out of memory");
    /* Present and empty, so a module may simply open it for writing. */
    int fd = open(p->output_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                  0600);
    if (fd < 0)
        return rz__error(RZ_EIO, "%s: %s", p->output_path, strerror(errno));
    close(fd);
    return RZ_OK;
}

/* ---- the command line and environment ---- */

typedef struct launch {
    rz__argv argv, env;
    char *exe;          /* what execve runs */
    struct rlimit as, cpu, nofile, fsize;
    bool limit_as, limit_cpu;
} launch;

/* PATH is the host's, except in the sandbox, where only the system folders
 * exist: a user's PATH there would find shims (pyenv, asdf) that cannot run
 * inside. The caller may still set PATH through opts->env. */
static int build_env(launch *l, const rz_proc *p, const rz_proc_opts *o,
                     bool sandboxed)
{
    char *path = sandboxed ? rz__strdup(DEFAULT_PATH) : system_path();
    env_set(&l->env, path ? rz__asprintf("PATH=%s", path) : NULL);
    free(path);
    env_set(&l->env, rz__asprintf("HOME=%s", p->scratch));
    env_set(&l->env, rz__asprintf("TMPDIR=%s", p->scratch));
    env_set(&l->env, rz__strdup("LANG=C.UTF-8"));
    for (const char *const *e = o->env; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || eq == *e)
            return rz__error(RZ_EINVAL, "environment entry '%s' is not "
                             "NAME=value", *e);
        env_set(&l->env, rz__strdup(*e));
    }
    env_set(&l->env, rz__asprintf("RZ_OUTPUT=%s", p->output_path));
    /* File outputs go beside the outputs file (attempt.c makes the folder). */
    const char *slash = strrchr(p->output_path, '/');
    if (slash && !p->own_scratch)
        env_set(&l->env, rz__asprintf("RZ_OUTPUT_DIR=%.*s/files",
                                      (int)(slash - p->output_path),
                                      p->output_path));
    return l->env.failed ? rz__error(RZ_ENOMEM, "out of memory") : RZ_OK;
}

static const char *env_get(const rz__argv *env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < env->n; i++)
        if (strncmp(env->v[i], name, n) == 0 && env->v[i][n] == '=')
            return env->v[i] + n + 1;
    return NULL;
}

/* The module's words, "./x" resolved against the module folder and the
 * program looked up on the child's PATH. */
static int resolve_command(rz__argv *words, char **exe, const rz_proc_opts *o,
                           const char *moddir, const rz__argv *env)
{
    for (const char *const *w = o->argv; *w; w++) {
        if (strncmp(*w, "./", 2) == 0) {
            if (!moddir)
                return rz__error(RZ_EINVAL, "'%s' needs a module folder", *w);
            rz__argv_push_own(words, rz__asprintf("%s/%s", moddir, *w + 2));
        } else {
            rz__argv_push(words, *w);
        }
    }
    if (words->failed)
        return rz__error(RZ_ENOMEM, "out of memory");
    const char *prog = words->v[0];
    *exe = strchr(prog, '/') ? rz__strdup(prog)
                             : find_in_path(prog, env_get(env, "PATH"));
    if (!*exe)
        return rz__error(RZ_ENOENT, "command not found: %s", prog);
    return RZ_OK;
}

/* In the sandbox a file cannot outgrow the scratch tmpfs anyway (a full
 * one answers ENOSPC, just under this); the bound outputs file, the one
 * that reaches the host's disk, is held to that too (or to what may be
 * read of it, if more). */
static rlim_t max_file_bytes(const rz_proc *p)
{
    if (!p->sandboxed)
        return MAX_FILE_BYTES;
    rlim_t scratch = (rlim_t)(p->scratch_mb ? p->scratch_mb
                                            : RZ__SBX_DEFAULT_SCRATCH_MB) << 20;
    rlim_t out = (rlim_t)p->max_output;
    return (scratch > out ? scratch : out) + ((rlim_t)1 << 20);
}

static void set_limits(launch *l, const rz_proc_opts *o, const rz_proc *p)
{
    l->fsize.rlim_cur = l->fsize.rlim_max = max_file_bytes(p);
    /* Under a cgroup the cap is the cgroup's, which kills with a clear
     * reason; RLIMIT_AS would count reserved address space (a JVM's, Go's)
     * and fail allocations instead. */
    if (o->memory_mb && !(p->sandboxed && rz__sbx_has_cgroup())) {
        l->limit_as = true;
        l->as.rlim_cur = l->as.rlim_max = (rlim_t)o->memory_mb << 20;
    }
    if (o->cpu_seconds) {
        l->limit_cpu = true;
        l->cpu.rlim_cur = o->cpu_seconds;      /* SIGXCPU, then SIGKILL */
        l->cpu.rlim_max = (rlim_t)o->cpu_seconds + 1;
    }
    if (getrlimit(RLIMIT_NOFILE, &l->nofile) != 0)
        l->nofile.rlim_max = 1024;
    if (l->nofile.rlim_max == RLIM_INFINITY || l->nofile.rlim_max > 1024)
        l->nofile.rlim_max = 1024;
    l->nofile.rlim_cur = l->nofile.rlim_max;
}

/* Whether the module folder is used: the sandbox mounts it, "./x" runs
 * from it. Otherwise it is not resolved (realpath's readlink of every
 * component was 7 calls a step of a runner's /bin/sh steps). */
static bool uses_module_dir(const rz_proc_opts *o)
{
    if (o->sandbox)
        return true;
    for (const char *const *w = o->argv; *w; w++)
        if (strncmp(*w, "./", 2) == 0)
            return true;
    return false;
}

static int prepare(launch *l, rz_proc *p, const rz_proc_opts *o)
{
    char *moddir = NULL;
    if (o->module_dir && uses_module_dir(o) &&
        !(moddir = realpath(o->module_dir, NULL)))
        return rz__error(RZ_ENOENT, "module folder %s: %s", o->module_dir,
                         strerror(errno));
    rz__argv words = { 0 };
    char *prog = NULL;
    p->sandboxed = o->sandbox && rz_sandbox_available();
    int rc = build_env(l, p, o, p->sandboxed);
    if (rc == RZ_OK)
        rc = resolve_command(&words, &prog, o, moddir, &l->env);
    if (rc == RZ_OK && p->sandboxed) {
        rz__sbx_opts so = { p->scratch, p->output_path, moddir, prog,
                            o->network, o->memory_mb, p->pids_max, p->cpus,
                            p->scratch_mb, p->files_cap, p->file_cap };
        rc = rz__sbx_prepare(&p->sbx, &l->argv, &so);
        if (rc == RZ_OK && p->sbx.helper) {
            l->exe = prog;   /* the helper runs it; no bwrap in front */
            prog = NULL;
        } else {
            l->exe = rc == RZ_OK ? rz__strdup(l->argv.v[0]) : NULL;
        }
    } else if (rc == RZ_OK) {
        l->exe = prog;
        prog = NULL;
    }
    for (size_t i = 0; rc == RZ_OK && i < words.n; i++)
        rz__argv_push(&l->argv, words.v[i]);
    if (rc == RZ_OK && (l->argv.failed || !l->exe))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    set_limits(l, o, p);
    rz__argv_free(&words);
    free(prog);
    free(moddir);
    return rc;
}

static void launch_free(launch *l)
{
    rz__argv_free(&l->argv);
    rz__argv_free(&l->env);
    free(l->exe);
}

/* ---- the child, between clone and exec: async-signal-safe calls only, and
 * no writes to memory the parent uses (the child shares it) ---- */

/* Why the child failed before exec goes in an int of the parent's, which
 * the parent reads once the child has exec'd or exited (CLONE_VM |
 * CLONE_VFORK: the one write the child makes to our memory, as glibc's
 * posix_spawn does); an error pipe cost the runner four calls a step. */
static void child_fail(volatile int *err)
{
    *err = errno ? errno : ECHILD;
    _exit(127);
}

static void child_cloexec_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 4u /* CLOEXEC */) == 0)
        return;
#endif
    for (int fd = lowfd; fd < 65536; fd++)
        fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static void child_exec(const launch *l, const char *cwd, const int stdio[3],
                       volatile int *errpipe, const rz__sbx *sbx)
{
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &dfl, NULL);   /* fails harmlessly where invalid */
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (setsid() < 0)
        child_fail(errpipe);
    /* Move the pipe ends above 2 first so no dup2 clobbers another. */
    int hi[3];
    for (int i = 0; i < 3; i++)
        if ((hi[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, 3)) < 0)
            child_fail(errpipe);
    for (int i = 0; i < 3; i++)
        if (dup2(hi[i], i) < 0)
            child_fail(errpipe);
    /* bwrap, maybe as another uid, finds its way in by --chdir. */
    if (chdir(sbx ? "/" : cwd) < 0)
        child_fail(errpipe);
    int from = sbx ? rz__sbx_enter(sbx) : 3;
    if (from < 0)
        child_fail(errpipe);
    child_cloexec_from(from);
    if (setrlimit(RLIMIT_NOFILE, &l->nofile) < 0)
        child_fail(errpipe);
    struct rlimit zero = { 0, 0 };
    setrlimit(RLIMIT_CORE, &zero);
    /* A module may write files in its scratch dir, but not fill the disk. */
    if (setrlimit(RLIMIT_FSIZE, &l->fsize) < 0)
        child_fail(errpipe);
    if (l->limit_as && setrlimit(RLIMIT_AS, &l->as) < 0)
        child_fail(errpipe);
    if (l->limit_cpu && setrlimit(RLIMIT_CPU, &l->cpu) < 0)
        child_fail(errpipe);
    execve(l->exe, l->argv.v, l->env.v);
    child_fail(errpipe);
}

/* ---- spawning ---- */

static int watch(rz_proc *p, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.fd = fd };
    if (epoll_ctl(p->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return rz__error(RZ_EIO, "epoll: %s", strerror(errno));
    return RZ_OK;
}

static void close_fd(rz_proc *p, int *fd)
{
    if (*fd >= 0) {
        epoll_ctl(p->epfd, EPOLL_CTL_DEL, *fd, NULL);
        close(*fd);
        *fd = -1;
    }
}

/* A pipe end of ours, made by pipe2 with no status flag but O_CLOEXEC
 * (a descriptor flag): O_NONBLOCK is all it needs, no F_GETFL first. */
static void pipe_nonblock(int fd)
{
    fcntl(fd, F_SETFL, O_NONBLOCK);
}

static int arm_timer(rz_proc *p, uint32_t timeout_ms)
{
    p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (p->timerfd < 0)
        return rz__error(RZ_EIO, "timerfd: %s", strerror(errno));
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    its.it_value.tv_sec = timeout_ms / 1000;
    its.it_value.tv_nsec = (long)(timeout_ms % 1000) * 1000000L;
    if (timerfd_settime(p->timerfd, 0, &its, NULL) < 0)
        return rz__error(RZ_EIO, "timerfd: %s", strerror(errno));
    return watch(p, p->timerfd, EPOLLIN);
}

static int open_pidfd(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);   /* close-on-exec set */
#else
    (void)pid;
    return -1;
#endif
}

typedef struct child_args {
    const launch *l;
    const char *cwd;
    const int *stdio;
    volatile int *err;           /* the child's errno if it failed */
    const rz__sbx *sbx;
} child_args;

static int child_main(void *arg)
{
    const child_args *c = arg;
    child_exec(c->l, c->cwd, c->stdio, c->err, c->sbx);
    return 127;   /* not reached: child_exec execs or exits */
}

/* The child's own stack while it shares our memory; child_exec needs a few
 * KiB, this leaves ample room (the pages are touched only as used). */
#define CHILD_STACK (256u * 1024u)

/* One child stack is kept for the next start (taken by one thread at a
 * time; another makes its own meanwhile): mapping and unmapping one per
 * step, and faulting its pages in each time, was 4% of the runner's CPU,
 * and each munmap flushes the TLB of every CPU the runner's threads ran
 * on. The kept one lives as long as the process. */
static _Atomic(void *) kept_stack;

/* A stack's lowest page is a guard (PROT_NONE): an overflow faults in the
 * child instead of writing the runner's memory below it. A stack is the
 * map's address; it grows down from stack_top. */
static size_t stack_guard(void)
{
    long page = sysconf(_SC_PAGESIZE);
    return page > 0 ? (size_t)page : 4096u;
}

static char *stack_top(void *s)
{
    return (char *)s + stack_guard() + CHILD_STACK;
}

static void *stack_take(void)
{
    void *s = atomic_exchange(&kept_stack, NULL);
    if (s)
        return s;
    size_t guard = stack_guard();
    s = mmap(NULL, guard + CHILD_STACK, PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (s == MAP_FAILED)
        return NULL;
    if (mprotect(s, guard, PROT_NONE) != 0) {
        munmap(s, guard + CHILD_STACK);
        return NULL;
    }
    return s;
}

static void stack_give(void *s)
{
    void *none = NULL;
    if (!atomic_compare_exchange_strong(&kept_stack, &none, s))
        munmap(s, stack_guard() + CHILD_STACK);
}

void *rz__proc_test_kept_stack(void)
{
    return atomic_load(&kept_stack);
}

/* clone(CLONE_VM | CLONE_VFORK), as posix_spawn does: the child borrows our
 * memory until execve, so a start costs the same however large the runner
 * has grown (fork copied its page tables: 16% of the runner's CPU at 2,000
 * steps, issue 22). We are suspended meanwhile, so the child writing errno
 * (our thread's, shared) harms nothing. All signals stay blocked until the
 * child has reset its handlers: none of ours may run in it, on our memory. */
static pid_t spawn_vm(child_args *c, int *pidfd)
{
    void *stack = stack_take();
    if (!stack)
        return -1;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* The pidfd comes with the child (CLONE_PIDFD, close-on-exec): no
     * pidfd_open after it; a kernel without it refuses the flag. */
    pid_t pid = -1;
    errno = EINVAL;
#ifdef CLONE_PIDFD
    pid = clone(child_main, stack_top(stack),
                CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, c, pidfd);
#endif
    if (pid < 0 && errno == EINVAL) {
        *pidfd = -1;
        pid = clone(child_main, stack_top(stack),
                    CLONE_VM | CLONE_VFORK | SIGCHLD, c);
    }
    int e = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    stack_give(stack);
    errno = e;
    return pid;
}

/* The input goes into the stdin pipe before the child exists (its read end
 * is still ours, so no SIGPIPE can come of it): a request that fits the
 * pipe needs no EPOLLOUT wake-up of the caller and no write later; the
 * rest goes as the child reads (pump_write). */
static void prefill(rz_proc *p, int fd)
{
    pipe_nonblock(fd);
    while (p->input_off < p->input_len) {
        ssize_t w = write(fd, p->input + p->input_off,
                          p->input_len - p->input_off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p->input_off += (size_t)w;
    }
}

/* The helper's error pipe: RZ__SBX_CHECK_OK when the step's check passed,
 * then the step's errno if its exec failed (nothing: it worked); or
 * RZ__SBX_CHECK_FAILED and why. */
static int errpipe_int(int fd, int *v)
{
    ssize_t n;
    while ((n = read(fd, v, sizeof *v)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)sizeof *v ? 0 : -1;
}

static void errpipe_read(int fd, bool *check_ok, int *child_errno, int *why)
{
    for (int i = 0; i < 2; i++) {
        int v = 0;
        if (errpipe_int(fd, &v) != 0)
            return;
        if (v != RZ__SBX_CHECK_OK) {
            *child_errno = v;
            if (v == RZ__SBX_CHECK_FAILED && errpipe_int(fd, why) != 0)
                *why = 0;
            return;
        }
        *check_ok = true;
    }
}

/* Through the sandbox helper: its error pipe says whether execve worked
 * (it closes on success). */
static int helper_start(rz_proc *p, const launch *l, const int stdio[3],
                        pid_t *pid, int *child_errno)
{
    int ep[2];
    if (pipe2(ep, O_CLOEXEC))
        return rz__error(RZ_EIO, "pipe: %s", strerror(errno));
    rz__sbx_launch sl = {
        .scratch = p->scratch, .output_path = p->output_path,
        .exe = l->exe, .argv = l->argv.v, .envp = l->env.v,
        .fsize = l->fsize, .nofile = l->nofile, .as = l->as,
        .cpu = l->cpu, .limit_as = l->limit_as,
        .limit_cpu = l->limit_cpu, .out_cap = p->max_output,
        .file_cap = p->file_cap, .files_cap = p->files_cap,
        .check_exe = p->unchecked ? NULL : rz__sbx_check_exe(),
    };
    int rc = rz__sbx_spawn(pid, &p->sbx, &sl, stdio, ep[1]);
    if (rc == RZ_OK)
        rz__sbx_started(&p->sbx);
    close(ep[1]);
    bool check_ok = false;
    *child_errno = 0;
    if (rc == RZ_OK)
        errpipe_read(ep[0], &check_ok, child_errno, &p->check_why);
    close(ep[0]);
    if (check_ok)
        rz__sbx_check_passed();
    return rc;
}

/* Start and exec; by then the child leads its own session. */
static int start_child(rz_proc *p, const launch *l)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 };
    int rc = RZ_OK;
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) ||
        pipe2(err, O_CLOEXEC)) {
        rc = rz__error(RZ_EIO, "pipe: %s", strerror(errno));
        goto out;
    }
    prefill(p, in[1]);
    int stdio[3] = { in[0], out[1], err[1] };
    volatile int child_errno = 0;
    child_args ca = { l, p->scratch, stdio, &child_errno,
                      p->sandboxed ? &p->sbx : NULL };
    pid_t pid = -1;
    if (p->sandboxed && p->sbx.helper) {
        int e = 0;
        rc = helper_start(p, l, stdio, &pid, &e);
        child_errno = e;
    } else if ((pid = spawn_vm(&ca, &p->pidfd)) < 0) {
        rc = rz__error(RZ_EIO, "clone: %s", strerror(errno));
    } else {
        rz__sbx_started(&p->sbx);   /* the child has exec'd or exited */
    }
    if (rc == RZ_OK && child_errno) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->check_failed = child_errno == RZ__SBX_CHECK_FAILED;
        char why[96];
        rz__sbx_check_why(p->check_why, why, sizeof why);
        rc = p->check_failed
                 ? rz__error(RZ_EEXEC, "the sandbox's check failed (%s); %s "
                             "not started", why, l->exe)
                 : rz__error(RZ_EEXEC, "cannot execute %s: %s", l->exe,
                             strerror(child_errno));
    }
    if (rc != RZ_OK)
        goto out;
    p->pid = pid;
    p->in_fd = in[1];
    p->out_fd = out[0];
    p->err_fd = err[0];
    in[1] = out[0] = err[0] = -1;
out:
    for (int i = 0; i < 2; i++) {
        int *fds[] = { &in[i], &out[i], &err[i] };
        for (size_t k = 0; k < RZ_ARRAY_LEN(fds); k++)
            if (*fds[k] >= 0)
                close(*fds[k]);
    }
    return rc;
}

static int setup_io(rz_proc *p, const rz_proc_opts *o)
{
    pipe_nonblock(p->out_fd);   /* in_fd: by prefill */
    pipe_nonblock(p->err_fd);
    int rc = watch(p, p->out_fd, EPOLLIN);
    if (rc == RZ_OK)
        rc = watch(p, p->err_fd, EPOLLIN);
    if (rc == RZ_OK && p->input_off < p->input_len) {
        rc = watch(p, p->in_fd, EPOLLOUT);
    } else {   /* all written or none: the child reads EOF (never watched) */
        close(p->in_fd);
        p->in_fd = -1;
    }
    if (rc == RZ_OK && p->pidfd < 0)   /* none from the clone */
        p->pidfd = open_pidfd(p->pid);
    if (rc == RZ_OK && p->pidfd >= 0)
        rc = watch(p, p->pidfd, EPOLLIN);
    if (rc == RZ_OK && o->timeout_ms)
        rc = arm_timer(p, o->timeout_ms);
    return rc;
}

static rz_proc *proc_alloc(const rz_proc_opts *o)
{
    rz_proc *p = rz__calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->pid = -1;
    p->epfd = p->pidfd = p->timerfd = -1;
    for (size_t i = 0; i < RZ__SBX_CG_MAX; i++)
        p->sbx.procs[i] = -1;
    p->sbx.files_info = p->sbx.files_block = p->sbx.files_fd = p->sbx.pid_ns = -1;
    p->in_fd = p->out_fd = p->err_fd = -1;
    p->max_output = o->max_output ? o->max_output : RZ_PROC_DEFAULT_MAX_OUTPUT;
    p->max_log = o->max_log ? o->max_log : RZ_PROC_DEFAULT_MAX_LOG;
    p->log = rz__malloc(2 * p->max_log);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (o->input_len)
        p->input = rz__malloc(o->input_len);
    if (!p->log || p->epfd < 0 || (o->input_len && !p->input)) {
        rz_proc_free(p);
        return NULL;
    }
    if (o->input_len)
        memcpy(p->input, o->input, o->input_len);
    p->memory_mb = o->memory_mb;
    p->timeout_ms = o->timeout_ms;
    p->input_len = o->input_len;
    return p;
}

static int check_opts(rz_proc **out, const rz_proc_opts *opts)
{
    if (!out)
        return rz__error(RZ_EINVAL, "rz_proc_spawn: out is NULL");
    *out = NULL;
    if (!opts || opts->version != RZ_PROC_OPTS_VERSION || !opts->argv ||
        !opts->argv[0] || !opts->argv[0][0] ||
        (opts->input_len && !opts->input))
        return rz__error(RZ_EINVAL, "rz_proc_spawn: invalid options");
    if (opts->max_log > SIZE_MAX / 2)
        return rz__error(RZ_EINVAL, "rz_proc_spawn: max_log too large");
    return RZ_OK;
}

/* p has its scratch folder: build the command line, start, watch. */
static int spawn(rz_proc **out, rz_proc *p, const rz_proc_opts *opts)
{
    launch l;
    memset(&l, 0, sizeof l);
    int rc = prepare(&l, p, opts);
    if (rc == RZ_OK)
        rc = start_child(p, &l);
    if (p->check_failed) {
        /* Nothing of it ran: again, as the probe's decision now says. */
        p->check_failed = false;
        p->input_off = 0;   /* its stdin pipe went with it */
        rz__sbx_finish(&p->sbx, NULL);
        rc = rz__sbx_check_failed(p->check_why, &p->unchecked);
        launch_free(&l);
        memset(&l, 0, sizeof l);
        if (rc == RZ_OK)
            rc = prepare(&l, p, opts);
        if (rc == RZ_OK)
            rc = start_child(p, &l);
    }
    /* A failure here shows when the files are copied out (the step then
     * fails saying so). */
    if (rc == RZ_OK && p->sandboxed)
        (void)rz__sbx_files_attach(&p->sbx);
    if (rc == RZ_OK)
        rc = setup_io(p, opts);
    launch_free(&l);
    if (rc != RZ_OK) {
        rz_proc_free(p);
        return rc;
    }
    *out = p;
    return RZ_OK;
}

int rz_proc_spawn(rz_proc **out, const rz_proc_opts *opts)
{
    int rc = check_opts(out, opts);
    if (rc != RZ_OK)
        return rc;
    rz_proc *p = proc_alloc(opts);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    rc = make_scratch(p, opts->scratch_parent);
    if (rc != RZ_OK) {
        rz_proc_free(p);
        return rc;
    }
    return spawn(out, p, opts);
}

int rz__proc_spawn_in(rz_proc **out, const rz_proc_opts *opts,
                      const char *scratch, const char *outputs_path,
                      const rz__proc_limits *lim)
{
    int rc = check_opts(out, opts);
    if (rc != RZ_OK)
        return rc;
    rz_proc *p = proc_alloc(opts);
    if (!p)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (lim) {
        p->cpus = lim->cpus;
        p->pids_max = lim->pids_max;
        p->scratch_mb = lim->scratch_mb;
        p->file_cap = lim->file_cap;
        p->files_cap = lim->files_cap;
    }
    p->scratch = rz__strdup(scratch);
    p->output_path = rz__strdup(outputs_path);
    if (!p->scratch || !p->output_path) {
        rz_proc_free(p);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    return spawn(out, p, opts);
}

/* ---- I/O ---- */

/* Keep the last max_log bytes in a buffer of twice that size, so the tail
 * moves down only once per max_log bytes appended. */
static void log_append(rz_proc *p, const char *data, size_t n)
{
    size_t max = p->max_log;
    p->log_total += n;
    if (n >= max) {
        memcpy(p->log, data + n - max, max);
        p->log_len = max;
        return;
    }
    if (p->log_len + n > 2 * max) {
        size_t keep = max - n;
        memmove(p->log, p->log + p->log_len - keep, keep);
        p->log_len = keep;
    }
    memcpy(p->log + p->log_len, data, n);
    p->log_len += n;
}

static void out_append(rz_proc *p, const char *data, size_t n)
{
    if (p->stream && p->out.len + n > p->max_output) {
        /* A line longer than the cap, or lines not taken: what is held
         * goes (the rest of its line then reads as a malformed one). */
        p->out_dropped += p->out.len;
        p->out.len = 0;
        if (n > p->max_output) {
            p->out_dropped += n - p->max_output;
            data += n - p->max_output;
            n = p->max_output;
        }
    }
    size_t room = p->max_output - p->out.len;
    if (n > room) {
        /* Past the cap nothing more is useful: stop the module now rather
         * than let it stream until its timeout. */
        if (!p->out_over)
            rz_proc_kill(p);
        p->out_over = true;
        n = room;
    }
    if (n)
        rz__buf_append(&p->out, data, n);
}

/* Read what a stream has, up to `budget` bytes; closes it at EOF. */
static void pump_read(rz_proc *p, int *fd, bool is_log, size_t budget)
{
    char chunk[IO_CHUNK];
    while (*fd >= 0 && budget > 0) {
        ssize_t n = read(*fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            close_fd(p, fd);
            return;
        }
        if (is_log)
            log_append(p, chunk, (size_t)n);
        else
            out_append(p, chunk, (size_t)n);
        budget -= (size_t)n < budget ? (size_t)n : budget;
    }
}

/* write() to a pipe whose reader is gone raises SIGPIPE in this thread.
 * Block it around the write and consume the one we caused, unless one was
 * already pending, so the host program's disposition is never touched. */
static ssize_t write_nosigpipe(int fd, const void *buf, size_t n)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool was_pending = sigismember(&pending, SIGPIPE) == 1;
    ssize_t w = write(fd, buf, n);
    int e = errno;
    if (w < 0 && e == EPIPE && !was_pending) {
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    return w;
}

static void pump_write(rz_proc *p)
{
    while (p->in_fd >= 0 && p->input_off < p->input_len) {
        size_t n = p->input_len - p->input_off;
        ssize_t w = write_nosigpipe(p->in_fd, p->input + p->input_off,
                                    n < IO_CHUNK ? n : IO_CHUNK);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0)
            break;   /* EPIPE: the child does not want the rest */
        p->input_off += (size_t)w;
    }
    close_fd(p, &p->in_fd);
}

static void pump(rz_proc *p, size_t budget)
{
    pump_write(p);
    pump_read(p, &p->out_fd, false, budget);
    pump_read(p, &p->err_fd, true, budget);
}

/* ---- completion ---- */

static void take_outputs(rz_proc *p)
{
    if (p->out.failed) {
        snprintf(p->output_error, sizeof p->output_error, "out of memory");
        return;
    }
    rz__exec_outputs(p->output_path, p->max_output, p->out.data, p->out.len,
                     p->out_over, &p->outputs, p->output_error,
                     sizeof p->output_error);
}

/* Why a step that hit a cgroup limit failed, in the attempt's wording. A
 * memory kill under a cap the caller asked for is the attempt's own
 * "killed for memory (limit N MB)"; the default cap is named here. */
static void limit_reason(rz_proc *p)
{
    char *r = p->limit_reason;
    size_t n = sizeof p->limit_reason;
    if (p->exit_code == 0)
        return;   /* the module coped (a child killed, a fork refused) */
    if (p->hit.oom && !p->memory_mb) {
        snprintf(r, n, "killed for memory (limit %u MB, the default when "
                 "the module asks for no memory_mb)",
                 RZ__SBX_DEFAULT_MEMORY_MB);
    } else if (p->hit.pids_hit && !p->hit.oom) {
        int k = snprintf(r, n, "process limit reached (%u processes); ",
                         p->sbx.pids_max);
        size_t at = k > 0 && (size_t)k < n ? (size_t)k : 0;
        if (p->timed_out)
            snprintf(r + at, n - at, "then timed out after %u s",
                     (p->timeout_ms + 999) / 1000);
        else if (p->exit_code < 0)
            snprintf(r + at, n - at, "then killed by signal %d",
                     -p->exit_code);
        else
            snprintf(r + at, n - at, "then exit status %d", p->exit_code);
    }
}

const char *rz__proc_limit_reason(const rz_proc *p)
{
    return p && p->done && p->limit_reason[0] ? p->limit_reason : NULL;
}

uint64_t rz__proc_log_total(const rz_proc *p)
{
    return p ? p->log_total : 0;
}

int rz__proc_oom(const rz_proc *p)
{
    return p && p->done && p->hit.oom && p->exit_code != 0;
}

/* Under bwrap the step's tmpfs are gone with it, so whether one was full
 * cannot be looked at (the helper looks before its init exits): a failed
 * step whose log ends saying ENOSPC gets the same hint as the helper's. */
static void say_if_out_of_space(rz_proc *p)
{
    static const char enospc[] = "No space left on device";
    size_t len = 0;
    const char *log = p->sandboxed && !p->sbx.helper && p->exit_code != 0
                          ? rz_proc_log(p, &len) : NULL;
    size_t tail = len > 4096 ? 4096 : len;
    if (!log || !memmem(log + len - tail, tail, enospc, sizeof enospc - 1))
        return;
    char line[200];
    int n = snprintf(line, sizeof line, "\nrhizos: the step ran out of "
                     "space: its scratch folder or /tmp is full (%u MiB each; "
                     "a module asks for more with requirements.scratch_mb)\n",
                     p->scratch_mb ? p->scratch_mb
                                   : RZ__SBX_DEFAULT_SCRATCH_MB);
    if (n > 0)
        log_append(p, line, (size_t)n < sizeof line ? (size_t)n
                                                    : sizeof line - 1);
}

/* Reap once the leader has exited: first kill what is left of its group
 * (the zombie keeps the group id from being reused), then collect what the
 * pipes still hold. */
static bool try_reap(rz_proc *p)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)p->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 ||
        si.si_pid == 0)
        return false;
    kill(-p->pid, SIGKILL);
    int status = 0;
    while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
        ;
    p->reaped = true;
    char files_line[256] = "";
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool files_bad = rz__sbx_files_copy(&p->sbx, ok, files_line, sizeof files_line) != 0;
    rz__sbx_finish(&p->sbx, &p->hit);
    p->exit_code = WIFSIGNALED(status) ? -WTERMSIG(status)
                                       : WEXITSTATUS(status);
    /* bwrap reports a command killed by signal N as exit status 128+N,
     * the shell convention; undo it so both modes read alike. */
    if (p->sandboxed && p->exit_code > 128 && p->exit_code < 128 + NSIG)
        p->exit_code = -(p->exit_code - 128);
    limit_reason(p);
    close_fd(p, &p->in_fd);
    pump_read(p, &p->out_fd, false, DRAIN_BUDGET);
    pump_read(p, &p->err_fd, true, DRAIN_BUDGET);
    if (files_bad) {
        log_append(p, files_line, strlen(files_line));
        if (p->exit_code == 0)
            p->exit_code = 1;
    } else {
        say_if_out_of_space(p);
    }
    close_fd(p, &p->out_fd);
    close_fd(p, &p->err_fd);
    close_fd(p, &p->pidfd);
    close_fd(p, &p->timerfd);
    take_outputs(p);
    p->done = true;
    return true;
}

static void check_deadline(rz_proc *p)
{
    uint64_t ticks;
    if (p->timerfd >= 0 &&
        read(p->timerfd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks) {
        p->timed_out = true;
        close_fd(p, &p->timerfd);
        rz_proc_kill(p);
    }
}

int rz_proc_fd(const rz_proc *p)
{
    return p ? p->epfd : -1;
}

int rz_proc_poll(rz_proc *p, int timeout_ms)
{
    if (!p || p->done)
        return 1;
    int wait = timeout_ms < 0 ? -1 : timeout_ms;
    if (p->pidfd < 0 && (wait < 0 || wait > NO_PIDFD_TICK_MS))
        wait = NO_PIDFD_TICK_MS;
    struct epoll_event ev[8];
    int n = epoll_wait(p->epfd, ev, (int)RZ_ARRAY_LEN(ev), wait);
    if (n < 0 && errno != EINTR)
        return rz__error(RZ_EIO, "epoll_wait: %s", strerror(errno));
    /* Only what epoll says is ready is looked at (level-triggered: what a
     * full ev[] left out is reported again): a runner polls every slot
     * each time one of them wakes it, and reading every pipe, the timer
     * and waitid for each was a third of the calls a step cost it.
     * Without a pidfd the exit is looked for every time, as before. */
    bool io = false, due = false, exited = p->pidfd < 0;
    for (int i = 0; i < n; i++) {
        if (ev[i].data.fd == p->pidfd)
            exited = true;
        else if (ev[i].data.fd == p->timerfd)
            due = true;
        else
            io = true;
    }
    if (io)
        pump(p, PUMP_BUDGET);
    if (due)
        check_deadline(p);
    if (exited)
        try_reap(p);
    return p->done ? 1 : 0;
}

void rz_proc_kill(rz_proc *p)
{
    if (p && p->pid > 0 && !p->reaped)
        kill(-p->pid, SIGKILL);
}

int rz_proc_exit_code(const rz_proc *p)
{
    return p ? p->exit_code : -1;
}

int rz__proc_output_over(const rz_proc *p)
{
    return p ? p->out_over : 0;
}

int rz_proc_timed_out(const rz_proc *p)
{
    return p ? p->timed_out : 0;
}

const char *rz_proc_outputs(const rz_proc *p)
{
    return p ? p->outputs : NULL;
}

const char *rz__proc_output_error(const rz_proc *p)
{
    return p && p->done && p->output_error[0] ? p->output_error : NULL;
}

const char *rz_proc_log(const rz_proc *p, size_t *len)
{
    if (!p) {
        if (len)
            *len = 0;
        return NULL;
    }
    size_t skip = p->log_len > p->max_log ? p->log_len - p->max_log : 0;
    if (len)
        *len = p->log_len - skip;
    return p->log + skip;
}

void rz_proc_free(rz_proc *p)
{
    if (!p)
        return;
    if (p->pid > 0 && !p->reaped) {
        kill(-p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close_fd(p, &p->in_fd);
    close_fd(p, &p->out_fd);
    close_fd(p, &p->err_fd);
    close_fd(p, &p->pidfd);
    close_fd(p, &p->timerfd);
    rz__sbx_finish(&p->sbx, NULL);
    if (p->epfd >= 0)
        close(p->epfd);
    if (p->scratch && p->own_scratch)
        rm_tree_at(AT_FDCWD, p->scratch, 0, DT_UNKNOWN);
    free(p->scratch);
    free(p->output_path);
    free(p->input);
    free(p->log);
    rz__buf_free(&p->out);
    cJSON_free(p->outputs);
    free(p);
}

/* ---- the process adapter (adapter.h) ---- */

typedef struct proc_state {
    rz__proc_launch l;         /* first: the launch functions take it */
    char **env;                /* spec env + RZ_CRED_<NAME>=value, wiped */
    size_t n_env;
} proc_state;

static int proc_probe(const char *host, char *why, size_t n)
{
    (void)host;
    (void)why;
    (void)n;
    return 1;
}

/* "RZ_CRED_" + NAME upper-cased, other characters '_', "=" + value. */
static char *cred_env(const rz_attempt_secret *s)
{
    char *e = rz__asprintf("RZ_CRED_%s=%s", s->name, s->value);
    for (char *c = e ? e + 8 : NULL; c && *c != '='; c++) {
        unsigned char ch = (unsigned char)*c;
        *c = (ch >= 'a' && ch <= 'z') ? (char)(ch - 32)
           : ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) ? *c
           : '_';
    }
    return e;
}

static void proc_cleanup(void *state)
{
    proc_state *st = state;
    if (!st)
        return;
    rz_proc_free(st->l.proc);
    for (size_t i = 0; i < st->n_env; i++)
        if (st->env[i]) {
            sodium_memzero(st->env[i], strlen(st->env[i]));
            free(st->env[i]);
        }
    free(st->env);
    free(st);
}

static int proc_prepare(void **state, const rz__exec_spec *sp)
{
    const rz_module *m = sp->module;
    *state = NULL;
    if (!m->command || !m->command[0])
        return rz__error(RZ_EMANIFEST, "module '%s' has no exec.command",
                         m->id);
    proc_state *st = rz__calloc(1, sizeof *st);
    size_t n = 0;
    while (sp->env && sp->env[n])
        n++;
    if (st)
        st->env = rz__calloc(n + sp->n_secrets + 1, sizeof *st->env);
    if (!st || !st->env) {
        proc_cleanup(st);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    *state = st;
    for (size_t i = 0; i < n + sp->n_secrets; i++) {
        st->env[i] = i < n ? rz__strdup(sp->env[i])
                           : cred_env(&sp->secrets[i - n]);
        st->n_env++;
        if (!st->env[i])
            return rz__error(RZ_ENOMEM, "out of memory");
    }
    rz__proc_launch_init(&st->l, sp);
    st->l.po.argv = (const char *const *)m->command;
    st->l.po.env = (const char *const *)st->env;
    st->l.po.input = sp->request;
    st->l.po.input_len = sp->request_len;
    st->l.po.network = sp->network;
    st->l.po.memory_mb = sp->memory_mb;
    return RZ_OK;
}

void rz__proc_launch_init(rz__proc_launch *l, const rz__exec_spec *sp)
{
    rz_proc_opts po = RZ_PROC_OPTS_INIT;
    po.module_dir = sp->module->dir;
    po.sandbox = sp->sandbox;
    uint64_t ms = (uint64_t)sp->timeout_s * 1000u;
    po.timeout_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    po.max_output = sp->max_stdout;
    po.max_log = sp->max_log;
    l->po = po;
    l->lim.cpus = sp->cpus;
    l->lim.scratch_mb = sp->scratch_mb;
    l->lim.file_cap = sp->max_file;
    l->lim.files_cap = sp->max_files;
    l->scratch = sp->scratch;
    l->outputs_path = sp->outputs_path;
}

int rz__proc_launch_start(void *state)
{
    rz__proc_launch *l = state;
    return rz__proc_spawn_in(&l->proc, &l->po, l->scratch, l->outputs_path,
                             &l->lim);
}

int rz__proc_launch_fd(const void *state)
{
    return rz_proc_fd(((const rz__proc_launch *)state)->proc);
}

int rz__proc_launch_poll(void *state, int timeout_ms)
{
    return rz_proc_poll(((rz__proc_launch *)state)->proc, timeout_ms);
}

void rz__proc_launch_stop(void *state)
{
    rz_proc_kill(((rz__proc_launch *)state)->proc);
}

void rz__proc_launch_collect(void *state, rz__exec_outcome *o)
{
    const rz_proc *p = ((rz__proc_launch *)state)->proc;
    o->exit_code = rz_proc_exit_code(p);
    o->timed_out = rz_proc_timed_out(p);
    /* The step's cgroup tells a kill for memory; under RLIMIT_AS alone an
     * allocation fails and nothing is killed. */
    o->oom = rz__proc_oom(p);
    o->failure = rz__proc_limit_reason(p);
    if (o->failure)
        o->timed_out = false;   /* the reason says it, after the cause */
    o->stdout_over = rz__proc_output_over(p);
    o->outputs = rz_proc_outputs(p);
    o->output_error = rz__proc_output_error(p);
    o->log = rz_proc_log(p, &o->log_len);
}

void rz__proc_stream(rz_proc *p)
{
    if (p)
        p->stream = true;
}

char *rz__proc_out_take(rz_proc *p, uint64_t *dropped)
{
    *dropped = p ? p->out_dropped : 0;
    if (!p || !p->stream || !p->out.data || p->out.failed)
        return NULL;
    size_t n = p->out.len;
    while (n > 0 && p->out.data[n - 1] != '\n')
        n--;
    if (n == 0)
        return NULL;
    char *lines = rz__strndup(p->out.data, n);
    if (!lines)
        return NULL;
    memmove(p->out.data, p->out.data + n, p->out.len - n);
    p->out.len -= n;
    return lines;
}

char *rz__proc_launch_out_lines(void *state, uint64_t *dropped)
{
    return rz__proc_out_take(((rz__proc_launch *)state)->proc, dropped);
}

void rz__proc_launch_stream(void *state)
{
    rz__proc_stream(((rz__proc_launch *)state)->proc);
}

static const char *proc_log_so_far(void *state, size_t *len,
                                   uint64_t *total)
{
    const rz_proc *p = ((proc_state *)state)->l.proc;
    *total = p ? p->log_total : 0;
    return rz_proc_log(p, len);
}

/* A sandboxed step without network has a namespace of its own, which its
 * first process (the sandbox's init) is in. */
int rz__proc_launch_net_pid(void *state)
{
    const rz__proc_launch *l = state;
    const rz_proc *p = l->proc;
    if (!p || !p->sandboxed || l->po.network)
        return 0;
    return p->pid > 0 && !p->reaped ? (int)p->pid : -1;
}

const rz__adapter rz__process_adapter = {
    "process", proc_probe, proc_prepare, rz__proc_launch_start,
    rz__proc_launch_fd, rz__proc_launch_poll, rz__proc_launch_stop,
    rz__proc_launch_collect, proc_cleanup, NULL, proc_log_so_far,
    rz__proc_launch_stream, rz__proc_launch_out_lines, rz__proc_launch_net_pid,
    NULL,
};

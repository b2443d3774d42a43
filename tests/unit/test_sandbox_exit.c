/* A process that ends while the sandbox's probe runs on another thread (a
 * `flow run` of a flow with errors): exit does not wait for the probe,
 * which makes no host folder (it runs no step of its own). A run started
 * while the probe goes on (`flow run`'s start) records itself before it
 * waits for the probe; the first cell's zygote is in its cgroups before
 * the probe has the helper's answer (its root built). The first steps
 * carry the probe's last part, the sandbox's check: a step whose check
 * fails runs nothing, and where the helper's own step fails too the
 * helper is let go and the step runs through what the probe finds then,
 * as does a step that chose the helper just before it was let go.
 * Each case probes in a child of its own (the probe runs once per
 * process); this process never probes. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/internal.h"
#include "exec/adapter.h"
#include "exec/sandbox.h"
#include "exec/sandbox_helper.h"
#include "rhizos/exec.h"
#include "rhizos/flow.h"
#include "rhizos/module.h"
#include "rhizos/store.h"

#define SKIPPED 77
#define EXITED 7

static int note[2];

static void *probe_thread(void *arg)
{
    (void)arg;
    (void)rz_sandbox_available();
    (void)!write(note[1], "done", 5);   /* it never stopped where asked */
    return NULL;
}

/* What the probe said, up to its NUL. */
static void read_note(char *buf, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap && read(note[0], buf + n, 1) == 1 && buf[n])
        n++;
    buf[n] = '\0';
}

/* The child's exit status once it ends, within `ms`; -1 if it has not. */
static int wait_ms(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i++) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        struct timespec one = { 0, 1000000L };
        nanosleep(&one, NULL);
    }
    return -1;
}

/* The child's exit code, within 30 s (killed past it: -1). */
static int child_code(pid_t pid)
{
    int code = wait_ms(pid, 30000);
    if (code < 0)
        kill(pid, SIGKILL);
    return code;
}

/* A case's child said it passed (EXITED) or that it cannot run here. */
static void expect_exited(int code)
{
    if (code == SKIPPED)
        skip();
    assert_int_equal(code, EXITED);
}

/* `fn` in a child of its own (the probe runs once per process), as root
 * (the helper runs only as root); it must end EXITED. */
static void in_child(int (*fn)(void))
{
    if (geteuid() != 0)
        skip();
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    expect_exited(child_code(pid));
}

/* `fn(what)` in a child of its own whose probe, on a thread, is held at
 * its wait for the helper's root until this process is done with it
 * (`what`: what the probe holds); SKIPPED where nothing is held (no
 * helper here). Its exit code. */
static int held_child_code(int (*fn)(const char *what))
{
    int hold[2];
    assert_int_equal(pipe(note), 0);
    assert_int_equal(pipe(hold), 0);
    fflush(NULL);   /* the child exits: nothing of ours printed twice */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char what[128];
        close(hold[1]);
        rz__sbx_test_probe_hold(RZ__SBX_HOLD_WAITING, note[1], hold[0]);
        pthread_t t;
        if (pthread_create(&t, NULL, probe_thread, NULL) != 0)
            _exit(1);
        read_note(what, sizeof what);
        _exit(strcmp(what, "done") == 0 ? SKIPPED : fn(what));
    }
    close(note[0]);
    close(note[1]);
    close(hold[0]);
    int code = child_code(pid);
    close(hold[1]);
    return code;
}

/* Held for good: only an exit that does not wait for it ends. */
static int exit_while_held(const char *what)
{
    if (strcmp(what, "root") != 0)
        return 3;
    exit(EXITED);
}

static void test_exit_cuts_short_a_probe_that_waits(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();   /* the helper runs only as root */
    expect_exited(held_child_code(exit_while_held));
}

/* In a child with a /tmp of its own: the probe, from its start to its
 * end, makes no folder there (it runs no step of its own), so an exit at
 * any point of it leaves none. */
static int no_folder_child(void)
{
    if (unshare(CLONE_NEWNS) != 0 ||
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", "/tmp", "tmpfs", 0, "size=16m") != 0)
        return SKIPPED;
    unsetenv("TMPDIR");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0 || inotify_add_watch(in, "/tmp", IN_CREATE) < 0)
        return SKIPPED;
    (void)rz_sandbox_available();
    if (rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = read(in, buf, sizeof buf);
    if (n > 0)
        fprintf(stderr, "made in /tmp: %s\n",
                ((struct inotify_event *)buf)->name);
    return n > 0 ? 3 : EXITED;
}

static void test_probe_makes_no_folder(void **state)
{
    (void)state;
    in_child(no_folder_child);
}

/* This process's cgroup folder in the pids hierarchy (v1) or the unified
 * one (v2), under /sys/fs/cgroup; false if neither is found. */
static bool own_cgroup_dir(char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    char line[512];
    bool found = false;
    while (f && !found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *pids = strstr(line, ":pids:");
        if (pids)
            found = snprintf(out, cap, "/sys/fs/cgroup/pids%s",
                             strcmp(pids + 6, "/") ? pids + 6 : "") < (int)cap;
        else if (strncmp(line, "0::", 3) == 0)
            found = snprintf(out, cap, "/sys/fs/cgroup%s",
                             strcmp(line + 3, "/") ? line + 3 : "") < (int)cap;
    }
    if (f)
        fclose(f);
    return found;
}

/* A probe cut short by exit while it tried whether it may make cgroups
 * leaves its trial folder (rz-probe-PID); the next probe removes it once
 * that process is gone. */
static int sweep_child(void)
{
    char base[256], dir[320];
    pid_t gone = fork();
    if (gone == 0)
        _exit(0);
    while (gone > 0 && waitpid(gone, NULL, 0) < 0 && errno == EINTR)
        ;
    if (gone < 0 || !own_cgroup_dir(base, sizeof base))
        return SKIPPED;
    snprintf(dir, sizeof dir, "%s/rz-probe-%ld", base, (long)gone);
    if (mkdir(dir, 0755) != 0)
        return SKIPPED;
    (void)rz_sandbox_available();
    bool left = access(dir, F_OK) == 0;
    if (left)
        rmdir(dir);
    /* No cgroups of its own (v2 without delegation): nothing swept. */
    if (!rz__sbx_has_cgroup())
        return SKIPPED;
    return left ? 3 : EXITED;
}

static void test_probe_sweeps_a_dead_probes_cgroup(void **state)
{
    (void)state;
    in_child(sweep_child);
}

/* A step through the helper itself as `uid`, `sh -c 'echo ran'`, with
 * the check `check` or none (NULL): what its error pipe said first, what
 * it printed. */
static int helper_step(uint32_t uid, const char *check, char *out,
                       size_t cap)
{
    char dir[] = "/tmp/rz-test-check-XXXXXX";
    int o[2], ep[2], null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (!mkdtemp(dir) || null < 0 || pipe2(o, O_CLOEXEC) != 0 ||
        pipe2(ep, O_CLOEXEC) != 0)
        _exit(1);
    char *argv[] = { "sh", "-c", "echo ran", NULL }, *envp[] = { NULL };
    rz__sbx_launch l;
    memset(&l, 0, sizeof l);
    l.scratch = dir;
    l.uid = uid;
    l.exe = "/bin/sh";
    l.argv = argv;
    l.envp = envp;
    l.fsize.rlim_cur = l.fsize.rlim_max = RLIM_INFINITY;
    l.nofile.rlim_cur = l.nofile.rlim_max = 64;
    l.check_exe = check;
    int stdio[3] = { null, o[1], null };
    pid_t pid = -1;
    char why[256];
    if (rz__sbx_helper_spawn(&pid, &l, stdio, ep[1], -1, NULL, NULL, why,
                             sizeof why) != 0)
        _exit(1);
    close(ep[1]);
    close(o[1]);
    int e = 0;
    if (read(ep[0], &e, sizeof e) <= 0)
        e = 0;
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(o[0], out + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    close(o[0]);
    close(ep[0]);
    close(null);
    rmdir(dir);
    return e;
}

/* A uid of the range no runner holds, locked host-wide as a runner locks
 * its cells' (the lock held until this process exits); 0: none. */
static uint32_t uid_locked(uint32_t first, uint32_t count)
{
    int fd = open(RZ__SBX_UID_LOCK_DIR "/" RZ__SBX_UID_LOCK_FILE,
                  O_RDWR | O_CLOEXEC);
    for (uint32_t u = first + count; fd >= 0 && u-- > first;) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                            .l_start = (off_t)u, .l_len = 1 };
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
            return u;
    }
    return 0;
}

/* A step whose check fails is never started: its init says so and
 * exits; the same step without the check runs (the test can see it), and
 * with a check that passes its init says that first. */
static int runs_nothing_child(void)
{
    uint32_t first = 0, count = 0;
    rz__sbx_uid_range(&first, &count);
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0 || !count)
        return SKIPPED;
    char out[64];
    uint32_t uid = uid_locked(first, count);
    if (!uid)
        return SKIPPED;
    if (helper_step(uid, "/bin/false", out, sizeof out) !=
            RZ__SBX_CHECK_FAILED || strcmp(out, "") != 0)
        return 3;
    if (helper_step(uid, NULL, out, sizeof out) != 0 ||
        strcmp(out, "ran\n") != 0)
        return 4;
    /* A pass is said, not inferred from silence. */
    if (helper_step(uid, "/bin/true", out, sizeof out) !=
            RZ__SBX_CHECK_OK || strcmp(out, "ran\n") != 0)
        return 5;
    return EXITED;
}

static void test_failed_check_runs_nothing(void **state)
{
    (void)state;
    in_child(runs_nothing_child);
}

/* A step through rz_proc_spawn in a child whose check runs `in_step` in
 * the step and `alone` in the helper's own step: `sh -c cat` of a small
 * document, given again if the step is started again. EXITED when it
 * printed it once and the sandbox's status says `said` (NULL: nothing of
 * the helper), after `changes` changes. */
static int check_child(const char *in_step, const char *alone,
                       const char *said, unsigned changes)
{
    rz__sbx_test_check_exe(in_step, alone);
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    if (rz__sbx_changes() != 0)
        return 3;
    static const char in[] = "{\"a\":1}";
    const char *const argv[] = { "sh", "-c", "cat", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.argv = argv;
    o.input = in;
    o.input_len = sizeof in - 1;
    rz_proc *p = NULL;
    if (rz_proc_spawn(&p, &o) != RZ_OK)
        return 4;
    int r = 0;
    while (r == 0)
        r = rz_proc_poll(p, 100);
    const char *st = rz_sandbox_status(), *outs = rz_proc_outputs(p);
    bool ok = r == 1 && rz_proc_exit_code(p) == 0 && outs &&
              strcmp(outs, in) == 0 && rz__sbx_changes() == changes &&
              (said ? st && strstr(st, said)
                    : !st || !strstr(st, "helper"));
    if (!ok)
        fprintf(stderr, "exit %d, outputs %s, status %s\n",
                rz_proc_exit_code(p), outs ? outs : "-", st ? st : "-");
    rz_proc_free(p);
    return ok ? EXITED : 5;
}

/* As check_child("/bin/false", "/bin/false", ...), the input a file in
 * the step's scratch (in/request.json, 0600, as the runner writes it):
 * bubblewrap, taking over, must still read it. `untried`: the helper's
 * own step cannot be tried (TMPDIR missing), so the helper is kept. */
static int file_child(bool untried)
{
    rz__sbx_test_check_exe("/bin/false", "/bin/false");
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    if (untried)
        setenv("TMPDIR", "/nonexistent/rz-test", 1);
    static const char in[] = "{\"a\":1}";
    char scratch[] = "/tmp/rz-chkin-XXXXXX", path[96], out[96];
    if (!mkdtemp(scratch))
        return 3;
    snprintf(path, sizeof path, "%s/in", scratch);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/in/request.json", scratch);
    snprintf(out, sizeof out, "%s/out.json", scratch);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || fo < 0 || write(fd, in, sizeof in - 1) != sizeof in - 1)
        return 3;
    close(fd);
    close(fo);
    const char *const argv[] = { "sh", "-c", "cat in/request.json", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.argv = argv;
    rz_proc *p = NULL;
    if (rz__proc_spawn_in(&p, &o, scratch, out, NULL) != RZ_OK) {
        fprintf(stderr, "spawn: %s\n", rz_error_last()->message);
        return 4;
    }
    int r = 0;
    while (r == 0)
        r = rz_proc_poll(p, 100);
    const char *outs = rz_proc_outputs(p);
    bool ok = r == 1 && rz_proc_exit_code(p) == 0 && outs &&
              strcmp(outs, in) == 0 && rz__sbx_changes() == (untried ? 0 : 1);
    if (!ok)
        fprintf(stderr, "exit %d, outputs %s\n", rz_proc_exit_code(p),
                outs ? outs : "-");
    rz_proc_free(p);
    rz__exec_rm_tree(scratch);
    return ok ? EXITED : 5;
}

/* The first step's check fails and so does the probe's own step through
 * the helper: the helper is let go (stopped) as when it cannot start, and
 * the step, unstarted, runs once through what the probe then finds
 * (bubblewrap here), its input given again; the status says so, and has
 * changed. */
static int lets_go_child(void)
{
    rz__sbx_test_check_exe("/bin/false", "/bin/false");
    pid_t helper = rz_sandbox_available() ? rz__sbx_helper_pid() : -1;
    int code = check_child("/bin/false", "/bin/false",
                           "the sandbox helper's check failed (exit "
                           "status 1): using bubblewrap", 1);
    /* Let go, it is gone (reaped: no such process). */
    if (code == EXITED && (rz__sbx_helper_pid() > 0 ||
                           (helper > 0 && kill(helper, 0) == 0)))
        code = 6;
    return code;
}

static void test_failed_check_lets_the_helper_go(void **state)
{
    (void)state;
    in_child(lets_go_child);
}

/* The same with the step's input in its scratch, as a runner's step. */
static int readable_child(void)
{
    return file_child(false);
}

static void test_failed_check_leaves_the_input_readable(void **state)
{
    (void)state;
    in_child(readable_child);
}

/* A failing bwrap first on PATH: the fake's folder, or NULL. */
static char *fake_bwrap_first(char *dir, size_t cap)
{
    snprintf(dir, cap, "/tmp/rz-fakebw-XXXXXX");
    char path[96];
    if (!mkdtemp(dir))
        return NULL;
    snprintf(path, sizeof path, "%s/bwrap", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return NULL;
    fputs("#!/bin/sh\nexit 1\n", f);
    fclose(f);
    chmod(path, 0755);
    const char *old = getenv("PATH");
    char *both = NULL;
    if (asprintf(&both, "%s:%s", dir, old ? old : "/usr/bin:/bin") < 0)
        return NULL;
    setenv("PATH", both, 1);
    free(both);
    return dir;
}

/* The helper's check fails, so does its own step, and bubblewrap cannot
 * take over: the step fails saying so, twice; nothing runs unsandboxed
 * (as root). */
static int broken_child(void)
{
    char dir[64];
    if (!fake_bwrap_first(dir, sizeof dir))
        return 3;
    rz__sbx_test_check_exe("/bin/false", "/bin/false");
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    const char *const argv[] = { "sh", "-c", "id -u", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.argv = argv;
    int code = EXITED;
    for (int i = 0; i < 2 && code == EXITED; i++) {
        rz_proc *p = NULL;
        int rc = rz_proc_spawn(&p, &o);
        const char *m = rz_error_last()->message;
        if (rc != RZ_EEXEC || !strstr(m, "the sandbox stopped working") ||
            !strstr(m, "(exit status 1)")) {
            fprintf(stderr, "try %d: rc %d: %s\n", i, rc, m);
            code = 4 + i;
        }
        rz_proc_free(p);
    }
    char path[96];
    snprintf(path, sizeof path, "%s/bwrap", dir);
    unlink(path);
    rmdir(dir);
    return code;
}

static void test_failed_check_and_bwrap_fail_the_step(void **state)
{
    (void)state;
    in_child(broken_child);
}

/* The first step's check fails but the helper's own step runs: the step's
 * own sandbox failed it (its limits, say), the helper is kept, and the
 * step is started again in it without a check, once. */
static int keeps_child(void)
{
    int code = check_child("/bin/false", NULL, NULL, 0);
    return code == EXITED && rz__sbx_check_exe() ? 6 : code;
}

static void test_failed_check_keeps_a_working_helper(void **state)
{
    (void)state;
    in_child(keeps_child);
}

/* The helper's own step cannot be tried after the check fails (no
 * folder for it: TMPDIR missing; the step's scratch is the test's). That
 * says nothing of the helper: it is kept, the step started again in it
 * without a check, and the next step is still checked. */
static int untried_child(void)
{
    int code = file_child(true);
    return code == EXITED && !rz__sbx_check_exe() ? 6 : code;
}

static void test_untried_helper_is_kept(void **state)
{
    (void)state;
    in_child(untried_child);
}

/* rz__sbx_cell_seam: the first step to choose the helper is held there
 * (it says so on `held`) until a byte can be read from `go`. */
static int held[2], go[2];
static atomic_int cell_seam_calls;

static void hold_first_step(void)
{
    char c = 0;
    if (atomic_fetch_add(&cell_seam_calls, 1) != 0)
        return;
    (void)!write(held[1], &c, 1);
    (void)!read(go[0], &c, 1);
}

typedef struct late_step {
    int rc;                 /* rz_proc_spawn's */
    char error[512];        /* its error */
    bool printed;           /* the step ran and printed its input */
} late_step;

/* `sh -c cat` of a small document, sandboxed. */
static void *late_step_thread(void *arg)
{
    late_step *ls = arg;
    static const char in[] = "{\"a\":1}";
    const char *const argv[] = { "sh", "-c", "cat", NULL };
    rz_proc_opts o = RZ_PROC_OPTS_INIT;
    o.sandbox = 1;
    o.argv = argv;
    o.input = in;
    o.input_len = sizeof in - 1;
    rz_proc *p = NULL;
    ls->rc = rz_proc_spawn(&p, &o);
    snprintf(ls->error, sizeof ls->error, "%s",
             ls->rc == RZ_OK ? "" : rz_error_last()->message);
    int r = 0;
    while (ls->rc == RZ_OK && r == 0)
        r = rz_proc_poll(p, 100);
    const char *outs = r == 1 ? rz_proc_outputs(p) : NULL;
    ls->printed = r == 1 && rz_proc_exit_code(p) == 0 && outs &&
                  strcmp(outs, in) == 0;
    rz_proc_free(p);
    return NULL;
}

/* A step that chose the helper is held before it takes its cell, while
 * another step's check fails and lets the helper go (the helper's own
 * step fails too), and the helper ends (no cell was taken). Then the held
 * step goes on, as the later steps do: `late` says how it did. SKIPPED
 * where there is no helper. */
static int let_go_race(late_step *late, late_step *first)
{
    rz__sbx_test_check_exe("/bin/false", "/bin/false");
    if (!rz_sandbox_available() || rz__sbx_helper_pid() <= 0)
        return SKIPPED;
    if (pipe(held) != 0 || pipe(go) != 0)
        return 3;
    rz__sbx_cell_seam = hold_first_step;
    pthread_t t;
    char c = 0;
    if (pthread_create(&t, NULL, late_step_thread, late) != 0 ||
        read(held[0], &c, 1) != 1)
        return 3;
    late_step_thread(first);   /* its check fails: the helper is let go */
    bool ended = rz__sbx_helper_pid() <= 0 && rz__sbx_changes() == 1;
    (void)!write(go[1], &c, 1);
    pthread_join(t, NULL);
    rz__sbx_cell_seam = NULL;
    if (!ended)
        fprintf(stderr, "the helper was not let go: no race\n");
    return ended ? EXITED : 4;
}

/* Bubblewrap takes over: the held step runs through it. */
static int let_go_bwrap_child(void)
{
    late_step late = { 0 }, first = { 0 };
    int code = let_go_race(&late, &first);
    if (code == EXITED && (!first.printed || !late.printed)) {
        fprintf(stderr, "first: %d %s; held: %d %s\n", first.rc,
                first.error, late.rc, late.error);
        code = 5;
    }
    return code;
}

static void test_held_step_after_the_let_go_runs_in_bwrap(void **state)
{
    (void)state;
    in_child(let_go_bwrap_child);
}

/* Bubblewrap cannot take over: the held step fails saying why, as the
 * first one does (nothing runs unsandboxed). */
static int let_go_broken_child(void)
{
    char dir[64];
    if (!fake_bwrap_first(dir, sizeof dir))
        return 3;
    late_step late = { 0 }, first = { 0 };
    int code = let_go_race(&late, &first);
    const char *why = "the sandbox stopped working";
    if (code == EXITED && (first.rc != RZ_EEXEC || late.rc != RZ_EEXEC ||
                           !strstr(first.error, why) ||
                           !strstr(late.error, why))) {
        fprintf(stderr, "first: %d %s; held: %d %s\n", first.rc,
                first.error, late.rc, late.error);
        code = 5;
    }
    char path[96];
    snprintf(path, sizeof path, "%s/bwrap", dir);
    unlink(path);
    rmdir(dir);
    return code;
}

static void test_held_step_after_the_let_go_fails_without_bwrap(void **state)
{
    (void)state;
    in_child(let_go_broken_child);
}

static char data_dir[64];

static void *run_thread(void *arg)
{
    static const char src[] =
        "{\"id\":\"one\",\"name\":\"one\",\"version\":\"1.0.0\","
        "\"nodes\":[{\"id\":\"n0\",\"moduleId\":\"sh\",\"needs\":[]}],"
        "\"connections\":[]}";
    (void)arg;
    rz_registry *reg = NULL;
    rz_flow *f = NULL;
    rz_diags *d = NULL;
    rz_run *run = NULL;
    rz_runner_opts o = RZ_RUNNER_OPTS_INIT;
    o.sandbox = 1;
    o.run_id = "run-ahead";
    o.data_dir = data_dir;
    if (rz_registry_new(&reg) != RZ_OK ||
        rz_registry_add_dir(reg, RZ_SOURCE_ROOT "/bench/runner/modules",
                            NULL) != RZ_OK ||
        rz_diags_new(&d) != RZ_OK ||
        rz_flow_parse(&f, src, strlen(src), RZ_FORMAT_JSON, "one.json",
                      d) != RZ_OK ||
        rz_flow_validate(f, reg, d) != RZ_OK ||
        rz_runner_run(&run, f, &o) != RZ_OK)
        _exit(2);
    return NULL;
}

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The run's record is there now, read by a process of its own: LMDB
 * allows one environment of a store per process, and the run holds one
 * (a second, opened and closed beside it, breaks its locks). The reader
 * ends by a system call: no exit hook of a copy of this process runs. It
 * dies with this process (killed past child_code's limit, it would hold
 * the test's output open) and is killed at `deadline` (now_ms). */
static bool recorded_now(long long deadline)
{
    pid_t parent = getpid(), pid = fork();
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
            syscall(SYS_exit_group, 1);
        rz_store *st = NULL;
        char *rec = NULL;
        bool there = rz_store_open(&st, data_dir) == RZ_OK &&
                     rz_store_run_get(st, "run-ahead", &rec) == RZ_OK;
        syscall(SYS_exit_group, there ? 0 : 1);
    }
    int status = 0;
    pid_t r = 0;
    while (pid > 0 && ((r = waitpid(pid, &status, WNOHANG)) == 0 ||
                       (r < 0 && errno == EINTR)) && now_ms() < deadline) {
        struct timespec one = { 0, 1000000L };
        nanosleep(&one, NULL);
    }
    if (pid > 0 && r != pid) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        return false;
    }
    return pid > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The run's record is there, within `ms` by the clock (each look is a
 * process of its own: counting them would take far longer). */
static bool recorded_within(int ms)
{
    long long deadline = now_ms() + ms;
    while (!recorded_now(deadline)) {
        if (now_ms() >= deadline)
            return false;
        struct timespec one = { 0, 1000000L };
        nanosleep(&one, NULL);
    }
    return true;
}

/* The probe held for good: the run waits for it before its step. */
static int record_child(const char *what)
{
    (void)what;
    pthread_t t;
    if (pthread_create(&t, NULL, run_thread, NULL) != 0)
        return 1;
    return recorded_within(20000) ? EXITED : 3;
}

static void test_first_record_before_the_probe_ends(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    snprintf(data_dir, sizeof data_dir, "/tmp/rz-test-sbx-exit-XXXXXX");
    assert_non_null(mkdtemp(data_dir));
    int code = held_child_code(record_child);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    assert_int_equal(system(cmd), 0);
    expect_exited(code);
}

/* A child of ours named rz-sandbox-cell whose cgroups are a step's
 * ("/rz-PID-SEQ"), within about `ms` (pgrep's time not counted). */
static bool zygote_in_cgroups_within(int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        char cmd[160], line[64] = "";
        snprintf(cmd, sizeof cmd,
                 "for p in $(pgrep -P %ld -x rz-sandbox-cell); do "
                 "grep -q ':/.*rz-%ld-' /proc/$p/cgroup && echo in; done",
                 (long)getpid(), (long)getpid());
        FILE *f = popen(cmd, "r");
        bool in = f && fgets(line, sizeof line, f) && strncmp(line, "in", 2) == 0;
        if (f)
            pclose(f);
        if (in)
            return true;
        struct timespec ten = { 0, 10000000L };
        nanosleep(&ten, NULL);
    }
    return false;
}

/* Held before it reads the helper's first answer. */
static int joins_child(const char *what)
{
    (void)what;
    return zygote_in_cgroups_within(5000) ? EXITED : 3;
}

static void test_first_cell_joins_before_the_root(void **state)
{
    (void)state;
    if (geteuid() != 0 || system("command -v pgrep >/dev/null") != 0)
        skip();
    expect_exited(held_child_code(joins_child));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_cuts_short_a_probe_that_waits),
        cmocka_unit_test(test_probe_makes_no_folder),
        cmocka_unit_test(test_probe_sweeps_a_dead_probes_cgroup),
        cmocka_unit_test(test_failed_check_runs_nothing),
        cmocka_unit_test(test_failed_check_lets_the_helper_go),
        cmocka_unit_test(test_failed_check_leaves_the_input_readable),
        cmocka_unit_test(test_failed_check_keeps_a_working_helper),
        cmocka_unit_test(test_failed_check_and_bwrap_fail_the_step),
        cmocka_unit_test(test_untried_helper_is_kept),
        cmocka_unit_test(test_held_step_after_the_let_go_runs_in_bwrap),
        cmocka_unit_test(test_held_step_after_the_let_go_fails_without_bwrap),
        cmocka_unit_test(test_first_record_before_the_probe_ends),
        cmocka_unit_test(test_first_cell_joins_before_the_root),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

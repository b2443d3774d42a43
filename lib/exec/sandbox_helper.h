/* The pre-started sandbox helper: one process per runner, started at the
 * sandbox probe when the host runs as root, that builds the steps' root
 * once (namespaces, the read-only binds of the allow-listed system
 * folders, passwd/group, /dev) and per step clones a copy of it into new
 * namespaces with only the step's own mounts added.
 *
 * A step started here is the runner's own child (its init process, pid 1
 * of the step's pid namespace, exiting with the step's status, 128+N for
 * signal N, as bwrap does), in its own session, so the runner waits for it
 * and kills its group as before. The step runs as the host uid/gid the
 * runner gives it (one of a range no host user has, one per cell) with no
 * capability, no new privileges and the seccomp filter.
 *
 * If the helper dies, the next spawn restarts it once; if that fails the
 * spawn fails with the reason. A step never runs unsandboxed for it.
 *
 * Crash story: a step's init execs nothing of the step (only the
 * sandbox's check, `true`, which ends with it) until the runner, holding
 * the step's pid, says go on the step's go socket. The process that
 * cloned it dying before its answer (the helper, a cell's process killed for
 * memory) leaves an init that never runs the step: the runner finds it by
 * the credentials on its hello, kills and reaps it, and sends the step
 * again. A cell's spare init (the next step's, made ahead) gets the step
 * from its cell and says hello before anything else, as an init cloned
 * for the step does; it notes itself to the runner (its pid in the
 * credentials the kernel stamps) on its cell's socket before its cell
 * may hand it a step or answer anything, and holds that socket until
 * then, so the runner, which reaps an unused spare at the cell's end,
 * reads every note there is by the socket's end. The runner dying ends
 * every init (their life pipe closes) and so every step (each is its
 * init's pid namespace). The first cell's zygote, forked as the helper
 * starts (before its root), runs nothing until the runner gives it a uid;
 * the runner reaps it if no cell takes it, and it ends with the helper.
 * A cell's uid lock is an open-file-description lock: the kernel drops it
 * with the runner.
 */
#ifndef RZ_EXEC_SANDBOX_HELPER_H
#define RZ_EXEC_SANDBOX_HELPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "common/internal.h"

/* A step's scratch (and /tmp) tmpfs size when its options say none. */
#define RZ__SBX_DEFAULT_SCRATCH_MB 256u

/* What every step's root holds; borrowed for the life of the process. */
typedef struct rz__sbx_tmpl {
    char *const *etc;          /* /etc entries bound read-only */
    size_t n_etc;
    const char *passwd, *group;
    const unsigned char *bpf;  /* the seccomp program; NULL: none */
    size_t bpf_len;
} rz__sbx_tmpl;

/* One step. Paths absolute; moddir may be NULL. */
typedef struct rz__sbx_launch {
    const char *scratch, *output_path, *moddir, *exe;
    char *const *argv, *const *envp;
    int network;
    uint32_t scratch_mb;
    uint32_t uid;              /* the step's host uid and gid; never 0 */
    uint64_t out_cap;          /* most bytes of output_path kept */
    uint64_t file_cap, files_cap;  /* of <output_path's folder>/files: the
                                      most bytes of a file, of all */
    struct rlimit fsize, nofile, as, cpu;
    bool limit_as, limit_cpu;
    const int *cg_procs;       /* where the step writes "0" to join */
    size_t n_cg;
    /* The sandbox's check first (NULL: none): the step's init runs this
     * program ("/bin/true"), no arguments, in the step's namespaces and
     * cgroups as the step would run (uid, limits, filter) while it makes
     * the step's mounts, and starts the step only if that exits 0.
     * Otherwise, or if anything of the sandbox failed before, the error
     * pipe says RZ__SBX_CHECK_FAILED, nothing of the step having run. */
    const char *check_exe;
} rz__sbx_launch;

/* What the error pipe says when a step's check (above) failed, followed
 * by why: an errno (> 0), or -1 - the check's wait status. */
#define RZ__SBX_CHECK_FAILED (INT32_MIN + 2)
/* What it says first when the check passed (the step's own exec error, if
 * any, follows): only this counts as a pass, not an init that ended
 * before it said anything. */
#define RZ__SBX_CHECK_OK (INT32_MIN + 3)

/* Start the helper (once; later calls only update nothing): forked, not
 * waited for (rz__sbx_helper_ready; any other call here waits too). 0 or
 * -errno. `with_early`: before it builds its root, it forks the first cell's
 * zygote (see rz__sbx_helper_cell_early) into the cgroups whose join
 * files (rz__sbx.procs) are given (borrowed; none: a cell without
 * cgroups), so that its move there is made while the root is built. */
RZ_HIDDEN int rz__sbx_helper_start(const rz__sbx_tmpl *t, bool with_early,
                                   const int *cg_procs, size_t n_cg);
/* The helper started has built its root. 0 or -errno (then it is gone). */
RZ_HIDDEN int rz__sbx_helper_ready(void);
/* Start a step; *pid is the runner's child to wait for. The descriptors
 * are borrowed (the caller closes its copies). `spare` (a cell's; NULL
 * for the helper) is where the cell's spare init is kept track of: see
 * rz__sbx_helper_cell_end. *ns (if not NULL): the step's pid namespace
 * (/proc/PID/ns/pid) held open, the caller's to close; -1 if unknown. 0,
 * or -errno with the reason in why. */
RZ_HIDDEN int rz__sbx_helper_spawn(pid_t *pid, const rz__sbx_launch *l,
                                   const int stdio[3], int errpipe, int cell,
                                   pid_t *spare, int *ns, char *why,
                                   size_t why_len);
/* A cell: a process of the helper's (a child of ours) that has joined the
 * cgroups whose join files (tasks or cgroup.procs) are given, and starts the steps sent on
 * *zsock (`cell` above) there, with no cgroup move per step. Its steps
 * run as `uid` (it refuses others), named in their passwd and group.
 * 0 or -errno; -EPIPE from a spawn on a cell: its process is gone. */
RZ_HIDDEN int rz__sbx_helper_cell(const int *cg_procs, size_t n_cg,
                                  uint32_t uid, int *zsock, pid_t *zpid);
/* A cell as rz__sbx_helper_cell makes, from the zygote forked at the
 * helper's start (in that call's cgroups). 0 or -errno; either way no
 * early zygote is left (one not taken is killed and reaped). */
RZ_HIDDEN int rz__sbx_helper_cell_early(uint32_t uid, int *zsock,
                                        pid_t *zpid);
/* The early zygote, if no cell took it, killed and reaped. */
RZ_HIDDEN void rz__sbx_helper_early_drop(void);
/* The runner is done with a cell's last step (its leftovers killed:
 * the members of its pid namespace, never the cell's spare init, which
 * has its own): the cell may make the next step's init ahead now, if it
 * has not already at the last init's end (it watches its pidfd). */
RZ_HIDDEN void rz__sbx_helper_cell_done(int zsock);
/* The cell's memory cgroup's usage and limit files (v1 usage_in_bytes and
 * limit_in_bytes, v2 memory.current and memory.max; borrowed, the caller
 * closes its copies), sent once after rz__sbx_helper_cell: with them the
 * cell can tell when an ended step's charge leaves room to make the next
 * spare before the step's mount namespace is let go of (see
 * wait_request). Without them it keeps that order. */
RZ_HIDDEN void rz__sbx_helper_cell_memory(int zsock, int usage, int limit);
/* A memory cgroup file's text ("123\n", or "max\n": ULLONG_MAX) as bytes;
 * 0, or -1 for anything else. */
RZ_HIDDEN int rz__sbx_mem_bytes(const char *buf, unsigned long long *v);
/* A spare init's note of itself, unasked, on its cell's socket (see
 * make_spare): {RZ__SBX_SPARE_NOTE, 0}, eight bytes where every answer
 * has four; its pid is in the credentials the kernel stamps on it. */
#define RZ__SBX_SPARE_NOTE (INT32_MIN + 1)
/* A cell's end, once its zygote is killed and reaped: its spare init
 * (a step's init made ahead, our child, holding nothing of a step; its
 * pid in *spare, or in a note still queued on zsock), killed and
 * reaped. *spare is -1 after. */
RZ_HIDDEN void rz__sbx_helper_cell_end(int zsock, pid_t *spare);
/* Tests only: helpers started after this call exit right after a step's
 * clone, before answering, while the file `flag` starts with '1' (they
 * turn it to '0'); NULL or "" ends it. Hidden: nothing outside the
 * library's own tests can reach it. */
RZ_HIDDEN void rz__sbx_test_die_after_clone(const char *flag);
/* Tests only: helpers started after this call exit right after forking
 * their early zygote, before building their root. */
RZ_HIDDEN void rz__sbx_test_die_before_root(bool on);
/* Tests only: helpers started after this call do not exec their own
 * program (rz__sbx_program): they go on as the runner's copy, as where
 * the exec is refused. */
RZ_HIDDEN void rz__sbx_test_no_program(bool on);
/* The helper's pid, -1 when none runs (for tests). */
/* The helper stopped for good (let go: sandbox.c's check), with what it
 * holds (its root, pooled namespaces, early zygote); later calls fail. */
RZ_HIDDEN void rz__sbx_helper_end(void);
RZ_HIDDEN pid_t rz__sbx_helper_pid(void);
/* Whether the running helper is its own program (its exec from the memfd
 * worked), not the runner's copy. */
RZ_HIDDEN bool rz__sbx_helper_own_program(void);

/* The helper as a program of its own (rz-sandbox, see helper_exec):
 * its bytes, embedded in the library (empty in the program itself), and
 * its main, which never returns but for bad arguments. */
RZ_HIDDEN extern const unsigned char rz__sbx_program[];
RZ_HIDDEN extern const size_t rz__sbx_program_len;
RZ_HIDDEN int rz__sbx_helper_program(int argc, char **argv);

/* The sandbox check's program (sandbox_true.c: exits 0, no libc, static;
 * len 0 on architectures it is not built for), which the helper writes
 * into its root at RZ__SBX_TRUE_PATH: the program a step's check runs. */
RZ_HIDDEN extern const unsigned char rz__sbx_true[];
RZ_HIDDEN extern const size_t rz__sbx_true_len;
#define RZ__SBX_TRUE_PATH "/.rz-true"

/* `path` is `dir` or below it. */
/* The copy out of a step's RZ_OUTPUT_DIR (outdir.c): `from_dir` (taken,
 * closed) copied into `to_dir`, folders and regular files only (no link,
 * fifo or device taken), at most 16 folders deep and 10,000 entries, each
 * file within file_cap and all within `left` (decreased). -1 past a cap
 * (`over` names it) or on an error (errno). */
typedef struct rz__outdir_copy {
    uint64_t file_cap, left;
    unsigned entries;
    const char *over;
} rz__outdir_copy;
RZ_HIDDEN int rz__outdir_copy_tree(rz__outdir_copy *c, int from_dir, int to_dir,
                                   int depth);
RZ_HIDDEN bool rz__sbx_path_under(const char *path, const char *dir);
/* `path` is under a system folder every step sees read-only (/usr...). */
RZ_HIDDEN bool rz__sbx_path_is_system(const char *path);

#endif

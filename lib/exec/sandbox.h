/* The process adapter's sandbox. As root, steps start through the
 * pre-started helper (sandbox_helper.h: the root built once, each step a
 * clone into new namespaces, born in a reused cgroup "cell"); otherwise,
 * or with RHIZOS_SANDBOX=bwrap, bubblewrap exec'd once per step with what
 * it needs prepared here.
 *
 * Layers, each found at start-up (rz__sbx_probe, once per process):
 *   - bwrap with every namespace unshared, a root of allow-listed system
 *     folders and /etc entries (no /etc/shadow, no /etc/ssl/private),
 *     synthesized passwd/group, nested user namespaces disabled;
 *   - as uid/gid RZ__SBX_UID with every capability dropped (bounding set
 *     included) when the host runs as root (through the helper: a uid of
 *     its own per cell, from a range no host user has, on the host too),
 *     else as the host's own user; bwrap itself runs as
 *     the caller, so it can reach scratch folders under private (0700)
 *     parents. Outside, bwrap's user namespace maps the step to the
 *     caller's uid: what keeps it from the host's files is that it sees
 *     only read-only system folders and its own scratch;
 *   - a seccomp filter (libseccomp, compiled once) refusing ptrace, the
 *     kernel keyring, mount, bpf, perf, kexec, modules and new user
 *     namespaces with EPERM;
 *   - a cgroup per step (v2 where delegated, else v1) with a pids limit,
 *     a memory cap (a default when none is asked for) and a CPU weight;
 *   - the scratch folder and /tmp on size-limited tmpfs; only the host
 *     scratch's entries (in/, the outputs file) are bound in (through the
 *     helper not the outputs file: the step's init copies it out, up to
 *     the outputs cap).
 * A layer that cannot work here is said by rz__sbx_status().
 */
#ifndef RZ_EXEC_SANDBOX_H
#define RZ_EXEC_SANDBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/internal.h"
#include "exec/sandbox_helper.h"

#define RZ__SBX_UID 65534          /* nobody/nogroup (bwrap: inside only) */
/* Helper-run steps' host uids/gids: one per cell from this range (systemd
 * leaves 1879048192-2147483647 unused), unless RHIZOS_SANDBOX_UIDS. */
#define RZ__SBX_UID_FIRST 1900000000u
#define RZ__SBX_UID_COUNT 256u
/* Host-wide: byte N locked while some runner's cell runs as uid N. */
#define RZ__SBX_UID_LOCK_DIR "/run/rhizos"
#define RZ__SBX_UID_LOCK_FILE "step-uids.lock"
#define RZ__SBX_DEFAULT_MEMORY_MB 2048u
#define RZ__SBX_DEFAULT_PIDS 512u
#define RZ__SBX_MAX_FDS 16
#define RZ__SBX_CG_MAX 3           /* memory, pids, cpu (v1: one dir each) */

/* A NULL-ended vector of malloc'ed strings (argv, envp). */
typedef struct rz__argv {
    char **v;
    size_t n, cap;
    bool failed;
} rz__argv;

RZ_HIDDEN void rz__argv_push_own(rz__argv *s, char *str);
RZ_HIDDEN void rz__argv_push(rz__argv *s, const char *str);
/* Entries may hold secrets: wiped before they are freed. */
RZ_HIDDEN void rz__argv_free(rz__argv *s);

/* What one sandboxed step gets. Limits of 0 take the defaults above. */
typedef struct rz__sbx_opts {
    const char *scratch;       /* host folder; a tmpfs at the same path */
    const char *output_path;   /* under scratch; bound writable */
    const char *moddir;        /* bound read-only; may be NULL */
    const char *exe;           /* the program; its folder bound if outside */
    int network;
    uint32_t memory_mb, pids_max, cpus, scratch_mb;
    /* bwrap: RZ_OUTPUT_DIR (<output_path's folder>/files, where the host
     * has it) a tmpfs of this many bytes, copied out after the step
     * (rz__sbx_files_attach, rz__sbx_files_copy); 0: bound from the host. */
    uint64_t files_cap;
    uint64_t file_cap;          /* each file's, for the copy out */
} rz__sbx_opts;

/* One step's sandbox, from prepare to finish. */
typedef struct rz__sbx {
    int fds[RZ__SBX_MAX_FDS];  /* handed to bwrap as 3, 4, ... */
    size_t n_fds;
    int procs[RZ__SBX_CG_MAX]; /* where the child writes "0" to join (join_file) */
    char *cg[RZ__SBX_CG_MAX];  /* the step's cgroup folders */
    int cg_kind[RZ__SBX_CG_MAX]; /* v1: the controller of each */
    size_t n_cg;
    uint32_t memory_mb, pids_max, scratch_mb;
    bool helper;               /* started by the helper, not bwrap */
    bool in_cell;              /* helper: cg[] are cell `cell`'s, borrowed */
    size_t cell;
    long long oom0, pids0;     /* the cell's counters before the step */
    int pid_ns;                /* helper: the step's pid namespace, held
                                * (its inode number its alone), or -1 */
    uint32_t cpus;
    char *moddir;              /* helper: the module folder, or NULL */
    int network;
    /* bwrap's RZ_OUTPUT_DIR tmpfs: its path, bwrap's --info-fd and
     * --block-fd (ours), the tmpfs's folder once opened; -1 when none. */
    char *files;
    int files_info, files_block, files_fd;
    uint64_t file_cap, files_cap;
} rz__sbx;

/* What the cgroup saw, read by rz__sbx_finish. */
typedef struct rz__sbx_report {
    bool oom;                  /* the kernel killed for memory */
    bool pids_hit;             /* a fork was refused at pids_max */
} rz__sbx_report;

/* 1 if bwrap works here with the layers it supports (probes once). */
RZ_HIDDEN int rz__sbx_available(void);
/* Tests only: the next probe stops once at `where` (RZ__SBX_HOLD_*),
 * writes what it holds there ("root") with its NUL to `note`, and goes
 * on once a byte can be read from `hold` or it ends. */
#define RZ__SBX_HOLD_WAITING 2   /* waiting for the helper's root */
RZ_HIDDEN void rz__sbx_test_probe_hold(int where, int note, int hold);
/* Helper mode: the program of the sandbox's check the next step asks for
 * (see "the helper's check" in sandbox.c and rz__sbx_launch), or NULL
 * once one has passed. rz__sbx_check_passed: one has (the error pipe said
 * RZ__SBX_CHECK_OK). rz__sbx_check_failed: one failed, for `why`
 * (its step unstarted, its cell given back): the helper's own step
 * decides whether the helper is kept or let go for bubblewrap; either way
 * the step is to be prepared again (RZ_OK; *unchecked: started without a
 * check, the helper's own step could not be tried), unless bubblewrap
 * cannot take over: then RZ_EEXEC, for this step and every later one.
 * rz__sbx_changes: how many times what the probe found changed so (0 at
 * first). */
RZ_HIDDEN const char *rz__sbx_check_exe(void);
/* Tests only: the check's program in a step's sandbox, and in the
 * helper's own step (NULL: "/bin/true"). */
RZ_HIDDEN void rz__sbx_test_check_exe(const char *in_step, const char *alone);
RZ_HIDDEN void rz__sbx_check_passed(void);
RZ_HIDDEN int rz__sbx_check_failed(int why, bool *unchecked);
/* `why` after RZ__SBX_CHECK_FAILED in words ("exit status 1"). */
RZ_HIDDEN void rz__sbx_check_why(int why, char *buf, size_t cap);
RZ_HIDDEN unsigned rz__sbx_changes(void);
/* 1 if a bwrap program is on PATH, usable or not. */
RZ_HIDDEN int rz__sbx_installed(void);
/* NULL when every layer works; else one line on what is missing here
 * ("no cgroup for steps: ..."), for a notice or a node's capabilities. */
RZ_HIDDEN const char *rz__sbx_status(void);
/* 1 if steps get a cgroup here. */
RZ_HIDDEN int rz__sbx_has_cgroup(void);

/* The bwrap command line up to "--" into argv, the descriptors it reads,
 * the step's cgroup; or, where the helper runs steps (s->helper), the
 * cgroup only and argv untouched. On error nothing is left to release
 * but *s. */
RZ_HIDDEN int rz__sbx_prepare(rz__sbx *s, rz__argv *argv,
                              const rz__sbx_opts *o);
/* In the forked child, after stdio is in place: cgroups joined, the
 * descriptors at 3... Async-signal-safe. Returns the first
 * descriptor number past them, or -1 with errno. */
RZ_HIDDEN int rz__sbx_enter(const rz__sbx *s);
/* Helper mode: start the step (exe, argv, envp, scratch, outputs and
 * rlimits from l; the rest from s). *pid is our child, its session leader.
 * RZ_EEXEC with the reason when it cannot start. */
RZ_HIDDEN int rz__sbx_spawn(pid_t *pid, rz__sbx *s, rz__sbx_launch *l,
                            const int stdio[3], int errpipe);
/* In the parent once the child runs: its copies of the descriptors. */
RZ_HIDDEN void rz__sbx_started(rz__sbx *s);
/* The pids of the cells' processes (helper mode), for tests. */
RZ_HIDDEN size_t rz__sbx_cell_pids(pid_t *out, size_t max);
/* Helper mode: the step uids' range [*first, *first + *count); 0 when the
 * helper is not used (count 0). */
RZ_HIDDEN void rz__sbx_uid_range(uint32_t *first, uint32_t *count);
/* Tests only (hidden; no environment reaches it): every idle cell freed,
 * and new cells made with cgroups (as the probe found) or without. */
RZ_HIDDEN void rz__sbx_test_cells(bool cgroups);
/* Tests only: called before each memory limit write (NULL otherwise); a
 * nonzero return fails the write with EBUSY, as cgroup v1's does while the
 * cell holds more than the new limit. */
RZ_HIDDEN extern int (*rz__sbx_mem_limit_seam)(void);
/* Tests only: called by rz__sbx_prepare once it chose the helper for a
 * step, before it takes the step's cell (NULL otherwise). */
RZ_HIDDEN extern void (*rz__sbx_cell_seam)(void);
/* bwrap with a files tmpfs, once bwrap runs: its folder opened from the
 * host (through /proc/PID/root, before the step starts: bwrap waits on
 * --block-fd), so it outlives the sandbox; then the step let go. RZ_OK
 * when there is none. Else the step is let go all the same, and the error
 * says why its files cannot be taken. */
RZ_HIDDEN int rz__sbx_files_attach(rz__sbx *s);
/* After the leader was reaped, before rz__sbx_finish: with `copy` (the
 * step succeeded) the tmpfs's tree copied into the host's <files> with
 * the helper's checks and caps. 0, or -1 with the line for the step's log
 * in `line`. A tmpfs found full is over the cap, copy or not (the step may
 * have ignored its ENOSPC, or failed on it). */
RZ_HIDDEN int rz__sbx_files_copy(rz__sbx *s, bool copy, char *line, size_t cap);
/* After the leader was reaped: what the cgroup saw, leftovers killed, the
 * cgroup removed. Safe to call more than once; NULL report fine. */
RZ_HIDDEN void rz__sbx_finish(rz__sbx *s, rz__sbx_report *r);

#endif

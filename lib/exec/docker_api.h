/* Docker Engine API client (internal): the docker adapter's only way to the
 * engine. HTTP over the engine's unix socket with libcurl; no docker CLI.
 * Works against Docker Engine and Podman's Docker-compatible service; the
 * API version is the API-Version header of GET /_ping (GET /version when an
 * engine sends none), capped at 1.41.
 *
 * Blocking and the caller's event loop:
 * - Control calls (version, info, inspect, create, start, stop, remove,
 *   list, logs) are short requests on a local socket; each is bounded by the
 *   client's timeout (rz__docker_set_timeout, 30 s by default) and runs on
 *   the caller's thread.
 * - The attempt itself never blocks: rz__docker_attach() opens a hijacked
 *   attach stream (Upgrade: tcp) before start. Its descriptor goes into the
 *   caller's poll(); rz__docker_stream_pump() feeds stdin, reads and
 *   demultiplexes stdout/stderr (capped) without blocking, and reports the
 *   end of the stream, which comes when the container exits. Then
 *   rz__docker_inspect() (which answers at once) gives the exit code and
 *   the OOM verdict; rz__docker_wait() is for callers that may block.
 * - A pull can take minutes: rz__docker_pull() blocks, reports progress
 *   through a callback that may abort it, and is bounded by a deadline; a
 *   poll-driven caller runs it on a worker thread with its own client.
 * A client (one curl handle, kept alive) is used by one thread at a time.
 *
 * Errors: negative rz_status, detail in rz_error_last(): RZ_ECONNECT (engine
 * unreachable: names the socket and DOCKER_HOST), RZ_ENOENT (no such image
 * or container, naming it), RZ_EINVALID (digest mismatch, bad reference),
 * RZ_EPROTOCOL (an answer we cannot read), RZ_ETIMEOUT, RZ_ECANCELED,
 * RZ_EEXEC (the engine refused: its message is quoted). */
#ifndef RZ_DOCKER_API_H
#define RZ_DOCKER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/internal.h"

/* The highest API version we speak; older engines are spoken to in theirs. */
#define RZ_DOCKER_API_MAX "1.41"

typedef struct rz__docker rz__docker;
typedef struct rz__docker_stream rz__docker_stream;

/* Endpoint: `override` (a socket path or unix://path) if given, else
 * DOCKER_HOST when it is unix://..., else /var/run/docker.sock, else
 * /run/podman/podman.sock (the first of the two that exists; the first when
 * neither does, so the error names it). Release with free. RZ_EUNSUPPORTED
 * for a DOCKER_HOST or override that is not a unix socket. */
RZ_HIDDEN int rz__docker_resolve(char **out, const char *override);

/* Connect to the engine at `override` (see rz__docker_resolve) and negotiate
 * the API version. RZ_ECONNECT when nothing answers there. */
RZ_HIDDEN int rz__docker_open(rz__docker **out, const char *override);
RZ_HIDDEN void rz__docker_close(rz__docker *d);
/* Per-request timeout of control calls, in milliseconds (0 = none). */
RZ_HIDDEN void rz__docker_set_timeout(rz__docker *d, long timeout_ms);
/* Borrowed, valid until rz__docker_close. */
RZ_HIDDEN const char *rz__docker_socket(const rz__docker *d);
RZ_HIDDEN const char *rz__docker_api_version(const rz__docker *d); /* "1.41" */
RZ_HIDDEN const char *rz__docker_engine(const rz__docker *d); /* "Podman Engine 4.3.1" */

/* What the engine offers for the node's capabilities (GET /info). */
typedef struct rz__docker_info {
    bool nvidia_runtime;   /* a runtime named nvidia* is configured */
    bool cdi;              /* the engine reports CDI spec dirs or CDI devices */
    int ncpu;
    int64_t mem_total;     /* bytes */
    char cgroup_driver[32];
} rz__docker_info;
RZ_HIDDEN int rz__docker_info_get(rz__docker *d, rz__docker_info *out);
/* The same from an /info body (RZ_EPROTOCOL when not a JSON object). CDI
 * counts when DiscoveredDevices lists an nvidia.com/gpu device, or, from
 * engines without that field, a CDISpecDirs folder holds an nvidia spec. */
RZ_HIDDEN int rz__docker_info_parse(const char *json, rz__docker_info *out);

/* How the engine gives a container GPUs: DeviceRequests for the NVIDIA
 * runtime (preferred where both), CDI device names, or not at all. A node
 * advertises GPU containers unless NONE. */
typedef enum rz__docker_gpu_mode {
    RZ__DOCKER_GPU_NONE = 0,
    RZ__DOCKER_GPU_NVIDIA,
    RZ__DOCKER_GPU_CDI
} rz__docker_gpu_mode;
RZ_HIDDEN rz__docker_gpu_mode rz__docker_gpu_mode_of(const rz__docker_info *info);

/* Image inspect. *out (may be NULL) receives the engine's JSON, release with
 * cJSON_Delete. RZ_ENOENT when the engine does not have the image. */
RZ_HIDDEN int rz__docker_image_inspect(rz__docker *d, const char *image,
                                       cJSON **out);
/* true if the inspected image's RepoDigests holds `digest` (sha256:...). */
RZ_HIDDEN bool rz__docker_image_has_digest(const cJSON *inspect,
                                           const char *digest);

/* Remove an image (forced); removing what is gone is OK. */
RZ_HIDDEN int rz__docker_image_remove(rz__docker *d, const char *image);

/* Splits "name[:tag][@sha256:hex]". *digest is NULL when none; release both
 * with free. RZ_EINVALID for an empty name or a malformed digest. */
RZ_HIDDEN int rz__docker_ref_split(const char *ref, char **name,
                                   char **digest);

/* The X-Registry-Auth value for a registry_auth credential: its JSON
 * ({"username", "password", "serveraddress"}; other fields dropped) or
 * "user:password", as base64url JSON (the Engine API's form). RZ_EINVALID
 * when it is neither; the message never quotes the value. Release with
 * rz__docker_auth_free, which wipes it. */
RZ_HIDDEN int rz__docker_registry_auth(char **out, const char *credential);
RZ_HIDDEN void rz__docker_auth_free(char *auth);
/* Every later pull through `d` sends the credential (NULL: none again). */
RZ_HIDDEN int rz__docker_set_registry_auth(rz__docker *d,
                                           const char *credential);

/* One line of the pull stream: status ("Downloading", ...), layer id (may be
 * ""), bytes done and total (0 when unknown). Return nonzero to abort. */
typedef int (*rz__docker_progress_fn)(void *ud, const char *status,
                                      const char *id, int64_t current,
                                      int64_t total);
/* Pull `ref` (a tag is added as :latest when none). With a pinned digest the
 * image is checked after the pull: RZ_EINVALID "digest mismatch" (and the
 * image removed again) when it does not carry it. `deadline_ms` is absolute
 * on rz__now_ms()'s clock (0 = none): RZ_ETIMEOUT past it; RZ_ECANCELED
 * when the callback aborts. RZ_ENOENT when the registry has no such image. */
RZ_HIDDEN int rz__docker_pull(rz__docker *d, const char *ref,
                              rz__docker_progress_fn cb, void *ud,
                              uint64_t deadline_ms);

/* A container to create. Lists are NULL-terminated; NULL means none. */
typedef struct rz__docker_spec {
    const char *name;               /* NULL: the engine names it */
    const char *image;
    const char *const *cmd;         /* argv; NULL: the image's CMD */
    const char *const *env;         /* "K=V" */
    const char *const *labels;      /* "k=v" */
    const char *const *binds;       /* "host:container[:ro]" (e.g. scratch at /rz) */
    const char *const *tmpfs;       /* "path[:options]" (e.g. /run/secrets) */
    const char *user;               /* "uid[:gid]"; NULL: the image's */
    const char *workdir;
    bool network;                   /* false: NetworkMode none */
    bool writable_rootfs;           /* false: ReadonlyRootfs */
    bool open_stdin;                /* stdin via rz__docker_stream */
    int64_t memory;                 /* bytes; 0 = no limit (swap = memory) */
    int64_t nano_cpus;              /* 1e9 per core; 0 = no limit */
    int64_t pids_limit;             /* 0 = engine default */
    const char *const *gpu_ids;     /* reserved device ids, never "all" */
    bool gpu_cdi;                   /* CDI names nvidia.com/gpu=ID instead of
                                       the nvidia runtime's device ids */
} rz__docker_spec;

/* The create request's JSON (for rz__docker_create; malloc'ed, NULL when
 * out of memory): GPUs only as spec->gpu_ids, never "all". */
RZ_HIDDEN char *rz__docker_create_body(const rz__docker_spec *spec);

/* Always: CapDrop ALL, no-new-privileges. *id: release with free. */
RZ_HIDDEN int rz__docker_create(rz__docker *d, const rz__docker_spec *spec,
                                char **id);
RZ_HIDDEN int rz__docker_start(rz__docker *d, const char *id);

/* Attach to a created (not yet started) container that has open_stdin;
 * then rz__docker_start it, then pump. `in` (copied; may be empty) is
 * written to its stdin and stdin closed (the connection half-closed: the
 * engine passes the EOF on, Podman 4.3 included). stdout and
 * stderr are kept up to `cap` bytes each (0 = 16 MiB); what is over is
 * dropped and counted. */
RZ_HIDDEN int rz__docker_attach(rz__docker_stream **out, rz__docker *d,
                                const char *id, const void *in, size_t in_len,
                                size_t cap);
/* Descriptor and poll events (POLLIN, plus POLLOUT while stdin is pending). */
RZ_HIDDEN int rz__docker_stream_fd(const rz__docker_stream *a);
RZ_HIDDEN short rz__docker_stream_events(const rz__docker_stream *a);
/* Move what can move without blocking. 0: more to come; 1: the stream
 * ended (the container exited); negative on error. */
RZ_HIDDEN int rz__docker_stream_pump(rz__docker_stream *a);
/* Pump until the stream ends or the absolute deadline (rz__now_ms) passes:
 * RZ_ETIMEOUT then. For callers that may block. */
RZ_HIDDEN int rz__docker_stream_run(rz__docker_stream *a, uint64_t deadline_ms);
/* Borrowed until free; NUL-terminated. *dropped: bytes over the cap. */
RZ_HIDDEN const char *rz__docker_stream_stdout(const rz__docker_stream *a,
                                               size_t *len, size_t *dropped);
RZ_HIDDEN const char *rz__docker_stream_stderr(const rz__docker_stream *a,
                                               size_t *len, size_t *dropped);
RZ_HIDDEN void rz__docker_stream_free(rz__docker_stream *a);
/* A service's stdout (docs/services.md): from now on, stdout is lines taken
 * with rz__docker_stream_out_take as they come; a line longer than the cap,
 * or lines not taken, are dropped (counted), never a reason to stop. */
RZ_HIDDEN void rz__docker_stream_lines(rz__docker_stream *a);
/* The whole stdout lines written since the last call (malloc'ed, NULL when
 * none); *dropped: bytes dropped so far. */
RZ_HIDDEN char *rz__docker_stream_out_take(rz__docker_stream *a, size_t *dropped);

/* Demultiplexer of the 8-byte-framed stdout/stderr stream (attach, logs). */
typedef struct rz__docker_demux {
    unsigned char hdr[8];
    size_t hdr_len;
    int stream;         /* of the current frame: 1 stdout, 2 stderr */
    uint32_t left;      /* bytes of the current frame still to come */
    rz__buf out, err;
    size_t cap, out_dropped, err_dropped;
    bool out_lines;     /* stdout is a service's line stream: over the cap,
                           what is held goes, not what comes */
} rz__docker_demux;
RZ_HIDDEN void rz__docker_demux_init(rz__docker_demux *m, size_t cap);
/* Feed bytes as they arrive; frames may be split anywhere. RZ_EPROTOCOL on
 * a header that is not a stdout/stderr frame. */
RZ_HIDDEN int rz__docker_demux_feed(rz__docker_demux *m, const void *p,
                                    size_t n);
RZ_HIDDEN void rz__docker_demux_free(rz__docker_demux *m);

/* Appends the whole lines of p[0..n) (`all`: the last one even without
 * its newline) to dst, less the error Podman 4.3 writes into an attach
 * stream's stderr when the connection ends first ("Error: read unixpacket
 * @->/proc/self/fd/N/attach: ...", "Error: write unixpacket ..."), which
 * is not the module's. Returns the
 * bytes consumed. */
RZ_HIDDEN size_t rz__docker_clean_stderr(rz__buf *dst, const char *p,
                                         size_t n, bool all);

/* Block until the container exits or timeout_ms passes (RZ_ETIMEOUT). */
RZ_HIDDEN int rz__docker_wait(rz__docker *d, const char *id, long timeout_ms,
                              int *exit_code);

typedef struct rz__docker_state {
    bool running;
    int exit_code;
    bool oom_killed;     /* the engine says so, or exit 137 under a memory
                            limit without rz__docker_stop (Podman here leaves
                            State.OOMKilled false), or memory.events counts
                            an oom_kill */
    int64_t memory;      /* HostConfig.Memory, bytes */
    char status[16];     /* "created", "running", "exited", ... */
    int pid;             /* State.Pid: its first process here; 0 none */
} rz__docker_state;
/* RZ_ENOENT when no such container. */
RZ_HIDDEN int rz__docker_inspect(rz__docker *d, const char *id,
                                 rz__docker_state *st);

/* stdout and stderr so far, demultiplexed, each capped at `cap` bytes
 * (0 = 16 MiB). Release m with rz__docker_demux_free. */
RZ_HIDDEN int rz__docker_logs(rz__docker *d, const char *id, size_t cap,
                              rz__docker_demux *m);

/* SIGTERM, then SIGKILL after grace_s seconds. A stopped container's exit
 * 137 is not read as OOM by rz__docker_inspect on this client. */
RZ_HIDDEN int rz__docker_stop(rz__docker *d, const char *id, int grace_s);
/* Send a signal ("TERM", "KILL") and return at once; a container that is
 * not running is fine. Like stop, its exit 137 is not read as OOM. */
RZ_HIDDEN int rz__docker_kill(rz__docker *d, const char *id,
                              const char *signal);
/* Force-remove with its anonymous volumes; removing what is gone is OK. */
RZ_HIDDEN int rz__docker_remove(rz__docker *d, const char *id);

/* Ids of every container (running or not) carrying label "k=v" or "k".
 * Release with rz__docker_ids_free. */
RZ_HIDDEN int rz__docker_list(rz__docker *d, const char *label, char ***ids,
                              size_t *n);
RZ_HIDDEN void rz__docker_ids_free(char **ids, size_t n);
/* The same, with each container's label `key` in (*vals)[i] ("" when it
 * has none); release both with rz__docker_ids_free. */
RZ_HIDDEN int rz__docker_list_labels(rz__docker *d, const char *label,
                                     const char *key, char ***ids,
                                     char ***vals, size_t *n);

#endif

/* A service's readiness check (docs/services.md, `ready: {tcp|http}`):
 * a TCP connect or an HTTP GET, made from inside the step's network
 * namespace when it has one of its own (a sandboxed step without network,
 * a container), so a port the step opens on its own loopback is reached.
 *
 * A check is written as one string: "tcp:PORT" or an http:// URL whose host
 * is an IPv4 address or "localhost" (no name lookup: the check runs where
 * the step's resolver may not). */
#ifndef RZ_EXEC_READY_H
#define RZ_EXEC_READY_H

#include "common/ready_check.h"

/* One try in progress, driven without blocking (the embedded runner's loop
 * must not wait on a step's port): started, then stepped whenever its fd
 * is ready or the loop passes by, until it passes, fails or its deadline
 * passes. Plain data; rz__ready_probe_end closes it (and accepts one never
 * started, fd -1). */
typedef struct rz__ready_probe {
    int fd, err;              /* err: connect's errno when it failed at once */
    bool sent;                /* the connect finished (and for http, GET sent) */
    uint64_t deadline;        /* rz__now_ms() */
    size_t got;
    char line[64];            /* the start of the HTTP answer */
} rz__ready_probe;

#define RZ__READY_PROBE_INIT { -1, 0, false, 0, 0, { 0 } }

/* Start a try of at most timeout_ms: 0 started (step it), -1 cannot be
 * tried at all (the step's network namespace cannot be entered), with why.
 * `net_pid`: a process in the step's network namespace, or 0 for this
 * process's own. */
RZ_HIDDEN int rz__ready_probe_start(rz__ready_probe *p, const rz__ready_target *t,
                                    int net_pid, int timeout_ms,
                                    char *why, size_t why_len);

/* Advance it without blocking: 1 passed; 0 not (yet), with why (the try is
 * over: end it); 2 still under way. */
RZ_HIDDEN int rz__ready_probe_step(rz__ready_probe *p, const rz__ready_target *t,
                                   char *why, size_t why_len);

RZ_HIDDEN void rz__ready_probe_end(rz__ready_probe *p);

/* One whole try, waiting at most timeout_ms: 1 passed; 0 not (yet), with
 * why; -1 cannot be tried at all, with why. */
RZ_HIDDEN int rz__ready_try(const rz__ready_target *t, int net_pid,
                            int timeout_ms, char *why, size_t why_len);

#endif

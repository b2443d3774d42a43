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

/* One try of the check, waiting at most timeout_ms: 1 passed; 0 not (yet),
 * with why; -1 cannot be tried at all (the step's network namespace cannot
 * be entered), with why. `net_pid`: a process in the step's network
 * namespace, or 0 for this process's own. */
RZ_HIDDEN int rz__ready_try(const rz__ready_target *t, int net_pid,
                            int timeout_ms, char *why, size_t why_len);

#endif

/* A service's readiness check as written (docs/services.md, `ready:
 * {tcp|http}`): one string, "tcp:PORT" or an http:// URL whose host is an
 * IPv4 address or "localhost" (no name lookup: the check runs where the
 * step's resolver may not). Parsed here, for the flow's validation and
 * for exec/ready.h, which makes the check. */
#ifndef RZ_COMMON_READY_CHECK_H
#define RZ_COMMON_READY_CHECK_H

#include "common/internal.h"

#define RZ__READY_DEFAULT_TIMEOUT_S 60u

typedef struct rz__ready_target {
    bool http;
    char host[64];       /* dotted IPv4 */
    uint16_t port;
    char path[512];      /* the HTTP request target, "/" at least */
} rz__ready_target;

/* Parse a check; RZ_OK, or RZ_EINVALID with why (one line) in `why`. */
RZ_HIDDEN int rz__ready_parse(const char *check, rz__ready_target *t,
                              char *why, size_t why_len);

#endif

/* Limits of the API that rhizos-node and rhizos-orchestrator both hold to
 * (docs/api.md): one definition, so that the two cannot drift apart. */
#ifndef RHIZOS_SERVER_APILIMITS_H
#define RHIZOS_SERVER_APILIMITS_H

/* A node's poll says at most this many ended attempts: the orchestrator
 * answers a longer list with a 400, so the node never sends more. */
#define API_POLL_ENDED_MAX 64u

#endif

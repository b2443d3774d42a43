/* File outputs on the network (blobs.c): this node's blob store and the
 * orchestrator's, in parts. */
#ifndef RHIZOS_NODE_BLOBS_H
#define RHIZOS_NODE_BLOBS_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;
typedef struct agent agent;

/* DATA/blobs: the attempts' blob store. */
void node_blobs_dir(const agent *a, char *out, size_t cap);
/* Each file job `job`'s request names in its inputs, fetched into the blob
 * store unless there already (digest checked). 0, or -1 with why. */
int node_blobs_fetch(agent *a, uint64_t job, const struct cJSON *request,
                     char *why, size_t n);
/* Each `$file` of the outputs (JSON text, replaced) uploaded for job `job`
 * and left without this node's path. 0, or -1 with why. */
int node_blobs_upload(agent *a, uint64_t job, char **outputs, char *why, size_t n);
/* The files job `job` fetched or made, no longer its: each that no other
 * running job holds leaves the store. */
void node_blobs_release(agent *a, uint64_t job);

#endif

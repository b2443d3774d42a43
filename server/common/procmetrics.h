/* The standard process_* metrics, shared by rhizos-orchestrator's and
 * rhizos-node's /metrics (names as Prometheus client libraries export
 * them, so dashboards made for other programs work unchanged). */
#ifndef RHIZOS_PROCMETRICS_H
#define RHIZOS_PROCMETRICS_H

struct evbuffer;

/* Append start time, CPU, memory and descriptor metrics to `b`; the
 * process started `start_s` seconds after the epoch. */
void procmetrics_print(struct evbuffer *b, double start_s);

#endif

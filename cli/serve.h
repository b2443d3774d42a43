/* The parts of `rhizos flow serve` (serve.c: cron and the loop;
 * serve_hook.c: webhooks), docs/triggers.md "On one machine". */
#ifndef RZ_CLI_SERVE_H
#define RZ_CLI_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

/* A webhook trigger served at POST /hooks/<flow>/<name>. */
typedef struct shook {
    const char *file;
    char flow[128], name[80];
    size_t max_body;
    rz_secret *key;             /* its HMAC key, from the vault */
    bool wants_trigger;         /* the flow declares input `trigger` */
} shook;

/* A flow or event trigger (serve_follow.c): the flow runs when a run of
 * served flow `source` ends with `status`, or when event `source` is
 * published (rhizos flow publish). */
typedef struct sfollow {
    const char *file;
    char flow[128], name[80];
    bool event;                 /* else a flow trigger */
    char source[128];
    char status[16];            /* succeeded | failed | any */
    bool wants_trigger;
} sfollow;

/* Now (unix seconds; tests shift it: RHIZOS_TEST_SERVE_CLOCK). */
int64_t serve_now(void);
/* `text` to `path` whole (temporary file, synced, renamed, folder synced). */
int serve_write_synced(const char *path, const char *text);
/* Has run `id` a record in the run store under `data`? */
bool serve_run_recorded(const char *data, const char *id);
/* `flow run FILE` (of flow `flow`) as run `id` with inputs `inputs_json`,
 * in a child that dies with the server; its pid, or -1 (said on stderr).
 * The child is remembered until serve_child_end. With `recorded`: a pipe's
 * read end there (the caller's to close), which gets a byte once the run
 * is recorded, or its end when the child ends before (-1: no pipe). */
pid_t serve_spawn(cli *c, const char *file, const char *flow, const char *id,
                  const char *inputs_json, int *recorded);
/* Child `pid` was reaped: its flow and run id (true when it was one of
 * serve_spawn's). */
bool serve_child_end(pid_t pid, char *flow, size_t fcap, char *run, size_t rcap);

/* serve_follow.c */
/* Refuse a circle of flow triggers among the served flows (said on
 * stderr: -1); warn of a flow followed that is not served. */
int serve_follow_check(const sfollow *f, size_t n, const char *const *served, size_t n_served);
/* A served run ended: when a follower waits for its flow, its end is
 * spooled (DATA/serve/spool, synced) for serve_follow_pass. */
void serve_follow_ended(const sfollow *f, size_t n, const char *data, const char *flow,
                        const char *run);
/* Run what the spool asks (flow ends, published events), each (follower,
 * spooled item) once across kill -9; the items are then removed. */
void serve_follow_pass(cli *c, const sfollow *f, size_t n, const char *data);
/* Webhook call records older than their window: removed (serve_hook.c). */
void serve_hook_expire(const shook *h, size_t n, const char *data);

/* serve_hook.c */
int serve_hook_listen(const char *spec);
/* Answer one call on listening socket `lfd`. */
void serve_hook_take(cli *c, int lfd, const shook *h, size_t n, const char *data);
/* Deliveries taken but never run (a crash): run them now. */
void serve_hook_recover(cli *c, const shook *h, size_t n, const char *data);

#endif

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

/* Now (unix seconds; tests shift it: RHIZOS_TEST_SERVE_CLOCK). */
int64_t serve_now(void);
/* `text` to `path` whole (temporary file, synced, renamed, folder synced). */
int serve_write_synced(const char *path, const char *text);
/* Has run `id` a record in the run store under `data`? */
bool serve_run_recorded(const char *data, const char *id);
/* `flow run FILE` as run `id` with inputs `inputs_json`, in a child that
 * dies with the server; its pid, or -1 (said on stderr). */
pid_t serve_spawn(cli *c, const char *file, const char *id, const char *inputs_json);

/* serve_hook.c */
int serve_hook_listen(const char *spec);
/* Answer one call on listening socket `lfd`. */
void serve_hook_take(cli *c, int lfd, const shook *h, size_t n, const char *data);
/* Deliveries taken but never run (a crash): run them now. */
void serve_hook_recover(cli *c, const shook *h, size_t n, const char *data);

#endif

/* rhizos-ui: the web console on one machine, over the embedded runner and
 * the run history of --data (docs/console.md "On one machine"). The `rhizos
 * ui` command execs it, so libevent loads only for this command. */
#ifndef RHIZOS_UI_H
#define RHIZOS_UI_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "rhizos/rhizos.h"

/* ---- runs.c: runs started here (a runner thread each) and the history ---- */
typedef struct ui_runs ui_runs;

typedef struct ui_runs_opts {
    const char *data_dir;     /* the run store (as `rhizos flow run --data`) */
    unsigned jobs;            /* parallel steps per run; 0: cores */
    int sandbox;              /* 1 auto, 0 never */
    const char *container_host;
    const rz_prices *prices;  /* may be NULL: runs not priced */
} ui_runs_opts;

/* NULL with the reason said on stderr. */
ui_runs *ui_runs_open(const ui_runs_opts *opts);
/* Cancels what still runs, waits for it, closes the store. */
void ui_runs_close(ui_runs *rs);

/* Start a validated flow (taken, also on failure) with its inputs (a JSON
 * object text or NULL); its id in id[64]. RZ_OK, or an error with
 * rz_error_last(). */
int ui_runs_start(ui_runs *rs, rz_flow *flow, const char *inputs_json, char id[64]);
/* {"flows":[{id, flow, status, started_ms, finished_ms, steps}]}, newest
 * first, at most `limit`. NULL: out of memory or the store failed. */
cJSON *ui_runs_list(ui_runs *rs, size_t limit);
/* A run's status (rz_run_to_json's, each step's live log lines as "log"
 * while it has no other) into *out (malloc'ed); *done when it cannot
 * change any more. RZ_ENOENT when unknown. */
int ui_runs_status(ui_runs *rs, const char *id, char **out, bool *done);
/* What one live view has been sent of a run. */
typedef struct ui_watch ui_watch;
ui_watch *ui_watch_new(void);
void ui_watch_free(ui_watch *w);
/* The news since w's last call: *status (malloc'ed, without the steps'
 * logs) when the status changed or the run is *done, else NULL; each
 * step's log lines not sent before added to `logs` as "step": "lines".
 * Bounded and linear: nothing is copied or parsed for a tick with no news,
 * and a step's lines are at most its last RZ_RUN_LOG_MAX bytes. RZ_ENOENT
 * when unknown. */
int ui_runs_watch(ui_runs *rs, const char *id, ui_watch *w, char **status,
                  cJSON *logs, bool *done);
/* Ask a run started here to stop. RZ_ENOENT unknown, RZ_ESTATE finished
 * or not started by this process. */
int ui_runs_cancel(ui_runs *rs, const char *id);
size_t ui_runs_active(ui_runs *rs);

#endif

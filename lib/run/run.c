/* The run state machine: one flow execution, deterministic, time passed in.
 *
 * Rules (see run.h):
 * - A step is examined once all its deps have settled. Its `when` is then
 *   evaluated against upstream outputs and flow inputs; false skips it.
 * - A step with a dep that was skipped, or that failed with on_failure: fail,
 *   is skipped at once, and so on down the graph. A dep that failed with
 *   on_failure: continue counts as done; its outputs are simply absent.
 *   A step with another `join:` counts its deps' outcomes instead and is
 *   decided once all have settled (none_failed: at the first failure).
 * - Independent branches keep running after a failure; the run ends when
 *   every step has settled: CANCELLED if cancelled, else FAILED if a step
 *   failed with on_failure: fail, else SUCCEEDED.
 * - A failure (reported, timed out, or bad outputs) retries while attempts
 *   remain: BACKOFF until the retry falls due, then READY again.
 *
 * Cost: the dependants are one CSR array and every step settles exactly once,
 * so a whole run is O(V + E) plus the work its caller asks for. Propagation
 * uses an explicit stack, never recursion, so long chains are safe. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "flow/model.h"
#include "module/module_impl.h"
#include "run/changes.h"
#include "run/service.h"
#include "run/usage.h"
#include "rhizos/plan.h"
#include "rhizos/run.h"

/* Tasks (steps and for_each elements) a run may hold: a task's place in
 * the heap of timed tasks is kept in 32 bits. */
#define RZ__RUN_TASKS_MAX ((size_t)UINT32_MAX - 1)

typedef struct step_rt {
    rz_step_state state;
    uint32_t attempts;
    size_t waiting;        /* deps not settled yet */
    uint64_t due_ms;       /* BACKOFF: retry time; RUNNING: deadline */
    bool has_deadline;     /* RUNNING with a timeout */
    bool in_ready;         /* listed in run->ready */
    unsigned char in_changed;   /* bit k: listed in run->changed[k] */
    uint32_t timed_at;     /* 1 + its place in the run->timed heap, 0 none
                              (tasks stay under RZ__RUN_TASKS_MAX) */
    char *error;           /* failure or skip reason, or NULL */
    char *log;             /* stderr tail of the last attempt, or NULL */
    char *warning;         /* outputs off the manifest ("outputs_check":
                              "warn"), or NULL */
    cJSON *outputs;        /* object once succeeded, else NULL */
    rz__expr *when;        /* parsed condition or NULL */
    uint64_t started_ms;   /* first attempt's start */
    uint64_t ended_ms;     /* last attempt's end (success or failure) */
    cJSON *field;          /* last steps.X.<field> value handed to an
                              expression (resolved values are borrowed) */
    uint32_t n_ok;         /* join: settled deps that succeeded */
    uint32_t n_failed;     /* join: settled deps that failed, or were
                              skipped because a failure upstream */
    bool upstream_failed;  /* SKIPPED because a failure upstream */
    /* for_each. An element (a task past the steps) runs its parent step's
     * module once, for one value; the parent is RUNNING while its elements
     * run and settles when the last one has (finish_map). */
    size_t parent;         /* element: its step (unused for a step) */
    uint32_t index;        /* element: its place in the list */
    cJSON *value;          /* element: each.value */
    cJSON *indices;        /* element of a nested map: its place at each
                              level (each.indices); NULL in a flat one */
    cJSON *shape;          /* parent of a nested map: the lists with each
                              element a null, to put outputs back in */
    size_t first_el, n_el; /* parent: its elements' tasks */
    size_t next_el;        /* parent: next element to make READY */
    size_t el_active;      /* parent: elements made READY, not settled */
    size_t el_done;        /* parent: elements settled */
    bool mapped;           /* parent: its list was expanded */
    bool el_stop;          /* parent: an element failed (on_failure: fail)
                              or the map was failed: start no more */
    /* Services and events (run/service.h). An event step's elements are
     * made one by one as events come, among other tasks: `els` lists
     * them (a for_each step's are first_el.. in a row). */
    bool told;             /* service: its dependants were told it is ready */
    uint32_t emitted;      /* service: events emitted (their ids) */
    uint32_t ev_attempt, ev_seq;   /* service: the last event taken, as its
                                      node numbered it (repeats dropped) */
    rz__map *keys;         /* service: the event keys it gave (key_text[i]) */
    char **key_text;
    size_t n_keys, cap_keys;
    cJSON *kept_ev;        /* event step not yet running: events kept */
    size_t *els, cap_els;  /* event step: its elements' tasks */
} step_rt;

struct rz_run {
    const rz_flow *flow;
    char *id;
    cJSON *inputs;         /* flow inputs with defaults applied */
    uint64_t created_ms;
    size_t n;              /* steps; tasks [0, n) are the steps */
    size_t n_tasks, cap;   /* steps and for_each elements made so far */
    step_rt *st;           /* n_tasks entries */
    size_t cur;            /* the element an evaluation is for (each.*),
                              RZ_NPOS none */
    cJSON *each_field;     /* last each.* value handed to an expression */
    size_t *succ_off, *succ;    /* dependants, CSR */
    size_t *conn_off, *conn;    /* incoming builder connections, CSR */
    /* Work lists hold each step at most once (the in_* flags); entries whose
     * state moved on are dropped lazily when the list is next walked. */
    size_t *ready; size_t n_ready;
    size_t ready_head;          /* ready[0, ready_head) dropped: not listed */
    size_t n_ready_live;        /* listed entries that are READY */
    size_t *timed; size_t n_timed;   /* a min-heap by (due_ms, task) of
                                        the tasks timed_live holds */
    size_t *stack;              /* settle propagation, n slots */
    size_t *scratch;            /* tick's expired steps, n slots */
    /* Steps whose state changed since rz__run_take_changes last took them
     * for reader k, each once: a caller follows the run in O(changes), not
     * O(steps). `taken` is the list it took last, kept until it takes
     * again. Two readers: an engine and the runner that shares its run. */
    size_t *changed[RZ__RUN_READERS]; size_t n_changed[RZ__RUN_READERS];
    size_t *taken[RZ__RUN_READERS];
    size_t n_started;           /* RUNNING tasks that are not for_each steps */
    size_t settled;
    bool cancelled;
    bool fatal;                 /* a step failed with on_failure: fail */
    cJSON *flow_field;          /* last flow.<field> handed to an expression */
    cJSON *outputs;             /* the flow's declared outputs, evaluated when
                                   the last step settles; NULL until then */
    char *outputs_error;        /* why they could not be, or NULL */
    /* What each task used and cost, where an embedded runner measured it
     * (lib/run/usage.h); NULL until the first, then n_usage entries. */
    struct usage *usage;
    size_t n_usage;
};

/* A task's run time (every attempt) and its price; `priced` false when no
 * node class of the tables fit its module. */
typedef struct usage {
    uint64_t run_ms, micros;
    bool used, priced;
} usage;

static const char *const step_names[] = {
    "pending", "ready", "backoff", "running", "succeeded", "failed",
    "skipped", "cancelled",
};

static const char *const run_names[] = {
    "running", "succeeded", "failed", "cancelled",
};

const char *rz_step_state_name(rz_step_state s)
{
    return (unsigned)s < RZ_ARRAY_LEN(step_names) ? step_names[s] : "unknown";
}

const char *rz_run_state_name(rz_run_state s)
{
    return (unsigned)s < RZ_ARRAY_LEN(run_names) ? run_names[s] : "unknown";
}


static const rz__step *step_of(const rz_run *r, size_t i)
{
    return &r->flow->steps[i < r->n ? i : r->st[i].parent];
}

static bool is_element(const rz_run *r, size_t i)
{
    return i >= r->n;
}

/* The task of element k of step p. */
static size_t el_task(const rz_run *r, size_t p, size_t k)
{
    const step_rt *ps = &r->st[p];
    return ps->els ? ps->els[k] : ps->first_el + k;
}

/* Step i listens to events (on: event); its source, or RZ_NPOS. */
static size_t event_source(const rz_run *r, size_t i)
{
    const rz__step *st = &r->flow->steps[i];
    return st->on_step ? rz_flow_step_find(r->flow, st->on_step) : RZ_NPOS;
}

/* ---- Expressions ---------------------------------------------------------- */

/* steps.X.status, .error, .attempts, .duration_ms: how step i ran. The
 * value lives in the step's slot until the next such reference, which is
 * long enough: the evaluator copies a resolved value at once. */
static const cJSON *run_field(const rz_run *r, size_t i, rz__ref_field f)
{
    step_rt *s = &r->st[i];
    cJSON_Delete(s->field);
    s->field = NULL;
    switch (f) {
    case RZ_FIELD_STATUS:
        s->field = cJSON_CreateString(rz_step_state_name(s->state));
        break;
    case RZ_FIELD_ERROR:
        s->field = s->error ? cJSON_CreateString(s->error) : cJSON_CreateNull();
        break;
    case RZ_FIELD_ATTEMPTS:
        s->field = cJSON_CreateNumber(s->attempts);
        break;
    case RZ_FIELD_DURATION_MS:
        s->field = cJSON_CreateNumber(
            s->attempts && s->ended_ms > s->started_ms
                ? (double)(s->ended_ms - s->started_ms) : 0);
        break;
    default:
        break;
    }
    return s->field;
}

/* The run's status as the on_exit step sees it (the other steps have all
 * settled): what it would end with if on_exit succeeded. */
static const char *flow_status(const rz_run *r)
{
    return r->cancelled ? "cancelled" : r->fatal ? "failed" : "succeeded";
}

/* Ids of the steps that failed (on_failure: continue ones too), in flow
 * order; the on_exit step is not among them. */
static cJSON *failed_steps(const rz_run *r)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < r->n; i++)
        if (r->st[i].state == RZ_STEP_FAILED && !step_of(r, i)->is_exit &&
            !cJSON_AddItemToArray(a, cJSON_CreateString(step_of(r, i)->id))) {
            cJSON_Delete(a);
            return NULL;
        }
    return a;
}

/* flow.status, flow.failed_steps; lives in the run's slot like run_field. */
static const cJSON *flow_ref(const rz_run *r, const char *name)
{
    rz_run *w = (rz_run *)r;   /* a cache only: what the run is stays put */
    cJSON_Delete(w->flow_field);
    w->flow_field = strcmp(name, "status") == 0 ? cJSON_CreateString(flow_status(r))
                                                : failed_steps(r);
    return w->flow_field;
}

/* item (each.value), index (each.index: in the innermost list of a
 * nested map) and indices (the place at every level) of the element being
 * evaluated (null outside one). */
static const cJSON *each_ref(const rz_run *r, const char *name)
{
    if (r->cur == RZ_NPOS || !is_element(r, r->cur))
        return NULL;
    const step_rt *el = &r->st[r->cur];
    bool all = strcmp(name, "indices") == 0;
    if (!all && strcmp(name, "index") != 0)
        return el->value;
    int depth = el->indices ? cJSON_GetArraySize(el->indices) : 0;
    if (depth && !all)
        return cJSON_GetArrayItem(el->indices, depth - 1);
    if (depth)
        return el->indices;
    rz_run *w = (rz_run *)r;   /* a cache only, as flow_ref's */
    cJSON_Delete(w->each_field);
    w->each_field = all ? cJSON_CreateArray() : cJSON_CreateNumber(el->index);
    if (all && w->each_field)
        cJSON_AddItemToArray(w->each_field, cJSON_CreateNumber(el->index));
    return w->each_field;
}

/* event.id|name|data of the event element being evaluated. */
static const cJSON *event_ref(const rz_run *r, const char *name)
{
    if (r->cur == RZ_NPOS || !is_element(r, r->cur))
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(r->st[r->cur].value, name);
}

static const cJSON *resolve_ref(const rz__ref *ref, void *ud)
{
    const rz_run *r = ud;
    if (ref->kind == RZ_REF_EVENT)
        return event_ref(r, ref->name);
    if (ref->kind == RZ_REF_EACH)
        return each_ref(r, ref->name);
    if (ref->kind == RZ_REF_FLOW)
        return flow_ref(r, ref->name);
    if (ref->kind == RZ_REF_INPUT)
        return cJSON_GetObjectItemCaseSensitive(r->inputs, ref->name);
    if (ref->kind != RZ_REF_STEP)
        return NULL;
    size_t i = rz_flow_step_find(r->flow, ref->name);
    if (i == RZ_NPOS || i >= r->n)
        return NULL;
    if (ref->field != RZ_FIELD_OUTPUTS)
        return run_field(r, i, ref->field);
    if (!r->st[i].outputs)
        return NULL;   /* not run, skipped or failed: absent */
    if (!ref->port)
        return r->st[i].outputs;
    return cJSON_GetObjectItemCaseSensitive(r->st[i].outputs, ref->port);
}

/* Re-raise the last error with context in front of its message. */
static int error_in(int rc, const char *step, const char *where)
{
    char msg[sizeof rz_error_last()->message];
    memcpy(msg, rz_error_last()->message, sizeof msg);
    return rz__error(rc, "step '%s': %s: %s", step, where, msg);
}

static int eval_text(const rz_run *r, const char *text, cJSON **out)
{
    *out = NULL;
    if (!strstr(text, "${{")) {
        *out = cJSON_CreateString(text);
        return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    }
    rz__expr *e = NULL;
    char err[256] = "";
    size_t off = 0;
    int rc = rz__expr_parse(&e, text, false, err, sizeof err, &off);
    if (rc == RZ_ENOMEM)
        return rc;   /* not the text's fault */
    if (rc != RZ_OK)
        return rz__error(RZ_EEXPR, "%s (at offset %zu of \"%s\")",
                         err[0] ? err : "malformed expression", off, text);
    rc = rz__expr_eval(e, resolve_ref, (void *)r, out);
    rz__expr_free(e);
    return rc;
}

/* Evaluate every string inside `v` as a template; other values are copied. */
static int eval_value(const rz_run *r, const cJSON *v, cJSON **out)
{
    *out = NULL;
    if (cJSON_IsString(v))
        return eval_text(r, v->valuestring, out);
    if (!cJSON_IsArray(v) && !cJSON_IsObject(v)) {
        *out = cJSON_Duplicate(v, false);
        return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
    }
    cJSON *c = cJSON_IsArray(v) ? cJSON_CreateArray() : cJSON_CreateObject();
    if (!c)
        return rz__error(RZ_ENOMEM, "out of memory");
    const cJSON *child;
    cJSON_ArrayForEach(child, v) {
        cJSON *x;
        int rc = eval_value(r, child, &x);
        bool ok = rc == RZ_OK &&
                  (cJSON_IsArray(v) ? cJSON_AddItemToArray(c, x)
                                    : cJSON_AddItemToObject(c, child->string, x));
        if (!ok) {
            if (rc == RZ_OK)
                cJSON_Delete(x);
            cJSON_Delete(c);
            return rc != RZ_OK ? rc : rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    *out = c;
    return RZ_OK;
}

/* ---- Deadlines ------------------------------------------------------------ */

/* The tasks with a time to keep (a retry's, a deadline) are a binary min-heap
 * by (due_ms, task), kept exact as states and times change (timed_sync): the
 * next wake-up is its top, and a tick or sweep takes only the entries due,
 * in that order, so a pass costs O(log n) a change, not O(tasks timed). */
static bool timed_live(const step_rt *s)
{
    return s->state == RZ_STEP_BACKOFF ||
           (s->state == RZ_STEP_RUNNING && s->has_deadline);
}

static bool timed_before(const rz_run *r, size_t a, size_t b)
{
    uint64_t x = r->st[a].due_ms, y = r->st[b].due_ms;
    return x < y || (x == y && a < b);
}

static void timed_put(rz_run *r, size_t pos, size_t i)
{
    r->timed[pos] = i;
    r->st[i].timed_at = (uint32_t)(pos + 1);
}

/* Task i, at heap place pos, moved to where its key puts it. */
static void timed_fix(rz_run *r, size_t pos)
{
    size_t i = r->timed[pos];
    while (pos > 0 && timed_before(r, i, r->timed[(pos - 1) / 2])) {
        timed_put(r, pos, r->timed[(pos - 1) / 2]);
        pos = (pos - 1) / 2;
    }
    for (size_t c; (c = 2 * pos + 1) < r->n_timed; pos = c) {
        if (c + 1 < r->n_timed && timed_before(r, r->timed[c + 1], r->timed[c]))
            c++;
        if (!timed_before(r, r->timed[c], i))
            break;
        timed_put(r, pos, r->timed[c]);
    }
    timed_put(r, pos, i);
}

static void timed_remove(rz_run *r, size_t i)
{
    size_t pos = r->st[i].timed_at - 1, last = r->timed[--r->n_timed];
    r->st[i].timed_at = 0;
    if (pos < r->n_timed) {
        r->timed[pos] = last;
        timed_fix(r, pos);
    }
}

/* Task i in the heap, at its due_ms's place, exactly while timed_live:
 * called after every change of its state, deadline or due_ms. */
static void timed_sync(rz_run *r, size_t i)
{
    step_rt *s = &r->st[i];
    if (!timed_live(s)) {
        if (s->timed_at)
            timed_remove(r, i);
        return;
    }
    if (!s->timed_at)
        r->timed[r->n_timed++] = i;
    timed_fix(r, s->timed_at ? s->timed_at - 1 : r->n_timed - 1);
}

/* The tasks due by now_ms taken out of the heap into r->scratch, earliest
 * first; the caller acts on them and then hands each to timed_sync, which
 * puts back those still timed. Returns how many. */
static size_t timed_take_due(rz_run *r, uint64_t now_ms)
{
    size_t n = 0;
    while (r->n_timed && r->st[r->timed[0]].due_ms <= now_ms) {
        size_t i = r->timed[0];
        timed_remove(r, i);
        r->scratch[n++] = i;
    }
    return n;
}

/* ---- Work lists ----------------------------------------------------------- */

/* Every change of a step's state goes through here. */
static void set_state(rz_run *r, size_t i, rz_step_state st)
{
    if (i >= r->n || !step_of(r, i)->for_each)   /* a task something runs */
        r->n_started += (st == RZ_STEP_RUNNING) - (r->st[i].state == RZ_STEP_RUNNING);
    if (r->st[i].in_ready)
        r->n_ready_live += (st == RZ_STEP_READY) - (r->st[i].state == RZ_STEP_READY);
    r->st[i].state = st;
    for (unsigned k = 0; k < RZ__RUN_READERS; k++)
        if (!(r->st[i].in_changed & 1u << k)) {
            r->st[i].in_changed |= (unsigned char)(1u << k);
            r->changed[k][r->n_changed[k]++] = i;
        }
    timed_sync(r, i);
}

/* The dropped head of the ready list given back. */
static void ready_shift(rz_run *r)
{
    memmove(r->ready, r->ready + r->ready_head,
            (r->n_ready - r->ready_head) * sizeof *r->ready);
    r->n_ready -= r->ready_head;
    r->ready_head = 0;
}

static void push_ready(rz_run *r, size_t i)
{
    set_state(r, i, RZ_STEP_READY);
    if (!r->st[i].in_ready) {
        if (r->n_ready == r->cap)
            ready_shift(r);   /* the listed ones are each task once: room */
        r->st[i].in_ready = true;
        r->ready[r->n_ready++] = i;
        r->n_ready_live++;
    }
}

/* ---- Settling ------------------------------------------------------------- */

static void set_error(step_rt *s, char *reason)
{
    free(s->error);
    s->error = reason;
}

/* Why `d` cannot run because of its settled dep `u`; NULL if it still may. */
static char *block_reason(const rz_run *r, size_t u)
{
    const char *id = step_of(r, u)->id;
    switch (r->st[u].state) {
    case RZ_STEP_SKIPPED:
        return rz__asprintf("upstream step '%s' was skipped", id);
    case RZ_STEP_CANCELLED:
        return rz__asprintf("upstream step '%s' was cancelled", id);
    case RZ_STEP_FAILED:
        if (step_of(r, u)->on_failure == RZ_ON_FAILURE_CONTINUE)
            return NULL;
        return rz__asprintf("upstream step '%s' failed", id);
    default:
        return NULL;
    }
}

static bool blocks(const rz_run *r, size_t u)
{
    rz_step_state s = r->st[u].state;
    return s == RZ_STEP_SKIPPED || s == RZ_STEP_CANCELLED ||
           (s == RZ_STEP_FAILED &&
            step_of(r, u)->on_failure != RZ_ON_FAILURE_CONTINUE);
}

static bool expand(rz_run *r, size_t i);

/* `i` may run: READY, or a for_each step's elements made. Returns true if
 * `i` settled instead. */
static bool listen(rz_run *r, size_t i);

static bool go(rz_run *r, size_t i)
{
    if (step_of(r, i)->for_each)
        return expand(r, i);
    if (step_of(r, i)->on_step)
        return listen(r, i);
    push_ready(r, i);
    return false;
}

/* All deps of `i` are done: evaluate `when`. Returns true if `i` settled
 * (skipped, or failed because its condition could not be evaluated). */
static bool activate(rz_run *r, size_t i)
{
    step_rt *s = &r->st[i];
    if (!s->when)
        return go(r, i);
    cJSON *v = NULL;
    int rc = rz__expr_eval(s->when, resolve_ref, r, &v);
    if (rc != RZ_OK) {
        set_error(s, rz__asprintf("when: %s", rz_error_last()->message));
        set_state(r, i, RZ_STEP_FAILED);
        if (step_of(r, i)->on_failure != RZ_ON_FAILURE_CONTINUE)
            r->fatal = true;
        return true;
    }
    bool yes = rz__json_truthy(v);
    cJSON_Delete(v);
    if (yes)
        return go(r, i);
    set_error(s, rz__asprintf("condition is false: %s", step_of(r, i)->when));
    set_state(r, i, RZ_STEP_SKIPPED);
    return true;
}

/* Dep `u` of a step counts as failed for a join: it failed, or was skipped
 * because something above it failed (Airflow's upstream_failed). */
static bool failed_for_join(const rz_run *r, size_t u)
{
    return r->st[u].state == RZ_STEP_FAILED ||
           (r->st[u].state == RZ_STEP_SKIPPED && r->st[u].upstream_failed);
}

/* Settle `d` as skipped (or cancelled, after a cancelled `u`) with `why`. */
static void skip_step(rz_run *r, size_t d, size_t u, char *why)
{
    step_rt *ds = &r->st[d];
    bool cancel = u != RZ_NPOS && r->st[u].state == RZ_STEP_CANCELLED;
    set_state(r, d, cancel ? RZ_STEP_CANCELLED : RZ_STEP_SKIPPED);
    ds->upstream_failed = !cancel && u != RZ_NPOS && failed_for_join(r, u);
    set_error(ds, why);
}

/* Whether a step with `join` whose deps have all settled may run. */
static bool join_met(const rz_run *r, size_t d)
{
    const step_rt *ds = &r->st[d];
    switch (step_of(r, d)->join) {
    case RZ_JOIN_ANY_SUCCEEDED: return ds->n_ok > 0;
    case RZ_JOIN_ONE_FAILED: return ds->n_failed > 0;
    case RZ_JOIN_NONE_FAILED: return ds->n_failed == 0;
    default: return true;   /* all_done */
    }
}

static char *join_unmet_reason(const rz_run *r, size_t d)
{
    rz__join j = step_of(r, d)->join;
    const char *why = j == RZ_JOIN_ANY_SUCCEEDED ? "none of its needs succeeded"
                    : j == RZ_JOIN_ONE_FAILED ? "none of its needs failed"
                    : "a need failed";
    return rz__asprintf("join %s not met: %s", rz__join_name(j), why);
}

/* Dep `u` of `d` (join other than all_succeeded) settled. Returns true if
 * `d` settled in turn. A cancelled dep cancels `d` (the run is being
 * cancelled); none_failed gives up at the first failure; the others wait
 * for every dep, then run or are skipped with the rule that was not met. */
static bool join_dep_settled(rz_run *r, size_t d, size_t u)
{
    step_rt *ds = &r->st[d];
    const char *uid = step_of(r, u)->id;
    if (r->st[u].state == RZ_STEP_SUCCEEDED || r->st[u].told)
        ds->n_ok++;
    if (failed_for_join(r, u))
        ds->n_failed++;
    if (r->st[u].state == RZ_STEP_CANCELLED) {
        skip_step(r, d, u, rz__asprintf("upstream step '%s' was cancelled", uid));
        return true;
    }
    if (step_of(r, d)->join == RZ_JOIN_NONE_FAILED && ds->n_failed) {
        skip_step(r, d, u, rz__asprintf("join none_failed not met: upstream step "
                                        "'%s' failed", uid));
        return true;
    }
    if (--ds->waiting)
        return false;
    if (join_met(r, d))
        return activate(r, d);
    skip_step(r, d, RZ_NPOS, join_unmet_reason(r, d));
    ds->upstream_failed = ds->n_failed > 0;   /* any_succeeded after failures */
    return true;
}

/* The flow's declared outputs, once every step has settled (so the run's
 * JSON and a replay agree). One that cannot be evaluated fails the run:
 * an output the flow promised is missing. */
static void finish_outputs(rz_run *r)
{
    const rz_flow *f = r->flow;
    if (!f->n_outputs || r->outputs || r->outputs_error)
        return;
    cJSON *o = cJSON_CreateObject();
    for (size_t k = 0; o && k < f->n_outputs; k++) {
        cJSON *v = NULL;
        int rc = eval_value(r, f->outputs[k].value, &v);
        if (rc != RZ_OK) {
            r->outputs_error = rz__asprintf("flow output '%s': %s", f->outputs[k].name,
                                            rz_error_last()->message);
            r->fatal = r->fatal || !r->cancelled;
            break;
        }
        if (!cJSON_AddItemToObject(o, f->outputs[k].name, v)) {
            cJSON_Delete(v);
            r->outputs_error = rz__strdup("out of memory evaluating the flow's outputs");
            break;
        }
    }
    if (r->outputs_error)
        cJSON_Delete(o);
    else
        r->outputs = o;
}

static void element_settled(rz_run *r, size_t e);
static void propagate(rz_run *r, size_t i, bool ready);
static void close_map(rz_run *r, size_t p);
static bool events_done(const rz_run *r, size_t p);
static int check_step(const rz_run *r, size_t step);

/* `i` just reached a final state: count it and let its dependants move,
 * iteratively, as far as the news travels (an element: its step's map). */
static void settle(rz_run *r, size_t i)
{
    if (is_element(r, i)) {
        element_settled(r, i);
        return;
    }
    propagate(r, i, false);
}

/* `i` settled (or, `ready`, a service was told ready): its dependants move,
 * iteratively. A service's dependants told at its readiness are not told
 * again when it settles; an event step whose source settled may end. */
static void propagate(rz_run *r, size_t i, bool ready)
{
    size_t sp = 0;
    r->stack[sp++] = i;
    while (sp) {
        size_t u = r->stack[--sp];
        bool telling = ready && u == i;
        if (!telling)
            r->settled++;
        bool blocked = !telling && blocks(r, u);
        for (size_t k = r->succ_off[u]; k < r->succ_off[u + 1]; k++) {
            size_t d = r->succ[k];
            step_rt *ds = &r->st[d];
            if (!telling && event_source(r, d) == u && events_done(r, d)) {
                close_map(r, d);
                r->stack[sp++] = d;
                continue;
            }
            /* The on_exit step runs after every step has ended: a
             * service's readiness is not its end. */
            bool last = step_of(r, d)->is_exit;
            if (ds->state != RZ_STEP_PENDING || (telling && last) ||
                (!telling && r->st[u].told && !last))
                continue;
            if (step_of(r, d)->join != RZ_JOIN_ALL_SUCCEEDED) {
                if (join_dep_settled(r, d, u))
                    r->stack[sp++] = d;
            } else if (blocked) {
                skip_step(r, d, u, block_reason(r, u));
                r->stack[sp++] = d;
            } else if (--ds->waiting == 0 && activate(r, d)) {
                r->stack[sp++] = d;
            }
        }
    }
    if (r->settled == r->n)
        finish_outputs(r);
}

/* ---- for_each ------------------------------------------------------------- */

static const char *type_of(const cJSON *x);

/* Room for `add` more tasks in every per-task array (contents kept: a
 * settle in progress keeps its stack). */
static int grow_tasks(rz_run *r, size_t add)
{
    if (r->n_tasks + add <= r->cap)
        return RZ_OK;
    if (add >= RZ__RUN_TASKS_MAX - r->n_tasks)   /* a heap place fits 32 bits */
        return rz__error(RZ_ETOOBIG, "a run holds at most %zu tasks",
                         RZ__RUN_TASKS_MAX - 1);
    size_t cap = r->cap * 2 > r->n_tasks + add ? r->cap * 2 : r->n_tasks + add;
    step_rt *st = realloc(r->st, cap * sizeof *st);
    if (!st)
        return rz__error(RZ_ENOMEM, "out of memory");
    r->st = st;
    memset(st + r->cap, 0, (cap - r->cap) * sizeof *st);
    size_t **lists[] = { &r->ready, &r->timed, &r->stack, &r->scratch,
                         &r->changed[0], &r->taken[0], &r->changed[1], &r->taken[1] };
    for (size_t k = 0; k < RZ_ARRAY_LEN(lists); k++) {
        size_t *l = realloc(*lists[k], cap * sizeof **lists[k]);
        if (!l)
            return rz__error(RZ_ENOMEM, "out of memory");
        *lists[k] = l;
    }
    r->cap = cap;
    return RZ_OK;
}

/* Make elements READY while the step's max_parallel allows. */
static void promote(rz_run *r, size_t p)
{
    step_rt *ps = &r->st[p];
    uint32_t max = step_of(r, p)->max_parallel;
    if (!max && ps->els)
        max = RZ__EVENT_PARALLEL;
    while (!ps->el_stop && !r->cancelled && ps->next_el < ps->n_el &&
           (!max || ps->el_active < max)) {
        ps->el_active++;
        push_ready(r, el_task(r, p, ps->next_el++));
    }
}

/* ---- nested maps (for_each_depth) ---- */

/* `nu` takes `old`'s place in array `list`; `old` is left detached. */
static void swap_node(cJSON *list, cJSON *old, cJSON *nu)
{
    nu->next = old->next;
    nu->prev = old->prev;
    if (list->child == old)
        list->child = nu;
    else
        old->prev->next = nu;
    if (old->next)
        old->next->prev = nu;
    else
        list->child->prev = nu;   /* the head's prev is the last item */
    old->next = old->prev = NULL;
}

/* The leaves `depth` levels down in `list` added to *n (counting stops past
 * the cap); false with where in `at` when a level above the last holds
 * something other than a list. */
static bool nested_count(const cJSON *list, uint32_t depth, size_t *n, char *at, size_t cap)
{
    size_t k = 0;
    for (const cJSON *c = list->child; c && *n <= RZ_FLOW_FOR_EACH_MAX; c = c->next, k++) {
        if (depth == 1) {
            (*n)++;
        } else if (!cJSON_IsArray(c)) {
            snprintf(at, cap, "[%zu] is %s, not a list", k, type_of(c));
            return false;
        } else if (!nested_count(c, depth - 1, n, at, cap)) {
            char tail[160];
            snprintf(tail, sizeof tail, "%s", at);
            snprintf(at, cap, "[%zu]%s", k, tail);
            return false;
        }
    }
    return true;
}

/* Each leaf of `list` (`depth` levels down) becomes an element of step p,
 * in row-major order, its place kept in `path`; a null stays where it was.
 * False out of memory. */
static bool nested_make(rz_run *r, size_t p, cJSON *list, uint32_t depth, cJSON *path)
{
    int k = 0;
    bool ok = true;
    for (cJSON *c = list->child, *next; ok && c; c = next, k++) {
        next = c->next;
        cJSON *at = cJSON_CreateNumber(k);
        ok = at && cJSON_AddItemToArray(path, at);
        if (!ok) {
            cJSON_Delete(at);
            break;
        }
        if (depth > 1) {
            ok = nested_make(r, p, c, depth - 1, path);
        } else {
            cJSON *hole = cJSON_CreateNull();
            cJSON *where = cJSON_Duplicate(path, true);
            ok = hole && where;
            if (ok) {
                step_rt *el = &r->st[r->n_tasks];
                el->parent = p;
                el->index = (uint32_t)(r->n_tasks - r->st[p].first_el);
                el->indices = where;
                swap_node(list, c, hole);
                el->value = c;
                r->n_tasks++;
            } else {
                cJSON_Delete(hole);
                cJSON_Delete(where);
            }
        }
        cJSON_DeleteItemFromArray(path, cJSON_GetArraySize(path) - 1);
    }
    return ok;
}

/* The leaves (`depth` down) of a copy of the shape, from `flat` in order. */
static bool nested_fill(cJSON *node, uint32_t depth, cJSON *flat)
{
    for (cJSON *c = node->child, *next; c; c = next) {
        next = c->next;
        if (depth > 1) {
            if (!nested_fill(c, depth - 1, flat))
                return false;
            continue;
        }
        cJSON *v = cJSON_DetachItemFromArray(flat, 0);
        if (!v)
            return false;
        swap_node(node, c, v);
        cJSON_Delete(c);
    }
    return true;
}

/* A nested map's flat output lists put back in the shape of its lists. */
static bool nested_outputs(const rz_run *r, size_t p, cJSON *o)
{
    uint32_t depth = step_of(r, p)->for_each_depth;
    for (cJSON *list = o->child, *next; list; list = next) {
        next = list->next;
        cJSON *shaped = cJSON_Duplicate(r->st[p].shape, true);
        if (!shaped || !nested_fill(shaped, depth, list)) {
            cJSON_Delete(shaped);
            return false;
        }
        swap_node(o, list, shaped);
        /* the port's key; the copy's own (the list's, from the flow inputs'
         * map) goes */
        if (!(shaped->type & cJSON_StringIsConst))
            cJSON_free(shaped->string);
        shaped->type &= ~cJSON_StringIsConst;
        shaped->string = list->string;
        list->string = NULL;
        cJSON_Delete(list);
    }
    return true;
}

/* The elements' outputs as lists in element order, one per port: the
 * module's declared ports (so no elements give []), then any other port an
 * element returned; an element without the port (failed, skipped) gives
 * null. */
static cJSON *map_outputs(const rz_run *r, size_t p)
{
    const step_rt *ps = &r->st[p];
    const rz_module *m = step_of(r, p)->module;
    cJSON *o = cJSON_CreateObject();
    bool ok = o != NULL;
    for (size_t k = 0; ok && m && k < m->n_outputs; k++)
        if (!cJSON_GetObjectItemCaseSensitive(o, m->outputs[k].name))
            ok = cJSON_AddArrayToObject(o, m->outputs[k].name) != NULL;
    for (size_t k = 0; ok && k < ps->n_el; k++) {
        const cJSON *c;
        cJSON_ArrayForEach(c, r->st[el_task(r, p, k)].outputs)
            if (ok && !cJSON_GetObjectItemCaseSensitive(o, c->string))
                ok = cJSON_AddArrayToObject(o, c->string) != NULL;
    }
    for (size_t k = 0; ok && k < ps->n_el; k++) {
        const cJSON *eo = r->st[el_task(r, p, k)].outputs;
        cJSON *list;
        cJSON_ArrayForEach(list, o) {
            const cJSON *v = eo ? cJSON_GetObjectItemCaseSensitive(eo, list->string)
                                : NULL;
            cJSON *c = v ? cJSON_Duplicate(v, true) : cJSON_CreateNull();
            if (!c || !cJSON_AddItemToArray(list, c)) {
                cJSON_Delete(c);
                ok = false;
                break;
            }
        }
    }
    if (ok && ps->shape)
        ok = nested_outputs(r, p, o);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* Every element of `p` settled: the step's final state (close_map; its
 * caller settles it). It succeeds when every element did; with
 * on_failure: continue a failed map still hands on its lists (null where
 * an element failed). An event step's failed elements were dead-lettered. */
static void close_map(rz_run *r, size_t p)
{
    step_rt *ps = &r->st[p];
    size_t failed = 0, cancelled = 0, first = RZ_NPOS;
    for (size_t k = 0; k < ps->n_el; k++) {
        const step_rt *el = &r->st[el_task(r, p, k)];
        if (el->ended_ms > ps->ended_ms)
            ps->ended_ms = el->ended_ms;
        if (el->state == RZ_STEP_CANCELLED)
            cancelled++;
        if (el->state == RZ_STEP_FAILED && failed++ == 0)
            first = k;
    }
    bool cont = step_of(r, p)->on_failure == RZ_ON_FAILURE_CONTINUE;
    rz_step_state st = r->cancelled && cancelled ? RZ_STEP_CANCELLED
                     : failed || ps->error ? RZ_STEP_FAILED : RZ_STEP_SUCCEEDED;
    if (st == RZ_STEP_FAILED && !ps->error && ps->els) {
        const step_rt *el = &r->st[el_task(r, p, first)];
        set_error(ps, rz__asprintf("%zu of %zu events dead-lettered after their "
                                   "retries; event %s: %s", failed, ps->n_el,
                                   cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
                                       el->value, "id")),
                                   el->error ? el->error : "failed"));
    }
    if (st == RZ_STEP_FAILED && !ps->error) {
        const step_rt *el = &r->st[el_task(r, p, first)];
        set_error(ps, failed > 1
            ? rz__asprintf("%zu of %zu elements failed; element %zu: %s", failed,
                           ps->n_el, first, el->error ? el->error : "failed")
            : rz__asprintf("element %zu (of %zu) failed: %s", first, ps->n_el,
                           el->error ? el->error : "failed"));
    }
    if (st == RZ_STEP_SUCCEEDED || (st == RZ_STEP_FAILED && cont)) {
        ps->outputs = map_outputs(r, p);
        if (!ps->outputs && st == RZ_STEP_SUCCEEDED) {
            st = RZ_STEP_FAILED;
            set_error(ps, rz__strdup("out of memory collecting the elements' outputs"));
        }
    }
    if (st == RZ_STEP_FAILED && !cont)
        r->fatal = true;
    set_state(r, p, st);
}

static void finish_map(rz_run *r, size_t p)
{
    close_map(r, p);
    settle(r, p);
}

/* An event step is done once its source has settled and every event it
 * was given has been handled. */
static bool events_done(const rz_run *r, size_t p)
{
    const step_rt *ps = &r->st[p];
    size_t src = event_source(r, p);
    rz_step_state ss = src != RZ_NPOS ? r->st[src].state : RZ_STEP_SUCCEEDED;
    return ps->mapped && ps->state == RZ_STEP_RUNNING && ps->el_done == ps->n_el &&
           ss >= RZ_STEP_SUCCEEDED;
}

/* Elements of `p` not running yet will not run: `why` (copied per element). */
static void stop_map(rz_run *r, size_t p, const char *why)
{
    step_rt *ps = &r->st[p];
    ps->el_stop = true;
    for (size_t k = 0; k < ps->n_el; k++) {
        size_t e = el_task(r, p, k);
        rz_step_state s = r->st[e].state;
        if (s != RZ_STEP_PENDING && s != RZ_STEP_READY && s != RZ_STEP_BACKOFF)
            continue;
        if (k < ps->next_el)
            ps->el_active--;
        ps->el_done++;
        set_state(r, e, r->cancelled ? RZ_STEP_CANCELLED : RZ_STEP_SKIPPED);
        set_error(&r->st[e], why ? rz__strdup(why) : NULL);
    }
    ps->next_el = ps->n_el;
}

/* Element `e` reached a final state. */
static void element_settled(rz_run *r, size_t e)
{
    size_t p = r->st[e].parent;
    step_rt *ps = &r->st[p];
    ps->el_active--;
    ps->el_done++;
    if (r->st[e].state == RZ_STEP_FAILED && !ps->els &&
        step_of(r, p)->on_failure != RZ_ON_FAILURE_CONTINUE && !ps->el_stop) {
        char why[64];
        snprintf(why, sizeof why, "element %u failed", r->st[e].index);
        stop_map(r, p, why);
    }
    promote(r, p);
    if (step_of(r, p)->on_step ? events_done(r, p) : ps->el_done == ps->n_el)
        finish_map(r, p);
}

static bool fail_now(rz_run *r, size_t i, char *why)
{
    set_error(&r->st[i], why);
    set_state(r, i, RZ_STEP_FAILED);
    if (step_of(r, i)->on_failure != RZ_ON_FAILURE_CONTINUE)
        r->fatal = true;
    return true;
}

/* Step `i` with for_each may run: its list is evaluated now and each
 * element becomes a task of its own (RZ_FLOW_FOR_EACH_MAX at most). An
 * empty list succeeds at once. Returns true if `i` settled. */
static bool expand(rz_run *r, size_t i)
{
    const rz__step *st = step_of(r, i);
    cJSON *list = NULL;
    if (eval_value(r, st->for_each, &list) != RZ_OK)
        return fail_now(r, i, rz__asprintf("for_each: %s", rz_error_last()->message));
    uint32_t depth = st->for_each_depth > 1 ? st->for_each_depth : 1;
    size_t n = depth > 1 ? 0 : (size_t)cJSON_GetArraySize(list);
    char at[200] = "";
    bool shaped = depth == 1 || !cJSON_IsArray(list) ||
                  nested_count(list, depth, &n, at, sizeof at);
    char *why = !cJSON_IsArray(list)
        ? rz__asprintf("for_each must give a list, not %s", type_of(list))
        : !shaped
        ? rz__asprintf("for_each_depth %u: for_each must give lists %u deep; item %s",
                       depth, depth, at)
        : n > RZ_FLOW_FOR_EACH_MAX
        ? rz__asprintf("for_each gives %zu elements; a step runs at most %u", n,
                       RZ_FLOW_FOR_EACH_MAX)
        : NULL;
    if (!why && n && grow_tasks(r, n) != RZ_OK)
        why = rz__strdup("out of memory making the for_each elements");
    if (why) {
        cJSON_Delete(list);
        return fail_now(r, i, why);
    }
    step_rt *s = &r->st[i];
    s->mapped = true;
    s->first_el = r->n_tasks;
    s->n_el = n;
    if (depth > 1) {
        cJSON *path = cJSON_CreateArray();
        bool ok = path && nested_make(r, i, list, depth, path);
        cJSON_Delete(path);
        if (!ok) {   /* none made after all */
            for (size_t k = s->first_el; k < r->n_tasks; k++) {
                cJSON_Delete(r->st[k].value);
                cJSON_Delete(r->st[k].indices);
                memset(&r->st[k], 0, sizeof r->st[k]);
            }
            r->n_tasks = s->first_el;
            s->n_el = 0;
            s->mapped = false;
            cJSON_Delete(list);
            return fail_now(r, i, rz__strdup("out of memory making the for_each elements"));
        }
        s->shape = list;
        list = NULL;
    }
    for (uint32_t k = 0; list && k < n; k++) {
        step_rt *el = &r->st[r->n_tasks++];
        el->parent = i;
        el->index = k;
        el->value = cJSON_DetachItemFromArray(list, 0);
    }
    cJSON_Delete(list);
    if (!n) {
        s->outputs = map_outputs(r, i);
        if (!s->outputs)
            return fail_now(r, i, rz__strdup("out of memory"));
        set_state(r, i, RZ_STEP_SUCCEEDED);
        return true;
    }
    set_state(r, i, RZ_STEP_RUNNING);
    promote(r, i);
    return false;
}

/* ---- Services and events (run/service.h) ---------------------------------- */

/* Event `ev` (taken) becomes one more element of running event step `p`. */
static int add_event(rz_run *r, size_t p, cJSON *ev)
{
    if (r->st[p].n_el >= RZ__RUN_EVENTS_MAX) {
        cJSON_Delete(ev);
        return rz__error(RZ_ETOOBIG, "step '%s' was given %u events already, the "
                         "most one step takes", step_of(r, p)->id, RZ__RUN_EVENTS_MAX);
    }
    int rc = grow_tasks(r, 1);
    step_rt *ps = &r->st[p];
    if (rc == RZ_OK && ps->n_el == ps->cap_els) {
        size_t cap = ps->cap_els ? ps->cap_els * 2 : 8;
        size_t *els = realloc(ps->els, cap * sizeof *els);
        if (els) {
            ps->els = els;
            ps->cap_els = cap;
        } else {
            rc = rz__error(RZ_ENOMEM, "out of memory");
        }
    }
    if (rc != RZ_OK) {
        cJSON_Delete(ev);
        return rc;
    }
    size_t t = r->n_tasks++;
    step_rt *el = &r->st[t];
    el->parent = p;
    el->index = (uint32_t)ps->n_el;
    el->value = ev;
    ps->els[ps->n_el++] = t;
    promote(r, p);
    return RZ_OK;
}

/* Event step `i` may run: it listens, and the events kept for it so far
 * become its elements. Returns true if it settled (its source ended). */
static bool listen(rz_run *r, size_t i)
{
    step_rt *s = &r->st[i];
    s->mapped = true;
    if (!s->els && !(s->els = malloc(8 * sizeof *s->els)))
        return fail_now(r, i, rz__strdup("out of memory"));
    if (!s->cap_els)
        s->cap_els = 8;
    set_state(r, i, RZ_STEP_RUNNING);
    cJSON *kept = s->kept_ev, *ev;
    s->kept_ev = NULL;
    while (kept && (ev = cJSON_DetachItemFromArray(kept, 0)))
        (void)!add_event(r, i, ev);   /* over the cap: refused when kept */
    cJSON_Delete(kept);
    if (!events_done(r, i))
        return false;
    close_map(r, i);
    return true;
}

static bool running_service(const rz_run *r, size_t step)
{
    return step < r->n && step_of(r, step)->service &&
           r->st[step].state == RZ_STEP_RUNNING;
}

/* Tell a service's dependants it is ready. */
static void tell(rz_run *r, size_t step)
{
    r->st[step].told = true;
    propagate(r, step, true);
}

int rz__run_service_ready(rz_run *run, size_t step, uint64_t now_ms)
{
    (void)now_ms;
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    if (!running_service(run, step))
        return rz__error(RZ_ESTATE, "step '%s' is not a running service",
                         step_of(run, step)->id);
    if (run->st[step].told)
        return 0;
    tell(run, step);
    return 1;
}

static cJSON *event_object(const char *id, const char *key, const char *name,
                           const cJSON *data)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON *d = cJSON_Duplicate(data, true);
    if (!ev || !d || !cJSON_AddStringToObject(ev, "id", id) ||
        (key && !cJSON_AddStringToObject(ev, "key", key)) ||
        !cJSON_AddStringToObject(ev, "name", name) ||
        !cJSON_AddItemToObject(ev, "data", d)) {
        cJSON_Delete(ev);
        if (ev && d && !cJSON_GetObjectItemCaseSensitive(ev, "data"))
            cJSON_Delete(d);
        return NULL;
    }
    return ev;
}

/* Give event `ev` (taken) to listener `d`: kept while it waits, an element
 * once it runs. */
static int give_event(rz_run *r, size_t d, cJSON *ev)
{
    step_rt *ds = &r->st[d];
    if (ds->state == RZ_STEP_RUNNING && ds->mapped)
        return add_event(r, d, ev);
    if ((size_t)cJSON_GetArraySize(ds->kept_ev) >= RZ__RUN_EVENTS_MAX) {
        cJSON_Delete(ev);
        return rz__error(RZ_ETOOBIG, "step '%s' was given %u events already, the "
                         "most one step takes", step_of(r, d)->id, RZ__RUN_EVENTS_MAX);
    }
    if (!ds->kept_ev && !(ds->kept_ev = cJSON_CreateArray())) {
        cJSON_Delete(ev);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    if (!cJSON_AddItemToArray(ds->kept_ev, ev)) {
        cJSON_Delete(ev);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}

/* Remember service key `key` of step `ss`; false if it was given before.
 * Past RZ__RUN_KEYS_MAX keys (or out of memory) new ones are not kept. */
static bool key_new(step_rt *ss, const char *key)
{
    if (!key)
        return true;
    if (ss->keys && rz__map_get(ss->keys, key) != RZ_NPOS)
        return false;
    if (ss->n_keys >= RZ__RUN_KEYS_MAX)
        return true;
    if (!ss->keys && !(ss->keys = rz__calloc(1, sizeof *ss->keys)))
        return true;
    if (ss->n_keys == ss->cap_keys) {
        size_t cap = ss->cap_keys ? ss->cap_keys * 2 : 16;
        char **v = realloc(ss->key_text, cap * sizeof *v);
        if (!v)
            return true;
        ss->key_text = v;
        ss->cap_keys = cap;
    }
    char *k = rz__strdup(key);
    if (!k || rz__map_put(ss->keys, k, ss->n_keys) != RZ_OK) {
        free(k);
        return true;
    }
    ss->key_text[ss->n_keys++] = k;
    return true;
}

int rz__run_emit(rz_run *run, size_t step, uint32_t attempt, uint32_t seq,
                 const char *key, const char *name, const char *data_json,
                 uint64_t now_ms, size_t *delivered)
{
    (void)now_ms;
    if (delivered)
        *delivered = 0;
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    if (!name || !running_service(run, step))
        return rz__error(RZ_ESTATE, "step '%s' is not a running service: it emits "
                         "no events", step_of(run, step)->id);
    step_rt *ss = &run->st[step];
    if (seq && (attempt < ss->ev_attempt ||
                (attempt == ss->ev_attempt && seq <= ss->ev_seq)))
        return 1;
    cJSON *data = data_json ? cJSON_Parse(data_json) : cJSON_CreateNull();
    if (!data)
        return data_json ? rz__error(RZ_EINVALID, "event '%s' of step '%s': its data "
                                     "is not JSON", name, step_of(run, step)->id)
                         : rz__error(RZ_ENOMEM, "out of memory");
    if (!key_new(ss, key)) {   /* nothing changed: not recorded either */
        cJSON_Delete(data);
        return 1;
    }
    if (seq) {
        ss->ev_attempt = attempt;
        ss->ev_seq = seq;
    }
    char id[96];
    snprintf(id, sizeof id, "%s:%u", step_of(run, step)->id, ++ss->emitted);
    for (size_t k = run->succ_off[step]; k < run->succ_off[step + 1]; k++) {
        size_t d = run->succ[k];
        const rz__step *ds = step_of(run, d);
        rz_step_state st = run->st[d].state;
        if (!ds->on_step || strcmp(ds->on_event, name) != 0 ||
            event_source(run, d) != step ||
            !(st == RZ_STEP_PENDING || (st == RZ_STEP_RUNNING && run->st[d].mapped)))
            continue;
        cJSON *ev = event_object(id, key, name, data);
        int r2 = ev ? give_event(run, d, ev) : rz__error(RZ_ENOMEM, "out of memory");
        if (r2 == RZ_OK && delivered)
            (*delivered)++;
        else if (r2 != RZ_OK)
            rc = r2;
    }
    cJSON_Delete(data);
    return rc;
}

uint32_t rz__run_events_emitted(const rz_run *run, size_t step)
{
    return run && step < run->n ? run->st[step].emitted : 0;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Delay before the retry that follows failed attempt number `n` (1-based). */
static uint64_t backoff_delay(const rz__step *st, uint32_t n)
{
    uint64_t d = st->retry.initial_ms;
    if (st->retry.backoff != RZ_BACKOFF_EXPONENTIAL)
        return d;
    uint64_t cap = st->retry.max_ms ? st->retry.max_ms : UINT64_MAX;
    for (uint32_t k = 1; k < n && d < cap; k++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    return d < cap ? d : cap;
}

/* A RUNNING step failed with `reason` (taken over). Retry or settle. */
/* again: it may retry (attempts left); false: it fails for good. */
static void step_failed_as(rz_run *r, size_t i, char *reason, uint64_t now_ms,
                           bool again)
{
    step_rt *s = &r->st[i];
    const rz__step *st = step_of(r, i);
    set_error(s, reason);
    s->has_deadline = false;
    s->ended_ms = now_ms;
    uint32_t max = st->retry.max_attempts ? st->retry.max_attempts : 1;
    if (again && !r->cancelled && s->attempts < max) {
        set_state(r, i, RZ_STEP_BACKOFF);
        s->due_ms = add_sat(now_ms, backoff_delay(st, s->attempts));
        timed_sync(r, i);
        return;
    }
    /* A step stopped because the run was cancelled did not fail. */
    set_state(r, i, r->cancelled ? RZ_STEP_CANCELLED : RZ_STEP_FAILED);
    if (!r->cancelled && st->on_failure != RZ_ON_FAILURE_CONTINUE &&
        !is_element(r, i))   /* an element's step decides (finish_map) */
        r->fatal = true;
    settle(r, i);
}

static void step_failed(rz_run *r, size_t i, char *reason, uint64_t now_ms)
{
    step_failed_as(r, i, reason, now_ms, true);
}

int rz__run_service_stop(rz_run *run, size_t step, const char *reason,
                         uint64_t now_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    /* Waiting to restart (its node lost) it may be stopped too: billing
     * stops it when the next interval cannot be held (engine/billing.c). */
    rz_step_state st = run->st[step].state;
    if ((st != RZ_STEP_RUNNING && st != RZ_STEP_BACKOFF) || !step_of(run, step)->service)
        return rz__error(RZ_ESTATE, "step %zu is not a running service", step);
    char *copy = rz__strdup(reason && reason[0] ? reason : "stopped");
    if (!copy)
        return rz__error(RZ_ENOMEM, "out of memory");
    step_failed_as(run, step, copy, now_ms, false);
    return RZ_OK;
}

/* ---- Construction --------------------------------------------------------- */

/* Declared types: string, number, integer, boolean, object, array, any
 * (or none). An integer is a number without a fraction. */
static bool input_type_ok(const char *type, const cJSON *v)
{
    if (!type || strcmp(type, "any") == 0)
        return true;
    if (strcmp(type, "string") == 0) return cJSON_IsString(v);
    if (strcmp(type, "number") == 0) return cJSON_IsNumber(v);
    if (strcmp(type, "integer") == 0)
        return cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble;
    if (strcmp(type, "boolean") == 0) return cJSON_IsBool(v);
    if (strcmp(type, "object") == 0) return cJSON_IsObject(v);
    if (strcmp(type, "array") == 0) return cJSON_IsArray(v);
    return true;   /* unknown type names are the loader's to report */
}

static const char *article(const char *type)
{
    return strchr("aeiou", type[0]) ? "an" : "a";
}

static int unknown_input(const rz_flow *f, const char *name)
{
    rz__buf names = {0};
    for (size_t i = 0; i < f->n_inputs; i++)
        rz__buf_printf(&names, "%s%s", i ? ", " : "", f->inputs[i].name);
    char *list = rz__buf_take(&names);
    if (f->n_inputs)
        rz__error(RZ_EINVALID, "unknown flow input '%s' (this flow declares: %s)",
                  name, list ? list : "");
    else
        rz__error(RZ_EINVALID, "unknown flow input '%s' (this flow declares none)",
                  name);
    free(list);
    return RZ_EINVALID;
}

static int collect_inputs(rz_run *r, const char *inputs_json)
{
    /* cJSON would end a string at a \u0000 and drop the rest unseen. */
    if (inputs_json && rz__json_text_check(inputs_json, strlen(inputs_json)) != RZ_OK)
        return rz__error(RZ_EINVALID, "flow inputs: %s", rz_error_last()->message);
    r->inputs = inputs_json ? cJSON_Parse(inputs_json) : cJSON_CreateObject();
    if (!r->inputs)
        return inputs_json ? rz__error(RZ_EINVALID, "flow inputs are not valid JSON")
                           : rz__error(RZ_ENOMEM, "out of memory");
    if (!cJSON_IsObject(r->inputs))
        return rz__error(RZ_EINVALID, "flow inputs must be a JSON object");
    const rz_flow *f = r->flow;
    /* A misspelt input would silently fall back to its default. */
    const cJSON *given;
    cJSON_ArrayForEach(given, r->inputs) {
        size_t i = 0;
        while (i < f->n_inputs && strcmp(f->inputs[i].name, given->string) != 0)
            i++;
        if (i == f->n_inputs)
            return unknown_input(f, given->string);
        if (!input_type_ok(f->inputs[i].type, given))
            return rz__error(RZ_EINVALID, "flow input '%s' must be %s %s",
                             given->string, article(f->inputs[i].type),
                             f->inputs[i].type);
    }
    rz__buf missing = {0};
    size_t n_missing = 0;
    for (size_t i = 0; i < f->n_inputs; i++) {
        const rz__flow_input *in = &f->inputs[i];
        if (cJSON_GetObjectItemCaseSensitive(r->inputs, in->name))
            continue;
        if (in->def) {
            cJSON *d = cJSON_Duplicate(in->def, true);
            if (!d || !cJSON_AddItemToObject(r->inputs, in->name, d)) {
                cJSON_Delete(d);
                rz__buf_free(&missing);
                return rz__error(RZ_ENOMEM, "out of memory");
            }
        } else if (in->required) {
            rz__buf_printf(&missing, "%s'%s'", n_missing ? ", " : "", in->name);
            n_missing++;
        }
    }
    if (n_missing) {
        char *names = rz__buf_take(&missing);
        rz__error(RZ_EINVALID, "missing required flow input%s: %s",
                  n_missing > 1 ? "s" : "", names ? names : "");
        free(names);
        return RZ_EINVALID;
    }
    rz__buf_free(&missing);
    return RZ_OK;
}

/* CSR of dependants (from each step's deps) and of incoming connections. */
static int build_edges(rz_run *r)
{
    const rz_flow *f = r->flow;
    size_t n = r->n, e = 0, c = 0;
    for (size_t i = 0; i < n; i++)
        e += f->steps[i].n_deps;
    for (size_t k = 0; k < f->n_conns; k++)
        if (f->conns[k].dst < n && f->conns[k].src < n)
            c++;
    r->succ_off = rz__calloc(n + 1, sizeof *r->succ_off);
    r->succ = rz__malloc((e ? e : 1) * sizeof *r->succ);
    r->conn_off = rz__calloc(n + 1, sizeof *r->conn_off);
    r->conn = rz__malloc((c ? c : 1) * sizeof *r->conn);
    if (!r->succ_off || !r->succ || !r->conn_off || !r->conn)
        return rz__error(RZ_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < f->steps[i].n_deps; k++)
            r->succ_off[f->steps[i].deps[k] + 1]++;
    for (size_t k = 0; k < f->n_conns; k++)
        if (f->conns[k].dst < n && f->conns[k].src < n)
            r->conn_off[f->conns[k].dst + 1]++;
    for (size_t i = 0; i < n; i++) {
        r->succ_off[i + 1] += r->succ_off[i];
        r->conn_off[i + 1] += r->conn_off[i];
    }
    /* The work stacks are free yet; use them as fill cursors. */
    memcpy(r->stack, r->succ_off, n * sizeof *r->stack);
    memcpy(r->scratch, r->conn_off, n * sizeof *r->scratch);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < f->steps[i].n_deps; k++)
            r->succ[r->stack[f->steps[i].deps[k]]++] = i;
    for (size_t k = 0; k < f->n_conns; k++)
        if (f->conns[k].dst < n && f->conns[k].src < n)
            r->conn[r->scratch[f->conns[k].dst]++] = k;
    return RZ_OK;
}

static int parse_conditions(rz_run *r)
{
    for (size_t i = 0; i < r->n; i++) {
        const rz__step *st = step_of(r, i);
        if (!st->when)
            continue;
        char err[256] = "";
        size_t off = 0;
        if (rz__expr_parse(&r->st[i].when, st->when, true, err, sizeof err,
                           &off) != RZ_OK)
            return rz__error(RZ_EEXPR, "step '%s': when: %s (at offset %zu)",
                             st->id, err[0] ? err : "malformed expression", off);
    }
    return RZ_OK;
}

static int run_alloc(rz_run *r, const char *run_id)
{
    if (r->n >= RZ__RUN_TASKS_MAX)
        return rz__error(RZ_ETOOBIG, "a run holds at most %zu tasks",
                         RZ__RUN_TASKS_MAX - 1);
    size_t n1 = r->n ? r->n : 1;
    r->n_tasks = r->n;
    r->cap = n1;
    r->cur = RZ_NPOS;
    r->id = rz__strdup(run_id ? run_id : "run");
    r->st = rz__calloc(n1, sizeof *r->st);
    r->ready = rz__malloc(n1 * sizeof *r->ready);
    r->timed = rz__malloc(n1 * sizeof *r->timed);
    r->stack = rz__malloc(n1 * sizeof *r->stack);
    r->scratch = rz__malloc(n1 * sizeof *r->scratch);
    bool lists = true;
    for (unsigned k = 0; k < RZ__RUN_READERS; k++) {
        r->changed[k] = rz__malloc(n1 * sizeof *r->changed[k]);
        r->taken[k] = rz__malloc(n1 * sizeof *r->taken[k]);
        lists = lists && r->changed[k] && r->taken[k];
    }
    if (!r->id || !r->st || !r->ready || !r->timed || !r->stack ||
        !r->scratch || !lists)
        return rz__error(RZ_ENOMEM, "out of memory");
    return RZ_OK;
}

/* A cycle would leave steps pending forever; the planner finds and names it. */
static int check_acyclic(const rz_flow *flow)
{
    rz_plan *p = NULL;
    int rc = rz_plan_build(&p, flow, NULL);
    rz_plan_free(p);
    return rc;
}

int rz_run_new(rz_run **out, const rz_flow *flow, const char *inputs_json,
               const char *run_id, uint64_t now_ms)
{
    *out = NULL;
    if (!flow)
        return rz__error(RZ_EINVAL, "rz_run_new: flow is NULL");
    int rc = check_acyclic(flow);
    if (rc != RZ_OK)
        return rc;
    rz_run *r = rz__calloc(1, sizeof *r);
    if (!r)
        return rz__error(RZ_ENOMEM, "out of memory");
    r->flow = flow;
    r->n = flow->n_steps;
    r->created_ms = now_ms;
    rc = run_alloc(r, run_id);
    if (rc == RZ_OK)
        rc = build_edges(r);
    if (rc == RZ_OK)
        rc = collect_inputs(r, inputs_json);
    if (rc == RZ_OK)
        rc = parse_conditions(r);
    if (rc != RZ_OK) {
        rz_run_free(r);
        return rc;
    }
    for (size_t i = 0; i < r->n; i++)
        r->st[i].waiting = flow->steps[i].n_deps;
    for (size_t i = 0; i < r->n; i++)
        if (r->st[i].state == RZ_STEP_PENDING && r->st[i].waiting == 0 &&
            activate(r, i))
            settle(r, i);
    *out = r;
    return RZ_OK;
}

void rz_run_free(rz_run *run)
{
    if (!run)
        return;
    for (size_t i = 0; run->st && i < run->n_tasks; i++) {
        cJSON_Delete(run->st[i].value);
        cJSON_Delete(run->st[i].kept_ev);
        free(run->st[i].els);
        for (size_t k = 0; k < run->st[i].n_keys; k++)
            free(run->st[i].key_text[k]);
        free(run->st[i].key_text);
        if (run->st[i].keys)
            rz__map_free(run->st[i].keys);
        free(run->st[i].keys);
        cJSON_Delete(run->st[i].indices);
        cJSON_Delete(run->st[i].shape);
        free(run->st[i].error);
        free(run->st[i].log);
        free(run->st[i].warning);
        cJSON_Delete(run->st[i].outputs);
        rz__expr_free(run->st[i].when);
        cJSON_Delete(run->st[i].field);
    }
    free(run->st);
    free(run->id);
    cJSON_Delete(run->flow_field);
    cJSON_Delete(run->each_field);
    cJSON_Delete(run->outputs);
    free(run->outputs_error);
    free(run->usage);
    cJSON_Delete(run->inputs);
    free(run->succ_off);
    free(run->succ);
    free(run->conn_off);
    free(run->conn);
    free(run->ready);
    free(run->timed);
    free(run->stack);
    free(run->scratch);
    for (unsigned k = 0; k < RZ__RUN_READERS; k++) {
        free(run->changed[k]);
        free(run->taken[k]);
    }
    free(run);
}

static int by_index(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

size_t rz__run_take_changes(rz_run *run, unsigned reader, const size_t **steps)
{
    size_t n = run->n_changed[reader];
    size_t *l = run->changed[reader];
    qsort(l, n, sizeof *l, by_index);
    for (size_t k = 0; k < n; k++)
        run->st[l[k]].in_changed &= (unsigned char)~(1u << reader);
    run->n_changed[reader] = 0;
    run->changed[reader] = run->taken[reader];
    run->taken[reader] = l;
    *steps = l;
    return n;
}

size_t rz__run_started(const rz_run *run)
{
    return run->n_started;
}

/* ---- Transitions ---------------------------------------------------------- */

static int check_step(const rz_run *r, size_t step)
{
    if (!r)
        return rz__error(RZ_EINVAL, "run is NULL");
    if (step >= r->n_tasks)
        return rz__error(RZ_EINVAL, "no step %zu (the flow has %zu, and %zu "
                         "for_each elements)", step, r->n, r->n_tasks - r->n);
    return RZ_OK;
}

/* A for_each step runs as its elements: it is not started, completed or
 * asked for a request itself. */
static int mapped(const rz_run *r, size_t step, const char *op)
{
    return rz__error(RZ_ESTATE, "cannot %s step '%s': it runs as its %zu "
                     "for_each elements", op, step_of(r, step)->id, r->st[step].n_el);
}

static int wrong_state(const rz_run *r, size_t step, const char *op)
{
    if (r->st[step].mapped)
        return mapped(r, step, op);
    return rz__error(RZ_ESTATE, "cannot %s step '%s': it is %s", op,
                     step_of(r, step)->id, rz_step_state_name(r->st[step].state));
}

/* Promote due retries, earliest first. */
static void sweep_timed(rz_run *r, uint64_t now_ms)
{
    size_t n = timed_take_due(r, now_ms);
    for (size_t k = 0; k < n; k++)
        if (r->st[r->scratch[k]].state == RZ_STEP_BACKOFF)
            push_ready(r, r->scratch[k]);
    for (size_t k = 0; k < n; k++)
        timed_sync(r, r->scratch[k]);   /* a deadline the tick has yet to see */
}

/* Drop every listed entry whose state moved on, keeping the order. */
static void ready_compact(rz_run *r)
{
    size_t w = 0;
    for (size_t k = r->ready_head; k < r->n_ready; k++) {
        size_t i = r->ready[k];
        if (r->st[i].state == RZ_STEP_READY)
            r->ready[w++] = i;
        else
            r->st[i].in_ready = false;
    }
    r->n_ready = w;
    r->ready_head = 0;
}

/* O(steps taken since the last call), not O(steps ready): steps start in
 * the order this lists them, so the ones that moved on are at the head,
 * dropped there; the count is kept by set_state. Entries that moved on
 * elsewhere (a cancel, a timeout) are walked past until they outnumber the
 * ready ones, then compacted away. */
size_t rz_run_ready(rz_run *run, uint64_t now_ms, size_t *steps, size_t cap)
{
    if (!run)
        return 0;
    sweep_timed(run, now_ms);
    size_t k = run->ready_head;
    for (; k < run->n_ready && run->st[run->ready[k]].state != RZ_STEP_READY; k++)
        run->st[run->ready[k]].in_ready = false;
    run->ready_head = k;
    if (run->n_ready - k > 2 * run->n_ready_live + 64)
        ready_compact(run);
    else if (k > run->n_ready / 2)
        ready_shift(run);
    size_t w = 0;
    for (k = run->ready_head; steps && w < cap && k < run->n_ready; k++)
        if (run->st[run->ready[k]].state == RZ_STEP_READY)
            steps[w++] = run->ready[k];
    return run->n_ready_live;
}

static uint32_t timeout_s(const rz__step *st)
{
    if (st->timeout_s || st->service)   /* a service runs until it ends */
        return st->timeout_s;
    return st->module ? st->module->timeout_s : 0;
}

int rz_run_start(rz_run *run, size_t step, uint64_t now_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    step_rt *s = &run->st[step];
    if (s->state != RZ_STEP_READY)
        return wrong_state(run, step, "start");
    set_state(run, step, RZ_STEP_RUNNING);
    if (s->attempts++ == 0)
        s->started_ms = now_ms;
    if (is_element(run, step)) {   /* the step counts its elements' attempts */
        step_rt *ps = &run->st[s->parent];
        if (ps->attempts++ == 0)
            ps->started_ms = now_ms;
    }
    uint32_t t = timeout_s(step_of(run, step));
    s->has_deadline = t > 0;
    if (t)
        s->due_ms = add_sat(now_ms, (uint64_t)t * 1000u);
    timed_sync(run, step);
    if (running_service(run, step) && !step_of(run, step)->ready_line &&
        !s->told)
        tell(run, step);   /* no readiness to wait for */
    return RZ_OK;
}

static bool has_type(const cJSON *x, const char *t)
{
    return rz__port_type_ok(t, x);
}

static const char *type_of(const cJSON *x)
{
    return cJSON_IsString(x) ? "a string" : cJSON_IsNumber(x) ? "a number"
         : cJSON_IsBool(x) ? "a boolean" : cJSON_IsObject(x) ? "an object"
         : cJSON_IsArray(x) ? "an array" : "null";
}

/* The outputs against the module's declared ones: every one present and of
 * its type (a downstream step would otherwise get null, or a value of the
 * wrong kind, without a word). NULL if they match, else why (malloc'd). */
static char *outputs_off(const rz_run *r, size_t step, const cJSON *o)
{
    const rz_module *m = step_of(r, step)->module;
    for (size_t k = 0; m && k < m->n_outputs; k++) {
        const rz__port *p = &m->outputs[k];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, p->name);
        if (!v)
            return rz__asprintf("module %s@%s declares output '%s', which the step "
                                "did not return", m->id, m->version, p->name);
        if (!has_type(v, p->type))
            return rz__asprintf("output '%s' is %s but module %s@%s declares it %s",
                                p->name, type_of(v), m->id, m->version, p->type);
    }
    return NULL;
}

int rz_run_succeed(rz_run *run, size_t step, const char *outputs_json,
                   uint64_t now_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    step_rt *s = &run->st[step];
    if (s->state != RZ_STEP_RUNNING || s->mapped)
        return wrong_state(run, step, "complete");
    const rz__step *sd = step_of(run, step);
    if (step < run->n && sd->service && sd->restart == RZ_RESTART_ALWAYS &&
        !run->cancelled && s->attempts < sd->retry.max_attempts) {
        char *why = rz__strdup("exited 0; restarted (restart: always)");
        if (!why)
            return rz__error(RZ_ENOMEM, "out of memory");
        step_failed(run, step, why, now_ms);
        return RZ_OK;
    }
    const char *end = NULL;
    cJSON *o = outputs_json ? cJSON_ParseWithOpts(outputs_json, &end, true)
                            : cJSON_CreateObject();
    /* A NULL parse of valid JSON is memory running out: the step's outputs
     * are not wrong, and its recorded success must replay as one. */
    if (!o && (!outputs_json || rz__json_valid(outputs_json, strlen(outputs_json))))
        return rz__error(RZ_ENOMEM, "out of memory");
    if (!cJSON_IsObject(o)) {
        const char *why = o ? "outputs are not a JSON object"
                            : "outputs are not valid JSON";
        cJSON_Delete(o);
        char *reason = rz__strdup(why);
        if (!reason)
            return rz__error(RZ_ENOMEM, "out of memory");
        step_failed(run, step, reason, now_ms);
        return rz__error(RZ_EINVALID, "step '%s': %s", step_of(run, step)->id,
                         why);
    }
    char *off = outputs_off(run, step, o);
    const rz_module *m = step_of(run, step)->module;
    if (off && !m->outputs_warn) {
        cJSON_Delete(o);
        step_failed(run, step, off, now_ms);
        return rz__error(RZ_EINVALID, "step '%s': %s", step_of(run, step)->id,
                         s->error ? s->error : "outputs off the manifest");
    }
    free(s->warning);
    s->warning = off;
    s->outputs = o;
    set_state(run, step, RZ_STEP_SUCCEEDED);
    s->has_deadline = false;
    s->ended_ms = now_ms;
    set_error(s, NULL);
    settle(run, step);
    return RZ_OK;
}

int rz_run_fail(rz_run *run, size_t step, const char *reason, uint64_t now_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    if (run->st[step].state != RZ_STEP_RUNNING)
        return wrong_state(run, step, "fail");
    char *copy = rz__strdup(reason && reason[0] ? reason : "failed");
    if (!copy)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (run->st[step].mapped) {   /* the whole map fails: no more elements */
        step_rt *ps = &run->st[step];
        set_error(ps, copy);
        if (run->cancelled)
            stop_map(run, step, NULL);
        else {
            char *why = rz__asprintf("not run: %s", copy);
            stop_map(run, step, why ? why : copy);
            free(why);
        }
        if (ps->el_done == ps->n_el)
            finish_map(run, step);
        return RZ_OK;
    }
    step_failed(run, step, copy, now_ms);
    return RZ_OK;
}

static bool due(const step_rt *s, uint64_t now_ms)
{
    return s->state == RZ_STEP_RUNNING && s->has_deadline && s->due_ms <= now_ms;
}

/* "timed out after N s" and the caller's note. */
static char *timeout_reason(const rz_run *r, size_t i, const char *note)
{
    return rz__asprintf("timed out after %u s%s", timeout_s(step_of(r, i)),
                        note ? note : "");
}

int rz_run_expire(rz_run *run, size_t step, const char *note, uint64_t now_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    if (!due(&run->st[step], now_ms))
        return 0;
    char *why = timeout_reason(run, step, note);
    if (!why)
        return rz__error(RZ_ENOMEM, "out of memory");
    step_failed(run, step, why, now_ms);
    return 1;
}

size_t rz_run_tick(rz_run *run, uint64_t now_ms, size_t *expired, size_t cap)
{
    if (!run)
        return 0;
    /* Taken out first, earliest deadline first: failing a step may time
     * others (a retry's backoff). Retries due stay for rz_run_ready. */
    size_t taken = timed_take_due(run, now_ms), n = 0;
    for (size_t k = 0; k < taken; k++) {
        size_t i = run->scratch[k];
        if (!due(&run->st[i], now_ms))
            continue;
        if (expired && n < cap)
            expired[n] = i;
        n++;
        step_failed(run, i, timeout_reason(run, i, NULL), now_ms);
    }
    for (size_t k = 0; k < taken; k++)
        timed_sync(run, run->scratch[k]);
    return n;
}

uint64_t rz_run_next_wakeup(const rz_run *run)
{
    return run && run->n_timed ? run->st[run->timed[0]].due_ms : UINT64_MAX;
}

int rz_run_cancel(rz_run *run, uint64_t now_ms)
{
    if (!run)
        return rz__error(RZ_EINVAL, "run is NULL");
    if (rz_run_done(run))
        return rz__error(RZ_ESTATE, "cannot cancel run '%s': it is %s", run->id,
                         rz_run_state_name(rz_run_state_get(run)));
    run->cancelled = true;
    for (size_t i = 0; i < run->n; i++) {   /* maps first: they may settle */
        step_rt *s = &run->st[i];
        if (s->mapped && s->state == RZ_STEP_RUNNING) {
            stop_map(run, i, NULL);
            if (s->el_done == s->n_el)
                finish_map(run, i);
        }
    }
    for (size_t i = 0; i < run->n; i++) {
        step_rt *s = &run->st[i];
        if (s->state == RZ_STEP_PENDING || s->state == RZ_STEP_READY ||
            s->state == RZ_STEP_BACKOFF) {
            set_state(run, i, RZ_STEP_CANCELLED);
            set_error(s, NULL);
            run->settled++;
        }
    }
    if (run->settled == run->n)
        finish_outputs(run);
    return RZ_OK;
}

/* ---- Queries -------------------------------------------------------------- */

rz_run_state rz_run_state_get(const rz_run *run)
{
    if (!run || run->settled < run->n)
        return RZ_RUN_RUNNING;
    if (run->cancelled)
        return RZ_RUN_CANCELLED;
    return run->fatal ? RZ_RUN_FAILED : RZ_RUN_SUCCEEDED;
}

int rz_run_done(const rz_run *run)
{
    return run && run->settled == run->n;
}

const char *rz_run_id(const rz_run *run)
{
    return run ? run->id : NULL;
}

const rz_flow *rz_run_flow(const rz_run *run)
{
    return run ? run->flow : NULL;
}

rz_step_state rz_run_step_state(const rz_run *run, size_t step)
{
    return run && step < run->n_tasks ? run->st[step].state : RZ_STEP_PENDING;
}

uint32_t rz_run_step_attempts(const rz_run *run, size_t step)
{
    return run && step < run->n_tasks ? run->st[step].attempts : 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t left)
{
    size_t n = p[0] < 0x80 ? 1 : (p[0] & 0xE0) == 0xC0 ? 2 :
               (p[0] & 0xF0) == 0xE0 ? 3 : (p[0] & 0xF8) == 0xF0 ? 4 : 0;
    if (n == 0 || n > left || (n == 2 && p[0] < 0xC2))
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Logs are arbitrary bytes; the run record is JSON. Keep text, newlines
 * and tabs; every other control byte or broken UTF-8 becomes '?'. */
static char *log_text(const char *log, size_t len)
{
    char *out = rz__malloc(len + 1);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)log;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_len(p + i, len - i);
        bool ok = n > 1 || (n == 1 && (p[i] >= 0x20 || p[i] == '\n' ||
                                       p[i] == '\t') && p[i] != 0x7f);
        if (!ok) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, p + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

int rz_run_set_step_log(rz_run *run, size_t step, const char *log, size_t len)
{
    if (!run || step >= run->n_tasks || (!log && len))
        return rz__error(RZ_EINVAL, "rz_run_set_step_log: invalid arguments");
    if (len > RZ_RUN_LOG_MAX) {   /* keep the tail: that is where errors are */
        log += len - RZ_RUN_LOG_MAX;
        len = RZ_RUN_LOG_MAX;
    }
    char *text = len ? log_text(log, len) : NULL;
    if (len && !text)
        return rz__error(RZ_ENOMEM, "out of memory");
    free(run->st[step].log);
    run->st[step].log = text;
    return RZ_OK;
}

const char *rz_run_step_log(const rz_run *run, size_t step)
{
    return run && step < run->n_tasks ? run->st[step].log : NULL;
}

const char *rz_run_step_error(const rz_run *run, size_t step)
{
    return run && step < run->n_tasks ? run->st[step].error : NULL;
}

/* ---- Requests and JSON ---------------------------------------------------- */

static int set_key(cJSON *obj, const char *key, cJSON *v)
{
    if (!v)
        return rz__error(RZ_ENOMEM, "out of memory");
    bool ok = cJSON_GetObjectItemCaseSensitive(obj, key)
                  ? cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v)
                  : cJSON_AddItemToObject(obj, key, v);
    if (!ok) {
        cJSON_Delete(v);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    return RZ_OK;
}

/* Builder connections first, then the step's own `inputs`, which win. */
static int request_inputs(const rz_run *r, size_t step, cJSON *inputs)
{
    const rz_flow *f = r->flow;
    size_t si = step < r->n ? step : r->st[step].parent;
    ((rz_run *)r)->cur = step;   /* each.*: this element's (a cache field) */
    for (size_t k = r->conn_off[si]; k < r->conn_off[si + 1]; k++) {
        const rz__conn *c = &f->conns[r->conn[k]];
        const cJSON *v = r->st[c->src].outputs
            ? cJSON_GetObjectItemCaseSensitive(r->st[c->src].outputs, c->src_port)
            : NULL;
        if (v && set_key(inputs, c->dst_port, cJSON_Duplicate(v, true)) != RZ_OK)
            return RZ_ENOMEM;
    }
    const rz__step *st = step_of(r, step);
    for (size_t k = 0; k < st->n_inputs; k++) {
        cJSON *v = NULL;
        int rc = eval_value(r, st->inputs[k].value, &v);
        if (rc != RZ_OK) {
            char where[300];
            snprintf(where, sizeof where, "input '%s'", st->inputs[k].name);
            return error_in(rc, st->id, where);
        }
        if (set_key(inputs, st->inputs[k].name, v) != RZ_OK)
            return RZ_ENOMEM;
    }
    return RZ_OK;
}

/* A required module input that would arrive as null (nothing given, a
 * source that returned none, an expression that came out null) fails the
 * step here, before a node sees it. */
static int check_required(const rz_run *r, size_t step, const cJSON *inputs)
{
    const rz__step *st = step_of(r, step);
    const rz_module *m = st->module;
    for (size_t k = 0; m && k < m->n_inputs; k++) {
        const rz__port *p = &m->inputs[k];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(inputs, p->name);
        if (p->required && (!v || cJSON_IsNull(v)))
            return rz__error(RZ_EINVALID, "required input '%s' of step '%s' (module "
                             "%s@%s) would receive null", p->name, st->id, m->id,
                             m->version);
    }
    return RZ_OK;
}

int rz_run_step_inputs(const rz_run *run, size_t step, char **out)
{
    *out = NULL;
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    if (!run->st[step].attempts)
        return rz__error(RZ_ESTATE, "step '%s' never started", step_of(run, step)->id);
    if (run->st[step].mapped)
        return mapped(run, step, "rebuild the inputs of");
    cJSON *inputs = cJSON_CreateObject();
    rc = inputs ? request_inputs(run, step, inputs) : rz__error(RZ_ENOMEM, "out of memory");
    if (rc == RZ_OK && !(*out = cJSON_PrintUnformatted(inputs)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(inputs);
    return rc;
}

int rz_run_request(const rz_run *run, size_t step, char **out)
{
    *out = NULL;
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    rz_step_state s = run->st[step].state;
    if (s != RZ_STEP_READY && s != RZ_STEP_RUNNING)
        return wrong_state(run, step, "build the request of");
    if (run->st[step].mapped)
        return mapped(run, step, "build the request of");
    cJSON *req = cJSON_CreateObject();
    cJSON *inputs = cJSON_CreateObject();
    cJSON *config = NULL;
    if (!req || !inputs) {
        cJSON_Delete(req);
        cJSON_Delete(inputs);
        return rz__error(RZ_ENOMEM, "out of memory");
    }
    rc = set_key(req, "inputs", inputs);
    if (rc == RZ_OK)
        rc = request_inputs(run, step, inputs);
    if (rc == RZ_OK)
        rc = check_required(run, step, inputs);
    if (rc == RZ_OK) {
        const cJSON *cfg = step_of(run, step)->config;
        ((rz_run *)run)->cur = step;
        rc = cfg ? eval_value(run, cfg, &config) : RZ_OK;
        if (rc != RZ_OK)
            rc = error_in(rc, step_of(run, step)->id, "config");
        else
            rc = set_key(req, "config", config ? config : cJSON_CreateObject());
    }
    if (rc == RZ_OK && !(*out = rz__json_print(req, false)))
        rc = rz__error(RZ_ENOMEM, "out of memory");
    cJSON_Delete(req);
    return rc;
}

int rz_run_step_outputs(const rz_run *run, size_t step, char **out)
{
    *out = NULL;
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    const cJSON *o = run->st[step].outputs;
    *out = o ? rz__json_print(o, false) : rz__strdup("{}");
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

static cJSON *step_json_with(const rz_run *r, size_t i, bool elements);

static cJSON *step_json(const rz_run *r, size_t i)
{
    return step_json_with(r, i, true);
}

/* When a step ran, in the caller's milliseconds since the run was made:
 * "started_ms" once it has started, "duration_ms" (first start to last
 * end, retries included) once it has ended. What a watcher of a finished
 * run shows instead of the times it saw. */
static bool add_times(const rz_run *r, const step_rt *s, cJSON *o)
{
    if (!s->attempts)
        return true;
    uint64_t c = r->created_ms, at = s->started_ms > c ? s->started_ms - c : 0;
    bool ended = s->state >= RZ_STEP_SUCCEEDED && s->ended_ms >= s->started_ms;
    return cJSON_AddNumberToObject(o, "started_ms", (double)at) &&
           (!ended || cJSON_AddNumberToObject(o, "duration_ms",
                                              (double)(s->ended_ms - s->started_ms)));
}

/* ---- usage and cost (lib/run/usage.h) ---- */

/* Sums stop at 2^53, the largest whole number JSON carries exactly: a cost
 * is never shown wrapped around or rounded. */
#define USAGE_MAX 9007199254740992ull

static uint64_t usage_add(uint64_t a, uint64_t b)
{
    a = a < USAGE_MAX ? a : USAGE_MAX;
    return b >= USAGE_MAX - a ? USAGE_MAX : a + b;
}

int rz__run_add_usage(rz_run *run, size_t task, uint64_t run_ms, bool priced,
                      uint64_t micros)
{
    if (!run || task >= run->n_tasks)
        return rz__error(RZ_EINVAL, "rz__run_add_usage: no task %zu", task);
    if (task >= run->n_usage) {
        size_t n = run->n_tasks > 2 * run->n_usage ? run->n_tasks : 2 * run->n_usage;
        usage *u = realloc(run->usage, n * sizeof *u);
        if (!u)
            return rz__error(RZ_ENOMEM, "out of memory");
        memset(u + run->n_usage, 0, (n - run->n_usage) * sizeof *u);
        run->usage = u;
        run->n_usage = n;
    }
    usage *u = &run->usage[task];
    u->run_ms = usage_add(u->run_ms, run_ms);
    if (priced && (!u->used || u->priced))
        u->micros = usage_add(u->micros, micros);
    u->priced = priced && (!u->used || u->priced);
    u->used = true;
    return RZ_OK;
}

/* Task `i`'s usage, a for_each step's summed over its elements; false when
 * none was measured. */
static bool task_usage(const rz_run *r, size_t i, usage *out)
{
    memset(out, 0, sizeof *out);
    out->priced = true;
    const step_rt *s = &r->st[i];
    bool map = i < r->n && s->mapped;
    for (size_t k = 0; k < (map ? s->n_el : 1); k++) {
        size_t t = map ? el_task(r, i, k) : i;
        if (t >= r->n_usage)
            continue;
        const usage *u = &r->usage[t];
        if (!u->used)
            continue;
        out->used = true;
        out->run_ms = usage_add(out->run_ms, u->run_ms);
        out->micros = usage_add(out->micros, u->micros);
        out->priced &= u->priced;
    }
    return out->used;
}

static bool add_usage(const rz_run *r, size_t i, cJSON *o)
{
    usage u;
    if (!r->usage || !task_usage(r, i, &u))
        return true;
    return cJSON_AddNumberToObject(o, "run_ms", (double)u.run_ms) &&
           (!u.priced || cJSON_AddNumberToObject(o, "cost_micros", (double)u.micros));
}

/* The run's: "run_ms" and "cost_micros" over the steps that were priced,
 * and "unpriced_steps" naming those no node class fit. */
static bool add_run_usage(const rz_run *r, cJSON *root)
{
    if (!r->usage)
        return true;
    uint64_t ms = 0, micros = 0;
    cJSON *unpriced = cJSON_CreateArray();
    bool ok = unpriced != NULL;
    for (size_t i = 0; ok && i < r->n; i++) {
        usage u;
        if (!task_usage(r, i, &u))
            continue;
        ms = usage_add(ms, u.run_ms);
        if (u.priced)
            micros = usage_add(micros, u.micros);
        else
            ok = cJSON_AddItemToArray(unpriced, cJSON_CreateString(step_of(r, i)->id));
    }
    ok = ok && cJSON_AddNumberToObject(root, "run_ms", (double)ms) &&
         cJSON_AddNumberToObject(root, "cost_micros", (double)micros);
    if (ok && cJSON_GetArraySize(unpriced))
        return cJSON_AddItemToObject(root, "unpriced_steps", unpriced);
    cJSON_Delete(unpriced);
    return ok;
}

static cJSON *step_json_with(const rz_run *r, size_t i, bool elements)
{
    const step_rt *s = &r->st[i];
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "status", rz_step_state_name(s->state)) ||
        !cJSON_AddNumberToObject(o, "attempts", s->attempts) || !add_usage(r, i, o)) {
        cJSON_Delete(o);
        return NULL;
    }
    cJSON *outs = s->outputs ? cJSON_Duplicate(s->outputs, true)
                             : cJSON_CreateObject();
    if (!outs || !cJSON_AddItemToObject(o, "outputs", outs)) {
        cJSON_Delete(outs);
        cJSON_Delete(o);
        return NULL;
    }
    if (!add_times(r, s, o) ||
        (s->error && !cJSON_AddStringToObject(o, "error", s->error)) ||
        (s->log && !cJSON_AddStringToObject(o, "log", s->log)) ||
        (s->warning && !cJSON_AddStringToObject(o, "warning", s->warning))) {
        cJSON_Delete(o);
        return NULL;
    }
    if (i < r->n && step_of(r, i)->service &&
        !cJSON_AddNumberToObject(o, "events", s->emitted)) {
        cJSON_Delete(o);
        return NULL;
    }
    if (!s->mapped || !elements)
        return o;
    /* Each element's own record, in list order; an event step's "runs",
     * one per event, with the event's id. */
    cJSON *els = cJSON_AddArrayToObject(o, s->els ? "runs" : "elements");
    for (size_t k = 0; els && k < s->n_el; k++) {
        const step_rt *el = &r->st[el_task(r, i, k)];
        cJSON *ej = step_json(r, el_task(r, i, k));
        const char *eid = s->els ? cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(el->value, "id")) : NULL;
        const char *ekey = s->els ? cJSON_GetStringValue(
            cJSON_GetObjectItemCaseSensitive(el->value, "key")) : NULL;
        if (ej && ekey && !cJSON_AddStringToObject(ej, "event_key", ekey)) {
            cJSON_Delete(ej);
            ej = NULL;
        }
        if (ej && eid && !cJSON_AddStringToObject(ej, "event_id", eid)) {
            cJSON_Delete(ej);
            ej = NULL;
        }
        if (!ej || !cJSON_AddItemToArray(els, ej)) {
            cJSON_Delete(ej);
            els = NULL;
        }
    }
    if (!els) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

int rz_run_step_times(const rz_run *run, size_t step, uint64_t *started_ms,
                      uint64_t *ended_ms)
{
    int rc = check_step(run, step);
    if (rc != RZ_OK)
        return rc;
    const step_rt *s = &run->st[step];
    if (!s->attempts)
        return rz__error(RZ_ESTATE, "step '%s' never started", step_of(run, step)->id);
    uint64_t c = run->created_ms;
    bool ended = s->state >= RZ_STEP_SUCCEEDED && s->ended_ms >= s->started_ms;
    *started_ms = s->started_ms > c ? s->started_ms - c : 0;
    *ended_ms = ended && s->ended_ms > c ? s->ended_ms - c : 0;
    return RZ_OK;
}

cJSON *rz__run_step_json(const rz_run *run, size_t step)
{
    return step < run->n_tasks ? step_json(run, step) : NULL;
}

cJSON *rz__run_step_json_brief(const rz_run *run, size_t step)
{
    return step < run->n_tasks ? step_json_with(run, step, false) : NULL;
}

size_t rz_run_task_count(const rz_run *run)
{
    return run ? run->n_tasks : 0;
}

size_t rz_run_task_step(const rz_run *run, size_t task, size_t *element)
{
    if (element)
        *element = (size_t)-1;
    if (!run || task >= run->n_tasks)
        return (size_t)-1;
    if (task < run->n)
        return task;
    if (element)
        *element = run->st[task].index;
    return run->st[task].parent;
}

/* A final step is one no other step depends on (the on_exit step, which
 * depends on all, aside; it is never final itself). */
static bool is_final(const rz_run *r, size_t i)
{
    if (step_of(r, i)->is_exit)
        return false;
    for (size_t k = r->succ_off[i]; k < r->succ_off[i + 1]; k++)
        if (!step_of(r, r->succ[k])->is_exit)
            return false;
    return true;
}

/* steps NULL: the step's object is left out (rz__run_json_summary). */
static bool add_step(const rz_run *r, size_t i, cJSON *steps, cJSON *outs)
{
    const char *id = step_of(r, i)->id;
    cJSON *sj = steps ? step_json(r, i) : NULL;
    if (steps && (!sj || !cJSON_AddItemToObject(steps, id, sj))) {
        cJSON_Delete(sj);
        return false;
    }
    if (r->st[i].state != RZ_STEP_SUCCEEDED || !is_final(r, i) || r->flow->n_outputs)
        return true;
    cJSON *o = cJSON_Duplicate(r->st[i].outputs, true);
    if (!o || !cJSON_AddItemToObject(outs, id, o)) {
        cJSON_Delete(o);
        return false;
    }
    return true;
}

/* A flow that declares outputs shows them (null while the run is going);
 * "failed_steps" says which steps failed even when the run succeeded
 * (on_failure: continue). */
static bool add_flow_results(const rz_run *r, cJSON *root, cJSON *outs)
{
    const rz_flow *f = r->flow;
    for (size_t k = 0; k < f->n_outputs; k++) {
        const cJSON *v = r->outputs ? cJSON_GetObjectItemCaseSensitive(
                                          r->outputs, f->outputs[k].name) : NULL;
        cJSON *c = v ? cJSON_Duplicate(v, true) : cJSON_CreateNull();
        if (!c || !cJSON_AddItemToObject(outs, f->outputs[k].name, c)) {
            cJSON_Delete(c);
            return false;
        }
    }
    if (r->outputs_error && !cJSON_AddStringToObject(root, "error", r->outputs_error))
        return false;
    cJSON *failed = failed_steps(r);
    if (!failed)
        return false;
    if (!cJSON_GetArraySize(failed)) {
        cJSON_Delete(failed);
        return true;
    }
    if (!cJSON_AddItemToObject(root, "failed_steps", failed)) {
        cJSON_Delete(failed);
        return false;
    }
    return true;
}

static cJSON *run_json(const rz_run *r, bool with_steps)
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root && cJSON_AddStringToObject(root, "id", r->id) &&
              cJSON_AddStringToObject(root, "flow", rz_flow_name(r->flow)) &&
              cJSON_AddStringToObject(root, "status",
                                      rz_run_state_name(rz_run_state_get(r)));
    cJSON *steps = ok && with_steps ? cJSON_AddObjectToObject(root, "steps")
                                    : NULL;
    cJSON *outs = ok && (steps || !with_steps)
                ? cJSON_AddObjectToObject(root, "outputs") : NULL;
    ok = outs != NULL;
    for (size_t i = 0; ok && i < r->n; i++)
        ok = add_step(r, i, steps, outs);
    if (ok)
        ok = add_flow_results(r, root, outs) && add_run_usage(r, root);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

cJSON *rz__run_json(const rz_run *run)
{
    return run_json(run, true);
}

cJSON *rz__run_json_summary(const rz_run *run)
{
    return run_json(run, false);
}

static int run_text(const rz_run *run, bool with_steps, char **out)
{
    *out = NULL;
    if (!run)
        return rz__error(RZ_EINVAL, "run is NULL");
    cJSON *root = run_json(run, with_steps);
    *out = root ? rz__json_print(root, false) : NULL;
    cJSON_Delete(root);
    return *out ? RZ_OK : rz__error(RZ_ENOMEM, "out of memory");
}

int rz_run_to_json(const rz_run *run, char **out)
{
    return run_text(run, true, out);
}

int rz_run_summary_to_json(const rz_run *run, char **out)
{
    return run_text(run, false, out);
}

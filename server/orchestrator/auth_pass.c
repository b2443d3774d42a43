/* A pass's writes to the auth store, made durable by the engine's commit.
 *
 * A result's pass puts the node's signed result record and the job's log
 * into the auth store, and the audit head moves there too. Committed on
 * their own, the auth store's group would cost a fdatasync and an O_DSYNC
 * meta page in series with the engine's two, on every result. Instead each
 * such put also goes into the engine's extra records (rz_engine_extra_put)
 * as a redo copy, which the pass's engine commit makes durable in the same
 * LMDB transaction as the result itself; the auth store's group then stays
 * open past the pass ("kept") and is committed once AUTH_LAG_MS later, or
 * sooner by a pass that holds a write without a copy (a key, an account,
 * a withdrawal, a streamed log: those are answered only once the auth
 * store is durable). After each durable commit of the group the copies it
 * covered are deleted from the engine with its next commit (a call's, a
 * compaction's or the close's).
 *
 * Each copy carries a sequence number; the group's commit also writes the
 * highest one it covers (rz_auth_redo_mark_put), so the mark is durable
 * exactly when those copies' writes are. A copy at or below the mark is
 * never put back: its write is in the store already, maybe overwritten
 * since by a newer one (a log written at a stop with no copy).
 *
 * Crash story: a reply leaves once the engine's commit is durable, so
 * every acknowledged result has, in one transaction, its job's outcome
 * and the redo copies of its record and log. A crash (process or power)
 * while the group is kept loses the auth store's side only: at the next
 * start, once the engine and ledger agree, auth_redo_replay puts back
 * every copy above the mark whose job the engine still has (a job
 * retention removed keeps nothing; a job missing otherwise refuses the
 * start: the engine is not the one the copies were made with), commits
 * that with the new mark, and deletes the copies with the engine's next
 * commit; a crash in between replays them again. The audit head needs no
 * copy: a head behind the log is accepted at start (audit.c). A failed
 * commit of the group keeps its notes and the mark where it was; the
 * group is rebuilt from the engine's copies on a backoff (retry_fired;
 * at the end of the pass the timer fires in), the same way as at start,
 * and no group is kept until then.
 * The group's timer may fire inside a pass (a loop round runs its ready
 * requests first): that pass still keeps it, and it is committed after
 * the pass's replies (auth_pass_end), never in series with them.
 * The kept group is committed before anything whose order against the
 * auth store matters: retention (its forgets go first, retain.c), a
 * backup (the files copied between passes are then whole), a stop, a
 * write between passes (auth.c), and a pass that cannot group (its writes
 * are then durable one by one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

#define AUTH_LAG_MS 50
#define REDO_KEY_MAX 14
#define REDO_SEQ_LEN 8          /* a copy's value: its sequence, the bytes */
#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

bool (*auth_commit_seam)(orch *o, bool settle);
bool auth_timers_in_pass;

/* A redo copy's key in the engine's extra records: "ar" + job (a signed
 * result's record) or "al" + job + attempt (a log), big-endian. */
struct auth_redo {
    unsigned char k[REDO_KEY_MAX];
    size_t len;
};

static size_t redo_key(unsigned char k[REDO_KEY_MAX], char kind, uint64_t job,
                       uint32_t attempt)
{
    k[0] = 'a';
    k[1] = (unsigned char)kind;
    for (int i = 0; i < 8; i++)
        k[2 + i] = (unsigned char)(job >> (56 - 8 * i));
    if (kind == 'r')
        return 10;
    for (int i = 0; i < 4; i++)
        k[10 + i] = (unsigned char)(attempt >> (24 - 8 * i));
    return REDO_KEY_MAX;
}

static uint64_t be_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Remember a key whose copy the next durable group commit covers. */
static bool redo_note(orch *o, const unsigned char *k, size_t len)
{
    if (o->n_redo == o->cap_redo) {
        size_t cap = o->cap_redo ? 2 * o->cap_redo : 64;
        struct auth_redo *r = realloc(o->redo, cap * sizeof *r);
        if (!r)
            return false;
        o->redo = r;
        o->cap_redo = cap;
    }
    memcpy(o->redo[o->n_redo].k, k, len);
    o->redo[o->n_redo++].len = len;
    return true;
}

/* A put just made in the pass's group gets its copy, the next sequence
 * number first: covered when both the copy and its note are made (else
 * the pass commits the group). */
static void redo_add(orch *o, char kind, uint64_t job, uint32_t attempt,
                     const void *val, size_t len)
{
    if (!o->grouped || !rz_engine_in_group(o->e))
        return;
    unsigned char k[REDO_KEY_MAX];
    size_t kl = redo_key(k, kind, job, attempt);
    unsigned char *v = malloc(REDO_SEQ_LEN + len);
    if (!v)
        return;
    uint64_t seq = o->redo_seq + 1;
    for (int i = 0; i < REDO_SEQ_LEN; i++)
        v[i] = (unsigned char)(seq >> (56 - 8 * i));
    if (len)
        memcpy(v + REDO_SEQ_LEN, val, len);
    if (redo_note(o, k, kl) &&
        rz_engine_extra_put(o->e, k, kl, v, REDO_SEQ_LEN + len) == RZ_OK) {
        o->redo_seq = o->redo_group_max = seq;
        o->auth_covered++;
    }
    free(v);
}

int auth_put_result(orch *o, uint64_t job, const char *rec)
{
    auth_settle(o);   /* between passes: on its own, not in a kept group */
    int rc = rz_auth_result_put(o->auth, job, rec);
    if (rc == RZ_OK)
        redo_add(o, 'r', job, 0, rec, strlen(rec));
    return rc;
}

int auth_put_log_bytes(orch *o, uint64_t job, uint32_t attempt,
                       const char *bytes, size_t len, bool redo)
{
    auth_settle(o);
    int rc = rz_auth_attempt_log_put(o->auth, job, attempt, bytes, len);
    if (rc == RZ_OK && redo)
        redo_add(o, 'l', job, attempt, bytes, len);
    return rc;
}

void auth_write_covered(orch *o)
{
    if (o->grouped || o->auth_kept)
        o->auth_covered++;
}

/* The copies the group's durable commit covered leave the engine with
 * its next commit. */
static void redo_drop(orch *o)
{
    for (size_t i = 0; i < o->n_redo; i++)
        if (rz_engine_extra_del(o->e, o->redo[i].k, o->redo[i].len) != RZ_OK)
            break;   /* a broken engine: they are replayed at the next start */
    o->n_redo = 0;
}

static void retry_fired(evutil_socket_t fd, short what, void *arg);
static void redo_retry(orch *o);

static void retry_arm(orch *o, uint64_t ms)
{
    if (auth_timers_in_pass) {
        o->redo_retry_in_pass = true;
        return;
    }
    if (!o->redo_retry_ev &&
        !(o->redo_retry_ev = evtimer_new(o->base, retry_fired, o)))
        return;
    struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000) };
    (void)!evtimer_add(o->redo_retry_ev, &tv);
}

/* The group's writes are lost: its copies stay (notes too) until a
 * rebuild from the engine's copies puts them back, on a backoff. */
static void redo_failed(orch *o, const char *why)
{
    o->auth_commit_failures++;
    o->redo_failing = true;
    o->redo_retry_ms = o->redo_retry_ms ? o->redo_retry_ms * 2 : RETRY_MIN_MS;
    if (o->redo_retry_ms > RETRY_MAX_MS)
        o->redo_retry_ms = RETRY_MAX_MS;
    if (!o->base || o->stopping) {   /* at start or stop: the next start rebuilds */
        orch_log(o, ORCH_LOG_ERROR, "auth_commit_failed", "reason", LOG_STR, why,
                 "rebuild", LOG_STR, "at the next start", NULL);
        return;
    }
    orch_log(o, ORCH_LOG_ERROR, "auth_commit_failed", "reason", LOG_STR, why,
             "rebuild_in_ms", LOG_U64, o->redo_retry_ms, NULL);
    retry_arm(o, o->redo_retry_ms);
}

/* The mark of the copies the group holds goes into it: durable with
 * their writes. Not while a rebuild is due: the writes of the copies
 * below it are not in the store. */
static int mark_put(orch *o)
{
    if (o->redo_group_max <= o->redo_mark || o->redo_failing)
        return RZ_OK;
    return rz_auth_redo_mark_put(o->auth, o->redo_group_max);
}

/* Commit whatever group is open. A failure loses the group's puts here
 * (a pass's replies say so when it held writes without copies); their
 * copies stay in the engine for the rebuild. */
static int group_commit_at(orch *o, bool settle)
{
    int rc = mark_put(o);
    const char *why = "a test fault";
    if (rc == RZ_OK && auth_commit_seam && auth_commit_seam(o, settle)) {
        rc = RZ_EIO;
    } else if (rc == RZ_OK) {
        rc = rz_auth_group_commit(o->auth);
        why = rc == RZ_OK ? why : rz_error_last()->message;
    } else
        why = rz_error_last()->message;
    if (rc != RZ_OK) {
        (void)!rz_auth_group_abort(o->auth);   /* after a failed mark */
        keycache_clear(o);   /* a key read inside the group is gone again */
    }
    uint64_t max = o->redo_group_max;
    o->auth_kept = o->auth_settle_due = o->auth_settle_late = false;
    o->auth_lag_in_pass = false;
    o->auth_covered = o->redo_group_max = 0;
    if (o->auth_lag_ev)
        evtimer_del(o->auth_lag_ev);
    if (rc != RZ_OK && (max || o->n_redo)) {
        redo_failed(o, why);
        return rc;
    }
    if (rc != RZ_OK) {   /* no copies: the pass's replies say it */
        o->auth_commit_failures++;
        orch_log(o, ORCH_LOG_ERROR, "auth_commit_failed", "reason", LOG_STR, why, NULL);
        return rc;
    }
    if (!o->redo_failing) {   /* else the rebuild deletes them */
        o->redo_mark = max > o->redo_mark ? max : o->redo_mark;
        redo_drop(o);
    }
    return RZ_OK;
}

static int group_commit(orch *o)
{
    return group_commit_at(o, false);
}

/* A kept group's time is up: it is committed now, or after the replies
 * of the pass it fired in (auth_pass_end). */
static void lag_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    if (o->grouped) {
        o->auth_settle_due = true;
        return;
    }
    o->auth_settle_due = o->auth_settle_late = false;
    auth_settle(o);
}

static bool lag_timer(orch *o)
{
    return o->auth_lag_ev || (o->auth_lag_ev = evtimer_new(o->base, lag_fired, o));
}

void auth_settle(orch *o)
{
    if (!o->auth_kept || o->grouped)
        return;
    o->auth_lag_commits++;
    (void)!group_commit_at(o, true);   /* a failure is logged and retried */
}

void auth_stop(orch *o)
{
    o->auth_lag_commits += o->auth_kept;
    /* The copies' deletes go with the engine's close. A failure leaves
     * them: the next start puts their records back. */
    (void)!group_commit(o);
}

/* Kept: its timer runs from the first pass that kept it. */
static bool keep(orch *o)
{
    if (auth_timers_in_pass) {
        o->auth_lag_in_pass = true;
    } else {
        if (!lag_timer(o))
            return false;
        struct timeval tv = { 0, AUTH_LAG_MS * 1000 };
        if (!evtimer_pending(o->auth_lag_ev, NULL) && evtimer_add(o->auth_lag_ev, &tv) != 0)
            return false;
    }
    o->auth_kept = true;
    return true;
}

/* Tests only: the timers held for a pass fire inside it. */
static void timers_in_pass(orch *o)
{
    if (o->auth_lag_in_pass) {
        o->auth_lag_in_pass = false;
        lag_fired(-1, EV_TIMEOUT, o);
    }
    if (o->redo_retry_in_pass) {
        o->redo_retry_in_pass = false;
        retry_fired(-1, EV_TIMEOUT, o);
    }
}

/* A kept group whose time ran out inside this pass stays kept when the
 * pass adds only covered writes: committing it here would put its two
 * syncs before the engine's, in series with this pass's replies, and a
 * failure on them. auth_pass_end commits it instead. */
int auth_pass_commit(orch *o)
{
    timers_in_pass(o);
    uint64_t writes = rz_auth_group_writes(o->auth);
    bool covered = writes == o->auth_covered;
    if (writes && covered && !o->stopping && !o->redo_failing && keep(o))
        return RZ_OK;
    if (writes && covered && !o->redo_failing)
        o->auth_lag_commits++;   /* a kept group at a stop */
    else
        o->auth_pass_commits += writes > 0;
    return group_commit(o);
}

/* The replies are queued, not yet written: libevent writes them in the
 * next loop round, before a timer of 0 ms that expires in it. A round
 * whose requests come first (the timer then fires in their pass) puts
 * the commit off once; the next pass's end commits it at once. */
static void settle_after_replies(orch *o)
{
    if (!o->auth_settle_due || !o->auth_kept)
        return;
    struct timeval now = { 0, 0 };
    if (!o->auth_settle_late && lag_timer(o) && evtimer_add(o->auth_lag_ev, &now) == 0) {
        o->auth_settle_late = true;
        return;
    }
    o->auth_settle_due = o->auth_settle_late = false;
    auth_settle(o);
}

void auth_pass_end(orch *o)
{
    settle_after_replies(o);
    if (o->redo_rebuild_due) {
        o->redo_rebuild_due = false;
        redo_retry(o);
    }
}

/* ---- at start, and after a failed commit: the copies put back ---- */

typedef struct replay {
    orch *o;
    uint64_t mark;      /* the store's: copies at or below it are in it */
    uint64_t max;       /* the highest sequence seen */
    uint64_t put, stale, gone, bad;
    char why[512];      /* a put's failure (extra_each says "stopped") */
} replay;

/* A copy whose key or value this version does not read: left alone
 * (another version's, or damage), said once. */
static int replay_skip(replay *r, const unsigned char *k, size_t klen,
                       size_t vlen)
{
    r->bad++;
    orch_log(r->o, ORCH_LOG_WARN, "auth_redo_skipped", "kind", LOG_U64,
             (uint64_t)(klen > 1 ? k[1] : 0), "key_bytes", LOG_U64,
             (uint64_t)klen, "value_bytes", LOG_U64, (uint64_t)vlen, NULL);
    return 0;
}

static int replay_put(replay *r, const unsigned char *k, size_t klen,
                      const unsigned char *val, size_t vlen)
{
    orch *o = r->o;
    uint64_t job = be_u64(k + 2);
    rz_engine_job_info ji;
    int rc = rz_engine_job_get(o->e, job, &ji);
    if (rc == RZ_ENOENT && rz_engine_compacted_id(o->e, 0, job)) {
        r->gone++;   /* removed by retention: its records went with it */
        return 0;
    }
    if (rc == RZ_ENOENT) {   /* never removed: the engine lost it, or damage */
        snprintf(r->why, sizeof r->why, "the engine has no job %llu, which a "
                 "redo copy names, and retention did not remove it: restore "
                 "the data directory from a backup (docs/ledger.md, "
                 "\"Recovery\")", (unsigned long long)job);
        return -1;
    }
    if (rc != RZ_OK) {   /* a damaged record: not a reason to drop the copy */
        snprintf(r->why, sizeof r->why, "%s", rz_error_last()->message);
        return -1;
    }
    if (k[1] == 'r') {
        char *text = malloc(vlen + 1);
        if (!text) {
            snprintf(r->why, sizeof r->why, "out of memory");
            return -1;
        }
        memcpy(text, val, vlen);
        text[vlen] = '\0';
        rc = rz_auth_result_put(o->auth, job, text);
        free(text);
    } else {
        uint32_t att = (uint32_t)k[10] << 24 | (uint32_t)k[11] << 16 |
                       (uint32_t)k[12] << 8 | k[13];
        rc = rz_auth_attempt_log_put(o->auth, job, att, (const char *)val, vlen);
    }
    if (rc != RZ_OK) {
        snprintf(r->why, sizeof r->why, "%s", rz_error_last()->message);
        return -1;
    }
    r->put++;
    return 0;
}

static int replay_one(void *arg, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    replay *r = arg;
    const unsigned char *k = key, *v = val;
    if (klen < 2 || k[0] != 'a')
        return 0;   /* not the auth store's */
    bool known = (k[1] == 'r' && klen == 10 && vlen > REDO_SEQ_LEN) ||
                 (k[1] == 'l' && klen == REDO_KEY_MAX && vlen >= REDO_SEQ_LEN);
    if (!known)
        return replay_skip(r, k, klen, vlen);
    if (!redo_note(r->o, k, klen)) {
        snprintf(r->why, sizeof r->why, "out of memory");
        return -1;
    }
    uint64_t seq = be_u64(v);
    r->max = seq > r->max ? seq : r->max;
    if (seq <= r->mark) {
        r->stale++;   /* its write is in the store, maybe overwritten since */
        return 0;
    }
    return replay_put(r, k, klen, v + REDO_SEQ_LEN, vlen - REDO_SEQ_LEN);
}

/* Every copy the engine holds above the store's mark put back in one
 * group, with the new mark; then the copies are deleted. */
static int redo_rebuild(orch *o, replay *r)
{
    *r = (replay){ .o = o };
    /* The engine holds every copy noted (none waits for a commit between
     * passes): the notes start again from them, not grow each try. */
    o->n_redo = 0;
    int rc = rz_auth_redo_mark_get(o->auth, &r->mark);
    if (rc == RZ_OK)
        rc = rz_auth_group_begin(o->auth);
    if (rc == RZ_OK)
        rc = rz_engine_extra_each(o->e, replay_one, r);
    if (rc != RZ_OK) {
        (void)!rz_auth_group_abort(o->auth);
        keycache_clear(o);
        redo_failed(o, r->why[0] ? r->why : rz_error_last()->message);
        return rc;
    }
    o->redo_mark = r->mark;
    o->redo_seq = r->max > o->redo_seq ? r->max : o->redo_seq;
    o->redo_seq = r->mark > o->redo_seq ? r->mark : o->redo_seq;
    o->redo_group_max = r->max;
    o->redo_failing = false;
    return group_commit(o);   /* the copies' deletes: on success only */
}

static void redo_retry(orch *o)
{
    replay r;
    if (redo_rebuild(o, &r) != RZ_OK)
        return;   /* logged, tried again later */
    o->redo_retry_ms = 0;
    o->auth_redo_rebuilds++;
    orch_log(o, ORCH_LOG_INFO, "auth_redo_rebuilt", "records", LOG_U64, r.put,
             "removed_jobs", LOG_U64, r.gone, NULL);
}

/* Inside a pass the store holds the pass's group: the rebuild is made
 * at its end (auth_pass_end), not put off on a timer that a busy
 * server's passes could keep meeting. */
static void retry_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    if (o->grouped) {
        o->redo_rebuild_due = true;
        return;
    }
    auth_settle(o);   /* none is kept while failing; if one were, first */
    redo_retry(o);
}

int auth_redo_replay(orch *o)
{
    replay r;
    int rc = redo_rebuild(o, &r);
    o->redo_start_put = r.put;
    o->redo_start_stale = r.stale;
    o->redo_start_gone = r.gone;
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": auth store: the results and logs the "
                "last run kept in the engine could not be put back: %s\n",
                r.why[0] ? r.why : rz_error_last()->message);
    else if (r.put || r.stale || r.gone)
        orch_log(o, ORCH_LOG_INFO, "auth_redo_replayed", "records", LOG_U64,
                 r.put, "stale", LOG_U64, r.stale, "removed_jobs", LOG_U64,
                 r.gone, NULL);
    return rc;
}

void auth_pass_free(orch *o)
{
    if (o->auth_lag_ev)
        event_free(o->auth_lag_ev);
    o->auth_lag_ev = NULL;
    if (o->redo_retry_ev)
        event_free(o->redo_retry_ev);
    o->redo_retry_ev = NULL;
    free(o->redo);
    o->redo = NULL;
    o->n_redo = o->cap_redo = 0;
}

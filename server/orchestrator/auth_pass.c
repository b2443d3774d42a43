/* A pass's writes to the auth store, made durable by the engine's commit.
 *
 * A result's pass puts the node's signed result record and the job's log
 * into the auth store, and the audit head moves there too. Committed on
 * their own, the auth store's group cost a fdatasync and an O_DSYNC meta
 * page in series with the engine's two, on every result. Instead each such
 * put also goes into the engine's extra records (rz_engine_extra_put) as a
 * redo copy, which the pass's engine commit makes durable in the same
 * LMDB transaction as the result itself; the auth store's group then stays
 * open past the pass ("kept") and is committed once AUTH_LAG_MS later, or
 * sooner by a pass that holds a write without a copy (a key, an account,
 * a withdrawal: those are answered only once the auth store is durable, as
 * before). After each durable commit of the group the copies it covered
 * are deleted from the engine with its next commit.
 *
 * Crash story: a reply leaves once the engine's commit is durable, so
 * every acknowledged result has, in one transaction, its job's outcome
 * and the redo copies of its record and log. A crash (process or power)
 * while the group is kept loses the auth store's side only: at the next
 * start auth_redo_replay puts every copy back into the auth store (puts
 * of the same keys: doing it twice changes nothing), commits that, and
 * deletes the copies with the engine's next commit; a crash in between
 * replays them again. A crash after the group's commit and before the
 * copies' deletes replays copies the store already holds. The audit head
 * needs no copy: a head behind the log is accepted at start (audit.c).
 * The kept group is committed before anything whose order against the
 * auth store matters: retention (its forgets go first, retain.c), a
 * backup (the files copied between passes are then whole), a stop, and a
 * pass that cannot group (its writes are then durable one by one). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

#define AUTH_LAG_MS 50
#define REDO_KEY_MAX 14

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

/* A put just made in the pass's group gets its copy: covered when both
 * the copy and its note are made (else the pass commits the group). */
static void redo_add(orch *o, char kind, uint64_t job, uint32_t attempt,
                     const void *val, size_t len)
{
    unsigned char k[REDO_KEY_MAX];
    size_t kl = redo_key(k, kind, job, attempt);
    if (!o->grouped || !rz_engine_in_group(o->e))
        return;
    if (redo_note(o, k, kl) &&
        rz_engine_extra_put(o->e, k, kl, len ? val : "", len) == RZ_OK)
        o->auth_covered++;
}

int auth_put_result(orch *o, uint64_t job, const char *rec)
{
    int rc = rz_auth_result_put(o->auth, job, rec);
    if (rc == RZ_OK)
        redo_add(o, 'r', job, 0, rec, strlen(rec));
    return rc;
}

int auth_put_log_bytes(orch *o, uint64_t job, uint32_t attempt,
                       const char *bytes, size_t len)
{
    int rc = rz_auth_attempt_log_put(o->auth, job, attempt, bytes, len);
    if (rc == RZ_OK)
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

/* Commit whatever group is open. A failure loses the group's puts here
 * (the pass's replies say so); their copies stay in the engine, so the
 * next start puts them back. */
static int group_commit(orch *o)
{
    int rc = rz_auth_group_commit(o->auth);
    o->auth_kept = o->auth_settle_due = false;
    o->auth_covered = 0;
    if (o->auth_lag_ev)
        evtimer_del(o->auth_lag_ev);
    if (rc == RZ_OK)
        redo_drop(o);
    o->n_redo = 0;
    return rc;
}

/* A kept group's time is up: it is committed now. */
static void lag_commit_counted(orch *o)
{
    /* Tests only: die with copies the auth store has not made durable, the
     * window auth_redo_replay covers (tests/e2e/orchestrator_abuse.py). */
    if (o->n_redo && getenv("RHIZOS_TEST_KILL_BEFORE_AUTH_COMMIT"))
        raise(SIGKILL);
    o->auth_lag_commits++;
}

static void lag_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    orch *o = arg;
    if (o->grouped)
        o->auth_settle_due = true;   /* the pass's end commits it */
    else
        auth_settle(o);
}

void auth_settle(orch *o)
{
    if (!o->auth_kept || o->grouped)
        return;
    lag_commit_counted(o);
    if (group_commit(o) != RZ_OK)
        orch_log(o, ORCH_LOG_ERROR, "auth_commit_failed", "reason", LOG_STR,
                 rz_error_last()->message, NULL);
}

void auth_stop(orch *o)
{
    o->auth_lag_commits += o->auth_kept;
    /* The copies' deletes go with the engine's close when it commits a
     * change; else the next start puts the same records back once more. */
    (void)!group_commit(o);
}

/* Kept: its timer runs from the first pass that kept it. */
static bool keep(orch *o)
{
    if (!o->auth_lag_ev && !(o->auth_lag_ev = evtimer_new(o->base, lag_fired, o)))
        return false;
    if (!evtimer_pending(o->auth_lag_ev, NULL)) {
        struct timeval tv = { 0, AUTH_LAG_MS * 1000 };
        if (evtimer_add(o->auth_lag_ev, &tv) != 0)
            return false;
    }
    o->auth_kept = true;
    return true;
}

int auth_pass_commit(orch *o)
{
    uint64_t writes = rz_auth_group_writes(o->auth);
    bool covered = writes <= o->auth_covered;
    if (writes && covered && !o->auth_settle_due && !o->stopping && keep(o))
        return RZ_OK;
    if (writes && covered)
        lag_commit_counted(o);   /* its time was up */
    else
        o->auth_pass_commits += writes > 0;
    return group_commit(o);
}

/* ---- the next start ---- */

static int replay_one(void *arg, const void *key, size_t klen, const void *val,
                      size_t vlen)
{
    orch *o = arg;
    const unsigned char *k = key;
    if (klen < 2 || k[0] != 'a')
        return 0;   /* not the auth store's */
    int rc = RZ_EINVAL;
    if (k[1] == 'r' && klen == 10 && vlen) {
        char *text = malloc(vlen + 1);
        if (!text)
            return -1;
        memcpy(text, val, vlen);
        text[vlen] = '\0';
        rc = rz_auth_result_put(o->auth, be_u64(k + 2), text);
        free(text);
    } else if (k[1] == 'l' && klen == REDO_KEY_MAX) {
        uint32_t att = (uint32_t)k[10] << 24 | (uint32_t)k[11] << 16 |
                       (uint32_t)k[12] << 8 | k[13];
        rc = rz_auth_attempt_log_put(o->auth, be_u64(k + 2), att, val, vlen);
    }
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": auth store: a redo record could not be "
                "put back: %s\n", rz_error_last()->message);
    return rc == RZ_OK && redo_note(o, key, klen) ? 0 : -1;
}

int auth_redo_replay(orch *o)
{
    int rc = rz_auth_group_begin(o->auth);
    if (rc == RZ_OK)
        rc = rz_engine_extra_each(o->e, replay_one, o);
    size_t n = o->n_redo;
    int crc = group_commit(o);   /* the copies' deletes: on success only */
    rc = rc != RZ_OK ? rc : crc;
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": auth store: the results and logs the "
                "last run kept in the engine could not be put back: %s\n",
                rz_error_last()->message);
    else if (n)
        orch_log(o, ORCH_LOG_INFO, "auth_redo_replayed", "records", LOG_U64,
                 (uint64_t)n, NULL);
    return rc;
}

void auth_pass_free(orch *o)
{
    if (o->auth_lag_ev)
        event_free(o->auth_lag_ev);
    o->auth_lag_ev = NULL;
    free(o->redo);
    o->redo = NULL;
    o->n_redo = o->cap_redo = 0;
}

/* ledger_bench: hold + settle cycles (a pending transfer, a partial post, a
 * payout and a fee: 4 transfers) at batch sizes 1, 100 and 8190, durable,
 * in the rhizos ledger and, in the same run, in SQLite (WAL,
 * synchronous=FULL, one transaction per batch).
 *
 * A batch is B ops in one durable commit: B holds, then B settles of them.
 * usage: ledger_bench [--dir DIR] [--scale F] [--batch B] [--only rhizos|sqlite]
 * (F multiplies the cycles; --batch and --only narrow the run, for profiling) */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "rhizos/ledger.h"

enum { CLIENTS = 1000, NODES = 100 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "ledger_bench: %s: %s\n", what, msg);
    exit(1);
}

static rz_ledger_id client(uint64_t i) { return rz_ledger_id_make(0, 1000 + i); }
static rz_ledger_id node(uint64_t i) { return rz_ledger_id_make(0, 5000 + i); }
static uint64_t hold_micros(uint64_t c) { return 100 + c % 900; }

/* ---- rhizos ---- */

typedef struct rz_side {
    rz_ledger *l;
    rz_ledger_op *ops;
    rz_ledger_result *res;
    double secs, cpu;
} rz_side;

/* CPU time of the process: less noisy than the clock on a shared machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rz_setup(rz_side *z, const char *dir)
{
    rz_ledger *l;
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    if (rz_ledger_open(&l, dir, &o) != RZ_OK)
        die("open", rz_error_last()->message);
    rz_ledger_op *ops = calloc(RZ_LEDGER_BATCH_MAX, sizeof *ops);
    rz_ledger_result *res = calloc(RZ_LEDGER_BATCH_MAX, sizeof *res);
    size_t n = 0;
    for (uint64_t i = 0; i < CLIENTS + NODES; i++) {
        ops[n].type = RZ_LEDGER_OP_CREATE_ACCOUNT;
        ops[n].id = i < CLIENTS ? client(i) : node(i - CLIENTS);
        ops[n++].kind = i < CLIENTS ? RZ_LEDGER_CLIENT : RZ_LEDGER_NODE;
    }
    for (uint64_t i = 0; i < CLIENTS; i++) {
        memset(&ops[n], 0, sizeof ops[n]);
        ops[n].type = RZ_LEDGER_OP_TEST_CREDIT;
        ops[n].id = rz_ledger_id_make(1, i);
        ops[n].account = client(i);
        ops[n++].amount = 1ull << 40;
    }
    if (rz_ledger_submit(l, ops, n, res) != RZ_OK)
        die("setup", rz_error_last()->message);
    for (size_t i = 0; i < n; i++)
        if (res[i].status != RZ_OK)
            die("setup", rz_status_name(res[i].status));
    if (rz_ledger_checkpoint(l) != RZ_OK)
        die("checkpoint", rz_error_last()->message);
    z->l = l;
    z->ops = ops;
    z->res = res;
    z->secs = 0;
}

/* Cycles [from, to) in batches; the time adds up across chunks. */
static void rz_chunk(rz_side *z, size_t batch, size_t from, size_t cycles,
                     bool last)
{
    rz_ledger *l = z->l;
    rz_ledger_op *ops = z->ops;
    rz_ledger_result *res = z->res;
    double t0 = now_s(), c0 = cpu_s();
    for (size_t done = from; done < cycles; done += batch) {
        size_t b = cycles - done < batch ? cycles - done : batch;
        for (size_t i = 0; i < b; i++) {
            uint64_t c = done + i;
            memset(&ops[i], 0, sizeof ops[i]);
            ops[i].type = RZ_LEDGER_OP_HOLD;
            ops[i].id = rz_ledger_id_make(2, c);
            ops[i].job = rz_ledger_id_make(3, c);
            ops[i].account = client(c % CLIENTS);
            ops[i].amount = hold_micros(c);
        }
        if (rz_ledger_submit(l, ops, b, res) != RZ_OK || res[0].status)
            die("hold", rz_error_last()->message);
        for (size_t i = 0; i < b; i++) {
            uint64_t c = done + i;
            memset(&ops[i], 0, sizeof ops[i]);
            ops[i].type = RZ_LEDGER_OP_SETTLE;
            ops[i].id = rz_ledger_id_make(4, c);
            ops[i].pending_id = rz_ledger_id_make(2, c);
            ops[i].counterparty = node(c % NODES);
            ops[i].amount = hold_micros(c) * 4 / 5;
        }
        if (rz_ledger_submit(l, ops, b, res) != RZ_OK || res[0].status)
            die("settle", rz_error_last()->message);
    }
    /* At the end, everything into LMDB too: the checkpoint is timed. */
    if (last && rz_ledger_checkpoint(l) != RZ_OK)
        die("checkpoint", rz_error_last()->message);
    z->secs += now_s() - t0;
    z->cpu += cpu_s() - c0;
    if (!last)
        return;
    if (rz_ledger_verify(l) != RZ_OK)
        die("verify", rz_error_last()->message);
    rz_ledger_close(l);
    free(ops);
    free(res);
}

/* ---- SQLite ---- */

static void exec(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        die(sql, err ? err : "?");
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL))
        die(sql, sqlite3_errmsg(db));
    return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die("step", sqlite3_errmsg(db));
    sqlite3_reset(st);
}

typedef struct sq {
    sqlite3 *db;
    sqlite3_stmt *funds, *ins, *hold_acct, *hold_escrow, *get_hold,
                 *resolve, *post_client, *escrow_settle, *credit,
                 *begin, *commit;
    double secs;
} sq;

static void bind(sqlite3_stmt *st, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 1; i <= n; i++)
        sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
    va_end(ap);
}

/* A transfer row: id, debit, credit, amount, pending_id, job, code,
 * flags, state. */
static void insert(sq *s, int64_t id, int64_t dr, int64_t cr, int64_t amt,
                   int64_t pid, int64_t job, int64_t code, int64_t flags,
                   int64_t state, int64_t ts)
{
    bind(s->ins, 10, id, dr, cr, amt, pid, job, code, flags, state, ts);
    step_done(s->db, s->ins);
}

static void sq_hold(sq *s, uint64_t c, int64_t ts)
{
    int64_t cl = (int64_t)(1000 + c % CLIENTS), amt = (int64_t)hold_micros(c);
    bind(s->funds, 1, cl);
    if (sqlite3_step(s->funds) != SQLITE_ROW)
        die("funds", sqlite3_errmsg(s->db));
    int64_t avail = sqlite3_column_int64(s->funds, 0);
    sqlite3_reset(s->funds);
    if (avail < amt)
        die("hold", "insufficient funds");
    insert(s, (int64_t)(2000000000 + c), cl, 2, amt, 0, (int64_t)c, 4, 2, 1,
           ts);
    bind(s->hold_acct, 2, amt, cl);
    step_done(s->db, s->hold_acct);
    bind(s->hold_escrow, 1, amt);
    step_done(s->db, s->hold_escrow);
}

static void sq_settle(sq *s, uint64_t c, int64_t ts)
{
    int64_t hid = (int64_t)(2000000000 + c);
    bind(s->get_hold, 1, hid);
    if (sqlite3_step(s->get_hold) != SQLITE_ROW)
        die("settle", "no hold");
    int64_t cl = sqlite3_column_int64(s->get_hold, 0);
    int64_t held = sqlite3_column_int64(s->get_hold, 1);
    int64_t state = sqlite3_column_int64(s->get_hold, 2);
    sqlite3_reset(s->get_hold);
    if (state != 1)
        die("settle", "hold not open");
    int64_t actual = (int64_t)(hold_micros(c) * 4 / 5);
    int64_t fee = (int64_t)rz_ledger_fee((uint64_t)actual, 500);
    int64_t nd = (int64_t)(5000 + c % NODES), id = (int64_t)(4000000000 + c);
    insert(s, id, cl, 2, actual, hid, (int64_t)c, 5, 4, 0, ts);
    bind(s->resolve, 2, actual, hid);
    step_done(s->db, s->resolve);
    bind(s->post_client, 3, held, actual, cl);
    step_done(s->db, s->post_client);
    insert(s, id + 1000000000, 2, nd, actual - fee, 0, (int64_t)c, 6, 0, 0,
           ts + 1);
    insert(s, id + 2000000000, 2, 1, fee, 0, (int64_t)c, 7, 0, 0, ts + 2);
    bind(s->escrow_settle, 3, held, actual, actual);
    step_done(s->db, s->escrow_settle);
    bind(s->credit, 2, actual - fee, nd);
    step_done(s->db, s->credit);
    bind(s->credit, 2, fee, (int64_t)1);
    step_done(s->db, s->credit);
}

static void sq_setup(sq *sp, const char *path)
{
    sq s;
    remove(path);
    if (sqlite3_open(path, &s.db) != SQLITE_OK)
        die("sqlite open", sqlite3_errmsg(s.db));
    exec(s.db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
         "CREATE TABLE accounts(id INTEGER PRIMARY KEY, kind INTEGER,"
         " flags INTEGER, debits_posted INTEGER NOT NULL DEFAULT 0,"
         " debits_pending INTEGER NOT NULL DEFAULT 0,"
         " credits_posted INTEGER NOT NULL DEFAULT 0,"
         " credits_pending INTEGER NOT NULL DEFAULT 0);"
         "CREATE TABLE transfers(id INTEGER PRIMARY KEY, debit INTEGER NOT NULL,"
         " credit INTEGER NOT NULL, amount INTEGER NOT NULL, pending_id INTEGER,"
         " job INTEGER, code INTEGER, flags INTEGER, state INTEGER,"
         " posted_amount INTEGER NOT NULL DEFAULT 0, ts INTEGER NOT NULL);"
         "CREATE INDEX transfers_debit ON transfers(debit, ts);"
         "CREATE INDEX transfers_credit ON transfers(credit, ts);"
         "CREATE INDEX transfers_job ON transfers(job, ts);"
         "INSERT INTO accounts(id, kind, flags) VALUES (1,3,1),(2,4,1),(3,5,0);");
    exec(s.db, "BEGIN");
    char sql[256];
    for (int i = 0; i < CLIENTS; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO accounts(id,kind,flags,"
                 "credits_posted) VALUES (%d,1,1,%lld);", 1000 + i,
                 1ll << 40);
        exec(s.db, sql);
    }
    for (int i = 0; i < NODES; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO accounts(id,kind,flags) "
                 "VALUES (%d,2,1);", 5000 + i);
        exec(s.db, sql);
    }
    exec(s.db, "COMMIT");
    s.funds = prep(s.db, "SELECT credits_posted - debits_posted - "
                   "debits_pending FROM accounts WHERE id = ?1");
    s.ins = prep(s.db, "INSERT INTO transfers(id, debit, credit, amount, "
                 "pending_id, job, code, flags, state, ts) VALUES "
                 "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)");
    s.hold_acct = prep(s.db, "UPDATE accounts SET debits_pending = "
                       "debits_pending + ?1 WHERE id = ?2");
    s.hold_escrow = prep(s.db, "UPDATE accounts SET credits_pending = "
                         "credits_pending + ?1 WHERE id = 2");
    s.get_hold = prep(s.db, "SELECT debit, amount, state FROM transfers "
                      "WHERE id = ?1");
    s.resolve = prep(s.db, "UPDATE transfers SET state = 2, posted_amount = "
                     "?1 WHERE id = ?2");
    s.post_client = prep(s.db, "UPDATE accounts SET debits_pending = "
                         "debits_pending - ?1, debits_posted = debits_posted "
                         "+ ?2 WHERE id = ?3");
    s.escrow_settle = prep(s.db, "UPDATE accounts SET credits_pending = "
                           "credits_pending - ?1, credits_posted = "
                           "credits_posted + ?2, debits_posted = "
                           "debits_posted + ?3 WHERE id = 2");
    s.credit = prep(s.db, "UPDATE accounts SET credits_posted = "
                    "credits_posted + ?1 WHERE id = ?2");
    s.begin = prep(s.db, "BEGIN IMMEDIATE");
    s.commit = prep(s.db, "COMMIT");
    s.secs = 0;
    *sp = s;
}

static void sq_chunk(sq *sp, size_t batch, size_t from, size_t cycles,
                     bool last)
{
    sq s = *sp;
    sqlite3_stmt *begin = s.begin, *commit = s.commit;
    double t0 = now_s();
    for (size_t done = from; done < cycles; done += batch) {
        int64_t ts = (int64_t)done * 4;
        size_t b = cycles - done < batch ? cycles - done : batch;
        step_done(s.db, begin);
        for (size_t i = 0; i < b; i++)
            sq_hold(&s, done + i, ++ts);
        step_done(s.db, commit);
        step_done(s.db, begin);
        for (size_t i = 0; i < b; i++, ts += 3)
            sq_settle(&s, done + i, ts);
        step_done(s.db, commit);
    }
    sp->secs += now_s() - t0;
    if (!last)
        return;
    sqlite3_stmt *all[] = { s.funds, s.ins, s.hold_acct, s.hold_escrow,
                            s.get_hold, s.resolve, s.post_client,
                            s.escrow_settle, s.credit, begin, commit };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    sqlite3_close(s.db);
}

int main(int argc, char **argv)
{
    const char *base = "/tmp";
    const char *only = "";
    double scale = 1.0;
    size_t want = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            base = argv[++i];
        else if (!strcmp(argv[i], "--scale") && i + 1 < argc)
            scale = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            want = (size_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "rhizos") ||
                  !strcmp(argv[i + 1], "sqlite")))
            only = argv[++i];
        else {
            fprintf(stderr, "usage: ledger_bench [--dir DIR] [--scale F] "
                    "[--batch 1|100|8190] [--only rhizos|sqlite]\n");
            return 2;
        }
    }
    bool run_rz = strcmp(only, "sqlite") != 0, run_sq = strcmp(only, "rhizos") != 0;
    static const size_t batches[] = { 1, 100, 8190 };
    static const size_t cycles[] = { 1000, 20000, 8190 * 12 };
    printf("hold+settle cycles, 4 transfers each, durable; transfers/s\n");
    printf("%8s %10s %14s %14s %7s\n", "batch", "cycles", "rhizos", "sqlite",
           "ratio");
    for (size_t k = 0; k < 3; k++) {
        if (want && want != batches[k])
            continue;
        size_t c = (size_t)((double)cycles[k] * scale);
        if (c < batches[k])
            c = batches[k];
        char dir[480], db[480], cmd[2048];
        snprintf(dir, sizeof dir, "%s/rz-ledger-bench-%zu", base, batches[k]);
        snprintf(db, sizeof db, "%s/rz-ledger-bench-%zu.sqlite", base,
                 batches[k]);
        snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s-wal' '%s-shm'", dir,
                 db, db, db);
        if (system(cmd) != 0)
            die("cleanup", dir);
        /* Alternate chunks of both, so drift in the disk's speed hits
         * both alike. */
        rz_side z = { 0 };
        sq q = { 0 };
        if (run_rz)
            rz_setup(&z, dir);
        if (run_sq)
            sq_setup(&q, db);
        enum { CHUNKS = 6 };
        size_t per = (c / CHUNKS + batches[k] - 1) / batches[k] * batches[k];
        for (size_t from = 0; from < c; from += per) {
            size_t to = from + per < c ? from + per : c;
            bool last = to == c;
            if (run_rz)
                rz_chunk(&z, batches[k], from, to, last);
            if (run_sq)
                sq_chunk(&q, batches[k], from, to, last);
        }
        double r = run_rz ? (double)(c * 4) / z.secs : 0;
        double qs = run_sq ? (double)(c * 4) / q.secs : 0;
        printf("%8zu %10zu %14.0f %14.0f %6.2fx\n", batches[k], c, r, qs,
               run_rz && run_sq ? r / qs : 0.0);
        if (run_rz && !run_sq)
            printf("%8s rhizos CPU: %.3f s, %.0f transfers per CPU-second\n",
                   "", z.cpu, (double)(c * 4) / z.cpu);
        fflush(stdout);
        if (system(cmd) != 0)
            die("cleanup", dir);
    }
    return 0;
}

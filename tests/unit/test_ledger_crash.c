/* Crash test: a child runs random durable batches and acknowledges each on
 * a pipe (the ids its ops created); the parent SIGKILLs it at a random
 * moment, reopens the ledger (replaying the journal), runs rz_ledger_verify
 * and checks that every acknowledged transfer is there and that the batch in
 * flight is either wholly there or wholly absent. RZ_LEDGER_CRASH_ROUNDS
 * overrides the number of kills (default 60). */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"

#define ID(n) rz_ledger_id_make(0, (n))
enum { NCLIENT = 8, NNODE = 3, MAXOPS = 64 };
#define MARK ID(99)

static rz_ledger_id client(uint64_t i) { return ID(100 + i); }
static rz_ledger_id node(uint64_t i) { return ID(200 + i); }

/* Marker ids of batch b of round r: first and last op of every batch. */
static rz_ledger_id marker(uint64_t r, uint64_t b, int last)
{
    return rz_ledger_id_make(1 + r, (b << 1) | (uint64_t)last);
}

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static rz_ledger_opts opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.map_size = 256u << 20;
    o.journal_size = 96u << 10;    /* wraps often */
    o.checkpoint_ops = 700;        /* and checkpoints often */
    return o;
}

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3);
        c += w;
        n -= (size_t)w;
    }
}

/* An ack: n, then n records of (id, ok). */
typedef struct ackrec {
    uint64_t hi, lo;
    uint8_t ok;
} __attribute__((packed)) ackrec;

static rz_ledger_op op_of(uint32_t type, rz_ledger_id id)
{
    rz_ledger_op op;
    memset(&op, 0, sizeof op);
    op.type = type;
    op.id = id;
    return op;
}

static void child(const char *dir, uint64_t round, int fd)
{
    rz_ledger *l;
    rz_ledger_opts o = opts();
    if (rz_ledger_open(&l, dir, &o) != RZ_OK) {
        fprintf(stderr, "child: %s\n", rz_error_last()->message);
        _exit(2);
    }
    rng = 0x9e3779b97f4a7c15ull ^ (round * 0x100000001b3ull);
    rz_ledger_id holds[256];
    size_t nholds = 0;
    uint64_t next = 1;
    /* Markers around up to MAXOPS ops, one more when the last is a linked
     * pair. */
    rz_ledger_op ops[MAXOPS + 3];
    rz_ledger_result res[MAXOPS + 3];
    for (uint64_t b = 0;; b++) {
        size_t n = 0;
        ops[n] = op_of(RZ_LEDGER_OP_TEST_CREDIT, marker(round, b, 0));
        ops[n].account = MARK;
        ops[n++].amount = 1;
        size_t k = 1 + rnd() % MAXOPS;
        for (size_t i = 0; i < k; i++) {
            rz_ledger_id id = rz_ledger_id_make(1 + round, (1ull << 40) + next++);
            rz_ledger_op *op = &ops[n++];
            uint64_t pick = rnd() % 10;
            if (pick < 3 || (pick >= 6 && pick < 9 && nholds == 0)) {
                *op = op_of(RZ_LEDGER_OP_TEST_CREDIT, id);
                op->account = client(rnd() % NCLIENT);
                op->amount = 1 + rnd() % 5000;
            } else if (pick < 6) {
                *op = op_of(RZ_LEDGER_OP_HOLD, id);
                op->account = client(rnd() % NCLIENT);
                op->job = id;
                op->amount = 1 + rnd() % 3000;
                op->timeout = rnd() % 2 ? b + 1 + rnd() % 20 : 0;
                if (nholds < 256)
                    holds[nholds++] = id;
                else
                    holds[rnd() % 256] = id;
            } else if (pick < 8) {
                *op = op_of(RZ_LEDGER_OP_SETTLE, id);
                op->pending_id = holds[rnd() % nholds];
                op->counterparty = node(rnd() % NNODE);
                op->amount = rnd() % 2500;
            } else if (pick < 9) {
                *op = op_of(RZ_LEDGER_OP_REFUND, id);
                op->pending_id = holds[rnd() % nholds];
            } else {
                *op = op_of(RZ_LEDGER_OP_TICK, ID(0));
                op->amount = b;
            }
            /* Now and then a linked pair: credit then withdraw. */
            if (rnd() % 16 == 0 && op->type == RZ_LEDGER_OP_TEST_CREDIT) {
                op->flags = RZ_LEDGER_LINKED;
                rz_ledger_op *w = &ops[n++];
                *w = op_of(RZ_LEDGER_OP_WITHDRAW_REQUEST,
                           rz_ledger_id_make(1 + round, (1ull << 40) + next++));
                w->account = op->account;
                w->amount = 1 + rnd() % 8000;
                i++;
            }
        }
        ops[n] = op_of(RZ_LEDGER_OP_TEST_CREDIT, marker(round, b, 1));
        ops[n].account = MARK;
        ops[n++].amount = 1;
        if (rz_ledger_submit(l, ops, n, res) != RZ_OK) {
            fprintf(stderr, "child: %s\n", rz_error_last()->message);
            _exit(4);
        }
        uint32_t cnt = (uint32_t)n;
        ackrec recs[MAXOPS + 3];
        for (size_t i = 0; i < n; i++) {
            recs[i].hi = ops[i].id.hi;
            recs[i].lo = ops[i].id.lo;
            recs[i].ok = res[i].status == RZ_OK &&
                         ops[i].type != RZ_LEDGER_OP_TICK;
        }
        write_all(fd, &cnt, sizeof cnt);
        write_all(fd, recs, n * sizeof recs[0]);
    }
}

typedef struct acks {
    uint8_t *buf;
    size_t len, cap;
} acks;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Read acks until `ms` have passed (0: until the pipe is empty). */
static void drain(acks *a, int fd, long ms)
{
    long end = now_ms() + ms;
    struct pollfd p = { fd, POLLIN, 0 };
    for (;;) {
        long left = end - now_ms();
        if (poll(&p, 1, left > 0 ? (int)left : 0) <= 0)
            break;
        if (a->len + 65536 > a->cap) {
            a->cap = a->cap ? a->cap * 2 : 1 << 20;
            a->buf = realloc(a->buf, a->cap);
            assert_non_null(a->buf);
        }
        ssize_t r = read(fd, a->buf + a->len, 65536);
        if (r <= 0)
            break;
        a->len += (size_t)r;
    }
}

static bool present(rz_ledger *l, rz_ledger_id id)
{
    rz_ledger_transfer t;
    int rc = rz_ledger_transfer_get(l, id, &t);
    if (rc != RZ_OK && rc != RZ_ENOENT)
        fail_msg("get_transfer: %s", rz_error_last()->message);
    return rc == RZ_OK;
}

/* Check round r after the kill. Returns the number of acked batches. */
static uint64_t check_round(rz_ledger *l, uint64_t r, const acks *a,
                            uint64_t *checked)
{
    size_t off = 0;
    uint64_t batches = 0;
    while (off + 4 <= a->len) {
        uint32_t n;
        memcpy(&n, a->buf + off, 4);
        if (off + 4 + (size_t)n * sizeof(ackrec) > a->len)
            break;   /* a partial ack: not acknowledged */
        off += 4;
        for (uint32_t i = 0; i < n; i++, off += sizeof(ackrec)) {
            ackrec rec;
            memcpy(&rec, a->buf + off, sizeof rec);
            if (!rec.ok)
                continue;
            if (!present(l, rz_ledger_id_make(rec.hi, rec.lo)))
                fail_msg("round %llu: acknowledged transfer %llx:%llx lost",
                         (unsigned long long)r, (unsigned long long)rec.hi,
                         (unsigned long long)rec.lo);
            ++*checked;
        }
        batches++;
    }
    /* The batch in flight: both markers or neither. */
    bool first = present(l, marker(r, batches, 0));
    bool last = present(l, marker(r, batches, 1));
    if (first != last)
        fail_msg("round %llu: batch %llu is half there",
                 (unsigned long long)r, (unsigned long long)batches);
    if (present(l, marker(r, batches + 1, 0)))
        fail_msg("round %llu: a batch beyond the one in flight exists",
                 (unsigned long long)r);
    return batches;
}

static void test_crash(void **state)
{
    (void)state;
    char dir[64];
    assert_non_null(tmp_dir_make(dir, sizeof dir, "ledger-crash"));
    rz_ledger *l;
    rz_ledger_opts o = opts();
    assert_int_equal(rz_ledger_open(&l, dir, &o), RZ_OK);
    assert_int_equal(rz_ledger_create_account(l, MARK, RZ_LEDGER_CLIENT),
                     RZ_OK);
    for (uint64_t i = 0; i < NCLIENT; i++)
        assert_int_equal(rz_ledger_create_account(l, client(i),
                                                  RZ_LEDGER_CLIENT), RZ_OK);
    for (uint64_t i = 0; i < NNODE; i++)
        assert_int_equal(rz_ledger_create_account(l, node(i), RZ_LEDGER_NODE),
                         RZ_OK);
    rz_ledger_close(l);

    const char *env = getenv("RZ_LEDGER_CRASH_ROUNDS");
    uint64_t rounds = env ? strtoull(env, NULL, 10) : 60;
    uint64_t seed = (uint64_t)time(NULL);
    uint64_t acked = 0, checked = 0, in_flight_there = 0;
    rng = seed;
    for (uint64_t r = 0; r < rounds; r++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child(dir, r, p[1]);
        }
        close(p[1]);
        rng = seed ^ (r * 0x2545f4914f6cdd1dull);
        long wait_ms = 2 + (long)(rnd() % 60);
        acks a = { 0 };
        drain(&a, p[0], wait_ms);
        if (rnd() % 2)
            sleep_ms((long)(rnd() % 5));
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (WIFEXITED(status))
            fail_msg("round %llu: the child exited with %d",
                     (unsigned long long)r, WEXITSTATUS(status));
        drain(&a, p[0], 0);
        close(p[0]);

        assert_int_equal(rz_ledger_open(&l, dir, &o), RZ_OK);
        int rc = rz_ledger_verify(l);
        if (rc != RZ_OK)
            fail_msg("round %llu: %s", (unsigned long long)r,
                     rz_error_last()->message);
        uint64_t b = check_round(l, r, &a, &checked);
        acked += b;
        in_flight_there += present(l, marker(r, b, 0));
        rz_ledger_close(l);
        free(a.buf);
    }
    fprintf(stderr, "crash test: %llu kills (seed %llu), %llu acknowledged "
            "batches, %llu acknowledged transfers checked, %llu in-flight "
            "batches found whole\n", (unsigned long long)rounds,
            (unsigned long long)seed, (unsigned long long)acked,
            (unsigned long long)checked, (unsigned long long)in_flight_there);
    assert_true(acked > 0);
    assert_int_equal(tmp_dir_remove(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

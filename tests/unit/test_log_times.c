/* When a job's log lines arrived (server/orchestrator/log_times.c): marks
 * never make a line older than it is, survive the log's cut and a
 * result's log replacing the streamed one, and --since finds the first
 * line that came at or after a time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "orch.h"

static size_t since(const log_times *t, const char *log, uint64_t ms)
{
    return log_times_since(t, log, strlen(log), ms);
}

static void test_marks_and_since(void **state)
{
    (void)state;
    const char *log = "one\ntwo\nthree\n";
    log_times t = {0};
    assert_int_equal(since(&t, log, 5), 0);          /* no time known: all */
    log_times_add(&t, 0, 1000);                      /* "one" */
    log_times_add(&t, 4, 1100);                      /* "two", within 0.2 s */
    log_times_add(&t, 8, 2000);                      /* "three" */
    assert_int_equal(t.n, 2);
    /* "two" folded into the first mark, made as late as it: not hidden. */
    assert_int_equal(t.v[0].ms, 1100);
    assert_int_equal(since(&t, log, 1000), 0);
    assert_int_equal(since(&t, log, 1100), 0);
    assert_int_equal(since(&t, log, 1101), 8);
    assert_int_equal(since(&t, log, 2000), 8);
    assert_int_equal(since(&t, log, 2001), strlen(log));
    /* A mark inside a line counts from the line's start. */
    log_times u = {0};
    log_times_add(&u, 0, 1000);
    log_times_add(&u, 6, 3000);
    assert_int_equal(since(&u, log, 2000), 4);
    /* JSON and back. */
    char *j = log_times_json(&t);
    assert_string_equal(j, "[[0,1100],[8,2000]]");
    log_times p;
    log_times_parse(j, &p);
    assert_int_equal(p.n, 2);
    assert_int_equal(p.v[1].pos, 8);
    log_times_clear(&u);
    log_times_parse("[[\"x\",1],[1],{}]", &u);   /* junk: no marks */
    assert_int_equal(u.n, 0);
    free(j);
    log_times_clear(&p);
    log_times_clear(&t);
}

static void test_cut_and_rebase(void **state)
{
    (void)state;
    log_times t = {0};
    log_times_add(&t, 0, 1000);
    log_times_add(&t, 4, 2000);
    log_times_add(&t, 8, 3000);
    log_times_shift(&t, 6);   /* "one\ntw" gone: the second mark covers 0 */
    assert_int_equal(t.n, 2);
    assert_int_equal(t.v[0].pos, 0);
    assert_int_equal(t.v[0].ms, 2000);
    assert_int_equal(t.v[1].pos, 2);
    log_times_clear(&t);

    /* The result's log: the streamed lines after a first line that was
     * cut from the stream, and one more at the end. */
    const char *old = "two\nthree\n", *res = "one\ntwo\nthree\nfour\n";
    log_times_add(&t, 0, 2000);
    log_times_add(&t, 4, 3000);
    log_times_rebase(&t, old, strlen(old), res, strlen(res), 9000);
    assert_int_equal(t.n, 3);
    assert_int_equal(t.v[0].pos, 4);
    assert_int_equal(t.v[1].pos, 8);
    assert_int_equal(t.v[2].pos, 14);
    assert_int_equal(t.v[2].ms, 9000);
    assert_int_equal(log_times_since(&t, res, strlen(res), 2500), 8);
    assert_int_equal(log_times_since(&t, res, strlen(res), 5000), 14);
    log_times_clear(&t);
    /* A result that kept less: marks before its start fold onto byte 0. */
    log_times_add(&t, 0, 1000);
    log_times_add(&t, 4, 2000);
    log_times_add(&t, 8, 3000);
    log_times_rebase(&t, "one\ntwo\nthree\n", 14, "o\nthree\n", 8, 9000);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.v[0].pos, 0);
    assert_int_equal(t.v[0].ms, 2000);
    assert_int_equal(t.v[1].pos, 2);
    log_times_clear(&t);
    /* Not found in it: no times (all shown). */
    log_times_add(&t, 0, 1000);
    log_times_rebase(&t, "abc\n", 4, "xyz\n", 4, 9000);
    assert_int_equal(t.n, 0);
    log_times_clear(&t);
}

static void test_bounded(void **state)
{
    (void)state;
    log_times t = {0};
    for (uint64_t i = 0; i < 5000; i++)
        log_times_add(&t, i * 10, 1000 + i * 1000);
    assert_true(t.n <= 1024);
    /* The oldest folded, each made as late as the lines it took. */
    assert_int_equal(t.v[0].pos, 0);
    assert_true(t.v[0].ms > 1000);
    for (size_t i = 1; i < t.n; i++)
        assert_true(t.v[i].pos > t.v[i - 1].pos && t.v[i].ms > t.v[i - 1].ms);
    log_times_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_marks_and_since),
        cmocka_unit_test(test_cut_and_rebase),
        cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

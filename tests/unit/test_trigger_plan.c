/* The catch-up rule of cron triggers (rz_cron_plan, lib/trigger/plan.c)
 * against a fake clock: on time, across a simulated outage with each rule,
 * many fires due at once, and the walk's bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdint.h>

#include "rhizos/rhizos.h"

#define T0 1767225600   /* 2026-01-01T00:00:00Z */

static rz_cron *every(const char *expr)
{
    rz_cron *c = NULL;
    assert_int_equal(rz_cron_parse(&c, expr, NULL), RZ_OK);
    return c;
}

static void on_time(void **state)
{
    (void)state;
    rz_cron *c = every("*/5 * * * *");
    int64_t fires[8], last;
    uint64_t missed;
    for (int rule = RZ_CRON_CATCHUP_NONE; rule <= RZ_CRON_CATCHUP_ALL; rule++) {
        /* Nothing is due before the time, one fire at it (and a second late). */
        assert_int_equal(rz_cron_plan(c, T0, T0 + 299, rule, fires, 8, &missed, &last), 0);
        assert_int_equal(last, T0);
        assert_int_equal(rz_cron_plan(c, T0, T0 + 301, rule, fires, 8, &missed, &last), 1);
        assert_int_equal(fires[0], T0 + 300);
        assert_int_equal(missed, 0);
        assert_int_equal(last, T0 + 300);
    }
    rz_cron_free(c);
}

/* Down from 00:00 to 01:00:30: twelve fires fell due (00:05 ... 01:00). */
static void across_an_outage(void **state)
{
    (void)state;
    rz_cron *c = every("*/5 * * * *");
    int64_t fires[100], last;
    uint64_t missed;
    int64_t now = T0 + 3630;
    /* none: only the fire still within the grace runs (01:00, 30 s late). */
    assert_int_equal(rz_cron_plan(c, T0, now, RZ_CRON_CATCHUP_NONE, fires, 100, &missed, &last), 1);
    assert_int_equal(fires[0], T0 + 3600);
    assert_int_equal(missed, 11);
    assert_int_equal(last, T0 + 3600);
    /* ...and none at all when even the newest is past the grace. */
    assert_int_equal(rz_cron_plan(c, T0, T0 + 3600 + RZ_CRON_GRACE_S + 1, RZ_CRON_CATCHUP_NONE,
                                  fires, 100, &missed, &last), 0);
    assert_int_equal(missed, 12);
    assert_int_equal(last, T0 + 3600);
    /* one: one run, as the newest; the other eleven folded into it. */
    assert_int_equal(rz_cron_plan(c, T0, now, RZ_CRON_CATCHUP_ONE, fires, 100, &missed, &last), 1);
    assert_int_equal(fires[0], T0 + 3600);
    assert_int_equal(missed, 11);
    /* all: each of the twelve, oldest first. */
    assert_int_equal(rz_cron_plan(c, T0, now, RZ_CRON_CATCHUP_ALL, fires, 100, &missed, &last), 12);
    for (int i = 0; i < 12; i++)
        assert_int_equal(fires[i], T0 + 300 * (i + 1));
    assert_int_equal(missed, 0);
    assert_int_equal(last, T0 + 3600);
    /* all, more due than a pass takes: the rest on the next passes, none lost
     * and none twice. */
    int64_t from = T0, seen = 0, prev = T0;
    for (int pass = 0; pass < 5; pass++) {
        size_t n = rz_cron_plan(c, from, now, RZ_CRON_CATCHUP_ALL, fires, 5, &missed, &last);
        for (size_t i = 0; i < n; i++) {
            assert_true(fires[i] > prev);
            prev = fires[i];
            seen++;
        }
        from = last;
    }
    assert_int_equal(seen, 12);
    assert_int_equal(prev, T0 + 3600);
    rz_cron_free(c);
}

/* A year down with a per-minute schedule: the walk stops at its bound
 * and the next pass starts from now. */
static void the_walk_is_bounded(void **state)
{
    (void)state;
    rz_cron *c = every("* * * * *");
    int64_t fires[1], last;
    uint64_t missed;
    int64_t now = T0 + 366LL * 86400;
    assert_int_equal(rz_cron_plan(c, T0, now, RZ_CRON_CATCHUP_ONE, fires, 1, &missed, &last), 1);
    assert_int_equal(missed, RZ_CRON_WALK_MAX - 1);
    assert_int_equal(last, now);
    assert_int_equal(rz_cron_plan(c, last, now, RZ_CRON_CATCHUP_ONE, fires, 1, &missed, &last), 0);
    assert_string_equal(rz_cron_catchup_name(RZ_CRON_CATCHUP_ALL), "all");
    rz_cron_free(c);
}

/* A trigger's `catchup:` word: the three, the default, nothing else. */
static void catchup_words(void **state)
{
    (void)state;
    rz_cron_catchup r = RZ_CRON_CATCHUP_ALL;
    assert_int_equal(rz_cron_catchup_parse(NULL, &r), RZ_OK);
    assert_int_equal(r, RZ_CRON_CATCHUP_ONE);
    for (int i = RZ_CRON_CATCHUP_NONE; i <= RZ_CRON_CATCHUP_ALL; i++) {
        assert_int_equal(rz_cron_catchup_parse(rz_cron_catchup_name((rz_cron_catchup)i), &r),
                         RZ_OK);
        assert_int_equal(r, i);
    }
    static const char *bad[] = { "", "All", "some", "one " };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = RZ_CRON_CATCHUP_NONE;
        assert_int_equal(rz_cron_catchup_parse(bad[i], &r), RZ_EINVAL);
        assert_int_equal(r, RZ_CRON_CATCHUP_NONE);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(on_time),
        cmocka_unit_test(across_an_outage),
        cmocka_unit_test(the_walk_is_bounded),
        cmocka_unit_test(catchup_words),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

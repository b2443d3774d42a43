/* What test_slurm_parse.c and test_slurm_rest.c expect of the same cluster:
 * their NODES fixtures describe it once as `scontrol show node -o` prints
 * it and once as slurmrestd answers, and both readers must count it alike. */
#ifndef RHIZOS_TEST_SLURM_EXPECT_H
#define RHIZOS_TEST_SLURM_EXPECT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "slurm.h"

/* Partition "debug" of NODES: vm, a drained d1, g1 and a not responding
 * x1, of which only vm and g1 are usable. */
static void expect_debug_capacity(const slurm_capacity *c)
{
    assert_int_equal(c->nodes, 4);          /* vm, d1, g1, x1 */
    assert_int_equal(c->usable, 2);         /* d1 drained, x1 not responding */
    assert_int_equal(c->cpus, 34);
    assert_int_equal(c->cpus_free, 1 + 24);
    assert_int_equal(c->mem_mb, 23081 + 256000);
    assert_int_equal(c->mem_free_mb, 22981 + 255000);
    assert_int_equal(c->gpus, 5);
    assert_int_equal(c->gpus_free, 2);
    assert_int_equal(c->max_node_cpus, 32);
    assert_int_equal(c->max_node_mem_mb, 256000);
    assert_int_equal(c->max_node_gpus, 5);
}

#endif

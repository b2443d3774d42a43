/* The library's allocations pass through here so that a test can make the
 * Nth one fail (as SQLite's fault injection does) and prove every caller
 * turns it into a clean error: no crash, no leak. Off unless a test arms it;
 * the cost when off is one relaxed atomic load. */
#include <stdatomic.h>
#include <stdlib.h>

#include "common/internal.h"

static _Atomic long fail_at;    /* 0: never; else the call number that fails */
static _Atomic bool fail_on;    /* every call after it fails too */
static _Atomic long calls;      /* counted only while armed */

static bool should_fail(void)
{
    long n = atomic_load_explicit(&fail_at, memory_order_relaxed);
    if (n == 0)
        return false;
    long c = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed) + 1;
    return c == n || (c > n && atomic_load_explicit(&fail_on, memory_order_relaxed));
}

void rz__alloc_fail_at(long n, bool persist)
{
    atomic_store(&calls, 0);
    atomic_store(&fail_on, persist);
    atomic_store(&fail_at, n);
}

long rz__alloc_calls(void)
{
    return atomic_load(&calls);
}

void *rz__malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *rz__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *rz__realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

/* What the unit tests share: scratch folders, whole files, short sleeps.
 * Include after <cmocka.h> (the file helpers fail the test through its
 * asserts). Static inline: each test is a program of its own. */
#ifndef RZ_TEST_HELPERS_H
#define RZ_TEST_HELPERS_H

#include <ftw.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

/* A new, empty folder /tmp/rz-NAME-XXXXXX, its path in `buf`: buf, or NULL
 * when it cannot be made. */
static inline char *tmp_dir_make(char *buf, size_t cap, const char *name)
{
    int n = snprintf(buf, cap, "/tmp/rz-%s-XXXXXX", name);
    if (n < 0 || (size_t)n >= cap)
        return NULL;
    return mkdtemp(buf);
}

static inline int tmp_dir_remove_entry(const char *path, const struct stat *sb,
                                       int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

/* Remove `dir` and everything under it (links are not followed): 0, or -1
 * when something stayed. */
static inline int tmp_dir_remove(const char *dir)
{
    return nftw(dir, tmp_dir_remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

/* Write `text` to `path` (replaced if it exists). */
static inline void file_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

/* The whole of `path` (malloc'ed, with a NUL after its *len bytes). */
static inline char *file_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

#ifdef RHIZOS_ENGINE_H
/* A node's report to the engine, the fields of rz_engine_report in order
 * (for tests that include rhizos/engine.h first). */
static inline int node_report(rz_engine *e, uint64_t node, uint64_t job,
                              uint32_t attempt, const char *outputs_json,
                              const char *error, uint64_t run_ms, uint64_t now_ms)
{
    rz_engine_report r = RZ_ENGINE_REPORT_INIT;
    r.attempt = attempt;
    r.outputs_json = outputs_json;
    r.error = error;
    r.run_ms = run_ms;
    return rz_engine_report_result(e, node, job, &r, now_ms, NULL);
}
#endif

/* The page faults this process took so far. */
static inline uint64_t faults_now(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

/* How many of the `pages` pages from `addr` are present in this process's
 * page tables (/proc/self/pagemap, bit 63): a store's map after a shed
 * (MADV_DONTNEED) has none until read again. */
static inline size_t pages_present(const void *addr, size_t pages)
{
    FILE *pm = fopen("/proc/self/pagemap", "rb");
    assert_non_null(pm);
    uintptr_t first = (uintptr_t)addr / (uintptr_t)getauxval(AT_PAGESZ);
    size_t n = 0;
    for (size_t i = 0; i < pages; i++) {
        uint64_t e = 0;
        assert_int_equal(fseeko(pm, (off_t)((first + i) * 8), SEEK_SET), 0);
        assert_int_equal(fread(&e, 8, 1, pm), 1);
        n += (e >> 63) & 1;
    }
    fclose(pm);
    return n;
}

/* 4,096 page faults of fresh memory, none a store's. */
static inline void fault_elsewhere(void)
{
    size_t psz = (size_t)getauxval(AT_PAGESZ), len = 4096 * psz;
    volatile char *fresh = malloc(len);   /* above the mmap threshold */
    assert_non_null(fresh);
    for (size_t i = 0; i < len; i += psz)
        fresh[i] = 1;
    free((void *)fresh);
}

#endif

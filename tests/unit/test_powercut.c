/* Power cuts that reach LMDB's own writes: the ledger written by a child
 * process with powercut_preload.so interposed on the C library's writes
 * and syncs (see there), the power cut at a random write or sync, then a
 * random subset of every file's unsynced writes undone, as the disk would
 * have lost them. test_ledger_faults.c cuts the power through the
 * ledger's own I/O seam, which LMDB's page and meta writes do not take;
 * here they are all in play: the round's restart must open the ledger
 * with every acknowledged batch in it and verify it whole. A power cut is
 * not damage: a refused open fails the test.
 *
 * Usage: test_powercut PRELOAD.so (the child runs as `test_powercut
 * --child DIR ROUND`); `test_powercut --play LOG SEED` only plays the
 * disk after another program's cut (e2e-orchestrator-powercut).
 * RZ_POWERCUT_ROUNDS and RZ_POWERCUT_SEED override the defaults (24
 * rounds, a fixed seed). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/ledger.h"
#include "rhizos/rhizos.h"
#include "helpers.h"
#include "powercut.h"

#define CLIENT rz_ledger_id_make(0, 100)
enum { BATCHES = 100 };

static uint64_t rng;
static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); exit(1); } } while (0)

static rz_ledger_opts opts(void)
{
    rz_ledger_opts o = RZ_LEDGER_OPTS_INIT;
    o.durable = 1;
    o.map_size = 64u << 20;
    o.journal_size = 8u << 10;   /* wraps every few dozen batches */
    o.checkpoint_ops = 16;       /* LMDB commits often */
    return o;
}

static rz_ledger_id batch_id(uint64_t round, uint64_t i)
{
    return rz_ledger_id_make(1 + round, 1000 + i);
}

/* The writer: one credit a batch, each acknowledged on stdout once
 * rz_ledger_submit says it is durable. */
static int child(const char *dir, uint64_t round)
{
    rz_ledger_opts o = opts();
    rz_ledger *l;
    if (rz_ledger_open(&l, dir, &o) != RZ_OK ||
        rz_ledger_create_account(l, CLIENT, RZ_LEDGER_CLIENT) != RZ_OK)
        return 4;
    for (uint64_t i = 0; i < BATCHES; i++) {
        rz_ledger_op op = { 0 };
        op.type = RZ_LEDGER_OP_TEST_CREDIT;
        op.id = batch_id(round, i);
        op.account = CLIENT;
        op.amount = 1;
        rz_ledger_result res;
        if (rz_ledger_submit(l, &op, 1, &res) != RZ_OK ||
            (res.status != RZ_OK && res.status != RZ_EEXISTS))
            return 6;
        if (write(1, &i, sizeof i) != sizeof i)
            return 5;
    }
    rz_ledger_close(l);
    return 0;
}

typedef struct wrec {
    powercut_rec h;
    char *path;
    unsigned char *old;
    bool later_synced;   /* a sync of its path came after it */
} wrec;

static bool same_range(const wrec *a, const wrec *b)
{
    return strcmp(a->path, b->path) == 0 && a->h.off < b->h.off + b->h.len &&
           b->h.off < a->h.off + a->h.len;
}

static void undo(const wrec *w)
{
    int fd = open(w->path, O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0, "undo: %s: %s", w->path, strerror(errno));
    CHECK(pwrite(fd, w->old, w->h.old_len, (off_t)w->h.off) == (ssize_t)w->h.old_len,
          "undo: write");
    /* Past the old end, the file holds zeros where the lost write went. */
    static const unsigned char zeros[4096];
    for (uint64_t at = w->h.old_len; at < w->h.len;) {
        size_t n = w->h.len - at > sizeof zeros ? sizeof zeros : w->h.len - at;
        CHECK(pwrite(fd, zeros, n, (off_t)(w->h.off + at)) == (ssize_t)n,
              "undo: zeros");
        at += n;
    }
    close(fd);
}

/* The disk after the cut: of each file's writes since its last sync, a
 * random subset is lost (newest first; a write overlapping a later one
 * that was kept is kept too, as the page cache held the later content).
 * The number undone. */
static unsigned play_disk(const char *log)
{
    size_t len;
    unsigned char *buf = (unsigned char *)file_read(log, &len);
    if (!buf)
        return 0;   /* nothing written */
    wrec *w = NULL;
    size_t n = 0, cap = 0;
    for (size_t at = 0; at < len;) {
        powercut_rec h;
        CHECK(len - at >= sizeof h, "undo log cut short");
        memcpy(&h, buf + at, sizeof h);
        at += sizeof h;
        char *path = strndup((char *)buf + at, h.path_len);
        at += h.path_len;
        if (h.kind == 'S') {
            for (size_t i = 0; i < n; i++)
                if (strcmp(w[i].path, path) == 0)
                    w[i].later_synced = true;
            free(path);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            w = realloc(w, cap * sizeof *w);
            CHECK(w, "out of memory");
        }
        w[n] = (wrec){ h, path, buf + at, false };
        at += h.old_len;
        n++;
    }
    unsigned undone = 0;
    bool *kept = calloc(n ? n : 1, sizeof *kept);
    for (size_t i = n; i-- > 0;) {
        if (w[i].later_synced)
            continue;
        bool must_keep = false;
        for (size_t j = i + 1; j < n && !must_keep; j++)
            must_keep = kept[j] && same_range(&w[i], &w[j]);
        if (must_keep || (rnd() & 1)) {
            kept[i] = true;
            continue;
        }
        undo(&w[i]);
        undone++;
    }
    for (size_t i = 0; i < n; i++)
        free(w[i].path);
    free(w);
    free(kept);
    free(buf);
    return undone;
}

/* One round: the child until it finishes or the power goes; what it
 * acknowledged in acked[]. True when the power went. */
static bool write_round(const char *self, const char *preload, const char *dir,
                        const char *log, uint64_t round, bool *acked)
{
    int pfd[2];
    CHECK(pipe(pfd) == 0, "pipe");
    char at[32], seed[32], r[32];
    snprintf(at, sizeof at, "%" PRIu64, 1 + rnd() % 200);   /* ~150 a round */
    snprintf(seed, sizeof seed, "%" PRIu64, rnd());
    snprintf(r, sizeof r, "%" PRIu64, round);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        setenv("RZ_POWERCUT_DIR", dir, 1);
        setenv("RZ_POWERCUT_LOG", log, 1);
        setenv("RZ_POWERCUT_AT", at, 1);
        setenv("RZ_POWERCUT_SEED", seed, 1);
        setenv("LD_PRELOAD", preload, 1);
        execl(self, self, "--child", dir, r, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    uint64_t i;
    while (read(pfd[0], &i, sizeof i) == sizeof i)
        if (i < BATCHES)
            acked[i] = true;
    close(pfd[0]);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status),
          "round %" PRIu64 ": the writer did not exit", round);
    int code = WEXITSTATUS(status);
    CHECK(code == 0 || code == POWERCUT_EXIT,
          "round %" PRIu64 ": the writer exited %d", round, code);
    return code == POWERCUT_EXIT;
}

static void check_round(const char *dir, uint64_t round, const bool *acked)
{
    rz_ledger_opts o = opts();
    rz_ledger *l;
    int rc = rz_ledger_open(&l, dir, &o);
    CHECK(rc == RZ_OK, "round %" PRIu64 ": open refused after a power cut: %s",
          round, rz_error_last()->message);
    for (uint64_t b = 0; b < BATCHES; b++) {
        rz_ledger_transfer tr;
        CHECK(!acked[b] || rz_ledger_transfer_get(l, batch_id(round, b), &tr) == RZ_OK,
              "round %" PRIu64 ": acknowledged batch %" PRIu64 " lost", round, b);
    }
    CHECK(rz_ledger_verify(l) == RZ_OK, "round %" PRIu64 ": verify: %s", round,
          rz_error_last()->message);
    rz_ledger_close(l);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--child") == 0)
        return child(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "--play") == 0) {   /* for other tests */
        rng = strtoull(argv[3], NULL, 10) * 0x9e3779b97f4a7c15ull + 1;
        printf("%u\n", play_disk(argv[2]));
        return 0;
    }
    CHECK(argc == 2, "usage: test_powercut PRELOAD.so");
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(sl > 0, "/proc/self/exe");
    self[sl] = 0;
    const char *e = getenv("RZ_POWERCUT_ROUNDS");
    uint64_t rounds = e ? strtoull(e, NULL, 10) : 24;
    e = getenv("RZ_POWERCUT_SEED");
    uint64_t seed = e ? strtoull(e, NULL, 10) : 0x9011cafeull;
    struct stat st;
    const char *root = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0
        ? "/dev/shm" : "/tmp";
    char top[128];
    snprintf(top, sizeof top, "%s/rz-powercut-XXXXXX", root);
    CHECK(mkdtemp(top), "mkdtemp");
    char dir[160], log[160];
    snprintf(dir, sizeof dir, "%s/ledger", top);
    snprintf(log, sizeof log, "%s/undo.log", top);
    CHECK(mkdir(dir, 0700) == 0, "mkdir");
    unsigned cuts = 0, undone = 0, acked_total = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        rng = seed * 0x9e3779b97f4a7c15ull + round + 1;
        for (int w = 0; w < 8; w++)
            rnd();
        bool acked[BATCHES] = { false };
        unlink(log);
        cuts += write_round(self, argv[1], dir, log, round, acked);
        undone += play_disk(log);
        for (int b = 0; b < BATCHES; b++)
            acked_total += acked[b];
        check_round(dir, round, acked);
    }
    printf("%" PRIu64 " rounds on one ledger: %u power cuts, %u unsynced writes "
           "lost, %u acknowledged batches all there\n", rounds, cuts, undone,
           acked_total);
    unlink(log);
    CHECK(tmp_dir_remove(top) == 0, "cleanup");
    return 0;
}

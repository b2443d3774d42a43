/* The write-ahead journal. The file is preallocated with zeros and written
 * in place, so fdatasync flushes only data, never a size change. After a
 * checkpoint (LMDB synced) a round starts: a marker at offset 0 naming the
 * last batch in LMDB, then the batches after it. Records left from earlier
 * rounds carry sequence numbers LMDB already holds, and a torn record fails
 * its checksum, so a scan stops exactly where the last round ends. Only the
 * last record can be torn (each append waits for the one before to be on
 * disk), so a valid record after the end with a sequence number LMDB does
 * not hold means a record in the middle went bad: the caller refuses.
 * Appends go through a second descriptor opened with O_DSYNC: one write
 * call that returns once the data is on stable storage, as write +
 * fdatasync would, one system call less (bench/ledger/fsync_probe: median
 * latency about 10% lower on the development VM). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ledger/ledger_impl.h"

/* The journal's file I/O, through a seam a storage-fault simulator
 * replaces (tests/unit/test_ledger_faults.c); the plain calls otherwise. */
static ssize_t plain_pwrite(int fd, const void *p, size_t n, off_t off)
{
    return pwrite(fd, p, n, off);
}

static ssize_t plain_pread(int fd, void *p, size_t n, off_t off)
{
    return pread(fd, p, n, off);
}

static const rz__ledger_io plain_io = { plain_pwrite, plain_pread, fsync,
                                        mdb_txn_commit };
const rz__ledger_io *rz__ledger_io_seam = &plain_io;

static int io_error(const char *what)
{
    return rz__error(RZ_EIO, "ledger journal: %s: %s", what, strerror(errno));
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = rz__ledger_io_seam->pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return io_error("write");
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return RZ_OK;
}

static int read_all(int fd, uint8_t *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = rz__ledger_io_seam->pread(fd, p + *got, n - *got,
                                              (off_t)(off + *got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return io_error("read");
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return RZ_OK;
}

/* Fill [from, to) with zeros and make the new size durable. A ledger that
 * is not durable only needs the size: a sparse extension reads as the same
 * zeros and costs no writes (an embedded run's throwaway ledger). */
static int preallocate(int fd, uint64_t from, uint64_t to, bool durable)
{
    if (!durable)
        return ftruncate(fd, (off_t)to) == 0 ? RZ_OK : io_error("ftruncate");
    static const uint8_t zeros[65536];
    for (uint64_t off = from; off < to; off += sizeof zeros) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        int rc = write_all(fd, zeros, n, off);
        if (rc != RZ_OK)
            return rc;
    }
    return rz__ledger_io_seam->fsync(fd) == 0 ? RZ_OK : io_error("fsync");
}

int rz__journal_open(rz__journal *j, const char *path, bool create)
{
    memset(j, 0, sizeof *j);
    j->wfd = -1;
    j->marker = UINT64_MAX;
    j->existed = access(path, F_OK) == 0;
    j->fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (j->fd < 0)
        return errno == ENOENT ? rz__error(RZ_ENOENT, "%s is missing", path)
                               : io_error(path);
    /* One writer: the lock dies with the process, also on SIGKILL. */
    if (flock(j->fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(j->fd);
        j->fd = -1;
        if (e == EWOULDBLOCK)
            return rz__error(RZ_ESTATE, "the ledger is open for writing by "
                             "another process");
        errno = e;
        return io_error("lock");
    }
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        int rc = io_error("stat");
        rz__journal_close(j);
        return rc;
    }
    j->found = j->size = (uint64_t)st.st_size;
    return RZ_OK;
}

int rz__journal_open_reader(rz__journal *j, const char *path)
{
    memset(j, 0, sizeof *j);
    j->wfd = -1;
    j->marker = UINT64_MAX;
    j->existed = true;
    j->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (j->fd < 0)
        return errno == ENOENT ? rz__error(RZ_ENOENT, "%s is missing", path)
                               : io_error(path);
    struct stat st;
    int rc = RZ_OK;
    if (flock(j->fd, LOCK_SH | LOCK_NB) != 0)
        rc = errno == EWOULDBLOCK
             ? rz__error(RZ_ESTATE, "the ledger is open for writing")
             : io_error("lock");
    else if (fstat(j->fd, &st) != 0)
        rc = io_error("stat");
    else
        j->found = j->size = (uint64_t)st.st_size;
    if (rc != RZ_OK)
        rz__journal_close(j);
    return rc;
}

int rz__journal_prepare(rz__journal *j, const char *path, uint64_t size,
                        bool durable)
{
    int rc = RZ_OK;
    if (j->size < size) {
        rc = preallocate(j->fd, j->size, size, durable);
        if (rc == RZ_OK)
            j->size = size;
    }
    if (rc == RZ_OK) {
        j->wfd = durable ? open(path, O_WRONLY | O_DSYNC | O_CLOEXEC)
                         : dup(j->fd);
        if (j->wfd < 0)
            rc = io_error(path);
    }
    j->durable = durable;
    return rc;
}

void rz__journal_close(rz__journal *j)
{
    if (j->wfd >= 0)
        close(j->wfd);
    if (j->fd >= 0)
        close(j->fd);
    j->fd = j->wfd = -1;
    free(j->buf);
    j->buf = NULL;
    j->cap = 0;
}

bool rz__journal_fits(const rz__journal *j, size_t len)
{
    return j->pos + len <= j->size;
}

static int reserve(rz__journal *j, size_t len)
{
    if (len <= j->cap)
        return RZ_OK;
    uint8_t *nb = rz__realloc(j->buf, len);
    if (!nb)
        return rz__error(RZ_ENOMEM, "out of memory");
    j->buf = nb;
    j->cap = len;
    return RZ_OK;
}

int rz__journal_append(rz__journal *j, const rz__ledger_jhdr *h,
                       const rz_ledger_op *ops)
{
    size_t len = rz__ledger_record_size(h->n_ops);
    int rc = reserve(j, len);
    if (rc != RZ_OK)
        return rc;
    rz__ledger_record_encode(h, ops, j->buf);
    /* A record bigger than the whole file (a small journal_size) grows it:
     * O_DSYNC then also makes the new size durable. */
    if ((rc = write_all(j->wfd, j->buf, len, j->pos)) != RZ_OK)
        return rc;
    j->pos += len;
    if (j->pos > j->size)
        j->size = j->pos;
    return RZ_OK;
}

int rz__journal_restart(rz__journal *j, uint64_t applied)
{
    /* A round without batches leaves the marker it began with. */
    if (j->marker == applied && j->pos == RZ__LEDGER_MARKER_SIZE)
        return RZ_OK;
    rz__ledger_jhdr h = { .seq = applied, .size = j->size };
    j->pos = 0;
    j->marker = UINT64_MAX;
    int rc = rz__journal_append(j, &h, NULL);
    if (rc == RZ_OK)
        j->marker = applied;
    return rc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Decode the record at off, if there is a valid one. */
static int record_read(rz__journal *j, uint64_t off, rz__ledger_jhdr *h,
                       rz_ledger_op *ops, size_t *used, bool *valid)
{
    size_t got, plen;
    *valid = false;
    int rc = read_all(j->fd, j->buf, RZ__LEDGER_JHDR_SIZE, off, &got);
    if (rc != RZ_OK || rz__ledger_record_header(j->buf, got, h, &plen) != RZ_OK)
        return rc;
    rc = read_all(j->fd, j->buf + RZ__LEDGER_JHDR_SIZE, plen,
                  off + RZ__LEDGER_JHDR_SIZE, &got);
    if (rc != RZ_OK)
        return rc;
    *valid = rz__ledger_record_decode(j->buf, RZ__LEDGER_JHDR_SIZE + got, h,
                                      ops, used) == RZ_OK;
    return RZ_OK;
}

/* A record that reads as damaged is read again (up to 3 times): damage in transit
 * (a flipped bit on the bus, a bad read) must not pass for the end of the
 * journal. What is damaged on disk stays damaged. */
static int record_at(rz__journal *j, uint64_t off, rz__ledger_jhdr *h,
                     rz_ledger_op *ops, size_t *used, bool *valid)
{
    int rc = record_read(j, off, h, ops, used, valid);
    for (int again = 0; again < 3 && rc == RZ_OK && !*valid; again++)
        rc = record_read(j, off, h, ops, used, valid);
    return rc;
}

/* Every record starts at a multiple of 16 (48 + 112 n, 64): look at each
 * such offset after `from` whose first bytes are the magic. Holes (a
 * journal that is not durable is sparse) are skipped. */
static int probe_rest(rz__journal *j, uint64_t from, rz_ledger_op *ops,
                      rz__journal_scan_info *info)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *chunk = rz__malloc(CHUNK);
    if (!chunk)
        return rz__error(RZ_ENOMEM, "out of memory");
    struct stat st;
    int rc = fstat(j->fd, &st) == 0 ? RZ_OK : io_error("stat");
    uint64_t end = rc == RZ_OK ? (uint64_t)st.st_size : 0;
    uint64_t off = (from + 16) & ~(uint64_t)15;
    while (rc == RZ_OK && off < end) {
        off_t data = lseek(j->fd, (off_t)off, SEEK_DATA);
        if (data < 0)
            break;   /* ENXIO: only a hole is left */
        off = (uint64_t)data & ~(uint64_t)15;
        size_t got;
        rc = read_all(j->fd, chunk, CHUNK, off, &got);
        for (size_t i = 0; rc == RZ_OK && i + 4 <= got; i += 16) {
            if (le32(chunk + i) != RZ__LEDGER_JMAGIC)
                continue;
            rz__ledger_jhdr h;
            size_t used;
            bool valid;
            rc = record_at(j, off + i, &h, ops, &used, &valid);
            if (rc == RZ_OK && valid) {
                info->valid++;
                if (h.seq > info->later_seq)
                    info->later_seq = h.seq;
            }
        }
        if (got < CHUNK)
            break;
        off += got;
    }
    free(chunk);
    if (info->later_seq > info->max_seq)
        info->max_seq = info->later_seq;
    return rc;
}

int rz__journal_scan(rz__journal *j, rz__journal_fn fn, void *ctx,
                     rz__journal_scan_info *info)
{
    memset(info, 0, sizeof *info);
    rz_ledger_op *ops = rz__malloc(sizeof *ops * RZ_LEDGER_BATCH_MAX);
    int rc = ops ? reserve(j, rz__ledger_record_size(RZ_LEDGER_BATCH_MAX))
                 : rz__error(RZ_ENOMEM, "out of memory");
    uint64_t off = 0;
    while (rc == RZ_OK) {
        size_t used;
        bool valid;
        rz__ledger_jhdr h;
        rc = record_at(j, off, &h, ops, &used, &valid);
        if (rc != RZ_OK || !valid)
            break;   /* torn, stale, or the end of the last round */
        if (off == 0 && !h.n_ops) {
            j->marker = h.seq;
            info->marker_size = h.size;
        }
        if (h.seq > info->max_seq)
            info->max_seq = h.seq;
        info->valid++;
        rc = fn(ctx, &h, ops);
        off += used;
    }
    info->end = off;
    if (rc == RZ_OK)
        rc = probe_rest(j, off, ops, info);
    free(ops);
    if (rc == RZ_OK)
        rz_error_clear();   /* the records that ended the scan are no error */
    return rc;
}

bool rz__journal_settled(rz__journal *j, uint64_t applied)
{
    rz_ledger_op *ops = rz__malloc(sizeof *ops * RZ_LEDGER_BATCH_MAX);
    bool settled = false, valid = false;
    rz__ledger_jhdr m, h;
    size_t used;
    if (ops && reserve(j, rz__ledger_record_size(RZ_LEDGER_BATCH_MAX)) == RZ_OK &&
        record_at(j, 0, &m, ops, &used, &valid) == RZ_OK && valid &&
        !m.n_ops && m.seq == applied && m.size <= j->found &&
        record_at(j, used, &h, ops, &used, &valid) == RZ_OK && valid)
        settled = h.seq <= applied;
    free(ops);
    rz_error_clear();
    return settled;
}

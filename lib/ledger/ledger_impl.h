/* Internals of the ledger: record codecs, the journal, batch application. */
#ifndef RZ_LEDGER_IMPL_H
#define RZ_LEDGER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <lmdb.h>

#include "common/internal.h"
#include "rhizos/ledger.h"

/* On-disk sizes (docs/ledger.md, "On-disk format"). */
#define RZ__LEDGER_ACCOUNT_SIZE 72
#define RZ__LEDGER_TRANSFER_SIZE 128
#define RZ__LEDGER_OP_SIZE 112
#define RZ__LEDGER_JHDR_SIZE 48
#define RZ__LEDGER_MARKER_SIZE 64
/* Data directories whose journal starts each round with a marker and whose
 * accounts and transfers carry a checksum; older ones have no "format" key
 * in the meta table and are migrated at a writer's open (docs/formats.md). */
#define RZ__LEDGER_FORMAT 3
/* Format 2 held amounts in cents; format 3 in micro-dollars. A writer's
 * open multiplies every amount of an older directory by
 * RZ__LEDGER_MICROS_PER_CENT in one transaction (docs/formats.md). */
#define RZ__LEDGER_FORMAT_CENTS 2
#define RZ__LEDGER_MICROS_PER_CENT 10000u
/* In a journal record's fee_bps: the batch was applied in micro-dollars
 * with the fee rounded half up (rz_ledger_fee). Records without it are
 * from the cents version (fee floored) and replay as they were applied. */
#define RZ__LEDGER_JFEE_MICROS 0x80000000u
/* The end of every message that refuses a damaged ledger. */
#define RZ__LEDGER_RECOVER "Stop, keep the directory as it is, and " \
    "restore it from a backup: docs/ledger.md, \"Recovery\" " \
    "(`rhizos-orchestrator check --data DIR` reports what is wrong)"
#define RZ__LEDGER_JMAGIC 0x4a4c5a52u   /* "RZLJ" little-endian */
#define RZ__LEDGER_RECORD_VERSION 1   /* journal records and ops */
#define RZ__LEDGER_STORED_VERSION 2   /* accounts, transfers: with a CRC */

/* Keys are big-endian so that LMDB's byte order is numeric order. Inline:
 * every B-tree operation builds a key. */
static inline void rz__ledger_be64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    v = __builtin_bswap64(v);
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
#endif
}

static inline uint64_t rz__ledger_get_be64(const uint8_t *p)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, 8);
    return __builtin_bswap64(v);
#else
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
#endif
}

static inline void rz__ledger_id_key(rz_ledger_id id, uint8_t key[16])
{
    rz__ledger_be64(key, id.hi);
    rz__ledger_be64(key + 8, id.lo);
}

static inline rz_ledger_id rz__ledger_key_id(const uint8_t key[16])
{
    return rz_ledger_id_make(rz__ledger_get_be64(key),
                             rz__ledger_get_be64(key + 8));
}
static inline bool rz__ledger_id_zero(rz_ledger_id a)
{
    return a.hi == 0 && a.lo == 0;
}

/* Records: encoders write exactly *_SIZE bytes; decoders check every field
 * and return RZ_OK or RZ_EINVALID (with detail). */
RZ_HIDDEN void rz__ledger_account_encode(const rz_ledger_account *a,
                                         uint8_t out[RZ__LEDGER_ACCOUNT_SIZE]);
RZ_HIDDEN int rz__ledger_account_decode(const void *buf, size_t len,
                                        rz_ledger_account *a);
RZ_HIDDEN void rz__ledger_transfer_encode(const rz_ledger_transfer *t,
                                          uint8_t out[RZ__LEDGER_TRANSFER_SIZE]);
RZ_HIDDEN int rz__ledger_transfer_decode(const void *buf, size_t len,
                                         rz_ledger_transfer *t);
RZ_HIDDEN void rz__ledger_op_encode(const rz_ledger_op *op,
                                    uint8_t out[RZ__LEDGER_OP_SIZE]);
RZ_HIDDEN int rz__ledger_op_decode(const void *buf, size_t len,
                                   rz_ledger_op *op);

/* Turn a version 1 account or transfer record (by its length) into a
 * checksummed one in place: 1 if changed, RZ_OK if it already was, else an
 * error. */
RZ_HIDDEN int rz__ledger_record_upgrade(uint8_t *rec, size_t len);

/* A journal record: header, then n ops. A record without ops is the marker
 * that starts a round at offset 0: seq is the last batch in LMDB when the
 * round began, size the journal's size then. */
typedef struct rz__ledger_jhdr {
    uint64_t seq;
    uint32_t n_ops;
    uint32_t fee_bps;
    uint64_t size;
} rz__ledger_jhdr;

/* Bytes a record of n ops takes (a marker when n is 0). */
RZ_HIDDEN size_t rz__ledger_record_size(size_t n);
/* Encode a record into out (rz__ledger_record_size(n) bytes). */
RZ_HIDDEN void rz__ledger_record_encode(const rz__ledger_jhdr *h,
                                        const rz_ledger_op *ops,
                                        uint8_t *out);
/* Check the header at buf: RZ_OK and the payload length in *payload, or
 * RZ_EINVALID. Does not check the checksum (the payload may not be read
 * yet). */
RZ_HIDDEN int rz__ledger_record_header(const void *buf, size_t len,
                                       rz__ledger_jhdr *h, size_t *payload);
/* Decode a whole record (header + payload, checksum verified) into ops
 * (room for RZ_LEDGER_BATCH_MAX). *used = bytes it took. */
RZ_HIDDEN int rz__ledger_record_decode(const void *buf, size_t len,
                                       rz__ledger_jhdr *h, rz_ledger_op *ops,
                                       size_t *used);

/* The journal's file I/O and the ledger's LMDB commits (the plain calls
 * unless a test replaces them to simulate storage faults: torn and failed
 * writes, failed syncs, damaged reads, failed commits). LMDB's own writes
 * are not here (it is a system library): its commit's result is, and a
 * full file system is simulated for real (tests/unit/test_lmdb_full.c).
 * A replacement commit that fails must leave the transaction freed and the
 * store as it was, as mdb_txn_commit does. Not thread-safe to swap while a
 * ledger is open. */
typedef struct rz__ledger_io {
    ssize_t (*pwrite)(int fd, const void *p, size_t n, off_t off);
    ssize_t (*pread)(int fd, void *p, size_t n, off_t off);
    int (*fsync)(int fd);
    int (*commit)(MDB_txn *txn);
} rz__ledger_io;
RZ_HIDDEN extern const rz__ledger_io *rz__ledger_io_seam;

/* The write-ahead journal: a preallocated file written in place from
 * offset 0 after every checkpoint; a batch is one record + fdatasync. */
typedef struct rz__journal {
    int fd;            /* locked; reads, preallocation */
    int wfd;           /* appends: O_DSYNC when durable, else fd */
    bool durable;
    bool existed;      /* the file was there before open */
    uint64_t found;    /* its size then */
    uint64_t size;     /* preallocated bytes */
    uint64_t pos;      /* next write offset */
    uint64_t marker;   /* seq of the marker at offset 0; UINT64_MAX: none */
    uint8_t *buf;      /* encoding buffer */
    size_t cap;
} rz__journal;

/* What a scan saw beyond the records it handed to its callback. */
typedef struct rz__journal_scan_info {
    uint64_t end;        /* offset of the first record that is not valid */
    uint64_t valid;      /* valid records seen, markers included */
    uint64_t max_seq;    /* highest seq of any valid record in the file */
    uint64_t later_seq;  /* highest seq of a valid record after `end`, 0: none */
    uint64_t marker_size;/* the size the marker at offset 0 recorded, 0: none */
} rz__journal_scan_info;

/* Open and lock the journal (created only when `create`); nothing is
 * written until rz__journal_prepare, so a journal the caller refuses after
 * its scan is left as it was found. */
RZ_HIDDEN int rz__journal_open(rz__journal *j, const char *path, bool create);
/* Open for a scan only, under a shared lock: RZ_ESTATE while a writer
 * holds the journal, RZ_ENOENT when there is none. */
RZ_HIDDEN int rz__journal_open_reader(rz__journal *j, const char *path);
/* Preallocate to at least `size` bytes and open the append descriptor. */
RZ_HIDDEN int rz__journal_prepare(rz__journal *j, const char *path,
                                  uint64_t size, bool durable);
RZ_HIDDEN void rz__journal_close(rz__journal *j);
/* Whether a record of `len` bytes fits before the end. */
RZ_HIDDEN bool rz__journal_fits(const rz__journal *j, size_t len);
RZ_HIDDEN int rz__journal_append(rz__journal *j, const rz__ledger_jhdr *h,
                                 const rz_ledger_op *ops);
/* Start a round (after LMDB was synced up to batch `applied`): a durable
 * marker at offset 0, appends after it. */
RZ_HIDDEN int rz__journal_restart(rz__journal *j, uint64_t applied);
/* Call fn for each valid record from offset 0 until the first invalid one
 * (markers included: n_ops 0), then look at the rest of the file for valid
 * records, so that the caller can tell a torn tail from a bad record with
 * acknowledged ones after it. fn returns RZ_OK to go on, anything else
 * stops the scan with it. */
typedef int (*rz__journal_fn)(void *ctx, const rz__ledger_jhdr *h,
                              const rz_ledger_op *ops);
RZ_HIDDEN int rz__journal_scan(rz__journal *j, rz__journal_fn fn, void *ctx,
                               rz__journal_scan_info *info);

/* Whether a reader may skip the scan, proven from two records: the
 * marker at offset 0 names the last batch LMDB holds (`applied`), the file
 * is as long as the marker says, and right after it lies a valid record of
 * an earlier round (seq <= applied). A round's first append goes there and
 * each append is durable before the next starts, so no batch was
 * journaled since LMDB took them all, and a damaged record with
 * acknowledged ones after it cannot be. Anything else: false (scan). */
RZ_HIDDEN bool rz__journal_settled(rz__journal *j, uint64_t applied);

/* The LMDB side. */
/* open: the open pending transfers of each account, by code: key account
 * (16) + code (4, big-endian), one sorted duplicate per transfer id (16),
 * so that a count is one B-tree lookup. Written with the transfer's state
 * in the same transaction; 0 in a reader of a directory no writer of this
 * version has opened yet (it is built at a writer's open). */
typedef struct rz__ledger_dbs {
    MDB_dbi accounts, transfers, history, jobs, expiry, meta, open;
} rz__ledger_dbs;

static inline void rz__ledger_open_key(rz_ledger_id account, uint32_t code,
                                       uint8_t k[20])
{
    rz__ledger_id_key(account, k);
    k[16] = (uint8_t)(code >> 24);
    k[17] = (uint8_t)(code >> 16);
    k[18] = (uint8_t)(code >> 8);
    k[19] = (uint8_t)code;
}

/* Add (open) or remove the index entries of pending transfer t, under its
 * debit and its credit account. */
RZ_HIDDEN int rz__ledger_open_index(MDB_txn *txn, const rz__ledger_dbs *d,
                                    const rz_ledger_transfer *t, bool open);

/* Counters kept in the meta table. */
typedef struct rz__ledger_meta {
    uint64_t applied;     /* last journal batch applied */
    uint64_t seq;         /* last commit-order number given out */
    uint64_t accounts, transfers, batches;
    uint64_t open_pending;
} rz__ledger_meta;

RZ_HIDDEN int rz__ledger_meta_read(MDB_txn *txn, const rz__ledger_dbs *d,
                                   rz__ledger_meta *m);
RZ_HIDDEN int rz__ledger_meta_write(MDB_txn *txn, const rz__ledger_dbs *d,
                                    const rz__ledger_meta *m);
RZ_HIDDEN int rz__ledger_db_error(int mrc, const char *what);

/* The fee of `amount` under a journal record's fee_bps field (its
 * RZ__LEDGER_JFEE_MICROS bit says which rule). */
RZ_HIDDEN uint64_t rz__ledger_fee_rule(uint64_t amount, uint32_t jfee);

/* Apply a batch inside txn; fills results. fee_bps as in a journal record
 * (with RZ__LEDGER_JFEE_MICROS for today's rule). Returns RZ_OK or a database /
 * memory error (then the txn must be aborted). Updates *m. */
RZ_HIDDEN int rz__ledger_apply(MDB_txn *txn, const rz__ledger_dbs *d,
                               rz__ledger_meta *m, uint32_t fee_bps,
                               const rz_ledger_op *ops, size_t n,
                               rz_ledger_result *results);

/* Reads shared by queries and verify. */
RZ_HIDDEN int rz__ledger_get_account(MDB_txn *txn, const rz__ledger_dbs *d,
                                     rz_ledger_id id, rz_ledger_account *a);
RZ_HIDDEN int rz__ledger_get_transfer(MDB_txn *txn, const rz__ledger_dbs *d,
                                      rz_ledger_id id, rz_ledger_transfer *t);

struct rz_ledger {
    MDB_env *env;
    void *map; size_t map_len;   /* data.mdb's mapping: shed at checkpoints */
    rz__ledger_dbs dbs;
    rz__journal journal;
    MDB_txn *wtxn;         /* writer: every batch since the last checkpoint */
    rz__ledger_meta meta;
    uint64_t ops_since;    /* ops applied since the last checkpoint */
    uint64_t checkpoint_ops;
    uint64_t shed_faults;  /* page faults in batches since the last shed */
    bool shed_by_faults;   /* not durable: on /dev/shm, its pages are ours */
    uint32_t fee_bps;
    bool read_only;
    bool broken;           /* a write failed: reopen to recover */
    uint32_t format;       /* RZ__LEDGER_FORMAT, or 0 before it existed */
    char *dir;
};

/* A transaction to read from: the writer's own (it sees its latest state)
 * or a fresh read-only one. Pair with rz__ledger_read_end. */
RZ_HIDDEN int rz__ledger_read_begin(const rz_ledger *l, MDB_txn **txn);
RZ_HIDDEN void rz__ledger_read_end(const rz_ledger *l, MDB_txn *txn);

#endif

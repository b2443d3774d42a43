/* The audit log: every admin and money operation and every job submit,
 * cancel and result, append-only at DATA/audit.log, one JSON object a
 * line, each carrying the hash of the line before it ("prev") and its own
 * ("hash", over the line's text without that member): BLAKE2b keyed with
 * DATA/audit.key (32 random bytes, made at the first start, never logged)
 * for records marked "keyed" (all this version writes), unkeyed for older
 * ones. Once a record is keyed every later one must be.
 *
 * Failing closed: an operation is only started once its "begin" record is
 * durable, and its reply only leaves once its "end" record (the HTTP
 * status) is made: a failed begin answers 500 with nothing done, an end
 * that cannot be made turns the reply into a 500 (the operation's own
 * effect then stands, with its begin record and no end). Both are grouped by
 * event-loop pass: the pass's audited calls wait (audit_begin_later) until
 * their begin records are durable together, then run; their end records
 * are made after the engine's commit and kept in memory, and the log's
 * next write takes them first, with its one fdatasync: the next pass's
 * begin records, or audit_head_settle within AUDIT_HEAD_LAG_MS — one
 * write and one fdatasync a pass, not two. A begin record with no end is a
 * call that may or may not have taken effect: a crash between the two,
 * or a crash (of the process or the power) that took a pass's end records
 * before that next write; the engine and ledger say which. Each write is
 * synced before the next is made, so a crash can only tear the last line.
 * Records name the caller, the route, the path's ids and the amounts,
 * never a key, token or body.
 *
 * The head (last seq and hash, and the seq of the first keyed record) is
 * kept in the auth store too, so that whether the chain is keyed is not the
 * log's own word: a chain rewritten without the key (all records unkeyed)
 * is refused against it. A record is
 * durable in the log first (write + fdatasync), then the head moves (an
 * fsync'd LMDB commit: in a pass, the auth store's group, committed by the
 * pass or, when the pass's other auth writes have redo copies in the
 * engine, within 50 ms: auth_pass.c).
 * A pass's end records move the head when they are written: with the next
 * pass's commit, which a busy server makes anyway, or AUDIT_HEAD_LAG_MS
 * later on its own; the head never names a record not yet synced. A crash
 * between the sync and the head's commit leaves the log records ahead of
 * the head: accepted at the next start when they follow the head.
 * A crash inside the write leaves a torn last line that never became
 * durable and that the head never named: cut, with a notice. Anything else
 * (a log behind its head: removed or cut short; a record at the head's
 * position with another hash: rewritten) refuses the start. */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "orch.h"

#define HASH_BYTES 32
#define HASH_HEX (2 * HASH_BYTES)
/* ,"hash":"<64 hex>"} closes every line. */
#define HASH_TAIL_LEN (9 + HASH_HEX + 2)
#define LINE_MAX_BYTES 4096

/* What went wrong last (the library's error slot is its own). */
static char audit_err[600];

__attribute__((format(printf, 2, 3)))
static int fail(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(audit_err, sizeof audit_err, fmt, ap);
    va_end(ap);
    return rc;
}

/* key NULL: an unkeyed record (written before keys). */
static void hash_line(const unsigned char *key, const char *body, size_t len,
                      char hex[HASH_HEX + 1])
{
    unsigned char h[HASH_BYTES];
    crypto_generichash(h, sizeof h, (const unsigned char *)body, len, key,
                       key ? AUDIT_KEY_BYTES : 0);
    sodium_bin2hex(hex, HASH_HEX + 1, h, sizeof h);
}

/* Key buffers: guarded, never swapped, wiped by sodium_free. One byte more
 * than a key, so key_read can tell a longer file. */
static unsigned char *key_alloc(void)
{
    unsigned char *k = sodium_malloc(AUDIT_KEY_BYTES + 1);
    if (!k)
        fail(-1, "out of memory for the audit key");
    return k;
}

static void audit_path(const char *data, char *out, size_t cap)
{
    snprintf(out, cap, "%s/audit.log", data);
}

/* DATA/audit.key into key (from key_alloc): 1 read, 0 none there, -1
 * unreadable (audit_err). No copy of the key is left elsewhere. */
static int key_read(const char *data, unsigned char *key)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/audit.key", data);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : fail(-1, "cannot read %s: %s", path,
                                          strerror(errno));
    ssize_t n = read(fd, key, AUDIT_KEY_BYTES + 1);
    close(fd);
    if (n != AUDIT_KEY_BYTES)
        sodium_memzero(key, AUDIT_KEY_BYTES + 1);
    return n == AUDIT_KEY_BYTES ? 1 : fail(-1, "%s is not an audit key "
                                           "(%d bytes expected)", path,
                                           AUDIT_KEY_BYTES);
}

static int key_make(const char *data, unsigned char *key)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/audit.key", data);
    randombytes_buf(key, AUDIT_KEY_BYTES);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, key, AUDIT_KEY_BYTES) == AUDIT_KEY_BYTES &&
              fsync(fd) == 0;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (!ok && fd >= 0)
        unlink(path);
    return ok ? 0 : fail(-1, "cannot write %s: %s", path, strerror(err));
}

/* Split a stored line into its hashed body (the text before the hash
 * member, closed again with '}') and its stated hash. */
static bool split_line(const char *line, size_t len, char *body, size_t cap,
                       char hash[HASH_HEX + 1])
{
    static const char tail[] = ",\"hash\":\"";
    if (len < HASH_TAIL_LEN + 2 || len - HASH_TAIL_LEN + 2 > cap)
        return false;
    const char *t = line + len - HASH_TAIL_LEN;
    if (memcmp(t, tail, sizeof tail - 1) != 0 || line[len - 2] != '"' ||
        line[len - 1] != '}')
        return false;
    memcpy(hash, t + sizeof tail - 1, HASH_HEX);
    hash[HASH_HEX] = '\0';
    size_t bl = (size_t)(t - line);
    memcpy(body, line, bl);
    body[bl] = '}';
    body[bl + 1] = '\0';
    return true;
}

typedef struct chain {
    uint64_t seq;                /* records read */
    char last[HASH_HEX + 1];     /* hash of the last one */
    uint64_t mark;               /* a record whose hash to keep (the head's) */
    char at_mark[HASH_HEX + 1];  /* its hash (64 zeros for record 0) */
    uint64_t bytes;              /* where the next one goes */
    bool torn;                   /* the last line ends without its newline */
    bool keyed;                  /* a keyed record was seen */
    uint64_t keyed_from;         /* the first keyed record; 0: none */
    bool exists;                 /* the file is there */
} chain;

/* Walk the log: every line well formed, its prev the hash before, its hash
 * its own (keyed with `key` where the record says so; key NULL: a keyed
 * record cannot be checked, an error). `print` (may be NULL) gets each
 * line. RZ_OK, or RZ_EINVALID with the record named in audit_err. A
 * missing file is an empty log. */
/* One whole line (without its newline) as record c->seq + 1 at byte `at`:
 * RZ_OK with c moved past it, or RZ_EINVALID. */
static int take_line(const char *path, const unsigned char *key, chain *c,
                     const char *line, size_t n, uint64_t at)
{
    uint64_t rec = c->seq + 1;
    char body[LINE_MAX_BYTES], stated[HASH_HEX + 1], mine[HASH_HEX + 1];
    cJSON *doc = NULL;
    if (!split_line(line, n, body, sizeof body, stated) ||
        !(doc = cJSON_Parse(body)))
        return fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %" PRIu64
                    ") is malformed", path, rec, at);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
    const cJSON *prev = cJSON_GetObjectItemCaseSensitive(doc, "prev");
    bool keyed = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(doc, "keyed"));
    hash_line(keyed ? key : NULL, body, strlen(body), mine);
    int rc = RZ_OK;
    if (keyed && !key)
        rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " is keyed and there "
                  "is no audit.key beside the log to check it with "
                  "(restore it from the backup of the data directory)",
                  path, rec);
    else if (!keyed && c->keyed)
        rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %" PRIu64
                  ") is not keyed but records before it are: it was "
                  "inserted or altered", path, rec, at);
    else if (!cJSON_IsNumber(seq) || seq->valuedouble != (double)rec)
        rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %" PRIu64
                  ") has the wrong sequence number: a record was removed or "
                  "inserted", path, rec, at);
    else if (!cJSON_IsString(prev) || strcmp(prev->valuestring, c->last) != 0)
        rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %" PRIu64
                  ") does not follow the record before it (its prev hash "
                  "differs)", path, rec, at);
    else if (strcmp(mine, stated) != 0)
        rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %" PRIu64
                  ") was altered (its hash differs)", path, rec, at);
    cJSON_Delete(doc);
    if (rc != RZ_OK)
        return rc;
    if (rec == c->mark)
        memcpy(c->at_mark, stated, sizeof c->at_mark);
    memcpy(c->last, stated, sizeof c->last);
    c->seq = rec;
    if (keyed && !c->keyed)
        c->keyed_from = rec;
    c->keyed |= keyed;
    return RZ_OK;
}

static int walk(const char *path, const unsigned char *key, chain *c,
                FILE *print, uint64_t mark)
{
    memset(c, 0, sizeof *c);
    memset(c->last, '0', HASH_HEX);
    memset(c->at_mark, '0', HASH_HEX);
    c->mark = mark;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? RZ_OK
                               : fail(RZ_EIO, "cannot read %s: %s", path,
                                              strerror(errno));
    c->exists = true;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = RZ_OK;
    while (rc == RZ_OK && (n = getline(&line, &cap, f)) > 0) {
        uint64_t at = c->bytes;
        if (line[n - 1] != '\n') {
            /* Only the last line can lack it: a crash mid-append. */
            c->torn = true;
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                      PRIu64 ") is cut short", path, c->seq + 1, at);
            break;
        }
        line[--n] = '\0';
        rc = take_line(path, key, c, line, (size_t)n, at);
        if (rc == RZ_OK)
            c->bytes += (uint64_t)n + 1;
        if (rc == RZ_OK && print)
            fprintf(print, "%s\n", line);
    }
    if (rc == RZ_OK && ferror(f))
        rc = fail(RZ_EIO, "cannot read %s", path);
    free(line);
    fclose(f);
    return rc;
}

/* The log as walked against the head the auth store keeps: 0 agree, 1 the
 * log is one record ahead (a crash between its fsync and the head's), -1
 * not (why in audit_err). */
static int head_check(const char *path, const chain *c, uint64_t hseq,
                      const unsigned char hbin[HASH_BYTES])
{
    char hhex[HASH_HEX + 1];
    sodium_bin2hex(hhex, sizeof hhex, hbin, HASH_BYTES);
    if (c->seq == hseq && strcmp(c->last, hhex) == 0)
        return 0;
    /* Records past the head that follow it: written (a pass's end records
     * go together) but the head not yet moved when the server stopped. */
    if (c->seq > hseq && c->mark == hseq && strcmp(c->at_mark, hhex) == 0)
        return 1;
    if (c->seq < hseq)
        return fail(-1, "%s %s: it ends at record %" PRIu64 " but record %"
                    PRIu64 " was written (the auth store keeps the head of "
                    "the chain)", path, c->exists ? "is behind" : "is missing",
                    c->seq, hseq);
    return fail(-1, "%s has diverged from the head the auth store keeps "
                "(record %" PRIu64 "): records were rewritten or added",
                path, hseq);
}

/* The log's keyed records against the auth store's word (since: its first
 * keyed record, 0 none recorded): 0 agree, -1 not (why in audit_err). A log
 * that stops before `since` is judged by head_check. */
static int keyed_check(const char *path, const chain *c, uint64_t since)
{
    if (!since || c->keyed_from == since || (!c->keyed_from && c->seq < since))
        return 0;
    if (!c->keyed_from || c->keyed_from > since)
        return fail(-1, "%s: record %" PRIu64 " is not keyed, but the auth "
                    "store says the chain is keyed from record %" PRIu64
                    ": the log was rewritten without audit.key", path, since,
                    since);
    return fail(-1, "%s: record %" PRIu64 " is keyed, but the auth store "
                "says the chain is keyed only from record %" PRIu64 ": the "
                "log or the auth store was altered", path, c->keyed_from, since);
}

/* What the head should say the chain is keyed from when it says nothing
 * (a new directory, or a head put before this was recorded): the log's
 * first keyed record, or the next record, which this version keys. */
static uint64_t keyed_since_of(const chain *c)
{
    return c->keyed_from ? c->keyed_from : c->seq + 1;
}

static const char RECOVER[] =
    "Stop, keep the data directory as it is, and restore audit.log (with "
    "audit.key) from a backup: docs/api.md, \"Audit log\". To accept the loss "
    "and go on from the log as it is: `" ORCH_NAME " audit --data DIR "
    "--accept` (recorded in the log)";

static int head_put(orch *o, uint64_t seq, const char hex[HASH_HEX + 1])
{
    unsigned char bin[HASH_BYTES];
    if (sodium_hex2bin(bin, sizeof bin, hex, HASH_HEX, NULL, NULL, NULL) != 0 ||
        rz_auth_audit_head_put2(o->auth, seq, bin, o->audit_keyed_since) != RZ_OK)
        return fail(RZ_EIO, "cannot keep the audit head in the auth store: %s",
                    rz_error_last()->message);
    /* A commit of its own: neither a pass's group nor a kept one took it. */
    o->audit_head_commits += !o->grouped && !o->auth_kept;
    auth_write_covered(o);   /* a head behind the log is accepted at start */
    return RZ_OK;
}

/* Key, log, head: any disagreement refuses the start before the log is
 * touched; only then is a torn last record cut. */
int audit_open(orch *o)
{
    audit_path(o->opts.data, o->audit_path, sizeof o->audit_path);
    if (!o->audit_key && !(o->audit_key = key_alloc())) {
        fprintf(stderr, ORCH_NAME ": %s\n", audit_err);
        return -1;
    }
    int have = key_read(o->opts.data, o->audit_key);
    uint64_t hseq = 0, hks = 0;
    unsigned char hbin[HASH_BYTES];
    int hrc = rz_auth_audit_head_get2(o->auth, &hseq, hbin, &hks), ahead = 0;
    if (hrc != RZ_OK && hrc != RZ_ENOENT) {
        fprintf(stderr, ORCH_NAME ": the audit head in the auth store: "
                "%s\n", rz_error_last()->message);
        return -1;
    }
    chain c;
    memset(&c, 0, sizeof c);   /* an unreadable key skips the walk: nothing torn */
    int rc = have < 0 ? RZ_EIO
                      : walk(o->audit_path, have ? o->audit_key : NULL, &c, NULL, hseq);
    if (rc == RZ_OK || (rc != RZ_OK && c.torn)) {
        /* No head: a new directory, or one from before heads were kept. */
        if (hrc == RZ_OK && (keyed_check(o->audit_path, &c, hks) < 0 ||
                             (ahead = head_check(o->audit_path, &c, hseq, hbin)) < 0)) {
            fprintf(stderr, ORCH_NAME ": refusing to start: %s. %s\n",
                    audit_err, RECOVER);
            return -1;
        }
    }
    /* A torn last line is a crash inside append(): as a begin record it
     * never became durable, so its operation never ran; as an end record
     * the operation stands and the log shows a begin without an end, the
     * same as when writing the end failed. Cut it, and say so. */
    if (rc != RZ_OK && c.torn) {
        if (truncate(o->audit_path, (off_t)c.bytes) != 0) {
            fprintf(stderr, ORCH_NAME ": cannot cut the torn last record of "
                    "%s: %s\n", o->audit_path, strerror(errno));
            return -1;
        }
        fprintf(stderr, ORCH_NAME ": %s; it was torn by a crash while being "
                "written and is removed (its operation did not complete "
                "under audit)\n", audit_err);
        rc = walk(o->audit_path, have ? o->audit_key : NULL, &c, NULL, hseq);
    }
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": the audit log is broken: %s (see "
                "`" ORCH_NAME " audit --data %s --verify`). Restore audit.log "
                "and audit.key from a backup: docs/api.md, \"Audit log\"\n",
                audit_err, o->opts.data);
        return -1;
    }
    o->audit_keyed_since = hks ? hks : keyed_since_of(&c);
    if ((!have && key_make(o->opts.data, o->audit_key) != 0) ||
        ((hrc == RZ_ENOENT || ahead || !hks) &&
         head_put(o, c.seq, c.last) != RZ_OK)) {
        fprintf(stderr, ORCH_NAME ": %s\n", audit_err);
        return -1;
    }
    sodium_mprotect_readonly(o->audit_key);
    o->audit_seq = c.seq;
    o->audit_bytes = c.bytes;
    memcpy(o->audit_last, c.last, sizeof o->audit_last);
    return 0;
}

void audit_close(orch *o)
{
    sodium_free(o->audit_key);
    o->audit_key = NULL;
    if (o->audit_pend_len)   /* audit_head_settle could not write them */
        fprintf(stderr, ORCH_NAME ": audit: %zu bytes of end records are lost: "
                "the log could not be written\n", o->audit_pend_len);
    free(o->audit_pend);
    o->audit_pend = NULL;
    o->audit_pend_len = 0;
}

/* Append records (the objects, which get seq and prev): durably, the
 * head with them (head_now), or kept for the log's next write (a pass's
 * end records).
 * RZ_OK or RZ_EIO; on failure the file is cut back to where it was. */
static int append_timed(orch *o, cJSON **docs, size_t n, bool head_now);

/* How long the head may stay behind a pass's end records when no other
 * commit of the auth store carries it. */
#define AUDIT_HEAD_LAG_MS 50
#define AUDIT_RETRY_S 1   /* after a failed write of pending records */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Append n records (the objects, which get seq and prev) as one write, one
 * fdatasync and one move of the head (or, !head_now, kept for the log's
 * next write, which takes them first): RZ_OK, or RZ_EIO with
 * none of them appended (the file cut back to where it was). Timed for
 * /metrics: the records are synced on the event loop, so what they cost
 * is the loop's time no other request gets. */
static int append_many_head(orch *o, cJSON **docs, size_t n, bool head_now)
{
    uint64_t t0 = mono_ns();
    int rc = append_timed(o, docs, n, head_now);
    o->audit_ns += mono_ns() - t0;
    if (rc == RZ_OK)
        o->audit_records += n;
    return rc;
}

static int append_many(orch *o, cJSON **docs, size_t n)
{
    return append_many_head(o, docs, n, true);
}

static int append(orch *o, cJSON *doc)
{
    return append_many(o, &doc, 1);
}

static void head_due_fired(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    audit_head_settle(arg);
}

/* The head's timer, made once: false without one (no event base). */
static bool head_timer(orch *o)
{
    if (!o->audit_head_ev && o->base)
        o->audit_head_ev = evtimer_new(o->base, head_due_fired, o);
    return o->audit_head_ev != NULL;
}

/* The head stays behind the chain's end for now (the records pending, or
 * written with the head not moved): settled by the next append, or by the
 * timer (head_timer made it). */
static void head_later(orch *o)
{
    o->audit_head_due = true;
    if (!evtimer_pending(o->audit_head_ev, NULL)) {
        struct timeval tv = { 0, AUDIT_HEAD_LAG_MS * 1000 };
        evtimer_add(o->audit_head_ev, &tv);
    }
}

void audit_head_settle(orch *o)
{
    /* The pending records written and synced, then the head: a failure
     * leaves them pending and the head where it was, and the timer tries
     * again a second later, as does the next append (a log ahead of its
     * head is accepted at a start). */
    if (!o->audit_head_due && !o->audit_pend_len)
        return;
    if (append_many_head(o, NULL, 0, true) == RZ_OK)
        return;   /* the append settled the timer */
    fprintf(stderr, ORCH_NAME ": audit: %s\n", audit_err);
    o->audit_head_due = true;
    if (o->audit_head_ev) {
        struct timeval tv = { AUDIT_RETRY_S, 0 };
        evtimer_add(o->audit_head_ev, &tv);
    }
}

/* Record i's line (seq, prev from the one before) into buf: its length,
 * its hash into hash; -1 too large. */
static int line_make(orch *o, cJSON *doc, uint64_t seq, const char *prev,
                     char *buf, char hash[HASH_HEX + 1])
{
    cJSON_AddTrueToObject(doc, "keyed");
    cJSON_AddNumberToObject(doc, "seq", (double)seq);
    cJSON_AddStringToObject(doc, "prev", prev);
    char *body = cJSON_PrintUnformatted(doc);
    if (!body || strlen(body) + HASH_TAIL_LEN > LINE_MAX_BYTES) {
        free(body);
        return -1;
    }
    size_t bl = strlen(body);
    hash_line(o->audit_key, body, bl, hash);
    int len = snprintf(buf, LINE_MAX_BYTES + 2, "%.*s,\"hash\":\"%s\"}\n",
                       (int)(bl - 1), body, hash);
    free(body);
    return len;
}

/* Write the lines (the pending ones first) and fdatasync them, then move
 * the head past them; on failure the file is cut back to where it was. */
static int write_synced(orch *o, const char *lines, size_t len, uint64_t seq,
                        const char hash[HASH_HEX + 1])
{
    /* Created only for the first record: a log that went away is an error. */
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (o->audit_bytes ? 0 : O_CREAT);
    int fd = open(o->audit_path, flags, 0600);
    if (fd < 0)
        return fail(RZ_EIO, "cannot open %s: %s", o->audit_path, strerror(errno));
    ssize_t w = write(fd, lines, len);
    int err = w == (ssize_t)len ? 0 : w < 0 ? errno : ENOSPC;
    if (!err && fdatasync(fd) != 0)
        err = errno;
    o->audit_syncs += !err;
    /* Durable in the log, then the head: see the crash story above. */
    int rc = err ? fail(RZ_EIO, "cannot write %s: %s", o->audit_path, strerror(err))
                 : head_put(o, seq, hash);
    if (rc != RZ_OK && ftruncate(fd, (off_t)o->audit_bytes) != 0)
        (void)0;   /* the next open's walk reports the torn line */
    close(fd);
    return rc;
}

/* Render n records after the chain's end into lines, behind the pending
 * ones: its length, or 0 with audit_err set. */
static size_t render(orch *o, cJSON **docs, size_t n, char *lines,
                     char hash[HASH_HEX + 1])
{
    if (o->audit_pend_len)
        memcpy(lines, o->audit_pend, o->audit_pend_len);
    memcpy(hash, o->audit_last, HASH_HEX + 1);
    size_t len = o->audit_pend_len;
    for (size_t i = 0; i < n; i++) {
        char prev[HASH_HEX + 1];
        memcpy(prev, hash, sizeof prev);
        int l = line_make(o, docs[i], o->audit_seq + 1 + i, prev, lines + len, hash);
        if (l < 0)
            return fail(0, "audit record too large");
        len += (size_t)l;
    }
    return len;
}

static int append_timed(orch *o, cJSON **docs, size_t n, bool head_now)
{
    char *lines = malloc(o->audit_pend_len + n * (LINE_MAX_BYTES + 2) + 1);
    if (!lines)
        return fail(RZ_EIO, "out of memory for %zu audit records", n);
    char hash[HASH_HEX + 1];
    size_t len = render(o, docs, n, lines, hash);
    uint64_t seq = o->audit_seq + n;
    if (n && !len) {
        free(lines);
        return RZ_EIO;
    }
    /* A pass's end records wait in memory for the log's next write, which
     * syncs them with it: one write per sync, so a cut loses a tail. */
    if (!head_now && head_timer(o)) {
        free(o->audit_pend);
        o->audit_pend = lines;
        o->audit_pend_len = len;
        o->audit_seq = seq;
        memcpy(o->audit_last, hash, sizeof o->audit_last);
        head_later(o);
        return RZ_OK;
    }
    int rc = len ? write_synced(o, lines, len, seq, hash) : head_put(o, seq, hash);
    free(lines);
    if (rc != RZ_OK)
        return rc;   /* the pending records stay pending */
    if (o->audit_head_due) {
        /* This head covers what was due: the timer waits for the next
         * records left behind it, so that it fires only when no pass came
         * for AUDIT_HEAD_LAG_MS, not every AUDIT_HEAD_LAG_MS of a busy
         * stream (a commit of its own each time). */
        o->audit_head_due = false;
        if (o->audit_head_ev)
            evtimer_del(o->audit_head_ev);
    }
    free(o->audit_pend);
    o->audit_pend = NULL;
    o->audit_bytes += len;
    o->audit_pend_len = 0;
    o->audit_seq = seq;
    memcpy(o->audit_last, hash, sizeof o->audit_last);
    return RZ_OK;
}

static void add_who(cJSON *doc, const req *q)
{
    char who[64], hex[33];
    switch (q->who.kind) {
    case P_ADMIN: snprintf(who, sizeof who, "admin"); break;
    case P_NODE:
        snprintf(who, sizeof who, "node:%" PRIu64, q->who.node);
        break;
    case P_CLIENT:
        rz_ledger_id_format(q->who.account, hex);
        snprintf(who, sizeof who, "client:%s", hex);
        break;
    default: snprintf(who, sizeof who, "anyone"); break;
    }
    cJSON_AddStringToObject(doc, "who", who);
    cJSON_AddStringToObject(doc, "peer", orch_peer((req *)q));
}

/* q's begin record: the caller, the route and the amounts. */
static cJSON *begin_doc(const req *q, const char *path)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc)
        return NULL;
    cJSON_AddNumberToObject(doc, "time_ms", (double)orch_now_ms());
    cJSON_AddStringToObject(doc, "phase", "begin");
    add_who(doc, q);
    char what[300];
    snprintf(what, sizeof what, "%s %.250s", q->method, path);
    /* The path is the caller's bytes: printable ASCII only in the log. */
    for (char *c = what; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    cJSON_AddStringToObject(doc, "op", what);
    /* The amounts are worth keeping; everything else may be private. */
    const cJSON *amt = cJSON_GetObjectItemCaseSensitive(q->body, "amount_micros");
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(q->body, "amount_cents");
    const cJSON *cap = cJSON_GetObjectItemCaseSensitive(q->body, "max_cost_micros");
    if (cJSON_IsNumber(amt))
        cJSON_AddNumberToObject(doc, "amount_micros", amt->valuedouble);
    else if (cJSON_IsNumber(old))   /* the cents spelling, as the route reads it */
        cJSON_AddNumberToObject(doc, "amount_micros", old->valuedouble * 10000);
    if (cJSON_IsNumber(cap))   /* a job's budget */
        cJSON_AddNumberToObject(doc, "max_cost_micros", cap->valuedouble);
    return doc;
}

static void begin_failed(req *q)
{
    fprintf(stderr, ORCH_NAME ": audit: %s\n", audit_err);
    reply_error(q, RZ_EIO, "the audit log cannot be written; the "
                "operation was not done");
}

bool audit_begin(req *q, const char *path)
{
    cJSON *doc = begin_doc(q, path);
    int rc = doc ? append(q->o, doc) : fail(RZ_EIO, "out of memory");
    cJSON_Delete(doc);
    if (rc != RZ_OK) {
        begin_failed(q);
        return false;
    }
    q->audit_of = q->o->audit_seq;
    return true;
}

/* A call waiting for its begin record: the request (moved off dispatch's
 * stack), the record, and what to run once it is durable. */
struct begun {
    req q;
    cJSON *doc;
    void (*run)(req *);
};

bool audit_begin_later(req *q, const char *path, void (*run)(req *))
{
    orch *o = q->o;
    if (o->n_begun == o->cap_begun) {
        size_t n = o->cap_begun ? o->cap_begun * 2 : 16;
        struct begun *p = realloc(o->begun, n * sizeof *p);
        if (!p)
            return false;
        o->begun = p;
        o->cap_begun = n;
    }
    cJSON *doc = begin_doc(q, path);
    if (!doc)
        return false;
    struct begun *b = &o->begun[o->n_begun++];
    /* A parsed query's list head points back into q: copy only unparsed. */
    assert(!q->query_parsed);
    b->q = *q;
    b->doc = doc;
    b->run = run;
    return true;
}

void audit_begin_flush(orch *o)
{
    size_t n = o->n_begun;
    if (!n)
        return;
    cJSON **docs = malloc(n * sizeof *docs);
    for (size_t i = 0; docs && i < n; i++)
        docs[i] = o->begun[i].doc;
    int rc = docs ? append_many(o, docs, n) : fail(RZ_EIO, "out of memory");
    uint64_t first = o->audit_seq - n + 1;
    free(docs);
    /* Taken off the queue first: a call may defer nothing, but must not
     * see its own entry again. */
    struct begun *all = o->begun;
    o->begun = NULL;
    o->n_begun = o->cap_begun = 0;
    for (size_t i = 0; i < n; i++) {
        req *q = &all[i].q;
        cJSON_Delete(all[i].doc);
        if (rc == RZ_OK) {
            q->audit_of = first + i;
            all[i].run(q);
        } else {
            begin_failed(q);
        }
        orch_request_done(q);
    }
    free(all);
}

void audit_begin_drop(orch *o)
{
    for (size_t i = 0; i < o->n_begun; i++) {
        reply_error(&o->begun[i].q, RZ_ESTATE, "the server is stopping");
        cJSON_Delete(o->begun[i].doc);
        cJSON_Delete(o->begun[i].q.body);
    }
    free(o->begun);
    o->begun = NULL;
    o->n_begun = o->cap_begun = 0;
}

static bool end_records(orch *o, const uint64_t *of, const int *code,
                        size_t n, bool head_now);

bool audit_end(orch *o, uint64_t of, int code)
{
    return end_records(o, &of, &code, 1, true);
}

/* A pass's end records (after its commit): the head follows later. */
bool audit_end_many(orch *o, const uint64_t *of, const int *code, size_t n)
{
    return end_records(o, of, code, n, false);
}

static bool end_records(orch *o, const uint64_t *of, const int *code,
                        size_t n, bool head_now)
{
    if (!n)
        return true;
    cJSON **docs = calloc(n, sizeof *docs);
    bool made = docs != NULL;
    for (size_t i = 0; made && i < n; i++) {
        cJSON *doc = docs[i] = cJSON_CreateObject();
        made = doc && cJSON_AddNumberToObject(doc, "time_ms", (double)orch_now_ms()) &&
               cJSON_AddStringToObject(doc, "phase", "end") &&
               cJSON_AddNumberToObject(doc, "of", (double)of[i]) &&
               cJSON_AddNumberToObject(doc, "status", code[i]);
    }
    int rc = made ? append_many_head(o, docs, n, head_now)
                  : fail(RZ_EIO, "out of memory");
    for (size_t i = 0; docs && i < n; i++)
        cJSON_Delete(docs[i]);
    free(docs);
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": audit: %s\n", audit_err);
    return rc == RZ_OK;
}

/* The auth store of DATA, if it holds one (never created here); read
 * only: never waiting for a running server's open group, and never
 * writing (a table this version keeps and the store lacks is reported,
 * not made). *failed: it is there but could not be opened (said). */
static rz_auth *auth_of(const char *data, bool rdonly, bool *failed)
{
    char dir[4096], db[4200];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/auth", data);
    snprintf(db, sizeof db, "%s/data.mdb", dir);
    rz_auth *a = NULL;
    *failed = false;
    if (stat(db, &st) != 0 || st.st_size == 0)
        return NULL;
    if ((rdonly ? rz_auth_open_readonly(&a, dir) : rz_auth_open(&a, dir)) == RZ_OK)
        return a;
    *failed = true;
    fprintf(stderr, ORCH_NAME " audit: %s%s\n", rz_error_last()->message, rdonly
            ? " (opened read-only and left as it is: a table missing, from an "
              "older version, or damage; " ORCH_NAME " migrate or the "
              "orchestrator's next start adds a missing table)" : "");
    return NULL;
}

/* --accept: the operator takes the log as it is (after a loss that no
 * backup covers): a torn tail is cut, the head moves to the log's end, and
 * a record says so and what was lost. The chain itself must hold. */
static int accept_log(const char *data, const char *path)
{
    static orch o;
    o.opts.data = data;
    snprintf(o.audit_path, sizeof o.audit_path, "%s", path);
    bool failed;
    if (!(o.auth = auth_of(data, false, &failed))) {
        fprintf(stderr, ORCH_NAME " audit: no auth store in %s\n", data);
        return 1;
    }
    if (!(o.audit_key = key_alloc())) {
        rz_auth_close(o.auth);
        fprintf(stderr, ORCH_NAME " audit: %s\n", audit_err);
        return 1;
    }
    int have = key_read(data, o.audit_key);
    chain c;
    memset(&c, 0, sizeof c);
    int rc = have < 0 ? RZ_EIO : walk(path, have ? o.audit_key : NULL, &c, NULL, 0);
    if (rc != RZ_OK && c.torn && truncate(path, (off_t)c.bytes) == 0)
        rc = RZ_OK;
    uint64_t hseq = 0, hks = 0;
    unsigned char hbin[HASH_BYTES];
    if (rc == RZ_OK && !have && key_make(data, o.audit_key) != 0)
        rc = RZ_EIO;
    int hrc = rc == RZ_OK ? rz_auth_audit_head_get2(o.auth, &hseq, hbin, &hks) : rc;
    /* A loss is accepted, a rewrite is not: records past the store's first
     * keyed one must still be keyed. */
    if (hrc == RZ_OK && keyed_check(path, &c, hks) < 0)
        hrc = rc = RZ_EINVALID;
    cJSON *doc = NULL;
    if (rc == RZ_OK && (hrc == RZ_OK || hrc == RZ_ENOENT)) {
        /* Cut before its first keyed record, the log is keyed from the
         * accept record on. */
        o.audit_keyed_since = hks && c.seq >= hks ? hks : keyed_since_of(&c);
        o.audit_seq = c.seq;
        o.audit_bytes = c.bytes;
        memcpy(o.audit_last, c.last, sizeof o.audit_last);
        doc = cJSON_CreateObject();
        cJSON_AddNumberToObject(doc, "time_ms", (double)orch_now_ms());
        cJSON_AddStringToObject(doc, "phase", "accept");
        cJSON_AddStringToObject(doc, "who", "operator");
        cJSON_AddNumberToObject(doc, "head_was", (double)hseq);
        rc = head_put(&o, c.seq, c.last);
        if (rc == RZ_OK)
            rc = append(&o, doc);
        cJSON_Delete(doc);
    } else if (rc == RZ_OK) {
        rc = fail(RZ_EIO, "%s", rz_error_last()->message);
    }
    rz_auth_close(o.auth);
    audit_close(&o);
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME " audit: %s\n", audit_err);
        return 1;
    }
    printf("%s: accepted as it is: %" PRIu64 " records (the head said %"
           PRIu64 "); record %" PRIu64 " says so\n", path, c.seq, hseq,
           o.audit_seq);
    return 0;
}

int audit_check(const char *data, FILE *print, uint64_t *records,
                bool *headed, bool torn_ok)
{
    char path[4096];
    audit_path(data, path, sizeof path);
    unsigned char *key = key_alloc();
    int have = key ? key_read(data, key) : -1;
    bool failed = false;
    rz_auth *a = have >= 0 ? auth_of(data, true, &failed) : NULL;
    if (failed) {
        sodium_free(key);
        return -1;   /* its head cannot be checked: said */
    }
    uint64_t hseq = 0, hks = 0;
    unsigned char hbin[HASH_BYTES];
    bool head = a && rz_auth_audit_head_get2(a, &hseq, hbin, &hks) == RZ_OK;
    chain c;
    memset(&c, 0, sizeof c);
    int rc = have < 0 ? RZ_EIO : walk(path, have ? key : NULL, &c, print, hseq);
    sodium_free(key);
    /* A torn last line is what a crash inside an append leaves, and what
     * the next start cuts (audit_open): the records before it are judged. */
    bool torn = torn_ok && rc != RZ_OK && c.torn;
    if (torn)
        rc = RZ_OK;
    if (rc == RZ_OK && head && (keyed_check(path, &c, hks) < 0 ||
                 head_check(path, &c, hseq, hbin) < 0))
        rc = RZ_EINVALID;
    if (rc == RZ_OK && torn)
        fprintf(stderr, ORCH_NAME ": %s: its last record is cut short (a crash "
                "while it was written); the next start removes it\n", path);
    rz_auth_close(a);
    *records = rc == RZ_OK ? c.seq : 0;
    if (headed)
        *headed = head;
    return rc == RZ_OK ? 0 : -1;
}

const char *audit_error(void)
{
    return audit_err;
}

static int audit_usage(FILE *f, int rc)
{
    fputs("usage: " ORCH_NAME " audit --data DIR [--verify | --accept]\n\n"
          "Print DIR/audit.log (every admin and money operation, and job\n"
          "submit, cancel and result), checking its hash chain (keyed with\n"
          "DIR/audit.key) and that it ends where the auth store says;\n"
          "--verify prints only the verdict. A broken chain names the first\n"
          "bad record and exits 1. --accept (server stopped): after a loss no\n"
          "backup covers, take the log as it is and record that in it.\n", f);
    return rc;
}

int orch_audit_main(int argc, char **argv)
{
    const char *data = NULL;
    bool verify = false, accept = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "--verify") == 0)
            verify = true;
        else if (strcmp(argv[i], "--accept") == 0)
            accept = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return audit_usage(stdout, 0);
        else {
            fprintf(stderr, ORCH_NAME " audit: unexpected argument \"%s\"\n",
                    argv[i]);
            return audit_usage(stderr, 2);
        }
    }
    if (!data || (verify && accept)) {
        fprintf(stderr, ORCH_NAME " audit: --data DIR is required (and one of "
                "--verify, --accept at most)\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    char path[4096];
    audit_path(data, path, sizeof path);
    if (accept)
        return accept_log(data, path);
    uint64_t n = 0;
    bool headed = false;
    if (audit_check(data, verify ? NULL : stdout, &n, &headed, false) != 0) {
        fflush(stdout);
        fprintf(stderr, ORCH_NAME " audit: %s\n", audit_err);
        return 1;
    }
    if (verify)
        printf("%s: %" PRIu64 " records, the hash chain holds%s\n", path, n,
               headed ? ", and ends at the head the auth store keeps, keyed "
                        "from where it says" : "");
    /* Without the head the log vouches only for itself. */
    if (!headed)
        fprintf(stderr, ORCH_NAME " audit: no audit head in %s/auth: this "
                "proves each record follows the one before it and that keyed "
                "records were written with audit.key; it cannot prove the log "
                "is whole (records cut from its end, or the whole log "
                "replaced by a chain without keys, are found only against the "
                "auth store: check the data directory itself)\n", data);
    return 0;
}

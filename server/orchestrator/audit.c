/* The audit log: every admin and money operation, append-only at
 * DATA/audit.log, one JSON object a line, each carrying the BLAKE2b hash
 * (crypto_generichash) of the line before it ("prev") and of itself
 * ("hash", over the line's text without that member).
 *
 * Failing closed: an operation is only started once its "begin" record is
 * on disk (written and fsync'd), and its reply only leaves once its "end"
 * record (the HTTP status) is: a failed begin answers 503 with nothing
 * done, a failed end turns the reply into a 500 (the operation's own
 * effect then stands, with its begin record and no end). Records name the
 * caller, the route, the path's ids and the amount, never a key, token or
 * body. The file is opened for each record, never created again once it
 * exists: a deleted or replaced log fails every audited call instead of
 * starting a fresh chain. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static void hash_line(const char *body, size_t len, char hex[HASH_HEX + 1])
{
    unsigned char h[HASH_BYTES];
    crypto_generichash(h, sizeof h, (const unsigned char *)body, len, NULL, 0);
    sodium_bin2hex(hex, HASH_HEX + 1, h, sizeof h);
}

static void audit_path(const char *data, char *out, size_t cap)
{
    snprintf(out, cap, "%s/audit.log", data);
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
    uint64_t bytes;              /* where the next one goes */
    bool torn;                   /* the last line ends without its newline */
} chain;

/* Walk the log: every line well formed, its prev the hash before, its hash
 * its own. `print` (may be NULL) gets each line. RZ_OK, or RZ_EINVALID with
 * the record named in rz_error_last(). A missing file is an empty log. */
static int walk(const char *path, chain *c, FILE *print)
{
    memset(c, 0, sizeof *c);
    memset(c->last, '0', HASH_HEX);
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? RZ_OK
                               : fail(RZ_EIO, "cannot read %s: %s", path,
                                              strerror(errno));
    char *line = NULL, body[LINE_MAX_BYTES];
    size_t cap = 0;
    ssize_t n;
    int rc = RZ_OK;
    while (rc == RZ_OK && (n = getline(&line, &cap, f)) > 0) {
        uint64_t at = c->bytes;
        c->bytes += (uint64_t)n;
        uint64_t rec = c->seq + 1;
        if (line[n - 1] != '\n') {
            /* Only the last line can lack it: a crash mid-append. */
            c->torn = true;
            c->bytes = at;
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                              PRIu64 ") is cut short", path, rec, at);
            break;
        }
        line[--n] = '\0';
        char stated[HASH_HEX + 1], mine[HASH_HEX + 1];
        cJSON *doc = NULL;
        if (!split_line(line, (size_t)n, body, sizeof body, stated) ||
            !(doc = cJSON_Parse(body))) {
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                              PRIu64 ") is malformed", path, rec, at);
            break;
        }
        const cJSON *seq = cJSON_GetObjectItemCaseSensitive(doc, "seq");
        const cJSON *prev = cJSON_GetObjectItemCaseSensitive(doc, "prev");
        hash_line(body, strlen(body), mine);
        if (!cJSON_IsNumber(seq) || seq->valuedouble != (double)rec)
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                              PRIu64 ") has the wrong sequence number: a record "
                              "was removed or inserted", path, rec, at);
        else if (!cJSON_IsString(prev) || strcmp(prev->valuestring, c->last) != 0)
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                              PRIu64 ") does not follow the record before it "
                              "(its prev hash differs)", path, rec, at);
        else if (strcmp(mine, stated) != 0)
            rc = fail(RZ_EINVALID, "%s: record %" PRIu64 " (byte %"
                              PRIu64 ") was altered (its hash differs)", path,
                              rec, at);
        cJSON_Delete(doc);
        if (rc != RZ_OK)
            break;
        memcpy(c->last, stated, sizeof c->last);
        c->seq = rec;
        if (print)
            fprintf(print, "%s\n", line);
    }
    if (rc == RZ_OK && ferror(f))
        rc = fail(RZ_EIO, "cannot read %s", path);
    free(line);
    fclose(f);
    return rc;
}

int audit_open(orch *o)
{
    audit_path(o->opts.data, o->audit_path, sizeof o->audit_path);
    chain c;
    int rc = walk(o->audit_path, &c, NULL);
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
        rc = walk(o->audit_path, &c, NULL);
    }
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": the audit log is broken: %s (see "
                "`" ORCH_NAME " audit --data %s --verify`)\n",
                audit_err, o->opts.data);
        return -1;
    }
    o->audit_seq = c.seq;
    o->audit_bytes = c.bytes;
    memcpy(o->audit_last, c.last, sizeof o->audit_last);
    return 0;
}

/* Append one record (the object `doc`, which gets seq and prev) durably.
 * RZ_OK or RZ_EIO; on failure the file is cut back to where it was. */
static int append(orch *o, cJSON *doc)
{
    uint64_t seq = o->audit_seq + 1;
    cJSON_AddNumberToObject(doc, "seq", (double)seq);
    cJSON_AddStringToObject(doc, "prev", o->audit_last);
    char *body = cJSON_PrintUnformatted(doc);
    if (!body || strlen(body) + HASH_TAIL_LEN > LINE_MAX_BYTES) {
        free(body);
        return fail(RZ_EIO, "audit record too large");
    }
    char hash[HASH_HEX + 1], line[LINE_MAX_BYTES + 2];
    size_t bl = strlen(body);
    hash_line(body, bl, hash);
    int len = snprintf(line, sizeof line, "%.*s,\"hash\":\"%s\"}\n", (int)(bl - 1),
                       body, hash);
    free(body);
    /* Created only for the first record: a log that went away is an error. */
    int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (o->audit_seq ? 0 : O_CREAT);
    int fd = open(o->audit_path, flags, 0600);
    if (fd < 0)
        return fail(RZ_EIO, "cannot open %s: %s", o->audit_path,
                            strerror(errno));
    ssize_t w = write(fd, line, (size_t)len);
    int err = w == len ? 0 : w < 0 ? errno : ENOSPC;
    if (!err && fdatasync(fd) != 0)
        err = errno;
    if (err && ftruncate(fd, (off_t)o->audit_bytes) != 0)
        (void)0;   /* the next open's walk reports the torn line */
    close(fd);
    if (err)
        return fail(RZ_EIO, "cannot write %s: %s", o->audit_path,
                            strerror(err));
    o->audit_seq = seq;
    o->audit_bytes += (uint64_t)len;
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
    struct evhttp_connection *c = evhttp_request_get_connection(q->r);
    char *addr = NULL;
    ev_uint16_t port = 0;
    if (c)
        evhttp_connection_get_peer(c, &addr, &port);
    cJSON_AddStringToObject(doc, "peer", addr ? addr : "");
}

bool audit_begin(req *q, const char *path)
{
    cJSON *doc = cJSON_CreateObject();
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
    /* The one body member worth keeping; everything else may be private. */
    const cJSON *amt = cJSON_GetObjectItemCaseSensitive(q->body, "amount_micros");
    const cJSON *old = cJSON_GetObjectItemCaseSensitive(q->body, "amount_cents");
    if (cJSON_IsNumber(amt))
        cJSON_AddNumberToObject(doc, "amount_micros", amt->valuedouble);
    else if (cJSON_IsNumber(old))   /* the cents spelling, as the route reads it */
        cJSON_AddNumberToObject(doc, "amount_micros", old->valuedouble * 10000);
    int rc = append(q->o, doc);
    cJSON_Delete(doc);
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME ": audit: %s\n", audit_err);
        reply_error(q, RZ_EIO, "the audit log cannot be written; the "
                    "operation was not done");
        return false;
    }
    q->audit_of = q->o->audit_seq;
    return true;
}

bool audit_end(orch *o, uint64_t of, int code)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "time_ms", (double)orch_now_ms());
    cJSON_AddStringToObject(doc, "phase", "end");
    cJSON_AddNumberToObject(doc, "of", (double)of);
    cJSON_AddNumberToObject(doc, "status", code);
    int rc = append(o, doc);
    cJSON_Delete(doc);
    if (rc != RZ_OK)
        fprintf(stderr, ORCH_NAME ": audit: %s\n", audit_err);
    return rc == RZ_OK;
}

int orch_audit_main(int argc, char **argv)
{
    const char *data = NULL;
    bool verify = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "--verify") == 0)
            verify = true;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: " ORCH_NAME " audit --data DIR [--verify]\n\n"
                   "Print DIR/audit.log (every admin and money operation), "
                   "checking its\nhash chain; --verify prints only the "
                   "verdict. A broken chain names the\nfirst bad record and "
                   "exits 1.\n");
            return 0;
        } else {
            fprintf(stderr, ORCH_NAME " audit: unexpected argument \"%s\"\n",
                    argv[i]);
            return 2;
        }
    }
    if (!data) {
        fprintf(stderr, ORCH_NAME " audit: --data DIR is required\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    char path[4096];
    audit_path(data, path, sizeof path);
    chain c;
    int rc = walk(path, &c, verify ? NULL : stdout);
    if (rc != RZ_OK) {
        fflush(stdout);
        fprintf(stderr, ORCH_NAME " audit: %s\n", audit_err);
        return 1;
    }
    if (verify)
        printf("%s: %" PRIu64 " records, the hash chain holds\n", path, c.seq);
    return 0;
}

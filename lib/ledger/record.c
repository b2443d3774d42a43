/* Fixed-size little-endian records of accounts, transfers, journaled ops.
 * Decoders trust nothing: every field is range-checked, reserved bytes must
 * be zero, so a flipped bit is caught rather than believed. */
#include <string.h>

#include <sodium.h>

#include "common/crc32c.h"
#include "ledger/ledger_impl.h"

/* Little-endian fields; on a little-endian host a plain copy (the byte
 * loops are the portable fallback and the definition). */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define RZ_LEDGER_LE_HOST 1
#else
#define RZ_LEDGER_LE_HOST 0
#endif

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    if (RZ_LEDGER_LE_HOST) {
        memcpy(p, &v, 4);
        return;
    }
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    if (RZ_LEDGER_LE_HOST) {
        memcpy(p, &v, 8);
        return;
    }
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    if (RZ_LEDGER_LE_HOST) {
        memcpy(&v, p, 4);
        return v;
    }
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    if (RZ_LEDGER_LE_HOST) {
        memcpy(&v, p, 8);
        return v;
    }
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static void put_id(uint8_t *p, rz_ledger_id id)
{
    put64(p, id.hi);
    put64(p + 8, id.lo);
}

static rz_ledger_id get_id(const uint8_t *p)
{
    return rz_ledger_id_make(get64(p), get64(p + 8));
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

/* Stored records (accounts, transfers) carry a CRC-32C of all their bytes,
 * taken with its own slot zero, in what version 1 left reserved. */
enum { ACCOUNT_CRC = 64, TRANSFER_CRC = 12 };

static uint32_t record_crc(const uint8_t *p, size_t len, size_t slot)
{
    static const uint8_t zero[4];
    uint32_t crc = rz__crc32c(0, p, slot);
    crc = rz__crc32c(crc, zero, 4);
    return rz__crc32c(crc, p + slot + 4, len - slot - 4);
}

static int stored_check(const uint8_t *p, size_t len, size_t slot,
                        const char *what)
{
    if (p[0] == 1)
        return rz__error(RZ_EDB, "%s record written before checksums "
                         "(ledger format 1): open the ledger once for "
                         "writing to migrate it (docs/formats.md)", what);
    if (p[0] != RZ__LEDGER_STORED_VERSION)
        return rz__error(RZ_EINVALID, "%s record version %u", what, p[0]);
    if (get32(p + slot) != record_crc(p, len, slot))
        return rz__error(RZ_EDB, "%s record fails its checksum: the ledger's "
                         "data.mdb is damaged. " RZ__LEDGER_RECOVER, what);
    return RZ_OK;
}

int rz__ledger_record_upgrade(uint8_t *p, size_t len)
{
    size_t slot = len == RZ__LEDGER_ACCOUNT_SIZE ? ACCOUNT_CRC : TRANSFER_CRC;
    if (len != RZ__LEDGER_ACCOUNT_SIZE && len != RZ__LEDGER_TRANSFER_SIZE)
        return rz__error(RZ_EDB, "ledger record of %zu bytes", len);
    if (p[0] == RZ__LEDGER_STORED_VERSION)
        return RZ_OK;
    if (p[0] != 1 || !all_zero(p + slot, 4))
        return rz__error(RZ_EDB, "ledger record version %u, or reserved "
                         "bytes set: cannot migrate it", p[0]);
    p[0] = RZ__LEDGER_STORED_VERSION;
    put32(p + slot, record_crc(p, len, slot));
    return 1;
}

/* Account: version u8, kind u8, 0 u16, flags u32, id, debits posted and
 * pending, credits posted and pending, created_seq, crc u32, 0 u32. */
void rz__ledger_account_encode(const rz_ledger_account *a,
                               uint8_t out[RZ__LEDGER_ACCOUNT_SIZE])
{
    memset(out, 0, RZ__LEDGER_ACCOUNT_SIZE);
    out[0] = RZ__LEDGER_STORED_VERSION;
    out[1] = (uint8_t)a->kind;
    put32(out + 4, a->flags);
    put_id(out + 8, a->id);
    put64(out + 24, a->debits_posted);
    put64(out + 32, a->debits_pending);
    put64(out + 40, a->credits_posted);
    put64(out + 48, a->credits_pending);
    put64(out + 56, a->created_seq);
    put32(out + ACCOUNT_CRC, record_crc(out, RZ__LEDGER_ACCOUNT_SIZE,
                                        ACCOUNT_CRC));
}

int rz__ledger_account_decode(const void *buf, size_t len,
                              rz_ledger_account *a)
{
    const uint8_t *p = buf;
    if (len != RZ__LEDGER_ACCOUNT_SIZE)
        return rz__error(RZ_EINVALID, "account record of %zu bytes, not %d",
                         len, RZ__LEDGER_ACCOUNT_SIZE);
    int rc = stored_check(p, len, ACCOUNT_CRC, "account");
    if (rc != RZ_OK)
        return rc;
    if (p[1] < RZ_LEDGER_CLIENT || p[1] > RZ_LEDGER_EXTERNAL)
        return rz__error(RZ_EINVALID, "account kind %u", p[1]);
    if (get16(p + 2) || !all_zero(p + 68, 4))
        return rz__error(RZ_EINVALID, "account record: reserved bytes set");
    memset(a, 0, sizeof *a);
    a->kind = p[1];
    a->flags = get32(p + 4);
    if (a->flags & ~RZ_LEDGER_DEBITS_MUST_NOT_EXCEED_CREDITS)
        return rz__error(RZ_EINVALID, "account flags 0x%x", a->flags);
    a->id = get_id(p + 8);
    if (rz__ledger_id_zero(a->id))
        return rz__error(RZ_EINVALID, "account record with id 0");
    a->debits_posted = get64(p + 24);
    a->debits_pending = get64(p + 32);
    a->credits_posted = get64(p + 40);
    a->credits_pending = get64(p + 48);
    a->created_seq = get64(p + 56);
    return RZ_OK;
}

/* Transfer: version u8, state u8, 0 u16, flags u32, code u32, crc u32, id,
 * debit, credit, pending_id, job, amount, timeout, seq, posted_amount. */
void rz__ledger_transfer_encode(const rz_ledger_transfer *t,
                                uint8_t out[RZ__LEDGER_TRANSFER_SIZE])
{
    memset(out, 0, RZ__LEDGER_TRANSFER_SIZE);
    out[0] = RZ__LEDGER_STORED_VERSION;
    out[1] = (uint8_t)t->state;
    put32(out + 4, t->flags);
    put32(out + 8, t->code);
    put_id(out + 16, t->id);
    put_id(out + 32, t->debit);
    put_id(out + 48, t->credit);
    put_id(out + 64, t->pending_id);
    put_id(out + 80, t->job);
    put64(out + 96, t->amount);
    put64(out + 104, t->timeout);
    put64(out + 112, t->seq);
    put64(out + 120, t->posted_amount);
    put32(out + TRANSFER_CRC, record_crc(out, RZ__LEDGER_TRANSFER_SIZE,
                                         TRANSFER_CRC));
}

static int transfer_check(const rz_ledger_transfer *t)
{
    uint32_t kind = t->flags & (RZ_LEDGER_PENDING | RZ_LEDGER_POST |
                                RZ_LEDGER_VOID);
    if (t->flags & ~kind || (kind & (kind - 1)))
        return rz__error(RZ_EINVALID, "transfer flags 0x%x", t->flags);
    if (rz__ledger_id_zero(t->id) || rz__ledger_id_zero(t->debit) ||
        rz__ledger_id_zero(t->credit) || rz_ledger_id_equal(t->debit, t->credit))
        return rz__error(RZ_EINVALID, "transfer with a zero or equal account");
    bool pending = kind == RZ_LEDGER_PENDING;
    if (pending != (t->state != RZ_LEDGER_NOT_PENDING) ||
        t->state > RZ_LEDGER_EXPIRED)
        return rz__error(RZ_EINVALID, "transfer state %u with flags 0x%x",
                         t->state, t->flags);
    if ((kind == RZ_LEDGER_POST || kind == RZ_LEDGER_VOID) !=
        !rz__ledger_id_zero(t->pending_id))
        return rz__error(RZ_EINVALID, "transfer pending_id does not fit its "
                         "flags");
    if (!pending && t->timeout)
        return rz__error(RZ_EINVALID, "timeout on a transfer that is not "
                         "pending");
    if (t->posted_amount > t->amount ||
        (t->posted_amount && t->state != RZ_LEDGER_POSTED))
        return rz__error(RZ_EINVALID, "transfer posted amount %llu of %llu",
                         (unsigned long long)t->posted_amount,
                         (unsigned long long)t->amount);
    if (t->code == 0)
        return rz__error(RZ_EINVALID, "transfer code 0");
    return RZ_OK;
}

int rz__ledger_transfer_decode(const void *buf, size_t len,
                               rz_ledger_transfer *t)
{
    const uint8_t *p = buf;
    if (len != RZ__LEDGER_TRANSFER_SIZE)
        return rz__error(RZ_EINVALID, "transfer record of %zu bytes, not %d",
                         len, RZ__LEDGER_TRANSFER_SIZE);
    int rc = stored_check(p, len, TRANSFER_CRC, "transfer");
    if (rc != RZ_OK)
        return rc;
    if (get16(p + 2))
        return rz__error(RZ_EINVALID, "transfer record: reserved bytes set");
    memset(t, 0, sizeof *t);
    t->state = p[1];
    t->flags = get32(p + 4);
    t->code = get32(p + 8);
    t->id = get_id(p + 16);
    t->debit = get_id(p + 32);
    t->credit = get_id(p + 48);
    t->pending_id = get_id(p + 64);
    t->job = get_id(p + 80);
    t->amount = get64(p + 96);
    t->timeout = get64(p + 104);
    t->seq = get64(p + 112);
    t->posted_amount = get64(p + 120);
    return transfer_check(t);
}

/* Op: type u32, flags u32, id, account, counterparty, pending_id, job,
 * amount, timeout, code (TRANSFER) or kind (the others) u32, 0 u32. One
 * slot for both keeps the journal format of when they were one field. */
void rz__ledger_op_encode(const rz_ledger_op *op,
                          uint8_t out[RZ__LEDGER_OP_SIZE])
{
    put32(out, op->type);
    put32(out + 4, op->flags);
    put_id(out + 8, op->id);
    put_id(out + 24, op->account);
    put_id(out + 40, op->counterparty);
    put_id(out + 56, op->pending_id);
    put_id(out + 72, op->job);
    put64(out + 88, op->amount);
    put64(out + 96, op->timeout);
    put32(out + 104, op->type == RZ_LEDGER_OP_TRANSFER ? op->code : op->kind);
    put32(out + 108, 0);
}

int rz__ledger_op_decode(const void *buf, size_t len, rz_ledger_op *op)
{
    const uint8_t *p = buf;
    if (len != RZ__LEDGER_OP_SIZE)
        return rz__error(RZ_EINVALID, "op record of %zu bytes", len);
    memset(op, 0, sizeof *op);
    op->type = get32(p);
    op->flags = get32(p + 4);
    op->id = get_id(p + 8);
    op->account = get_id(p + 24);
    op->counterparty = get_id(p + 40);
    op->pending_id = get_id(p + 56);
    op->job = get_id(p + 72);
    op->amount = get64(p + 88);
    op->timeout = get64(p + 96);
    if (op->type == RZ_LEDGER_OP_TRANSFER)
        op->code = get32(p + 104);
    else
        op->kind = get32(p + 104);
    if (op->type < RZ_LEDGER_OP_CREATE_ACCOUNT || op->type > RZ_LEDGER_OP_DEPOSIT_CANCEL)
        return rz__error(RZ_EINVALID, "op type %u", op->type);
    if (op->flags & ~(RZ_LEDGER_LINKED | RZ_LEDGER_PENDING | RZ_LEDGER_POST |
                      RZ_LEDGER_VOID))
        return rz__error(RZ_EINVALID, "op flags 0x%x", op->flags);
    if (get32(p + 108))
        return rz__error(RZ_EINVALID, "op record: reserved bytes set");
    return RZ_OK;
}

/* Journal record header: magic u32, version u16, 0 u16, seq u64, n_ops u32,
 * fee_bps u32, payload bytes u32, 0 u32, then a 16-byte BLAKE2b of the
 * first 32 header bytes and the payload. A round marker has no ops and a
 * 16-byte payload: the journal's size u64, 0 u64. */
size_t rz__ledger_record_size(size_t n)
{
    return n ? RZ__LEDGER_JHDR_SIZE + n * RZ__LEDGER_OP_SIZE
             : RZ__LEDGER_MARKER_SIZE;
}

static void record_hash(const uint8_t *hdr, const uint8_t *payload,
                        size_t plen, uint8_t out[16])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 16);
    crypto_generichash_update(&st, hdr, 32);
    crypto_generichash_update(&st, payload, plen);
    crypto_generichash_final(&st, out, 16);
}

void rz__ledger_record_encode(const rz__ledger_jhdr *h,
                              const rz_ledger_op *ops, uint8_t *out)
{
    size_t plen = rz__ledger_record_size(h->n_ops) - RZ__LEDGER_JHDR_SIZE;
    memset(out, 0, RZ__LEDGER_JHDR_SIZE + (h->n_ops ? 0 : plen));
    put32(out, RZ__LEDGER_JMAGIC);
    put16(out + 4, RZ__LEDGER_RECORD_VERSION);
    put64(out + 8, h->seq);
    put32(out + 16, h->n_ops);
    put32(out + 20, h->fee_bps);
    put32(out + 24, (uint32_t)plen);
    uint8_t *payload = out + RZ__LEDGER_JHDR_SIZE;
    for (uint32_t i = 0; i < h->n_ops; i++)
        rz__ledger_op_encode(&ops[i], payload + (size_t)i * RZ__LEDGER_OP_SIZE);
    if (!h->n_ops)
        put64(payload, h->size);
    record_hash(out, payload, plen, out + 32);
}

int rz__ledger_record_header(const void *buf, size_t len, rz__ledger_jhdr *h,
                             size_t *payload)
{
    const uint8_t *p = buf;
    if (len < RZ__LEDGER_JHDR_SIZE)
        return rz__error(RZ_EINVALID, "journal record header truncated");
    if (get32(p) != RZ__LEDGER_JMAGIC || get16(p + 4) != RZ__LEDGER_RECORD_VERSION
        || get16(p + 6) || get32(p + 28))
        return rz__error(RZ_EINVALID, "not a journal record header");
    h->seq = get64(p + 8);
    h->n_ops = get32(p + 16);
    h->fee_bps = get32(p + 20);
    uint32_t plen = get32(p + 24);
    h->size = 0;
    if (h->n_ops > RZ_LEDGER_BATCH_MAX ||
        plen != rz__ledger_record_size(h->n_ops) - RZ__LEDGER_JHDR_SIZE ||
        (h->fee_bps & ~RZ__LEDGER_JFEE_MICROS) > 10000 ||
        (h->seq == 0 && h->n_ops))
        return rz__error(RZ_EINVALID, "journal record header out of range");
    *payload = plen;
    return RZ_OK;
}

int rz__ledger_record_decode(const void *buf, size_t len, rz__ledger_jhdr *h,
                             rz_ledger_op *ops, size_t *used)
{
    const uint8_t *p = buf;
    size_t plen;
    int rc = rz__ledger_record_header(buf, len, h, &plen);
    if (rc != RZ_OK)
        return rc;
    if (len - RZ__LEDGER_JHDR_SIZE < plen)
        return rz__error(RZ_EINVALID, "journal record truncated");
    uint8_t sum[16];
    record_hash(p, p + RZ__LEDGER_JHDR_SIZE, plen, sum);
    if (sodium_memcmp(sum, p + 32, 16) != 0)
        return rz__error(RZ_EINVALID, "journal record checksum mismatch");
    if (!h->n_ops) {
        h->size = get64(p + RZ__LEDGER_JHDR_SIZE);
        if (get64(p + RZ__LEDGER_JHDR_SIZE + 8))
            return rz__error(RZ_EINVALID, "journal marker: reserved bytes set");
    }
    for (uint32_t i = 0; i < h->n_ops; i++) {
        rc = rz__ledger_op_decode(p + RZ__LEDGER_JHDR_SIZE +
                                  (size_t)i * RZ__LEDGER_OP_SIZE,
                                  RZ__LEDGER_OP_SIZE, &ops[i]);
        if (rc != RZ_OK)
            return rc;
    }
    *used = RZ__LEDGER_JHDR_SIZE + plen;
    return RZ_OK;
}

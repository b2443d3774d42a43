/* libFuzzer target: the ledger's record decoders (accounts, transfers,
 * journaled ops and whole journal records) on arbitrary bytes. A decoded
 * record must encode back to the very bytes it came from. */
#include <stdlib.h>
#include <string.h>

#include "ledger/ledger_impl.h"

static rz_ledger_op ops[RZ_LEDGER_BATCH_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rz_ledger_account a;
    if (rz__ledger_account_decode(data, size, &a) == RZ_OK) {
        uint8_t back[RZ__LEDGER_ACCOUNT_SIZE];
        rz__ledger_account_encode(&a, back);
        if (memcmp(back, data, sizeof back) != 0)
            abort();
    }
    rz_ledger_transfer t;
    if (rz__ledger_transfer_decode(data, size, &t) == RZ_OK) {
        uint8_t back[RZ__LEDGER_TRANSFER_SIZE];
        rz__ledger_transfer_encode(&t, back);
        if (memcmp(back, data, sizeof back) != 0)
            abort();
    }
    rz_ledger_op op;
    if (rz__ledger_op_decode(data, size, &op) == RZ_OK) {
        uint8_t back[RZ__LEDGER_OP_SIZE];
        rz__ledger_op_encode(&op, back);
        if (memcmp(back, data, sizeof back) != 0)
            abort();
    }
    rz__ledger_jhdr h;
    size_t used;
    if (rz__ledger_record_decode(data, size, &h, ops, &used) == RZ_OK) {
        if (used > size || used != rz__ledger_record_size(h.n_ops))
            abort();
        uint8_t *back = malloc(used);
        if (!back)
            return 0;
        rz__ledger_record_encode(&h, ops, back);
        if (memcmp(back, data, used) != 0)
            abort();
        free(back);
    }
    return 0;
}

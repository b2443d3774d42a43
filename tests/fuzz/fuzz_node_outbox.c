/* libFuzzer target: one DATA/outbox record as rhizos-node reads it back at
 * start (server/node/outbox.c). Taken only for this registration, with a
 * job and attempt in range and an object for the result. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t job = 0;
    uint32_t attempt = 0;
    cJSON *result = NULL;
    if (outbox_parse((const char *)data, size, 7, "http://127.0.0.1:8080", &job, &attempt,
                     &result) != 0) {
        if (result)
            abort();
        return 0;
    }
    if (!job || job > (UINT64_C(1) << 53) || !attempt || !cJSON_IsObject(result))
        abort();
    cJSON_Delete(result);
    return 0;
}

/* libFuzzer target: the JSON flow loader, then export and reload. */
#include "fuzz_flow_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_flow(data, size, RZ_FORMAT_JSON);
    return 0;
}

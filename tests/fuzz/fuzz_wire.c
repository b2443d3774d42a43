/* libFuzzer target: the JSON <-> CBOR wire mapping of the node protocol.
 *
 * The first byte picks the direction:
 *   even: the rest is CBOR from a peer -> rz_wire_decode; what decodes must
 *         encode again, and one more round trip must give the same JSON
 *         (after the first pass numbers are in their one printed form);
 *   odd:  the rest is JSON text -> rz_wire_encode; what encodes must decode;
 *         and what the allocation-free syntax check takes, cJSON parses
 *         (else a report would be refused as out of memory for ever).
 * Any other outcome than a clean error or a stable round trip aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/json.h"
#include "rhizos/client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* JSON -> CBOR -> JSON; aborts when a step that must work fails. */
static char *again(const char *json)
{
    unsigned char *cbor = NULL;
    size_t n = 0;
    if (rz_wire_encode(json, strlen(json), &cbor, &n) != RZ_OK)
        abort();
    char *back = NULL;
    if (rz_wire_decode(cbor, n, &back) != RZ_OK)
        abort();
    rz_free(cbor);
    return back;
}

static void fuzz_decode(const uint8_t *data, size_t size)
{
    char *json = NULL;
    if (rz_wire_decode(data, size, &json) != RZ_OK) {
        if (json)
            abort();
        return;
    }
    char *one = again(json);
    char *two = again(one);
    if (strcmp(one, two) != 0)
        abort();
    rz_free(json);
    rz_free(one);
    rz_free(two);
}

static void fuzz_valid(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t len = strlen(text);
    if (rz__json_valid(text, len)) {
        cJSON *v = cJSON_ParseWithOpts(text, NULL, 1);
        if (!v)
            abort();
        cJSON_Delete(v);
    }
    free(text);
}

static void fuzz_encode(const uint8_t *data, size_t size)
{
    fuzz_valid(data, size);
    unsigned char *cbor = NULL;
    size_t n = 0;
    if (rz_wire_encode((const char *)data, size, &cbor, &n) != RZ_OK) {
        if (cbor)
            abort();
        return;
    }
    char *json = NULL;
    if (rz_wire_decode(cbor, n, &json) != RZ_OK)
        abort();
    rz_free(cbor);
    rz_free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] % 2 == 0)
        fuzz_decode(data + 1, size - 1);
    else
        fuzz_encode(data + 1, size - 1);
    return 0;
}

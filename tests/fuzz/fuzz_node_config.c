/* libFuzzer target: rhizos-node's config.toml reader (server/node/config.c).
 * A file it takes must be written back by node_config_format into one it
 * takes again, with the same values (the form `init` writes, re-read). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > NODE_CONFIG_MAX_BYTES)
        return 0;
    node_config c;
    node_config_defaults(&c);
    char err[512];
    int rc = node_config_parse(&c, (const char *)data, size, "fuzz.toml", err, sizeof err);
    if (rc != 0) {
        if (!err[0])
            abort();   /* a refusal says why */
        node_config_free(&c);
        return 0;
    }
    char *text = node_config_format(&c);
    if (!text)
        abort();
    node_config d;
    node_config_defaults(&d);
    if (node_config_parse(&d, text, strlen(text), "again.toml", err, sizeof err) != 0)
        abort();
    char *again = node_config_format(&d);
    if (!again || strcmp(text, again) != 0)
        abort();
    free(again);
    free(text);
    node_config_free(&d);
    node_config_free(&c);
    return 0;
}

/* Shared body of the flow loader fuzz targets: parse the input in one
 * syntax; when it loads, every export must succeed and load back to the
 * same canonical JSON (a crash, a leak or a mismatch is a finding). */
#ifndef FUZZ_FLOW_COMMON_H
#define FUZZ_FLOW_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "flow/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fuzz_json(const rz_flow *f)
{
    char *s = NULL;
    if (rz_flow_to_json(f, 0, &s, NULL) != RZ_OK)
        abort();
    return s;
}

/* Reload an export and compare its canonical JSON with `want`. */
static void fuzz_reload(const void *data, size_t len, rz_format fmt, const char *want)
{
    rz_flow *g = NULL;
    if (rz_flow_parse(&g, data, len, fmt, "reload", NULL) != RZ_OK)
        abort();
    char *j = fuzz_json(g);
    if (strcmp(j, want) != 0)
        abort();
    rz_free(j);
    rz_flow_free(g);
}

static void fuzz_flow(const uint8_t *data, size_t size, rz_format fmt)
{
    rz_diags *d = NULL;
    if (rz_diags_new(&d) != RZ_OK)
        return;
    rz_flow *f = NULL;
    int rc = rz_flow_parse(&f, data, size, fmt, "fuzz", d);
    if (rc != RZ_OK) {
        /* Failure must leave *out NULL and say why. */
        if (f || rz_diags_error_count(d) == 0)
            abort();
        rz_diags_free(d);
        return;
    }
    rz_diags_free(d);
    rz__flow_link(f);
    char *j = fuzz_json(f);
    /* Canonical JSON is a fixed point. */
    fuzz_reload(j, strlen(j), RZ_FORMAT_JSON, j);
    unsigned char *c = NULL;
    size_t n = 0;
    if (rz_flow_to_cbor(f, &c, &n) != RZ_OK)
        abort();
    fuzz_reload(c, n, RZ_FORMAT_CBOR, j);
    rz_free(c);
    /* YAML may refuse text it cannot represent (invalid UTF-8 from JSON or
     * CBOR strings); what it writes must load back the same. */
    char *y = NULL;
    if (rz_flow_to_yaml(f, &y, &n) == RZ_OK) {
        char *b1 = NULL, *b2 = NULL;
        rz_flow *g = NULL;
        if (rz_flow_parse(&g, y, n, RZ_FORMAT_YAML, "yaml", NULL) != RZ_OK)
            abort();
        if (rz_flow_to_json(f, RZ_EXPORT_BUILDER, &b1, NULL) != RZ_OK ||
            rz_flow_to_json(g, RZ_EXPORT_BUILDER, &b2, NULL) != RZ_OK || strcmp(b1, b2) != 0)
            abort();
        rz_free(b1);
        rz_free(b2);
        rz_flow_free(g);
        rz_free(y);
    }
    rz_free(j);
    rz_flow_free(f);
}

#endif

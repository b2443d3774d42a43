/* libFuzzer target: the JSON Schema compiler and validator.
 *
 * The input is SCHEMA \0 INSTANCE; without a NUL byte the document is
 * validated against itself (a schema is also an instance). Checks: no
 * crash, leak or undefined behaviour; "valid" exactly when no error was
 * reported; defaults apply and print. A small work budget
 * keeps each run short (the budget itself is under test too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema/schema_impl.h"

static int count(void *ud, const rz_schema_error *e)
{
    if (!e->pointer || !e->keyword || !e->message || !e->message[0])
        abort();
    (*(size_t *)ud)++;
    return 0;
}

static bool is_template(const cJSON *x)
{
    return cJSON_IsString(x) && strstr(x->valuestring, "${{");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, '\0', size);
    size_t slen = nul ? (size_t)(nul - text) : size;
    const char *inst = nul ? nul + 1 : text;
    size_t ilen = nul ? size - slen - 1 : size;

    rz_schema *s;
    if (rz_schema_compile(&s, text, slen) != RZ_OK)
        return 0;
    cJSON *x = cJSON_ParseWithLength(inst, ilen);
    if (x) {
        size_t errors = 0;
        rz__schema_opts o = {.budget = 20000};
        int rc = rz__schema_eval(s, x, &o, count, &errors);
        if ((rc == RZ_OK) != (errors == 0) && rc != RZ_ETOOBIG)
            abort();
        o.opaque = is_template;
        rz__schema_eval(s, x, &o, NULL, NULL);
        if (rz__schema_defaults(s, x) == RZ_OK)
            free(cJSON_PrintUnformatted(x));
        cJSON_Delete(x);
        /* The located form, with the default budget: only where the small
         * one sufficed, so a run stays short. */
        rz_diags *d = NULL;
        if (rc != RZ_ETOOBIG && rz_diags_new(&d) == RZ_OK)
            (void)!rz_schema_check(s, inst, ilen, "fuzz.json", d);   /* only crashes count */
        rz_diags_free(d);
    }
    rz_schema_free(s);
    return 0;
}

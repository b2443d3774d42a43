/* JSON text with exact numbers. cJSON prints a number with a tolerance
 * (2^53 comes out as 9.00719925474099e+15, -0 as 0); a module's inputs, its
 * outputs and the run record must carry what was given, bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "common/internal.h"

void rz__number_format(double d, char *buf, size_t cap)
{
    static const char *const forms[] = { "%.15g", "%.16g", "%.17g" };
    for (size_t i = 0; i < RZ_ARRAY_LEN(forms); i++) {
        snprintf(buf, cap, forms[i], d);
        double back = strtod(buf, NULL);
        if (back == d && (d != 0 || signbit(back) == signbit(d)))
            return;
    }
}

/* Numbers become raw text in the shortest exact form; JSON has no NaN or
 * infinity, so those are null. */
bool rz__json_raw_numbers(cJSON *v)
{
    for (cJSON *c = v->child; c; c = c->next)
        if (!rz__json_raw_numbers(c))
            return false;
    if (!cJSON_IsNumber(v))
        return true;
    char buf[64];
    if (isnan(v->valuedouble) || isinf(v->valuedouble))
        snprintf(buf, sizeof buf, "null");
    else
        rz__number_format(v->valuedouble, buf, sizeof buf);
    char *s = rz__strdup(buf);
    if (!s)
        return false;
    v->type = cJSON_Raw;
    v->valuestring = s;
    return true;
}

char *rz__json_print(const cJSON *v, bool pretty)
{
    if (!v)
        return NULL;
    cJSON *copy = cJSON_Duplicate(v, true);
    char *out = NULL;
    if (copy && rz__json_raw_numbers(copy))
        out = pretty ? cJSON_Print(copy) : cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return out;
}

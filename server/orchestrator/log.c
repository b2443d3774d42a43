/* The orchestrator's log: one line per significant event on stderr, as
 * text (`TIME LEVEL EVENT key=value ...`) or JSON lines
 * ({"ts","level","event",key: value...}), below a chosen level. Fields are
 * typed (numbers stay numbers in JSON) and text values with a space, a
 * quote or a control character are quoted and escaped, so a line is one
 * line whatever a client sent. Keys and values never carry a secret:
 * callers pass ids, states and reasons, never keys, tokens or payloads. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "orch.h"

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int orch_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

static void timestamp(char *buf, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void text_value(const char *v)
{
    bool plain = *v != '\0';
    for (const char *p = v; *p && plain; p++)
        plain = (unsigned char)*p > 0x20 && *p != '"' && *p != '\\' && *p != 0x7f;
    if (plain) {
        fputs(v, stderr);
        return;
    }
    fputc('"', stderr);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(stderr, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(stderr, "\\x%02x", *p);
        else
            fputc(*p, stderr);
    }
    fputc('"', stderr);
}

void orch_log(orch *o, int level, const char *event, ...)
{
    if (level > o->opts.log_level)
        return;
    char ts[40];
    timestamp(ts, sizeof ts);
    cJSON *doc = o->opts.log_json ? cJSON_CreateObject() : NULL;
    if (doc) {
        cJSON_AddStringToObject(doc, "ts", ts);
        cJSON_AddStringToObject(doc, "level", level_names[level]);
        cJSON_AddStringToObject(doc, "event", event);
    } else {
        fprintf(stderr, "%s %-5s %s", ts, level_names[level], event);
    }
    va_list ap;
    va_start(ap, event);
    for (const char *k; (k = va_arg(ap, const char *));) {
        int kind = va_arg(ap, int);
        char num[32];
        const char *s = num;
        if (kind == LOG_U64)
            snprintf(num, sizeof num, "%llu", (unsigned long long)va_arg(ap, uint64_t));
        else if (kind == LOG_F64)
            snprintf(num, sizeof num, "%.3f", va_arg(ap, double));
        else
            s = va_arg(ap, const char *);
        if (!s)
            s = "";
        if (doc && kind != LOG_STR)
            cJSON_AddRawToObject(doc, k, num);
        else if (doc)
            cJSON_AddStringToObject(doc, k, s);
        else {
            fprintf(stderr, " %s=", k);
            text_value(s);
        }
    }
    va_end(ap);
    if (doc) {
        char *line = cJSON_PrintUnformatted(doc);
        if (line)
            fprintf(stderr, "%s\n", line);
        free(line);
        cJSON_Delete(doc);
    } else {
        fputc('\n', stderr);
    }
}

/* When a job's log lines arrived (`rhizos flow logs|job logs --since`,
 * docs/api.md "Live logs"): lines carry no time of their own, so the
 * orchestrator notes, as each chunk of a streamed log comes in, where the
 * chunk starts in the log and the time (a mark). A line's time is then
 * its chunk's arrival: at most the node's stream interval (~0.2 s) after
 * it was written, never before.
 *
 * Marks are kept beside the log they index: stored as the log, a NUL,
 * then the marks as JSON [[byte, unix_ms], ...] (the byte counted from the
 * stored log's start). Whoever reads the log as a C string sees only the
 * log. When a result's log replaces the streamed one (the same lines,
 * possibly with more at the end), the marks move with the lines they
 * name; the lines after them are the result's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

#define MARK_EVERY_MS 200u    /* a mark each 0.2 s at most (the node posts about as often) */
#define MARKS_MAX 1024u
#define ANCHOR_BYTES 256u     /* the streamed log's tail found in the result */

void log_times_add(log_times *t, uint64_t pos, uint64_t ms)
{
    /* A mark's time is the latest arrival of the lines it covers, so that
     * a line is never made older than it is: within 0.2 s of the mark's
     * first chunk the mark takes the new time; a full table folds its two
     * oldest marks together the same way. */
    if (t->n && (ms < t->v[t->n - 1].first + MARK_EVERY_MS || pos <= t->v[t->n - 1].pos)) {
        if (ms > t->v[t->n - 1].ms)
            t->v[t->n - 1].ms = ms;
        return;
    }
    if (t->n == MARKS_MAX) {
        t->v[1].pos = t->v[0].pos;
        memmove(t->v, t->v + 1, (t->n - 1) * sizeof *t->v);
        t->n--;
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        log_mark *v = realloc(t->v, cap * sizeof *v);
        if (!v) {   /* the last mark covers these too, made as late */
            if (t->n && ms > t->v[t->n - 1].ms)
                t->v[t->n - 1].ms = ms;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = (log_mark){ pos, ms, ms };
}

void log_times_shift(log_times *t, uint64_t cut)
{
    /* The log lost its first `cut` bytes: the mark that covered the new
     * start stays, at byte 0. */
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        bool covers = i + 1 == t->n || t->v[i + 1].pos > cut;
        if (t->v[i].pos >= cut || covers)
            t->v[k++] = (log_mark){ t->v[i].pos > cut ? t->v[i].pos - cut : 0,
                                    t->v[i].ms, t->v[i].first };
    }
    t->n = k;
}

void log_times_clear(log_times *t)
{
    free(t->v);
    *t = (log_times){0};
}

char *log_times_json(const log_times *t)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < t->n; i++) {
        cJSON *m = cJSON_CreateArray();
        cJSON_AddItemToArray(a, m);
        cJSON_AddItemToArray(m, cJSON_CreateNumber((double)t->v[i].pos));
        cJSON_AddItemToArray(m, cJSON_CreateNumber((double)t->v[i].ms));
    }
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

void log_times_parse(const char *json, log_times *out)
{
    *out = (log_times){0};
    cJSON *a = json ? cJSON_Parse(json) : NULL, *m;
    cJSON_ArrayForEach(m, a) {
        double pos = cJSON_GetNumberValue(cJSON_GetArrayItem(m, 0));
        double ms = cJSON_GetNumberValue(cJSON_GetArrayItem(m, 1));
        if (pos >= 0 && ms >= 0 && pos < 1e15 && ms < 1e15)
            log_times_add(out, (uint64_t)pos, (uint64_t)ms);
    }
    cJSON_Delete(a);
}

void log_times_rebase(log_times *t, const char *old_log, size_t old_len,
                      const char *new_log, size_t new_len, uint64_t now_ms)
{
    /* Where the streamed log's end is in the result's log. */
    size_t k = old_len < ANCHOR_BYTES ? old_len : ANCHOR_BYTES;
    if (k > new_len)
        k = new_len;   /* the result kept less than the stream's tail */
    const char *hit = NULL;
    for (const char *p = new_log; k && p + k <= new_log + new_len;) {
        const char *f = memmem(p, (size_t)(new_log + new_len - p), old_log + old_len - k, k);
        if (!f)
            break;
        hit = f;
        p = f + 1;
    }
    if (!hit) {
        log_times_clear(t);   /* unknown times: the lines are shown */
        return;
    }
    size_t end = (size_t)(hit - new_log) + k;   /* old_len in the new log */
    /* Old byte x is new byte x + end - old_len; marks before the new start
     * fold onto byte 0, the last of them covering it. */
    size_t n = 0;
    for (size_t i = 0; i < t->n; i++) {
        uint64_t x = t->v[i].pos + end;
        log_mark m = { x > old_len ? x - old_len : 0, t->v[i].ms, t->v[i].first };
        if (n && m.pos == 0 && t->v[n - 1].pos == 0)
            t->v[n - 1] = m;   /* later ms: the later mark's */
        else
            t->v[n++] = m;
    }
    t->n = n;
    if (end < new_len)   /* lines that came with the result only */
        log_times_add(t, end, now_ms);
}

size_t log_times_since(const log_times *t, const char *log, size_t len,
                       uint64_t since_ms)
{
    if (!t->n)
        return 0;   /* no times known: the whole log */
    size_t i = 0;
    while (i < t->n && t->v[i].ms < since_ms)
        i++;
    if (i == t->n)
        return len;
    /* Lines before the first mark are older only if a mark covers them. */
    size_t from = i == 0 && t->v[0].pos > 0 ? 0 : (size_t)t->v[i].pos;
    if (from > len)
        return len;
    while (from > 0 && log[from - 1] != '\n')
        from--;   /* the line a mark falls inside starts before it */
    return from;
}

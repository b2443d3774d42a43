/* What the Slurm commands print, read strictly: `scontrol show node -o`,
 * `scontrol show job -o`, `squeue -h -o %i|%j|%T`, `sbatch --parsable`.
 * Pure functions over text (unit-tested and fed malformed input in
 * tests/test_slurm_parse.c); nothing here runs a command. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slurm.h"

#define LINE_MAX_BYTES 65536u

/* ---- key=value lines (scontrol -o) ---- */

static int key_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '/' || c == ':' ||
           c == '.' || c == '-';
}

/* Does the token [t, end) start a field ("Key=")? Its key's length, or 0. */
static size_t field_key(const char *t, const char *end)
{
    size_t k = 0;
    while (t + k < end && key_char(t[k]))
        k++;
    return k > 0 && t + k < end && t[k] == '=' ? k : 0;
}

/* The value of `key` on one line into out (words of a value that holds
 * spaces, such as OS= or Reason=, joined again). 1 found, 0 not. */
static int kv_get(const char *line, size_t len, const char *key, char *out,
                  size_t n)
{
    const char *p = line, *end = line + len;
    size_t klen = strlen(key);
    int in = 0;
    size_t o = 0;
    out[0] = '\0';
    while (p < end) {
        while (p < end && *p == ' ')
            p++;
        const char *t = p;
        while (p < end && *p != ' ')
            p++;
        if (t == p)
            break;
        size_t k = field_key(t, p);
        if (k) {
            if (in)
                return 1;
            if (k == klen && memcmp(t, key, k) == 0) {
                in = 1;
                t += k + 1;
            } else {
                continue;
            }
        } else if (in) {
            if (o + 1 < n)
                out[o++] = ' ';
        }
        for (; in && t < p; t++)
            if (o + 1 < n && (unsigned char)*t >= 0x20 && *t != 0x7f)
                out[o++] = *t;
        if (in)
            out[o] = '\0';
    }
    return in;
}

/* A whole decimal number that fits in 64 bits, nothing else. */
static int parse_u64(const char *s, uint64_t *v)
{
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *e = NULL;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || *e)
        return -1;
    *v = x;
    return 0;
}

static int parse_u32(const char *s, uint32_t *v)
{
    uint64_t x;
    if (parse_u64(s, &x) != 0 || x > UINT32_MAX)
        return -1;
    *v = (uint32_t)x;
    return 0;
}

/* Is `name` one of the comma list's entries? */
static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == n && memcmp(p, name, n) == 0)
            return 1;
        p += l + (c ? 1 : 0);
    }
    return 0;
}

/* State=IDLE, MIXED+DRAIN, DOWN*, IDLE+NOT_RESPONDING...: a node takes
 * jobs when its base state is one that runs jobs and no flag says
 * otherwise ('*' is "not responding"). */
static int node_usable(const char *state)
{
    static const char *const ok[] = { "IDLE", "MIXED", "ALLOCATED",
                                      "COMPLETING", NULL };
    static const char *const bad[] = { "DRAIN", "DRAINED", "DRAINING",
        "DOWN", "FAIL", "FAILING", "MAINT", "NOT_RESPONDING",
        "POWER_DOWN", "POWERED_DOWN", "POWERING_DOWN", "REBOOT_REQUESTED",
        "REBOOT_ISSUED", "INVALID_REG", "FUTURE", "UNKNOWN", NULL };
    if (!*state || strchr(state, '*'))
        return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", state);
    int base = 0;
    for (char *save = NULL, *t = strtok_r(buf, "+", &save); t;
         t = strtok_r(NULL, "+", &save)) {
        for (size_t i = 0; bad[i]; i++)
            if (strcmp(t, bad[i]) == 0)
                return 0;
        for (size_t i = 0; ok[i]; i++)
            base |= strcmp(t, ok[i]) == 0;
    }
    return base;
}

/* Gres=gpu:4, gpu:a100:2(S:0-1),gpu:t4:1, (null): the GPUs it names. */
static int gres_gpus(const char *gres, uint32_t *out)
{
    uint64_t total = 0;
    *out = 0;
    if (!*gres || strcmp(gres, "(null)") == 0)
        return 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", gres);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t;
         t = strtok_r(NULL, ",", &save)) {
        char *paren = strchr(t, '(');
        if (paren)
            *paren = '\0';
        if (strncmp(t, "gpu", 3) != 0 || (t[3] != ':' && t[3] != '\0'))
            continue;   /* another resource, or a comma inside (S:0,1) */
        const char *count = strrchr(t, ':');
        uint64_t c = 1;
        if (count && parse_u64(count + 1, &c) != 0) {
            if (strchr(t + 4, ':'))
                return -1;   /* gpu:type:N where N is not a number */
            c = 1;           /* gpu:type */
        }
        total += c;
        if (total > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)total;
    return 0;
}

/* AllocTRES=cpu=2,mem=100M,gres/gpu=1: the allocated GPUs. */
static uint32_t tres_gpus(const char *tres)
{
    const char *p = strstr(tres, "gres/gpu=");
    uint64_t v = 0;
    if (!p)
        return 0;
    char num[24];
    size_t i = 0;
    for (p += 9; i + 1 < sizeof num && isdigit((unsigned char)*p); p++)
        num[i++] = *p;
    num[i] = '\0';
    return parse_u64(num, &v) == 0 && v <= UINT32_MAX ? (uint32_t)v : 0;
}

typedef struct node_line {
    uint32_t cpus, cpus_alloc, gpus, gpus_alloc;
    uint64_t mem, mem_alloc;
    int usable, member;
} node_line;

static int parse_node_line(const char *line, size_t len, const char *part,
                           node_line *nl, char *err, size_t errlen)
{
    char v[512], name[128];
    memset(nl, 0, sizeof *nl);
    if (!kv_get(line, len, "NodeName", name, sizeof name) || !name[0]) {
        snprintf(err, errlen, "a line of scontrol show node has no NodeName");
        return -1;
    }
    if (!kv_get(line, len, "Partitions", v, sizeof v) || !in_list(v, part))
        return 0;
    nl->member = 1;
    static const char *const nums[] = { "CPUTot", "CPUAlloc", NULL };
    uint32_t *dst[] = { &nl->cpus, &nl->cpus_alloc };
    for (size_t i = 0; nums[i]; i++)
        if (!kv_get(line, len, nums[i], v, sizeof v) ||
            parse_u32(v, dst[i]) != 0) {
            snprintf(err, errlen, "node %.64s: %s is not a number", name,
                     nums[i]);
            return -1;
        }
    if (!kv_get(line, len, "RealMemory", v, sizeof v) ||
        parse_u64(v, &nl->mem) != 0 ||
        (kv_get(line, len, "AllocMem", v, sizeof v) &&
         parse_u64(v, &nl->mem_alloc) != 0)) {
        snprintf(err, errlen, "node %.64s: RealMemory or AllocMem is not a "
                 "number", name);
        return -1;
    }
    if (kv_get(line, len, "Gres", v, sizeof v) && gres_gpus(v, &nl->gpus) != 0) {
        snprintf(err, errlen, "node %.64s: Gres \"%.64s\" does not parse",
                 name, v);
        return -1;
    }
    if (kv_get(line, len, "AllocTRES", v, sizeof v))
        nl->gpus_alloc = tres_gpus(v);
    kv_get(line, len, "State", v, sizeof v);
    nl->usable = node_usable(v);
    return 0;
}

static uint32_t sub32(uint32_t a, uint32_t b) { return a > b ? a - b : 0; }
static uint64_t sub64(uint64_t a, uint64_t b) { return a > b ? a - b : 0; }

static void add_node(slurm_capacity *c, const node_line *nl)
{
    c->nodes++;
    if (!nl->usable)
        return;
    c->usable++;
    c->cpus += nl->cpus;
    c->cpus_free += sub32(nl->cpus, nl->cpus_alloc);
    c->mem_mb += nl->mem;
    c->mem_free_mb += sub64(nl->mem, nl->mem_alloc);
    c->gpus += nl->gpus;
    c->gpus_free += sub32(nl->gpus, nl->gpus_alloc);
    if (nl->cpus > c->max_node_cpus)
        c->max_node_cpus = nl->cpus;
    if (nl->mem > c->max_node_mem_mb)
        c->max_node_mem_mb = nl->mem;
    if (nl->gpus > c->max_node_gpus)
        c->max_node_gpus = nl->gpus;
}

/* Calls fn on each non-empty line; stops at the first failure. */
typedef int (*line_fn)(const char *line, size_t len, void *ud, char *err,
                       size_t errlen);

static int each_line(const char *text, size_t len, line_fn fn, void *ud,
                     char *err, size_t errlen)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p), step = l;
        if (l && p[l - 1] == '\r')
            l--;
        if (l > LINE_MAX_BYTES) {
            snprintf(err, errlen, "a line of %zu bytes", l);
            return -1;
        }
        if (memchr(p, '\0', l)) {
            snprintf(err, errlen, "a NUL byte in the output");
            return -1;
        }
        size_t sp = 0;
        while (sp < l && (p[sp] == ' ' || p[sp] == '\t'))
            sp++;
        if (sp < l && fn(p, l, ud, err, errlen) != 0)
            return -1;
        p += step + (nl ? 1 : 0);
    }
    return 0;
}

typedef struct nodes_ud {
    const char *part;
    slurm_capacity *c;
} nodes_ud;

static int node_fn(const char *line, size_t len, void *ud, char *err,
                   size_t errlen)
{
    nodes_ud *u = ud;
    node_line nl;
    if (parse_node_line(line, len, u->part, &nl, err, errlen) != 0)
        return -1;
    if (nl.member)
        add_node(u->c, &nl);
    return 0;
}

int slurm_parse_nodes(const char *text, size_t len, const char *partition,
                      slurm_capacity *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    nodes_ud u = { partition, out };
    if (each_line(text, len, node_fn, &u, err, errlen) != 0) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

/* ---- states ---- */

slurm_phase slurm_state_phase(const char *state)
{
    static const struct { const char *name; slurm_phase p; } map[] = {
        { "PENDING", SLURM_WAITING }, { "CONFIGURING", SLURM_WAITING },
        { "REQUEUED", SLURM_WAITING }, { "REQUEUE_HOLD", SLURM_WAITING },
        { "REQUEUE_FED", SLURM_WAITING }, { "RESIZING", SLURM_WAITING },
        { "SUSPENDED", SLURM_WAITING }, { "STOPPED", SLURM_WAITING },
        { "SIGNALING", SLURM_RUNNING }, { "STAGE_OUT", SLURM_RUNNING },
        { "RUNNING", SLURM_RUNNING }, { "COMPLETING", SLURM_RUNNING },
        { "COMPLETED", SLURM_DONE },
        { "FAILED", SLURM_FAILED }, { "OUT_OF_MEMORY", SLURM_FAILED },
        { "BOOT_FAIL", SLURM_FAILED }, { "DEADLINE", SLURM_FAILED },
        { "SPECIAL_EXIT", SLURM_FAILED },
        { "TIMEOUT", SLURM_TIMEOUT },
        { "CANCELLED", SLURM_RETRY }, { "NODE_FAIL", SLURM_RETRY },
        { "PREEMPTED", SLURM_RETRY }, { "REVOKED", SLURM_RETRY },
    };
    if (!state)
        return SLURM_UNKNOWN;
    /* scontrol may add " by UID" to CANCELLED; squeue prints the word. */
    size_t n = strcspn(state, " ");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].name) == n && strncmp(state, map[i].name, n) == 0)
            return map[i].p;
    return SLURM_UNKNOWN;
}

const char *slurm_phase_name(slurm_phase p)
{
    static const char *const names[] = { "waiting", "running", "done",
                                         "failed", "timeout", "retry",
                                         "unknown" };
    return (unsigned)p <= SLURM_UNKNOWN ? names[p] : "unknown";
}

/* ---- job names ---- */

/* A whole number from 1, no sign or leading zero, up to max; the digits
 * end at `end` (set). */
static int name_number(const char *s, const char **end, uint64_t max,
                       uint64_t *v)
{
    const char *p = s;
    uint64_t x = 0;
    if (*p < '1' || *p > '9')
        return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (x > (max - (uint64_t)(*p - '0')) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *end = p;
    *v = x;
    return 0;
}

int slurm_job_name_parse(const char *name, uint64_t *job, uint32_t *attempt)
{
    const char *p;
    uint64_t j, a;
    if (!name || strncmp(name, "rhizos-", 7) != 0 ||
        name_number(name + 7, &p, UINT64_C(9007199254740992), &j) != 0 ||
        *p != '-' || name_number(p + 1, &p, UINT32_MAX, &a) != 0 || *p)
        return -1;
    *job = j;
    *attempt = (uint32_t)a;
    return 0;
}

void slurm_job_name(char *out, size_t n, uint64_t job, uint32_t attempt)
{
    snprintf(out, n, "rhizos-%" PRIu64 "-%" PRIu32, job, attempt);
}

/* ---- squeue ---- */

typedef struct queue_ud {
    slurm_qjob *v;
    size_t n, cap;
} queue_ud;

static int queue_fn(const char *line, size_t len, void *ud, char *err,
                    size_t errlen)
{
    queue_ud *u = ud;
    char buf[512];
    if (len >= sizeof buf) {
        snprintf(err, errlen, "a line of squeue over %zu bytes", sizeof buf);
        return -1;
    }
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *a = buf, *b = strchr(a, '|'), *c = b ? strchr(b + 1, '|') : NULL;
    if (!b || !c) {
        snprintf(err, errlen, "a line of squeue is not ID|NAME|STATE[|COMMENT]");
        return -1;
    }
    *b++ = '\0';
    *c++ = '\0';
    char *d = strchr(c, '|');   /* the comment: the rest, '|' and all */
    if (d)
        *d++ = '\0';
    uint64_t id;
    /* An array or het job prints 12_3 or 12+0: never ours. */
    if (parse_u64(a, &id) != 0 || id == 0) {
        if (strpbrk(a, "_+"))
            return 0;
        snprintf(err, errlen, "squeue: job id \"%.32s\" is not a job id", a);
        return -1;
    }
    slurm_qjob q = { .id = id };
    if (slurm_job_name_parse(b, &q.job, &q.attempt) != 0)
        return 0;
    snprintf(q.state, sizeof q.state, "%s", c);
    snprintf(q.comment, sizeof q.comment, "%s", d ? d : "");
    q.phase = slurm_state_phase(c);
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        slurm_qjob *v = realloc(u->v, cap * sizeof *v);
        if (!v) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n++] = q;
    return 0;
}

int slurm_parse_queue(const char *text, size_t len, slurm_qjob **out,
                      size_t *n, char *err, size_t errlen)
{
    queue_ud u = {0};
    *out = NULL;
    *n = 0;
    if (each_line(text, len, queue_fn, &u, err, errlen) != 0) {
        free(u.v);
        return -1;
    }
    *out = u.v;
    *n = u.n;
    return 0;
}

/* ---- scontrol show job ---- */

int slurm_parse_job(const char *text, size_t len, slurm_jobinfo *out,
                    char *err, size_t errlen)
{
    char v[256];
    memset(out, 0, sizeof *out);
    const char *nl = memchr(text, '\n', len);
    size_t l = nl ? (size_t)(nl - text) : len;
    if (l > LINE_MAX_BYTES || memchr(text, '\0', l)) {
        snprintf(err, errlen, "scontrol show job: not one line of text");
        return -1;
    }
    if (!kv_get(text, l, "JobId", v, sizeof v) || parse_u64(v, &out->id) != 0) {
        snprintf(err, errlen, "scontrol show job: no JobId");
        return -1;
    }
    if (!kv_get(text, l, "JobState", out->state, sizeof out->state) ||
        !out->state[0]) {
        snprintf(err, errlen, "scontrol show job: no JobState");
        return -1;
    }
    kv_get(text, l, "JobName", out->name, sizeof out->name);
    kv_get(text, l, "Reason", out->reason, sizeof out->reason);
    out->phase = slurm_state_phase(out->state);
    if (kv_get(text, l, "ExitCode", v, sizeof v)) {
        char *colon = strchr(v, ':');
        uint32_t c = 0, s = 0;
        if (!colon) {
            snprintf(err, errlen, "scontrol show job: ExitCode is not C:S");
            return -1;
        }
        *colon = '\0';
        if (parse_u32(v, &c) != 0 || parse_u32(colon + 1, &s) != 0 ||
            c > 255 || s > 255) {
            snprintf(err, errlen, "scontrol show job: ExitCode is not C:S");
            return -1;
        }
        out->exit_code = (int)c;
        out->exit_signal = (int)s;
    }
    return 0;
}

int slurm_parse_sbatch(const char *text, size_t len, uint64_t *id)
{
    char buf[64];
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                   text[len - 1] == ' '))
        len--;
    if (!len || len >= sizeof buf || memchr(text, '\0', len))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *semi = strchr(buf, ';');
    if (semi)
        *semi = '\0';
    return parse_u64(buf, id) == 0 && *id > 0 ? 0 : -1;
}

/* ---- arguments and messages ---- */

void slurm_time_arg(char *out, size_t n, uint32_t timeout_s)
{
    if (!timeout_s) {
        snprintf(out, n, "%s", "");
        return;
    }
    uint64_t min = ((uint64_t)timeout_s + 60u + 59u) / 60u;
    snprintf(out, n, "%" PRIu64, min);
}

void slurm_error_line(char *out, size_t n, const char *text, size_t len)
{
    static const char *const prefixes[] = {
        "sbatch: error: ", "squeue: error: ", "scontrol: error: ",
        "scancel: error: ", "sinfo: error: ", "slurm_load_jobs error: ",
        "Batch job submission failed: ", NULL };
    size_t end = len;
    if (!n)
        return;
    out[0] = '\0';
    while (end > 0) {   /* the last non-empty line */
        while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' ||
                           text[end - 1] == ' '))
            end--;
        size_t start = end;
        while (start > 0 && text[start - 1] != '\n')
            start--;
        if (end > start) {
            const char *p = text + start;
            size_t l = end - start;
            for (int again = 1; again;) {
                again = 0;
                for (size_t i = 0; prefixes[i]; i++) {
                    size_t pl = strlen(prefixes[i]);
                    if (l >= pl && strncmp(p, prefixes[i], pl) == 0) {
                        p += pl;
                        l -= pl;
                        again = 1;
                    }
                }
            }
            size_t o = 0;
            for (size_t i = 0; i < l && o + 1 < n; i++)
                if ((unsigned char)p[i] >= 0x20 && p[i] != 0x7f)
                    out[o++] = p[i];
            out[o] = '\0';
            return;
        }
        end = start;
    }
}

/* Field i (0-based) of a '|'-separated line [p, end) into out. */
static int pipe_field(const char *p, const char *end, int i, char *out, size_t cap)
{
    for (; i > 0 && p < end; i--) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        if (!bar)
            return 0;
        p = bar + 1;
    }
    if (i)
        return 0;
    const char *bar = memchr(p, '|', (size_t)(end - p));
    size_t n = (size_t)((bar ? bar : end) - p);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

int slurm_parse_sacct(const char *text, size_t len, uint64_t id,
                      slurm_jobinfo *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "sacct: not text");
        return -1;
    }
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        char v[256], ec[40];
        uint64_t jid;
        if (pipe_field(p, le, 0, v, sizeof v) && parse_u64(v, &jid) == 0 && jid == id &&
            pipe_field(p, le, 2, v, sizeof v) && pipe_field(p, le, 3, ec, sizeof ec)) {
            size_t w = strcspn(v, " ");   /* "CANCELLED by 0" */
            if (w >= sizeof out->state)
                w = sizeof out->state - 1;
            v[w] = '\0';
            char *colon = strchr(ec, ':');
            uint32_t c = 0, s = 0;
            if (!v[0] || !colon) {
                snprintf(err, errlen, "sacct: job %" PRIu64 " has no state or exit code", id);
                return -1;
            }
            *colon = '\0';
            if (parse_u32(ec, &c) != 0 || parse_u32(colon + 1, &s) != 0 || c > 255 ||
                s > 255) {
                snprintf(err, errlen, "sacct: ExitCode is not C:S");
                return -1;
            }
            out->id = id;
            memcpy(out->state, v, w + 1);
            pipe_field(p, le, 1, out->name, sizeof out->name);
            pipe_field(p, le, 4, out->reason, sizeof out->reason);
            out->exit_code = (int)c;
            out->exit_signal = (int)s;
            out->phase = slurm_state_phase(out->state);
            uint64_t el;
            if (pipe_field(p, le, 5, v, sizeof v) && v[0]) {
                if (parse_u64(v, &el) != 0 || el > UINT32_MAX) {
                    snprintf(err, errlen, "sacct: ElapsedRaw is not seconds");
                    return -1;
                }
                out->elapsed_s = el;
                out->has_elapsed = 1;
            }
            return 0;
        }
        p = le + 1;
    }
    snprintf(err, errlen, "sacct: no line for job %" PRIu64, id);
    return -1;
}

int slurm_config_accounting(const char *text, size_t len)
{
    static const char key[] = "AccountingStorageType";
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n > sizeof key && memcmp(p, key, sizeof key - 1) == 0 &&
            (p[sizeof key - 1] == ' ' || p[sizeof key - 1] == '=')) {
            const char *eq = memchr(p, '=', n);
            if (!eq)
                return 0;
            for (eq++; eq < le && *eq == ' '; eq++)
                ;
            static const char none[] = "accounting_storage/none";
            size_t vl = (size_t)(le - eq);
            while (vl && (eq[vl - 1] == ' ' || eq[vl - 1] == '\r'))
                vl--;
            return vl && !(vl == sizeof none - 1 && memcmp(eq, none, vl) == 0);
        }
        p = le + 1;
    }
    return 0;
}

/* ---- shared with slurm_rest.c's JSON readers ---- */

int slurm_node_state_usable(const char *state)
{
    return node_usable(state);
}

int slurm_gres_count(const char *gres, uint32_t *out)
{
    return gres_gpus(gres, out);
}

void slurm_capacity_add(slurm_capacity *c, uint32_t cpus, uint32_t cpus_alloc,
                        uint64_t mem, uint64_t mem_alloc, uint32_t gpus,
                        uint32_t gpus_alloc, int usable)
{
    node_line nl = { .cpus = cpus, .cpus_alloc = cpus_alloc, .gpus = gpus,
                     .gpus_alloc = gpus_alloc, .mem = mem,
                     .mem_alloc = mem_alloc, .usable = usable, .member = 1 };
    add_node(c, &nl);
}

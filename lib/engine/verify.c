/* Verification: a node's reputation from its record, and capability
 * challenges the engine issues and checks (docs/node.md, "Verification").
 *
 * A challenge asks for three things the orchestrator can check cheaply:
 *   cpu     BLAKE2b-256 iterated `iterations` times from the nonce;
 *   memory  a buffer of `mb` MiB filled with a pattern seeded by the nonce,
 *           then a data-dependent walk of WALK_STEPS reads over it;
 *   gpu     the digest of an n x n product of seeded matrices (mod 2^32).
 * The checker recomputes each from the nonce: the chain in full (bounded
 * by the options), the walk from the pattern's closed form, the product
 * in O(n^3) with a small n. What this proves and what it does not is in
 * docs/node.md. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "engine/engine_impl.h"

#define WALK_STEPS 65536u
#define GPU_N 64u
#define MAX_MEMORY_MB (UINT32_C(1) << 20)   /* what a node will try: 1 TiB */
#define MAX_ITERATIONS (UINT32_C(1) << 28)

/* ---- Reputation ---- */

double rz_engine_reputation(const rz_engine_record *r)
{
    if (!r)
        return 1.0;
    double good = (double)r->succeeded + (double)r->challenges_passed;
    double bad = (double)r->failed + (double)r->declined / 2.0 +
                 2.0 * (double)r->lost + 4.0 * (double)r->challenges_failed +
                 4.0 * (double)r->disagreed;
    double rep = (good + 4.0) / (good + bad + 4.0);
    /* Rounded down so that the matcher's cached order changes rarely. */
    rep = floor(rep * 100.0 + 1e-9) / 100.0;
    return rep < 0 ? 0 : rep > 1 ? 1 : rep;
}

const char *rz_verify_state_name(rz_verify_state s)
{
    switch (s) {
    case RZ_VERIFY_OFF: return "off";
    case RZ_VERIFY_UNVERIFIED: return "unverified";
    case RZ_VERIFY_PENDING: return "pending";
    case RZ_VERIFY_VERIFIED: return "verified";
    }
    return "unknown";
}

static bool challenges_on(const rz_engine *e)
{
    return e->opts.challenge_interval_ms != 0;
}

/* Write n's trust into its caps and the matcher's copy; a change may
 * allow or forbid placements and changes waiting reasons. */
static void sync_trust(rz_engine *e, rz__enode *n)
{
    double rep = rz_engine_reputation(&n->rec);
    const rz_caps_info *ci = rz_caps_get(n->caps);
    if (ci->reputation == rep && ci->unverified == n->unverified)
        return;
    (void)!rz_caps_set_trust(n->caps, rep, n->unverified);   /* valid */
    if (n->mindex != RZ_NPOS)   /* valid index and values */
        (void)!rz_matcher_set_trust(e->matcher, n->mindex, rep, n->unverified);
    e->assign_dirty = true;
    e->nodes_epoch++;
}

static uint32_t claims_of(const rz_caps *caps)
{
    const rz_caps_info *c = rz_caps_get(caps);
    return RZ_CAP_CPU | (c->memory_mb ? RZ_CAP_MEMORY : 0) |
           (c->n_gpus ? RZ_CAP_GPU : 0);
}

void rz__verify_outcome(rz_engine *e, uint64_t node, rz__outcome o)
{
    rz__enode *n = rz__engine_node(e, node);
    if (!n)
        return;
    switch (o) {
    case RZ__OUT_SUCCEEDED: n->rec.succeeded++; break;
    case RZ__OUT_FAILED: n->rec.failed++; break;
    case RZ__OUT_DECLINED: n->rec.declined++; break;
    case RZ__OUT_LOST: n->rec.lost++; break;
    case RZ__OUT_DISAGREED: n->rec.disagreed++; break;
    }
    rz__engine_touch_node(e, n);
    sync_trust(e, n);
}

int rz__verify_register(rz_engine *e, rz__enode *n, uint64_t now)
{
    n->claims = claims_of(n->caps);
    n->unverified = challenges_on(e) ? n->claims : 0;
    n->ch = (rz__echal){ .next_due = now };
    return rz_caps_set_trust(n->caps, rz_engine_reputation(&n->rec),
                             n->unverified);
}

void rz__verify_rejoin(rz_engine *e, rz__enode *n, rz_caps *caps, uint64_t now)
{
    n->claims = claims_of(caps);
    n->unverified = challenges_on(e) ? n->claims : 0;
    n->ch.pending = false;
    n->ch.deadline = 0;
    n->ch.next_due = now;
    (void)!rz_caps_set_trust(caps, rz_engine_reputation(&n->rec),
                             n->unverified);   /* valid values */
}

/* ---- The record in the node's stored JSON ---- */

static uint64_t take_u64(const cJSON *o, const char *k, bool *found)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (found)
        *found = cJSON_IsString(v);
    return cJSON_IsString(v) ? strtoull(v->valuestring, NULL, 10) : 0;
}

static const char *const rec_keys[] = {
    "r_succeeded", "r_failed", "r_declined", "r_lost", "r_ch_passed",
    "r_ch_failed", "r_disagreed",
};

_Static_assert(sizeof rec_keys / sizeof *rec_keys + 2 == RZ__VERIFY_FIELDS,
               "rz__verify_fields fills RZ__VERIFY_FIELDS entries");

static uint64_t *rec_field(rz_engine_record *r, size_t i)
{
    uint64_t *f[] = { &r->succeeded, &r->failed, &r->declined, &r->lost,
                      &r->challenges_passed, &r->challenges_failed,
                      &r->disagreed };
    return f[i];
}

size_t rz__verify_fields(const rz__enode *n,
                         const char *keys[RZ__VERIFY_FIELDS],
                         uint64_t vals[RZ__VERIFY_FIELDS])
{
    rz_engine_record r = n->rec;
    size_t k = 0;
    for (; k < sizeof rec_keys / sizeof *rec_keys; k++) {
        keys[k] = rec_keys[k];
        vals[k] = *rec_field(&r, k);
    }
    keys[k] = "unverified";
    vals[k++] = n->unverified;
    keys[k] = "ch_seq";
    vals[k++] = n->ch.seq;
    return k;
}

int rz__verify_load(rz_engine *e, rz__enode *n, const cJSON *rec)
{
    for (size_t i = 0; i < sizeof rec_keys / sizeof *rec_keys; i++)
        *rec_field(&n->rec, i) = take_u64(rec, rec_keys[i], NULL);
    bool known = false;
    uint64_t unv = take_u64(rec, "unverified", &known);
    n->claims = claims_of(n->caps);
    /* Challenges turned on since it was stored (or records from before
     * they existed): its claims are to be proven again. */
    n->unverified = !challenges_on(e) ? 0
                  : known ? (uint32_t)unv & n->claims : n->claims;
    n->ch = (rz__echal){ .seq = (uint32_t)take_u64(rec, "ch_seq", NULL) };
    /* Neutral until rz__verify_resume: the jobs it held when the engine
     * stopped are placed on it again first, whatever its trust since. */
    return rz_caps_set_trust(n->caps, 1.0, 0);
}

void rz__verify_resume(rz_engine *e)
{
    for (size_t i = 0; i < e->n_nodes; i++)
        sync_trust(e, &e->nodes[i]);
}

/* ---- The computations, shared by the checker and the node ---- */

static uint64_t mix64(uint64_t z)   /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static uint64_t seed_of(const unsigned char nonce[32])
{
    uint64_t s = 0;
    for (int i = 0; i < 8; i++)
        s = s << 8 | nonce[i];
    return s;
}

static uint64_t pattern(uint64_t seed, uint64_t i)
{
    return mix64(seed ^ (i * UINT64_C(0x9e3779b97f4a7c15)));
}

static void cpu_chain(const unsigned char nonce[32], uint32_t iterations,
                      unsigned char out[32])
{
    memcpy(out, nonce, 32);
    for (uint32_t i = 0; i < iterations; i++)
        crypto_generichash(out, 32, out, 32, NULL, 0);
}

/* The walk over words w[0..words): from `buf` when given (the node's
 * filled buffer), else from the pattern (the checker). */
static uint64_t memory_walk(uint64_t seed, uint64_t words, const uint64_t *buf)
{
    uint64_t acc = seed;
    for (uint32_t t = 0; t < WALK_STEPS; t++) {
        uint64_t i = acc % words;
        acc = mix64(acc ^ (buf ? buf[i] : pattern(seed, i)) ^ t);
    }
    return acc;
}

static void gpu_product(uint64_t seed, uint32_t n, unsigned char out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    for (uint32_t i = 0; i < n; i++) {
        unsigned char row[GPU_N * 4];
        for (uint32_t j = 0; j < n; j++) {
            uint32_t c = 0;
            for (uint32_t k = 0; k < n; k++)
                c += (uint32_t)pattern(seed ^ 1, (uint64_t)i * n + k) *
                     (uint32_t)pattern(seed ^ 2, (uint64_t)k * n + j);
            for (int b = 0; b < 4; b++)
                row[j * 4 + b] = (unsigned char)(c >> (8 * b));
        }
        crypto_generichash_update(&st, row, (size_t)n * 4);
    }
    crypto_generichash_final(&st, out, 32);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void hex64(uint64_t v, char out[17])
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    hex(b, 8, out);
}

/* ---- Issuing and checking ---- */

/* What challenge `seq` of node `n` asks; the same every time. */
typedef struct chal {
    unsigned char nonce[32];
    uint32_t iterations, mb, gpu_n;
    uint64_t limit_ms;
} chal;

/* Its size and time limit (no nonce: cheap enough for every wakeup). */
static void chal_params(const rz_engine *e, const rz__enode *n, chal *c)
{
    const rz_caps_info *ci = rz_caps_get(n->caps);
    uint32_t cap_mb = e->opts.challenge_memory_mb
                    ? e->opts.challenge_memory_mb
                    : RZ_ENGINE_DEFAULT_CHALLENGE_MEMORY_MB;
    c->iterations = e->opts.challenge_cpu_iterations
                  ? e->opts.challenge_cpu_iterations
                  : RZ_ENGINE_DEFAULT_CHALLENGE_CPU_ITERATIONS;
    c->mb = (n->claims & RZ_CAP_MEMORY)
          ? (uint32_t)(ci->memory_mb < cap_mb ? ci->memory_mb : cap_mb) : 0;
    c->gpu_n = (n->claims & RZ_CAP_GPU) ? GPU_N : 0;
    /* From the claimed speed: one BLAKE2b block is taken as ~2000 of the
     * benchmark's operations (1000 hashes/ms when none is claimed), memory
     * at the claimed bandwidth (1000 MB/s when none); four times that. */
    double hashes_per_ms = ci->bench_cpu_mops > 0 ? ci->bench_cpu_mops / 2.0
                                                  : 1000.0;
    double mbps = ci->bench_memory_mbps > 0 ? ci->bench_memory_mbps : 1000.0;
    double work = c->iterations / hashes_per_ms + c->mb * 1000.0 / mbps;
    uint64_t grace = e->opts.challenge_grace_ms
                   ? e->opts.challenge_grace_ms
                   : RZ_ENGINE_DEFAULT_CHALLENGE_GRACE_MS;
    c->limit_ms = grace + (uint64_t)ceil(4.0 * work);
}

static void chal_of(const rz_engine *e, const rz__enode *n, uint32_t seq,
                    chal *c)
{
    unsigned char in[20];
    uint64_t parts[2] = { e->opts.challenge_seed, n->id };
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 8; i++)
            in[p * 8 + i] = (unsigned char)(parts[p] >> (8 * i));
    for (int i = 0; i < 4; i++)
        in[16 + i] = (unsigned char)(seq >> (8 * i));
    crypto_generichash(c->nonce, 32, in, sizeof in, NULL, 0);
    chal_params(e, n, c);
}

static char *chal_json(const chal *c, uint32_t seq)
{
    char nonce[65];
    hex(c->nonce, 32, nonce);
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddNumberToObject(o, "seq", seq) &&
              cJSON_AddStringToObject(o, "nonce", nonce);
    cJSON *x = ok ? cJSON_AddObjectToObject(o, "cpu") : NULL;
    ok = x && cJSON_AddNumberToObject(x, "iterations", c->iterations);
    if (ok && c->mb) {
        x = cJSON_AddObjectToObject(o, "memory");
        ok = x && cJSON_AddNumberToObject(x, "mb", c->mb);
    }
    if (ok && c->gpu_n) {
        x = cJSON_AddObjectToObject(o, "gpu");
        ok = x && cJSON_AddNumberToObject(x, "n", c->gpu_n);
    }
    ok = ok && cJSON_AddNumberToObject(o, "time_limit_ms", (double)c->limit_ms);
    char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return s;
}

static rz__enode *live(rz_engine *e, uint64_t id, int *rc)
{
    rz__enode *n = rz__engine_node(e, id);
    *rc = !n ? rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)id)
        : n->state != RZ_NODE_ACTIVE
        ? rz__error(RZ_ESTATE, "node %llu is not active", (unsigned long long)id)
        : RZ_OK;
    return *rc == RZ_OK ? n : NULL;
}

static uint64_t next_interval(const rz_engine *e, const rz__enode *n)
{
    uint64_t iv = e->opts.challenge_interval_ms;
    uint64_t r = mix64(e->opts.challenge_seed ^ mix64(n->id) ^ n->ch.seq);
    return iv / 2 + (iv ? r % (iv + 1) : 0);
}

/* Challenge `seq` failed or passed (`unverified`: the claims that failed). */
static void conclude(rz_engine *e, rz__enode *n, uint32_t failed)
{
    n->ch.pending = false;
    n->ch.deadline = 0;
    n->ch.next_due = e->now + next_interval(e, n);
    n->unverified = failed & n->claims;
    if (failed)
        n->rec.challenges_failed++;
    else
        n->rec.challenges_passed++;
    rz__engine_touch_node(e, n);
    sync_trust(e, n);
}

int rz_engine_node_challenge(rz_engine *e, uint64_t node, uint64_t now_ms,
                             char **json)
{
    if (!json)
        return rz__error(RZ_EINVAL, "no output pointer");
    *json = NULL;
    int rc;
    rz__enode *n = live(e, node, &rc);
    if (!n)
        return rc;
    if (!challenges_on(e))
        return rz__error(RZ_ENOENT, "challenges are off");
    if (!n->ch.pending && now_ms < n->ch.next_due)
        return rz__error(RZ_ENOENT, "no challenge due for node %llu",
                         (unsigned long long)node);
    if ((rc = rz__engine_begin(e, now_ms)) != RZ_OK)
        return rc;
    bool issue = !n->ch.pending;
    uint32_t seq = issue ? n->ch.seq + 1 : n->ch.seq;
    chal c;
    chal_of(e, n, seq, &c);
    char *s = chal_json(&c, seq);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    if (issue) {
        n->ch.seq = seq;
        n->ch.pending = true;
        n->ch.deadline = now_ms + c.limit_ms;
        rz__engine_touch_node(e, n);
        rc = rz__engine_commit_call(e, RZ_OK);
        if (rc != RZ_OK) {
            rz_free(s);
            return rc;
        }
    }
    *json = s;
    return RZ_OK;
}

/* "cpu", "memory", "gpu" of the answer: the claims whose answer is wrong. */
static uint32_t check(const chal *c, uint32_t claims, const cJSON *a)
{
    uint32_t failed = 0;
    const cJSON *v;
    char want[65];
    unsigned char d[32];
    if (claims & RZ_CAP_CPU) {
        v = cJSON_GetObjectItemCaseSensitive(a, "cpu");
        cpu_chain(c->nonce, c->iterations, d);
        hex(d, 32, want);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, want) != 0)
            failed |= RZ_CAP_CPU;
    }
    if (claims & RZ_CAP_MEMORY) {
        v = cJSON_GetObjectItemCaseSensitive(a, "memory");
        uint64_t seed = seed_of(c->nonce);
        hex64(memory_walk(seed, (uint64_t)c->mb << 17, NULL), want);
        if (!c->mb || !cJSON_IsString(v) || strcmp(v->valuestring, want) != 0)
            failed |= RZ_CAP_MEMORY;
    }
    if (claims & RZ_CAP_GPU) {
        v = cJSON_GetObjectItemCaseSensitive(a, "gpu");
        gpu_product(seed_of(c->nonce), c->gpu_n, d);
        hex(d, 32, want);
        if (!cJSON_IsString(v) || strcmp(v->valuestring, want) != 0)
            failed |= RZ_CAP_GPU;
    }
    return failed;
}

int rz_engine_node_answer(rz_engine *e, uint64_t node, const char *answer_json,
                          size_t len, uint64_t now_ms, int *passed)
{
    if (passed)
        *passed = 0;
    int rc;
    rz__enode *n = live(e, node, &rc);
    if (!n)
        return rc;
    if ((rc = rz__engine_begin(e, now_ms)) != RZ_OK)
        return rc;
    cJSON *a = answer_json ? cJSON_ParseWithLength(answer_json, len) : NULL;
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(a, "seq");
    if (!n->ch.pending || !cJSON_IsNumber(seq) ||
        seq->valuedouble != (double)n->ch.seq) {
        cJSON_Delete(a);
        return rz__error(RZ_ENOENT, "node %llu has no outstanding challenge "
                         "of that number", (unsigned long long)node);
    }
    chal c;
    chal_of(e, n, n->ch.seq, &c);
    uint32_t failed = !cJSON_IsObject(a) || now_ms > n->ch.deadline
                    ? n->claims : check(&c, n->claims, a);
    cJSON_Delete(a);
    conclude(e, n, failed);
    if (passed)
        *passed = failed == 0;
    return rz__engine_commit_call(e, RZ_OK);
}

/* When a node's outstanding challenge is late; for a node with a verified
 * claim whose next one fell due but was not fetched, the same time counted
 * from when it fell due (it cannot keep a claim verified by not asking).
 * UINT64_MAX: never. */
static uint64_t late_after(const rz_engine *e, const rz__enode *n)
{
    if (n->state != RZ_NODE_ACTIVE || !challenges_on(e))
        return UINT64_MAX;
    if (n->ch.pending)
        return n->ch.deadline;
    if (n->unverified == n->claims)   /* nothing to lose by not asking */
        return UINT64_MAX;
    chal c;
    chal_params(e, n, &c);
    return n->ch.next_due + c.limit_ms;
}

void rz__verify_tick(rz_engine *e)
{
    for (size_t i = 0; i < e->n_nodes; i++) {
        rz__enode *n = &e->nodes[i];
        if (e->now > late_after(e, n)) {
            if (!n->ch.pending)
                n->ch.seq++;   /* the one it did not fetch */
            conclude(e, n, n->claims);   /* unanswered: nothing verified */
        }
    }
}

uint64_t rz__verify_next(const rz_engine *e)
{
    uint64_t t = UINT64_MAX;
    for (size_t i = 0; i < e->n_nodes; i++) {
        uint64_t d = late_after(e, &e->nodes[i]);
        if (d != UINT64_MAX && d + 1 < t)
            t = d + 1;
    }
    return t;
}

int rz_engine_node_trust_get(const rz_engine *e, uint64_t node,
                             rz_engine_node_trust *out)
{
    const rz__enode *n = e ? rz__engine_node_const(e, node) : NULL;
    if (!out || !n)
        return rz__error(RZ_ENOENT, "no node %llu", (unsigned long long)node);
    memset(out, 0, sizeof *out);
    out->record = n->rec;
    out->reputation = rz_engine_reputation(&n->rec);
    out->claims = n->claims;
    out->unverified = n->unverified;
    out->challenge_deadline_ms = n->ch.pending ? n->ch.deadline : 0;
    out->state = !challenges_on(e) ? RZ_VERIFY_OFF
               : !n->unverified ? RZ_VERIFY_VERIFIED
               : n->ch.pending ? RZ_VERIFY_PENDING : RZ_VERIFY_UNVERIFIED;
    return RZ_OK;
}

/* ---- The node's side ---- */

static int parse_hex32(const char *s, unsigned char out[32])
{
    size_t bin_len = 0;
    if (!s || strlen(s) != 64 ||
        sodium_hex2bin(out, 32, s, 64, NULL, &bin_len, NULL) != 0 ||
        bin_len != 32)
        return rz__error(RZ_EINVAL, "challenge: \"nonce\" must be 64 hex digits");
    return RZ_OK;
}

static int member_u32(const cJSON *o, const char *obj, const char *k,
                      uint32_t max, uint32_t *out)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, obj);
    *out = 0;
    if (!x)
        return RZ_OK;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x, k);
    if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > max ||
        v->valuedouble != floor(v->valuedouble))
        return rz__error(RZ_EINVAL, "challenge: \"%s.%s\" must be a whole "
                         "number from 1 to %u", obj, k, max);
    *out = (uint32_t)v->valuedouble;
    return RZ_OK;
}

int rz_challenge_answer(const char *challenge_json, size_t len,
                        char **answer_json)
{
    if (!answer_json)
        return rz__error(RZ_EINVAL, "no output pointer");
    *answer_json = NULL;
    cJSON *c = challenge_json ? cJSON_ParseWithLength(challenge_json, len) : NULL;
    if (!cJSON_IsObject(c)) {
        cJSON_Delete(c);
        return rz__error(RZ_EINVAL, "challenge: not a JSON object");
    }
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(c, "seq");
    const cJSON *nonce = cJSON_GetObjectItemCaseSensitive(c, "nonce");
    chal ch;
    memset(&ch, 0, sizeof ch);
    int rc = cJSON_IsNumber(seq) && seq->valuedouble >= 0 &&
             seq->valuedouble <= UINT32_MAX
           ? parse_hex32(cJSON_IsString(nonce) ? nonce->valuestring : NULL,
                         ch.nonce)
           : rz__error(RZ_EINVAL, "challenge: \"seq\" must be a number");
    if (rc == RZ_OK)
        rc = member_u32(c, "cpu", "iterations", MAX_ITERATIONS, &ch.iterations);
    if (rc == RZ_OK)
        rc = member_u32(c, "memory", "mb", MAX_MEMORY_MB, &ch.mb);
    if (rc == RZ_OK)
        rc = member_u32(c, "gpu", "n", GPU_N, &ch.gpu_n);
    double seqv = cJSON_IsNumber(seq) ? seq->valuedouble : 0;
    cJSON_Delete(c);
    if (rc != RZ_OK)
        return rc;
    cJSON *a = cJSON_CreateObject();
    bool ok = a && cJSON_AddNumberToObject(a, "seq", seqv);
    char h[65];
    unsigned char d[32];
    uint64_t seed = seed_of(ch.nonce);
    if (ok && ch.iterations) {
        cpu_chain(ch.nonce, ch.iterations, d);
        hex(d, 32, h);
        ok = cJSON_AddStringToObject(a, "cpu", h) != NULL;
    }
    if (ok && ch.mb) {
        uint64_t words = (uint64_t)ch.mb << 17;
        uint64_t *buf = rz__malloc(words * sizeof *buf);
        if (buf) {   /* none: the memory claim fails, honestly */
            for (uint64_t i = 0; i < words; i++)
                buf[i] = pattern(seed, i);
            hex64(memory_walk(seed, words, buf), h);
            free(buf);
            ok = cJSON_AddStringToObject(a, "memory", h) != NULL;
        }
    }
    if (ok && ch.gpu_n) {
        gpu_product(seed, ch.gpu_n, d);
        hex(d, 32, h);
        ok = cJSON_AddStringToObject(a, "gpu", h) != NULL;
    }
    char *s = ok ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    *answer_json = s;
    return RZ_OK;
}

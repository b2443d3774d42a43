/* Verification routes: a node fetches and answers its capability
 * challenge; nodes and jobs show the verification state and reputation
 * the engine keeps (docs/node.md, "Verification"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orch.h"

static cJSON *cap_list(uint32_t bits)
{
    cJSON *a = cJSON_CreateArray();
    if (bits & RZ_CAP_CPU) cJSON_AddItemToArray(a, cJSON_CreateString("cpu"));
    if (bits & RZ_CAP_MEMORY) cJSON_AddItemToArray(a, cJSON_CreateString("memory"));
    if (bits & RZ_CAP_GPU) cJSON_AddItemToArray(a, cJSON_CreateString("gpu"));
    return a;
}

cJSON *verify_json(orch *o, uint64_t node, bool full)
{
    rz_engine_node_trust t;
    if (rz_engine_node_trust_get(o->e, node, &t) != RZ_OK)
        return cJSON_CreateNull();
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "state", rz_verify_state_name(t.state));
    cJSON_AddNumberToObject(v, "reputation", t.reputation);
    cJSON_AddItemToObject(v, "unverified", cap_list(t.unverified));
    if (!full)
        return v;
    cJSON_AddItemToObject(v, "claims", cap_list(t.claims));
    cJSON *r = cJSON_AddObjectToObject(v, "record");
    const rz_engine_record *x = &t.record;
    cJSON_AddNumberToObject(r, "succeeded", (double)x->succeeded);
    cJSON_AddNumberToObject(r, "failed", (double)x->failed);
    cJSON_AddNumberToObject(r, "declined", (double)x->declined);
    cJSON_AddNumberToObject(r, "lost", (double)x->lost);
    cJSON_AddNumberToObject(r, "challenges_passed", (double)x->challenges_passed);
    cJSON_AddNumberToObject(r, "challenges_failed", (double)x->challenges_failed);
    cJSON_AddNumberToObject(r, "disagreed", (double)x->disagreed);
    return v;
}

/* The node of the path, which must be the caller (admin: any). */
static bool path_node(req *q, uint64_t *node)
{
    if (!param_u64(q, 0, node))
        return false;
    rz_engine_node_info ni;
    if ((q->who.kind == P_NODE && q->who.node != *node) ||
        rz_engine_node_get(q->o->e, *node, &ni) != RZ_OK) {
        reply_error(q, RZ_ENOENT, "no node %llu", (unsigned long long)*node);
        return false;
    }
    return true;
}

void r_node_challenge_get(req *q)
{
    uint64_t node;
    if (!path_node(q, &node))
        return;
    char *json = NULL;
    int rc = rz_engine_node_challenge(q->o->e, node, orch_now_ms(), &json);
    if (rc == RZ_ENOENT) {   /* none due */
        reply_text(q, 204, NULL, NULL, 0);
        return;
    }
    cJSON *doc = rc == RZ_OK ? cJSON_Parse(json) : NULL;
    rz_free(json);
    if (!doc) {
        reply_rz(q, rc == RZ_OK ? RZ_ENOMEM : rc);
        return;
    }
    reply_json(q, 200, doc);
}

void r_node_challenge_answer(req *q)
{
    static const char *const fields[] = { "seq", "cpu", "memory", "gpu", NULL };
    uint64_t node, seq;
    const char *s;
    if (!path_node(q, &node) || !body_fields(q, fields) ||
        !body_u64(q, "seq", true, UINT32_MAX, &seq, NULL) ||
        !body_str(q, "cpu", false, &s) || !body_str(q, "memory", false, &s) ||
        !body_str(q, "gpu", false, &s))
        return;
    char *text = cJSON_PrintUnformatted(q->body);
    int passed = 0;
    int rc = text ? rz_engine_node_answer(q->o->e, node, text, strlen(text),
                                          orch_now_ms(), &passed) : RZ_ENOMEM;
    free(text);
    if (rc != RZ_OK) {
        reply_rz(q, rc);
        return;
    }
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddBoolToObject(doc, "passed", passed);
    cJSON_AddItemToObject(doc, "verification", verify_json(q->o, node, false));
    reply_json(q, 200, doc);
}

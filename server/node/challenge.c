/* The built-in challenge runner: the orchestrator checks a node's claimed
 * CPU, memory and GPUs with a small job of its own (docs/node.md,
 * "Verification"); the node fetches it and answers with the library's
 * rz_challenge_answer. Not a module: nothing to install or trust. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent.h"

/* One at a time: the poller (after registering) and the heartbeat thread
 * both ask, and a second answer to the same challenge would be refused. */
static pthread_mutex_t one = PTHREAD_MUTEX_INITIALIZER;

static void challenge_once(agent *a)
{
    uint64_t node = 0, gen = 0;
    rz_client *c = agent_client(a, &node, &gen);
    if (!c)
        return;
    char path[80];
    snprintf(path, sizeof path, "/api/v1/nodes/%" PRIu64 "/challenge", node);
    long status = 0;
    cJSON *ch = NULL;
    int rc = node_call(c, "GET", path, NULL, 0, &status, &ch);
    agent_note(a, rc, gen);
    char *text = rc == RZ_OK && status == 200 && ch ? cJSON_PrintUnformatted(ch)
                                                    : NULL;
    char *answer = NULL;
    cJSON *body = NULL, *reply = NULL;
    if (text && rz_challenge_answer(text, strlen(text), &answer) == RZ_OK &&
        (body = cJSON_Parse(answer)) != NULL) {
        rc = node_call(c, "POST", path, body, 0, &status, &reply);
        /* A refusal here (the challenge expired meanwhile) says nothing
         * about the registration: only an outage is noted. */
        if (rc == RZ_ECONNECT)
            agent_note(a, rc, gen);
        const cJSON *passed = cJSON_GetObjectItemCaseSensitive(reply, "passed");
        if (rc == RZ_OK && cJSON_IsBool(passed)) {
            pthread_mutex_lock(&a->mu);
            snprintf(a->challenge, sizeof a->challenge, "%s",
                     cJSON_IsTrue(passed) ? "passed" : "failed");
            pthread_mutex_unlock(&a->mu);
        }
        if (rc == RZ_OK && !a->o->quiet && !cJSON_IsTrue(passed))
            fprintf(stderr, "rhizos-node: the orchestrator did not verify this "
                    "node's claims (its challenge was failed)\n");
    } else if (text) {
        fprintf(stderr, "rhizos-node: cannot answer the orchestrator's "
                "challenge: %s\n", rz_error_last()->message);
    }
    cJSON_Delete(reply);
    cJSON_Delete(body);
    rz_free(answer);
    cJSON_free(text);
    cJSON_Delete(ch);
    agent_client_put(a, c, gen);
}

void agent_challenge(agent *a)
{
    if (pthread_mutex_trylock(&one) != 0)
        return;   /* the other thread is answering it */
    challenge_once(a);
    pthread_mutex_unlock(&one);
}

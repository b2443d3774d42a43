/* libFuzzer target: an assignment as rhizos-node receives it (the CBOR body
 * of GET /api/v1/nodes/{id}/jobs), through everything the node checks
 * before it runs one: the wire decoding, the module (resolved in the
 * example registry, its digest compared), an ad-hoc image, sealed
 * credentials opened with the node's key. Nothing is run (job_vet).
 * The first byte picks the form: even, CBOR; odd, JSON text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "agent.h"

#ifndef RZ_SOURCE_ROOT
#define RZ_SOURCE_ROOT "."
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static agent A;
static node_opts O;
static job_slot S;
static char dir[64] = "/tmp/rz-fuzz-node-XXXXXX";

static void setup(void)
{
    if (sodium_init() < 0 || !mkdtemp(dir))
        abort();
    char err[256];
    if (node_keys_create(dir, 0, err, sizeof err) != 0 ||
        node_keys_load(&A.keys, dir, err, sizeof err) != 0)
        abort();
    node_config_defaults(&A.cfg);
    /* An engine that is not there: a docker module is refused at once,
     * without reaching a real container engine on this machine. */
    if (node_config_set_container_host(&A.cfg, "unix:///nonexistent/rz-fuzz.sock", err,
                                       sizeof err) != 0)
        abort();
    O.data_dir = dir;
    A.o = &O;
    if (rz_registry_new(&A.reg) != RZ_OK ||
        rz_registry_add_dir(A.reg, RZ_SOURCE_ROOT "/examples/modules", NULL) != RZ_OK)
        abort();
    snprintf(A.url, sizeof A.url, "http://127.0.0.1:8080");
    pthread_mutex_init(&A.mu, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    char *json = NULL;
    if (data[0] % 2 == 0) {
        if (rz_wire_decode(data + 1, size - 1, &json) != RZ_OK)
            return 0;
    } else {
        json = malloc(size);
        if (!json)
            return 0;
        memcpy(json, data + 1, size - 1);
        json[size - 1] = '\0';
    }
    cJSON *asg = cJSON_Parse(json);
    free(json);
    if (!cJSON_IsObject(asg)) {
        cJSON_Delete(asg);
        return 0;
    }
    memset(&S, 0, sizeof S);
    S.a = &A;
    S.job = 42;
    S.attempt = 1;
    S.assignment = asg;
    char why[400];
    const char *no = job_vet(&A, &S, why, sizeof why);
    if (no && !*no)
        abort();   /* a refusal says why */
    cJSON_Delete(asg);
    return 0;
}

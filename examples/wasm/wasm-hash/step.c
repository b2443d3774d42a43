/* A demo WASI step (issue 23): reads the request from stdin (or
 * /rz/in/request.json), hashes inputs.text with FNV-1a `config.rounds`
 * times (a hash chain: each round hashes the previous digest), and answers
 * {"hash", "rounds", "bytes"} on stdout. Built for wasm32-wasi by meson
 * when clang can target it (examples/wasm/meson.build).
 *
 * config.mode picks a misbehaviour for the tests: "escape" opens a path
 * outside the preopened folders, "socket" tries a socket, "grow" allocates
 * until it fails, "spin" loops forever, "secret" reads
 * /run/secrets/<config.secret_name> and prints it to stderr, "file" answers
 * through /rz/out/outputs.json instead of stdout, "env" answers with the
 * RZ_* variables it sees, "events" runs as a service that emits
 * config.rounds events. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wasm_request.h"

static char *read_all(FILE *f, size_t *len)
{
    char *buf = malloc(MAX_REQUEST + 1);
    if (!buf)
        return NULL;
    *len = fread(buf, 1, MAX_REQUEST, f);
    buf[*len] = '\0';
    return buf;
}

/* A service (kind: service, ready: line): ready, then config.rounds
 * events, each line flushed as a service's must be. */
static int service(const char *req)
{
    long n = find_num(req, "rounds", 3);
    printf("{\"ready\": true}\n");
    fflush(stdout);
    for (long i = 1; i <= n; i++) {
        printf("{\"event\": \"tick\", \"id\": \"t%ld\", \"data\": {\"n\": %ld}}\n",
               i, i);
        fflush(stdout);
    }
    fprintf(stderr, "ticked %ld times\n", n);
    return 0;
}

static int misbehave(const char *mode, const char *req)
{
    if (strcmp(mode, "escape") == 0) {
        FILE *f = fopen("/etc/passwd", "r");
        fprintf(stderr, "open /etc/passwd: %s\n", f ? "opened" : strerror(errno));
        return f ? 0 : 3;
    }
    if (strcmp(mode, "socket") == 0) {
        /* WASI preview1 has no socket(); a descriptor it never opened is
         * all a module can try to accept on. */
        int fd = accept(3, NULL, NULL);
        fprintf(stderr, "accept: %s\n", fd >= 0 ? "got a connection"
                                                : strerror(errno));
        return fd >= 0 ? 0 : 3;
    }
    if (strcmp(mode, "grow") == 0) {
        /* Chained, so the compiler cannot drop the allocations. */
        void **head = NULL;
        size_t total = 0;
        for (;;) {
            void **p = malloc(1u << 20);
            if (!p)
                break;
            memset(p, 1, 1u << 20);
            *p = head;
            head = p;
            total++;
        }
        fprintf(stderr, "malloc failed after %zu MiB (%p)\n", total,
                (void *)head);
        return 4;
    }
    if (strcmp(mode, "spin") == 0) {
        volatile uint64_t x = 0;
        for (;;)
            x++;
    }
    if (strcmp(mode, "secret") == 0) {
        char name[64], path[96], val[256] = "";
        if (!find_str(req, "secret_name", name, sizeof name))
            return 5;
        snprintf(path, sizeof path, "/run/secrets/%s", name);
        FILE *f = fopen(path, "r");
        if (!f || !fgets(val, sizeof val, f)) {
            fprintf(stderr, "%s: %s\n", path, strerror(errno));
            return 5;
        }
        fclose(f);
        fprintf(stderr, "the secret is %s\n", val);
        printf("{\"secret_len\": %zu}\n", strlen(val));
        return 0;
    }
    if (strcmp(mode, "events") == 0)
        return service(req);
    if (strcmp(mode, "env") == 0) {
        const char *names[] = { "RZ_RUN_ID", "RZ_STEP_ID", "RZ_ATTEMPT",
                                "RZ_OUTPUT", "RZ_CRED_API_FILE", "RZ_CRED_API",
                                "HOME" };
        printf("{");
        for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
            const char *v = getenv(names[i]);
            printf("%s\"%s\": ", i ? ", " : "", names[i]);
            printf(v ? "\"%s\"" : "null", v);
        }
        printf("}\n");
        return 0;
    }
    return -1;
}

int main(void)
{
    size_t len = 0;
    char *req = read_all(stdin, &len);
    if (!req || len == 0) {
        /* An empty stdin: the same request is in the scratch folder. */
        FILE *f = fopen("/rz/in/request.json", "r");
        free(req);
        req = f ? read_all(f, &len) : NULL;
        if (f)
            fclose(f);
    }
    if (!req) {
        fprintf(stderr, "no request\n");
        return 2;
    }
    char mode[32] = "", text[4096] = "";
    find_str(req, "mode", mode, sizeof mode);
    if (*mode && strcmp(mode, "file") != 0) {
        int rc = misbehave(mode, req);
        if (rc >= 0)
            return rc;
        fprintf(stderr, "unknown mode '%s'\n", mode);
        return 2;
    }
    find_str(req, "text", text, sizeof text);
    long rounds = find_num(req, "rounds", 1);
    uint64_t h = fnv1a(text, strlen(text), FNV_OFFSET);
    for (long i = 1; i < rounds; i++)
        h = fnv1a(&h, sizeof h, FNV_OFFSET);
    fprintf(stderr, "hashed %zu bytes, %ld rounds\n", strlen(text), rounds);
    FILE *out = stdout;
    if (strcmp(mode, "file") == 0 && !(out = fopen("/rz/out/outputs.json", "w"))) {
        fprintf(stderr, "/rz/out/outputs.json: %s\n", strerror(errno));
        return 2;
    }
    fprintf(out, "{\"hash\": \"%016llx\", \"rounds\": %ld, \"bytes\": %zu}\n",
            (unsigned long long)h, rounds, strlen(text));
    free(req);
    return out == stdout ? 0 : (fclose(out) == 0 ? 0 : 2);
}

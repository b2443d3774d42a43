/* Deploy a flow to an orchestrator and follow it to the end: the client API
 * (rhizos/client.h) on the installed library.
 * Build: cc deploy.c $(pkg-config --cflags --libs rhizos) -o deploy
 * Run:   RHIZOS_URL=http://127.0.0.1:8080 RHIZOS_API_KEY=rzk_... ./deploy FLOW
 * Exit status 0 only when the deployment succeeded. */
#define _POSIX_C_SOURCE 200809L   /* strdup */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rhizos/rhizos.h>

/* The whole file, NUL-terminated; NULL on error. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = '\0';
        *len = (size_t)n;
    } else {
        free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

/* The first "status" field of a status object (the deployment's own, per
 * docs/api.md), by a plain search: enough for an example; a real program
 * would parse the JSON. */
static void status_of(const char *json, char *out, size_t cap)
{
    const char *p = strstr(json, "\"status\"");
    size_t n = 0;
    if (p) {
        p += strlen("\"status\"");
        p += strspn(p, " \t\r\n:");
        if (*p == '"')
            for (p++; p[n] && p[n] != '"' && n + 1 < cap; n++)
                ;
        memcpy(out, p, n);
    }
    out[n] = '\0';
}

typedef struct follow {
    char status[32];
    char *last;          /* the latest status object */
} follow;

static int on_event(void *ud, const char *event, const char *data)
{
    follow *f = ud;
    char *copy = strdup(data);
    if (!copy)
        return RZ_ENOMEM;
    free(f->last);
    f->last = copy;
    status_of(data, f->status, sizeof f->status);
    printf("%s: %s\n", event, f->status);
    fflush(stdout);
    return 0;
}

static int fail(const char *what, int rc, rz_diags *diags)
{
    char *text = NULL;
    if (diags && rz_diags_count(diags) && rz_diags_to_text(diags, &text) == RZ_OK)
        fputs(text, stderr);
    fprintf(stderr, "%s: %s (%s)\n", what,
            rz_error_last()->code == rc ? rz_error_last()->message : rz_strerror(rc),
            rz_status_name(rc));
    rz_free(text);
    return 1;
}

int main(int argc, char **argv)
{
    const char *url = getenv("RHIZOS_URL"), *key = getenv("RHIZOS_API_KEY");
    if (argc != 2 || !url || !key) {
        fprintf(stderr, "usage: RHIZOS_URL=URL RHIZOS_API_KEY=KEY %s FLOW\n", argv[0]);
        return 2;
    }
    size_t len = 0;
    char *text = read_file(argv[1], &len);
    if (!text) {
        perror(argv[1]);
        return 1;
    }
    rz_client *c = NULL;
    rz_diags *diags = NULL;
    follow f = { "", NULL };
    uint64_t dep = 0;
    char path[64];
    int status = 1;
    int rc = rz_diags_new(&diags);
    if (rc == RZ_OK)
        rc = rz_client_new(&c, url, key);
    if (rc == RZ_OK)
        rc = rz_client_deploy(c, text, len, NULL, NULL, &dep, diags);
    if (rc != RZ_OK) {
        status = fail("deploy", rc, diags);
        goto done;
    }
    printf("deployment %" PRIu64 "\n", dep);
    snprintf(path, sizeof path, "/api/v1/flows/%" PRIu64 "/events", dep);
    rc = rz_client_events(c, path, 0, on_event, &f);
    if (rc < 0) {
        status = fail("watch", rc, NULL);
        goto done;
    }
    if (f.last)
        printf("%s\n", f.last);
    status = strcmp(f.status, "succeeded") == 0 ? 0 : 1;
done:
    free(f.last);
    rz_client_free(c);
    rz_diags_free(diags);
    free(text);
    return status;
}

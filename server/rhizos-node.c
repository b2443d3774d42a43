/* rhizos-node — the node agent: what this machine offers the network. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rhizos/rhizos.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

typedef struct opts {
    int json;
    const char *data_dir;
} opts;

static void usage(FILE *out)
{
    fprintf(out,
"usage: rhizos-node [OPTIONS] COMMAND\n"
"\n"
"  info          the detected hardware: a summary, or with --json the node\n"
"                capabilities this node advertises (docs/hardware.md)\n"
"  benchmark     measure CPU and memory bandwidth (about 2 s) and store the\n"
"                result for `info` in DATA/node-benchmark.json\n"
"  init | register | start   not available yet (they need the orchestrator)\n"
"\n"
"Options:\n"
"  --json        machine-readable output\n"
"  --data DIR    where the node keeps its files (default $XDG_DATA_HOME/rhizos)\n"
"  -h, --help    this help\n");
}

/* --data, else $XDG_DATA_HOME/rhizos, else ~/.local/share/rhizos. */
static void data_dir(const opts *o, char *buf, size_t n)
{
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (o->data_dir)
        snprintf(buf, n, "%s", o->data_dir);
    else if (xdg && *xdg)
        snprintf(buf, n, "%s/rhizos", xdg);
    else
        snprintf(buf, n, "%s/.local/share/rhizos", home ? home : ".");
}

static int mkdirs(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int r = mkdir(path, 0700);
        *p = '/';
        if (r != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "rhizos-node: %s: %s\n", what,
            *rz_error_last()->message ? rz_error_last()->message : rz_strerror(rc));
}

/* A stored benchmark, if there is one, joins the capabilities. */
static void attach_benchmark(rz_caps *caps, const char *dir)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/node-benchmark.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    rz_hw_bench b;
    if (rz_hw_bench_parse(&b, buf, n) == RZ_OK)
        rz_caps_set_benchmark(caps, &b);
    else
        fprintf(stderr, "rhizos-node: warning: ignoring %s: %s\n", path,
                rz_error_last()->message);
}

static int cmd_info(const opts *o)
{
    char dir[PATH_MAX];
    data_dir(o, dir, sizeof dir);
    struct stat st;
    rz_hw_opts ho = RZ_HW_OPTS_INIT;
    ho.data_dir = stat(dir, &st) == 0 ? dir : ".";
    rz_caps *caps;
    int rc = rz_hw_detect(&caps, &ho);
    if (rc != RZ_OK) {
        fail("detecting hardware", rc);
        return EXIT_FAILED;
    }
    attach_benchmark(caps, dir);
    char *text = NULL;
    rc = o->json ? rz_caps_to_json(caps, 1, &text) : rz_caps_to_text(caps, &text);
    rz_caps_free(caps);
    if (rc != RZ_OK) {
        fail("formatting", rc);
        return EXIT_FAILED;
    }
    fputs(text, stdout);
    if (o->json)
        fputc('\n', stdout);
    rz_free(text);
    return EXIT_OK;
}

static int store_benchmark(const char *dir, const char *json)
{
    char d[PATH_MAX], path[PATH_MAX + 32], tmp[PATH_MAX + 40];
    snprintf(d, sizeof d, "%s", dir);
    if (mkdirs(d) != 0) {
        fprintf(stderr, "rhizos-node: cannot create %s: %s\n", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/node-benchmark.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f || fprintf(f, "%s\n", json) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "rhizos-node: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int cmd_benchmark(const opts *o)
{
    rz_hw_bench b;
    int rc = rz_hw_benchmark(&b, 1.5);
    if (rc != RZ_OK) {
        fail("benchmark", rc);
        return EXIT_FAILED;
    }
    char *json = NULL, dir[PATH_MAX];
    if (rz_hw_bench_to_json(&b, &json) != RZ_OK) {
        fail("benchmark", RZ_ENOMEM);
        return EXIT_FAILED;
    }
    data_dir(o, dir, sizeof dir);
    int stored = store_benchmark(dir, json);
    if (o->json)
        printf("%s\n", json);
    else
        printf("cpu     %.0f Mops/s (one thread, integer + float)\n"
               "memory  %.0f MB/s (memcpy of 64 MiB)\n"
               "took    %.2f s; stored in %s/node-benchmark.json\n",
               b.cpu_mops, b.memory_mbps, b.seconds, dir);
    rz_free(json);
    return stored == 0 ? EXIT_OK : EXIT_FAILED;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        { "json", no_argument, NULL, 'j' },
        { "data", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    opts o = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        switch (ch) {
        case 'j': o.json = 1; break;
        case 'd': o.data_dir = optarg; break;
        case 'h': usage(stdout); return EXIT_OK;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[optind];
    if (strcmp(cmd, "info") == 0)
        return cmd_info(&o);
    if (strcmp(cmd, "benchmark") == 0)
        return cmd_benchmark(&o);
    if (strcmp(cmd, "init") == 0 || strcmp(cmd, "register") == 0 ||
        strcmp(cmd, "start") == 0) {
        fprintf(stderr, "rhizos-node: %s: not available yet: it needs the "
                "orchestrator, which is not built yet\n", cmd);
        return EXIT_USAGE;
    }
    fprintf(stderr, "rhizos-node: unknown command '%s'\n", cmd);
    usage(stderr);
    return EXIT_USAGE;
}

/* rhizos ui: the web console on this machine. The server is a program of
 * its own (rhizos-ui, server/ui/) that this command execs with the options
 * resolved as every command resolves them: a small HTTP server needs
 * libevent, and keeping it there keeps libevent off every other command's
 * start-up (as libcurl and hwloc are dlopen'ed only when used). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define UI_PROGRAM "rhizos-ui"

void cli_ui_usage(void)
{
    printf("usage: rhizos ui [--listen 127.0.0.1:PORT] [--data DIR] [--open]\n"
           "                 [--modules DIR]... [--ui-dir DIR] [--jobs N] [--no-sandbox]\n"
           "\n"
           "The web console on this machine: the builder (palette, canvas, forms,\n"
           "validation, cost) and the runs of --data, followed live. Deploy runs the\n"
           "flow here, as `rhizos flow run` does, and `rhizos flow runs` lists it.\n"
           "Nodes, jobs and accounts need an orchestrator and are not shown.\n"
           "\n"
           "  --listen ADDR:PORT  a loopback address only (default 127.0.0.1:7190;\n"
           "                      when taken and not given, a free port)\n"
           "  --open              open the address in the desktop's browser\n"
           "  --ui-dir DIR        the console's built files (default: installed/built)\n"
           "\n"
           "It prints http://127.0.0.1:PORT/#token=...: a token made at each start\n"
           "that every API request must carry; the console takes it from the\n"
           "address (and removes it from the address bar). Requests whose Host is\n"
           "not an IP address or localhost are refused (DNS rebinding). Flows whose\n"
           "steps need credentials are run with `rhizos flow run`. Ctrl-C stops the\n"
           "server and cancels the runs it started. docs/console.md.\n");
}

/* rhizos-ui beside this program (a build tree: ../server/), else the
 * installed one. */
static int find_program(char *out, size_t cap)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            static const char *const near[] = { "%s/" UI_PROGRAM,
                                                "%s/../server/" UI_PROGRAM };
            for (size_t i = 0; i < 2; i++) {
                snprintf(out, cap, near[i], self);
                if (access(out, X_OK) == 0)
                    return 0;
            }
        }
    }
    snprintf(out, cap, "%s/rhizos/" UI_PROGRAM, RZ_LIBEXECDIR);
    return access(out, X_OK);
}

int cli_ui(cli *c, const char *verb)
{
    (void)verb;
    if (c->nargs) {
        fprintf(stderr, "rhizos: ui takes no arguments (see rhizos ui --help)\n");
        return EXIT_USAGE;
    }
    char prog[PATH_MAX + 32];
    if (find_program(prog, sizeof prog) != 0) {
        fprintf(stderr, "rhizos: %s is not installed (looked in %s/rhizos)\n",
                UI_PROGRAM, RZ_LIBEXECDIR);
        return EXIT_FAILED;
    }
    char *data = cli_data_dir(c);
    const char *argv[16 + 2 * 32];
    size_t n = 0;
    argv[n++] = "rhizos ui";
    argv[n++] = "--data";
    argv[n++] = data;
    for (size_t i = 0; i < c->n_modules; i++) {
        argv[n++] = "--modules";
        argv[n++] = c->modules[i];
    }
    if (c->listen)
        argv[n++] = "--listen", argv[n++] = c->listen;
    if (c->ui_dir)
        argv[n++] = "--ui-dir", argv[n++] = c->ui_dir;
    if (c->jobs_arg)
        argv[n++] = "--jobs", argv[n++] = c->jobs_arg;
    if (c->container_host)
        argv[n++] = "--container-host", argv[n++] = c->container_host;
    if (c->no_sandbox)
        argv[n++] = "--no-sandbox";
    if (c->open)
        argv[n++] = "--open";
    argv[n] = NULL;
    if (!data)
        return EXIT_FAILED;
    fflush(NULL);
    execv(prog, (char *const *)argv);
    fprintf(stderr, "rhizos: cannot start %s: %s\n", prog, strerror(errno));
    free(data);
    return EXIT_FAILED;
}

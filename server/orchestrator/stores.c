/* The data directory's three stores (engine, ledger, auth) before anything
 * opens them: all present or none, each data.mdb as long as its meta page
 * says; and `rhizos-orchestrator check`, which adds the ledger's journal and
 * verify without writing anything. docs/ledger.md, "Recovery". */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "orch.h"

enum { ORCH_VERIFY_SAMPLE = 100000 };

static const char *const STORES[] = { "engine", "ledger", "auth" };
enum { N_STORES = sizeof STORES / sizeof STORES[0] };

/* A store holds state once its data.mdb has any bytes. */
static bool holds_state(const char *data, const char *store)
{
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s/data.mdb", data, store);
    return stat(path, &st) == 0 && st.st_size > 0;
}

int orch_stores_check(const char *data)
{
    bool held[N_STORES];
    size_t n_held = 0;
    for (size_t i = 0; i < N_STORES; i++)
        n_held += held[i] = holds_state(data, STORES[i]);
    /* A missing store would be made anew, empty, under the others' state:
     * jobs without their holds, accounts without their keys. */
    if (n_held && n_held < N_STORES) {
        for (size_t i = 0; i < N_STORES; i++)
            if (!held[i])
                fprintf(stderr, ORCH_NAME ": %s/%s/data.mdb is missing or "
                        "empty while the other stores hold state; refusing "
                        "to start (it would start empty). Restore the data "
                        "directory from a backup: docs/ledger.md, "
                        "\"Recovery\"\n", data, STORES[i]);
        return -1;
    }
    for (size_t i = 0; i < N_STORES; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", data, STORES[i]);
        if (rz_store_check_file(dir) != RZ_OK) {
            fprintf(stderr, ORCH_NAME ": %s\n", rz_error_last()->message);
            return -1;
        }
    }
    return 0;
}

int orch_stores_agree(rz_engine *e, const char *data, bool full)
{
    /* Never serve from stores that disagree: a job without its hold would
     * run unpaid. A ledger of up to ORCH_VERIFY_SAMPLE records is verified
     * whole anyway (well under a second); a bigger one by sample unless
     * --verify-on-open. */
    if ((full ? rz_engine_check(e)
              : rz_engine_check_sampled(e, ORCH_VERIFY_SAMPLE)) == RZ_OK)
        return 0;
    fprintf(stderr, ORCH_NAME ": %s: the engine and ledger stores fail their "
            "check (rz_engine_check): %s; refusing to start. Restore the data "
            "directory from a backup: docs/ledger.md, \"Recovery\"\n", data,
            rz_error_last()->message);
    return -1;
}

static int check_usage(FILE *f, int rc)
{
    fputs("usage: " ORCH_NAME " check --data DIR\n"
          "\n"
          "Check a stopped orchestrator's data directory without changing it:\n"
          "the engine, ledger and auth stores all there (or none), each\n"
          "data.mdb whole, the ledger's journal (damaged records with\n"
          "acknowledged batches after them, lost or cut-short journals) and\n"
          "every ledger invariant, and the audit log (its keyed chain and its\n"
          "end against the head the auth store keeps). Exit 0: no damage\n"
          "found; 1: damaged (the reason on stderr); 2: usage. The engine\n"
          "and ledger are also cross-checked at every start. Recovery:\n"
          "docs/ledger.md; of the audit log: docs/api.md.\n", f);
    return rc;
}

int orch_data_opts(int argc, char **argv, int operands, const char **data,
                   bool *compact, int (*usage)(FILE *, int))
{
    enum { O_DATA = 256, O_COMPACT, O_HELP };
    static const struct option longs[] = {
        { "data", required_argument, NULL, O_DATA },
        { "compact", no_argument, NULL, O_COMPACT },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 }
    };
    *data = NULL;
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longs, NULL)) != -1;) {
        switch (c) {
        case O_DATA: *data = optarg; break;
        case O_COMPACT:
            if (!compact)
                return usage(stderr, 2);
            *compact = true;
            break;
        case 'h': case O_HELP: return usage(stdout, 0);
        default: return usage(stderr, 2);
        }
    }
    return *data && argc - optind == operands ? -1 : usage(stderr, 2);
}

int orch_check_main(int argc, char **argv)
{
    const char *data;
    int ex = orch_data_opts(argc, argv, 0, &data, NULL, check_usage);
    if (ex >= 0)
        return ex;
    struct stat st;
    if (stat(data, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, ORCH_NAME " check: %s is not a directory\n", data);
        return 1;
    }
    if (orch_stores_check(data) != 0)
        return 1;
    if (!holds_state(data, "ledger")) {
        printf("%s: no state yet\n", data);
        return 0;
    }
    rz_ledger_opts lo = RZ_LEDGER_OPTS_INIT;
    lo.read_only = 1;
    rz_ledger *l;
    int rc = rz_ledger_open(&l, data, &lo);
    if (rc == RZ_OK) {
        rc = rz_ledger_verify(l);
        rz_ledger_close(l);
    }
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME " check: %s\n", rz_error_last()->message);
        return 1;
    }
    uint64_t records = 0;
    if (audit_check(data, NULL, &records, NULL, true) != 0) {
        fprintf(stderr, ORCH_NAME " check: %s\n", audit_error());
        return 1;
    }
    printf("%s: engine, ledger and auth stores whole; ledger journal and "
           "invariants checked; audit log of %llu records whole and at its "
           "head\n", data, (unsigned long long)records);
    return 0;
}

/* The auth store's tables this version reads, added where an older one
 * lacks them (a writer's open makes them, empty); readers open it
 * read-only and refuse a missing table. 0, or 1 said on stderr. */
static int migrate_auth(const char *data)
{
    if (!holds_state(data, "auth"))
        return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/auth", data);
    rz_auth *a;
    if (rz_auth_open(&a, dir) != RZ_OK) {
        fprintf(stderr, ORCH_NAME " migrate: %s\n", rz_error_last()->message);
        return 1;
    }
    rz_auth_close(a);
    return 0;
}

/* `migrate --data DIR`: bring a stopped orchestrator's stores to this
 * version's formats. The ledger is converted from cents to micro-dollars
 * at a writer's open (one transaction); job records are read in either
 * unit (their field names say which); the auth store gets the tables an
 * older version did not have. */
int orch_migrate_main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--data") != 0) {
        fputs("usage: " ORCH_NAME " migrate --data DIR\n"
              "\n"
              "Convert a stopped orchestrator's data directory to this version:\n"
              "ledger amounts from cents to micro-dollars (x 10,000, exactly, in\n"
              "one transaction), and the auth store's tables this version added.\n"
              "Starting the orchestrator on it does the same;\n"
              "readers (check, rhizos ledger) refuse an unconverted ledger.\n"
              "Exit 0: converted or already current; 1: refused (why on stderr).\n",
              argc == 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    const char *data = argv[2];
    if (orch_stores_check(data) != 0)
        return 1;
    if (!holds_state(data, "ledger")) {
        printf("%s: no state yet\n", data);
        return 0;
    }
    rz_ledger_opts lo = RZ_LEDGER_OPTS_INIT;
    lo.read_only = 1;
    rz_ledger *l;
    int rc = rz_ledger_open(&l, data, &lo);
    rz_ledger_close(l);
    bool cents = rc == RZ_EUNSUPPORTED;
    if (rc == RZ_OK || cents) {
        lo.read_only = 0;   /* the writer's lock: refused while a server runs */
        rc = rz_ledger_open(&l, data, &lo);
        if (rc == RZ_OK && cents)
            rc = rz_ledger_verify(l);
        if (rc == RZ_OK && migrate_auth(data) != 0) {
            rz_ledger_close(l);
            return 1;
        }
        rz_ledger_close(l);
    }
    if (rc != RZ_OK) {
        fprintf(stderr, ORCH_NAME " migrate: %s\n", rz_error_last()->message);
        return 1;
    }
    if (!cents) {
        printf("%s: the ledger already counts micro-dollars\n", data);
        return 0;
    }
    printf("%s: ledger converted from cents to micro-dollars\n", data);
    return 0;
}

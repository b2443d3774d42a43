/* Sub-flows (`flow: PATH`): loading and round trips of the key, the
 * expansion (ids, inputs, outputs, needs, when, three levels), and every
 * refusal located: cycles between files, missing or hostile paths, the
 * interface (inputs, outputs, status reads, connections), ids, depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "rhizos/flow.h"
#include "rhizos/module.h"

static char g_dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rz-subflow-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0700);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void dump(const rz_diags *d)
{
    char *t = NULL;
    if (rz_diags_to_text(d, &t) == RZ_OK && t)
        fputs(t, stderr);
    rz_free(t);
}

/* Load `name` from the folder and expand it; the status, the flow in *out
 * (NULL on failure), the diagnostics in *diags. */
static int expand(const char *name, rz_flow **out, rz_diags **diags)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    assert_int_equal(rz_diags_new(diags), RZ_OK);
    rz_flow *f = NULL;
    int rc = rz_flow_load(&f, path, RZ_FORMAT_AUTO, *diags);
    if (rc == RZ_OK)
        rc = rz_flow_expand(&f, NULL, *diags);
    if (rc != RZ_OK) {
        rz_flow_free(f);
        f = NULL;
    }
    *out = f;
    return rc;
}

/* Exactly one diagnostic in `file` (a name in the folder) at line:col
 * whose message contains `msg`. */
static void expect(const rz_diags *d, const char *file, uint32_t line, uint32_t col,
                   const char *msg)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", g_dir, file);
    size_t hits = 0;
    for (size_t i = 0; i < rz_diags_count(d); i++) {
        const rz_diag *x = rz_diags_get(d, i);
        if (x->line == line && x->column == col && strstr(x->message, msg) &&
            strcmp(x->file, path) == 0)
            hits++;
    }
    if (hits != 1) {
        fprintf(stderr, "want once: %s:%u:%u: %s\ngot:\n", path, line, col, msg);
        dump(d);
    }
    assert_int_equal(hits, 1);
}

static char *step_json(const rz_flow *f, const char *id)
{
    char *json = NULL;
    assert_int_equal(rz_flow_to_json(f, 0, &json, NULL), RZ_OK);
    const char *at = strstr(json, id);
    assert_non_null(at);
    char *copy = strdup(at);
    rz_free(json);
    return copy;
}

/* Step `id`'s JSON (or from any text, e.g. "\"outputs\"") has each of
 * `want` (NULL-terminated). */
static void expect_in(const rz_flow *f, const char *id, const char *const *want)
{
    char *j = step_json(f, id);
    for (; *want; want++)
        if (!strstr(j, *want)) {
            fprintf(stderr, "want in %s: %s\ngot: %s\n", id, *want, j);
            assert_non_null(strstr(j, *want));
        }
    free(j);
}

/* What one expanded step's JSON must hold. */
typedef struct step_has {
    const char *id;
    const char *want[3];
} step_has;

static void expect_steps(const rz_flow *f, const step_has *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        expect_in(f, t[i].id, t[i].want);
}

/* `name` expanded with no error: the flow; its diagnostics in *d. */
static rz_flow *expand_ok(const char *name, rz_diags **d)
{
    rz_flow *f;
    int rc = expand(name, &f, d);
    if (rc != RZ_OK)
        dump(*d);
    assert_int_equal(rc, RZ_OK);
    return f;
}

/* The flow's step ids are `ids`, in order. */
static void expect_ids(const rz_flow *f, const char *const *ids, size_t n)
{
    assert_int_equal(rz_flow_step_count(f), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(rz_flow_step_id(f, i), ids[i]);
}

/* Step `id` needs `need` alone. */
static void expect_one_need(const rz_flow *f, const char *id, const char *need)
{
    size_t n;
    const size_t *deps = rz_flow_step_deps(f, rz_flow_step_find(f, id), &n);
    assert_int_equal(n, 1);
    assert_int_equal(deps[0], rz_flow_step_find(f, need));
}

/* A builder-format child whose two nodes are joined by a connection. */
static const char *const BUILDER_CHILD =
    "{\"inputs\": {\"t\": {\"type\": \"string\"}}, \"nodes\": ["
    "{\"id\": \"a\", \"moduleId\": \"m\", \"inputs\": {\"x\": \"${{ inputs.t }}\"}},"
    "{\"id\": \"b\", \"moduleId\": \"m\"}], \"connections\": [{\"id\": \"c1\","
    "\"source\": {\"nodeId\": \"a\", \"port\": \"o\"},"
    "\"target\": {\"nodeId\": \"b\", \"port\": \"i\"}}],"
    "\"outputs\": {\"r\": \"${{ steps.b.outputs.r }}\"}}";

static const char *const LEAF =
    "flux: 1\nname: leaf\ninputs:\n  text: {type: string}\n"
    "steps:\n  say:\n    module: echo@1\n    inputs: {message: \"${{ inputs.text }}!\"}\n"
    "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n";

static const char *const MID =
    "flux: 1\nname: mid\ninputs:\n  n: {type: number}\n  label: {type: string, default: hi}\n"
    "steps:\n"
    "  a:\n    module: m@1\n    inputs: {v: \"${{ inputs.n }}\", w: \"x ${{ inputs.label }} {y}\"}\n"
    "    when: inputs.n > 1\n"
    "  b:\n    module: m@1\n    needs: [a]\n    inputs: {v: \"${{ steps.a.outputs.v }}\"}\n"
    "  c:\n    flow: ../leaf.yaml\n    needs: [b]\n"
    "    inputs: {text: \"${{ steps.b.outputs.v }}\"}\n"
    "outputs:\n  v: \"${{ steps.b.outputs.v }}\"\n  loud: \"${{ steps.c.outputs.loud }}\"\n"
    "  k: [1, 'two']\n";

static const char *const TOP =
    "flux: 1\nname: top\ninputs:\n  x: {type: number, default: 3}\n"
    "steps:\n"
    "  first:\n    module: m@1\n"
    "  mid:\n    flow: sub/mid.yaml\n    needs: [first]\n    when: \"${{ inputs.x != 0 }}\"\n"
    "    inputs: {n: \"${{ inputs.x }}\", label: \"v ${{ inputs.x }} {z}\"}\n"
    "  last:\n    module: m@1\n    needs: [mid]\n"
    "    inputs: {v: \"${{ steps.mid.outputs.loud }}\", k: \"${{ steps.mid.outputs.k[1] }}\"}\n"
    "outputs:\n  v: \"${{ steps.mid.outputs.v }}\"\n";

/* Three levels, inlined with their ids, values, needs and conditions. */
static void three_levels_expand(void **state)
{
    (void)state;
    put("leaf.yaml", LEAF);
    put("sub/mid.yaml", MID);
    put("top.yaml", TOP);
    rz_diags *d;
    rz_flow *f = expand_ok("top.yaml", &d);
    assert_int_equal(rz_diags_error_count(d), 0);
    const char *ids[] = {"first", "mid-a", "mid-b", "mid-c-say", "last"};
    expect_ids(f, ids, 5);
    /* Each inlined step names the sub-flow step it came from (nested: the
     * inner one, renamed), for a viewer to draw them together. */
    const char *groups[] = {NULL, "mid", "mid", "mid-c", NULL};
    for (size_t i = 0; i < 5; i++)
        if (groups[i])
            assert_string_equal(rz_flow_step_group(f, i), groups[i]);
        else
            assert_null(rz_flow_step_group(f, i));
    assert_null(rz_flow_step_group(f, 5));
    assert_null(rz_flow_step_group(NULL, 0));
    static const step_has has[] = {
        /* The child's input is the parent's value (a template as format());
         * the sub-flow step's when and needs joined in; its default where
         * not given. */
        {"\"mid-a\"", {"\"needs\":[\"first\"],\"inputs\":{\"v\":\"${{ (( inputs.x )) }}\","
                       "\"w\":\"x ${{ (format('v {0} {{z}}', ( inputs.x ))) }} {y}\"},"
                       "\"when\":\"${{ (( inputs.x != 0 )) && (((( inputs.x )) > 1)) }}\""}},
        {"\"mid-c-say\"", {"\"needs\":[\"mid-b\",\"first\"],\"inputs\":{\"message\":"
                           "\"${{ (( steps.mid-b.outputs.v )) }}!\"},"
                           "\"when\":\"${{ ( inputs.x != 0 ) }}\""}},
        /* A step after a sub-flow needs its final steps and reads its
         * outputs (a literal output as fromJSON). */
        {"\"last\"", {"\"needs\":[\"mid-c-say\"],\"inputs\":{\"v\":\"${{ (( (( "
                      "steps.mid-c-say.outputs.message )) )) }}\",\"k\":\"${{ (fromJSON("
                      "'[1,\\\"two\\\"]'))[1] }}\"}"}},
        {"\"outputs\"", {"\"v\":\"${{ (( steps.mid-b.outputs.v )) }}\""}},
    };
    expect_steps(f, has, sizeof has / sizeof has[0]);
    expect_one_need(f, "last", "mid-c-say");
    /* The expanded flow is an ordinary one: it round-trips and validates. */
    rz_flow_free(f);
    rz_diags_free(d);
}

/* The key through JSON, YAML and CBOR; the builder shape keeps it too. */
static void flow_key_round_trips(void **state)
{
    (void)state;
    const char *y = "flux: 1\nname: p\nsteps:\n  s:\n    flow: sub/child.yaml\n"
                    "    needs: [t]\n    inputs: {a: 1}\n    when: inputs.go\n"
                    "  t: {module: m}\n";
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f;
    assert_int_equal(rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, "p.yaml", d), RZ_OK);
    char *j = NULL, *yy = NULL, *j2 = NULL, *b = NULL, *b2 = NULL;
    unsigned char *cb = NULL;
    size_t n = 0;
    assert_int_equal(rz_flow_to_json(f, 0, &j, NULL), RZ_OK);
    assert_non_null(strstr(j, "\"s\":{\"flow\":\"sub/child.yaml\",\"needs\":[\"t\"]"));
    assert_int_equal(rz_flow_to_cbor(f, &cb, &n), RZ_OK);
    rz_flow *g;
    assert_int_equal(rz_flow_parse(&g, cb, n, RZ_FORMAT_CBOR, "p.cbor", d), RZ_OK);
    assert_int_equal(rz_flow_to_yaml(g, &yy, &n), RZ_OK);
    rz_flow *h;
    assert_int_equal(rz_flow_parse(&h, yy, n, RZ_FORMAT_YAML, "p2.yaml", d), RZ_OK);
    assert_int_equal(rz_flow_to_json(h, 0, &j2, NULL), RZ_OK);
    assert_string_equal(j, j2);
    assert_null(rz_flow_step_module(h, 0));
    /* Builder: a node with "flow" and no moduleId, and back. */
    assert_int_equal(rz_flow_to_json(h, RZ_EXPORT_BUILDER, &b, NULL), RZ_OK);
    assert_non_null(strstr(b, "{\"id\":\"s\",\"flow\":\"sub/child.yaml\",\"needs\""));
    rz_flow *k;
    if (rz_flow_parse(&k, b, strlen(b), RZ_FORMAT_JSON, "p.json", d) != RZ_OK)
        dump(d), fprintf(stderr, "%s\n", b);
    assert_non_null(k);
    assert_int_equal(rz_flow_to_json(k, RZ_EXPORT_BUILDER, &b2, NULL), RZ_OK);
    assert_string_equal(b, b2);
    assert_int_equal(rz_diags_count(d), 0);
    /* A server's check refuses it, located: it never reads the file. */
    assert_int_equal(rz_flow_validate(k, NULL, d), RZ_EINVALID);
    const rz_diag *x = rz_diags_get(d, 0);
    assert_non_null(strstr(x->message, "runs the sub-flow 'sub/child.yaml', which must be "
                                       "expanded first"));
    assert_string_equal(x->pointer, "/nodes/0/flow");
    rz_free(b);
    rz_free(b2);
    rz_free(j);
    rz_free(j2);
    rz_free(yy);
    rz_free(cb);
    rz_flow_free(f);
    rz_flow_free(g);
    rz_flow_free(h);
    rz_flow_free(k);
    rz_diags_free(d);
}

/* Shapes the loader refuses, located, in both syntaxes. */
static void bad_flow_keys_located(void **state)
{
    (void)state;
    const char *y = "flux: 1\nsteps:\n"
                    "  a: {flow: /etc/passwd}\n"
                    "  b: {flow: 'flow://lib@1.2'}\n"
                    "  c: {flow: x.yaml, module: m}\n"
                    "  d: {flow: x.yaml, retry: 2, config: {}}\n"
                    "  e: {flow: 3}\n"
                    "  f: {flow: \"a\\tb\"}\n"
                    "on_exit: {flow: x.yaml}\n";
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f = NULL;
    assert_int_equal(rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, "b.yaml", d), RZ_EINVALID);
    assert_null(f);
    struct { uint32_t line, col; const char *msg; } want[] = {
        {3, 13, "'flow' must be a path relative to this flow's file, 1024 bytes at most, "
                "not an absolute path"},
        {4, 13, "'flow' names 'flow://lib@1.2': the version after '@' is a number"},
        {5, 13, "a step runs a module or a sub-flow ('flow'), not both"},
        {6, 28, "a sub-flow step takes no 'retry'"},
        {6, 31, "a sub-flow step takes no 'config'"},
        {7, 13, "'flow' must name a flow file (a path relative to this flow's file), not a number"},
        {8, 13, "'flow' holds the control byte 0x09"},
        {9, 17, "the on_exit step runs a module, not a sub-flow"},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        size_t hits = 0;
        for (size_t k = 0; k < rz_diags_count(d); k++) {
            const rz_diag *x = rz_diags_get(d, k);
            hits += x->line == want[i].line && x->column == want[i].col &&
                    strstr(x->message, want[i].msg) != NULL;
        }
        if (hits != 1) {
            fprintf(stderr, "want %u:%u %s\n", want[i].line, want[i].col, want[i].msg);
            dump(d);
        }
        assert_int_equal(hits, 1);
    }
    rz_diags_free(d);
    const char *j = "{\"nodes\":[{\"id\":\"a\",\"flow\":\"x.json\",\"moduleId\":\"m\"}]}";
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    assert_int_equal(rz_flow_parse(&f, j, strlen(j), RZ_FORMAT_JSON, "b.json", d), RZ_EINVALID);
    assert_int_equal(rz_diags_get(d, 0)->column, 28);
    assert_non_null(strstr(rz_diags_get(d, 0)->message, "not both"));
    rz_diags_free(d);
}

/* a -> b -> a: refused at the step that closes the cycle, in its file. */
static void cycles_between_files(void **state)
{
    (void)state;
    put("cyc/a.yaml", "flux: 1\nsteps:\n  s: {module: m}\n  tob: {flow: b.yaml}\n");
    put("cyc/b.yaml", "flux: 1\nsteps:\n  toa:\n    flow: a.yaml\n");
    put("cyc/self.yaml", "flux: 1\nsteps:\n  me: {flow: ./self.yaml}\n");
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(expand("cyc/a.yaml", &f, &d), RZ_EINVALID);
    assert_null(f);
    expect(d, "cyc/b.yaml", 4, 11, "sub-flows form a cycle: ");
    char cyc[300];
    snprintf(cyc, sizeof cyc, "%s/cyc/a.yaml -> %s/cyc/b.yaml -> %s/cyc/a.yaml", g_dir, g_dir,
             g_dir);
    expect(d, "cyc/b.yaml", 4, 11, cyc);
    expect(d, "cyc/a.yaml", 4, 15, "sub-flow b.yaml of step 'tob' is not valid");
    rz_diags_free(d);
    assert_int_equal(expand("cyc/self.yaml", &f, &d), RZ_EINVALID);
    expect(d, "cyc/self.yaml", 3, 14, "sub-flows form a cycle");
    rz_diags_free(d);
}

/* Paths that are not a flow file: missing, a folder, a device, a link out. */
static void hostile_paths(void **state)
{
    (void)state;
    put("p/x.yaml", "flux: 1\nsteps:\n  a: {flow: nope.yaml}\n  b: {flow: ../p}\n"
                    "  c: {flow: ../../../../../../../../dev/zero}\n");
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(expand("p/x.yaml", &f, &d), RZ_EINVALID);
    expect(d, "p/x.yaml", 3, 13, "sub-flow 'nope.yaml' of step 'a': No such file or directory");
    expect(d, "p/x.yaml", 4, 13, "is not a regular file");
    expect(d, "p/x.yaml", 5, 13, "is not a regular file");
    rz_diags_free(d);
    /* A child that is not a flow: its own errors, in its own file. */
    put("p/junk.yaml", "steps: [1, 2\n");
    put("p/y.yaml", "flux: 1\nsteps:\n  a: {flow: junk.yaml}\n");
    assert_int_equal(expand("p/y.yaml", &f, &d), RZ_EINVALID);
    expect(d, "p/y.yaml", 3, 13, "is not valid (its problems are above)");
    assert_true(rz_diags_error_count(d) >= 2);
    rz_diags_free(d);
}

/* The interface: inputs the child lacks or needs, outputs it lacks, how a
 * sub-flow ran, connections, ids that do not fit. */
static void interface_errors_located(void **state)
{
    (void)state;
    put("i/leaf.yaml", LEAF);
    put("i/x.yaml", "flux: 1\nsteps:\n"
                    "  s:\n    flow: leaf.yaml\n    inputs: {text: a, txet: b}\n"
                    "  t:\n    flow: leaf.yaml\n"
                    "  u:\n    module: m\n    needs: [s]\n"
                    "    inputs: {a: \"${{ steps.s.outputs.quiet }}\", b: \"${{ steps.s.status }}\"}\n");
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(expand("i/x.yaml", &f, &d), RZ_EINVALID);
    expect(d, "i/x.yaml", 5, 29, "sub-flow leaf.yaml has no input 'txet'");
    expect(d, "i/x.yaml", 6, 3, "sub-flow step 't' does not give input 'text', which "
                                "leaf.yaml requires");
    expect(d, "i/x.yaml", 11, 17, "sub-flow step 's' (leaf.yaml) has no output 'quiet' "
                                  "(its outputs: loud)");
    expect(d, "i/x.yaml", 11, 52, "'s' runs a sub-flow: its outputs can be read, not how it ran");
    rz_diags_free(d);
    char longid[80];
    memset(longid, 'q', 62);
    longid[62] = '\0';
    char text[400];
    snprintf(text, sizeof text, "flux: 1\nsteps:\n  %s: {flow: leaf.yaml, inputs: {text: t}}\n"
             "  c: {module: m}\n", longid);
    put("i/long.yaml", text);
    assert_int_equal(expand("i/long.yaml", &f, &d), RZ_EINVALID);
    expect(d, "i/long.yaml", 3, 3, "longer than 64 characters");
    rz_diags_free(d);
    put("i/taken.yaml", "flux: 1\nsteps:\n  s: {flow: leaf.yaml, inputs: {text: t}}\n"
                        "  s-say: {module: m}\n");
    assert_int_equal(expand("i/taken.yaml", &f, &d), RZ_EINVALID);
    expect(d, "i/taken.yaml", 3, 3, "step 'say' of sub-flow leaf.yaml becomes 's-say', "
                                    "which is taken already");
    rz_diags_free(d);
    put("i/conn.json", "{\"nodes\":[{\"id\":\"s\",\"flow\":\"leaf.yaml\",\"inputs\":{\"text\":\"t\"}},"
                       "{\"id\":\"m\",\"moduleId\":\"m\"}],\"connections\":[{\"id\":\"c1\","
                       "\"source\":{\"nodeId\":\"s\",\"port\":\"loud\"},"
                       "\"target\":{\"nodeId\":\"m\",\"port\":\"x\"}}]}");
    assert_int_equal(expand("i/conn.json", &f, &d), RZ_EINVALID);
    expect(d, "i/conn.json", 1, 105, "step 's' runs a sub-flow: it takes no connections");
    rz_diags_free(d);
}

/* A builder child's connections come along, renamed with its steps. */
static void builder_child_connections(void **state)
{
    (void)state;
    put("b/child.json", BUILDER_CHILD);
    put("b/p.yaml", "flux: 1\nsteps:\n  s: {flow: child.json, inputs: {t: hi}}\n"
                    "  after: {module: m, needs: [s], inputs: {v: \"${{ steps.s.outputs.r }}\"}}\n");
    rz_diags *d;
    rz_flow *f = expand_ok("b/p.yaml", &d);
    static const step_has has[] = {
        {"\"connections\"", {"[{\"id\":\"s-c1\",\"source\":{\"nodeId\":\"s-a\",\"port\":\"o\"},"
                             "\"target\":{\"nodeId\":\"s-b\",\"port\":\"i\"}}]"}},
        {"\"s-a\"", {"\"inputs\":{\"x\":\"${{ ('hi') }}\"}"}},
    };
    expect_steps(f, has, sizeof has / sizeof has[0]);
    expect_one_need(f, "s-b", "s-a");
    rz_flow_free(f);
    rz_diags_free(d);
}

/* for_each over a sub-flow: every child step maps the step's list, reads
 * its siblings' outputs element by element, and the step's outputs are the
 * child steps' lists; a builder child's connections become such reads. */
static void mapped_subflow_expands(void **state)
{
    (void)state;
    put("e/leaf.yaml", LEAF);
    put("e/pair.yaml", "flux: 1\ninputs:\n  t: {type: string}\n  k: {type: any, default: 0}\n"
                       "steps:\n  a:\n    module: m\n    inputs: {v: \"${{ inputs.t }}\"}\n"
                       "  b:\n    module: m\n    needs: [a]\n"
                       "    inputs: {v: \"${{ steps.a.outputs.v }}\", n: \"${{ inputs.k }}\"}\n"
                       "  c:\n    flow: leaf.yaml\n    needs: [b]\n"
                       "    inputs: {text: \"${{ steps.b.outputs.v }}\"}\n"
                       "outputs:\n  r: \"${{ steps.c.outputs.loud }}\"\n  v: \"${{ steps.b.outputs.v }}\"\n");
    put("e/p.yaml", "flux: 1\ninputs:\n  xs: {type: array}\nsteps:\n"
                    "  s:\n    flow: pair.yaml\n    for_each: \"${{ inputs.xs }}\"\n"
                    "    max_parallel: 3\n    inputs: {t: \"${{ item }}\", k: \"${{ index }}\"}\n"
                    "  after:\n    module: m\n    needs: [s]\n"
                    "    inputs: {v: \"${{ steps.s.outputs.r }}\"}\n");
    rz_diags *d;
    rz_flow *f = expand_ok("e/p.yaml", &d);
    const char *ids[] = {"s-a", "s-b", "s-c-say", "after"};
    expect_ids(f, ids, 4);
    static const step_has has[] = {
        {"\"s-a\"", {"\"inputs\":{\"v\":\"${{ (( item )) }}\"},"
                     "\"for_each\":\"${{ inputs.xs }}\",\"max_parallel\":3"}},
        {"\"s-b\"", {"\"inputs\":{\"v\":\"${{ steps.s-a.outputs.v[index] }}\","
                     "\"n\":\"${{ (( index )) }}\"},\"for_each\":\"${{ inputs.xs }}\""}},
        {"\"s-c-say\"", {"steps.s-b.outputs.v[index]", "\"for_each\":\"${{ inputs.xs }}\""}},
        /* The step's output is the child step's list, whole. */
        {"\"after\"", {"\"inputs\":{\"v\":\"${{ (( (( steps.s-c-say.outputs.message ))"
                       " )) }}\"}"}},
    };
    expect_steps(f, has, sizeof has / sizeof has[0]);
    rz_flow_free(f);
    rz_diags_free(d);

    /* Builder format, parent and child: a connection is element i to element i. */
    put("e/child.json", BUILDER_CHILD);
    put("e/p.json", "{\"nodes\": [{\"id\": \"s\", \"flow\": \"child.json\", \"for_each\": [1, 2],"
                    "\"inputs\": {\"t\": \"n${{ item }}\"}}]}");
    f = expand_ok("e/p.json", &d);
    static const char *const s_b[] = {
        "\"inputs\":{\"i\":\"${{ steps.s-a.outputs.o[index] }}\"},\"for_each\":[1,2]", NULL
    };
    expect_in(f, "\"s-b\"", s_b);
    expect_one_need(f, "s-b", "s-a");
    rz_flow_free(f);
    rz_diags_free(d);
}

/* What a mapped sub-flow cannot hold is said at the step, once each. */
static void mapped_subflow_refusals(void **state)
{
    (void)state;
    put("r/kid.yaml", "flux: 1\ninputs:\n  t: {type: string}\nsteps:\n"
                      "  a:\n    module: m\n    for_each: [1]\n"
                      "  b:\n    module: m\n    needs: [a]\n    when: \"${{ steps.a.outputs.v }}\"\n"
                      "  c:\n    module: m\n    needs: [b]\n    inputs: {s: \"${{ steps.b.status }}\"}\n"
                      "  d:\n    module: m\n    when: \"${{ inputs.t == 'x' }}\"\n"
                      "outputs:\n  v: \"${{ format('{0}!', steps.b.outputs.v) }}\"\n"
                      "  w: \"${{ steps.b.outputs.v }}\"\n");
    put("r/p.yaml", "flux: 1\nsteps:\n  s:\n    flow: kid.yaml\n    for_each: [x, y]\n"
                    "    inputs: {t: \"${{ item }}\"}\n"
                    "  u:\n    flow: kid.yaml\n    for_each: [x]\n    for_each_depth: 2\n"
                    "    inputs: {t: x}\n");
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(expand("r/p.yaml", &f, &d), RZ_EINVALID);
    assert_null(f);
    expect(d, "r/p.yaml", 10, 21, "a sub-flow step takes no 'for_each_depth'");
    rz_diags_free(d);
    put("r/p.yaml", "flux: 1\nsteps:\n  s:\n    flow: kid.yaml\n    for_each: [x, y]\n"
                    "    inputs: {t: \"${{ item }}\"}\n");
    assert_int_equal(expand("r/p.yaml", &f, &d), RZ_EINVALID);
    expect(d, "r/p.yaml", 5, 5, "its step 'a' maps a list of its own");
    expect(d, "r/p.yaml", 5, 5, "its output 'v' must read one step output as it is");
    rz_diags_free(d);
    /* Reads that are not one element's, each said at the step. */
    static const struct { const char *steps, *msg; unsigned line, col; } kids[] = {
        {"  b:\n    module: m\n    needs: [a]\n    when: \"${{ steps.a.outputs.v }}\"\n",
         "a `when` is evaluated once for all elements, so it cannot read a step of the "
         "sub-flow", 3, 3},
        {"  b:\n    module: m\n    needs: [a]\n    inputs: {s: \"${{ steps.a.status }}\"}\n",
         "a step can read another's outputs (its element's), not how it ran", 6, 5},
        {"  b:\n    module: m\n    when: \"${{ inputs.t == 'x' }}\"\n",
         "input 't' is given an element's value", 3, 3},
    };
    for (size_t i = 0; i < sizeof kids / sizeof kids[0]; i++) {
        char kid[600];
        snprintf(kid, sizeof kid, "flux: 1\ninputs:\n  t: {type: string}\nsteps:\n"
                 "  a:\n    module: m\n%soutputs:\n  w: \"${{ steps.a.outputs.v }}\"\n",
                 kids[i].steps);
        put("r/kid.yaml", kid);
        assert_int_equal(expand("r/p.yaml", &f, &d), RZ_EINVALID);
        expect(d, "r/p.yaml", kids[i].line, kids[i].col, kids[i].msg);
        rz_diags_free(d);
    }
}

/* Nine levels: refused at the ninth; no budget overrun on a wide fan. */
static void depth_is_bounded(void **state)
{
    (void)state;
    for (int i = 0; i < 10; i++) {
        char name[32], text[128];
        snprintf(name, sizeof name, "deep/l%d.yaml", i);
        snprintf(text, sizeof text, "flux: 1\nsteps:\n  s: {flow: l%d.yaml}\n", i + 1);
        put(name, i == 9 ? "flux: 1\nsteps:\n  s: {module: m}\n" : text);
    }
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(expand("deep/l0.yaml", &f, &d), RZ_EINVALID);
    expect(d, "deep/l8.yaml", 3, 13, "sub-flows nested deeper than 8 levels");
    rz_diags_free(d);
    assert_int_equal(expand("deep/l2.yaml", &f, &d), RZ_OK);
    assert_int_equal(rz_flow_step_count(f), 1);
    assert_string_equal(rz_flow_step_id(f, 0), "s-s-s-s-s-s-s-s");
    rz_flow_free(f);
    rz_diags_free(d);
}

/* The example, against the modules that ship. */
static void example_validates(void **state)
{
    (void)state;
    rz_registry *reg = NULL;
    assert_int_equal(rz_registry_new(&reg), RZ_OK);
    assert_int_equal(rz_registry_add_dir(reg, RZ_SOURCE_ROOT "/examples/modules", NULL), RZ_OK);
    rz_diags *d;
    assert_int_equal(rz_diags_new(&d), RZ_OK);
    rz_flow *f = NULL;
    assert_int_equal(rz_flow_load(&f, RZ_SOURCE_ROOT "/examples/flows/subflow.yaml",
                                  RZ_FORMAT_AUTO, d), RZ_OK);
    int rc = rz_flow_expand(&f, reg, d);
    if (rc != RZ_OK)
        dump(d);
    assert_int_equal(rc, RZ_OK);
    assert_int_equal(rz_flow_step_count(f), 7);
    assert_string_equal(rz_flow_step_id(f, 5), "classify-note-say");
    assert_non_null(rz_flow_step_module(f, 5));
    /* Expanding an expanded flow keeps it. */
    rz_flow *same = f;
    assert_int_equal(rz_flow_expand(&f, reg, d), RZ_OK);
    assert_ptr_equal(f, same);
    rz_flow_free(f);
    rz_diags_free(d);
    rz_registry_free(reg);
}

/* ---- named sub-flows (flow://NAME@N) ---- */

static const char *const SHOUT =
    "flux: 1\nname: shout\ninputs:\n  text: {type: string}\n"
    "steps:\n  say:\n    module: echo@1\n    inputs: {message: \"${{ inputs.text }}!\"}\n"
    "outputs:\n  loud: \"${{ steps.say.outputs.message }}\"\n";

/* An orchestrator's store of named flows, as the callback sees it. */
typedef struct store {
    const char *name[4], *text[4];
    unsigned long long version[4], active;
    unsigned calls;
} store;

static int store_named(void *ctx, const char *name, unsigned long long v, char **text,
                       unsigned long long *found, char *why, size_t cap)
{
    store *st = ctx;
    st->calls++;
    for (size_t i = 0; i < 4 && st->name[i]; i++)
        if (!strcmp(st->name[i], name) && st->version[i] == (v ? v : st->active)) {
            *text = strdup(st->text[i]);
            *found = st->version[i];
            return *text ? RZ_OK : RZ_ENOMEM;
        }
    snprintf(why, cap, "no flow %s version %llu here", name, v);
    return RZ_ENOENT;
}

static int parse_expand(const char *y, const rz_flow_expand_opts *o, rz_flow **out,
                        rz_diags **d)
{
    assert_int_equal(rz_diags_new(d), RZ_OK);
    char path[256];
    snprintf(path, sizeof path, "%s/top.yaml", g_dir);
    rz_flow *f = NULL;
    int rc = rz_flow_parse(&f, y, strlen(y), RZ_FORMAT_YAML, path, *d);
    if (rc == RZ_OK)
        rc = rz_flow_expand_with(&f, NULL, o, *d);
    if (rc != RZ_OK) {
        rz_flow_free(f);
        f = NULL;
    }
    *out = f;
    return rc;
}

static bool said(const rz_diags *d, uint32_t line, const char *msg)
{
    for (size_t i = 0; i < rz_diags_count(d); i++)
        if (rz_diags_get(d, i)->line == line && strstr(rz_diags_get(d, i)->message, msg))
            return true;
    dump(d);
    return false;
}

/* Resolved by the caller (an orchestrator), named children of named
 * children, cycles by name, files refused where no file may be read. */
static void named_by_callback(void **state)
{
    (void)state;
    store st = {.name = {"shout", "shout", "wrap", "loop"},
                .text = {SHOUT, SHOUT, "flux: 1\nname: wrap\nsteps:\n  in:\n"
                         "    flow: flow://shout@1\n    inputs: {text: x}\n",
                         "flux: 1\nname: loop\nsteps:\n  again: {flow: 'flow://loop@1'}\n"},
                .version = {1, 2, 1, 1}, .active = 2};
    rz_flow_expand_opts o = RZ_FLOW_EXPAND_OPTS_INIT;
    o.named = store_named;
    o.named_ctx = &st;
    const char *y = "flux: 1\nsteps:\n  a:\n    flow: flow://shout\n    inputs: {text: hi}\n"
                    "  w: {flow: 'flow://wrap@1'}\n";
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_OK);
    assert_int_equal(rz_flow_step_count(f), 2);
    assert_string_equal(rz_flow_step_id(f, 0), "a-say");
    assert_string_equal(rz_flow_step_id(f, 1), "w-in-say");
    assert_null(rz_flow_step_subflow(f, 0));
    assert_int_equal(st.calls, 3);
    rz_flow_free(f);
    rz_diags_free(d);
    /* A missing version: the callback's reason, at the step. */
    y = "flux: 1\nsteps:\n  a:\n    flow: flow://shout@9\n    inputs: {text: hi}\n";
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 4, "sub-flow flow://shout@9 of step 'a': no flow shout version 9 here"));
    rz_diags_free(d);
    y = "flux: 1\nsteps:\n  a: {flow: 'flow://loop@1'}\n";
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 4, "sub-flows form a cycle: flow://loop@1 -> flow://loop@1"));
    rz_diags_free(d);
    /* A server reads no file; a named flow's sub-flows are named. */
    o.no_files = 1;
    y = "flux: 1\nsteps:\n  a: {flow: child.yaml}\n";
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 3, "is a file: files are not read here"));
    rz_diags_free(d);
    o.no_files = 0;
    st.text[2] = "flux: 1\nname: wrap\nsteps:\n  in: {flow: ../etc/x.yaml}\n";
    y = "flux: 1\nsteps:\n  w: {flow: 'flow://wrap@1'}\n";
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 4, "a named flow's sub-flows are named flows"));
    rz_diags_free(d);
    /* Kept for the orchestrator: the step stays, the rest validates. */
    o.keep_named = 1;
    put("kid.yaml", "flux: 1\nsteps:\n  n: {flow: 'flow://shout@2', inputs: {text: a}}\n"
                    "outputs:\n  o: \"${{ steps.n.outputs.loud }}\"\n");
    y = "flux: 1\nsteps:\n  k: {flow: kid.yaml}\n  b:\n    module: echo@1\n    needs: [k]\n"
        "    inputs: {message: \"${{ steps.k.outputs.o }}\"}\n";
    st.calls = 0;
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_OK);
    assert_int_equal(st.calls, 0);
    assert_string_equal(rz_flow_step_id(f, 0), "k-n");
    assert_string_equal(rz_flow_step_subflow(f, 0), "flow://shout@2");
    assert_int_equal(rz_flow_validate(f, NULL, d), RZ_EINVALID);   /* not runnable as is */
    rz_flow_free(f);
    rz_diags_free(d);
}

/* Embedded: a flows folder, else a clear refusal; names that could leave
 * the folder never load. */
static void named_from_folder(void **state)
{
    (void)state;
    put("lib/shout@3.yaml", SHOUT);
    put("lib/shout.json", "{\"flux\": 1, \"steps\": {\"s\": {\"module\": \"echo@1\"}}}");
    char dir[128];
    snprintf(dir, sizeof dir, "%s/lib", g_dir);
    rz_flow_expand_opts o = RZ_FLOW_EXPAND_OPTS_INIT;
    const char *y = "flux: 1\nsteps:\n  a:\n    flow: flow://shout@3\n    inputs: {text: hi}\n"
                    "  b: {flow: 'flow://shout'}\n";
    rz_flow *f;
    rz_diags *d;
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 4, "is a named flow, deployed on an orchestrator"));
    assert_true(said(d, 6, "set RHIZOS_FLOWS to a folder holding shout@N.yaml"));
    rz_diags_free(d);
    o.flows_dir = dir;
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_OK);
    assert_int_equal(rz_flow_step_count(f), 2);
    assert_string_equal(rz_flow_step_id(f, 0), "a-say");
    assert_string_equal(rz_flow_step_id(f, 1), "b-s");
    rz_flow_free(f);
    rz_diags_free(d);
    y = "flux: 1\nsteps:\n  a: {flow: 'flow://shout@4'}\n";
    assert_int_equal(parse_expand(y, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 3, "no shout@4.yaml (or .yml, .json) in the flows folder"));
    rz_diags_free(d);
    /* Hostile or malformed references: refused at load, located. */
    static const char *const bad[][2] = {
        {"flow://", "a name of 1 to 128 bytes"},
        {"flow://@3", "a name of 1 to 128 bytes"},
        {"flow://../lib/shout@3", "does not start with '.'"},
        {"flow://a/b@1", "no '/' or control byte"},
        {"flow://x@0", "the version after '@' is a number"},
        {"flow://x@01", "the version after '@' is a number"},
        {"flow://x@", "the version after '@' is a number"},
        {"flow://x@1@2", "the version after '@' is a number"},
        {"flow://x@-1", "the version after '@' is a number"},
        {"flow://x@9999999999999999", "the version after '@' is a number"},
        {"flow://x\\u0001", "no '/' or control byte"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char doc[200];
        snprintf(doc, sizeof doc, "flux: 1\nsteps:\n  a: {flow: \"%s\"}\n", bad[i][0]);
        assert_int_equal(parse_expand(doc, &o, &f, &d), RZ_EINVALID);
        assert_null(f);
        if (!said(d, 3, bad[i][1]))
            fprintf(stderr, "case %s\n", bad[i][0]);
        assert_true(said(d, 3, bad[i][1]));
        rz_diags_free(d);
    }
    /* A long name is refused, not cut. */
    char doc[400], name[200];
    memset(name, 'n', 129);
    name[129] = '\0';
    snprintf(doc, sizeof doc, "flux: 1\nsteps:\n  a: {flow: \"flow://%s\"}\n", name);
    assert_int_equal(parse_expand(doc, &o, &f, &d), RZ_EINVALID);
    assert_true(said(d, 3, "a name of 1 to 128 bytes"));
    rz_diags_free(d);
    rz_flow_expand_opts v9 = o;
    v9.version = 9;
    assert_int_equal(parse_expand(y, &v9, &f, &d), RZ_EINVAL);
    rz_diags_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(three_levels_expand),
        cmocka_unit_test(flow_key_round_trips),
        cmocka_unit_test(bad_flow_keys_located),
        cmocka_unit_test(cycles_between_files),
        cmocka_unit_test(hostile_paths),
        cmocka_unit_test(interface_errors_located),
        cmocka_unit_test(builder_child_connections),
        cmocka_unit_test(mapped_subflow_expands),
        cmocka_unit_test(mapped_subflow_refusals),
        cmocka_unit_test(depth_is_bounded),
        cmocka_unit_test(example_validates),
        cmocka_unit_test(named_by_callback),
        cmocka_unit_test(named_from_folder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

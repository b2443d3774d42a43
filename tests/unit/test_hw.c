/* Node capabilities: fixtures of machines we cannot run on, detection on this
 * one, the benchmark, and hostile JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/rhizos.h"

static char *fixture(const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/hw/%s", RZ_SOURCE_ROOT, name);
    char *text = NULL;
    assert_int_equal(rz__read_file(path, 1 << 20, &text, len), RZ_OK);
    return text;
}

static rz_caps *load(const char *name)
{
    size_t len;
    char *text = fixture(name, &len);
    rz_caps *c = NULL;
    int rc = rz_caps_parse(&c, text, len);
    free(text);
    if (rc != RZ_OK)
        fail_msg("%s: %s", name, rz_error_last()->message);
    return c;
}

static bool has(const char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void eight_gpu_box(void **state)
{
    (void)state;
    rz_caps *c = load("dgx-h100.json");
    const rz_caps_info *i = rz_caps_get(c);
    assert_string_equal(i->id, "dgx-h100-01");
    assert_int_equal(i->cores, 112);
    assert_int_equal(i->threads, 224);
    assert_int_equal(i->numa_nodes, 2);
    assert_int_equal(i->n_gpus, 8);
    for (size_t k = 0; k < 8; k++) {
        assert_string_equal(i->gpus[k].vendor, "nvidia");
        assert_int_equal(i->gpus[k].vram_mb, 81559);
        assert_int_equal(i->gpus[k].cc_major, 9);
        assert_int_equal(i->gpus[k].cc_minor, 0);
    }
    assert_string_equal(i->gpus[3].bus_id, "00000000:5D:00.0");
    assert_true(has(i->features, i->n_features, "amx_tile"));
    assert_string_equal(i->storage_kind, "nvme");
    assert_string_equal(i->region, "us-east");
    assert_string_equal(rz_caps_label(c, "interconnect"), "nvlink4");
    assert_int_equal(i->gpu_hour_micros, 2490000);   /* $2.49 */
    assert_int_equal(i->max_concurrent_jobs, 16);
    assert_true(i->reputation > 0.969 && i->reputation < 0.971);

    /* Out and back in: the same node, unknown fields kept at every level. */
    char *json = NULL;
    assert_int_equal(rz_caps_to_json(c, 0, &json), RZ_OK);
    cJSON *doc = cJSON_Parse(json);
    assert_non_null(doc);
    const cJSON *op = cJSON_GetObjectItem(doc, "operator");
    assert_string_equal(cJSON_GetObjectItem(op, "name")->valuestring, "Example Compute LLC");
    cJSON *g0 = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "gpus"), 0);
    assert_string_equal(cJSON_GetObjectItem(g0, "mig_mode")->valuestring, "disabled");
    assert_string_equal(cJSON_GetObjectItem(g0, "compute_capability")->valuestring, "9.0");
    cJSON_Delete(doc);
    rz_caps *back = NULL;
    assert_int_equal(rz_caps_parse(&back, json, strlen(json)), RZ_OK);
    assert_int_equal(rz_caps_get(back)->n_gpus, 8);
    assert_int_equal(rz_caps_get(back)->memory_mb, i->memory_mb);
    assert_int_equal(rz_caps_get(back)->n_features, i->n_features);
    char *json2 = NULL;
    assert_int_equal(rz_caps_to_json(back, 0, &json2), RZ_OK);
    assert_string_equal(json, json2);
    char *text = NULL;
    assert_int_equal(rz_caps_to_text(c, &text), RZ_OK);
    assert_non_null(strstr(text, "NVIDIA H100 80GB HBM3, 81559 MB VRAM, compute 9.0"));
    rz_free(text);
    rz_free(json);
    rz_free(json2);
    rz_caps_free(back);
    rz_caps_free(c);
}

static void arm_laptop(void **state)
{
    (void)state;
    rz_caps *c = load("arm-laptop.json");
    const rz_caps_info *i = rz_caps_get(c);
    assert_string_equal(i->arch, "aarch64");
    assert_true(has(i->features, i->n_features, "neon"));
    assert_true(has(i->features, i->n_features, "i8mm"));
    assert_false(has(i->features, i->n_features, "avx2"));
    assert_int_equal(i->n_gpus, 0);
    assert_int_equal(i->max_concurrent_jobs, 2);
    assert_true(i->bench_cpu_mops > 2890 && i->bench_cpu_mops < 2891);
    assert_string_equal(rz_caps_label(c, "battery"), "true");
    rz_caps *copy = NULL;
    assert_int_equal(rz_caps_clone(&copy, c), RZ_OK);
    rz_caps_free(c);   /* the clone owns everything it points at */
    assert_string_equal(rz_caps_get(copy)->cpu_model, "Snapdragon X Elite - X1E-78-100");
    assert_string_equal(rz_caps_get(copy)->region, "eu-west");
    rz_caps_free(copy);
}

static void cpu_only_vm(void **state)
{
    (void)state;
    rz_caps *c = load("cpu-vm.json");
    const rz_caps_info *i = rz_caps_get(c);
    assert_int_equal(i->n_gpus, 0);
    assert_int_equal(i->cores, 4);
    assert_int_equal(i->n_runtimes, 1);
    assert_string_equal(i->runtimes[0], "podman");
    assert_true(has(i->adapters, i->n_adapters, "docker"));
    assert_int_equal(i->storage_free_gb, 71);
    rz_caps_free(c);
}

static void node_list_shapes(void **state)
{
    (void)state;
    size_t len, n = 0;
    char *text = fixture("nodes.json", &len);
    rz_caps **list = NULL;
    assert_int_equal(rz_caps_parse_list(&list, &n, text, len), RZ_OK);
    assert_int_equal(n, 4);
    assert_string_equal(rz_caps_get(list[1])->id, "rtx-4080");
    rz_caps_free_list(list, n);
    free(text);
    const char *wrapped = "{\"nodes\":[{\"id\":\"x\"}]}";
    assert_int_equal(rz_caps_parse_list(&list, &n, wrapped, strlen(wrapped)), RZ_OK);
    assert_int_equal(n, 1);
    /* A node with no adapters still serves the process adapter. */
    assert_string_equal(rz_caps_get(list[0])->adapters[0], "process");
    rz_caps_free_list(list, n);
    const char *bad = "[{\"id\":\"x\"},{\"id\":\"y\",\"memory_mb\":-5}]";
    assert_int_equal(rz_caps_parse_list(&list, &n, bad, strlen(bad)), RZ_EINVALID);
    assert_null(list);
    assert_string_equal(rz_error_last()->pointer, "/1/memory_mb");
}

/* Every hostile document fails cleanly with the offending pointer. */
static void hostile_json(void **state)
{
    (void)state;
    static const struct { const char *json; int rc; const char *ptr; } cases[] = {
        { "{\"cpu\":{\"cores\":\"many\"}}", RZ_EINVALID, "/cpu/cores" },
        { "{\"cpu\":{\"cores\":2.5}}", RZ_EINVALID, "/cpu/cores" },
        { "{\"cpu\":{\"cores\":1e300}}", RZ_EINVALID, "/cpu/cores" },
        { "{\"memory_mb\":-1}", RZ_EINVALID, "/memory_mb" },
        { "{\"memory_mb\":18446744073709551616}", RZ_EINVALID, "/memory_mb" },
        { "{\"gpus\":{}}", RZ_EINVALID, "/gpus" },
        { "{\"gpus\":[7]}", RZ_EINVALID, "/gpus/0" },
        { "{\"gpus\":[{\"vram_mb\":\"lots\"}]}", RZ_EINVALID, "/gpus/0/vram_mb" },
        { "{\"gpus\":[{\"compute_capability\":\"nine\"}]}", RZ_EINVALID,
          "/gpus/0/compute_capability" },
        /* A sign would wrap to 4294967295 in sscanf's %u. */
        { "{\"gpus\":[{\"compute_capability\":-1.5}]}", RZ_EINVALID,
          "/gpus/0/compute_capability" },
        { "{\"gpus\":[{\"compute_capability\":\"-1.5\"}]}", RZ_EINVALID,
          "/gpus/0/compute_capability" },
        { "{\"reputation\":1.5}", RZ_EINVALID, "/reputation" },
        { "{\"prices\":{\"gpu_hour_micros\":-3}}", RZ_EINVALID, "/prices/gpu_hour_micros" },
        /* The cents spelling is read for one release; both at once is not. */
        { "{\"prices\":{\"gpu_hour_micros\":3,\"gpu_hour_cents\":3}}", RZ_EINVALID,
          "/prices/gpu_hour_cents" },
        { "{\"prices\":{\"gpu_hour_cents\":1e15}}", RZ_EINVALID, "/prices/gpu_hour_cents" },
        { "{\"prices\":[]}", RZ_EINVALID, "/prices" },
        { "{\"labels\":{\"a\":[1]}}", RZ_EINVALID, "/labels" },
        { "{\"adapters\":[\"process\",3]}", RZ_EINVALID, "/adapters" },
        { "{\"id\":17}", RZ_EINVALID, "/id" },
        { "{\"storage\":{\"total_gb\":10,\"free_gb\":20}}", RZ_EINVALID, "/storage/free_gb" },
        { "[]", RZ_EINVALID, "" },
        { "{\"id\":\"x\"", RZ_ESYNTAX, NULL },
        { "", RZ_ESYNTAX, NULL },
    };
    for (size_t i = 0; i < RZ_ARRAY_LEN(cases); i++) {
        rz_caps *c = (rz_caps *)1;
        int rc = rz_caps_parse(&c, cases[i].json, strlen(cases[i].json));
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): %d %s", i, cases[i].json, rc, rz_error_last()->message);
        assert_null(c);
        if (cases[i].ptr)
            assert_string_equal(rz_error_last()->pointer, cases[i].ptr);
    }
    /* 65 GPUs is more than one node may describe. */
    rz__buf b = {0};
    rz__buf_puts(&b, "{\"gpus\":[");
    for (int i = 0; i < 65; i++)
        rz__buf_printf(&b, "%s{\"vendor\":\"nvidia\",\"vram_mb\":1}", i ? "," : "");
    rz__buf_puts(&b, "]}");
    rz_caps *c = NULL;
    assert_int_equal(rz_caps_parse(&c, b.data, b.len), RZ_EINVALID);
    assert_string_equal(rz_error_last()->pointer, "/gpus/64");
    rz__buf_free(&b);
    /* A string longer than any field may be. */
    char *big = malloc(5000);
    memset(big, 'a', 5000);
    memcpy(big, "{\"id\":\"", 7);
    memcpy(big + 4997, "\"}", 2);
    big[4999] = '\0';
    assert_int_equal(rz_caps_parse(&c, big, strlen(big)), RZ_EINVALID);
    free(big);
}

static void detect_this_machine(void **state)
{
    (void)state;
    rz_hw_opts o = RZ_HW_OPTS_INIT;
    o.data_dir = RZ_SOURCE_ROOT;
    o.skip_gpus = 1;
    rz_caps *c = NULL;
    assert_int_equal(rz_hw_detect(&c, &o), RZ_OK);
    const rz_caps_info *i = rz_caps_get(c);
    assert_true(*i->id);
    assert_true(i->cores >= 1 && i->cores <= 65536);
    assert_true(i->threads >= i->cores);
    assert_true(i->packages >= 1);
    assert_true(i->memory_mb >= 64);
    assert_true(i->memory_available_mb <= i->memory_mb);
    assert_true(i->storage_total_gb >= i->storage_free_gb);
    assert_true(i->storage_total_gb > 0);
    assert_true(has(i->adapters, i->n_adapters, "process"));
#if defined(__x86_64__)
    assert_string_equal(i->arch, "x86_64");
    assert_true(has(i->features, i->n_features, "sse2"));   /* x86-64 baseline */
    assert_true(*i->cpu_vendor);
#endif
    for (size_t k = 1; k < i->n_features; k++)   /* sorted, no duplicates */
        assert_true(strcmp(i->features[k - 1], i->features[k]) < 0);
    /* What it prints is what it parses back. */
    char *json = NULL;
    assert_int_equal(rz_caps_to_json(c, 1, &json), RZ_OK);
    rz_caps *back = NULL;
    assert_int_equal(rz_caps_parse(&back, json, strlen(json)), RZ_OK);
    assert_int_equal(rz_caps_get(back)->cores, i->cores);
    rz_caps_free(back);
    rz_free(json);
    rz_caps_free(c);

    o.version = 99;
    assert_int_equal(rz_hw_detect(&c, &o), RZ_EINVAL);
    assert_null(c);
}

/* Without hwloc the counts matching reads are hwloc's; caches unknown.
 * Version 1 of the options (no light_topology field) still works. */
static void detect_light_topology(void **state)
{
    (void)state;
    rz_hw_opts o = RZ_HW_OPTS_INIT;
    o.skip_gpus = 1;
    o.skip_runtimes = 1;
    rz_caps *full = NULL, *light = NULL;
    assert_int_equal(rz_hw_detect(&full, &o), RZ_OK);
    o.light_topology = 1;
    assert_int_equal(rz_hw_detect(&light, &o), RZ_OK);
    const rz_caps_info *f = rz_caps_get(full), *l = rz_caps_get(light);
    assert_int_equal(l->threads, f->threads);
    assert_true(l->memory_mb >= 64 && l->memory_mb <= f->memory_mb);
    assert_string_equal(l->arch, f->arch);
    assert_true(l->numa_nodes >= 1);
#if defined(__x86_64__)   /* cpuinfo has core ids there: no fallback */
    assert_int_equal(l->cores, f->cores);
    assert_int_equal(l->packages, f->packages);
    assert_string_equal(l->cpu_vendor, f->cpu_vendor);
    assert_int_equal(l->l3_kb, 0);
#endif
    rz_caps_free(full);
    rz_caps_free(light);
    o.version = 1;
    assert_int_equal(rz_hw_detect(&light, &o), RZ_OK);
    rz_caps_free(light);
}

/* AMD through a recorded sysfs tree; NVML absent is no error. */
static void detect_amd_from_sysfs(void **state)
{
    (void)state;
    rz_hw_opts o = RZ_HW_OPTS_INIT;
    o.sysfs_root = RZ_SOURCE_ROOT "/tests/data/hw/sysfs";
    o.nvml_path = "/nonexistent/libnvidia-ml.so.1";
    o.skip_runtimes = 1;
    rz_caps *c = NULL;
    assert_int_equal(rz_hw_detect(&c, &o), RZ_OK);
    const rz_caps_info *i = rz_caps_get(c);
    assert_int_equal(i->n_gpus, 1);   /* card1 is Intel, card0-DP-1 a connector */
    assert_string_equal(i->gpus[0].vendor, "amd");
    assert_string_equal(i->gpus[0].model, "AMD Radeon RX 7900 XTX");
    assert_int_equal(i->gpus[0].vram_mb, 24560);
    assert_int_equal(i->gpus[0].utilization_pct, 3);
    assert_string_equal(i->gpus[0].driver, "6.8.0");
    assert_int_equal(i->n_runtimes, 0);
    rz_caps_free(c);
}

static void benchmark(void **state)
{
    (void)state;
    rz_hw_bench b;
    assert_int_equal(rz_hw_benchmark(&b, 0.2), RZ_OK);
    assert_true(b.cpu_mops > 1 && b.memory_mbps > 1);
    assert_true(b.seconds >= 0.15 && b.seconds < 5);
    char *json = NULL;
    assert_int_equal(rz_hw_bench_to_json(&b, &json), RZ_OK);
    rz_hw_bench back;
    assert_int_equal(rz_hw_bench_parse(&back, json, strlen(json)), RZ_OK);
    assert_true(back.memory_mbps > 1);
    rz_free(json);
    assert_int_equal(rz_hw_bench_parse(&back, "{\"cpu_mops\":-1}", 15), RZ_EINVALID);
    assert_int_equal(rz_hw_bench_parse(&back, "[1]", 3), RZ_EINVALID);
    rz_caps *c = load("cpu-vm.json");
    assert_int_equal(rz_caps_set_benchmark(c, &b), RZ_OK);
    assert_int_equal(rz_caps_to_json(c, 0, &json), RZ_OK);
    assert_non_null(strstr(json, "\"benchmark\":{\"cpu_mops\""));
    rz_free(json);
    rz_caps_free(c);
}

static void setters(void **state)
{
    (void)state;
    rz_caps *c = load("cpu-vm.json");
    assert_int_equal(rz_caps_set_id(c, "renamed"), RZ_OK);
    assert_int_equal(rz_caps_set_label(c, "zone", "b"), RZ_OK);
    assert_int_equal(rz_caps_set_prices(c, 1, 2, 3), RZ_OK);
    assert_int_equal(rz_caps_set_market(c, 2.0, 4), RZ_EINVAL);
    assert_int_equal(rz_caps_set_market(c, 0.5, 4), RZ_OK);
    const rz_caps_info *i = rz_caps_get(c);
    assert_string_equal(i->id, "renamed");
    assert_int_equal(i->cpu_hour_micros, 2);
    assert_int_equal(i->max_concurrent_jobs, 4);
    assert_int_equal(rz_caps_label_count(c), 3);
    const char *k, *v;
    assert_int_equal(rz_caps_label_at(c, 2, &k, &v), RZ_OK);
    assert_string_equal(k, "zone");
    assert_int_equal(rz_caps_label_at(c, 3, &k, &v), RZ_ENOENT);
    rz_caps_free(c);
    /* Cents from before micro-dollars: exact, and written back as micros. */
    static const char old[] = "{\"prices\":{\"gpu_hour_cents\":30,\"cpu_hour_micros\":7}}";
    assert_int_equal(rz_caps_parse(&c, old, sizeof old - 1), RZ_OK);
    assert_int_equal(rz_caps_get(c)->gpu_hour_micros, 300000);
    assert_int_equal(rz_caps_get(c)->cpu_hour_micros, 7);
    char *js = NULL;
    assert_int_equal(rz_caps_to_json(c, 0, &js), RZ_OK);
    assert_non_null(strstr(js, "\"gpu_hour_micros\":300000"));
    assert_null(strstr(js, "_cents"));
    rz_free(js);
    rz_caps_free(c);
    rz_caps_free(NULL);
    rz_caps_free_list(NULL, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(eight_gpu_box),
        cmocka_unit_test(arm_laptop),
        cmocka_unit_test(cpu_only_vm),
        cmocka_unit_test(node_list_shapes),
        cmocka_unit_test(hostile_json),
        cmocka_unit_test(detect_this_machine),
        cmocka_unit_test(detect_light_topology),
        cmocka_unit_test(detect_amd_from_sysfs),
        cmocka_unit_test(benchmark),
        cmocka_unit_test(setters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* GPUs: NVIDIA through NVML loaded at run time, AMD through sysfs. Finding
 * none is the normal answer on most machines, never an error. */
#include <dirent.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/hw_impl.h"

/* ---- NVIDIA (NVML) ----
 * The few NVML entry points we use, declared here so that nothing NVIDIA is
 * needed at build time. Every one returns nvmlReturn_t (0 = success). */
typedef struct nvml_device *nvml_dev;
typedef struct { unsigned long long total, free, used; } nvml_memory;
typedef struct { unsigned int gpu, memory; } nvml_util;

typedef int (*nvml_init_fn)(void);
typedef int (*nvml_shutdown_fn)(void);
typedef int (*nvml_count_fn)(unsigned int *);
typedef int (*nvml_handle_fn)(unsigned int, nvml_dev *);
typedef int (*nvml_name_fn)(nvml_dev, char *, unsigned int);
typedef int (*nvml_mem_fn)(nvml_dev, nvml_memory *);
typedef int (*nvml_cc_fn)(nvml_dev, int *, int *);
typedef int (*nvml_util_fn)(nvml_dev, nvml_util *);
typedef int (*nvml_pci_fn)(nvml_dev, void *);
typedef int (*nvml_drv_fn)(char *, unsigned int);
typedef int (*nvml_cuda_fn)(int *);

typedef struct nvml_api {
    nvml_init_fn init;
    nvml_shutdown_fn shutdown;
    nvml_count_fn count;
    nvml_handle_fn handle;
    nvml_name_fn name;
    nvml_mem_fn mem;
    nvml_cc_fn cc;            /* optional */
    nvml_util_fn util;        /* optional */
    nvml_pci_fn pci;          /* optional */
    nvml_drv_fn driver;       /* optional */
    nvml_cuda_fn cuda;        /* optional */
} nvml_api;

/* dlsym returns void *; converting through a union keeps ISO C quiet. */
static void *sym(void *lib, const char *a, const char *b)
{
    void *p = dlsym(lib, a);
    return p || !b ? p : dlsym(lib, b);
}

#define LOAD(field, type, a, b) \
    do { union { void *p; type f; } u_ = { sym(lib, a, b) }; api->field = u_.f; } while (0)

static bool nvml_load(void *lib, nvml_api *api)
{
    LOAD(init, nvml_init_fn, "nvmlInit_v2", "nvmlInit");
    LOAD(shutdown, nvml_shutdown_fn, "nvmlShutdown", NULL);
    LOAD(count, nvml_count_fn, "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount");
    LOAD(handle, nvml_handle_fn, "nvmlDeviceGetHandleByIndex_v2",
         "nvmlDeviceGetHandleByIndex");
    LOAD(name, nvml_name_fn, "nvmlDeviceGetName", NULL);
    LOAD(mem, nvml_mem_fn, "nvmlDeviceGetMemoryInfo", NULL);
    LOAD(cc, nvml_cc_fn, "nvmlDeviceGetCudaComputeCapability", NULL);
    LOAD(util, nvml_util_fn, "nvmlDeviceGetUtilizationRates", NULL);
    LOAD(pci, nvml_pci_fn, "nvmlDeviceGetPciInfo_v3", "nvmlDeviceGetPciInfo_v2");
    LOAD(driver, nvml_drv_fn, "nvmlSystemGetDriverVersion", NULL);
    LOAD(cuda, nvml_cuda_fn, "nvmlSystemGetCudaDriverVersion_v2",
         "nvmlSystemGetCudaDriverVersion");
    return api->init && api->shutdown && api->count && api->handle &&
           api->name && api->mem;
}

/* nvmlPciInfo_t: busIdLegacy[16], five unsigned ints, then busId[32]. The
 * buffer is larger than any version of the struct. */
static void nvml_bus_id(const nvml_api *api, nvml_dev dev, char *out, size_t n)
{
    unsigned char buf[512] = {0};
    out[0] = '\0';
    if (!api->pci || api->pci(dev, buf) != 0)
        return;
    const char *bus = (const char *)buf + 16 + 5 * sizeof(unsigned int);
    snprintf(out, n, "%.*s", 31, bus);
}

static int nvml_device(rz_caps *c, const nvml_api *api, unsigned idx,
                       const char *driver, const char *cuda)
{
    nvml_dev dev;
    if (c->info.n_gpus >= RZ_CAPS_MAX_GPUS)
        return RZ_OK;
    if (api->handle(idx, &dev) != 0)
        return RZ_OK;   /* a device we may not see (permissions, MIG) */
    char name[96] = "", bus[40] = "";
    nvml_memory mem = {0};
    nvml_util util = {0};
    int maj = 0, min = 0;
    if (api->name(dev, name, sizeof name) != 0)
        name[0] = '\0';
    name[sizeof name - 1] = '\0';
    if (api->mem(dev, &mem) != 0)
        mem.total = 0;
    if (!api->cc || api->cc(dev, &maj, &min) != 0 || maj < 0 || min < 0)
        maj = min = 0;
    bool have_util = api->util && api->util(dev, &util) == 0 && util.gpu <= 100;
    nvml_bus_id(api, dev, bus, sizeof bus);
    rz_gpu_info g = {
        .vendor = "nvidia", .model = name, .driver = driver,
        .cuda_version = cuda, .bus_id = bus, .vram_mb = mem.total >> 20,
        .cc_major = (uint32_t)maj, .cc_minor = (uint32_t)min,
        .utilization_pct = have_util ? (int32_t)util.gpu : -1,
    };
    return rz__caps_add_gpu(c, &g);
}

int rz__hw_gpus_nvidia(rz_caps *c, const char *libname)
{
    void *lib = dlopen(libname, RTLD_NOW | RTLD_LOCAL);
    if (!lib)
        return RZ_OK;   /* no driver: no NVIDIA GPU to offer */
    nvml_api api = {0};
    unsigned n = 0;
    int rc = RZ_OK;
    if (nvml_load(lib, &api) && api.init() == 0) {
        char driver[96] = "", cuda[16] = "";
        int cv = 0;
        if (api.driver && api.driver(driver, sizeof driver) != 0)
            driver[0] = '\0';
        driver[sizeof driver - 1] = '\0';
        if (api.cuda && api.cuda(&cv) == 0 && cv > 0)
            snprintf(cuda, sizeof cuda, "%d.%d", cv / 1000, (cv % 1000) / 10);
        if (api.count(&n) != 0)
            n = 0;
        for (unsigned i = 0; i < n && rc == RZ_OK; i++)
            rc = nvml_device(c, &api, i, driver, cuda);
        api.shutdown();
    }
    dlclose(lib);
    return rc;
}

/* ---- AMD (sysfs) ---- */

static bool read_text(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return got > 0;
}

/* "card0" but not the connectors ("card0-DP-1"). */
static bool is_card(const char *name)
{
    if (strncmp(name, "card", 4) != 0 || !name[4])
        return false;
    for (const char *p = name + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static int amd_card(rz_caps *c, const char *dev, const char *driver)
{
    if (c->info.n_gpus >= RZ_CAPS_MAX_GPUS)
        return RZ_OK;
    char path[1100], vendor[32], text[64], model[160];
    snprintf(path, sizeof path, "%s/vendor", dev);
    if (!read_text(path, vendor, sizeof vendor) || strcmp(vendor, "0x1002") != 0)
        return RZ_OK;
    snprintf(path, sizeof path, "%s/mem_info_vram_total", dev);
    unsigned long long vram = 0;
    if (read_text(path, text, sizeof text))
        vram = strtoull(text, NULL, 10);
    snprintf(path, sizeof path, "%s/product_name", dev);
    if (!read_text(path, model, sizeof model)) {
        snprintf(path, sizeof path, "%s/device", dev);
        if (read_text(path, text, sizeof text))
            snprintf(model, sizeof model, "AMD GPU %.32s", text);
        else
            snprintf(model, sizeof model, "AMD GPU");
    }
    rz_gpu_info g = { .vendor = "amd", .model = model, .driver = driver,
                      .vram_mb = vram >> 20, .utilization_pct = -1 };
    snprintf(path, sizeof path, "%s/gpu_busy_percent", dev);
    if (read_text(path, text, sizeof text)) {
        long u = strtol(text, NULL, 10);
        if (u >= 0 && u <= 100)
            g.utilization_pct = (int32_t)u;
    }
    return rz__caps_add_gpu(c, &g);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int rz__hw_gpus_amd(rz_caps *c, const char *sysfs)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/class/drm", sysfs);
    DIR *d = opendir(dir);
    if (!d)
        return RZ_OK;
    rz__strv cards = {0};
    char driver[64] = "", path[600];
    snprintf(path, sizeof path, "%s/module/amdgpu/version", sysfs);
    if (!read_text(path, driver, sizeof driver))
        driver[0] = '\0';
    struct dirent *e;
    int rc = RZ_OK;
    while (rc == RZ_OK && (e = readdir(d)) != NULL)
        if (is_card(e->d_name))
            rc = rz__strv_add(&cards, e->d_name);
    closedir(d);
    if (cards.n > 1)
        qsort(cards.v, cards.n, sizeof *cards.v, cmp_name);
    for (size_t i = 0; i < cards.n && rc == RZ_OK; i++) {
        char dev[1024];
        snprintf(dev, sizeof dev, "%.512s/%.256s/device", dir, cards.v[i]);
        rc = amd_card(c, dev, driver);
    }
    rz__strv_free(&cards);
    return rc;
}

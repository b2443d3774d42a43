/* Detection of this machine: hwloc topology, CPU identity and features,
 * memory, storage of the data directory, container engine sockets. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hwloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "hw/hw_impl.h"

/* ---- Topology (hwloc) ---- */

static uint32_t count_type(hwloc_topology_t t, hwloc_obj_type_t type)
{
    int n = hwloc_get_nbobjs_by_type(t, type);
    return n > 0 ? (uint32_t)n : 0;
}

static uint64_t cache_kb(hwloc_topology_t t, hwloc_obj_type_t type)
{
    uint64_t sum = 0;
    int n = hwloc_get_nbobjs_by_type(t, type);
    for (int i = 0; i < n; i++) {
        hwloc_obj_t o = hwloc_get_obj_by_type(t, type, i);
        if (o && o->attr)
            sum += o->attr->cache.size / 1024;
    }
    return sum;
}

/* CPUVendor / CPUModel as hwloc found them on the first package. */
static const char *package_info(hwloc_topology_t t, const char *name)
{
    hwloc_obj_t p = hwloc_get_obj_by_type(t, HWLOC_OBJ_PACKAGE, 0);
    const char *v = p ? hwloc_obj_get_info_by_name(p, name) : NULL;
    if (!v)
        v = hwloc_obj_get_info_by_name(hwloc_get_root_obj(t), name);
    return v;
}

static int detect_topology(rz_caps *c)
{
    hwloc_topology_t t;
    if (hwloc_topology_init(&t) != 0)
        return rz__error(RZ_EIO, "hwloc: cannot initialise a topology");
    if (hwloc_topology_load(t) != 0) {
        hwloc_topology_destroy(t);
        return rz__error(RZ_EIO, "hwloc: cannot load the topology");
    }
    rz_caps_info *i = &c->info;
    i->packages = count_type(t, HWLOC_OBJ_PACKAGE);
    i->cores = count_type(t, HWLOC_OBJ_CORE);
    i->threads = count_type(t, HWLOC_OBJ_PU);
    i->numa_nodes = count_type(t, HWLOC_OBJ_NUMANODE);
    if (i->cores == 0)
        i->cores = i->threads;
    i->l1d_kb = cache_kb(t, HWLOC_OBJ_L1CACHE);
    i->l2_kb = cache_kb(t, HWLOC_OBJ_L2CACHE);
    i->l3_kb = cache_kb(t, HWLOC_OBJ_L3CACHE);
    i->memory_mb = hwloc_get_root_obj(t)->total_memory >> 20;
    const char *vendor = package_info(t, "CPUVendor");
    const char *model = package_info(t, "CPUModel");
    int rc = rz__set_str(&c->cpu_vendor, vendor);
    if (rc == RZ_OK)
        rc = rz__set_str(&c->cpu_model, model);
    hwloc_topology_destroy(t);
    return rc;
}

/* ---- Topology without hwloc (rz_hw_opts.light_topology) ---- */

#define LIGHT_MAX_CPUS 1024      /* more: hwloc, which handles them better */

/* Processors outside the affinity mask are left out, as hwloc leaves out
 * what the cgroup's cpuset disallows. */
typedef struct cpuinfo_scan {
    cpu_set_t allowed;
    uint32_t threads, n_pairs;
    bool in;                     /* the processor being read is allowed */
    long pkg, core;              /* of the processor being read; -1 none */
    long pairs[LIGHT_MAX_CPUS][2];
    char vendor[64], model[160];
} cpuinfo_scan;

static void add_pair(cpuinfo_scan *s)
{
    for (uint32_t i = 0; i < s->n_pairs; i++)
        if (s->pairs[i][0] == s->pkg && s->pairs[i][1] == s->core)
            return;
    s->pairs[s->n_pairs][0] = s->pkg;
    s->pairs[s->n_pairs][1] = s->core;
    s->n_pairs++;
}

/* The text after "name<tabs>: " on a cpuinfo line, or NULL. */
static const char *field(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n) != 0)
        return NULL;
    line += n + strspn(line + n, " \t");
    return *line == ':' ? line + 1 + strspn(line + 1, " ") : NULL;
}

static bool scan_cpuinfo(cpuinfo_scan *s)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return false;
    char line[512];
    const char *v;
    bool ok = true;
    s->pkg = s->core = -1;
    if (sched_getaffinity(0, sizeof s->allowed, &s->allowed) != 0) {
        fclose(f);
        return false;
    }
    while (ok && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if ((v = field(line, "processor"))) {
            long cpu = strtol(v, NULL, 10);
            s->in = cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, &s->allowed);
            s->threads += s->in;
            s->pkg = s->core = -1;
        } else if ((v = field(line, "physical id"))) {
            s->pkg = strtol(v, NULL, 10);
        } else if ((v = field(line, "core id"))) {
            s->core = strtol(v, NULL, 10);
        } else if ((v = field(line, "vendor_id")) && !s->vendor[0]) {
            snprintf(s->vendor, sizeof s->vendor, "%s", v);
        } else if ((v = field(line, "model name")) && !s->model[0]) {
            snprintf(s->model, sizeof s->model, "%s", v);
        }
        if (s->in && s->pkg >= 0 && s->core >= 0) {
            ok = s->n_pairs < LIGHT_MAX_CPUS;
            if (ok)
                add_pair(s);
            s->pkg = s->core = -1;
        }
    }
    fclose(f);
    return ok && s->threads > 0 && s->n_pairs > 0;
}

static uint32_t count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint32_t n = 0;
    size_t len = strlen(prefix);
    const struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, len) == 0 &&
             e->d_name[len] >= '0' && e->d_name[len] <= '9';
    closedir(d);
    return n;
}

/* 1 done, 0 not possible here (the caller asks hwloc), <0 error. */
static int light_topology(rz_caps *c)
{
    cpuinfo_scan *s = rz__calloc(1, sizeof *s);
    if (!s)
        return rz__error(RZ_ENOMEM, "out of memory");
    int rc = 0;
    if (scan_cpuinfo(s)) {
        rz_caps_info *i = &c->info;
        long pkgs[LIGHT_MAX_CPUS];
        uint32_t np = 0;
        for (uint32_t k = 0; k < s->n_pairs; k++) {
            uint32_t j = 0;
            while (j < np && pkgs[j] != s->pairs[k][0])
                j++;
            if (j == np)
                pkgs[np++] = s->pairs[k][0];
        }
        i->packages = np;
        i->cores = s->n_pairs;
        i->threads = s->threads;
        i->numa_nodes = count_prefixed("/sys/devices/system/node", "node");
        if (i->numa_nodes == 0)
            i->numa_nodes = 1;
        rc = rz__set_str(&c->cpu_vendor, s->vendor);
        if (rc == RZ_OK)
            rc = rz__set_str(&c->cpu_model, s->model);
        rc = rc == RZ_OK ? 1 : rc;
    }
    free(s);
    return rc;
}

/* A "Name: N kB" line of /proc/meminfo in MB; 0 if absent. hwloc has only
 * totals, and sums NUMA nodes, which some virtual machines report short. */
static uint64_t meminfo_mb(const char *name)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    unsigned long long kb = 0;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, name, n) == 0 && line[n] == ':' &&
            sscanf(line + n + 1, " %llu", &kb) == 1)
            break;
    fclose(f);
    return kb / 1024;
}

static void detect_memory(rz_caps *c)
{
    uint64_t total = meminfo_mb("MemTotal");
    if (total > c->info.memory_mb)
        c->info.memory_mb = total;
    uint64_t avail = meminfo_mb("MemAvailable");
    c->info.memory_available_mb = avail < c->info.memory_mb ? avail : c->info.memory_mb;
}

/* ---- Storage ---- */

static bool read_line(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)n, f) != NULL;
    fclose(f);
    if (ok)
        buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

/* The kind of the block device `dev` (a /sys/dev/block/M:m folder). A
 * partition has no queue/ of its own: its disk is the folder above it,
 * which the kernel reaches through "..": the link's target's parent. */
static const char *block_kind(const char *dev)
{
    char path[1024], line[256];
    snprintf(path, sizeof path, "%s/uevent", dev);
    FILE *f = fopen(path, "r");
    if (f) {
        bool nvme = false;
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "DEVNAME=nvme", 12) == 0)
                nvme = true;
        fclose(f);
        if (nvme)
            return "nvme";
    }
    snprintf(path, sizeof path, "%s/queue/rotational", dev);
    if (!read_line(path, line, sizeof line)) {
        snprintf(path, sizeof path, "%s/../queue/rotational", dev);
        if (!read_line(path, line, sizeof line))
            return "";
    }
    return strcmp(line, "0") == 0 ? "ssd" : "hdd";
}

const char *rz__hw_storage_kind(const char *path, const char *sysfs)
{
    struct stat st;
    if (stat(path, &st) != 0 || major(st.st_dev) == 0)
        return "";   /* overlay, tmpfs and other virtual file systems */
    char dev[512], under[1024];
    snprintf(dev, sizeof dev, "%s/dev/block/%u:%u", sysfs, major(st.st_dev),
             minor(st.st_dev));
    /* Device mapper (LVM, LUKS): judge by the first device underneath. */
    snprintf(under, sizeof under, "%s/slaves", dev);
    DIR *d = opendir(under);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            snprintf(under, sizeof under, "%s/slaves/%s", dev, e->d_name);
            closedir(d);
            return block_kind(under);
        }
        closedir(d);
    }
    return block_kind(dev);
}

static int detect_storage(rz_caps *c, const char *dir, const char *sysfs)
{
    struct statvfs vs;
    if (statvfs(dir, &vs) == 0) {
        uint64_t unit = vs.f_frsize ? vs.f_frsize : vs.f_bsize;
        c->info.storage_total_gb = (uint64_t)vs.f_blocks * unit >> 30;
        c->info.storage_free_gb = (uint64_t)vs.f_bavail * unit >> 30;
    }
    return rz__set_str(&c->storage_kind, rz__hw_storage_kind(dir, sysfs));
}

/* ---- Container engines ---- */

static bool socket_answers(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (!path || strlen(path) >= sizeof sa.sun_path)
        return false;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    /* EAGAIN: listening with a full backlog, which is still an engine. */
    bool ok = r == 0 || errno == EAGAIN;
    close(fd);
    return ok;
}

static bool docker_answers(void)
{
    const char *host = getenv("DOCKER_HOST");
    if (host && strncmp(host, "unix://", 7) == 0 && socket_answers(host + 7))
        return true;
    return socket_answers("/var/run/docker.sock") || socket_answers("/run/docker.sock");
}

static bool podman_answers(void)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg && *xdg) {
        char p[512];
        snprintf(p, sizeof p, "%s/podman/podman.sock", xdg);
        if (socket_answers(p))
            return true;
    }
    return socket_answers("/run/podman/podman.sock");
}

static int detect_runtimes(rz_caps *c)
{
    int rc = RZ_OK;
    if (docker_answers())
        rc = rz__strv_add(&c->runtimes, "docker");
    if (rc == RZ_OK && podman_answers())
        rc = rz__strv_add(&c->runtimes, "podman");
    return rc;
}

/* ---- The whole node ---- */

static int detect_identity(rz_caps *c)
{
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0 || !*host)
        strcpy(host, "localhost");
    host[sizeof host - 1] = '\0';
    struct utsname u;
    int rc = rz__set_str(&c->id, host);
    if (rc == RZ_OK && uname(&u) == 0)
        rc = rz__set_str(&c->arch, u.machine);
    return rc;
}

static int detect_all(rz_caps *c, const rz_hw_opts *o)
{
    const char *sysfs = o->sysfs_root ? o->sysfs_root : "/sys";
    int rc = detect_identity(c);
    if (rc == RZ_OK && o->version >= 2 && o->light_topology)
        rc = light_topology(c);
    if (rc == 0) rc = detect_topology(c);
    else if (rc == 1) rc = RZ_OK;
    if (rc == RZ_OK) rc = rz__hw_cpu_features(c);
    detect_memory(c);
    if (rc == RZ_OK) rc = detect_storage(c, o->data_dir ? o->data_dir : ".", sysfs);
    if (rc == RZ_OK && !o->skip_runtimes) rc = detect_runtimes(c);
    if (rc == RZ_OK && !o->skip_gpus) {
        rc = rz__hw_gpus_nvidia(c, o->nvml_path ? o->nvml_path : "libnvidia-ml.so.1");
        if (rc == RZ_OK)
            rc = rz__hw_gpus_amd(c, sysfs);
    }
    if (rc == RZ_OK) rc = rz__strv_add(&c->adapters, "process");
    if (rc == RZ_OK && c->runtimes.n > 0) rc = rz__strv_add(&c->adapters, "docker");
    rz__strv_sort_unique(&c->features);
    return rc;
}

int rz_hw_detect(rz_caps **out, const rz_hw_opts *opts)
{
    rz_hw_opts defaults = RZ_HW_OPTS_INIT;
    *out = NULL;
    if (opts && (opts->version < 1 || opts->version > RZ_HW_OPTS_VERSION))
        return rz__error(RZ_EINVAL, "rz_hw_opts.version %d is not 1 to %d",
                         opts->version, RZ_HW_OPTS_VERSION);
    rz_caps *c;
    int rc = rz__caps_new(&c);
    if (rc != RZ_OK)
        return rc;
    rc = detect_all(c, opts ? opts : &defaults);
    if (rc != RZ_OK) {
        rz_caps_free(c);
        return rc;
    }
    rz__caps_sync(c);
    *out = c;
    return RZ_OK;
}

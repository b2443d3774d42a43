/* rhizos/hw.h — what a node has: hardware detection and node capabilities.
 *
 * An rz_caps is one node's capabilities, the object of docs/formats.md that
 * `rhizos-node info --json` prints, a node registers and `rhizos match
 * --nodes` reads. It comes from detection (rz_hw_detect) or from JSON
 * (rz_caps_parse); fields the library does not know are kept and written
 * back out by rz_caps_to_json.
 *
 * Detection reads hwloc for the topology, cpuid (x86) or the auxiliary
 * vector (Arm) for CPU features, statvfs and sysfs for storage, probes the
 * Docker/Podman Engine sockets with connect(), loads NVML at run time
 * (dlopen "libnvidia-ml.so.1"; no build-time dependency) for NVIDIA GPUs and
 * reads /sys/class/drm for AMD GPUs. A machine without GPUs is a normal
 * answer, not an error.
 */
#ifndef RHIZOS_HW_H
#define RHIZOS_HW_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_caps rz_caps;

/* Most GPUs one node may describe (a bigger cluster registers as several
 * nodes, or as one node whose adapter hands work to its own scheduler). */
#define RZ_CAPS_MAX_GPUS 64

typedef struct rz_gpu_info {
    const char *vendor;          /* "nvidia", "amd", "intel", ... */
    const char *model;           /* "NVIDIA H100 80GB HBM3"; "" unknown */
    const char *driver;          /* driver version; "" unknown */
    const char *cuda_version;    /* "12.4" (NVIDIA only); "" unknown */
    const char *bus_id;          /* PCI address; "" unknown */
    uint64_t vram_mb;
    uint32_t cc_major, cc_minor; /* compute capability; 0.0 unknown/none */
    int32_t utilization_pct;     /* 0-100 at detection; -1 unknown */
} rz_gpu_info;

/* A read-only view of a node. Borrowed from its rz_caps: valid until the
 * rz_caps is changed or freed. Strings are never NULL ("" when unknown). */
typedef struct rz_caps_info {
    const char *id;
    /* CPU */
    const char *cpu_vendor;      /* "GenuineIntel", "AuthenticAMD", "ARM" */
    const char *cpu_model;
    const char *arch;            /* "x86_64", "aarch64" */
    uint32_t cores;              /* physical cores: the schedulable unit */
    uint32_t threads;            /* hardware threads */
    uint32_t packages;           /* sockets; 0 unknown */
    uint32_t numa_nodes;         /* 0 unknown */
    uint64_t l1d_kb, l2_kb, l3_kb; /* summed over the machine; 0 unknown */
    const char *const *features; /* "avx2", "neon", ...; sorted */
    size_t n_features;
    /* memory */
    uint64_t memory_mb;          /* total */
    uint64_t memory_available_mb;/* free at detection; 0 unknown */
    /* storage of the data directory */
    uint64_t storage_total_gb, storage_free_gb;
    const char *storage_kind;    /* "nvme", "ssd", "hdd", "" unknown */
    /* GPUs */
    const rz_gpu_info *gpus;
    size_t n_gpus;
    /* what the node serves */
    const char *const *adapters; /* "process", "docker", ... */
    size_t n_adapters;
    const char *const *runtimes; /* reachable engine sockets: "docker", "podman" */
    size_t n_runtimes;
    const char *region;          /* "region" or labels.region; "" none */
    /* market */
    uint64_t gpu_hour_micros, cpu_hour_micros, memory_gb_hour_micros;
    double reputation;           /* 0..1; 1 when not given */
    uint32_t max_concurrent_jobs;/* 0: no limit beyond the resources */
    /* benchmark (rz_hw_benchmark); 0 when not measured */
    double bench_cpu_mops;       /* integer + float ops per second / 1e6, one thread */
    double bench_memory_mbps;    /* memcpy bandwidth, MB/s */
    /* Claims not verified by the orchestrator's challenges (RZ_CAP_*
     * bits; docs/node.md). Never read from JSON: 0 (taken at its word)
     * unless set by rz_caps_set_trust, as an engine does. */
    uint32_t unverified;
} rz_caps_info;

/* Kinds of claim a challenge verifies (rz_caps_info.unverified). */
#define RZ_CAP_CPU 1u
#define RZ_CAP_MEMORY 2u
#define RZ_CAP_GPU 4u

RZ_EXTERN const rz_caps_info *rz_caps_get(const rz_caps *caps);
/* Value of label `key`, or NULL. Borrowed like rz_caps_get(). */
RZ_EXTERN const char *rz_caps_label(const rz_caps *caps, const char *key);
RZ_EXTERN size_t rz_caps_label_count(const rz_caps *caps);
/* The i-th label (sorted by key); RZ_OK or RZ_ENOENT past the end. */
RZ_EXTERN RZ_NODISCARD int rz_caps_label_at(const rz_caps *caps, size_t i,
                                            const char **key,
                                            const char **value);

/* Parse one node object (docs/formats.md). Wrong types, negative or absurd
 * numbers fail with RZ_EINVALID and a JSON pointer in rz_error_last(). */
RZ_EXTERN RZ_NODISCARD int rz_caps_parse(rz_caps **out, const char *json,
                                         size_t len);
/* Parse a list of nodes: a JSON array of node objects, or {"nodes":[...]}.
 * *out is an array of *count nodes; free it with rz_caps_free_list. */
RZ_EXTERN RZ_NODISCARD int rz_caps_parse_list(rz_caps ***out, size_t *count,
                                              const char *json, size_t len);
RZ_EXTERN void rz_caps_free_list(rz_caps **list, size_t count);
/* The node object, pretty-printed when `pretty`; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_caps_to_json(const rz_caps *caps, int pretty,
                                           char **out);
/* A readable multi-line summary; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_caps_to_text(const rz_caps *caps, char **out);
RZ_EXTERN RZ_NODISCARD int rz_caps_clone(rz_caps **out, const rz_caps *caps);
RZ_EXTERN void rz_caps_free(rz_caps *caps);

/* What an operator configures rather than detects. */
RZ_EXTERN RZ_NODISCARD int rz_caps_set_id(rz_caps *caps, const char *id);
RZ_EXTERN RZ_NODISCARD int rz_caps_set_label(rz_caps *caps, const char *key,
                                             const char *value);
RZ_EXTERN RZ_NODISCARD int rz_caps_set_prices(rz_caps *caps,
                                              uint64_t gpu_hour_micros,
                                              uint64_t cpu_hour_micros,
                                              uint64_t memory_gb_hour_micros);
/* What the node serves, as verified by the caller (e.g. "docker" only when
 * the container engine answers; runtime "nvidia" when it runs GPU
 * containers). Sorted and deduplicated; RZ_EINVAL for an empty name, and
 * the caps are unchanged then. */
RZ_EXTERN RZ_NODISCARD int rz_caps_set_adapters(rz_caps *caps,
                                                const char *const *adapters,
                                                size_t n);
RZ_EXTERN RZ_NODISCARD int rz_caps_set_runtimes(rz_caps *caps,
                                                const char *const *runtimes,
                                                size_t n);
/* reputation in [0,1]; RZ_EINVAL otherwise. */
RZ_EXTERN RZ_NODISCARD int rz_caps_set_market(rz_caps *caps, double reputation,
                                              uint32_t max_concurrent_jobs);
/* What the orchestrator measured rather than what the node said: its
 * reputation in [0,1] and the RZ_CAP_* claims not verified. RZ_EINVAL
 * (nothing changed) for a reputation outside [0,1] or an unknown bit. */
RZ_EXTERN RZ_NODISCARD int rz_caps_set_trust(rz_caps *caps, double reputation,
                                             uint32_t unverified);

/* ---- Detection ---- */

#define RZ_HW_OPTS_VERSION 2
typedef struct rz_hw_opts {
    int version;              /* RZ_HW_OPTS_VERSION */
    const char *data_dir;     /* storage is measured here; NULL: "." */
    const char *sysfs_root;   /* NULL: "/sys" (tests point it at a fixture) */
    const char *nvml_path;    /* NULL: "libnvidia-ml.so.1" */
    int skip_gpus;            /* nonzero: no NVML / DRM probing */
    int skip_runtimes;        /* nonzero: no engine socket probing */
    /* Version 2. Nonzero: packages, cores, threads, NUMA nodes, vendor
     * and model from /proc/cpuinfo and sysfs, without hwloc (caches are 0,
     * unknown); hwloc all the same where cpuinfo has no core ids. For a
     * caller that only needs what matching reads (cores, memory), fast. */
    int light_topology;
} rz_hw_opts;
#define RZ_HW_OPTS_INIT { RZ_HW_OPTS_VERSION, NULL, NULL, NULL, 0, 0, 0 }

/* Detect this machine. `opts` may be NULL. The id is the host name; prices
 * are 0, reputation 1, no job limit, adapters "process" (+ "docker" when an
 * engine socket answers). Fails only when hwloc cannot load a topology or
 * memory runs out. */
RZ_EXTERN RZ_NODISCARD int rz_hw_detect(rz_caps **out, const rz_hw_opts *opts);

/* ---- Benchmark ---- */

typedef struct rz_hw_bench {
    double cpu_mops;          /* integer + float loop, one thread, Mops/s */
    double memory_mbps;       /* memcpy of a buffer larger than the caches */
    double seconds;           /* wall time the measurement took */
} rz_hw_bench;

/* Measure for about `budget_s` seconds (clamped to 0.1..10). */
RZ_EXTERN RZ_NODISCARD int rz_hw_benchmark(rz_hw_bench *out, double budget_s);
RZ_EXTERN RZ_NODISCARD int rz_caps_set_benchmark(rz_caps *caps,
                                                 const rz_hw_bench *b);
/* {"cpu_mops","memory_mbps","seconds"}; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_hw_bench_to_json(const rz_hw_bench *b,
                                               char **out);
RZ_EXTERN RZ_NODISCARD int rz_hw_bench_parse(rz_hw_bench *out, const char *json,
                                             size_t len);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_HW_H */

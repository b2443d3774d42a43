/* Internal shape of node capabilities, shared by detection and JSON (the
 * matcher reads nodes through rhizos/hw.h only). */
#ifndef RZ_HW_IMPL_H
#define RZ_HW_IMPL_H

#include "common/json.h"
#include "rhizos/hw.h"

struct rz_caps {
    rz_caps_info info;       /* the public view; strings point into the below */
    char *id, *cpu_vendor, *cpu_model, *arch, *storage_kind, *region;
    rz__strv features, adapters, runtimes;
    rz_gpu_info *gpus;       /* strings owned */
    rz__labels labels;
    bool has_benchmark;
    cJSON *doc;              /* the parsed document (unknown fields), or NULL */
};

/* An empty node (strings ""), reputation 1. */
RZ_HIDDEN int rz__caps_new(rz_caps **out);
RZ_HIDDEN int rz__caps_add_gpu(rz_caps *c, const rz_gpu_info *g);
/* Refresh the view (pointers, counts) after the fields changed. */
RZ_HIDDEN void rz__caps_sync(rz_caps *c);
/* From a parsed object; `base` is the JSON pointer prefix for errors. */
RZ_HIDDEN int rz__caps_from_cjson(rz_caps **out, const cJSON *obj, const char *base);

/* ---- Detection pieces (detect.c, gpu.c) ---- */
RZ_HIDDEN int rz__hw_cpu_features(rz_caps *c);
RZ_HIDDEN int rz__hw_gpus_nvidia(rz_caps *c, const char *lib);
RZ_HIDDEN int rz__hw_gpus_amd(rz_caps *c, const char *sysfs);
/* "nvme", "ssd", "hdd" or "" for the block device holding `path`. */
RZ_HIDDEN const char *rz__hw_storage_kind(const char *path, const char *sysfs);

#endif

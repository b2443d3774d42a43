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
    /* "llm": the models the node serves (names, sorted) and its price,
     * per 1,000 tokens or per second of run time (llm_per_second), never
     * both (docs/llm.md); the object itself stays in doc. */
    rz__strv llm_models;
    uint64_t llm_1k_micros;
    bool llm_per_second;
    /* Models with a price of their own (models[].price_1k_tokens_micros or
     * price_second_micros), which wins over the node's for them. */
    struct rz__llm_price { char *model; uint64_t micros; bool per_second; } *llm_prices;
    size_t n_llm_prices;
    cJSON *doc;              /* the parsed document (unknown fields), or NULL */
};

/* The "llm" of a node: does it serve `model`; its price for it, per 1,000
 * tokens, or per second when *per_second comes back true. */
RZ_HIDDEN bool rz__caps_llm_serves(const rz_caps *c, const char *model);
RZ_HIDDEN uint64_t rz__caps_llm_price(const rz_caps *c, const char *model,
                                      bool *per_second);
/* Set model's own price (replacing one set before). */
RZ_HIDDEN int rz__caps_llm_price_set(rz_caps *c, const char *model, uint64_t micros,
                                     bool per_second);

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

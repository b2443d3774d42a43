/* Internal shape of node capabilities, shared by detection, JSON and the
 * matcher. */
#ifndef RZ_HW_IMPL_H
#define RZ_HW_IMPL_H

#include <cjson/cJSON.h>

#include "common/internal.h"
#include "rhizos/hw.h"

/* A growable list of owned strings. */
typedef struct rz__strv {
    char **v;
    size_t n, cap;
} rz__strv;

RZ_HIDDEN int rz__strv_add(rz__strv *s, const char *str);   /* copies */
RZ_HIDDEN bool rz__strv_has(const rz__strv *s, const char *str);
RZ_HIDDEN void rz__strv_sort_unique(rz__strv *s);
RZ_HIDDEN void rz__strv_free(rz__strv *s);

/* Key/value pairs, kept sorted by key. */
typedef struct rz__labels {
    char **keys, **vals;
    size_t n, cap;
} rz__labels;

RZ_HIDDEN int rz__labels_set(rz__labels *l, const char *key, const char *val);
RZ_HIDDEN const char *rz__labels_get(const rz__labels *l, const char *key);
RZ_HIDDEN void rz__labels_free(rz__labels *l);

/* CPU features the matcher tests as bits; others are compared as strings. */
RZ_HIDDEN int rz__feature_bit(const char *name);   /* 0..63, or -1 */

struct rz_caps {
    rz_caps_info info;       /* the public view; strings point into the below */
    char *id, *cpu_vendor, *cpu_model, *arch, *storage_kind, *region;
    rz__strv features, adapters, runtimes;
    rz_gpu_info *gpus;       /* strings owned */
    rz__labels labels;
    uint64_t feature_mask;   /* bits of rz__feature_bit */
    bool has_benchmark;
    cJSON *doc;              /* the parsed document (unknown fields), or NULL */
};

/* An empty node (strings ""), reputation 1. */
RZ_HIDDEN int rz__caps_new(rz_caps **out);
/* Replace an owned string; RZ_ENOMEM. */
RZ_HIDDEN int rz__set_str(char **slot, const char *value);
RZ_HIDDEN int rz__caps_add_gpu(rz_caps *c, const rz_gpu_info *g);
/* Refresh the view (pointers, counts, mask) after the fields changed. */
RZ_HIDDEN void rz__caps_sync(rz_caps *c);
/* From a parsed object; `base` is the JSON pointer prefix for errors. */
RZ_HIDDEN int rz__caps_from_cjson(rz_caps **out, const cJSON *obj, const char *base);

/* ---- Strict JSON field readers (caps.c) ----
 * Absent fields leave *out untouched and return RZ_OK; present ones of the
 * wrong type or out of range return RZ_EINVALID with the JSON pointer set. */
RZ_HIDDEN int rz__json_u64(const cJSON *obj, const char *name, uint64_t max,
                           const char *base, uint64_t *out);
RZ_HIDDEN int rz__json_real(const cJSON *obj, const char *name, double lo,
                            double hi, const char *base, double *out);
/* Strings up to RZ__JSON_STR_MAX bytes; *out borrowed from the document. */
#define RZ__JSON_STR_MAX 1024
RZ_HIDDEN int rz__json_str(const cJSON *obj, const char *name,
                           const char *base, const char **out);
RZ_HIDDEN int rz__json_obj(const cJSON *obj, const char *name,
                           const char *base, const cJSON **out);
RZ_HIDDEN int rz__json_strv(const cJSON *obj, const char *name,
                            const char *base, rz__strv *out);
RZ_HIDDEN int rz__json_labels(const cJSON *obj, const char *name,
                              const char *base, rz__labels *out);
/* Copy members of `src` missing from `dst` (recursively into objects and
 * arrays of objects), so unknown fields survive a round trip. */
RZ_HIDDEN int rz__json_keep_unknown(cJSON *dst, const cJSON *src);
/* A list document: an array, or an object holding the array under `key`. */
RZ_HIDDEN int rz__json_list(const cJSON *root, const char *key,
                            const cJSON **arr);
/* Parse a whole document with a size cap; RZ_ESYNTAX with the offset. */
RZ_HIDDEN int rz__json_parse(cJSON **out, const char *json, size_t len);

/* ---- Detection pieces (detect.c, gpu.c) ---- */
RZ_HIDDEN int rz__hw_cpu_features(rz_caps *c);
RZ_HIDDEN int rz__hw_gpus_nvidia(rz_caps *c, const char *lib);
RZ_HIDDEN int rz__hw_gpus_amd(rz_caps *c, const char *sysfs);
/* "nvme", "ssd", "hdd" or "" for the block device holding `path`. */
RZ_HIDDEN const char *rz__hw_storage_kind(const char *path, const char *sysfs);

#endif

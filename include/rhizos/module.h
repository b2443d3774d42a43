/* rhizos/module.h — the module registry: manifests from local folders.
 *
 * A registry folder holds <module>/module.json manifests (DESIGN §4). A module
 * is referenced as "<id>", "<id>@1.2.3", "<id>@1", "<id>@1.2", "<id>@^1.2" or
 * "<id>@~1.2.3"; the highest matching version wins.
 */
#ifndef RHIZOS_MODULE_H
#define RHIZOS_MODULE_H

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_registry rz_registry;
typedef struct rz_module rz_module;

RZ_EXTERN int rz_registry_new(rz_registry **out);
RZ_EXTERN void rz_registry_free(rz_registry *reg);
/* Load every <dir>/<name>/module.json. Bad manifests are reported to `diags`
 * (may be NULL) and skipped; RZ_ENOENT if `dir` cannot be read. Folders added
 * earlier win for an identical id@version. */
RZ_EXTERN int rz_registry_add_dir(rz_registry *reg, const char *dir,
                                  rz_diags *diags);
/* Add the folders of a colon-separated list (e.g. $RHIZOS_MODULES). */
RZ_EXTERN int rz_registry_add_path_list(rz_registry *reg, const char *list,
                                        rz_diags *diags);

RZ_EXTERN size_t rz_registry_count(const rz_registry *reg);
/* Borrowed, valid while the registry lives; sorted by id then version. */
RZ_EXTERN const rz_module *rz_registry_get(const rz_registry *reg, size_t i);
/* `spec` is the version part ("", "1.2.3", "^1.2", ...); NULL means any.
 * RZ_ENOENT when no module has the id, RZ_EMODULE when no version matches. */
RZ_EXTERN int rz_registry_resolve(const rz_registry *reg, const char *id,
                                  const char *spec, const rz_module **out);

/* Borrowed strings, valid while the registry lives. */
RZ_EXTERN const char *rz_module_id(const rz_module *m);
RZ_EXTERN const char *rz_module_version(const rz_module *m);
RZ_EXTERN const char *rz_module_name(const rz_module *m);
RZ_EXTERN const char *rz_module_description(const rz_module *m);
RZ_EXTERN const char *rz_module_dir(const rz_module *m);
/* The manifest as canonical JSON. Release with rz_free. */
RZ_EXTERN int rz_module_manifest_json(const rz_module *m, char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_MODULE_H */

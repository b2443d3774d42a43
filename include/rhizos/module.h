/* rhizos/module.h — the module registry: manifests from local folders and
 * HTTP indexes, optionally signed.
 *
 * A registry folder holds <module>/module.json manifests (docs/formats.md).
 * An HTTP index is a JSON document {"modules":[{"id","version","manifest":
 * <URL, absolute or relative to the index, or the manifest object>,
 * "sha256"?: <hex digest of the fetched manifest bytes>}]}
 * (docs/modules.md). A module is referenced as "<id>", "<id>@1.2.3",
 * "<id>@1", "<id>@1.2", "<id>@^1.2" or "<id>@~1.2.3", each optionally
 * prefixed "chain://"; the highest matching version wins. "^0.x" follows
 * npm: "^0.2" stays below 0.3.0.
 */
#ifndef RHIZOS_MODULE_H
#define RHIZOS_MODULE_H

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_registry rz_registry;
typedef struct rz_module rz_module;

RZ_EXTERN RZ_NODISCARD int rz_registry_new(rz_registry **out);
RZ_EXTERN void rz_registry_free(rz_registry *reg);
/* Load every <dir>/<name>/module.json. Bad manifests are reported to `diags`
 * (may be NULL) and skipped; RZ_ENOENT if `dir` cannot be read. Folders added
 * earlier win for an identical id@version. */
RZ_EXTERN RZ_NODISCARD int rz_registry_add_dir(rz_registry *reg,
                                               const char *dir,
                                               rz_diags *diags);
/* Load every module of an HTTP index (http:// or https:// only), through
 * the on-disk cache (rz_registry_set_cache_dir) with ETag revalidation.
 * Unreachable with a cached copy: the copy is used and a warning added to
 * `diags`. Unreachable without one: RZ_EIO (RZ_ETOOBIG over the size limit,
 * RZ_ESYNTAX for a document that is not an index), rz_error_last() naming
 * the URL and libcurl's reason. Bad entries are reported to `diags` and
 * skipped. */
RZ_EXTERN RZ_NODISCARD int rz_registry_add_url(rz_registry *reg,
                                               const char *url,
                                               rz_diags *diags);
/* rz_registry_add_url for an http(s) URL, else rz_registry_add_dir. */
RZ_EXTERN RZ_NODISCARD int rz_registry_add(rz_registry *reg,
                                           const char *dir_or_url,
                                           rz_diags *diags);
/* Add the folders and URLs of a colon-separated list (e.g. $RHIZOS_MODULES).
 * A URL's entry ends at the first ':' after its host[:port]. */
RZ_EXTERN RZ_NODISCARD int rz_registry_add_path_list(rz_registry *reg,
                                                     const char *list,
                                                     rz_diags *diags);
/* What the RhizOS programs add after their own --modules: every entry of
 * $RHIZOS_MODULES, then the modules that ship with RhizOS
 * (rz_data_path("modules"): $datadir/rhizos/modules, or examples/modules of
 * the source tree for a library in its build tree). Never the working
 * directory's. Problems are diagnostics; a missing folder is not one. */
RZ_EXTERN RZ_NODISCARD int rz_registry_add_defaults(rz_registry *reg,
                                                    rz_diags *diags);

/* Require signatures: once a publisher key (64 hex digits or base64 of the
 * 32-byte Ed25519 key) is trusted, modules added afterwards that are
 * unsigned or signed by another key are refused (an RZ_EAUTH diagnostic,
 * skipped). A signature that does not verify is refused in any case. */
RZ_EXTERN RZ_NODISCARD int rz_registry_trust(rz_registry *reg,
                                             const char *publisher_key);
/* Cache folder of HTTP indexes; NULL (the default) means
 * $XDG_CACHE_HOME/rhizos/registry, else ~/.cache/rhizos/registry. */
RZ_EXTERN RZ_NODISCARD int rz_registry_set_cache_dir(rz_registry *reg,
                                                     const char *dir);
/* Per-request time limit and the largest index accepted (defaults below);
 * a manifest, local or fetched, may have RZ_MODULE_MANIFEST_MAX bytes. */
#define RZ_REGISTRY_DEFAULT_TIMEOUT_MS 20000L
#define RZ_REGISTRY_DEFAULT_INDEX_MAX (16u * 1024u * 1024u)    /* 16 MiB */
#define RZ_MODULE_MANIFEST_MAX (4u * 1024u * 1024u)            /* 4 MiB */
RZ_EXTERN RZ_NODISCARD int rz_registry_set_http_limits(rz_registry *reg,
                                                       long timeout_ms,
                                                       size_t max_index_bytes);

RZ_EXTERN size_t rz_registry_count(const rz_registry *reg);
/* Borrowed, valid while the registry lives; sorted by id then version. */
RZ_EXTERN const rz_module *rz_registry_get(const rz_registry *reg, size_t i);
/* `spec` is the version part ("", "1.2.3", "^1.2", ...); NULL means any.
 * RZ_ENOENT when no module has the id, RZ_EMODULE when no version matches. */
RZ_EXTERN RZ_NODISCARD int rz_registry_resolve(const rz_registry *reg,
                                               const char *id, const char *spec,
                                               const rz_module **out);

/* Borrowed strings, valid while the registry lives. */
RZ_EXTERN const char *rz_module_id(const rz_module *m);
RZ_EXTERN const char *rz_module_version(const rz_module *m);
RZ_EXTERN const char *rz_module_name(const rz_module *m);
RZ_EXTERN const char *rz_module_description(const rz_module *m);
/* Folder of module.json; NULL for a manifest served over HTTP. */
RZ_EXTERN const char *rz_module_dir(const rz_module *m);
/* The adapter a step of `m` runs with under its config (JSON text, or
 * NULL): "llm" when the config selects the module's node-served model
 * (the manifest's "local_llm", docs/modules.md), else the manifest's
 * exec.adapter ("process" when it names none). Borrowed, static or the
 * module's; NULL only for a NULL module. */
RZ_EXTERN const char *rz_module_step_adapter(const rz_module *m,
                                             const char *config_json);
/* The module.json path or the manifest's URL. */
RZ_EXTERN const char *rz_module_origin(const rz_module *m);
/* Hex public key of the verified signature, NULL when unsigned. */
RZ_EXTERN const char *rz_module_publisher(const rz_module *m);
/* The manifest as canonical JSON. Release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_module_manifest_json(const rz_module *m,
                                                   char **out);
/* SHA-256 of the canonical manifest as 64 lowercase hex digits: what an
 * orchestrator sends with a job so a node can check that its own copy of
 * the module is the same one. */
RZ_EXTERN RZ_NODISCARD int rz_module_digest(const rz_module *m, char hex[65]);

/* ---- Signing (Ed25519, libsodium) ----
 * The signature covers the canonical manifest: keys sorted at every level,
 * no whitespace, the top-level "signature" member left out. It is stored as
 * "signature": {"publisher": <hex public key>, "sig": <base64>}. */

/* New key pair: the secret key goes to a new file (mode 0600, 128 hex
 * digits; RZ_EEXISTS if the file exists), the public key to `public_hex`. */
RZ_EXTERN RZ_NODISCARD int rz_sign_keygen(const char *secret_key_file,
                                          char public_hex[65]);
/* Sign manifest text with the key of `secret_key_file` (which must not be
 * readable by group or others: RZ_EAUTH). *out is the manifest with its
 * "signature" member replaced, pretty-printed; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_manifest_sign(const char *json, size_t len,
                                            const char *secret_key_file,
                                            char **out);
/* RZ_OK when the manifest carries a signature that verifies and, if
 * `n_trusted` > 0, was made by one of `trusted`; else RZ_EAUTH (RZ_EINVAL
 * for a malformed trusted key, RZ_ESYNTAX for text that is not a JSON
 * object). *publisher (may be NULL) gets the hex key; release with rz_free. */
RZ_EXTERN RZ_NODISCARD int rz_manifest_verify(const char *json, size_t len,
                                              const char *const *trusted,
                                              size_t n_trusted,
                                              char **publisher);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_MODULE_H */

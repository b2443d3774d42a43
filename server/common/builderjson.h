/* What the console's builder is answered, the same from both servers that
 * serve it (rhizos-orchestrator's routes_builder.c, rhizos-ui). */
#ifndef RHIZOS_SERVER_BUILDERJSON_H
#define RHIZOS_SERVER_BUILDERJSON_H

#include <stdbool.h>

#include <cJSON.h>

#include "rhizos/rhizos.h"

/* A palette entry: id, version, name, description, publisher (or null),
 * digest, and the manifest whose requirements, ports and config schema the
 * builder shows and fills. */
cJSON *builder_module_json(const rz_module *m);
/* Whether `q` (NULL or empty: everything) is in the module's id, name or
 * description, ignoring case. */
bool builder_module_matches(const rz_module *m, const char *q);
/* The diagnostics as a JSON array (rz_diags_to_json's entries; empty when
 * that fails). */
cJSON *builder_diags_json(const rz_diags *d);
/* The validate route's answer, {"valid", "errors", "warnings",
 * "diagnostics"}: `rc` the outcome of parsing and validating. */
cJSON *builder_validate_json(int rc, const rz_diags *d);

#endif

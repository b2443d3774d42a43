/* rhizos/schema.h — JSON Schema (draft-07) validation.
 *
 * Module manifests describe their configuration with a JSON Schema; the
 * flow validator checks each step's config against it. The same validator
 * is available here for any JSON document.
 *
 * Keywords: type, enum, const, properties, required, additionalProperties,
 * patternProperties, propertyNames, dependencies, items (both forms),
 * additionalItems, contains, minItems, maxItems, uniqueItems, minProperties,
 * maxProperties, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
 * multipleOf, minLength, maxLength, pattern, allOf, anyOf, oneOf, not,
 * if/then/else, default, definitions and local $ref ("#", "#/a/b" JSON
 * pointers with ~0 ~1 and %-escapes), boolean schemas. Other keywords
 * (format, $comment, title, ...) are accepted and ignored. $id does not
 * change how $ref resolves; a $ref to another document fails to compile
 * with RZ_EUNSUPPORTED.
 *
 * Semantics worth knowing:
 *  - Numbers are IEEE doubles; a number with no fractional part is an
 *    integer (1.0 is an integer). 1 == 1.0 for enum, const, uniqueItems;
 *    object key order never matters.
 *  - multipleOf is decided on the shortest decimal form of both numbers,
 *    exactly: 0.0075 is a multiple of 0.0001, 0.3 of 0.1.
 *  - minLength/maxLength count Unicode code points (an emoji is 1).
 *  - pattern is a PCRE2 regular expression in UTF/UCP mode, unanchored,
 *    with ECMA-262's \uXXXX and $-at-end-only; a match that runs past the
 *    backtracking limit counts as a failure ("too expensive to match").
 *  - Validation does a bounded amount of work: a schema whose evaluation
 *    explodes (nested anyOf over $ref, ...) fails with RZ_ETOOBIG instead of
 *    hanging; evaluation deeper than RZ_SCHEMA_DEPTH_MAX levels fails the
 *    same way.
 *
 * A compiled schema is immutable: it may be used from several threads at
 * once.
 */
#ifndef RHIZOS_SCHEMA_H
#define RHIZOS_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

/* The deepest evaluation (schema levels on the instance path, $ref hops
 * included). */
#define RZ_SCHEMA_DEPTH_MAX 1000

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_schema rz_schema;

/* Compile the schema in `json` (`len` bytes, need not be NUL-terminated).
 * RZ_ESYNTAX: not JSON (rz_error_last() has LINE:COLUMN); RZ_EINVAL: not a
 * schema (a keyword with a wrong value, a bad regex, a $ref to nowhere or a
 * $ref loop; the JSON pointer of the culprit is in rz_error_last());
 * RZ_EUNSUPPORTED: a $ref to another document; RZ_ENOMEM. */
RZ_EXTERN RZ_NODISCARD int rz_schema_compile(rz_schema **out, const char *json,
                                             size_t len);
RZ_EXTERN void rz_schema_free(rz_schema *schema);

/* One validation error. Borrowed: valid during the callback only. */
typedef struct rz_schema_error {
    const char *pointer;   /* JSON pointer into the instance ("" the root) */
    const char *keyword;   /* failing keyword: "maximum", "required", ...;
                              "false" for the false schema */
    const char *message;   /* "0.7 is greater than the maximum 0.5" */
    const char *name;      /* required, dependencies: the missing property;
                              additionalProperties, propertyNames: the
                              offending one; NULL otherwise */
} rz_schema_error;

/* Called once per error, in document order of the keywords; return nonzero
 * to stop validating. */
typedef int (*rz_schema_error_fn)(void *ud, const rz_schema_error *err);

/* Validate the JSON document in `json`. RZ_OK valid; RZ_EINVALID invalid
 * (each error given to `fn`, which may be NULL); RZ_ESYNTAX not JSON;
 * RZ_ETOOBIG the schema needs too much work on this instance; RZ_ENOMEM.
 * Errors inside anyOf/oneOf/not alternatives are summarised by one error
 * on the combinator; allOf, $ref and if/then/else pass theirs through. */
RZ_EXTERN RZ_NODISCARD int rz_schema_validate(const rz_schema *schema,
                                              const char *json, size_t len,
                                              rz_schema_error_fn fn, void *ud);

/* The same, each error as a diagnostic (code RZ_EINVALID) at the
 * FILE:LINE:COLUMN of the offending value in `json` (`file` names it), with
 * the message "/pointer: message". A syntax error in the instance is one
 * RZ_ESYNTAX diagnostic. `diags` may be NULL. */
RZ_EXTERN RZ_NODISCARD int rz_schema_check(const rz_schema *schema,
                                           const char *json, size_t len,
                                           const char *file, rz_diags *diags);

/* Fill in defaults: wherever the instance has an object whose schema's
 * `properties` give a `default` for a missing member, a copy of it is
 * added (recursively, through properties, items, allOf and $ref; the
 * defaults themselves are not validated). *out is the resulting JSON text
 * (compact), released with rz_free. RZ_ESYNTAX, RZ_ENOMEM; RZ_ETOOBIG when
 * a recursive schema would add more than RZ_SCHEMA_DEFAULTS_MAX values. */
#define RZ_SCHEMA_DEFAULTS_MAX 10000
RZ_EXTERN RZ_NODISCARD int rz_schema_apply_defaults(const rz_schema *schema,
                                                    const char *json,
                                                    size_t len, char **out);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_SCHEMA_H */

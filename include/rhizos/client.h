/* rhizos/client.h — talk to an orchestrator (docs/api.md) over HTTP.
 *
 * One rz_client is one base URL, one key and one libcurl handle (connections
 * are reused). Not thread-safe: use one client per thread. The library never
 * prints; replies come back as JSON text released with rz_free.
 *
 * Errors: RZ_ECONNECT when the server cannot be reached (refused, DNS,
 * timeout before a reply), RZ_EPROTOCOL when the reply is not what the API
 * promises, else the server's own `{"error":{"code"}}` mapped back to its
 * rz_status (RZ_EAUTH, RZ_EDENIED, RZ_ENOENT, RZ_EFUNDS, RZ_ESTATE, ...) with
 * its message in rz_error_last().
 */
#ifndef RHIZOS_CLIENT_H
#define RHIZOS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "rhizos/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rz_client rz_client;

/* `url` like "http://127.0.0.1:8080" (a trailing slash is fine); `key`
 * the Bearer key, NULL for none. Both are copied. */
RZ_EXTERN RZ_NODISCARD int rz_client_new(rz_client **out, const char *url,
                                         const char *key);
RZ_EXTERN void rz_client_free(rz_client *c);
/* Replace the key (a node gets its token from registration). */
RZ_EXTERN RZ_NODISCARD int rz_client_set_key(rz_client *c, const char *key);
/* Whole-request limit in ms (0: none; RZ_CLIENT_DEFAULT_TIMEOUT_MS until
 * set). A long-poll needs more than its wait. Connecting is limited to
 * RZ_CLIENT_CONNECT_TIMEOUT_MS regardless. */
#define RZ_CLIENT_DEFAULT_TIMEOUT_MS 30000L
#define RZ_CLIENT_CONNECT_TIMEOUT_MS 10000L
RZ_EXTERN RZ_NODISCARD int rz_client_set_timeout(rz_client *c, long timeout_ms);
/* For https: trust the certificates in PEM file `path` (e.g. a private CA
 * or a self-signed server certificate) instead of the system's; NULL: the
 * system's again. The server's certificate and host name are always
 * verified. RZ_EIO when the file cannot be read. */
RZ_EXTERN RZ_NODISCARD int rz_client_set_ca_file(rz_client *c, const char *path);

/* Body and reply in CBOR (the node protocol); the caller still passes and
 * receives JSON text, converted with rz_wire_encode / rz_wire_decode. */
#define RZ_CLIENT_CBOR 0x1u

/* One request: `method` "GET", "POST", "DELETE"; `path` starting with "/"
 * (appended to the base URL, query included); `body_json` NULL for none.
 * *http_status (may be NULL) gets the status, *reply (may be NULL) the reply
 * body as JSON text or NULL when empty (204). RZ_OK for any 2xx. On an error
 * status *reply still receives the body (with its "diagnostics" for an
 * invalid flow). Replies over RZ_CLIENT_REPLY_MAX are RZ_ETOOBIG. */
#define RZ_CLIENT_REPLY_MAX ((size_t)64 << 20)                  /* 64 MiB */
RZ_EXTERN RZ_NODISCARD int rz_client_call(rz_client *c, const char *method,
                                          const char *path,
                                          const char *body_json, unsigned flags,
                                          long *http_status, char **reply);

/* GET `path` and hand a 2xx reply's body to `cb` piece by piece as it
 * arrives (nothing is kept, so any size passes; a blob's bytes,
 * GET /api/v1/blobs/{sha256}). `cb` returns 0 to go on, or an rz_status
 * that stops the transfer and is returned. An error reply is read as
 * rz_client_call reads one. *http_status (may be NULL) gets the status. */
typedef int (*rz_client_bytes_cb)(void *ud, const void *data, size_t len);
RZ_EXTERN RZ_NODISCARD int rz_client_get_bytes(rz_client *c, const char *path,
                                               rz_client_bytes_cb cb, void *ud,
                                               long *http_status);

/* PUT `len` bytes of `data` (any bytes: a part of a blob, PUT
 * /api/v1/blobs/{sha256}?...) as application/octet-stream; the status
 * and reply as rz_client_call gives them (RZ_OK for any 2xx; on an error
 * status *reply still receives the body). */
RZ_EXTERN RZ_NODISCARD int rz_client_put_bytes(rz_client *c, const char *path,
                                               const void *data, size_t len,
                                               long *http_status, char **reply);

/* Server-sent events of `path` (e.g. "/api/v1/flows/7/events"): `cb` is
 * called with each event's name ("status", "end", ...) and data (JSON
 * text) until the server closes the stream or `cb` returns non-zero (then
 * that value is returned). RZ_OK when the stream ended. No overall timeout
 * applies; a silent connection is dropped after `idle_ms` (0: none). */
typedef int (*rz_client_event_cb)(void *ud, const char *event,
                                  const char *data);
RZ_EXTERN RZ_NODISCARD int rz_client_events(rz_client *c, const char *path,
                                            long idle_ms, rz_client_event_cb cb,
                                            void *ud);

/* ---- Flows (the calls the bindings and `rhizos flow` use) ---- */

/* Deploy a YAML or JSON flow document. inputs_json: flow inputs object or
 * NULL; credentials_json: {"<credentialId>":"<base64 sealed>"} or NULL.
 * RZ_EINVALID with the server's diagnostics appended to `diags` (may be
 * NULL). */
RZ_EXTERN RZ_NODISCARD int rz_client_deploy(rz_client *c, const char *text,
                                            size_t len, const char *inputs_json,
                                            const char *credentials_json,
                                            uint64_t *deployment,
                                            rz_diags *diags);
/* rz_client_deploy with more of the deploy body: `note` (NULL: none; at
 * most 1000 bytes) is the version's author's note; resume_from (0: none)
 * names an earlier deployment of the caller's whose succeeded steps are
 * reused where their module, config and inputs are unchanged
 * (docs/triggers.md, "Resume and cache"). opts may be NULL. */
typedef struct rz_client_deploy_opts {
    uint32_t version;          /* 1 */
    const char *note;
    uint64_t resume_from;
} rz_client_deploy_opts;
#define RZ_CLIENT_DEPLOY_OPTS_INIT { 1, NULL, 0 }
RZ_EXTERN RZ_NODISCARD int rz_client_deploy_ex(rz_client *c, const char *text,
                                               size_t len, const char *inputs_json,
                                               const char *credentials_json,
                                               const rz_client_deploy_opts *opts,
                                               uint64_t *deployment,
                                               rz_diags *diags);
/* GET /api/v1/flows/{id}/status. Not const: a request uses the client's
 * connection and keeps its last reply. */
RZ_EXTERN RZ_NODISCARD int rz_client_flow_status(rz_client *c,
                                                 uint64_t deployment,
                                                 char **json);
/* DELETE /api/v1/flows/{id}. */
RZ_EXTERN RZ_NODISCARD int rz_client_flow_cancel(rz_client *c,
                                                 uint64_t deployment);

/* ---- Wire format: JSON text <-> CBOR (libcbor; docs/formats.md) ----
 * Objects become maps with text keys, arrays arrays, strings text strings,
 * integral numbers within ±2^53 integers, other numbers doubles, and
 * true/false/null the simple values. Decoding accepts only that subset
 * (byte strings, tags and indefinite lengths are RZ_ESYNTAX), nests at most
 * RZ_WIRE_DEPTH_MAX deep, and refuses input over RZ_WIRE_BYTES_MAX
 * (RZ_ETOOBIG). */
#define RZ_WIRE_DEPTH_MAX 64
#define RZ_WIRE_BYTES_MAX (64u << 20)                           /* 64 MiB */
RZ_EXTERN RZ_NODISCARD int rz_wire_encode(const char *json, size_t len,
                                          unsigned char **out, size_t *out_len);
RZ_EXTERN RZ_NODISCARD int rz_wire_decode(const unsigned char *cbor, size_t len,
                                          char **json);
/* What a strict server refuses in JSON text (decoded CBOR included) before
 * parsing it: strings that are not UTF-8, a \u0000 escape, or an integer
 * literal past 2^53 (it would not stay exact). RZ_ESYNTAX naming the byte;
 * RZ_OK otherwise, including for JSON that is malformed in other ways. */
RZ_EXTERN RZ_NODISCARD int rz_wire_check_json(const char *json, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* RHIZOS_CLIENT_H */

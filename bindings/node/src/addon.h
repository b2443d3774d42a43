/* Shared between the addon's files: handle boxes and the helpers that turn
 * library failures and N-API failures into JavaScript errors. */
#ifndef RHIZOS_NODE_ADDON_H
#define RHIZOS_NODE_ADDON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>

#include "rhizos/common.h"
#include "rhizos/module.h"

enum kind { K_FLOW = 1, K_MATCHER, K_LEDGER, K_VAULT, K_CLIENT };

typedef struct box {
    enum kind kind;
    void *p;             /* the library handle; NULL once closed */
    rz_registry *reg;    /* K_FLOW: the registry the flow was validated with */
    unsigned busy;       /* runs / requests in flight using this handle */
    bool closing;        /* K_CLIENT: closed while busy; freed by the last one */
} box;

#define CALL(env, expr)                                                    \
    do {                                                                   \
        if ((expr) != napi_ok) {                                           \
            throw_napi(env);                                               \
            return NULL;                                                   \
        }                                                                  \
    } while (0)

void throw_napi(napi_env env);
void set_str(napi_env env, napi_value obj, const char *key, const char *s);
void set_num(napi_env env, napi_value obj, const char *key, double d);
/* An Error for `rc` with the saved detail `e` (when about rc) and `d`. */
napi_value make_error(napi_env env, int rc, const rz_error *e, rz_diags *d,
                      const char *context);
napi_value throw_rz(napi_env env, int rc, rz_diags *d, const char *context);
napi_value throw_code(napi_env env, const char *code, const char *msg);
napi_value *args(napi_env env, napi_callback_info info, napi_value *argv,
                 size_t want);
bool is_nullish(napi_env env, napi_value v);
char *get_str(napi_env env, napi_value v, const char *what);
char *get_opt_str(napi_env env, napi_value v, const char *what, bool *ok);
bool get_int(napi_env env, napi_value v, int32_t *out);
box *get_box(napi_env env, napi_value v, enum kind k, bool open);
napi_value wrap(napi_env env, enum kind k, void *p);
void box_release(box *b);
napi_value str_result(napi_env env, char *s, size_t len);

/* client.c */
void client_release(void *p);
napi_value js_client_new(napi_env env, napi_callback_info info);
napi_value js_client_call(napi_env env, napi_callback_info info);
napi_value js_client_watch(napi_env env, napi_callback_info info);
napi_value js_client_watch_stop(napi_env env, napi_callback_info info);
napi_value js_client_close(napi_env env, napi_callback_info info);

#endif

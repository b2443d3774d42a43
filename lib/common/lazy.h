/* Optional libraries loaded on first use (issue 22): libcurl and hwloc pull
 * in about 30 shared libraries between them, which every program linked to
 * librhizos paid at start-up (`rhizos --version` included) though only the
 * network, module-index, container and hardware paths use them. librhizos
 * does not link them; lib/common/lazy_curl.c and lib/hw/lazy_hwloc.c define
 * the few functions it calls, each forwarding to the library dlopen'ed on
 * the first call. Without the library those functions fail the way the
 * library reports failure (NULL, an error code). */
#ifndef RZ_COMMON_LAZY_H
#define RZ_COMMON_LAZY_H

#include "common/internal.h"

/* dlopen the first of the NULL-terminated `names` that loads; the handle,
 * or NULL with the first failure's reason in why[n] (each library keeps its
 * own, written once under its pthread_once). */
RZ_HIDDEN void *rz__lazy_open(const char *const *names, char *why, size_t n);

#endif

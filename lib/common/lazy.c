/* dlopen of optional libraries (see lazy.h). */
#include <dlfcn.h>
#include <stdio.h>

#include "common/lazy.h"

void *rz__lazy_open(const char *const *names, char *why, size_t n)
{
    why[0] = '\0';
    for (const char *const *name = names; *name; name++) {
        /* RTLD_LOCAL: its symbols must not stand in for ours, nor ours for
         * its (we define functions of the same names). */
        void *h = dlopen(*name, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        if (!why[0]) {
            const char *e = dlerror();
            snprintf(why, n, "%s", e ? e : *name);
        }
    }
    return NULL;
}

/* dlopen of optional libraries (see lazy.h). */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "common/lazy.h"

static _Thread_local char why[256];

void *rz__lazy_open(const char *const *names)
{
    why[0] = '\0';
    for (const char *const *n = names; *n; n++) {
        /* RTLD_LOCAL: its symbols must not stand in for ours, nor ours for
         * its (we define functions of the same names). */
        void *h = dlopen(*n, RTLD_NOW | RTLD_LOCAL);
        if (h)
            return h;
        if (!why[0]) {
            const char *e = dlerror();
            snprintf(why, sizeof why, "%s", e ? e : *names);
        }
    }
    return NULL;
}

const char *rz__lazy_why(void)
{
    return why;
}

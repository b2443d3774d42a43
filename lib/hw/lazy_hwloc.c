/* hwloc, loaded on first use (see common/lazy.h): only hardware detection
 * needs it, and with it comes libudev. Each function here has hwloc's own
 * prototype and forwards to the loaded one; hwloc's inline helpers
 * (hwloc_get_nbobjs_by_type and the like) reach it through these. */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include <hwloc.h>

#include "common/lazy.h"

#ifndef RZ_HWLOC_SONAME
#define RZ_HWLOC_SONAME "libhwloc.so.15"
#endif

static struct {
    int (*topology_init)(hwloc_topology_t *);
    int (*topology_load)(hwloc_topology_t);
    void (*topology_destroy)(hwloc_topology_t);
    int (*get_type_depth)(hwloc_topology_t, hwloc_obj_type_t);
    unsigned (*get_nbobjs_by_depth)(hwloc_topology_t, int);
    hwloc_obj_t (*get_obj_by_depth)(hwloc_topology_t, int, unsigned);
} fn;
static bool loaded;
static char why[256];   /* kept for a debugger: the caller sees ENOSYS */
static pthread_once_t once = PTHREAD_ONCE_INIT;

#define SYM(field, name) \
    ok = ok && (*(void **)&fn.field = dlsym(h, name)) != NULL

static void load(void)
{
    static const char *const names[] = { RZ_HWLOC_SONAME, "libhwloc.so", NULL };
    void *h = rz__lazy_open(names, why, sizeof why);
    bool ok = h != NULL;
    SYM(topology_init, "hwloc_topology_init");
    SYM(topology_load, "hwloc_topology_load");
    SYM(topology_destroy, "hwloc_topology_destroy");
    SYM(get_type_depth, "hwloc_get_type_depth");
    SYM(get_nbobjs_by_depth, "hwloc_get_nbobjs_by_depth");
    SYM(get_obj_by_depth, "hwloc_get_obj_by_depth");
    loaded = ok;
}

int hwloc_topology_init(hwloc_topology_t *t)
{
    pthread_once(&once, load);
    if (!loaded) {
        errno = ENOSYS;
        return -1;
    }
    return fn.topology_init(t);
}

/* A topology exists only if the library loaded. */
int hwloc_topology_load(hwloc_topology_t t)
{
    return fn.topology_load(t);
}

void hwloc_topology_destroy(hwloc_topology_t t)
{
    fn.topology_destroy(t);
}

int hwloc_get_type_depth(hwloc_topology_t t, hwloc_obj_type_t type)
{
    return fn.get_type_depth(t, type);
}

unsigned hwloc_get_nbobjs_by_depth(hwloc_topology_t t, int depth)
{
    return fn.get_nbobjs_by_depth(t, depth);
}

hwloc_obj_t hwloc_get_obj_by_depth(hwloc_topology_t t, int depth, unsigned idx)
{
    return fn.get_obj_by_depth(t, depth, idx);
}

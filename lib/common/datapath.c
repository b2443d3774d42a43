/* Where the data that ships with RhizOS lives (rz_data_path).
 *
 * Found from the library's own file, not the program's or the working
 * directory: the working directory is whatever a user stands in (a folder
 * named examples/modules there must not add modules to a run), and the
 * program may be python3 or node loading us. A library (or a program that
 * links it statically) in a meson build tree has the tree's build.ninja and
 * meson-private/ a few folders up (build/lib/librhizos.so,
 * build/tests/unit/test_x); that tree was configured from RZ_SOURCE_ROOT.
 * Anywhere else it is installed. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/internal.h"

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

#define BUILD_TREE_DEPTH 3

/* dir (PATH_MAX): the build tree's root when we are in one. */
static bool in_build_tree(char *dir)
{
    Dl_info info;
    if (!dladdr((void *)rz_data_path, &info) || !info.dli_fname)
        return false;
    if (!realpath(info.dli_fname, dir))
        return false;
    for (int up = 0; up < BUILD_TREE_DEPTH; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
            return false;
        *slash = '\0';
        char probe[PATH_MAX + 32];
        snprintf(probe, sizeof probe, "%s/meson-private", dir);
        if (is_dir(probe)) {
            snprintf(probe, sizeof probe, "%s/build.ninja", dir);
            return access(probe, F_OK) == 0;
        }
    }
    return false;
}

char *rz_data_path(const char *what)
{
    const char *src = NULL;
    bool built = false;   /* made by the build: in the build tree, not the source */
    if (what && strcmp(what, "modules") == 0)
        src = "examples/modules";
    else if (what && strcmp(what, "prices") == 0)
        src = "data/prices";
    else if (what && strcmp(what, "console") == 0)
        src = "console/dist", built = true;
    if (!src) {
        rz__error(RZ_EINVAL, "no shipped data called '%s' (modules, prices or "
                  "console)", what ? what : "(null)");
        return NULL;
    }
    char tree[PATH_MAX];
    char *p = !in_build_tree(tree) ? rz__asprintf("%s/rhizos/%s", RZ_DATADIR, what)
            : built ? rz__asprintf("%s/%s", tree, src)
                    : rz__asprintf("%s/%s", RZ_SOURCE_ROOT, src);
    if (!p) {
        rz__error(RZ_ENOMEM, "out of memory");
        return NULL;
    }
    if (!is_dir(p)) {
        rz__error(RZ_ENOENT, "%s: no such folder", p);
        free(p);
        return NULL;
    }
    return p;
}

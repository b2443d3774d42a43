/* Scratch folders a killed process left behind.
 *
 * A runner or node killed with SIGKILL (or the machine losing power) never
 * removes the scratch folders of the steps it ran, and nothing else would:
 * they stay in /tmp for good, each holding a step's inputs. So a folder's
 * name says who made it, rz-<pid namespace>-<pid>-XXXXXX, and the first
 * folder a process makes in a parent starts a sweep of that parent on a
 * thread of its own (start-up does not wait for a listing of /tmp): a
 * folder is removed only when it is ours (same owner), its maker's pid
 * namespace is ours and that pid no longer exists. A pid reused since only
 * keeps a dead folder a while longer; a folder of a live process, of
 * another user or of another namespace is never touched.
 *
 * By default the parent is this user's private folder in $TMPDIR or /tmp
 * (rhizos-runs-UID, shared with the engine's folders), so the sweep lists
 * a handful of entries: listing a /tmp of thousands was an eighth of a
 * one-step run's CPU. tmp itself is swept only when that folder is first
 * made (folders of earlier versions) or cannot be used. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec/adapter.h"
#include "exec/exec_impl.h"

#define SWEPT_MAX 8   /* parents remembered; a process uses one or two */

static pthread_mutex_t swept_lock = PTHREAD_MUTEX_INITIALIZER;
static char *swept[SWEPT_MAX];

/* A process's own pid namespace never changes (setns and unshare move
 * only its later children), so it is read once: it names every step's
 * scratch folder, and each read is a stat of /proc. */
unsigned long long rz__exec_pidns(void)
{
    static _Atomic unsigned long long ns;
    unsigned long long v = ns;
    struct stat st;
    if (!v && stat("/proc/self/ns/pid", &st) == 0)
        ns = v = (unsigned long long)st.st_ino;
    return v;
}

/* The maker of folder `name` is gone (see above). */
static bool dead_makers(const char *name, unsigned long long ns, uid_t me, int dirfd)
{
    unsigned long long their_ns;
    long pid;
    char rest[16];
    if (sscanf(name, "rz-%llx-%ld-%15s", &their_ns, &pid, rest) != 3 ||
        strlen(rest) != 6 || their_ns != ns || pid <= 0 || pid == (long)getpid())
        return false;
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != me)
        return false;
    return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void *sweep(void *arg)
{
    char *parent = arg;
    unsigned long long ns = rz__exec_pidns();
    DIR *d = ns ? opendir(parent) : NULL;
    if (d) {
        uid_t me = geteuid();
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strncmp(e->d_name, "rz-", 3) != 0 || !dead_makers(e->d_name, ns, me, dirfd(d)))
                continue;
            char *path = rz__asprintf("%s/%s", parent, e->d_name);
            rz__exec_rm_tree(path);
            free(path);
        }
        closedir(d);
    }
    free(parent);
    return NULL;
}

char *rz__exec_user_dir(const char *tmp, bool *made)
{
    char *p = rz__asprintf("%s/rhizos-runs-%ld", tmp, (long)geteuid());
    if (!p)
        return NULL;
    *made = mkdir(p, 0700) == 0;
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == geteuid() &&
        (st.st_mode & 077) == 0)
        return p;
    free(p);
    return NULL;
}

int rz__exec_scratch_parent(const char *parent, char **out)
{
    *out = NULL;
    bool given = parent && *parent;
    if (!given)
        parent = getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/tmp";
    char *real = realpath(parent, NULL);
    if (!real)
        return rz__error(RZ_EIO, "scratch parent %s: %s", parent,
                         strerror(errno));
    bool made = false;
    char *mine = given ? NULL : rz__exec_user_dir(real, &made);
    if (!mine || made)
        rz__exec_sweep_scratch(real);
    if (mine) {
        rz__exec_sweep_scratch(mine);
        free(real);
        real = mine;
    }
    *out = real;
    return RZ_OK;
}

void rz__exec_sweep_scratch(const char *parent)
{
    pthread_mutex_lock(&swept_lock);
    size_t i = 0;
    while (i < SWEPT_MAX && swept[i] && strcmp(swept[i], parent) != 0)
        i++;
    bool first = i < SWEPT_MAX && !swept[i] && (swept[i] = strdup(parent));
    pthread_mutex_unlock(&swept_lock);
    char *copy = first ? strdup(parent) : NULL;
    pthread_t t;
    pthread_attr_t attr;
    if (!copy || pthread_attr_init(&attr) != 0) {
        free(copy);
        return;
    }
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, sweep, copy) != 0)
        free(copy);
    pthread_attr_destroy(&attr);
}

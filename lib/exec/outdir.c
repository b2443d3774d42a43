/* The copy out of a step's RZ_OUTPUT_DIR tree (sandbox_helper.h): shared
 * by the helper's init and, under bwrap, the runner, which reads the
 * step's tmpfs through a descriptor it opened before the step started.
 * Async-signal-safe enough for the helper's forked init: no allocation but
 * the DIR handles. */
#include "exec/sandbox_helper.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES_DEPTH 16        /* folders deep under RZ_OUTPUT_DIR */
#define FILES_ENTRIES 10000   /* entries looked at in all */

/* One regular file of the step's (opened without following a link or
 * blocking on a fifo) to a new one of the host's, capped as it is read. */
static int copy_file(rz__outdir_copy *c, int from_dir, int to_dir, const char *name)
{
    int fd = openat(from_dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
                    O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return 0;   /* not taken: the runner names what is missing */
    }
    int out = openat(to_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
                     O_CLOEXEC, 0644);
    uint64_t done = 0;
    char buf[16384];
    ssize_t r;
    int rc = out >= 0 ? 0 : -1;
    while (rc == 0 && (r = read(fd, buf, sizeof buf)) > 0) {
        done += (uint64_t)r;
        if (done > c->file_cap || (uint64_t)r > c->left) {
            c->over = done > c->file_cap ? "a file" : "the files together";
            rc = -1;
            break;
        }
        c->left -= (uint64_t)r;
        for (ssize_t off = 0; rc == 0 && off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w <= 0)
                rc = -1;
            else
                off += w;
        }
    }
    close(fd);
    if (out >= 0)
        close(out);
    return rc;
}

int rz__outdir_copy_tree(rz__outdir_copy *c, int from_dir, int to_dir, int depth)
{
    DIR *d = fdopendir(from_dir);
    if (!d) {
        close(from_dir);
        return -1;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (++c->entries > FILES_ENTRIES) {
            c->over = "the number of entries (10,000)";
            rc = -1;
            break;
        }
        int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY |
                         O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = copy_file(c, dirfd(d), to_dir, e->d_name);
            continue;
        }
        int to = depth < FILES_DEPTH && mkdirat(to_dir, e->d_name, 0755) == 0
                     ? openat(to_dir, e->d_name, O_RDONLY | O_DIRECTORY |
                              O_NOFOLLOW | O_CLOEXEC) : -1;
        if (to < 0) {
            close(sub);
            continue;   /* too deep: not taken */
        }
        rc = rz__outdir_copy_tree(c, sub, to, depth + 1);
        close(to);
    }
    closedir(d);
    return rc;
}

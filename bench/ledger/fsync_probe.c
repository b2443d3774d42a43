/* fsync_probe: how fast can this disk make a small write durable? The
 * floor under every durable commit at batch size 1 (the ledger's journal
 * and SQLite's WAL alike).
 *
 * Overwrites 4 KiB blocks of a preallocated 1 MiB file, each made durable
 * three ways: pwrite + fdatasync, O_DSYNC, O_DIRECT | O_DSYNC.
 * usage: fsync_probe [FILE] [N]   (default FILE ./fsync_probe.dat, N 2000) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void probe(const char *name, int fd, int sync, int n, const void *buf)
{
    double *lat = malloc((size_t)n * sizeof *lat);
    if (!lat || fd < 0) {
        perror(name);
        exit(1);
    }
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        double s = now_s();
        if (pwrite(fd, buf, 4096, (off_t)(i % 256) * 4096) != 4096 ||
            (sync && fdatasync(fd) != 0)) {
            perror(name);
            exit(1);
        }
        lat[i] = now_s() - s;
    }
    double total = now_s() - t0;
    qsort(lat, (size_t)n, sizeof *lat, by_value);
    printf("%-20s %7.0f/s  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms\n", name,
           n / total, lat[n / 2] * 1e3, lat[n * 9 / 10] * 1e3,
           lat[n * 99 / 100] * 1e3);
    free(lat);
    close(fd);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "fsync_probe.dat";
    int n = argc > 2 ? atoi(argv[2]) : 2000;
    if (n < 100)
        n = 100;
    void *buf;
    static char zeros[1 << 20];
    if (posix_memalign(&buf, 4096, 4096) != 0)
        return 1;
    memset(buf, 7, 4096);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros ||
        fsync(fd) != 0) {
        perror(path);
        return 1;
    }
    probe("pwrite + fdatasync", fd, 1, n, buf);
    probe("O_DSYNC", open(path, O_RDWR | O_DSYNC), 0, n, buf);
    probe("O_DIRECT | O_DSYNC", open(path, O_RDWR | O_DIRECT | O_DSYNC), 0, n,
          buf);
    unlink(path);
    free(buf);
    return 0;
}

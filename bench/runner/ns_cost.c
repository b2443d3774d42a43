/* What each namespace of a sandboxed step costs (issue 22): N rounds of
 * clone(flags) + the child's _exit + waitpid, per namespace flag alone and
 * all together, and what the sandbox helper does instead for the network
 * (setns into a namespace made beforehand: the pool's, one per round; a
 * cell's, one kept for every round). Prints, per row, the wall time
 * of a round, the time inside clone() and the CPU of this process and its
 * children per round. Kernel workers (a network namespace is freed by one)
 * are not counted. Needs root. Libraries named after the rounds are loaded
 * first, so that every clone copies a process of that many mappings (a
 * sandbox cell is a copy of the runner: its libraries, as below).
 *
 *   ninja -C build bench/runner/ns_cost && build/bench/runner/ns_cost 300
 *   build/bench/runner/ns_cost 300 $(ldd build/cli/rhizos | awk '/=>/{print $3}')
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double tv_ms(struct timeval v)
{
    return (double)v.tv_sec * 1e3 + (double)v.tv_usec / 1e3;
}

static double cpu_ms(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return tv_ms(self.ru_utime) + tv_ms(self.ru_stime) +
           tv_ms(kids.ru_utime) + tv_ms(kids.ru_stime);
}

enum { PLAIN, MOUNTS, JOIN_NET, JOIN_KEPT };

/* One round's child: nothing, the step's three fixed mounts, or the
 * network namespace `net` joined. */
static void child(int what, int net)
{
    if (what == MOUNTS &&
        (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV, NULL) != 0 ||
         mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") != 0 ||
         mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV,
               "size=1m") != 0))
        _exit(1);
    if ((what == JOIN_NET || what == JOIN_KEPT) && setns(net, CLONE_NEWNET) != 0)
        _exit(1);
    _exit(0);
}

/* A network namespace made now, this process back in its own. */
static int make_net(int home)
{
    if (unshare(CLONE_NEWNET) != 0)
        return -1;
    int fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (setns(home, CLONE_NEWNET) != 0)
        exit(1);
    return fd;
}

static void row(const char *name, long flags, int what, int n)
{
    int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    double in_clone = 0, prep = 0, w0 = now_ms(), c0 = cpu_ms();
    int failed = 0, kept = what == JOIN_KEPT ? make_net(home) : -1;
    for (int i = 0; i < n; i++) {
        int net = kept;
        if (what == JOIN_NET) {
            double p = now_ms();
            net = make_net(home);
            prep += now_ms() - p;
        }
        double a = now_ms();
        long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
        if (pid == 0)
            child(what, net);
        in_clone += now_ms() - a;
        int st = 0;
        if (pid > 0)
            waitpid((pid_t)pid, &st, 0);
        failed += pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
        if (net >= 0 && net != kept)
            close(net);
    }
    if (kept >= 0)
        close(kept);
    double w = now_ms() - w0, c = cpu_ms() - c0;
    printf("%-34s %8.3f %8.3f %8.3f %8.3f%s\n", name, w / n, in_clone / n,
           c / n, prep / n, failed ? "  (some rounds failed)" : "");
    close(home);
}

static int mappings(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f)
        fclose(f);
    return n;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 300;
    if (n <= 0 || geteuid() != 0) {
        fprintf(stderr, "usage (as root): ns_cost [ROUNDS [LIBRARY...]]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++)
        if (!dlopen(argv[i], RTLD_NOW | RTLD_GLOBAL))
            fprintf(stderr, "ns_cost: %s\n", dlerror());
    printf("%d mappings in each clone's copy\n", mappings());
    const long step = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    printf("%-34s %8s %8s %8s %8s\n", "ms per round", "wall", "clone()",
           "CPU", "made before");
    row("no namespace", 0, PLAIN, n);
    row("mount (a copy of this table)", CLONE_NEWNS, PLAIN, n);
    row("pid", CLONE_NEWPID, PLAIN, n);
    row("ipc", CLONE_NEWIPC, PLAIN, n);
    row("uts", CLONE_NEWUTS, PLAIN, n);
    row("net", CLONE_NEWNET, PLAIN, n);
    row("mount+pid+ipc+uts", step, PLAIN, n);
    row("mount+pid+ipc+uts+net", step | CLONE_NEWNET, PLAIN, n);
    row("  + proc, 2 tmpfs", step | CLONE_NEWNET, MOUNTS, n);
    row("mount+pid+ipc+uts, + proc, 2 tmpfs", step, MOUNTS, n);
    row("mount+pid+ipc+uts, setns(net)", step, JOIN_NET, n);
    row("mount+pid+ipc+uts, setns(one net)", step, JOIN_KEPT, n);
    return 0;
}

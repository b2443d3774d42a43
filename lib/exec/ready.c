/* A service's readiness check (ready.h). */
#include "exec/ready.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a socket in the step's network namespace ---- */

typedef struct netns_sock {
    int nsfd, fd, err;
} netns_sock;

/* A namespace is per thread: this short-lived one enters the step's and
 * makes the socket there; the socket stays in it when the thread ends. */
static void *sock_in_ns(void *arg)
{
    netns_sock *s = arg;
    if (setns(s->nsfd, CLONE_NEWNET) != 0)
        s->err = errno;
    else if ((s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
        s->err = errno;
    return NULL;
}

static int make_socket(int net_pid, char *why, size_t why_len)
{
    if (net_pid <= 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            snprintf(why, why_len, "socket: %s", strerror(errno));
        return fd;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/net", net_pid);
    netns_sock s = { open(path, O_RDONLY | O_CLOEXEC), -1, 0 };
    if (s.nsfd < 0) {
        snprintf(why, why_len, "the step's network: %s", strerror(errno));
        return -1;
    }
    /* The pid named may not be in the step's own namespace (bubblewrap's
     * outer process stays in ours; a container's pid may be reused): a
     * check from our network would reach the host's services for the step. */
    struct stat theirs, ours;
    if (fstat(s.nsfd, &theirs) != 0 || stat("/proc/self/ns/net", &ours) != 0 ||
        (theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino)) {
        close(s.nsfd);
        snprintf(why, why_len, "the step's network could not be told from this "
                 "machine's, so it is not checked from here");
        return -1;
    }
    pthread_t th;
    int e = pthread_create(&th, NULL, sock_in_ns, &s);
    if (e == 0)
        pthread_join(th, NULL);
    else
        s.err = e;
    close(s.nsfd);
    if (s.fd < 0)
        snprintf(why, why_len, "cannot enter the step's network to check it: %s",
                 strerror(s.err));
    return s.fd;
}

/* ---- one try ---- */

static int wait_fd(int fd, short ev, uint64_t deadline)
{
    for (;;) {
        uint64_t now = rz__now_ms();
        if (now >= deadline)
            return 0;
        struct pollfd p = { fd, ev, 0 };
        int r = poll(&p, 1, (int)(deadline - now));
        if (r > 0 || (r < 0 && errno != EINTR))
            return r;
    }
}

static int try_connect(int fd, const rz__ready_target *t, uint64_t deadline,
                       char *why, size_t why_len)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(t->port) };
    inet_pton(AF_INET, t->host, &sa.sin_addr);
    int e = 0;
    socklen_t el = sizeof e;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        if (errno != EINPROGRESS)
            e = errno;
        else if (wait_fd(fd, POLLOUT, deadline) <= 0)
            e = ETIMEDOUT;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
            e = errno;
    }
    if (e)
        snprintf(why, why_len, "connect %s:%u: %s", t->host, t->port, strerror(e));
    return e ? 0 : 1;
}

/* GET the path; any 2xx or 3xx status passes. */
static int try_http(int fd, const rz__ready_target *t, uint64_t deadline,
                    char *why, size_t why_len)
{
    char req[700];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%u\r\n"
                     "Connection: close\r\n\r\n", t->path, t->host, t->port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(why, why_len, "GET %s: %s", t->path, strerror(errno));
        return 0;
    }
    char line[64];
    size_t got = 0;
    while (got < 12 && wait_fd(fd, POLLIN, deadline) > 0) {
        ssize_t r = recv(fd, line + got, sizeof line - 1 - got, 0);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    line[got] = '\0';
    int status = 0;
    if (got < 12 || sscanf(line, "HTTP/1.%*1[01] %3d", &status) != 1) {
        snprintf(why, why_len, "GET %s: no HTTP answer", t->path);
        return 0;
    }
    if (status < 200 || status > 399) {
        snprintf(why, why_len, "GET %s: status %d", t->path, status);
        return 0;
    }
    return 1;
}

int rz__ready_try(const rz__ready_target *t, int net_pid, int timeout_ms,
                  char *why, size_t why_len)
{
    if (why_len)
        why[0] = '\0';
    int fd = make_socket(net_pid, why, why_len);
    if (fd < 0)
        return -1;
    uint64_t deadline = rz__now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    int ok = try_connect(fd, t, deadline, why, why_len);
    if (ok && t->http)
        ok = try_http(fd, t, deadline, why, why_len);
    close(fd);
    return ok;
}

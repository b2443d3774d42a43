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

/* ---- one try, a step at a time ---- */

static int answer_status(const rz__ready_probe *p, const rz__ready_target *t,
                         char *why, size_t why_len)
{
    int status = 0;
    if (p->got < 12 || sscanf(p->line, "HTTP/1.%*1[01] %3d", &status) != 1) {
        snprintf(why, why_len, "GET %s: no HTTP answer", t->path);
        return 0;
    }
    if (status < 200 || status > 399) {
        snprintf(why, why_len, "GET %s: status %d", t->path, status);
        return 0;
    }
    return 1;
}

int rz__ready_probe_start(rz__ready_probe *p, const rz__ready_target *t,
                          int net_pid, int timeout_ms, char *why, size_t why_len)
{
    *p = (rz__ready_probe)RZ__READY_PROBE_INIT;
    if (why_len)
        why[0] = '\0';
    p->fd = make_socket(net_pid, why, why_len);
    if (p->fd < 0)
        return -1;
    p->deadline = rz__now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(t->port) };
    inet_pton(AF_INET, t->host, &sa.sin_addr);
    /* Refused at once is said by the first step, as a later failure is. */
    if (connect(p->fd, (struct sockaddr *)&sa, sizeof sa) != 0 &&
        errno != EINPROGRESS)
        p->err = errno;
    return 0;
}

/* The connect's outcome once the socket is writable; 2 while it is not. */
static int step_connect(rz__ready_probe *p, const rz__ready_target *t,
                        char *why, size_t why_len)
{
    int e = p->err;
    if (!e) {
        struct pollfd pf = { p->fd, POLLOUT, 0 };
        socklen_t el = sizeof e;
        if (poll(&pf, 1, 0) == 0) {
            if (rz__now_ms() < p->deadline)
                return 2;
            e = ETIMEDOUT;
        } else if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0) {
            e = errno;
        }
    }
    if (!e) {
        p->sent = true;
        return 1;
    }
    snprintf(why, why_len, "connect %s:%u: %s", t->host, t->port, strerror(e));
    return 0;
}

static int send_get(rz__ready_probe *p, const rz__ready_target *t,
                    char *why, size_t why_len)
{
    char req[700];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: %s:%u\r\n"
                     "Connection: close\r\n\r\n", t->path, t->host, t->port);
    /* A fresh socket's buffer takes the whole request at once. */
    if (send(p->fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        snprintf(why, why_len, "GET %s: %s", t->path, strerror(errno));
        return 0;
    }
    return 2;
}

/* Reads the start of the answer; any 2xx or 3xx status passes. */
static int step_answer(rz__ready_probe *p, const rz__ready_target *t,
                       char *why, size_t why_len)
{
    while (p->got < 12) {
        ssize_t r = recv(p->fd, p->line + p->got, sizeof p->line - 1 - p->got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (rz__now_ms() < p->deadline)
                return 2;
            break;
        }
        if (r <= 0)
            break;
        p->got += (size_t)r;
        p->line[p->got] = '\0';
    }
    return answer_status(p, t, why, why_len);
}

int rz__ready_probe_step(rz__ready_probe *p, const rz__ready_target *t,
                         char *why, size_t why_len)
{
    if (!p->sent) {
        int r = step_connect(p, t, why, why_len);
        if (r != 1 || !t->http)
            return r;
        if (send_get(p, t, why, why_len) == 0)
            return 0;
    }
    return step_answer(p, t, why, why_len);
}

void rz__ready_probe_end(rz__ready_probe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

int rz__ready_try(const rz__ready_target *t, int net_pid, int timeout_ms,
                  char *why, size_t why_len)
{
    rz__ready_probe p;
    if (rz__ready_probe_start(&p, t, net_pid, timeout_ms, why, why_len) < 0)
        return -1;
    int r;
    while ((r = rz__ready_probe_step(&p, t, why, why_len)) == 2) {
        uint64_t now = rz__now_ms();
        struct pollfd pf = { p.fd, (short)(p.sent ? POLLIN : POLLOUT), 0 };
        (void)poll(&pf, 1, now < p.deadline ? (int)(p.deadline - now) : 0);
    }
    rz__ready_probe_end(&p);
    return r;
}

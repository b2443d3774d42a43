/* A service's readiness check, as written (common/ready_check.h). */
#include "common/ready_check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static bool parse_port(const char *s, size_t n, uint16_t *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *port = (uint16_t)v;
    return true;
}

static int bad(char *why, size_t why_len, const char *msg)
{
    snprintf(why, why_len, "%s", msg);
    return RZ_EINVALID;
}

/* http://HOST[:PORT][/PATH]: the path's characters are printable ASCII
 * without spaces, so the request line cannot be split. */
static int parse_http(const char *u, rz__ready_target *t, char *why, size_t why_len)
{
    const char *host = u + 7, *end = host + strcspn(host, ":/");
    size_t hn = (size_t)(end - host);
    if (hn == 9 && strncmp(host, "localhost", 9) == 0)
        snprintf(t->host, sizeof t->host, "127.0.0.1");
    else if (hn > 0 && hn < sizeof t->host)
        snprintf(t->host, sizeof t->host, "%.*s", (int)hn, host);
    struct in_addr a;
    if (!t->host[0] || inet_pton(AF_INET, t->host, &a) != 1)
        return bad(why, why_len, "the URL's host must be an IPv4 address or "
                   "localhost (the check makes no name lookup)");
    t->port = 80;
    const char *path = end;
    if (*end == ':') {
        path = end + 1 + strcspn(end + 1, "/");
        if (!parse_port(end + 1, (size_t)(path - end - 1), &t->port))
            return bad(why, why_len, "the URL's port must be 1-65535");
    }
    if (!*path)
        path = "/";
    if (strlen(path) >= sizeof t->path)
        return bad(why, why_len, "the URL's path is over 511 bytes");
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 127)
            return bad(why, why_len, "the URL's path must be printable ASCII "
                       "without spaces (percent-encode the rest)");
    snprintf(t->path, sizeof t->path, "%s", path);
    t->http = true;
    return RZ_OK;
}

int rz__ready_parse(const char *check, rz__ready_target *t, char *why,
                    size_t why_len)
{
    memset(t, 0, sizeof *t);
    if (why_len)
        why[0] = '\0';
    if (!check)
        return bad(why, why_len, "no check");
    if (strncmp(check, "tcp:", 4) == 0) {
        if (!parse_port(check + 4, strlen(check + 4), &t->port))
            return bad(why, why_len, "the TCP port must be 1-65535");
        snprintf(t->host, sizeof t->host, "127.0.0.1");
        return RZ_OK;
    }
    if (strncmp(check, "http://", 7) == 0)
        return parse_http(check, t, why, why_len);
    return bad(why, why_len, "a check is tcp:PORT or an http:// URL");
}

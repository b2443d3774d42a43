/* HTTPS served by the orchestrator itself (--tls-cert, --tls-key), through
 * libevent's OpenSSL bufferevents: every connection is TLS 1.2 or newer,
 * the handlers see plain HTTP. The files are read and checked before the
 * data directory is touched, so a bad pair refuses the start and changes
 * nothing; a private key others can read is refused, as ssh refuses one. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "orch.h"

#ifdef ORCH_HAVE_TLS
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

static void say_ssl(const char *what, const char *file)
{
    char buf[256];
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    fprintf(stderr, ORCH_NAME ": %s %s: %s\n", what, file, buf);
    ERR_clear_error();
}

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    SSL *ssl = SSL_new(arg);
    if (!ssl)
        return NULL;
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Clients that close without a TLS close_notify are common (curl
     * after a reply); that is the end of a connection, not an error. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}
#endif

static bool key_private(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, ORCH_NAME ": --tls-key %s: %s\n", path, strerror(errno));
        return false;
    }
    if (st.st_mode & 077) {
        fprintf(stderr, ORCH_NAME ": --tls-key %s can be read by others (mode %04o); "
                "run: chmod 600 %s\n", path, (unsigned)(st.st_mode & 07777), path);
        return false;
    }
    return true;
}

int orch_tls_setup(orch *o)
{
    const char *cert = o->opts.tls_cert, *key = o->opts.tls_key;
    if (!cert && !key)
        return 0;
    if (!cert || !key) {
        fprintf(stderr, ORCH_NAME ": --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (!key_private(key))
        return -1;
#ifdef ORCH_HAVE_TLS
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
        say_ssl("cannot start TLS for", cert);
        SSL_CTX_free(ctx);
        return -1;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        say_ssl("--tls-cert", cert);
        SSL_CTX_free(ctx);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        say_ssl("--tls-key", key);
        SSL_CTX_free(ctx);
        return -1;
    }
    o->tls = ctx;
    return 0;
#else
    fprintf(stderr, ORCH_NAME ": built without TLS (libevent_openssl was not found); "
            "serve HTTPS through a reverse proxy (docs/api.md)\n");
    return -1;
#endif
}

void orch_tls_maker(orch *o, httpconn_limits *lim)
{
#ifdef ORCH_HAVE_TLS
    if (o->tls) {
        lim->make = tls_bev;
        lim->make_arg = o->tls;
    }
#else
    (void)o; (void)lim;
#endif
}

void orch_tls_free(orch *o)
{
#ifdef ORCH_HAVE_TLS
    SSL_CTX_free(o->tls);
#endif
    o->tls = NULL;
}

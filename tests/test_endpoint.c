/* test_endpoint.c - ZeroMQ endpoint syntax: what the config check and the CLI accept must be what libzmq binds or
 * connects, and what they refuse gets a reason (a port above 65535 passes zmq_connect silently, so libzmq alone
 * cannot be the judge). Accepted bind/connect endpoints are handed to libzmq as a cross-check. */
#include <string.h>
#include <zmq.h>

#include "apt_test.h"
#include "aptomo/endpoint.h"

typedef struct ep_case {
    const char *ep;
    int mode;
    int ok;
    const char *says; /* a fragment of the refusal */
} ep_case;

static const ep_case cases[] = {
    {"tcp://127.0.0.1:9999", APT_EP_CONNECT, 1, NULL},
    {"tcp://localhost:1", APT_EP_CONNECT, 1, NULL},
    {"tcp://[::1]:65535", APT_EP_CONNECT, 1, NULL},
    {"tcp://*:9998", APT_EP_BIND, 1, NULL},
    {"tcp://127.0.0.1:*", APT_EP_BIND, 1, NULL},
    {"tcp://eth0:0", APT_EP_BIND, 1, NULL},
    {"tcp://10.0.0.1:5555;192.168.1.2:6000", APT_EP_CONNECT, 1, NULL},
    {"ipc:///tmp/aptomod.sock", APT_EP_BIND, 1, NULL},
    {"inproc://results", APT_EP_CONNECT, 1, NULL},
    {"tcp://127.0.0.1:99999", APT_EP_CONNECT, 0, "port 99999 is outside 1-65535"},
    {"tcp://127.0.0.1:65536", APT_EP_BIND, 0, "outside 1-65535"},
    {"tcp://127.0.0.1:0", APT_EP_CONNECT, 0, "outside 1-65535"},
    {"tcp://127.0.0.1:*", APT_EP_CONNECT, 0, "only makes sense for a bound socket"},
    {"tcp://*:9999", APT_EP_CONNECT, 0, "host * only makes sense"},
    {"tcp://127.0.0.1:99a", APT_EP_CONNECT, 0, "not a number"},
    {"tcp://127.0.0.1:", APT_EP_CONNECT, 0, "not a number"},
    {"tcp://127.0.0.1", APT_EP_CONNECT, 0, "needs HOST:PORT"},
    {"tcp://:9999", APT_EP_BIND, 0, "no host"},
    {"tcp://::1:9999", APT_EP_CONNECT, 0, "in brackets"},
    {"tcp://[::1:9999", APT_EP_CONNECT, 0, "closing ']'"},
    {"tcp://a/b:1", APT_EP_CONNECT, 0, "not a host name"},
    {"bogus", APT_EP_CONNECT, 0, "is not an endpoint"},
    {"127.0.0.1:9999", APT_EP_CONNECT, 0, "is not an endpoint"},
    {"udp://127.0.0.1:9", APT_EP_CONNECT, 0, "transport 'udp' is not supported"},
    {"ipc://", APT_EP_BIND, 0, "no path"},
    {"", APT_EP_BIND, 0, "empty endpoint"},
};

int main(void)
{
    void *ctx = zmq_ctx_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ep_case *c = &cases[i];
        apt_error e = {0};
        int rc = apt_endpoint_check(c->ep, c->mode, &e);
        CHECK_MSG((rc == APT_OK) == c->ok, "'%s' (%s): rc %d, %s", c->ep, c->mode ? "bind" : "connect", rc, e.msg);
        if (!c->ok)
            CHECK_MSG(rc == APT_EINVAL && strstr(e.msg, c->says) && strstr(e.msg, c->ep), "'%s': '%s'", c->ep,
                      e.msg);
        /* accepted loopback/ipc/inproc endpoints: libzmq takes them too (no network needed) */
        if (c->ok && (strstr(c->ep, "127.0.0.1") || strstr(c->ep, "[::1]") || !strncmp(c->ep, "inproc", 6))) {
            void *s = zmq_socket(ctx, ZMQ_PULL);
            int ipv6 = 1, linger = 0;
            zmq_setsockopt(s, ZMQ_IPV6, &ipv6, sizeof ipv6);
            zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
            int zr = c->mode == APT_EP_BIND ? zmq_bind(s, c->ep) : zmq_connect(s, c->ep);
            CHECK_MSG(zr == 0, "libzmq refuses '%s' that the check accepts: %s", c->ep, zmq_strerror(zmq_errno()));
            zmq_close(s);
        }
    }
    apt_error e = {0};
    CHECK(apt_endpoint_check(NULL, APT_EP_BIND, &e) == APT_EINVAL);
    CHECK(apt_endpoint_check("tcp://127.0.0.1:1", APT_EP_CONNECT, NULL) == APT_OK);
    zmq_ctx_term(ctx);
    APT_TEST_DONE();
}

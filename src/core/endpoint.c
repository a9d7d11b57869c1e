/* endpoint.c - ZeroMQ endpoint syntax (tcp, ipc, inproc) checked the way libzmq will read it, so that a typo is
 * refused with a reason at --check time instead of a bare EINVAL at start or a connect that never completes. */
#include "aptomo/endpoint.h"

#include <stdlib.h>
#include <string.h>

static int check_port(const char *ep, const char *port, int mode, apt_error *err)
{
    if (!strcmp(port, "*")) {
        if (mode == APT_EP_BIND)
            return APT_OK;
        return apt_err(err, APT_EINVAL, "'%s': port * (any free port) only makes sense for a bound socket", ep);
    }
    if (!*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
        return apt_err(err, APT_EINVAL, "'%s': port '%s' is not a number", ep, port);
    long p = strtol(port, NULL, 10);
    if (p > 65535 || (p == 0 && mode != APT_EP_BIND))
        return apt_err(err, APT_EINVAL, "'%s': port %ld is outside 1-65535", ep, p);
    return APT_OK;
}

static int check_tcp(const char *ep, const char *addr, int mode, apt_error *err)
{
    const char *semi = strrchr(addr, ';'); /* tcp://source;dest: the destination is what must parse */
    if (semi)
        addr = semi + 1;
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return apt_err(err, APT_EINVAL, "'%s': tcp needs HOST:PORT", ep);
    size_t hl = (size_t)(colon - addr);
    if (hl == 0)
        return apt_err(err, APT_EINVAL, "'%s': no host before the port", ep);
    if (addr[0] == '[' && addr[hl - 1] != ']')
        return apt_err(err, APT_EINVAL, "'%s': IPv6 address needs a closing ']' before the port", ep);
    if (addr[0] != '[' && memchr(addr, ':', hl))
        return apt_err(err, APT_EINVAL, "'%s': write an IPv6 address in brackets: tcp://[ADDR]:PORT", ep);
    if (memchr(addr, '/', hl) || memchr(addr, ' ', hl))
        return apt_err(err, APT_EINVAL, "'%s': host '%.*s' is not a host name or address", ep, (int)hl, addr);
    if (mode == APT_EP_CONNECT && hl == 1 && addr[0] == '*')
        return apt_err(err, APT_EINVAL, "'%s': host * only makes sense for a bound socket; name the host to "
                       "connect to", ep);
    return check_port(ep, colon + 1, mode, err);
}

int apt_endpoint_check(const char *ep, int mode, apt_error *err)
{
    if (!ep || !*ep)
        return apt_err(err, APT_EINVAL, "empty endpoint");
    const char *sep = strstr(ep, "://");
    if (!sep)
        return apt_err(err, APT_EINVAL, "'%s' is not an endpoint: expected tcp://HOST:PORT, ipc://PATH or "
                       "inproc://NAME", ep);
    size_t tl = (size_t)(sep - ep);
    const char *rest = sep + 3;
    if (tl == 3 && !memcmp(ep, "tcp", 3))
        return check_tcp(ep, rest, mode, err);
    if ((tl == 3 && !memcmp(ep, "ipc", 3)) || (tl == 6 && !memcmp(ep, "inproc", 6))) {
        if (!*rest)
            return apt_err(err, APT_EINVAL, "'%s': no %s after '://'", ep, tl == 3 ? "path" : "name");
        return APT_OK;
    }
    return apt_err(err, APT_EINVAL, "'%s': transport '%.*s' is not supported (tcp, ipc, inproc)", ep, (int)tl, ep);
}

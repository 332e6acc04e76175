/* LD_PRELOAD shim that keeps one Reverb port on loopback (replay/loopback.py builds and uses it).
 *
 * Why: reverb.Server binds "[::]:PORT" (every interface, IPv4 and IPv6; the string is compiled into
 * libpybind.so) and has no option to bind one address, so a local run's replay port is open to the
 * network. Preloaded into the process that hosts the server, with REVERB_LOOPBACK_PORT=PORT in its
 * environment, this library turns a wildcard bind() of that one port into a bind to 127.0.0.1: on an
 * IPv4 socket directly, on a dual-stack IPv6 socket as ::ffff:127.0.0.1 (then ::1 if the kernel refuses
 * that). Only this machine can connect then. Every other bind() goes to libc unchanged.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

static bind_fn real_bind(void) {
    static bind_fn fn;
    if (!fn) fn = (bind_fn)dlsym(RTLD_NEXT, "bind");
    return fn;
}

static int loopback_port(void) {
    const char *s = getenv("REVERB_LOOPBACK_PORT");
    return s ? atoi(s) : 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    bind_fn real = real_bind();
    int port = loopback_port();
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    if (port <= 0 || addr == NULL) return real(fd, addr, len);
    if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (ntohs(a.sin_port) == port && a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    } else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, addr, sizeof a);
        if (ntohs(a.sin6_port) == port && IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr)) {
            inet_pton(AF_INET6, "::ffff:127.0.0.1", &a.sin6_addr);
            if (real(fd, (const struct sockaddr *)&a, sizeof a) == 0) return 0;
            a.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real(fd, addr, len);
}

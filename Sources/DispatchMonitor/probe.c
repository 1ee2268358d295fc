/* dispatch-monitor --probe: the escape canary's network checks (CONTRACT §10), with nothing but libc, from inside
   an agent's namespaces.

   dispatch-monitor --probe ADDRESS PORT              a TCP connection of its own to ADDRESS:PORT (an IP address)
   dispatch-monitor --probe HOST PORT --via PROXYPORT  CONNECT HOST:PORT through the proxy on 127.0.0.1:PROXYPORT

   Prints one word and exits 0: `connected` or `failed` for a connection of its own; the proxy's status code
   (`200`, `403`, …, `000` when it did not answer), `200-greeting` after a 200 when the destination's first
   line starts with "dispatch egress canary". Everything is bounded by 5 s. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A connected socket to address:port (IPv4 or IPv6 literal), or -1; at most 5 s. */
static int connect_to(const char *address, int port) {
    struct sockaddr_storage storage = {0};
    socklen_t length;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
    if (inet_pton(AF_INET, address, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((unsigned short)port);
        length = sizeof *v4;
    } else if (inet_pton(AF_INET6, address, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((unsigned short)port);
        length = sizeof *v6;
    } else {
        return -1;
    }
    int fd = socket(storage.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    if (connect(fd, (struct sockaddr *)&storage, length) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until `needle` has been seen or `size - 1` bytes are held, the peer closes or 5 s pass; returns the count. */
static size_t read_until(int fd, char *buffer, size_t size, const char *needle) {
    size_t held = 0;
    buffer[0] = 0;
    while (held + 1 < size && strstr(buffer, needle) == NULL) {
        ssize_t got = read(fd, buffer + held, size - 1 - held);
        if (got <= 0) break;
        held += (size_t)got;
        buffer[held] = 0;
    }
    return held;
}

int probe(int argc, char **argv) {
    if (argc != 4 && !(argc == 6 && strcmp(argv[4], "--via") == 0)) {
        fprintf(stderr, "usage: dispatch-monitor --probe HOST PORT [--via PROXYPORT]\n");
        return 2;
    }
    const char *host = argv[2];
    int port = atoi(argv[3]);
    if (port < 1 || port > 65535 || strlen(host) > 253) {
        fprintf(stderr, "dispatch-monitor --probe: bad destination\n");
        return 2;
    }
    if (argc == 4) {
        int fd = connect_to(host, port);
        puts(fd >= 0 ? "connected" : "failed");
        if (fd >= 0) close(fd);
        return 0;
    }
    int fd = connect_to("127.0.0.1", atoi(argv[5]));
    if (fd < 0) {
        puts("000");
        return 0;
    }
    char request[600];
    int length = snprintf(request, sizeof request, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port, host, port);
    char answer[4096];
    if (write(fd, request, (size_t)length) != length || read_until(fd, answer, sizeof answer, "\r\n\r\n") < 12 ||
        strncmp(answer, "HTTP/1.", 7) != 0) {
        puts("000");
        close(fd);
        return 0;
    }
    char status[4] = {answer[9], answer[10], answer[11], 0};
    if (strcmp(status, "200") != 0) {
        puts(status);
        close(fd);
        return 0;
    }
    /* What the destination sent may have come with the proxy's answer. */
    char *end = strstr(answer, "\r\n\r\n");
    if (end == NULL) {
        puts("000");
        close(fd);
        return 0;
    }
    char *rest = end + 4;
    char greeting[256];
    size_t kept = strlen(rest) < sizeof greeting - 1 ? strlen(rest) : sizeof greeting - 1;
    memcpy(greeting, rest, kept);
    greeting[kept] = 0;
    if (strchr(greeting, '\n') == NULL) read_until(fd, greeting + kept, sizeof greeting - kept, "\n");
    close(fd);
    printf("200%s\n", strncmp(greeting, "dispatch egress canary", 22) == 0 ? "-greeting" : "");
    return 0;
}

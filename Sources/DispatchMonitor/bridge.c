/* dispatch-monitor --bridge: the agent's way out of its network namespace (CONTRACT §10).

   dispatch-monitor --bridge --port P --socket PATH -- PROGRAM [ARG...]

   Runs first inside an isolated attempt's namespaces, whose network is its own loopback only. It listens on
   127.0.0.1:P (and [::1]:P where the namespace has it), starts PROGRAM (the agent, through the user switch), and
   relays every connection made to it over the unix socket PATH — the run's own socket of the runner's egress
   proxy, bound into the namespace — byte for byte, both ways, half-closes passed on. Nothing is parsed here: the
   proxy outside judges every request. Before relaying anything it gives up root (uid and gid 65534, no groups, no
   capability, not dumpable, no new privileges), so the agent's user can neither signal nor trace it.
   It ignores SIGTERM/SIGINT/SIGHUP (they are for the agent, whose group gets them too) and exits as the agent did,
   the same code or the same signal, as soon as the agent has exited: its namespace's init ends with it.
   One thread, epoll, at most MAX_PAIRS connections and two 128 KiB buffers each. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PAIRS 1024
#define BUFFER_BYTES (128 * 1024)

/* One direction of a relayed connection: what was read from `from` and not yet written to `to`. */
struct flow {
    char *data;
    size_t start, end;
    int eof;  /* `from` said it sends no more */
    int shut; /* `to` was told so */
};

struct pair {
    int fds[2]; /* 0: the agent's TCP connection, 1: the proxy's unix socket */
    struct flow flows[2]; /* 0: agent → proxy, 1: proxy → agent */
    int gone[2];          /* the side hung up and left epoll (it would wake the loop again and again) */
    int used;
    unsigned generation; /* which connection holds the slot: an event of the one before it is stale */
};

static struct pair pairs[MAX_PAIRS];
static int epoll_fd = -1;

/* The tag of an epoll entry: which pair, which connection in its slot, and which of its descriptors (the signalfd
   is 0, the listeners have bit 62). */
static unsigned long long tag(int index, int side) {
    return ((unsigned long long)(pairs[index].generation & 0x3fffffffu) << 32) | ((unsigned long long)(index + 1) << 1) | (unsigned)side;
}

static void close_pair(struct pair *pair) {
    for (int side = 0; side < 2; side++) {
        if (pair->fds[side] >= 0) close(pair->fds[side]);
        free(pair->flows[side].data);
    }
    unsigned generation = pair->generation;
    memset(pair, 0, sizeof *pair);
    pair->fds[0] = pair->fds[1] = -1;
    pair->generation = generation + 1;
}

/* One direction is over for good (what it still held can go nowhere): the other goes on, so that an answer already
   on its way (a refusal the proxy wrote before closing) still reaches the agent. */
static void end_flow(struct pair *pair, int direction) {
    struct flow *flow = &pair->flows[direction];
    flow->start = flow->end = 0;
    flow->eof = flow->shut = 1;
    shutdown(pair->fds[direction], SHUT_RD);
    shutdown(pair->fds[1 - direction], SHUT_WR);
}

/* What epoll should wake a descriptor for: reading while its outgoing flow has room and it has not ended, writing
   while its incoming flow holds bytes. */
static void watch(int index) {
    struct pair *pair = &pairs[index];
    for (int side = 0; side < 2; side++) {
        if (pair->gone[side]) continue;
        struct flow *out = &pair->flows[side];      /* read from this side */
        struct flow *in = &pair->flows[1 - side];   /* written to this side */
        struct epoll_event event = {0};
        if (!out->eof && out->end < BUFFER_BYTES) event.events |= EPOLLIN;
        if (in->end > in->start) event.events |= EPOLLOUT;
        event.data.u64 = tag(index, side);
        epoll_ctl(epoll_fd, EPOLL_CTL_MOD, pair->fds[side], &event);
    }
}

/* Moves what can be moved on pair `index`; closes it when both directions are over or a side failed. */
static void pump(int index) {
    struct pair *pair = &pairs[index];
    for (int direction = 0; direction < 2; direction++) {
        struct flow *flow = &pair->flows[direction];
        int from = pair->fds[direction], to = pair->fds[1 - direction];
        if (flow->shut) continue;
        /* Read and pass on while both sides keep up: a few rounds at most, so one connection cannot hold the loop —
           except from a side that hung up, which wakes nobody again: it is read until it is empty or the other side
           is full (whose room wakes the loop). */
        for (int round = 0; round < 16 || pair->gone[direction]; round++) {
            ssize_t got = 0;
            if (!flow->eof && flow->end < BUFFER_BYTES) {
                got = read(from, flow->data + flow->end, BUFFER_BYTES - flow->end);
                if (got > 0) flow->end += (size_t)got;
                else if (got == 0) flow->eof = 1;
                else if (errno != EAGAIN && errno != EINTR) flow->eof = 1; /* a reset: what was read still goes */
            }
            int stuck = 0;
            while (flow->end > flow->start) {
                ssize_t n = send(to, flow->data + flow->start, flow->end - flow->start, MSG_NOSIGNAL);
                if (n > 0) flow->start += (size_t)n;
                else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                    stuck = 1;
                    break;
                } else {
                    end_flow(pair, direction);
                    break;
                }
            }
            if (flow->shut) break;
            if (flow->start == flow->end) flow->start = flow->end = 0;
            if (got <= 0 || stuck) break;
        }
        if (flow->eof && flow->end == 0 && !flow->shut) {
            shutdown(to, SHUT_WR);
            flow->shut = 1;
        }
    }
    if (pair->flows[0].shut && pair->flows[1].shut) {
        close_pair(pair);
        return;
    }
    watch(index);
}

/* A descriptor kept for the moment there are no more: closed to take a connection and end it at once, so that a
   full table does not leave the listener readable forever (the loop would spin). */
static int reserve = -1;

static int listen_on(int family, int port) {
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    int rc;
    if (family == AF_INET) {
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = bind(fd, (struct sockaddr *)&address, sizeof address);
    } else {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        struct sockaddr_in6 address = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port), .sin6_addr = in6addr_loopback};
        rc = bind(fd, (struct sockaddr *)&address, sizeof address);
    }
    if (rc != 0 || listen(fd, 256) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Takes a connection on `listener` and connects it to the proxy's socket; refuses it when MAX_PAIRS are open. */
static void take(int listener, const struct sockaddr_un *proxy) {
    int client = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (client < 0 && (errno == EMFILE || errno == ENFILE)) {
        if (reserve >= 0) {
            close(reserve);
            client = accept(listener, NULL, NULL);
            if (client >= 0) close(client);
        }
        reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
        /* No descriptor to spare even for that (the machine's table is full): wait a little rather than spin. */
        if (reserve < 0) usleep(10000);
        return;
    }
    if (client < 0) return;
    int index = -1;
    for (int i = 0; i < MAX_PAIRS && index < 0; i++)
        if (!pairs[i].used) index = i;
    int upstream = index < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (upstream < 0 || connect(upstream, (const struct sockaddr *)proxy, sizeof *proxy) != 0) {
        if (upstream >= 0) close(upstream);
        close(client);
        return;
    }
    struct pair *pair = &pairs[index];
    pair->used = 1;
    pair->fds[0] = client;
    pair->fds[1] = upstream;
    for (int side = 0; side < 2; side++) {
        pair->flows[side].data = malloc(BUFFER_BYTES);
        struct epoll_event event = {.events = EPOLLIN, .data.u64 = tag(index, side)};
        if (pair->flows[side].data == NULL || epoll_ctl(epoll_fd, EPOLL_CTL_ADD, pair->fds[side], &event) != 0) {
            close_pair(pair);
            return;
        }
    }
}

/* Root gives way to nobody: the bridge holds no secret, but the agent's user must not be able to stop or trace it.
   A root without the capability to change (an agent the operator lets run as root, every capability dropped) stays
   root: then the agent is root too, and not being dumpable still keeps it from tracing the bridge. */
static void give_up_root(void) {
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) != 0 || setresuid(65534, 65534, 65534) != 0) {
            if (errno != EPERM) {
                fprintf(stderr, "dispatch-monitor --bridge: cannot give up root: %s\n", strerror(errno));
                _exit(125);
            }
        }
    }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static void exit_as(int status) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
        _exit(128 + sig);
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 125);
}

int bridge(int argc, char **argv) {
    int port = 0;
    const char *socket_path = NULL;
    char **command = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            command = i + 1 < argc ? &argv[i + 1] : NULL;
            break;
        }
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) socket_path = argv[++i];
        else command = NULL, port = -1;
    }
    struct sockaddr_un proxy = {.sun_family = AF_UNIX};
    if (port < 1 || port > 65535 || socket_path == NULL || command == NULL) {
        fprintf(stderr, "usage: dispatch-monitor --bridge --port PORT --socket PATH -- PROGRAM [ARG...]\n");
        return 2;
    }
    /* The socket is reached from its directory, entered now as the namespace's root: nobody need not pass the
       directories above it (a 0700 state dir), and its path may be longer than a socket address holds. */
    static char directory[4096] = ".";
    const char *slash = strrchr(socket_path, '/');
    if (slash != NULL) {
        size_t length = slash == socket_path ? 1 : (size_t)(slash - socket_path);
        if (length >= sizeof directory) length = sizeof directory - 1;
        memcpy(directory, socket_path, length);
        directory[length] = 0;
        socket_path = slash + 1;
    }
    if (strlen(socket_path) >= sizeof proxy.sun_path) {
        fprintf(stderr, "dispatch-monitor --bridge: socket name too long\n");
        return 2;
    }
    memcpy(proxy.sun_path, socket_path, strlen(socket_path) + 1);
    int listeners[2] = {listen_on(AF_INET, port), listen_on(AF_INET6, port)};
    if (listeners[0] < 0) {
        fprintf(stderr, "dispatch-monitor --bridge: cannot listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        return 125;
    }
    sigset_t wake, none;
    sigemptyset(&wake);
    sigemptyset(&none);
    sigaddset(&wake, SIGCHLD);
    sigprocmask(SIG_BLOCK, &wake, NULL);
    pid_t agent = fork();
    if (agent < 0) {
        fprintf(stderr, "dispatch-monitor --bridge: cannot fork: %s\n", strerror(errno));
        return 125;
    }
    if (agent == 0) {
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(command[0], command);
        fprintf(stderr, "dispatch-monitor --bridge: cannot run %s: %s\n", command[0], strerror(errno));
        _exit(127);
    }
    /* Not before the fork: the agent starts where bwrap put it. */
    if (chdir(directory) != 0) {
        fprintf(stderr, "dispatch-monitor --bridge: cannot enter %s: %s\n", directory, strerror(errno));
        kill(agent, SIGKILL);
        return 125;
    }
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    give_up_root();
    /* The agent's output files are its own: the bridge keeps no descriptor to them. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, 0), dup2(null, 1), dup2(null, 2);
        if (null > 2) close(null);
    }
    for (int i = 0; i < MAX_PAIRS; i++) pairs[i].fds[0] = pairs[i].fds[1] = -1;
    reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int signals = signalfd(-1, &wake, SFD_NONBLOCK | SFD_CLOEXEC);
    epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = 0};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, signals, &event);
    for (int i = 0; i < 2; i++) {
        if (listeners[i] < 0) continue;
        event.data.u64 = 1ULL << 62 | (unsigned)i;
        epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listeners[i], &event);
    }
    int status = 0;
    for (;;) {
        if (waitpid(agent, &status, WNOHANG) == agent) exit_as(status);
        struct epoll_event events[64];
        int count = epoll_wait(epoll_fd, events, 64, signals < 0 ? 100 : -1);
        for (int i = 0; i < count; i++) {
            unsigned long long data = events[i].data.u64;
            if (data == 0) {
                struct signalfd_siginfo info;
                while (read(signals, &info, sizeof info) == sizeof info) {}
            } else if (data >> 62 == 1) {
                take(listeners[data & 1], &proxy);
            } else {
                int index = (int)((data & 0xffffffffu) >> 1) - 1, side = (int)(data & 1);
                if (index < 0 || index >= MAX_PAIRS || !pairs[index].used) continue;
                if ((unsigned)(data >> 32) != (pairs[index].generation & 0x3fffffffu)) continue; /* the slot's earlier connection */
                pump(index);
                if (!pairs[index].used || !(events[i].events & (EPOLLHUP | EPOLLERR))) continue;
                /* A side that hung up would wake the loop again and again: it leaves epoll. What it still holds is
                   read as the other side takes it (woken by that side's writes); what goes to it fails and ends the pair. */
                pairs[index].gone[side] = 1;
                epoll_ctl(epoll_fd, EPOLL_CTL_DEL, pairs[index].fds[side], NULL);
            }
        }
    }
}

/* Target servers for bench/run.py: an echo server and a verifying sink.
 *
 *   targets [--threads T]      prints "echo PORT" and "sink PORT", serves
 *                              until SIGTERM/SIGINT
 *
 * echo: sends back every byte it reads.
 * sink: reads a 16-byte header ("BULK", seed u32le, length u64le), then
 *       exactly `length` bytes which must equal the shared pattern (common.h)
 *       from offset `seed`; then answers 16 bytes: "DONE" or "BAD!" and the
 *       count of bytes received (u64le).  Extra bytes or a mismatch = "BAD!".
 *
 * Both close with a reset (SO_LINGER 0) when the peer has closed, so tens of
 * thousands of benchmark connections leave no TIME_WAIT behind.  One epoll
 * loop per thread; with T > 1 every thread has its own SO_REUSEPORT
 * listening sockets on the same two ports.
 */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum kind { L_ECHO, L_SINK, C_ECHO, C_SINK };

struct conn {
    int fd;
    enum kind kind;
    /* echo: bytes read but not yet written back (rare: only on a full send buffer) */
    uint8_t *pending;
    size_t pending_len, pending_off;
    /* sink */
    uint8_t hdr[BULK_HDR];
    size_t hdr_have;
    uint32_t seed;
    uint64_t length, got;
    int bad, acked;
};

static int echo_port, sink_port;
static pthread_barrier_t bound; /* the threads have their sockets */

static int listen_on(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 4096) < 0) {
        perror("targets: bind/listen");
        exit(2);
    }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(a.sin_port);
}

static void drop(int ep, struct conn *c)
{
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->pending);
    free(c);
}

static void want(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void on_echo(int ep, struct conn *c, uint32_t events, uint8_t *buf)
{
    if (c->pending) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        ssize_t w = write(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off);
        if (w < 0 && errno != EAGAIN) {
            drop(ep, c);
            return;
        }
        if (w > 0) c->pending_off += (size_t)w;
        if (c->pending_off == c->pending_len) {
            free(c->pending);
            c->pending = NULL;
            want(ep, c, EPOLLIN);
        }
        return;
    }
    ssize_t n = read(c->fd, buf, CHUNK_MAX);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        drop(ep, c);
        return;
    }
    if (n < 0) return;
    ssize_t w = write(c->fd, buf, (size_t)n);
    if (w < 0) {
        if (errno != EAGAIN) {
            drop(ep, c);
            return;
        }
        w = 0;
    }
    if (w < n) {
        c->pending_len = (size_t)(n - w);
        c->pending_off = 0;
        c->pending = malloc(c->pending_len);
        memcpy(c->pending, buf + w, c->pending_len);
        want(ep, c, EPOLLOUT);
    }
}

static void sink_ack(struct conn *c)
{
    uint8_t ack[BULK_ACK] = {0};
    memcpy(ack, c->bad ? "BAD!" : "DONE", 4);
    put_u64le(ack + 4, c->got);
    if (write(c->fd, ack, sizeof ack) != (ssize_t)sizeof ack) c->bad = 1;
    c->acked = 1;
}

static void on_sink(int ep, struct conn *c, uint8_t *buf)
{
    ssize_t n = read(c->fd, buf, CHUNK_MAX);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        if (!c->acked && c->hdr_have == BULK_HDR) {
            c->bad = 1; /* closed early: say so if the client still listens */
            sink_ack(c);
        }
        drop(ep, c);
        return;
    }
    if (n < 0) return;
    size_t off = 0, len = (size_t)n;
    if (c->hdr_have < BULK_HDR) {
        size_t take = BULK_HDR - c->hdr_have;
        if (take > len) take = len;
        memcpy(c->hdr + c->hdr_have, buf, take);
        c->hdr_have += take;
        off = take;
        if (c->hdr_have == BULK_HDR) {
            if (memcmp(c->hdr, "BULK", 4) != 0) c->bad = 1;
            c->seed = get_u32le(c->hdr + 4);
            c->length = get_u64le(c->hdr + 8);
        }
    }
    if (off < len) {
        size_t data = len - off;
        if (c->acked || c->got + data > c->length) {
            c->bad = 1; /* more than announced */
        } else if (!c->bad && memcmp(buf + off, pat_at(c->seed, c->got), data) != 0) {
            c->bad = 1;
        }
        c->got += data;
    }
    if (c->hdr_have == BULK_HDR && !c->acked && (c->got >= c->length || c->bad)) sink_ack(c);
}

static void *serve(void *arg)
{
    (void)arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *ls[2];
    int ports[2] = {echo_port, sink_port};
    for (int i = 0; i < 2; i++) {
        ls[i] = calloc(1, sizeof(struct conn));
        ls[i]->fd = listen_on(ports[i]);
        ls[i]->kind = i == 0 ? L_ECHO : L_SINK;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ls[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, ls[i]->fd, &ev);
    }
    pthread_barrier_wait(&bound);
    uint8_t *buf = malloc(CHUNK_MAX);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            exit(2);
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->kind == L_ECHO || c->kind == L_SINK) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->kind = c->kind == L_ECHO ? C_ECHO : C_SINK;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
            } else if (c->kind == C_ECHO) {
                on_echo(ep, c, evs[i].events, buf);
            } else {
                on_sink(ep, c, buf);
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: targets [--threads T]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    pattern_init();
    /* reserve the two ports: the first sockets pick them, the threads join */
    int e = listen_on(0), s = listen_on(0);
    echo_port = port_of(e);
    sink_port = port_of(s);
    pthread_t tid;
    pthread_barrier_init(&bound, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) pthread_create(&tid, NULL, serve, NULL);
    pthread_barrier_wait(&bound);
    close(e); /* the threads' own sockets keep the ports */
    close(s);
    printf("echo %d\nsink %d\n", echo_port, sink_port);
    fflush(stdout);
    for (;;) pause();
}

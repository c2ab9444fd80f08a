/* Load generator for bench/run.py: SOCKS 5 CONNECT clients on loopback.
 *
 *   loadgen setups --proxy P --target ECHO [--auth USER:PASS] [--concurrency 50]
 *                  [--duration 2] [--size 64]
 *   loadgen bulk   --proxy P --target SINK --streams N --bytes B
 *   loadgen bulk   --proxy P --target ECHO --streams N --bytes B --echo 1
 *   loadgen rtt    --proxy P --target ECHO [--count 2000] [--size 64] [--spin 1]
 *   loadgen idle   --proxy P --target ECHO --conns N [--concurrency 100]
 *
 * P = 0: no proxy (straight to the target: the "direct" baseline).  All
 * addresses are 127.0.0.1.  One thread, one epoll loop (rtt: blocking).  The
 * client waits for each SOCKS answer before sending the next message (as
 * real clients do; some servers drop pipelined bytes).  Connections are
 * closed with a reset (SO_LINGER 0), so no TIME_WAIT piles up.  Every
 * payload is a slice of the shared pattern (common.h) and is checked when
 * it comes back (echo) or by the sink (bulk).
 *
 * setups: `concurrency` clients in a closed loop for `duration` seconds;
 *         one setup = connect + greeting (+ RFC 1929) + CONNECT + one
 *         `size`-byte round trip + close; latency from connect() to the
 *         echo.  Setups still in flight at the deadline are finished
 *         (bounded by --timeout) and counted.
 * bulk:   N tunnels are set up first; then each uploads B bytes to the sink
 *         at once; the time runs from the first byte sent to the last
 *         sink acknowledgement (which says the bytes arrived intact).
 *         --echo 1: to the echo server instead, reading everything back
 *         while sending (both directions at once; checked as it arrives),
 *         at most --window bytes (default 1 MiB) sent and not yet back:
 *         a relay that blocks writing one way while the other way fills
 *         (microsocks) would otherwise deadlock with an unbounded sender.
 * rtt:    one tunnel, `count` sequential round trips after 100 unmeasured;
 *         --spin 1: wait for each answer polling (MSG_DONTWAIT) instead of
 *         sleeping, so the client's wake-up is not part of the time.
 * idle:   opens N tunnels (each checked with one round trip), prints a
 *         "ready" line, waits for a line on stdin, then does one more round
 *         trip on every tunnel and prints the result.
 *
 * Output: one JSON object per line on stdout.  Exit status 0 unless the
 * arguments are wrong.
 */
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 1400

/* -- options -------------------------------------------------------------- */

static int proxy_port, target_port;
static const char *auth_user, *auth_pass;
static int concurrency = 50, size = 64, count = 2000, streams = 1, conns = 1000;
static double duration = 2.0, timeout_s = 10.0;
static uint64_t bytes_per_stream = 64ull << 20;

/* -- results -------------------------------------------------------------- */

static uint64_t n_ok, n_connect, n_socks, n_eof, n_timeout, n_corrupt;
static uint64_t *lat;
static size_t lat_n, lat_cap;
static int errors_shown;

/* CPU seconds (user + system) this process has used so far */
static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void fail_note(const char *what, int err)
{
    if (errors_shown++ < 5)
        fprintf(stderr, "loadgen: %s%s%s\n", what, err ? ": " : "", err ? strerror(err) : "");
}

static void lat_add(uint64_t ns)
{
    if (lat_n == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 4096;
        lat = realloc(lat, lat_cap * sizeof *lat);
    }
    lat[lat_n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double p)
{
    if (!lat_n) return 0;
    size_t i = (size_t)(p * (double)(lat_n - 1) + 0.5);
    return (double)lat[i] / 1000.0;
}

static void print_counts(void)
{
    uint64_t errors = n_connect + n_socks + n_eof + n_timeout;
    printf("\"ok\": %llu, \"errors\": %llu, \"corrupt\": %llu, \"err_connect\": %llu, "
           "\"err_socks\": %llu, \"err_eof\": %llu, \"err_timeout\": %llu",
           (unsigned long long)n_ok, (unsigned long long)errors, (unsigned long long)n_corrupt,
           (unsigned long long)n_connect, (unsigned long long)n_socks, (unsigned long long)n_eof,
           (unsigned long long)n_timeout);
}

static void print_latency(void)
{
    qsort(lat, lat_n, sizeof *lat, cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < lat_n; i++) sum += (double)lat[i];
    printf(", \"p50_us\": %.1f, \"p99_us\": %.1f, \"mean_us\": %.1f, \"max_us\": %.1f",
           pct_us(0.50), pct_us(0.99), lat_n ? sum / (double)lat_n / 1000.0 : 0.0,
           lat_n ? (double)lat[lat_n - 1] / 1000.0 : 0.0);
}

/* -- SOCKS 5 messages ----------------------------------------------------- */

static size_t greeting(uint8_t *m)
{
    m[0] = 5;
    m[1] = 1;
    m[2] = auth_user ? 2 : 0;
    return 3;
}

static size_t auth_msg(uint8_t *m)
{
    size_t ul = strlen(auth_user), pl = strlen(auth_pass);
    m[0] = 1;
    m[1] = (uint8_t)ul;
    memcpy(m + 2, auth_user, ul);
    m[2 + ul] = (uint8_t)pl;
    memcpy(m + 3 + ul, auth_pass, pl);
    return 3 + ul + pl;
}

static size_t connect_msg(uint8_t *m)
{
    uint8_t r[10] = {5, 1, 0, 1, 127, 0, 0, 1, (uint8_t)(target_port >> 8), (uint8_t)target_port};
    memcpy(m, r, 10);
    return 10;
}

/* the full length of a SOCKS 5 reply, from its first 5 bytes */
static size_t reply_len(const uint8_t *r)
{
    switch (r[3]) {
    case 1: return 10;
    case 4: return 22;
    case 3: return 7 + (size_t)r[4];
    default: return 0;
    }
}

static int new_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static struct sockaddr_in first_hop(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_port = htons((uint16_t)(proxy_port ? proxy_port : target_port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

static void close_reset(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* -- blocking handshake (rtt, bulk) ---------------------------------------- */

static int spin, spin_rtt, echo_mode;
static uint64_t window = 1u << 20; /* bulk echo: bytes sent and not yet back */ /* rtt: poll the socket instead of sleeping in read() */

static int read_full(int fd, uint8_t *b, size_t n)
{
    size_t have = 0;
    uint64_t deadline = spin ? now_ns() + (uint64_t)(timeout_s * 1e9) : 0;
    while (have < n) {
        ssize_t r = recv(fd, b + have, n - have, spin ? MSG_DONTWAIT : 0);
        if (r < 0 && spin && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (now_ns() > deadline) return -1;
            continue;
        }
        if (r <= 0) return -1;
        have += (size_t)r;
    }
    return 0;
}

/* a blocking tunnel to the target, or -1 (counted) */
static int tunnel_blocking(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {(time_t)timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = first_hop();
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        n_connect++;
        fail_note("connect", errno);
        close(fd);
        return -1;
    }
    if (!proxy_port) return fd;
    uint8_t m[600];
    size_t len = greeting(m);
    if (write(fd, m, len) != (ssize_t)len || read_full(fd, m, 2) < 0) goto eof;
    if (m[0] != 5 || m[1] != (auth_user ? 2 : 0)) goto socks;
    if (auth_user) {
        len = auth_msg(m);
        if (write(fd, m, len) != (ssize_t)len || read_full(fd, m, 2) < 0) goto eof;
        if (m[1] != 0) goto socks;
    }
    len = connect_msg(m);
    if (write(fd, m, len) != (ssize_t)len || read_full(fd, m, 5) < 0) goto eof;
    len = reply_len(m);
    if (m[1] != 0 || len == 0 || read_full(fd, m + 5, len - 5) < 0) goto socks;
    return fd;
eof:
    n_eof++;
    fail_note("handshake: closed or timed out", errno);
    close_reset(fd);
    return -1;
socks:
    n_socks++;
    fail_note("handshake: refused by the proxy", 0);
    close_reset(fd);
    return -1;
}

/* -- the epoll machine (setups, idle) --------------------------------------- */

enum state { ST_CONNECT, ST_METHOD, ST_AUTH, ST_REPLY, ST_ECHO, ST_IDLE, ST_CHECK, ST_DONE };

struct lconn {
    int fd;
    enum state st;
    uint32_t id;
    uint64_t t0, poff;
    size_t have, need;
    uint8_t buf[BUFSZ];
};

static int ep;
static struct lconn *slots;
static int running; /* setups: still starting new connections */
static int active;  /* connections not idle/done */
static int idle_mode;
static uint64_t seq;

static void want(struct lconn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_conn(struct lconn *c);

static void finish(struct lconn *c, uint64_t *counter, const char *why, int err)
{
    if (counter) {
        (*counter)++;
        fail_note(why, err);
    }
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close_reset(c->fd);
    c->fd = -1;
    c->st = ST_DONE;
    active--; /* setups: loop_until starts the slot again */
}

static int send_all(struct lconn *c, const uint8_t *m, size_t len)
{
    if (write(c->fd, m, len) != (ssize_t)len) {
        finish(c, &n_eof, "write", errno);
        return -1;
    }
    return 0;
}

static void expect(struct lconn *c, enum state st, size_t need)
{
    c->st = st;
    c->have = 0;
    c->need = need;
    want(c, EPOLLIN);
}

static void send_payload(struct lconn *c, enum state st)
{
    c->poff = (seq++ * 61u) % PAT_LEN;
    if (send_all(c, pat_at(c->poff, 0), (size_t)size) == 0) expect(c, st, (size_t)size);
}

static void on_connected(struct lconn *c)
{
    if (!proxy_port) {
        send_payload(c, ST_ECHO);
        return;
    }
    uint8_t m[4];
    size_t len = greeting(m);
    if (send_all(c, m, len) == 0) expect(c, ST_METHOD, 2);
}

static void start_conn(struct lconn *c)
{
    c->fd = new_socket();
    c->t0 = now_ns();
    c->st = ST_CONNECT;
    active++;
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    struct sockaddr_in a = first_hop();
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) == 0)
        on_connected(c);
    else if (errno != EINPROGRESS)
        finish(c, &n_connect, "connect", errno);
}

/* a complete message of c->need bytes is in c->buf */
static void on_message(struct lconn *c)
{
    uint8_t m[600];
    switch (c->st) {
    case ST_METHOD:
        if (c->buf[0] != 5 || c->buf[1] != (auth_user ? 2 : 0)) {
            finish(c, &n_socks, "method refused", 0);
        } else if (auth_user) {
            if (send_all(c, m, auth_msg(m)) == 0) expect(c, ST_AUTH, 2);
        } else if (send_all(c, m, connect_msg(m)) == 0) {
            expect(c, ST_REPLY, 5);
        }
        return;
    case ST_AUTH:
        if (c->buf[1] != 0)
            finish(c, &n_socks, "authentication refused", 0);
        else if (send_all(c, m, connect_msg(m)) == 0)
            expect(c, ST_REPLY, 5);
        return;
    case ST_REPLY:
        if (c->need == 5) {
            size_t len = reply_len(c->buf);
            if (c->buf[0] != 5 || c->buf[1] != 0 || len == 0) {
                finish(c, &n_socks, "CONNECT refused", 0);
                return;
            }
            c->need = len;
            return; /* read the rest of the reply */
        }
        send_payload(c, ST_ECHO);
        return;
    case ST_ECHO:
    case ST_CHECK:
        if (memcmp(c->buf, pat_at(c->poff, 0), (size_t)size) != 0) {
            finish(c, &n_corrupt, "echo differs from what was sent", 0);
            return;
        }
        if (idle_mode) {
            if (c->st == ST_CHECK) n_ok++;
            c->st = ST_IDLE; /* stay registered for EPOLLIN: a close is an error */
            c->have = 0;
            active--;
            return;
        }
        n_ok++;
        lat_add(now_ns() - c->t0);
        finish(c, NULL, NULL, 0);
        return;
    default:
        return;
    }
}

static void on_event(struct lconn *c, uint32_t events)
{
    if (c->st == ST_CONNECT) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            finish(c, &n_connect, "connect", err);
            return;
        }
        on_connected(c);
        return;
    }
    if (c->st == ST_IDLE) { /* nothing is expected on an idle tunnel */
        uint8_t b[16];
        ssize_t n = read(c->fd, b, sizeof b);
        if (n < 0 && errno == EAGAIN) return;
        active++;
        finish(c, n > 0 ? &n_corrupt : &n_eof, "idle tunnel closed or sent data", 0);
        return;
    }
    (void)events;
    while (c->fd >= 0 && c->have < c->need) {
        ssize_t n = read(c->fd, c->buf + c->have, c->need - c->have);
        if (n == 0 || (n < 0 && errno != EAGAIN)) {
            finish(c, &n_eof, "closed by the peer", n < 0 ? errno : 0);
            return;
        }
        if (n < 0) return;
        c->have += (size_t)n;
        if (c->have == c->need) on_message(c);
    }
}

static void loop_until(uint64_t deadline, int stop_when_quiet)
{
    struct epoll_event evs[512];
    uint64_t last_scan = now_ns();
    uint64_t tmo = (uint64_t)(timeout_s * 1e9);
    for (;;) {
        uint64_t now = now_ns();
        if (running && now >= deadline) running = 0;
        if (!running && stop_when_quiet && active == 0) return;
        if (!running && !stop_when_quiet) return;
        int n = epoll_wait(ep, evs, 512, 50);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        for (int i = 0; running && !idle_mode && i < concurrency; i++)
            if (slots[i].fd < 0) start_conn(&slots[i]);
        now = now_ns();
        if (now - last_scan > 200000000ull) { /* time out stuck connections */
            last_scan = now;
            for (int i = 0; i < (idle_mode ? conns : concurrency); i++) {
                struct lconn *c = &slots[i];
                if (c->fd >= 0 && c->st != ST_IDLE && c->st != ST_DONE && now - c->t0 > tmo)
                    finish(c, &n_timeout, "timed out", 0);
            }
        }
    }
}

static int run_setups(void)
{
    slots = calloc((size_t)concurrency, sizeof *slots);
    for (int i = 0; i < concurrency; i++) slots[i].fd = -1;
    uint64_t t0 = now_ns();
    double cpu0 = cpu_now();
    running = 1;
    for (int i = 0; i < concurrency; i++) {
        slots[i].id = (uint32_t)i;
        start_conn(&slots[i]);
    }
    loop_until(t0 + (uint64_t)(duration * 1e9), 1);
    double secs = (double)(now_ns() - t0) / 1e9;
    printf("{\"mode\": \"setups\", \"seconds\": %.3f, \"rate\": %.1f, \"cpu_s\": %.3f, ", secs,
           (double)n_ok / secs, cpu_now() - cpu0);
    print_counts();
    print_latency();
    printf("}\n");
    return 0;
}

static int run_idle(void)
{
    idle_mode = 1;
    slots = calloc((size_t)conns, sizeof *slots);
    for (int i = 0; i < conns; i++) slots[i].fd = -1;
    uint64_t t0 = now_ns();
    int next = 0;
    /* open: at most `concurrency` handshakes at a time */
    while (next < conns || active > 0) {
        while (next < conns && active < concurrency) {
            slots[next].id = (uint32_t)next;
            start_conn(&slots[next]);
            next++;
        }
        struct epoll_event evs[512];
        int n = epoll_wait(ep, evs, 512, 50);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        uint64_t now = now_ns();
        for (int i = 0; i < next; i++) {
            struct lconn *c = &slots[i];
            if (c->fd >= 0 && c->st != ST_IDLE && now - c->t0 > (uint64_t)(timeout_s * 1e9))
                finish(c, &n_timeout, "timed out", 0);
        }
    }
    int open_ok = 0;
    for (int i = 0; i < conns; i++) open_ok += slots[i].fd >= 0;
    printf("{\"phase\": \"ready\", \"opened\": %d, \"seconds\": %.3f, ", open_ok,
           (double)(now_ns() - t0) / 1e9);
    print_counts();
    printf("}\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 0;
    /* check: one round trip on every tunnel still open */
    n_ok = 0;
    uint64_t t1 = now_ns();
    for (int i = 0; i < conns; i++) {
        struct lconn *c = &slots[i];
        if (c->fd < 0) continue;
        c->t0 = now_ns();
        active++;
        send_payload(c, ST_CHECK);
    }
    running = 0;
    uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
    while (active > 0 && now_ns() < deadline) {
        struct epoll_event evs[512];
        int n = epoll_wait(ep, evs, 512, 50);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    if (active > 0) n_timeout += (uint64_t)active;
    printf("{\"phase\": \"checked\", \"opened\": %d, \"seconds\": %.3f, ", open_ok,
           (double)(now_ns() - t1) / 1e9);
    print_counts();
    printf("}\n");
    for (int i = 0; i < conns; i++)
        if (slots[i].fd >= 0) close_reset(slots[i].fd);
    return 0;
}

static int run_rtt(void)
{
    int fd = tunnel_blocking();
    if (fd >= 0) {
        spin = spin_rtt;
        uint8_t *back = malloc((size_t)size);
        for (int i = 0; i < count + 100; i++) {
            const uint8_t *m = pat_at((uint64_t)i * 61u, 0);
            uint64_t t = now_ns();
            if (write(fd, m, (size_t)size) != size || read_full(fd, back, (size_t)size) < 0) {
                n_eof++;
                fail_note("round trip: closed or timed out", errno);
                break;
            }
            uint64_t dt = now_ns() - t;
            if (memcmp(back, m, (size_t)size) != 0) {
                n_corrupt++;
                fail_note("echo differs from what was sent", 0);
                break;
            }
            if (i >= 100) {
                lat_add(dt);
                n_ok++;
            }
        }
        close_reset(fd);
    }
    printf("{\"mode\": \"rtt\", ");
    print_counts();
    print_latency();
    printf("}\n");
    return 0;
}

struct stream {
    int fd;
    uint32_t seed;
    uint64_t sent;  /* payload bytes */
    uint64_t recvd; /* echo mode: payload bytes back */
    size_t hdr_sent, ack_have;
    uint8_t hdr[BULK_HDR], ack[BULK_ACK];
    int done;
};

static int run_bulk(void)
{
    struct stream *s = calloc((size_t)streams, sizeof *s);
    int live = 0;
    for (int i = 0; i < streams; i++) {
        s[i].fd = tunnel_blocking();
        s[i].seed = (uint32_t)(i * 7919 + 1);
        memcpy(s[i].hdr, "BULK", 4);
        put_u32le(s[i].hdr + 4, s[i].seed);
        put_u64le(s[i].hdr + 8, bytes_per_stream);
        if (s[i].fd < 0) {
            s[i].done = 1;
            continue;
        }
        fcntl(s[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &s[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &ev);
        live++;
    }
    uint64_t t0 = now_ns(), t_end = t0;
    double cpu0 = cpu_now(), cpu_end = cpu0;
    uint64_t deadline = t0 + (uint64_t)(timeout_s * 1e9);
    uint64_t total = 0;
    struct epoll_event evs[256];
    while (live > 0 && now_ns() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct stream *st = evs[i].data.ptr;
            if (st->done) continue;
            if (st->hdr_sent < BULK_HDR || st->sent < bytes_per_stream) {
                ssize_t w;
                if (st->hdr_sent < BULK_HDR) {
                    w = write(st->fd, st->hdr + st->hdr_sent, BULK_HDR - st->hdr_sent);
                    if (w > 0) st->hdr_sent += (size_t)w;
                } else {
                    uint64_t left = bytes_per_stream - st->sent;
                    size_t len = left < CHUNK_MAX ? (size_t)left : CHUNK_MAX;
                    w = write(st->fd, pat_at(st->seed, st->sent), len);
                    if (w > 0) st->sent += (uint64_t)w;
                }
                if (w < 0 && errno != EAGAIN) {
                    n_eof++;
                    fail_note("bulk write", errno);
                    st->done = 1;
                    live--;
                    continue;
                }
                if (st->hdr_sent == BULK_HDR && st->sent == bytes_per_stream) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = st};
                    epoll_ctl(ep, EPOLL_CTL_MOD, st->fd, &ev);
                }
                continue;
            }
            ssize_t r = read(st->fd, st->ack + st->ack_have, BULK_ACK - st->ack_have);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) {
                n_eof++;
                fail_note("bulk: closed before the sink's answer", r < 0 ? errno : 0);
                st->done = 1;
                live--;
                continue;
            }
            st->ack_have += (size_t)r;
            if (st->ack_have < BULK_ACK) continue;
            st->done = 1;
            live--;
            t_end = now_ns();
            cpu_end = cpu_now();
            uint64_t got = get_u64le(st->ack + 4);
            if (memcmp(st->ack, "DONE", 4) != 0 || got != bytes_per_stream) {
                n_corrupt++;
                fail_note("bulk: the sink saw different bytes", 0);
            } else {
                n_ok++;
                total += got;
            }
        }
    }
    n_timeout += (uint64_t)live;
    for (int i = 0; i < streams; i++)
        if (s[i].fd >= 0) close_reset(s[i].fd);
    double secs = (double)(t_end - t0) / 1e9;
    printf("{\"mode\": \"bulk\", \"streams\": %d, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"mbps\": %.1f, \"cpu_s\": %.3f, ",
           streams, (unsigned long long)total, secs, secs > 0 ? (double)total / secs / 1e6 : 0.0,
           cpu_end - cpu0);
    print_counts();
    printf("}\n");
    return 0;
}

/* bulk --echo 1: each stream sends its bytes to the echo server and reads
 * them back (checked as they arrive), both at once: the proxy relays both
 * directions.  "mbps" counts one direction. */
static int run_bulk_echo(void)
{
    struct stream *s = calloc((size_t)streams, sizeof *s);
    uint8_t *buf = malloc(CHUNK_MAX);
    int live = 0;
    for (int i = 0; i < streams; i++) {
        s[i].fd = tunnel_blocking();
        s[i].seed = (uint32_t)(i * 7919 + 1);
        if (s[i].fd < 0) {
            s[i].done = 1;
            continue;
        }
        fcntl(s[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = &s[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, s[i].fd, &ev);
        live++;
    }
    uint64_t t0 = now_ns(), t_end = t0;
    double cpu0 = cpu_now(), cpu_end = cpu0;
    uint64_t deadline = t0 + (uint64_t)(timeout_s * 1e9);
    uint64_t total = 0;
    struct epoll_event evs[256];
    while (live > 0 && now_ns() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            struct stream *st = evs[i].data.ptr;
            if (st->done) continue;
            if ((evs[i].events & EPOLLOUT) && st->sent < bytes_per_stream) {
                uint64_t left = bytes_per_stream - st->sent;
                uint64_t room = window - (st->sent - st->recvd);
                if (room < left) left = room;
                size_t len = left < CHUNK_MAX ? (size_t)left : CHUNK_MAX;
                ssize_t w = write(st->fd, pat_at(st->seed, st->sent), len);
                if (w > 0) st->sent += (uint64_t)w;
                if (st->sent == bytes_per_stream || st->sent - st->recvd >= window) {
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = st};
                    epoll_ctl(ep, EPOLL_CTL_MOD, st->fd, &ev); /* full window: wait */
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = read(st->fd, buf, CHUNK_MAX);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0 || st->recvd + (uint64_t)r > bytes_per_stream) {
                if (r > 0) n_corrupt++; else n_eof++;
                fail_note(r > 0 ? "bulk echo: more bytes than sent" : "bulk echo: closed early",
                          r < 0 ? errno : 0);
                st->done = 1;
                live--;
                continue;
            }
            if (memcmp(buf, pat_at(st->seed, st->recvd), (size_t)r) != 0) {
                n_corrupt++;
                fail_note("bulk echo: bytes differ from what was sent", 0);
                st->done = 1;
                live--;
                continue;
            }
            st->recvd += (uint64_t)r;
            if (st->sent < bytes_per_stream && st->sent - st->recvd < window) {
                struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = st};
                epoll_ctl(ep, EPOLL_CTL_MOD, st->fd, &ev); /* room again */
            }
            if (st->recvd == bytes_per_stream) {
                st->done = 1;
                live--;
                n_ok++;
                total += st->recvd;
                t_end = now_ns();
                cpu_end = cpu_now();
            }
        }
    }
    n_timeout += (uint64_t)live;
    for (int i = 0; i < streams; i++)
        if (s[i].fd >= 0) close_reset(s[i].fd);
    double secs = (double)(t_end - t0) / 1e9;
    printf("{\"mode\": \"bulk-echo\", \"streams\": %d, \"bytes\": %llu, \"seconds\": %.3f, "
           "\"mbps\": %.1f, \"cpu_s\": %.3f, ",
           streams, (unsigned long long)total, secs, secs > 0 ? (double)total / secs / 1e6 : 0.0,
           cpu_end - cpu0);
    print_counts();
    printf("}\n");
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: loadgen setups|bulk|rtt|idle --proxy PORT --target PORT [options]"
                    " (see the comment at the top of loadgen.c)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2) usage();
    const char *mode = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(k, "--proxy")) proxy_port = atoi(v);
        else if (!strcmp(k, "--target")) target_port = atoi(v);
        else if (!strcmp(k, "--concurrency")) concurrency = atoi(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--timeout")) timeout_s = atof(v);
        else if (!strcmp(k, "--size")) size = atoi(v);
        else if (!strcmp(k, "--count")) count = atoi(v);
        else if (!strcmp(k, "--streams")) streams = atoi(v);
        else if (!strcmp(k, "--conns")) conns = atoi(v);
        else if (!strcmp(k, "--spin")) spin_rtt = atoi(v);
        else if (!strcmp(k, "--echo")) echo_mode = atoi(v);
        else if (!strcmp(k, "--window")) window = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--bytes")) bytes_per_stream = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--auth")) {
            static char up[600];
            snprintf(up, sizeof up, "%s", v);
            char *colon = strchr(up, ':');
            if (!colon || strlen(up) > 511) usage();
            *colon = 0;
            auth_user = up;
            auth_pass = colon + 1;
        } else usage();
    }
    if (!target_port || window < 1 || size < 1 || size > BUFSZ || concurrency < 1 || streams < 1 || conns < 1)
        usage();
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    pattern_init();
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!strcmp(mode, "setups")) return run_setups();
    if (!strcmp(mode, "bulk")) return echo_mode ? run_bulk_echo() : run_bulk();
    if (!strcmp(mode, "rtt")) return run_rtt();
    if (!strcmp(mode, "idle")) return run_idle();
    usage();
}

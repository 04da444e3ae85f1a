/* A cheap UDP load generator for benchmarks/bench_fleet.py (compiled there with gcc; a benchmark tool,
 * not part of the product). Loopback only, bounded in time and count.
 *
 * Streams: pre-encoded datagrams, one per stream, read from a template file with lines
 *     <fd> <obs_offset> <hex datagram>
 * (fd -1: a socket of our own connected to 127.0.0.1:<port>; obs_offset -1: no Observe value). For each
 * send the message id (bytes 2-3, a counter per socket from the first template's id + --mid-base) and the 3-byte Observe value
 * (a counter per stream, from the stream's datagram + --seq-add) are patched in place. Streams are sent
 * round-robin with sendto(2) to 127.0.0.1:<port>; replies are read with recv(2) from every socket via
 * epoll and counted by CoAP type (ACK, RST, other), so the peer's answers are counted at the socket.
 *
 * Modes: --rate R  open loop, R datagrams/s spread evenly (the generator never retransmits);
 *        --window W  closed loop: at most W datagrams unanswered in total (round trips/s); a window
 *                    with no reply for 50 ms is reopened and counted as a stall.
 * Prints one JSON line: sent, acked, rst, other, seconds, stalls, replies_in_time.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 200000
#define MAX_LEN 512

typedef struct {
    int fd;
    int obs;
    int len;
    uint32_t seq;
    unsigned char buf[MAX_LEN];
} stream_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int main(int argc, char **argv) {
    int port = 0, window = 0;
    double rate = 0, seconds = 1;
    long max_count = 10000000;
    unsigned mid_base = 0, seq_add = 0;
    const char *path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--window")) window = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--max")) max_count = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--mid-base")) mid_base = (unsigned)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq-add")) seq_add = (unsigned)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--templates")) path = argv[i + 1];
    }
    if (!port || !path || (rate <= 0 && window <= 0) || seconds > 600) {
        fprintf(stderr, "usage: _blast --port P --templates F (--rate R | --window W) [--seconds S]\n");
        return 2;
    }
    FILE *f = fopen(path, "r");
    if (!f) { perror(path); return 2; }
    stream_t *streams = calloc(MAX_STREAMS, sizeof(stream_t));
    int n = 0;
    char line[2 * MAX_LEN + 64];
    struct sockaddr_in dest = {0};
    dest.sin_family = AF_INET;
    dest.sin_port = htons(port);
    dest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    while (n < MAX_STREAMS && fgets(line, sizeof line, f)) {
        int fd, obs, off = 0;
        if (sscanf(line, "%d %d %n", &fd, &obs, &off) < 2) continue;
        stream_t *s = &streams[n];
        if (fd < 0) {
            fd = socket(AF_INET, SOCK_DGRAM, 0);
            struct sockaddr_in any = {0};
            any.sin_family = AF_INET;
            any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (fd < 0 || bind(fd, (struct sockaddr *)&any, sizeof any) < 0) { perror("socket"); return 2; }
        }
        s->fd = fd;
        s->obs = obs;
        const char *h = line + off;
        int len = 0;
        while (len < MAX_LEN && hexval(h[0]) >= 0 && hexval(h[1]) >= 0) {
            s->buf[len++] = (unsigned char)(hexval(h[0]) << 4 | hexval(h[1]));
            h += 2;
        }
        s->len = len;
        if (obs >= 0) {
            if (obs + 3 > len) { fprintf(stderr, "bad obs offset\n"); return 2; }
            s->seq = ((uint32_t)s->buf[obs] << 16 | s->buf[obs + 1] << 8 | s->buf[obs + 2]) + seq_add;
        }
        int fl = fcntl(fd, F_GETFL);
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        n++;
    }
    fclose(f);
    if (!n) { fprintf(stderr, "no streams\n"); return 2; }

    /* one message-id counter per socket (fd), one epoll registration per socket */
    int maxfd = 0;
    for (int i = 0; i < n; i++) if (streams[i].fd > maxfd) maxfd = streams[i].fd;
    uint16_t *mids = calloc(maxfd + 1, sizeof(uint16_t));
    char *seen = calloc(maxfd + 1, 1);
    int ep = epoll_create1(0);
    for (int i = 0; i < n; i++) {
        int fd = streams[i].fd;
        if (seen[fd]) continue;
        seen[fd] = 1;
        mids[fd] = (uint16_t)(mid_base + (streams[i].buf[2] << 8 | streams[i].buf[3]));
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }

    long sent = 0, acked = 0, rst = 0, other = 0, stalls = 0, errors = 0;
    long inflight = 0;
    int cursor = 0;
    double start = now(), end = start + seconds, last_reply = start;
    struct epoll_event events[256];
    unsigned char rbuf[2048];
    for (;;) {
        double t = now();
        if (t >= end || sent >= max_count) break;
        long target = rate > 0 ? (long)((t - start) * rate) + 1 : sent + (window - inflight);
        if (target > max_count) target = max_count;
        int burst = 0;
        while (sent < target && burst < 64) {
            stream_t *s = &streams[cursor];
            if (++cursor == n) cursor = 0;
            uint16_t mid = ++mids[s->fd];
            s->buf[2] = mid >> 8;
            s->buf[3] = mid & 0xff;
            if (s->obs >= 0) {
                uint32_t q = ++s->seq & 0xffffff;
                s->buf[s->obs] = q >> 16;
                s->buf[s->obs + 1] = (q >> 8) & 0xff;
                s->buf[s->obs + 2] = q & 0xff;
            }
            if (sendto(s->fd, s->buf, s->len, 0, (struct sockaddr *)&dest, sizeof dest) < 0) {
                errors++;
                if (errno == EAGAIN || errno == ENOBUFS) break;
            } else {
                sent++;
                inflight++;
                burst++;
            }
        }
        int k = epoll_wait(ep, events, 256, 0);
        for (int e = 0; e < k; e++) {
            int fd = events[e].data.fd;
            for (;;) {
                ssize_t r = recv(fd, rbuf, sizeof rbuf, 0);
                if (r < 0) break;
                if (r >= 4 && (rbuf[0] & 0xc0) == 0x40) {
                    int type = (rbuf[0] >> 4) & 3;
                    if (type == 2 && rbuf[1] == 0) acked++;
                    else if (type == 3) rst++;
                    else other++;
                } else {
                    other++;
                }
                inflight--;
                last_reply = now();
            }
        }
        if (inflight < 0) inflight = 0;
        if (window > 0 && inflight >= window && now() - last_reply > 0.05) {
            stalls++;
            inflight = 0;
            last_reply = now();
        }
        if (rate > 0 && k == 0 && sent >= target) {
            struct timespec ts = {0, 50000}; /* 50 us */
            nanosleep(&ts, NULL);
        }
    }
    double elapsed = now() - start;
    long in_time = acked + rst + other; /* replies that arrived within the measured seconds */
    /* collect the replies still on their way (bounded: 0.5 s) */
    double drain_end = now() + 0.5;
    while (now() < drain_end) {
        int k = epoll_wait(ep, events, 256, 50);
        for (int e = 0; e < k; e++) {
            int fd = events[e].data.fd;
            for (;;) {
                ssize_t r = recv(fd, rbuf, sizeof rbuf, 0);
                if (r < 0) break;
                if (r >= 4 && (rbuf[0] & 0xc0) == 0x40) {
                    int type = (rbuf[0] >> 4) & 3;
                    if (type == 2 && rbuf[1] == 0) acked++;
                    else if (type == 3) rst++;
                    else other++;
                } else {
                    other++;
                }
            }
        }
    }
    printf("{\"sent\": %ld, \"acked\": %ld, \"rst\": %ld, \"other\": %ld, \"seconds\": %.6f, \"stalls\": %ld, "
           "\"send_errors\": %ld, \"streams\": %d, \"replies_in_time\": %ld}\n",
           sent, acked, rst, other, elapsed, stalls, errors, n, in_time);
    return 0;
}

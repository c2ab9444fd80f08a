/* Shared by loadgen.c and targets.c: the byte pattern, clocks, small helpers.
 *
 * Every payload the benchmark sends is a slice of one pseudo-random pattern
 * of PAT_LEN bytes (not a power of two, so a dropped, repeated or reordered
 * block of any usual size shows up as a mismatch).  Byte k of a stream with
 * seed s is pat[(s + k) % PAT_LEN]; pat2 holds the pattern followed by its
 * first CHUNK_MAX bytes again, so any slice of up to CHUNK_MAX bytes is
 * contiguous and can be sent or compared with one call.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define PAT_LEN 1048573u /* 2^20 - 3 */
#define CHUNK_MAX (256u * 1024u)

/* bulk stream header (client -> sink) and acknowledgement (sink -> client) */
#define BULK_HDR 16 /* "BULK" seed:u32le length:u64le */
#define BULK_ACK 16 /* "DONE"/"BAD!" received:u64le pad:u32 */

static uint8_t *pat2;

static void pattern_init(void)
{
    pat2 = malloc(PAT_LEN + CHUNK_MAX);
    if (!pat2) {
        perror("malloc");
        exit(2);
    }
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < PAT_LEN; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pat2[i] = (uint8_t)(x >> 24);
    }
    memcpy(pat2 + PAT_LEN, pat2, CHUNK_MAX);
}

/* the pattern slice at stream offset k of a stream with seed s */
static inline const uint8_t *pat_at(uint64_t seed, uint64_t k)
{
    return pat2 + (uint32_t)((seed + k) % PAT_LEN);
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void raise_nofile(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
        r.rlim_cur = r.rlim_max;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static inline void put_u32le(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_u64le(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get_u32le(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline uint64_t get_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

#endif

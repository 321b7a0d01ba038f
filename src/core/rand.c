/* core/rand.c — per-thread random numbers and UUIDv7 (RFC 9562 section 5.7). */
#include "core/internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <time.h>

/* Bumped in a forked child, so a child never repeats its parent's sequence. */
static atomic_uint fork_generation = 1;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

static _Thread_local struct {
    uint64_t s[4];
    unsigned generation;
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void seed(unsigned generation)
{
    pthread_once(&atfork_once, register_atfork);
    uint64_t seed_words[4] = {0};
    ssize_t got = getrandom(seed_words, sizeof seed_words, 0);
    if (got != (ssize_t)sizeof seed_words) {
        /* getrandom cannot fail on Linux >= 3.17 once the pool is ready; mix what we have. */
        uint64_t x = (uint64_t)o11y__now_real_ns() ^ (uint64_t)(uintptr_t)&rng;
        for (int i = 0; i < 4; i++)
            seed_words[i] ^= splitmix64(&x);
    }
    /* xoshiro must not start from all zeros; splitmix64 spreads any seed over the state. */
    uint64_t x = seed_words[0] ^ seed_words[1] ^ seed_words[2] ^ seed_words[3];
    for (int i = 0; i < 4; i++)
        rng.s[i] = seed_words[i] ^ splitmix64(&x);
    rng.generation = generation;
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t o11y__rand64(void)
{
    unsigned generation = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (O11Y_UNLIKELY(rng.generation != generation))
        seed(generation);
    /* xoshiro256** (Blackman and Vigna). */
    uint64_t *s = rng.s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void o11y__hex(const uint8_t *bytes, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = o11y__hex_digits[bytes[i] >> 4];
        out[2 * i + 1] = o11y__hex_digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Eight lowercase hex digits of v, as the bytes of a word in memory order. Every request makes
 * a trace id and a span id (48 digits): digit by digit that was 9 instructions each (callgrind);
 * spread over the bytes of one word it is about 3. */
static inline uint64_t hex_word32(uint32_t v)
{
    uint64_t x = v;
    x = ((x & 0xFFFF0000ull) << 16) | (x & 0xFFFFull);
    x = ((x & 0x0000FF000000FF00ull) << 8) | (x & 0x000000FF000000FFull);
    x = ((x & 0x00F000F000F000F0ull) << 4) | (x & 0x000F000F000F000Full);
    /* one nibble per byte, least significant first; bytes 10..15 become 'a'..'f' */
    uint64_t letters = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    x += 0x3030303030303030ull + letters * ('a' - '0' - 10);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap64(x); /* the most significant digit first in memory */
#else
    return x;
#endif
}

void o11y__hex_u64(uint64_t v, char out[16])
{
    uint64_t hi = hex_word32((uint32_t)(v >> 32)), lo = hex_word32((uint32_t)v);
    memcpy(out, &hi, 8);
    memcpy(out + 8, &lo, 8);
}

void o11y__uuid7(int64_t unix_ns, char out[O11Y__UUID_LEN])
{
    int64_t unix_ms = unix_ns / 1000000;
    /* rand_a holds the millisecond's fraction in 1/4096ths (RFC 9562 section 6.2, method 3):
     * ids from one thread sort by time below the millisecond, and only rand_b's 62 bits need
     * the generator. */
    int64_t frac_ns = unix_ns - unix_ms * 1000000; /* negative only before 1970 */
    uint64_t sub_ms = frac_ns > 0 ? (uint64_t)frac_ns * 4096 / 1000000 : 0;
    uint64_t hi = (uint64_t)unix_ms << 16 | 0x7000 | (sub_ms & 0x0FFF);    /* version 7 */
    uint64_t lo = (o11y__rand64() & 0x3FFFFFFFFFFFFFFFull) | (1ull << 63); /* variant 10 */
    char h[32];
    o11y__hex_u64(hi, h);
    o11y__hex_u64(lo, h + 16);
    memcpy(out, h, 8);
    out[8] = '-';
    memcpy(out + 9, h + 8, 4);
    out[13] = '-';
    memcpy(out + 14, h + 12, 4);
    out[18] = '-';
    memcpy(out + 19, h + 16, 4);
    out[23] = '-';
    memcpy(out + 24, h + 20, 12);
}

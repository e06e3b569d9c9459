/* The plain C baseline of graze-pi's throughput bench (pi/benches/throughput.rs).
 *
 * The textbook Monte-Carlo Pi kernel: Marsaglia's xorshift64 (13, 7, 17), two draws per
 * sample turned into doubles in [0, 1) with 53 random bits, hit iff x*x + y*y < 1.0.
 * The bench compiles it with a plain `cc -O3` (no -march) and runs it with the same sample
 * count as graze-pi's kernel.
 *
 * Usage: xorshift SAMPLES SEED
 * Prints one line: "SAMPLES INSIDE SECONDS" (the time of the loop alone, after a warm-up).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static uint64_t state;

static inline uint64_t xorshift64(void) {
    uint64_t x = state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state = x;
    return x;
}

static inline double unit(void) {
    return (double)(xorshift64() >> 11) * (1.0 / 9007199254740992.0);
}

static uint64_t count_inside(uint64_t n) {
    uint64_t inside = 0;
    for (uint64_t i = 0; i < n; i++) {
        double x = unit();
        double y = unit();
        inside += (x * x + y * y < 1.0);
    }
    return inside;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SAMPLES SEED\n", argv[0]);
        return 2;
    }
    uint64_t n = strtoull(argv[1], NULL, 10);
    state = strtoull(argv[2], NULL, 10);
    if (state == 0) {
        state = 0x9E3779B97F4A7C15ull; /* xorshift64 must not start at 0 */
    }
    uint64_t warm = n < 1000000 ? n : 1000000;
    volatile uint64_t sink = count_inside(warm);
    (void)sink;
    double t0 = now();
    uint64_t inside = count_inside(n);
    double secs = now() - t0;
    printf("%llu %llu %.9f\n", (unsigned long long)n, (unsigned long long)inside, secs);
    return 0;
}

/* fma_peak.c — the FMA throughput of one core: 16 independent chains of
 * 512-bit (then 256-bit) fused multiply-adds, so that latency never limits;
 * run one copy per core at once for the machine's compute peak.
 *
 *   cc -O2 -march=native bench/fma_peak.c -o fma_peak && (./fma_peak & ./fma_peak & wait)
 *
 * On this project's 2-core AMD EPYC (Zen 4: two 256-bit FMA pipes, so one
 * 512-bit FMA per cycle) each copy prints about 115 GFLOP/s at both widths:
 * about 230 GFLOP/s for the machine, the ceiling of every number in bench/. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(void)
{
    const long n = 200000000;
    __m512 z[16];
    __m256 y[16];
    for (int i = 0; i < 16; i++) z[i] = _mm512_set1_ps(1e-3f * (float)i), y[i] = _mm256_set1_ps(1e-3f * (float)i);
    const __m512 zb = _mm512_set1_ps(0.999f), zc = _mm512_set1_ps(1e-4f);
    const __m256 yb = _mm256_set1_ps(0.999f), yc = _mm256_set1_ps(1e-4f);
    double t = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) z[j] = _mm512_fmadd_ps(z[j], zb, zc);
    }
    const double d512 = now() - t;
    t = now();
    for (long i = 0; i < n; i++) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) y[j] = _mm256_fmadd_ps(y[j], yb, yc);
    }
    const double d256 = now() - t;
    float s = 0.0f; /* the results are used, so the loops stay */
    for (int i = 0; i < 16; i++) {
        float o[8];
        _mm256_storeu_ps(o, y[i]);
        s += _mm512_reduce_add_ps(z[i]) + o[0];
    }
    printf("one core: %.1f GFLOP/s with 512-bit FMAs, %.1f with 256-bit (checksum %g)\n", 2.0 * 16 * 16 * n / d512 * 1e-9,
           2.0 * 16 * 8 * n / d256 * 1e-9, (double)s);
    return 0;
}

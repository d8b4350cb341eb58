/* conv_runner.c — GFLOP/s of the generated programs' GEMM engine
 * (codegen/c_gemm_lib.c, included as C) on convolution layers, forward and
 * backward, beside OpenBLAS sgemm on a large square product in the same
 * process: the machine's GEMM bar. Driven by bench/conv.py.
 *
 *   conv_runner sgemm N REPS
 *   conv_runner conv fwd|dx|dw N C H W M k s p REPS [direct|wino2|wino4]
 *
 * Prints one JSON object: the best (minimum) seconds over REPS runs and the
 * GFLOP/s (a multiply-add counts as 2) of the direct convolution's work, also
 * for Winograd F(2x2, 3x3) / F(4x4, 3x3) (wino2, wino4: "effective" GFLOP/s,
 * fewer multiplies actually run). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "c_gemm_lib.c"

void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Tensors as a generated program's runtime allocates its arena (runtime/runtime.c): 2 MiB-aligned,
 * with the transparent-huge-page hint, from 4 MiB up. */
static float *buf(int64_t n)
{
    const size_t huge = (size_t)2 << 20;
    size_t sz = ((size_t)n * sizeof(float) + 63) / 64 * 64;
    if (sz >= 2 * huge) sz = (sz + huge - 1) / huge * huge;
    float *p = aligned_alloc(sz >= 2 * huge ? huge : 64, sz);
#ifdef MADV_HUGEPAGE
    if (p && sz >= 2 * huge) madvise(p, sz, MADV_HUGEPAGE);
#endif
    if (!p) {
        fprintf(stderr, "conv_runner: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "sgemm")) {
        const int n = atoi(argv[2]), reps = atoi(argv[3]);
        float *a = buf((int64_t)n * n), *b = buf((int64_t)n * n), *c = buf((int64_t)n * n);
        double best = 1e30;
        for (int r = 0; r <= reps; r++) { /* the first run warms up */
            double t = now_s();
            cblas_sgemm(101, 111, 111, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            t = now_s() - t;
            if (r && t < best) best = t;
        }
        printf("{\"seconds\": %.6f, \"gflops\": %.2f}\n", best, 2.0 * n * n * (double)n / best / 1e9);
        return 0;
    }
    if (argc < 12 || strcmp(argv[1], "conv")) {
        fprintf(stderr, "usage: conv_runner sgemm N REPS | conv fwd|dx|dw N C H W M k s p REPS [direct|wino2|wino4]\n");
        return 2;
    }
    const char *algo = argc > 12 ? argv[12] : "direct";
    const int wm = !strcmp(algo, "wino2") ? 2 : !strcmp(algo, "wino4") ? 4 : 0;
    if (!wm && strcmp(algo, "direct")) {
        fprintf(stderr, "conv_runner: unknown algorithm '%s' (direct, wino2 or wino4)\n", algo);
        return 2;
    }
    const char *what = argv[2];
    ct_conv_geo g = {.N = atoll(argv[3]), .C = atoll(argv[4]), .H = atoll(argv[5]), .W = atoll(argv[6]),
                     .M = atoll(argv[7]), .G = 1, .kh = atoll(argv[8]), .kw = atoll(argv[8]), .sh = atoll(argv[9]),
                     .sw = atoll(argv[9]), .ph = atoll(argv[10]), .pw = atoll(argv[10]), .dh = 1, .dw = 1};
    const int reps = atoi(argv[11]);
    g.OH = (g.H + 2 * g.ph - g.kh) / g.sh + 1;
    g.OW = (g.W + 2 * g.pw - g.kw) / g.sw + 1;
    const int64_t K = g.C * g.kh * g.kw;
    float *x = buf(g.N * g.C * g.H * g.W), *w = buf(g.M * K), *y = buf(g.N * g.M * g.OH * g.OW);
    int64_t scratch = ct_gemm_a_floats(g.M > g.C ? g.M : g.C, g.M * g.kh * g.kw > K ? g.M * g.kh * g.kw : K);
    if (scratch < ct_gemm_a_floats(g.M, CT_KCW)) scratch = ct_gemm_a_floats(g.M, CT_KCW);
    float *ap = buf(scratch);
    if (wm && !ct_conv_winograd_ok(&g)) {
        printf("{\"error\": \"not a Winograd geometry\"}\n");
        return 0;
    }
    if (wm && ct_wino_u_floats(wm, g.M > g.C ? g.M : g.C, g.M > g.C ? g.M : g.C) > scratch)
        scratch = ct_wino_u_floats(wm, g.M > g.C ? g.M : g.C, g.M > g.C ? g.M : g.C);
    if (wm) {
        free(ap);
        ap = buf(scratch);
    }
    if (!strcmp(what, "dx") && !ct_conv_grad_input_is_conv(&g, g.ph, g.pw)) {
        printf("{\"error\": \"dX of a strided convolution does not run on the engine\"}\n");
        return 0;
    }
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        double t = now_s();
        if (wm) {
            if (!strcmp(what, "fwd")) ct_conv_winograd(wm, &g, x, w, NULL, NULL, 0, y, ap);
            else if (!strcmp(what, "dx"))
                (wm == 2 ? ct_conv_grad_input_winograd2 : ct_conv_grad_input_winograd4)(&g, y, w, x, ap);
            else (wm == 2 ? ct_conv_grad_weight_winograd2 : ct_conv_grad_weight_winograd4)(&g, y, x, w, ap);
        } else if (!strcmp(what, "fwd")) ct_conv_forward(&g, x, w, NULL, NULL, 0, y, ap);
        else if (!strcmp(what, "dx")) ct_conv_grad_input_direct(&g, y, w, x, ap);
        else ct_conv_grad_weight_gemm(&g, y, x, w, ap);
        t = now_s() - t;
        if (r && t < best) best = t;
    }
    const double flops = 2.0 * (double)g.N * (double)g.M * (double)(g.OH * g.OW) * (double)K;
    printf("{\"seconds\": %.6f, \"gflops\": %.2f}\n", best, flops / best / 1e9);
    return 0;
}

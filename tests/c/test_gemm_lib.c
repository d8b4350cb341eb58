/* test_gemm_lib.c — codegen/c_gemm_lib.c (the GEMM engine pasted into
 * generated C programs) against naive double-precision loops: plain GEMMs of
 * awkward sizes (edge tiles in every direction, several K blocks, bias,
 * accumulation) and convolutions as implicit GEMMs (strides, padding,
 * dilation, groups, 1x1, images whose pixel count is or is not a multiple of
 * 16), the input gradient of stride-1 convolutions computed as a
 * convolution of dY, the weight gradient as a GEMM over the pixels, and
 * 3x3 stride-1 convolutions and their input gradients on Winograd F(2x2, 3x3)
 * and F(4x4, 3x3). Prints one line per case and "N passed, N failed". */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "c_gemm_lib.c"

static int n_pass, n_fail;

/* Winograd against the exact sums: its transforms round more than a direct dot product */
#define WINO2_TOL 2e-6
#define WINO4_TOL 3e-5

static float frand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* 64-byte aligned floats, as generated programs place their scratch */
static float *alloc64(int64_t n) { return aligned_alloc(64, (sizeof(float) * (size_t)n + 63) / 64 * 64); }

/* on 64-byte lines, as the arena places a program's tensors (where B can be read as it lies) */
static float *rand_buf(int64_t n, uint64_t seed)
{
    float *p = alloc64(n ? n : 1);
    for (int64_t i = 0; i < n; i++) p[i] = frand(&seed);
    return p;
}

/* max |got - ref| / max(max |ref|, 1e-30) */
static void check(const char *what, const float *got, const double *ref, int64_t n, double tol)
{
    double err = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= err)) err = e; /* NaN propagates */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    int ok = err / scale <= tol;
    printf("%s %s: relative error %.3g\n", ok ? "ok  " : "FAIL", what, err / scale);
    ok ? n_pass++ : n_fail++;
}

static void test_gemm(int64_t M, int64_t N, int64_t K, int trans_a, int accumulate, int with_bias, int relu)
{
    float *a = rand_buf(M * K, 1 + M), *b = rand_buf(K * N, 2 + N), *c = rand_buf(M * N, 3 + K);
    float *bias = with_bias ? rand_buf(M, 4) : NULL;
    double *ref = malloc(sizeof(double) * (size_t)(M * N));
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) {
            double s = (accumulate ? c[m * N + j] : 0.0) + (bias ? bias[m] : 0.0);
            for (int64_t k = 0; k < K; k++) s += (double)(trans_a ? a[k * M + m] : a[m * K + k]) * b[k * N + j];
            ref[m * N + j] = relu && s < 0 ? 0.0 : s;
        }
    float *ap = alloc64(ct_gemm_a_floats(M, K));
    ct_gemm_pack_a(a, trans_a ? M : K, trans_a, M, K, ap);
    ct_bpack bp = {.pack = ct_bpack_plain, .src = b, .ld = N, .N = N};
    if (N % 16 == 0) bp.dld = bp.dimg = N; /* whole panels multiplied where they lie (if 64-byte aligned) */
    ct_cmap cm = {.c = c, .ldc = N, .img = 0, .ohw = N};
    ct_gemm_run(M, N, K, ap, &bp, &cm, accumulate, bias, relu);
    char what[128];
    snprintf(what, sizeof what, "gemm M%lld N%lld K%lld%s%s%s%s", (long long)M, (long long)N, (long long)K,
             trans_a ? " A^T" : "", accumulate ? " +C" : "", bias ? " +bias" : "", relu ? " relu" : "");
    check(what, c, ref, M * N, 2e-6);
    free(a), free(b), free(c), free(bias), free(ref), free(ap);
}

static void ref_conv(const ct_conv_geo *g, const float *x, const float *w, const float *bias, double *y)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G;
    for (int64_t n = 0; n < g->N; n++)
        for (int64_t m = 0; m < g->M; m++)
            for (int64_t oh = 0; oh < g->OH; oh++)
                for (int64_t ow = 0; ow < g->OW; ow++) {
                    double s = bias ? bias[m] : 0.0;
                    const int64_t gi = m / Mg;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < g->kh; i++)
                            for (int64_t j = 0; j < g->kw; j++) {
                                int64_t ih = oh * g->sh - g->ph + i * g->dh, iw = ow * g->sw - g->pw + j * g->dw;
                                if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) continue;
                                s += (double)x[((n * g->C + gi * Cg + c) * g->H + ih) * g->W + iw] *
                                     w[((m * Cg + c) * g->kh + i) * g->kw + j];
                            }
                    y[((n * g->M + m) * g->OH + oh) * g->OW + ow] = s;
                }
}

static void test_conv(int64_t N, int64_t C, int64_t H, int64_t W, int64_t M, int64_t k, int64_t s, int64_t p,
                      int64_t d, int64_t G, int with_bias)
{
    ct_conv_geo g = {.N = N, .C = C, .H = H, .W = W, .M = M, .G = G, .kh = k, .kw = k, .sh = s, .sw = s, .ph = p,
                     .pw = p, .dh = d, .dw = d};
    g.OH = (H + 2 * p - d * (k - 1) - 1) / s + 1;
    g.OW = (W + 2 * p - d * (k - 1) - 1) / s + 1;
    const int64_t Cg = C / G, Mg = M / G, K = Cg * k * k, ny = N * M * g.OH * g.OW;
    float *x = rand_buf(N * C * H * W, 11 + C), *w = rand_buf(M * K, 12 + M), *bias = with_bias ? rand_buf(M, 13) : 0;
    float *y = malloc(sizeof(float) * (size_t)ny);
    double *ref = malloc(sizeof(double) * (size_t)ny);
    ref_conv(&g, x, w, bias, ref);
    /* the epilogue of a residual block: relu(conv + bias + res) */
    float *res = rand_buf(ny, 17);
    double *ref_relu = malloc(sizeof(double) * (size_t)ny);
    for (int64_t i = 0; i < ny; i++) ref_relu[i] = ref[i] + res[i] > 0 ? ref[i] + res[i] : 0.0;
    float *ap = alloc64(ct_conv_packed_floats(&g));
    ct_conv_forward(&g, x, w, bias, 0, 0, y, ap);
    char what[160], wr[200];
    snprintf(what, sizeof what, "conv N%lld C%lld %lldx%lld M%lld k%lld s%lld p%lld d%lld g%lld%s", (long long)N,
             (long long)C, (long long)H, (long long)W, (long long)M, (long long)k, (long long)s, (long long)p,
             (long long)d, (long long)G, bias ? " +bias" : "");
    check(what, y, ref, ny, 2e-6);
    /* with the residual and the ReLU in the last K block's stores */
    ct_conv_forward(&g, x, w, bias, res, 1, y, ap);
    snprintf(wr, sizeof wr, "%s +res relu", what);
    check(wr, y, ref_relu, ny, 2e-6);
    /* the input gradient of a stride-1 convolution as a convolution of dY */
    if (ct_conv_grad_input_is_conv(&g, p, p)) {
        const int64_t nx = N * C * H * W;
        float *dy = rand_buf(ny, 14), *dx = malloc(sizeof(float) * (size_t)nx);
        double *rdx = calloc((size_t)nx, sizeof(double));
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t oh = 0; oh < g.OH; oh++)
                    for (int64_t ow = 0; ow < g.OW; ow++) {
                        const double v = dy[((n * M + m) * g.OH + oh) * g.OW + ow];
                        for (int64_t c = 0; c < C; c++)
                            for (int64_t i = 0; i < k; i++)
                                for (int64_t j = 0; j < k; j++) {
                                    int64_t ih = oh - p + i * d, iw = ow - p + j * d;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    rdx[((n * C + c) * H + ih) * W + iw] += v * w[((m * C + c) * k + i) * k + j];
                                }
                    }
        float *ap2 = alloc64(ct_gemm_a_floats(C, M * k * k));
        ct_conv_grad_input_direct(&g, dy, w, dx, ap2);
        char w2[200];
        snprintf(w2, sizeof w2, "dX of %s", what);
        check(w2, dx, rdx, nx, 2e-6);
        free(dy), free(dx), free(rdx), free(ap2);
        /* the same on Winograd F(2x2, 3x3) and F(4x4, 3x3) */
        for (int wm = 2; wm <= 4 && ct_conv_winograd_ok(&g); wm += 2) {
            float *dy2 = rand_buf(ny, 14), *dx2 = malloc(sizeof(float) * (size_t)nx);
            double *rdx2 = malloc(sizeof(double) * (size_t)nx);
            const ct_conv_geo r = ct_conv_grad_input_geo(&g);
            float *wf = malloc(sizeof(float) * (size_t)(M * C * 9)); /* the flipped kernel, (C, M, 3, 3) */
            for (int64_t m = 0; m < M; m++)
                for (int64_t c = 0; c < C; c++)
                    for (int e = 0; e < 9; e++) wf[(c * M + m) * 9 + e] = w[(m * C + c) * 9 + 8 - e];
            ref_conv(&r, dy2, wf, 0, rdx2);
            float *u = alloc64(ct_wino_u_floats(wm, C, M));
            (wm == 2 ? ct_conv_grad_input_winograd2 : ct_conv_grad_input_winograd4)(&g, dy2, w, dx2, u);
            snprintf(w2, sizeof w2, "winograd F(%d) dX of %s", wm, what);
            check(w2, dx2, rdx2, nx, wm == 2 ? WINO2_TOL : WINO4_TOL);
            free(dy2), free(dx2), free(rdx2), free(wf), free(u);
        }
    }
    for (int wm = 2; wm <= 4 && ct_conv_winograd_ok(&g); wm += 2) {
        float *u = alloc64(ct_wino_u_floats(wm, M, C));
        ct_conv_winograd(wm, &g, x, w, bias, 0, 0, y, u);
        char w4[200];
        snprintf(w4, sizeof w4, "winograd F(%d) %s", wm, what);
        check(w4, y, ref, ny, wm == 2 ? WINO2_TOL : WINO4_TOL);
        ct_conv_winograd(wm, &g, x, w, bias, res, 1, y, u);
        snprintf(w4, sizeof w4, "winograd F(%d) %s +res relu", wm, what);
        check(w4, y, ref_relu, ny, wm == 2 ? WINO2_TOL : WINO4_TOL);
        free(u);
    }
    /* the weight gradient: dW = sum over the batch of dY im2col(X)^T */
    {
        float *dy = rand_buf(ny, 15), *dw = rand_buf(M * K, 16);
        double *rdw = calloc((size_t)(M * K), sizeof(double));
        for (int64_t n = 0; n < N; n++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t oh = 0; oh < g.OH; oh++)
                    for (int64_t ow = 0; ow < g.OW; ow++) {
                        const double v = dy[((n * M + m) * g.OH + oh) * g.OW + ow];
                        const int64_t gi = m / Mg;
                        for (int64_t c = 0; c < Cg; c++)
                            for (int64_t i = 0; i < k; i++)
                                for (int64_t j = 0; j < k; j++) {
                                    int64_t ih = oh * s - p + i * d, iw = ow * s - p + j * d;
                                    if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                    rdw[((m * Cg + c) * k + i) * k + j] +=
                                        v * x[((n * C + gi * Cg + c) * H + ih) * W + iw];
                                }
                    }
        float *ab = alloc64(ct_gemm_a_floats(Mg, CT_KCW));
        ct_conv_grad_weight_gemm(&g, dy, x, dw, ab);
        char w3[200];
        snprintf(w3, sizeof w3, "dW of %s", what);
        check(w3, dw, rdw, M * K, 2e-6);
        for (int wm = 2; wm <= 4 && ct_conv_winograd_ok(&g); wm += 2) {
            memset(dw, 0xff, sizeof(float) * (size_t)(M * K)); /* NaNs: every element must be written */
            (wm == 2 ? ct_conv_grad_weight_winograd2 : ct_conv_grad_weight_winograd4)(&g, dy, x, dw, 0);
            snprintf(w3, sizeof w3, "winograd F(%d) dW of %s", wm, what);
            check(w3, dw, rdw, M * K, wm == 2 ? WINO2_TOL : WINO4_TOL);
        }
        free(dy), free(dw), free(rdw), free(ab);
    }
    free(x), free(w), free(bias), free(y), free(ref), free(res), free(ref_relu), free(ap);
}

/* A shallow convolution whose output (16.8 MB) is larger than ct_gemm_run's streaming threshold: one K
 * block, the output stored by non-temporal stores (with the bias, then the residual and the ReLU). */
static void test_conv_streamed(void)
{
    ct_conv_geo g = {.N = 64, .C = 3, .H = 32, .W = 32, .M = 64, .G = 1, .kh = 3, .kw = 3, .sh = 1, .sw = 1, .ph = 1,
                     .pw = 1, .dh = 1, .dw = 1, .OH = 32, .OW = 32};
    const int64_t ny = g.N * g.M * g.OH * g.OW;
    float *x = rand_buf(g.N * g.C * g.H * g.W, 21), *w = rand_buf(g.M * 27, 22), *bias = rand_buf(g.M, 23);
    float *res = rand_buf(ny, 24), *y = alloc64(ny), *ap = alloc64(ct_conv_packed_floats(&g));
    double *ref = malloc(sizeof(double) * (size_t)ny);
    ref_conv(&g, x, w, bias, ref);
    ct_conv_forward(&g, x, w, bias, 0, 0, y, ap);
    check("streamed stem N64 +bias", y, ref, ny, 2e-6);
    for (int64_t i = 0; i < ny; i++) ref[i] = ref[i] + res[i] > 0 ? ref[i] + res[i] : 0.0;
    ct_conv_forward(&g, x, w, bias, res, 1, y, ap);
    check("streamed stem N64 +bias +res relu", y, ref, ny, 2e-6);
    free(x), free(w), free(bias), free(res), free(y), free(ap), free(ref);
}

int main(void)
{
    for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
        printf("-- %d thread(s)\n", threads);
        test_gemm(1, 1, 1, 0, 0, 0, 0);
        test_gemm(8, 32, 192, 0, 0, 0, 0);
        test_gemm(13, 45, 7, 0, 0, 1, 0);
        test_gemm(64, 1000, 577, 0, 1, 0, 0);
        test_gemm(33, 2049, 400, 1, 0, 1, 0);
        test_gemm(130, 70, 1000, 1, 1, 0, 0);
        test_gemm(40, 77, 300, 0, 1, 1, 1); /* C + AB + bias, then ReLU (a residual convolution's epilogue) */
        test_gemm(17, 50, 200, 0, 0, 1, 1);
        test_gemm(20, 49, 300, 0, 1, 1, 1); /* a last panel of 17 columns: 16 as a vector, 1 as a dot product */
        test_gemm(9, 17, 70, 1, 0, 1, 0);
        test_gemm(24, 81, 50, 0, 1, 0, 1); /* a last panel of 17 after two whole ones */
        test_conv(2, 3, 32, 32, 64, 3, 1, 1, 1, 1, 0);   /* a CIFAR stem */
        test_conv(3, 16, 16, 16, 24, 3, 1, 1, 1, 1, 1);  /* 256 pixels: runs of 16 */
        test_conv(5, 32, 8, 8, 40, 3, 1, 1, 1, 1, 0);    /* 64 pixels, rows of 8: gathered */
        test_conv(7, 64, 4, 4, 72, 3, 1, 1, 1, 1, 0);    /* 16 pixels per image */
        test_conv(3, 8, 7, 7, 16, 3, 1, 1, 1, 1, 1);     /* 49 pixels: tiles across images */
        test_conv(2, 16, 33, 35, 8, 3, 2, 1, 1, 1, 0);   /* stride 2, odd sizes */
        test_conv(2, 16, 32, 32, 32, 1, 2, 0, 1, 1, 0);  /* 1x1 stride 2 (a downsample) */
        test_conv(2, 24, 20, 20, 16, 1, 1, 0, 1, 1, 1);  /* 1x1 */
        test_conv(2, 8, 40, 40, 8, 5, 1, 2, 1, 1, 0);    /* 5x5: masked runs at both borders */
        test_conv(2, 8, 24, 24, 8, 3, 1, 2, 2, 1, 0);    /* dilation 2 */
        test_conv(2, 12, 18, 18, 18, 3, 1, 1, 1, 3, 1);  /* 3 groups */
        test_conv(1, 4, 70, 70, 4, 7, 2, 3, 1, 1, 0);    /* an ImageNet-like stem */
        test_conv(2, 4, 21, 40, 4, 3, 1, 0, 1, 1, 0);    /* no padding, wide rows */
        test_conv(1, 32, 32, 32, 48, 3, 1, 1, 1, 1, 0);  /* 32x32 maps (Winograd: whole tile rows, several blocks) */
        test_conv(2, 200, 13, 11, 20, 3, 1, 1, 1, 1, 1); /* Winograd: partial tiles, two K blocks */
        test_conv(9, 24, 6, 5, 300, 3, 1, 2, 1, 1, 0);   /* Winograd: padding 2, many output channels */
        test_conv(8, 64, 4, 4, 96, 3, 1, 1, 1, 1, 0);    /* Winograd: 4x4 maps */
        test_conv(8, 64, 2, 2, 64, 3, 1, 1, 1, 1, 0);    /* 2x2 */
        test_conv(1, 64, 7, 7, 40, 3, 1, 1, 1, 1, 1);    /* 49 pixels: a last panel of 17 (resnet's layer4 at batch 1) */
        test_conv(1, 64, 14, 14, 24, 1, 2, 0, 1, 1, 0);  /* the same after a stride-2 1x1 */
        test_conv(1, 48, 14, 14, 40, 3, 1, 1, 1, 1, 1);  /* Winograd F(2x2): 49 tiles */
        test_conv(1, 128, 7, 7, 72, 3, 1, 1, 1, 1, 1);   /* threads split the rows, share B blocks, 6 of them */
        test_gemm(100, 200, 1000, 0, 1, 1, 0);           /* the same for a plain B: 7 panels, 6 blocks */
        test_gemm(40, 96, 500, 0, 1, 1, 1);              /* B read where it lies, 3 blocks */
        test_gemm(64, 1600, 300, 1, 0, 0, 0);            /* the same, column blocks split over the threads */
        test_conv(2, 200, 16, 16, 40, 1, 1, 0, 1, 1, 1); /* 1x1: panels read from the image, 2 K blocks */
        test_conv(1, 512, 8, 8, 64, 1, 1, 0, 1, 1, 1);   /* the same, the threads splitting the rows */
        test_conv(3, 40, 20, 20, 24, 1, 1, 0, 1, 1, 0);  /* 400 pixels: every other panel across images, packed */
        /* the weight gradient as dot products along the pixels (shallow convolutions) */
        test_conv(3, 6, 16, 16, 24, 3, 1, 1, 1, 2, 0);   /* 2 groups of a stem, 12 channels: a partial tile */
        test_conv(2, 3, 18, 18, 16, 3, 1, 0, 1, 1, 0);   /* no padding: rows of 16 from rows of 18 */
        test_conv(2, 3, 64, 64, 8, 3, 1, 1, 1, 1, 0);    /* rows of 64: halves inside a row */
        test_conv(3, 64, 16, 16, 40, 1, 2, 0, 1, 1, 0);  /* 1x1 stride 2, rows of 8: packed, K = 64 padded to 66 */
        test_conv(2, 64, 32, 32, 40, 1, 2, 0, 1, 1, 0);  /* 1x1 stride 2, rows of 16: one block */
        test_conv(5, 20, 32, 32, 16, 1, 2, 0, 1, 2, 0);  /* 2 groups, blocks of 512, 512, 256 pixels */
        test_conv(2, 2, 20, 20, 9, 3, 2, 1, 1, 1, 0);    /* 3x3 stride 2, K = 18: packed */
        test_conv_streamed();
    }
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}

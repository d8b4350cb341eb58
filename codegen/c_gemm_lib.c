/* c_gemm_lib.c — the GEMM engine of generated C programs: packed, blocked
 * single-precision GEMM with an AVX-512 micro-kernel (a portable C one
 * elsewhere), and convolution as an implicit GEMM whose B operand is packed
 * straight from the NCHW image (im2col happens inside the packing, no column
 * matrix is ever written).
 *
 * This file is C source *for generated programs*: codegen/meson.build embeds
 * it as a string that codegen/c_backend.c pastes into model.c (compiled there
 * with -march=native, so the micro-kernel is the host's), and
 * tests/c/test_gemm_lib.c includes it directly to hold it to naive loops.
 * It needs <stdint.h>, <stdlib.h>, <string.h> and, with OpenMP, <omp.h>.
 *
 *   C (M, N) = A (M, K) B (K, N) [+ C] [+ bias per row]
 *
 * A is packed once per call into MR-row panels (ct_gemm_pack_a_*), B is
 * packed per (KC x NC) block by a callback (ct_bpack: plain matrix, im2col
 * of an image batch, or a gathered dY), C is addressed through ct_cmap, which
 * covers a plain row-major matrix and the NCHW layout of a convolution
 * output (column j = pixel j % ohw of image j / ohw). Threads split the
 * columns; each packs its own B blocks into its own buffer. */

#define CT_MR 8   /* rows of C per micro-tile (broadcast operand: A) */
#define CT_NR 32  /* columns of C per micro-tile (two 16-float vectors of B) */
#define CT_KC 192 /* depth of a packed block */
#define CT_NC 768 /* columns of a packed B block (a multiple of CT_NR) */
#define CT_GEMM_MAX_THREADS 64

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Where C element (m, j) lives: c + (j / ohw) * img + m * ldc + j % ohw. */
typedef struct {
    float *c;
    int64_t ldc; /* between rows (output channels) */
    int64_t img; /* between images */
    int64_t ohw; /* columns per image (a plain matrix: any value >= N) */
} ct_cmap;

/* Fill bp with the column panels of B rows k0..k0+kc-1, columns j0..j0+nc-1:
 * panel q holds columns j0+q*NR.. as kc rows of CT_NR floats; columns past
 * the end of B are zero. */
typedef struct ct_bpack ct_bpack;
struct ct_bpack {
    void (*pack)(const ct_bpack *b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp);
    const float *src;
    int64_t ld;            /* plain: row stride of B */
    int64_t N;             /* columns of B */
    /* im2col of images (NCHW) for a convolution: column j = (image j / ohw, output pixel j % ohw),
     * row k = (input channel k / (kh*kw), tap k % (kh*kw)) */
    int64_t C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw, cstride; /* cstride: floats between images */
};

/* ------------------------------------------------------------ packing A */

/* Packed A: ceil(M/MR) panels, panel p = rows p*MR.. as K columns of CT_MR floats (zero rows past M). */
static int64_t ct_gemm_a_floats(int64_t M, int64_t K) { return (M + CT_MR - 1) / CT_MR * CT_MR * K; }

/* A (M, K) row-major with row stride lda; or, trans, A[m][k] = a[k * lda + m]. */
static void ct_gemm_pack_a(const float *a, int64_t lda, int trans, int64_t M, int64_t K, float *ap)
{
    const int64_t np = (M + CT_MR - 1) / CT_MR;
    #pragma omp parallel for schedule(static) if (M * K >= 65536)
    for (int64_t p = 0; p < np; p++) {
        float *dst = ap + p * K * CT_MR;
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < CT_MR; i++) {
                const int64_t m = p * CT_MR + i;
                dst[k * CT_MR + i] = m < M ? (trans ? a[k * lda + m] : a[m * lda + k]) : 0.0f;
            }
    }
}

/* The weights of a stride-1 convolution's input gradient, as a forward convolution of dY:
 * A[c][(m, kh, kw)] = w[m][c][kh-1-kh'][kw-1-kw'] for w (M, C, kh, kw) (one group). */
static void ct_gemm_pack_a_flipped(const float *w, int64_t M, int64_t C, int64_t kh, int64_t kw, float *ap)
{
    const int64_t KK = kh * kw, K = M * KK, np = (C + CT_MR - 1) / CT_MR;
    #pragma omp parallel for schedule(static) if (C * K >= 65536)
    for (int64_t p = 0; p < np; p++) {
        float *dst = ap + p * K * CT_MR;
        for (int64_t k = 0; k < K; k++) {
            const int64_t m = k / KK, t = k % KK, src_t = KK - 1 - t;
            for (int64_t i = 0; i < CT_MR; i++) {
                const int64_t c = p * CT_MR + i;
                dst[k * CT_MR + i] = c < C ? w[(m * C + c) * KK + src_t] : 0.0f;
            }
        }
    }
}

/* ------------------------------------------------------------ packing B */

static void ct_bpack_plain(const ct_bpack *b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp)
{
    for (int64_t q = 0; q * CT_NR < nc; q++) {
        float *dst = bp + q * kc * CT_NR;
        const int64_t j = j0 + q * CT_NR, n = b->N - j < CT_NR ? b->N - j : CT_NR;
        for (int64_t k = 0; k < kc; k++) {
            const float *src = b->src + (k0 + k) * b->ld + j;
            float *d = dst + k * CT_NR;
            memcpy(d, src, (size_t)n * sizeof(float));
            for (int64_t t = n; t < CT_NR; t++) d[t] = 0.0f;
        }
    }
}

/* im2col inside the packing. A run of 16 columns that stays in one output row
 * of one image at stride 1 reads 16 neighbouring input pixels: one (masked)
 * vector load per row k; other columns are gathered one by one. */
static void ct_bpack_im2col(const ct_bpack *b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp)
{
    const int64_t KK = b->kh * b->kw, HW = b->H * b->W, OHW = b->OH * b->OW;
    for (int64_t q = 0; q * CT_NR < nc; q++) {
        float *dst = bp + q * kc * CT_NR;
        /* per column: the image base, the top-left input coordinate of its window, or -1 past the end */
        int64_t base[CT_NR], r0[CT_NR], c0[CT_NR];
        for (int64_t t = 0; t < CT_NR; t++) {
            const int64_t j = j0 + q * CT_NR + t;
            if (j >= b->N) {
                base[t] = -1, r0[t] = c0[t] = 0;
                continue;
            }
            const int64_t n = j / OHW, pix = j % OHW, oh = pix / b->OW, ow = pix % b->OW;
            base[t] = n * b->cstride;
            r0[t] = oh * b->sh - b->ph;
            c0[t] = ow * b->sw - b->pw;
        }
        int run[CT_NR / 16]; /* the 16-column run is one output row segment at stride 1 */
        for (int v = 0; v < CT_NR / 16; v++) {
            const int64_t *bs = base + 16 * v, *rs = r0 + 16 * v, *cs = c0 + 16 * v;
            int ok = b->sw == 1 && bs[15] >= 0;
            for (int t = 1; t < 16 && ok; t++) ok = bs[t] == bs[0] && rs[t] == rs[0] && cs[t] == cs[0] + t;
            run[v] = ok;
        }
        for (int64_t k = 0; k < kc; k++) {
            const int64_t kk = k0 + k, ci = kk / KK, t0 = kk % KK, dr = (t0 / b->kw) * b->dh, dc = (t0 % b->kw) * b->dw;
            const float *xc = b->src + ci * HW;
            float *d = dst + k * CT_NR;
            for (int v = 0; v < CT_NR / 16; v++) {
                float *dv = d + 16 * v;
                const int64_t *bs = base + 16 * v, *rs = r0 + 16 * v, *cs = c0 + 16 * v;
                if (run[v]) {
                    const int64_t ih = rs[0] + dr, iw = cs[0] + dc;
                    if (ih < 0 || ih >= b->H) {
                        for (int t = 0; t < 16; t++) dv[t] = 0.0f;
                        continue;
                    }
                    /* lanes lo..hi-1 read the row from its element iw + lo on; the others are padding */
                    const int64_t lo = iw < 0 ? -iw : 0, hi = b->W - iw < 16 ? b->W - iw : 16;
                    if (hi <= lo) {
                        for (int t = 0; t < 16; t++) dv[t] = 0.0f;
                        continue;
                    }
                    const float *src = xc + bs[0] + ih * b->W + iw + lo;
#if defined(__AVX512F__)
                    const __mmask16 mk = (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
                    /* masked: no lane past the row is read; expanded: memory from src fills lanes lo.. */
                    _mm512_storeu_ps(dv, lo ? _mm512_maskz_expandloadu_ps(mk, src) : _mm512_maskz_loadu_ps(mk, src));
#else
                    for (int t = 0; t < 16; t++) dv[t] = t >= lo && t < hi ? src[t - lo] : 0.0f;
#endif
                    continue;
                }
                for (int t = 0; t < 16; t++) {
                    const int64_t ih = rs[t] + dr, iw = cs[t] + dc;
                    dv[t] = bs[t] >= 0 && ih >= 0 && ih < b->H && iw >= 0 && iw < b->W ? xc[bs[t] + ih * b->W + iw]
                                                                                       : 0.0f;
                }
            }
        }
    }
}

/* ------------------------------------------------------------ the micro-kernel */

/* acc (MR, NR) = a (kc x MR panel) b (kc x NR panel); then rows i < mr of the tile go to
 * c0 (columns 0..15) and c1 (16..31), ldc apart: stored (with bias[i] if bias), or added. */
static void ct_gemm_uk(int64_t kc, const float *a, const float *b, float *c0, float *c1, int64_t ldc, int mr,
                       int add, const float *bias)
{
#if defined(__AVX512F__)
    __m512 acc[CT_MR][2];
    for (int i = 0; i < CT_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 8
        for (int i = 0; i < CT_MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += CT_MR;
        b += CT_NR;
    }
    for (int i = 0; i < mr; i++) {
        float *r0 = c0 + i * ldc, *r1 = c1 + i * ldc;
        if (add) {
            _mm512_storeu_ps(r0, _mm512_add_ps(_mm512_loadu_ps(r0), acc[i][0]));
            _mm512_storeu_ps(r1, _mm512_add_ps(_mm512_loadu_ps(r1), acc[i][1]));
        } else if (bias) {
            const __m512 bv = _mm512_set1_ps(bias[i]);
            _mm512_storeu_ps(r0, _mm512_add_ps(acc[i][0], bv));
            _mm512_storeu_ps(r1, _mm512_add_ps(acc[i][1], bv));
        } else {
            _mm512_storeu_ps(r0, acc[i][0]);
            _mm512_storeu_ps(r1, acc[i][1]);
        }
    }
#else
    float acc[CT_MR][CT_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++, a += CT_MR, b += CT_NR)
        for (int i = 0; i < CT_MR; i++)
            for (int t = 0; t < CT_NR; t++) acc[i][t] += a[i] * b[t];
    for (int i = 0; i < mr; i++)
        for (int t = 0; t < CT_NR; t++) {
            float *r = (t < 16 ? c0 + t : c1 + t - 16) + i * ldc;
            *r = add ? *r + acc[i][t] : acc[i][t] + (bias ? bias[i] : 0.0f);
        }
#endif
}

/* ------------------------------------------------------------ the driver */

/* Per-thread packed-B blocks, allocated on first use and kept (no allocation per step). */
static float *ct_gemm_bbuf[CT_GEMM_MAX_THREADS];

static float *ct_gemm_thread_buf(int t)
{
    if (!ct_gemm_bbuf[t]) {
        ct_gemm_bbuf[t] = aligned_alloc(64, sizeof(float) * CT_KC * CT_NC);
        if (!ct_gemm_bbuf[t]) abort();
    }
    return ct_gemm_bbuf[t];
}

/* C (M, N) (+)= packed A (M, K) B (K, N); accumulate: add to C from the start (else the first
 * K block stores, with bias[m] if bias). Columns are split over the threads. */
static void ct_gemm_run(int64_t M, int64_t N, int64_t K, const float *ap, const ct_bpack *b, const ct_cmap *cm,
                        int accumulate, const float *bias)
{
    const int64_t npanels = (N + CT_NR - 1) / CT_NR, mpanels = (M + CT_MR - 1) / CT_MR;
    int nt = 1, by_rows = 0;
#ifdef _OPENMP
    nt = omp_get_max_threads();
    if (nt > CT_GEMM_MAX_THREADS) nt = CT_GEMM_MAX_THREADS;
    /* few columns (a small batch) and many rows: the threads split the rows, so that each reads
     * only its part of A (the weights, read from memory once per call) */
    by_rows = npanels < 4 * (int64_t)nt && mpanels >= 2 * (int64_t)nt;
    if (!by_rows && (int64_t)nt > npanels) nt = (int)npanels;
    if (2.0 * (double)M * (double)N * (double)K < 4e6) nt = 1;
    for (int t = 0; t < nt; t++) ct_gemm_thread_buf(t);
#else
    ct_gemm_thread_buf(0);
#endif
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *bp = ct_gemm_bbuf[t];
        const int64_t q0 = by_rows ? 0 : npanels * t / nt, q1 = by_rows ? npanels : npanels * (t + 1) / nt;
        const int64_t m_lo = by_rows ? mpanels * t / nt * CT_MR : 0;
        const int64_t m_hi = by_rows ? (mpanels * (t + 1) / nt * CT_MR < M ? mpanels * (t + 1) / nt * CT_MR : M) : M;
        float tile[CT_MR * CT_NR] __attribute__((aligned(64)));
        for (int64_t jc = q0 * CT_NR; jc < q1 * CT_NR; jc += CT_NC) {
            const int64_t nc = q1 * CT_NR - jc < CT_NC ? q1 * CT_NR - jc : CT_NC;
            for (int64_t pc = 0; pc < K; pc += CT_KC) {
                const int64_t kc = K - pc < CT_KC ? K - pc : CT_KC;
                const int add = accumulate || pc > 0;
                b->pack(b, pc, kc, jc, nc, bp);
                for (int64_t jr = 0; jr < nc; jr += CT_NR) {
                    const int64_t j = jc + jr;
                    const float *bq = bp + (jr / CT_NR) * kc * CT_NR;
                    /* the two 16-column halves of the tile: each inside one image, and inside N? */
                    float *h[2] = {0, 0};
                    int direct = 1;
                    for (int v = 0; v < 2; v++) {
                        const int64_t jv = j + 16 * v, pix = jv % cm->ohw;
                        if (jv + 16 > N || pix + 16 > cm->ohw) direct = 0;
                        else h[v] = cm->c + (jv / cm->ohw) * cm->img + pix;
                    }
                    for (int64_t m0 = m_lo; m0 < m_hi; m0 += CT_MR) {
                        const int mr = M - m0 < CT_MR ? (int)(M - m0) : CT_MR;
                        const float *aq = ap + (m0 / CT_MR) * K * CT_MR + pc * CT_MR;
                        const float *bias_m = bias ? bias + m0 : 0;
                        if (direct) {
                            ct_gemm_uk(kc, aq, bq, h[0] + m0 * cm->ldc, h[1] + m0 * cm->ldc, cm->ldc, mr, add, bias_m);
                            continue;
                        }
                        /* an edge tile: through a local tile, element by element */
                        ct_gemm_uk(kc, aq, bq, tile, tile + 16, CT_NR, mr, 0, 0);
                        for (int i = 0; i < mr; i++)
                            for (int64_t u = 0; u < CT_NR && j + u < N; u++) {
                                const int64_t ju = j + u;
                                float *dst = cm->c + (ju / cm->ohw) * cm->img + (m0 + i) * cm->ldc + ju % cm->ohw;
                                const float v = tile[i * CT_NR + u];
                                *dst = add ? *dst + v : v + (bias_m ? bias_m[i] : 0.0f);
                            }
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ convolution */

/* Geometry of a 2-D convolution (NCHW input x, weights (M, C/G, kh, kw), output (N, M, OH, OW)). */
typedef struct {
    int64_t N, C, H, W, M, OH, OW, G, kh, kw, sh, sw, ph, pw, dh, dw;
} ct_conv_geo;

/* The weights of a convolution packed for ct_conv_forward_packed: group after group,
 * ct_gemm_a_floats(M/G, C/G*kh*kw) floats each. */
static int64_t ct_conv_packed_floats(const ct_conv_geo *g)
{
    return g->G * ct_gemm_a_floats(g->M / g->G, g->C / g->G * g->kh * g->kw);
}

static void ct_conv_pack_weights(const ct_conv_geo *g, const float *w, float *ap)
{
    const int64_t Mg = g->M / g->G, K = g->C / g->G * g->kh * g->kw, per = ct_gemm_a_floats(Mg, K);
    for (int64_t gi = 0; gi < g->G; gi++) ct_gemm_pack_a(w + gi * Mg * K, K, 0, Mg, K, ap + gi * per);
}

/* y = conv(x, w) (+ bias) as implicit GEMMs, one per group over the whole batch:
 * Y_g (M/G, N*OH*OW) = W_g (M/G, C/G*kh*kw) im2col(X_g), on weights packed by ct_conv_pack_weights. */
static void ct_conv_forward_packed(const ct_conv_geo *g, const float *x, const float *ap, const float *bias, float *y)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G, K = Cg * g->kh * g->kw, OHW = g->OH * g->OW;
    for (int64_t gi = 0; gi < g->G; gi++) {
        ct_bpack b = {.pack = ct_bpack_im2col, .src = x + gi * Cg * g->H * g->W, .N = g->N * OHW,
                      .C = Cg, .H = g->H, .W = g->W, .OH = g->OH, .OW = g->OW, .kh = g->kh, .kw = g->kw,
                      .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw, .dh = g->dh, .dw = g->dw,
                      .cstride = g->C * g->H * g->W};
        ct_cmap cm = {.c = y + gi * Mg * OHW, .ldc = OHW, .img = g->M * OHW, .ohw = OHW};
        ct_gemm_run(Mg, g->N * OHW, K, ap + gi * ct_gemm_a_floats(Mg, K), &b, &cm, 0, bias ? bias + gi * Mg : 0);
    }
}

/* The same, packing the weights first into ap (ct_conv_packed_floats(g) floats of scratch). */
static void ct_conv_forward(const ct_conv_geo *g, const float *x, const float *w, const float *bias, float *y,
                            float *ap)
{
    ct_conv_pack_weights(g, w, ap);
    ct_conv_forward_packed(g, x, ap, bias, y);
}

/* Whether dX of a convolution is itself a convolution of dY (stride 1, one group, the flipped
 * kernel's padding (k-1)*d - p not negative): then ct_conv_grad_input_direct applies. */
static int ct_conv_grad_input_is_conv(const ct_conv_geo *g, int64_t ph_end, int64_t pw_end)
{
    return g->sh == 1 && g->sw == 1 && g->G == 1 && g->ph <= (g->kh - 1) * g->dh && g->pw <= (g->kw - 1) * g->dw &&
           ph_end <= (g->kh - 1) * g->dh && pw_end <= (g->kw - 1) * g->dw;
}

/* dX (N, C, H, W) = conv(dY, flipped W^T) with padding (k-1)*d - p: one implicit GEMM.
 * ap: ct_gemm_a_floats(C, M*kh*kw) floats of scratch. */
static void ct_conv_grad_input_direct(const ct_conv_geo *g, const float *dy, const float *w, float *dx, float *ap)
{
    const int64_t K = g->M * g->kh * g->kw, HW = g->H * g->W;
    ct_gemm_pack_a_flipped(w, g->M, g->C, g->kh, g->kw, ap);
    ct_bpack b = {.pack = ct_bpack_im2col, .src = dy, .N = g->N * HW, .C = g->M, .H = g->OH, .W = g->OW,
                  .OH = g->H, .OW = g->W, .kh = g->kh, .kw = g->kw, .sh = 1, .sw = 1,
                  .ph = (g->kh - 1) * g->dh - g->ph, .pw = (g->kw - 1) * g->dw - g->pw, .dh = g->dh, .dw = g->dw,
                  .cstride = g->M * g->OH * g->OW};
    ct_cmap cm = {.c = dx, .ldc = HW, .img = g->C * HW, .ohw = HW};
    ct_gemm_run(g->C, g->N * HW, K, ap, &b, &cm, 0, 0);
}

/* ------------------------------------------------------------ weight gradient */

#define CT_KCW 384 /* pixels per packed block of the weight gradient */

#if defined(__AVX512F__)
/* r[i][j] -> r[j][i] for a 16x16 block held as 16 vectors. */
static inline void ct_transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
        r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
    }
}
#endif

/* Columns kq.. of im2col(X)^T for pixels p0..p0+kc-1 (rows), as one CT_NR-wide panel: the
 * transposed im2col, gathered pixel by pixel (16 lanes at a time with AVX-512). */
static void ct_pack_im2col_t(const ct_bpack *b, int64_t p0, int64_t kc, int64_t kq, float *dst)
{
    const int64_t KK = b->kh * b->kw, HW = b->H * b->W, OHW = b->OH * b->OW;
    int32_t off[CT_NR], dr[CT_NR], dc[CT_NR], live[CT_NR];
    for (int t = 0; t < CT_NR; t++) {
        const int64_t k = kq + t, ci = k / KK, tap = k % KK;
        live[t] = k < b->N;
        dr[t] = (int32_t)((tap / b->kw) * b->dh);
        dc[t] = (int32_t)((tap % b->kw) * b->dw);
        off[t] = live[t] ? (int32_t)(ci * HW + dr[t] * b->W + dc[t]) : 0;
    }
    int64_t n = p0 / OHW, pix = p0 % OHW;
#if defined(__AVX512F__)
    /* 32-bit gather indices: the images this block touches must span fewer than 2^31 floats */
    const int gather = b->cstride * ((p0 + kc - 1) / OHW + 1) < ((int64_t)1 << 31);
    __m512i voff[2], vdr[2], vdc[2];
    __mmask16 vlive[2];
    for (int v = 0; v < 2; v++) {
        voff[v] = _mm512_loadu_si512((const void *)(off + 16 * v));
        vdr[v] = _mm512_loadu_si512((const void *)(dr + 16 * v));
        vdc[v] = _mm512_loadu_si512((const void *)(dc + 16 * v));
        vlive[v] = _mm512_cmpneq_epi32_mask(_mm512_loadu_si512((const void *)(live + 16 * v)), _mm512_setzero_si512());
    }
    const __m512i vH = _mm512_set1_epi32((int)b->H), vW = _mm512_set1_epi32((int)b->W);
#endif
    for (int64_t r = 0; r < kc; r++) {
        const int64_t oh = pix / b->OW, ow = pix % b->OW, r0 = oh * b->sh - b->ph, c0 = ow * b->sw - b->pw;
        float *d = dst + r * CT_NR;
#if defined(__AVX512F__)
        if (b->sw == 1 && b->dw == 1 && ow + 16 <= b->OW && r + 16 <= kc) {
            /* 16 pixels of one output row: per column k one (masked) load of 16 neighbouring input
             * pixels, then 16x16 transposes into 16 rows of the panel */
            for (int v = 0; v < 2; v++) {
                __m512 blk[16];
                for (int u = 0; u < 16; u++) {
                    const int t = 16 * v + u;
                    const int64_t ih = r0 + dr[t], iw = c0 + dc[t];
                    const int64_t lo = iw < 0 ? -iw : 0, hi = b->W - iw < 16 ? b->W - iw : 16;
                    if (!live[t] || ih < 0 || ih >= b->H || hi <= lo) {
                        blk[u] = _mm512_setzero_ps();
                        continue;
                    }
                    const float *src = b->src + n * b->cstride + (off[t] - dr[t] * b->W - dc[t]) + ih * b->W + iw + lo;
                    const __mmask16 mk = (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
                    blk[u] = lo ? _mm512_maskz_expandloadu_ps(mk, src) : _mm512_maskz_loadu_ps(mk, src);
                }
                ct_transpose16(blk);
                for (int i = 0; i < 16; i++) _mm512_storeu_ps(d + i * CT_NR + 16 * v, blk[i]);
            }
            r += 15;
            pix += 16;
            if (pix == OHW) pix = 0, n++;
            continue;
        }
        if (gather) {
            const int32_t base = (int32_t)(n * b->cstride + r0 * b->W + c0);
            for (int v = 0; v < 2; v++) {
                const __m512i rr = _mm512_add_epi32(_mm512_set1_epi32((int)r0), vdr[v]);
                const __m512i cc = _mm512_add_epi32(_mm512_set1_epi32((int)c0), vdc[v]);
                __mmask16 m = vlive[v] & _mm512_cmpge_epi32_mask(rr, _mm512_setzero_si512()) &
                              _mm512_cmplt_epi32_mask(rr, vH) & _mm512_cmpge_epi32_mask(cc, _mm512_setzero_si512()) &
                              _mm512_cmplt_epi32_mask(cc, vW);
                const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32(base), voff[v]);
                _mm512_storeu_ps(d + 16 * v, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, b->src, 4));
            }
        } else
#endif
        {
            for (int t = 0; t < CT_NR; t++) {
                const int64_t ih = r0 + dr[t], iw = c0 + dc[t];
                d[t] = live[t] && ih >= 0 && ih < b->H && iw >= 0 && iw < b->W
                           ? b->src[n * b->cstride + (off[t] - dr[t] * b->W - dc[t]) + ih * b->W + iw]
                           : 0.0f;
            }
        }
        if (++pix == OHW) pix = 0, n++;
    }
}

/* Panel mp of the A operand of a weight gradient: rows mp*MR.. of dY_g (one group's channels, M/G of
 * them) over pixels pc..pc+kc-1 of the batch, as kc x CT_MR (zero rows past M/G). */
static void ct_pack_dy_panel(const ct_conv_geo *g, const float *dyg, int64_t pc, int64_t kc, int64_t mp, float *ad)
{
    const int64_t Mg = g->M / g->G, OHW = g->OH * g->OW;
    for (int i = 0; i < CT_MR; i++) {
        const int64_t m = mp * CT_MR + i;
        int64_t n = pc / OHW, pix = pc % OHW;
        for (int64_t r = 0; r < kc; r++) {
            ad[r * CT_MR + i] = m < Mg ? dyg[(n * g->M + m) * OHW + pix] : 0.0f;
            if (++pix == OHW) pix = 0, n++;
        }
    }
}

/* dW (M, C/G, kh, kw) = sum over the batch of dY_g (M/G, N*OH*OW) im2col(X_g)^T, per group: a GEMM whose
 * depth is the pixels. For each block of CT_KCW pixels the threads pack the dY block together (A: its
 * rows are dW's rows), then each packs the transposed im2col of its own columns of dW (B) and
 * accumulates. abuf: ct_gemm_a_floats(M/G, CT_KCW) floats of scratch. */
static void ct_conv_grad_weight_gemm(const ct_conv_geo *g, const float *dy, const float *x, float *dw, float *abuf)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G, K = Cg * g->kh * g->kw, OHW = g->OH * g->OW, P = g->N * OHW;
    const int64_t npanels = (K + CT_NR - 1) / CT_NR, mpanels = (Mg + CT_MR - 1) / CT_MR;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
    if (nt > CT_GEMM_MAX_THREADS) nt = CT_GEMM_MAX_THREADS;
    if (2.0 * (double)Mg * (double)K * (double)P < 4e6) nt = 1;
    for (int t = 0; t < nt; t++) ct_gemm_thread_buf(t);
#else
    ct_gemm_thread_buf(0);
#endif
    /* fewer column panels than threads (a stem: K = 27): the threads split the pixels instead, each
     * with its own A, B and dW in its buffer, summed at the end */
    if (nt > npanels && CT_KCW * CT_NR + mpanels * CT_MR * CT_KCW + Mg * K <= (int64_t)CT_KC * CT_NC) {
        for (int64_t gi = 0; gi < g->G; gi++) {
            ct_bpack b = {.src = x + gi * Cg * g->H * g->W, .N = K, .C = Cg, .H = g->H, .W = g->W, .OH = g->OH,
                          .OW = g->OW, .kh = g->kh, .kw = g->kw, .sh = g->sh, .sw = g->sw, .ph = g->ph,
                          .pw = g->pw, .dh = g->dh, .dw = g->dw, .cstride = g->C * g->H * g->W};
            const float *dyg = dy + gi * Mg * OHW;
            float *dwg = dw + gi * Mg * K;
            #pragma omp parallel num_threads(nt)
            {
                int t = 0;
#ifdef _OPENMP
                t = omp_get_thread_num();
#endif
                float *bp = ct_gemm_bbuf[t], *ab = bp + CT_KCW * CT_NR, *acc = ab + mpanels * CT_MR * CT_KCW;
                float tile[CT_MR * CT_NR] __attribute__((aligned(64)));
                memset(acc, 0, sizeof(float) * (size_t)(Mg * K));
                const int64_t nb = (P + CT_KCW - 1) / CT_KCW, b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
                for (int64_t bi = b0; bi < b1; bi++) {
                    const int64_t pc = bi * CT_KCW, kc = P - pc < CT_KCW ? P - pc : CT_KCW;
                    for (int64_t mp = 0; mp < mpanels; mp++) ct_pack_dy_panel(g, dyg, pc, kc, mp, ab + mp * kc * CT_MR);
                    for (int64_t q = 0; q < npanels; q++) {
                        const int64_t j = q * CT_NR;
                        ct_pack_im2col_t(&b, pc, kc, j, bp);
                        for (int64_t mp = 0; mp < mpanels; mp++) {
                            const int64_t m0 = mp * CT_MR;
                            const int mr = Mg - m0 < CT_MR ? (int)(Mg - m0) : CT_MR;
                            ct_gemm_uk(kc, ab + mp * kc * CT_MR, bp, tile, tile + 16, CT_NR, mr, 0, 0);
                            for (int i = 0; i < mr; i++)
                                for (int64_t u = 0; u < CT_NR && j + u < K; u++) acc[(m0 + i) * K + j + u] += tile[i * CT_NR + u];
                        }
                    }
                }
                #pragma omp barrier
                /* dW = the sum of the threads' parts, each thread summing a slice */
                const int64_t e0 = Mg * K * t / nt, e1 = Mg * K * (t + 1) / nt;
                for (int64_t e = e0; e < e1; e++) {
                    float sum = 0.0f;
                    for (int u = 0; u < nt; u++) sum += (ct_gemm_bbuf[u] + CT_KCW * CT_NR + mpanels * CT_MR * CT_KCW)[e];
                    dwg[e] = sum;
                }
            }
        }
        return;
    }
    if ((int64_t)nt > npanels) nt = (int)npanels;
    for (int64_t gi = 0; gi < g->G; gi++) {
        ct_bpack b = {.src = x + gi * Cg * g->H * g->W, .N = K, .C = Cg, .H = g->H, .W = g->W, .OH = g->OH,
                      .OW = g->OW, .kh = g->kh, .kw = g->kw, .sh = g->sh, .sw = g->sw, .ph = g->ph, .pw = g->pw,
                      .dh = g->dh, .dw = g->dw, .cstride = g->C * g->H * g->W};
        const float *dyg = dy + gi * Mg * OHW;
        float *dwg = dw + gi * Mg * K;
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            float *bp = ct_gemm_bbuf[t]; /* one CT_NR panel of CT_KCW rows */
            const int64_t q0 = npanels * t / nt, q1 = npanels * (t + 1) / nt;
            float tile[CT_MR * CT_NR] __attribute__((aligned(64)));
            for (int64_t pc = 0; pc < P; pc += CT_KCW) {
                const int64_t kc = P - pc < CT_KCW ? P - pc : CT_KCW;
                /* A: dY rows m, pixels pc.. (contiguous within an image), packed as kc x MR per panel */
                #pragma omp for schedule(static)
                for (int64_t mp = 0; mp < mpanels; mp++) ct_pack_dy_panel(g, dyg, pc, kc, mp, abuf + mp * kc * CT_MR);
                for (int64_t q = q0; q < q1; q++) {
                    const int64_t j = q * CT_NR;
                    ct_pack_im2col_t(&b, pc, kc, j, bp);
                    const int direct = j + CT_NR <= K;
                    for (int64_t mp = 0; mp < mpanels; mp++) {
                        const int64_t m0 = mp * CT_MR;
                        const int mr = Mg - m0 < CT_MR ? (int)(Mg - m0) : CT_MR;
                        const float *aq = abuf + mp * kc * CT_MR;
                        if (direct) {
                            float *c0 = dwg + m0 * K + j;
                            ct_gemm_uk(kc, aq, bp, c0, c0 + 16, K, mr, pc > 0, 0);
                            continue;
                        }
                        ct_gemm_uk(kc, aq, bp, tile, tile + 16, CT_NR, mr, 0, 0);
                        for (int i = 0; i < mr; i++)
                            for (int64_t u = 0; u < CT_NR && j + u < K; u++) {
                                float *dst = dwg + (m0 + i) * K + j + u;
                                *dst = pc > 0 ? *dst + tile[i * CT_NR + u] : tile[i * CT_NR + u];
                            }
                    }
                }
                #pragma omp barrier
            }
        }
    }
}

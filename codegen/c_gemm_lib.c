/* c_gemm_lib.c — the GEMM engine of generated C programs: packed, blocked
 * single-precision GEMM with an AVX-512 micro-kernel (a portable C one
 * elsewhere), convolution as an implicit GEMM whose B operand is packed
 * straight from the NCHW image (im2col happens inside the packing, no column
 * matrix is ever written), and 3x3 stride-1 convolutions, their input and
 * weight gradients as Winograd F(2x2, 3x3) / F(4x4, 3x3) on the same
 * micro-kernel (the last sections).
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
 * of an image batch, or a gathered dY) unless a panel can be read where it
 * lies (a 1x1 stride-1 convolution's channel planes), C is addressed through
 * ct_cmap, which covers a plain row-major matrix and the NCHW layout of a
 * convolution output (column j = pixel j % ohw of image j / ohw). Threads
 * split the columns, each packing its own B blocks into its own buffer, or,
 * with few columns (a small batch), the rows, sharing each B block; each runs
 * its tiles row of tiles by row of tiles. A last panel of 17 live columns or
 * fewer multiplies only those (the micro-kernel's widths). The weight gradients of shallow
 * convolutions (the stem, 1x1 stride 2) run as dot products along the pixels
 * instead (ct_conv_grad_weight_dot: no transposes). */

#define CT_MR 8   /* rows of C per micro-tile (broadcast operand: A) */
#define CT_NR 32  /* columns of C per micro-tile (two 16-float vectors of B) */
#define CT_KC 192 /* depth of a packed block */
#define CT_NC 768 /* columns of a packed B block (a multiple of CT_NR) */
#define CT_GEMM_MAX_THREADS 64

#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#ifndef CT_STREAM_OK
#if defined(__AVX512F__)
#define CT_STREAM_OK 1
#else
#define CT_STREAM_OK 0
#endif
#endif

/* Where C element (m, j) lives: c + (j / ohw) * img + m * ldc + j % ohw; r (if not NULL): a
 * residual laid out as C, added with the last K block. */
typedef struct {
    float *c;
    const float *r;
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
    /* if dld: B's rows also lie in memory as they are read, row k of column j (image j / dimg, column
     * j % dimg of it) at src + (j / dimg) cstride + k dld + j % dimg, so that a panel inside one
     * image is multiplied where it lies, unpacked (ct_bpack_direct) */
    int64_t dld, dimg;
};

/* Where the panel of columns j..j+CT_NR-1 of B lies, rows k0.. dld apart, if it can be read there
 * (whole, inside one image, on 64-byte lines); else NULL: packed. */
static inline const float *ct_bpack_direct(const ct_bpack *b, int64_t k0, int64_t j)
{
    if (!b->dld || j + CT_NR > b->N || j % b->dimg + CT_NR > b->dimg) return NULL;
    const float *p = b->src + j / b->dimg * b->cstride + k0 * b->dld + j % b->dimg;
    return ((uintptr_t)p & 63) == 0 ? p : NULL;
}

/* ------------------------------------------------------------ packing A */

/* Packed A: depth blocks of CT_KC (the last one shorter), each ceil(M/MR) panels, panel p = rows
 * p*MR.. as the block's columns of CT_MR floats (zero rows past M); so the part of A one K block
 * of the GEMM reads is one stream in memory (weights read from memory at a small batch). */
static int64_t ct_gemm_a_floats(int64_t M, int64_t K) { return (M + CT_MR - 1) / CT_MR * CT_MR * K; }

/* Where column k of the panel holding row m (a multiple of CT_MR) starts in packed A. */
static inline int64_t ct_gemm_a_at(int64_t m, int64_t k, int64_t M, int64_t K)
{
    const int64_t kb = k / CT_KC * CT_KC, kc = K - kb < CT_KC ? K - kb : CT_KC;
    return kb * ((M + CT_MR - 1) / CT_MR * CT_MR) + m * kc + (k - kb) * CT_MR;
}

/* A (M, K) row-major with row stride lda; or, trans, A[m][k] = a[k * lda + m]. */
static void ct_gemm_pack_a(const float *a, int64_t lda, int trans, int64_t M, int64_t K, float *ap)
{
    const int64_t np = (M + CT_MR - 1) / CT_MR;
    #pragma omp parallel for schedule(static) if (M * K >= 65536)
    for (int64_t p = 0; p < np; p++)
        for (int64_t k = 0; k < K; k++) {
            float *dst = ap + ct_gemm_a_at(p * CT_MR, k, M, K);
            for (int64_t i = 0; i < CT_MR; i++) {
                const int64_t m = p * CT_MR + i;
                dst[i] = m < M ? (trans ? a[k * lda + m] : a[m * lda + k]) : 0.0f;
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
        for (int64_t k = 0; k < K; k++) {
            const int64_t m = k / KK, t = k % KK, src_t = KK - 1 - t;
            float *dst = ap + ct_gemm_a_at(p * CT_MR, k, C, K);
            for (int64_t i = 0; i < CT_MR; i++) {
                const int64_t c = p * CT_MR + i;
                dst[i] = c < C ? w[(m * C + c) * KK + src_t] : 0.0f;
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

/* Bit e set where column c0 + e of a row of W columns exists (e < 16). */
static inline uint32_t ct_cols_mask(int64_t c0, int64_t W)
{
    const int64_t lo = c0 < 0 ? -c0 : 0, hi = W - c0 < 16 ? W - c0 : 16;
    return hi <= lo ? 0u : ((1u << hi) - 1u) & ~((1u << lo) - 1u);
}

/* A piece of a 16-column run of im2col's columns inside one output row of one image: lanes
 * ls..ls+cnt-1, reading input columns c0, c0 + sw, ... of row r0 (before the tap's offsets). */
typedef struct {
    int64_t base, r0, c0;
    int ls, cnt;
} ct_im2col_seg;

#if defined(__AVX512F__)
/* The 16 input columns iw, iw + 2, ... of a row (those outside 0..W-1 are 0): two masked loads,
 * the even lanes kept. */
static inline __m512 ct_load_stride2(const float *row, int64_t iw, int64_t W)
{
    const __mmask16 m0 = ct_cols_mask(iw, W), m1 = ct_cols_mask(iw + 16, W);
    const __m512 lo = _mm512_maskz_loadu_ps(m0, row + iw), hi = _mm512_maskz_loadu_ps(m1, row + iw + 16);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(lo, even, hi);
}

/* One row k (input channel plane xc, tap offsets dr, dc) of a run that crosses output rows, from
 * its pieces: lanes ls + t, t in [tlo, thi), read input columns iw + sw t inside the row. */
static inline __m512 ct_im2col_pieces(const ct_bpack *b, const ct_im2col_seg *seg, int n, const float *xc, int64_t dr,
                                      int64_t dc)
{
    __m512 acc = _mm512_setzero_ps();
    for (const ct_im2col_seg *sg = seg; sg < seg + n; sg++) {
        const int64_t ih = sg->r0 + dr, iw = sg->c0 + dc;
        if (ih < 0 || ih >= b->H) continue;
        const int64_t tlo = iw < 0 ? (-iw + b->sw - 1) / b->sw : 0;
        int64_t thi = (b->W - iw + b->sw - 1) / b->sw;
        if (thi > sg->cnt) thi = sg->cnt;
        if (thi <= tlo) continue;
        const float *src = xc + sg->base + ih * b->W + iw + b->sw * tlo;
        const int ls = sg->ls + (int)tlo, cnt = (int)(thi - tlo);
        const __mmask16 mk = (__mmask16)(((1u << cnt) - 1u) << ls);
        if (b->sw == 1) {
            acc = _mm512_mask_expandloadu_ps(acc, mk, src);
            continue;
        }
        /* stride 2: the 2 cnt - 1 input columns by two masked loads, every other one moved to lanes ls.. */
        const int n2 = 2 * cnt - 1;
        const __m512 lo = _mm512_maskz_loadu_ps((__mmask16)((1u << (n2 < 16 ? n2 : 16)) - 1u), src);
        const __m512 hi = n2 > 16 ? _mm512_maskz_loadu_ps((__mmask16)((1u << (n2 - 16)) - 1u), src + 16)
                                  : _mm512_setzero_ps();
        const __m512i idx = _mm512_slli_epi32(
            _mm512_sub_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(ls)),
            1);
        acc = _mm512_mask_mov_ps(acc, mk, _mm512_permutex2var_ps(lo, idx, hi));
    }
    return acc;
}
#endif

/* im2col inside the packing. A run of 16 columns that stays in one output row
 * of one image at stride 1 reads 16 neighbouring input pixels: one (masked)
 * vector load per row k; at stride 2, two loads and a permute. With AVX-512,
 * a run that crosses output rows (maps narrower than 16, or rows that end
 * inside it) is loaded piece by piece, one masked load per piece; other
 * columns are gathered one by one. Rows k go outermost, so that each reads
 * its input rows in order across the whole block (one stream per row k;
 * panel by panel, each row of the kc would be a stream of its own, too many
 * for the prefetchers). */
static void ct_bpack_im2col(const ct_bpack *b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float *bp)
{
    const int64_t KK = b->kh * b->kw, HW = b->H * b->W, OHW = b->OH * b->OW, nr = (nc + 15) / 16;
    /* per column: the image base, the top-left input coordinate of its window, or -1 past the end */
    int64_t base[CT_NC], r0[CT_NC], c0[CT_NC];
    /* (image, output row, column) of column j0, then stepped along without divisions */
    int64_t n = j0 / OHW, oh = j0 % OHW / b->OW, ow = j0 % b->OW;
    for (int64_t t = 0; t < nr * 16; t++) {
        if (j0 + t >= b->N) {
            base[t] = -1, r0[t] = c0[t] = 0;
            continue;
        }
        base[t] = n * b->cstride;
        r0[t] = oh * b->sh - b->ph;
        c0[t] = ow * b->sw - b->pw;
        if (++ow == b->OW) {
            ow = 0;
            if (++oh == b->OH) oh = 0, n++;
        }
    }
#if defined(__AVX512F__)
    const int vec = b->sw == 1 || b->sw == 2;
#else
    const int vec = b->sw == 1;
#endif
    /* run v: 1 where it is one output row segment; else its pieces seg[s0[v]..s0[v+1]) (AVX-512) */
    unsigned char run[CT_NC / 16];
#if defined(__AVX512F__)
    int s0[CT_NC / 16 + 1], ns = 0;
    ct_im2col_seg seg[CT_NC];
#endif
    for (int64_t v = 0; v < nr; v++) {
        const int64_t *bs = base + 16 * v, *rs = r0 + 16 * v, *cs = c0 + 16 * v;
        int ok = vec && bs[15] >= 0;
        for (int t = 1; t < 16 && ok; t++) ok = bs[t] == bs[0] && rs[t] == rs[0] && cs[t] == cs[0] + b->sw * t;
        run[v] = (unsigned char)ok;
#if defined(__AVX512F__)
        s0[v] = ns;
        for (int t = 0; !ok && vec && t < 16 && bs[t] >= 0; t++) {
            if (t > 0 && bs[t] == bs[t - 1] && rs[t] == rs[t - 1] && cs[t] == cs[t - 1] + b->sw) {
                seg[ns - 1].cnt++;
                continue;
            }
            seg[ns++] = (ct_im2col_seg){.base = bs[t], .r0 = rs[t], .c0 = cs[t], .ls = t, .cnt = 1};
        }
#endif
    }
#if defined(__AVX512F__)
    s0[nr] = ns;
#endif
    /* row k = (channel ci, tap (ti, tj)), stepped along without divisions */
    int64_t ci = k0 / KK, ti = k0 % KK / b->kw, tj = k0 % b->kw;
    for (int64_t k = 0; k < kc; k++, tj = tj + 1 < b->kw ? tj + 1 : (ti = ti + 1 < b->kh ? ti + 1 : (ci++, 0), 0)) {
        const int64_t dr = ti * b->dh, dc = tj * b->dw;
        const float *xc = b->src + ci * HW;
#if defined(__AVX512F__)
        /* 1x1: the rows of channel ci + 2 are a stream the prefetchers have not seen yet (larger kernels
         * read each input row for several taps, already from cache); at stride 2 both lines a run reads
         * (a downsample at batch 256: 146 -> 151 GFLOP/s) */
        const int64_t pf = KK == 1 && ci + 2 < b->C ? 2 * HW : 0;
#endif
        for (int64_t v = 0; v < nr; v++) {
            /* run v: lanes 16 (v % 2).. of row k of panel v / 2 */
            float *dv = bp + (v / 2) * kc * CT_NR + k * CT_NR + 16 * (v % 2);
            const int64_t *bs = base + 16 * v, *rs = r0 + 16 * v, *cs = c0 + 16 * v;
            if (run[v]) {
                const int64_t ih = rs[0] + dr, iw = cs[0] + dc;
                if (ih < 0 || ih >= b->H) {
                    for (int t = 0; t < 16; t++) dv[t] = 0.0f;
                    continue;
                }
#if defined(__AVX512F__)
                if (b->sw == 2) {
                    const float *row = xc + bs[0] + ih * b->W;
                    if (pf) {
                        _mm_prefetch((const char *)(row + iw + pf), _MM_HINT_T0);
                        _mm_prefetch((const char *)(row + iw + pf + 16), _MM_HINT_T0);
                    }
                    _mm512_storeu_ps(dv, ct_load_stride2(row, iw, b->W));
                    continue;
                }
#endif
                /* lanes lo..hi-1 read the row from its element iw + lo on; the others are padding */
                const int64_t lo = iw < 0 ? -iw : 0, hi = b->W - iw < 16 ? b->W - iw : 16;
                if (hi <= lo) {
                    for (int t = 0; t < 16; t++) dv[t] = 0.0f;
                    continue;
                }
                const float *src = xc + bs[0] + ih * b->W + iw + lo;
#if defined(__AVX512F__)
                if (pf) _mm_prefetch((const char *)(src + pf), _MM_HINT_T0);
                const __mmask16 mk = (__mmask16)(((1u << (hi - lo)) - 1u) << lo);
                /* masked: no lane past the row is read; expanded: memory from src fills lanes lo.. */
                _mm512_storeu_ps(dv, lo ? _mm512_maskz_expandloadu_ps(mk, src) : _mm512_maskz_loadu_ps(mk, src));
#else
                for (int t = 0; t < 16; t++) dv[t] = t >= lo && t < hi ? src[t - lo] : 0.0f;
#endif
                continue;
            }
#if defined(__AVX512F__)
            if (vec) {
                _mm512_storeu_ps(dv, ct_im2col_pieces(b, seg + s0[v], s0[v + 1] - s0[v], xc, dr, dc));
                continue;
            }
#endif
            for (int t = 0; t < 16; t++) {
                const int64_t ih = rs[t] + dr, iw = cs[t] + dc;
                dv[t] = bs[t] >= 0 && ih >= 0 && ih < b->H && iw >= 0 && iw < b->W ? xc[bs[t] + ih * b->W + iw] : 0.0f;
            }
        }
    }
}

/* ------------------------------------------------------------ the micro-kernel */

/* Where a micro-tile's 32 columns go, as two halves of 16: lanes 0..n0[v]-1 of half v to
 * p0[v][0..], lanes n0[v]..n0[v]+n1[v]-1 to p1[v][0..] (a half that runs from the end of one
 * image's pixels into the next image), rows ldc apart; lanes past n0 + n1 are not stored.
 * q0, q1: the same places in a residual (NULL: none). */
typedef struct {
    float *p0[2], *p1[2];
    const float *q0[2], *q1[2];
    int n0[2], n1[2];
} ct_tile_dst;

/* How much of a micro-tile's 32 columns the multiplies cover: all (CT_W32), columns 0..15 (CT_W16:
 * a panel with 16 live columns or fewer), or 0..16 (CT_W17: the lone 17th column as a dot product
 * of A's 8 rows, 8 lanes of one 256-bit vector). A 7x7 map at batch 1 has 49 = 32 + 17 columns:
 * whole panels would multiply 64. The micro-kernel is compiled for CT_W32 and for CT_WN, which
 * takes CT_W16 or CT_W17 at run time (one more inlined copy, not two: each costs the generated
 * program's compile about 0.6 s). */
enum { CT_W32, CT_W16, CT_W17, CT_WN };

/* The width a panel of `live` columns takes. */
static inline int ct_tile_width(int64_t live) { return live <= 16 ? CT_W16 : live == 17 ? CT_W17 : CT_W32; }

/* acc (MR, NR) = a (kc x MR panel) b (kc x NR panel; its rows ldb floats apart: CT_NR packed, a
 * plane where read in place), over the columns `width` says (others are left 0; CT_WN: `narrow`
 * says); then rows i < mr of the tile go to d, offset by roff: acc (+ bias[i] if bias) (+ what is
 * there if add) (+ the residual if res), then, if relu, max(0, .). pfa: if not 0, A's lines pfa
 * floats ahead are prefetched as the panel is read (the next panel, when A comes from memory). */
static inline __attribute__((always_inline)) void ct_gemm_uk_dst(int64_t kc, const float *a, const float *b,
                                                                  const ct_tile_dst *d, int64_t roff, int64_t ldc,
                                                                  int mr, int add, const float *bias, int res,
                                                                  int relu, int stream, int width,
                                                                  int64_t pfa, int64_t ldb, int narrow)
{
    /* width CT_WN: narrow (CT_W16 or CT_W17) says which */
    const int w17 = width == CT_W17 || (width == CT_WN && narrow == CT_W17);
#if defined(__AVX512F__)
    __m512 acc[CT_MR][2];
    __m256 lone = _mm256_setzero_ps(); /* CT_W17: column 16, row i in lane i */
#pragma GCC unroll 8
    for (int i = 0; i < CT_MR; i++) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(b), b1 = width == CT_W32 ? _mm512_load_ps(b + 16) : b0;
        if (w17) lone = _mm256_fmadd_ps(_mm256_loadu_ps(a), _mm256_broadcast_ss(b + 16), lone);
        if (pfa && !(k & 1)) _mm_prefetch((const char *)(a + pfa), _MM_HINT_T0); /* 2 steps of A a line */
#pragma GCC unroll 8
        for (int i = 0; i < CT_MR; i++) {
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (width == CT_W32) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += CT_MR;
        b += ldb;
    }
    if (w17) {
        float l8[8] __attribute__((aligned(32)));
        _mm256_store_ps(l8, lone);
#pragma GCC unroll 8
        for (int i = 0; i < CT_MR; i++) acc[i][1] = _mm512_maskz_mov_ps(1, _mm512_set1_ps(l8[i]));
    }
    /* every index below a constant once unrolled, so that acc stays in registers */
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int v = 0; v < 2; v++) {
        const int n0 = d->n0[v], n1 = d->n1[v];
        if (n0 == 16) {
            float *r = d->p0[v] + roff;
            const float *q = res ? d->q0[v] + roff : 0;
            const int nt = stream && ((uintptr_t)r & 63) == 0;
#pragma GCC unroll 8
            for (int i = 0; i < CT_MR; i++) {
                if (i >= mr) break;
                /* the tile after this one in ct_gemm_run (the next 32 columns of the same rows) reads its
                 * residual, or the C it adds to, there: prefetched now, a tile's multiplies ahead
                 * (resnet50's 64->256 1x1 convolution + residual at batch 32: 25.5 -> 17.9 ms) */
                if (res && v == 0) {
                    _mm_prefetch((const char *)(q + i * ldc + CT_NR), _MM_HINT_T0);
                    _mm_prefetch((const char *)(q + i * ldc + CT_NR + 16), _MM_HINT_T0);
                }
                if (add && v == 0) {
                    _mm_prefetch((const char *)(r + i * ldc + CT_NR), _MM_HINT_T0);
                    _mm_prefetch((const char *)(r + i * ldc + CT_NR + 16), _MM_HINT_T0);
                }
                __m512 x = bias ? _mm512_add_ps(acc[i][v], _mm512_set1_ps(bias[i])) : acc[i][v];
                if (add) x = _mm512_add_ps(_mm512_loadu_ps(r + i * ldc), x);
                if (res) x = _mm512_add_ps(x, _mm512_loadu_ps(q + i * ldc));
                if (relu) x = _mm512_max_ps(x, zero);
                if (nt)
                    _mm512_stream_ps(r + i * ldc, x);
                else
                    _mm512_storeu_ps(r + i * ldc, x);
            }
            continue;
        }
        /* a partial half: lanes 0..n0-1 by a masked store, then lanes n0.. moved down to 0.. */
        const __m512i shift = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                               _mm512_set1_epi32(n0));
#pragma GCC unroll 2
        for (int s = 0; s < 2; s++) {
            const int n = s ? n1 : n0;
            if (!n) continue;
            const __mmask16 mk = (__mmask16)((1u << n) - 1);
            float *r = (s ? d->p1[v] : d->p0[v]) + roff;
            const float *q = res ? (s ? d->q1[v] : d->q0[v]) + roff : 0;
#pragma GCC unroll 8
            for (int i = 0; i < CT_MR; i++) {
                if (i >= mr) break;
                const __m512 y = s ? _mm512_permutexvar_ps(shift, acc[i][v]) : acc[i][v];
                __m512 x = bias ? _mm512_add_ps(y, _mm512_set1_ps(bias[i])) : y;
                if (add) x = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, r + i * ldc), x);
                if (res) x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mk, q + i * ldc));
                _mm512_mask_storeu_ps(r + i * ldc, mk, relu ? _mm512_max_ps(x, zero) : x);
            }
        }
    }
#else
    (void)stream, (void)width, (void)pfa, (void)w17; /* AVX-512 only (the portable loop multiplies all 32 columns) */
    float acc[CT_MR][CT_NR];
    memset(acc, 0, sizeof acc);
    for (int64_t k = 0; k < kc; k++, a += CT_MR, b += ldb)
        for (int i = 0; i < CT_MR; i++)
            for (int t = 0; t < CT_NR; t++) acc[i][t] += a[i] * b[t];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < 2; v++)
            for (int l = 0; l < d->n0[v] + d->n1[v]; l++) {
                const int64_t o = (l < d->n0[v] ? l : l - d->n0[v]) + roff + i * ldc;
                float *r = (l < d->n0[v] ? d->p0[v] : d->p1[v]) + o;
                float x = acc[i][16 * v + l] + (bias ? bias[i] : 0.0f) + (add ? *r : 0.0f);
                if (res) x += (l < d->n0[v] ? d->q0[v] : d->q1[v])[o];
                *r = relu && x < 0.0f ? 0.0f : x;
            }
#endif
}

/* The same into two whole halves c0 (columns 0..15) and c1 (16..31), no ReLU. */
static void ct_gemm_uk(int64_t kc, const float *a, const float *b, float *c0, float *c1, int64_t ldc, int mr,
                       int add, const float *bias)
{
    const ct_tile_dst d = {.p0 = {c0, c1}, .n0 = {16, 16}};
    ct_gemm_uk_dst(kc, a, b, &d, 0, ldc, mr, add, bias, 0, 0, 0, CT_W32, 0, CT_NR, 0);
}

/* ct_gemm_uk for a panel of `live` columns: only the columns ct_tile_width covers are multiplied
 * (the others come out 0, or as they were if add). */
static void ct_gemm_uk_live(int64_t kc, const float *a, const float *b, float *c0, float *c1, int64_t ldc, int mr,
                            int add, int64_t live)
{
    const ct_tile_dst d = {.p0 = {c0, c1}, .n0 = {16, 16}};
    const int w = ct_tile_width(live);
    if (w == CT_W32)
        ct_gemm_uk_dst(kc, a, b, &d, 0, ldc, mr, add, 0, 0, 0, 0, CT_W32, 0, CT_NR, 0);
    else
        ct_gemm_uk_dst(kc, a, b, &d, 0, ldc, mr, add, 0, 0, 0, 0, CT_WN, 0, CT_NR, w);
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

/* Threads 0..nt-1's buffers buf[t] (cap[t] floats) grown to at least need floats; kept between calls. */
static void ct_grow_thread_bufs(float **buf, int64_t *cap, int nt, int64_t need)
{
    for (int t = 0; t < nt; t++)
        if (cap[t] < need) {
            free(buf[t]);
            if (!(buf[t] = aligned_alloc(64, sizeof(float) * (size_t)need))) abort();
            cap[t] = need;
        }
}

/* Tile destination d for the 32 columns j.. of C; false where a half would span more than two
 * images (fewer than 16 pixels per image): then the caller stores element by element. */
static int ct_cmap_tile(const ct_cmap *cm, int64_t N, int64_t j, ct_tile_dst *d)
{
    for (int v = 0; v < 2; v++) {
        const int64_t jv = j + 16 * v, live = N - jv < 16 ? N - jv : 16;
        d->n0[v] = d->n1[v] = 0;
        d->p0[v] = d->p1[v] = cm->c;
        d->q0[v] = d->q1[v] = cm->r;
        if (live <= 0) continue;
        const int64_t img = jv / cm->ohw, pix = jv % cm->ohw;
        const int64_t n0 = live < cm->ohw - pix ? live : cm->ohw - pix;
        if (live - n0 > cm->ohw) return 0;
        d->p0[v] = cm->c + img * cm->img + pix;
        if (cm->r) d->q0[v] = cm->r + img * cm->img + pix;
        d->n0[v] = (int)n0;
        if (live > n0) {
            d->p1[v] = cm->c + (img + 1) * cm->img;
            if (cm->r) d->q1[v] = cm->r + (img + 1) * cm->img;
            d->n1[v] = (int)(live - n0);
        }
    }
    return 1;
}

/* C (M, N) (+)= packed A (M, K) B (K, N) (+ bias[m] if bias); accumulate: add to C from the start
 * (else the first K block stores); the last K block adds cm->r if there is one, then, if relu,
 * takes max(0, .). Columns are split over the threads. */
static void ct_gemm_run(int64_t M, int64_t N, int64_t K, const float *ap, const ct_bpack *b, const ct_cmap *cm,
                        int accumulate, const float *bias, int relu)
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
    if (nt > 1 && by_rows) ct_gemm_thread_buf(1);
#else
    ct_gemm_thread_buf(0);
#endif
    /* one K block into a C much larger than the caches: its rows go straight to memory
     * (non-temporal stores skip reading each line before writing it) */
    const int stream = CT_STREAM_OK && K <= CT_KC && !accumulate && (double)M * (double)N * 4.0 > 16e6 &&
                       cm->ldc % 16 == 0 && (cm->ohw >= N || cm->img % 16 == 0) && ((uintptr_t)cm->c & 63) == 0;
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
        int64_t blk = 0;
        for (int64_t jc = q0 * CT_NR; jc < q1 * CT_NR; jc += CT_NC) {
            const int64_t nc = q1 * CT_NR - jc < CT_NC ? q1 * CT_NR - jc : CT_NC;
            for (int64_t pc = 0; pc < K; pc += CT_KC, blk++) {
                const int64_t kc = K - pc < CT_KC ? K - pc : CT_KC;
                const int add = accumulate || pc > 0;
                /* the panels read where they lie (bd), the others packed, runs of them at a time */
                const int64_t np = (nc + CT_NR - 1) / CT_NR;
                const float *bd[CT_NC / CT_NR];
                for (int64_t q = 0; q < np; q++) bd[q] = stream ? NULL : ct_bpack_direct(b, pc, jc + q * CT_NR);
                /* the threads that split the rows share every B block (each multiplies all of it by
                 * its own rows): each packs a part of its panels into one of two buffers used in
                 * turn, so that the packing is not done nt times over (a thread packs block n + 2
                 * into the buffer of block n only after all have passed block n + 1's barrier) */
                const int shared = by_rows && nt > 1;
                if (shared) bp = ct_gemm_bbuf[blk & 1];
                const int64_t p_lo = shared ? np * t / nt : 0, p_hi = shared ? np * (t + 1) / nt : np;
                for (int64_t q = p_lo; q < p_hi;) {
                    if (bd[q]) {
                        q++;
                        continue;
                    }
                    int64_t q2 = q + 1;
                    while (q2 < p_hi && !bd[q2]) q2++;
                    const int64_t j_hi = q2 * CT_NR < nc ? q2 * CT_NR : nc;
                    b->pack(b, pc, kc, jc + q * CT_NR, j_hi - q * CT_NR, bp + q * kc * CT_NR);
                    q = q2;
                }
                if (shared) {
                    #pragma omp barrier
                }
                const int last = pc + kc == K, res = last && cm->r, act = last && relu;
                /* each panel's destination, then the tiles row of tiles by row of tiles: the B block stays
                 * in L2 (8 B of it per cycle at the FMA rate), and C (and the residual) is read and
                 * written as MR rows advancing together, streams the prefetchers follow (panel by
                 * panel, every row of C would be a stream of its own) */
                ct_tile_dst dst[CT_NC / CT_NR];
                unsigned char vec[CT_NC / CT_NR];
                for (int64_t jr = 0; jr < nc; jr += CT_NR) vec[jr / CT_NR] = (unsigned char)ct_cmap_tile(cm, N, jc + jr, &dst[jr / CT_NR]);
                for (int64_t m0 = m_lo; m0 < m_hi; m0 += CT_MR) {
                    const int mr = M - m0 < CT_MR ? (int)(M - m0) : CT_MR;
                    const float *aq = ap + ct_gemm_a_at(m0, pc, M, K);
                    const float *bias_m = bias && pc == 0 ? bias + m0 : 0;
                    for (int64_t jr = 0; jr < nc; jr += CT_NR) {
                        const int64_t j = jc + jr;
                        const float *bq = bd[jr / CT_NR] ? bd[jr / CT_NR] : bp + (jr / CT_NR) * kc * CT_NR;
                        const int64_t ldb = bd[jr / CT_NR] ? b->dld : CT_NR;
                        if (vec[jr / CT_NR]) {
                            const ct_tile_dst *dq = &dst[jr / CT_NR];
                            const int64_t ro = m0 * cm->ldc;
                            const int w = ct_tile_width(N - j);
                            /* rows split (a small batch): A, read once, comes from memory; the row's first
                             * tile prefetches the next panel */
                            const int64_t pfa = by_rows && jr == 0 ? kc * CT_MR : 0;
                            /* the common case with constants (no prefetch, packed B): the k loop keeps
                             * no test and steps B by an immediate (the stem's K = 27: 3% faster) */
                            const int packed = !pfa && ldb == CT_NR;
                            if (stream) /* whole panels, packed (streaming leaves B unread in place) */
                                ct_gemm_uk_dst(kc, aq, bq, dq, ro, cm->ldc, mr, 0, bias_m, res, act, 1, CT_W32, 0, CT_NR, 0);
                            else if (w == CT_W32 && packed)
                                ct_gemm_uk_dst(kc, aq, bq, dq, ro, cm->ldc, mr, add, bias_m, res, act, 0, CT_W32, 0, CT_NR, 0);
                            else if (w == CT_W32)
                                ct_gemm_uk_dst(kc, aq, bq, dq, ro, cm->ldc, mr, add, bias_m, res, act, 0, CT_W32, pfa, ldb, 0);
                            else
                                ct_gemm_uk_dst(kc, aq, bq, dq, ro, cm->ldc, mr, add, bias_m, res, act, 0, CT_WN, pfa, ldb, w);
                            continue;
                        }
                        /* fewer than 16 pixels per image: through a local tile, element by element (a
                         * panel across images is never read where it lies: ldb is CT_NR) */
                        ct_gemm_uk(kc, aq, bq, tile, tile + 16, CT_NR, mr, 0, 0);
                        for (int i = 0; i < mr; i++)
                            for (int64_t u = 0; u < CT_NR && j + u < N; u++) {
                                const int64_t ju = j + u, o = (ju / cm->ohw) * cm->img + (m0 + i) * cm->ldc + ju % cm->ohw;
                                float *dst_e = cm->c + o;
                                float x = tile[i * CT_NR + u] + (bias_m ? bias_m[i] : 0.0f) + (add ? *dst_e : 0.0f);
                                if (res) x += cm->r[o];
                                *dst_e = act && x < 0.0f ? 0.0f : x;
                            }
                    }
                }
            }
        }
#if CT_STREAM_OK
        if (stream) _mm_sfence(); /* the streamed rows visible before the threads join */
#endif
    }
}

/* ------------------------------------------------------------ convolution */

/* Geometry of a 2-D convolution (NCHW input x, weights (M, C/G, kh, kw), output (N, M, OH, OW)). */
typedef struct {
    int64_t N, C, H, W, M, OH, OW, G, kh, kw, sh, sw, ph, pw, dh, dw;
} ct_conv_geo;

/* The im2col of group gi of x for a convolution g, as a B operand of N columns (no pack callback set). */
static ct_bpack ct_conv_group_bpack(const ct_conv_geo *g, const float *x, int64_t gi, int64_t N)
{
    return (ct_bpack){.src = x + gi * (g->C / g->G) * g->H * g->W, .N = N, .C = g->C / g->G, .H = g->H, .W = g->W,
                      .OH = g->OH, .OW = g->OW, .kh = g->kh, .kw = g->kw, .sh = g->sh, .sw = g->sw, .ph = g->ph,
                      .pw = g->pw, .dh = g->dh, .dw = g->dw, .cstride = g->C * g->H * g->W};
}

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

/* y = conv(x, w) (+ bias) (+ res, of y's shape, if not NULL), then max(0, y) if relu, as implicit
 * GEMMs, one per group over the whole batch: Y_g (M/G, N*OH*OW) = W_g (M/G, C/G*kh*kw) im2col(X_g),
 * on weights packed by ct_conv_pack_weights. */
static void ct_conv_forward_packed(const ct_conv_geo *g, const float *x, const float *ap, const float *bias,
                                   const float *res, int relu, float *y)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G, K = Cg * g->kh * g->kw, OHW = g->OH * g->OW;
    for (int64_t gi = 0; gi < g->G; gi++) {
        ct_bpack b = ct_conv_group_bpack(g, x, gi, g->N * OHW);
        b.pack = ct_bpack_im2col;
        if (g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0) {
            b.H = b.OH = 1, b.W = b.OW = OHW; /* 1x1 stride 1: each image one row, so runs of 16 never end at a row */
            /* and B's rows are the channel planes: panels inside an image multiplied where they lie, unpacked */
            if (OHW % 16 == 0) b.dld = b.dimg = OHW;
        }
        ct_cmap cm = {.c = y + gi * Mg * OHW, .r = res ? res + gi * Mg * OHW : 0, .ldc = OHW, .img = g->M * OHW,
                      .ohw = OHW};
        ct_gemm_run(Mg, g->N * OHW, K, ap + gi * ct_gemm_a_floats(Mg, K), &b, &cm, 0, bias ? bias + gi * Mg : 0, relu);
    }
}

/* The same, packing the weights first into ap (ct_conv_packed_floats(g) floats of scratch). */
static void ct_conv_forward(const ct_conv_geo *g, const float *x, const float *w, const float *bias,
                            const float *res, int relu, float *y, float *ap)
{
    ct_conv_pack_weights(g, w, ap);
    ct_conv_forward_packed(g, x, ap, bias, res, relu, y);
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
    ct_gemm_run(g->C, g->N * HW, K, ap, &b, &cm, 0, 0, 0);
}

/* ------------------------------------------------------------ weight gradient */

#define CT_KCW 384 /* pixels per packed block of the weight gradient */

#if defined(__AVX512F__)
/* The first two stages of a transpose of n (8 or 16) vectors: within every 128-bit lane, the 4x4 blocks
 * of rows 4i..4i+3 transposed. */
static inline __attribute__((always_inline)) void ct_transpose_4x4_lanes(__m512 *r, int n)
{
    __m512 t[16];
    #pragma GCC unroll 16
    for (int i = 0; i < n / 2; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    #pragma GCC unroll 16
    for (int i = 0; i < n / 4; i++) {
        r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
        r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
        r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
        r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
    }
}

/* r[i][j] -> r[j][i] for a 16x16 block held as 16 vectors. */
static inline __attribute__((always_inline)) void ct_transpose16(__m512 r[16])
{
    __m512 t[16];
    ct_transpose_4x4_lanes(r, 16);
    #pragma GCC unroll 16
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
        t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
        t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
    }
    #pragma GCC unroll 16
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
        if ((b->sw == 1 || b->sw == 2) && b->dw == 1 && ow + 16 <= b->OW && r + 16 <= kc) {
            /* 16 pixels of one output row: per column k one (masked) load of 16 neighbouring input
             * pixels (stride 2: two loads, the even ones kept), then 16x16 transposes into 16 rows
             * of the panel */
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
                    const float *row = b->src + n * b->cstride + (off[t] - dr[t] * b->W - dc[t]) + ih * b->W;
                    if (b->sw == 2) {
                        blk[u] = ct_load_stride2(row, iw, b->W);
                        continue;
                    }
                    const float *src = row + iw + lo;
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
    int64_t n = pc / OHW, pix = pc % OHW;
    for (int64_t r = 0; r < kc;) {
#if defined(__AVX512F__)
        if (pix + 16 <= OHW && r + 16 <= kc) {
            /* 16 pixels of one image: a row of 16 per channel, turned into 16 rows of CT_MR */
            __m512 blk[16];
            #pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                const int64_t m = mp * CT_MR + i;
                blk[i] = i < CT_MR && m < Mg ? _mm512_loadu_ps(dyg + (n * g->M + m) * OHW + pix) : _mm512_setzero_ps();
            }
            ct_transpose16(blk);
            #pragma GCC unroll 16
            for (int u = 0; u < 16; u++) _mm256_storeu_ps(ad + (r + u) * CT_MR, _mm512_castps512_ps256(blk[u]));
            r += 16, pix += 16;
            if (pix == OHW) pix = 0, n++;
            continue;
        }
#endif
        for (int i = 0; i < CT_MR; i++) {
            const int64_t m = mp * CT_MR + i;
            ad[r * CT_MR + i] = m < Mg ? dyg[(n * g->M + m) * OHW + pix] : 0.0f;
        }
        r++;
        if (++pix == OHW) pix = 0, n++;
    }
}

#if defined(__AVX512F__)
/* The weight gradient as dot products along the pixels, for shallow convolutions (the stem: K = 27;
 * a 1x1 stride-2 downsample: K = C = 64), whose transposed GEMM spends more time transposing dY and
 * the im2col into panels than multiplying. dY is read as it lies (16 pixels of a channel per vector,
 * no packing). X's im2col rows are either read straight from the image (kernel width 3, stride 1:
 * the three taps of a row are three shifted, masked loads of one input row), packed per block of
 * CT_DWD_NB pixels channel by channel (1x1 stride 2 on rows of 16 or more: every other input column,
 * by two loads and a permute, once per block instead of once per tile row of dW) or packed by the
 * forward packing (ct_bpack_im2col: no transpose either). A tile of 8 dW rows
 * x 3 columns keeps 24 vectors of partial sums, one lane per pixel mod 16, in registers over a block,
 * in memory (vacc) between blocks; lanes and threads are summed at the end. The threads split the
 * blocks. */
#define CT_DWD_NB 512 /* pixels per block (a multiple of CT_NR) */
#define CT_DWD_MR 8
#define CT_DWD_KR 3

static int64_t ct_dwd_kp(const ct_conv_geo *g)
{
    const int64_t K = g->C / g->G * g->kh * g->kw;
    return (K + CT_DWD_KR - 1) / CT_DWD_KR * CT_DWD_KR;
}

/* How X's rows are read: 1 (kernel width 3, stride 1) straight from the image, a tile's 3 columns
 * are one input row's 3 taps; 2 (1x1, stride 2) packed channel by channel, a tile's 3 columns are 3
 * channels at the output pixels; 0: packed by ct_bpack_im2col */
static int ct_dwd_rows(const ct_conv_geo *g)
{
    if (g->OW % 16) return 0;
    if (g->kw == CT_DWD_KR && g->sh == 1 && g->sw == 1 && g->dw == 1) return 1;
    return g->kh == 1 && g->kw == 1 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->W == 2 * g->OW ? 2 : 0;
}

static int ct_conv_grad_weight_dot_ok(const ct_conv_geo *g)
{
    const int64_t Mg = g->M / g->G, kp = ct_dwd_kp(g);
    return (g->OH * g->OW) % 16 == 0 && Mg >= CT_DWD_MR && kp <= CT_KC && Mg * kp <= 16384 &&
           (g->kh * g->kw * g->C / g->G < CT_NR || (g->kh == 1 && g->kw == 1 && (g->sh > 1 || g->sw > 1)));
}

/* A walk over the dY lines the next block will read from memory, channel by channel for each half (16
 * pixels), one line per step of the block before's innermost loop: its rows are read 8 channels at a
 * time, 2 KiB of each, too short a stream for the prefetchers (the stem's weight gradient: 145 -> 170
 * GFLOP/s). */
typedef struct {
    const float *dy;
    int64_t h, nh, i, n, pix;
    int64_t ohw, mg, m; /* pixels per image, channels per group, channels */
} ct_dwd_pf;

static inline void ct_dwd_pf_start(ct_dwd_pf *f, const ct_conv_geo *g, const float *dyg, int64_t j0, int64_t nc)
{
    const int64_t OHW = g->OH * g->OW;
    *f = (ct_dwd_pf){.dy = dyg, .nh = (nc + 15) / 16, .n = j0 / OHW, .pix = j0 % OHW, .ohw = OHW, .mg = g->M / g->G,
                     .m = g->M};
}

static inline void ct_dwd_pf_step(ct_dwd_pf *f)
{
    if (f->h >= f->nh) return;
    _mm_prefetch((const char *)(f->dy + (f->n * f->m + f->i) * f->ohw + f->pix), _MM_HINT_T1);
    if (++f->i < f->mg) return;
    f->i = 0, f->h++, f->pix += 16;
    if (f->pix == f->ohw) f->pix = 0, f->n++;
}

static float *ct_dwd_buf[CT_GEMM_MAX_THREADS];
static int64_t ct_dwd_cap[CT_GEMM_MAX_THREADS];

/* The body, inlined once per way of reading X (rows, ct_dwd_rows), so that each innermost loop is
 * compiled for its own case alone (one for all three ran the stem's 3% slower) */
static inline __attribute__((always_inline)) void ct_dwd_run(const ct_conv_geo *g, const float *dy, const float *x,
                                                             float *dw, int rows)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G, K = Cg * g->kh * g->kw, kp = ct_dwd_kp(g);
    const int64_t OHW = g->OH * g->OW, HW = g->H * g->W, P = g->N * OHW, nb = (P + CT_DWD_NB - 1) / CT_DWD_NB;
    const int64_t mblocks = (Mg + CT_DWD_MR - 1) / CT_DWD_MR, kblocks = kp / CT_DWD_KR;
    const int64_t vacc_floats = mblocks * kblocks * CT_DWD_MR * CT_DWD_KR * 16;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
    if (nt > CT_GEMM_MAX_THREADS) nt = CT_GEMM_MAX_THREADS;
    if ((int64_t)nt > nb) nt = (int)nb;
#endif
    for (int t = 0; t < nt; t++) ct_gemm_thread_buf(t);
    ct_grow_thread_bufs(ct_dwd_buf, ct_dwd_cap, nt, vacc_floats);
    for (int64_t gi = 0; gi < g->G; gi++) {
        const ct_bpack b = ct_conv_group_bpack(g, x, gi, P);
        const float *dyg = dy + gi * Mg * OHW;
        float *dwg = dw + gi * Mg * K;
        #pragma omp parallel num_threads(nt) if (nt > 1)
        {
            int t = 0;
#ifdef _OPENMP
            t = omp_get_thread_num();
#endif
            float *bp = ct_gemm_bbuf[t], *vacc = ct_dwd_buf[t];
            memset(vacc, 0, sizeof(float) * (size_t)vacc_floats);
            /* packed: im2col rows K..kp-1 (a partial last tile column) stay zero */
            if (rows != 1) memset(bp, 0, sizeof(float) * (size_t)(kp * CT_DWD_NB));
            int64_t hd[CT_DWD_NB / 16], hoh[CT_DWD_NB / 16], hx[CT_DWD_NB / 16];
            unsigned char hm[CT_DWD_NB / 16];
            int64_t hxn[CT_DWD_NB / 16], nxh = 0;
            /* rows: the column masks of a half at the start of an output row (0), inside (1), at its end
             * (2; OW = 16: the start's mask and the end's together) */
            __mmask16 cmask[3][CT_DWD_KR];
            for (int u = 0; u < CT_DWD_KR; u++) {
                cmask[0][u] = (__mmask16)ct_cols_mask(u - g->pw, g->W);
                cmask[1][u] = (__mmask16)ct_cols_mask(16 + u - g->pw, g->W);
                cmask[2][u] = (__mmask16)ct_cols_mask(g->OW - 16 + u - g->pw, g->W);
            }
            const int64_t b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
            for (int64_t bi = b0; bi < b1; bi++) {
                const int64_t j0 = bi * CT_DWD_NB, nc = P - j0 < CT_DWD_NB ? P - j0 : CT_DWD_NB;
                const int64_t npan = (nc + CT_NR - 1) / CT_NR, nh = (nc + 15) / 16;
                if (!rows) {
                    /* panels of CT_NR pixels, kp rows each (ct_bpack_im2col with kc = kp would read
                     * rows past K: pack K rows, then move the panels to a kp-row stride, last first) */
                    ct_bpack_im2col(&b, 0, K, j0, nc, bp);
                    if (kp != K) {
                        for (int64_t q = npan - 1; q > 0; q--) {
                            memmove(bp + q * kp * CT_NR, bp + q * K * CT_NR, sizeof(float) * (size_t)(K * CT_NR));
                            memset(bp + (q * kp + K) * CT_NR, 0, sizeof(float) * (size_t)((kp - K) * CT_NR));
                        }
                        memset(bp + K * CT_NR, 0, sizeof(float) * (size_t)((kp - K) * CT_NR));
                    }
                }
                /* per half (16 pixels, in one image as OHW % 16 == 0): where its dY starts (channel 0),
                 * and, rows, its output row, where its input starts (channel 0, row oh, column
                 * ow - pw) and which column masks it takes */
                {
                    int64_t n = j0 / OHW, pix = j0 % OHW;
                    for (int64_t h = 0; h < nh; h++) {
                        const int64_t oh = pix / g->OW, ow = pix % g->OW;
                        hd[h] = n * g->M * OHW + pix;
                        hoh[h] = oh;
                        hx[h] = n * b.cstride + oh * g->sh * g->W + ow * g->sw - g->pw;
                        hm[h] = ow == 0 ? 0 : ow + 16 == g->OW ? 2 : 1;
                        if ((pix += 16) == OHW) pix = 0, n++;
                    }
                    /* rows == 2: the next block's halves, for the walk below over its input lines */
                    nxh = 0;
                    if (rows == 2 && bi + 1 < b1) {
                        const int64_t nc2 = P - j0 - CT_DWD_NB < CT_DWD_NB ? P - j0 - CT_DWD_NB : CT_DWD_NB;
                        nxh = (nc2 + 15) / 16;
                        for (int64_t h = 0; h < nxh; h++) {
                            const int64_t oh = pix / g->OW, ow = pix % g->OW;
                            hxn[h] = n * b.cstride + oh * g->sh * g->W + ow * g->sw;
                            if ((pix += 16) == OHW) pix = 0, n++;
                        }
                    }
                }
                if (rows == 2) {
                    /* the block's stride-2 pixels, channel by channel (rows Cg..kp-1 stay zero): packed once
                     * here rather than permuted again for every tile row of dW */
                    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
                    for (int64_t c = 0; c < Cg; c++) {
                        const float *xc = b.src + c * HW;
                        float *dst = bp + c * CT_DWD_NB;
                        for (int64_t h = 0; h < nh; h++) {
                            const float *xr = xc + hx[h];
                            _mm512_store_ps(dst + 16 * h,
                                            _mm512_permutex2var_ps(_mm512_loadu_ps(xr), even, _mm512_loadu_ps(xr + 16)));
                        }
                    }
                }
                ct_dwd_pf pf;
                ct_dwd_pf_start(&pf, g, dyg, j0 + CT_DWD_NB, bi + 1 < b1 ? nc : 0);
                /* rows == 2: a walk over the next block's input lines (channel by channel, two lines a
                 * half), xper steps before each tile's loop (outside the innermost one, which the other
                 * cases share): the packing above reads them in a burst, at memory latency without it */
                int64_t xpc = 0, xph = 0;
                const int64_t xper = nxh ? (Cg * nxh + mblocks * kblocks - 1) / (mblocks * kblocks) : 0;
                for (int64_t mb = 0; mb < mblocks; mb++) {
                    const int64_t m0 = mb * CT_DWD_MR;
                    const int mr = Mg - m0 < CT_DWD_MR ? (int)(Mg - m0) : CT_DWD_MR;
                    for (int64_t kb = 0; kb < kblocks; kb++) {
                        float *va = vacc + (mb * kblocks + kb) * CT_DWD_MR * CT_DWD_KR * 16;
                        __m512 acc[CT_DWD_MR][CT_DWD_KR];
                        #pragma GCC unroll 8
                        for (int i = 0; i < CT_DWD_MR; i++)
                            #pragma GCC unroll 3
                            for (int u = 0; u < CT_DWD_KR; u++) acc[i][u] = _mm512_load_ps(va + (i * CT_DWD_KR + u) * 16);
                        /* rows: tile column block kb = (input channel, kernel row), whose input row
                         * for output row oh is oh + dr */
                        const int64_t dr = rows == 1 ? kb % g->kh * g->dh - g->ph : 0;
                        const float *xk = b.src + kb / g->kh * HW + dr * g->W;
                        const float *dym = dyg + m0 * OHW;
                        for (int64_t u = 0; u < xper && xpc < Cg; u++) {
                            const float *xr = b.src + xpc * HW + hxn[xph];
                            _mm_prefetch((const char *)xr, _MM_HINT_T1);
                            _mm_prefetch((const char *)(xr + 16), _MM_HINT_T1);
                            if (++xph == nxh) xph = 0, xpc++;
                        }
                        for (int64_t h = 0; h < nh; h++) {
                            __m512 xv[CT_DWD_KR];
                            if (rows == 2) {
                                const float *xq = bp + kb * CT_DWD_KR * CT_DWD_NB + 16 * h;
                                #pragma GCC unroll 3
                                for (int u = 0; u < CT_DWD_KR; u++) xv[u] = _mm512_load_ps(xq + u * CT_DWD_NB);
                            } else if (rows) {
                                if ((uint64_t)(hoh[h] + dr) >= (uint64_t)g->H) continue; /* padding: adds 0 */
                                const float *xr = xk + hx[h];
                                #pragma GCC unroll 3
                                for (int u = 0; u < CT_DWD_KR; u++) xv[u] = _mm512_maskz_loadu_ps(cmask[hm[h]][u], xr + u);
                            } else {
                                const float *xq = bp + (h / 2) * kp * CT_NR + kb * CT_DWD_KR * CT_NR + 16 * (h % 2);
                                #pragma GCC unroll 3
                                for (int u = 0; u < CT_DWD_KR; u++) xv[u] = _mm512_load_ps(xq + u * CT_NR);
                            }
                            ct_dwd_pf_step(&pf);
                            const float *dq = dym + hd[h];
                            #pragma GCC unroll 8
                            for (int i = 0; i < CT_DWD_MR; i++) {
                                /* rows past M/G: row 0 again, summed into partial sums never read */
                                __m512 d = _mm512_loadu_ps(dq + (i < mr ? i : 0) * OHW);
                                __asm__("" : "+v"(d)); /* one load, not one per multiply-add */
                                #pragma GCC unroll 3
                                for (int u = 0; u < CT_DWD_KR; u++) acc[i][u] = _mm512_fmadd_ps(d, xv[u], acc[i][u]);
                            }
                        }
                        #pragma GCC unroll 8
                        for (int i = 0; i < CT_DWD_MR; i++)
                            #pragma GCC unroll 3
                            for (int u = 0; u < CT_DWD_KR; u++) _mm512_store_ps(va + (i * CT_DWD_KR + u) * 16, acc[i][u]);
                    }
                }
            }
            #pragma omp barrier
            /* dW = the sum over the threads and the lanes, each thread summing a slice of dW */
            const int64_t e0 = Mg * K * t / nt, e1 = Mg * K * (t + 1) / nt;
            for (int64_t e = e0; e < e1; e++) {
                const int64_t m = e / K, k = e % K;
                const int64_t o = ((m / CT_DWD_MR * kblocks + k / CT_DWD_KR) * CT_DWD_MR * CT_DWD_KR +
                                   (m % CT_DWD_MR) * CT_DWD_KR + k % CT_DWD_KR) * 16;
                __m512 sum = _mm512_setzero_ps();
                for (int u = 0; u < nt; u++) sum = _mm512_add_ps(sum, _mm512_load_ps(ct_dwd_buf[u] + o));
                dwg[e] = _mm512_reduce_add_ps(sum);
            }
            #pragma omp barrier
        }
    }
}
static void ct_conv_grad_weight_dot(const ct_conv_geo *g, const float *dy, const float *x, float *dw)
{
    switch (ct_dwd_rows(g)) {
    case 1: ct_dwd_run(g, dy, x, dw, 1); break;
    case 2: ct_dwd_run(g, dy, x, dw, 2); break;
    default: ct_dwd_run(g, dy, x, dw, 0);
    }
}
#endif

/* dW (M, C/G, kh, kw) = sum over the batch of dY_g (M/G, N*OH*OW) im2col(X_g)^T, per group: a GEMM whose
 * depth is the pixels. For each block of CT_KCW pixels the threads pack the dY block together (A: its
 * rows are dW's rows), then each packs the transposed im2col of its own columns of dW (B) and
 * accumulates. abuf: ct_gemm_a_floats(M/G, CT_KCW) floats of scratch. */
static void ct_conv_grad_weight_gemm(const ct_conv_geo *g, const float *dy, const float *x, float *dw, float *abuf)
{
    const int64_t Cg = g->C / g->G, Mg = g->M / g->G, K = Cg * g->kh * g->kw, OHW = g->OH * g->OW, P = g->N * OHW;
    const int64_t npanels = (K + CT_NR - 1) / CT_NR, mpanels = (Mg + CT_MR - 1) / CT_MR;
#if defined(__AVX512F__)
    if (ct_conv_grad_weight_dot_ok(g)) {
        ct_conv_grad_weight_dot(g, dy, x, dw);
        return;
    }
#endif
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
            const ct_bpack b = ct_conv_group_bpack(g, x, gi, K);
            const float *dyg = dy + gi * Mg * OHW;
            float *dwg = dw + gi * Mg * K;
            #pragma omp parallel num_threads(nt)
            {
                int t = 0;
#ifdef _OPENMP
                t = omp_get_thread_num();
#endif
                float *bp = ct_gemm_bbuf[t], *ab = bp + CT_KCW * CT_NR, *acc = ab + mpanels * CT_MR * CT_KCW;
                memset(acc, 0, sizeof(float) * (size_t)(Mg * K));
                const int64_t nb = (P + CT_KCW - 1) / CT_KCW, b0 = nb * t / nt, b1 = nb * (t + 1) / nt;
                for (int64_t bi = b0; bi < b1; bi++) {
                    const int64_t pc = bi * CT_KCW, kc = P - pc < CT_KCW ? P - pc : CT_KCW;
                    for (int64_t mp = 0; mp < mpanels; mp++) ct_pack_dy_panel(g, dyg, pc, kc, mp, ab + mp * kc * CT_MR);
                    for (int64_t q = 0; q < npanels; q++) {
                        const int64_t j = q * CT_NR;
                        ct_pack_im2col_t(&b, pc, kc, j, bp);
                        /* the panel's live columns of acc (K x ... row-major), added to by masked stores */
                        const ct_cmap cm = {.c = acc, .ldc = K, .ohw = K};
                        ct_tile_dst d;
                        ct_cmap_tile(&cm, K, j, &d);
                        for (int64_t mp = 0; mp < mpanels; mp++) {
                            const int64_t m0 = mp * CT_MR;
                            const int mr = Mg - m0 < CT_MR ? (int)(Mg - m0) : CT_MR;
                            ct_gemm_uk_dst(kc, ab + mp * kc * CT_MR, bp, &d, m0 * K, K, mr, 1, 0, 0, 0, 0, CT_W32, 0, CT_NR, 0);
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
        const ct_bpack b = ct_conv_group_bpack(g, x, gi, K);
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

/* ------------------------------------------------------------ Winograd F(m x m, 3x3) */

/* A 3x3 stride-1 convolution (one group, no dilation) as Winograd's minimal filtering F(m x m, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks"), m = 2 or 4, a = m + 2: each
 * m x m output tile is A^T [(G g G^T) . (B^T d B)] A over its a x a input patch d, so for every
 * (input, output) channel pair a tile costs a^2 products instead of 9 m^2 multiply-adds (16 for 36:
 * 2.25x fewer at m = 2; 36 for 144: 4x at m = 4), and over the batch the work becomes a^2 GEMMs
 * M_xi (M, tiles) = U_xi (M, C) V_xi (C, tiles), one per point xi of the transform.
 * Tiles go in blocks of nb (a multiple of CT_NR); a thread transforms a block's input patches into
 * its own V (a^2 x C x nb floats, laid out as packed B panels of CT_NR tiles, 16 tiles per vector),
 * runs the GEMMs on the micro-kernel into its own M (a^2 x M x nb), and transforms M into the
 * output tiles. Interpolation points 0, +-1 (m = 2) and 0, +-1, +-2 (m = 4), and infinity. The
 * price is rounding: the transforms add and cancel larger intermediate values than a dot product,
 * so the largest float32 error is about 2-3x (m = 2) and 20-50x (m = 4) the direct convolution's
 * (tests/c/test_gemm_lib.c holds both to the exact sums; rms about 6x at m = 4). */

typedef float ct_wv __attribute__((vector_size(64), aligned(64))); /* 16 tiles */

#define CT_WINO_MAX_NB 256
/* Bit m set: the F(m x m) kernels are compiled in (each m is its own inlined copy, about a second of the
 * C compiler's time). Generated programs define it to the one tile size they use; default both. */
#ifndef CT_WINO_TILES
#define CT_WINO_TILES ((1 << 2) | (1 << 4))
#endif
/* Floats between consecutive planes xi of the transformed blocks beyond a plane's size: one cache line,
 * so that planes a power-of-two size apart, read or written together, do not share L1 sets. */
#define CT_WINO_PAD 16

#if defined(__AVX512F__)
/* Two 8x8 transposes at once, one per 256-bit half: r[i] = (a_i | b_i) becomes r[j] = (a_0..7[j] | b_0..7[j]). */
static inline __attribute__((always_inline)) void ct_transpose8x2(__m512 r[8])
{
    __m512 t[8];
    ct_transpose_4x4_lanes(r, 8);
    /* 128-bit lanes: out j < 4 = (r_j.0, r_{j+4}.0, r_j.2, r_{j+4}.2), out j + 4 = the same of lanes 1 and 3 */
    const __m512i lo = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i hi = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    #pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_permutex2var_ps(r[j], lo, r[j + 4]);
        t[j + 4] = _mm512_permutex2var_ps(r[j], hi, r[j + 4]);
    }
    #pragma GCC unroll 16
    for (int j = 0; j < 8; j++) r[j] = t[j];
}
#endif

/* r = B^T a (a, r: m + 2 values) */
static inline __attribute__((always_inline)) void ct_wino_bt(int m, const ct_wv *a, ct_wv *r)
{
    if (m == 4) {
        r[0] = 4.0f * a[0] - 5.0f * a[2] + a[4];
        r[1] = a[3] + a[4] - 4.0f * (a[1] + a[2]);
        r[2] = 4.0f * (a[1] - a[2]) + a[4] - a[3];
        r[3] = 2.0f * (a[3] - a[1]) + a[4] - a[2];
        r[4] = 2.0f * (a[1] - a[3]) + a[4] - a[2];
        r[5] = 4.0f * a[1] - 5.0f * a[3] + a[5];
    } else {
        r[0] = a[0] - a[2];
        r[1] = a[1] + a[2];
        r[2] = a[2] - a[1];
        r[3] = a[1] - a[3];
    }
}

/* o = A^T a (a: m + 2 values, o: m) */
static inline __attribute__((always_inline)) void ct_wino_at(int m, const ct_wv *a, ct_wv *o)
{
    if (m == 4) {
        const ct_wv s12 = a[1] + a[2], d12 = a[1] - a[2], s34 = a[3] + a[4], d34 = a[3] - a[4];
        o[0] = a[0] + s12 + s34;
        o[1] = d12 + 2.0f * d34;
        o[2] = s12 + 4.0f * s34;
        o[3] = d12 + 8.0f * d34 + a[5];
    } else {
        o[0] = a[0] + a[1] + a[2];
        o[1] = a[1] - a[2] - a[3];
    }
}

/* u = G (g0, g1, g2) (m + 2 values) */
static inline void ct_wino_g(int m, float g0, float g1, float g2, float *u)
{
    if (m == 4) {
        u[0] = g0 * 0.25f;
        u[1] = -(g0 + g1 + g2) * (1.0f / 6);
        u[2] = -(g0 - g1 + g2) * (1.0f / 6);
        u[3] = g0 * (1.0f / 24) + g1 * (1.0f / 12) + g2 * (1.0f / 6);
        u[4] = g0 * (1.0f / 24) - g1 * (1.0f / 12) + g2 * (1.0f / 6);
        u[5] = g2;
    } else {
        u[0] = g0;
        u[1] = (g0 + g1 + g2) * 0.5f;
        u[2] = (g0 - g1 + g2) * 0.5f;
        u[3] = g2;
    }
}

/* r = A b (b: m values, r: m + 2): the transpose of the output transform, for weight gradients */
static inline __attribute__((always_inline)) void ct_wino_a(int m, const ct_wv *b, ct_wv *r)
{
    if (m == 4) {
        r[0] = b[0];
        r[1] = b[0] + b[1] + b[2] + b[3];
        r[2] = b[0] - b[1] + b[2] - b[3];
        r[3] = b[0] + 2.0f * b[1] + 4.0f * b[2] + 8.0f * b[3];
        r[4] = b[0] - 2.0f * b[1] + 4.0f * b[2] - 8.0f * b[3];
        r[5] = b[3];
    } else {
        r[0] = b[0];
        r[1] = b[0] + b[1];
        r[2] = b[0] - b[1];
        r[3] = -b[1];
    }
}

/* v = T d T' for the separable transforms on 16 lanes: kind 0: T = B^T on an a x a block (a = m + 2),
 * into a x a; kind 1: T = A^T, a x a into m x m; kind 2: T = A, m x m into a x a. Blocks row-major. */
static inline __attribute__((always_inline)) void ct_wino_2d(int m, int kind, const ct_wv *d, ct_wv *v)
{
    const int n = kind == 2 ? m : m + 2, o = kind == 1 ? m : m + 2;
    ct_wv s[36]; /* T d: o rows of n */
    #pragma GCC unroll 16
    for (int k = 0; k < n; k++) {
        ct_wv col[6], r[6];
        #pragma GCC unroll 16
        for (int i = 0; i < n; i++) col[i] = d[i * n + k];
        if (kind == 0) ct_wino_bt(m, col, r);
        else if (kind == 1) ct_wino_at(m, col, r);
        else ct_wino_a(m, col, r);
        #pragma GCC unroll 16
        for (int i = 0; i < o; i++) s[i * n + k] = r[i];
    }
    #pragma GCC unroll 16
    for (int i = 0; i < o; i++) {
        if (kind == 0) ct_wino_bt(m, s + i * n, v + i * o);
        else if (kind == 1) ct_wino_at(m, s + i * n, v + i * o);
        else ct_wino_a(m, s + i * n, v + i * o);
    }
}

/* w = G^T s (s: m + 2 values, w: 3): the transpose of the weight transform, for weight gradients */
static inline void ct_wino_gt(int m, const double *s, double *w)
{
    if (m == 4) {
        w[0] = s[0] / 4 - (s[1] + s[2]) / 6 + (s[3] + s[4]) / 24;
        w[1] = (s[2] - s[1]) / 6 + (s[3] - s[4]) / 12;
        w[2] = (s[3] + s[4] - s[1] - s[2]) / 6 + s[5];
    } else {
        w[0] = s[0] + 0.5 * (s[1] + s[2]);
        w[1] = 0.5 * (s[1] - s[2]);
        w[2] = 0.5 * (s[1] + s[2]) + s[3];
    }
}

/* Whether ct_conv_winograd applies to g. */
static int ct_conv_winograd_ok(const ct_conv_geo *g)
{
    return g->G == 1 && g->kh == 3 && g->kw == 3 && g->sh == 1 && g->sw == 1 && g->dh == 1 && g->dw == 1 &&
           g->ph >= 0 && g->pw >= 0 && g->ph <= 2 && g->pw <= 2 && g->OH == g->H + 2 * g->ph - 2 &&
           g->OW == g->W + 2 * g->pw - 2;
}

/* Floats of transformed weights for tile size m: (m + 2)^2 packed A operands (M, C). */
static int64_t ct_wino_u_floats(int m, int64_t M, int64_t C) { return (m + 2) * (m + 2) * ct_gemm_a_floats(M, C); }

/* U_xi = (G g G^T)_xi for every (output, input) channel pair, packed as (m + 2)^2 A operands (M, C) one
 * after the other. flip = 0: g = w[o][i] of w (M, C, 3, 3); flip = 1 (an input gradient): g = w[i][o] of
 * w (C, M, 3, 3) turned by 180 degrees. */
static void ct_wino_pack_weights(int m, const float *w, int64_t M, int64_t C, int flip, float *u)
{
    const int a = m + 2;
    const int64_t per = ct_gemm_a_floats(M, C), np = (M + CT_MR - 1) / CT_MR;
    #pragma omp parallel for schedule(static) if (M * C >= 4096)
    for (int64_t p = 0; p < np; p++)
        for (int64_t c = 0; c < C; c++) {
            float v[36][CT_MR]; /* the panel's CT_MR rows at column c, per point xi */
            for (int i = 0; i < CT_MR; i++) {
                const int64_t o = p * CT_MR + i;
                float g[9] = {0}, t[3][6], r[6];
                if (o < M)
                    for (int k = 0; k < 9; k++) g[k] = flip ? w[(c * M + o) * 9 + 8 - k] : w[(o * C + c) * 9 + k];
                for (int j = 0; j < 3; j++) ct_wino_g(m, g[j], g[3 + j], g[6 + j], t[j]); /* t[j] = column j of G g */
                for (int e = 0; e < a; e++) {
                    ct_wino_g(m, t[0][e], t[1][e], t[2][e], r); /* row e of (G g) G^T */
                    for (int k = 0; k < a; k++) v[e * a + k][i] = r[k];
                }
            }
            float *dst = u + ct_gemm_a_at(p * CT_MR, c, M, C);
            for (int xi = 0; xi < a * a; xi++) memcpy(dst + xi * per, v[xi], sizeof v[xi]);
        }
}

/* 16 tiles of a batch's m x m tiling (tile p = (image, tile row, tile column) in that order), the
 * lanes of one vector: where each one's input patch and output tile start. */
typedef struct {
    int64_t ibase[16], ih0[16], iw0[16]; /* input patch: offset in x (channel 0), top-left (may be < 0) */
    int64_t obase[16], oh0[16], ow0[16]; /* output tile: offset in y (channel 0), top-left */
    int live[16];
    unsigned icols[16], irows[16]; /* bit k / r: patch column / row k inside the image (0 if not live) */
    unsigned ocols[16], orows[16]; /* bit k / r: tile column / row k inside the output (0 if not live) */
#if defined(__AVX512F__)
    /* m = 2 with every lane live, lanes 0..15 (seg 16) or 0..7 and 8..15 (seg 8) consecutive tiles of one
     * tile row each: a patch row of all the lanes is read by 4 loads (columns 0.. and 2.. of the segments'
     * row spans, 16 floats each, masked to the image) and spread over the lanes by 4 permutes */
    int seg;
    __mmask16 segm[4]; /* seg 16: span columns 0..15, 16..31, 2..17, 18..33; seg 8: 0..15 and 2..17 of A, B */
#endif
} ct_wino_lanes;

static inline void ct_wino_lanes_init(int m, const ct_conv_geo *g, int64_t p0, int64_t nlive, ct_wino_lanes *L)
{
    const int a = m + 2;
    const int64_t TW = (g->OW + m - 1) / m, T = (g->OH + m - 1) / m * TW;
    for (int l = 0; l < 16; l++) {
        const int64_t p = p0 + l, n = p / T, tt = p % T;
        L->live[l] = l < nlive;
        L->oh0[l] = tt / TW * m;
        L->ow0[l] = tt % TW * m;
        L->ih0[l] = L->oh0[l] - g->ph;
        L->iw0[l] = L->ow0[l] - g->pw;
        L->ibase[l] = n * g->C * g->H * g->W + L->ih0[l] * g->W + L->iw0[l];
        L->obase[l] = n * g->M * g->OH * g->OW + L->oh0[l] * g->OW + L->ow0[l];
        L->icols[l] = L->irows[l] = L->ocols[l] = L->orows[l] = 0;
        for (int e = 0; e < a && L->live[l]; e++) {
            if (L->iw0[l] + e >= 0 && L->iw0[l] + e < g->W) L->icols[l] |= 1u << e;
            if (L->ih0[l] + e >= 0 && L->ih0[l] + e < g->H) L->irows[l] |= 1u << e;
            if (e < m && L->ow0[l] + e < g->OW) L->ocols[l] |= 1u << e;
            if (e < m && L->oh0[l] + e < g->OH) L->orows[l] |= 1u << e;
        }
    }
#if defined(__AVX512F__)
    /* the segments: lanes j0.. of one image and tile row, consecutive tile columns */
    L->seg = 0;
    if (m == 2 && nlive >= 16) {
        for (int seg = 16; seg >= 8 && !L->seg; seg -= 8) {
            int ok = 1;
            for (int l = 0; l < 16 && ok; l++) {
                const int j0 = l / seg * seg;
                ok = L->ih0[l] == L->ih0[j0] && L->iw0[l] == L->iw0[j0] + 2 * (l - j0) &&
                     L->ibase[l] == L->ibase[j0] + 2 * (l - j0);
            }
            if (ok) L->seg = seg;
        }
        const int64_t off16[4] = {0, 16, 2, 18}, off8[4] = {0, 2, 0, 2};
        for (int v = 0; v < 4 && L->seg; v++) {
            const int j0 = L->seg == 16 ? 0 : v / 2 * 8;
            L->segm[v] = (__mmask16)ct_cols_mask(L->iw0[j0] + (L->seg == 16 ? off16[v] : off8[v]), g->W);
        }
    }
#endif
}

/* v[xi] = (B^T d B)_xi for the 16 lanes' input patches d of channel c (zero outside the image and for
 * lanes that are not live). */
/* d[r][k] (n x n, 16 lanes) = src[base[l] + r*ld + k] for lane l where bit r of rows[l] and bit k of cols[l]
 * are set, else 0. */
static inline __attribute__((always_inline)) void ct_wino_load(int n, const float *src, const int64_t *base,
                                                             const unsigned *rows, const unsigned *cols,
                                                             int64_t ld, ct_wv *d)
{
#if defined(__AVX512F__)
    /* per row: lane l's n (of 8) floats by one masked load, lanes l and l + 8 in one vector, then
     * transposed into d[row][column] over the 16 lanes */
    #pragma GCC unroll 16
    for (int r = 0; r < n; r++) {
        __m512 z[8];
        #pragma GCC unroll 16
        for (int l = 0; l < 8; l++) {
            __m256 h[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
            #pragma GCC unroll 2
            for (int u = 0; u < 2; u++)
                if (rows[l + 8 * u] >> r & 1)
                    h[u] = _mm256_maskz_loadu_ps((__mmask8)cols[l + 8 * u], src + base[l + 8 * u] + r * ld);
            z[l] = _mm512_insertf32x8(_mm512_castps256_ps512(h[0]), h[1], 1);
        }
        ct_transpose8x2(z);
        #pragma GCC unroll 16
        for (int k = 0; k < n; k++) d[r * n + k] = (ct_wv)z[k];
    }
#else
    float *ds = (float *)d;
    for (int l = 0; l < 16; l++)
        for (int r = 0; r < n; r++)
            for (int k = 0; k < n; k++)
                ds[(r * n + k) * 16 + l] = (rows[l] >> r & 1) && (cols[l] >> k & 1) ? src[base[l] + r * ld + k] : 0.0f;
#endif
}

/* v[xi] = (B^T d B)_xi for the 16 lanes' input patches d of channel c (zero outside the image and for
 * lanes that are not live). */
static inline __attribute__((always_inline)) void ct_wino_input(int m, const ct_conv_geo *g, const float *x,
                                                              int64_t c, const ct_wino_lanes *L, ct_wv *v)
{
    const int a = m + 2;
    const int64_t W = g->W, cx = c * g->H * W;
    ct_wv d[36];
#if defined(__AVX512F__)
    if (m == 2 && L->seg) {
        /* column k of lane l: element 2l + k of the two vectors permuted (seg 16: both halves of the
         * row span of the 16 tiles; seg 8: the spans of lanes 0..7 and of 8..15) */
        const __m512i i16 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i one = _mm512_set1_epi32(1);
        const int64_t o16[4] = {0, 16, 2, 18}, o8[4] = {0, 2, 0, 2}; /* the four loads' first columns */
        #pragma GCC unroll 16
        for (int r = 0; r < 4; r++) {
            __m512 w[4];
            #pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                const int j0 = L->seg == 16 ? 0 : u / 2 * 8;
                const float *src = x + L->ibase[j0] + cx + r * W + (L->seg == 16 ? o16[u] : o8[u]);
                w[u] = L->irows[j0] >> r & 1 ? _mm512_maskz_loadu_ps(L->segm[u], src) : _mm512_setzero_ps();
            }
            /* seg 16: (w0, w1) hold columns 0..31, (w2, w3) 2..33; seg 8: (w0, w2) columns 0.., (w1, w3) 2.. */
            const __m512 p0 = w[0], p1 = L->seg == 16 ? w[1] : w[2], q0 = L->seg == 16 ? w[2] : w[1], q1 = w[3];
            d[r * 4 + 0] = (ct_wv)_mm512_permutex2var_ps(p0, i16, p1);
            d[r * 4 + 1] = (ct_wv)_mm512_permutex2var_ps(p0, _mm512_add_epi32(i16, one), p1);
            d[r * 4 + 2] = (ct_wv)_mm512_permutex2var_ps(q0, i16, q1);
            d[r * 4 + 3] = (ct_wv)_mm512_permutex2var_ps(q0, _mm512_add_epi32(i16, one), q1);
        }
        ct_wino_2d(m, 0, d, v); /* B^T d B */
        return;
    }
#endif
    int64_t base[16];
    for (int l = 0; l < 16; l++) base[l] = L->ibase[l] + cx;
    ct_wino_load(a, x, base, L->irows, L->icols, W, d);
    ct_wino_2d(m, 0, d, v); /* B^T d B */
}

/* One block of nb tiles, p0.. (np of them live): the input transform of channels c_lo..c_hi-1 into
 * V (if c_lo < c_hi); then, if m_lo < m_hi, the GEMMs of output channels m_lo..m_hi-1 (multiples of
 * CT_MR, or M) into Mo and their output transform into y. Inlined with m constant. */
static inline __attribute__((always_inline)) void ct_wino_block(int m, const ct_conv_geo *g, const float *x,
                                                              const float *u, const float *bias, const float *res,
                                                              int relu, float *y, float *V, float *Mo, int64_t p0,
                                                              int64_t np, int64_t nb, int64_t c_lo, int64_t c_hi,
                                                              int64_t m_lo, int64_t m_hi)
{
    const int a = m + 2, na = a * a;
    const int64_t C = g->C, M = g->M, OH = g->OH, OW = g->OW, OHW = OH * OW, per = ct_gemm_a_floats(M, C);
    const int64_t vs = C * nb + CT_WINO_PAD, ms = M * nb + CT_WINO_PAD; /* between the planes xi of V, of Mo */
    ct_wv d[16]; /* the output tiles, m x m x 16 lanes */
    /* the input transform, 16 tiles at a time, into lanes 16 (q % 2).. of V_xi's panel q / 2 (rows c) */
    for (int64_t q = 0; q < nb / 16; q++) {
        ct_wino_lanes L;
        ct_wino_lanes_init(m, g, p0 + q * 16, np - q * 16, &L);
        float *vq = V + (q / 2) * C * CT_NR + (q % 2) * 16;
        for (int64_t c = c_lo; c < c_hi; c++) {
            ct_wv v[36];
            ct_wino_input(m, g, x, c, &L, v);
            #pragma GCC unroll 16
            for (int xi = 0; xi < na; xi++) *(ct_wv *)(vq + xi * vs + c * CT_NR) = v[xi];
        }
    }
    /* the GEMMs: M_xi (M, nb) = U_xi V_xi, CT_KC rows of V's panel at a time */
    for (int xi = 0; xi < na; xi++)
        for (int64_t c0 = 0; c0 < C; c0 += CT_KC)
            for (int64_t q = 0; q < nb / CT_NR; q++) {
                const int64_t kc = C - c0 < CT_KC ? C - c0 : CT_KC;
                const float *bq = V + xi * vs + q * C * CT_NR + c0 * CT_NR;
                for (int64_t m0 = m_lo; m0 < m_hi; m0 += CT_MR) {
                    const int mr = M - m0 < CT_MR ? (int)(M - m0) : CT_MR;
                    float *cq = Mo + xi * ms + m0 * nb + q * CT_NR;
                    ct_gemm_uk_live(kc, u + xi * per + ct_gemm_a_at(m0, c0, M, C), bq, cq, cq + 16, nb, mr, c0 > 0,
                                    np - q * CT_NR);
                }
            }
    /* the output transform, 16 tiles at a time */
    for (int64_t q = 0; q * 16 < np; q++) {
        ct_wino_lanes L;
        ct_wino_lanes_init(m, g, p0 + q * 16, np - q * 16, &L);
        for (int64_t o = m_lo; o < m_hi; o++) {
            const float *mq = Mo + o * nb + q * 16;
            ct_wv blk[36], out[16];
            #pragma GCC unroll 16
            for (int e = 0; e < na; e++) blk[e] = *(const ct_wv *)(mq + e * ms);
            ct_wino_2d(m, 1, blk, out); /* A^T M A */
            const float b = bias ? bias[o] : 0.0f;
            #pragma GCC unroll 16
            for (int e = 0; e < m * m; e++) d[e] = out[e] + b;
#if defined(__AVX512F__)
            /* lane l's m x m outputs as one vector; row i (its elements i*m..) stored by one masked store */
            __m512 r16[16];
            #pragma GCC unroll 16
            for (int e = 0; e < 16; e++) r16[e] = e < m * m ? (__m512)d[e] : _mm512_setzero_ps();
            ct_transpose16(r16);
            #pragma GCC unroll 16
            for (int l = 0; l < 16; l++) {
                if (!L.live[l]) continue;
                float *dst = y + L.obase[l] + o * OHW;
                const float *rs = res ? res + L.obase[l] + o * OHW : 0;
                for (int i = 0; i < m; i++)
                    if (L.orows[l] >> i & 1) {
                        const __mmask16 mk = (__mmask16)(L.ocols[l] << (i * m));
                        __m512 v = r16[l];
                        if (rs) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, rs + i * (OW - m)));
                        if (relu) v = _mm512_max_ps(v, _mm512_setzero_ps());
                        _mm512_mask_storeu_ps(dst + i * (OW - m), mk, v);
                    }
            }
#else
            const float *os = (const float *)d;
            for (int l = 0; l < 16; l++) {
                if (!L.live[l]) continue;
                float *dst = y + L.obase[l] + o * OHW;
                for (int i = 0; i < m; i++)
                    for (int k = 0; k < m; k++)
                        if ((L.orows[l] >> i & 1) && (L.ocols[l] >> k & 1)) {
                            float v = os[(i * m + k) * 16 + l] + (res ? res[L.obase[l] + o * OHW + i * OW + k] : 0.0f);
                            dst[i * OW + k] = relu && v < 0.0f ? 0.0f : v;
                        }
            }
#endif
        }
    }
}

/* Per-thread V and M blocks, grown on demand and kept. */
static float *ct_wino_buf[CT_GEMM_MAX_THREADS];
static int64_t ct_wino_cap[CT_GEMM_MAX_THREADS];

/* y = conv(x, w) (+ bias) (+ res), then max(0, y) if relu, for a geometry ct_conv_winograd_ok accepts, on weights transformed by
 * ct_wino_pack_weights (same m) into u. */
static void ct_conv_winograd_packed(int m, const ct_conv_geo *g, const float *x, const float *u, const float *bias,
                                    const float *res, int relu, float *y)
{
    const int64_t na = (m + 2) * (m + 2), C = g->C, M = g->M;
    const int64_t P = g->N * ((g->OH + m - 1) / m) * ((g->OW + m - 1) / m);
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
    if (nt > CT_GEMM_MAX_THREADS) nt = CT_GEMM_MAX_THREADS;
#endif
    /* tiles per block: V and M of a block within half the L2 (512 KiB) where that leaves at least 64
     * tiles, so that the GEMMs read V, and the output transform M, from L2; else (many channels, where
     * reading all of U per block costs more than L2 misses) within about 16 MiB. The blocks are spread
     * evenly over the threads. */
    int64_t budget = ((int64_t)1 << 17) / (na * (C + M)) / CT_NR * CT_NR;
    if (budget < 64) budget = ((int64_t)1 << 22) / (na * (C + M)) / CT_NR * CT_NR;
    if (budget < CT_NR) budget = CT_NR;
    if (budget > CT_WINO_MAX_NB) budget = CT_WINO_MAX_NB;
    const int64_t per_thread = (P + nt - 1) / nt, rounds = (per_thread + budget - 1) / budget;
    const int64_t nb = ((per_thread + rounds - 1) / rounds + CT_NR - 1) / CT_NR * CT_NR;
    const int64_t nblocks = (P + nb - 1) / nb, mpanels = (M + CT_MR - 1) / CT_MR;
    /* fewer blocks than threads (a small map at batch 1): the threads share each block, splitting its
     * channels in the input transform, its output channels in the GEMMs and the output transform */
    const int coop = nblocks < nt && mpanels >= nt;
    if (!coop && nt > nblocks) nt = (int)nblocks;
    const int64_t need = na * (C * nb + M * nb + 2 * CT_WINO_PAD);
    ct_grow_thread_bufs(ct_wino_buf, ct_wino_cap, coop ? 1 : nt, need);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *V = ct_wino_buf[coop ? 0 : t], *Mo = V + na * (C * nb + CT_WINO_PAD);
        const int64_t c_lo = coop ? C * t / nt : 0, c_hi = coop ? C * (t + 1) / nt : C;
        const int64_t m_lo = coop ? mpanels * t / nt * CT_MR : 0;
        const int64_t m_hi = coop && t + 1 < nt ? mpanels * (t + 1) / nt * CT_MR : M;
        for (int64_t bi = coop ? 0 : t; bi < nblocks; bi += coop ? 1 : nt) {
            const int64_t p0 = bi * nb, np = P - p0 < nb ? P - p0 : nb;
            /* the input transform, then (all of V written) the GEMMs and the output transform */
            if ((CT_WINO_TILES & 16) && m == 4) ct_wino_block(4, g, x, u, 0, 0, 0, y, V, Mo, p0, np, nb, c_lo, c_hi, 0, 0);
            else if (CT_WINO_TILES & 4) ct_wino_block(2, g, x, u, 0, 0, 0, y, V, Mo, p0, np, nb, c_lo, c_hi, 0, 0);
            if (coop) {
                #pragma omp barrier
            }
            if ((CT_WINO_TILES & 16) && m == 4) ct_wino_block(4, g, x, u, bias, res, relu, y, V, Mo, p0, np, nb, 0, 0, m_lo, m_hi);
            else if (CT_WINO_TILES & 4) ct_wino_block(2, g, x, u, bias, res, relu, y, V, Mo, p0, np, nb, 0, 0, m_lo, m_hi);
            if (coop) {
                #pragma omp barrier
            }
        }
    }
}

/* The same, transforming the weights first into u (ct_wino_u_floats(m, M, C) floats of scratch). */
static void ct_conv_winograd(int m, const ct_conv_geo *g, const float *x, const float *w, const float *bias,
                             const float *res, int relu, float *y, float *u)
{
    ct_wino_pack_weights(m, w, g->M, g->C, 0, u);
    ct_conv_winograd_packed(m, g, x, u, bias, res, relu, y);
}

/* The geometry of a stride-1 convolution's input gradient as a forward convolution of dY. */
static ct_conv_geo ct_conv_grad_input_geo(const ct_conv_geo *g)
{
    ct_conv_geo r = {.N = g->N, .C = g->M, .H = g->OH, .W = g->OW, .M = g->C, .OH = g->H, .OW = g->W, .G = 1,
                     .kh = g->kh, .kw = g->kw, .sh = 1, .sw = 1, .ph = (g->kh - 1) * g->dh - g->ph,
                     .pw = (g->kw - 1) * g->dw - g->pw, .dh = g->dh, .dw = g->dw};
    return r;
}

/* dX (N, C, H, W) of a convolution g (3x3, stride 1) as the Winograd convolution of dY with the flipped
 * kernel; u: ct_wino_u_floats(m, C, M) floats of scratch. */
static void ct_conv_grad_input_winograd(int m, const ct_conv_geo *g, const float *dy, const float *w, float *dx,
                                        float *u)
{
    const ct_conv_geo r = ct_conv_grad_input_geo(g);
    ct_wino_pack_weights(m, w, g->C, g->M, 1, u);
    ct_conv_winograd_packed(m, &r, dy, u, 0, 0, 0, dx);
}

/* ct_conv_grad_input_winograd with m fixed: the GEMM engine's fn(&geometry, x0, x1, y0, scratch) form. */
static void ct_conv_grad_input_winograd2(const ct_conv_geo *g, const float *dy, const float *w, float *dx, float *u)
{
    ct_conv_grad_input_winograd(2, g, dy, w, dx, u);
}

static void ct_conv_grad_input_winograd4(const ct_conv_geo *g, const float *dy, const float *w, float *dx, float *u)
{
    ct_conv_grad_input_winograd(4, g, dy, w, dx, u);
}

/* ------------------------------------------------------------ Winograd weight gradients */

/* v[xi] = (A dY A^T)_xi for the 16 lanes' m x m tiles of dY's channel o (zero past the output's edge
 * and for lanes that are not live). */
static inline __attribute__((always_inline)) void ct_wino_dy(int m, const ct_conv_geo *g, const float *dy, int64_t o,
                                                           const ct_wino_lanes *L, ct_wv *v)
{
    const int64_t co = o * g->OH * g->OW;
    ct_wv d[16];
    int64_t base[16];
    for (int l = 0; l < 16; l++) base[l] = L->obase[l] + co;
    ct_wino_load(m, dy, base, L->orows, L->ocols, g->OW, d);
    ct_wino_2d(m, 2, d, v); /* A dY A^T */
}

/* Lane l of st[0..15][xi] as 16 floats: the first 8 to lo + l*ld, the other 8 to hi + l*ld (16 tiles x
 * 16 channels turned into rows of channels per tile). */
static inline __attribute__((always_inline)) void ct_wino_store_t(ct_wv st[16][36], int xi, float *lo, float *hi,
                                                                int64_t ld)
{
#if defined(__AVX512F__)
    __m512 r16[16];
    #pragma GCC unroll 16
    for (int cc = 0; cc < 16; cc++) r16[cc] = (__m512)st[cc][xi];
    ct_transpose16(r16);
    #pragma GCC unroll 16
    for (int l = 0; l < 16; l++) {
        _mm256_storeu_ps(lo + l * ld, _mm512_castps512_ps256(r16[l]));
        _mm256_storeu_ps(hi + l * ld, _mm512_extractf32x8_ps(r16[l], 1));
    }
#else
    #pragma GCC unroll 16
    for (int l = 0; l < 16; l++)
        #pragma GCC unroll 16
        for (int cc = 0; cc < 16; cc++) (cc < 8 ? lo : hi - 8)[l * ld + cc] = st[cc][xi][l];
#endif
}

/* Per-thread buffers of the weight gradient, grown on demand and kept. */
static float *ct_winow_buf[CT_GEMM_MAX_THREADS];
static int64_t ct_winow_cap[CT_GEMM_MAX_THREADS];


/* One block of the weight gradient: tiles p0.. (np of them live) transformed into V and U, and
 * dU += the block's GEMMs. Inlined with m constant. */
static inline __attribute__((always_inline)) void ct_winow_block(int m, const ct_conv_geo *g, const float *dy,
                                                               const float *x, float *V, float *U, float *dU,
                                                               int64_t p0, int64_t np, int64_t nb)
{
    const int a = m + 2, na = a * a;
    const int64_t C = g->C, M = g->M, Cp = (C + 31) / 32 * 32, Mp = (M + 15) / 16 * 16;
    const int64_t vs = Cp * nb + CT_WINO_PAD, us = Mp * nb + CT_WINO_PAD, ds = Mp * Cp + CT_WINO_PAD;
    ct_wv stage[16][36];
    for (int64_t q = 0; q < nb / 16; q++) {
        ct_wino_lanes L;
        ct_wino_lanes_init(m, g, p0 + q * 16, np - q * 16, &L);
        /* V_xi rows q*16.. (tiles), 16 channels at a time */
        for (int64_t c0 = 0; c0 < Cp; c0 += 16) {
            for (int cc = 0; cc < 16; cc++) {
                if (c0 + cc < C) ct_wino_input(m, g, x, c0 + cc, &L, stage[cc]);
                else
                    for (int xi = 0; xi < na; xi++) stage[cc][xi] = (ct_wv){0};
            }
            for (int xi = 0; xi < na; xi++) {
                float *dst = V + xi * vs + (c0 / 32) * nb * 32 + q * 16 * 32 + c0 % 32;
                ct_wino_store_t(stage, xi, dst, dst + 8, 32);
            }
        }
        /* dY'_xi rows q*16.. (tiles), 16 output channels (two A panels) at a time */
        for (int64_t o0 = 0; o0 < Mp; o0 += 16) {
            for (int oo = 0; oo < 16; oo++) {
                if (o0 + oo < M) ct_wino_dy(m, g, dy, o0 + oo, &L, stage[oo]);
                else
                    for (int xi = 0; xi < na; xi++) stage[oo][xi] = (ct_wv){0};
            }
            for (int xi = 0; xi < na; xi++) {
                float *lo = U + xi * us + (o0 / 8) * nb * 8 + q * 16 * 8;
                ct_wino_store_t(stage, xi, lo, lo + nb * 8, 8);
            }
        }
    }
    /* dU_xi (Mp, Cp) += dY'_xi V_xi over this block's tiles */
    for (int xi = 0; xi < na; xi++)
        for (int64_t cp = 0; cp < Cp / 32; cp++) {
            const float *bq = V + xi * vs + cp * nb * 32;
            for (int64_t mp = 0; mp < Mp / CT_MR; mp++) {
                float *cq = dU + xi * ds + mp * CT_MR * Cp + cp * 32;
                ct_gemm_uk(nb, U + xi * us + mp * nb * CT_MR, bq, cq, cq + 16, Cp, CT_MR, 1, 0);
            }
        }
}

/* dW (M, C, 3, 3) of a convolution g that ct_conv_winograd_ok accepts, as Winograd F(m x m, 3x3) run
 * backwards: by linearity of y_t = A^T [U . V_t] A, dU = sum over tiles t of (A dY_t A^T) . V_t and
 * dW = G^T dU G. Per block of tiles a thread transforms the input patches (V_t, as packed B panels:
 * rows = tiles, 32 channels wide) and the dY tiles (as packed A panels: rows = tiles, CT_MR output
 * channels wide), both through 16x16 transposes, and accumulates the (m + 2)^2 GEMMs
 * dU_xi (M, C) += dY'_xi (M, tiles) V_xi (tiles, C) into its own dU; then the threads' dU are summed
 * (in double) and turned into dW. */
static void ct_conv_grad_weight_winograd(int m, const ct_conv_geo *g, const float *dy, const float *x, float *dw)
{
    const int a = m + 2, na = a * a;
    const int64_t C = g->C, M = g->M, Cp = (C + 31) / 32 * 32, Mp = (M + 15) / 16 * 16;
    /* tiles per block (the depth of its GEMMs): V and U of a block within half the L2 (512 KiB), 64 to 128 */
    int64_t nb = ((int64_t)1 << 17) / (na * (Cp + Mp)) / 16 * 16;
    nb = nb < 64 ? 128 : nb > 128 ? 128 : nb;
    const int64_t P = g->N * ((g->OH + m - 1) / m) * ((g->OW + m - 1) / m), nblocks = (P + nb - 1) / nb;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
    if (nt > CT_GEMM_MAX_THREADS) nt = CT_GEMM_MAX_THREADS;
#endif
    if (nt > nblocks) nt = (int)nblocks;
    const int64_t vs = Cp * nb + CT_WINO_PAD, us = Mp * nb + CT_WINO_PAD, ds = Mp * Cp + CT_WINO_PAD;
    const int64_t need = na * (vs + us + ds);
    ct_grow_thread_bufs(ct_winow_buf, ct_winow_cap, nt, need);
    #pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *V = ct_winow_buf[t], *U = V + na * vs, *dU = U + na * us;
        memset(dU, 0, sizeof(float) * (size_t)(na * ds));
        for (int64_t bi = t; bi < nblocks; bi += nt) {
            const int64_t p0 = bi * nb, np = P - p0 < nb ? P - p0 : nb;
            if ((CT_WINO_TILES & 16) && m == 4) ct_winow_block(4, g, dy, x, V, U, dU, p0, np, nb);
            else if (CT_WINO_TILES & 4) ct_winow_block(2, g, dy, x, V, U, dU, p0, np, nb);
        }
        #pragma omp barrier
        /* dW = G^T (sum of the threads' dU) G, each thread a slice of the (o, c) pairs */
        const int64_t e0 = M * C * t / nt, e1 = M * C * (t + 1) / nt;
        for (int64_t e = e0; e < e1; e++) {
            const int64_t o = e / C, c = e % C;
            double S[36], T3[6][3];
            for (int xi = 0; xi < na; xi++) {
                double sum = 0.0;
                for (int u = 0; u < nt; u++) sum += ct_winow_buf[u][na * (vs + us) + xi * ds + o * Cp + c];
                S[xi] = sum;
            }
            for (int i = 0; i < a; i++) ct_wino_gt(m, S + i * a, T3[i]); /* rows of S G */
            for (int j = 0; j < 3; j++) {
                double col[6], w3[3];
                for (int i = 0; i < a; i++) col[i] = T3[i][j];
                ct_wino_gt(m, col, w3);
                for (int i = 0; i < 3; i++) dw[(o * C + c) * 9 + i * 3 + j] = (float)w3[i];
            }
        }
    }
}

/* ct_conv_grad_weight_winograd with m fixed: the GEMM engine's fn(&geometry, x0, x1, y0, scratch) form. */
static void ct_conv_grad_weight_winograd2(const ct_conv_geo *g, const float *dy, const float *x, float *dw,
                                          float *unused)
{
    (void)unused;
    ct_conv_grad_weight_winograd(2, g, dy, x, dw);
}

static void ct_conv_grad_weight_winograd4(const ct_conv_geo *g, const float *dy, const float *x, float *dw,
                                          float *unused)
{
    (void)unused;
    ct_conv_grad_weight_winograd(4, g, dy, x, dw);
}

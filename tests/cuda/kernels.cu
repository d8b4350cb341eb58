/* kernels.cu — test kernels for the CUDA emulation, in the subset of CUDA C++ and C17
 * that builds both with nvcc (sm_80/sm_90) and with gcc against runtime/cuda_emu. Each
 * tk_test_* runs one kernel on awkward sizes and returns its number of mismatches. */
#include "ct_cuda.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TK_CHECK(cond, ...) \
  do { \
    if (!(cond)) { \
      fprintf(stderr, "%s:%d: check failed: ", __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__); \
      fputc('\n', stderr); \
      fails++; \
    } \
  } while (0)

static const int tk_sizes[] = {1, 3, 7, 13, 1000, 1025};
#define TK_NSIZES ((int)(sizeof tk_sizes / sizeof tk_sizes[0]))

static float tk_rand(unsigned *s) {
  *s = *s * 1664525u + 1013904223u;
  return (float)((*s >> 8) & 0xffffu) / 65536.0f - 0.5f;
}

static float *tk_host_rand(size_t n, unsigned seed) {
  float *p = (float *)malloc((n ? n : 1) * sizeof(float));
  for (size_t i = 0; i < n; i++) p[i] = tk_rand(&seed);
  return p;
}

static float *tk_to_device(const float *h, size_t n) {
  float *d = NULL;
  CT_CUDA_CHECK(cudaMalloc((void **)&d, n * sizeof(float)));
  CT_CUDA_CHECK(cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

static int tk_close(float got, double want, double rtol, double atol) {
  return fabs((double)got - want) <= atol + rtol * fabs(want);
}

/* ---- device helpers ---- */
static __device__ __forceinline__ float tk_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
static __device__ __forceinline__ float tk_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, o));
  return __shfl_sync(0xffffffffu, v, 0);
}
/* Block-wide sum or max; every thread gets the result. red: >= 32 floats of shared memory. */
static __device__ float tk_block_reduce(float v, float *red, int is_max) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
  v = is_max ? tk_warp_max(v) : tk_warp_sum(v);
  if (lane == 0) red[warp] = v;
  __syncthreads();
  v = lane < nw ? red[lane] : (is_max ? -INFINITY : 0.0f);
  v = is_max ? tk_warp_max(v) : tk_warp_sum(v);
  __syncthreads(); /* red is reused by the next call */
  return v;
}

/* ---- kernels ---- */
__global__ void tk_add(const float *a, const float *b, float *c, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) c[i] = a[i] + b[i];
}

#define TK_RED_THREADS 256
/* partial[blockIdx.x] = sum of x over a grid-stride loop: warp shuffles then shared memory. */
__global__ void tk_reduce_sum(const float *x, float *partial, int n) {
  CT_SHARED(float, warp_sums, TK_RED_THREADS / 32);
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += x[i];
  v = tk_warp_sum(v);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x / 32) ? warp_sums[lane] : 0.0f;
    v = tk_warp_sum(v);
    if (lane == 0) partial[blockIdx.x] = v;
  }
}

/* The classic shared-memory tree: one __syncthreads per halving step. */
__global__ void tk_reduce_tree(const float *x, float *partial, int n) {
  CT_SHARED(float, s, TK_RED_THREADS);
  int tid = threadIdx.x;
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + tid; i < n; i += gridDim.x * blockDim.x) v += x[i];
  s[tid] = v;
  __syncthreads();
  for (int h = blockDim.x / 2; h > 32; h >>= 1) {
    if (tid < h) s[tid] += s[tid + h];
    __syncthreads();
  }
  if (tid < 32) {
    v = tk_warp_sum(s[tid] + s[tid + 32]);
    if (tid == 0) partial[blockIdx.x] = v;
  }
}

#define TK_TILE 16
/* C[M,N] = A[M,K] B[K,N], row-major, 16x16 tiles staged in shared memory. */
__global__ void tk_matmul(const float *A, const float *B, float *C, int M, int N, int K) {
  CT_SHARED(float, As, TK_TILE * TK_TILE);
  CT_SHARED(float, Bs, TK_TILE * TK_TILE);
  int tx = threadIdx.x, ty = threadIdx.y;
  int row = blockIdx.y * TK_TILE + ty, col = blockIdx.x * TK_TILE + tx;
  float acc = 0.0f;
  for (int t = 0; t < K; t += TK_TILE) {
    As[ty * TK_TILE + tx] = (row < M && t + tx < K) ? A[(size_t)row * K + t + tx] : 0.0f;
    Bs[ty * TK_TILE + tx] = (t + ty < K && col < N) ? B[(size_t)(t + ty) * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TK_TILE; k++) acc += As[ty * TK_TILE + k] * Bs[k * TK_TILE + tx];
    __syncthreads();
  }
  if (row < M && col < N) C[(size_t)row * N + col] = acc;
}

/* y[row,:] = softmax(x[row,:]); one block per row. */
__global__ void tk_softmax(const float *x, float *y, int rows, int cols) {
  CT_SHARED(float, red, 32);
  int row = blockIdx.x;
  if (row >= rows) return;
  const float *xr = x + (size_t)row * cols;
  float *yr = y + (size_t)row * cols;
  float m = -INFINITY;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
  m = tk_block_reduce(m, red, 1);
  float s = 0.0f;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) s += __expf(xr[c] - m);
  s = tk_block_reduce(s, red, 0);
  float inv = 1.0f / s;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = __expf(xr[c] - m) * inv;
}

/* y[i] = y[i] * scale + x[i]: replayed from a graph. */
__global__ void tk_axpby(float *y, const float *x, float scale, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = y[i] * scale + x[i];
}

/* ---- tests ---- */
static int tk_test_add(void) {
  int fails = 0;
  for (int si = 0; si < TK_NSIZES; si++) {
    int n = tk_sizes[si];
    float *a = tk_host_rand(n, 1u + n), *b = tk_host_rand(n, 2u + n), *c = (float *)malloc(n * sizeof(float));
    float *da = tk_to_device(a, n), *db = tk_to_device(b, n), *dc = NULL;
    CT_CUDA_CHECK(cudaMalloc((void **)&dc, n * sizeof(float)));
    CT_CUDA_CHECK(CT_LAUNCH(tk_add, (n + 127) / 128, 128, 0, 0, da, db, dc, n));
    CT_CUDA_CHECK(cudaMemcpy(c, dc, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) TK_CHECK(c[i] == a[i] + b[i], "add n=%d i=%d: %g != %g", n, i, c[i], a[i] + b[i]);
    CT_CUDA_CHECK(cudaFree(da));
    CT_CUDA_CHECK(cudaFree(db));
    CT_CUDA_CHECK(cudaFree(dc));
    free(a); free(b); free(c);
  }
  return fails;
}

typedef void (*tk_reduce_kernel)(const float *, float *, int);

static int tk_reduce_one(int tree, int n) {
  int fails = 0;
  float *x = tk_host_rand(n, 7u + n);
  double want = 0.0, mag = 0.0;
  for (int i = 0; i < n; i++) { want += x[i]; mag += fabs(x[i]); }
  int blocks = (n + TK_RED_THREADS - 1) / TK_RED_THREADS;
  if (blocks > 256) blocks = 256;
  float *dx = tk_to_device(x, n), *dpart = NULL, *dout = NULL, got = 0.0f;
  CT_CUDA_CHECK(cudaMalloc((void **)&dpart, blocks * sizeof(float)));
  CT_CUDA_CHECK(cudaMalloc((void **)&dout, sizeof(float)));
  if (tree) {
    CT_CUDA_CHECK(CT_LAUNCH(tk_reduce_tree, blocks, TK_RED_THREADS, 0, 0, dx, dpart, n));
    CT_CUDA_CHECK(CT_LAUNCH(tk_reduce_tree, 1, TK_RED_THREADS, 0, 0, dpart, dout, blocks));
  } else {
    CT_CUDA_CHECK(CT_LAUNCH(tk_reduce_sum, blocks, TK_RED_THREADS, 0, 0, dx, dpart, n));
    CT_CUDA_CHECK(CT_LAUNCH(tk_reduce_sum, 1, TK_RED_THREADS, 0, 0, dpart, dout, blocks));
  }
  CT_CUDA_CHECK(cudaMemcpy(&got, dout, sizeof(float), cudaMemcpyDeviceToHost));
  TK_CHECK(tk_close(got, want, 0.0, 1e-6 * mag + 1e-6), "%s n=%d: %.9g vs double %.9g", tree ? "reduce_tree" : "reduce_sum",
           n, got, want);
  CT_CUDA_CHECK(cudaFree(dx));
  CT_CUDA_CHECK(cudaFree(dpart));
  CT_CUDA_CHECK(cudaFree(dout));
  free(x);
  return fails;
}

static int tk_test_reduce(void) {
  int fails = 0;
  for (int si = 0; si < TK_NSIZES; si++) fails += tk_reduce_one(0, tk_sizes[si]) + tk_reduce_one(1, tk_sizes[si]);
  fails += tk_reduce_one(0, 1 << 20);
  fails += tk_reduce_one(1, 1 << 20);
  return fails;
}

static int tk_test_matmul(void) {
  static const int shapes[][3] = {{1, 1, 1}, {3, 7, 13}, {13, 13, 1025}, {1000, 3, 7}, {7, 1025, 3}, {33, 17, 40}};
  int fails = 0;
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
    int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
    float *A = tk_host_rand((size_t)M * K, 11u + s), *B = tk_host_rand((size_t)K * N, 12u + s);
    float *C = (float *)malloc((size_t)M * N * sizeof(float));
    float *dA = tk_to_device(A, (size_t)M * K), *dB = tk_to_device(B, (size_t)K * N), *dC = NULL;
    CT_CUDA_CHECK(cudaMalloc((void **)&dC, (size_t)M * N * sizeof(float)));
    CT_CUDA_CHECK(CT_LAUNCH(tk_matmul, CT_DIM3((N + TK_TILE - 1) / TK_TILE, (M + TK_TILE - 1) / TK_TILE, 1),
                            CT_DIM3(TK_TILE, TK_TILE, 1), 0, 0, dA, dB, dC, M, N, K));
    CT_CUDA_CHECK(cudaMemcpy(C, dC, (size_t)M * N * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double want = 0.0, mag = 0.0;
        for (int k = 0; k < K; k++) {
          want += (double)A[(size_t)i * K + k] * B[(size_t)k * N + j];
          mag += fabs((double)A[(size_t)i * K + k] * B[(size_t)k * N + j]);
        }
        TK_CHECK(tk_close(C[(size_t)i * N + j], want, 1e-5, 1e-6 * mag + 1e-7), "matmul %dx%dx%d [%d,%d]: %g vs %g",
                 M, N, K, i, j, C[(size_t)i * N + j], want);
        if (fails > 10) return fails;
      }
    CT_CUDA_CHECK(cudaFree(dA));
    CT_CUDA_CHECK(cudaFree(dB));
    CT_CUDA_CHECK(cudaFree(dC));
    free(A); free(B); free(C);
  }
  return fails;
}

static int tk_test_softmax(void) {
  static const int shapes[][2] = {{1, 1}, {3, 1025}, {7, 13}, {13, 1000}, {1000, 7}, {1025, 3}};
  int fails = 0;
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
    int rows = shapes[s][0], cols = shapes[s][1];
    size_t n = (size_t)rows * cols;
    float *x = tk_host_rand(n, 21u + s), *y = (float *)malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] *= 20.0f;
    float *dx = tk_to_device(x, n), *dy = NULL;
    CT_CUDA_CHECK(cudaMalloc((void **)&dy, n * sizeof(float)));
    CT_CUDA_CHECK(CT_LAUNCH(tk_softmax, rows, 128, 0, 0, dx, dy, rows, cols));
    CT_CUDA_CHECK(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int r = 0; r < rows; r++) {
      double m = -INFINITY, sum = 0.0;
      for (int c = 0; c < cols; c++) m = fmax(m, x[(size_t)r * cols + c]);
      for (int c = 0; c < cols; c++) sum += exp(x[(size_t)r * cols + c] - m);
      for (int c = 0; c < cols; c++) {
        double want = exp(x[(size_t)r * cols + c] - m) / sum;
        TK_CHECK(tk_close(y[(size_t)r * cols + c], want, 1e-5, 1e-7), "softmax %dx%d [%d,%d]: %g vs %g", rows, cols,
                 r, c, y[(size_t)r * cols + c], want);
        if (fails > 10) return fails;
      }
    }
    CT_CUDA_CHECK(cudaFree(dx));
    CT_CUDA_CHECK(cudaFree(dy));
    free(x); free(y);
  }
  return fails;
}

/* A graph of {H2D copy of pinned x, y = 2y + x} captured once and replayed 3 times. */
static int tk_test_graph(void) {
  int fails = 0;
  for (int si = 0; si < TK_NSIZES; si++) {
    int n = tk_sizes[si];
    float *xr = tk_host_rand(n, 31u + n), *y0 = tk_host_rand(n, 32u + n), *y = (float *)malloc(n * sizeof(float));
    float *x = NULL, *dx = NULL, *dy = tk_to_device(y0, n);
    CT_CUDA_CHECK(cudaMallocHost((void **)&x, n * sizeof(float))); /* graphs copy from pinned memory only */
    memcpy(x, xr, n * sizeof(float));
    CT_CUDA_CHECK(cudaMalloc((void **)&dx, n * sizeof(float)));
    cudaStream_t st;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    cudaEvent_t e0, e1;
    CT_CUDA_CHECK(cudaStreamCreate(&st));
    CT_CUDA_CHECK(cudaEventCreate(&e0));
    CT_CUDA_CHECK(cudaEventCreate(&e1));
    CT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    CT_CUDA_CHECK(cudaMemcpyAsync(dx, x, n * sizeof(float), cudaMemcpyHostToDevice, st));
    CT_CUDA_CHECK(CT_LAUNCH(tk_axpby, (n + 255) / 256, 256, 0, st, dy, dx, 2.0f, n));
    CT_CUDA_CHECK(cudaStreamEndCapture(st, &g));
    CT_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    /* capturing executes nothing */
    CT_CUDA_CHECK(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) TK_CHECK(y[i] == y0[i], "graph n=%d: capture modified y[%d]", n, i);
    CT_CUDA_CHECK(cudaEventRecord(e0, st));
    for (int r = 0; r < 3; r++) CT_CUDA_CHECK(cudaGraphLaunch(ge, st));
    CT_CUDA_CHECK(cudaEventRecord(e1, st));
    CT_CUDA_CHECK(cudaStreamSynchronize(st));
    float ms = -1.0f;
    CT_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    TK_CHECK(ms >= 0.0f, "graph: elapsed %g ms", ms);
    CT_CUDA_CHECK(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) {
      float want = y0[i];
      for (int r = 0; r < 3; r++) want = want * 2.0f + x[i];
      TK_CHECK(y[i] == want, "graph n=%d i=%d: %g vs %g", n, i, y[i], want);
    }
    CT_CUDA_CHECK(cudaGraphExecDestroy(ge));
    CT_CUDA_CHECK(cudaGraphDestroy(g));
    CT_CUDA_CHECK(cudaEventDestroy(e0));
    CT_CUDA_CHECK(cudaEventDestroy(e1));
    CT_CUDA_CHECK(cudaStreamDestroy(st));
    CT_CUDA_CHECK(cudaFree(dx));
    CT_CUDA_CHECK(cudaFree(dy));
    CT_CUDA_CHECK(cudaFreeHost(x));
    free(xr); free(y0); free(y);
  }
  return fails;
}

/* cuBLAS: column-major C = alpha op(A) op(B) + beta C against a double reference, padded
 * leading dimensions, all transposes, plain / Ex / strided-batched / TF32. */
static int tk_gemm_ref_check(const float *A, const float *B, const float *C0, const float *C, int ta, int tb, int m,
                             int n, int k, int lda, int ldb, int ldc, float alpha, float beta, double rtol,
                             const char *what) {
  int fails = 0;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      double acc = 0.0, mag = 0.0;
      for (int p = 0; p < k; p++) {
        double a = ta ? A[(size_t)i * lda + p] : A[(size_t)p * lda + i];
        double b = tb ? B[(size_t)p * ldb + j] : B[(size_t)j * ldb + p];
        acc += a * b;
        mag += fabs(a * b);
      }
      double want = alpha * acc + beta * C0[(size_t)j * ldc + i];
      TK_CHECK(tk_close(C[(size_t)j * ldc + i], want, 1e-5, rtol * mag + 1e-6), "%s ta=%d tb=%d %dx%dx%d (%d,%d): %g vs %g",
               what, ta, tb, m, n, k, i, j, C[(size_t)j * ldc + i], want);
      if (fails > 5) return fails;
    }
  return fails;
}

static int tk_test_cublas(void) {
  static const int shapes[][3] = {{1, 1, 1}, {3, 7, 13}, {13, 1, 1000}, {7, 13, 3}, {40, 33, 17}};
  int fails = 0;
  cublasHandle_t h;
  cudaStream_t st;
  CT_CUBLAS_CHECK(cublasCreate(&h));
  CT_CUDA_CHECK(cudaStreamCreate(&st));
  CT_CUBLAS_CHECK(cublasSetStream(h, st));
  for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
    for (int mode = 0; mode < 4; mode++) { /* 0 Sgemm, 1 GemmEx, 2 strided batched, 3 batched Ex TF32 */
      int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ta = (s + mode) & 1, tb = (s + mode) >> 1 & 1;
      int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3, batch = mode >= 2 ? 3 : 1;
      long long sa = (long long)lda * (ta ? m : k), sb = (long long)ldb * (tb ? k : n), sc = (long long)ldc * n;
      float alpha = 1.5f, beta = mode == 1 ? 0.0f : -0.5f;
      float *A = tk_host_rand(sa * batch, 41u + s), *B = tk_host_rand(sb * batch, 42u + s);
      float *C0 = tk_host_rand(sc * batch, 43u + s), *C = (float *)malloc(sc * batch * sizeof(float));
      float *dA = tk_to_device(A, sa * batch), *dB = tk_to_device(B, sb * batch), *dC = tk_to_device(C0, sc * batch);
      cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
      if (mode == 0)
        CT_CUBLAS_CHECK(cublasSgemm(h, oa, ob, m, n, k, &alpha, dA, lda, dB, ldb, &beta, dC, ldc));
      else if (mode == 1)
        CT_CUBLAS_CHECK(cublasGemmEx(h, oa, ob, m, n, k, &alpha, dA, CUDA_R_32F, lda, dB, CUDA_R_32F, ldb, &beta, dC,
                                     CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
      else if (mode == 2)
        CT_CUBLAS_CHECK(cublasSgemmStridedBatched(h, oa, ob, m, n, k, &alpha, dA, lda, sa, dB, ldb, sb, &beta, dC, ldc,
                                                  sc, batch));
      else
        CT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, oa, ob, m, n, k, &alpha, dA, CUDA_R_32F, lda, sa, dB,
                                                   CUDA_R_32F, ldb, sb, &beta, dC, CUDA_R_32F, ldc, sc, batch,
                                                   CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT));
      CT_CUDA_CHECK(cudaStreamSynchronize(st));
      CT_CUDA_CHECK(cudaMemcpy(C, dC, sc * batch * sizeof(float), cudaMemcpyDeviceToHost));
      for (int b = 0; b < batch; b++)
        fails += tk_gemm_ref_check(A + sa * b, B + sb * b, C0 + sc * b, C + sc * b, ta, tb, m, n, k, lda, ldb, ldc,
                                   alpha, beta, mode == 3 ? 2e-3 : 1e-6, mode == 0 ? "Sgemm" : mode == 1 ? "GemmEx"
                                   : mode == 2 ? "SgemmStridedBatched" : "GemmStridedBatchedEx(TF32)");
      CT_CUDA_CHECK(cudaFree(dA));
      CT_CUDA_CHECK(cudaFree(dB));
      CT_CUDA_CHECK(cudaFree(dC));
      free(A); free(B); free(C0); free(C);
    }
  CT_CUDA_CHECK(cudaStreamDestroy(st));
  CT_CUBLAS_CHECK(cublasDestroy(h));
  return fails;
}

typedef struct tk_test { const char *name; int (*fn)(void); } tk_test;
static const tk_test tk_tests[] = {
  {"add", tk_test_add},         {"reduce", tk_test_reduce}, {"matmul", tk_test_matmul},
  {"softmax", tk_test_softmax}, {"graph", tk_test_graph},   {"cublas", tk_test_cublas},
};
#define TK_NTESTS ((int)(sizeof tk_tests / sizeof tk_tests[0]))

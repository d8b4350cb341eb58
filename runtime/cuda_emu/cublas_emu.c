/* cublas_emu.c — the cuBLAS subset of the CUDA emulation: column-major GEMMs (plain,
 * Ex, strided-batched) mapped onto OpenBLAS cblas_sgemm, with cuBLAS's argument checks,
 * device-pointer extent checks, optional TF32 input rounding and graph capture. */
#include "cuda_emu.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

struct ct_emu_cublas { cudaStream_t stream; cublasMath_t math; };

typedef struct gemm_args {
  cublasOperation_t ta, tb;
  int m, n, k, lda, ldb, ldc, batch;
  long long sa, sb, sc;
  float alpha, beta;
  const float *A, *B;
  float *C;
  bool tf32;
  const char *what;
} gemm_args;

const char *cublasGetStatusString(cublasStatus_t s) {
  switch (s) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
  case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
  case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
  case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
  case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
  if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
  *handle = calloc(1, sizeof **handle);
  return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  free(handle);
  return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}
/* The workspace must be device memory of at least the size given (or NULL with size 0); the emulator
 * needs none, but checks it as cuBLAS would need it. */
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t size) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (size && (!workspace || !ct_emu_device_range_ok(workspace, size))) {
    ct_emu_report("cublasSetWorkspace: %p (%zu bytes) is not device memory", workspace, size);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_DEFAULT_MATH && mode != CUBLAS_TENSOR_OP_MATH && mode != CUBLAS_PEDANTIC_MATH &&
      mode != CUBLAS_TF32_TENSOR_OP_MATH)
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

/* Rounds a float to TF32 (10 explicit mantissa bits, round to nearest even), as the
 * tensor cores read their inputs. */
static float tf32_round(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {
    u += 0xfffu + ((u >> 13) & 1u);
    u &= ~0x1fffu;
  }
  memcpy(&x, &u, 4);
  return x;
}

/* A column-major rows x cols matrix with leading dimension ld spans this many floats. */
static size_t extent(int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return 0;
  return (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
}

static float *tf32_copy(const float *p, int rows, int cols, int ld) {
  size_t n = extent(rows, cols, ld);
  float *c = malloc((n ? n : 1) * sizeof *c);
  if (!c) return NULL;
  for (size_t i = 0; i < n; i++) c[i] = tf32_round(p[i]);
  return c;
}

static void gemm_exec(void *payload) {
  const gemm_args *g = payload;
  int ar = g->ta == CUBLAS_OP_N ? g->m : g->k, ac = g->ta == CUBLAS_OP_N ? g->k : g->m;
  int br = g->tb == CUBLAS_OP_N ? g->k : g->n, bc = g->tb == CUBLAS_OP_N ? g->n : g->k;
  for (int b = 0; b < g->batch; b++) {
    const float *A = g->A + (ptrdiff_t)b * g->sa, *B = g->B + (ptrdiff_t)b * g->sb;
    float *C = g->C + (ptrdiff_t)b * g->sc;
    float *ta = NULL, *tb = NULL;
    if (g->tf32) {
      ta = tf32_copy(A, ar, ac, g->lda);
      tb = tf32_copy(B, br, bc, g->ldb);
      if (ta && tb) { A = ta; B = tb; }
    }
    if (g->k == 0) { /* cblas may skip beta scaling corner cases: do it explicitly */
      for (int j = 0; j < g->n; j++)
        for (int i = 0; i < g->m; i++) {
          float *c = &C[(size_t)j * g->ldc + i];
          *c = g->beta == 0.0f ? 0.0f : g->beta * *c;
        }
    } else if (g->m > 0 && g->n > 0) {
      cblas_sgemm(CblasColMajor, g->ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                  g->tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, g->m, g->n, g->k, g->alpha, A, g->lda, B,
                  g->ldb, g->beta, C, g->ldc);
    }
    free(ta);
    free(tb);
  }
}

/* Checks like cuBLAS (dimensions, leading dimensions), then like a GPU would fault:
 * every matrix of every batch must lie inside one device allocation. */
static cublasStatus_t gemm_submit(cublasHandle_t h, gemm_args *g) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (g->ta == CUBLAS_OP_C) g->ta = CUBLAS_OP_T; /* real data */
  if (g->tb == CUBLAS_OP_C) g->tb = CUBLAS_OP_T;
  int ar = g->ta == CUBLAS_OP_N ? g->m : g->k, ac = g->ta == CUBLAS_OP_N ? g->k : g->m;
  int br = g->tb == CUBLAS_OP_N ? g->k : g->n, bc = g->tb == CUBLAS_OP_N ? g->n : g->k;
  if ((g->ta != CUBLAS_OP_N && g->ta != CUBLAS_OP_T) || (g->tb != CUBLAS_OP_N && g->tb != CUBLAS_OP_T) ||
      g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 0 || g->lda < (ar > 1 ? ar : 1) ||
      g->ldb < (br > 1 ? br : 1) || g->ldc < (g->m > 1 ? g->m : 1)) {
    ct_emu_report("%s: invalid value (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d batch=%d)", g->what, g->m, g->n, g->k,
                  g->lda, g->ldb, g->ldc, g->batch);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  for (int b = 0; b < g->batch; b++) {
    struct { const float *p; size_t n; const char *nm; } mats[3] = {
      {g->k ? g->A + (ptrdiff_t)b * g->sa : NULL, g->k ? extent(ar, ac, g->lda) : 0, "A"},
      {g->k ? g->B + (ptrdiff_t)b * g->sb : NULL, g->k ? extent(br, bc, g->ldb) : 0, "B"},
      {g->C + (ptrdiff_t)b * g->sc, extent(g->m, g->n, g->ldc), "C"},
    };
    for (int i = 0; i < 3; i++)
      if (mats[i].n && !ct_emu_device_range_ok(mats[i].p, mats[i].n * sizeof(float))) {
        ct_emu_report("%s: matrix %s of batch %d (%p, %zu floats) is not inside one device allocation "
                      "(illegal address on a GPU)", g->what, mats[i].nm, b, (const void *)mats[i].p, mats[i].n);
        return CUBLAS_STATUS_EXECUTION_FAILED;
      }
  }
  if (ct_emu_enqueue_host(h->stream, g->what, gemm_exec, g, sizeof *g) != cudaSuccess)
    return CUBLAS_STATUS_EXECUTION_FAILED;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                           int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
  return cublasSgemmStridedBatched(handle, transa, transb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                                   1);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                         const float *A, int lda, long long strideA, const float *B, int ldb,
                                         long long strideB, const float *beta, float *C, int ldc,
                                         long long strideC, int batchCount) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  gemm_args g = {transa, transb, m, n, k, lda, ldb, ldc, batchCount, strideA, strideB, strideC, *alpha, *beta,
                 A, B, C, handle->math == CUBLAS_TF32_TENSOR_OP_MATH, "cublasSgemm"};
  return gemm_submit(handle, &g);
}

static cublasStatus_t ex_check(cudaDataType at, cudaDataType bt, cudaDataType ct, cublasComputeType_t comp,
                               bool *tf32) {
  if (at != CUDA_R_32F || bt != CUDA_R_32F || ct != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (comp == CUBLAS_COMPUTE_32F || comp == CUBLAS_COMPUTE_32F_PEDANTIC) *tf32 = false;
  else if (comp == CUBLAS_COMPUTE_32F_FAST_TF32) *tf32 = true;
  else return CUBLAS_STATUS_NOT_SUPPORTED;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                            const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  return cublasGemmStridedBatchedEx(handle, transa, transb, m, n, k, alpha, A, Atype, lda, 0, B, Btype, ldb, 0,
                                    beta, C, Ctype, ldc, 0, 1, computeType, algo);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k, const void *alpha,
                                          const void *A, cudaDataType Atype, int lda, long long strideA,
                                          const void *B, cudaDataType Btype, int ldb, long long strideB,
                                          const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo) {
  (void)algo;
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
  bool tf32 = false;
  cublasStatus_t s = ex_check(Atype, Btype, Ctype, computeType, &tf32);
  if (s != CUBLAS_STATUS_SUCCESS) {
    ct_emu_report("cublasGemmEx: only CUDA_R_32F data with CUBLAS_COMPUTE_32F(_FAST_TF32) is emulated");
    return s;
  }
  gemm_args g = {transa, transb, m, n, k, lda, ldb, ldc, batchCount, strideA, strideB, strideC,
                 *(const float *)alpha, *(const float *)beta, (const float *)A, (const float *)B, (float *)C,
                 tf32, "cublasGemmEx"};
  return gemm_submit(handle, &g);
}

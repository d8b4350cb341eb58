/* broken_missing_sync.cu — deliberately broken: the shared-memory tree reduction without
 * the __syncthreads between storing s[tid] and reading the other threads' s[tid + h]. */
#include "ct_cuda.h"

__global__ void broken_missing_sync_sum(const float *x, float *out, int n) {
  CT_SHARED(float, s, 256);
  int tid = threadIdx.x;
  s[tid] = tid < n ? x[tid] : 0.0f;
  /* BUG: missing __syncthreads(); */
  for (int h = blockDim.x / 2; h > 0; h >>= 1) {
    if (tid < h) s[tid] += s[tid + h];
    __syncthreads();
  }
  if (tid == 0) out[0] = s[0];
}

static int broken_missing_sync_run(void) {
  int n = 256, ok = 1;
  float x[256], got = 0.0f, want = 0.0f;
  for (int i = 0; i < n; i++) { x[i] = (float)(i % 7); want += x[i]; }
  float *dx = NULL, *dout = NULL;
  CT_CUDA_CHECK(cudaMalloc((void **)&dx, n * sizeof(float)));
  CT_CUDA_CHECK(cudaMalloc((void **)&dout, sizeof(float)));
  CT_CUDA_CHECK(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice));
  cudaError_t e = CT_LAUNCH(broken_missing_sync_sum, 1, 256, 0, 0, dx, dout, n);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) ok = 0;
  else {
    CT_CUDA_CHECK(cudaMemcpy(&got, dout, sizeof(float), cudaMemcpyDeviceToHost));
    ok = got == want;
  }
  cudaFree(dx);
  cudaFree(dout);
  return ok;
}

/* Deliberately broken: every thread stores its index to s[0] in the same barrier
 * interval (a write-write race); the emulator's private shared views report it. */
__global__ void broken_shared_race(float *out) {
  CT_SHARED(float, s, 1);
  s[0] = (float)threadIdx.x; /* BUG: 64 threads write one word with no ordering */
  __syncthreads();
  if (threadIdx.x == 0) out[0] = s[0];
}

static int broken_shared_race_run(void) {
  float *dout = NULL;
  CT_CUDA_CHECK(cudaMalloc((void **)&dout, sizeof(float)));
  cudaError_t e = CT_LAUNCH(broken_shared_race, 1, 64, 0, 0, dout);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  cudaFree(dout);
  return e == cudaSuccess;
}

/* broken_oob.cu — deliberately broken: an off-by-one bound (i <= n) reads and writes one
 * float past the end of two cudaMalloc blocks. ASan or the emulator's guard mode must catch it. */
#include "ct_cuda.h"

__global__ void broken_oob_scale(const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = 2.0f * x[i]; /* BUG: i == n is out of bounds */
}

/* Returns 1 when the results look right (the bug went unnoticed by the data). */
static int broken_oob_run(void) {
  int n = 1000, ok = 1;
  float *x = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float));
  for (int i = 0; i < n; i++) x[i] = (float)i;
  float *dx = NULL, *dy = NULL;
  CT_CUDA_CHECK(cudaMalloc((void **)&dx, n * sizeof(float)));
  CT_CUDA_CHECK(cudaMalloc((void **)&dy, n * sizeof(float)));
  CT_CUDA_CHECK(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice));
  cudaError_t e = CT_LAUNCH(broken_oob_scale, (n + 255) / 256, 256, 0, 0, dx, dy, n);
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (e != cudaSuccess) ok = 0;
  else {
    CT_CUDA_CHECK(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) ok &= y[i] == 2.0f * x[i];
  }
  cudaFree(dx);
  cudaFree(dy);
  free(x);
  free(y);
  return ok;
}

/* broken_shfl.cu — deliberately broken warp shuffles: (1) a width-16 reduction that starts
 * at delta 16 (reads lane + 16 outside its 16-lane segment), (2) a mask naming only the
 * low half-warp while all 32 lanes shuffle, (3) lanes 0-15 reading lanes 16-31 which are
 * not in the mask, (4) a full-mask shuffle that only half the warp reaches. */
#include "ct_cuda.h"

__global__ void broken_shfl_width(const float *x, float *out) {
  float v = x[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o, 16); /* BUG: o == 16 with width 16 */
  if (threadIdx.x == 0) out[0] = v;
}

__global__ void broken_shfl_mask(const float *x, float *out) {
  float v = x[threadIdx.x];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0x0000ffffu, v, o); /* BUG: mask excludes lanes 16-31 */
  if (threadIdx.x == 0) out[0] = v;
}

__global__ void broken_shfl_lane(const float *x, float *out) {
  float v = x[threadIdx.x];
  if (threadIdx.x < 16) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0x0000ffffu, v, o); /* BUG: lane ^ 16 is not in the mask */
    if (threadIdx.x == 0) out[0] = v;
  }
}

__global__ void broken_shfl_divergent(const float *x, float *out) {
  float v = x[threadIdx.x];
  if (threadIdx.x < 16) v += __shfl_xor_sync(0xffffffffu, v, 1); /* BUG: lanes 16-31 never arrive */
  if (threadIdx.x == 0) out[0] = v;
}

/* which: 0 width, 1 mask, 2 lane, 3 divergent full-mask shuffle. Returns 1 when the result equals the sum of 32 lanes. */
static int broken_shfl_run(int which) {
  float x[32], got = 0.0f, want = 0.0f;
  for (int i = 0; i < 32; i++) { x[i] = (float)(i + 1); want += x[i]; }
  float *dx = NULL, *dout = NULL;
  int ok = 1;
  CT_CUDA_CHECK(cudaMalloc((void **)&dx, sizeof x));
  CT_CUDA_CHECK(cudaMalloc((void **)&dout, sizeof(float)));
  CT_CUDA_CHECK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
  cudaError_t e = which == 0   ? CT_LAUNCH(broken_shfl_width, 1, 32, 0, 0, dx, dout)
                  : which == 1 ? CT_LAUNCH(broken_shfl_mask, 1, 32, 0, 0, dx, dout)
                  : which == 2 ? CT_LAUNCH(broken_shfl_lane, 1, 32, 0, 0, dx, dout)
                               : CT_LAUNCH(broken_shfl_divergent, 1, 32, 0, 0, dx, dout);
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

/* ct_cuda.h — the one header generated CUDA sources include: the real CUDA runtime and
 * cuBLAS under nvcc, the CPU emulation (cuda_emu.h) under a host C compiler. It also
 * defines the macros that differ between the two builds (CT_SHARED, CT_LAUNCH, checks). */
#ifndef CT_CUDA_H
#define CT_CUDA_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __CUDACC__
#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef CT_NCCL
#include <nccl.h> /* data-parallel programs (contra compile --ranks N) */
#endif
#define CT_SHARED(type, name, count) __shared__ type name[count]
#define CT_SHARED_DYN(type, name) \
  extern __shared__ __align__(16) unsigned char ct_dyn_smem_[]; \
  type *const name = (type *)ct_dyn_smem_
#define CT_LAUNCH(k, grid, block, shmem, stream, ...) \
  ((k)<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__), cudaGetLastError())
#define CT_DIM3(x, y, z) dim3((unsigned)(x), (unsigned)(y), (unsigned)(z))
#define CT_EMULATED 0
#else
#include "cuda_emu.h"
#define CT_EMULATED 1
#endif

/* Reports a failing CUDA runtime call with its file and line, then exits. */
#define CT_CUDA_CHECK(call) \
  do { \
    cudaError_t ct_e_ = (call); \
    if (ct_e_ != cudaSuccess) { \
      fprintf(stderr, "%s:%d: CUDA error %d (%s) in %s\n", __FILE__, __LINE__, (int)ct_e_, \
              cudaGetErrorString(ct_e_), #call); \
      exit(EXIT_FAILURE); \
    } \
  } while (0)
/* Same for cuBLAS calls. */
#define CT_CUBLAS_CHECK(call) \
  do { \
    cublasStatus_t ct_s_ = (call); \
    if (ct_s_ != CUBLAS_STATUS_SUCCESS) { \
      fprintf(stderr, "%s:%d: cuBLAS error %d (%s) in %s\n", __FILE__, __LINE__, (int)ct_s_, \
              cublasGetStatusString(ct_s_), #call); \
      exit(EXIT_FAILURE); \
    } \
  } while (0)

#endif /* CT_CUDA_H */

/* cuda_emu.h — CPU emulation of the CUDA runtime + cuBLAS subset used by contra's
 * generated CUDA code. Included (through ct_cuda.h) instead of cuda_runtime.h when a
 * .cu source is compiled as C17 by gcc; see README.md for the execution model. */
#ifndef CT_CUDA_EMU_H
#define CT_CUDA_EMU_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__GNUC__) || defined(__clang__)
#error "cuda_emu.h needs gcc (statement expressions and non-capturing nested functions)"
#endif
/* CT_LAUNCH's thunk is a nested function that never touches the enclosing frame:
 * make sure it never needs an executable-stack trampoline. */
#pragma GCC diagnostic error "-Wtrampolines"
#if !defined(__OPTIMIZE__)
/* at -O0 gcc gives every nested function a static chain (and a trampoline when its
 * address is taken): compile the including file with -O1 at least */
#pragma GCC optimize("O1")
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- types and constants (values match the CUDA 12/13 headers) ---- */
typedef struct dim3 { unsigned int x, y, z; } dim3;
typedef dim3 uint3;

typedef enum cudaError {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureUnmatched = 903,
  cudaErrorIllegalState = 401,
} cudaError_t;

typedef enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
} cudaMemcpyKind;

typedef enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
} cudaStreamCaptureMode;

typedef enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
} cudaStreamCaptureStatus;

#define cudaStreamDefault 0x0u
#define cudaStreamNonBlocking 0x1u
#define cudaEventDefault 0x0u
#define cudaEventBlockingSync 0x1u
#define cudaEventDisableTiming 0x2u
#define cudaHostAllocDefault 0x0u

typedef struct ct_emu_stream *cudaStream_t;
typedef struct ct_emu_event *cudaEvent_t;
typedef struct ct_emu_graph *cudaGraph_t;
typedef struct ct_emu_graph_exec *cudaGraphExec_t;

/* ---- runtime API subset ---- */
cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemset(void *ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t error);
const char *cudaGetErrorName(cudaError_t error);
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
typedef enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
} cudaFuncAttribute;
/* Pass the kernel as (const void *)kernel in code that builds both ways. Dynamic shared
 * memory above 48 KiB needs cudaFuncAttributeMaxDynamicSharedMemorySize, as on a GPU. */
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);

/* ---- emulator configuration (also read from the environment at first use:
 * CT_CUDA_EMU_ORDER=forward|reverse|random[:seed], CT_CUDA_EMU_SHARED=private|direct,
 * CT_CUDA_EMU_GUARD=1, CT_CUDA_EMU_CHECK=1, CT_CUDA_EMU_ABORT=1) ---- */
typedef enum ct_emu_order { CT_EMU_ORDER_FORWARD, CT_EMU_ORDER_REVERSE, CT_EMU_ORDER_RANDOM } ct_emu_order;
typedef struct ct_emu_config {
  ct_emu_order order;     /* order in which ready threads of a block are resumed */
  unsigned seed;          /* seed of CT_EMU_ORDER_RANDOM */
  bool shared_private;    /* each thread sees shared memory writes of others only after a barrier */
  bool guard;             /* cudaMalloc blocks end at a PROT_NONE page; redzones checked after each kernel */
  bool check_schedules;   /* run each kernel twice (reverse/direct, forward/private) and compare device memory */
  bool abort_on_error;    /* abort() at the first emulator report */
} ct_emu_config;
ct_emu_config ct_emu_config_get(void);
void ct_emu_config_set(const ct_emu_config *config);
/* Number of emulator reports (misuse, races, faults) since start or the last reset. */
int ct_emu_error_count(void);
/* Clears sticky errors, the report count and the last error (for tests). */
void ct_emu_errors_reset(void);
/* Number of kernel launches executed (graph replays included). */
long ct_emu_launch_count(void);

/* ---- device-side emulation ---- */
typedef struct ct_emu_thread ct_emu_thread;
struct ct_emu_thread_pub { dim3 thread_idx; };
extern __thread struct ct_emu_thread_pub *ct_emu_cur;
extern __thread dim3 ct_emu_block_idx, ct_emu_block_dim, ct_emu_grid_dim;

#define threadIdx (ct_emu_cur->thread_idx)
#define blockIdx ct_emu_block_idx
#define blockDim ct_emu_block_dim
#define gridDim ct_emu_grid_dim
#define warpSize 32

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __restrict__ restrict
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

void ct_emu_syncthreads(void);
void ct_emu_syncwarp(unsigned mask);
#define __syncthreads() ct_emu_syncthreads()
#define __syncwarp(...) ct_emu_syncwarp(CT__ARG2_OR(0xffffffffu, ##__VA_ARGS__))
#define CT__ARG2_OR(dflt, ...) CT__ARG2_OR_(dflt, ##__VA_ARGS__, dflt)
#define CT__ARG2_OR_(dflt, a, ...) (a)
#define __threadfence() __sync_synchronize()
#define __threadfence_block() __sync_synchronize()

/* shared memory: CT_SHARED gives every thread of the block the same array (or, in
 * private mode, the thread's own view of it, merged at each barrier). */
void *ct_emu_shared_static(size_t bytes, size_t align, const char *name, int line);
void *ct_emu_shared_dyn(void);
#define CT_SHARED(type, name, count) \
  type *const name = (type *)ct_emu_shared_static(sizeof(type) * (size_t)(count), _Alignof(type), #name, __LINE__)
#define CT_SHARED_DYN(type, name) type *const name = (type *)ct_emu_shared_dyn()

/* warp shuffles and votes: all lanes named in mask meet, then values are exchanged */
enum { CT_EMU_SHFL_IDX, CT_EMU_SHFL_UP, CT_EMU_SHFL_DOWN, CT_EMU_SHFL_XOR, CT_EMU_VOTE_BALLOT,
       CT_EMU_VOTE_ANY, CT_EMU_VOTE_ALL };
uint64_t ct_emu_shfl(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file, int line);
static inline float ct_emu_shfl_f(int op, unsigned m, float v, int a, int w, const char *f, int l) {
  union { float f; uint32_t u; } x = {v}; x.u = (uint32_t)ct_emu_shfl(op, m, x.u, a, w, f, l); return x.f;
}
static inline double ct_emu_shfl_d(int op, unsigned m, double v, int a, int w, const char *f, int l) {
  union { double d; uint64_t u; } x = {v}; x.u = ct_emu_shfl(op, m, x.u, a, w, f, l); return x.d;
}
static inline int ct_emu_shfl_i(int op, unsigned m, int v, int a, int w, const char *f, int l) {
  return (int)(uint32_t)ct_emu_shfl(op, m, (uint32_t)v, a, w, f, l);
}
static inline unsigned ct_emu_shfl_u(int op, unsigned m, unsigned v, int a, int w, const char *f, int l) {
  return (unsigned)ct_emu_shfl(op, m, v, a, w, f, l);
}
static inline long long ct_emu_shfl_ll(int op, unsigned m, long long v, int a, int w, const char *f, int l) {
  return (long long)ct_emu_shfl(op, m, (uint64_t)v, a, w, f, l);
}
#define CT__SHFL5(op, m, v, a, w) \
  _Generic((v), float: ct_emu_shfl_f, double: ct_emu_shfl_d, unsigned: ct_emu_shfl_u, \
           long long: ct_emu_shfl_ll, default: ct_emu_shfl_i)(op, (m), (v), (int)(a), (int)(w), __FILE__, __LINE__)
#define CT__SHFL4(op, m, v, a) CT__SHFL5(op, m, v, a, 32)
#define CT__PICK5(a, b, c, d, e, ...) e
#define __shfl_sync(...) CT__PICK5(__VA_ARGS__, CT__SHFL5, CT__SHFL4, _)(CT_EMU_SHFL_IDX, __VA_ARGS__)
#define __shfl_up_sync(...) CT__PICK5(__VA_ARGS__, CT__SHFL5, CT__SHFL4, _)(CT_EMU_SHFL_UP, __VA_ARGS__)
#define __shfl_down_sync(...) CT__PICK5(__VA_ARGS__, CT__SHFL5, CT__SHFL4, _)(CT_EMU_SHFL_DOWN, __VA_ARGS__)
#define __shfl_xor_sync(...) CT__PICK5(__VA_ARGS__, CT__SHFL5, CT__SHFL4, _)(CT_EMU_SHFL_XOR, __VA_ARGS__)
#define __ballot_sync(m, p) ((unsigned)ct_emu_shfl(CT_EMU_VOTE_BALLOT, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(m, p) ((int)ct_emu_shfl(CT_EMU_VOTE_ANY, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(m, p) ((int)ct_emu_shfl(CT_EMU_VOTE_ALL, (m), (p) != 0, 0, 32, __FILE__, __LINE__))

/* atomics: blocks and threads never run in parallel, so these are plain
 * read-modify-writes; on private-view shared memory they act on the block's copy. */
void *ct_emu_atomic_addr(void *p, size_t bytes);
static inline float ct_emu_atomic_add_f(float *p, float v) {
  float *q = (float *)ct_emu_atomic_addr(p, sizeof *p); float o = *q; *q = o + v; return o;
}
static inline double ct_emu_atomic_add_d(double *p, double v) {
  double *q = (double *)ct_emu_atomic_addr(p, sizeof *p); double o = *q; *q = o + v; return o;
}
static inline int ct_emu_atomic_add_i(int *p, int v) {
  int *q = (int *)ct_emu_atomic_addr(p, sizeof *p); int o = *q; *q = (int)((unsigned)o + (unsigned)v); return o;
}
static inline unsigned ct_emu_atomic_add_u(unsigned *p, unsigned v) {
  unsigned *q = (unsigned *)ct_emu_atomic_addr(p, sizeof *p); unsigned o = *q; *q = o + v; return o;
}
static inline unsigned long long ct_emu_atomic_add_ull(unsigned long long *p, unsigned long long v) {
  unsigned long long *q = (unsigned long long *)ct_emu_atomic_addr(p, sizeof *p); unsigned long long o = *q;
  *q = o + v; return o;
}
static inline int ct_emu_atomic_max_i(int *p, int v) {
  int *q = (int *)ct_emu_atomic_addr(p, sizeof *p); int o = *q; if (v > o) *q = v; return o;
}
static inline int ct_emu_atomic_min_i(int *p, int v) {
  int *q = (int *)ct_emu_atomic_addr(p, sizeof *p); int o = *q; if (v < o) *q = v; return o;
}
static inline int ct_emu_atomic_exch_i(int *p, int v) {
  int *q = (int *)ct_emu_atomic_addr(p, sizeof *p); int o = *q; *q = v; return o;
}
static inline int ct_emu_atomic_cas_i(int *p, int cmp, int v) {
  int *q = (int *)ct_emu_atomic_addr(p, sizeof *p); int o = *q; if (o == cmp) *q = v; return o;
}
static inline unsigned ct_emu_atomic_cas_u(unsigned *p, unsigned cmp, unsigned v) {
  unsigned *q = (unsigned *)ct_emu_atomic_addr(p, sizeof *p); unsigned o = *q; if (o == cmp) *q = v; return o;
}
extern __thread int ct_emu_float_atomics;
#define atomicAdd(p, v) _Generic((p), float *: (ct_emu_float_atomics = 1, ct_emu_atomic_add_f), \
  double *: (ct_emu_float_atomics = 1, ct_emu_atomic_add_d), unsigned *: ct_emu_atomic_add_u, \
  unsigned long long *: ct_emu_atomic_add_ull, default: ct_emu_atomic_add_i)((p), (v))
#define atomicMax(p, v) ct_emu_atomic_max_i((p), (v))
#define atomicMin(p, v) ct_emu_atomic_min_i((p), (v))
#define atomicExch(p, v) ct_emu_atomic_exch_i((p), (v))
#define atomicCAS(p, c, v) _Generic((p), unsigned *: ct_emu_atomic_cas_u, default: ct_emu_atomic_cas_i)((p), (c), (v))

/* device math intrinsics (the libm float functions are used as they are) */
#define __expf(x) expf(x)
#define __logf(x) logf(x)
#define __powf(x, y) powf((x), (y))
#define __sinf(x) sinf(x)
#define __cosf(x) cosf(x)
#define __tanhf(x) tanhf(x)
#define __fdividef(x, y) ((x) / (y))
#define __frcp_rn(x) (1.0f / (x))
#define __fsqrt_rn(x) sqrtf(x)
#define __saturatef(x) fminf(fmaxf((x), 0.0f), 1.0f)
#define __fmaf_rn(a, b, c) fmaf((a), (b), (c))
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline int ct_emu_min_i(int a, int b) { return a < b ? a : b; }
static inline int ct_emu_max_i(int a, int b) { return a > b ? a : b; }
#define __ldg(p) (*(p))

/* ---- launch ---- */
static inline dim3 ct_emu_dim3_id(dim3 d) { return d; }
static inline dim3 ct_emu_dim3_u(unsigned long long x) { dim3 d = {(unsigned)x, 1, 1}; return d; }
#define ct_emu_dim3(g) _Generic((g), dim3: ct_emu_dim3_id, default: ct_emu_dim3_u)(g)
#define CT_DIM3(x, y, z) ((dim3){(unsigned)(x), (unsigned)(y), (unsigned)(z)})

typedef void (*ct_emu_thunk)(void *args);
/* Runs (or, on a capturing stream, records) kernel `name`; args is copied. */
cudaError_t ct_emu_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shmem,
                          cudaStream_t stream, ct_emu_thunk thunk, const void *args, size_t args_size);

#define CT__NARG(...) CT__NARG_(__VA_ARGS__, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1)
#define CT__NARG_(_1, _2, _3, _4, _5, _6, _7, _8, _9, _10, _11, _12, _13, _14, _15, _16, _17, _18, _19, _20, _21, _22, _23, _24, _25, _26, _27, _28, _29, _30, _31, _32, n, ...) n
#define CT__CAT(a, b) CT__CAT_(a, b)
#define CT__CAT_(a, b) a##b
#define CT__FIELD(x, i) __typeof__(((void)0, (x))) a##i;
#define CT__FIELDS1(x) CT__FIELD(x, 1)
#define CT__FIELDS2(x, ...) CT__FIELD(x, 2) CT__FIELDS1(__VA_ARGS__)
#define CT__FIELDS3(x, ...) CT__FIELD(x, 3) CT__FIELDS2(__VA_ARGS__)
#define CT__FIELDS4(x, ...) CT__FIELD(x, 4) CT__FIELDS3(__VA_ARGS__)
#define CT__FIELDS5(x, ...) CT__FIELD(x, 5) CT__FIELDS4(__VA_ARGS__)
#define CT__FIELDS6(x, ...) CT__FIELD(x, 6) CT__FIELDS5(__VA_ARGS__)
#define CT__FIELDS7(x, ...) CT__FIELD(x, 7) CT__FIELDS6(__VA_ARGS__)
#define CT__FIELDS8(x, ...) CT__FIELD(x, 8) CT__FIELDS7(__VA_ARGS__)
#define CT__FIELDS9(x, ...) CT__FIELD(x, 9) CT__FIELDS8(__VA_ARGS__)
#define CT__FIELDS10(x, ...) CT__FIELD(x, 10) CT__FIELDS9(__VA_ARGS__)
#define CT__FIELDS11(x, ...) CT__FIELD(x, 11) CT__FIELDS10(__VA_ARGS__)
#define CT__FIELDS12(x, ...) CT__FIELD(x, 12) CT__FIELDS11(__VA_ARGS__)
#define CT__FIELDS13(x, ...) CT__FIELD(x, 13) CT__FIELDS12(__VA_ARGS__)
#define CT__FIELDS14(x, ...) CT__FIELD(x, 14) CT__FIELDS13(__VA_ARGS__)
#define CT__FIELDS15(x, ...) CT__FIELD(x, 15) CT__FIELDS14(__VA_ARGS__)
#define CT__FIELDS16(x, ...) CT__FIELD(x, 16) CT__FIELDS15(__VA_ARGS__)
#define CT__FIELDS17(x, ...) CT__FIELD(x, 17) CT__FIELDS16(__VA_ARGS__)
#define CT__FIELDS18(x, ...) CT__FIELD(x, 18) CT__FIELDS17(__VA_ARGS__)
#define CT__FIELDS19(x, ...) CT__FIELD(x, 19) CT__FIELDS18(__VA_ARGS__)
#define CT__FIELDS20(x, ...) CT__FIELD(x, 20) CT__FIELDS19(__VA_ARGS__)
#define CT__FIELDS21(x, ...) CT__FIELD(x, 21) CT__FIELDS20(__VA_ARGS__)
#define CT__FIELDS22(x, ...) CT__FIELD(x, 22) CT__FIELDS21(__VA_ARGS__)
#define CT__FIELDS23(x, ...) CT__FIELD(x, 23) CT__FIELDS22(__VA_ARGS__)
#define CT__FIELDS24(x, ...) CT__FIELD(x, 24) CT__FIELDS23(__VA_ARGS__)
#define CT__FIELDS25(x, ...) CT__FIELD(x, 25) CT__FIELDS24(__VA_ARGS__)
#define CT__FIELDS26(x, ...) CT__FIELD(x, 26) CT__FIELDS25(__VA_ARGS__)
#define CT__FIELDS27(x, ...) CT__FIELD(x, 27) CT__FIELDS26(__VA_ARGS__)
#define CT__FIELDS28(x, ...) CT__FIELD(x, 28) CT__FIELDS27(__VA_ARGS__)
#define CT__FIELDS29(x, ...) CT__FIELD(x, 29) CT__FIELDS28(__VA_ARGS__)
#define CT__FIELDS30(x, ...) CT__FIELD(x, 30) CT__FIELDS29(__VA_ARGS__)
#define CT__FIELDS31(x, ...) CT__FIELD(x, 31) CT__FIELDS30(__VA_ARGS__)
#define CT__FIELDS32(x, ...) CT__FIELD(x, 32) CT__FIELDS31(__VA_ARGS__)
#define CT__ARGS1(x) ct__q->a1
#define CT__ARGS2(x, ...) ct__q->a2, CT__ARGS1(__VA_ARGS__)
#define CT__ARGS3(x, ...) ct__q->a3, CT__ARGS2(__VA_ARGS__)
#define CT__ARGS4(x, ...) ct__q->a4, CT__ARGS3(__VA_ARGS__)
#define CT__ARGS5(x, ...) ct__q->a5, CT__ARGS4(__VA_ARGS__)
#define CT__ARGS6(x, ...) ct__q->a6, CT__ARGS5(__VA_ARGS__)
#define CT__ARGS7(x, ...) ct__q->a7, CT__ARGS6(__VA_ARGS__)
#define CT__ARGS8(x, ...) ct__q->a8, CT__ARGS7(__VA_ARGS__)
#define CT__ARGS9(x, ...) ct__q->a9, CT__ARGS8(__VA_ARGS__)
#define CT__ARGS10(x, ...) ct__q->a10, CT__ARGS9(__VA_ARGS__)
#define CT__ARGS11(x, ...) ct__q->a11, CT__ARGS10(__VA_ARGS__)
#define CT__ARGS12(x, ...) ct__q->a12, CT__ARGS11(__VA_ARGS__)
#define CT__ARGS13(x, ...) ct__q->a13, CT__ARGS12(__VA_ARGS__)
#define CT__ARGS14(x, ...) ct__q->a14, CT__ARGS13(__VA_ARGS__)
#define CT__ARGS15(x, ...) ct__q->a15, CT__ARGS14(__VA_ARGS__)
#define CT__ARGS16(x, ...) ct__q->a16, CT__ARGS15(__VA_ARGS__)
#define CT__ARGS17(x, ...) ct__q->a17, CT__ARGS16(__VA_ARGS__)
#define CT__ARGS18(x, ...) ct__q->a18, CT__ARGS17(__VA_ARGS__)
#define CT__ARGS19(x, ...) ct__q->a19, CT__ARGS18(__VA_ARGS__)
#define CT__ARGS20(x, ...) ct__q->a20, CT__ARGS19(__VA_ARGS__)
#define CT__ARGS21(x, ...) ct__q->a21, CT__ARGS20(__VA_ARGS__)
#define CT__ARGS22(x, ...) ct__q->a22, CT__ARGS21(__VA_ARGS__)
#define CT__ARGS23(x, ...) ct__q->a23, CT__ARGS22(__VA_ARGS__)
#define CT__ARGS24(x, ...) ct__q->a24, CT__ARGS23(__VA_ARGS__)
#define CT__ARGS25(x, ...) ct__q->a25, CT__ARGS24(__VA_ARGS__)
#define CT__ARGS26(x, ...) ct__q->a26, CT__ARGS25(__VA_ARGS__)
#define CT__ARGS27(x, ...) ct__q->a27, CT__ARGS26(__VA_ARGS__)
#define CT__ARGS28(x, ...) ct__q->a28, CT__ARGS27(__VA_ARGS__)
#define CT__ARGS29(x, ...) ct__q->a29, CT__ARGS28(__VA_ARGS__)
#define CT__ARGS30(x, ...) ct__q->a30, CT__ARGS29(__VA_ARGS__)
#define CT__ARGS31(x, ...) ct__q->a31, CT__ARGS30(__VA_ARGS__)
#define CT__ARGS32(x, ...) ct__q->a32, CT__ARGS31(__VA_ARGS__)
#define CT__FIELDS(...) CT__CAT(CT__FIELDS, CT__NARG(__VA_ARGS__))(__VA_ARGS__)
#define CT__ARGS(...) CT__CAT(CT__ARGS, CT__NARG(__VA_ARGS__))(__VA_ARGS__)

/* CT_LAUNCH(kernel, grid, block, shmem_bytes, stream, args...): the arguments are
 * evaluated once, captured by value, and the kernel runs through a thunk on each
 * emulated thread's fiber (and again at each graph replay). 1 to 32 arguments. */
#define CT_LAUNCH(k, grid, block, shmem, stream, ...) \
  __extension__({ \
    struct ct__cap { CT__FIELDS(__VA_ARGS__) } ct__c = {__VA_ARGS__}; \
    void ct__thunk(void *ct__p) { struct ct__cap *ct__q = (struct ct__cap *)ct__p; k(CT__ARGS(__VA_ARGS__)); } \
    ct_emu_launch(#k, (const void *)(k), ct_emu_dim3(grid), ct_emu_dim3(block), (size_t)(shmem), (stream), \
                  ct__thunk, &ct__c, sizeof ct__c); \
  })

/* ---- cuBLAS subset ---- */
typedef struct ct_emu_cublas *cublasHandle_t;
typedef enum cublasStatus {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum cublasOperation { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum cudaDataType_t {
  CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_8I = 3, CUDA_R_32I = 10, CUDA_R_16BF = 14,
} cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum cublasComputeType {
  CUBLAS_COMPUTE_16F = 64, CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_64F = 70,
} cublasComputeType_t;
typedef enum cublasGemmAlgo { CUBLAS_GEMM_DEFAULT = -1, CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99 } cublasGemmAlgo_t;
typedef enum cublasMath {
  CUBLAS_DEFAULT_MATH = 0, CUBLAS_TENSOR_OP_MATH = 1, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3,
} cublasMath_t;

cublasStatus_t cublasCreate(cublasHandle_t *handle);
cublasStatus_t cublasDestroy(cublasHandle_t handle);
cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t stream);
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode);
cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void *workspace, size_t size);
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                           int n, int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t handle, cublasOperation_t transa,
                                         cublasOperation_t transb, int m, int n, int k, const float *alpha,
                                         const float *A, int lda, long long strideA, const float *B, int ldb,
                                         long long strideB, const float *beta, float *C, int ldc,
                                         long long strideC, int batchCount);
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType Atype, int lda,
                            const void *B, cudaDataType Btype, int ldb, const void *beta, void *C,
                            cudaDataType Ctype, int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo);
cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa,
                                          cublasOperation_t transb, int m, int n, int k, const void *alpha,
                                          const void *A, cudaDataType Atype, int lda, long long strideA,
                                          const void *B, cudaDataType Btype, int ldb, long long strideB,
                                          const void *beta, void *C, cudaDataType Ctype, int ldc,
                                          long long strideC, int batchCount, cublasComputeType_t computeType,
                                          cublasGemmAlgo_t algo);
const char *cublasGetStatusString(cublasStatus_t status);

/* ---- NCCL: the subset data-parallel programs call (nccl_emu.c) */
typedef struct ct_emu_nccl_comm *ncclComm_t;
typedef struct { char internal[128]; } ncclUniqueId;
typedef enum {
  ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,
  ncclInvalidArgument = 4, ncclInvalidUsage = 5
} ncclResult_t;
typedef enum {
  ncclInt8 = 0, ncclChar = 0, ncclUint8 = 1, ncclInt32 = 2, ncclInt = 2, ncclUint32 = 3, ncclInt64 = 4,
  ncclUint64 = 5, ncclFloat16 = 6, ncclHalf = 6, ncclFloat32 = 7, ncclFloat = 7, ncclFloat64 = 8, ncclDouble = 8
} ncclDataType_t;
typedef enum { ncclSum = 0, ncclProd = 1, ncclMax = 2, ncclMin = 3, ncclAvg = 4 } ncclRedOp_t;
const char *ncclGetErrorString(ncclResult_t result);
ncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId);
ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank);
ncclResult_t ncclCommDestroy(ncclComm_t comm);
ncclResult_t ncclGroupStart(void);
ncclResult_t ncclGroupEnd(void);
ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclAllGather(const void *sendbuff, void *recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream);
ncclResult_t ncclReduceScatter(const void *sendbuff, void *recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);
/* emulator only: the transport the emulated NCCL carries the bytes over (the runtime's
 * communicator, program.h's ct_comm: MPI between the trainer's ranks); the generated
 * program sets it before ncclCommInitRank. */
struct ct_comm;
void ct_emu_nccl_transport(const struct ct_comm *c);

/* internal: device-allocation registry and host-op recording shared with cublas_emu.c */
bool ct_emu_device_range_ok(const void *p, size_t bytes);
typedef void (*ct_emu_host_fn)(void *payload);
cudaError_t ct_emu_enqueue_host(cudaStream_t stream, const char *what, ct_emu_host_fn fn, const void *payload,
                                size_t payload_size);
void ct_emu_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#ifdef __cplusplus
}
#endif
#endif /* CT_CUDA_EMU_H */

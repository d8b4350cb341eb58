/* test_cuda_emu.c — runs the tests/cuda kernels on the CUDA emulation under several
 * thread schedules and shared-memory modes, and checks that each deliberately broken
 * kernel (out of bounds, missing __syncthreads, bad shuffles) is caught. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mmap flags, clock_gettime, sigaltstack */
#endif
#include "../cuda/kernels.cu"
#include "../cuda/broken_missing_sync.cu"
#include "../cuda/broken_oob.cu"
#include "../cuda/broken_shfl.cu"

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_passed, g_failed;

static void result(const char *name, int ok) {
  printf("%-58s %s\n", name, ok ? "ok" : "FAIL");
  fflush(stdout);
  if (ok) g_passed++;
  else g_failed++;
}

typedef struct mode { const char *name; ct_emu_order order; unsigned seed; bool private_smem, check; } mode;
static const mode g_modes[] = {
  {"forward/private", CT_EMU_ORDER_FORWARD, 1, true, false},
  {"reverse/private", CT_EMU_ORDER_REVERSE, 1, true, false},
  {"random:7/direct", CT_EMU_ORDER_RANDOM, 7, false, false},
  {"random:12345/private", CT_EMU_ORDER_RANDOM, 12345, true, false},
  {"reverse/direct", CT_EMU_ORDER_REVERSE, 1, false, false},
  {"check-schedules", CT_EMU_ORDER_FORWARD, 1, true, true},
};

static void set_mode(const mode *m, bool guard) {
  ct_emu_config c = ct_emu_config_get();
  c.order = m->order;
  c.seed = m->seed;
  c.shared_private = m->private_smem;
  c.check_schedules = m->check;
  c.guard = guard;
  c.abort_on_error = false;
  ct_emu_config_set(&c);
  ct_emu_errors_reset();
}

/* Runs fn in a child process (guard mode: the fault ends the process). */
static int run_child(int (*fn)(void), bool guard, int *status) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    set_mode(&g_modes[0], guard);
    _exit(fn() ? 0 : 1);
  }
  if (waitpid(pid, status, 0) < 0) return -1;
  return 0;
}

static void test_api_errors(void) {
  set_mode(&g_modes[0], false);
  float *d = NULL, h[4] = {0};
  CT_CUDA_CHECK(cudaMalloc((void **)&d, 4 * sizeof(float)));
  cudaError_t e = CT_LAUNCH(tk_add, 1, 2048, 0, 0, d, d, d, 4);
  result("api: block of 2048 threads -> invalid configuration",
         e == cudaErrorInvalidConfiguration && cudaGetLastError() == cudaErrorInvalidConfiguration &&
         cudaGetLastError() == cudaSuccess);
  e = CT_LAUNCH(tk_add, 1, 32, 64 * 1024, 0, d, d, d, 4);
  cudaError_t e2 = cudaGetLastError();
  CT_CUDA_CHECK(cudaFuncSetAttribute((const void *)tk_add, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
  result("api: 64 KiB of dynamic shared memory needs cudaFuncSetAttribute",
         e == cudaErrorInvalidConfiguration && e2 == e && CT_LAUNCH(tk_add, 1, 32, 64 * 1024, 0, d, d, d, 4) == cudaSuccess);
  e = cudaMemcpy(d, h, 5 * sizeof(float), cudaMemcpyHostToDevice);
  result("api: memcpy past the end of an allocation is refused", e == cudaErrorInvalidValue);
  e = cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice);
  result("api: memcpy with the wrong direction is refused", e == cudaErrorInvalidValue);
  cublasHandle_t hd;
  float one = 1.0f;
  CT_CUBLAS_CHECK(cublasCreate(&hd));
  cublasStatus_t s = cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, h, 2, d, 2, &one, d, 2);
  result("api: cuBLAS on a host pointer fails like an illegal address", s == CUBLAS_STATUS_EXECUTION_FAILED);
  s = cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, d, 1, d, 2, &one, d, 2);
  result("api: cuBLAS lda < m is an invalid value", s == CUBLAS_STATUS_INVALID_VALUE);
  s = cublasGemmEx(hd, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d, CUDA_R_16F, 1, d, CUDA_R_32F, 1, &one, d,
                   CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  result("api: cublasGemmEx with half inputs is not supported", s == CUBLAS_STATUS_NOT_SUPPORTED);
  cudaStream_t st;
  CT_CUDA_CHECK(cudaStreamCreate(&st));
  result("api: the legacy stream cannot capture",
         cudaStreamBeginCapture(0, cudaStreamCaptureModeGlobal) == cudaErrorStreamCaptureUnsupported);
  CT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
  e = cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, st);
  float *d2 = NULL;
  e2 = cudaMalloc((void **)&d2, 16);
  cudaGraph_t g = NULL;
  cudaError_t e3 = cudaStreamEndCapture(st, &g);
  result("api: capturing a copy from pageable memory is refused and invalidates the capture",
         e == cudaErrorStreamCaptureUnsupported && e3 == cudaErrorStreamCaptureInvalidated && g == NULL);
  result("api: cudaMalloc during a global capture is refused", e2 == cudaErrorStreamCaptureUnsupported && !d2);
  {
    /* a captured GEMM runs at each replay, not at capture: C = A B + C with 2x2 ones */
    float ones[4] = {1, 1, 1, 1}, c[4] = {0};
    float *dA = NULL, *dC = NULL;
    cudaGraphExec_t ge = NULL;
    CT_CUDA_CHECK(cudaMalloc((void **)&dA, sizeof ones));
    CT_CUDA_CHECK(cudaMalloc((void **)&dC, sizeof c));
    CT_CUDA_CHECK(cudaMemcpy(dA, ones, sizeof ones, cudaMemcpyHostToDevice));
    CT_CUDA_CHECK(cudaMemset(dC, 0, sizeof c));
    CT_CUBLAS_CHECK(cublasSetStream(hd, st));
    CT_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
    CT_CUBLAS_CHECK(cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 2, &one, dA, 2, dA, 2, &one, dC, 2));
    CT_CUDA_CHECK(cudaStreamEndCapture(st, &g));
    CT_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    CT_CUDA_CHECK(cudaMemcpy(c, dC, sizeof c, cudaMemcpyDeviceToHost));
    int ok = c[0] == 0.0f;
    for (int r = 0; r < 3; r++) CT_CUDA_CHECK(cudaGraphLaunch(ge, st));
    CT_CUDA_CHECK(cudaStreamSynchronize(st));
    CT_CUDA_CHECK(cudaMemcpy(c, dC, sizeof c, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 4; i++) ok &= c[i] == 6.0f;
    result("api: a cuBLAS call captured in a graph runs at each of 3 replays", ok);
    CT_CUDA_CHECK(cudaGraphExecDestroy(ge));
    CT_CUDA_CHECK(cudaGraphDestroy(g));
    CT_CUDA_CHECK(cudaFree(dA));
    CT_CUDA_CHECK(cudaFree(dC));
  }
  CT_CUDA_CHECK(cudaStreamDestroy(st));
  CT_CUBLAS_CHECK(cublasDestroy(hd));
  CT_CUDA_CHECK(cudaFree(d));
  ct_emu_errors_reset();
  (void)cudaGetLastError();
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--oob-no-guard")) {
    /* for the AddressSanitizer build: exactly sized blocks, no guard pages */
    set_mode(&g_modes[0], false);
    int ok = broken_oob_run();
    printf("broken_oob: not caught (results %s)\n", ok ? "right" : "wrong");
    return 0;
  }
  /* --good: only the good kernels; --quick: only the good kernels in the first mode */
  int quick = argc > 1 && !strcmp(argv[1], "--quick");
  int only_good = quick || (argc > 1 && !strcmp(argv[1], "--good"));
  int nmodes = quick ? 1 : (int)(sizeof g_modes / sizeof g_modes[0]);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);

  /* 1. every good kernel under every schedule / shared-memory mode */
  for (int m = 0; m < nmodes; m++)
    for (int i = 0; i < TK_NTESTS; i++) {
      char name[128];
      set_mode(&g_modes[m], false);
      long l0 = ct_emu_launch_count();
      int f = tk_tests[i].fn();
      int reports = ct_emu_error_count();
      snprintf(name, sizeof name, "%s [%s]", tk_tests[i].name, g_modes[m].name);
      if (reports) fprintf(stderr, "%s: %d emulator reports\n", name, reports);
      result(name, f == 0 && reports == 0 && (ct_emu_launch_count() > l0 || !strcmp(tk_tests[i].name, "cublas")));
    }
  if (!only_good) {
    /* 2. API misuse is refused */
    test_api_errors();

    /* 3. the broken kernels are caught */
    int st = 0;
    int rc = run_child(broken_oob_run, true, &st);
    result("broken_oob caught by guard mode (exit 86 with a report)",
           rc == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 86);

    set_mode(&g_modes[0], false);
    result("broken_missing_sync: wrong result with private shared views", !broken_missing_sync_run());
    {
      mode fwd_direct = {"forward/direct", CT_EMU_ORDER_FORWARD, 1, false, false};
      set_mode(&fwd_direct, false);
      result("broken_missing_sync: wrong result in forward/direct", !broken_missing_sync_run());
    }
    set_mode(&g_modes[5], false);
    {
      int ok = broken_missing_sync_run();
      result("broken_missing_sync: reported by the schedule check", !ok && ct_emu_error_count() > 0);
    }
    set_mode(&g_modes[0], false);
    result("broken_shared_race: write-write race reported", !broken_shared_race_run() && ct_emu_error_count() > 0);
    static const char *shfl_names[] = {"width (lane+16 with width 16)", "mask excludes calling lanes",
                                       "reads a lane outside the mask", "divergent full-mask shuffle (deadlock)"};
    for (int w = 0; w < 4; w++) {
      char name[128];
      set_mode(&g_modes[0], false);
      int ok = broken_shfl_run(w);
      snprintf(name, sizeof name, "broken_shfl %s: reported", shfl_names[w]);
      result(name, !ok && ct_emu_error_count() > 0);
    }
    ct_emu_errors_reset();
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("time %.2f s\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}

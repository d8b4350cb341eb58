/* main_nvcc.cu — the GPU build of the emulator test kernels: nvcc compiles kernels.cu
 * for sm_80/sm_90 and links it with libcudart and libcublas (CI builds it, a GPU runs it). */
#include "kernels.cu"

int main(void) {
  int passed = 0, failed = 0;
  for (int i = 0; i < TK_NTESTS; i++) {
    int f = tk_tests[i].fn();
    printf("%-8s %s\n", tk_tests[i].name, f ? "FAIL" : "ok");
    if (f) failed++;
    else passed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

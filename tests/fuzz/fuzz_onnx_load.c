/* fuzz_onnx_load.c — libFuzzer entry for the ONNX protobuf loader: any
 * input must give a verified graph or an error status, never a crash,
 * leak or undefined behaviour (built with ASan + UBSan by build.sh). */
#include <stddef.h>
#include <stdint.h>

#include "frontend.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ct_graph *g = NULL;
    ct_status st = ct_onnx_load_buffer(data, size, NULL, "fuzz.onnx", &g);
    if (st) {
        ct_status_free(st);
        return 0;
    }
    st = ct_graph_verify(g);
    if (st) {
        /* The loader promised a verified graph. */
        __builtin_trap();
    }
    ct_graph_free(g);
    return 0;
}

/* codegen.h — lowering a shape-inferred, memory-planned graph to one
 * generated C file (kernels + a ct_program_desc, runtime/program.h) and a
 * parameter blob, and building it into a shared library with the system C
 * compiler. */
#ifndef CT_CODEGEN_H
#define CT_CODEGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir.h"

/* What the C backend produced. */
typedef struct {
    char *source;          /* the generated C file (malloc'd) */
    size_t source_len;
    void *blob;            /* the persistent region's initial image (malloc'd) */
    size_t blob_len;
    int n_kernels;
    int64_t arena_bytes;   /* planned activation arena + conv scratch */
    int64_t scratch_bytes; /* of which scratch (im2col) */
    int64_t naive_bytes;   /* sum of all intermediates' sizes (no reuse) */
    int64_t persist_bytes;
} ct_c_program;

void ct_c_program_free(ct_c_program *p);

/* Lower g. Every value must have a static shape; TEMP values need the
 * memory plan (value->offset, g->arena_bytes; see ct_pass_memory_plan).
 * Ops the backend cannot lower are all reported in one error, each named
 * with its node. The output is deterministic for a given graph. */
ct_status ct_codegen_c(const ct_graph *g, ct_c_program *out);

/* Write OUTDIR/model.c, OUTDIR/program.h (the ABI header) and
 * OUTDIR/params.bin; creates OUTDIR if needed. Files are written atomically. */
ct_status ct_codegen_c_write(const ct_c_program *p, const char *outdir);

/* Build OUTDIR/model.so from OUTDIR/model.c with `cc` (NULL: $CC, else
 * "cc"): -O2 -fPIC -shared -fopenmp -march=native, linked with OpenBLAS.
 * A failing compiler gives an error naming the generated file (kept) and
 * the compiler's output. */
ct_status ct_codegen_c_build(const char *outdir, const char *cc);

/* The CUDA backend (cuda_backend.c): lower g to one CUDA source (kernels,
 * cuBLAS calls, a forward() on device pointers, a ct_program_desc with
 * device = CT_PT_DEVICE_CUDA, and the staged launch of ABI 3: pinned,
 * double-buffered input uploads on their own stream, the step captured once
 * as a CUDA graph and replayed). Same contract as ct_codegen_c; out->source
 * is the .cu text. tf32: GEMMs may use TF32 tensor cores. */
ct_status ct_codegen_cuda(const ct_graph *g, bool tf32, ct_c_program *out);

/* Write OUTDIR/model.cu, OUTDIR/program.h, OUTDIR/ct_cuda.h (+ the emulator's
 * cuda_emu.h) and OUTDIR/params.bin. */
ct_status ct_codegen_cuda_write(const ct_c_program *p, const char *outdir);

/* Build OUTDIR/model.so from OUTDIR/model.cu. emulate: with the host C
 * compiler `cc` (NULL: $CC, else cc; must be gcc) as C17 against
 * runtime/cuda_emu (compiled in) and OpenBLAS; else with nvcc ($NVCC, else
 * nvcc on PATH or /usr/local/cuda/bin/nvcc) for sm_80 and sm_90, linked with
 * libcudart and libcublas, the -Xptxas -v report kept in OUTDIR/ptxas.log. */
ct_status ct_codegen_cuda_build(const char *outdir, const char *cc, bool emulate);

/* The compiler actually used for `cc` (NULL: $CC, else "cc"). */
const char *ct_codegen_cc_name(const char *cc);
/* The first line of `cc --version` (malloc'd); used to key caches. */
ct_status ct_codegen_cc_version(const char *cc, char **out);

#endif

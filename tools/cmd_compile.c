/* cmd_compile.c — 'contra compile MODEL --infer -o OUTDIR': the inference
 * pipeline (load, batch, passes, memory plan), the C backend, and the build
 * of OUTDIR/model.so with the system C compiler. */
#include "cmd_compile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "codegen.h"
#include "frontend.h"
#include "passes.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contra compile MODEL --infer -o OUTDIR [--batch N] [--cc CC]\n"
            "\n"
            "Compile an ONNX model (or ONNX text syntax) for inference: the graph is\n"
            "shape-inferred, folded and memory-planned, lowered to one generated C file\n"
            "and built into a shared library with the system C compiler and OpenBLAS.\n"
            "\n"
            "  --infer        compile the forward pass (inference); required for now\n"
            "  -o, --output OUTDIR\n"
            "                 folder to write: model.c (generated source), program.h\n"
            "                 (the runtime ABI), params.bin (parameters and constants),\n"
            "                 model.so (the built program), cc.log (compiler output)\n"
            "  --batch N      compile for batch size N (the inputs' symbolic batch\n"
            "                 dimension; a model exported with a fixed batch can only be\n"
            "                 compiled for that batch). Default: the model's, or 1\n"
            "  --cc CC        C compiler command (default: $CC, else cc); flags used:\n"
            "                 -O2 -fPIC -shared -fopenmp -march=native, OpenBLAS from\n"
            "                 pkg-config\n"
            "  -q, --quiet    print nothing on success\n"
            "  -h, --help     show this help\n"
            "\n"
            "A generated file the C compiler rejects is kept, and its path is reported\n"
            "with the compiler's output. An op the backend cannot lower is reported\n"
            "with its node name (all such nodes at once).\n");
}

/* Fix the batch: symbolic batch dims become `batch`; a fixed first dim
 * that differs is an error (its Reshape constants would bake the old one). */
static ct_status apply_batch(ct_graph *g, int64_t batch, const char *path)
{
    int64_t fixed = 0;
    bool symbolic = false;
    for (int i = 0; i < g->n_inputs; i++) {
        const ct_value *v = g->inputs[i];
        for (int d = 0; d < v->shape.rank; d++)
            if (v->shape.dims[d] == CT_DIM_BATCH) symbolic = true;
        if (v->shape.rank > 0 && v->shape.dims[0] != CT_DIM_BATCH && !fixed) fixed = v->shape.dims[0];
    }
    if (batch > 0 && !symbolic && fixed && fixed != batch)
        return ct_errorf("%s: the model was exported with a fixed batch of %lld, so it cannot be compiled for "
                         "--batch %lld (export it with a dynamic batch axis, e.g. torch.onnx.export(..., "
                         "dynamic_axes={'input': {0: 'N'}}))",
                         path, (long long)fixed, (long long)batch);
    if (symbolic) ct_graph_set_batch(g, batch > 0 ? batch : 1);
    else if (!g->batch) g->batch = fixed > 0 ? fixed : 1;
    return CT_OK;
}

ct_status cli_compile_infer(const char *model_path, const char *outdir, const cli_compile_options *opt)
{
    ct_graph *g = NULL;
    ct_c_program prog;
    memset(&prog, 0, sizeof prog);
    ct_status st = ct_model_load(model_path, &g);
    if (st) return st;
    st = apply_batch(g, opt->batch, model_path);
    if (st) goto fail;
    ct_pass_options po = {0};
#ifdef CT_DEBUG
    po.verify = true;
#endif
    int n = 0;
    while (ct_default_pipeline[n]) n++;
    st = ct_pass_run(g, ct_default_pipeline, n, &po);
    if (st) goto fail;
    const char *plan[] = {"memory_plan"};
    st = ct_pass_run(g, plan, 1, &po);
    if (st) goto fail;
    st = ct_codegen_c(g, &prog);
    if (st) {
        st = ct_status_wrap(st, "%s", model_path);
        goto fail;
    }
    st = ct_codegen_c_write(&prog, outdir);
    if (st) goto fail;
    st = ct_codegen_c_build(outdir, opt->cc);
    if (st) goto fail;
    if (opt->verbose)
        printf("compiled %s -> %s/model.so: %d kernels, batch %lld, arena %.2f MiB (intermediates without reuse "
               "%.2f MiB, %.1f%%; im2col scratch %.2f MiB), persistent %.2f MiB\n",
               model_path, outdir, prog.n_kernels, (long long)g->batch, prog.arena_bytes / 1048576.0,
               prog.naive_bytes / 1048576.0,
               prog.naive_bytes ? 100.0 * (double)(prog.arena_bytes - prog.scratch_bytes) / (double)prog.naive_bytes : 0.0,
               prog.scratch_bytes / 1048576.0, prog.persist_bytes / 1048576.0);
fail:
    ct_c_program_free(&prog);
    ct_graph_free(g);
    return st;
}

int cmd_compile(int argc, char **argv)
{
    const char *model = NULL, *outdir = NULL;
    bool infer = false;
    cli_compile_options opt = {.verbose = true};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--infer")) infer = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) opt.verbose = false;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(a, "--cc") && i + 1 < argc) opt.cc = argv[++i];
        else if (!strcmp(a, "--batch") && i + 1 < argc) {
            char *end;
            long long b = strtoll(argv[++i], &end, 10);
            if (*end || b <= 0) {
                fprintf(stderr, "contra compile: --batch needs a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
            opt.batch = b;
        } else if (!strcmp(a, "--method")) {
            fprintf(stderr, "contra compile: --method (training) is not available yet; use --infer\n");
            return 2;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "contra compile: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) model = a;
        else {
            fprintf(stderr, "contra compile: more than one model given ('%s', '%s')\n", model, a);
            return 2;
        }
    }
    if (!model || !outdir || !infer) {
        fprintf(stderr, "contra compile: %s\n", !model ? "no model given" : !outdir ? "no output folder (-o OUTDIR)"
                                                                                   : "--infer is required");
        usage(stderr);
        return 2;
    }
    ct_status st = cli_compile_infer(model, outdir, &opt);
    if (st) return cli_fail(st);
    return 0;
}

/* cmd_compile.c — 'contra compile MODEL --infer -o OUTDIR': the inference
 * pipeline (load, batch, passes, memory plan), the C backend, and the build
 * of OUTDIR/model.so with the system C compiler; and 'contra compile MODEL
 * --method supervised': the training graph (head, loss, autodiff, optimizer)
 * and a trainer folder. */
#include "cmd_compile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "codegen.h"
#include "frontend.h"
#include "autodiff.h"
#include "optim.h"
#include "passes.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contra compile MODEL --infer -o OUTDIR [--batch N] [--cc CC]\n"
            "       contra compile MODEL --method supervised --classes C -o TRAINER_DIR [options]\n"
            "       contra compile MODEL --method moco-v2|moco-v1|simclr|supcon|byol|simsiam ...\n"
            "                      (contrastive methods: see 'contra compile --method moco-v2 --help')\n"
            "\n"
            "Compile an ONNX model (or ONNX text syntax) for inference: the graph is\n"
            "shape-inferred, folded and memory-planned, lowered to one generated C file\n"
            "and built into a shared library with the system C compiler and OpenBLAS.\n"
            "\n"
            "  --infer        compile the forward pass (inference)\n"
            "  --method supervised\n"
            "                 compile a training step: a Linear head (\"head.weight\",\n"
            "                 \"head.bias\", torch's default init from --seed) on the\n"
            "                 representation, softmax cross-entropy with an int64\n"
            "                 \"labels\" input, BatchNorm in training mode, gradients and\n"
            "                 the optimizer update; writes TRAINER_DIR/trainer (run it\n"
            "                 with --help) beside model.so, params.bin, trainer.txt\n"
            "  --classes C    number of classes of the head (required with --method)\n"
            "  --freeze-encoder\n"
            "                 linear evaluation: no encoder parameter is trained and its\n"
            "                 BatchNorm stays in inference form; only the head changes\n"
            "  --freeze A,B   freeze these parameters (names as in the model, or\n"
            "                 head.weight / head.bias)\n"
            "  --repr NAME    the value the head reads (default: the model's first output)\n"
            "  --optimizer sgd|adam|adamw|lars   (default sgd)\n"
            "  --lr LR        default learning rate for the trainer (0 < LR < 1000; 0.1)\n"
            "  --momentum M   SGD/LARS momentum in [0, 1) (default 0.9)\n"
            "  --weight-decay WD   >= 0 (default 0; adamw 0.01)\n"
            "  --nesterov     Nesterov momentum (SGD)\n"
            "  --betas B1,B2  Adam(W) betas (default 0.9,0.999); --eps E (default 1e-8)\n"
            "  --trust T      LARS trust coefficient (default 0.001); LARS excludes\n"
            "                 BatchNorm and bias parameters from adaptation and decay\n"
            "  --seed S       seed of the head's init (default 0)\n"
            "  -o, --output OUTDIR\n"
            "                 folder to write: model.c (generated source), program.h\n"
            "                 (the runtime ABI), params.bin (parameters and constants),\n"
            "                 model.so (the built program), cc.log (compiler output)\n"
            "  --batch N      compile for batch size N (the inputs' symbolic batch\n"
            "                 dimension; a model exported with a fixed batch can only be\n"
            "                 compiled for that batch). Default: the model's, or 1\n"
            "  --model NAME   a bundled encoder instead of MODEL: resnet18, resnet34,\n"
            "                 resnet50, resnet18_small, ... (see --method moco-v2 --help)\n"
            "  --cc CC        C compiler command (default: $CC, else cc); flags used:\n"
            "                 -O2 -fPIC -shared -fopenmp -march=native, OpenBLAS from\n"
            "                 pkg-config\n"
            "  --target c|cuda|cuda-emu\n"
            "                 backend (default c). cuda: OUTDIR/model.cu built by nvcc\n"
            "                 for sm_80 and sm_90 with cuBLAS (ptxas report in\n"
            "                 OUTDIR/ptxas.log; runs on a GPU). cuda-emu: the same\n"
            "                 model.cu built with the C compiler against the CPU\n"
            "                 emulation of CUDA (runtime/cuda_emu; slow, for testing).\n"
            "                 A CUDA trainer uploads each batch from pinned memory on a\n"
            "                 stream of its own while the step before runs, and replays\n"
            "                 the step as a CUDA graph captured once\n"
            "  --tf32         CUDA: GEMMs may use TF32 tensor cores (10-bit mantissa\n"
            "                 inputs; default: float32)\n"
            "  -q, --quiet    print nothing on success\n"
            "  -h, --help     show this help\n"
            "\n"
            "C target: 3x3 stride-1 convolutions with at least 16 channels in and out\n"
            "and at least 32 output tiles in the batch (forward, input and weight\n"
            "gradients) run as Winograd F(2x2, 3x3): 2.25x fewer multiplies, about\n"
            "twice the direct sum's float32 rounding. With --infer (weights fixed)\n"
            "they take F(4x4, 3x3) where it fits: 4x fewer multiplies, about 20x the\n"
            "direct rounding (enough to move ill-conditioned short training runs by\n"
            "more than 1e-4). The environment's CONTRA_WINOGRAD overrides: 2 or 4\n"
            "(that tile wherever it fits) or 0 (the direct implicit GEMM everywhere).\n"
            "A convolution whose output feeds only a Relu, or an Add then a Relu (an\n"
            "inference graph's residual block), does both in its output stores\n"
            "(FusedConv in 'contra dump --after fuse').\n"
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

ct_status cli_codegen_and_build(const ct_graph *g, const char *outdir, const cli_compile_options *opt,
                                ct_c_program *prog)
{
    if (opt->target == CLI_TARGET_C) {
        CT_TRY(ct_codegen_c(g, prog));
        CT_TRY(ct_codegen_c_write(prog, outdir));
        return ct_codegen_c_build(outdir, opt->cc);
    }
    CT_TRY(ct_codegen_cuda(g, opt->tf32, prog));
    CT_TRY(ct_codegen_cuda_write(prog, outdir));
    return ct_codegen_cuda_build(outdir, opt->cc, opt->target == CLI_TARGET_CUDA_EMU);
}

ct_status cli_compile_infer(const char *model_path, const char *outdir, const cli_compile_options *opt)
{
    ct_graph *g = NULL;
    ct_c_program prog;
    memset(&prog, 0, sizeof prog);
    ct_status st = cli_model_open(model_path, &g);
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
    /* fuse: BatchNorm (+ residual Add) + Relu in one kernel (both backends have it) */
    const char *plan[] = {"fuse", "memory_plan"};
    st = ct_pass_run(g, plan, 2, &po);
    if (st) goto fail;
    st = cli_codegen_and_build(g, outdir, opt, &prog);
    if (st) {
        st = ct_status_wrap(st, "%s", model_path);
        goto fail;
    }
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

/* ---------------------------------------------------------------- --method supervised */

/* Deterministic uniform floats in [-bound, bound) (splitmix64), for the head's
 * init: torch.nn.Linear's default (kaiming_uniform with a = sqrt(5) gives
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, the same for the bias). */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_uniform(float *p, int64_t n, double bound, uint64_t *seed)
{
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix(seed) >> 11) / 9007199254740992.0;
        p[i] = (float)((2 * u - 1) * bound);
    }
}

/* Mark PARAMs named in a comma-separated list frozen; an unknown name is an error. */
static ct_status freeze_list(ct_graph *g, const char *list)
{
    char *copy = strdup(list);
    if (!copy) abort();
    ct_status st = CT_OK;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        ct_value *v = ct_graph_find_value(g, t);
        if (!v || v->kind != CT_VALUE_PARAM) {
            st = ct_errorf("--freeze: '%s' is not a parameter of the model%s", t,
                           v ? " (it is not trainable)" : "");
            break;
        }
        v->frozen = true;
    }
    free(copy);
    return st;
}

static ct_status write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) return ct_errorf("cannot write %s", path);
    fputs(text, f);
    if (fclose(f)) return ct_errorf("cannot write %s", path);
    return CT_OK;
}

/* The trainer executable built beside this contra (build tree or install). */
ct_status cli_install_trainer(const char *outdir)
{
    char self[4096], cand[3][4200], dst[4200];
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return ct_errorf("cannot find the contra executable to locate contra-trainer");
    self[k] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    const char *env = getenv("CONTRA_TRAINER");
    snprintf(cand[0], sizeof cand[0], "%s", env && *env ? env : "");
    snprintf(cand[1], sizeof cand[1], "%s/../runtime/contra-trainer", self);
    snprintf(cand[2], sizeof cand[2], "%s/contra-trainer", self);
    const char *src = NULL;
    for (int i = 0; i < 3 && !src; i++)
        if (cand[i][0] && access(cand[i], X_OK) == 0) src = cand[i];
    if (!src) return ct_errorf("contra-trainer not found (looked at $CONTRA_TRAINER, %s, %s)", cand[1], cand[2]);
    snprintf(dst, sizeof dst, "%s/trainer", outdir);
    FILE *in = fopen(src, "rb");
    if (!in) return ct_errorf("cannot read %s", src);
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        fclose(in);
        return ct_errorf("cannot write %s", tmp);
    }
    char buf[65536];
    size_t r;
    bool ok = true;
    while ((r = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, r, out) != r) ok = false;
    fclose(in);
    if (fclose(out) || !ok || chmod(tmp, 0755) || rename(tmp, dst)) {
        remove(tmp);
        return ct_errorf("cannot write %s", dst);
    }
    return CT_OK;
}

ct_status cli_compile_supervised(const char *model_path, const char *outdir, const cli_train_options *t,
                                 const cli_compile_options *opt)
{
    ct_graph *g = NULL;
    ct_c_program prog;
    memset(&prog, 0, sizeof prog);
    char *meta = NULL;
    ct_status st = CT_OK;
    if (t->classes < 2) return ct_errorf("--classes must be at least 2 (got %lld)", (long long)t->classes);
    if (!(t->lr > 0 && t->lr < 1e3)) return ct_errorf("learning rate %g is out of range: it must be in (0, 1000)", t->lr);
    CT_TRY(ct_optim_options_check(&t->optim));
    CT_TRY(cli_model_open(model_path, &g));
    st = apply_batch(g, opt->batch, model_path);
    if (st) goto fail;
    ct_pass_options po = {0};
    int n = 0;
    while (ct_default_pipeline[n]) n++;
    if ((st = ct_pass_run(g, ct_default_pipeline, n, &po))) goto fail;
    if (g->n_inputs < 1 || g->n_outputs < 1) {
        st = ct_errorf("%s: the model needs an input and an output", model_path);
        goto fail;
    }
    if (t->freeze_encoder)
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i]->kind == CT_VALUE_PARAM) g->values[i]->frozen = true;
    ct_bn_train_options bo = {.splits = 1, .keep_eval = t->freeze_encoder, .quiet = t->freeze_encoder};
    if ((st = ct_bn_train(g, &bo))) goto fail;

    /* the representation */
    ct_value *rep = g->outputs[0];
    if (t->repr) {
        rep = ct_graph_find_value(g, t->repr);
        if (!rep) {
            st = ct_errorf("--repr: the model has no value named '%s'", t->repr);
            goto fail;
        }
    }
    if (!ct_dtype_is_float(rep->dtype) || rep->shape.rank < 2 || rep->shape.dims[0] != g->batch) {
        st = ct_errorf("representation '%s' must be a float tensor [batch, features...]", rep->name);
        goto fail;
    }
    if (rep->shape.rank > 2) {
        ct_value *fl = ct_graph_add_value(g, "head/flatten", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
        ct_node *fn = ct_graph_add_node(g, CT_OP_FLATTEN, "head/Flatten", 1, &rep, 1, &fl);
        ct_node_set_int(g, fn, "axis", 1);
        if ((st = ct_infer_node(g, fn))) goto fail;
        rep = fl;
    }
    int64_t F = rep->shape.dims[1], C = t->classes, N = g->batch;
    if (ct_graph_find_value(g, "head.weight") || ct_graph_find_value(g, "labels")) {
        st = ct_errorf("%s already has a value named 'head.weight' or 'labels'", model_path);
        goto fail;
    }
    float *w = calloc((size_t)(C * F + C), sizeof *w);
    if (!w) abort();
    uint64_t seed = t->seed;
    fill_uniform(w, C * F, 1.0 / sqrt((double)F), &seed);
    fill_uniform(w + C * F, C, 1.0 / sqrt((double)F), &seed);
    ct_shape ws = {.rank = 2, .dims = {C, F}}, bs = {.rank = 1, .dims = {C}}, ls = {.rank = 1, .dims = {N}};
    ct_value *hw = ct_graph_add_tensor(g, "head.weight", CT_VALUE_PARAM, rep->dtype, &ws, w);
    ct_value *hb = ct_graph_add_tensor(g, "head.bias", CT_VALUE_PARAM, rep->dtype, &bs, w + C * F);
    free(w);
    ct_value *logits = ct_graph_add_value(g, "logits", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_node *gemm = ct_graph_add_node(g, CT_OP_GEMM, "head/Gemm", 3, (ct_value *[]){rep, hw, hb}, 1, &logits);
    ct_node_set_int(g, gemm, "transB", 1);
    if ((st = ct_infer_node(g, gemm))) goto fail;
    ct_value *labels = ct_graph_add_value(g, "labels", CT_VALUE_INPUT, CT_I64, &ls);
    ct_graph_add_input(g, labels);
    ct_value *outs[2] = {ct_graph_add_value(g, "loss", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL),
                         ct_graph_add_value(g, "log_prob", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL)};
    ct_node *ce = ct_graph_add_node(g, CT_OP_SOFTMAX_CROSS_ENTROPY, "loss", 2, (ct_value *[]){logits, labels}, 2, outs);
    if ((st = ct_infer_node(g, ce))) goto fail;
    g->n_outputs = 0;
    ct_graph_add_output(g, outs[0]);
    ct_graph_add_output(g, logits);

    if (t->freeze && (st = freeze_list(g, t->freeze))) goto fail; /* may name the head too */
    int trainable = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->kind == CT_VALUE_PARAM && !g->values[i]->frozen) trainable++;
    if (!trainable) {
        st = ct_errorf("%s: no trainable parameters", model_path);
        goto fail;
    }
    ct_autodiff_result res = {0};
    ct_autodiff_options ao = {.result = &res};
    if ((st = ct_autodiff(g, outs[0], &ao))) goto fail;
    if ((st = ct_optim_attach(g, res.grads, res.n_grads, &t->optim))) goto fail;
    /* CT_DEBUG_NO_PLAN=1: no memory plan (every intermediate gets its own
     * bytes), to tell a planner bug from a kernel bug */
    const char *post[] = {"dce", "fuse", "memory_plan"};
    if ((st = ct_pass_run(g, post, getenv("CT_DEBUG_NO_PLAN") ? 2 : 3, &po))) goto fail;
    if ((st = cli_codegen_and_build(g, outdir, opt, &prog))) {
        st = ct_status_wrap(st, "%s", model_path);
        goto fail;
    }
    static const char *const onames[] = {"sgd", "adam", "adamw", "lars"};
    char path[4200];
    int len = 0;
    meta = malloc(8192);
    if (!meta) abort();
    len += snprintf(meta + len, 8192 - len, "contra-trainer 1\ninput %s\nlabels labels\nlr lr\nloss loss\n",
                    g->inputs[0]->name);
    len += snprintf(meta + len, 8192 - len, "batch %lld\nclasses %lld\noptimizer %s\nbase_lr %.9g\ntrainable %d\n",
                    (long long)N, (long long)C, onames[t->optim.kind], t->lr, res.n_grads);
    snprintf(path, sizeof path, "%s/trainer.txt", outdir);
    if ((st = write_text(path, meta))) goto fail;
    if ((st = cli_install_trainer(outdir))) goto fail;
    if (opt->verbose)
        printf("compiled %s -> %s/trainer (supervised, %s, %d trainable tensors%s): %d kernels, batch %lld, arena "
               "%.2f MiB, persistent %.2f MiB\n",
               model_path, outdir, onames[t->optim.kind], res.n_grads, t->freeze_encoder ? ", encoder frozen" : "",
               prog.n_kernels, (long long)N, prog.arena_bytes / 1048576.0, prog.persist_bytes / 1048576.0);
fail:
    free(meta);
    ct_c_program_free(&prog);
    ct_graph_free(g);
    return st;
}

int cmd_compile(int argc, char **argv)
{
    static char bundled[300];
    const char *model = NULL, *outdir = NULL, *method = NULL, *optname = "sgd";
    bool infer = false, nesterov = false;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--method") && strcmp(argv[i + 1], "supervised")) return cmd_compile_method(argc, argv);
    double momentum = NAN, wd = NAN, b1 = NAN, b2 = NAN, eps = NAN, trust = NAN;
    cli_compile_options opt = {.verbose = true};
    cli_train_options topt = {.lr = 0.1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--infer")) infer = true;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) opt.verbose = false;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) outdir = argv[++i];
        else if (!strcmp(a, "--model") && i + 1 < argc) {
            if (model) {
                fprintf(stderr, "contra compile: give either a model file or --model NAME, not both\n");
                return 2;
            }
            snprintf(bundled, sizeof bundled, "model:%s", argv[++i]);
            model = bundled;
        }
        else if (!strcmp(a, "--cc") && i + 1 < argc) opt.cc = argv[++i];
        else if (!strcmp(a, "--tf32")) opt.tf32 = true;
        else if (!strcmp(a, "--target") && i + 1 < argc) {
            const char *t = argv[++i];
            if (!strcmp(t, "c")) opt.target = CLI_TARGET_C;
            else if (!strcmp(t, "cuda")) opt.target = CLI_TARGET_CUDA;
            else if (!strcmp(t, "cuda-emu")) opt.target = CLI_TARGET_CUDA_EMU;
            else {
                fprintf(stderr, "contra compile: unknown target '%s' (known: c, cuda, cuda-emu)\n", t);
                return 2;
            }
        } else if (!strcmp(a, "--batch") && i + 1 < argc) {
            char *end;
            long long b = strtoll(argv[++i], &end, 10);
            if (*end || b <= 0) {
                fprintf(stderr, "contra compile: --batch needs a positive integer, got '%s'\n", argv[i]);
                return 2;
            }
            opt.batch = b;
        } else if (!strcmp(a, "--method") && i + 1 < argc) method = argv[++i];
        else if (!strcmp(a, "--freeze-encoder")) topt.freeze_encoder = true;
        else if (!strcmp(a, "--nesterov")) nesterov = true;
        else if (!strcmp(a, "--freeze") && i + 1 < argc) topt.freeze = argv[++i];
        else if (!strcmp(a, "--repr") && i + 1 < argc) topt.repr = argv[++i];
        else if (!strcmp(a, "--optimizer") && i + 1 < argc) optname = argv[++i];
        else if (!strcmp(a, "--betas") && i + 1 < argc) {
            char *end;
            b1 = strtod(argv[++i], &end);
            if (*end != ',' || (b2 = strtod(end + 1, &end), *end)) {
                fprintf(stderr, "contra compile: --betas needs B1,B2, got '%s'\n", argv[i]);
                return 2;
            }
        } else if ((!strcmp(a, "--classes") || !strcmp(a, "--lr") || !strcmp(a, "--momentum") ||
                    !strcmp(a, "--weight-decay") || !strcmp(a, "--eps") || !strcmp(a, "--trust") ||
                    !strcmp(a, "--seed")) && i + 1 < argc) {
            char *end;
            double v = strtod(argv[++i], &end);
            if (*end || !argv[i][0]) {
                fprintf(stderr, "contra compile: %s needs a number, got '%s'\n", a, argv[i]);
                return 2;
            }
            if (!strcmp(a, "--classes")) {
                if (v != floor(v) || v < 2 || v > 1e7) {
                    fprintf(stderr, "contra compile: --classes needs an integer >= 2, got '%s'\n", argv[i]);
                    return 2;
                }
                topt.classes = (int64_t)v;
            } else if (!strcmp(a, "--lr")) topt.lr = v;
            else if (!strcmp(a, "--momentum")) momentum = v;
            else if (!strcmp(a, "--weight-decay")) wd = v;
            else if (!strcmp(a, "--eps")) eps = v;
            else if (!strcmp(a, "--trust")) trust = v;
            else topt.seed = (uint64_t)v;
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
    if (!model || !outdir || (!infer && !method) || (infer && method)) {
        fprintf(stderr, "contra compile: %s\n", !model ? "no model given" : !outdir ? "no output folder (-o OUTDIR)"
                                                 : infer ? "--infer and --method exclude each other"
                                                         : "--infer or --method is required");
        usage(stderr);
        return 2;
    }
    if (method) {
        if (strcmp(method, "supervised")) {
            fprintf(stderr, "contra compile: unknown method '%s' (known: supervised)\n", method);
            return 2;
        }
        if (!topt.classes) {
            fprintf(stderr, "contra compile: --method supervised needs --classes C\n");
            return 2;
        }
        ct_optim_kind kind;
        if (!ct_optim_kind_parse(optname, &kind)) {
            fprintf(stderr, "contra compile: unknown optimizer '%s' (known: sgd, adam, adamw, lars)\n", optname);
            return 2;
        }
        ct_optim_options_default(&topt.optim, kind);
        if (!isnan(momentum)) topt.optim.momentum = momentum;
        if (!isnan(wd)) topt.optim.weight_decay = wd;
        if (!isnan(b1)) topt.optim.beta1 = b1, topt.optim.beta2 = b2;
        if (!isnan(eps)) topt.optim.eps = eps;
        if (!isnan(trust)) topt.optim.trust = trust;
        topt.optim.nesterov = nesterov;
        ct_status st = cli_compile_supervised(model, outdir, &topt, &opt);
        if (st) return cli_fail(st);
        return 0;
    }
    ct_status st = cli_compile_infer(model, outdir, &opt);
    if (st) return cli_fail(st);
    return 0;
}

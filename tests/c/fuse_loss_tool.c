/* fuse_loss_tool.c — test helper for the fused contrastive loss: builds
 * MoCo's loss subgraph on a query input q_raw [N, D] (l2norm, l_pos, l_neg
 * with a queue [D, K], Concat, /T, SoftmaxCrossEntropy with label 0) as
 * models/methods.c does, differentiates it with and without ct_fuse_loss, and
 * compares: the reference interpreter on both graphs, and the C backend's
 * tiled kernels on the fused one. Used by tests/test_fuse_loss.py.
 *   fuse_loss_tool N D K T TILE WORKDIR [--no-eval] [--tol X] [--pos A] [--time R]
 *   (--pos A: keys = normalise(A * q_raw + noise), default 0.3)
 * Prints "fused COUNT", "replaced LIST", "ref loss_unfused loss_fused loss_rel grad_rel",
 * "f64 loss_rel grad_rel (unfused vs float64) loss_rel grad_rel (fused vs float64)",
 * "c loss_rel grad_rel (C vs fused reference) grad_rel (C vs unfused reference)",
 * "arena unfused_plan_bytes fused_arena_bytes fused_scratch_bytes".
 * --no-eval: only the memory numbers (no reference run, no build); --time R:
 * also build the unfused graph and print "time fused_ms unfused_ms" (mean of R
 * forward + backward runs of each program). Exit 1 when
 * a relative difference exceeds the tolerance (default 1e-5) or on errors.
 *   fuse_loss_tool inbatch B V D T BASE_T TILE WORKDIR [--one] [--mask] [--tol X]
 * One InBatchContrastiveLoss node (SupCon/NT-Xent) on z_raw [V*B, D] (and a
 * label mask [B, B] with --mask; contrast_mode "one" with --one): the C
 * kernels against the reference interpreter, loss and dz_raw. Prints
 * "ref LOSS", "c loss_rel grad_rel", "arena ARENA_BYTES SCRATCH_BYTES". */
#include <math.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "codegen.h"
#include "eval.h"
#include "fuse_loss.h"
#include "ir.h"
#include "passes.h"
#include "runtime.h"

typedef struct {
    ct_graph *g;
    ct_status err;
} bld;

static ct_value *op(bld *b, ct_op o, const char *name, int n_in, ct_value *const *in, int n_out)
{
    if (b->err) return NULL;
    ct_value *outs[2];
    for (int i = 0; i < n_out; i++)
        outs[i] = ct_graph_add_value(b->g, ct_arena_printf(&b->g->arena, "%s:%d", name, i), CT_VALUE_TEMP,
                                     CT_DTYPE_UNDEFINED, NULL);
    ct_node *n = ct_graph_add_node(b->g, o, ct_arena_printf(&b->g->arena, "%s/op", name), n_in, in, n_out, outs);
    if (o == CT_OP_REDUCE_L2 || o == CT_OP_REDUCE_SUM) ct_node_set_int(b->g, n, "keepdims", 1);
    if (o == CT_OP_CONCAT) ct_node_set_int(b->g, n, "axis", 1);
    b->err = ct_infer_node(b->g, n);
    return b->err ? NULL : outs[0];
}

static ct_value *cst(bld *b, const char *name, ct_dtype t, int rank, const int64_t *dims, const void *data)
{
    ct_shape s = {.rank = rank};
    for (int i = 0; i < rank; i++) s.dims[i] = dims[i];
    return ct_graph_add_tensor(b->g, name, CT_VALUE_CONST, t, &s, data);
}

static uint64_t rng = 88172645463325252ull;
static double unif(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(unif() + 1e-300)) * cos(6.283185307179586 * unif())); }

/* The loss subgraph of models/methods.c's moco_pair on q_raw and k (inputs). */
static ct_graph *build(int64_t N, int64_t D, int64_t K, float T, const float *queue_data, ct_dtype t, ct_status *st)
{
    bld b = {.g = ct_graph_new("fuse_loss")};
    ct_graph *g = b.g;
    g->batch = N;
    ct_shape nd = {.rank = 2, .dims = {N, D}}, dk = {.rank = 2, .dims = {D, K}};
    ct_value *q = ct_graph_add_value(g, "q_raw", CT_VALUE_INPUT, t, &nd);
    ct_value *k = ct_graph_add_value(g, "k", CT_VALUE_INPUT, t, &nd);
    ct_graph_add_input(g, q);
    ct_graph_add_input(g, k);
    int64_t one = 1, ax = 1;
    double *qd = NULL; /* float64 graphs: the same queue, widened */
    if (t == CT_F64) {
        qd = malloc(sizeof(double) * (size_t)(D * K));
        for (int64_t i = 0; i < D * K; i++) qd[i] = queue_data[i];
    }
    ct_value *queue = ct_graph_add_tensor(g, "queue", CT_VALUE_STATE, t, &dk, qd ? (const void *)qd : queue_data);
    free(qd);
    float eps = 1e-12f, Tf = T;
    double eps_d = 1e-12, T_d = T;
    int64_t *zeros = calloc((size_t)N, sizeof *zeros);
    ct_value *nrm = op(&b, CT_OP_REDUCE_L2, "q_norm/l2", 2, (ct_value *[]){q, cst(&b, "axes", CT_I64, 1, &one, &ax)}, 1);
    ct_value *cl = op(&b, CT_OP_MAX, "q_norm/clamp", 2, (ct_value *[]){nrm, cst(&b, "eps", t, 0, NULL, t == CT_F64 ? (const void *)&eps_d : &eps)}, 1);
    ct_value *qn = op(&b, CT_OP_DIV, "q_norm", 2, (ct_value *[]){q, cl}, 1);
    ct_value *ks = op(&b, CT_OP_STOP_GRADIENT, "k_sg", 1, &k, 1);
    ct_value *qk = op(&b, CT_OP_MUL, "qk", 2, (ct_value *[]){qn, ks}, 1);
    ct_value *lpos = op(&b, CT_OP_REDUCE_SUM, "l_pos", 2, (ct_value *[]){qk, cst(&b, "axes2", CT_I64, 1, &one, &ax)}, 1);
    ct_value *lneg = op(&b, CT_OP_MATMUL, "l_neg", 2, (ct_value *[]){qn, queue}, 1);
    ct_value *lg = op(&b, CT_OP_CONCAT, "logits", 2, (ct_value *[]){lpos, lneg}, 1);
    ct_value *lt = op(&b, CT_OP_DIV, "logits_T", 2, (ct_value *[]){lg, cst(&b, "T", t, 0, NULL, t == CT_F64 ? (const void *)&T_d : &Tf)}, 1);
    ct_value *loss = op(&b, CT_OP_SOFTMAX_CROSS_ENTROPY, "ce", 2,
                        (ct_value *[]){lt, cst(&b, "labels", CT_I64, 1, &N, zeros)}, 2);
    free(zeros);
    if (b.err) {
        *st = b.err;
        ct_graph_free(g);
        return NULL;
    }
    ct_graph_add_output(g, loss);
    return g;
}

static ct_status differentiate(ct_graph *g)
{
    ct_value *q = ct_graph_find_value(g, "q_raw");
    if (!q) q = ct_graph_find_value(g, "z_raw");
    ct_autodiff_options ao = {.wrt = &q, .n_wrt = 1, .grads_as_outputs = true};
    ct_status st = ct_autodiff(g, g->outputs[0], &ao);
    if (st) return st;
    return ct_graph_toposort(g);
}

/* Reference run: loss and grad/q_raw into loss, grad (N*D), from q and k
 * (float32; widened for a float64 graph). */
static ct_status eval_ref(ct_graph *g, const float *q, const float *k, double *loss, float *grad)
{
    ct_value *qv = ct_graph_find_value(g, "q_raw");
    int64_t n = ct_shape_numel(&qv->shape);
    bool wide = qv->dtype == CT_F64;
    double *qd = wide ? malloc(sizeof(double) * (size_t)n) : NULL, *kd = wide ? malloc(sizeof(double) * (size_t)n) : NULL;
    for (int64_t i = 0; wide && i < n; i++) qd[i] = q[i], kd[i] = k[i];
    void **buf = calloc((size_t)g->n_values, sizeof *buf);
    bool *owned = calloc((size_t)g->n_values, sizeof *owned);
    for (int i = 0; i < g->n_values; i++) buf[i] = g->values[i]->data;
    buf[qv->id] = wide ? (void *)qd : (void *)q;
    buf[ct_graph_find_value(g, "k")->id] = wide ? (void *)kd : (void *)k;
    ct_status st = ct_eval_graph(g, buf, owned);
    if (!st) {
        const ct_value *gq = ct_autodiff_grad_of(g, qv);
        *loss = wide ? *(const double *)buf[g->outputs[0]->id] : *(const float *)buf[g->outputs[0]->id];
        for (int64_t i = 0; i < n; i++) grad[i] = wide ? (float)((const double *)buf[gq->id])[i] : ((const float *)buf[gq->id])[i];
    }
    free(qd);
    free(kd);
    for (int i = 0; i < g->n_values; i++)
        if (owned[i]) free(buf[i]);
    free(buf);
    free(owned);
    return st;
}

/* Build g's C program into dir and run it R times on q, k: mean milliseconds
 * per run (forward + backward), or a negative value on errors (in *st). */
static double time_program(const ct_graph *g, const char *dir, const float *q, const float *k, int64_t N, int64_t D,
                           int R, ct_status *st)
{
    ct_c_program prog = {0};
    ct_rt_program *rt = NULL;
    double ms = -1;
    int64_t dims[2] = {N, D};
    if ((*st = ct_codegen_c(g, &prog)) || (*st = ct_codegen_c_write(&prog, dir)) || (*st = ct_codegen_c_build(dir, NULL)) ||
        (*st = ct_rt_program_load(dir, &rt)))
        goto out;
    if ((*st = ct_rt_program_set_input(rt, "q_raw", CT_PT_FLOAT, 2, dims, q)) ||
        (*st = ct_rt_program_set_input(rt, "k", CT_PT_FLOAT, 2, dims, k)) || (*st = ct_rt_program_run(rt)))
        goto out;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < R; r++)
        if ((*st = ct_rt_program_run(rt))) goto out;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = ((double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-6) / R;
out:
    ct_rt_program_free(rt);
    ct_c_program_free(&prog);
    return ms;
}

static double max_rel(const float *a, const float *b, int64_t n)
{
    double d = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / fmax(m, 1e-30);
}

/* The in-batch mode (see the top of the file). */
static int run_inbatch(int argc, char **argv)
{
    if (argc < 9) {
        fprintf(stderr, "usage: fuse_loss_tool inbatch B V D T BASE_T TILE WORKDIR [--one] [--mask] [--tol X]\n");
        return 2;
    }
    int64_t B = atoll(argv[2]), V = atoll(argv[3]), D = atoll(argv[4]), tile = atoll(argv[7]), N = B * V;
    float T = (float)atof(argv[5]), bT = (float)atof(argv[6]);
    const char *dir = argv[8];
    bool one = false, use_mask = false;
    double tol = 1e-5;
    for (int i = 9; i < argc; i++) {
        if (!strcmp(argv[i], "--one")) one = true;
        else if (!strcmp(argv[i], "--mask")) use_mask = true;
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
    }
    ct_status st = CT_OK;
    ct_c_program prog = {0};
    ct_rt_program *rt = NULL;
    int rc = 1;
    float *z = malloc(sizeof(float) * (size_t)(N * D)), *mask = malloc(sizeof(float) * (size_t)(B * B));
    float *base = malloc(sizeof(float) * (size_t)(B * D)), *gr = malloc(sizeof(float) * (size_t)(N * D));
    for (int64_t i = 0; i < B * D; i++) base[i] = 2.0f * gauss();
    for (int64_t v = 0; v < V; v++) /* views of one sample: its base plus noise */
        for (int64_t i = 0; i < B * D; i++) z[v * B * D + i] = base[i] + gauss();
    int64_t *lab = malloc(sizeof(int64_t) * (size_t)B);
    for (int64_t i = 0; i < B; i++) lab[i] = (int64_t)(unif() * 3);
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) mask[i * B + j] = lab[i] == lab[j];
    free(lab);
    ct_graph *g = ct_graph_new("inbatch");
    g->batch = B;
    ct_shape nd = {.rank = 2, .dims = {N, D}}, bb = {.rank = 2, .dims = {B, B}};
    ct_value *zv = ct_graph_add_value(g, "z_raw", CT_VALUE_INPUT, CT_F32, &nd), *mv = NULL;
    ct_graph_add_input(g, zv);
    if (use_mask) {
        mv = ct_graph_add_value(g, "mask", CT_VALUE_INPUT, CT_F32, &bb);
        ct_graph_add_input(g, mv);
    }
    ct_value *outs[2] = {ct_graph_add_value(g, "loss", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL),
                         ct_graph_add_value(g, "stats", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL)};
    ct_node *n = ct_graph_add_node(g, CT_OP_INBATCH_CONTRASTIVE_LOSS, "supcon", use_mask ? 2 : 1,
                                   (ct_value *[]){zv, mv}, 2, outs);
    ct_node_set_float(g, n, "temperature", T);
    ct_node_set_float(g, n, "base_temperature", bT);
    ct_node_set_int(g, n, "views", V);
    ct_node_set_int(g, n, "contrast_all", !one);
    if (tile > 0) ct_node_set_int(g, n, "tile", tile);
    ct_graph_add_output(g, outs[0]);
    if ((st = ct_infer_node(g, n)) || (st = differentiate(g))) goto out;
    ct_value *gv = ct_autodiff_grad_of(g, zv);
    /* the reference */
    void **buf = calloc((size_t)g->n_values, sizeof *buf);
    bool *owned = calloc((size_t)g->n_values, sizeof *owned);
    for (int i = 0; i < g->n_values; i++) buf[i] = g->values[i]->data;
    buf[zv->id] = z;
    if (mv) buf[mv->id] = mask;
    st = ct_eval_graph(g, buf, owned);
    double loss = st ? 0 : *(const float *)buf[outs[0]->id];
    if (!st) memcpy(gr, buf[gv->id], sizeof(float) * (size_t)(N * D));
    for (int i = 0; i < g->n_values; i++)
        if (owned[i]) free(buf[i]);
    free(buf);
    free(owned);
    if (st) goto out;
    printf("ref %.9g\n", loss);
    /* the C kernels */
    const char *plan[] = {"infer_shapes", "memory_plan"};
    ct_pass_options po = {0};
    if ((st = ct_pass_run(g, plan, 2, &po)) || (st = ct_codegen_c(g, &prog))) goto out;
    printf("arena %lld %lld\n", (long long)prog.arena_bytes, (long long)prog.scratch_bytes);
    if ((st = ct_codegen_c_write(&prog, dir)) || (st = ct_codegen_c_build(dir, NULL)) ||
        (st = ct_rt_program_load(dir, &rt)))
        goto out;
    int64_t dims[2] = {N, D}, mdims[2] = {B, B};
    if ((st = ct_rt_program_set_input(rt, "z_raw", CT_PT_FLOAT, 2, dims, z)) ||
        (mv && (st = ct_rt_program_set_input(rt, "mask", CT_PT_FLOAT, 2, mdims, mask))) ||
        (st = ct_rt_program_run(rt)))
        goto out;
    const float *cl = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "loss"));
    const float *cg = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "grad/z_raw"));
    double lrel = fabs((double)cl[0] - loss) / fmax(fabs(loss), 1e-30), grel = max_rel(cg, gr, N * D);
    printf("c %.3g %.3g\n", lrel, grel);
    rc = lrel <= tol && grel <= tol ? 0 : 1;
    if (rc) fprintf(stderr, "fuse_loss_tool: a relative difference exceeds %g\n", tol);
out:
    if (st) {
        fprintf(stderr, "fuse_loss_tool: %s\n", ct_status_msg(st));
        ct_status_free(st);
        rc = 1;
    }
    ct_rt_program_free(rt);
    ct_c_program_free(&prog);
    ct_graph_free(g);
    free(z), free(mask), free(base), free(gr);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "inbatch")) return run_inbatch(argc, argv);
    if (argc < 7) {
        fprintf(stderr, "usage: fuse_loss_tool N D K T TILE WORKDIR [--no-eval] [--tol X] [--pos A] [--time R]\n");
        return 2;
    }
    int64_t N = atoll(argv[1]), D = atoll(argv[2]), K = atoll(argv[3]), tile = atoll(argv[5]);
    float T = (float)atof(argv[4]);
    const char *dir = argv[6];
    bool eval = true;
    double tol = 1e-5, pos = 0.3;
    int time_runs = 0;
    for (int i = 7; i < argc; i++) {
        if (!strcmp(argv[i], "--no-eval")) eval = false;
        else if (!strcmp(argv[i], "--time") && i + 1 < argc) time_runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pos") && i + 1 < argc) pos = atof(argv[++i]);
        else if (!strcmp(argv[i], "--tol") && i + 1 < argc) tol = atof(argv[++i]);
    }
    ct_status st = CT_OK;
    ct_graph *gu = NULL, *gf = NULL;
    ct_c_program prog = {0};
    ct_rt_program *rt = NULL;
    int rc = 1;
    float *queue = malloc(sizeof(float) * (size_t)(D * K)), *q = malloc(sizeof(float) * (size_t)(N * D));
    float *k = malloc(sizeof(float) * (size_t)(N * D));
    float *gr_u = malloc(sizeof(float) * (size_t)(N * D)), *gr_f = malloc(sizeof(float) * (size_t)(N * D));
    for (int64_t i = 0; i < D * K; i++) queue[i] = gauss();
    for (int64_t c = 0; c < K; c++) { /* normalised columns, as the MoCo queue */
        double s = 0;
        for (int64_t r = 0; r < D; r++) s += (double)queue[r * K + c] * queue[r * K + c];
        for (int64_t r = 0; r < D; r++) queue[r * K + c] = (float)(queue[r * K + c] / sqrt(s));
    }
    for (int64_t i = 0; i < N * D; i++) q[i] = 3.0f * gauss(), k[i] = gauss();
    for (int64_t i = 0; i < N; i++) { /* keys: normalised, pos * query + noise (a positive pair) */
        double s = 0;
        for (int64_t d = 0; d < D; d++) k[i * D + d] = (float)pos * q[i * D + d] + k[i * D + d];
        for (int64_t d = 0; d < D; d++) s += (double)k[i * D + d] * k[i * D + d];
        for (int64_t d = 0; d < D; d++) k[i * D + d] = (float)(k[i * D + d] / sqrt(s));
    }

    if (!(gu = build(N, D, K, T, queue, CT_F32, &st)) || !(gf = build(N, D, K, T, queue, CT_F32, &st))) goto out;
    int nf = 0;
    if ((st = ct_fuse_loss(gf, &nf))) goto out;
    printf("fused %d\n", nf);
    for (int i = 0; i < gf->n_nodes; i++)
        if (gf->nodes[i]->op == CT_OP_CONTRASTIVE_LOSS) {
            if (tile > 0) ct_node_set_int(gf, gf->nodes[i], "tile", tile);
            printf("replaced %s\n", gf->nodes[i]->fused_from ? gf->nodes[i]->fused_from : "(none)");
        }
    if (nf != 1) {
        fprintf(stderr, "fuse_loss_tool: expected one fusion, got %d\n", nf);
        goto out;
    }
    if ((st = differentiate(gu)) || (st = differentiate(gf))) goto out;
    for (int i = 0; i < gf->n_nodes; i++)
        if (gf->nodes[i]->op == CT_OP_CONTRASTIVE_LOSS_GRAD && tile > 0) ct_node_set_int(gf, gf->nodes[i], "tile", tile);
    bool ok = true;
    double lu = 0, lf = 0;
    if (eval) {
        if ((st = eval_ref(gu, q, k, &lu, gr_u)) || (st = eval_ref(gf, q, k, &lf, gr_f))) goto out;
        double lrel = fabs(lf - lu) / fmax(fabs(lu), 1e-30), grel = max_rel(gr_f, gr_u, N * D);
        printf("ref %.9g %.9g %.3g %.3g\n", lu, lf, lrel, grel);
        ok &= lrel <= tol && grel <= tol;
        /* the unfused graph in float64: how far each float32 result is from the exact one */
        double l64 = 0;
        float *gr64 = malloc(sizeof(float) * (size_t)(N * D));
        ct_graph *g64 = build(N, D, K, T, queue, CT_F64, &st);
        if (g64 && !(st = differentiate(g64))) st = eval_ref(g64, q, k, &l64, gr64);
        ct_graph_free(g64);
        if (!st)
            printf("f64 %.3g %.3g %.3g %.3g\n", fabs(lu - l64) / fabs(l64), max_rel(gr_u, gr64, N * D),
                   fabs(lf - l64) / fabs(l64), max_rel(gr_f, gr64, N * D));
        free(gr64);
        if (st) goto out;
    }
    /* memory: the unfused graph's planned arena, the fused program's arena + scratch */
    const char *plan[] = {"infer_shapes", "memory_plan"};
    ct_pass_options po = {0};
    if ((st = ct_pass_run(gu, plan, 2, &po)) || (st = ct_pass_run(gf, plan, 2, &po))) goto out;
    if ((st = ct_codegen_c(gf, &prog))) goto out;
    printf("arena %lld %lld %lld\n", (long long)gu->arena_bytes, (long long)prog.arena_bytes,
           (long long)prog.scratch_bytes);
    if (eval) {
        if ((st = ct_codegen_c_write(&prog, dir)) || (st = ct_codegen_c_build(dir, NULL))) goto out;
        if ((st = ct_rt_program_load(dir, &rt))) goto out;
        int64_t dims[2] = {N, D};
        if ((st = ct_rt_program_set_input(rt, "q_raw", CT_PT_FLOAT, 2, dims, q)) ||
            (st = ct_rt_program_set_input(rt, "k", CT_PT_FLOAT, 2, dims, k)) || (st = ct_rt_program_run(rt)))
            goto out;
        const float *cl = ct_rt_program_tensor(rt, ct_rt_program_find(rt, gf->outputs[0]->name));
        const float *cg = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "grad/q_raw"));
        double lrel = fabs((double)cl[0] - lf) / fmax(fabs(lf), 1e-30), grel = max_rel(cg, gr_f, N * D);
        double grel_u = max_rel(cg, gr_u, N * D);
        printf("c %.3g %.3g %.3g\n", lrel, grel, grel_u);
        ok &= lrel <= tol && grel <= tol && grel_u <= tol;
    }
    if (time_runs > 0) { /* both programs, forward + backward, single-threaded BLAS as configured */
        char du[4096];
        snprintf(du, sizeof du, "%s/unfused", dir);
        double tf = time_program(gf, dir, q, k, N, D, time_runs, &st);
        if (st) goto out;
        double tu = time_program(gu, du, q, k, N, D, time_runs, &st);
        if (st) goto out;
        printf("time %.3f %.3f\n", tf, tu);
    }
    rc = ok ? 0 : 1;
    if (!ok) fprintf(stderr, "fuse_loss_tool: a relative difference exceeds %g\n", tol);
out:
    if (st) {
        fprintf(stderr, "fuse_loss_tool: %s\n", ct_status_msg(st));
        ct_status_free(st);
        rc = 1;
    }
    ct_rt_program_free(rt);
    ct_c_program_free(&prog);
    ct_graph_free(gu);
    ct_graph_free(gf);
    free(queue), free(q), free(k), free(gr_u), free(gr_f);
    return rc;
}

/* test_passes.c — the core passes on small graphs built with the IR's C API:
 * shape/type inference of each op (awkward cases included), error messages,
 * folding of exporter shape chains, constant folding, DCE, CSE, pass manager.
 * Prints "N passed, N failed" last and exits non-zero on failure. */
#include <stdarg.h>
#include <string.h>

#include "ir.h"
#include "passes.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            n_pass++;                                                                              \
        } else {                                                                                   \
            n_fail++;                                                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------- builders */

static ct_shape shp(int rank, ...)
{
    ct_shape s = {.rank = rank};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++) s.dims[i] = va_arg(ap, int64_t);
    va_end(ap);
    return s;
}
#define N CT_DIM_BATCH
#define S(...) shp(__VA_ARGS__)
#define D(x) ((int64_t)(x))

static ct_value *in_f32(ct_graph *g, const char *name, ct_shape s)
{
    ct_value *v = ct_graph_add_value(g, name, CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, v);
    return v;
}

static ct_value *param(ct_graph *g, const char *name, ct_shape s)
{
    return ct_graph_add_tensor(g, name, CT_VALUE_PARAM, CT_F32, &s, NULL);
}

static ct_value *ints(ct_graph *g, const char *name, int count, ...)
{
    int64_t v[16];
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) v[i] = va_arg(ap, int64_t);
    va_end(ap);
    ct_shape s = {.rank = 1, .dims = {count}};
    return ct_graph_add_tensor(g, name, CT_VALUE_CONST, CT_I64, &s, v);
}

static ct_value *scalar_i64(ct_graph *g, const char *name, int64_t x)
{
    ct_shape s = {.rank = 0};
    return ct_graph_add_tensor(g, name, CT_VALUE_CONST, CT_I64, &s, &x);
}

static ct_value *tmp(ct_graph *g, const char *name) { return ct_graph_add_value(g, name, CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL); }

/* A node with one fresh output named after it; inputs NULL-terminated. */
static ct_node *op1(ct_graph *g, ct_op op, const char *name, ...)
{
    ct_value *in[16];
    int k = 0;
    va_list ap;
    va_start(ap, name);
    for (ct_value *v; (v = va_arg(ap, ct_value *)) != NULL;) in[k++] = v;
    va_end(ap);
    ct_value *out = tmp(g, ct_arena_printf(&g->arena, "%s_out", name));
    return ct_graph_add_node(g, op, name, k, in, 1, &out);
}

static const char *shape_of(const ct_value *v, char *buf)
{
    if (!v->shape_known) return "?";
    return ct_shape_str(&v->shape, buf, 128);
}

#define EXPECT_SHAPE(v, want)                                                                      \
    do {                                                                                           \
        char b_[128];                                                                              \
        const char *got_ = shape_of((v), b_);                                                      \
        CHECK(!strcmp(got_, (want)), "%s: shape %s, expected %s", (v)->name, got_, (want));        \
    } while (0)

/* Run shape inference; report (and free) any error. */
static bool infer_ok(ct_graph *g, const char *what)
{
    ct_status st = ct_pass_infer_shapes(g);
    CHECK(!st, "%s: inference failed: %s", what, st ? ct_status_msg(st) : "");
    if (st) {
        ct_status_free(st);
        return false;
    }
    ct_status vs = ct_graph_verify(g);
    CHECK(!vs, "%s: verifier: %s", what, vs ? ct_status_msg(vs) : "");
    ct_status_free(vs);
    return true;
}

/* Inference must fail with a message containing every given fragment. */
static void infer_fails(ct_graph *g, const char *what, ...)
{
    ct_status st = ct_pass_infer_shapes(g);
    CHECK(st, "%s: inference should have failed", what);
    if (!st) return;
    const char *msg = ct_status_msg(st);
    va_list ap;
    va_start(ap, what);
    for (const char *frag; (frag = va_arg(ap, const char *)) != NULL;)
        CHECK(strstr(msg, frag), "%s: message lacks '%s': %s", what, frag, msg);
    va_end(ap);
    ct_status_free(st);
}

/* One-node graph on a fresh graph: returns the node's output after inference. */
#define NEW_GRAPH() ct_graph *g = ct_graph_new("t")

/* ---------------------------------------------------------------- conv and pooling */

static void test_conv(void)
{
    {
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(4, N, D(3), D(224), D(224)));
        ct_node *c = op1(g, CT_OP_CONV, "conv1", x, param(g, "w", S(4, D(64), D(3), D(7), D(7))), NULL);
        ct_node_set_ints(g, c, "strides", (int64_t[]){2, 2}, 2);
        ct_node_set_ints(g, c, "pads", (int64_t[]){3, 3, 3, 3}, 4);
        if (infer_ok(g, "conv stem")) EXPECT_SHAPE(c->out[0], "[N,64,112,112]");
        CHECK(c->out[0]->dtype == CT_F32, "conv dtype");
        ct_graph_free(g);
    }
    {   /* SAME_UPPER with stride 2 on an odd size, dilation, group, bias */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(4, D(2), D(32), D(15), D(17)));
        ct_node *c = op1(g, CT_OP_CONV, "dw", x, param(g, "w", S(4, D(32), D(1), D(3), D(3))),
                         param(g, "b", S(1, D(32))), NULL);
        ct_node_set_int(g, c, "group", 32);
        ct_node_set_string(g, c, "auto_pad", "SAME_UPPER");
        ct_node_set_ints(g, c, "strides", (int64_t[]){2, 2}, 2);
        ct_node *d = op1(g, CT_OP_CONV, "dil", x, param(g, "w2", S(4, D(8), D(8), D(3), D(3))), NULL);
        ct_node_set_int(g, d, "group", 4);
        ct_node_set_ints(g, d, "dilations", (int64_t[]){2, 3}, 2);
        ct_node *v = op1(g, CT_OP_CONV, "valid", x, param(g, "w3", S(4, D(4), D(32), D(4), D(4))), NULL);
        ct_node_set_string(g, v, "auto_pad", "VALID");
        ct_node_set_ints(g, v, "strides", (int64_t[]){3, 3}, 2);
        if (infer_ok(g, "conv same/dil/valid")) {
            EXPECT_SHAPE(c->out[0], "[2,32,8,9]");
            EXPECT_SHAPE(d->out[0], "[2,8,11,11]");  /* 15-(2*2+1)+1, 17-(2*3+1)+1 */
            EXPECT_SHAPE(v->out[0], "[2,4,4,5]");    /* (15-4)/3+1, (17-4)/3+1 */
        }
        ct_graph_free(g);
    }
    {   /* channel mismatch */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(4, D(1), D(3), D(8), D(8)));
        op1(g, CT_OP_CONV, "badconv", x, param(g, "w", S(4, D(16), D(4), D(3), D(3))), NULL);
        infer_fails(g, "conv channels", "node 'badconv' (Conv)", "[1,3,8,8]", "[16,4,3,3]", NULL);
        ct_graph_free(g);
    }
    {   /* group inconsistent with output channels */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(4, D(1), D(6), D(8), D(8)));
        ct_node *c = op1(g, CT_OP_CONV, "gconv", x, param(g, "w", S(4, D(5), D(2), D(3), D(3))), NULL);
        ct_node_set_int(g, c, "group", 3);
        infer_fails(g, "conv group", "node 'gconv' (Conv)", "group 3", NULL);
        ct_graph_free(g);
    }
    {   /* bias of the wrong size */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(4, D(1), D(3), D(8), D(8)));
        op1(g, CT_OP_CONV, "cb", x, param(g, "w", S(4, D(4), D(3), D(3), D(3))), param(g, "b", S(1, D(5))), NULL);
        infer_fails(g, "conv bias", "node 'cb' (Conv)", "bias", NULL);
        ct_graph_free(g);
    }
}

static void test_pool(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, N, D(64), D(112), D(112)));
    ct_node *m = op1(g, CT_OP_MAX_POOL, "mp", x, NULL);
    ct_node_set_ints(g, m, "kernel_shape", (int64_t[]){3, 3}, 2);
    ct_node_set_ints(g, m, "strides", (int64_t[]){2, 2}, 2);
    ct_node_set_ints(g, m, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    /* ceil_mode: 6 with k=3,s=2,p=0: ceil((6-3)/2)+1 = 3 (floor would give 2) */
    ct_value *y = in_f32(g, "y", S(4, D(1), D(2), D(6), D(6)));
    ct_node *c = op1(g, CT_OP_MAX_POOL, "ceil", y, NULL);
    ct_node_set_ints(g, c, "kernel_shape", (int64_t[]){3, 3}, 2);
    ct_node_set_ints(g, c, "strides", (int64_t[]){2, 2}, 2);
    ct_node_set_int(g, c, "ceil_mode", 1);
    /* the last-window rule: 5, k=2, s=2, pad 1/1: ceil((7-2)/2)+1 = 4, but the
     * 4th window would start at 6 >= 5+1, so 3 */
    ct_value *z = in_f32(g, "z", S(4, D(1), D(1), D(5), D(5)));
    ct_node *lw = op1(g, CT_OP_AVERAGE_POOL, "lastwin", z, NULL);
    ct_node_set_ints(g, lw, "kernel_shape", (int64_t[]){2, 2}, 2);
    ct_node_set_ints(g, lw, "strides", (int64_t[]){2, 2}, 2);
    ct_node_set_ints(g, lw, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ct_node_set_int(g, lw, "ceil_mode", 1);
    ct_node *gap = op1(g, CT_OP_GLOBAL_AVERAGE_POOL, "gap", x, NULL);
    ct_node *su = op1(g, CT_OP_AVERAGE_POOL, "same", y, NULL);
    ct_node_set_ints(g, su, "kernel_shape", (int64_t[]){3, 3}, 2);
    ct_node_set_ints(g, su, "strides", (int64_t[]){4, 4}, 2);
    ct_node_set_string(g, su, "auto_pad", "SAME_LOWER");
    if (infer_ok(g, "pools")) {
        EXPECT_SHAPE(m->out[0], "[N,64,56,56]");
        EXPECT_SHAPE(c->out[0], "[1,2,3,3]");
        EXPECT_SHAPE(lw->out[0], "[1,1,3,3]");
        EXPECT_SHAPE(gap->out[0], "[N,64,1,1]");
        EXPECT_SHAPE(su->out[0], "[1,2,2,2]");
    }
    ct_graph_free(g);
}

static void test_batch_norm(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, N, D(16), D(8), D(8)));
    ct_value *ins[5] = {x, param(g, "s", S(1, D(16))), param(g, "b", S(1, D(16))), param(g, "m", S(1, D(16))),
                        param(g, "v", S(1, D(16)))};
    ct_value *outs[3] = {tmp(g, "y"), tmp(g, "rm"), tmp(g, "rv")};
    ct_node *bn = ct_graph_add_node(g, CT_OP_BATCH_NORM, "bn", 5, ins, 3, outs);
    ct_node_set_int(g, bn, "training_mode", 1);
    if (infer_ok(g, "bn")) {
        EXPECT_SHAPE(outs[0], "[N,16,8,8]");
        EXPECT_SHAPE(outs[1], "[16]");
        EXPECT_SHAPE(outs[2], "[16]");
    }
    ct_graph_free(g);
    ct_graph *g2 = ct_graph_new("t");
    ct_value *x2 = in_f32(g2, "x", S(4, D(1), D(16), D(8), D(8)));
    ct_value *ins2[5] = {x2, param(g2, "s", S(1, D(16))), param(g2, "b", S(1, D(15))), param(g2, "m", S(1, D(16))),
                         param(g2, "v", S(1, D(16)))};
    ct_value *o2 = tmp(g2, "y");
    ct_graph_add_node(g2, CT_OP_BATCH_NORM, "bn_bad", 5, ins2, 1, &o2);
    infer_fails(g2, "bn mismatch", "node 'bn_bad' (BatchNormalization)", "[15]", NULL);
    ct_graph_free(g2);
}

/* ---------------------------------------------------------------- linear algebra and elementwise */

static void test_gemm_matmul(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(2, N, D(512)));
    ct_node *fc = op1(g, CT_OP_GEMM, "fc", x, param(g, "w", S(2, D(1000), D(512))), param(g, "b", S(1, D(1000))), NULL);
    ct_node_set_int(g, fc, "transB", 1);
    ct_value *a = in_f32(g, "a", S(2, D(7), D(3)));
    ct_node *ta = op1(g, CT_OP_GEMM, "ta", a, param(g, "w2", S(2, D(7), D(5))), NULL);
    ct_node_set_int(g, ta, "transA", 1);
    ct_value *b3 = in_f32(g, "b3", S(3, D(4), D(5), D(6)));
    ct_value *c4 = in_f32(g, "c4", S(4, D(2), D(1), D(6), D(7)));
    ct_node *mm = op1(g, CT_OP_MATMUL, "bmm", b3, c4, NULL);
    ct_value *v1 = in_f32(g, "v1", S(1, D(6)));
    ct_node *vm = op1(g, CT_OP_MATMUL, "vecmat", v1, c4, NULL);
    ct_node *mv = op1(g, CT_OP_MATMUL, "matvec", b3, v1, NULL);
    ct_node *vv = op1(g, CT_OP_MATMUL, "dot", v1, v1, NULL);
    if (infer_ok(g, "gemm/matmul")) {
        EXPECT_SHAPE(fc->out[0], "[N,1000]");
        EXPECT_SHAPE(ta->out[0], "[3,5]");
        EXPECT_SHAPE(mm->out[0], "[2,4,5,7]");
        EXPECT_SHAPE(vm->out[0], "[2,1,7]");
        EXPECT_SHAPE(mv->out[0], "[4,5]");
        EXPECT_SHAPE(vv->out[0], "[]");
    }
    ct_graph_free(g);
    ct_graph *g2 = ct_graph_new("t");
    ct_value *p = in_f32(g2, "p", S(2, D(3), D(4)));
    op1(g2, CT_OP_MATMUL, "mm_bad", p, param(g2, "q", S(2, D(5), D(2))), NULL);
    infer_fails(g2, "matmul mismatch", "node 'mm_bad' (MatMul)", "[3,4]", "[5,2]", NULL);
    ct_graph_free(g2);
    ct_graph *g3 = ct_graph_new("t");
    ct_value *r = in_f32(g3, "r", S(2, D(3), D(4)));
    ct_node *gb = op1(g3, CT_OP_GEMM, "gemm_bias", r, param(g3, "w", S(2, D(4), D(6))), param(g3, "c", S(2, D(2), D(6))), NULL);
    (void)gb;
    infer_fails(g3, "gemm bias", "node 'gemm_bias' (Gemm)", "[2,6]", "[3,6]", NULL);
    ct_graph_free(g3);
}

static void test_broadcast(void)
{
    NEW_GRAPH();
    ct_value *a = in_f32(g, "a", S(4, N, D(64), D(1), D(1)));
    ct_value *b = in_f32(g, "b", S(4, N, D(64), D(28), D(28)));
    ct_value *c = in_f32(g, "c", S(1, D(28)));
    ct_value *s = in_f32(g, "s", S(0));
    ct_node *mul = op1(g, CT_OP_MUL, "se_mul", a, b, NULL);
    ct_node *add = op1(g, CT_OP_ADD, "add_c", c, b, NULL);
    ct_node *sc = op1(g, CT_OP_DIV, "div_s", b, s, NULL);
    ct_node *mx = op1(g, CT_OP_MAX, "max3", s, c, a, NULL);
    ct_node *eq = op1(g, CT_OP_EQUAL, "eq", c, c, NULL);
    ct_node *wh = op1(g, CT_OP_WHERE, "where", eq->out[0], c, s, NULL);
    ct_node *r = op1(g, CT_OP_RELU, "relu", b, NULL);
    ct_node *hs = op1(g, CT_OP_HARD_SWISH, "hs", r->out[0], NULL);
    ct_node *cast = op1(g, CT_OP_CAST, "cast", b, NULL);
    ct_node_set_int(g, cast, "to", 7);
    ct_value *dro[2] = {tmp(g, "drop_y"), tmp(g, "drop_mask")};
    ct_graph_add_node(g, CT_OP_DROPOUT, "drop", 1, &b, 2, dro);
    if (infer_ok(g, "broadcast")) {
        EXPECT_SHAPE(mul->out[0], "[N,64,28,28]");
        EXPECT_SHAPE(add->out[0], "[N,64,28,28]");
        EXPECT_SHAPE(sc->out[0], "[N,64,28,28]");
        EXPECT_SHAPE(mx->out[0], "[N,64,1,28]");
        EXPECT_SHAPE(eq->out[0], "[28]");
        CHECK(eq->out[0]->dtype == CT_BOOL, "Equal gives bool");
        EXPECT_SHAPE(wh->out[0], "[28]");
        CHECK(wh->out[0]->dtype == CT_F32, "Where dtype");
        EXPECT_SHAPE(hs->out[0], "[N,64,28,28]");
        CHECK(cast->out[0]->dtype == CT_I64, "Cast to int64");
        EXPECT_SHAPE(dro[1], "[N,64,28,28]");
        CHECK(dro[1]->dtype == CT_BOOL, "Dropout mask is bool");
    }
    ct_graph_free(g);
    ct_graph *g2 = ct_graph_new("t");
    ct_value *p = in_f32(g2, "p", S(3, D(2), D(3), D(4)));
    ct_value *q = in_f32(g2, "q", S(2, D(5), D(4)));
    op1(g2, CT_OP_ADD, "bad_add", p, q, NULL);
    infer_fails(g2, "broadcast mismatch", "node 'bad_add' (Add)", "[2,3,4]", "[5,4]", NULL);
    ct_graph_free(g2);
}

/* ---------------------------------------------------------------- data movement */

static void test_reshape_family(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, N, D(512), D(1), D(1)));
    ct_node *r0 = op1(g, CT_OP_RESHAPE, "r0", x, ints(g, "s0", 2, D(0), D(-1)), NULL);
    ct_node *r1 = op1(g, CT_OP_RESHAPE, "r1", x, ints(g, "s1", 2, D(-1), D(512)), NULL);
    ct_value *y = in_f32(g, "y", S(3, D(2), D(3), D(4)));
    ct_node *r2 = op1(g, CT_OP_RESHAPE, "r2", y, ints(g, "s2", 3, D(4), D(0), D(-1)), NULL);
    ct_node *fl = op1(g, CT_OP_FLATTEN, "flat", x, NULL);
    ct_node *f2 = op1(g, CT_OP_FLATTEN, "flat_neg", y, NULL);
    ct_node_set_int(g, f2, "axis", -1);
    ct_node *f0 = op1(g, CT_OP_FLATTEN, "flat0", y, NULL);
    ct_node_set_int(g, f0, "axis", 0);
    ct_node *tr = op1(g, CT_OP_TRANSPOSE, "tr", y, NULL);
    ct_node_set_ints(g, tr, "perm", (int64_t[]){2, 0, 1}, 3);
    ct_node *trd = op1(g, CT_OP_TRANSPOSE, "trd", y, NULL);
    ct_node *sq = op1(g, CT_OP_SQUEEZE, "sq", x, ints(g, "ax_sq", 2, D(-1), D(2)), NULL);
    ct_node *us = op1(g, CT_OP_UNSQUEEZE, "us", y, ints(g, "ax_us", 2, D(-1), D(0)), NULL);
    ct_node *cc = op1(g, CT_OP_CONCAT, "cat", y, y, NULL);
    ct_node_set_int(g, cc, "axis", -2);
    ct_node *ex = op1(g, CT_OP_EXPAND, "expand", y, ints(g, "exs", 4, D(5), D(1), D(3), D(1)), NULL);
    ct_node *ti = op1(g, CT_OP_TILE, "tile", y, ints(g, "reps", 3, D(1), D(2), D(3)), NULL);
    ct_node *pd = op1(g, CT_OP_PAD, "pad", y, ints(g, "pads", 6, D(0), D(1), D(2), D(0), D(1), D(-1)), NULL);
    ct_node *gt = op1(g, CT_OP_GATHER, "gather", y, ints(g, "idx", 2, D(-1), D(0)), NULL);
    ct_node_set_int(g, gt, "axis", 1);
    ct_node *gs = op1(g, CT_OP_GATHER, "gather_s", y, scalar_i64(g, "i0", -2), NULL);
    ct_node_set_int(g, gs, "axis", -1);
    ct_node *rm = op1(g, CT_OP_REDUCE_MEAN, "rmean", x, ints(g, "rax", 2, D(2), D(3)), NULL);
    ct_node_set_int(g, rm, "keepdims", 0);
    ct_node *rs = op1(g, CT_OP_REDUCE_SUM, "rsum_all", y, NULL);
    ct_node *rn = op1(g, CT_OP_REDUCE_SUM, "rsum_noop", y, NULL);
    ct_node_set_int(g, rn, "noop_with_empty_axes", 1);
    ct_node *am = op1(g, CT_OP_ARG_MAX, "argmax", y, NULL);
    ct_node_set_int(g, am, "axis", -1);
    ct_node *sm = op1(g, CT_OP_SOFTMAX, "softmax", y, NULL);
    if (infer_ok(g, "reshape family")) {
        EXPECT_SHAPE(r0->out[0], "[N,512]");
        EXPECT_SHAPE(r1->out[0], "[N,512]");
        EXPECT_SHAPE(r2->out[0], "[4,3,2]");
        EXPECT_SHAPE(fl->out[0], "[N,512]");
        EXPECT_SHAPE(f2->out[0], "[6,4]");
        EXPECT_SHAPE(f0->out[0], "[1,24]");
        EXPECT_SHAPE(tr->out[0], "[4,2,3]");
        EXPECT_SHAPE(trd->out[0], "[4,3,2]");
        EXPECT_SHAPE(sq->out[0], "[N,512]");
        EXPECT_SHAPE(us->out[0], "[1,2,3,4,1]");
        EXPECT_SHAPE(cc->out[0], "[2,6,4]");
        EXPECT_SHAPE(ex->out[0], "[5,2,3,4]");
        EXPECT_SHAPE(ti->out[0], "[2,6,12]");
        EXPECT_SHAPE(pd->out[0], "[2,5,5]");
        EXPECT_SHAPE(gt->out[0], "[2,2,4]");
        EXPECT_SHAPE(gs->out[0], "[2,3]");
        EXPECT_SHAPE(rm->out[0], "[N,512]");
        EXPECT_SHAPE(rs->out[0], "[1,1,1]");
        EXPECT_SHAPE(rn->out[0], "[2,3,4]");
        EXPECT_SHAPE(am->out[0], "[2,3,1]");
        CHECK(am->out[0]->dtype == CT_I64, "ArgMax gives int64");
        EXPECT_SHAPE(sm->out[0], "[2,3,4]");
    }
    ct_graph_free(g);
}

static void test_slice_split(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(3, D(10), D(20), D(30)));
    /* x[::-1, 2:-3, ...] */
    ct_node *s1 = op1(g, CT_OP_SLICE, "rev", x, ints(g, "st1", 2, D(-1), D(2)),
                      ints(g, "en1", 2, D(INT64_MIN), D(-3)), ints(g, "ax1", 2, D(0), D(1)), ints(g, "sp1", 2, D(-1), D(1)), NULL);
    /* x[:, :, 1:1000:7] (clamped end) */
    ct_node *s2 = op1(g, CT_OP_SLICE, "step", x, ints(g, "st2", 1, D(1)), ints(g, "en2", 1, D(1000)),
                      ints(g, "ax2", 1, D(-1)), ints(g, "sp2", 1, D(7)), NULL);
    /* x[8:2:-3] on axis 0: 8,5 -> 2 */
    ct_node *s3 = op1(g, CT_OP_SLICE, "negstep", x, ints(g, "st3", 1, D(8)), ints(g, "en3", 1, D(2)),
                      ints(g, "ax3", 1, D(0)), ints(g, "sp3", 1, D(-3)), NULL);
    /* empty: start after end */
    ct_node *s4 = op1(g, CT_OP_SLICE, "empty", x, ints(g, "st4", 1, D(5)), ints(g, "en4", 1, D(3)), NULL);
    ct_value *so[3] = {tmp(g, "sp_a"), tmp(g, "sp_b"), tmp(g, "sp_c")};
    ct_value *si[2] = {x, ints(g, "sizes", 3, D(5), D(10), D(15))};
    ct_node *sp = ct_graph_add_node(g, CT_OP_SPLIT, "split", 2, si, 3, so);
    ct_node_set_int(g, sp, "axis", 2);
    ct_value *eo[2] = {tmp(g, "eq_a"), tmp(g, "eq_b")};
    ct_graph_add_node(g, CT_OP_SPLIT, "split_eq", 1, &x, 2, eo);
    ct_value *no[3] = {tmp(g, "no_a"), tmp(g, "no_b"), tmp(g, "no_c")};
    ct_node *sn = ct_graph_add_node(g, CT_OP_SPLIT, "split_num", 1, &x, 3, no);
    ct_node_set_int(g, sn, "num_outputs", 3);
    ct_node_set_int(g, sn, "axis", 1); /* 20 into 7,7,6 */
    if (infer_ok(g, "slice/split")) {
        EXPECT_SHAPE(s1->out[0], "[10,15,30]");
        EXPECT_SHAPE(s2->out[0], "[10,20,5]");
        EXPECT_SHAPE(s3->out[0], "[2,20,30]");
        EXPECT_SHAPE(s4->out[0], "[0,20,30]");
        EXPECT_SHAPE(so[0], "[10,20,5]");
        EXPECT_SHAPE(so[2], "[10,20,15]");
        EXPECT_SHAPE(eo[1], "[5,20,30]");
        EXPECT_SHAPE(no[0], "[10,7,30]");
        EXPECT_SHAPE(no[2], "[10,6,30]");
    }
    ct_graph_free(g);
}

static void test_errors(void)
{
    {   /* Reshape's shape must be constant after folding */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(4), D(6)));
        ct_value *sh = ct_graph_add_value(g, "shape_in", CT_VALUE_INPUT, CT_I64, &(ct_shape){1, {2}});
        ct_graph_add_input(g, sh);
        op1(g, CT_OP_RESHAPE, "dyn_reshape", x, sh, NULL);
        infer_fails(g, "non-constant shape", "node 'dyn_reshape' (Reshape)", "must be a constant", NULL);
        ct_graph_free(g);
    }
    {   /* Reshape that loses elements */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(4), D(6)));
        op1(g, CT_OP_RESHAPE, "bad_reshape", x, ints(g, "s", 2, D(5), D(5)), NULL);
        infer_fails(g, "reshape count", "node 'bad_reshape' (Reshape)", "[4,6]", "[5,5]", NULL);
        ct_graph_free(g);
    }
    {   /* a shape baking in the batch, on a symbolic batch */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, N, D(6)));
        op1(g, CT_OP_RESHAPE, "baked", x, ints(g, "s", 2, D(1), D(6)), NULL);
        infer_fails(g, "baked batch", "node 'baked' (Reshape)", "--batch", NULL);
        ct_graph_free(g);
    }
    {   /* flattening the batch together with channels */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(3, N, D(3), D(6)));
        ct_node *f = op1(g, CT_OP_FLATTEN, "flat2", x, NULL);
        ct_node_set_int(g, f, "axis", 2);
        infer_fails(g, "flatten batch", "node 'flat2' (Flatten)", "fixed batch", NULL);
        ct_graph_free(g);
    }
    {   /* dims whose product overflows */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(1) << 40, D(1)));
        op1(g, CT_OP_TILE, "big_tile", x, ints(g, "r", 2, D(1), D(1) << 40), NULL);
        infer_fails(g, "overflow", "node 'big_tile' (Tile)", "overflows", NULL);
        ct_graph_free(g);
    }
    {   /* an input whose dims overflow */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "huge", S(3, D(1) << 40, D(1) << 20, D(1) << 10));
        op1(g, CT_OP_RELU, "r", x, NULL);
        infer_fails(g, "input overflow", "'huge'", "overflows", NULL);
        ct_graph_free(g);
    }
    {   /* gather index out of range, squeeze of a non-1 axis, bad axis */
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(3), D(4)));
        op1(g, CT_OP_GATHER, "gidx", x, ints(g, "i", 1, D(3)), NULL);
        infer_fails(g, "gather range", "node 'gidx' (Gather)", "out of range", NULL);
        ct_graph_free(g);
    }
    {
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(3), D(4)));
        op1(g, CT_OP_SQUEEZE, "sq_bad", x, ints(g, "a", 1, D(1)), NULL);
        infer_fails(g, "squeeze", "node 'sq_bad' (Squeeze)", "[3,4]", NULL);
        ct_graph_free(g);
    }
    {
        NEW_GRAPH();
        ct_value *x = in_f32(g, "x", S(2, D(3), D(4)));
        ct_node *c = op1(g, CT_OP_CONCAT, "cat_bad", x, in_f32(g, "y", S(2, D(2), D(5))), NULL);
        ct_node_set_int(g, c, "axis", 0);
        infer_fails(g, "concat", "node 'cat_bad' (Concat)", "[2,5]", "[3,4]", NULL);
        ct_graph_free(g);
    }
}

/* Older attribute forms (text-syntax graphs may carry them), 1-D conv, and
 * Pad with axes. */
static void test_misc_forms(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, D(2), D(1), D(5), D(1)));
    ct_node *rm = op1(g, CT_OP_REDUCE_MEAN, "rmean_attr", x, NULL);
    ct_node_set_ints(g, rm, "axes", (int64_t[]){-2}, 1);
    ct_node *sq = op1(g, CT_OP_SQUEEZE, "squeeze_all", x, NULL);
    ct_node *us = op1(g, CT_OP_UNSQUEEZE, "unsq_attr", x, NULL);
    ct_node_set_ints(g, us, "axes", (int64_t[]){1}, 1);
    ct_value *y = in_f32(g, "y", S(3, D(1), D(4), D(10)));
    ct_node *c1 = op1(g, CT_OP_CONV, "conv1d", y, param(g, "w", S(3, D(6), D(2), D(3))), NULL);
    ct_node_set_int(g, c1, "group", 2);
    ct_node_set_ints(g, c1, "strides", (int64_t[]){3}, 1);
    ct_node_set_string(g, c1, "auto_pad", "SAME_LOWER");
    ct_value *pin[4] = {y, ints(g, "p", 2, D(2), D(3)), NULL, ints(g, "pa", 1, D(-1))}, *pout = tmp(g, "padded");
    ct_graph_add_node(g, CT_OP_PAD, "pad_axes", 4, pin, 1, &pout);
    if (infer_ok(g, "misc forms")) {
        EXPECT_SHAPE(rm->out[0], "[2,1,1,1]");
        EXPECT_SHAPE(sq->out[0], "[2,5]");
        EXPECT_SHAPE(us->out[0], "[2,1,1,5,1]");
        EXPECT_SHAPE(c1->out[0], "[1,6,4]");
        EXPECT_SHAPE(pout, "[1,4,15]");
    }
    ct_graph_free(g);
}

/* ---------------------------------------------------------------- folding */

/* The chain exporters emit for x.view(x.size(0), -1):
 * Shape -> Gather(0) -> Unsqueeze -> Concat([n], [-1]) -> Reshape. */
static void test_shape_chain(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, D(8), D(512), D(2), D(2)));
    ct_node *sh = op1(g, CT_OP_SHAPE, "/Shape", x, NULL);
    ct_node *ga = op1(g, CT_OP_GATHER, "/Gather", sh->out[0], scalar_i64(g, "zero", 0), NULL);
    ct_node *un = op1(g, CT_OP_UNSQUEEZE, "/Unsqueeze", ga->out[0], ints(g, "ax0", 1, D(0)), NULL);
    ct_node *cc = op1(g, CT_OP_CONCAT, "/Concat", un->out[0], ints(g, "minus1", 1, D(-1)), NULL);
    ct_node_set_int(g, cc, "axis", 0);
    ct_node *re = op1(g, CT_OP_RESHAPE, "/Reshape", x, cc->out[0], NULL);
    ct_graph_add_output(g, re->out[0]);
    ct_value *out = re->out[0];
    if (infer_ok(g, "shape chain")) {
        EXPECT_SHAPE(out, "[8,2048]");
        CHECK(g->n_nodes == 1 && g->nodes[0]->op == CT_OP_RESHAPE, "chain folded to one Reshape (%d nodes)", g->n_nodes);
        const ct_value *s = g->nodes[0]->in[1];
        CHECK(s->kind == CT_VALUE_CONST && s->data && ((int64_t *)s->data)[0] == 8 && ((int64_t *)s->data)[1] == -1,
              "Reshape's shape became the constant [8,-1]");
    }
    ct_graph_free(g);

    /* Shape with start=1 of a symbolic-batch value folds (only static dims read). */
    ct_graph *g2 = ct_graph_new("t");
    ct_value *y = in_f32(g2, "y", S(4, N, D(3), D(4), D(5)));
    ct_node *s2 = op1(g2, CT_OP_SHAPE, "shape_tail", y, NULL);
    ct_node_set_int(g2, s2, "start", 1);
    ct_value *tail = s2->out[0];
    ct_graph_add_output(g2, tail);
    ct_node *s3 = op1(g2, CT_OP_SHAPE, "shape_all", y, NULL);
    ct_graph_add_output(g2, s3->out[0]);
    if (infer_ok(g2, "shape start")) {
        CHECK(tail->kind == CT_VALUE_CONST && ((int64_t *)tail->data)[0] == 3 && ((int64_t *)tail->data)[2] == 5,
              "Shape(start=1) of [N,3,4,5] folded to [3,4,5]");
        CHECK(g2->n_nodes == 1 && g2->nodes[0]->op == CT_OP_SHAPE, "Shape of the batch dim stays (%d nodes)", g2->n_nodes);
    }
    ct_graph_free(g2);
}

static void test_fold_constants(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(1, D(3)));
    float cv[3] = {1, 2, 3}, dv[3] = {10, 20, 30};
    ct_value *c = ct_graph_add_tensor(g, "c", CT_VALUE_CONST, CT_F32, &(ct_shape){1, {3}}, cv);
    ct_value *d = ct_graph_add_tensor(g, "d", CT_VALUE_CONST, CT_F32, &(ct_shape){1, {3}}, dv);
    ct_value *w = ct_graph_add_tensor(g, "w", CT_VALUE_PARAM, CT_F32, &(ct_shape){1, {3}}, dv);
    ct_node *cd = op1(g, CT_OP_MUL, "c_times_d", c, d, NULL);
    ct_node *pw = op1(g, CT_OP_MUL, "param_mul", w, c, NULL); /* never folded: w is trainable */
    ct_node *a = op1(g, CT_OP_ADD, "add", x, cd->out[0], NULL);
    ct_node *b = op1(g, CT_OP_ADD, "add2", a->out[0], pw->out[0], NULL);
    ct_graph_add_output(g, b->out[0]);
    ct_status st = ct_pass_run(g, (const char *[]){"fold_constants"}, 1, &(ct_pass_options){.verify = true});
    CHECK(!st, "fold_constants: %s", st ? ct_status_msg(st) : "");
    ct_status_free(st);
    CHECK(g->n_nodes == 3, "Mul of two constants folded, Mul of a parameter kept (%d nodes)", g->n_nodes);
    const ct_value *k = a->in[1];
    CHECK(k->kind == CT_VALUE_CONST && k->data && ((float *)k->data)[2] == 90.0f, "folded value is 3*30");
    CHECK(pw->out[0]->kind == CT_VALUE_TEMP, "param product stays computed");
    ct_graph_free(g);
}

/* More shape arithmetic folded while inferring: Range, ConstantOfShape,
 * Size, Equal/Where (the exporters' "-1 where the dim is unknown" idiom),
 * Expand, Cast; then re-inference after fixing the batch. */
static void test_fold_shape_ops(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(3, D(4), D(1), D(6)));
    ct_node *rg = op1(g, CT_OP_RANGE, "range", scalar_i64(g, "r0", 0), scalar_i64(g, "r1", 10), scalar_i64(g, "r2", 3), NULL);
    ct_graph_add_output(g, rg->out[0]);
    float f0 = 1.0f, f1 = 2.0f, f2 = 0.3f;
    ct_shape s0 = {.rank = 0};
    ct_node *rf = op1(g, CT_OP_RANGE, "rangef", ct_graph_add_tensor(g, "f0", CT_VALUE_CONST, CT_F32, &s0, &f0),
                      ct_graph_add_tensor(g, "f1", CT_VALUE_CONST, CT_F32, &s0, &f1),
                      ct_graph_add_tensor(g, "f2", CT_VALUE_CONST, CT_F32, &s0, &f2), NULL);
    ct_graph_add_output(g, rf->out[0]);
    ct_node *sz = op1(g, CT_OP_SIZE, "size", x, NULL);
    ct_graph_add_output(g, sz->out[0]);
    /* shape = Where(Equal(target, -1), ones, target); Expand(x, shape) */
    ct_value *target = ints(g, "target", 3, D(-1), D(5), D(-1));
    ct_node *eq = op1(g, CT_OP_EQUAL, "eq", target, ints(g, "m1", 1, D(-1)), NULL);
    ct_node *cos = op1(g, CT_OP_CONSTANT_OF_SHAPE, "ones", ints(g, "three", 1, D(3)), NULL);
    int64_t one = 1;
    ct_value *onet = ct_arena_alloc(&g->arena, sizeof *onet);
    onet->name = "one";
    onet->kind = CT_VALUE_CONST;
    onet->dtype = CT_I64;
    onet->shape = S(1, D(1));
    onet->shape_known = true;
    onet->data = &one;
    ct_attr va = {.name = "value", .type = CT_ATTR_TENSOR, .t = onet};
    ct_node_add_attr(g, cos, &va);
    ct_node *wh = op1(g, CT_OP_WHERE, "where", eq->out[0], cos->out[0], target, NULL);
    ct_node *ex = op1(g, CT_OP_EXPAND, "expand", x, wh->out[0], NULL);
    ct_graph_add_output(g, ex->out[0]);
    ct_node *cs = op1(g, CT_OP_CAST, "cast", x, NULL);
    ct_node_set_int(g, cs, "to", 9); /* bool */
    ct_graph_add_output(g, cs->out[0]);
    if (infer_ok(g, "fold shape ops")) {
        const int64_t *r = rg->out[0]->data;
        CHECK(rg->out[0]->kind == CT_VALUE_CONST && r && r[0] == 0 && r[3] == 9, "Range(0,10,3) folded");
        EXPECT_SHAPE(rg->out[0], "[4]");
        EXPECT_SHAPE(rf->out[0], "[4]");
        CHECK(rf->out[0]->dtype == CT_F32, "float Range keeps float");
        CHECK(sz->out[0]->kind == CT_VALUE_CONST && *(int64_t *)sz->out[0]->data == 24, "Size folded to 24");
        EXPECT_SHAPE(ex->out[0], "[4,5,6]");
        CHECK(cos->out[0]->dtype == CT_I64, "ConstantOfShape takes value's dtype");
        CHECK(cs->out[0]->dtype == CT_BOOL, "Cast to bool");
        CHECK(g->n_nodes == 2, "only Expand and Cast (on the input) remain: %d nodes", g->n_nodes);
    }
    ct_graph_free(g);

    /* symbolic batch through a small network, then fixed with set_batch */
    ct_graph *g2 = ct_graph_new("t");
    ct_value *y = in_f32(g2, "y", S(4, N, D(3), D(8), D(8)));
    ct_node *c = op1(g2, CT_OP_CONV, "conv", y, param(g2, "w", S(4, D(4), D(3), D(3), D(3))), NULL);
    ct_node *gp = op1(g2, CT_OP_GLOBAL_AVERAGE_POOL, "gap", c->out[0], NULL);
    ct_node *fl = op1(g2, CT_OP_FLATTEN, "flat", gp->out[0], NULL);
    ct_node *sh = op1(g2, CT_OP_SHAPE, "shape", fl->out[0], NULL);
    ct_graph_add_output(g2, sh->out[0]);
    ct_graph_add_output(g2, fl->out[0]);
    if (infer_ok(g2, "symbolic batch")) {
        EXPECT_SHAPE(c->out[0], "[N,4,6,6]");
        EXPECT_SHAPE(fl->out[0], "[N,4]");
        CHECK(sh->out[0]->kind == CT_VALUE_TEMP, "Shape of a symbolic batch is not folded");
    }
    ct_graph_set_batch(g2, 16);
    if (infer_ok(g2, "fixed batch")) {
        EXPECT_SHAPE(fl->out[0], "[16,4]");
        CHECK(sh->out[0]->kind == CT_VALUE_CONST && ((int64_t *)sh->out[0]->data)[0] == 16,
              "Shape folded once the batch is fixed");
    }
    ct_graph_free(g2);
}

/* ---------------------------------------------------------------- DCE and CSE */

static void test_dce(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(2, D(2), D(3)));
    ct_node *r = op1(g, CT_OP_RELU, "relu", x, NULL);
    ct_node *dead1 = op1(g, CT_OP_SIGMOID, "dead1", x, NULL);
    op1(g, CT_OP_TANH, "dead2", dead1->out[0], NULL);
    param(g, "unused_w", S(1, D(3)));
    ct_value *st = ct_graph_add_tensor(g, "counter", CT_VALUE_STATE, CT_F32, &(ct_shape){2, {2, 3}}, NULL);
    ct_graph_add_node(g, CT_OP_IDENTITY, "state_update", 1, &x, 1, &st); /* writes state: kept */
    ct_value *dro[2] = {tmp(g, "dy"), tmp(g, "dmask")};
    ct_graph_add_node(g, CT_OP_DROPOUT, "drop", 1, &r->out[0], 2, dro);
    ct_graph_add_output(g, dro[0]);
    ct_status s = ct_pass_run(g, (const char *[]){"infer_shapes", "dce"}, 2, &(ct_pass_options){.verify = true});
    CHECK(!s, "dce: %s", s ? ct_status_msg(s) : "");
    ct_status_free(s);
    CHECK(g->n_nodes == 3, "dce keeps relu, state_update, drop (%d nodes)", g->n_nodes);
    CHECK(!ct_graph_find_value(g, "dead1_out") && !ct_graph_find_value(g, "unused_w"), "dead values dropped");
    CHECK(ct_graph_find_value(g, "counter"), "state kept");
    CHECK(!ct_graph_find_value(g, "dmask") && g->nodes[2]->n_out == 1, "unread Dropout mask dropped");
    ct_graph_free(g);

    /* a value read only by a state update (g->assigns) is live */
    {
        NEW_GRAPH();
        ct_value *x2 = in_f32(g, "x", S(1, D(3)));
        ct_value *mom = ct_graph_add_tensor(g, "momentum", CT_VALUE_STATE, CT_F32, &(ct_shape){1, {3}}, NULL);
        ct_node *upd = op1(g, CT_OP_ADD, "update", mom, x2, NULL);
        ct_node *out = op1(g, CT_OP_RELU, "out", x2, NULL);
        ct_graph_add_output(g, out->out[0]);
        ct_graph_add_assign(g, mom, upd->out[0]);
        ct_status s2 = ct_pass_run(g, (const char *[]){"infer_shapes", "dce"}, 2, &(ct_pass_options){.verify = true});
        CHECK(!s2, "dce with assigns: %s", s2 ? ct_status_msg(s2) : "");
        ct_status_free(s2);
        CHECK(g->n_nodes == 2 && g->n_assigns == 1, "dce keeps the node feeding a state update (%d nodes)", g->n_nodes);
        ct_graph_free(g);
    }

    /* a node writing a state of another shape is an error */
    ct_graph *g2 = ct_graph_new("t");
    ct_value *y = in_f32(g2, "y", S(1, D(4)));
    ct_value *q = ct_graph_add_tensor(g2, "queue", CT_VALUE_STATE, CT_F32, &(ct_shape){1, {5}}, NULL);
    ct_graph_add_node(g2, CT_OP_NEG, "bad_update", 1, &y, 1, &q);
    infer_fails(g2, "state shape", "node 'bad_update' (Neg)", "queue", "[5]", "[4]", NULL);
    CHECK(q->shape.dims[0] == 5, "the state keeps its declared shape");
    ct_graph_free(g2);
}

static void test_cse(void)
{
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(4, D(1), D(3), D(8), D(8)));
    ct_value *w = param(g, "w", S(4, D(4), D(3), D(3), D(3)));
    ct_value *w2 = param(g, "w_twin", S(4, D(4), D(3), D(3), D(3))); /* equal data, independent */
    ct_node *c1 = op1(g, CT_OP_CONV, "c1", x, w, NULL);
    ct_node_set_ints(g, c1, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ct_node *c2 = op1(g, CT_OP_CONV, "c2", x, w, NULL);
    ct_node_set_ints(g, c2, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ct_node *c3 = op1(g, CT_OP_CONV, "c3", x, w, NULL); /* other pads */
    ct_node_set_ints(g, c3, "pads", (int64_t[]){1, 1, 1, 0}, 4);
    ct_node *c4 = op1(g, CT_OP_CONV, "c4", x, w2, NULL);
    ct_node_set_ints(g, c4, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ct_node *r1 = op1(g, CT_OP_RELU, "r1", c1->out[0], NULL);
    ct_node *r2 = op1(g, CT_OP_RELU, "r2", c2->out[0], NULL);     /* merges after c2 does */
    ct_value *k1 = ints(g, "k1", 2, D(1), D(-1)), *k2 = ints(g, "k2", 2, D(1), D(-1));
    ct_node *re1 = op1(g, CT_OP_RESHAPE, "re1", r1->out[0], k1, NULL);
    ct_node *re2 = op1(g, CT_OP_RESHAPE, "re2", r2->out[0], k2, NULL); /* k2 merges into k1 */
    ct_node *add = op1(g, CT_OP_ADD, "add", re1->out[0], re2->out[0], NULL);
    ct_node *r3 = op1(g, CT_OP_RELU, "r3", c3->out[0], NULL);
    ct_node *r4 = op1(g, CT_OP_RELU, "r4", c4->out[0], NULL);
    ct_value *dmode = ct_graph_add_tensor(g, "train", CT_VALUE_CONST, CT_BOOL, &(ct_shape){0}, (bool[]){true});
    ct_value *d1i[3] = {add->out[0], NULL, dmode};
    ct_value *d1o = tmp(g, "d1"), *d2o = tmp(g, "d2");
    ct_graph_add_node(g, CT_OP_DROPOUT, "drop1", 3, d1i, 1, &d1o);
    ct_graph_add_node(g, CT_OP_DROPOUT, "drop2", 3, d1i, 1, &d2o); /* random: never merged */
    ct_graph_add_output(g, d1o);
    ct_graph_add_output(g, d2o);
    ct_graph_add_output(g, r3->out[0]);
    ct_graph_add_output(g, r4->out[0]);
    /* reads of a state that a node updates are conservatively kept apart */
    ct_value *stv = ct_graph_add_tensor(g, "queue", CT_VALUE_STATE, CT_F32, &(ct_shape){1, {3}}, NULL);
    ct_node *read1 = op1(g, CT_OP_NEG, "read1", stv, NULL);
    ct_value *src = in_f32(g, "src", S(1, D(3)));
    ct_graph_add_node(g, CT_OP_IDENTITY, "update", 1, &src, 1, &stv);
    ct_node *read2 = op1(g, CT_OP_NEG, "read2", stv, NULL);
    ct_node *both = op1(g, CT_OP_ADD, "both_reads", read1->out[0], read2->out[0], NULL);
    ct_graph_add_output(g, both->out[0]);
    ct_status s = ct_pass_run(g, (const char *[]){"infer_shapes", "cse"}, 2, &(ct_pass_options){.verify = true});
    CHECK(!s, "cse: %s", s ? ct_status_msg(s) : "");
    ct_status_free(s);
    int convs = 0, relus = 0, reshapes = 0, drops = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        convs += g->nodes[i]->op == CT_OP_CONV;
        relus += g->nodes[i]->op == CT_OP_RELU;
        reshapes += g->nodes[i]->op == CT_OP_RESHAPE;
        drops += g->nodes[i]->op == CT_OP_DROPOUT;
    }
    CHECK(convs == 3, "c1/c2 merged, c3 (other pads) and c4 (other param) kept: %d convs", convs);
    CHECK(relus == 3 && reshapes == 1, "relu and reshape chains merged: %d relus, %d reshapes", relus, reshapes);
    CHECK(drops == 2, "training-mode dropouts kept apart: %d", drops);
    CHECK(ct_graph_find_value(g, "w_twin") != NULL, "equal parameters stay independent");
    CHECK(!ct_graph_find_value(g, "k2"), "identical constants merged");
    CHECK(add->in[0] == add->in[1], "add reads one value twice");
    int negs = 0;
    for (int i = 0; i < g->n_nodes; i++) negs += g->nodes[i]->op == CT_OP_NEG;
    CHECK(negs == 2, "reads of an updated state are not merged: %d", negs);
    ct_graph_free(g);
}

/* ---------------------------------------------------------------- pass manager */

static void test_pass_manager(void)
{
    CHECK(ct_pass_find("infer_shapes") && ct_pass_find("memory_plan") && !ct_pass_find("nope"), "registry lookup");
    int k = 0;
    while (ct_default_pipeline[k]) k++;
    CHECK(k == 4 && !strcmp(ct_default_pipeline[0], "infer_shapes") && !strcmp(ct_default_pipeline[3], "cse"),
          "default pipeline");
    NEW_GRAPH();
    ct_value *x = in_f32(g, "x", S(2, D(2), D(3)));
    ct_node *r = op1(g, CT_OP_RELU, "relu", x, NULL);
    ct_graph_add_output(g, r->out[0]);
    ct_status st = ct_pass_run(g, (const char *[]){"bogus"}, 1, NULL);
    CHECK(st && strstr(ct_status_msg(st), "bogus") && strstr(ct_status_msg(st), "infer_shapes"),
          "unknown pass lists the valid ones: %s", st ? ct_status_msg(st) : "(ok)");
    ct_status_free(st);
    st = ct_pass_run(g, ct_default_pipeline, 4, &(ct_pass_options){.verify = true, .stop_after = "nope"});
    CHECK(st && strstr(ct_status_msg(st), "nope"), "unknown stop_after is an error");
    ct_status_free(st);
    /* fold_constants requires infer_shapes, added in front */
    st = ct_pass_run(g, (const char *[]){"fold_constants"}, 1, &(ct_pass_options){.verify = true});
    CHECK(!st && r->out[0]->shape_known, "prerequisite infer_shapes ran first");
    ct_status_free(st);
    ct_graph_free(g);
    /* stop_after and error wrapping */
    ct_graph *g2 = ct_graph_new("t");
    ct_value *p = in_f32(g2, "p", S(2, D(2), D(3)));
    ct_value *q = in_f32(g2, "q", S(2, D(4), D(3)));
    ct_node *add = op1(g2, CT_OP_ADD, "bad", p, q, NULL);
    ct_graph_add_output(g2, add->out[0]);
    st = ct_pass_run(g2, ct_default_pipeline, 4, NULL);
    CHECK(st && strstr(ct_status_msg(st), "infer_shapes") && strstr(ct_status_msg(st), "node 'bad' (Add)"),
          "errors carry the pass name: %s", st ? ct_status_msg(st) : "(ok)");
    ct_status_free(st);
    ct_graph_free(g2);
    ct_graph *g3 = ct_graph_new("t");
    ct_value *y = in_f32(g3, "y", S(1, D(3)));
    ct_node *d = op1(g3, CT_OP_RELU, "dead", y, NULL);
    ct_node *l = op1(g3, CT_OP_NEG, "live", y, NULL);
    ct_graph_add_output(g3, l->out[0]);
    (void)d;
    st = ct_pass_run(g3, ct_default_pipeline, 4, &(ct_pass_options){.verify = true, .stop_after = "fold_constants"});
    CHECK(!st && g3->n_nodes == 2, "stopped before dce (%d nodes)", g3->n_nodes);
    ct_status_free(st);
    ct_graph_free(g3);
}

int main(void)
{
    test_conv();
    test_pool();
    test_batch_norm();
    test_gemm_matmul();
    test_broadcast();
    test_reshape_family();
    test_slice_split();
    test_errors();
    test_misc_forms();
    test_shape_chain();
    test_fold_constants();
    test_fold_shape_ops();
    test_dce();
    test_cse();
    test_pass_manager();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

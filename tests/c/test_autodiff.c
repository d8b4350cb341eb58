/* test_autodiff.c — finite-difference tests of every gradient rule: small
 * graphs (op, then loss = ReduceSum(out * R) with a fixed random R) built in
 * float64, differentiated by ct_autodiff, run by the reference interpreter,
 * and each parameter's gradient compared with central differences; the same
 * graph in float32 must agree with the float64 gradients. Plus BatchNorm
 * training (splits, running statistics), frozen parameters and bad input.
 * Prints "N passed, N failed" and exits non-zero on a failure. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "eval.h"
#include "ir.h"
#include "passes.h"

static int n_pass, n_fail;

static void fail(const char *fmt, ...) CT_PRINTF(1, 2);
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    n_fail++;
}

/* ---------------------------------------------------------------- graph building */

typedef struct {
    ct_graph *g;
    ct_dtype t;
    uint64_t rng;
    bool bad; /* a node failed shape inference */
} B;

static double rnd(B *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (double)(b->rng >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
}

static ct_shape mk(int rank, const int64_t *d)
{
    ct_shape s = {.rank = rank};
    for (int i = 0; i < rank; i++) s.dims[i] = d[i];
    return s;
}
#define SHP(...) mk((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})

static void fill(B *b, ct_value *v, double scale, double offset)
{
    int64_t k = ct_shape_numel(&v->shape);
    for (int64_t i = 0; i < k; i++) {
        double x = offset + scale * rnd(b);
        if (v->dtype == CT_F64) ((double *)v->data)[i] = x;
        else ((float *)v->data)[i] = (float)x;
    }
}

/* A trainable parameter with values offset + scale * U[-1, 1). */
static ct_value *param(B *b, const char *name, ct_shape s, double scale, double offset)
{
    ct_value *v = ct_graph_add_tensor(b->g, name, CT_VALUE_PARAM, b->t, &s, NULL);
    fill(b, v, scale, offset);
    return v;
}

static ct_value *cints(B *b, ct_shape s, const int64_t *vals)
{
    return ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, "ints"), CT_VALUE_CONST, CT_I64, &s, vals);
}
#define INTS(...)                                                                                                  \
    cints(b, SHP((int64_t)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t))), (int64_t[]){__VA_ARGS__})

static ct_value *cfloat(B *b, double x)
{
    ct_shape s = {.rank = 0};
    ct_value *v = ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, "k"), CT_VALUE_CONST, b->t, &s, NULL);
    if (b->t == CT_F64) *(double *)v->data = x;
    else *(float *)v->data = (float)x;
    return v;
}

static ct_node *mknode(B *b, ct_op op, int nin, ct_value *const *in, int nout)
{
    ct_value *outs[8];
    for (int i = 0; i < nout; i++)
        outs[i] = ct_graph_add_value(b->g, ct_graph_unique_name(b->g, "t"), CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    return ct_graph_add_node(b->g, op, ct_graph_unique_name(b->g, ct_op_table[op].name), nin, in, nout, outs);
}

static ct_value *fin(B *b, ct_node *n)
{
    ct_status st = ct_infer_node(b->g, n);
    if (st) {
        fail("building %s: %s", n->name, ct_status_msg(st));
        ct_status_free(st);
        b->bad = true;
    }
    return n->out[0];
}

static ct_value *op1(B *b, ct_op op, ct_value *x) { return fin(b, mknode(b, op, 1, &x, 1)); }
static ct_value *op2(B *b, ct_op op, ct_value *x, ct_value *y)
{
    ct_value *in[2] = {x, y};
    return fin(b, mknode(b, op, 2, in, 1));
}

/* ---------------------------------------------------------------- running */

typedef struct {
    void **buf; /* per value id */
    int n;
} run_state;

static void run_free(run_state *r, const ct_graph *g)
{
    for (int i = 0; i < r->n; i++)
        if (g->values[i]->kind == CT_VALUE_TEMP) free(r->buf[i]);
    free(r->buf);
    r->buf = NULL;
}


/* Evaluate nodes [0, upto) of g (all if upto < 0). */
static bool run_graph(const ct_graph *g, run_state *r, int upto)
{
    if (!r->buf) {
        r->n = g->n_values;
        r->buf = calloc((size_t)r->n, sizeof(void *));
        for (int i = 0; i < r->n; i++) {
            ct_value *v = g->values[i];
            if (v->kind == CT_VALUE_TEMP) r->buf[i] = calloc(1, ct_value_nbytes(v) + 8);
            else r->buf[i] = v->data;
        }
    }
    int end = upto < 0 ? g->n_nodes : upto;
    for (int i = 0; i < end; i++) {
        const ct_node *n = g->nodes[i];
        const void *in[64];
        void *out[64];
        for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] ? r->buf[n->in[j]->id] : NULL;
        for (int j = 0; j < n->n_out; j++) out[j] = n->out[j] ? r->buf[n->out[j]->id] : NULL;
        ct_status st = ct_eval_node(n, in, out); /* dispatches ai.contra ops to eval_train.c */
        if (st) {
            fail("eval %s: %s", n->name, ct_status_msg(st));
            ct_status_free(st);
            return false;
        }
    }
    return true;
}

static double get(const void *p, ct_dtype t, int64_t i)
{
    return t == CT_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

/* ---------------------------------------------------------------- the finite-difference harness */

typedef ct_value *(*build_fn)(B *b);

typedef struct {
    ct_graph *g;
    ct_value *loss;
    ct_autodiff_result res;
    bool ok;
} built;

static built build(build_fn fn, ct_dtype t, uint64_t seed)
{
    B bb = {.g = ct_graph_new("t"), .t = t, .rng = seed}, *b = &bb;
    built r = {.g = b->g};
    ct_value *y = fn(b);
    if (b->bad || !y) return r;
    ct_value *R = ct_graph_add_tensor(b->g, "R", CT_VALUE_CONST, t, &y->shape, NULL);
    fill(b, R, 1.0, 0.0);
    ct_value *loss = op1(b, CT_OP_REDUCE_SUM, op2(b, CT_OP_MUL, y, R));
    ct_node *ln = loss->producer;
    ct_node_set_int(b->g, ln, "keepdims", 0);
    loss = fin(b, ln);
    if (b->bad) return r;
    ct_autodiff_options opt = {.result = &r.res};
    ct_status st = ct_autodiff(b->g, loss, &opt);
    if (st) {
        fail("autodiff: %s", ct_status_msg(st));
        ct_status_free(st);
        return r;
    }
    st = ct_graph_verify(b->g);
    if (st) {
        fail("verify after autodiff: %s", ct_status_msg(st));
        ct_status_free(st);
        return r;
    }
    r.loss = loss;
    r.ok = true;
    return r;
}

static void check_case(const char *name, build_fn fn)
{
    uint64_t seed = 0x9E3779B97F4A7C15ull ^ (uint64_t)strlen(name) * 7919u;
    for (const char *p = name; *p; p++) seed = seed * 31 + (uint64_t)*p;
    int fails0 = n_fail;
    built d = build(fn, CT_F64, seed), f = build(fn, CT_F32, seed);
    if (!d.ok || !f.ok) {
        fail("%s: could not build", name);
        goto out;
    }
    if (d.res.n_grads == 0) {
        fail("%s: no gradients", name);
        goto out;
    }
    run_state rd = {0}, rf = {0};
    if (!run_graph(d.g, &rd, -1) || !run_graph(f.g, &rf, -1)) {
        fail("%s: evaluation failed", name);
        run_free(&rd, d.g);
        run_free(&rf, f.g);
        goto out;
    }
    double worst = 0;
    int checks = 0;
    const double h = 1e-6;
    for (int k = 0; k < d.res.n_grads; k++) {
        ct_value *p = d.res.grads[k].value, *gv = d.res.grads[k].grad;
        char want[256];
        snprintf(want, sizeof want, "grad/%s", p->name);
        if (strcmp(gv->name, want) || ct_autodiff_grad_of(d.g, p) != gv) fail("%s: gradient of %s is named %s", name, p->name, gv->name);
        const double *ga = rd.buf[gv->id];
        double *x = p->data;
        int64_t cnt = ct_shape_numel(&p->shape), step = cnt > 48 ? (cnt / 48 + 1) | 1 : 1; /* odd: hits every phase */
        for (int64_t i = 0; i < cnt; i += step) {
            double x0 = x[i];
            x[i] = x0 + h;
            run_graph(d.g, &rd, d.res.first_backward_node);
            double lp = ((double *)rd.buf[d.loss->id])[0];
            x[i] = x0 - h;
            run_graph(d.g, &rd, d.res.first_backward_node);
            double lm = ((double *)rd.buf[d.loss->id])[0];
            x[i] = x0;
            double num = (lp - lm) / (2 * h), err = fabs(num - ga[i]) / (1e-4 + fabs(num));
            if (err > worst) worst = err;
            checks++;
            if (err > 1e-5) {
                fail("%s: d/d %s[%lld]: autodiff %.10g, finite difference %.10g", name, p->name, (long long)i, ga[i],
                     num);
                break;
            }
        }
        /* float32 against float64 */
        ct_value *pf = ct_graph_find_value(f.g, p->name), *gf = pf ? ct_autodiff_grad_of(f.g, pf) : NULL;
        if (!gf) {
            fail("%s: float32 graph has no gradient for %s", name, p->name);
            continue;
        }
        double mx = 0;
        for (int64_t i = 0; i < cnt; i++) mx = fmax(mx, fabs(ga[i]));
        for (int64_t i = 0; i < cnt; i++) {
            double a = get(rf.buf[gf->id], CT_F32, i);
            if (!(fabs(a - ga[i]) <= 1e-4 * mx + 1e-5)) {
                fail("%s: float32 d/d %s[%lld] = %.7g, float64 %.10g", name, p->name, (long long)i, a, ga[i]);
                break;
            }
        }
    }
    run_free(&rd, d.g);
    run_free(&rf, f.g);
    if (n_fail == fails0) {
        n_pass++;
        printf("ok   %-28s %3d checks, worst relative error %.2e\n", name, checks, worst);
    }
out:
    ct_graph_free(d.g);
    ct_graph_free(f.g);
}

/* ---------------------------------------------------------------- cases */

#define P(name, scale, offset, ...) param(b, name, SHP(__VA_ARGS__), scale, offset)

static ct_value *c_relu(B *b) { return op1(b, CT_OP_RELU, P("x", 1, 0, 3, 4)); }
static ct_value *c_sigmoid(B *b) { return op1(b, CT_OP_SIGMOID, P("x", 3, 0, 3, 4)); }
static ct_value *c_tanh(B *b) { return op1(b, CT_OP_TANH, P("x", 2, 0, 3, 4)); }
static ct_value *c_hard_sigmoid(B *b)
{
    ct_node *n = mknode(b, CT_OP_HARD_SIGMOID, 1, (ct_value *[]){P("x", 4, 0, 4, 5)}, 1);
    ct_node_set_float(b->g, n, "alpha", 0.25f);
    return fin(b, n);
}
static ct_value *c_hard_swish(B *b) { return op1(b, CT_OP_HARD_SWISH, P("x", 5, 0, 4, 6)); }
static ct_value *c_leaky_relu(B *b)
{
    ct_node *n = mknode(b, CT_OP_LEAKY_RELU, 1, (ct_value *[]){P("x", 1, 0, 3, 4)}, 1);
    ct_node_set_float(b->g, n, "alpha", 0.125f);
    return fin(b, n);
}
static ct_value *c_abs(B *b) { return op1(b, CT_OP_ABS, P("x", 1, 0, 3, 4)); }
static ct_value *c_sqrt(B *b) { return op1(b, CT_OP_SQRT, P("x", 0.8, 1.2, 3, 4)); }
static ct_value *c_reciprocal(B *b) { return op1(b, CT_OP_RECIPROCAL, P("x", 0.5, 1.5, 3, 4)); }
static ct_value *c_neg(B *b) { return op1(b, CT_OP_NEG, P("x", 1, 0, 3, 4)); }
static ct_value *c_exp(B *b) { return op1(b, CT_OP_EXP, P("x", 1, 0, 3, 4)); }
static ct_value *c_erf(B *b) { return op1(b, CT_OP_ERF, P("x", 1.5, 0, 3, 4)); }
static ct_value *c_log(B *b) { return op1(b, CT_OP_LOG, P("x", 0.8, 1.2, 3, 4)); }
static ct_value *c_identity_dropout(B *b)
{
    return op1(b, CT_OP_DROPOUT, op1(b, CT_OP_IDENTITY, P("x", 1, 0, 3, 4)));
}
static ct_value *c_clip(B *b)
{
    ct_value *in[3] = {P("x", 1, 0, 4, 5), cfloat(b, -0.5), cfloat(b, 0.6)};
    return fin(b, mknode(b, CT_OP_CLIP, 3, in, 1));
}
static ct_value *c_relu6(B *b) /* ReLU6 as exported: Clip(x, 0, 6) */
{
    ct_value *in[3] = {P("x", 8, 0, 4, 5), cfloat(b, 0), cfloat(b, 6)};
    return fin(b, mknode(b, CT_OP_CLIP, 3, in, 1));
}
static ct_value *c_softmax(B *b)
{
    ct_node *n = mknode(b, CT_OP_SOFTMAX, 1, (ct_value *[]){P("x", 2, 0, 3, 4, 5)}, 1);
    ct_node_set_int(b->g, n, "axis", 1);
    return fin(b, n);
}
static ct_value *c_log_softmax(B *b) { return op1(b, CT_OP_LOG_SOFTMAX, P("x", 2, 0, 3, 6)); }

static ct_value *c_add_bcast(B *b) { return op2(b, CT_OP_ADD, P("a", 1, 0, 2, 3, 4), P("b", 1, 0, 3, 1)); }
static ct_value *c_sub_bcast(B *b) { return op2(b, CT_OP_SUB, P("a", 1, 0, 4), P("b", 1, 0, 2, 3, 4)); }
static ct_value *c_mul_bcast(B *b) { return op2(b, CT_OP_MUL, P("a", 1, 0, 2, 1, 4), P("b", 1, 0, 3, 1)); }
static ct_value *c_div_bcast(B *b) { return op2(b, CT_OP_DIV, P("a", 1, 0, 2, 3), P("b", 0.5, 1.5, 3)); }
static ct_value *c_pow_const(B *b) { return op2(b, CT_OP_POW, P("a", 1, 0, 3, 4), cfloat(b, 2.0)); }
static ct_value *c_pow_both(B *b) { return op2(b, CT_OP_POW, P("a", 0.5, 1.5, 3, 4), P("e", 1, 0, 4)); }
static ct_value *c_sum3(B *b)
{
    ct_value *in[3] = {P("a", 1, 0, 2, 3), P("b", 1, 0, 3), P("c", 1, 0, 2, 1)};
    return fin(b, mknode(b, CT_OP_SUM, 3, in, 1));
}
static ct_value *c_where(B *b)
{
    ct_shape s = SHP(2, 3);
    ct_value *cond = ct_graph_add_tensor(b->g, "cond", CT_VALUE_CONST, CT_BOOL, &s, (uint8_t[]){1, 0, 1, 1, 0, 0});
    ct_value *in[3] = {cond, P("a", 1, 0, 2, 3), P("b", 1, 0, 3)};
    return fin(b, mknode(b, CT_OP_WHERE, 3, in, 1));
}
static ct_value *c_max(B *b) { return op2(b, CT_OP_MAX, P("a", 1, 0, 2, 3), P("b", 1, 0, 3)); }
static ct_value *c_min(B *b) { return op2(b, CT_OP_MIN, P("a", 1, 0, 3, 1), P("b", 1, 0, 2, 3, 4)); }
static ct_value *c_fanout(B *b) /* x used three times: gradients accumulate */
{
    ct_value *x = P("x", 1, 0, 3, 4);
    return op2(b, CT_OP_ADD, op2(b, CT_OP_MUL, x, x), op1(b, CT_OP_SIGMOID, x));
}

static ct_value *conv(B *b, ct_value *x, ct_value *w, ct_value *bias, const int64_t *strides, const int64_t *pads,
                      const int64_t *dil, int64_t group, const char *auto_pad)
{
    int nsp = x->shape.rank - 2;
    ct_value *in[3] = {x, w, bias};
    ct_node *n = mknode(b, CT_OP_CONV, bias ? 3 : 2, in, 1);
    if (strides) ct_node_set_ints(b->g, n, "strides", strides, nsp);
    if (pads) ct_node_set_ints(b->g, n, "pads", pads, 2 * nsp);
    if (dil) ct_node_set_ints(b->g, n, "dilations", dil, nsp);
    if (group != 1) ct_node_set_int(b->g, n, "group", group);
    if (auto_pad) ct_node_set_string(b->g, n, "auto_pad", auto_pad);
    return fin(b, n);
}
static ct_value *c_conv_stride_pad(B *b)
{
    return conv(b, P("x", 1, 0, 2, 3, 7, 7), P("w", 0.5, 0, 4, 3, 3, 3), P("bias", 1, 0, 4), (int64_t[]){2, 2},
                (int64_t[]){1, 1, 1, 1}, NULL, 1, NULL);
}
static ct_value *c_conv_dilation(B *b)
{
    return conv(b, P("x", 1, 0, 1, 2, 8, 7), P("w", 0.5, 0, 3, 2, 3, 2), NULL, (int64_t[]){1, 2},
                (int64_t[]){1, 0, 2, 1}, (int64_t[]){2, 2}, 1, NULL);
}
static ct_value *c_conv_groups(B *b)
{
    return conv(b, P("x", 1, 0, 2, 4, 6, 6), P("w", 0.5, 0, 6, 2, 3, 3), P("bias", 1, 0, 6), NULL,
                (int64_t[]){1, 1, 1, 1}, NULL, 2, NULL);
}
static ct_value *c_conv_depthwise(B *b)
{
    return conv(b, P("x", 1, 0, 2, 3, 5, 5), P("w", 0.5, 0, 3, 1, 3, 3), NULL, (int64_t[]){2, 2},
                (int64_t[]){1, 1, 1, 1}, NULL, 3, NULL);
}
static ct_value *c_conv_same(B *b)
{
    return conv(b, P("x", 1, 0, 1, 2, 6, 5), P("w", 0.5, 0, 2, 2, 3, 3), NULL, (int64_t[]){2, 2}, NULL, NULL, 1,
                "SAME_UPPER");
}
static ct_value *c_conv_1x1(B *b)
{
    return conv(b, P("x", 1, 0, 2, 4, 3, 3), P("w", 0.5, 0, 5, 4, 1, 1), NULL, (int64_t[]){2, 2}, NULL, NULL, 1, NULL);
}
static ct_value *c_conv_1d(B *b)
{
    return conv(b, P("x", 1, 0, 2, 3, 9), P("w", 0.5, 0, 2, 3, 3), P("bias", 1, 0, 2), (int64_t[]){2},
                (int64_t[]){1, 2}, NULL, 1, NULL);
}

static ct_value *pool(B *b, ct_op op, ct_value *x, const int64_t *k, const int64_t *s, const int64_t *p, int ceil,
                      int include_pad)
{
    ct_node *n = mknode(b, op, 1, &x, 1);
    ct_node_set_ints(b->g, n, "kernel_shape", k, 2);
    if (s) ct_node_set_ints(b->g, n, "strides", s, 2);
    if (p) ct_node_set_ints(b->g, n, "pads", p, 4);
    if (ceil) ct_node_set_int(b->g, n, "ceil_mode", 1);
    if (include_pad) ct_node_set_int(b->g, n, "count_include_pad", 1);
    return fin(b, n);
}
static ct_value *c_maxpool(B *b)
{
    return pool(b, CT_OP_MAX_POOL, P("x", 1, 0, 2, 2, 7, 7), (int64_t[]){3, 3}, (int64_t[]){2, 2},
                (int64_t[]){1, 1, 1, 1}, 0, 0);
}
static ct_value *c_maxpool_ceil(B *b)
{
    return pool(b, CT_OP_MAX_POOL, P("x", 1, 0, 1, 2, 6, 5), (int64_t[]){2, 2}, (int64_t[]){2, 2}, NULL, 1, 0);
}
static ct_value *c_avgpool(B *b)
{
    return pool(b, CT_OP_AVERAGE_POOL, P("x", 1, 0, 2, 2, 7, 7), (int64_t[]){3, 3}, (int64_t[]){2, 2},
                (int64_t[]){1, 1, 1, 1}, 0, 0);
}
static ct_value *c_avgpool_incl(B *b)
{
    return pool(b, CT_OP_AVERAGE_POOL, P("x", 1, 0, 1, 2, 6, 6), (int64_t[]){3, 3}, (int64_t[]){2, 2},
                (int64_t[]){1, 1, 1, 1}, 0, 1);
}
static ct_value *c_avgpool_ceil(B *b)
{
    return pool(b, CT_OP_AVERAGE_POOL, P("x", 1, 0, 1, 2, 5, 5), (int64_t[]){2, 2}, (int64_t[]){2, 2}, NULL, 1, 0);
}
static ct_value *c_gap(B *b) { return op1(b, CT_OP_GLOBAL_AVERAGE_POOL, P("x", 1, 0, 2, 3, 4, 5)); }

static ct_value *gemm(B *b, int ta, int tb, bool bias1d)
{
    ct_value *a = ta ? P("a", 1, 0, 4, 3) : P("a", 1, 0, 3, 4);
    ct_value *w = tb ? P("w", 1, 0, 5, 4) : P("w", 1, 0, 4, 5);
    ct_value *c = bias1d ? P("c", 1, 0, 5) : P("c", 1, 0, 3, 5);
    ct_node *n = mknode(b, CT_OP_GEMM, 3, (ct_value *[]){a, w, c}, 1);
    ct_node_set_int(b->g, n, "transA", ta);
    ct_node_set_int(b->g, n, "transB", tb);
    ct_node_set_float(b->g, n, "alpha", 0.75f);
    ct_node_set_float(b->g, n, "beta", 1.5f);
    return fin(b, n);
}
static ct_value *c_gemm_nn(B *b) { return gemm(b, 0, 0, true); }
static ct_value *c_gemm_nt(B *b) { return gemm(b, 0, 1, true); }
static ct_value *c_gemm_tn(B *b) { return gemm(b, 1, 0, false); }
static ct_value *c_gemm_tt(B *b) { return gemm(b, 1, 1, false); }
static ct_value *c_matmul(B *b) { return op2(b, CT_OP_MATMUL, P("a", 1, 0, 3, 4), P("b", 1, 0, 4, 2)); }
static ct_value *c_matmul_batched(B *b) { return op2(b, CT_OP_MATMUL, P("a", 1, 0, 2, 3, 4), P("b", 1, 0, 4, 5)); }
static ct_value *c_matmul_bcast(B *b) { return op2(b, CT_OP_MATMUL, P("a", 1, 0, 2, 1, 3, 4), P("b", 1, 0, 3, 4, 2)); }
static ct_value *c_matmul_vec_mat(B *b) { return op2(b, CT_OP_MATMUL, P("a", 1, 0, 4), P("b", 1, 0, 2, 4, 3)); }
static ct_value *c_matmul_mat_vec(B *b) { return op2(b, CT_OP_MATMUL, P("a", 1, 0, 3, 4), P("b", 1, 0, 4)); }

static ct_value *reduce(B *b, ct_op op, ct_value *x, ct_value *axes, int keep)
{
    ct_node *n = mknode(b, op, axes ? 2 : 1, (ct_value *[]){x, axes}, 1);
    ct_node_set_int(b->g, n, "keepdims", keep);
    return fin(b, n);
}
static ct_value *c_reduce_mean(B *b) { return reduce(b, CT_OP_REDUCE_MEAN, P("x", 1, 0, 2, 3, 4), INTS(1), 0); }
static ct_value *c_reduce_sum(B *b) { return reduce(b, CT_OP_REDUCE_SUM, P("x", 1, 0, 2, 3, 4), INTS(0, -1), 1); }
static ct_value *c_reduce_l2(B *b) { return reduce(b, CT_OP_REDUCE_L2, P("x", 1, 0, 3, 5), INTS(1), 1); }
static ct_value *c_normalize(B *b) /* F.normalize: x / max(||x||, eps) as exported (ReduceL2, Clip, Div) */
{
    ct_value *x = P("x", 1, 0, 3, 5);
    ct_value *nrm = reduce(b, CT_OP_REDUCE_L2, x, INTS(1), 1);
    ct_value *in[3] = {nrm, cfloat(b, 1e-12), NULL};
    ct_value *cl = fin(b, mknode(b, CT_OP_CLIP, 2, in, 1));
    return op2(b, CT_OP_DIV, x, cl);
}
static ct_value *c_sqrt_pow_norm(B *b) /* sqrt(sum(x^2)) written out */
{
    ct_value *x = P("x", 1, 0, 3, 4);
    return op1(b, CT_OP_SQRT, reduce(b, CT_OP_REDUCE_SUM, op2(b, CT_OP_POW, x, cfloat(b, 2.0)), INTS(1), 0));
}

static ct_value *c_stop_gradient(B *b) /* SupCon: log_softmax(y - sg(rowmax(y))), shift-invariant */
{
    ct_value *y = op2(b, CT_OP_MUL, P("x", 1, 0, 3, 4), cfloat(b, 2.0));
    ct_value *mx = reduce(b, CT_OP_REDUCE_MAX, y, INTS(1), 1);
    return op1(b, CT_OP_LOG_SOFTMAX, op2(b, CT_OP_SUB, y, op1(b, CT_OP_STOP_GRADIENT, mx)));
}
static ct_value *c_flatten_reshape(B *b)
{
    ct_node *n = mknode(b, CT_OP_FLATTEN, 1, (ct_value *[]){P("x", 1, 0, 2, 3, 2, 2)}, 1);
    ct_node_set_int(b->g, n, "axis", 1);
    ct_value *f = fin(b, n);
    return op1(b, CT_OP_SIGMOID, op2(b, CT_OP_RESHAPE, f, INTS(4, 6)));
}
static ct_value *c_transpose(B *b)
{
    ct_node *n = mknode(b, CT_OP_TRANSPOSE, 1, (ct_value *[]){P("x", 1, 0, 2, 3, 4)}, 1);
    ct_node_set_ints(b->g, n, "perm", (int64_t[]){1, 2, 0}, 3);
    return op1(b, CT_OP_TANH, fin(b, n));
}
static ct_value *c_concat(B *b)
{
    ct_node *n = mknode(b, CT_OP_CONCAT, 3, (ct_value *[]){P("a", 1, 0, 2, 1, 3), P("b", 1, 0, 2, 3, 3), P("c", 1, 0, 2, 2, 3)}, 1);
    ct_node_set_int(b->g, n, "axis", 1);
    return op1(b, CT_OP_TANH, fin(b, n));
}
static ct_value *c_split(B *b) /* three outputs, the middle one unused: its gradient is zero */
{
    ct_node *n = mknode(b, CT_OP_SPLIT, 2, (ct_value *[]){P("x", 1, 0, 2, 6), INTS(1, 2, 3)}, 3);
    ct_node_set_int(b->g, n, "axis", 1);
    fin(b, n);
    return op2(b, CT_OP_MUL, n->out[0], op1(b, CT_OP_TANH, op2(b, CT_OP_REDUCE_SUM, n->out[2], INTS(1))));
}
static ct_value *c_slice(B *b)
{
    ct_value *in[4] = {P("x", 1, 0, 3, 6, 4), INTS(1, -3), INTS(5, 100), INTS(1, 2)};
    return op1(b, CT_OP_TANH, fin(b, mknode(b, CT_OP_SLICE, 4, in, 1)));
}
static ct_value *c_slice_steps(B *b)
{
    ct_value *in[5] = {P("x", 1, 0, 3, 7, 8), INTS(1, 1, 1), INTS(7, 100, 3), INTS(1, 2, 0), INTS(3, 2, 1)};
    return op1(b, CT_OP_TANH, fin(b, mknode(b, CT_OP_SLICE, 5, in, 1)));
}
static ct_value *c_squeeze_unsqueeze(B *b)
{
    ct_value *s = op2(b, CT_OP_SQUEEZE, P("x", 1, 0, 2, 1, 3), INTS(1));
    return op1(b, CT_OP_TANH, op2(b, CT_OP_UNSQUEEZE, s, INTS(0)));
}
static ct_value *c_expand(B *b) { return op1(b, CT_OP_TANH, op2(b, CT_OP_EXPAND, P("x", 1, 0, 3, 1), INTS(2, 3, 4))); }
static ct_value *c_pad(B *b)
{
    return op1(b, CT_OP_TANH, op2(b, CT_OP_PAD, P("x", 1, 0, 2, 3), INTS(0, 1, 1, 2)));
}

/* BatchNormalization (as imported: ONNX momentum 0.9) switched to training form by ct_bn_train. */
static ct_node *bn(B *b, ct_value *x, int64_t C, int splits, ct_value **rm_out)
{
    ct_value *sc = P("scale", 0.5, 1, C), *bias = P("bias", 1, 0, C);
    ct_shape cs = {1, {C}};
    ct_value *rm = ct_graph_add_tensor(b->g, "rm", CT_VALUE_STATE, b->t, &cs, NULL);
    ct_value *rv = ct_graph_add_tensor(b->g, "rv", CT_VALUE_STATE, b->t, &cs, NULL);
    fill(b, rm, 0.1, 0);
    fill(b, rv, 0.1, 1);
    if (rm_out) *rm_out = rm;
    ct_node *n = mknode(b, CT_OP_BATCH_NORM, 5, (ct_value *[]){x, sc, bias, rm, rv}, 1);
    ct_node_set_float(b->g, n, "epsilon", 1e-5f);
    ct_node_set_float(b->g, n, "momentum", 0.9f);
    fin(b, n);
    if (splits) {
        ct_bn_train_options o = {.splits = splits};
        ct_status st = ct_bn_train(b->g, &o);
        if (st) {
            fail("bn_train: %s", ct_status_msg(st));
            ct_status_free(st);
            b->bad = true;
        }
    }
    return n;
}
static ct_value *c_bn_train(B *b) { return bn(b, P("x", 2, 0.5, 4, 3, 2, 2), 3, 1, NULL)->out[0]; }
static ct_value *c_bn_train_split2(B *b) { return bn(b, P("x", 2, 0.5, 4, 3, 2, 2), 3, 2, NULL)->out[0]; }
static ct_value *c_bn_train_1d(B *b) { return bn(b, P("x", 2, 0.5, 6, 5), 5, 1, NULL)->out[0]; }
static ct_value *c_bn_eval(B *b) { return bn(b, P("x", 2, 0.5, 2, 3, 2, 2), 3, 0, NULL)->out[0]; }

static ct_value *sce(B *b, ct_value *logits, int64_t n_cls)
{
    int64_t N = logits->shape.dims[0], lab[16];
    for (int64_t i = 0; i < N; i++) lab[i] = (i * 7 + 3) % n_cls;
    ct_shape ls = {1, {N}};
    ct_value *labels = ct_graph_add_tensor(b->g, "labels", CT_VALUE_CONST, CT_I64, &ls, lab);
    return fin(b, mknode(b, CT_OP_SOFTMAX_CROSS_ENTROPY, 2, (ct_value *[]){logits, labels}, 2));
}
static ct_value *c_sce(B *b) { return sce(b, P("logits", 2, 0, 5, 4), 4); }
static ct_value *c_mini_net(B *b) /* conv -> split BN -> relu -> maxpool -> GAP -> flatten -> gemm -> CE */
{
    ct_value *x = ct_graph_add_tensor(b->g, "input", CT_VALUE_CONST, b->t, &(ct_shape){4, {4, 2, 6, 6}}, NULL);
    fill(b, x, 1, 0);
    ct_value *h = conv(b, x, P("conv_w", 0.5, 0, 3, 2, 3, 3), NULL, NULL, (int64_t[]){1, 1, 1, 1}, NULL, 1, NULL);
    h = bn(b, h, 3, 2, NULL)->out[0];
    h = op1(b, CT_OP_RELU, h);
    h = pool(b, CT_OP_MAX_POOL, h, (int64_t[]){3, 3}, (int64_t[]){2, 2}, (int64_t[]){1, 1, 1, 1}, 0, 0);
    h = op1(b, CT_OP_GLOBAL_AVERAGE_POOL, h);
    ct_node *f = mknode(b, CT_OP_FLATTEN, 1, &h, 1);
    h = fin(b, f);
    ct_node *gm = mknode(b, CT_OP_GEMM, 3, (ct_value *[]){h, P("fc_w", 1, 0, 5, 3), P("fc_b", 1, 0, 5)}, 1);
    ct_node_set_int(b->g, gm, "transB", 1);
    return sce(b, fin(b, gm), 5);
}

/* ---------------------------------------------------------------- other checks */

/* Running statistics after one training step, against the definition
 * (PyTorch momentum 0.1, unbiased variance, per-split update then mean). */
static void check_running_stats(int splits)
{
    B bb = {.g = ct_graph_new("bn"), .t = CT_F64, .rng = 12345}, *b = &bb;
    ct_value *x = P("x", 2, 0.5, 4, 3, 2, 2), *rm;
    ct_node *n = bn(b, x, 3, splits, &rm);
    ct_value *rv = ct_graph_find_value(b->g, "rv");
    if (b->bad || n->op != CT_OP_BATCH_NORM_TRAIN || b->g->n_assigns != 2) {
        fail("bn_train(splits %d): node not converted or assignments missing", splits);
        goto out;
    }
    run_state r = {0};
    if (!run_graph(b->g, &r, -1)) goto out;
    const double *xd = x->data, *rm0 = rm->data, *rv0 = rv->data;
    bool ok = true;
    for (int c = 0; c < 3; c++) {
        double em = 0, ev = 0;
        for (int s = 0; s < splits; s++) {
            double sum = 0, ss = 0;
            int cnt = 0;
            for (int bi = s; bi < 4; bi += splits)
                for (int i = 0; i < 4; i++) sum += xd[(bi * 3 + c) * 4 + i], cnt++;
            double mean = sum / cnt;
            for (int bi = s; bi < 4; bi += splits)
                for (int i = 0; i < 4; i++) ss += pow(xd[(bi * 3 + c) * 4 + i] - mean, 2);
            em += (0.9 * rm0[c] + 0.1 * mean) / splits;
            ev += (0.9 * rv0[c] + 0.1 * ss / (cnt - 1)) / splits;
        }
        const ct_assign *am = &b->g->assigns[0], *av = &b->g->assigns[1];
        double gm = ((double *)r.buf[am->src->id])[c], gv = ((double *)r.buf[av->src->id])[c];
        if (am->dst != rm || av->dst != rv || fabs(gm - em) > 1e-6 || fabs(gv - ev) > 1e-6) {
            fail("bn_train(splits %d) running stats channel %d: mean %.8g (want %.8g), var %.8g (want %.8g)", splits,
                 c, gm, em, gv, ev);
            ok = false;
            break;
        }
    }
    run_free(&r, b->g);
    if (ok) {
        n_pass++;
        printf("ok   bn running stats, splits %d\n", splits);
    }
out:
    ct_graph_free(b->g);
}

static void expect_error(const char *what, ct_status st, const char *needle)
{
    if (!st) {
        fail("%s: expected an error", what);
        return;
    }
    if (needle && !strstr(ct_status_msg(st), needle)) fail("%s: message '%s' lacks '%s'", what, ct_status_msg(st), needle);
    else {
        n_pass++;
        printf("ok   %s: %s\n", what, ct_status_msg(st));
    }
    ct_status_free(st);
}

static void check_frozen_and_errors(void)
{
    /* Frozen parameters get no gradient; trainable ones do. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        ct_value *w = P("w", 1, 0, 3, 4), *fc = P("fc", 1, 0, 4, 2);
        w->frozen = true;
        ct_value *y = op2(b, CT_OP_MATMUL, op1(b, CT_OP_RELU, w), fc);
        ct_value *loss = reduce(b, CT_OP_REDUCE_SUM, y, NULL, 0);
        ct_autodiff_result res = {0};
        ct_autodiff_options o = {.result = &res};
        ct_status st = ct_autodiff(b->g, loss, &o);
        if (st) {
            fail("frozen: %s", ct_status_msg(st));
            ct_status_free(st);
        } else if (res.n_grads != 1 || res.grads[0].value != fc || ct_autodiff_grad_of(b->g, w) ||
                   !ct_autodiff_grad_of(b->g, fc)) {
            fail("frozen: expected exactly one gradient (fc), got %d", res.n_grads);
        } else {
            bool relu_diffed = false; /* nothing upstream of the frozen w is differentiated */
            for (int i = res.first_backward_node; i < b->g->n_nodes; i++)
                relu_diffed |= b->g->nodes[i]->op == CT_OP_RELU_GRAD;
            if (relu_diffed) fail("frozen: the backward graph differentiates through the frozen branch");
            else {
                n_pass++;
                printf("ok   frozen parameters get no gradient\n");
            }
        }
        ct_graph_free(b->g);
    }
    /* StopGradient: loss = sum(x * sg(x)) has gradient sg(x) = x, not 2x. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F64, .rng = 7}, *b = &bb;
        ct_value *x = P("x", 1, 0, 3, 4);
        ct_value *loss = reduce(b, CT_OP_REDUCE_SUM, op2(b, CT_OP_MUL, x, op1(b, CT_OP_STOP_GRADIENT, x)), NULL, 0);
        ct_status st = ct_autodiff(b->g, loss, NULL);
        run_state r = {0};
        ct_value *gx = ct_autodiff_grad_of(b->g, x);
        if (st || !gx || !run_graph(b->g, &r, -1)) {
            fail("stop gradient: %s", st ? ct_status_msg(st) : "no gradient");
        } else {
            bool ok = true;
            for (int i = 0; i < 12; i++) ok &= fabs(((double *)r.buf[gx->id])[i] - ((double *)x->data)[i]) < 1e-12;
            if (ok) {
                n_pass++;
                printf("ok   StopGradient blocks the gradient\n");
            } else {
                fail("stop gradient: d/dx sum(x * sg(x)) is not x");
            }
        }
        ct_status_free(st);
        if (r.buf) run_free(&r, b->g);
        ct_graph_free(b->g);
    }
    /* ReduceL2 of a zero row: gradient 0 there (PyTorch), not NaN. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F64, .rng = 7}, *b = &bb;
        ct_value *x = P("x", 1, 0, 2, 3);
        for (int i = 3; i < 6; i++) ((double *)x->data)[i] = 0;
        ct_value *loss = reduce(b, CT_OP_REDUCE_SUM, reduce(b, CT_OP_REDUCE_L2, x, INTS(1), 0), NULL, 0);
        ct_status st = ct_autodiff(b->g, loss, NULL);
        run_state r = {0};
        ct_value *gx = ct_autodiff_grad_of(b->g, x);
        if (st || !gx || !run_graph(b->g, &r, -1)) {
            fail("ReduceL2 at zero: %s", st ? ct_status_msg(st) : "no gradient");
        } else {
            const double *d = r.buf[gx->id], *xv = x->data;
            double nrm = sqrt(xv[0] * xv[0] + xv[1] * xv[1] + xv[2] * xv[2]);
            bool ok = fabs(d[0] - xv[0] / nrm) < 1e-12 && d[3] == 0 && d[4] == 0 && d[5] == 0;
            if (ok) {
                n_pass++;
                printf("ok   ReduceL2 gradient at a zero row is 0\n");
            } else {
                fail("ReduceL2 at zero: gradient %g %g (want %g 0)", d[0], d[3], xv[0] / nrm);
            }
        }
        ct_status_free(st);
        if (r.buf) run_free(&r, b->g);
        ct_graph_free(b->g);
    }
    /* All frozen: a clear error naming the loss. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        ct_value *w = P("w", 1, 0, 3, 4);
        w->frozen = true;
        ct_value *loss = reduce(b, CT_OP_REDUCE_SUM, w, NULL, 0);
        loss->name = "the_loss";
        expect_error("no trainable parameter", ct_autodiff(b->g, loss, NULL), "the_loss");
        ct_graph_free(b->g);
    }
    /* A non-scalar loss. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        ct_value *y = op1(b, CT_OP_RELU, P("w", 1, 0, 3, 4));
        expect_error("non-scalar loss", ct_autodiff(b->g, y, NULL), "scalar");
        ct_graph_free(b->g);
    }
    /* An op without a gradient rule on the path: the message names the node. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        ct_value *y = op1(b, CT_OP_FLOOR, P("w", 1, 0, 3, 4));
        y->producer->name = "my_floor";
        ct_value *loss = reduce(b, CT_OP_REDUCE_SUM, y, NULL, 0);
        expect_error("op without gradient", ct_autodiff(b->g, loss, NULL), "my_floor");
        ct_graph_free(b->g);
    }
    /* BatchNorm splits that do not divide the batch. */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        ct_value *x = P("x", 1, 0, 3, 2, 2, 2);
        bn(b, x, 2, 0, NULL);
        ct_bn_train_options o = {.splits = 2};
        expect_error("bn splits", ct_bn_train(b->g, &o), "not divisible");
        ct_graph_free(b->g);
    }
    /* A graph without BatchNormalization trains (with a warning on stderr). */
    {
        B bb = {.g = ct_graph_new("f"), .t = CT_F32, .rng = 7}, *b = &bb;
        op1(b, CT_OP_RELU, P("w", 1, 0, 3, 4));
        ct_status st = ct_bn_train(b->g, NULL);
        if (st) {
            fail("bn_train without BN: %s", ct_status_msg(st));
            ct_status_free(st);
        } else {
            n_pass++;
            printf("ok   bn_train on a graph without BatchNormalization (warning above)\n");
        }
        ct_graph_free(b->g);
    }
}

int main(void)
{
    static const struct {
        const char *name;
        build_fn fn;
    } cases[] = {
        {"Relu", c_relu}, {"Sigmoid", c_sigmoid}, {"Tanh", c_tanh}, {"HardSigmoid", c_hard_sigmoid},
        {"HardSwish", c_hard_swish}, {"LeakyRelu", c_leaky_relu}, {"Abs", c_abs}, {"Sqrt", c_sqrt},
        {"Reciprocal", c_reciprocal}, {"Neg", c_neg}, {"Exp", c_exp}, {"Erf", c_erf}, {"Log", c_log},
        {"Identity+Dropout", c_identity_dropout}, {"Clip", c_clip}, {"Clip as ReLU6", c_relu6},
        {"Softmax axis 1", c_softmax}, {"LogSoftmax", c_log_softmax},
        {"Add broadcast", c_add_bcast}, {"Sub broadcast", c_sub_bcast}, {"Mul broadcast", c_mul_bcast},
        {"Div broadcast", c_div_bcast}, {"Pow const exponent", c_pow_const}, {"Pow both", c_pow_both},
        {"Sum of 3 broadcast", c_sum3}, {"Where", c_where}, {"Max broadcast", c_max}, {"Min broadcast", c_min}, {"fan-out", c_fanout}, {"StopGradient of a row max", c_stop_gradient},
        {"Conv stride 2 pad 1 bias", c_conv_stride_pad}, {"Conv dilation asym pads", c_conv_dilation},
        {"Conv groups 2", c_conv_groups}, {"Conv depthwise stride 2", c_conv_depthwise},
        {"Conv SAME_UPPER", c_conv_same}, {"Conv 1x1 stride 2", c_conv_1x1}, {"Conv 1-D", c_conv_1d},
        {"MaxPool 3x3 s2 p1", c_maxpool}, {"MaxPool ceil_mode", c_maxpool_ceil},
        {"AveragePool", c_avgpool}, {"AveragePool incl pad", c_avgpool_incl},
        {"AveragePool ceil_mode", c_avgpool_ceil}, {"GlobalAveragePool", c_gap},
        {"Gemm", c_gemm_nn}, {"Gemm transB", c_gemm_nt}, {"Gemm transA", c_gemm_tn}, {"Gemm transA transB", c_gemm_tt},
        {"MatMul", c_matmul}, {"MatMul batched", c_matmul_batched},
        {"MatMul batch broadcast", c_matmul_bcast}, {"MatMul vector x batch", c_matmul_vec_mat},
        {"MatMul matrix x vector", c_matmul_mat_vec},
        {"ReduceMean", c_reduce_mean}, {"ReduceSum keepdims", c_reduce_sum}, {"ReduceL2", c_reduce_l2},
        {"normalize (L2, Clip, Div)", c_normalize}, {"Sqrt(ReduceSum(Pow))", c_sqrt_pow_norm},
        {"Flatten+Reshape", c_flatten_reshape}, {"Transpose", c_transpose}, {"Concat", c_concat},
        {"Split", c_split}, {"Slice", c_slice}, {"Slice with steps", c_slice_steps}, {"Squeeze+Unsqueeze", c_squeeze_unsqueeze},
        {"Expand", c_expand}, {"Pad", c_pad},
        {"BatchNorm train", c_bn_train}, {"BatchNorm train 2 splits", c_bn_train_split2},
        {"BatchNorm1d train", c_bn_train_1d}, {"BatchNorm eval form", c_bn_eval},
        {"SoftmaxCrossEntropy", c_sce}, {"mini network", c_mini_net},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_case(cases[i].name, cases[i].fn);
    check_running_stats(1);
    check_running_stats(2);
    check_frozen_and_errors();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

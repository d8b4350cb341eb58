/* grad_rules.c — the reverse-mode gradient rule of every op named in the grad
 * column of ir/ops.def. Each rule builds the backward of one node from
 * existing ops (Mul, ReduceSum, Gemm, Transpose...) or the ai.contra backward
 * kernels, and says which forward tensors it keeps for backward ("keeps:"):
 * those are read by the backward nodes, so the memory planner extends their
 * lifetime. dY below is dout[0], the gradient of the node's first output. */
#include <math.h>
#include <string.h>

#include "autodiff.h"

#define G ct_grad_graph(c)

/* ---------------------------------------------------------------- helpers */

static void copy_attr(ct_grad_ctx *c, ct_node *dst, const ct_node *src, const char *name)
{
    const ct_attr *a = ct_node_attr(src, name);
    if (a && dst) ct_node_add_attr(G, dst, a);
}

/* A constant int vector input or attribute: count, or -1 if not constant. */
static int const_ints(const ct_value *v, int64_t *out, int cap)
{
    if (!v || v->kind != CT_VALUE_CONST || !v->data) return -1;
    int64_t k = ct_shape_numel(&v->shape);
    if (k < 0 || k > cap) return -1;
    for (int64_t i = 0; i < k; i++)
        out[i] = v->dtype == CT_I64 ? ((const int64_t *)v->data)[i]
                 : v->dtype == CT_I32 ? ((const int32_t *)v->data)[i]
                                      : 0;
    return (v->dtype == CT_I64 || v->dtype == CT_I32) ? (int)k : -1;
}

static ct_value *dy_or_zero(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, int i)
{
    if (dout[i]) return dout[i];
    return ct_grad_expand_to(c, ct_grad_scalar(c, n->out[i]->dtype, 0.0), &n->out[i]->shape);
}

/* ReduceSum over axes with keepdims = 0. */
static ct_value *reduce_sum_drop(ct_grad_ctx *c, ct_value *x, const int64_t *axes, int na)
{
    if (!x) return NULL;
    ct_value *in[2] = {x, ct_grad_ints(c, axes, na)};
    ct_node *r = ct_grad_emit(c, CT_OP_REDUCE_SUM, 2, in, 1);
    if (r) ct_node_set_int(G, r, "keepdims", 0);
    return ct_grad_finish(c, r);
}

/* A per-channel vector [C] shaped to broadcast against (N, C, spatial...). */
static ct_value *channel_view(ct_grad_ctx *c, ct_value *v, int rank)
{
    if (!v) return NULL;
    ct_shape s = {.rank = rank - 1};
    s.dims[0] = v->shape.dims[0];
    for (int i = 1; i < rank - 1; i++) s.dims[i] = 1;
    return ct_grad_reshape_to(c, v, &s);
}

static ct_value *gemm(ct_grad_ctx *c, ct_value *a, ct_value *b, int ta, int tb, float alpha)
{
    if (!a || !b) return NULL;
    ct_value *in[2] = {a, b};
    ct_node *m = ct_grad_emit(c, CT_OP_GEMM, 2, in, 1);
    if (m) {
        if (ta) ct_node_set_int(G, m, "transA", 1);
        if (tb) ct_node_set_int(G, m, "transB", 1);
        if (alpha != 1.0f) ct_node_set_float(G, m, "alpha", alpha);
    }
    return ct_grad_finish(c, m);
}

/* Swap the last two axes. */
static ct_value *transpose_last2(ct_grad_ctx *c, ct_value *x)
{
    if (!x) return NULL;
    int r = x->shape.rank;
    int64_t perm[CT_MAX_RANK];
    for (int i = 0; i < r; i++) perm[i] = i;
    perm[r - 1] = r - 2;
    perm[r - 2] = r - 1;
    ct_node *t = ct_grad_emit(c, CT_OP_TRANSPOSE, 1, &x, 1);
    if (t) ct_node_set_ints(G, t, "perm", perm, r);
    return ct_grad_finish(c, t);
}

/* Strides, dilations and explicit pads (auto_pad resolved) of a Conv or pool
 * node with nsp spatial axes; k is the kernel size. */
static void window_attrs(const ct_node *n, const int64_t *k, int nsp, int64_t *s, int64_t *d, int64_t *p)
{
    const ct_shape *xs = &n->in[0]->shape, *ys = &n->out[0]->shape;
    int cnt;
    const int64_t *a;
    for (int i = 0; i < nsp; i++) s[i] = d[i] = 1, p[i] = p[nsp + i] = 0;
    if ((a = ct_node_attr_ints(n, "strides", &cnt)) && cnt == nsp) memcpy(s, a, sizeof(int64_t) * (size_t)nsp);
    if ((a = ct_node_attr_ints(n, "dilations", &cnt)) && cnt == nsp) memcpy(d, a, sizeof(int64_t) * (size_t)nsp);
    if ((a = ct_node_attr_ints(n, "pads", &cnt)) && cnt == 2 * nsp) memcpy(p, a, sizeof(int64_t) * (size_t)(2 * nsp));
    const char *ap = ct_node_attr_string(n, "auto_pad", "NOTSET");
    if (!strcmp(ap, "VALID")) {
        for (int i = 0; i < 2 * nsp; i++) p[i] = 0;
    } else if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int i = 0; i < nsp; i++) {
            int64_t total = (ys->dims[2 + i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - xs->dims[2 + i];
            if (total < 0) total = 0;
            int64_t small = total / 2, big = total - small;
            p[i] = ap[5] == 'U' ? small : big;
            p[nsp + i] = ap[5] == 'U' ? big : small;
        }
    }
}

static void set_window(ct_grad_ctx *c, ct_node *b, const int64_t *k, const int64_t *s, const int64_t *d,
                       const int64_t *p, int nsp)
{
    if (!b) return;
    ct_node_set_ints(G, b, "kernel_shape", k, nsp);
    ct_node_set_ints(G, b, "strides", s, nsp);
    ct_node_set_ints(G, b, "dilations", d, nsp);
    ct_node_set_ints(G, b, "pads", p, 2 * nsp);
}

/* ---------------------------------------------------------------- no rule */

ct_status ct_grad_none(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)dout, (void)need, (void)din;
    return ct_grad_fail(c, n, "the op is not differentiable");
}

/* ---------------------------------------------------------------- elementwise, one input */

/* A kernel op(dY, t) -> dX, attributes copied from the forward node. */
static ct_status unary_kernel(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, ct_value **din, ct_op op,
                              ct_value *t)
{
    ct_value *in[2] = {dout[0], t};
    ct_node *b = ct_grad_emit(c, op, 2, in, 1);
    for (int i = 0; b && i < n->n_attr; i++) ct_node_add_attr(G, b, &n->attrs[i]);
    din[0] = ct_grad_finish(c, b);
    return CT_OK;
}

/* keeps: Y */
ct_status ct_grad_relu(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_RELU_GRAD, n->out[0]);
}

/* keeps: Y */
ct_status ct_grad_sigmoid(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_SIGMOID_GRAD, n->out[0]);
}

/* keeps: Y */
ct_status ct_grad_tanh(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_TANH_GRAD, n->out[0]);
}

/* keeps: X */
ct_status ct_grad_hard_sigmoid(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                               ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_HARD_SIGMOID_GRAD, n->in[0]);
}

/* keeps: X */
ct_status ct_grad_hard_swish(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_HARD_SWISH_GRAD, n->in[0]);
}

/* keeps: X */
ct_status ct_grad_leaky_relu(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_LEAKY_RELU_GRAD, n->in[0]);
}

/* keeps: X */
ct_status ct_grad_abs(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_ABS_GRAD, n->in[0]);
}

/* dX = dY / (2 Y). keeps: Y */
ct_status ct_grad_sqrt(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    ct_value *y = n->out[0];
    din[0] = ct_grad_op2(c, CT_OP_DIV, dout[0], ct_grad_op2(c, CT_OP_MUL, y, ct_grad_scalar(c, y->dtype, 2.0)));
    return CT_OK;
}

/* dX = -dY Y^2. keeps: Y */
ct_status ct_grad_reciprocal(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    (void)need;
    ct_value *y = n->out[0];
    din[0] = ct_grad_op1(c, CT_OP_NEG, ct_grad_op2(c, CT_OP_MUL, dout[0], ct_grad_op2(c, CT_OP_MUL, y, y)));
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_neg(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)n, (void)need;
    din[0] = ct_grad_op1(c, CT_OP_NEG, dout[0]);
    return CT_OK;
}

/* dX = dY Y. keeps: Y */
ct_status ct_grad_exp(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    din[0] = ct_grad_op2(c, CT_OP_MUL, dout[0], n->out[0]);
    return CT_OK;
}

/* dX = dY / X. keeps: X */
ct_status ct_grad_log(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    din[0] = ct_grad_op2(c, CT_OP_DIV, dout[0], n->in[0]);
    return CT_OK;
}

/* dX = dY 2/sqrt(pi) exp(-X^2) (GELU's Erf). keeps: X */
ct_status ct_grad_erf(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    (void)need;
    ct_value *x = n->in[0];
    ct_value *e = ct_grad_op1(c, CT_OP_EXP, ct_grad_op1(c, CT_OP_NEG, ct_grad_op2(c, CT_OP_MUL, x, x)));
    din[0] = ct_grad_op2(c, CT_OP_MUL, dout[0], ct_grad_op2(c, CT_OP_MUL, e, ct_grad_scalar(c, x->dtype, 1.1283791670955126)));
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_identity(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                           ct_value **din)
{
    (void)c, (void)n, (void)need;
    din[0] = dout[0];
    return CT_OK;
}

/* Dropout in inference form is the identity; training-mode dropout is not
 * supported (the exports we train are made with dropout off). keeps: nothing */
ct_status ct_grad_dropout(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                          ct_value **din)
{
    if (n->n_in >= 3 && n->in[2]) {
        const ct_value *tm = n->in[2];
        bool off = tm->kind == CT_VALUE_CONST && tm->data && ((const uint8_t *)tm->data)[0] == 0;
        if (!off) return ct_grad_fail(c, n, "training-mode Dropout has no gradient rule yet (export with dropout off)");
    }
    if (need[1] || need[2]) return ct_grad_fail(c, n, "the ratio of Dropout cannot be differentiated");
    din[0] = dout[0];
    return CT_OK;
}

/* dX = dY where min <= X <= max (PyTorch's clamp backward). keeps: X, min, max */
ct_status ct_grad_clip(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    for (int i = 1; i < n->n_in; i++)
        if (need[i]) return ct_grad_fail(c, n, "the bounds of Clip cannot be differentiated");
    ct_value *in[4] = {dout[0], n->in[0], n->n_in > 1 ? n->in[1] : NULL, n->n_in > 2 ? n->in[2] : NULL};
    ct_node *b = ct_grad_emit(c, CT_OP_CLIP_GRAD, n->n_in + 1, in, 1);
    copy_attr(c, b, n, "min");
    copy_attr(c, b, n, "max");
    din[0] = ct_grad_finish(c, b);
    return CT_OK;
}

/* keeps: Y */
ct_status ct_grad_softmax(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                          ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_SOFTMAX_GRAD, n->out[0]);
}

/* keeps: Y */
ct_status ct_grad_log_softmax(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                              ct_value **din)
{
    (void)need;
    return unary_kernel(c, n, dout, din, CT_OP_LOG_SOFTMAX_GRAD, n->out[0]);
}

/* ---------------------------------------------------------------- broadcasting binary */

/* keeps: nothing */
ct_status ct_grad_add(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    for (int i = 0; i < 2; i++)
        if (need[i]) din[i] = ct_grad_reduce_to(c, dout[0], &n->in[i]->shape);
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_sum(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    for (int i = 0; i < n->n_in; i++)
        if (need[i]) din[i] = ct_grad_reduce_to(c, dout[0], &n->in[i]->shape);
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_sub(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    if (need[0]) din[0] = ct_grad_reduce_to(c, dout[0], &n->in[0]->shape);
    if (need[1]) din[1] = ct_grad_reduce_to(c, ct_grad_op1(c, CT_OP_NEG, dout[0]), &n->in[1]->shape);
    return CT_OK;
}

/* dA = dY B, dB = dY A (summed over broadcast axes). keeps: A (for dB), B (for dA) */
ct_status ct_grad_mul(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    if (need[0]) din[0] = ct_grad_reduce_to(c, ct_grad_op2(c, CT_OP_MUL, dout[0], n->in[1]), &n->in[0]->shape);
    if (need[1]) din[1] = ct_grad_reduce_to(c, ct_grad_op2(c, CT_OP_MUL, dout[0], n->in[0]), &n->in[1]->shape);
    return CT_OK;
}

/* dA = dY / B, dB = -dY Y / B. keeps: B, Y (for dB) */
ct_status ct_grad_div(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    ct_value *b = n->in[1];
    if (need[0]) din[0] = ct_grad_reduce_to(c, ct_grad_op2(c, CT_OP_DIV, dout[0], b), &n->in[0]->shape);
    if (need[1])
        din[1] = ct_grad_reduce_to(
            c, ct_grad_op1(c, CT_OP_NEG, ct_grad_op2(c, CT_OP_DIV, ct_grad_op2(c, CT_OP_MUL, dout[0], n->out[0]), b)),
            &b->shape);
    return CT_OK;
}

/* dA = dY B A^(B-1), dB = dY Y log(A). keeps: A, B, Y (for dB) */
ct_status ct_grad_pow(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    ct_value *a = n->in[0], *b = n->in[1];
    ct_dtype t = a->dtype;
    if (need[0]) {
        ct_value *bf = b;
        if (b->dtype != t) {
            ct_node *cast = ct_grad_emit(c, CT_OP_CAST, 1, &b, 1);
            if (cast) ct_node_set_int(G, cast, "to", ct_dtype_to_onnx(t));
            bf = ct_grad_finish(c, cast);
        }
        ct_value *bm1 = ct_grad_op2(c, CT_OP_SUB, bf, ct_grad_scalar(c, t, 1.0));
        ct_value *d = ct_grad_op2(c, CT_OP_MUL, dout[0], ct_grad_op2(c, CT_OP_MUL, bf, ct_grad_op2(c, CT_OP_POW, a, bm1)));
        din[0] = ct_grad_reduce_to(c, d, &a->shape);
    }
    if (need[1]) {
        if (b->dtype != t) return ct_grad_fail(c, n, "the exponent has dtype %s, unlike the base", ct_dtype_name(b->dtype));
        ct_value *d = ct_grad_op2(c, CT_OP_MUL, dout[0], ct_grad_op2(c, CT_OP_MUL, n->out[0], ct_grad_op1(c, CT_OP_LOG, a)));
        din[1] = ct_grad_reduce_to(c, d, &b->shape);
    }
    return CT_OK;
}

/* Max/Min of one or two inputs: dY to the winner, split in half on ties
 * (PyTorch's maximum/minimum backward). keeps: A, B */
ct_status ct_grad_max_min(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                          ct_value **din)
{
    if (n->n_in == 1) {
        din[0] = dout[0];
        return CT_OK;
    }
    if (n->n_in != 2) return ct_grad_fail(c, n, "only Max/Min of two inputs can be differentiated");
    ct_value *a = n->in[0], *b = n->in[1], *dy = dout[0];
    ct_value *wins = ct_grad_op2(c, n->op == CT_OP_MAX ? CT_OP_GREATER : CT_OP_LESS, a, b);
    ct_value *tie = ct_grad_op2(c, CT_OP_EQUAL, a, b);
    ct_value *zero = ct_grad_scalar(c, dy->dtype, 0.0);
    ct_value *half = ct_grad_op2(c, CT_OP_MUL, dy, ct_grad_scalar(c, dy->dtype, 0.5));
    for (int i = 0; i < 2; i++) {
        if (!need[i]) continue;
        ct_value *in1[3] = {tie, half, i == 0 ? zero : dy};
        ct_value *t = ct_grad_finish(c, ct_grad_emit(c, CT_OP_WHERE, 3, in1, 1));
        ct_value *in2[3] = {wins, i == 0 ? dy : zero, t};
        ct_value *w = ct_grad_finish(c, ct_grad_emit(c, CT_OP_WHERE, 3, in2, 1));
        din[i] = ct_grad_reduce_to(c, ct_grad_expand_to(c, w, &n->out[0]->shape), &n->in[i]->shape);
    }
    return CT_OK;
}

/* dX = Where(cond, dY, 0), dY' = Where(cond, 0, dY). keeps: cond */
ct_status ct_grad_where(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    if (need[0]) return ct_grad_fail(c, n, "the condition of Where cannot be differentiated");
    for (int i = 1; i < 3; i++) {
        if (!need[i]) continue;
        ct_value *zero = ct_grad_scalar(c, n->out[0]->dtype, 0.0);
        ct_value *in[3] = {n->in[0], i == 1 ? dout[0] : zero, i == 1 ? zero : dout[0]};
        ct_value *w = ct_grad_finish(c, ct_grad_emit(c, CT_OP_WHERE, 3, in, 1));
        din[i] = ct_grad_reduce_to(c, w, &n->in[i]->shape);
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- convolution, normalisation, pooling */

/* dX = ConvGradInput(dY, W), dW = ConvGradWeight(dY, X), dB = ReduceSum(dY, N and spatial).
 * keeps: W (for dX), X (for dW) */
ct_status ct_grad_conv(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    const ct_shape *xs = &n->in[0]->shape, *ws = &n->in[1]->shape;
    int nsp = xs->rank - 2;
    if (nsp < 1 || nsp > 3) return ct_grad_fail(c, n, "only 1-D to 3-D convolutions can be differentiated");
    int64_t k[3], s[3], d[3], p[6];
    for (int i = 0; i < nsp; i++) k[i] = ws->dims[2 + i];
    window_attrs(n, k, nsp, s, d, p);
    int64_t group = ct_node_attr_int(n, "group", 1);
    for (int which = 0; which < 2; which++) {
        if (!need[which]) continue;
        ct_value *in[2] = {dout[0], which == 0 ? n->in[1] : n->in[0]};
        ct_node *b = ct_grad_emit(c, which == 0 ? CT_OP_CONV_GRAD_INPUT : CT_OP_CONV_GRAD_WEIGHT, 2, in, 1);
        set_window(c, b, k, s, d, p, nsp);
        if (b) {
            ct_node_set_int(G, b, "group", group);
            ct_node_set_ints(G, b, which == 0 ? "input_shape" : "weight_shape", which == 0 ? xs->dims : ws->dims,
                             xs->rank);
        }
        din[which] = ct_grad_finish(c, b);
    }
    if (n->n_in > 2 && need[2]) {
        int64_t axes[CT_MAX_RANK];
        int na = 0;
        axes[na++] = 0;
        for (int i = 2; i < xs->rank; i++) axes[na++] = i;
        din[2] = reduce_sum_drop(c, dout[0], axes, na);
    }
    return CT_OK;
}

/* MaxPool: dX = MaxPoolGrad(dY, X) (the window maximum recomputed from X).
 * keeps: X */
ct_status ct_grad_max_pool(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                           ct_value **din)
{
    (void)need;
    const ct_shape *xs = &n->in[0]->shape;
    int nsp = xs->rank - 2, cnt;
    const int64_t *k = ct_node_attr_ints(n, "kernel_shape", &cnt);
    if (nsp < 1 || nsp > 2 || !k || cnt != nsp) return ct_grad_fail(c, n, "only 1-D and 2-D pooling can be differentiated");
    if (!dout[0]) return ct_grad_fail(c, n, "only the pooled output (not the indices) can be differentiated");
    int64_t s[2], d[2], p[4];
    window_attrs(n, k, nsp, s, d, p);
    ct_value *in[2] = {dout[0], n->in[0]};
    ct_node *b = ct_grad_emit(c, CT_OP_MAX_POOL_GRAD, 2, in, 1);
    set_window(c, b, k, s, d, p, nsp);
    if (b) ct_node_set_int(G, b, "ceil_mode", ct_node_attr_int(n, "ceil_mode", 0));
    din[0] = ct_grad_finish(c, b);
    return CT_OK;
}

/* AveragePool: dX = AveragePoolGrad(dY). keeps: nothing */
ct_status ct_grad_average_pool(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                               ct_value **din)
{
    (void)need;
    const ct_shape *xs = &n->in[0]->shape;
    int nsp = xs->rank - 2, cnt;
    const int64_t *k = ct_node_attr_ints(n, "kernel_shape", &cnt);
    if (nsp < 1 || nsp > 2 || !k || cnt != nsp) return ct_grad_fail(c, n, "only 1-D and 2-D pooling can be differentiated");
    int64_t s[2], d[2], p[4];
    window_attrs(n, k, nsp, s, d, p);
    ct_node *b = ct_grad_emit(c, CT_OP_AVERAGE_POOL_GRAD, 1, &dout[0], 1);
    set_window(c, b, k, s, d, p, nsp);
    if (b) {
        ct_node_set_int(G, b, "ceil_mode", ct_node_attr_int(n, "ceil_mode", 0));
        ct_node_set_int(G, b, "count_include_pad", ct_node_attr_int(n, "count_include_pad", 0));
        ct_node_set_ints(G, b, "input_shape", xs->dims, xs->rank);
    }
    din[0] = ct_grad_finish(c, b);
    return CT_OK;
}

/* dX = Expand(dY / HW). keeps: nothing */
ct_status ct_grad_global_average_pool(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                      ct_value **din)
{
    (void)need;
    const ct_shape *xs = &n->in[0]->shape;
    int64_t hw = 1;
    for (int i = 2; i < xs->rank; i++) hw *= xs->dims[i];
    ct_value *d = dout[0];
    if (hw != 1) d = ct_grad_op2(c, CT_OP_MUL, d, ct_grad_scalar(c, d->dtype, 1.0 / (double)hw));
    din[0] = ct_grad_expand_to(c, d, xs);
    return CT_OK;
}

/* BatchNormalization in inference form (a frozen encoder in eval mode): an
 * affine map per channel with the running statistics.
 * dX = dY scale invstd, dscale = sum(dY (X - mean) invstd), dB = sum(dY).
 * keeps: X (for dscale), scale, mean, var */
ct_status ct_grad_batch_norm(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    if (ct_node_attr_int(n, "training_mode", 0))
        return ct_grad_fail(c, n, "training-mode BatchNormalization must be lowered by the bn_train pass first");
    if (need[3] || need[4]) return ct_grad_fail(c, n, "the running statistics cannot be differentiated");
    const ct_shape *xs = &n->in[0]->shape;
    int r = xs->rank;
    ct_value *x = n->in[0], *scale = n->in[1], *mean = n->in[3], *var = n->in[4], *dy = dout[0];
    if (!dy) return ct_grad_fail(c, n, "only Y can be differentiated");
    float eps = ct_node_attr_float(n, "epsilon", 1e-5f);
    ct_value *invstd = ct_grad_op1(
        c, CT_OP_RECIPROCAL, ct_grad_op1(c, CT_OP_SQRT, ct_grad_op2(c, CT_OP_ADD, var, ct_grad_scalar(c, var->dtype, eps))));
    int64_t axes[CT_MAX_RANK];
    int na = 0;
    axes[na++] = 0;
    for (int i = 2; i < r; i++) axes[na++] = i;
    if (need[0])
        din[0] = ct_grad_op2(c, CT_OP_MUL, dy, channel_view(c, ct_grad_op2(c, CT_OP_MUL, scale, invstd), r));
    if (need[1]) {
        ct_value *xhat = ct_grad_op2(c, CT_OP_MUL, ct_grad_op2(c, CT_OP_SUB, x, channel_view(c, mean, r)),
                                     channel_view(c, invstd, r));
        din[1] = reduce_sum_drop(c, ct_grad_op2(c, CT_OP_MUL, dy, xhat), axes, na);
    }
    if (need[2]) din[2] = reduce_sum_drop(c, dy, axes, na);
    return CT_OK;
}

/* BatchNormTrain: BatchNormGrad(dY, X, scale, saved_mean, saved_invstd) -> dX, dscale, dB.
 * keeps: X, scale, saved_mean, saved_invstd */
ct_status ct_grad_batch_norm_train(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                   ct_value **din)
{
    if (need[3] || need[4]) return ct_grad_fail(c, n, "the running statistics cannot be differentiated");
    for (int i = 1; i < 5; i++)
        if (dout[i]) return ct_grad_fail(c, n, "only Y can be differentiated (output %d is used by the loss)", i);
    ct_value *in[5] = {dout[0], n->in[0], n->in[1], n->out[1], n->out[2]};
    ct_node *b = ct_grad_emit(c, CT_OP_BATCH_NORM_GRAD, 5, in, 3);
    if (b) {
        ct_node_set_int(G, b, "splits", ct_node_attr_int(n, "splits", 1));
        if (ct_node_attr_int(n, "world", 1) > 1) ct_node_set_int(G, b, "world", ct_node_attr_int(n, "world", 1));
    }
    if (!ct_grad_finish(c, b)) return CT_OK;
    for (int i = 0; i < 3; i++) din[i] = b->out[i];
    return CT_OK;
}

/* ---------------------------------------------------------------- linear algebra */

/* Gemm Y = alpha op(A) op(B) + beta C: the gradients are Gemms with the
 * transposes arranged so nothing is transposed explicitly. keeps: A (for dB), B (for dA) */
ct_status ct_grad_gemm(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    ct_value *a = n->in[0], *b = n->in[1], *dy = dout[0];
    int ta = (int)ct_node_attr_int(n, "transA", 0), tb = (int)ct_node_attr_int(n, "transB", 0);
    float alpha = ct_node_attr_float(n, "alpha", 1.0f), beta = ct_node_attr_float(n, "beta", 1.0f);
    if (need[0]) din[0] = !ta ? gemm(c, dy, b, 0, !tb, alpha) : gemm(c, b, dy, tb, 1, alpha);
    if (need[1]) din[1] = !tb ? gemm(c, a, dy, !ta, 0, alpha) : gemm(c, dy, a, 1, ta, alpha);
    if (n->n_in > 2 && need[2]) {
        ct_value *d = beta == 1.0f ? dy : ct_grad_op2(c, CT_OP_MUL, dy, ct_grad_scalar(c, dy->dtype, beta));
        din[2] = ct_grad_reduce_to(c, d, &n->in[2]->shape);
    }
    return CT_OK;
}

/* MatMul (batch axes broadcast; a 1-D operand is viewed as a row [1, K] or a
 * column [K, 1] matrix): dA = dY B^T, dB = A^T dY, summed over broadcast batch
 * axes. keeps: A (for dB), B (for dA) */
ct_status ct_grad_matmul(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    ct_value *a = n->in[0], *b = n->in[1], *dy = dout[0];
    ct_shape as = a->shape, bs = b->shape, ys = dy->shape;
    if (as.rank == 1) as = (ct_shape){.rank = 2, .dims = {1, a->shape.dims[0]}};
    if (bs.rank == 1) bs = (ct_shape){.rank = 2, .dims = {b->shape.dims[0], 1}};
    if (a->shape.rank == 1 || b->shape.rank == 1) { /* dY with the dropped axes restored */
        ys.rank = 0;
        int r = as.rank > bs.rank ? as.rank : bs.rank;
        for (int i = 0; i < r - 2; i++) ys.dims[ys.rank++] = dy->shape.dims[i];
        ys.dims[ys.rank++] = as.dims[as.rank - 2];
        ys.dims[ys.rank++] = bs.dims[bs.rank - 1];
    }
    ct_value *a2 = ct_grad_reshape_to(c, a, &as), *b2 = ct_grad_reshape_to(c, b, &bs), *dy2 = ct_grad_reshape_to(c, dy, &ys);
    if (need[0]) {
        ct_value *d = ct_grad_reduce_to(c, ct_grad_op2(c, CT_OP_MATMUL, dy2, transpose_last2(c, b2)), &as);
        din[0] = ct_grad_reshape_to(c, d, &a->shape);
    }
    if (need[1]) {
        ct_value *d = ct_grad_reduce_to(c, ct_grad_op2(c, CT_OP_MATMUL, transpose_last2(c, a2), dy2), &bs);
        din[1] = ct_grad_reshape_to(c, d, &b->shape);
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- reductions */

/* The reduced axes of a Reduce* node as flags; false if it reduces nothing (noop). */
static ct_status reduce_flags(ct_grad_ctx *c, const ct_node *n, bool *red, bool *noop)
{
    int r = n->in[0]->shape.rank;
    int64_t axes[CT_MAX_RANK];
    int na = 0;
    if (n->n_in > 1 && n->in[1]) {
        na = const_ints(n->in[1], axes, CT_MAX_RANK);
        if (na < 0) return ct_grad_fail(c, n, "axes must be constant to differentiate");
    } else {
        const int64_t *a = ct_node_attr_ints(n, "axes", &na);
        if (na > CT_MAX_RANK) return ct_grad_fail(c, n, "too many axes");
        if (a) memcpy(axes, a, sizeof(int64_t) * (size_t)na);
    }
    *noop = false;
    for (int i = 0; i < r; i++) red[i] = na == 0;
    if (na == 0 && ct_node_attr_int(n, "noop_with_empty_axes", 0)) {
        *noop = true;
        for (int i = 0; i < r; i++) red[i] = false;
    }
    for (int i = 0; i < na; i++) red[axes[i] < 0 ? axes[i] + r : axes[i]] = true;
    return CT_OK;
}

/* dY reshaped with the reduced axes kept (size 1), so it broadcasts against X. */
static ct_value *reduce_keep(ct_grad_ctx *c, ct_value *dy, const ct_shape *xs, const bool *red)
{
    ct_shape k = *xs;
    for (int i = 0; i < k.rank; i++)
        if (red[i]) k.dims[i] = 1;
    return ct_grad_reshape_to(c, dy, &k);
}

/* keeps: nothing */
ct_status ct_grad_reduce_sum(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    (void)need;
    bool red[CT_MAX_RANK], noop;
    if (reduce_flags(c, n, red, &noop)) return CT_OK;
    const ct_shape *xs = &n->in[0]->shape;
    din[0] = ct_grad_expand_to(c, reduce_keep(c, dout[0], xs, red), xs);
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_reduce_mean(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                              ct_value **din)
{
    (void)need;
    bool red[CT_MAX_RANK], noop;
    if (reduce_flags(c, n, red, &noop)) return CT_OK;
    const ct_shape *xs = &n->in[0]->shape;
    int64_t cnt = 1;
    for (int i = 0; i < xs->rank; i++)
        if (red[i]) cnt *= xs->dims[i];
    ct_value *d = reduce_keep(c, dout[0], xs, red);
    if (cnt != 1) d = ct_grad_op2(c, CT_OP_MUL, d, ct_grad_scalar(c, dout[0]->dtype, 1.0 / (double)cnt));
    din[0] = ct_grad_expand_to(c, d, xs);
    return CT_OK;
}

/* dX = X dY / Y (broadcast), 0 where Y = 0 (as PyTorch's norm backward). keeps: X, Y */
ct_status ct_grad_reduce_l2(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                            ct_value **din)
{
    (void)need;
    bool red[CT_MAX_RANK], noop;
    if (reduce_flags(c, n, red, &noop)) return CT_OK;
    const ct_shape *xs = &n->in[0]->shape;
    ct_value *y = reduce_keep(c, n->out[0], xs, red), *zero = ct_grad_scalar(c, n->out[0]->dtype, 0.0);
    ct_value *q = ct_grad_op2(c, CT_OP_DIV, reduce_keep(c, dout[0], xs, red), y);
    ct_value *in[3] = {ct_grad_op2(c, CT_OP_EQUAL, y, zero), zero, q};
    ct_value *safe = ct_grad_finish(c, ct_grad_emit(c, CT_OP_WHERE, 3, in, 1));
    din[0] = ct_grad_op2(c, CT_OP_MUL, n->in[0], safe);
    return CT_OK;
}

/* ---------------------------------------------------------------- data movement */

/* Flatten, Reshape, Squeeze, Unsqueeze: reshape dY back. keeps: nothing */
ct_status ct_grad_reshape(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                          ct_value **din)
{
    for (int i = 1; i < n->n_in; i++)
        if (need[i]) return ct_grad_fail(c, n, "the shape input cannot be differentiated");
    din[0] = ct_grad_reshape_to(c, dout[0], &n->in[0]->shape);
    return CT_OK;
}

/* keeps: nothing */
ct_status ct_grad_transpose(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                            ct_value **din)
{
    (void)need;
    int r = n->in[0]->shape.rank, cnt;
    const int64_t *perm = ct_node_attr_ints(n, "perm", &cnt);
    int64_t inv[CT_MAX_RANK];
    for (int i = 0; i < r; i++) {
        int64_t p = perm && cnt == r ? perm[i] : r - 1 - i;
        inv[p] = i;
    }
    ct_node *t = ct_grad_emit(c, CT_OP_TRANSPOSE, 1, &dout[0], 1);
    if (t) ct_node_set_ints(G, t, "perm", inv, r);
    din[0] = ct_grad_finish(c, t);
    return CT_OK;
}

/* Concat: Split dY back into the inputs' sizes. keeps: nothing */
ct_status ct_grad_concat(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                         ct_value **din)
{
    int r = n->out[0]->shape.rank;
    int64_t axis = ct_node_attr_int(n, "axis", 0);
    if (axis < 0) axis += r;
    if (n->n_in > 8) {
        /* Split outputs are capped by ct_grad_emit; slice each input out instead. */
        int64_t off = 0;
        for (int i = 0; i < n->n_in; i++) {
            int64_t len = n->in[i]->shape.dims[axis];
            if (need[i]) {
                int64_t st = off, en = off + len, ax = axis;
                ct_value *in[4] = {dout[0], ct_grad_ints(c, &st, 1), ct_grad_ints(c, &en, 1), ct_grad_ints(c, &ax, 1)};
                din[i] = ct_grad_finish(c, ct_grad_emit(c, CT_OP_SLICE, 4, in, 1));
            }
            off += len;
        }
        return CT_OK;
    }
    int64_t sizes[8];
    for (int i = 0; i < n->n_in; i++) sizes[i] = n->in[i]->shape.dims[axis];
    ct_value *in[2] = {dout[0], ct_grad_ints(c, sizes, n->n_in)};
    ct_node *s = ct_grad_emit(c, CT_OP_SPLIT, 2, in, n->n_in);
    if (s) ct_node_set_int(G, s, "axis", axis);
    if (!ct_grad_finish(c, s)) return CT_OK;
    for (int i = 0; i < n->n_in; i++)
        if (need[i]) din[i] = s->out[i];
    return CT_OK;
}

/* Split: Concat the output gradients (zeros where none flows). keeps: nothing */
ct_status ct_grad_split(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    if (n->n_in > 1 && need[1]) return ct_grad_fail(c, n, "the split sizes cannot be differentiated");
    int r = n->in[0]->shape.rank;
    int64_t axis = ct_node_attr_int(n, "axis", 0);
    if (axis < 0) axis += r;
    ct_value *parts[64];
    for (int i = 0; i < n->n_out; i++) parts[i] = dy_or_zero(c, n, dout, i);
    ct_node *cat = ct_grad_emit(c, CT_OP_CONCAT, n->n_out, parts, 1);
    if (cat) ct_node_set_int(G, cat, "axis", axis);
    din[0] = ct_grad_finish(c, cat);
    return CT_OK;
}

/* Slice (positive steps): Pad dY with zeros back to X's shape, zeros
 * interleaved for steps > 1. keeps: nothing */
ct_status ct_grad_slice(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    for (int i = 1; i < n->n_in; i++)
        if (need[i]) return ct_grad_fail(c, n, "the slice bounds cannot be differentiated");
    const ct_shape *xs = &n->in[0]->shape;
    int r = xs->rank;
    int64_t st_[CT_MAX_RANK], en[CT_MAX_RANK], ax[CT_MAX_RANK], sp[CT_MAX_RANK];
    int ns, ne, na, nsp;
    if (n->n_in >= 3 && n->in[1] && n->in[2]) {
        ns = const_ints(n->in[1], st_, CT_MAX_RANK);
        ne = const_ints(n->in[2], en, CT_MAX_RANK);
    } else {
        const int64_t *a1 = ct_node_attr_ints(n, "starts", &ns), *a2 = ct_node_attr_ints(n, "ends", &ne);
        if (ns > CT_MAX_RANK || ne > CT_MAX_RANK) return ct_grad_fail(c, n, "too many starts/ends");
        if (a1) memcpy(st_, a1, sizeof(int64_t) * (size_t)ns);
        if (a2) memcpy(en, a2, sizeof(int64_t) * (size_t)ne);
    }
    if (ns < 0 || ns != ne) return ct_grad_fail(c, n, "starts/ends must be constant to differentiate");
    if (n->n_in >= 4 && n->in[3]) {
        na = const_ints(n->in[3], ax, CT_MAX_RANK);
    } else {
        const int64_t *a = ct_node_attr_ints(n, "axes", &na);
        if (a && na <= CT_MAX_RANK) memcpy(ax, a, sizeof(int64_t) * (size_t)na);
        else
            for (na = 0; na < ns; na++) ax[na] = na;
    }
    if (n->n_in >= 5 && n->in[4]) nsp = const_ints(n->in[4], sp, CT_MAX_RANK);
    else
        for (nsp = 0; nsp < ns; nsp++) sp[nsp] = 1;
    if (na != ns || nsp != ns) return ct_grad_fail(c, n, "axes/steps must be constant to differentiate");
    int64_t pads[2 * CT_MAX_RANK] = {0};
    ct_value *cur = dout[0];
    for (int i = 0; i < ns; i++) {
        int a = (int)(ax[i] < 0 ? ax[i] + r : ax[i]);
        if (sp[i] < 1) return ct_grad_fail(c, n, "slices with negative steps cannot be differentiated yet");
        int64_t d = xs->dims[a], s = st_[i], p = sp[i];
        if (s < 0) s += d;
        s = s < 0 ? 0 : s > d ? d : s;
        int64_t len = n->out[0]->shape.dims[a];
        if (p > 1 && len > 0) {
            /* Step p: interleave p-1 zeros after each element along axis a
             * (a new axis of size 1 padded to p, then merged), then crop to
             * what is left of X from s. */
            if (r + 1 > CT_MAX_RANK) return ct_grad_fail(c, n, "rank too high for a strided slice gradient");
            ct_shape e = {.rank = r + 1};
            for (int k = 0, j = 0; k < r; k++) {
                e.dims[j++] = cur->shape.dims[k];
                if (k == a) e.dims[j++] = 1;
            }
            int64_t ipads[2 * (CT_MAX_RANK + 1)] = {0};
            ipads[(r + 1) + a + 1] = p - 1;
            ct_value *in[2] = {ct_grad_reshape_to(c, cur, &e), ct_grad_ints(c, ipads, 2 * (r + 1))};
            cur = ct_grad_finish(c, ct_grad_emit(c, CT_OP_PAD, 2, in, 1));
            ct_shape m = dout[0]->shape;
            for (int k = 0; k < r; k++) m.dims[k] = k == a ? len * p : (cur ? cur->shape.dims[k < a ? k : k + 1] : 0);
            cur = ct_grad_reshape_to(c, cur, &m);
            len = len * p;
            if (len > d - s) { /* the trailing zeros run past the end of X */
                int64_t st0 = 0, en = d - s, axv = a;
                ct_value *sl[4] = {cur, ct_grad_ints(c, &st0, 1), ct_grad_ints(c, &en, 1), ct_grad_ints(c, &axv, 1)};
                cur = ct_grad_finish(c, ct_grad_emit(c, CT_OP_SLICE, 4, sl, 1));
                len = d - s;
            }
            if (!cur) return CT_OK;
        }
        pads[a] = s;
        pads[r + a] = d - s - len;
    }
    ct_value *in[2] = {cur, ct_grad_ints(c, pads, 2 * r)};
    din[0] = ct_grad_finish(c, ct_grad_emit(c, CT_OP_PAD, 2, in, 1));
    return CT_OK;
}

/* Expand: sum dY over the broadcast axes. keeps: nothing */
ct_status ct_grad_expand(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                         ct_value **din)
{
    if (need[1]) return ct_grad_fail(c, n, "the shape input cannot be differentiated");
    din[0] = ct_grad_reduce_to(c, dout[0], &n->in[0]->shape);
    return CT_OK;
}

/* Pad (constant mode, non-negative pads): Slice dY back. keeps: nothing */
ct_status ct_grad_pad(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din)
{
    for (int i = 1; i < n->n_in; i++)
        if (need[i]) return ct_grad_fail(c, n, "the pads and value cannot be differentiated");
    if (strcmp(ct_node_attr_string(n, "mode", "constant"), "constant"))
        return ct_grad_fail(c, n, "only constant-mode Pad can be differentiated");
    const ct_shape *xs = &n->in[0]->shape;
    int r = xs->rank;
    int64_t pads[2 * CT_MAX_RANK], axes[CT_MAX_RANK];
    int np, na = r;
    if (n->n_in >= 2 && n->in[1]) {
        np = const_ints(n->in[1], pads, 2 * CT_MAX_RANK);
    } else {
        const int64_t *a = ct_node_attr_ints(n, "pads", &np);
        if (a && np <= 2 * CT_MAX_RANK) memcpy(pads, a, sizeof(int64_t) * (size_t)np);
    }
    if (n->n_in >= 4 && n->in[3]) na = const_ints(n->in[3], axes, CT_MAX_RANK);
    else
        for (int i = 0; i < r; i++) axes[i] = i;
    if (np < 0 || na < 0 || np != 2 * na) return ct_grad_fail(c, n, "pads must be constant to differentiate");
    int64_t starts[CT_MAX_RANK], ends[CT_MAX_RANK], ax[CT_MAX_RANK];
    for (int i = 0; i < na; i++) {
        int a = (int)(axes[i] < 0 ? axes[i] + r : axes[i]);
        if (pads[i] < 0 || pads[na + i] < 0) return ct_grad_fail(c, n, "negative pads cannot be differentiated yet");
        starts[i] = pads[i];
        ends[i] = pads[i] + xs->dims[a];
        ax[i] = a;
    }
    ct_value *in[4] = {dout[0], ct_grad_ints(c, starts, na), ct_grad_ints(c, ends, na), ct_grad_ints(c, ax, na)};
    din[0] = ct_grad_finish(c, ct_grad_emit(c, CT_OP_SLICE, 4, in, 1));
    return CT_OK;
}

/* ---------------------------------------------------------------- losses */

/* SoftmaxCrossEntropy: dlogits = SoftmaxCrossEntropyGrad(dloss, log_prob, labels)
 * (+ LogSoftmaxGrad if log_prob itself is used). keeps: log_prob, labels */
ct_status ct_grad_softmax_cross_entropy(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                        ct_value **din)
{
    if (need[1]) return ct_grad_fail(c, n, "labels cannot be differentiated");
    ct_value *d = NULL;
    if (dout[0]) {
        ct_value *in[3] = {dout[0], n->out[1], n->in[1]};
        d = ct_grad_finish(c, ct_grad_emit(c, CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD, 3, in, 1));
    }
    if (dout[1]) {
        ct_value *in[2] = {dout[1], n->out[1]};
        ct_node *b = ct_grad_emit(c, CT_OP_LOG_SOFTMAX_GRAD, 2, in, 1);
        if (b) ct_node_set_int(G, b, "axis", 1);
        ct_value *e = ct_grad_finish(c, b);
        d = d ? ct_grad_op2(c, CT_OP_ADD, d, e) : e;
    }
    din[0] = d;
    return CT_OK;
}

/* The collectives' gradients are their transposes over the ranks: AllGather's is
 * ReduceScatter (every rank's gradient of a block of gathered rows, summed, back
 * to the rank that owns the block) and ReduceScatter's is AllGather. keeps: nothing */
static ct_status grad_transposed_collective(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, ct_value **din,
                                            ct_op op)
{
    ct_node *r = ct_grad_emit(c, op, 1, dout, 1);
    if (r) ct_node_set_int(G, r, "world", ct_node_attr_int(n, "world", 1));
    din[0] = ct_grad_finish(c, r);
    return CT_OK;
}

ct_status ct_grad_all_gather(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din)
{
    (void)need;
    return grad_transposed_collective(c, n, dout, din, CT_OP_REDUCE_SCATTER);
}

ct_status ct_grad_reduce_scatter(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                 ct_value **din)
{
    (void)need;
    return grad_transposed_collective(c, n, dout, din, CT_OP_ALL_GATHER);
}

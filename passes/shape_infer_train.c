/* shape_infer_train.c — shape and type inference for the training ops of
 * ir/ops.def (domain ai.contra: backward kernels, BatchNormTrain, the
 * softmax cross-entropy loss). Errors read "node 'NAME' (Op): ...". */
#include <stdarg.h>
#include <string.h>

#include "passes.h"

static void set_out(ct_node *n, int i, ct_dtype t, const ct_shape *s)
{
    if (i >= n->n_out || !n->out[i]) return;
    n->out[i]->dtype = t;
    n->out[i]->shape = *s;
    n->out[i]->shape_known = true;
}

static ct_status float_input(const ct_node *n, int i)
{
    if (!ct_dtype_is_float(n->in[i]->dtype))
        return ct_node_errorf(n, "input %d '%s' must be floating point, not %s", i, n->in[i]->name,
                        ct_dtype_name(n->in[i]->dtype));
    return CT_OK;
}

/* Output 0: the shape of input 1 and the dtype of input 0 (dY). For the
 * elementwise gradient kernels dY must have that shape too. */
ct_status ct_infer_train_like1(ct_graph *g, ct_node *n)
{
    (void)g;
    CT_TRY(float_input(n, 0));
    const ct_shape *s = &n->in[1]->shape;
    bool elementwise = n->op != CT_OP_MAX_POOL_GRAD && n->op != CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD;
    if (elementwise && !ct_shape_equal(&n->in[0]->shape, s)) {
        char a[128], b[128];
        return ct_node_errorf(n, "dY %s and '%s' %s must have the same shape", ct_shape_str(&n->in[0]->shape, a, sizeof a),
                        n->in[1]->name, ct_shape_str(s, b, sizeof b));
    }
    if (n->op == CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD && ct_shape_numel(&n->in[0]->shape) != 1)
        return ct_node_errorf(n, "dloss must have one element");
    set_out(n, 0, n->in[0]->dtype, s);
    return CT_OK;
}

/* Output 0: the shape in the input_shape / weight_shape attribute. */
ct_status ct_infer_train_shape_attr(ct_graph *g, ct_node *n)
{
    (void)g;
    CT_TRY(float_input(n, 0));
    const char *attr = n->op == CT_OP_CONV_GRAD_WEIGHT ? "weight_shape" : "input_shape";
    int cnt;
    const int64_t *d = ct_node_attr_ints(n, attr, &cnt);
    if (!d || cnt < 3 || cnt > CT_MAX_RANK || cnt != n->in[0]->shape.rank)
        return ct_node_errorf(n, "needs a '%s' attribute of rank %d", attr, n->in[0]->shape.rank);
    ct_shape s = {.rank = cnt};
    for (int i = 0; i < cnt; i++) {
        if (d[i] <= 0) return ct_node_errorf(n, "'%s' has a non-positive dimension", attr);
        s.dims[i] = d[i];
    }
    if (n->op == CT_OP_CONV_GRAD_INPUT) {
        const ct_shape *ws = &n->in[1]->shape;
        if (ws->rank != cnt || ws->dims[0] != n->in[0]->shape.dims[1])
            return ct_node_errorf(n, "weight '%s' does not match dY's channels", n->in[1]->name);
    }
    if (n->op == CT_OP_CONV_GRAD_WEIGHT && n->in[1]->shape.rank != cnt)
        return ct_node_errorf(n, "X '%s' must have rank %d", n->in[1]->name, cnt);
    set_out(n, 0, n->in[0]->dtype, &s);
    return CT_OK;
}

/* BatchNormTrain: Y like X; saved_mean/saved_invstd [S*C]; new running stats [C]. */
ct_status ct_infer_batch_norm_train(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = &n->in[0]->shape;
    if (xs->rank < 2) return ct_node_errorf(n, "input X must have rank >= 2 (N, C, ...)");
    int64_t C = xs->dims[1], S = ct_node_attr_int(n, "splits", 1);
    if (S < 1 || xs->dims[0] < 0 || xs->dims[0] % S)
        return ct_node_errorf(n, "batch %lld is not divisible by splits %lld", (long long)xs->dims[0], (long long)S);
    for (int i = 0; i < 5; i++) CT_TRY(float_input(n, i));
    for (int i = 1; i < 5; i++)
        if (n->in[i]->shape.rank != 1 || n->in[i]->shape.dims[0] != C)
            return ct_node_errorf(n, "input %d '%s' must have shape [%lld]", i, n->in[i]->name, (long long)C);
    ct_shape sc = {.rank = 1, .dims = {S * C}}, c1 = {.rank = 1, .dims = {C}};
    set_out(n, 0, n->in[0]->dtype, xs);
    set_out(n, 1, n->in[0]->dtype, &sc);
    set_out(n, 2, n->in[0]->dtype, &sc);
    set_out(n, 3, n->in[3]->dtype, &c1);
    set_out(n, 4, n->in[4]->dtype, &c1);
    return CT_OK;
}

/* BatchNormGrad(dY, X, scale, saved_mean, saved_invstd) -> dX like X, dscale, dB like scale. */
ct_status ct_infer_batch_norm_grad(ct_graph *g, ct_node *n)
{
    (void)g;
    for (int i = 0; i < 5; i++) CT_TRY(float_input(n, i));
    const ct_shape *xs = &n->in[1]->shape;
    if (!ct_shape_equal(&n->in[0]->shape, xs)) return ct_node_errorf(n, "dY and X must have the same shape");
    int64_t C = xs->dims[1], S = ct_node_attr_int(n, "splits", 1);
    if (S < 1 || xs->dims[0] % S) return ct_node_errorf(n, "batch not divisible by splits");
    if (n->in[3]->shape.rank != 1 || n->in[3]->shape.dims[0] != S * C || n->in[4]->shape.rank != 1 ||
        n->in[4]->shape.dims[0] != S * C)
        return ct_node_errorf(n, "saved statistics must have shape [%lld]", (long long)(S * C));
    set_out(n, 0, n->in[0]->dtype, xs);
    set_out(n, 1, n->in[2]->dtype, &n->in[2]->shape);
    set_out(n, 2, n->in[2]->dtype, &n->in[2]->shape);
    return CT_OK;
}

/* SoftmaxCrossEntropy(logits [N, C], labels int [N]) -> loss [], log_prob [N, C]. */
ct_status ct_infer_softmax_cross_entropy(ct_graph *g, ct_node *n)
{
    (void)g;
    CT_TRY(float_input(n, 0));
    const ct_shape *ls = &n->in[0]->shape, *ys = &n->in[1]->shape;
    if (ls->rank != 2) return ct_node_errorf(n, "logits must have shape [N, C]");
    if (ys->rank != 1 || ys->dims[0] != ls->dims[0])
        return ct_node_errorf(n, "labels '%s' must have shape [N] with N = %lld", n->in[1]->name, (long long)ls->dims[0]);
    if (n->in[1]->dtype != CT_I64 && n->in[1]->dtype != CT_I32)
        return ct_node_errorf(n, "labels '%s' must be int64 or int32", n->in[1]->name);
    ct_shape sc = {.rank = 0};
    set_out(n, 0, n->in[0]->dtype, &sc);
    set_out(n, 1, n->in[0]->dtype, ls);
    return CT_OK;
}

/* shape_infer_fused.c — shape and type inference for the fused ops of
 * ir/ops.def (domain ai.contra, "fused losses" section): ContrastiveLoss,
 * InBatchContrastiveLoss and their Grad ops. Errors read "node 'NAME' (Op): ...". */
#include "passes.h"

static void set_out(ct_node *n, int i, ct_dtype t, const ct_shape *s)
{
    if (i >= n->n_out || !n->out[i]) return;
    n->out[i]->dtype = t;
    n->out[i]->shape = *s;
    n->out[i]->shape_known = true;
}

/* q_raw [N, D], k [N, D], queue [D, K]: float32 (or float64), one type. */
static ct_status check_operands(const ct_node *n, const ct_value *q, const ct_value *k, const ct_value *queue)
{
    if (!q || !k || !queue) return ct_node_errorf(n, "needs q_raw, k and queue inputs");
    if (!ct_dtype_is_float(q->dtype) || k->dtype != q->dtype || queue->dtype != q->dtype)
        return ct_node_errorf(n, "q_raw '%s', k '%s' and queue '%s' must be floating point of one type", q->name,
                              k->name, queue->name);
    if (q->shape.rank != 2 || k->shape.rank != 2 || queue->shape.rank != 2)
        return ct_node_errorf(n, "q_raw '%s' and k '%s' must be [N, D] and queue '%s' [D, K]", q->name, k->name,
                              queue->name);
    int64_t N = q->shape.dims[0], D = q->shape.dims[1];
    if (k->shape.dims[0] != N || k->shape.dims[1] != D)
        return ct_node_errorf(n, "k '%s' is [%lld, %lld] but q_raw '%s' is [%lld, %lld]", k->name,
                              (long long)k->shape.dims[0], (long long)k->shape.dims[1], q->name, (long long)N,
                              (long long)D);
    if (queue->shape.dims[0] != D)
        return ct_node_errorf(n, "queue '%s' holds %lld-wide keys, q_raw '%s' is %lld wide", queue->name,
                              (long long)queue->shape.dims[0], q->name, (long long)D);
    if (queue->shape.dims[1] < 1) return ct_node_errorf(n, "queue '%s' is empty", queue->name);
    if (!(ct_node_attr_float(n, "temperature", 0.0f) > 0.0f))
        return ct_node_errorf(n, "temperature must be > 0 (got %g)", (double)ct_node_attr_float(n, "temperature", 0));
    if (ct_node_attr_int(n, "tile", 0) < 0) return ct_node_errorf(n, "tile must be >= 0");
    return CT_OK;
}

ct_status ct_infer_contrastive_loss(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_value *q = n->in[0];
    CT_TRY(check_operands(n, q, n->in[1], n->in[2]));
    ct_shape sc = {.rank = 0}, rows = {.rank = 1, .dims = {q->shape.dims[0]}};
    set_out(n, 0, q->dtype, &sc);
    set_out(n, 1, q->dtype, &rows);
    return CT_OK;
}

ct_status ct_infer_contrastive_loss_grad(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_value *dl = n->in[0], *q = n->in[1], *rl = n->in[4];
    CT_TRY(check_operands(n, q, n->in[2], n->in[3]));
    if (!dl || dl->dtype != q->dtype || ct_shape_numel(&dl->shape) != 1)
        return ct_node_errorf(n, "dloss must be a scalar of q_raw's type");
    if (!rl || rl->dtype != q->dtype || rl->shape.rank != 1 || rl->shape.dims[0] != q->shape.dims[0])
        return ct_node_errorf(n, "row_loss must be [N] of q_raw's type (the forward's second output)");
    set_out(n, 0, q->dtype, &q->shape);
    return CT_OK;
}

/* z_raw [V*B, D], mask [B, B] (optional); *A receives the anchor count. */
static ct_status check_inbatch(const ct_node *n, const ct_value *z, const ct_value *mask, int64_t *A)
{
    if (!z || !ct_dtype_is_float(z->dtype) || z->shape.rank != 2)
        return ct_node_errorf(n, "z_raw must be a floating-point [V*B, D] tensor");
    int64_t V = ct_node_attr_int(n, "views", 2), N = z->shape.dims[0];
    if (V < 1 || N < 2 || N % V) return ct_node_errorf(n, "%lld rows are not %lld views of one batch", (long long)N,
                                                       (long long)V);
    int64_t B = N / V;
    if (mask && (mask->dtype != z->dtype || mask->shape.rank != 2 || mask->shape.dims[0] != B ||
                 mask->shape.dims[1] != B))
        return ct_node_errorf(n, "mask '%s' must be [%lld, %lld] of z_raw's type", mask->name, (long long)B,
                              (long long)B);
    if (!(ct_node_attr_float(n, "temperature", 0.0f) > 0.0f) || !(ct_node_attr_float(n, "base_temperature", 0.0f) > 0.0f))
        return ct_node_errorf(n, "temperature and base_temperature must be > 0");
    if (ct_node_attr_int(n, "tile", 0) < 0) return ct_node_errorf(n, "tile must be >= 0");
    *A = ct_node_attr_int(n, "contrast_all", 1) ? N : B;
    return CT_OK;
}

ct_status ct_infer_inbatch_contrastive_loss(ct_graph *g, ct_node *n)
{
    (void)g;
    int64_t A;
    CT_TRY(check_inbatch(n, n->in[0], n->n_in > 1 ? n->in[1] : NULL, &A));
    ct_shape sc = {.rank = 0}, st = {.rank = 2, .dims = {A, 2}};
    set_out(n, 0, n->in[0]->dtype, &sc);
    set_out(n, 1, n->in[0]->dtype, &st);
    return CT_OK;
}

ct_status ct_infer_inbatch_contrastive_loss_grad(ct_graph *g, ct_node *n)
{
    (void)g;
    int64_t A;
    const ct_value *dl = n->in[0], *z = n->in[1], *stats = n->in[2];
    CT_TRY(check_inbatch(n, z, n->n_in > 3 ? n->in[3] : NULL, &A));
    if (!dl || dl->dtype != z->dtype || ct_shape_numel(&dl->shape) != 1)
        return ct_node_errorf(n, "dloss must be a scalar of z_raw's type");
    if (!stats || stats->dtype != z->dtype || stats->shape.rank != 2 || stats->shape.dims[0] != A ||
        stats->shape.dims[1] != 2)
        return ct_node_errorf(n, "stats must be [%lld, 2] of z_raw's type (the forward's second output)", (long long)A);
    set_out(n, 0, z->dtype, &z->shape);
    return CT_OK;
}

/* shape_infer_methods.c — shape and type inference for the ops the
 * contrastive methods add to ir/ops.def (domain ai.contra, "methods"
 * section): QueuePush. Errors read "node 'NAME' (Op): ...". */
#include <stdarg.h>
#include <string.h>

#include "passes.h"

ct_status ct_infer_queue_push(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_value *q = n->in[0], *k = n->in[1], *p = n->in[2];
    if (!q || !k || !p) return ct_node_errorf(n, "needs queue, keys and ptr inputs");
    if (!ct_dtype_is_float(q->dtype) || k->dtype != q->dtype)
        return ct_node_errorf(n, "queue '%s' and keys '%s' must be floating point of one type", q->name, k->name);
    if (q->shape.rank != 2 || k->shape.rank != 2)
        return ct_node_errorf(n, "queue '%s' must be [D, K] and keys '%s' [B, D]", q->name, k->name);
    int64_t D = q->shape.dims[0], K = q->shape.dims[1], B = k->shape.dims[0];
    if (k->shape.dims[1] != D)
        return ct_node_errorf(n, "keys '%s' have width %lld but the queue '%s' holds %lld-wide keys", k->name,
                        (long long)k->shape.dims[1], q->name, (long long)D);
    if (B > 0 && K > 0 && B > K)
        return ct_node_errorf(n, "%lld keys per step do not fit a queue of %lld", (long long)B, (long long)K);
    if (p->dtype != CT_I64 || ct_shape_numel(&p->shape) != 1)
        return ct_node_errorf(n, "ptr '%s' must be an int64 tensor of one element", p->name);
    n->out[0]->dtype = q->dtype;
    n->out[0]->shape = q->shape;
    n->out[0]->shape_known = true;
    if (n->out[1]) {
        n->out[1]->dtype = CT_I64;
        n->out[1]->shape = p->shape;
        n->out[1]->shape_known = true;
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- collectives */

static ct_status world_of(const ct_node *n, int64_t *w)
{
    *w = ct_node_attr_int(n, "world", 1);
    if (*w < 1 || *w > 65536) return ct_node_errorf(n, "world %lld must be in [1, 65536]", (long long)*w);
    return CT_OK;
}

ct_status ct_infer_all_reduce(ct_graph *g, ct_node *n)
{
    (void)g;
    int64_t w;
    CT_TRY(world_of(n, &w));
    const char *op = ct_node_attr_string(n, "op", "sum");
    if (strcmp(op, "sum") && strcmp(op, "mean"))
        return ct_node_errorf(n, "op '%s' must be \"sum\" or \"mean\"", op);
    if (n->n_out != n->n_in) return ct_node_errorf(n, "%d inputs but %d outputs (one output per input)", n->n_in, n->n_out);
    for (int i = 0; i < n->n_in; i++) {
        const ct_value *x = n->in[i];
        if (!x) return ct_node_errorf(n, "input %d is missing", i);
        if (x->dtype != CT_F32) return ct_node_errorf(n, "input '%s' is %s; AllReduce takes float32", x->name,
                                                      ct_dtype_name(x->dtype));
        if (!n->out[i]) continue;
        n->out[i]->dtype = x->dtype;
        n->out[i]->shape = x->shape;
        n->out[i]->shape_known = true;
    }
    return CT_OK;
}

static ct_status infer_rows(ct_node *n, bool gather)
{
    int64_t w;
    CT_TRY(world_of(n, &w));
    const ct_value *x = n->in[0];
    if (!x) return ct_node_errorf(n, "needs an input");
    if (x->shape.rank < 1) return ct_node_errorf(n, "input '%s' must have a batch axis", x->name);
    if (!gather && x->dtype != CT_F32)
        return ct_node_errorf(n, "input '%s' is %s; ReduceScatter takes float32", x->name, ct_dtype_name(x->dtype));
    int64_t r0 = x->shape.dims[0];
    if (!gather && r0 % w)
        return ct_node_errorf(n, "%lld rows of '%s' do not split into %lld equal blocks", (long long)r0, x->name,
                              (long long)w);
    n->out[0]->dtype = x->dtype;
    n->out[0]->shape = x->shape;
    n->out[0]->shape.dims[0] = gather ? r0 * w : r0 / w;
    n->out[0]->shape_known = true;
    return CT_OK;
}

ct_status ct_infer_all_gather(ct_graph *g, ct_node *n)
{
    (void)g;
    return infer_rows(n, true);
}

ct_status ct_infer_reduce_scatter(ct_graph *g, ct_node *n)
{
    (void)g;
    return infer_rows(n, false);
}

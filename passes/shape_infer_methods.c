/* shape_infer_methods.c — shape and type inference for the ops the
 * contrastive methods add to ir/ops.def (domain ai.contra, "methods"
 * section): QueuePush. Errors read "node 'NAME' (Op): ...". */
#include <stdarg.h>

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

/* eval_methods.c — reference kernels for the methods' ops (QueuePush, and the
 * collectives at world 1, where each is the identity):
 * the plainest correct C, the ground truth the generated kernels are
 * compared with. */
#include <string.h>

#include "eval_methods.h"

bool ct_eval_methods_supports(const ct_node *n)
{
    switch (n->op) {
    case CT_OP_QUEUE_PUSH:
        return n->n_in == 3 && n->in[0] && (n->in[0]->dtype == CT_F32 || n->in[0]->dtype == CT_F64) &&
               n->in[2] && n->in[2]->dtype == CT_I64;
    case CT_OP_ALL_REDUCE: case CT_OP_ALL_GATHER: case CT_OP_REDUCE_SCATTER:
        /* over several ranks they need the runtime's communicator */
        return ct_node_attr_int(n, "world", 1) == 1;
    default: return false;
    }
}

/* queue [D, K], keys [B, D], ptr [1] -> queue' [D, K], ptr' [1]. */
static ct_status eval_queue_push(const ct_node *n, const void *const *in, void *const *out)
{
    int64_t D = n->in[0]->shape.dims[0], K = n->in[0]->shape.dims[1], B = n->in[1]->shape.dims[0];
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t ptr = *(const int64_t *)in[2];
    if (K <= 0 || B > K) return ct_errorf("node '%s' (QueuePush): %lld keys for a queue of %lld", n->name,
                                          (long long)B, (long long)K);
    if (ptr < 0 || ptr >= K)
        return ct_errorf("node '%s' (QueuePush): pointer %lld outside the queue [0, %lld)", n->name,
                         (long long)ptr, (long long)K);
    const char *q = in[0], *k = in[1];
    char *o = out[0];
    if (o != q) memcpy(o, q, (size_t)(D * K) * es);
    for (int64_t i = 0; i < B; i++) {
        int64_t col = (ptr + i) % K;
        for (int64_t d = 0; d < D; d++) memcpy(o + (size_t)(d * K + col) * es, k + (size_t)(i * D + d) * es, es);
    }
    if (out[1]) *(int64_t *)out[1] = (ptr + B) % K;
    return CT_OK;
}

ct_status ct_eval_methods_node(const ct_node *n, const void *const *in, void *const *out)
{
    switch (n->op) {
    case CT_OP_QUEUE_PUSH: return eval_queue_push(n, in, out);
    case CT_OP_ALL_REDUCE: case CT_OP_ALL_GATHER: case CT_OP_REDUCE_SCATTER:
        for (int i = 0; i < n->n_out; i++)
            if (out[i] && out[i] != in[i])
                memcpy(out[i], in[i], (size_t)ct_shape_numel(&n->out[i]->shape) * ct_dtype_size(n->out[i]->dtype));
        return CT_OK;
    default:
        return ct_errorf("node '%s' (%s): not a methods op", n->name, ct_op_table[n->op].name);
    }
}

/* fuse.h — the operand layout of the fused nodes the fuse pass builds
 * (FusedEMA, FusedSGDStep, FusedAdamStep): a few leading scalar inputs, then
 * roles of n tensors each (keys, sources; params, grads, slots), the i-th
 * tensor of every role belonging to segment i. Shared by shape inference,
 * the reference kernels and the backends' flat-buffer placement. */
#ifndef CT_FUSE_H
#define CT_FUSE_H

#include "ir.h"

typedef struct {
    int n;        /* segments (tensors per role) */
    int lead;     /* scalar inputs before the first role */
    int in_roles; /* input role r is in[lead + r*n .. lead + (r+1)*n) */
    int out_roles;/* output role r is out[r*n .. (r+1)*n) */
} ct_fused_layout;

/* True for a fused multi-tensor op whose operands have a valid layout
 * (inline: the backends use it without linking the passes). */
static inline bool ct_fused_layout_get(const ct_node *n, ct_fused_layout *l)
{
    *l = (ct_fused_layout){0};
    switch (n->op) {
    case CT_OP_FUSED_EMA:
        l->lead = 2, l->in_roles = 2, l->out_roles = 1;
        break;
    case CT_OP_FUSED_SGD_STEP: {
        bool buf = ct_node_attr_int(n, "buffers", 0) != 0;
        l->lead = 1, l->in_roles = buf ? 3 : 2, l->out_roles = buf ? 2 : 1;
        break;
    }
    case CT_OP_FUSED_ADAM_STEP:
        l->lead = 2, l->in_roles = 4, l->out_roles = 3;
        break;
    default:
        return false;
    }
    if (n->n_out % l->out_roles) return false;
    l->n = n->n_out / l->out_roles;
    return l->n > 0 && n->n_in == l->lead + l->in_roles * l->n;
}

/* The fuse pass (registered as "fuse"): the EMA of a momentum encoder into
 * one FusedEMA node, the optimizer steps of one kind into one multi-tensor
 * node. CT_DEBUG_NO_FUSE=1 in the environment turns it into a no-op (to
 * compare fused and unfused programs). */
ct_status ct_pass_fuse(ct_graph *g);

#endif

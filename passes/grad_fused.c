/* grad_fused.c — gradient rules of the fused ops of ir/ops.def ("fused
 * losses" section). ContrastiveLoss keeps q_raw, k, the queue and its
 * per-row loss [N] for backward: ContrastiveLossGrad recomputes the logits
 * tile by tile instead of keeping the N x (K+1) log-probabilities. */
#include "autodiff.h"

ct_status ct_grad_contrastive_loss(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                   ct_value **din)
{
    if (need[1] || need[2])
        return ct_grad_fail(c, n, "the keys and the queue of a fused contrastive loss get no gradient "
                                  "(they must come from a StopGradient or persistent state)");
    if (dout[1]) return ct_grad_fail(c, n, "its per-row loss output cannot be differentiated");
    if (!need[0] || !dout[0]) return CT_OK;
    ct_value *in[5] = {dout[0], n->in[0], n->in[1], n->in[2], n->out[1]};
    ct_node *g = ct_grad_emit(c, CT_OP_CONTRASTIVE_LOSS_GRAD, 5, in, 1);
    if (g) {
        ct_node_set_float(ct_grad_graph(c), g, "temperature", ct_node_attr_float(n, "temperature", 1.0f));
        ct_node_set_int(ct_grad_graph(c), g, "tile", ct_node_attr_int(n, "tile", 0));
    }
    din[0] = ct_grad_finish(c, g); /* NULL on failure: the error is recorded in c */
    return CT_OK;
}

ct_status ct_grad_inbatch_contrastive_loss(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                           ct_value **din)
{
    if (n->n_in > 1 && need[1]) return ct_grad_fail(c, n, "the positive mask of a fused contrastive loss gets no gradient");
    if (dout[1]) return ct_grad_fail(c, n, "its statistics output cannot be differentiated");
    if (!need[0] || !dout[0]) return CT_OK;
    bool mask = n->n_in > 1 && n->in[1];
    ct_value *in[4] = {dout[0], n->in[0], n->out[1], mask ? n->in[1] : NULL};
    ct_node *g = ct_grad_emit(c, CT_OP_INBATCH_CONTRASTIVE_LOSS_GRAD, mask ? 4 : 3, in, 1);
    static const char *const attrs[] = {"temperature", "base_temperature", "views", "contrast_all", "tile"};
    for (int i = 0; g && i < 5; i++) {
        const ct_attr *a = ct_node_attr(n, attrs[i]);
        if (a) ct_node_add_attr(ct_grad_graph(c), g, a);
    }
    din[0] = ct_grad_finish(c, g);
    return CT_OK;
}

/* eval_fused.h — reference kernels for the fused ops of ir/ops.def ("fused
 * losses": ContrastiveLoss, ContrastiveLossGrad); ct_eval_node dispatches
 * here for those ops. */
#ifndef CT_EVAL_FUSED_H
#define CT_EVAL_FUSED_H

#include "ir.h"

/* True if ct_eval_fused_node can compute this node. */
bool ct_eval_fused_supports(const ct_node *n);

/* Compute node n; same contract as ct_eval_node (passes/eval.h). */
ct_status ct_eval_fused_node(const ct_node *n, const void *const *in, void *const *out);

#endif

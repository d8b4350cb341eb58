/* eval_methods.h — reference kernels for the ops of ir/ops.def's "methods"
 * section (QueuePush), the counterpart of eval_train.h; ct_eval_node
 * dispatches here for those ops. */
#ifndef CT_EVAL_METHODS_H
#define CT_EVAL_METHODS_H

#include "ir.h"

/* True if ct_eval_methods_node can compute this node. */
bool ct_eval_methods_supports(const ct_node *n);

/* Compute node n; same contract as ct_eval_node (passes/eval.h). */
ct_status ct_eval_methods_node(const ct_node *n, const void *const *in, void *const *out);

#endif

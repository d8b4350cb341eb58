/* eval_fuse.h — reference kernels of the fused ops (ir/ops.def's "fusion"
 * section); ct_eval_node dispatches here for them. */
#ifndef CT_EVAL_FUSE_H
#define CT_EVAL_FUSE_H

#include "ir.h"

/* True if ct_eval_fuse_node can compute this node. */
bool ct_eval_fuse_supports(const ct_node *n);

/* Compute node n; same contract as ct_eval_node (passes/eval.h). */
ct_status ct_eval_fuse_node(const ct_node *n, const void *const *in, void *const *out);

#endif

/* eval_train.h — reference kernels for the training ops (domain ai.contra:
 * backward kernels, BatchNormTrain, SoftmaxCrossEntropy), the counterpart
 * of eval.h; ct_eval_node dispatches here for those ops. */
#ifndef CT_EVAL_TRAIN_H
#define CT_EVAL_TRAIN_H

#include "ir.h"

/* True if ct_eval_train_node can compute this node (an ai.contra training op in float32/float64). */
bool ct_eval_train_supports(const ct_node *n);

/* Compute node n; same contract as ct_eval_node (passes/eval.h). */
ct_status ct_eval_train_node(const ct_node *n, const void *const *in, void *const *out);

#endif

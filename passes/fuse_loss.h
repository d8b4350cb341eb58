/* fuse_loss.h — the normalize + logits + cross-entropy fusion: the
 * contrastive loss subgraphs of models/methods.c (MoCo, SimCLR, SupCon)
 * become one ContrastiveLoss or InBatchContrastiveLoss node, whose backward
 * recomputes the logits tile by tile instead of keeping the N x (K+1)
 * (N x N) matrix. */
#ifndef CT_FUSE_LOSS_H
#define CT_FUSE_LOSS_H

#include "ir.h"

/* Replace every match of one of the loss subgraphs models/methods.c builds,
 * each starting from normalised embeddings
 *     qn = Div(x, Max(ReduceL2(x, axes [1], keepdims 1), 1e-12)):
 *   MoCo:    loss, log_prob = SoftmaxCrossEntropy(Div(Concat(ReduceSum(Mul(qn, k), axes [1]),
 *                             MatMul(qn, queue), axis 1), T), zeros)
 *            -> loss, row_loss = ContrastiveLoss(x, k, queue)
 *   SimCLR:  SoftmaxCrossEntropy(Add(Div(MatMul(qn, Transpose(qn)), T), -1e9 diagonal), (i + B) mod 2B)
 *            -> loss, stats = InBatchContrastiveLoss(x)            (views 2, base_temperature T)
 *   SupCon:  SupConLoss's chain (Tile of a [B, B] mask, the detached row max, the
 *            self-excluding logits mask, the mean log-probability of the positives,
 *            -(T / base_T), ReduceMean) -> loss, stats = InBatchContrastiveLoss(x, mask)
 * The fused node's fused_from lists the nodes it replaced. k, the queue and the
 * mask must carry no gradient (no trainable parameter reaches them except
 * through a StopGradient), and every intermediate must be read only inside the
 * pattern (log_prob by nothing): run it on the forward graph, before autodiff.
 * Unmatched graphs are left as they are. n_fused (may be NULL) receives the
 * number of replacements. */
ct_status ct_fuse_loss(ct_graph *g, int *n_fused);

/* The same in the ct_pass_fn form (passes/passes.h). */
ct_status ct_pass_fuse_loss(ct_graph *g);

#endif

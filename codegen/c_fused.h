/* c_fused.h — C kernels of the fused contrastive loss (ContrastiveLoss,
 * ContrastiveLossGrad): the queue streamed in column tiles through
 * cblas_sgemm with a running log-sum-exp; scratch O(N x (D + tile)),
 * independent of the queue length. c_backend.c frames the kernel (signature
 * x<i>/y<i>/scratch, the call in forward()) and asks this file for the body. */
#ifndef CT_C_FUSED_H
#define CT_C_FUSED_H

#include <stdint.h>

#include "emit.h"
#include "ir.h"

/* The queue columns one tile holds when the node's tile attribute is 0. */
#define CT_FUSED_DEFAULT_TILE 512

/* NULL if the node can be lowered (then *scratch_floats is the float scratch
 * its kernel needs), else the reason it cannot. */
const char *ct_c_fused_plan(const ct_node *n, int64_t *scratch_floats);

/* The kernel body of a node ct_c_fused_plan accepted, into the kernel emitter
 * (operands x0.., y0.., scratch as c_backend.c's kernel frame names them). */
void ct_c_fused_body(ct_emitter *e, const ct_node *n);

#endif

/* eval_optim.h — reference kernels of the optimizer ops (SGDStep, AdamStep,
 * LarsStep; ir/ops.def), reached from the reference interpreter's dispatch
 * of ai.contra ops. */
#ifndef CT_EVAL_OPTIM_H
#define CT_EVAL_OPTIM_H

#include "ir.h"

bool ct_eval_optim_supports(const ct_node *n);
ct_status ct_eval_optim_node(const ct_node *n, const void *const *in, void *const *out);

#endif

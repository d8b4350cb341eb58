/* eval.h — the reference interpreter: every op of ops.def computed plainly
 * on host memory, in the simplest correct C. Constant folding evaluates
 * nodes with it, and the per-op tests compare every generated kernel with it. */
#ifndef CT_EVAL_H
#define CT_EVAL_H

#include "ir.h"

/* True if ct_eval_node can compute this node (op, dtypes and attributes). */
bool ct_eval_supports(const ct_node *n);

/* Compute node n. Shapes and dtypes of n's inputs and outputs must be known
 * (shape inference has run). in[i] points to the data of input i (NULL for an
 * omitted optional input), laid out densely in row-major order with the
 * value's dtype; out[i] points to caller-allocated memory of
 * ct_value_nbytes(n->out[i]) bytes (NULL for an omitted output). Errors name
 * the node and what is unsupported. */
ct_status ct_eval_node(const ct_node *n, const void *const *in, void *const *out);

/* Evaluate every node of g in order. buf[v->id] is each value's data: the
 * caller points it at the graph inputs and persistent values; for node
 * outputs, a buffer is malloc'd here unless owned[v->id] says one from an
 * earlier call is there to reuse, and owned[v->id] is set (the caller frees
 * those). State updates (g->assigns) are left to the caller. */
ct_status ct_eval_graph(const ct_graph *g, void **buf, bool *owned);

#endif

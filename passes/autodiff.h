/* autodiff.h — reverse-mode differentiation on the IR, appended to the same
 * graph, and the pass that puts BatchNormalization in training form.
 * Gradient rules live beside their ops: ops.def's grad column names a
 * function of passes/grad_rules.c for each op. */
#ifndef CT_AUTODIFF_H
#define CT_AUTODIFF_H

#include "ir.h"

/* ---------------------------------------------------------------- autodiff */

/* One differentiated value and its gradient ("grad/<name>", same shape and dtype). */
typedef struct {
    ct_value *value; /* a trainable PARAM, or a value listed in options.wrt */
    ct_value *grad;
} ct_grad_pair;

/* Filled by ct_autodiff: every trainable parameter (and wrt value) that the
 * loss depends on, in graph value order (params first, then wrt values).
 * The array lives in the graph's arena. Trainable parameters the loss does
 * not depend on get no gradient (as in PyTorch, where .grad stays None). */
typedef struct {
    ct_grad_pair *grads;
    int n_grads;
    int first_backward_node; /* index in g->nodes of the first node autodiff added */
} ct_autodiff_result;

typedef struct {
    /* Extra values to differentiate besides the trainable parameters (graph
     * inputs, for tests and input-gradient methods); their gradients are
     * named "grad/<name>" too. */
    ct_value *const *wrt;
    int n_wrt;
    bool grads_as_outputs;      /* append every gradient to g->outputs */
    ct_autodiff_result *result; /* out, may be NULL */
} ct_autodiff_options;

/* Append the backward graph of `loss` (a float scalar or 1-element tensor) to
 * g: d(loss) = 1, nodes visited in reverse topological order, each op's rule
 * from ops.def, fan-out accumulated with Add/Sum. Only values on a path from a
 * trainable parameter (PARAM, !frozen) or a wrt value to the loss get
 * gradients; frozen parameters get none, and nothing flows back through a
 * StopGradient node. Shapes must be static (infer_shapes
 * with a fixed batch); the new nodes are shape-inferred as they are added.
 * Errors name the node whose op has no gradient rule or whose shapes cannot
 * be differentiated. opt may be NULL. */
ct_status ct_autodiff(ct_graph *g, ct_value *loss, const ct_autodiff_options *opt);

/* The gradient value "grad/<name>" of v, or NULL if autodiff gave it none. */
ct_value *ct_autodiff_grad_of(const ct_graph *g, const ct_value *v);

/* ---------------------------------------------------------------- rule interface */

/* A gradient rule: given node n and dout[i], the gradient of n->out[i] (NULL
 * where no gradient flows into that output: the rule treats it as zero),
 * set din[i] for every input with need[i] true (leave the others NULL). The
 * rule builds nodes with ct_grad_emit and friends; din[i] must have
 * n->in[i]'s shape and dtype. Errors name the node. */
typedef struct ct_grad_ctx ct_grad_ctx;
typedef ct_status (*ct_grad_fn)(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                                ct_value **din);

#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    ct_status grad(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need, ct_value **din);
#include "ops.def"
#undef CT_OP

/* Rule helpers (passes/autodiff.c). */
ct_graph *ct_grad_graph(ct_grad_ctx *c);
/* Append node op(in...) with n_out fresh TEMP outputs (shape-inferred at once);
 * outputs go to out[] (may be NULL when n_out == 1: use the return value's out[0]).
 * On failure returns NULL and records the error in the context. */
ct_node *ct_grad_emit(ct_grad_ctx *c, ct_op op, int n_in, ct_value *const *in, int n_out);
/* Shape-infer a node from ct_grad_emit once its attributes are set; returns
 * out[0] (NULL on failure, error recorded). */
ct_value *ct_grad_finish(ct_grad_ctx *c, ct_node *n);
/* One-output shorthands; NULL on failure (error recorded). */
ct_value *ct_grad_op1(ct_grad_ctx *c, ct_op op, ct_value *a);
ct_value *ct_grad_op2(ct_grad_ctx *c, ct_op op, ct_value *a, ct_value *b);
/* Constants: a scalar of the given float dtype, and an int64 vector. */
ct_value *ct_grad_scalar(ct_grad_ctx *c, ct_dtype t, double v);
ct_value *ct_grad_ints(ct_grad_ctx *c, const int64_t *v, int n);
/* Sum dy over broadcast dimensions so it takes `shape` (numpy broadcasting
 * reversed: ReduceSum with keepdims, then Reshape when ranks differ). */
ct_value *ct_grad_reduce_to(ct_grad_ctx *c, ct_value *dy, const ct_shape *shape);
/* Reshape x to `shape` (no node if equal). */
ct_value *ct_grad_reshape_to(ct_grad_ctx *c, ct_value *x, const ct_shape *shape);
/* Broadcast x to `shape` with Expand (no node if equal). */
ct_value *ct_grad_expand_to(ct_grad_ctx *c, ct_value *x, const ct_shape *shape);
/* Record an error (first one wins) and return NULL-friendly status. */
ct_status ct_grad_fail(ct_grad_ctx *c, const ct_node *n, const char *fmt, ...) CT_PRINTF(3, 4);
/* The error recorded by a failed helper (ownership passes to the caller). */
ct_status ct_grad_take_error(ct_grad_ctx *c);

/* ---------------------------------------------------------------- training-mode BatchNorm */

typedef struct {
    int splits;      /* S >= 1: Split BatchNorm over S equal sub-batches */
    bool keep_eval;  /* leave every BatchNormalization node in inference form (frozen encoder) */
    bool quiet;      /* no warning for graphs without BatchNormalization */
    int sync_world;  /* > 1: SyncBatchNorm, statistics over the global batch of this many ranks */
} ct_bn_train_options;

/* Replace each BatchNormalization node by BatchNormTrain (batch statistics,
 * PyTorch momentum = 1 - ONNX momentum) and add assignments updating its
 * running-mean/variance STATE values. A graph with no BatchNormalization
 * (an eval-mode export with BN folded into Conv) is left as is, with one
 * warning on stderr saying how to re-export. opt may be NULL (S = 1). */
ct_status ct_bn_train(ct_graph *g, const ct_bn_train_options *opt);
/* The same with default options, in the ct_pass_fn form for the registry. */
ct_status ct_pass_bn_train(ct_graph *g);

#endif

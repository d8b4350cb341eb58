/* fold.c — constant folding: a node whose inputs are all constants is
 * evaluated by the reference interpreter (eval.c) and its outputs become
 * constants.  Shared with infer_shapes, which folds shape arithmetic. */
#include "eval.h"
#include "passes.h"

#include <string.h>

/* Outputs larger than this are left to run time so folding never explodes a model. */
#define CT_FOLD_MAX_BYTES ((size_t)16 << 20)

ct_status ct_fold_node(ct_graph *g, ct_node *n, size_t max_bytes, bool *folded);

/* Random or training-mode nodes give a different result on every run. */
static bool is_nondeterministic(const ct_node *n)
{
    if (n->op == CT_OP_DROPOUT) {
        if (n->n_in < 3 || !n->in[2]) return false; /* inference form: identity */
        const ct_value *tm = n->in[2];
        if (tm->kind != CT_VALUE_CONST || !tm->data) return true;
        return ((const unsigned char *)tm->data)[0] != 0;
    }
    return false;
}

/* Shape and Size only need the input's shape, not its data: Shape of
 * [N,C,H,W] with start=1 is the constant [C,H,W]. */
static bool fold_shape_size(ct_graph *g, ct_node *n)
{
    const ct_shape *s = &n->in[0]->shape;
    ct_value *o = n->out[0];
    if (n->op == CT_OP_SIZE) {
        int64_t k = ct_shape_numel(s);
        if (!ct_shape_is_static(s) || k < 0) return false;
        o->data = ct_arena_alloc(&g->arena, sizeof(int64_t));
        *(int64_t *)o->data = k;
    } else {
        int r = s->rank;
        int64_t st = ct_node_attr_int(n, "start", 0), en = ct_node_attr_int(n, "end", r);
        if (st < 0) st += r;
        if (en < 0) en += r;
        st = st < 0 ? 0 : (st > r ? r : st);
        en = en < 0 ? 0 : (en > r ? r : en);
        for (int64_t i = st; i < en; i++)
            if (s->dims[i] < 0) return false;
        int64_t len = en > st ? en - st : 0;
        int64_t *d = ct_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)(len ? len : 1));
        for (int64_t i = 0; i < len; i++) d[i] = s->dims[st + i];
        o->data = d;
    }
    return true;
}

/* Evaluate n if every input is a constant (or, for Shape/Size, the input's
 * shape is static) and its outputs are static and at most max_bytes; then
 * its outputs become CONST values and *folded is set (the caller drops the
 * node).  Errors from the interpreter name the node. */
ct_status ct_fold_node(ct_graph *g, ct_node *n, size_t max_bytes, bool *folded)
{
    *folded = false;
    if (is_nondeterministic(n)) return CT_OK;
    for (int j = 0; j < n->n_out; j++) {
        ct_value *o = n->out[j];
        if (!o) continue;
        if (o->kind != CT_VALUE_TEMP || !o->shape_known || !ct_shape_is_static(&o->shape)) return CT_OK;
        int64_t k = ct_shape_numel(&o->shape);
        size_t es = ct_dtype_size(o->dtype);
        if (k < 0 || es == 0 || (uint64_t)k > max_bytes / es) return CT_OK; /* (no overflow in k * es) */
    }
    if ((n->op == CT_OP_SHAPE || n->op == CT_OP_SIZE) && n->n_in == 1 && n->in[0] && n->out[0]) {
        if (!fold_shape_size(g, n)) return CT_OK;
    } else {
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && (n->in[i]->kind != CT_VALUE_CONST || !n->in[i]->data)) return CT_OK;
        if (!ct_eval_supports(n)) return CT_OK;
        const void *in_buf[64];
        void *out_buf[64];
        if (n->n_in > 64 || n->n_out > 64) return CT_OK;
        for (int i = 0; i < n->n_in; i++) in_buf[i] = n->in[i] ? n->in[i]->data : NULL;
        for (int j = 0; j < n->n_out; j++)
            out_buf[j] = n->out[j] ? ct_arena_alloc(&g->arena, ct_value_nbytes(n->out[j])) : NULL;
        ct_status st = ct_eval_node(n, in_buf, out_buf);
        if (st) return ct_status_wrap(st, "while folding constants");
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j]) n->out[j]->data = out_buf[j];
    }
    for (int j = 0; j < n->n_out; j++) {
        ct_value *o = n->out[j];
        if (!o) continue;
        o->kind = CT_VALUE_CONST;
        o->producer = NULL;
    }
    *folded = true;
    return CT_OK;
}

ct_status ct_pass_fold_constants(ct_graph *g)
{
    ct_status st = CT_OK;
    bool *keep = malloc(sizeof(bool) * ((size_t)g->n_nodes + 1));
    if (!keep) abort();
    bool any = false;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        keep[i] = true;
        /* Only nodes reading constants: never PARAM or STATE (they change in training). */
        bool all_const = true;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] && n->in[j]->kind != CT_VALUE_CONST) all_const = false;
        if (!all_const && n->op != CT_OP_SHAPE && n->op != CT_OP_SIZE) continue;
        bool folded = false;
        st = ct_fold_node(g, n, CT_FOLD_MAX_BYTES, &folded);
        if (st) goto fail;
        if (folded) {
            keep[i] = false;
            any = true;
        }
    }
    if (any) ct_graph_compact(g, keep);
fail:
    free(keep);
    return st;
}

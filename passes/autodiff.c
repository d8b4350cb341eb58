/* autodiff.c — reverse-mode differentiation appended to the same graph
 * (seed, reverse walk, fan-out accumulation, "grad/<param>" naming), the
 * helpers gradient rules build nodes with, and the pass that switches
 * BatchNormalization to its training form. The rules are in grad_rules.c. */
#include "autodiff.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

typedef ct_status (*grad_fn)(ct_grad_ctx *c, const ct_node *n, ct_value *const *dout, const bool *need,
                             ct_value **din);

static const grad_fn grad_table[CT_OP_COUNT] = {
#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    [CT_OP_##id] = grad,
#include "ops.def"
#undef CT_OP
};

struct ct_grad_ctx {
    ct_graph *g;
    ct_status err;     /* first error recorded by a helper */
    const ct_node *cur;/* the forward node being differentiated (for names) */
    int counter;
};

/* ---------------------------------------------------------------- helpers for rules */

ct_graph *ct_grad_graph(ct_grad_ctx *c) { return c->g; }

ct_status ct_grad_fail(ct_grad_ctx *c, const ct_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ct_status st = ct_verrorf(fmt, ap);
    va_end(ap);
    if (n) st = ct_status_wrap(st, "node '%s' (%s)", n->name, ct_op_table[n->op].name);
    if (!c->err) c->err = st;
    else ct_status_free(st);
    return ct_errorf("gradient rule failed");
}

ct_status ct_grad_take_error(ct_grad_ctx *c)
{
    ct_status st = c->err;
    c->err = CT_OK;
    return st ? st : ct_errorf("gradient rule failed without a message");
}

static const char *name_prefix(ct_grad_ctx *c)
{
    return c->cur && c->cur->name && c->cur->name[0] ? c->cur->name : "autodiff";
}

static const char *fresh_name(ct_grad_ctx *c, const char *what)
{
    char *s = ct_arena_printf(&c->g->arena, "%s/%s%d", name_prefix(c), what, c->counter++);
    return ct_graph_unique_name(c->g, s);
}

ct_node *ct_grad_emit(ct_grad_ctx *c, ct_op op, int n_in, ct_value *const *in, int n_out)
{
    if (c->err) return NULL;
    for (int i = 0; i < n_in; i++)
        if (!in[i] && i < ct_op_table[op].min_in) return NULL; /* an earlier helper failed */
    ct_value *outs[8];
    CT_ASSERT(n_out <= 8);
    for (int i = 0; i < n_out; i++) outs[i] = ct_graph_add_value(c->g, fresh_name(c, "d"), CT_VALUE_TEMP,
                                                                 CT_DTYPE_UNDEFINED, NULL);
    ct_node *n = ct_graph_add_node(c->g, op, fresh_name(c, "bw"), n_in, in, n_out, outs);
    return n;
}

ct_value *ct_grad_finish(ct_grad_ctx *c, ct_node *n)
{
    if (!n || c->err) return NULL;
    ct_status st = ct_infer_node(c->g, n);
    if (st) {
        ct_grad_fail(c, c->cur, "building its gradient: %s", ct_status_msg(st));
        ct_status_free(st);
        return NULL;
    }
    return n->out[0];
}

ct_value *ct_grad_op1(ct_grad_ctx *c, ct_op op, ct_value *a)
{
    if (!a) return NULL;
    return ct_grad_finish(c, ct_grad_emit(c, op, 1, &a, 1));
}

ct_value *ct_grad_op2(ct_grad_ctx *c, ct_op op, ct_value *a, ct_value *b)
{
    if (!a || !b) return NULL;
    ct_value *in[2] = {a, b};
    return ct_grad_finish(c, ct_grad_emit(c, op, 2, in, 1));
}

ct_value *ct_grad_scalar(ct_grad_ctx *c, ct_dtype t, double v)
{
    ct_shape s = {.rank = 0};
    ct_value *k = ct_graph_add_tensor(c->g, fresh_name(c, "k"), CT_VALUE_CONST, t, &s, NULL);
    if (t == CT_F64) *(double *)k->data = v;
    else if (t == CT_F32) *(float *)k->data = (float)v;
    else if (t == CT_I64) *(int64_t *)k->data = (int64_t)v;
    else ct_grad_fail(c, c->cur, "gradients in dtype %s are not supported (float or double only)", ct_dtype_name(t));
    return k;
}

ct_value *ct_grad_ints(ct_grad_ctx *c, const int64_t *v, int n)
{
    ct_shape s = {.rank = 1, .dims = {n}};
    return ct_graph_add_tensor(c->g, fresh_name(c, "k"), CT_VALUE_CONST, CT_I64, &s, v);
}

ct_value *ct_grad_reshape_to(ct_grad_ctx *c, ct_value *x, const ct_shape *shape)
{
    if (!x) return NULL;
    if (ct_shape_equal(&x->shape, shape)) return x;
    return ct_grad_op2(c, CT_OP_RESHAPE, x, ct_grad_ints(c, shape->dims, shape->rank));
}

ct_value *ct_grad_expand_to(ct_grad_ctx *c, ct_value *x, const ct_shape *shape)
{
    if (!x) return NULL;
    if (ct_shape_equal(&x->shape, shape)) return x;
    return ct_grad_op2(c, CT_OP_EXPAND, x, ct_grad_ints(c, shape->dims, shape->rank));
}

ct_value *ct_grad_reduce_to(ct_grad_ctx *c, ct_value *dy, const ct_shape *shape)
{
    if (!dy) return NULL;
    if (ct_shape_equal(&dy->shape, shape)) return dy;
    const ct_shape *r = &dy->shape;
    int off = r->rank - shape->rank;
    if (off < 0) {
        ct_grad_fail(c, c->cur, "cannot reduce a gradient of rank %d to rank %d", r->rank, shape->rank);
        return NULL;
    }
    int64_t axes[CT_MAX_RANK];
    int na = 0;
    for (int i = 0; i < r->rank; i++) {
        int j = i - off;
        if (j < 0 || (shape->dims[j] == 1 && r->dims[i] != 1)) axes[na++] = i;
        else if (shape->dims[j] != r->dims[i]) {
            ct_grad_fail(c, c->cur, "gradient dimension %d is %lld, cannot reduce it to %lld", i,
                         (long long)r->dims[i], (long long)shape->dims[j]);
            return NULL;
        }
    }
    ct_value *s = dy;
    if (na) {
        ct_value *in[2] = {dy, ct_grad_ints(c, axes, na)};
        ct_node *n = ct_grad_emit(c, CT_OP_REDUCE_SUM, 2, in, 1);
        if (!n) return NULL;
        ct_node_set_int(c->g, n, "keepdims", 1);
        s = ct_grad_finish(c, n);
    }
    return ct_grad_reshape_to(c, s, shape);
}

/* ---------------------------------------------------------------- the reverse walk */

typedef struct {
    ct_value **v;
    int n, cap;
} parts_list;

static void parts_push(parts_list *p, ct_value *v)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 2;
        p->v = realloc(p->v, sizeof(ct_value *) * (size_t)p->cap);
        if (!p->v) abort();
    }
    p->v[p->n++] = v;
}

/* The total gradient of a value: its single partial, or their Sum. */
static ct_value *parts_total(ct_grad_ctx *c, parts_list *p)
{
    if (p->n == 0) return NULL;
    if (p->n == 1) return p->v[0];
    ct_value *s = ct_grad_finish(c, ct_grad_emit(c, p->n == 2 ? CT_OP_ADD : CT_OP_SUM, p->n, p->v, 1));
    if (!s) return NULL;
    p->n = 1;
    p->v[0] = s;
    return s;
}

static bool is_trainable(const ct_value *v)
{
    return v->kind == CT_VALUE_PARAM && !v->frozen && ct_dtype_is_float(v->dtype);
}

ct_value *ct_autodiff_grad_of(const ct_graph *g, const ct_value *v)
{
    char buf[512];
    snprintf(buf, sizeof buf, "grad/%s", v->name);
    return ct_graph_find_value(g, buf);
}

ct_status ct_autodiff(ct_graph *g, ct_value *loss, const ct_autodiff_options *opt)
{
    ct_autodiff_options dflt = {0};
    if (!opt) opt = &dflt;
    if (!loss) return ct_errorf("autodiff: no loss value");
    if (!loss->shape_known || ct_shape_numel(&loss->shape) != 1)
        return ct_errorf("autodiff: the loss '%s' must be a scalar or have one element (shape %s)", loss->name,
                         ct_shape_str(&loss->shape, (char[128]){0}, 128));
    if (loss->dtype != CT_F32 && loss->dtype != CT_F64)
        return ct_errorf("autodiff: the loss '%s' must be float or double, not %s", loss->name,
                         ct_dtype_name(loss->dtype));
    CT_TRY(ct_graph_toposort(g));

    ct_status st = CT_OK;
    int nv = g->n_values, nn = g->n_nodes;
    bool *fwd = calloc((size_t)nv + 1, 1), *bwd = calloc((size_t)nv + 1, 1), *renamed = NULL;
    parts_list *parts = calloc((size_t)nv + 1, sizeof *parts);
    ct_grad_ctx ctx = {.g = g};
    ct_grad_ctx *c = &ctx;
    if (!fwd || !bwd || !parts) abort();

    /* Values reachable from what we differentiate (through float values)... */
    for (int i = 0; i < nv; i++)
        if (is_trainable(g->values[i])) fwd[i] = true;
    for (int i = 0; i < opt->n_wrt; i++) {
        ct_value *w = opt->wrt[i];
        if (!w || w->id >= nv || g->values[w->id] != w || !ct_dtype_is_float(w->dtype)) {
            st = ct_errorf("autodiff: wrt value %d ('%s') is not a float value of this graph", i,
                           w ? w->name : "(null)");
            goto fail;
        }
        fwd[w->id] = true;
    }
    for (int i = 0; i < nn; i++) {
        const ct_node *n = g->nodes[i];
        bool any = false;
        if (n->op == CT_OP_STOP_GRADIENT) continue; /* a cut: nothing flows back through it */
        for (int j = 0; j < n->n_in; j++) any |= n->in[j] && fwd[n->in[j]->id];
        if (!any) continue;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j] && ct_dtype_is_float(n->out[j]->dtype)) fwd[n->out[j]->id] = true;
    }
    /* ...and values the loss depends on. */
    bwd[loss->id] = true;
    for (int i = nn - 1; i >= 0; i--) {
        const ct_node *n = g->nodes[i];
        bool any = false;
        for (int j = 0; j < n->n_out; j++) any |= n->out[j] && bwd[n->out[j]->id];
        if (!any) continue;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) bwd[n->in[j]->id] = true;
    }
    if (!fwd[loss->id]) {
        st = ct_errorf("autodiff: the loss '%s' does not depend on any trainable parameter%s", loss->name,
                       opt->n_wrt ? " or wrt value" : " (all frozen, or none in the graph)");
        goto fail;
    }
    for (int i = 0; i < nv; i++) {
        const ct_value *v = g->values[i];
        if (fwd[i] && bwd[i] && (!v->shape_known || !ct_shape_is_static(&v->shape))) {
            st = ct_errorf("autodiff: value '%s' has no static shape; run infer_shapes with a fixed batch first",
                           v->name);
            goto fail;
        }
    }

    /* Seed d(loss) = 1. */
    {
        ct_value *seed = ct_graph_add_tensor(g, ct_graph_unique_name(g, "grad/seed"), CT_VALUE_CONST, loss->dtype,
                                             &loss->shape, NULL);
        if (loss->dtype == CT_F64) *(double *)seed->data = 1.0;
        else *(float *)seed->data = 1.0f;
        parts_push(&parts[loss->id], seed);
    }

    for (int i = nn - 1; i >= 0; i--) {
        const ct_node *n = g->nodes[i];
        bool need[64] = {false}, any_need = false;
        ct_value *dout[64] = {NULL}, *din[64] = {NULL};
        if (n->n_in > 64 || n->n_out > 64) {
            st = ct_errorf("node '%s' (%s): too many inputs or outputs to differentiate", n->name,
                           ct_op_table[n->op].name);
            goto fail;
        }
        for (int j = 0; j < n->n_in; j++) {
            need[j] = n->in[j] && fwd[n->in[j]->id] && bwd[n->in[j]->id];
            any_need |= need[j];
        }
        if (!any_need) continue;
        c->cur = n;
        bool any_out = false;
        for (int j = 0; j < n->n_out; j++) {
            if (!n->out[j]) continue;
            dout[j] = parts_total(c, &parts[n->out[j]->id]);
            any_out |= dout[j] != NULL;
        }
        if (c->err) goto rule_fail;
        if (!any_out) continue;
        grad_fn fn = grad_table[n->op];
        if (!fn || fn == ct_grad_none) {
            int j = 0;
            while (!need[j]) j++;
            st = ct_errorf("node '%s' (%s): the op has no gradient rule, but the loss '%s' depends on its input "
                           "'%s'",
                           n->name, ct_op_table[n->op].name, loss->name, n->in[j]->name);
            goto fail;
        }
        st = fn(c, n, dout, need, din);
        if (st || c->err) {
            ct_status_free(st);
            st = CT_OK;
            goto rule_fail;
        }
        for (int j = 0; j < n->n_in; j++) {
            if (!need[j]) continue;
            ct_value *x = n->in[j], *d = din[j];
            if (!d || d->dtype != x->dtype || !ct_shape_equal(&d->shape, &x->shape)) {
                char b1[128], b2[128];
                st = ct_errorf("node '%s' (%s): internal error: the gradient rule gave input %d ('%s', %s %s) "
                               "a gradient of %s %s",
                               n->name, ct_op_table[n->op].name, j, x->name, ct_dtype_name(x->dtype),
                               ct_shape_str(&x->shape, b1, sizeof b1), d ? ct_dtype_name(d->dtype) : "(none)",
                               d ? ct_shape_str(&d->shape, b2, sizeof b2) : "");
                goto fail;
            }
            parts_push(&parts[x->id], d);
        }
    }
    c->cur = NULL;

    /* Name and list the gradients of parameters and wrt values. */
    {
        int cap = 0;
        for (int i = 0; i < nv; i++) cap += is_trainable(g->values[i]) && parts[i].n > 0;
        cap += opt->n_wrt;
        ct_grad_pair *pairs = ct_arena_alloc(&g->arena, sizeof(ct_grad_pair) * (size_t)(cap ? cap : 1));
        int np = 0;
        int n_renamed = g->n_values + 1; /* parts_total below may add values: bound-check against this */
        renamed = calloc((size_t)n_renamed, 1);
        if (!renamed) abort();
        for (int pass = 0; pass < 2; pass++) {
            int count = pass == 0 ? nv : opt->n_wrt;
            for (int k = 0; k < count; k++) {
                ct_value *v = pass == 0 ? g->values[k] : opt->wrt[k];
                if (pass == 0 && !is_trainable(v)) continue;
                if (pass == 1 && is_trainable(v)) continue; /* listed already */
                ct_value *d = parts_total(c, &parts[v->id]);
                if (c->err) goto rule_fail;
                if (!d) continue;
                char *gname = ct_arena_printf(&g->arena, "grad/%s", v->name);
                if (ct_graph_find_value(g, gname)) {
                    st = ct_errorf("autodiff: a value named '%s' exists already (was autodiff run twice?)", gname);
                    goto fail;
                }
                if (d->kind == CT_VALUE_TEMP && d->producer && d->producer->id >= nn && d->id < n_renamed &&
                    !renamed[d->id]) {
                    d->name = gname;
                    renamed[d->id] = true;
                } else {
                    ct_value *o = ct_graph_add_value(g, gname, CT_VALUE_TEMP, d->dtype, &d->shape);
                    ct_graph_add_node(g, CT_OP_IDENTITY, gname, 1, &d, 1, &o);
                    d = o;
                }
                pairs[np++] = (ct_grad_pair){v, d};
                if (opt->grads_as_outputs) ct_graph_add_output(g, d);
            }
        }
        if (opt->result) {
            opt->result->grads = pairs;
            opt->result->n_grads = np;
            opt->result->first_backward_node = nn;
        }
    }
    goto done;

rule_fail:
    st = ct_grad_take_error(c);
    if (c->cur) st = ct_status_wrap(st, "autodiff");
fail:
done:
    if (c->err) ct_status_free(c->err);
    for (int i = 0; i < nv; i++) free(parts[i].v);
    free(parts);
    free(fwd);
    free(bwd);
    free(renamed);
    return st;
}

/* ---------------------------------------------------------------- training-mode BatchNorm */

ct_status ct_bn_train(ct_graph *g, const ct_bn_train_options *opt)
{
    ct_bn_train_options dflt = {.splits = 1};
    if (!opt) opt = &dflt;
    int S = opt->splits ? opt->splits : 1;
    if (S < 1) return ct_errorf("bn_train: splits must be >= 1 (got %d)", S);
    if (opt->sync_world > 1 && S != 1) return ct_errorf("bn_train: SyncBatchNorm and BatchNorm splits do not combine");
    int count = 0, trained = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        count += g->nodes[i]->op == CT_OP_BATCH_NORM;
        trained += g->nodes[i]->op == CT_OP_BATCH_NORM_TRAIN;
    }
    if (count == 0 && trained == 0) {
        if (!opt->quiet)
            fprintf(stderr,
                    "contra: warning: %s has no BatchNormalization nodes (an eval-mode export folds them into the "
                    "convolutions); it trains anyway, but without batch statistics. To train as PyTorch does, "
                    "re-export with torch.onnx.export(model, ..., training=torch.onnx.TrainingMode.PRESERVE (model "
                    "in train mode) or TrainingMode.TRAINING, do_constant_folding=False)\n",
                    g->source_path ? g->source_path : "the model");
        return CT_OK;
    }
    if (opt->keep_eval) return CT_OK;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (n->op != CT_OP_BATCH_NORM) continue;
        ct_value *x = n->in[0], *mean = n->in[3], *var = n->in[4];
        if (!x->shape_known || x->shape.rank < 2 || !ct_shape_is_static(&x->shape))
            return ct_errorf("node '%s' (BatchNormalization): input '%s' needs a static shape of rank >= 2 for "
                             "training (run infer_shapes with a fixed batch)",
                             n->name, x->name);
        if (x->shape.dims[0] % S)
            return ct_errorf("node '%s' (BatchNormalization): batch %lld is not divisible by %d BatchNorm splits",
                             n->name, (long long)x->shape.dims[0], S);
        float onnx_m = ct_node_attr_float(n, "momentum", 0.9f);
        float eps = ct_node_attr_float(n, "epsilon", 1e-5f);
        const char *base = n->name && n->name[0] ? n->name : x->name;
        ct_value *outs[5] = {n->out[0]};
        static const char *const what[4] = {"saved_mean", "saved_invstd", "new_running_mean", "new_running_var"};
        for (int k = 0; k < 4; k++)
            outs[k + 1] = ct_graph_add_value(g, ct_graph_unique_name(g, ct_arena_printf(&g->arena, "%s/%s", base,
                                                                                         what[k])),
                                             CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
        ct_value *old_rm = n->n_out > 1 ? n->out[1] : NULL, *old_rv = n->n_out > 2 ? n->out[2] : NULL;
        n->out = ct_arena_alloc(&g->arena, sizeof(ct_value *) * 5);
        memcpy(n->out, outs, sizeof outs);
        n->n_out = 5;
        for (int k = 1; k < 5; k++) outs[k]->producer = n;
        if (old_rm) {
            old_rm->producer = NULL;
            ct_graph_replace_uses(g, old_rm, outs[3]);
        }
        if (old_rv) {
            old_rv->producer = NULL;
            ct_graph_replace_uses(g, old_rv, outs[4]);
        }
        n->op = CT_OP_BATCH_NORM_TRAIN;
        n->n_attr = 0;
        ct_node_set_float(g, n, "epsilon", eps);
        /* PyTorch's momentum m is exported as 1 - m in float; undo the rounding
         * (0.9f gives 0.10000002, not 0.1) to six decimals. */
        ct_node_set_float(g, n, "momentum", (float)(round((1.0 - (double)onnx_m) * 1e6) / 1e6));
        ct_node_set_int(g, n, "splits", S);
        if (opt->sync_world > 1) ct_node_set_int(g, n, "world", opt->sync_world);
        CT_TRY(ct_infer_node(g, n));
        for (int k = 0; k < 2; k++) {
            ct_value *s = k ? var : mean;
            if (s->kind == CT_VALUE_PARAM || (s->kind == CT_VALUE_CONST && s->data)) s->kind = CT_VALUE_STATE;
            if (s->kind == CT_VALUE_STATE) ct_graph_add_assign(g, s, outs[3 + k]);
        }
    }
    return CT_OK;
}

ct_status ct_pass_bn_train(ct_graph *g) { return ct_bn_train(g, NULL); }

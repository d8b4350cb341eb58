/* fuse.c — the fusion pass of training graphs (after autodiff and the
 * optimizer): the momentum (EMA) update of a key/target encoder, a Mul, Mul,
 * Add per parameter, becomes one FusedEMA node, and the per-parameter
 * SGDStep/AdamStep nodes of one set of hyper-parameters one FusedSGDStep/
 * FusedAdamStep; BatchNorm [+ Add] + Relu one FusedBatchNorm[Train]Relu, and
 * Conv [+ Add] + Relu one FusedConv. Each fused node keeps the replaced nodes'
 * names in its "replaced" attribute. Also the shape inference of the fused ops. */
#include "fuse.h"

#include <stdlib.h>
#include <string.h>

#include "passes.h"

/* ---------------------------------------------------------------- layout and shapes */

static ct_status layout_check(const ct_node *n, ct_fused_layout *l)
{
    if (!ct_fused_layout_get(n, l))
        return ct_node_errorf(n, "%d inputs and %d outputs do not form whole segments", n->n_in, n->n_out);
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i]) return ct_node_errorf(n, "input %d is missing", i);
    for (int i = 0; i < n->n_out; i++)
        if (!n->out[i]) return ct_node_errorf(n, "output %d is missing", i);
    return CT_OK;
}

static bool float_scalar(const ct_value *v)
{
    return v && ct_dtype_is_float(v->dtype) && v->shape_known && ct_shape_numel(&v->shape) == 1;
}

/* Every tensor of segment i has the shape and dtype of the first role's; outputs get them. */
static ct_status segments_infer(ct_node *n, const ct_fused_layout *l)
{
    for (int i = 0; i < l->n; i++) {
        const ct_value *p = n->in[l->lead + i];
        if (!ct_dtype_is_float(p->dtype)) return ct_node_errorf(n, "'%s' must be floating point", p->name);
        for (int r = 1; r < l->in_roles; r++) {
            const ct_value *v = n->in[l->lead + r * l->n + i];
            if (v->dtype != p->dtype || !ct_shape_equal(&v->shape, &p->shape))
                return ct_node_errorf(n, "segment %d: '%s' and '%s' differ in type or shape", i, v->name, p->name);
        }
        for (int r = 0; r < l->out_roles; r++) {
            ct_value *o = n->out[r * l->n + i];
            o->dtype = p->dtype;
            o->shape = p->shape;
            o->shape_known = true;
        }
    }
    return CT_OK;
}

ct_status ct_infer_fused_ema(ct_graph *g, ct_node *n)
{
    (void)g;
    ct_fused_layout l;
    CT_TRY(layout_check(n, &l));
    for (int j = 0; j < 2; j++)
        if (!float_scalar(n->in[j])) return ct_node_errorf(n, "input %d '%s' must be a float scalar", j, n->in[j]->name);
    return segments_infer(n, &l);
}

ct_status ct_infer_fused_optim(ct_graph *g, ct_node *n)
{
    (void)g;
    ct_fused_layout l;
    CT_TRY(layout_check(n, &l));
    if (!float_scalar(n->in[0])) return ct_node_errorf(n, "lr '%s' must be a float scalar", n->in[0]->name);
    if (n->op == CT_OP_FUSED_ADAM_STEP && (n->in[1]->dtype != CT_I64 || ct_shape_numel(&n->in[1]->shape) != 1))
        return ct_node_errorf(n, "step '%s' must be an int64 scalar", n->in[1]->name);
    return segments_infer(n, &l);
}

/* The BatchNorm forms' own inference (ops.def's infer column). */
ct_status ct_infer_batch_norm(ct_graph *g, ct_node *n);
ct_status ct_infer_batch_norm_train(ct_graph *g, ct_node *n);

/* As the BatchNorm it replaced, then the residual must have Y's shape and type. */
ct_status ct_infer_fused_bn_relu(ct_graph *g, ct_node *n)
{
    bool tr = n->op == CT_OP_FUSED_BN_TRAIN_RELU;
    for (int i = 0; i < 5; i++)
        if (!n->in[i]) return ct_node_errorf(n, "input %d is missing", i);
    ct_node bn = *n;
    bn.op = tr ? CT_OP_BATCH_NORM_TRAIN : CT_OP_BATCH_NORM;
    bn.n_in = 5;
    CT_TRY(tr ? ct_infer_batch_norm_train(g, &bn) : ct_infer_batch_norm(g, &bn));
    const ct_value *r = n->n_in > 5 ? n->in[5] : NULL, *y = n->out[0];
    if (r && (r->dtype != y->dtype || !ct_shape_equal(&r->shape, &y->shape)))
        return ct_node_errorf(n, "residual '%s' must have the type and shape of the output '%s'", r->name, y->name);
    return CT_OK;
}

ct_status ct_infer_conv(ct_graph *g, ct_node *n);

/* As the Conv it replaced, then the residual must have Y's shape and type. */
ct_status ct_infer_fused_conv(ct_graph *g, ct_node *n)
{
    for (int i = 0; i < 2; i++)
        if (!n->in[i]) return ct_node_errorf(n, "input %d is missing", i);
    ct_node conv = *n;
    conv.op = CT_OP_CONV;
    conv.n_in = n->n_in < 3 ? n->n_in : 3;
    CT_TRY(ct_infer_conv(g, &conv));
    const ct_value *r = n->n_in > 3 ? n->in[3] : NULL, *y = n->out[0];
    if (r && (r->dtype != y->dtype || !ct_shape_equal(&r->shape, &y->shape)))
        return ct_node_errorf(n, "residual '%s' must have the type and shape of the output '%s'", r->name, y->name);
    return CT_OK;
}

/* ---------------------------------------------------------------- helpers */

/* Two scalars that hold the same number: one value, or equal constants. */
static bool same_scalar(const ct_value *a, const ct_value *b)
{
    if (a == b) return true;
    return a && b && a->kind == CT_VALUE_CONST && b->kind == CT_VALUE_CONST && a->data && b->data &&
           a->dtype == b->dtype && ct_shape_numel(&a->shape) == 1 && ct_shape_numel(&b->shape) == 1 &&
           !memcmp(a->data, b->data, ct_dtype_size(a->dtype));
}

static const ct_value *assign_dst(const ct_graph *g, const ct_value *src)
{
    for (int i = 0; i < g->n_assigns; i++)
        if (g->assigns[i].src == src) return g->assigns[i].dst;
    return NULL;
}

/* Position of the first node reading v (g->n_nodes if none). */
static int first_reader(const ct_graph *g, const ct_value *v)
{
    for (int k = 0; k < g->n_nodes; k++)
        for (int j = 0; j < g->nodes[k]->n_in; j++)
            if (g->nodes[k]->in[j] == v) return k;
    return g->n_nodes;
}

static void set_replaced(ct_graph *g, ct_node *f, const ct_node *const *nodes, int count, const char *summary)
{
    ct_attr a = {.name = "replaced", .type = CT_ATTR_STRINGS, .n = count};
    const char **s = ct_arena_alloc(&g->arena, sizeof(char *) * (size_t)(count ? count : 1));
    for (int i = 0; i < count; i++) s[i] = nodes[i]->name;
    a.strings = s;
    ct_node_add_attr(g, f, &a);
    f->fused_from = ct_arena_strdup(&g->arena, summary);
}

static const char *node_name(ct_graph *g, const char *base)
{
    const char *nm = base;
    for (int k = 1;; k++) {
        bool taken = false;
        for (int i = 0; i < g->n_nodes && !taken; i++) taken = g->nodes[i]->name && !strcmp(g->nodes[i]->name, nm);
        if (!taken) return nm;
        nm = ct_arena_printf(&g->arena, "%s_%d", base, k);
    }
}

/* Drop the nodes marked in drop[] (sized to the node count before the fused
 * nodes were appended) and restore a topological order. */
static ct_status drop_and_sort(ct_graph *g, const bool *drop, int n_before)
{
    bool *keep = malloc(sizeof(bool) * ((size_t)g->n_nodes + 1));
    if (!keep) abort();
    for (int i = 0; i < g->n_nodes; i++) keep[i] = i >= n_before || !drop[i];
    ct_graph_compact(g, keep);
    free(keep);
    return ct_graph_toposort(g);
}

/* ---------------------------------------------------------------- EMA */

typedef struct {
    ct_node *mul_k, *mul_s, *add;
    ct_value *k, *s, *m, *om;
    const ct_value *param; /* the parameter s is (or is the update of): the segment order */
} ema_seg;

static int ema_seg_cmp(const void *a, const void *b)
{
    const ema_seg *x = a, *y = b;
    return (x->param->id > y->param->id) - (x->param->id < y->param->id);
}

/* Is `add` an EMA θ' = θ*m + src*(1-m) whose result is assigned to θ? */
static bool ema_match(const ct_graph *g, ct_node *add, ema_seg *s)
{
    if (add->op != CT_OP_ADD || add->n_in != 2 || !add->in[0] || !add->in[1] || add->out[0]->dtype != CT_F32)
        return false;
    const ct_value *dst = assign_dst(g, add->out[0]);
    if (!dst || (dst->kind != CT_VALUE_PARAM && dst->kind != CT_VALUE_STATE) || dst->dtype != CT_F32) return false;
    ct_node *a = add->in[0]->producer, *b = add->in[1]->producer;
    if (!a || !b || a == b || a->op != CT_OP_MUL || b->op != CT_OP_MUL) return false;
    if (b->in[0] == dst || b->in[1] == dst) {
        ct_node *t = a;
        a = b, b = t;
    }
    if (a->in[0] != dst && a->in[1] != dst) return false;
    ct_value *m = a->in[0] == dst ? a->in[1] : a->in[0];
    ct_value *src = float_scalar(b->in[1]) ? b->in[0] : b->in[1];
    ct_value *om = src == b->in[0] ? b->in[1] : b->in[0];
    if (!float_scalar(m) || !float_scalar(om) || !src || src->dtype != CT_F32) return false;
    const ct_shape *ks = &dst->shape;
    if (!ct_shape_equal(&src->shape, ks) || !ct_shape_equal(&add->out[0]->shape, ks) ||
        !ct_shape_equal(&a->out[0]->shape, ks) || !ct_shape_equal(&b->out[0]->shape, ks))
        return false;
    if (ct_graph_use_count(g, a->out[0]) != 1 || ct_graph_use_count(g, b->out[0]) != 1) return false;
    s->mul_k = a, s->mul_s = b, s->add = add;
    s->k = (ct_value *)dst, s->s = src, s->m = m, s->om = om;
    s->param = src;
    if (src->kind == CT_VALUE_TEMP) {
        const ct_value *p = assign_dst(g, src);
        if (p && p->kind == CT_VALUE_PARAM) s->param = p;
    }
    return true;
}

/* Fuse the EMA segments sharing (m, 1-m); *order gets the parameters in
 * segment order (the prefix of the optimizer's order). */
static ct_status fuse_ema(ct_graph *g, const ct_value ***order, int *n_order)
{
    ct_status st = CT_OK;
    int nn = g->n_nodes;
    ema_seg *seg = calloc((size_t)nn + 1, sizeof *seg), *grp = calloc((size_t)nn + 1, sizeof *grp);
    bool *drop = calloc((size_t)nn + 1, sizeof *drop), *used = calloc((size_t)nn + 1, sizeof *used);
    const ct_value **ord = calloc((size_t)nn + 1, sizeof *ord);
    if (!seg || !grp || !drop || !used || !ord) abort();
    int ns = 0, n_ord = 0, fused = 0;
    for (int i = 0; i < nn; i++)
        if (ema_match(g, g->nodes[i], &seg[ns])) ns++;
    for (int i = 0; i < ns; i++) {
        if (used[i]) continue;
        int cnt = 0;
        for (int j = i; j < ns; j++) {
            if (used[j] || !same_scalar(seg[j].m, seg[i].m) || !same_scalar(seg[j].om, seg[i].om)) continue;
            bool dup = false; /* one destination (or one source parameter) at most once */
            for (int k = 0; k < cnt && !dup; k++) dup = grp[k].k == seg[j].k || grp[k].param == seg[j].param;
            if (dup) continue;
            grp[cnt++] = seg[j];
            used[j] = true;
        }
        if (cnt < 2) continue;
        qsort(grp, (size_t)cnt, sizeof *grp, ema_seg_cmp);
        /* one node must be able to stand where they all were: every input
         * ready before the first read of any result, none made by the group */
        int last_in = -1, first_out = g->n_nodes;
        bool self = false;
        for (int k = 0; k < cnt; k++) {
            const ct_value *ins[4] = {grp[k].k, grp[k].s, grp[k].m, grp[k].om};
            for (int j = 0; j < 4; j++) {
                const ct_node *p = ins[j]->producer;
                if (!p) continue;
                if (p->id > last_in) last_in = p->id;
                for (int q = 0; q < cnt; q++)
                    if (p == grp[q].add || p == grp[q].mul_k || p == grp[q].mul_s) self = true;
            }
            int fr = first_reader(g, grp[k].add->out[0]);
            if (fr < first_out) first_out = fr;
        }
        if (self || last_in >= first_out) continue;
        ct_value **in = malloc(sizeof(ct_value *) * (size_t)(2 + 2 * cnt));
        ct_value **out = malloc(sizeof(ct_value *) * (size_t)cnt);
        const ct_node **rep = malloc(sizeof(ct_node *) * (size_t)(3 * cnt));
        if (!in || !out || !rep) abort();
        in[0] = grp[0].m, in[1] = grp[0].om;
        for (int k = 0; k < cnt; k++) {
            in[2 + k] = grp[k].k;
            in[2 + cnt + k] = grp[k].s;
            out[k] = grp[k].add->out[0];
            rep[3 * k] = grp[k].mul_k, rep[3 * k + 1] = grp[k].mul_s, rep[3 * k + 2] = grp[k].add;
            drop[grp[k].mul_k->id] = drop[grp[k].mul_s->id] = drop[grp[k].add->id] = true;
            ord[n_ord++] = grp[k].param;
        }
        ct_node *f = ct_graph_add_node(g, CT_OP_FUSED_EMA, node_name(g, "fused/ema"), 2 + 2 * cnt, in, cnt, out);
        char sum[96];
        snprintf(sum, sizeof sum, "%d Mul + %d Add over %d tensors", 2 * cnt, cnt, cnt);
        set_replaced(g, f, rep, 3 * cnt, sum);
        free(in);
        free(out);
        free(rep);
        st = ct_infer_node(g, f);
        if (st) goto fail;
        fused++;
    }
    if (fused) st = drop_and_sort(g, drop, nn);
fail:
    free(seg);
    free(grp);
    free(drop);
    free(used);
    if (st) {
        free(ord);
        return st;
    }
    *order = ord;
    *n_order = n_ord;
    return CT_OK;
}

/* ---------------------------------------------------------------- optimizer */

typedef struct {
    ct_node *n;
    int rank; /* position in the flat order */
} opt_seg;

static int opt_seg_cmp(const void *a, const void *b)
{
    const opt_seg *x = a, *y = b;
    return (x->rank > y->rank) - (x->rank < y->rank);
}

static bool attrs_equal(const ct_node *a, const ct_node *b)
{
    if (a->n_attr != b->n_attr) return false;
    for (int i = 0; i < a->n_attr; i++) {
        const ct_attr *x = &a->attrs[i], *y = ct_node_attr(b, x->name);
        if (!y || y->type != x->type) return false;
        if (x->type == CT_ATTR_INT && x->i != y->i) return false;
        if (x->type == CT_ATTR_FLOAT && memcmp(&x->f, &y->f, sizeof x->f)) return false;
        if (x->type != CT_ATTR_INT && x->type != CT_ATTR_FLOAT) return false;
    }
    return true;
}

/* A per-parameter step whose outputs go back to its parameter and slots. */
static bool optim_match(const ct_graph *g, const ct_node *n)
{
    if (n->op != CT_OP_SGD_STEP && n->op != CT_OP_ADAM_STEP) return false;
    const ct_value *p = n->in[0];
    if (p->kind != CT_VALUE_PARAM || p->dtype != CT_F32) return false;
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i] || (i != 5 && n->in[i]->dtype != CT_F32)) return false;
    /* slots: in[3] (SGD buffer, Adam m), in[4] (Adam v) */
    static const int slot_in[3] = {0, 3, 4};
    if (n->op == CT_OP_SGD_STEP && n->n_out != (n->n_in > 3 ? 2 : 1)) return false;
    for (int o = 0; o < n->n_out; o++) {
        if (!n->out[o] || assign_dst(g, n->out[o]) != n->in[slot_in[o]]) return false;
        int uses = 0; /* exactly one assignment from it */
        for (int a = 0; a < g->n_assigns; a++) uses += g->assigns[a].src == n->out[o];
        if (uses != 1) return false;
    }
    return true;
}

static bool optim_compatible(const ct_node *a, const ct_node *b)
{
    if (a->op != b->op || a->n_in != b->n_in || a->n_out != b->n_out || !attrs_equal(a, b)) return false;
    if (!same_scalar(a->in[2], b->in[2])) return false;                              /* lr */
    if (a->op == CT_OP_ADAM_STEP && !same_scalar(a->in[5], b->in[5])) return false; /* step */
    return true;
}

static ct_status fuse_optim(ct_graph *g, const ct_value *const *order, int n_order)
{
    ct_status st = CT_OK;
    int nn = g->n_nodes;
    opt_seg *grp = calloc((size_t)nn + 1, sizeof *grp);
    bool *drop = calloc((size_t)nn + 1, sizeof *drop), *used = calloc((size_t)nn + 1, sizeof *used);
    if (!grp || !drop || !used) abort();
    int fused = 0;
    for (int i = 0; i < nn; i++) {
        ct_node *lead = g->nodes[i];
        if (used[i] || !optim_match(g, lead)) continue;
        int cnt = 0;
        for (int j = i; j < nn; j++) {
            ct_node *n = g->nodes[j];
            if (used[j] || !optim_match(g, n) || !optim_compatible(lead, n)) continue;
            int rank = n_order + n->in[0]->id;
            for (int k = 0; k < n_order; k++)
                if (order[k] == n->in[0]) rank = k;
            grp[cnt++] = (opt_seg){n, rank};
            used[j] = true;
        }
        if (cnt < 2) continue;
        qsort(grp, (size_t)cnt, sizeof *grp, opt_seg_cmp);
        int last_in = -1, first_out = g->n_nodes;
        for (int k = 0; k < cnt; k++) {
            const ct_node *n = grp[k].n;
            for (int j = 0; j < n->n_in; j++)
                if (n->in[j]->producer && n->in[j]->producer->id > last_in) last_in = n->in[j]->producer->id;
            for (int o = 0; o < n->n_out; o++) {
                int fr = first_reader(g, n->out[o]);
                if (fr < first_out) first_out = fr;
            }
        }
        if (last_in >= first_out) continue;
        bool adam = lead->op == CT_OP_ADAM_STEP, buf = !adam && lead->n_in > 3;
        int lead_n = adam ? 2 : 1, in_roles = adam ? 4 : buf ? 3 : 2, out_roles = lead->n_out;
        /* the per-node input index of each role: param, grad, then the slots */
        static const int role_in[4] = {0, 1, 3, 4};
        ct_value **in = malloc(sizeof(ct_value *) * (size_t)(lead_n + in_roles * cnt));
        ct_value **out = malloc(sizeof(ct_value *) * (size_t)(out_roles * cnt));
        const ct_node **rep = malloc(sizeof(ct_node *) * (size_t)cnt);
        if (!in || !out || !rep) abort();
        in[0] = lead->in[2];
        if (adam) in[1] = lead->in[5];
        for (int k = 0; k < cnt; k++) {
            const ct_node *n = grp[k].n;
            for (int r = 0; r < in_roles; r++) in[lead_n + r * cnt + k] = n->in[role_in[r]];
            for (int r = 0; r < out_roles; r++) out[r * cnt + k] = n->out[r];
            rep[k] = n;
            drop[n->id] = true;
        }
        const char *base = adam ? "fused/adam_step" : "fused/sgd_step";
        ct_node *f = ct_graph_add_node(g, adam ? CT_OP_FUSED_ADAM_STEP : CT_OP_FUSED_SGD_STEP, node_name(g, base),
                                       lead_n + in_roles * cnt, in, out_roles * cnt, out);
        for (int a = 0; a < lead->n_attr; a++) ct_node_add_attr(g, f, &lead->attrs[a]);
        if (!adam) ct_node_set_int(g, f, "buffers", buf);
        char sum[96];
        snprintf(sum, sizeof sum, "%d %s over %d tensors", cnt, ct_op_table[lead->op].name, cnt);
        set_replaced(g, f, rep, cnt, sum);
        free(in);
        free(out);
        free(rep);
        st = ct_infer_node(g, f);
        if (st) goto fail;
        fused++;
    }
    if (fused) st = drop_and_sort(g, drop, nn);
fail:
    free(grp);
    free(drop);
    free(used);
    return st;
}

/* ---------------------------------------------------------------- BatchNorm or Conv + (Add) + Relu */

/* The BatchNorm whose Y is v, read only there (NULL if none). */
static ct_node *bn_producer(const ct_graph *g, const ct_value *v)
{
    ct_node *p = v ? v->producer : NULL;
    if (!p || (p->op != CT_OP_BATCH_NORM && p->op != CT_OP_BATCH_NORM_TRAIN) || p->n_in < 5 || p->out[0] != v ||
        v->dtype != CT_F32 || v->shape.rank < 2 || ct_graph_use_count(g, v) != 1)
        return NULL;
    for (int i = 0; i < 5; i++)
        if (!p->in[i] || p->in[i]->dtype != CT_F32) return NULL;
    if (p->op == CT_OP_BATCH_NORM_TRAIN) return ct_node_attr_int(p, "world", 1) > 1 ? NULL : p; /* SyncBN: its own kernel */
    if (p->op != CT_OP_BATCH_NORM || ct_node_attr_int(p, "training_mode", 0)) return NULL;
    for (int i = 1; i < p->n_out; i++)
        if (p->out[i]) return NULL;
    return p;
}

/* The float Conv whose Y is v, read only there (NULL if none). */
static ct_node *conv_producer(const ct_graph *g, const ct_value *v)
{
    ct_node *p = v ? v->producer : NULL;
    if (!p || p->op != CT_OP_CONV || p->out[0] != v || v->dtype != CT_F32 || ct_graph_use_count(g, v) != 1) return NULL;
    for (int i = 0; i < p->n_in; i++)
        if (p->in[i] && p->in[i]->dtype != CT_F32) return NULL;
    return p;
}

/* The BatchNorm or Conv whose Y is v, read only there (NULL if none). */
static ct_node *bn_or_conv_producer(const ct_graph *g, const ct_value *v)
{
    ct_node *p = bn_producer(g, v);
    return p ? p : conv_producer(g, v);
}

/* Relu(BN(x) [+ r]) and Relu(Conv(x) [+ r]) into one node each: the normalised x or the convolution
 * and the sum are never stored. */
static ct_status fuse_bn_relu(ct_graph *g)
{
    ct_status st = CT_OK;
    int nn = g->n_nodes, fused = 0;
    bool *drop = calloc((size_t)nn + 1, sizeof *drop);
    int *pos = calloc((size_t)nn + 1, sizeof *pos); /* position of the fused nodes appended: their Relu's */
    if (!drop || !pos) abort();
    for (int i = 0; i < nn; i++) {
        ct_node *relu = g->nodes[i], *add = NULL, *p = NULL;
        if (relu->op != CT_OP_RELU || relu->out[0]->dtype != CT_F32) continue;
        ct_value *r = NULL, *x = relu->in[0];
        if (x->producer && x->producer->op == CT_OP_ADD && ct_graph_use_count(g, x) == 1) {
            add = x->producer;
            for (int k = 0; k < 2 && !p; k++) {
                p = bn_or_conv_producer(g, add->in[k]);
                r = add->in[1 - k];
            }
            if (!p || !r || r->dtype != CT_F32 || !ct_shape_equal(&r->shape, &x->shape) ||
                !ct_shape_equal(&p->out[0]->shape, &x->shape))
                continue;
        } else if (!(p = bn_or_conv_producer(g, x))) {
            continue;
        }
        if (drop[p->id] || (add && drop[add->id])) continue;
        bool conv = p->op == CT_OP_CONV, tr = p->op == CT_OP_BATCH_NORM_TRAIN;
        /* BatchNorm: X, scale, B, mean, var[, R]; Conv: X, W, B or NULL[, R] */
        ct_value *in[6] = {p->in[0], p->in[1], p->in[2], p->in[3], p->in[4], r};
        int n_in = r ? 6 : 5;
        if (conv) {
            in[2] = p->n_in > 2 ? p->in[2] : NULL, in[3] = r;
            n_in = r ? 4 : in[2] ? 3 : 2;
        }
        ct_value *out[5] = {relu->out[0], NULL, NULL, NULL, NULL};
        for (int k = 1; tr && k < 5; k++) out[k] = p->out[k];
        int last_in = -1, first_out = g->n_nodes;
        for (int k = 0; k < n_in; k++) {
            const ct_node *q = in[k] ? in[k]->producer : NULL;
            int at = !q ? -1 : q->id >= nn ? pos[q->id - nn] : q->id;
            if (at > last_in) last_in = at;
        }
        for (int k = 0; k < 5; k++) {
            int fr = out[k] ? first_reader(g, out[k]) : g->n_nodes;
            if (fr < first_out) first_out = fr;
        }
        if (last_in >= first_out || last_in >= relu->id) continue;
        const ct_node *rep[3] = {p, add ? add : relu, relu};
        char nm[512];
        snprintf(nm, sizeof nm, "%s/fused_relu", p->name);
        ct_op op = conv ? CT_OP_FUSED_CONV : tr ? CT_OP_FUSED_BN_TRAIN_RELU : CT_OP_FUSED_BN_RELU;
        ct_node *f = ct_graph_add_node(g, op, node_name(g, nm), n_in, in, tr ? 5 : 1, out);
        if (conv) {
            for (int k = 0; k < p->n_attr; k++) ct_node_add_attr(g, f, &p->attrs[k]);
            ct_node_set_int(g, f, "relu", 1);
        } else {
            ct_node_set_float(g, f, "epsilon", ct_node_attr_float(p, "epsilon", 1e-5f));
        }
        if (tr) {
            ct_node_set_float(g, f, "momentum", ct_node_attr_float(p, "momentum", 0.1f));
            ct_node_set_int(g, f, "splits", ct_node_attr_int(p, "splits", 1));
        }
        set_replaced(g, f, rep, add ? 3 : 2,
                     conv ? (add ? "Conv + Add + Relu" : "Conv + Relu") : add ? "BatchNorm + Add + Relu" : "BatchNorm + Relu");
        drop[p->id] = drop[relu->id] = true;
        if (add) drop[add->id] = true;
        pos[f->id - nn] = relu->id;
        st = ct_infer_node(g, f);
        if (st) goto fail;
        fused++;
    }
    if (fused) st = drop_and_sort(g, drop, nn);
fail:
    free(drop);
    free(pos);
    return st;
}

/* ---------------------------------------------------------------- the pass */

ct_status ct_pass_fuse(ct_graph *g)
{
    const char *off = getenv("CT_DEBUG_NO_FUSE");
    if (off && *off && strcmp(off, "0")) return CT_OK;
    CT_TRY(ct_graph_toposort(g));
    const ct_value **order = NULL;
    int n_order = 0;
    CT_TRY(fuse_ema(g, &order, &n_order));
    ct_status st = fuse_optim(g, order, n_order);
    free(order);
    if (!st) st = fuse_bn_relu(g);
    return st;
}

/* fuse_loss.c — the normalize + logits + cross-entropy fusion (fuse_loss.h):
 * pattern matching from the end of each contrastive loss that
 * models/methods.c builds (MoCo's cross-entropy with label 0, SimCLR's
 * NT-Xent, SupConLoss) back to the L2 normalisation of its embeddings, and
 * the replacement by one ContrastiveLoss or InBatchContrastiveLoss node. */
#include "fuse_loss.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define MAX_PARTS 32

typedef struct {
    ct_op op;                 /* CT_OP_CONTRASTIVE_LOSS or CT_OP_INBATCH_CONTRASTIVE_LOSS */
    ct_node *part[MAX_PARTS]; /* the nodes replaced, in graph order of the pattern */
    int n_parts;
    ct_node *last;            /* its out[0] is the loss */
    ct_value *in[3];          /* the fused node's inputs */
    int n_in;
    float temperature, base_temperature;
    int64_t views, contrast_all;
} loss_match;

static void add_part(loss_match *m, ct_node *n)
{
    if (m->n_parts < MAX_PARTS) m->part[m->n_parts++] = n;
}

/* The node producing v if it has op `op` and v is read exactly `uses` times. */
static ct_node *producer(const ct_graph *g, const ct_value *v, ct_op op, int uses)
{
    if (!v || !v->producer || v->producer->op != op) return NULL;
    return ct_graph_use_count(g, v) == uses ? v->producer : NULL;
}

static bool const_scalar(const ct_value *v, double *out)
{
    if (!v || v->kind != CT_VALUE_CONST || !v->data || ct_shape_numel(&v->shape) != 1) return false;
    if (v->dtype == CT_F32) *out = *(const float *)v->data;
    else if (v->dtype == CT_F64) *out = *(const double *)v->data;
    else return false;
    return true;
}

/* A constant int vector (int64/int32) into out[cap]; its length, or -1. */
static int const_ints(const ct_value *v, int64_t *out, int cap)
{
    if (!v || v->kind != CT_VALUE_CONST || !v->data || (v->dtype != CT_I64 && v->dtype != CT_I32)) return -1;
    int64_t n = ct_shape_numel(&v->shape);
    if (n < 0 || n > cap) return -1;
    for (int64_t i = 0; i < n; i++)
        out[i] = v->dtype == CT_I64 ? ((const int64_t *)v->data)[i] : ((const int32_t *)v->data)[i];
    return (int)n;
}

/* A float constant's element i. */
static double const_f(const ct_value *v, int64_t i)
{
    return v->dtype == CT_F64 ? ((const double *)v->data)[i] : ((const float *)v->data)[i];
}

/* A reduction over the last axis of a rank-2 tensor with the given keepdims
 * (axes as an input, or the older attribute). */
static bool reduces_rows(const ct_node *n, int keepdims)
{
    if (!n->in[0] || n->in[0]->shape.rank != 2 || ct_node_attr_int(n, "keepdims", 1) != keepdims) return false;
    int64_t ax[2];
    int cnt = -1;
    if (n->n_in > 1 && n->in[1]) {
        cnt = const_ints(n->in[1], ax, 2);
    } else {
        const int64_t *a = ct_node_attr_ints(n, "axes", &cnt);
        if (a && cnt == 1) ax[0] = a[0];
    }
    return cnt == 1 && (ax[0] == 1 || ax[0] == -1);
}

/* True if a trainable parameter reaches v other than through a StopGradient
 * (*budget bounds the producers visited; when it runs out, assume it does). */
static bool reaches_param(const ct_value *v, int *budget)
{
    if (!v) return false;
    if (!v->producer) return v->kind == CT_VALUE_PARAM && !v->frozen;
    if (v->producer->op == CT_OP_STOP_GRADIENT) return false;
    if (--*budget < 0) return true;
    for (int i = 0; i < v->producer->n_in; i++)
        if (reaches_param(v->producer->in[i], budget)) return true;
    return false;
}

static bool depends_on_param(const ct_value *v)
{
    int budget = 256;
    return reaches_param(v, &budget);
}

/* Labels of MoCo (all 0) or of NT-Xent over 2 views of B ((i + B) mod 2B). */
static bool labels_are(const ct_value *v, int64_t shift)
{
    if (!v || v->kind != CT_VALUE_CONST || !v->data || (v->dtype != CT_I64 && v->dtype != CT_I32) ||
        v->shape.rank != 1)
        return false;
    int64_t n = v->shape.dims[0];
    for (int64_t i = 0; i < n; i++) {
        int64_t l = v->dtype == CT_I64 ? ((const int64_t *)v->data)[i] : ((const int32_t *)v->data)[i];
        if (l != (shift ? (i + shift) % n : 0)) return false;
    }
    return true;
}

/* z = Div(x, Max(ReduceL2(x, axes [1], keepdims 1), 1e-12)), z read `uses` times:
 * adds the three nodes and returns x, or NULL. */
static ct_value *match_l2norm(const ct_graph *g, const ct_value *z, int uses, loss_match *m)
{
    ct_node *div = producer(g, z, CT_OP_DIV, uses);
    if (!div || z->shape.rank != 2) return NULL;
    ct_value *x = div->in[0];
    ct_node *clamp = producer(g, div->in[1], CT_OP_MAX, 1);
    if (!clamp || clamp->n_in != 2) return NULL;
    int li = clamp->in[0] && clamp->in[0]->producer ? 0 : 1;
    double eps;
    if (!const_scalar(clamp->in[1 - li], &eps) || fabs(eps - 1e-12) > 1e-18) return NULL;
    ct_node *l2 = producer(g, clamp->in[li], CT_OP_REDUCE_L2, 1);
    if (!l2 || l2->in[0] != x || !reduces_rows(l2, 1)) return NULL;
    if (x->dtype != CT_F32 && x->dtype != CT_F64) return NULL;
    add_part(m, l2);
    add_part(m, clamp);
    add_part(m, div);
    return x;
}

/* Transpose(z, perm [1, 0]) read once. */
static ct_node *match_transpose(const ct_graph *g, const ct_value *zt, const ct_value *z)
{
    ct_node *t = producer(g, zt, CT_OP_TRANSPOSE, 1);
    int cnt;
    const int64_t *p = t ? ct_node_attr_ints(t, "perm", &cnt) : NULL;
    return t && t->in[0] == z && p && cnt == 2 && p[0] == 1 && p[1] == 0 ? t : NULL;
}

/* MoCo: from loss, log_prob = SoftmaxCrossEntropy(Div(Concat(ReduceSum(Mul(qn, k)),
 * MatMul(qn, queue)), T), zeros) back to qn = norm(x). */
static bool match_moco(const ct_graph *g, ct_node *ce, loss_match *m)
{
    if (!labels_are(ce->in[1], 0)) return false;
    ct_node *divt = producer(g, ce->in[0], CT_OP_DIV, 1);
    double T;
    if (!divt || !const_scalar(divt->in[1], &T) || !(T > 0)) return false;
    ct_node *cat = producer(g, divt->in[0], CT_OP_CONCAT, 1);
    if (!cat || cat->n_in != 2 || cat->out[0]->shape.rank != 2) return false;
    int64_t axis = ct_node_attr_int(cat, "axis", 0);
    if (axis != 1 && axis != -1) return false;
    ct_node *lpos = producer(g, cat->in[0], CT_OP_REDUCE_SUM, 1);
    ct_node *lneg = producer(g, cat->in[1], CT_OP_MATMUL, 1);
    if (!lpos || !lneg || !reduces_rows(lpos, 1)) return false;
    ct_node *mul = producer(g, lpos->in[0], CT_OP_MUL, 1);
    if (!mul) return false;
    ct_value *qn = lneg->in[0], *queue = lneg->in[1];
    ct_value *k = mul->in[0] == qn ? mul->in[1] : mul->in[1] == qn ? mul->in[0] : NULL;
    if (!k || k == qn || !queue || queue->shape.rank != 2 || !ct_shape_equal(&k->shape, &qn->shape)) return false;
    if (depends_on_param(k) || depends_on_param(queue)) return false;
    ct_value *x = match_l2norm(g, qn, 2, m); /* qn read by the Mul and the MatMul only */
    if (!x) return false;
    ct_node *rest[] = {mul, lpos, lneg, cat, divt, ce};
    for (int i = 0; i < 6; i++) add_part(m, rest[i]);
    m->op = CT_OP_CONTRASTIVE_LOSS;
    m->in[0] = x, m->in[1] = k, m->in[2] = queue, m->n_in = 3;
    m->temperature = (float)T;
    return true;
}

/* SimCLR: SoftmaxCrossEntropy(Add(Div(MatMul(z, Transpose(z)), T), self_mask), (i + B) mod 2B)
 * with self_mask a constant -1e9 diagonal, back to z = norm(x). */
static bool match_ntxent(const ct_graph *g, ct_node *ce, loss_match *m)
{
    const ct_value *lab = ce->in[1];
    if (!lab || lab->shape.rank != 1 || lab->shape.dims[0] < 2 || lab->shape.dims[0] % 2) return false;
    int64_t N = lab->shape.dims[0];
    if (!labels_are(lab, N / 2)) return false;
    ct_node *add = producer(g, ce->in[0], CT_OP_ADD, 1);
    if (!add) return false;
    int mi = add->in[1] && add->in[1]->kind == CT_VALUE_CONST ? 1 : 0;
    const ct_value *sm = add->in[mi];
    if (!sm || sm->kind != CT_VALUE_CONST || !sm->data || !ct_dtype_is_float(sm->dtype) || sm->shape.rank != 2 ||
        sm->shape.dims[0] != N || sm->shape.dims[1] != N)
        return false;
    for (int64_t i = 0; i < N; i++)
        for (int64_t j = 0; j < N; j++)
            if (i == j ? !(const_f(sm, i * N + j) <= -1e8) : const_f(sm, i * N + j) != 0) return false;
    ct_node *divt = producer(g, add->in[1 - mi], CT_OP_DIV, 1);
    double T;
    if (!divt || !const_scalar(divt->in[1], &T) || !(T > 0)) return false;
    ct_node *mm = producer(g, divt->in[0], CT_OP_MATMUL, 1);
    if (!mm) return false;
    ct_value *z = mm->in[0];
    ct_node *tr = match_transpose(g, mm->in[1], z);
    if (!tr || z->shape.rank != 2 || z->shape.dims[0] != N) return false;
    ct_value *x = match_l2norm(g, z, 2, m);
    if (!x) return false;
    ct_node *rest[] = {tr, mm, divt, add, ce};
    for (int i = 0; i < 5; i++) add_part(m, rest[i]);
    m->op = CT_OP_INBATCH_CONTRASTIVE_LOSS;
    m->in[0] = x, m->n_in = 1;
    m->temperature = m->base_temperature = (float)T;
    m->views = 2;
    m->contrast_all = 1;
    return true;
}

/* logits_mask: a constant [A, N] of ones with zeros at (i, i). */
static bool self_excluding_mask(const ct_value *v, int64_t A, int64_t N)
{
    if (!v || v->kind != CT_VALUE_CONST || !v->data || !ct_dtype_is_float(v->dtype) || v->shape.rank != 2 ||
        v->shape.dims[0] != A || v->shape.dims[1] != N)
        return false;
    for (int64_t i = 0; i < A; i++)
        for (int64_t j = 0; j < N; j++)
            if (const_f(v, i * N + j) != (i == j ? 0.0 : 1.0)) return false;
    return true;
}

/* The other operand of a binary node, given one. */
static ct_value *other(const ct_node *n, const ct_value *v)
{
    return n->in[0] == v ? n->in[1] : n->in[1] == v ? n->in[0] : NULL;
}

/* SupConLoss (models/methods.c's supcon_loss), from the final ReduceMean back. */
static bool match_supcon(const ct_graph *g, ct_node *rm, loss_match *m)
{
    if (rm->n_in != 1 || ct_node_attr_int(rm, "keepdims", 1) != 0 || !rm->in[0] || rm->in[0]->shape.rank != 1)
        return false;
    ct_node *lr = producer(g, rm->in[0], CT_OP_MUL, 1);
    if (!lr) return false;
    int ci = lr->in[1] && lr->in[1]->kind == CT_VALUE_CONST ? 1 : 0;
    double negc;
    if (!const_scalar(lr->in[ci], &negc) || !(negc < 0)) return false;
    ct_node *mlpp = producer(g, lr->in[1 - ci], CT_OP_DIV, 1);
    if (!mlpp) return false;
    ct_node *psum = producer(g, mlpp->in[0], CT_OP_REDUCE_SUM, 1);
    ct_node *pcnt = producer(g, mlpp->in[1], CT_OP_REDUCE_SUM, 1);
    if (!psum || !pcnt || !reduces_rows(psum, 0) || !reduces_rows(pcnt, 0)) return false;
    ct_value *mask = pcnt->in[0];
    ct_node *mlp = producer(g, psum->in[0], CT_OP_MUL, 1);
    if (!mlp) return false;
    ct_value *logp = other(mlp, mask);
    ct_node *mmul = producer(g, mask, CT_OP_MUL, 2); /* mask * logits_mask, read by mlp and pcnt */
    ct_node *lpn = producer(g, logp, CT_OP_SUB, 1);
    if (!logp || !mmul || !lpn) return false;
    ct_node *tile = NULL;
    ct_value *lmask = NULL;
    for (int i = 0; i < 2 && !tile; i++)
        if ((tile = producer(g, mmul->in[i], CT_OP_TILE, 1))) lmask = mmul->in[1 - i];
    int64_t reps[2];
    if (!tile || const_ints(tile->in[1], reps, 2) != 2) return false;
    ct_value *mask_bb = tile->in[0];
    ct_value *logits = lpn->in[0];
    ct_node *logd = producer(g, lpn->in[1], CT_OP_LOG, 1);
    ct_node *den = logd ? producer(g, logd->in[0], CT_OP_REDUCE_SUM, 1) : NULL;
    ct_node *expl = den && reduces_rows(den, 1) ? producer(g, den->in[0], CT_OP_MUL, 1) : NULL;
    if (!expl || (expl->in[0] != lmask && expl->in[1] != lmask)) return false;
    ct_node *ex = producer(g, other(expl, lmask), CT_OP_EXP, 1);
    ct_node *lsub = producer(g, logits, CT_OP_SUB, 2); /* read by Exp and log_prob */
    if (!ex || ex->in[0] != logits || !lsub) return false;
    ct_value *adc = lsub->in[0];
    ct_node *sg = producer(g, lsub->in[1], CT_OP_STOP_GRADIENT, 1);
    ct_node *rmax = sg ? producer(g, sg->in[0], CT_OP_REDUCE_MAX, 1) : NULL;
    if (!rmax || rmax->in[0] != adc || !reduces_rows(rmax, 1)) return false;
    ct_node *divt = producer(g, adc, CT_OP_DIV, 2);
    double T;
    if (!divt || !const_scalar(divt->in[1], &T) || !(T > 0)) return false;
    ct_node *mm = producer(g, divt->in[0], CT_OP_MATMUL, 1);
    if (!mm) return false;
    ct_value *anchor = mm->in[0], *cT = mm->in[1];
    ct_node *tr = cT ? cT->producer : NULL;
    if (!tr || tr->op != CT_OP_TRANSPOSE) return false;
    ct_value *cf = tr->in[0];
    if (!match_transpose(g, cT, cf) || cf->shape.rank != 2) return false;
    int64_t N = cf->shape.dims[0];
    ct_node *slice = NULL;
    if (anchor != cf) { /* contrast_mode "one": the first B rows */
        slice = producer(g, anchor, CT_OP_SLICE, 1);
        int64_t st[2], en[2], ax[2];
        if (!slice || slice->in[0] != cf || slice->n_in < 4 || (slice->n_in > 4 && slice->in[4]) ||
            const_ints(slice->in[1], st, 2) != 1 || const_ints(slice->in[2], en, 2) != 1 ||
            const_ints(slice->in[3], ax, 2) != 1 || st[0] != 0 || ax[0] != 0)
            return false;
    }
    int64_t A = anchor->shape.dims[0];
    if (mask_bb->shape.rank != 2 || mask_bb->shape.dims[0] != mask_bb->shape.dims[1]) return false;
    int64_t B = mask_bb->shape.dims[0];
    if (B < 1 || N % B || A % B || reps[1] != N / B || reps[0] != A / B || (A != N && A != B)) return false;
    if (!self_excluding_mask(lmask, A, N) || depends_on_param(mask_bb)) return false;
    if (mask_bb->dtype != cf->dtype) return false;
    ct_value *x = match_l2norm(g, cf, 2, m); /* read by the Transpose and the MatMul or Slice */
    if (!x) return false;
    ct_node *rest[] = {tr, slice, mm, divt, rmax, sg, lsub, ex, expl, den, logd, lpn, tile, mmul, mlp, psum, pcnt,
                       mlpp, lr, rm};
    for (int i = 0; i < (int)(sizeof rest / sizeof rest[0]); i++)
        if (rest[i]) add_part(m, rest[i]);
    m->op = CT_OP_INBATCH_CONTRASTIVE_LOSS;
    m->in[0] = x, m->in[1] = mask_bb, m->n_in = 2;
    m->temperature = (float)T;
    m->base_temperature = (float)(T / -negc);
    m->views = N / B;
    m->contrast_all = A == N;
    return true;
}

static bool match_at(const ct_graph *g, ct_node *n, loss_match *m)
{
    memset(m, 0, sizeof *m);
    if (n->op == CT_OP_SOFTMAX_CROSS_ENTROPY) {
        if (n->n_out > 1 && n->out[1] && ct_graph_use_count(g, n->out[1])) return false; /* log_prob is read */
        if (match_moco(g, n, m)) {
            m->last = n;
            return true;
        }
        memset(m, 0, sizeof *m);
        if (match_ntxent(g, n, m)) {
            m->last = n;
            return true;
        }
        return false;
    }
    if (n->op == CT_OP_REDUCE_MEAN && match_supcon(g, n, m)) {
        m->last = n;
        return true;
    }
    return false;
}

/* "moco/ce/op" -> "moco/contrastive_loss", "loss/op" -> "contrastive_loss" */
static const char *fused_name(ct_graph *g, const char *last_name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", last_name ? last_name : "");
    size_t len = strlen(buf);
    if (len >= 3 && !strcmp(buf + len - 3, "/op")) buf[len - 3] = 0;
    char *slash = strrchr(buf, '/');
    if (slash) slash[1] = 0;
    else buf[0] = 0;
    return ct_graph_unique_name(g, ct_arena_printf(&g->arena, "%scontrastive_loss", buf));
}

static ct_status replace(ct_graph *g, const loss_match *m)
{
    const char *name = fused_name(g, m->last->name);
    bool moco = m->op == CT_OP_CONTRASTIVE_LOSS;
    ct_value *st = ct_graph_add_value(
        g, ct_graph_unique_name(g, ct_arena_printf(&g->arena, "%s:%s", name, moco ? "row_loss" : "stats")),
        CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *outs[2] = {m->last->out[0], st};
    ct_node *f = ct_graph_add_node(g, m->op, name, m->n_in, m->in, 2, outs);
    ct_node_set_float(g, f, "temperature", m->temperature);
    if (!moco) {
        ct_node_set_float(g, f, "base_temperature", m->base_temperature);
        ct_node_set_int(g, f, "views", m->views);
        ct_node_set_int(g, f, "contrast_all", m->contrast_all);
    }
    size_t len = 0;
    for (int i = 0; i < m->n_parts; i++) len += strlen(m->part[i]->name) + 2;
    char *list = ct_arena_alloc(&g->arena, len + 1);
    for (int i = 0; i < m->n_parts; i++) {
        if (i) strcat(list, ", ");
        strcat(list, m->part[i]->name);
    }
    f->fused_from = list;
    return ct_infer_node(g, f);
}

/* Remove the nodes with keep[id] false, and the TEMP/CONST values that only
 * they touched; every other value stays (unlike ct_graph_compact, which would
 * also drop a STATE no node reads yet, as a method builder may hold one). */
static void drop_nodes(ct_graph *g, const bool *keep)
{
    char *cand = calloc((size_t)g->n_values + 1, 1); /* 1: touched by a removed node, 2: still used */
    if (!cand) abort();
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (keep[i]) {
            n->id = k;
            g->nodes[k++] = n;
            continue;
        }
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) cand[n->in[j]->id] = 1;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j]) {
                cand[n->out[j]->id] = 1;
                if (n->out[j]->producer == n) n->out[j]->producer = NULL;
            }
    }
    g->n_nodes = k;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) cand[n->in[j]->id] = 2;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j]) cand[n->out[j]->id] = 2;
    }
    for (int i = 0; i < g->n_inputs; i++) cand[g->inputs[i]->id] = 2;
    for (int i = 0; i < g->n_outputs; i++) cand[g->outputs[i]->id] = 2;
    for (int i = 0; i < g->n_assigns; i++) cand[g->assigns[i].dst->id] = cand[g->assigns[i].src->id] = 2;
    k = 0;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (cand[i] == 1 && (v->kind == CT_VALUE_TEMP || v->kind == CT_VALUE_CONST)) continue;
        v->id = k;
        g->values[k++] = v;
    }
    g->n_values = k;
    free(cand);
}

ct_status ct_fuse_loss(ct_graph *g, int *n_fused)
{
    if (n_fused) *n_fused = 0;
    int n0 = g->n_nodes, found = 0;
    loss_match *ms = calloc((size_t)n0 + 1, sizeof *ms);
    bool *keep = NULL;
    ct_status st = CT_OK;
    if (!ms) abort();
    for (int i = 0; i < n0; i++)
        if (match_at(g, g->nodes[i], &ms[found])) found++;
    if (!found) goto done;
    for (int i = 0; i < found; i++)
        if ((st = replace(g, &ms[i]))) goto done;
    keep = malloc((size_t)g->n_nodes);
    if (!keep) abort();
    memset(keep, 1, (size_t)g->n_nodes);
    for (int i = 0; i < found; i++)
        for (int p = 0; p < ms[i].n_parts; p++) keep[ms[i].part[p]->id] = false;
    drop_nodes(g, keep);
    if ((st = ct_graph_toposort(g))) goto done;
    if (n_fused) *n_fused = found;
done:
    free(ms);
    free(keep);
    return st;
}

ct_status ct_pass_fuse_loss(ct_graph *g) { return ct_fuse_loss(g, NULL); }

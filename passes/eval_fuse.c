/* eval_fuse.c — reference kernels of the fused ops: each computes exactly
 * what the nodes it replaced compute in the reference interpreter (the same
 * roundings in the same order), so a fused graph evaluates bit for bit like
 * the unfused one. The optimizers run passes/eval_optim.c per segment. */
#include "eval_fuse.h"

#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_optim.h"
#include "fuse.h"

bool ct_eval_fuse_supports(const ct_node *n)
{
    if (n->op == CT_OP_FUSED_BN_RELU || n->op == CT_OP_FUSED_BN_TRAIN_RELU) {
        for (int i = 0; i < n->n_in; i++)
            if (!n->in[i] || n->in[i]->dtype != CT_F32) return false;
        return n->n_in >= 5 && n->out[0];
    }
    if (n->op == CT_OP_FUSED_CONV) {
        for (int i = 0; i < n->n_in; i++)
            if ((i < 2 && !n->in[i]) || (n->in[i] && n->in[i]->dtype != CT_F32)) return false;
        return n->out[0] && n->in[0]->shape.rank >= 3 && n->in[0]->shape.rank <= 4;
    }
    ct_fused_layout l;
    if (!ct_fused_layout_get(n, &l)) return false;
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i]) return false;
    for (int i = l.lead; i < n->n_in; i++)
        if (n->in[i]->dtype != CT_F32 && n->in[i]->dtype != CT_F64) return false;
    return true;
}

static double ldf(const void *p, ct_dtype t, int64_t i)
{
    return t == CT_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

/* k' = k*m + s*(1-m) as Mul, Mul, Add evaluate it: in double, each result
 * rounded to float32 when the tensors are float32. */
static ct_status eval_ema(const ct_node *n, const ct_fused_layout *l, const void *const *in, void *const *out)
{
    const double m = ldf(in[0], n->in[0]->dtype, 0), om = ldf(in[1], n->in[1]->dtype, 0);
    for (int s = 0; s < l->n; s++) {
        const ct_value *kv = n->in[l->lead + s];
        const void *k = in[l->lead + s], *src = in[l->lead + l->n + s];
        int64_t cnt = ct_shape_numel(&kv->shape);
        if (kv->dtype == CT_F32) {
            const float *kf = k, *sf = src;
            float *y = out[s];
            for (int64_t i = 0; i < cnt; i++) {
                const float a = (float)((double)kf[i] * m), c = (float)((double)sf[i] * om);
                y[i] = (float)((double)a + (double)c);
            }
        } else {
            const double *kd = k, *sd = src;
            double *y = out[s];
            for (int64_t i = 0; i < cnt; i++) y[i] = kd[i] * m + sd[i] * om;
        }
    }
    return CT_OK;
}

/* One SGDStep/AdamStep per segment, on a node that looks like the one replaced. */
static ct_status eval_optim(const ct_node *n, const ct_fused_layout *l, const void *const *in, void *const *out)
{
    bool adam = n->op == CT_OP_FUSED_ADAM_STEP;
    /* per-node input index of each role: param, grad, then the slots */
    static const int role_in[4] = {0, 1, 3, 4};
    for (int s = 0; s < l->n; s++) {
        ct_value *vi[6] = {0}, *vo[3] = {0};
        const void *pi[6] = {0};
        void *po[3] = {0};
        int n_in = adam ? 6 : 2 + l->in_roles - 1;
        vi[2] = n->in[0], pi[2] = in[0];
        if (adam) vi[5] = n->in[1], pi[5] = in[1];
        for (int r = 0; r < l->in_roles; r++) {
            int j = l->lead + r * l->n + s;
            vi[role_in[r]] = n->in[j], pi[role_in[r]] = in[j];
        }
        for (int r = 0; r < l->out_roles; r++) vo[r] = n->out[r * l->n + s], po[r] = out[r * l->n + s];
        ct_node seg = *n;
        seg.op = adam ? CT_OP_ADAM_STEP : CT_OP_SGD_STEP;
        seg.n_in = n_in;
        seg.in = vi;
        seg.n_out = l->out_roles;
        seg.out = vo;
        CT_TRY(ct_eval_optim_node(&seg, pi, po));
    }
    return CT_OK;
}

/* y (+ r, if r) in place, then Relu if relu, rounded as eval.c's Add and Relu round them. */
static void add_relu(float *y, const float *r, int64_t cnt, bool relu)
{
    for (int64_t i = 0; i < cnt; i++) {
        double v = y[i];
        if (r) v = (float)(v + (double)r[i]);
        y[i] = (float)(relu && !(v > 0) ? 0 : v);
    }
}

/* The BatchNorm it replaced into out[0], then the Add and the Relu. */
static ct_status eval_bn_relu(const ct_node *n, const void *const *in, void *const *out)
{
    ct_node bn = *n;
    bn.op = n->op == CT_OP_FUSED_BN_TRAIN_RELU ? CT_OP_BATCH_NORM_TRAIN : CT_OP_BATCH_NORM;
    bn.n_in = 5;
    CT_TRY(ct_eval_node(&bn, in, out));
    add_relu(out[0], n->n_in > 5 ? in[5] : NULL, ct_shape_numel(&n->out[0]->shape), true);
    return CT_OK;
}

/* The Conv it replaced into out[0], then the Add and the Relu. */
static ct_status eval_fused_conv(const ct_node *n, const void *const *in, void *const *out)
{
    ct_node conv = *n;
    conv.op = CT_OP_CONV;
    conv.n_in = n->n_in < 3 ? n->n_in : 3;
    CT_TRY(ct_eval_node(&conv, in, out));
    add_relu(out[0], n->n_in > 3 && n->in[3] ? in[3] : NULL, ct_shape_numel(&n->out[0]->shape),
             ct_node_attr_int(n, "relu", 0) != 0);
    return CT_OK;
}

ct_status ct_eval_fuse_node(const ct_node *n, const void *const *in, void *const *out)
{
    if (!ct_eval_fuse_supports(n)) return ct_node_errorf(n, "not supported by the reference interpreter");
    if (n->op == CT_OP_FUSED_BN_RELU || n->op == CT_OP_FUSED_BN_TRAIN_RELU) return eval_bn_relu(n, in, out);
    if (n->op == CT_OP_FUSED_CONV) return eval_fused_conv(n, in, out);
    ct_fused_layout l;
    if (!ct_fused_layout_get(n, &l)) return ct_node_errorf(n, "not supported by the reference interpreter");
    if (n->op == CT_OP_FUSED_EMA) return eval_ema(n, &l, in, out);
    return eval_optim(n, &l, in, out);
}

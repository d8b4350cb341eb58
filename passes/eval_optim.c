/* eval_optim.c — reference kernels of the optimizer ops, float32/float64,
 * written as torch.optim computes them (float32 tensors, Python-double bias
 * corrections), so the C backend and PyTorch can both be checked against it. */
#include "eval_optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool ct_eval_optim_supports(const ct_node *n)
{
    if (n->op != CT_OP_SGD_STEP && n->op != CT_OP_ADAM_STEP && n->op != CT_OP_LARS_STEP) return false;
    ct_dtype t = n->in[0]->dtype;
    if (t != CT_F32 && t != CT_F64) return false;
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && i != 5 && n->in[i]->dtype != t && i != 2) return false;
    return true;
}

static double attr_decimal(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

static double ld(const void *p, ct_dtype t, int64_t i)
{
    switch (t) {
    case CT_F32: return ((const float *)p)[i];
    case CT_F64: return ((const double *)p)[i];
    case CT_I64: return (double)((const int64_t *)p)[i];
    case CT_I32: return ((const int32_t *)p)[i];
    default: return 0;
    }
}

/* Store rounding to the tensor dtype, as each torch op does. */
static double rnd(ct_dtype t, double v) { return t == CT_F32 ? (double)(float)v : v; }
static void st(void *p, ct_dtype t, int64_t i, double v)
{
    if (t == CT_F64) ((double *)p)[i] = v;
    else ((float *)p)[i] = (float)v;
}

ct_status ct_eval_optim_node(const ct_node *n, const void *const *in, void *const *out)
{
    if (!ct_eval_optim_supports(n))
        return ct_errorf("node '%s' (%s): not supported by the reference interpreter", n->name, ct_op_table[n->op].name);
    ct_dtype t = n->in[0]->dtype;
    int64_t k = ct_shape_numel(&n->in[0]->shape);
    double lr = ld(in[2], n->in[2]->dtype, 0), wd = ct_node_attr_float(n, "weight_decay", 0);
    if (n->op == CT_OP_SGD_STEP) {
        double mom = ct_node_attr_float(n, "momentum", 0);
        bool nest = ct_node_attr_int(n, "nesterov", 0) != 0, has_buf = n->n_in > 3 && in[3];
        for (int64_t i = 0; i < k; i++) {
            double p = ld(in[0], t, i), d = ld(in[1], t, i);
            if (wd != 0) d = rnd(t, d + wd * p);
            if (has_buf) {
                double b = rnd(t, mom * ld(in[3], t, i) + d);
                if (n->n_out > 1 && out[1]) st(out[1], t, i, b);
                d = nest ? rnd(t, d + mom * b) : b;
            }
            st(out[0], t, i, p - lr * d);
        }
        return CT_OK;
    }
    if (n->op == CT_OP_ADAM_STEP) {
        /* betas as the decimals they were written as (0.999, not float 0.99900001) */
        double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
        double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
        double eps = ct_node_attr_float(n, "epsilon", 1e-8f);
        bool decoupled = ct_node_attr_int(n, "decoupled", 0) != 0;
        double step = ld(in[5], n->in[5]->dtype, 0);
        double bc1 = 1 - pow(b1, step), bc2s = sqrt(1 - pow(b2, step)), ss = lr / bc1;
        for (int64_t i = 0; i < k; i++) {
            double p = ld(in[0], t, i), g = ld(in[1], t, i);
            if (decoupled) p = rnd(t, p * (1 - lr * wd));
            else if (wd != 0) g = rnd(t, g + wd * p);
            double m = rnd(t, rnd(t, b1 * ld(in[3], t, i)) + rnd(t, 1 - b1) * g);
            double v = rnd(t, rnd(t, b2 * ld(in[4], t, i)) + rnd(t, 1 - b2) * g * g);
            double den = rnd(t, rnd(t, sqrt(v) / bc2s) + eps);
            st(out[1], t, i, m);
            st(out[2], t, i, v);
            st(out[0], t, i, p - ss * rnd(t, m / den));
        }
        return CT_OK;
    }
    /* LARS */
    double mom = ct_node_attr_float(n, "momentum", 0.9f), eta = ct_node_attr_float(n, "trust_coefficient", 0.001f);
    bool excl = ct_node_attr_int(n, "exclude", 0) != 0;
    double pn = 0, dn = 0;
    if (!excl)
        for (int64_t i = 0; i < k; i++) {
            double p = ld(in[0], t, i), d = ld(in[1], t, i) + wd * p;
            pn += p * p;
            dn += d * d;
        }
    pn = sqrt(pn);
    dn = sqrt(dn);
    double q = (!excl && pn > 0 && dn > 0) ? eta * pn / dn : 1.0;
    for (int64_t i = 0; i < k; i++) {
        double p = ld(in[0], t, i), d = ld(in[1], t, i);
        if (!excl) d = (d + wd * p) * q;
        double b = rnd(t, mom * ld(in[3], t, i) + d);
        st(out[1], t, i, b);
        st(out[0], t, i, p - lr * b);
    }
    return CT_OK;
}

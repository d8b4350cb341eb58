/* eval_fused.c — reference kernels for the fused contrastive losses
 * (ContrastiveLoss, InBatchContrastiveLoss and their Grad ops): the plainest
 * correct C, double accumulation, the whole logits row at once. The generated kernels
 * (codegen/c_fused.c) stream the queue in tiles and are compared with these. */
#include <math.h>
#include <stdlib.h>

#include "eval_fused.h"

#define NORM_EPS 1e-12 /* norm(x) = x / max(|x|, eps), as F.normalize */

bool ct_eval_fused_supports(const ct_node *n)
{
    bool inbatch = n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS || n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS_GRAD;
    if (n->op != CT_OP_CONTRASTIVE_LOSS && n->op != CT_OP_CONTRASTIVE_LOSS_GRAD && !inbatch) return false;
    for (int i = 0; i < n->n_in; i++)
        if ((!n->in[i] && !inbatch) || (n->in[i] && n->in[i]->dtype != CT_F32 && n->in[i]->dtype != CT_F64))
            return false;
    return true;
}

static double ld(const void *p, ct_dtype t, int64_t i)
{
    return t == CT_F64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

static void st(void *p, ct_dtype t, int64_t i, double v)
{
    if (t == CT_F64) ((double *)p)[i] = v;
    else ((float *)p)[i] = (float)v;
}

/* Row i of q_raw normalised into qn [D]; returns the clamped norm. */
static double normalise_row(const void *q, ct_dtype t, int64_t i, int64_t D, double *qn /* (D) */)
{
    double ss = 0;
    for (int64_t d = 0; d < D; d++) {
        double v = ld(q, t, i * D + d);
        ss += v * v;
    }
    double nrm = fmax(sqrt(ss), NORM_EPS);
    for (int64_t d = 0; d < D; d++) qn[d] = ld(q, t, i * D + d) / nrm;
    return sqrt(ss);
}

/* The logits row i: z[0] = qn.k_i / T, z[1 + j] = qn.queue[:, j] / T. */
static void logits_row(const double *qn, const void *k, const void *queue, ct_dtype t, int64_t i, int64_t D,
                       int64_t K, double T, double *z /* (K + 1) */)
{
    double s = 0;
    for (int64_t d = 0; d < D; d++) s += qn[d] * ld(k, t, i * D + d);
    z[0] = s / T;
    for (int64_t j = 0; j < K; j++) {
        s = 0;
        for (int64_t d = 0; d < D; d++) s += qn[d] * ld(queue, t, d * K + j);
        z[1 + j] = s / T;
    }
}

/* q_raw [N, D], k [N, D], queue [D, K] -> loss [], row_loss [N] (lse_i - z_i0). */
static ct_status eval_loss(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->in[0]->dtype;
    int64_t N = n->in[0]->shape.dims[0], D = n->in[0]->shape.dims[1], K = n->in[2]->shape.dims[1];
    double T = ct_node_attr_float(n, "temperature", 1.0f);
    double *qn = malloc(sizeof(double) * (size_t)D), *z = malloc(sizeof(double) * (size_t)(K + 1));
    if (!qn || !z) abort();
    double total = 0;
    for (int64_t i = 0; i < N; i++) {
        normalise_row(in[0], t, i, D, qn);
        logits_row(qn, in[1], in[2], t, i, D, K, T, z);
        double m = z[0], s = 0;
        for (int64_t j = 1; j <= K; j++) m = fmax(m, z[j]);
        for (int64_t j = 0; j <= K; j++) s += exp(z[j] - m);
        double lse = m + log(s);
        total += lse - z[0];
        if (n->n_out > 1 && out[1]) st(out[1], t, i, lse - z[0]);
    }
    st(out[0], t, 0, total / (double)N);
    free(qn);
    free(z);
    return CT_OK;
}

/* dloss [], q_raw [N, D], k [N, D], queue [D, K], row_loss [N] -> dq_raw [N, D]:
 * dz_ij = dloss / N * (softmax_ij - [j == 0]), where softmax_ij = exp(z_ij - lse_i),
 * lse_i = z_i0 + row_loss_i, and softmax_i0 - 1 = expm1(-row_loss_i); dqn_i = sum_j dz_ij c_j / T with
 * c_0 = k_i, c_j = queue[:, j-1]; then through qn = q / max(|q|, eps):
 * dq = (dqn - qn (qn.dqn)) / |q| (|q| > eps), dqn / eps otherwise. */
static ct_status eval_loss_grad(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->in[1]->dtype;
    int64_t N = n->in[1]->shape.dims[0], D = n->in[1]->shape.dims[1], K = n->in[3]->shape.dims[1];
    double T = ct_node_attr_float(n, "temperature", 1.0f);
    double g = ld(in[0], t, 0) / (double)N;
    double *qn = malloc(sizeof(double) * (size_t)D), *dqn = malloc(sizeof(double) * (size_t)D);
    double *z = malloc(sizeof(double) * (size_t)(K + 1));
    if (!qn || !dqn || !z) abort();
    for (int64_t i = 0; i < N; i++) {
        double nrm = normalise_row(in[1], t, i, D, qn);
        logits_row(qn, in[2], in[3], t, i, D, K, T, z);
        double rl = ld(in[4], t, i), lse = z[0] + rl;
        double w0 = expm1(-rl) * g / T;
        for (int64_t d = 0; d < D; d++) dqn[d] = w0 * ld(in[2], t, i * D + d);
        for (int64_t j = 0; j < K; j++) {
            double w = exp(z[1 + j] - lse) * g / T;
            for (int64_t d = 0; d < D; d++) dqn[d] += w * ld(in[3], t, d * K + j);
        }
        double dot = 0;
        for (int64_t d = 0; d < D; d++) dot += qn[d] * dqn[d];
        for (int64_t d = 0; d < D; d++)
            st(out[0], t, i * D + d, nrm > NORM_EPS ? (dqn[d] - qn[d] * dot) / nrm : dqn[d] / NORM_EPS);
    }
    free(qn);
    free(dqn);
    free(z);
    return CT_OK;
}

/* ---------------------------------------------------------------- in-batch (SupCon, NT-Xent) */

typedef struct {
    ct_dtype t;
    int64_t N, D, B, V, A;
    double T, coef; /* coef = T / base_T */
    const void *mask; /* [B, B] or NULL (identity) */
    double *zn;       /* (N, D) normalised rows */
    double *nrm;      /* (N) unclamped norms */
} inbatch;

static void inbatch_init(const ct_node *n, const void *z, const void *mask, inbatch *c)
{
    const ct_value *zv = n->in[n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS ? 0 : 1];
    c->t = zv->dtype;
    c->N = zv->shape.dims[0];
    c->D = zv->shape.dims[1];
    c->V = ct_node_attr_int(n, "views", 2);
    c->B = c->N / c->V;
    c->A = ct_node_attr_int(n, "contrast_all", 1) ? c->N : c->B;
    c->T = ct_node_attr_float(n, "temperature", 1.0f);
    c->coef = c->T / (double)ct_node_attr_float(n, "base_temperature", 1.0f);
    c->mask = mask;
    c->zn = malloc(sizeof(double) * (size_t)(c->N * c->D));
    c->nrm = malloc(sizeof(double) * (size_t)c->N);
    if (!c->zn || !c->nrm) abort();
    for (int64_t i = 0; i < c->N; i++) c->nrm[i] = normalise_row(z, c->t, i, c->D, c->zn + i * c->D);
}

static double pos_weight(const inbatch *c, int64_t a, int64_t j)
{
    if (a == j) return 0;
    if (!c->mask) return a % c->B == j % c->B;
    return ld(c->mask, c->t, (a % c->B) * c->B + j % c->B);
}

static double sim(const inbatch *c, int64_t a, int64_t j)
{
    double s = 0;
    for (int64_t d = 0; d < c->D; d++) s += c->zn[a * c->D + d] * c->zn[j * c->D + d];
    return s / c->T;
}

/* z_raw [N, D], mask [B, B]? -> loss [], stats [A, 2] (m_a, lse_a - m_a). */
static ct_status eval_inbatch(const ct_node *n, const void *const *in, void *const *out)
{
    inbatch c;
    inbatch_init(n, in[0], n->n_in > 1 ? in[1] : NULL, &c);
    double *s = malloc(sizeof(double) * (size_t)c.N), total = 0;
    if (!s) abort();
    for (int64_t a = 0; a < c.A; a++) {
        double m = -INFINITY, e = 0, ps = 0, pc = 0;
        for (int64_t j = 0; j < c.N; j++) {
            s[j] = sim(&c, a, j);
            if (j != a) m = fmax(m, s[j]);
        }
        double mf = c.t == CT_F64 ? m : (double)(float)m; /* the reference value as stored */
        for (int64_t j = 0; j < c.N; j++) {
            if (j == a) continue;
            double w = pos_weight(&c, a, j);
            e += exp(s[j] - mf);
            ps += w * s[j];
            pc += w;
        }
        double r = log(e);
        total += -c.coef * (ps - pc * (mf + r)) / pc;
        if (n->n_out > 1 && out[1]) {
            st(out[1], c.t, 2 * a, mf);
            st(out[1], c.t, 2 * a + 1, r);
        }
    }
    st(out[0], c.t, 0, total / (double)c.A);
    free(s);
    free(c.zn);
    free(c.nrm);
    return CT_OK;
}

/* dloss [], z_raw [N, D], stats [A, 2], mask [B, B]? -> dz_raw [N, D]:
 * ds_aj = dloss / A * (T / base_T) * (softmax_aj - P_aj / sum_j P_aj) for j != a,
 * softmax_aj = exp(s_aj - m_a - r_a); dzn_a += sum_j ds_aj zn_j / T and
 * dzn_j += ds_aj zn_a / T; then through the normalisation. */
static ct_status eval_inbatch_grad(const ct_node *n, const void *const *in, void *const *out)
{
    inbatch c;
    inbatch_init(n, in[1], n->n_in > 3 ? in[3] : NULL, &c);
    double g = ld(in[0], c.t, 0) / (double)c.A * c.coef;
    double *dzn = calloc((size_t)(c.N * c.D), sizeof(double));
    if (!dzn) abort();
    for (int64_t a = 0; a < c.A; a++) {
        double m = ld(in[2], c.t, 2 * a), r = ld(in[2], c.t, 2 * a + 1), pc = 0;
        for (int64_t j = 0; j < c.N; j++) pc += pos_weight(&c, a, j);
        for (int64_t j = 0; j < c.N; j++) {
            if (j == a) continue;
            double ds = g * (exp(sim(&c, a, j) - m - r) - pos_weight(&c, a, j) / pc) / c.T;
            for (int64_t d = 0; d < c.D; d++) {
                dzn[a * c.D + d] += ds * c.zn[j * c.D + d];
                dzn[j * c.D + d] += ds * c.zn[a * c.D + d];
            }
        }
    }
    for (int64_t i = 0; i < c.N; i++) {
        const double *u = c.zn + i * c.D, *v = dzn + i * c.D;
        double dot = 0;
        for (int64_t d = 0; d < c.D; d++) dot += u[d] * v[d];
        for (int64_t d = 0; d < c.D; d++)
            st(out[0], c.t, i * c.D + d, c.nrm[i] > NORM_EPS ? (v[d] - u[d] * dot) / c.nrm[i] : v[d] / NORM_EPS);
    }
    free(dzn);
    free(c.zn);
    free(c.nrm);
    return CT_OK;
}

ct_status ct_eval_fused_node(const ct_node *n, const void *const *in, void *const *out)
{
    switch (n->op) {
    case CT_OP_CONTRASTIVE_LOSS: return eval_loss(n, in, out);
    case CT_OP_CONTRASTIVE_LOSS_GRAD: return eval_loss_grad(n, in, out);
    case CT_OP_INBATCH_CONTRASTIVE_LOSS: return eval_inbatch(n, in, out);
    case CT_OP_INBATCH_CONTRASTIVE_LOSS_GRAD: return eval_inbatch_grad(n, in, out);
    default: return ct_errorf("node '%s' (%s): not a fused op", n->name, ct_op_table[n->op].name);
    }
}

/* c_fused.c — kernel bodies of the fused contrastive losses for the C backend
 * (c_fused.h). Forward: normalise the rows, then for each tile of contrast
 * columns (MoCo: the queue; in-batch: the embeddings themselves) one sgemm
 * into scratch and an online log-sum-exp per row. Backward: the same tiles
 * recomputed, the logits' gradient formed in place, the embeddings' gradient
 * accumulated by sgemm, then the backward of the L2 normalisation. */
#include "c_fused.h"

#include <stdio.h>

#define NORM_EPS "1e-12"

typedef struct {
    int64_t N, D, K, TB; /* rows, width, contrast columns (MoCo: the queue's K; in-batch: N), tile */
    int64_t B, V, A;     /* in-batch: batch, views, anchors */
    double T, coef;      /* temperature; in-batch: temperature / base_temperature */
    bool fw, inbatch, mask;
} fused_geo;

static bool geometry(const ct_node *n, fused_geo *g)
{
    g->inbatch = n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS || n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS_GRAD;
    g->fw = n->op == CT_OP_CONTRASTIVE_LOSS || n->op == CT_OP_INBATCH_CONTRASTIVE_LOSS;
    if (!g->inbatch && n->op != CT_OP_CONTRASTIVE_LOSS && n->op != CT_OP_CONTRASTIVE_LOSS_GRAD) return false;
    const ct_value *q = n->in[g->fw ? 0 : 1];
    if (!q || q->shape.rank != 2) return false;
    g->N = q->shape.dims[0];
    g->D = q->shape.dims[1];
    g->T = ct_node_attr_float(n, "temperature", 1.0f);
    if (g->inbatch) {
        g->K = g->N;
        g->V = ct_node_attr_int(n, "views", 2);
        if (g->V < 1 || g->N % g->V) return false;
        g->B = g->N / g->V;
        g->A = ct_node_attr_int(n, "contrast_all", 1) ? g->N : g->B;
        g->coef = g->T / (double)ct_node_attr_float(n, "base_temperature", 1.0f);
        int mi = g->fw ? 1 : 3;
        g->mask = n->n_in > mi && n->in[mi];
    } else {
        const ct_value *queue = n->in[g->fw ? 2 : 3];
        if (!queue || queue->shape.rank != 2) return false;
        g->K = queue->shape.dims[1];
        g->A = g->N;
    }
    g->TB = ct_node_attr_int(n, "tile", 0);
    if (g->TB <= 0) g->TB = CT_FUSED_DEFAULT_TILE;
    if (g->TB > g->K) g->TB = g->K;
    return true;
}

/* Float offsets in scratch: MoCo fw: qn (N, D), tile (N, TB), then 3N doubles;
 * MoCo bw: qn (N, D), dqn (N, D), tile (N, TB), lse (N); in-batch fw: zn (N, D),
 * tile (A, TB), then 4A doubles; in-batch bw: zn, dzn (N, D), tile (A, TB), 2A doubles. */
static int64_t even(int64_t x) { return (x + 1) / 2 * 2; }

const char *ct_c_fused_plan(const ct_node *n, int64_t *scratch_floats)
{
    fused_geo g;
    *scratch_floats = 0;
    if (!geometry(n, &g)) return "needs embeddings [N, D] (and a queue [D, K], or N a multiple of the views)";
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->dtype != CT_F32) return "the fused loss kernels are float32 only";
    for (int i = 0; i < n->n_out; i++)
        if (n->out[i] && n->out[i]->dtype != CT_F32) return "the fused loss kernels are float32 only";
    if (g.N < 1 || g.D < 1 || g.K < 1 || g.K > INT32_MAX || g.N * g.TB > INT32_MAX) return "sizes out of range";
    if (!(g.T > 0)) return "temperature must be > 0";
    if (g.inbatch) *scratch_floats = even((g.fw ? 1 : 2) * g.N * g.D + g.A * g.TB) + 2 * (g.fw ? 4 : 2) * g.A;
    else if (g.fw) *scratch_floats = even(g.N * g.D + g.N * g.TB) + 2 * 3 * g.N;
    else *scratch_floats = 2 * g.N * g.D + g.N * g.TB + g.N;
    return NULL;
}

/* qn[i] = q[i] / max(|q[i]|, eps) into scratch, per row i (opens the row loop). */
static void emit_normalise(ct_emitter *e, const fused_geo *g, const char *q, const char *qn)
{
    const long long N = g->N, D = g->D;
    ct_emit_pfor(e, "i", 1, N * D < 32768, "%lld", N);
    ct_emit_line(e, "const float *qi = %s + i * %lld;", q, D);
    ct_emit_line(e, "double ss = 0;");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) ss += (double)qi[d] * qi[d];", D);
    ct_emit_line(e, "const double nrm = fmax(sqrt(ss), " NORM_EPS ");");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) %s[i * %lld + d] = (float)(qi[d] / nrm);", D, qn, D);
}

static void emit_forward(ct_emitter *e, const fused_geo *g, bool row_out)
{
    const long long N = g->N, D = g->D, K = g->K, TB = g->TB;
    const char *ex = ct_emit_math(e, CT_MATH_EXP);
    ct_emit_line(e, "float *qn = scratch;                /* (%lld, %lld) normalised queries */", N, D);
    ct_emit_line(e, "float *s = scratch + %lld;          /* (%lld, <= %lld) logits of one tile of the queue */",
                 N * D, N, TB);
    ct_emit_line(e, "double *run_m = (double *)(scratch + %lld); /* (%lld) running row max */",
                 (long long)even(N * D + N * TB), N);
    ct_emit_line(e, "double *run_s = run_m + %lld;      /* (%lld) running sum of exp(z - max) */", N, N);
    ct_emit_line(e, "double *lpos = run_s + %lld;       /* (%lld) positive logits */", N, N);
    ct_emit_line(e, "const double inv_t = %.17g;", 1.0 / g->T);
    emit_normalise(e, g, "x0", "qn");
    ct_emit_line(e, "double dot = 0;");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) dot += (double)qn[i * %lld + d] * x1[i * %lld + d];", D, D, D);
    ct_emit_line(e, "lpos[i] = dot * inv_t;");
    ct_emit_line(e, "run_m[i] = lpos[i];");
    ct_emit_line(e, "run_s[i] = 1.0;");
    ct_emit_close(e);
    ct_emit_open(e, "for (int64_t j0 = 0; j0 < %lld; j0 += %lld)", K, TB);
    ct_emit_line(e, "const int64_t nb = %lld - j0 < %lld ? %lld - j0 : %lld;", K, TB, K, TB);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_NO_TRANS, %lld, (int)nb, %lld, 1.0f, qn, %lld, x2 + j0, "
                    "%lld, 0.0f, s, (int)nb);", N, D, D, K);
    ct_emit_pfor(e, "i", 1, N * TB < 32768, "%lld", N);
    ct_emit_line(e, "const float *r = s + i * nb;");
    ct_emit_line(e, "float mt = -INFINITY;");
    ct_emit_line(e, "for (int64_t j = 0; j < nb; j++) mt = r[j] > mt ? r[j] : mt;");
    ct_emit_line(e, "const double m = fmax(run_m[i], mt * inv_t);");
    ct_emit_line(e, "const float mf = (float)m, it = (float)inv_t;");
    ct_emit_line(e, "double acc = 0;");
    ct_emit_line(e, "for (int64_t j = 0; j < nb; j++) acc += %s(r[j] * it - mf);", ex);
    ct_emit_line(e, "run_s[i] = run_s[i] * exp(run_m[i] - m) + acc;");
    ct_emit_line(e, "run_m[i] = m;");
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_line(e, "double total = 0;");
    ct_emit_open(e, "for (int64_t i = 0; i < %lld; i++)", N);
    ct_emit_line(e, "const double row = run_m[i] + log(run_s[i]) - lpos[i]; /* lse - z_0 */");
    if (row_out) ct_emit_line(e, "y1[i] = (float)row;");
    ct_emit_line(e, "total += row;");
    ct_emit_close(e);
    ct_emit_line(e, "y0[0] = (float)(total / %lld);", N);
}

static void emit_backward(ct_emitter *e, const fused_geo *g)
{
    const long long N = g->N, D = g->D, K = g->K, TB = g->TB;
    const char *ex = ct_emit_math(e, CT_MATH_EXP);
    ct_emit_line(e, "float *qn = scratch;                /* (%lld, %lld) normalised queries */", N, D);
    ct_emit_line(e, "float *dqn = scratch + %lld;        /* (%lld, %lld) sum_j p_ij c_j - c_0 */", N * D, N, D);
    ct_emit_line(e, "float *p = scratch + %lld;          /* (%lld, <= %lld) softmax of one tile */", 2 * N * D, N,
                 TB);
    ct_emit_line(e, "float *lse = p + %lld;              /* (%lld) z_0 + row_loss */", N * TB, N);
    ct_emit_line(e, "const double inv_t = %.17g;", 1.0 / g->T);
    emit_normalise(e, g, "x1", "qn");
    ct_emit_line(e, "double dot = 0;");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) dot += (double)qn[i * %lld + d] * x2[i * %lld + d];", D, D, D);
    ct_emit_line(e, "lse[i] = (float)(dot * inv_t + x4[i]);");
    ct_emit_line(e, "const float w0 = (float)expm1(-(double)x4[i]); /* softmax_0 - 1, exact near 1 */");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) dqn[i * %lld + d] = w0 * x2[i * %lld + d];", D, D, D);
    ct_emit_close(e);
    ct_emit_open(e, "for (int64_t j0 = 0; j0 < %lld; j0 += %lld)", K, TB);
    ct_emit_line(e, "const int64_t nb = %lld - j0 < %lld ? %lld - j0 : %lld;", K, TB, K, TB);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_NO_TRANS, %lld, (int)nb, %lld, 1.0f, qn, %lld, x3 + j0, "
                    "%lld, 0.0f, p, (int)nb);", N, D, D, K);
    ct_emit_pfor(e, "i", 1, N * TB < 32768, "%lld", N);
    ct_emit_line(e, "float *r = p + i * nb;");
    ct_emit_line(e, "const float l = lse[i], it = (float)inv_t;");
    ct_emit_line(e, "for (int64_t j = 0; j < nb; j++) r[j] = %s(r[j] * it - l);", ex);
    ct_emit_close(e);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_TRANS, %lld, %lld, (int)nb, 1.0f, p, (int)nb, x3 + j0, "
                    "%lld, 1.0f, dqn, %lld);", N, D, K, D);
    ct_emit_close(e);
    ct_emit_line(e, "const double scale = (double)x0[0] * inv_t / %lld; /* dloss / (N T) */", N);
    ct_emit_pfor(e, "i", 1, N * D < 32768, "%lld", N);
    ct_emit_line(e, "const float *qi = x1 + i * %lld, *u = qn + i * %lld, *v = dqn + i * %lld;", D, D, D);
    ct_emit_line(e, "double ss = 0, dot = 0;");
    ct_emit_open(e, "for (int64_t d = 0; d < %lld; d++)", D);
    ct_emit_line(e, "ss += (double)qi[d] * qi[d];");
    ct_emit_line(e, "dot += (double)u[d] * v[d];");
    ct_emit_close(e);
    ct_emit_line(e, "const double nrm = sqrt(ss);");
    ct_emit_open(e, "if (nrm > " NORM_EPS ")");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) y0[i * %lld + d] = (float)(scale * (v[d] - u[d] * dot) / nrm);",
                 D, D);
    ct_emit_close(e);
    ct_emit_open(e, "else");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) y0[i * %lld + d] = (float)(scale * v[d] / " NORM_EPS ");", D, D);
    ct_emit_close(e);
    ct_emit_close(e);
}

/* The positive weight of pair (a, j) as a C expression (j != a is the caller's). */
static void pos_expr(const fused_geo *g, const char *a, const char *j, char *buf, size_t len)
{
    if (g->mask) snprintf(buf, len, "xm[((%s) %% %lld) * %lld + (%s) %% %lld]", a, (long long)g->B, (long long)g->B, j,
                          (long long)g->B);
    else snprintf(buf, len, "(float)((%s) %% %lld == (%s) %% %lld)", a, (long long)g->B, j, (long long)g->B);
}

/* One tile of similarities: S (A, nb) = zn[0:A] zn[j0:j0+nb]^T. */
static void emit_sim_tile(ct_emitter *e, const fused_geo *g, const char *dst)
{
    const long long N = g->N, D = g->D, A = g->A, TB = g->TB;
    ct_emit_line(e, "const int64_t nb = %lld - j0 < %lld ? %lld - j0 : %lld;", N, TB, N, TB);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_TRANS, %lld, (int)nb, %lld, 1.0f, zn, %lld, zn + j0 * "
                    "%lld, %lld, 0.0f, %s, (int)nb);", A, D, D, D, D, dst);
}

static void emit_inbatch_forward(ct_emitter *e, const fused_geo *g, bool stats_out)
{
    const long long N = g->N, D = g->D, A = g->A, TB = g->TB;
    const char *ex = ct_emit_math(e, CT_MATH_EXP);
    char pw[160];
    pos_expr(g, "a", "j0 + j", pw, sizeof pw);
    if (g->mask) ct_emit_line(e, "const float *xm = x1; /* (%lld, %lld) positive mask */", (long long)g->B, (long long)g->B);
    ct_emit_line(e, "float *zn = scratch;                /* (%lld, %lld) normalised embeddings */", N, D);
    ct_emit_line(e, "float *s = scratch + %lld;          /* (%lld, <= %lld) similarities of one tile */", N * D, A, TB);
    ct_emit_line(e, "double *run_m = (double *)(scratch + %lld); /* (%lld) running row max */",
                 (long long)even(N * D + A * TB), A);
    ct_emit_line(e, "double *run_s = run_m + %lld;      /* (%lld) running sum of exp(s - max) */", A, A);
    ct_emit_line(e, "double *pos_s = run_s + %lld;      /* (%lld) sum of positive similarities */", A, A);
    ct_emit_line(e, "double *pos_c = pos_s + %lld;      /* (%lld) positive count */", A, A);
    ct_emit_line(e, "const double inv_t = %.17g;", 1.0 / g->T);
    emit_normalise(e, g, "x0", "zn");
    ct_emit_close(e);
    ct_emit_open(e, "for (int64_t a = 0; a < %lld; a++)", A);
    ct_emit_line(e, "run_m[a] = -INFINITY;");
    ct_emit_line(e, "run_s[a] = pos_s[a] = pos_c[a] = 0;");
    ct_emit_close(e);
    ct_emit_open(e, "for (int64_t j0 = 0; j0 < %lld; j0 += %lld)", N, TB);
    emit_sim_tile(e, g, "s");
    ct_emit_pfor(e, "a", 1, A * TB < 32768, "%lld", A);
    ct_emit_line(e, "const float *r = s + a * nb;");
    ct_emit_line(e, "float mt = -INFINITY;");
    ct_emit_line(e, "for (int64_t j = 0; j < nb; j++) if (j0 + j != a && r[j] > mt) mt = r[j];");
    ct_emit_line(e, "const double m = fmax(run_m[a], mt * inv_t);");
    ct_emit_line(e, "const float mf = (float)m, it = (float)inv_t;");
    ct_emit_line(e, "double acc = 0, ps = 0, pc = 0;");
    ct_emit_open(e, "for (int64_t j = 0; j < nb; j++)");
    ct_emit_line(e, "if (j0 + j == a) continue;");
    ct_emit_line(e, "const float w = %s;", pw);
    ct_emit_line(e, "acc += %s(r[j] * it - mf);", ex);
    ct_emit_line(e, "ps += (double)w * r[j];");
    ct_emit_line(e, "pc += w;");
    ct_emit_close(e);
    ct_emit_line(e, "run_s[a] = (run_m[a] == -INFINITY ? 0.0 : run_s[a] * exp(run_m[a] - m)) + acc;");
    ct_emit_line(e, "run_m[a] = m;");
    ct_emit_line(e, "pos_s[a] += ps * inv_t;");
    ct_emit_line(e, "pos_c[a] += pc;");
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_line(e, "double total = 0;");
    ct_emit_open(e, "for (int64_t a = 0; a < %lld; a++)", A);
    ct_emit_line(e, "const float mf = (float)run_m[a]; /* the stored reference: lse = mf + r */");
    ct_emit_line(e, "const double r = log(run_s[a]) + (run_m[a] - mf);");
    if (stats_out) {
        ct_emit_line(e, "y1[2 * a] = mf;");
        ct_emit_line(e, "y1[2 * a + 1] = (float)r;");
    }
    ct_emit_line(e, "total += -%.17g * (pos_s[a] - pos_c[a] * (mf + r)) / pos_c[a];", g->coef);
    ct_emit_close(e);
    ct_emit_line(e, "y0[0] = (float)(total / %lld);", A);
}

static void emit_inbatch_backward(ct_emitter *e, const fused_geo *g)
{
    const long long N = g->N, D = g->D, A = g->A, TB = g->TB;
    const char *ex = ct_emit_math(e, CT_MATH_EXP);
    char pw[160];
    if (g->mask) ct_emit_line(e, "const float *xm = x3; /* (%lld, %lld) positive mask */", (long long)g->B, (long long)g->B);
    ct_emit_line(e, "float *zn = scratch;                /* (%lld, %lld) normalised embeddings */", N, D);
    ct_emit_line(e, "float *dzn = scratch + %lld;        /* (%lld, %lld) gradient of zn, times T */", N * D, N, D);
    ct_emit_line(e, "float *p = scratch + %lld;          /* (%lld, <= %lld) gradient of one tile's logits */",
                 2 * N * D, A, TB);
    ct_emit_line(e, "double *inv_c = (double *)(scratch + %lld); /* (%lld) 1 / positive count */",
                 (long long)even(2 * N * D + A * TB), A);
    ct_emit_line(e, "double *lse = inv_c + %lld;        /* (%lld) m + r */", A, A);
    ct_emit_line(e, "const double inv_t = %.17g;", 1.0 / g->T);
    emit_normalise(e, g, "x1", "zn");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) dzn[i * %lld + d] = 0.0f;", D, D);
    ct_emit_close(e);
    pos_expr(g, "a", "j", pw, sizeof pw);
    ct_emit_pfor(e, "a", 1, A * N < 32768, "%lld", A);
    ct_emit_line(e, "double pc = 0;");
    ct_emit_line(e, "for (int64_t j = 0; j < %lld; j++) if (j != a) pc += %s;", N, pw);
    ct_emit_line(e, "inv_c[a] = 1.0 / pc;");
    ct_emit_line(e, "lse[a] = (double)x2[2 * a] + x2[2 * a + 1];");
    ct_emit_close(e);
    pos_expr(g, "a", "j0 + j", pw, sizeof pw);
    ct_emit_line(e, "const float g = (float)((double)x0[0] * %.17g / %lld); /* dloss (T / base_T) / A */", g->coef, A);
    ct_emit_open(e, "for (int64_t j0 = 0; j0 < %lld; j0 += %lld)", N, TB);
    emit_sim_tile(e, g, "p");
    ct_emit_pfor(e, "a", 1, A * TB < 32768, "%lld", A);
    ct_emit_line(e, "float *r = p + a * nb;");
    ct_emit_line(e, "const float it = (float)inv_t, ic = (float)inv_c[a];");
    ct_emit_line(e, "const double l = lse[a];");
    ct_emit_open(e, "for (int64_t j = 0; j < nb; j++)");
    ct_emit_line(e, "const float w = %s;", pw);
    ct_emit_line(e, "r[j] = j0 + j == a ? 0.0f : g * (%s((float)((double)(r[j] * it) - l)) - w * ic);", ex);
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_NO_TRANS, %lld, %lld, (int)nb, 1.0f, p, (int)nb, zn + j0 * "
                    "%lld, %lld, 1.0f, dzn, %lld);", A, D, D, D, D);
    ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_TRANS, CT_NO_TRANS, (int)nb, %lld, %lld, 1.0f, p, (int)nb, zn, %lld, "
                    "1.0f, dzn + j0 * %lld, %lld);", D, A, D, D, D);
    ct_emit_close(e);
    ct_emit_pfor(e, "i", 1, N * D < 32768, "%lld", N);
    ct_emit_line(e, "const float *zi = x1 + i * %lld, *u = zn + i * %lld, *v = dzn + i * %lld;", D, D, D);
    ct_emit_line(e, "double ss = 0, dot = 0;");
    ct_emit_open(e, "for (int64_t d = 0; d < %lld; d++)", D);
    ct_emit_line(e, "ss += (double)zi[d] * zi[d];");
    ct_emit_line(e, "dot += (double)u[d] * v[d];");
    ct_emit_close(e);
    ct_emit_line(e, "const double nrm = sqrt(ss);");
    ct_emit_open(e, "if (nrm > " NORM_EPS ")");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) y0[i * %lld + d] = (float)(inv_t * (v[d] - u[d] * dot) / nrm);",
                 D, D);
    ct_emit_close(e);
    ct_emit_open(e, "else");
    ct_emit_line(e, "for (int64_t d = 0; d < %lld; d++) y0[i * %lld + d] = (float)(inv_t * v[d] / " NORM_EPS ");", D, D);
    ct_emit_close(e);
    ct_emit_close(e);
}

void ct_c_fused_body(ct_emitter *e, const ct_node *n)
{
    fused_geo g;
    if (!geometry(n, &g)) return;
    ct_emit_line(e, "/* %s streamed in tiles of %lld of its %lld columns: scratch grows with the tile */",
                 g.inbatch ? "the similarity matrix" : "the queue", (long long)g.TB, (long long)g.K);
    if (g.inbatch) {
        if (g.fw) emit_inbatch_forward(e, &g, n->n_out > 1 && n->out[1]);
        else emit_inbatch_backward(e, &g);
    } else {
        if (g.fw) emit_forward(e, &g, n->n_out > 1 && n->out[1]);
        else emit_backward(e, &g);
    }
}

/* eval_train.c — reference kernels for the training ops of ir/ops.def
 * (domain ai.contra), plainly on host memory with double accumulation, in
 * float32 and float64 (float64 is what finite-difference tests run in).
 * passes/eval.c dispatches here for ai.contra ops. */
#include "eval_train.h"

#include "eval_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) ct_status_wrap(ct_errorf(__VA_ARGS__), "node '%s' (%s)", n->name, ct_op_table[n->op].name)

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

static void st(void *p, ct_dtype t, int64_t i, double v)
{
    if (t == CT_F64) ((double *)p)[i] = v;
    else ((float *)p)[i] = (float)v;
}

static int64_t numel(const ct_value *v) { return ct_shape_numel(&v->shape); }

bool ct_eval_train_supports(const ct_node *n)
{
    if (ct_eval_optim_supports(n)) return true; /* optimizer ops: passes/eval_optim.c */
    if ((n->op == CT_OP_BATCH_NORM_TRAIN || n->op == CT_OP_BATCH_NORM_GRAD) && ct_node_attr_int(n, "world", 1) > 1)
        return false; /* SyncBatchNorm needs the other ranks: the runtime's communicator */
    switch (n->op) {
    case CT_OP_STOP_GRADIENT:
        return n->in[0]->dtype == n->out[0]->dtype; /* a copy, any dtype */
    case CT_OP_RELU_GRAD: case CT_OP_SIGMOID_GRAD: case CT_OP_TANH_GRAD: case CT_OP_HARD_SIGMOID_GRAD:
    case CT_OP_HARD_SWISH_GRAD: case CT_OP_LEAKY_RELU_GRAD: case CT_OP_ABS_GRAD: case CT_OP_CLIP_GRAD:
    case CT_OP_SOFTMAX_GRAD: case CT_OP_LOG_SOFTMAX_GRAD: case CT_OP_CONV_GRAD_INPUT: case CT_OP_CONV_GRAD_WEIGHT:
    case CT_OP_MAX_POOL_GRAD: case CT_OP_AVERAGE_POOL_GRAD: case CT_OP_BATCH_NORM_TRAIN: case CT_OP_BATCH_NORM_GRAD:
    case CT_OP_SOFTMAX_CROSS_ENTROPY: case CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD:
        break;
    default:
        return false;
    }
    for (int i = 0; i < n->n_out; i++)
        if (n->out[i] && n->out[i]->dtype != CT_F32 && n->out[i]->dtype != CT_F64) return false;
    if (n->op == CT_OP_CONV_GRAD_INPUT || n->op == CT_OP_CONV_GRAD_WEIGHT || n->op == CT_OP_MAX_POOL_GRAD ||
        n->op == CT_OP_AVERAGE_POOL_GRAD) {
        int r = n->in[0]->shape.rank;
        return r == 3 || r == 4;
    }
    return true;
}

/* ---------------------------------------------------------------- elementwise */

static ct_status eval_unary_grad(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->out[0]->dtype, t1 = n->in[1]->dtype;
    int64_t k = numel(n->out[0]);
    double alpha = ct_node_attr_float(n, "alpha", n->op == CT_OP_LEAKY_RELU_GRAD ? 0.01f : 0.2f);
    double beta = ct_node_attr_float(n, "beta", 0.5f);
    double lo = -INFINITY, hi = INFINITY;
    if (n->op == CT_OP_CLIP_GRAD) {
        lo = ct_node_attr_float(n, "min", -INFINITY);
        hi = ct_node_attr_float(n, "max", INFINITY);
        if (n->n_in > 2 && in[2]) lo = ld(in[2], n->in[2]->dtype, 0);
        if (n->n_in > 3 && in[3]) hi = ld(in[3], n->in[3]->dtype, 0);
    }
    for (int64_t i = 0; i < k; i++) {
        double dy = ld(in[0], n->in[0]->dtype, i), y = ld(in[1], t1, i), d = 0;
        switch (n->op) {
        case CT_OP_RELU_GRAD: d = y > 0 ? dy : 0; break;
        case CT_OP_SIGMOID_GRAD: d = dy * y * (1 - y); break;
        case CT_OP_TANH_GRAD: d = dy * (1 - y * y); break;
        case CT_OP_HARD_SIGMOID_GRAD: {
            double v = alpha * y + beta;
            d = (v > 0 && v < 1) ? dy * alpha : 0;
            break;
        }
        case CT_OP_HARD_SWISH_GRAD: d = y < -3 ? 0 : y <= 3 ? dy * (y / 3 + 0.5) : dy; break;
        case CT_OP_LEAKY_RELU_GRAD: d = y > 0 ? dy : dy * alpha; break;
        case CT_OP_ABS_GRAD: d = y > 0 ? dy : y < 0 ? -dy : 0; break;
        case CT_OP_CLIP_GRAD: d = (y >= lo && y <= hi) ? dy : 0; break;
        default: break;
        }
        st(out[0], t, i, d);
    }
    return CT_OK;
}

static ct_status eval_softmax_grad(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *s = &n->in[1]->shape;
    ct_dtype t = n->out[0]->dtype, td = n->in[0]->dtype, ty = n->in[1]->dtype;
    if (s->rank == 0) return FAIL("scalar input");
    int64_t a = ct_node_attr_int(n, "axis", -1);
    int axis = (int)(a < 0 ? a + s->rank : a);
    if (axis < 0 || axis >= s->rank) return FAIL("axis out of range");
    int64_t outer = 1, inner = 1, d = s->dims[axis];
    for (int i = 0; i < axis; i++) outer *= s->dims[i];
    for (int i = axis + 1; i < s->rank; i++) inner *= s->dims[i];
    bool log_sm = n->op == CT_OP_LOG_SOFTMAX_GRAD;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t r = 0; r < inner; r++) {
            int64_t base = o * d * inner + r;
            double acc = 0;
            for (int64_t j = 0; j < d; j++) {
                double dy = ld(in[0], td, base + j * inner);
                acc += log_sm ? dy : dy * ld(in[1], ty, base + j * inner);
            }
            for (int64_t j = 0; j < d; j++) {
                int64_t k = base + j * inner;
                double dy = ld(in[0], td, k), y = ld(in[1], ty, k);
                st(out[0], t, k, log_sm ? dy - exp(y) * acc : y * (dy - acc));
            }
        }
    return CT_OK;
}

/* ---------------------------------------------------------------- windows */

typedef struct {
    int64_t N, C, H, W;     /* the forward input */
    int64_t OH, OW;         /* the forward output */
    int64_t kh, kw, sh, sw, dh, dw, ph, pw, ph_end, pw_end;
} window;

/* From explicit attributes; xs is the forward input shape, ys the forward output shape. */
static ct_status window_get(const ct_node *n, const ct_shape *xs, const ct_shape *ys, const ct_shape *ws, window *w)
{
    int sp = xs->rank - 2, c;
    if (sp != 1 && sp != 2) return FAIL("only 1-D and 2-D windows are supported");
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
    const int64_t *a = ct_node_attr_ints(n, "kernel_shape", &c);
    if (a && c == sp) for (int i = 0; i < sp; i++) k[i] = a[i];
    else if (ws) for (int i = 0; i < sp; i++) k[i] = ws->dims[2 + i];
    else return FAIL("kernel_shape missing");
    if ((a = ct_node_attr_ints(n, "strides", &c)) && c == sp) for (int i = 0; i < sp; i++) s[i] = a[i];
    if ((a = ct_node_attr_ints(n, "dilations", &c)) && c == sp) for (int i = 0; i < sp; i++) d[i] = a[i];
    if ((a = ct_node_attr_ints(n, "pads", &c)) && c == 2 * sp) for (int i = 0; i < 2 * sp; i++) p[i] = a[i];
    w->N = xs->dims[0];
    w->C = xs->dims[1];
    if (sp == 1) {
        w->H = 1; w->OH = 1; w->kh = 1; w->sh = 1; w->dh = 1; w->ph = 0; w->ph_end = 0;
        w->W = xs->dims[2]; w->OW = ys->dims[2]; w->kw = k[0]; w->sw = s[0]; w->dw = d[0];
        w->pw = p[0]; w->pw_end = p[1];
    } else {
        w->H = xs->dims[2]; w->OH = ys->dims[2]; w->kh = k[0]; w->sh = s[0]; w->dh = d[0];
        w->W = xs->dims[3]; w->OW = ys->dims[3]; w->kw = k[1]; w->sw = s[1]; w->dw = d[1];
        w->ph = p[0]; w->pw = p[1]; w->ph_end = p[2]; w->pw_end = p[3];
    }
    if (w->sh <= 0 || w->sw <= 0 || w->dh <= 0 || w->dw <= 0) return FAIL("strides and dilations must be positive");
    return CT_OK;
}

/* ConvGradInput(dY, W) -> dX and ConvGradWeight(dY, X) -> dW: the forward
 * convolution's sum, scattered the other way. */
static ct_status eval_conv_grad(const ct_node *n, const void *const *in, void *const *out)
{
    bool wrt_input = n->op == CT_OP_CONV_GRAD_INPUT;
    const ct_shape *ys = &n->in[0]->shape;
    const ct_shape *xs = wrt_input ? &n->out[0]->shape : &n->in[1]->shape;
    const ct_shape *ws = wrt_input ? &n->in[1]->shape : &n->out[0]->shape;
    ct_dtype td = n->in[0]->dtype, t1 = n->in[1]->dtype, t = n->out[0]->dtype;
    window w;
    CT_TRY(window_get(n, xs, ys, ws, &w));
    int64_t G = ct_node_attr_int(n, "group", 1), M = ws->dims[0], CG = ws->dims[1];
    if (G <= 0 || w.C != CG * G || M % G || ys->dims[1] != M) return FAIL("channels and group do not match");
    int64_t MG = M / G, total = numel(n->out[0]);
    double *acc = calloc((size_t)(total ? total : 1), sizeof(double));
    if (!acc) return FAIL("out of memory");
    for (int64_t b = 0; b < w.N; b++)
        for (int64_t m = 0; m < M; m++) {
            int64_t g = m / MG;
            for (int64_t oh = 0; oh < w.OH; oh++)
                for (int64_t ow = 0; ow < w.OW; ow++) {
                    double dy = ld(in[0], td, ((b * M + m) * w.OH + oh) * w.OW + ow);
                    if (dy == 0) continue;
                    for (int64_t c = 0; c < CG; c++)
                        for (int64_t i = 0; i < w.kh; i++) {
                            int64_t ih = oh * w.sh - w.ph + i * w.dh;
                            if (ih < 0 || ih >= w.H) continue;
                            for (int64_t j = 0; j < w.kw; j++) {
                                int64_t iw = ow * w.sw - w.pw + j * w.dw;
                                if (iw < 0 || iw >= w.W) continue;
                                int64_t xi = ((b * w.C + g * CG + c) * w.H + ih) * w.W + iw;
                                int64_t wi = ((m * CG + c) * w.kh + i) * w.kw + j;
                                if (wrt_input) acc[xi] += dy * ld(in[1], t1, wi);
                                else acc[wi] += dy * ld(in[1], t1, xi);
                            }
                        }
                }
        }
    for (int64_t i = 0; i < total; i++) st(out[0], t, i, acc[i]);
    free(acc);
    return CT_OK;
}

/* MaxPoolGrad(dY, X): dY to the first maximum of each window (as eval.c's MaxPool
 * and PyTorch pick it); AveragePoolGrad(dY): dY / count to each element counted. */
static ct_status eval_pool_grad(const ct_node *n, const void *const *in, void *const *out)
{
    bool is_max = n->op == CT_OP_MAX_POOL_GRAD;
    const ct_shape *ys = &n->in[0]->shape, *xs = &n->out[0]->shape;
    ct_dtype td = n->in[0]->dtype, t = n->out[0]->dtype, tx = is_max ? n->in[1]->dtype : t;
    window w;
    CT_TRY(window_get(n, xs, ys, NULL, &w));
    bool include_pad = ct_node_attr_int(n, "count_include_pad", 0) != 0;
    int64_t total = numel(n->out[0]);
    double *acc = calloc((size_t)(total ? total : 1), sizeof(double));
    if (!acc) return FAIL("out of memory");
    for (int64_t p = 0; p < w.N * w.C; p++)
        for (int64_t oh = 0; oh < w.OH; oh++)
            for (int64_t ow = 0; ow < w.OW; ow++) {
                double dy = ld(in[0], td, (p * w.OH + oh) * w.OW + ow), best_v = -INFINITY;
                int64_t cnt = 0, best = -1;
                for (int pass = 0; pass < 2; pass++) {
                    for (int64_t i = 0; i < w.kh; i++) {
                        int64_t ih = oh * w.sh - w.ph + i * w.dh;
                        if (ih < 0 || ih >= w.H) continue;
                        for (int64_t j = 0; j < w.kw; j++) {
                            int64_t iw = ow * w.sw - w.pw + j * w.dw;
                            if (iw < 0 || iw >= w.W) continue;
                            int64_t xi = (p * w.H + ih) * w.W + iw;
                            if (pass == 0) {
                                if (is_max) {
                                    double x = ld(in[1], tx, xi);
                                    if (x > best_v || best < 0) best_v = x, best = xi;
                                }
                                cnt++;
                            } else if (!is_max) {
                                acc[xi] += dy / (double)cnt;
                            }
                        }
                    }
                    if (pass == 0) {
                        if (is_max) {
                            if (best >= 0) acc[best] += dy;
                            break;
                        }
                        if (include_pad) {
                            int64_t h0 = oh * w.sh - w.ph, w0 = ow * w.sw - w.pw;
                            int64_t h1 = h0 + (w.kh - 1) * w.dh + 1, w1 = w0 + (w.kw - 1) * w.dw + 1;
                            if (h1 > w.H + w.ph_end) h1 = w.H + w.ph_end;
                            if (w1 > w.W + w.pw_end) w1 = w.W + w.pw_end;
                            cnt = ((h1 - h0 + w.dh - 1) / w.dh) * ((w1 - w0 + w.dw - 1) / w.dw);
                        }
                        if (cnt == 0) break;
                    }
                }
            }
    for (int64_t i = 0; i < total; i++) st(out[0], t, i, acc[i]);
    free(acc);
    return CT_OK;
}

/* ---------------------------------------------------------------- BatchNorm, training form */

/* Element (n, c, i) of (N, C, SP) data belongs to split n mod S (MoCo's
 * SplitBatchNorm views (N, C, ...) as (N/S, S*C, ...)); statistics index s*C + c. */
static ct_status eval_bn_train(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *xs = &n->in[0]->shape;
    ct_dtype t = n->out[0]->dtype;
    int64_t N = xs->dims[0], C = xs->dims[1], SP = 1, S = ct_node_attr_int(n, "splits", 1);
    for (int i = 2; i < xs->rank; i++) SP *= xs->dims[i];
    if (S < 1 || N % S) return FAIL("batch %lld not divisible by splits %lld", (long long)N, (long long)S);
    double eps = ct_node_attr_float(n, "epsilon", 1e-5f), mom = ct_node_attr_float(n, "momentum", 0.1f);
    int64_t m = (N / S) * SP;
    for (int64_t c = 0; c < C; c++) {
        double rm = ld(in[3], n->in[3]->dtype, c), rv = ld(in[4], n->in[4]->dtype, c), nrm = 0, nrv = 0;
        double scale = ld(in[1], n->in[1]->dtype, c), bias = ld(in[2], n->in[2]->dtype, c);
        for (int64_t s = 0; s < S; s++) {
            double sum = 0, ss = 0;
            for (int64_t b = s; b < N; b += S)
                for (int64_t i = 0; i < SP; i++) sum += ld(in[0], t, (b * C + c) * SP + i);
            double mean = sum / (double)m;
            for (int64_t b = s; b < N; b += S)
                for (int64_t i = 0; i < SP; i++) {
                    double d = ld(in[0], t, (b * C + c) * SP + i) - mean;
                    ss += d * d;
                }
            double var = ss / (double)m, invstd = 1.0 / sqrt(var + eps);
            for (int64_t b = s; b < N; b += S)
                for (int64_t i = 0; i < SP; i++) {
                    int64_t k = (b * C + c) * SP + i;
                    st(out[0], t, k, (ld(in[0], t, k) - mean) * invstd * scale + bias);
                }
            if (out[1]) st(out[1], n->out[1]->dtype, s * C + c, mean);
            if (out[2]) st(out[2], n->out[2]->dtype, s * C + c, invstd);
            double unbiased = m > 1 ? ss / (double)(m - 1) : var;
            nrm += (1 - mom) * rm + mom * mean;
            nrv += (1 - mom) * rv + mom * unbiased;
        }
        if (out[3]) st(out[3], n->out[3]->dtype, c, nrm / (double)S);
        if (out[4]) st(out[4], n->out[4]->dtype, c, nrv / (double)S);
    }
    return CT_OK;
}

/* BatchNormGrad(dY, X, scale, saved_mean, saved_invstd) -> dX, dscale, dB:
 * dX = scale invstd / m (m dY - sum dY - xhat sum(dY xhat)) per split and channel. */
static ct_status eval_bn_grad(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *xs = &n->in[1]->shape;
    ct_dtype td = n->in[0]->dtype, tx = n->in[1]->dtype, t = n->out[0]->dtype;
    int64_t N = xs->dims[0], C = xs->dims[1], SP = 1, S = ct_node_attr_int(n, "splits", 1);
    for (int i = 2; i < xs->rank; i++) SP *= xs->dims[i];
    if (S < 1 || N % S) return FAIL("batch not divisible by splits");
    double m = (double)((N / S) * SP);
    for (int64_t c = 0; c < C; c++) {
        double scale = ld(in[2], n->in[2]->dtype, c), dscale = 0, dbias = 0;
        for (int64_t s = 0; s < S; s++) {
            double mean = ld(in[3], n->in[3]->dtype, s * C + c), invstd = ld(in[4], n->in[4]->dtype, s * C + c);
            double sdy = 0, sdyx = 0;
            for (int64_t b = s; b < N; b += S)
                for (int64_t i = 0; i < SP; i++) {
                    int64_t k = (b * C + c) * SP + i;
                    double dy = ld(in[0], td, k);
                    sdy += dy;
                    sdyx += dy * (ld(in[1], tx, k) - mean) * invstd;
                }
            dscale += sdyx;
            dbias += sdy;
            if (out[0])
                for (int64_t b = s; b < N; b += S)
                    for (int64_t i = 0; i < SP; i++) {
                        int64_t k = (b * C + c) * SP + i;
                        double xhat = (ld(in[1], tx, k) - mean) * invstd;
                        st(out[0], t, k, scale * invstd / m * (m * ld(in[0], td, k) - sdy - xhat * sdyx));
                    }
        }
        if (out[1]) st(out[1], n->out[1]->dtype, c, dscale);
        if (out[2]) st(out[2], n->out[2]->dtype, c, dbias);
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- softmax cross-entropy */

static ct_status read_label(const ct_node *n, const void *p, ct_dtype t, int64_t i, int64_t C, int64_t *y)
{
    *y = t == CT_I64 ? ((const int64_t *)p)[i] : ((const int32_t *)p)[i];
    if (*y < 0 || *y >= C)
        return FAIL("label %lld of sample %lld is out of range [0, %lld)", (long long)*y, (long long)i, (long long)C);
    return CT_OK;
}

static ct_status eval_sce(const ct_node *n, const void *const *in, void *const *out)
{
    int64_t N = n->in[0]->shape.dims[0], C = n->in[0]->shape.dims[1];
    ct_dtype t = n->in[0]->dtype;
    double loss = 0;
    for (int64_t b = 0; b < N; b++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < C; j++) mx = fmax(mx, ld(in[0], t, b * C + j));
        for (int64_t j = 0; j < C; j++) sum += exp(ld(in[0], t, b * C + j) - mx);
        double lse = mx + log(sum);
        int64_t y;
        CT_TRY(read_label(n, in[1], n->in[1]->dtype, b, C, &y));
        for (int64_t j = 0; j < C; j++) {
            double lp = ld(in[0], t, b * C + j) - lse;
            if (out[1]) st(out[1], n->out[1]->dtype, b * C + j, lp);
            if (j == y) loss -= lp;
        }
    }
    st(out[0], n->out[0]->dtype, 0, N ? loss / (double)N : 0);
    return CT_OK;
}

static ct_status eval_sce_grad(const ct_node *n, const void *const *in, void *const *out)
{
    int64_t N = n->in[1]->shape.dims[0], C = n->in[1]->shape.dims[1];
    double g = ld(in[0], n->in[0]->dtype, 0) / (double)(N ? N : 1);
    for (int64_t b = 0; b < N; b++) {
        int64_t y;
        CT_TRY(read_label(n, in[2], n->in[2]->dtype, b, C, &y));
        for (int64_t j = 0; j < C; j++) {
            double p = exp(ld(in[1], n->in[1]->dtype, b * C + j));
            st(out[0], n->out[0]->dtype, b * C + j, g * (p - (j == y ? 1.0 : 0.0)));
        }
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- dispatch */

ct_status ct_eval_train_node(const ct_node *n, const void *const *in, void *const *out)
{
    if (ct_eval_optim_supports(n)) return ct_eval_optim_node(n, in, out);
    if (!ct_eval_train_supports(n)) return FAIL("not supported by the reference interpreter");
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && !in[i] && numel(n->in[i]) > 0) return FAIL("input %d has no data", i);
    switch (n->op) {
    case CT_OP_STOP_GRADIENT:
        memcpy(out[0], in[0], ct_value_nbytes(n->out[0]));
        return CT_OK;
    case CT_OP_RELU_GRAD: case CT_OP_SIGMOID_GRAD: case CT_OP_TANH_GRAD: case CT_OP_HARD_SIGMOID_GRAD:
    case CT_OP_HARD_SWISH_GRAD: case CT_OP_LEAKY_RELU_GRAD: case CT_OP_ABS_GRAD: case CT_OP_CLIP_GRAD:
        return eval_unary_grad(n, in, out);
    case CT_OP_SOFTMAX_GRAD: case CT_OP_LOG_SOFTMAX_GRAD: return eval_softmax_grad(n, in, out);
    case CT_OP_CONV_GRAD_INPUT: case CT_OP_CONV_GRAD_WEIGHT: return eval_conv_grad(n, in, out);
    case CT_OP_MAX_POOL_GRAD: case CT_OP_AVERAGE_POOL_GRAD: return eval_pool_grad(n, in, out);
    case CT_OP_BATCH_NORM_TRAIN: return eval_bn_train(n, in, out);
    case CT_OP_BATCH_NORM_GRAD: return eval_bn_grad(n, in, out);
    case CT_OP_SOFTMAX_CROSS_ENTROPY: return eval_sce(n, in, out);
    case CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD: return eval_sce_grad(n, in, out);
    default: break;
    }
    return FAIL("not supported by the reference interpreter");
}

/* shape_infer.c — shape and type inference for every op of ir/ops.def,
 * following the ONNX operator specs (opset 13-21 forms; older forms are
 * normalised by the importer).  Each function sets dtype and shape of the
 * node's outputs; errors read "node 'NAME' (Op): what is wrong (shapes)". */
#include "passes.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

/* Every inference function named in ops.def (also declared by pass_manager.c
 * from the same expansion, so the two cannot disagree). */
#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    ct_status infer(ct_graph *g, ct_node *n);
#include "ops.def"
#undef CT_OP

#define BATCH CT_DIM_BATCH
#define SHAPE_STR(s) ct_shape_str((s), (char[128]){0}, 128)

/* ---------------------------------------------------------------- helpers */


static ct_status batch_err(const ct_node *n, const char *what)
{
    return ct_node_errorf(n, "%s depends on the symbolic batch dimension; compile with a fixed batch (contra --batch N)",
                    what);
}

/* True while some graph input still has the symbolic batch dimension. */
static bool graph_has_symbolic_batch(const ct_graph *g)
{
    for (int i = 0; i < g->n_inputs; i++)
        for (int d = 0; d < g->inputs[i]->shape.rank; d++)
            if (g->inputs[i]->shape.dims[d] == BATCH) return true;
    return false;
}

static void set_out(ct_node *n, int i, ct_dtype t, const ct_shape *s)
{
    if (i >= n->n_out || !n->out[i]) return;
    n->out[i]->dtype = t;
    n->out[i]->shape = *s;
    n->out[i]->shape_known = true;
}

static const ct_shape *in_shape(const ct_node *n, int i) { return &n->in[i]->shape; }
static ct_dtype in_dtype(const ct_node *n, int i) { return n->in[i]->dtype; }
static bool has_in(const ct_node *n, int i) { return i < n->n_in && n->in[i]; }

/* Normalise axis a against rank r (valid range [-r, r-1]). */
static ct_status norm_axis(const ct_node *n, int64_t a, int r, const char *what, int *out)
{
    if (a < -r || a >= r)
        return ct_node_errorf(n, "%s %" PRId64 " is out of range for rank %d (valid: %d..%d)", what, a, r, -r, r - 1);
    *out = (int)(a < 0 ? a + r : a);
    return CT_OK;
}

static bool mul_ok(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0) return false;
    if (a != 0 && b > INT64_MAX / a) return false;
    *out = a * b;
    return true;
}

/* Product of dims[from..to): static product, or BATCH when exactly one dim is
 * the batch and the rest multiply to 1. Returns false if not representable
 * (batch times something else) or on overflow (*overflow set). */
static bool dims_product(const int64_t *dims, int from, int to, int64_t *out, bool *overflow)
{
    int64_t p = 1;
    int nb = 0;
    *overflow = false;
    for (int i = from; i < to; i++) {
        if (dims[i] == BATCH) {
            nb++;
            continue;
        }
        if (!mul_ok(p, dims[i], &p)) {
            *overflow = true;
            return false;
        }
    }
    if (nb == 0) {
        *out = p;
        return true;
    }
    if (nb == 1 && p == 1) {
        *out = BATCH;
        return true;
    }
    return false;
}

/* Read a constant integer input (int64/int32, rank 0 or 1): shapes, axes, pads... */
static ct_status const_ints(const ct_graph *g, const ct_node *n, int idx, const char *what, int64_t *vals,
                            int max, int *count)
{
    const ct_value *v = n->in[idx];
    if (v->kind != CT_VALUE_CONST || !v->data)
        return ct_node_errorf(n, "input %d '%s' (%s) must be a constant (after folding), but it is computed at run time%s",
                        idx, v->name, what,
                        graph_has_symbolic_batch(g)
                            ? "; shape computations on a symbolic batch cannot be folded: compile with a "
                              "fixed batch (contra --batch N)"
                            : "");
    if (v->dtype != CT_I64 && v->dtype != CT_I32)
        return ct_node_errorf(n, "input %d '%s' (%s) must be int64 or int32, not %s", idx, v->name, what,
                        ct_dtype_name(v->dtype));
    if (v->shape.rank > 1)
        return ct_node_errorf(n, "input %d '%s' (%s) must be a 1-D tensor, has shape %s", idx, v->name, what,
                        SHAPE_STR(&v->shape));
    int64_t k = ct_shape_numel(&v->shape);
    if (k < 0 || k > max)
        return ct_node_errorf(n, "input %d '%s' (%s) has %" PRId64 " elements, at most %d supported", idx, v->name, what,
                        k, max);
    for (int64_t i = 0; i < k; i++)
        vals[i] = v->dtype == CT_I64 ? ((const int64_t *)v->data)[i] : ((const int32_t *)v->data)[i];
    *count = (int)k;
    return CT_OK;
}

/* A constant scalar (rank 0 or one element) of any numeric dtype, as double. */
static ct_status const_scalar(const ct_graph *g, const ct_node *n, int idx, const char *what, double *out)
{
    const ct_value *v = n->in[idx];
    if (v->kind != CT_VALUE_CONST || !v->data)
        return ct_node_errorf(n, "input %d '%s' (%s) must be a constant (after folding), but it is computed at run time%s",
                        idx, v->name, what,
                        graph_has_symbolic_batch(g) ? "; compile with a fixed batch (contra --batch N)" : "");
    if (ct_shape_numel(&v->shape) != 1)
        return ct_node_errorf(n, "input %d '%s' (%s) must be a scalar, has shape %s", idx, v->name, what,
                        SHAPE_STR(&v->shape));
    switch (v->dtype) {
    case CT_F32: *out = ((const float *)v->data)[0]; break;
    case CT_F64: *out = ((const double *)v->data)[0]; break;
    case CT_I64: *out = (double)((const int64_t *)v->data)[0]; break;
    case CT_I32: *out = ((const int32_t *)v->data)[0]; break;
    case CT_I8: *out = ((const int8_t *)v->data)[0]; break;
    case CT_U8: *out = ((const uint8_t *)v->data)[0]; break;
    default:
        return ct_node_errorf(n, "input %d '%s' (%s) has unsupported dtype %s", idx, v->name, what,
                        ct_dtype_name(v->dtype));
    }
    return CT_OK;
}

/* Axes from the input at idx (opset 13+/18+ form) or the 'axes' attribute (older form). */
static ct_status read_axes(const ct_graph *g, const ct_node *n, int idx, int64_t *axes, int *count, bool *given)
{
    *count = 0;
    *given = false;
    if (has_in(n, idx)) {
        *given = true;
        return const_ints(g, n, idx, "axes", axes, CT_MAX_RANK, count);
    }
    int k;
    const int64_t *a = ct_node_attr_ints(n, "axes", &k);
    if (a) {
        if (k > CT_MAX_RANK) return ct_node_errorf(n, "has %d axes, at most %d supported", k, CT_MAX_RANK);
        memcpy(axes, a, sizeof(int64_t) * (size_t)k);
        *count = k;
        *given = true;
    }
    return CT_OK;
}

/* Broadcast one dim pair (numpy rules, with the symbolic batch). */
static bool bcast_dim(int64_t a, int64_t b, int64_t *out)
{
    if (a == b) *out = a;
    else if (a == 1) *out = b;
    else if (b == 1) *out = a;
    else if (a == BATCH) *out = b; /* valid only when the batch equals b: ONNX infers b */
    else if (b == BATCH) *out = a;
    else return false;
    return true;
}

static ct_status bcast_shapes(const ct_node *n, const ct_shape *a, const ct_shape *b, ct_shape *out)
{
    ct_shape r = {.rank = a->rank > b->rank ? a->rank : b->rank};
    for (int i = 0; i < r.rank; i++) {
        int ia = i - (r.rank - a->rank), ib = i - (r.rank - b->rank);
        int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
        if (!bcast_dim(da, db, &r.dims[i])) {
            ct_shape sa = {.rank = 1, .dims = {da}}, sb = {.rank = 1, .dims = {db}};
            return ct_node_errorf(n, "shapes %s and %s cannot be broadcast (dimension %d: %s vs %s)", SHAPE_STR(a),
                            SHAPE_STR(b), i, SHAPE_STR(&sa), SHAPE_STR(&sb));
        }
    }
    *out = r;
    return CT_OK;
}

static ct_status same_dtype(const ct_node *n, int i, int j)
{
    if (in_dtype(n, i) != in_dtype(n, j))
        return ct_node_errorf(n, "inputs '%s' (%s) and '%s' (%s) must have the same dtype", n->in[i]->name,
                        ct_dtype_name(in_dtype(n, i)), n->in[j]->name, ct_dtype_name(in_dtype(n, j)));
    return CT_OK;
}

/* ---------------------------------------------------------------- elementwise */

ct_status ct_infer_unary(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *s = in_shape(n, 0);
    ct_dtype t = in_dtype(n, 0);
    if (n->op == CT_OP_NOT && t != CT_BOOL)
        return ct_node_errorf(n, "input '%s' must be bool, not %s", n->in[0]->name, ct_dtype_name(t));
    if (n->op == CT_OP_SOFTMAX || n->op == CT_OP_LOG_SOFTMAX) {
        int ax = 0;
        CT_TRY(norm_axis(n, ct_node_attr_int(n, "axis", -1), s->rank ? s->rank : 1, "axis", &ax));
    }
    if (n->op == CT_OP_CLIP) {
        for (int i = 1; i < n->n_in; i++) {
            if (!n->in[i]) continue;
            if (ct_shape_numel(&n->in[i]->shape) != 1)
                return ct_node_errorf(n, "%s '%s' must be a scalar, has shape %s", i == 1 ? "min" : "max", n->in[i]->name,
                                SHAPE_STR(&n->in[i]->shape));
            CT_TRY(same_dtype(n, 0, i));
        }
    }
    set_out(n, 0, t, s);
    return CT_OK;
}

ct_status ct_infer_dropout(ct_graph *g, ct_node *n)
{
    (void)g;
    if (has_in(n, 1) && ct_shape_numel(&n->in[1]->shape) != 1)
        return ct_node_errorf(n, "ratio '%s' must be a scalar, has shape %s", n->in[1]->name, SHAPE_STR(in_shape(n, 1)));
    if (has_in(n, 2) && (in_dtype(n, 2) != CT_BOOL || ct_shape_numel(&n->in[2]->shape) != 1))
        return ct_node_errorf(n, "training_mode '%s' must be a bool scalar, is %s %s", n->in[2]->name,
                        ct_dtype_name(in_dtype(n, 2)), SHAPE_STR(in_shape(n, 2)));
    set_out(n, 0, in_dtype(n, 0), in_shape(n, 0));
    set_out(n, 1, CT_BOOL, in_shape(n, 0));
    return CT_OK;
}

ct_status ct_infer_cast(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_attr *a = ct_node_attr(n, "to");
    if (!a || a->type != CT_ATTR_INT) return ct_node_errorf(n, "lacks the 'to' attribute");
    ct_dtype t = ct_dtype_from_onnx((int)a->i);
    if (t == CT_DTYPE_UNDEFINED) return ct_node_errorf(n, "casts to ONNX type %" PRId64 ", which contra does not support", a->i);
    set_out(n, 0, t, in_shape(n, 0));
    return CT_OK;
}

static ct_status broadcast_all(ct_node *n, ct_shape *out)
{
    ct_shape s = *in_shape(n, 0);
    for (int i = 1; i < n->n_in; i++) {
        if (!n->in[i]) continue;
        ct_shape r;
        CT_TRY(bcast_shapes(n, &s, in_shape(n, i), &r));
        s = r;
    }
    *out = s;
    return CT_OK;
}

ct_status ct_infer_broadcast(ct_graph *g, ct_node *n)
{
    (void)g;
    for (int i = 1; i < n->n_in; i++) {
        if (!n->in[i]) return ct_node_errorf(n, "input %d is missing", i);
        if (n->op != CT_OP_POW) CT_TRY(same_dtype(n, 0, i));
    }
    if (n->op == CT_OP_POW && !ct_dtype_is_float(in_dtype(n, 0)) && in_dtype(n, 0) != CT_I64 &&
        in_dtype(n, 0) != CT_I32)
        return ct_node_errorf(n, "base '%s' has unsupported dtype %s", n->in[0]->name, ct_dtype_name(in_dtype(n, 0)));
    ct_shape s;
    CT_TRY(broadcast_all(n, &s));
    set_out(n, 0, in_dtype(n, 0), &s);
    return CT_OK;
}

ct_status ct_infer_compare(ct_graph *g, ct_node *n)
{
    (void)g;
    CT_TRY(same_dtype(n, 0, 1));
    if ((n->op == CT_OP_AND || n->op == CT_OP_OR) && in_dtype(n, 0) != CT_BOOL)
        return ct_node_errorf(n, "inputs must be bool, not %s", ct_dtype_name(in_dtype(n, 0)));
    ct_shape s;
    CT_TRY(broadcast_all(n, &s));
    set_out(n, 0, CT_BOOL, &s);
    return CT_OK;
}

ct_status ct_infer_where(ct_graph *g, ct_node *n)
{
    (void)g;
    if (in_dtype(n, 0) != CT_BOOL)
        return ct_node_errorf(n, "condition '%s' must be bool, not %s", n->in[0]->name, ct_dtype_name(in_dtype(n, 0)));
    CT_TRY(same_dtype(n, 1, 2));
    ct_shape s;
    CT_TRY(broadcast_all(n, &s));
    set_out(n, 0, in_dtype(n, 1), &s);
    return CT_OK;
}

/* ---------------------------------------------------------------- conv and pooling */

/* Reads an INTS attribute of length want (or absent: dflt for every entry). */
static ct_status attr_ints_len(const ct_node *n, const char *name, int want, int64_t dflt, int64_t *out)
{
    int k;
    const int64_t *a = ct_node_attr_ints(n, name, &k);
    if (!a) {
        for (int i = 0; i < want; i++) out[i] = dflt;
        return CT_OK;
    }
    if (k != want) return ct_node_errorf(n, "attribute '%s' has %d values, expected %d", name, k, want);
    memcpy(out, a, sizeof(int64_t) * (size_t)want);
    return CT_OK;
}

/* Output spatial dims shared by Conv and the pools.  x: input spatial dims,
 * k: kernel, nsp: spatial rank. */
static ct_status window_out(const ct_node *n, const ct_shape *xs, const int64_t *k, int nsp, bool ceil_mode,
                            bool last_window_rule, int64_t *out)
{
    int64_t strides[CT_MAX_RANK], dil[CT_MAX_RANK], pads[2 * CT_MAX_RANK];
    CT_TRY(attr_ints_len(n, "strides", nsp, 1, strides));
    CT_TRY(attr_ints_len(n, "dilations", nsp, 1, dil));
    const char *auto_pad = ct_node_attr_string(n, "auto_pad", "NOTSET");
    bool explicit_pads = !strcmp(auto_pad, "NOTSET");
    if (!explicit_pads && strcmp(auto_pad, "SAME_UPPER") && strcmp(auto_pad, "SAME_LOWER") &&
        strcmp(auto_pad, "VALID"))
        return ct_node_errorf(n, "auto_pad '%s' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID", auto_pad);
    if (explicit_pads) CT_TRY(attr_ints_len(n, "pads", 2 * nsp, 0, pads));
    else if (ct_node_attr(n, "pads")) {
        int cnt;
        const int64_t *p = ct_node_attr_ints(n, "pads", &cnt);
        for (int i = 0; i < cnt; i++)
            if (p[i] != 0) return ct_node_errorf(n, "has both auto_pad '%s' and non-zero pads", auto_pad);
    }
    for (int i = 0; i < nsp; i++) {
        if (strides[i] < 1) return ct_node_errorf(n, "stride %" PRId64 " on spatial axis %d must be positive", strides[i], i);
        if (dil[i] < 1) return ct_node_errorf(n, "dilation %" PRId64 " on spatial axis %d must be positive", dil[i], i);
        if (k[i] < 1) return ct_node_errorf(n, "kernel size %" PRId64 " on spatial axis %d must be positive", k[i], i);
        if (explicit_pads && (pads[i] < 0 || pads[i + nsp] < 0))
            return ct_node_errorf(n, "pads on spatial axis %d are negative", i);
    }
    for (int i = 0; i < nsp; i++) {
        int64_t in = xs->dims[2 + i];
        if (in == BATCH) return batch_err(n, "a spatial dimension");
        /* 128-bit arithmetic: attributes come from the file and may be huge. */
        __int128 ek = (__int128)(k[i] - 1) * dil[i] + 1; /* effective kernel */
        __int128 o, s = strides[i];
        if (!strcmp(auto_pad, "SAME_UPPER") || !strcmp(auto_pad, "SAME_LOWER")) {
            o = (in + s - 1) / s;
        } else if (!strcmp(auto_pad, "VALID")) {
            if (in < ek) goto too_small;
            o = (in - ek) / s + 1;
        } else {
            __int128 total = (__int128)in + pads[i] + pads[i + nsp];
            if (total < ek) goto too_small;
            if (ceil_mode) {
                o = (total - ek + s - 1) / s + 1;
                /* The last window must start inside the input plus the left padding. */
                if (last_window_rule && (o - 1) * s >= (__int128)in + pads[i]) o--;
            } else {
                o = (total - ek) / s + 1;
            }
        }
        if (o < 1) goto too_small;
        if (o > INT64_MAX) return ct_node_errorf(n, "output size on spatial axis %d overflows", i);
        out[i] = (int64_t)o;
        continue;
    too_small:
        return ct_node_errorf(n, "input %s is too small for kernel %" PRId64 " (dilation %" PRId64 ") on spatial axis %d",
                        SHAPE_STR(xs), k[i], dil[i], i);
    }
    return CT_OK;
}

ct_status ct_infer_conv(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0), *ws = in_shape(n, 1);
    if (xs->rank < 3) return ct_node_errorf(n, "input X %s must have rank >= 3 (N, C, spatial...)", SHAPE_STR(xs));
    if (ws->rank != xs->rank)
        return ct_node_errorf(n, "weight %s must have the rank of input X %s", SHAPE_STR(ws), SHAPE_STR(xs));
    CT_TRY(same_dtype(n, 0, 1));
    int nsp = xs->rank - 2;
    int64_t group = ct_node_attr_int(n, "group", 1);
    if (group < 1) return ct_node_errorf(n, "group %" PRId64 " must be positive", group);
    for (int i = 1; i < ws->rank; i++)
        if (ws->dims[i] == BATCH || (i == 1 && xs->dims[1] == BATCH)) return batch_err(n, "the channel count");
    if (ws->dims[0] == BATCH) return batch_err(n, "the output channel count");
    int64_t c = xs->dims[1], m = ws->dims[0], expect;
    if (!mul_ok(ws->dims[1], group, &expect) || expect != c)
        return ct_node_errorf(n, "input X %s has %" PRId64 " channels, but weight %s with group %" PRId64
                        " expects %" PRId64 " x %" PRId64,
                        SHAPE_STR(xs), c, SHAPE_STR(ws), group, ws->dims[1], group);
    if (m % group != 0)
        return ct_node_errorf(n, "output channels %" PRId64 " of weight %s are not divisible by group %" PRId64, m,
                        SHAPE_STR(ws), group);
    int64_t k[CT_MAX_RANK];
    int kc;
    const int64_t *ka = ct_node_attr_ints(n, "kernel_shape", &kc);
    if (ka) {
        if (kc != nsp) return ct_node_errorf(n, "kernel_shape has %d values, expected %d", kc, nsp);
        for (int i = 0; i < nsp; i++)
            if (ka[i] != ws->dims[2 + i])
                return ct_node_errorf(n, "kernel_shape does not match weight %s", SHAPE_STR(ws));
    }
    for (int i = 0; i < nsp; i++) k[i] = ws->dims[2 + i];
    if (has_in(n, 2)) {
        const ct_shape *bs = in_shape(n, 2);
        if (bs->rank != 1 || bs->dims[0] != m)
            return ct_node_errorf(n, "bias %s must have shape [%" PRId64 "] (output channels of weight %s)", SHAPE_STR(bs),
                            m, SHAPE_STR(ws));
        CT_TRY(same_dtype(n, 0, 2));
    }
    ct_shape out = {.rank = xs->rank};
    out.dims[0] = xs->dims[0];
    out.dims[1] = m;
    CT_TRY(window_out(n, xs, k, nsp, false, false, out.dims + 2));
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_pool(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    if (xs->rank < 3) return ct_node_errorf(n, "input X %s must have rank >= 3 (N, C, spatial...)", SHAPE_STR(xs));
    int nsp = xs->rank - 2;
    int kc;
    const int64_t *ka = ct_node_attr_ints(n, "kernel_shape", &kc);
    if (!ka) return ct_node_errorf(n, "lacks the 'kernel_shape' attribute");
    if (kc != nsp) return ct_node_errorf(n, "kernel_shape has %d values, input X %s has %d spatial axes", kc, SHAPE_STR(xs), nsp);
    if (n->op == CT_OP_MAX_POOL && ct_node_attr_int(n, "storage_order", 0) != 0 && n->n_out > 1 && n->out[1])
        return ct_node_errorf(n, "storage_order=1 (column-major indices) is not supported");
    bool ceil_mode = ct_node_attr_int(n, "ceil_mode", 0) != 0;
    ct_shape out = {.rank = xs->rank};
    out.dims[0] = xs->dims[0];
    out.dims[1] = xs->dims[1];
    CT_TRY(window_out(n, xs, ka, nsp, ceil_mode, true, out.dims + 2));
    set_out(n, 0, in_dtype(n, 0), &out);
    set_out(n, 1, CT_I64, &out);
    return CT_OK;
}

ct_status ct_infer_global_pool(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    if (xs->rank < 3) return ct_node_errorf(n, "input X %s must have rank >= 3 (N, C, spatial...)", SHAPE_STR(xs));
    ct_shape out = *xs;
    for (int i = 2; i < out.rank; i++) out.dims[i] = 1;
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_batch_norm(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    if (xs->rank < 2) return ct_node_errorf(n, "input X %s must have rank >= 2 (N, C, ...)", SHAPE_STR(xs));
    int64_t c = xs->dims[1];
    if (c == BATCH) return batch_err(n, "the channel count");
    static const char *names[] = {"X", "scale", "B", "input_mean", "input_var"};
    for (int i = 1; i < 5; i++) {
        const ct_shape *s = in_shape(n, i);
        if (s->rank != 1 || s->dims[0] != c)
            return ct_node_errorf(n, "%s '%s' has shape %s, expected [%" PRId64 "] (channels of X %s)", names[i],
                            n->in[i]->name, SHAPE_STR(s), c, SHAPE_STR(xs));
        if (!ct_dtype_is_float(in_dtype(n, i)))
            return ct_node_errorf(n, "%s '%s' must be floating point, not %s", names[i], n->in[i]->name,
                            ct_dtype_name(in_dtype(n, i)));
    }
    if (!ct_dtype_is_float(in_dtype(n, 0)))
        return ct_node_errorf(n, "input X must be floating point, not %s", ct_dtype_name(in_dtype(n, 0)));
    if (n->n_out > 1 && ct_node_attr_int(n, "training_mode", 0) == 0 &&
        ((n->out[1] != NULL) || (n->n_out > 2 && n->out[2] != NULL)))
        return ct_node_errorf(n, "has running mean/var outputs but training_mode is 0");
    set_out(n, 0, in_dtype(n, 0), xs);
    ct_shape cs = {.rank = 1, .dims = {c}};
    set_out(n, 1, in_dtype(n, 3), &cs);
    set_out(n, 2, in_dtype(n, 4), &cs);
    return CT_OK;
}

/* ---------------------------------------------------------------- linear algebra */

ct_status ct_infer_gemm(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *as = in_shape(n, 0), *bs = in_shape(n, 1);
    if (as->rank != 2 || bs->rank != 2)
        return ct_node_errorf(n, "A %s and B %s must be 2-D", SHAPE_STR(as), SHAPE_STR(bs));
    CT_TRY(same_dtype(n, 0, 1));
    bool ta = ct_node_attr_int(n, "transA", 0) != 0, tb = ct_node_attr_int(n, "transB", 0) != 0;
    int64_t m = ta ? as->dims[1] : as->dims[0], ka = ta ? as->dims[0] : as->dims[1];
    int64_t kb = tb ? bs->dims[1] : bs->dims[0], nn = tb ? bs->dims[0] : bs->dims[1];
    if (ka == BATCH || kb == BATCH) return batch_err(n, "the inner dimension");
    if (ka != kb)
        return ct_node_errorf(n, "inner dimensions differ: A %s%s and B %s%s (%" PRId64 " vs %" PRId64 ")", SHAPE_STR(as),
                        ta ? " (transposed)" : "", SHAPE_STR(bs), tb ? " (transposed)" : "", ka, kb);
    ct_shape out = {.rank = 2, .dims = {m, nn}};
    if (has_in(n, 2)) {
        /* C broadcasts unidirectionally to (M, N). */
        const ct_shape *cs = in_shape(n, 2);
        CT_TRY(same_dtype(n, 0, 2));
        if (cs->rank > 2) return ct_node_errorf(n, "bias C %s has rank > 2", SHAPE_STR(cs));
        for (int i = 0; i < cs->rank; i++) {
            int64_t d = cs->dims[i], o = out.dims[2 - cs->rank + i];
            if (d != 1 && d != o)
                return ct_node_errorf(n, "bias C %s cannot be broadcast to the output %s", SHAPE_STR(cs), SHAPE_STR(&out));
        }
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_matmul(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *as = in_shape(n, 0), *bs = in_shape(n, 1);
    CT_TRY(same_dtype(n, 0, 1));
    if (as->rank == 0 || bs->rank == 0)
        return ct_node_errorf(n, "operands %s and %s must have rank >= 1", SHAPE_STR(as), SHAPE_STR(bs));
    /* 1-D operands are promoted (A: prepend 1, B: append 1) and the axis removed after. */
    ct_shape a = *as, b = *bs;
    if (a.rank == 1) {
        a.rank = 2;
        a.dims[1] = as->dims[0];
        a.dims[0] = 1;
    }
    if (b.rank == 1) {
        b.rank = 2;
        b.dims[1] = 1;
    }
    int64_t ka = a.dims[a.rank - 1], kb = b.dims[b.rank - 2];
    if (ka == BATCH || kb == BATCH) {
        if (ka != kb) return batch_err(n, "the inner dimension");
    } else if (ka != kb) {
        return ct_node_errorf(n, "inner dimensions differ: %s x %s (%" PRId64 " vs %" PRId64 ")", SHAPE_STR(as),
                        SHAPE_STR(bs), ka, kb);
    }
    ct_shape ba = {.rank = a.rank - 2}, bb = {.rank = b.rank - 2}, batch;
    memcpy(ba.dims, a.dims, sizeof(int64_t) * (size_t)ba.rank);
    memcpy(bb.dims, b.dims, sizeof(int64_t) * (size_t)bb.rank);
    CT_TRY(bcast_shapes(n, &ba, &bb, &batch));
    ct_shape out = batch;
    if (as->rank != 1) out.dims[out.rank++] = a.dims[a.rank - 2];
    if (bs->rank != 1) out.dims[out.rank++] = b.dims[b.rank - 1];
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

/* ---------------------------------------------------------------- reductions */

ct_status ct_infer_reduce(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int64_t axes[CT_MAX_RANK];
    int na;
    bool given;
    CT_TRY(read_axes(g, n, 1, axes, &na, &given));
    bool keep = ct_node_attr_int(n, "keepdims", 1) != 0;
    bool noop = ct_node_attr_int(n, "noop_with_empty_axes", 0) != 0;
    bool red[CT_MAX_RANK] = {false};
    if (na == 0) {
        if (noop) {
            set_out(n, 0, in_dtype(n, 0), xs);
            return CT_OK;
        }
        for (int i = 0; i < xs->rank; i++) red[i] = true;
    }
    for (int i = 0; i < na; i++) {
        int ax = 0;
        CT_TRY(norm_axis(n, axes[i], xs->rank, "axis", &ax));
        if (red[ax]) return ct_node_errorf(n, "axis %" PRId64 " is repeated", axes[i]);
        red[ax] = true;
    }
    ct_shape out = {.rank = 0};
    for (int i = 0; i < xs->rank; i++) {
        if (!red[i]) out.dims[out.rank++] = xs->dims[i];
        else if (keep) out.dims[out.rank++] = 1;
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_argmax(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    int ax = 0;
    CT_TRY(norm_axis(n, ct_node_attr_int(n, "axis", 0), xs->rank, "axis", &ax));
    bool keep = ct_node_attr_int(n, "keepdims", 1) != 0;
    ct_shape out = {.rank = 0};
    for (int i = 0; i < xs->rank; i++) {
        if (i != ax) out.dims[out.rank++] = xs->dims[i];
        else if (keep) out.dims[out.rank++] = 1;
    }
    set_out(n, 0, CT_I64, &out);
    return CT_OK;
}

/* ---------------------------------------------------------------- data movement */

ct_status ct_infer_flatten(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    int64_t a = ct_node_attr_int(n, "axis", 1);
    if (a < -xs->rank || a > xs->rank)
        return ct_node_errorf(n, "axis %" PRId64 " is out of range for input %s", a, SHAPE_STR(xs));
    int ax = (int)(a < 0 ? a + xs->rank : a);
    ct_shape out = {.rank = 2};
    bool ovf;
    if (!dims_product(xs->dims, 0, ax, &out.dims[0], &ovf) || !dims_product(xs->dims, ax, xs->rank, &out.dims[1], &ovf)) {
        if (ovf) return ct_node_errorf(n, "flattening %s overflows", SHAPE_STR(xs));
        return batch_err(n, "flattening the batch together with other dimensions");
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_reshape(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int64_t sh[CT_MAX_RANK];
    int k;
    CT_TRY(const_ints(g, n, 1, "shape", sh, CT_MAX_RANK, &k));
    bool allowzero = ct_node_attr_int(n, "allowzero", 0) != 0;
    ct_shape out = {.rank = k};
    int neg = -1;
    for (int i = 0; i < k; i++) {
        int64_t d = sh[i];
        if (d == -1) {
            if (neg >= 0) return ct_node_errorf(n, "shape has more than one -1");
            neg = i;
            out.dims[i] = 1;
        } else if (d == 0 && !allowzero) {
            if (i >= xs->rank)
                return ct_node_errorf(n, "shape entry %d is 0 (copy) but input %s has rank %d", i, SHAPE_STR(xs), xs->rank);
            out.dims[i] = xs->dims[i];
        } else if (d < 0) {
            return ct_node_errorf(n, "shape entry %d is %" PRId64 ", which is invalid", i, d);
        } else {
            out.dims[i] = d;
        }
    }
    if (allowzero && neg >= 0)
        for (int i = 0; i < k; i++)
            if (sh[i] == 0) return ct_node_errorf(n, "with allowzero=1 the shape may not hold both 0 and -1");
    /* Element counts, with the batch factored out: input N^bi * pi, output N^bo * po. */
    int64_t pi = 1, po = 1;
    int bi = 0, bo = 0;
    for (int i = 0; i < xs->rank; i++) {
        if (xs->dims[i] == BATCH) bi++;
        else if (!mul_ok(pi, xs->dims[i], &pi)) return ct_node_errorf(n, "input %s overflows", SHAPE_STR(xs));
    }
    for (int i = 0; i < k; i++) {
        if (out.dims[i] == BATCH) bo++;
        else if (!mul_ok(po, out.dims[i], &po)) return ct_node_errorf(n, "output shape overflows");
    }
    char want[160];
    {
        int off = snprintf(want, sizeof want, "[");
        for (int i = 0; i < k && off < (int)sizeof want; i++)
            off += snprintf(want + off, sizeof want - (size_t)off, "%s%" PRId64, i ? "," : "", sh[i]);
        if (off < (int)sizeof want) snprintf(want + off, sizeof want - (size_t)off, "]");
    }
    if (neg >= 0) {
        if (bi == bo) {
            if (po == 0 || pi % po != 0)
                return ct_node_errorf(n, "cannot reshape %s to %s: %" PRId64 " elements do not divide into %" PRId64,
                                SHAPE_STR(xs), want, pi, po);
            out.dims[neg] = pi / po;
        } else if (bi == bo + 1 && po != 0 && pi == po) {
            out.dims[neg] = BATCH;
        } else if (bi > bo) {
            return batch_err(n, "reshaping to a shape that merges the batch with other dimensions");
        } else {
            return ct_node_errorf(n, "cannot reshape %s to %s", SHAPE_STR(xs), want);
        }
    } else {
        if (bi != bo) {
            if (bi > bo)
                return ct_node_errorf(n, "shape %s bakes in a fixed batch size, but input %s has a symbolic batch; "
                                "compile with a fixed batch (contra --batch N)", want, SHAPE_STR(xs));
            return ct_node_errorf(n, "cannot reshape %s to %s", SHAPE_STR(xs), want);
        }
        if (pi != po)
            return ct_node_errorf(n, "cannot reshape %s (%" PRId64 " elements) to %s (%" PRId64 " elements)%s",
                            SHAPE_STR(xs), pi, want, po,
                            ct_shape_is_static(xs) && g->batch > 0
                                ? "; the shape may bake in the batch size of the export: re-export with "
                                  "dynamic axes or compile with that batch"
                                : "");
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_transpose(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0);
    int k;
    const int64_t *perm = ct_node_attr_ints(n, "perm", &k);
    ct_shape out = {.rank = xs->rank};
    if (!perm) {
        for (int i = 0; i < xs->rank; i++) out.dims[i] = xs->dims[xs->rank - 1 - i];
    } else {
        if (k != xs->rank) return ct_node_errorf(n, "perm has %d entries, input %s has rank %d", k, SHAPE_STR(xs), xs->rank);
        bool seen[CT_MAX_RANK] = {false};
        for (int i = 0; i < k; i++) {
            if (perm[i] < 0 || perm[i] >= k || seen[perm[i]])
                return ct_node_errorf(n, "perm is not a permutation of 0..%d", k - 1);
            seen[perm[i]] = true;
            out.dims[i] = xs->dims[perm[i]];
        }
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_concat(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_attr *a = ct_node_attr(n, "axis");
    if (!a || a->type != CT_ATTR_INT) return ct_node_errorf(n, "lacks the 'axis' attribute");
    const ct_shape *s0 = in_shape(n, 0);
    int ax = 0;
    CT_TRY(norm_axis(n, a->i, s0->rank, "axis", &ax));
    ct_shape out = *s0;
    int nb = out.dims[ax] == BATCH ? 1 : 0;
    int64_t sum = nb ? 0 : out.dims[ax];
    for (int i = 1; i < n->n_in; i++) {
        if (!n->in[i]) return ct_node_errorf(n, "input %d is missing", i);
        const ct_shape *s = in_shape(n, i);
        CT_TRY(same_dtype(n, 0, i));
        if (s->rank != s0->rank)
            return ct_node_errorf(n, "input '%s' %s has a different rank than '%s' %s", n->in[i]->name, SHAPE_STR(s),
                            n->in[0]->name, SHAPE_STR(s0));
        for (int d = 0; d < s->rank; d++) {
            if (d == ax) continue;
            if (s->dims[d] != s0->dims[d]) {
                if (s->dims[d] == BATCH || s0->dims[d] == BATCH) return batch_err(n, "concatenating");
                return ct_node_errorf(n, "input '%s' %s does not match '%s' %s outside axis %d", n->in[i]->name, SHAPE_STR(s),
                                n->in[0]->name, SHAPE_STR(s0), ax);
            }
        }
        if (s->dims[ax] == BATCH) nb++;
        else if (sum > INT64_MAX - s->dims[ax]) return ct_node_errorf(n, "the concatenated axis overflows");
        else sum += s->dims[ax];
    }
    if (nb == 0) out.dims[ax] = sum;
    else if (nb == 1 && sum == 0) out.dims[ax] = BATCH;
    else return batch_err(n, "concatenating along the batch axis");
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_split(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int ax = 0;
    CT_TRY(norm_axis(n, ct_node_attr_int(n, "axis", 0), xs->rank, "axis", &ax));
    int64_t d = xs->dims[ax];
    int nout = n->n_out;
    int64_t *sizes = ct_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)(nout + 1));
    int k = 0;
    int ka;
    const int64_t *sa = ct_node_attr_ints(n, "split", &ka);
    if (has_in(n, 1)) {
        int64_t *buf = ct_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)(nout + 1));
        CT_TRY(const_ints(g, n, 1, "split", buf, nout, &k));
        memcpy(sizes, buf, sizeof(int64_t) * (size_t)k);
    } else if (sa) {
        if (ka > nout) return ct_node_errorf(n, "split has %d sizes but the node has %d outputs", ka, nout);
        memcpy(sizes, sa, sizeof(int64_t) * (size_t)ka);
        k = ka;
    }
    if (k == 0 && (has_in(n, 1) || sa)) return ct_node_errorf(n, "split sizes are empty");
    if (k > 0) {
        if (k != nout) return ct_node_errorf(n, "split has %d sizes but the node has %d outputs", k, nout);
        int64_t sum = 0;
        for (int i = 0; i < k; i++) {
            if (sizes[i] < 0) return ct_node_errorf(n, "split size %" PRId64 " is negative", sizes[i]);
            if (sum > INT64_MAX - sizes[i]) return ct_node_errorf(n, "split sizes overflow");
            sum += sizes[i];
        }
        if (d == BATCH) {
            if (k == 1) sizes[0] = BATCH;
            else return batch_err(n, "splitting the batch axis");
        } else if (sum != d) {
            return ct_node_errorf(n, "split sizes sum to %" PRId64 " but axis %d of input %s is %" PRId64, sum, ax,
                            SHAPE_STR(xs), d);
        }
    } else {
        if (d == BATCH) {
            if (nout != 1) return batch_err(n, "splitting the batch axis");
            sizes[0] = BATCH;
        } else {
            int64_t num = ct_node_attr_int(n, "num_outputs", 0);
            if (num > 0) {
                if (num != nout) return ct_node_errorf(n, "num_outputs is %" PRId64 " but the node has %d outputs", num, nout);
                int64_t chunk = (d + num - 1) / num;
                for (int i = 0; i < nout; i++) {
                    int64_t left = d - chunk * i;
                    sizes[i] = left < 0 ? 0 : (left < chunk ? left : chunk);
                }
            } else {
                if (d % nout != 0)
                    return ct_node_errorf(n, "axis %d of input %s (%" PRId64 ") does not split evenly into %d outputs", ax,
                                    SHAPE_STR(xs), d, nout);
                for (int i = 0; i < nout; i++) sizes[i] = d / nout;
            }
        }
    }
    for (int i = 0; i < nout; i++) {
        ct_shape o = *xs;
        o.dims[ax] = sizes[i];
        set_out(n, i, in_dtype(n, 0), &o);
    }
    return CT_OK;
}

ct_status ct_infer_slice(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int r = xs->rank;
    int64_t starts[CT_MAX_RANK], ends[CT_MAX_RANK], axes[CT_MAX_RANK], steps[CT_MAX_RANK];
    int ns = 0, ne = 0, na = 0, nst = 0;
    if (has_in(n, 1)) CT_TRY(const_ints(g, n, 1, "starts", starts, CT_MAX_RANK, &ns));
    else {
        int k;
        const int64_t *a = ct_node_attr_ints(n, "starts", &k);
        if (!a || k > CT_MAX_RANK) return ct_node_errorf(n, "lacks starts");
        memcpy(starts, a, sizeof(int64_t) * (size_t)k);
        ns = k;
    }
    if (has_in(n, 2)) CT_TRY(const_ints(g, n, 2, "ends", ends, CT_MAX_RANK, &ne));
    else {
        int k;
        const int64_t *a = ct_node_attr_ints(n, "ends", &k);
        if (!a || k > CT_MAX_RANK) return ct_node_errorf(n, "lacks ends");
        memcpy(ends, a, sizeof(int64_t) * (size_t)k);
        ne = k;
    }
    if (ns != ne) return ct_node_errorf(n, "starts has %d entries but ends has %d", ns, ne);
    bool given;
    CT_TRY(read_axes(g, n, 3, axes, &na, &given));
    if (!given) {
        for (int i = 0; i < ns; i++) axes[i] = i;
        na = ns;
    }
    if (na != ns) return ct_node_errorf(n, "axes has %d entries but starts has %d", na, ns);
    if (has_in(n, 4)) {
        CT_TRY(const_ints(g, n, 4, "steps", steps, CT_MAX_RANK, &nst));
        if (nst != ns) return ct_node_errorf(n, "steps has %d entries but starts has %d", nst, ns);
    } else {
        for (int i = 0; i < ns; i++) steps[i] = 1;
    }
    ct_shape out = *xs;
    bool seen[CT_MAX_RANK] = {false};
    for (int i = 0; i < ns; i++) {
        int ax = 0;
        CT_TRY(norm_axis(n, axes[i], r, "axis", &ax));
        if (seen[ax]) return ct_node_errorf(n, "axis %" PRId64 " is repeated", axes[i]);
        seen[ax] = true;
        int64_t d = xs->dims[ax], st = starts[i], en = ends[i], step = steps[i];
        if (step == 0) return ct_node_errorf(n, "step on axis %d is 0", ax);
        if (d == BATCH) {
            /* Only the full slice keeps the symbolic batch. */
            if (step == 1 && st == 0 && en >= INT32_MAX) continue;
            return batch_err(n, "slicing the batch axis");
        }
        if (st < 0) st += d;
        if (en < 0) en += d;
        int64_t len;
        if (step > 0) {
            st = st < 0 ? 0 : (st > d ? d : st);
            en = en < 0 ? 0 : (en > d ? d : en);
            len = en > st ? (en - st - 1) / step + 1 : 0;
        } else {
            st = st < 0 ? 0 : (st > d - 1 ? d - 1 : st);
            en = en < -1 ? -1 : (en > d - 1 ? d - 1 : en);
            /* -step could overflow for INT64_MIN; clamp it (the length is at most d). */
            int64_t ms = step == INT64_MIN ? INT64_MAX : -step;
            len = st > en ? (st - en - 1) / ms + 1 : 0;
        }
        out.dims[ax] = len;
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_squeeze(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int64_t axes[CT_MAX_RANK];
    int na;
    bool given;
    CT_TRY(read_axes(g, n, 1, axes, &na, &given));
    bool drop[CT_MAX_RANK] = {false};
    if (!given) {
        for (int i = 0; i < xs->rank; i++) {
            if (xs->dims[i] == BATCH) return batch_err(n, "squeezing without axes");
            drop[i] = xs->dims[i] == 1;
        }
    }
    for (int i = 0; i < na; i++) {
        int ax = 0;
        CT_TRY(norm_axis(n, axes[i], xs->rank, "axis", &ax));
        if (drop[ax]) return ct_node_errorf(n, "axis %" PRId64 " is repeated", axes[i]);
        if (xs->dims[ax] == BATCH) return batch_err(n, "squeezing the batch axis");
        if (xs->dims[ax] != 1)
            return ct_node_errorf(n, "cannot squeeze axis %d of input %s: its size is %" PRId64 ", not 1", ax,
                            SHAPE_STR(xs), xs->dims[ax]);
        drop[ax] = true;
    }
    ct_shape out = {.rank = 0};
    for (int i = 0; i < xs->rank; i++)
        if (!drop[i]) out.dims[out.rank++] = xs->dims[i];
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_unsqueeze(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int64_t axes[CT_MAX_RANK];
    int na;
    bool given;
    CT_TRY(read_axes(g, n, 1, axes, &na, &given));
    if (!given) return ct_node_errorf(n, "lacks axes");
    int r = xs->rank + na;
    if (r > CT_MAX_RANK) return ct_node_errorf(n, "the output would have rank %d (at most %d supported)", r, CT_MAX_RANK);
    bool ins[CT_MAX_RANK] = {false};
    for (int i = 0; i < na; i++) {
        int ax = 0;
        CT_TRY(norm_axis(n, axes[i], r, "axis", &ax));
        if (ins[ax]) return ct_node_errorf(n, "axis %" PRId64 " is repeated", axes[i]);
        ins[ax] = true;
    }
    ct_shape out = {.rank = r};
    for (int i = 0, j = 0; i < r; i++) out.dims[i] = ins[i] ? 1 : xs->dims[j++];
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_gather(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_shape *xs = in_shape(n, 0), *is = in_shape(n, 1);
    if (xs->rank == 0) return ct_node_errorf(n, "data must have rank >= 1");
    if (in_dtype(n, 1) != CT_I64 && in_dtype(n, 1) != CT_I32)
        return ct_node_errorf(n, "indices '%s' must be int64 or int32, not %s", n->in[1]->name, ct_dtype_name(in_dtype(n, 1)));
    int ax = 0;
    CT_TRY(norm_axis(n, ct_node_attr_int(n, "axis", 0), xs->rank, "axis", &ax));
    int r = xs->rank - 1 + is->rank;
    if (r > CT_MAX_RANK) return ct_node_errorf(n, "the output would have rank %d (at most %d supported)", r, CT_MAX_RANK);
    int64_t d = xs->dims[ax];
    const ct_value *iv = n->in[1];
    if (iv->kind == CT_VALUE_CONST && iv->data && d != BATCH) {
        int64_t cnt = ct_shape_numel(is);
        for (int64_t i = 0; i < cnt; i++) {
            int64_t k = iv->dtype == CT_I64 ? ((const int64_t *)iv->data)[i] : ((const int32_t *)iv->data)[i];
            if (k < -d || k >= d)
                return ct_node_errorf(n, "index %" PRId64 " is out of range for axis %d of data %s", k, ax, SHAPE_STR(xs));
        }
    }
    ct_shape out = {.rank = r};
    int j = 0;
    for (int i = 0; i < ax; i++) out.dims[j++] = xs->dims[i];
    for (int i = 0; i < is->rank; i++) out.dims[j++] = is->dims[i];
    for (int i = ax + 1; i < xs->rank; i++) out.dims[j++] = xs->dims[i];
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_shape(ct_graph *g, ct_node *n)
{
    (void)g;
    int r = in_shape(n, 0)->rank;
    int64_t st = ct_node_attr_int(n, "start", 0), en = ct_node_attr_int(n, "end", r);
    if (st < 0) st += r;
    if (en < 0) en += r;
    st = st < 0 ? 0 : (st > r ? r : st);
    en = en < 0 ? 0 : (en > r ? r : en);
    ct_shape out = {.rank = 1, .dims = {en > st ? en - st : 0}};
    set_out(n, 0, CT_I64, &out);
    return CT_OK;
}

ct_status ct_infer_size(ct_graph *g, ct_node *n)
{
    (void)g;
    ct_shape out = {.rank = 0};
    set_out(n, 0, CT_I64, &out);
    return CT_OK;
}

ct_status ct_infer_constant(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_attr *a = NULL;
    int found = 0;
    static const char *names[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const ct_attr *x = ct_node_attr(n, names[i]);
        if (x) {
            a = x;
            found++;
        }
    }
    if (found != 1) return ct_node_errorf(n, "must have exactly one value attribute (value, value_float, value_floats, value_int, value_ints), has %d", found);
    ct_shape s = {.rank = 0};
    switch (a->type) {
    case CT_ATTR_TENSOR:
        if (!a->t) return ct_node_errorf(n, "value tensor is missing");
        set_out(n, 0, a->t->dtype, &a->t->shape);
        return CT_OK;
    case CT_ATTR_FLOAT: set_out(n, 0, CT_F32, &s); return CT_OK;
    case CT_ATTR_INT: set_out(n, 0, CT_I64, &s); return CT_OK;
    case CT_ATTR_FLOATS:
        s = (ct_shape){.rank = 1, .dims = {a->n}};
        set_out(n, 0, CT_F32, &s);
        return CT_OK;
    case CT_ATTR_INTS:
        s = (ct_shape){.rank = 1, .dims = {a->n}};
        set_out(n, 0, CT_I64, &s);
        return CT_OK;
    default: break;
    }
    return ct_node_errorf(n, "attribute '%s' has type %s, which is not supported", a->name, ct_attr_type_name(a->type));
}

ct_status ct_infer_constant_of_shape(ct_graph *g, ct_node *n)
{
    int64_t sh[CT_MAX_RANK];
    int k;
    CT_TRY(const_ints(g, n, 0, "shape", sh, CT_MAX_RANK, &k));
    ct_shape out = {.rank = k};
    for (int i = 0; i < k; i++) {
        if (sh[i] < 0) return ct_node_errorf(n, "shape entry %d is negative (%" PRId64 ")", i, sh[i]);
        out.dims[i] = sh[i];
    }
    ct_dtype t = CT_F32;
    const ct_attr *a = ct_node_attr(n, "value");
    if (a) {
        if (a->type != CT_ATTR_TENSOR || !a->t) return ct_node_errorf(n, "attribute 'value' must be a tensor");
        if (ct_shape_numel(&a->t->shape) != 1)
            return ct_node_errorf(n, "attribute 'value' must hold one element, has shape %s", SHAPE_STR(&a->t->shape));
        t = a->t->dtype;
    }
    set_out(n, 0, t, &out);
    return CT_OK;
}

ct_status ct_infer_expand(ct_graph *g, ct_node *n)
{
    int64_t sh[CT_MAX_RANK];
    int k;
    CT_TRY(const_ints(g, n, 1, "shape", sh, CT_MAX_RANK, &k));
    ct_shape target = {.rank = k};
    for (int i = 0; i < k; i++) {
        if (sh[i] < 0) return ct_node_errorf(n, "shape entry %d is negative (%" PRId64 ")", i, sh[i]);
        target.dims[i] = sh[i];
    }
    ct_shape out;
    CT_TRY(bcast_shapes(n, in_shape(n, 0), &target, &out));
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_tile(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int64_t rep[CT_MAX_RANK];
    int k;
    CT_TRY(const_ints(g, n, 1, "repeats", rep, CT_MAX_RANK, &k));
    if (k != xs->rank) return ct_node_errorf(n, "repeats has %d entries, input %s has rank %d", k, SHAPE_STR(xs), xs->rank);
    ct_shape out = *xs;
    for (int i = 0; i < k; i++) {
        if (rep[i] < 0) return ct_node_errorf(n, "repeat %" PRId64 " on axis %d is negative", rep[i], i);
        if (xs->dims[i] == BATCH) {
            if (rep[i] != 1) return batch_err(n, "tiling the batch axis");
            continue;
        }
        if (!mul_ok(xs->dims[i], rep[i], &out.dims[i]))
            return ct_node_errorf(n, "tiling %s overflows on axis %d", SHAPE_STR(xs), i);
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

ct_status ct_infer_range(ct_graph *g, ct_node *n)
{
    ct_dtype t = in_dtype(n, 0);
    CT_TRY(same_dtype(n, 0, 1));
    CT_TRY(same_dtype(n, 0, 2));
    if (t != CT_F32 && t != CT_F64 && t != CT_I64 && t != CT_I32)
        return ct_node_errorf(n, "dtype %s is not supported (float, double, int32, int64)", ct_dtype_name(t));
    int64_t len;
    if (t == CT_I64 || t == CT_I32) {
        int64_t v[3];
        for (int i = 0; i < 3; i++) {
            int k;
            static const char *what[] = {"start", "limit", "delta"};
            CT_TRY(const_ints(g, n, i, what[i], &v[i], 1, &k));
            if (k != 1 || n->in[i]->shape.rank != 0)
                return ct_node_errorf(n, "%s must be a scalar, has shape %s", what[i], SHAPE_STR(in_shape(n, i)));
        }
        if (v[2] == 0) return ct_node_errorf(n, "delta is 0");
        /* ceil((limit - start) / delta), in 128-bit to avoid overflow */
        __int128 num = (__int128)v[1] - v[0], den = v[2];
        __int128 q = num / den;
        if ((num % den != 0) && ((num > 0) == (den > 0))) q++;
        if (q < 0) q = 0;
        if (q > INT64_MAX) return ct_node_errorf(n, "the output length overflows");
        len = (int64_t)q;
    } else {
        double v[3];
        static const char *what[] = {"start", "limit", "delta"};
        for (int i = 0; i < 3; i++) CT_TRY(const_scalar(g, n, i, what[i], &v[i]));
        if (v[2] == 0) return ct_node_errorf(n, "delta is 0");
        double q = ceil((v[1] - v[0]) / v[2]);
        if (!(q >= 0)) q = 0;
        if (q > 9.0e18) return ct_node_errorf(n, "the output length overflows");
        len = (int64_t)q;
    }
    ct_shape out = {.rank = 1, .dims = {len}};
    set_out(n, 0, t, &out);
    return CT_OK;
}

ct_status ct_infer_pad(ct_graph *g, ct_node *n)
{
    const ct_shape *xs = in_shape(n, 0);
    int r = xs->rank;
    const char *mode = ct_node_attr_string(n, "mode", "constant");
    if (strcmp(mode, "constant") && strcmp(mode, "reflect") && strcmp(mode, "edge") && strcmp(mode, "wrap"))
        return ct_node_errorf(n, "mode '%s' is not one of constant, reflect, edge, wrap", mode);
    int64_t pads[2 * CT_MAX_RANK];
    int np;
    if (has_in(n, 1)) CT_TRY(const_ints(g, n, 1, "pads", pads, 2 * CT_MAX_RANK, &np));
    else {
        const int64_t *a = ct_node_attr_ints(n, "pads", &np);
        if (!a || np > 2 * CT_MAX_RANK) return ct_node_errorf(n, "lacks pads");
        memcpy(pads, a, sizeof(int64_t) * (size_t)np);
    }
    int64_t axes[CT_MAX_RANK];
    int na = r;
    if (has_in(n, 3)) CT_TRY(const_ints(g, n, 3, "axes", axes, CT_MAX_RANK, &na));
    else
        for (int i = 0; i < r; i++) axes[i] = i;
    if (np != 2 * na) return ct_node_errorf(n, "pads has %d entries, expected %d for %d axes", np, 2 * na, na);
    if (has_in(n, 2)) {
        if (ct_shape_numel(in_shape(n, 2)) != 1)
            return ct_node_errorf(n, "constant_value '%s' must be a scalar, has shape %s", n->in[2]->name,
                            SHAPE_STR(in_shape(n, 2)));
        CT_TRY(same_dtype(n, 0, 2));
    }
    ct_shape out = *xs;
    bool seen[CT_MAX_RANK] = {false};
    for (int i = 0; i < na; i++) {
        int ax = 0;
        CT_TRY(norm_axis(n, axes[i], r, "axis", &ax));
        if (seen[ax]) return ct_node_errorf(n, "axis %" PRId64 " is repeated", axes[i]);
        seen[ax] = true;
        int64_t b = pads[i], e = pads[i + na];
        if (xs->dims[ax] == BATCH) {
            if (b != 0 || e != 0) return batch_err(n, "padding the batch axis");
            continue;
        }
        __int128 v = (__int128)xs->dims[ax] + b + e;
        if (v < 0) return ct_node_errorf(n, "pads %" PRId64 ",%" PRId64 " make axis %d of input %s negative", b, e, ax, SHAPE_STR(xs));
        if (v > INT64_MAX) return ct_node_errorf(n, "padding overflows axis %d", ax);
        if (strcmp(mode, "constant") && xs->dims[ax] == 0 && (b || e))
            return ct_node_errorf(n, "mode '%s' cannot pad the empty axis %d", mode, ax);
        if (!strcmp(mode, "reflect") && (b >= xs->dims[ax] || e >= xs->dims[ax]))
            return ct_node_errorf(n, "reflect pads %" PRId64 ",%" PRId64 " must be smaller than axis %d of input %s", b, e, ax,
                            SHAPE_STR(xs));
        out.dims[ax] = (int64_t)v;
    }
    set_out(n, 0, in_dtype(n, 0), &out);
    return CT_OK;
}

/* eval.c — the reference interpreter: every op of ir/ops.def computed plainly
 * on host memory, element by element, in the simplest correct C (double
 * accumulation). Constant folding runs nodes through it, and the per-op
 * tests hold every generated kernel to it. Speed is not a goal here. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "eval.h"
#include "eval_train.h"
#include "eval_fuse.h"
#include "eval_methods.h"
#include "eval_fused.h"

/* ---------------------------------------------------------------- element access */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3ff;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff);
    uint32_t man = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    int32_t e = exp - 127 + 15;
    if (e >= 0x1f) return (uint16_t)(sign | 0x7c00);
    if (e <= 0) { /* subnormal or zero, round to nearest even */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | h);
}

static float bf16_to_float(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t float_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* Element i of p (dtype t) as a double. */
static double ld(const void *p, ct_dtype t, int64_t i)
{
    switch (t) {
    case CT_F32: return ((const float *)p)[i];
    case CT_F64: return ((const double *)p)[i];
    case CT_F16: return half_to_float(((const uint16_t *)p)[i]);
    case CT_BF16: return bf16_to_float(((const uint16_t *)p)[i]);
    case CT_I64: return (double)((const int64_t *)p)[i];
    case CT_I32: return ((const int32_t *)p)[i];
    case CT_I8: return ((const int8_t *)p)[i];
    case CT_U8: return ((const uint8_t *)p)[i];
    case CT_BOOL: return ((const uint8_t *)p)[i] ? 1.0 : 0.0;
    default: return 0.0;
    }
}

/* Element i of p (dtype t) as an int64 (floats truncate toward zero). */
static int64_t ldi(const void *p, ct_dtype t, int64_t i)
{
    switch (t) {
    case CT_I64: return ((const int64_t *)p)[i];
    case CT_I32: return ((const int32_t *)p)[i];
    case CT_I8: return ((const int8_t *)p)[i];
    case CT_U8: return ((const uint8_t *)p)[i];
    case CT_BOOL: return ((const uint8_t *)p)[i] ? 1 : 0;
    default: {
        double d = ld(p, t, i);
        if (d != d) return 0;
        if (d >= 9.2233720368547758e18) return INT64_MAX;
        if (d <= -9.2233720368547758e18) return INT64_MIN;
        return (int64_t)d;
    }
    }
}

static int64_t clamp_i64(double d, int64_t lo, int64_t hi)
{
    if (d != d) return 0;
    if (d >= (double)hi) return hi;
    if (d <= (double)lo) return lo;
    return (int64_t)d;
}

/* Store v as element i of p (dtype t). */
static void st(void *p, ct_dtype t, int64_t i, double v)
{
    switch (t) {
    case CT_F32: ((float *)p)[i] = (float)v; break;
    case CT_F64: ((double *)p)[i] = v; break;
    case CT_F16: ((uint16_t *)p)[i] = float_to_half((float)v); break;
    case CT_BF16: ((uint16_t *)p)[i] = float_to_bf16((float)v); break;
    case CT_I64: ((int64_t *)p)[i] = clamp_i64(v, INT64_MIN, INT64_MAX); break;
    case CT_I32: ((int32_t *)p)[i] = (int32_t)clamp_i64(v, INT32_MIN, INT32_MAX); break;
    case CT_I8: ((int8_t *)p)[i] = (int8_t)clamp_i64(v, INT8_MIN, INT8_MAX); break;
    case CT_U8: ((uint8_t *)p)[i] = (uint8_t)clamp_i64(v, 0, UINT8_MAX); break;
    case CT_BOOL: ((uint8_t *)p)[i] = v != 0.0; break;
    default: break;
    }
}

/* Store an integer exactly (wrapping like C for narrower types). */
static void sti(void *p, ct_dtype t, int64_t i, int64_t v)
{
    switch (t) {
    case CT_I64: ((int64_t *)p)[i] = v; break;
    case CT_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case CT_I8: ((int8_t *)p)[i] = (int8_t)v; break;
    case CT_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case CT_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: st(p, t, i, (double)v); break;
    }
}

static bool is_int_type(ct_dtype t)
{
    return t == CT_I64 || t == CT_I32 || t == CT_I8 || t == CT_U8 || t == CT_BOOL;
}

/* ---------------------------------------------------------------- helpers */

static const char *op_name(const ct_node *n)
{
    return ((int)n->op >= 0 && n->op < CT_OP_COUNT) ? ct_op_table[n->op].name : "?";
}

#define OPNAME(n) op_name(n)
#define FAIL(...) ct_status_wrap(ct_errorf(__VA_ARGS__), "node '%s' (%s)", n->name, OPNAME(n))

static int64_t numel(const ct_value *v) { return ct_shape_numel(&v->shape); }

/* Row-major strides of a shape. */
static void strides_of(const ct_shape *s, int64_t *st_)
{
    int64_t acc = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        st_[i] = acc;
        acc *= s->dims[i];
    }
}

/* Strides of `in` aligned to an output shape of rank `rank` under numpy
 * broadcasting: 0 where the input dimension is 1 (or missing). */
static void bcast_strides(const ct_shape *in, const ct_shape *out, int64_t *bs)
{
    int64_t s[CT_MAX_RANK];
    strides_of(in, s);
    int off = out->rank - in->rank;
    for (int i = 0; i < out->rank; i++) {
        int j = i - off;
        bs[i] = (j < 0 || in->dims[j] == 1) ? 0 : s[j];
    }
}

/* Linear input index of output element o given broadcast strides. */
static int64_t bcast_index(const ct_shape *out, const int64_t *bs, int64_t o)
{
    int64_t idx = 0;
    for (int i = out->rank - 1; i >= 0; i--) {
        int64_t d = out->dims[i];
        idx += (o % d) * bs[i];
        o /= d;
    }
    return idx;
}

static bool bcast_ok(const ct_shape *in, const ct_shape *out)
{
    if (in->rank > out->rank) return false;
    int off = out->rank - in->rank;
    for (int j = 0; j < in->rank; j++)
        if (in->dims[j] != 1 && in->dims[j] != out->dims[j + off]) return false;
    return true;
}

/* Read an integer tensor input (int64 or int32) into a small array. Returns count or -1. */
static int64_t read_ints(const ct_value *v, const void *p, int64_t *dst, int64_t cap)
{
    int64_t k = numel(v);
    if (k < 0 || k > cap) return -1;
    for (int64_t i = 0; i < k; i++) dst[i] = ldi(p, v->dtype, i);
    return k;
}

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

/* ---------------------------------------------------------------- unary */

static double unary_f(const ct_node *n, double x)
{
    switch (n->op) {
    case CT_OP_RELU: return x > 0 ? x : 0;
    case CT_OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case CT_OP_HARD_SIGMOID: {
        double a = ct_node_attr_float(n, "alpha", 0.2f), b = ct_node_attr_float(n, "beta", 0.5f);
        double y = a * x + b;
        return y < 0 ? 0 : y > 1 ? 1 : y;
    }
    case CT_OP_HARD_SWISH: {
        double y = x / 6.0 + 0.5;
        return x * (y < 0 ? 0 : y > 1 ? 1 : y);
    }
    case CT_OP_LEAKY_RELU: return x >= 0 ? x : ct_node_attr_float(n, "alpha", 0.01f) * x;
    case CT_OP_TANH: return tanh(x);
    case CT_OP_SQRT: return sqrt(x);
    case CT_OP_RECIPROCAL: return 1.0 / x;
    case CT_OP_NEG: return -x;
    case CT_OP_ABS: return fabs(x);
    case CT_OP_EXP: return exp(x);
    case CT_OP_LOG: return log(x);
    case CT_OP_ERF: return erf(x);
    case CT_OP_FLOOR: return floor(x);
    case CT_OP_CEIL: return ceil(x);
    case CT_OP_NOT: return x == 0.0;
    default: return x;
    }
}

static int64_t unary_i(const ct_node *n, int64_t x)
{
    switch (n->op) {
    case CT_OP_RELU: return x > 0 ? x : 0;
    case CT_OP_NEG: return -x;
    case CT_OP_ABS: return x < 0 ? -x : x;
    case CT_OP_NOT: return !x;
    default: return x;
    }
}

static ct_status eval_unary(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->in[0]->dtype;
    int64_t k = numel(n->in[0]);
    if (is_int_type(t)) {
        switch (n->op) {
        case CT_OP_RELU: case CT_OP_NEG: case CT_OP_ABS: case CT_OP_NOT: case CT_OP_IDENTITY: break;
        default: return FAIL("integer input (%s) not supported", ct_dtype_name(t));
        }
        for (int64_t i = 0; i < k; i++) sti(out[0], t, i, unary_i(n, ldi(in[0], t, i)));
    } else {
        for (int64_t i = 0; i < k; i++) st(out[0], t, i, unary_f(n, ld(in[0], t, i)));
    }
    return CT_OK;
}

static ct_status eval_clip(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->in[0]->dtype;
    int64_t k = numel(n->in[0]);
    bool has_lo = n->n_in > 1 && in[1], has_hi = n->n_in > 2 && in[2];
    if (is_int_type(t)) {
        int64_t lo = has_lo ? ldi(in[1], n->in[1]->dtype, 0) : INT64_MIN;
        int64_t hi = has_hi ? ldi(in[2], n->in[2]->dtype, 0) : INT64_MAX;
        for (int64_t i = 0; i < k; i++) {
            int64_t x = ldi(in[0], t, i);
            x = x < lo ? lo : x;
            x = x > hi ? hi : x;
            sti(out[0], t, i, x);
        }
        return CT_OK;
    }
    double lo = has_lo ? ld(in[1], n->in[1]->dtype, 0) : -INFINITY;
    double hi = has_hi ? ld(in[2], n->in[2]->dtype, 0) : INFINITY;
    if (n->n_in == 1) { /* attribute form, should the importer have kept it */
        lo = ct_node_attr_float(n, "min", -INFINITY);
        hi = ct_node_attr_float(n, "max", INFINITY);
    }
    for (int64_t i = 0; i < k; i++) {
        double x = ld(in[0], t, i);
        if (x != x) { st(out[0], t, i, x); continue; }
        x = x < lo ? lo : x;
        x = x > hi ? hi : x;
        st(out[0], t, i, x);
    }
    return CT_OK;
}

static ct_status eval_cast(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype ti = n->in[0]->dtype, to = n->out[0]->dtype;
    int64_t k = numel(n->in[0]);
    for (int64_t i = 0; i < k; i++) {
        if (is_int_type(ti) && is_int_type(to))
            sti(out[0], to, i, ldi(in[0], ti, i));
        else if (is_int_type(to) && to != CT_BOOL)
            sti(out[0], to, i, ldi(in[0], ti, i)); /* float -> int truncates */
        else
            st(out[0], to, i, ld(in[0], ti, i));
    }
    return CT_OK;
}

/* Softmax / LogSoftmax along one axis (opset 13 semantics). */
static ct_status eval_softmax(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *s = &n->in[0]->shape;
    ct_dtype t = n->in[0]->dtype;
    if (s->rank == 0) return FAIL("scalar input");
    int axis = norm_axis(ct_node_attr_int(n, "axis", -1), s->rank);
    if (axis < 0 || axis >= s->rank) return FAIL("axis out of range");
    int64_t outer = 1, inner = 1, d = s->dims[axis];
    for (int i = 0; i < axis; i++) outer *= s->dims[i];
    for (int i = axis + 1; i < s->rank; i++) inner *= s->dims[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t r = 0; r < inner; r++) {
            int64_t base = o * d * inner + r;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < d; j++) {
                double x = ld(in[0], t, base + j * inner);
                if (x > mx) mx = x;
            }
            for (int64_t j = 0; j < d; j++) sum += exp(ld(in[0], t, base + j * inner) - mx);
            for (int64_t j = 0; j < d; j++) {
                double x = ld(in[0], t, base + j * inner) - mx;
                st(out[0], t, base + j * inner, n->op == CT_OP_SOFTMAX ? exp(x) / sum : x - log(sum));
            }
        }
    return CT_OK;
}

/* ---------------------------------------------------------------- broadcasting */

static double binary_f(ct_op op, double a, double b)
{
    switch (op) {
    case CT_OP_ADD: case CT_OP_SUM: return a + b;
    case CT_OP_SUB: return a - b;
    case CT_OP_MUL: return a * b;
    case CT_OP_DIV: return a / b;
    case CT_OP_POW: return pow(a, b);
    case CT_OP_MAX: return (a != a || b != b) ? NAN : a > b ? a : b;
    case CT_OP_MIN: return (a != a || b != b) ? NAN : a < b ? a : b;
    case CT_OP_EQUAL: return a == b;
    case CT_OP_LESS: return a < b;
    case CT_OP_GREATER: return a > b;
    case CT_OP_AND: return a != 0 && b != 0;
    case CT_OP_OR: return a != 0 || b != 0;
    default: return 0;
    }
}

static int64_t ipow(int64_t a, int64_t b)
{
    if (b < 0) return a == 1 ? 1 : (a == -1 ? (b % 2 ? -1 : 1) : 0);
    int64_t r = 1;
    while (b) {
        if (b & 1) r = (int64_t)((uint64_t)r * (uint64_t)a);
        a = (int64_t)((uint64_t)a * (uint64_t)a);
        b >>= 1;
    }
    return r;
}

static int64_t binary_i(ct_op op, int64_t a, int64_t b, bool *div0)
{
    switch (op) {
    case CT_OP_ADD: case CT_OP_SUM: return (int64_t)((uint64_t)a + (uint64_t)b);
    case CT_OP_SUB: return (int64_t)((uint64_t)a - (uint64_t)b);
    case CT_OP_MUL: return (int64_t)((uint64_t)a * (uint64_t)b);
    case CT_OP_DIV:
        if (b == 0) { *div0 = true; return 0; }
        if (a == INT64_MIN && b == -1) return INT64_MIN;
        return a / b; /* truncation, as onnxruntime */
    case CT_OP_POW: return ipow(a, b);
    case CT_OP_MAX: return a > b ? a : b;
    case CT_OP_MIN: return a < b ? a : b;
    case CT_OP_EQUAL: return a == b;
    case CT_OP_LESS: return a < b;
    case CT_OP_GREATER: return a > b;
    case CT_OP_AND: return a && b;
    case CT_OP_OR: return a || b;
    default: return 0;
    }
}

/* Add/Sub/.../Sum/Min/Max and the comparisons: any number of inputs folded
 * left to right, every input broadcast to the output shape. */
static ct_status eval_broadcast(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *os = &n->out[0]->shape;
    ct_dtype to = n->out[0]->dtype, ti = n->in[0]->dtype;
    int64_t k = numel(n->out[0]);
    int64_t bs[16][CT_MAX_RANK];
    if (n->n_in > 16) return FAIL("more than 16 inputs");
    for (int j = 0; j < n->n_in; j++) {
        if (!in[j]) return FAIL("input %d missing", j);
        if (!bcast_ok(&n->in[j]->shape, os)) return FAIL("input %d does not broadcast to the output", j);
        bcast_strides(&n->in[j]->shape, os, bs[j]);
    }
    /* Integer arithmetic when every input is an integer type (Pow with a float exponent: float). */
    bool int_math = true;
    for (int j = 0; j < n->n_in; j++) int_math = int_math && is_int_type(n->in[j]->dtype);
    bool div0 = false;
    for (int64_t o = 0; o < k; o++) {
        if (int_math) {
            int64_t acc = ldi(in[0], n->in[0]->dtype, bcast_index(os, bs[0], o));
            for (int j = 1; j < n->n_in; j++)
                acc = binary_i(n->op, acc, ldi(in[j], n->in[j]->dtype, bcast_index(os, bs[j], o)), &div0);
            sti(out[0], to, o, acc);
        } else {
            double acc = ld(in[0], n->in[0]->dtype, bcast_index(os, bs[0], o));
            for (int j = 1; j < n->n_in; j++) {
                acc = binary_f(n->op, acc, ld(in[j], n->in[j]->dtype, bcast_index(os, bs[j], o)));
                /* float32 ops round every step, like float32 arithmetic */
                if (ti == CT_F32 && to == CT_F32) acc = (float)acc;
            }
            st(out[0], to, o, acc);
        }
    }
    if (div0) return FAIL("integer division by zero");
    return CT_OK;
}

static ct_status eval_where(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *os = &n->out[0]->shape;
    ct_dtype to = n->out[0]->dtype;
    size_t es = ct_dtype_size(to);
    int64_t bs[3][CT_MAX_RANK];
    for (int j = 0; j < 3; j++) {
        if (!bcast_ok(&n->in[j]->shape, os)) return FAIL("input %d does not broadcast to the output", j);
        bcast_strides(&n->in[j]->shape, os, bs[j]);
    }
    int64_t k = numel(n->out[0]);
    for (int64_t o = 0; o < k; o++) {
        bool c = ldi(in[0], n->in[0]->dtype, bcast_index(os, bs[0], o)) != 0;
        int j = c ? 1 : 2;
        memcpy((char *)out[0] + o * es, (const char *)in[j] + bcast_index(os, bs[j], o) * es, es);
    }
    return CT_OK;
}

/* Expand: input broadcast to the output shape. */
static ct_status eval_expand(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *os = &n->out[0]->shape;
    size_t es = ct_dtype_size(n->out[0]->dtype);
    int64_t bs[CT_MAX_RANK];
    if (!bcast_ok(&n->in[0]->shape, os)) return FAIL("input does not broadcast to the output");
    bcast_strides(&n->in[0]->shape, os, bs);
    int64_t k = numel(n->out[0]);
    for (int64_t o = 0; o < k; o++)
        memcpy((char *)out[0] + o * es, (const char *)in[0] + bcast_index(os, bs, o) * es, es);
    return CT_OK;
}

/* ---------------------------------------------------------------- data movement */

static ct_status eval_copy(const ct_node *n, const void *const *in, void *const *out)
{
    size_t nb = ct_value_nbytes(n->out[0]);
    if (nb != ct_value_nbytes(n->in[0])) return FAIL("input and output sizes differ");
    if (nb && out[0] != in[0]) memmove(out[0], in[0], nb);
    if (n->op == CT_OP_DROPOUT && n->n_out > 1 && out[1]) { /* inference: mask all true */
        int64_t k = numel(n->out[1]);
        for (int64_t i = 0; i < k; i++) sti(out[1], n->out[1]->dtype, i, 1);
    }
    return CT_OK;
}

static ct_status eval_transpose(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape, *os = &n->out[0]->shape;
    int r = is->rank, cnt = 0;
    const int64_t *perm_a = ct_node_attr_ints(n, "perm", &cnt);
    int64_t perm[CT_MAX_RANK];
    for (int i = 0; i < r; i++) perm[i] = cnt ? norm_axis(perm_a[i], r) : r - 1 - i;
    if (cnt && cnt != r) return FAIL("perm has %d entries for rank %d", cnt, r);
    if (n->out[0]->shape.rank != r) return FAIL("output rank differs from the input's");
    bool seen[CT_MAX_RANK] = {false};
    for (int i = 0; i < r; i++) {
        if (perm[i] < 0 || perm[i] >= r || seen[perm[i]]) return FAIL("perm is not a permutation");
        seen[perm[i]] = true;
    }
    int64_t ist[CT_MAX_RANK];
    strides_of(is, ist);
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t k = numel(n->out[0]);
    for (int64_t o = 0; o < k; o++) {
        int64_t rem = o, idx = 0;
        for (int i = r - 1; i >= 0; i--) {
            idx += (rem % os->dims[i]) * ist[perm[i]];
            rem /= os->dims[i];
        }
        memcpy((char *)out[0] + o * es, (const char *)in[0] + idx * es, es);
    }
    return CT_OK;
}

static ct_status eval_concat(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *os = &n->out[0]->shape;
    int axis = norm_axis(ct_node_attr_int(n, "axis", 0), os->rank);
    if (axis < 0 || axis >= os->rank) return FAIL("axis out of range");
    size_t es = ct_dtype_size(n->out[0]->dtype);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= os->dims[i];
    for (int i = axis + 1; i < os->rank; i++) inner *= os->dims[i];
    for (int j = 0; j < n->n_in; j++) {
        const ct_shape *s = &n->in[j]->shape;
        if (s->rank != os->rank) return FAIL("input %d has rank %d, output %d", j, s->rank, os->rank);
        for (int i = 0; i < os->rank; i++)
            if (i != axis && s->dims[i] != os->dims[i]) return FAIL("input %d differs from the output off the axis", j);
    }
    int64_t off = 0;
    for (int j = 0; j < n->n_in; j++) {
        int64_t d = n->in[j]->shape.dims[axis];
        if (off + d > os->dims[axis]) return FAIL("inputs exceed the output along axis %d", axis);
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out[0] + ((o * os->dims[axis] + off) * inner) * es,
                   (const char *)in[j] + (o * d * inner) * es, (size_t)(d * inner) * es);
        off += d;
    }
    if (off != os->dims[axis]) return FAIL("input sizes along axis %d sum to %lld, output has %lld",
                                           axis, (long long)off, (long long)os->dims[axis]);
    return CT_OK;
}

static ct_status eval_split(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape;
    int axis = norm_axis(ct_node_attr_int(n, "axis", 0), is->rank);
    if (axis < 0 || axis >= is->rank) return FAIL("axis out of range");
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= is->dims[i];
    for (int i = axis + 1; i < is->rank; i++) inner *= is->dims[i];
    int64_t off = 0;
    for (int j = 0; j < n->n_out; j++) {
        if (!n->out[j]) continue;
        const ct_shape *s = &n->out[j]->shape;
        if (s->rank != is->rank) return FAIL("output %d has rank %d, input %d", j, s->rank, is->rank);
        for (int i = 0; i < is->rank; i++)
            if (i != axis && s->dims[i] != is->dims[i]) return FAIL("output %d differs from the input off the axis", j);
        int64_t d = s->dims[axis];
        if (off + d > is->dims[axis]) return FAIL("outputs exceed the input along axis %d", axis);
        for (int64_t o = 0; o < outer; o++)
            memcpy((char *)out[j] + (o * d * inner) * es,
                   (const char *)in[0] + ((o * is->dims[axis] + off) * inner) * es, (size_t)(d * inner) * es);
        off += d;
    }
    return CT_OK;
}

static ct_status eval_slice(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape, *os = &n->out[0]->shape;
    int r = is->rank;
    int64_t start[CT_MAX_RANK], step[CT_MAX_RANK];
    for (int i = 0; i < r; i++) { start[i] = 0; step[i] = 1; }
    int64_t st_[CT_MAX_RANK], en[CT_MAX_RANK], ax[CT_MAX_RANK], sp[CT_MAX_RANK];
    int64_t ns, ne, na, nsp;
    if (n->n_in >= 3 && in[1] && in[2]) {
        ns = read_ints(n->in[1], in[1], st_, CT_MAX_RANK);
        ne = read_ints(n->in[2], in[2], en, CT_MAX_RANK);
    } else { /* attribute form */
        int c1 = 0, c2 = 0;
        const int64_t *a1 = ct_node_attr_ints(n, "starts", &c1), *a2 = ct_node_attr_ints(n, "ends", &c2);
        if (c1 > CT_MAX_RANK || c2 > CT_MAX_RANK) return FAIL("too many starts/ends");
        for (int i = 0; i < c1; i++) st_[i] = a1[i];
        for (int i = 0; i < c2; i++) en[i] = a2[i];
        ns = c1;
        ne = c2;
    }
    if (ns < 0 || ns != ne) return FAIL("starts and ends differ in length");
    if (n->n_in >= 4 && in[3]) {
        na = read_ints(n->in[3], in[3], ax, CT_MAX_RANK);
    } else {
        int c = 0;
        const int64_t *a = ct_node_attr_ints(n, "axes", &c);
        if (c) {
            for (int i = 0; i < c && i < CT_MAX_RANK; i++) ax[i] = a[i];
            na = c;
        } else {
            for (int i = 0; i < ns; i++) ax[i] = i;
            na = ns;
        }
    }
    if (n->n_in >= 5 && in[4]) {
        nsp = read_ints(n->in[4], in[4], sp, CT_MAX_RANK);
    } else {
        for (int i = 0; i < ns; i++) sp[i] = 1;
        nsp = ns;
    }
    if (na != ns || nsp != ns) return FAIL("starts, ends, axes and steps differ in length");
    for (int i = 0; i < ns; i++) {
        int a = norm_axis(ax[i], r);
        if (a < 0 || a >= r) return FAIL("axis %lld out of range", (long long)ax[i]);
        int64_t d = is->dims[a], s = st_[i], e = en[i], p = sp[i];
        if (p == 0) return FAIL("step 0");
        if (s < 0) s += d;
        if (e < 0) e += d;
        if (p > 0) {
            s = s < 0 ? 0 : s > d ? d : s;
        } else {
            s = s < 0 ? 0 : s > d - 1 ? d - 1 : s;
        }
        (void)e;
        start[a] = s;
        step[a] = p;
    }
    if (os->rank != r) return FAIL("output rank differs from the input's");
    for (int i = 0; i < r; i++) { /* the last element taken must lie inside the input */
        int64_t last = start[i] + (os->dims[i] - 1) * step[i];
        if (os->dims[i] > 0 && (last < 0 || last >= is->dims[i] || start[i] >= is->dims[i]))
            return FAIL("output shape does not fit the input along axis %d", i);
    }
    int64_t ist[CT_MAX_RANK];
    strides_of(is, ist);
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t k = numel(n->out[0]);
    for (int64_t o = 0; o < k; o++) {
        int64_t rem = o, idx = 0;
        for (int i = r - 1; i >= 0; i--) {
            int64_t c = rem % os->dims[i];
            rem /= os->dims[i];
            idx += (start[i] + c * step[i]) * ist[i];
        }
        memcpy((char *)out[0] + o * es, (const char *)in[0] + idx * es, es);
    }
    return CT_OK;
}

static ct_status eval_gather(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *ds = &n->in[0]->shape;
    int r = ds->rank;
    int axis = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    if (axis < 0 || axis >= r) return FAIL("axis out of range");
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t outer = 1, inner = 1, d = ds->dims[axis], ni = numel(n->in[1]);
    for (int i = 0; i < axis; i++) outer *= ds->dims[i];
    for (int i = axis + 1; i < r; i++) inner *= ds->dims[i];
    if (outer * ni * inner != numel(n->out[0])) return FAIL("output size does not match");
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < ni; j++) {
            int64_t ix = ldi(in[1], n->in[1]->dtype, j);
            if (ix < 0) ix += d;
            if (ix < 0 || ix >= d) return FAIL("index %lld out of range [0, %lld)", (long long)ix, (long long)d);
            memcpy((char *)out[0] + ((o * ni + j) * inner) * es,
                   (const char *)in[0] + ((o * d + ix) * inner) * es, (size_t)inner * es);
        }
    return CT_OK;
}

static ct_status eval_tile(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape, *os = &n->out[0]->shape;
    if (is->rank != os->rank) return FAIL("output rank differs from the input's");
    int64_t ist[CT_MAX_RANK];
    strides_of(is, ist);
    size_t es = ct_dtype_size(n->in[0]->dtype);
    int64_t k = numel(n->out[0]);
    if (k > 0 && numel(n->in[0]) == 0) return FAIL("empty input tiled to a non-empty output");
    for (int64_t o = 0; o < k; o++) {
        int64_t rem = o, idx = 0;
        for (int i = os->rank - 1; i >= 0; i--) {
            idx += ((rem % os->dims[i]) % is->dims[i]) * ist[i];
            rem /= os->dims[i];
        }
        memcpy((char *)out[0] + o * es, (const char *)in[0] + idx * es, es);
    }
    return CT_OK;
}

static ct_status eval_pad(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape, *os = &n->out[0]->shape;
    int r = is->rank;
    ct_dtype t = n->in[0]->dtype;
    const char *mode = ct_node_attr_string(n, "mode", "constant");
    int64_t pads[2 * CT_MAX_RANK], begin[CT_MAX_RANK] = {0};
    int64_t np;
    if (n->n_in >= 2 && in[1]) {
        np = read_ints(n->in[1], in[1], pads, 2 * CT_MAX_RANK);
    } else {
        int c = 0;
        const int64_t *a = ct_node_attr_ints(n, "pads", &c);
        if (c > 2 * CT_MAX_RANK) return FAIL("too many pads");
        for (int i = 0; i < c; i++) pads[i] = a[i];
        np = c;
    }
    int64_t axes[CT_MAX_RANK];
    int64_t na;
    if (n->n_in >= 4 && in[3]) {
        na = read_ints(n->in[3], in[3], axes, CT_MAX_RANK);
    } else {
        for (int i = 0; i < r; i++) axes[i] = i;
        na = r;
    }
    if (os->rank != r) return FAIL("output rank differs from the input's");
    if (na < 0 || np != 2 * na) return FAIL("pads has %lld entries for %lld axes", (long long)np, (long long)na);
    for (int i = 0; i < na; i++) {
        int a = norm_axis(axes[i], r);
        if (a < 0 || a >= r) return FAIL("axis out of range");
        begin[a] = pads[i];
    }
    double cval = (n->n_in >= 3 && in[2]) ? ld(in[2], n->in[2]->dtype, 0) : ct_node_attr_float(n, "value", 0.0f);
    int m = !strcmp(mode, "constant") ? 0 : !strcmp(mode, "reflect") ? 1 : !strcmp(mode, "edge") ? 2 : -1;
    if (m < 0) return FAIL("mode '%s' not supported", mode);
    int64_t ist[CT_MAX_RANK];
    strides_of(is, ist);
    size_t es = ct_dtype_size(t);
    int64_t k = numel(n->out[0]);
    for (int64_t o = 0; o < k; o++) {
        int64_t rem = o, idx = 0;
        bool outside = false;
        for (int i = r - 1; i >= 0; i--) {
            int64_t c = rem % os->dims[i] - begin[i], d = is->dims[i];
            rem /= os->dims[i];
            if (c < 0 || c >= d) {
                if (m == 0 || d == 0) {
                    outside = true;
                } else if (m == 2) {
                    c = c < 0 ? 0 : d - 1;
                } else if (d == 1) {
                    c = 0;
                } else { /* reflect, without repeating the edge */
                    int64_t period = 2 * (d - 1);
                    c %= period;
                    if (c < 0) c += period;
                    if (c >= d) c = period - c;
                }
            }
            idx += c * ist[i];
        }
        if (outside) {
            if (is_int_type(t)) sti(out[0], t, o, (int64_t)cval);
            else st(out[0], t, o, cval);
        } else {
            memcpy((char *)out[0] + o * es, (const char *)in[0] + idx * es, es);
        }
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- shape computation */

static ct_status eval_shape(const ct_node *n, void *const *out)
{
    const ct_shape *s = &n->in[0]->shape;
    int r = s->rank;
    int64_t b = ct_node_attr_int(n, "start", 0), e = ct_node_attr_int(n, "end", r);
    if (b < 0) b += r;
    if (e < 0) e += r;
    b = b < 0 ? 0 : b > r ? r : b;
    e = e < 0 ? 0 : e > r ? r : e;
    for (int64_t i = b; i < e; i++) {
        if (s->dims[i] < 0) return FAIL("dimension %lld is symbolic", (long long)i);
        sti(out[0], n->out[0]->dtype, i - b, s->dims[i]);
    }
    return CT_OK;
}

static ct_status eval_constant(const ct_node *n, void *const *out)
{
    const ct_value *o = n->out[0];
    const ct_attr *a;
    if ((a = ct_node_attr(n, "value")) && a->t) {
        size_t nb = ct_value_nbytes(a->t);
        if (nb != ct_value_nbytes(o)) return FAIL("value tensor size differs from the output");
        if (nb) memcpy(out[0], a->t->data, nb);
    } else if ((a = ct_node_attr(n, "value_float"))) {
        st(out[0], o->dtype, 0, a->f);
    } else if ((a = ct_node_attr(n, "value_int"))) {
        sti(out[0], o->dtype, 0, a->i);
    } else if ((a = ct_node_attr(n, "value_floats"))) {
        for (int i = 0; i < a->n && i < numel(o); i++) st(out[0], o->dtype, i, a->floats[i]);
    } else if ((a = ct_node_attr(n, "value_ints"))) {
        for (int i = 0; i < a->n && i < numel(o); i++) sti(out[0], o->dtype, i, a->ints[i]);
    } else {
        return FAIL("no value attribute");
    }
    return CT_OK;
}

static ct_status eval_constant_of_shape(const ct_node *n, void *const *out)
{
    const ct_value *o = n->out[0];
    size_t es = ct_dtype_size(o->dtype);
    unsigned char v[16] = {0};
    const ct_attr *a = ct_node_attr(n, "value");
    if (a && a->t) {
        if (a->t->dtype != o->dtype || numel(a->t) != 1) return FAIL("value must be one element of the output type");
        memcpy(v, a->t->data, es);
    }
    int64_t k = numel(o);
    for (int64_t i = 0; i < k; i++) memcpy((char *)out[0] + i * es, v, es);
    return CT_OK;
}

static ct_status eval_range(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_value *o = n->out[0];
    int64_t k = numel(o);
    if (is_int_type(o->dtype)) {
        int64_t s = ldi(in[0], n->in[0]->dtype, 0), d = ldi(in[2], n->in[2]->dtype, 0);
        for (int64_t i = 0; i < k; i++) sti(out[0], o->dtype, i, s + i * d);
    } else {
        double s = ld(in[0], n->in[0]->dtype, 0), d = ld(in[2], n->in[2]->dtype, 0);
        for (int64_t i = 0; i < k; i++) st(out[0], o->dtype, i, s + (double)i * d);
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- reductions */

/* Which axes are reduced: from the axes input (or attribute); none given:
 * all axes, or none with noop_with_empty_axes. */
static ct_status reduce_axes(const ct_node *n, const void *const *in, bool *red)
{
    int r = n->in[0]->shape.rank;
    int64_t ax[CT_MAX_RANK];
    int64_t na = 0;
    if (n->n_in >= 2 && in[1]) {
        na = read_ints(n->in[1], in[1], ax, CT_MAX_RANK);
        if (na < 0) return FAIL("too many axes");
    } else {
        int c = 0;
        const int64_t *a = ct_node_attr_ints(n, "axes", &c);
        if (c > CT_MAX_RANK) return FAIL("too many axes");
        for (int i = 0; i < c; i++) ax[i] = a[i];
        na = c;
    }
    for (int i = 0; i < r; i++) red[i] = false;
    if (na == 0) {
        bool noop = ct_node_attr_int(n, "noop_with_empty_axes", 0) != 0;
        for (int i = 0; i < r; i++) red[i] = !noop;
        return CT_OK;
    }
    for (int i = 0; i < na; i++) {
        int a = norm_axis(ax[i], r);
        if (a < 0 || a >= r) return FAIL("axis %lld out of range", (long long)ax[i]);
        red[a] = true;
    }
    return CT_OK;
}

static ct_status eval_reduce(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape;
    ct_dtype t = n->in[0]->dtype;
    int r = is->rank;
    bool red[CT_MAX_RANK];
    CT_TRY(reduce_axes(n, in, red));
    /* Output element index from the kept dims of an input coordinate. */
    int64_t kept_stride[CT_MAX_RANK], acc = 1, count = 1;
    for (int i = r - 1; i >= 0; i--) {
        if (red[i]) {
            kept_stride[i] = 0;
            count *= is->dims[i];
        } else {
            kept_stride[i] = acc;
            acc *= is->dims[i];
        }
    }
    int64_t nout = numel(n->out[0]), nin = numel(n->in[0]);
    if (nout != acc) return FAIL("output size %lld, expected %lld", (long long)nout, (long long)acc);
    double *a = malloc((size_t)(nout ? nout : 1) * sizeof *a);
    if (!a) return FAIL("out of memory");
    double init = 0;
    switch (n->op) {
    case CT_OP_REDUCE_MAX: init = -INFINITY; break;
    case CT_OP_REDUCE_MIN: init = INFINITY; break;
    case CT_OP_REDUCE_PROD: init = 1; break;
    default: break;
    }
    for (int64_t o = 0; o < nout; o++) a[o] = init;
    for (int64_t i = 0; i < nin; i++) {
        int64_t rem = i, o = 0;
        for (int d = r - 1; d >= 0; d--) {
            o += (rem % is->dims[d]) * kept_stride[d];
            rem /= is->dims[d];
        }
        double x = ld(in[0], t, i);
        switch (n->op) {
        case CT_OP_REDUCE_MAX: if (x > a[o] || x != x) a[o] = x; break;
        case CT_OP_REDUCE_MIN: if (x < a[o] || x != x) a[o] = x; break;
        case CT_OP_REDUCE_PROD: a[o] *= x; break;
        case CT_OP_REDUCE_L2: a[o] += x * x; break;
        default: a[o] += x; break;
        }
    }
    for (int64_t o = 0; o < nout; o++) {
        double v = a[o];
        if (n->op == CT_OP_REDUCE_MEAN) v /= (double)count;
        if (n->op == CT_OP_REDUCE_L2) v = sqrt(v);
        st(out[0], n->out[0]->dtype, o, v);
    }
    free(a);
    return CT_OK;
}

static ct_status eval_argmax(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape;
    int r = is->rank;
    int axis = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    if (axis < 0 || axis >= r) return FAIL("axis out of range");
    bool last = ct_node_attr_int(n, "select_last_index", 0) != 0;
    int64_t outer = 1, inner = 1, d = is->dims[axis];
    for (int i = 0; i < axis; i++) outer *= is->dims[i];
    for (int i = axis + 1; i < r; i++) inner *= is->dims[i];
    if (d == 0) return FAIL("empty axis %d", axis);
    if (outer * inner != numel(n->out[0])) return FAIL("output size does not match");
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < inner; q++) {
            int64_t best = 0;
            double bv = ld(in[0], n->in[0]->dtype, o * d * inner + q);
            for (int64_t j = 1; j < d; j++) {
                double x = ld(in[0], n->in[0]->dtype, (o * d + j) * inner + q);
                if (x > bv || (last && x == bv)) { bv = x; best = j; }
            }
            sti(out[0], n->out[0]->dtype, o * inner + q, best);
        }
    return CT_OK;
}

/* ---------------------------------------------------------------- linear algebra */

static ct_status eval_gemm(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *as = &n->in[0]->shape, *bs_ = &n->in[1]->shape, *os = &n->out[0]->shape;
    ct_dtype t = n->out[0]->dtype;
    if (as->rank != 2 || bs_->rank != 2 || os->rank != 2) return FAIL("A and B must be 2-D");
    bool ta = ct_node_attr_int(n, "transA", 0) != 0, tb = ct_node_attr_int(n, "transB", 0) != 0;
    double alpha = ct_node_attr_float(n, "alpha", 1.0f), beta = ct_node_attr_float(n, "beta", 1.0f);
    int64_t M = ta ? as->dims[1] : as->dims[0], K = ta ? as->dims[0] : as->dims[1];
    int64_t Kb = tb ? bs_->dims[1] : bs_->dims[0], N = tb ? bs_->dims[0] : bs_->dims[1];
    if (K != Kb || os->dims[0] != M || os->dims[1] != N) return FAIL("inner dimensions differ");
    bool has_c = n->n_in > 2 && in[2];
    int64_t cs[CT_MAX_RANK];
    if (has_c) {
        if (!bcast_ok(&n->in[2]->shape, os)) return FAIL("C does not broadcast to (M, N)");
        bcast_strides(&n->in[2]->shape, os, cs);
    }
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++)
                s += ld(in[0], t, ta ? k * M + i : i * K + k) * ld(in[1], t, tb ? j * K + k : k * N + j);
            s *= alpha;
            if (has_c) s += beta * ld(in[2], n->in[2]->dtype, bcast_index(os, cs, i * N + j));
            st(out[0], t, i * N + j, s);
        }
    return CT_OK;
}

/* MatMul with numpy semantics: 1-D operands are promoted and the added
 * dimension removed; batch dimensions broadcast. */
static ct_status eval_matmul(const ct_node *n, const void *const *in, void *const *out)
{
    ct_shape a = n->in[0]->shape, b = n->in[1]->shape;
    ct_dtype t = n->out[0]->dtype;
    if (a.rank == 0 || b.rank == 0) return FAIL("scalar operand");
    if (a.rank == 1) { a.dims[1] = a.dims[0]; a.dims[0] = 1; a.rank = 2; }
    if (b.rank == 1) { b.dims[1] = 1; b.rank = 2; }
    int64_t M = a.dims[a.rank - 2], K = a.dims[a.rank - 1], N = b.dims[b.rank - 1];
    if (b.dims[b.rank - 2] != K) return FAIL("inner dimensions differ (%lld vs %lld)", (long long)K,
                                             (long long)b.dims[b.rank - 2]);
    /* Batch shapes. */
    ct_shape ab = {a.rank - 2, {0}}, bb = {b.rank - 2, {0}}, ob;
    for (int i = 0; i < ab.rank; i++) ab.dims[i] = a.dims[i];
    for (int i = 0; i < bb.rank; i++) bb.dims[i] = b.dims[i];
    ob.rank = ab.rank > bb.rank ? ab.rank : bb.rank;
    for (int i = 0; i < ob.rank; i++) {
        int ia = i - (ob.rank - ab.rank), ib = i - (ob.rank - bb.rank);
        int64_t da = ia >= 0 ? ab.dims[ia] : 1, db = ib >= 0 ? bb.dims[ib] : 1;
        if (da != db && da != 1 && db != 1) return FAIL("batch dimensions do not broadcast");
        ob.dims[i] = da == 1 ? db : da;
    }
    int64_t sa[CT_MAX_RANK], sb[CT_MAX_RANK];
    bcast_strides(&ab, &ob, sa);
    bcast_strides(&bb, &ob, sb);
    int64_t nb = ct_shape_numel(&ob);
    if (nb * M * N != numel(n->out[0])) return FAIL("output size does not match");
    for (int64_t p = 0; p < nb; p++) {
        int64_t pa = bcast_index(&ob, sa, p) * M * K, pb = bcast_index(&ob, sb, p) * K * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += ld(in[0], t, pa + i * K + k) * ld(in[1], t, pb + k * N + j);
                st(out[0], t, (p * M + i) * N + j, s);
            }
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- convolution and pooling */

/* 1-D and 2-D windows, described as 2-D (a 1-D op has H = 1). */
typedef struct {
    int64_t N, C, H, W;     /* input */
    int64_t OH, OW;         /* output */
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t ph, pw;         /* padding at the beginning */
    int64_t ph_end, pw_end; /* padding at the end */
} window;

static ct_status window_get(const ct_node *n, const ct_shape *ks, window *w)
{
    const ct_shape *is = &n->in[0]->shape, *os = &n->out[0]->shape;
    int sp = is->rank - 2;
    if (sp != 1 && sp != 2) return FAIL("only 1-D and 2-D windows are supported (input rank %d)", is->rank);
    int c;
    int64_t k[2], s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
    const int64_t *a = ct_node_attr_ints(n, "kernel_shape", &c);
    if (c == sp) {
        for (int i = 0; i < sp; i++) k[i] = a[i];
    } else if (ks) { /* Conv: from the weight's shape */
        for (int i = 0; i < sp; i++) k[i] = ks->dims[2 + i];
    } else {
        return FAIL("kernel_shape missing");
    }
    if ((a = ct_node_attr_ints(n, "strides", &c)) && c == sp) for (int i = 0; i < sp; i++) s[i] = a[i];
    if ((a = ct_node_attr_ints(n, "dilations", &c)) && c == sp) for (int i = 0; i < sp; i++) d[i] = a[i];
    if ((a = ct_node_attr_ints(n, "pads", &c)) && c == 2 * sp) for (int i = 0; i < 2 * sp; i++) p[i] = a[i];
    const char *ap = ct_node_attr_string(n, "auto_pad", "NOTSET");
    int64_t in_sp[2], out_sp[2];
    for (int i = 0; i < sp; i++) {
        in_sp[i] = is->dims[2 + i];
        out_sp[i] = os->dims[2 + i];
    }
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int i = 0; i < sp; i++) {
            int64_t total = (out_sp[i] - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i];
            if (total < 0) total = 0;
            int64_t small = total / 2, big = total - small;
            p[i] = ap[5] == 'U' ? small : big;
            p[sp + i] = ap[5] == 'U' ? big : small;
        }
    } else if (!strcmp(ap, "VALID")) {
        for (int i = 0; i < 2 * sp; i++) p[i] = 0;
    } else if (strcmp(ap, "NOTSET")) {
        return FAIL("auto_pad '%s' not supported", ap);
    }
    if (os->rank != is->rank || os->dims[0] != is->dims[0]) return FAIL("output shape does not match the input's");
    if (!ks && os->dims[1] != is->dims[1]) return FAIL("pooling changes the channel count");
    w->N = is->dims[0];
    w->C = is->dims[1];
    if (sp == 1) {
        w->H = 1; w->OH = 1; w->kh = 1; w->sh = 1; w->dh = 1; w->ph = 0; w->ph_end = 0;
        w->W = in_sp[0]; w->OW = out_sp[0]; w->kw = k[0]; w->sw = s[0]; w->dw = d[0];
        w->pw = p[0]; w->pw_end = p[1];
    } else {
        w->H = in_sp[0]; w->OH = out_sp[0]; w->kh = k[0]; w->sh = s[0]; w->dh = d[0];
        w->W = in_sp[1]; w->OW = out_sp[1]; w->kw = k[1]; w->sw = s[1]; w->dw = d[1];
        w->ph = p[0]; w->pw = p[1]; w->ph_end = p[2]; w->pw_end = p[3];
    }
    if (w->sh <= 0 || w->sw <= 0 || w->dh <= 0 || w->dw <= 0) return FAIL("strides and dilations must be positive");
    return CT_OK;
}

static ct_status eval_conv(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *ws = &n->in[1]->shape;
    ct_dtype t = n->out[0]->dtype;
    window w;
    CT_TRY(window_get(n, ws, &w));
    int64_t G = ct_node_attr_int(n, "group", 1), M = ws->dims[0], CG = ws->dims[1];
    if (G <= 0 || w.C != CG * G || M % G) return FAIL("channels (%lld) and group (%lld) do not match the weight",
                                                     (long long)w.C, (long long)G);
    if (n->out[0]->shape.dims[1] != M) return FAIL("output channels differ from the weight's");
    int64_t MG = M / G;
    bool has_b = n->n_in > 2 && in[2];
    for (int64_t b = 0; b < w.N; b++)
        for (int64_t m = 0; m < M; m++) {
            int64_t g = m / MG;
            for (int64_t oh = 0; oh < w.OH; oh++)
                for (int64_t ow = 0; ow < w.OW; ow++) {
                    double s = has_b ? ld(in[2], t, m) : 0;
                    for (int64_t c = 0; c < CG; c++)
                        for (int64_t i = 0; i < w.kh; i++) {
                            int64_t ih = oh * w.sh - w.ph + i * w.dh;
                            if (ih < 0 || ih >= w.H) continue;
                            for (int64_t j = 0; j < w.kw; j++) {
                                int64_t iw = ow * w.sw - w.pw + j * w.dw;
                                if (iw < 0 || iw >= w.W) continue;
                                s += ld(in[0], t, ((b * w.C + g * CG + c) * w.H + ih) * w.W + iw) *
                                     ld(in[1], t, ((m * CG + c) * w.kh + i) * w.kw + j);
                            }
                        }
                    st(out[0], t, ((b * M + m) * w.OH + oh) * w.OW + ow, s);
                }
        }
    return CT_OK;
}

static ct_status eval_pool(const ct_node *n, const void *const *in, void *const *out)
{
    ct_dtype t = n->out[0]->dtype;
    window w;
    CT_TRY(window_get(n, NULL, &w));
    bool is_max = n->op == CT_OP_MAX_POOL;
    bool include_pad = ct_node_attr_int(n, "count_include_pad", 0) != 0;
    bool col_major = ct_node_attr_int(n, "storage_order", 0) != 0;
    void *idx_out = (is_max && n->n_out > 1) ? out[1] : NULL;
    for (int64_t p = 0; p < w.N * w.C; p++)
        for (int64_t oh = 0; oh < w.OH; oh++)
            for (int64_t ow = 0; ow < w.OW; ow++) {
                double s = is_max ? -INFINITY : 0;
                int64_t cnt = 0, best = -1;
                for (int64_t i = 0; i < w.kh; i++) {
                    int64_t ih = oh * w.sh - w.ph + i * w.dh;
                    if (ih < 0 || ih >= w.H) continue;
                    for (int64_t j = 0; j < w.kw; j++) {
                        int64_t iw = ow * w.sw - w.pw + j * w.dw;
                        if (iw < 0 || iw >= w.W) continue;
                        double x = ld(in[0], t, (p * w.H + ih) * w.W + iw);
                        if (is_max) {
                            if (x > s || best < 0) {
                                s = x;
                                best = col_major ? p * w.H * w.W + iw * w.H + ih : (p * w.H + ih) * w.W + iw;
                            }
                        } else {
                            s += x;
                        }
                        cnt++;
                    }
                }
                if (!is_max) {
                    if (include_pad) { /* the window clipped to the padded input */
                        int64_t h0 = oh * w.sh - w.ph, w0 = ow * w.sw - w.pw;
                        int64_t h1 = h0 + (w.kh - 1) * w.dh + 1, w1 = w0 + (w.kw - 1) * w.dw + 1;
                        if (h1 > w.H + w.ph_end) h1 = w.H + w.ph_end;
                        if (w1 > w.W + w.pw_end) w1 = w.W + w.pw_end;
                        int64_t hc = (h1 - h0 + w.dh - 1) / w.dh, wc = (w1 - w0 + w.dw - 1) / w.dw;
                        cnt = hc * wc;
                    }
                    s = cnt ? s / (double)cnt : 0;
                }
                int64_t o = (p * w.OH + oh) * w.OW + ow;
                st(out[0], t, o, s);
                if (idx_out) sti(idx_out, n->out[1]->dtype, o, best < 0 ? 0 : best);
            }
    return CT_OK;
}

static ct_status eval_global_pool(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape;
    ct_dtype t = n->out[0]->dtype;
    if (is->rank < 2) return FAIL("input rank below 2");
    int64_t nc = is->dims[0] * is->dims[1], hw = 1;
    if (numel(n->out[0]) != nc) return FAIL("output size does not match");
    for (int i = 2; i < is->rank; i++) hw *= is->dims[i];
    for (int64_t p = 0; p < nc; p++) {
        double s = n->op == CT_OP_GLOBAL_MAX_POOL ? -INFINITY : 0;
        for (int64_t i = 0; i < hw; i++) {
            double x = ld(in[0], t, p * hw + i);
            if (n->op == CT_OP_GLOBAL_MAX_POOL) s = x > s ? x : s;
            else s += x;
        }
        if (n->op == CT_OP_GLOBAL_AVERAGE_POOL) s /= (double)hw;
        st(out[0], t, p, s);
    }
    return CT_OK;
}

/* BatchNormalization: inference form with the given statistics, or
 * training_mode=1: batch statistics (biased variance), and running
 * statistics updated as input * momentum + current * (1 - momentum). */
static ct_status eval_batch_norm(const ct_node *n, const void *const *in, void *const *out)
{
    const ct_shape *is = &n->in[0]->shape;
    ct_dtype t = n->out[0]->dtype;
    if (is->rank < 2) return FAIL("input rank below 2");
    int64_t N = is->dims[0], C = is->dims[1], S = 1;
    for (int i = 2; i < is->rank; i++) S *= is->dims[i];
    double eps = ct_node_attr_float(n, "epsilon", 1e-5f), mom = ct_node_attr_float(n, "momentum", 0.9f);
    bool training = ct_node_attr_int(n, "training_mode", 0) != 0;
    for (int j = 1; j < 5; j++)
        if (!in[j] || numel(n->in[j]) != C) return FAIL("input %d must have %lld elements", j, (long long)C);
    for (int64_t c = 0; c < C; c++) {
        double mean = ld(in[3], n->in[3]->dtype, c), var = ld(in[4], n->in[4]->dtype, c);
        if (training) {
            double s = 0, ss = 0;
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < S; i++) s += ld(in[0], t, (b * C + c) * S + i);
            double m = s / (double)(N * S);
            for (int64_t b = 0; b < N; b++)
                for (int64_t i = 0; i < S; i++) {
                    double d = ld(in[0], t, (b * C + c) * S + i) - m;
                    ss += d * d;
                }
            double v = ss / (double)(N * S);
            if (n->n_out > 1 && out[1]) st(out[1], n->out[1]->dtype, c, mean * mom + m * (1 - mom));
            if (n->n_out > 2 && out[2]) st(out[2], n->out[2]->dtype, c, var * mom + v * (1 - mom));
            mean = m;
            var = v;
        }
        double scale = ld(in[1], n->in[1]->dtype, c) / sqrt(var + eps), bias = ld(in[2], n->in[2]->dtype, c);
        for (int64_t b = 0; b < N; b++)
            for (int64_t i = 0; i < S; i++) {
                int64_t k = (b * C + c) * S + i;
                st(out[0], t, k, (ld(in[0], t, k) - mean) * scale + bias);
            }
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- dispatch */

bool ct_eval_supports(const ct_node *n)
{
    if ((int)n->op < 0 || n->op >= CT_OP_COUNT) return false;
    if (ct_eval_methods_supports(n)) return true; /* methods ops (QueuePush) */
    if (ct_eval_fuse_supports(n)) return true; /* fused ops (passes/eval_fuse.c) */
    if (ct_eval_fused_supports(n)) return true; /* fused losses (ContrastiveLoss) */
    if (!strcmp(ct_op_table[n->op].domain, "ai.contra")) return ct_eval_train_supports(n); /* training ops */
    switch (n->op) {
    case CT_OP_CONV: case CT_OP_MAX_POOL: case CT_OP_AVERAGE_POOL: {
        if (!n->n_in || !n->in[0]) return false;
        int r = n->in[0]->shape.rank;
        return r == 3 || r == 4;
    }
    case CT_OP_DROPOUT:
        /* Only the inference form: no training_mode input, or a constant false one. */
        if (n->n_in >= 3 && n->in[2]) {
            const ct_value *tm = n->in[2];
            return tm->data && ldi(tm->data, tm->dtype, 0) == 0;
        }
        return true;
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH:
    case CT_OP_LEAKY_RELU: case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP: case CT_OP_LOG: case CT_OP_ERF:
    case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT: case CT_OP_IDENTITY: case CT_OP_CLIP:
    case CT_OP_SOFTMAX: case CT_OP_LOG_SOFTMAX: case CT_OP_CAST:
    case CT_OP_ADD: case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW:
    case CT_OP_MAX: case CT_OP_MIN: case CT_OP_SUM: case CT_OP_EQUAL: case CT_OP_LESS:
    case CT_OP_GREATER: case CT_OP_AND: case CT_OP_OR: case CT_OP_WHERE:
    case CT_OP_BATCH_NORM: case CT_OP_GLOBAL_AVERAGE_POOL: case CT_OP_GLOBAL_MAX_POOL:
    case CT_OP_GEMM: case CT_OP_MATMUL:
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_SUM: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2: case CT_OP_ARG_MAX:
    case CT_OP_FLATTEN: case CT_OP_RESHAPE: case CT_OP_TRANSPOSE: case CT_OP_CONCAT:
    case CT_OP_SPLIT: case CT_OP_SLICE: case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE:
    case CT_OP_GATHER: case CT_OP_SHAPE: case CT_OP_SIZE: case CT_OP_CONSTANT:
    case CT_OP_CONSTANT_OF_SHAPE: case CT_OP_EXPAND: case CT_OP_TILE: case CT_OP_RANGE:
    case CT_OP_PAD:
        return true;
    default:
        return false;
    }
    return false;
}

ct_status ct_eval_node(const ct_node *n, const void *const *in, void *const *out)
{
    /* Every value must have a known static shape; inputs must be present
     * unless optional. */
    for (int i = 0; i < n->n_in; i++) {
        const ct_value *v = n->in[i];
        if (!v) continue;
        if (!v->shape_known || !ct_shape_is_static(&v->shape))
            return FAIL("input %d ('%s') has no static shape", i, v->name);
        bool shape_only = n->op == CT_OP_SHAPE || n->op == CT_OP_SIZE; /* read no data */
        if (!in[i] && numel(v) > 0 && !shape_only) return FAIL("input %d ('%s') has no data", i, v->name);
    }
    for (int i = 0; i < n->n_out; i++) {
        const ct_value *v = n->out[i];
        if (!v) continue;
        if (!v->shape_known || !ct_shape_is_static(&v->shape))
            return FAIL("output %d ('%s') has no static shape", i, v->name);
        if (!out[i] && numel(v) > 0) return FAIL("output %d ('%s') has no buffer", i, v->name);
    }
    if (!ct_eval_supports(n)) return FAIL("not supported by the reference interpreter");
    if (ct_eval_methods_supports(n)) return ct_eval_methods_node(n, in, out);
    if (ct_eval_fuse_supports(n)) return ct_eval_fuse_node(n, in, out);
    if (ct_eval_fused_supports(n)) return ct_eval_fused_node(n, in, out);
    if (!strcmp(ct_op_table[n->op].domain, "ai.contra")) return ct_eval_train_node(n, in, out);
    switch (n->op) { /* ops whose output 0 has the input's shape */
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH:
    case CT_OP_LEAKY_RELU: case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP: case CT_OP_LOG: case CT_OP_ERF:
    case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT: case CT_OP_CLIP: case CT_OP_SOFTMAX:
    case CT_OP_LOG_SOFTMAX: case CT_OP_CAST: case CT_OP_BATCH_NORM:
        if (!ct_shape_equal(&n->in[0]->shape, &n->out[0]->shape)) return FAIL("output shape differs from the input's");
        if (n->op != CT_OP_CAST && n->in[0]->dtype != n->out[0]->dtype) return FAIL("output type differs from the input's");
        break;
    default:
        break;
    }
    switch (n->op) {
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH:
    case CT_OP_LEAKY_RELU: case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP: case CT_OP_LOG: case CT_OP_ERF:
    case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT:
        return eval_unary(n, in, out);
    case CT_OP_IDENTITY: case CT_OP_FLATTEN: case CT_OP_RESHAPE: case CT_OP_SQUEEZE:
    case CT_OP_UNSQUEEZE: case CT_OP_DROPOUT:
        return eval_copy(n, in, out);
    case CT_OP_CLIP: return eval_clip(n, in, out);
    case CT_OP_SOFTMAX: case CT_OP_LOG_SOFTMAX: return eval_softmax(n, in, out);
    case CT_OP_CAST: return eval_cast(n, in, out);
    case CT_OP_ADD: case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW:
    case CT_OP_MAX: case CT_OP_MIN: case CT_OP_SUM: case CT_OP_EQUAL: case CT_OP_LESS:
    case CT_OP_GREATER: case CT_OP_AND: case CT_OP_OR:
        return eval_broadcast(n, in, out);
    case CT_OP_WHERE: return eval_where(n, in, out);
    case CT_OP_CONV: return eval_conv(n, in, out);
    case CT_OP_BATCH_NORM: return eval_batch_norm(n, in, out);
    case CT_OP_MAX_POOL: case CT_OP_AVERAGE_POOL: return eval_pool(n, in, out);
    case CT_OP_GLOBAL_AVERAGE_POOL: case CT_OP_GLOBAL_MAX_POOL: return eval_global_pool(n, in, out);
    case CT_OP_GEMM: return eval_gemm(n, in, out);
    case CT_OP_MATMUL: return eval_matmul(n, in, out);
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_SUM: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2:
        return eval_reduce(n, in, out);
    case CT_OP_ARG_MAX: return eval_argmax(n, in, out);
    case CT_OP_TRANSPOSE: return eval_transpose(n, in, out);
    case CT_OP_CONCAT: return eval_concat(n, in, out);
    case CT_OP_SPLIT: return eval_split(n, in, out);
    case CT_OP_SLICE: return eval_slice(n, in, out);
    case CT_OP_GATHER: return eval_gather(n, in, out);
    case CT_OP_SHAPE: return eval_shape(n, out);
    case CT_OP_SIZE:
        sti(out[0], n->out[0]->dtype, 0, numel(n->in[0]));
        return CT_OK;
    case CT_OP_CONSTANT: return eval_constant(n, out);
    case CT_OP_CONSTANT_OF_SHAPE: return eval_constant_of_shape(n, out);
    case CT_OP_EXPAND: return eval_expand(n, in, out);
    case CT_OP_TILE: return eval_tile(n, in, out);
    case CT_OP_RANGE: return eval_range(n, in, out);
    case CT_OP_PAD: return eval_pad(n, in, out);
    default: break;
    }
    return FAIL("not supported by the reference interpreter");
}

ct_status ct_eval_graph(const ct_graph *g, void **buf, bool *owned)
{
    for (int k = 0; k < g->n_nodes; k++) {
        const ct_node *n = g->nodes[k];
        const void *in_fixed[64];
        void *out_fixed[64];
        /* fused nodes have hundreds of operands */
        const void **in = n->n_in > 64 ? malloc(sizeof(void *) * (size_t)n->n_in) : in_fixed;
        void **out = n->n_out > 64 ? malloc(sizeof(void *) * (size_t)n->n_out) : out_fixed;
        if (!in || !out) abort();
        for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] ? buf[n->in[j]->id] : NULL;
        for (int j = 0; j < n->n_out; j++) {
            const ct_value *v = n->out[j];
            out[j] = NULL;
            if (!v) continue;
            if (!owned[v->id]) {
                size_t nb = ct_value_nbytes(v);
                buf[v->id] = malloc(nb ? nb : 1);
                if (!buf[v->id]) return ct_node_errorf(n, "out of memory for '%s'", v->name);
                owned[v->id] = true;
            }
            out[j] = buf[v->id];
        }
        ct_status st = ct_eval_node(n, in, out);
        if (in != in_fixed) free((void *)in);
        if (out != out_fixed) free(out);
        if (st) return st;
    }
    return CT_OK;
}

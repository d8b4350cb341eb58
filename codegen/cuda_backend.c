/* cuda_backend.c — lowers a shape-inferred, memory-planned graph to one CUDA
 * source (model.cu): a __global__ kernel per node (grid-stride elementwise
 * loops, block reductions with warp shuffles + shared memory), cuBLAS for
 * GEMM/MatMul and im2col/col2im convolution, a host forward() that launches
 * them through CT_LAUNCH on device pointers, and the ct_program descriptor of
 * runtime/program.h (ABI 2: device programs).  The same file builds with nvcc
 * and, against runtime/cuda_emu, with the host C compiler (cuda_build.c). */
#include "codegen.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emit.h"
#include "program.h"

#define ALIGN 64
#define MAXA 16                       /* operands of one elementwise kernel */
#define BLOCK 256                     /* threads of an elementwise block */
#define CONV_MAX_FLOATS (1 << 24)     /* im2col scratch budget per chunk of images */

typedef struct {
    const ct_graph *g;
    ct_emitter k;      /* kernels */
    ct_emitter f;      /* forward() body (host code) */
    int *region;       /* per value id: CT_PT_REGION_*, -1 if not placed */
    int64_t *off;      /* per value id: byte offset in its region */
    int64_t persist_bytes, arena_bytes, scratch_off, scratch_bytes;
    char *errors;      /* unsupported nodes, one per line */
    size_t errors_len;
    int n_errors;
    int n_kernels;
    bool uses_nccl; /* collectives: the program includes and links NCCL */
    int n_buckets;  /* AllReduce nodes: each runs on ct_comm_stream between fork/join events */
    int *join_of;   /* per value id: 1 + the bucket whose all-reduce writes it until joined, else 0 */
    /* the kernel being emitted */
    const ct_node *node;
    char kname[96];
    const char *ksuffix; /* appended to the kernel name (NULL: none) */
    char args[8192];   /* its launch arguments */
} cg;

/* ------------------------------------------------------------ helpers (as in c_backend.c) */

static int64_t align_up(int64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static const char *ctype_of(ct_dtype t)
{
    switch (t) {
    case CT_F32: return "float";
    case CT_F64: return "double";
    case CT_I64: return "int64_t";
    case CT_I32: return "int32_t";
    case CT_I8: return "int8_t";
    case CT_U8: return "uint8_t";
    case CT_BOOL: return "uint8_t";
    default: return NULL;
    }
}

static int pt_dtype(ct_dtype t) { return ct_dtype_to_onnx(t); }

static const char *pt_kind_name(int k)
{
    static const char *const names[] = {"CT_PT_INPUT", "CT_PT_PARAM", "CT_PT_STATE", "CT_PT_CONST", "CT_PT_TEMP"};
    return names[k];
}

static const char *pt_dtype_name(int t)
{
    switch (t) {
    case CT_PT_FLOAT: return "CT_PT_FLOAT";
    case CT_PT_UINT8: return "CT_PT_UINT8";
    case CT_PT_INT8: return "CT_PT_INT8";
    case CT_PT_INT32: return "CT_PT_INT32";
    case CT_PT_INT64: return "CT_PT_INT64";
    case CT_PT_BOOL: return "CT_PT_BOOL";
    case CT_PT_FLOAT16: return "CT_PT_FLOAT16";
    case CT_PT_DOUBLE: return "CT_PT_DOUBLE";
    default: return "CT_PT_BFLOAT16";
    }
}

static int pt_kind(ct_value_kind k)
{
    switch (k) {
    case CT_VALUE_INPUT: return CT_PT_INPUT;
    case CT_VALUE_PARAM: return CT_PT_PARAM;
    case CT_VALUE_STATE: return CT_PT_STATE;
    case CT_VALUE_CONST: return CT_PT_CONST;
    default: return CT_PT_TEMP;
    }
}

static void unsupported(cg *c, const ct_node *n, const char *fmt, ...) CT_PRINTF(3, 4);

static void unsupported(cg *c, const ct_node *n, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    char line[1024];
    int len = snprintf(line, sizeof line, "\n  %s (node '%s'): %s", ct_op_table[n->op].name,
                       n->name ? n->name : "", why);
    if (len < 0) return;
    if ((size_t)len >= sizeof line) len = sizeof line - 1;
    char *nb = realloc(c->errors, c->errors_len + (size_t)len + 1);
    if (!nb) abort();
    memcpy(nb + c->errors_len, line, (size_t)len + 1);
    c->errors = nb;
    c->errors_len += (size_t)len;
    c->n_errors++;
}

/* A float as a C literal. */
static const char *flit(char *buf, size_t n, double f)
{
    if (isnan(f)) snprintf(buf, n, "NAN");
    else if (isinf(f)) snprintf(buf, n, f > 0 ? "INFINITY" : "(-INFINITY)");
    else {
        char t[48];
        snprintf(t, sizeof t, "%.9g", f);
        if (!strpbrk(t, ".eEn")) strcat(t, ".0");
        snprintf(buf, n, f < 0 ? "(%sf)" : "%sf", t);
    }
    return buf;
}

/* Text safe inside a C comment. */
static void comment_safe(char *dst, size_t n, const char *s)
{
    size_t j = 0;
    for (size_t i = 0; s && s[i] && j + 2 < n; i++) {
        char ch = s[i];
        if (ch == '*' && s[i + 1] == '/') { dst[j++] = '*'; dst[j++] = ' '; continue; }
        dst[j++] = (ch == '\n' || ch == '\r') ? ' ' : ch;
    }
    dst[j] = 0;
}

/* A C string literal body. */
static void emit_cstring(ct_emitter *e, const char *s)
{
    ct_emit_raw(e, "\"");
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') ct_emit_raw(e, "\\%c", *p);
        else if (*p < 32 || *p >= 127) ct_emit_raw(e, "\\%03o", *p);
        else ct_emit_raw(e, "%c", *p);
    }
    ct_emit_raw(e, "\"");
}

static void shape_dims_str(char *buf, size_t n, const ct_shape *s)
{
    size_t j = 0;
    j += (size_t)snprintf(buf + j, n - j, "(");
    for (int d = 0; d < s->rank && j < n; d++)
        j += (size_t)snprintf(buf + j, n - j, "%s%lld", d ? "," : "", (long long)s->dims[d]);
    if (j < n) snprintf(buf + j, n - j, ")");
}

static int64_t numel(const ct_value *v) { return ct_shape_numel(&v->shape); }

/* Integer contents of a constant input (int64 or int32); false if not constant. */
static bool const_ints(const ct_value *v, int64_t *out, int max, int *count)
{
    if (!v || !v->data || v->kind == CT_VALUE_TEMP || v->kind == CT_VALUE_INPUT) return false;
    int64_t n = numel(v);
    if (n < 0 || n > max) return false;
    for (int64_t i = 0; i < n; i++) {
        if (v->dtype == CT_I64) out[i] = ((const int64_t *)v->data)[i];
        else if (v->dtype == CT_I32) out[i] = ((const int32_t *)v->data)[i];
        else return false;
    }
    *count = (int)n;
    return true;
}

static bool const_float(const ct_value *v, double *out)
{
    if (!v || !v->data || v->kind == CT_VALUE_TEMP || v->kind == CT_VALUE_INPUT || numel(v) != 1) return false;
    switch (v->dtype) {
    case CT_F32: *out = ((const float *)v->data)[0]; return true;
    case CT_F64: *out = ((const double *)v->data)[0]; return true;
    case CT_I64: *out = (double)((const int64_t *)v->data)[0]; return true;
    case CT_I32: *out = ((const int32_t *)v->data)[0]; return true;
    default: return false;
    }
}

static void contiguous_strides(const ct_shape *s, int64_t *st)
{
    int64_t acc = 1;
    for (int d = s->rank - 1; d >= 0; d--) {
        st[d] = acc;
        acc *= s->dims[d];
    }
}

/* Element strides of `in` broadcast (numpy rules) to `out`'s rank. */
static void broadcast_strides(const ct_shape *in, const ct_shape *out, int64_t *st)
{
    int64_t cs[CT_MAX_RANK];
    contiguous_strides(in, cs);
    for (int d = 0; d < out->rank; d++) {
        int id = d - (out->rank - in->rank);
        st[d] = (id < 0 || in->dims[id] == 1) ? 0 : cs[id];
    }
}

static bool overlaps(const cg *c, const ct_value *a, const ct_value *b)
{
    if (a == b) return true;
    if (c->region[a->id] != c->region[b->id]) return false;
    int64_t a0 = c->off[a->id], a1 = a0 + (int64_t)ct_value_nbytes(a);
    int64_t b0 = c->off[b->id], b1 = b0 + (int64_t)ct_value_nbytes(b);
    return a0 < b1 && b0 < a1;
}

static bool operand_aliased(const cg *c, const ct_node *n, const ct_value *v)
{
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i] != v && overlaps(c, n->in[i], v)) return true;
    for (int i = 0; i < n->n_out; i++)
        if (n->out[i] && n->out[i] != v && overlaps(c, n->out[i], v)) return true;
    return false;
}

typedef struct {
    int rank;
    int64_t dims[CT_MAX_RANK];
    int n;                            /* operands */
    char name[MAXA][16];              /* operand pointer names */
    int64_t base[MAXA];               /* element offset */
    int64_t st[MAXA][CT_MAX_RANK];    /* element stride per output dim */
} ew_view;

static void view_init(ew_view *v, const ct_shape *out)
{
    memset(v, 0, sizeof *v);
    v->rank = out->rank;
    memcpy(v->dims, out->dims, sizeof v->dims);
}

static void view_add(ew_view *v, const char *name, int64_t base, const int64_t *st)
{
    CT_ASSERT(v->n < MAXA);
    snprintf(v->name[v->n], sizeof v->name[0], "%s", name);
    v->base[v->n] = base;
    memcpy(v->st[v->n], st, sizeof(int64_t) * (size_t)v->rank);
    v->n++;
}

/* Drop unit dims, merge dims that are contiguous for every operand. */
static void view_collapse(ew_view *v)
{
    int r = 0;
    for (int d = 0; d < v->rank; d++) {
        if (v->dims[d] == 1) continue;
        v->dims[r] = v->dims[d];
        for (int k = 0; k < v->n; k++) v->st[k][r] = v->st[k][d];
        r++;
    }
    v->rank = r;
    if (r == 0) return;
    int w = 0;
    for (int d = 1; d < v->rank; d++) {
        bool ok = true;
        for (int k = 0; k < v->n; k++)
            if (v->st[k][w] != v->st[k][d] * v->dims[d]) ok = false;
        if (ok) {
            v->dims[w] *= v->dims[d];
            for (int k = 0; k < v->n; k++) v->st[k][w] = v->st[k][d];
        } else {
            w++;
            v->dims[w] = v->dims[d];
            for (int k = 0; k < v->n; k++) v->st[k][w] = v->st[k][d];
        }
    }
    v->rank = w + 1;
}

static void index_expr(char *buf, size_t n, const ew_view *v, int k)
{
    size_t j = 0;
    buf[0] = 0;
    if (v->base[k]) j += (size_t)snprintf(buf + j, n - j, "%lld", (long long)v->base[k]);
    for (int d = 0; d < v->rank && j < n; d++) {
        if (!v->st[k][d]) continue;
        if (v->st[k][d] == 1) j += (size_t)snprintf(buf + j, n - j, "%si%d", j ? " + " : "", d);
        else j += (size_t)snprintf(buf + j, n - j, "%si%d * %lld", j ? " + " : "", d, (long long)v->st[k][d]);
    }
    if (!j) snprintf(buf, n, "0");
}

static bool is_float(ct_dtype t) { return t == CT_F32 || t == CT_F64; }

/* The scalar expression of an elementwise op over locals a0..a<n-1>. */
static bool ew_expr(cg *c, const ct_node *n, char *buf, size_t len)
{
    const ct_emitter *e = &c->k;
    ct_dtype t = n->in[0] ? n->in[0]->dtype : CT_F32;
    bool fl = is_float(t);
    char l1[48], l2[48];
#define M(f) ct_emit_math(e, f)
    switch (n->op) {
    case CT_OP_RELU: snprintf(buf, len, "a0 > 0 ? a0 : 0"); return true;
    case CT_OP_SIGMOID:
        if (!fl) return false;
        snprintf(buf, len, "1.0f / (1.0f + %s(-a0))", M(CT_MATH_EXP));
        return true;
    case CT_OP_HARD_SIGMOID: {
        if (!fl) return false;
        double al = ct_node_attr_float(n, "alpha", 0.2f), be = ct_node_attr_float(n, "beta", 0.5f);
        snprintf(buf, len, "%s(0.0f, %s(1.0f, %s * a0 + %s))", M(CT_MATH_FMAX), M(CT_MATH_FMIN),
                 flit(l1, sizeof l1, al), flit(l2, sizeof l2, be));
        return true;
    }
    case CT_OP_HARD_SWISH:
        if (!fl) return false;
        snprintf(buf, len, "a0 * %s(0.0f, %s(1.0f, a0 * %s + 0.5f))", M(CT_MATH_FMAX), M(CT_MATH_FMIN),
                 flit(l1, sizeof l1, 1.0f / 6.0f));
        return true;
    case CT_OP_LEAKY_RELU:
        if (!fl) return false;
        snprintf(buf, len, "a0 >= 0 ? a0 : %s * a0", flit(l1, sizeof l1, ct_node_attr_float(n, "alpha", 0.01f)));
        return true;
    case CT_OP_TANH: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_TANH)); return true;
    case CT_OP_SQRT: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_SQRT)); return true;
    case CT_OP_RECIPROCAL: if (!fl) return false; snprintf(buf, len, "1.0f / a0"); return true;
    case CT_OP_NEG: snprintf(buf, len, "-a0"); return true;
    case CT_OP_ABS: snprintf(buf, len, fl ? "%s(a0)" : "a0 < 0 ? -a0 : a0", M(CT_MATH_FABS)); return true;
    case CT_OP_EXP: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_EXP)); return true;
    case CT_OP_LOG: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_LOG)); return true;
    case CT_OP_ERF: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_ERF)); return true;
    case CT_OP_FLOOR: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_FLOOR)); return true;
    case CT_OP_CEIL: if (!fl) return false; snprintf(buf, len, "%s(a0)", M(CT_MATH_CEIL)); return true;
    case CT_OP_NOT: snprintf(buf, len, "!a0"); return true;
    case CT_OP_IDENTITY: case CT_OP_EXPAND: case CT_OP_DROPOUT: snprintf(buf, len, "a0"); return true;
    case CT_OP_CAST:
        if (n->out[0]->dtype == CT_BOOL) snprintf(buf, len, "a0 != 0");
        else snprintf(buf, len, "(%s)a0", ctype_of(n->out[0]->dtype));
        return true;
    case CT_OP_CLIP: {
        double lo, hi;
        char lo_s[64] = "", hi_s[64] = "";
        if (n->n_in > 1 && n->in[1]) {
            if (const_float(n->in[1], &lo)) flit(lo_s, sizeof lo_s, lo);
            else snprintf(lo_s, sizeof lo_s, "x1[0]");
        }
        if (n->n_in > 2 && n->in[2]) {
            if (const_float(n->in[2], &hi)) flit(hi_s, sizeof hi_s, hi);
            else snprintf(hi_s, sizeof hi_s, "x2[0]");
        }
        if (lo_s[0] && hi_s[0]) snprintf(buf, len, "a0 < %s ? %s : a0 > %s ? %s : a0", lo_s, lo_s, hi_s, hi_s);
        else if (lo_s[0]) snprintf(buf, len, "a0 < %s ? %s : a0", lo_s, lo_s);
        else if (hi_s[0]) snprintf(buf, len, "a0 > %s ? %s : a0", hi_s, hi_s);
        else snprintf(buf, len, "a0");
        return true;
    }
    case CT_OP_ADD: snprintf(buf, len, "a0 + a1"); return true;
    case CT_OP_SUB: snprintf(buf, len, "a0 - a1"); return true;
    case CT_OP_MUL: snprintf(buf, len, "a0 * a1"); return true;
    case CT_OP_DIV: snprintf(buf, len, "a0 / a1"); return true;
    case CT_OP_POW:
        if (t == CT_F32) snprintf(buf, len, "%s(a0, (float)a1)", M(CT_MATH_POW));
        else snprintf(buf, len, "(%s)pow((double)a0, (double)a1)", ctype_of(t));
        return true;
    case CT_OP_EQUAL: snprintf(buf, len, "a0 == a1"); return true;
    case CT_OP_LESS: snprintf(buf, len, "a0 < a1"); return true;
    case CT_OP_GREATER: snprintf(buf, len, "a0 > a1"); return true;
    case CT_OP_AND: snprintf(buf, len, "a0 && a1"); return true;
    case CT_OP_OR: snprintf(buf, len, "a0 || a1"); return true;
    case CT_OP_WHERE: snprintf(buf, len, "a0 ? a1 : a2"); return true;
    case CT_OP_SUM: case CT_OP_MAX: case CT_OP_MIN: {
        size_t j = (size_t)snprintf(buf, len, "a0");
        for (int i = 1; i < n->n_in && j < len; i++) {
            if (n->op == CT_OP_SUM) j += (size_t)snprintf(buf + j, len - j, " + a%d", i);
            else {
                /* ((prev) op a_i) */
                char prev[4096];
                snprintf(prev, sizeof prev, "%s", buf);
                j = (size_t)snprintf(buf, len, "(%s) %s a%d ? (%s) : a%d", prev, n->op == CT_OP_MAX ? ">" : "<",
                                     i, prev, i);
            }
        }
        return true;
    }
    default: return false;
    }
#undef M
}

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

static int64_t prod(const int64_t *d, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

/* j<k>: the input coordinate read for output coordinate i<k> of Pad/Tile. */
static void emit_source_coord(ct_emitter *e, const char *mode, int k, int64_t D, int64_t pad)
{
    if (!strcmp(mode, "tile")) ct_emit_line(e, "const int64_t j%d = i%d %% %lld;", k, k, (long long)D);
    else if (!strcmp(mode, "constant")) ct_emit_line(e, "const int64_t j%d = i%d - %lld;", k, k, (long long)pad);
    else if (!strcmp(mode, "edge") || D == 1)
        ct_emit_line(e, "const int64_t j%d = i%d < %lld ? 0 : i%d >= %lld ? %lld : i%d - %lld;", k, k, (long long)pad,
                     k, (long long)(D + pad), (long long)(D - 1), k, (long long)pad);
    else { /* reflect, without repeating the edge */
        ct_emit_line(e, "int64_t j%d = i%d - %lld;", k, k, (long long)pad);
        ct_emit_line(e, "while (j%d < 0 || j%d >= %lld) j%d = j%d < 0 ? -j%d : %lld - j%d;", k, k, (long long)D, k, k,
                     k, (long long)(2 * (D - 1)), k);
    }
}

/* 2-D window geometry of Conv/MaxPool/AveragePool; 1-D is 2-D with height 1. */
typedef struct {
    int64_t N, C, H, W, OC, OH, OW;
    int64_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
} win2d;

static bool window_geometry(cg *c, const ct_node *n, const int64_t *kernel_hw, win2d *w)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    int sr = x->shape.rank - 2;
    if (sr != 1 && sr != 2) { unsupported(c, n, "%d spatial dimensions (1 or 2 supported)", sr); return false; }
    int cnt;
    int64_t ks[2], st[2] = {1, 1}, dl[2] = {1, 1}, pd[4] = {0, 0, 0, 0};
    for (int i = 0; i < sr; i++) ks[i] = kernel_hw[i];
    const int64_t *a = ct_node_attr_ints(n, "strides", &cnt);
    if (a && cnt == sr) for (int i = 0; i < sr; i++) st[i] = a[i];
    a = ct_node_attr_ints(n, "dilations", &cnt);
    if (a && cnt == sr) for (int i = 0; i < sr; i++) dl[i] = a[i];
    a = ct_node_attr_ints(n, "pads", &cnt);
    if (a && cnt == 2 * sr) for (int i = 0; i < 2 * sr; i++) pd[i] = a[i];
    const char *ap = ct_node_attr_string(n, "auto_pad", "NOTSET");
    const int64_t *xd = x->shape.dims + 2, *yd = y->shape.dims + 2;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
        for (int i = 0; i < sr; i++) {
            int64_t total = (yd[i] - 1) * st[i] + (ks[i] - 1) * dl[i] + 1 - xd[i];
            if (total < 0) total = 0;
            int64_t small = total / 2, big = total - small;
            pd[i] = !strcmp(ap, "SAME_UPPER") ? small : big;
            pd[i + sr] = total - pd[i];
        }
    } else if (!strcmp(ap, "VALID")) {
        for (int i = 0; i < 2 * sr; i++) pd[i] = 0;
    }
    w->N = x->shape.dims[0];
    w->C = x->shape.dims[1];
    w->OC = y->shape.dims[1];
    if (sr == 1) {
        w->H = 1, w->W = xd[0], w->OH = 1, w->OW = yd[0];
        w->kh = 1, w->kw = ks[0], w->sh = 1, w->sw = st[0], w->dh = 1, w->dw = dl[0];
        w->pt = 0, w->pb = 0, w->pl = pd[0], w->pr = pd[1];
    } else {
        w->H = xd[0], w->W = xd[1], w->OH = yd[0], w->OW = yd[1];
        w->kh = ks[0], w->kw = ks[1], w->sh = st[0], w->sw = st[1], w->dh = dl[0], w->dw = dl[1];
        w->pt = pd[0], w->pl = pd[1], w->pb = pd[2], w->pr = pd[3];
    }
    return true;
}

static bool train_f32(cg *c, const ct_node *n)
{
    for (int i = 0; i < n->n_out; i++)
        if (n->out[i] && n->out[i]->dtype != CT_F32) {
            unsupported(c, n, "training kernels are float32 only");
            return false;
        }
    return true;
}

/* The ct_win of a backward window op: xs the forward input shape, ys the
 * forward output shape, M output channels, kernel from ks (or attributes). */
static bool train_window(cg *c, const ct_node *n, const ct_shape *xs, const ct_shape *ys, const int64_t *ks_w,
                         int64_t *pend, int64_t *geo, char *buf, size_t len)
{
    int sp = xs->rank - 2, cnt;
    if (sp != 1 && sp != 2) { unsupported(c, n, "only 1-D and 2-D windows"); return false; }
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, p[4] = {0, 0, 0, 0};
    const int64_t *a = ct_node_attr_ints(n, "kernel_shape", &cnt);
    if (a && cnt == sp) for (int i = 0; i < sp; i++) k[i] = a[i];
    else if (ks_w) for (int i = 0; i < sp; i++) k[i] = ks_w[i];
    else { unsupported(c, n, "kernel_shape missing"); return false; }
    if ((a = ct_node_attr_ints(n, "strides", &cnt)) && cnt == sp) for (int i = 0; i < sp; i++) s[i] = a[i];
    if ((a = ct_node_attr_ints(n, "dilations", &cnt)) && cnt == sp) for (int i = 0; i < sp; i++) d[i] = a[i];
    if ((a = ct_node_attr_ints(n, "pads", &cnt)) && cnt == 2 * sp) for (int i = 0; i < 2 * sp; i++) p[i] = a[i];
    int64_t H, W, OH, OW, kh, kw, sh, sw, dh, dw, ph, pw;
    if (sp == 1) {
        H = 1, OH = 1, kh = 1, sh = 1, dh = 1, ph = 0, pend[0] = 0;
        W = xs->dims[2], OW = ys->dims[2], kw = k[0], sw = s[0], dw = d[0], pw = p[0], pend[1] = p[1];
    } else {
        H = xs->dims[2], OH = ys->dims[2], kh = k[0], sh = s[0], dh = d[0], ph = p[0], pend[0] = p[2];
        W = xs->dims[3], OW = ys->dims[3], kw = k[1], sw = s[1], dw = d[1], pw = p[1], pend[1] = p[3];
    }
    int64_t G = ct_node_attr_int(n, "group", 1);
    geo[0] = kh, geo[1] = kw, geo[2] = OH, geo[3] = OW, geo[4] = H, geo[5] = W;
    geo[6] = sh == 1 && sw == 1 && ph == 0 && pw == 0 && kh == 1 && kw == 1 && OH == H && OW == W;
    snprintf(buf, len, "{%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld}",
             (long long)xs->dims[0], (long long)xs->dims[1], (long long)H, (long long)W, (long long)ys->dims[1],
             (long long)OH, (long long)OW, (long long)G, (long long)kh, (long long)kw, (long long)sh, (long long)sw,
             (long long)ph, (long long)pw, (long long)dh, (long long)dw);
    return true;
}

/* A float attribute as the decimal it was written as (7 significant digits). */
static double attr_decimal(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

/* The source of an in-place state update: planned without arena bytes. */
static bool on_state(const ct_graph *g, const ct_value *v)
{
    for (int i = 0; i < g->n_assigns; i++)
        if (g->assigns[i].src == v && ct_graph_assign_in_place(g, i)) return true;
    return false;
}

static ct_status place_values(cg *c)
{
    const ct_graph *g = c->g;
    bool planned = g->arena_bytes >= 0;
    int64_t naive = 0;
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        c->region[i] = -1;
        if (!v->shape_known || !ct_shape_is_static(&v->shape))
            return ct_errorf("value '%s' has no static shape (run shape inference with a fixed batch)", v->name);
        if (v->kind == CT_VALUE_TEMP) {
            c->region[i] = CT_PT_REGION_ARENA;
            if (planned) {
                if (v->offset < 0 && ct_value_nbytes(v) > 0 && !on_state(g, v))
                    return ct_errorf("value '%s' has no arena offset: the memory plan is incomplete", v->name);
                c->off[i] = v->offset < 0 ? 0 : v->offset;
            } else {
                c->off[i] = naive;
                naive = align_up(naive + (int64_t)ct_value_nbytes(v));
            }
        } else {
            if (v->kind != CT_VALUE_INPUT && !v->data && ct_value_nbytes(v))
                return ct_errorf("%s '%s' has no data", ct_value_kind_name(v->kind), v->name);
            c->region[i] = CT_PT_REGION_PERSIST;
            c->off[i] = c->persist_bytes;
            c->persist_bytes = align_up(c->persist_bytes + (int64_t)ct_value_nbytes(v));
        }
    }
    c->arena_bytes = planned ? g->arena_bytes : naive;
    return CT_OK;
}

/* State updates (g->assigns). When nothing reads the destination after the
 * source's producer (ct_graph_assign_in_place: optimizer steps, BatchNorm
 * running statistics, counters, the MoCo queue once memory_plan has scheduled
 * its push last), the source is placed on the destination's own bytes and the
 * kernel updates it in place (every training kernel reads an element before
 * writing it); memory_plan gave it no arena bytes. Otherwise the source gets
 * its own persistent bytes (arena bytes may be reused before the end of the
 * program) and forward() copies it into the destination at the end. copy[i]
 * tells which. */
static ct_status place_assigns(cg *c, bool *copy)
{
    const ct_graph *g = c->g;
    for (int i = 0; i < g->n_assigns; i++) {
        const ct_value *dst = g->assigns[i].dst, *src = g->assigns[i].src;
        copy[i] = true;
        if (dst->kind != CT_VALUE_PARAM && dst->kind != CT_VALUE_STATE)
            return ct_errorf("state update of '%s': the destination must be a PARAM or STATE value", dst->name);
        if (dst->dtype != src->dtype || ct_value_nbytes(dst) != ct_value_nbytes(src))
            return ct_errorf("state update '%s' <- '%s': dtype or size differ", dst->name, src->name);
        if (src->kind != CT_VALUE_TEMP || !src->producer || c->region[src->id] != CT_PT_REGION_ARENA) continue;
        c->region[src->id] = CT_PT_REGION_PERSIST;
        if (ct_graph_assign_in_place(g, i)) {
            c->off[src->id] = c->off[dst->id];
            copy[i] = false;
        } else {
            c->off[src->id] = c->persist_bytes;
            c->persist_bytes = align_up(c->persist_bytes + (int64_t)ct_value_nbytes(src));
        }
    }
    return CT_OK;
}

/* ------------------------------------------------------------ kernel frame */

/* "(type *)(A + off)": a value's device pointer inside forward(). */
static const char *vptr(const cg *c, const ct_value *v, bool cnst, char *buf, size_t n)
{
    snprintf(buf, n, "(%s%s *)(%s + %lld)", cnst ? "const " : "", ctype_of(v->dtype),
             c->region[v->id] == CT_PT_REGION_ARENA ? "A" : "P", (long long)c->off[v->id]);
    return buf;
}

/* Threads of a block that reduces `count` elements: a multiple of 32, at most 256. */
static int red_block(int64_t count)
{
    int64_t b = (count + 31) / 32 * 32;
    return (int)(b < 32 ? 32 : b > 256 ? 256 : b);
}

static void node_comment(cg *c, const ct_node *n, ct_emitter *e)
{
    char nm[256], sh[128];
    comment_safe(nm, sizeof nm, n->name);
    ct_emit_raw(e, "\n/* %s, node \"%s\":", ct_op_table[n->op].name, nm);
    for (int i = 0; i < n->n_in; i++) {
        if (!n->in[i]) continue;
        shape_dims_str(sh, sizeof sh, &n->in[i]->shape);
        ct_emit_raw(e, " x%d%s", i, sh);
    }
    ct_emit_raw(e, " ->");
    for (int i = 0; i < n->n_out; i++) {
        if (!n->out[i]) continue;
        shape_dims_str(sh, sizeof sh, &n->out[i]->shape);
        ct_emit_raw(e, " y%d%s", i, sh);
    }
    ct_emit_raw(e, " */\n");
    (void)c;
}

/* Open a __global__ kernel with typed operands x<i> (inputs), y<i> (outputs)
 * and `scratch` when asked; `block` > 0 adds __launch_bounds__. The launch
 * arguments are kept in c->args for launch(). */
static void kernel_open(cg *c, const ct_node *n, bool scratch, int block)
{
    ct_emitter *e = &c->k;
    char lower[64], sh[128], pb[128];
    size_t j = 0;
    for (const char *p = ct_op_table[n->op].name; *p && j + 1 < sizeof lower; p++)
        lower[j++] = (char)tolower((unsigned char)*p);
    lower[j] = 0;
    snprintf(c->kname, sizeof c->kname, "k%d_%s%s", n->id, lower, c->ksuffix ? c->ksuffix : "");
    c->node = n;
    c->n_kernels++;
    node_comment(c, n, e);
    if (block > 0) ct_emit_raw(e, "__global__ void __launch_bounds__(%d) %s(", block, c->kname);
    else ct_emit_raw(e, "%s %s(", c->k.d->kernel_prefix, c->kname);
    bool first = true;
    size_t al = 0;
    c->args[0] = 0;
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? n->n_out : n->n_in;
        for (int i = 0; i < cnt; i++) {
            const ct_value *v = pass ? n->out[i] : n->in[i];
            if (!v) continue;
            char vn[256];
            comment_safe(vn, sizeof vn, v->name);
            shape_dims_str(sh, sizeof sh, &v->shape);
            bool alias = operand_aliased(c, n, v);
            ct_emit_raw(e, "%s\n    %s%s *%s%s%c%d /* %s %s */", first ? "" : ",", pass ? "" : "const ",
                        ctype_of(v->dtype), alias ? "" : c->k.d->restrict_kw, alias ? "" : " ", pass ? 'y' : 'x', i,
                        sh, vn);
            al += (size_t)snprintf(c->args + al, sizeof c->args - al, "%s%s", first ? "" : ", ",
                                   vptr(c, v, !pass, pb, sizeof pb));
            first = false;
        }
    }
    if (scratch) {
        ct_emit_raw(e, "%s\n    float *%s scratch", first ? "" : ",", c->k.d->restrict_kw);
        snprintf(c->args + al, sizeof c->args - al, "%s(float *)(A + %lld)", first ? "" : ", ", (long long)c->scratch_off);
    }
    ct_emit_raw(e, ")\n{\n");
    e->indent = 1;
}

static void kernel_close(cg *c)
{
    c->k.indent = 1;
    ct_emit_close(&c->k);
}

/* forward(): launch the kernel just closed with `grid` blocks (an expression) of `block` threads. */
static void launch(cg *c, const char *grid, int block)
{
    ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(%s, %s, %d, 0, ct_stream, %s));\n", c->kname, grid, block, c->args);
}

/* A grid covering `total` elements with grid-stride loops. */
static const char *grid_for(char *buf, size_t n, int64_t total, int block)
{
    snprintf(buf, n, "ct_grid(%lldLL, %d)", (long long)total, block);
    return buf;
}

static void launch_ew(cg *c, int64_t total)
{
    char g[64];
    launch(c, grid_for(g, sizeof g, total, BLOCK), BLOCK);
}

/* A block per row: at most CT_MAX_GRID blocks, rows strided over the grid. */
static void launch_rows(cg *c, int64_t rows, int block)
{
    char g[64];
    snprintf(g, sizeof g, "ct_grid(%lldLL, 1)", (long long)rows);
    launch(c, g, block);
}

/* ------------------------------------------------------------ strided elementwise */

/* Decompose the flat index t over the view's dims into i0..i<rank-1>. */
static void emit_unflatten(ct_emitter *e, const char *t, int rank, const int64_t *dims, const char *prefix)
{
    if (rank == 0) return;
    if (rank == 1) {
        ct_emit_line(e, "const int64_t %s0 = %s;", prefix, t);
        return;
    }
    ct_emit_line(e, "int64_t r_ = %s;", t);
    for (int d = rank - 1; d >= 1; d--)
        ct_emit_line(e, "const int64_t %s%d = r_ %% %lld; r_ /= %lld;", prefix, d, (long long)dims[d], (long long)dims[d]);
    ct_emit_line(e, "const int64_t %s0 = r_;", prefix);
}

/* A grid-stride loop over the (collapsed) view: operand 0 is written with
 * out_expr, operand k >= 1 is read into a<k-1> first. Returns the element count. */
static int64_t emit_ew_loop(cg *c, ew_view *v, const char *const *ctypes, const char *out_expr)
{
    ct_emitter *e = &c->k;
    view_collapse(v);
    int64_t total = 1;
    for (int d = 0; d < v->rank; d++) total *= v->dims[d];
    if (total <= 0) return 0;
    ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)total);
    emit_unflatten(e, "t", v->rank, v->dims, "i");
    char idx[512];
    for (int k = 1; k < v->n; k++) {
        index_expr(idx, sizeof idx, v, k);
        ct_emit_line(e, "const %s a%d = %s[%s];", ctypes[k], k - 1, v->name[k], idx);
    }
    index_expr(idx, sizeof idx, v, 0);
    ct_emit_line(e, "%s[%s] = %s;", v->name[0], idx, out_expr);
    ct_emit_close(e);
    return total;
}

/* One kernel, one elementwise loop, launched. */
static void emit_ew_kernel(cg *c, const ct_node *n, ew_view *v, const char *const *ctypes, const char *out_expr)
{
    kernel_open(c, n, false, BLOCK);
    int64_t total = emit_ew_loop(c, v, ctypes, out_expr);
    kernel_close(c);
    if (total > 0) launch_ew(c, total);
}

static void emit_memset(cg *c, const ct_value *v, int byte)
{
    char p[128];
    ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemsetAsync(%s, %d, %lld, ct_stream));\n", vptr(c, v, false, p, sizeof p), byte,
                (long long)ct_value_nbytes(v));
}

static void emit_elementwise(cg *c, const ct_node *n)
{
    char expr[2048];
    if (!ew_expr(c, n, expr, sizeof expr)) {
        unsupported(c, n, "dtype %s", ct_dtype_name(n->in[0]->dtype));
        return;
    }
    const ct_value *out = n->out[0];
    ew_view v;
    view_init(&v, &out->shape);
    const char *ctypes[MAXA];
    int64_t st[CT_MAX_RANK];
    contiguous_strides(&out->shape, st);
    view_add(&v, "y0", 0, st);
    ctypes[0] = ctype_of(out->dtype);
    int n_operands = n->n_in;
    if (n->op == CT_OP_CLIP || n->op == CT_OP_EXPAND || n->op == CT_OP_DROPOUT) n_operands = 1;
    if (n_operands + 1 > MAXA) {
        unsupported(c, n, "too many inputs (%d)", n->n_in);
        return;
    }
    for (int i = 0; i < n_operands; i++) {
        char nm[8];
        snprintf(nm, sizeof nm, "x%d", i);
        broadcast_strides(&n->in[i]->shape, &out->shape, st);
        view_add(&v, nm, 0, st);
        ctypes[i + 1] = ctype_of(n->in[i]->dtype);
    }
    emit_ew_kernel(c, n, &v, ctypes, expr);
    if (n->op == CT_OP_DROPOUT && n->n_out > 1 && n->out[1]) emit_memset(c, n->out[1], 1);
}

/* Reshape-like ops: nothing if the plan made the output alias the input, else a device copy. */
static void emit_alias_or_copy(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    bool mask = n->op == CT_OP_DROPOUT && n->n_out > 1 && n->out[1];
    char nm[256], px[128], py[128];
    comment_safe(nm, sizeof nm, n->name);
    if (c->region[x->id] == c->region[y->id] && c->off[x->id] == c->off[y->id]) {
        ct_emit_raw(&c->f, "    /* %s \"%s\": output aliases its input */\n", ct_op_table[n->op].name, nm);
    } else if (ct_value_nbytes(y) > 0) {
        int64_t nb = (int64_t)ct_value_nbytes(y);
        if (overlaps(c, x, y)) {
            /* overlapping ranges: through the scratch area */
            if (nb > c->scratch_bytes) c->scratch_bytes = nb;
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemcpyAsync(A + %lld, %s, %lld, cudaMemcpyDeviceToDevice, ct_stream));\n",
                        (long long)c->scratch_off, vptr(c, x, true, px, sizeof px), (long long)nb);
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemcpyAsync(%s, A + %lld, %lld, cudaMemcpyDeviceToDevice, ct_stream));\n",
                        vptr(c, y, false, py, sizeof py), (long long)c->scratch_off, (long long)nb);
        } else {
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemcpyAsync(%s, %s, %lld, cudaMemcpyDeviceToDevice, ct_stream)); /* %s \"%s\" */\n",
                        vptr(c, y, false, py, sizeof py), vptr(c, x, true, px, sizeof px), (long long)nb,
                        ct_op_table[n->op].name, nm);
        }
    }
    if (mask) emit_memset(c, n->out[1], 1);
}

/* ------------------------------------------------------------ data movement */

static void emit_transpose(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    int r = x->shape.rank, cnt = 0;
    const int64_t *perm = ct_node_attr_ints(n, "perm", &cnt);
    int64_t p[CT_MAX_RANK], xs[CT_MAX_RANK], st[CT_MAX_RANK];
    for (int d = 0; d < r; d++) p[d] = perm && cnt == r ? perm[d] : r - 1 - d;
    contiguous_strides(&x->shape, xs);
    ew_view v;
    view_init(&v, &y->shape);
    contiguous_strides(&y->shape, st);
    view_add(&v, "y0", 0, st);
    for (int d = 0; d < r; d++) st[d] = xs[p[d]];
    view_add(&v, "x0", 0, st);
    const char *ct[2] = {ctype_of(y->dtype), ctype_of(x->dtype)};
    emit_ew_kernel(c, n, &v, ct, "a0");
}

static void emit_slice(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    int r = x->shape.rank;
    int64_t starts[CT_MAX_RANK], ends[CT_MAX_RANK], axes[CT_MAX_RANK], steps[CT_MAX_RANK];
    int ns = 0, ne = 0, na = 0, nst = 0;
    if (n->n_in < 3 || !const_ints(n->in[1], starts, CT_MAX_RANK, &ns) || !const_ints(n->in[2], ends, CT_MAX_RANK, &ne)) {
        unsupported(c, n, "starts/ends are not constants");
        return;
    }
    if (n->n_in > 3 && n->in[3]) {
        if (!const_ints(n->in[3], axes, CT_MAX_RANK, &na)) { unsupported(c, n, "axes are not constant"); return; }
    } else {
        na = ns;
        for (int i = 0; i < ns; i++) axes[i] = i;
    }
    if (n->n_in > 4 && n->in[4]) {
        if (!const_ints(n->in[4], steps, CT_MAX_RANK, &nst)) { unsupported(c, n, "steps are not constant"); return; }
    } else {
        nst = ns;
        for (int i = 0; i < ns; i++) steps[i] = 1;
    }
    if (ns != ne || ns != na || ns != nst) { unsupported(c, n, "starts/ends/axes/steps differ in length"); return; }
    int64_t start[CT_MAX_RANK], step[CT_MAX_RANK];
    for (int d = 0; d < r; d++) start[d] = 0, step[d] = 1;
    for (int i = 0; i < ns; i++) {
        int a = norm_axis(axes[i], r);
        int64_t dim = x->shape.dims[a], s = starts[i], st = steps[i];
        if (st == 0) { unsupported(c, n, "step 0"); return; }
        if (s < 0) s += dim;
        if (st > 0) s = s < 0 ? 0 : s > dim ? dim : s;
        else s = s < 0 ? -1 : s > dim - 1 ? dim - 1 : s;
        start[a] = s;
        step[a] = st;
    }
    int64_t xs[CT_MAX_RANK], st[CT_MAX_RANK], base = 0;
    contiguous_strides(&x->shape, xs);
    ew_view v;
    view_init(&v, &y->shape);
    contiguous_strides(&y->shape, st);
    view_add(&v, "y0", 0, st);
    for (int d = 0; d < r; d++) {
        base += start[d] * xs[d];
        st[d] = step[d] * xs[d];
    }
    view_add(&v, "x0", base, st);
    const char *ct[2] = {ctype_of(y->dtype), ctype_of(x->dtype)};
    emit_ew_kernel(c, n, &v, ct, "a0");
}

/* Concat (scatter = false) and Split (true): one grid-stride loop per part. */
static void emit_concat_split(cg *c, const ct_node *n, bool split)
{
    const ct_value *whole = split ? n->in[0] : n->out[0];
    int r = whole->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    int64_t outer = prod(whole->shape.dims, 0, ax), inner = prod(whole->shape.dims, ax + 1, r);
    int64_t row = whole->shape.dims[ax] * inner, at = 0, most = 0;
    kernel_open(c, n, false, BLOCK);
    int parts = split ? n->n_out : n->n_in;
    for (int i = 0; i < parts; i++) {
        const ct_value *p = split ? n->out[i] : n->in[i];
        if (!p) continue;
        int64_t chunk = p->shape.dims[ax] * inner;
        if (chunk && outer) {
            ew_view v;
            ct_shape s = {.rank = 2, .dims = {outer, chunk}};
            view_init(&v, &s);
            int64_t ws[2] = {row, 1}, ps[2] = {chunk, 1};
            char pn[16];
            snprintf(pn, sizeof pn, "%c%d", split ? 'y' : 'x', i);
            const char *ct[2] = {ctype_of(whole->dtype), ctype_of(whole->dtype)};
            if (split) {
                view_add(&v, pn, 0, ps);
                view_add(&v, "x0", at, ws);
            } else {
                view_add(&v, "y0", at, ws);
                view_add(&v, pn, 0, ps);
            }
            int64_t t = emit_ew_loop(c, &v, ct, "a0");
            if (t > most) most = t;
        }
        at += chunk;
    }
    kernel_close(c);
    if (most > 0) launch_ew(c, most);
}

static void emit_gather(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *ind = n->in[1];
    int r = x->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    if (ind->dtype != CT_I64 && ind->dtype != CT_I32) { unsupported(c, n, "indices of dtype %s", ct_dtype_name(ind->dtype)); return; }
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    int64_t ni = numel(ind), total = outer * ni * inner;
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, BLOCK);
    if (total > 0) {
        ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)total);
        ct_emit_line(e, "const int64_t in = t %% %lld, j = (t / %lld) %% %lld, o = t / %lld;", (long long)inner,
                     (long long)inner, (long long)ni, (long long)(inner * ni));
        ct_emit_line(e, "int64_t ix = (int64_t)x1[j];");
        ct_emit_line(e, "if (ix < 0) ix += %lld;", (long long)A);
        ct_emit_line(e, "y0[t] = (ix < 0 || ix >= %lld) ? (%s)0 : x0[(o * %lld + ix) * %lld + in];", (long long)A,
                     ctype_of(x->dtype), (long long)A, (long long)inner);
        ct_emit_close(e);
    }
    kernel_close(c);
    if (total > 0) launch_ew(c, total);
}

/* Pad (constant, edge, reflect) and Tile: each output element computes its input coordinates. */
static void emit_pad_tile(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    int r = x->shape.rank;
    int64_t pb[CT_MAX_RANK] = {0};
    const char *mode = "constant";
    char cval[64] = "0";
    if (n->op == CT_OP_PAD) {
        int64_t pads[2 * CT_MAX_RANK], axes[CT_MAX_RANK];
        int np = 0, na = 0;
        mode = ct_node_attr_string(n, "mode", "constant");
        if (n->n_in > 1 && n->in[1]) {
            if (!const_ints(n->in[1], pads, 2 * CT_MAX_RANK, &np)) { unsupported(c, n, "pads are not constant"); return; }
        } else {
            int cnt = 0;
            const int64_t *pa = ct_node_attr_ints(n, "pads", &cnt);
            for (int i = 0; i < cnt && i < 2 * CT_MAX_RANK; i++) pads[i] = pa[i];
            np = cnt;
        }
        if (n->n_in > 3 && n->in[3]) {
            if (!const_ints(n->in[3], axes, CT_MAX_RANK, &na)) { unsupported(c, n, "axes are not constant"); return; }
        } else {
            na = r;
            for (int i = 0; i < r; i++) axes[i] = i;
        }
        if (np != 2 * na) { unsupported(c, n, "pads has %d entries for %d axes", np, na); return; }
        for (int i = 0; i < na; i++) pb[norm_axis(axes[i], r)] = pads[i];
        double cv = 0;
        if (n->n_in > 2 && n->in[2]) {
            if (!const_float(n->in[2], &cv)) { unsupported(c, n, "constant_value is not constant"); return; }
        }
        if (is_float(x->dtype)) flit(cval, sizeof cval, cv);
        else snprintf(cval, sizeof cval, "%lld", (long long)cv);
        if (strcmp(mode, "constant") && strcmp(mode, "edge") && strcmp(mode, "reflect")) {
            unsupported(c, n, "mode '%s'", mode);
            return;
        }
    }
    int64_t xs[CT_MAX_RANK], ys[CT_MAX_RANK];
    contiguous_strides(&x->shape, xs);
    contiguous_strides(&y->shape, ys);
    ct_emitter *e = &c->k;
    int64_t total = numel(y);
    kernel_open(c, n, false, BLOCK);
    if (total > 0) {
        ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)total);
        emit_unflatten(e, "t", r, y->shape.dims, "i");
        char iidx[512] = "0", cond[512] = "0";
        size_t ji = 0, jc = 0;
        for (int d = 0; d < r; d++) {
            emit_source_coord(e, n->op == CT_OP_TILE ? "tile" : mode, d, x->shape.dims[d], pb[d]);
            ji += (size_t)snprintf(iidx + ji, sizeof iidx - ji, "%sj%d * %lld", d ? " + " : "", d, (long long)xs[d]);
            jc += (size_t)snprintf(cond + jc, sizeof cond - jc, "%sj%d < 0 || j%d >= %lld", d ? " || " : "", d, d,
                                   (long long)x->shape.dims[d]);
        }
        if (n->op == CT_OP_PAD && !strcmp(mode, "constant"))
            ct_emit_line(e, "y0[t] = (%s) ? (%s)%s : x0[%s];", cond, ctype_of(y->dtype), cval, iidx);
        else ct_emit_line(e, "y0[t] = x0[%s];", iidx);
        ct_emit_close(e);
    }
    kernel_close(c);
    if (total > 0) launch_ew(c, total);
}

/* ------------------------------------------------------------ reductions, softmax */

static void emit_reduce(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    int r = x->shape.rank;
    int64_t axes[CT_MAX_RANK];
    int na = 0;
    bool red[CT_MAX_RANK] = {false};
    if (n->n_in > 1 && n->in[1]) {
        if (!const_ints(n->in[1], axes, CT_MAX_RANK, &na)) { unsupported(c, n, "axes are not constant"); return; }
    } else {
        int cnt = 0;
        const int64_t *a = ct_node_attr_ints(n, "axes", &cnt);
        for (int i = 0; i < cnt && i < CT_MAX_RANK; i++) axes[i] = a[i];
        na = cnt;
    }
    if (na == 0) {
        if (ct_node_attr_int(n, "noop_with_empty_axes", 0)) {
            emit_alias_or_copy(c, n);
            return;
        }
        for (int d = 0; d < r; d++) red[d] = true;
    }
    for (int i = 0; i < na; i++) red[norm_axis(axes[i], r)] = true;
    bool fl = is_float(x->dtype);
    if (!fl && (n->op == CT_OP_REDUCE_MEAN || n->op == CT_OP_REDUCE_L2)) {
        unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype));
        return;
    }
    int64_t xs[CT_MAX_RANK];
    contiguous_strides(&x->shape, xs);
    int64_t count = 1;
    for (int d = 0; d < r; d++)
        if (red[d]) count *= x->shape.dims[d];
    const char *op, *acc_t = fl ? "double" : "long long", *fn = fl ? "ct_block_reduce" : "ct_block_reduce_ll";
    const char *upd = "acc = ct_red_op%s(acc, v, %s);";
    switch (n->op) {
    case CT_OP_REDUCE_MAX: op = "CT_RED_MAX"; break;
    case CT_OP_REDUCE_MIN: op = "CT_RED_MIN"; break;
    case CT_OP_REDUCE_PROD: op = "CT_RED_PROD"; break;
    default: op = "CT_RED_SUM"; break;
    }
    int64_t no = numel(y);
    int bs = red_block(count);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, bs);
    ct_emit_line(e, "CT_SHARED(%s, ct_buf, 32);", acc_t);
    if (no > 0) {
        ct_emit_open(e, "for (int64_t o = blockIdx.x; o < %lldLL; o += gridDim.x)", (long long)no);
        ct_emit_line(e, "int64_t rem = o, base = 0;");
        for (int d = r - 1; d >= 0; d--) {
            if (red[d]) continue;
            ct_emit_line(e, "base += (rem %% %lld) * %lld; rem /= %lld;", (long long)x->shape.dims[d], (long long)xs[d],
                         (long long)x->shape.dims[d]);
        }
        ct_emit_line(e, "(void)rem;");
        if (fl) ct_emit_line(e, "double acc = ct_red_identity(%s);", op);
        else
            ct_emit_line(e, "long long acc = %s;", !strcmp(op, "CT_RED_MAX") ? "(long long)INT64_MIN"
                                                   : !strcmp(op, "CT_RED_MIN") ? "(long long)INT64_MAX"
                                                   : !strcmp(op, "CT_RED_PROD") ? "1" : "0");
        ct_emit_open(e, "for (int64_t q = threadIdx.x; q < %lldLL; q += %d)", (long long)count, bs);
        ct_emit_line(e, "int64_t qr = q, idx = base;");
        for (int d = r - 1; d >= 0; d--) {
            if (!red[d]) continue;
            ct_emit_line(e, "idx += (qr %% %lld) * %lld; qr /= %lld;", (long long)x->shape.dims[d], (long long)xs[d],
                         (long long)x->shape.dims[d]);
        }
        ct_emit_line(e, "(void)qr;");
        if (n->op == CT_OP_REDUCE_L2) ct_emit_line(e, "const double v = (double)x0[idx] * x0[idx];");
        else ct_emit_line(e, "const %s v = (%s)x0[idx];", acc_t, acc_t);
        ct_emit_line(e, upd, fl ? "" : "_ll", op);
        ct_emit_close(e);
        ct_emit_line(e, "acc = %s(acc, %s, ct_buf);", fn, op);
        if (n->op == CT_OP_REDUCE_MEAN)
            ct_emit_line(e, "if (threadIdx.x == 0) y0[o] = (%s)(acc / %lld);", ctype_of(y->dtype), (long long)count);
        else if (n->op == CT_OP_REDUCE_L2) ct_emit_line(e, "if (threadIdx.x == 0) y0[o] = (%s)sqrt(acc);", ctype_of(y->dtype));
        else ct_emit_line(e, "if (threadIdx.x == 0) y0[o] = (%s)acc;", ctype_of(y->dtype));
        ct_emit_close(e);
    }
    kernel_close(c);
    if (no > 0) launch_rows(c, no, bs);
}

static void emit_argmax(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    int r = x->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    bool last = ct_node_attr_int(n, "select_last_index", 0) != 0;
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, BLOCK);
    ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)(outer * inner));
    ct_emit_line(e, "const int64_t o = t / %lld, in = t %% %lld;", (long long)inner, (long long)inner);
    ct_emit_line(e, "const %s *p = x0 + o * %lld + in;", ctype_of(x->dtype), (long long)(A * inner));
    ct_emit_line(e, "int64_t best = 0;");
    ct_emit_for(e, "a", "%lld", (long long)A);
    ct_emit_line(e, "if (p[a * %lld] %s p[best * %lld]) best = a;", (long long)inner, last ? ">=" : ">", (long long)inner);
    ct_emit_close(e);
    ct_emit_line(e, "y0[t] = best;");
    ct_emit_close(e);
    kernel_close(c);
    if (outer * inner > 0) launch_ew(c, outer * inner);
}

static void emit_softmax(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (x->dtype != CT_F32) { unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype)); return; }
    int r = x->shape.rank;
    int ax = norm_axis(ct_node_attr_int(n, "axis", c->g->opset && c->g->opset < 13 ? 1 : -1), r);
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    bool lg = n->op == CT_OP_LOG_SOFTMAX;
    int bs = red_block(A);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, bs);
    ct_emit_line(e, "CT_SHARED(double, ct_buf, 32);");
    ct_emit_open(e, "for (int64_t t = blockIdx.x; t < %lldLL; t += gridDim.x)", (long long)(outer * inner));
    ct_emit_line(e, "const int64_t o = t / %lld, in = t %% %lld;", (long long)inner, (long long)inner);
    ct_emit_line(e, "const float *p = x0 + o * %lld + in;", (long long)(A * inner));
    ct_emit_line(e, "float *q = y0 + o * %lld + in;", (long long)(A * inner));
    ct_emit_line(e, "double mx = -INFINITY;");
    ct_emit_open(e, "for (int64_t a = threadIdx.x; a < %lld; a += %d)", (long long)A, bs);
    ct_emit_line(e, "if (p[a * %lld] > mx) mx = p[a * %lld];", (long long)inner, (long long)inner);
    ct_emit_close(e);
    ct_emit_line(e, "const float m = (float)ct_block_reduce(mx, CT_RED_MAX, ct_buf);");
    ct_emit_line(e, "double s = 0;");
    ct_emit_open(e, "for (int64_t a = threadIdx.x; a < %lld; a += %d)", (long long)A, bs);
    ct_emit_line(e, "const float v = expf(p[a * %lld] - m);", (long long)inner);
    if (!lg) ct_emit_line(e, "q[a * %lld] = v;", (long long)inner);
    ct_emit_line(e, "s += v;");
    ct_emit_close(e);
    ct_emit_line(e, "s = ct_block_reduce(s, CT_RED_SUM, ct_buf);");
    if (lg) ct_emit_line(e, "const float ls = logf((float)s);");
    else ct_emit_line(e, "const float inv = (float)(1.0 / s);");
    ct_emit_open(e, "for (int64_t a = threadIdx.x; a < %lld; a += %d)", (long long)A, bs);
    if (lg) ct_emit_line(e, "q[a * %lld] = p[a * %lld] - m - ls;", (long long)inner, (long long)inner);
    else ct_emit_line(e, "q[a * %lld] *= inv;", (long long)inner);
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
    if (outer * inner > 0) launch_rows(c, outer * inner, bs);
}

/* ------------------------------------------------------------ normalisation, pooling */

static void emit_batch_norm(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (ct_node_attr_int(n, "training_mode", 0) || (n->n_out > 1 && (n->out[1] || (n->n_out > 2 && n->out[2])))) {
        unsupported(c, n, "training-mode BatchNormalization (batch statistics) cannot run in an inference program");
        return;
    }
    if (x->dtype != CT_F32 || x->shape.rank < 2) { unsupported(c, n, "needs float input of rank >= 2"); return; }
    for (int i = 1; i < 5; i++)
        if (n->in[i]->dtype != CT_F32) { unsupported(c, n, "parameters must be float"); return; }
    int64_t C = x->shape.dims[1], S = prod(x->shape.dims, 2, x->shape.rank), total = numel(x);
    char eps[48];
    flit(eps, sizeof eps, ct_node_attr_float(n, "epsilon", 1e-5f));
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, BLOCK);
    ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)total);
    ct_emit_line(e, "const int64_t ch = (t / %lld) %% %lld;", (long long)S, (long long)C);
    ct_emit_line(e, "const float a = x1[ch] / sqrtf(x4[ch] + %s);", eps);
    ct_emit_line(e, "const float b = x2[ch] - x3[ch] * a;");
    if (n->op == CT_OP_FUSED_BN_RELU) { /* + residual, Relu: as codegen/c_fuse_emit.c */
        ct_emit_line(e, "float v = x0[t] * a + b;");
        if (n->n_in > 5 && n->in[5]) ct_emit_line(e, "v = v + x5[t];");
        ct_emit_line(e, "y0[t] = v > 0 ? v : 0;");
    } else {
        ct_emit_line(e, "y0[t] = x0[t] * a + b;");
    }
    ct_emit_close(e);
    kernel_close(c);
    if (total > 0) launch_ew(c, total);
}

static void emit_global_pool(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (x->dtype != CT_F32) { unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype)); return; }
    int64_t NC = prod(x->shape.dims, 0, 2), S = prod(x->shape.dims, 2, x->shape.rank);
    bool mx = n->op == CT_OP_GLOBAL_MAX_POOL;
    int bs = red_block(S);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, bs);
    ct_emit_line(e, "CT_SHARED(double, ct_buf, 32);");
    ct_emit_open(e, "for (int64_t t = blockIdx.x; t < %lldLL; t += gridDim.x)", (long long)NC);
    ct_emit_line(e, "const float *p = x0 + t * %lld;", (long long)S);
    ct_emit_line(e, "double acc = %s;", mx ? "-INFINITY" : "0.0");
    ct_emit_open(e, "for (int64_t i = threadIdx.x; i < %lld; i += %d)", (long long)S, bs);
    ct_emit_line(e, mx ? "acc = p[i] > acc ? p[i] : acc;" : "acc += p[i];");
    ct_emit_close(e);
    ct_emit_line(e, "acc = ct_block_reduce(acc, %s, ct_buf);", mx ? "CT_RED_MAX" : "CT_RED_SUM");
    if (mx) ct_emit_line(e, "if (threadIdx.x == 0) y0[t] = (float)acc;");
    else ct_emit_line(e, "if (threadIdx.x == 0) y0[t] = (float)acc / %lld.0f;", (long long)S);
    ct_emit_close(e);
    kernel_close(c);
    if (NC > 0) launch_rows(c, NC, bs);
}

static void win_literal(char *buf, size_t n, const win2d *w, int64_t G)
{
    snprintf(buf, n, "{%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld}",
             (long long)w->N, (long long)w->C, (long long)w->H, (long long)w->W, (long long)w->OC, (long long)w->OH,
             (long long)w->OW, (long long)G, (long long)w->kh, (long long)w->kw, (long long)w->sh, (long long)w->sw,
             (long long)w->pt, (long long)w->pl, (long long)w->dh, (long long)w->dw);
}

static void emit_pool(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (x->dtype != CT_F32) { unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype)); return; }
    if (n->op == CT_OP_MAX_POOL && n->n_out > 1 && n->out[1]) { unsupported(c, n, "the Indices output"); return; }
    int cnt = 0;
    const int64_t *ks = ct_node_attr_ints(n, "kernel_shape", &cnt);
    if (!ks || cnt != x->shape.rank - 2) { unsupported(c, n, "kernel_shape missing"); return; }
    win2d w;
    if (!window_geometry(c, n, ks, &w)) return;
    bool mx = n->op == CT_OP_MAX_POOL;
    bool incl = ct_node_attr_int(n, "count_include_pad", 0) != 0;
    int64_t total = w.N * w.C * w.OH * w.OW;
    ct_emitter *e = &c->k;
    kernel_open(c, n, false, BLOCK);
    ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)total);
    ct_emit_line(e, "const int64_t ow = t %% %lld, oh = (t / %lld) %% %lld, pl = t / %lld;", (long long)w.OW,
                 (long long)w.OW, (long long)w.OH, (long long)(w.OH * w.OW));
    ct_emit_line(e, "const float *p = x0 + pl * %lld;", (long long)(w.H * w.W));
    if (mx) ct_emit_line(e, "float acc = -INFINITY;");
    else ct_emit_line(e, "float acc = 0.0f; int64_t cnt = 0;");
    ct_emit_for(e, "kh", "%lld", (long long)w.kh);
    ct_emit_line(e, "const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)w.sh, (long long)w.pt, (long long)w.dh);
    if (mx || !incl) ct_emit_line(e, "if (ih < 0 || ih >= %lld) continue;", (long long)w.H);
    else ct_emit_line(e, "if (ih >= %lld) continue;", (long long)(w.H + w.pb));
    ct_emit_for(e, "kw", "%lld", (long long)w.kw);
    ct_emit_line(e, "const int64_t iw = ow * %lld - %lld + kw * %lld;", (long long)w.sw, (long long)w.pl, (long long)w.dw);
    if (mx) {
        ct_emit_line(e, "if (iw < 0 || iw >= %lld) continue;", (long long)w.W);
        ct_emit_line(e, "const float v = p[ih * %lld + iw];", (long long)w.W);
        ct_emit_line(e, "acc = v > acc ? v : acc;");
    } else if (incl) {
        ct_emit_line(e, "if (iw >= %lld) continue;", (long long)(w.W + w.pr));
        ct_emit_line(e, "cnt++;");
        ct_emit_line(e, "if (ih >= 0 && ih < %lld && iw >= 0 && iw < %lld) acc += p[ih * %lld + iw];", (long long)w.H,
                     (long long)w.W, (long long)w.W);
    } else {
        ct_emit_line(e, "if (iw < 0 || iw >= %lld) continue;", (long long)w.W);
        ct_emit_line(e, "cnt++;");
        ct_emit_line(e, "acc += p[ih * %lld + iw];", (long long)w.W);
    }
    ct_emit_close(e);
    ct_emit_close(e);
    if (mx) ct_emit_line(e, "y0[t] = acc;");
    else ct_emit_line(e, "y0[t] = cnt ? acc / (float)cnt : 0.0f;");
    ct_emit_close(e);
    kernel_close(c);
    if (total > 0) launch_ew(c, total);
}

/* ------------------------------------------------------------ GEMM, MatMul, Conv (cuBLAS) */

static void emit_gemm(cg *c, const ct_node *n)
{
    const ct_value *a = n->in[0], *b = n->in[1], *y = n->out[0];
    const ct_value *cc = n->n_in > 2 ? n->in[2] : NULL;
    if (a->dtype != CT_F32 || b->dtype != CT_F32) { unsupported(c, n, "only float GEMM"); return; }
    bool ta = ct_node_attr_int(n, "transA", 0) != 0, tb = ct_node_attr_int(n, "transB", 0) != 0;
    double alpha = ct_node_attr_float(n, "alpha", 1.0f), beta = ct_node_attr_float(n, "beta", 1.0f);
    int64_t M = y->shape.dims[0], N = y->shape.dims[1], K = ta ? a->shape.dims[0] : a->shape.dims[1];
    char al[48], be[48], pa[128], pb[128], py[128];
    bool bias = cc && beta != 0;
    if (bias) {
        int64_t st[CT_MAX_RANK], ys[CT_MAX_RANK];
        broadcast_strides(&cc->shape, &y->shape, st);
        contiguous_strides(&y->shape, ys);
        ew_view v;
        view_init(&v, &y->shape);
        view_add(&v, "y0", 0, ys);
        view_add(&v, "x2", 0, st);
        const char *ct[2] = {"float", "float"};
        char expr[96];
        if (beta == 1.0) snprintf(expr, sizeof expr, "a0");
        else snprintf(expr, sizeof expr, "%s * a0", flit(be, sizeof be, beta));
        emit_ew_kernel(c, n, &v, ct, expr);
    } else {
        node_comment(c, n, &c->k);
        ct_emit_raw(&c->k, "/* (cuBLAS only) */\n");
    }
    if (M * N == 0) return;
    if (K == 0) {
        if (!bias) emit_memset(c, y, 0);
        return;
    }
    ct_emit_raw(&c->f, "    ct_sgemm_rm(%d, %d, %lld, %lld, %lld, %s, %s, %lld, %s, %lld, %s, %s, %lld);\n", ta, tb,
                (long long)M, (long long)N, (long long)K, flit(al, sizeof al, alpha), vptr(c, a, true, pa, sizeof pa),
                (long long)(ta ? M : K), vptr(c, b, true, pb, sizeof pb), (long long)(tb ? K : N),
                bias ? "1.0f" : "0.0f", vptr(c, y, false, py, sizeof py), (long long)N);
}

static void emit_matmul(cg *c, const ct_node *n)
{
    const ct_value *a = n->in[0], *b = n->in[1], *y = n->out[0];
    if (a->dtype != CT_F32 || b->dtype != CT_F32) { unsupported(c, n, "only float MatMul"); return; }
    int ra = a->shape.rank, rb = b->shape.rank;
    if (ra < 1 || rb < 1) { unsupported(c, n, "scalar operand"); return; }
    int64_t M = ra >= 2 ? a->shape.dims[ra - 2] : 1, K = a->shape.dims[ra - 1];
    int64_t N = rb >= 2 ? b->shape.dims[rb - 1] : 1;
    ct_shape ab = {0}, bb = {0}, ob = {0};
    ab.rank = ra > 2 ? ra - 2 : 0;
    bb.rank = rb > 2 ? rb - 2 : 0;
    for (int i = 0; i < ab.rank; i++) ab.dims[i] = a->shape.dims[i];
    for (int i = 0; i < bb.rank; i++) bb.dims[i] = b->shape.dims[i];
    ob.rank = ab.rank > bb.rank ? ab.rank : bb.rank;
    for (int i = 0; i < ob.rank; i++) {
        int ia = i - (ob.rank - ab.rank), ib = i - (ob.rank - bb.rank);
        int64_t da = ia >= 0 ? ab.dims[ia] : 1, db = ib >= 0 ? bb.dims[ib] : 1;
        ob.dims[i] = da > db ? da : db;
    }
    int64_t nb = ct_shape_numel(&ob);
    int64_t sa[CT_MAX_RANK], sb[CT_MAX_RANK];
    broadcast_strides(&ab, &ob, sa);
    broadcast_strides(&bb, &ob, sb);
    node_comment(c, n, &c->k);
    ct_emit_raw(&c->k, "/* (cuBLAS only) */\n");
    char pa[128], pb[128], py[128];
    vptr(c, a, true, pa, sizeof pa);
    vptr(c, b, true, pb, sizeof pb);
    vptr(c, y, false, py, sizeof py);
    if (nb * M * N == 0) return;
    if (K == 0) {
        emit_memset(c, y, 0);
        return;
    }
    /* batch offsets linear in the batch index: one strided-batched call */
    int64_t lin_a = 0, lin_b = 0;
    bool linear = true;
    for (int64_t t = 0; t < nb && linear; t++) {
        int64_t rem = t, oa = 0, obb = 0;
        for (int i = ob.rank - 1; i >= 0; i--) {
            oa += (rem % ob.dims[i]) * sa[i];
            obb += (rem % ob.dims[i]) * sb[i];
            rem /= ob.dims[i];
        }
        if (t == 1) lin_a = oa, lin_b = obb;
        if (t >= 1 && (oa != t * lin_a || obb != t * lin_b)) linear = false;
        if (t > 4096) linear = false;
    }
    if (linear) {
        if (nb > 1 && lin_b == 0 && lin_a == 1) {
            /* A's batches are consecutive and B is shared: one tall GEMM */
            ct_emit_raw(&c->f, "    ct_sgemm_rm(0, 0, %lld, %lld, %lld, 1.0f, %s, %lld, %s, %lld, 0.0f, %s, %lld);\n",
                        (long long)(nb * M), (long long)N, (long long)K, pa, (long long)K, pb, (long long)N, py,
                        (long long)N);
        } else {
            ct_emit_raw(&c->f, "    ct_sgemm_rm_batched(0, 0, %lld, %lld, %lld, 1.0f, %s, %lld, %lldLL, %s, %lld, %lldLL, 0.0f, %s, %lld, %lldLL, %lld);\n",
                        (long long)M, (long long)N, (long long)K, pa, (long long)K, (long long)(lin_a * M * K), pb,
                        (long long)N, (long long)(lin_b * K * N), py, (long long)N, (long long)(M * N), (long long)nb);
        }
        return;
    }
    ct_emit_raw(&c->f, "    for (int64_t t = 0; t < %lld; t++) {\n        int64_t rem = t, oa = 0, ob = 0;\n", (long long)nb);
    for (int i = ob.rank - 1; i >= 0; i--)
        ct_emit_raw(&c->f, "        oa += (rem %% %lld) * %lld; ob += (rem %% %lld) * %lld; rem /= %lld;\n",
                    (long long)ob.dims[i], (long long)sa[i], (long long)ob.dims[i], (long long)sb[i], (long long)ob.dims[i]);
    ct_emit_raw(&c->f, "        ct_sgemm_rm(0, 0, %lld, %lld, %lld, 1.0f, %s + oa * %lld, %lld, %s + ob * %lld, %lld, 0.0f, %s + t * %lld, %lld);\n    }\n",
                (long long)M, (long long)N, (long long)K, pa, (long long)(M * K), (long long)K, pb, (long long)(K * N),
                (long long)N, py, (long long)(M * N), (long long)N);
}

/* Images per im2col chunk so that the scratch stays within budget. */
static int64_t conv_chunk(int64_t N, int64_t per_image)
{
    int64_t nb = per_image > 0 ? CONV_MAX_FLOATS / per_image : N;
    if (nb < 1) nb = 1;
    if (nb > N) nb = N;
    return nb;
}

/* Conv, and FusedConv: the convolution, then relu(y + residual) by ct_add_relu_k. */
static void emit_conv(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *wt = n->in[1], *y = n->out[0];
    const ct_value *bv = n->n_in > 2 ? n->in[2] : NULL;
    const ct_value *rv = n->op == CT_OP_FUSED_CONV && n->n_in > 3 ? n->in[3] : NULL;
    const int relu = n->op == CT_OP_FUSED_CONV && ct_node_attr_int(n, "relu", 0);
    if (x->dtype != CT_F32 || wt->dtype != CT_F32) { unsupported(c, n, "only float Conv"); return; }
    int64_t ks[2];
    int sr = x->shape.rank - 2;
    if (sr != 1 && sr != 2) { unsupported(c, n, "%d spatial dimensions (1 or 2 supported)", sr); return; }
    for (int i = 0; i < sr; i++) ks[i] = wt->shape.dims[2 + i];
    win2d w;
    if (!window_geometry(c, n, ks, &w)) return;
    int64_t G = ct_node_attr_int(n, "group", 1);
    if (G <= 0 || w.C % G || w.OC % G) { unsupported(c, n, "channels and group do not match"); return; }
    int64_t Cg = w.C / G, Mg = w.OC / G, OHW = w.OH * w.OW, HW = w.H * w.W, K = Cg * w.kh * w.kw;
    bool pointwise = w.kh == 1 && w.kw == 1 && w.sh == 1 && w.sw == 1 && !w.pt && !w.pl && !w.pb && !w.pr;
    char wl[512], px[128], pw[128], pbias[128], py[128], pr[128], g[64];
    win_literal(wl, sizeof wl, &w, G);
    vptr(c, x, true, px, sizeof px);
    vptr(c, wt, true, pw, sizeof pw);
    vptr(c, y, false, py, sizeof py);
    if (bv) vptr(c, bv, true, pbias, sizeof pbias);
    else snprintf(pbias, sizeof pbias, "(const float *)0");
    if (rv) vptr(c, rv, true, pr, sizeof pr);
    else snprintf(pr, sizeof pr, "(const float *)0");
    node_comment(c, n, &c->k);
    ct_emit_raw(&c->k, "/* (library kernels + cuBLAS) */\n");
    char nm[256];
    comment_safe(nm, sizeof nm, n->name);
    ct_emit_raw(&c->f, "    { /* Conv \"%s\" */\n        static const ct_win w = %s;\n", nm, wl);
    int64_t total = w.N * w.OC * OHW;
    if (total == 0) {
        ct_emit_raw(&c->f, "        (void)w;\n    }\n");
        return;
    }
    char epilogue[512] = "";
    if (rv || relu)
        snprintf(epilogue, sizeof epilogue,
                 "        CT_CUDA_CHECK(CT_LAUNCH(ct_add_relu_k, %s, %d, 0, ct_stream, (int64_t)%lld, %s, %d, %s));\n",
                 grid_for(g, sizeof g, total, BLOCK), BLOCK, (long long)total, pr, relu, py);
    if (Cg == 1 && G == w.C) {
        ct_emit_raw(&c->f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_dw_conv_k, %s, %d, 0, ct_stream, w, %s, %s, %s, %s));\n%s    }\n",
                    grid_for(g, sizeof g, total, BLOCK), BLOCK, px, pw, pbias, py, epilogue);
        return;
    }
    int64_t nb = conv_chunk(w.N, pointwise ? 0 : K * OHW);
    if (!pointwise && nb * K * OHW * 4 > c->scratch_bytes) c->scratch_bytes = nb * K * OHW * 4;
    if (bv)
        ct_emit_raw(&c->f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_bias_fill_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, %s, %s));\n",
                    grid_for(g, sizeof g, total, BLOCK), BLOCK, (long long)w.N, (long long)w.OC, (long long)OHW, pbias, py);
    ct_emit_raw(&c->f, "        float *col = (float *)(A + %lld);\n        (void)col;\n", (long long)c->scratch_off);
    ct_emit_raw(&c->f, "        for (int64_t n0 = 0; n0 < %lld; n0 += %lld) {\n", (long long)w.N, (long long)nb);
    ct_emit_raw(&c->f, "            const int64_t nb = %lld - n0 < %lld ? %lld - n0 : %lld;\n", (long long)w.N, (long long)nb,
                (long long)w.N, (long long)nb);
    ct_emit_raw(&c->f, "            for (int64_t g = 0; g < %lld; g++) {\n", (long long)G);
    if (!pointwise)
        ct_emit_raw(&c->f, "                CT_CUDA_CHECK(CT_LAUNCH(ct_im2col_k, ct_grid(nb * %lldLL, %d), %d, 0, ct_stream, w, %s, col, n0, nb, g));\n",
                    (long long)(K * OHW), BLOCK, BLOCK, px);
    char src[256];
    if (pointwise) snprintf(src, sizeof src, "%s + (n0 * %lld + g * %lld) * %lld", px, (long long)w.C, (long long)Cg, (long long)HW);
    else snprintf(src, sizeof src, "col");
    ct_emit_raw(&c->f, "                ct_sgemm_rm_batched(0, 0, %lld, %lld, %lld, 1.0f, %s + g * %lld, %lld, 0LL, %s, %lld, %lldLL, %s, %s + (n0 * %lld + g * %lld) * %lld, %lld, %lldLL, (int)nb);\n",
                (long long)Mg, (long long)OHW, (long long)K, pw, (long long)(Mg * K), (long long)K, src, (long long)OHW,
                (long long)(pointwise ? w.C * HW : K * OHW), bv ? "1.0f" : "0.0f", py, (long long)w.OC, (long long)Mg,
                (long long)OHW, (long long)OHW, (long long)(w.OC * OHW));
    ct_emit_raw(&c->f, "            }\n        }\n%s    }\n", epilogue);
}

/* ------------------------------------------------------------ shape-valued ops (when not folded) */

static void emit_shape_ops(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    ct_emitter *e = &c->k;
    if (n->op == CT_OP_SHAPE || n->op == CT_OP_SIZE) {
        kernel_open(c, n, false, 0);
        ct_emit_open(e, "if (blockIdx.x == 0 && threadIdx.x == 0)");
        if (n->op == CT_OP_SHAPE) {
            int r = x->shape.rank;
            int64_t s = ct_node_attr_int(n, "start", 0), t = ct_node_attr_int(n, "end", r);
            if (s < 0) s += r;
            if (t < 0) t += r;
            if (s < 0) s = 0;
            if (t > r) t = r;
            for (int64_t i = s; i < t; i++)
                ct_emit_line(e, "y0[%lld] = %lld;", (long long)(i - s), (long long)x->shape.dims[i]);
        } else ct_emit_line(e, "y0[0] = %lld;", (long long)numel(x));
        ct_emit_close(e);
        kernel_close(c);
        launch(c, "1", 32);
    } else { /* ConstantOfShape */
        const ct_attr *a = ct_node_attr(n, "value");
        double v = 0;
        if (a && a->t && !const_float(a->t, &v)) { unsupported(c, n, "value tensor"); return; }
        char lit[64];
        if (is_float(y->dtype)) flit(lit, sizeof lit, v);
        else snprintf(lit, sizeof lit, "%lld", (long long)v);
        kernel_open(c, n, false, BLOCK);
        ct_emit_pfor(e, "i", 1, false, "%lldLL", (long long)numel(y));
        ct_emit_line(e, "y0[i] = (%s)%s;", ctype_of(y->dtype), lit);
        ct_emit_close(e);
        kernel_close(c);
        if (numel(y) > 0) launch_ew(c, numel(y));
    }
}

/* ------------------------------------------------------------ training ops (ai.contra) */


/* ------------------------------------------------------------ fused training ops */

/* FusedEMA / FusedSGDStep / FusedAdamStep: the per-tensor kernel launched once per tensor. */
static void emit_fused_multi(cg *c, const ct_node *n)
{
    char nm[256], a[8][128], g[64];
    comment_safe(nm, sizeof nm, n->name);
    node_comment(c, n, &c->k);
    ct_emit_raw(&c->k, "/* (library kernels, one launch per tensor) */\n");
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->dtype != CT_F32 && !(n->op == CT_OP_FUSED_ADAM_STEP && i == 1)) {
            unsupported(c, n, "input %d is %s; the fused kernels are float32 only", i, ct_dtype_name(n->in[i]->dtype));
            return;
        }
    if (n->op == CT_OP_FUSED_EMA) {
        int k = (n->n_in - 2) / 2;
        if (k < 1 || n->n_in != 2 + 2 * k || n->n_out != k) { unsupported(c, n, "operand counts"); return; }
        for (int i = 0; i < k; i++) {
            int64_t cnt = numel(n->out[i]);
            if (!cnt) continue;
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_ema_k, %s, %d, 0, ct_stream, (int64_t)%lld, %s, %s, %s, %s, %s)); /* %s */\n",
                        grid_for(g, sizeof g, cnt, BLOCK), BLOCK, (long long)cnt, vptr(c, n->in[0], true, a[0], sizeof a[0]),
                        vptr(c, n->in[1], true, a[1], sizeof a[1]), vptr(c, n->in[2 + i], true, a[2], sizeof a[2]),
                        vptr(c, n->in[2 + k + i], true, a[3], sizeof a[3]), vptr(c, n->out[i], false, a[4], sizeof a[4]), nm);
        }
        return;
    }
    char l1[48], l2[48], l3[48], l4[48], l5[48], l6[48], l7[48];
    double wd = ct_node_attr_float(n, "weight_decay", 0);
    flit(l3, sizeof l3, wd);
    if (n->op == CT_OP_FUSED_SGD_STEP) {
        bool buf = ct_node_attr_int(n, "buffers", 0) != 0;
        int per = buf ? 3 : 2, k = (n->n_in - 1) / per;
        if (k < 1 || n->n_in != 1 + per * k || n->n_out != (buf ? 2 * k : k)) { unsupported(c, n, "operand counts"); return; }
        flit(l1, sizeof l1, ct_node_attr_float(n, "momentum", 0));
        for (int i = 0; i < k; i++) {
            int64_t cnt = numel(n->in[1 + i]);
            if (!cnt) continue;
            if (buf) {
                vptr(c, n->in[1 + 2 * k + i], true, a[3], sizeof a[3]);
                vptr(c, n->out[k + i], false, a[5], sizeof a[5]);
            } else {
                snprintf(a[3], sizeof a[3], "(const float *)0");
                snprintf(a[5], sizeof a[5], "(float *)0");
            }
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_sgd_k, %s, %d, 0, ct_stream, (int64_t)%lld, %s, %s, %s, %s, %s, %s, %s, %s, %d)); /* %s */\n",
                        grid_for(g, sizeof g, cnt, BLOCK), BLOCK, (long long)cnt, vptr(c, n->in[0], true, a[0], sizeof a[0]),
                        vptr(c, n->in[1 + i], true, a[1], sizeof a[1]), vptr(c, n->in[1 + k + i], true, a[2], sizeof a[2]),
                        a[3], vptr(c, n->out[i], false, a[4], sizeof a[4]), a[5], l1, l3,
                        (int)(ct_node_attr_int(n, "nesterov", 0) != 0), nm);
        }
        return;
    }
    /* FusedAdamStep(lr, step, p.., g.., m.., v..) -> p'.., m'.., v'.. */
    int k = (n->n_in - 2) / 4;
    if (k < 1 || n->n_in != 2 + 4 * k || n->n_out != 3 * k || n->in[1]->dtype != CT_I64) {
        unsupported(c, n, "operand counts or step dtype");
        return;
    }
    double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
    double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
    flit(l1, sizeof l1, b1);
    flit(l2, sizeof l2, b2);
    flit(l4, sizeof l4, 1.0 - b1);
    flit(l5, sizeof l5, 1.0 - b2);
    flit(l6, sizeof l6, ct_node_attr_float(n, "epsilon", 1e-8f));
    snprintf(l7, sizeof l7, "%d", (int)(ct_node_attr_int(n, "decoupled", 0) != 0));
    for (int i = 0; i < k; i++) {
        int64_t cnt = numel(n->in[2 + i]);
        if (!cnt) continue;
        ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_adam_k, %s, %d, 0, ct_stream, (int64_t)%lld, %s, %s, %s, %s, %s, %s, ",
                    grid_for(g, sizeof g, cnt, BLOCK), BLOCK, (long long)cnt, vptr(c, n->in[0], true, a[0], sizeof a[0]),
                    vptr(c, n->in[1], true, a[1], sizeof a[1]), vptr(c, n->in[2 + i], true, a[2], sizeof a[2]),
                    vptr(c, n->in[2 + k + i], true, a[3], sizeof a[3]), vptr(c, n->in[2 + 2 * k + i], true, a[4], sizeof a[4]),
                    vptr(c, n->in[2 + 3 * k + i], true, a[5], sizeof a[5]));
        ct_emit_raw(&c->f, "%s, %s, %s, %.17g, %.17g, %s, %s, %s, %s, %s, %s, %s)); /* %s */\n",
                    vptr(c, n->out[i], false, a[0], sizeof a[0]), vptr(c, n->out[k + i], false, a[1], sizeof a[1]),
                    vptr(c, n->out[2 * k + i], false, a[2], sizeof a[2]), b1, b2, l1, l2, l4, l5, l6, l3, l7, nm);
    }
}

/* ContrastiveLoss / ContrastiveLossGrad (MoCo): the queue streamed in tiles of
 * columns (one sgemm per tile into scratch), a running log-sum-exp per row. */
static void emit_contrastive(cg *c, const ct_node *n)
{
    bool fw = n->op == CT_OP_CONTRASTIVE_LOSS;
    const ct_value *q = n->in[fw ? 0 : 1], *queue = n->in[fw ? 2 : 3];
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->dtype != CT_F32) { unsupported(c, n, "float32 only"); return; }
    if (q->shape.rank != 2 || queue->shape.rank != 2 || queue->shape.dims[0] != q->shape.dims[1]) {
        unsupported(c, n, "needs embeddings [N, D] and a queue [D, K]");
        return;
    }
    int64_t N = q->shape.dims[0], D = q->shape.dims[1], K = queue->shape.dims[1];
    int64_t TB = ct_node_attr_int(n, "tile", 0);
    if (TB <= 0) TB = 512;
    if (TB > K) TB = K;
    double T = ct_node_attr_float(n, "temperature", 1.0f);
    if (!(T > 0) || N < 1 || D < 1 || K < 1) { unsupported(c, n, "temperature must be > 0, sizes >= 1"); return; }
    /* scratch: qn (N, D), tile (N, TB) [bw: dqn (N, D), lse (N)], then doubles */
    int64_t s_qn = c->scratch_off, s_tile = s_qn + align_up(N * D * 4), s_x = s_tile + align_up(N * TB * 4);
    int64_t s_d = s_x + align_up(fw ? 0 : (N * D + N) * 4);
    int64_t need = s_d + (fw ? 3 * N * 8 : 0) - c->scratch_off;
    if (need > c->scratch_bytes) c->scratch_bytes = need;
    char nm[256], a[6][128], inv[48];
    comment_safe(nm, sizeof nm, n->name);
    snprintf(inv, sizeof inv, "%.17g", 1.0 / T);
    node_comment(c, n, &c->k);
    ct_emit_raw(&c->k, "/* (library kernels + cuBLAS) */\n");
    int bs = red_block(D);
    ct_emitter *f = &c->f;
    ct_emit_raw(f, "    { /* %s \"%s\" */\n", ct_op_table[n->op].name, nm);
    ct_emit_raw(f, "        float *qn = (float *)(A + %lld), *tile = (float *)(A + %lld);\n", (long long)s_qn, (long long)s_tile);
    if (fw) {
        ct_emit_raw(f, "        double *run_m = (double *)(A + %lld), *run_s = run_m + %lld, *lpos = run_s + %lld;\n",
                    (long long)s_d, (long long)N, (long long)N);
        ct_emit_raw(f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_closs_init_k, ct_grid(%lldLL, 1), %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (double)%s, %s, %s, qn, run_m, run_s, lpos));\n",
                    (long long)N, bs, (long long)N, (long long)D, inv, vptr(c, n->in[0], true, a[0], sizeof a[0]),
                    vptr(c, n->in[1], true, a[1], sizeof a[1]));
        ct_emit_raw(f, "        for (int64_t j0 = 0; j0 < %lld; j0 += %lld) {\n", (long long)K, (long long)TB);
        ct_emit_raw(f, "            const int64_t nb = %lld - j0 < %lld ? %lld - j0 : %lld;\n", (long long)K, (long long)TB,
                    (long long)K, (long long)TB);
        ct_emit_raw(f, "            ct_sgemm_rm(0, 0, %lld, nb, %lld, 1.0f, qn, %lld, %s + j0, %lld, 0.0f, tile, nb);\n",
                    (long long)N, (long long)D, (long long)D, vptr(c, queue, true, a[2], sizeof a[2]), (long long)K);
        ct_emit_raw(f, "            CT_CUDA_CHECK(CT_LAUNCH(ct_closs_tile_k, ct_grid(%lldLL, 1), %d, 0, ct_stream, (int64_t)%lld, nb, (double)%s, tile, run_m, run_s));\n",
                    (long long)N, red_block(TB), (long long)N, inv);
        ct_emit_raw(f, "        }\n");
        if (n->n_out > 1 && n->out[1]) vptr(c, n->out[1], false, a[4], sizeof a[4]);
        else snprintf(a[4], sizeof a[4], "(float *)0");
        ct_emit_raw(f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_closs_final_k, 1, %d, 0, ct_stream, (int64_t)%lld, run_m, run_s, lpos, %s, %s));\n    }\n",
                    red_block(N), (long long)N, vptr(c, n->out[0], false, a[3], sizeof a[3]), a[4]);
        return;
    }
    ct_emit_raw(f, "        float *dqn = (float *)(A + %lld), *lse = dqn + %lld;\n", (long long)s_x, (long long)(N * D));
    ct_emit_raw(f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_closs_bw_init_k, ct_grid(%lldLL, 1), %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (double)%s, %s, %s, %s, qn, dqn, lse));\n",
                (long long)N, bs, (long long)N, (long long)D, inv, vptr(c, n->in[1], true, a[1], sizeof a[1]),
                vptr(c, n->in[2], true, a[2], sizeof a[2]), vptr(c, n->in[4], true, a[4], sizeof a[4]));
    vptr(c, queue, true, a[3], sizeof a[3]);
    ct_emit_raw(f, "        for (int64_t j0 = 0; j0 < %lld; j0 += %lld) {\n", (long long)K, (long long)TB);
    ct_emit_raw(f, "            const int64_t nb = %lld - j0 < %lld ? %lld - j0 : %lld;\n", (long long)K, (long long)TB,
                (long long)K, (long long)TB);
    ct_emit_raw(f, "            ct_sgemm_rm(0, 0, %lld, nb, %lld, 1.0f, qn, %lld, %s + j0, %lld, 0.0f, tile, nb);\n",
                (long long)N, (long long)D, (long long)D, a[3], (long long)K);
    ct_emit_raw(f, "            CT_CUDA_CHECK(CT_LAUNCH(ct_closs_bw_tile_k, ct_grid(%lldLL * nb, %d), %d, 0, ct_stream, (int64_t)%lld, nb, (float)%s, lse, tile));\n",
                (long long)N, BLOCK, BLOCK, (long long)N, inv);
    ct_emit_raw(f, "            ct_sgemm_rm(0, 1, %lld, %lld, nb, 1.0f, tile, nb, %s + j0, %lld, 1.0f, dqn, %lld);\n",
                (long long)N, (long long)D, a[3], (long long)K, (long long)D);
    ct_emit_raw(f, "        }\n");
    ct_emit_raw(f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_closs_bw_final_k, ct_grid(%lldLL, 1), %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (double)%s, %s, %s, qn, dqn, %s));\n    }\n",
                (long long)N, bs, (long long)N, (long long)D, inv, vptr(c, n->in[0], true, a[0], sizeof a[0]), a[1],
                vptr(c, n->out[0], false, a[5], sizeof a[5]));
}

static void emit_train(cg *c, const ct_node *n)
{
    switch (n->op) {
    case CT_OP_CONTRASTIVE_LOSS: case CT_OP_CONTRASTIVE_LOSS_GRAD: emit_contrastive(c, n); return;
    case CT_OP_FUSED_EMA: case CT_OP_FUSED_SGD_STEP: case CT_OP_FUSED_ADAM_STEP: emit_fused_multi(c, n); return;
    default: break;
    }
    /* QueuePush's pointer is int64: it checks its own operands */
    if (n->op != CT_OP_QUEUE_PUSH && !train_f32(c, n)) return;
    for (int i = 0; i < n->n_in && n->op != CT_OP_QUEUE_PUSH; i++)
        if (n->in[i] && n->in[i]->dtype != CT_F32 &&
            !((n->op == CT_OP_SOFTMAX_CROSS_ENTROPY && i == 1) || (n->op == CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD && i == 2) ||
              (n->op == CT_OP_ADAM_STEP && i == 5))) {
            unsupported(c, n, "input %d '%s' is %s; training kernels are float32 only", i, n->in[i]->name,
                        ct_dtype_name(n->in[i]->dtype));
            return;
        }
    if ((n->op == CT_OP_SOFTMAX_CROSS_ENTROPY && n->in[1]->dtype != CT_I64) ||
        (n->op == CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD && n->in[2]->dtype != CT_I64) ||
        (n->op == CT_OP_ADAM_STEP && n->in[5]->dtype != CT_I64)) {
        unsupported(c, n, "labels and step counts must be int64");
        return;
    }
    ct_emitter *e = &c->k;
    char wbuf[512], l1[48], l2[48], l3[48], g[64], nm[256];
    int64_t pend[2], geo[8];
    comment_safe(nm, sizeof nm, n->name);
    switch (n->op) {
    case CT_OP_STOP_GRADIENT:
        emit_alias_or_copy(c, n);
        return;
    case CT_OP_RELU_GRAD: case CT_OP_SIGMOID_GRAD: case CT_OP_TANH_GRAD: case CT_OP_HARD_SIGMOID_GRAD:
    case CT_OP_HARD_SWISH_GRAD: case CT_OP_LEAKY_RELU_GRAD: case CT_OP_ABS_GRAD: case CT_OP_CLIP_GRAD: {
        const char *expr = NULL;
        char buf[512];
        double al = ct_node_attr_float(n, "alpha", n->op == CT_OP_LEAKY_RELU_GRAD ? 0.01f : 0.2f);
        double be = ct_node_attr_float(n, "beta", 0.5f);
        switch (n->op) {
        case CT_OP_RELU_GRAD: expr = "y > 0 ? d : 0.0f"; break;
        case CT_OP_SIGMOID_GRAD: expr = "d * y * (1.0f - y)"; break;
        case CT_OP_TANH_GRAD: expr = "d * (1.0f - y * y)"; break;
        case CT_OP_HARD_SIGMOID_GRAD:
            snprintf(buf, sizeof buf, "(%s * y + %s > 0.0f && %s * y + %s < 1.0f) ? d * %s : 0.0f",
                     flit(l1, sizeof l1, al), flit(l2, sizeof l2, be), l1, l2, l1);
            expr = buf;
            break;
        case CT_OP_HARD_SWISH_GRAD: expr = "y < -3.0f ? 0.0f : y <= 3.0f ? d * (y / 3.0f + 0.5f) : d"; break;
        case CT_OP_LEAKY_RELU_GRAD:
            snprintf(buf, sizeof buf, "y > 0 ? d : d * %s", flit(l1, sizeof l1, al));
            expr = buf;
            break;
        case CT_OP_ABS_GRAD: expr = "y > 0 ? d : y < 0 ? -d : 0.0f"; break;
        default: {
            char lo[48] = "-INFINITY", hi[48] = "INFINITY";
            if (n->n_in > 2 && n->in[2]) snprintf(lo, sizeof lo, "x2[0]");
            else flit(lo, sizeof lo, ct_node_attr_float(n, "min", -INFINITY));
            if (n->n_in > 3 && n->in[3]) snprintf(hi, sizeof hi, "x3[0]");
            else flit(hi, sizeof hi, ct_node_attr_float(n, "max", INFINITY));
            snprintf(buf, sizeof buf, "(y >= %s && y <= %s) ? d : 0.0f", lo, hi);
            expr = buf;
        }
        }
        int64_t k = numel(n->out[0]);
        kernel_open(c, n, false, BLOCK);
        ct_emit_pfor(e, "i", 1, false, "%lldLL", (long long)k);
        ct_emit_line(e, "const float d = x0[i], y = x1[i];");
        ct_emit_line(e, "y0[i] = %s;", expr);
        ct_emit_close(e);
        kernel_close(c);
        if (k > 0) launch_ew(c, k);
        return;
    }
    case CT_OP_SOFTMAX_GRAD: case CT_OP_LOG_SOFTMAX_GRAD: {
        const ct_shape *s = &n->in[1]->shape;
        if (s->rank == 0) { unsupported(c, n, "scalar input"); return; }
        int axis = norm_axis(ct_node_attr_int(n, "axis", -1), s->rank);
        int64_t outer = prod(s->dims, 0, axis), d = s->dims[axis], inner = prod(s->dims, axis + 1, s->rank);
        char px[128], py[128], pz[128];
        int bs = red_block(d);
        if (outer * inner * d == 0) return;
        snprintf(g, sizeof g, "ct_grid(%lldLL, 1)", (long long)(outer * inner));
        ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_softmax_grad_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, %d, %s, %s, %s)); /* %s */\n",
                    g, bs, (long long)outer, (long long)d, (long long)inner, n->op == CT_OP_LOG_SOFTMAX_GRAD,
                    vptr(c, n->in[0], true, px, sizeof px), vptr(c, n->in[1], true, py, sizeof py),
                    vptr(c, n->out[0], false, pz, sizeof pz), nm);
        return;
    }
    case CT_OP_CONV_GRAD_INPUT: case CT_OP_CONV_GRAD_WEIGHT: {
        bool wi = n->op == CT_OP_CONV_GRAD_INPUT;
        const ct_shape *ys = &n->in[0]->shape, *xs = wi ? &n->out[0]->shape : &n->in[1]->shape;
        const ct_shape *ws = wi ? &n->in[1]->shape : &n->out[0]->shape;
        if (xs->rank != ws->rank) { unsupported(c, n, "weight rank differs from input rank"); return; }
        if (!train_window(c, n, xs, ys, ws->dims + 2, pend, geo, wbuf, sizeof wbuf)) return;
        int64_t G = ct_node_attr_int(n, "group", 1);
        if (G <= 0 || xs->dims[1] % G || ys->dims[1] % G || ws->dims[1] * G != xs->dims[1] || ws->dims[0] != ys->dims[1]) {
            unsupported(c, n, "channels and group do not match");
            return;
        }
        int64_t N = xs->dims[0], C = xs->dims[1], M = ys->dims[1];
        int64_t Cg = C / G, Mg = M / G, K = Cg * geo[0] * geo[1], OHW = geo[2] * geo[3], HW = geo[4] * geo[5];
        bool pw = geo[6] != 0, depthwise = Cg == 1 && Mg == 1 && !pw;
        char p0[128], p1[128], po[128];
        vptr(c, n->in[0], true, p0, sizeof p0);
        vptr(c, n->in[1], true, p1, sizeof p1);
        vptr(c, n->out[0], false, po, sizeof po);
        ct_emit_raw(&c->f, "    { /* %s \"%s\" */\n        static const ct_win w = %s;\n", ct_op_table[n->op].name, nm, wbuf);
        if (numel(n->out[0]) == 0) {
            ct_emit_raw(&c->f, "        (void)w;\n    }\n");
            return;
        }
        if (N * OHW == 0) {
            ct_emit_raw(&c->f, "        (void)w;\n        CT_CUDA_CHECK(cudaMemsetAsync(%s, 0, %lld, ct_stream));\n    }\n", po,
                        (long long)ct_value_nbytes(n->out[0]));
            return;
        }
        if (depthwise) {
            if (wi)
                ct_emit_raw(&c->f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_dw_grad_input_k, %s, %d, 0, ct_stream, w, %s, %s, %s));\n    }\n",
                            grid_for(g, sizeof g, N * C * HW, BLOCK), BLOCK, p0, p1, po);
            else {
                snprintf(g, sizeof g, "ct_grid(%lldLL, 1)", (long long)(G * geo[0] * geo[1]));
                ct_emit_raw(&c->f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_dw_grad_weight_k, %s, %d, 0, ct_stream, w, %s, %s, %s));\n    }\n",
                            g, red_block(N * OHW), p0, p1, po);
            }
            return;
        }
        int64_t nb = conv_chunk(N, pw ? 0 : K * OHW);
        if (!pw && nb * K * OHW * 4 > c->scratch_bytes) c->scratch_bytes = nb * K * OHW * 4;
        ct_emit_raw(&c->f, "        float *col = (float *)(A + %lld);\n        (void)col;\n", (long long)c->scratch_off);
        ct_emit_raw(&c->f, "        for (int64_t n0 = 0; n0 < %lld; n0 += %lld) {\n", (long long)N, (long long)nb);
        ct_emit_raw(&c->f, "            const int64_t nb = %lld - n0 < %lld ? %lld - n0 : %lld;\n", (long long)N, (long long)nb,
                    (long long)N, (long long)nb);
        ct_emit_raw(&c->f, "            for (int64_t g = 0; g < %lld; g++) {\n", (long long)G);
        if (wi) {
            /* col (K, OHW) per image = W_g^T dY_g, then col2im (or straight into dX when pointwise) */
            if (pw)
                ct_emit_raw(&c->f, "                ct_sgemm_rm_batched(1, 0, %lld, %lld, %lld, 1.0f, %s + g * %lld, %lld, 0LL, %s + (n0 * %lld + g * %lld) * %lld, %lld, %lldLL, 0.0f, %s + (n0 * %lld + g * %lld) * %lld, %lld, %lldLL, (int)nb);\n",
                            (long long)K, (long long)OHW, (long long)Mg, p1, (long long)(Mg * K), (long long)K, p0,
                            (long long)M, (long long)Mg, (long long)OHW, (long long)OHW, (long long)(M * OHW), po,
                            (long long)C, (long long)Cg, (long long)HW, (long long)HW, (long long)(C * HW));
            else {
                ct_emit_raw(&c->f, "                ct_sgemm_rm_batched(1, 0, %lld, %lld, %lld, 1.0f, %s + g * %lld, %lld, 0LL, %s + (n0 * %lld + g * %lld) * %lld, %lld, %lldLL, 0.0f, col, %lld, %lldLL, (int)nb);\n",
                            (long long)K, (long long)OHW, (long long)Mg, p1, (long long)(Mg * K), (long long)K, p0,
                            (long long)M, (long long)Mg, (long long)OHW, (long long)OHW, (long long)(M * OHW),
                            (long long)OHW, (long long)(K * OHW));
                ct_emit_raw(&c->f, "                CT_CUDA_CHECK(CT_LAUNCH(ct_col2im_k, ct_grid(nb * %lldLL, %d), %d, 0, ct_stream, w, col, %s, n0, nb, g));\n",
                            (long long)(Cg * HW), BLOCK, BLOCK, po);
            }
        } else {
            /* dW_g (Mg, K) = sum over images of dY_g (Mg, OHW) col^T */
            if (!pw)
                ct_emit_raw(&c->f, "                CT_CUDA_CHECK(CT_LAUNCH(ct_im2col_k, ct_grid(nb * %lldLL, %d), %d, 0, ct_stream, w, %s, col, n0, nb, g));\n",
                            (long long)(K * OHW), BLOCK, BLOCK, p1);
            ct_emit_raw(&c->f, "                for (int64_t b = 0; b < nb; b++)\n");
            ct_emit_raw(&c->f, "                    ct_sgemm_rm(0, 1, %lld, %lld, %lld, 1.0f, %s + ((n0 + b) * %lld + g * %lld) * %lld, %lld, ",
                        (long long)Mg, (long long)K, (long long)OHW, p0, (long long)M, (long long)Mg, (long long)OHW,
                        (long long)OHW);
            if (pw) ct_emit_raw(&c->f, "%s + ((n0 + b) * %lld + g * %lld) * %lld, ", p1, (long long)C, (long long)Cg, (long long)HW);
            else ct_emit_raw(&c->f, "col + b * %lld, ", (long long)(K * OHW));
            ct_emit_raw(&c->f, "%lld, n0 + b ? 1.0f : 0.0f, %s + g * %lld, %lld);\n", (long long)OHW, po, (long long)(Mg * K),
                        (long long)K);
        }
        ct_emit_raw(&c->f, "            }\n        }\n    }\n");
        return;
    }
    case CT_OP_MAX_POOL_GRAD: case CT_OP_AVERAGE_POOL_GRAD: {
        bool mx = n->op == CT_OP_MAX_POOL_GRAD;
        if (!train_window(c, n, &n->out[0]->shape, &n->in[0]->shape, NULL, pend, geo, wbuf, sizeof wbuf)) return;
        if (n->in[0]->shape.dims[1] != n->out[0]->shape.dims[1]) { unsupported(c, n, "channel mismatch"); return; }
        char p0[128], p1[128], po[128];
        int64_t total = numel(n->out[0]);
        if (total == 0) return;
        ct_emit_raw(&c->f, "    { /* %s \"%s\" */\n        static const ct_win w = %s;\n", ct_op_table[n->op].name, nm, wbuf);
        ct_emit_raw(&c->f, "        CT_CUDA_CHECK(CT_LAUNCH(ct_pool_grad_k, %s, %d, 0, ct_stream, w, %d, %d, (int64_t)%lld, (int64_t)%lld, %s, %s, %s));\n    }\n",
                    grid_for(g, sizeof g, total, BLOCK), BLOCK, mx, (int)(ct_node_attr_int(n, "count_include_pad", 0) != 0),
                    (long long)pend[0], (long long)pend[1], vptr(c, n->in[0], true, p0, sizeof p0),
                    mx ? vptr(c, n->in[1], true, p1, sizeof p1) : "(const float *)0", vptr(c, n->out[0], false, po, sizeof po));
        return;
    }
    case CT_OP_BATCH_NORM_TRAIN: case CT_OP_FUSED_BN_TRAIN_RELU: case CT_OP_BATCH_NORM_GRAD: {
        bool tr = n->op != CT_OP_BATCH_NORM_GRAD, fr = n->op == CT_OP_FUSED_BN_TRAIN_RELU;
        const ct_shape *xs = &n->in[tr ? 0 : 1]->shape;
        if (xs->rank < 2) { unsupported(c, n, "input rank < 2"); return; }
        int64_t N = xs->dims[0], C = xs->dims[1], SP = prod(xs->dims, 2, xs->rank), S = ct_node_attr_int(n, "splits", 1);
        if (S < 1 || N % S) { unsupported(c, n, "batch %lld not divisible by splits %lld", (long long)N, (long long)S); return; }
        const int64_t W = ct_node_attr_int(n, "world", 1);
        if (W > 1 && (S != 1 || fr)) { unsupported(c, n, "SyncBatchNorm with splits or a fused Relu"); return; }
        if (C == 0) return;
        char in[5][128], o[5][128];
        for (int i = 0; i < 5; i++) vptr(c, n->in[i], true, in[i], sizeof in[i]);
        for (int i = 0; i < 5; i++) {
            if (i < n->n_out && n->out[i]) vptr(c, n->out[i], false, o[i], sizeof o[i]);
            else snprintf(o[i], sizeof o[i], "(float *)0");
        }
        snprintf(g, sizeof g, "ct_grid(%lldLL, 1)", (long long)C);
        int bs = red_block((N / S) * SP);
        if (W > 1) {
            /* SyncBatchNorm: per-channel sums in 2C doubles of scratch, all-reduced between the passes */
            if (2 * C * 8 > c->scratch_bytes) c->scratch_bytes = 2 * C * 8;
            char acc[64], M[48];
            snprintf(acc, sizeof acc, "(double *)(A + %lld)", (long long)c->scratch_off);
            snprintf(M, sizeof M, "%.17g", (double)(N * SP) * (double)W);
            c->uses_nccl = true;
            ct_emit_raw(&c->f, "    ct_nccl_setup(); /* SyncBatchNorm %s */\n", nm);
            if (tr) {
                for (int pass = 0; pass < 2; pass++)
                    ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bnsync_sums_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (double)%s, %d, %s, %s));\n"
                                       "    CT_NCCL_CHECK(ncclAllReduce(%s + %lld, %s + %lld, %lldULL, ncclFloat64, ncclSum, ct_nccl, ct_stream));\n",
                                g, bs, (long long)N, (long long)C, (long long)SP, M, pass, in[0], acc, acc,
                                (long long)(pass * C), acc, (long long)(pass * C), (long long)C);
                ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bnsync_apply_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (double)%s, (double)%s, (double)%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s));\n",
                            g, bs, (long long)N, (long long)C, (long long)SP, M,
                            flit(l1, sizeof l1, ct_node_attr_float(n, "epsilon", 1e-5f)),
                            flit(l2, sizeof l2, ct_node_attr_float(n, "momentum", 0.1f)), acc, in[0], in[1], in[2],
                            in[3], in[4], o[0], o[1], o[2], o[3], o[4]);
            } else {
                ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bnsync_grad_sums_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, %s, %s, %s, %s, %s, %s, %s));\n",
                            g, bs, (long long)N, (long long)C, (long long)SP, in[0], in[1], in[3], in[4], acc, o[1],
                            o[2]);
                if (n->out[0]) {
                    ct_emit_raw(&c->f, "    CT_NCCL_CHECK(ncclAllReduce(%s, %s, %lldULL, ncclFloat64, ncclSum, ct_nccl, ct_stream));\n",
                                acc, acc, (long long)(2 * C));
                    ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bnsync_grad_apply_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (double)%s, %s, %s, %s, %s, %s, %s, %s));\n",
                                g, bs, (long long)N, (long long)C, (long long)SP, M, acc, in[0], in[1], in[2], in[3],
                                in[4], o[0]);
                }
            }
            return;
        }
        if (tr)
        {
            char res[128] = "(const float *)0";
            if (fr && n->n_in > 5 && n->in[5]) vptr(c, n->in[5], true, res, sizeof res);
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bn_train_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (double)%s, (double)%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d)); /* %s */\n",
                        g, bs, (long long)N, (long long)C, (long long)SP, (long long)S,
                        flit(l1, sizeof l1, ct_node_attr_float(n, "epsilon", 1e-5f)),
                        flit(l2, sizeof l2, ct_node_attr_float(n, "momentum", 0.1f)), in[0], in[1], in[2], in[3], in[4],
                        o[0], o[1], o[2], o[3], o[4], res, (int)fr, nm);
        }
        else
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_bn_grad_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, (int64_t)%lld, %s, %s, %s, %s, %s, %s, %s, %s)); /* %s */\n",
                        g, bs, (long long)N, (long long)C, (long long)SP, (long long)S, in[0], in[1], in[2], in[3], in[4],
                        o[0], o[1], o[2], nm);
        return;
    }
    case CT_OP_SOFTMAX_CROSS_ENTROPY: case CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD: {
        bool fw = n->op == CT_OP_SOFTMAX_CROSS_ENTROPY;
        const ct_shape *s = &n->in[fw ? 0 : 1]->shape;
        if (s->rank != 2) { unsupported(c, n, "logits must be [N, C]"); return; }
        char p0[128], p1[128], p2[128], o0[128], o1[128];
        vptr(c, n->in[0], true, p0, sizeof p0);
        vptr(c, n->in[1], true, p1, sizeof p1);
        vptr(c, n->out[0], false, o0, sizeof o0);
        if (fw) {
            if (n->n_out > 1 && n->out[1]) vptr(c, n->out[1], false, o1, sizeof o1);
            else snprintf(o1, sizeof o1, "(float *)0");
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_sce_k, 1, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, %s, %s, %s, %s)); /* %s */\n",
                        red_block(s->dims[1]), (long long)s->dims[0], (long long)s->dims[1], p0, p1, o0, o1, nm);
        } else {
            vptr(c, n->in[2], true, p2, sizeof p2);
            if (s->dims[0] * s->dims[1] == 0) return;
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_sce_grad_k, %s, %d, 0, ct_stream, (int64_t)%lld, (int64_t)%lld, %s, %s, %s, %s)); /* %s */\n",
                        grid_for(g, sizeof g, s->dims[0] * s->dims[1], BLOCK), BLOCK, (long long)s->dims[0],
                        (long long)s->dims[1], p0, p1, p2, o0, nm);
        }
        return;
    }
    case CT_OP_ALL_REDUCE: case CT_OP_ALL_GATHER: case CT_OP_REDUCE_SCATTER: {
        /* NCCL on the step's stream (captured into the step's CUDA graph like any kernel) */
        char px[128], py[128];
        if (n->op == CT_OP_ALL_REDUCE) {
            /* overlapped with the rest of backward: the gradients are copied to the outputs on the step's
             * stream (the inputs' memory may be reused right after), the comm stream forks from there and
             * reduces the outputs in place, and the step's stream joins it before the first node that reads
             * a reduced gradient (ct_join_pending) */
            bool mean = !strcmp(ct_node_attr_string(n, "op", "sum"), "mean");
            int k = c->n_buckets++;
            for (int i = 0; i < n->n_in; i++)
                if (c->region[n->in[i]->id] != c->region[n->out[i]->id] || c->off[n->in[i]->id] != c->off[n->out[i]->id])
                    ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemcpyAsync(%s, %s, %lld, cudaMemcpyDeviceToDevice, ct_stream));\n",
                                vptr(c, n->out[i], false, py, sizeof py), vptr(c, n->in[i], true, px, sizeof px),
                                (long long)ct_value_nbytes(n->in[i]));
            ct_emit_raw(&c->f, "    ct_nccl_setup();\n    CT_CUDA_CHECK(cudaEventRecord(ct_ev_fork[%d], ct_stream));\n"
                               "    CT_CUDA_CHECK(cudaStreamWaitEvent(ct_comm_stream, ct_ev_fork[%d], 0));\n"
                               "    CT_NCCL_CHECK(ncclGroupStart());\n", k, k);
            for (int i = 0; i < n->n_in; i++) {
                vptr(c, n->out[i], false, py, sizeof py);
                ct_emit_raw(&c->f, "    CT_NCCL_CHECK(ncclAllReduce(%s, %s, %lldULL, ncclFloat32, %s, ct_nccl, ct_comm_stream));\n",
                            py, py, (long long)ct_shape_numel(&n->in[i]->shape), mean ? "ncclAvg" : "ncclSum");
                c->join_of[n->out[i]->id] = k + 1;
            }
            ct_emit_raw(&c->f, "    CT_NCCL_CHECK(ncclGroupEnd());\n    CT_CUDA_CHECK(cudaEventRecord(ct_ev_join[%d], ct_comm_stream));\n", k);
        } else if (n->op == CT_OP_ALL_GATHER) {
            ct_emit_raw(&c->f, "    ct_nccl_setup();\n    CT_NCCL_CHECK(ncclAllGather(%s, %s, %lldULL, ncclInt8, ct_nccl, ct_stream));\n",
                        vptr(c, n->in[0], true, px, sizeof px), vptr(c, n->out[0], false, py, sizeof py),
                        (long long)ct_value_nbytes(n->in[0]));
        } else {
            ct_emit_raw(&c->f, "    ct_nccl_setup();\n    CT_NCCL_CHECK(ncclReduceScatter(%s, %s, %lldULL, ncclFloat32, ncclSum, ct_nccl, ct_stream));\n",
                        vptr(c, n->in[0], true, px, sizeof px), vptr(c, n->out[0], false, py, sizeof py),
                        (long long)ct_shape_numel(&n->out[0]->shape));
        }
        c->uses_nccl = true;
        return;
    }
    case CT_OP_QUEUE_PUSH: {
        const ct_shape *qs = &n->in[0]->shape, *ks = &n->in[1]->shape;
        if (qs->rank != 2 || ks->rank != 2 || ks->dims[1] != qs->dims[0] || ks->dims[0] > qs->dims[1] ||
            n->in[0]->dtype != CT_F32) {
            unsupported(c, n, "needs a float queue [D, K] and keys [B, D] with B <= K");
            return;
        }
        int64_t D = qs->dims[0], K = qs->dims[1], B = ks->dims[0];
        const ct_value *q = n->in[0], *yq = n->out[0];
        char pq[128], py[128];
        if (!(c->region[q->id] == c->region[yq->id] && c->off[q->id] == c->off[yq->id]))
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaMemcpyAsync(%s, %s, %lld, cudaMemcpyDeviceToDevice, ct_stream));\n",
                        vptr(c, yq, false, py, sizeof py), vptr(c, q, true, pq, sizeof pq), (long long)(D * K * 4));
        /* the ring write reads the pointer; the pointer update (which may be in place) is a second kernel */
        kernel_open(c, n, false, BLOCK);
        ct_emit_line(e, "const int64_t ptr = x2[0];");
        ct_emit_pfor(e, "t", 1, false, "%lldLL", (long long)(B * D));
        ct_emit_line(e, "const int64_t i = t / %lld, d = t %% %lld;", (long long)D, (long long)D);
        ct_emit_line(e, "y0[d * %lld + (ptr + i) %% %lld] = x1[t];", (long long)K, (long long)K);
        ct_emit_close(e);
        kernel_close(c);
        if (B * D > 0) launch_ew(c, B * D);
        if (n->n_out > 1 && n->out[1]) {
            c->ksuffix = "_ptr"; /* a second kernel for the same node */
            kernel_open(c, n, false, 0);
            c->ksuffix = "";
            ct_emit_line(e, "if (blockIdx.x == 0 && threadIdx.x == 0) y1[0] = (x2[0] + %lld) %% %lld;", (long long)B,
                         (long long)K);
            kernel_close(c);
            launch(c, "1", 32);
        }
        return;
    }
    case CT_OP_SGD_STEP: case CT_OP_ADAM_STEP: case CT_OP_LARS_STEP: {
        int64_t k = numel(n->in[0]);
        double wd = ct_node_attr_float(n, "weight_decay", 0);
        flit(l3, sizeof l3, wd);
        if (k == 0) return;
        if (n->op == CT_OP_LARS_STEP && !ct_node_attr_int(n, "exclude", 0)) {
            /* the trust ratio first (one block), into the scratch area */
            char p0[128], p1[128];
            if (c->scratch_bytes < 64) c->scratch_bytes = 64;
            ct_emit_raw(&c->f, "    CT_CUDA_CHECK(CT_LAUNCH(ct_lars_ratio_k, 1, 256, 0, ct_stream, (int64_t)%lld, (double)%s, (double)%s, %s, %s, (float *)(A + %lld))); /* %s */\n",
                        (long long)k, l3, flit(l2, sizeof l2, ct_node_attr_float(n, "trust_coefficient", 0.001f)),
                        vptr(c, n->in[0], true, p0, sizeof p0), vptr(c, n->in[1], true, p1, sizeof p1),
                        (long long)c->scratch_off, nm);
        }
        bool lars_ratio = n->op == CT_OP_LARS_STEP && !ct_node_attr_int(n, "exclude", 0);
        kernel_open(c, n, lars_ratio, BLOCK);
        ct_emit_line(e, "const float lr = x2[0];");
        if (n->op == CT_OP_SGD_STEP) {
            double mom = ct_node_attr_float(n, "momentum", 0);
            bool buf = n->n_in > 3 && n->in[3], nest = ct_node_attr_int(n, "nesterov", 0) != 0;
            flit(l1, sizeof l1, mom);
            ct_emit_pfor(e, "i", 1, false, "%lldLL", (long long)k);
            ct_emit_line(e, "const float p = x0[i];");
            if (wd != 0) ct_emit_line(e, "float d = x1[i] + %s * p;", l3);
            else ct_emit_line(e, "float d = x1[i];");
            if (buf) {
                ct_emit_line(e, "const float b = %s * x3[i] + d;", l1);
                if (n->n_out > 1 && n->out[1]) ct_emit_line(e, "y1[i] = b;");
                if (nest) ct_emit_line(e, "d = d + %s * b;", l1);
                else ct_emit_line(e, "d = b;");
            }
            ct_emit_line(e, "y0[i] = p - lr * d;");
            ct_emit_close(e);
        } else if (n->op == CT_OP_ADAM_STEP) {
            double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
            double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
            bool dec = ct_node_attr_int(n, "decoupled", 0) != 0;
            char le[48], c1[48], c2[48];
            flit(l1, sizeof l1, b1);
            flit(l2, sizeof l2, b2);
            flit(c1, sizeof c1, 1.0 - b1);
            flit(c2, sizeof c2, 1.0 - b2);
            flit(le, sizeof le, ct_node_attr_float(n, "epsilon", 1e-8f));
            ct_emit_line(e, "const double tt = (double)x5[0];");
            ct_emit_line(e, "const double bc1 = 1.0 - pow(%.17g, tt), bc2s = sqrt(1.0 - pow(%.17g, tt));", b1, b2);
            ct_emit_line(e, "const float ss = (float)((double)lr / bc1), bc2f = (float)bc2s;");
            if (dec) ct_emit_line(e, "const float decay = 1.0f - lr * %s;", l3);
            ct_emit_pfor(e, "i", 1, false, "%lldLL", (long long)k);
            ct_emit_line(e, "float p = x0[i], g = x1[i];");
            if (dec) ct_emit_line(e, "p = p * decay;");
            else if (wd != 0) ct_emit_line(e, "g = g + %s * p;", l3);
            ct_emit_line(e, "const float m = %s * x3[i] + %s * g;", l1, c1);
            ct_emit_line(e, "const float v = %s * x4[i] + %s * g * g;", l2, c2);
            ct_emit_line(e, "const float den = sqrtf(v) / bc2f + %s;", le);
            ct_emit_line(e, "y1[i] = m;");
            ct_emit_line(e, "y2[i] = v;");
            ct_emit_line(e, "y0[i] = p - ss * (m / den);");
            ct_emit_close(e);
        } else {
            bool ex = ct_node_attr_int(n, "exclude", 0) != 0;
            flit(l1, sizeof l1, ct_node_attr_float(n, "momentum", 0.9f));
            ct_emit_line(e, "const float q = %s;", ex ? "1.0f" : "scratch[0]");
            ct_emit_pfor(e, "i", 1, false, "%lldLL", (long long)k);
            if (ex) ct_emit_line(e, "const float d = x1[i];");
            else ct_emit_line(e, "const float d = (x1[i] + %s * x0[i]) * q;", l3);
            ct_emit_line(e, "const float b = %s * x3[i] + d;", l1);
            ct_emit_line(e, "y1[i] = b;");
            ct_emit_line(e, "y0[i] = x0[i] - lr * b;");
            ct_emit_close(e);
            ct_emit_line(e, "(void)q;");
        }
        kernel_close(c);
        launch_ew(c, k);
        return;
    }
    default:
        unsupported(c, n, "no CUDA kernel for this training op");
        return;
    }
}

/* ------------------------------------------------------------ dispatch */

static void emit_node(cg *c, const ct_node *n)
{
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && !ctype_of(n->in[i]->dtype)) {
            unsupported(c, n, "dtype %s", ct_dtype_name(n->in[i]->dtype));
            return;
        }
    for (int i = 0; i < n->n_out; i++)
        if (n->out[i] && !ctype_of(n->out[i]->dtype)) {
            unsupported(c, n, "dtype %s", ct_dtype_name(n->out[i]->dtype));
            return;
        }
    switch (n->op) {
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH: case CT_OP_LEAKY_RELU:
    case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL: case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP:
    case CT_OP_LOG: case CT_OP_ERF: case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT: case CT_OP_CLIP:
    case CT_OP_CAST: case CT_OP_ADD: case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW:
    case CT_OP_MAX: case CT_OP_MIN: case CT_OP_SUM: case CT_OP_EQUAL: case CT_OP_LESS: case CT_OP_GREATER:
    case CT_OP_AND: case CT_OP_OR: case CT_OP_WHERE: case CT_OP_EXPAND:
        emit_elementwise(c, n);
        return;
    case CT_OP_DROPOUT:
        if (n->n_in > 2 && n->in[2]) {
            if (!n->in[2]->data || n->in[2]->dtype != CT_BOOL || numel(n->in[2]) != 1) {
                unsupported(c, n, "training_mode is not a constant");
                return;
            }
            if (((const uint8_t *)n->in[2]->data)[0]) { unsupported(c, n, "training-mode Dropout"); return; }
        }
        emit_alias_or_copy(c, n);
        return;
    case CT_OP_IDENTITY: case CT_OP_RESHAPE: case CT_OP_FLATTEN: case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE:
        emit_alias_or_copy(c, n);
        return;
    case CT_OP_SOFTMAX: case CT_OP_LOG_SOFTMAX: emit_softmax(c, n); return;
    case CT_OP_CONV: case CT_OP_FUSED_CONV: emit_conv(c, n); return;
    case CT_OP_BATCH_NORM: case CT_OP_FUSED_BN_RELU: emit_batch_norm(c, n); return;
    case CT_OP_MAX_POOL: case CT_OP_AVERAGE_POOL: emit_pool(c, n); return;
    case CT_OP_GLOBAL_AVERAGE_POOL: case CT_OP_GLOBAL_MAX_POOL: emit_global_pool(c, n); return;
    case CT_OP_GEMM: emit_gemm(c, n); return;
    case CT_OP_MATMUL: emit_matmul(c, n); return;
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_SUM: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2:
        emit_reduce(c, n);
        return;
    case CT_OP_ARG_MAX: emit_argmax(c, n); return;
    case CT_OP_TRANSPOSE: emit_transpose(c, n); return;
    case CT_OP_CONCAT: emit_concat_split(c, n, false); return;
    case CT_OP_SPLIT: emit_concat_split(c, n, true); return;
    case CT_OP_SLICE: emit_slice(c, n); return;
    case CT_OP_GATHER: emit_gather(c, n); return;
    case CT_OP_PAD: case CT_OP_TILE: emit_pad_tile(c, n); return;
    case CT_OP_SHAPE: case CT_OP_SIZE: case CT_OP_CONSTANT_OF_SHAPE: emit_shape_ops(c, n); return;
    default:
        if (!strcmp(ct_op_table[n->op].domain, "ai.contra")) {
            emit_train(c, n);
            return;
        }
        unsupported(c, n, "no CUDA kernel for this op (constant inputs are expected to be folded first)");
        return;
    }
}

/* ------------------------------------------------------------ driver */

#include "cuda_lib.inc"

/* A data-parallel program's NCCL communicator: made on the first (eager) step
 * from a unique id that rank 0 draws and the runtime's communicator broadcasts;
 * MPI only bootstraps it, NCCL moves the bytes. On the emulator the same calls
 * go to runtime/cuda_emu/nccl_emu.c, which carries them over that communicator. */
static const char nccl_setup[] =
    "\n#define CT_NCCL_CHECK(call) \\\n"
    "  do { \\\n"
    "    ncclResult_t ct_r_ = (call); \\\n"
    "    if (ct_r_ != ncclSuccess) { \\\n"
    "      fprintf(stderr, \"%s:%d: NCCL error %d (%s) in %s\\n\", __FILE__, __LINE__, (int)ct_r_, \\\n"
    "              ncclGetErrorString(ct_r_), #call); \\\n"
    "      exit(EXIT_FAILURE); \\\n"
    "    } \\\n"
    "  } while (0)\n"
    "static ncclComm_t ct_nccl;\n"
    "static void ct_nccl_setup(void)\n"
    "{\n"
    "    if (ct_nccl) return;\n"
    "    if (!ct_comm_p || !ct_comm_p->bcast) {\n"
    "        fprintf(stderr, \"this data-parallel program has no communicator: run its trainer under mpirun\\n\");\n"
    "        exit(EXIT_FAILURE);\n"
    "    }\n"
    "    ncclUniqueId id;\n"
    "    memset(&id, 0, sizeof id);\n"
    "    if (ct_comm_p->rank == 0) CT_NCCL_CHECK(ncclGetUniqueId(&id));\n"
    "    ct_comm_p->bcast(ct_comm_p->ctx, &id, (int64_t)sizeof id, 0);\n"
    "#if CT_EMULATED\n"
    "    ct_emu_nccl_transport(ct_comm_p);\n"
    "#endif\n"
    "    CT_NCCL_CHECK(ncclCommInitRank(&ct_nccl, ct_comm_p->world, id, ct_comm_p->rank));\n"
    "}\n";

/* Before node n: the step's stream waits for the all-reduce of every bucket whose output n reads. */
static void join_pending(cg *c, const ct_node *n)
{
    for (int i = 0; i < n->n_in; i++) {
        const ct_value *v = n->in[i];
        if (!v || !c->join_of[v->id]) continue;
        int k = c->join_of[v->id] - 1;
        ct_emit_raw(&c->f, "    CT_CUDA_CHECK(cudaStreamWaitEvent(ct_stream, ct_ev_join[%d], 0)); /* bucket %d reduced */\n", k, k);
        for (int j = 0; j < c->g->n_values; j++)
            if (c->join_of[j] == k + 1) c->join_of[j] = 0;
    }
}

static const char prologue[] =
    "#include \"ct_cuda.h\"\n"
    "#include <math.h>\n"
    "#include <stdint.h>\n"
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"program.h\"\n"
    "\n"
    "/* Launch shape: grid-stride loops over at most CT_MAX_GRID blocks (fewer on the\n"
    " * emulator, where every block's threads are fibers). */\n"
    "#ifndef CT_MAX_GRID\n"
    "#if CT_EMULATED\n"
    "#define CT_MAX_GRID 64\n"
    "#else\n"
    "#define CT_MAX_GRID 65535\n"
    "#endif\n"
    "#endif\n"
    "static unsigned ct_grid(long long n, int per_block)\n"
    "{\n"
    "    long long g = (n + per_block - 1) / per_block;\n"
    "    return (unsigned)(g < 1 ? 1 : g > CT_MAX_GRID ? CT_MAX_GRID : g);\n"
    "}\n"
    "\n"
    "static cudaStream_t ct_stream;      /* the step */\n"
    "static const ct_comm *ct_comm_p;    /* the runtime's communicator (ct_program.comm; data parallel) */\n"
    "#ifdef CT_NCCL\n"
    "static cudaStream_t ct_comm_stream; /* the gradient all-reduces, beside the rest of backward */\n"
    "static cudaEvent_t ct_ev_fork[CT_N_BUCKETS + 1], ct_ev_join[CT_N_BUCKETS + 1];\n"
    "#endif\n"
    "static cudaStream_t ct_copy_stream; /* uploads of staged inputs, beside the step */\n"
    "static cublasHandle_t ct_blas;\n"
    "static void *ct_blas_ws;\n"
    "static cudaEvent_t ct_ev_uploaded[2], ct_ev_done[2]; /* per staging slot: its upload, the step that read it */\n"
    "static int ct_ready;\n"
    "#define CT_BLAS_WORKSPACE (32ll << 20)\n"
    "\n"
    "static void ct_setup(void)\n"
    "{\n"
    "    if (ct_ready) return;\n"
    "#if defined(CT_NCCL) && !CT_EMULATED\n"
    "    { /* one rank per GPU: the launcher's local rank picks this node's device */\n"
    "        const char *lr = getenv(\"OMPI_COMM_WORLD_LOCAL_RANK\");\n"
    "        if (!lr) lr = getenv(\"MPI_LOCALRANKID\");\n"
    "        if (!lr) lr = getenv(\"SLURM_LOCALID\");\n"
    "        int n = 0;\n"
    "        if (lr && cudaGetDeviceCount(&n) == cudaSuccess && n > 0) CT_CUDA_CHECK(cudaSetDevice(atoi(lr) % n));\n"
    "    }\n"
    "#endif\n"
    "    CT_CUDA_CHECK(cudaStreamCreateWithFlags(&ct_stream, cudaStreamNonBlocking));\n"
    "    CT_CUDA_CHECK(cudaStreamCreateWithFlags(&ct_copy_stream, cudaStreamNonBlocking));\n"
    "    CT_CUBLAS_CHECK(cublasCreate(&ct_blas));\n"
    "    CT_CUBLAS_CHECK(cublasSetStream(ct_blas, ct_stream));\n"
    "    /* a workspace of its own: cuBLAS allocates nothing while a step is captured into a graph */\n"
    "    CT_CUDA_CHECK(cudaMalloc(&ct_blas_ws, (size_t)CT_BLAS_WORKSPACE));\n"
    "    CT_CUBLAS_CHECK(cublasSetWorkspace(ct_blas, ct_blas_ws, (size_t)CT_BLAS_WORKSPACE));\n"
    "    for (int s = 0; s < 2; s++) {\n"
    "        CT_CUDA_CHECK(cudaEventCreateWithFlags(&ct_ev_uploaded[s], cudaEventDisableTiming));\n"
    "        CT_CUDA_CHECK(cudaEventCreateWithFlags(&ct_ev_done[s], cudaEventDisableTiming));\n"
    "    }\n"
    "#ifdef CT_NCCL\n"
    "    CT_CUDA_CHECK(cudaStreamCreateWithFlags(&ct_comm_stream, cudaStreamNonBlocking));\n"
    "    for (int k = 0; k < CT_N_BUCKETS; k++) {\n"
    "        CT_CUDA_CHECK(cudaEventCreateWithFlags(&ct_ev_fork[k], cudaEventDisableTiming));\n"
    "        CT_CUDA_CHECK(cudaEventCreateWithFlags(&ct_ev_join[k], cudaEventDisableTiming));\n"
    "    }\n"
    "#endif\n"
    "    ct_ready = 1;\n"
    "}\n"
    "\n"
    "/* GEMMs in float32, or with TF32 tensor-core inputs (10-bit mantissas) where the\n"
    " * program was generated with contra compile --tf32. */\n"
    "#if CT_ALLOW_TF32\n"
    "#define CT_GEMM_COMPUTE CUBLAS_COMPUTE_32F_FAST_TF32\n"
    "#else\n"
    "#define CT_GEMM_COMPUTE CUBLAS_COMPUTE_32F\n"
    "#endif\n"
    "\n"
    "/* Row-major C (M, N) = alpha op(A) op(B) + beta C with column-major cuBLAS: C^T = op(B)^T op(A)^T. */\n"
    "static void ct_sgemm_rm(int ta, int tb, long long M, long long N, long long K, float alpha, const float *A,\n"
    "                        long long lda, const float *B, long long ldb, float beta, float *C, long long ldc)\n"
    "{\n"
    "    CT_CUBLAS_CHECK(cublasGemmEx(ct_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, (int)N,\n"
    "                                 (int)M, (int)K, &alpha, B, CUDA_R_32F, (int)ldb, A, CUDA_R_32F, (int)lda, &beta, C,\n"
    "                                 CUDA_R_32F, (int)ldc, CT_GEMM_COMPUTE, CUBLAS_GEMM_DEFAULT));\n"
    "}\n"
    "\n"
    "static void ct_sgemm_rm_batched(int ta, int tb, long long M, long long N, long long K, float alpha, const float *A,\n"
    "                                long long lda, long long sa, const float *B, long long ldb, long long sb, float beta,\n"
    "                                float *C, long long ldc, long long sc, int batch)\n"
    "{\n"
    "    CT_CUBLAS_CHECK(cublasGemmStridedBatchedEx(ct_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,\n"
    "                                               (int)N, (int)M, (int)K, &alpha, B, CUDA_R_32F, (int)ldb, sb, A,\n"
    "                                               CUDA_R_32F, (int)lda, sa, &beta, C, CUDA_R_32F, (int)ldc, sc, batch,\n"
    "                                               CT_GEMM_COMPUTE, CUBLAS_GEMM_DEFAULT));\n"
    "}\n"
    "\n";

static const char epilogue[] =
    "\n/* Run the graph on device pointers with its inputs in the persistent region; returns once the device is done. */\n"
    "static void forward(void *arena, void *persist)\n"
    "{\n"
    "    ct_setup();\n"
    "    ct_step((char *)arena, (char *)persist, NULL);\n"
    "    CT_CUDA_CHECK(cudaStreamSynchronize(ct_stream));\n"
    "}\n"
    "\n"
    "/* The training loop's path (program ABI 3). stage() copies the inputs from the host's image of the\n"
    " * persistent region into a pinned buffer and uploads them on ct_copy_stream into one of two device\n"
    " * staging buffers, so that the next batch travels while a step runs. launch() enqueues a step that\n"
    " * first waits for that upload and copies the inputs into place: the first step runs eagerly (cuBLAS\n"
    " * settles), every later one replays the step captured once as a CUDA graph (one per staging slot;\n"
    " * CONTRA_CUDA_GRAPHS=0 turns graphs off). wait() returns once the step is done. */\n"
    "static void *ct_pinned[2], *ct_dstage[2];\n"
    "static int ct_slot = -1, ct_next, ct_calls, ct_graphs = -1;\n"
    "static cudaGraphExec_t ct_graph[2];\n"
    "static void *ct_graph_for[2][2]; /* the (arena, persist) each graph was captured with */\n"
    "\n"
    "static void stage(const void *host_persist)\n"
    "{\n"
    "    ct_setup();\n"
    "    const int s = ct_next;\n"
    "    if (CT_STAGE_BYTES && !ct_pinned[s]) {\n"
    "        CT_CUDA_CHECK(cudaHostAlloc(&ct_pinned[s], (size_t)CT_STAGE_BYTES, cudaHostAllocDefault));\n"
    "        CT_CUDA_CHECK(cudaMalloc(&ct_dstage[s], (size_t)CT_STAGE_BYTES));\n"
    "    }\n"
    "    /* the step that read this slot (two launches ago) is done with both buffers */\n"
    "    CT_CUDA_CHECK(cudaEventSynchronize(ct_ev_done[s]));\n"
    "    for (int i = 0; i < CT_N_INPUTS; i++)\n"
    "        if (ct_in[i][1]) memcpy((char *)ct_pinned[s] + ct_in[i][2], (const char *)host_persist + ct_in[i][0], (size_t)ct_in[i][1]);\n"
    "    if (CT_STAGE_BYTES)\n"
    "        CT_CUDA_CHECK(cudaMemcpyAsync(ct_dstage[s], ct_pinned[s], (size_t)CT_STAGE_BYTES, cudaMemcpyHostToDevice,\n"
    "                                      ct_copy_stream));\n"
    "    CT_CUDA_CHECK(cudaEventRecord(ct_ev_uploaded[s], ct_copy_stream));\n"
    "    ct_slot = s;\n"
    "    ct_next = s ^ 1;\n"
    "}\n"
    "\n"
    "static void launch(void *arena, void *persist)\n"
    "{\n"
    "    ct_setup();\n"
    "    if (ct_graphs < 0) {\n"
    "        const char *e = getenv(\"CONTRA_CUDA_GRAPHS\");\n"
    "        ct_graphs = !(e && e[0] == '0');\n"
    "    }\n"
    "    const int s = ct_slot;\n"
    "    if (s < 0) { /* nothing staged: the inputs are in place */\n"
    "        ct_step((char *)arena, (char *)persist, NULL);\n"
    "        return;\n"
    "    }\n"
    "    ct_slot = -1;\n"
    "    CT_CUDA_CHECK(cudaStreamWaitEvent(ct_stream, ct_ev_uploaded[s], 0));\n"
    "    if (!ct_graphs || ct_calls++ == 0) {\n"
    "        ct_step((char *)arena, (char *)persist, (const char *)ct_dstage[s]);\n"
    "    } else {\n"
    "        if (!ct_graph[s] || ct_graph_for[s][0] != arena || ct_graph_for[s][1] != persist) {\n"
    "            cudaGraph_t gr;\n"
    "            if (ct_graph[s]) CT_CUDA_CHECK(cudaGraphExecDestroy(ct_graph[s]));\n"
    "            CT_CUDA_CHECK(cudaStreamBeginCapture(ct_stream, cudaStreamCaptureModeGlobal));\n"
    "            ct_step((char *)arena, (char *)persist, (const char *)ct_dstage[s]);\n"
    "            CT_CUDA_CHECK(cudaStreamEndCapture(ct_stream, &gr));\n"
    "            CT_CUDA_CHECK(cudaGraphInstantiate(&ct_graph[s], gr, 0));\n"
    "            CT_CUDA_CHECK(cudaGraphDestroy(gr));\n"
    "            ct_graph_for[s][0] = arena;\n"
    "            ct_graph_for[s][1] = persist;\n"
    "            if (getenv(\"CONTRA_CUDA_VERBOSE\"))\n"
    "                fprintf(stderr, \"cuda: the step is captured as a CUDA graph (staging slot %d)\\n\", s);\n"
    "        }\n"
    "        CT_CUDA_CHECK(cudaGraphLaunch(ct_graph[s], ct_stream));\n"
    "    }\n"
    "    CT_CUDA_CHECK(cudaEventRecord(ct_ev_done[s], ct_stream));\n"
    "}\n"
    "\n"
    "static void wait_step(void)\n"
    "{\n"
    "    if (ct_ready) CT_CUDA_CHECK(cudaStreamSynchronize(ct_stream));\n"
    "}\n"
    "\nstatic void set_threads(int n) { (void)n; }\n"
    "\n"
    "/* Device memory for the runtime (runtime.c, program ABI 2). */\n"
    "static void *device_alloc(int64_t nbytes)\n"
    "{\n"
    "    void *p = NULL;\n"
    "    ct_setup();\n"
    "    if (cudaMalloc((void **)&p, (size_t)(nbytes > 0 ? nbytes : 64)) != cudaSuccess) return NULL;\n"
    "    return p;\n"
    "}\n"
    "static void device_free(void *p) { if (p) cudaFree(p); }\n"
    "static void copy_to_device(void *dst, const void *src, int64_t nbytes)\n"
    "{\n"
    "    if (nbytes > 0) CT_CUDA_CHECK(cudaMemcpy(dst, src, (size_t)nbytes, cudaMemcpyHostToDevice));\n"
    "}\n"
    "static void copy_to_host(void *dst, const void *src, int64_t nbytes)\n"
    "{\n"
    "    if (nbytes > 0) CT_CUDA_CHECK(cudaMemcpy(dst, src, (size_t)nbytes, cudaMemcpyDeviceToHost));\n"
    "}\n";

ct_status ct_codegen_cuda(const ct_graph *g, bool tf32, ct_c_program *out)
{
    memset(out, 0, sizeof *out);
    cg c;
    memset(&c, 0, sizeof c);
    c.g = g;
    ct_status st = CT_OK;
    bool *copy = NULL;
    ct_emitter top;
    ct_emit_init(&top, &ct_dialect_cuda);
    ct_emit_init(&c.k, &ct_dialect_cuda);
    ct_emit_init(&c.f, &ct_dialect_cuda);
    c.region = calloc((size_t)g->n_values + 1, sizeof *c.region);
    c.off = calloc((size_t)g->n_values + 1, sizeof *c.off);
    if (!c.region || !c.off) abort();
    copy = calloc((size_t)g->n_assigns + 1, sizeof *copy);
    if (!copy) abort();
    st = place_values(&c);
    if (st) goto fail;
    st = place_assigns(&c, copy);
    if (st) goto fail;
    c.scratch_off = align_up(c.arena_bytes);

    c.join_of = calloc((size_t)g->n_values + 1, sizeof *c.join_of);
    if (!c.join_of) abort();
    for (int i = 0; i < g->n_nodes; i++) {
        join_pending(&c, g->nodes[i]);
        emit_node(&c, g->nodes[i]);
    }
    for (int k = 0; k < c.n_buckets; k++) /* every fork rejoins the step's stream before it ends */
        ct_emit_raw(&c.f, "    CT_CUDA_CHECK(cudaStreamWaitEvent(ct_stream, ct_ev_join[%d], 0));\n", k);
    for (int i = 0; i < g->n_assigns; i++) {
        const ct_value *dst = g->assigns[i].dst, *src = g->assigns[i].src;
        char dn[256];
        comment_safe(dn, sizeof dn, dst->name);
        if (!copy[i]) {
            ct_emit_raw(&c.f, "    /* state update \"%s\": written in place */\n", dn);
            continue;
        }
        if (ct_value_nbytes(dst) == 0) continue;
        ct_emit_raw(&c.f, "    CT_CUDA_CHECK(cudaMemcpyAsync(P + %lld, %s + %lld, %lld, cudaMemcpyDeviceToDevice, ct_stream)); /* state update \"%s\" */\n",
                    (long long)c.off[dst->id], c.region[src->id] == CT_PT_REGION_ARENA ? "A" : "P",
                    (long long)c.off[src->id], (long long)ct_value_nbytes(dst), dn);
    }
    if (c.n_errors) {
        st = ct_errorf("the CUDA backend cannot lower %d node%s:%s", c.n_errors, c.n_errors > 1 ? "s" : "", c.errors);
        goto fail;
    }

    int64_t arena_total = c.scratch_bytes ? c.scratch_off + align_up(c.scratch_bytes) : c.arena_bytes;

    char gname[256];
    comment_safe(gname, sizeof gname, g->name ? g->name : "graph");
    ct_emit_raw(&top, "/* Generated by contra (CUDA backend) from graph \"%s\": %d kernels.\n"
                      " * arena %lld bytes (scratch %lld), persistent %lld bytes. Do not edit.\n"
                      " * Builds with nvcc (the GPU) or as C with gcc against runtime/cuda_emu (the emulator). */\n",
                gname, c.n_kernels, (long long)arena_total, (long long)c.scratch_bytes, (long long)c.persist_bytes);
    if (tf32) ct_emit_raw(&top, "#define CT_ALLOW_TF32 1 /* contra compile --tf32 */\n");
    if (c.uses_nccl)
        ct_emit_raw(&top, "#define CT_NCCL 1 /* data parallel: NCCL collectives (ct_cuda.h) */\n#define CT_N_BUCKETS %d\n",
                    c.n_buckets);
    ct_emit_raw(&top, "%s", prologue);
    if (c.uses_nccl) ct_emit_raw(&top, "%s", nccl_setup);
    ct_emit_raw(&top, "%s", cuda_lib);
    ct_emit_raw(&top, "%.*s", (int)c.k.len, c.k.buf ? c.k.buf : "");
    /* the inputs: where they live in the persistent region, and in the staging buffer */
    int64_t stage_bytes = 0;
    ct_emit_raw(&top, "\n/* The graph inputs: persistent-region offset, bytes, offset in a staging buffer. */\n"
                      "#define CT_N_INPUTS %d\nstatic const long long ct_in[][3] = {\n", g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++) {
        const ct_value *v = g->inputs[i];
        ct_emit_raw(&top, "    {%lldLL, %lldLL, %lldLL},\n", (long long)c.off[v->id], (long long)ct_value_nbytes(v),
                    (long long)stage_bytes);
        stage_bytes = align_up(stage_bytes + (int64_t)ct_value_nbytes(v));
    }
    if (!g->n_inputs) ct_emit_raw(&top, "    {0, 0, 0},\n");
    ct_emit_raw(&top, "};\n#define CT_STAGE_BYTES %lldLL\n", (long long)stage_bytes);
    ct_emit_raw(&top, "\n/* One step on device pointers (arena A, persistent region P), enqueued on ct_stream;\n"
                      " * S: a device staging buffer the inputs are copied from first (NULL: they are in P). */\n"
                      "static void ct_step(char *A, char *P, const char *S)\n{\n    (void)A;\n    (void)P;\n"
                      "    if (S)\n        for (int i = 0; i < CT_N_INPUTS; i++)\n            if (ct_in[i][1])\n"
                      "                CT_CUDA_CHECK(cudaMemcpyAsync(P + ct_in[i][0], S + ct_in[i][2], (size_t)ct_in[i][1],\n"
                      "                                              cudaMemcpyDeviceToDevice, ct_stream));\n");
    ct_emit_raw(&top, "%.*s", (int)c.f.len, c.f.buf ? c.f.buf : "");
    ct_emit_raw(&top, "}\n");
    ct_emit_raw(&top, "%s", epilogue);

    int n_desc = 0;
    int *desc_index = calloc((size_t)g->n_values + 1, sizeof *desc_index);
    if (!desc_index) abort();
    ct_emit_raw(&top, "\nstatic const ct_tensor_desc tensors[] = {\n");
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        desc_index[i] = -1;
        if (c.region[i] < 0) continue;
        desc_index[i] = n_desc++;
        ct_emit_raw(&top, "    {");
        emit_cstring(&top, v->name);
        ct_emit_raw(&top, ", %s, %s, %d, {", pt_kind_name(pt_kind(v->kind)), pt_dtype_name(pt_dtype(v->dtype)),
                    v->shape.rank);
        for (int d = 0; d < v->shape.rank; d++) ct_emit_raw(&top, "%s%lld", d ? ", " : "", (long long)v->shape.dims[d]);
        if (!v->shape.rank) ct_emit_raw(&top, "0");
        ct_emit_raw(&top, "}, %s, %lld, %lld},\n",
                    c.region[i] == CT_PT_REGION_ARENA ? "CT_PT_REGION_ARENA" : "CT_PT_REGION_PERSIST",
                    (long long)c.off[i], (long long)ct_value_nbytes(v));
    }
    if (!n_desc) ct_emit_raw(&top, "    {0},\n");
    ct_emit_raw(&top, "};\n\nstatic const int inputs[] = {");
    for (int i = 0; i < g->n_inputs; i++) ct_emit_raw(&top, "%s%d", i ? ", " : "", desc_index[g->inputs[i]->id]);
    if (!g->n_inputs) ct_emit_raw(&top, "0");
    ct_emit_raw(&top, "};\nstatic const int outputs[] = {");
    for (int i = 0; i < g->n_outputs; i++) ct_emit_raw(&top, "%s%d", i ? ", " : "", desc_index[g->outputs[i]->id]);
    if (!g->n_outputs) ct_emit_raw(&top, "0");
    /* positional: the same initialiser is C17 and C++ (nvcc) */
    ct_emit_raw(&top, "};\n\n#ifdef __cplusplus\nextern \"C\"\n#endif\nconst ct_program_desc ct_program = {\n"
                      "    CT_PROGRAM_ABI,\n    ");
    emit_cstring(&top, g->name ? g->name : "graph");
    ct_emit_raw(&top, ",\n    %lld, /* batch */\n    %d,\n    tensors,\n    %d,\n    inputs,\n    %d,\n    outputs,\n"
                      "    %lld, /* arena bytes */\n    %lld, /* persistent bytes */\n    forward,\n    set_threads,\n"
                      "    CT_PT_DEVICE_CUDA,\n    device_alloc,\n    device_free,\n    copy_to_device,\n    copy_to_host,\n"
                      "    0, /* no per-node profile */\n    0,\n    0,\n    0,\n    stage,\n    launch,\n    wait_step,\n"
                      "    0, /* no state generation */\n    %d, /* ranks */\n    &ct_comm_p,\n};\n",
                (long long)(g->batch > 0 ? g->batch : 0), n_desc, g->n_inputs, g->n_outputs, (long long)arena_total,
                (long long)c.persist_bytes, ct_graph_world(g));
    free(desc_index);

    out->blob_len = (size_t)c.persist_bytes;
    out->blob = calloc(out->blob_len ? out->blob_len : 1, 1);
    if (!out->blob) {
        st = ct_errorf("out of memory for a %lld-byte parameter image", (long long)c.persist_bytes);
        goto fail;
    }
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        if (c.region[i] == CT_PT_REGION_PERSIST && v->data)
            memcpy((char *)out->blob + c.off[i], v->data, ct_value_nbytes(v));
    }
    int64_t naive = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->kind == CT_VALUE_TEMP) naive += (int64_t)ct_value_nbytes(g->values[i]);
    out->source = ct_emit_take(&top, &out->source_len);
    out->n_kernels = c.n_kernels;
    out->arena_bytes = arena_total;
    out->scratch_bytes = c.scratch_bytes;
    out->naive_bytes = naive;
    out->persist_bytes = c.persist_bytes;
fail:
    ct_emit_free(&top);
    ct_emit_free(&c.k);
    ct_emit_free(&c.f);
    free(c.region);
    free(c.off);
    free(c.join_of);
    free(c.errors);
    free(copy);
    if (st) ct_c_program_free(out);
    return st;
}

/* c_backend.c — lowers a shape-inferred, memory-planned graph to one C file:
 * a kernel per node (OpenMP loops, cblas_sgemm for GEMM and im2col conv),
 * a forward() that calls them on arena/persistent pointers, and the
 * ct_program descriptor of runtime/program.h.  Kernel bodies are printed
 * through the shared emitter (emit.h), so the math is written once. */
#include "codegen.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "c_fuse_emit.h"
#include "c_fused.h"
#include "c_gemm_lib.h" /* ct_gemm_lib: codegen/c_gemm_lib.c as a string (codegen/meson.build) */
#include "emit.h"
#include "fuse.h"
#include "program.h"

#define ALIGN 64
#define PAR_MIN 32768 /* fewer elements than this: a serial loop */
#define MAXA 16       /* operands of one elementwise kernel */

typedef struct {
    const ct_graph *g;
    ct_emitter k;      /* kernels */
    ct_emitter f;      /* forward() body */
    int *region;       /* per value id: CT_PT_REGION_*, -1 if not placed */
    int64_t *off;      /* per value id: byte offset in its region */
    int64_t persist_bytes, arena_bytes, scratch_off, scratch_bytes;
    char *errors;      /* unsupported nodes, one per line */
    size_t errors_len;
    int n_errors;
    int n_kernels;
    bool uses_train_lib; /* a training op needs the shared kernels (c_train_lib.inc) */
    bool uses_gemm_lib;  /* a convolution runs on the GEMM engine (c_gemm_lib.c) */
    int wino_tiles;      /* bit m: some convolution runs on Winograd F(m x m, 3x3) (CT_WINO_TILES) */
    double engine_flops; /* of the forward convolutions on the GEMM engine */
    double blas_flops;   /* of the Gemm and MatMul nodes (OpenBLAS) */
    bool *flat;          /* per value id: placed by place_flat (a flat buffer of a fused node) */
    /* the kernel being emitted */
    const ct_node *node;
    char kname[96];
} cg;

/* ------------------------------------------------------------ helpers */

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

/* ------------------------------------------------------------ kernel frame */

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

/* Open a kernel: the comment naming op, node and shapes, then the signature
 * with typed operands x<i> (inputs) and y<i> (outputs), and `scratch` when asked. */
static void kernel_open(cg *c, const ct_node *n, bool scratch)
{
    ct_emitter *e = &c->k;
    char nm[256], sh[128], lower[64];
    size_t j = 0;
    for (const char *p = ct_op_table[n->op].name; *p && j + 1 < sizeof lower; p++)
        lower[j++] = (char)tolower((unsigned char)*p);
    lower[j] = 0;
    snprintf(c->kname, sizeof c->kname, "k%d_%s", n->id, lower);
    c->node = n;
    c->n_kernels++;

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
    ct_emit_raw(e, " */\n%s %s(", c->k.d->kernel_prefix, c->kname);
    bool first = true;
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? n->n_out : n->n_in;
        for (int i = 0; i < cnt; i++) {
            const ct_value *v = pass ? n->out[i] : n->in[i];
            if (!v) continue;
            char vn[256];
            comment_safe(vn, sizeof vn, v->name);
            shape_dims_str(sh, sizeof sh, &v->shape);
            bool al = operand_aliased(c, n, v);
            ct_emit_raw(e, "%s\n    %s%s *%s%s%c%d /* %s %s */", first ? "" : ",", pass ? "" : "const ",
                        ctype_of(v->dtype), al ? "" : c->k.d->restrict_kw, al ? "" : " ", pass ? 'y' : 'x', i,
                        sh, vn);
            first = false;
        }
    }
    if (scratch) ct_emit_raw(e, "%s\n    float *%s scratch", first ? "" : ",", c->k.d->restrict_kw);
    ct_emit_raw(e, ")\n{\n");
    e->indent = 1;

    /* forward(): the call */
    ct_emitter *f = &c->f;
    ct_emit_raw(f, "    %s(", c->kname);
    first = true;
    for (int pass = 0; pass < 2; pass++) {
        int cnt = pass ? n->n_out : n->n_in;
        for (int i = 0; i < cnt; i++) {
            const ct_value *v = pass ? n->out[i] : n->in[i];
            if (!v) continue;
            ct_emit_raw(f, "%s(%s%s *)(%s + %lld)", first ? "" : ", ", pass ? "" : "const ", ctype_of(v->dtype),
                        c->region[v->id] == CT_PT_REGION_ARENA ? "A" : "P", (long long)c->off[v->id]);
            first = false;
        }
    }
    if (scratch) ct_emit_raw(f, "%s(float *)(A + %lld)", first ? "" : ", ", (long long)c->scratch_off);
    ct_emit_raw(f, ");\n");
}

static void kernel_close(cg *c)
{
    c->k.indent = 1;
    ct_emit_close(&c->k);
}

/* ------------------------------------------------------------ strided elementwise */

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

/* Nested loops over the (collapsed) view, the outer ones parallel. Operand 0
 * is the contiguous output, written with out_expr; operand k >= 1 is read
 * into a local a<k-1> of type ctypes[k] first. */
static void emit_ew_loops(cg *c, ew_view *v, const char *const *ctypes, const char *out_expr)
{
    ct_emitter *e = &c->k;
    view_collapse(v);
    int64_t total = 1;
    for (int d = 0; d < v->rank; d++) total *= v->dims[d];
    bool serial = total < PAR_MIN;
    int opened = 0;
    if (v->rank == 0) {
        ct_emit_open(e, "%s", "/* scalar */");
        opened = 1;
    } else if (v->rank == 1) {
        ct_emit_pfor(e, "i0", 1, serial, "%lld", (long long)v->dims[0]);
        opened = 1;
    } else {
        for (int d = 0; d < v->rank; d++) {
            char var[16];
            snprintf(var, sizeof var, "i%d", d);
            if (d == 0) ct_emit_pfor(e, var, v->rank - 1, serial, "%lld", (long long)v->dims[0]);
            else ct_emit_for(e, var, "%lld", (long long)v->dims[d]);
            opened++;
        }
    }
    char idx[512];
    for (int k = 1; k < v->n; k++) {
        index_expr(idx, sizeof idx, v, k);
        ct_emit_line(e, "const %s a%d = %s[%s];", ctypes[k], k - 1, v->name[k], idx);
    }
    index_expr(idx, sizeof idx, v, 0);
    ct_emit_line(e, "%s[%s] = %s;", v->name[0], idx, out_expr);
    while (opened--) ct_emit_close(e);
}

/* ------------------------------------------------------------ elementwise ops */

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
    kernel_open(c, n, false);
    emit_ew_loops(c, &v, ctypes, expr);
    if (n->op == CT_OP_DROPOUT && n->n_out > 1 && n->out[1])
        ct_emit_line(&c->k, "memset(y1, 1, %lld);", (long long)ct_value_nbytes(n->out[1]));
    kernel_close(c);
}

/* Reshape-like ops: nothing if the plan made the output alias the input, else a copy. */
static void emit_alias_or_copy(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    bool mask = n->op == CT_OP_DROPOUT && n->n_out > 1 && n->out[1];
    if (c->region[x->id] == c->region[y->id] && c->off[x->id] == c->off[y->id] && !mask) {
        char nm[256];
        comment_safe(nm, sizeof nm, n->name);
        ct_emit_raw(&c->f, "    /* %s \"%s\": output aliases its input */\n", ct_op_table[n->op].name, nm);
        return;
    }
    kernel_open(c, n, false);
    if (c->region[x->id] != c->region[y->id] || c->off[x->id] != c->off[y->id])
        ct_emit_line(&c->k, "memmove(y0, x0, %lld);", (long long)ct_value_nbytes(y));
    if (mask) ct_emit_line(&c->k, "memset(y1, 1, %lld);", (long long)ct_value_nbytes(n->out[1]));
    kernel_close(c);
}

/* ------------------------------------------------------------ data movement */

static int norm_axis(int64_t a, int rank) { return (int)(a < 0 ? a + rank : a); }

static int64_t prod(const int64_t *d, int from, int to)
{
    int64_t p = 1;
    for (int i = from; i < to; i++) p *= d[i];
    return p;
}

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
    kernel_open(c, n, false);
    emit_ew_loops(c, &v, ct, "a0");
    kernel_close(c);
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
    kernel_open(c, n, false);
    if (numel(y) > 0) emit_ew_loops(c, &v, ct, "a0");
    kernel_close(c);
}

static void emit_concat(cg *c, const ct_node *n)
{
    const ct_value *y = n->out[0];
    int r = y->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    int64_t outer = prod(y->shape.dims, 0, ax), inner = prod(y->shape.dims, ax + 1, r);
    int64_t row = y->shape.dims[ax] * inner, at = 0;
    size_t es = ct_dtype_size(y->dtype);
    kernel_open(c, n, false);
    for (int i = 0; i < n->n_in; i++) {
        int64_t chunk = n->in[i]->shape.dims[ax] * inner;
        if (chunk) {
            ct_emit_pfor(&c->k, "o", 1, outer * chunk < PAR_MIN, "%lld", (long long)outer);
            ct_emit_line(&c->k, "memcpy(y0 + o * %lld + %lld, x%d + o * %lld, %lld);", (long long)row, (long long)at, i,
                         (long long)chunk, (long long)(chunk * (int64_t)es));
            ct_emit_close(&c->k);
        }
        at += chunk;
    }
    kernel_close(c);
}

static void emit_split(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    int r = x->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    int64_t outer = prod(x->shape.dims, 0, ax), inner = prod(x->shape.dims, ax + 1, r);
    int64_t row = x->shape.dims[ax] * inner, at = 0;
    size_t es = ct_dtype_size(x->dtype);
    kernel_open(c, n, false);
    for (int i = 0; i < n->n_out; i++) {
        if (!n->out[i]) continue;
        int64_t chunk = n->out[i]->shape.dims[ax] * inner;
        if (chunk) {
            ct_emit_pfor(&c->k, "o", 1, outer * chunk < PAR_MIN, "%lld", (long long)outer);
            ct_emit_line(&c->k, "memcpy(y%d + o * %lld, x0 + o * %lld + %lld, %lld);", i, (long long)chunk,
                         (long long)row, (long long)at, (long long)(chunk * (int64_t)es));
            ct_emit_close(&c->k);
        }
        at += chunk;
    }
    kernel_close(c);
}

static void emit_gather(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *ind = n->in[1];
    int r = x->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    if (ind->dtype != CT_I64 && ind->dtype != CT_I32) { unsupported(c, n, "indices of dtype %s", ct_dtype_name(ind->dtype)); return; }
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    int64_t ni = numel(ind);
    size_t es = ct_dtype_size(x->dtype);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    ct_emit_pfor(e, "o", 2, outer * ni * inner < PAR_MIN, "%lld", (long long)outer);
    ct_emit_for(e, "j", "%lld", (long long)ni);
    ct_emit_line(e, "int64_t ix = (int64_t)x1[j];");
    ct_emit_line(e, "if (ix < 0) ix += %lld;", (long long)A);
    ct_emit_line(e, "if (ix < 0 || ix >= %lld) { memset(y0 + (o * %lld + j) * %lld, 0, %lld); continue; }", (long long)A,
                 (long long)ni, (long long)inner, (long long)(inner * (int64_t)es));
    ct_emit_line(e, "memcpy(y0 + (o * %lld + j) * %lld, x0 + (o * %lld + ix) * %lld, %lld);", (long long)ni,
                 (long long)inner, (long long)A, (long long)inner, (long long)(inner * (int64_t)es));
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
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

/* Pad (constant, edge, reflect) and Tile: a loop over the output computing each input coordinate. */
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
    int64_t xs[CT_MAX_RANK];
    contiguous_strides(&x->shape, xs);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    int64_t total = numel(y);
    if (total == 0 || r == 0) {
        if (r == 0) ct_emit_line(e, "y0[0] = x0[0];");
        kernel_close(c);
        return;
    }
    for (int d = 0; d < r; d++) {
        char var[16];
        snprintf(var, sizeof var, "i%d", d);
        if (d == 0) ct_emit_pfor(e, var, r > 1 ? 2 : 1, total < PAR_MIN, "%lld", (long long)y->shape.dims[0]);
        else ct_emit_for(e, var, "%lld", (long long)y->shape.dims[d]);
        /* input coordinates; the first two loops stay perfectly nested (collapse) */
        if (d == 0 && r > 1) continue;
        for (int k = d == 1 ? 0 : d; k <= d; k++)
            emit_source_coord(e, n->op == CT_OP_TILE ? "tile" : mode, k, x->shape.dims[k], pb[k]);
    }
    char oidx[512], iidx[512], cond[512];
    size_t jo = 0, ji = 0, jc = 0;
    int64_t ys[CT_MAX_RANK];
    contiguous_strides(&y->shape, ys);
    oidx[0] = iidx[0] = cond[0] = 0;
    for (int d = 0; d < r; d++) {
        jo += (size_t)snprintf(oidx + jo, sizeof oidx - jo, "%si%d * %lld", d ? " + " : "", d, (long long)ys[d]);
        ji += (size_t)snprintf(iidx + ji, sizeof iidx - ji, "%sj%d * %lld", d ? " + " : "", d, (long long)xs[d]);
        jc += (size_t)snprintf(cond + jc, sizeof cond - jc, "%sj%d < 0 || j%d >= %lld", d ? " || " : "", d, d,
                               (long long)x->shape.dims[d]);
    }
    if (n->op == CT_OP_PAD && !strcmp(mode, "constant"))
        ct_emit_line(e, "y0[%s] = (%s) ? %s : x0[%s];", oidx, cond, cval, iidx);
    else
        ct_emit_line(e, "y0[%s] = x0[%s];", oidx, iidx);
    for (int d = 0; d < r; d++) ct_emit_close(e);
    kernel_close(c);
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
    const char *acc_t = fl ? "double" : "int64_t";
    const char *init, *upd;
    switch (n->op) {
    case CT_OP_REDUCE_MAX: init = fl ? "-INFINITY" : "INT64_MIN"; upd = "acc = v > acc ? v : acc;"; break;
    case CT_OP_REDUCE_MIN: init = fl ? "INFINITY" : "INT64_MAX"; upd = "acc = v < acc ? v : acc;"; break;
    case CT_OP_REDUCE_PROD: init = "1"; upd = "acc *= v;"; break;
    case CT_OP_REDUCE_L2: init = "0"; upd = "acc += (double)v * v;"; break;
    default: init = "0"; upd = "acc += v;"; break;
    }
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    int64_t no = numel(y);
    ct_emit_pfor(e, "o", 1, no * count < PAR_MIN, "%lld", (long long)no);
    ct_emit_line(e, "int64_t rem = o, base = 0;");
    for (int d = r - 1; d >= 0; d--) {
        if (red[d]) continue;
        ct_emit_line(e, "base += (rem %% %lld) * %lld; rem /= %lld;", (long long)x->shape.dims[d], (long long)xs[d],
                     (long long)x->shape.dims[d]);
    }
    ct_emit_line(e, "(void)rem;");
    ct_emit_line(e, "%s acc = %s;", acc_t, init);
    int opened = 0;
    char idx[512] = "base";
    size_t j = 4;
    for (int d = 0; d < r; d++) {
        if (!red[d]) continue;
        char var[16];
        snprintf(var, sizeof var, "r%d", d);
        ct_emit_for(e, var, "%lld", (long long)x->shape.dims[d]);
        opened++;
        j += (size_t)snprintf(idx + j, sizeof idx - j, " + r%d * %lld", d, (long long)xs[d]);
    }
    ct_emit_line(e, "const %s v = x0[%s];", ctype_of(x->dtype), idx);
    ct_emit_line(e, "%s", upd);
    while (opened--) ct_emit_close(e);
    if (n->op == CT_OP_REDUCE_MEAN) ct_emit_line(e, "y0[o] = (%s)(acc / %lld);", ctype_of(y->dtype), (long long)count);
    else if (n->op == CT_OP_REDUCE_L2) ct_emit_line(e, "y0[o] = (%s)sqrt(acc);", ctype_of(y->dtype));
    else ct_emit_line(e, "y0[o] = (%s)acc;", ctype_of(y->dtype));
    ct_emit_close(e);
    kernel_close(c);
}

static void emit_argmax(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    int r = x->shape.rank, ax = norm_axis(ct_node_attr_int(n, "axis", 0), r);
    bool last = ct_node_attr_int(n, "select_last_index", 0) != 0;
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    ct_emit_pfor(e, "t", 1, outer * inner * A < PAR_MIN, "%lld", (long long)(outer * inner));
    ct_emit_line(e, "const int64_t o = t / %lld, in = t %% %lld;", (long long)inner, (long long)inner);
    ct_emit_line(e, "const %s *p = x0 + o * %lld + in;", ctype_of(x->dtype), (long long)(A * inner));
    ct_emit_line(e, "int64_t best = 0;");
    ct_emit_for(e, "a", "%lld", (long long)A);
    ct_emit_line(e, "if (p[a * %lld] %s p[best * %lld]) best = a;", (long long)inner, last ? ">=" : ">", (long long)inner);
    ct_emit_close(e);
    ct_emit_line(e, "y0[t] = best;");
    ct_emit_close(e);
    kernel_close(c);
}

static void emit_softmax(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (x->dtype != CT_F32) { unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype)); return; }
    /* the default axis is -1 since opset 13, 1 before (the frontend makes the
     * old 2-D coercion explicit, so only the default differs) */
    int r = x->shape.rank;
    int ax = norm_axis(ct_node_attr_int(n, "axis", c->g->opset && c->g->opset < 13 ? 1 : -1), r);
    int64_t outer = prod(x->shape.dims, 0, ax), A = x->shape.dims[ax], inner = prod(x->shape.dims, ax + 1, r);
    bool lg = n->op == CT_OP_LOG_SOFTMAX;
    ct_emitter *e = &c->k;
    const char *ex = ct_emit_math(e, CT_MATH_EXP), *lo = ct_emit_math(e, CT_MATH_LOG);
    kernel_open(c, n, false);
    ct_emit_pfor(e, "t", 1, outer * inner * A < PAR_MIN, "%lld", (long long)(outer * inner));
    ct_emit_line(e, "const int64_t o = t / %lld, in = t %% %lld;", (long long)inner, (long long)inner);
    ct_emit_line(e, "const float *p = x0 + o * %lld + in;", (long long)(A * inner));
    ct_emit_line(e, "float *q = y0 + o * %lld + in;", (long long)(A * inner));
    ct_emit_line(e, "float m = -INFINITY;");
    ct_emit_for(e, "a", "%lld", (long long)A);
    ct_emit_line(e, "if (p[a * %lld] > m) m = p[a * %lld];", (long long)inner, (long long)inner);
    ct_emit_close(e);
    ct_emit_line(e, "double s = 0;");
    ct_emit_for(e, "a", "%lld", (long long)A);
    if (lg) ct_emit_line(e, "s += %s(p[a * %lld] - m);", ex, (long long)inner);
    else {
        ct_emit_line(e, "const float v = %s(p[a * %lld] - m);", ex, (long long)inner);
        ct_emit_line(e, "q[a * %lld] = v;", (long long)inner);
        ct_emit_line(e, "s += v;");
    }
    ct_emit_close(e);
    if (lg) {
        ct_emit_line(e, "const float ls = %s((float)s);", lo);
        ct_emit_for(e, "a", "%lld", (long long)A);
        ct_emit_line(e, "q[a * %lld] = p[a * %lld] - m - ls;", (long long)inner, (long long)inner);
    } else {
        ct_emit_line(e, "const float inv = (float)(1.0 / s);");
        ct_emit_for(e, "a", "%lld", (long long)A);
        ct_emit_line(e, "q[a * %lld] *= inv;", (long long)inner);
    }
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
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
    int64_t N = x->shape.dims[0], C = x->shape.dims[1], S = prod(x->shape.dims, 2, x->shape.rank);
    char eps[48];
    flit(eps, sizeof eps, ct_node_attr_float(n, "epsilon", 1e-5f));
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    ct_emit_pfor(e, "n", 2, N * C * S < PAR_MIN, "%lld", (long long)N);
    ct_emit_for(e, "c", "%lld", (long long)C);
    ct_emit_line(e, "const float a = x1[c] / %s(x4[c] + %s);", ct_emit_math(e, CT_MATH_SQRT), eps);
    ct_emit_line(e, "const float b = x2[c] - x3[c] * a;");
    ct_emit_line(e, "const float *p = x0 + (n * %lld + c) * %lld;", (long long)C, (long long)S);
    ct_emit_line(e, "float *q = y0 + (n * %lld + c) * %lld;", (long long)C, (long long)S);
    ct_emit_for(e, "i", "%lld", (long long)S);
    ct_emit_line(e, "q[i] = p[i] * a + b;");
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
}

static void emit_global_pool(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0];
    if (x->dtype != CT_F32) { unsupported(c, n, "dtype %s", ct_dtype_name(x->dtype)); return; }
    int64_t NC = prod(x->shape.dims, 0, 2), S = prod(x->shape.dims, 2, x->shape.rank);
    bool mx = n->op == CT_OP_GLOBAL_MAX_POOL;
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    ct_emit_pfor(e, "t", 1, NC * S < PAR_MIN, "%lld", (long long)NC);
    ct_emit_line(e, "const float *p = x0 + t * %lld;", (long long)S);
    ct_emit_line(e, "float acc = %s;", mx ? "-INFINITY" : "0.0f");
    ct_emit_for(e, "i", "%lld", (long long)S);
    ct_emit_line(e, mx ? "acc = p[i] > acc ? p[i] : acc;" : "acc += p[i];");
    ct_emit_close(e);
    if (mx) ct_emit_line(e, "y0[t] = acc;");
    else ct_emit_line(e, "y0[t] = acc / %lld.0f;", (long long)S);
    ct_emit_close(e);
    kernel_close(c);
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

/* Opens the loop over the output columns ow that tap kw of a window reads inside its input row:
 * input column ow * sw - a, a = pl - kw * dw (the loop body reads pr[ow * sw - a]). */
static void emit_tap_columns(ct_emitter *e, const win2d *w)
{
    ct_emit_line(e, "const int64_t a = %lld - kw * %lld, b = %lld - kw * %lld;", (long long)w->pl, (long long)w->dw,
                 (long long)(w->W - 1 + w->pl), (long long)w->dw);
    ct_emit_line(e, "const int64_t lo = a <= 0 ? 0 : (a + %lld) / %lld;", (long long)(w->sw - 1), (long long)w->sw);
    ct_emit_line(e, "int64_t hi = b < 0 ? 0 : b / %lld + 1;", (long long)w->sw);
    ct_emit_line(e, "if (hi > %lld) hi = %lld;", (long long)w->OW, (long long)w->OW);
    ct_emit_open(e, "for (int64_t ow = lo; ow < hi; ow++)");
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
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    if (mx) {
        /* per output row: the rows of its window first, column by column (contiguous: the compiler
         * vectorises it), into a row r on the stack (rows up to 4096 wide); then tap by tap over r,
         * each tap over the columns it reads in bounds (no test per element). Wider rows: tap by tap
         * over the input rows themselves. resnet50's 3x3 stride-2 pool at batch 1: 0.38 -> 0.21 ms. */
        const bool rowmax = w.W <= 4096 && w.kh > 1;
        ct_emit_pfor(e, "t", 2, w.N * w.C * w.OH * w.OW * w.kh * w.kw < PAR_MIN, "%lld", (long long)(w.N * w.C));
        ct_emit_for(e, "oh", "%lld", (long long)w.OH);
        ct_emit_line(e, "const float *p = x0 + t * %lld;", (long long)(w.H * w.W));
        ct_emit_line(e, "float *q = y0 + (t * %lld + oh) * %lld;", (long long)w.OH, (long long)w.OW);
        ct_emit_line(e, "for (int64_t ow = 0; ow < %lld; ow++) q[ow] = -INFINITY;", (long long)w.OW);
        if (rowmax) {
            ct_emit_line(e, "float r[%lld];", (long long)w.W);
            ct_emit_line(e, "for (int64_t iw = 0; iw < %lld; iw++) r[iw] = -INFINITY;", (long long)w.W);
        }
        ct_emit_for(e, "kh", "%lld", (long long)w.kh);
        ct_emit_line(e, "const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)w.sh, (long long)w.pt, (long long)w.dh);
        ct_emit_line(e, "if (ih < 0 || ih >= %lld) continue;", (long long)w.H);
        ct_emit_line(e, "const float *pr = p + ih * %lld;", (long long)w.W);
        if (rowmax) {
            ct_emit_line(e, "for (int64_t iw = 0; iw < %lld; iw++) r[iw] = pr[iw] > r[iw] ? pr[iw] : r[iw];",
                         (long long)w.W);
            ct_emit_close(e);
            ct_emit_line(e, "const float *pr = r;");
        }
        ct_emit_for(e, "kw", "%lld", (long long)w.kw);
        emit_tap_columns(e, &w);
        ct_emit_line(e, "const float v = pr[ow * %lld - a];", (long long)w.sw);
        ct_emit_line(e, "q[ow] = v > q[ow] ? v : q[ow];");
        ct_emit_close(e);
        ct_emit_close(e);
        if (!rowmax) ct_emit_close(e);
        ct_emit_close(e);
        ct_emit_close(e);
        kernel_close(c);
        return;
    }
    ct_emit_pfor(e, "t", 2, w.N * w.C * w.OH * w.OW * w.kh * w.kw < PAR_MIN, "%lld", (long long)(w.N * w.C));
    ct_emit_for(e, "oh", "%lld", (long long)w.OH);
    ct_emit_line(e, "const float *p = x0 + t * %lld;", (long long)(w.H * w.W));
    ct_emit_line(e, "float *q = y0 + (t * %lld + oh) * %lld;", (long long)w.OH, (long long)w.OW);
    /* AveragePool: element by element */
    ct_emit_for(e, "ow", "%lld", (long long)w.OW);
    ct_emit_line(e, "float acc = 0.0f; int64_t cnt = 0;");
    ct_emit_for(e, "kh", "%lld", (long long)w.kh);
    ct_emit_line(e, "const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)w.sh, (long long)w.pt, (long long)w.dh);
    if (incl) ct_emit_line(e, "if (ih >= %lld) continue;", (long long)(w.H + w.pb));
    else ct_emit_line(e, "if (ih < 0 || ih >= %lld) continue;", (long long)w.H);
    ct_emit_for(e, "kw", "%lld", (long long)w.kw);
    ct_emit_line(e, "const int64_t iw = ow * %lld - %lld + kw * %lld;", (long long)w.sw, (long long)w.pl, (long long)w.dw);
    if (incl) {
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
    ct_emit_line(e, "q[ow] = cnt ? acc / (float)cnt : 0.0f;");
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
}

/* ------------------------------------------------------------ GEMM, MatMul, Conv */

static void emit_gemm(cg *c, const ct_node *n)
{
    const ct_value *a = n->in[0], *b = n->in[1], *y = n->out[0];
    const ct_value *cc = n->n_in > 2 ? n->in[2] : NULL;
    if (a->dtype != CT_F32 || b->dtype != CT_F32) { unsupported(c, n, "only float GEMM"); return; }
    bool ta = ct_node_attr_int(n, "transA", 0) != 0, tb = ct_node_attr_int(n, "transB", 0) != 0;
    double alpha = ct_node_attr_float(n, "alpha", 1.0f), beta = ct_node_attr_float(n, "beta", 1.0f);
    int64_t M = y->shape.dims[0], N = y->shape.dims[1], K = ta ? a->shape.dims[0] : a->shape.dims[1];
    char al[48], be[48];
    c->blas_flops += 2.0 * (double)M * (double)N * (double)K;
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
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
        emit_ew_loops(c, &v, ct, expr);
    }
    if (M == 1) /* one row (a batch of 1): a matrix-vector product, which OpenBLAS's sgemm does not thread */
        ct_emit_line(e, "cblas_sgemv(CT_ROW_MAJOR, %s, %lld, %lld, %s, x1, %lld, x0, 1, %s, y0, 1);",
                     tb ? "CT_NO_TRANS" : "CT_TRANS", (long long)(tb ? N : K), (long long)(tb ? K : N),
                     flit(al, sizeof al, alpha), (long long)(tb ? K : N), bias ? "1.0f" : "0.0f");
    else
        ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, %s, %s, %lld, %lld, %lld, %s, x0, %lld, x1, %lld, %s, y0, %lld);",
                     ta ? "CT_TRANS" : "CT_NO_TRANS", tb ? "CT_TRANS" : "CT_NO_TRANS", (long long)M, (long long)N,
                     (long long)K, flit(al, sizeof al, alpha), (long long)(ta ? M : K), (long long)(tb ? K : N),
                     bias ? "1.0f" : "0.0f", (long long)N);
    kernel_close(c);
}

static void emit_matmul(cg *c, const ct_node *n)
{
    const ct_value *a = n->in[0], *b = n->in[1];
    if (a->dtype != CT_F32 || b->dtype != CT_F32) { unsupported(c, n, "only float MatMul"); return; }
    int ra = a->shape.rank, rb = b->shape.rank;
    if (ra < 1 || rb < 1) { unsupported(c, n, "scalar operand"); return; }
    int64_t M = ra >= 2 ? a->shape.dims[ra - 2] : 1, K = a->shape.dims[ra - 1];
    int64_t N = rb >= 2 ? b->shape.dims[rb - 1] : 1;
    /* batch shapes */
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
    c->blas_flops += 2.0 * (double)nb * (double)M * (double)N * (double)K;
    int64_t sa[CT_MAX_RANK], sb[CT_MAX_RANK];
    broadcast_strides(&ab, &ob, sa);
    broadcast_strides(&bb, &ob, sb);
    bool b_shared = true, a_full = true;
    int64_t acc = 1;
    for (int i = ob.rank - 1; i >= 0; i--) {
        if (sb[i]) b_shared = false;
        if (sa[i] != acc && ob.dims[i] != 1) a_full = false;
        acc *= ob.dims[i];
    }
    ct_emitter *e = &c->k;
    kernel_open(c, n, false);
    if (b_shared && a_full) {
        ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_NO_TRANS, %lld, %lld, %lld, 1.0f, x0, %lld, x1, %lld, 0.0f, y0, %lld);",
                     (long long)(nb * M), (long long)N, (long long)K, (long long)K, (long long)N, (long long)N);
    } else {
        ct_emit_for(e, "t", "%lld", (long long)nb);
        ct_emit_line(e, "int64_t rem = t, oa = 0, ob = 0;");
        for (int i = ob.rank - 1; i >= 0; i--)
            ct_emit_line(e, "oa += (rem %% %lld) * %lld; ob += (rem %% %lld) * %lld; rem /= %lld;", (long long)ob.dims[i],
                         (long long)sa[i], (long long)ob.dims[i], (long long)sb[i], (long long)ob.dims[i]);
        ct_emit_line(e, "(void)rem;");
        ct_emit_line(e, "cblas_sgemm(CT_ROW_MAJOR, CT_NO_TRANS, CT_NO_TRANS, %lld, %lld, %lld, 1.0f, x0 + oa * %lld, %lld, x1 + ob * %lld, %lld, 0.0f, y0 + t * %lld, %lld);",
                     (long long)M, (long long)N, (long long)K, (long long)(M * K), (long long)K, (long long)(K * N),
                     (long long)N, (long long)(M * N), (long long)N);
        ct_emit_close(e);
    }
    kernel_close(c);
}

#define CONV_GRAD_MAX_FLOATS (1 << 23) /* scratch budget of the batched convolution gradients */

/* A blocking constant of the GEMM engine, read from its source (c_gemm_lib.c), the one place it is set. */
static int64_t gemm_define(const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "#define %s ", name);
    const char *p = strstr(ct_gemm_lib, key);
    CT_ASSERT(p != NULL);
    return strtoll(p + strlen(key), NULL, 10);
}

/* Packed-A floats of the GEMM engine (ct_gemm_a_floats in c_gemm_lib.c: CT_MR-row panels). */
static int64_t gemm_a_floats(int64_t M, int64_t K)
{
    const int64_t mr = gemm_define("CT_MR");
    return (M + mr - 1) / mr * mr * K;
}

/* A ct_conv_geo initialiser (c_gemm_lib.c) for the generated code. */
static void conv_geo_str(char *buf, size_t n, const int64_t *v /* N C H W M OH OW G kh kw sh sw ph pw dh dw */)
{
    snprintf(buf, n, "{%lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld}",
             (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[3], (long long)v[4], (long long)v[5],
             (long long)v[6], (long long)v[7], (long long)v[8], (long long)v[9], (long long)v[10], (long long)v[11],
             (long long)v[12], (long long)v[13], (long long)v[14], (long long)v[15]);
}

/* A kernel that is one call of the GEMM engine, fn(&geometry, x0, x1, y0, scratch), with `scratch`
 * floats of scratch; v: the ct_conv_geo fields. */
static void emit_engine_call(cg *c, const ct_node *n, const int64_t *v, int64_t scratch, const char *fn)
{
    char gs[512];
    if (scratch * 4 > c->scratch_bytes) c->scratch_bytes = scratch * 4;
    c->uses_gemm_lib = true;
    conv_geo_str(gs, sizeof gs, v);
    kernel_open(c, n, true);
    ct_emit_line(&c->k, "static const ct_conv_geo g = %s;", gs);
    ct_emit_line(&c->k, "%s(&g, x0, x1, y0, scratch);", fn);
    kernel_close(c);
}

/* Whether Winograd F(m x m, 3x3) (ct_conv_winograd in c_gemm_lib.c, whose ct_conv_winograd_ok
 * this mirrors) suits a convolution (ct_conv_geo fields v): 3x3, stride 1, no dilation, one group,
 * the same padding (at most 2) on both sides, at least 16 input and 16 output channels, at least 32
 * tiles in the batch, and no more than 0.8 of the direct convolution's multiplies once partial tiles
 * are counted (the direct GEMM wastes as much on maps this small: F(2x2) on 3x3, 5x5 and 7x7 maps of
 * 256 channels at batch 32 measured 2.2x, 1.5x and 2.2x faster than direct). */
static bool winograd_fits(const int64_t *v /* N C H W M OH OW G kh kw sh sw ph pw dh dw */, int m)
{
    if (v[7] != 1 || v[8] != 3 || v[9] != 3 || v[10] != 1 || v[11] != 1 || v[14] != 1 || v[15] != 1) return 0;
    if (v[12] < 0 || v[13] < 0 || v[12] > 2 || v[13] > 2 || v[5] != v[2] + 2 * v[12] - 2 || v[6] != v[3] + 2 * v[13] - 2)
        return 0;
    if (v[1] < 16 || v[4] < 16) return 0;
    const double tiles = (double)((v[5] + m - 1) / m) * (double)((v[6] + m - 1) / m);
    /* fewer tiles than a GEMM panel in the batch (a 7x7 map at batch 1): the transformed weights
     * ((m+2)^2/9 the weights' size, read from memory at batch 1) cost more than the multiplies saved */
    if (tiles * (double)v[0] < 32) return 0;
    return (m + 2) * (m + 2) * tiles <= 0.8 * 9.0 * (double)v[5] * (double)v[6];
}

/* The tile size m of Winograd for a convolution, 0 for the direct implicit GEMM. F(2x2) (2.25x
 * fewer multiplies than direct, about 2x its float32 rounding) where weights are trained; a forward
 * convolution on weights no step writes (fixed: an inference program) takes F(4x4) where it fits
 * (4x fewer multiplies, about 20x the direct rounding: resnet50's logits within 5.3e-5 of
 * onnxruntime's against 3.1e-5 with F(2x2), of magnitudes up to 64; its 3x3 layers 1.4-1.6x faster
 * at batch 32), else F(2x2). The same choice holds for a convolution's input gradient (as the
 * convolution of dY it is) and its weight gradient. CONTRA_WINOGRAD in the compiler's environment
 * overrides: 0 (off), 2 or 4 (that tile wherever it fits). */
static int winograd_tile(const int64_t *v, bool fixed)
{
    const char *env = getenv("CONTRA_WINOGRAD");
    if (env && *env) {
        const int m = atoi(env);
        return (m == 2 || m == 4) && winograd_fits(v, m) ? m : 0;
    }
    if (fixed && winograd_fits(v, 4)) return 4;
    return winograd_fits(v, 2) ? 2 : 0;
}

/* A persistent tensor that no state update writes (the weights of an inference program). */
static bool weights_fixed(const ct_graph *g, const ct_value *w)
{
    if (w->kind != CT_VALUE_PARAM && w->kind != CT_VALUE_CONST && w->kind != CT_VALUE_STATE) return false;
    for (int i = 0; i < g->n_assigns; i++)
        if (g->assigns[i].dst == w) return false;
    return true;
}

/* Conv, and FusedConv: relu(conv + bias + residual) in the output stores. */
static void emit_conv(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *wt = n->in[1];
    bool bias = n->n_in > 2 && n->in[2], fused = n->op == CT_OP_FUSED_CONV;
    bool res = fused && n->n_in > 3 && n->in[3], relu = fused && ct_node_attr_int(n, "relu", 0);
    if (x->dtype != CT_F32 || wt->dtype != CT_F32) { unsupported(c, n, "only float Conv"); return; }
    int64_t ks[2];
    int sr = x->shape.rank - 2;
    if (sr != 1 && sr != 2) { unsupported(c, n, "%d spatial dimensions (1 or 2 supported)", sr); return; }
    for (int i = 0; i < sr; i++) ks[i] = wt->shape.dims[2 + i];
    win2d w;
    if (!window_geometry(c, n, ks, &w)) return;
    int64_t G = ct_node_attr_int(n, "group", 1);
    int64_t Cg = w.C / G, Mg = w.OC / G, OHW = w.OH * w.OW, K = Cg * w.kh * w.kw;
    ct_emitter *e = &c->k;
    const int64_t gv[16] = {w.N, w.C, w.H, w.W, w.OC, w.OH, w.OW, G, w.kh, w.kw, w.sh, w.sw, w.pt, w.pl, w.dh, w.dw};
    const bool fixed = weights_fixed(c->g, wt);
    const int wm = w.pt == w.pb && w.pl == w.pr ? winograd_tile(gv, fixed) : 0;
    if (wm || !(Cg == 1 && G == w.C)) {
        /* on the GEMM engine (c_gemm_lib.c): Winograd F(m x m, 3x3), or an implicit GEMM per group over the
         * whole batch (im2col happens in the packing); the weights packed (Winograd: transformed) per call */
        if (wm) c->wino_tiles |= 1 << wm;
        c->engine_flops += 2.0 * (double)w.N * (double)w.OC * (double)OHW * (double)K;
        int64_t packed = wm ? (wm + 2) * (wm + 2) * gemm_a_floats(w.OC, w.C) : G * gemm_a_floats(Mg, K);
        if (!fixed && packed * 4 > c->scratch_bytes) c->scratch_bytes = packed * 4;
        c->uses_gemm_lib = true;
        char geo[512], fn[64], fn_packed[64];
        conv_geo_str(geo, sizeof geo, gv);
        snprintf(fn, sizeof fn, wm ? "ct_conv_winograd(%d, " : "ct_conv_forward(", wm);
        snprintf(fn_packed, sizeof fn_packed, wm ? "ct_conv_winograd_packed(%d, " : "ct_conv_forward_packed(", wm);
        kernel_open(c, n, !fixed);
        ct_emit_line(e, "static const ct_conv_geo g = %s;", geo);
        if (!fixed) {
            ct_emit_line(e, "%s&g, x0, x1, %s, %s, %d, y0, scratch);", fn, bias ? "x2" : "0", res ? "x3" : "0", relu);
        } else {
            /* weights no step writes: packed once, again only after the runtime says the host wrote state */
            ct_emit_line(e, "static float *packed;");
            ct_emit_line(e, "static int64_t packed_gen = -1;");
            ct_emit_open(e, "if (packed_gen != ct_state_gen)");
            ct_emit_line(e, "if (!packed && !(packed = aligned_alloc(64, %lld))) abort();", (long long)align_up(packed * 4));
            if (wm) ct_emit_line(e, "ct_wino_pack_weights(%d, x1, %lld, %lld, 0, packed);", wm, (long long)w.OC, (long long)w.C);
            else ct_emit_line(e, "ct_conv_pack_weights(&g, x1, packed);");
            ct_emit_line(e, "packed_gen = ct_state_gen;");
            ct_emit_close(e);
            ct_emit_line(e, "%s&g, x0, packed, %s, %s, %d, y0);", fn_packed, bias ? "x2" : "0", res ? "x3" : "0", relu);
        }
        kernel_close(c);
        return;
    }
    kernel_open(c, n, false);
    /* depthwise: a direct loop per (image, output channel), tap by tap over
     * whole output rows, each tap over the columns it reads in bounds */
    ct_emit_pfor(e, "n", 2, w.N * w.OC * OHW * w.kh * w.kw < PAR_MIN, "%lld", (long long)w.N);
    ct_emit_for(e, "m", "%lld", (long long)w.OC);
    ct_emit_line(e, "const float *p = x0 + (n * %lld + m / %lld) * %lld;", (long long)w.C, (long long)Mg,
                 (long long)(w.H * w.W));
    ct_emit_line(e, "const float *k = x1 + m * %lld;", (long long)(w.kh * w.kw));
    ct_emit_line(e, "float *q = y0 + (n * %lld + m) * %lld;", (long long)w.OC, (long long)OHW);
    ct_emit_for(e, "oh", "%lld", (long long)w.OH);
    ct_emit_line(e, "float *qr = q + oh * %lld;", (long long)w.OW);
    ct_emit_for(e, "ow", "%lld", (long long)w.OW);
    ct_emit_line(e, "qr[ow] = %s;", bias ? "x2[m]" : "0.0f");
    ct_emit_close(e);
    ct_emit_for(e, "kh", "%lld", (long long)w.kh);
    ct_emit_line(e, "const int64_t ih = oh * %lld - %lld + kh * %lld;", (long long)w.sh, (long long)w.pt, (long long)w.dh);
    ct_emit_line(e, "if (ih < 0 || ih >= %lld) continue;", (long long)w.H);
    ct_emit_line(e, "const float *pr = p + ih * %lld;", (long long)w.W);
    ct_emit_for(e, "kw", "%lld", (long long)w.kw);
    ct_emit_line(e, "const float wv = k[kh * %lld + kw];", (long long)w.kw);
    emit_tap_columns(e, &w);
    ct_emit_line(e, "qr[ow] += pr[ow * %lld - a] * wv;", (long long)w.sw);
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_close(e);
    ct_emit_close(e);
    if (res || relu) {
        /* the fused epilogue over the channel's outputs, while they are in cache */
        ct_emit_open(e, "for (int64_t i = 0; i < %lld; i++)", (long long)OHW);
        if (res) ct_emit_line(e, "q[i] += x3[(n * %lld + m) * %lld + i];", (long long)w.OC, (long long)OHW);
        if (relu) ct_emit_line(e, "q[i] = q[i] > 0.0f ? q[i] : 0.0f;");
        ct_emit_close(e);
    }
    ct_emit_close(e);
    ct_emit_close(e);
    kernel_close(c);
}

/* ------------------------------------------------------------ shape-valued ops (when not folded) */

static void emit_shape_ops(cg *c, const ct_node *n)
{
    const ct_value *x = n->in[0], *y = n->out[0];
    ct_emitter *e = &c->k;
    if (n->op == CT_OP_SHAPE) {
        int r = x->shape.rank;
        int64_t s = ct_node_attr_int(n, "start", 0), t = ct_node_attr_int(n, "end", r);
        if (s < 0) s += r;
        if (t < 0) t += r;
        if (s < 0) s = 0;
        if (t > r) t = r;
        kernel_open(c, n, false);
        for (int64_t i = s; i < t; i++) ct_emit_line(e, "y0[%lld] = %lld;", (long long)(i - s), (long long)x->shape.dims[i]);
        kernel_close(c);
    } else if (n->op == CT_OP_SIZE) {
        kernel_open(c, n, false);
        ct_emit_line(e, "y0[0] = %lld;", (long long)numel(x));
        kernel_close(c);
    } else { /* ConstantOfShape */
        const ct_attr *a = ct_node_attr(n, "value");
        double v = 0;
        if (a && a->t && !const_float(a->t, &v)) { unsupported(c, n, "value tensor"); return; }
        char lit[64];
        if (is_float(y->dtype)) flit(lit, sizeof lit, v);
        else snprintf(lit, sizeof lit, "%lld", (long long)v);
        kernel_open(c, n, false);
        ct_emit_pfor(e, "i", 1, numel(y) < PAR_MIN, "%lld", (long long)numel(y));
        ct_emit_line(e, "y0[i] = %s;", lit);
        ct_emit_close(e);
        kernel_close(c);
    }
}

/* ------------------------------------------------------------ training ops (ai.contra) */

#include "c_train_lib.inc"

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

/* MoCo's ring: keys [B, D] become columns ptr..ptr+B-1 (mod K) of the queue
 * [D, K]; the queue is copied only when it is not updated in place. */
static void emit_queue_push(cg *c, const ct_node *n)
{
    ct_emitter *e = &c->k;
    const ct_shape *qs = &n->in[0]->shape, *ks = &n->in[1]->shape;
    if (qs->rank != 2 || ks->rank != 2 || ks->dims[1] != qs->dims[0] || ks->dims[0] > qs->dims[1] ||
        n->in[0]->dtype != CT_F32) {
        unsupported(c, n, "needs a float queue [D, K] and keys [B, D] with B <= K");
        return;
    }
    int64_t D = qs->dims[0], K = qs->dims[1], B = ks->dims[0];
    kernel_open(c, n, false);
    ct_emit_line(e, "const int64_t ptr = x2[0];");
    ct_emit_line(e, "if (y0 != x0) memcpy(y0, x0, %lld);", (long long)(D * K * 4));
    ct_emit_for(e, "i", "%lld", (long long)B);
    ct_emit_line(e, "const int64_t col = (ptr + i) %% %lld;", (long long)K);
    ct_emit_for(e, "d", "%lld", (long long)D);
    ct_emit_line(e, "y0[d * %lld + col] = x1[i * %lld + d];", (long long)K, (long long)D);
    ct_emit_close(e);
    ct_emit_close(e);
    if (n->n_out > 1 && n->out[1]) ct_emit_line(e, "y1[0] = (ptr + %lld) %% %lld;", (long long)B, (long long)K);
    kernel_close(c);
}

/* The collectives: calls into the communicator the runtime hands the program
 * (ct_comm_p, program.h's ct_comm). */
static void emit_collective(cg *c, const ct_node *n)
{
    ct_emitter *e = &c->k;
    int64_t w = ct_node_attr_int(n, "world", 1);
    if (n->op != CT_OP_ALL_GATHER)
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i]->dtype != CT_F32) {
                unsupported(c, n, "float32 only");
                return;
            }
    kernel_open(c, n, false);
    if (n->op == CT_OP_ALL_REDUCE) {
        char l1[48];
        bool mean = !strcmp(ct_node_attr_string(n, "op", "sum"), "mean");
        flit(l1, sizeof l1, mean ? 1.0 / (double)w : 1.0);
        ct_emit_raw(e, "    const float *in_[] = {");
        for (int i = 0; i < n->n_in; i++) ct_emit_raw(e, "%sx%d", i ? ", " : "", i);
        ct_emit_raw(e, "};\n    float *out_[] = {");
        for (int i = 0; i < n->n_out; i++) ct_emit_raw(e, "%sy%d", i ? ", " : "", i);
        ct_emit_raw(e, "};\n    static const int64_t counts_[] = {");
        for (int i = 0; i < n->n_in; i++) ct_emit_raw(e, "%s%lld", i ? ", " : "", (long long)numel(n->in[i]));
        ct_emit_raw(e, "};\n");
        ct_emit_line(e, "ct_comm_p->allreduce_f32(ct_comm_p->ctx, %d, in_, out_, counts_, %s);", n->n_in, l1);
    } else if (n->op == CT_OP_ALL_GATHER) {
        ct_emit_line(e, "ct_comm_p->allgather(ct_comm_p->ctx, x0, y0, %lld);",
                     (long long)(numel(n->in[0]) * (int64_t)ct_dtype_size(n->in[0]->dtype)));
    } else {
        ct_emit_line(e, "ct_comm_p->reduce_scatter_f32(ct_comm_p->ctx, x0, y0, %lld);", (long long)numel(n->out[0]));
    }
    kernel_close(c);
}

static void emit_train(cg *c, const ct_node *n)
{
    if (n->op == CT_OP_QUEUE_PUSH) {
        emit_queue_push(c, n);
        return;
    }
    if (n->op == CT_OP_ALL_REDUCE || n->op == CT_OP_ALL_GATHER || n->op == CT_OP_REDUCE_SCATTER) {
        emit_collective(c, n);
        return;
    }
    if (!train_f32(c, n)) return;
    for (int i = 0; i < n->n_in; i++)
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
    c->uses_train_lib = true;
    char wbuf[512], l1[48], l2[48], l3[48];
    int64_t pend[2], geo[8];
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
        default: { /* Clip: bounds from inputs 2/3 or attributes */
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
        kernel_open(c, n, false);
        ct_emit_pfor(e, "i", 1, k < PAR_MIN, "%lld", (long long)k);
        ct_emit_line(e, "const float d = x0[i], y = x1[i];");
        ct_emit_line(e, "y0[i] = %s;", expr);
        ct_emit_close(e);
        kernel_close(c);
        return;
    }
    case CT_OP_SOFTMAX_GRAD: case CT_OP_LOG_SOFTMAX_GRAD: {
        const ct_shape *s = &n->in[1]->shape;
        if (s->rank == 0) { unsupported(c, n, "scalar input"); return; }
        int axis = norm_axis(ct_node_attr_int(n, "axis", -1), s->rank);
        kernel_open(c, n, false);
        ct_emit_line(e, "ct_softmax_grad(%lld, %lld, %lld, %d, x0, x1, y0);", (long long)prod(s->dims, 0, axis),
                     (long long)s->dims[axis], (long long)prod(s->dims, axis + 1, s->rank),
                     n->op == CT_OP_LOG_SOFTMAX_GRAD);
        kernel_close(c);
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
        int64_t Cg = xs->dims[1] / G, Mg = ys->dims[1] / G, K = Cg * geo[0] * geo[1], OHW = geo[2] * geo[3];
        bool depthwise = Cg == 1 && Mg == 1 && !geo[6];
        int64_t sh_ = 1, sw_ = 1, dh_ = 1, dw_ = 1, ph_ = 0, pw_ = 0;
        {
            int cnt;
            const int64_t *a = ct_node_attr_ints(n, "strides", &cnt);
            if (a && cnt == xs->rank - 2) sh_ = cnt == 2 ? a[0] : 1, sw_ = a[cnt - 1];
            a = ct_node_attr_ints(n, "dilations", &cnt);
            if (a && cnt == xs->rank - 2) dh_ = cnt == 2 ? a[0] : 1, dw_ = a[cnt - 1];
            a = ct_node_attr_ints(n, "pads", &cnt);
            if (a && cnt == 2 * (xs->rank - 2)) ph_ = cnt == 4 ? a[0] : 0, pw_ = cnt == 4 ? a[1] : a[0];
        }
        if (wi && G == 1 && sh_ == 1 && sw_ == 1 && ph_ <= (geo[0] - 1) * dh_ && pw_ <= (geo[1] - 1) * dw_ &&
            pend[0] <= (geo[0] - 1) * dh_ && pend[1] <= (geo[1] - 1) * dw_) {
            /* stride 1: dX is the convolution of dY with the flipped kernel, on the GEMM engine */
            const int64_t v[16] = {xs->dims[0], xs->dims[1], geo[4], geo[5], ys->dims[1], geo[2], geo[3], 1,
                                   geo[0], geo[1], 1, 1, ph_, pw_, dh_, dw_};
            /* the convolution of dY it is (ct_conv_grad_input_geo): on Winograd if that one qualifies */
            const int64_t r[16] = {v[0], v[4], v[5], v[6], v[1], v[2], v[3], 1, v[8], v[9], 1, 1,
                                   (v[8] - 1) * dh_ - ph_, (v[9] - 1) * dw_ - pw_, dh_, dw_};
            const int wm = ph_ == pend[0] && pw_ == pend[1] ? winograd_tile(r, false) : 0;
            if (wm) {
                c->wino_tiles |= 1 << wm;
                emit_engine_call(c, n, v, (wm + 2) * (wm + 2) * gemm_a_floats(xs->dims[1], ys->dims[1]),
                                 wm == 4 ? "ct_conv_grad_input_winograd4" : "ct_conv_grad_input_winograd2");
                return;
            }
            emit_engine_call(c, n, v, gemm_a_floats(xs->dims[1], ys->dims[1] * geo[0] * geo[1]),
                             "ct_conv_grad_input_direct");
            return;
        }
        if (!wi && !depthwise) {
            /* a GEMM over the pixels on the engine: dY packed as A, the transposed im2col gathered as B */
            const int64_t v[16] = {xs->dims[0], xs->dims[1], geo[4], geo[5], ys->dims[1], geo[2], geo[3], G,
                                   geo[0], geo[1], sh_, sw_, ph_, pw_, dh_, dw_};
            /* Winograd run backwards where the forward convolution would be Winograd */
            const int wm = ph_ == pend[0] && pw_ == pend[1] ? winograd_tile(v, false) : 0;
            if (wm) {
                c->wino_tiles |= 1 << wm;
                emit_engine_call(c, n, v, 0, wm == 4 ? "ct_conv_grad_weight_winograd4" : "ct_conv_grad_weight_winograd2");
                return;
            }
            emit_engine_call(c, n, v, gemm_a_floats(Mg, gemm_define("CT_KCW")), "ct_conv_grad_weight_gemm");
            return;
        }
        /* nb images per GEMM: dY and the im2col of nb images, (Mg + K) x nb*OHW floats of scratch */
        int64_t N = xs->dims[0], per_image = (Mg + K) * OHW, nb = per_image > 0 ? CONV_GRAD_MAX_FLOATS / per_image : N;
        if (nb < 1) nb = 1;
        if (nb > N) nb = N;
        int64_t scratch = depthwise ? 0 : per_image * nb;
        if (scratch * 4 > c->scratch_bytes) c->scratch_bytes = scratch * 4;
        kernel_open(c, n, scratch > 0);
        ct_emit_line(e, "static const ct_win w = %s;", wbuf);
        ct_emit_line(e, "ct_conv_grad_%s(&w, %lld, x0, x1, y0, %s);", wi ? "input" : "weight", (long long)nb,
                     scratch ? "scratch" : "0");
        kernel_close(c);
        return;
    }
    case CT_OP_MAX_POOL_GRAD: case CT_OP_AVERAGE_POOL_GRAD: {
        bool mx = n->op == CT_OP_MAX_POOL_GRAD;
        if (!train_window(c, n, &n->out[0]->shape, &n->in[0]->shape, NULL, pend, geo, wbuf, sizeof wbuf)) return;
        if (n->in[0]->shape.dims[1] != n->out[0]->shape.dims[1]) { unsupported(c, n, "channel mismatch"); return; }
        kernel_open(c, n, false);
        ct_emit_line(e, "static const ct_win w = %s;", wbuf);
        ct_emit_line(e, "ct_pool_grad(&w, %d, %d, %lld, %lld, x0, %s, y0);", mx,
                     (int)(ct_node_attr_int(n, "count_include_pad", 0) != 0), (long long)pend[0], (long long)pend[1],
                     mx ? "x1" : "0");
        kernel_close(c);
        return;
    }
    case CT_OP_BATCH_NORM_TRAIN: case CT_OP_BATCH_NORM_GRAD: {
        bool tr = n->op == CT_OP_BATCH_NORM_TRAIN;
        const ct_shape *xs = &n->in[tr ? 0 : 1]->shape;
        if (xs->rank < 2) { unsupported(c, n, "input rank < 2"); return; }
        int64_t N = xs->dims[0], C = xs->dims[1], SP = prod(xs->dims, 2, xs->rank), S = ct_node_attr_int(n, "splits", 1);
        if (S < 1 || N % S) { unsupported(c, n, "batch %lld not divisible by splits %lld", (long long)N, (long long)S); return; }
        bool sync = ct_node_attr_int(n, "world", 1) > 1;
        if (sync && S != 1) { unsupported(c, n, "SyncBatchNorm with splits"); return; }
        kernel_open(c, n, false);
        char o[5][8];
        for (int i = 0; i < 5; i++) snprintf(o[i], sizeof o[i], i < n->n_out && n->out[i] ? "y%d" : "0", i);
        if (sync && tr)
            ct_emit_line(e, "ct_bn_train_sync(%lld, %lld, %lld, %s, %s, x0, x1, x2, x3, x4, %s, %s, %s, %s, %s);",
                         (long long)N, (long long)C, (long long)SP,
                         flit(l1, sizeof l1, ct_node_attr_float(n, "epsilon", 1e-5f)),
                         flit(l2, sizeof l2, ct_node_attr_float(n, "momentum", 0.1f)), o[0], o[1], o[2], o[3], o[4]);
        else if (sync)
            ct_emit_line(e, "ct_bn_grad_sync(%lld, %lld, %lld, x0, x1, x2, x3, x4, %s, %s, %s);", (long long)N,
                         (long long)C, (long long)SP, o[0], o[1], o[2]);
        else if (tr)
            ct_emit_line(e, "ct_bn_train(%lld, %lld, %lld, %lld, %s, %s, x0, x1, x2, x3, x4, %s, %s, %s, %s, %s);",
                         (long long)N, (long long)C, (long long)SP, (long long)S,
                         flit(l1, sizeof l1, ct_node_attr_float(n, "epsilon", 1e-5f)),
                         flit(l2, sizeof l2, ct_node_attr_float(n, "momentum", 0.1f)), o[0], o[1], o[2], o[3], o[4]);
        else
            ct_emit_line(e, "ct_bn_grad(%lld, %lld, %lld, %lld, x0, x1, x2, x3, x4, %s, %s, %s);", (long long)N,
                         (long long)C, (long long)SP, (long long)S, o[0], o[1], o[2]);
        kernel_close(c);
        return;
    }
    case CT_OP_SOFTMAX_CROSS_ENTROPY: case CT_OP_SOFTMAX_CROSS_ENTROPY_GRAD: {
        bool fw = n->op == CT_OP_SOFTMAX_CROSS_ENTROPY;
        const ct_shape *s = &n->in[fw ? 0 : 1]->shape;
        if (s->rank != 2) { unsupported(c, n, "logits must be [N, C]"); return; }
        kernel_open(c, n, false);
        if (fw)
            ct_emit_line(e, "ct_sce(%lld, %lld, x0, x1, y0, %s);", (long long)s->dims[0], (long long)s->dims[1],
                         n->n_out > 1 && n->out[1] ? "y1" : "0");
        else
            ct_emit_line(e, "ct_sce_grad(%lld, %lld, x0, x1, x2, y0);", (long long)s->dims[0], (long long)s->dims[1]);
        kernel_close(c);
        return;
    }
    case CT_OP_SGD_STEP: case CT_OP_ADAM_STEP: case CT_OP_LARS_STEP: {
        /* per-parameter update; every element is read before it is written, so
         * outputs may share storage with their inputs (in-place assigns) */
        int64_t k = numel(n->in[0]);
        double wd = ct_node_attr_float(n, "weight_decay", 0);
        bool ser = k < PAR_MIN;
        kernel_open(c, n, false);
        ct_emit_line(e, "const float lr = x2[0];");
        flit(l3, sizeof l3, wd);
        if (n->op == CT_OP_SGD_STEP) {
            double mom = ct_node_attr_float(n, "momentum", 0);
            bool buf = n->n_in > 3 && n->in[3], nest = ct_node_attr_int(n, "nesterov", 0) != 0;
            flit(l1, sizeof l1, mom);
            ct_emit_pfor(e, "i", 1, ser, "%lld", (long long)k);
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
            /* betas as the decimals they were written as (0.999, not float 0.99900001),
             * as torch computes 1 - beta and beta^t in double */
            double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
            double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
            bool dec = ct_node_attr_int(n, "decoupled", 0) != 0;
            char le[48], c1[48], c2[48];
            flit(l1, sizeof l1, b1);
            flit(l2, sizeof l2, b2);
            flit(c1, sizeof c1, 1.0 - b1);
            flit(c2, sizeof c2, 1.0 - b2);
            flit(le, sizeof le, ct_node_attr_float(n, "epsilon", 1e-8f));
            ct_emit_line(e, "const double t = (double)x5[0];");
            ct_emit_line(e, "const double bc1 = 1.0 - pow(%.17g, t), bc2s = sqrt(1.0 - pow(%.17g, t));", b1, b2);
            ct_emit_line(e, "const float ss = (float)((double)lr / bc1), bc2f = (float)bc2s;");
            if (dec) ct_emit_line(e, "const float decay = 1.0f - lr * %s;", l3);
            ct_emit_pfor(e, "i", 1, ser, "%lld", (long long)k);
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
            flit(l2, sizeof l2, ct_node_attr_float(n, "trust_coefficient", 0.001f));
            ct_emit_line(e, "float q = 1.0f;");
            if (!ex) {
                ct_emit_line(e, "double pn = 0, dn = 0;");
                ct_emit_for(e, "i", "%lld", (long long)k);
                ct_emit_line(e, "const double p = x0[i], d = x1[i] + %s * x0[i];", l3);
                ct_emit_line(e, "pn += p * p;");
                ct_emit_line(e, "dn += d * d;");
                ct_emit_close(e);
                ct_emit_line(e, "if (pn > 0 && dn > 0) q = (float)(%s * sqrt(pn) / sqrt(dn));", l2);
            }
            ct_emit_pfor(e, "i", 1, ser, "%lld", (long long)k);
            if (ex) ct_emit_line(e, "const float d = x1[i];");
            else ct_emit_line(e, "const float d = (x1[i] + %s * x0[i]) * q;", l3);
            ct_emit_line(e, "const float b = %s * x3[i] + d;", l1);
            ct_emit_line(e, "y1[i] = b;");
            ct_emit_line(e, "y0[i] = x0[i] - lr * b;");
            ct_emit_close(e);
            ct_emit_line(e, "(void)q;");
        }
        kernel_close(c);
        return;
    }
    default:
        unsupported(c, n, "no C kernel for this training op");
        return;
    }
}

/* The fused contrastive losses (codegen/c_fused.c): the body comes from there. */
static void emit_fused(cg *c, const ct_node *n)
{
    int64_t scratch = 0;
    const char *why = ct_c_fused_plan(n, &scratch);
    if (why) {
        unsupported(c, n, "%s", why);
        return;
    }
    if (scratch * 4 > c->scratch_bytes) c->scratch_bytes = scratch * 4;
    kernel_open(c, n, scratch > 0);
    ct_c_fused_body(&c->k, n);
    kernel_close(c);
}

/* The nodes of the fuse pass: multi-tensor EMA and optimizer, BatchNorm + Relu (codegen/c_fuse_emit.c). */
static void emit_fused_multi(cg *c, const ct_node *n)
{
    char lower[64];
    size_t j = 0;
    for (const char *p = ct_op_table[n->op].name; *p && j + 1 < sizeof lower; p++)
        lower[j++] = (char)tolower((unsigned char)*p);
    lower[j] = 0;
    snprintf(c->kname, sizeof c->kname, "k%d_%s", n->id, lower);
    ct_fuse_place pl = {.region = c->region, .off = c->off, .align = ALIGN};
    bool flat = false;
    const char *why = ct_fuse_emit_c(&pl, n, c->kname, &c->k, &c->f, &flat);
    if (why) {
        unsupported(c, n, "%s", why);
        return;
    }
    c->n_kernels++;
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
    case CT_OP_BATCH_NORM: emit_batch_norm(c, n); return;
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
    case CT_OP_CONCAT: emit_concat(c, n); return;
    case CT_OP_SPLIT: emit_split(c, n); return;
    case CT_OP_SLICE: emit_slice(c, n); return;
    case CT_OP_GATHER: emit_gather(c, n); return;
    case CT_OP_PAD: case CT_OP_TILE: emit_pad_tile(c, n); return;
    case CT_OP_SHAPE: case CT_OP_SIZE: case CT_OP_CONSTANT_OF_SHAPE: emit_shape_ops(c, n); return;
    case CT_OP_CONTRASTIVE_LOSS: case CT_OP_CONTRASTIVE_LOSS_GRAD: case CT_OP_INBATCH_CONTRASTIVE_LOSS:
    case CT_OP_INBATCH_CONTRASTIVE_LOSS_GRAD: emit_fused(c, n); return;
    case CT_OP_FUSED_EMA: case CT_OP_FUSED_SGD_STEP: case CT_OP_FUSED_ADAM_STEP: case CT_OP_FUSED_BN_RELU:
    case CT_OP_FUSED_BN_TRAIN_RELU: emit_fused_multi(c, n); return;
    default:
        if (!strcmp(ct_op_table[n->op].domain, "ai.contra")) {
            emit_train(c, n);
            return;
        }
        unsupported(c, n, "no C kernel for this op (constant inputs are expected to be folded first)");
        return;
    }
}

/* ------------------------------------------------------------ placement */

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
            if (c->flat[i]) continue; /* place_flat lays it out */
            c->region[i] = CT_PT_REGION_PERSIST;
            c->off[i] = c->persist_bytes;
            c->persist_bytes = align_up(c->persist_bytes + (int64_t)ct_value_nbytes(v));
        }
    }
    c->arena_bytes = planned ? g->arena_bytes : naive;
    return CT_OK;
}

/* ------------------------------------------------------------ flat buffers */

/* A fused multi-tensor node (passes/fuse.c) runs one loop over all its
 * segments when every role (params, grads, optimizer slots, keys...) is one
 * flat buffer: its tensors one after another in segment order, each at an
 * ALIGN-rounded offset, so that all roles share one layout (the padding is
 * zero and every fused update maps zeros to zeros). Optimizer nodes are laid
 * out first: their params are the EMA's sources, which passes/fuse.c puts
 * first and in the same order, so the EMA finds them flat too. A role whose
 * values are not all persistent, or already laid out by another role, keeps
 * the ordinary placement (its kernel then loops per tensor). Gradients, TEMPs
 * read by the optimizer, move from the arena into a flat persistent buffer
 * (their planned arena bytes stay unused). The outputs land on the inputs'
 * bytes through place_assigns (in-place state updates). */
static bool fused_multi(const ct_node *n)
{
    return n->op == CT_OP_FUSED_EMA || n->op == CT_OP_FUSED_SGD_STEP || n->op == CT_OP_FUSED_ADAM_STEP;
}

/* Before place_values: the persistent values of fused roles wait for place_flat. */
static void flat_mark(cg *c)
{
    const ct_graph *g = c->g;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        ct_fused_layout l;
        if (!fused_multi(n) || !ct_fused_layout_get(n, &l)) continue;
        for (int j = l.lead; j < n->n_in; j++)
            if (n->in[j]->kind == CT_VALUE_PARAM || n->in[j]->kind == CT_VALUE_STATE) c->flat[n->in[j]->id] = true;
    }
}

static void place_flat(cg *c)
{
    const ct_graph *g = c->g;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < g->n_nodes; i++) {
            const ct_node *n = g->nodes[i];
            ct_fused_layout l;
            if (!fused_multi(n) || (n->op == CT_OP_FUSED_EMA) != (pass == 1) || !ct_fused_layout_get(n, &l)) continue;
            for (int r = 0; r < l.in_roles; r++) {
                ct_value *const *vals = n->in + l.lead + r * l.n;
                bool persist = true, temp = true;
                for (int k = 0; k < l.n; k++) {
                    const ct_value *v = vals[k];
                    persist = persist && c->flat[v->id] && c->region[v->id] < 0;
                    temp = temp && v->kind == CT_VALUE_TEMP && v->producer && !c->flat[v->id];
                    for (int a = 0; a < g->n_assigns && temp; a++) temp = g->assigns[a].src != v;
                    for (int q = 0; q < k && (persist || temp); q++)
                        if (vals[q] == v) persist = temp = false;
                }
                if (!persist && !temp) continue;
                for (int k = 0; k < l.n; k++) {
                    const ct_value *v = vals[k];
                    c->region[v->id] = CT_PT_REGION_PERSIST;
                    c->off[v->id] = c->persist_bytes;
                    c->persist_bytes = align_up(c->persist_bytes + (int64_t)ct_value_nbytes(v));
                    c->flat[v->id] = true;
                }
            }
        }
    for (int i = 0; i < g->n_values; i++) /* left over: the ordinary placement */
        if (c->flat[i] && c->region[i] < 0) {
            c->region[i] = CT_PT_REGION_PERSIST;
            c->off[i] = c->persist_bytes;
            c->persist_bytes = align_up(c->persist_bytes + (int64_t)ct_value_nbytes(g->values[i]));
        }
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

/* ------------------------------------------------------------ driver */

static const char prologue[] =
    "#include <math.h>\n"
    "#include <stdint.h>\n"
    "#include <string.h>\n"
    "#ifdef _OPENMP\n"
    "#include <omp.h>\n"
    "#endif\n"
    "#include \"program.h\"\n"
    "\n"
    "/* OpenBLAS (declared here so no cblas.h is needed; int is blasint). */\n"
    "enum { CT_ROW_MAJOR = 101, CT_NO_TRANS = 111, CT_TRANS = 112 };\n"
    "void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a, int lda,\n"
    "                 const float *b, int ldb, float beta, float *c, int ldc);\n"
    "void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float *a, int lda, const float *x,\n"
    "                 int incx, float beta, float *y, int incy);\n"
    "void openblas_set_num_threads(int n);\n"
    "\n"
    "#include <stdlib.h>\n"
    "\n"
    "/* Bumped by the runtime when the host writes parameters or state (ct_program.state_generation). */\n"
    "static int64_t ct_state_gen;\n"    "/* The communicator of a data-parallel program (ct_program.comm), set by the runtime. */\n"
    "static const ct_comm *ct_comm_p;\n"
    "\n"
    "/* The per-node profile (ct_program.profile_*): off unless the runtime turns it on. */\n"
    "#include <time.h>\n"
    "static int ct_prof_on;\n"
    "static double ct_prof_now(void)\n"
    "{\n"
    "    struct timespec t;\n"
    "    clock_gettime(CLOCK_MONOTONIC, &t);\n"
    "    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;\n"
    "}\n"
    "#define CT_PROF_BEGIN const double ct_t0_ = ct_prof_on ? ct_prof_now() : 0.0\n"
    "#define CT_PROF_END(i) if (ct_prof_on) ct_prof_s[i] += ct_prof_now() - ct_t0_\n";

ct_status ct_codegen_c(const ct_graph *g, ct_c_program *out)
{
    memset(out, 0, sizeof *out);
    cg c;
    memset(&c, 0, sizeof c);
    c.g = g;
    ct_status st = CT_OK;
    bool *copy = NULL;
    ct_emitter top, prof; /* prof: the profile's node names */
    ct_emit_init(&top, &ct_dialect_c);
    ct_emit_init(&prof, &ct_dialect_c);
    ct_emit_init(&c.k, &ct_dialect_c);
    ct_emit_init(&c.f, &ct_dialect_c);
    c.region = calloc((size_t)g->n_values + 1, sizeof *c.region);
    c.off = calloc((size_t)g->n_values + 1, sizeof *c.off);
    if (!c.region || !c.off) abort();
    copy = calloc((size_t)g->n_assigns + 1, sizeof *copy);
    if (!copy) abort();
    c.flat = calloc((size_t)g->n_values + 1, sizeof *c.flat);
    if (!c.flat) abort();
    flat_mark(&c);
    st = place_values(&c);
    if (st) goto fail;
    place_flat(&c);
    st = place_assigns(&c, copy);
    if (st) goto fail;
    /* scratch goes after the planned arena; its size is known once every
     * Conv is emitted, which does not move anything already placed */
    c.scratch_off = align_up(c.arena_bytes);

    int n_prof = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        size_t before = c.f.len;
        int kernels = c.n_kernels;
        ct_emit_raw(&c.f, "    { CT_PROF_BEGIN;\n");
        size_t open_len = c.f.len;
        emit_node(&c, n);
        if (c.n_kernels == kernels) { /* no kernel (an alias, a comment): no timing */
            size_t body = c.f.len - open_len;
            memmove(c.f.buf + before, c.f.buf + open_len, body);
            c.f.len = before + body;
            c.f.buf[c.f.len] = 0;
            continue;
        }
        ct_emit_raw(&c.f, "    CT_PROF_END(%d); }\n", n_prof++);
        char nm[512], sh[128];
        int len = snprintf(nm, sizeof nm, "%s %s", ct_op_table[n->op].name, n->name ? n->name : "");
        for (int j = 0; j < n->n_in && len < (int)sizeof nm - 1; j++) {
            if (!n->in[j] || n->in[j]->kind != CT_VALUE_TEMP) continue;
            shape_dims_str(sh, sizeof sh, &n->in[j]->shape);
            len += snprintf(nm + len, sizeof nm - (size_t)len, " %s", sh);
        }
        ct_emit_raw(&prof, "    ");
        emit_cstring(&prof, nm);
        ct_emit_raw(&prof, ",\n");
    }
    for (int i = 0; i < g->n_assigns; i++) {
        const ct_value *dst = g->assigns[i].dst, *src = g->assigns[i].src;
        char dn[256];
        comment_safe(dn, sizeof dn, dst->name);
        if (!copy[i]) {
            ct_emit_raw(&c.f, "    /* state update \"%s\": written in place */\n", dn);
            continue;
        }
        ct_emit_raw(&c.f, "    memcpy(P + %lld, %s + %lld, %lld); /* state update \"%s\" */\n", (long long)c.off[dst->id],
                    c.region[src->id] == CT_PT_REGION_ARENA ? "A" : "P", (long long)c.off[src->id],
                    (long long)ct_value_nbytes(dst), dn);
    }
    if (c.n_errors) {
        st = ct_errorf("the C backend cannot lower %d node%s:%s", c.n_errors, c.n_errors > 1 ? "s" : "", c.errors);
        goto fail;
    }

    int64_t arena_total = c.scratch_bytes ? c.scratch_off + align_up(c.scratch_bytes) : c.arena_bytes;

    /* the file */
    char gname[256];
    comment_safe(gname, sizeof gname, g->name ? g->name : "graph");
    ct_emit_raw(&top, "/* Generated by contra (C backend) from graph \"%s\": %d kernels.\n"
                      " * arena %lld bytes (scratch %lld), persistent %lld bytes. Do not edit. */\n",
                gname, c.n_kernels, (long long)arena_total, (long long)c.scratch_bytes, (long long)c.persist_bytes);
    ct_emit_raw(&top, "%s", prologue);
    ct_emit_raw(&top, "static double ct_prof_s[%d];\nstatic const char *const ct_prof_names[] = {\n%.*s    0\n};\n",
                n_prof ? n_prof : 1, (int)prof.len, prof.buf ? prof.buf : "");
    if (c.uses_gemm_lib)
        ct_emit_raw(&top, "/* ---- library: codegen/c_gemm_lib.c ---- */\n#define CT_WINO_TILES %d\n%s/* ---- end of library ---- */\n",
                    c.wino_tiles, ct_gemm_lib);
    if (c.uses_train_lib)
        ct_emit_raw(&top, "/* ---- library: codegen/c_train_lib.inc ---- */\n%s/* ---- end of library ---- */\n",
                    train_lib);
    ct_emit_raw(&top, "%.*s", (int)c.k.len, c.k.buf ? c.k.buf : "");
    ct_emit_raw(&top, "\nstatic void forward(void *arena, void *persist)\n{\n");
    ct_emit_raw(&top, "    char *A = (char *)arena, *P = (char *)persist;\n    (void)A;\n    (void)P;\n");
    ct_emit_raw(&top, "%.*s", (int)c.f.len, c.f.buf ? c.f.buf : "");
    /* An inference program whose BLAS calls are a small part of its work (a classifier after
     * convolutions) runs them on one thread: OpenBLAS's own threads spin for a long while after each
     * call, taking the cores from the convolutions' OpenMP threads (resnet18 at batch 1: the median
     * run took 33 ms instead of 18). */
    const bool blas_one = g->n_assigns == 0 && c.blas_flops < 0.05 * c.engine_flops;
    ct_emit_raw(&top, "}\n\nstatic void set_threads(int n)\n{\n#ifdef _OPENMP\n    omp_set_num_threads(n);\n#endif\n"
                      "    openblas_set_num_threads(%s);\n}\n", blas_one ? "1" : "n");

    /* the descriptor */
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
    ct_emit_raw(&top, "};\n\nconst ct_program_desc ct_program = {\n    .abi = CT_PROGRAM_ABI,\n    .name = ");
    emit_cstring(&top, g->name ? g->name : "graph");
    ct_emit_raw(&top, ",\n    .batch = %lld,\n    .n_tensors = %d,\n    .tensors = tensors,\n    .n_inputs = %d,\n"
                      "    .inputs = inputs,\n    .n_outputs = %d,\n    .outputs = outputs,\n    .arena_bytes = %lld,\n"
                      "    .persist_bytes = %lld,\n    .forward = forward,\n    .set_threads = set_threads,\n"
                      "    .n_profile = %d,\n    .profile_names = ct_prof_names,\n    .profile_seconds = ct_prof_s,\n"
                      "    .profile_on = &ct_prof_on,\n    .state_generation = &ct_state_gen,\n    .world = %d,\n"
                      "    .comm = &ct_comm_p,\n};\n",
                (long long)(g->batch > 0 ? g->batch : 0), n_desc, g->n_inputs, g->n_outputs, (long long)arena_total,
                (long long)c.persist_bytes, n_prof, ct_graph_world(g));
    free(desc_index);

    /* the blob: the persistent region's initial image */
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
    ct_emit_free(&prof);
    ct_emit_free(&c.k);
    ct_emit_free(&c.f);
    free(c.region);
    free(c.off);
    free(c.flat);
    free(c.errors);
    free(copy);
    if (st) ct_c_program_free(out);
    return st;
}

void ct_c_program_free(ct_c_program *p)
{
    free(p->source);
    free(p->blob);
    memset(p, 0, sizeof *p);
}

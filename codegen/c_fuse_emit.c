/* c_fuse_emit.c — C kernels of the fused multi-tensor nodes: the update of
 * element i written once, run either over the flat buffers the backend laid
 * the roles out in (one loop) or segment by segment. The element code is
 * the per-tensor kernels' (c_backend.c) statement for statement, so a fused
 * program computes bit for bit what the unfused one does. */
#include "c_fuse_emit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse.h"
#include "program.h"

#define PAR_MIN 32768 /* fewer elements than this: a serial loop (as c_backend.c) */

/* A float as a C literal (as c_backend.c prints them). */
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

static double attr_decimal(float f)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)f);
    return strtod(b, NULL);
}

static int64_t align_up(int64_t x, int64_t a) { return (x + a - 1) / a * a; }

bool ct_fuse_role_flat(const ct_fuse_place *p, ct_value *const *vals, int n)
{
    if (p->region[vals[0]->id] != CT_PT_REGION_PERSIST) return false;
    for (int i = 1; i < n; i++) {
        const ct_value *a = vals[i - 1], *b = vals[i];
        if (p->region[b->id] != CT_PT_REGION_PERSIST ||
            p->off[b->id] != p->off[a->id] + align_up((int64_t)ct_value_nbytes(a), p->align))
            return false;
    }
    return true;
}

static const char *base(const ct_fuse_place *p, const ct_value *v)
{
    return p->region[v->id] == CT_PT_REGION_ARENA ? "A" : "P";
}

/* The scalar preamble (lr, momentum...) and the per-element statements over
 * x<r>[i] (input role r) and y<r>[i] (output role r). */
static void emit_prologue(const ct_fuse_place *p, const ct_node *n, ct_emitter *e)
{
    char l1[48], l2[48], l3[48];
    if (n->op == CT_OP_FUSED_EMA) {
        ct_emit_line(e, "const float m = *(const float *)(%s + %lld), om = *(const float *)(%s + %lld);",
                     base(p, n->in[0]), (long long)p->off[n->in[0]->id], base(p, n->in[1]),
                     (long long)p->off[n->in[1]->id]);
        return;
    }
    ct_emit_line(e, "const float lr = *(const float *)(%s + %lld);", base(p, n->in[0]), (long long)p->off[n->in[0]->id]);
    if (n->op == CT_OP_FUSED_ADAM_STEP) {
        double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
        double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
        ct_emit_line(e, "const double t = (double)*(const int64_t *)(%s + %lld);", base(p, n->in[1]),
                     (long long)p->off[n->in[1]->id]);
        ct_emit_line(e, "const double bc1 = 1.0 - pow(%.17g, t), bc2s = sqrt(1.0 - pow(%.17g, t));", b1, b2);
        ct_emit_line(e, "const float ss = (float)((double)lr / bc1), bc2f = (float)bc2s;");
        if (ct_node_attr_int(n, "decoupled", 0))
            ct_emit_line(e, "const float decay = 1.0f - lr * %s;",
                         flit(l3, sizeof l3, ct_node_attr_float(n, "weight_decay", 0)));
    }
    (void)l1;
    (void)l2;
}

static void emit_element(const ct_node *n, ct_emitter *e)
{
    char l1[48], l2[48], l3[48], le[48], c1[48], c2[48];
    double wd = ct_node_attr_float(n, "weight_decay", 0);
    flit(l3, sizeof l3, wd);
    switch (n->op) {
    case CT_OP_FUSED_EMA:
        /* the Mul, Mul, Add of the unfused graph: each product rounded to
         * float before the sum (the kernel is compiled without contraction) */
        ct_emit_line(e, "const float a = x0[i] * m, c = x1[i] * om;");
        ct_emit_line(e, "y0[i] = a + c;");
        return;
    case CT_OP_FUSED_SGD_STEP: {
        double mom = ct_node_attr_float(n, "momentum", 0);
        bool buf = ct_node_attr_int(n, "buffers", 0) != 0, nest = ct_node_attr_int(n, "nesterov", 0) != 0;
        flit(l1, sizeof l1, mom);
        ct_emit_line(e, "const float p = x0[i];");
        if (wd != 0) ct_emit_line(e, "float d = x1[i] + %s * p;", l3);
        else ct_emit_line(e, "float d = x1[i];");
        if (buf) {
            ct_emit_line(e, "const float b = %s * x2[i] + d;", l1);
            ct_emit_line(e, "y1[i] = b;");
            if (nest) ct_emit_line(e, "d = d + %s * b;", l1);
            else ct_emit_line(e, "d = b;");
        }
        ct_emit_line(e, "y0[i] = p - lr * d;");
        return;
    }
    case CT_OP_FUSED_ADAM_STEP: {
        double b1 = attr_decimal(ct_node_attr_float(n, "beta1", 0.9f));
        double b2 = attr_decimal(ct_node_attr_float(n, "beta2", 0.999f));
        bool dec = ct_node_attr_int(n, "decoupled", 0) != 0;
        flit(l1, sizeof l1, b1);
        flit(l2, sizeof l2, b2);
        flit(c1, sizeof c1, 1.0 - b1);
        flit(c2, sizeof c2, 1.0 - b2);
        flit(le, sizeof le, ct_node_attr_float(n, "epsilon", 1e-8f));
        ct_emit_line(e, "float p = x0[i], g = x1[i];");
        if (dec) ct_emit_line(e, "p = p * decay;");
        else if (wd != 0) ct_emit_line(e, "g = g + %s * p;", l3);
        ct_emit_line(e, "const float m = %s * x2[i] + %s * g;", l1, c1);
        ct_emit_line(e, "const float v = %s * x3[i] + %s * g * g;", l2, c2);
        ct_emit_line(e, "const float den = sqrtf(v) / bc2f + %s;", le);
        ct_emit_line(e, "y1[i] = m;");
        ct_emit_line(e, "y2[i] = v;");
        ct_emit_line(e, "y0[i] = p - ss * (m / den);");
        return;
    }
    default:
        return;
    }
}

/* Role pointers x<r>, y<r> at segment s (or the flat span's start: s = 0). */
static void emit_pointers(const ct_fuse_place *p, const ct_node *n, const ct_fused_layout *l, int s, ct_emitter *e)
{
    for (int r = 0; r < l->in_roles; r++) {
        const ct_value *v = n->in[l->lead + r * l->n + s];
        ct_emit_line(e, "const float *x%d = (const float *)(%s + %lld);", r, base(p, v), (long long)p->off[v->id]);
    }
    for (int r = 0; r < l->out_roles; r++) {
        const ct_value *v = n->out[r * l->n + s];
        ct_emit_line(e, "float *y%d = (float *)(%s + %lld);", r, base(p, v), (long long)p->off[v->id]);
    }
}

static int64_t prod_from(const ct_shape *s, int from)
{
    int64_t r = 1;
    for (int d = from; d < s->rank; d++) r *= s->dims[d];
    return r;
}

/* Relu(BatchNorm(x) [+ r]): the per-channel affine of c_backend.c's BatchNormalization
 * kernel, or c_train_lib.inc's ct_bn_train statement for statement, with the residual
 * and the Relu applied to each element before it is stored. */
static const char *emit_bn_relu(const ct_fuse_place *p, const ct_node *n, const char *kname, ct_emitter *k,
                                ct_emitter *f)
{
    bool tr = n->op == CT_OP_FUSED_BN_TRAIN_RELU, res = n->n_in > 5 && n->in[5];
    const ct_shape *xs = &n->in[0]->shape;
    if (xs->rank < 2) return "input rank < 2";
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i] && n->in[i]->dtype != CT_F32) return "float32 only";
    int64_t N = xs->dims[0], C = xs->dims[1], SP = prod_from(xs, 2), S = ct_node_attr_int(n, "splits", 1);
    if (tr && (S < 1 || N % S)) return "the batch is not divisible by the splits";
    char eps[48], mom[48], nm[256];
    flit(eps, sizeof eps, ct_node_attr_float(n, "epsilon", 1e-5f));
    flit(mom, sizeof mom, ct_node_attr_float(n, "momentum", 0.1f));
    size_t j = 0;
    for (const char *c = n->name; *c && j + 1 < sizeof nm; c++)
        nm[j++] = (*c == '*' && c[1] == '/') || (*c == '/' && c[1] == '*') ? '_' : *c;
    nm[j] = 0;
    ct_emit_raw(k, "\n/* %s, node \"%s\": x(%lld,%lld,%lld)%s; one pass, the normalised x never stored */\n",
                ct_op_table[n->op].name, nm, (long long)N, (long long)C, (long long)SP, res ? " + residual" : "");
    ct_emit_raw(k, "%s %s(char *A, char *P)\n{\n", k->d->kernel_prefix, kname);
    k->indent = 1;
    ct_emit_line(k, "(void)A;");
    ct_emit_line(k, "(void)P;");
    for (int i = 0; i < n->n_in; i++)
        if (n->in[i])
            ct_emit_line(k, "const float *x%d = (const float *)(%s + %lld);", i, base(p, n->in[i]),
                         (long long)p->off[n->in[i]->id]);
    for (int i = 0; i < n->n_out; i++) {
        if (n->out[i]) ct_emit_line(k, "float *y%d = (float *)(%s + %lld);", i, base(p, n->out[i]), (long long)p->off[n->out[i]->id]);
        else ct_emit_line(k, "float *y%d = 0;", i);
    }
    const bool rd = res; /* add the residual */
    if (!tr) {
        ct_emit_pfor(k, "b", 2, N * C * SP < PAR_MIN, "%lld", (long long)N);
        ct_emit_for(k, "c", "%lld", (long long)C);
        ct_emit_line(k, "const float a = x1[c] / %s(x4[c] + %s);", ct_emit_math(k, CT_MATH_SQRT), eps);
        ct_emit_line(k, "const float bb = x2[c] - x3[c] * a;");
        ct_emit_line(k, "const float *xp = x0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_line(k, "float *yp = y0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_for(k, "i", "%lld", (long long)SP);
        ct_emit_line(k, "float t = xp[i] * a + bb;");
        if (rd) ct_emit_line(k, "t = t + x5[(b * %lld + c) * %lld + i];", (long long)C, (long long)SP);
        ct_emit_line(k, "yp[i] = t > 0 ? t : 0;");
        ct_emit_close(k);
        ct_emit_close(k);
        ct_emit_close(k);
    } else {
        ct_emit_line(k, "const int64_t m = %lld;", (long long)((N / S) * SP));
        ct_emit_line(k, "const double eps = %s, mom = %s;", eps, mom);
        ct_emit_pfor(k, "c", 1, N * C * SP < PAR_MIN, "%lld", (long long)C);
        ct_emit_line(k, "double arm = 0, arv = 0;");
        ct_emit_line(k, "const double rm0 = x3[c], rv0 = x4[c];");
        ct_emit_for(k, "s", "%lld", (long long)S);
        ct_emit_line(k, "double sum = 0, ss = 0;");
        ct_emit_open(k, "for (int64_t b = s; b < %lld; b += %lld)", (long long)N, (long long)S);
        ct_emit_line(k, "const float *xp = x0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_line(k, "for (int64_t i = 0; i < %lld; i++) sum += xp[i];", (long long)SP);
        ct_emit_close(k);
        ct_emit_line(k, "const double mean = sum / (double)m;");
        ct_emit_open(k, "for (int64_t b = s; b < %lld; b += %lld)", (long long)N, (long long)S);
        ct_emit_line(k, "const float *xp = x0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_line(k, "for (int64_t i = 0; i < %lld; i++) { const double d = xp[i] - mean; ss += d * d; }",
                     (long long)SP);
        ct_emit_close(k);
        ct_emit_line(k, "const double var = ss / (double)m, inv = 1.0 / sqrt(var + eps);");
        ct_emit_line(k, "const float a = (float)(inv * x1[c]), bb = (float)(x2[c] - mean * inv * x1[c]);");
        ct_emit_open(k, "for (int64_t b = s; b < %lld; b += %lld)", (long long)N, (long long)S);
        ct_emit_line(k, "const float *xp = x0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_line(k, "float *yp = y0 + (b * %lld + c) * %lld;", (long long)C, (long long)SP);
        ct_emit_for(k, "i", "%lld", (long long)SP);
        ct_emit_line(k, "float t = xp[i] * a + bb;");
        if (rd) ct_emit_line(k, "t = t + x5[(b * %lld + c) * %lld + i];", (long long)C, (long long)SP);
        ct_emit_line(k, "yp[i] = t > 0 ? t : 0;");
        ct_emit_close(k);
        ct_emit_close(k);
        ct_emit_line(k, "if (y1) y1[s * %lld + c] = (float)mean;", (long long)C);
        ct_emit_line(k, "if (y2) y2[s * %lld + c] = (float)inv;", (long long)C);
        ct_emit_line(k, "const double unb = m > 1 ? ss / (double)(m - 1) : var;");
        ct_emit_line(k, "arm += (1 - mom) * rm0 + mom * mean;");
        ct_emit_line(k, "arv += (1 - mom) * rv0 + mom * unb;");
        ct_emit_close(k);
        ct_emit_line(k, "if (y3) y3[c] = (float)(arm / (double)%lld);", (long long)S);
        ct_emit_line(k, "if (y4) y4[c] = (float)(arv / (double)%lld);", (long long)S);
        ct_emit_close(k);
    }
    k->indent = 1;
    ct_emit_close(k);
    ct_emit_raw(f, "    %s(A, P);\n", kname);
    return NULL;
}

const char *ct_fuse_emit_c(const ct_fuse_place *p, const ct_node *n, const char *kname, ct_emitter *k,
                           ct_emitter *f, bool *flat)
{
    *flat = false;
    if (n->op == CT_OP_FUSED_BN_RELU || n->op == CT_OP_FUSED_BN_TRAIN_RELU) return emit_bn_relu(p, n, kname, k, f);
    ct_fused_layout l;
    if (!ct_fused_layout_get(n, &l)) return "operands do not form whole segments";
    for (int i = 0; i < n->n_in; i++)
        if (!n->in[i] || (i >= l.lead && n->in[i]->dtype != CT_F32)) return "fused kernels are float32 only";
    if (n->op == CT_OP_FUSED_ADAM_STEP && n->in[1]->dtype != CT_I64) return "the step count must be int64";
    /* flat: every role (inputs and outputs) one contiguous run in the same layout */
    bool fl = true;
    for (int r = 0; r < l.in_roles && fl; r++) fl = ct_fuse_role_flat(p, n->in + l.lead + r * l.n, l.n);
    for (int r = 0; r < l.out_roles && fl; r++) fl = ct_fuse_role_flat(p, n->out + r * l.n, l.n);
    *flat = fl;
    int64_t elems = 0;
    for (int s = 0; s < l.n; s++) elems += ct_shape_numel(&n->in[l.lead + s]->shape);
    const ct_value *first = n->in[l.lead], *last = n->in[l.lead + l.n - 1];
    int64_t span = (p->off[last->id] + (int64_t)ct_value_nbytes(last) - p->off[first->id]) / 4;

    char nm[256];
    size_t j = 0;
    for (const char *c = n->name; *c && j + 1 < sizeof nm; c++) /* no comment ends or starts inside */
        nm[j++] = (*c == '*' && c[1] == '/') || (*c == '/' && c[1] == '*') ? '_' : *c;
    nm[j] = 0;
    ct_emit_raw(k, "\n/* %s, node \"%s\": %d tensors, %lld elements; %s */\n", ct_op_table[n->op].name, nm, l.n,
                (long long)elems,
                fl ? "one loop over the flat buffers" : "a loop per tensor (operands not laid out flat)");
    /* the EMA must round each product to float before the sum, as the
     * unfused Mul, Mul, Add do: no contraction into fused multiply-adds */
    if (n->op == CT_OP_FUSED_EMA) ct_emit_raw(k, "__attribute__((optimize(\"fp-contract=off\")))\n");
    ct_emit_raw(k, "%s %s(char *A, char *P)\n{\n", k->d->kernel_prefix, kname);
    k->indent = 1;
    ct_emit_line(k, "(void)A;");
    ct_emit_line(k, "(void)P;");
    emit_prologue(p, n, k);
    if (fl) {
        /* the span covers the alignment padding between tensors: zero in every
         * operand, and every update maps zeros to zeros */
        emit_pointers(p, n, &l, 0, k);
        ct_emit_pfor(k, "i", 1, span < PAR_MIN, "%lld", (long long)span);
        emit_element(n, k);
        ct_emit_close(k);
    } else {
        for (int s = 0; s < l.n; s++) {
            int64_t cnt = ct_shape_numel(&n->in[l.lead + s]->shape);
            ct_emit_line(k, "{");
            k->indent++;
            emit_pointers(p, n, &l, s, k);
            ct_emit_pfor(k, "i", 1, cnt < PAR_MIN, "%lld", (long long)cnt);
            emit_element(n, k);
            ct_emit_close(k);
            ct_emit_close(k);
        }
    }
    k->indent = 1;
    ct_emit_close(k);
    ct_emit_raw(f, "    %s(A, P);\n", kname);
    return NULL;
}

/* dump.c — what 'contra dump' prints: statistics (op counts, parameters,
 * FLOPs, activation bytes), the readable table, JSON and Graphviz dot; plus
 * the atomic file writer the subcommands use for -o. */
#include "dump.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers */

static bool is_persistent(const ct_value *v)
{
    return v->kind == CT_VALUE_PARAM || v->kind == CT_VALUE_STATE || v->kind == CT_VALUE_CONST;
}

/* Elements of v with symbolic batch dims taken as 1; -1 if unknown. */
static int64_t value_numel(const ct_value *v, bool *symbolic)
{
    if (!v || !v->shape_known) return -1;
    int64_t n = 1;
    for (int i = 0; i < v->shape.rank; i++) {
        int64_t d = v->shape.dims[i];
        if (d == CT_DIM_BATCH) {
            d = 1;
            if (symbolic) *symbolic = true;
        }
        if (d < 0) return -1;
        if (d != 0 && n > INT64_MAX / d) return -1;
        n *= d;
    }
    return n;
}

static int64_t dim_or_1(int64_t d) { return d == CT_DIM_BATCH ? 1 : d; }

static void shape_text(const ct_value *v, char *buf, size_t n)
{
    if (!v->shape_known) {
        snprintf(buf, n, "?");
        return;
    }
    ct_shape_str(&v->shape, buf, n);
}

/* "float[1,3,224,224]", or just "[1,3,224,224]" for float when terse. */
static void typed_shape_text(const ct_value *v, bool terse, char *buf, size_t n)
{
    char s[160];
    shape_text(v, s, sizeof s);
    if (terse && v->dtype == CT_F32)
        snprintf(buf, n, "%s", s);
    else
        snprintf(buf, n, "%s%s", ct_dtype_name(v->dtype), s);
}

/* Thousands separators: 25557032 -> "25,557,032". */
static const char *group_digits(int64_t x, char *buf, size_t n)
{
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%" PRId64, x < 0 ? -x : x);
    size_t len = strlen(tmp), k = 0;
    if (x < 0 && k + 1 < n) buf[k++] = '-';
    for (size_t i = 0; i < len && k + 2 < n; i++) {
        buf[k++] = tmp[i];
        size_t left = len - i - 1;
        if (left && left % 3 == 0) buf[k++] = ',';
    }
    buf[k] = 0;
    return buf;
}

/* 1234567 -> "1.23 M" style, for FLOPs and bytes. */
static const char *human(double x, const char *unit, char *buf, size_t n)
{
    const char *pre[] = {"", "K", "M", "G", "T", "P"};
    int i = 0;
    while (fabs(x) >= 1000.0 && i < 5) {
        x /= 1000.0;
        i++;
    }
    if (i == 0)
        snprintf(buf, n, *unit ? "%.0f %s" : "%.0f", x, unit);
    else
        snprintf(buf, n, *unit ? "%.2f %s%s" : "%.2f %s", x, pre[i], unit);
    return buf;
}

static const char *human_bytes(double x, char *buf, size_t n)
{
    const char *pre[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (x >= 1024.0 && i < 4) {
        x /= 1024.0;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", x, pre[i]);
    return buf;
}

/* PyTorch-exported node names are paths whose components repeat their
 * parent: "/features/features.1/features.1.0/block/block.0/Conv". Drop a
 * component when the next one starts with it plus '.', which loses nothing:
 * "features.1.0/block.0/Conv". A last component equal to the op type says
 * nothing the op column does not, and goes too: "features.1.0/block.0". */
static void name_shorten(const char *full, const char *op_name, char *buf, size_t n)
{
    const char *comp[64];
    size_t clen[64];
    int nc = 0;
    const char *p = full;
    if (!full || !*full) {
        snprintf(buf, n, "%s", "");
        return;
    }
    while (*p && nc < 64) {
        while (*p == '/') p++;
        if (!*p) break;
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        comp[nc] = p;
        clen[nc++] = l;
        p += l;
    }
    if (*p || full[0] != '/') { /* not a path (or too deep): keep as is */
        snprintf(buf, n, "%s", full);
        return;
    }
    if (nc > 1 && op_name && strlen(op_name) == clen[nc - 1] && !strncmp(comp[nc - 1], op_name, clen[nc - 1])) nc--;
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < nc; i++) {
        if (i + 1 < nc && clen[i + 1] > clen[i] && !strncmp(comp[i + 1], comp[i], clen[i]) &&
            comp[i + 1][clen[i]] == '.')
            continue;
        int w = snprintf(buf + k, n - k, "%s%.*s", k ? "/" : "", (int)clen[i], comp[i]);
        if (w < 0 || (size_t)w >= n - k) break;
        k += (size_t)w;
    }
}

/* ---------------------------------------------------------------- FLOPs */

static int64_t mul_sat(int64_t a, int64_t b)
{
    if (a < 0 || b < 0) return -1;
    if (a && b > INT64_MAX / a) return -1;
    return a * b;
}

int64_t ct_dump_node_flops(const ct_node *n, int64_t *macs_out)
{
    int64_t macs = 0, flops = -1;
    const ct_value *x = n->n_in > 0 ? n->in[0] : NULL;
    const ct_value *y = n->n_out > 0 ? n->out[0] : NULL;
    int64_t in_el = value_numel(x, NULL), out_el = value_numel(y, NULL);
    if (macs_out) *macs_out = 0;

    switch (n->op) {
    case CT_OP_CONV: case CT_OP_FUSED_CONV: {
        const ct_value *w = n->n_in > 1 ? n->in[1] : NULL;
        if (out_el < 0 || !w || !w->shape_known || w->shape.rank < 2) return -1;
        /* W: (Cout, Cin/group, k...): each output element is Cin/group * prod(k) MACs */
        int64_t per = 1;
        for (int i = 1; i < w->shape.rank; i++) per = mul_sat(per, dim_or_1(w->shape.dims[i]));
        macs = mul_sat(out_el, per);
        if (macs < 0) return -1;
        flops = 2 * macs + (n->n_in > 2 && n->in[2] ? out_el : 0);
        if (n->op == CT_OP_FUSED_CONV) /* the residual add and the ReLU */
            flops += (n->n_in > 3 && n->in[3] ? out_el : 0) + (ct_node_attr_int(n, "relu", 0) ? out_el : 0);
        break;
    }
    case CT_OP_GEMM: {
        const ct_value *a = x, *b = n->n_in > 1 ? n->in[1] : NULL;
        if (out_el < 0 || !a || !a->shape_known || a->shape.rank != 2 || !b) return -1;
        int64_t k = dim_or_1(ct_node_attr_int(n, "transA", 0) ? a->shape.dims[0] : a->shape.dims[1]);
        macs = mul_sat(out_el, k);
        if (macs < 0) return -1;
        flops = 2 * macs + (n->n_in > 2 && n->in[2] ? out_el : 0);
        break;
    }
    case CT_OP_MATMUL: {
        if (out_el < 0 || !x || !x->shape_known || x->shape.rank < 1) return -1;
        int64_t k = dim_or_1(x->shape.dims[x->shape.rank - 1]);
        macs = mul_sat(out_el, k);
        if (macs < 0) return -1;
        flops = 2 * macs;
        break;
    }
    case CT_OP_BATCH_NORM:
        /* inference: one multiply-add per element (scale and shift folded);
         * training also computes the batch mean and variance (~2 more). */
        if (out_el < 0) return -1;
        flops = (ct_node_attr_int(n, "training_mode", 0) ? 4 : 2) * out_el;
        break;
    case CT_OP_MAX_POOL:
    case CT_OP_AVERAGE_POOL: {
        int k = 0;
        const int64_t *ks = ct_node_attr_ints(n, "kernel_shape", &k);
        if (out_el < 0) return -1;
        int64_t win = 1;
        for (int i = 0; i < k; i++) win = mul_sat(win, ks[i]);
        flops = mul_sat(out_el, win);
        break;
    }
    case CT_OP_GLOBAL_AVERAGE_POOL:
    case CT_OP_GLOBAL_MAX_POOL:
    case CT_OP_REDUCE_MEAN:
    case CT_OP_REDUCE_SUM:
    case CT_OP_REDUCE_MAX:
    case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD:
    case CT_OP_ARG_MAX:
        flops = in_el;
        break;
    case CT_OP_REDUCE_L2:
        flops = in_el < 0 ? -1 : 2 * in_el;
        break;
    case CT_OP_SOFTMAX:
    case CT_OP_LOG_SOFTMAX:
        flops = in_el < 0 ? -1 : 3 * in_el; /* exp, sum, divide */
        break;
    /* elementwise: one per output element */
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH:
    case CT_OP_LEAKY_RELU: case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP: case CT_OP_LOG: case CT_OP_ERF:
    case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT: case CT_OP_CLIP:
    case CT_OP_ADD: case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW:
    case CT_OP_EQUAL: case CT_OP_LESS: case CT_OP_GREATER: case CT_OP_AND: case CT_OP_OR:
    case CT_OP_WHERE:
        flops = out_el;
        break;
    case CT_OP_MAX: case CT_OP_MIN: case CT_OP_SUM:
        flops = out_el < 0 ? -1 : mul_sat(out_el, n->n_in > 1 ? n->n_in - 1 : 1);
        break;
    default:
        /* data movement, shape computation, casts, identity: no arithmetic */
        flops = 0;
        break;
    }
    if (macs_out) *macs_out = macs;
    return flops;
}

void ct_dump_stats_compute(const ct_graph *g, ct_dump_stats *s)
{
    memset(s, 0, sizeof *s);
    s->node_flops = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *s->node_flops);
    s->node_macs = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *s->node_macs);
    CT_ASSERT(s->node_flops && s->node_macs);
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        if ((unsigned)n->op < CT_OP_COUNT) s->op_count[n->op]++;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] && n->in[k]->shape_known) value_numel(n->in[k], &s->per_sample);
        int64_t macs = 0, fl = ct_dump_node_flops(n, &macs);
        s->node_flops[i] = fl;
        s->node_macs[i] = macs;
        if (fl < 0) {
            s->n_unknown_flops++;
            continue;
        }
        s->flops += fl;
        s->macs += macs;
    }
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        bool sym = false;
        int64_t el = value_numel(v, &sym);
        int64_t bytes = el < 0 ? 0 : el * (int64_t)ct_dtype_size(v->dtype);
        if (el < 0) el = 0;
        switch (v->kind) {
        case CT_VALUE_PARAM:
            s->n_param_tensors++;
            s->param_elems += el;
            s->param_bytes += bytes;
            break;
        case CT_VALUE_STATE:
            s->n_state_tensors++;
            s->state_elems += el;
            s->state_bytes += bytes;
            break;
        case CT_VALUE_CONST:
            s->n_const_tensors++;
            s->const_elems += el;
            s->const_bytes += bytes;
            break;
        case CT_VALUE_TEMP:
            s->n_temp++;
            s->activation_bytes += bytes;
            if (sym) s->per_sample = true;
            break;
        case CT_VALUE_INPUT:
            if (sym) s->per_sample = true;
            break;
        }
    }
}

void ct_dump_stats_free(ct_dump_stats *s)
{
    free(s->node_flops);
    free(s->node_macs);
    s->node_flops = s->node_macs = NULL;
}

/* ---------------------------------------------------------------- attributes */

static void print_float(FILE *f, float x)
{
    fprintf(f, "%.6g", (double)x);
}

static void print_ints_joined(FILE *f, const int64_t *v, int n, const char *sep)
{
    for (int i = 0; i < n; i++) fprintf(f, "%s%" PRId64, i ? sep : "", v[i]);
}

/* Compact attributes: k=3x3 s=2 p=1,1,1,1 g=32 d=2, others as name=value. */
static void attrs_compact_print(FILE *f, const ct_node *n)
{
    bool first = true;
    for (int i = 0; i < n->n_attr; i++) {
        const ct_attr *a = &n->attrs[i];
        const char *nm = a->name;
        const char *shortnm = NULL, *sep = ",";
        if (!strcmp(nm, "kernel_shape")) shortnm = "k", sep = "x";
        else if (!strcmp(nm, "strides")) shortnm = "s";
        else if (!strcmp(nm, "pads")) shortnm = "p";
        else if (!strcmp(nm, "dilations")) shortnm = "d";
        else if (!strcmp(nm, "group")) shortnm = "g";
        else if (!strcmp(nm, "epsilon")) shortnm = "eps";
        /* defaults that add nothing */
        if (a->type == CT_ATTR_INTS && (!strcmp(nm, "strides") || !strcmp(nm, "dilations"))) {
            bool ones = true;
            for (int k = 0; k < a->n; k++) ones = ones && a->ints[k] == 1;
            if (ones) continue;
        }
        if (a->type == CT_ATTR_INTS && !strcmp(nm, "pads")) {
            bool zeros = true;
            for (int k = 0; k < a->n; k++) zeros = zeros && a->ints[k] == 0;
            if (zeros) continue;
        }
        if (a->type == CT_ATTR_INT && !strcmp(nm, "group") && a->i == 1) continue;
        if (a->type == CT_ATTR_INT && a->i == 0 &&
            (!strcmp(nm, "ceil_mode") || !strcmp(nm, "transA") || !strcmp(nm, "transB")))
            continue;
        if (a->type == CT_ATTR_FLOAT && a->f == 1.0f && (!strcmp(nm, "alpha") || !strcmp(nm, "beta")) &&
            n->op == CT_OP_GEMM)
            continue;
        fprintf(f, "%s%s=", first ? "" : " ", shortnm ? shortnm : nm);
        first = false;
        switch (a->type) {
        case CT_ATTR_INT: fprintf(f, "%" PRId64, a->i); break;
        case CT_ATTR_FLOAT: print_float(f, a->f); break;
        case CT_ATTR_STRING: fprintf(f, "%s", a->s ? a->s : ""); break;
        case CT_ATTR_INTS:
            /* uniform strides/dilations print once: s=2 */
            if (a->n > 1 && (!strcmp(nm, "strides") || !strcmp(nm, "dilations"))) {
                bool same = true;
                for (int k = 1; k < a->n; k++) same = same && a->ints[k] == a->ints[0];
                if (same) {
                    fprintf(f, "%" PRId64, a->ints[0]);
                    break;
                }
            }
            print_ints_joined(f, a->ints, a->n, sep);
            break;
        case CT_ATTR_FLOATS:
            for (int k = 0; k < a->n; k++) {
                if (k) fputc(',', f);
                print_float(f, a->floats[k]);
            }
            break;
        case CT_ATTR_STRINGS:
            for (int k = 0; k < a->n; k++) fprintf(f, "%s%s", k ? "," : "", a->strings[k]);
            break;
        case CT_ATTR_TENSOR: {
            char buf[160] = "tensor";
            if (a->t) typed_shape_text(a->t, false, buf, sizeof buf);
            fprintf(f, "%s", buf);
            break;
        }
        default: fprintf(f, "?"); break;
        }
    }
}

/* ---------------------------------------------------------------- table */

static void op_summary_print(FILE *f, const ct_graph *g)
{
    int count[CT_OP_COUNT] = {0};
    for (int i = 0; i < g->n_nodes; i++)
        if ((unsigned)g->nodes[i]->op < CT_OP_COUNT) count[g->nodes[i]->op]++;
    fprintf(f, "ops:      ");
    int col = 10, printed = 0;
    for (;;) { /* by count, largest first; ties in op-table order */
        int best = -1;
        for (int op = 0; op < CT_OP_COUNT; op++)
            if (count[op] > 0 && (best < 0 || count[op] > count[best])) best = op;
        if (best < 0) break;
        char item[80];
        int w = snprintf(item, sizeof item, "%s%s x%d", printed ? ", " : "", ct_op_table[best].name, count[best]);
        if (col + w > 100) {
            fprintf(f, ",\n          ");
            col = 10;
            w = snprintf(item, sizeof item, "%s x%d", ct_op_table[best].name, count[best]);
        }
        fputs(item, f);
        col += w;
        printed++;
        count[best] = 0;
    }
    fprintf(f, printed ? "\n" : "(none)\n");
}

static void io_print(FILE *f, const char *label, ct_value *const *vals, int n)
{
    for (int i = 0; i < n; i++) {
        char sh[160];
        typed_shape_text(vals[i], false, sh, sizeof sh);
        fprintf(f, "%-10s%s %s\n", i ? "" : label, vals[i]->name, sh);
    }
    if (!n) fprintf(f, "%-10s(none)\n", label);
}

static void stats_print(FILE *f, const ct_dump_stats *s)
{
    char a[48], b[48], c[48];
    fprintf(f, "params:   %s trainable in %" PRId64 " tensors (%s)\n", group_digits(s->param_elems, a, sizeof a),
            s->n_param_tensors, human_bytes((double)s->param_bytes, b, sizeof b));
    fprintf(f, "state:    %s in %" PRId64 " tensors (%s; BatchNorm statistics and other non-trained state)\n",
            group_digits(s->state_elems, a, sizeof a), s->n_state_tensors,
            human_bytes((double)s->state_bytes, b, sizeof b));
    fprintf(f, "consts:   %s in %" PRId64 " tensors (%s)\n", group_digits(s->const_elems, a, sizeof a),
            s->n_const_tensors, human_bytes((double)s->const_bytes, b, sizeof b));
    fprintf(f, "compute:  %s (%s multiply-adds; a multiply-add counts as 2 FLOPs)%s\n",
            human((double)s->flops, "FLOPs", a, sizeof a), human((double)s->macs, "", c, sizeof c),
            s->per_sample ? ", per sample (batch N taken as 1)" : "");
    if (s->n_unknown_flops) fprintf(f, "          %d nodes not counted (shapes unknown)\n", s->n_unknown_flops);
    fprintf(f, "activations: %s in %" PRId64 " intermediate values%s\n",
            human_bytes((double)s->activation_bytes, b, sizeof b), s->n_temp,
            s->per_sample ? " (per sample)" : "");
}

/* Inputs of a node as shown in the table: activation shapes, weights of
 * rank >= 2 as p[...], and the remaining persistent inputs as counts. */
static void node_inputs_text(const ct_node *n, char *buf, size_t len)
{
    size_t k = 0;
    int n_param = 0, n_state = 0, n_const = 0;
    buf[0] = 0;
    for (int i = 0; i < n->n_in && k < len; i++) {
        const ct_value *v = n->in[i];
        char sh[160];
        if (!v) continue;
        if (is_persistent(v) && !(v->kind == CT_VALUE_PARAM && v->shape_known && v->shape.rank >= 2)) {
            if (v->kind == CT_VALUE_PARAM) n_param++;
            else if (v->kind == CT_VALUE_STATE) n_state++;
            else n_const++;
            continue;
        }
        typed_shape_text(v, true, sh, sizeof sh);
        k += (size_t)snprintf(buf + k, len - k, "%s%s%s", k ? " " : "", v->kind == CT_VALUE_PARAM ? "p" : "", sh);
    }
    if (n_param && k < len) k += (size_t)snprintf(buf + k, len - k, "%s+%dp", k ? " " : "", n_param);
    if (n_state && k < len) k += (size_t)snprintf(buf + k, len - k, "%s+%ds", k ? " " : "", n_state);
    if (n_const && k < len) k += (size_t)snprintf(buf + k, len - k, "%s+%dc", k ? " " : "", n_const);
}

static void node_outputs_text(const ct_node *n, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n->n_out && k < len; i++) {
        char sh[160];
        if (!n->out[i]) continue;
        typed_shape_text(n->out[i], true, sh, sizeof sh);
        k += (size_t)snprintf(buf + k, len - k, "%s%s", k ? " " : "", sh);
    }
}

/* Short names for every node: the path shortened with the op type dropped;
 * where two nodes would share one, the op type stays (features.0.2/Sigmoid
 * and features.0.2/Mul); where they still clash, the full name. Returns a
 * malloc'd array of malloc'd strings. */
static char **short_names_make(const ct_graph *g)
{
    size_t nn = g->n_nodes > 0 ? (size_t)g->n_nodes : 1;
    char **sn = calloc(nn, sizeof *sn);
    char **base = calloc(nn, sizeof *base);
    bool *clash = calloc(nn, sizeof *clash);
    CT_ASSERT(sn && base && clash);
    for (int i = 0; i < g->n_nodes; i++) {
        const char *full = g->nodes[i]->name ? g->nodes[i]->name : "";
        size_t n = strlen(full) + 1;
        sn[i] = malloc(n);
        base[i] = malloc(n);
        CT_ASSERT(sn[i] && base[i]);
        name_shorten(full, ct_op_table[g->nodes[i]->op].name, sn[i], n);
        name_shorten(full, NULL, base[i], n);
    }
    for (int round = 0; round < 2; round++) {
        /* quadratic, fine for the thousands of nodes of real models */
        for (int i = 0; i < g->n_nodes; i++) {
            clash[i] = false;
            for (int j = 0; j < g->n_nodes && !clash[i]; j++)
                clash[i] = j != i && sn[i][0] && !strcmp(sn[i], sn[j]) && strcmp(g->nodes[i]->name, g->nodes[j]->name);
        }
        for (int i = 0; i < g->n_nodes; i++) {
            if (!clash[i]) continue;
            free(sn[i]);
            sn[i] = strdup(round == 0 ? base[i] : g->nodes[i]->name);
            CT_ASSERT(sn[i]);
        }
    }
    for (int i = 0; i < g->n_nodes; i++) free(base[i]);
    free(base);
    free(clash);
    return sn;
}

static void short_names_free(char **sn, int n)
{
    for (int i = 0; i < n; i++) free(sn[i]);
    free(sn);
}

void ct_dump_table_print(FILE *f, const ct_graph *g, const ct_dump_stats *stats)
{
    char a[48], b[48];
    int n_kind[5] = {0};
    for (int i = 0; i < g->n_values; i++)
        if ((unsigned)g->values[i]->kind < 5) n_kind[g->values[i]->kind]++;

    fprintf(f, "model:    %s\n", g->name && *g->name ? g->name : "(unnamed)");
    if (g->source_path) fprintf(f, "file:     %s\n", g->source_path);
    fprintf(f, "producer: %s%s%s, ir_version %" PRId64 ", opset %d\n",
            g->producer_name && *g->producer_name ? g->producer_name : "(unknown)",
            g->producer_version && *g->producer_version ? " " : "",
            g->producer_version ? g->producer_version : "", g->ir_version, g->opset);
    fprintf(f, "graph:    %d nodes, %d values (%d input, %d param, %d state, %d const, %d temp)",
            g->n_nodes, g->n_values, n_kind[CT_VALUE_INPUT], n_kind[CT_VALUE_PARAM], n_kind[CT_VALUE_STATE],
            n_kind[CT_VALUE_CONST], n_kind[CT_VALUE_TEMP]);
    if (g->batch > 0) fprintf(f, ", batch %" PRId64, g->batch);
    fputc('\n', f);
    io_print(f, "inputs:", g->inputs, g->n_inputs);
    io_print(f, "outputs:", g->outputs, g->n_outputs);
    if (stats) {
        stats_print(f, stats);
    } else {
        int64_t pe = 0, pb = 0;
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i]->kind == CT_VALUE_PARAM) {
                int64_t el = value_numel(g->values[i], NULL);
                if (el > 0) pe += el, pb += el * (int64_t)ct_dtype_size(g->values[i]->dtype);
            }
        fprintf(f, "params:   %s trainable (%s)\n", group_digits(pe, a, sizeof a), human_bytes((double)pb, b, sizeof b));
    }
    op_summary_print(f, g);

    /* one line per node */
    char **sn = short_names_make(g);
    int w_op = 2, w_name = 4;
    for (int i = 0; i < g->n_nodes; i++) {
        int lo = (int)strlen(ct_op_table[g->nodes[i]->op].name);
        int ln = (int)strlen(sn[i]);
        if (g->nodes[i]->fused_from) lo += 2;
        if (lo > w_op) w_op = lo;
        if (ln > w_name) w_name = ln;
    }
    if (w_name > 44) w_name = 44; /* longer names overflow their column */
    int w_idx = g->n_nodes >= 1000 ? 4 : 3;
    /* the shapes column: padded to the widest line, up to a limit */
    size_t n_io = g->n_nodes > 0 ? (size_t)g->n_nodes : 1;
    char **io = calloc(n_io, sizeof *io);
    CT_ASSERT(io);
    int w_io = 17;
    for (int i = 0; i < g->n_nodes; i++) {
        char ins[512], outs[256];
        node_inputs_text(g->nodes[i], ins, sizeof ins);
        node_outputs_text(g->nodes[i], outs, sizeof outs);
        size_t len = strlen(ins) + strlen(outs) + 5;
        io[i] = malloc(len);
        CT_ASSERT(io[i]);
        snprintf(io[i], len, "%s -> %s", ins, outs);
        if ((int)strlen(io[i]) > w_io) w_io = (int)strlen(io[i]);
    }
    if (w_io > 64) w_io = 64;
    fprintf(f, "\n%*s  %-*s  %-*s  %-*s", w_idx, "#", w_op, "op", w_name, "name", w_io, "inputs -> outputs");
    if (stats) fprintf(f, "  %9s", "FLOPs");
    fprintf(f, "  attributes\n");
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        fprintf(f, "%*d  %-*s  %-*s  %-*s", w_idx, i, w_op, ct_op_table[n->op].name, w_name, sn[i],
                (n->n_attr || stats || n->fused_from) ? w_io : 0, io[i]);
        if (stats) {
            if (stats->node_flops[i] > 0) human((double)stats->node_flops[i], "", a, sizeof a);
            else snprintf(a, sizeof a, "%s", stats->node_flops[i] < 0 ? "?" : "-");
            fprintf(f, "  %9s", a);
        }
        if (n->n_attr) {
            fputs("  ", f);
            attrs_compact_print(f, n);
        }
        if (n->fused_from) fprintf(f, "  (fused: %s)", n->fused_from);
        fputc('\n', f);
        free(io[i]);
    }
    free(io);
    short_names_free(sn, g->n_nodes);

    /* memory plan */
    bool planned = false;
    for (int i = 0; i < g->n_values && !planned; i++) planned = g->values[i]->offset >= 0;
    if (planned) {
        int64_t naive = 0;
        for (int i = 0; i < g->n_values; i++)
            if (g->values[i]->kind == CT_VALUE_TEMP) naive += (int64_t)ct_value_nbytes(g->values[i]);
        char c[48];
        fprintf(f, "\nmemory plan: arena peak %s (%s bytes); naive sum of intermediates %s",
                human_bytes((double)g->arena_bytes, a, sizeof a), group_digits(g->arena_bytes, b, sizeof b),
                human_bytes((double)naive, c, sizeof c));
        if (naive > 0) fprintf(f, ", %.1f%%", 100.0 * (double)g->arena_bytes / (double)naive);
        fputc('\n', f);
        fprintf(f, "%12s  %10s  %-9s  %s\n", "offset", "bytes", "live", "value");
        for (int i = 0; i < g->n_values; i++) {
            const ct_value *v = g->values[i];
            char sh[160], live[32];
            if (v->offset < 0) continue;
            typed_shape_text(v, false, sh, sizeof sh);
            snprintf(live, sizeof live, "%d..%d", v->first_use, v->last_use);
            fprintf(f, "%12" PRId64 "  %10zu  %-9s  %s %s\n", v->offset, ct_value_nbytes(v), live, v->name, sh);
        }
    }
}

/* ---------------------------------------------------------------- JSON */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

static void json_float(FILE *f, double x)
{
    if (isnan(x)) fputs("\"nan\"", f);
    else if (isinf(x)) fputs(x > 0 ? "\"inf\"" : "\"-inf\"", f);
    else fprintf(f, "%.9g", x);
}

static void json_shape(FILE *f, const ct_value *v)
{
    if (!v->shape_known) {
        fputs("null", f);
        return;
    }
    fputc('[', f);
    for (int i = 0; i < v->shape.rank; i++) {
        if (i) fputc(',', f);
        if (v->shape.dims[i] == CT_DIM_BATCH) fputs("\"N\"", f);
        else fprintf(f, "%" PRId64, v->shape.dims[i]);
    }
    fputc(']', f);
}

static void json_io(FILE *f, ct_value *const *vals, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%s{\"name\":", i ? "," : "");
        json_str(f, vals[i]->name);
        fputs(",\"dtype\":", f);
        json_str(f, ct_dtype_name(vals[i]->dtype));
        fputs(",\"shape\":", f);
        json_shape(f, vals[i]);
        fputc('}', f);
    }
    fputc(']', f);
}

static void json_attr(FILE *f, const ct_attr *a)
{
    switch (a->type) {
    case CT_ATTR_INT: fprintf(f, "%" PRId64, a->i); break;
    case CT_ATTR_FLOAT: json_float(f, a->f); break;
    case CT_ATTR_STRING: json_str(f, a->s); break;
    case CT_ATTR_INTS:
        fputc('[', f);
        print_ints_joined(f, a->ints, a->n, ",");
        fputc(']', f);
        break;
    case CT_ATTR_FLOATS:
        fputc('[', f);
        for (int k = 0; k < a->n; k++) {
            if (k) fputc(',', f);
            json_float(f, a->floats[k]);
        }
        fputc(']', f);
        break;
    case CT_ATTR_STRINGS:
        fputc('[', f);
        for (int k = 0; k < a->n; k++) {
            if (k) fputc(',', f);
            json_str(f, a->strings[k]);
        }
        fputc(']', f);
        break;
    case CT_ATTR_TENSOR:
        if (!a->t) {
            fputs("null", f);
            break;
        }
        fputs("{\"dtype\":", f);
        json_str(f, ct_dtype_name(a->t->dtype));
        fputs(",\"shape\":", f);
        json_shape(f, a->t);
        fputc('}', f);
        break;
    default: fputs("null", f); break;
    }
}

static void json_stats(FILE *f, const ct_dump_stats *s)
{
    fprintf(f, "{\"params\":%" PRId64 ",\"param_tensors\":%" PRId64 ",\"param_bytes\":%" PRId64, s->param_elems,
            s->n_param_tensors, s->param_bytes);
    fprintf(f, ",\"state\":%" PRId64 ",\"state_tensors\":%" PRId64 ",\"state_bytes\":%" PRId64, s->state_elems,
            s->n_state_tensors, s->state_bytes);
    fprintf(f, ",\"consts\":%" PRId64 ",\"const_tensors\":%" PRId64 ",\"const_bytes\":%" PRId64, s->const_elems,
            s->n_const_tensors, s->const_bytes);
    fprintf(f, ",\"flops\":%" PRId64 ",\"macs\":%" PRId64 ",\"unknown_flops_nodes\":%d", s->flops, s->macs,
            s->n_unknown_flops);
    fprintf(f, ",\"activation_bytes\":%" PRId64 ",\"temps\":%" PRId64 ",\"per_sample\":%s", s->activation_bytes,
            s->n_temp, s->per_sample ? "true" : "false");
    fputs(",\"op_counts\":{", f);
    bool first = true;
    for (int op = 0; op < CT_OP_COUNT; op++) {
        if (!s->op_count[op]) continue;
        if (!first) fputc(',', f);
        first = false;
        json_str(f, ct_op_table[op].name);
        fprintf(f, ":%d", s->op_count[op]);
    }
    fputs("}}", f);
}

void ct_dump_json_print(FILE *f, const ct_graph *g, const ct_dump_stats *stats)
{
    fputs("{\"name\":", f);
    json_str(f, g->name);
    fputs(",\"producer\":", f);
    json_str(f, g->producer_name);
    fputs(",\"producer_version\":", f);
    json_str(f, g->producer_version);
    fprintf(f, ",\"opset\":%d,\"ir_version\":%" PRId64 ",\"batch\":", g->opset, g->ir_version);
    if (g->batch > 0) fprintf(f, "%" PRId64, g->batch);
    else fputs("null", f);
    fputs(",\n\"inputs\":", f);
    json_io(f, g->inputs, g->n_inputs);
    fputs(",\n\"outputs\":", f);
    json_io(f, g->outputs, g->n_outputs);
    if (g->arena_bytes >= 0) fprintf(f, ",\n\"arena_bytes\":%" PRId64, g->arena_bytes);
    fputs(",\n\"values\":[", f);
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        fprintf(f, "%s\n{\"name\":", i ? "," : "");
        json_str(f, v->name);
        fputs(",\"kind\":", f);
        json_str(f, ct_value_kind_name(v->kind));
        fputs(",\"dtype\":", f);
        json_str(f, ct_dtype_name(v->dtype));
        fputs(",\"shape\":", f);
        json_shape(f, v);
        if (v->frozen) fputs(",\"frozen\":true", f);
        if (v->offset >= 0)
            fprintf(f, ",\"offset\":%" PRId64 ",\"first_use\":%d,\"last_use\":%d", v->offset, v->first_use, v->last_use);
        fputc('}', f);
    }
    fputs("],\n\"nodes\":[", f);
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        fprintf(f, "%s\n{\"index\":%d,\"name\":", i ? "," : "", i);
        json_str(f, n->name);
        fputs(",\"op\":", f);
        json_str(f, ct_op_table[n->op].name);
        fputs(",\"domain\":", f);
        json_str(f, ct_op_table[n->op].domain);
        fputs(",\"inputs\":[", f);
        for (int k = 0; k < n->n_in; k++) {
            if (k) fputc(',', f);
            if (n->in[k]) json_str(f, n->in[k]->name);
            else fputs("null", f);
        }
        fputs("],\"outputs\":[", f);
        for (int k = 0; k < n->n_out; k++) {
            if (k) fputc(',', f);
            if (n->out[k]) json_str(f, n->out[k]->name);
            else fputs("null", f);
        }
        fputs("],\"attrs\":{", f);
        for (int k = 0; k < n->n_attr; k++) {
            if (k) fputc(',', f);
            json_str(f, n->attrs[k].name);
            fputc(':', f);
            json_attr(f, &n->attrs[k]);
        }
        fputc('}', f);
        if (n->fused_from) {
            fputs(",\"fused_from\":", f);
            json_str(f, n->fused_from);
        }
        int64_t macs = 0, fl = stats ? stats->node_flops[i] : ct_dump_node_flops(n, &macs);
        if (stats) macs = stats->node_macs[i];
        if (fl >= 0) fprintf(f, ",\"flops\":%" PRId64 ",\"macs\":%" PRId64, fl, macs);
        else fputs(",\"flops\":null,\"macs\":null", f);
        fputc('}', f);
    }
    fputs("]", f);
    if (stats) {
        fputs(",\n\"stats\":", f);
        json_stats(f, stats);
    }
    fputs("}\n", f);
}

/* ---------------------------------------------------------------- dot */

static void dot_str(FILE *f, const char *s)
{
    for (const char *p = s ? s : ""; *p; p++) {
        if (*p == '"' || *p == '\\') fputc('\\', f);
        if (*p == '\n') {
            fputs("\\n", f);
            continue;
        }
        fputc(*p, f);
    }
}

void ct_dump_dot_print(FILE *f, const ct_graph *g)
{
    char sh[200];
    char **sn = short_names_make(g);
    fputs("digraph contra {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eef3fb\", "
          "fontname=\"Helvetica\", fontsize=10];\n  edge [fontname=\"Helvetica\", fontsize=8];\n  label=\"",
          f);
    dot_str(f, g->name && *g->name ? g->name : "graph");
    fputs("\";\n", f);
    for (int i = 0; i < g->n_inputs; i++) {
        typed_shape_text(g->inputs[i], false, sh, sizeof sh);
        fprintf(f, "  in%d [shape=ellipse, fillcolor=\"#dff0d8\", label=\"", i);
        dot_str(f, g->inputs[i]->name);
        fputs("\\n", f);
        dot_str(f, sh);
        fputs("\"];\n", f);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        fprintf(f, "  n%d [label=\"", i);
        dot_str(f, ct_op_table[n->op].name);
        if (sn[i][0]) {
            fputs("\\n", f);
            dot_str(f, sn[i]);
        }
        /* persistent inputs as one compact line, not one box per weight:
         * weights by shape, the rest counted (+2p +2s) */
        int np = 0, ns = 0, nc = 0;
        bool line = false;
        for (int k = 0; k < n->n_in; k++) {
            const ct_value *v = n->in[k];
            if (!v || !is_persistent(v)) continue;
            if (v->kind == CT_VALUE_PARAM && v->shape_known && v->shape.rank >= 2) {
                typed_shape_text(v, true, sh, sizeof sh);
                fputs(line ? " " : "\\n", f);
                fputc('p', f);
                dot_str(f, sh);
                line = true;
            } else if (v->kind == CT_VALUE_PARAM) np++;
            else if (v->kind == CT_VALUE_STATE) ns++;
            else nc++;
        }
        if (np) fprintf(f, "%s+%dp", line ? " " : "\\n", np), line = true;
        if (ns) fprintf(f, "%s+%ds", line ? " " : "\\n", ns), line = true;
        if (nc) fprintf(f, "%s+%dc", line ? " " : "\\n", nc), line = true;
        fputs("\"", f);
        if (n->op == CT_OP_CONV || n->op == CT_OP_FUSED_CONV || n->op == CT_OP_GEMM || n->op == CT_OP_MATMUL)
            fputs(", fillcolor=\"#fde2c8\"", f);
        fputs("];\n", f);
    }
    /* edges: producer (node or graph input) to consumer, labelled dtype+shape */
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        for (int k = 0; k < n->n_in; k++) {
            const ct_value *v = n->in[k];
            if (!v || is_persistent(v)) continue;
            typed_shape_text(v, false, sh, sizeof sh);
            if (v->producer) {
                fprintf(f, "  n%d -> n%d [label=\"", v->producer->id, i);
            } else {
                int gi = -1;
                for (int j = 0; j < g->n_inputs; j++)
                    if (g->inputs[j] == v) gi = j;
                if (gi < 0) continue;
                fprintf(f, "  in%d -> n%d [label=\"", gi, i);
            }
            dot_str(f, sh);
            fputs("\"];\n", f);
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        typed_shape_text(v, false, sh, sizeof sh);
        fprintf(f, "  out%d [shape=ellipse, fillcolor=\"#f2dede\", label=\"", i);
        dot_str(f, v->name);
        fputs("\"];\n", f);
        if (v->producer) {
            fprintf(f, "  n%d -> out%d [label=\"", v->producer->id, i);
        } else {
            int gi = -1;
            for (int j = 0; j < g->n_inputs; j++)
                if (g->inputs[j] == v) gi = j;
            if (gi < 0) continue;
            fprintf(f, "  in%d -> out%d [label=\"", gi, i);
        }
        dot_str(f, sh);
        fputs("\"];\n", f);
    }
    fputs("}\n", f);
    short_names_free(sn, g->n_nodes);
}

/* ---------------------------------------------------------------- batch */

ct_status ct_cli_batch_set(ct_graph *g, int64_t batch, const char *label)
{
    const ct_value *fixed = NULL;
    for (int i = 0; i < g->n_inputs; i++) {
        const ct_value *v = g->inputs[i];
        for (int d = 0; d < v->shape.rank; d++)
            if (v->shape.dims[d] == CT_DIM_BATCH) {
                ct_graph_set_batch(g, batch);
                return CT_OK;
            }
        if (!fixed && v->shape_known && v->shape.rank > 0) fixed = v;
    }
    if (!fixed || fixed->shape.dims[0] == batch) return CT_OK;
    char sh[160];
    typed_shape_text(fixed, false, sh, sizeof sh);
    return ct_errorf("%s: --batch %" PRId64 ": the model has no symbolic batch dimension (input '%s' is %s); "
                     "export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes=...)) "
                     "or leave out --batch",
                     label, batch, fixed->name, sh);
}


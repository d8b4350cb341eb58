/* normalize.c — shared by the ONNX protobuf and text parsers: makes a freshly
 * parsed graph uniform (ONNX-NOTES.md §1, §2, §5): Constant nodes become
 * CONST values, Identity of an initializer becomes its own copy, initializers
 * get their kinds, and op-version differences take their newest form. */
#include "frontend.h"

#include <string.h>

typedef struct {
    ct_graph *g;
    const char *label;
    bool *dead;   /* dead[node->id]: removed at the end */
    int cap_dead;
} norm_ctx;

static void node_kill(norm_ctx *c, ct_node *n)
{
    if (n->id >= c->cap_dead) {
        int cap = c->cap_dead ? c->cap_dead : 64;
        while (cap <= n->id) cap *= 2;
        bool *d = realloc(c->dead, (size_t)cap);
        if (!d) abort();
        memset(d + c->cap_dead, 0, (size_t)(cap - c->cap_dead));
        c->dead = d;
        c->cap_dead = cap;
    }
    c->dead[n->id] = true;
    for (int j = 0; j < n->n_out; j++)
        if (n->out[j] && n->out[j]->producer == n) n->out[j]->producer = NULL;
}

static bool node_dead(const norm_ctx *c, const ct_node *n) { return n->id < c->cap_dead && c->dead[n->id]; }

static ct_value *node_in(const ct_node *n, int i) { return i < n->n_in ? n->in[i] : NULL; }

static bool is_initializer(const ct_value *v)
{
    return v && v->data && !v->producer &&
           (v->kind == CT_VALUE_PARAM || v->kind == CT_VALUE_STATE || v->kind == CT_VALUE_CONST);
}

static const char *node_label(norm_ctx *c, const ct_node *n)
{
    const char *op = ct_op_table[n->op].name;
    if (n->name && n->name[0]) return ct_arena_printf(&c->g->arena, "node '%s' (%s)", n->name, op);
    if (n->n_out && n->out[0]) return ct_arena_printf(&c->g->arena, "node (%s, output '%s')", op, n->out[0]->name);
    return ct_arena_printf(&c->g->arena, "node (%s)", op);
}

/* Set input idx, growing the input list with omitted (NULL) inputs. */
static void node_set_input(ct_graph *g, ct_node *n, int idx, ct_value *v)
{
    if (idx >= n->n_in) {
        ct_value **in = ct_arena_alloc(&g->arena, sizeof(ct_value *) * (size_t)(idx + 1));
        if (n->n_in) memcpy(in, n->in, sizeof(ct_value *) * (size_t)n->n_in);
        n->in = in;
        n->n_in = idx + 1;
    }
    n->in[idx] = v;
}

static ct_value *const_i64(norm_ctx *c, const ct_node *n, const char *suffix, const int64_t *v, int count)
{
    ct_arena *ar = &c->g->arena;
    const char *base = ct_arena_printf(ar, "%s_%s", n->name && n->name[0] ? n->name : ct_op_table[n->op].name, suffix);
    ct_shape s = {.rank = 1, .dims = {count}};
    return ct_graph_add_tensor(c->g, ct_graph_unique_name(c->g, base), CT_VALUE_CONST, CT_I64, &s, v);
}

static ct_value *const_f32_scalar(norm_ctx *c, const ct_node *n, const char *suffix, float v)
{
    ct_arena *ar = &c->g->arena;
    const char *base = ct_arena_printf(ar, "%s_%s", n->name && n->name[0] ? n->name : ct_op_table[n->op].name, suffix);
    ct_shape s = {.rank = 0};
    return ct_graph_add_tensor(c->g, ct_graph_unique_name(c->g, base), CT_VALUE_CONST, CT_F32, &s, &v);
}

/* ---------------------------------------------------------------- Constant and Identity */

/* A Constant node becomes a CONST value carrying the node's output name. */
static ct_status normalize_constant(norm_ctx *c, ct_node *n)
{
    ct_value *out = n->n_out ? n->out[0] : NULL;
    node_kill(c, n);
    if (!out) return CT_OK;
    ct_arena *ar = &c->g->arena;
    const ct_attr *a = NULL;
    static const char *const forms[] = {"value", "value_float", "value_floats", "value_int", "value_ints"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0] && !a; i++) a = ct_node_attr(n, forms[i]);
    if (!a || n->n_attr != 1)
        return ct_errorf("%s needs exactly one of value, value_float, value_floats, value_int, value_ints",
                         node_label(c, n));
    ct_shape s = {0};
    ct_dtype dt;
    const void *src;
    int64_t one_i;
    float one_f;
    switch (a->type) {
    case CT_ATTR_TENSOR:
        if (!a->t || (!a->t->data && ct_value_nbytes(a->t))) return ct_errorf("%s has no tensor data", node_label(c, n));
        s = a->t->shape;
        dt = a->t->dtype;
        src = a->t->data;
        break;
    case CT_ATTR_FLOAT: one_f = a->f; dt = CT_F32; src = &one_f; break;
    case CT_ATTR_INT: one_i = a->i; dt = CT_I64; src = &one_i; break;
    case CT_ATTR_FLOATS: s.rank = 1; s.dims[0] = a->n; dt = CT_F32; src = a->floats; break;
    case CT_ATTR_INTS: s.rank = 1; s.dims[0] = a->n; dt = CT_I64; src = a->ints; break;
    default: return ct_errorf("%s attribute '%s' has the wrong type", node_label(c, n), a->name);
    }
    out->kind = CT_VALUE_CONST;
    out->dtype = dt;
    out->shape = s;
    out->shape_known = true;
    out->producer = NULL;
    size_t nb = ct_value_nbytes(out);
    out->data = ct_arena_alloc(ar, nb);
    if (nb && src) memcpy(out->data, src, nb);
    return CT_OK;
}

/* Identity of an initializer: its output becomes a copy of the initializer
 * (ONNX-NOTES.md §1), so tied-by-accident tensors become independent. */
static bool normalize_identity_of_initializer(norm_ctx *c, ct_node *n)
{
    ct_value *src = node_in(n, 0);
    ct_value *out = n->n_out ? n->out[0] : NULL;
    if (!is_initializer(src) || !out) return false;
    node_kill(c, n);
    out->kind = src->kind;
    out->dtype = src->dtype;
    out->shape = src->shape;
    out->shape_known = true;
    out->producer = NULL;
    size_t nb = ct_value_nbytes(src);
    out->data = ct_arena_alloc(&c->g->arena, nb);
    if (nb) memcpy(out->data, src->data, nb);
    return true;
}

/* ---------------------------------------------------------------- attributes to inputs */

/* An INTS attribute (axes, split, pads, starts...) becomes CONST int64 input idx. */
static ct_status ints_attr_to_input(norm_ctx *c, ct_node *n, const char *attr, int idx)
{
    const ct_attr *a = ct_node_attr(n, attr);
    if (!a) return CT_OK;
    if (a->type != CT_ATTR_INTS) return ct_errorf("%s attribute '%s' must be ints", node_label(c, n), attr);
    if (node_in(n, idx))
        return ct_errorf("%s gives '%s' both as an attribute and as input %d", node_label(c, n), attr, idx);
    ct_value *v = const_i64(c, n, attr, a->ints, a->n);
    ct_node_remove_attr(n, attr);
    node_set_input(c->g, n, idx, v);
    return CT_OK;
}

/* A FLOAT attribute (Clip min/max, Pad value) becomes a CONST float scalar input. */
static ct_status float_attr_to_input(norm_ctx *c, ct_node *n, const char *attr, int idx)
{
    const ct_attr *a = ct_node_attr(n, attr);
    if (!a) return CT_OK;
    if (a->type != CT_ATTR_FLOAT) return ct_errorf("%s attribute '%s' must be a float", node_label(c, n), attr);
    if (node_in(n, idx))
        return ct_errorf("%s gives '%s' both as an attribute and as input %d", node_label(c, n), attr, idx);
    ct_value *v = const_f32_scalar(c, n, attr, a->f);
    ct_node_remove_attr(n, attr);
    node_set_input(c->g, n, idx, v);
    return CT_OK;
}

static ct_status normalize_clip(norm_ctx *c, ct_node *n)
{
    CT_TRY(float_attr_to_input(c, n, "min", 1));
    return float_attr_to_input(c, n, "max", 2);
}

static ct_status normalize_pad(norm_ctx *c, ct_node *n)
{
    CT_TRY(ints_attr_to_input(c, n, "pads", 1));
    return float_attr_to_input(c, n, "value", 2);
}

static ct_status normalize_slice(norm_ctx *c, ct_node *n)
{
    bool has_attrs = ct_node_attr(n, "starts") || ct_node_attr(n, "ends");
    if (has_attrs && (!ct_node_attr(n, "starts") || !ct_node_attr(n, "ends")))
        return ct_errorf("%s needs both 'starts' and 'ends'", node_label(c, n));
    CT_TRY(ints_attr_to_input(c, n, "starts", 1));
    CT_TRY(ints_attr_to_input(c, n, "ends", 2));
    return ints_attr_to_input(c, n, "axes", 3);
}

static ct_status normalize_dropout(norm_ctx *c, ct_node *n)
{
    (void)c;
    ct_node_remove_attr(n, "ratio"); /* inference: Dropout is the identity */
    return CT_OK;
}

/* ---------------------------------------------------------------- Softmax, BatchNorm */

/* Before opset 13, Softmax/LogSoftmax(axis) coerce the input to 2-D
 * [prod(d<axis), prod(d>=axis)]: made explicit as Flatten, Softmax(axis=1), Reshape. */
static ct_status normalize_legacy_softmax(norm_ctx *c, ct_node *n)
{
    ct_graph *g = c->g;
    ct_value *x = node_in(n, 0), *y = n->n_out ? n->out[0] : NULL;
    if (!x || !y) return CT_OK;
    int64_t axis = ct_node_attr_int(n, "axis", 1);
    /* On a 2-D input with axis 1 both semantics agree; this is also what the
     * rewrite itself leaves behind, so normalising twice changes nothing. */
    if (axis == 1 && x->producer && x->producer->op == CT_OP_FLATTEN) return CT_OK;
    const char *base = n->name && n->name[0] ? n->name : ct_op_table[n->op].name;
    ct_arena *ar = &g->arena;
    ct_value *s = ct_graph_add_value(g, ct_graph_unique_name(g, ct_arena_printf(ar, "%s_shape", base)),
                                     CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *f = ct_graph_add_value(g, ct_graph_unique_name(g, ct_arena_printf(ar, "%s_2d", base)),
                                     CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *y2 = ct_graph_add_value(g, ct_graph_unique_name(g, ct_arena_printf(ar, "%s_out2d", base)),
                                      CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_graph_add_node(g, CT_OP_SHAPE, ct_arena_printf(ar, "%s/Shape", base), 1, &x, 1, &s);
    ct_node *fl = ct_graph_add_node(g, CT_OP_FLATTEN, ct_arena_printf(ar, "%s/Flatten", base), 1, &x, 1, &f);
    ct_node_set_int(g, fl, "axis", axis);
    n->in[0] = f;
    n->out[0] = y2;
    y2->producer = n;
    ct_node_set_int(g, n, "axis", 1);
    ct_value *rin[2] = {y2, s};
    ct_graph_add_node(g, CT_OP_RESHAPE, ct_arena_printf(ar, "%s/Reshape", base), 2, rin, 1, &y);
    return CT_OK;
}

/* Before opset 14, BatchNormalization in training mode is the form with
 * extra outputs (running mean, running var, saved mean, saved var): it
 * becomes the opset-14 form, training_mode=1 with Y and the running
 * statistics; outputs nothing reads are dropped (reading the saved batch
 * statistics is an error). */
static ct_status normalize_batch_norm(norm_ctx *c, ct_node *n)
{
    const ct_attr *sp = ct_node_attr(n, "spatial");
    if (sp) {
        if (sp->type != CT_ATTR_INT || sp->i != 1)
            return ct_errorf("%s has spatial=0 (per-activation BatchNorm is not supported)", node_label(c, n));
        ct_node_remove_attr(n, "spatial");
    }
    if (c->g->opset >= 14 || n->n_out <= 1) return CT_OK;
    for (int j = 3; j < n->n_out; j++) {
        ct_value *v = n->out[j];
        if (v && ct_graph_use_count(c->g, v) > 0)
            return ct_errorf("%s output %d '%s' (the saved batch statistics of opset %d training mode) is read by "
                             "the graph: not supported",
                             node_label(c, n), j, v->name, c->g->opset);
    }
    /* Unread outputs go (the exporter lists them again where an opset needs them). */
    int keep = 1;
    for (int j = 1; j < n->n_out; j++) {
        ct_value *v = n->out[j];
        if (j < 3 && v && ct_graph_use_count(c->g, v) > 0) {
            keep = j + 1;
            continue;
        }
        if (v && v->producer == n) v->producer = NULL;
        n->out[j] = NULL;
    }
    n->n_out = keep;
    ct_node_set_int(c->g, n, "training_mode", 1);
    return CT_OK;
}

/* ---------------------------------------------------------------- kinds of initializers */

/* Inputs that only describe shapes, axes or bounds: an initializer read only
 * there is a constant, never a trainable parameter. */
static bool slot_is_shape_like(ct_op op, int idx)
{
    switch (op) {
    case CT_OP_RESHAPE: case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE: case CT_OP_SPLIT: case CT_OP_EXPAND:
    case CT_OP_TILE: case CT_OP_GATHER:
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_SUM: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2:
        return idx == 1;
    case CT_OP_CLIP: case CT_OP_DROPOUT: return idx == 1 || idx == 2;
    case CT_OP_PAD: case CT_OP_SLICE: return idx >= 1;
    case CT_OP_CONSTANT_OF_SHAPE: case CT_OP_RANGE: return true;
    default: return false;
    }
}

/* An initializer read both as a BatchNorm statistic and as something
 * trainable: the statistic uses get their own copy, so a running mean is
 * never tied to a weight (ONNX-NOTES.md §1). */
static void untie_state_uses(norm_ctx *c, ct_value *v)
{
    ct_graph *g = c->g;
    ct_value *copy = NULL;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (node_dead(c, n) || n->op != CT_OP_BATCH_NORM) continue;
        for (int j = 3; j <= 4 && j < n->n_in; j++) {
            if (n->in[j] != v) continue;
            if (!copy) {
                const char *name = ct_graph_unique_name(g, ct_arena_printf(&g->arena, "%s_state", v->name));
                copy = ct_graph_add_tensor(g, name, CT_VALUE_STATE, v->dtype, &v->shape, v->data);
            }
            n->in[j] = copy;
        }
    }
}

/* Initializers arrive as PARAM: non-float ones and those read only as
 * shape-like inputs become CONST, BatchNorm running statistics STATE. */
static void classify_initializers(norm_ctx *c)
{
    ct_graph *g = c->g;
    enum { USE_TRAIN = 1, USE_STATE = 2, USE_SHAPE = 4 };
    unsigned char *use = calloc((size_t)g->n_values + 1, 1);
    if (!use) abort();
    for (int i = 0; i < g->n_values; i++) g->values[i]->id = i;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (node_dead(c, n)) continue;
        for (int j = 0; j < n->n_in; j++) {
            ct_value *v = n->in[j];
            if (!v) continue;
            if (n->op == CT_OP_BATCH_NORM && (j == 3 || j == 4)) use[v->id] |= USE_STATE;
            else if (slot_is_shape_like(n->op, j)) use[v->id] |= USE_SHAPE;
            else use[v->id] |= USE_TRAIN;
        }
    }
    int n_values = g->n_values; /* untie_state_uses appends values */
    for (int i = 0; i < n_values; i++) {
        ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_PARAM || !is_initializer(v)) continue;
        if (!ct_dtype_is_float(v->dtype)) v->kind = CT_VALUE_CONST;
        else if ((use[i] & USE_STATE) && (use[i] & USE_TRAIN)) untie_state_uses(c, v);
        else if (use[i] & USE_STATE) v->kind = CT_VALUE_STATE;
        else if (use[i] == USE_SHAPE) v->kind = CT_VALUE_CONST;
    }
    free(use);
}

/* ---------------------------------------------------------------- driver */

static ct_status normalize_node(norm_ctx *c, ct_node *n)
{
    switch (n->op) {
    case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE:
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_SUM: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN:
    case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2:
        return ints_attr_to_input(c, n, "axes", 1);
    case CT_OP_SPLIT: return ints_attr_to_input(c, n, "split", 1);
    case CT_OP_CLIP: return normalize_clip(c, n);
    case CT_OP_PAD: return normalize_pad(c, n);
    case CT_OP_SLICE: return normalize_slice(c, n);
    case CT_OP_DROPOUT: return normalize_dropout(c, n);
    case CT_OP_BATCH_NORM: return normalize_batch_norm(c, n);
    case CT_OP_SOFTMAX: case CT_OP_LOG_SOFTMAX:
        return c->g->opset < 13 ? normalize_legacy_softmax(c, n) : CT_OK;
    default: return CT_OK;
    }
}

ct_status ct_frontend_normalize(ct_graph *g, const char *label)
{
    norm_ctx c = {.g = g, .label = label ? label : "<graph>"};
    ct_status st = CT_OK;
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->id = i;
    int n0 = g->n_nodes;
    for (int i = 0; i < n0 && !st; i++)
        if (g->nodes[i]->op == CT_OP_CONSTANT) st = normalize_constant(&c, g->nodes[i]);
    /* Identity chains: repeat until nothing changes. */
    for (bool changed = true; changed && !st;) {
        changed = false;
        for (int i = 0; i < n0; i++) {
            ct_node *n = g->nodes[i];
            if (n->op == CT_OP_IDENTITY && !node_dead(&c, n) && normalize_identity_of_initializer(&c, n))
                changed = true;
        }
    }
    for (int i = 0; i < n0 && !st; i++)
        if (!node_dead(&c, g->nodes[i])) st = normalize_node(&c, g->nodes[i]);
    if (!st) {
        classify_initializers(&c);
        bool *keep = malloc((size_t)g->n_nodes + 1);
        if (!keep) abort();
        for (int i = 0; i < g->n_nodes; i++) keep[i] = !node_dead(&c, g->nodes[i]);
        ct_graph_compact(g, keep);
        free(keep);
    }
    free(c.dead);
    if (st) st = ct_status_wrap(st, "%s", c.label);
    return st;
}

/* ir.c — arena, dtypes, shapes, values, nodes, attributes and graphs. */
#include "ir.h"

#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

/* ---------------------------------------------------------------- arena */

struct ct_arena_block {
    ct_arena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

#define CT_ARENA_BLOCK (64 * 1024)

void *ct_arena_alloc(ct_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    ct_arena_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > CT_ARENA_BLOCK / 4 ? n : CT_ARENA_BLOCK;
        b = malloc(sizeof *b + cap);
        if (!b) {
            fprintf(stderr, "contra: out of memory (arena block of %zu bytes)\n", cap);
            abort();
        }
        b->cap = cap;
        b->used = 0;
        if (a->head && cap != CT_ARENA_BLOCK) {
            /* Large dedicated block: keep the current small block in front. */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += n;
    a->bytes += n;
    memset(p, 0, n);
    return p;
}

char *ct_arena_strndup(ct_arena *a, const char *s, size_t n)
{
    if (!s) return NULL;
    char *d = ct_arena_alloc(a, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ct_arena_strdup(ct_arena *a, const char *s)
{
    return s ? ct_arena_strndup(a, s, strlen(s)) : NULL;
}

char *ct_arena_printf(ct_arena *a, const char *fmt, ...)
{
    va_list ap, ap2;
    if (!fmt) return ct_arena_strdup(a, "");
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *d = ct_arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
    vsnprintf(d, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return d;
}

void ct_arena_free(ct_arena *a)
{
    ct_arena_block *b = a->head;
    while (b) {
        ct_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->bytes = 0;
}

/* ---------------------------------------------------------------- dtypes */

static const struct {
    const char *name;
    size_t size;
    int onnx;
} dtype_info[CT_DTYPE_COUNT] = {
    [CT_DTYPE_UNDEFINED] = {"undefined", 0, 0},
    [CT_F32] = {"float", 4, 1},
    [CT_F16] = {"float16", 2, 10},
    [CT_BF16] = {"bfloat16", 2, 16},
    [CT_F64] = {"double", 8, 11},
    [CT_I64] = {"int64", 8, 7},
    [CT_I32] = {"int32", 4, 6},
    [CT_I8] = {"int8", 1, 3},
    [CT_U8] = {"uint8", 1, 2},
    [CT_BOOL] = {"bool", 1, 9},
};

size_t ct_dtype_size(ct_dtype t) { return (unsigned)t < CT_DTYPE_COUNT ? dtype_info[t].size : 0; }
const char *ct_dtype_name(ct_dtype t)
{
    return (unsigned)t < CT_DTYPE_COUNT ? dtype_info[t].name : "undefined";
}
int ct_dtype_to_onnx(ct_dtype t) { return (unsigned)t < CT_DTYPE_COUNT ? dtype_info[t].onnx : 0; }

ct_dtype ct_dtype_from_onnx(int onnx_type)
{
    for (int t = 1; t < CT_DTYPE_COUNT; t++)
        if (dtype_info[t].onnx == onnx_type) return (ct_dtype)t;
    return CT_DTYPE_UNDEFINED;
}

ct_dtype ct_dtype_from_name(const char *name)
{
    if (!name) return CT_DTYPE_UNDEFINED;
    for (int t = 1; t < CT_DTYPE_COUNT; t++)
        if (!strcmp(dtype_info[t].name, name)) return (ct_dtype)t;
    if (!strcmp(name, "float32")) return CT_F32;
    if (!strcmp(name, "float64")) return CT_F64;
    return CT_DTYPE_UNDEFINED;
}

bool ct_dtype_is_float(ct_dtype t) { return t == CT_F32 || t == CT_F16 || t == CT_BF16 || t == CT_F64; }

/* ---------------------------------------------------------------- shapes */

int64_t ct_shape_numel(const ct_shape *s)
{
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        int64_t d = s->dims[i];
        if (d < 0) return -1;
        if (d != 0 && n > INT64_MAX / d) return -1;
        n *= d;
    }
    return n;
}

bool ct_shape_equal(const ct_shape *a, const ct_shape *b)
{
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dims[i] != b->dims[i]) return false;
    return true;
}

bool ct_shape_is_static(const ct_shape *s)
{
    for (int i = 0; i < s->rank; i++)
        if (s->dims[i] < 0) return false;
    return true;
}

char *ct_shape_str(const ct_shape *s, char *buf, size_t n)
{
    size_t k = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < s->rank && k < n; i++) {
        if (s->dims[i] == CT_DIM_BATCH)
            k += (size_t)snprintf(buf + k, n - k, "%sN", i ? "," : "");
        else
            k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? "," : "", s->dims[i]);
    }
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---------------------------------------------------------------- values */

const char *ct_value_kind_name(ct_value_kind k)
{
    switch (k) {
    case CT_VALUE_INPUT: return "input";
    case CT_VALUE_PARAM: return "param";
    case CT_VALUE_STATE: return "state";
    case CT_VALUE_CONST: return "const";
    case CT_VALUE_TEMP: return "temp";
    }
    return "?";
}

size_t ct_value_nbytes(const ct_value *v)
{
    int64_t n = ct_shape_numel(&v->shape);
    if (n < 0) return 0;
    size_t es = ct_dtype_size(v->dtype);
    if (es && (uint64_t)n > SIZE_MAX / es) return 0;
    return (size_t)n * es;
}

/* ---------------------------------------------------------------- attributes */

const char *ct_attr_type_name(ct_attr_type t)
{
    switch (t) {
    case CT_ATTR_INT: return "int";
    case CT_ATTR_FLOAT: return "float";
    case CT_ATTR_STRING: return "string";
    case CT_ATTR_INTS: return "ints";
    case CT_ATTR_FLOATS: return "floats";
    case CT_ATTR_STRINGS: return "strings";
    case CT_ATTR_TENSOR: return "tensor";
    case CT_ATTR_UNDEFINED: break;
    }
    return "undefined";
}

ct_status ct_node_errorf(const ct_node *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ct_status st = ct_verrorf(fmt, ap);
    va_end(ap);
    return ct_status_wrap(st, "node '%s' (%s)", n->name, ct_op_table[n->op].name);
}

const ct_attr *ct_node_attr(const ct_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++)
        if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
    return NULL;
}

int64_t ct_node_attr_int(const ct_node *n, const char *name, int64_t dflt)
{
    const ct_attr *a = ct_node_attr(n, name);
    return a && a->type == CT_ATTR_INT ? a->i : dflt;
}

float ct_node_attr_float(const ct_node *n, const char *name, float dflt)
{
    const ct_attr *a = ct_node_attr(n, name);
    return a && a->type == CT_ATTR_FLOAT ? a->f : dflt;
}

const char *ct_node_attr_string(const ct_node *n, const char *name, const char *dflt)
{
    const ct_attr *a = ct_node_attr(n, name);
    return a && a->type == CT_ATTR_STRING ? a->s : dflt;
}

const int64_t *ct_node_attr_ints(const ct_node *n, const char *name, int *count)
{
    const ct_attr *a = ct_node_attr(n, name);
    if (!a || a->type != CT_ATTR_INTS) {
        *count = 0;
        return NULL;
    }
    *count = a->n;
    return a->ints;
}

const float *ct_node_attr_floats(const ct_node *n, const char *name, int *count)
{
    const ct_attr *a = ct_node_attr(n, name);
    if (!a || a->type != CT_ATTR_FLOATS) {
        *count = 0;
        return NULL;
    }
    *count = a->n;
    return a->floats;
}

void ct_node_add_attr(ct_graph *g, ct_node *n, const ct_attr *a)
{
    for (int i = 0; i < n->n_attr; i++) {
        if (!strcmp(n->attrs[i].name, a->name)) {
            n->attrs[i] = *a;
            return;
        }
    }
    ct_attr *na = ct_arena_alloc(&g->arena, sizeof(ct_attr) * (size_t)(n->n_attr + 1));
    if (n->n_attr) memcpy(na, n->attrs, sizeof(ct_attr) * (size_t)n->n_attr);
    na[n->n_attr++] = *a;
    n->attrs = na;
}

void ct_node_set_int(ct_graph *g, ct_node *n, const char *name, int64_t v)
{
    ct_attr a = {.name = ct_arena_strdup(&g->arena, name), .type = CT_ATTR_INT, .i = v};
    ct_node_add_attr(g, n, &a);
}

void ct_node_set_float(ct_graph *g, ct_node *n, const char *name, float v)
{
    ct_attr a = {.name = ct_arena_strdup(&g->arena, name), .type = CT_ATTR_FLOAT, .f = v};
    ct_node_add_attr(g, n, &a);
}

void ct_node_set_string(ct_graph *g, ct_node *n, const char *name, const char *v)
{
    ct_attr a = {.name = ct_arena_strdup(&g->arena, name), .type = CT_ATTR_STRING,
                 .s = ct_arena_strdup(&g->arena, v)};
    ct_node_add_attr(g, n, &a);
}

void ct_node_set_ints(ct_graph *g, ct_node *n, const char *name, const int64_t *v, int count)
{
    ct_attr a = {.name = ct_arena_strdup(&g->arena, name), .type = CT_ATTR_INTS, .n = count};
    a.ints = ct_arena_alloc(&g->arena, sizeof(int64_t) * (size_t)(count ? count : 1));
    if (count) memcpy(a.ints, v, sizeof(int64_t) * (size_t)count);
    ct_node_add_attr(g, n, &a);
}

void ct_node_set_floats(ct_graph *g, ct_node *n, const char *name, const float *v, int count)
{
    ct_attr a = {.name = ct_arena_strdup(&g->arena, name), .type = CT_ATTR_FLOATS, .n = count};
    a.floats = ct_arena_alloc(&g->arena, sizeof(float) * (size_t)(count ? count : 1));
    if (count) memcpy(a.floats, v, sizeof(float) * (size_t)count);
    ct_node_add_attr(g, n, &a);
}

void ct_node_remove_attr(ct_node *n, const char *name)
{
    for (int i = 0; i < n->n_attr; i++) {
        if (!strcmp(n->attrs[i].name, name)) {
            memmove(&n->attrs[i], &n->attrs[i + 1], sizeof(ct_attr) * (size_t)(n->n_attr - i - 1));
            n->n_attr--;
            return;
        }
    }
}

/* ---------------------------------------------------------------- op table */

const ct_op_info ct_op_table[CT_OP_COUNT] = {
#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    [CT_OP_##id] = {onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs},
#include "ops.def"
#undef CT_OP
};

ct_op ct_op_lookup(const char *domain, const char *op_type)
{
    if (!domain || !strcmp(domain, "ai.onnx")) domain = "";
    for (int i = 0; i < CT_OP_COUNT; i++)
        if (!strcmp(ct_op_table[i].name, op_type) && !strcmp(ct_op_table[i].domain, domain))
            return (ct_op)i;
    return CT_OP_COUNT;
}

ct_attr_type ct_op_attr_type(ct_op op, const char *name)
{
    const char *s = ct_op_table[op].attrs;
    size_t len = strlen(name);
    while (*s) {
        while (*s == ' ') s++;
        const char *colon = strchr(s, ':');
        if (!colon) break;
        const char *end = colon;
        while (*end && *end != ' ') end++;
        if ((size_t)(colon - s) == len && !strncmp(s, name, len)) {
            size_t tl = (size_t)(end - colon - 1);
            static const struct {
                const char *n;
                ct_attr_type t;
            } types[] = {{"int", CT_ATTR_INT},       {"float", CT_ATTR_FLOAT},
                         {"string", CT_ATTR_STRING}, {"ints", CT_ATTR_INTS},
                         {"floats", CT_ATTR_FLOATS}, {"strings", CT_ATTR_STRINGS},
                         {"tensor", CT_ATTR_TENSOR}};
            for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
                if (strlen(types[i].n) == tl && !strncmp(types[i].n, colon + 1, tl)) return types[i].t;
            return CT_ATTR_UNDEFINED;
        }
        s = end;
    }
    return CT_ATTR_UNDEFINED;
}

/* ---------------------------------------------------------------- graphs */

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            int nc_ = (cap) ? 2 * (cap) : 16;                                                      \
            void *p_ = realloc((arr), sizeof(*(arr)) * (size_t)nc_);                               \
            if (!p_) {                                                                             \
                fprintf(stderr, "contra: out of memory growing a graph\n");                        \
                abort();                                                                           \
            }                                                                                      \
            (arr) = p_;                                                                            \
            (cap) = nc_;                                                                           \
        }                                                                                          \
    } while (0)

ct_graph *ct_graph_new(const char *name)
{
    ct_graph *g = calloc(1, sizeof *g);
    if (!g) abort();
    g->name = ct_arena_strdup(&g->arena, name ? name : "main");
    g->ir_version = 8;
    g->opset = 17;
    g->arena_bytes = -1;
    return g;
}

void ct_graph_free(ct_graph *g)
{
    if (!g) return;
    free(g->values);
    free(g->nodes);
    free(g->inputs);
    free(g->outputs);
    free(g->assigns);
    ct_arena_free(&g->arena);
    free(g);
}

ct_value *ct_graph_find_value(const ct_graph *g, const char *name)
{
    if (!name) return NULL;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->name && !strcmp(g->values[i]->name, name)) return g->values[i];
    return NULL;
}

const char *ct_graph_unique_name(ct_graph *g, const char *prefix)
{
    if (!ct_graph_find_value(g, prefix)) return ct_arena_strdup(&g->arena, prefix);
    for (int i = 1;; i++) {
        char *s = ct_arena_printf(&g->arena, "%s_%d", prefix, i);
        if (!ct_graph_find_value(g, s)) return s;
    }
}

ct_value *ct_graph_add_value(ct_graph *g, const char *name, ct_value_kind kind, ct_dtype dtype,
                             const ct_shape *shape)
{
    ct_value *v = ct_arena_alloc(&g->arena, sizeof *v);
    v->name = ct_arena_strdup(&g->arena, name);
    v->kind = kind;
    v->dtype = dtype;
    if (shape) {
        v->shape = *shape;
        v->shape_known = true;
    }
    v->offset = -1;
    v->first_use = v->last_use = -1;
    GROW(g->values, g->n_values, g->cap_values);
    v->id = g->n_values;
    g->values[g->n_values++] = v;
    return v;
}

ct_value *ct_graph_add_tensor(ct_graph *g, const char *name, ct_value_kind kind, ct_dtype dtype,
                              const ct_shape *shape, const void *data)
{
    ct_value *v = ct_graph_add_value(g, name, kind, dtype, shape);
    size_t nb = ct_value_nbytes(v);
    v->data = ct_arena_alloc(&g->arena, nb);
    if (data && nb) memcpy(v->data, data, nb);
    return v;
}

ct_node *ct_graph_add_node(ct_graph *g, ct_op op, const char *name, int n_in, ct_value *const *in,
                           int n_out, ct_value *const *out)
{
    ct_node *n = ct_arena_alloc(&g->arena, sizeof *n);
    n->op = op;
    n->name = ct_arena_strdup(&g->arena, name ? name : "");
    n->n_in = n_in;
    n->n_out = n_out;
    n->in = ct_arena_alloc(&g->arena, sizeof(ct_value *) * (size_t)(n_in ? n_in : 1));
    n->out = ct_arena_alloc(&g->arena, sizeof(ct_value *) * (size_t)(n_out ? n_out : 1));
    if (n_in) memcpy(n->in, in, sizeof(ct_value *) * (size_t)n_in);
    if (n_out) memcpy(n->out, out, sizeof(ct_value *) * (size_t)n_out);
    for (int i = 0; i < n_out; i++)
        if (n->out[i]) n->out[i]->producer = n;
    GROW(g->nodes, g->n_nodes, g->cap_nodes);
    n->id = g->n_nodes;
    g->nodes[g->n_nodes++] = n;
    return n;
}

void ct_graph_add_input(ct_graph *g, ct_value *v)
{
    GROW(g->inputs, g->n_inputs, g->cap_inputs);
    g->inputs[g->n_inputs++] = v;
}

void ct_graph_add_output(ct_graph *g, ct_value *v)
{
    GROW(g->outputs, g->n_outputs, g->cap_outputs);
    g->outputs[g->n_outputs++] = v;
}

void ct_graph_add_assign(ct_graph *g, ct_value *dst, ct_value *src)
{
    GROW(g->assigns, g->n_assigns, g->cap_assigns);
    g->assigns[g->n_assigns++] = (ct_assign){dst, src};
}

bool ct_graph_assign_in_place(const ct_graph *g, int i)
{
    const ct_value *dst = g->assigns[i].dst, *src = g->assigns[i].src;
    if (src->kind != CT_VALUE_TEMP || !src->producer) return false;
    if (dst->kind != CT_VALUE_PARAM && dst->kind != CT_VALUE_STATE) return false;
    if (dst->dtype != src->dtype || ct_value_nbytes(dst) != ct_value_nbytes(src)) return false;
    for (int j = 0; j < g->n_assigns; j++)
        if (j != i && g->assigns[j].src == src) return false;
    for (int k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == dst) return false;
    int pos = -1;
    for (int k = 0; k < g->n_nodes && pos < 0; k++)
        if (g->nodes[k] == src->producer) pos = k;
    for (int k = pos + 1; k < g->n_nodes; k++)
        for (int a = 0; a < g->nodes[k]->n_in; a++)
            if (g->nodes[k]->in[a] == dst) return false;
    return pos >= 0;
}

void ct_graph_replace_uses(ct_graph *g, ct_value *from, ct_value *to)
{
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == from) n->in[j] = to;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == from) g->outputs[i] = to;
    for (int i = 0; i < g->n_assigns; i++)
        if (g->assigns[i].src == from) g->assigns[i].src = to;
}

int ct_graph_use_count(const ct_graph *g, const ct_value *v)
{
    int c = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] == v) c++;
    }
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) c++;
    for (int i = 0; i < g->n_assigns; i++)
        if (g->assigns[i].src == v) c++;
    return c;
}

void ct_graph_compact(ct_graph *g, const bool *keep_node)
{
    int k = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (keep_node && !keep_node[i]) {
            for (int j = 0; j < n->n_out; j++)
                if (n->out[j] && n->out[j]->producer == n) n->out[j]->producer = NULL;
            continue;
        }
        n->id = k;
        g->nodes[k++] = n;
    }
    g->n_nodes = k;

    bool *used = calloc((size_t)g->n_values + 1, 1);
    if (!used) abort();
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) used[n->in[j]->id] = true;
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j]) used[n->out[j]->id] = true;
    }
    for (int i = 0; i < g->n_inputs; i++) used[g->inputs[i]->id] = true;
    for (int i = 0; i < g->n_outputs; i++) used[g->outputs[i]->id] = true;
    for (int i = 0; i < g->n_assigns; i++) used[g->assigns[i].dst->id] = used[g->assigns[i].src->id] = true;
    k = 0;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (!used[i]) continue;
        v->id = k;
        g->values[k++] = v;
    }
    g->n_values = k;
    free(used);
}

ct_status ct_graph_toposort(ct_graph *g)
{
    /* Kahn's algorithm, picking the earliest ready node in current order. */
    int n = g->n_nodes;
    ct_status st = CT_OK;
    int *indeg = calloc((size_t)n + 1, sizeof(int));
    int *order = calloc((size_t)n + 1, sizeof(int));
    bool *done = calloc((size_t)n + 1, 1);
    if (!indeg || !order || !done) abort();
    for (int i = 0; i < n; i++) g->nodes[i]->id = i;
    for (int i = 0; i < n; i++) {
        ct_node *nd = g->nodes[i];
        for (int j = 0; j < nd->n_in; j++) {
            ct_value *v = nd->in[j];
            if (v && v->producer && v->producer != nd) indeg[i]++;
            if (v && v->producer == nd) {
                st = ct_errorf("node '%s' (%s) reads its own output '%s': the graph has a cycle",
                               nd->name, ct_op_table[nd->op].name, v->name);
                goto done;
            }
        }
    }
    int k = 0;
    for (int round = 0; k < n; round++) {
        int picked = -1;
        for (int i = 0; i < n; i++)
            if (!done[i] && indeg[i] == 0) {
                picked = i;
                break;
            }
        if (picked < 0) {
            for (int i = 0; i < n; i++)
                if (!done[i]) {
                    st = ct_errorf("the graph has a cycle through node '%s' (%s)", g->nodes[i]->name,
                                   ct_op_table[g->nodes[i]->op].name);
                    goto done;
                }
        }
        /* Release every ready node in order, this round. */
        for (int i = picked; i < n; i++) {
            if (done[i] || indeg[i]) continue;
            done[i] = true;
            order[k++] = i;
            ct_node *nd = g->nodes[i];
            for (int o = 0; o < nd->n_out; o++) {
                ct_value *v = nd->out[o];
                if (!v) continue;
                for (int m = 0; m < n; m++) {
                    ct_node *c = g->nodes[m];
                    for (int j = 0; j < c->n_in; j++)
                        if (c->in[j] == v && c != nd) indeg[m]--;
                }
            }
        }
        (void)round;
    }
    {
        ct_node **sorted = malloc(sizeof(ct_node *) * ((size_t)n + 1));
        if (!sorted) abort();
        for (int i = 0; i < n; i++) sorted[i] = g->nodes[order[i]];
        for (int i = 0; i < n; i++) {
            g->nodes[i] = sorted[i];
            g->nodes[i]->id = i;
        }
        free(sorted);
    }
done:
    free(indeg);
    free(order);
    free(done);
    return st;
}

void ct_graph_set_batch(ct_graph *g, int64_t batch)
{
    g->batch = batch;
    for (int i = 0; i < g->n_inputs; i++) {
        ct_value *v = g->inputs[i];
        for (int d = 0; d < v->shape.rank; d++)
            if (v->shape.dims[d] == CT_DIM_BATCH) v->shape.dims[d] = batch;
    }
}

static ct_value *clone_value(ct_graph *dst, const ct_value *v)
{
    ct_value *c = ct_graph_add_value(dst, v->name, v->kind, v->dtype, v->shape_known ? &v->shape : NULL);
    c->frozen = v->frozen;
    c->offset = v->offset;
    c->first_use = v->first_use;
    c->last_use = v->last_use;
    if (v->data) {
        size_t nb = ct_value_nbytes(v);
        c->data = ct_arena_alloc(&dst->arena, nb);
        memcpy(c->data, v->data, nb);
    }
    return c;
}

ct_graph *ct_graph_clone(const ct_graph *g)
{
    ct_graph *c = ct_graph_new(g->name);
    c->producer_name = ct_arena_strdup(&c->arena, g->producer_name);
    c->producer_version = ct_arena_strdup(&c->arena, g->producer_version);
    c->source_path = ct_arena_strdup(&c->arena, g->source_path);
    c->ir_version = g->ir_version;
    c->opset = g->opset;
    c->batch = g->batch;
    c->arena_bytes = g->arena_bytes;
    for (int i = 0; i < g->n_values; i++) clone_value(c, g->values[i]);
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        ct_value *in[64], *out[64];
        ct_value **pin = n->n_in > 64 ? malloc(sizeof(ct_value *) * (size_t)n->n_in) : in;
        ct_value **pout = n->n_out > 64 ? malloc(sizeof(ct_value *) * (size_t)n->n_out) : out;
        if (!pin || !pout) abort();
        for (int j = 0; j < n->n_in; j++) pin[j] = n->in[j] ? c->values[n->in[j]->id] : NULL;
        for (int j = 0; j < n->n_out; j++) pout[j] = n->out[j] ? c->values[n->out[j]->id] : NULL;
        ct_node *m = ct_graph_add_node(c, n->op, n->name, n->n_in, pin, n->n_out, pout);
        if (pin != in) free(pin);
        if (pout != out) free(pout);
        m->fused_from = ct_arena_strdup(&c->arena, n->fused_from);
        for (int a = 0; a < n->n_attr; a++) {
            const ct_attr *src = &n->attrs[a];
            ct_attr at = *src;
            at.name = ct_arena_strdup(&c->arena, src->name);
            at.s = ct_arena_strdup(&c->arena, src->s);
            if (src->ints) {
                at.ints = ct_arena_alloc(&c->arena, sizeof(int64_t) * (size_t)(src->n ? src->n : 1));
                memcpy(at.ints, src->ints, sizeof(int64_t) * (size_t)src->n);
            }
            if (src->floats) {
                at.floats = ct_arena_alloc(&c->arena, sizeof(float) * (size_t)(src->n ? src->n : 1));
                memcpy(at.floats, src->floats, sizeof(float) * (size_t)src->n);
            }
            if (src->strings) {
                at.strings = ct_arena_alloc(&c->arena, sizeof(char *) * (size_t)(src->n ? src->n : 1));
                for (int s = 0; s < src->n; s++) at.strings[s] = ct_arena_strdup(&c->arena, src->strings[s]);
            }
            if (src->t) {
                /* Attribute tensors are not listed in the graph's values. */
                ct_value *t = ct_arena_alloc(&c->arena, sizeof *t);
                *t = *src->t;
                t->name = ct_arena_strdup(&c->arena, src->t->name);
                size_t nb = ct_value_nbytes(src->t);
                t->data = ct_arena_alloc(&c->arena, nb);
                if (src->t->data) memcpy(t->data, src->t->data, nb);
                at.t = t;
            }
            ct_node_add_attr(c, m, &at);
        }
    }
    for (int i = 0; i < g->n_inputs; i++) ct_graph_add_input(c, c->values[g->inputs[i]->id]);
    for (int i = 0; i < g->n_outputs; i++) ct_graph_add_output(c, c->values[g->outputs[i]->id]);
    for (int i = 0; i < g->n_assigns; i++)
        ct_graph_add_assign(c, c->values[g->assigns[i].dst->id], c->values[g->assigns[i].src->id]);
    return c;
}

int ct_graph_world(const ct_graph *g)
{
    int64_t w = 1;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        if (!n) continue;
        int64_t x = ct_node_attr_int(n, "world", 1);
        if (x > w) w = x;
    }
    return (int)w;
}

/* cse.c — common-subexpression elimination: nodes with the same op, the
 * same attributes (typed values compared exactly) and the same input values
 * are merged, and so are CONST values with identical dtype, shape and bytes.
 * PARAM/STATE values are never merged (ONNX-NOTES.md §1), nor random nodes. */
#include "passes.h"

#include <string.h>

static uint64_t hash_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h;
}

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static bool is_graph_output(const ct_graph *g, const ct_value *v)
{
    for (int i = 0; i < g->n_outputs; i++)
        if (g->outputs[i] == v) return true;
    return false;
}

/* Random or training-mode nodes give a different result on each run. */
static bool is_nondeterministic(const ct_node *n)
{
    if (n->op == CT_OP_DROPOUT) {
        if (n->n_in < 3 || !n->in[2]) return false;
        const ct_value *tm = n->in[2];
        if (tm->kind != CT_VALUE_CONST || !tm->data) return true;
        return ((const unsigned char *)tm->data)[0] != 0;
    }
    return false;
}

static bool tensor_equal(const ct_value *a, const ct_value *b)
{
    if (a == b) return true;
    if (!a || !b || a->dtype != b->dtype || !ct_shape_equal(&a->shape, &b->shape)) return false;
    size_t na = ct_value_nbytes(a);
    if (na == 0) return true;
    if (!a->data || !b->data) return false;
    return memcmp(a->data, b->data, na) == 0;
}

static bool attr_equal(const ct_attr *a, const ct_attr *b)
{
    if (a->type != b->type) return false;
    switch (a->type) {
    case CT_ATTR_INT: return a->i == b->i;
    case CT_ATTR_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case CT_ATTR_STRING: return (a->s && b->s) ? !strcmp(a->s, b->s) : a->s == b->s;
    case CT_ATTR_INTS: return a->n == b->n && (a->n == 0 || !memcmp(a->ints, b->ints, sizeof(int64_t) * (size_t)a->n));
    case CT_ATTR_FLOATS:
        return a->n == b->n && (a->n == 0 || !memcmp(a->floats, b->floats, sizeof(float) * (size_t)a->n));
    case CT_ATTR_STRINGS:
        if (a->n != b->n) return false;
        for (int i = 0; i < a->n; i++)
            if (strcmp(a->strings[i], b->strings[i])) return false;
        return true;
    case CT_ATTR_TENSOR: return tensor_equal(a->t, b->t);
    case CT_ATTR_UNDEFINED: break;
    }
    return false;
}

static bool nodes_equal(const ct_node *a, const ct_node *b)
{
    if (a->op != b->op || a->n_in != b->n_in || a->n_out != b->n_out || a->n_attr != b->n_attr) return false;
    for (int i = 0; i < a->n_in; i++)
        if (a->in[i] != b->in[i]) return false;
    for (int i = 0; i < a->n_attr; i++) {
        const ct_attr *x = ct_node_attr(b, a->attrs[i].name);
        if (!x || !attr_equal(&a->attrs[i], x)) return false;
    }
    return true;
}

static uint64_t node_hash(const ct_node *n)
{
    uint64_t h = hash_mix(1469598103934665603ull, (uint64_t)n->op);
    h = hash_mix(h, (uint64_t)n->n_in);
    for (int i = 0; i < n->n_in; i++) h = hash_mix(h, n->in[i] ? (uint64_t)n->in[i]->id + 1 : 0);
    return h;
}

static uint64_t const_hash(const ct_value *v)
{
    uint64_t h = hash_mix(1469598103934665603ull, (uint64_t)v->dtype);
    h = hash_mix(h, (uint64_t)v->shape.rank);
    for (int i = 0; i < v->shape.rank; i++) h = hash_mix(h, (uint64_t)v->shape.dims[i]);
    return hash_bytes(h, v->data, ct_value_nbytes(v));
}

/* An open-addressing table of indices keyed by a 64-bit hash. */
typedef struct {
    uint64_t *keys;
    int *idx; /* -1 empty */
    size_t cap;
} hash_table;

static void table_init(hash_table *t, int n)
{
    t->cap = 16;
    while (t->cap < (size_t)n * 2 + 2) t->cap *= 2;
    t->keys = calloc(t->cap, sizeof(uint64_t));
    t->idx = malloc(sizeof(int) * t->cap);
    if (!t->keys || !t->idx) abort();
    for (size_t i = 0; i < t->cap; i++) t->idx[i] = -1;
}

static void table_free(hash_table *t)
{
    free(t->keys);
    free(t->idx);
}

/* Merge CONST values with identical contents into the first of them. */
static bool cse_constants(ct_graph *g)
{
    hash_table t;
    table_init(&t, g->n_values);
    bool changed = false;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_CONST || !v->data || !v->shape_known) continue;
        uint64_t h = const_hash(v);
        size_t s = h & (t.cap - 1);
        ct_value *twin = NULL;
        for (; t.idx[s] >= 0; s = (s + 1) & (t.cap - 1)) {
            if (t.keys[s] == h && tensor_equal(g->values[t.idx[s]], v)) {
                twin = g->values[t.idx[s]];
                break;
            }
        }
        if (!twin) {
            t.keys[s] = h;
            t.idx[s] = i;
            continue;
        }
        if (is_graph_output(g, v)) continue; /* keep the output's name */
        ct_graph_replace_uses(g, v, twin);
        changed = true;
    }
    table_free(&t);
    return changed;
}

ct_status ct_pass_cse(ct_graph *g)
{
    for (int i = 0; i < g->n_values; i++) g->values[i]->id = i;
    bool changed = cse_constants(g);
    bool *keep = malloc(sizeof(bool) * ((size_t)g->n_nodes + 1));
    if (!keep) abort();
    /* A state some node updates in place reads differently before and after
     * the update: nodes reading it are never merged. */
    bool *written = calloc((size_t)g->n_values + 1, 1);
    if (!written) abort();
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i]->n_out; j++) {
            const ct_value *v = g->nodes[i]->out[j];
            if (v && v->kind != CT_VALUE_TEMP) written[v->id] = true;
        }
    hash_table t;
    table_init(&t, g->n_nodes);
    /* Topological order: inputs are merged before the nodes that read them. */
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        keep[i] = true;
        if (is_nondeterministic(n)) continue;
        bool reads_updated = false;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j] && written[n->in[j]->id]) reads_updated = true;
        if (reads_updated) continue;
        bool mergeable = true;
        for (int j = 0; j < n->n_out; j++) {
            const ct_value *v = n->out[j];
            if (v && (v->kind != CT_VALUE_TEMP || is_graph_output(g, v))) mergeable = false;
        }
        uint64_t h = node_hash(n);
        size_t s = h & (t.cap - 1);
        ct_node *twin = NULL;
        for (; t.idx[s] >= 0; s = (s + 1) & (t.cap - 1)) {
            if (t.keys[s] == h && nodes_equal(g->nodes[t.idx[s]], n)) {
                twin = g->nodes[t.idx[s]];
                break;
            }
        }
        if (!twin) {
            t.keys[s] = h;
            t.idx[s] = i;
            continue;
        }
        if (!mergeable) continue;
        for (int j = 0; j < n->n_out; j++) {
            ct_value *v = n->out[j];
            if (!v) continue;
            if (twin->out[j]) {
                ct_graph_replace_uses(g, v, twin->out[j]);
            } else {
                /* The twin omitted this optional output: it adopts ours. */
                twin->out[j] = v;
                v->producer = twin;
            }
        }
        keep[i] = false;
        changed = true;
    }
    table_free(&t);
    free(written);
    if (changed) ct_graph_compact(g, keep);
    free(keep);
    return CT_OK;
}

/* verify.c — the IR verifier: structure, arity, attribute types, dangling
 * values, cycles, duplicate names, and dtype/shape consistency where known.
 * Run by the pass manager between passes in debug builds. */
#include "ir.h"

#include <string.h>

static const char *op_name(const ct_node *n) { return ct_op_table[n->op].name; }

/* Simple open-addressing set of strings for duplicate detection. */
typedef struct {
    const char **slots;
    size_t cap;
} name_set;

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Returns false if the name was already present. */
static bool name_set_add(name_set *set, const char *s)
{
    size_t i = hash_str(s) & (set->cap - 1);
    while (set->slots[i]) {
        if (!strcmp(set->slots[i], s)) return false;
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = s;
    return true;
}

ct_status ct_graph_verify(const ct_graph *g)
{
    ct_status st = CT_OK;
    size_t cap = 16;
    while (cap < (size_t)g->n_values * 2 + 2) cap *= 2;
    name_set names = {calloc(cap, sizeof(char *)), cap};
    /* position at which each value becomes available: -1 input/persistent, node id for temps */
    int *avail = malloc(sizeof(int) * (size_t)(g->n_values + 1));
    if (!names.slots || !avail) abort();

    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        if (v->id != i) {
            st = ct_errorf("value '%s' has id %d at position %d", v->name, v->id, i);
            goto done;
        }
        if (!v->name || !v->name[0]) {
            st = ct_errorf("value #%d has no name", i);
            goto done;
        }
        if (!name_set_add(&names, v->name)) {
            st = ct_errorf("duplicate value name '%s'", v->name);
            goto done;
        }
        if (v->dtype <= CT_DTYPE_UNDEFINED || v->dtype >= CT_DTYPE_COUNT) {
            if (v->kind != CT_VALUE_TEMP || v->shape_known) {
                st = ct_errorf("value '%s' has no valid dtype", v->name);
                goto done;
            }
        }
        if (v->shape_known && (v->shape.rank < 0 || v->shape.rank > CT_MAX_RANK)) {
            st = ct_errorf("value '%s' has rank %d (at most %d supported)", v->name, v->shape.rank, CT_MAX_RANK);
            goto done;
        }
        if (v->shape_known)
            for (int d = 0; d < v->shape.rank; d++)
                if (v->shape.dims[d] < 0 && v->shape.dims[d] != CT_DIM_BATCH) {
                    st = ct_errorf("value '%s' has negative dimension %d", v->name, d);
                    goto done;
                }
        bool persistent = v->kind == CT_VALUE_PARAM || v->kind == CT_VALUE_STATE || v->kind == CT_VALUE_CONST;
        if (persistent) {
            if (v->producer && v->kind == CT_VALUE_CONST) {
                st = ct_errorf("constant '%s' is written by node '%s'", v->name, v->producer->name);
                goto done;
            }
            if (!v->data) {
                st = ct_errorf("%s '%s' has no data", ct_value_kind_name(v->kind), v->name);
                goto done;
            }
            if (!v->shape_known || !ct_shape_is_static(&v->shape) || ct_shape_numel(&v->shape) < 0) {
                st = ct_errorf("%s '%s' needs a static shape", ct_value_kind_name(v->kind), v->name);
                goto done;
            }
        }
        if (v->kind == CT_VALUE_TEMP && !v->producer) {
            st = ct_errorf("value '%s' is not produced by any node, nor an input or initializer", v->name);
            goto done;
        }
        if (v->kind == CT_VALUE_INPUT && v->producer) {
            st = ct_errorf("graph input '%s' is also written by node '%s'", v->name, v->producer->name);
            goto done;
        }
        avail[i] = v->kind == CT_VALUE_TEMP ? g->n_nodes + 1 : -1;
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i]->kind != CT_VALUE_INPUT) {
            st = ct_errorf("graph input '%s' has kind %s", g->inputs[i]->name, ct_value_kind_name(g->inputs[i]->kind));
            goto done;
        }

    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        const ct_op_info *info = &ct_op_table[n->op];
        if ((unsigned)n->op >= CT_OP_COUNT) {
            st = ct_errorf("node '%s' has an invalid op", n->name);
            goto done;
        }
        if (n->id != i) {
            st = ct_errorf("node '%s' (%s) has id %d at position %d", n->name, op_name(n), n->id, i);
            goto done;
        }
        if (n->n_in < info->min_in || (info->max_in >= 0 && n->n_in > info->max_in)) {
            st = ct_errorf("node '%s' (%s) has %d inputs, expected %d..%d", n->name, op_name(n), n->n_in,
                           info->min_in, info->max_in);
            goto done;
        }
        if (n->n_out < info->min_out || (info->max_out >= 0 && n->n_out > info->max_out)) {
            st = ct_errorf("node '%s' (%s) has %d outputs, expected %d..%d", n->name, op_name(n), n->n_out,
                           info->min_out, info->max_out);
            goto done;
        }
        for (int j = 0; j < n->n_in; j++) {
            const ct_value *v = n->in[j];
            if (!v) {
                if (j < info->min_in) {
                    st = ct_errorf("node '%s' (%s) lacks required input %d", n->name, op_name(n), j);
                    goto done;
                }
                continue;
            }
            if (v->id < 0 || v->id >= g->n_values || g->values[v->id] != v) {
                st = ct_errorf("node '%s' (%s) input %d is a dangling value '%s'", n->name, op_name(n), j, v->name);
                goto done;
            }
            if (avail[v->id] > i) {
                if (v->producer && v->producer->id >= i)
                    st = ct_errorf("node '%s' (%s) reads '%s' before node '%s' writes it: the order is "
                                   "not topological or the graph has a cycle",
                                   n->name, op_name(n), v->name, v->producer->name);
                else
                    st = ct_errorf("node '%s' (%s) reads '%s', which nothing produces", n->name, op_name(n), v->name);
                goto done;
            }
        }
        for (int j = 0; j < n->n_out; j++) {
            ct_value *v = n->out[j];
            if (!v) continue;
            if (v->id < 0 || v->id >= g->n_values || g->values[v->id] != v) {
                st = ct_errorf("node '%s' (%s) output %d is a dangling value '%s'", n->name, op_name(n), j, v->name);
                goto done;
            }
            if (v->producer != n && v->kind == CT_VALUE_TEMP) {
                st = ct_errorf("value '%s' is written by more than one node ('%s' and '%s')", v->name,
                               v->producer ? v->producer->name : "?", n->name);
                goto done;
            }
            if (v->kind == CT_VALUE_TEMP) avail[v->id] = i;
        }
        for (int a = 0; a < n->n_attr; a++) {
            const ct_attr *at = &n->attrs[a];
            ct_attr_type want = ct_op_attr_type(n->op, at->name);
            if (want == CT_ATTR_UNDEFINED) {
                st = ct_errorf("node '%s' (%s) has unknown attribute '%s'", n->name, op_name(n), at->name);
                goto done;
            }
            if (want != at->type) {
                st = ct_errorf("node '%s' (%s) attribute '%s' is %s, expected %s", n->name, op_name(n), at->name,
                               ct_attr_type_name(at->type), ct_attr_type_name(want));
                goto done;
            }
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        if (v->id < 0 || v->id >= g->n_values || g->values[v->id] != v) {
            st = ct_errorf("graph output %d is a dangling value '%s'", i, v->name);
            goto done;
        }
    }
    for (int i = 0; i < g->n_assigns; i++) {
        const ct_assign *a = &g->assigns[i];
        const ct_value *vs[2] = {a->dst, a->src};
        for (int k = 0; k < 2; k++)
            if (!vs[k] || vs[k]->id < 0 || vs[k]->id >= g->n_values || g->values[vs[k]->id] != vs[k]) {
                st = ct_errorf("state update %d refers to a dangling value", i);
                goto done;
            }
        if (a->dst->kind != CT_VALUE_PARAM && a->dst->kind != CT_VALUE_STATE) {
            st = ct_errorf("state update writes '%s', which is %s, not a parameter or state", a->dst->name,
                           ct_value_kind_name(a->dst->kind));
            goto done;
        }
        if (a->src->dtype != a->dst->dtype ||
            (a->src->shape_known && !ct_shape_equal(&a->src->shape, &a->dst->shape))) {
            st = ct_errorf("state update '%s' <- '%s': dtype or shape differ", a->dst->name, a->src->name);
            goto done;
        }
        for (int j = 0; j < i; j++)
            if (g->assigns[j].dst == a->dst) {
                st = ct_errorf("state '%s' is updated twice", a->dst->name);
                goto done;
            }
    }
done:
    free(names.slots);
    free(avail);
    return st;
}

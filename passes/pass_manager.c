/* pass_manager.c — the registry of named passes with their prerequisites,
 * the runner (verifier between passes, stop after any pass, errors wrapped
 * with the pass name), and ct_infer_node's dispatch table from ir/ops.def. */
#include "passes.h"

#include <string.h>

/* ---------------------------------------------------------------- inference dispatch */

#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    ct_status infer(ct_graph *g, ct_node *n);
#include "ops.def"
#undef CT_OP

typedef ct_status (*ct_infer_fn)(ct_graph *g, ct_node *n);

static const ct_infer_fn infer_table[CT_OP_COUNT] = {
#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad)        \
    [CT_OP_##id] = infer,
#include "ops.def"
#undef CT_OP
};

ct_status ct_infer_node(ct_graph *g, ct_node *n)
{
    CT_ASSERT((unsigned)n->op < CT_OP_COUNT);
    const ct_op_info *info = &ct_op_table[n->op];
    if (n->n_in < info->min_in || (info->max_in >= 0 && n->n_in > info->max_in))
        return ct_errorf("node '%s' (%s): has %d inputs, expected %d..%d", n->name, info->name, n->n_in,
                         info->min_in, info->max_in);
    if (n->n_out < info->min_out || (info->max_out >= 0 && n->n_out > info->max_out))
        return ct_errorf("node '%s' (%s): has %d outputs, expected %d..%d", n->name, info->name, n->n_out,
                         info->min_out, info->max_out);
    for (int i = 0; i < n->n_in; i++) {
        const ct_value *v = n->in[i];
        if (!v) {
            if (i < info->min_in)
                return ct_errorf("node '%s' (%s): required input %d is missing", n->name, info->name, i);
            continue;
        }
        if (!v->shape_known || v->dtype == CT_DTYPE_UNDEFINED)
            return ct_errorf("node '%s' (%s): input %d '%s' has no known shape and dtype (a graph input "
                             "without a declared shape, or a value nothing produces)",
                             n->name, info->name, i, v->name);
    }
    for (int i = 0; i < info->min_out; i++)
        if (!n->out[i]) return ct_errorf("node '%s' (%s): required output %d is missing", n->name, info->name, i);
    /* Persistent outputs (a state updated in place) keep their declared type:
     * what the node computes must match it. */
    ct_shape declared[8];
    ct_dtype declared_t[8];
    bool check[8] = {false};
    for (int i = 0; i < n->n_out && i < 8; i++) {
        const ct_value *v = n->out[i];
        if (v && v->kind != CT_VALUE_TEMP && v->shape_known) {
            check[i] = true;
            declared[i] = v->shape;
            declared_t[i] = v->dtype;
        }
    }
    CT_TRY(infer_table[n->op](g, n));
    for (int i = 0; i < n->n_out; i++) {
        ct_value *v = n->out[i];
        if (!v) continue;
        if (i < 8 && check[i] && (!ct_shape_equal(&declared[i], &v->shape) || declared_t[i] != v->dtype)) {
            char a[160], b[160];
            ct_status st = ct_errorf("node '%s' (%s): writes %s '%s' declared %s%s, but computes %s%s", n->name,
                                     info->name, ct_value_kind_name(v->kind), v->name, ct_dtype_name(declared_t[i]),
                                     ct_shape_str(&declared[i], a, sizeof a), ct_dtype_name(v->dtype),
                                     ct_shape_str(&v->shape, b, sizeof b));
            v->shape = declared[i];
            v->dtype = declared_t[i];
            return st;
        }
        for (int d = 0; d < v->shape.rank; d++)
            if (v->shape.dims[d] < 0 && v->shape.dims[d] != CT_DIM_BATCH)
                return ct_errorf("node '%s' (%s): output '%s' would have a negative dimension", n->name,
                                 info->name, v->name);
        if (ct_shape_is_static(&v->shape) && ct_shape_numel(&v->shape) < 0) {
            char buf[160];
            return ct_errorf("node '%s' (%s): output '%s' has shape %s, whose element count overflows", n->name,
                             info->name, v->name, ct_shape_str(&v->shape, buf, sizeof buf));
        }
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- registry */

const ct_pass_info ct_pass_registry[] = {
    {"infer_shapes", ct_pass_infer_shapes, "",
     "infer every value's dtype and shape, folding shape arithmetic (Shape, Gather, Concat...) on the way"},
    {"fold_constants", ct_pass_fold_constants, "infer_shapes",
     "evaluate nodes whose inputs are all constants into constants (outputs up to 16 MiB)"},
    {"dce", ct_pass_dce, "", "drop nodes whose outputs reach no graph output (nodes writing state stay)"},
    {"cse", ct_pass_cse, "", "merge identical nodes on identical inputs, and identical constants"},
    {"fuse", ct_pass_fuse, "infer_shapes",
     "training graphs: the momentum-encoder EMA into one FusedEMA node, optimizer steps into one multi-tensor node"},
    {"memory_plan", ct_pass_memory_plan, "infer_shapes",
     "liveness and arena offsets of intermediate values, with in-place reuse"},
    {NULL, NULL, NULL, NULL},
};

const char *const ct_default_pipeline[] = {"infer_shapes", "fold_constants", "dce", "cse", NULL};

const ct_pass_info *ct_pass_find(const char *name)
{
    if (!name) return NULL;
    for (const ct_pass_info *p = ct_pass_registry; p->name; p++)
        if (!strcmp(p->name, name)) return p;
    return NULL;
}

static ct_status unknown_pass(const char *name)
{
    char buf[512];
    size_t k = 0;
    buf[0] = 0;
    for (const ct_pass_info *p = ct_pass_registry; p->name && k < sizeof buf; p++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? ", " : "", p->name);
    return ct_errorf("unknown pass '%s' (valid passes: %s)", name, buf);
}

typedef struct {
    const ct_pass_info **list;
    int n, cap;
} pass_list;

static bool pass_list_has(const pass_list *l, const ct_pass_info *p)
{
    for (int i = 0; i < l->n; i++)
        if (l->list[i] == p) return true;
    return false;
}

static void pass_list_push(pass_list *l, const ct_pass_info *p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->list = realloc(l->list, sizeof(*l->list) * (size_t)l->cap);
        if (!l->list) abort();
    }
    l->list[l->n++] = p;
}

/* Append p after its missing prerequisites (depth bounds a cyclic registry). */
static ct_status pass_list_add(pass_list *l, const ct_pass_info *p, int depth)
{
    if (depth > 16) return ct_errorf("pass '%s': prerequisites form a cycle", p->name);
    const char *s = p->requires ? p->requires : "";
    while (*s) {
        while (*s == ' ') s++;
        const char *e = s;
        while (*e && *e != ' ') e++;
        if (e > s) {
            char name[64];
            size_t len = (size_t)(e - s) < sizeof name - 1 ? (size_t)(e - s) : sizeof name - 1;
            memcpy(name, s, len);
            name[len] = 0;
            const ct_pass_info *r = ct_pass_find(name);
            if (!r) return ct_status_wrap(unknown_pass(name), "prerequisite of pass '%s'", p->name);
            if (!pass_list_has(l, r)) CT_TRY(pass_list_add(l, r, depth + 1));
        }
        s = e;
    }
    pass_list_push(l, p);
    return CT_OK;
}

ct_status ct_pass_run(ct_graph *g, const char *const *names, int n, const ct_pass_options *opt)
{
    ct_pass_options dflt = {0};
#ifdef CT_DEBUG
    dflt.verify = true;
#endif
    if (!opt) opt = &dflt;
    ct_status st = CT_OK;
    pass_list l = {0};
    for (int i = 0; i < n; i++) {
        const ct_pass_info *p = ct_pass_find(names[i]);
        if (!p) {
            st = unknown_pass(names[i]);
            goto fail;
        }
        st = pass_list_add(&l, p, 0);
        if (st) goto fail;
    }
    if (opt->stop_after) {
        const ct_pass_info *stop = ct_pass_find(opt->stop_after);
        if (!stop) {
            st = unknown_pass(opt->stop_after);
            goto fail;
        }
        if (!pass_list_has(&l, stop)) {
            char buf[512];
            size_t k = 0;
            buf[0] = 0;
            for (int i = 0; i < l.n && k < sizeof buf; i++)
                k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%s", k ? " " : "", l.list[i]->name);
            st = ct_errorf("pass '%s' is not in the pipeline (%s)", opt->stop_after, buf);
            goto fail;
        }
    }
    for (int i = 0; i < l.n; i++) {
        const ct_pass_info *p = l.list[i];
        if (!p->fn) {
            st = ct_errorf("pass '%s' is not available in this build", p->name);
            goto fail;
        }
        st = p->fn(g);
        if (st) {
            /* Name the model's file too: the message must say where the fault is. */
            if (g->source_path) st = ct_status_wrap(st, "%s: pass %s", g->source_path, p->name);
            else st = ct_status_wrap(st, "pass %s", p->name);
            goto fail;
        }
        if (opt->trace) fprintf(stderr, "contra: pass %-16s %d nodes, %d values\n", p->name, g->n_nodes, g->n_values);
        if (opt->verify) {
            st = ct_graph_verify(g);
            if (st) {
                if (g->source_path) st = ct_status_wrap(st, "%s: verifier after pass %s", g->source_path, p->name);
                else st = ct_status_wrap(st, "verifier after pass %s", p->name);
                goto fail;
            }
        }
        if (opt->stop_after && !strcmp(opt->stop_after, p->name)) break;
    }
fail:
    free(l.list);
    return st;
}

/* ---------------------------------------------------------------- shape inference pass */

/* Ops cheap enough to evaluate during inference when their inputs are
 * constants: the shape arithmetic exporters emit (ONNX-NOTES.md §4). */
static bool is_shape_arith(ct_op op)
{
    switch (op) {
    case CT_OP_SHAPE: case CT_OP_SIZE: case CT_OP_GATHER: case CT_OP_UNSQUEEZE: case CT_OP_SQUEEZE:
    case CT_OP_CONCAT: case CT_OP_CAST: case CT_OP_SLICE: case CT_OP_RESHAPE: case CT_OP_ADD:
    case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_EQUAL: case CT_OP_LESS: case CT_OP_GREATER:
    case CT_OP_WHERE: case CT_OP_CONSTANT_OF_SHAPE: case CT_OP_RANGE: case CT_OP_EXPAND: case CT_OP_MIN:
    case CT_OP_MAX: case CT_OP_IDENTITY: case CT_OP_CONSTANT: case CT_OP_NOT: case CT_OP_AND: case CT_OP_OR:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_FLATTEN: case CT_OP_TRANSPOSE: case CT_OP_SPLIT:
    case CT_OP_TILE: case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_SUM: case CT_OP_SUM: case CT_OP_FLOOR:
    case CT_OP_CEIL:
        return true;
    default:
        return false;
    }
}

/* Small enough to fold while inferring shapes (outputs of shape arithmetic). */
#define CT_SHAPE_FOLD_MAX_BYTES (64 * 1024)

ct_status ct_fold_node(ct_graph *g, ct_node *n, size_t max_bytes, bool *folded);

ct_status ct_pass_infer_shapes(ct_graph *g)
{
    ct_status st = CT_OK;
    bool *keep = NULL;
    CT_TRY(ct_graph_toposort(g));
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_TEMP && v->shape_known && ct_shape_is_static(&v->shape) &&
            ct_shape_numel(&v->shape) < 0) {
            char buf[160];
            return ct_errorf("value '%s' has shape %s, whose element count overflows", v->name,
                             ct_shape_str(&v->shape, buf, sizeof buf));
        }
    }
    /* Forget stale shapes of intermediate values (e.g. after the batch was fixed). */
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i]->n_out; j++) {
            ct_value *v = g->nodes[i]->out[j];
            if (v && v->kind == CT_VALUE_TEMP) v->shape_known = false;
        }
    keep = malloc(sizeof(bool) * ((size_t)g->n_nodes + 1));
    if (!keep) abort();
    bool any_folded = false;
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        keep[i] = true;
        st = ct_infer_node(g, n);
        if (st) goto fail;
        if (!is_shape_arith(n->op)) continue;
        bool folded = false;
        st = ct_fold_node(g, n, CT_SHAPE_FOLD_MAX_BYTES, &folded);
        if (st) goto fail;
        if (folded) {
            keep[i] = false;
            any_folded = true;
        }
    }
    if (any_folded) ct_graph_compact(g, keep);
fail:
    free(keep);
    return st;
}

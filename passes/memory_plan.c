/* memory_plan.c — liveness over the scheduled graph and offsets of every
 * intermediate (TEMP) value in one activation arena, with in-place reuse
 * where the op allows it.
 *
 * The contract with the backends:
 *   - g->arena_bytes is the size of the activation arena (a multiple of 64).
 *   - A TEMP value v lives in [v->offset, v->offset + ct_value_nbytes(v)) of
 *     that arena; offsets are multiples of 64. Graph inputs (bound by the
 *     caller) and persistent values (PARAM/STATE/CONST, placed by the
 *     backend outside the reused region) keep offset -1.
 *   - v->first_use is the position of the node that produces it; v->last_use
 *     the position of the last node that reads it, or g->n_nodes for a graph
 *     output or the source of a state update (g->assigns): it lives to the end. For inputs and persistent values they
 *     are the first and last reading nodes (-1 if none).
 *   - In-place reuse: when an output's offset equals one of its node's
 *     inputs' offsets (same byte count), the node reads and writes the same
 *     bytes. This happens only for
 *       * views: Identity, Reshape, Flatten, Squeeze, Unsqueeze, Dropout
 *         (inference) — the output IS the input's bytes: the kernel must not
 *         copy (or may copy onto itself: memmove);
 *       * elementwise ops (the unary ops, Clip, Add/Sub/Mul/Div/Pow/Max/Min/
 *         Sum with a same-shaped, same-typed input, BatchNormalization in
 *         inference form): element i is read before it is written;
 *     and only when no later node reads those bytes under any name (the
 *     storage group of the input dies at this node), except for views,
 *     which leave the bytes unchanged.
 *   - Any two TEMP values whose lifetimes overlap either occupy disjoint
 *     bytes or have identical offset and size (an in-place alias).
 *   - The source of a state update that can be realised in place
 *     (ct_graph_assign_in_place) gets no arena bytes (offset -1): the backend
 *     places it on its destination. Before liveness, a node whose outputs only
 *     feed state updates is scheduled after the last reader of their
 *     destinations (sink_state_updates), which is what makes that possible
 *     for MoCo's queue.
 * Placement: storage groups (a value and its in-place aliases) sorted by size,
 * largest first, each put into the best-fitting gap among the groups already
 * placed whose lifetimes overlap its own (greedy by size, best fit). */
#include <stdlib.h>
#include <string.h>

#include "passes.h"

#define PLAN_ALIGN 64

typedef struct {
    int64_t size;   /* bytes, rounded up to PLAN_ALIGN */
    int first, last;/* lifetime: node positions, inclusive */
    int64_t offset; /* -1 until placed */
} plan_group;

static int64_t align_up(int64_t x) { return (x + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

static bool op_is_view(const ct_node *n)
{
    switch (n->op) {
    case CT_OP_IDENTITY: case CT_OP_RESHAPE: case CT_OP_FLATTEN: case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE:
        return true;
    case CT_OP_DROPOUT: /* inference form only: no training_mode input, or a constant false one */
        if (n->n_in >= 3 && n->in[2]) {
            const ct_value *tm = n->in[2];
            return tm->data && tm->dtype == CT_BOOL && !*(const uint8_t *)tm->data;
        }
        return true;
    default:
        return false;
    }
}

/* Inputs that output 0 may overwrite element by element (-1 ends the list). */
static void op_inplace_inputs(const ct_node *n, int *cand)
{
    cand[0] = cand[1] = -1;
    switch (n->op) {
    case CT_OP_RELU: case CT_OP_SIGMOID: case CT_OP_HARD_SIGMOID: case CT_OP_HARD_SWISH:
    case CT_OP_LEAKY_RELU: case CT_OP_TANH: case CT_OP_SQRT: case CT_OP_RECIPROCAL:
    case CT_OP_NEG: case CT_OP_ABS: case CT_OP_EXP: case CT_OP_LOG: case CT_OP_ERF:
    case CT_OP_FLOOR: case CT_OP_CEIL: case CT_OP_NOT: case CT_OP_CLIP:
        cand[0] = 0;
        break;
    case CT_OP_BATCH_NORM:
        if (ct_node_attr_int(n, "training_mode", 0) == 0) cand[0] = 0;
        break;
    case CT_OP_ADD: case CT_OP_SUB: case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW:
    case CT_OP_MAX: case CT_OP_MIN: case CT_OP_SUM:
        cand[0] = 0;
        if (n->n_in == 2) cand[1] = 1;
        break;
    default:
        break;
    }
}

/* Whether every output of n feeds state updates only (no node, no graph output). */
static bool feeds_assigns_only(const ct_graph *g, const ct_node *n)
{
    bool any = false;
    for (int j = 0; j < n->n_out; j++) {
        const ct_value *v = n->out[j];
        if (!v) continue;
        int uses = ct_graph_use_count(g, v), by_assigns = 0;
        for (int a = 0; a < g->n_assigns; a++) by_assigns += g->assigns[a].src == v;
        if (uses != by_assigns) return false;
        any = any || by_assigns > 0;
    }
    return any;
}

/* Scheduling for in-place state updates. A node whose outputs only feed state
 * updates (MoCo's QueuePush) is moved after the last other node that reads
 * one of their destinations (the loss's backward reads the old queue), so its
 * outputs can be written onto the destinations' own bytes instead of living
 * in the arena from the node to the end. Its inputs are produced before its
 * old position, so the order stays topological. */
static ct_status sink_state_updates(ct_graph *g)
{
    int nn = g->n_nodes;
    int *target = malloc(sizeof *target * (size_t)(nn ? nn : 1));
    ct_node **order = malloc(sizeof *order * (size_t)(nn ? nn : 1));
    if (!target || !order) {
        free(target);
        free(order);
        return ct_errorf("memory_plan: out of memory");
    }
    bool moved = false;
    for (int k = 0; k < nn; k++) {
        const ct_node *n = g->nodes[k];
        target[k] = -1;
        if (!feeds_assigns_only(g, n)) continue;
        int last = -1;
        for (int a = 0; a < g->n_assigns; a++) {
            if (!g->assigns[a].src || g->assigns[a].src->producer != n) continue;
            for (int m = k + 1; m < nn; m++)
                for (int j = 0; j < g->nodes[m]->n_in; j++)
                    if (g->nodes[m]->in[j] == g->assigns[a].dst && m > last) last = m;
        }
        if (last > k) target[k] = last, moved = true;
    }
    /* a node that is itself moved is no target: keep those where they are */
    for (int k = 0; k < nn; k++)
        if (target[k] >= 0 && target[target[k]] >= 0) target[k] = -1;
    if (moved) {
        int w = 0;
        for (int k = 0; k < nn; k++) {
            if (target[k] >= 0) continue;
            order[w++] = g->nodes[k];
            for (int m = 0; m < nn; m++)
                if (target[m] == k) order[w++] = g->nodes[m];
        }
        for (int k = 0; k < nn; k++) {
            g->nodes[k] = order[k];
            g->nodes[k]->id = k;
        }
    }
    free(target);
    free(order);
    return CT_OK;
}

static int cmp_group_by_size(const void *a, const void *b, void *ctx)
{
    const plan_group *g = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (g[ia].size != g[ib].size) return g[ia].size > g[ib].size ? -1 : 1;
    if (g[ia].first != g[ib].first) return g[ia].first < g[ib].first ? -1 : 1;
    return ia - ib;
}

static int cmp_by_offset(const void *a, const void *b, void *ctx)
{
    const plan_group *g = ctx;
    int ia = *(const int *)a, ib = *(const int *)b;
    if (g[ia].offset != g[ib].offset) return g[ia].offset < g[ib].offset ? -1 : 1;
    return ia - ib;
}

ct_status ct_pass_memory_plan(ct_graph *g)
{
    ct_status st = CT_OK;
    int nv = g->n_values, nn = g->n_nodes;
    int *grp = NULL, *order = NULL, *live = NULL;
    plan_group *groups = NULL;
    bool *on_state = NULL; /* per value id: the source of an in-place state update */
    CT_TRY(ct_graph_toposort(g));
    CT_TRY(sink_state_updates(g));

    grp = malloc(sizeof *grp * (size_t)(nv ? nv : 1));         /* value id -> group id, -1: none */
    groups = calloc((size_t)(nv ? nv : 1), sizeof *groups);
    order = malloc(sizeof *order * (size_t)(nv ? nv : 1));
    live = malloc(sizeof *live * (size_t)(nv ? nv : 1));
    if (!grp || !groups || !order || !live) {
        st = ct_errorf("memory_plan: out of memory");
        goto fail;
    }

    /* Liveness. */
    for (int i = 0; i < nv; i++) {
        ct_value *v = g->values[i];
        v->offset = -1;
        v->first_use = v->last_use = -1;
        grp[i] = -1;
    }
    for (int k = 0; k < nn; k++) {
        const ct_node *n = g->nodes[k];
        for (int j = 0; j < n->n_out; j++) {
            ct_value *v = n->out[j];
            if (!v) continue;
            if (v->kind != CT_VALUE_TEMP) {
                st = ct_errorf("memory_plan: node '%s' (%s) writes '%s', which is a %s value, not an intermediate",
                               n->name, ct_op_table[n->op].name, v->name, ct_value_kind_name(v->kind));
                goto fail;
            }
            v->first_use = v->last_use = k;
        }
        for (int j = 0; j < n->n_in; j++) {
            ct_value *v = n->in[j];
            if (!v) continue;
            if (v->kind == CT_VALUE_TEMP && (!v->producer || v->first_use < 0 || v->first_use >= k)) {
                st = ct_errorf("memory_plan: node '%s' (%s) reads '%s' before it is produced",
                               n->name, ct_op_table[n->op].name, v->name);
                goto fail;
            }
            if (v->first_use < 0) v->first_use = k;
            if (v->last_use < k) v->last_use = k;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        ct_value *v = g->outputs[i];
        if (v->kind == CT_VALUE_TEMP) v->last_use = nn;
    }
    /* The source of a state update is copied into its state after the last
     * node, so it lives to the end like a graph output. */
    for (int i = 0; i < g->n_assigns; i++) {
        ct_value *v = g->assigns[i].src;
        if (v->kind == CT_VALUE_TEMP) {
            if (v->first_use < 0) v->first_use = v->producer ? v->producer->id : 0;
            v->last_use = nn;
        }
    }
    /* Every planned value must have a static size. */
    for (int i = 0; i < nv; i++) {
        const ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_TEMP || v->first_use < 0) continue;
        if (!v->shape_known || !ct_shape_is_static(&v->shape) || ct_shape_numel(&v->shape) < 0) {
            st = ct_errorf("memory_plan: value '%s' has %s shape; fix the batch size (and re-run shape "
                           "inference) before planning memory",
                           v->name, v->shape_known ? "a symbolic" : "an unknown");
            goto fail;
        }
    }

    /* The source of an in-place state update lives on its destination's
     * bytes (ct_graph_assign_in_place): no arena bytes. */
    on_state = calloc((size_t)(nv ? nv : 1), 1);
    if (!on_state) {
        st = ct_errorf("memory_plan: out of memory");
        goto fail;
    }
    for (int i = 0; i < g->n_assigns; i++)
        if (ct_graph_assign_in_place(g, i)) on_state[g->assigns[i].src->id] = true;

    /* Storage groups, with in-place reuse decided in schedule order. */
    int ng = 0;
    for (int k = 0; k < nn; k++) {
        const ct_node *n = g->nodes[k];
        for (int j = 0; j < n->n_out; j++) {
            ct_value *v = n->out[j];
            if (!v || on_state[v->id]) continue;
            int joined = -1;
            if (j == 0) {
                size_t nb = ct_value_nbytes(v);
                if (op_is_view(n)) {
                    ct_value *x = n->in[0];
                    if (x && x->kind == CT_VALUE_TEMP && ct_value_nbytes(x) == nb && grp[x->id] >= 0)
                        joined = grp[x->id];
                } else {
                    int cand[2];
                    op_inplace_inputs(n, cand);
                    for (int c = 0; c < 2 && cand[c] >= 0 && joined < 0; c++) {
                        if (cand[c] >= n->n_in) break;
                        ct_value *x = n->in[cand[c]];
                        if (!x || x->kind != CT_VALUE_TEMP || grp[x->id] < 0) continue;
                        if (x->dtype != v->dtype || !ct_shape_equal(&x->shape, &v->shape)) continue;
                        if (groups[grp[x->id]].last != k) continue; /* read later under some name */
                        joined = grp[x->id];
                    }
                }
            }
            if (joined >= 0) {
                grp[v->id] = joined;
                if (groups[joined].last < v->last_use) groups[joined].last = v->last_use;
            } else {
                plan_group *pg = &groups[ng];
                pg->size = align_up((int64_t)ct_value_nbytes(v));
                pg->first = v->first_use;
                pg->last = v->last_use;
                pg->offset = -1;
                grp[v->id] = ng++;
            }
        }
    }

    /* Greedy by size, best fit among the placed groups that overlap in time. */
    for (int i = 0; i < ng; i++) order[i] = i;
    qsort_r(order, (size_t)ng, sizeof *order, cmp_group_by_size, groups);
    int64_t arena = 0;
    for (int oi = 0; oi < ng; oi++) {
        plan_group *pg = &groups[order[oi]];
        int nl = 0;
        for (int pj = 0; pj < oi; pj++) {
            const plan_group *q = &groups[order[pj]];
            if (q->first <= pg->last && pg->first <= q->last && q->size > 0) live[nl++] = order[pj];
        }
        qsort_r(live, (size_t)nl, sizeof *live, cmp_by_offset, groups);
        int64_t best = -1, best_gap = INT64_MAX, cursor = 0;
        for (int li = 0; li < nl; li++) {
            const plan_group *q = &groups[live[li]];
            if (q->offset > cursor) {
                int64_t gap = q->offset - cursor;
                if (gap >= pg->size && gap < best_gap) {
                    best = cursor;
                    best_gap = gap;
                }
            }
            if (q->offset + q->size > cursor) cursor = q->offset + q->size;
        }
        pg->offset = best >= 0 ? best : cursor;
        if (pg->offset + pg->size > arena) arena = pg->offset + pg->size;
    }
    for (int i = 0; i < nv; i++)
        if (grp[i] >= 0) g->values[i]->offset = groups[grp[i]].offset;
    g->arena_bytes = align_up(arena);

fail:
    free(on_state);
    free(grp);
    free(groups);
    free(order);
    free(live);
    return st;
}

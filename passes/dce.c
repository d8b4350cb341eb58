/* dce.c — dead-code elimination: drop nodes none of whose outputs reach a
 * graph output or a state update (g->assigns), and the values that become
 * unused.  Nodes writing STATE values directly are always kept. */
#include "passes.h"

ct_status ct_pass_dce(ct_graph *g)
{
    bool *live = calloc((size_t)g->n_values + 1, 1);     /* by value id */
    bool *keep = calloc((size_t)g->n_nodes + 1, 1);      /* by node position */
    if (!live || !keep) abort();
    for (int i = 0; i < g->n_values; i++) g->values[i]->id = i;
    for (int i = 0; i < g->n_outputs; i++) live[g->outputs[i]->id] = true;
    for (int i = 0; i < g->n_assigns; i++) live[g->assigns[i].src->id] = true;
    /* Reverse topological order: a node is live if it writes state or a live value. */
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        ct_node *n = g->nodes[i];
        bool k = false;
        for (int j = 0; j < n->n_out; j++) {
            const ct_value *v = n->out[j];
            if (v && (live[v->id] || v->kind == CT_VALUE_STATE)) k = true;
        }
        if (!k) continue;
        keep[i] = true;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) live[n->in[j]->id] = true;
    }
    /* Optional trailing outputs nothing reads (Dropout's mask, MaxPool's
     * indices, BatchNorm's running statistics) are dropped from live nodes. */
    for (int i = 0; i < g->n_nodes; i++) {
        ct_node *n = g->nodes[i];
        if (!keep[i]) continue;
        int min_out = ct_op_table[n->op].min_out;
        for (int j = min_out; j < n->n_out; j++) {
            ct_value *v = n->out[j];
            if (v && !live[v->id] && v->kind == CT_VALUE_TEMP) {
                v->producer = NULL;
                n->out[j] = NULL;
            }
        }
        while (n->n_out > min_out && !n->out[n->n_out - 1]) n->n_out--;
    }
    ct_graph_compact(g, keep);
    free(live);
    free(keep);
    return CT_OK;
}

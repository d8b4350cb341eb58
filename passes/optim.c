/* optim.c — builds the optimizer update of a training graph (optim.h) and
 * infers the shapes of the optimizer ops: every output has the shape and
 * dtype of the parameter (input 0). Per-parameter nodes for now; a later
 * issue fuses them into one multi-tensor update over a flat buffer. */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "passes.h"

void ct_optim_options_default(ct_optim_options *o, ct_optim_kind kind)
{
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->beta1 = 0.9;
    o->beta2 = 0.999;
    o->eps = 1e-8;
    o->trust = 0.001;
    if (kind == CT_OPTIM_SGD || kind == CT_OPTIM_LARS) o->momentum = 0.9;
    if (kind == CT_OPTIM_ADAMW) o->weight_decay = 0.01;
}

bool ct_optim_kind_parse(const char *s, ct_optim_kind *out)
{
    static const char *const names[] = {"sgd", "adam", "adamw", "lars"};
    for (int i = 0; i < 4; i++)
        if (s && !strcmp(s, names[i])) {
            *out = (ct_optim_kind)i;
            return true;
        }
    return false;
}

ct_status ct_optim_options_check(const ct_optim_options *o)
{
    if (!(o->momentum >= 0 && o->momentum < 1))
        return ct_errorf("momentum %g is out of range: it must be in [0, 1)", o->momentum);
    if (!(o->weight_decay >= 0 && isfinite(o->weight_decay)))
        return ct_errorf("weight decay %g is out of range: it must be finite and >= 0", o->weight_decay);
    if (!(o->beta1 >= 0 && o->beta1 < 1)) return ct_errorf("beta1 %g is out of range: it must be in [0, 1)", o->beta1);
    if (!(o->beta2 >= 0 && o->beta2 < 1)) return ct_errorf("beta2 %g is out of range: it must be in [0, 1)", o->beta2);
    if (!(o->eps > 0)) return ct_errorf("eps %g is out of range: it must be > 0", o->eps);
    if (!(o->trust > 0 && isfinite(o->trust))) return ct_errorf("trust coefficient %g must be > 0", o->trust);
    if (o->nesterov && (o->kind != CT_OPTIM_SGD || o->momentum <= 0))
        return ct_errorf("nesterov needs SGD with a momentum > 0");
    return CT_OK;
}

bool ct_optim_lars_excluded(const ct_value *param) { return param->shape.rank <= 1; }

ct_status ct_infer_optim_step(ct_graph *g, ct_node *n)
{
    (void)g;
    const ct_value *p = n->in[0];
    if (p->dtype != CT_F32 && p->dtype != CT_F64)
        return ct_errorf("node '%s' (%s): parameter '%s' must be floating point", n->name, ct_op_table[n->op].name,
                         p->name);
    if (!ct_shape_equal(&n->in[1]->shape, &p->shape))
        return ct_errorf("node '%s' (%s): gradient '%s' and parameter '%s' differ in shape", n->name,
                         ct_op_table[n->op].name, n->in[1]->name, p->name);
    if (ct_shape_numel(&n->in[2]->shape) != 1)
        return ct_errorf("node '%s' (%s): lr must be a scalar", n->name, ct_op_table[n->op].name);
    for (int i = 0; i < n->n_out; i++) {
        if (!n->out[i]) continue;
        n->out[i]->dtype = p->dtype;
        n->out[i]->shape = p->shape;
        n->out[i]->shape_known = true;
    }
    return CT_OK;
}

static ct_value *slot(ct_graph *g, const char *what, const ct_value *p)
{
    size_t nb = ct_value_nbytes(p);
    void *zero = ct_arena_alloc(&g->arena, nb ? nb : 1);
    char *name = ct_arena_printf(&g->arena, "optim/%s/%s", what, p->name);
    return ct_graph_add_tensor(g, name, CT_VALUE_STATE, p->dtype, &p->shape, zero);
}

static ct_value *temp(ct_graph *g, const char *what, const ct_value *p)
{
    char *name = ct_arena_printf(&g->arena, "optim/%s/%s", what, p->name);
    return ct_graph_add_value(g, ct_graph_unique_name(g, name), CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
}

ct_status ct_optim_attach(ct_graph *g, const ct_grad_pair *grads, int n_grads, const ct_optim_options *o)
{
    CT_TRY(ct_optim_options_check(o));
    if (n_grads <= 0) return ct_errorf("no trainable parameter has a gradient: nothing to optimise");
    if (ct_graph_find_value(g, "lr")) return ct_errorf("the graph already has a value named 'lr'");
    ct_shape scalar = {.rank = 0};
    ct_value *lr = ct_graph_add_value(g, "lr", CT_VALUE_INPUT, CT_F32, &scalar);
    lr->shape_known = true;
    ct_graph_add_input(g, lr);
    ct_value *step_new = NULL;
    if (o->kind == CT_OPTIM_ADAM || o->kind == CT_OPTIM_ADAMW) {
        int64_t zero = 0, one = 1;
        ct_value *step = ct_graph_add_tensor(g, "optim/step", CT_VALUE_STATE, CT_I64, &scalar, &zero);
        ct_value *c1 = ct_graph_add_tensor(g, ct_graph_unique_name(g, "optim/one"), CT_VALUE_CONST, CT_I64, &scalar, &one);
        step_new = ct_graph_add_value(g, "optim/step_next", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
        ct_node *inc = ct_graph_add_node(g, CT_OP_ADD, "optim/step_increment", 2, (ct_value *[]){step, c1}, 1, &step_new);
        CT_TRY(ct_infer_node(g, inc));
        ct_graph_add_assign(g, step, step_new);
    }
    for (int i = 0; i < n_grads; i++) {
        ct_value *p = grads[i].value, *gr = grads[i].grad;
        if (p->kind != CT_VALUE_PARAM || p->frozen) continue;
        const char *nname = ct_arena_printf(&g->arena, "optim/%s", p->name);
        ct_node *n = NULL;
        ct_value *np = temp(g, "new", p);
        switch (o->kind) {
        case CT_OPTIM_SGD:
            if (o->momentum > 0) {
                ct_value *buf = slot(g, "momentum_buffer", p), *nb = temp(g, "new_momentum_buffer", p);
                n = ct_graph_add_node(g, CT_OP_SGD_STEP, nname, 4, (ct_value *[]){p, gr, lr, buf}, 2,
                                      (ct_value *[]){np, nb});
                ct_graph_add_assign(g, buf, nb);
            } else {
                n = ct_graph_add_node(g, CT_OP_SGD_STEP, nname, 3, (ct_value *[]){p, gr, lr}, 1, &np);
            }
            ct_node_set_float(g, n, "momentum", (float)o->momentum);
            ct_node_set_int(g, n, "nesterov", o->nesterov);
            ct_node_set_float(g, n, "weight_decay", (float)o->weight_decay);
            break;
        case CT_OPTIM_ADAM: case CT_OPTIM_ADAMW: {
            ct_value *m = slot(g, "exp_avg", p), *v = slot(g, "exp_avg_sq", p);
            ct_value *nm = temp(g, "new_exp_avg", p), *nv = temp(g, "new_exp_avg_sq", p);
            n = ct_graph_add_node(g, CT_OP_ADAM_STEP, nname, 6, (ct_value *[]){p, gr, lr, m, v, step_new}, 3,
                                  (ct_value *[]){np, nm, nv});
            ct_node_set_float(g, n, "beta1", (float)o->beta1);
            ct_node_set_float(g, n, "beta2", (float)o->beta2);
            ct_node_set_float(g, n, "epsilon", (float)o->eps);
            ct_node_set_float(g, n, "weight_decay", (float)o->weight_decay);
            ct_node_set_int(g, n, "decoupled", o->kind == CT_OPTIM_ADAMW);
            ct_graph_add_assign(g, m, nm);
            ct_graph_add_assign(g, v, nv);
            break;
        }
        case CT_OPTIM_LARS: {
            ct_value *buf = slot(g, "momentum_buffer", p), *nb = temp(g, "new_momentum_buffer", p);
            n = ct_graph_add_node(g, CT_OP_LARS_STEP, nname, 4, (ct_value *[]){p, gr, lr, buf}, 2,
                                  (ct_value *[]){np, nb});
            ct_node_set_float(g, n, "momentum", (float)o->momentum);
            ct_node_set_float(g, n, "weight_decay", (float)o->weight_decay);
            ct_node_set_float(g, n, "trust_coefficient", (float)o->trust);
            ct_node_set_int(g, n, "exclude", ct_optim_lars_excluded(p));
            ct_graph_add_assign(g, buf, nb);
            break;
        }
        }
        CT_TRY(ct_infer_node(g, n));
        ct_graph_add_assign(g, p, np);
    }
    return CT_OK;
}

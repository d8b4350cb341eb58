/* test_methods.c — the methods' graph builders (models/methods.c) on a
 * bundled ResNet-18 (small input, width 8): every preset attaches, the
 * graph verifies, each state value is assigned exactly once, and one step
 * runs in the reference interpreter to a finite loss; QueuePush's ring
 * semantics (K not a multiple of B) on exact values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_methods.h"
#include "eval_optim.h"
#include "method.h"
#include "passes.h"
#include "resnet.h"

static int n_fail, n_pass;

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (cond) {                                                                                                    \
            n_pass++;                                                                                                  \
        } else {                                                                                                       \
            n_fail++;                                                                                                  \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                                                     \
        }                                                                                                              \
    } while (0)

static ct_status eval_one(const ct_node *n, const void *const *in, void *const *out)
{
    if (ct_eval_methods_supports(n)) return ct_eval_methods_node(n, in, out);
    if (ct_eval_optim_supports(n)) return ct_eval_optim_node(n, in, out);
    return ct_eval_node(n, in, out);
}

static void test_queue_push(void)
{
    ct_graph *g = ct_graph_new("queue");
    ct_shape qs = {.rank = 2, .dims = {2, 5}}, ks = {.rank = 2, .dims = {3, 2}}, ps = {.rank = 1, .dims = {1}};
    ct_value *q = ct_graph_add_value(g, "queue", CT_VALUE_INPUT, CT_F32, &qs);
    ct_value *k = ct_graph_add_value(g, "keys", CT_VALUE_INPUT, CT_F32, &ks);
    ct_value *p = ct_graph_add_value(g, "ptr", CT_VALUE_INPUT, CT_I64, &ps);
    ct_value *outs[2] = {ct_graph_add_value(g, "queue2", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL),
                         ct_graph_add_value(g, "ptr2", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL)};
    ct_node *n = ct_graph_add_node(g, CT_OP_QUEUE_PUSH, "push", 3, (ct_value *[]){q, k, p}, 2, outs);
    ct_status st = ct_infer_node(g, n);
    CHECK(!st);
    ct_status_free(st);
    CHECK(ct_shape_equal(&outs[0]->shape, &qs) && outs[1]->dtype == CT_I64);
    CHECK(ct_eval_methods_supports(n));
    float qd[10] = {0, 1, 2, 3, 4, 10, 11, 12, 13, 14}; /* (D=2, K=5) */
    float kd[6] = {100, 200, 101, 201, 102, 202};        /* (B=3, D=2) */
    int64_t ptr = 4, ptr2 = -1;
    float qo[10];
    st = ct_eval_methods_node(n, (const void *[]){qd, kd, &ptr}, (void *[]){qo, &ptr2});
    CHECK(!st);
    ct_status_free(st);
    /* keys go to columns 4, 0, 1 (wrapping), the pointer to (4 + 3) mod 5 = 2 */
    float want[10] = {101, 102, 2, 3, 100, 201, 202, 12, 13, 200};
    CHECK(!memcmp(qo, want, sizeof want));
    CHECK(ptr2 == 2);
    /* the same through the interpreter's entry point (passes/eval.c dispatches here) */
    CHECK(ct_eval_supports(n));
    memset(qo, 0, sizeof qo);
    ptr2 = -1;
    st = ct_eval_node(n, (const void *[]){qd, kd, &ptr}, (void *[]){qo, &ptr2});
    CHECK(!st && !memcmp(qo, want, sizeof want) && ptr2 == 2);
    ct_status_free(st);
    ptr = 5; /* out of range */
    st = ct_eval_methods_node(n, (const void *[]){qd, kd, &ptr}, (void *[]){qo, &ptr2});
    CHECK(st && strstr(ct_status_msg(st), "pointer 5 outside"));
    ct_status_free(st);
    /* more keys than the queue holds: refused by shape inference */
    ct_shape ks6 = {.rank = 2, .dims = {6, 2}};
    k->shape = ks6;
    st = ct_infer_node(g, n);
    CHECK(st && strstr(ct_status_msg(st), "do not fit"));
    ct_status_free(st);
    ct_graph_free(g);
}

/* One step of the graph with deterministic inputs; returns the loss (NAN on failure). */
static double run_step(const ct_graph *g)
{
    void **buf = calloc((size_t)g->n_values, sizeof *buf);
    double loss = NAN;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        size_t nb = ct_value_nbytes(v);
        buf[i] = calloc(1, nb ? nb : 1);
        if (v->data) memcpy(buf[i], v->data, nb);
    }
    for (int i = 0; i < g->n_inputs; i++) {
        ct_value *v = g->inputs[i];
        int64_t n = ct_shape_numel(&v->shape);
        if (v->dtype == CT_F32)
            for (int64_t j = 0; j < n; j++)
                ((float *)buf[v->id])[j] = !strcmp(v->name, "lr") ? 0.01f
                                           : !strcmp(v->name, "momentum") ? 0.99f
                                                                          : (float)sin(0.37 * (double)j + i);
        else /* permutations and labels: a reversal / j mod 3 */
            for (int64_t j = 0; j < n; j++)
                ((int64_t *)buf[v->id])[j] = !strncmp(v->name, "shuffle", 7) ? n - 1 - j : j % 3;
    }
    for (int k = 0; k < g->n_nodes; k++) {
        const ct_node *n = g->nodes[k];
        const void *in[64];
        void *out[64];
        for (int j = 0; j < n->n_in; j++) in[j] = n->in[j] ? buf[n->in[j]->id] : NULL;
        for (int j = 0; j < n->n_out; j++) out[j] = n->out[j] ? buf[n->out[j]->id] : NULL;
        ct_status st = eval_one(n, in, out);
        if (st) {
            printf("  eval: %s\n", ct_status_msg(st));
            ct_status_free(st);
            goto done;
        }
    }
    loss = *(float *)buf[g->outputs[0]->id];
done:
    for (int i = 0; i < g->n_values; i++) free(buf[i]);
    free(buf);
    return loss;
}

static void test_presets_attach(void)
{
    ct_resnet_options ro = ct_resnet_options_default();
    ct_status st = ct_model_resnet_options_from_name("resnet18_small_w8", &ro);
    CHECK(!st);
    ct_status_free(st);
    ro.height = ro.width_px = 8;
    ct_graph *enc = NULL;
    st = ct_model_resnet_build(&ro, &enc);
    CHECK(!st);
    if (st) {
        printf("  %s\n", ct_status_msg(st));
        ct_status_free(st);
        return;
    }
    const char *const *names = ct_method_preset_names();
    for (int p = 0; names[p]; p++) {
        ct_method_options o;
        st = ct_method_preset(names[p], &o);
        CHECK(!st);
        ct_status_free(st);
        o.batch = 8;
        o.queue_size = 20;
        o.views = 2;
        o.seed = 1;
        /* small heads */
        if (o.head.n) o.head.dims[o.head.n - 1] = 16;
        for (int i = 0; i + 1 < o.head.n; i++) o.head.dims[i] = 32;
        if (o.predictor.n) {
            o.predictor.dims[0] = 8;
            o.predictor.dims[o.predictor.n - 1] = 16;
        }
        o.attach_optimizer = true;
        o.momentum_input = !strcmp(names[p], "byol");
        if (!strcmp(names[p], "simclr")) o.lr = 0.3;
        ct_graph *g = NULL;
        st = ct_method_attach(enc, &o, &g);
        if (st) printf("  %s: %s\n", names[p], ct_status_msg(st));
        CHECK(!st);
        ct_status_free(st);
        if (!g) continue;
        /* each persistent value assigned at most once, every BatchNorm statistic and key/target value once */
        int dup = 0, n_key = 0, n_key_assigned = 0;
        for (int a = 0; a < g->n_assigns; a++)
            for (int b = a + 1; b < g->n_assigns; b++) dup += g->assigns[a].dst == g->assigns[b].dst;
        CHECK(dup == 0);
        for (int i = 0; i < g->n_values; i++) {
            ct_value *v = g->values[i];
            if (v->kind != CT_VALUE_STATE || (strncmp(v->name, "key/", 4) && strncmp(v->name, "target/", 7)))
                continue;
            n_key++;
            for (int a = 0; a < g->n_assigns; a++) n_key_assigned += g->assigns[a].dst == v;
        }
        CHECK(n_key == n_key_assigned);
        bool moco = o.kind == CT_METHOD_MOCO, byol = o.kind == CT_METHOD_BYOL;
        CHECK((n_key > 0) == (moco || byol));
        CHECK((ct_graph_find_value(g, "queue") != NULL) == moco);
        CHECK(!strcmp(g->outputs[0]->name, "loss") || g->outputs[0]->shape.rank == 0);
        CHECK(ct_graph_find_value(g, "fc.weight") == NULL); /* the classifier is dropped */
        CHECK(ct_graph_find_value(g, "grad/conv1.weight") != NULL);
        double loss = run_step(g);
        printf("  %-16s %4d nodes %3d assigns  loss %.6f\n", names[p], g->n_nodes, g->n_assigns, loss);
        CHECK(isfinite(loss));
        ct_graph_free(g);
    }
    ct_graph_free(enc);
}

int main(void)
{
    test_queue_push();
    test_presets_attach();
    printf("test_methods: %d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

/* train_ref.c — test helper: one supervised training step of a model by the
 * reference interpreter: import, BatchNorm in training form, a
 * SoftmaxCrossEntropy loss on the first output with the given labels,
 * autodiff, then forward + backward node by node. Writes OUTDIR/loss.npy,
 * OUTDIR/grad<i>.npy for each parameter gradient and OUTDIR/state<i>.npy for
 * each state update (BatchNorm running statistics), and prints a manifest:
 * "loss", "grad <i> <param name>", "state <i> <state name>".
 *   train_ref MODEL OUTDIR input.npy labels.npy [--splits S] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "eval.h"
#include "frontend.h"
#include "ir.h"
#include "npy.h"
#include "passes.h"

static int fail(ct_status st)
{
    fprintf(stderr, "train_ref: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

static ct_status bind(ct_value *v, const char *path, ct_npy *a, void **buf)
{
    CT_TRY(ct_npy_read(path, a));
    if (a->nbytes != ct_value_nbytes(v) || ct_dtype_from_onnx(a->dtype) != v->dtype)
        return ct_errorf("%s: %zu bytes of %s for '%s', which needs %zu bytes of %s", path, a->nbytes,
                         ct_npy_dtype_name(a->dtype), v->name, ct_value_nbytes(v), ct_dtype_name(v->dtype));
    buf[v->id] = a->data;
    return CT_OK;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: train_ref MODEL OUTDIR input.npy labels.npy [--splits S]\n");
        return 2;
    }
    const char *model = argv[1], *outdir = argv[2];
    int splits = 1;
    for (int i = 5; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--splits")) splits = atoi(argv[++i]);

    ct_graph *g = NULL;
    ct_status st = ct_model_load(model, &g);
    if (st) return fail(st);
    void **buf = NULL;
    bool *owned = NULL;
    ct_npy xa = {0}, ya = {0};
    int n_pipe = 0;
    while (ct_default_pipeline[n_pipe]) n_pipe++;
    ct_pass_options popt = {0};
    if ((st = ct_pass_run(g, ct_default_pipeline, n_pipe, &popt))) goto out;
    ct_bn_train_options bopt = {.splits = splits};
    if ((st = ct_bn_train(g, &bopt))) goto out;
    if (g->n_inputs < 1 || g->n_outputs < 1) {
        st = ct_errorf("%s: needs an input and an output", model);
        goto out;
    }

    /* loss = SoftmaxCrossEntropy(logits, labels) */
    ct_value *logits = g->outputs[0];
    ct_shape ls = {.rank = 1, .dims = {logits->shape.dims[0]}};
    ct_value *labels = ct_graph_add_value(g, "labels", CT_VALUE_INPUT, CT_I64, &ls);
    ct_graph_add_input(g, labels);
    ct_value *outs[2] = {ct_graph_add_value(g, "loss", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL),
                         ct_graph_add_value(g, "log_prob", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL)};
    ct_node *ce = ct_graph_add_node(g, CT_OP_SOFTMAX_CROSS_ENTROPY, "loss", 2, (ct_value *[]){logits, labels}, 2, outs);
    if ((st = ct_infer_node(g, ce))) goto out;
    ct_autodiff_result res = {0};
    ct_autodiff_options aopt = {.result = &res};
    if ((st = ct_autodiff(g, outs[0], &aopt))) goto out;
    if ((st = ct_graph_verify(g))) goto out;

    buf = calloc((size_t)g->n_values, sizeof *buf);
    owned = calloc((size_t)g->n_values, sizeof *owned);
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->data) buf[i] = g->values[i]->data;
    if ((st = bind(g->inputs[0], argv[3], &xa, buf))) goto done;
    if ((st = bind(labels, argv[4], &ya, buf))) goto done;

    if ((st = ct_eval_graph(g, buf, owned))) goto done;

    char path[4096];
    snprintf(path, sizeof path, "%s/loss.npy", outdir);
    if ((st = ct_npy_write(path, ct_dtype_to_onnx(outs[0]->dtype), 0, NULL, buf[outs[0]->id]))) goto done;
    printf("loss\n");
    for (int i = 0; i < res.n_grads; i++) {
        const ct_value *v = res.grads[i].grad;
        snprintf(path, sizeof path, "%s/grad%d.npy", outdir, i);
        if ((st = ct_npy_write(path, ct_dtype_to_onnx(v->dtype), v->shape.rank, v->shape.dims, buf[v->id]))) goto done;
        printf("grad %d %s\n", i, res.grads[i].value->name);
    }
    for (int i = 0; i < g->n_assigns; i++) {
        const ct_value *v = g->assigns[i].src;
        snprintf(path, sizeof path, "%s/state%d.npy", outdir, i);
        if ((st = ct_npy_write(path, ct_dtype_to_onnx(v->dtype), v->shape.rank, v->shape.dims, buf[v->id]))) goto done;
        printf("state %d %s\n", i, g->assigns[i].dst->name);
    }

done:
    for (int i = 0; g && buf && i < g->n_values; i++)
        if (owned[i]) free(buf[i]);
    ct_npy_free(&xa);
    ct_npy_free(&ya);
    free(owned);
    free(buf);
out:
    ct_graph_free(g);
    return st ? fail(st) : 0;
}

/* eval_model.c — test helper: run a whole model through the reference
 * interpreter (passes/eval.c), node by node in schedule order, on .npy
 * inputs, writing every graph output as OUTDIR/out<i>.npy.
 *   eval_model MODEL OUTDIR [--batch N] [--fuse] [name=]input.npy ...
 * Inputs given without a name are bound to the graph inputs in order;
 * --fuse runs the fuse pass after the default pipeline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "frontend.h"
#include "ir.h"
#include "npy.h"
#include "passes.h"

static int fail(ct_status st)
{
    fprintf(stderr, "eval_model: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: eval_model MODEL OUTDIR [--batch N] [--fuse] [name=]input.npy ...\n");
        return 2;
    }
    const char *model = argv[1], *outdir = argv[2];
    int64_t batch = 0;
    bool fuse = false;
    const char *in_names[64], *in_paths[64];
    int n_given = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            batch = strtoll(argv[++i], NULL, 10);
            continue;
        }
        if (!strcmp(argv[i], "--fuse")) {
            fuse = true;
            continue;
        }
        if (n_given == 64) return fail(ct_errorf("too many inputs"));
        char *eq = strchr(argv[i], '=');
        in_names[n_given] = eq ? argv[i] : NULL;
        if (eq) *eq = 0;
        in_paths[n_given++] = eq ? eq + 1 : argv[i];
    }

    ct_graph *g = NULL;
    ct_status st = ct_model_load(model, &g);
    if (st) return fail(st);
    if (batch > 0) ct_graph_set_batch(g, batch);
    int n_pipe = 0;
    while (ct_default_pipeline[n_pipe]) n_pipe++;
    ct_pass_options opt = {0};
    if ((st = ct_pass_run(g, ct_default_pipeline, n_pipe, &opt))) goto out;
    const char *fuse_pass[] = {"fuse"};
    if (fuse && (st = ct_pass_run(g, fuse_pass, 1, &opt))) goto out;

    void **buf = calloc((size_t)g->n_values, sizeof *buf);
    bool *owned = calloc((size_t)g->n_values, sizeof *owned);
    ct_npy *npys = calloc((size_t)(n_given ? n_given : 1), sizeof *npys);
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->data) buf[i] = g->values[i]->data;

    /* Bind the inputs. */
    for (int k = 0; k < n_given; k++) {
        ct_value *v = NULL;
        if (in_names[k]) {
            v = ct_graph_find_value(g, in_names[k]);
        } else if (k < g->n_inputs) {
            v = g->inputs[k];
        }
        if (!v || v->kind != CT_VALUE_INPUT) {
            st = ct_errorf("input #%d (%s) matches no graph input", k, in_names[k] ? in_names[k] : in_paths[k]);
            goto done;
        }
        if ((st = ct_npy_read(in_paths[k], &npys[k]))) goto done;
        if ((size_t)ct_value_nbytes(v) != npys[k].nbytes || ct_dtype_from_onnx(npys[k].dtype) != v->dtype) {
            st = ct_errorf("%s: %zu bytes of %s for input '%s', which needs %zu bytes of %s", in_paths[k],
                           npys[k].nbytes, ct_npy_dtype_name(npys[k].dtype), v->name, ct_value_nbytes(v),
                           ct_dtype_name(v->dtype));
            goto done;
        }
        buf[v->id] = npys[k].data;
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (!buf[g->inputs[i]->id] && ct_value_nbytes(g->inputs[i])) {
            st = ct_errorf("graph input '%s' not given", g->inputs[i]->name);
            goto done;
        }

    /* Every node in order. */
    if ((st = ct_eval_graph(g, buf, owned))) goto done;

    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        char path[4096];
        snprintf(path, sizeof path, "%s/out%d.npy", outdir, i);
        if (!buf[v->id]) {
            st = ct_errorf("graph output '%s' was never computed", v->name);
            goto done;
        }
        if ((st = ct_npy_write(path, ct_dtype_to_onnx(v->dtype), v->shape.rank, v->shape.dims, buf[v->id]))) goto done;
        printf("%s %s\n", path, v->name);
    }

done:
    for (int i = 0; i < g->n_values; i++)
        if (owned[i]) free(buf[i]);
    for (int k = 0; k < n_given; k++) ct_npy_free(&npys[k]);
    free(npys);
    free(owned);
    free(buf);
out:
    ct_graph_free(g);
    return st ? fail(st) : 0;
}

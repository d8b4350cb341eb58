/* method_ref.c — test helper: a contrastive method attached to an encoder
 * (models/method.h), run for N steps by the reference interpreter, state
 * assignments applied between steps. Used by tests/test_methods.py.
 *   method_ref ENCODER OUTDIR --preset NAME [KEY=VALUE ...] [--in NAME FILE]
 *              [--set NAME FILE] [--steps N] [--pipeline | --fuse]
 * --in binds a graph input (a file of N stacked per-step values, or one value
 * reused every step); --set overrides a PARAM/STATE initial value;
 * --pipeline runs the default passes on the training graph first; --fuse
 * runs them and then the fuse pass (passes/fuse.c).
 *   method_ref --preset-dump NAME  prints a preset's defaults. Writes
 * OUTDIR/init<i>.npy (initial PARAM/STATE values), loss<s>.npy per step,
 * grad<i>.npy (last step) and state<i>.npy (every assigned value after the
 * last step), and prints a manifest: "init i name", "loss s", "grad i name",
 * "state i name", "input name". Exit 1 with the message on errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "eval.h"
#include "eval_methods.h"
#include "eval_optim.h"
#include "frontend.h"
#include "ir.h"
#include "method.h"
#include "npy.h"
#include "passes.h"

static int fail(ct_status st)
{
    fprintf(stderr, "method_ref: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

static void parse_dims(const char *s, ct_head_spec *h)
{
    h->n = 0;
    while (*s && h->n < CT_HEAD_MAX) {
        char *end;
        h->dims[h->n++] = strtoll(s, &end, 10);
        s = *end == ',' ? end + 1 : end;
        if (end == s && *s) break;
    }
}

static ct_status set_option(ct_method_options *o, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (!eq) return ct_errorf("option '%s' is not KEY=VALUE", kv);
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    const char *v = eq + 1;
    double f = atof(v);
    if (!strcmp(key, "temperature")) o->temperature = f;
    else if (!strcmp(key, "base_temperature")) o->base_temperature = f;
    else if (!strcmp(key, "momentum")) o->momentum = f;
    else if (!strcmp(key, "queue")) o->queue_size = atoll(v);
    else if (!strcmp(key, "batch")) o->batch = atoll(v);
    else if (!strcmp(key, "views")) o->views = atoi(v);
    else if (!strcmp(key, "symmetric")) o->symmetric = atoi(v);
    else if (!strcmp(key, "shuffle")) o->shuffle_bn = atoi(v);
    else if (!strcmp(key, "splits")) o->bn_splits = atoi(v);
    else if (!strcmp(key, "seed")) o->seed = (uint64_t)atoll(v);
    else if (!strcmp(key, "layer")) o->layer = v;
    else if (!strcmp(key, "labels")) o->use_labels = atoi(v);
    else if (!strcmp(key, "mask")) o->use_mask = atoi(v);
    else if (!strcmp(key, "have_labels")) o->have_labels = atoi(v);
    else if (!strcmp(key, "contrast")) o->contrast_all = !strcmp(v, "all");
    else if (!strcmp(key, "use_momentum")) o->use_momentum = atoi(v);
    else if (!strcmp(key, "momentum_input")) o->momentum_input = atoi(v);
    else if (!strcmp(key, "head")) parse_dims(v, &o->head);
    else if (!strcmp(key, "head_in")) o->head_in = atoll(v);
    else if (!strcmp(key, "pred")) parse_dims(v, &o->predictor);
    else if (!strcmp(key, "optimizer")) o->optimizer = v;
    else if (!strcmp(key, "lr")) o->lr = f;
    else if (!strcmp(key, "wd")) o->weight_decay = f;
    else if (!strcmp(key, "opt_momentum")) o->opt_momentum = f;
    else if (!strcmp(key, "attach_optimizer")) o->attach_optimizer = atoi(v);
    else if (!strcmp(key, "dataset_size")) o->dataset_size = atoll(v);
    else if (!strcmp(key, "fuse_loss")) o->fuse_loss = atoi(v);
    else return ct_errorf("unknown option '%s'", key);
    return CT_OK;
}

typedef struct {
    ct_value *v;
    ct_npy a;
} binding;

static ct_status save(const char *outdir, const char *stem, int i, const ct_value *v, const void *data)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s%d.npy", outdir, stem, i);
    return ct_npy_write(path, ct_dtype_to_onnx(v->dtype), v->shape.rank, v->shape.dims, data);
}

/* method_ref --preset-dump NAME: the preset's defaults as KEY=VALUE lines. */
static int preset_dump(const char *name)
{
    ct_method_options o;
    ct_status st = ct_method_preset(name, &o);
    if (st) return fail(st);
    printf("kind=%d\nbatch=%lld\ntemperature=%g\nbase_temperature=%g\nqueue=%lld\nmomentum=%g\n", (int)o.kind,
           (long long)o.batch, o.temperature, o.base_temperature, (long long)o.queue_size, o.momentum);
    printf("splits=%d\nshuffle=%d\nsymmetric=%d\nuse_labels=%d\nuse_momentum=%d\n", o.bn_splits, o.shuffle_bn,
           o.symmetric, o.use_labels, o.use_momentum);
    printf("optimizer=%s\nlr=%g\nwd=%g\nopt_momentum=%g\nepochs=%d\nschedule=%s\nlr_final=%g\naugment=%s\n",
           o.optimizer ? o.optimizer : "none", o.lr, o.weight_decay, o.opt_momentum, o.epochs,
           o.schedule ? o.schedule : "none", o.lr_final, o.augment ? o.augment : "none");
    printf("milestones=%d,%d\n", o.milestones[0], o.milestones[1]);
    const ct_head_spec *hs[2] = {&o.head, &o.predictor};
    for (int k = 0; k < 2; k++) {
        printf("%s=", k ? "pred" : "head");
        for (int i = 0; i < hs[k]->n; i++) printf("%s%lld", i ? "," : "", (long long)hs[k]->dims[i]);
        printf("\n%s_bn=%d,%d,%d,%d\n", k ? "pred" : "head", hs[k]->bn_hidden, hs[k]->bias_hidden,
               hs[k]->bias_last, hs[k]->last_bn);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--preset-dump")) return preset_dump(argv[2]);
    if (argc < 5) {
        fprintf(stderr, "usage: method_ref ENCODER OUTDIR --preset NAME [KEY=VALUE ...] [--in NAME FILE] "
                        "[--set NAME FILE] [--steps N]\n");
        return 2;
    }
    const char *model = argv[1], *outdir = argv[2];
    ct_method_options o;
    ct_status st = CT_OK;
    ct_graph *enc = NULL, *g = NULL;
    static binding ins[32], sets[1024];
    int n_ins = 0, n_sets = 0, steps = 1;
    bool pipeline = false; /* run the default pipeline (infer_shapes fold dce cse) on the training graph */
    bool fuse = false;
    static const char *in_names[32], *in_files[32], *set_names[1024], *set_files[1024];
    void **buf = NULL;
    bool *owned = NULL;
    if (strcmp(argv[3], "--preset")) {
        fprintf(stderr, "method_ref: --preset NAME must come first\n");
        return 2;
    }
    if ((st = ct_method_preset(argv[4], &o))) return fail(st);
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--in") && i + 2 < argc && n_ins < 32) {
            in_names[n_ins] = argv[i + 1];
            in_files[n_ins++] = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--set") && i + 2 < argc && n_sets < 1024) {
            set_names[n_sets] = argv[i + 1];
            set_files[n_sets++] = argv[i + 2];
            i += 2;
        } else if (!strcmp(argv[i], "--pipeline")) {
            pipeline = true;
        } else if (!strcmp(argv[i], "--fuse")) { /* the pipeline, then the fuse pass */
            pipeline = fuse = true;
        } else if (!strcmp(argv[i], "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if ((st = set_option(&o, argv[i]))) {
            return fail(st);
        }
    }
    if ((st = ct_model_load(model, &enc))) return fail(st);
    if ((st = ct_method_attach(enc, &o, &g))) goto out;
    if (pipeline) {
        int n_pipe = 0;
        while (ct_default_pipeline[n_pipe]) n_pipe++;
        ct_pass_options popt = {.verify = true};
        if ((st = ct_pass_run(g, ct_default_pipeline, n_pipe, &popt))) goto out;
        const char *fp[] = {"fuse"};
        if (fuse && (st = ct_pass_run(g, fp, 1, &popt))) goto out;
    }

    buf = calloc((size_t)g->n_values, sizeof *buf);
    owned = calloc((size_t)g->n_values, sizeof *owned);
    memset(ins, 0, sizeof ins);
    memset(sets, 0, sizeof sets);
    /* persistent values: private copies (assignments update them) */
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (!v->data) continue;
        size_t nb = ct_value_nbytes(v);
        buf[i] = malloc(nb ? nb : 1);
        memcpy(buf[i], v->data, nb);
        owned[i] = true;
    }
    for (int s = 0; s < n_sets; s++) {
        ct_value *v = ct_graph_find_value(g, set_names[s]);
        if (!v || !buf[v->id]) {
            st = ct_errorf("--set: no persistent value '%s'", set_names[s]);
            goto done;
        }
        if ((st = ct_npy_read(set_files[s], &sets[s].a))) goto done;
        if (sets[s].a.nbytes != ct_value_nbytes(v)) {
            st = ct_errorf("--set %s: %zu bytes, needs %zu", set_names[s], sets[s].a.nbytes, ct_value_nbytes(v));
            goto done;
        }
        memcpy(buf[v->id], sets[s].a.data, sets[s].a.nbytes);
    }
    int ninit = 0;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_PARAM && v->kind != CT_VALUE_STATE) continue;
        if ((st = save(outdir, "init", ninit, v, buf[i]))) goto done;
        printf("init %d %s\n", ninit++, v->name);
    }
    for (int i = 0; i < g->n_inputs; i++) printf("input %s\n", g->inputs[i]->name);
    for (int k = 0; k < n_ins; k++) {
        ct_value *v = ct_graph_find_value(g, in_names[k]);
        if (!v || v->kind != CT_VALUE_INPUT) {
            st = ct_errorf("--in: the graph has no input '%s'", in_names[k]);
            goto done;
        }
        ins[k].v = v;
        if ((st = ct_npy_read(in_files[k], &ins[k].a))) goto done;
        size_t nb = ct_value_nbytes(v);
        if (ins[k].a.nbytes != nb && ins[k].a.nbytes != nb * (size_t)steps) {
            st = ct_errorf("--in %s: %zu bytes, needs %zu (or %d steps of it)", in_names[k], ins[k].a.nbytes, nb,
                           steps);
            goto done;
        }
    }
    for (int i = 0; i < g->n_inputs; i++) {
        bool bound = false;
        for (int k = 0; k < n_ins; k++) bound |= ins[k].v == g->inputs[i];
        if (!bound) {
            st = ct_errorf("input '%s' is not bound (--in NAME FILE)", g->inputs[i]->name);
            goto done;
        }
    }

    for (int step = 0; step < steps; step++) {
        for (int k = 0; k < n_ins; k++) {
            size_t nb = ct_value_nbytes(ins[k].v);
            buf[ins[k].v->id] = (char *)ins[k].a.data + (ins[k].a.nbytes == nb ? 0 : nb * (size_t)step);
        }
        if ((st = ct_eval_graph(g, buf, owned))) goto done;
        if ((st = save(outdir, "loss", step, g->outputs[0], buf[g->outputs[0]->id]))) goto done;
        printf("loss %d\n", step);
        if (step == steps - 1) {
            int ng = 0;
            for (int i = 1; i < g->n_outputs; i++) {
                const ct_value *v = g->outputs[i];
                if (strncmp(v->name, "grad/", 5)) continue;
                if ((st = save(outdir, "grad", ng, v, buf[v->id]))) goto done;
                printf("grad %d %s\n", ng++, v->name + 5);
            }
        }
        /* state updates: read every source first, then write */
        void **tmp = calloc((size_t)(g->n_assigns ? g->n_assigns : 1), sizeof *tmp);
        for (int a = 0; a < g->n_assigns; a++) {
            size_t nb = ct_value_nbytes(g->assigns[a].src);
            tmp[a] = malloc(nb ? nb : 1);
            memcpy(tmp[a], buf[g->assigns[a].src->id], nb);
        }
        for (int a = 0; a < g->n_assigns; a++) {
            memcpy(buf[g->assigns[a].dst->id], tmp[a], ct_value_nbytes(g->assigns[a].dst));
            free(tmp[a]);
        }
        free(tmp);
    }
    for (int a = 0; a < g->n_assigns; a++) {
        const ct_value *v = g->assigns[a].dst;
        if ((st = save(outdir, "state", a, v, buf[v->id]))) goto done;
        printf("state %d %s\n", a, v->name);
    }

done:
    for (int i = 0; g && buf && i < g->n_values; i++)
        if (owned[i]) free(buf[i]);
    for (int k = 0; k < n_ins; k++) ct_npy_free(&ins[k].a);
    for (int k = 0; k < n_sets; k++) ct_npy_free(&sets[k].a);
    free(owned);
    free(buf);
out:
    ct_graph_free(g);
    ct_graph_free(enc);
    return st ? fail(st) : 0;
}

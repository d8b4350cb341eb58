/* feature_extract.c — one epoch of a loader through a compiled program:
 * samples are regrouped into program batches in a staging buffer, the last
 * one padded, and the chosen output copied out row by row. */
#include "feature_extract.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ct_status from_data_err(ct_data_err err, const char *what)
{
    ct_status st = ct_errorf("%s: %s", what, err);
    ct_data_err_free(err);
    return st;
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *dims)
{
    size_t j = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < rank && j < n; i++)
        j += (size_t)snprintf(buf + j, n - j, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (j < n) snprintf(buf + j, n - j, ")");
}

/* Run the program on the staged batch and copy its first `used` rows out. */
static ct_status run_batch(ct_rt_program *p, const ct_tensor_desc *in, float *stage /* (B, C, H, W) */,
                           int64_t used, int64_t per_sample, int out_index, int64_t d, float *dst /* (used, d) */)
{
    int64_t B = in->dims[0];
    /* pad with copies of the last real sample: valid input, rows ignored */
    for (int64_t r = used; r < B; r++)
        memcpy(stage + r * per_sample, stage + (used - 1) * per_sample, sizeof(float) * (size_t)per_sample);
    CT_TRY(ct_rt_program_set_input(p, in->name, CT_PT_FLOAT, in->rank, in->dims, stage));
    CT_TRY(ct_rt_program_run(p));
    const float *out = ct_rt_program_tensor(p, out_index); /* (B, d) */
    memcpy(dst, out, sizeof(float) * (size_t)(used * d));
    return CT_OK;
}

ct_status ct_features_extract_ex(ct_rt_program *p, const char *input_name, const char *output_name, ct_loader *l,
                                 const ct_features_options *opt, float **feats, int64_t **labels, int64_t *n,
                                 int64_t *d)
{
    static const ct_features_options defaults = {0};
    if (!opt) opt = &defaults;
    *feats = NULL;
    *labels = NULL;
    *n = *d = 0;
    const ct_program_desc *desc = ct_rt_program_desc(p);
    const ct_loader_config *cfg = ct_loader_config_of(l);
    ct_status st = CT_OK;
    float *stage = NULL, *fbuf = NULL;
    int64_t *lbuf = NULL;

    /* the input */
    if (desc->n_inputs < 1 || desc->n_outputs < 1) return ct_errorf("the program has no input or no output");
    int in_index = desc->inputs[0];
    if (input_name) {
        in_index = -1;
        for (int i = 0; i < desc->n_inputs; i++)
            if (!strcmp(desc->tensors[desc->inputs[i]].name, input_name)) in_index = desc->inputs[i];
        if (in_index < 0) return ct_errorf("the program has no input named '%s'", input_name);
    }
    const ct_tensor_desc *in = &desc->tensors[in_index];
    char shape[200];
    dims_str(shape, sizeof shape, in->rank, in->dims);
    if (in->dtype != CT_PT_FLOAT || in->rank != 4)
        return ct_errorf("input '%s' %s is not a float image batch (B, C, H, W)", in->name, shape);
    if (opt->view < 0 || opt->view >= cfg->n_views)
        return ct_errorf("view %d: the loader has %d view(s)", opt->view, cfg->n_views);
    const ct_aug_view *v = &cfg->views[opt->view];
    if (in->dims[1] != cfg->channels || in->dims[2] != v->size_h || in->dims[3] != v->size_w)
        return ct_errorf("input '%s' %s does not take the loader's images (%d, %d, %d): channels or size differ",
                         in->name, shape, cfg->channels, v->size_h, v->size_w);
    int64_t B = in->dims[0], per_sample = in->dims[1] * in->dims[2] * in->dims[3];

    /* the output */
    int out_index = -1;
    for (int i = 0; i < desc->n_outputs; i++) {
        const char *name = desc->tensors[desc->outputs[i]].name;
        if (!output_name || !strcmp(name, output_name)) {
            out_index = desc->outputs[i];
            break;
        }
    }
    if (out_index < 0) {
        if (ct_rt_program_find(p, output_name) >= 0)
            return ct_errorf("'%s' is not an output of the program (compile it with that value as an output)",
                             output_name);
        return ct_errorf("the program has no output named '%s'", output_name);
    }
    const ct_tensor_desc *out = &desc->tensors[out_index];
    dims_str(shape, sizeof shape, out->rank, out->dims);
    if (out->dtype != CT_PT_FLOAT)
        return ct_errorf("output '%s' %s is not a float tensor (features must be float32)", out->name, shape);
    if (out->rank < 1 || out->dims[0] != B)
        return ct_errorf("output '%s' %s has no leading batch dimension of %lld", out->name, shape, (long long)B);
    int64_t D = 1;
    for (int i = 1; i < out->rank; i++) D *= out->dims[i];
    if (D < 1) return ct_errorf("output '%s' %s is empty", out->name, shape);

    int64_t total = ct_loader_size(l);
    if (cfg->drop_last) total = ct_loader_batches_per_epoch(l) * cfg->batch;
    stage = malloc(sizeof(float) * (size_t)(B * per_sample));
    fbuf = malloc(sizeof(float) * (size_t)((total > 0 ? total : 1) * D));
    lbuf = malloc(sizeof(int64_t) * (size_t)(total > 0 ? total : 1));
    if (!stage || !fbuf || !lbuf) {
        st = ct_errorf("out of memory for %lld x %lld features", (long long)total, (long long)D);
        goto fail;
    }

    ct_data_err err = ct_loader_start_epoch(l, opt->epoch, 0);
    if (err) {
        st = from_data_err(err, "loader");
        goto fail;
    }
    int64_t done = 0, staged = 0; /* rows written; samples in the stage */
    for (;;) {
        const ct_batch *b = NULL;
        if ((err = ct_loader_next(l, &b))) {
            st = from_data_err(err, "loading images");
            goto fail;
        }
        if (!b) break;
        for (int64_t i = 0; i < b->n; i++) {
            if (done + staged >= total) {
                st = ct_errorf("the loader gave more samples than its size (%lld)", (long long)total);
                goto fail;
            }
            memcpy(stage + staged * per_sample, b->views[opt->view] + i * per_sample,
                   sizeof(float) * (size_t)per_sample);
            lbuf[done + staged] = b->labels[i];
            if (++staged == B) {
                if ((st = run_batch(p, in, stage, staged, per_sample, out_index, D, fbuf + done * D))) goto fail;
                done += staged;
                staged = 0;
                if (opt->progress) opt->progress(opt->progress_ctx, done, total);
            }
        }
    }
    if (staged) {
        if ((st = run_batch(p, in, stage, staged, per_sample, out_index, D, fbuf + done * D))) goto fail;
        done += staged;
        if (opt->progress) opt->progress(opt->progress_ctx, done, total);
    }
    if (done != total) {
        st = ct_errorf("the loader gave %lld samples, expected %lld", (long long)done, (long long)total);
        goto fail;
    }
    free(stage);
    *feats = fbuf;
    *labels = lbuf;
    *n = done;
    *d = D;
    return CT_OK;
fail:
    free(stage);
    free(fbuf);
    free(lbuf);
    return st;
}

ct_status ct_features_extract(ct_rt_program *p, const char *input_name, const char *output_name, ct_loader *l,
                              float **feats, int64_t **labels, int64_t *n, int64_t *d)
{
    return ct_features_extract_ex(p, input_name, output_name, l, NULL, feats, labels, n, d);
}

/* methods.c — the contrastive methods as graph builders (method.h): the
 * encoder cut at its representation layer is instantiated once per forward
 * pass, heads and losses are plain IR ops, state updates are assignments.
 * Semantics and update order follow /work/shared/METHODS.md. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autodiff.h"
#include "fuse_loss.h"
#include "method.h"
#include "optim.h"
#include "passes.h"

/* ---------------------------------------------------------------- presets */

static const char *const preset_names[] = {"moco-v1", "moco-v2", "moco-cifar", "moco-lowcompute", "simclr",
                                           "supcon",  "byol",    "simsiam",    NULL};

const char *const *ct_method_preset_names(void) { return preset_names; }

static ct_head_spec head_mlp(int n, const int64_t *dims)
{
    ct_head_spec h = {.n = n, .bias_hidden = true, .bias_last = true};
    for (int i = 0; i < n; i++) h.dims[i] = dims[i];
    return h;
}

ct_status ct_method_preset(const char *name, ct_method_options *o)
{
    memset(o, 0, sizeof *o);
    o->preset = name;
    o->views = 2;
    o->bn_splits = 1;
    o->seed = 0;
    o->have_labels = -1;
    o->use_momentum = true;
    o->contrast_all = true;
    o->batch = 256;
    if (!name) return ct_errorf("no method preset given");
    if (!strncmp(name, "moco", 4)) {
        o->kind = CT_METHOD_MOCO;
        o->optimizer = "sgd";
        o->opt_momentum = 0.9;
        o->epochs = 200;
        o->queue_size = 65536;
        o->momentum = 0.999;
        o->shuffle_bn = true;
        o->bn_splits = 8; /* shuffle BN over 8 GPUs of 32 images, on one device */
        o->fuse_loss = true;
        if (!strcmp(name, "moco-v1")) {
            o->head = head_mlp(1, (int64_t[]){128});
            o->temperature = 0.07;
            o->lr = 0.03;
            o->weight_decay = 1e-4;
            o->schedule = "step";
            o->milestones[0] = 120;
            o->milestones[1] = 160;
            o->augment = "moco-v1";
        } else if (!strcmp(name, "moco-v2")) {
            o->head = head_mlp(2, (int64_t[]){0, 128});
            o->temperature = 0.2;
            o->lr = 0.03;
            o->weight_decay = 1e-4;
            o->schedule = "cosine";
            o->augment = "moco-v2";
        } else if (!strcmp(name, "moco-cifar")) {
            o->head = head_mlp(1, (int64_t[]){128});
            o->temperature = 0.1;
            o->batch = 512;
            o->lr = 0.06;
            o->weight_decay = 5e-4;
            o->queue_size = 4096;
            o->momentum = 0.99;
            o->bn_splits = 8;
            o->schedule = "cosine";
            o->augment = "moco-v2";
        } else if (!strcmp(name, "moco-lowcompute")) {
            o->head = head_mlp(3, (int64_t[]){100, 50, 25});
            o->temperature = 0.05;
            o->optimizer = "adam";
            o->opt_momentum = 0;
            o->lr = 1e-3;
            o->weight_decay = 1e-6;
            o->queue_size = 8192;
            o->schedule = "cosine";
            o->lr_final = 1e-5;
            o->augment = "moco-v2";
            o->shuffle_bn = false;
            o->bn_splits = 1;
        }
        if (o->head.n) return CT_OK;
    }
    if (!strcmp(name, "simclr")) {
        o->kind = CT_METHOD_SIMCLR;
        o->head = head_mlp(2, (int64_t[]){0, 128});
        o->temperature = 0.5;
        o->optimizer = "lars";
        o->batch = 4096;
        o->lr = 4.8; /* 0.3 x B/256 */
        o->opt_momentum = 0.9;
        o->weight_decay = 1e-6;
        o->epochs = 100;
        o->schedule = "cosine";
        o->augment = "simclr";
        o->fuse_loss = true;
        return CT_OK;
    }
    if (!strcmp(name, "supcon")) {
        o->kind = CT_METHOD_SUPCON;
        o->head = head_mlp(2, (int64_t[]){0, 128});
        o->temperature = 0.07;
        o->base_temperature = 0.07;
        o->use_labels = true;
        o->optimizer = "sgd";
        o->batch = 256;
        o->lr = 0.05;
        o->opt_momentum = 0.9;
        o->weight_decay = 1e-4;
        o->epochs = 1000;
        o->schedule = "cosine";
        o->augment = "simclr";
        o->fuse_loss = true;
        return CT_OK;
    }
    if (!strcmp(name, "byol")) {
        o->kind = CT_METHOD_BYOL;
        o->head = head_mlp(2, (int64_t[]){4096, 256});
        o->head.bn_hidden = true;
        o->predictor = o->head;
        o->momentum = 0.99;
        o->optimizer = "adam";
        o->lr = 3e-4;
        o->epochs = 100;
        o->schedule = "constant";
        o->augment = "byol";
        return CT_OK;
    }
    if (!strcmp(name, "simsiam")) {
        o->kind = CT_METHOD_SIMSIAM;
        o->head = (ct_head_spec){.n = 3, .dims = {2048, 2048, 2048}, .bn_hidden = true, .last_bn = 2};
        o->predictor = (ct_head_spec){.n = 2, .dims = {512, 2048}, .bn_hidden = true, .bias_last = true};
        o->optimizer = "sgd";
        o->batch = 512;
        o->lr = 0.1; /* 0.05 x B/256 */
        o->opt_momentum = 0.9;
        o->weight_decay = 1e-4;
        o->epochs = 100;
        o->schedule = "cosine";
        o->augment = "moco-v2";
        return CT_OK;
    }
    return ct_errorf("unknown method preset '%s' (known: moco-v1 moco-v2 moco-cifar moco-lowcompute simclr supcon "
                     "byol simsiam)",
                     name);
}

/* ---------------------------------------------------------------- checks */

static int64_t head_out(const ct_head_spec *h, int64_t d)
{
    if (h->n == 0) return d;
    return h->dims[h->n - 1] ? h->dims[h->n - 1] : d;
}

ct_status ct_method_check(const ct_method_options *o, int64_t d)
{
    const char *pre = o->preset ? o->preset : "method";
    if (o->batch <= 0) return ct_errorf("%s: batch must be > 0 (got %lld)", pre, (long long)o->batch);
    bool contrastive = o->kind == CT_METHOD_MOCO || o->kind == CT_METHOD_SIMCLR || o->kind == CT_METHOD_SUPCON;
    if (contrastive && !(o->temperature > 0))
        return ct_errorf("%s: temperature must be > 0 (got %g)", pre, o->temperature);
    if (o->kind == CT_METHOD_SUPCON && !(o->base_temperature > 0))
        return ct_errorf("%s: base_temperature must be > 0 (got %g)", pre, o->base_temperature);
    if ((o->kind == CT_METHOD_MOCO || o->kind == CT_METHOD_BYOL) && !(o->momentum >= 0 && o->momentum <= 1))
        return ct_errorf("%s: momentum must be in [0, 1] (got %g)", pre, o->momentum);
    if (o->kind == CT_METHOD_SUPCON && o->views < 2)
        return ct_errorf("%s: SupCon needs n_views >= 2 (got %d)", pre, o->views);
    if (o->kind != CT_METHOD_SUPCON && o->views != 2)
        return ct_errorf("%s: this method takes 2 views (got %d)", pre, o->views);
    if (o->kind == CT_METHOD_SUPCON && o->use_labels && o->use_mask)
        return ct_errorf("%s: SupCon takes labels or a mask, not both", pre);
    if (o->kind == CT_METHOD_SUPCON && o->use_labels && o->have_labels == 0)
        return ct_errorf("%s: SupCon with labels needs a labelled dataset, and this one has no labels (use the "
                         "unsupervised form, use_labels off, which is SimCLR's loss)",
                         pre);
    int ranks = o->ranks > 0 ? o->ranks : 1;
    if (ranks > 65536) return ct_errorf("%s: %d ranks (at most 65536)", pre, ranks);
    if (o->sync_bn && ranks < 2) return ct_errorf("%s: SyncBatchNorm needs ranks > 1", pre);
    if (o->sync_bn && o->bn_splits > 1) return ct_errorf("%s: SyncBatchNorm and BatchNorm splits do not combine", pre);
    if (o->sync_bn && o->shuffle_bn)
        return ct_errorf("%s: SyncBatchNorm makes shuffle BN pointless (every rank sees the global statistics); "
                         "choose one", pre);
    if (ranks > 1 && o->kind == CT_METHOD_SUPCON && o->use_mask)
        return ct_errorf("%s: a mask input is per rank; with ranks > 1 give labels instead", pre);
    if (!(o->bucket_mb >= 0)) return ct_errorf("%s: bucket size must be >= 0 MiB (got %g)", pre, o->bucket_mb);
    if (o->kind == CT_METHOD_MOCO) {
        int64_t keys = (o->symmetric ? 2 * o->batch : o->batch) * ranks;
        if (o->queue_size <= 0) return ct_errorf("%s: queue size K must be > 0", pre);
        if (keys > o->queue_size)
            return ct_errorf("%s: %lld keys per step (batch %lld%s%s) do not fit the queue K = %lld", pre,
                             (long long)keys, (long long)o->batch, o->symmetric ? ", symmetric" : "",
                             ranks > 1 ? ", all ranks" : "", (long long)o->queue_size);
        if (o->dataset_size > 0 && o->queue_size > o->dataset_size)
            fprintf(stderr,
                    "contra: warning: %s: the queue (K = %lld) is larger than the dataset (%lld images): it will "
                    "hold several keys of the same image\n",
                    pre, (long long)o->queue_size, (long long)o->dataset_size);
    }
    if (o->bn_splits < 1) return ct_errorf("%s: bn_splits must be >= 1 (got %d)", pre, o->bn_splits);
    int64_t per_fwd = o->batch * ((o->kind == CT_METHOD_SIMCLR || o->kind == CT_METHOD_SUPCON ||
                                   o->kind == CT_METHOD_BYOL) ? o->views : 1);
    if (per_fwd % o->bn_splits)
        return ct_errorf("%s: batch %lld is not divisible by %d BatchNorm splits", pre, (long long)per_fwd,
                         o->bn_splits);
    const ct_head_spec *hs[2] = {&o->head, &o->predictor};
    for (int k = 0; k < 2; k++) {
        if (hs[k]->n < 0 || hs[k]->n > CT_HEAD_MAX)
            return ct_errorf("%s: a head has %d layers (at most %d)", pre, hs[k]->n, CT_HEAD_MAX);
        for (int i = 0; i < hs[k]->n; i++)
            if (hs[k]->dims[i] < 0) return ct_errorf("%s: head width %lld is negative", pre, (long long)hs[k]->dims[i]);
    }
    if (o->head_in > 0 && d > 0 && o->head_in != d)
        return ct_errorf("%s: head size mismatch: the head expects %lld features but the representation layer gives "
                         "%lld (choose another layer, or a head for %lld)",
                         pre, (long long)o->head_in, (long long)d, (long long)d);
    if (o->kind == CT_METHOD_BYOL || o->kind == CT_METHOD_SIMSIAM) {
        if (o->predictor.n < 1) return ct_errorf("%s: the predictor needs at least one layer", pre);
        if (d > 0 && head_out(&o->predictor, d) != head_out(&o->head, d))
            return ct_errorf("%s: head size mismatch: the predictor outputs %lld features but the projector %lld",
                             pre, (long long)head_out(&o->predictor, d), (long long)head_out(&o->head, d));
    }
    if (o->optimizer) {
        bool adam = !strcmp(o->optimizer, "adam") || !strcmp(o->optimizer, "adamw");
        if (strcmp(o->optimizer, "sgd") && !adam && strcmp(o->optimizer, "lars"))
            return ct_errorf("%s: unknown optimizer '%s' (sgd adam adamw lars)", pre, o->optimizer);
        if (!(o->lr >= 0)) return ct_errorf("%s: learning rate must be >= 0 (got %g)", pre, o->lr);
        if (!(o->weight_decay >= 0)) return ct_errorf("%s: weight decay must be >= 0 (got %g)", pre, o->weight_decay);
        if (adam && o->lr >= 0.1)
            fprintf(stderr,
                    "contra: warning: %s: learning rate %g is LARS/SGD-sized; Adam usually wants ~1e-3 or less\n",
                    pre, o->lr);
        if (!adam && !(o->opt_momentum >= 0 && o->opt_momentum < 1))
            return ct_errorf("%s: optimizer momentum must be in [0, 1) (got %g)", pre, o->opt_momentum);
    }
    return CT_OK;
}

/* ---------------------------------------------------------------- builder */

typedef struct {
    ct_graph *g;
    ct_status err;
    uint64_t rng;
    ct_value *m_in, *one_minus_m_in; /* momentum as a graph input (momentum_input), else NULL */
    int world;                       /* ranks (1: a single process) */
    ct_value *rank_rows;             /* input int64 [B]: this rank's rows of the global batch (shuffle BN) */
} bld;

static ct_node *emit(bld *b, ct_op op, const char *name, int n_in, ct_value *const *in, int n_out)
{
    if (b->err) return NULL;
    ct_value *outs[8];
    CT_ASSERT(n_out <= 8);
    ct_arena *ar = &b->g->arena;
    for (int i = 0; i < n_out; i++) {
        const char *vn = n_out == 1 ? name : ct_arena_printf(ar, "%s:%d", name, i);
        outs[i] = ct_graph_add_value(b->g, ct_graph_unique_name(b->g, vn), CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    }
    const char *nn = ct_graph_unique_name(b->g, ct_arena_printf(ar, "%s/op", name));
    return ct_graph_add_node(b->g, op, nn, n_in, in, n_out, outs);
}

static ct_value *fin(bld *b, ct_node *n)
{
    if (b->err || !n) return NULL;
    b->err = ct_infer_node(b->g, n);
    return b->err ? NULL : n->out[0];
}

static ct_value *op1(bld *b, ct_op op, const char *name, ct_value *a)
{
    if (b->err) return NULL;
    return fin(b, emit(b, op, name, 1, &a, 1));
}

static ct_value *op2(bld *b, ct_op op, const char *name, ct_value *a, ct_value *c)
{
    if (b->err) return NULL;
    return fin(b, emit(b, op, name, 2, (ct_value *[]){a, c}, 1));
}

static ct_value *cst_f(bld *b, const char *name, float v)
{
    ct_shape s = {.rank = 0};
    return ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, name), CT_VALUE_CONST, CT_F32, &s, &v);
}

static ct_value *cst_i64(bld *b, const char *name, const int64_t *v, int n)
{
    ct_shape s = {.rank = 1, .dims = {n}};
    return ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, name), CT_VALUE_CONST, CT_I64, &s, v);
}

/* Reduce over axis 1 with keepdims. */
static ct_value *reduce1(bld *b, ct_op op, const char *name, ct_value *x, int keep)
{
    if (b->err) return NULL;
    int64_t ax = 1;
    ct_node *n = emit(b, op, name, 2, (ct_value *[]){x, cst_i64(b, "axes", &ax, 1)}, 1);
    ct_node_set_int(b->g, n, "keepdims", keep);
    return fin(b, n);
}

static ct_value *reshape(bld *b, const char *name, ct_value *x, const int64_t *dims, int rank)
{
    return op2(b, CT_OP_RESHAPE, name, x, cst_i64(b, "shape", dims, rank));
}

/* norm(x) = x / max(||x||_2, 1e-12) per row of x [N, D]. */
static ct_value *l2norm(bld *b, const char *name, ct_value *x)
{
    ct_value *nrm = reduce1(b, CT_OP_REDUCE_L2, ct_arena_printf(&b->g->arena, "%s/l2", name), x, 1);
    ct_value *cl = op2(b, CT_OP_MAX, ct_arena_printf(&b->g->arena, "%s/clamp", name), nrm, cst_f(b, "eps", 1e-12f));
    return op2(b, CT_OP_DIV, name, x, cl);
}

/* Rows [lo, hi) of x along axis 0. */
static ct_value *rows(bld *b, const char *name, ct_value *x, int64_t lo, int64_t hi)
{
    if (b->err) return NULL;
    int64_t z = 0;
    ct_value *in[4] = {x, cst_i64(b, "starts", &lo, 1), cst_i64(b, "ends", &hi, 1), cst_i64(b, "axes", &z, 1)};
    return fin(b, emit(b, CT_OP_SLICE, name, 4, in, 1));
}

static ct_value *concat0(bld *b, const char *name, ct_value *const *xs, int n, int axis)
{
    if (b->err) return NULL;
    ct_node *nd = emit(b, CT_OP_CONCAT, name, n, xs, 1);
    ct_node_set_int(b->g, nd, "axis", axis);
    return fin(b, nd);
}

/* The ranks' x stacked in rank order (world 1: x itself). */
static ct_value *all_gather(bld *b, const char *name, ct_value *x)
{
    if (b->err || b->world <= 1) return x;
    ct_node *nd = emit(b, CT_OP_ALL_GATHER, name, 1, &x, 1);
    ct_node_set_int(b->g, nd, "world", b->world);
    return fin(b, nd);
}

/* x's rows idx (Gather on axis 0). */
static ct_value *gather_rows(bld *b, const char *name, ct_value *x, ct_value *idx)
{
    ct_node *gn = emit(b, CT_OP_GATHER, name, 2, (ct_value *[]){x, idx}, 1);
    if (gn) ct_node_set_int(b->g, gn, "axis", 0);
    return fin(b, gn);
}

/* xorshift64* and Box-Muller: deterministic initialisation from the seed. */
static double rng_u01(bld *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return ((double)((b->rng * UINT64_C(2685821657736338717)) >> 11) + 0.5) / 9007199254740992.0;
}

static double rng_normal(bld *b)
{
    double u = rng_u01(b), v = rng_u01(b);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* ---------------------------------------------------------------- encoder */

typedef struct {
    ct_graph *enc;      /* the caller's encoder after the import pipeline (a clone) */
    bool *body;         /* per node of enc: needed for the representation */
    bool *bn_buffer;    /* per value of enc: a BatchNorm running statistic */
    ct_value *rep;      /* representation value of enc */
    int64_t d;          /* its width after flattening */
} enc_info;

static ct_status enc_prepare(ct_graph *encoder, const char *layer, enc_info *e)
{
    ct_graph *g = ct_graph_clone(encoder);
    e->enc = g;
    int n_pipe = 0;
    while (ct_default_pipeline[n_pipe]) n_pipe++;
    ct_pass_options popt = {0};
    CT_TRY(ct_pass_run(g, ct_default_pipeline, n_pipe, &popt));
    const char *src = g->source_path ? g->source_path : g->name ? g->name : "the encoder";
    if (g->n_inputs != 1) return ct_errorf("%s: an encoder takes one image input (this one has %d)", src, g->n_inputs);
    if (g->inputs[0]->dtype != CT_F32)
        return ct_errorf("%s: the encoder's input must be float32 (got %s)", src, ct_dtype_name(g->inputs[0]->dtype));
    if (g->n_outputs < 1 || g->n_nodes < 1) return ct_errorf("%s: the encoder has no output", src);
    ct_value *rep = NULL;
    if (!layer || !layer[0]) {
        rep = g->outputs[0];
        const ct_node *p = rep->producer;
        if (p && (p->op == CT_OP_GEMM || p->op == CT_OP_MATMUL)) rep = p->in[0];
    } else if (layer[0] == '-' && layer[1] >= '0' && layer[1] <= '9') {
        char *end;
        long k = strtol(layer + 1, &end, 10);
        if (*end || k < 1 || k > g->n_nodes)
            return ct_errorf("%s: representation layer %s does not exist (the encoder has %d nodes: use -1 .. -%d "
                             "or a value name)",
                             src, layer, g->n_nodes, g->n_nodes);
        rep = g->nodes[g->n_nodes - k]->out[0];
    } else {
        rep = ct_graph_find_value(g, layer);
        if (!rep) {
            /* a module name, as byol-pytorch's hidden_layer="avgpool": the output of the last node
             * PyTorch's exporter named "/<module path>/..." */
            const char *mp = ct_arena_printf(&g->arena, "/%s/", layer);
            for (int i = 0; i < g->n_nodes; i++)
                if (g->nodes[i]->name && !strncmp(g->nodes[i]->name, mp, strlen(mp))) rep = g->nodes[i]->out[0];
        }
        if (!rep || !rep->producer)
            return ct_errorf("%s: representation layer '%s' does not exist (%s; the encoder's output is '%s')", src,
                             layer, rep ? "it is not computed by a node" : "no value or module has that name",
                             g->outputs[0]->name);
    }
    if (!rep->shape_known || rep->shape.rank < 2 || !ct_dtype_is_float(rep->dtype))
        return ct_errorf("%s: representation layer '%s' must be a float tensor [N, ...]", src, rep->name);
    e->rep = rep;
    e->d = 1;
    for (int i = 1; i < rep->shape.rank; i++) e->d *= rep->shape.dims[i];
    e->body = calloc((size_t)g->n_nodes, sizeof *e->body);
    e->bn_buffer = calloc((size_t)g->n_values, sizeof *e->bn_buffer);
    bool *need = calloc((size_t)g->n_values, sizeof *need);
    need[rep->id] = true;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        const ct_node *n = g->nodes[i];
        bool used = false;
        for (int j = 0; j < n->n_out; j++) used |= n->out[j] && need[n->out[j]->id];
        if (!used) continue;
        e->body[i] = true;
        for (int j = 0; j < n->n_in; j++)
            if (n->in[j]) need[n->in[j]->id] = true;
        if (n->op == CT_OP_BATCH_NORM) e->bn_buffer[n->in[3]->id] = e->bn_buffer[n->in[4]->id] = true;
    }
    free(need);
    return CT_OK;
}

static bool enc_trainable(const enc_info *e, const ct_value *v)
{
    return v->kind == CT_VALUE_PARAM && ct_dtype_is_float(v->dtype) && !e->bn_buffer[v->id] && !v->frozen;
}

/* Copy the encoder's persistent values used by the body into g: map[id]
 * gets the copy. prefix NULL: the online/query encoder (names kept);
 * otherwise copies named prefix+name, trainable ones as STATE. Non-float
 * parameters and constants are shared (one copy, from shared[] if given). */
static void enc_copy_values(bld *b, const enc_info *e, const char *prefix, ct_value **map, ct_value *const *shared)
{
    const ct_graph *eg = e->enc;
    bool *used = calloc((size_t)eg->n_values, sizeof *used);
    for (int i = 0; i < eg->n_nodes; i++) {
        if (!e->body[i]) continue;
        for (int j = 0; j < eg->nodes[i]->n_in; j++)
            if (eg->nodes[i]->in[j]) used[eg->nodes[i]->in[j]->id] = true;
    }
    for (int i = 0; i < eg->n_values; i++) {
        ct_value *v = eg->values[i];
        if (!used[i] || v->kind == CT_VALUE_TEMP || v->kind == CT_VALUE_INPUT) continue;
        bool own = enc_trainable(e, v) || e->bn_buffer[i];
        if (!own && shared && shared[i]) {
            map[i] = shared[i];
            continue;
        }
        ct_value_kind k = v->kind;
        if (k == CT_VALUE_PARAM && !own) k = CT_VALUE_CONST;
        if (prefix && enc_trainable(e, v)) k = CT_VALUE_STATE;
        const char *name = prefix && own ? ct_arena_printf(&b->g->arena, "%s%s", prefix, v->name) : v->name;
        ct_value *c = ct_graph_add_tensor(b->g, name, k, v->dtype, &v->shape, v->data);
        c->frozen = v->frozen;
        map[i] = c;
    }
    free(used);
}

static void copy_attrs(ct_graph *g, ct_node *dst, const ct_node *src)
{
    for (int a = 0; a < src->n_attr; a++) {
        const ct_attr *at = &src->attrs[a];
        switch (at->type) {
        case CT_ATTR_INT: ct_node_set_int(g, dst, at->name, at->i); break;
        case CT_ATTR_FLOAT: ct_node_set_float(g, dst, at->name, at->f); break;
        case CT_ATTR_STRING: ct_node_set_string(g, dst, at->name, at->s); break;
        case CT_ATTR_INTS: ct_node_set_ints(g, dst, at->name, at->ints, at->n); break;
        case CT_ATTR_FLOATS: ct_node_set_floats(g, dst, at->name, at->floats, at->n); break;
        default: {
            /* strings and tensors: deep copy into g's arena */
            ct_attr c = *at;
            c.name = ct_arena_strdup(&g->arena, at->name);
            if (at->type == CT_ATTR_STRINGS) {
                c.strings = ct_arena_alloc(&g->arena, sizeof(char *) * (size_t)(at->n ? at->n : 1));
                for (int i = 0; i < at->n; i++) c.strings[i] = ct_arena_strdup(&g->arena, at->strings[i]);
            } else if (at->type == CT_ATTR_TENSOR && at->t) {
                ct_value *t = ct_arena_alloc(&g->arena, sizeof *t);
                *t = *at->t;
                t->name = ct_arena_strdup(&g->arena, at->t->name);
                size_t nb = ct_value_nbytes(at->t);
                if (at->t->data && nb) {
                    t->data = ct_arena_alloc(&g->arena, nb);
                    memcpy(t->data, at->t->data, nb);
                }
                c.t = t;
            }
            ct_node_add_attr(g, dst, &c);
        }
        }
    }
}

/* One forward pass of the encoder body on x, with persistent values from
 * map; returns the representation flattened to [N, d]. */
static ct_value *enc_forward(bld *b, const enc_info *e, ct_value *x, const char *tag, ct_value *const *map)
{
    if (b->err) return NULL;
    const ct_graph *eg = e->enc;
    ct_value **loc = calloc((size_t)eg->n_values, sizeof *loc);
    memcpy(loc, map, sizeof *loc * (size_t)eg->n_values);
    loc[eg->inputs[0]->id] = x;
    for (int i = 0; i < eg->n_nodes && !b->err; i++) {
        if (!e->body[i]) continue;
        const ct_node *n = eg->nodes[i];
        ct_value *in[64], *out[64];
        CT_ASSERT(n->n_in <= 64 && n->n_out <= 64);
        for (int j = 0; j < n->n_in; j++) {
            in[j] = n->in[j] ? loc[n->in[j]->id] : NULL;
            if (n->in[j] && !in[j]) {
                b->err = ct_errorf("encoder node '%s': input '%s' has no value", n->name, n->in[j]->name);
                break;
            }
        }
        if (b->err) break;
        for (int j = 0; j < n->n_out; j++)
            out[j] = n->out[j] ? ct_graph_add_value(b->g, ct_graph_unique_name(b->g, ct_arena_printf(&b->g->arena,
                                                                                                     "%s/%s", tag,
                                                                                                     n->out[j]->name)),
                                                    CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL)
                             : NULL;
        ct_node *c = ct_graph_add_node(b->g, n->op,
                                       ct_graph_unique_name(b->g, ct_arena_printf(&b->g->arena, "%s/%s", tag,
                                                                                  n->name ? n->name : "node")),
                                       n->n_in, in, n->n_out, out);
        copy_attrs(b->g, c, n);
        b->err = ct_infer_node(b->g, c);
        for (int j = 0; j < n->n_out; j++)
            if (n->out[j]) loc[n->out[j]->id] = out[j];
    }
    ct_value *r = b->err ? NULL : loc[e->rep->id];
    free(loc);
    if (r && r->shape.rank != 2) r = reshape(b, ct_arena_printf(&b->g->arena, "%s/flat", tag), r,
                                             (int64_t[]){r->shape.dims[0], e->d}, 2);
    return r;
}

/* ---------------------------------------------------------------- heads */

/* The values of a head: per Linear layer i its weight (out, in) and bias
 * (out), and the BatchNorm1d that follows it, if any. */
typedef struct {
    ct_value *w[CT_HEAD_MAX], *bias[CT_HEAD_MAX];
    ct_value *bn_scale[CT_HEAD_MAX], *bn_b[CT_HEAD_MAX], *bn_mean[CT_HEAD_MAX], *bn_var[CT_HEAD_MAX];
    int n;
} head_params;

#define HEAD_SLOTS (6 * CT_HEAD_MAX)

/* Every value slot of a head, in a fixed order (some NULL). */
static void head_slots(head_params *hp, ct_value ***slot)
{
    ct_value **arrays[6] = {hp->w, hp->bias, hp->bn_scale, hp->bn_b, hp->bn_mean, hp->bn_var};
    for (int a = 0; a < 6; a++)
        for (int i = 0; i < CT_HEAD_MAX; i++) slot[a * CT_HEAD_MAX + i] = &arrays[a][i];
}

static ct_value *new_param(bld *b, const char *name, ct_value_kind k, int rank, int64_t d0, int64_t d1, int mode,
                           double bound)
{
    ct_shape s = {.rank = rank, .dims = {d0, d1}};
    int64_t n = ct_shape_numel(&s);
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++)
        v[i] = mode == 0 ? (float)((2 * rng_u01(b) - 1) * bound) : mode == 1 ? 1.0f : 0.0f;
    ct_value *p = ct_graph_add_tensor(b->g, name, k, CT_F32, &s, v);
    free(v);
    return p;
}

/* Parameters of a head (PyTorch's default Linear init, uniform +-1/sqrt(in)). */
static void head_create(bld *b, const ct_head_spec *h, int64_t d, const char *prefix, head_params *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->n = h->n;
    int idx = 0;
    int64_t in = d;
    for (int i = 0; i < h->n; i++) {
        int64_t out = h->dims[i] ? h->dims[i] : d;
        bool last = i == h->n - 1;
        double bound = 1.0 / sqrt((double)in);
        hp->w[i] = new_param(b, ct_arena_printf(&b->g->arena, "%s.%d.weight", prefix, idx), CT_VALUE_PARAM, 2, out,
                             in, 0, bound);
        if (last ? h->bias_last : h->bias_hidden)
            hp->bias[i] = new_param(b, ct_arena_printf(&b->g->arena, "%s.%d.bias", prefix, idx), CT_VALUE_PARAM, 1,
                                    out, 0, 0, bound);
        idx++;
        int bn = last ? h->last_bn : h->bn_hidden ? 1 : 0;
        if (bn) {
            ct_value_kind ak = bn == 1 ? CT_VALUE_PARAM : CT_VALUE_CONST;
            const char *an = bn == 1 ? "%s.%d.weight" : "%s.%d.affine_weight";
            hp->bn_scale[i] = new_param(b, ct_arena_printf(&b->g->arena, an, prefix, idx), ak, 1, out, 0, 1, 0);
            an = bn == 1 ? "%s.%d.bias" : "%s.%d.affine_bias";
            hp->bn_b[i] = new_param(b, ct_arena_printf(&b->g->arena, an, prefix, idx), ak, 1, out, 0, 2, 0);
            hp->bn_mean[i] = new_param(b, ct_arena_printf(&b->g->arena, "%s.%d.running_mean", prefix, idx),
                                       CT_VALUE_STATE, 1, out, 0, 2, 0);
            hp->bn_var[i] = new_param(b, ct_arena_printf(&b->g->arena, "%s.%d.running_var", prefix, idx),
                                      CT_VALUE_STATE, 1, out, 0, 1, 0);
            idx++;
        }
        if (!last) idx++; /* ReLU */
        in = out;
    }
}

/* A copy of a head's values as STATE named prefix + name (key/target). */
static void head_copy(bld *b, const head_params *src, const char *prefix, head_params *dst)
{
    *dst = *src;
    ct_value **ss[HEAD_SLOTS], **ds[HEAD_SLOTS];
    head_slots((head_params *)src, ss);
    head_slots(dst, ds);
    for (int i = 0; i < HEAD_SLOTS; i++) {
        ct_value *v = *ss[i];
        if (!v) continue;
        ct_value_kind k = v->kind == CT_VALUE_CONST ? CT_VALUE_CONST : CT_VALUE_STATE;
        *ds[i] = ct_graph_add_tensor(b->g, ct_arena_printf(&b->g->arena, "%s%s", prefix, v->name), k, v->dtype,
                                     &v->shape, v->data);
    }
}

static ct_value *head_forward(bld *b, const head_params *hp, ct_value *x, const char *tag)
{
    for (int i = 0; i < hp->n && !b->err; i++) {
        bool last = i == hp->n - 1;
        const char *nm = ct_arena_printf(&b->g->arena, "%s/fc%d", tag, i);
        ct_value *in[3] = {x, hp->w[i], hp->bias[i]};
        ct_node *n = emit(b, CT_OP_GEMM, nm, hp->bias[i] ? 3 : 2, in, 1);
        if (!n) return NULL;
        ct_node_set_int(b->g, n, "transB", 1);
        x = fin(b, n);
        if (hp->bn_scale[i]) {
            ct_value *bin[5] = {x, hp->bn_scale[i], hp->bn_b[i], hp->bn_mean[i], hp->bn_var[i]};
            ct_node *bn = emit(b, CT_OP_BATCH_NORM, ct_arena_printf(&b->g->arena, "%s/bn%d", tag, i), 5, bin, 1);
            if (!bn) return NULL;
            ct_node_set_float(b->g, bn, "epsilon", 1e-5f);
            ct_node_set_float(b->g, bn, "momentum", 0.9f);
            x = fin(b, bn);
        }
        if (!last) x = op1(b, CT_OP_RELU, ct_arena_printf(&b->g->arena, "%s/relu%d", tag, i), x);
    }
    return x;
}

/* ---------------------------------------------------------------- state helpers */

/* θ' = m θ + (1 - m) θ_src (float32 arithmetic in PyTorch's order). */
static ct_value *ema(bld *b, ct_value *theta, ct_value *src, double m, const char *name)
{
    ct_value *a = op2(b, CT_OP_MUL, ct_arena_printf(&b->g->arena, "%s/m", name), theta,
                      b->m_in ? b->m_in : cst_f(b, "m", (float)m));
    ct_value *c = op2(b, CT_OP_MUL, ct_arena_printf(&b->g->arena, "%s/1-m", name), src,
                      b->one_minus_m_in ? b->one_minus_m_in : cst_f(b, "one_minus_m", (float)(1.0 - m)));
    return op2(b, CT_OP_ADD, name, a, c);
}

/* After ct_bn_train: a STATE updated by several forward passes (MoCo's
 * symmetric loss, SimSiam's two views) gets one assignment per pass; chain
 * them in node order (each pass reads the previous pass's statistics) and
 * keep only the last one. */
static void chain_assigns(bld *b)
{
    ct_graph *g = b->g;
    int n = g->n_assigns;
    bool *drop = calloc((size_t)(n ? n : 1), sizeof *drop);
    for (int i = 0; i < n; i++) {
        if (drop[i]) continue;
        ct_value *dst = g->assigns[i].dst;
        int prev = i;
        for (int j = i + 1; j < n; j++) {
            if (g->assigns[j].dst != dst) continue;
            ct_node *p = g->assigns[j].src->producer;
            /* the statistics carried over are not differentiated */
            ct_value *carry = op1(b, CT_OP_STOP_GRADIENT,
                                  ct_arena_printf(&g->arena, "%s/carried", dst->name), g->assigns[prev].src);
            if (p && carry)
                for (int k = 0; k < p->n_in; k++)
                    if (p->in[k] == dst) p->in[k] = carry;
            drop[prev] = true;
            prev = j;
        }
    }
    int w = 0;
    for (int i = 0; i < n; i++)
        if (!drop[i]) g->assigns[w++] = g->assigns[i];
    g->n_assigns = w;
    free(drop);
}

/* ---------------------------------------------------------------- losses */

static ct_value *input_view(bld *b, const enc_info *e, const char *name, int64_t batch)
{
    ct_shape s = e->enc->inputs[0]->shape;
    s.dims[0] = batch;
    ct_value *v = ct_graph_add_value(b->g, name, CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(b->g, v);
    return v;
}

/* MoCo's contrastive loss of one (query view, key view) pair; *k_out: the keys. */
static ct_value *moco_pair(bld *b, const ct_method_options *o, const enc_info *e, ct_value *const *qmap,
                           const head_params *qh, ct_value *const *kmap, const head_params *kh, ct_value *queue,
                           ct_value *xq, ct_value *xk, const char *perm_name, const char *tag, ct_value **k_out)
{
    int64_t B = o->batch;
    const char *T = tag;
    ct_arena *ar = &b->g->arena;
    ct_value *q = enc_forward(b, e, xq, ct_arena_printf(ar, "%s/q", T), qmap); /* (B, d) */
    q = head_forward(b, qh, q, ct_arena_printf(ar, "%s/q/head", T));
    q = l2norm(b, ct_arena_printf(ar, "%s/q_norm", T), q); /* (B, D) */
    ct_value *xin = xk, *inv = NULL, *kq = NULL;
    const int64_t BG = B * b->world; /* the global batch */
    if (o->shuffle_bn && !b->err) {
        /* perm: a permutation of the global batch (every rank is fed the same one) */
        ct_shape ps = {.rank = 1, .dims = {BG}};
        ct_value *perm = ct_graph_add_value(b->g, perm_name, CT_VALUE_INPUT, CT_I64, &ps);
        ct_graph_add_input(b->g, perm);
        /* inverse permutation: inv[i] = j with perm[j] = i (argsort) */
        int64_t *ar_i = malloc(sizeof(int64_t) * (size_t)BG);
        for (int64_t i = 0; i < BG; i++) ar_i[i] = i;
        ct_shape cs = {.rank = 2, .dims = {BG, 1}};
        ct_value *col = ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, "arange"), CT_VALUE_CONST, CT_I64, &cs,
                                            ar_i);
        free(ar_i);
        ct_value *row = reshape(b, ct_arena_printf(ar, "%s/perm_row", T), perm, (int64_t[]){1, BG}, 2);
        ct_value *eq = op2(b, CT_OP_EQUAL, ct_arena_printf(ar, "%s/perm_eq", T), col, row);
        ct_node *cn = emit(b, CT_OP_CAST, ct_arena_printf(ar, "%s/perm_f", T), 1, &eq, 1);
        if (cn) ct_node_set_int(b->g, cn, "to", 1);
        ct_value *eqf = fin(b, cn);
        ct_node *am = emit(b, CT_OP_ARG_MAX, ct_arena_printf(ar, "%s/unshuffle_idx", T), 1, &eqf, 1);
        if (am) {
            ct_node_set_int(b->g, am, "axis", 1);
            ct_node_set_int(b->g, am, "keepdims", 0);
        }
        inv = fin(b, am);
        if (b->world > 1) {
            /* MoCo's _batch_shuffle_ddp: gather the key views of all ranks, take this rank's
             * block of the shuffled global batch */
            ct_value *xall = all_gather(b, ct_arena_printf(ar, "%s/xk_all", T), xk);
            ct_value *idx = gather_rows(b, ct_arena_printf(ar, "%s/shuffle_rows", T), perm, b->rank_rows);
            xin = gather_rows(b, ct_arena_printf(ar, "%s/k_shuffled", T), xall, idx);
        } else {
            xin = gather_rows(b, ct_arena_printf(ar, "%s/k_shuffled", T), xk, perm);
        }
    }
    ct_value *k = enc_forward(b, e, xin, ct_arena_printf(ar, "%s/k", T), kmap);
    k = head_forward(b, kh, k, ct_arena_printf(ar, "%s/k/head", T));
    k = l2norm(b, ct_arena_printf(ar, "%s/k_norm", T), k);
    if (inv && b->world > 1) {
        /* _batch_unshuffle_ddp: all keys in shuffled order; this rank's rows; and every rank's
         * keys in global order for the queue, from the same gather */
        ct_value *kall = all_gather(b, ct_arena_printf(ar, "%s/k_all_shuffled", T), k);
        ct_value *uidx = gather_rows(b, ct_arena_printf(ar, "%s/unshuffle_rows", T), inv, b->rank_rows);
        k = gather_rows(b, ct_arena_printf(ar, "%s/k_unshuffled", T), kall, uidx);
        kq = gather_rows(b, ct_arena_printf(ar, "%s/keys_all", T), kall, inv);
    } else if (inv) {
        k = gather_rows(b, ct_arena_printf(ar, "%s/k_unshuffled", T), k, inv);
    }
    k = op1(b, CT_OP_STOP_GRADIENT, ct_arena_printf(ar, "%s/k_sg", T), k);
    ct_value *lpos = reduce1(b, CT_OP_REDUCE_SUM, ct_arena_printf(ar, "%s/l_pos", T),
                             op2(b, CT_OP_MUL, ct_arena_printf(ar, "%s/qk", T), q, k), 1);
    ct_value *lneg = op2(b, CT_OP_MATMUL, ct_arena_printf(ar, "%s/l_neg", T), q, queue); /* (B, K) */
    ct_value *logits = concat0(b, ct_arena_printf(ar, "%s/logits", T), (ct_value *[]){lpos, lneg}, 2, 1); /* (B, 1+K) */
    logits = op2(b, CT_OP_DIV, ct_arena_printf(ar, "%s/logits_T", T), logits, cst_f(b, "T", (float)o->temperature));
    int64_t *zeros = calloc((size_t)B, sizeof *zeros);
    ct_value *lab = cst_i64(b, "moco_labels", zeros, (int)B);
    free(zeros);
    if (b->err) return NULL;
    ct_node *ce = emit(b, CT_OP_SOFTMAX_CROSS_ENTROPY, ct_arena_printf(ar, "%s/ce", T), 2, (ct_value *[]){logits, lab},
                       2);
    /* the queue takes every rank's keys (concat_all_gather), in global batch order */
    *k_out = kq ? op1(b, CT_OP_STOP_GRADIENT, ct_arena_printf(ar, "%s/keys_all_sg", T), kq)
                : all_gather(b, ct_arena_printf(ar, "%s/keys_all", T), k);
    return fin(b, ce);
}

/* SupConLoss over features [V*B, D] (view-major, normalised); mask_bb [B, B]
 * (float, no gradient). Without labels mask = identity (SimCLR). */
static ct_value *supcon_loss(bld *b, const ct_method_options *o, ct_value *cf, ct_value *mask_bb, int V, int64_t B)
{
    int64_t N = V * B;
    int64_t A = o->contrast_all ? N : B;
    int anchor_count = o->contrast_all ? V : 1;
    ct_value *anchor = o->contrast_all ? cf : rows(b, "supcon/anchor", cf, 0, B);
    ct_node *tn = emit(b, CT_OP_TRANSPOSE, "supcon/contrast_T", 1, &cf, 1);
    if (tn) ct_node_set_ints(b->g, tn, "perm", (int64_t[]){1, 0}, 2);
    ct_value *cT = fin(b, tn);
    ct_value *adc = op2(b, CT_OP_DIV, "supcon/adc", op2(b, CT_OP_MATMUL, "supcon/dot", anchor, cT),
                        cst_f(b, "T", (float)o->temperature));
    ct_value *lmax = op1(b, CT_OP_STOP_GRADIENT, "supcon/logits_max_sg", /* (A, 1), detached */
                         reduce1(b, CT_OP_REDUCE_MAX, "supcon/logits_max", adc, 1));
    ct_value *logits = op2(b, CT_OP_SUB, "supcon/logits", adc, lmax);
    /* mask tiled anchor_count x V, self-contrast removed */
    ct_value *mask = op2(b, CT_OP_TILE, "supcon/mask_tiled", mask_bb, /* (A, N) */
                         cst_i64(b, "reps", (int64_t[]){anchor_count, V}, 2));
    float *lm = malloc(sizeof(float) * (size_t)(A * N));
    for (int64_t i = 0; i < A * N; i++) lm[i] = 1.0f;
    for (int64_t i = 0; i < A; i++) lm[i * N + i] = 0.0f;
    ct_shape ls = {.rank = 2, .dims = {A, N}};
    ct_value *lmask = ct_graph_add_tensor(b->g, ct_graph_unique_name(b->g, "supcon/logits_mask"), CT_VALUE_CONST,
                                          CT_F32, &ls, lm);
    free(lm);
    mask = op2(b, CT_OP_MUL, "supcon/mask", mask, lmask);
    ct_value *expl = op2(b, CT_OP_MUL, "supcon/exp_logits", op1(b, CT_OP_EXP, "supcon/exp", logits), lmask);
    ct_value *lse = op1(b, CT_OP_LOG, "supcon/log_denom", reduce1(b, CT_OP_REDUCE_SUM, "supcon/denom", expl, 1));
    ct_value *logp = op2(b, CT_OP_SUB, "supcon/log_prob", logits, lse);
    ct_value *num = reduce1(b, CT_OP_REDUCE_SUM, "supcon/pos_sum", op2(b, CT_OP_MUL, "supcon/mlp", mask, logp), 0);
    ct_value *den = reduce1(b, CT_OP_REDUCE_SUM, "supcon/pos_count", mask, 0);
    ct_value *mlpp = op2(b, CT_OP_DIV, "supcon/mean_log_prob_pos", num, den);
    ct_value *l = op2(b, CT_OP_MUL, "supcon/loss_rows", mlpp,
                      cst_f(b, "neg_T_over_base", (float)(-(o->temperature / o->base_temperature))));
    if (b->err) return NULL;
    ct_node *mn = emit(b, CT_OP_REDUCE_MEAN, "loss", 1, &l, 1);
    ct_node_set_int(b->g, mn, "keepdims", 0);
    return fin(b, mn);
}

/* 2 - 2 cos(p, z) per row, [N]. */
static ct_value *byol_loss_rows(bld *b, ct_value *p, ct_value *z, const char *tag)
{
    ct_arena *ar = &b->g->arena;
    ct_value *pn = l2norm(b, ct_arena_printf(ar, "%s/p_norm", tag), p);
    ct_value *zn = l2norm(b, ct_arena_printf(ar, "%s/z_norm", tag), z);
    return reduce1(b, CT_OP_REDUCE_SUM, ct_arena_printf(ar, "%s/cos", tag),
                   op2(b, CT_OP_MUL, ct_arena_printf(ar, "%s/pz", tag), pn, zn), 0);
}

static ct_value *mean_all(bld *b, const char *name, ct_value *x)
{
    if (b->err) return NULL;
    ct_node *n = emit(b, CT_OP_REDUCE_MEAN, name, 1, &x, 1);
    ct_node_set_int(b->g, n, "keepdims", 0);
    return fin(b, n);
}

/* ---------------------------------------------------------------- data parallel */

/* The gradients averaged over the ranks, as PyTorch DDP does: AllReduce nodes
 * of about bucket_mb MiB each, filled in the order backward produces the
 * gradients (the last layers first), so that a bucket can go as soon as its
 * last gradient exists. The reduced gradients replace the local ones for the
 * optimizer and as graph outputs. */
static ct_status allreduce_grads(ct_graph *g, ct_autodiff_result *res, int world, double bucket_mb)
{
    int n = res->n_grads;
    if (n == 0) return CT_OK;
    const int64_t cap = (int64_t)((bucket_mb > 0 ? bucket_mb : 25.0) * 1048576.0);
    /* production order: the position of each gradient's producer */
    int *ord = malloc(sizeof(int) * (size_t)n), *pos = malloc(sizeof(int) * (size_t)g->n_nodes + 1);
    if (!ord || !pos) abort();
    for (int i = 0; i < g->n_nodes; i++) pos[i] = i, g->nodes[i]->id = i;
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++) /* insertion sort: n is a few hundred at most */
        for (int j = i; j > 0; j--) {
            const ct_node *a = res->grads[ord[j - 1]].grad->producer, *c = res->grads[ord[j]].grad->producer;
            int pa = a ? pos[a->id] : -1, pc = c ? pos[c->id] : -1;
            if (pa <= pc) break;
            int t = ord[j - 1];
            ord[j - 1] = ord[j];
            ord[j] = t;
        }
    ct_status st = CT_OK;
    int nb = 0;
    for (int i = 0; i < n && !st;) {
        int j = i;
        int64_t bytes = 0;
        while (j < n && (j == i || bytes + (int64_t)ct_shape_numel(&res->grads[ord[j]].grad->shape) * 4 <= cap))
            bytes += (int64_t)ct_shape_numel(&res->grads[ord[j++]].grad->shape) * 4;
        int k = j - i;
        ct_value **in = malloc(sizeof(ct_value *) * (size_t)k * 2);
        if (!in) abort();
        ct_value **out = in + k;
        for (int q = 0; q < k; q++) {
            ct_value *gv = res->grads[ord[i + q]].grad;
            in[q] = gv;
            out[q] = ct_graph_add_value(g, ct_graph_unique_name(g, ct_arena_printf(&g->arena, "%s/all_reduced", gv->name)),
                                        CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
        }
        ct_node *nd = ct_graph_add_node(g, CT_OP_ALL_REDUCE,
                                        ct_graph_unique_name(g, ct_arena_printf(&g->arena, "grad_all_reduce/bucket%d", nb++)),
                                        k, in, k, out);
        ct_node_set_string(g, nd, "op", "mean");
        ct_node_set_int(g, nd, "world", world);
        if (!(st = ct_infer_node(g, nd))) {
            for (int q = 0; q < k; q++) {
                for (int o = 0; o < g->n_outputs; o++)
                    if (g->outputs[o] == in[q]) g->outputs[o] = out[q];
                res->grads[ord[i + q]].grad = out[q];
            }
        }
        free(in);
        i = j;
    }
    free(ord);
    free(pos);
    return st;
}

/* ---------------------------------------------------------------- attach */

ct_status ct_method_attach(ct_graph *encoder, const ct_method_options *o, ct_graph **train_graph)
{
    *train_graph = NULL;
    enc_info e = {0};
    bld b = {0};
    ct_status st = CT_OK;
    ct_value **qmap = NULL, **kmap = NULL;
    if ((st = enc_prepare(encoder, o->layer, &e))) goto fail;
    if ((st = ct_method_check(o, e.d))) goto fail;
    const char *mname[] = {"moco", "simclr", "supcon", "byol", "simsiam"};
    b.g = ct_graph_new(ct_arena_printf(&e.enc->arena, "%s_%s", e.enc->name ? e.enc->name : "encoder",
                                       o->preset ? o->preset : mname[o->kind]));
    b.rng = (o->seed ^ UINT64_C(0x9E3779B97F4A7C15)) | 1;
    b.world = o->ranks > 1 ? o->ranks : 1;
    ct_graph *g = b.g;
    g->opset = e.enc->opset;
    g->ir_version = e.enc->ir_version;
    g->source_path = e.enc->source_path ? ct_arena_strdup(&g->arena, e.enc->source_path) : NULL;
    int nv = e.enc->n_values;
    qmap = calloc((size_t)nv, sizeof *qmap);
    kmap = calloc((size_t)nv, sizeof *kmap);
    enc_copy_values(&b, &e, NULL, qmap, NULL);
    int64_t B = o->batch, d = e.d;
    ct_value *loss = NULL;
    head_params qh, kh, ph;
    ct_head_spec hspec = o->head;
    if (o->kind == CT_METHOD_BYOL && !o->use_momentum && hspec.n >= 1) {
        /* byol-pytorch's use_momentum=False: the SimSiam projector (hidden, hidden, out; no biases;
         * BatchNorm after each Linear, the last one without affine) */
        int64_t hid = hspec.dims[0], out = hspec.dims[hspec.n - 1];
        hspec = (ct_head_spec){.n = 3, .dims = {hid, hid, out}, .bn_hidden = true, .last_bn = 2};
    }
    ct_method_options oc = *o;
    oc.head = hspec;
    o = &oc;
    head_create(&b, &o->head, d, o->kind == CT_METHOD_BYOL || o->kind == CT_METHOD_SIMSIAM ? "projector" : "head", &qh);
    ct_value *queue = NULL, *qptr = NULL, *keys = NULL;
    if (o->momentum_input && (o->kind == CT_METHOD_MOCO || (o->kind == CT_METHOD_BYOL && o->use_momentum))) {
        /* a schedule (BYOL's cosine raise of the decay to 1): m is fed each step */
        ct_shape sc = {.rank = 0};
        b.m_in = ct_graph_add_value(g, "momentum", CT_VALUE_INPUT, CT_F32, &sc);
        ct_graph_add_input(g, b.m_in);
        b.one_minus_m_in = op2(&b, CT_OP_SUB, "one_minus_momentum", cst_f(&b, "one", 1.0f), b.m_in);
    }

    switch (o->kind) {
    case CT_METHOD_MOCO: {
        /* key encoder: STATE copies, momentum-updated before the keys */
        enc_copy_values(&b, &e, "key/", kmap, qmap);
        head_copy(&b, &qh, "key/", &kh);
        ct_value **kup = calloc((size_t)nv, sizeof *kup);
        memcpy(kup, kmap, sizeof *kup * (size_t)nv);
        for (int i = 0; i < nv; i++) {
            if (!kmap[i] || !enc_trainable(&e, e.enc->values[i])) continue;
            kup[i] = ema(&b, kmap[i], qmap[i], o->momentum, ct_arena_printf(&g->arena, "%s/momentum", kmap[i]->name));
            ct_graph_add_assign(g, kmap[i], kup[i]);
        }
        head_params khu = kh;
        for (int i = 0; i < kh.n; i++) {
            khu.w[i] = ema(&b, kh.w[i], qh.w[i], o->momentum, ct_arena_printf(&g->arena, "%s/momentum", kh.w[i]->name));
            ct_graph_add_assign(g, kh.w[i], khu.w[i]);
            if (kh.bias[i]) {
                khu.bias[i] = ema(&b, kh.bias[i], qh.bias[i], o->momentum,
                                  ct_arena_printf(&g->arena, "%s/momentum", kh.bias[i]->name));
                ct_graph_add_assign(g, kh.bias[i], khu.bias[i]);
            }
        }
        int64_t D = head_out(&o->head, d), K = o->queue_size;
        ct_shape qs = {.rank = 2, .dims = {D, K}};
        float *qd = malloc(sizeof(float) * (size_t)(D * K));
        for (int64_t i = 0; i < D * K; i++) qd[i] = (float)rng_normal(&b);
        for (int64_t c = 0; c < K; c++) {
            double s = 0;
            for (int64_t r = 0; r < D; r++) s += (double)qd[r * K + c] * qd[r * K + c];
            double nr = fmax(sqrt(s), 1e-12);
            for (int64_t r = 0; r < D; r++) qd[r * K + c] = (float)(qd[r * K + c] / nr);
        }
        queue = ct_graph_add_tensor(g, "queue", CT_VALUE_STATE, CT_F32, &qs, qd);
        free(qd);
        ct_shape ps = {.rank = 1, .dims = {1}};
        int64_t zero = 0;
        qptr = ct_graph_add_tensor(g, "queue_ptr", CT_VALUE_STATE, CT_I64, &ps, &zero);
        ct_value *x1 = input_view(&b, &e, "view1", B), *x2 = input_view(&b, &e, "view2", B);
        if (b.world > 1 && o->shuffle_bn) {
            ct_shape rs = {.rank = 1, .dims = {B}};
            b.rank_rows = ct_graph_add_value(g, "rank_rows", CT_VALUE_INPUT, CT_I64, &rs);
            ct_graph_add_input(g, b.rank_rows);
        }
        ct_value *k2 = NULL, *k1 = NULL;
        ct_value *l12 = moco_pair(&b, o, &e, qmap, &qh, kup, &khu, queue, x1, x2, "shuffle_perm", "moco", &k2);
        if (o->symmetric) {
            ct_value *l21 = moco_pair(&b, o, &e, qmap, &qh, kup, &khu, queue, x2, x1, "shuffle_perm2", "moco_sym", &k1);
            loss = op2(&b, CT_OP_ADD, "loss", l12, l21);
            keys = concat0(&b, "keys", (ct_value *[]){k1, k2}, 2, 0);
        } else {
            loss = l12;
            keys = k2;
        }
        free(kup);
        break;
    }
    case CT_METHOD_SIMCLR:
    case CT_METHOD_SUPCON: {
        int V = o->views;
        ct_value *xs[16];
        if (V > 16) {
            st = ct_errorf("%s: at most 16 views", o->preset ? o->preset : "supcon");
            goto fail;
        }
        for (int v = 0; v < V; v++) xs[v] = input_view(&b, &e, ct_arena_printf(&g->arena, "view%d", v + 1), B);
        ct_value *x = concat0(&b, "views", xs, V, 0);
        ct_value *z = enc_forward(&b, &e, x, "enc", qmap);
        z = head_forward(&b, &qh, z, "head");
        int64_t BL = B; /* this rank's batch */
        if (b.world > 1) {
            /* global negatives: every rank's embeddings of each view, stacked view-major as one
             * process with the global batch would; the loss over the global batch is the same on
             * every rank, and the gradient of each rank's rows flows back to it (ReduceScatter) */
            ct_value *zv[16];
            for (int v = 0; v < V; v++)
                zv[v] = all_gather(&b, ct_arena_printf(&g->arena, "z_all/view%d", v + 1),
                                   rows(&b, ct_arena_printf(&g->arena, "z/view%d", v + 1), z, v * B, (v + 1) * B));
            z = concat0(&b, "z_all", zv, V, 0);
            B *= b.world;
        }
        z = l2norm(&b, "z", z);
        if (o->kind == CT_METHOD_SIMCLR) {
            int64_t N = 2 * B;
            ct_node *tn = emit(&b, CT_OP_TRANSPOSE, "zT", 1, &z, 1);
            if (tn) ct_node_set_ints(g, tn, "perm", (int64_t[]){1, 0}, 2);
            ct_value *sim = op2(&b, CT_OP_DIV, "sim", op2(&b, CT_OP_MATMUL, "zzT", z, fin(&b, tn)),
                                cst_f(&b, "T", (float)o->temperature));
            float *dm = calloc((size_t)(N * N), sizeof *dm);
            for (int64_t i = 0; i < N; i++) dm[i * N + i] = -1e9f;
            ct_shape ds = {.rank = 2, .dims = {N, N}};
            ct_value *diag = ct_graph_add_tensor(g, "self_mask", CT_VALUE_CONST, CT_F32, &ds, dm);
            free(dm);
            sim = op2(&b, CT_OP_ADD, "sim_masked", sim, diag);
            int64_t *lab = malloc(sizeof(int64_t) * (size_t)N);
            for (int64_t i = 0; i < N; i++) lab[i] = (i + B) % N;
            ct_value *labels = cst_i64(&b, "positives", lab, (int)N);
            free(lab);
            if (b.err) break;
            ct_node *ce = emit(&b, CT_OP_SOFTMAX_CROSS_ENTROPY, "loss", 2, (ct_value *[]){sim, labels}, 2);
            loss = fin(&b, ce);
        } else {
            ct_value *mask;
            if (o->use_mask) {
                ct_shape ms = {.rank = 2, .dims = {B, B}};
                mask = ct_graph_add_value(g, "mask", CT_VALUE_INPUT, CT_F32, &ms);
                ct_graph_add_input(g, mask);
            } else if (o->use_labels) {
                ct_shape ls = {.rank = 1, .dims = {BL}};
                ct_value *lab = ct_graph_add_value(g, "labels", CT_VALUE_INPUT, CT_I64, &ls);
                ct_graph_add_input(g, lab);
                lab = all_gather(&b, "labels_all", lab);
                ct_value *eq = op2(&b, CT_OP_EQUAL, "label_eq", reshape(&b, "labels_col", lab, (int64_t[]){B, 1}, 2),
                                   reshape(&b, "labels_row", lab, (int64_t[]){1, B}, 2));
                ct_node *cn = emit(&b, CT_OP_CAST, "label_mask", 1, &eq, 1);
                if (cn) ct_node_set_int(g, cn, "to", 1);
                mask = fin(&b, cn);
            } else {
                float *id = calloc((size_t)(B * B), sizeof *id);
                for (int64_t i = 0; i < B; i++) id[i * B + i] = 1.0f;
                ct_shape is = {.rank = 2, .dims = {B, B}};
                mask = ct_graph_add_tensor(g, "identity_mask", CT_VALUE_CONST, CT_F32, &is, id);
                free(id);
            }
            loss = supcon_loss(&b, o, z, mask, V, B);
        }
        break;
    }
    case CT_METHOD_BYOL:
    case CT_METHOD_SIMSIAM: {
        head_create(&b, &o->predictor, head_out(&o->head, d), "predictor", &ph);
        ct_value *x1 = input_view(&b, &e, "view1", B), *x2 = input_view(&b, &e, "view2", B);
        if (o->kind == CT_METHOD_BYOL) {
            ct_value *x = concat0(&b, "views", (ct_value *[]){x1, x2}, 2, 0);
            ct_value *proj = head_forward(&b, &qh, enc_forward(&b, &e, x, "online", qmap), "online/projector");
            ct_value *pred = head_forward(&b, &ph, proj, "online/predictor");
            ct_value *tproj;
            if (o->use_momentum) {
                enc_copy_values(&b, &e, "target/", kmap, qmap);
                head_copy(&b, &qh, "target/", &kh);
                tproj = head_forward(&b, &kh, enc_forward(&b, &e, x, "target", kmap), "target/projector");
            } else {
                tproj = head_forward(&b, &qh, enc_forward(&b, &e, x, "target", qmap), "target/projector");
            }
            tproj = op1(&b, CT_OP_STOP_GRADIENT, "target_sg", tproj);
            ct_value *p1 = rows(&b, "pred1", pred, 0, B), *p2 = rows(&b, "pred2", pred, B, 2 * B);
            ct_value *t1 = rows(&b, "tproj1", tproj, 0, B), *t2 = rows(&b, "tproj2", tproj, B, 2 * B);
            ct_value *two = cst_f(&b, "two", 2.0f);
            ct_value *lo = op2(&b, CT_OP_SUB, "loss_one", two,
                               op2(&b, CT_OP_MUL, "loss_one/2cos", two, byol_loss_rows(&b, p1, t2, "loss_one")));
            ct_value *lt = op2(&b, CT_OP_SUB, "loss_two", two,
                               op2(&b, CT_OP_MUL, "loss_two/2cos", two, byol_loss_rows(&b, p2, t1, "loss_two")));
            loss = mean_all(&b, "loss", op2(&b, CT_OP_ADD, "loss_sum", lo, lt));
        } else {
            ct_value *z1 = head_forward(&b, &qh, enc_forward(&b, &e, x1, "enc1", qmap), "projector1");
            ct_value *z2 = head_forward(&b, &qh, enc_forward(&b, &e, x2, "enc2", qmap), "projector2");
            ct_value *p1 = head_forward(&b, &ph, z1, "predictor1");
            ct_value *p2 = head_forward(&b, &ph, z2, "predictor2");
            z1 = op1(&b, CT_OP_STOP_GRADIENT, "z1_sg", z1);
            z2 = op1(&b, CT_OP_STOP_GRADIENT, "z2_sg", z2);
            ct_value *c1 = mean_all(&b, "cos1", byol_loss_rows(&b, p1, z2, "cos1"));
            ct_value *c2 = mean_all(&b, "cos2", byol_loss_rows(&b, p2, z1, "cos2"));
            loss = op2(&b, CT_OP_MUL, "loss", op2(&b, CT_OP_ADD, "cos_sum", c1, c2), cst_f(&b, "minus_half", -0.5f));
        }
        break;
    }
    }
    if (b.err) {
        st = b.err;
        b.err = NULL;
        goto fail;
    }
    if (!loss) {
        st = ct_errorf("method: no loss built");
        goto fail;
    }
    ct_graph_add_output(g, loss);
    if (queue) {
        ct_node *qn = emit(&b, CT_OP_QUEUE_PUSH, "queue_push", 3, (ct_value *[]){queue, keys, qptr}, 2);
        if ((st = fin(&b, qn) ? CT_OK : b.err)) {
            b.err = NULL;
            goto fail;
        }
        ct_graph_add_assign(g, queue, qn->out[0]);
        ct_graph_add_assign(g, qptr, qn->out[1]);
    }
    if (o->fuse_loss && (st = ct_fuse_loss(g, NULL))) goto fail; /* before autodiff: see fuse_loss.h */
    ct_bn_train_options bo = {.splits = o->bn_splits, .quiet = true, .sync_world = o->sync_bn ? b.world : 0};
    if ((st = ct_bn_train(g, &bo))) goto fail;
    chain_assigns(&b);
    if (b.err) {
        st = b.err;
        b.err = NULL;
        goto fail;
    }
    if ((st = ct_graph_toposort(g))) goto fail;
    ct_autodiff_result res = {0};
    if (!o->no_backward) {
        ct_autodiff_options ao = {.grads_as_outputs = true, .result = &res};
        if ((st = ct_autodiff(g, loss, &ao))) goto fail;
    }
    if (b.world > 1 && !o->no_backward && (st = allreduce_grads(g, &res, b.world, o->bucket_mb))) goto fail;
    if (o->attach_optimizer && o->optimizer && !o->no_backward) {
        ct_optim_options oo;
        ct_optim_kind ok;
        if (!ct_optim_kind_parse(o->optimizer, &ok)) {
            st = ct_errorf("unknown optimizer '%s'", o->optimizer);
            goto fail;
        }
        ct_optim_options_default(&oo, ok);
        if (ok == CT_OPTIM_SGD || ok == CT_OPTIM_LARS) oo.momentum = o->opt_momentum;
        oo.weight_decay = o->weight_decay;
        if ((st = ct_optim_attach(g, res.grads, res.n_grads, &oo))) goto fail;
    }
    if (o->kind == CT_METHOD_BYOL && o->use_momentum) {
        /* target EMA after the optimizer step: from the updated online parameters */
        int n0 = g->n_assigns;
        for (int i = 0; i < nv; i++) {
            if (!kmap[i] || !enc_trainable(&e, e.enc->values[i])) continue;
            ct_value *src = qmap[i];
            for (int a = 0; a < n0; a++)
                if (g->assigns[a].dst == qmap[i]) src = g->assigns[a].src;
            ct_graph_add_assign(g, kmap[i], ema(&b, kmap[i], src, o->momentum,
                                                ct_arena_printf(&g->arena, "%s/ema", kmap[i]->name)));
        }
        ct_value **ss[HEAD_SLOTS], **ts[HEAD_SLOTS];
        head_slots(&qh, ss);
        head_slots(&kh, ts);
        for (int i = 0; i < HEAD_SLOTS; i++) {
            ct_value *sv = *ss[i], *tv = *ts[i];
            if (!sv || sv->kind != CT_VALUE_PARAM) continue;
            ct_value *src = sv;
            for (int a = 0; a < n0; a++)
                if (g->assigns[a].dst == sv) src = g->assigns[a].src;
            ct_graph_add_assign(g, tv, ema(&b, tv, src, o->momentum, ct_arena_printf(&g->arena, "%s/ema", tv->name)));
        }
        if (b.err) {
            st = b.err;
            b.err = NULL;
            goto fail;
        }
    }
    if ((st = ct_graph_toposort(g))) goto fail;
    if ((st = ct_graph_verify(g))) goto fail;
    *train_graph = g;
    g = NULL;
    b.g = NULL;
fail:
    if (b.g) ct_graph_free(b.g);
    if (b.err) ct_status_free(b.err);
    free(qmap);
    free(kmap);
    free(e.body);
    free(e.bn_buffer);
    if (e.enc) ct_graph_free(e.enc);
    return st;
}

/* ---------------------------------------------------------------- the representation */

ct_status ct_method_encoder(ct_graph *encoder, const char *layer, int64_t batch, ct_graph **out)
{
    *out = NULL;
    enc_info e = {0};
    ct_status st = enc_prepare(encoder, layer, &e);
    if (st) goto fail;
    ct_graph *g = e.enc;
    ct_value *rep = e.rep;
    if (rep->shape.rank != 2) {
        ct_value *fl = ct_graph_add_value(g, "features", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
        ct_node *fn = ct_graph_add_node(g, CT_OP_FLATTEN, "features/Flatten", 1, &rep, 1, &fl);
        ct_node_set_int(g, fn, "axis", 1);
        if ((st = ct_infer_node(g, fn))) goto fail;
        rep = fl;
    }
    g->n_outputs = 0;
    ct_graph_add_output(g, rep);
    if (batch > 0) ct_graph_set_batch(g, batch);
    const char *post[] = {"infer_shapes", "dce"};
    ct_pass_options po = {0};
    if ((st = ct_pass_run(g, post, 2, &po))) goto fail;
    *out = g;
    e.enc = NULL;
fail:
    free(e.body);
    free(e.bn_buffer);
    if (e.enc) ct_graph_free(e.enc);
    return st;
}

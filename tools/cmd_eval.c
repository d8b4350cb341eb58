/* cmd_eval.c — 'contra eval knn|linear --encoder ENC.onnx --train T --val V':
 * evaluate a frozen encoder on labelled images: the MoCo CIFAR demo's
 * weighted kNN, or MoCo main_lincls's linear classification protocol (a fc
 * layer trained with SGD on the frozen encoder's features), with
 * main_lincls's check that no encoder byte changed. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "cli.h"
#include "cmd_compile.h"
#include "feature_extract.h"
#include "frontend.h"
#include "npy.h"
#include "passes.h"
#include "runtime.h"
#include "train/knn.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contra eval knn    --encoder ENC.onnx --train TRAIN --val VAL [options]\n"
            "       contra eval linear --encoder ENC.onnx --train TRAIN --val VAL [options]\n"
            "\n"
            "Evaluate a frozen encoder on labelled images. The encoder is compiled for\n"
            "inference (BatchNorm in eval mode, with its running statistics) at --batch\n"
            "and run on the CPU; its input size and channels come from the ONNX input\n"
            "(N, C, H, W) (gray images are expanded to 3 channels when C is 3). Images\n"
            "are preprocessed as MoCo's validation transform: Resize(S * 256 / 224),\n"
            "CenterCrop(S), ToTensor, Normalize(mean, std). The representation is the\n"
            "encoder's first output, flattened, or --repr.\n"
            "\n"
            "knn: weighted kNN of the MoCo CIFAR demo: cosine similarity of\n"
            "  L2-normalised val features to the train features, the top k weighted by\n"
            "  exp(sim / t), prediction = the class with the largest summed weight.\n"
            "  Prints the top-1 accuracy.\n"
            "\n"
            "linear: MoCo main_lincls's protocol: the encoder is frozen (BatchNorm in\n"
            "  eval mode); a fc layer (weight N(0, 0.01), bias 0) is trained on its\n"
            "  features with softmax cross-entropy and SGD (momentum, weight decay)\n"
            "  over shuffled mini-batches. By default the fc is trained on features of\n"
            "  the center-cropped train images computed once (the encoder is frozen, so\n"
            "  this equals training through it on those images); --augment recomputes\n"
            "  them every epoch from RandomResizedCrop(S) + RandomHorizontalFlip, as\n"
            "  main_lincls's train transform (one encoder pass over TRAIN per epoch).\n"
            "  Prints the val top-1 accuracy after every epoch, then the final one.\n"
            "  Sanity check (main_lincls's): after training, every encoder parameter,\n"
            "  BatchNorm statistic and constant the compiled encoder holds is compared\n"
            "  byte for byte with the compiled parameter file; any change is an error.\n"
            "\n"
            "data:\n"
            "  --train PATH, --val PATH\n"
            "                 an image folder in torchvision ImageFolder layout (one\n"
            "                 subfolder per class, classes = sorted folder names; JPEG,\n"
            "                 PNG), or an IDX image file (MNIST / Fashion-MNIST, .gz or\n"
            "                 not) given with its labels file:\n"
            "  --train-labels FILE, --val-labels FILE\n"
            "                 the IDX labels of an IDX --train / --val, e.g.\n"
            "                 --train train-images-idx3-ubyte.gz\n"
            "                 --train-labels train-labels-idx1-ubyte.gz\n"
            "  --limit N      use the first N samples of an IDX --train (default: all)\n"
            "  --val-limit N  use the first N samples of an IDX --val (default: all)\n"
            "  Folder train and val sets must have the same class names; IDX val labels\n"
            "  must be below the number of train classes.\n"
            "\n"
            "encoder and preprocessing:\n"
            "  --encoder ENC  the encoder (ONNX, or ONNX text), input (N, C, H, W)\n"
            "  --repr NAME    the value used as the representation (default: the first\n"
            "                 output); must be a float tensor (batch, ...)\n"
            "  --size S       the crop size; must equal the encoder's H = W (default:\n"
            "                 from the encoder; non-square inputs crop H x W)\n"
            "  --mean M1,M2,M3 --std S1,S2,S3\n"
            "                 Normalize's mean and std (default ImageNet's\n"
            "                 0.485,0.456,0.406 and 0.229,0.224,0.225; channel 0 for\n"
            "                 1-channel encoders)\n"
            "  --batch B      the encoder's compiled batch (default 64); a last partial\n"
            "                 batch is padded and the padded rows ignored\n"
            "  --threads T    threads for the encoder's loops and BLAS (default: all)\n"
            "  --workers W    image decoding threads (default: CPUs, at most 8)\n"
            "  --cc CC        C compiler for the encoder (default: $CC, else cc)\n"
            "  --save-features DIR\n"
            "                 also write DIR/{train,val}_{feats,labels}.npy (the last\n"
            "                 epoch's train features with --augment) and, for knn,\n"
            "                 DIR/val_pred.npy; for linear, the fc's initial weight\n"
            "                 DIR/fc_weight_init.npy and trained DIR/fc_weight.npy,\n"
            "                 DIR/fc_bias.npy; written only on success\n"
            "\n"
            "knn options:\n"
            "  --k K          neighbours (default 200; at most the train size)\n"
            "  --t T          temperature (default 0.1)\n"
            "\n"
            "linear options (defaults as main_lincls):\n"
            "  --epochs E     (default 100)\n"
            "  --lr LR        initial learning rate (default 30)\n"
            "  --momentum M   SGD momentum (default 0.9)\n"
            "  --weight-decay WD  (default 0)\n"
            "  --fc-batch N   fc mini-batch size (default 256; a last smaller batch is\n"
            "                 used, as main_lincls's loader)\n"
            "  --schedule step[:E1,E2,...] | cosine | constant\n"
            "                 step: lr x 0.1 at each listed epoch (default: at 60%% and 80%%\n"
            "                 of --epochs, i.e. 60,80 for 100 epochs as main_lincls);\n"
            "                 cosine: lr x 0.5 (1 + cos(pi epoch / epochs)) per epoch\n"
            "  --augment      per-epoch RandomResizedCrop + flip features (see above)\n"
            "  --seed S       fc init, shuffling and augmentation (default 0)\n"
            "  -h, --help     show this help\n"
            "\n"
            "Progress goes to stderr; results to stdout. Any error (missing or empty\n"
            "data, class mismatch, an encoder without a float output...) exits 1 with\n"
            "a message and prints no result.\n");
}

typedef struct {
    const char *mode, *encoder, *train, *val, *train_labels, *val_labels, *repr, *cc, *save, *schedule;
    int64_t batch, limit, val_limit;
    int size, threads, workers, k, epochs, fc_batch;
    double t, lr, momentum, wd;
    uint64_t seed;
    bool augment, has_mean, has_std;
    float mean[3], std[3];
} eval_opts;

/* ---------------------------------------------------------------- progress */

typedef struct {
    const char *what;
    struct timespec t0, last;
    bool tty, printed;
} progress_state;

static double seconds_between(struct timespec a, struct timespec b)
{
    return (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
}

static void progress_begin(progress_state *ps, const char *what)
{
    ps->what = what;
    clock_gettime(CLOCK_MONOTONIC, &ps->t0);
    ps->last = ps->t0;
    ps->tty = isatty(2);
    ps->printed = false;
}

/* A line every 2 s (redrawn in place on a terminal), and the total at the end. */
static void progress_cb(void *ctx, int64_t done, int64_t total)
{
    progress_state *ps = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    bool end = done >= total;
    if (!end && seconds_between(ps->last, now) < 2.0) return;
    if (end && !ps->printed && seconds_between(ps->t0, now) < 2.0) return;
    ps->last = now;
    ps->printed = true;
    double el = seconds_between(ps->t0, now);
    double rate = el > 0 ? (double)done / el : 0;
    fprintf(stderr, "%scontra eval: %s features %lld/%lld (%.0f images/s, %.0f s)%s", ps->tty ? "\r" : "",
            ps->what, (long long)done, (long long)total, rate, el, ps->tty && !end ? "" : "\n");
    fflush(stderr);
}

/* ---------------------------------------------------------------- data */

static ct_status data_status(ct_data_err err, const char *fmt, const char *arg)
{
    ct_status st = ct_errorf(fmt, arg, err);
    ct_data_err_free(err);
    return st;
}


/* Open TRAIN or VAL (flag names the option) as a loader with view `view`. */
static ct_status open_data(const char *flag, const char *path, const char *labels, int64_t limit,
                           const ct_loader_config *cfg, ct_loader **out, ct_folder *classes)
{
    *out = NULL;
    struct stat s;
    if (stat(path, &s) != 0) return ct_errorf("%s '%s': %s", flag, path, strerror(errno));
    ct_data_err err;
    if (S_ISDIR(s.st_mode)) {
        if (labels) return ct_errorf("%s '%s' is a folder: its labels come from its class subfolders, so --%s-labels "
                                     "is for IDX files only", flag, path, flag + 2);
        if (limit) return ct_errorf("--limit and --val-limit are for IDX files only (%s '%s' is a folder)", flag, path);
        if ((err = ct_folder_open(path, CT_FOLDER_CLASSES, classes)))
            return data_status(err, "%s: %s", flag);
        if ((err = ct_loader_open_folder(path, CT_FOLDER_CLASSES, cfg, out)))
            return data_status(err, "%s: %s", flag);
        return CT_OK;
    }
    if (!labels)
        return ct_errorf("%s '%s' is a file, not an image folder: for IDX images give their labels with --%s-labels "
                         "FILE", flag, path, flag + 2);
    if ((err = ct_loader_open_idx(path, labels, limit, cfg, out))) return data_status(err, "%s: %s", flag);
    return CT_OK;
}

/* Train and val must describe the same classes. */
static ct_status check_classes(const ct_folder *tf, const ct_folder *vf, ct_loader *tl, ct_loader *vl,
                               const int64_t *vlabels, int64_t vn)
{
    int tc = ct_loader_n_classes(tl), vc = ct_loader_n_classes(vl);
    if (tc < 2) return ct_errorf("--train has %d class: classification needs at least 2", tc);
    if (tf->n_classes && vf->n_classes) {
        bool same = tc == vc;
        for (int c = 0; same && c < tc; c++) same = !strcmp(tf->classes[c], vf->classes[c]);
        if (!same) {
            char a[600], b[600];
            size_t ja = 0, jb = 0;
            for (int c = 0; c < tc && ja < sizeof a; c++)
                ja += (size_t)snprintf(a + ja, sizeof a - ja, "%s%s", c ? ", " : "", tf->classes[c]);
            for (int c = 0; c < vc && jb < sizeof b; c++)
                jb += (size_t)snprintf(b + jb, sizeof b - jb, "%s%s", c ? ", " : "", vf->classes[c]);
            return ct_errorf("class mismatch: --train has %d classes (%s) but --val has %d (%s)", tc, a, vc, b);
        }
        return CT_OK;
    }
    for (int64_t i = 0; i < vn; i++)
        if (vlabels[i] < 0 || vlabels[i] >= tc)
            return ct_errorf("class mismatch: --val has label %lld (sample %lld) but --train has only %d classes",
                             (long long)vlabels[i], (long long)i, tc);
    if (vc > tc) return ct_errorf("class mismatch: --val has %d classes but --train has %d", vc, tc);
    return CT_OK;
}

/* ---------------------------------------------------------------- the encoder */

typedef struct {
    char dir[4096];  /* temporary compile folder ("" when none) */
    ct_rt_program *prog;
    const char *output; /* the representation's name in the program */
    int c, h, w;
} encoder;

static void rm_dir_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char p[4400];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void encoder_free(encoder *e)
{
    ct_rt_program_free(e->prog);
    free((char *)e->output);
    if (e->dir[0]) rm_dir_files(e->dir);
    memset(e, 0, sizeof *e);
}

/* Read the encoder's input shape and representation, compile it for
 * inference at the batch, load it. */
static ct_status encoder_open(const eval_opts *o, encoder *e)
{
    ct_graph *g = NULL;
    ct_status st = ct_model_load(o->encoder, &g);
    if (st) return ct_status_wrap(st, "--encoder");
    if (g->n_inputs < 1) {
        st = ct_errorf("%s: the encoder has no input", o->encoder);
        goto fail;
    }
    const ct_value *in = g->inputs[0];
    char buf[128];
    if (in->shape.rank != 4 || !ct_dtype_is_float(in->dtype)) {
        st = ct_errorf("%s: the encoder's input '%s' %s is not a float image batch (N, C, H, W)", o->encoder,
                       in->name, ct_shape_str(&in->shape, buf, sizeof buf));
        goto fail;
    }
    if (g->n_inputs > 1) {
        st = ct_errorf("%s: the encoder has %d inputs; it must take only the images", o->encoder, g->n_inputs);
        goto fail;
    }
    e->c = (int)in->shape.dims[1];
    e->h = (int)in->shape.dims[2];
    e->w = (int)in->shape.dims[3];
    if ((e->c != 1 && e->c != 3) || e->h < 1 || e->w < 1) {
        st = ct_errorf("%s: the encoder's input '%s' %s needs 1 or 3 channels and a fixed height and width",
                       o->encoder, in->name, ct_shape_str(&in->shape, buf, sizeof buf));
        goto fail;
    }
    if (o->size && (o->size != e->h || o->size != e->w)) {
        st = ct_errorf("--size %d: the encoder's input '%s' is %s, so it takes %d x %d images", o->size, in->name,
                       ct_shape_str(&in->shape, buf, sizeof buf), e->h, e->w);
        goto fail;
    }
    const ct_value *rep = NULL;
    if (o->repr) {
        /* types and shapes of intermediate values (also needed to save the graph) */
        if ((st = ct_pass_infer_shapes(g))) goto fail;
        ct_value *v = ct_graph_find_value(g, o->repr);
        if (!v) {
            st = ct_errorf("--repr: the encoder %s has no value named '%s'", o->encoder, o->repr);
            goto fail;
        }
        if (!ct_dtype_is_float(v->dtype)) {
            st = ct_errorf("--repr: '%s' is %s, not a float tensor", o->repr, ct_dtype_name(v->dtype));
            goto fail;
        }
        rep = v;
    } else {
        if (g->n_outputs < 1) {
            st = ct_errorf("%s: the encoder has no output", o->encoder);
            goto fail;
        }
        rep = g->outputs[0];
        if (!ct_dtype_is_float(rep->dtype)) {
            st = ct_errorf("%s: the encoder's output '%s' is %s, not float: it gives no features (name a float value "
                           "with --repr)", o->encoder, rep->name, ct_dtype_name(rep->dtype));
            goto fail;
        }
    }
    e->output = strdup(rep->name);
    if (!e->output) abort();

    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof e->dir, "%s/contra-eval-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(e->dir)) {
        st = ct_errorf("cannot create a temporary folder '%s': %s", e->dir, strerror(errno));
        e->dir[0] = 0;
        goto fail;
    }
    const char *model = o->encoder;
    char path[4400];
    if (o->repr) {
        /* the representation becomes the only output; what follows it is dead code */
        g->n_outputs = 0;
        ct_graph_add_output(g, (ct_value *)rep);
        snprintf(path, sizeof path, "%s/encoder.onnx", e->dir);
        if ((st = ct_onnx_save(g, path))) goto fail;
        model = path;
    }
    cli_compile_options co = {.batch = o->batch, .cc = o->cc, .verbose = false};
    if ((st = cli_compile_infer(model, e->dir, &co))) goto fail;
    if ((st = ct_rt_program_load(e->dir, &e->prog))) goto fail;
    const ct_program_desc *d = ct_rt_program_desc(e->prog);
    if (d->batch != o->batch) {
        st = ct_errorf("%s: compiled for batch %lld instead of %lld (the model has a fixed batch: use --batch %lld)",
                       o->encoder, (long long)d->batch, (long long)o->batch, (long long)d->batch);
        goto fail;
    }
    if (o->threads) ct_rt_program_set_threads(e->prog, o->threads);
fail:
    ct_graph_free(g);
    return st;
}

/* main_lincls's sanity check: every encoder tensor of the compiled program
 * (parameters, BatchNorm statistics, constants) still equals params.bin. */
static ct_status encoder_check_unchanged(encoder *e, int *n_checked, int64_t *n_bytes)
{
    const ct_program_desc *d = ct_rt_program_desc(e->prog);
    char path[4400];
    snprintf(path, sizeof path, "%s/params.bin", e->dir);
    FILE *f = fopen(path, "rb");
    if (!f) return ct_errorf("sanity check: cannot read %s: %s", path, strerror(errno));
    unsigned char *ref = malloc((size_t)(d->persist_bytes ? d->persist_bytes : 1));
    if (!ref) {
        fclose(f);
        return ct_errorf("sanity check: out of memory");
    }
    size_t got = fread(ref, 1, (size_t)d->persist_bytes, f);
    fclose(f);
    if (got != (size_t)d->persist_bytes) {
        free(ref);
        return ct_errorf("sanity check: %s is shorter than the program's parameters", path);
    }
    /* test hook: simulate an encoder that changed during training */
    if (getenv("CT_EVAL_TEST_CORRUPT_ENCODER"))
        for (int i = 0; i < d->n_tensors; i++)
            if (d->tensors[i].kind == CT_PT_PARAM && d->tensors[i].nbytes > 0) {
                ((unsigned char *)ct_rt_program_tensor(e->prog, i))[0] ^= 1;
                break;
            }
    char names[1024] = "";
    size_t j = 0;
    int changed = 0;
    *n_checked = 0;
    *n_bytes = 0;
    for (int i = 0; i < d->n_tensors; i++) {
        const ct_tensor_desc *t = &d->tensors[i];
        if (t->region != CT_PT_REGION_PERSIST || t->kind == CT_PT_INPUT || t->kind == CT_PT_TEMP) continue;
        (*n_checked)++;
        *n_bytes += t->nbytes;
        if (memcmp(ct_rt_program_tensor(e->prog, i), ref + t->offset, (size_t)t->nbytes)) {
            if (changed < 5 && j < sizeof names)
                j += (size_t)snprintf(names + j, sizeof names - j, "%s'%s'", changed ? ", " : "", t->name);
            changed++;
        }
    }
    free(ref);
    if (changed)
        return ct_errorf("sanity check FAILED: %d of %d encoder tensors changed during evaluation (%s%s); the "
                         "encoder must stay frozen", changed, *n_checked, names, changed > 5 ? ", ..." : "");
    return CT_OK;
}

/* ---------------------------------------------------------------- features */

typedef struct {
    float *x;      /* (n, d) */
    int64_t *y;    /* (n) */
    int64_t n, d;
} feature_set;

static void feature_set_free(feature_set *s)
{
    free(s->x);
    free(s->y);
    memset(s, 0, sizeof *s);
}

static ct_status extract(encoder *e, ct_loader *l, int64_t epoch, const char *what, feature_set *out)
{
    progress_state ps;
    progress_begin(&ps, what);
    ct_features_options fo = {.epoch = epoch, .progress = progress_cb, .progress_ctx = &ps};
    feature_set_free(out);
    ct_status st = ct_features_extract_ex(e->prog, NULL, e->output, l, &fo, &out->x, &out->y, &out->n, &out->d);
    if (st) return ct_status_wrap(st, "%s features", what);
    int64_t bad = ct_loader_bad_count(l);
    if (bad) {
        const char *msgs[CT_LOADER_MAX_BAD_REPORTED];
        int k = ct_loader_bad_reported(l, msgs, CT_LOADER_MAX_BAD_REPORTED);
        fprintf(stderr, "contra eval: %lld bad image(s) in %s replaced by the next good one%s%s\n", (long long)bad,
                what, k ? ", first: " : "", k ? msgs[0] : "");
    }
    for (int64_t i = 0; i < out->n * out->d; i++)
        if (!isfinite(out->x[i]))
            return ct_errorf("%s features: the encoder produced a non-finite value (sample %lld)", what,
                             (long long)(i / out->d));
    return CT_OK;
}

static ct_status save_features(const char *dir, const char *name, const feature_set *s)
{
    char p[4400];
    int64_t dims[2] = {s->n, s->d};
    snprintf(p, sizeof p, "%s/%s_feats.npy", dir, name);
    CT_TRY(ct_npy_write(p, CT_PT_FLOAT, 2, dims, s->x));
    snprintf(p, sizeof p, "%s/%s_labels.npy", dir, name);
    return ct_npy_write(p, CT_PT_INT64, 1, dims, s->y);
}

/* ---------------------------------------------------------------- linear */

typedef struct {
    int64_t c, d;
    float *w, *b;       /* (c, d), (c) */
    float *vw, *vb;     /* momentum buffers, same shapes */
    float *gw, *gb;     /* gradients */
} fc_layer;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(splitmix(s) >> 11) / 9007199254740992.0; }

static ct_status fc_init(fc_layer *fc, int64_t c, int64_t d, uint64_t seed)
{
    memset(fc, 0, sizeof *fc);
    fc->c = c;
    fc->d = d;
    size_t nw = (size_t)(c * d), nb = (size_t)c;
    fc->w = malloc(sizeof(float) * nw);
    fc->vw = calloc(nw, sizeof(float));
    fc->gw = malloc(sizeof(float) * nw);
    fc->b = calloc(nb, sizeof(float));
    fc->vb = calloc(nb, sizeof(float));
    fc->gb = malloc(sizeof(float) * nb);
    if (!fc->w || !fc->vw || !fc->gw || !fc->b || !fc->vb || !fc->gb)
        return ct_errorf("out of memory for a %lld x %lld fc layer", (long long)c, (long long)d);
    /* main_lincls: weight ~ N(0, 0.01) (Box-Muller), bias 0 */
    uint64_t s = seed ^ 0x6c696e636c73ull;
    for (size_t i = 0; i < nw; i++) {
        double u1 = uniform01(&s), u2 = uniform01(&s);
        fc->w[i] = (float)(0.01 * sqrt(-2.0 * log(1.0 - u1)) * cos(2 * M_PI * u2));
    }
    return CT_OK;
}

static void fc_free(fc_layer *fc)
{
    free(fc->w);
    free(fc->b);
    free(fc->vw);
    free(fc->vb);
    free(fc->gw);
    free(fc->gb);
}

/* logits (m, c) = x (m, d) @ w^T + b */
static void fc_forward(const fc_layer *fc, const float *x, int64_t m, float *logits)
{
    for (int64_t i = 0; i < m; i++) memcpy(logits + i * fc->c, fc->b, sizeof(float) * (size_t)fc->c);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)fc->c, (int)fc->d, 1.0f, x, (int)fc->d, fc->w,
                (int)fc->d, 1.0f, logits, (int)fc->c);
}

static int64_t argmax(const float *v, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* Top-1 accuracy (0..1) of the fc on a feature set. */
static double fc_accuracy(const fc_layer *fc, const feature_set *s, float *logits /* (chunk, c) */, int64_t chunk)
{
    int64_t correct = 0;
    for (int64_t i0 = 0; i0 < s->n; i0 += chunk) {
        int64_t m = s->n - i0 < chunk ? s->n - i0 : chunk;
        fc_forward(fc, s->x + i0 * s->d, m, logits);
        for (int64_t i = 0; i < m; i++) correct += argmax(logits + i * fc->c, fc->c) == s->y[i0 + i];
    }
    return s->n ? (double)correct / (double)s->n : 0;
}

/* One SGD step on rows idx[0..m) of s: softmax cross-entropy (mean), then
 * torch.optim.SGD: g += wd w; v = momentum v + g; w -= lr v. Returns the
 * summed loss and adds the number of correct predictions to *correct. */
static double fc_step(fc_layer *fc, const feature_set *s, const int64_t *idx, int64_t m, double lr, double momentum,
                      double wd, float *xb /* (m, d) */, float *g /* (m, c) */, int64_t *correct)
{
    int64_t c = fc->c, d = fc->d;
    for (int64_t i = 0; i < m; i++) memcpy(xb + i * d, s->x + idx[i] * d, sizeof(float) * (size_t)d);
    fc_forward(fc, xb, m, g);
    double loss = 0;
    for (int64_t i = 0; i < m; i++) {
        float *row = g + i * c;
        int64_t y = s->y[idx[i]];
        *correct += argmax(row, c) == y;
        float mx = row[0];
        for (int64_t k = 1; k < c; k++) mx = row[k] > mx ? row[k] : mx;
        double z = 0;
        for (int64_t k = 0; k < c; k++) z += exp((double)(row[k] - mx));
        loss += log(z) - (double)(row[y] - mx);
        for (int64_t k = 0; k < c; k++) {
            double p = exp((double)(row[k] - mx)) / z;
            row[k] = (float)((p - (k == y ? 1.0 : 0.0)) / (double)m);
        }
    }
    /* gw (c, d) = g^T (c, m) @ xb (m, d); gb = column sums of g */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c, (int)d, (int)m, 1.0f, g, (int)c, xb, (int)d, 0.0f,
                fc->gw, (int)d);
    for (int64_t k = 0; k < c; k++) {
        double acc = 0;
        for (int64_t i = 0; i < m; i++) acc += g[i * c + k];
        fc->gb[k] = (float)acc;
    }
    for (int64_t i = 0; i < c * d; i++) {
        float gi = fc->gw[i] + (float)wd * fc->w[i];
        fc->vw[i] = (float)momentum * fc->vw[i] + gi;
        fc->w[i] -= (float)lr * fc->vw[i];
    }
    for (int64_t k = 0; k < c; k++) {
        float gi = fc->gb[k] + (float)wd * fc->b[k];
        fc->vb[k] = (float)momentum * fc->vb[k] + gi;
        fc->b[k] -= (float)lr * fc->vb[k];
    }
    return loss;
}

typedef struct {
    int kind;          /* 0 step, 1 cosine, 2 constant */
    int n;
    int milestones[32];
} schedule;

static int parse_schedule(const char *s, int epochs, schedule *out)
{
    memset(out, 0, sizeof *out);
    if (!strcmp(s, "cosine")) out->kind = 1;
    else if (!strcmp(s, "constant")) out->kind = 2;
    else if (!strcmp(s, "step")) {
        out->n = 2;
        out->milestones[0] = (int)lround(0.6 * epochs);
        out->milestones[1] = (int)lround(0.8 * epochs);
    } else if (!strncmp(s, "step:", 5)) {
        const char *p = s + 5;
        while (*p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p || v < 0 || v > 1000000 || out->n == 32) return -1;
            out->milestones[out->n++] = (int)v;
            if (*end == ',') end++;
            else if (*end) return -1;
            p = end;
        }
        if (!out->n) return -1;
    } else return -1;
    return 0;
}

static double schedule_lr(const schedule *s, double lr, int epoch, int epochs)
{
    if (s->kind == 1) return lr * 0.5 * (1.0 + cos(M_PI * (double)epoch / (double)epochs));
    if (s->kind == 2) return lr;
    for (int i = 0; i < s->n; i++)
        if (epoch >= s->milestones[i]) lr *= 0.1;
    return lr;
}

/* ---------------------------------------------------------------- the command */

static int parse_floats3(const char *s, float *out)
{
    char *end;
    for (int i = 0; i < 3; i++) {
        out[i] = strtof(s, &end);
        if (end == s) return -1;
        if (i < 2) {
            if (*end != ',') return -1;
            s = end + 1;
        }
    }
    return *end ? -1 : 0;
}

static ct_status run_eval(const eval_opts *o)
{
    bool linear = !strcmp(o->mode, "linear");
    encoder enc = {0};
    ct_loader *tl = NULL, *vl = NULL, *al = NULL;
    ct_folder tf = {0}, vf = {0};
    feature_set tr = {0}, va = {0};
    fc_layer fc = {0};
    int64_t *pred = NULL, *perm = NULL;
    float *xb = NULL, *gb = NULL, *w_init = NULL /* (c, d) */, *bank = NULL /* (n, d) */, *queries = NULL /* (m, d) */;
    ct_status st = CT_OK;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);

    /* validate the data paths before the (slow) compile */
    const char *paths[4] = {o->train, o->val, o->train_labels, o->val_labels};
    const char *flags[4] = {"--train", "--val", "--train-labels", "--val-labels"};
    for (int i = 0; i < 4; i++)
        if (paths[i] && access(paths[i], R_OK) != 0) return ct_errorf("%s '%s': %s", flags[i], paths[i], strerror(errno));
    if (access(o->encoder, R_OK) != 0) return ct_errorf("--encoder '%s': %s", o->encoder, strerror(errno));

    if ((st = encoder_open(o, &enc))) goto fail;

    ct_loader_config cfg;
    ct_data_err err = ct_loader_config_preset(&cfg, "eval", 1, enc.h < enc.w ? enc.h : enc.w, (int)o->batch);
    if (err) {
        st = data_status(err, "%s%s", "");
        goto fail;
    }
    ct_aug_view *v = &cfg.views[0];
    v->size_h = enc.h;
    v->size_w = enc.w;
    if (o->has_mean) memcpy(v->mean, o->mean, sizeof v->mean);
    if (o->has_std) memcpy(v->std, o->std, sizeof v->std);
    cfg.channels = enc.c;
    cfg.shuffle = 0;
    cfg.drop_last = 0;
    cfg.workers = o->workers;
    cfg.seed = o->seed;
    if ((st = open_data("--train", o->train, o->train_labels, o->limit, &cfg, &tl, &tf))) goto fail;
    if ((st = open_data("--val", o->val, o->val_labels, o->val_limit, &cfg, &vl, &vf))) goto fail;
    if (tf.n_classes && vf.n_classes && (st = check_classes(&tf, &vf, tl, vl, NULL, 0))) goto fail;
    if (linear && o->augment) {
        /* main_lincls's train transform: RandomResizedCrop(S) + RandomHorizontalFlip */
        ct_loader_config acfg = cfg;
        ct_aug_view *av = &acfg.views[0];
        av->resize = 0;
        av->scale[0] = 0.08, av->scale[1] = 1.0;
        av->ratio[0] = 3.0 / 4.0, av->ratio[1] = 4.0 / 3.0;
        av->flip_p = 0.5;
        av->n_ops = 1;
        av->ops[0] = CT_AUG_OP_FLIP;
        ct_folder dummy = {0};
        st = open_data("--train", o->train, o->train_labels, o->limit, &acfg, &al, &dummy);
        ct_folder_free(&dummy);
        if (st) goto fail;
    }
    fprintf(stderr, "contra eval: %s: input (%d, %d, %d), representation '%s'; train %lld images, val %lld, %d classes\n",
            o->encoder, enc.c, enc.h, enc.w, enc.output, (long long)ct_loader_size(tl), (long long)ct_loader_size(vl),
            ct_loader_n_classes(tl));

    if ((st = extract(&enc, vl, 0, "val", &va))) goto fail;
    if ((st = check_classes(&tf, &vf, tl, vl, va.y, va.n))) goto fail;
    if (!linear || !o->augment)
        if ((st = extract(&enc, tl, 0, "train", &tr))) goto fail;
    int classes = ct_loader_n_classes(tl);
    char result[512];

    if (!linear) {
        /* normalised copies: the raw features are what --save-features writes */
        pred = malloc(sizeof(int64_t) * (size_t)va.n);
        bank = malloc(sizeof(float) * (size_t)(tr.n * tr.d));
        queries = malloc(sizeof(float) * (size_t)(va.n * va.d));
        if (!pred || !bank || !queries) {
            st = ct_errorf("out of memory for the kNN features");
            goto fail;
        }
        memcpy(bank, tr.x, sizeof(float) * (size_t)(tr.n * tr.d));
        memcpy(queries, va.x, sizeof(float) * (size_t)(va.n * va.d));
        ct_knn_normalize(bank, tr.n, tr.d);
        ct_knn_normalize(queries, va.n, va.d);
        ct_train_err terr = ct_knn_predict(bank, tr.y, tr.n, queries, va.n, va.d, classes, o->k, (float)o->t, pred,
                                           NULL);
        if (terr) {
            st = ct_errorf("%s", terr);
            ct_train_err_free(terr);
            goto fail;
        }
        int64_t correct = 0;
        for (int64_t i = 0; i < va.n; i++) correct += pred[i] == va.y[i];
        int k = o->k > tr.n ? (int)tr.n : o->k;
        snprintf(result, sizeof result,
                 "kNN top-1 accuracy: %.2f%% (%lld/%lld; k %d, t %g; %lld train, %lld val, %d classes, %lld-d)\n",
                 100.0 * (double)correct / (double)va.n, (long long)correct, (long long)va.n, k, o->t, (long long)tr.n,
                 (long long)va.n, classes, (long long)va.d);
    } else {
        schedule sch;
        parse_schedule(o->schedule, o->epochs, &sch); /* checked by cmd_eval */
        int64_t n_train = ct_loader_size(al ? al : tl), fb = o->fc_batch;
        if ((st = fc_init(&fc, classes, va.d, o->seed))) goto fail;
        if (o->save) {
            w_init = malloc(sizeof(float) * (size_t)(classes * va.d));
            if (!w_init) {
                st = ct_errorf("out of memory");
                goto fail;
            }
            memcpy(w_init, fc.w, sizeof(float) * (size_t)(classes * va.d));
        }
        perm = malloc(sizeof(int64_t) * (size_t)n_train);
        xb = malloc(sizeof(float) * (size_t)(fb * va.d));
        gb = malloc(sizeof(float) * (size_t)(fb * classes));
        if (!perm || !xb || !gb) {
            st = ct_errorf("out of memory for the fc training buffers");
            goto fail;
        }
        double best = -1, acc = 0;
        int best_epoch = 0;
        for (int e = 0; e < o->epochs; e++) {
            if (al && (st = extract(&enc, al, e, "train (augmented)", &tr))) goto fail;
            if (tr.d != va.d) {
                st = ct_errorf("train and val features differ in size (%lld, %lld)", (long long)tr.d, (long long)va.d);
                goto fail;
            }
            double lr = schedule_lr(&sch, o->lr, e, o->epochs);
            ct_rng r = ct_rng_stream(o->seed, (uint64_t)e, ~0ull, 1);
            ct_rng_permutation(&r, perm, tr.n);
            double loss = 0;
            int64_t correct = 0;
            for (int64_t i0 = 0; i0 < tr.n; i0 += fb) {
                int64_t m = tr.n - i0 < fb ? tr.n - i0 : fb;
                loss += fc_step(&fc, &tr, perm + i0, m, lr, o->momentum, o->wd, xb, gb, &correct);
            }
            if (!isfinite(loss)) {
                st = ct_errorf("linear: the loss diverged at epoch %d (lr %g): try a smaller --lr", e + 1, lr);
                goto fail;
            }
            acc = fc_accuracy(&fc, &va, gb, fb);
            if (acc > best) best = acc, best_epoch = e + 1;
            printf("epoch %d/%d  lr %.4g  loss %.4f  train top-1 %.2f%%  val top-1 %.2f%%\n", e + 1, o->epochs, lr,
                   loss / (double)tr.n, 100.0 * (double)correct / (double)tr.n, 100.0 * acc);
            fflush(stdout);
        }
        snprintf(result, sizeof result,
                 "linear top-1 accuracy: %.2f%% (best %.2f%% at epoch %d; %d epochs, lr %g, %s schedule%s; %lld train, "
                 "%lld val, %d classes, %lld-d)\n",
                 100.0 * acc, 100.0 * best, best_epoch, o->epochs, o->lr, o->schedule,
                 o->augment ? ", augmented" : "", (long long)tr.n, (long long)va.n, classes, (long long)va.d);
    }

    int n_checked = 0;
    int64_t n_bytes = 0;
    if ((st = encoder_check_unchanged(&enc, &n_checked, &n_bytes))) goto fail;
    if (o->save) {
        if (mkdir(o->save, 0777) != 0 && errno != EEXIST) {
            st = ct_errorf("--save-features '%s': %s", o->save, strerror(errno));
            goto fail;
        }
        if ((st = save_features(o->save, "train", &tr)) || (st = save_features(o->save, "val", &va))) goto fail;
        char p[4400];
        if (pred) {
            snprintf(p, sizeof p, "%s/val_pred.npy", o->save);
            if ((st = ct_npy_write(p, CT_PT_INT64, 1, &va.n, pred))) goto fail;
        }
        if (w_init) {
            int64_t wd[2] = {fc.c, fc.d};
            snprintf(p, sizeof p, "%s/fc_weight_init.npy", o->save);
            if ((st = ct_npy_write(p, CT_PT_FLOAT, 2, wd, w_init))) goto fail;
            snprintf(p, sizeof p, "%s/fc_weight.npy", o->save);
            if ((st = ct_npy_write(p, CT_PT_FLOAT, 2, wd, fc.w))) goto fail;
            snprintf(p, sizeof p, "%s/fc_bias.npy", o->save);
            if ((st = ct_npy_write(p, CT_PT_FLOAT, 1, wd, fc.b))) goto fail;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fputs(result, stdout);
    printf("sanity check passed: %d encoder tensors (%lld bytes) unchanged\n", n_checked, (long long)n_bytes);
    fprintf(stderr, "contra eval: done in %.1f s\n", seconds_between(t0, t1));
fail:
    free(pred);
    free(w_init);
    free(bank);
    free(queries);
    free(perm);
    free(xb);
    free(gb);
    fc_free(&fc);
    feature_set_free(&tr);
    feature_set_free(&va);
    ct_loader_close(tl);
    ct_loader_close(vl);
    ct_loader_close(al);
    ct_folder_free(&tf);
    ct_folder_free(&vf);
    encoder_free(&enc);
    return st;
}

int cmd_eval(int argc, char **argv)
{
    eval_opts o = {.batch = 64, .k = CT_KNN_DEFAULT_K, .t = CT_KNN_DEFAULT_T, .epochs = 100, .fc_batch = 256,
                   .lr = 30, .momentum = 0.9, .wd = 0, .schedule = "step"};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.workers = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    bool linear_only = false, knn_only = false;
    const char *linear_flag = NULL, *knn_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
#define STR_OPT(flag, field)                                                                                          \
    if (!strcmp(a, flag) && val) {                                                                                    \
        o.field = val;                                                                                                \
        i++;                                                                                                          \
        continue;                                                                                                     \
    }
        STR_OPT("--encoder", encoder)
        STR_OPT("--train", train)
        STR_OPT("--val", val)
        STR_OPT("--train-labels", train_labels)
        STR_OPT("--val-labels", val_labels)
        STR_OPT("--repr", repr)
        STR_OPT("--cc", cc)
        STR_OPT("--save-features", save)
#undef STR_OPT
        if (!strcmp(a, "--schedule") && val) {
            o.schedule = val;
            linear_only = true, linear_flag = a;
            i++;
            continue;
        }
        if (!strcmp(a, "--augment")) {
            o.augment = true;
            linear_only = true, linear_flag = a;
            continue;
        }
        if ((!strcmp(a, "--mean") || !strcmp(a, "--std")) && val) {
            bool mean = !strcmp(a, "--mean");
            if (parse_floats3(val, mean ? o.mean : o.std)) {
                fprintf(stderr, "contra eval: %s needs three comma-separated numbers, got '%s'\n", a, val);
                return 2;
            }
            for (int c = 0; !mean && c < 3; c++)
                if (!(o.std[c] > 0)) {
                    fprintf(stderr, "contra eval: --std values must be positive, got '%s'\n", val);
                    return 2;
                }
            if (mean) o.has_mean = true;
            else o.has_std = true;
            i++;
            continue;
        }
        static const char *const num_flags[] = {"--batch", "--limit", "--val-limit", "--size", "--threads",
                                                "--workers", "--k", "--t", "--epochs", "--fc-batch",
                                                "--lr", "--momentum", "--weight-decay", "--seed"};
        int which = -1;
        for (int f = 0; f < (int)(sizeof num_flags / sizeof num_flags[0]); f++)
            if (!strcmp(a, num_flags[f])) which = f;
        if (which >= 0 && val) {
            char *end;
            double x = strtod(val, &end);
            i++;
            bool integer = which <= 6 || which == 8 || which == 9, seed = which == 13;
            if (*end || !val[0] || !isfinite(x) || (integer && (x != floor(x) || x < 1 || x > 1e9)) ||
                (seed && (x != floor(x) || x < 0 || x > 1e18))) {
                fprintf(stderr, "contra eval: %s needs a %s, got '%s'\n", a,
                        integer ? "positive integer" : seed ? "non-negative integer" : "number", val);
                return 2;
            }
            switch (which) {
            case 0: o.batch = (int64_t)x; break;
            case 1: o.limit = (int64_t)x; break;
            case 2: o.val_limit = (int64_t)x; break;
            case 3: o.size = (int)x; break;
            case 4: o.threads = (int)x; break;
            case 5: o.workers = x > 256 ? 256 : (int)x; break;
            case 6: o.k = (int)x, knn_only = true, knn_flag = a; break;
            case 7: o.t = x, knn_only = true, knn_flag = a; break;
            case 8: o.epochs = (int)x, linear_only = true, linear_flag = a; break;
            case 9: o.fc_batch = (int)x, linear_only = true, linear_flag = a; break;
            case 10: o.lr = x, linear_only = true, linear_flag = a; break;
            case 11: o.momentum = x, linear_only = true, linear_flag = a; break;
            case 12: o.wd = x, linear_only = true, linear_flag = a; break;
            case 13: o.seed = (uint64_t)x; break;
            }
            continue;
        }
        if (a[0] == '-' && a[1]) {
            fprintf(stderr, "contra eval: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (o.mode) {
            fprintf(stderr, "contra eval: unexpected argument '%s' (the protocol is '%s')\n", a, o.mode);
            return 2;
        }
        o.mode = a;
    }
    const char *missing = !o.mode ? "no protocol given (knn or linear)" : !o.encoder ? "--encoder is required"
                          : !o.train ? "--train is required" : !o.val ? "--val is required" : NULL;
    if (missing) {
        fprintf(stderr, "contra eval: %s\n", missing);
        usage(stderr);
        return 2;
    }
    if (strcmp(o.mode, "knn") && strcmp(o.mode, "linear")) {
        fprintf(stderr, "contra eval: unknown protocol '%s' (knn or linear)\n", o.mode);
        return 2;
    }
    bool linear = !strcmp(o.mode, "linear");
    if (linear && knn_only) {
        fprintf(stderr, "contra eval: %s is a knn option\n", knn_flag);
        return 2;
    }
    if (!linear && linear_only) {
        fprintf(stderr, "contra eval: %s is a linear option\n", linear_flag);
        return 2;
    }
    if (!(o.t > 0) || !(o.lr > 0) || o.momentum < 0 || o.momentum >= 1 || o.wd < 0) {
        fprintf(stderr, "contra eval: %s\n", !(o.t > 0) ? "--t must be positive" : !(o.lr > 0) ? "--lr must be positive"
                                             : o.wd < 0 ? "--weight-decay must be >= 0" : "--momentum must be in [0, 1)");
        return 2;
    }
    schedule sch;
    if (parse_schedule(o.schedule, o.epochs, &sch)) {
        fprintf(stderr, "contra eval: --schedule '%s': expected step, step:E1,E2,..., cosine or constant\n",
                o.schedule);
        return 2;
    }
    ct_status st = run_eval(&o);
    if (st) return cli_fail(st);
    return 0;
}

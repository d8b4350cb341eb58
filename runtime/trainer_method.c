/* trainer_method.c — the trainer of a 'contra compile --method moco-v2|...'
 * folder: feeds the compiled step view batches (from image folders or IDX
 * files through the prefetching loader, or from .npy files), the schedule's
 * learning rate and EMA decay and the shuffle-BN permutations; shows
 * progress, writes metrics and curves, monitors kNN accuracy each epoch,
 * checkpoints (periodically, per epoch, on SIGINT/SIGTERM) and resumes
 * exactly, and exports the trained encoder as ONNX. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dist.h"
#include "feature_extract.h"
#include "frontend.h"
#include "knn.h"
#include "loader.h"
#include "metrics.h"
#include "npy.h"
#include "program.h"
#include "runtime.h"
#include "schedule.h"
#include "trainer.h"

static void usage(FILE *f, const trainer_meta *m)
{
    fprintf(f,
            "usage: trainer --data TRAIN [--val VAL] [options]\n"
            "       trainer --views V1.npy,V2.npy[,...] --steps N [options]\n"
            "\n"
            "Train the %s step compiled in this folder (preset %s, batch %s per view).\n"
            "\n"
            "Data:\n"
            "  --data TRAIN       an image folder (one subfolder per class, labels from\n"
            "                     the sorted names, as ImageFolder; or a flat folder of\n"
            "                     images), JPEG (TurboJPEG, scaled decoding) or PNG; or an\n"
            "                     IDX image file (MNIST, Fashion-MNIST; .gz or not) whose\n"
            "                     labels file is found by name (train-images-idx3-ubyte ->\n"
            "                     train-labels-idx1-ubyte) or given by --data-labels\n"
            "  --data-labels F    IDX labels of --data\n"
            "  --limit N          use the first N training images only (default: all)\n"
            "  --val VAL          labelled images for the kNN monitor (same forms as\n"
            "                     --data; --val-labels F, --val-limit N); the bank is the\n"
            "                     training set with the eval transform\n"
            "  --augment NAME     the views' augmentation (default: the preset's, %s):\n"
            "                     moco-v1, moco-v2, simclr, byol, supcon, none\n"
            "  --workers W        decoding threads (default 2); results do not depend on W\n"
            "  --views A.npy,B.npy,...  pre-augmented views instead of --data: float32\n"
            "                     [S, C, H, W] each; step s takes rows s*B .. s*B+B-1 (mod S)\n"
            "  --view-labels Y.npy  int64 [S] labels for --views (SupCon)\n"
            "  --perm P.npy       int64 [steps, B] (or [steps, 2, B] with the symmetric\n"
            "                     loss) shuffle-BN permutations; default: drawn from --seed\n"
            "                     (data-parallel: of the global batch, ranks x B)\n"
            "\n"
            "Schedule:\n"
            "  --epochs E         passes over the data (default: the preset's, %s)\n"
            "  --steps N          stop after N steps in all instead (with --views: required)\n"
            "  --batch B          must equal the compiled batch (checked)\n"
            "  --lr LR            base learning rate (default %s)\n"
            "  --schedule S       constant, step:M1,M2,...[:GAMMA] (milestones in steps),\n"
            "                     cosine[:FINAL_LR]; default: the preset's (%s) over the run\n"
            "  --warmup W         linear warm-up over the first W steps\n"
            "  --seed S           data order, augmentations, permutations (default 0)\n"
            "\n"
            "Run folder, monitoring, checkpoints:\n"
            "  --out RUNDIR       metrics.jsonl, loss.svg, knn.svg, checkpoint.safetensors\n"
            "                     (default: run)\n"
            "  --knn-k K, --knn-t T  weighted kNN monitor (default 200, 0.1), run on --val\n"
            "                     at each epoch end (--knn-every E epochs; 0: never)\n"
            "  --knn-init         also measure kNN accuracy before the first step\n"
            "  --ckpt-every N     also checkpoint every N steps (default 0: at epoch ends\n"
            "                     and on SIGINT/SIGTERM only)\n"
            "  --resume RUNDIR    continue the run in RUNDIR from its checkpoint, exactly\n"
            "                     (same data, options and thread count give the same bits)\n"
            "  --export ENC.onnx  after training, write the query/online encoder up to the\n"
            "                     representation (BatchNorm statistics included) as ONNX\n"
            "  --embed X.npy:OUT.npy  after training, the representation of the images X\n"
            "                     (float32 [S, C, H, W], preprocessed) as OUT.npy [S, d]\n"
            "  --save-params DIR  after training, every parameter and state tensor as\n"
            "                     DIR/<name>.npy\n"
            "  --save-every N     with --save-params, also after every N-th step, as\n"
            "                     DIR/step<S>/<name>.npy (a trajectory, step by step)\n"
            "  --max-bad F        stop when more than this fraction of images is unreadable\n"
            "                     (default 0.01)\n"
            "  --threads T        threads of the compiled step and BLAS\n"
            "  --progress MODE    auto (a line updated in place on a terminal, plain lines\n"
            "                     otherwise), plain, none (default auto)\n"
            "  -q, --quiet        no per-step lines (--progress none) \n"
            "  --time-steps       print 'time S SECONDS' per step\n"
            "  --profile N        time every node of the compiled step from the second step\n"
            "                     on and print the N slowest at the end (stderr)\n"
            "\n"
            "Data parallel (a trainer compiled with --ranks N):\n"
            "  mpirun -np N ./trainer ...  runs N ranks; each takes its block of B rows of\n"
            "                     every global batch of N*B (same order and augmentations\n"
            "                     as one process with batch N*B); rank 0 writes the run\n"
            "                     folder and checkpoints (BatchNorm statistics averaged\n"
            "                     over the ranks); a checkpoint resumes on another number\n"
            "                     of ranks that keeps the global batch\n"
            "  --dist-timeout S   a rank waiting more than S seconds (default 300) in a\n"
            "                     collective of the step ends the job, naming itself\n"
            "  -h, --help         this help\n",
            trainer_meta_get(m, "method", "?"), trainer_meta_get(m, "preset", "?"), trainer_meta_get(m, "batch", "?"),
            trainer_meta_get(m, "augment", "?"), trainer_meta_get(m, "epochs", "?"),
            trainer_meta_get(m, "base_lr", "?"), trainer_meta_get(m, "schedule", "?"));
}

/* ---------------------------------------------------------------- options */

typedef struct {
    const char *data, *data_labels, *val, *val_labels, *augment, *views, *view_labels, *perm;
    const char *out, *resume, *export_path, *save, *sched, *progress, *embed;
    long long limit, val_limit, epochs, steps, batch, warmup, ckpt_every, knn_every, knn_k, save_every;
    int workers, threads;
    uint64_t seed;
    double lr, knn_t, max_bad, dist_timeout;
    bool time_steps, knn_init;
    int profile; /* --profile N: the N slowest nodes, 0: off */
} topts;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    g_stop = sig;
}

static ct_status from_data(ct_data_err e)
{
    ct_status st = ct_errorf("%s", e);
    ct_data_err_free(e);
    return st;
}

static ct_status from_train(ct_train_err e)
{
    ct_status st = ct_errorf("%s", e);
    ct_train_err_free(e);
    return st;
}

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* IDX labels file next to an images file: "...-images-idx3-ubyte[.gz]" ->
 * "...-labels-idx1-ubyte[.gz]". */
static bool idx_labels_path(const char *images, char *out, size_t cap)
{
    const char *p = strstr(images, "images-idx3");
    if (!p) return false;
    snprintf(out, cap, "%.*slabels-idx1%s", (int)(p - images), images, p + strlen("images-idx3"));
    return access(out, R_OK) == 0;
}

static ct_status open_source(const char *path, const char *labels, long long limit, const ct_loader_config *cfg,
                             ct_loader **out)
{
    if (access(path, R_OK)) return ct_errorf("%s: %s", path, strerror(errno));
    if (is_dir(path)) {
        ct_data_err e = ct_loader_open_folder(path, CT_FOLDER_AUTO, cfg, out);
        return e ? from_data(e) : CT_OK;
    }
    char lab[4200];
    if (!labels) {
        if (!idx_labels_path(path, lab, sizeof lab))
            return ct_errorf("%s: not a folder, and no IDX labels file found beside it (give --data-labels / "
                             "--val-labels)", path);
        labels = lab;
    }
    ct_data_err e = ct_loader_open_idx(path, labels, limit, cfg, out);
    return e ? from_data(e) : CT_OK;
}

/* ---------------------------------------------------------------- run state */

typedef struct {
    ct_rt_program *p, *feat;
    const ct_program_desc *d;
    int n_views;
    int view_idx[CT_LOADER_MAX_VIEWS];
    int labels_idx, perm_idx[2], mom_idx, lr_idx, loss_idx, rank_rows_idx;
    int64_t B;
    ct_dist *dist; /* the ranks (a world of 1 without mpirun) */
    int rank, world;
    char fingerprint[32];
} step_prog;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The shuffle-BN permutation of step s (Fisher-Yates on a stream of (seed, s, which)). */
static void draw_perm(uint64_t seed, int64_t s, int which, int64_t *perm, int64_t B)
{
    uint64_t key = mix64(seed ^ mix64((uint64_t)s * 2 + (uint64_t)which + 0x5157)), ctr = 0;
    for (int64_t i = 0; i < B; i++) perm[i] = i;
    for (int64_t i = B - 1; i > 0; i--) {
        uint64_t r = mix64(key + (++ctr) * 0x9E3779B97F4A7C15ull);
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static ct_status bind_zero(step_prog *sp, int idx)
{
    const ct_tensor_desc *t = &sp->d->tensors[idx];
    void *z = calloc(1, (size_t)t->nbytes + 1);
    if (!z) abort();
    ct_status st = ct_rt_program_set_input(sp->p, t->name, t->dtype, t->rank, t->dims, z);
    free(z);
    return st;
}

static ct_status step_prog_open(const char *dir, const trainer_meta *m, step_prog *sp)
{
    memset(sp, 0, sizeof *sp);
    CT_TRY(ct_rt_program_load(dir, &sp->p));
    sp->d = ct_rt_program_desc(sp->p);
    sp->B = atoll(trainer_meta_get(m, "batch", "0"));
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->key[i], "view")) {
            if (sp->n_views == CT_LOADER_MAX_VIEWS) return ct_errorf("too many views in trainer.txt");
            int k = ct_rt_program_find(sp->p, m->val[i]);
            if (k < 0) return ct_errorf("model.so has no input '%s' (trainer.txt does not match)", m->val[i]);
            sp->view_idx[sp->n_views++] = k;
        }
#define FIND(field, key)                                                                              \
    do {                                                                                              \
        const char *nm_ = trainer_meta_get(m, key, NULL);                                             \
        sp->field = nm_ ? ct_rt_program_find(sp->p, nm_) : -1;                                        \
        if (nm_ && sp->field < 0) return ct_errorf("model.so has no tensor '%s' (trainer.txt does not match)", nm_); \
    } while (0)
    FIND(labels_idx, "labels");
    FIND(perm_idx[0], "shuffle");
    FIND(perm_idx[1], "shuffle2");
    FIND(mom_idx, "momentum_input");
    FIND(lr_idx, "lr");
    FIND(loss_idx, "loss");
    FIND(rank_rows_idx, "rank_rows");
#undef FIND
    if (sp->n_views < 1 || sp->lr_idx < 0 || sp->loss_idx < 0 || sp->B <= 0)
        return ct_errorf("%s/trainer.txt is incomplete (views, lr, loss, batch)", dir);
    /* bind every input once (zeros); steps refill the bound buffers in place */
    for (int i = 0; i < sp->d->n_inputs; i++) CT_TRY(bind_zero(sp, sp->d->inputs[i]));
    /* the fingerprint: FNV-1a of the method and every persistent tensor's name, type and shape */
    uint64_t h = 1469598103934665603ull;
#define FNV(ptr, len)                                                                                 \
    for (size_t q_ = 0; q_ < (size_t)(len); q_++) h = (h ^ ((const unsigned char *)(ptr))[q_]) * 1099511628211ull
    const char *meth = trainer_meta_get(m, "method", "");
    FNV(meth, strlen(meth));
    for (int i = 0; i < sp->d->n_tensors; i++) {
        const ct_tensor_desc *t = &sp->d->tensors[i];
        if (t->kind != CT_PT_PARAM && t->kind != CT_PT_STATE) continue;
        FNV(t->name, strlen(t->name) + 1);
        FNV(&t->dtype, sizeof t->dtype);
        FNV(t->dims, sizeof t->dims[0] * (size_t)t->rank);
    }
#undef FNV
    snprintf(sp->fingerprint, sizeof sp->fingerprint, "%016llx", (unsigned long long)h);
    char fdir[4200];
    snprintf(fdir, sizeof fdir, "%s/features", dir);
    return ct_rt_program_load(fdir, &sp->feat);
}

static void step_prog_close(step_prog *sp)
{
    ct_rt_program_free(sp->feat);
    ct_rt_program_free(sp->p);
}

/* The persistent tensors (parameters, key/target copies, optimizer slots,
 * BatchNorm statistics, queue and pointer, counters) as checkpoint entries. */
static int state_tensors(step_prog *sp, ct_ckpt_tensor *t, int cap)
{
    int n = 0;
    for (int i = 0; i < sp->d->n_tensors && n < cap; i++) {
        const ct_tensor_desc *d = &sp->d->tensors[i];
        if (d->kind != CT_PT_PARAM && d->kind != CT_PT_STATE) continue;
        t[n].name = d->name;
        t[n].dtype = ct_ckpt_dtype_from_onnx(d->dtype);
        t[n].rank = d->rank;
        memcpy(t[n].dims, d->dims, sizeof d->dims[0] * (size_t)d->rank);
        t[n].data = ct_rt_program_tensor(sp->p, i);
        n++;
    }
    return n;
}

/* State the ranks hold differently (BatchNorm running statistics without
 * SyncBN: each rank's from its own batches) becomes its mean over the ranks,
 * as MoCo's SplitBatchNorm stores the mean of its splits' statistics; every
 * rank calls it at the same point. */
static ct_status dist_average_state(step_prog *sp)
{
    if (sp->world < 2) return CT_OK;
    CT_TRY(ct_rt_program_sync_host(sp->p));
    bool changed = false;
    for (int i = 0; i < sp->d->n_tensors; i++) {
        const ct_tensor_desc *t = &sp->d->tensors[i];
        if (t->kind != CT_PT_STATE || t->dtype != CT_PT_FLOAT) continue;
        changed |= ct_dist_average_if_differs(sp->dist, ct_rt_program_tensor(sp->p, i), t->nbytes / 4);
    }
    if (changed) ct_rt_program_state_changed(sp->p);
    return CT_OK;
}

static ct_status checkpoint_write(step_prog *sp, const char *rundir, int64_t step, uint64_t seed, int64_t total)
{
    CT_TRY(dist_average_state(sp));
    if (sp->rank != 0) return CT_OK; /* rank 0 writes */
    CT_TRY(ct_rt_program_sync_host(sp->p));
    int cap = sp->d->n_tensors;
    ct_ckpt_tensor *t = calloc((size_t)cap + 1, sizeof *t);
    if (!t) abort();
    int n = state_tensors(sp, t, cap);
    char s_step[32], s_seed[32], s_total[32], path[4200];
    snprintf(s_step, sizeof s_step, "%lld", (long long)step);
    snprintf(s_seed, sizeof s_seed, "%llu", (unsigned long long)seed);
    snprintf(s_total, sizeof s_total, "%lld", (long long)total);
    ct_ckpt_meta meta[] = {{"fingerprint", sp->fingerprint}, {"step", s_step}, {"seed", s_seed},
                           {"total_steps", s_total}};
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", rundir);
    ct_train_err e = ct_ckpt_write(path, t, n, meta, 4);
    free(t);
    return e ? from_train(e) : CT_OK;
}

static ct_status checkpoint_read(step_prog *sp, const char *rundir, uint64_t seed, int64_t *step)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", rundir);
    ct_ckpt_remove_stale_temps(path);
    ct_ckpt *c = NULL;
    ct_train_err e = ct_ckpt_open(path, sp->fingerprint, &c);
    if (e) return ct_status_wrap(from_train(e), "--resume %s", rundir);
    const char *s = ct_ckpt_meta_get(c, "step"), *sd = ct_ckpt_meta_get(c, "seed");
    ct_status st = CT_OK;
    if (!s || !sd) st = ct_errorf("%s: no step or seed in the checkpoint's metadata", path);
    else if (strtoull(sd, NULL, 10) != seed)
        st = ct_errorf("%s: the run used --seed %s, not %llu (resume with the same options)", path, sd,
                       (unsigned long long)seed);
    if (!st) {
        int cap = sp->d->n_tensors;
        ct_ckpt_tensor *t = calloc((size_t)cap + 1, sizeof *t);
        if (!t) abort();
        int n = state_tensors(sp, t, cap);
        e = ct_ckpt_load(c, t, n);
        free(t);
        ct_rt_program_state_changed(sp->p); /* a device program uploads it before its next step */
        if (e) st = ct_status_wrap(from_train(e), "%s", path);
        *step = atoll(s);
    }
    ct_ckpt_close(c);
    return st;
}

/* The query/online encoder's current values into the representation program. */
static ct_status sync_features(step_prog *sp)
{
    CT_TRY(ct_rt_program_sync_host(sp->p));
    const ct_program_desc *fd = ct_rt_program_desc(sp->feat);
    for (int i = 0; i < fd->n_tensors; i++) {
        const ct_tensor_desc *t = &fd->tensors[i];
        if (t->kind != CT_PT_PARAM && t->kind != CT_PT_STATE && t->kind != CT_PT_CONST) continue;
        int k = ct_rt_program_find(sp->p, t->name);
        if (k < 0 || sp->d->tensors[k].nbytes != t->nbytes) continue;
        memcpy(ct_rt_program_tensor(sp->feat, i), ct_rt_program_tensor(sp->p, k), (size_t)t->nbytes);
    }
    ct_rt_program_state_changed(sp->feat);
    return CT_OK;
}

static ct_status knn_eval(step_prog *sp, const trainer_meta *m, ct_loader *bank, ct_loader *val, const topts *o,
                          double *acc)
{
    CT_TRY(sync_features(sp));
    const char *in = trainer_meta_get(m, "features_input", "input"), *out = trainer_meta_get(m, "features_output", "");
    float *bf = NULL, *vf = NULL;
    int64_t *bl = NULL, *vl = NULL, nb = 0, nv = 0, d = 0, d2 = 0;
    ct_status st = ct_features_extract(sp->feat, in, out, bank, &bf, &bl, &nb, &d);
    if (!st) st = ct_features_extract(sp->feat, in, out, val, &vf, &vl, &nv, &d2);
    if (!st) {
        int classes = ct_loader_n_classes(bank);
        for (int64_t i = 0; i < nv; i++)
            if (vl[i] < 0 || vl[i] >= classes) {
                st = ct_errorf("--val: label %lld of image %lld is not one of the %d training classes",
                               (long long)vl[i], (long long)i, classes);
                break;
            }
        if (!st) {
            ct_train_err e = ct_knn_accuracy(bf, bl, nb, vf, vl, nv, d, classes, (int)o->knn_k, (float)o->knn_t, acc);
            if (e) st = from_train(e);
        }
    }
    free(bf);
    free(vf);
    free(bl);
    free(vl);
    return st;
}

static ct_status export_encoder(step_prog *sp, const char *dir, const char *path)
{
    CT_TRY(sync_features(sp));
    char src[4200];
    snprintf(src, sizeof src, "%s/features/encoder.onnx", dir);
    ct_graph *g = NULL;
    CT_TRY(ct_onnx_load(src, &g));
    const ct_program_desc *fd = ct_rt_program_desc(sp->feat);
    int copied = 0;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (!v->data || (v->kind != CT_VALUE_PARAM && v->kind != CT_VALUE_STATE)) continue;
        int k = ct_rt_program_find(sp->feat, v->name);
        if (k < 0 || fd->tensors[k].nbytes != (int64_t)ct_value_nbytes(v)) continue;
        memcpy(v->data, ct_rt_program_tensor(sp->feat, k), ct_value_nbytes(v));
        copied++;
    }
    ct_status st = ct_onnx_save(g, path);
    ct_graph_free(g);
    return st;
}

/* --embed X.npy:OUT.npy: the representation of X [S, C, H, W] by the
 * current query/online encoder (BatchNorm in inference form), as [S, d]. */
static ct_status embed(step_prog *sp, const trainer_meta *m, const char *spec)
{
    char in[4200];
    const char *colon = strchr(spec, ':');
    if (!colon || colon == spec || !colon[1]) return ct_errorf("--embed needs X.npy:OUT.npy, got '%s'", spec);
    snprintf(in, sizeof in, "%.*s", (int)(colon - spec), spec);
    CT_TRY(sync_features(sp));
    int ii = ct_rt_program_find(sp->feat, trainer_meta_get(m, "features_input", "input"));
    int oi = ct_rt_program_find(sp->feat, trainer_meta_get(m, "features_output", ""));
    if (ii < 0 || oi < 0) return ct_errorf("features/model.so does not match trainer.txt");
    const ct_program_desc *fd = ct_rt_program_desc(sp->feat);
    const ct_tensor_desc *ti = &fd->tensors[ii], *to = &fd->tensors[oi];
    ct_npy x = {0};
    CT_TRY(ct_npy_read(in, &x));
    ct_status st = CT_OK;
    float *out = NULL;
    if (x.dtype != CT_PT_FLOAT || x.rank != ti->rank || x.dims[0] < 1) st = ct_errorf("%s: expected float32 [S, %lld, %lld, %lld]", in,
        (long long)ti->dims[1], (long long)ti->dims[2], (long long)ti->dims[3]);
    for (int k = 1; !st && k < ti->rank; k++)
        if (x.dims[k] != ti->dims[k]) st = ct_errorf("%s: dimension %d is %lld, the encoder needs %lld", in, k,
                                                     (long long)x.dims[k], (long long)ti->dims[k]);
    if (st) goto done;
    int64_t S = x.dims[0], B = ti->dims[0], dd = to->nbytes / 4 / B;
    size_t per = (size_t)ti->nbytes / (size_t)B;
    out = malloc(sizeof *out * (size_t)(S * dd));
    if (!out) abort();
    void *buf = calloc(1, (size_t)ti->nbytes);
    if (!buf) abort();
    for (int64_t s0 = 0; s0 < S && !st; s0 += B) {
        int64_t n = S - s0 < B ? S - s0 : B;
        memcpy(buf, (char *)x.data + (size_t)s0 * per, (size_t)n * per);
        for (int64_t r = n; r < B; r++) memcpy((char *)buf + (size_t)r * per, (char *)x.data + (size_t)(S - 1) * per, per);
        if ((st = ct_rt_program_set_input(sp->feat, ti->name, CT_PT_FLOAT, ti->rank, ti->dims, buf))) break;
        if ((st = ct_rt_program_run(sp->feat))) break;
        memcpy(out + s0 * dd, ct_rt_program_tensor(sp->feat, oi), sizeof *out * (size_t)(n * dd));
    }
    free(buf);
    if (!st) st = ct_npy_write(colon + 1, CT_PT_FLOAT, 2, (int64_t[]){S, dd}, out);
done:
    free(out);
    ct_npy_free(&x);
    return st;
}

static ct_status save_all(ct_rt_program *p, const char *dir)
{
    CT_TRY(ct_rt_program_sync_host(p));
    const ct_program_desc *d = ct_rt_program_desc(p);
    CT_TRY(trainer_mkdirs(dir));
    for (int i = 0; i < d->n_tensors; i++) {
        const ct_tensor_desc *t = &d->tensors[i];
        if (t->kind != CT_PT_PARAM && t->kind != CT_PT_STATE) continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.npy", dir, t->name);
        char *slash = strrchr(path, '/');
        if (slash && slash > path + strlen(dir)) {
            *slash = 0;
            CT_TRY(trainer_mkdirs(path));
            *slash = '/';
        }
        CT_TRY(ct_npy_write(path, t->dtype, t->rank, t->dims, ct_rt_program_tensor(p, i)));
    }
    return CT_OK;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- main */

static bool num_arg(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*v);
}

/* What feed_inputs needs of the training loop. */
typedef struct {
    step_prog *sp;
    const topts *o;
    ct_loader *train;        /* --data, else the --views arrays below */
    const ct_batch **bt;
    int64_t *cur_epoch;      /* the epoch the loader is in */
    const ct_npy *vnp, *ylab, *pnp;
    const ct_schedule *sc;
    size_t view_bytes;
    int64_t B, per_epoch, total;
    double ema_base;
} feeder;

/* The inputs of step s (views, labels, shuffle permutations, learning rate,
 * EMA decay) into the program, staged: a device program uploads them while
 * the step before runs. */
static ct_status feed_inputs(feeder *f, int64_t s)
{
    step_prog *sp = f->sp;
    const int64_t B = f->B, epoch = s / f->per_epoch, bi = s % f->per_epoch;
    if (f->train) {
        ct_data_err e = NULL;
        if (epoch != *f->cur_epoch) {
            e = ct_loader_start_epoch(f->train, epoch, bi);
            *f->cur_epoch = epoch;
        }
        if (!e) e = ct_loader_next(f->train, f->bt);
        if (e) return from_data(e);
        const ct_batch *bt = *f->bt;
        if (!bt || bt->n != B)
            return ct_errorf("internal: the loader ended epoch %lld early (batch %lld)", (long long)epoch,
                             (long long)bi);
        for (int v = 0; v < sp->n_views; v++)
            memcpy(ct_rt_program_tensor(sp->p, sp->view_idx[v]), bt->views[v], f->view_bytes);
        if (sp->labels_idx >= 0)
            memcpy(ct_rt_program_tensor(sp->p, sp->labels_idx), bt->labels, sizeof(int64_t) * (size_t)B);
    } else {
        /* rank r of W takes rows r*B .. r*B+B-1 of the global batch of W*B */
        int64_t S = f->vnp[0].dims[0], GB = B * sp->world, r0 = s * GB + sp->rank * B;
        size_t per = f->view_bytes / (size_t)B;
        for (int v = 0; v < sp->n_views; v++) {
            char *dst = ct_rt_program_tensor(sp->p, sp->view_idx[v]);
            for (int64_t b = 0; b < B; b++)
                memcpy(dst + (size_t)b * per, (char *)f->vnp[v].data + (size_t)((r0 + b) % S) * per, per);
        }
        if (sp->labels_idx >= 0) {
            int64_t *lb = ct_rt_program_tensor(sp->p, sp->labels_idx);
            for (int64_t b = 0; b < B; b++) lb[b] = ((int64_t *)f->ylab->data)[(r0 + b) % S];
        }
    }
    for (int w = 0; w < 2; w++) {
        if (sp->perm_idx[w] < 0) continue;
        /* a permutation of the global batch, drawn by rank 0 and broadcast */
        const int64_t PB = B * sp->world;
        int64_t *dst = ct_rt_program_tensor(sp->p, sp->perm_idx[w]);
        if (sp->rank == 0) {
            if (f->o->perm)
                memcpy(dst, (int64_t *)f->pnp->data + (size_t)(s * (f->pnp->rank == 3 ? 2 : 1) + w) * (size_t)PB,
                       sizeof(int64_t) * (size_t)PB);
            else draw_perm(f->o->seed, s, w, dst, PB);
        }
        ct_dist_bcast(sp->dist, dst, (int64_t)sizeof(int64_t) * PB, 0);
    }
    *(float *)ct_rt_program_tensor(sp->p, sp->lr_idx) = (float)ct_schedule_lr(f->sc, s);
    if (sp->mom_idx >= 0) /* BYOL: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2 */
        *(float *)ct_rt_program_tensor(sp->p, sp->mom_idx) =
            (float)(1.0 - (1.0 - f->ema_base) * (cos(M_PI * (double)s / (double)(f->total ? f->total : 1)) + 1) / 2);
    return ct_rt_program_stage(sp->p);
}

int trainer_method_main(int argc, char **argv, const char *dir, const trainer_meta *m)
{
    topts o = {.out = "run", .progress = "auto", .workers = 2, .lr = NAN, .knn_t = 0.1, .knn_k = 200,
               .knn_every = 1, .epochs = -1, .steps = -1, .max_bad = 0.01, .dist_timeout = 300};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        double v = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout, m);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) o.progress = "none";
        else if (!strcmp(a, "--time-steps")) o.time_steps = true;
        else if (!strcmp(a, "--knn-init")) o.knn_init = true;
#define STR(flag, field) else if (!strcmp(a, flag) && has) o.field = argv[++i]
        STR("--data", data); STR("--data-labels", data_labels); STR("--val", val); STR("--val-labels", val_labels);
        STR("--augment", augment); STR("--views", views); STR("--view-labels", view_labels); STR("--perm", perm);
        STR("--out", out); STR("--resume", resume); STR("--export", export_path); STR("--save-params", save);
        STR("--schedule", sched); STR("--progress", progress); STR("--embed", embed);
#undef STR
        else if (has && (!strcmp(a, "--limit") || !strcmp(a, "--val-limit") || !strcmp(a, "--epochs") ||
                         !strcmp(a, "--steps") || !strcmp(a, "--batch") || !strcmp(a, "--warmup") ||
                         !strcmp(a, "--ckpt-every") || !strcmp(a, "--knn-every") || !strcmp(a, "--knn-k") ||
                         !strcmp(a, "--save-every") ||
                         !strcmp(a, "--workers") || !strcmp(a, "--threads") || !strcmp(a, "--seed") ||
                         !strcmp(a, "--profile"))) {
            if (!num_arg(argv[++i], &v) || v != floor(v) || v < 0 || v > 1e15) {
                fprintf(stderr, "trainer: %s needs an integer >= 0, got '%s'\n", a, argv[i]);
                return 2;
            }
            long long x = (long long)v;
            if (!strcmp(a, "--limit")) o.limit = x;
            else if (!strcmp(a, "--val-limit")) o.val_limit = x;
            else if (!strcmp(a, "--epochs")) o.epochs = x;
            else if (!strcmp(a, "--steps")) o.steps = x;
            else if (!strcmp(a, "--batch")) o.batch = x;
            else if (!strcmp(a, "--warmup")) o.warmup = x;
            else if (!strcmp(a, "--ckpt-every")) o.ckpt_every = x;
            else if (!strcmp(a, "--save-every")) o.save_every = x;
            else if (!strcmp(a, "--knn-every")) o.knn_every = x;
            else if (!strcmp(a, "--knn-k")) o.knn_k = x;
            else if (!strcmp(a, "--workers")) o.workers = (int)x;
            else if (!strcmp(a, "--threads")) o.threads = (int)x;
            else if (!strcmp(a, "--profile")) o.profile = x > 1000000 ? 1000000 : (int)x;
            else o.seed = (uint64_t)x;
        } else if (has && (!strcmp(a, "--lr") || !strcmp(a, "--knn-t") || !strcmp(a, "--max-bad") ||
                           !strcmp(a, "--dist-timeout"))) {
            if (!num_arg(argv[++i], &v)) {
                fprintf(stderr, "trainer: %s needs a number, got '%s'\n", a, argv[i]);
                return 2;
            }
            if (!strcmp(a, "--lr")) o.lr = v;
            else if (!strcmp(a, "--knn-t")) o.knn_t = v;
            else if (!strcmp(a, "--dist-timeout")) o.dist_timeout = v;
            else o.max_bad = v;
        } else {
            fprintf(stderr, "trainer: unknown or incomplete option '%s'\n", a);
            usage(stderr, m);
            return 2;
        }
    }
    const char *err = NULL;
    if (!o.data == !o.views) err = "give exactly one of --data and --views";
    else if (o.views && o.steps < 0) err = "--views needs --steps";
    else if (o.val && !o.data) err = "--val needs --data";
    else if (o.save_every && !o.save) err = "--save-every needs --save-params";
    else if (!isnan(o.lr) && !(o.lr > 0 && o.lr < 1e3)) err = "--lr must be in (0, 1000)";
    else if (!(o.knn_t > 0)) err = "--knn-t must be > 0";
    else if (o.workers < 1) err = "--workers must be at least 1";
    else if (!(o.max_bad >= 0 && o.max_bad <= 1)) err = "--max-bad must be in [0, 1]";
    else if (!(o.dist_timeout > 0)) err = "--dist-timeout must be > 0 seconds";
    else if (strcmp(o.progress, "auto") && strcmp(o.progress, "plain") && strcmp(o.progress, "none"))
        err = "--progress must be auto, plain or none";
    if (err) {
        fprintf(stderr, "trainer: %s\n", err);
        usage(stderr, m);
        return 2;
    }
    if (o.resume) o.out = o.resume;

    step_prog sp;
    ct_status st = CT_OK;
    ct_loader *train = NULL, *bank = NULL, *val = NULL;
    ct_npy vnp[CT_LOADER_MAX_VIEWS], ylab = {0}, pnp = {0};
    memset(vnp, 0, sizeof vnp);
    ct_metrics *metrics = NULL;
    ct_progress prog;
    bool prog_on = false;
    if ((st = step_prog_open(dir, m, &sp))) goto out;
    if ((st = ct_dist_init(&sp.dist))) goto out;
    sp.rank = ct_dist_rank(sp.dist), sp.world = ct_dist_world(sp.dist);
    {
        int pw = ct_rt_program_world(sp.p);
        if (pw > 1 && sp.world == 1) {
            st = ct_errorf("this trainer was compiled for %d ranks (--ranks %d): start it with mpirun -np %d %s ...",
                           pw, pw, pw, argv[0]);
            goto out;
        }
        if (pw != sp.world) {
            st = ct_errorf("started as %d ranks, but this trainer was compiled for %d; recompile with --ranks %d "
                           "(and --batch %lld to keep the global batch of %lld)",
                           sp.world, pw, sp.world, (long long)(sp.B * pw / sp.world), (long long)(sp.B * pw));
            goto out;
        }
        ct_rt_program_set_comm(sp.p, ct_dist_comm(sp.dist));
        if (sp.rank_rows_idx >= 0) { /* this rank's rows of the global batch (shuffle BN across ranks) */
            int64_t *rr = ct_rt_program_tensor(sp.p, sp.rank_rows_idx);
            for (int64_t i = 0; i < sp.B; i++) rr[i] = sp.rank * sp.B + i;
        }
        ct_dist_watch(sp.dist, o.dist_timeout);
        if (sp.rank != 0) o.progress = "none", o.time_steps = false, o.profile = 0; /* rank 0 reports */
    }
    if (o.threads > 0) {
        ct_rt_program_set_threads(sp.p, o.threads);
        ct_rt_program_set_threads(sp.feat, o.threads);
    }
    if (o.batch && o.batch != sp.B) {
        st = ct_errorf("--batch %lld: this trainer was compiled for batch %lld (recompile with --batch %lld)", o.batch,
                       (long long)sp.B, o.batch);
        goto out;
    }
    const ct_tensor_desc *v0 = &sp.d->tensors[sp.view_idx[0]];
    int C = (int)v0->dims[1], H = (int)v0->dims[2], W = (int)v0->dims[3];
    size_t view_bytes = (size_t)v0->nbytes;
    int64_t B = sp.B, per_epoch = 0, total = 0;

    /* --------------------------------------------------- inputs */
    if (o.data) {
        ct_loader_config cfg;
        const char *aug = o.augment ? o.augment : trainer_meta_get(m, "augment", "moco-v2");
        ct_data_err e = ct_loader_config_preset(&cfg, aug, sp.n_views, H, (int)B);
        if (e) {
            st = ct_status_wrap(from_data(e), "--augment %s", aug);
            goto out;
        }
        if (H != W) {
            for (int v = 0; v < sp.n_views; v++) cfg.views[v].size_h = H, cfg.views[v].size_w = W;
        }
        cfg.workers = o.workers;
        cfg.seed = o.seed;
        cfg.channels = C;
        cfg.max_bad_fraction = o.max_bad;
        cfg.shards = sp.world, cfg.shard_rank = sp.rank;
        if ((st = open_source(o.data, o.data_labels, o.limit, &cfg, &train))) goto out;
        if (o.limit > 0 && is_dir(o.data))
            fprintf(stderr, "trainer: note: --limit applies to IDX files; the folder %s is used whole\n", o.data);
        per_epoch = ct_loader_batches_per_epoch(train);
        if (per_epoch < 1) {
            st = ct_errorf("%s: %lld images, fewer than one batch of %lld", o.data, (long long)ct_loader_size(train),
                           (long long)(B * sp.world));
            goto out;
        }
        if (sp.labels_idx >= 0 && ct_loader_n_classes(train) < 1) {
            st = ct_errorf("%s: this %s trainer needs class labels (an ImageFolder layout or IDX labels)", o.data,
                           trainer_meta_get(m, "method", ""));
            goto out;
        }
        if (o.val && o.knn_every > 0 && sp.rank == 0) { /* rank 0 monitors */
            ct_loader_config ec;
            if ((e = ct_loader_config_preset(&ec, "eval", 1, H, (int)B))) {
                st = from_data(e);
                goto out;
            }
            ec.views[0].size_h = H, ec.views[0].size_w = W;
            ec.workers = o.workers;
            ec.shuffle = 0;
            ec.drop_last = 0;
            ec.channels = C;
            ec.max_bad_fraction = o.max_bad;
            if ((st = open_source(o.data, o.data_labels, o.limit, &ec, &bank))) goto out;
            if ((st = open_source(o.val, o.val_labels, o.val_limit, &ec, &val))) goto out;
            if (ct_loader_n_classes(bank) < 1) {
                st = ct_errorf("%s: the kNN monitor needs class labels in the training data", o.data);
                goto out;
            }
        }
    } else {
        /* --views */
        char *list = strdup(o.views);
        if (!list) abort();
        int nv = 0;
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t && !st; t = strtok_r(NULL, ",", &save)) {
            if (nv == sp.n_views) {
                st = ct_errorf("--views: more files than the %d views this trainer takes", sp.n_views);
                break;
            }
            if ((st = ct_npy_read(t, &vnp[nv]))) break;
            const ct_npy *a = &vnp[nv];
            if (a->dtype != CT_PT_FLOAT || a->rank != 4 || a->dims[1] != C || a->dims[2] != H || a->dims[3] != W ||
                a->dims[0] < 1)
                st = ct_errorf("%s: expected float32 [S, %d, %d, %d] views, got %s of rank %d", t, C, H, W,
                               ct_npy_dtype_name(a->dtype), a->rank);
            nv++;
        }
        free(list);
        if (!st && nv != sp.n_views) st = ct_errorf("--views: %d files for %d views", nv, sp.n_views);
        for (int v = 1; v < nv && !st; v++)
            if (vnp[v].dims[0] != vnp[0].dims[0]) st = ct_errorf("--views: the files hold different numbers of samples");
        if (st) goto out;
        if (sp.labels_idx >= 0) {
            if (!o.view_labels) {
                st = ct_errorf("this %s trainer needs labels: give --view-labels Y.npy",
                               trainer_meta_get(m, "method", ""));
                goto out;
            }
            if ((st = ct_npy_read(o.view_labels, &ylab))) goto out;
            if (ylab.dtype != CT_PT_INT64 || ylab.rank != 1 || ylab.dims[0] != vnp[0].dims[0]) {
                st = ct_errorf("%s: expected int64 [%lld] labels", o.view_labels, (long long)vnp[0].dims[0]);
                goto out;
            }
        }
        per_epoch = vnp[0].dims[0] / (B * sp.world) > 0 ? vnp[0].dims[0] / (B * sp.world) : 1;
    }
    if (o.perm) {
        if ((st = ct_npy_read(o.perm, &pnp))) goto out;
        int np = sp.perm_idx[1] >= 0 ? 2 : 1;
        const int64_t PB = B * sp.world;
        bool ok = pnp.dtype == CT_PT_INT64 && ((np == 1 && pnp.rank == 2 && pnp.dims[1] == PB) ||
                                               (np == 2 && pnp.rank == 3 && pnp.dims[1] == 2 && pnp.dims[2] == PB));
        if (!ok || sp.perm_idx[0] < 0) {
            st = ct_errorf("%s: %s%s", o.perm, sp.perm_idx[0] < 0 ? "this trainer has no shuffle BN"
                                                                 : "expected int64 [steps, B] (symmetric: [steps, 2, B])",
                           sp.world > 1 && sp.perm_idx[0] >= 0 ? " with B the global batch of all ranks" : "");
            goto out;
        }
    }
    int64_t epochs = o.epochs >= 0 ? o.epochs : atoll(trainer_meta_get(m, "epochs", "1"));
    total = o.steps >= 0 ? o.steps : epochs * per_epoch;
    if (o.perm && pnp.dims[0] < total) {
        st = ct_errorf("%s: %lld permutations for %lld steps", o.perm, (long long)pnp.dims[0], (long long)total);
        goto out;
    }

    /* --------------------------------------------------- schedule */
    double lr = isnan(o.lr) ? atof(trainer_meta_get(m, "base_lr", "0.03")) : o.lr;
    char sched[256];
    if (o.sched) snprintf(sched, sizeof sched, "%s", o.sched);
    else {
        const char *k = trainer_meta_get(m, "schedule", "constant");
        if (!strcmp(k, "cosine")) snprintf(sched, sizeof sched, "cosine:%s", trainer_meta_get(m, "lr_final", "0"));
        else if (!strcmp(k, "step")) {
            /* milestones are epochs of the preset's schedule, scaled to this run's length */
            const char *ms = trainer_meta_get(m, "milestones", "");
            double scale = (double)total / (double)(atoll(trainer_meta_get(m, "epochs", "1")) * per_epoch);
            int len = snprintf(sched, sizeof sched, "step:");
            for (const char *s = ms; *s && len < (int)sizeof sched - 24;) {
                long e = strtol(s, (char **)&s, 10);
                long long stp = llround((double)e * (double)per_epoch * scale);
                len += snprintf(sched + len, sizeof sched - (size_t)len, "%s%lld", len > 5 ? "," : "",
                                stp > 0 ? stp : 1);
                if (*s == ',') s++;
            }
            if (len == 5) snprintf(sched, sizeof sched, "constant");
        } else snprintf(sched, sizeof sched, "constant");
    }
    ct_schedule sc;
    /* a run of 0 steps (--steps 0 --save-params: the initial values) uses no rate: any schedule parses */
    if ((st = ct_schedule_parse(sched, lr, total > 0 ? total : 1, &sc))) goto out;
    sc.warmup_steps = o.warmup;
    double ema_base = atof(trainer_meta_get(m, "ema", "0.99"));

    /* --------------------------------------------------- run folder, resume */
    if (sp.rank == 0 && (st = trainer_mkdirs(o.out))) goto out;
    /* temporaries of files an earlier, killed run was writing here */
    for (int f = 0; f < 4 && sp.rank == 0; f++) {
        static const char *const files[] = {"checkpoint.safetensors", "loss.svg", "knn.svg", "metrics.jsonl"};
        char tpath[4200];
        snprintf(tpath, sizeof tpath, "%s/%s", o.out, files[f]);
        ct_ckpt_remove_stale_temps(tpath);
    }
    int64_t step = 0, first_step = 0;
    if (o.resume) {
        if ((st = checkpoint_read(&sp, o.resume, o.seed, &step))) goto out;
        if (step > total) {
            st = ct_errorf("--resume %s: the checkpoint is at step %lld, past this run's %lld steps", o.resume,
                           (long long)step, (long long)total);
            goto out;
        }
    }
    first_step = step;
    if (sp.rank == 0) {
        ct_train_err e = ct_metrics_open(o.out, o.resume ? step : -1, &metrics);
        if (e) {
            st = from_train(e);
            goto out;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    bool show = strcmp(o.progress, "none") != 0;
    FILE *pf = stderr;
    if (show) {
        ct_progress_init(&prog, pf, !strcmp(o.progress, "plain") ? 0 : -1, per_epoch >= 20 ? per_epoch / 10 : 1,
                         total, B * sp.n_views * sp.world, step);
        prog_on = true;
        char ranks_s[64] = "";
        if (sp.world > 1) snprintf(ranks_s, sizeof ranks_s, " on each of %d ranks", sp.world);
        ct_progress_note(&prog, "trainer: %s (%s), %lld steps (%lld per epoch), batch %lld x %d views%s, lr %g (%s)%s",
                         trainer_meta_get(m, "method", ""), trainer_meta_get(m, "preset", ""), (long long)total,
                         (long long)per_epoch, (long long)B, sp.n_views, ranks_s, lr, sched,
                         o.resume ? ", resumed" : "");
    }
    if (o.knn_init && val && !o.resume) {
        double acc;
        if ((st = knn_eval(&sp, m, bank, val, &o, &acc))) goto out;
        ct_metrics_log_epoch(metrics, 0, 0, NAN, acc, 0);
        if (prog_on) ct_progress_note(&prog, "kNN accuracy at initialisation: %.2f%%", 100 * acc);
        else printf("knn_init %.6f\n", acc);
    }
    if (o.knn_init && !o.resume) ct_dist_barrier(sp.dist); /* the other ranks wait for rank 0's kNN */

    double epoch_loss = 0, t_epoch = now_s();
    int64_t epoch_n = 0, cur_epoch = -1, stats_epoch = -1, bad_seen = 0, profiled = 0;
    bool profiling = false;
    const ct_batch *bt = NULL;
    feeder fd = {.sp = &sp, .o = &o, .train = train, .bt = &bt, .cur_epoch = &cur_epoch, .vnp = vnp, .ylab = &ylab,
                 .pnp = &pnp, .sc = &sc, .view_bytes = view_bytes, .B = B, .per_epoch = per_epoch, .total = total,
                 .ema_base = ema_base};
    if (step < total && !g_stop && (st = feed_inputs(&fd, step))) goto out;
    while (step < total && !g_stop) {
        int64_t epoch = step / per_epoch;
        double t0 = now_s();
        if (epoch != stats_epoch) stats_epoch = epoch, epoch_loss = 0, epoch_n = 0, t_epoch = now_s();
        double cur_lr = ct_schedule_lr(&sc, step);
        ct_dist_set_step(sp.dist, step);
        if ((st = ct_rt_program_launch(sp.p))) goto out;
        /* the next step's batch while this one runs (on a device; a C program has finished it already) */
        if (step + 1 < total && (st = feed_inputs(&fd, step + 1))) goto out;
        ct_rt_program_wait(sp.p);
        if (profiling) profiled++;
        step++;
        if (o.profile && !profiling) profiling = ct_rt_program_profile_start(sp.p); /* from the second step on */
        double loss = *(const float *)ct_rt_program_tensor(sp.p, sp.loss_idx);
        if (sp.world > 1) {
            /* the global batch's loss (the mean of the ranks'), and a stop signal any rank got */
            double v[2] = {loss, g_stop ? 1.0 : 0.0};
            ct_dist_sum_f64(sp.dist, v, 2);
            loss = v[0] / sp.world;
            if (v[1] > 0 && !g_stop) g_stop = SIGTERM;
        }
        double t1 = now_s();
        if (!isfinite(loss)) {
            st = ct_errorf("step %lld: the loss is %g (lower --lr?); the last checkpoint is kept", (long long)step, loss);
            goto out;
        }
        epoch_loss += loss, epoch_n++;
        if (o.time_steps) printf("time %lld %.9f\n", (long long)step, t1 - t0);
        if (o.views && show) printf("step %lld lr %.9g loss %.9g\n", (long long)step, cur_lr, loss);
        else if (prog_on) ct_progress_update(&prog, epoch + 1, total / per_epoch + (total % per_epoch != 0), step, loss, cur_lr);
        if (metrics) ct_metrics_log_step(metrics, epoch + 1, step, loss, cur_lr, (double)(B * sp.n_views * sp.world) / (t1 - t0));
        bool epoch_end = step % per_epoch == 0 || step == total;
        if (epoch_end && train && sp.rank == 0 && ct_loader_bad_count(train) > bad_seen) {
            /* unreadable images are skipped (replaced within the batch); say so once per epoch */
            const char *msgs[CT_LOADER_MAX_BAD_REPORTED];
            int nm = ct_loader_bad_reported(train, msgs, CT_LOADER_MAX_BAD_REPORTED);
            bad_seen = ct_loader_bad_count(train);
            char buf[2048];
            int len = snprintf(buf, sizeof buf, "skipped %lld unreadable image%s so far (the training stops above "
                               "--max-bad %g of the data); first:", (long long)bad_seen, bad_seen > 1 ? "s" : "",
                               o.max_bad);
            for (int k = 0; k < nm && len < (int)sizeof buf - 2; k++)
                len += snprintf(buf + len, sizeof buf - (size_t)len, "\n  %s", msgs[k]);
            if (prog_on) ct_progress_note(&prog, "%s", buf);
            else fprintf(stderr, "trainer: %s\n", buf);
        }
        if (epoch_end) {
            double acc = NAN;
            if (val && o.knn_every > 0 && ((epoch + 1) % o.knn_every == 0 || step == total)) {
                if ((st = knn_eval(&sp, m, bank, val, &o, &acc))) goto out;
            }
            if (metrics) {
                ct_metrics_log_epoch(metrics, epoch + 1, step, epoch_loss / (double)(epoch_n ? epoch_n : 1), acc,
                                     now_s() - t_epoch);
                ct_metrics_write_curves(metrics);
            }
            if (prog_on) {
                if (isnan(acc))
                    ct_progress_note(&prog, "epoch %lld: mean loss %.4f", (long long)epoch + 1,
                                     epoch_loss / (double)(epoch_n ? epoch_n : 1));
                else
                    ct_progress_note(&prog, "epoch %lld: mean loss %.4f, kNN accuracy %.2f%%", (long long)epoch + 1,
                                     epoch_loss / (double)(epoch_n ? epoch_n : 1), 100 * acc);
            }
        }
        if (((o.data && epoch_end) || (o.ckpt_every && step % o.ckpt_every == 0)) &&
            (st = checkpoint_write(&sp, o.out, step, o.seed, total)))
            goto out;
        if (o.save && o.save_every && step % o.save_every == 0) {
            char sdir[4200];
            snprintf(sdir, sizeof sdir, "%s/step%lld", o.save, (long long)step);
            if ((st = dist_average_state(&sp))) goto out;
            if (sp.rank == 0 && (st = save_all(sp.p, sdir))) goto out;
        }
        if (epoch_end) ct_dist_barrier(sp.dist); /* the other ranks wait for rank 0's kNN and checkpoint */
    }
    if (g_stop) {
        if ((st = checkpoint_write(&sp, o.out, step, o.seed, total))) goto out;
        if (prog_on) ct_progress_end(&prog);
        fprintf(stderr, "trainer: stopped by signal %d at step %lld of %lld; checkpoint written to "
                        "%s/checkpoint.safetensors (continue with --resume %s)\n",
                (int)g_stop, (long long)step, (long long)total, o.out, o.out);
        st = CT_OK;
        goto out;
    }
    if (prog_on) ct_progress_end(&prog);
    if (o.views && o.ckpt_every && step % o.ckpt_every && (st = checkpoint_write(&sp, o.out, step, o.seed, total)))
        goto out;
    fflush(stdout);
    if (o.save && (st = dist_average_state(&sp))) goto out;
    if (sp.world > 1 && sp.rank == 0 && show && step > 0)
        fprintf(stderr, "trainer: %d ranks: each sent %.3f MiB per step into the collectives of the step\n", sp.world,
                (double)ct_dist_bytes(sp.dist) / 1048576.0 / (double)(step - first_step));
    if (sp.rank != 0) goto out; /* rank 0 writes */
    if (o.save && (st = save_all(sp.p, o.save))) goto out;
    if (profiling) ct_rt_program_profile_report(sp.p, stderr, profiled, o.profile);
    if (o.embed && (st = embed(&sp, m, o.embed))) goto out;
    if (o.export_path) {
        if ((st = export_encoder(&sp, dir, o.export_path))) goto out;
        if (show) fprintf(stderr, "trainer: exported the encoder to %s\n", o.export_path);
    }
out:
    if (prog_on && st) ct_progress_end(&prog);
    ct_metrics_close(metrics);
    ct_loader_close(train);
    ct_loader_close(bank);
    ct_loader_close(val);
    for (int v = 0; v < CT_LOADER_MAX_VIEWS; v++) ct_npy_free(&vnp[v]);
    ct_npy_free(&ylab);
    ct_npy_free(&pnp);
    step_prog_close(&sp);
    if (st) {
        if (sp.world > 1) fprintf(stderr, "trainer: rank %d of %d: %s\n", sp.rank, sp.world, ct_status_msg(st));
        else fprintf(stderr, "trainer: %s\n", ct_status_msg(st));
        ct_status_free(st);
        ct_dist_abort(sp.dist, 1); /* the other ranks may wait in a collective: end the job */
        ct_dist_finalize(sp.dist);
        return 1;
    }
    ct_dist_finalize(sp.dist);
    return g_stop ? 128 + (int)g_stop : 0;
}

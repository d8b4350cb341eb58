/* cmd_compile_method.c — 'contra compile ENCODER --method moco-v2|moco-v1|
 * simclr|supcon|byol|simsiam [options] -o TRAINER_DIR': a method preset with
 * overrides attached to an imported (or bundled) encoder, the training graph
 * lowered to C, and a trainer folder: the generated step (model.so,
 * params.bin), the representation program for kNN and export (features/),
 * the recipe (trainer.txt) and the trainer binary. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_compile.h"
#include "codegen.h"
#include "frontend.h"
#include "method.h"
#include "passes.h"
#include "resnet.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contra compile (ENCODER.onnx | --model NAME) --method METHOD [options] -o TRAINER_DIR\n"
            "\n"
            "Compile one training step of a contrastive method on an encoder: the\n"
            "encoder (and its momentum or target copy), the heads, the loss, the\n"
            "backward pass, the optimizer and every state update (key encoder EMA,\n"
            "queue, BatchNorm statistics) as one generated C program, plus the\n"
            "representation program used for kNN monitoring and --export. Writes\n"
            "TRAINER_DIR/trainer: run it with --help.\n"
            "\n"
            "  --method METHOD  moco-v1, moco-v2, simclr, supcon, byol, simsiam, or a\n"
            "                 recipe preset: moco-cifar (the MoCo CIFAR demo: K 4096,\n"
            "                 m 0.99, T 0.1), moco-lowcompute (ResNet-18 with a\n"
            "                 512-100-50-25 head, T 0.05, Adam, K 8192)\n"
            "  --preset NAME  take the defaults from preset NAME instead (same method)\n"
            "  --model NAME   a bundled encoder instead of a file: resnet18, resnet34,\n"
            "                 resnet50 (224x224) and resnet18_small, resnet34_small,\n"
            "                 resnet50_small (32x32, 3x3 stem, no max-pool), with an\n"
            "                 optional width suffix _wN (resnet18_small_w16); parameter\n"
            "                 names are torchvision's state_dict keys\n"
            "  --in-channels C  bundled encoder: 1 or 3 input channels (default 3)\n"
            "  --size S       bundled encoder: input height and width\n"
            "\n"
            "Every option below overrides the preset's value (shown by --show-preset):\n"
            "  --batch B      images per view per step\n"
            "  --layer NAME   representation layer: a value name, a module name\n"
            "                 (avgpool), or -k (the k-th last node's output); default: the\n"
            "                 input of a final Linear classifier, else the output\n"
            "  --head D1,D2,..  head (MoCo/SimCLR/SupCon) or projector (BYOL/SimSiam)\n"
            "                 widths; 0 means the representation width\n"
            "  --predictor D1,D2,..  BYOL/SimSiam predictor widths\n"
            "  --temperature T, --base-temperature T (SupCon)\n"
            "  --queue K      MoCo queue length\n"
            "  --ema M        MoCo key momentum / BYOL target decay, in [0, 1]\n"
            "  --ema-schedule cosine  BYOL: raise the decay to 1 on a cosine (fed each step)\n"
            "  --symmetric    MoCo: the symmetric loss of the CIFAR demo\n"
            "  --shuffle-bn, --no-shuffle-bn  MoCo: shuffle the key batch around the\n"
            "                 key encoder; --bn-splits S: BatchNorm statistics over S\n"
            "                 sub-batches in both encoders\n"
            "  --views V      SupCon views per image (>= 2)\n"
            "  --labels, --no-labels  SupCon with class labels (default) or SimCLR's loss\n"
            "  --contrast-mode all|one  SupCon\n"
            "  --no-momentum  BYOL: the target is the online network under stop-gradient\n"
            "  --optimizer sgd|adam|adamw|lars, --lr LR, --momentum M (SGD/LARS),\n"
            "  --weight-decay WD\n"
            "  --epochs E, --schedule cosine|step|constant, --milestones E1,E2 (step),\n"
            "  --lr-final LR  (cosine: the rate it decays to)\n"
            "  --augment NAME  the views' augmentation: moco-v1, moco-v2, simclr, byol\n"
            "  --dataset-size N  for the coherence warnings (queue larger than the data)\n"
            "  --seed S       initialisation of heads and queue (default 0)\n"
            "\n"
            "Data-parallel training (run the trainer with mpirun -np N; see the README):\n"
            "  --ranks N      compile one rank of N: --batch is per rank, gradients are\n"
            "                 averaged over the ranks, MoCo's keys of all ranks enter the\n"
            "                 queue, shuffle BN shuffles the global batch across ranks\n"
            "                 (BatchNorm splits 1 unless --bn-splits is given), SimCLR\n"
            "                 and SupCon take their negatives from every rank\n"
            "  --sync-bn      SyncBatchNorm: statistics over the global batch (instead of\n"
            "                 shuffle BN); N ranks x batch B then compute what one\n"
            "                 process with batch N*B does\n"
            "  --bucket-mb M  gradient all-reduce bucket size in MiB (default 25)\n"
            "                 (--target cuda: the collectives are NCCL's, bootstrapped\n"
            "                 over MPI)\n"
            "\n"
            "  --show-preset  print the resolved options and exit\n"
            "  --cc CC        C compiler command (default: $CC, else cc)\n"
            "  --target c|cuda|cuda-emu   backend (default c; see 'contra compile --help')\n"
            "  --tf32         CUDA: GEMMs may use TF32 tensor cores (10-bit mantissa inputs)\n"
            "  -o, --output TRAINER_DIR  written atomically: a failed compile leaves\n"
            "                 nothing behind and keeps an existing folder\n"
            "  -q, --quiet    print nothing on success\n"
            "  -h, --help     show this help\n");
}

static const char *const kind_names[] = {"moco", "simclr", "supcon", "byol", "simsiam"};

static bool parse_dims(const char *s, ct_head_spec *h)
{
    ct_head_spec n = *h;
    n.n = 0;
    while (*s) {
        if (n.n == CT_HEAD_MAX) return false;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (end == s || errno || v < 0 || v > (1 << 24)) return false;
        n.dims[n.n++] = v;
        if (*end == ',') end++;
        else if (*end) return false;
        s = end;
    }
    if (!n.n) return false;
    *h = n;
    return true;
}

static bool parse_f(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && !*end && !errno && isfinite(*v);
}

/* --------------------------------------------------------------- output */

static int write_meta(FILE *f, const ct_method_options *o, const ct_graph *g, const ct_graph *feat,
                      int64_t size, int channels, const char *model_label)
{
    fprintf(f, "contra-trainer 2\nkind method\nmethod %s\npreset %s\n", kind_names[o->kind], o->preset);
    fprintf(f, "encoder %s\n", model_label);
    fprintf(f, "batch %lld\nviews %d\n", (long long)o->batch, o->kind == CT_METHOD_SUPCON ? o->views : 2);
    for (int i = 0; i < g->n_inputs; i++) {
        const char *n = g->inputs[i]->name;
        if (!strncmp(n, "view", 4)) fprintf(f, "view %s\n", n);
        else if (!strcmp(n, "shuffle_perm")) fprintf(f, "shuffle shuffle_perm\n");
        else if (!strcmp(n, "shuffle_perm2")) fprintf(f, "shuffle2 shuffle_perm2\n");
        else if (!strcmp(n, "labels")) fprintf(f, "labels labels\n");
        else if (!strcmp(n, "mask")) fprintf(f, "mask mask\n");
        else if (!strcmp(n, "momentum")) fprintf(f, "momentum_input momentum\n");
        else if (!strcmp(n, "lr")) fprintf(f, "lr lr\n");
        else if (!strcmp(n, "rank_rows")) fprintf(f, "rank_rows rank_rows\n");
    }
    fprintf(f, "ranks %d\nsync_bn %s\n", o->ranks > 1 ? o->ranks : 1, o->sync_bn ? "yes" : "no");
    fprintf(f, "loss %s\noptimizer %s\nbase_lr %.9g\nweight_decay %.9g\n", g->outputs[0]->name, o->optimizer, o->lr, o->weight_decay);
    fprintf(f, "epochs %d\nschedule %s\nlr_final %.9g\n", o->epochs, o->schedule ? o->schedule : "constant",
            o->lr_final);
    if (o->milestones[0]) {
        fprintf(f, "milestones ");
        for (int i = 0; i < 4 && o->milestones[i]; i++) fprintf(f, "%s%d", i ? "," : "", o->milestones[i]);
        fprintf(f, "\n");
    }
    fprintf(f, "ema %.9g\nema_schedule %s\n", o->momentum, o->momentum_input ? "cosine" : "constant");
    fprintf(f, "augment %s\nchannels %d\nsize %lld\n", o->augment ? o->augment : "moco-v2", channels, (long long)size);
    fprintf(f, "queue %lld\ntemperature %.9g\nseed %llu\n", (long long)o->queue_size, o->temperature,
            (unsigned long long)o->seed);
    fprintf(f, "features_input %s\nfeatures_output %s\nfeatures_dim %lld\n", feat->inputs[0]->name,
            feat->outputs[0]->name, (long long)feat->outputs[0]->shape.dims[1]);
    return ferror(f) ? -1 : 0;
}

static void show_options(const ct_method_options *o)
{
    printf("method %s (preset %s)\nbatch %lld\nviews %d\n", kind_names[o->kind], o->preset, (long long)o->batch,
           o->views);
    printf("head");
    for (int i = 0; i < o->head.n; i++) printf("%s%lld", i ? "," : " ", (long long)o->head.dims[i]);
    printf("\npredictor");
    for (int i = 0; i < o->predictor.n; i++) printf("%s%lld", i ? "," : " ", (long long)o->predictor.dims[i]);
    if (!o->predictor.n) printf(" none");
    printf("\ntemperature %g\nqueue %lld\nema %g%s\n", o->temperature, (long long)o->queue_size, o->momentum,
           o->momentum_input ? " (cosine to 1)" : "");
    printf("shuffle_bn %s\nbn_splits %d\nsymmetric %s\n", o->shuffle_bn ? "yes" : "no", o->bn_splits,
           o->symmetric ? "yes" : "no");
    printf("ranks %d\nsync_bn %s\n", o->ranks > 1 ? o->ranks : 1, o->sync_bn ? "yes" : "no");
    printf("optimizer %s\nlr %g\nmomentum %g\nweight_decay %g\nepochs %d\nschedule %s\naugment %s\n",
           o->optimizer, o->lr, o->opt_momentum, o->weight_decay, o->epochs, o->schedule, o->augment);
}

/* Remove a trainer folder this command wrote: only the files it writes, so
 * anything else a user put there keeps the folder (rmdir fails). */
static void remove_tree(const char *path)
{
    char sub[4200];
    static const char *const known[] = {"model.c", "program.h", "params.bin", "model.so", "cc.log", "trainer.txt",
                                        "trainer", "encoder.onnx", NULL};
    for (int i = 0; known[i]; i++) {
        snprintf(sub, sizeof sub, "%s/features/%s", path, known[i]);
        remove(sub);
        snprintf(sub, sizeof sub, "%s/%s", path, known[i]);
        remove(sub);
    }
    snprintf(sub, sizeof sub, "%s/features", path);
    rmdir(sub);
    rmdir(path);
}

static ct_status build_program(const ct_graph *g, const char *dir, const cli_compile_options *opt,
                               ct_c_program *prog)
{
    return cli_codegen_and_build(g, dir, opt, prog);
}

static ct_status compile_method(ct_graph *enc, const char *label, ct_method_options *o, const char *outdir,
                                const cli_compile_options *opt)
{
    ct_graph *train = NULL, *feat = NULL;
    ct_c_program prog, fprog;
    memset(&prog, 0, sizeof prog);
    memset(&fprog, 0, sizeof fprog);
    char tmp[4200], sub[4300], old[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", outdir, (long)getpid());
    ct_status st = CT_OK;
    bool made = false;
    o->attach_optimizer = true;
    if ((st = ct_method_attach(enc, o, &train))) {
        st = ct_status_wrap(st, "%s: --method %s", label, o->preset);
        goto fail;
    }
    if ((st = ct_method_encoder(enc, o->layer, 0, &feat))) goto fail;
    ct_pass_options po = {0};
#ifdef CT_DEBUG
    po.verify = true;
#endif
    int n = 0;
    while (ct_default_pipeline[n]) n++;
    if ((st = ct_pass_run(train, ct_default_pipeline, n, &po))) goto fail;
    const char *post[] = {"dce", "fuse", "memory_plan"};
    if ((st = ct_pass_run(train, post, 3, &po))) goto fail;

    /* the parent folders, like mkdir -p */
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) && errno != EEXIST) {
                st = ct_errorf("cannot create folder %s: %s", tmp, strerror(errno));
                goto fail;
            }
            *p = '/';
        }
    if (mkdir(tmp, 0755)) {
        st = ct_errorf("cannot create %s: %s", tmp, strerror(errno));
        goto fail;
    }
    made = true;
    if ((st = build_program(train, tmp, opt, &prog))) goto fail;
    snprintf(sub, sizeof sub, "%s/features", tmp);
    if (mkdir(sub, 0755)) {
        st = ct_errorf("cannot create %s: %s", sub, strerror(errno));
        goto fail;
    }
    /* the representation as ONNX with the encoder's own batch axis (what
     * --export rewrites with the trained values), then compiled for B */
    snprintf(sub, sizeof sub, "%s/features/encoder.onnx", tmp);
    if ((st = ct_onnx_save(feat, sub))) goto fail;
    ct_graph_set_batch(feat, o->batch);
    if ((st = ct_pass_run(feat, ct_default_pipeline, n, &po)) || (st = ct_pass_run(feat, post + 2, 1, &po)))
        goto fail;
    snprintf(sub, sizeof sub, "%s/features", tmp);
    if ((st = build_program(feat, sub, opt, &fprog))) goto fail;
    snprintf(sub, sizeof sub, "%s/trainer.txt", tmp);
    FILE *f = fopen(sub, "w");
    if (!f) {
        st = ct_errorf("cannot write %s: %s", sub, strerror(errno));
        goto fail;
    }
    const ct_value *in = feat->inputs[0];
    int bad = write_meta(f, o, train, feat, in->shape.dims[2], (int)in->shape.dims[1], label);
    if (fclose(f) || bad) {
        st = ct_errorf("cannot write %s", sub);
        goto fail;
    }
    if ((st = cli_install_trainer(tmp))) goto fail;
    /* replace OUTDIR: an existing trainer folder is moved aside first */
    struct stat sb;
    bool had = stat(outdir, &sb) == 0;
    snprintf(old, sizeof old, "%s.old.%ld", outdir, (long)getpid());
    if (had && rename(outdir, old)) {
        st = ct_errorf("cannot replace %s: %s", outdir, strerror(errno));
        goto fail;
    }
    if (rename(tmp, outdir)) {
        st = ct_errorf("cannot create %s: %s", outdir, strerror(errno));
        if (had) rename(old, outdir);
        goto fail;
    }
    made = false;
    if (had) remove_tree(old);
    if (opt->verbose)
        printf("compiled %s -> %s/trainer (%s, batch %lld per view, %s): %d kernels, arena %.2f MiB, persistent "
               "%.2f MiB; features program %d kernels\n",
               label, outdir, o->preset, (long long)o->batch, o->optimizer, prog.n_kernels,
               prog.arena_bytes / 1048576.0, prog.persist_bytes / 1048576.0, fprog.n_kernels);
fail:
    if (made) remove_tree(tmp);
    ct_c_program_free(&prog);
    ct_c_program_free(&fprog);
    ct_graph_free(train);
    ct_graph_free(feat);
    return st;
}

/* The encoder: a file, or a bundled model built here. */
ct_status cli_load_encoder(const char *path, const char *model, int channels, int64_t size, ct_graph **g)
{
    if (path && model) return ct_errorf("give either a model file or --model NAME, not both");
    if (!path && !model) return ct_errorf("no model given (a file, or --model NAME)");
    if (path) return ct_model_load(path, g);
    ct_resnet_options ro = ct_resnet_options_default();
    CT_TRY(ct_model_resnet_options_from_name(model, &ro));
    if (channels) ro.in_channels = channels;
    if (size) ro.height = ro.width_px = size;
    return ct_model_resnet_build(&ro, g);
}

ct_status cli_model_open(const char *spec, ct_graph **g)
{
    if (!strncmp(spec, "model:", 6)) {
        CT_TRY(cli_load_encoder(NULL, spec + 6, 0, 0, g));
        if (!(*g)->source_path) (*g)->source_path = ct_arena_strdup(&(*g)->arena, spec);
        return CT_OK;
    }
    return ct_model_load(spec, g);
}

int cmd_compile_method(int argc, char **argv)
{
    const char *model = NULL, *bundled = NULL, *outdir = NULL, *method = NULL, *preset = NULL;
    cli_compile_options copt = {.verbose = true};
    bool show = false, sync_bn = false, splits_given = false;
    int channels = 0;
    int64_t size = 0;
    /* first pass: the preset, so the overrides apply on top of it */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 < argc && !strcmp(argv[i], "--method")) method = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--preset")) preset = argv[++i];
    }
    if (!method) {
        fprintf(stderr, "contra compile: --method is required\n");
        return 2;
    }
    ct_method_options o;
    ct_status st = ct_method_preset(preset ? preset : method, &o);
    if (st) return cli_fail(st);
    if (preset) {
        ct_method_options m;
        if ((st = ct_method_preset(method, &m))) return cli_fail(st);
        if (m.kind != o.kind) {
            fprintf(stderr, "contra compile: --preset %s is a %s recipe, not one for --method %s\n", preset,
                    kind_names[o.kind], method);
            return 2;
        }
    }
    static const char *const flags[] = {"--symmetric", "--shuffle-bn", "--no-shuffle-bn", "--labels", "--no-labels",
                                        "--no-momentum", "--show-preset", "-q", "--quiet", "--tf32", "--sync-bn", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool is_flag = false;
        for (int k = 0; flags[k]; k++) is_flag |= !strcmp(a, flags[k]);
        if (is_flag) {
            if (!strcmp(a, "--symmetric")) o.symmetric = true;
            else if (!strcmp(a, "--shuffle-bn")) o.shuffle_bn = true;
            else if (!strcmp(a, "--no-shuffle-bn")) o.shuffle_bn = false, o.bn_splits = 1;
            else if (!strcmp(a, "--labels")) o.use_labels = true;
            else if (!strcmp(a, "--no-labels")) o.use_labels = false;
            else if (!strcmp(a, "--no-momentum")) o.use_momentum = false;
            else if (!strcmp(a, "--show-preset")) show = true;
            else if (!strcmp(a, "--tf32")) copt.tf32 = true;
            else if (!strcmp(a, "--sync-bn")) sync_bn = true;
            else copt.verbose = false;
            continue;
        }
        if (a[0] != '-' || !a[1]) {
            if (model) {
                fprintf(stderr, "contra compile: more than one model given ('%s', '%s')\n", model, a);
                return 2;
            }
            model = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "contra compile: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        double x = 0;
        bool num_ok = parse_f(v, &x), int_ok = num_ok && x == floor(x) && fabs(x) < 1e15;
#define NEED(cond, what)                                                                                 \
    do {                                                                                                 \
        if (!(cond)) {                                                                                   \
            fprintf(stderr, "contra compile: %s needs %s, got '%s'\n", a, what, v);                      \
            return 2;                                                                                    \
        }                                                                                                \
    } while (0)
        if (!strcmp(a, "--method") || !strcmp(a, "--preset")) continue;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) outdir = v;
        else if (!strcmp(a, "--model")) bundled = v;
        else if (!strcmp(a, "--cc")) copt.cc = v;
        else if (!strcmp(a, "--target")) {
            NEED(!strcmp(v, "c") || !strcmp(v, "cuda") || !strcmp(v, "cuda-emu"), "c, cuda or cuda-emu");
            copt.target = !strcmp(v, "c") ? CLI_TARGET_C : !strcmp(v, "cuda") ? CLI_TARGET_CUDA : CLI_TARGET_CUDA_EMU;
        }
        else if (!strcmp(a, "--layer")) o.layer = v;
        else if (!strcmp(a, "--optimizer")) o.optimizer = v;
        else if (!strcmp(a, "--schedule")) o.schedule = v;
        else if (!strcmp(a, "--augment")) o.augment = v;
        else if (!strcmp(a, "--head")) NEED(parse_dims(v, &o.head), "comma-separated widths");
        else if (!strcmp(a, "--predictor")) NEED(parse_dims(v, &o.predictor), "comma-separated widths");
        else if (!strcmp(a, "--contrast-mode")) {
            NEED(!strcmp(v, "all") || !strcmp(v, "one"), "all or one");
            o.contrast_all = !strcmp(v, "all");
        } else if (!strcmp(a, "--ema-schedule")) {
            NEED(!strcmp(v, "cosine") || !strcmp(v, "constant"), "cosine or constant");
            o.momentum_input = !strcmp(v, "cosine");
        } else if (!strcmp(a, "--milestones")) {
            int k = 0;
            const char *s = v;
            memset(o.milestones, 0, sizeof o.milestones);
            while (*s && k < 4) {
                char *end;
                long m = strtol(s, &end, 10);
                NEED(end != s && m > 0 && (*end == ',' || !*end), "positive comma-separated epochs");
                o.milestones[k++] = (int)m;
                s = *end ? end + 1 : end;
            }
            NEED(!*s, "at most 4 milestones");
        } else if (!strcmp(a, "--batch")) {
            NEED(int_ok && x > 0 && x <= (1 << 20), "a positive integer");
            o.batch = (int64_t)x;
        } else if (!strcmp(a, "--queue")) {
            NEED(int_ok && x > 0, "a positive integer");
            o.queue_size = (int64_t)x;
        } else if (!strcmp(a, "--views")) {
            NEED(int_ok && x >= 2 && x <= 8, "an integer in [2, 8]");
            o.views = (int)x;
        } else if (!strcmp(a, "--bn-splits")) {
            NEED(int_ok && x >= 1, "a positive integer");
            o.bn_splits = (int)x;
            splits_given = true;
        } else if (!strcmp(a, "--ranks")) {
            NEED(int_ok && x >= 1 && x <= 65536, "an integer in [1, 65536]");
            o.ranks = (int)x;
        } else if (!strcmp(a, "--bucket-mb")) {
            NEED(num_ok && x > 0 && x <= 65536, "a size in MiB in (0, 65536]");
            o.bucket_mb = x;
        } else if (!strcmp(a, "--epochs")) {
            NEED(int_ok && x >= 1 && x <= 1e6, "a positive integer");
            o.epochs = (int)x;
        } else if (!strcmp(a, "--seed")) {
            NEED(int_ok && x >= 0, "an integer >= 0");
            o.seed = (uint64_t)x;
        } else if (!strcmp(a, "--dataset-size")) {
            NEED(int_ok && x >= 0, "an integer >= 0");
            o.dataset_size = (int64_t)x;
        } else if (!strcmp(a, "--in-channels")) {
            NEED(x == 1 || x == 3, "1 or 3");
            channels = (int)x;
        } else if (!strcmp(a, "--size")) {
            NEED(int_ok && x >= 8 && x <= 4096, "an integer in [8, 4096]");
            size = (int64_t)x;
        } else if (!strcmp(a, "--temperature")) { NEED(num_ok, "a number"); o.temperature = x; }
        else if (!strcmp(a, "--base-temperature")) { NEED(num_ok, "a number"); o.base_temperature = x; }
        else if (!strcmp(a, "--ema")) { NEED(num_ok, "a number"); o.momentum = x; }
        else if (!strcmp(a, "--lr")) { NEED(num_ok, "a number"); o.lr = x; }
        else if (!strcmp(a, "--lr-final")) { NEED(num_ok, "a number"); o.lr_final = x; }
        else if (!strcmp(a, "--momentum")) { NEED(num_ok, "a number"); o.opt_momentum = x; }
        else if (!strcmp(a, "--weight-decay")) { NEED(num_ok, "a number"); o.weight_decay = x; }
        else {
            fprintf(stderr, "contra compile: unknown option '%s' for --method %s\n", a, method);
            usage(stderr);
            return 2;
        }
#undef NEED
    }
    if (sync_bn) {
        if (o.ranks < 2) {
            fprintf(stderr, "contra compile: --sync-bn needs --ranks N with N > 1\n");
            return 2;
        }
        o.sync_bn = true, o.shuffle_bn = false;
        if (!splits_given) o.bn_splits = 1;
    }
    if (o.ranks > 1 && !splits_given) o.bn_splits = 1; /* shuffle BN spans the ranks instead */
    if (copt.target != CLI_TARGET_C && (o.kind == CT_METHOD_SIMCLR || o.kind == CT_METHOD_SUPCON))
        o.fuse_loss = false; /* the CUDA backend has no in-batch fused loss kernel: the loss stays a
                              * MatMul, masks and a cross-entropy over the N x N similarities */
    if (show) {
        show_options(&o);
        return 0;
    }
    if (!outdir) {
        fprintf(stderr, "contra compile: no output folder (-o TRAINER_DIR)\n");
        return 2;
    }
    if (!(o.lr > 0 && o.lr < 1e3)) return cli_fail(ct_errorf("learning rate %g is out of range: it must be in (0, 1000)", o.lr));
    if (!o.schedule || (strcmp(o.schedule, "cosine") && strcmp(o.schedule, "step") && strcmp(o.schedule, "constant")))
        return cli_fail(ct_errorf("unknown schedule '%s' (known: cosine, step, constant)", o.schedule ? o.schedule : ""));
    ct_graph *enc = NULL;
    if ((st = cli_load_encoder(model, bundled, channels, size, &enc))) return cli_fail(st);
    char label[512];
    snprintf(label, sizeof label, "%s%s", model ? "" : "model:", model ? model : bundled);
    if (!enc->source_path) enc->source_path = ct_arena_strdup(&enc->arena, label);
    st = compile_method(enc, label, &o, outdir, &copt);
    ct_graph_free(enc);
    return st ? cli_fail(st) : 0;
}

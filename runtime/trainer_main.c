/* trainer_main.c — the trainer a 'contra compile --method supervised' folder
 * carries (copied there as TRAINER_DIR/trainer): loads model.so and params.bin
 * from its own folder, feeds batches of X.npy/Y.npy, the learning rate of the
 * schedule each step, prints the loss, and saves every parameter and state. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "npy.h"
#include "program.h"
#include "runtime.h"
#include "schedule.h"
#include "trainer.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: trainer --x X.npy --y Y.npy (--steps N | --epochs E) [options]\n"
            "\n"
            "Train the compiled model of this folder (model.so, params.bin, trainer.txt)\n"
            "with supervised cross-entropy. Batches are taken in order from X (float32,\n"
            "[samples, ...the model input's dims...]) and Y (int64 or int32 class ids,\n"
            "[samples]), wrapping around; one line per step: 'step S lr LR loss L'.\n"
            "\n"
            "  --x X.npy          inputs\n"
            "  --y Y.npy          labels in [0, classes)\n"
            "  --steps N          number of steps (N >= 0; 0 only saves the initial state)\n"
            "  --epochs E         E passes over X: E * floor(samples / batch) steps\n"
            "  --batch B          must equal the compiled batch (checked)\n"
            "  --lr LR            base learning rate (default: the one given to compile)\n"
            "  --schedule S       constant (default), step:M1,M2,...[:GAMMA] (MultiStepLR,\n"
            "                     milestones in steps, gamma 0.1), cosine[:FINAL_LR]\n"
            "                     (CosineAnnealingLR over all steps, to FINAL_LR, default 0)\n"
            "  --warmup W         linear warm-up over the first W steps (LinearLR from\n"
            "                     --warmup-start F times the lr, default 0.001), then S\n"
            "  --save-params DIR  write every parameter and state tensor (BatchNorm\n"
            "                     statistics, optimizer slots, step count) as DIR/<name>.npy\n"
            "                     (a '/' in a name makes a subfolder) after training\n"
            "  --threads T        threads for the program's loops and BLAS\n"
            "  --time-steps       also print 'time S SECONDS' per step: wall time of the\n"
            "                     step (batch copy + forward, backward, optimizer)\n"
            "  --print-lr N       print the schedule's lr for steps 0..N-1 and exit\n"
            "  -q, --quiet        no per-step lines\n"
            "  -h, --help         this help\n");
}

static int fail(ct_status st)
{
    fprintf(stderr, "trainer: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

ct_status trainer_mkdirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) && errno != EEXIST) return ct_errorf("cannot create folder %s: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) && errno != EEXIST) return ct_errorf("cannot create folder %s: %s", buf, strerror(errno));
    return CT_OK;
}

ct_status trainer_meta_read(const char *dir, trainer_meta *m)
{
    char path[4200], line[512];
    snprintf(path, sizeof path, "%s/trainer.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return ct_errorf("cannot read %s (is this a 'contra compile --method' folder?)", path);
    memset(m, 0, sizeof *m);
    while (fgets(line, sizeof line, f) && m->n < TRAINER_META_MAX) {
        char *sp = strchr(line, ' '), *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!sp) continue;
        *sp = 0;
        snprintf(m->key[m->n], sizeof m->key[0], "%.63s", line);
        snprintf(m->val[m->n], sizeof m->val[0], "%.255s", sp + 1);
        m->n++;
    }
    fclose(f);
    return CT_OK;
}

const char *trainer_meta_get(const trainer_meta *m, const char *key, const char *def)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->key[i], key)) return m->val[i];
    return def;
}

typedef struct {
    char input[256], labels[256], lr[256], loss[256];
    long long batch, classes;
    double base_lr;
} meta;

static ct_status meta_from(const char *dir, const trainer_meta *t, meta *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->input, sizeof m->input, "%s", trainer_meta_get(t, "input", ""));
    snprintf(m->labels, sizeof m->labels, "%s", trainer_meta_get(t, "labels", ""));
    snprintf(m->lr, sizeof m->lr, "%s", trainer_meta_get(t, "lr", ""));
    snprintf(m->loss, sizeof m->loss, "%s", trainer_meta_get(t, "loss", ""));
    m->batch = atoll(trainer_meta_get(t, "batch", "0"));
    m->classes = atoll(trainer_meta_get(t, "classes", "0"));
    m->base_lr = atof(trainer_meta_get(t, "base_lr", "0"));
    if (!m->input[0] || !m->labels[0] || !m->lr[0] || !m->loss[0] || m->batch <= 0)
        return ct_errorf("%s/trainer.txt is incomplete", dir);
    return CT_OK;
}

static ct_status save_params(ct_rt_program *p, const char *dir)
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

static bool parse_num(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return *s && !*end;
}

int main(int argc, char **argv)
{
    char dir[4096];
    ssize_t k = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (k <= 0) return fail(ct_errorf("cannot find the trainer's own folder"));
    dir[k] = 0;
    char *sl = strrchr(dir, '/');
    if (sl) *sl = 0;
    static trainer_meta tm;
    ct_status mst = trainer_meta_read(dir, &tm);
    if (!mst && !strcmp(trainer_meta_get(&tm, "kind", "supervised"), "method"))
        return trainer_method_main(argc, argv, dir, &tm);
    ct_status_free(mst); /* no trainer.txt (a bare build-tree trainer): supervised */

    const char *xpath = NULL, *ypath = NULL, *save = NULL, *sched = "constant";
    double lr = NAN, warmup_start = 0.001;
    long long steps = -1, epochs = -1, batch = 0, warmup = 0, print_lr = -1;
    int threads = 0;
    bool quiet = false, time_steps = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double v = 0;
        bool has = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = true;
        else if (!strcmp(a, "--time-steps")) time_steps = true;
        else if (!strcmp(a, "--x") && has) xpath = argv[++i];
        else if (!strcmp(a, "--y") && has) ypath = argv[++i];
        else if (!strcmp(a, "--save-params") && has) save = argv[++i];
        else if (!strcmp(a, "--schedule") && has) sched = argv[++i];
        else if ((!strcmp(a, "--steps") || !strcmp(a, "--epochs") || !strcmp(a, "--batch") || !strcmp(a, "--lr") ||
                  !strcmp(a, "--warmup") || !strcmp(a, "--warmup-start") || !strcmp(a, "--threads") ||
                  !strcmp(a, "--print-lr")) && has) {
            if (!parse_num(argv[++i], &v)) {
                fprintf(stderr, "trainer: %s needs a number, got '%s'\n", a, argv[i]);
                return 2;
            }
            bool integer = strcmp(a, "--lr") && strcmp(a, "--warmup-start");
            if (integer && (v != floor(v) || v < 0 || v > 1e12)) {
                fprintf(stderr, "trainer: %s needs an integer >= 0, got '%s'\n", a, argv[i]);
                return 2;
            }
            if (!strcmp(a, "--steps")) steps = (long long)v;
            else if (!strcmp(a, "--epochs")) epochs = (long long)v;
            else if (!strcmp(a, "--batch")) batch = (long long)v;
            else if (!strcmp(a, "--warmup")) warmup = (long long)v;
            else if (!strcmp(a, "--threads")) threads = (int)v;
            else if (!strcmp(a, "--print-lr")) print_lr = (long long)v;
            else if (!strcmp(a, "--warmup-start")) warmup_start = v;
            else lr = v;
        } else {
            fprintf(stderr, "trainer: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!isnan(lr) && !(lr > 0 && lr < 1e3)) {
        fprintf(stderr, "trainer: learning rate %g is out of range: it must be in (0, 1000)\n", lr);
        return 2;
    }
    if (!(warmup_start > 0 && warmup_start <= 1)) {
        fprintf(stderr, "trainer: --warmup-start %g must be in (0, 1]\n", warmup_start);
        return 2;
    }
    if (print_lr >= 0) {
        ct_schedule s;
        ct_status st = ct_schedule_parse(sched, isnan(lr) ? 0.1 : lr, print_lr, &s);
        if (st) return fail(st);
        s.warmup_steps = warmup;
        s.warmup_start = warmup_start;
        for (long long t = 0; t < print_lr; t++) printf("%.17g\n", ct_schedule_lr(&s, t));
        return 0;
    }
    if (!xpath || !ypath || (steps < 0) == (epochs < 0)) {
        fprintf(stderr, "trainer: %s\n", !xpath || !ypath ? "--x and --y are required"
                                                          : "give exactly one of --steps and --epochs");
        usage(stderr);
        return 2;
    }

    meta m;
    ct_rt_program *p = NULL;
    ct_npy x = {0}, y = {0};
    int64_t *lab = NULL;
    if (mst) return fail(mst);
    ct_status st = meta_from(dir, &tm, &m);
    if (st) return fail(st);
    if (batch && batch != m.batch) {
        st = ct_errorf("--batch %lld: this trainer was compiled for batch %lld (recompile with --batch %lld)", batch,
                       m.batch, batch);
        goto out;
    }
    if (isnan(lr)) lr = m.base_lr;
    if ((st = ct_rt_program_load(dir, &p))) goto out;
    if (threads > 0) ct_rt_program_set_threads(p, threads);
    const ct_program_desc *d = ct_rt_program_desc(p);
    int xi = ct_rt_program_find(p, m.input), li = ct_rt_program_find(p, m.loss);
    if (xi < 0 || li < 0 || ct_rt_program_find(p, m.labels) < 0 || ct_rt_program_find(p, m.lr) < 0) {
        st = ct_errorf("model.so does not match trainer.txt (missing input, labels, lr or loss)");
        goto out;
    }
    const ct_tensor_desc *xt = &d->tensors[xi];
    if ((st = ct_npy_read(xpath, &x)) || (st = ct_npy_read(ypath, &y))) goto out;
    if (x.dtype != CT_PT_FLOAT || x.rank != xt->rank || x.dims[0] < 1) {
        st = ct_errorf("%s: expected float32 samples of rank %d, got %s of rank %d", xpath, xt->rank,
                       ct_npy_dtype_name(x.dtype), x.rank);
        goto out;
    }
    for (int dd = 1; dd < xt->rank; dd++)
        if (x.dims[dd] != xt->dims[dd]) {
            st = ct_errorf("%s: dimension %d is %lld, the model's input '%s' needs %lld", xpath, dd,
                           (long long)x.dims[dd], m.input, (long long)xt->dims[dd]);
            goto out;
        }
    int64_t n_samples = x.dims[0];
    if (y.rank != 1 || y.dims[0] != n_samples || (y.dtype != CT_PT_INT64 && y.dtype != CT_PT_INT32)) {
        st = ct_errorf("%s: expected %lld int64 labels, one per sample", ypath, (long long)n_samples);
        goto out;
    }
    lab = malloc((size_t)n_samples * sizeof *lab);
    if (!lab) abort();
    for (int64_t i = 0; i < n_samples; i++) {
        lab[i] = y.dtype == CT_PT_INT64 ? ((int64_t *)y.data)[i] : ((int32_t *)y.data)[i];
        if (lab[i] < 0 || lab[i] >= m.classes) {
            st = ct_errorf("%s: label %lld of sample %lld is out of range [0, %lld)", ypath, (long long)lab[i],
                           (long long)i, m.classes);
            goto out;
        }
    }
    if (epochs >= 0) {
        if (n_samples < m.batch) {
            st = ct_errorf("%s: %lld samples, fewer than one batch of %lld", xpath, (long long)n_samples, m.batch);
            goto out;
        }
        steps = epochs * (n_samples / m.batch);
    }
    ct_schedule sc;
    if ((st = ct_schedule_parse(sched, lr, steps, &sc))) goto out;
    sc.warmup_steps = warmup;
    sc.warmup_start = warmup_start;

    size_t per = x.nbytes / (size_t)n_samples;
    char *xb = ct_rt_program_tensor(p, xi);
    int64_t *lb = ct_rt_program_tensor(p, ct_rt_program_find(p, m.labels));
    float *lrp = ct_rt_program_tensor(p, ct_rt_program_find(p, m.lr));
    const float *loss = ct_rt_program_tensor(p, li);
    /* bind once through the checked API (zeros), then refill the bound buffers in place */
    {
        int64_t ld = m.batch;
        float lr0 = 0;
        void *zeros = calloc(1, (size_t)xt->nbytes + (size_t)m.batch * sizeof(int64_t) + 64);
        if (!zeros) abort();
        if (!(st = ct_rt_program_set_input(p, m.lr, CT_PT_FLOAT, 0, &ld, &lr0)) &&
            !(st = ct_rt_program_set_input(p, m.input, CT_PT_FLOAT, xt->rank, xt->dims, zeros)))
            st = ct_rt_program_set_input(p, m.labels, CT_PT_INT64, 1, &ld, zeros);
        free(zeros);
        if (st) goto out;
    }
    for (long long s = 0; s < steps; s++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int64_t b = 0; b < m.batch; b++) {
            int64_t i = (s * m.batch + b) % n_samples;
            memcpy(xb + (size_t)b * per, (char *)x.data + (size_t)i * per, per);
            lb[b] = lab[i];
        }
        double cur = ct_schedule_lr(&sc, s);
        *lrp = (float)cur;
        if ((st = ct_rt_program_run(p))) goto out;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (time_steps)
            printf("time %lld %.9f\n", s + 1, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
        if (!quiet) printf("step %lld lr %.9g loss %.9g\n", s + 1, cur, (double)*loss);
        if (!isfinite(*loss)) {
            st = ct_errorf("step %lld: the loss is %g", s + 1, (double)*loss);
            goto out;
        }
    }
    fflush(stdout);
    if (save && (st = save_params(p, save))) goto out;
out:
    free(lab);
    ct_npy_free(&x);
    ct_npy_free(&y);
    ct_rt_program_free(p);
    return st ? fail(st) : 0;
}

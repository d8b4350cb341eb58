/* train_tool.c — drives runtime/train's kNN monitor, metrics and progress
 * line for tests/test_train_runtime.py:
 *   knn DIR N M D CLASSES K T      reads DIR/{bank.f32,bank_labels.i64,queries.f32,query_labels.i64},
 *                                  writes DIR/{pred.i64,scores.f32}, prints the accuracy
 *   metrics RUNDIR STEPS EPOCHS [RESUME_STEP]
 *   progress STEPS EVERY tty|plain|auto */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn.h"
#include "metrics.h"

static int fail(ct_train_err err)
{
    fprintf(stderr, "%s\n", err);
    ct_train_err_free(err);
    return 1;
}

static void *read_file(const char *dir, const char *name, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    void *buf = malloc(n ? n : 1);
    if (fread(buf, 1, n, f) != n) {
        fprintf(stderr, "%s: short file\n", path);
        exit(2);
    }
    fclose(f);
    return buf;
}

static void write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static int cmd_knn(char **argv)
{
    const char *dir = argv[2];
    int64_t n = atoll(argv[3]), m = atoll(argv[4]), d = atoll(argv[5]);
    int classes = atoi(argv[6]), k = atoi(argv[7]);
    float t = (float)atof(argv[8]);
    float *bank = read_file(dir, "bank.f32", sizeof(float) * (size_t)(n * d));
    int64_t *bl = read_file(dir, "bank_labels.i64", sizeof(int64_t) * (size_t)n);
    float *q = read_file(dir, "queries.f32", sizeof(float) * (size_t)(m * d));
    int64_t *ql = read_file(dir, "query_labels.i64", sizeof(int64_t) * (size_t)m);
    double acc = 0;
    ct_train_err err = ct_knn_accuracy(bank, bl, n, q, ql, m, d, classes, k, t, &acc);
    if (err) return fail(err);
    ct_knn_normalize(bank, n, d);
    ct_knn_normalize(q, m, d);
    int64_t *pred = malloc(sizeof(int64_t) * (size_t)m);
    float *scores = malloc(sizeof(float) * (size_t)(m * classes));
    err = ct_knn_predict(bank, bl, n, q, m, d, classes, k, t, pred, scores);
    if (err) return fail(err);
    write_file(dir, "pred.i64", pred, sizeof(int64_t) * (size_t)m);
    write_file(dir, "scores.f32", scores, sizeof(float) * (size_t)(m * classes));
    printf("%.6f\n", acc);
    free(bank), free(bl), free(q), free(ql), free(pred), free(scores);
    return 0;
}

/* Synthetic run: loss 5 * exp(-step / 50) + 1, kNN accuracy rising per epoch. */
static int cmd_metrics(int argc, char **argv)
{
    const char *rundir = argv[2];
    int64_t steps = atoll(argv[3]), epochs = atoll(argv[4]);
    int64_t resume = argc > 5 ? atoll(argv[5]) : -1;
    ct_metrics *m = NULL;
    ct_train_err err = ct_metrics_open(rundir, resume, &m);
    if (err) return fail(err);
    int64_t per_epoch = steps / epochs;
    for (int64_t s = resume + 1; s <= steps; s++) {
        if (s == 0) continue;
        int64_t e = (s - 1) / per_epoch + 1;
        err = ct_metrics_log_step(m, e, s, 5 * exp(-(double)s / 50) + 1, 0.03, 1234.5);
        if (!err && s % per_epoch == 0) {
            double acc = e == 2 ? NAN : 0.1 + 0.8 * (double)e / (double)epochs;
            err = ct_metrics_log_epoch(m, e, s, 2.0, acc, 1.5);
            if (!err) err = ct_metrics_write_curves(m);
        }
        if (err) break;
    }
    if (!err) {
        const char *keys[2] = {"linear_acc", "epoch"};
        double vals[2] = {0.42, (double)epochs};
        err = ct_metrics_log(m, "eval", 2, keys, vals);
    }
    if (!err) err = ct_metrics_write_curves(m);
    ct_metrics_close(m);
    return err ? fail(err) : 0;
}

static int cmd_progress(char **argv)
{
    int64_t steps = atoll(argv[2]), every = atoll(argv[3]);
    int tty = !strcmp(argv[4], "tty") ? 1 : !strcmp(argv[4], "plain") ? 0 : -1;
    ct_progress p;
    ct_progress_init(&p, stdout, tty, every, steps, 256, 0);
    for (int64_t s = 1; s <= steps; s++) {
        ct_progress_update(&p, (s - 1) / 10 + 1, (steps + 9) / 10, s, 1.0 / (double)s, 0.03);
        if (s == steps / 2) ct_progress_note(&p, "checkpoint written at step %" PRId64, s);
    }
    ct_progress_end(&p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 9 && !strcmp(argv[1], "knn")) return cmd_knn(argv);
    if (argc >= 5 && !strcmp(argv[1], "metrics")) return cmd_metrics(argc, argv);
    if (argc >= 5 && !strcmp(argv[1], "progress")) return cmd_progress(argv);
    fprintf(stderr, "usage: train_tool knn DIR N M D CLASSES K T | metrics RUNDIR STEPS EPOCHS [RESUME] | "
                    "progress STEPS EVERY tty|plain|auto\n");
    return 2;
}

/* infer_runner.c — times a program compiled by `contra compile --infer`:
 * loads it through runtime/runtime.h, fills its inputs with fixed
 * pseudo-random data (or .npy files), runs warm-up iterations, then times
 * forward() and prints one JSON line. Built and driven by bench/infer.py.
 *   infer_runner DIR [--threads T] [--iters N] [--warmup W] [--min-seconds S]
 *                    [--input X.npy] [--output OUT.npy] [--profile TOP]
 *
 * --profile TOP times every node of the timed runs and prints the TOP nodes
 * that took the longest, per run, to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "npy.h"
#include "runtime.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(ct_status st)
{
    fprintf(stderr, "infer_runner: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: infer_runner DIR [--threads T] [--iters N] [--warmup W] [--min-seconds S] "
                        "[--input X.npy] [--output OUT.npy] [--profile TOP]\n");
        return 2;
    }
    int threads = 0, iters = 10, warmup = 2, profile_top = 0;
    double min_seconds = 0;
    const char *in_path = NULL, *out_path = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--iters")) iters = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--min-seconds")) min_seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--input")) in_path = argv[i + 1];
        else if (!strcmp(argv[i], "--output")) out_path = argv[i + 1];
        else if (!strcmp(argv[i], "--profile")) profile_top = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "infer_runner: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (iters < 1) iters = 1;

    ct_rt_program *p = NULL;
    ct_status st = ct_rt_program_load(argv[1], &p);
    if (st) return fail(st);
    if (threads > 0) ct_rt_program_set_threads(p, threads);
    const ct_program_desc *d = ct_rt_program_desc(p);

    /* Inputs: the .npy for the first, else a fixed LCG in [-1, 1). */
    for (int i = 0; i < d->n_inputs; i++) {
        const ct_tensor_desc *t = &d->tensors[d->inputs[i]];
        if (i == 0 && in_path) {
            ct_npy a;
            if ((st = ct_npy_read(in_path, &a))) goto out;
            st = ct_rt_program_set_input(p, t->name, a.dtype, a.rank, a.dims, a.data);
            ct_npy_free(&a);
            if (st) goto out;
            continue;
        }
        if (t->dtype != CT_PT_FLOAT) {
            st = ct_errorf("input '%s' is not float; give it with --input", t->name);
            goto out;
        }
        int64_t n = t->nbytes / 4;
        float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
        uint32_t s = 12345u;
        for (int64_t k = 0; k < n; k++) {
            s = s * 1664525u + 1013904223u;
            x[k] = (float)((double)(s >> 8) / 8388608.0 - 1.0);
        }
        st = ct_rt_program_set_input(p, t->name, t->dtype, t->rank, t->dims, x);
        free(x);
        if (st) goto out;
    }

    for (int i = 0; i < warmup; i++)
        if ((st = ct_rt_program_run(p))) goto out;
    if (profile_top > 0 && !ct_rt_program_profile_start(p)) {
        st = ct_errorf("%s: this program cannot be profiled (rebuild it with this contra)", argv[1]);
        goto out;
    }
    int cap = iters < 100000 ? 100000 : iters;
    double *times = malloc(sizeof *times * (size_t)cap);
    int n = 0;
    double t_start = now_s();
    while (n < cap && (n < iters || now_s() - t_start < min_seconds)) {
        double t0 = now_s();
        if ((st = ct_rt_program_run(p))) {
            free(times);
            goto out;
        }
        times[n++] = now_s() - t0;
    }
    double total = 0;
    for (int i = 0; i < n; i++) total += times[i];
    qsort(times, (size_t)n, sizeof *times, cmp_double);
    printf("{\"batch\":%lld,\"iters\":%d,\"threads\":%d,\"median_s\":%.6g,\"mean_s\":%.6g,\"min_s\":%.6g,"
           "\"arena_bytes\":%lld,\"persist_bytes\":%lld}\n",
           (long long)d->batch, n, threads, times[n / 2], total / n, times[0], (long long)d->arena_bytes,
           (long long)d->persist_bytes);
    free(times);
    if (profile_top > 0) ct_rt_program_profile_report(p, stderr, n, profile_top);

    if (out_path && d->n_outputs > 0) {
        int oi = d->outputs[0];
        const ct_tensor_desc *t = &d->tensors[oi];
        st = ct_npy_write(out_path, t->dtype, t->rank, t->dims, ct_rt_program_tensor(p, oi));
    }
out:
    ct_rt_program_free(p);
    return st ? fail(st) : 0;
}

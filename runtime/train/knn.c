/* knn.c — weighted kNN classification over a feature bank, as the MoCo
 * CIFAR demo's knn_predict: similarities by cblas_sgemm over query blocks,
 * top k through a size-k min-heap per query, exp(sim / t) votes. */
#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Queries per sgemm block: bounds the similarity block to QB * n floats. */
#define QB 256

void ct_knn_normalize(float *x, int64_t n, int64_t d)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = x + i * d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)r[j] * r[j];
        double nrm = sqrt(ss);
        if (nrm < 1e-12) nrm = 1e-12;
        float inv = (float)(1.0 / nrm);
        for (int64_t j = 0; j < d; j++) r[j] *= inv;
    }
}

typedef struct {
    float s;
    int64_t i;
} entry;

/* Min-heap on s (ties: the larger index is "smaller", so lower indices stay
 * in the top k, as a stable sort would keep them). */
static bool less(entry a, entry b) { return a.s < b.s || (a.s == b.s && a.i > b.i); }

static void sift_down(entry *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && less(h[l], h[m])) m = l;
        if (r < n && less(h[r], h[m])) m = r;
        if (m == i) return;
        entry t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

ct_train_err ct_knn_predict(const float *bank, const int64_t *bank_labels, int64_t n, const float *queries, int64_t m,
                            int64_t d, int num_classes, int k, float t, int64_t *pred, float *scores)
{
    if (n <= 0) return ct_train_errorf("kNN: the feature bank is empty");
    if (d <= 0 || m < 0) return ct_train_errorf("kNN: bad feature dimensions (d=%lld, m=%lld)", (long long)d,
                                               (long long)m);
    if (num_classes <= 0) return ct_train_errorf("kNN: no classes");
    if (k <= 0) return ct_train_errorf("kNN: k must be positive (got %d)", k);
    if (!(t > 0)) return ct_train_errorf("kNN: temperature must be positive (got %g)", (double)t);
    for (int64_t i = 0; i < n; i++)
        if (bank_labels[i] < 0 || bank_labels[i] >= num_classes)
            return ct_train_errorf("kNN: bank label %lld at %lld is outside [0, %d)", (long long)bank_labels[i],
                                   (long long)i, num_classes);
    if ((int64_t)k > n) k = (int)n;
    float *sim = malloc(sizeof(float) * (size_t)QB * (size_t)n);
    entry *heap = malloc(sizeof(entry) * (size_t)k);
    double *cls = malloc(sizeof(double) * (size_t)num_classes);
    if (!sim || !heap || !cls) {
        free(sim);
        free(heap);
        free(cls);
        return ct_train_errorf("kNN: out of memory for a %d x %lld similarity block", QB, (long long)n);
    }
    for (int64_t q0 = 0; q0 < m; q0 += QB) {
        int64_t qb = m - q0 < QB ? m - q0 : QB;
        /* sim (qb, n) = queries[q0:q0+qb] (qb, d) @ bank^T (d, n) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qb, (int)n, (int)d, 1.0f, queries + q0 * d,
                    (int)d, bank, (int)d, 0.0f, sim, (int)n);
        for (int64_t q = 0; q < qb; q++) {
            const float *row = sim + q * n;
            int hn = 0;
            for (int64_t j = 0; j < n; j++) {
                entry e = {row[j], j};
                if (hn < k) {
                    /* sift up */
                    int i = hn++;
                    heap[i] = e;
                    while (i > 0 && less(heap[i], heap[(i - 1) / 2])) {
                        entry tmp = heap[i];
                        heap[i] = heap[(i - 1) / 2];
                        heap[(i - 1) / 2] = tmp;
                        i = (i - 1) / 2;
                    }
                } else if (less(heap[0], e)) {
                    heap[0] = e;
                    sift_down(heap, hn, 0);
                }
            }
            for (int c = 0; c < num_classes; c++) cls[c] = 0;
            for (int i = 0; i < hn; i++) cls[bank_labels[heap[i].i]] += exp((double)heap[i].s / (double)t);
            int best = 0;
            for (int c = 1; c < num_classes; c++)
                if (cls[c] > cls[best]) best = c;
            pred[q0 + q] = best;
            if (scores)
                for (int c = 0; c < num_classes; c++) scores[(q0 + q) * num_classes + c] = (float)cls[c];
        }
    }
    free(sim);
    free(heap);
    free(cls);
    return NULL;
}

ct_train_err ct_knn_accuracy(const float *bank, const int64_t *bank_labels, int64_t n, const float *queries,
                             const int64_t *query_labels, int64_t m, int64_t d, int num_classes, int k, float t,
                             double *accuracy)
{
    *accuracy = 0;
    if (m <= 0) return ct_train_errorf("kNN: no queries");
    float *b = malloc(sizeof(float) * (size_t)(n * d));
    float *q = malloc(sizeof(float) * (size_t)(m * d));
    int64_t *pred = malloc(sizeof(int64_t) * (size_t)m);
    ct_train_err err = NULL;
    if (!b || !q || !pred) {
        err = ct_train_errorf("kNN: out of memory");
        goto done;
    }
    memcpy(b, bank, sizeof(float) * (size_t)(n * d));
    memcpy(q, queries, sizeof(float) * (size_t)(m * d));
    ct_knn_normalize(b, n, d);
    ct_knn_normalize(q, m, d);
    err = ct_knn_predict(b, bank_labels, n, q, m, d, num_classes, k, t, pred, NULL);
    if (err) goto done;
    int64_t correct = 0;
    for (int64_t i = 0; i < m; i++) correct += pred[i] == query_labels[i];
    *accuracy = (double)correct / (double)m;
done:
    free(b);
    free(q);
    free(pred);
    return err;
}

/* knn.h — the weighted kNN monitor of the MoCo CIFAR demo: cosine
 * similarity of L2-normalised features to a bank of training features, the
 * top k neighbours weighted by exp(sim / t), class score = sum of the
 * weights of neighbours with that label, prediction = argmax. */
#ifndef CT_KNN_H
#define CT_KNN_H

#include <stdint.h>

#include "train_err.h"

#define CT_KNN_DEFAULT_K 200
#define CT_KNN_DEFAULT_T 0.1f

/* L2-normalise each row of x (n, d) in place (F.normalize: x / max(|x|, 1e-12)). */
void ct_knn_normalize(float *x /* (n, d) */, int64_t n, int64_t d);

/* Predict labels for m queries. bank and queries must already be
 * normalised; labels are in [0, num_classes). k is clamped to n.
 * scores, if not NULL, receives the class scores (m, num_classes). */
ct_train_err ct_knn_predict(const float *bank /* (n, d) */, const int64_t *bank_labels /* (n) */, int64_t n,
                            const float *queries /* (m, d) */, int64_t m, int64_t d, int num_classes, int k,
                            float t, int64_t *pred /* (m) */, float *scores /* (m, num_classes) or NULL */);

/* Normalises copies of bank and queries, predicts, and returns the top-1
 * accuracy against query_labels in *accuracy (0..1). */
ct_train_err ct_knn_accuracy(const float *bank /* (n, d) */, const int64_t *bank_labels, int64_t n,
                             const float *queries /* (m, d) */, const int64_t *query_labels, int64_t m, int64_t d,
                             int num_classes, int k, float t, double *accuracy);

#endif

/* idx.h — IDX files (MNIST, Fashion-MNIST): unsigned-byte images (n, h, w)
 * and labels (n), gzipped or not, with their magic, dimensions and sizes
 * validated. */
#ifndef CT_DATA_IDX_H
#define CT_DATA_IDX_H

#include <stdint.h>

#include "data.h"

typedef struct {
    int64_t n;
    int h, w;       /* 0 for a label file */
    uint8_t *data;  /* (n, h, w) images or (n) labels, owned */
} ct_idx;

/* Read an IDX file of unsigned bytes with 1 (labels) or 3 (images) dims;
 * want_dims 1 or 3 says which is expected. */
ct_data_err ct_idx_read(const char *path, int want_dims, ct_idx *out);
void ct_idx_free(ct_idx *idx);

/* Images and labels together: their counts must agree and labels must be
 * below max_label (0: no check). */
ct_data_err ct_idx_read_pair(const char *images_path, const char *labels_path, int max_label,
                             ct_idx *images, ct_idx *labels);

#endif

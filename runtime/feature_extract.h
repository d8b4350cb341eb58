/* feature_extract.h — run a compiled inference program over one epoch of a
 * data loader and collect one output as an (n, d) feature matrix with the
 * labels; used by 'contra eval' and the trainer's kNN monitor. Links against
 * ct_runtime and ct_data. (Not "features.h": glibc has a <features.h>, and
 * runtime/ is on the include path.) */
#ifndef CT_FEATURE_EXTRACT_H
#define CT_FEATURE_EXTRACT_H

#include <stdint.h>

#include "data/loader.h"
#include "runtime.h"

typedef struct {
    int64_t epoch; /* the loader epoch to run (the augmentation streams and, with
                    * shuffle, the order come from it); 0 by default */
    int view;      /* which of the loader's views feeds the program (default 0) */
    /* Called after each program run with the samples done so far and the
     * epoch's total (NULL: none). */
    void (*progress)(void *ctx, int64_t done, int64_t total);
    void *progress_ctx;
} ct_features_options;

/* Run p over one epoch of l and return the output `output_name`, flattened
 * to feats (n, d) (d = product of the output's non-batch dims), and the
 * samples' labels (n) (-1 for unlabelled samples), both malloc'd (caller
 * frees). Rows follow the loader's order for that epoch: open the loader with
 * shuffle 0 for the dataset's order; with drop_last the last partial batch
 * is not seen.
 *
 * - input_name: a float input of p of shape (B, C, H, W) where B is the
 *   program's compiled batch and (C, H, W) the loader's (channels, view
 *   size); NULL: p's first input. Any other inputs of p must already be set
 *   (ct_rt_program_set_input) and keep their values.
 * - output_name: a float output of p whose first dim is B; NULL: p's first
 *   output. Only graph outputs are accepted (intermediate values share the
 *   arena and may be overwritten before forward() returns).
 * - The loader's batch need not equal B: samples are regrouped into program
 *   batches; a last partial program batch is padded (with copies of its last
 *   sample) and the padded rows are dropped.
 *
 * p's forward() runs as compiled: give it an inference program (a training
 * program would take a step per batch). The loader is left at the end of the
 * epoch. On error nothing is returned (*feats and *labels are NULL). */
ct_status ct_features_extract_ex(ct_rt_program *p, const char *input_name, const char *output_name, ct_loader *l,
                                 const ct_features_options *opt, float **feats /* (n, d) */,
                                 int64_t **labels /* (n) */, int64_t *n, int64_t *d);

/* ct_features_extract_ex with the default options (epoch 0, view 0, no progress). */
ct_status ct_features_extract(ct_rt_program *p, const char *input_name, const char *output_name, ct_loader *l,
                              float **feats /* (n, d) */, int64_t **labels /* (n) */, int64_t *n, int64_t *d);

#endif

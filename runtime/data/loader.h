/* loader.h — the prefetching loader: worker threads decode and augment
 * samples into a ring of batch buffers while the consumer trains on the
 * previous batch. Each sample's randomness comes from (seed, epoch, index,
 * view) and the epoch's order from (seed, epoch), so batches are identical
 * byte for byte whatever the number of workers. */
#ifndef CT_DATA_LOADER_H
#define CT_DATA_LOADER_H

#include <stdint.h>

#include "augment.h"
#include "data.h"
#include "folder.h"

#define CT_LOADER_MAX_VIEWS 8
#define CT_LOADER_MAX_BAD_REPORTED 5

typedef struct {
    int n_views;                            /* V >= 1 */
    ct_aug_view views[CT_LOADER_MAX_VIEWS]; /* one transform per view */
    int batch;                              /* B >= 1 */
    int workers;                            /* W >= 1 threads */
    int prefetch;                           /* ring size in batches (>= 2; 0: 3) */
    uint64_t seed;
    int shuffle;                            /* a new permutation each epoch */
    int drop_last;                          /* drop a last incomplete batch */
    int channels;                           /* 1 or 3 channels out (gray expanded) */
    double max_bad_fraction;                /* error once more than this fraction is bad */
    int scaled_decode;                      /* JPEG DCT scaling when crops allow */
    /* data-parallel shards (0 or 1: none): batch b of this loader holds rows
     * shard_rank*B .. shard_rank*B+B-1 of global batch b of shards*B samples
     * (the same epoch order and per-sample random streams as one loader with
     * batch shards*B); needs drop_last */
    int shards, shard_rank;
} ct_loader_config;

/* Defaults: one view of `preset` (see ct_aug_preset) per view count. */
ct_data_err ct_loader_config_preset(ct_loader_config *cfg, const char *method, int n_views, int size,
                                    int batch);

typedef struct {
    int64_t n;                         /* samples in the batch (B, or fewer last) */
    int64_t index;                     /* batch number in the epoch */
    float *views[CT_LOADER_MAX_VIEWS]; /* each (n, C, H, W), normalised */
    int64_t *labels;                   /* (n) class, -1 when unlabelled */
    int64_t *indices;                  /* (n) dataset index actually used */
} ct_batch;

typedef struct ct_loader ct_loader;

/* A folder of images (see ct_folder_open). */
ct_data_err ct_loader_open_folder(const char *root, ct_folder_mode mode, const ct_loader_config *cfg,
                                  ct_loader **out);
/* IDX images + labels (gray; expanded to 3 channels when cfg->channels is 3).
 * limit > 0 keeps only the first limit samples. */
ct_data_err ct_loader_open_idx(const char *images, const char *labels, int64_t limit,
                               const ct_loader_config *cfg, ct_loader **out);

int64_t ct_loader_size(const ct_loader *l);
int64_t ct_loader_batches_per_epoch(const ct_loader *l);
int ct_loader_n_classes(const ct_loader *l);
/* The configuration the loader was opened with (views, batch, channels...). */
const ct_loader_config *ct_loader_config_of(const ct_loader *l);

/* Begin an epoch at batch first_batch (0, or later when resuming); in-flight
 * work of the previous epoch is finished and dropped. */
ct_data_err ct_loader_start_epoch(ct_loader *l, int64_t epoch, int64_t first_batch);
/* The next batch, valid until the next call; *out is NULL at the epoch's
 * end. Errors: too many bad images, allocation failure. */
ct_data_err ct_loader_next(ct_loader *l, const ct_batch **out);

/* Bad images so far (unique), and the messages of the first few. */
int64_t ct_loader_bad_count(const ct_loader *l);
int ct_loader_bad_reported(const ct_loader *l, const char **msgs, int max);

/* Stop the workers and free everything. NULL is fine. One thread drives a
 * loader; a batch from ct_loader_next stays valid until the next call to
 * ct_loader_next or ct_loader_start_epoch. */
void ct_loader_close(ct_loader *l);

#endif

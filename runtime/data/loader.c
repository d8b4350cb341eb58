/* loader.c — worker threads claim sample positions in epoch order, decode
 * and augment them into the ring slot of their batch, and the consumer
 * waits for a batch to be complete. A slot is reused only after the
 * consumer has released the batch it held. Bad images are replaced by the
 * next good one in the epoch's order, which keeps batches deterministic. */
#include "loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "idx.h"
#include "image.h"

typedef struct {
    float *views[CT_LOADER_MAX_VIEWS]; /* each (B, C, H, W) */
    int64_t *labels;                   /* (B) */
    int64_t *indices;                  /* (B) */
    int64_t done;                      /* samples written */
    ct_batch batch;
} ring_slot;

struct ct_loader {
    ct_loader_config cfg;
    /* the source: a folder or IDX arrays */
    ct_folder folder;
    ct_idx idx_images, idx_labels;
    int is_idx;
    int n_classes;
    int64_t n;
    /* epoch state, guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_done;
    int64_t epoch;
    int64_t *perm;   /* (n) */
    int64_t n_batches;
    int64_t claim, end; /* next position to claim; end of the epoch */
    int64_t release_mark; /* batches below it are released */
    int64_t held;       /* batch the consumer holds, -1 */
    int64_t in_flight;
    int stop;
    ct_data_err err;
    /* bad images */
    uint8_t *bad;        /* (n) 1 once known bad */
    int64_t bad_count;
    char *bad_msgs[CT_LOADER_MAX_BAD_REPORTED];
    int n_bad_msgs;
    int ring_size;
    ring_slot *ring;
    pthread_t *threads;
    int n_threads;
};

ct_data_err ct_loader_config_preset(ct_loader_config *cfg, const char *method, int n_views, int size,
                                    int batch)
{
    memset(cfg, 0, sizeof *cfg);
    if (n_views < 1 || n_views > CT_LOADER_MAX_VIEWS)
        return ct_data_errorf("%d views: between 1 and %d are supported", n_views, CT_LOADER_MAX_VIEWS);
    for (int v = 0; v < n_views; v++) {
        ct_data_err err = ct_aug_preset(method, v, size, &cfg->views[v]);
        if (err) return err;
    }
    cfg->n_views = n_views;
    cfg->batch = batch;
    cfg->workers = 1;
    cfg->prefetch = 3;
    cfg->shuffle = 1;
    cfg->drop_last = 1;
    cfg->channels = 3;
    cfg->max_bad_fraction = 0.01;
    cfg->scaled_decode = 1;
    return NULL;
}

static size_t view_floats(const ct_loader *l, int v)
{
    return (size_t)l->cfg.channels * l->cfg.views[v].size_h * l->cfg.views[v].size_w;
}

/* Record idx as bad (once) with its message; sets l->err past the limit. */
static void note_bad(ct_loader *l, int64_t idx, ct_data_err msg)
{
    pthread_mutex_lock(&l->mu);
    if (!l->bad[idx]) {
        l->bad[idx] = 1;
        l->bad_count++;
        if (l->n_bad_msgs < CT_LOADER_MAX_BAD_REPORTED) {
            l->bad_msgs[l->n_bad_msgs++] = msg;
            msg = NULL;
        }
        if (!l->err && (double)l->bad_count > l->cfg.max_bad_fraction * (double)l->n) {
            l->err = ct_data_errorf("%lld of %lld images are bad, more than the allowed %.3g%%; first: %s",
                                    (long long)l->bad_count, (long long)l->n,
                                    100.0 * l->cfg.max_bad_fraction, l->bad_msgs[0]);
        }
    }
    pthread_mutex_unlock(&l->mu);
    ct_data_err_free(msg);
}

/* Decode dataset item idx and write its views for the stream of sample key
 * into row `row` of slot s. Returns an error for a bad image (with path). */
static ct_data_err sample_make(ct_loader *l, int64_t idx, int64_t key, ring_slot *s, int64_t row)
{
    const ct_loader_config *cfg = &l->cfg;
    ct_rng rngs[CT_LOADER_MAX_VIEWS];
    ct_aug_draw draws[CT_LOADER_MAX_VIEWS];
    ct_image img = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    ct_data_err err = NULL;
    int denom = 1;
    if (l->is_idx) {
        int h = l->idx_images.h, w = l->idx_images.w;
        if ((err = ct_image_alloc(&img, h, w, cfg->channels))) goto done;
        const uint8_t *src = l->idx_images.data + (size_t)idx * h * w;
        for (size_t p = 0; p < (size_t)h * w; p++)
            for (int c = 0; c < cfg->channels; c++) img.data[p * cfg->channels + c] = src[p];
        for (int v = 0; v < cfg->n_views; v++) {
            rngs[v] = ct_rng_stream(cfg->seed, (uint64_t)l->epoch, (uint64_t)key, (uint64_t)v);
            ct_aug_sample_crop(&cfg->views[v], &rngs[v], h, w, &draws[v]);
        }
    } else {
        const char *path = l->folder.paths[idx];
        ct_image_format fmt;
        int w, h;
        if ((err = ct_image_file_read(path, &buf, &len))) goto done;
        if ((err = ct_image_probe(path, buf, len, &fmt, &w, &h))) goto done;
        if ((long)w * h > CT_IMAGE_MAX_PIXELS) {
            err = ct_data_errorf("%s: image too large (%dx%d)", path, w, h);
            goto done;
        }
        denom = 8;
        for (int v = 0; v < cfg->n_views; v++) {
            rngs[v] = ct_rng_stream(cfg->seed, (uint64_t)l->epoch, (uint64_t)key, (uint64_t)v);
            ct_aug_sample_crop(&cfg->views[v], &rngs[v], h, w, &draws[v]);
            int d = ct_aug_draw_scale(&cfg->views[v], &draws[v], h, w);
            if (d < denom) denom = d;
        }
        if (fmt != CT_IMAGE_FORMAT_JPEG || !cfg->scaled_decode) denom = 1;
        if ((err = ct_image_decode(path, buf, len, cfg->channels, denom, &img))) goto done;
        if (denom == 1 && (img.w != w || img.h != h)) {
            err = ct_data_errorf("%s: decoded size %dx%d differs from the header's %dx%d", path, img.w,
                                 img.h, w, h);
            goto done;
        }
    }
    for (int v = 0; v < cfg->n_views; v++) {
        ct_aug_sample_ops(&cfg->views[v], &rngs[v], &draws[v]);
        float *dst = s->views[v] + (size_t)row * view_floats(l, v);
        if ((err = ct_aug_apply(&cfg->views[v], &draws[v], &img, denom, dst))) goto done;
    }
done:
    free(buf);
    ct_image_free(&img);
    return err;
}

/* Produce epoch position pos (perm fixed while in_flight > 0). */
static void position_make(ct_loader *l, int64_t pos)
{
    int64_t b = pos / l->cfg.batch, row = pos % l->cfg.batch;
    ring_slot *s = &l->ring[b % l->ring_size];
    int64_t key = l->perm[pos];
    int64_t used = -1;
    ct_data_err fatal = NULL;
    for (int64_t k = 0; k < l->n; k++) {
        int64_t idx = l->perm[(pos + k) % l->n];
        pthread_mutex_lock(&l->mu);
        int known_bad = l->bad[idx];
        int give_up = l->err != NULL;
        pthread_mutex_unlock(&l->mu);
        if (give_up) break;
        if (known_bad) continue;
        ct_data_err err = sample_make(l, idx, key, s, row);
        if (!err) {
            used = idx;
            break;
        }
        note_bad(l, idx, err);
    }
    if (used < 0) {
        pthread_mutex_lock(&l->mu);
        if (!l->err) fatal = ct_data_errorf("no readable image left in the dataset");
        pthread_mutex_unlock(&l->mu);
    }
    pthread_mutex_lock(&l->mu);
    if (fatal && !l->err) l->err = fatal;
    else ct_data_err_free(fatal);
    if (used >= 0) {
        s->labels[row] = l->is_idx ? l->idx_labels.data[used]
                                   : l->folder.labels[used];
        s->indices[row] = used;
    }
    s->done++;
    l->in_flight--;
    pthread_cond_broadcast(&l->cv_done);
    pthread_mutex_unlock(&l->mu);
}

static void *worker_main(void *arg)
{
    ct_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->stop && !(l->claim < l->end && l->claim / l->cfg.batch < l->release_mark + l->ring_size))
            pthread_cond_wait(&l->cv_work, &l->mu);
        if (l->stop) break;
        int64_t pos = l->claim++;
        l->in_flight++;
        pthread_mutex_unlock(&l->mu);
        position_make(l, pos);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static ct_data_err loader_finish_open(ct_loader *l)
{
    const ct_loader_config *cfg = &l->cfg;
    if (cfg->n_views < 1 || cfg->n_views > CT_LOADER_MAX_VIEWS)
        return ct_data_errorf("%d views: between 1 and %d are supported", cfg->n_views, CT_LOADER_MAX_VIEWS);
    if (cfg->batch < 1) return ct_data_errorf("batch size %d is not positive", cfg->batch);
    if (cfg->workers < 1 || cfg->workers > 256) return ct_data_errorf("%d workers: between 1 and 256", cfg->workers);
    if (cfg->channels != 1 && cfg->channels != 3) return ct_data_errorf("%d channels: 1 or 3", cfg->channels);
    for (int v = 0; v < cfg->n_views; v++)
        if (cfg->views[v].size_h < 1 || cfg->views[v].size_w < 1)
            return ct_data_errorf("view %d has no output size", v);
    const int64_t shards = cfg->shards > 1 ? cfg->shards : 1, gb = (int64_t)cfg->batch * shards;
    if (shards > 1 && (!cfg->drop_last || cfg->shard_rank < 0 || cfg->shard_rank >= shards))
        return ct_data_errorf("shard %d of %lld: shards need drop_last and a rank in [0, %lld)", cfg->shard_rank,
                              (long long)shards, (long long)shards);
    if (cfg->drop_last && l->n < gb)
        return ct_data_errorf("%lld samples make no full batch of %lld%s", (long long)l->n, (long long)gb,
                              shards > 1 ? " (the global batch of all ranks)" : "");
    l->ring_size = cfg->prefetch >= 2 ? cfg->prefetch : 3;
    l->n_batches = cfg->drop_last ? l->n / gb : (l->n + cfg->batch - 1) / cfg->batch;
    l->perm = malloc(sizeof(int64_t) * (size_t)l->n);
    l->bad = calloc((size_t)l->n, 1);
    l->ring = calloc((size_t)l->ring_size, sizeof *l->ring);
    if (!l->perm || !l->bad || !l->ring) return ct_data_errorf("out of memory opening the loader");
    for (int r = 0; r < l->ring_size; r++) {
        ring_slot *s = &l->ring[r];
        for (int v = 0; v < cfg->n_views; v++) {
            s->views[v] = malloc(sizeof(float) * view_floats(l, v) * cfg->batch);
            if (!s->views[v]) return ct_data_errorf("out of memory for the batch buffers");
        }
        s->labels = malloc(sizeof(int64_t) * cfg->batch);
        s->indices = malloc(sizeof(int64_t) * cfg->batch);
        if (!s->labels || !s->indices) return ct_data_errorf("out of memory for the batch buffers");
    }
    l->threads = calloc((size_t)cfg->workers, sizeof(pthread_t));
    if (!l->threads) return ct_data_errorf("out of memory for the workers");
    for (int t = 0; t < cfg->workers; t++) {
        if (pthread_create(&l->threads[t], NULL, worker_main, l) != 0)
            return ct_data_errorf("cannot start worker thread %d", t);
        l->n_threads++;
    }
    return NULL;
}

static ct_loader *loader_new(const ct_loader_config *cfg)
{
    ct_loader *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->cfg = *cfg;
    l->epoch = -1;
    l->held = -1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv_work, NULL);
    pthread_cond_init(&l->cv_done, NULL);
    return l;
}

ct_data_err ct_loader_open_folder(const char *root, ct_folder_mode mode, const ct_loader_config *cfg,
                                  ct_loader **out)
{
    *out = NULL;
    ct_loader *l = loader_new(cfg);
    if (!l) return ct_data_errorf("out of memory opening the loader");
    ct_data_err err = ct_folder_open(root, mode, &l->folder);
    if (!err) {
        l->n = l->folder.n;
        l->n_classes = l->folder.n_classes;
        err = loader_finish_open(l);
    }
    if (err) {
        ct_loader_close(l);
        return err;
    }
    *out = l;
    return NULL;
}

ct_data_err ct_loader_open_idx(const char *images, const char *labels, int64_t limit,
                               const ct_loader_config *cfg, ct_loader **out)
{
    *out = NULL;
    ct_loader *l = loader_new(cfg);
    if (!l) return ct_data_errorf("out of memory opening the loader");
    l->is_idx = 1;
    ct_data_err err = ct_idx_read_pair(images, labels, 0, &l->idx_images, &l->idx_labels);
    if (!err) {
        l->n = l->idx_images.n;
        if (limit > 0 && limit < l->n) l->n = limit;
        int maxl = 0;
        for (int64_t i = 0; i < l->n; i++)
            if (l->idx_labels.data[i] > maxl) maxl = l->idx_labels.data[i];
        l->n_classes = maxl + 1;
        err = loader_finish_open(l);
    }
    if (err) {
        ct_loader_close(l);
        return err;
    }
    *out = l;
    return NULL;
}

int64_t ct_loader_size(const ct_loader *l) { return l->n; }
int64_t ct_loader_batches_per_epoch(const ct_loader *l) { return l->n_batches; }
int ct_loader_n_classes(const ct_loader *l) { return l->n_classes; }
const ct_loader_config *ct_loader_config_of(const ct_loader *l) { return &l->cfg; }

ct_data_err ct_loader_start_epoch(ct_loader *l, int64_t epoch, int64_t first_batch)
{
    if (epoch < 0 || first_batch < 0 || first_batch > l->n_batches)
        return ct_data_errorf("cannot start epoch %lld at batch %lld (%lld batches)", (long long)epoch,
                              (long long)first_batch, (long long)l->n_batches);
    pthread_mutex_lock(&l->mu);
    l->end = l->claim; /* no new claims */
    while (l->in_flight > 0) pthread_cond_wait(&l->cv_done, &l->mu);
    l->epoch = epoch;
    if (l->cfg.shuffle) {
        ct_rng r = ct_rng_stream(l->cfg.seed, (uint64_t)epoch, UINT64_MAX, UINT64_MAX);
        ct_rng_permutation(&r, l->perm, l->n);
    } else {
        for (int64_t i = 0; i < l->n; i++) l->perm[i] = i;
    }
    if (l->cfg.shards > 1) {
        /* this rank's rows of each global batch, in place: every destination is at or
         * before its source, and sources are read in increasing order */
        const int64_t B = l->cfg.batch, gb = B * l->cfg.shards, r = l->cfg.shard_rank;
        for (int64_t g = 0; g < l->n_batches; g++)
            for (int64_t j = 0; j < B; j++) l->perm[g * B + j] = l->perm[g * gb + r * B + j];
    }
    for (int r = 0; r < l->ring_size; r++) l->ring[r].done = 0;
    l->held = -1;
    l->release_mark = first_batch;
    l->claim = first_batch * l->cfg.batch;
    l->end = l->cfg.drop_last ? l->n_batches * l->cfg.batch : l->n;
    pthread_cond_broadcast(&l->cv_work);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

ct_data_err ct_loader_next(ct_loader *l, const ct_batch **out)
{
    *out = NULL;
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        l->ring[l->held % l->ring_size].done = 0;
        l->release_mark = l->held + 1;
        l->held = -1;
        pthread_cond_broadcast(&l->cv_work);
    }
    int64_t b = l->release_mark;
    ct_data_err err = NULL;
    if (l->epoch < 0) {
        err = ct_data_errorf("the loader's next batch was asked before any epoch was started");
        goto done;
    }
    if (b >= l->n_batches) goto done;
    int64_t first = b * l->cfg.batch;
    int64_t count = l->end - first < l->cfg.batch ? l->end - first : l->cfg.batch;
    ring_slot *s = &l->ring[b % l->ring_size];
    while (!l->err && s->done < count) pthread_cond_wait(&l->cv_done, &l->mu);
    if (l->err) {
        err = ct_data_errorf("%s", l->err);
        goto done;
    }
    l->held = b;
    s->batch.n = count;
    s->batch.index = b;
    for (int v = 0; v < l->cfg.n_views; v++) s->batch.views[v] = s->views[v];
    s->batch.labels = s->labels;
    s->batch.indices = s->indices;
    *out = &s->batch;
done:
    pthread_mutex_unlock(&l->mu);
    return err;
}

int64_t ct_loader_bad_count(const ct_loader *l)
{
    ct_loader *m = (ct_loader *)l;
    pthread_mutex_lock(&m->mu);
    int64_t n = m->bad_count;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int ct_loader_bad_reported(const ct_loader *l, const char **msgs, int max)
{
    ct_loader *m = (ct_loader *)l;
    pthread_mutex_lock(&m->mu);
    int n = m->n_bad_msgs < max ? m->n_bad_msgs : max;
    for (int i = 0; i < n; i++) msgs[i] = m->bad_msgs[i];
    pthread_mutex_unlock(&m->mu);
    return n;
}

void ct_loader_close(ct_loader *l)
{
    if (!l) return;
    if (l->n_threads > 0) {
        pthread_mutex_lock(&l->mu);
        l->stop = 1;
        pthread_cond_broadcast(&l->cv_work);
        pthread_mutex_unlock(&l->mu);
        for (int t = 0; t < l->n_threads; t++) pthread_join(l->threads[t], NULL);
    }
    if (l->ring) {
        for (int r = 0; r < l->ring_size; r++) {
            for (int v = 0; v < CT_LOADER_MAX_VIEWS; v++) free(l->ring[r].views[v]);
            free(l->ring[r].labels);
            free(l->ring[r].indices);
        }
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv_work);
    pthread_cond_destroy(&l->cv_done);
    free(l->threads);
    free(l->ring);
    free(l->perm);
    free(l->bad);
    for (int i = 0; i < l->n_bad_msgs; i++) ct_data_err_free(l->bad_msgs[i]);
    ct_data_err_free(l->err);
    ct_folder_free(&l->folder);
    ct_idx_free(&l->idx_images);
    ct_idx_free(&l->idx_labels);
    free(l);
}

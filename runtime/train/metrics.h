/* metrics.h — what a training run leaves in RUNDIR for people: metrics as
 * JSON lines (metrics.jsonl, one flushed line per record), the loss and kNN
 * accuracy curves as SVG (loss.svg, knn.svg, replaced atomically), and the
 * progress line (updated in place on a terminal, plain lines otherwise). */
#ifndef CT_METRICS_H
#define CT_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "train_err.h"

/* ------------------------------------------------------------ JSON lines */

typedef struct ct_metrics ct_metrics;

/* Open RUNDIR/metrics.jsonl. resume_step < 0: start afresh (truncate).
 * resume_step >= 0: keep the records with "step" <= resume_step (records
 * written after the checkpoint being resumed are dropped, the file is
 * rewritten atomically) and reload the curves from them. */
ct_train_err ct_metrics_open(const char *rundir, int64_t resume_step, ct_metrics **out);
void ct_metrics_close(ct_metrics *m);

/* {"type":"step","epoch":E,"step":S,"loss":L,"lr":LR,"images_per_s":R} */
ct_train_err ct_metrics_log_step(ct_metrics *m, int64_t epoch, int64_t step, double loss, double lr,
                                 double images_per_s);
/* {"type":"epoch","epoch":E,"step":S,"loss":mean,"knn_acc":A,"seconds":T};
 * knn_acc may be NAN (no --val): written as null and not plotted. */
ct_train_err ct_metrics_log_epoch(ct_metrics *m, int64_t epoch, int64_t step, double mean_loss, double knn_acc,
                                  double seconds);
/* Any other record: {"type":TYPE,"key":value,...} with numeric values. */
ct_train_err ct_metrics_log(ct_metrics *m, const char *type, int n, const char *const *keys, const double *values);

/* Draw RUNDIR/loss.svg (loss per step) and RUNDIR/knn.svg (kNN accuracy
 * per epoch, only if some epoch had one) from the records so far. */
ct_train_err ct_metrics_write_curves(ct_metrics *m);

/* ------------------------------------------------------------ SVG plot */

/* A line plot with axes, ticks and labels, written atomically (temp file +
 * rename). Non-finite points are skipped; the polyline holds the rest. */
ct_train_err ct_svg_line_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                              const double *xs, const double *ys, int64_t n);

/* ------------------------------------------------------------ progress */

typedef struct {
    FILE *f;
    bool tty;            /* update one line in place with \r */
    int64_t every;       /* non-terminal: print a line every `every` steps */
    int64_t total_steps; /* for the ETA (0: unknown) */
    int64_t images_per_step;
    double t_start, t_last;
    int64_t step_start, step_last;
    double rate;         /* images/s, smoothed */
    int last_len;
} ct_progress;

/* tty: -1 detect with isatty(fileno(f)), 0 plain, 1 in place. */
void ct_progress_init(ct_progress *p, FILE *f, int tty, int64_t every, int64_t total_steps,
                      int64_t images_per_step, int64_t first_step);
/* After step `step` (1-based count of steps done) of the run. */
void ct_progress_update(ct_progress *p, int64_t epoch, int64_t epochs, int64_t step, double loss, double lr);
/* A message on its own line (the progress line is ended first on a terminal). */
void ct_progress_note(ct_progress *p, const char *fmt, ...) CT_TRAIN_PRINTF(2, 3);
/* End the in-place line. */
void ct_progress_end(ct_progress *p);

#endif

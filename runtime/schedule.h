/* schedule.h — learning-rate schedules computed by the runtime each step and
 * fed to the training graph's "lr" input: constant, step (milestones, gamma:
 * torch MultiStepLR), cosine to a final lr (CosineAnnealingLR's closed form),
 * each optionally after a linear warm-up (LinearLR, then the schedule over the
 * remaining steps, as SequentialLR). Steps count from 0. */
#ifndef CT_SCHEDULE_H
#define CT_SCHEDULE_H

#include <stdint.h>

#include "status.h"

#define CT_SCHEDULE_MAX_MILESTONES 16

typedef enum { CT_SCHED_CONSTANT, CT_SCHED_STEP, CT_SCHED_COSINE } ct_schedule_kind;

typedef struct {
    ct_schedule_kind kind;
    double base_lr;
    int64_t total_steps;   /* cosine: the schedule's length including warm-up */
    double final_lr;       /* cosine: eta_min */
    int n_milestones;      /* step: increasing step indices */
    int64_t milestones[CT_SCHEDULE_MAX_MILESTONES];
    double gamma;          /* step: factor at each milestone */
    int64_t warmup_steps;  /* linear warm-up from warmup_start * base_lr */
    double warmup_start;   /* LinearLR start_factor (default 1/warmup_steps... set by parse: 0.001) */
} ct_schedule;

/* Parse "constant", "step:M1,M2,...:GAMMA", "cosine" or "cosine:FINAL_LR";
 * warm-up is set separately (ct_schedule.warmup_steps). Errors name the text. */
ct_status ct_schedule_parse(const char *text, double base_lr, int64_t total_steps, ct_schedule *out);
/* The learning rate of step t (0-based). */
double ct_schedule_lr(const ct_schedule *s, int64_t t);

#endif

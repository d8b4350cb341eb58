/* schedule.c — learning-rate schedules (schedule.h), in the closed forms
 * of torch.optim.lr_scheduler: MultiStepLR, CosineAnnealingLR, LinearLR
 * warm-up followed by the main schedule (SequentialLR). */
#include "schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ct_status ct_schedule_parse(const char *text, double base_lr, int64_t total_steps, ct_schedule *out)
{
    memset(out, 0, sizeof *out);
    out->base_lr = base_lr;
    out->total_steps = total_steps;
    out->gamma = 0.1;
    out->warmup_start = 0.001;
    if (!text || !strcmp(text, "constant")) return CT_OK;
    if (!strncmp(text, "cosine", 6) && (text[6] == 0 || text[6] == ':')) {
        out->kind = CT_SCHED_COSINE;
        if (text[6] == ':') {
            char *end;
            out->final_lr = strtod(text + 7, &end);
            if (*end || end == text + 7 || !(out->final_lr >= 0))
                return ct_errorf("schedule '%s': the final lr must be a number >= 0", text);
        }
        if (total_steps <= 0) return ct_errorf("schedule '%s' needs the number of steps", text);
        return CT_OK;
    }
    if (!strncmp(text, "step:", 5)) {
        out->kind = CT_SCHED_STEP;
        const char *p = text + 5;
        for (;;) {
            char *end;
            long long m = strtoll(p, &end, 10);
            if (end == p || m < 0) return ct_errorf("schedule '%s': milestones must be step numbers >= 0", text);
            if (out->n_milestones == CT_SCHEDULE_MAX_MILESTONES)
                return ct_errorf("schedule '%s': at most %d milestones", text, CT_SCHEDULE_MAX_MILESTONES);
            if (out->n_milestones && m <= out->milestones[out->n_milestones - 1])
                return ct_errorf("schedule '%s': milestones must increase", text);
            out->milestones[out->n_milestones++] = m;
            p = end;
            if (*p == ',') { p++; continue; }
            break;
        }
        if (*p == ':') {
            char *end;
            out->gamma = strtod(p + 1, &end);
            if (*end || end == p + 1 || !(out->gamma > 0)) return ct_errorf("schedule '%s': gamma must be > 0", text);
        } else if (*p) {
            return ct_errorf("schedule '%s': expected step:M1,M2,...[:GAMMA]", text);
        }
        return CT_OK;
    }
    return ct_errorf("unknown schedule '%s' (known: constant, step:M1,M2:GAMMA, cosine[:FINAL_LR])", text);
}

double ct_schedule_lr(const ct_schedule *s, int64_t t)
{
    int64_t w = s->warmup_steps;
    if (w > 0 && t < w) {
        /* LinearLR(start_factor, end_factor = 1, total_iters = w) */
        double f = s->warmup_start + (1.0 - s->warmup_start) * (double)t / (double)w;
        return s->base_lr * f;
    }
    int64_t u = t - (w > 0 ? w : 0);
    switch (s->kind) {
    case CT_SCHED_STEP: {
        int k = 0;
        for (int i = 0; i < s->n_milestones; i++)
            if (u >= s->milestones[i]) k++;
        return s->base_lr * pow(s->gamma, k);
    }
    case CT_SCHED_COSINE: {
        int64_t T = s->total_steps - (w > 0 ? w : 0);
        if (T <= 0) return s->final_lr;
        if (u > T) u = T;
        return s->final_lr + (s->base_lr - s->final_lr) * (1 + cos(M_PI * (double)u / (double)T)) / 2;
    }
    default: return s->base_lr;
    }
}

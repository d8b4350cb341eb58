/* metrics.c — metrics.jsonl records, SVG line plots of the loss and kNN
 * curves, and the progress line. */
#include "metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

typedef struct {
    double *x, *y;
    int64_t n, cap;
} series;

struct ct_metrics {
    char *rundir;
    char *path; /* RUNDIR/metrics.jsonl */
    FILE *f;
    series loss; /* (step, loss) */
    series knn;  /* (epoch, knn accuracy in %) */
};

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (!s) abort();
    snprintf(s, n, "%s/%s", dir, name);
    return s;
}

static void series_push(series *s, double x, double y)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->x = realloc(s->x, sizeof(double) * (size_t)s->cap);
        s->y = realloc(s->y, sizeof(double) * (size_t)s->cap);
        if (!s->x || !s->y) abort();
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
}

static void put_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

/* Restore the curves from one parsed record. */
static void absorb(ct_metrics *m, const ct_json *rec)
{
    const ct_json *type = ct_json_get(rec, "type");
    if (!type || type->type != CT_JSON_STRING) return;
    if (strcmp(type->str, "step") == 0) {
        const ct_json *s = ct_json_get(rec, "step"), *l = ct_json_get(rec, "loss");
        if (s && l && s->type == CT_JSON_NUMBER) series_push(&m->loss, s->num, l->type == CT_JSON_NUMBER ? l->num : NAN);
    } else if (strcmp(type->str, "epoch") == 0) {
        const ct_json *e = ct_json_get(rec, "epoch"), *a = ct_json_get(rec, "knn_acc");
        if (e && a && e->type == CT_JSON_NUMBER && a->type == CT_JSON_NUMBER) series_push(&m->knn, e->num, 100 * a->num);
    }
}

/* Keep the records of an earlier run up to resume_step; rewrite atomically. */
static ct_train_err reload(ct_metrics *m, int64_t resume_step)
{
    FILE *in = fopen(m->path, "r");
    if (!in) {
        if (errno == ENOENT) return NULL;
        return ct_train_errorf("%s: cannot read metrics: %s", m->path, strerror(errno));
    }
    char *tmp = join(m->rundir, "metrics.jsonl.tmp");
    FILE *out = fopen(tmp, "w");
    ct_train_err err = NULL;
    if (!out) {
        err = ct_train_errorf("%s: cannot write: %s", tmp, strerror(errno));
        fclose(in);
        free(tmp);
        return err;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) > 0) {
        ct_json *rec = ct_json_parse(line, (size_t)len, NULL, 0);
        if (!rec) continue; /* a torn last line from a killed run */
        const ct_json *s = ct_json_get(rec, "step");
        bool keep = !(s && s->type == CT_JSON_NUMBER && s->num > (double)resume_step);
        if (keep) {
            absorb(m, rec);
            fwrite(line, 1, (size_t)len, out);
            if (line[len - 1] != '\n') fputc('\n', out);
        }
        ct_json_free(rec);
    }
    free(line);
    fclose(in);
    if (fflush(out) != 0 || ferror(out) || fsync(fileno(out)) != 0) err = ct_train_errorf("%s: write failed: %s", tmp, strerror(errno));
    if (fclose(out) != 0 && !err) err = ct_train_errorf("%s: write failed: %s", tmp, strerror(errno));
    if (!err && rename(tmp, m->path) != 0) err = ct_train_errorf("%s: cannot replace: %s", m->path, strerror(errno));
    if (err) unlink(tmp);
    free(tmp);
    return err;
}

ct_train_err ct_metrics_open(const char *rundir, int64_t resume_step, ct_metrics **out)
{
    *out = NULL;
    ct_metrics *m = calloc(1, sizeof *m);
    if (!m) abort();
    m->rundir = strdup(rundir);
    m->path = join(rundir, "metrics.jsonl");
    ct_train_err err = NULL;
    if (resume_step >= 0) {
        err = reload(m, resume_step);
        if (err) goto fail;
    }
    m->f = fopen(m->path, resume_step >= 0 ? "a" : "w");
    if (!m->f) {
        err = ct_train_errorf("%s: cannot open metrics file: %s", m->path, strerror(errno));
        goto fail;
    }
    *out = m;
    return NULL;
fail:
    ct_metrics_close(m);
    return err;
}

void ct_metrics_close(ct_metrics *m)
{
    if (!m) return;
    if (m->f) fclose(m->f);
    free(m->loss.x);
    free(m->loss.y);
    free(m->knn.x);
    free(m->knn.y);
    free(m->path);
    free(m->rundir);
    free(m);
}

static ct_train_err end_line(ct_metrics *m)
{
    fputs("}\n", m->f);
    if (fflush(m->f) != 0 || ferror(m->f))
        return ct_train_errorf("%s: cannot write metrics: %s", m->path, strerror(errno));
    return NULL;
}

ct_train_err ct_metrics_log_step(ct_metrics *m, int64_t epoch, int64_t step, double loss, double lr,
                                 double images_per_s)
{
    fprintf(m->f, "{\"type\":\"step\",\"epoch\":%lld,\"step\":%lld,\"loss\":", (long long)epoch, (long long)step);
    put_num(m->f, loss);
    fputs(",\"lr\":", m->f);
    put_num(m->f, lr);
    fputs(",\"images_per_s\":", m->f);
    put_num(m->f, images_per_s);
    series_push(&m->loss, (double)step, loss);
    return end_line(m);
}

ct_train_err ct_metrics_log_epoch(ct_metrics *m, int64_t epoch, int64_t step, double mean_loss, double knn_acc,
                                  double seconds)
{
    fprintf(m->f, "{\"type\":\"epoch\",\"epoch\":%lld,\"step\":%lld,\"loss\":", (long long)epoch, (long long)step);
    put_num(m->f, mean_loss);
    fputs(",\"knn_acc\":", m->f);
    put_num(m->f, knn_acc);
    fputs(",\"seconds\":", m->f);
    put_num(m->f, seconds);
    if (isfinite(knn_acc)) series_push(&m->knn, (double)epoch, 100 * knn_acc);
    return end_line(m);
}

ct_train_err ct_metrics_log(ct_metrics *m, const char *type, int n, const char *const *keys, const double *values)
{
    fputs("{\"type\":", m->f);
    ct_json_write_string(m->f, type);
    for (int i = 0; i < n; i++) {
        fputc(',', m->f);
        ct_json_write_string(m->f, keys[i]);
        fputc(':', m->f);
        put_num(m->f, values[i]);
    }
    return end_line(m);
}

ct_train_err ct_metrics_write_curves(ct_metrics *m)
{
    char *p = join(m->rundir, "loss.svg");
    ct_train_err err = ct_svg_line_plot(p, "Training loss", "step", "loss", m->loss.x, m->loss.y, m->loss.n);
    free(p);
    if (err || m->knn.n == 0) return err;
    p = join(m->rundir, "knn.svg");
    err = ct_svg_line_plot(p, "kNN accuracy (k=200, t=0.1)", "epoch", "accuracy (%)", m->knn.x, m->knn.y, m->knn.n);
    free(p);
    return err;
}

/* ------------------------------------------------------------ SVG */

/* A 1-2-5 tick step giving about `want` intervals over [lo, hi]. */
static double nice_step(double lo, double hi, int want)
{
    double raw = (hi - lo) / want;
    if (!(raw > 0)) return 1;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nf = f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10;
    return nf * mag;
}

static void xml_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < step * 1e-9) v = 0;
    if (fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0)) snprintf(buf, n, "%.3g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        if (dec > 6) dec = 6;
        snprintf(buf, n, "%.*f", dec, v);
    }
}

ct_train_err ct_svg_line_plot(const char *path, const char *title, const char *xlabel, const char *ylabel,
                              const double *xs, const double *ys, int64_t n)
{
    const double W = 640, H = 400, L = 72, R = 20, T = 40, B = 52;
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    int64_t finite = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        finite++;
        if (xs[i] < x0) x0 = xs[i];
        if (xs[i] > x1) x1 = xs[i];
        if (ys[i] < y0) y0 = ys[i];
        if (ys[i] > y1) y1 = ys[i];
    }
    if (finite == 0) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 - x0 <= 0) x0 -= 0.5, x1 += 0.5;
    if (y1 - y0 <= 0) {
        double pad = fabs(y0) > 0 ? fabs(y0) * 0.05 : 0.5;
        y0 -= pad, y1 += pad;
    }
    double xs_step = nice_step(x0, x1, 6), ys_step = nice_step(y0, y1, 5);
    bool integral_x = true; /* steps and epochs: no fractional ticks */
    for (int64_t i = 0; i < n && integral_x; i++)
        if (isfinite(xs[i]) && xs[i] != floor(xs[i])) integral_x = false;
    if (integral_x && xs_step < 1) xs_step = 1;
    /* round the y range out to ticks */
    y0 = floor(y0 / ys_step) * ys_step;
    y1 = ceil(y1 / ys_step) * ys_step;
    double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (T + ph - ((y) - y0) / (y1 - y0) * ph)

    size_t tn = strlen(path) + 32;
    char *tmp = malloc(tn);
    if (!tmp) abort();
    snprintf(tmp, tn, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        ct_train_err err = ct_train_errorf("%s: cannot write plot: %s", tmp, strerror(errno));
        free(tmp);
        return err;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" viewBox=\"0 0 %g %g\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%g\" height=\"%g\" fill=\"white\"/>\n", W, H);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\" font-size=\"15\">", W / 2, T / 2 + 4);
    xml_text(f, title);
    fputs("</text>\n", f);
    /* grid and ticks */
    fputs("<g class=\"yticks\" stroke=\"#ddd\">\n", f);
    char lab[64];
    for (double v = y0; v <= y1 + ys_step * 1e-6; v += ys_step) {
        tick_label(lab, sizeof lab, v, ys_step);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>", L, PY(v), L + pw, PY(v));
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" stroke=\"none\" fill=\"black\">%s</text>\n",
                L - 6, PY(v) + 4, lab);
    }
    fputs("</g>\n<g class=\"xticks\" stroke=\"#ddd\">\n", f);
    double xt = ceil(x0 / xs_step) * xs_step;
    for (double v = xt; v <= x1 + xs_step * 1e-6; v += xs_step) {
        tick_label(lab, sizeof lab, v, xs_step);
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>", PX(v), T, PX(v), T + ph);
        fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\" stroke=\"none\" fill=\"black\">%s</text>\n",
                PX(v), T + ph + 16, lab);
    }
    fputs("</g>\n", f);
    /* axes */
    fprintf(f, "<line class=\"axis\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, T + ph, L + pw,
            T + ph);
    fprintf(f, "<line class=\"axis\" x1=\"%g\" y1=\"%g\" x2=\"%g\" y2=\"%g\" stroke=\"black\"/>\n", L, T, L, T + ph);
    fprintf(f, "<text x=\"%g\" y=\"%g\" text-anchor=\"middle\">", L + pw / 2, H - 12);
    xml_text(f, xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%g\" text-anchor=\"middle\" transform=\"rotate(-90 16 %g)\">", T + ph / 2,
            T + ph / 2);
    xml_text(f, ylabel);
    fputs("</text>\n", f);
    /* the curve */
    fputs("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"", f);
    bool first = true;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(xs[i]) || !isfinite(ys[i])) continue;
        fprintf(f, "%s%.2f,%.2f", first ? "" : " ", PX(xs[i]), PY(ys[i]));
        first = false;
    }
    fputs("\"/>\n</svg>\n", f);
#undef PX
#undef PY
    ct_train_err err = NULL;
    if (fflush(f) != 0 || ferror(f)) err = ct_train_errorf("%s: cannot write plot: %s", tmp, strerror(errno));
    if (fclose(f) != 0 && !err) err = ct_train_errorf("%s: cannot write plot: %s", tmp, strerror(errno));
    if (!err && rename(tmp, path) != 0) err = ct_train_errorf("%s: cannot replace plot: %s", path, strerror(errno));
    if (err) unlink(tmp);
    free(tmp);
    return err;
}

/* ------------------------------------------------------------ progress */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ct_progress_init(ct_progress *p, FILE *f, int tty, int64_t every, int64_t total_steps, int64_t images_per_step,
                      int64_t first_step)
{
    memset(p, 0, sizeof *p);
    p->f = f;
    p->tty = tty < 0 ? isatty(fileno(f)) != 0 : tty != 0;
    p->every = every > 0 ? every : 1;
    p->total_steps = total_steps;
    p->images_per_step = images_per_step;
    p->t_start = p->t_last = now_s();
    p->step_start = p->step_last = first_step;
}

static void fmt_eta(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

void ct_progress_update(ct_progress *p, int64_t epoch, int64_t epochs, int64_t step, double loss, double lr)
{
    double t = now_s();
    double dt = t - p->t_last;
    if (step > p->step_last && dt > 0) {
        double r = (double)((step - p->step_last) * p->images_per_step) / dt;
        p->rate = p->rate > 0 ? 0.8 * p->rate + 0.2 * r : r;
    }
    p->t_last = t;
    p->step_last = step;
    if (!p->tty && step % p->every != 0 && step != p->total_steps) return;
    char eta[32] = "?";
    if (p->total_steps > 0 && p->rate > 0)
        fmt_eta(eta, sizeof eta, (double)((p->total_steps - step) * p->images_per_step) / p->rate);
    char line[256];
    int len;
    if (p->total_steps > 0)
        len = snprintf(line, sizeof line, "epoch %lld/%lld  step %lld/%lld  loss %.4f  lr %.4g  %.1f img/s  ETA %s",
                       (long long)epoch, (long long)epochs, (long long)step, (long long)p->total_steps, loss, lr,
                       p->rate, eta);
    else
        len = snprintf(line, sizeof line, "epoch %lld/%lld  step %lld  loss %.4f  lr %.4g  %.1f img/s",
                       (long long)epoch, (long long)epochs, (long long)step, loss, lr, p->rate);
    if (p->tty) {
        fprintf(p->f, "\r%s\x1b[K", line);
        p->last_len = len;
    } else {
        fprintf(p->f, "%s\n", line);
    }
    fflush(p->f);
}

void ct_progress_note(ct_progress *p, const char *fmt, ...)
{
    ct_progress_end(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    fputc('\n', p->f);
    fflush(p->f);
}

void ct_progress_end(ct_progress *p)
{
    if (p->tty && p->last_len > 0) {
        fputc('\n', p->f);
        fflush(p->f);
    }
    p->last_len = 0;
}

/* emit.c — the shared C-family printer and the C dialect (OpenMP loops,
 * libm float functions).  Output depends only on what is printed, so
 * generated source is deterministic. */
#include "emit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void c_pfor_open(ct_emitter *e, const char *var, const char *count, int collapse, bool serial)
{
    if (!serial) {
        if (collapse > 1)
            ct_emit_line(e, "#pragma omp parallel for collapse(%d) schedule(static)", collapse);
        else
            ct_emit_line(e, "#pragma omp parallel for schedule(static)");
    }
    ct_emit_open(e, "for (int64_t %s = 0; %s < %s; %s++)", var, var, count, var);
}

const ct_dialect ct_dialect_c = {
    .name = "c",
    .kernel_prefix = "static void",
    .restrict_kw = "restrict",
    .shared_qual = "",
    .barrier = "",
    .math = {
        [CT_MATH_EXP] = "expf",
        [CT_MATH_LOG] = "logf",
        [CT_MATH_SQRT] = "sqrtf",
        [CT_MATH_TANH] = "tanhf",
        [CT_MATH_ERF] = "erff",
        [CT_MATH_FABS] = "fabsf",
        [CT_MATH_FLOOR] = "floorf",
        [CT_MATH_CEIL] = "ceilf",
        [CT_MATH_POW] = "powf",
        [CT_MATH_FMAX] = "fmaxf",
        [CT_MATH_FMIN] = "fminf",
    },
    .pfor_open = c_pfor_open,
};

/* CUDA: every parallel loop is a grid-stride loop (collapse and serial do not
 * apply: the launch decides the parallelism). */
static void cuda_pfor_open(ct_emitter *e, const char *var, const char *count, int collapse, bool serial)
{
    (void)collapse;
    (void)serial;
    ct_emit_open(e, "for (int64_t %s = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; %s < %s; %s += (int64_t)gridDim.x * blockDim.x)",
                 var, var, count, var);
}

const ct_dialect ct_dialect_cuda = {
    .name = "cuda",
    .kernel_prefix = "__global__ void",
    .restrict_kw = "__restrict__",
    .shared_qual = "__shared__",
    .barrier = "__syncthreads();",
    .math = {
        [CT_MATH_EXP] = "expf",
        [CT_MATH_LOG] = "logf",
        [CT_MATH_SQRT] = "sqrtf",
        [CT_MATH_TANH] = "tanhf",
        [CT_MATH_ERF] = "erff",
        [CT_MATH_FABS] = "fabsf",
        [CT_MATH_FLOOR] = "floorf",
        [CT_MATH_CEIL] = "ceilf",
        [CT_MATH_POW] = "powf",
        [CT_MATH_FMAX] = "fmaxf",
        [CT_MATH_FMIN] = "fminf",
    },
    .pfor_open = cuda_pfor_open,
};

void ct_emit_init(ct_emitter *e, const ct_dialect *d)
{
    memset(e, 0, sizeof *e);
    e->d = d;
}

void ct_emit_free(ct_emitter *e)
{
    free(e->buf);
    e->buf = NULL;
    e->len = e->cap = 0;
}

char *ct_emit_take(ct_emitter *e, size_t *len)
{
    char *s = e->buf ? e->buf : calloc(1, 1);
    if (!s) abort();
    if (len) *len = e->len;
    e->buf = NULL;
    e->len = e->cap = 0;
    e->indent = 0;
    return s;
}

static void reserve(ct_emitter *e, size_t extra)
{
    if (e->len + extra + 1 <= e->cap) return;
    size_t cap = e->cap ? e->cap : 4096;
    while (cap < e->len + extra + 1) cap *= 2;
    char *nb = realloc(e->buf, cap);
    if (!nb) {
        fprintf(stderr, "contra: out of memory while emitting source\n");
        abort();
    }
    e->buf = nb;
    e->cap = cap;
}

static void vappend(ct_emitter *e, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    CT_ASSERT(n >= 0);
    reserve(e, (size_t)n);
    vsnprintf(e->buf + e->len, (size_t)n + 1, fmt, ap);
    e->len += (size_t)n;
}

static void append(ct_emitter *e, const char *s)
{
    size_t n = strlen(s);
    reserve(e, n);
    memcpy(e->buf + e->len, s, n + 1);
    e->len += n;
}

static void put_indent(ct_emitter *e)
{
    for (int i = 0; i < e->indent; i++) append(e, "    ");
}

void ct_emit_raw(ct_emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vappend(e, fmt, ap);
    va_end(ap);
}

void ct_emit_line(ct_emitter *e, const char *fmt, ...)
{
    /* Preprocessor lines start at column 0. */
    if (fmt[0] != '#') put_indent(e);
    va_list ap;
    va_start(ap, fmt);
    vappend(e, fmt, ap);
    va_end(ap);
    append(e, "\n");
}

void ct_emit_open(ct_emitter *e, const char *fmt, ...)
{
    put_indent(e);
    va_list ap;
    va_start(ap, fmt);
    vappend(e, fmt, ap);
    va_end(ap);
    append(e, " {\n");
    e->indent++;
}

void ct_emit_close(ct_emitter *e)
{
    CT_ASSERT(e->indent > 0);
    e->indent--;
    put_indent(e);
    append(e, "}\n");
}

void ct_emit_for(ct_emitter *e, const char *var, const char *count_fmt, ...)
{
    char count[256];
    va_list ap;
    va_start(ap, count_fmt);
    vsnprintf(count, sizeof count, count_fmt, ap);
    va_end(ap);
    ct_emit_open(e, "for (int64_t %s = 0; %s < %s; %s++)", var, var, count, var);
}

void ct_emit_pfor(ct_emitter *e, const char *var, int collapse, bool serial, const char *count_fmt, ...)
{
    char count[256];
    va_list ap;
    va_start(ap, count_fmt);
    vsnprintf(count, sizeof count, count_fmt, ap);
    va_end(ap);
    e->d->pfor_open(e, var, count, collapse, serial);
}

const char *ct_emit_math(const ct_emitter *e, ct_math_fn f)
{
    CT_ASSERT((unsigned)f < CT_MATH_COUNT);
    return e->d->math[f];
}

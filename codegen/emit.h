/* emit.h — a C-family source printer shared by the code generators.
 * A dialect says how the target spells kernels, parallel loops, barriers,
 * shared memory and math functions; kernel bodies are written once against it
 * (after tinygrad's cstyle renderer).  This issue provides the C dialect. */
#ifndef CT_EMIT_H
#define CT_EMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef enum {
    CT_MATH_EXP,
    CT_MATH_LOG,
    CT_MATH_SQRT,
    CT_MATH_TANH,
    CT_MATH_ERF,
    CT_MATH_FABS,
    CT_MATH_FLOOR,
    CT_MATH_CEIL,
    CT_MATH_POW,
    CT_MATH_FMAX,
    CT_MATH_FMIN,
    CT_MATH_COUNT
} ct_math_fn;

typedef struct ct_emitter ct_emitter;

typedef struct {
    const char *name;          /* "c", "cuda" */
    const char *kernel_prefix; /* how a kernel function starts: "static void" / "__global__ void" */
    const char *restrict_kw;   /* "restrict" / "__restrict__" */
    const char *shared_qual;   /* shared-memory qualifier ("" where none) */
    const char *barrier;       /* statement that synchronises a block ("" where none) */
    const char *math[CT_MATH_COUNT]; /* float math function names */
    /* A parallel loop `for (int64_t var = 0; var < count; var++) {` with the
     * iterations spread over threads; `collapse` > 1 also spreads the next
     * collapse-1 perfectly nested loops (C: OpenMP collapse); `serial` asks
     * for a plain loop (too little work to be worth threads).  Closed with
     * ct_emit_close. */
    void (*pfor_open)(ct_emitter *e, const char *var, const char *count, int collapse, bool serial);
} ct_dialect;

extern const ct_dialect ct_dialect_c;
/* CUDA (codegen/cuda_backend.c): a parallel loop is a grid-stride loop over the launch. */
extern const ct_dialect ct_dialect_cuda;

struct ct_emitter {
    const ct_dialect *d;
    char *buf;
    size_t len, cap;
    int indent;
};

void ct_emit_init(ct_emitter *e, const ct_dialect *d);
void ct_emit_free(ct_emitter *e);
/* Hand the text to the caller (malloc'd, NUL-terminated); the emitter is reset. */
char *ct_emit_take(ct_emitter *e, size_t *len);

/* Text appended as is. */
void ct_emit_raw(ct_emitter *e, const char *fmt, ...) CT_PRINTF(2, 3);
/* One indented line, newline added. */
void ct_emit_line(ct_emitter *e, const char *fmt, ...) CT_PRINTF(2, 3);
/* An indented line followed by " {", indent one level. */
void ct_emit_open(ct_emitter *e, const char *fmt, ...) CT_PRINTF(2, 3);
/* "}" and dedent. */
void ct_emit_close(ct_emitter *e);
/* A serial loop `for (int64_t var = 0; var < count; var++) {`. */
void ct_emit_for(ct_emitter *e, const char *var, const char *count_fmt, ...) CT_PRINTF(3, 4);
/* A parallel loop in the dialect (see ct_dialect.pfor_open). */
void ct_emit_pfor(ct_emitter *e, const char *var, int collapse, bool serial, const char *count_fmt, ...)
    CT_PRINTF(5, 6);
/* The dialect's name for a float math function. */
const char *ct_emit_math(const ct_emitter *e, ct_math_fn f);

#endif

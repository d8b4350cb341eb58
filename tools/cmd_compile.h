/* cmd_compile.h — the inference compile pipeline shared by 'contra compile'
 * and 'contra run': load, fix the batch, run the default passes and memory
 * planning, generate C and build it. */
#ifndef CT_CMD_COMPILE_H
#define CT_CMD_COMPILE_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    int64_t batch;     /* 0: the model's own (a symbolic batch becomes 1) */
    const char *cc;    /* NULL: $CC, else cc */
    bool verbose;      /* print a summary line to stdout */
} cli_compile_options;

/* Compile model_path for inference into outdir (model.c, program.h,
 * params.bin, model.so). */
ct_status cli_compile_infer(const char *model_path, const char *outdir, const cli_compile_options *opt);

/* --method supervised: a classifier head on the encoder, cross-entropy, the optimizer. */
#include "optim.h"
typedef struct {
    int64_t classes;
    bool freeze_encoder;   /* linear evaluation: encoder frozen, BatchNorm in inference form */
    const char *freeze;    /* comma-separated parameter names to freeze, or NULL */
    const char *repr;      /* representation value (default: the model's first output) */
    double lr;             /* default learning rate written for the trainer */
    uint64_t seed;         /* head init */
    ct_optim_options optim;
} cli_train_options;

/* Build the training graph and OUTDIR/{model.so, params.bin, trainer.txt, trainer}. */
ct_status cli_compile_supervised(const char *model_path, const char *outdir, const cli_train_options *t,
                                 const cli_compile_options *opt);

#endif

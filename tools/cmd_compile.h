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
    int target;        /* CLI_TARGET_*: which backend builds the program (--target) */
    bool tf32;         /* CUDA: GEMMs may use TF32 tensor cores (--tf32) */
} cli_compile_options;

enum { CLI_TARGET_C = 0, CLI_TARGET_CUDA = 1, CLI_TARGET_CUDA_EMU = 2 };

/* Generate, write and build g into outdir with the backend opt->target picks
 * (C: model.c; CUDA: model.cu with nvcc; CUDA emulated: model.cu with the
 * host compiler against runtime/cuda_emu). */
#include "codegen.h"
ct_status cli_codegen_and_build(const ct_graph *g, const char *outdir, const cli_compile_options *opt,
                                ct_c_program *prog);

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

/* The trainer executable copied into a trainer folder as OUTDIR/trainer. */
ct_status cli_install_trainer(const char *outdir);

/* 'contra compile ... --method moco-v2|...' (tools/cmd_compile_method.c). */
int cmd_compile_method(int argc, char **argv);

/* The encoder: the model file at path, or the bundled model `model`
 * (models/resnet.h names) with channels (0: 3) and size (0: its default). */
#include "ir.h"
/* A model file, or "model:NAME" for a bundled model at its defaults. */
ct_status cli_model_open(const char *spec, ct_graph **g);
ct_status cli_load_encoder(const char *path, const char *model, int channels, int64_t size, ct_graph **g);

#endif

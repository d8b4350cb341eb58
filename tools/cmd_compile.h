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

#endif

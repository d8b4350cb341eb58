/* prog_run.c — runs a compiled program folder (any backend: model.so +
 * params.bin) once through the runtime, for tests/test_cuda_backend.py:
 *   prog_run DIR OUTPREFIX [IN.npy ...]
 * binds the .npy files to the program's inputs in graph order, runs forward
 * once and writes output i to OUTPREFIX<i>.npy. */
#include <stdio.h>
#include <stdlib.h>

#include "npy.h"
#include "runtime.h"

static int fail(ct_status st)
{
    fprintf(stderr, "prog_run: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: prog_run DIR OUTPREFIX [IN.npy ...]\n");
        return 2;
    }
    ct_rt_program *p = NULL;
    ct_status st = ct_rt_program_load(argv[1], &p);
    if (st) return fail(st);
    const ct_program_desc *d = ct_rt_program_desc(p);
    if (argc - 3 != d->n_inputs) {
        fprintf(stderr, "prog_run: the program has %d inputs, %d given\n", d->n_inputs, argc - 3);
        ct_rt_program_free(p);
        return 2;
    }
    for (int i = 0; i < d->n_inputs; i++) {
        ct_npy a;
        if ((st = ct_npy_read(argv[3 + i], &a))) goto out;
        st = ct_rt_program_set_input(p, d->tensors[d->inputs[i]].name, a.dtype, a.rank, a.dims, a.data);
        ct_npy_free(&a);
        if (st) goto out;
    }
    if ((st = ct_rt_program_run(p))) goto out;
    for (int i = 0; i < d->n_outputs; i++) {
        char path[4200];
        const ct_tensor_desc *t = &d->tensors[d->outputs[i]];
        snprintf(path, sizeof path, "%s%d.npy", argv[2], i);
        if ((st = ct_npy_write(path, t->dtype, t->rank, t->dims, ct_rt_program_tensor(p, d->outputs[i])))) goto out;
    }
out:
    ct_rt_program_free(p);
    return st ? fail(st) : 0;
}

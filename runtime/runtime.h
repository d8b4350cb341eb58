/* runtime.h — loading and running a compiled program: dlopen its model.so,
 * read the ct_program descriptor, load params.bin, allocate the arena and
 * the persistent region once; bind inputs and read outputs by name.
 * Nothing is allocated per call.  Knows nothing of the compiler. */
#ifndef CT_RUNTIME_H
#define CT_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "program.h"
#include "status.h"

typedef struct ct_rt_program ct_rt_program;

/* Load DIR/model.so and DIR/params.bin. */
ct_status ct_rt_program_load(const char *dir, ct_rt_program **out);
void ct_rt_program_free(ct_rt_program *p);

const ct_program_desc *ct_rt_program_desc(const ct_rt_program *p);
/* Index of the tensor named `name` in the descriptor, -1 if none. */
int ct_rt_program_find(const ct_rt_program *p, const char *name);
/* The memory of tensor `index` (arena or persistent region). */
void *ct_rt_program_tensor(ct_rt_program *p, int index);

/* Copy data into input `name`; dtype and dims must match the descriptor. */
ct_status ct_rt_program_set_input(ct_rt_program *p, const char *name, int dtype, int rank, const int64_t *dims,
                                  const void *data);
/* Run forward(); fails if an input was never set. Same as launch + wait. */
ct_status ct_rt_program_run(ct_rt_program *p);

/* A step in parts, so that the next batch can be prepared while a device
 * step runs: launch() starts a step on the current inputs (a C program runs
 * it to the end), wait() returns once it is done and the program's outputs
 * are readable. Between them the caller may write the next inputs and
 * stage() them (a device program copies them to pinned memory and uploads
 * them beside the running step; a C program does nothing). */
ct_status ct_rt_program_launch(ct_rt_program *p);
void ct_rt_program_wait(ct_rt_program *p);
ct_status ct_rt_program_stage(ct_rt_program *p);

/* Device programs keep their state on the device: ct_rt_program_tensor
 * gives the host image, which holds the outputs after each wait() but the
 * rest of the persistent region (parameters, optimizer and BatchNorm state,
 * the queue) only after sync_host(); after writing state there (a resumed
 * checkpoint), call state_changed() so the next step uploads it. sync_host
 * does nothing for C programs; state_changed also tells a C program that
 * data it derived from weights (packed convolution weights) is stale. */
ct_status ct_rt_program_sync_host(ct_rt_program *p);
void ct_rt_program_state_changed(ct_rt_program *p);
/* Data-parallel programs (ABI 4): the ranks the program was compiled for
 * (1 for any other), and the communicator its collectives call; set it
 * before the first step. */
int ct_rt_program_world(const ct_rt_program *p);
void ct_rt_program_set_comm(ct_rt_program *p, const ct_comm *comm);
/* Thread count for the program's loops and BLAS (n > 0). */
void ct_rt_program_set_threads(ct_rt_program *p, int n);

/* The per-node profile (C programs of ABI 3): start timing every node's
 * kernels (false if the program cannot), and print the `top` nodes that took
 * the most time, per call of forward() over `calls` calls, to `out`. */
bool ct_rt_program_profile_start(ct_rt_program *p);
void ct_rt_program_profile_report(const ct_rt_program *p, FILE *out, int64_t calls, int top);

#endif

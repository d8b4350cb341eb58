/* dist.h — data-parallel training across processes: the ranks started by
 * mpirun, and the communicator (program.h's ct_comm) the collectives of a
 * compiled program call. MPI (Open MPI from Debian) carries every byte; a
 * trainer built without MPI runs single-process only.
 *
 * A watchdog bounds how long a rank waits in a collective of the training
 * step: past the timeout it names the collective and the step, and ends the
 * process, so that a rank that hangs does not hang the job (a rank that dies
 * is reported by mpirun, which then ends the others). */
#ifndef CT_DIST_H
#define CT_DIST_H

#include <stdbool.h>
#include <stdint.h>

#include "program.h"
#include "status.h"

typedef struct ct_dist ct_dist;

/* True if this process was started by an MPI launcher (mpirun/mpiexec). */
bool ct_dist_launched(void);
/* Join the job: MPI_Init when launched by mpirun, else a world of 1. */
ct_status ct_dist_init(ct_dist **out);
void ct_dist_finalize(ct_dist *d);
/* End every rank of the job (after an error on this one); NULL or a world of 1: nothing. */
void ct_dist_abort(ct_dist *d, int code);
int ct_dist_rank(const ct_dist *d);
int ct_dist_world(const ct_dist *d);
/* The communicator to hand a program (ct_rt_program_set_comm). */
const ct_comm *ct_dist_comm(ct_dist *d);

/* The watchdog: collectives of step `step` waiting longer than timeout_s
 * (> 0) end the process with a message naming this rank. */
void ct_dist_watch(ct_dist *d, double timeout_s);
void ct_dist_set_step(ct_dist *d, int64_t step);

/* Trainer-level collectives (every rank calls them, in the same order). */
void ct_dist_bcast(ct_dist *d, void *buf, int64_t bytes, int root);
void ct_dist_sum_f64(ct_dist *d, double *buf, int64_t n);
void ct_dist_allgather(ct_dist *d, const void *send, void *recv, int64_t bytes);
/* Waits for every rank without the watchdog (rank 0's evaluation, checkpoint). */
void ct_dist_barrier(ct_dist *d);
/* A float tensor held differently by the ranks (BatchNorm running statistics
 * without SyncBN) becomes its mean over the ranks; identical copies are left
 * as they are, bit for bit. Returns true if it changed. */
bool ct_dist_average_if_differs(ct_dist *d, float *buf, int64_t n);
/* Bytes this rank sent into the program's collectives so far. */
int64_t ct_dist_bytes(const ct_dist *d);

#endif

/* nccl_emu.c — the NCCL subset generated data-parallel CUDA programs call
 * (communicator from a unique id, AllReduce, AllGather, ReduceScatter,
 * groups), on the CPU emulation: each collective is an operation of its
 * stream (run in order, or recorded into a CUDA graph being captured and run
 * at every replay) that moves the bytes with the runtime's communicator
 * (program.h's ct_comm: MPI across the trainer's ranks). So a program built
 * for NCCL runs in tests as a multi-process job with the very same source.
 * Semantics follow NCCL: collectives of one communicator are issued in the
 * same order on every rank; ncclAvg is the sum divided by the rank count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_emu.h"
#include "program.h"

struct ct_emu_nccl_comm {
    int rank, nranks;
    const ct_comm *t;
};

static const ct_comm *g_transport;

void ct_emu_nccl_transport(const struct ct_comm *c) { g_transport = c; }

const char *ncclGetErrorString(ncclResult_t r)
{
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclSystemError: return "system error";
    default: return "internal error";
    }
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id)
{
    if (!id) return ncclInvalidArgument;
    memset(id, 0, sizeof *id);
    memcpy(id->internal, "ct-emu-nccl", 11);
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank)
{
    if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
    if (memcmp(id.internal, "ct-emu-nccl", 11) != 0) {
        ct_emu_report("ncclCommInitRank: the unique id did not come from ncclGetUniqueId on rank 0");
        return ncclInvalidUsage;
    }
    if (!g_transport || g_transport->world != nranks || g_transport->rank != rank) {
        ct_emu_report("ncclCommInitRank: rank %d of %d has no matching transport (ct_emu_nccl_transport)", rank,
                      nranks);
        return ncclInvalidUsage;
    }
    struct ct_emu_nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    c->rank = rank, c->nranks = nranks, c->t = g_transport;
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm)
{
    free(comm);
    return ncclSuccess;
}

ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

typedef struct {
    int kind; /* 0 all-reduce, 1 all-gather, 2 reduce-scatter */
    const void *send;
    void *recv;
    size_t count; /* elements: all-reduce's and reduce-scatter's per rank; all-gather's per rank */
    ncclDataType_t dt;
    ncclRedOp_t op;
    struct ct_emu_nccl_comm *c;
} coll;

static size_t dt_size(ncclDataType_t dt)
{
    switch (dt) {
    case ncclInt8: case ncclUint8: return 1;
    case ncclFloat16: return 2;
    case ncclInt32: case ncclUint32: case ncclFloat32: return 4;
    default: return 8;
    }
}

static void run_coll(void *payload)
{
    const coll *p = payload;
    const ct_comm *t = p->c->t;
    switch (p->kind) {
    case 0:
        if (p->dt == ncclFloat32) {
            const float *in[1] = {p->send};
            float *out[1] = {p->recv};
            int64_t n = (int64_t)p->count;
            t->allreduce_f32(t->ctx, 1, in, out, &n, p->op == ncclAvg ? 1.0f / (float)p->c->nranks : 1.0f);
        } else { /* ncclFloat64 (checked when enqueued) */
            if (p->recv != p->send) memmove(p->recv, p->send, p->count * 8);
            t->allreduce_f64(t->ctx, p->recv, (int64_t)p->count);
            if (p->op == ncclAvg)
                for (size_t i = 0; i < p->count; i++) ((double *)p->recv)[i] /= p->c->nranks;
        }
        break;
    case 1: t->allgather(t->ctx, p->send, p->recv, (int64_t)(p->count * dt_size(p->dt))); break;
    default: t->reduce_scatter_f32(t->ctx, p->send, p->recv, (int64_t)p->count); break;
    }
}

static ncclResult_t enqueue(const coll *p, const char *what, size_t in_bytes, size_t out_bytes, cudaStream_t s)
{
    if (!p->c) return ncclInvalidArgument;
    if (!ct_emu_device_range_ok(p->send, in_bytes) || !ct_emu_device_range_ok(p->recv, out_bytes)) {
        ct_emu_report("%s: a buffer is not inside one device allocation (%p, %zu bytes -> %p, %zu bytes)", what,
                      p->send, in_bytes, p->recv, out_bytes);
        return ncclInvalidArgument;
    }
    return ct_emu_enqueue_host(s, what, run_coll, p, sizeof *p) == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t dt, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream)
{
    if ((dt != ncclFloat32 && dt != ncclFloat64) || (op != ncclSum && op != ncclAvg)) {
        ct_emu_report("ncclAllReduce: the emulation has float32/float64 sums and averages only");
        return ncclInvalidArgument;
    }
    coll p = {0, send, recv, count, dt, op, comm};
    return enqueue(&p, "ncclAllReduce", count * dt_size(dt), count * dt_size(dt), stream);
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t dt, ncclComm_t comm,
                           cudaStream_t stream)
{
    coll p = {1, send, recv, sendcount, dt, ncclSum, comm};
    size_t b = sendcount * dt_size(dt);
    return enqueue(&p, "ncclAllGather", b, comm ? b * (size_t)comm->nranks : 0, stream);
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t dt, ncclRedOp_t op,
                               ncclComm_t comm, cudaStream_t stream)
{
    if (dt != ncclFloat32 || op != ncclSum) {
        ct_emu_report("ncclReduceScatter: the emulation has float32 sums only");
        return ncclInvalidArgument;
    }
    coll p = {2, send, recv, recvcount, dt, op, comm};
    return enqueue(&p, "ncclReduceScatter", comm ? recvcount * 4 * (size_t)comm->nranks : 0, recvcount * 4, stream);
}

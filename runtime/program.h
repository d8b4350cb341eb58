/* program.h — the fixed C ABI between a generated program and the runtime.
 * Generated code defines one `ct_program` descriptor of this shape; the
 * runtime dlopens the shared library and reads it.  No compiler types here. */
#ifndef CT_PROGRAM_H
#define CT_PROGRAM_H

#include <stdint.h>

/* Bumped whenever the structs below change. */
#define CT_PROGRAM_ABI 4 /* 2: the device fields at the end of ct_program_desc; 3: the profile; 4: world, comm */
#define CT_PROGRAM_MAX_RANK 8
#define CT_PROGRAM_SYMBOL "ct_program"

/* Tensor kinds (same meaning as the compiler's value kinds). */
enum {
    CT_PT_INPUT = 0, /* fed by the caller each call; lives in the persistent region */
    CT_PT_PARAM = 1, /* trainable, persistent, initial value in the blob */
    CT_PT_STATE = 2, /* persistent, not trained, initial value in the blob */
    CT_PT_CONST = 3, /* immutable, persistent, value in the blob */
    CT_PT_TEMP = 4,  /* intermediate, lives in the (reused) arena */
};

/* Element types: ONNX TensorProto.DataType codes. */
enum {
    CT_PT_FLOAT = 1,
    CT_PT_UINT8 = 2,
    CT_PT_INT8 = 3,
    CT_PT_INT32 = 6,
    CT_PT_INT64 = 7,
    CT_PT_BOOL = 9,
    CT_PT_FLOAT16 = 10,
    CT_PT_DOUBLE = 11,
    CT_PT_BFLOAT16 = 16,
};

/* Where forward()'s pointers live (ABI 2). */
enum {
    CT_PT_DEVICE_HOST = 0, /* host memory (the C backend) */
    CT_PT_DEVICE_CUDA = 1, /* CUDA device memory (the CUDA backend; host memory on the emulator) */
};

/* Which memory a tensor lives in. */
enum {
    CT_PT_REGION_ARENA = 0,   /* the activation arena, reused between tensors */
    CT_PT_REGION_PERSIST = 1, /* the persistent region, never reused */
};

typedef struct {
    const char *name;
    int kind;       /* CT_PT_INPUT ... CT_PT_TEMP */
    int dtype;      /* CT_PT_FLOAT ... */
    int rank;
    int64_t dims[CT_PROGRAM_MAX_RANK];
    int region;     /* CT_PT_REGION_* */
    int64_t offset; /* bytes into its region (64-byte aligned) */
    int64_t nbytes;
} ct_tensor_desc;

/* ABI 4: the communicator of a data-parallel program (the collectives of
 * ir/ops.def), set by the runtime before the first forward(): rank r of
 * world ranks. Each call is a collective every rank makes in the same order;
 * buffers are host memory for C programs. A failure does not return (the
 * runtime reports it and ends the process). */
typedef struct ct_comm {
    int rank, world;
    void *ctx;
    /* out[i] = sum over ranks of in[i] (counts[i] floats each), times scale;
     * out[i] may be in[i]. The n tensors travel as one message (a bucket). */
    void (*allreduce_f32)(void *ctx, int n, const float *const *in, float *const *out, const int64_t *counts,
                          float scale);
    /* buf = the sum over ranks of buf, in place (n doubles). */
    void (*allreduce_f64)(void *ctx, double *buf, int64_t n);
    /* recv = every rank's send (bytes each) in rank order. */
    void (*allgather)(void *ctx, const void *send, void *recv, int64_t bytes);
    /* recv (n floats) = block `rank` of the sum over ranks of send (world*n floats). */
    void (*reduce_scatter_f32)(void *ctx, const float *send, float *recv, int64_t n);
    /* buf (bytes) = root's buf on every rank: host memory (a CUDA program's NCCL unique id). */
    void (*bcast)(void *ctx, void *buf, int64_t bytes, int root);
} ct_comm;

typedef struct {
    int abi;                /* CT_PROGRAM_ABI */
    const char *name;       /* the graph's name */
    int64_t batch;          /* compile-time batch size */
    int n_tensors;
    const ct_tensor_desc *tensors;
    int n_inputs;
    const int *inputs;      /* indices into tensors, in graph input order */
    int n_outputs;
    const int *outputs;     /* indices into tensors, in graph output order */
    int64_t arena_bytes;    /* activation arena, scratch included */
    int64_t persist_bytes;  /* persistent region; params.bin holds its initial image */
    /* Run the graph: reads inputs from persist, writes outputs. */
    void (*forward)(void *arena, void *persist);
    /* Set the thread count of the program's loops and of its BLAS (n > 0). */
    void (*set_threads)(int n);
    /* ABI 2. device: CT_PT_DEVICE_*; for device programs, forward() takes
     * device pointers obtained from device_alloc, and the copies move bytes
     * between host and device memory (synchronously). NULL for host programs. */
    int device;
    void *(*device_alloc)(int64_t nbytes);
    void (*device_free)(void *p);
    void (*copy_to_device)(void *dst, const void *src, int64_t nbytes);
    void (*copy_to_host)(void *dst, const void *src, int64_t nbytes);
    /* ABI 3: a per-node profile of forward(). While *profile_on is non-zero,
     * forward() adds the wall seconds of node i's kernels to profile_seconds[i]
     * (the C backend; a device program leaves n_profile 0). profile_names[i]
     * reads "Op node-name [shapes]". */
    int n_profile;
    const char *const *profile_names;
    double *profile_seconds;
    int *profile_on;
    /* ABI 3, device programs (NULL otherwise): an asynchronous step. stage()
     * takes the inputs from the host image of the persistent region (pinned
     * copy, upload on a stream of their own); launch() enqueues a step on the
     * last staged inputs (or on those already in place if none were staged)
     * and returns; wait() returns once it is done. */
    void (*stage)(const void *host_persist);
    void (*launch)(void *arena, void *persist);
    void (*wait)(void);
    /* ABI 3: bumped by the runtime whenever the host writes parameters or
     * state; a C program keeps data derived from constant weights (packed
     * convolution weights) only while it is unchanged. NULL: none kept. */
    int64_t *state_generation;
    /* ABI 4: the number of ranks the program was compiled for (0 or 1: a
     * single process), and where the runtime puts its communicator. */
    int world;
    const ct_comm **comm;
} ct_program_desc;

#endif

/* checkpoint.h — checkpoints in the safetensors layout: an 8-byte
 * little-endian header length, a JSON header naming each tensor's dtype,
 * shape and byte range plus "__metadata__" (format, version, CRC-32 of the
 * data section, caller strings), then the raw little-endian tensor bytes.
 * Written atomically (temporary file, fsync, rename, fsync of the
 * directory); read back with every field validated. Loading never runs code. */
#ifndef CT_CHECKPOINT_H
#define CT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "train_err.h"

#define CT_CKPT_FORMAT "contra-checkpoint"
#define CT_CKPT_FORMAT_VERSION "1"
#define CT_CKPT_MAX_RANK 8

typedef enum {
    CT_CKPT_F32,
    CT_CKPT_F64,
    CT_CKPT_F16,
    CT_CKPT_BF16,
    CT_CKPT_I64,
    CT_CKPT_I32,
    CT_CKPT_I16,
    CT_CKPT_I8,
    CT_CKPT_U8,
    CT_CKPT_BOOL,
    CT_CKPT_DTYPE_COUNT
} ct_ckpt_dtype;

const char *ct_ckpt_dtype_name(ct_ckpt_dtype t); /* safetensors names: "F32", "I64", ... */
size_t ct_ckpt_dtype_size(ct_ckpt_dtype t);
/* Returns CT_CKPT_DTYPE_COUNT if unknown. */
ct_ckpt_dtype ct_ckpt_dtype_from_name(const char *name);
/* From an ONNX TensorProto.DataType code (runtime/program.h's CT_PT_FLOAT...);
 * CT_CKPT_DTYPE_COUNT if it has no checkpoint dtype. */
ct_ckpt_dtype ct_ckpt_dtype_from_onnx(int onnx_type);

/* A named tensor: for writing, data is read from; for loading, written to
 * (the caller's buffer of numel * dtype size bytes). */
typedef struct {
    const char *name;
    ct_ckpt_dtype dtype;
    int rank;                       /* 0 for a scalar */
    int64_t dims[CT_CKPT_MAX_RANK];
    void *data;
} ct_ckpt_tensor;

typedef struct {
    const char *key;
    const char *value;
} ct_ckpt_meta;

/* Bytes of a tensor (numel * dtype size); -1 on a negative dim or overflow. */
int64_t ct_ckpt_tensor_nbytes(const ct_ckpt_tensor *t);

/* Write tensors and metadata to `path` atomically: PATH.tmp.<pid> is
 * written, fsynced, renamed over PATH and the directory fsynced. On any
 * failure (ENOSPC, EFBIG, EIO...) the temporary file is removed, PATH keeps
 * its previous contents, and the error names the path and the system error.
 * Tensor names must be unique and non-empty; metadata keys must not use the
 * reserved names "format", "format_version" and "checksum". */
ct_train_err ct_ckpt_write(const char *path, const ct_ckpt_tensor *tensors, int n_tensors,
                           const ct_ckpt_meta *meta, int n_meta);

/* Remove PATH.tmp.<pid> files left by writers that no longer run (killed
 * mid-write). Returns the number removed. */
int ct_ckpt_remove_stale_temps(const char *path);

/* An opened, fully validated checkpoint (file mapped read-only). */
typedef struct ct_ckpt ct_ckpt;

/* Open and validate: header length bounds, well-formed JSON, dtypes,
 * shapes, offsets in range, contiguous and non-overlapping, file size, the
 * format name and version, and the CRC-32 of the data section. When
 * expect_fingerprint is not NULL, the metadata "fingerprint" must equal it
 * (a checkpoint of another model or method is refused, saying so). */
ct_train_err ct_ckpt_open(const char *path, const char *expect_fingerprint, ct_ckpt **out);
void ct_ckpt_close(ct_ckpt *c);

const char *ct_ckpt_path(const ct_ckpt *c);
/* Metadata value, NULL if absent. */
const char *ct_ckpt_meta_get(const ct_ckpt *c, const char *key);
int ct_ckpt_count(const ct_ckpt *c);
/* Tensor i's description; data points into the read-only mapping. */
const ct_ckpt_tensor *ct_ckpt_tensor_at(const ct_ckpt *c, int i);
/* Tensor by name, NULL if absent. */
const ct_ckpt_tensor *ct_ckpt_find(const ct_ckpt *c, const char *name);

/* Copy the named tensors into the callers' buffers. Every requested tensor
 * must be present with the same dtype and shape, and the checkpoint must
 * hold no tensor that was not requested (both are errors naming tensors). */
ct_train_err ct_ckpt_load(const ct_ckpt *c, const ct_ckpt_tensor *tensors, int n_tensors);

/* open + load + close. */
ct_train_err ct_ckpt_read(const char *path, const char *expect_fingerprint, const ct_ckpt_tensor *tensors,
                          int n_tensors);

#endif

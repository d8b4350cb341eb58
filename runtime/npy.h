/* npy.h — reading and writing NumPy .npy files (format versions 1-3,
 * little-endian, C order) for `contra run` and the tests.  Element types use
 * the ONNX codes of runtime/program.h (CT_PT_FLOAT, CT_PT_INT64, ...). */
#ifndef CT_NPY_H
#define CT_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define CT_NPY_MAX_RANK 8

typedef struct {
    int dtype;                     /* CT_PT_* */
    int rank;
    int64_t dims[CT_NPY_MAX_RANK];
    void *data;                    /* (dims...) C order, malloc'd */
    size_t nbytes;
} ct_npy;

/* Read path into a; errors name the file and what is wrong (unreadable,
 * bad magic, unsupported dtype, big-endian, fortran order, truncated). */
ct_status ct_npy_read(const char *path, ct_npy *a);
void ct_npy_free(ct_npy *a);
/* Write atomically (temporary file, fsync, rename). */
ct_status ct_npy_write(const char *path, int dtype, int rank, const int64_t *dims, const void *data);

/* Bytes per element of a CT_PT_* type (0 if unknown) and its NumPy name. */
size_t ct_npy_dtype_size(int dtype);
const char *ct_npy_dtype_name(int dtype);

#endif

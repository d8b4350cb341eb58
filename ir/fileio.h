/* fileio.h — whole-file reads and atomic writes, shared by every layer that
 * reads models or writes outputs, so that "no partial output" and "name the
 * file in the message" hold in one place. */
#ifndef CT_FILEIO_H
#define CT_FILEIO_H

#include <stddef.h>

#include "status.h"

/* Read the whole regular file at path into a malloc'd buffer (NUL-terminated
 * one byte past *len, for text parsers); the caller frees *out. */
ct_status ct_file_read(const char *path, char **out, size_t *len);

/* Write len bytes to path atomically: a temporary file beside it, fsync,
 * rename; on any error the temporary is removed and path is untouched. */
ct_status ct_file_write_atomic(const char *path, const void *data, size_t len);

#endif

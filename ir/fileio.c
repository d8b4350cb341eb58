/* fileio.c — whole-file reads and atomic writes (see fileio.h). */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ct_status ct_file_read(const char *path, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    ct_status st = CT_OK;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = ct_errorf("%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ct_errorf("%s: not a regular file", path);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    buf = malloc(size + 1);
    if (!buf) {
        st = ct_errorf("%s: out of memory reading %zu bytes", path, size);
        goto fail;
    }
    size_t done = 0;
    while (done < size) {
        ssize_t r = read(fd, buf + done, size - done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            st = ct_errorf("%s: read failed: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break; /* the file shrank while we read it */
        done += (size_t)r;
    }
    close(fd);
    buf[done] = 0;
    *out = buf;
    *len = done;
    return CT_OK;
fail:
    if (fd >= 0) close(fd);
    free(buf);
    return st;
}

ct_status ct_file_write_atomic(const char *path, const void *data, size_t len)
{
    ct_status st = CT_OK;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    int fd = -1;
    bool created = false;
    CT_ASSERT(tmp);
    /* the temporary lives beside the target so rename is atomic */
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path + 1) : 0;
    snprintf(tmp, plen + 32, "%.*s.%s.XXXXXX", (int)dlen, path, path + dlen);
    fd = mkstemp(tmp);
    if (fd < 0) {
        st = ct_errorf("%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        goto fail;
    }
    created = true;
    mode_t um = umask(0);
    umask(um);
    if (fchmod(fd, 0666 & ~um) != 0) {
        st = ct_errorf("%s: %s", tmp, strerror(errno));
        goto fail;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = ct_errorf("%s: write failed: %s", path, w < 0 ? strerror(errno) : "no space");
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        st = ct_errorf("%s: fsync failed: %s", path, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = ct_errorf("%s: close failed: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = ct_errorf("%s: cannot write: %s", path, strerror(errno));
        goto fail;
    }
    free(tmp);
    return CT_OK;
fail:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(tmp);
    return st;
}

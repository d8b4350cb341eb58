/* idx.c — IDX reader over zlib's gzread, which reads plain files as they
 * are, so gzipped and uncompressed files share one path. */
#include "idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void ct_idx_free(ct_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

static ct_data_err read_exact(gzFile f, const char *path, void *dst, size_t n, const char *what)
{
    uint8_t *p = dst;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got < 0) {
            int errnum;
            const char *msg = gzerror(f, &errnum);
            return ct_data_errorf("%s: read error in %s: %s", path, what, msg);
        }
        if (got == 0) return ct_data_errorf("%s: truncated file (%s)", path, what);
        p += got;
        n -= (size_t)got;
    }
    return NULL;
}

ct_data_err ct_idx_read(const char *path, int want_dims, ct_idx *out)
{
    memset(out, 0, sizeof *out);
    gzFile f = gzopen(path, "rb");
    if (!f) return ct_data_errorf("%s: cannot open: %s", path, errno ? strerror(errno) : "gzopen failed");
    ct_data_err err = NULL;
    uint8_t magic[4], dimb[12];
    if ((err = read_exact(f, path, magic, 4, "magic"))) goto fail;
    if (magic[0] != 0 || magic[1] != 0) {
        err = ct_data_errorf("%s: not an IDX file (magic %02x%02x%02x%02x)", path, magic[0], magic[1],
                             magic[2], magic[3]);
        goto fail;
    }
    if (magic[2] != 0x08) {
        err = ct_data_errorf("%s: IDX element type 0x%02x is not unsigned byte (0x08)", path, magic[2]);
        goto fail;
    }
    int nd = magic[3];
    if (nd != want_dims) {
        err = ct_data_errorf("%s: IDX file has %d dimensions, expected %d (%s)", path, nd, want_dims,
                             want_dims == 1 ? "labels" : "images");
        goto fail;
    }
    if ((err = read_exact(f, path, dimb, (size_t)4 * nd, "dimensions"))) goto fail;
    uint32_t dims[3] = {0, 0, 0};
    for (int d = 0; d < nd; d++)
        dims[d] = ((uint32_t)dimb[4 * d] << 24) | ((uint32_t)dimb[4 * d + 1] << 16) |
                  ((uint32_t)dimb[4 * d + 2] << 8) | dimb[4 * d + 3];
    if (dims[0] == 0 || dims[0] > (1u << 30) ||
        (nd == 3 && (dims[1] == 0 || dims[2] == 0 || dims[1] > 65536 || dims[2] > 65536))) {
        err = ct_data_errorf("%s: bad IDX dimensions", path);
        goto fail;
    }
    size_t per = nd == 3 ? (size_t)dims[1] * dims[2] : 1;
    size_t total = per * dims[0];
    if (total > ((size_t)1 << 34)) {
        err = ct_data_errorf("%s: IDX payload of %zu bytes is too large", path, total);
        goto fail;
    }
    out->data = malloc(total);
    if (!out->data) {
        err = ct_data_errorf("%s: out of memory for %zu bytes", path, total);
        goto fail;
    }
    if ((err = read_exact(f, path, out->data, total, "data"))) goto fail;
    uint8_t extra;
    int more = gzread(f, &extra, 1);
    if (more != 0) {
        err = more < 0 ? ct_data_errorf("%s: read error after the data", path)
                       : ct_data_errorf("%s: trailing bytes after %zu bytes of IDX data", path, total);
        goto fail;
    }
    out->n = dims[0];
    out->h = nd == 3 ? (int)dims[1] : 0;
    out->w = nd == 3 ? (int)dims[2] : 0;
    gzclose(f);
    return NULL;
fail:
    gzclose(f);
    ct_idx_free(out);
    return err;
}

ct_data_err ct_idx_read_pair(const char *images_path, const char *labels_path, int max_label,
                             ct_idx *images, ct_idx *labels)
{
    memset(labels, 0, sizeof *labels);
    ct_data_err err = ct_idx_read(images_path, 3, images);
    if (err) return err;
    if ((err = ct_idx_read(labels_path, 1, labels))) goto fail;
    if (labels->n != images->n) {
        err = ct_data_errorf("%s has %lld labels but %s has %lld images", labels_path,
                             (long long)labels->n, images_path, (long long)images->n);
        goto fail;
    }
    if (max_label > 0)
        for (int64_t i = 0; i < labels->n; i++)
            if (labels->data[i] >= max_label) {
                err = ct_data_errorf("%s: label %d of sample %lld is not below %d", labels_path,
                                     labels->data[i], (long long)i, max_label);
                goto fail;
            }
    return NULL;
fail:
    ct_idx_free(images);
    ct_idx_free(labels);
    return err;
}

/* image.h — decoding JPEG (libjpeg-turbo's TurboJPEG, with scaled decoding)
 * and PNG (libpng) into 8-bit HWC images, RGB or gray. Every failure is an
 * error naming the file; nothing here aborts on bad input. */
#ifndef CT_DATA_IMAGE_H
#define CT_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "data.h"

typedef struct {
    int h, w, c;   /* c is 1 (gray) or 3 (RGB) */
    uint8_t *data; /* (h, w, c), row-major, owned */
} ct_image;

typedef enum {
    CT_IMAGE_FORMAT_UNKNOWN = 0,
    CT_IMAGE_FORMAT_JPEG,
    CT_IMAGE_FORMAT_PNG,
} ct_image_format;

/* The largest image accepted, in pixels (guards against hostile headers). */
#define CT_IMAGE_MAX_PIXELS (1L << 26) /* 67 Mpx: 8K x 8K photos */

ct_data_err ct_image_alloc(ct_image *img, int h, int w, int c);
void ct_image_free(ct_image *img);

/* Whole file into a malloc'd buffer. */
ct_data_err ct_image_file_read(const char *path, uint8_t **buf, size_t *len);

/* Format from magic bytes, and the stored size, without decoding. */
ct_data_err ct_image_probe(const char *path, const uint8_t *buf, size_t len,
                           ct_image_format *fmt, int *w, int *h);

/* Decode buf (path only names it in errors). channels: 0 keeps the file's
 * (gray stays 1, everything else becomes RGB), 1 gray (PIL's convert("L")
 * formula for colour files), 3 RGB (gray replicated, alpha dropped, 16-bit
 * reduced to its high byte — as PIL for RGB; PIL saturates 16-bit gray —,
 * palettes expanded, Adobe CMYK converted as PIL). scale_denom 1, 2, 4 or 8
 * asks for JPEG's DCT-scaled decoding to ceil(size / denom); PNGs ignore it.
 * out must be zeroed or freed; on error it stays empty. */
ct_data_err ct_image_decode(const char *path, const uint8_t *buf, size_t len,
                            int channels, int scale_denom, ct_image *out);

/* ct_image_file_read + ct_image_decode. */
ct_data_err ct_image_load(const char *path, int channels, int scale_denom, ct_image *out);

/* Size of a dimension decoded at 1/denom (libjpeg's rounding up). */
int ct_image_scaled_dim(int dim, int denom);

/* The largest denominator in {1, 2, 4, 8} for which a crop_w x crop_h region
 * still covers out_w x out_h pixels after scaling (1 when none is smaller). */
int ct_image_pick_scale(int crop_w, int crop_h, int out_w, int out_h);

/* PIL's RGB -> L: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16. */
static inline uint8_t ct_image_rgb_to_l(uint8_t r, uint8_t g, uint8_t b)
{
    return (uint8_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >> 16);
}

#endif

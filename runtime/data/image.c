/* image.c — JPEG through TurboJPEG (tjDecompressHeader3/tjDecompress2 with
 * DCT scaling), PNG through libpng's progressive reader with setjmp-guarded
 * error handling; both land in an 8-bit HWC ct_image. */
#include "image.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

ct_data_err ct_image_alloc(ct_image *img, int h, int w, int c)
{
    memset(img, 0, sizeof *img);
    if (h <= 0 || w <= 0 || (c != 1 && c != 3) || (long)h * w > CT_IMAGE_MAX_PIXELS)
        return ct_data_errorf("bad image size %dx%dx%d", h, w, c);
    img->data = malloc((size_t)h * w * c);
    if (!img->data) return ct_data_errorf("out of memory for a %dx%dx%d image", h, w, c);
    img->h = h;
    img->w = w;
    img->c = c;
    return NULL;
}

void ct_image_free(ct_image *img)
{
    if (!img) return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

ct_data_err ct_image_file_read(const char *path, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ct_data_errorf("%s: cannot open: %s", path, strerror(errno));
    ct_data_err err = NULL;
    uint8_t *b = NULL;
    if (fseek(f, 0, SEEK_END) != 0) goto io_fail;
    long n = ftell(f);
    if (n < 0) goto io_fail;
    if (fseek(f, 0, SEEK_SET) != 0) goto io_fail;
    b = malloc(n > 0 ? (size_t)n : 1);
    if (!b) {
        err = ct_data_errorf("%s: out of memory reading %ld bytes", path, n);
        goto fail;
    }
    if (n > 0 && fread(b, 1, (size_t)n, f) != (size_t)n) goto io_fail;
    fclose(f);
    *buf = b;
    *len = (size_t)n;
    return NULL;
io_fail:
    err = ct_data_errorf("%s: read error: %s", path, strerror(errno));
fail:
    free(b);
    fclose(f);
    return err;
}

int ct_image_scaled_dim(int dim, int denom) { return (dim + denom - 1) / denom; }

/* Whether libjpeg-turbo offers the scaling factor 1/denom. */
static int tj_has_scale(int denom)
{
    int n = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&n);
    for (int k = 0; sf && k < n; k++)
        if (sf[k].num == 1 && sf[k].denom == denom) return 1;
    return 0;
}

int ct_image_pick_scale(int crop_w, int crop_h, int out_w, int out_h)
{
    static const int denoms[] = {8, 4, 2};
    for (int k = 0; k < 3; k++) {
        int d = denoms[k];
        if (crop_w >= (long)out_w * d && crop_h >= (long)out_h * d && tj_has_scale(d)) return d;
    }
    return 1;
}

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static ct_image_format format_of(const uint8_t *buf, size_t len)
{
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) return CT_IMAGE_FORMAT_JPEG;
    if (len >= 8 && memcmp(buf, png_magic, 8) == 0) return CT_IMAGE_FORMAT_PNG;
    return CT_IMAGE_FORMAT_UNKNOWN;
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

ct_data_err ct_image_probe(const char *path, const uint8_t *buf, size_t len,
                           ct_image_format *fmt, int *w, int *h)
{
    *fmt = format_of(buf, len);
    *w = *h = 0;
    if (*fmt == CT_IMAGE_FORMAT_JPEG) {
        tjhandle tj = tjInitDecompress();
        if (!tj) return ct_data_errorf("%s: cannot start the JPEG decoder", path);
        int sub, cs;
        int rc = tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &sub, &cs);
        ct_data_err err = NULL;
        if (rc != 0) err = ct_data_errorf("%s: bad JPEG header: %s", path, tjGetErrorStr2(tj));
        else if (*w <= 0 || *h <= 0) err = ct_data_errorf("%s: bad JPEG size %dx%d", path, *w, *h);
        tjDestroy(tj);
        return err;
    }
    if (*fmt == CT_IMAGE_FORMAT_PNG) {
        /* signature (8) + IHDR length (4) + "IHDR" (4) + width + height */
        if (len < 24 || memcmp(buf + 12, "IHDR", 4) != 0)
            return ct_data_errorf("%s: truncated PNG header", path);
        uint32_t pw = be32(buf + 16), ph = be32(buf + 20);
        if (pw == 0 || ph == 0 || pw > 1000000 || ph > 1000000)
            return ct_data_errorf("%s: bad PNG size %ux%u", path, pw, ph);
        *w = (int)pw;
        *h = (int)ph;
        return NULL;
    }
    return ct_data_errorf("%s: not a JPEG or PNG file", path);
}

/* Gray -> RGB replication or RGB -> L (PIL's formula), in a new image. */
static ct_data_err image_convert(ct_image *img, int channels)
{
    if (channels == 0 || channels == img->c) return NULL;
    ct_image out;
    ct_data_err err = ct_image_alloc(&out, img->h, img->w, channels);
    if (err) return err;
    size_t n = (size_t)img->h * img->w;
    if (channels == 3) {
        for (size_t i = 0; i < n; i++)
            out.data[3 * i] = out.data[3 * i + 1] = out.data[3 * i + 2] = img->data[i];
    } else {
        for (size_t i = 0; i < n; i++)
            out.data[i] = ct_image_rgb_to_l(img->data[3 * i], img->data[3 * i + 1], img->data[3 * i + 2]);
    }
    ct_image_free(img);
    *img = out;
    return NULL;
}

/* Whether the JPEG carries an Adobe APP14 marker (before the first SOS):
 * Adobe writes CMYK inverted, and PIL then reads it as "CMYK;I". */
static int jpeg_has_adobe(const uint8_t *buf, size_t len)
{
    size_t p = 2;
    while (p + 4 <= len && buf[p] == 0xff) {
        uint8_t m = buf[p + 1];
        if (m == 0xda || m == 0xd9) break;
        size_t seg = ((size_t)buf[p + 2] << 8) | buf[p + 3];
        if (m == 0xee && seg >= 7 && p + 9 <= len && memcmp(buf + p + 4, "Adobe", 5) == 0) return 1;
        p += 2 + seg;
    }
    return 0;
}

/* CMYK/YCCK JPEG to RGB as PIL: (un-invert Adobe files), then cmyk2rgb:
 * nk = 255 - k, channel = nk - muldiv255(c, nk). */
static ct_data_err decode_jpeg_cmyk(tjhandle tj, const char *path, const uint8_t *buf, size_t len,
                                    int sw, int sh, ct_image *out)
{
    uint8_t *cmyk = malloc((size_t)sw * sh * 4); /* (sh, sw, 4) */
    if (!cmyk) return ct_data_errorf("%s: out of memory", path);
    ct_data_err err = NULL;
    if (tjDecompress2(tj, buf, (unsigned long)len, cmyk, sw, 0, sh, TJPF_CMYK, TJFLAG_ACCURATEDCT) != 0) {
        err = ct_data_errorf("%s: corrupt JPEG: %s", path, tjGetErrorStr2(tj));
        goto done;
    }
    if ((err = ct_image_alloc(out, sh, sw, 3))) {
        err = ct_data_err_wrap(err, "%s", path);
        goto done;
    }
    int inv = jpeg_has_adobe(buf, len);
    for (size_t p = 0; p < (size_t)sw * sh; p++) {
        const uint8_t *q = cmyk + 4 * p;
        int k = inv ? 255 - q[3] : q[3], nk = 255 - k;
        for (int ch = 0; ch < 3; ch++) {
            int c = inv ? 255 - q[ch] : q[ch];
            int t = c * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            out->data[3 * p + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
done:
    free(cmyk);
    return err;
}

static ct_data_err decode_jpeg(const char *path, const uint8_t *buf, size_t len,
                               int scale_denom, ct_image *out)
{
    ct_data_err err = NULL;
    tjhandle tj = tjInitDecompress();
    if (!tj) return ct_data_errorf("%s: cannot start the JPEG decoder", path);
    int w, h, sub, cs;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &sub, &cs) != 0) {
        err = ct_data_errorf("%s: bad JPEG header: %s", path, tjGetErrorStr2(tj));
        goto fail;
    }
    if (w <= 0 || h <= 0 || (long)w * h > CT_IMAGE_MAX_PIXELS) {
        err = ct_data_errorf("%s: bad JPEG size %dx%d", path, w, h);
        goto fail;
    }
    if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) scale_denom = 1;
    if (scale_denom != 1 && !tj_has_scale(scale_denom)) scale_denom = 1;
    int sw = ct_image_scaled_dim(w, scale_denom), sh = ct_image_scaled_dim(h, scale_denom);
    int gray = cs == TJCS_GRAY;
    if (cs == TJCS_CMYK || cs == TJCS_YCCK) {
        err = decode_jpeg_cmyk(tj, path, buf, len, sw, sh, out);
        goto fail;
    }
    if ((err = ct_image_alloc(out, sh, sw, gray ? 1 : 3))) {
        err = ct_data_err_wrap(err, "%s", path);
        goto fail;
    }
    if (tjDecompress2(tj, buf, (unsigned long)len, out->data, sw, 0, sh,
                      gray ? TJPF_GRAY : TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
        err = ct_data_errorf("%s: corrupt JPEG: %s", path, tjGetErrorStr2(tj));
        ct_image_free(out);
        goto fail;
    }
fail:
    tjDestroy(tj);
    return err;
}

typedef struct {
    const uint8_t *buf;
    size_t len, pos;
    char msg[200];
} png_src;

static void png_read_mem(png_structp png, png_bytep dst, png_size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos) {
        snprintf(s->msg, sizeof s->msg, "truncated PNG data");
        png_longjmp(png, 1);
    }
    memcpy(dst, s->buf + s->pos, n);
    s->pos += n;
}

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static ct_data_err decode_png(const char *path, const uint8_t *buf, size_t len, ct_image *out)
{
    png_src src = {.buf = buf, .len = len, .pos = 0, .msg = "unknown PNG error"};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    if (!png) return ct_data_errorf("%s: cannot start the PNG decoder", path);
    png_infop info = png_create_info_struct(png);
    /* Everything touched after setjmp must be volatile or set before it. */
    png_bytep *volatile rows = NULL;
    ct_image *volatile img = out;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return ct_data_errorf("%s: cannot start the PNG decoder", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        ct_image_free(img);
        png_destroy_read_struct(&png, &info, NULL);
        return ct_data_errorf("%s: corrupt PNG: %s", path, src.msg);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_set_user_limits(png, 1000000, 1000000);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    int color = png_get_color_type(png, info);
    if ((long)w * h > CT_IMAGE_MAX_PIXELS) {
        snprintf(src.msg, sizeof src.msg, "image too large (%ux%u)", (unsigned)w, (unsigned)h);
        png_longjmp(png, 1);
    }
    /* deflate expands at most ~1032:1, so a header promising far more pixel
     * data than the file could hold is corrupt: refuse before allocating */
    if ((double)h * ((double)png_get_rowbytes(png, info) + 1) > 1100.0 * (double)len) {
        snprintf(src.msg, sizeof src.msg, "%ux%u pixels cannot fit in %zu bytes", (unsigned)w,
                 (unsigned)h, len);
        png_longjmp(png, 1);
    }
    if (bit_depth == 16) png_set_strip_16(png); /* high byte, as PIL's RGB;16B */
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_strip_alpha(png); /* also the alpha that tRNS expansion adds */
    int gray = color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA;
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = gray ? 1 : 3;
    if (png_get_rowbytes(png, info) != (png_size_t)w * c) {
        snprintf(src.msg, sizeof src.msg, "unsupported PNG layout");
        png_longjmp(png, 1);
    }
    ct_data_err err = ct_image_alloc(out, (int)h, (int)w, c);
    if (err) {
        snprintf(src.msg, sizeof src.msg, "%s", err);
        ct_data_err_free(err);
        png_longjmp(png, 1);
    }
    rows = malloc(sizeof(png_bytep) * h);
    if (!rows) {
        snprintf(src.msg, sizeof src.msg, "out of memory");
        png_longjmp(png, 1);
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = out->data + (size_t)y * w * c;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    return NULL;
}

ct_data_err ct_image_decode(const char *path, const uint8_t *buf, size_t len,
                            int channels, int scale_denom, ct_image *out)
{
    memset(out, 0, sizeof *out);
    if (channels != 0 && channels != 1 && channels != 3)
        return ct_data_errorf("%s: cannot decode to %d channels", path, channels);
    ct_data_err err = NULL;
    switch (format_of(buf, len)) {
    case CT_IMAGE_FORMAT_JPEG: err = decode_jpeg(path, buf, len, scale_denom, out); break;
    case CT_IMAGE_FORMAT_PNG: err = decode_png(path, buf, len, out); break;
    default: return ct_data_errorf("%s: not a JPEG or PNG file", path);
    }
    if (err) return err;
    if ((err = image_convert(out, channels))) {
        ct_image_free(out);
        return ct_data_err_wrap(err, "%s", path);
    }
    return NULL;
}

ct_data_err ct_image_load(const char *path, int channels, int scale_denom, ct_image *out)
{
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    ct_data_err err = ct_image_file_read(path, &buf, &len);
    if (err) return err;
    err = ct_image_decode(path, buf, len, channels, scale_denom, out);
    free(buf);
    return err;
}

/* augment.c — torchvision's PIL-backend transforms in C: PIL's bilinear
 * ImagingResample, ImageEnhance blends, the HSV hue shift, convert("L"),
 * the tensor-path Gaussian blur, solarize, ToTensor/Normalize; plus
 * torchvision's parameter sampling and the method presets. */
#include "augment.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------- PIL ImagingResample (bilinear, 8 bits per channel) ---- */

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear_filter(double x)
{
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* PIL's precompute_coeffs + normalize_coeffs_8bpc. bounds (out_size, 2)
 * holds (first input pixel, count); kk (out_size, ksize) the weights. */
static int resample_coeffs(int in_size, float in0, float in1, int out_size, int **boundsp,
                           int32_t **kkp)
{
    double scale, filterscale, support;
    filterscale = scale = (double)(in1 - in0) / out_size;
    if (filterscale < 1.0) filterscale = 1.0;
    support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *pre = calloc((size_t)out_size * ksize, sizeof *pre);
    int *bounds = calloc((size_t)out_size * 2, sizeof *bounds);
    int32_t *kk = calloc((size_t)out_size * ksize, sizeof *kk);
    if (!pre || !bounds || !kk) {
        free(pre);
        free(bounds);
        free(kk);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = &pre[(size_t)xx * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        bounds[xx * 2] = xmin;
        bounds[xx * 2 + 1] = xmax;
    }
    for (size_t x = 0; x < (size_t)out_size * ksize; x++) {
        if (pre[x] < 0)
            kk[x] = (int32_t)(-0.5 + pre[x] * (1 << PRECISION_BITS));
        else
            kk[x] = (int32_t)(0.5 + pre[x] * (1 << PRECISION_BITS));
    }
    free(pre);
    *boundsp = bounds;
    *kkp = kk;
    return ksize;
}

static inline uint8_t clip8(int32_t in)
{
    if (in >= (1 << PRECISION_BITS << 8)) return 255;
    if (in <= 0) return 0;
    return (uint8_t)(in >> PRECISION_BITS);
}

/* PIL's ImagingResample of the in_h x in_w image at src (row stride
 * `stride` bytes, c channels) over the float box (x0, y0, x1, y1) into out. */
static ct_data_err resample(const uint8_t *src, int in_h, int in_w, size_t stride, int c,
                            const float box[4], int out_h, int out_w, ct_image *out)
{
    ct_data_err err = ct_image_alloc(out, out_h, out_w, c);
    if (err) return err;
    int *bh = NULL, *bv = NULL;
    int32_t *kh = NULL, *kv = NULL;
    uint8_t *tmp = NULL; /* (rows, out_w, c) after the horizontal pass */
    int need_h = out_w != in_w || box[0] != 0 || box[2] != out_w;
    int need_v = out_h != in_h || box[1] != 0 || box[3] != out_h;
    int ksh = resample_coeffs(in_w, box[0], box[2], out_w, &bh, &kh);
    int ksv = resample_coeffs(in_h, box[1], box[3], out_h, &bv, &kv);
    if (!ksh || !ksv) {
        err = ct_data_errorf("out of memory resampling to %dx%d", out_h, out_w);
        goto fail;
    }
    const uint8_t *vsrc = src; /* input of the vertical pass */
    size_t vstride = stride;
    if (need_h) {
        int yfirst = bv[0], ylast = bv[out_h * 2 - 2] + bv[out_h * 2 - 1];
        int rows = ylast - yfirst;
        tmp = malloc((size_t)rows * out_w * c);
        if (!tmp) {
            err = ct_data_errorf("out of memory resampling to %dx%d", out_h, out_w);
            goto fail;
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *row = src + (size_t)(y + yfirst) * stride;
            uint8_t *orow = tmp + (size_t)y * out_w * c;
            for (int xx = 0; xx < out_w; xx++) {
                int xmin = bh[xx * 2], xmax = bh[xx * 2 + 1];
                const int32_t *k = &kh[(size_t)xx * ksh];
                if (c == 3) {
                    int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                    const uint8_t *px = row + (size_t)xmin * 3;
                    for (int x = 0; x < xmax; x++, px += 3) {
                        s0 += px[0] * k[x];
                        s1 += px[1] * k[x];
                        s2 += px[2] * k[x];
                    }
                    orow[xx * 3] = clip8(s0);
                    orow[xx * 3 + 1] = clip8(s1);
                    orow[xx * 3 + 2] = clip8(s2);
                    continue;
                }
                for (int ch = 0; ch < c; ch++) {
                    int32_t ss = 1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < xmax; x++) ss += row[(x + xmin) * c + ch] * k[x];
                    orow[xx * c + ch] = clip8(ss);
                }
            }
        }
        for (int yy = 0; yy < out_h; yy++) bv[yy * 2] -= yfirst;
        vsrc = tmp;
        vstride = (size_t)out_w * c;
    }
    if (need_v) {
        for (int yy = 0; yy < out_h; yy++) {
            int ymin = bv[yy * 2], ymax = bv[yy * 2 + 1];
            const int32_t *k = &kv[(size_t)yy * ksv];
            uint8_t *orow = out->data + (size_t)yy * out_w * c;
            for (int x = 0; x < out_w * c; x++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++) ss += vsrc[(size_t)(y + ymin) * vstride + x] * k[y];
                orow[x] = clip8(ss);
            }
        }
    } else {
        for (int y = 0; y < out_h; y++)
            memcpy(out->data + (size_t)y * out_w * c, vsrc + (size_t)y * vstride, (size_t)out_w * c);
    }
    goto done;
fail:
    ct_image_free(out);
done:
    free(bh);
    free(bv);
    free(kh);
    free(kv);
    free(tmp);
    return err;
}

ct_data_err ct_aug_resized_crop(const ct_image *in, ct_crop_box box, int out_h, int out_w,
                                ct_image *out)
{
    memset(out, 0, sizeof *out);
    if (box.i < 0 || box.j < 0 || box.h <= 0 || box.w <= 0 || box.i + box.h > in->h ||
        box.j + box.w > in->w)
        return ct_data_errorf("crop box (%d, %d, %d, %d) outside a %dx%d image", box.i, box.j,
                              box.h, box.w, in->h, in->w);
    if (out_h <= 0 || out_w <= 0) return ct_data_errorf("resize to %dx%d", out_h, out_w);
    const size_t stride = (size_t)in->w * in->c;
    const uint8_t *src = in->data + (size_t)box.i * stride + (size_t)box.j * in->c; /* crop view */
    const float fbox[4] = {0.0f, 0.0f, (float)box.w, (float)box.h};
    return resample(src, box.h, box.w, stride, in->c, fbox, out_h, out_w, out);
}

ct_data_err ct_aug_resize_box(const ct_image *in, const float box[4], int out_h, int out_w,
                              ct_image *out)
{
    memset(out, 0, sizeof *out);
    if (!(box[0] >= 0 && box[1] >= 0 && box[2] > box[0] && box[3] > box[1] && box[2] <= in->w &&
          box[3] <= in->h))
        return ct_data_errorf("resize box (%g, %g, %g, %g) outside a %dx%d image", box[0], box[1],
                              box[2], box[3], in->h, in->w);
    if (out_h <= 0 || out_w <= 0) return ct_data_errorf("resize to %dx%d", out_h, out_w);
    return resample(in->data, in->h, in->w, (size_t)in->w * in->c, in->c, box, out_h, out_w, out);
}

/* ---------------- pixel ops ---------------- */

void ct_aug_hflip(ct_image *img)
{
    const int c = img->c;
    for (int y = 0; y < img->h; y++) {
        uint8_t *row = img->data + (size_t)y * img->w * c;
        for (int a = 0, b = img->w - 1; a < b; a++, b--)
            for (int ch = 0; ch < c; ch++) {
                uint8_t t = row[a * c + ch];
                row[a * c + ch] = row[b * c + ch];
                row[b * c + ch] = t;
            }
    }
}

/* PIL's ImagingBlend(in1, in2, alpha) for one byte. */
static inline uint8_t blend8(int in1, int in2, float alpha)
{
    if (alpha >= 0 && alpha <= 1.0) return (uint8_t)(in1 + alpha * (in2 - in1));
    float t = (float)(in1 + alpha * (in2 - in1));
    if (t <= 0.0) return 0;
    if (t >= 255.0) return 255;
    return (uint8_t)t;
}

void ct_aug_brightness(ct_image *img, double factor)
{
    float a = (float)factor;
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend8(0, v, a);
    size_t n = (size_t)img->h * img->w * img->c;
    for (size_t i = 0; i < n; i++) img->data[i] = lut[img->data[i]];
}

static uint8_t pixel_l(const ct_image *img, size_t p)
{
    if (img->c == 1) return img->data[p];
    const uint8_t *q = img->data + 3 * p;
    return ct_image_rgb_to_l(q[0], q[1], q[2]);
}

void ct_aug_contrast(ct_image *img, double factor)
{
    float a = (float)factor;
    size_t n = (size_t)img->h * img->w;
    /* ImageStat's mean of the L histogram, rounded as int(mean + 0.5) */
    double sum = 0;
    for (size_t p = 0; p < n; p++) sum += pixel_l(img, p);
    int mean = (int)(sum / (double)n + 0.5);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++) lut[v] = blend8(mean, v, a);
    for (size_t i = 0; i < n * img->c; i++) img->data[i] = lut[img->data[i]];
}

void ct_aug_saturation(ct_image *img, double factor)
{
    if (img->c == 1) return;
    float a = (float)factor;
    size_t n = (size_t)img->h * img->w;
    for (size_t p = 0; p < n; p++) {
        int l = pixel_l(img, p);
        uint8_t *q = img->data + 3 * p;
        for (int ch = 0; ch < 3; ch++) q[ch] = blend8(l, q[ch], a);
    }
}

static inline uint8_t clip8i(int v) { return v <= 0 ? 0 : v >= 255 ? 255 : (uint8_t)v; }

/* round() for x >= 0 without the libm call (halves away from zero). */
static inline int round_pos(double x)
{
    int i = (int)x;
    return x - i >= 0.5 ? i + 1 : i;
}

void ct_aug_hue(ct_image *img, double factor)
{
    if (img->c == 1) return;
    uint8_t shift = (uint8_t)(int)(factor * 255);
    size_t n = (size_t)img->h * img->w;
    for (size_t p = 0; p < n; p++) {
        uint8_t *q = img->data + 3 * p;
        /* rgb2hsv_row (PIL Convert.c) */
        uint8_t r = q[0], g = q[1], b = q[2];
        uint8_t maxc = r > g ? (r > b ? r : b) : (g > b ? g : b);
        uint8_t minc = r < g ? (r < b ? r : b) : (g < b ? g : b);
        uint8_t uh, us, uv = maxc;
        if (minc == maxc) {
            uh = 0;
            us = 0;
        } else {
            float cr = (float)(maxc - minc);
            float s = cr / (float)maxc;
            float rc = ((float)(maxc - r)) / cr;
            float gc = ((float)(maxc - g)) / cr;
            float bc = ((float)(maxc - b)) / cr;
            float h;
            if (r == maxc)
                h = bc - gc;
            else if (g == maxc)
                h = 2.0 + rc - bc;
            else
                h = 4.0 + gc - rc;
            double hh = h / 6.0 + 1.0; /* in (0, 2): x - floor(x) is fmod(x, 1) exactly */
            h = (float)(hh - floor(hh));
            uh = clip8i((int)(h * 255.0));
            us = clip8i((int)(s * 255.0));
        }
        uh = (uint8_t)(uh + shift);
        /* hsv2rgb (PIL Convert.c) */
        if (us == 0) {
            q[0] = q[1] = q[2] = uv;
            continue;
        }
        int i = uh * 6 / 255; /* floor((float)uh * 6.0 / 255.0), exactly */
        float f = (float)uh * 6.0 / 255.0 - (float)i;
        float fs = f * us;
        int pp = round_pos((float)uv * (255.0 - us) / 255.0);
        int qq = round_pos((float)uv * (255.0 - fs) / 255.0);
        int tt = round_pos((float)uv * (255.0 - us + fs) / 255.0);
        uint8_t up = clip8i(pp), uq = clip8i(qq), ut = clip8i(tt), v = uv;
        switch (i % 6) {
        case 0: q[0] = v, q[1] = ut, q[2] = up; break;
        case 1: q[0] = uq, q[1] = v, q[2] = up; break;
        case 2: q[0] = up, q[1] = v, q[2] = ut; break;
        case 3: q[0] = up, q[1] = uq, q[2] = v; break;
        case 4: q[0] = ut, q[1] = up, q[2] = v; break;
        default: q[0] = v, q[1] = up, q[2] = uq; break;
        }
    }
}

void ct_aug_grayscale(ct_image *img)
{
    if (img->c == 1) return;
    size_t n = (size_t)img->h * img->w;
    for (size_t p = 0; p < n; p++) {
        uint8_t *q = img->data + 3 * p;
        q[0] = q[1] = q[2] = ct_image_rgb_to_l(q[0], q[1], q[2]);
    }
}

/* Reflect an index into [0, n) without repeating the edge (torch "reflect"),
 * folding as often as needed for tiny images. */
static int reflect_index(int x, int n)
{
    if (n == 1) return 0;
    int period = 2 * (n - 1);
    x %= period;
    if (x < 0) x += period;
    return x < n ? x : period - x;
}

ct_data_err ct_aug_gaussian_blur(ct_image *img, int ksize, double sigma)
{
    if (ksize <= 0 || ksize % 2 == 0) return ct_data_errorf("blur kernel size %d is not odd and positive", ksize);
    if (!(sigma > 0)) return ct_data_errorf("blur sigma %g is not positive", sigma);
    const int h = img->h, w = img->w, c = img->c, half = ksize / 2;
    const size_t wc = (size_t)w * c;
    float *k = malloc(sizeof(float) * ksize);
    float *tmp = malloc(sizeof(float) * (size_t)h * wc);    /* (h, w, c) after the row pass */
    float *pad = malloc(sizeof(float) * (w + 2 * half) * c); /* (w + 2 half, c) one padded row */
    float *acc = malloc(sizeof(float) * wc);                 /* (w, c) */
    if (!k || !tmp || !pad || !acc) {
        free(k);
        free(tmp);
        free(pad);
        free(acc);
        return ct_data_errorf("out of memory blurring a %dx%d image", h, w);
    }
    /* torchvision _get_gaussian_kernel1d in float32 */
    float ksum = 0;
    float khalf = (float)(ksize - 1) * 0.5f;
    float step = ksize > 1 ? (2 * khalf) / (float)(ksize - 1) : 0;
    for (int t = 0; t < ksize; t++) {
        float x = -khalf + step * t;
        float z = x / (float)sigma;
        k[t] = expf(-0.5f * z * z);
        ksum += k[t];
    }
    for (int t = 0; t < ksize; t++) k[t] /= ksum;
    /* rows: each output sums k[0] * v[0] + k[1] * v[1] + ... in that order;
     * the loops run over contiguous x so the compiler can vectorise them */
    for (int y = 0; y < h; y++) {
        const uint8_t *row = img->data + (size_t)y * wc;
        for (int x = -half; x < w + half; x++) {
            const uint8_t *px = row + (size_t)reflect_index(x, w) * c;
            for (int ch = 0; ch < c; ch++) pad[(x + half) * c + ch] = px[ch];
        }
        float *orow = tmp + (size_t)y * wc;
        for (size_t q = 0; q < wc; q++) orow[q] = 0;
        for (int t = 0; t < ksize; t++) {
            const float kt = k[t], *src = pad + (size_t)t * c;
            for (size_t q = 0; q < wc; q++) orow[q] += kt * src[q];
        }
    }
    for (int y = 0; y < h; y++) {
        for (size_t q = 0; q < wc; q++) acc[q] = 0;
        for (int t = 0; t < ksize; t++) {
            const float kt = k[t], *src = tmp + (size_t)reflect_index(y + t - half, h) * wc;
            for (size_t q = 0; q < wc; q++) acc[q] += kt * src[q];
        }
        uint8_t *orow = img->data + (size_t)y * wc;
        for (size_t q = 0; q < wc; q++) {
            float r = nearbyintf(acc[q]);
            orow[q] = r <= 0 ? 0 : r >= 255 ? 255 : (uint8_t)r;
        }
    }
    free(k);
    free(tmp);
    free(pad);
    free(acc);
    return NULL;
}

void ct_aug_solarize(ct_image *img, int threshold)
{
    size_t n = (size_t)img->h * img->w * img->c;
    for (size_t i = 0; i < n; i++)
        if (img->data[i] >= threshold) img->data[i] = (uint8_t)(255 - img->data[i]);
}

void ct_aug_to_tensor(const ct_image *img, const float *mean, const float *std, float *out)
{
    const int c = img->c;
    const size_t hw = (size_t)img->h * img->w;
    for (int ch = 0; ch < c; ch++) {
        float m = mean ? mean[ch] : 0.0f, s = std ? std[ch] : 1.0f;
        float *o = out + ch * hw;
        for (size_t p = 0; p < hw; p++) o[p] = ((float)img->data[p * c + ch] / 255.0f - m) / s;
    }
}

/* ---------------- sampling ---------------- */

ct_crop_box ct_aug_crop_params(ct_rng *r, int img_h, int img_w, const double scale[2],
                               const double ratio[2])
{
    double area = (double)img_h * img_w;
    double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * ct_rng_uniform(r, scale[0], scale[1]);
        double aspect = exp(ct_rng_uniform(r, lr0, lr1));
        int w = (int)nearbyint(sqrt(target_area * aspect));
        int h = (int)nearbyint(sqrt(target_area / aspect));
        if (0 < w && w <= img_w && 0 < h && h <= img_h) {
            int i = (int)ct_rng_randint(r, 0, img_h - h + 1);
            int j = (int)ct_rng_randint(r, 0, img_w - w + 1);
            return (ct_crop_box){i, j, h, w};
        }
    }
    double in_ratio = (double)img_w / (double)img_h;
    double rmin = fmin(ratio[0], ratio[1]), rmax = fmax(ratio[0], ratio[1]);
    int w, h;
    if (in_ratio < rmin) {
        w = img_w;
        h = (int)nearbyint(w / rmin);
    } else if (in_ratio > rmax) {
        h = img_h;
        w = (int)nearbyint(h * rmax);
    } else {
        w = img_w;
        h = img_h;
    }
    return (ct_crop_box){(img_h - h) / 2, (img_w - w) / 2, h, w};
}

/* ---------------- presets and pipelines ---------------- */

int ct_aug_view_kernel(const ct_aug_view *v)
{
    if (v->blur_kernel > 0) return v->blur_kernel | 1;
    int size = v->size_h > v->size_w ? v->size_h : v->size_w;
    int k = (int)(0.1 * size);
    return k % 2 == 0 ? k + 1 : k;
}

ct_data_err ct_aug_preset(const char *method_name, int view, int size, ct_aug_view *out)
{
    /* "moco-v2", "MoCo_v2" and "mocov2" name the same preset */
    char method[32];
    size_t m = 0;
    for (const char *p = method_name; *p && m + 1 < sizeof method; p++)
        if (*p != '-' && *p != '_' && *p != ' ') method[m++] = (char)tolower((unsigned char)*p);
    method[m] = 0;
    static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
    static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};
    ct_aug_view v;
    memset(&v, 0, sizeof v);
    if (size <= 0) return ct_data_errorf("augmentation size %d is not positive", size);
    v.size_h = v.size_w = size;
    v.scale[0] = 0.08, v.scale[1] = 1.0;
    v.ratio[0] = 3.0 / 4.0, v.ratio[1] = 4.0 / 3.0;
    v.sigma[0] = 0.1, v.sigma[1] = 2.0;
    v.solarize_threshold = 128;
    memcpy(v.mean, imagenet_mean, sizeof v.mean);
    memcpy(v.std, imagenet_std, sizeof v.std);
#define OPS(...)                                                                                   \
    do {                                                                                           \
        ct_aug_op ops_[] = {__VA_ARGS__};                                                          \
        v.n_ops = (int)(sizeof ops_ / sizeof ops_[0]);                                             \
        memcpy(v.ops, ops_, sizeof ops_);                                                          \
    } while (0)
    if (!strcmp(method, "mocov1")) {
        /* RRC(0.2, 1), RandomGrayscale(0.2), ColorJitter(0.4 x4), flip */
        v.scale[0] = 0.2;
        v.gray_p = 0.2;
        v.jitter_p = 1.0, v.brightness = v.contrast = v.saturation = v.hue = 0.4;
        v.flip_p = 0.5;
        OPS(CT_AUG_OP_GRAY, CT_AUG_OP_JITTER, CT_AUG_OP_FLIP);
    } else if (!strcmp(method, "mocov2") || !strcmp(method, "simsiam")) {
        /* RRC(0.2, 1), Apply(CJ(.4,.4,.4,.1), .8), Gray(.2), Apply(Blur, .5), flip */
        v.scale[0] = 0.2;
        v.jitter_p = 0.8, v.brightness = v.contrast = v.saturation = 0.4, v.hue = 0.1;
        v.gray_p = 0.2;
        v.blur_p = 0.5;
        v.flip_p = 0.5;
        OPS(CT_AUG_OP_JITTER, CT_AUG_OP_GRAY, CT_AUG_OP_BLUR, CT_AUG_OP_FLIP);
    } else if (!strcmp(method, "simclr")) {
        /* RRC(0.08, 1), flip, Apply(CJ(.8,.8,.8,.2), .8), Gray(.2), Apply(Blur, .5) */
        v.flip_p = 0.5;
        v.jitter_p = 0.8, v.brightness = v.contrast = v.saturation = 0.8, v.hue = 0.2;
        v.gray_p = 0.2;
        v.blur_p = 0.5;
        OPS(CT_AUG_OP_FLIP, CT_AUG_OP_JITTER, CT_AUG_OP_GRAY, CT_AUG_OP_BLUR);
    } else if (!strcmp(method, "byol")) {
        /* RRC(0.08, 1), flip, Apply(CJ(.4,.4,.2,.1), .8), Gray(.2), Blur(1.0 / 0.1),
         * Solarize(0 / 0.2) */
        v.flip_p = 0.5;
        v.jitter_p = 0.8, v.brightness = v.contrast = 0.4, v.saturation = 0.2, v.hue = 0.1;
        v.gray_p = 0.2;
        v.blur_p = view == 0 ? 1.0 : 0.1;
        v.solarize_p = view == 0 ? 0.0 : 0.2;
        OPS(CT_AUG_OP_FLIP, CT_AUG_OP_JITTER, CT_AUG_OP_GRAY, CT_AUG_OP_BLUR, CT_AUG_OP_SOLARIZE);
    } else if (!strcmp(method, "supcon")) {
        /* RRC(0.2, 1), flip, Apply(CJ(.4,.4,.4,.1), .8), Gray(.2) */
        v.scale[0] = 0.2;
        v.flip_p = 0.5;
        v.jitter_p = 0.8, v.brightness = v.contrast = v.saturation = 0.4, v.hue = 0.1;
        v.gray_p = 0.2;
        OPS(CT_AUG_OP_FLIP, CT_AUG_OP_JITTER, CT_AUG_OP_GRAY);
    } else if (!strcmp(method, "eval")) {
        v.resize = (int)(size * 256.0 / 224.0 + 0.5);
        v.n_ops = 0;
    } else if (!strcmp(method, "none")) {
        v.scale[0] = 1.0;
        v.ratio[0] = v.ratio[1] = 1.0;
        v.n_ops = 0;
    } else {
        return ct_data_errorf("unknown augmentation preset '%s' (moco-v1, moco-v2, simsiam, simclr, "
                              "byol, supcon, none, eval)", method_name);
    }
#undef OPS
    *out = v;
    return NULL;
}

void ct_aug_sample_crop(const ct_aug_view *v, ct_rng *r, int img_h, int img_w, ct_aug_draw *d)
{
    memset(d, 0, sizeof *d);
    d->b = d->c = d->s = 1.0;
    for (int t = 0; t < 4; t++) d->order[t] = t;
    d->src_h = img_h;
    d->src_w = img_w;
    if (v->resize > 0) {
        /* torchvision _compute_resized_output_size, then center_crop's offsets */
        int shortside = img_w <= img_h ? img_w : img_h, longside = img_w <= img_h ? img_h : img_w;
        int new_long = (int)((double)v->resize * longside / shortside);
        d->resize_w = img_w <= img_h ? v->resize : new_long;
        d->resize_h = img_w <= img_h ? new_long : v->resize;
        d->crop = (ct_crop_box){(int)nearbyint((d->resize_h - v->size_h) / 2.0),
                                (int)nearbyint((d->resize_w - v->size_w) / 2.0), v->size_h, v->size_w};
        return;
    }
    d->crop = ct_aug_crop_params(r, img_h, img_w, v->scale, v->ratio);
}

int ct_aug_draw_scale(const ct_aug_view *v, const ct_aug_draw *d, int img_h, int img_w)
{
    if (v->resize > 0) {
        /* the whole image is resized: keep it at least as large as the target */
        return ct_image_pick_scale(img_w, img_h, d->resize_w, d->resize_h);
    }
    return ct_image_pick_scale(d->crop.w, d->crop.h, v->size_w, v->size_h);
}

static int coin(ct_rng *r, double p) { return p > 0 && ct_rng_uniform01(r) < p; }

void ct_aug_sample_ops(const ct_aug_view *v, ct_rng *r, ct_aug_draw *d)
{
    for (int t = 0; t < v->n_ops; t++) {
        switch (v->ops[t]) {
        case CT_AUG_OP_FLIP: d->flip = coin(r, v->flip_p); break;
        case CT_AUG_OP_GRAY: d->gray = coin(r, v->gray_p); break;
        case CT_AUG_OP_SOLARIZE: d->solarize = coin(r, v->solarize_p); break;
        case CT_AUG_OP_BLUR:
            d->blur = coin(r, v->blur_p);
            if (d->blur) d->sigma = ct_rng_uniform(r, v->sigma[0], v->sigma[1]);
            break;
        case CT_AUG_OP_JITTER:
            d->jitter = coin(r, v->jitter_p);
            if (!d->jitter) break;
            {
                int64_t perm[4];
                ct_rng_permutation(r, perm, 4);
                for (int q = 0; q < 4; q++) d->order[q] = (int)perm[q];
            }
            if (v->brightness > 0) d->b = ct_rng_uniform(r, fmax(0, 1 - v->brightness), 1 + v->brightness);
            if (v->contrast > 0) d->c = ct_rng_uniform(r, fmax(0, 1 - v->contrast), 1 + v->contrast);
            if (v->saturation > 0) d->s = ct_rng_uniform(r, fmax(0, 1 - v->saturation), 1 + v->saturation);
            if (v->hue > 0) d->h = ct_rng_uniform(r, -v->hue, v->hue);
            break;
        }
    }
}

ct_data_err ct_aug_apply(const ct_aug_view *v, const ct_aug_draw *d, const ct_image *img,
                         int scale_denom, float *out)
{
    ct_crop_box box = d->crop;
    ct_image im;
    ct_data_err err;
    if (v->resize > 0) {
        /* Resize (from the whole, possibly DCT-scaled, image), then CenterCrop */
        ct_image big;
        if (d->crop.i < 0 || d->crop.j < 0)
            return ct_data_errorf("Resize(%d) gives %dx%d, smaller than the %dx%d crop", v->resize,
                                  d->resize_h, d->resize_w, v->size_h, v->size_w);
        float sd = (float)(scale_denom > 1 ? scale_denom : 1);
        float fb[4] = {0, 0, (float)img->w, (float)img->h};
        if (scale_denom > 1 && d->src_w > 0) {
            /* the full-size image maps to (0, 0, W / d, H / d) of the scaled one */
            if (d->src_w / sd < fb[2]) fb[2] = d->src_w / sd;
            if (d->src_h / sd < fb[3]) fb[3] = d->src_h / sd;
        }
        if ((err = ct_aug_resize_box(img, fb, d->resize_h, d->resize_w, &big))) return err;
        err = ct_aug_resized_crop(&big, d->crop, v->size_h, v->size_w, &im);
        ct_image_free(&big);
    } else if (scale_denom > 1) {
        /* the full-size crop on the DCT-scaled image, as a float box */
        float sd = (float)scale_denom;
        float fb[4] = {box.j / sd, box.i / sd, (box.j + box.w) / sd, (box.i + box.h) / sd};
        if (fb[2] > img->w) fb[2] = (float)img->w;
        if (fb[3] > img->h) fb[3] = (float)img->h;
        err = ct_aug_resize_box(img, fb, v->size_h, v->size_w, &im);
    } else {
        err = ct_aug_resized_crop(img, box, v->size_h, v->size_w, &im);
    }
    if (err) return err;
    for (int t = 0; t < v->n_ops; t++) {
        switch (v->ops[t]) {
        case CT_AUG_OP_FLIP:
            if (d->flip) ct_aug_hflip(&im);
            break;
        case CT_AUG_OP_GRAY:
            if (d->gray) ct_aug_grayscale(&im);
            break;
        case CT_AUG_OP_SOLARIZE:
            if (d->solarize) ct_aug_solarize(&im, v->solarize_threshold);
            break;
        case CT_AUG_OP_BLUR:
            if (d->blur && (err = ct_aug_gaussian_blur(&im, ct_aug_view_kernel(v), d->sigma))) goto fail;
            break;
        case CT_AUG_OP_JITTER:
            if (!d->jitter) break;
            for (int q = 0; q < 4; q++) {
                switch (d->order[q]) {
                case 0: if (v->brightness > 0) ct_aug_brightness(&im, d->b); break;
                case 1: if (v->contrast > 0) ct_aug_contrast(&im, d->c); break;
                case 2: if (v->saturation > 0) ct_aug_saturation(&im, d->s); break;
                default: if (v->hue > 0) ct_aug_hue(&im, d->h); break;
                }
            }
            break;
        }
    }
    ct_aug_to_tensor(&im, v->mean, v->std, out);
fail:
    ct_image_free(&im);
    return err;
}

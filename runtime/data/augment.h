/* augment.h — image augmentations with torchvision's semantics (its PIL
 * backend, bit-compatible where PIL is integer): explicit-parameter ops on
 * 8-bit HWC images, torchvision's parameter sampling on contra's streams,
 * and per-view pipelines built from method presets. */
#ifndef CT_DATA_AUGMENT_H
#define CT_DATA_AUGMENT_H

#include "data.h"
#include "image.h"

/* A crop in image coordinates: top row i, left column j, height, width. */
typedef struct {
    int i, j, h, w;
} ct_crop_box;

/* ---- explicit-parameter ops (torchvision.transforms.functional on PIL) ---- */

/* F.resized_crop(img, i, j, h, w, (out_h, out_w), BILINEAR): PIL's crop then
 * ImagingResample with the bilinear filter (support scaled by the downscale
 * factor, 22-bit fixed-point coefficients, horizontal pass then vertical,
 * rounded to 8 bits in between). The box must lie inside the image. */
ct_data_err ct_aug_resized_crop(const ct_image *in, ct_crop_box box, int out_h, int out_w,
                                ct_image *out);
/* Image.resize((out_w, out_h), BILINEAR, box) with a float box (x0, y0, x1,
 * y1): the same resampler, with the filter clamped at the image's edges. */
ct_data_err ct_aug_resize_box(const ct_image *in, const float box[4], int out_h, int out_w,
                              ct_image *out);
void ct_aug_hflip(ct_image *img);
/* ImageEnhance.Brightness / Contrast / Color(=saturation): Image.blend. */
void ct_aug_brightness(ct_image *img, double factor);
void ct_aug_contrast(ct_image *img, double factor);
void ct_aug_saturation(ct_image *img, double factor);
/* F_pil.adjust_hue: HSV round trip with the hue byte shifted by
 * uint8(factor * 255), factor in [-0.5, 0.5]. */
void ct_aug_hue(ct_image *img, double factor);
/* convert("L") replicated over the channels (num_output_channels = c). */
void ct_aug_grayscale(ct_image *img);
/* F.gaussian_blur(img, [k, k], [sigma, sigma]): float32 kernel
 * exp(-x^2 / 2 sigma^2) normalised, reflect padding, rounded back to 8 bits. */
ct_data_err ct_aug_gaussian_blur(ct_image *img, int ksize, double sigma);
/* ImageOps.solarize: x < threshold ? x : 255 - x. */
void ct_aug_solarize(ct_image *img, int threshold);
/* ToTensor + Normalize into out (c, h, w): (x / 255 - mean[c]) / std[c]. */
void ct_aug_to_tensor(const ct_image *img, const float *mean, const float *std,
                      float *out /* (c, h, w) */);

/* ---- sampling (torchvision 0.14's get_params on contra's streams) ---- */

/* RandomResizedCrop.get_params for an img_h x img_w image: 10 attempts of
 * (area, log-ratio) sampling, then the central-crop fallback. Draws per
 * attempt: u(scale), u(log ratio), then randint(i), randint(j) on success. */
ct_crop_box ct_aug_crop_params(ct_rng *r, int img_h, int img_w, const double scale[2],
                               const double ratio[2]);

/* ---- per-view pipelines ---- */

typedef enum {
    CT_AUG_OP_FLIP,
    CT_AUG_OP_JITTER,
    CT_AUG_OP_GRAY,
    CT_AUG_OP_BLUR,
    CT_AUG_OP_SOLARIZE,
} ct_aug_op;

#define CT_AUG_MAX_OPS 8

/* One view's transform: RandomResizedCrop first, then ops[] in order, then
 * ToTensor + Normalize. Probabilities of 0 switch an op off. */
typedef struct {
    int size_h, size_w;         /* RandomResizedCrop(size), or CenterCrop(size) */
    int resize;                 /* > 0: Resize(resize) (shorter side) + CenterCrop(size),
                                 * deterministic, instead of RandomResizedCrop */
    double scale[2], ratio[2];  /* RandomResizedCrop(scale, ratio) */
    double flip_p;              /* RandomHorizontalFlip(p) */
    double jitter_p;            /* RandomApply([ColorJitter(...)], p) */
    double brightness, contrast, saturation, hue;
    double gray_p;              /* RandomGrayscale(p) */
    double blur_p;              /* RandomApply([GaussianBlur(k, sigma)], p) */
    double sigma[2];
    int blur_kernel;            /* odd; 0 = about 10% of the size, odd */
    double solarize_p;          /* RandomSolarize(threshold, p) */
    int solarize_threshold;
    float mean[3], std[3];      /* Normalize(mean, std) */
    int n_ops;
    ct_aug_op ops[CT_AUG_MAX_OPS];
} ct_aug_view;

/* Everything one view draws, so it can be replayed or overridden. */
typedef struct {
    ct_crop_box crop;  /* in the coordinates of the full-size image; with
                        * v->resize, the centre crop in the resized image */
    int resize_h, resize_w; /* v->resize > 0: size after Resize */
    int src_h, src_w;       /* the full-size image the draw was made for */
    int flip;
    int jitter;
    int order[4];      /* 0 brightness, 1 contrast, 2 saturation, 3 hue */
    double b, c, s, h; /* factors (1, 1, 1, 0 when that jitter is off) */
    int gray;
    int blur;
    double sigma;
    int solarize;
} ct_aug_draw;

/* Presets (case, '-' and '_' ignored: "moco-v2" = "mocov2"): "mocov1",
 * "mocov2", "simsiam", "simclr", "byol" (view 0 and 1
 * differ), "supcon"; "none" (RandomResizedCrop with scale (1, 1) and ratio
 * (1, 1): the central square, resized); "eval" (Resize(size * 256 / 224)
 * + CenterCrop(size), as MoCo's linear evaluation). All normalise with the
 * ImageNet mean and std. */
ct_data_err ct_aug_preset(const char *method, int view, int size, ct_aug_view *out);
int ct_aug_view_kernel(const ct_aug_view *v);

/* The documented draw order on a view's stream: the crop (as
 * ct_aug_crop_params), then for each op in v->ops order one coin
 * u < p and, only when it comes up, that op's parameters: jitter draws a
 * permutation of 4 then the brightness, contrast, saturation and hue
 * factors of those that are on; blur draws sigma. */
void ct_aug_sample_crop(const ct_aug_view *v, ct_rng *r, int img_h, int img_w, ct_aug_draw *d);
/* The JPEG scale denominator (1, 2, 4, 8) a view's draw allows for an
 * img_h x img_w image: the crop (or the Resize target) stays >= the output. */
int ct_aug_draw_scale(const ct_aug_view *v, const ct_aug_draw *d, int img_h, int img_w);
void ct_aug_sample_ops(const ct_aug_view *v, ct_rng *r, ct_aug_draw *d);

/* Apply one view to img (decoded at 1/scale_denom of the size the crop was
 * drawn for) into out (c, size_h, size_w). */
ct_data_err ct_aug_apply(const ct_aug_view *v, const ct_aug_draw *d, const ct_image *img,
                         int scale_denom, float *out /* (c, size_h, size_w) */);

#endif

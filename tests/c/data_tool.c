/* data_tool.c — a command-line window on runtime/data for the Python tests
 * and bench/data.py: decode, apply transforms with explicit parameters,
 * draw crop parameters, list folders and IDX files, run the loader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "augment.h"
#include "folder.h"
#include "idx.h"
#include "image.h"
#include "loader.h"

static int fail_msg(ct_data_err err)
{
    fprintf(stderr, "data_tool: %s\n", err);
    ct_data_err_free(err);
    return 1;
}

/* .npy (version 1.0) with shape dims[0..nd) and descr "|u1" or "<f4". */
static ct_data_err npy_write(const char *path, const char *descr, const int64_t *dims, int nd,
                             const void *data, size_t elem)
{
    char shape[128] = "";
    size_t total = 1;
    for (int d = 0; d < nd; d++) {
        char t[32];
        snprintf(t, sizeof t, "%lld,%s", (long long)dims[d], d + 1 < nd ? " " : "");
        strcat(shape, t);
        total *= (size_t)dims[d];
    }
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    int full = 10 + n + 1;
    int pad = (64 - full % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return ct_data_errorf("%s: cannot write", path);
    unsigned short hlen = (unsigned short)(n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fputc(hlen & 0xff, f);
    fputc(hlen >> 8, f);
    fwrite(hdr, 1, (size_t)n, f);
    for (int i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    size_t w = fwrite(data, elem, total, f);
    if (fclose(f) != 0 || w != total) return ct_data_errorf("%s: write failed", path);
    return NULL;
}

/* uint8 .npy of shape (h, w) or (h, w, c) into an image. */
static ct_data_err npy_read_image(const char *path, ct_image *img)
{
    uint8_t *buf;
    size_t len;
    ct_data_err err = ct_image_file_read(path, &buf, &len);
    if (err) return err;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return ct_data_errorf("%s: not a .npy file", path);
    }
    size_t hlen = buf[8] | (buf[9] << 8);
    char hdr[512] = "";
    memcpy(hdr, buf + 10, hlen < 511 ? hlen : 511);
    long h = 0, w = 0, c = 1;
    char *sh = strstr(hdr, "'shape': (");
    if (!strstr(hdr, "|u1") || !sh || sscanf(sh + 10, "%ld, %ld, %ld", &h, &w, &c) < 2) {
        free(buf);
        return ct_data_errorf("%s: expected a uint8 (h, w[, c]) array", path);
    }
    if ((err = ct_image_alloc(img, (int)h, (int)w, (int)c))) {
        free(buf);
        return err;
    }
    if (10 + hlen + (size_t)h * w * c > len) {
        free(buf);
        ct_image_free(img);
        return ct_data_errorf("%s: truncated", path);
    }
    memcpy(img->data, buf + 10 + hlen, (size_t)h * w * c);
    free(buf);
    return NULL;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int cmd_decode(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: data_tool decode IN OUT.npy [--channels N] [--scale D]\n"), 2;
    int channels = 0, scale = 1;
    for (int a = 2; a + 1 < argc; a += 2) {
        if (!strcmp(argv[a], "--channels")) channels = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--scale")) scale = atoi(argv[a + 1]);
    }
    ct_image img;
    ct_data_err err = ct_image_load(argv[0], channels, scale, &img);
    if (err) return fail_msg(err);
    int64_t dims[3] = {img.h, img.w, img.c};
    err = npy_write(argv[1], "|u1", dims, 3, img.data, 1);
    ct_image_free(&img);
    return err ? fail_msg(err) : 0;
}

static int cmd_apply(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: data_tool apply IN OUT.npy [--channels N] OP...\n"
                        "  ops: crop=i,j,h,w,oh,ow resize_box=x0,y0,x1,y1,oh,ow flip brightness=f contrast=f saturation=f hue=f\n"
                        "       gray blur=k,sigma solarize=t tensor=m0,m1,m2,s0,s1,s2 (last)\n");
        return 2;
    }
    ct_image img = {0};
    ct_data_err err = NULL;
    float *tensor = NULL;
    int a = 2, channels = 0;
    if (a + 1 < argc && !strcmp(argv[a], "--channels")) channels = atoi(argv[a + 1]), a += 2;
    if (ends_with(argv[0], ".npy")) err = npy_read_image(argv[0], &img);
    else err = ct_image_load(argv[0], channels, 1, &img);
    if (err) return fail_msg(err);
    for (; a < argc && !err; a++) {
        const char *op = argv[a];
        double p[6];
        if (sscanf(op, "crop=%lf,%lf,%lf,%lf,%lf,%lf", &p[0], &p[1], &p[2], &p[3], &p[4], &p[5]) == 6) {
            ct_image out;
            err = ct_aug_resized_crop(&img, (ct_crop_box){(int)p[0], (int)p[1], (int)p[2], (int)p[3]},
                                      (int)p[4], (int)p[5], &out);
            if (!err) ct_image_free(&img), img = out;
        } else if (sscanf(op, "resize_box=%lf,%lf,%lf,%lf,%lf,%lf", &p[0], &p[1], &p[2], &p[3], &p[4], &p[5]) == 6) {
            ct_image out;
            float box[4] = {(float)p[0], (float)p[1], (float)p[2], (float)p[3]};
            err = ct_aug_resize_box(&img, box, (int)p[4], (int)p[5], &out);
            if (!err) ct_image_free(&img), img = out;
        } else if (!strcmp(op, "flip")) {
            ct_aug_hflip(&img);
        } else if (sscanf(op, "brightness=%lf", &p[0]) == 1) {
            ct_aug_brightness(&img, p[0]);
        } else if (sscanf(op, "contrast=%lf", &p[0]) == 1) {
            ct_aug_contrast(&img, p[0]);
        } else if (sscanf(op, "saturation=%lf", &p[0]) == 1) {
            ct_aug_saturation(&img, p[0]);
        } else if (sscanf(op, "hue=%lf", &p[0]) == 1) {
            ct_aug_hue(&img, p[0]);
        } else if (!strcmp(op, "gray")) {
            ct_aug_grayscale(&img);
        } else if (sscanf(op, "blur=%lf,%lf", &p[0], &p[1]) == 2) {
            err = ct_aug_gaussian_blur(&img, (int)p[0], p[1]);
        } else if (sscanf(op, "solarize=%lf", &p[0]) == 1) {
            ct_aug_solarize(&img, (int)p[0]);
        } else if (sscanf(op, "tensor=%lf,%lf,%lf,%lf,%lf,%lf", &p[0], &p[1], &p[2], &p[3], &p[4], &p[5]) == 6) {
            float mean[3] = {(float)p[0], (float)p[1], (float)p[2]}, std[3] = {(float)p[3], (float)p[4], (float)p[5]};
            tensor = malloc(sizeof(float) * (size_t)img.h * img.w * img.c);
            if (!tensor) err = ct_data_errorf("out of memory");
            else ct_aug_to_tensor(&img, mean, std, tensor);
            if (a + 1 != argc) err = ct_data_errorf("tensor= must be the last op");
        } else {
            err = ct_data_errorf("unknown op '%s'", op);
        }
    }
    if (!err) {
        if (tensor) {
            int64_t dims[3] = {img.c, img.h, img.w};
            err = npy_write(argv[1], "<f4", dims, 3, tensor, 4);
        } else {
            int64_t dims[3] = {img.h, img.w, img.c};
            err = npy_write(argv[1], "|u1", dims, 3, img.data, 1);
        }
    }
    free(tensor);
    ct_image_free(&img);
    return err ? fail_msg(err) : 0;
}

static int cmd_crop_params(int argc, char **argv)
{
    if (argc < 8) return fprintf(stderr, "usage: data_tool crop-params H W N SEED s0 s1 r0 r1\n"), 2;
    int h = atoi(argv[0]), w = atoi(argv[1]);
    long n = atol(argv[2]);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    double scale[2] = {atof(argv[4]), atof(argv[5])}, ratio[2] = {atof(argv[6]), atof(argv[7])};
    for (long k = 0; k < n; k++) {
        ct_rng r = ct_rng_stream(seed, 0, (uint64_t)k, 0);
        ct_crop_box b = ct_aug_crop_params(&r, h, w, scale, ratio);
        printf("%d %d %d %d\n", b.i, b.j, b.h, b.w);
    }
    return 0;
}

static int cmd_idx(int argc, char **argv)
{
    if (argc < 2) return fprintf(stderr, "usage: data_tool idx IMAGES LABELS\n"), 2;
    ct_idx im, lb;
    ct_data_err err = ct_idx_read_pair(argv[0], argv[1], 256, &im, &lb);
    if (err) return fail_msg(err);
    unsigned long long sum = 0;
    for (size_t i = 0; i < (size_t)im.n * im.h * im.w; i++) sum += im.data[i];
    long hist[10] = {0};
    for (int64_t i = 0; i < lb.n; i++)
        if (lb.data[i] < 10) hist[lb.data[i]]++;
    printf("n %lld h %d w %d sum %llu first_label %d\nhist", (long long)im.n, im.h, im.w, sum, lb.data[0]);
    for (int k = 0; k < 10; k++) printf(" %ld", hist[k]);
    printf("\n");
    ct_idx_free(&im);
    ct_idx_free(&lb);
    return 0;
}

static int cmd_folder(int argc, char **argv)
{
    if (argc < 1) return fprintf(stderr, "usage: data_tool folder DIR [auto|classes|flat]\n"), 2;
    ct_folder_mode mode = CT_FOLDER_AUTO;
    if (argc > 1 && !strcmp(argv[1], "classes")) mode = CT_FOLDER_CLASSES;
    if (argc > 1 && !strcmp(argv[1], "flat")) mode = CT_FOLDER_FLAT;
    ct_folder f;
    ct_data_err err = ct_folder_open(argv[0], mode, &f);
    if (err) return fail_msg(err);
    printf("classes %d\n", f.n_classes);
    for (int c = 0; c < f.n_classes; c++) printf("class %s\n", f.classes[c]);
    for (int64_t i = 0; i < f.n; i++) printf("%lld\t%s\n", (long long)f.labels[i], f.paths[i]);
    ct_folder_free(&f);
    return 0;
}

static void print_draw(const ct_aug_draw *d)
{
    printf("crop %d %d %d %d flip %d jitter %d order %d %d %d %d b %.17g c %.17g s %.17g h %.17g "
           "gray %d blur %d sigma %.17g solarize %d\n",
           d->crop.i, d->crop.j, d->crop.h, d->crop.w, d->flip, d->jitter, d->order[0], d->order[1],
           d->order[2], d->order[3], d->b, d->c, d->s, d->h, d->gray, d->blur, d->sigma, d->solarize);
}

/* data_tool view IN OUT.npy PRESET VIEW SIZE SEED INDEX: one view of a
 * preset on a full-size decode, its draws printed, the tensor saved. */
static int cmd_view(int argc, char **argv)
{
    if (argc < 7) return fprintf(stderr, "usage: data_tool view IN OUT.npy PRESET VIEW SIZE SEED INDEX\n"), 2;
    ct_aug_view v;
    ct_data_err err = ct_aug_preset(argv[2], atoi(argv[3]), atoi(argv[4]), &v);
    if (err) return fail_msg(err);
    ct_image img;
    if ((err = ct_image_load(argv[0], 3, 1, &img))) return fail_msg(err);
    ct_rng r = ct_rng_stream(strtoull(argv[5], NULL, 10), 0, strtoull(argv[6], NULL, 10), (uint64_t)atoi(argv[3]));
    ct_aug_draw d;
    ct_aug_sample_crop(&v, &r, img.h, img.w, &d);
    ct_aug_sample_ops(&v, &r, &d);
    print_draw(&d);
    float *t = malloc(sizeof(float) * 3 * v.size_h * v.size_w);
    err = ct_aug_apply(&v, &d, &img, 1, t);
    if (!err) {
        int64_t dims[3] = {3, v.size_h, v.size_w};
        err = npy_write(argv[1], "<f4", dims, 3, t, 4);
    }
    free(t);
    ct_image_free(&img);
    return err ? fail_msg(err) : 0;
}

/* data_tool draws PRESET VIEW SIZE SEED N H W: the draws of N samples. */
static int cmd_draws(int argc, char **argv)
{
    if (argc < 7) return fprintf(stderr, "usage: data_tool draws PRESET VIEW SIZE SEED N H W\n"), 2;
    ct_aug_view v;
    ct_data_err err = ct_aug_preset(argv[0], atoi(argv[1]), atoi(argv[2]), &v);
    if (err) return fail_msg(err);
    long n = atol(argv[4]);
    for (long k = 0; k < n; k++) {
        ct_rng r = ct_rng_stream(strtoull(argv[3], NULL, 10), 0, (uint64_t)k, (uint64_t)atoi(argv[1]));
        ct_aug_draw d;
        ct_aug_sample_crop(&v, &r, atoi(argv[5]), atoi(argv[6]), &d);
        ct_aug_sample_ops(&v, &r, &d);
        print_draw(&d);
    }
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmd_load(int argc, char **argv)
{
    const char *folder = NULL, *idx_img = NULL, *idx_lbl = NULL, *out = NULL, *preset = "mocov2";
    const char *mode_s = "auto";
    int views = 2, size = 224, batch = 8, workers = 1, epochs = 1, shuffle = 1, drop_last = 1;
    int channels = 3, scaled = 1, prefetch = 3;
    long limit = 0;
    uint64_t seed = 0;
    double max_bad = 0.01;
    for (int a = 0; a < argc; a++) {
        const char *k = argv[a];
        const char *v = a + 1 < argc ? argv[a + 1] : NULL;
#define OPT(name) (!strcmp(k, name) && v && (a++, 1))
        if (OPT("--folder")) folder = v;
        else if (OPT("--mode")) mode_s = v;
        else if (!strcmp(k, "--idx") && a + 2 < argc) idx_img = argv[a + 1], idx_lbl = argv[a + 2], a += 2;
        else if (OPT("--limit")) limit = atol(v);
        else if (OPT("--out")) out = v;
        else if (OPT("--preset")) preset = v;
        else if (OPT("--views")) views = atoi(v);
        else if (OPT("--size")) size = atoi(v);
        else if (OPT("--batch")) batch = atoi(v);
        else if (OPT("--workers")) workers = atoi(v);
        else if (OPT("--epochs")) epochs = atoi(v);
        else if (OPT("--seed")) seed = strtoull(v, NULL, 10);
        else if (OPT("--channels")) channels = atoi(v);
        else if (OPT("--max-bad")) max_bad = atof(v);
        else if (OPT("--prefetch")) prefetch = atoi(v);
        else if (!strcmp(k, "--no-shuffle")) shuffle = 0;
        else if (!strcmp(k, "--keep-last")) drop_last = 0;
        else if (!strcmp(k, "--no-scaled")) scaled = 0;
        else return fprintf(stderr, "data_tool load: unknown or incomplete option '%s'\n", k), 2;
#undef OPT
    }
    ct_loader_config cfg;
    ct_data_err err = ct_loader_config_preset(&cfg, preset, views, size, batch);
    if (err) return fail_msg(err);
    cfg.workers = workers;
    cfg.seed = seed;
    cfg.shuffle = shuffle;
    cfg.drop_last = drop_last;
    cfg.channels = channels;
    cfg.max_bad_fraction = max_bad;
    cfg.scaled_decode = scaled;
    cfg.prefetch = prefetch;
    ct_loader *l = NULL;
    if (folder) {
        ct_folder_mode mode = !strcmp(mode_s, "flat") ? CT_FOLDER_FLAT
                            : !strcmp(mode_s, "classes") ? CT_FOLDER_CLASSES : CT_FOLDER_AUTO;
        err = ct_loader_open_folder(folder, mode, &cfg, &l);
    } else if (idx_img) {
        err = ct_loader_open_idx(idx_img, idx_lbl, limit, &cfg, &l);
    } else {
        err = ct_data_errorf("load needs --folder DIR or --idx IMAGES LABELS");
    }
    if (err) return fail_msg(err);
    FILE *f = NULL;
    if (out && !(f = fopen(out, "wb"))) {
        ct_loader_close(l);
        return fail_msg(ct_data_errorf("%s: cannot write", out));
    }
    double t0 = now_s();
    long images = 0, batches = 0;
    for (int e = 0; e < epochs && !err; e++) {
        if ((err = ct_loader_start_epoch(l, e, 0))) break;
        for (;;) {
            const ct_batch *b;
            if ((err = ct_loader_next(l, &b)) || !b) break;
            batches++;
            images += b->n;
            if (f) {
                for (int v = 0; v < views; v++)
                    fwrite(b->views[v], sizeof(float), (size_t)b->n * channels * cfg.views[v].size_h * cfg.views[v].size_w, f);
                fwrite(b->labels, sizeof(int64_t), (size_t)b->n, f);
                fwrite(b->indices, sizeof(int64_t), (size_t)b->n, f);
            }
        }
    }
    double dt = now_s() - t0;
    if (f) fclose(f);
    const char *msgs[CT_LOADER_MAX_BAD_REPORTED];
    int nm = ct_loader_bad_reported(l, msgs, CT_LOADER_MAX_BAD_REPORTED);
    printf("samples %lld classes %d batches %ld images %ld seconds %.4f images_per_s %.2f bad %lld\n",
           (long long)ct_loader_size(l), ct_loader_n_classes(l), batches, images, dt,
           dt > 0 ? images / dt : 0.0, (long long)ct_loader_bad_count(l));
    for (int i = 0; i < nm; i++) printf("bad: %s\n", msgs[i]);
    ct_loader_close(l);
    return err ? fail_msg(err) : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: data_tool decode|apply|crop-params|idx|folder|load|view|draws ...\n");
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "decode")) return cmd_decode(argc - 2, argv + 2);
    if (!strcmp(cmd, "apply")) return cmd_apply(argc - 2, argv + 2);
    if (!strcmp(cmd, "crop-params")) return cmd_crop_params(argc - 2, argv + 2);
    if (!strcmp(cmd, "idx")) return cmd_idx(argc - 2, argv + 2);
    if (!strcmp(cmd, "folder")) return cmd_folder(argc - 2, argv + 2);
    if (!strcmp(cmd, "load")) return cmd_load(argc - 2, argv + 2);
    if (!strcmp(cmd, "view")) return cmd_view(argc - 2, argv + 2);
    if (!strcmp(cmd, "draws")) return cmd_draws(argc - 2, argv + 2);
    fprintf(stderr, "data_tool: unknown command '%s'\n", cmd);
    return 2;
}

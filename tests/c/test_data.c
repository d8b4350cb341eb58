/* test_data.c — unit tests of runtime/data: the random streams, crop
 * sampling bounds, IDX parsing (Fashion-MNIST and malformed files), decoder
 * robustness on truncated and garbage JPEG/PNG, folders, and the loader's
 * determinism across worker counts and its bad-image accounting. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#include "augment.h"
#include "folder.h"
#include "idx.h"
#include "image.h"
#include "loader.h"

static int failures = 0;
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
#define CHECK_OK(expr)                                                                             \
    do {                                                                                           \
        ct_data_err e_ = (expr);                                                                   \
        if (e_) {                                                                                  \
            fprintf(stderr, "%s:%d: unexpected error: %s\n", __FILE__, __LINE__, e_);              \
            ct_data_err_free(e_);                                                                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)
/* expects an error whose message contains `needle` */
#define CHECK_ERR(expr, needle)                                                                    \
    do {                                                                                           \
        ct_data_err e_ = (expr);                                                                   \
        if (!e_) {                                                                                 \
            fprintf(stderr, "%s:%d: expected an error from %s\n", __FILE__, __LINE__, #expr);      \
            failures++;                                                                            \
        } else if (!strstr(e_, needle)) {                                                          \
            fprintf(stderr, "%s:%d: error '%s' lacks '%s'\n", __FILE__, __LINE__, e_, needle);     \
            failures++;                                                                            \
        }                                                                                          \
        ct_data_err_free(e_);                                                                      \
    } while (0)

static char tmpdir[256];

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_rng(void)
{
    ct_rng a = ct_rng_stream(1, 2, 3, 0), b = ct_rng_stream(1, 2, 3, 0), c = ct_rng_stream(1, 2, 4, 0);
    int same = 1, differ = 0;
    double lo = 1, hi = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = ct_rng_next_u64(&a), y = ct_rng_next_u64(&b), z = ct_rng_next_u64(&c);
        same &= x == y;
        differ += x != z;
        double u = ct_rng_uniform01(&a);
        (void)ct_rng_uniform01(&b);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
    }
    CHECK(same);
    CHECK(differ > 990);
    CHECK(lo >= 0 && lo < 0.01 && hi < 1 && hi > 0.99);
    int64_t perm[100];
    int seen[100] = {0};
    ct_rng r = ct_rng_stream(5, 0, 0, 0);
    ct_rng_permutation(&r, perm, 100);
    for (int i = 0; i < 100; i++) seen[perm[i]]++;
    int ok = 1, moved = 0;
    for (int i = 0; i < 100; i++) ok &= seen[i] == 1, moved += perm[i] != i;
    CHECK(ok);
    CHECK(moved > 80);
}

static void test_crop_params(void)
{
    double scale[2] = {0.08, 1.0}, ratio[2] = {3.0 / 4, 4.0 / 3};
    int inside = 1;
    for (int k = 0; k < 5000; k++) {
        ct_rng r = ct_rng_stream(7, 0, (uint64_t)k, 0);
        int h = 50 + k % 300, w = 40 + (k * 7) % 400;
        ct_crop_box b = ct_aug_crop_params(&r, h, w, scale, ratio);
        inside &= b.i >= 0 && b.j >= 0 && b.h > 0 && b.w > 0 && b.i + b.h <= h && b.j + b.w <= w;
    }
    CHECK(inside);
    /* a 10 x 1000 strip never fits a 3/4..4/3 crop: the central fallback */
    ct_rng r = ct_rng_stream(1, 0, 0, 0);
    ct_crop_box b = ct_aug_crop_params(&r, 10, 1000, scale, ratio);
    CHECK(b.h == 10 && b.w == 13 && b.i == 0 && b.j == (1000 - 13) / 2);
}

static void test_idx(void)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    ct_idx im, lb;
    if (access(img, R_OK) == 0) {
        CHECK_OK(ct_idx_read_pair(img, lbl, 10, &im, &lb));
        CHECK(im.n == 10000 && im.h == 28 && im.w == 28 && lb.n == 10000);
        int hist[10] = {0};
        for (int i = 0; i < lb.n; i++) hist[lb.data[i]]++;
        for (int k = 0; k < 10; k++) CHECK(hist[k] == 1000);
        ct_idx_free(&im);
        ct_idx_free(&lb);
        CHECK_ERR(ct_idx_read(lbl, 3, &im), "dimensions");
    } else {
        fprintf(stderr, "note: %s missing, Fashion-MNIST checks skipped\n", img);
    }
    char p[512];
    /* plain (not gzipped) 2 images of 2x3 and labels */
    uint8_t good[16 + 12] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3};
    for (int i = 0; i < 12; i++) good[16 + i] = (uint8_t)(i * 20);
    snprintf(p, sizeof p, "%s/plain.idx", tmpdir);
    write_file(p, good, sizeof good);
    CHECK_OK(ct_idx_read(p, 3, &im));
    CHECK(im.n == 2 && im.h == 2 && im.w == 3 && im.data[11] == 220);
    ct_idx_free(&im);
    snprintf(p, sizeof p, "%s/trunc.idx", tmpdir);
    write_file(p, good, sizeof good - 1);
    CHECK_ERR(ct_idx_read(p, 3, &im), "truncated");
    snprintf(p, sizeof p, "%s/short.idx", tmpdir);
    write_file(p, good, 6);
    CHECK_ERR(ct_idx_read(p, 3, &im), "truncated");
    uint8_t bad_magic[sizeof good];
    memcpy(bad_magic, good, sizeof good);
    bad_magic[0] = 1;
    snprintf(p, sizeof p, "%s/magic.idx", tmpdir);
    write_file(p, bad_magic, sizeof bad_magic);
    CHECK_ERR(ct_idx_read(p, 3, &im), "not an IDX file");
    bad_magic[0] = 0;
    bad_magic[2] = 0x0d; /* float */
    write_file(p, bad_magic, sizeof bad_magic);
    CHECK_ERR(ct_idx_read(p, 3, &im), "unsigned byte");
    uint8_t longer[sizeof good + 1];
    memcpy(longer, good, sizeof good);
    longer[sizeof good] = 9;
    snprintf(p, sizeof p, "%s/long.idx", tmpdir);
    write_file(p, longer, sizeof longer);
    CHECK_ERR(ct_idx_read(p, 3, &im), "trailing");
    /* gzipped copy of good reads the same */
    snprintf(p, sizeof p, "%s/good.idx.gz", tmpdir);
    gzFile gz = gzopen(p, "wb");
    gzwrite(gz, good, sizeof good);
    gzclose(gz);
    CHECK_OK(ct_idx_read(p, 3, &im));
    CHECK(im.n == 2 && im.data[5] == 100);
    ct_idx_free(&im);
    CHECK_ERR(ct_idx_read("/nonexistent/x.idx", 1, &im), "/nonexistent/x.idx");
}

/* A w x h RGB test pattern. */
static uint8_t *pattern(int w, int h)
{
    uint8_t *px = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *q = px + ((size_t)y * w + x) * 3;
            q[0] = (uint8_t)(x * 255 / w);
            q[1] = (uint8_t)(y * 255 / h);
            q[2] = (uint8_t)((x * y) & 255);
        }
    return px;
}

static size_t make_jpeg(int w, int h, uint8_t **out)
{
    uint8_t *px = pattern(w, h);
    tjhandle tj = tjInitCompress();
    unsigned char *jpg = NULL;
    unsigned long len = 0;
    if (tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpg, &len, TJSAMP_420, 90, 0) != 0) {
        fprintf(stderr, "tjCompress2: %s\n", tjGetErrorStr2(tj));
        exit(1);
    }
    tjDestroy(tj);
    free(px);
    *out = malloc(len);
    memcpy(*out, jpg, len);
    tjFree(jpg);
    return len;
}

static void make_png_file(const char *path, int w, int h)
{
    uint8_t *px = pattern(w, h);
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    im.width = (png_uint_32)w;
    im.height = (png_uint_32)h;
    im.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&im, path, 0, px, 0, NULL)) {
        fprintf(stderr, "png write %s: %s\n", path, im.message);
        exit(1);
    }
    free(px);
}

static void test_decode_robust(void)
{
    uint8_t *jpg;
    size_t jlen = make_jpeg(67, 45, &jpg);
    ct_image img;
    CHECK_OK(ct_image_decode("t.jpg", jpg, jlen, 3, 1, &img));
    CHECK(img.w == 67 && img.h == 45 && img.c == 3);
    /* colours survive roughly: top-right is red-ish */
    CHECK(img.data[(66) * 3] > 200);
    ct_image_free(&img);
    CHECK_OK(ct_image_decode("t.jpg", jpg, jlen, 1, 1, &img));
    CHECK(img.c == 1);
    ct_image_free(&img);
    CHECK_OK(ct_image_decode("t.jpg", jpg, jlen, 3, 4, &img));
    CHECK(img.w == 17 && img.h == 12);
    ct_image_free(&img);
    /* every truncation and some corruptions fail cleanly or decode */
    int errors = 0;
    for (size_t n = 0; n < jlen; n += 7) {
        ct_data_err e = ct_image_decode("cut.jpg", jpg, n, 3, 1, &img);
        if (e) {
            errors++;
            if (!strstr(e, "cut.jpg")) fprintf(stderr, "msg: %s\n", e);
            CHECK(strstr(e, "cut.jpg") != NULL);
            CHECK(img.data == NULL);
            ct_data_err_free(e);
        } else {
            ct_image_free(&img);
        }
    }
    CHECK(errors > (int)(jlen / 7) - 2);
    srand(3);
    for (int t = 0; t < 200; t++) {
        uint8_t *bad = malloc(jlen);
        memcpy(bad, jpg, jlen);
        for (int k = 0; k < 8; k++) bad[200 + rand() % (int)(jlen - 200)] = (uint8_t)rand();
        ct_data_err e = ct_image_decode("noisy.jpg", bad, jlen, 3, 1 << (t % 4), &img);
        if (e) ct_data_err_free(e);
        else ct_image_free(&img);
        free(bad);
    }
    free(jpg);
    /* PNG truncations */
    char p[512];
    snprintf(p, sizeof p, "%s/t.png", tmpdir);
    make_png_file(p, 33, 21);
    uint8_t *png;
    size_t plen;
    CHECK_OK(ct_image_file_read(p, &png, &plen));
    CHECK_OK(ct_image_decode(p, png, plen, 0, 1, &img));
    CHECK(img.w == 33 && img.h == 21 && img.c == 3 && img.data[3 * 32] == 32 * 255 / 33);
    ct_image_free(&img);
    errors = 0;
    for (size_t n = 0; n + 12 < plen; n += 3) {
        ct_data_err e = ct_image_decode("cut.png", png, n, 3, 1, &img);
        if (e) {
            errors++;
            CHECK(strstr(e, "cut.png") != NULL);
            ct_data_err_free(e);
        } else {
            ct_image_free(&img);
        }
    }
    CHECK(errors == (int)((plen - 12 + 2) / 3));
    for (int t = 0; t < 200; t++) {
        uint8_t *bad = malloc(plen);
        memcpy(bad, png, plen);
        for (int k = 0; k < 4; k++) bad[8 + rand() % (int)(plen - 8)] = (uint8_t)rand();
        ct_data_err e = ct_image_decode("noisy.png", bad, plen, 3, 1, &img);
        if (e) ct_data_err_free(e);
        else ct_image_free(&img);
        free(bad);
    }
    free(png);
    uint8_t garbage[100];
    for (int i = 0; i < 100; i++) garbage[i] = (uint8_t)(i * 37);
    CHECK_ERR(ct_image_decode("g.bin", garbage, 100, 3, 1, &img), "g.bin: not a JPEG or PNG");
    CHECK_ERR(ct_image_decode("empty", garbage, 0, 3, 1, &img), "empty");
    CHECK_ERR(ct_image_load("/nonexistent.png", 3, 1, &img), "/nonexistent.png");
}

static void test_ops_invariants(void)
{
    ct_image a, out;
    CHECK_OK(ct_image_alloc(&a, 37, 53, 3));
    memset(a.data, 77, (size_t)37 * 53 * 3);
    /* a constant image stays constant through resize and blur */
    CHECK_OK(ct_aug_resized_crop(&a, (ct_crop_box){3, 5, 30, 41}, 224, 224, &out));
    int all = 1;
    for (size_t i = 0; i < (size_t)224 * 224 * 3; i++) all &= out.data[i] == 77;
    CHECK(all);
    CHECK_OK(ct_aug_gaussian_blur(&out, 23, 1.7));
    all = 1;
    for (size_t i = 0; i < (size_t)224 * 224 * 3; i++) all &= out.data[i] == 77;
    CHECK(all);
    ct_image_free(&out);
    /* crop without resize copies the pixels */
    for (size_t i = 0; i < (size_t)37 * 53 * 3; i++) a.data[i] = (uint8_t)(i * 13);
    CHECK_OK(ct_aug_resized_crop(&a, (ct_crop_box){2, 4, 10, 12}, 10, 12, &out));
    CHECK(out.data[0] == a.data[(2 * 53 + 4) * 3] && out.data[(9 * 12 + 11) * 3 + 2] == a.data[(11 * 53 + 15) * 3 + 2]);
    ct_image_free(&out);
    CHECK_ERR(ct_aug_resized_crop(&a, (ct_crop_box){30, 0, 10, 10}, 5, 5, &out), "outside");
    /* blur on a tiny image folds the reflection without reading outside */
    ct_image t;
    CHECK_OK(ct_image_alloc(&t, 2, 3, 1));
    memset(t.data, 9, 6);
    CHECK_OK(ct_aug_gaussian_blur(&t, 23, 2.0));
    CHECK(t.data[0] == 9 && t.data[5] == 9);
    ct_image_free(&t);
    CHECK_ERR(ct_aug_gaussian_blur(&a, 4, 1.0), "odd");
    ct_image_free(&a);
    ct_aug_view v;
    CHECK_OK(ct_aug_preset("simclr", 0, 224, &v));
    CHECK(ct_aug_view_kernel(&v) == 23 && v.scale[0] == 0.08);
    CHECK_OK(ct_aug_preset("byol", 1, 96, &v));
    CHECK(v.blur_p == 0.1 && v.solarize_p == 0.2 && ct_aug_view_kernel(&v) == 9);
    CHECK_ERR(ct_aug_preset("mocov9", 0, 224, &v), "mocov9");
    CHECK_OK(ct_aug_preset("MoCo-v2", 0, 224, &v));
    CHECK(v.blur_p == 0.5 && v.scale[0] == 0.2 && v.n_ops == 4 && v.ops[0] == CT_AUG_OP_JITTER);
}

static int cmp_batches(const char *img, const char *lbl, int workers_a, int workers_b)
{
    ct_loader_config cfg;
    CHECK_OK(ct_loader_config_preset(&cfg, "mocov2", 2, 24, 16));
    cfg.channels = 1;
    cfg.seed = 42;
    ct_loader *la = NULL, *lb = NULL;
    cfg.workers = workers_a;
    CHECK_OK(ct_loader_open_idx(img, lbl, 200, &cfg, &la));
    cfg.workers = workers_b;
    cfg.prefetch = 2;
    CHECK_OK(ct_loader_open_idx(img, lbl, 200, &cfg, &lb));
    if (!la || !lb) {
        ct_loader_close(la);
        ct_loader_close(lb);
        return 0;
    }
    CHECK(ct_loader_batches_per_epoch(la) == 12);
    int equal = 1, batches = 0;
    int64_t first_index[2] = {-1, -1};
    for (int e = 0; e < 2; e++) {
        CHECK_OK(ct_loader_start_epoch(la, e, 0));
        CHECK_OK(ct_loader_start_epoch(lb, e, 0));
        for (;;) {
            const ct_batch *a, *b;
            CHECK_OK(ct_loader_next(la, &a));
            CHECK_OK(ct_loader_next(lb, &b));
            if (!a || !b) {
                CHECK(!a && !b);
                break;
            }
            if (batches % 12 == 0) first_index[e] = a->indices[0];
            batches++;
            equal &= a->n == 16 && b->n == 16;
            equal &= memcmp(a->views[0], b->views[0], sizeof(float) * 16 * 24 * 24) == 0;
            equal &= memcmp(a->views[1], b->views[1], sizeof(float) * 16 * 24 * 24) == 0;
            equal &= memcmp(a->labels, b->labels, sizeof(int64_t) * 16) == 0;
            /* the two views differ */
            equal &= memcmp(a->views[0], a->views[1], sizeof(float) * 16 * 24 * 24) != 0;
        }
    }
    CHECK(batches == 24);
    CHECK(first_index[0] != first_index[1]);
    /* resume in the middle of an epoch gives the same batch */
    CHECK_OK(ct_loader_start_epoch(la, 1, 5));
    const ct_batch *r;
    CHECK_OK(ct_loader_next(la, &r));
    CHECK(r && r->index == 5);
    /* abandoning an epoch half-way and closing is clean */
    CHECK_OK(ct_loader_start_epoch(lb, 3, 0));
    ct_loader_close(la);
    ct_loader_close(lb);
    return equal;
}

static void test_loader_idx(void)
{
    const char *img = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
    const char *lbl = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz";
    if (access(img, R_OK) != 0) return;
    CHECK(cmp_batches(img, lbl, 1, 4));
    CHECK(cmp_batches(img, lbl, 3, 2));
}

static void test_folders_and_bad(void)
{
    char root[512], p[768];
    snprintf(root, sizeof root, "%s/imgs", tmpdir);
    mkdir(root, 0755);
    ct_folder f;
    CHECK_ERR(ct_folder_open(root, CT_FOLDER_AUTO, &f), "no images");
    const char *classes[] = {"dog", "Cat", "bird"};
    for (int c = 0; c < 3; c++) {
        snprintf(p, sizeof p, "%s/%s", root, classes[c]);
        mkdir(p, 0755);
    }
    CHECK_ERR(ct_folder_open(root, CT_FOLDER_CLASSES, &f), "has no images");
    uint8_t *jpg;
    size_t jlen = make_jpeg(120, 90, &jpg);
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 8; k++) {
            snprintf(p, sizeof p, "%s/%s/img%02d.%s", root, classes[c], 7 - k, k % 2 ? "JPG" : "jpeg");
            write_file(p, jpg, jlen);
        }
    snprintf(p, sizeof p, "%s/dog/notes.txt", root);
    write_file(p, "x", 1);
    CHECK_OK(ct_folder_open(root, CT_FOLDER_AUTO, &f));
    CHECK(f.n_classes == 3 && !strcmp(f.classes[0], "Cat") && !strcmp(f.classes[2], "dog"));
    CHECK(f.n == 24 && f.labels[0] == 0 && f.labels[23] == 2 && strstr(f.paths[0], "Cat/img00.JPG"));
    ct_folder_free(&f);
    /* two bad files among 26 */
    snprintf(p, sizeof p, "%s/dog/zz_bad.png", root);
    write_file(p, "\x89PNG\r\n\x1a\nbroken", 14);
    snprintf(p, sizeof p, "%s/bird/zz_cut.jpg", root);
    write_file(p, jpg, jlen / 2);
    free(jpg);
    ct_loader_config cfg;
    CHECK_OK(ct_loader_config_preset(&cfg, "simclr", 2, 32, 5));
    cfg.workers = 3;
    cfg.max_bad_fraction = 0.1;
    ct_loader *l = NULL;
    CHECK_OK(ct_loader_open_folder(root, CT_FOLDER_AUTO, &cfg, &l));
    if (l) {
        CHECK_OK(ct_loader_start_epoch(l, 0, 0));
        int nb = 0;
        for (;;) {
            const ct_batch *b;
            ct_data_err e = ct_loader_next(l, &b);
            CHECK_OK(e);
            if (e || !b) break;
            nb++;
            for (int i = 0; i < b->n; i++) CHECK(b->labels[i] >= 0 && b->labels[i] < 3);
        }
        CHECK(nb == 5);
        CHECK(ct_loader_bad_count(l) == 2);
        const char *msgs[5];
        int nm = ct_loader_bad_reported(l, msgs, 5);
        CHECK(nm == 2);
        for (int i = 0; i < nm; i++) CHECK(strstr(msgs[i], "zz_") != NULL);
        ct_loader_close(l);
    }
    cfg.max_bad_fraction = 0.05;
    CHECK_OK(ct_loader_open_folder(root, CT_FOLDER_AUTO, &cfg, &l));
    if (l) {
        CHECK_OK(ct_loader_start_epoch(l, 0, 0));
        ct_data_err e = NULL;
        for (int k = 0; k < 6 && !e; k++) {
            const ct_batch *b;
            e = ct_loader_next(l, &b);
            if (!b) break;
        }
        CHECK(e && strstr(e, "images are bad") && strstr(e, "zz_"));
        ct_data_err_free(e);
        ct_loader_close(l);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ct_test_data_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_rng();
    test_crop_params();
    test_idx();
    test_decode_robust();
    test_ops_invariants();
    test_loader_idx();
    test_folders_and_bad();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", tmpdir);
    if (failures) {
        fprintf(stderr, "test_data: %d check(s) failed\n", failures);
        return 1;
    }
    printf("test_data: all checks passed\n");
    return 0;
}

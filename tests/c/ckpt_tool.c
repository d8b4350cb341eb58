/* ckpt_tool.c — drives runtime/train/checkpoint for tests/test_checkpoint.py:
 * writes checkpoint "versions" whose contents are a function of the version
 * number, verifies that a file on disk is exactly one such version, writes
 * in a loop (for the SIGKILL test) and under RLIMIT_FSIZE (a full disk). */
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "checkpoint.h"

#define FINGERPRINT "fp-resnet18_small-moco-v2-0123abcd"

typedef struct {
    ct_ckpt_tensor t[4];
    float *w;      /* (256, cols) */
    int64_t step;  /* () */
    float *queue;  /* (128, 64) */
    uint8_t *rng;  /* (v % 13 + 1) */
    char step_s[32];
} version;

static void version_make(version *v, int64_t ver)
{
    memset(v, 0, sizeof *v);
    int64_t cols = 512 + (ver % 7) * 16;
    v->w = malloc(sizeof(float) * 256 * (size_t)cols);
    v->queue = malloc(sizeof(float) * 128 * 64);
    int64_t nr = ver % 13 + 1;
    v->rng = malloc((size_t)nr);
    for (int64_t i = 0; i < 256 * cols; i++) v->w[i] = (float)((ver * 7919 + i) % 100003);
    for (int64_t i = 0; i < 128 * 64; i++) v->queue[i] = (float)ver + 0.5f * (float)i;
    for (int64_t i = 0; i < nr; i++) v->rng[i] = (uint8_t)(ver * 31 + i);
    v->step = ver;
    v->t[0] = (ct_ckpt_tensor){"encoder_q.conv1.weight", CT_CKPT_F32, 2, {256, cols}, v->w};
    v->t[1] = (ct_ckpt_tensor){"step", CT_CKPT_I64, 0, {0}, &v->step};
    v->t[2] = (ct_ckpt_tensor){"queue", CT_CKPT_F32, 2, {128, 64}, v->queue};
    v->t[3] = (ct_ckpt_tensor){"rng_state", CT_CKPT_U8, 1, {nr}, v->rng};
    snprintf(v->step_s, sizeof v->step_s, "%" PRId64, ver);
}

static void version_free(version *v)
{
    free(v->w);
    free(v->queue);
    free(v->rng);
}

static ct_train_err version_write(const char *path, int64_t ver)
{
    version v;
    version_make(&v, ver);
    ct_ckpt_meta meta[] = {
        {"fingerprint", FINGERPRINT}, {"model", "resnet18_small"}, {"method", "moco_v2"},
        {"step", v.step_s},           {"note", "quote \" backslash \\ newline \n tab \t done"},
    };
    ct_train_err err = ct_ckpt_write(path, v.t, 4, meta, 5);
    version_free(&v);
    return err;
}

static int fail(ct_train_err err)
{
    fprintf(stderr, "%s\n", err);
    ct_train_err_free(err);
    return 1;
}

/* verify PATH [--fingerprint FP|--any] [--drop NAME] [--extra] [--wrong-shape] */
static int cmd_verify(int argc, char **argv)
{
    const char *path = argv[2];
    const char *fp = FINGERPRINT;
    const char *drop = NULL;
    bool extra = false, wrong_shape = false;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--fingerprint") && i + 1 < argc) fp = argv[++i];
        else if (!strcmp(argv[i], "--any")) fp = NULL;
        else if (!strcmp(argv[i], "--drop") && i + 1 < argc) drop = argv[++i];
        else if (!strcmp(argv[i], "--extra")) extra = true;
        else if (!strcmp(argv[i], "--wrong-shape")) wrong_shape = true;
    }
    ct_ckpt *c = NULL;
    ct_train_err err = ct_ckpt_open(path, fp, &c);
    if (err) return fail(err);
    const char *step_s = ct_ckpt_meta_get(c, "step");
    if (!step_s) {
        ct_ckpt_close(c);
        fprintf(stderr, "%s: no step in metadata\n", path);
        return 1;
    }
    int64_t ver = strtoll(step_s, NULL, 10);
    version want, got;
    version_make(&want, ver);
    version_make(&got, ver);
    memset(got.w, 0, sizeof(float) * 256 * (size_t)got.t[0].dims[1]);
    memset(got.queue, 0, sizeof(float) * 128 * 64);
    memset(got.rng, 0, (size_t)got.t[3].dims[0]);
    got.step = -1;
    ct_ckpt_tensor req[5];
    int n = 0;
    for (int i = 0; i < 4; i++)
        if (!drop || strcmp(drop, got.t[i].name)) req[n++] = got.t[i];
    float dummy[4];
    if (extra) req[n++] = (ct_ckpt_tensor){"encoder_k.fc.bias", CT_CKPT_F32, 1, {4}, dummy};
    if (wrong_shape) req[0].dims[1] += 1;
    err = ct_ckpt_load(c, req, n);
    ct_ckpt_close(c);
    int rc = 0;
    if (err) {
        rc = fail(err);
    } else if (memcmp(got.w, want.w, sizeof(float) * 256 * (size_t)want.t[0].dims[1]) ||
               memcmp(got.queue, want.queue, sizeof(float) * 128 * 64) ||
               memcmp(got.rng, want.rng, (size_t)want.t[3].dims[0]) || got.step != want.step) {
        fprintf(stderr, "%s: contents do not match version %" PRId64 " (a torn checkpoint)\n", path, ver);
        rc = 3;
    } else {
        printf("ok %" PRId64 "\n", ver);
    }
    version_free(&want);
    version_free(&got);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ckpt_tool write PATH VERSION | verify PATH [opts] | loop PATH START | "
                        "fsize PATH VERSION LIMIT | clean PATH\n");
        return 2;
    }
    const char *cmd = argv[1], *path = argv[2];
    if (!strcmp(cmd, "write") && argc == 4) {
        ct_train_err err = version_write(path, strtoll(argv[3], NULL, 10));
        return err ? fail(err) : 0;
    }
    if (!strcmp(cmd, "verify")) return cmd_verify(argc, argv);
    if (!strcmp(cmd, "loop") && argc == 4) {
        ct_ckpt_remove_stale_temps(path);
        for (int64_t v = strtoll(argv[3], NULL, 10);; v++) {
            ct_train_err err = version_write(path, v);
            if (err) return fail(err);
            printf("%" PRId64 "\n", v);
            fflush(stdout);
        }
    }
    if (!strcmp(cmd, "fsize") && argc == 5) {
        /* a full disk: writes beyond LIMIT bytes fail with EFBIG */
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)strtoll(argv[4], NULL, 10), (rlim_t)strtoll(argv[4], NULL, 10)};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
            perror("setrlimit");
            return 2;
        }
        ct_train_err err = version_write(path, strtoll(argv[3], NULL, 10));
        if (!err) return 0;
        fail(err);
        return 1;
    }
    if (!strcmp(cmd, "clean")) {
        printf("%d\n", ct_ckpt_remove_stale_temps(path));
        return 0;
    }
    fprintf(stderr, "ckpt_tool: bad arguments\n");
    return 2;
}

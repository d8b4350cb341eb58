/* test_train.c — unit checks of runtime/train's pieces that the Python tests
 * do not reach directly: the JSON reader's edge cases, the checkpoint
 * writer's argument validation, dtype tables, and a write/open round trip
 * of every dtype including scalars and empty tensors. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "json.h"
#include "knn.h"

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            failures++;                                                        \
        }                                                                      \
    } while (0)

static void json_ok(const char *src)
{
    char err[200];
    ct_json *v = ct_json_parse(src, strlen(src), err, sizeof err);
    CHECK(v != NULL, "%s: %s", src, err);
    ct_json_free(v);
}

static void json_bad(const char *src, const char *msg)
{
    char err[200];
    ct_json *v = ct_json_parse(src, strlen(src), err, sizeof err);
    CHECK(v == NULL && strstr(err, msg), "%s: got '%s', want '%s'", src, v ? "(parsed)" : err, msg);
    ct_json_free(v);
}

static void test_json(void)
{
    json_ok("{\"a\":[1,2,{\"b\":null}],\"c\":true,\"d\":-1.5e3,\"e\":\"x\\u00e9\\ud83d\\ude00\"}");
    json_ok("  [ ]  ");
    char err[200];
    const char *src = "{\"n\":9007199254740993,\"s\":\"a\\\"b\\\\c\\n\"}";
    ct_json *v = ct_json_parse(src, strlen(src), err, sizeof err);
    CHECK(v && ct_json_get(v, "n")->is_int && ct_json_get(v, "n")->i == INT64_C(9007199254740993), "int64 exact");
    CHECK(v && !strcmp(ct_json_get(v, "s")->str, "a\"b\\c\n"), "escapes");
    ct_json_free(v);
    src = "\"x\\u00e9\\ud83d\\ude00\"";
    v = ct_json_parse(src, strlen(src), err, sizeof err);
    CHECK(v && !strcmp(v->str, "x\xc3\xa9\xf0\x9f\x98\x80"), "utf-8 from \\u escapes and surrogate pairs");
    ct_json_free(v);
    json_bad("{\"a\":1,}", "expected a string key");
    json_bad("{\"a\":1 \"b\":2}", "expected ',' or '}'");
    json_bad("{\"a\":1,\"a\":2}", "duplicate key");
    json_bad("[1,2", "expected ',' or ']'");
    json_bad("\"abc", "unterminated string");
    json_bad("\"a\\u0000b\"", "NUL character");
    json_bad("\"\\ud800\"", "surrogate");
    json_bad("01", "trailing characters");
    json_bad("{} x", "trailing characters");
    json_bad("nul", "unexpected character");
    json_bad("", "unexpected end");
    char deep[300];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    deep[200] = 0;
    json_bad(deep, "nesting too deep");
}

static void test_dtypes(void)
{
    for (int i = 0; i < CT_CKPT_DTYPE_COUNT; i++)
        CHECK((int)ct_ckpt_dtype_from_name(ct_ckpt_dtype_name((ct_ckpt_dtype)i)) == i, "dtype %d", i);
    CHECK(ct_ckpt_dtype_from_name("F8") == CT_CKPT_DTYPE_COUNT, "unknown dtype");
    CHECK(ct_ckpt_dtype_from_onnx(1) == CT_CKPT_F32 && ct_ckpt_dtype_from_onnx(7) == CT_CKPT_I64 &&
              ct_ckpt_dtype_from_onnx(16) == CT_CKPT_BF16 && ct_ckpt_dtype_from_onnx(8) == CT_CKPT_DTYPE_COUNT,
          "onnx dtypes");
}

static void test_writer_validation(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/v.safetensors", dir);
    float a[2] = {1, 2};
    ct_ckpt_tensor dup[2] = {{"w", CT_CKPT_F32, 1, {2}, a}, {"w", CT_CKPT_F32, 1, {2}, a}};
    ct_train_err err = ct_ckpt_write(path, dup, 2, NULL, 0);
    CHECK(err && strstr(err, "tensor name 'w' appears twice"), "%s", err ? err : "(ok)");
    ct_train_err_free(err);
    ct_ckpt_meta meta = {"checksum", "x"};
    err = ct_ckpt_write(path, dup, 1, &meta, 1);
    CHECK(err && strstr(err, "metadata key 'checksum' is reserved"), "%s", err ? err : "(ok)");
    ct_train_err_free(err);
    ct_ckpt_tensor neg = {"n", CT_CKPT_F32, 1, {-3}, a};
    err = ct_ckpt_write(path, &neg, 1, NULL, 0);
    CHECK(err && strstr(err, "bad dtype or shape"), "%s", err ? err : "(ok)");
    ct_train_err_free(err);
    snprintf(path, sizeof path, "%s/no/such/dir/v.safetensors", dir);
    err = ct_ckpt_write(path, dup, 1, NULL, 0);
    CHECK(err && strstr(err, "no/such/dir") && strstr(err, "No such file"), "%s", err ? err : "(ok)");
    ct_train_err_free(err);
}

static void test_all_dtypes(const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "%s/all.safetensors", dir);
    double f64[3] = {1.5, -2, 1e300};
    int64_t step = 123456789012345;
    uint16_t half[4] = {0x3c00, 0, 0x7bff, 0x8001};
    int32_t i32[2][3] = {{1, 2, 3}, {-4, -5, -6}};
    uint8_t flags[5] = {1, 0, 1, 1, 0};
    float empty[1];
    ct_ckpt_tensor t[6] = {
        {"f64", CT_CKPT_F64, 1, {3}, f64},      {"step", CT_CKPT_I64, 0, {0}, &step},
        {"bf16", CT_CKPT_BF16, 2, {2, 2}, half}, {"i32", CT_CKPT_I32, 2, {2, 3}, i32},
        {"flags", CT_CKPT_BOOL, 1, {5}, flags}, {"empty", CT_CKPT_F32, 2, {0, 7}, empty},
    };
    ct_train_err err = ct_ckpt_write(path, t, 6, NULL, 0);
    CHECK(!err, "%s", err);
    ct_train_err_free(err);
    double f64b[3];
    int64_t stepb;
    uint16_t halfb[4];
    int32_t i32b[2][3];
    uint8_t flagsb[5];
    ct_ckpt_tensor r[6];
    memcpy(r, t, sizeof r);
    r[0].data = f64b, r[1].data = &stepb, r[2].data = halfb, r[3].data = i32b, r[4].data = flagsb;
    ct_ckpt *c = NULL;
    err = ct_ckpt_open(path, NULL, &c);
    CHECK(!err, "%s", err);
    ct_train_err_free(err);
    if (c) {
        CHECK(ct_ckpt_count(c) == 6, "count");
        const ct_ckpt_tensor *e = ct_ckpt_find(c, "empty");
        CHECK(e && e->rank == 2 && e->dims[0] == 0 && e->dims[1] == 7, "empty tensor");
        CHECK(!strcmp(ct_ckpt_meta_get(c, "format_version"), "1"), "version");
        err = ct_ckpt_load(c, r, 6);
        CHECK(!err, "%s", err);
        ct_train_err_free(err);
        CHECK(!memcmp(f64, f64b, sizeof f64) && step == stepb && !memcmp(half, halfb, sizeof half) &&
                  !memcmp(i32, i32b, sizeof i32) && !memcmp(flags, flagsb, sizeof flags),
              "contents");
        /* a fingerprint is required once one is expected */
        ct_ckpt_close(c);
        c = NULL;
        err = ct_ckpt_open(path, "fp", &c);
        CHECK(err && strstr(err, "fingerprint (none)"), "%s", err ? err : "(ok)");
        ct_train_err_free(err);
        ct_ckpt_close(c);
    }
    /* a dtype mismatch is reported with both types */
    r[3].dtype = CT_CKPT_F32;
    err = ct_ckpt_read(path, NULL, r, 6);
    CHECK(err && strstr(err, "'i32' is I32[2,3] in the checkpoint but F32[2,3]"), "%s", err ? err : "(ok)");
    ct_train_err_free(err);
}

static void test_knn_small(void)
{
    /* two clusters on a circle; k = 3 */
    float bank[6][2] = {{1, 0}, {0.9f, 0.1f}, {0.8f, -0.1f}, {-1, 0}, {-0.9f, 0.2f}, {-0.95f, -0.1f}};
    int64_t labels[6] = {0, 0, 0, 1, 1, 1};
    float q[2][2] = {{0.7f, 0.05f}, {-0.5f, 0.02f}};
    int64_t ql[2] = {0, 1};
    double acc = 0;
    ct_train_err err = ct_knn_accuracy(&bank[0][0], labels, 6, &q[0][0], ql, 2, 2, 2, 3, 0.1f, &acc);
    CHECK(!err && acc == 1.0, "knn accuracy %g", acc);
    ct_train_err_free(err);
    err = ct_knn_accuracy(&bank[0][0], labels, 6, &q[0][0], ql, 2, 2, 2, 3, 0.0f, &acc);
    CHECK(err && strstr(err, "temperature"), "t = 0 refused");
    ct_train_err_free(err);
}

int main(void)
{
    char dir[] = "/tmp/ct_test_train_XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_json();
    test_dtypes();
    test_writer_validation(dir);
    test_all_dtypes(dir);
    test_knn_small();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("test_train: ok\n");
    return failures ? 1 : 0;
}

/* test_eval.c — unit tests of the reference interpreter (passes/eval.c):
 * single nodes built by hand, results checked against values worked out
 * by hand. Prints "N passed, N failed" and exits non-zero on a failure. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"
#include "ir.h"

static ct_graph *g;
static int n_pass, n_fail;

static ct_shape shp(int rank, ...)
{
    ct_shape s = {rank, {0}};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++) s.dims[i] = va_arg(ap, int64_t);
    va_end(ap);
    return s;
}
#define S(...) shp(__VA_ARGS__)
#define D(x) ((int64_t)(x))

static ct_value *val(ct_dtype t, ct_shape s)
{
    return ct_graph_add_value(g, ct_graph_unique_name(g, "v"), CT_VALUE_TEMP, t, &s);
}

static ct_node *node(ct_op op, int nin, ct_value **in, int nout, ct_value **out)
{
    return ct_graph_add_node(g, op, ct_graph_unique_name(g, ct_op_table[op].name), nin, in, nout, out);
}

static void report(bool ok, const char *what)
{
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL %s\n", what);
    }
}

/* Run n; expect success. */
static bool run(ct_node *n, const void *const *in, void *const *out, const char *what)
{
    ct_status st = ct_eval_node(n, in, out);
    if (st) {
        printf("FAIL %s: %s\n", what, ct_status_msg(st));
        ct_status_free(st);
        n_fail++;
        return false;
    }
    return true;
}

static void check_f(const char *what, const float *got, const float *want, int k, double tol)
{
    for (int i = 0; i < k; i++)
        if (!(fabs((double)got[i] - (double)want[i]) <= tol)) {
            printf("FAIL %s: [%d] got %.8g want %.8g\n", what, i, got[i], want[i]);
            n_fail++;
            return;
        }
    n_pass++;
}

static void check_i(const char *what, const int64_t *got, const int64_t *want, int k)
{
    for (int i = 0; i < k; i++)
        if (got[i] != want[i]) {
            printf("FAIL %s: [%d] got %lld want %lld\n", what, i, (long long)got[i], (long long)want[i]);
            n_fail++;
            return;
        }
    n_pass++;
}

/* ---------------------------------------------------------------- tests */

static void test_broadcast(void)
{
    ct_value *a = val(CT_F32, S(2, D(2), D(3))), *b = val(CT_F32, S(1, D(3))), *y = val(CT_F32, S(2, D(2), D(3)));
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {10, 20, 30}, yv[6];
    ct_node *n = node(CT_OP_ADD, 2, (ct_value *[]){a, b}, 1, &y);
    if (run(n, (const void *[]){av, bv}, (void *[]){yv}, "add"))
        check_f("add broadcast", yv, (float[]){11, 22, 33, 14, 25, 36}, 6, 0);

    ct_value *c = val(CT_F32, S(2, D(2), D(1)));
    float cv[2] = {2, 4};
    n = node(CT_OP_DIV, 2, (ct_value *[]){a, c}, 1, &y);
    if (run(n, (const void *[]){av, cv}, (void *[]){yv}, "div"))
        check_f("div column broadcast", yv, (float[]){0.5f, 1, 1.5f, 1, 1.25f, 1.5f}, 6, 1e-7);

    /* integer division truncates; Sub on int64 exact */
    ct_value *ia = val(CT_I64, S(1, D(4))), *ib = val(CT_I64, S(0)), *iy = val(CT_I64, S(1, D(4)));
    int64_t iav[4] = {7, -7, 9007199254740993LL, 0}, ibv[1] = {2}, iyv[4];
    n = node(CT_OP_DIV, 2, (ct_value *[]){ia, ib}, 1, &iy);
    if (run(n, (const void *[]){iav, ibv}, (void *[]){iyv}, "idiv"))
        check_i("int64 div truncates", iyv, (int64_t[]){3, -3, 4503599627370496LL, 0}, 4);
    n = node(CT_OP_SUB, 2, (ct_value *[]){ia, ib}, 1, &iy);
    if (run(n, (const void *[]){iav, ibv}, (void *[]){iyv}, "isub"))
        check_i("int64 sub exact beyond 2^53", iyv, (int64_t[]){5, -9, 9007199254740991LL, -2}, 4);
    ibv[0] = 0;
    n = node(CT_OP_DIV, 2, (ct_value *[]){ia, ib}, 1, &iy);
    ct_status st = ct_eval_node(n, (const void *[]){iav, ibv}, (void *[]){iyv});
    report(st && strstr(ct_status_msg(st), "Div") && strstr(ct_status_msg(st), "division by zero"),
           "int division by zero is an error naming the op");
    ct_status_free(st);

    /* comparisons give bool; Where selects */
    ct_value *cmp = val(CT_BOOL, S(2, D(2), D(3)));
    uint8_t cmpv[6];
    n = node(CT_OP_GREATER, 2, (ct_value *[]){a, c}, 1, &cmp);
    if (run(n, (const void *[]){av, cv}, (void *[]){cmpv}, "greater")) {
        uint8_t want[6] = {0, 0, 1, 0, 1, 1};
        report(!memcmp(cmpv, want, 6), "greater broadcast");
    }
    n = node(CT_OP_WHERE, 3, (ct_value *[]){cmp, a, b}, 1, &y);
    if (run(n, (const void *[]){cmpv, av, bv}, (void *[]){yv}, "where"))
        check_f("where", yv, (float[]){10, 20, 3, 10, 5, 6}, 6, 0);

    /* variadic Max, Sum */
    n = node(CT_OP_MAX, 3, (ct_value *[]){a, b, c}, 1, &y);
    if (run(n, (const void *[]){av, (float[]){3, 0, 0}, cv}, (void *[]){yv}, "max"))
        check_f("max of three", yv, (float[]){3, 2, 3, 4, 5, 6}, 6, 0);
    n = node(CT_OP_SUM, 3, (ct_value *[]){a, b, c}, 1, &y);
    if (run(n, (const void *[]){av, bv, cv}, (void *[]){yv}, "sum"))
        check_f("sum of three", yv, (float[]){13, 24, 35, 18, 29, 40}, 6, 0);

    /* Pow, Not, And */
    n = node(CT_OP_POW, 2, (ct_value *[]){a, c}, 1, &y);
    if (run(n, (const void *[]){av, cv}, (void *[]){yv}, "pow"))
        check_f("pow", yv, (float[]){1, 4, 9, 256, 625, 1296}, 6, 0);
    ct_value *bb = val(CT_BOOL, S(2, D(2), D(3)));
    uint8_t bbv[6];
    n = node(CT_OP_NOT, 1, &cmp, 1, &bb);
    if (run(n, (const void *[]){cmpv}, (void *[]){bbv}, "not"))
        report(bbv[0] == 1 && bbv[2] == 0 && bbv[5] == 0, "not");
}

static void test_unary(void)
{
    ct_value *x = val(CT_F32, S(1, D(5))), *y = val(CT_F32, S(1, D(5)));
    float xv[5] = {-3, -0.5f, 0, 0.5f, 4}, yv[5];
    ct_node *n = node(CT_OP_RELU, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "relu")) check_f("relu", yv, (float[]){0, 0, 0, 0.5f, 4}, 5, 0);
    n = node(CT_OP_HARD_SWISH, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "hardswish"))
        check_f("hardswish", yv, (float[]){0, -0.5f * 2.5f / 6, 0, 0.5f * 3.5f / 6, 4}, 5, 1e-7);
    n = node(CT_OP_HARD_SIGMOID, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "hardsigmoid"))
        check_f("hardsigmoid", yv, (float[]){0, 0.4f, 0.5f, 0.6f, 1}, 5, 1e-7);
    n = node(CT_OP_LEAKY_RELU, 1, &x, 1, &y);
    ct_node_set_float(g, n, "alpha", 0.1f);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "leakyrelu"))
        check_f("leakyrelu", yv, (float[]){-0.3f, -0.05f, 0, 0.5f, 4}, 5, 1e-7);
    n = node(CT_OP_SIGMOID, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "sigmoid"))
        check_f("sigmoid", yv, (float[]){0.04742587f, 0.37754067f, 0.5f, 0.62245933f, 0.98201379f}, 5, 1e-7);
    n = node(CT_OP_ERF, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "erf"))
        check_f("erf", yv, (float[]){-0.99997791f, -0.52049988f, 0, 0.52049988f, 0.99999998f}, 5, 1e-7);
    n = node(CT_OP_FLOOR, 1, &x, 1, &y);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "floor")) check_f("floor", yv, (float[]){-3, -1, 0, 0, 4}, 5, 0);
    /* Clip with min input only */
    ct_value *lo = val(CT_F32, S(0));
    n = node(CT_OP_CLIP, 3, (ct_value *[]){x, lo, NULL}, 1, &y);
    if (run(n, (const void *[]){xv, (float[]){-1}, NULL}, (void *[]){yv}, "clip"))
        check_f("clip min only", yv, (float[]){-1, -0.5f, 0, 0.5f, 4}, 5, 0);
    /* Softmax / LogSoftmax along axis 0 of a 2x2 */
    ct_value *m = val(CT_F32, S(2, D(2), D(2))), *my = val(CT_F32, S(2, D(2), D(2)));
    float mv[4] = {0, 1, 0, 3}, myv[4];
    n = node(CT_OP_SOFTMAX, 1, &m, 1, &my);
    ct_node_set_int(g, n, "axis", 0);
    if (run(n, (const void *[]){mv}, (void *[]){myv}, "softmax"))
        check_f("softmax axis 0", myv, (float[]){0.5f, 0.11920292f, 0.5f, 0.88079708f}, 4, 1e-7);
    n = node(CT_OP_LOG_SOFTMAX, 1, &m, 1, &my);
    if (run(n, (const void *[]){mv}, (void *[]){myv}, "logsoftmax"))
        check_f("logsoftmax axis -1", myv, (float[]){-1.31326169f, -0.31326169f, -3.04858735f, -0.04858735f}, 4, 1e-6);
}

static void test_cast(void)
{
    ct_value *x = val(CT_F32, S(1, D(4))), *yi = val(CT_I64, S(1, D(4))), *yb = val(CT_BOOL, S(1, D(4)));
    ct_value *yh = val(CT_F16, S(1, D(4))), *yf = val(CT_F32, S(1, D(4)));
    float xv[4] = {-2.7f, 0, 0.25f, 65504}, yfv[4];
    int64_t yiv[4];
    uint8_t ybv[4];
    uint16_t yhv[4];
    ct_node *n = node(CT_OP_CAST, 1, &x, 1, &yi);
    if (run(n, (const void *[]){xv}, (void *[]){yiv}, "cast f->i"))
        check_i("cast float->int64 truncates", yiv, (int64_t[]){-2, 0, 0, 65504}, 4);
    n = node(CT_OP_CAST, 1, &x, 1, &yb);
    if (run(n, (const void *[]){xv}, (void *[]){ybv}, "cast f->b"))
        report(ybv[0] == 1 && ybv[1] == 0 && ybv[2] == 1 && ybv[3] == 1, "cast float->bool");
    n = node(CT_OP_CAST, 1, &x, 1, &yh);
    if (run(n, (const void *[]){xv}, (void *[]){yhv}, "cast f->h"))
        report(yhv[2] == 0x3400 && yhv[3] == 0x7bff, "cast float->float16 bits");
    n = node(CT_OP_CAST, 1, &yh, 1, &yf);
    if (run(n, (const void *[]){yhv}, (void *[]){yfv}, "cast h->f"))
        check_f("cast float16->float", yfv, (float[]){-2.6992188f, 0, 0.25f, 65504}, 4, 0);
    ct_value *i32 = val(CT_I32, S(1, D(2))), *o64 = val(CT_I64, S(1, D(2)));
    int64_t ov[2];
    n = node(CT_OP_CAST, 1, &i32, 1, &o64);
    if (run(n, (const void *[]){(int32_t[]){-5, 2147483647}}, (void *[]){ov}, "cast i32->i64"))
        check_i("cast int32->int64", ov, (int64_t[]){-5, 2147483647}, 2);
}

/* The exporter's Shape -> Gather -> Unsqueeze -> Concat chain, one node at a time. */
static void test_shape_chain(void)
{
    ct_value *x = val(CT_F32, S(4, D(2), D(3), D(5), D(7)));
    ct_value *sh = val(CT_I64, S(1, D(4))), *idx = val(CT_I64, S(0)), *gv = val(CT_I64, S(0));
    int64_t shv[4], gvv[1];
    ct_node *n = node(CT_OP_SHAPE, 1, &x, 1, &sh);
    if (run(n, (const void *[]){NULL}, (void *[]){shv}, "shape")) check_i("shape", shv, (int64_t[]){2, 3, 5, 7}, 4);
    ct_value *sh2 = val(CT_I64, S(1, D(2)));
    int64_t sh2v[2];
    n = node(CT_OP_SHAPE, 1, &x, 1, &sh2);
    ct_node_set_int(g, n, "start", 1);
    ct_node_set_int(g, n, "end", -1);
    if (run(n, (const void *[]){NULL}, (void *[]){sh2v}, "shape start/end")) check_i("shape start/end", sh2v, (int64_t[]){3, 5}, 2);
    n = node(CT_OP_GATHER, 2, (ct_value *[]){sh, idx}, 1, &gv);
    if (run(n, (const void *[]){shv, (int64_t[]){-1}}, (void *[]){gvv}, "gather")) check_i("gather scalar index", gvv, (int64_t[]){7}, 1);
    ct_value *ax = val(CT_I64, S(1, D(1))), *u = val(CT_I64, S(1, D(1)));
    int64_t uv[1];
    n = node(CT_OP_UNSQUEEZE, 2, (ct_value *[]){gv, ax}, 1, &u);
    if (run(n, (const void *[]){gvv, (int64_t[]){0}}, (void *[]){uv}, "unsqueeze")) check_i("unsqueeze", uv, (int64_t[]){7}, 1);
    ct_value *cc = val(CT_I64, S(1, D(3)));
    int64_t ccv[3];
    n = node(CT_OP_CONCAT, 3, (ct_value *[]){u, u, ax}, 1, &cc);
    ct_node_set_int(g, n, "axis", 0);
    if (run(n, (const void *[]){uv, uv, (int64_t[]){-1}}, (void *[]){ccv}, "concat")) check_i("concat", ccv, (int64_t[]){7, 7, -1}, 3);
    ct_value *sz = val(CT_I64, S(0));
    int64_t szv[1];
    n = node(CT_OP_SIZE, 1, &x, 1, &sz);
    if (run(n, (const void *[]){NULL}, (void *[]){szv}, "size")) check_i("size", szv, (int64_t[]){210}, 1);
    /* Gather along axis 1 of a 2-D with a 2-D index */
    ct_value *m = val(CT_F32, S(2, D(2), D(3))), *ix = val(CT_I32, S(2, D(1), D(2))), *gm = val(CT_F32, S(3, D(2), D(1), D(2)));
    float gmv[4];
    n = node(CT_OP_GATHER, 2, (ct_value *[]){m, ix}, 1, &gm);
    ct_node_set_int(g, n, "axis", 1);
    if (run(n, (const void *[]){(float[]){1, 2, 3, 4, 5, 6}, (int32_t[]){2, 0}}, (void *[]){gmv}, "gather axis 1"))
        check_f("gather axis 1", gmv, (float[]){3, 1, 6, 4}, 4, 0);
    /* out of range index: error */
    n = node(CT_OP_GATHER, 2, (ct_value *[]){sh, idx}, 1, &gv);
    ct_status st = ct_eval_node(n, (const void *[]){shv, (int64_t[]){4}}, (void *[]){gvv});
    report(st && strstr(ct_status_msg(st), "Gather"), "gather out of range is an error");
    ct_status_free(st);
}

static void test_movement(void)
{
    float xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (float)i;
    ct_value *x = val(CT_F32, S(3, D(2), D(3), D(4)));
    /* Transpose perm (2,0,1) */
    ct_value *t = val(CT_F32, S(3, D(4), D(2), D(3)));
    float tv[24];
    ct_node *n = node(CT_OP_TRANSPOSE, 1, &x, 1, &t);
    ct_node_set_ints(g, n, "perm", (int64_t[]){2, 0, 1}, 3);
    if (run(n, (const void *[]){xv}, (void *[]){tv}, "transpose"))
        report(tv[0] == 0 && tv[1] == 4 && tv[3] == 12 && tv[6] == 1 && tv[23] == 23, "transpose");
    /* Slice: axis 2 from -1 backwards step -2 -> idx 3,1; axis 1 [1, 100) */
    ct_value *s = val(CT_F32, S(3, D(2), D(2), D(2)));
    ct_value *i2 = val(CT_I64, S(1, D(2)));
    float sv[8];
    n = node(CT_OP_SLICE, 5, (ct_value *[]){x, i2, i2, i2, i2}, 1, &s);
    if (run(n, (const void *[]){xv, (int64_t[]){-1, 1}, (int64_t[]){-100, 100}, (int64_t[]){2, 1}, (int64_t[]){-2, 1}},
            (void *[]){sv}, "slice"))
        check_f("slice negative step", sv, (float[]){7, 5, 11, 9, 19, 17, 23, 21}, 8, 0);
    /* Split axis 2 into 1 and 3 */
    ct_value *p1 = val(CT_F32, S(3, D(2), D(3), D(1))), *p2 = val(CT_F32, S(3, D(2), D(3), D(3)));
    float p1v[6], p2v[18];
    n = node(CT_OP_SPLIT, 2, (ct_value *[]){x, i2}, 2, (ct_value *[]){p1, p2});
    ct_node_set_int(g, n, "axis", -1);
    if (run(n, (const void *[]){xv, (int64_t[]){1, 3}}, (void *[]){p1v, p2v}, "split")) {
        check_f("split first", p1v, (float[]){0, 4, 8, 12, 16, 20}, 6, 0);
        check_f("split second", p2v, (float[]){1, 2, 3, 5, 6, 7}, 6, 0);
    }
    /* Concat on axis 1 */
    ct_value *cc = val(CT_F32, S(3, D(2), D(6), D(4)));
    float ccv[48];
    n = node(CT_OP_CONCAT, 2, (ct_value *[]){x, x}, 1, &cc);
    ct_node_set_int(g, n, "axis", 1);
    if (run(n, (const void *[]){xv, xv}, (void *[]){ccv}, "concat axis 1"))
        report(ccv[11] == 11 && ccv[12] == 0 && ccv[24] == 12 && ccv[47] == 23, "concat axis 1");
    /* Expand [3,1] -> [2,3,2]; Tile [2,2] x (1,2) */
    ct_value *e = val(CT_F32, S(2, D(3), D(1))), *eo = val(CT_F32, S(3, D(2), D(3), D(2))), *es = val(CT_I64, S(1, D(3)));
    float eov[12];
    n = node(CT_OP_EXPAND, 2, (ct_value *[]){e, es}, 1, &eo);
    if (run(n, (const void *[]){(float[]){1, 2, 3}, (int64_t[]){2, 1, 2}}, (void *[]){eov}, "expand"))
        check_f("expand", eov, (float[]){1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3}, 12, 0);
    ct_value *ti = val(CT_F32, S(2, D(2), D(2))), *to = val(CT_F32, S(2, D(2), D(4)));
    float tov[8];
    n = node(CT_OP_TILE, 2, (ct_value *[]){ti, i2}, 1, &to);
    if (run(n, (const void *[]){(float[]){1, 2, 3, 4}, (int64_t[]){1, 2}}, (void *[]){tov}, "tile"))
        check_f("tile", tov, (float[]){1, 2, 1, 2, 3, 4, 3, 4}, 8, 0);
    /* Pad reflect / edge / constant on [3] by (2, 1) */
    ct_value *pin = val(CT_F32, S(1, D(3))), *pout = val(CT_F32, S(1, D(6))), *pp = val(CT_I64, S(1, D(2)));
    ct_value *pc = val(CT_F32, S(0));
    float pov[6];
    const char *modes[3] = {"reflect", "edge", "constant"};
    float want[3][6] = {{3, 2, 1, 2, 3, 2}, {1, 1, 1, 2, 3, 3}, {9, 9, 1, 2, 3, 9}};
    for (int i = 0; i < 3; i++) {
        n = node(CT_OP_PAD, 3, (ct_value *[]){pin, pp, pc}, 1, &pout);
        ct_node_set_string(g, n, "mode", modes[i]);
        if (run(n, (const void *[]){(float[]){1, 2, 3}, (int64_t[]){2, 1}, (float[]){9}}, (void *[]){pov}, modes[i]))
            check_f(modes[i], pov, want[i], 6, 0);
    }
    /* Range, ConstantOfShape */
    ct_value *r0 = val(CT_I64, S(0)), *ro = val(CT_I64, S(1, D(4)));
    int64_t rov[4];
    n = node(CT_OP_RANGE, 3, (ct_value *[]){r0, r0, r0}, 1, &ro);
    if (run(n, (const void *[]){(int64_t[]){10}, (int64_t[]){2}, (int64_t[]){-2}}, (void *[]){rov}, "range"))
        check_i("range", rov, (int64_t[]){10, 8, 6, 4}, 4);
    ct_value *co = val(CT_I64, S(2, D(2), D(2)));
    int64_t cov[4];
    n = node(CT_OP_CONSTANT_OF_SHAPE, 1, &i2, 1, &co);
    ct_shape one = S(1, D(1));
    ct_attr a = {.name = "value", .type = CT_ATTR_TENSOR,
                 .t = ct_graph_add_tensor(g, "cos_value", CT_VALUE_CONST, CT_I64, &one, (int64_t[]){42})};
    ct_node_add_attr(g, n, &a);
    if (run(n, (const void *[]){(int64_t[]){2, 2}}, (void *[]){cov}, "constantofshape"))
        check_i("constantofshape", cov, (int64_t[]){42, 42, 42, 42}, 4);
}

static void test_conv(void)
{
    float xv[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, ones[4] = {1, 1, 1, 1}, yv[9];
    ct_value *x = val(CT_F32, S(4, D(1), D(1), D(3), D(3))), *w = val(CT_F32, S(4, D(1), D(1), D(2), D(2)));
    ct_value *y22 = val(CT_F32, S(4, D(1), D(1), D(2), D(2))), *y11 = val(CT_F32, S(4, D(1), D(1), D(1), D(1)));
    ct_value *y33 = val(CT_F32, S(4, D(1), D(1), D(3), D(3)));
    ct_node *n = node(CT_OP_CONV, 2, (ct_value *[]){x, w}, 1, &y22);
    if (run(n, (const void *[]){xv, ones}, (void *[]){yv}, "conv")) check_f("conv plain", yv, (float[]){12, 16, 24, 28}, 4, 0);
    n = node(CT_OP_CONV, 2, (ct_value *[]){x, w}, 1, &y22);
    ct_node_set_ints(g, n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
    ct_node_set_ints(g, n, "strides", (int64_t[]){2, 2}, 2);
    if (run(n, (const void *[]){xv, ones}, (void *[]){yv}, "conv pad stride"))
        check_f("conv pads strides", yv, (float[]){1, 5, 11, 28}, 4, 0);
    n = node(CT_OP_CONV, 2, (ct_value *[]){x, w}, 1, &y11);
    ct_node_set_ints(g, n, "dilations", (int64_t[]){2, 2}, 2);
    if (run(n, (const void *[]){xv, ones}, (void *[]){yv}, "conv dilation")) check_f("conv dilations", yv, (float[]){20}, 1, 0);
    n = node(CT_OP_CONV, 2, (ct_value *[]){x, w}, 1, &y33);
    ct_node_set_string(g, n, "auto_pad", "SAME_UPPER");
    if (run(n, (const void *[]){xv, ones}, (void *[]){yv}, "conv same_upper"))
        check_f("conv SAME_UPPER", yv, (float[]){12, 16, 9, 24, 28, 15, 15, 17, 9}, 9, 0);
    n = node(CT_OP_CONV, 2, (ct_value *[]){x, w}, 1, &y33);
    ct_node_set_string(g, n, "auto_pad", "SAME_LOWER");
    if (run(n, (const void *[]){xv, ones}, (void *[]){yv}, "conv same_lower"))
        check_f("conv SAME_LOWER", yv, (float[]){1, 3, 5, 5, 12, 16, 11, 24, 28}, 9, 0);
    /* depthwise: 2 channels, group 2, 1x1 weights 2 and 3, bias 1 and -1 */
    ct_value *x2 = val(CT_F32, S(4, D(1), D(2), D(1), D(2))), *w2 = val(CT_F32, S(4, D(2), D(1), D(1), D(1)));
    ct_value *b2 = val(CT_F32, S(1, D(2))), *y2 = val(CT_F32, S(4, D(1), D(2), D(1), D(2)));
    n = node(CT_OP_CONV, 3, (ct_value *[]){x2, w2, b2}, 1, &y2);
    ct_node_set_int(g, n, "group", 2);
    if (run(n, (const void *[]){(float[]){1, 2, 3, 4}, (float[]){2, 3}, (float[]){1, -1}}, (void *[]){yv}, "conv depthwise"))
        check_f("conv depthwise + bias", yv, (float[]){3, 5, 8, 11}, 4, 0);
    /* 1-D conv */
    ct_value *x1 = val(CT_F32, S(3, D(1), D(1), D(4))), *w1 = val(CT_F32, S(3, D(1), D(1), D(2))), *y1 = val(CT_F32, S(3, D(1), D(1), D(3)));
    n = node(CT_OP_CONV, 2, (ct_value *[]){x1, w1}, 1, &y1);
    if (run(n, (const void *[]){(float[]){1, 2, 3, 4}, (float[]){1, -1}}, (void *[]){yv}, "conv 1d"))
        check_f("conv 1-D", yv, (float[]){-1, -1, -1}, 3, 0);
    /* channel/group mismatch is an error naming the node */
    n = node(CT_OP_CONV, 2, (ct_value *[]){x2, w}, 1, &y2);
    ct_status st = ct_eval_node(n, (const void *[]){xv, ones}, (void *[]){yv});
    report(st && strstr(ct_status_msg(st), "Conv") && strstr(ct_status_msg(st), n->name), "conv mismatch is an error");
    ct_status_free(st);
}

static void test_pool(void)
{
    float xv[16], yv[9];
    int64_t iv[4];
    for (int i = 0; i < 16; i++) xv[i] = (float)i;
    ct_value *x = val(CT_F32, S(4, D(1), D(1), D(4), D(4))), *y = val(CT_F32, S(4, D(1), D(1), D(2), D(2)));
    ct_value *yi = val(CT_I64, S(4, D(1), D(1), D(2), D(2)));
    ct_node *n = node(CT_OP_MAX_POOL, 1, &x, 2, (ct_value *[]){y, yi});
    ct_node_set_ints(g, n, "kernel_shape", (int64_t[]){3, 3}, 2);
    ct_node_set_ints(g, n, "strides", (int64_t[]){2, 2}, 2);
    ct_node_set_int(g, n, "ceil_mode", 1);
    if (run(n, (const void *[]){xv}, (void *[]){yv, iv}, "maxpool ceil")) {
        check_f("maxpool ceil_mode", yv, (float[]){10, 11, 14, 15}, 4, 0);
        check_i("maxpool indices", iv, (int64_t[]){10, 11, 14, 15}, 4);
    }
    ct_value *x3 = val(CT_F32, S(4, D(1), D(1), D(3), D(3))), *y3 = val(CT_F32, S(4, D(1), D(1), D(3), D(3)));
    float x3v[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int inc = 0; inc < 2; inc++) {
        n = node(CT_OP_AVERAGE_POOL, 1, &x3, 1, &y3);
        ct_node_set_ints(g, n, "kernel_shape", (int64_t[]){3, 3}, 2);
        ct_node_set_ints(g, n, "pads", (int64_t[]){1, 1, 1, 1}, 4);
        ct_node_set_int(g, n, "count_include_pad", inc);
        if (run(n, (const void *[]){x3v}, (void *[]){yv}, "avgpool"))
            check_f(inc ? "avgpool count_include_pad" : "avgpool exclude pad", yv,
                    inc ? (float[]){12 / 9.f, 21 / 9.f, 16 / 9.f, 27 / 9.f, 45 / 9.f, 33 / 9.f, 24 / 9.f, 39 / 9.f, 28 / 9.f}
                        : (float[]){3, 3.5f, 4, 4.5f, 5, 5.5f, 6, 6.5f, 7},
                    9, 1e-6);
    }
    /* ceil_mode average: the last window hangs past the input, divisor counts only real cells */
    ct_value *y2 = val(CT_F32, S(4, D(1), D(1), D(2), D(2)));
    n = node(CT_OP_AVERAGE_POOL, 1, &x3, 1, &y2);
    ct_node_set_ints(g, n, "kernel_shape", (int64_t[]){2, 2}, 2);
    ct_node_set_ints(g, n, "strides", (int64_t[]){2, 2}, 2);
    ct_node_set_int(g, n, "ceil_mode", 1);
    if (run(n, (const void *[]){x3v}, (void *[]){yv}, "avgpool ceil"))
        check_f("avgpool ceil_mode", yv, (float[]){3, 4.5f, 7.5f, 9}, 4, 1e-6);
    ct_value *gp = val(CT_F32, S(4, D(1), D(1), D(1), D(1)));
    n = node(CT_OP_GLOBAL_AVERAGE_POOL, 1, &x3, 1, &gp);
    if (run(n, (const void *[]){x3v}, (void *[]){yv}, "gap")) check_f("global average pool", yv, (float[]){5}, 1, 1e-7);
    n = node(CT_OP_GLOBAL_MAX_POOL, 1, &x3, 1, &gp);
    if (run(n, (const void *[]){x3v}, (void *[]){yv}, "gmp")) check_f("global max pool", yv, (float[]){9}, 1, 0);
}

static void test_linalg(void)
{
    ct_value *a = val(CT_F32, S(2, D(2), D(3))), *b = val(CT_F32, S(2, D(2), D(3))), *c = val(CT_F32, S(1, D(2)));
    ct_value *y = val(CT_F32, S(2, D(2), D(2)));
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {1, 0, 1, 0, 1, 0}, yv[8];
    ct_node *n = node(CT_OP_GEMM, 3, (ct_value *[]){a, b, c}, 1, &y);
    ct_node_set_int(g, n, "transB", 1);
    ct_node_set_float(g, n, "alpha", 2);
    ct_node_set_float(g, n, "beta", 0.5f);
    if (run(n, (const void *[]){av, bv, (float[]){10, 20}}, (void *[]){yv}, "gemm"))
        check_f("gemm transB alpha beta", yv, (float[]){13, 14, 25, 20}, 4, 0);
    /* MatMul: [2,1,2,3] x [2,3,1] -> [2,2,2,1] (batch broadcast) */
    ct_value *ma = val(CT_F32, S(4, D(2), D(1), D(2), D(3))), *mb = val(CT_F32, S(3, D(2), D(3), D(1)));
    ct_value *my = val(CT_F32, S(4, D(2), D(2), D(2), D(1)));
    float mav[12] = {1, 2, 3, 4, 5, 6, 1, 1, 1, 2, 2, 2}, mbv[6] = {1, 1, 1, 1, 0, 0};
    n = node(CT_OP_MATMUL, 2, (ct_value *[]){ma, mb}, 1, &my);
    if (run(n, (const void *[]){mav, mbv}, (void *[]){yv}, "matmul"))
        check_f("matmul batch broadcast", yv, (float[]){6, 15, 1, 4, 3, 6, 1, 2}, 8, 0);
    /* 1-D x 2-D */
    ct_value *v = val(CT_F32, S(1, D(2))), *vy = val(CT_F32, S(1, D(3)));
    n = node(CT_OP_MATMUL, 2, (ct_value *[]){v, a}, 1, &vy);
    if (run(n, (const void *[]){(float[]){1, -1}, av}, (void *[]){yv}, "matmul 1d")) check_f("matmul vector", yv, (float[]){-3, -3, -3}, 3, 0);
}

static void test_batchnorm(void)
{
    ct_value *x = val(CT_F32, S(4, D(2), D(2), D(1), D(2))), *y = val(CT_F32, S(4, D(2), D(2), D(1), D(2)));
    ct_value *p = val(CT_F32, S(1, D(2))), *rm = val(CT_F32, S(1, D(2))), *rv = val(CT_F32, S(1, D(2)));
    float xv[8] = {1, 2, 10, 20, 3, 4, 30, 40}, yv[8], rmv[2], rvv[2];
    float scale[2] = {1, 2}, bias[2] = {0, 1}, mean[2] = {1, 10}, var[2] = {4, 100};
    ct_node *n = node(CT_OP_BATCH_NORM, 5, (ct_value *[]){x, p, p, p, p}, 1, &y);
    ct_node_set_float(g, n, "epsilon", 0);
    if (run(n, (const void *[]){xv, scale, bias, mean, var}, (void *[]){yv}, "bn"))
        check_f("batchnorm inference", yv, (float[]){0, 0.5f, 1, 3, 1, 1.5f, 5, 7}, 8, 1e-6);
    n = node(CT_OP_BATCH_NORM, 5, (ct_value *[]){x, p, p, p, p}, 3, (ct_value *[]){y, rm, rv});
    ct_node_set_float(g, n, "epsilon", 0);
    ct_node_set_float(g, n, "momentum", 0.5f);
    ct_node_set_int(g, n, "training_mode", 1);
    /* channel 0: {1,2,3,4} mean 2.5 var 1.25; channel 1: {10,20,30,40} mean 25 var 125 */
    if (run(n, (const void *[]){xv, scale, bias, mean, var}, (void *[]){yv, rmv, rvv}, "bn train")) {
        check_f("batchnorm training running mean", rmv, (float[]){1.75f, 17.5f}, 2, 1e-6);
        check_f("batchnorm training running var", rvv, (float[]){2.625f, 112.5f}, 2, 1e-5);
        float s0 = 1 / sqrtf(1.25f), s1 = 2 / sqrtf(125);
        check_f("batchnorm training output", yv,
                (float[]){-1.5f * s0, -0.5f * s0, -15 * s1 + 1, -5 * s1 + 1, 0.5f * s0, 1.5f * s0, 5 * s1 + 1, 15 * s1 + 1}, 8, 1e-6);
    }
}

static void test_reduce(void)
{
    float xv[6] = {1, 2, 3, 4, 5, 6}, yv[6];
    ct_value *x = val(CT_F32, S(2, D(2), D(3))), *ax = val(CT_I64, S(1, D(1)));
    ct_value *k1 = val(CT_F32, S(2, D(1), D(3))), *k0 = val(CT_F32, S(1, D(2))), *all = val(CT_F32, S(2, D(1), D(1)));
    ct_node *n = node(CT_OP_REDUCE_MEAN, 2, (ct_value *[]){x, ax}, 1, &k1);
    if (run(n, (const void *[]){xv, (int64_t[]){0}}, (void *[]){yv}, "reducemean")) check_f("reducemean axis 0", yv, (float[]){2.5f, 3.5f, 4.5f}, 3, 0);
    n = node(CT_OP_REDUCE_SUM, 2, (ct_value *[]){x, ax}, 1, &k0);
    ct_node_set_int(g, n, "keepdims", 0);
    if (run(n, (const void *[]){xv, (int64_t[]){-1}}, (void *[]){yv}, "reducesum")) check_f("reducesum axis -1 no keepdims", yv, (float[]){6, 15}, 2, 0);
    n = node(CT_OP_REDUCE_MAX, 1, &x, 1, &all);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "reducemax")) check_f("reducemax all", yv, (float[]){6}, 1, 0);
    n = node(CT_OP_REDUCE_PROD, 1, &x, 1, &all);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "reduceprod")) check_f("reduceprod all", yv, (float[]){720}, 1, 0);
    n = node(CT_OP_REDUCE_L2, 2, (ct_value *[]){x, ax}, 1, &k0);
    ct_node_set_int(g, n, "keepdims", 0);
    if (run(n, (const void *[]){xv, (int64_t[]){1}}, (void *[]){yv}, "reducel2"))
        check_f("reducel2", yv, (float[]){sqrtf(14), sqrtf(77)}, 2, 1e-6);
    ct_value *same = val(CT_F32, S(2, D(2), D(3)));
    n = node(CT_OP_REDUCE_MIN, 1, &x, 1, &same);
    ct_node_set_int(g, n, "noop_with_empty_axes", 1);
    if (run(n, (const void *[]){xv}, (void *[]){yv}, "reducemin noop")) check_f("noop_with_empty_axes", yv, xv, 6, 0);
    ct_value *am = val(CT_I64, S(1, D(2)));
    int64_t amv[2];
    n = node(CT_OP_ARG_MAX, 1, &x, 1, &am);
    ct_node_set_int(g, n, "axis", 1);
    ct_node_set_int(g, n, "keepdims", 0);
    if (run(n, (const void *[]){(float[]){1, 7, 7, 9, 0, 9}}, (void *[]){amv}, "argmax")) check_i("argmax first", amv, (int64_t[]){1, 0}, 2);
    ct_node_set_int(g, n, "select_last_index", 1);
    if (run(n, (const void *[]){(float[]){1, 7, 7, 9, 0, 9}}, (void *[]){amv}, "argmax last")) check_i("argmax last", amv, (int64_t[]){2, 2}, 2);
}

static void test_errors(void)
{
    /* symbolic shapes are refused, naming the value */
    ct_shape s = S(2, CT_DIM_BATCH, D(3));
    ct_value *x = ct_graph_add_value(g, "sym_x", CT_VALUE_INPUT, CT_F32, &s), *y = val(CT_F32, S(2, D(1), D(3)));
    ct_node *n = node(CT_OP_RELU, 1, &x, 1, &y);
    float buf[3];
    ct_status st = ct_eval_node(n, (const void *[]){buf}, (void *[]){buf});
    report(st && strstr(ct_status_msg(st), "sym_x") && strstr(ct_status_msg(st), "Relu"), "symbolic shape is an error");
    ct_status_free(st);
    /* Dropout with training_mode=true is not supported */
    ct_value *xs = val(CT_F32, S(1, D(3))), *ys = val(CT_F32, S(1, D(3))), *mask = val(CT_BOOL, S(1, D(3)));
    ct_shape sc = S(0);
    ct_value *ratio = ct_graph_add_tensor(g, "ratio", CT_VALUE_CONST, CT_F32, &sc, (float[]){0.5f});
    ct_value *tm = ct_graph_add_tensor(g, "tm", CT_VALUE_CONST, CT_BOOL, &sc, (uint8_t[]){1});
    n = node(CT_OP_DROPOUT, 3, (ct_value *[]){xs, ratio, tm}, 1, &ys);
    report(!ct_eval_supports(n), "dropout training not supported");
    ct_value *tf = ct_graph_add_tensor(g, "tf", CT_VALUE_CONST, CT_BOOL, &sc, (uint8_t[]){0});
    n = node(CT_OP_DROPOUT, 3, (ct_value *[]){xs, ratio, tf}, 2, (ct_value *[]){ys, mask});
    uint8_t mv[3];
    float yv[3];
    if (run(n, (const void *[]){(float[]){1, 2, 3}, ratio->data, tf->data}, (void *[]){yv, mv}, "dropout"))
        report(yv[2] == 3 && mv[0] == 1 && mv[2] == 1, "dropout inference is identity, mask all true");
}

int main(void)
{
    g = ct_graph_new("test_eval");
    test_broadcast();
    test_unary();
    test_cast();
    test_shape_chain();
    test_movement();
    test_conv();
    test_pool();
    test_linalg();
    test_batchnorm();
    test_reduce();
    test_errors();
    ct_graph_free(g);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

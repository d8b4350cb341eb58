/* test_ir.c — unit tests of the IR core: op table, attributes, graphs,
 * toposort, compaction, cloning and the verifier. Prints "N passed, N failed". */
#include <string.h>

#include "ir.h"

static int passed, failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

/* Expect an error whose message contains `needle`. */
static void check_error(ct_status st, const char *needle, int line)
{
    if (st && strstr(ct_status_msg(st), needle)) {
        passed++;
    } else {
        failed++;
        fprintf(stderr, "%s:%d: expected an error containing '%s', got '%s'\n", __FILE__, line, needle,
                ct_status_msg(st));
    }
    ct_status_free(st);
}
#define CHECK_ERROR(expr, needle) check_error((expr), (needle), __LINE__)

static ct_shape shape2(int64_t a, int64_t b) { return (ct_shape){2, {a, b}}; }

/* x -> Relu -> y -> Add(y, w) -> z */
static ct_graph *small_graph(void)
{
    ct_graph *g = ct_graph_new("small");
    ct_shape s = shape2(2, 3);
    float w[6] = {1, 2, 3, 4, 5, 6};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_value *wv = ct_graph_add_tensor(g, "w", CT_VALUE_PARAM, CT_F32, &s, w);
    ct_value *y = ct_graph_add_value(g, "y", CT_VALUE_TEMP, CT_F32, &s);
    ct_value *z = ct_graph_add_value(g, "z", CT_VALUE_TEMP, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_graph_add_node(g, CT_OP_RELU, "relu", 1, &x, 1, &y);
    ct_value *add_in[2] = {y, wv};
    ct_graph_add_node(g, CT_OP_ADD, "add", 2, add_in, 1, &z);
    ct_graph_add_output(g, z);
    return g;
}

static void test_op_table(void)
{
    CHECK(ct_op_lookup("", "Conv") == CT_OP_CONV);
    CHECK(ct_op_lookup("ai.onnx", "Relu") == CT_OP_RELU);
    CHECK(ct_op_lookup(NULL, "Gemm") == CT_OP_GEMM);
    CHECK(ct_op_lookup("", "NoSuchOp") == CT_OP_COUNT);
    CHECK(ct_op_lookup("com.microsoft", "Conv") == CT_OP_COUNT);
    CHECK(ct_op_attr_type(CT_OP_CONV, "group") == CT_ATTR_INT);
    CHECK(ct_op_attr_type(CT_OP_CONV, "pads") == CT_ATTR_INTS);
    CHECK(ct_op_attr_type(CT_OP_CONV, "auto_pad") == CT_ATTR_STRING);
    CHECK(ct_op_attr_type(CT_OP_CONV, "pad") == CT_ATTR_UNDEFINED);
    CHECK(ct_op_attr_type(CT_OP_CONSTANT, "value") == CT_ATTR_TENSOR);
    CHECK(ct_op_attr_type(CT_OP_RELU, "alpha") == CT_ATTR_UNDEFINED);
    for (int i = 0; i < CT_OP_COUNT; i++) CHECK(ct_op_table[i].name && ct_op_table[i].min_in >= 0);
}

static void test_dtypes_shapes(void)
{
    CHECK(ct_dtype_size(CT_F32) == 4 && ct_dtype_size(CT_BF16) == 2 && ct_dtype_size(CT_BOOL) == 1);
    CHECK(ct_dtype_from_onnx(ct_dtype_to_onnx(CT_I64)) == CT_I64);
    CHECK(ct_dtype_from_onnx(8 /* STRING */) == CT_DTYPE_UNDEFINED);
    CHECK(ct_dtype_from_name("float") == CT_F32);
    ct_shape s = {4, {1, 3, 224, 224}};
    CHECK(ct_shape_numel(&s) == 150528);
    ct_shape big = {3, {INT64_C(1) << 40, INT64_C(1) << 30, 4}};
    CHECK(ct_shape_numel(&big) == -1);
    ct_shape sym = {2, {CT_DIM_BATCH, 10}};
    CHECK(!ct_shape_is_static(&sym) && ct_shape_numel(&sym) == -1);
    char buf[64];
    CHECK(!strcmp(ct_shape_str(&sym, buf, sizeof buf), "[N,10]"));
    ct_shape scalar = {0, {0}};
    CHECK(ct_shape_numel(&scalar) == 1);
}

static void test_attrs(void)
{
    ct_graph *g = small_graph();
    ct_node *n = g->nodes[0];
    int64_t pads[4] = {1, 1, 1, 1};
    ct_node_set_ints(g, n, "pads", pads, 4);
    ct_node_set_int(g, n, "group", 2);
    ct_node_set_int(g, n, "group", 3); /* replaces */
    int count = 0;
    const int64_t *p = ct_node_attr_ints(n, "pads", &count);
    CHECK(count == 4 && p && p[3] == 1);
    CHECK(ct_node_attr_int(n, "group", 0) == 3);
    CHECK(n->n_attr == 2);
    CHECK(ct_node_attr_float(n, "group", 7.0f) == 7.0f); /* wrong type -> default */
    ct_node_remove_attr(n, "pads");
    CHECK(n->n_attr == 1 && !ct_node_attr(n, "pads"));
    ct_graph_free(g);
}

static void test_verify(void)
{
    ct_graph *g = small_graph();
    ct_status st = ct_graph_verify(g);
    CHECK(st == CT_OK);
    ct_status_free(st);

    /* A duplicate name. */
    ct_shape s = shape2(2, 3);
    ct_graph_add_value(g, "y", CT_VALUE_TEMP, CT_F32, &s);
    CHECK_ERROR(ct_graph_verify(g), "duplicate value name 'y'");
    ct_graph_free(g);

    /* Wrong attribute type on a Relu (unknown attribute). */
    g = small_graph();
    ct_node_set_int(g, g->nodes[0], "alpha", 1);
    CHECK_ERROR(ct_graph_verify(g), "unknown attribute 'alpha'");
    ct_graph_free(g);

    /* Arity. */
    g = small_graph();
    g->nodes[1]->n_in = 1;
    CHECK_ERROR(ct_graph_verify(g), "has 1 inputs");
    ct_graph_free(g);

    /* Order: Add before Relu reads y before it is written. */
    g = small_graph();
    ct_node *t = g->nodes[0];
    g->nodes[0] = g->nodes[1];
    g->nodes[1] = t;
    g->nodes[0]->id = 0;
    g->nodes[1]->id = 1;
    CHECK_ERROR(ct_graph_verify(g), "before node 'relu' writes it");
    /* toposort repairs the order */
    st = ct_graph_toposort(g);
    CHECK(st == CT_OK);
    ct_status_free(st);
    CHECK(g->nodes[0]->op == CT_OP_RELU);
    st = ct_graph_verify(g);
    CHECK(st == CT_OK);
    ct_status_free(st);
    ct_graph_free(g);

    /* A temp no node produces. */
    g = small_graph();
    ct_value *orphan = ct_graph_add_value(g, "orphan", CT_VALUE_TEMP, CT_F32, &s);
    g->nodes[1]->in[0] = orphan;
    CHECK_ERROR(ct_graph_verify(g), "'orphan' is not produced by any node");
    ct_graph_free(g);

    /* A parameter without data. */
    g = small_graph();
    ct_graph_add_value(g, "nodata", CT_VALUE_PARAM, CT_F32, &s);
    CHECK_ERROR(ct_graph_verify(g), "param 'nodata' has no data");
    ct_graph_free(g);
}

static void test_cycle(void)
{
    /* a = Relu(b); b = Relu(a) */
    ct_graph *g = ct_graph_new("cycle");
    ct_shape s = shape2(1, 1);
    ct_value *a = ct_graph_add_value(g, "a", CT_VALUE_TEMP, CT_F32, &s);
    ct_value *b = ct_graph_add_value(g, "b", CT_VALUE_TEMP, CT_F32, &s);
    ct_graph_add_node(g, CT_OP_RELU, "r1", 1, &b, 1, &a);
    ct_graph_add_node(g, CT_OP_RELU, "r2", 1, &a, 1, &b);
    ct_graph_add_output(g, b);
    CHECK_ERROR(ct_graph_toposort(g), "cycle");
    CHECK_ERROR(ct_graph_verify(g), "cycle");
    ct_graph_free(g);

    /* A node reading its own output. */
    g = ct_graph_new("self");
    a = ct_graph_add_value(g, "a", CT_VALUE_TEMP, CT_F32, &s);
    ct_graph_add_node(g, CT_OP_RELU, "r", 1, &a, 1, &a);
    CHECK_ERROR(ct_graph_toposort(g), "reads its own output");
    ct_graph_free(g);
}

static void test_compact_clone(void)
{
    ct_graph *g = small_graph();
    ct_value *dead = ct_graph_add_value(g, "dead", CT_VALUE_TEMP, CT_F32, &g->values[0]->shape);
    ct_graph_add_node(g, CT_OP_RELU, "dead_relu", 1, &g->values[0], 1, &dead);
    CHECK(g->n_nodes == 3);
    bool keep[3] = {true, true, false};
    ct_graph_compact(g, keep);
    CHECK(g->n_nodes == 2 && !ct_graph_find_value(g, "dead"));
    CHECK(ct_graph_use_count(g, ct_graph_find_value(g, "y")) == 1);
    ct_status st = ct_graph_verify(g);
    CHECK(st == CT_OK);
    ct_status_free(st);

    ct_graph *c = ct_graph_clone(g);
    st = ct_graph_verify(c);
    CHECK(st == CT_OK);
    ct_status_free(st);
    CHECK(c->n_nodes == g->n_nodes && c->n_values == g->n_values);
    ct_value *w = ct_graph_find_value(c, "w");
    CHECK(w && w->data != ct_graph_find_value(g, "w")->data && ((float *)w->data)[5] == 6.0f);
    CHECK(!strcmp(ct_graph_unique_name(c, "x"), "x_1"));
    CHECK(!strcmp(ct_graph_unique_name(c, "fresh"), "fresh"));

    /* replace_uses rewires node inputs and graph outputs */
    ct_value *y = ct_graph_find_value(c, "y"), *z = ct_graph_find_value(c, "z");
    ct_graph_replace_uses(c, z, y);
    CHECK(c->outputs[0] == y);
    ct_graph_free(c);
    ct_graph_free(g);
}

static void test_batch(void)
{
    ct_graph *g = ct_graph_new("b");
    ct_shape s = {2, {CT_DIM_BATCH, 4}};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_graph_set_batch(g, 8);
    CHECK(x->shape.dims[0] == 8 && g->batch == 8);
    ct_graph_free(g);
}

static void test_assigns(void)
{
    ct_graph *g = small_graph();
    ct_value *w = ct_graph_find_value(g, "w"), *z = ct_graph_find_value(g, "z");
    ct_graph_add_assign(g, w, z);
    ct_status st = ct_graph_verify(g);
    CHECK(st == CT_OK);
    ct_status_free(st);
    CHECK(ct_graph_use_count(g, z) == 2);
    ct_graph *c = ct_graph_clone(g);
    CHECK(c->n_assigns == 1 && !strcmp(c->assigns[0].dst->name, "w"));
    ct_graph_free(c);
    ct_graph_add_assign(g, w, z);
    CHECK_ERROR(ct_graph_verify(g), "updated twice");
    g->n_assigns = 1;
    g->assigns[0].dst = ct_graph_find_value(g, "y");
    CHECK_ERROR(ct_graph_verify(g), "not a parameter or state");
    ct_graph_free(g);
}

static void test_status(void)
{
    ct_status st = ct_errorf("node '%s' is %d", "n", 3);
    st = ct_status_wrap(st, "model.onnx");
    CHECK(!strcmp(ct_status_msg(st), "model.onnx: node 'n' is 3"));
    ct_status_free(st);
    CHECK(!strcmp(ct_status_msg(CT_OK), "ok"));
}

int main(void)
{
    test_op_table();
    test_dtypes_shapes();
    test_attrs();
    test_verify();
    test_cycle();
    test_compact_clone();
    test_batch();
    test_assigns();
    test_status();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

/* test_onnx_text.c — the ONNX text syntax: every .onnxtxt file in tests/graphs parses,
 * prints, reparses to an equal graph and prints identically; bad input gives
 * line:column messages; mutated input never crashes.
 * Usage: test_onnx_text GRAPH_DIR */
#include "frontend.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static int accepted_mutations;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            failures++;                                                                            \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

static const char *vname(const ct_value *v) { return v ? v->name : ""; }

static bool attrs_equal(const ct_attr *a, const ct_attr *b)
{
    if (strcmp(a->name, b->name) || a->type != b->type) return false;
    switch (a->type) {
    case CT_ATTR_INT: return a->i == b->i;
    case CT_ATTR_FLOAT: return !memcmp(&a->f, &b->f, sizeof a->f) || (a->f != a->f && b->f != b->f);
    case CT_ATTR_STRING: return !strcmp(a->s ? a->s : "", b->s ? b->s : "");
    case CT_ATTR_INTS: return a->n == b->n && (!a->n || !memcmp(a->ints, b->ints, sizeof(int64_t) * (size_t)a->n));
    case CT_ATTR_FLOATS: return a->n == b->n && (!a->n || !memcmp(a->floats, b->floats, sizeof(float) * (size_t)a->n));
    case CT_ATTR_STRINGS:
        if (a->n != b->n) return false;
        for (int i = 0; i < a->n; i++)
            if (strcmp(a->strings[i], b->strings[i])) return false;
        return true;
    case CT_ATTR_TENSOR:
        return a->t->dtype == b->t->dtype && ct_shape_equal(&a->t->shape, &b->t->shape) &&
               !strcmp(a->t->name ? a->t->name : "", b->t->name ? b->t->name : "") &&
               !memcmp(a->t->data, b->t->data, ct_value_nbytes(a->t));
    default: return false;
    }
}

/* Same values (by name), nodes (in order), inputs and outputs. */
static bool graphs_equal(const ct_graph *a, const ct_graph *b, const char *what)
{
    CHECK(!strcmp(a->name, b->name), "%s: graph name '%s' vs '%s'", what, a->name, b->name);
    CHECK(a->opset == b->opset && a->ir_version == b->ir_version, "%s: opset/ir_version differ", what);
    CHECK(a->n_values == b->n_values, "%s: %d values vs %d", what, a->n_values, b->n_values);
    for (int i = 0; i < a->n_values; i++) {
        const ct_value *v = a->values[i];
        const ct_value *w = ct_graph_find_value(b, v->name);
        CHECK(w, "%s: value '%s' missing", what, v->name);
        CHECK(v->kind == w->kind && v->dtype == w->dtype && v->frozen == w->frozen,
              "%s: value '%s' kind %s/%s dtype %s/%s", what, v->name, ct_value_kind_name(v->kind),
              ct_value_kind_name(w->kind), ct_dtype_name(v->dtype), ct_dtype_name(w->dtype));
        CHECK(v->shape_known == w->shape_known && (!v->shape_known || ct_shape_equal(&v->shape, &w->shape)),
              "%s: value '%s' shape differs", what, v->name);
        CHECK(!v->data == !w->data, "%s: value '%s' data presence differs", what, v->name);
        if (v->data) CHECK(!memcmp(v->data, w->data, ct_value_nbytes(v)), "%s: value '%s' data differs", what, v->name);
    }
    CHECK(a->n_nodes == b->n_nodes, "%s: %d nodes vs %d", what, a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const ct_node *m = a->nodes[i], *n = b->nodes[i];
        CHECK(m->op == n->op && !strcmp(m->name, n->name), "%s: node %d '%s' vs '%s'", what, i, m->name, n->name);
        CHECK(m->n_in == n->n_in && m->n_out == n->n_out && m->n_attr == n->n_attr, "%s: node '%s' arity", what,
              m->name);
        for (int j = 0; j < m->n_in; j++)
            CHECK(!strcmp(vname(m->in[j]), vname(n->in[j])), "%s: node '%s' input %d", what, m->name, j);
        for (int j = 0; j < m->n_out; j++)
            CHECK(!strcmp(vname(m->out[j]), vname(n->out[j])), "%s: node '%s' output %d", what, m->name, j);
        for (int j = 0; j < m->n_attr; j++)
            CHECK(attrs_equal(&m->attrs[j], &n->attrs[j]), "%s: node '%s' attribute '%s'", what, m->name,
                  m->attrs[j].name);
    }
    CHECK(a->n_inputs == b->n_inputs && a->n_outputs == b->n_outputs, "%s: input/output counts", what);
    for (int i = 0; i < a->n_inputs; i++)
        CHECK(!strcmp(a->inputs[i]->name, b->inputs[i]->name), "%s: input %d", what, i);
    for (int i = 0; i < a->n_outputs; i++)
        CHECK(!strcmp(a->outputs[i]->name, b->outputs[i]->name), "%s: output %d", what, i);
    return true;
}

/* parse -> print -> parse -> print: equal graphs, identical text. */
static bool round_trip(const ct_graph *g, const char *label)
{
    bool ok = false;
    ct_graph *g2 = NULL, *g3 = NULL;
    char *t1 = ct_onnx_text_print(g), *t2 = NULL, *t3 = NULL;
    ct_status st = ct_onnx_text_parse(t1, strlen(t1), label, &g2);
    if (st) {
        fprintf(stderr, "FAIL %s: printed text does not parse: %s\n--- text ---\n%s\n", label, ct_status_msg(st), t1);
        ct_status_free(st);
        failures++;
        goto done;
    }
    t2 = ct_onnx_text_print(g2);
    if (strcmp(t1, t2)) {
        fprintf(stderr, "FAIL %s: print/parse/print differs\n--- first ---\n%s\n--- second ---\n%s\n", label, t1, t2);
        failures++;
        goto done;
    }
    if (!graphs_equal(g, g2, label)) goto done;
    /* a clone prints the same */
    g3 = ct_graph_clone(g2);
    t3 = ct_onnx_text_print(g3);
    if (strcmp(t1, t3)) {
        fprintf(stderr, "FAIL %s: clone prints differently\n", label);
        failures++;
        goto done;
    }
    ok = true;
done:
    free(t1);
    free(t2);
    free(t3);
    ct_graph_free(g2);
    ct_graph_free(g3);
    return ok;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    buf[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Mutations of valid text: parse must not crash; anything it accepts must
 * print and reparse to the same text. */
static void fuzz_text(const char *src, size_t len, const char *label, int rounds)
{
    static const char pieces[][16] = {"<", ">", "(", ")", "[", "]", "{", "}", ",", "=", ":", "\"", "#", "-",
                                     "1e999", "-inf", "nan", "N", "float", "?", "\\", "@", "\xff", "999999999999",
                                     "", "=>", ".", "int64[", "\"\"", "\n"};
    char *buf = malloc(len + 64);
    for (int r = 0; r < rounds; r++) {
        size_t n = len;
        memcpy(buf, src, len);
        int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits && n > 0; e++) {
            size_t at = rng() % n;
            switch (rng() % 4) {
            case 0: buf[at] = (char)(rng() & 0xff); break;                 /* flip a byte */
            case 1: n = at; break;                                         /* truncate */
            case 2: memmove(buf + at, buf + at + 1, n - at - 1); n--; break; /* delete */
            default: {                                                     /* insert a token */
                const char *pc = pieces[rng() % (sizeof pieces / sizeof pieces[0])];
                size_t pl = strlen(pc);
                if (n + pl > len + 60) break;
                memmove(buf + at + pl, buf + at, n - at);
                memcpy(buf + at, pc, pl);
                n += pl;
            }
            }
        }
        ct_graph *g = NULL;
        ct_status st = ct_onnx_text_parse(buf, n, label, &g);
        if (st) {
            const char *msg = ct_status_msg(st);
            if (!msg || !msg[0]) {
                fprintf(stderr, "FAIL %s: empty error message\n", label);
                failures++;
            }
            ct_status_free(st);
            continue;
        }
        accepted_mutations++;
        char lab[1200];
        snprintf(lab, sizeof lab, "%s (mutation %d)", label, r);
        round_trip(g, lab);
        ct_graph_free(g);
    }
    free(buf);
}

/* Bad input: a message naming label:line:col and the expectation. */
static bool expect_error(const char *src, const char *want1, const char *want2)
{
    ct_graph *g = NULL;
    ct_status st = ct_onnx_text_parse(src, strlen(src), "bad.onnxtxt", &g);
    CHECK(st && !g, "accepted bad input: %s", src);
    const char *msg = ct_status_msg(st);
    bool ok = strstr(msg, want1) && (!want2 || strstr(msg, want2));
    if (!ok) {
        fprintf(stderr, "FAIL: message '%s' lacks '%s'%s%s\n", msg, want1, want2 ? " / " : "", want2 ? want2 : "");
        failures++;
    }
    ct_status_free(st);
    return ok;
}

static void bad_inputs(void)
{
    expect_error("", "bad.onnxtxt:1:1:", "graph name");
    expect_error("<ir_version: 8, opset_import: [\"\" : 17]>\ng (float[2] x) => (float[2] y) {\n  y = Relu(x\n}",
                 "bad.onnxtxt:4:1:", "expected ')'");
    expect_error("g (float[2] x) => (y) {\n  y = Relu <alpha = > (x)\n}", "bad.onnxtxt:2:21:", "attribute value");
    expect_error("g (float[2] x) => (y) {\n  y = Frobnicate(x)\n  z = Wibble(y)\n  w = Frobnicate(z)\n}",
                 "3 nodes with unsupported ops", "Wibble");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(q)\n}", "bad.onnxtxt:2:3:", "'q', which is not defined");
    expect_error("g (float[2, N] x) => (y) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:13:", "batch");
    expect_error("g (float[] x) => (y) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:", "unknown rank");
    expect_error("g (x) => (y) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:4:", "needs a type");
    expect_error("g (float[2] x) => (y)\n<float[3] w = {1.0, 2.0}>\n{\n  y = Add(x, w)\n}", "bad.onnxtxt:2:",
                 "2 values");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(x)\n  y = Relu(x)\n}", "bad.onnxtxt:3:3:", "already defined");
    expect_error("g (float[2] x) => (y) {\n  y = Softmax <axis = 1.5> (x)\n}", "bad.onnxtxt:2:16:",
                 "expected int");
    expect_error("g (float[2] x) => (y) {\n  y = Relu <bogus = 1> (x)\n}", "bad.onnxtxt:2:", "unknown attribute");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(x)\n", "bad.onnxtxt:3:1:", "node or '}'");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(x, x)\n}", "bad.onnxtxt:2:3:", "inputs");
    expect_error("g (string[2] x) => (y) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:4:", "not supported");
    expect_error("<opset_import: [\"\" : 3]> g (float[2] x) => (y) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:",
                 "opset 3");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(x)\n}\nextra", "bad.onnxtxt:4:1:", "after the graph");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(\"unterminated)\n}", "bad.onnxtxt:2:12:", "unterminated");
    expect_error("g (float[2] x) => (y)\n<int8[1] w = {300}>\n{\n  y = Relu(x)\n}", "bad.onnxtxt:2:15:", "int8");
    expect_error("g (float[2] x) => (y) {\n  y = Relu(x)\n  x2 = Add(y, x2)\n}", "cycle", NULL);
    expect_error("g (float[2] x) => (zz) {\n  y = Relu(x)\n}", "bad.onnxtxt:1:20:", "'zz' is not defined");
    /* NUL bytes and binary garbage */
    {
        static const char bin[] = "g (float[2] x)\0\xff\xfe => (y) {}";
        ct_graph *g = NULL;
        ct_status st = ct_onnx_text_parse(bin, sizeof bin - 1, "bin", &g);
        if (!st || g) {
            fprintf(stderr, "FAIL: binary input accepted\n");
            failures++;
        }
        ct_status_free(st);
        ct_graph_free(g);
    }
    /* pure random bytes */
    for (int r = 0; r < 2000; r++) {
        unsigned char buf[200];
        size_t n = rng() % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)rng();
        ct_graph *g = NULL;
        ct_status st = ct_onnx_text_parse((const char *)buf, n, "random", &g);
        ct_status_free(st);
        ct_graph_free(g);
    }
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s GRAPH_DIR [FUZZ_ROUNDS]\n", argv[0]);
        return 2;
    }
    if (!strcmp(argv[1], "--print") && argc > 2) { /* debugging aid: print a file as contra reads it */
        ct_graph *g = NULL;
        ct_status st = ct_onnx_text_load(argv[2], &g);
        if (st) {
            fprintf(stderr, "%s\n", ct_status_msg(st));
            ct_status_free(st);
            return 1;
        }
        char *t = ct_onnx_text_print(g);
        fputs(t, stdout);
        free(t);
        ct_graph_free(g);
        return 0;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 300;
    DIR *d = opendir(argv[1]);
    if (!d) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 2;
    }
    char *names[256];
    int n_names = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < 256) {
        size_t l = strlen(e->d_name);
        if (l > 8 && !strcmp(e->d_name + l - 8, ".onnxtxt")) names[n_names++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof names[0], compare_names);
    int checked = 0;
    for (int i = 0; i < n_names; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
        ct_graph *g = NULL;
        ct_status st = ct_onnx_text_load(path, &g);
        if (st) {
            fprintf(stderr, "FAIL %s: %s\n", path, ct_status_msg(st));
            ct_status_free(st);
            failures++;
        } else {
            if (round_trip(g, path)) checked++;
            ct_graph_free(g);
        }
        size_t len;
        char *src = read_file(path, &len);
        if (src) fuzz_text(src, len, path, rounds);
        free(src);
        free(names[i]);
    }
    bad_inputs();
    printf("%d/%d graphs round trip; %d mutated texts accepted and round tripped; %d failures\n", checked, n_names,
           accepted_mutations, failures);
    if (n_names < 10) {
        fprintf(stderr, "FAIL: expected at least 10 test graphs in %s\n", argv[1]);
        failures++;
    }
    return failures ? 1 : 0;
}

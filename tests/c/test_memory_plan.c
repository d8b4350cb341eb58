/* test_memory_plan.c — unit tests of passes/memory_plan.c: hand-built graphs
 * with known in-place opportunities, and random graphs whose plans are
 * checked by simulating the schedule on a tagged arena (every value read
 * must still hold what its producer wrote). Prints "N passed, N failed". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"
#include "passes.h"

static int n_pass, n_fail;

static void report(bool ok, const char *what)
{
    if (ok) {
        n_pass++;
    } else {
        n_fail++;
        printf("FAIL %s\n", what);
    }
}

static ct_value *tv(ct_graph *g, ct_dtype t, int64_t a, int64_t b)
{
    ct_shape s = {2, {a, b}};
    return ct_graph_add_value(g, ct_graph_unique_name(g, "t"), CT_VALUE_TEMP, t, &s);
}

static ct_node *nd(ct_graph *g, ct_op op, int nin, ct_value **in, ct_value *out)
{
    return ct_graph_add_node(g, op, ct_graph_unique_name(g, ct_op_table[op].name), nin, in, 1, &out);
}

/* The content tag a value holds: views hold their input's. */
static int content_of(const ct_value *v, int *memo)
{
    if (memo[v->id] >= 0) return memo[v->id];
    int c = v->id;
    const ct_node *p = v->producer;
    if (p && p->out[0] == v && v->kind == CT_VALUE_TEMP && p->in[0] && p->in[0]->kind == CT_VALUE_TEMP &&
        p->in[0]->offset == v->offset &&
        (p->op == CT_OP_IDENTITY || p->op == CT_OP_RESHAPE || p->op == CT_OP_FLATTEN || p->op == CT_OP_SQUEEZE ||
         p->op == CT_OP_UNSQUEEZE || p->op == CT_OP_DROPOUT))
        c = content_of(p->in[0], memo);
    memo[v->id] = c;
    return c;
}

/* Simulate the schedule: writes tag every byte of an output, every read
 * checks its bytes. Also checks alignment and the arena bound. Returns the
 * number of violations found (0 is good). */
static int plan_simulate(const ct_graph *g, bool verbose)
{
    int bad = 0;
    int64_t A = g->arena_bytes;
    int *arena = malloc(sizeof *arena * (size_t)(A ? A : 1));
    int *memo = malloc(sizeof *memo * (size_t)g->n_values);
    for (int64_t i = 0; i < A; i++) arena[i] = -1;
    for (int i = 0; i < g->n_values; i++) memo[i] = -1;
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_TEMP) {
            if (v->offset != -1) { bad++; if (verbose) printf("  %s: non-temp has offset\n", v->name); }
            continue;
        }
        if (v->offset < 0 || v->offset % 64 || v->offset + (int64_t)ct_value_nbytes(v) > A) {
            bad++;
            if (verbose) printf("  %s: bad offset %lld (arena %lld)\n", v->name, (long long)v->offset, (long long)A);
        }
    }
    if (bad) goto done;
    for (int k = 0; k < g->n_nodes; k++) {
        const ct_node *n = g->nodes[k];
        for (int j = 0; j < n->n_in; j++) {
            const ct_value *v = n->in[j];
            if (!v || v->kind != CT_VALUE_TEMP) continue;
            int c = content_of(v, memo);
            for (int64_t b = 0; b < (int64_t)ct_value_nbytes(v); b++)
                if (arena[v->offset + b] != c) {
                    bad++;
                    if (verbose) printf("  node %d reads %s: clobbered by %d\n", k, v->name, arena[v->offset + b]);
                    break;
                }
        }
        /* An output may share bytes with an input of its own node only as an
         * exact in-place alias of an op that allows it. */
        bool inplace_op = n->op != CT_OP_MATMUL && n->op != CT_OP_CONV && n->op != CT_OP_CONCAT;
        for (int j = 0; j < n->n_out; j++)
            for (int i = 0; i < n->n_in; i++) {
                const ct_value *o = n->out[j], *v = n->in[i];
                if (!o || !v || v->kind != CT_VALUE_TEMP) continue;
                int64_t ob = (int64_t)ct_value_nbytes(o), vb = (int64_t)ct_value_nbytes(v);
                bool overlap = o->offset < v->offset + vb && v->offset < o->offset + ob;
                bool alias = o->offset == v->offset && ob == vb && inplace_op && j == 0;
                if (overlap && !alias) {
                    bad++;
                    if (verbose) printf("  node %d writes %s over its input %s\n", k, o->name, v->name);
                }
            }
        for (int j = 0; j < n->n_out; j++) {
            const ct_value *v = n->out[j];
            if (!v) continue;
            int c = content_of(v, memo);
            for (int64_t b = 0; b < (int64_t)ct_value_nbytes(v); b++) arena[v->offset + b] = c;
        }
    }
    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        if (v->kind != CT_VALUE_TEMP) continue;
        int c = content_of(v, memo);
        for (int64_t b = 0; b < (int64_t)ct_value_nbytes(v); b++)
            if (arena[v->offset + b] != c) {
                bad++;
                if (verbose) printf("  output %s clobbered\n", v->name);
                break;
            }
    }
done:
    free(arena);
    free(memo);
    return bad;
}

static int64_t naive_sum(const ct_graph *g)
{
    int64_t s = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->kind == CT_VALUE_TEMP) s += (int64_t)ct_value_nbytes(g->values[i]);
    return s;
}

/* x -> Conv -> Relu -> Conv -> Add(x') -> Relu -> Reshape -> Gemm-like: a residual block. */
static void test_residual(void)
{
    ct_graph *g = ct_graph_new("residual");
    ct_shape s = {2, {16, 64}};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_value *w = ct_graph_add_tensor(g, "w", CT_VALUE_PARAM, CT_F32, &s, NULL);
    ct_value *c1 = tv(g, CT_F32, 16, 64), *r1 = tv(g, CT_F32, 16, 64), *c2 = tv(g, CT_F32, 16, 64);
    ct_value *a = tv(g, CT_F32, 16, 64), *r2 = tv(g, CT_F32, 16, 64), *rs = tv(g, CT_F32, 1, 1024);
    ct_value *y = tv(g, CT_F32, 1, 10), *c3 = tv(g, CT_F32, 16, 64), *c4 = tv(g, CT_F32, 16, 64);
    nd(g, CT_OP_CONV, 2, (ct_value *[]){x, w}, c1);
    nd(g, CT_OP_RELU, 1, &c1, r1);              /* c1 dies here: in place */
    nd(g, CT_OP_CONV, 2, (ct_value *[]){r1, w}, c2);
    nd(g, CT_OP_CONV, 2, (ct_value *[]){r1, w}, c3);
    nd(g, CT_OP_ADD, 2, (ct_value *[]){c2, r1}, a); /* c2 dies: in place; r1 still read below */
    nd(g, CT_OP_RELU, 1, &r1, c4);              /* r1 dies here */
    nd(g, CT_OP_ADD, 2, (ct_value *[]){a, c4}, r2);
    ct_value *shp = ct_graph_add_tensor(g, "shape", CT_VALUE_CONST, CT_I64, &(ct_shape){1, {2}}, (int64_t[]){1, 1024});
    nd(g, CT_OP_RESHAPE, 2, (ct_value *[]){r2, shp}, rs);
    nd(g, CT_OP_MATMUL, 2, (ct_value *[]){rs, w}, y);
    ct_graph_add_output(g, y);
    ct_graph_add_output(g, c3);
    ct_status st = ct_pass_memory_plan(g);
    report(!st, "residual: plan succeeds");
    if (st) {
        printf("  %s\n", ct_status_msg(st));
        ct_status_free(st);
        ct_graph_free(g);
        return;
    }
    report(r1->offset == c1->offset, "relu in place on a dying input");
    report(a->offset == c2->offset, "add in place on its dying first input");
    report(c4->offset == r1->offset, "relu in place once its input group dies");
    report(rs->offset == r2->offset, "reshape aliases its input");
    report(x->offset == -1 && w->offset == -1 && shp->offset == -1, "inputs and persistent values stay out of the arena");
    report(c3->last_use == g->n_nodes && y->last_use == g->n_nodes, "graph outputs live to the end");
    report(c1->first_use == 0 && c1->last_use == 1 && r1->last_use == 5, "lifetimes");
    report(g->arena_bytes % 64 == 0 && g->arena_bytes <= naive_sum(g), "arena aligned and below the naive sum");
    int bad = plan_simulate(g, true);
    report(bad == 0, "residual: simulated schedule reads what was written");
    ct_graph_free(g);
}

static void test_symbolic(void)
{
    ct_graph *g = ct_graph_new("sym");
    ct_shape s = {2, {CT_DIM_BATCH, 8}};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_value *y = ct_graph_add_value(g, "relu_out_sym", CT_VALUE_TEMP, CT_F32, &s);
    nd(g, CT_OP_RELU, 1, &x, y);
    ct_graph_add_output(g, y);
    ct_status st = ct_pass_memory_plan(g);
    report(st && strstr(ct_status_msg(st), "relu_out_sym"), "symbolic shape is an error naming the value");
    ct_status_free(st);
    ct_graph_free(g);
}

/* A graph output must not be overwritten in place. */
static void test_output_not_clobbered(void)
{
    ct_graph *g = ct_graph_new("outs");
    ct_shape s = {2, {4, 16}};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_value *a = tv(g, CT_F32, 4, 16), *b = tv(g, CT_F32, 4, 16), *c = tv(g, CT_F32, 4, 16);
    nd(g, CT_OP_EXP, 1, &x, a);
    nd(g, CT_OP_IDENTITY, 1, &a, b);
    nd(g, CT_OP_RELU, 1, &b, c);
    ct_graph_add_output(g, a);
    ct_graph_add_output(g, c);
    ct_status st = ct_pass_memory_plan(g);
    report(!st, "outs: plan succeeds");
    ct_status_free(st);
    report(b->offset == a->offset && c->offset != a->offset, "no in place write over a graph output's alias");
    report(plan_simulate(g, true) == 0, "outs: simulation");
    ct_graph_free(g);
}

/* The source of a state update lives to the end: nothing may reuse its bytes. */
static void test_assign_source_lives(void)
{
    ct_graph *g = ct_graph_new("assign");
    ct_shape s = {2, {4, 16}};
    ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
    ct_graph_add_input(g, x);
    ct_value *w = ct_graph_add_tensor(g, "w", CT_VALUE_STATE, CT_F32, &s, NULL);
    ct_value *nw = tv(g, CT_F32, 4, 16), *a = tv(g, CT_F32, 4, 16), *b = tv(g, CT_F32, 4, 16);
    ct_value *in2[2] = {w, x};
    nd(g, CT_OP_ADD, 2, in2, nw); /* new state, read by no node */
    nd(g, CT_OP_EXP, 1, &x, a);
    nd(g, CT_OP_RELU, 1, &a, b);
    ct_graph_add_output(g, b);
    ct_graph_add_assign(g, w, nw);
    ct_status st = ct_pass_memory_plan(g);
    report(!st, "assign: plan succeeds");
    ct_status_free(st);
    report(nw->last_use == g->n_nodes, "assign: the source lives to the end");
    report(nw->offset != a->offset && nw->offset != b->offset, "assign: no later value takes its bytes");
    ct_graph_free(g);
}

static unsigned rng_state = 12345;
static unsigned rnd(unsigned n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 16) % n;
}

/* Random DAGs of in-place-able, view and ordinary ops. */
static void test_random(void)
{
    int failures = 0, inplace = 0, total_arena = 0, total_naive = 0;
    for (int trial = 0; trial < 300; trial++) {
        ct_graph *g = ct_graph_new("rand");
        ct_value *pool[64];
        int np = 0;
        int64_t dims[3] = {4, 16, 48};
        ct_shape s = {2, {4, dims[rnd(3)]}};
        ct_value *x = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s);
        ct_graph_add_input(g, x);
        pool[np++] = x;
        int nn = 5 + (int)rnd(40);
        for (int k = 0; k < nn && np < 64; k++) {
            ct_value *a = pool[np - 1 - (int)rnd(np < 6 ? (unsigned)np : 6u)];
            ct_value *b = pool[rnd((unsigned)np)];
            int kind = (int)rnd(6);
            ct_value *o;
            if (kind == 0) { /* unary elementwise */
                o = tv(g, CT_F32, a->shape.dims[0], a->shape.dims[1]);
                nd(g, rnd(2) ? CT_OP_RELU : CT_OP_SIGMOID, 1, &a, o);
            } else if (kind == 1) { /* binary, same shape if possible */
                if (!ct_shape_equal(&a->shape, &b->shape)) b = a;
                o = tv(g, CT_F32, a->shape.dims[0], a->shape.dims[1]);
                nd(g, rnd(2) ? CT_OP_ADD : CT_OP_MUL, 2, (ct_value *[]){a, b}, o);
            } else if (kind == 2) { /* view */
                o = tv(g, CT_F32, a->shape.dims[1], a->shape.dims[0]);
                nd(g, rnd(2) ? CT_OP_IDENTITY : CT_OP_FLATTEN, 1, &a, o);
            } else { /* ordinary op with a new size */
                o = tv(g, CT_F32, 4, dims[rnd(3)]);
                nd(g, CT_OP_MATMUL, 2, (ct_value *[]){a, b}, o);
            }
            pool[np++] = o;
        }
        ct_graph_add_output(g, pool[np - 1]);
        if (rnd(2)) ct_graph_add_output(g, pool[1 + rnd((unsigned)np - 1)]);
        ct_status st = ct_pass_memory_plan(g);
        if (st) {
            printf("  trial %d: %s\n", trial, ct_status_msg(st));
            ct_status_free(st);
            failures++;
        } else {
            int bad = plan_simulate(g, failures == 0);
            if (bad) {
                failures++;
                printf("  trial %d: %d violations\n", trial, bad);
            }
            for (int k = 0; k < g->n_nodes; k++) {
                const ct_node *n = g->nodes[k];
                if (n->n_in && n->in[0]->kind == CT_VALUE_TEMP && n->in[0]->offset == n->out[0]->offset) inplace++;
            }
            if (g->arena_bytes > naive_sum(g)) failures++;
            total_arena += (int)g->arena_bytes;
            total_naive += (int)naive_sum(g);
        }
        ct_graph_free(g);
    }
    printf("random graphs: %d in-place/alias decisions; arena %d bytes vs naive %d\n", inplace, total_arena, total_naive);
    report(failures == 0, "random graphs: plans are valid");
    report(inplace > 100, "random graphs: in-place reuse happens");
}

int main(void)
{
    test_residual();
    test_symbolic();
    test_output_not_clobbered();
    test_assign_source_lives();
    test_random();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

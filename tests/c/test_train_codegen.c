/* test_train_codegen.c — the C backend's state updates (g->assigns), built
 * and run: an update written in place (nothing reads the state after the new
 * value is made) and one copied at the end of forward() (the state is read
 * again after its new value exists), across memory planning and two calls.
 *   test_train_codegen WORKDIR */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen.h"
#include "ir.h"
#include "passes.h"
#include "runtime.h"

static int failures;
#define CHECK(c, ...)                                                                                                  \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            failures++;                                                                                                \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                                \
            printf(__VA_ARGS__);                                                                                       \
            printf("\n");                                                                                              \
        }                                                                                                              \
    } while (0)

static bool ok(ct_status st)
{
    if (!st) return true;
    printf("FAIL: %s\n", ct_status_msg(st));
    ct_status_free(st);
    failures++;
    return false;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "test_train_codegen.out";
    /* s_a, s_b STATE [5]; x INPUT [5]
     *   t = s_a + x         s_a <- t (in place: s_a is not read after t)
     *   u = s_b * x         s_b <- u (copied: s_b is read below after u exists)
     *   w = s_b + u ; out = w * t                                          */
    ct_graph *g = ct_graph_new("assigns");
    ct_shape s5 = {.rank = 1, .dims = {5}};
    float a0[5] = {1, 2, 3, 4, 5}, b0[5] = {0.5f, -1, 2, 0.25f, 3}, x[5] = {0.1f, 0.2f, -0.3f, 0.4f, 1.5f};
    ct_value *sa = ct_graph_add_tensor(g, "s_a", CT_VALUE_STATE, CT_F32, &s5, a0);
    ct_value *sb = ct_graph_add_tensor(g, "s_b", CT_VALUE_STATE, CT_F32, &s5, b0);
    ct_value *xi = ct_graph_add_value(g, "x", CT_VALUE_INPUT, CT_F32, &s5);
    ct_graph_add_input(g, xi);
    ct_value *t = ct_graph_add_value(g, "t", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *u = ct_graph_add_value(g, "u", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *w = ct_graph_add_value(g, "w", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_value *o = ct_graph_add_value(g, "out", CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
    ct_graph_add_node(g, CT_OP_ADD, "add_a", 2, (ct_value *[]){sa, xi}, 1, &t);
    ct_graph_add_node(g, CT_OP_MUL, "mul_b", 2, (ct_value *[]){sb, xi}, 1, &u);
    ct_graph_add_node(g, CT_OP_ADD, "add_bu", 2, (ct_value *[]){sb, u}, 1, &w);
    ct_graph_add_node(g, CT_OP_MUL, "mul_out", 2, (ct_value *[]){w, t}, 1, &o);
    ct_graph_add_output(g, o);
    ct_graph_add_assign(g, sa, t);
    ct_graph_add_assign(g, sb, u);
    g->batch = 1;
    ct_c_program prog = {0};
    ct_rt_program *rt = NULL;
    ct_pass_options po = {0};
    const char *passes[] = {"infer_shapes", "memory_plan"};
    if (!ok(ct_pass_run(g, passes, 2, &po))) goto out;
    if (!ok(ct_codegen_c(g, &prog))) goto out;
    CHECK(strstr(prog.source, "state update \"s_a\": written in place") != NULL, "s_a not updated in place");
    CHECK(strstr(prog.source, "/* state update \"s_b\" */") != NULL, "s_b not copied at the end");
    if (!ok(ct_codegen_c_write(&prog, dir)) || !ok(ct_codegen_c_build(dir, NULL))) goto out;
    if (!ok(ct_rt_program_load(dir, &rt))) goto out;
    int64_t d5 = 5;
    float a[5], b[5];
    memcpy(a, a0, sizeof a);
    memcpy(b, b0, sizeof b);
    for (int call = 0; call < 2; call++) {
        if (!ok(ct_rt_program_set_input(rt, "x", CT_PT_FLOAT, 1, &d5, x)) || !ok(ct_rt_program_run(rt))) goto out;
        const float *ro = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "out"));
        const float *ra = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "s_a"));
        const float *rb = ct_rt_program_tensor(rt, ct_rt_program_find(rt, "s_b"));
        for (int i = 0; i < 5; i++) {
            float tt = a[i] + x[i], uu = b[i] * x[i], want = (b[i] + uu) * tt;
            CHECK(fabsf(ro[i] - want) <= 1e-6f * fabsf(want) + 1e-7f, "call %d out[%d] %g, want %g", call, i, ro[i], want);
            CHECK(ra[i] == tt, "call %d s_a[%d] %g, want %g", call, i, ra[i], tt);
            CHECK(rb[i] == uu, "call %d s_b[%d] %g, want %g", call, i, rb[i], uu);
            a[i] = tt;
            b[i] = uu;
        }
    }
out:
    ct_rt_program_free(rt);
    ct_c_program_free(&prog);
    ct_graph_free(g);
    printf("test_train_codegen: %d failed\n", failures);
    return failures != 0;
}

/* test_models.c — models/resnet at the IR level: every variant builds and
 * verifies, parameter counts equal torchvision's, names follow its
 * state_dict, BatchNorm statistics are STATE, batch symbolic or fixed. */
#include <stdio.h>
#include <string.h>

#include "resnet.h"

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

static int64_t count_params(const ct_graph *g)
{
    int64_t n = 0;
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i]->kind == CT_VALUE_PARAM) n += ct_shape_numel(&g->values[i]->shape);
    return n;
}

static ct_graph *build(ct_resnet_options o)
{
    ct_graph *g = NULL;
    ct_status st = ct_model_resnet_build(&o, &g);
    CHECK(!st, "%s", st ? ct_status_msg(st) : "");
    ct_status_free(st);
    return g;
}

int main(void)
{
    static const struct {
        int depth;
        bool small;
        int classes;
        int64_t params;
    } cases[] = {
        {18, false, 1000, 11689512}, {34, false, 1000, 21797672}, {50, false, 1000, 25557032}, {18, true, 10, 11173962},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ct_resnet_options o = ct_resnet_options_default();
        o.depth = cases[i].depth;
        o.small_input = cases[i].small;
        o.num_classes = cases[i].classes;
        ct_graph *g = build(o);
        if (!g) continue;
        CHECK(count_params(g) == cases[i].params, "resnet%d: %lld parameters", o.depth, (long long)count_params(g));
        ct_graph_free(g);
    }

    /* names, kinds, shapes */
    ct_resnet_options o = ct_resnet_options_default();
    o.depth = 50;
    ct_graph *g = build(o);
    if (g) {
        ct_value *v = ct_graph_find_value(g, "layer1.0.downsample.1.running_var");
        CHECK(v && v->kind == CT_VALUE_STATE && v->shape.rank == 1 && v->shape.dims[0] == 256, "downsample bn");
        v = ct_graph_find_value(g, "layer4.2.conv3.weight");
        CHECK(v && v->kind == CT_VALUE_PARAM && v->shape.dims[0] == 2048 && v->shape.dims[1] == 512, "conv3");
        CHECK(ct_graph_find_value(g, "layer1.0.bn1.num_batches_tracked") == NULL, "no num_batches_tracked");
        CHECK(g->inputs[0]->shape.dims[0] == CT_DIM_BATCH, "symbolic batch");
        CHECK(g->outputs[0]->shape.dims[1] == 1000, "logits");
        int n_bn = 0;
        for (int i = 0; i < g->n_nodes; i++)
            if (g->nodes[i]->op == CT_OP_BATCH_NORM) {
                n_bn++;
                CHECK(ct_node_attr_int(g->nodes[i], "training_mode", -1) == 0, "%s", g->nodes[i]->name);
            }
        CHECK(n_bn == 53, "%d BatchNormalization nodes", n_bn);
        bool found = false;
        for (int i = 0; i < g->n_nodes; i++)
            found |= !strcmp(g->nodes[i]->name, "/layer3/layer3.5/relu_2/Relu");
        CHECK(found, "node /layer3/layer3.5/relu_2/Relu");
        ct_graph_free(g);
    }

    /* tiny representation-only model, fixed batch, one channel */
    o = ct_resnet_options_default();
    CHECK(!ct_model_resnet_options_from_name("resnet18_small_w16", &o), "name");
    o.with_fc = false;
    o.in_channels = 1;
    o.batch = 8;
    o.height = o.width_px = 28;
    g = build(o);
    if (g) {
        const ct_value *out = g->outputs[0];
        CHECK(out->shape.rank == 2 && out->shape.dims[0] == 8 && out->shape.dims[1] == 128, "features (8, 128)");
        CHECK(ct_graph_find_value(g, "fc.weight") == NULL, "no fc");
        CHECK(ct_graph_find_value(g, "conv1.weight")->shape.dims[1] == 1, "one input channel");
        ct_graph_free(g);
    }

    /* bad options */
    o = ct_resnet_options_default();
    o.depth = 101;
    g = NULL;
    ct_status st = ct_model_resnet_build(&o, &g);
    CHECK(st && strstr(ct_status_msg(st), "depth 101"), "depth 101 refused");
    ct_status_free(st);
    st = ct_model_resnet_options_from_name("vgg16", &o);
    CHECK(st && strstr(ct_status_msg(st), "unknown bundled model 'vgg16'"), "unknown name");
    ct_status_free(st);

    if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
    else printf("test_models: ok\n");
    return failures ? 1 : 0;
}

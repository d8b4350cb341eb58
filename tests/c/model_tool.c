/* model_tool.c — builds a bundled ResNet (models/resnet.h) for
 * tests/test_bundled_models.py: prints its persistent tensors as JSON lines
 * and, given an output path, saves it as ONNX (frontend's ct_onnx_save).
 *   model_tool NAME [--classes C] [--no-fc] [--in-ch 1|3] [--batch B]
 *              [--seed S] [--random-bn] [--size HxW] [--onnx OUT] */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "resnet.h"

/* splitmix64 for --random-bn */
static uint64_t mix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double u01(uint64_t *s) { return (double)(mix(s) >> 11) * 0x1p-53; }

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: model_tool NAME [--classes C] [--no-fc] [--in-ch N] [--batch B] [--seed S] "
                        "[--random-bn] [--size HxW] [--onnx OUT]\n");
        return 2;
    }
    ct_resnet_options opt = ct_resnet_options_default();
    ct_status st = ct_model_resnet_options_from_name(argv[1], &opt);
    if (st) goto fail;
    const char *onnx = NULL;
    bool random_bn = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--classes") && i + 1 < argc) opt.num_classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-fc")) opt.with_fc = false;
        else if (!strcmp(argv[i], "--in-ch") && i + 1 < argc) opt.in_channels = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) opt.batch = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) opt.seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--random-bn")) random_bn = true;
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            long long h, w;
            if (sscanf(argv[++i], "%lldx%lld", &h, &w) != 2) {
                fprintf(stderr, "bad --size\n");
                return 2;
            }
            opt.height = h, opt.width_px = w;
        } else if (!strcmp(argv[i], "--onnx") && i + 1 < argc) onnx = argv[++i];
        else {
            fprintf(stderr, "model_tool: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    ct_graph *g = NULL;
    st = ct_model_resnet_build(&opt, &g);
    if (st) goto fail;
    uint64_t rs = opt.seed + 12345;
    int64_t params = 0;
    for (int i = 0; i < g->n_values; i++) {
        ct_value *v = g->values[i];
        if (v->kind != CT_VALUE_PARAM && v->kind != CT_VALUE_STATE) continue;
        int64_t n = ct_shape_numel(&v->shape);
        if (v->kind == CT_VALUE_PARAM) params += n;
        if (random_bn && v->kind == CT_VALUE_STATE) {
            float *d = v->data; /* (C) */
            for (int64_t j = 0; j < n; j++)
                d[j] = ends_with(v->name, "running_var") ? (float)(0.5 + u01(&rs)) : (float)(0.2 * (u01(&rs) - 0.5));
        }
        bool is_bn_affine = v->kind == CT_VALUE_PARAM && v->shape.rank == 1 &&
                            (strstr(v->name, "bn") || strstr(v->name, "downsample.1"));
        if (random_bn && is_bn_affine) {
            float *d = v->data; /* (C) */
            for (int64_t j = 0; j < n; j++)
                d[j] = ends_with(v->name, ".weight") ? (float)(0.5 + u01(&rs)) : (float)(0.2 * (u01(&rs) - 0.5));
        }
        printf("{\"name\":\"%s\",\"kind\":\"%s\",\"shape\":[", v->name, ct_value_kind_name(v->kind));
        for (int d = 0; d < v->shape.rank; d++) printf("%s%" PRId64, d ? "," : "", v->shape.dims[d]);
        printf("]}\n");
    }
    printf("{\"params\":%" PRId64 ",\"nodes\":%d,\"first_node\":\"%s\",\"last_node\":\"%s\"}\n", params, g->n_nodes,
           g->nodes[0]->name, g->nodes[g->n_nodes - 1]->name);
    if (onnx) st = ct_onnx_save(g, onnx);
    ct_graph_free(g);
    if (st) goto fail;
    return 0;
fail:
    fprintf(stderr, "model_tool: %s\n", ct_status_msg(st));
    ct_status_free(st);
    return 1;
}

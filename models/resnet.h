/* resnet.h — bundled encoders: ResNet-18/34/50 built directly as IR graphs
 * in torchvision's layout and naming (parameter values are named exactly as
 * torchvision's state_dict keys, nodes as its ONNX export paths), with
 * torchvision's initialisation from a seed, and small-image variants. */
#ifndef CT_MODELS_RESNET_H
#define CT_MODELS_RESNET_H

#include <stdbool.h>
#include <stdint.h>

#include "ir.h"

typedef struct {
    int depth;          /* 18, 34 or 50 */
    bool small_input;   /* 3x3 stride-1 stem, no max-pool (CIFAR-style images) */
    int width;          /* base width: 64 as torchvision; e.g. 16 or 32 for tiny models */
    int num_classes;    /* fc outputs (torchvision: 1000) */
    bool with_fc;       /* false: stop at the representation (avgpool + flatten) */
    int in_channels;    /* 1 or 3 */
    int64_t batch;      /* > 0 fixed, or CT_DIM_BATCH (symbolic N) */
    int64_t height, width_px; /* input size: 0 picks 224 (32 with small_input) */
    uint64_t seed;      /* parameter initialisation */
} ct_resnet_options;

/* torchvision's defaults: resnet18, 64 wide, 1000 classes, fc, 3 channels,
 * symbolic batch, 224x224, seed 0. */
ct_resnet_options ct_resnet_options_default(void);

/* Build the encoder. The graph has one input "input" (N, C, H, W) float and
 * one output "output": (N, num_classes) logits with fc, else the (N, F)
 * representation (F = 8 * width, or 32 * width for ResNet-50).
 * Parameters are PARAM values, BatchNorm running statistics STATE values;
 * BatchNormalization nodes are in inference form (training_mode = 0).
 * The graph is verified before it is returned. */
ct_status ct_model_resnet_build(const ct_resnet_options *opt, ct_graph **out);

/* Bundled model names for `contra compile --model NAME`:
 * resnet18, resnet34, resnet50 (torchvision, 224x224, fc with 1000 classes)
 * and their small-image variants resnet18_small, resnet34_small,
 * resnet50_small (32x32), with an optional width suffix "_wN"
 * (resnet18_small_w16). Fills opt from the name (other fields keep their
 * values); fails on an unknown name, listing the known ones. */
ct_status ct_model_resnet_options_from_name(const char *name, ct_resnet_options *opt);

#endif

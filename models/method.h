/* method.h — contrastive methods as graphs: attach MoCo v1/v2 (and the CIFAR
 * demo and low-compute recipes), SimCLR, SupCon, BYOL or SimSiam to an
 * imported encoder, giving the whole training graph (heads, key/target
 * copies, loss, backward, state updates) of one step. */
#ifndef CT_METHOD_H
#define CT_METHOD_H

#include <stdint.h>

#include "ir.h"

typedef enum { CT_METHOD_MOCO, CT_METHOD_SIMCLR, CT_METHOD_SUPCON, CT_METHOD_BYOL, CT_METHOD_SIMSIAM } ct_method_kind;

#define CT_HEAD_MAX 8

/* An MLP head: Linear layers of widths dims[0..n-1] (0 means "the
 * representation width d"), ReLU between them; optional BatchNorm1d after
 * each hidden Linear and after the last one. Parameters are named
 * "<prefix>.<i>.weight|bias" with i the layer's index in the equivalent
 * torch.nn.Sequential (Linear, BatchNorm1d, ReLU each take one index). */
typedef struct {
    int n;                      /* number of Linear layers, 0..CT_HEAD_MAX (0: no head) */
    int64_t dims[CT_HEAD_MAX];
    bool bn_hidden;             /* BatchNorm1d after each hidden Linear (before ReLU) */
    bool bias_hidden, bias_last;/* Linear biases */
    int last_bn;                /* after the last Linear: 0 none, 1 BatchNorm1d, 2 BatchNorm1d(affine=False) */
} ct_head_spec;

typedef struct {
    ct_method_kind kind;
    const char *preset;        /* name of the preset that filled the defaults, for messages */
    /* encoder */
    const char *layer;         /* representation layer: a value name, a module name ("avgpool": the last
                                * node exported under "/avgpool/"), "-k" (the k-th last node's output, as
                                * byol-pytorch's hidden_layer -2), or NULL: the input of a final Gemm/MatMul
                                * classifier, else the encoder's output; flattened to (N, d) */
    int64_t batch;             /* B: images per view per step (> 0) */
    int views;                 /* SupCon n_views (>= 2); 2 for the others */
    /* heads */
    int64_t head_in;           /* the width the head expects (0: the representation's width d) */
    ct_head_spec head;         /* MoCo/SimCLR/SupCon head; BYOL/SimSiam projector */
    ct_head_spec predictor;    /* BYOL/SimSiam */
    /* loss */
    double temperature;        /* MoCo, SimCLR, SupCon: > 0 */
    double base_temperature;   /* SupCon */
    bool contrast_all;         /* SupCon contrast_mode "all" (true) or "one" */
    bool use_labels;           /* SupCon: labels input "labels" int64 [B]; false: SimCLR's loss */
    bool use_mask;             /* SupCon: a float input "mask" [B, B] (mask[i][j] = 1 if j is a positive of i)
                                * instead of labels */
    int have_labels;           /* the dataset has labels: 1 yes, 0 no, -1 unknown */
    /* MoCo */
    int64_t queue_size;        /* K >= B */
    double momentum;           /* MoCo key momentum m / BYOL target decay β, in [0, 1] */
    bool symmetric;            /* MoCo CIFAR demo's symmetric loss */
    bool shuffle_bn;           /* key batch permuted by input "shuffle_perm" and restored */
    int bn_splits;             /* Split BatchNorm (>= 1) for both encoders (MoCo) */
    uint64_t seed;             /* queue and head initialisation */
    bool use_momentum;         /* BYOL: false = target is the online network under stop-gradient */
    bool momentum_input;       /* MoCo/BYOL: m/β is a float scalar graph input "momentum" (a schedule,
                                * e.g. BYOL's cosine raise to 1), 1 - m computed in float32 */
    /* recipe (the trainer's; validated here) */
    const char *optimizer;     /* "sgd", "adam", "adamw", "lars"; NULL = no optimizer in the graph */
    double lr, weight_decay, opt_momentum;
    int epochs;
    const char *schedule;      /* "cosine", "step" (x0.1 at milestones), "constant" */
    int milestones[4];         /* step schedule: epochs where lr is multiplied by 0.1 (0-terminated) */
    double lr_final;           /* cosine schedule: the learning rate it decays to */
    const char *augment;       /* the recipe's augmentation (METHODS.md): "moco-v1", "moco-v2", "simclr", "byol" */
    int64_t dataset_size;      /* 0 if unknown */
    bool attach_optimizer;     /* append the optimizer update (needs ops SGDStep/AdamStep/LarsStep) */
    bool no_backward;          /* forward and state updates only (no autodiff) */
    /* data parallel: the graph of one of `ranks` ranks (runtime/dist.c), batch B per rank */
    int ranks;                 /* >= 1 (0: 1); > 1 adds the collectives: the gradients all-reduced
                                * (mean) in buckets before the optimizer, MoCo's keys all-gathered
                                * before the queue (and shuffle BN across ranks: "shuffle_perm" is the
                                * global permutation [ranks*B], input "rank_rows" int64 [B] this rank's
                                * rows rank*B + i), SimCLR/SupCon's embeddings (and labels) all-gathered
                                * for global negatives */
    bool sync_bn;              /* ranks > 1: SyncBatchNorm (statistics over the global batch) */
    double bucket_mb;          /* gradient all-reduce bucket size in MiB (0: 25, as PyTorch DDP) */
    bool fuse_loss;            /* MoCo, SimCLR, SupCon: replace normalize + logits + cross-entropy by one
                                * ContrastiveLoss / InBatchContrastiveLoss node (passes/fuse_loss.h) before
                                * autodiff: forward and backward stream the queue (the similarity matrix) in
                                * tiles instead of keeping the N x (K+1) (N x N) logits; the presets set it */
} ct_method_options;

/* Fill opt with a preset's defaults: "moco-v1", "moco-v2", "moco-cifar",
 * "moco-lowcompute", "simclr", "supcon", "byol", "simsiam". Every field can be
 * overridden afterwards. Error naming the known presets if unknown. */
ct_status ct_method_preset(const char *name, ct_method_options *opt);
const char *const *ct_method_preset_names(void); /* NULL-terminated */

/* Check an options set against the encoder's representation width d (0 if
 * unknown): errors for out-of-range values, warnings (stderr, "contra:
 * warning: ...") for incoherent ones. */
ct_status ct_method_check(const ct_method_options *opt, int64_t d);

/* Build the training graph of one step of the method on the encoder (which
 * is not modified). The graph's inputs are "view1".."viewV" ([B, C, H, W],
 * the encoder's input layout), "shuffle_perm" (int64 [B], MoCo with shuffle
 * BN; "shuffle_perm2" for the second half of the symmetric loss), "labels"
 * (SupCon with labels), "mask" (SupCon with use_mask), "momentum"
 * (momentum_input), "lr" (attach_optimizer), "rank_rows" (ranks > 1 with shuffle BN);
 * its first output is "loss". Parameters: the
 * encoder's (ONNX names) and the heads'; STATE: "key/<name>" (MoCo key
 * encoder), "target/<name>" (BYOL), BatchNorm statistics, "queue" [D, K]
 * and "queue_ptr" int64 [1]. Gradients "grad/<name>" (see ct_autodiff) are
 * graph outputs. */
ct_status ct_method_attach(ct_graph *encoder, const ct_method_options *opt, ct_graph **train_graph);

/* The encoder cut at the representation layer (see ct_method_options.layer),
 * BatchNorm in inference form, one output [N, d] (flattened): what the
 * trainer's kNN monitor runs and --export writes. Values keep the encoder's
 * names, which are the query/online encoder's names in the training graph.
 * batch > 0 fixes the batch dimension. */
ct_status ct_method_encoder(ct_graph *encoder, const char *layer, int64_t batch, ct_graph **out);

#endif

/* resnet.c — ResNet-18/34/50 as IR graphs, following torchvision.models.resnet
 * (BasicBlock / Bottleneck v1.5 with the stride on the 3x3 conv) node for
 * node, with torchvision's initialisation drawn from our own seeded RNG. */
#include "resnet.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

ct_resnet_options ct_resnet_options_default(void)
{
    ct_resnet_options o = {0};
    o.depth = 18;
    o.width = 64;
    o.num_classes = 1000;
    o.with_fc = true;
    o.in_channels = 3;
    o.batch = CT_DIM_BATCH;
    return o;
}

typedef struct {
    ct_graph *g;
    uint64_t rng;      /* splitmix64 state */
    bool have_spare;
    double spare;      /* Box-Muller's second normal */
} builder;

static uint64_t next_u64(builder *b)
{
    uint64_t z = (b->rng += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double uniform01(builder *b) { return (double)(next_u64(b) >> 11) * 0x1p-53; }

static double normal(builder *b)
{
    if (b->have_spare) {
        b->have_spare = false;
        return b->spare;
    }
    double u1 = uniform01(b), u2 = uniform01(b);
    if (u1 < 1e-300) u1 = 1e-300;
    double r = sqrt(-2.0 * log(u1));
    b->spare = r * sin(2 * M_PI * u2);
    b->have_spare = true;
    return r * cos(2 * M_PI * u2);
}

static ct_shape shape4(int64_t n, int64_t c, int64_t h, int64_t w)
{
    ct_shape s = {4, {n, c, h, w}};
    return s;
}

static ct_value *temp(builder *b, const char *node_name, const ct_shape *s)
{
    char name[320];
    snprintf(name, sizeof name, "%s_output_0", node_name);
    return ct_graph_add_value(b->g, name, CT_VALUE_TEMP, CT_F32, s);
}

static void set_pair(ct_graph *g, ct_node *n, const char *attr, int64_t v)
{
    int64_t p[2] = {v, v};
    ct_node_set_ints(g, n, attr, p, 2);
}

static void set_quad(ct_graph *g, ct_node *n, const char *attr, int64_t v)
{
    int64_t p[4] = {v, v, v, v};
    ct_node_set_ints(g, n, attr, p, 4);
}

/* Conv2d(cin, cout, k, stride, pad, bias=False), kaiming_normal_(fan_out, relu). */
static ct_value *conv(builder *b, const char *scope, const char *pname, ct_value *x, int64_t cout, int k, int stride,
                      int pad)
{
    int64_t cin = x->shape.dims[1];
    char name[256];
    snprintf(name, sizeof name, "%s.weight", pname);
    ct_shape ws = shape4(cout, cin, k, k);
    ct_value *w = ct_graph_add_tensor(b->g, name, CT_VALUE_PARAM, CT_F32, &ws, NULL);
    float *wd = w->data; /* (cout, cin, k, k) */
    double std = sqrt(2.0 / (double)(cout * k * k));
    for (int64_t i = 0; i < cout * cin * k * k; i++) wd[i] = (float)(std * normal(b));
    int64_t h = (x->shape.dims[2] + 2 * pad - k) / stride + 1;
    int64_t wo = (x->shape.dims[3] + 2 * pad - k) / stride + 1;
    snprintf(name, sizeof name, "%s/Conv", scope);
    ct_shape ys = shape4(x->shape.dims[0], cout, h, wo);
    ct_value *y = temp(b, name, &ys);
    ct_value *in[2] = {x, w};
    ct_node *n = ct_graph_add_node(b->g, CT_OP_CONV, name, 2, in, 1, &y);
    set_pair(b->g, n, "dilations", 1);
    ct_node_set_int(b->g, n, "group", 1);
    set_pair(b->g, n, "kernel_shape", k);
    set_quad(b->g, n, "pads", pad);
    set_pair(b->g, n, "strides", stride);
    return y;
}

/* BatchNorm2d: weight 1, bias 0 (PARAM); running_mean 0, running_var 1 (STATE). */
static ct_value *batch_norm(builder *b, const char *scope, const char *pname, ct_value *x)
{
    int64_t c = x->shape.dims[1];
    ct_shape cs = {1, {c}};
    static const char *const fields[4] = {"weight", "bias", "running_mean", "running_var"};
    static const float init[4] = {1, 0, 0, 1};
    ct_value *in[5] = {x};
    char name[256];
    for (int f = 0; f < 4; f++) {
        snprintf(name, sizeof name, "%s.%s", pname, fields[f]);
        in[1 + f] = ct_graph_add_tensor(b->g, name, f < 2 ? CT_VALUE_PARAM : CT_VALUE_STATE, CT_F32, &cs, NULL);
        float *d = in[1 + f]->data; /* (c) */
        for (int64_t i = 0; i < c; i++) d[i] = init[f];
    }
    snprintf(name, sizeof name, "%s/BatchNormalization", scope);
    ct_value *y = temp(b, name, &x->shape);
    ct_node *n = ct_graph_add_node(b->g, CT_OP_BATCH_NORM, name, 5, in, 1, &y);
    ct_node_set_float(b->g, n, "epsilon", 1e-5f);
    ct_node_set_float(b->g, n, "momentum", 0.9f); /* ONNX: 1 - PyTorch's 0.1 */
    ct_node_set_int(b->g, n, "training_mode", 0);
    return y;
}

static ct_value *relu(builder *b, const char *scope, ct_value *x)
{
    char name[256];
    snprintf(name, sizeof name, "%s/Relu", scope);
    ct_value *y = temp(b, name, &x->shape);
    ct_graph_add_node(b->g, CT_OP_RELU, name, 1, &x, 1, &y);
    return y;
}

/* conv + bn under scopes "<block>/<conv>" and "<block>/<bn>". */
static ct_value *conv_bn(builder *b, const char *bscope, const char *bparam, const char *cname, const char *bnname,
                         ct_value *x, int64_t cout, int k, int stride, int pad)
{
    char scope[256], pname[256];
    snprintf(scope, sizeof scope, "%s/%s", bscope, cname);
    snprintf(pname, sizeof pname, "%s.%s", bparam, cname);
    ct_value *y = conv(b, scope, pname, x, cout, k, stride, pad);
    snprintf(scope, sizeof scope, "%s/%s", bscope, bnname);
    snprintf(pname, sizeof pname, "%s.%s", bparam, bnname);
    return batch_norm(b, scope, pname, y);
}

/* One residual block (torchvision BasicBlock or Bottleneck). */
static ct_value *block(builder *b, int layer, int index, ct_value *x, int64_t planes, int stride, bool bottleneck)
{
    char bscope[128], bparam[128], name[256];
    snprintf(bscope, sizeof bscope, "/layer%d/layer%d.%d", layer, layer, index);
    snprintf(bparam, sizeof bparam, "layer%d.%d", layer, index);
    int64_t cin = x->shape.dims[1];
    int64_t cout = bottleneck ? planes * 4 : planes;
    ct_value *y;
    if (!bottleneck) {
        y = conv_bn(b, bscope, bparam, "conv1", "bn1", x, planes, 3, stride, 1);
        snprintf(name, sizeof name, "%s/relu", bscope);
        y = relu(b, name, y);
        y = conv_bn(b, bscope, bparam, "conv2", "bn2", y, planes, 3, 1, 1);
    } else {
        y = conv_bn(b, bscope, bparam, "conv1", "bn1", x, planes, 1, 1, 0);
        snprintf(name, sizeof name, "%s/relu", bscope);
        y = relu(b, name, y);
        y = conv_bn(b, bscope, bparam, "conv2", "bn2", y, planes, 3, stride, 1);
        snprintf(name, sizeof name, "%s/relu_1", bscope);
        y = relu(b, name, y);
        y = conv_bn(b, bscope, bparam, "conv3", "bn3", y, cout, 1, 1, 0);
    }
    ct_value *identity = x;
    if (stride != 1 || cin != cout) {
        char dscope[160], dparam[160];
        snprintf(dscope, sizeof dscope, "%s/downsample", bscope);
        snprintf(dparam, sizeof dparam, "%s.downsample", bparam);
        char s0[256], p0[256];
        snprintf(s0, sizeof s0, "%s/downsample.0", dscope);
        snprintf(p0, sizeof p0, "%s.0", dparam);
        identity = conv(b, s0, p0, x, cout, 1, stride, 0);
        snprintf(s0, sizeof s0, "%s/downsample.1", dscope);
        snprintf(p0, sizeof p0, "%s.1", dparam);
        identity = batch_norm(b, s0, p0, identity);
    }
    snprintf(name, sizeof name, "%s/Add", bscope);
    ct_value *sum = temp(b, name, &y->shape);
    ct_value *in[2] = {y, identity};
    ct_graph_add_node(b->g, CT_OP_ADD, name, 2, in, 1, &sum);
    snprintf(name, sizeof name, "%s/%s", bscope, bottleneck ? "relu_2" : "relu_1");
    return relu(b, name, sum);
}

ct_status ct_model_resnet_build(const ct_resnet_options *opt, ct_graph **out)
{
    *out = NULL;
    static const int blocks18[4] = {2, 2, 2, 2}, blocks34[4] = {3, 4, 6, 3};
    const int *blocks;
    bool bottleneck = false;
    switch (opt->depth) {
    case 18: blocks = blocks18; break;
    case 34: blocks = blocks34; break;
    case 50: blocks = blocks34; bottleneck = true; break;
    default: return ct_errorf("resnet: depth %d is not supported (18, 34 or 50)", opt->depth);
    }
    if (opt->width < 1 || opt->width > 4096) return ct_errorf("resnet: width %d is out of range", opt->width);
    if (opt->in_channels != 1 && opt->in_channels != 3)
        return ct_errorf("resnet: in_channels must be 1 or 3 (got %d)", opt->in_channels);
    if (opt->with_fc && opt->num_classes < 1)
        return ct_errorf("resnet: num_classes must be positive (got %d)", opt->num_classes);
    if (opt->batch != CT_DIM_BATCH && opt->batch < 1)
        return ct_errorf("resnet: batch must be positive or symbolic (got %lld)", (long long)opt->batch);
    int64_t h = opt->height ? opt->height : (opt->small_input ? 32 : 224);
    int64_t w = opt->width_px ? opt->width_px : (opt->small_input ? 32 : 224);
    if (h < 1 || w < 1 || h > 65536 || w > 65536)
        return ct_errorf("resnet: input size %lldx%lld is out of range", (long long)h, (long long)w);

    char gname[64];
    snprintf(gname, sizeof gname, "resnet%d%s", opt->depth, opt->small_input ? "_small" : "");
    builder b = {ct_graph_new(gname), opt->seed ^ UINT64_C(0x5EED0F2E5E7), false, 0};
    ct_graph *g = b.g;
    g->producer_name = ct_arena_strdup(&g->arena, "contra");
    g->producer_version = ct_arena_strdup(&g->arena, "0.1.0");
    g->ir_version = 8;
    g->opset = 17;

    ct_shape xs = shape4(opt->batch, opt->in_channels, h, w);
    ct_value *x = ct_graph_add_value(g, "input", CT_VALUE_INPUT, CT_F32, &xs);
    ct_graph_add_input(g, x);
    int64_t width = opt->width;
    ct_value *y;
    if (opt->small_input) {
        y = conv(&b, "/conv1", "conv1", x, width, 3, 1, 1);
    } else {
        y = conv(&b, "/conv1", "conv1", x, width, 7, 2, 3);
    }
    y = batch_norm(&b, "/bn1", "bn1", y);
    y = relu(&b, "/relu", y);
    if (!opt->small_input) {
        int64_t ho = (y->shape.dims[2] + 2 - 3) / 2 + 1, wo = (y->shape.dims[3] + 2 - 3) / 2 + 1;
        ct_shape ps = shape4(opt->batch, y->shape.dims[1], ho, wo);
        ct_value *p = temp(&b, "/maxpool/MaxPool", &ps);
        ct_node *n = ct_graph_add_node(g, CT_OP_MAX_POOL, "/maxpool/MaxPool", 1, &y, 1, &p);
        ct_node_set_int(g, n, "ceil_mode", 0);
        set_pair(g, n, "dilations", 1);
        set_pair(g, n, "kernel_shape", 3);
        set_quad(g, n, "pads", 1);
        set_pair(g, n, "strides", 2);
        y = p;
    }
    for (int l = 0; l < 4; l++) {
        int64_t planes = width << l;
        for (int i = 0; i < blocks[l]; i++) {
            if (y->shape.dims[2] < 1 || y->shape.dims[3] < 1) goto too_small;
            y = block(&b, l + 1, i, y, planes, (l > 0 && i == 0) ? 2 : 1, bottleneck);
        }
    }
    if (y->shape.dims[2] < 1 || y->shape.dims[3] < 1) goto too_small;
    int64_t feat = y->shape.dims[1];
    ct_shape gs = shape4(opt->batch, feat, 1, 1);
    ct_value *pooled = temp(&b, "/avgpool/GlobalAveragePool", &gs);
    ct_graph_add_node(g, CT_OP_GLOBAL_AVERAGE_POOL, "/avgpool/GlobalAveragePool", 1, &y, 1, &pooled);
    ct_shape fs = {2, {opt->batch, feat}};
    ct_value *flat = opt->with_fc ? temp(&b, "/Flatten", &fs) : ct_graph_add_value(g, "output", CT_VALUE_TEMP, CT_F32, &fs);
    ct_node *fl = ct_graph_add_node(g, CT_OP_FLATTEN, "/Flatten", 1, &pooled, 1, &flat);
    ct_node_set_int(g, fl, "axis", 1);
    y = flat;
    if (opt->with_fc) {
        /* nn.Linear's default init: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), bias alike */
        ct_shape wsh = {2, {opt->num_classes, feat}}, bsh = {1, {opt->num_classes}};
        ct_value *fw = ct_graph_add_tensor(g, "fc.weight", CT_VALUE_PARAM, CT_F32, &wsh, NULL);
        ct_value *fb = ct_graph_add_tensor(g, "fc.bias", CT_VALUE_PARAM, CT_F32, &bsh, NULL);
        double bound = 1.0 / sqrt((double)feat);
        float *wd = fw->data; /* (num_classes, feat) */
        for (int64_t i = 0; i < (int64_t)opt->num_classes * feat; i++) wd[i] = (float)(bound * (2 * uniform01(&b) - 1));
        float *bd = fb->data; /* (num_classes) */
        for (int i = 0; i < opt->num_classes; i++) bd[i] = (float)(bound * (2 * uniform01(&b) - 1));
        ct_shape os = {2, {opt->batch, opt->num_classes}};
        ct_value *o = ct_graph_add_value(g, "output", CT_VALUE_TEMP, CT_F32, &os);
        ct_value *in[3] = {y, fw, fb};
        ct_node *n = ct_graph_add_node(g, CT_OP_GEMM, "/fc/Gemm", 3, in, 1, &o);
        ct_node_set_float(g, n, "alpha", 1.0f);
        ct_node_set_float(g, n, "beta", 1.0f);
        ct_node_set_int(g, n, "transB", 1);
        y = o;
    }
    ct_graph_add_output(g, y);
    ct_status st = ct_graph_verify(g);
    if (st) {
        ct_graph_free(g);
        return ct_status_wrap(st, "resnet%d: built graph does not verify", opt->depth);
    }
    *out = g;
    return CT_OK;
too_small:
    ct_graph_free(g);
    return ct_errorf("resnet%d: input %lldx%lld is too small: a feature map shrinks to nothing", opt->depth,
                     (long long)h, (long long)w);
}

ct_status ct_model_resnet_options_from_name(const char *name, ct_resnet_options *opt)
{
    int depth = 0, n = 0, wdt = 0;
    bool small = false;
    if (sscanf(name, "resnet%d%n", &depth, &n) != 1 || (depth != 18 && depth != 34 && depth != 50)) goto unknown;
    const char *rest = name + n;
    if (strncmp(rest, "_small", 6) == 0) {
        small = true;
        rest += 6;
    }
    if (*rest) {
        int m = 0;
        if (!small || sscanf(rest, "_w%d%n", &wdt, &m) != 1 || rest[m] != 0 || wdt < 1 || wdt > 4096) goto unknown;
    }
    opt->depth = depth;
    opt->small_input = small;
    opt->width = wdt ? wdt : 64;
    if (small) {
        if (!opt->height) opt->height = 32;
        if (!opt->width_px) opt->width_px = 32;
    }
    return CT_OK;
unknown:
    return ct_errorf("unknown bundled model '%s' (known: resnet18, resnet34, resnet50, resnet18_small, "
                     "resnet34_small, resnet50_small, and resnetNN_small_wW for width W, e.g. resnet18_small_w16)",
                     name);
}

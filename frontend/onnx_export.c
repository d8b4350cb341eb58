/* onnx_export.c — ct_graph to an ONNX ModelProto file: initializers in
 * raw_data, typed inputs and outputs, nodes with attributes. Inputs that the
 * importer normalised (axes, pads, Clip bounds...) go back to attributes where
 * the graph's opset wants them. The file is written atomically. */
#include "fileio.h"
#include "frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#ifdef CT_VERSION
#define CT_EXPORT_VERSION CT_VERSION
#else
#define CT_EXPORT_VERSION "0.1.0"
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "contra's ONNX writer assumes a little-endian host (raw_data is little-endian)"
#endif

/* Every protobuf struct lives in this arena and dies with it. */
typedef struct {
    ct_arena ar;
    const ct_graph *g;
    bool *referenced; /* referenced[value->id]: some emitted node or output reads it */
} exporter;

static void *arena_copy(exporter *ex, const void *init, size_t n)
{
    void *p = ct_arena_alloc(&ex->ar, n);
    memcpy(p, init, n);
    return p;
}

/* A protobuf-c message in the arena, set to its _INIT value. */
#define NEW(ex, type, init) ((type *)arena_copy((ex), &(type)init, sizeof(type)))

static char *xstr(exporter *ex, const char *s) { return ct_arena_strdup(&ex->ar, s ? s : ""); }

static Onnx__TensorProto *tensor_proto(exporter *ex, const ct_value *v, const char *name)
{
    Onnx__TensorProto *t = NEW(ex, Onnx__TensorProto, ONNX__TENSOR_PROTO__INIT);
    t->name = xstr(ex, name);
    t->has_data_type = 1;
    t->data_type = ct_dtype_to_onnx(v->dtype);
    t->n_dims = (size_t)v->shape.rank;
    t->dims = ct_arena_alloc(&ex->ar, sizeof(int64_t) * (size_t)(v->shape.rank ? v->shape.rank : 1));
    for (int d = 0; d < v->shape.rank; d++) t->dims[d] = v->shape.dims[d];
    t->has_raw_data = 1;
    t->raw_data.len = ct_value_nbytes(v);
    t->raw_data.data = v->data;
    return t;
}

static Onnx__ValueInfoProto *value_info(exporter *ex, const ct_value *v)
{
    Onnx__ValueInfoProto *vi = NEW(ex, Onnx__ValueInfoProto, ONNX__VALUE_INFO_PROTO__INIT);
    vi->name = xstr(ex, v->name);
    Onnx__TypeProto *tp = NEW(ex, Onnx__TypeProto, ONNX__TYPE_PROTO__INIT);
    Onnx__TypeProto__Tensor *tt = NEW(ex, Onnx__TypeProto__Tensor, ONNX__TYPE_PROTO__TENSOR__INIT);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    tt->has_elem_type = 1;
    tt->elem_type = ct_dtype_to_onnx(v->dtype);
    if (v->shape_known) {
        Onnx__TensorShapeProto *sp = NEW(ex, Onnx__TensorShapeProto, ONNX__TENSOR_SHAPE_PROTO__INIT);
        sp->n_dim = (size_t)v->shape.rank;
        sp->dim = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(v->shape.rank ? v->shape.rank : 1));
        for (int d = 0; d < v->shape.rank; d++) {
            Onnx__TensorShapeProto__Dimension *dim =
                NEW(ex, Onnx__TensorShapeProto__Dimension, ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT);
            if (v->shape.dims[d] == CT_DIM_BATCH) {
                dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
                dim->dim_param = xstr(ex, "N");
            } else {
                dim->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
                dim->dim_value = v->shape.dims[d];
            }
            sp->dim[d] = dim;
        }
        tt->shape = sp;
    }
    vi->type = tp;
    return vi;
}

static Onnx__AttributeProto *attr_proto(exporter *ex, const ct_attr *a)
{
    Onnx__AttributeProto *p = NEW(ex, Onnx__AttributeProto, ONNX__ATTRIBUTE_PROTO__INIT);
    p->name = xstr(ex, a->name);
    p->has_type = 1;
    switch (a->type) {
    case CT_ATTR_INT:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
        p->has_i = 1;
        p->i = a->i;
        break;
    case CT_ATTR_FLOAT:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
        p->has_f = 1;
        p->f = a->f;
        break;
    case CT_ATTR_STRING:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
        p->has_s = 1;
        p->s.data = (uint8_t *)xstr(ex, a->s);
        p->s.len = strlen((char *)p->s.data);
        break;
    case CT_ATTR_INTS:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
        p->n_ints = (size_t)a->n;
        p->ints = a->ints;
        break;
    case CT_ATTR_FLOATS:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS;
        p->n_floats = (size_t)a->n;
        p->floats = a->floats;
        break;
    case CT_ATTR_STRINGS:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS;
        p->n_strings = (size_t)a->n;
        p->strings = ct_arena_alloc(&ex->ar, sizeof(ProtobufCBinaryData) * (size_t)(a->n ? a->n : 1));
        for (int i = 0; i < a->n; i++) {
            p->strings[i].data = (uint8_t *)xstr(ex, a->strings[i]);
            p->strings[i].len = strlen((char *)p->strings[i].data);
        }
        break;
    case CT_ATTR_TENSOR:
        p->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR;
        p->t = tensor_proto(ex, a->t, a->t->name);
        break;
    default: break;
    }
    return p;
}

/* ---------------------------------------------------------------- older opsets */

/* A node as it will be written: inputs may be trimmed, attributes added. */
typedef struct {
    int n_in;
    ct_attr extra[4];
    int n_extra;
    const char *skip_attr[2]; /* attributes of the IR node not written at this opset */
    int min_out;              /* outputs to list even if the IR omits them (fresh names) */
} node_form;

static const char *node_desc(exporter *ex, const ct_node *n)
{
    return ct_arena_printf(&ex->ar, "node '%s' (%s)", n->name, ct_op_table[n->op].name);
}

/* Input idx (a CONST int64 vector) as an INTS attribute. */
static ct_status input_to_ints(exporter *ex, const ct_node *n, int idx, const char *attr, node_form *f)
{
    const ct_value *v = idx < n->n_in ? n->in[idx] : NULL;
    if (!v) return CT_OK;
    if (v->kind != CT_VALUE_CONST || v->dtype != CT_I64 || !v->data || v->shape.rank > 1)
        return ct_errorf("%s: input %d ('%s') must be a constant int64 vector to be written as attribute '%s' at "
                         "opset %d",
                         node_desc(ex, n), idx, v->name, attr, ex->g->opset);
    int64_t cnt = ct_shape_numel(&v->shape);
    f->extra[f->n_extra++] = (ct_attr){.name = attr, .type = CT_ATTR_INTS, .n = (int)cnt, .ints = v->data};
    return CT_OK;
}

/* Input idx (a CONST float scalar) as a FLOAT attribute. */
static ct_status input_to_float(exporter *ex, const ct_node *n, int idx, const char *attr, node_form *f)
{
    const ct_value *v = idx < n->n_in ? n->in[idx] : NULL;
    if (!v) return CT_OK;
    if (v->kind != CT_VALUE_CONST || !v->data || ct_shape_numel(&v->shape) != 1 ||
        (v->dtype != CT_F32 && v->dtype != CT_F64))
        return ct_errorf("%s: input %d ('%s') must be a constant float scalar to be written as attribute '%s' at "
                         "opset %d",
                         node_desc(ex, n), idx, v->name, attr, ex->g->opset);
    float x = v->dtype == CT_F32 ? *(const float *)v->data : (float)*(const double *)v->data;
    f->extra[f->n_extra++] = (ct_attr){.name = attr, .type = CT_ATTR_FLOAT, .f = x};
    return CT_OK;
}

static ct_status node_form_for_opset(exporter *ex, const ct_node *n, node_form *f)
{
    int o = ex->g->opset;
    *f = (node_form){.n_in = n->n_in};
    switch (n->op) {
    case CT_OP_SQUEEZE: case CT_OP_UNSQUEEZE: case CT_OP_REDUCE_SUM:
        if (o >= 13) break;
        f->n_in = 1;
        return input_to_ints(ex, n, 1, "axes", f);
    case CT_OP_REDUCE_MEAN: case CT_OP_REDUCE_MAX: case CT_OP_REDUCE_MIN: case CT_OP_REDUCE_PROD: case CT_OP_REDUCE_L2:
        if (o >= 18) break;
        f->n_in = 1;
        return input_to_ints(ex, n, 1, "axes", f);
    case CT_OP_SPLIT:
        if (o < 18) f->skip_attr[0] = "num_outputs";
        if (o >= 13) break;
        f->n_in = 1;
        return input_to_ints(ex, n, 1, "split", f);
    case CT_OP_CLIP:
        if (o >= 11) break;
        f->n_in = 1;
        CT_TRY(input_to_float(ex, n, 1, "min", f));
        return input_to_float(ex, n, 2, "max", f);
    case CT_OP_PAD:
        if (o >= 11) break;
        if (n->n_in > 3 && n->in[3]) return ct_errorf("%s: Pad axes need opset 18 or later", node_desc(ex, n));
        f->n_in = 1;
        CT_TRY(input_to_ints(ex, n, 1, "pads", f));
        return input_to_float(ex, n, 2, "value", f);
    case CT_OP_SLICE:
        if (o >= 10) break;
        if (n->n_in > 4 && n->in[4]) return ct_errorf("%s: Slice steps need opset 10 or later", node_desc(ex, n));
        f->n_in = 1;
        CT_TRY(input_to_ints(ex, n, 1, "starts", f));
        CT_TRY(input_to_ints(ex, n, 2, "ends", f));
        return input_to_ints(ex, n, 3, "axes", f);
    case CT_OP_DROPOUT:
        if (o >= 12) break;
        f->n_in = 1;
        return input_to_float(ex, n, 1, "ratio", f);
    case CT_OP_BATCH_NORM:
        /* Training mode needs the running-statistics outputs listed (before
         * opset 14, their presence is what selects training mode). */
        if (ct_node_attr_int(n, "training_mode", 0) != 0) f->min_out = o < 14 ? 5 : 3;
        if (o < 14) f->skip_attr[0] = "training_mode";
        break;
    default: break;
    }
    return CT_OK;
}

static ct_status node_proto(exporter *ex, const ct_node *n, Onnx__NodeProto **out)
{
    node_form f;
    CT_TRY(node_form_for_opset(ex, n, &f));
    while (f.n_in > 0 && !n->in[f.n_in - 1]) f.n_in--;
    int n_out = n->n_out;
    while (n_out > 0 && !n->out[n_out - 1]) n_out--;
    int n_named = n_out;
    if (n_out < f.min_out) n_out = f.min_out;
    Onnx__NodeProto *p = NEW(ex, Onnx__NodeProto, ONNX__NODE_PROTO__INIT);
    p->name = xstr(ex, n->name);
    p->op_type = xstr(ex, ct_op_table[n->op].name);
    p->domain = xstr(ex, ct_op_table[n->op].domain);
    p->n_input = (size_t)f.n_in;
    p->input = ct_arena_alloc(&ex->ar, sizeof(char *) * (size_t)(f.n_in + 1));
    for (int j = 0; j < f.n_in; j++) {
        p->input[j] = xstr(ex, n->in[j] ? n->in[j]->name : "");
        if (n->in[j]) ex->referenced[n->in[j]->id] = true;
    }
    p->n_output = (size_t)n_out;
    p->output = ct_arena_alloc(&ex->ar, sizeof(char *) * (size_t)(n_out + 1));
    for (int j = 0; j < n_out; j++) {
        if (j < n_named && n->out[j]) {
            p->output[j] = xstr(ex, n->out[j]->name);
            continue;
        }
        if (j < n_named && j >= f.min_out) {
            p->output[j] = xstr(ex, "");
            continue;
        }
        /* A fresh name no value of the graph has. */
        const char *base = n->name && n->name[0] ? n->name : ct_op_table[n->op].name;
        char *name = ct_arena_printf(&ex->ar, "%s_unused_output_%d_%d", base, n->id, j);
        for (int k = 1; ct_graph_find_value(ex->g, name); k++)
            name = ct_arena_printf(&ex->ar, "%s_unused_output_%d_%d_%d", base, n->id, j, k);
        p->output[j] = name;
    }
    p->attribute = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(n->n_attr + f.n_extra + 1));
    for (int a = 0; a < n->n_attr; a++) {
        const ct_attr *at = &n->attrs[a];
        if ((f.skip_attr[0] && !strcmp(at->name, f.skip_attr[0])) ||
            (f.skip_attr[1] && !strcmp(at->name, f.skip_attr[1])))
            continue;
        if (at->type == CT_ATTR_TENSOR && !at->t)
            return ct_errorf("%s attribute '%s' has no tensor", node_desc(ex, n), at->name);
        p->attribute[p->n_attribute++] = attr_proto(ex, at);
    }
    for (int a = 0; a < f.n_extra; a++) p->attribute[p->n_attribute++] = attr_proto(ex, &f.extra[a]);
    *out = p;
    return CT_OK;
}

/* ---------------------------------------------------------------- model */

static ct_status build_model(exporter *ex, Onnx__ModelProto *m)
{
    const ct_graph *g = ex->g;
    Onnx__GraphProto *gp = NEW(ex, Onnx__GraphProto, ONNX__GRAPH_PROTO__INIT);
    gp->name = xstr(ex, g->name && g->name[0] ? g->name : "main");

    bool contra_ops = false;
    gp->node = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(g->n_nodes + 1));
    for (int i = 0; i < g->n_nodes; i++) {
        CT_TRY(node_proto(ex, g->nodes[i], &gp->node[gp->n_node++]));
        if (!strcmp(ct_op_table[g->nodes[i]->op].domain, "ai.contra")) contra_ops = true;
    }
    gp->input = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(g->n_inputs + 1));
    for (int i = 0; i < g->n_inputs; i++) {
        const ct_value *v = g->inputs[i];
        if (v->dtype <= CT_DTYPE_UNDEFINED || v->dtype >= CT_DTYPE_COUNT)
            return ct_errorf("graph input '%s' has no known type", v->name);
        gp->input[gp->n_input++] = value_info(ex, v);
    }
    gp->output = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(g->n_outputs + 1));
    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        if (v->dtype <= CT_DTYPE_UNDEFINED || v->dtype >= CT_DTYPE_COUNT)
            return ct_errorf("graph output '%s' has no known type (run shape inference before exporting)", v->name);
        ex->referenced[v->id] = true;
        gp->output[gp->n_output++] = value_info(ex, v);
    }
    gp->initializer = ct_arena_alloc(&ex->ar, sizeof(void *) * (size_t)(g->n_values + 1));
    for (int i = 0; i < g->n_values; i++) {
        const ct_value *v = g->values[i];
        bool persistent = v->kind == CT_VALUE_PARAM || v->kind == CT_VALUE_STATE || v->kind == CT_VALUE_CONST;
        if (!persistent || !ex->referenced[i]) continue;
        if (!v->data || !v->shape_known || !ct_shape_is_static(&v->shape))
            return ct_errorf("%s '%s' has no data or no static shape", ct_value_kind_name(v->kind), v->name);
        gp->initializer[gp->n_initializer++] = tensor_proto(ex, v, v->name);
    }

    m->has_ir_version = 1;
    m->ir_version = g->ir_version > 7 ? g->ir_version : 7;
    m->producer_name = xstr(ex, "contra");
    m->producer_version = xstr(ex, CT_EXPORT_VERSION);
    m->graph = gp;
    m->opset_import = ct_arena_alloc(&ex->ar, sizeof(void *) * 2);
    Onnx__OperatorSetIdProto *os = NEW(ex, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT);
    os->domain = xstr(ex, "");
    os->has_version = 1;
    os->version = g->opset;
    m->opset_import[m->n_opset_import++] = os;
    if (contra_ops) {
        os = NEW(ex, Onnx__OperatorSetIdProto, ONNX__OPERATOR_SET_ID_PROTO__INIT);
        os->domain = xstr(ex, "ai.contra");
        os->has_version = 1;
        os->version = 1;
        m->opset_import[m->n_opset_import++] = os;
    }
    return CT_OK;
}

ct_status ct_onnx_save(const ct_graph *g, const char *path)
{
    exporter ex = {.g = g};
    ex.referenced = calloc((size_t)g->n_values + 1, 1);
    if (!ex.referenced) abort();
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    uint8_t *buf = NULL;
    ct_status st = build_model(&ex, &m);
    if (!st) {
        size_t len = onnx__model_proto__get_packed_size(&m);
        buf = malloc(len ? len : 1);
        if (!buf) abort();
        onnx__model_proto__pack(&m, buf);
        st = ct_file_write_atomic(path, buf, len);
    } else {
        st = ct_status_wrap(st, "%s", path);
    }
    free(buf);
    free(ex.referenced);
    ct_arena_free(&ex.ar);
    return st;
}

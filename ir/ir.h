/* ir.h — contra's one data model: dtypes, static shapes, values, nodes with
 * typed attributes, and graphs.  A graph owns an arena; every node, value,
 * string and tensor payload lives in it and dies with ct_graph_free.
 * ir depends on nothing else in contra. */
#ifndef CT_IR_H
#define CT_IR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

/* ---------------------------------------------------------------- arena */

typedef struct ct_arena_block ct_arena_block;
typedef struct {
    ct_arena_block *head;
    size_t bytes; /* total handed out, for stats */
} ct_arena;

void *ct_arena_alloc(ct_arena *a, size_t n);           /* zeroed, 16-aligned; aborts on OOM */
char *ct_arena_strdup(ct_arena *a, const char *s);     /* NULL stays NULL */
char *ct_arena_strndup(ct_arena *a, const char *s, size_t n);
char *ct_arena_printf(ct_arena *a, const char *fmt, ...) CT_PRINTF(2, 3);
void ct_arena_free(ct_arena *a);

/* ---------------------------------------------------------------- dtypes */

typedef enum {
    CT_DTYPE_UNDEFINED = 0,
    CT_F32,
    CT_F16,
    CT_BF16,
    CT_F64,
    CT_I64,
    CT_I32,
    CT_I8,
    CT_U8,
    CT_BOOL,
    CT_DTYPE_COUNT
} ct_dtype;

size_t ct_dtype_size(ct_dtype t);
const char *ct_dtype_name(ct_dtype t);          /* "float", "int64", ... (ONNX text names) */
ct_dtype ct_dtype_from_name(const char *name);  /* CT_DTYPE_UNDEFINED if unknown */
int ct_dtype_to_onnx(ct_dtype t);               /* TensorProto.DataType */
ct_dtype ct_dtype_from_onnx(int onnx_type);     /* CT_DTYPE_UNDEFINED if unsupported */
bool ct_dtype_is_float(ct_dtype t);

/* ---------------------------------------------------------------- shapes */

#define CT_MAX_RANK 8
/* A dimension is a non-negative size, or CT_DIM_BATCH: the symbolic batch
 * dimension, allowed until compile time fixes it (ct_graph_set_batch). */
#define CT_DIM_BATCH INT64_C(-1)

typedef struct {
    int rank;
    int64_t dims[CT_MAX_RANK];
} ct_shape;

/* Number of elements; -1 if a dimension is symbolic or the product overflows. */
int64_t ct_shape_numel(const ct_shape *s);
bool ct_shape_equal(const ct_shape *a, const ct_shape *b);
bool ct_shape_is_static(const ct_shape *s);
/* "[1,3,224,224]" ("N" for the batch dim) into buf; returns buf. */
char *ct_shape_str(const ct_shape *s, char *buf, size_t n);

/* ---------------------------------------------------------------- values */

typedef enum {
    CT_VALUE_INPUT,  /* fed by the caller each call */
    CT_VALUE_PARAM,  /* trainable, persistent */
    CT_VALUE_STATE,  /* persistent, not trained: BN statistics, MoCo queue, counters */
    CT_VALUE_CONST,  /* immutable data baked into the program */
    CT_VALUE_TEMP,   /* intermediate, produced by a node */
} ct_value_kind;

const char *ct_value_kind_name(ct_value_kind k);

typedef struct ct_node ct_node;

typedef struct ct_value {
    const char *name;       /* ONNX name, kept: state_dict keys and node paths */
    ct_value_kind kind;
    ct_dtype dtype;
    ct_shape shape;
    bool shape_known;       /* false until shape inference has run */
    void *data;             /* initial contents for PARAM/STATE/CONST (arena-owned), else NULL */
    ct_node *producer;      /* the node that writes it (TEMP), else NULL */
    int id;                 /* index in graph->values */
    bool frozen;            /* a PARAM excluded from training (linear evaluation) */
    /* Filled by passes/memory_plan; -1 until planned. offset is into the
     * graph's activation arena for TEMP values (persistent values are kept
     * outside the reused region); first/last_use are node positions. */
    int64_t offset;
    int first_use, last_use;
} ct_value;

size_t ct_value_nbytes(const ct_value *v); /* 0 if the shape is not static */

/* ---------------------------------------------------------------- attributes */

typedef enum {
    CT_ATTR_UNDEFINED = 0,
    CT_ATTR_INT,
    CT_ATTR_FLOAT,
    CT_ATTR_STRING,
    CT_ATTR_INTS,
    CT_ATTR_FLOATS,
    CT_ATTR_STRINGS,
    CT_ATTR_TENSOR,
} ct_attr_type;

const char *ct_attr_type_name(ct_attr_type t); /* "int", "float", "string", "ints", ... */

typedef struct {
    const char *name;
    ct_attr_type type;
    int64_t i;
    float f;
    const char *s;
    int n;               /* element count for INTS/FLOATS/STRINGS */
    int64_t *ints;
    float *floats;
    const char **strings;
    struct ct_value *t;  /* TENSOR: a CONST value not listed in the graph */
} ct_attr;

/* ---------------------------------------------------------------- ops */

typedef enum {
#define CT_OP(id, onnx_name, domain, since, min_in, max_in, min_out, max_out, attrs, infer, grad) CT_OP_##id,
#include "ops.def"
#undef CT_OP
    CT_OP_COUNT
} ct_op;

typedef struct ct_graph ct_graph;

typedef struct {
    const char *name;    /* ONNX op_type (or contra's own name) */
    const char *domain;  /* "" for ai.onnx, "ai.contra" for contra's own ops */
    int since_opset;     /* earliest ai.onnx opset the importer accepts it at */
    int min_in, max_in;  /* arity; max -1 = variadic */
    int min_out, max_out;
    const char *attrs;   /* schema: "name:type ..." with types int float string ints floats strings tensor */
} ct_op_info;

/* The table of the columns ir itself needs. Other layers expand ops.def
 * for their own columns (passes/shape_infer.c: the infer functions). */

extern const ct_op_info ct_op_table[CT_OP_COUNT];
/* Look up an op by ONNX type and domain ("" and "ai.onnx" are the same). CT_OP_COUNT if unknown. */
ct_op ct_op_lookup(const char *domain, const char *op_type);
/* The declared type of attribute `name` for `op`, or CT_ATTR_UNDEFINED if the schema lacks it. */
ct_attr_type ct_op_attr_type(ct_op op, const char *name);

/* ---------------------------------------------------------------- nodes */

struct ct_node {
    ct_op op;
    const char *name;     /* ONNX node name, kept ("/layer1/layer1.0/conv1/Conv") */
    int n_in, n_out;
    ct_value **in;        /* n_in entries; NULL marks an omitted optional input */
    ct_value **out;       /* n_out entries; NULL marks an omitted optional output */
    int n_attr;
    ct_attr *attrs;
    int id;               /* position in graph->nodes (topological order) */
    const char *fused_from; /* for fused nodes: what they replaced, for dump */
};

/* An error about node n: "node 'NAME' (OpType): message". */
ct_status ct_node_errorf(const ct_node *n, const char *fmt, ...) CT_PRINTF(2, 3);

const ct_attr *ct_node_attr(const ct_node *n, const char *name); /* NULL if absent */
int64_t ct_node_attr_int(const ct_node *n, const char *name, int64_t dflt);
float ct_node_attr_float(const ct_node *n, const char *name, float dflt);
const char *ct_node_attr_string(const ct_node *n, const char *name, const char *dflt);
/* INTS attribute: count in *count (0 and NULL if absent). */
const int64_t *ct_node_attr_ints(const ct_node *n, const char *name, int *count);
const float *ct_node_attr_floats(const ct_node *n, const char *name, int *count);

/* Set (add or replace) attributes; copies into the graph's arena. */
void ct_node_set_int(ct_graph *g, ct_node *n, const char *name, int64_t v);
void ct_node_set_float(ct_graph *g, ct_node *n, const char *name, float v);
void ct_node_set_string(ct_graph *g, ct_node *n, const char *name, const char *v);
void ct_node_set_ints(ct_graph *g, ct_node *n, const char *name, const int64_t *v, int count);
void ct_node_set_floats(ct_graph *g, ct_node *n, const char *name, const float *v, int count);
void ct_node_remove_attr(ct_node *n, const char *name);
/* For the importer: an attribute already built (arena-owned pointers). */
void ct_node_add_attr(ct_graph *g, ct_node *n, const ct_attr *a);

/* ---------------------------------------------------------------- graphs */

/* A state update applied at the end of each call of the program: the
 * persistent value dst (PARAM or STATE) takes the value of src. Training
 * graphs stay functional (optimizer steps, EMA, BatchNorm running
 * statistics, the MoCo queue produce new values); the backend may realise an
 * assignment in place when nothing reads dst after src is written. */
typedef struct {
    ct_value *dst; /* PARAM or STATE */
    ct_value *src; /* same dtype and shape */
} ct_assign;

struct ct_graph {
    ct_arena arena;
    const char *name;
    const char *producer_name;    /* e.g. "pytorch" */
    const char *producer_version;
    int64_t ir_version;
    int opset;                    /* ai.onnx opset the graph was imported at */
    const char *source_path;      /* file it came from, for messages; may be NULL */

    ct_value **values;  /* every value; values[i]->id == i */
    int n_values, cap_values;
    ct_node **nodes;    /* topological order once sorted; nodes[i]->id == i */
    int n_nodes, cap_nodes;
    ct_value **inputs;  /* graph inputs (CT_VALUE_INPUT), in order */
    int n_inputs, cap_inputs;
    ct_value **outputs; /* graph outputs, in order */
    int n_outputs, cap_outputs;
    ct_assign *assigns; /* state updates, applied after the last node */
    int n_assigns, cap_assigns;

    int64_t batch;      /* compile-time batch size, 0 while symbolic */
    int64_t arena_bytes;/* set by passes/memory_plan: size of the reused region, -1 before */
};

ct_graph *ct_graph_new(const char *name);
void ct_graph_free(ct_graph *g);

/* A new value; name is copied (must be unique: see ct_graph_find_value). */
ct_value *ct_graph_add_value(ct_graph *g, const char *name, ct_value_kind kind, ct_dtype dtype,
                             const ct_shape *shape /* NULL: unknown */);
/* A fresh unique name built from a prefix ("prefix", "prefix_1", ...). */
const char *ct_graph_unique_name(ct_graph *g, const char *prefix);
ct_value *ct_graph_find_value(const ct_graph *g, const char *name); /* NULL if none */
/* A constant/parameter/state value with data copied in (nbytes must match shape*dtype). */
ct_value *ct_graph_add_tensor(ct_graph *g, const char *name, ct_value_kind kind, ct_dtype dtype,
                              const ct_shape *shape, const void *data);
/* Append a node (inputs/outputs arrays copied). Outputs get producer set. */
ct_node *ct_graph_add_node(ct_graph *g, ct_op op, const char *name, int n_in, ct_value *const *in,
                           int n_out, ct_value *const *out);
void ct_graph_add_input(ct_graph *g, ct_value *v);
void ct_graph_add_output(ct_graph *g, ct_value *v);
void ct_graph_add_assign(ct_graph *g, ct_value *dst, ct_value *src);
/* Whether state update i can be realised in place: its source (a TEMP) is
 * written straight onto the destination's bytes by its producer, because no
 * node after the producer reads the destination (in the current node order),
 * no other update shares the source and the destination is no graph output.
 * passes/memory_plan gives such a source no arena bytes; the backends place it
 * on its destination. */
bool ct_graph_assign_in_place(const ct_graph *g, int i);

/* Drop nodes for which keep[node->id] is false, and values no longer
 * referenced by any node, input or output (unless persistent: PARAM/STATE
 * are kept only if referenced too).  Renumbers ids. */
void ct_graph_compact(ct_graph *g, const bool *keep_node);
/* Replace every use of `from` (node inputs, graph outputs) by `to`. */
void ct_graph_replace_uses(ct_graph *g, ct_value *from, ct_value *to);
/* Sort nodes topologically (stable with respect to current order).
 * Fails naming a node on the cycle if there is one. */
ct_status ct_graph_toposort(ct_graph *g);
/* The ranks a data-parallel graph is built for: the largest "world" attribute
 * of its nodes (collectives, SyncBatchNorm); 1 for a single process. */
int ct_graph_world(const ct_graph *g);
/* Number of node inputs that read v, plus 1 if it is a graph output, plus 1
 * per assignment reading it. */
int ct_graph_use_count(const ct_graph *g, const ct_value *v);
/* Deep copy into a fresh arena (values, nodes, attributes, data). */
ct_graph *ct_graph_clone(const ct_graph *g);

/* Fix the symbolic batch dimension of the inputs to `batch` (> 0);
 * shape inference must be re-run afterwards. */
void ct_graph_set_batch(ct_graph *g, int64_t batch);

/* ---------------------------------------------------------------- verifier */

/* Types, shapes (where known), dangling values, cycles, duplicate names,
 * arity and attribute types against ops.def. The message names the node. */
ct_status ct_graph_verify(const ct_graph *g);

#endif

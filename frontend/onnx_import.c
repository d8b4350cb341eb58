/* onnx_import.c — ONNX ModelProto (protobuf-c) to ct_graph.
 * The protobuf is unpacked, validated and copied into the graph's arena,
 * then freed at once; ct_frontend_normalize makes the result uniform.
 * Every error names the file (label), and the node or tensor at fault. */
#include "fileio.h"
#include "frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "contra's ONNX reader assumes a little-endian host (raw_data is little-endian)"
#endif

#define CT_ONNX_MIN_OPSET 9
#define CT_ONNX_MAX_OPSET 21

/* ---------------------------------------------------------------- helpers */

/* A growable message buffer for the all-at-once unsupported-op report. */
typedef struct {
    char *buf;
    size_t len, cap;
} str_buf;

static void sb_printf(str_buf *sb, const char *fmt, ...) CT_PRINTF(2, 3);
static void sb_printf(str_buf *sb, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if (sb->len + (size_t)n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (cap < sb->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(sb->buf, cap);
        if (!p) abort();
        sb->buf = p;
        sb->cap = cap;
    }
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    sb->len += (size_t)n;
}

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* Name -> value map local to one import (ct_graph_find_value is linear). */
typedef struct {
    ct_value **slots;
    size_t cap, count;
} value_map;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static ct_value *value_map_get(const value_map *m, const char *name)
{
    if (!m->cap || !name) return NULL;
    for (size_t i = name_hash(name) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i]) return NULL;
        if (!strcmp(m->slots[i]->name, name)) return m->slots[i];
    }
}

static void value_map_put(value_map *m, ct_value *v)
{
    if ((m->count + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        ct_value **slots = calloc(cap, sizeof *slots);
        if (!slots) abort();
        for (size_t i = 0; i < m->cap; i++) {
            ct_value *o = m->slots[i];
            if (!o) continue;
            size_t j = name_hash(o->name) & (cap - 1);
            while (slots[j]) j = (j + 1) & (cap - 1);
            slots[j] = o;
        }
        free(m->slots);
        m->slots = slots;
        m->cap = cap;
    }
    size_t j = name_hash(v->name) & (m->cap - 1);
    while (m->slots[j]) j = (j + 1) & (m->cap - 1);
    m->slots[j] = v;
    m->count++;
}

/* State of one import. */
typedef struct {
    const char *label;    /* file path or caller's label, for messages */
    const char *base_dir; /* folder external data is read from; NULL refuses it */
    ct_graph *g;
    value_map names;
} importer;

/* "node 'name' (Op)" or, for unnamed nodes, "node #i (Op, output 'y')". */
static const char *node_desc(importer *im, const Onnx__NodeProto *np, size_t idx)
{
    const char *op = str_or_empty(np->op_type);
    if (np->name && np->name[0]) return ct_arena_printf(&im->g->arena, "node '%s' (%s)", np->name, op);
    if (np->n_output && np->output[0] && np->output[0][0])
        return ct_arena_printf(&im->g->arena, "node #%zu (%s, output '%s')", idx, op, np->output[0]);
    return ct_arena_printf(&im->g->arena, "node #%zu (%s)", idx, op);
}

/* ---------------------------------------------------------------- tensors */

/* Shape from TensorProto dims: non-negative, rank-limited, product fits. */
static ct_status tensor_shape(const Onnx__TensorProto *t, const char *what, ct_shape *shape, int64_t *numel)
{
    if (t->n_dims > CT_MAX_RANK)
        return ct_errorf("%s has rank %zu (at most %d supported)", what, t->n_dims, CT_MAX_RANK);
    shape->rank = (int)t->n_dims;
    for (size_t i = 0; i < t->n_dims; i++) {
        if (t->dims[i] < 0) return ct_errorf("%s has negative dimension %" PRId64 " at axis %zu", what, t->dims[i], i);
        shape->dims[i] = t->dims[i];
    }
    *numel = ct_shape_numel(shape);
    if (*numel < 0) return ct_errorf("%s: the product of its dimensions overflows", what);
    return CT_OK;
}

/* True if `rel` is a relative path without '..' components. */
static bool path_is_contained(const char *rel)
{
    if (!rel[0] || rel[0] == '/') return false;
    const char *p = rel;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n;
        while (*p == '/') p++;
    }
    return true;
}

static ct_status parse_i64(const char *s, const char *what, const char *key, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s ? s : "", &end, 10);
    if (!s || !s[0] || *end || errno || v < 0)
        return ct_errorf("%s: external data '%s' is not a non-negative integer ('%s')", what, key, str_or_empty(s));
    *out = v;
    return CT_OK;
}

/* Read external data (nbytes, into the graph's arena at *dst), checking the
 * path stays inside base_dir and the file holds what is declared before
 * allocating anything. */
static ct_status tensor_read_external(importer *im, const Onnx__TensorProto *t, const char *what, void **dstp,
                                      size_t nbytes)
{
    const char *location = NULL;
    int64_t offset = 0, length = -1;
    for (size_t i = 0; i < t->n_external_data; i++) {
        const Onnx__StringStringEntryProto *e = t->external_data[i];
        const char *key = str_or_empty(e->key);
        if (!strcmp(key, "location")) location = e->value;
        else if (!strcmp(key, "offset")) CT_TRY(parse_i64(e->value, what, key, &offset));
        else if (!strcmp(key, "length")) CT_TRY(parse_i64(e->value, what, key, &length));
    }
    if (!location || !location[0]) return ct_errorf("%s has external data without a location", what);
    if (!im->base_dir)
        return ct_errorf("%s: external data '%s' cannot be read when the model is loaded from memory", what,
                         location);
    if (!path_is_contained(location))
        return ct_errorf("%s: external data location '%s' leaves the model's folder (absolute paths and '..' "
                         "are refused)",
                         what, location);
    if (length >= 0 && (uint64_t)length != nbytes)
        return ct_errorf("%s: external data length %" PRId64 " does not match its shape and type (%zu bytes)", what,
                         length, nbytes);

    ct_status st = CT_OK;
    char *full = NULL, *real_base = NULL, *real_file = NULL;
    int fd = -1;
    if (asprintf(&full, "%s/%s", im->base_dir, location) < 0) abort();
    real_base = realpath(im->base_dir, NULL);
    real_file = realpath(full, NULL);
    if (!real_base) {
        st = ct_errorf("%s: cannot resolve the model's folder '%s': %s", what, im->base_dir, strerror(errno));
        goto fail;
    }
    if (!real_file) {
        st = ct_errorf("%s: cannot open external data '%s': %s", what, full, strerror(errno));
        goto fail;
    }
    size_t bl = strlen(real_base);
    if (strncmp(real_file, real_base, bl) != 0 || (real_file[bl] != '/' && strcmp(real_base, "/") != 0)) {
        st = ct_errorf("%s: external data '%s' resolves to '%s', outside the model's folder", what, location,
                       real_file);
        goto fail;
    }
    fd = open(real_file, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        st = ct_errorf("%s: cannot open external data '%s': %s", what, full, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = ct_errorf("%s: external data '%s' is not a regular file", what, full);
        goto fail;
    }
    if ((uint64_t)offset > (uint64_t)sb.st_size || nbytes > (uint64_t)sb.st_size - (uint64_t)offset) {
        st = ct_errorf("%s: external data '%s' is shorter than declared (%lld bytes, need %zu at offset %" PRId64
                       ")",
                       what, full, (long long)sb.st_size, nbytes, offset);
        goto fail;
    }
    void *dst = ct_arena_alloc(&im->g->arena, nbytes);
    *dstp = dst;
    size_t done = 0;
    while (done < nbytes) {
        ssize_t r = pread(fd, (char *)dst + done, nbytes - done, (off_t)(offset + (int64_t)done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            st = ct_errorf("%s: reading external data '%s' failed: %s", what, full, r < 0 ? strerror(errno) : "short read");
            goto fail;
        }
        done += (size_t)r;
    }
fail:
    if (fd >= 0) close(fd);
    free(full);
    free(real_base);
    free(real_file);
    return st;
}

/* Copy typed-field data (float_data, int32_data, ...) into dst. */
static ct_status tensor_copy_typed(const Onnx__TensorProto *t, ct_dtype dt, const char *what, void *dst, int64_t numel)
{
    size_t n = (size_t)numel, have = 0;
    const char *field = NULL;
    switch (dt) {
    case CT_F32: have = t->n_float_data; field = "float_data"; break;
    case CT_F64: have = t->n_double_data; field = "double_data"; break;
    case CT_I64: have = t->n_int64_data; field = "int64_data"; break;
    case CT_I32: case CT_I8: case CT_U8: case CT_BOOL: case CT_F16: case CT_BF16:
        have = t->n_int32_data; field = "int32_data"; break;
    default: return ct_errorf("%s has an unsupported data type", what);
    }
    if (have != n) {
        if (have == 0 && n > 0)
            return ct_errorf("%s has no data (%" PRId64 " elements declared, no raw_data or %s)", what, numel, field);
        return ct_errorf("%s has %zu values in %s, but its shape holds %" PRId64, what, have, field, numel);
    }
    for (size_t i = 0; i < n; i++) {
        switch (dt) {
        case CT_F32: ((float *)dst)[i] = t->float_data[i]; break;
        case CT_F64: ((double *)dst)[i] = t->double_data[i]; break;
        case CT_I64: ((int64_t *)dst)[i] = t->int64_data[i]; break;
        case CT_I32: ((int32_t *)dst)[i] = t->int32_data[i]; break;
        case CT_I8: ((int8_t *)dst)[i] = (int8_t)t->int32_data[i]; break;
        case CT_U8: ((uint8_t *)dst)[i] = (uint8_t)t->int32_data[i]; break;
        case CT_BOOL: ((uint8_t *)dst)[i] = t->int32_data[i] != 0; break;
        case CT_F16: case CT_BF16: ((uint16_t *)dst)[i] = (uint16_t)t->int32_data[i]; break;
        default: break;
        }
    }
    return CT_OK;
}

/* Fill v (dtype, shape, data in the graph's arena) from a TensorProto. */
static ct_status tensor_to_value(importer *im, const Onnx__TensorProto *t, const char *what, ct_value *v)
{
    ct_dtype dt = ct_dtype_from_onnx(t->has_data_type ? t->data_type : 0);
    if (dt == CT_DTYPE_UNDEFINED)
        return ct_errorf("%s has unsupported data type %d", what, t->has_data_type ? (int)t->data_type : 0);
    int64_t numel = 0;
    ct_shape shape;
    CT_TRY(tensor_shape(t, what, &shape, &numel));
    size_t es = ct_dtype_size(dt);
    if ((uint64_t)numel > SIZE_MAX / es || (uint64_t)numel * es > (uint64_t)INT64_MAX)
        return ct_errorf("%s is too large (%" PRId64 " elements)", what, numel);
    size_t nbytes = (size_t)numel * es;
    bool external = t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    if (!external && t->has_raw_data && t->raw_data.len != nbytes)
        return ct_errorf("%s has %zu bytes of raw_data, but shape %s of %s needs %zu", what, t->raw_data.len,
                         ct_shape_str(&shape, (char[64]){0}, 64), ct_dtype_name(dt), nbytes);
    if (t->segment) return ct_errorf("%s is a segmented tensor (not supported)", what);
    /* Validate before allocating, so a bogus size cannot exhaust memory. */
    if (!external && !t->has_raw_data) {
        size_t have = dt == CT_F32 ? t->n_float_data : dt == CT_F64 ? t->n_double_data
                    : dt == CT_I64 ? t->n_int64_data : t->n_int32_data;
        if (have != (size_t)numel) return tensor_copy_typed(t, dt, what, NULL, numel);
    }
    void *data = NULL;
    if (external) {
        CT_TRY(tensor_read_external(im, t, what, &data, nbytes));
    } else {
        data = ct_arena_alloc(&im->g->arena, nbytes);
        if (t->has_raw_data) {
            if (nbytes) memcpy(data, t->raw_data.data, nbytes);
        } else {
            CT_TRY(tensor_copy_typed(t, dt, what, data, numel));
        }
    }
    v->dtype = dt;
    v->shape = shape;
    v->shape_known = true;
    v->data = data;
    return CT_OK;
}

/* ---------------------------------------------------------------- graph parts */

static ct_status add_initializers(importer *im, const Onnx__GraphProto *gp)
{
    for (size_t i = 0; i < gp->n_initializer; i++) {
        const Onnx__TensorProto *t = gp->initializer[i];
        if (!t->name || !t->name[0]) return ct_errorf("initializer #%zu has no name", i);
        const char *what = ct_arena_printf(&im->g->arena, "initializer '%s'", t->name);
        if (value_map_get(&im->names, t->name)) return ct_errorf("%s is defined twice", what);
        ct_value *v = ct_graph_add_value(im->g, t->name, CT_VALUE_PARAM, CT_DTYPE_UNDEFINED, NULL);
        CT_TRY(tensor_to_value(im, t, what, v));
        value_map_put(&im->names, v);
    }
    if (gp->n_sparse_initializer)
        return ct_errorf("sparse initializer '%s' is not supported",
                         gp->sparse_initializer[0]->values ? str_or_empty(gp->sparse_initializer[0]->values->name)
                                                           : "?");
    return CT_OK;
}

/* Element type and (optionally) shape of a graph input/output. */
static ct_status value_info_type(const Onnx__ValueInfoProto *vi, const char *what, bool need_shape, ct_dtype *dt,
                                 ct_shape *shape, bool *has_shape)
{
    const Onnx__TypeProto *tp = vi->type;
    *has_shape = false;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
        return ct_errorf("%s is not a tensor (sequence, map, optional and sparse types are not supported)", what);
    const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
    *dt = ct_dtype_from_onnx(tt->has_elem_type ? tt->elem_type : 0);
    if (*dt == CT_DTYPE_UNDEFINED)
        return ct_errorf("%s has unsupported element type %d", what, tt->has_elem_type ? (int)tt->elem_type : 0);
    if (!tt->shape) {
        if (need_shape) return ct_errorf("%s has no shape", what);
        return CT_OK;
    }
    if (tt->shape->n_dim > CT_MAX_RANK)
        return ct_errorf("%s has rank %zu (at most %d supported)", what, tt->shape->n_dim, CT_MAX_RANK);
    shape->rank = (int)tt->shape->n_dim;
    for (size_t d = 0; d < tt->shape->n_dim; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
        if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
            if (dim->dim_value < 0)
                return ct_errorf("%s has negative dimension %" PRId64 " at axis %zu", what, dim->dim_value, d);
            shape->dims[d] = dim->dim_value;
        } else if (d == 0) {
            shape->dims[d] = CT_DIM_BATCH;
        } else if (need_shape) {
            const char *p = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? dim->dim_param : NULL;
            return ct_errorf("%s has symbolic dimension '%s' at axis %zu: only the batch dimension (axis 0) may be "
                             "symbolic",
                             what, p ? p : "?", d);
        } else {
            return CT_OK; /* an output with symbolic dims: keep the dtype only */
        }
    }
    int64_t prod = 1;
    for (int d = 0; d < shape->rank; d++) {
        int64_t x = shape->dims[d] == CT_DIM_BATCH ? 1 : shape->dims[d];
        if (x != 0 && prod > INT64_MAX / x) return ct_errorf("%s: the product of its dimensions overflows", what);
        prod *= x;
    }
    *has_shape = true;
    return CT_OK;
}

static ct_status add_inputs(importer *im, const Onnx__GraphProto *gp)
{
    for (size_t i = 0; i < gp->n_input; i++) {
        const Onnx__ValueInfoProto *vi = gp->input[i];
        if (!vi->name || !vi->name[0]) return ct_errorf("graph input #%zu has no name", i);
        ct_value *old = value_map_get(&im->names, vi->name);
        if (old && old->kind != CT_VALUE_INPUT) continue; /* an initializer listed as input: a parameter */
        const char *what = ct_arena_printf(&im->g->arena, "graph input '%s'", vi->name);
        if (old) return ct_errorf("%s is listed twice", what);
        ct_dtype dt = CT_DTYPE_UNDEFINED;
        ct_shape shape;
        bool has_shape;
        CT_TRY(value_info_type(vi, what, true, &dt, &shape, &has_shape));
        ct_value *v = ct_graph_add_value(im->g, vi->name, CT_VALUE_INPUT, dt, &shape);
        value_map_put(&im->names, v);
        ct_graph_add_input(im->g, v);
    }
    return CT_OK;
}

/* Version of an opset domain imported by the model; -1 if not imported. */
static int64_t opset_of(const Onnx__ModelProto *mp, const char *domain)
{
    if (!domain || !strcmp(domain, "ai.onnx")) domain = "";
    for (size_t i = 0; i < mp->n_opset_import; i++) {
        const char *d = str_or_empty(mp->opset_import[i]->domain);
        if (!strcmp(d, "ai.onnx")) d = "";
        if (!strcmp(d, domain)) return mp->opset_import[i]->has_version ? mp->opset_import[i]->version : -1;
    }
    return -1;
}

/* Every node's op must be known at the model's opset; report all that are not, at once. */
static ct_status check_ops(importer *im, const Onnx__ModelProto *mp, const Onnx__GraphProto *gp, ct_op *ops)
{
    size_t n_bad = 0;
    size_t *first = calloc(gp->n_node + 1, sizeof *first); /* per bad node: index of first node with same key */
    if (!first) abort();
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        const char *dom = str_or_empty(np->domain);
        ops[i] = np->op_type ? ct_op_lookup(dom, np->op_type) : CT_OP_COUNT;
        if (ops[i] != CT_OP_COUNT && ct_op_table[ops[i]].domain[0] == 0 &&
            ct_op_table[ops[i]].since_opset > im->g->opset)
            ops[i] = CT_OP_COUNT; /* the op does not exist at this opset */
        first[i] = SIZE_MAX;
        if (ops[i] != CT_OP_COUNT) continue;
        n_bad++;
        first[i] = i;
        for (size_t j = 0; j < i; j++)
            if (ops[j] == CT_OP_COUNT && !strcmp(str_or_empty(gp->node[j]->op_type), str_or_empty(np->op_type)) &&
                !strcmp(str_or_empty(gp->node[j]->domain), dom)) {
                first[i] = first[j];
                break;
            }
    }
    if (!n_bad) {
        free(first);
        return CT_OK;
    }
    str_buf sb = {0};
    size_t n_types = 0;
    for (size_t i = 0; i < gp->n_node; i++) n_types += first[i] == i;
    sb_printf(&sb, "%zu unsupported op type%s (%zu node%s): ", n_types, n_types == 1 ? "" : "s", n_bad,
              n_bad == 1 ? "" : "s");
    size_t shown_types = 0;
    for (size_t i = 0; i < gp->n_node; i++) {
        if (first[i] != i) continue;
        const Onnx__NodeProto *np = gp->node[i];
        const char *dom = str_or_empty(np->domain);
        int64_t ver = opset_of(mp, dom);
        sb_printf(&sb, "%s'%s' (domain '%s', opset ", shown_types++ ? "; " : "", str_or_empty(np->op_type),
                  dom[0] ? dom : "ai.onnx");
        if (ver >= 0) sb_printf(&sb, "%" PRId64 ")", ver);
        else sb_printf(&sb, "not imported)");
        size_t count = 0;
        for (size_t j = i; j < gp->n_node; j++) count += first[j] == i;
        sb_printf(&sb, " at node%s ", count == 1 ? "" : "s");
        size_t shown = 0;
        for (size_t j = i; j < gp->n_node && shown < 8; j++) {
            if (first[j] != i) continue;
            const Onnx__NodeProto *nj = gp->node[j];
            if (nj->name && nj->name[0]) sb_printf(&sb, "%s'%s'", shown ? ", " : "", nj->name);
            else sb_printf(&sb, "%s#%zu", shown ? ", " : "", j);
            shown++;
        }
        if (count > shown) sb_printf(&sb, " and %zu more", count - shown);
    }
    ct_status st = ct_errorf("%s", sb.buf);
    free(sb.buf);
    free(first);
    return st;
}

static ct_attr_type attr_type_of(const Onnx__AttributeProto *a)
{
    if (a->has_type) {
        switch (a->type) {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: return CT_ATTR_INT;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: return CT_ATTR_FLOAT;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: return CT_ATTR_STRING;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: return CT_ATTR_INTS;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: return CT_ATTR_FLOATS;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: return CT_ATTR_STRINGS;
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR: return CT_ATTR_TENSOR;
        default: return CT_ATTR_UNDEFINED;
        }
    }
    /* Very old files leave the type out: infer it from the field that is set. */
    if (a->has_f) return CT_ATTR_FLOAT;
    if (a->has_i) return CT_ATTR_INT;
    if (a->has_s) return CT_ATTR_STRING;
    if (a->t) return CT_ATTR_TENSOR;
    if (a->n_floats) return CT_ATTR_FLOATS;
    if (a->n_ints) return CT_ATTR_INTS;
    if (a->n_strings) return CT_ATTR_STRINGS;
    return CT_ATTR_UNDEFINED;
}

static const char *binary_str(ct_arena *ar, ProtobufCBinaryData b)
{
    return ct_arena_strndup(ar, b.data ? (const char *)b.data : "", b.data ? b.len : 0);
}

static ct_status add_attribute(importer *im, ct_node *n, ct_op op, const Onnx__AttributeProto *a, const char *desc)
{
    ct_arena *ar = &im->g->arena;
    if (!a->name || !a->name[0]) return ct_errorf("%s has an attribute without a name", desc);
    if (a->ref_attr_name && a->ref_attr_name[0])
        return ct_errorf("%s attribute '%s' refers to a function attribute (not supported)", desc, a->name);
    if (ct_node_attr(n, a->name)) return ct_errorf("%s has attribute '%s' twice", desc, a->name);
    ct_attr_type ty = attr_type_of(a);
    if (ty == CT_ATTR_UNDEFINED)
        return ct_errorf("%s attribute '%s' has an unsupported type (graphs, sparse tensors and type protos are "
                         "not supported)",
                         desc, a->name);
    ct_attr_type want = ct_op_attr_type(op, a->name);
    if (want == CT_ATTR_UNDEFINED)
        return ct_errorf("%s has unknown attribute '%s' (%s)", desc, a->name, ct_attr_type_name(ty));
    if (want != ty)
        return ct_errorf("%s attribute '%s' is %s, expected %s", desc, a->name, ct_attr_type_name(ty),
                         ct_attr_type_name(want));
    if (a->n_ints > INT_MAX || a->n_floats > INT_MAX || a->n_strings > INT_MAX)
        return ct_errorf("%s attribute '%s' is too long", desc, a->name);
    ct_attr at = {.name = ct_arena_strdup(ar, a->name), .type = ty};
    switch (ty) {
    case CT_ATTR_INT: at.i = a->i; break;
    case CT_ATTR_FLOAT: at.f = a->f; break;
    case CT_ATTR_STRING: at.s = binary_str(ar, a->s); break;
    case CT_ATTR_INTS:
        at.n = (int)a->n_ints;
        at.ints = ct_arena_alloc(ar, sizeof(int64_t) * (a->n_ints ? a->n_ints : 1));
        if (a->n_ints) memcpy(at.ints, a->ints, sizeof(int64_t) * a->n_ints);
        break;
    case CT_ATTR_FLOATS:
        at.n = (int)a->n_floats;
        at.floats = ct_arena_alloc(ar, sizeof(float) * (a->n_floats ? a->n_floats : 1));
        if (a->n_floats) memcpy(at.floats, a->floats, sizeof(float) * a->n_floats);
        break;
    case CT_ATTR_STRINGS:
        at.n = (int)a->n_strings;
        at.strings = ct_arena_alloc(ar, sizeof(char *) * (a->n_strings ? a->n_strings : 1));
        for (size_t i = 0; i < a->n_strings; i++) at.strings[i] = binary_str(ar, a->strings[i]);
        break;
    case CT_ATTR_TENSOR: {
        if (!a->t) return ct_errorf("%s attribute '%s' has no tensor", desc, a->name);
        const char *what = ct_arena_printf(ar, "%s attribute '%s'", desc, a->name);
        ct_value *t = ct_arena_alloc(ar, sizeof *t);
        t->name = ct_arena_strdup(ar, a->t->name && a->t->name[0] ? a->t->name : a->name);
        t->kind = CT_VALUE_CONST;
        t->id = -1;
        t->offset = -1;
        t->first_use = t->last_use = -1;
        CT_TRY(tensor_to_value(im, a->t, what, t));
        at.t = t;
        break;
    }
    default: break;
    }
    ct_node_add_attr(im->g, n, &at);
    return CT_OK;
}

/* Nodes: outputs are defined first (files need not be sorted), then inputs resolved. */
static ct_status add_nodes(importer *im, const Onnx__GraphProto *gp, const ct_op *ops)
{
    ct_graph *g = im->g;
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        const ct_op_info *info = &ct_op_table[ops[i]];
        const char *desc = node_desc(im, np, i);
        size_t n_in = np->n_input, n_out = np->n_output;
        while (n_in && !str_or_empty(np->input[n_in - 1])[0]) n_in--;
        while (n_out && !str_or_empty(np->output[n_out - 1])[0]) n_out--;
        /* BatchNormalization before opset 14 may list up to 5 outputs; normalisation drops them. */
        int max_out = ops[i] == CT_OP_BATCH_NORM ? 5 : info->max_out;
        if (n_in < (size_t)info->min_in || (info->max_in >= 0 && n_in > (size_t)info->max_in))
            return ct_errorf("%s has %zu inputs, expected %d..%d", desc, n_in, info->min_in, info->max_in);
        if (n_out < (size_t)info->min_out || (max_out >= 0 && n_out > (size_t)max_out))
            return ct_errorf("%s has %zu outputs, expected %d..%d", desc, n_out, info->min_out, max_out);
        if (n_in > 4096 || n_out > 4096) return ct_errorf("%s has too many inputs or outputs", desc);
        ct_value *outs[4096];
        for (size_t j = 0; j < n_out; j++) {
            const char *name = str_or_empty(np->output[j]);
            outs[j] = NULL;
            if (!name[0]) continue;
            ct_value *old = value_map_get(&im->names, name);
            if (old) {
                if (old->kind == CT_VALUE_TEMP && !old->producer)
                    return ct_errorf("%s writes '%s' twice", desc, name);
                if (old->producer)
                    return ct_errorf("%s writes '%s', which node '%s' also writes", desc, name, old->producer->name);
                return ct_errorf("%s writes '%s', which is already a graph input or initializer", desc, name);
            }
            outs[j] = ct_graph_add_value(g, name, CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
            value_map_put(&im->names, outs[j]);
        }
        ct_node *n = ct_graph_add_node(g, ops[i], np->name, 0, NULL, (int)n_out, outs);
        n->n_in = (int)n_in;
        n->in = ct_arena_alloc(&g->arena, sizeof(ct_value *) * (n_in ? n_in : 1));
        for (size_t a = 0; a < np->n_attribute; a++) CT_TRY(add_attribute(im, n, ops[i], np->attribute[a], desc));
    }
    for (size_t i = 0; i < gp->n_node; i++) {
        const Onnx__NodeProto *np = gp->node[i];
        ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            const char *name = str_or_empty(np->input[j]);
            if (!name[0]) {
                if (j < ct_op_table[n->op].min_in)
                    return ct_errorf("%s lacks required input %d", node_desc(im, np, i), j);
                continue;
            }
            n->in[j] = value_map_get(&im->names, name);
            if (!n->in[j])
                return ct_errorf("%s reads '%s', which is not defined: missing initializer, graph input or node "
                                 "output",
                                 node_desc(im, np, i), name);
        }
    }
    return CT_OK;
}

static ct_status add_outputs(importer *im, const Onnx__GraphProto *gp)
{
    if (!gp->n_output) return ct_errorf("the graph has no outputs");
    for (size_t i = 0; i < gp->n_output; i++) {
        const Onnx__ValueInfoProto *vi = gp->output[i];
        const char *name = str_or_empty(vi->name);
        ct_value *v = value_map_get(&im->names, name);
        if (!v) return ct_errorf("graph output '%s' is not defined by any node, input or initializer", name);
        /* The declared type and shape are kept (inference checks them later);
         * an output declared with other symbolic dims keeps its dtype only. */
        if (v->kind == CT_VALUE_TEMP && v->dtype == CT_DTYPE_UNDEFINED && vi->type) {
            const char *what = ct_arena_printf(&im->g->arena, "graph output '%s'", name);
            ct_dtype dt = CT_DTYPE_UNDEFINED;
            ct_shape shape;
            bool has_shape = false;
            CT_TRY(value_info_type(vi, what, false, &dt, &shape, &has_shape));
            v->dtype = dt;
            if (has_shape) {
                v->shape = shape;
                v->shape_known = true;
            }
        }
        ct_graph_add_output(im->g, v);
    }
    return CT_OK;
}

static ct_status check_opsets(importer *im, const Onnx__ModelProto *mp)
{
    int64_t v = opset_of(mp, "");
    if (v < 0) {
        if (mp->n_opset_import == 0 && !mp->has_ir_version)
            return ct_errorf("not an ONNX model (no IR version, no opset import)");
        return ct_errorf("the model imports no ai.onnx opset (contra supports opsets %d to %d)", CT_ONNX_MIN_OPSET,
                         CT_ONNX_MAX_OPSET);
    }
    if (v < CT_ONNX_MIN_OPSET || v > CT_ONNX_MAX_OPSET)
        return ct_errorf("unsupported ai.onnx opset %" PRId64 " (contra supports opsets %d to %d)", v,
                         CT_ONNX_MIN_OPSET, CT_ONNX_MAX_OPSET);
    im->g->opset = (int)v;
    return CT_OK;
}

static ct_status import_model(importer *im, const Onnx__ModelProto *mp)
{
    const Onnx__GraphProto *gp = mp->graph;
    if (!gp) {
        if (!mp->has_ir_version && mp->n_opset_import == 0)
            return ct_errorf("not an ONNX model (no graph, IR version or opset import)");
        return ct_errorf("the model has no graph");
    }
    CT_TRY(check_opsets(im, mp));
    ct_graph *g = im->g;
    g->name = ct_arena_strdup(&g->arena, gp->name && gp->name[0] ? gp->name : "main");
    g->ir_version = mp->has_ir_version ? mp->ir_version : 0;
    g->producer_name = ct_arena_strdup(&g->arena, mp->producer_name);
    g->producer_version = ct_arena_strdup(&g->arena, mp->producer_version);
    if (mp->n_functions) return ct_errorf("model-local functions are not supported ('%s')",
                                          str_or_empty(mp->functions[0]->name));
    CT_TRY(add_initializers(im, gp));
    CT_TRY(add_inputs(im, gp));
    ct_op *ops = calloc(gp->n_node + 1, sizeof *ops);
    if (!ops) abort();
    ct_status st = check_ops(im, mp, gp, ops);
    if (!st) st = add_nodes(im, gp, ops);
    free(ops);
    if (st) return st;
    CT_TRY(add_outputs(im, gp));
    return CT_OK;
}

/* ---------------------------------------------------------------- entry points */

ct_status ct_onnx_load_buffer(const void *buf, size_t len, const char *base_dir, const char *label,
                              ct_graph **out)
{
    *out = NULL;
    if (!label) label = "<memory>";
    if (len == 0) return ct_errorf("%s: empty file, not an ONNX model", label);
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp)
        return ct_errorf("%s: not a valid ONNX model: the protobuf is truncated or corrupt (%zu bytes)", label, len);
    importer im = {.label = label, .base_dir = base_dir, .g = ct_graph_new("main")};
    im.g->source_path = ct_arena_strdup(&im.g->arena, label);
    ct_status st = import_model(&im, mp);
    onnx__model_proto__free_unpacked(mp, NULL);
    free(im.names.slots);
    if (!st) st = ct_frontend_normalize(im.g, label);
    else st = ct_status_wrap(st, "%s", label);
    if (!st) {
        st = ct_graph_toposort(im.g);
        if (!st) st = ct_graph_verify(im.g);
        if (st) st = ct_status_wrap(st, "%s", label);
    }
    if (st) {
        ct_graph_free(im.g);
        return st;
    }
    *out = im.g;
    return CT_OK;
}

ct_status ct_onnx_load(const char *path, ct_graph **out)
{
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    CT_TRY(ct_file_read(path, &buf, &len));
    /* External data is resolved relative to the model's folder. */
    char *dir = strdup(path);
    if (!dir) abort();
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    ct_status st = ct_onnx_load_buffer(buf, len, dir, path, out);
    free(buf);
    free(dir);
    return st;
}

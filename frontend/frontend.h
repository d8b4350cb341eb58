/* frontend.h — turning files into ct_graph and back: the ONNX protobuf
 * (protobuf-c against the system's onnx.proto) and the ONNX text syntax. */
#ifndef CT_FRONTEND_H
#define CT_FRONTEND_H

#include "ir.h"

/* Load an ONNX ModelProto file. Initializers become PARAM values (float
 * initializers) or CONST values (others), BatchNorm running statistics
 * become STATE; an Identity of an initializer becomes its own copy named by
 * the Identity's output (ONNX-NOTES.md §1). External data is read relative
 * to the model's folder and may not leave it. Errors name the file, node
 * and what is wrong. */
ct_status ct_onnx_load(const char *path, ct_graph **out);
/* Same, from memory; base_dir resolves external data (NULL: refuse it),
 * label names the source in messages. */
ct_status ct_onnx_load_buffer(const void *buf, size_t len, const char *base_dir, const char *label,
                              ct_graph **out);
/* Write g as an ONNX ModelProto (atomically: temporary file + rename). */
ct_status ct_onnx_save(const ct_graph *g, const char *path);

/* The ONNX textual syntax ("<ir_version: 8, opset_import: [\"\" : 17]> name (float[N,3] x) => (...) {...}"). */
ct_status ct_onnx_text_parse(const char *src, size_t len, const char *label, ct_graph **out);
ct_status ct_onnx_text_load(const char *path, ct_graph **out);
/* The graph printed in the text syntax; malloc'd, caller frees. Printing then
 * parsing gives back the same graph. */
char *ct_onnx_text_print(const ct_graph *g);

/* Shared by both parsers (frontend/normalize.c): after a parser has built
 * the raw graph (nodes as written, every initializer as a PARAM), make it
 * what the rest of contra expects: Identity of an initializer becomes its own
 * copy named by the Identity's output; BatchNorm running statistics become
 * STATE; non-float initializers and Constant nodes become CONST values;
 * op-version differences are normalised to the newest form (axes, split,
 * pads, starts/ends, Clip min/max as constant inputs; Dropout's ratio
 * attribute dropped; legacy Softmax/LogSoftmax coercion to 2-D made
 * explicit; BatchNormalization's old extra outputs dropped). `label` names
 * the source in messages. */
ct_status ct_frontend_normalize(ct_graph *g, const char *label);

/* Load by content: ONNX protobuf, or the text syntax (files starting with '<'
 * or named *.onnxtxt / *.txt). */
ct_status ct_model_load(const char *path, ct_graph **out);

#endif

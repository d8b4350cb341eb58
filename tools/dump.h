/* dump.h — printing a graph for people and tools: the readable table, JSON,
 * Graphviz dot, statistics (op counts, parameters, FLOPs, activation bytes),
 * and an atomic file writer shared by the driver's subcommands. */
#ifndef CT_DUMP_H
#define CT_DUMP_H

#include <stdio.h>

#include "ir.h"
#include "fileio.h"

/* Statistics of a graph. Symbolic batch dimensions count as 1 (flagged by
 * per_sample). FLOPs: a multiply-add counts as 2. */
typedef struct {
    int op_count[CT_OP_COUNT];
    int64_t n_param_tensors, param_elems, param_bytes;   /* PARAM: trainable */
    int64_t n_state_tensors, state_elems, state_bytes;   /* STATE: BN statistics, ... */
    int64_t n_const_tensors, const_elems, const_bytes;   /* CONST */
    int64_t n_temp, activation_bytes;                    /* TEMP values, static shapes */
    int64_t flops, macs;        /* totals over nodes whose count is known */
    int n_unknown_flops;        /* nodes whose shapes were not known */
    bool per_sample;            /* some dimension was the symbolic batch (taken as 1) */
    int64_t *node_flops;        /* [n_nodes], -1 when unknown; malloc'd */
    int64_t *node_macs;         /* [n_nodes] */
} ct_dump_stats;

/* Fill *s for g (free with ct_dump_stats_free). */
void ct_dump_stats_compute(const ct_graph *g, ct_dump_stats *s);
void ct_dump_stats_free(ct_dump_stats *s);

/* FLOPs and multiply-adds of one node; -1 if its shapes are not known. */
int64_t ct_dump_node_flops(const ct_node *n, int64_t *macs);

/* The readable listing: header, op summary, one line per node, then the
 * memory plan when the graph has one. stats may be NULL. */
void ct_dump_table_print(FILE *f, const ct_graph *g, const ct_dump_stats *stats);
/* One JSON object (see cmd_dump.c --help). stats may be NULL. */
void ct_dump_json_print(FILE *f, const ct_graph *g, const ct_dump_stats *stats);
/* Graphviz dot with dtype+shape labels on the edges. */
void ct_dump_dot_print(FILE *f, const ct_graph *g);

/* --batch N for dump and convert: fix the symbolic batch dimension of the
 * inputs to N (ct_graph_set_batch). A model whose inputs have no symbolic
 * batch (torch.onnx without dynamic_axes, ONNX-NOTES section 3) is refused
 * unless N equals its fixed batch, rather than printing shapes for a batch
 * the graph does not have. */
ct_status ct_cli_batch_set(ct_graph *g, int64_t batch, const char *label);

#endif

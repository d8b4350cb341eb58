/* passes.h — passes are plain functions graph -> graph, registered with a
 * name and their prerequisites, run by a pass manager that can verify
 * between passes and stop after any pass (contra dump --after NAME). */
#ifndef CT_PASSES_H
#define CT_PASSES_H

#include "ir.h"

typedef ct_status (*ct_pass_fn)(ct_graph *g);

typedef struct {
    const char *name;     /* "infer_shapes" */
    ct_pass_fn fn;
    const char *requires; /* space-separated names of passes that must have run first */
    const char *doc;      /* one line for --help */
} ct_pass_info;

/* The registry, terminated by an entry with name NULL. */
extern const ct_pass_info ct_pass_registry[];
const ct_pass_info *ct_pass_find(const char *name);

/* The default pipeline for importing a model: infer_shapes fold_constants dce cse. */
extern const char *const ct_default_pipeline[];

typedef struct {
    bool verify;           /* run ct_graph_verify after every pass (default on in debug builds) */
    const char *stop_after;/* NULL: run all; else stop after this pass (error if not in the pipeline) */
    bool trace;            /* print each pass's name and node count to stderr */
} ct_pass_options;

/* Run the named passes in order (prerequisites are added in front when missing). */
ct_status ct_pass_run(ct_graph *g, const char *const *names, int n, const ct_pass_options *opt);

/* The core passes. */
ct_status ct_pass_infer_shapes(ct_graph *g);   /* shape/type inference, folding shape arithmetic on the way */
ct_status ct_pass_fold_constants(ct_graph *g); /* evaluate nodes whose inputs are all constants */
ct_status ct_pass_dce(ct_graph *g);            /* drop nodes whose outputs nothing reads */
ct_status ct_pass_cse(ct_graph *g);            /* merge identical nodes on identical inputs */
ct_status ct_pass_fuse(ct_graph *g);           /* multi-tensor EMA and optimizer nodes (passes/fuse.c) */

/* Memory planning (passes/memory_plan.c): liveness over the scheduled graph,
 * offsets of TEMP values in one arena (g->arena_bytes), in-place reuse where
 * the op allows it; persistent values (PARAM/STATE/CONST) stay outside. */
ct_status ct_pass_memory_plan(ct_graph *g);

/* Shape inference of one node (dispatches on ops.def's infer column). */
ct_status ct_infer_node(ct_graph *g, ct_node *n);

#endif

/* c_fuse_emit.h — C kernels of the multi-tensor fused nodes (FusedEMA,
 * FusedSGDStep, FusedAdamStep; passes/fuse.c). The C backend lays each role
 * of such a node (keys, params, grads, slots) out as one flat buffer; a
 * kernel is then one parallel loop over the whole span. Where a role could
 * not be laid out flat, the kernel loops segment by segment instead. */
#ifndef CT_C_FUSE_EMIT_H
#define CT_C_FUSE_EMIT_H

#include <stdint.h>

#include "emit.h"
#include "ir.h"

/* Where the backend put every value. */
typedef struct {
    const int *region;  /* per value id: CT_PT_REGION_* (runtime/program.h) */
    const int64_t *off; /* per value id: byte offset in its region */
    int64_t align;      /* each tensor of a flat buffer starts at a multiple of this */
} ct_fuse_place;

/* True if the n values lie one after another in the persistent region, each
 * at the previous one's offset plus its size rounded up to p->align. */
bool ct_fuse_role_flat(const ct_fuse_place *p, ct_value *const *vals, int n);

/* Emit the kernel `kname` of fused node n into k and its call into f (the
 * forward() body, where A and P are the arena and persistent bases). NULL,
 * or why the node cannot be lowered. *flat tells whether it is one loop. */
const char *ct_fuse_emit_c(const ct_fuse_place *p, const ct_node *n, const char *kname, ct_emitter *k,
                           ct_emitter *f, bool *flat);

#endif

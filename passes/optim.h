/* optim.h — optimizers as graph ops: one SGDStep/AdamStep/LarsStep node per
 * trainable parameter with a gradient, slots as STATE values named
 * "optim/<slot>/<param>", a step counter STATE "optim/step", the learning rate
 * a float scalar graph input "lr"; new values reach the parameters and slots
 * through g->assigns. */
#ifndef CT_OPTIM_H
#define CT_OPTIM_H

#include "autodiff.h"
#include "ir.h"

typedef enum { CT_OPTIM_SGD, CT_OPTIM_ADAM, CT_OPTIM_ADAMW, CT_OPTIM_LARS } ct_optim_kind;

typedef struct {
    ct_optim_kind kind;
    double momentum;     /* SGD, LARS: [0, 1) */
    bool nesterov;       /* SGD */
    double weight_decay; /* >= 0 */
    double beta1, beta2, eps; /* Adam(W) */
    double trust;        /* LARS trust coefficient */
} ct_optim_options;

/* Defaults as torch.optim (Adam betas 0.9/0.999, eps 1e-8; LARS trust 0.001). */
void ct_optim_options_default(ct_optim_options *o, ct_optim_kind kind);
/* "sgd", "adam", "adamw", "lars"; false if unknown. */
bool ct_optim_kind_parse(const char *s, ct_optim_kind *out);
/* Check ranges; the message names the value. */
ct_status ct_optim_options_check(const ct_optim_options *o);
/* LARS excludes BatchNorm and bias parameters (rank <= 1) from adaptation and decay. */
bool ct_optim_lars_excluded(const ct_value *param);

/* Append the optimizer update of every (param, grad) pair to g. Frozen
 * parameters must not be in the list (they have no gradient). */
ct_status ct_optim_attach(ct_graph *g, const ct_grad_pair *grads, int n_grads, const ct_optim_options *o);

#endif

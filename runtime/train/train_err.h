/* train_err.h — errors as values for the trainer runtime (checkpoints,
 * kNN, metrics). The runtime does not link the compiler, so it carries its
 * own owned-message type with the same contract as ir/status.h. */
#ifndef CT_TRAIN_ERR_H
#define CT_TRAIN_ERR_H

#if defined(__GNUC__)
#define CT_TRAIN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CT_TRAIN_PRINTF(a, b)
#endif

/* NULL on success, else an owned message naming the file or tensor. */
typedef char *ct_train_err;

ct_train_err ct_train_errorf(const char *fmt, ...) CT_TRAIN_PRINTF(1, 2);
/* Prefix an error ("ctx: old"); takes ownership of err. */
ct_train_err ct_train_err_wrap(ct_train_err err, const char *fmt, ...) CT_TRAIN_PRINTF(2, 3);
void ct_train_err_free(ct_train_err err);

#endif

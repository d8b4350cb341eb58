/* data.h — shared pieces of the data pipeline: errors as values and the
 * counter-based random generator whose streams come from (seed, epoch,
 * index, view), so augmentations never depend on the number of workers. */
#ifndef CT_DATA_H
#define CT_DATA_H

#include <stdint.h>
#include <stddef.h>

#if defined(__GNUC__)
#define CT_DATA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CT_DATA_PRINTF(a, b)
#endif

/* An owned error message, NULL on success. The runtime does not link the
 * compiler, so it carries its own (same contract as ir/status.h). */
typedef char *ct_data_err;

ct_data_err ct_data_errorf(const char *fmt, ...) CT_DATA_PRINTF(1, 2);
/* Prefix an error ("ctx: old"); takes ownership of err. */
ct_data_err ct_data_err_wrap(ct_data_err err, const char *fmt, ...) CT_DATA_PRINTF(2, 3);
void ct_data_err_free(ct_data_err err);

/* A random stream: splitmix64 over a 64-bit key and a counter. Draw i of a
 * stream is mix(key + (i+1)*golden), so a stream is a pure function of its
 * key and the number of draws made so far. */
typedef struct {
    uint64_t key;
    uint64_t ctr;
} ct_rng;

/* Stream for (seed, epoch, index, view). */
ct_rng ct_rng_stream(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t view);
uint64_t ct_rng_next_u64(ct_rng *r);
/* Uniform double in [0, 1), 53 random bits. */
double ct_rng_uniform01(ct_rng *r);
/* Uniform double in [lo, hi). */
double ct_rng_uniform(ct_rng *r, double lo, double hi);
/* Uniform integer in [lo, hi) (hi > lo); unbiased (rejection). */
int64_t ct_rng_randint(ct_rng *r, int64_t lo, int64_t hi);
/* Fisher-Yates permutation of 0..n-1 into perm. */
void ct_rng_permutation(ct_rng *r, int64_t *perm, int64_t n);

#endif

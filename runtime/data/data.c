/* data.c — error strings and the splitmix64 counter-based generator shared
 * by the decoders, the augmentations and the loader. */
#include "data.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ct_data_err err_vformat(const char *prefix, const char *fmt, va_list ap)
{
    if (!fmt) fmt = "error"; /* never called so; keeps the sanitizer build's -Wformat quiet */
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    size_t plen = prefix ? strlen(prefix) + 2 : 0;
    char *s = malloc(plen + (size_t)n + 1);
    if (!s) {
        /* no memory even for the message: nothing sensible is left to do */
        fputs("contra: out of memory formatting an error\n", stderr);
        abort();
    }
    size_t off = 0;
    if (prefix) off = (size_t)sprintf(s, "%s: ", prefix);
    vsnprintf(s + off, (size_t)n + 1, fmt, ap);
    return s;
}

ct_data_err ct_data_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ct_data_err e = err_vformat(NULL, fmt, ap);
    va_end(ap);
    return e;
}

ct_data_err ct_data_err_wrap(ct_data_err err, const char *fmt, ...)
{
    if (!err) return NULL;
    va_list ap;
    va_start(ap, fmt);
    ct_data_err ctx = err_vformat(NULL, fmt, ap);
    va_end(ap);
    ct_data_err e = ct_data_errorf("%s: %s", ctx, err);
    free(ctx);
    free(err);
    return e;
}

void ct_data_err_free(ct_data_err err) { free(err); }

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define GOLDEN 0x9e3779b97f4a7c15ULL

ct_rng ct_rng_stream(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t view)
{
    uint64_t k = mix64(seed + GOLDEN);
    k = mix64(k ^ (epoch + 0x632be59bd9b4e019ULL));
    k = mix64(k ^ (index + 0x8cb92ba72f3d8dd7ULL));
    k = mix64(k ^ (view + 0xd6e8feb86659fd93ULL));
    return (ct_rng){.key = k, .ctr = 0};
}

uint64_t ct_rng_next_u64(ct_rng *r)
{
    r->ctr++;
    return mix64(r->key + r->ctr * GOLDEN);
}

double ct_rng_uniform01(ct_rng *r)
{
    return (double)(ct_rng_next_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

double ct_rng_uniform(ct_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ct_rng_uniform01(r);
}

int64_t ct_rng_randint(ct_rng *r, int64_t lo, int64_t hi)
{
    uint64_t range = (uint64_t)(hi - lo);
    if (range <= 1) return lo;
    uint64_t limit = UINT64_MAX - UINT64_MAX % range;
    uint64_t x;
    do {
        x = ct_rng_next_u64(r);
    } while (x >= limit);
    return lo + (int64_t)(x % range);
}

void ct_rng_permutation(ct_rng *r, int64_t *perm, int64_t n)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = ct_rng_randint(r, 0, i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

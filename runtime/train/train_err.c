/* train_err.c — the trainer runtime's owned error messages. */
#include "train_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap)
{
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *s = malloc((size_t)n + 1);
    if (!s) {
        fprintf(stderr, "contra: out of memory formatting an error\n");
        abort();
    }
    if ((size_t)n < sizeof small) memcpy(s, small, (size_t)n + 1);
    else vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

ct_train_err ct_train_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

ct_train_err ct_train_err_wrap(ct_train_err err, const char *fmt, ...)
{
    if (!err) return NULL;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    size_t a = strlen(prefix), b = strlen(err);
    char *s = malloc(a + 2 + b + 1);
    if (!s) abort();
    memcpy(s, prefix, a);
    memcpy(s + a, ": ", 2);
    memcpy(s + a + 2, err, b + 1);
    free(prefix);
    free(err);
    return s;
}

void ct_train_err_free(ct_train_err err) { free(err); }

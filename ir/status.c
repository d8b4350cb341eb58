/* status.c — owned error messages (see status.h). */
#include "status.h"

#include <string.h>

struct ct_status_s {
    char *msg;
};

static ct_status status_from_string(char *msg)
{
    ct_status st = malloc(sizeof *st);
    if (!st) {
        fprintf(stderr, "contra: out of memory while reporting: %s\n", msg ? msg : "?");
        abort();
    }
    st->msg = msg;
    return st;
}

ct_status ct_verrorf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *msg = malloc((size_t)n + 1);
    if (!msg) {
        fprintf(stderr, "contra: out of memory while reporting an error\n");
        abort();
    }
    vsnprintf(msg, (size_t)n + 1, fmt, ap);
    return status_from_string(msg);
}

ct_status ct_errorf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ct_status st = ct_verrorf(fmt, ap);
    va_end(ap);
    return st;
}

ct_status ct_status_wrap(ct_status st, const char *fmt, ...)
{
    if (!st) return st;
    va_list ap;
    va_start(ap, fmt);
    ct_status pre = ct_verrorf(fmt, ap);
    va_end(ap);
    size_t a = strlen(pre->msg), b = strlen(st->msg);
    char *msg = malloc(a + 2 + b + 1);
    if (!msg) abort();
    memcpy(msg, pre->msg, a);
    memcpy(msg + a, ": ", 2);
    memcpy(msg + a + 2, st->msg, b + 1);
    ct_status_free(pre);
    free(st->msg);
    st->msg = msg;
    return st;
}

const char *ct_status_msg(ct_status st) { return st ? st->msg : "ok"; }

void ct_status_free(ct_status st)
{
    if (!st) return;
    free(st->msg);
    free(st);
}

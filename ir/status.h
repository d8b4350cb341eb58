/* status.h — errors as values.
 * A ct_status is NULL on success, or an owned message naming what is wrong
 * (file, node, tensor).  Callers either propagate it or free it. */
#ifndef CT_STATUS_H
#define CT_STATUS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ct_status_s *ct_status;

#define CT_OK ((ct_status)0)

#if defined(__GNUC__)
#define CT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CT_PRINTF(a, b)
#endif

/* A new error with a printf-style message. Never returns NULL. */
ct_status ct_errorf(const char *fmt, ...) CT_PRINTF(1, 2);
ct_status ct_verrorf(const char *fmt, va_list ap);
/* Prefix an existing error's message ("ctx: old message"); takes ownership. */
ct_status ct_status_wrap(ct_status st, const char *fmt, ...) CT_PRINTF(2, 3);
const char *ct_status_msg(ct_status st);
void ct_status_free(ct_status st);

/* Invariants of the code itself (not input validation): report and abort. */
#define CT_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: internal error: assertion '%s' failed\n",  \
                    __FILE__, __LINE__, #cond);                                \
            abort();                                                           \
        }                                                                      \
    } while (0)

#define CT_TRY(expr)                                                           \
    do {                                                                       \
        ct_status ct_try_st_ = (expr);                                         \
        if (ct_try_st_) return ct_try_st_;                                     \
    } while (0)

#endif

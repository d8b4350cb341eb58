/* npy.c — NumPy .npy reading and writing: a small parser of the header's
 * Python dict literal ('descr', 'fortran_order', 'shape') and raw data. */
#include "npy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "program.h"

static const struct {
    const char *descr; /* without the byte-order character */
    int dtype;
    size_t size;
    const char *name;
} types[] = {
    {"f4", CT_PT_FLOAT, 4, "float32"},   {"f8", CT_PT_DOUBLE, 8, "float64"}, {"i8", CT_PT_INT64, 8, "int64"},
    {"i4", CT_PT_INT32, 4, "int32"},     {"u1", CT_PT_UINT8, 1, "uint8"},    {"i1", CT_PT_INT8, 1, "int8"},
    {"b1", CT_PT_BOOL, 1, "bool"},       {"f2", CT_PT_FLOAT16, 2, "float16"},
};

size_t ct_npy_dtype_size(int dtype)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].dtype == dtype) return types[i].size;
    return 0;
}

const char *ct_npy_dtype_name(int dtype)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].dtype == dtype) return types[i].name;
    return "unknown";
}

void ct_npy_free(ct_npy *a)
{
    free(a->data);
    a->data = NULL;
}

/* The value text following 'key': in the header dict; NULL if absent. */
static const char *dict_value(const char *h, const char *key)
{
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

ct_status ct_npy_read(const char *path, ct_npy *a)
{
    memset(a, 0, sizeof *a);
    ct_status st = CT_OK;
    char *hdr = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return ct_errorf("%s: cannot read: %s", path, strerror(errno));
    unsigned char pre[10];
    if (fread(pre, 1, 8, f) != 8 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        st = ct_errorf("%s: not a .npy file (bad magic)", path);
        goto fail;
    }
    int major = pre[6];
    size_t hlen;
    if (major == 1) {
        if (fread(pre, 1, 2, f) != 2) goto truncated;
        hlen = pre[0] | (size_t)pre[1] << 8;
    } else if (major == 2 || major == 3) {
        if (fread(pre, 1, 4, f) != 4) goto truncated;
        hlen = pre[0] | (size_t)pre[1] << 8 | (size_t)pre[2] << 16 | (size_t)pre[3] << 24;
    } else {
        st = ct_errorf("%s: unsupported .npy format version %d", path, major);
        goto fail;
    }
    if (hlen > (1u << 20)) {
        st = ct_errorf("%s: .npy header too large", path);
        goto fail;
    }
    hdr = malloc(hlen + 1);
    if (!hdr) abort();
    if (fread(hdr, 1, hlen, f) != hlen) goto truncated;
    hdr[hlen] = 0;

    const char *d = dict_value(hdr, "descr");
    if (!d || (*d != '\'' && *d != '"')) {
        st = ct_errorf("%s: .npy header has no 'descr'", path);
        goto fail;
    }
    char descr[16] = {0};
    size_t k = 0;
    for (d++; *d && *d != '\'' && *d != '"' && k + 1 < sizeof descr; d++) descr[k++] = *d;
    const char *code = descr;
    if (descr[0] == '<' || descr[0] == '|' || descr[0] == '=') code = descr + 1;
    else if (descr[0] == '>') {
        if (strcmp(descr + 1, "u1") && strcmp(descr + 1, "i1") && strcmp(descr + 1, "b1")) {
            st = ct_errorf("%s: big-endian data ('%s') is not supported", path, descr);
            goto fail;
        }
        code = descr + 1;
    }
    a->dtype = 0;
    size_t es = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(types[i].descr, code)) a->dtype = types[i].dtype, es = types[i].size;
    if (!a->dtype) {
        st = ct_errorf("%s: unsupported dtype '%s'", path, descr);
        goto fail;
    }
    const char *fo = dict_value(hdr, "fortran_order");
    bool fortran = fo && !strncmp(fo, "True", 4);
    const char *sh = dict_value(hdr, "shape");
    if (!sh || *sh != '(') {
        st = ct_errorf("%s: .npy header has no 'shape'", path);
        goto fail;
    }
    sh++;
    uint64_t count = 1;
    while (*sh && *sh != ')') {
        while (*sh == ' ' || *sh == ',') sh++;
        if (*sh == ')') break;
        char *end;
        long long v = strtoll(sh, &end, 10);
        if (end == sh || v < 0) {
            st = ct_errorf("%s: bad shape in .npy header", path);
            goto fail;
        }
        if (a->rank >= CT_NPY_MAX_RANK) {
            st = ct_errorf("%s: rank above %d", path, CT_NPY_MAX_RANK);
            goto fail;
        }
        a->dims[a->rank++] = v;
        if (v && count > UINT64_MAX / (uint64_t)v / es) {
            st = ct_errorf("%s: shape too large", path);
            goto fail;
        }
        count *= (uint64_t)v;
        sh = end;
    }
    if (fortran && a->rank > 1) {
        int big = 0;
        for (int i = 0; i < a->rank; i++) big += a->dims[i] > 1;
        if (big > 1) {
            st = ct_errorf("%s: fortran-order arrays are not supported (save with np.ascontiguousarray)", path);
            goto fail;
        }
    }
    a->nbytes = (size_t)count * es;
    a->data = malloc(a->nbytes ? a->nbytes : 1);
    if (!a->data) {
        st = ct_errorf("%s: out of memory (%zu bytes)", path, a->nbytes);
        goto fail;
    }
    if (fread(a->data, 1, a->nbytes, f) != a->nbytes) goto truncated;
    free(hdr);
    fclose(f);
    return CT_OK;
truncated:
    st = ct_errorf("%s: truncated .npy file", path);
fail:
    free(hdr);
    fclose(f);
    ct_npy_free(a);
    return st;
}

ct_status ct_npy_write(const char *path, int dtype, int rank, const int64_t *dims, const void *data)
{
    const char *descr = NULL;
    size_t es = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].dtype == dtype) descr = types[i].descr, es = types[i].size;
    if (!descr) return ct_errorf("%s: cannot write element type %d", path, dtype);
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, 'shape': (", es == 1 ? '|' : '<',
                     descr);
    uint64_t count = 1;
    for (int i = 0; i < rank; i++) {
        n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)dims[i], rank == 1 ? "," : (i + 1 < rank ? ", " : ""));
        count *= (uint64_t)dims[i];
    }
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    /* pad with spaces so that magic + len + header + '\n' is a multiple of 64 */
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ct_errorf("%s: cannot write: %s", path, strerror(errno));
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    bool ok = fwrite(pre, 1, 10, f) == 10 && fwrite(dict, 1, (size_t)n, f) == (size_t)n;
    for (size_t i = 0; i < pad && ok; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    size_t nb = (size_t)count * es;
    ok = ok && (nb == 0 || fwrite(data, 1, nb, f) == nb);
    ok = fflush(f) == 0 && ok;
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return ct_errorf("%s: cannot write: %s", path, strerror(err));
    }
    return CT_OK;
}

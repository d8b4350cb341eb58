/* model_load.c — open a model file by its content: the ONNX text syntax
 * (first non-blank byte '<', or a *.onnxtxt / *.txt name) or an ONNX
 * protobuf (anything else). */
#include "frontend.h"

#include <errno.h>
#include <string.h>

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

/* Peek at the first non-blank byte of the file (EOF gives 0). */
static ct_status first_nonblank(const char *path, int *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return ct_errorf("%s: cannot open: %s", path, strerror(errno));
    int ch;
    do ch = fgetc(f);
    while (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v');
    bool err = ferror(f);
    fclose(f);
    if (err) return ct_errorf("%s: cannot read: %s", path, strerror(errno));
    *out = ch == EOF ? 0 : ch;
    return CT_OK;
}

ct_status ct_model_load(const char *path, ct_graph **out)
{
    *out = NULL;
    int first = 0;
    CT_TRY(first_nonblank(path, &first));
    if (first == '<' || has_suffix(path, ".onnxtxt") || has_suffix(path, ".txt"))
        return ct_onnx_text_load(path, out);
    return ct_onnx_load(path, out);
}

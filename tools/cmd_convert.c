/* cmd_convert.c — 'contra convert IN OUT': read a model (ONNX or the ONNX
 * text syntax), optionally fix the batch and optimize it, and write it as
 * ONNX or, for OUT ending in .onnxtxt, the text syntax. Output is atomic. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dump.h"
#include "frontend.h"
#include "passes.h"

static void convert_usage(FILE *f)
{
    fprintf(f, "usage: contra convert IN OUT [--batch N] [--optimize]\n"
               "\n"
               "Read IN (ONNX protobuf, or the ONNX text syntax: *.onnxtxt or a file starting\n"
               "with '<') and write OUT: the ONNX text syntax when OUT ends in .onnxtxt, an ONNX\n"
               "ModelProto otherwise. OUT is written atomically; on error nothing is written.\n"
               "\n"
               "options:\n"
               "  --batch N     fix the symbolic batch dimension to N (shapes are re-inferred; a\n"
               "                model exported with a fixed batch accepts only that batch)\n"
               "  --optimize    run the default pass pipeline (");
    for (int i = 0; ct_default_pipeline[i]; i++) fprintf(f, "%s%s", i ? " " : "", ct_default_pipeline[i]);
    fprintf(f, ") before writing\n"
               "  -h, --help    show this help\n"
               "\n"
               "exit status: 0 success, 1 error (message on stderr), 2 usage error\n");
}

static int convert_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "contra convert: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: contra convert IN OUT [--batch N] [--optimize]\n"
                    "Run 'contra convert --help' for the options.\n");
    return 2;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int cmd_convert(int argc, char **argv)
{
    const char *in_path = NULL, *out_path = NULL;
    bool optimize = false;
    int64_t batch = 0;
    ct_graph *g = NULL;
    ct_status st = CT_OK;
    char *text = NULL;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            convert_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--optimize")) {
            optimize = true;
        } else if (!strcmp(a, "--batch") || !strncmp(a, "--batch=", 8)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) return convert_usage_error("%s needs a number", a);
            char *end = NULL;
            errno = 0;
            long long b = strtoll(v, &end, 10);
            if (errno || !*v || *end || b <= 0 || b > (1 << 30))
                return convert_usage_error("--batch needs a positive integer, got '%s'", v);
            batch = b;
        } else if (a[0] == '-' && a[1]) {
            return convert_usage_error("unknown option '%s'", a);
        } else if (!in_path) {
            in_path = a;
        } else if (!out_path) {
            out_path = a;
        } else {
            return convert_usage_error("unexpected argument '%s' (IN and OUT already given)", a);
        }
    }
    if (!in_path || !out_path) return convert_usage_error("%s", "needs IN and OUT");

    st = ct_model_load(in_path, &g);
    if (st) goto fail;
    if (batch > 0) {
        st = ct_cli_batch_set(g, batch, in_path);
        if (st) goto fail;
        if (!optimize) { /* shapes depend on the batch: re-infer them */
            const char *names[] = {"infer_shapes"};
            ct_pass_options opt = {0};
            st = ct_pass_run(g, names, 1, &opt);
            if (st) goto fail;
        }
    }
    if (optimize) {
        int n = 0;
        while (ct_default_pipeline[n]) n++;
        ct_pass_options opt = {0};
#ifdef CT_DEBUG
        opt.verify = true;
#endif
        st = ct_pass_run(g, (const char *const *)ct_default_pipeline, n, &opt);
        if (st) goto fail;
    }

    if (ends_with(out_path, ".onnxtxt")) {
        text = ct_onnx_text_print(g);
        if (!text) {
            st = ct_errorf("%s: cannot print the graph in the ONNX text syntax", in_path);
            goto fail;
        }
        st = ct_file_write_atomic(out_path, text, strlen(text));
    } else {
        st = ct_onnx_save(g, out_path);
    }
    if (st) goto fail;
    rc = 0;
fail:
    free(text);
    if (g) ct_graph_free(g);
    if (st) rc = cli_fail(st);
    return rc;
}

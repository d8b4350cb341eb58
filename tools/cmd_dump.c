/* cmd_dump.c — 'contra dump': load a model, run the default pipeline (or stop
 * after a pass), and print it as a readable table, the ONNX text syntax,
 * JSON, Graphviz dot or SVG, with statistics on request. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "method.h"
#include "dump.h"
#include "frontend.h"
#include "passes.h"

typedef enum { FMT_TABLE, FMT_TEXT, FMT_JSON, FMT_DOT, FMT_SVG } dump_format;

static void dump_usage(FILE *f)
{
    fprintf(f,
            "usage: contra dump MODEL [--method PRESET [--ranks N [--sync-bn]]] [--after PASS]\n"
            "                   [--format FORMAT] [--stats] [--batch N] [-o FILE]\n"
            "\n"
            "Load MODEL (ONNX protobuf, or the ONNX text syntax: *.onnxtxt or a file starting\n"
            "with '<'), run the default pass pipeline and print the graph.\n"
            "\n"
            "options:\n"
            "  --after PASS     stop after PASS; 'import' shows the graph as loaded, before any\n"
            "                   pass. Passes:");
    for (const ct_pass_info *p = ct_pass_registry; p->name; p++) fprintf(f, " %s", p->name);
    fprintf(f,
            "\n"
            "                   (default: the whole default pipeline:");
    for (int i = 0; ct_default_pipeline[i]; i++) fprintf(f, " %s", ct_default_pipeline[i]);
    fprintf(f,
            ";\n"
            "                   a pass outside it, like memory_plan, runs after it)\n"
            "  --format FORMAT  table (default): readable listing, a header (model, producer,\n"
            "                     opset, inputs/outputs, parameters, op counts) then one line per\n"
            "                     node: index, op, name, input shapes -> output shapes,\n"
            "                     attributes (k=kernel s=strides p=pads d=dilations g=group);\n"
            "                     float shapes are bare, other dtypes are named; persistent\n"
            "                     inputs show as p[..] (weights) or +Np/+Ns/+Nc counts of\n"
            "                     params/state/consts; a planned graph adds its memory plan\n"
            "                   text: the ONNX text syntax (parseable back by contra)\n"
            "                   json: one JSON object: name, producer, opset, ir_version, batch,\n"
            "                     inputs, outputs, values (kind, dtype, shape with \"N\" for the\n"
            "                     symbolic batch, offset/first_use/last_use when planned),\n"
            "                     nodes (index, name, op, domain, inputs, outputs, attrs, flops)\n"
            "                     and \"stats\" with --stats\n"
            "                   dot: Graphviz, dtype and shape on every edge\n"
            "                   svg: the dot graph drawn by Graphviz's 'dot -Tsvg'\n"
            "  --stats          op counts, trainable parameters and bytes, state (BatchNorm\n"
            "                   statistics) and constants, FLOPs per node and in total (a\n"
            "                   multiply-add counts as 2), multiply-adds, activation bytes\n"
            "  --method PRESET  show the whole training graph of a contrastive method attached\n"
            "                   to MODEL as its encoder (heads, key/target encoder, loss,\n"
            "                   backward, state updates, optimizer), with the preset's defaults:\n"
            "                  ");
    for (const char *const *m = ct_method_preset_names(); *m; m++) fprintf(f, " %s", *m);
    fprintf(f,
            "\n"
            "                   ('--after import' shows it as attached, before the passes)\n"
            "  --batch N        fix the symbolic batch dimension to N before the passes (a model\n"
            "                   exported with a fixed batch accepts only that batch); with\n"
            "                   --method, the method's batch per view (default: the preset's)\n"
            "  --ranks N        with --method: one rank of an N-rank data-parallel job (the\n"
            "                   AllReduce/AllGather/ReduceScatter nodes; 'contra compile --help')\n"
            "  --sync-bn        with --ranks: SyncBatchNorm instead of shuffle BN\n"
            "  -o FILE          write to FILE (atomically) instead of standard output\n"
            "  -h, --help       show this help\n"
            "\n"
            "exit status: 0 success, 1 error (message on stderr), 2 usage error\n");
}

static int dump_usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "contra dump: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: contra dump MODEL [--method PRESET [--ranks N [--sync-bn]]] [--after PASS] [--format FORMAT] [--stats] [--batch N] [-o FILE]\n"
                    "Run 'contra dump --help' for the options.\n");
    return 2;
}

/* "--name value" or "--name=value": returns the value and advances *i, or
 * NULL if argv[*i] is not this option. *missing is set when it has no value. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n)) return NULL;
    if (a[n] == '=') return a + n + 1;
    if (a[n] != 0) return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return NULL;
    }
    return argv[++*i];
}

static bool in_default_pipeline(const char *name)
{
    for (int i = 0; ct_default_pipeline[i]; i++)
        if (!strcmp(ct_default_pipeline[i], name)) return true;
    return false;
}

/* Run Graphviz dot over the dot text; the SVG comes back malloc'd. */
static ct_status svg_render(const char *dot_text, size_t dot_len, char **svg, size_t *svg_len)
{
    ct_status st = CT_OK;
    FILE *in = NULL, *mem = NULL;
    int pipefd[2] = {-1, -1};
    pid_t pid = -1;
    char *buf = NULL;
    size_t blen = 0;

    /* find dot on PATH first, so its absence is a clear message */
    const char *path = getenv("PATH");
    bool found = false;
    if (path) {
        char *copy = strdup(path), *save = NULL;
        CT_ASSERT(copy);
        for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
            char full[4096];
            snprintf(full, sizeof full, "%s/dot", *d ? d : ".");
            found = access(full, X_OK) == 0;
        }
        free(copy);
    }
    if (!found) return ct_errorf("--format svg needs Graphviz's 'dot' program, not found on PATH "
                                 "(install it: apt-get install graphviz), or use --format dot");

    in = tmpfile();
    if (!in || fwrite(dot_text, 1, dot_len, in) != dot_len || fflush(in) != 0 || fseek(in, 0, SEEK_SET) != 0) {
        st = ct_errorf("cannot write a temporary file for dot: %s", strerror(errno));
        goto fail;
    }
    if (pipe(pipefd) != 0) {
        st = ct_errorf("pipe: %s", strerror(errno));
        goto fail;
    }
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        st = ct_errorf("fork: %s", strerror(errno));
        goto fail;
    }
    if (pid == 0) {
        dup2(fileno(in), 0);
        dup2(pipefd[1], 1);
        close(pipefd[0]);
        close(pipefd[1]);
        execlp("dot", "dot", "-Tsvg", (char *)NULL);
        fprintf(stderr, "contra: cannot run dot: %s\n", strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    mem = open_memstream(&buf, &blen);
    CT_ASSERT(mem);
    char chunk[65536];
    for (;;) {
        ssize_t r = read(pipefd[0], chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        fwrite(chunk, 1, (size_t)r, mem);
    }
    fclose(mem);
    mem = NULL;
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || blen == 0) {
        st = ct_errorf("Graphviz 'dot -Tsvg' failed (%s %d)", WIFEXITED(ws) ? "exit status" : "signal",
                       WIFEXITED(ws) ? WEXITSTATUS(ws) : WIFSIGNALED(ws) ? WTERMSIG(ws) : -1);
        goto fail;
    }
    *svg = buf;
    *svg_len = blen;
    buf = NULL;
fail:
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (pid > 0) waitpid(pid, NULL, 0);
    if (mem) fclose(mem);
    if (in) fclose(in);
    free(buf);
    return st;
}

/* Replace the encoder *g by the training graph of a method preset attached to it. */
static ct_status attach_method(ct_graph **g, const char *preset, int64_t batch, int ranks, bool sync_bn)
{
    ct_method_options o;
    CT_TRY(ct_method_preset(preset, &o));
    if (batch > 0) o.batch = batch;
    if (ranks > 1) { /* as 'contra compile --ranks' does */
        o.ranks = ranks;
        o.bn_splits = 1;
        if (sync_bn) o.sync_bn = true, o.shuffle_bn = false;
    }
    o.attach_optimizer = o.optimizer != NULL;
    ct_graph *train = NULL;
    ct_status st = ct_method_attach(*g, &o, &train);
    if (st) return ct_status_wrap(st, "%s: --method %s", (*g)->source_path ? (*g)->source_path : "model", preset);
    ct_graph_free(*g);
    *g = train;
    return CT_OK;
}

int cmd_dump(int argc, char **argv)
{
    const char *model = NULL, *after = NULL, *out_path = NULL, *method = NULL;
    dump_format fmt = FMT_TABLE;
    bool stats_on = false;
    int64_t batch = 0;
    int ranks = 1;
    bool sync_bn = false;
    ct_graph *g = NULL;
    ct_status st = CT_OK;
    char *text = NULL;
    size_t text_len = 0;
    int rc = 1;
    ct_dump_stats stats = {0};
    bool have_stats = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        bool missing = false;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            dump_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--stats")) {
            stats_on = true;
        } else if (!strcmp(a, "--sync-bn")) {
            sync_bn = true;
        } else if ((v = opt_value(argc, argv, &i, "--ranks", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a number", a);
            char *end = NULL;
            errno = 0;
            long r = strtol(v, &end, 10);
            if (errno || !*v || *end || r < 1 || r > 65536)
                return dump_usage_error("--ranks needs an integer in [1, 65536], got '%s'", v);
            ranks = (int)r;
        } else if ((v = opt_value(argc, argv, &i, "--after", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a pass name", a);
            after = v;
        } else if ((v = opt_value(argc, argv, &i, "--format", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a format", a);
            if (!strcmp(v, "table")) fmt = FMT_TABLE;
            else if (!strcmp(v, "text")) fmt = FMT_TEXT;
            else if (!strcmp(v, "json")) fmt = FMT_JSON;
            else if (!strcmp(v, "dot")) fmt = FMT_DOT;
            else if (!strcmp(v, "svg")) fmt = FMT_SVG;
            else return dump_usage_error("unknown format '%s' (table, text, json, dot, svg)", v);
        } else if ((v = opt_value(argc, argv, &i, "--batch", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a number", a);
            char *end = NULL;
            errno = 0;
            long long b = strtoll(v, &end, 10);
            if (errno || !*v || *end || b <= 0 || b > (1 << 30))
                return dump_usage_error("--batch needs a positive integer, got '%s'", v);
            batch = b;
        } else if ((v = opt_value(argc, argv, &i, "-o", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a file name", a);
            out_path = v;
        } else if ((v = opt_value(argc, argv, &i, "--method", &missing)) || missing) {
            if (missing) return dump_usage_error("%s needs a method preset", a);
            method = v;
        } else if (a[0] == '-' && a[1]) {
            return dump_usage_error("unknown option '%s'", a);
        } else if (model) {
            return dump_usage_error("more than one model given ('%s')", a);
        } else {
            model = a;
        }
    }
    if (!model) return dump_usage_error("%s", "no MODEL given");
    if ((ranks > 1 || sync_bn) && !method) return dump_usage_error("%s", "--ranks and --sync-bn need --method");
    if (sync_bn && ranks < 2) return dump_usage_error("%s", "--sync-bn needs --ranks N with N > 1");
    if (after && strcmp(after, "import") && !ct_pass_find(after))
        return dump_usage_error("unknown pass '%s' for --after (see --help for the list)", after);

    st = ct_model_load(model, &g);
    if (st) goto fail;
    if (method) {
        st = attach_method(&g, method, batch, ranks, sync_bn);
        if (st) goto fail;
    } else if (batch > 0) {
        st = ct_cli_batch_set(g, batch, model);
        if (st) goto fail;
    }

    if (!after || strcmp(after, "import")) {
        const char *names[64];
        int n = 0;
        for (int i = 0; ct_default_pipeline[i] && n < 63; i++) names[n++] = ct_default_pipeline[i];
        /* a pass outside the default pipeline (memory_plan) runs after it */
        if (after && !in_default_pipeline(after)) names[n++] = after;
        ct_pass_options opt = {0};
#ifdef CT_DEBUG
        opt.verify = true;
#endif
        opt.stop_after = after;
        st = ct_pass_run(g, names, n, &opt);
        if (st) goto fail;
    }

    if (stats_on) {
        ct_dump_stats_compute(g, &stats);
        have_stats = true;
    }
    if (fmt == FMT_TEXT) {
        text = ct_onnx_text_print(g);
        if (!text) {
            st = ct_errorf("%s: cannot print the graph in the ONNX text syntax", model);
            goto fail;
        }
        text_len = strlen(text);
    } else {
        FILE *mem = open_memstream(&text, &text_len);
        CT_ASSERT(mem);
        switch (fmt) {
        case FMT_TABLE: ct_dump_table_print(mem, g, have_stats ? &stats : NULL); break;
        case FMT_JSON: ct_dump_json_print(mem, g, have_stats ? &stats : NULL); break;
        case FMT_DOT:
        case FMT_SVG: ct_dump_dot_print(mem, g); break;
        default: break;
        }
        if (fclose(mem) != 0) {
            st = ct_errorf("out of memory printing the graph");
            goto fail;
        }
        if (fmt == FMT_SVG) {
            char *svg = NULL;
            size_t svg_len = 0;
            st = svg_render(text, text_len, &svg, &svg_len);
            if (st) goto fail;
            free(text);
            text = svg;
            text_len = svg_len;
        }
    }

    if (out_path) {
        st = ct_file_write_atomic(out_path, text, text_len);
        if (st) goto fail;
    } else if (fwrite(text, 1, text_len, stdout) != text_len || fflush(stdout) != 0) {
        st = ct_errorf("writing to standard output failed: %s", strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    if (have_stats) ct_dump_stats_free(&stats);
    free(text);
    if (g) ct_graph_free(g);
    if (st) rc = cli_fail(st);
    return rc;
}

/* cmd_run.c — 'contra run MODEL --input x.npy --output y.npy': compile for
 * inference through a cache ($CONTRA_CACHE or ~/.cache/contra, keyed by the
 * model's content, the batch, contra itself and the C compiler's version),
 * then load the program, bind the .npy inputs, run, write the outputs. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_compile.h"
#include "codegen.h"
#include "npy.h"
#include "runtime.h"

#define MAX_BIND 64
#define CACHE_MAX_ENTRIES 32 /* programs kept in the compile cache */

typedef struct {
    const char *name; /* NULL: by position */
    const char *path;
} binding;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: contra run MODEL --input X.npy [--input NAME=Y.npy ...] --output OUT.npy\n"
            "                  [--output NAME=OUT2.npy ...] [--batch N] [--threads T] [--cc CC]\n"
            "\n"
            "Compile MODEL for inference (cached) and run it on NumPy .npy inputs.\n"
            "\n"
            "  --input [NAME=]FILE   an input tensor; without NAME, inputs are taken in\n"
            "                        the graph's input order. Every input must be given\n"
            "                        once, with the compiled shape and dtype\n"
            "  --output [NAME=]FILE  where to write an output (written atomically);\n"
            "                        without NAME, in the graph's output order\n"
            "  --batch N             compile for batch N (see 'contra compile --help')\n"
            "  --threads T           threads for the program's loops and BLAS\n"
            "  --repeat R            run R more times after the first and print the mean\n"
            "                        time of one run to stderr\n"
            "  --profile N           with --repeat: time every node of those runs and print\n"
            "                        the N slowest to stderr\n"
            "  --cc CC               C compiler (default: $CC, else cc)\n"
            "  -h, --help            show this help\n"
            "\n"
            "Compiled programs are cached in $CONTRA_CACHE, else ~/.cache/contra, keyed\n"
            "by a hash of the model file, the batch, contra's version and binary, and\n"
            "the C compiler's version string; the %d most recently used programs\n"
            "are kept.\n", CACHE_MAX_ENTRIES);
}

typedef struct {
    uint64_t h;
} fnv;

static void fnv_init(fnv *f) { f->h = 1469598103934665603ull; }
/* FNV-1a over 8-byte words (then the tail bytes): a cache key, not a MAC. */
static void fnv_add(fnv *f, const void *data, size_t n)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        f->h ^= w;
        f->h *= 1099511628211ull;
    }
    for (; i < n; i++) {
        f->h ^= p[i];
        f->h *= 1099511628211ull;
    }
}

static ct_status fnv_file(fnv *f, const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return ct_errorf("cannot read '%s': %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0) fnv_add(f, buf, n);
    bool err = ferror(fp);
    fclose(fp);
    if (err) return ct_errorf("cannot read '%s'", path);
    return CT_OK;
}

static ct_status mkdir_p(const char *dir)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return ct_errorf("cannot create '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return ct_errorf("cannot create '%s': %s", buf, strerror(errno));
    return CT_OK;
}

static void rm_tree_shallow(const char *dir)
{
    const char *names[] = {"model.c", "program.h", "params.bin", "model.so", "cc.log"};
    char p[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Keep the cache bounded: mark `dir` as used now and remove the least
 * recently used entries beyond CACHE_MAX_ENTRIES (failed builds kept for
 * inspection, *.tmp.*, are left alone). */

static void cache_evict(const char *root, const char *dir)
{
    utimes(dir, NULL);
    DIR *d = opendir(root);
    if (!d) return;
    struct {
        char name[32];
        time_t mtime;
    } ent[256];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < 256) {
        if (strlen(de->d_name) != 16 || strspn(de->d_name, "0123456789abcdef") != 16) continue;
        char p[4200];
        struct stat stt;
        snprintf(p, sizeof p, "%.4000s/%.100s", root, de->d_name);
        if (stat(p, &stt) || !S_ISDIR(stt.st_mode)) continue;
        snprintf(ent[n].name, sizeof ent[n].name, "%s", de->d_name);
        ent[n].mtime = stt.st_mtime;
        n++;
    }
    closedir(d);
    while (n > CACHE_MAX_ENTRIES) {
        int oldest = 0;
        for (int i = 1; i < n; i++)
            if (ent[i].mtime < ent[oldest].mtime) oldest = i;
        char p[4200];
        snprintf(p, sizeof p, "%.4000s/%.31s", root, ent[oldest].name);
        if (strcmp(p, dir)) rm_tree_shallow(p);
        ent[oldest] = ent[--n];
    }
}

/* Compile into the cache if needed; *dir receives the program's folder. */
static ct_status cached_compile(const char *model, const cli_compile_options *opt, char *dir, size_t dirlen)
{
    fnv h;
    fnv_init(&h);
    CT_TRY(fnv_file(&h, model));
    char *ccv = NULL;
    CT_TRY(ct_codegen_cc_version(opt->cc, &ccv));
    char extra[1024];
    /* the environment that changes the generated code (codegen/c_backend.c, passes/fuse.c) */
    const char *wino = getenv("CONTRA_WINOGRAD"), *nofuse = getenv("CT_DEBUG_NO_FUSE");
    snprintf(extra, sizeof extra, "|batch=%lld|contra=%s|cc=%s|%s|winograd=%s|nofuse=%s", (long long)opt->batch,
             CT_VERSION, ct_codegen_cc_name(opt->cc), ccv, wino ? wino : "", nofuse ? nofuse : "");
    free(ccv);
    fnv_add(&h, extra, strlen(extra));
    /* contra's own binary: a rebuilt compiler never reuses stale programs */
    ct_status st = fnv_file(&h, "/proc/self/exe");
    if (st) ct_status_free(st);

    char root[3000];
    const char *env = getenv("CONTRA_CACHE");
    const char *home = getenv("HOME");
    if (env && *env) snprintf(root, sizeof root, "%s", env);
    else if (home && *home) snprintf(root, sizeof root, "%s/.cache/contra", home);
    else snprintf(root, sizeof root, "/tmp/contra-cache");
    CT_TRY(mkdir_p(root));
    snprintf(dir, dirlen, "%s/%016llx", root, (unsigned long long)h.h);
    char so[4300];
    snprintf(so, sizeof so, "%s/model.so", dir);
    if (access(so, R_OK) == 0) {
        cache_evict(root, dir);
        return CT_OK;
    }

    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    cli_compile_options o = *opt;
    o.verbose = false;
    st = cli_compile_infer(model, tmp, &o);
    if (st) {
        char log[4400];
        snprintf(log, sizeof log, "%s/model.c", tmp);
        /* keep a rejected generated file for inspection; drop anything else */
        if (access(log, R_OK) != 0) rm_tree_shallow(tmp);
        return st;
    }
    if (rename(tmp, dir) != 0) {
        /* another process filled the same entry first: use theirs */
        rm_tree_shallow(tmp);
        if (access(so, R_OK) != 0) return ct_errorf("cannot fill cache entry '%s': %s", dir, strerror(errno));
    }
    cache_evict(root, dir);
    return CT_OK;
}

static int parse_bind(const char *arg, binding *b)
{
    const char *eq = strchr(arg, '=');
    b->name = NULL;
    b->path = arg;
    if (eq && eq != arg && access(arg, F_OK) != 0) {
        size_t n = (size_t)(eq - arg);
        char *name = malloc(n + 1);
        if (!name) abort();
        memcpy(name, arg, n);
        name[n] = 0;
        b->name = name;
        b->path = eq + 1;
    }
    return 0;
}

int cmd_run(int argc, char **argv)
{
    const char *model = NULL;
    binding ins[MAX_BIND], outs[MAX_BIND];
    int n_in = 0, n_out = 0, threads = 0, repeat = 0, profile = 0, rc = 1;
    cli_compile_options opt = {0};
    ct_rt_program *prog = NULL;
    ct_npy arrays[MAX_BIND];
    int n_arrays = 0;
    ct_status st = CT_OK;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--input") && i + 1 < argc) {
            if (n_in == MAX_BIND) { fprintf(stderr, "contra run: too many --input\n"); return 2; }
            parse_bind(argv[++i], &ins[n_in++]);
        } else if (!strcmp(a, "--output") && i + 1 < argc) {
            if (n_out == MAX_BIND) { fprintf(stderr, "contra run: too many --output\n"); return 2; }
            parse_bind(argv[++i], &outs[n_out++]);
        } else if ((!strcmp(a, "--batch") || !strcmp(a, "--threads") || !strcmp(a, "--repeat") ||
                    !strcmp(a, "--profile")) && i + 1 < argc) {
            char *end;
            long long v = strtoll(argv[++i], &end, 10);
            if (*end || v <= 0 || v > (1 << 20)) {
                fprintf(stderr, "contra run: %s needs a positive integer, got '%s'\n", a, argv[i]);
                return 2;
            }
            if (!strcmp(a, "--batch")) opt.batch = v;
            else if (!strcmp(a, "--repeat")) repeat = (int)v;
            else if (!strcmp(a, "--profile")) profile = (int)v;
            else threads = (int)v;
        } else if (!strcmp(a, "--cc") && i + 1 < argc) opt.cc = argv[++i];
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "contra run: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        } else if (!model) model = a;
        else {
            fprintf(stderr, "contra run: more than one model given ('%s', '%s')\n", model, a);
            return 2;
        }
    }
    if (!model || !n_out) {
        fprintf(stderr, "contra run: %s\n", !model ? "no model given" : "no --output given");
        usage(stderr);
        return 2;
    }

    /* read the inputs first: a bad .npy fails before any compiling */
    for (int i = 0; i < n_in; i++) {
        st = ct_npy_read(ins[i].path, &arrays[i]);
        if (st) goto fail;
        n_arrays++;
    }

    char dir[4200];
    st = cached_compile(model, &opt, dir, sizeof dir);
    if (st) goto fail;
    st = ct_rt_program_load(dir, &prog);
    if (st) goto fail;
    const ct_program_desc *d = ct_rt_program_desc(prog);
    if (threads) ct_rt_program_set_threads(prog, threads);

    /* bind inputs: named ones by name, the rest in graph order */
    bool taken[MAX_BIND] = {false};
    for (int i = 0; i < n_in; i++) {
        if (!ins[i].name) continue;
        int slot = -1;
        for (int k = 0; k < d->n_inputs; k++)
            if (!strcmp(d->tensors[d->inputs[k]].name, ins[i].name)) slot = k;
        if (slot < 0) {
            st = ct_errorf("%s: the model has no input named '%s'", ins[i].path, ins[i].name);
            goto fail;
        }
        if (taken[slot]) {
            st = ct_errorf("input '%s' is given twice", ins[i].name);
            goto fail;
        }
        taken[slot] = true;
    }
    for (int i = 0; i < n_in; i++) {
        const char *name = ins[i].name;
        if (!name) {
            int slot = 0;
            while (slot < d->n_inputs && taken[slot]) slot++;
            if (slot == d->n_inputs) {
                st = ct_errorf("%s: extra input (the model has %d input%s)", ins[i].path, d->n_inputs,
                               d->n_inputs == 1 ? "" : "s");
                goto fail;
            }
            taken[slot] = true;
            name = d->tensors[d->inputs[slot]].name;
        }
        st = ct_rt_program_set_input(prog, name, arrays[i].dtype, arrays[i].rank, arrays[i].dims, arrays[i].data);
        if (st) {
            st = ct_status_wrap(st, "%s", ins[i].path);
            goto fail;
        }
    }
    for (int k = 0; k < d->n_inputs; k++)
        if (!taken[k]) {
            st = ct_errorf("missing input '%s' (give it with --input %s=FILE.npy)", d->tensors[d->inputs[k]].name,
                           d->tensors[d->inputs[k]].name);
            goto fail;
        }

    /* resolve outputs before running */
    int out_index[MAX_BIND];
    bool out_taken[MAX_BIND] = {false};
    for (int i = 0; i < n_out; i++) {
        out_index[i] = -1;
        if (!outs[i].name) continue;
        for (int k = 0; k < d->n_outputs; k++)
            if (!strcmp(d->tensors[d->outputs[k]].name, outs[i].name)) out_index[i] = k;
        if (out_index[i] < 0) {
            st = ct_errorf("the model has no output named '%s'", outs[i].name);
            goto fail;
        }
        out_taken[out_index[i]] = true;
    }
    for (int i = 0; i < n_out; i++) {
        if (outs[i].name) continue;
        int k = 0;
        while (k < d->n_outputs && out_taken[k]) k++;
        if (k == d->n_outputs) {
            st = ct_errorf("%s: extra output (the model has %d output%s)", outs[i].path, d->n_outputs,
                           d->n_outputs == 1 ? "" : "s");
            goto fail;
        }
        out_taken[k] = true;
        out_index[i] = k;
    }

    st = ct_rt_program_run(prog);
    if (st) goto fail;
    if (repeat) {
        bool profiling = profile > 0 && ct_rt_program_profile_start(prog);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < repeat && !st; r++) st = ct_rt_program_run(prog);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (st) goto fail;
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        fprintf(stderr, "contra run: %.3f ms per run (mean of %d, batch %lld)\n", 1e3 * sec / repeat, repeat,
                (long long)d->batch);
        if (profiling) ct_rt_program_profile_report(prog, stderr, repeat, profile);
    }
    for (int i = 0; i < n_out; i++) {
        int t = d->outputs[out_index[i]];
        const ct_tensor_desc *td = &d->tensors[t];
        st = ct_npy_write(outs[i].path, td->dtype, td->rank, td->dims, ct_rt_program_tensor(prog, t));
        if (st) goto fail;
    }
    rc = 0;
fail:
    if (st) rc = cli_fail(st);
    for (int i = 0; i < n_arrays; i++) ct_npy_free(&arrays[i]);
    for (int i = 0; i < n_in; i++) free((char *)ins[i].name);
    for (int i = 0; i < n_out; i++) free((char *)outs[i].name);
    ct_rt_program_free(prog);
    return rc;
}

/* c_build.c — writing a generated C program to a folder (model.c, the ABI
 * header, params.bin; each atomically) and building it into model.so with
 * the system C compiler and OpenBLAS. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"
#include "fileio.h"

#ifndef CT_PROGRAM_H_PATH
#error "CT_PROGRAM_H_PATH must name runtime/program.h (set by codegen/meson.build)"
#endif

static ct_status mkdir_p(const char *dir)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return ct_errorf("path too long: %s", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST) return ct_errorf("cannot create folder '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST) return ct_errorf("cannot create folder '%s': %s", buf, strerror(errno));
    return CT_OK;
}


ct_status ct_codegen_c_write(const ct_c_program *p, const char *outdir)
{
    char path[4096];
    CT_TRY(mkdir_p(outdir));
    char *hdr = NULL;
    size_t hlen = 0;
    CT_TRY(ct_file_read(CT_PROGRAM_H_PATH, &hdr, &hlen));
    snprintf(path, sizeof path, "%s/program.h", outdir);
    ct_status st = ct_file_write_atomic(path, hdr, hlen);
    free(hdr);
    if (st) return st;
    snprintf(path, sizeof path, "%s/params.bin", outdir);
    CT_TRY(ct_file_write_atomic(path, p->blob, p->blob_len));
    snprintf(path, sizeof path, "%s/model.c", outdir);
    CT_TRY(ct_file_write_atomic(path, p->source, p->source_len));
    return CT_OK;
}

const char *ct_codegen_cc_name(const char *cc)
{
    if (cc && *cc) return cc;
    const char *env = getenv("CC");
    return env && *env ? env : "cc";
}

/* Single-quote a string for /bin/sh. */
static void shell_quote(char *dst, size_t n, const char *s)
{
    size_t j = 0;
    if (j + 1 < n) dst[j++] = '\'';
    for (; *s && j + 5 < n; s++) {
        if (*s == '\'') {
            memcpy(dst + j, "'\\''", 4);
            j += 4;
        } else dst[j++] = *s;
    }
    if (j + 1 < n) dst[j++] = '\'';
    dst[j] = 0;
}

static char *run_capture(const char *cmd, int *status)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) abort();
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n - 1 == 0) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) abort();
            buf = nb;
        }
    }
    buf[n] = 0;
    int rc = pclose(p);
    *status = rc;
    return buf;
}

ct_status ct_codegen_cc_version(const char *cc, char **out)
{
    char cmd[4600];
    snprintf(cmd, sizeof cmd, "%s --version 2>&1", ct_codegen_cc_name(cc));
    int rc = 0;
    char *txt = run_capture(cmd, &rc);
    if (!txt) return ct_errorf("cannot run the C compiler '%s'", ct_codegen_cc_name(cc));
    if (rc != 0) {
        free(txt);
        return ct_errorf("the C compiler '%s' does not run ('%s --version' failed)", ct_codegen_cc_name(cc),
                         ct_codegen_cc_name(cc));
    }
    char *nl = strchr(txt, '\n');
    if (nl) *nl = 0;
    *out = txt;
    return CT_OK;
}

ct_status ct_codegen_c_build(const char *outdir, const char *cc)
{
    char src[4200], so[4200], tmp[4300], log[4200], qsrc[8500], qtmp[8700], qlog[8500], qdir[8500];
    snprintf(src, sizeof src, "%s/model.c", outdir);
    snprintf(so, sizeof so, "%s/model.so", outdir);
    snprintf(tmp, sizeof tmp, "%s/model.so.tmp.%ld", outdir, (long)getpid());
    snprintf(log, sizeof log, "%s/cc.log", outdir);
    shell_quote(qsrc, sizeof qsrc, src);
    shell_quote(qtmp, sizeof qtmp, tmp);
    shell_quote(qlog, sizeof qlog, log);
    shell_quote(qdir, sizeof qdir, outdir);

    /* OpenBLAS flags from pkg-config, else the plain library name. */
    int rc = 0;
    char *blas = run_capture("pkg-config --cflags --libs openblas 2>/dev/null", &rc);
    if (!blas || rc != 0 || !blas[0]) {
        free(blas);
        blas = strdup("-lopenblas");
        if (!blas) abort();
    }
    for (char *p = blas; *p; p++)
        if (*p == '\n') *p = ' ';
    size_t cl = strlen(blas) + 3 * sizeof qsrc + 512;
    char *cmd = malloc(cl);
    if (!cmd) abort();
    snprintf(cmd, cl, "%s -O2 -fPIC -shared -fopenmp -march=native -I%s -o %s %s %s -lm > %s 2>&1",
             ct_codegen_cc_name(cc), qdir, qtmp, qsrc, blas, qlog);
    free(blas);
    int status = system(cmd);
    free(cmd);
    if (status != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        unlink(tmp);
        char *out = NULL;
        size_t len = 0;
        ct_status rst = ct_file_read(log, &out, &len);
        if (rst) ct_status_free(rst);
        const char *shown = out ? out : "";
        if (len > 4000) shown = out + len - 4000;
        ct_status st = ct_errorf("the C compiler '%s' failed on the generated file %s (kept for inspection):\n%s",
                                 ct_codegen_cc_name(cc), src, shown);
        free(out);
        return st;
    }
    if (rename(tmp, so) != 0) {
        int err = errno;
        unlink(tmp);
        return ct_errorf("cannot write '%s': %s", so, strerror(err));
    }
    return CT_OK;
}

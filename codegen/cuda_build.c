/* cuda_build.c — writing a generated CUDA program to a folder (model.cu, the
 * ABI header, the CUDA headers it includes, params.bin) and building it into
 * model.so: with nvcc for the GPU (sm_80 + sm_90, ptxas report kept), or with
 * the host C compiler against the CPU emulation in runtime/cuda_emu. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codegen.h"
#include "fileio.h"

#if !defined(CT_PROGRAM_H_PATH) || !defined(CT_CUDA_EMU_DIR) || !defined(CT_CUDA_EMU_LIB)
#error "CT_PROGRAM_H_PATH, CT_CUDA_EMU_DIR and CT_CUDA_EMU_LIB must be set (codegen/meson.build)"
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

static ct_status copy_file(const char *src, const char *outdir, const char *name)
{
    char path[4200], *buf = NULL;
    size_t len = 0;
    CT_TRY(ct_file_read(src, &buf, &len));
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    ct_status st = ct_file_write_atomic(path, buf, len);
    free(buf);
    return st;
}

ct_status ct_codegen_cuda_write(const ct_c_program *p, const char *outdir)
{
    char path[4200];
    CT_TRY(mkdir_p(outdir));
    CT_TRY(copy_file(CT_PROGRAM_H_PATH, outdir, "program.h"));
    /* the folder builds on its own, on a GPU machine too */
    CT_TRY(copy_file(CT_CUDA_EMU_DIR "/ct_cuda.h", outdir, "ct_cuda.h"));
    CT_TRY(copy_file(CT_CUDA_EMU_DIR "/cuda_emu.h", outdir, "cuda_emu.h"));
    snprintf(path, sizeof path, "%s/params.bin", outdir);
    CT_TRY(ct_file_write_atomic(path, p->blob, p->blob_len));
    snprintf(path, sizeof path, "%s/model.cu", outdir);
    CT_TRY(ct_file_write_atomic(path, p->source, p->source_len));
    return CT_OK;
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
    *status = pclose(p);
    return buf;
}

static const char *nvcc_path(void)
{
    const char *env = getenv("NVCC");
    if (env && *env) return env;
    int rc = 0;
    char *w = run_capture("command -v nvcc 2>/dev/null", &rc);
    bool on_path = w && rc == 0 && w[0];
    free(w);
    if (on_path) return "nvcc";
    if (access("/usr/local/cuda/bin/nvcc", X_OK) == 0) return "/usr/local/cuda/bin/nvcc";
    return NULL;
}

ct_status ct_codegen_cuda_build(const char *outdir, const char *cc, bool emulate)
{
    char src[4200], so[4200], tmp[4300], log[4200], qsrc[8500], qtmp[8700], qlog[8500], qdir[8500], qemu[8500];
    snprintf(src, sizeof src, "%s/model.cu", outdir);
    snprintf(so, sizeof so, "%s/model.so", outdir);
    snprintf(tmp, sizeof tmp, "%s/model.so.tmp.%ld", outdir, (long)getpid());
    snprintf(log, sizeof log, "%s/%s", outdir, emulate ? "cc.log" : "ptxas.log");
    shell_quote(qsrc, sizeof qsrc, src);
    shell_quote(qtmp, sizeof qtmp, tmp);
    shell_quote(qlog, sizeof qlog, log);
    shell_quote(qdir, sizeof qdir, outdir);
    shell_quote(qemu, sizeof qemu, CT_CUDA_EMU_DIR);
    const char *tool;
    char *cmd = NULL;
    if (emulate) {
        tool = ct_codegen_cc_name(cc);
        int rc = 0;
        char *blas = run_capture("pkg-config --cflags --libs openblas 2>/dev/null", &rc);
        if (!blas || rc != 0 || !blas[0]) {
            free(blas);
            blas = strdup("-lopenblas");
            if (!blas) abort();
        }
        for (char *p = blas; *p; p++)
            if (*p == '\n') *p = ' ';
        /* the emulator: the static library of this build when present, else its sources */
        char emu[30000];
        if (access(CT_CUDA_EMU_LIB, R_OK) == 0) shell_quote(emu, sizeof emu, CT_CUDA_EMU_LIB);
        else snprintf(emu, sizeof emu, "-x c %s/cuda_emu.c %s/cublas_emu.c %s/nccl_emu.c -x none", qemu, qemu, qemu);
        size_t cl = strlen(blas) + strlen(emu) + 4 * sizeof qsrc + 512;
        cmd = malloc(cl);
        if (!cmd) abort();
        snprintf(cmd, cl, "%s -std=c17 -D_GNU_SOURCE -O2 -fPIC -shared -I%s -I%s -o %s -x c %s -x none %s %s -lpthread -lm > %s 2>&1",
                 tool, qdir, qemu, qtmp, qsrc, emu, blas, qlog);
        free(blas);
    } else {
        tool = nvcc_path();
        if (!tool) return ct_errorf("--target cuda needs nvcc (the CUDA toolkit): set $NVCC or put nvcc on PATH");
        /* a data-parallel program (#define CT_NCCL 1, cuda_backend.c) links NCCL */
        char *text = NULL;
        size_t tlen = 0;
        ct_status rs = ct_file_read(src, &text, &tlen);
        if (rs) return rs;
        bool nccl = text && strstr(text, "#define CT_NCCL 1") != NULL;
        free(text);
        size_t cl = 4 * sizeof qsrc + 512;
        cmd = malloc(cl);
        if (!cmd) abort();
        snprintf(cmd, cl, "%s -O3 -Xptxas -v -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 "
                          "-Xcompiler -fPIC -shared -I%s -o %s %s -lcublas -lcudart%s > %s 2>&1",
                 tool, qdir, qtmp, qsrc, nccl ? " -lnccl" : "", qlog);
    }
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
        ct_status st = ct_errorf("%s failed on the generated file %s (kept for inspection):\n%s", tool, src, shown);
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

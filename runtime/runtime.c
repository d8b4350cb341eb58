/* runtime.c — the program loader and runner behind runtime.h: one dlopen,
 * one arena and one persistent region per program, both 64-byte aligned
 * (2 MiB-aligned and backed by huge pages where the kernel allows). */
#include "runtime.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

struct ct_rt_program {
    void *so;
    const ct_program_desc *desc;
    void *arena;   /* desc->arena_bytes */
    bool poison;   /* CONTRA_POISON_ARENA: fill the arena with NaNs before each step */
    void *persist; /* desc->persist_bytes, initialised from params.bin */
    bool *bound;   /* per input: set at least once */
    /* device programs (ABI 2, CT_PT_DEVICE_CUDA): arena/persist above are host
     * shadows; forward() runs on these device copies (see ct_rt_program_run) */
    void *dev_arena, *dev_persist;
    bool host_dirty; /* the host image of the persistent region was written: upload before the next step */
    bool dev_newer;  /* a step ran since the host image was last brought up to date */
    bool staged;     /* the inputs of the next step are staged */
    char *in_save;   /* the host's input bytes, kept across ct_rt_program_sync_host */
};

/* A program whose forward() takes device pointers. */
static bool on_device(const ct_rt_program *p)
{
    return p->desc->abi >= 2 && p->desc->device == CT_PT_DEVICE_CUDA;
}

/* Regions of several MiB (activations, the queue, weights) are swept by every step; on 4 KiB pages
 * the convolutions' streams miss the TLB every 4 KiB (bench/conv_runner, 2 MiB pages against 4 KiB:
 * 4-8% on the CIFAR stem and 1x1 stride-2 layers).
 * They go on 2 MiB boundaries with a hint for transparent huge pages (honoured where
 * /sys/kernel/mm/transparent_hugepage/enabled is "always" or "madvise"). */
static void *alloc64(int64_t n)
{
    const size_t huge = (size_t)2 << 20;
    size_t sz = (size_t)((n + 63) / 64 * 64);
    if (sz < 2 * huge) return aligned_alloc(64, sz ? sz : 64);
    sz = (sz + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, sz);
#ifdef MADV_HUGEPAGE
    if (p) madvise(p, sz, MADV_HUGEPAGE); /* a hint: failure changes nothing */
#endif
    return p;
}

ct_status ct_rt_program_load(const char *dir, ct_rt_program **out)
{
    *out = NULL;
    char path[4200];
    ct_status st = CT_OK;
    FILE *f = NULL;
    ct_rt_program *p = calloc(1, sizeof *p);
    if (!p) abort();
    /* Idle OpenMP threads spin a short while before they sleep (read when
     * libgomp loads; unless the user set either variable): GOMP_SPINCOUNT
     * 30000 is well under a millisecond. Sleeping at once (OMP_WAIT_POLICY=
     * PASSIVE) costs a wake-up per parallel region, and an inference program
     * at batch 1 runs one every few tens of microseconds (resnet50: 45-51 ms
     * an image against 42.6-44.5); spinning without end (ACTIVE) would take
     * the cores from BLAS's own threads between the regions of a training
     * step. */
    if (!getenv("OMP_WAIT_POLICY") && !getenv("GOMP_SPINCOUNT")) setenv("GOMP_SPINCOUNT", "30000", 0);
    snprintf(path, sizeof path, "%s/model.so", dir);
    /* RTLD_NODELETE: the program's OpenMP (libgomp) worker threads outlive
     * the program; unmapping their code at dlclose would crash them. */
    p->so = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!p->so) {
        st = ct_errorf("cannot load compiled program '%s': %s", path, dlerror());
        goto fail;
    }
    p->desc = dlsym(p->so, CT_PROGRAM_SYMBOL);
    if (!p->desc) {
        st = ct_errorf("'%s' has no '%s' descriptor", path, CT_PROGRAM_SYMBOL);
        goto fail;
    }
    if (p->desc->abi < 1 || p->desc->abi > CT_PROGRAM_ABI) {
        st = ct_errorf("'%s' was built for program ABI %d, this runtime speaks %d: recompile it", path, p->desc->abi,
                       CT_PROGRAM_ABI);
        goto fail;
    }
    p->arena = alloc64(p->desc->arena_bytes);
    p->persist = alloc64(p->desc->persist_bytes);
    p->bound = calloc((size_t)p->desc->n_inputs + 1, sizeof *p->bound);
    if (!p->arena || !p->persist || !p->bound) {
        st = ct_errorf("out of memory for program '%s' (arena %lld bytes, persistent %lld bytes)", path,
                       (long long)p->desc->arena_bytes, (long long)p->desc->persist_bytes);
        goto fail;
    }
    memset(p->arena, 0, (size_t)p->desc->arena_bytes);
    {
        const char *pz = getenv("CONTRA_POISON_ARENA");
        p->poison = pz && *pz && strcmp(pz, "0") != 0;
    }
    snprintf(path, sizeof path, "%s/params.bin", dir);
    f = fopen(path, "rb");
    if (!f) {
        st = ct_errorf("cannot read '%s': %s", path, strerror(errno));
        goto fail;
    }
    size_t want = (size_t)p->desc->persist_bytes;
    if (want && fread(p->persist, 1, want, f) != want) {
        st = ct_errorf("'%s' is shorter than the program's %zu-byte persistent region", path, want);
        goto fail;
    }
    if (fgetc(f) != EOF) {
        st = ct_errorf("'%s' is longer than the program's %zu-byte persistent region", path, want);
        goto fail;
    }
    fclose(f);
    f = NULL;
    if (on_device(p)) {
        const ct_program_desc *d = p->desc;
        if (!d->device_alloc || !d->device_free || !d->copy_to_device || !d->copy_to_host) {
            st = ct_errorf("'%s' is a device program without device memory functions", dir);
            goto fail;
        }
        p->dev_arena = d->device_alloc(d->arena_bytes);
        p->dev_persist = d->device_alloc(d->persist_bytes);
        if (!p->dev_arena || !p->dev_persist) {
            st = ct_errorf("out of device memory for program '%s' (arena %lld bytes, persistent %lld bytes)", dir,
                           (long long)d->arena_bytes, (long long)d->persist_bytes);
            goto fail;
        }
        d->copy_to_device(p->dev_arena, p->arena, d->arena_bytes);
        d->copy_to_device(p->dev_persist, p->persist, d->persist_bytes);
    }
    *out = p;
    return CT_OK;
fail:
    if (f) fclose(f);
    ct_rt_program_free(p);
    return st;
}

void ct_rt_program_free(ct_rt_program *p)
{
    if (!p) return;
    if (p->desc && on_device(p) && p->desc->device_free) {
        p->desc->device_free(p->dev_arena);
        p->desc->device_free(p->dev_persist);
    }
    free(p->arena);
    free(p->persist);
    free(p->bound);
    free(p->in_save);
    if (p->so) dlclose(p->so);
    free(p);
}

const ct_program_desc *ct_rt_program_desc(const ct_rt_program *p) { return p->desc; }

int ct_rt_program_find(const ct_rt_program *p, const char *name)
{
    for (int i = 0; i < p->desc->n_tensors; i++)
        if (p->desc->tensors[i].name && !strcmp(p->desc->tensors[i].name, name)) return i;
    return -1;
}

void *ct_rt_program_tensor(ct_rt_program *p, int index)
{
    const ct_tensor_desc *t = &p->desc->tensors[index];
    char *base = t->region == CT_PT_REGION_ARENA ? p->arena : p->persist;
    return base + t->offset;
}

static void dims_str(char *buf, size_t n, int rank, const int64_t *dims)
{
    size_t j = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < rank && j < n; i++)
        j += (size_t)snprintf(buf + j, n - j, "%s%lld", i ? "," : "", (long long)dims[i]);
    if (j < n) snprintf(buf + j, n - j, "]");
}

static const char *dtype_name(int dtype)
{
    switch (dtype) {
    case CT_PT_FLOAT: return "float32";
    case CT_PT_DOUBLE: return "float64";
    case CT_PT_INT64: return "int64";
    case CT_PT_INT32: return "int32";
    case CT_PT_INT8: return "int8";
    case CT_PT_UINT8: return "uint8";
    case CT_PT_BOOL: return "bool";
    case CT_PT_FLOAT16: return "float16";
    case CT_PT_BFLOAT16: return "bfloat16";
    default: return "unknown";
    }
}

ct_status ct_rt_program_set_input(ct_rt_program *p, const char *name, int dtype, int rank, const int64_t *dims,
                                  const void *data)
{
    int slot = -1;
    for (int i = 0; i < p->desc->n_inputs; i++)
        if (!strcmp(p->desc->tensors[p->desc->inputs[i]].name, name)) slot = i;
    if (slot < 0) {
        char names[1024] = "";
        size_t j = 0;
        for (int i = 0; i < p->desc->n_inputs && j < sizeof names; i++)
            j += (size_t)snprintf(names + j, sizeof names - j, "%s'%s'", i ? ", " : "",
                                  p->desc->tensors[p->desc->inputs[i]].name);
        return ct_errorf("the program has no input named '%s' (inputs: %s)", name, names);
    }
    const ct_tensor_desc *t = &p->desc->tensors[p->desc->inputs[slot]];
    bool same = rank == t->rank;
    for (int i = 0; same && i < rank; i++) same = dims[i] == t->dims[i];
    char want[160], got[160];
    if (!same) {
        dims_str(want, sizeof want, t->rank, t->dims);
        dims_str(got, sizeof got, rank, dims);
        return ct_errorf("input '%s' must have shape %s, got %s", name, want, got);
    }
    if (dtype != t->dtype)
        return ct_errorf("input '%s' must be %s, got %s", name, dtype_name(t->dtype), dtype_name(dtype));
    memcpy(ct_rt_program_tensor(p, p->desc->inputs[slot]), data, (size_t)t->nbytes);
    p->bound[slot] = true;
    return CT_OK;
}

/* ABI 3 device programs launch asynchronously from staged inputs. */
static bool staged_launch(const ct_rt_program *p)
{
    return on_device(p) && p->desc->abi >= 3 && p->desc->stage && p->desc->launch && p->desc->wait;
}

ct_status ct_rt_program_stage(ct_rt_program *p)
{
    if (!staged_launch(p)) return CT_OK;
    p->desc->stage(p->persist);
    p->staged = true;
    return CT_OK;
}

ct_status ct_rt_program_launch(ct_rt_program *p)
{
    for (int i = 0; i < p->desc->n_inputs; i++)
        if (!p->bound[i]) return ct_errorf("input '%s' was not given", p->desc->tensors[p->desc->inputs[i]].name);
    const ct_program_desc *d = p->desc;
    if (!on_device(p)) {
        /* CONTRA_POISON_ARENA=1: NaNs in the arena before each step, so that a kernel that reads
         * what no kernel of this step wrote shows up (a debugging aid; tests use it) */
        if (p->poison) memset(p->arena, 0xff, (size_t)d->arena_bytes);
        d->forward(p->arena, p->persist);
        return CT_OK;
    }
    /* device program: the host image is the caller's view; state written there goes up first */
    if (p->host_dirty) {
        d->copy_to_device(p->dev_persist, p->persist, d->persist_bytes);
        p->host_dirty = false;
    }
    if (staged_launch(p)) {
        if (!p->staged) d->stage(p->persist);
        p->staged = false;
        d->launch(p->dev_arena, p->dev_persist);
    } else {
        for (int i = 0; i < d->n_inputs; i++) {
            const ct_tensor_desc *t = &d->tensors[d->inputs[i]];
            d->copy_to_device((char *)p->dev_persist + t->offset, (char *)p->persist + t->offset, t->nbytes);
        }
        d->forward(p->dev_arena, p->dev_persist);
    }
    p->dev_newer = true;
    return CT_OK;
}

void ct_rt_program_wait(ct_rt_program *p)
{
    const ct_program_desc *d = p->desc;
    if (!on_device(p)) return;
    if (staged_launch(p)) d->wait();
    for (int i = 0; i < d->n_outputs; i++) { /* the outputs (a loss: a few bytes) come back at once */
        const ct_tensor_desc *t = &d->tensors[d->outputs[i]];
        char *host = t->region == CT_PT_REGION_ARENA ? p->arena : p->persist;
        const char *dev = t->region == CT_PT_REGION_ARENA ? p->dev_arena : p->dev_persist;
        d->copy_to_host(host + t->offset, dev + t->offset, t->nbytes);
    }
}

ct_status ct_rt_program_run(ct_rt_program *p)
{
    CT_TRY(ct_rt_program_launch(p));
    ct_rt_program_wait(p);
    return CT_OK;
}

ct_status ct_rt_program_sync_host(ct_rt_program *p)
{
    const ct_program_desc *d = p->desc;
    if (!on_device(p) || !p->dev_newer) return CT_OK;
    int64_t in_bytes = 0;
    for (int i = 0; i < d->n_inputs; i++) in_bytes += d->tensors[d->inputs[i]].nbytes;
    if (!p->in_save && in_bytes > 0 && !(p->in_save = malloc((size_t)in_bytes)))
        return ct_errorf("out of memory for the inputs of program '%s'", d->name);
    int64_t k = 0;
    for (int i = 0; i < d->n_inputs; i++) { /* inputs the caller may have filled already stay */
        const ct_tensor_desc *t = &d->tensors[d->inputs[i]];
        memcpy(p->in_save + k, (char *)p->persist + t->offset, (size_t)t->nbytes);
        k += t->nbytes;
    }
    d->copy_to_host(p->persist, p->dev_persist, d->persist_bytes);
    k = 0;
    for (int i = 0; i < d->n_inputs; i++) {
        const ct_tensor_desc *t = &d->tensors[d->inputs[i]];
        memcpy((char *)p->persist + t->offset, p->in_save + k, (size_t)t->nbytes);
        k += t->nbytes;
    }
    p->dev_newer = false;
    return CT_OK;
}

void ct_rt_program_state_changed(ct_rt_program *p)
{
    if (on_device(p)) p->host_dirty = true;
    if (p->desc->abi >= 3 && p->desc->state_generation) (*p->desc->state_generation)++;
}

void ct_rt_program_set_threads(ct_rt_program *p, int n)
{
    if (n > 0 && p->desc->set_threads) p->desc->set_threads(n);
}

bool ct_rt_program_profile_start(ct_rt_program *p)
{
    const ct_program_desc *d = p->desc;
    if (d->abi < 3 || d->n_profile <= 0 || !d->profile_on || !d->profile_seconds) return false;
    memset(d->profile_seconds, 0, sizeof *d->profile_seconds * (size_t)d->n_profile);
    *d->profile_on = 1;
    return true;
}

static int cmp_seconds_desc(const void *a, const void *b, void *ctx)
{
    const double *s = ctx;
    double x = s[*(const int *)a], y = s[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

void ct_rt_program_profile_report(const ct_rt_program *p, FILE *out, int64_t calls, int top)
{
    const ct_program_desc *d = p->desc;
    if (d->abi < 3 || d->n_profile <= 0 || !d->profile_seconds || calls <= 0) return;
    int n = d->n_profile, *order = malloc(sizeof *order * (size_t)n);
    if (!order) return;
    double total = 0;
    for (int i = 0; i < n; i++) order[i] = i, total += d->profile_seconds[i];
    qsort_r(order, (size_t)n, sizeof *order, cmp_seconds_desc, d->profile_seconds);
    fprintf(out, "profile: %d nodes, %.3f s per call of the program (mean over %lld); the %d slowest:\n", n,
            total / (double)calls, (long long)calls, top < n ? top : n);
    fprintf(out, "  %10s %6s %6s  node\n", "ms/call", "%", "cum %");
    double cum = 0;
    for (int k = 0; k < n && k < top; k++) {
        double s = d->profile_seconds[order[k]];
        cum += s;
        fprintf(out, "  %10.2f %6.1f %6.1f  %s\n", 1e3 * s / (double)calls, total > 0 ? 100 * s / total : 0,
                total > 0 ? 100 * cum / total : 0, d->profile_names[order[k]]);
    }
    free(order);
}

int ct_rt_program_world(const ct_rt_program *p)
{
    const ct_program_desc *d = p->desc;
    return d->abi >= 4 && d->world > 1 ? d->world : 1;
}

void ct_rt_program_set_comm(ct_rt_program *p, const ct_comm *comm)
{
    const ct_program_desc *d = p->desc;
    if (d->abi >= 4 && d->comm) *d->comm = comm;
}

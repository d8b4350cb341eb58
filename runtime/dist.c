/* dist.c — the ranks of a data-parallel job and their collectives, on MPI
 * (see dist.h). Built without MPI (CT_HAVE_MPI undefined), a trainer runs a
 * world of one and refuses to start under mpirun. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dist.h"

#ifdef CT_HAVE_MPI
#include <mpi.h>
#endif

struct ct_dist {
    int rank, world, mpi;
    ct_comm comm;
    float *bucket; /* the all-reduce bucket, kept between calls */
    int64_t bucket_cap;
    int64_t bytes;
    /* watchdog */
    _Atomic double since; /* start of the collective being waited in, 0: none */
    const char *_Atomic what;
    _Atomic int64_t step;
    double timeout;
    pthread_t thread;
    bool watching;
    _Atomic int stop;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

bool ct_dist_launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "MPI_LOCALNRANKS", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i])) return true;
    return false;
}

static void enter(ct_dist *d, const char *what)
{
    d->what = what;
    d->since = now_s();
}

static void leave(ct_dist *d) { d->since = 0; }

#ifdef CT_HAVE_MPI
static void fail_big(const ct_dist *d, const char *what, int64_t n)
{
    fprintf(stderr, "trainer: rank %d: %s of %lld elements is larger than one MPI message\n", d->rank, what,
            (long long)n);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void comm_allreduce_f32(void *ctx, int n, const float *const *in, float *const *out, const int64_t *counts,
                               float scale)
{
    ct_dist *d = ctx;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += counts[i];
    if (total > 0x7fffffff) fail_big(d, "an all-reduce bucket", total);
    float *buf;
    if (n == 1) {
        if (out[0] != in[0]) memcpy(out[0], in[0], sizeof(float) * (size_t)counts[0]);
        buf = out[0];
    } else {
        if (total > d->bucket_cap) {
            free(d->bucket);
            d->bucket = malloc(sizeof(float) * (size_t)total);
            if (!d->bucket) abort();
            d->bucket_cap = total;
        }
        buf = d->bucket;
        int64_t at = 0;
        for (int i = 0; i < n; i++) {
            memcpy(buf + at, in[i], sizeof(float) * (size_t)counts[i]);
            at += counts[i];
        }
    }
    enter(d, "the gradient all-reduce");
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)total, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    leave(d);
    d->bytes += total * 4;
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        float *o = out[i];
        const float *s = buf + at;
        if (scale != 1.0f)
            for (int64_t k = 0; k < counts[i]; k++) o[k] = s[k] * scale;
        else if (o != s)
            memcpy(o, s, sizeof(float) * (size_t)counts[i]);
        at += counts[i];
    }
}

/* buf = the sum over ranks of buf (n doubles), watched as `what`. */
static void sum_f64(ct_dist *d, double *buf, int64_t n, const char *what)
{
    if (n > 0x7fffffff) fail_big(d, what, n);
    enter(d, what);
    MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    leave(d);
}

static void comm_allreduce_f64(void *ctx, double *buf, int64_t n)
{
    ct_dist *d = ctx;
    sum_f64(d, buf, n, "a SyncBatchNorm all-reduce");
    d->bytes += n * 8;
}

static void comm_allgather(void *ctx, const void *send, void *recv, int64_t bytes)
{
    ct_dist *d = ctx;
    if (bytes > 0x7fffffff) fail_big(d, "an all-gather", bytes);
    enter(d, "an all-gather");
    MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    leave(d);
    d->bytes += bytes;
}

static void comm_bcast(void *ctx, void *buf, int64_t bytes, int root)
{
    ct_dist_bcast(ctx, buf, bytes, root);
}

static void comm_reduce_scatter_f32(void *ctx, const float *send, float *recv, int64_t n)
{
    ct_dist *d = ctx;
    if (n > 0x7fffffff) fail_big(d, "a reduce-scatter", n);
    enter(d, "a reduce-scatter");
    MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    leave(d);
    d->bytes += n * 4 * (int64_t)d->world;
}
#endif

ct_status ct_dist_init(ct_dist **out)
{
    *out = NULL;
    ct_dist *d = calloc(1, sizeof *d);
    if (!d) abort();
    d->world = 1;
    if (ct_dist_launched()) {
#ifdef CT_HAVE_MPI
        int prov = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS) {
            free(d);
            return ct_errorf("MPI_Init failed");
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
        MPI_Comm_size(MPI_COMM_WORLD, &d->world);
        d->mpi = 1;
        d->comm = (ct_comm){.rank = d->rank, .world = d->world, .ctx = d, .allreduce_f32 = comm_allreduce_f32,
                            .allreduce_f64 = comm_allreduce_f64, .allgather = comm_allgather,
                            .reduce_scatter_f32 = comm_reduce_scatter_f32, .bcast = comm_bcast};
#else
        free(d);
        return ct_errorf("started by an MPI launcher, but this trainer was built without MPI (install "
                         "libopenmpi-dev and rebuild contra)");
#endif
    }
    d->comm.rank = d->rank;
    d->comm.world = d->world;
    d->comm.ctx = d;
    *out = d;
    return CT_OK;
}

static void *watchdog(void *arg)
{
    ct_dist *d = arg;
    while (!d->stop) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double t0 = d->since;
        if (t0 > 0 && now_s() - t0 > d->timeout) {
            fprintf(stderr,
                    "trainer: rank %d of %d: waited %.0f s in %s at step %lld for the other ranks: one of them "
                    "has died or hangs (mpirun names a rank that died); exiting (the last checkpoint is kept)\n",
                    d->rank, d->world, now_s() - t0, d->what ? d->what : "a collective", (long long)d->step + 1);
            fflush(stderr);
            _exit(3);
        }
    }
    return NULL;
}

void ct_dist_watch(ct_dist *d, double timeout_s)
{
    if (!d || d->world < 2 || d->watching || !(timeout_s > 0)) return;
    d->timeout = timeout_s;
    if (pthread_create(&d->thread, NULL, watchdog, d) == 0) d->watching = true;
}

void ct_dist_set_step(ct_dist *d, int64_t step)
{
    if (d) d->step = step;
}

void ct_dist_finalize(ct_dist *d)
{
    if (!d) return;
    if (d->watching) {
        d->stop = 1;
        pthread_join(d->thread, NULL);
    }
#ifdef CT_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    free(d->bucket);
    free(d);
}

void ct_dist_abort(ct_dist *d, int code)
{
#ifdef CT_HAVE_MPI
    if (d && d->mpi && d->world > 1) {
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, code);
    }
#else
    (void)d, (void)code;
#endif
}

int ct_dist_rank(const ct_dist *d) { return d ? d->rank : 0; }
int ct_dist_world(const ct_dist *d) { return d ? d->world : 1; }
const ct_comm *ct_dist_comm(ct_dist *d) { return &d->comm; }
int64_t ct_dist_bytes(const ct_dist *d) { return d ? d->bytes : 0; }

void ct_dist_bcast(ct_dist *d, void *buf, int64_t bytes, int root)
{
#ifdef CT_HAVE_MPI
    if (d && d->world > 1) {
        enter(d, "a broadcast");
        MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
        leave(d);
    }
#else
    (void)d, (void)buf, (void)bytes, (void)root;
#endif
}

void ct_dist_sum_f64(ct_dist *d, double *buf, int64_t n)
{
#ifdef CT_HAVE_MPI
    if (d && d->world > 1) sum_f64(d, buf, n, "the step's loss all-reduce");
#else
    (void)d, (void)buf, (void)n;
#endif
}

void ct_dist_allgather(ct_dist *d, const void *send, void *recv, int64_t bytes)
{
#ifdef CT_HAVE_MPI
    if (d && d->world > 1) {
        enter(d, "an all-gather");
        MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
        leave(d);
        return;
    }
#endif
    (void)d;
    memcpy(recv, send, (size_t)bytes);
}

void ct_dist_barrier(ct_dist *d)
{
#ifdef CT_HAVE_MPI
    if (d && d->world > 1) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)d;
#endif
}

bool ct_dist_average_if_differs(ct_dist *d, float *buf, int64_t n)
{
    if (!d || d->world < 2 || n <= 0) return false;
    /* FNV-1a of the bytes, gathered: equal everywhere means nothing to do */
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = (const unsigned char *)buf;
    for (int64_t i = 0; i < n * 4; i++) h = (h ^ p[i]) * 1099511628211ull;
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)d->world);
    if (!all) abort();
    ct_dist_allgather(d, &h, all, sizeof h);
    bool differ = false;
    for (int r = 1; r < d->world; r++) differ |= all[r] != all[0];
    free(all);
    if (!differ) return false;
#ifdef CT_HAVE_MPI
    double *s = malloc(sizeof(double) * (size_t)n);
    if (!s) abort();
    for (int64_t i = 0; i < n; i++) s[i] = buf[i];
    sum_f64(d, s, n, "the running statistics' average");
    for (int64_t i = 0; i < n; i++) buf[i] = (float)(s[i] / d->world);
    free(s);
#endif
    return true;
}

/* cuda_emu.c — the CPU emulation of the CUDA runtime: device memory registry (exact or
 * guarded allocations), in-order streams, events, graph capture/replay, and the block
 * scheduler that runs a block's threads as fibers meeting at barriers and shuffles. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* mmap flags, clock_gettime, sigaltstack */
#endif
#include "cuda_emu.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CT_EMU_ASAN 1
#else
#define CT_EMU_ASAN 0
#endif

#define CT_EMU_MAX_THREADS 1024
#define CT_EMU_STATIC_SHARED_MAX (48u * 1024u)
#define CT_EMU_DYN_SHARED_MAX (227u * 1024u)
#define CT_EMU_STACK_SIZE (CT_EMU_ASAN ? 512u * 1024u : 128u * 1024u)
#define CT_EMU_REDZONE 64u
#define CT_EMU_POISON 0xffu /* fresh shared memory reads as NaN */

/* ------------------------------------------------------------------ */
/* configuration and error state                                      */

static ct_emu_config g_cfg = {CT_EMU_ORDER_FORWARD, 1u, true, false, false, false};
static bool g_cfg_loaded;
static cudaError_t g_last_error = cudaSuccess;
static cudaError_t g_sticky = cudaSuccess;
static int g_reports;
static long g_launches;
__thread struct ct_emu_thread_pub *ct_emu_cur;
__thread dim3 ct_emu_block_idx, ct_emu_block_dim, ct_emu_grid_dim;
__thread int ct_emu_float_atomics;

static void cfg_load(void) {
  if (g_cfg_loaded) return;
  g_cfg_loaded = true;
  const char *s = getenv("CT_CUDA_EMU_ORDER");
  if (s) {
    if (!strcmp(s, "reverse")) g_cfg.order = CT_EMU_ORDER_REVERSE;
    else if (!strncmp(s, "random", 6)) {
      g_cfg.order = CT_EMU_ORDER_RANDOM;
      if (s[6] == ':') g_cfg.seed = (unsigned)strtoul(s + 7, NULL, 10);
    }
  }
  s = getenv("CT_CUDA_EMU_SHARED");
  if (s && !strcmp(s, "direct")) g_cfg.shared_private = false;
  s = getenv("CT_CUDA_EMU_GUARD");
  if (s && *s == '1') g_cfg.guard = true;
  s = getenv("CT_CUDA_EMU_CHECK");
  if (s && *s == '1') g_cfg.check_schedules = true;
  s = getenv("CT_CUDA_EMU_ABORT");
  if (s && *s == '1') g_cfg.abort_on_error = true;
}

ct_emu_config ct_emu_config_get(void) { cfg_load(); return g_cfg; }
void ct_emu_config_set(const ct_emu_config *config) { cfg_load(); g_cfg = *config; }
int ct_emu_error_count(void) { return g_reports; }
long ct_emu_launch_count(void) { return g_launches; }
void ct_emu_errors_reset(void) { g_reports = 0; g_sticky = cudaSuccess; g_last_error = cudaSuccess; }

static cudaError_t set_err(cudaError_t e) {
  if (e != cudaSuccess) g_last_error = e;
  return e;
}

/* launch context used in reports */
static const char *g_kernel = NULL;
static bool g_in_kernel;

void ct_emu_report(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "ct_cuda_emu: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  g_reports++;
  if (g_in_kernel) g_sticky = cudaErrorLaunchFailure;
  if (g_cfg.abort_on_error) abort();
}

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "cudaSuccess";
  case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
  case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
  case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
  case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
  case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
  case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
  case cudaErrorIllegalState: return "cudaErrorIllegalState";
  case cudaErrorNotReady: return "cudaErrorNotReady";
  case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
  case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  case cudaErrorNotSupported: return "cudaErrorNotSupported";
  case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
  case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
  case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
  }
  return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "no error";
  case cudaErrorInvalidValue: return "invalid argument";
  case cudaErrorMemoryAllocation: return "out of memory";
  case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  case cudaErrorInvalidDevicePointer: return "invalid device pointer";
  case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
  case cudaErrorLaunchFailure: return "unspecified launch failure (emulator report, see stderr)";
  case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
  default: return cudaGetErrorName(e);
  }
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = g_last_error;
  g_last_error = g_sticky;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last_error; }
cudaError_t cudaSetDevice(int device) { return set_err(device == 0 ? cudaSuccess : cudaErrorInvalidValue); }
cudaError_t cudaGetDeviceCount(int *count) { *count = 1; return cudaSuccess; }

/* ------------------------------------------------------------------ */
/* device memory registry                                             */

typedef struct alloc {
  unsigned char *p;  /* user pointer */
  size_t size;       /* user size */
  void *base;        /* what to free/munmap */
  size_t map_size;   /* guard mode mapping size, 0 for malloc */
  bool host;         /* cudaMallocHost */
} alloc;
static alloc *g_allocs;
static size_t g_nallocs, g_cap_allocs;

static size_t alloc_find_idx(const void *p) { /* first index with allocs[i].p > p */
  size_t lo = 0, hi = g_nallocs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if ((const unsigned char *)g_allocs[mid].p <= (const unsigned char *)p) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static alloc *alloc_containing(const void *p, size_t slack) {
  size_t i = alloc_find_idx(p);
  if (i == 0) return NULL;
  alloc *a = &g_allocs[i - 1];
  if ((const unsigned char *)p < a->p + a->size + slack) return a;
  return NULL;
}

static cudaError_t alloc_add(alloc a) {
  if (g_nallocs == g_cap_allocs) {
    size_t cap = g_cap_allocs ? g_cap_allocs * 2 : 64;
    alloc *n = realloc(g_allocs, cap * sizeof *n);
    if (!n) return cudaErrorMemoryAllocation;
    g_allocs = n;
    g_cap_allocs = cap;
  }
  size_t i = alloc_find_idx(a.p);
  memmove(&g_allocs[i + 1], &g_allocs[i], (g_nallocs - i) * sizeof *g_allocs);
  g_allocs[i] = a;
  g_nallocs++;
  return cudaSuccess;
}

bool ct_emu_device_range_ok(const void *p, size_t bytes) {
  if (bytes == 0) return true;
  alloc *a = alloc_containing(p, 0);
  return a && !a->host && (const unsigned char *)p + bytes <= a->p + a->size;
}

static size_t page_size(void) {
  static size_t ps;
  if (!ps) ps = (size_t)sysconf(_SC_PAGESIZE);
  return ps;
}

static int g_capturing; /* streams in global-mode capture */

static cudaError_t alloc_new(void **ptr, size_t size, bool host) {
  cfg_load();
  if (!ptr) return set_err(cudaErrorInvalidValue);
  if (g_capturing) {
    ct_emu_report("%s during stream capture is not allowed", host ? "cudaMallocHost" : "cudaMalloc");
    return set_err(cudaErrorStreamCaptureUnsupported);
  }
  *ptr = NULL;
  if (size == 0) return cudaSuccess;
  alloc a = {0};
  a.size = size;
  a.host = host;
  if (g_cfg.guard && !host) {
    /* [redzone][user bytes, 4-aligned end flush against a PROT_NONE page] */
    size_t ps = page_size(), body = (size + 3u) & ~(size_t)3u;
    size_t data_pages = (body + CT_EMU_REDZONE + ps - 1) / ps;
    a.map_size = (data_pages + 1) * ps;
    unsigned char *m = mmap(NULL, a.map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return set_err(cudaErrorMemoryAllocation);
    mprotect(m + data_pages * ps, ps, PROT_NONE);
    a.base = m;
    a.p = m + data_pages * ps - body;
    memset(a.p - CT_EMU_REDZONE, 0xcb, CT_EMU_REDZONE);
    memset(a.p + size, 0xcb, body - size);
  } else {
    a.base = malloc(size); /* exactly sized: AddressSanitizer sees every overrun */
    if (!a.base) return set_err(cudaErrorMemoryAllocation);
    a.p = a.base;
  }
  if (!host) memset(a.p, 0xa5, size); /* device memory starts as garbage, like on a GPU */
  if (alloc_add(a) != cudaSuccess) return set_err(cudaErrorMemoryAllocation);
  *ptr = a.p;
  return cudaSuccess;
}

static cudaError_t alloc_free(void *p, bool host) {
  if (!p) return cudaSuccess;
  size_t i = alloc_find_idx(p);
  if (i == 0 || g_allocs[i - 1].p != p || g_allocs[i - 1].host != host) {
    ct_emu_report("%s(%p): not a pointer returned by %s", host ? "cudaFreeHost" : "cudaFree", p,
                  host ? "cudaMallocHost" : "cudaMalloc");
    return set_err(cudaErrorInvalidDevicePointer);
  }
  alloc a = g_allocs[i - 1];
  memmove(&g_allocs[i - 1], &g_allocs[i], (g_nallocs - i) * sizeof *g_allocs);
  g_nallocs--;
  if (a.map_size) munmap(a.base, a.map_size);
  else free(a.base);
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **ptr, size_t size) { return alloc_new(ptr, size, false); }
cudaError_t cudaFree(void *ptr) { return alloc_free(ptr, false); }
cudaError_t cudaMallocHost(void **ptr, size_t size) { return alloc_new(ptr, size, true); }
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
  (void)flags;
  return alloc_new(ptr, size, true);
}
cudaError_t cudaFreeHost(void *ptr) { return alloc_free(ptr, true); }

/* Guard mode: the bytes before each allocation and after its end (up to the guard
 * page) must still hold the fill pattern after a kernel. */
static void guard_check(const char *when) {
  if (!g_cfg.guard) return;
  for (size_t i = 0; i < g_nallocs; i++) {
    alloc *a = &g_allocs[i];
    if (!a->map_size) continue;
    size_t body = (a->size + 3u) & ~(size_t)3u;
    for (size_t j = 0; j < CT_EMU_REDZONE; j++)
      if (a->p[-(ptrdiff_t)CT_EMU_REDZONE + (ptrdiff_t)j] != 0xcb) {
        ct_emu_report("%s: out-of-bounds write at byte offset %td before device allocation %p (%zu bytes)", when,
                      (ptrdiff_t)j - (ptrdiff_t)CT_EMU_REDZONE, (void *)a->p, a->size);
        g_sticky = cudaErrorIllegalAddress;
        break;
      }
    for (size_t j = a->size; j < body; j++)
      if (a->p[j] != 0xcb) {
        ct_emu_report("%s: out-of-bounds write at byte offset %zu of device allocation %p (%zu bytes)", when, j,
                      (void *)a->p, a->size);
        g_sticky = cudaErrorIllegalAddress;
        break;
      }
  }
}

/* ------------------------------------------------------------------ */
/* streams, events, graphs                                            */

typedef enum { OP_KERNEL, OP_MEMCPY, OP_MEMSET, OP_HOST, OP_EVENT } op_kind;
typedef struct op {
  op_kind kind;
  const char *name;
  const void *func;    /* OP_KERNEL: the kernel function, for its attributes */
  dim3 grid, block;
  size_t shmem;
  ct_emu_thunk thunk;  /* OP_KERNEL */
  ct_emu_host_fn fn;   /* OP_HOST */
  void *payload;       /* captured kernel arguments / host payload (owned) */
  size_t payload_size;
  void *dst;
  const void *src;
  size_t count;
  int value;
  cudaMemcpyKind mkind;
  cudaEvent_t event;
} op;

struct ct_emu_graph { op *ops; size_t n, cap; };
struct ct_emu_graph_exec { op *ops; size_t n; };
/* joined: a stream that entered another stream's capture by waiting on an event recorded
 * there (CUDA's fork); it records into that capture's graph until the capture ends. */
struct ct_emu_stream { bool capturing; bool invalidated; bool global; bool joined; cudaStream_t origin; cudaGraph_t graph; };
/* captured_by: the capturing stream the event was last recorded on, during its capture */
struct ct_emu_event { double t_ms; bool recorded; cudaStream_t captured_by; };

#define CT_EMU_MAX_JOINED 16
static cudaStream_t g_joined[CT_EMU_MAX_JOINED];

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static cudaError_t op_run(const op *o);

static cudaError_t op_record(cudaGraph_t g, const op *o) {
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 16;
    op *n = realloc(g->ops, cap * sizeof *n);
    if (!n) return cudaErrorMemoryAllocation;
    g->ops = n;
    g->cap = cap;
  }
  op c = *o;
  if (o->payload_size) {
    c.payload = malloc(o->payload_size);
    if (!c.payload) return cudaErrorMemoryAllocation;
    memcpy(c.payload, o->payload, o->payload_size);
  }
  g->ops[g->n++] = c;
  return cudaSuccess;
}

/* Runs an operation now, or records it when its stream is being captured. */
static bool is_device(const void *p, size_t n) { return ct_emu_device_range_ok(p, n); }

static bool host_pinned(const void *p, size_t n) {
  alloc *a = alloc_containing(p, 0);
  return a && a->host && (const unsigned char *)p + n <= a->p + a->size;
}

static cudaError_t op_submit(cudaStream_t s, const op *o) {
  cfg_load();
  if (s && s->capturing && o->kind == OP_MEMCPY && o->count) {
    /* graphs cannot copy from or to pageable host memory */
    bool dst_host = o->mkind == cudaMemcpyDeviceToHost || o->mkind == cudaMemcpyHostToHost ||
                    (o->mkind == cudaMemcpyDefault && !is_device(o->dst, 1));
    bool src_host = o->mkind == cudaMemcpyHostToDevice || o->mkind == cudaMemcpyHostToHost ||
                    (o->mkind == cudaMemcpyDefault && !is_device(o->src, 1));
    if ((dst_host && !host_pinned(o->dst, o->count)) || (src_host && !host_pinned(o->src, o->count))) {
      ct_emu_report("cudaMemcpyAsync captured into a graph uses pageable host memory (%p -> %p, %zu bytes): "
                    "use cudaMallocHost", o->src, o->dst, o->count);
      s->invalidated = true;
      return set_err(cudaErrorStreamCaptureUnsupported);
    }
  }
  if (s && s->capturing) {
    cudaError_t e = op_record(s->graph, o);
    if (e != cudaSuccess) s->invalidated = true;
    return set_err(e);
  }
  return op_run(o);
}


static cudaError_t memcpy_run(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  if (n == 0) return cudaSuccess;
  if (!dst || !src) return set_err(cudaErrorInvalidValue);
  bool dd = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool sd = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  if (k == cudaMemcpyDefault) {
    dd = alloc_containing(dst, 0) != NULL;
    sd = alloc_containing(src, 0) != NULL;
  } else if (k > cudaMemcpyDefault) {
    return set_err(cudaErrorInvalidMemcpyDirection);
  }
  if (dd && !is_device(dst, n)) {
    ct_emu_report("cudaMemcpy: destination %p (+%zu bytes) is not inside one device allocation", dst, n);
    return set_err(cudaErrorInvalidValue);
  }
  if (sd && !is_device(src, n)) {
    ct_emu_report("cudaMemcpy: source %p (+%zu bytes) is not inside one device allocation", src, n);
    return set_err(cudaErrorInvalidValue);
  }
  if (!dd && is_device(dst, 1)) {
    ct_emu_report("cudaMemcpy: destination %p is device memory but the kind says host", dst);
    return set_err(cudaErrorInvalidValue);
  }
  if (!sd && is_device(src, 1)) {
    ct_emu_report("cudaMemcpy: source %p is device memory but the kind says host", src);
    return set_err(cudaErrorInvalidValue);
  }
  memmove(dst, src, n);
  return cudaSuccess;
}

static cudaError_t launch_run(const op *o);

static cudaError_t op_run(const op *o) {
  switch (o->kind) {
  case OP_KERNEL: return launch_run(o);
  case OP_MEMCPY: return memcpy_run(o->dst, o->src, o->count, o->mkind);
  case OP_MEMSET:
    if (!is_device(o->dst, o->count)) {
      ct_emu_report("cudaMemset: %p (+%zu bytes) is not inside one device allocation", o->dst, o->count);
      return set_err(cudaErrorInvalidValue);
    }
    memset(o->dst, o->value, o->count);
    return cudaSuccess;
  case OP_HOST: o->fn(o->payload); return cudaSuccess;
  case OP_EVENT: o->event->t_ms = now_ms(); o->event->recorded = true; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t stream) {
  op o = {.kind = OP_MEMCPY, .name = "cudaMemcpy", .dst = dst, .src = src, .count = count, .mkind = kind};
  return op_submit(stream, &o);
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  cudaError_t e = cudaMemcpyAsync(dst, src, count, kind, NULL);
  return e != cudaSuccess ? e : g_sticky;
}
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
  op o = {.kind = OP_MEMSET, .name = "cudaMemset", .dst = ptr, .count = count, .value = value};
  return op_submit(stream, &o);
}
cudaError_t cudaMemset(void *ptr, int value, size_t count) { return cudaMemsetAsync(ptr, value, count, NULL); }

cudaError_t ct_emu_enqueue_host(cudaStream_t stream, const char *what, ct_emu_host_fn fn, const void *payload,
                                size_t payload_size) {
  op o = {.kind = OP_HOST, .name = what, .fn = fn, .payload = (void *)payload, .payload_size = payload_size};
  return op_submit(stream, &o);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags) {
  (void)flags;
  *stream = calloc(1, sizeof **stream);
  return set_err(*stream ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  if (!stream) return set_err(cudaErrorInvalidResourceHandle);
  if (stream->capturing) {
    g_capturing -= stream->global;
    cudaGraphDestroy(stream->graph);
  }
  free(stream);
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  if (stream && stream->capturing) return set_err(cudaErrorStreamCaptureUnsupported);
  return g_sticky;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  (void)flags;
  if (!event) return set_err(cudaErrorInvalidResourceHandle);
  /* everything already ran in issue order; what remains is capture: a stream that waits on an
   * event recorded in a capture joins it (CUDA's fork), so its work is recorded into that graph */
  cudaStream_t o = event->captured_by;
  if (stream && o && o->capturing && !stream->capturing) {
    int k = 0;
    while (k < CT_EMU_MAX_JOINED && g_joined[k]) k++;
    if (k == CT_EMU_MAX_JOINED) return set_err(cudaErrorStreamCaptureUnsupported);
    g_joined[k] = stream;
    stream->capturing = true;
    stream->joined = true;
    stream->origin = o->joined ? o->origin : o;
    stream->graph = o->graph;
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) { return g_sticky; }
cudaError_t cudaDeviceReset(void) { ct_emu_errors_reset(); return cudaSuccess; }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags) {
  (void)flags;
  *event = calloc(1, sizeof **event);
  return set_err(*event ? cudaSuccess : cudaErrorMemoryAllocation);
}
cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, 0); }
cudaError_t cudaEventDestroy(cudaEvent_t event) { free(event); return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return set_err(cudaErrorInvalidResourceHandle);
  op o = {.kind = OP_EVENT, .name = "cudaEventRecord", .event = event};
  event->captured_by = stream && stream->capturing ? stream : NULL;
  return op_submit(stream, &o);
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  if (!event) return set_err(cudaErrorInvalidResourceHandle);
  return g_sticky;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end) return set_err(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return set_err(cudaErrorInvalidResourceHandle);
  *ms = (float)(end->t_ms - start->t_ms);
  return cudaSuccess;
}

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream) return set_err(cudaErrorStreamCaptureUnsupported); /* the legacy stream cannot capture */
  if (stream->capturing) return set_err(cudaErrorIllegalState);
  stream->graph = calloc(1, sizeof *stream->graph);
  if (!stream->graph) return set_err(cudaErrorMemoryAllocation);
  stream->capturing = true;
  stream->invalidated = false;
  stream->global = mode == cudaStreamCaptureModeGlobal;
  g_capturing += stream->global;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph) {
  if (!stream || !stream->capturing || stream->joined) return set_err(cudaErrorIllegalState);
  /* the streams that joined this capture leave it (CUDA requires them to have rejoined the origin by
   * an event the origin waited on; in issue order that holds for every op recorded) */
  for (int k = 0; k < CT_EMU_MAX_JOINED; k++)
    if (g_joined[k] && g_joined[k]->origin == stream) {
      if (g_joined[k]->invalidated) stream->invalidated = true;
      g_joined[k]->capturing = g_joined[k]->joined = false;
      g_joined[k]->graph = NULL;
      g_joined[k]->origin = NULL;
      g_joined[k] = NULL;
    }
  stream->capturing = false;
  g_capturing -= stream->global;
  if (stream->invalidated) {
    cudaGraphDestroy(stream->graph);
    *graph = NULL;
    return set_err(cudaErrorStreamCaptureInvalidated);
  }
  *graph = stream->graph;
  stream->graph = NULL;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus *status) {
  *status = stream && stream->capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags) {
  (void)flags;
  if (!graph) return set_err(cudaErrorInvalidValue);
  cudaGraphExec_t x = calloc(1, sizeof *x);
  if (!x) return set_err(cudaErrorMemoryAllocation);
  x->ops = calloc(graph->n ? graph->n : 1, sizeof *x->ops);
  if (!x->ops) { free(x); return set_err(cudaErrorMemoryAllocation); }
  for (size_t i = 0; i < graph->n; i++) {
    x->ops[i] = graph->ops[i];
    if (graph->ops[i].payload_size) {
      x->ops[i].payload = malloc(graph->ops[i].payload_size);
      memcpy(x->ops[i].payload, graph->ops[i].payload, graph->ops[i].payload_size);
    }
    x->n++;
  }
  *exec = x;
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return set_err(cudaErrorInvalidResourceHandle);
  if (stream && stream->capturing) return set_err(cudaErrorStreamCaptureUnsupported);
  for (size_t i = 0; i < exec->n; i++) {
    cudaError_t e = op_run(&exec->ops[i]);
    if (e != cudaSuccess) return set_err(e);
  }
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  if (!exec) return cudaSuccess;
  for (size_t i = 0; i < exec->n; i++) free(exec->ops[i].payload);
  free(exec->ops);
  free(exec);
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  if (!graph) return cudaSuccess;
  for (size_t i = 0; i < graph->n; i++) free(graph->ops[i].payload);
  free(graph->ops);
  free(graph);
  return cudaSuccess;
}

/* ------------------------------------------------------------------ */
/* fibers                                                             */

#if defined(__x86_64__) && !defined(CT_EMU_UCONTEXT)
/* ct_emu_ctx_switch(save, to): saves callee-saved registers, MXCSR and the x87 control
 * word on the current stack, stores the stack pointer in *save, and resumes `to`. */
__asm__(".text\n"
        ".globl ct_emu_ctx_switch\n"
        ".hidden ct_emu_ctx_switch\n"
        ".type ct_emu_ctx_switch,@function\n"
        "ct_emu_ctx_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size ct_emu_ctx_switch, .-ct_emu_ctx_switch\n");
void ct_emu_ctx_switch(void **save, void *to);
typedef void *fiber_ctx;
#define CT_EMU_HANDROLLED 1
#else
#include <ucontext.h>
typedef ucontext_t fiber_ctx;
#define CT_EMU_HANDROLLED 0
#endif

enum { ST_READY, ST_BAR, ST_SHFL, ST_DONE };

typedef struct emu_thread {
  struct ct_emu_thread_pub pub; /* first: ct_emu_cur points here */
  fiber_ctx ctx;
  unsigned char *stack;
  bool stack_clean; /* ASan: the last fiber on this stack ran to its end (see fiber_init) */
  int id, lane, warp, state;
  bool view_live;
  int s_op, s_arg, s_width, s_line;
  unsigned s_mask;
  uint64_t s_val, s_res;
  const char *s_file;
  unsigned char *view;
  void *fake_stack;
} emu_thread;

static emu_thread *g_thr;   /* CT_EMU_MAX_THREADS, stacks allocated on first use */
static int g_nthr;
static emu_thread *g_running;
static fiber_ctx g_sched_ctx;
static ct_emu_thunk g_thunk;
static void *g_args;
#if CT_EMU_ASAN
static const void *g_main_bottom;
static size_t g_main_size;
#endif
static bool g_block_abort;

/* shared memory of the current block */
static unsigned char *g_smem, *g_snap, *g_views;
static int *g_owner;
static size_t g_smem_cap, g_smem_used, g_dyn, g_views_cap;
static bool g_private;
typedef struct sdecl { const char *name; int line; size_t off, bytes; } sdecl;
static sdecl g_sdecl[128];
static int g_nsdecl;
static long g_epoch;

static struct { const char *fmt; int count; } g_kinds[32];
static int g_nkinds, g_launch_suppressed;
static void kreport(emu_thread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void kreport(emu_thread *t, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  /* print the first two reports of each kind per launch; count them all */
  int kind = 0;
  while (kind < g_nkinds && g_kinds[kind].fmt != fmt) kind++;
  if (kind == g_nkinds && g_nkinds < (int)(sizeof g_kinds / sizeof *g_kinds)) {
    g_kinds[g_nkinds].count = 0;
    g_kinds[g_nkinds++].fmt = fmt;
  }
  if (kind < g_nkinds && ++g_kinds[kind].count > 2) {
    g_launch_suppressed++;
    g_reports++;
    g_sticky = cudaErrorLaunchFailure;
    if (g_cfg.abort_on_error) abort();
    return;
  }
  if (t)
    ct_emu_report("kernel '%s' block (%u,%u,%u) thread (%u,%u,%u): %s", g_kernel ? g_kernel : "?",
                  ct_emu_block_idx.x, ct_emu_block_idx.y, ct_emu_block_idx.z, t->pub.thread_idx.x,
                  t->pub.thread_idx.y, t->pub.thread_idx.z, msg);
  else
    ct_emu_report("kernel '%s' block (%u,%u,%u): %s", g_kernel ? g_kernel : "?", ct_emu_block_idx.x,
                  ct_emu_block_idx.y, ct_emu_block_idx.z, msg);
}

static void fiber_body(void) {
#if CT_EMU_ASAN
  __sanitizer_finish_switch_fiber(NULL, &g_main_bottom, &g_main_size);
#endif
  emu_thread *t = g_running;
  g_thunk(g_args);
  t->state = ST_DONE;
  t->stack_clean = true; /* every kernel frame returned, unpoisoning its redzones */
#if CT_EMU_ASAN
  __sanitizer_start_switch_fiber(NULL, g_main_bottom, g_main_size);
#endif
#if CT_EMU_HANDROLLED
  ct_emu_ctx_switch(&t->ctx, g_sched_ctx);
#else
  swapcontext(&t->ctx, &g_sched_ctx);
#endif
  abort(); /* a finished fiber is never resumed */
}

static bool fiber_init(emu_thread *t) {
  if (!t->stack) {
    void *m = mmap(NULL, CT_EMU_STACK_SIZE + page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (m == MAP_FAILED) return false;
    mprotect(m, page_size(), PROT_NONE); /* stack overflow faults instead of corrupting */
    t->stack = (unsigned char *)m + page_size();
  }
#if CT_EMU_ASAN
  /* Frames that returned have unpoisoned their redzones already: after a fiber
   * that ran to its end only the frames that never returned (fiber_body's, at
   * the top) can hold poison. Unpoisoning the whole stack for every thread of
   * every block cost more than the kernels themselves (128 MiB of shadow
   * writes per 256-thread block); an abandoned fiber still gets the full reset. */
  if (t->stack_clean)
    ASAN_UNPOISON_MEMORY_REGION(t->stack + CT_EMU_STACK_SIZE - 16384, 16384);
  else
    ASAN_UNPOISON_MEMORY_REGION(t->stack, CT_EMU_STACK_SIZE);
  t->stack_clean = false;
#endif
#if CT_EMU_HANDROLLED
  uintptr_t top = ((uintptr_t)(t->stack + CT_EMU_STACK_SIZE)) & ~(uintptr_t)15;
  uint64_t *sp = (uint64_t *)top;
  *--sp = 0;                            /* fake return address of fiber_body */
  *--sp = (uint64_t)(uintptr_t)fiber_body;
  for (int i = 0; i < 6; i++) *--sp = 0; /* rbp rbx r12..r15 */
  --sp;
  uint32_t csr[2];
  __asm__ volatile("stmxcsr %0" : "=m"(csr[0]));
  __asm__ volatile("fnstcw %0" : "=m"(csr[1]));
  memcpy(sp, csr, 8);
  t->ctx = sp;
#else
  getcontext(&t->ctx);
  t->ctx.uc_stack.ss_sp = t->stack;
  t->ctx.uc_stack.ss_size = CT_EMU_STACK_SIZE;
  t->ctx.uc_link = NULL;
  makecontext(&t->ctx, fiber_body, 0);
#endif
  return true;
}

static void fiber_resume(emu_thread *t) { /* scheduler -> t, until t yields */
  g_running = t;
  ct_emu_cur = &t->pub;
#if CT_EMU_ASAN
  void *fake = NULL;
  __sanitizer_start_switch_fiber(&fake, t->stack, CT_EMU_STACK_SIZE);
#endif
#if CT_EMU_HANDROLLED
  ct_emu_ctx_switch(&g_sched_ctx, t->ctx);
#else
  swapcontext(&g_sched_ctx, &t->ctx);
#endif
#if CT_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
  g_running = NULL;
}

static void fiber_yield(emu_thread *t) { /* t -> scheduler */
#if CT_EMU_ASAN
  __sanitizer_start_switch_fiber(&t->fake_stack, g_main_bottom, g_main_size);
#endif
#if CT_EMU_HANDROLLED
  ct_emu_ctx_switch(&t->ctx, g_sched_ctx);
#else
  swapcontext(&t->ctx, &g_sched_ctx);
#endif
#if CT_EMU_ASAN
  __sanitizer_finish_switch_fiber(t->fake_stack, NULL, NULL);
#endif
  g_running = t;
  ct_emu_cur = &t->pub;
}

static emu_thread *cur_thread(const char *what) {
  if (!g_running) {
    ct_emu_report("%s called outside a kernel", what);
    return NULL;
  }
  return g_running;
}

/* ------------------------------------------------------------------ */
/* shared memory                                                      */

static unsigned char *smem_base(emu_thread *t) { return g_private ? t->view : g_smem; }

static void smem_poison(size_t off, size_t bytes) {
  memset(g_smem + off, CT_EMU_POISON, bytes);
  if (!g_private) return;
  memset(g_snap + off, CT_EMU_POISON, bytes);
  for (int i = 0; i < g_nthr; i++) memset(g_thr[i].view + off, CT_EMU_POISON, bytes);
}

void *ct_emu_shared_static(size_t bytes, size_t align, const char *name, int line) {
  emu_thread *t = cur_thread("CT_SHARED");
  if (!t) return NULL;
  for (int i = 0; i < g_nsdecl; i++)
    if (g_sdecl[i].name == name && g_sdecl[i].line == line) {
      if (g_sdecl[i].bytes != bytes)
        kreport(t, "shared array '%s' declared with %zu bytes by one thread and %zu by another", name,
                g_sdecl[i].bytes, bytes);
      return smem_base(t) + g_sdecl[i].off;
    }
  if (align < 16) align = 16;
  size_t off = (g_smem_used + align - 1) & ~(align - 1);
  if (off + bytes > g_smem_cap || g_nsdecl == (int)(sizeof g_sdecl / sizeof *g_sdecl)) {
    kreport(t, "shared array '%s' (%zu bytes) exceeds the %u KiB of static shared memory", name, bytes,
            CT_EMU_STATIC_SHARED_MAX / 1024);
    fprintf(stderr, "ct_cuda_emu: cannot continue\n");
    exit(EXIT_FAILURE);
  }
  g_sdecl[g_nsdecl++] = (sdecl){name, line, off, bytes};
  smem_poison(g_smem_used, off + bytes - g_smem_used);
  g_smem_used = off + bytes;
  return smem_base(t) + off;
}

void *ct_emu_shared_dyn(void) {
  emu_thread *t = cur_thread("CT_SHARED_DYN");
  return t ? smem_base(t) : NULL;
}

void *ct_emu_atomic_addr(void *p, size_t bytes) {
  emu_thread *t = g_running;
  if (!t || !g_private) return p;
  unsigned char *c = p;
  if (c >= t->view && c + bytes <= t->view + g_smem_used) return g_smem + (c - t->view);
  return p;
}

/* Private mode, at a barrier: every thread's writes since the last barrier (bytes of its
 * view that differ from the epoch snapshot) go to the block's shared memory; two threads
 * writing different values to one byte is a race. Then every view is refreshed. */
static void smem_merge(void) {
  size_t n = g_smem_used;
  if (!g_private || n == 0) return;
  for (size_t i = 0; i < n; i++) g_owner[i] = -1;
  for (int k = 0; k < g_nthr; k++) {
    emu_thread *t = &g_thr[k];
    if (!t->view_live) continue;
    bool reported = false;
    for (size_t c = 0; c < n; c += 64) {
      size_t len = n - c < 64 ? n - c : 64;
      if (!memcmp(t->view + c, g_snap + c, len)) continue;
      for (size_t i = c; i < c + len; i++) {
        if (t->view[i] == g_snap[i]) continue;
        if (g_owner[i] >= 0 && g_smem[i] != t->view[i] && !reported) {
          reported = true; /* one report per thread and barrier */
          emu_thread *o = &g_thr[g_owner[i]];
          kreport(t, "shared-memory race: byte %zu written by this thread and by thread (%u,%u,%u) "
                  "with no __syncthreads between (epoch %ld)", i, o->pub.thread_idx.x, o->pub.thread_idx.y,
                  o->pub.thread_idx.z, g_epoch);
        }
        g_owner[i] = k;
        g_smem[i] = t->view[i];
      }
    }
    if (t->state == ST_DONE) t->view_live = false;
  }
  memcpy(g_snap, g_smem, n);
  for (int k = 0; k < g_nthr; k++)
    if (g_thr[k].view_live) memcpy(g_thr[k].view, g_smem, n);
}

void ct_emu_syncthreads(void) {
  emu_thread *t = cur_thread("__syncthreads");
  if (!t) return;
  t->state = ST_BAR;
  fiber_yield(t);
}

/* ------------------------------------------------------------------ */
/* warp shuffles and votes                                            */

static const char *shfl_name(int op) {
  static const char *names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
                                "__ballot_sync", "__any_sync", "__all_sync"};
  return op >= 0 && op < 7 ? names[op] : "__syncwarp";
}

uint64_t ct_emu_shfl(int op, unsigned mask, uint64_t bits, int arg, int width, const char *file, int line) {
  emu_thread *t = cur_thread(shfl_name(op));
  if (!t) return bits;
  t->s_op = op;
  t->s_mask = mask;
  t->s_val = bits;
  t->s_arg = arg;
  t->s_width = width;
  t->s_file = file;
  t->s_line = line;
  t->s_res = bits;
  t->state = ST_SHFL;
  fiber_yield(t);
  return t->s_res;
}

void ct_emu_syncwarp(unsigned mask) { (void)ct_emu_shfl(7, mask, 0, 0, 32, "__syncwarp", 0); }

static unsigned warp_exists_mask(int warp) {
  int cnt = g_nthr - warp * 32;
  return cnt >= 32 ? 0xffffffffu : (1u << cnt) - 1u;
}

static unsigned g_arrived[CT_EMU_MAX_THREADS / 32]; /* per warp: lanes waiting at a shuffle/vote */

/* Called when lane t has just arrived at a shuffle: validates its mask and, once every
 * lane of the mask has arrived, validates width and lane arguments and exchanges values. */
static void shfl_try(emu_thread *t) {
  int w = t->warp, l = t->lane;
  emu_thread *lanes = &g_thr[w * 32];
  unsigned exists = warp_exists_mask(w);
  g_arrived[w] |= 1u << l;
  unsigned m = t->s_mask;
  if (!(m >> l & 1u)) {
    kreport(t, "%s at %s:%d: mask 0x%08x does not include the calling lane %d", shfl_name(t->s_op), t->s_file,
            t->s_line, m, l);
    m |= 1u << l;
  }
  if (m & ~exists) {
    kreport(t, "%s at %s:%d: mask 0x%08x names lanes that do not exist in this block (%d threads)",
            shfl_name(t->s_op), t->s_file, t->s_line, m, g_nthr);
    m &= exists;
  }
  t->s_mask = m;
  if ((g_arrived[w] & m) != m) return;
  /* the group is complete */
  g_arrived[w] &= ~m;
  for (int j = 0; j < 32; j++) {
    if (!(m >> j & 1u)) continue;
    emu_thread *u = &lanes[j];
    if (u->s_mask != m)
      kreport(u, "%s at %s:%d: mask 0x%08x differs from lane %d's mask 0x%08x", shfl_name(u->s_op), u->s_file,
              u->s_line, u->s_mask, l, m);
    if (u->s_op != t->s_op)
      kreport(u, "lanes meet at different warp operations: %s (%s:%d) and %s (%s:%d)", shfl_name(u->s_op),
              u->s_file, u->s_line, shfl_name(t->s_op), t->s_file, t->s_line);
  }
  uint64_t ballot = 0;
  for (int j = 0; j < 32; j++)
    if ((m >> j & 1u) && lanes[j].s_val) ballot |= 1ull << j;
  for (int j = 0; j < 32; j++) {
    if (!(m >> j & 1u)) continue;
    emu_thread *u = &lanes[j];
    int wd = u->s_width, a = u->s_arg, src = j;
    const char *nm = shfl_name(u->s_op);
    if (u->s_op >= CT_EMU_VOTE_BALLOT) {
      u->s_res = u->s_op == CT_EMU_VOTE_BALLOT ? ballot
               : u->s_op == CT_EMU_VOTE_ANY   ? (ballot != 0)
               : u->s_op == CT_EMU_VOTE_ALL   ? (ballot == (uint64_t)m)
                                              : 0;
      u->state = ST_READY;
      continue;
    }
    if (wd < 1 || wd > 32 || (wd & (wd - 1))) {
      kreport(u, "%s at %s:%d: width %d is not a power of two in [1, 32]", nm, u->s_file, u->s_line, wd);
      wd = 32;
    }
    int seg = j & ~(wd - 1);
    if (a < 0 || a >= wd)
      kreport(u, "%s at %s:%d: lane argument %d is outside [0, width %d)", nm, u->s_file, u->s_line, a, wd);
    switch (u->s_op) {
    case CT_EMU_SHFL_IDX: src = seg + (a & (wd - 1)); break;
    case CT_EMU_SHFL_UP: src = j - a; if (src < seg) src = j; break;
    case CT_EMU_SHFL_DOWN: src = j + a; if (src >= seg + wd) src = j; break;
    case CT_EMU_SHFL_XOR: src = j ^ (a & 31); if (src >= seg + wd) src = j; break;
    }
    if (src < 0 || src > 31) src = j;
    if (src != j && !(m >> src & 1u)) {
      kreport(u, "%s at %s:%d: lane %d reads lane %d, which is not in the mask 0x%08x (undefined value)", nm,
              u->s_file, u->s_line, j, src, m);
      src = j;
    }
    u->s_res = lanes[src].s_val;
    u->state = ST_READY;
  }
}

/* ------------------------------------------------------------------ */
/* blocks and launches                                                */

static uint64_t g_rng;
static uint32_t rng_next(void) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (uint32_t)(g_rng >> 11);
}

static bool threads_alloc(void) {
  if (g_thr) return true;
  g_thr = calloc(CT_EMU_MAX_THREADS, sizeof *g_thr);
  return g_thr != NULL;
}

static bool smem_alloc(int nthr, size_t cap) {
  if (cap > g_smem_cap) {
    free(g_smem); free(g_snap); free(g_owner);
    g_smem = malloc(cap);
    g_snap = malloc(cap);
    g_owner = malloc(cap * sizeof *g_owner);
    g_smem_cap = cap;
    if (!g_smem || !g_snap || !g_owner) { g_smem_cap = 0; return false; }
  }
  size_t need = g_private ? (size_t)nthr * g_smem_cap : 0; /* views are g_smem_cap apart */
  if (need > g_views_cap) {
    free(g_views);
    g_views = malloc(need);
    g_views_cap = g_views ? need : 0;
    if (!g_views) return false;
  }
  return true;
}

static void block_run(ct_emu_order order, int *perm) {
  dim3 bd = ct_emu_block_dim;
  g_nthr = (int)(bd.x * bd.y * bd.z);
  g_smem_used = g_dyn;
  g_nsdecl = 0;
  g_epoch = 0;
  for (int i = 0; i < g_nthr; i++) {
    emu_thread *t = &g_thr[i];
    t->id = i;
    t->lane = i % 32;
    t->warp = i / 32;
    t->pub.thread_idx.x = (unsigned)i % bd.x;
    t->pub.thread_idx.y = ((unsigned)i / bd.x) % bd.y;
    t->pub.thread_idx.z = (unsigned)i / (bd.x * bd.y);
    t->state = ST_READY;
    t->view = g_private ? g_views + (size_t)i * g_smem_cap : NULL;
    t->view_live = g_private;
    t->fake_stack = NULL;
    if (!fiber_init(t)) {
      fprintf(stderr, "ct_cuda_emu: cannot allocate fiber stacks\n");
      exit(EXIT_FAILURE);
    }
  }
  if (g_dyn) smem_poison(0, g_dyn);
  memset(g_arrived, 0, sizeof g_arrived);
  for (int i = 0; i < g_nthr; i++) perm[i] = order == CT_EMU_ORDER_REVERSE ? g_nthr - 1 - i : i;
  bool warned_exit = false;
  for (;;) {
    if (order == CT_EMU_ORDER_RANDOM)
      for (int i = g_nthr - 1; i > 0; i--) {
        int j = (int)(rng_next() % (uint32_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
      }
    for (int i = 0; i < g_nthr; i++) {
      emu_thread *t = &g_thr[perm[i]];
      if (t->state != ST_READY) continue;
      fiber_resume(t);
      if (t->state == ST_SHFL) shfl_try(t);
    }
    int nready = 0, nbar = 0, nshfl = 0, ndone = 0;
    for (int i = 0; i < g_nthr; i++) {
      int s = g_thr[i].state;
      nready += s == ST_READY;
      nbar += s == ST_BAR;
      nshfl += s == ST_SHFL;
      ndone += s == ST_DONE;
    }
    if (ndone == g_nthr) break;
    if (nready) continue;
    if (nshfl == 0) { /* everyone alive waits at the barrier */
      if (ndone && !warned_exit) {
        kreport(NULL, "__syncthreads reached by %d threads while %d threads of the block already exited "
                "(divergent barrier)", nbar, ndone);
        warned_exit = true;
      }
      smem_merge();
      g_epoch++;
      for (int i = 0; i < g_nthr; i++)
        if (g_thr[i].state == ST_BAR) g_thr[i].state = ST_READY;
      continue;
    }
    /* deadlock: shuffles wait for lanes that exited or wait at a barrier */
    int before = g_reports;
    for (int i = 0; i < g_nthr; i++) {
      emu_thread *t = &g_thr[i];
      if (t->state != ST_SHFL) continue;
      for (int j = 0; j < 32; j++) {
        if (!(t->s_mask >> j & 1u)) continue;
        emu_thread *u = &g_thr[t->warp * 32 + j];
        if (u->state == ST_SHFL) continue;
        kreport(t, "%s at %s:%d waits for lane %d (mask 0x%08x), which %s: deadlock", shfl_name(t->s_op),
                t->s_file, t->s_line, j, t->s_mask, u->state == ST_DONE ? "has exited" : "waits at __syncthreads");
        break;
      }
    }
    if (g_reports == before)
      kreport(NULL, "deadlock: %d threads wait at warp shuffles whose masks never complete "
              "(inconsistent masks between lanes)", nshfl);
    g_block_abort = true; /* the fibers are abandoned; their stacks are reset at the next block */
    break;
  }
}

static void grid_run(const op *o, ct_emu_order order, bool private_smem) {
  static int perm[CT_EMU_MAX_THREADS];
  g_private = private_smem;
  g_dyn = (o->shmem + 15u) & ~(size_t)15u;
  int nthr = (int)(o->block.x * o->block.y * o->block.z);
  if (!smem_alloc(nthr, g_dyn + CT_EMU_STATIC_SHARED_MAX)) {
    fprintf(stderr, "ct_cuda_emu: out of memory for shared memory views\n");
    exit(EXIT_FAILURE);
  }
  g_rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)g_cfg.seed << 1 | 1u) ^ (uint64_t)g_launches * 0x2545f4914f6cdd1dull;
  g_thunk = o->thunk;
  g_args = o->payload;
  g_kernel = o->name;
  g_in_kernel = true;
  g_block_abort = false;
  g_nkinds = 0;
  g_launch_suppressed = 0;
  ct_emu_grid_dim = o->grid;
  ct_emu_block_dim = o->block;
  for (unsigned z = 0; z < o->grid.z && !g_block_abort; z++)
    for (unsigned y = 0; y < o->grid.y && !g_block_abort; y++)
      for (unsigned x = 0; x < o->grid.x && !g_block_abort; x++) {
        ct_emu_block_idx = (dim3){x, y, z};
        block_run(order, perm);
      }
  g_in_kernel = false;
  ct_emu_cur = NULL;
  if (g_launch_suppressed)
    fprintf(stderr, "ct_cuda_emu: kernel '%s': %d more reports of the same kinds not shown\n", o->name,
            g_launch_suppressed);
}

/* Device memory snapshot for the schedule comparison. */
static unsigned char **snap_take(void) {
  unsigned char **s = calloc(g_nallocs + 1, sizeof *s);
  for (size_t i = 0; s && i < g_nallocs; i++) {
    s[i] = malloc(g_allocs[i].size);
    if (s[i]) memcpy(s[i], g_allocs[i].p, g_allocs[i].size);
  }
  return s;
}
static void snap_swap_restore(unsigned char **s) { /* memory <- s, s <- memory */
  for (size_t i = 0; s && i < g_nallocs; i++) {
    if (!s[i]) continue;
    unsigned char *keep = malloc(g_allocs[i].size);
    if (keep) memcpy(keep, g_allocs[i].p, g_allocs[i].size);
    memcpy(g_allocs[i].p, s[i], g_allocs[i].size);
    free(s[i]);
    s[i] = keep;
  }
}
static void snap_free(unsigned char **s) {
  for (size_t i = 0; s && i < g_nallocs; i++) free(s[i]);
  free(s);
}

static void snap_compare(unsigned char **first, const char *name, bool float_tol) {
  for (size_t i = 0; first && i < g_nallocs; i++) {
    alloc *a = &g_allocs[i];
    if (!first[i] || !memcmp(first[i], a->p, a->size)) continue;
    size_t off = 0;
    if (float_tol && a->size % 4 == 0) {
      const float *x = (const float *)first[i], *y = (const float *)a->p;
      bool bad = false;
      for (size_t j = 0; j < a->size / 4; j++)
        if (!(fabsf(x[j] - y[j]) <= 1e-5f * fmaxf(fabsf(x[j]), fabsf(y[j])) + 1e-6f) &&
            memcmp(&x[j], &y[j], 4)) {
          off = j * 4;
          bad = true;
          break;
        }
      if (!bad) continue;
    } else {
      while (first[i][off] == a->p[off]) off++;
    }
    ct_emu_report("kernel '%s': results depend on the thread schedule (reverse order with one shared "
                  "memory vs forward order with per-thread shared views): device allocation %p (%zu bytes) "
                  "differs at byte %zu — a missing __syncthreads or a race", name, (void *)a->p, a->size, off);
    g_sticky = cudaErrorLaunchFailure;
    return;
  }
}

static void guard_signals_install(void);
static size_t func_max_dyn(const void *func);

static cudaError_t launch_run(const op *o) {
  dim3 g = o->grid, b = o->block;
  unsigned long long nthr = (unsigned long long)b.x * b.y * b.z;
  if (g_running) {
    ct_emu_report("kernel '%s' launched from inside kernel '%s' (dynamic parallelism is not emulated)", o->name,
                  g_kernel);
    return set_err(cudaErrorNotSupported);
  }
  if (!g.x || !g.y || !g.z || !nthr || nthr > CT_EMU_MAX_THREADS || b.x > 1024 || b.y > 1024 || b.z > 64 ||
      g.y > 65535 || g.z > 65535 || g.x > 0x7fffffffu || o->shmem > func_max_dyn(o->func)) {
    ct_emu_report("kernel '%s': invalid launch configuration grid (%u,%u,%u) block (%u,%u,%u) shmem %zu "
                  "(dynamic shared memory above 48 KiB needs cudaFuncAttributeMaxDynamicSharedMemorySize)", o->name,
                  g.x, g.y, g.z, b.x, b.y, b.z, o->shmem);
    return set_err(cudaErrorInvalidConfiguration);
  }
  if (!threads_alloc()) return set_err(cudaErrorMemoryAllocation);
  if (g_cfg.guard) guard_signals_install();
  ct_emu_float_atomics = 0;
  if (g_cfg.check_schedules) {
    unsigned char **before = snap_take();
    grid_run(o, CT_EMU_ORDER_REVERSE, false);
    snap_swap_restore(before); /* memory back to before, `before` now holds the first result */
    bool fa = ct_emu_float_atomics;
    grid_run(o, CT_EMU_ORDER_FORWARD, true);
    snap_compare(before, o->name, fa || ct_emu_float_atomics);
    snap_free(before);
  } else {
    grid_run(o, g_cfg.order, g_cfg.shared_private);
  }
  guard_check(o->name);
  g_launches++;
  if (g_sticky != cudaSuccess) g_last_error = g_sticky;
  return g_sticky;
}

/* kernels allowed more than 48 KiB of dynamic shared memory */
static struct { const void *func; int max_dyn; } g_func_attr[256];
static int g_nfunc_attr;

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
  if (!func) return set_err(cudaErrorInvalidValue);
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > (int)CT_EMU_DYN_SHARED_MAX)
    return set_err(cudaErrorInvalidValue);
  int i = 0;
  while (i < g_nfunc_attr && g_func_attr[i].func != func) i++;
  if (i == (int)(sizeof g_func_attr / sizeof *g_func_attr)) return set_err(cudaErrorMemoryAllocation);
  if (i == g_nfunc_attr) g_nfunc_attr++;
  g_func_attr[i].func = func;
  g_func_attr[i].max_dyn = value;
  return cudaSuccess;
}

static size_t func_max_dyn(const void *func) {
  for (int i = 0; i < g_nfunc_attr; i++)
    if (g_func_attr[i].func == func) return (size_t)g_func_attr[i].max_dyn;
  return CT_EMU_STATIC_SHARED_MAX;
}

cudaError_t ct_emu_launch(const char *name, const void *func, dim3 grid, dim3 block, size_t shmem,
                          cudaStream_t stream, ct_emu_thunk thunk, const void *args, size_t args_size) {
  op o = {.kind = OP_KERNEL, .name = name, .func = func, .grid = grid, .block = block, .shmem = shmem,
          .thunk = thunk, .payload = (void *)args, .payload_size = args_size};
  return op_submit(stream, &o);
}

/* ------------------------------------------------------------------ */
/* guard mode: faults on the guard page after an allocation           */

static void guard_segv(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  unsigned char *addr = si->si_addr;
  alloc *a = alloc_containing(addr, page_size());
  if (a && a->map_size && addr >= a->p + a->size) {
    size_t off = (size_t)(addr - a->p);
    if (g_in_kernel && g_running)
      fprintf(stderr, "ct_cuda_emu: kernel '%s' block (%u,%u,%u) thread (%u,%u,%u): out-of-bounds access at "
              "byte offset %zu (float index %zu) of device allocation %p of %zu bytes (%zu floats)\n", g_kernel,
              ct_emu_block_idx.x, ct_emu_block_idx.y, ct_emu_block_idx.z, g_running->pub.thread_idx.x,
              g_running->pub.thread_idx.y, g_running->pub.thread_idx.z, off, off / 4, (void *)a->p, a->size,
              a->size / 4);
    else
      fprintf(stderr, "ct_cuda_emu: out-of-bounds access at byte offset %zu of device allocation %p of %zu "
              "bytes (outside any kernel)\n", off, (void *)a->p, a->size);
    fflush(stderr);
    if (g_cfg.abort_on_error) abort();
    _exit(86);
  }
  signal(sig, SIG_DFL); /* not ours: fault again with the default action */
}

static void guard_signals_install(void) {
  static bool done;
  if (done) return;
  done = true;
  static unsigned char altstack[64 * 1024];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
  sigaltstack(&ss, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = guard_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, NULL);
  sigaction(SIGBUS, &sa, NULL);
}

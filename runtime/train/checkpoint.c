/* checkpoint.c — safetensors-layout checkpoints: the atomic writer (temp
 * file, fsync, rename, directory fsync; every system call checked) and the
 * validating reader (mmap, header, offsets, format version, CRC-32). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoints are little-endian; this host is not"
#endif

/* The header is refused beyond this size (safetensors' own limit). */
#define CT_CKPT_MAX_HEADER (100u * 1024u * 1024u)

static const struct {
    const char *name;
    size_t size;
} dtype_table[CT_CKPT_DTYPE_COUNT] = {
    [CT_CKPT_F32] = {"F32", 4}, [CT_CKPT_F64] = {"F64", 8}, [CT_CKPT_F16] = {"F16", 2},
    [CT_CKPT_BF16] = {"BF16", 2}, [CT_CKPT_I64] = {"I64", 8}, [CT_CKPT_I32] = {"I32", 4},
    [CT_CKPT_I16] = {"I16", 2},  [CT_CKPT_I8] = {"I8", 1},   [CT_CKPT_U8] = {"U8", 1},
    [CT_CKPT_BOOL] = {"BOOL", 1},
};

const char *ct_ckpt_dtype_name(ct_ckpt_dtype t)
{
    return (unsigned)t < CT_CKPT_DTYPE_COUNT ? dtype_table[t].name : "?";
}

size_t ct_ckpt_dtype_size(ct_ckpt_dtype t) { return (unsigned)t < CT_CKPT_DTYPE_COUNT ? dtype_table[t].size : 0; }

ct_ckpt_dtype ct_ckpt_dtype_from_name(const char *name)
{
    for (int i = 0; i < CT_CKPT_DTYPE_COUNT; i++)
        if (strcmp(dtype_table[i].name, name) == 0) return (ct_ckpt_dtype)i;
    return CT_CKPT_DTYPE_COUNT;
}

ct_ckpt_dtype ct_ckpt_dtype_from_onnx(int onnx_type)
{
    switch (onnx_type) {
    case 1: return CT_CKPT_F32;
    case 2: return CT_CKPT_U8;
    case 3: return CT_CKPT_I8;
    case 5: return CT_CKPT_I16;
    case 6: return CT_CKPT_I32;
    case 7: return CT_CKPT_I64;
    case 9: return CT_CKPT_BOOL;
    case 10: return CT_CKPT_F16;
    case 11: return CT_CKPT_F64;
    case 16: return CT_CKPT_BF16;
    default: return CT_CKPT_DTYPE_COUNT;
    }
}

int64_t ct_ckpt_tensor_nbytes(const ct_ckpt_tensor *t)
{
    if ((unsigned)t->dtype >= CT_CKPT_DTYPE_COUNT || t->rank < 0 || t->rank > CT_CKPT_MAX_RANK) return -1;
    int64_t n = (int64_t)dtype_table[t->dtype].size;
    for (int d = 0; d < t->rank; d++) {
        if (t->dims[d] < 0) return -1;
        if (t->dims[d] != 0 && n > INT64_MAX / t->dims[d]) return -1;
        n *= t->dims[d];
    }
    return n;
}

static uint32_t crc_update(uint32_t crc, const unsigned char *p, uint64_t n)
{
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return crc;
}

/* ------------------------------------------------------------------ writer */

static const char *const reserved_meta[] = {"format", "format_version", "checksum"};

static bool write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        if (w == 0) {
            errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The directory part of path ("." if none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static ct_train_err check_tensors(const char *path, const ct_ckpt_tensor *t, int n, const ct_ckpt_meta *meta,
                                  int n_meta)
{
    for (int i = 0; i < n; i++) {
        if (!t[i].name || !t[i].name[0])
            return ct_train_errorf("%s: checkpoint tensor %d has no name", path, i);
        if (strcmp(t[i].name, "__metadata__") == 0)
            return ct_train_errorf("%s: \"__metadata__\" is not a valid tensor name", path);
        if (ct_ckpt_tensor_nbytes(&t[i]) < 0)
            return ct_train_errorf("%s: tensor '%s' has a bad dtype or shape", path, t[i].name);
        if (ct_ckpt_tensor_nbytes(&t[i]) > 0 && !t[i].data)
            return ct_train_errorf("%s: tensor '%s' has no data", path, t[i].name);
        for (int j = 0; j < i; j++)
            if (strcmp(t[i].name, t[j].name) == 0)
                return ct_train_errorf("%s: tensor name '%s' appears twice", path, t[i].name);
    }
    for (int i = 0; i < n_meta; i++) {
        if (!meta[i].key || !meta[i].value)
            return ct_train_errorf("%s: metadata entry %d has no key or value", path, i);
        for (size_t r = 0; r < sizeof reserved_meta / sizeof *reserved_meta; r++)
            if (strcmp(meta[i].key, reserved_meta[r]) == 0)
                return ct_train_errorf("%s: metadata key '%s' is reserved", path, meta[i].key);
        for (int j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return ct_train_errorf("%s: metadata key '%s' appears twice", path, meta[i].key);
    }
    return NULL;
}

/* The JSON header, padded with spaces so the data section starts at a
 * multiple of 8 bytes. */
static char *build_header(const ct_ckpt_tensor *t, int n, const ct_ckpt_meta *meta, int n_meta, uint32_t crc,
                          size_t *len_out)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    char crc_str[32];
    snprintf(crc_str, sizeof crc_str, "crc32:%08" PRIx32, crc);
    fputs("{\"__metadata__\":{\"format\":", f);
    ct_json_write_string(f, CT_CKPT_FORMAT);
    fputs(",\"format_version\":", f);
    ct_json_write_string(f, CT_CKPT_FORMAT_VERSION);
    fputs(",\"checksum\":", f);
    ct_json_write_string(f, crc_str);
    for (int i = 0; i < n_meta; i++) {
        fputc(',', f);
        ct_json_write_string(f, meta[i].key);
        fputc(':', f);
        ct_json_write_string(f, meta[i].value);
    }
    fputc('}', f);
    int64_t off = 0;
    for (int i = 0; i < n; i++) {
        int64_t nb = ct_ckpt_tensor_nbytes(&t[i]);
        fputc(',', f);
        ct_json_write_string(f, t[i].name);
        fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", ct_ckpt_dtype_name(t[i].dtype));
        for (int d = 0; d < t[i].rank; d++) fprintf(f, "%s%" PRId64, d ? "," : "", t[i].dims[d]);
        fprintf(f, "],\"data_offsets\":[%" PRId64 ",%" PRId64 "]}", off, off + nb);
        off += nb;
    }
    fputc('}', f);
    while ((8 + ftell(f)) % 8 != 0) fputc(' ', f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len_out = len;
    return buf;
}

ct_train_err ct_ckpt_write(const char *path, const ct_ckpt_tensor *tensors, int n_tensors,
                           const ct_ckpt_meta *meta, int n_meta)
{
    ct_train_err err = check_tensors(path, tensors, n_tensors, meta, n_meta);
    if (err) return err;

    uint32_t crc = (uint32_t)crc32(0, Z_NULL, 0);
    for (int i = 0; i < n_tensors; i++)
        crc = crc_update(crc, tensors[i].data, (uint64_t)ct_ckpt_tensor_nbytes(&tensors[i]));

    size_t hlen = 0;
    char *header = build_header(tensors, n_tensors, meta, n_meta, crc, &hlen);
    char *tmp = NULL, *dir = NULL;
    int fd = -1, dfd = -1;
    bool tmp_exists = false;
    if (!header) {
        err = ct_train_errorf("%s: cannot build the checkpoint header: out of memory", path);
        goto fail;
    }
    size_t tmp_n = strlen(path) + 32;
    tmp = malloc(tmp_n);
    if (!tmp) abort();
    snprintf(tmp, tmp_n, "%s.tmp.%ld", path, (long)getpid());

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        err = ct_train_errorf("%s: cannot create the temporary checkpoint: %s", tmp, strerror(errno));
        goto fail;
    }
    tmp_exists = true;
    unsigned char len_le[8];
    for (int b = 0; b < 8; b++) len_le[b] = (unsigned char)(((uint64_t)hlen >> (8 * b)) & 0xff);
    if (!write_all(fd, len_le, 8) || !write_all(fd, header, hlen)) goto write_fail;
    for (int i = 0; i < n_tensors; i++)
        if (!write_all(fd, tensors[i].data, (size_t)ct_ckpt_tensor_nbytes(&tensors[i]))) goto write_fail;
    if (fsync(fd) != 0) {
        err = ct_train_errorf("%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        err = ct_train_errorf("%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        err = ct_train_errorf("%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        goto fail;
    }
    tmp_exists = false;
    dir = dir_of(path);
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        /* the new file is in place; only its durability across a crash is in doubt */
        err = ct_train_errorf("%s: checkpoint written but fsync of directory %s failed: %s", path, dir,
                              strerror(errno));
        goto fail;
    }
    close(dfd);
    free(dir);
    free(tmp);
    free(header);
    return NULL;

write_fail:
    err = ct_train_errorf("%s: cannot write the checkpoint (%s); the previous checkpoint, if any, is kept",
                          path, strerror(errno));
fail:
    if (fd >= 0) close(fd);
    if (dfd >= 0) close(dfd);
    if (tmp_exists) unlink(tmp);
    free(dir);
    free(tmp);
    free(header);
    return err;
}

int ct_ckpt_remove_stale_temps(const char *path)
{
    char *dir = dir_of(path);
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t base_n = strlen(base);
    int removed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        free(dir);
        return 0;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, base_n) != 0 || strncmp(e->d_name + base_n, ".tmp.", 5) != 0) continue;
        const char *pid_s = e->d_name + base_n + 5;
        char *end;
        long pid = strtol(pid_s, &end, 10);
        if (*pid_s == 0 || *end != 0 || pid <= 0) continue;
        if (pid != (long)getpid() && kill((pid_t)pid, 0) == 0) continue; /* its writer still runs */
        if (pid != (long)getpid() && errno != ESRCH) continue;
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *full = malloc(n);
        if (!full) abort();
        snprintf(full, n, "%s/%s", dir, e->d_name);
        if (unlink(full) == 0) removed++;
        free(full);
    }
    closedir(d);
    free(dir);
    return removed;
}

/* ------------------------------------------------------------------ reader */

struct ct_ckpt {
    char *path;
    void *map;
    size_t map_n;
    int n;
    ct_ckpt_tensor *t; /* names malloc'd, data into map */
    int n_meta;
    char **meta_k, **meta_v;
};

void ct_ckpt_close(ct_ckpt *c)
{
    if (!c) return;
    if (c->map && c->map != MAP_FAILED) munmap(c->map, c->map_n);
    for (int i = 0; i < c->n; i++) free((char *)c->t[i].name);
    for (int i = 0; i < c->n_meta; i++) {
        free(c->meta_k[i]);
        free(c->meta_v[i]);
    }
    free(c->meta_k);
    free(c->meta_v);
    free(c->t);
    free(c->path);
    free(c);
}

const char *ct_ckpt_path(const ct_ckpt *c) { return c->path; }
int ct_ckpt_count(const ct_ckpt *c) { return c->n; }
const ct_ckpt_tensor *ct_ckpt_tensor_at(const ct_ckpt *c, int i) { return (i >= 0 && i < c->n) ? &c->t[i] : NULL; }

const char *ct_ckpt_meta_get(const ct_ckpt *c, const char *key)
{
    for (int i = 0; i < c->n_meta; i++)
        if (strcmp(c->meta_k[i], key) == 0) return c->meta_v[i];
    return NULL;
}

const ct_ckpt_tensor *ct_ckpt_find(const ct_ckpt *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    return NULL;
}

static void shape_str(const ct_ckpt_tensor *t, char *buf, size_t n);

typedef struct {
    int64_t begin, end;
    int index;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static bool json_int(const ct_json *v, int64_t *out)
{
    if (!v || v->type != CT_JSON_NUMBER || !v->is_int) return false;
    *out = v->i;
    return true;
}

/* One tensor entry of the header into c->t[idx]; spans[idx] gets its range. */
static ct_train_err parse_entry(ct_ckpt *c, const char *name, const ct_json *e, int idx, span *sp)
{
    const char *path = c->path;
    if (e->type != CT_JSON_OBJECT)
        return ct_train_errorf("%s: corrupt checkpoint header: entry '%s' is not an object", path, name);
    for (int k = 0; k < e->n; k++)
        if (strcmp(e->keys[k], "dtype") && strcmp(e->keys[k], "shape") && strcmp(e->keys[k], "data_offsets"))
            return ct_train_errorf("%s: corrupt checkpoint header: tensor '%s' has unknown field '%s'", path,
                                   name, e->keys[k]);
    const ct_json *dt = ct_json_get(e, "dtype"), *sh = ct_json_get(e, "shape"),
                  *of = ct_json_get(e, "data_offsets");
    if (!dt || dt->type != CT_JSON_STRING || !sh || sh->type != CT_JSON_ARRAY || !of || of->type != CT_JSON_ARRAY)
        return ct_train_errorf("%s: corrupt checkpoint header: tensor '%s' lacks dtype, shape or data_offsets",
                               path, name);
    ct_ckpt_tensor *t = &c->t[idx];
    t->name = strdup(name);
    if (!t->name) abort();
    t->dtype = ct_ckpt_dtype_from_name(dt->str);
    if (t->dtype == CT_CKPT_DTYPE_COUNT)
        return ct_train_errorf("%s: tensor '%s' has unsupported dtype \"%s\"", path, name, dt->str);
    if (sh->n > CT_CKPT_MAX_RANK)
        return ct_train_errorf("%s: tensor '%s' has rank %d (at most %d supported)", path, name, sh->n,
                               CT_CKPT_MAX_RANK);
    t->rank = sh->n;
    for (int d = 0; d < sh->n; d++)
        if (!json_int(sh->items[d], &t->dims[d]) || t->dims[d] < 0)
            return ct_train_errorf("%s: tensor '%s': shape must hold non-negative integers", path, name);
    int64_t nb = ct_ckpt_tensor_nbytes(t);
    if (nb < 0) return ct_train_errorf("%s: tensor '%s': shape overflows", path, name);
    if (of->n != 2 || !json_int(of->items[0], &sp->begin) || !json_int(of->items[1], &sp->end) ||
        sp->begin < 0 || sp->end < sp->begin)
        return ct_train_errorf("%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", path,
                               name);
    if (sp->end - sp->begin != nb) {
        char shp[160];
        shape_str(t, shp, sizeof shp);
        return ct_train_errorf("%s: tensor '%s': data_offsets span %" PRId64 " bytes but %s needs %" PRId64, path,
                               name, sp->end - sp->begin, shp, nb);
    }
    sp->index = idx;
    return NULL;
}

ct_train_err ct_ckpt_open(const char *path, const char *expect_fingerprint, ct_ckpt **out)
{
    *out = NULL;
    ct_train_err err = NULL;
    ct_json *hdr = NULL;
    span *spans = NULL;
    ct_ckpt *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->path = strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err = ct_train_errorf("%s: cannot open checkpoint: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = ct_train_errorf("%s: cannot stat checkpoint: %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err = ct_train_errorf("%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8 + 2) {
        err = ct_train_errorf("%s: not a checkpoint: file is %" PRIu64 " bytes (truncated?)", path, size);
        goto fail;
    }
    c->map_n = (size_t)size;
    c->map = mmap(NULL, c->map_n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (c->map == MAP_FAILED) {
        c->map = NULL;
        err = ct_train_errorf("%s: cannot map checkpoint: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    const unsigned char *bytes = c->map;
    uint64_t hlen = 0;
    for (int b = 0; b < 8; b++) hlen |= (uint64_t)bytes[b] << (8 * b);
    if (hlen < 2 || hlen > CT_CKPT_MAX_HEADER) {
        err = ct_train_errorf("%s: not a checkpoint: header length %" PRIu64 " is out of bounds", path, hlen);
        goto fail;
    }
    if (hlen > size - 8) {
        err = ct_train_errorf("%s: truncated checkpoint: header of %" PRIu64 " bytes but file is %" PRIu64
                              " bytes", path, hlen, size);
        goto fail;
    }
    if (bytes[8] != '{') {
        err = ct_train_errorf("%s: not a checkpoint: header does not start with '{'", path);
        goto fail;
    }
    char jerr[200];
    hdr = ct_json_parse((const char *)bytes + 8, (size_t)hlen, jerr, sizeof jerr);
    if (!hdr || hdr->type != CT_JSON_OBJECT) {
        err = ct_train_errorf("%s: corrupt checkpoint header: %s", path, hdr ? "not a JSON object" : jerr);
        goto fail;
    }
    uint64_t data_n = size - 8 - hlen;
    const unsigned char *data = bytes + 8 + hlen;

    /* metadata */
    const ct_json *meta = ct_json_get(hdr, "__metadata__");
    if (!meta || meta->type != CT_JSON_OBJECT) {
        err = ct_train_errorf("%s: not a contra checkpoint: no \"__metadata__\" object in the header", path);
        goto fail;
    }
    c->meta_k = calloc((size_t)meta->n + 1, sizeof(char *));
    c->meta_v = calloc((size_t)meta->n + 1, sizeof(char *));
    if (!c->meta_k || !c->meta_v) abort();
    for (int i = 0; i < meta->n; i++) {
        if (meta->items[i]->type != CT_JSON_STRING) {
            err = ct_train_errorf("%s: corrupt checkpoint header: metadata '%s' is not a string", path,
                                  meta->keys[i]);
            goto fail;
        }
        c->meta_k[c->n_meta] = strdup(meta->keys[i]);
        c->meta_v[c->n_meta] = strdup(meta->items[i]->str);
        c->n_meta++;
    }
    const char *fmt = ct_ckpt_meta_get(c, "format");
    if (!fmt || strcmp(fmt, CT_CKPT_FORMAT) != 0) {
        err = ct_train_errorf("%s: not a contra checkpoint (metadata format is %s%s%s, expected \"%s\")", path,
                              fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "", CT_CKPT_FORMAT);
        goto fail;
    }
    const char *ver = ct_ckpt_meta_get(c, "format_version");
    if (!ver || strcmp(ver, CT_CKPT_FORMAT_VERSION) != 0) {
        err = ct_train_errorf("%s: checkpoint format version %s is not supported (this build reads version %s)",
                              path, ver ? ver : "(missing)", CT_CKPT_FORMAT_VERSION);
        goto fail;
    }

    /* tensors */
    c->t = calloc((size_t)hdr->n + 1, sizeof *c->t);
    spans = calloc((size_t)hdr->n + 1, sizeof *spans);
    if (!c->t || !spans) abort();
    for (int i = 0; i < hdr->n; i++) {
        if (strcmp(hdr->keys[i], "__metadata__") == 0) continue;
        int idx = c->n++;
        err = parse_entry(c, hdr->keys[i], hdr->items[i], idx, &spans[idx]);
        if (err) goto fail;
    }
    qsort(spans, (size_t)c->n, sizeof *spans, span_cmp);
    int64_t pos = 0;
    for (int i = 0; i < c->n; i++) {
        const char *nm = c->t[spans[i].index].name;
        if (spans[i].begin < pos) {
            err = ct_train_errorf("%s: corrupt checkpoint header: tensor '%s' overlaps another tensor", path, nm);
            goto fail;
        }
        if (spans[i].begin > pos) {
            err = ct_train_errorf("%s: corrupt checkpoint header: a gap of unused bytes before tensor '%s'", path,
                                  nm);
            goto fail;
        }
        if ((uint64_t)spans[i].end > data_n) {
            err = ct_train_errorf("%s: truncated checkpoint: tensor '%s' ends at byte %" PRId64
                                  " of a data section of %" PRIu64 " bytes",
                                  path, nm, spans[i].end, data_n);
            goto fail;
        }
        c->t[spans[i].index].data = (void *)(data + spans[i].begin);
        pos = spans[i].end;
    }
    if ((uint64_t)pos != data_n) {
        err = ct_train_errorf("%s: corrupt checkpoint: %" PRIu64 " bytes after the last tensor", path,
                              data_n - (uint64_t)pos);
        goto fail;
    }

    /* checksum */
    const char *sum = ct_ckpt_meta_get(c, "checksum");
    uint32_t crc = crc_update((uint32_t)crc32(0, Z_NULL, 0), data, data_n);
    char crc_str[32];
    snprintf(crc_str, sizeof crc_str, "crc32:%08" PRIx32, crc);
    if (!sum) {
        err = ct_train_errorf("%s: checkpoint has no checksum in its metadata", path);
        goto fail;
    }
    if (strcmp(sum, crc_str) != 0) {
        err = ct_train_errorf("%s: checkpoint is corrupt: checksum mismatch (header says %s, data gives %s)", path,
                              sum, crc_str);
        goto fail;
    }

    /* fingerprint */
    if (expect_fingerprint) {
        const char *fp = ct_ckpt_meta_get(c, "fingerprint");
        if (!fp || strcmp(fp, expect_fingerprint) != 0) {
            const char *model = ct_ckpt_meta_get(c, "model"), *method = ct_ckpt_meta_get(c, "method");
            err = ct_train_errorf("%s: checkpoint is from a different model or method (it was written for "
                                  "%s%s%s, fingerprint %s; this program's fingerprint is %s)",
                                  path, model ? model : "an unnamed model", method ? " with " : "",
                                  method ? method : "", fp ? fp : "(none)", expect_fingerprint);
            goto fail;
        }
    }
    ct_json_free(hdr);
    free(spans);
    *out = c;
    return NULL;
fail:
    if (fd >= 0) close(fd);
    ct_json_free(hdr);
    free(spans);
    ct_ckpt_close(c);
    return err;
}

static void shape_str(const ct_ckpt_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "%s[", ct_ckpt_dtype_name(t->dtype));
    for (int d = 0; d < t->rank && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, d ? "," : "", t->dims[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

ct_train_err ct_ckpt_load(const ct_ckpt *c, const ct_ckpt_tensor *tensors, int n_tensors)
{
    ct_train_err err = NULL;
    bool *used = calloc((size_t)c->n + 1, 1);
    if (!used) abort();
    /* check everything before copying anything */
    for (int i = 0; i < n_tensors && !err; i++) {
        int k = -1;
        for (int j = 0; j < c->n; j++)
            if (strcmp(c->t[j].name, tensors[i].name) == 0) {
                k = j;
                break;
            }
        if (k < 0) {
            err = ct_train_errorf("%s: checkpoint lacks tensor '%s'", c->path, tensors[i].name);
            break;
        }
        if (used[k]) {
            err = ct_train_errorf("%s: tensor '%s' requested twice", c->path, tensors[i].name);
            break;
        }
        used[k] = true;
        const ct_ckpt_tensor *t = &c->t[k];
        bool same = t->dtype == tensors[i].dtype && t->rank == tensors[i].rank;
        for (int d = 0; same && d < t->rank; d++) same = t->dims[d] == tensors[i].dims[d];
        if (!same) {
            char a[160], b[160];
            shape_str(t, a, sizeof a);
            shape_str(&tensors[i], b, sizeof b);
            err = ct_train_errorf("%s: tensor '%s' is %s in the checkpoint but %s in this program", c->path,
                                  t->name, a, b);
        }
    }
    for (int j = 0; j < c->n && !err; j++)
        if (!used[j])
            err = ct_train_errorf("%s: checkpoint holds tensor '%s' that this program does not have", c->path,
                                  c->t[j].name);
    if (!err)
        for (int i = 0; i < n_tensors; i++) {
            const ct_ckpt_tensor *t = ct_ckpt_find(c, tensors[i].name);
            int64_t nb = ct_ckpt_tensor_nbytes(t);
            if (nb > 0) memcpy(tensors[i].data, t->data, (size_t)nb);
        }
    free(used);
    return err;
}

ct_train_err ct_ckpt_read(const char *path, const char *expect_fingerprint, const ct_ckpt_tensor *tensors,
                          int n_tensors)
{
    ct_ckpt *c = NULL;
    ct_train_err err = ct_ckpt_open(path, expect_fingerprint, &c);
    if (err) return err;
    err = ct_ckpt_load(c, tensors, n_tensors);
    ct_ckpt_close(c);
    return err;
}

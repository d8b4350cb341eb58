/* folder.c — directory scanning with torchvision ImageFolder's ordering:
 * byte-wise sorted class names, sorted(os.walk) directory order, sorted
 * file names, the same extension list. */
#include "folder.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char **v;
    int64_t n, cap;
} str_list;

static int str_list_push(str_list *l, char *s)
{
    if (!s) return -1;
    if (l->n == l->cap) {
        int64_t cap = l->cap ? l->cap * 2 : 16;
        char **v = realloc(l->v, sizeof(char *) * cap);
        if (!v) {
            free(s);
            return -1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

static void str_list_free(str_list *l)
{
    for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s) return NULL;
    memcpy(s, a, la);
    s[la] = '/';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

int ct_folder_is_image_name(const char *name)
{
    static const char *exts[] = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
    size_t n = strlen(name);
    for (size_t e = 0; e < sizeof exts / sizeof exts[0]; e++) {
        size_t m = strlen(exts[e]);
        if (n < m) continue;
        size_t k;
        for (k = 0; k < m; k++)
            if (tolower((unsigned char)name[n - m + k]) != exts[e][k]) break;
        if (k == m) return 1;
    }
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Subdirectory and file names of dir (following links), unsorted. */
static ct_data_err list_dir(const char *dir, str_list *dirs, str_list *files)
{
    DIR *d = opendir(dir);
    if (!d) return ct_data_errorf("%s: cannot open folder: %s", dir, strerror(errno));
    struct dirent *e;
    ct_data_err err = NULL;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *full = join(dir, e->d_name);
        if (!full) goto oom;
        int isd = is_dir(full);
        free(full);
        if (isd) {
            if (dirs && str_list_push(dirs, strdup(e->d_name))) goto oom;
        } else if (files && str_list_push(files, strdup(e->d_name))) {
            goto oom;
        }
    }
    closedir(d);
    return NULL;
oom:
    err = ct_data_errorf("%s: out of memory listing the folder", dir);
    closedir(d);
    return err;
}

/* All directories under top (itself included), as full paths. Links are
 * followed, but a directory that is its own ancestor (a link loop) is not
 * entered again. */
typedef struct {
    dev_t dev;
    ino_t ino;
} dir_id;

static ct_data_err walk_dirs(const char *top, str_list *out, dir_id *stack, int depth)
{
    if (depth >= 64) return ct_data_errorf("%s: folders nested more than 64 deep", top);
    struct stat st;
    if (stat(top, &st) != 0) return ct_data_errorf("%s: cannot stat: %s", top, strerror(errno));
    for (int k = 0; k < depth; k++)
        if (stack[k].dev == st.st_dev && stack[k].ino == st.st_ino) return NULL; /* a loop */
    stack[depth] = (dir_id){st.st_dev, st.st_ino};
    if (str_list_push(out, strdup(top))) return ct_data_errorf("%s: out of memory", top);
    str_list sub = {0};
    ct_data_err err = list_dir(top, &sub, NULL);
    for (int64_t i = 0; !err && i < sub.n; i++) {
        char *p = join(top, sub.v[i]);
        if (!p) {
            err = ct_data_errorf("%s: out of memory", top);
            break;
        }
        err = walk_dirs(p, out, stack, depth + 1);
        free(p);
    }
    str_list_free(&sub);
    return err;
}

/* Image files under top in sorted(os.walk(top)) order, appended to paths. */
static ct_data_err collect_images(const char *top, str_list *paths)
{
    str_list dirs = {0};
    dir_id stack[64];
    ct_data_err err = walk_dirs(top, &dirs, stack, 0);
    if (err) goto done;
    if (dirs.n > 1) qsort(dirs.v, (size_t)dirs.n, sizeof(char *), cmp_str);
    for (int64_t i = 0; i < dirs.n && !err; i++) {
        str_list files = {0};
        err = list_dir(dirs.v[i], NULL, &files);
        if (!err) {
            if (files.n > 1) qsort(files.v, (size_t)files.n, sizeof(char *), cmp_str);
            for (int64_t k = 0; k < files.n; k++) {
                if (!ct_folder_is_image_name(files.v[k])) continue;
                if (str_list_push(paths, join(dirs.v[i], files.v[k]))) {
                    err = ct_data_errorf("%s: out of memory", top);
                    break;
                }
            }
        }
        str_list_free(&files);
    }
done:
    str_list_free(&dirs);
    return err;
}

void ct_folder_free(ct_folder *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_classes; i++) free(f->classes[i]);
    free(f->classes);
    for (int64_t i = 0; i < f->n; i++) free(f->paths[i]);
    free(f->paths);
    free(f->labels);
    memset(f, 0, sizeof *f);
}

ct_data_err ct_folder_open(const char *root, ct_folder_mode mode, ct_folder *out)
{
    memset(out, 0, sizeof *out);
    if (!is_dir(root)) return ct_data_errorf("%s: not a folder", root);
    str_list classes = {0}, paths = {0};
    int64_t *labels = NULL;
    ct_data_err err = list_dir(root, &classes, NULL);
    if (err) goto fail;
    if (classes.n > 1) qsort(classes.v, (size_t)classes.n, sizeof(char *), cmp_str);
    if (mode == CT_FOLDER_AUTO) mode = classes.n > 0 ? CT_FOLDER_CLASSES : CT_FOLDER_FLAT;
    if (mode == CT_FOLDER_CLASSES) {
        if (classes.n == 0) {
            err = ct_data_errorf("%s: no class folders (expected one subfolder per class)", root);
            goto fail;
        }
        if (classes.n > (1 << 30)) {
            err = ct_data_errorf("%s: too many classes", root);
            goto fail;
        }
        size_t cap = 0;
        for (int64_t c = 0; c < classes.n; c++) {
            char *dir = join(root, classes.v[c]);
            if (!dir) {
                err = ct_data_errorf("%s: out of memory", root);
                goto fail;
            }
            int64_t before = paths.n;
            err = collect_images(dir, &paths);
            free(dir);
            if (err) goto fail;
            if (paths.n == before) {
                err = ct_data_errorf("%s: class folder '%s' has no images (.jpg .jpeg .png ...)", root,
                                     classes.v[c]);
                goto fail;
            }
            if ((size_t)paths.n > cap) {
                cap = (size_t)paths.cap;
                int64_t *nl = realloc(labels, sizeof(int64_t) * cap);
                if (!nl) {
                    err = ct_data_errorf("%s: out of memory", root);
                    goto fail;
                }
                labels = nl;
            }
            for (int64_t k = before; k < paths.n; k++) labels[k] = c;
        }
    } else {
        if ((err = collect_images(root, &paths))) goto fail;
        if (paths.n == 0) {
            err = ct_data_errorf("%s: no images in the folder (.jpg .jpeg .png ...)", root);
            goto fail;
        }
        labels = malloc(sizeof(int64_t) * (size_t)paths.n);
        if (!labels) {
            err = ct_data_errorf("%s: out of memory", root);
            goto fail;
        }
        for (int64_t k = 0; k < paths.n; k++) labels[k] = -1;
        str_list_free(&classes);
    }
    out->n_classes = (int)classes.n;
    out->classes = classes.v;
    out->n = paths.n;
    out->paths = paths.v;
    out->labels = labels;
    return NULL;
fail:
    str_list_free(&classes);
    str_list_free(&paths);
    free(labels);
    return err;
}

/* folder.h — image folders: one subfolder per class with labels from the
 * sorted folder names and files in torchvision ImageFolder's order, or a
 * flat folder of unlabelled images. */
#ifndef CT_DATA_FOLDER_H
#define CT_DATA_FOLDER_H

#include <stdint.h>

#include "data.h"

typedef enum {
    CT_FOLDER_AUTO = 0, /* classes when root has a subfolder, else flat */
    CT_FOLDER_CLASSES,
    CT_FOLDER_FLAT,
} ct_folder_mode;

typedef struct {
    int n_classes;    /* 0 for a flat folder */
    char **classes;   /* (n_classes) sorted names */
    int64_t n;
    char **paths;     /* (n) full paths */
    int64_t *labels;  /* (n) class index, -1 in a flat folder */
} ct_folder;

/* Files count when their lower-cased name ends in one of torchvision's
 * IMG_EXTENSIONS (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp); only
 * JPEG and PNG decode, the others are reported as bad images. Folders are
 * walked recursively (following links), directories in sorted order of
 * their full path, files sorted within each, as sorted(os.walk(...)). */
ct_data_err ct_folder_open(const char *root, ct_folder_mode mode, ct_folder *out);
void ct_folder_free(ct_folder *f);

int ct_folder_is_image_name(const char *name);

#endif

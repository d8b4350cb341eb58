/* trainer.h — shared by the trainer's two modes (runtime/trainer_main.c:
 * supervised, runtime/trainer_method.c: contrastive methods): the recipe
 * file trainer.txt that 'contra compile' writes beside model.so, as
 * "key value" lines. */
#ifndef CT_TRAINER_H
#define CT_TRAINER_H

#include "status.h"

#define TRAINER_META_MAX 128

typedef struct {
    int n;
    char key[TRAINER_META_MAX][64];
    char val[TRAINER_META_MAX][256];
} trainer_meta;

/* Read DIR/trainer.txt. */
ct_status trainer_meta_read(const char *dir, trainer_meta *m);
/* The first value of key, or def. */
const char *trainer_meta_get(const trainer_meta *m, const char *key, const char *def);
/* mkdir -p. */
ct_status trainer_mkdirs(const char *path);

/* The contrastive-method trainer (trainer.txt "kind method"). */
int trainer_method_main(int argc, char **argv, const char *dir, const trainer_meta *m);

#endif

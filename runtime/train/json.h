/* json.h — a small strict JSON reader and string escaper for the trainer
 * runtime: the safetensors header of checkpoints and metrics.jsonl lines.
 * Values form a malloc'd tree freed by ct_json_free. */
#ifndef CT_TRAIN_JSON_H
#define CT_TRAIN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    CT_JSON_NULL,
    CT_JSON_BOOL,
    CT_JSON_NUMBER,
    CT_JSON_STRING,
    CT_JSON_ARRAY,
    CT_JSON_OBJECT,
} ct_json_type;

typedef struct ct_json ct_json;
struct ct_json {
    ct_json_type type;
    bool b;
    double num;
    bool is_int;     /* the number was written as an integer that fits int64 */
    int64_t i;       /* its value when is_int */
    char *str;       /* STRING: NUL-terminated (embedded NULs rejected) */
    int n;           /* ARRAY/OBJECT: element count */
    ct_json **items; /* ARRAY/OBJECT: elements */
    char **keys;     /* OBJECT: keys, in file order */
};

/* Parse exactly one JSON value from buf[0..len) (surrounding whitespace
 * allowed). On error returns NULL and writes a message with the byte offset
 * into err (err_n bytes). Nesting deeper than 64 is refused. */
ct_json *ct_json_parse(const char *buf, size_t len, char *err, size_t err_n);
void ct_json_free(ct_json *v);
/* Member of an object, NULL if absent or v is not an object. */
const ct_json *ct_json_get(const ct_json *v, const char *key);

/* Write s as a JSON string literal (with quotes) to f. */
void ct_json_write_string(FILE *f, const char *s);

#endif

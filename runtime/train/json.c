/* json.c — recursive-descent JSON reader (RFC 8259, strict: no trailing
 * commas, no comments, duplicate object keys refused) and string escaping. */
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *p, *end, *start;
    char *err;
    size_t err_n;
    int depth;
} parser;

static void perr(parser *ps, const char *fmt, ...)
{
    if (ps->err && ps->err[0]) return; /* keep the first error */
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ps->err && ps->err_n) snprintf(ps->err, ps->err_n, "%s at byte %zu", msg, (size_t)(ps->p - ps->start));
}

static void *xcalloc(size_t n, size_t s)
{
    void *p = calloc(n ? n : 1, s);
    if (!p) abort();
    return p;
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static ct_json *parse_value(parser *ps);

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0) return false;
        v = v * 16 + (unsigned)h;
    }
    ps->p += 4;
    *out = v;
    return true;
}

static void put_utf8(char *buf, size_t *n, unsigned cp)
{
    if (cp < 0x80) {
        buf[(*n)++] = (char)cp;
    } else if (cp < 0x800) {
        buf[(*n)++] = (char)(0xC0 | (cp >> 6));
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        buf[(*n)++] = (char)(0xE0 | (cp >> 12));
        buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        buf[(*n)++] = (char)(0xF0 | (cp >> 18));
        buf[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        buf[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        buf[(*n)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* At the opening quote; returns a malloc'd NUL-terminated string. */
static char *parse_string(parser *ps)
{
    ps->p++; /* " */
    const char *s = ps->p;
    /* the decoded string is never longer than the raw text */
    const char *q = s;
    while (q < ps->end && *q != '"') q += (*q == '\\' && q + 1 < ps->end) ? 2 : 1;
    if (q >= ps->end) {
        perr(ps, "unterminated string");
        return NULL;
    }
    char *buf = xcalloc((size_t)(q - s) + 4, 1);
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) {
            perr(ps, "control character in string");
            goto fail;
        }
        if (c != '\\') {
            buf[n++] = (char)c;
            ps->p++;
            continue;
        }
        ps->p++;
        if (ps->p >= ps->end) break;
        char e = *ps->p++;
        switch (e) {
        case '"': buf[n++] = '"'; break;
        case '\\': buf[n++] = '\\'; break;
        case '/': buf[n++] = '/'; break;
        case 'b': buf[n++] = '\b'; break;
        case 'f': buf[n++] = '\f'; break;
        case 'n': buf[n++] = '\n'; break;
        case 'r': buf[n++] = '\r'; break;
        case 't': buf[n++] = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(ps, &cp)) {
                perr(ps, "bad \\u escape");
                goto fail;
            }
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    perr(ps, "unpaired surrogate");
                    goto fail;
                }
                ps->p += 2;
                if (!read_hex4(ps, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                    perr(ps, "bad surrogate pair");
                    goto fail;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                perr(ps, "unpaired surrogate");
                goto fail;
            }
            if (cp == 0) {
                perr(ps, "NUL character in string");
                goto fail;
            }
            put_utf8(buf, &n, cp);
            break;
        }
        default:
            perr(ps, "bad escape '\\%c'", e);
            goto fail;
        }
    }
    if (ps->p >= ps->end) {
        perr(ps, "unterminated string");
        goto fail;
    }
    ps->p++; /* " */
    buf[n] = 0;
    return buf;
fail:
    free(buf);
    return NULL;
}

static ct_json *parse_number(parser *ps)
{
    const char *s = ps->p;
    const char *q = s;
    bool is_int = true;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || !(*q >= '0' && *q <= '9')) {
        perr(ps, "bad number");
        return NULL;
    }
    if (*q == '0') {
        q++;
    } else {
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && *q == '.') {
        is_int = false;
        q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) {
            perr(ps, "bad number");
            return NULL;
        }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        is_int = false;
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || !(*q >= '0' && *q <= '9')) {
            perr(ps, "bad number");
            return NULL;
        }
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char tmp[64];
    size_t len = (size_t)(q - s);
    if (len >= sizeof tmp) {
        perr(ps, "number too long");
        return NULL;
    }
    memcpy(tmp, s, len);
    tmp[len] = 0;
    ct_json *v = xcalloc(1, sizeof *v);
    v->type = CT_JSON_NUMBER;
    v->num = strtod(tmp, NULL);
    if (is_int) {
        errno = 0;
        long long ll = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->is_int = true;
            v->i = ll;
        }
    }
    ps->p = q;
    return v;
}

static ct_json *parse_container(parser *ps, bool object)
{
    ps->p++; /* [ or { */
    if (++ps->depth > 64) {
        perr(ps, "nesting too deep");
        return NULL;
    }
    ct_json *v = xcalloc(1, sizeof *v);
    v->type = object ? CT_JSON_OBJECT : CT_JSON_ARRAY;
    int cap = 0;
    char close = object ? '}' : ']';
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return v;
    }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"') {
                perr(ps, "expected a string key");
                goto fail;
            }
            key = parse_string(ps);
            if (!key) goto fail;
            for (int i = 0; i < v->n; i++)
                if (strcmp(v->keys[i], key) == 0) {
                    perr(ps, "duplicate key \"%.60s\"", key);
                    free(key);
                    goto fail;
                }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                perr(ps, "expected ':'");
                free(key);
                goto fail;
            }
            ps->p++;
        }
        ct_json *item = parse_value(ps);
        if (!item) {
            free(key);
            goto fail;
        }
        if (v->n == cap) {
            cap = cap ? cap * 2 : 8;
            v->items = realloc(v->items, sizeof *v->items * (size_t)cap);
            if (object) v->keys = realloc(v->keys, sizeof *v->keys * (size_t)cap);
            if (!v->items || (object && !v->keys)) abort();
        }
        v->items[v->n] = item;
        if (object) v->keys[v->n] = key;
        v->n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        perr(ps, object ? "expected ',' or '}'" : "expected ',' or ']'");
        goto fail;
    }
    ps->depth--;
    return v;
fail:
    ct_json_free(v);
    return NULL;
}

static bool match_word(parser *ps, const char *w)
{
    size_t n = strlen(w);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0) return false;
    ps->p += n;
    return true;
}

static ct_json *parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        perr(ps, "unexpected end of input");
        return NULL;
    }
    char c = *ps->p;
    if (c == '{') return parse_container(ps, true);
    if (c == '[') return parse_container(ps, false);
    if (c == '"') {
        char *s = parse_string(ps);
        if (!s) return NULL;
        ct_json *v = xcalloc(1, sizeof *v);
        v->type = CT_JSON_STRING;
        v->str = s;
        return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps);
    ct_json *v = NULL;
    if (match_word(ps, "true") || match_word(ps, "false")) {
        v = xcalloc(1, sizeof *v);
        v->type = CT_JSON_BOOL;
        v->b = ps->p[-1] == 'e' && ps->p[-2] == 'u';
        return v;
    }
    if (match_word(ps, "null")) {
        v = xcalloc(1, sizeof *v);
        v->type = CT_JSON_NULL;
        return v;
    }
    perr(ps, "unexpected character '%c'", (c >= 0x20 && c < 0x7f) ? c : '?');
    return NULL;
}

ct_json *ct_json_parse(const char *buf, size_t len, char *err, size_t err_n)
{
    parser ps = {buf, buf + len, buf, err, err_n, 0};
    if (err && err_n) err[0] = 0;
    ct_json *v = parse_value(&ps);
    if (!v) {
        if (err && err_n && !err[0]) snprintf(err, err_n, "malformed JSON");
        return NULL;
    }
    skip_ws(&ps);
    if (ps.p != ps.end) {
        perr(&ps, "trailing characters after the JSON value");
        ct_json_free(v);
        return NULL;
    }
    return v;
}

void ct_json_free(ct_json *v)
{
    if (!v) return;
    for (int i = 0; i < v->n; i++) {
        ct_json_free(v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->str);
    free(v);
}

const ct_json *ct_json_get(const ct_json *v, const char *key)
{
    if (!v || v->type != CT_JSON_OBJECT) return NULL;
    for (int i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], key) == 0) return v->items[i];
    return NULL;
}

void ct_json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

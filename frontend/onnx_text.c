/* onnx_text.c — the ONNX textual syntax (onnx/docs/Syntax.md): a hand-written
 * lexer and recursive-descent parser building the same raw IR as the protobuf
 * importer (then normalised, sorted and verified), and the printer for it.
 *
 * The grammar is the one onnx.parser (ONNX 1.12) accepts:
 *
 *   model      := [ '<' header-entry (',' header-entry)* '>' ] graph
 *   header     := ir_version: INT | opset_import: '[' STR ':' INT, ... ']'
 *               | producer_name: STR | producer_version: STR | domain: STR
 *               | model_version: INT | doc_string: STR
 *               | metadata_props: '[' STR ':' STR, ... ']'
 *   graph      := NAME '(' input, ... ')' '=>' '(' output, ... ')'
 *                 [ '<' (type NAME ['=' tensor-data] | NAME), ... '>' ]
 *                 '{' node* '}'
 *   input      := type NAME [ '=' tensor-data ]      (with a value: a parameter)
 *   type       := elem-type [ '[' dim, ... ']' ]     (no brackets: a scalar)
 *   node       := [ '[' NAME ']' ] outs '=' [domain '.'] OpType
 *                 [ '<' attr, ... '>' ] '(' ins ')'   (attributes may also follow the inputs)
 *   attr       := NAME [ ':' attr-type ] '=' value | '[' value, ... ']'
 *   value      := INT | FLOAT | STR | type [NAME] ['='] tensor-data
 *   tensor-data:= '{' number, ... '}'
 *
 * Comments run from '#' to the end of the line.  A dimension written as an
 * identifier is the symbolic batch CT_DIM_BATCH (on dim 0 of inputs only;
 * inferred shapes of outputs and value infos may carry it elsewhere).
 *
 * Extensions to the ONNX 1.12 grammar (all backward compatible):
 *   - quoted names: wherever a name is expected (value, node, graph names) a
 *     string literal "layer1.0.conv1.weight" may stand for it, as newer ONNX
 *     releases allow; "" in an input or output list is an omitted optional
 *     value, like an empty slot (Op(x, , y)); the printer writes empty slots
 *     and "" only in the first slot, where ONNX 1.12 cannot express one.  The
 *     printer quotes every name that is not a plain identifier or that is a
 *     type name or keyword.
 *   - string escapes: \" \\ \n \t \r and \xHH inside string literals.
 *   - node names: '[' NAME ']' before a node's outputs names the node.  A
 *     node without one is named "<OpType>_<index>", index being its position
 *     in the file; the printer leaves out names of that form.
 *   - floats: inf, -inf, nan and -nan are accepted wherever a float is (NaN
 *     payloads are not kept: every NaN reads back as the quiet NaN); an integer
 *     literal is accepted for a float attribute the op schema declares.
 *   - empty lists as attribute values when the type is given (pads: ints = [])
 *     or the op schema declares it.
 *   - value kinds: metadata_props entries "contra.kind.<value name>" with the
 *     value "state", "const", "param" or "param-frozen" set the kind of an
 *     initializer after normalisation (ONNX itself has no place for them);
 *     the printer writes one for every STATE and CONST value, every frozen
 *     parameter, and every parameter that normalisation could take for
 *     something else (read by an op other than the plain weight readers).
 *
 * The printer writes every initializer with all its data (floats as %.9g, or
 * %.6g when that reads back exactly for small tensors; doubles %.17g), the
 * known types of intermediates as value infos, and nodes in graph order, so
 * that printing, parsing and printing again gives the same text and the same
 * graph.  Initializers are ordered by first use, which depends only on the
 * graph's structure.
 */
#include "fileio.h"
#include "frontend.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KIND_PREFIX "contra.kind."

/* ================================================================ half floats */

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t exp = (x >> 23) & 0xffu;
    uint32_t man = x & 0x7fffffu;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) {
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t h = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++; /* may carry into the exponent: fine */
    return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t x;
    if (exp == 0) {
        if (!man) {
            x = sign;
        } else {
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400u));
            x = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        x = sign | 0x7f800000u | (man << 13);
    } else {
        x = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu)) return (uint16_t)((x >> 16) | 0x40u);
    uint32_t lsb = (x >> 16) & 1u;
    x += 0x7fffu + lsb;
    return (uint16_t)(x >> 16);
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ================================================================ names */

static bool is_ident_start(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_ident_char(int c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

/* Identifiers that the grammar reads as something else where a name could be. */
static const char *const reserved_words[] = {
    "float", "float16", "bfloat16", "double", "int64", "int32", "int16", "int8", "uint64", "uint32",
    "uint16", "uint8", "bool", "string", "complex64", "complex128", "float32", "float64", "seq", "map",
    "optional", "sparse_tensor", "inf", "nan", "infinity", "true", "false"};

static bool name_is_plain(const char *s)
{
    if (!s || !is_ident_start((unsigned char)s[0])) return false;
    for (const char *p = s; *p; p++)
        if (!is_ident_char((unsigned char)*p)) return false;
    for (size_t i = 0; i < sizeof reserved_words / sizeof reserved_words[0]; i++)
        if (!strcmp(s, reserved_words[i])) return false;
    return true;
}

/* ONNX type names the text syntax knows, and whether contra supports them. */
static bool type_name_known(const char *s)
{
    for (int i = 0; i < 18; i++) /* the element-type entries of reserved_words */
        if (!strcmp(s, reserved_words[i])) return true;
    return false;
}

/* ================================================================ name map */

typedef struct {
    ct_value **slots;
    size_t cap, n;
} name_map;

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static ct_value *map_find(const name_map *m, const char *name)
{
    if (!m->cap) return NULL;
    size_t i = name_hash(name) & (m->cap - 1);
    while (m->slots[i]) {
        if (!strcmp(m->slots[i]->name, name)) return m->slots[i];
        i = (i + 1) & (m->cap - 1);
    }
    return NULL;
}

static void map_put(name_map *m, ct_value *v)
{
    if (2 * (m->n + 1) > m->cap) {
        size_t nc = m->cap ? 2 * m->cap : 64;
        ct_value **ns = calloc(nc, sizeof *ns);
        if (!ns) abort();
        for (size_t k = 0; k < m->cap; k++) {
            ct_value *w = m->slots[k];
            if (!w) continue;
            size_t i = name_hash(w->name) & (nc - 1);
            while (ns[i]) i = (i + 1) & (nc - 1);
            ns[i] = w;
        }
        free(m->slots);
        m->slots = ns;
        m->cap = nc;
    }
    size_t i = name_hash(v->name) & (m->cap - 1);
    while (m->slots[i]) i = (i + 1) & (m->cap - 1);
    m->slots[i] = v;
    m->n++;
}

/* ================================================================ lexer */

typedef enum { TK_EOF, TK_IDENT, TK_STRING, TK_INT, TK_FLOAT, TK_PUNCT } tok_kind;

typedef struct {
    tok_kind kind;
    const char *p; /* start in the source */
    size_t len;
    int line, col;
    char ch;       /* TK_PUNCT */
    int64_t i;     /* TK_INT */
    double f;      /* TK_FLOAT (and TK_INT as a double) */
    char *s;       /* TK_IDENT, TK_STRING: decoded, arena-owned */
} token;

/* A parsed declaration: a typed (or untyped) name with optional data. */
typedef struct {
    const char *name;
    bool typed, shape_known, has_data;
    ct_dtype dtype;
    ct_shape shape;
    void *data;
    int line, col;
} decl;

typedef struct {
    const char *domain, *op_type, *name;
    bool named;
    int line, col;
    int n_in, n_out, n_attr;
    const char **ins, **outs;
    ct_attr *attrs;
    ct_attr_type *declared; /* per attribute: the ': type' written, or UNDEFINED */
    int *attr_line, *attr_col;
} raw_node;

typedef struct {
    const char *key, *value;
    int line, col;
} meta_entry;

typedef struct {
    const char *label;
    const char *src, *cur, *end;
    int line, col;
    token tok;
    ct_graph *g;
    ct_status err;
    const char *batch_name; /* the identifier used for the symbolic batch */

    decl *inputs, *outputs, *infos;
    int n_inputs, n_outputs, n_infos, cap_inputs, cap_outputs, cap_infos;
    raw_node *nodes;
    int n_nodes, cap_nodes;
    meta_entry *meta;
    int n_meta, cap_meta;
    meta_entry *opsets; /* opset imports: key = domain, value unused, line = version */
    int n_opsets, cap_opsets;
} parser;

#define GROW(arr, n, cap)                                                                          \
    do {                                                                                           \
        if ((n) == (cap)) {                                                                        \
            int nc_ = (cap) ? 2 * (cap) : 8;                                                       \
            void *p_ = realloc((arr), sizeof(*(arr)) * (size_t)nc_);                               \
            if (!p_) abort();                                                                      \
            (arr) = p_;                                                                            \
            (cap) = nc_;                                                                           \
        }                                                                                          \
    } while (0)

static void tok_describe(const token *t, char *buf, size_t n)
{
    switch (t->kind) {
    case TK_EOF: snprintf(buf, n, "end of input"); return;
    case TK_PUNCT:
        if (t->ch >= 33 && t->ch < 127)
            snprintf(buf, n, "'%c'", t->ch);
        else
            snprintf(buf, n, "byte 0x%02x", (unsigned char)t->ch);
        return;
    default: {
        size_t len = t->len > 40 ? 40 : t->len;
        size_t k = 0;
        buf[k++] = '\'';
        for (size_t i = 0; i < len && k + 8 < n; i++) {
            unsigned char c = (unsigned char)t->p[i];
            if (c >= 32 && c < 127)
                buf[k++] = (char)c;
            else
                k += (size_t)snprintf(buf + k, n - k, "\\x%02x", c);
        }
        if (t->len > len && k + 4 < n) {
            memcpy(buf + k, "...", 3);
            k += 3;
        }
        if (k + 2 < n) buf[k++] = '\'';
        buf[k] = 0;
    }
    }
}

/* Record the first error, at token t (NULL: the current token). Returns false. */
static bool CT_PRINTF(3, 4) perr(parser *p, const token *t, const char *fmt, ...)
{
    if (p->err) return false;
    if (!t) t = &p->tok;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    p->err = ct_errorf("%s:%d:%d: %s", p->label, t->line, t->col, what);
    return false;
}

/* Error "expected X, found <token>". */
static bool expected(parser *p, const char *what)
{
    char found[128];
    tok_describe(&p->tok, found, sizeof found);
    return perr(p, NULL, "expected %s, found %s", what, found);
}

static void adv(parser *p, size_t n)
{
    for (size_t i = 0; i < n && p->cur < p->end; i++) {
        if (*p->cur == '\n') {
            p->line++;
            p->col = 1;
        } else {
            p->col++;
        }
        p->cur++;
    }
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool next_raw(parser *p);

/* Scan the next token into p->tok. False on a lexical error, which leaves an
 * end-of-input token behind, so that no caller can read a half-made one. */
static bool next(parser *p)
{
    if (p->err || !next_raw(p)) {
        p->tok.kind = TK_EOF;
        p->tok.s = NULL;
        return false;
    }
    return true;
}

static bool next_raw(parser *p)
{
    token *t = &p->tok;
    for (;;) {
        while (p->cur < p->end && (*p->cur == ' ' || *p->cur == '\t' || *p->cur == '\n' || *p->cur == '\r'))
            adv(p, 1);
        if (p->cur < p->end && *p->cur == '#') {
            while (p->cur < p->end && *p->cur != '\n') adv(p, 1);
            continue;
        }
        break;
    }
    memset(t, 0, sizeof *t);
    t->p = p->cur;
    t->line = p->line;
    t->col = p->col;
    if (p->cur >= p->end) {
        t->kind = TK_EOF;
        return true;
    }
    unsigned char c = (unsigned char)*p->cur;
    if (is_ident_start(c)) {
        const char *s = p->cur;
        while (p->cur < p->end && is_ident_char((unsigned char)*p->cur)) adv(p, 1);
        t->kind = TK_IDENT;
        t->len = (size_t)(p->cur - s);
        t->s = ct_arena_strndup(&p->g->arena, s, t->len);
        return true;
    }
    if (c == '"') {
        adv(p, 1);
        size_t cap = 0;
        while (p->cur + cap < p->end && p->cur[cap] != '"') {
            if (p->cur[cap] == '\\' && p->cur + cap + 1 < p->end) cap++;
            cap++;
        }
        if (p->cur + cap >= p->end) {
            t->kind = TK_STRING;
            t->len = (size_t)(p->end - t->p);
            return perr(p, t, "unterminated string");
        }
        char *out = ct_arena_alloc(&p->g->arena, cap + 1);
        size_t k = 0;
        while (*p->cur != '"') {
            char ch = *p->cur;
            if (ch == '\\') {
                int line = p->line, col = p->col;
                adv(p, 1);
                char e = *p->cur;
                adv(p, 1);
                switch (e) {
                case 'n': out[k++] = '\n'; break;
                case 't': out[k++] = '\t'; break;
                case 'r': out[k++] = '\r'; break;
                case '\\': out[k++] = '\\'; break;
                case '"': out[k++] = '"'; break;
                case 'x': {
                    int h1 = p->cur < p->end ? hexval((unsigned char)p->cur[0]) : -1;
                    int h2 = p->cur + 1 < p->end ? hexval((unsigned char)p->cur[1]) : -1;
                    if (h1 < 0 || h2 < 0 || (h1 == 0 && h2 == 0)) {
                        token at = *t;
                        at.line = line;
                        at.col = col;
                        return perr(p, &at, "bad \\x escape in a string (two hex digits, not 00)");
                    }
                    out[k++] = (char)(h1 * 16 + h2);
                    adv(p, 2);
                    break;
                }
                default: {
                    token at = *t;
                    at.line = line;
                    at.col = col;
                    return perr(p, &at, "unknown escape in a string");
                }
                }
                continue;
            }
            if (ch == 0) return perr(p, t, "NUL byte inside a string");
            out[k++] = ch;
            adv(p, 1);
        }
        out[k] = 0;
        adv(p, 1); /* closing quote */
        t->kind = TK_STRING;
        t->s = out;
        t->len = (size_t)(p->cur - t->p);
        return true;
    }
    if ((c >= '0' && c <= '9') ||
        ((c == '-' || c == '+') && p->cur + 1 < p->end && p->cur[1] >= '0' && p->cur[1] <= '9')) {
        const char *s = p->cur;
        size_t n = 0;
        bool is_float = false;
        if (s[n] == '-' || s[n] == '+') n++;
        while (s + n < p->end && s[n] >= '0' && s[n] <= '9') n++;
        if (s + n < p->end && s[n] == '.') {
            is_float = true;
            n++;
            while (s + n < p->end && s[n] >= '0' && s[n] <= '9') n++;
        }
        if (s + n < p->end && (s[n] == 'e' || s[n] == 'E')) {
            size_t m = n + 1;
            if (s + m < p->end && (s[m] == '+' || s[m] == '-')) m++;
            if (s + m < p->end && s[m] >= '0' && s[m] <= '9') {
                while (s + m < p->end && s[m] >= '0' && s[m] <= '9') m++;
                n = m;
                is_float = true;
            }
        }
        char buf[64];
        t->len = n;
        adv(p, n);
        if (n >= sizeof buf) return perr(p, t, "number too long");
        memcpy(buf, s, n);
        buf[n] = 0;
        errno = 0;
        if (is_float) {
            t->kind = TK_FLOAT;
            t->f = strtod(buf, NULL);
        } else {
            t->kind = TK_INT;
            t->i = strtoll(buf, NULL, 10);
            if (errno == ERANGE) return perr(p, t, "integer %s does not fit in 64 bits", buf);
            t->f = strtod(buf, NULL); /* keeps the sign of -0 */
        }
        if (p->cur < p->end && is_ident_char((unsigned char)*p->cur))
            return perr(p, t, "malformed number");
        return true;
    }
    t->kind = TK_PUNCT;
    t->ch = (char)c;
    t->len = 1;
    adv(p, 1);
    return true;
}

static bool is_punct(const parser *p, char c) { return p->tok.kind == TK_PUNCT && p->tok.ch == c; }

/* Consume punctuation c if it is next. */
static bool accept(parser *p, char c)
{
    if (!is_punct(p, c)) return false;
    next(p);
    return true;
}

static bool expect(parser *p, char c, const char *ctx)
{
    if (p->err) return false;
    if (accept(p, c)) return !p->err;
    char what[128];
    snprintf(what, sizeof what, "'%c'%s%s", c, ctx ? " " : "", ctx ? ctx : "");
    return expected(p, what);
}

static bool is_name_tok(const parser *p) { return p->tok.kind == TK_IDENT || p->tok.kind == TK_STRING; }

/* A name: an identifier or a quoted string. */
static bool parse_name(parser *p, const char **out, const char *what)
{
    if (p->err) return false;
    if (!is_name_tok(p)) return expected(p, what);
    *out = p->tok.s;
    next(p);
    return !p->err;
}

/* ================================================================ numbers */

/* A number as a double: INT, FLOAT, [-]inf, nan. *is_int tells which literal. */
static bool parse_number(parser *p, double *out, int64_t *iout, bool *is_int)
{
    if (p->err) return false;
    token start = p->tok;
    bool neg = false;
    if (is_punct(p, '-') || is_punct(p, '+')) {
        neg = p->tok.ch == '-';
        next(p);
        if (p->err) return false;
        if (p->tok.kind != TK_IDENT) return p->err ? false : (p->tok = start, expected(p, "a number"));
    }
    if (p->tok.kind == TK_INT || p->tok.kind == TK_FLOAT) {
        *is_int = p->tok.kind == TK_INT;
        *out = p->tok.f;
        if (iout) *iout = p->tok.i;
        next(p);
        return !p->err;
    }
    if (p->tok.kind == TK_IDENT &&
        (!strcmp(p->tok.s, "inf") || !strcmp(p->tok.s, "infinity") || !strcmp(p->tok.s, "nan"))) {
        *is_int = false;
        *out = p->tok.s[0] == 'n' ? (neg ? -NAN : NAN) : (neg ? -INFINITY : INFINITY);
        next(p);
        return !p->err;
    }
    return expected(p, "a number");
}

/* ================================================================ types */

static bool parse_dtype(parser *p, ct_dtype *out)
{
    if (p->err) return false;
    if (p->tok.kind != TK_IDENT) return expected(p, "an element type (float, int64, ...)");
    ct_dtype t = ct_dtype_from_name(p->tok.s);
    if (t == CT_DTYPE_UNDEFINED) {
        if (type_name_known(p->tok.s) || !strcmp(p->tok.s, "seq") || !strcmp(p->tok.s, "map") ||
            !strcmp(p->tok.s, "optional") || !strcmp(p->tok.s, "sparse_tensor"))
            return perr(p, NULL, "element type '%s' is not supported by contra", p->tok.s);
        return expected(p, "an element type (float, int64, ...)");
    }
    *out = t;
    next(p);
    return !p->err;
}

typedef enum { DIMS_INPUT, DIMS_INFERRED, DIMS_STATIC } dims_rule;

/* type := elem-type [ '[' dims ']' ]. *known false for '[]' or a '?' dim. */
static bool parse_type(parser *p, dims_rule rule, ct_dtype *dtype, ct_shape *shape, bool *known)
{
    if (!parse_dtype(p, dtype)) return false;
    memset(shape, 0, sizeof *shape);
    *known = true;
    if (!accept(p, '[')) return !p->err;
    if (accept(p, ']')) {
        if (rule != DIMS_INFERRED) return perr(p, NULL, "a tensor of unknown rank ('[]') is not supported here");
        *known = false;
        return !p->err;
    }
    for (;;) {
        if (p->err) return false;
        if (shape->rank >= CT_MAX_RANK) return perr(p, NULL, "more than %d dimensions", CT_MAX_RANK);
        int64_t d;
        if (p->tok.kind == TK_INT) {
            if (p->tok.i < 0) return perr(p, NULL, "negative dimension %" PRId64, p->tok.i);
            d = p->tok.i;
            next(p);
        } else if (is_name_tok(p)) {
            if (rule == DIMS_STATIC) return perr(p, NULL, "a tensor with data needs numeric dimensions");
            if (rule == DIMS_INPUT && shape->rank != 0)
                return perr(p, NULL, "symbolic dimension '%s' is only supported as the first (batch) dimension",
                            p->tok.s);
            if (p->batch_name && strcmp(p->batch_name, p->tok.s))
                return perr(p, NULL, "second symbolic dimension '%s' (the batch is already '%s'): only one is supported",
                            p->tok.s, p->batch_name);
            p->batch_name = p->tok.s;
            d = CT_DIM_BATCH;
            next(p);
        } else if (is_punct(p, '?')) {
            if (rule != DIMS_INFERRED) return perr(p, NULL, "unknown dimension '?' is not supported here");
            *known = false;
            d = 0;
            next(p);
        } else {
            return expected(p, "a dimension (integer or identifier)");
        }
        shape->dims[shape->rank++] = d;
        if (accept(p, ',')) continue;
        return expect(p, ']', "closing the dimensions");
    }
}

/* ================================================================ tensor data */

/* '{' values '}' for a tensor of the given dtype/shape, into arena memory. */
static bool parse_tensor_data(parser *p, ct_dtype dtype, const ct_shape *shape, void **out)
{
    token start = p->tok;
    if (!expect(p, '{', "opening tensor data")) return false;
    int64_t numel = ct_shape_numel(shape);
    if (numel < 0) return perr(p, &start, "tensor size overflows");
    size_t es = ct_dtype_size(dtype);
    size_t cap = 0, n = 0;
    unsigned char *buf = NULL;
    bool ok = true;
    if (!accept(p, '}')) {
        for (;;) {
            if (p->err) {
                ok = false;
                break;
            }
            if ((int64_t)n >= numel) {
                ok = perr(p, NULL, "more values than the %" PRId64 " the shape holds", numel);
                break;
            }
            double f = 0;
            int64_t iv = 0;
            bool is_int = false;
            token at = p->tok;
            if (dtype == CT_BOOL && p->tok.kind == TK_IDENT &&
                (!strcmp(p->tok.s, "true") || !strcmp(p->tok.s, "false"))) {
                iv = p->tok.s[0] == 't';
                is_int = true;
                next(p);
            } else if (!parse_number(p, &f, &iv, &is_int)) {
                ok = false;
                break;
            }
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                unsigned char *nb = realloc(buf, cap * es);
                if (!nb) abort();
                buf = nb;
            }
            unsigned char *dst = buf + n * es;
            if (!ct_dtype_is_float(dtype) && !is_int) {
                ok = perr(p, &at, "an integer is expected in %s data", ct_dtype_name(dtype));
                break;
            }
            switch (dtype) {
            case CT_F32: {
                float v = (float)f;
                memcpy(dst, &v, 4);
                break;
            }
            case CT_F64: memcpy(dst, &f, 8); break;
            case CT_F16: {
                uint16_t v = f32_to_f16((float)f);
                memcpy(dst, &v, 2);
                break;
            }
            case CT_BF16: {
                uint16_t v = f32_to_bf16((float)f);
                memcpy(dst, &v, 2);
                break;
            }
            case CT_I64: memcpy(dst, &iv, 8); break;
            case CT_I32: {
                if (iv < INT32_MIN || iv > INT32_MAX) ok = perr(p, &at, "%" PRId64 " does not fit in int32", iv);
                int32_t v = (int32_t)iv;
                memcpy(dst, &v, 4);
                break;
            }
            case CT_I8:
                if (iv < -128 || iv > 127) ok = perr(p, &at, "%" PRId64 " does not fit in int8", iv);
                *(int8_t *)dst = (int8_t)iv;
                break;
            case CT_U8:
                if (iv < 0 || iv > 255) ok = perr(p, &at, "%" PRId64 " does not fit in uint8", iv);
                *dst = (unsigned char)iv;
                break;
            case CT_BOOL:
                if (iv != 0 && iv != 1) ok = perr(p, &at, "bool values are 0 or 1, not %" PRId64, iv);
                *dst = (unsigned char)iv;
                break;
            default: ok = perr(p, &at, "unsupported element type"); break;
            }
            if (!ok) break;
            n++;
            if (accept(p, ',')) continue;
            ok = expect(p, '}', "closing the tensor data");
            break;
        }
    }
    if (ok && !p->err && (int64_t)n != numel) {
        char sb[128];
        ok = perr(p, &start, "tensor data has %zu values, its shape %s holds %" PRId64, n,
                  ct_shape_str(shape, sb, sizeof sb), numel);
    }
    if (ok && !p->err) {
        size_t nb = (size_t)numel * es;
        *out = ct_arena_alloc(&p->g->arena, nb ? nb : 1);
        if (nb) memcpy(*out, buf, nb);
    }
    free(buf);
    return ok && !p->err;
}

/* ================================================================ declarations */

/* [type] NAME ['=' data]; type required unless allow_untyped. */
static bool parse_decl(parser *p, decl *d, dims_rule rule, bool allow_untyped, bool allow_data)
{
    memset(d, 0, sizeof *d);
    d->line = p->tok.line;
    d->col = p->tok.col;
    if (p->tok.kind == TK_IDENT && type_name_known(p->tok.s)) {
        d->typed = true;
        if (!parse_type(p, rule, &d->dtype, &d->shape, &d->shape_known)) return false;
    } else if (!allow_untyped) {
        if (is_name_tok(p)) return perr(p, NULL, "'%s' needs a type (e.g. float[N, 3] %s)", p->tok.s, p->tok.s);
        return expected(p, "a type (float, int64, ...)");
    }
    if (!parse_name(p, &d->name, "a value name")) return false;
    if (!d->name[0]) return perr(p, NULL, "a value name may not be empty");
    if (is_punct(p, '=')) {
        token eq = p->tok;
        if (!allow_data) return perr(p, NULL, "unexpected '=': a value here cannot have data");
        if (!d->typed) return perr(p, &eq, "'%s' has data but no type", d->name);
        next(p);
        for (int i = 0; i < d->shape.rank; i++)
            if (d->shape.dims[i] == CT_DIM_BATCH)
                return perr(p, &eq, "'%s' has data, so its dimensions must be numbers", d->name);
        if (!d->shape_known) return perr(p, &eq, "'%s' has data, so its shape must be known", d->name);
        if (!parse_tensor_data(p, d->dtype, &d->shape, &d->data)) return false;
        d->has_data = true;
    }
    return !p->err;
}

/* '(' decl, ... ')' */
static bool parse_decl_list(parser *p, decl **arr, int *n, int *cap, dims_rule rule, bool allow_untyped,
                            bool allow_data, const char *what)
{
    char ctx[64];
    snprintf(ctx, sizeof ctx, "opening the %s", what);
    if (!expect(p, '(', ctx)) return false;
    if (accept(p, ')')) return !p->err;
    for (;;) {
        GROW(*arr, *n, *cap);
        if (!parse_decl(p, &(*arr)[*n], rule, allow_untyped, allow_data)) return false;
        (*n)++;
        if (accept(p, ',')) continue;
        snprintf(ctx, sizeof ctx, "closing the %s", what);
        return expect(p, ')', ctx);
    }
}

/* ================================================================ attributes */

static ct_attr_type attr_type_from_name(const char *s)
{
    static const struct {
        const char *n;
        ct_attr_type t;
    } m[] = {{"int", CT_ATTR_INT},       {"float", CT_ATTR_FLOAT},     {"string", CT_ATTR_STRING},
             {"ints", CT_ATTR_INTS},     {"floats", CT_ATTR_FLOATS},   {"strings", CT_ATTR_STRINGS},
             {"tensor", CT_ATTR_TENSOR}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(m[i].n, s)) return m[i].t;
    return CT_ATTR_UNDEFINED;
}

typedef struct {
    ct_attr_type type; /* INT, FLOAT, STRING or TENSOR */
    int64_t i;
    double f;
    const char *s;
    ct_value *t;
} scalar_val;

static bool parse_attr_scalar(parser *p, scalar_val *v)
{
    memset(v, 0, sizeof *v);
    if (p->err) return false;
    if (p->tok.kind == TK_STRING) {
        v->type = CT_ATTR_STRING;
        v->s = p->tok.s;
        next(p);
        return !p->err;
    }
    if (p->tok.kind == TK_IDENT && type_name_known(p->tok.s)) {
        /* tensor: type [name] ['='] '{' data '}' */
        ct_value *t = ct_arena_alloc(&p->g->arena, sizeof *t);
        bool known;
        if (!parse_type(p, DIMS_STATIC, &t->dtype, &t->shape, &known)) return false;
        t->name = "";
        if (is_name_tok(p)) {
            t->name = p->tok.s;
            next(p);
        }
        accept(p, '=');
        if (!parse_tensor_data(p, t->dtype, &t->shape, &t->data)) return false;
        t->kind = CT_VALUE_CONST;
        t->shape_known = true;
        t->id = -1;
        t->offset = -1;
        t->first_use = t->last_use = -1;
        v->type = CT_ATTR_TENSOR;
        v->t = t;
        return true;
    }
    if (p->tok.kind == TK_IDENT && strcmp(p->tok.s, "inf") && strcmp(p->tok.s, "nan") &&
        strcmp(p->tok.s, "infinity"))
        return perr(p, NULL, "graph-valued attributes ('%s') are not supported", p->tok.s);
    if (is_punct(p, '@')) return perr(p, NULL, "attribute references ('@') are only meaningful in functions");
    if (p->tok.kind != TK_INT && p->tok.kind != TK_FLOAT && p->tok.kind != TK_IDENT && !is_punct(p, '-') &&
        !is_punct(p, '+'))
        return expected(p, "an attribute value (number, string, tensor or list)");
    bool is_int;
    if (!parse_number(p, &v->f, &v->i, &is_int)) {
        if (!p->err) expected(p, "an attribute value");
        return false;
    }
    v->type = is_int ? CT_ATTR_INT : CT_ATTR_FLOAT;
    return true;
}

static bool parse_attr(parser *p, ct_attr *a, ct_attr_type *declared)
{
    memset(a, 0, sizeof *a);
    *declared = CT_ATTR_UNDEFINED;
    if (p->tok.kind != TK_IDENT) return expected(p, "an attribute name");
    a->name = p->tok.s;
    next(p);
    if (accept(p, ':')) {
        if (p->tok.kind != TK_IDENT) return expected(p, "an attribute type");
        *declared = attr_type_from_name(p->tok.s);
        if (*declared == CT_ATTR_UNDEFINED)
            return perr(p, NULL, "attribute type '%s' is not supported (int float string ints floats strings tensor)",
                        p->tok.s);
        next(p);
    }
    if (!expect(p, '=', "after the attribute name")) return false;
    token vstart = p->tok;
    if (accept(p, '[')) {
        scalar_val *vals = NULL;
        int n = 0, cap = 0;
        bool ok = true, any_float = false, any_int = false, any_str = false;
        token first = p->tok;
        if (!accept(p, ']')) {
            for (;;) {
                GROW(vals, n, cap);
                if (!parse_attr_scalar(p, &vals[n])) {
                    ok = false;
                    break;
                }
                if (vals[n].type == CT_ATTR_TENSOR) {
                    ok = perr(p, &first, "lists of tensors are not supported");
                    break;
                }
                any_float |= vals[n].type == CT_ATTR_FLOAT;
                any_int |= vals[n].type == CT_ATTR_INT;
                any_str |= vals[n].type == CT_ATTR_STRING;
                n++;
                if (accept(p, ',')) continue;
                ok = expect(p, ']', "closing the list");
                break;
            }
        }
        if (ok && any_str && (any_int || any_float)) ok = perr(p, &first, "a list mixes strings and numbers");
        if (ok) {
            ct_attr_type t = any_str ? CT_ATTR_STRINGS : any_float ? CT_ATTR_FLOATS : n ? CT_ATTR_INTS : CT_ATTR_UNDEFINED;
            if (*declared == CT_ATTR_FLOATS && t == CT_ATTR_INTS) t = CT_ATTR_FLOATS;
            if (*declared != CT_ATTR_UNDEFINED && n == 0) t = *declared;
            a->type = t;
            a->n = n;
            if (t == CT_ATTR_INTS) {
                a->ints = ct_arena_alloc(&p->g->arena, sizeof(int64_t) * (size_t)(n ? n : 1));
                for (int k = 0; k < n; k++) a->ints[k] = vals[k].i;
            } else if (t == CT_ATTR_FLOATS) {
                a->floats = ct_arena_alloc(&p->g->arena, sizeof(float) * (size_t)(n ? n : 1));
                for (int k = 0; k < n; k++) a->floats[k] = (float)vals[k].f;
            } else if (t == CT_ATTR_STRINGS) {
                a->strings = ct_arena_alloc(&p->g->arena, sizeof(char *) * (size_t)(n ? n : 1));
                for (int k = 0; k < n; k++) a->strings[k] = vals[k].s;
            } else if (t != CT_ATTR_UNDEFINED) {
                ok = perr(p, &first, "attribute '%s' is declared %s but given a list", a->name, ct_attr_type_name(t));
            }
        }
        free(vals);
        if (!ok || p->err) return false;
    } else {
        scalar_val v;
        if (!parse_attr_scalar(p, &v)) return false;
        a->type = v.type;
        a->i = v.i;
        a->f = (float)v.f;
        a->s = v.s;
        a->t = v.t;
        if (*declared == CT_ATTR_FLOAT && v.type == CT_ATTR_INT) {
            a->type = CT_ATTR_FLOAT;
            a->f = (float)v.i;
        }
    }
    if (*declared != CT_ATTR_UNDEFINED && a->type != *declared)
        return perr(p, &vstart, "attribute '%s' is declared %s but its value is %s", a->name,
                    ct_attr_type_name(*declared), ct_attr_type_name(a->type));
    return true;
}

static bool parse_attr_list(parser *p, raw_node *n)
{
    /* after '<' */
    int cap = 0;
    for (;;) {
        if (n->n_attr == cap) {
            int nc = cap ? 2 * cap : 4;
            ct_attr *na = ct_arena_alloc(&p->g->arena, sizeof(ct_attr) * (size_t)nc);
            ct_attr_type *nd = ct_arena_alloc(&p->g->arena, sizeof(ct_attr_type) * (size_t)nc);
            int *nl = ct_arena_alloc(&p->g->arena, sizeof(int) * (size_t)nc * 2);
            if (n->n_attr) {
                memcpy(na, n->attrs, sizeof(ct_attr) * (size_t)n->n_attr);
                memcpy(nd, n->declared, sizeof(ct_attr_type) * (size_t)n->n_attr);
                memcpy(nl, n->attr_line, sizeof(int) * (size_t)n->n_attr);
                memcpy(nl + nc, n->attr_col, sizeof(int) * (size_t)n->n_attr);
            }
            n->attrs = na;
            n->declared = nd;
            n->attr_line = nl;
            n->attr_col = nl + nc;
            cap = nc;
        }
        n->attr_line[n->n_attr] = p->tok.line;
        n->attr_col[n->n_attr] = p->tok.col;
        token at = p->tok;
        if (!parse_attr(p, &n->attrs[n->n_attr], &n->declared[n->n_attr])) return false;
        for (int k = 0; k < n->n_attr; k++)
            if (!strcmp(n->attrs[k].name, n->attrs[n->n_attr].name))
                return perr(p, &at, "attribute '%s' is given twice", n->attrs[k].name);
        n->n_attr++;
        if (accept(p, ',')) continue;
        return expect(p, '>', "closing the attributes");
    }
}

/* ================================================================ nodes */

/* An id list: names separated by ',', each possibly empty; ends before `close`. */
static bool parse_id_list(parser *p, const char ***out, int *n, char close)
{
    const char **arr = NULL;
    int cnt = 0, cap = 0;
    if (is_punct(p, close)) {
        *out = NULL;
        *n = 0;
        return true;
    }
    for (;;) {
        if (p->err) break;
        const char *name = "";
        if (is_name_tok(p)) {
            name = p->tok.s;
            next(p);
        } else if (!is_punct(p, ',') && !is_punct(p, close)) {
            char what[64];
            snprintf(what, sizeof what, "a value name, ',' or '%c'", close);
            expected(p, what);
            break;
        }
        GROW(arr, cnt, cap);
        arr[cnt++] = name;
        if (accept(p, ',')) continue;
        break;
    }
    if (p->err) {
        free(arr);
        return false;
    }
    *out = ct_arena_alloc(&p->g->arena, sizeof(char *) * (size_t)(cnt ? cnt : 1));
    memcpy((void *)*out, arr, sizeof(char *) * (size_t)cnt);
    *n = cnt;
    free(arr);
    return true;
}

static bool parse_node(parser *p, raw_node *n)
{
    memset(n, 0, sizeof *n);
    n->line = p->tok.line;
    n->col = p->tok.col;
    if (accept(p, '[')) {
        if (!parse_name(p, &n->name, "a node name")) return false;
        n->named = true;
        if (!expect(p, ']', "closing the node name")) return false;
    }
    if (!parse_id_list(p, &n->outs, &n->n_out, '=')) return false;
    if (!expect(p, '=', "after the node's outputs")) return false;
    if (p->tok.kind != TK_IDENT) return expected(p, "an op type");
    const char *parts[16];
    int np = 0;
    parts[np++] = p->tok.s;
    next(p);
    while (accept(p, '.')) {
        if (p->tok.kind != TK_IDENT) return expected(p, "an identifier after '.' in the op type");
        if (np == 16) return perr(p, NULL, "op domain has too many parts");
        parts[np++] = p->tok.s;
        next(p);
    }
    if (p->err) return false;
    n->op_type = parts[np - 1];
    if (np == 1) {
        n->domain = "";
    } else {
        size_t len = 0;
        for (int i = 0; i < np - 1; i++) len += strlen(parts[i]) + 1;
        char *d = ct_arena_alloc(&p->g->arena, len + 1);
        for (int i = 0; i < np - 1; i++) {
            strcat(d, parts[i]);
            if (i < np - 2) strcat(d, ".");
        }
        n->domain = d;
    }
    if (accept(p, '<') && !parse_attr_list(p, n)) return false;
    if (!expect(p, '(', "opening the node's inputs")) return false;
    if (!parse_id_list(p, &n->ins, &n->n_in, ')')) return false;
    if (!expect(p, ')', "closing the node's inputs")) return false;
    if (n->n_attr == 0 && accept(p, '<') && !parse_attr_list(p, n)) return false;
    return !p->err;
}

/* ================================================================ model */

static bool parse_header(parser *p)
{
    /* after '<' */
    ct_graph *g = p->g;
    for (;;) {
        if (p->tok.kind != TK_IDENT) return expected(p, "a model header key (ir_version, opset_import, ...)");
        token key = p->tok;
        const char *k = key.s;
        next(p);
        if (!expect(p, ':', "after the header key")) return false;
        if (!strcmp(k, "ir_version") || !strcmp(k, "model_version")) {
            if (p->tok.kind != TK_INT) return expected(p, "an integer");
            if (k[0] == 'i') g->ir_version = p->tok.i;
            next(p);
        } else if (!strcmp(k, "producer_name") || !strcmp(k, "producer_version") || !strcmp(k, "domain") ||
                   !strcmp(k, "doc_string")) {
            if (p->tok.kind != TK_STRING) return expected(p, "a string");
            if (!strcmp(k, "producer_name")) g->producer_name = p->tok.s;
            if (!strcmp(k, "producer_version")) g->producer_version = p->tok.s;
            next(p);
        } else if (!strcmp(k, "opset_import")) {
            if (!expect(p, '[', "opening the opset imports")) return false;
            bool seen_onnx = false;
            if (!accept(p, ']')) {
                for (;;) {
                    if (p->tok.kind != TK_STRING) return expected(p, "a domain string (\"\" for ai.onnx)");
                    token dom = p->tok;
                    next(p);
                    if (!expect(p, ':', "after the domain")) return false;
                    if (p->tok.kind != TK_INT) return expected(p, "an opset version");
                    int64_t ver = p->tok.i;
                    token vt = p->tok;
                    next(p);
                    GROW(p->opsets, p->n_opsets, p->cap_opsets);
                    p->opsets[p->n_opsets++] = (meta_entry){.key = dom.s, .line = (int)(ver > INT32_MAX ? INT32_MAX : ver)};
                    if (!dom.s[0] || !strcmp(dom.s, "ai.onnx")) {
                        if (seen_onnx) return perr(p, &dom, "the ai.onnx opset is imported twice");
                        if (ver < 9 || ver > 21)
                            return perr(p, &vt, "ai.onnx opset %" PRId64 " is not supported (9 to 21 are)", ver);
                        g->opset = (int)ver;
                        seen_onnx = true;
                    }
                    if (accept(p, ',')) continue;
                    if (!expect(p, ']', "closing the opset imports")) return false;
                    break;
                }
            }
        } else if (!strcmp(k, "metadata_props")) {
            if (!expect(p, '[', "opening the metadata")) return false;
            if (!accept(p, ']')) {
                for (;;) {
                    if (p->tok.kind != TK_STRING) return expected(p, "a metadata key string");
                    GROW(p->meta, p->n_meta, p->cap_meta);
                    meta_entry *m = &p->meta[p->n_meta];
                    m->key = p->tok.s;
                    m->line = p->tok.line;
                    m->col = p->tok.col;
                    next(p);
                    if (!expect(p, ':', "after the metadata key")) return false;
                    if (p->tok.kind != TK_STRING) return expected(p, "a metadata value string");
                    m->value = p->tok.s;
                    next(p);
                    p->n_meta++;
                    if (accept(p, ',')) continue;
                    if (!expect(p, ']', "closing the metadata")) return false;
                    break;
                }
            }
        } else {
            return perr(p, &key, "unknown model header key '%s'", k);
        }
        if (p->err) return false;
        if (accept(p, ',')) continue;
        return expect(p, '>', "closing the model header");
    }
}

static bool parse_model(parser *p)
{
    if (!next(p)) return false;
    if (accept(p, '<') && !parse_header(p)) return false;
    const char *gname = NULL;
    if (!parse_name(p, &gname, "the graph name")) return false;
    p->g->name = gname;
    if (!parse_decl_list(p, &p->inputs, &p->n_inputs, &p->cap_inputs, DIMS_INPUT, false, true, "graph inputs"))
        return false;
    if (!expect(p, '=', "('=>' between inputs and outputs)")) return false;
    if (!expect(p, '>', "('=>' between inputs and outputs)")) return false;
    if (!parse_decl_list(p, &p->outputs, &p->n_outputs, &p->cap_outputs, DIMS_INFERRED, true, false,
                         "graph outputs"))
        return false;
    if (accept(p, '<') && !accept(p, '>')) {
        for (;;) {
            GROW(p->infos, p->n_infos, p->cap_infos);
            if (!parse_decl(p, &p->infos[p->n_infos], DIMS_INFERRED, true, true)) return false;
            p->n_infos++;
            if (accept(p, ',')) {
                if (accept(p, '>')) break; /* trailing comma */
                continue;
            }
            if (!expect(p, '>', "closing the initializers")) return false;
            break;
        }
    }
    if (!expect(p, '{', "opening the nodes")) return false;
    while (!accept(p, '}')) {
        if (p->err) return false;
        if (p->tok.kind == TK_EOF) return expected(p, "a node or '}'");
        GROW(p->nodes, p->n_nodes, p->cap_nodes);
        if (!parse_node(p, &p->nodes[p->n_nodes])) return false;
        p->n_nodes++;
    }
    if (p->err) return false;
    if (p->tok.kind != TK_EOF) {
        if (p->tok.kind == TK_IDENT || p->tok.kind == TK_PUNCT)
            return perr(p, NULL, "unexpected text after the graph (functions are not supported)");
        return expected(p, "end of input");
    }
    return true;
}

/* ================================================================ build */

static bool decl_error(parser *p, const decl *d, const char *fmt, const char *name)
{
    token at = {.line = d->line, .col = d->col};
    return perr(p, &at, fmt, name);
}

static bool node_error_at(parser *p, int line, int col, const char *fmt, ...) CT_PRINTF(4, 5);
static bool node_error_at(parser *p, int line, int col, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    token at = {.line = line, .col = col};
    return perr(p, &at, "%s", buf);
}

/* Append s to a malloc'd string builder. */
typedef struct {
    char *buf;
    size_t len, cap;
} strbuf;

static void sb_putn(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *nb = realloc(b->buf, nc);
        if (!nb) abort();
        b->buf = nb;
        b->cap = nc;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void sb_puts(strbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }

static void CT_PRINTF(2, 3) sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        sb_putn(b, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) abort();
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_putn(b, big, (size_t)n);
    free(big);
}

static bool build_graph(parser *p)
{
    ct_graph *g = p->g;
    name_map map = {0};
    bool ok = false;
    ct_op *ops = calloc((size_t)p->n_nodes + 1, sizeof *ops);
    if (!ops) abort();

    /* graph inputs, and initializers written as inputs with a value */
    for (int i = 0; i < p->n_inputs; i++) {
        decl *d = &p->inputs[i];
        if (map_find(&map, d->name)) {
            decl_error(p, d, "'%s' is declared twice", d->name);
            goto done;
        }
        ct_value *v;
        if (d->has_data) {
            v = ct_graph_add_value(g, d->name, CT_VALUE_PARAM, d->dtype, &d->shape);
            v->data = d->data;
        } else {
            v = ct_graph_add_value(g, d->name, CT_VALUE_INPUT, d->dtype, &d->shape);
            ct_graph_add_input(g, v);
        }
        map_put(&map, v);
    }
    /* initializers in the '<...>' list; value infos wait for the nodes */
    for (int i = 0; i < p->n_infos; i++) {
        decl *d = &p->infos[i];
        if (!d->has_data) continue;
        if (map_find(&map, d->name)) {
            decl_error(p, d, "'%s' is declared twice", d->name);
            goto done;
        }
        ct_value *v = ct_graph_add_value(g, d->name, CT_VALUE_PARAM, d->dtype, &d->shape);
        v->data = d->data;
        map_put(&map, v);
    }

    /* every op must be known: list all that are not, at once */
    {
        strbuf bad = {0};
        int n_bad = 0;
        for (int i = 0; i < p->n_nodes; i++) {
            raw_node *n = &p->nodes[i];
            ops[i] = ct_op_lookup(n->domain, n->op_type);
            const char *why = NULL;
            char tmp[64];
            if (ops[i] == CT_OP_COUNT) {
                why = "unknown op";
            } else if (!ct_op_table[ops[i]].domain[0] && ct_op_table[ops[i]].since_opset > g->opset) {
                snprintf(tmp, sizeof tmp, "needs opset %d or later", ct_op_table[ops[i]].since_opset);
                why = tmp;
                ops[i] = CT_OP_COUNT;
            }
            if (!n->named) n->name = ct_arena_printf(&g->arena, "%s_%d", n->op_type, i);
            if (!why) continue;
            char ver[48];
            if (!n->domain[0] || !strcmp(n->domain, "ai.onnx")) {
                snprintf(ver, sizeof ver, "opset %d", g->opset);
            } else {
                snprintf(ver, sizeof ver, "domain not imported");
                for (int k = 0; k < p->n_opsets; k++)
                    if (!strcmp(p->opsets[k].key, n->domain)) snprintf(ver, sizeof ver, "opset %d", p->opsets[k].line);
            }
            sb_printf(&bad, "\n  %s (domain '%s', %s, %s) at line %d, node '%s' (outputs", n->op_type,
                      n->domain[0] ? n->domain : "ai.onnx", ver, why, n->line, n->name);
            for (int k = 0; k < n->n_out; k++) sb_printf(&bad, "%s'%s'", k ? ", " : " ", n->outs[k]);
            sb_puts(&bad, ")");
            n_bad++;
        }
        if (n_bad) {
            if (!p->err)
                p->err = ct_errorf("%s: %d node%s with unsupported ops:%s", p->label, n_bad, n_bad == 1 ? "" : "s",
                                   bad.buf);
            free(bad.buf);
            goto done;
        }
    }

    /* node outputs */
    for (int i = 0; i < p->n_nodes; i++) {
        raw_node *n = &p->nodes[i];
        for (int k = 0; k < n->n_out; k++) {
            if (!n->outs[k][0]) continue;
            if (map_find(&map, n->outs[k])) {
                node_error_at(p, n->line, n->col,
                              "node '%s' (%s) writes '%s', which is already defined (an input, initializer or "
                              "another node's output)",
                              n->name, n->op_type, n->outs[k]);
                goto done;
            }
            for (int j = 0; j < k; j++)
                if (!strcmp(n->outs[j], n->outs[k])) {
                    node_error_at(p, n->line, n->col, "node '%s' (%s) writes '%s' twice", n->name, n->op_type,
                                  n->outs[k]);
                    goto done;
                }
            ct_value *v = ct_graph_add_value(g, n->outs[k], CT_VALUE_TEMP, CT_DTYPE_UNDEFINED, NULL);
            map_put(&map, v);
        }
    }
    /* nodes */
    for (int i = 0; i < p->n_nodes; i++) {
        raw_node *n = &p->nodes[i];
        const ct_op_info *info = &ct_op_table[ops[i]];
        if (n->n_in < info->min_in || (info->max_in >= 0 && n->n_in > info->max_in)) {
            node_error_at(p, n->line, n->col, "node '%s' (%s) has %d inputs, expected %d to %d", n->name,
                          n->op_type, n->n_in, info->min_in, info->max_in);
            goto done;
        }
        if (n->n_out < info->min_out || (info->max_out >= 0 && n->n_out > info->max_out)) {
            node_error_at(p, n->line, n->col, "node '%s' (%s) has %d outputs, expected %d to %d", n->name,
                          n->op_type, n->n_out, info->min_out, info->max_out);
            goto done;
        }
        ct_value **in = calloc((size_t)n->n_in + 1, sizeof *in);
        ct_value **out = calloc((size_t)n->n_out + 1, sizeof *out);
        if (!in || !out) abort();
        bool bad = false;
        for (int k = 0; k < n->n_in && !bad; k++) {
            if (!n->ins[k][0]) continue;
            in[k] = map_find(&map, n->ins[k]);
            if (!in[k]) {
                node_error_at(p, n->line, n->col, "node '%s' (%s) reads '%s', which is not defined", n->name,
                              n->op_type, n->ins[k]);
                bad = true;
            }
        }
        for (int k = 0; k < n->n_out; k++) out[k] = n->outs[k][0] ? map_find(&map, n->outs[k]) : NULL;
        ct_node *node = bad ? NULL : ct_graph_add_node(g, ops[i], n->name, n->n_in, in, n->n_out, out);
        free(in);
        free(out);
        if (bad) goto done;
        for (int a = 0; a < n->n_attr; a++) {
            ct_attr at = n->attrs[a];
            ct_attr_type want = ct_op_attr_type(ops[i], at.name);
            if (want == CT_ATTR_UNDEFINED) {
                node_error_at(p, n->attr_line[a], n->attr_col[a], "node '%s' (%s) has unknown attribute '%s'",
                              n->name, n->op_type, at.name);
                goto done;
            }
            if (want == CT_ATTR_FLOAT && at.type == CT_ATTR_INT) {
                at.type = CT_ATTR_FLOAT;
                at.f = (float)at.i;
            } else if (want == CT_ATTR_FLOATS && at.type == CT_ATTR_INTS) {
                at.type = CT_ATTR_FLOATS;
                at.floats = ct_arena_alloc(&g->arena, sizeof(float) * (size_t)(at.n ? at.n : 1));
                for (int k = 0; k < at.n; k++) at.floats[k] = (float)at.ints[k];
                at.ints = NULL;
            } else if (at.type == CT_ATTR_UNDEFINED && (want == CT_ATTR_INTS || want == CT_ATTR_FLOATS ||
                                                        want == CT_ATTR_STRINGS)) {
                at.type = want; /* an empty list */
            }
            if (at.type != want) {
                node_error_at(p, n->attr_line[a], n->attr_col[a], "node '%s' (%s): attribute '%s' is %s, expected %s",
                              n->name, n->op_type, at.name,
                              at.type == CT_ATTR_UNDEFINED ? "an empty list" : ct_attr_type_name(at.type),
                              ct_attr_type_name(want));
                goto done;
            }
            ct_node_add_attr(g, node, &at);
        }
    }
    /* value infos: types of intermediates */
    for (int i = 0; i < p->n_infos; i++) {
        decl *d = &p->infos[i];
        if (d->has_data) continue;
        ct_value *v = map_find(&map, d->name);
        if (!v) {
            decl_error(p, d, "value info for '%s', which no node writes", d->name);
            goto done;
        }
        if (!d->typed || v->kind != CT_VALUE_TEMP) continue;
        v->dtype = d->dtype;
        if (d->shape_known) {
            v->shape = d->shape;
            v->shape_known = true;
        }
    }
    /* graph outputs */
    for (int i = 0; i < p->n_outputs; i++) {
        decl *d = &p->outputs[i];
        ct_value *v = map_find(&map, d->name);
        if (!v) {
            decl_error(p, d, "graph output '%s' is not defined", d->name);
            goto done;
        }
        for (int k = 0; k < g->n_outputs; k++)
            if (g->outputs[k] == v) {
                decl_error(p, d, "graph output '%s' is listed twice", d->name);
                goto done;
            }
        if (d->typed && v->kind == CT_VALUE_TEMP) {
            v->dtype = d->dtype;
            if (d->shape_known) {
                v->shape = d->shape;
                v->shape_known = true;
            }
        } else if (d->typed && v->dtype != d->dtype) {
            decl_error(p, d, "graph output '%s' is declared with another type than its definition", d->name);
            goto done;
        }
        ct_graph_add_output(g, v);
    }
    ok = true;
done:
    free(map.slots);
    free(ops);
    return ok && !p->err;
}

/* After normalisation: kinds written as contra.kind.<name> metadata. */
static ct_status apply_kinds(parser *p)
{
    for (int i = 0; i < p->n_meta; i++) {
        meta_entry *m = &p->meta[i];
        if (strncmp(m->key, KIND_PREFIX, strlen(KIND_PREFIX))) continue;
        const char *name = m->key + strlen(KIND_PREFIX);
        ct_value_kind kind;
        bool frozen = false;
        if (!strcmp(m->value, "state")) kind = CT_VALUE_STATE;
        else if (!strcmp(m->value, "const")) kind = CT_VALUE_CONST;
        else if (!strcmp(m->value, "param")) kind = CT_VALUE_PARAM;
        else if (!strcmp(m->value, "param-frozen")) kind = CT_VALUE_PARAM, frozen = true;
        else
            return ct_errorf("%s:%d:%d: value kind '%s' for '%s' is not one of state, const, param, param-frozen",
                             p->label, m->line, m->col, m->value, name);
        ct_value *v = ct_graph_find_value(p->g, name);
        if (!v) continue; /* dropped by normalisation */
        if (v->kind != CT_VALUE_PARAM && v->kind != CT_VALUE_STATE && v->kind != CT_VALUE_CONST)
            return ct_errorf("%s:%d:%d: '%s' is given kind %s but is not an initializer", p->label, m->line, m->col,
                             name, m->value);
        if (kind == CT_VALUE_CONST && v->producer)
            return ct_errorf("%s:%d:%d: '%s' is written by a node and cannot be a constant", p->label, m->line, m->col,
                             name);
        v->kind = kind;
        v->frozen = frozen;
    }
    return CT_OK;
}

ct_status ct_onnx_text_parse(const char *src, size_t len, const char *label, ct_graph **out)
{
    *out = NULL;
    if (!label) label = "<text>";
    parser p = {0};
    p.label = label;
    p.src = p.cur = src ? src : "";
    p.end = p.src + (src ? len : 0);
    p.line = p.col = 1;
    if (p.end - p.cur >= 3 && !memcmp(p.cur, "\xef\xbb\xbf", 3)) p.cur += 3; /* a UTF-8 byte order mark */
    p.g = ct_graph_new("main");
    ct_status st = CT_OK;

    if (!parse_model(&p) || !build_graph(&p)) {
        st = p.err ? p.err : ct_errorf("%s: parse error", label);
        p.err = NULL;
        goto fail;
    }
    p.g->source_path = ct_arena_strdup(&p.g->arena, label);
    if ((st = ct_graph_toposort(p.g))) goto wrap;
    if ((st = ct_frontend_normalize(p.g, label))) goto fail;
    if ((st = apply_kinds(&p))) goto fail;
    if ((st = ct_graph_toposort(p.g))) goto wrap;
    if ((st = ct_graph_verify(p.g))) goto wrap;
    *out = p.g;
    p.g = NULL;
    goto done;
wrap:
    st = ct_status_wrap(st, "%s", label);
fail:
    ct_status_free(p.err);
    ct_graph_free(p.g);
done:
    free(p.inputs);
    free(p.outputs);
    free(p.infos);
    free(p.nodes);
    free(p.meta);
    free(p.opsets);
    return st;
}

ct_status ct_onnx_text_load(const char *path, ct_graph **out)
{
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    CT_TRY(ct_file_read(path, &buf, &len));
    ct_status st = ct_onnx_text_parse(buf, len, path, out);
    free(buf);
    return st;
}

/* ================================================================ printer */

static void print_string(strbuf *b, const char *s)
{
    sb_puts(b, "\"");
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\r': sb_puts(b, "\\r"); break;
        default:
            if (*c < 32 || *c == 127)
                sb_printf(b, "\\x%02x", *c);
            else
                sb_putn(b, (const char *)c, 1);
        }
    }
    sb_puts(b, "\"");
}

static void print_name(strbuf *b, const char *s)
{
    if (name_is_plain(s))
        sb_puts(b, s);
    else
        print_string(b, s ? s : "");
}

/* A float that reads back as the same float and as a float literal.
 * `shortest` tries the short form first (readable; twice the work). */
static void print_float_as(strbuf *b, double f, bool is_double, bool need_point, bool shortest)
{
    if (isnan(f)) { /* the sign is kept, a NaN payload is not */
        sb_puts(b, signbit(f) ? "-nan" : "nan");
        return;
    }
    if (isinf(f)) {
        sb_puts(b, f < 0 ? "-inf" : "inf");
        return;
    }
    /* %.6g (%.15g) when it reads back exactly, else %.9g (%.17g), which always does. */
    char tmp[64];
    bool done = false;
    if (shortest) {
        snprintf(tmp, sizeof tmp, is_double ? "%.15g" : "%.6g", f);
        done = is_double ? strtod(tmp, NULL) == f : strtof(tmp, NULL) == (float)f;
    }
    if (!done) snprintf(tmp, sizeof tmp, is_double ? "%.17g" : "%.9g", f);
    sb_puts(b, tmp);
    if (need_point && !strpbrk(tmp, ".e")) sb_puts(b, ".0");
}

static void print_float(strbuf *b, double f, bool is_double, bool need_point)
{
    print_float_as(b, f, is_double, need_point, true);
}

static void print_type(strbuf *b, ct_dtype t, const ct_shape *s, bool known)
{
    sb_puts(b, ct_dtype_name(t));
    if (!known) {
        sb_puts(b, "[]");
        return;
    }
    if (s->rank == 0) return;
    sb_puts(b, "[");
    for (int i = 0; i < s->rank; i++) {
        if (i) sb_puts(b, ", ");
        if (s->dims[i] == CT_DIM_BATCH)
            sb_puts(b, "N");
        else
            sb_printf(b, "%" PRId64, s->dims[i]);
    }
    sb_puts(b, "]");
}

static void print_element(strbuf *b, ct_dtype t, const void *data, int64_t i, bool shortest)
{
    const unsigned char *d = data;
    switch (t) {
    case CT_F32: {
        float v;
        memcpy(&v, d + 4 * i, 4);
        print_float_as(b, v, false, false, shortest);
        break;
    }
    case CT_F64: {
        double v;
        memcpy(&v, d + 8 * i, 8);
        print_float_as(b, v, true, false, shortest);
        break;
    }
    case CT_F16: {
        uint16_t v;
        memcpy(&v, d + 2 * i, 2);
        print_float(b, f16_to_f32(v), false, false);
        break;
    }
    case CT_BF16: {
        uint16_t v;
        memcpy(&v, d + 2 * i, 2);
        print_float(b, bf16_to_f32(v), false, false);
        break;
    }
    case CT_I64: {
        int64_t v;
        memcpy(&v, d + 8 * i, 8);
        sb_printf(b, "%" PRId64, v);
        break;
    }
    case CT_I32: {
        int32_t v;
        memcpy(&v, d + 4 * i, 4);
        sb_printf(b, "%" PRId32, v);
        break;
    }
    case CT_I8: sb_printf(b, "%d", (int)((const int8_t *)d)[i]); break;
    case CT_U8: sb_printf(b, "%d", (int)d[i]); break;
    case CT_BOOL: sb_printf(b, "%d", d[i] ? 1 : 0); break;
    default: sb_puts(b, "0"); break;
    }
}

/* '{' values '}', wrapped at about 100 columns with the given indent. */
static void print_tensor_data(strbuf *b, const ct_value *v, int indent)
{
    int64_t n = ct_shape_numel(&v->shape);
    if (n <= 0 || !v->data) {
        sb_puts(b, "{}");
        return;
    }
    /* Big tensors (weights) get %.9g directly: printing is then twice as fast. */
    bool shortest = n <= 64;
    if (n <= 8) {
        sb_puts(b, "{");
        for (int64_t i = 0; i < n; i++) {
            if (i) sb_puts(b, ", ");
            print_element(b, v->dtype, v->data, i, shortest);
        }
        sb_puts(b, "}");
        return;
    }
    sb_puts(b, "{\n");
    size_t line_start = b->len;
    for (int i = 0; i < indent + 2; i++) sb_puts(b, " ");
    for (int64_t i = 0; i < n; i++) {
        size_t before = b->len;
        print_element(b, v->dtype, v->data, i, shortest);
        if (i + 1 < n) sb_puts(b, ",");
        if (b->len - line_start > 100 && before > line_start + (size_t)indent + 2) {
            /* move this element to a new line */
            size_t elen = b->len - before;
            char tmp[64];
            memcpy(tmp, b->buf + before, elen);
            b->len = before;
            while (b->len > line_start && b->buf[b->len - 1] == ' ') b->len--;
            sb_puts(b, "\n");
            line_start = b->len;
            for (int k = 0; k < indent + 2; k++) sb_puts(b, " ");
            sb_putn(b, tmp, elen);
        }
        if (i + 1 < n) sb_puts(b, " ");
    }
    sb_puts(b, "\n");
    for (int i = 0; i < indent; i++) sb_puts(b, " ");
    sb_puts(b, "}");
}

static void print_attr(strbuf *b, const ct_attr *a)
{
    sb_puts(b, a->name);
    switch (a->type) {
    case CT_ATTR_INT: sb_printf(b, " = %" PRId64, a->i); break;
    case CT_ATTR_FLOAT:
        sb_puts(b, " = ");
        print_float(b, a->f, false, true);
        break;
    case CT_ATTR_STRING:
        sb_puts(b, " = ");
        print_string(b, a->s ? a->s : "");
        break;
    case CT_ATTR_INTS:
    case CT_ATTR_FLOATS:
    case CT_ATTR_STRINGS:
        if (a->n == 0) {
            sb_printf(b, ": %s = []", ct_attr_type_name(a->type));
            break;
        }
        sb_puts(b, " = [");
        for (int i = 0; i < a->n; i++) {
            if (i) sb_puts(b, ", ");
            if (a->type == CT_ATTR_INTS)
                sb_printf(b, "%" PRId64, a->ints[i]);
            else if (a->type == CT_ATTR_FLOATS)
                print_float(b, a->floats[i], false, true);
            else
                print_string(b, a->strings[i] ? a->strings[i] : "");
        }
        sb_puts(b, "]");
        break;
    case CT_ATTR_TENSOR:
        sb_puts(b, " = ");
        if (!a->t) {
            sb_puts(b, "float {}");
            break;
        }
        print_type(b, a->t->dtype, &a->t->shape, true);
        if (a->t->name && a->t->name[0]) {
            sb_puts(b, " ");
            print_name(b, a->t->name);
        }
        sb_puts(b, " ");
        print_tensor_data(b, a->t, 6);
        break;
    case CT_ATTR_UNDEFINED: sb_puts(b, ": int = 0"); break;
    }
}

/* One entry of a node's input or output list. An omitted value is an empty
 * slot as ONNX writes it ("Op(x, , y)"), or "" in the first slot, where an
 * empty one would read as an empty list. */
static void print_slot(strbuf *b, const ct_value *v, int k, int n)
{
    if (k) sb_puts(b, v || k + 1 < n ? ", " : ",");
    if (v)
        print_name(b, v->name);
    else if (k == 0)
        sb_puts(b, "\"\"");
}

static bool is_persistent(const ct_value *v)
{
    return v->kind == CT_VALUE_PARAM || v->kind == CT_VALUE_STATE || v->kind == CT_VALUE_CONST;
}

/* Could normalisation give this PARAM, read back as a plain initializer,
 * another kind (BatchNorm statistics, shape-like inputs, non-float)?  Such
 * PARAMs get an explicit kind entry; plain weights read by the ops below don't. */
static bool param_needs_kind(const ct_graph *g, const ct_value *v)
{
    if (!ct_dtype_is_float(v->dtype) || v->frozen) return true;
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        for (int j = 0; j < n->n_in; j++) {
            if (n->in[j] != v) continue;
            switch (n->op) {
            case CT_OP_CONV: case CT_OP_GEMM: case CT_OP_MATMUL: case CT_OP_ADD: case CT_OP_SUB:
            case CT_OP_MUL: case CT_OP_DIV: case CT_OP_POW: break;
            case CT_OP_BATCH_NORM:
                if (j == 1 || j == 2) break;
                return true;
            default: return true;
            }
        }
    }
    return false;
}

/* Persistent values in print order: by first use in node order, then graph
 * outputs, then the rest in value order.  It depends only on the graph's
 * structure, so a graph read back prints them in the same order. */
static const ct_value **persistent_order(const ct_graph *g, int *count)
{
    const ct_value **order = malloc(sizeof *order * ((size_t)g->n_values + 1));
    bool *seen = calloc((size_t)g->n_values + 1, 1);
    if (!order || !seen) abort();
    int k = 0;
#define TAKE(v)                                                                                    \
    do {                                                                                           \
        const ct_value *v_ = (v);                                                                  \
        if (v_ && is_persistent(v_) && v_->id >= 0 && v_->id < g->n_values && !seen[v_->id]) {     \
            seen[v_->id] = true;                                                                   \
            order[k++] = v_;                                                                       \
        }                                                                                          \
    } while (0)
    for (int i = 0; i < g->n_nodes; i++)
        for (int j = 0; j < g->nodes[i]->n_in; j++) TAKE(g->nodes[i]->in[j]);
    for (int i = 0; i < g->n_outputs; i++) TAKE(g->outputs[i]);
    for (int i = 0; i < g->n_values; i++) TAKE(g->values[i]);
#undef TAKE
    free(seen);
    *count = k;
    return order;
}

char *ct_onnx_text_print(const ct_graph *g)
{
    strbuf b = {0};
    int n_persistent;
    const ct_value **persistent = persistent_order(g, &n_persistent);
    bool contra_domain = false;
    for (int i = 0; i < g->n_nodes; i++)
        if (ct_op_table[g->nodes[i]->op].domain[0]) contra_domain = true;

    /* header */
    sb_printf(&b, "<\n  ir_version: %" PRId64 ",\n  opset_import: [\"\" : %d", g->ir_version, g->opset);
    if (contra_domain) sb_puts(&b, ", \"ai.contra\" : 1");
    sb_puts(&b, "]");
    if (g->producer_name) {
        sb_puts(&b, ",\n  producer_name: ");
        print_string(&b, g->producer_name);
    }
    if (g->producer_version) {
        sb_puts(&b, ",\n  producer_version: ");
        print_string(&b, g->producer_version);
    }
    bool any_meta = false;
    for (int i = 0; i < n_persistent; i++) {
        const ct_value *v = persistent[i];
        const char *kind = NULL;
        if (v->kind == CT_VALUE_STATE) kind = "state";
        else if (v->kind == CT_VALUE_CONST) kind = "const";
        else if (v->frozen) kind = "param-frozen";
        else if (param_needs_kind(g, v)) kind = "param";
        if (!kind) continue;
        sb_puts(&b, any_meta ? ",\n    " : ",\n  metadata_props: [\n    ");
        any_meta = true;
        char *key = malloc(strlen(KIND_PREFIX) + strlen(v->name) + 1);
        if (!key) abort();
        strcpy(key, KIND_PREFIX);
        strcat(key, v->name);
        print_string(&b, key);
        free(key);
        sb_printf(&b, " : \"%s\"", kind);
    }
    if (any_meta) sb_puts(&b, "\n  ]");
    sb_puts(&b, "\n>\n");

    /* signature */
    print_name(&b, g->name ? g->name : "main");
    sb_puts(&b, " (");
    for (int i = 0; i < g->n_inputs; i++) {
        const ct_value *v = g->inputs[i];
        if (i) sb_puts(&b, ", ");
        print_type(&b, v->dtype, &v->shape, v->shape_known);
        sb_puts(&b, " ");
        print_name(&b, v->name);
    }
    sb_puts(&b, ") => (");
    for (int i = 0; i < g->n_outputs; i++) {
        const ct_value *v = g->outputs[i];
        if (i) sb_puts(&b, ", ");
        if (v->dtype != CT_DTYPE_UNDEFINED) {
            print_type(&b, v->dtype, &v->shape, v->shape_known);
            sb_puts(&b, " ");
        }
        print_name(&b, v->name);
    }
    sb_puts(&b, ")\n");

    /* initializers, then the known types of intermediates (node order) */
    bool open = false;
    for (int i = 0; i < n_persistent; i++) {
        const ct_value *v = persistent[i];
        sb_puts(&b, open ? ",\n  " : "<\n  ");
        open = true;
        print_type(&b, v->dtype, &v->shape, true);
        sb_puts(&b, " ");
        print_name(&b, v->name);
        sb_puts(&b, " = ");
        print_tensor_data(&b, v, 2);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        for (int k = 0; k < n->n_out; k++) {
            const ct_value *v = n->out[k];
            if (!v || v->kind != CT_VALUE_TEMP || !v->shape_known || v->dtype == CT_DTYPE_UNDEFINED) continue;
            bool is_output = false;
            for (int o = 0; o < g->n_outputs; o++) is_output |= g->outputs[o] == v;
            if (is_output) continue;
            sb_puts(&b, open ? ",\n  " : "<\n  ");
            open = true;
            print_type(&b, v->dtype, &v->shape, true);
            sb_puts(&b, " ");
            print_name(&b, v->name);
        }
    }
    if (open) sb_puts(&b, "\n>\n");

    /* nodes */
    sb_puts(&b, "{\n");
    for (int i = 0; i < g->n_nodes; i++) {
        const ct_node *n = g->nodes[i];
        const ct_op_info *info = &ct_op_table[n->op];
        /* A node without a written name is called <OpType>_<position> on parse:
         * that name need not be written. */
        char dflt[96];
        snprintf(dflt, sizeof dflt, "%s_%d", info->name, i);
        if (n->name && !strcmp(n->name, dflt)) {
            sb_puts(&b, "  ");
        } else {
            sb_puts(&b, "  [");
            print_name(&b, n->name ? n->name : "");
            sb_puts(&b, "] ");
        }
        for (int k = 0; k < n->n_out; k++) print_slot(&b, n->out[k], k, n->n_out);
        sb_puts(&b, " = ");
        if (info->domain[0]) {
            sb_puts(&b, info->domain);
            sb_puts(&b, ".");
        }
        sb_puts(&b, info->name);
        if (n->n_attr) {
            sb_puts(&b, " <");
            for (int a = 0; a < n->n_attr; a++) {
                if (a) sb_puts(&b, ", ");
                print_attr(&b, &n->attrs[a]);
            }
            sb_puts(&b, ">");
        }
        sb_puts(&b, " (");
        for (int k = 0; k < n->n_in; k++) print_slot(&b, n->in[k], k, n->n_in);
        sb_puts(&b, ")\n");
    }
    sb_puts(&b, "}\n");
    free(persistent);
    return b.buf;
}

/* config.c - loads aptomod's YAML configuration with libyaml's document API (every node keeps its line:column
 * mark) and applies `--set key=VALUE` overrides. Decision: each value is checked against the schema table
 * (config_schema.c) as it is read, so every fault is reported as FILE:LINE:COLUMN plus the dotted key; nothing
 * unknown or mistyped is ever silently ignored or defaulted. Typed reads: config_access.c; YAML out: config_dump.c. */
#include "config_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_NAME 64 /* one key component */

typedef struct walk {
    apt_config *cfg;
    const char *name; /* file name, or NULL for --set */
    yaml_document_t *doc;
    apt_error *err;
    size_t keyline, keycol; /* 1-based line:column of the key being read: "FILE:LINE:COL" sources name the key */
} walk;

static int walk_node(walk *w, const char *path, yaml_node_t *node);

/* ---- values ---- */

size_t apt_cfg_index(const apt_config_key *k)
{
    return (size_t)(k - apt_config_key_at(0));
}

void apt_cfg_val_free(cfg_val *v)
{
    free(v->s);
    for (size_t i = 0; v->sv && i < v->n; i++)
        free(v->sv[i]);
    free(v->sv);
    free(v->fv);
    free(v->src);
    memset(v, 0, sizeof *v);
}

/* ---- messages ---- */

/* Every error goes through here: "FILE:LINE:COL: key 'a.b': ..." for files, "--set a.b: ..." for overrides. */
static int werr(const walk *w, const yaml_node_t *node, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int werr(const walk *w, const yaml_node_t *node, const char *key, const char *fmt, ...)
{
    char msg[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!w->name)
        return apt_err(w->err, APT_EINVAL, "--set %s: %s", key && *key ? key : "(top level)", msg);
    size_t line = node ? node->start_mark.line + 1 : 1, col = node ? node->start_mark.column + 1 : 1;
    if (key && *key)
        return apt_err(w->err, APT_EINVAL, "%s:%zu:%zu: key '%s': %s", w->name, line, col, key, msg);
    return apt_err(w->err, APT_EINVAL, "%s:%zu:%zu: %s", w->name, line, col, msg);
}

/* The next path components below prefix ("" = top level), comma-separated: for "unknown key" hints. */
static void children(const char *prefix, char *buf, size_t cap)
{
    size_t pl = strlen(prefix), used = 0;
    const char *last = NULL;
    size_t lastn = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const char *k = apt_config_key_at(i)->key;
        if (pl && (strncmp(k, prefix, pl) || k[pl] != '.'))
            continue;
        const char *c = pl ? k + pl + 1 : k;
        size_t n = strcspn(c, ".");
        if (last && n == lastn && !strncmp(c, last, n))
            continue; /* sections are contiguous in the table */
        last = c, lastn = n;
        int m = snprintf(buf + used, cap - used, "%s%.*s", used ? ", " : "", (int)n, c);
        if (m < 0 || (size_t)m >= cap - used)
            return;
        used += (size_t)m;
    }
}

static bool is_section(const char *path)
{
    size_t pl = strlen(path);
    if (!pl)
        return true;
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const char *k = apt_config_key_at(i)->key;
        if (!strncmp(k, path, pl) && k[pl] == '.')
            return true;
    }
    return false;
}

/* What a key accepts, e.g. "int in [8, 4096]". */
static void expected(const apt_config_key *k, char *buf, size_t cap)
{
    const char *ne = (k->flags & APT_CFG_NONEMPTY) ? "non-empty " : "";
    char kids[160];
    switch (k->type) {
    case APT_CFG_STR: snprintf(buf, cap, "%sstring", ne); break;
    case APT_CFG_INT: snprintf(buf, cap, "int in [%lld, %lld]", (long long)k->min, (long long)k->max); break;
    case APT_CFG_FLOAT:
        snprintf(buf, cap, "float in %c%g, %g]", (k->flags & APT_CFG_MIN_OPEN) ? '(' : '[', k->min, k->max);
        break;
    case APT_CFG_BOOL: snprintf(buf, cap, "bool (true or false)"); break;
    case APT_CFG_ENUM: snprintf(buf, cap, "one of %s", k->choices); break;
    case APT_CFG_STR_LIST:
    case APT_CFG_FLOAT_LIST: {
        const char *what = k->type == APT_CFG_STR_LIST ? "strings" : "numbers";
        if (k->flags & APT_CFG_LEN_0_OR_MAX)
            snprintf(buf, cap, "list of 0 or %d %s%s", (int)k->max, ne, what);
        else
            snprintf(buf, cap, "list of %d to %d %s%s", (int)k->min, (int)k->max, ne, what);
        break;
    }
    case APT_CFG_UNION:
        children(k->key, kids, sizeof kids);
        snprintf(buf, cap, "file path (string) or mapping of {%s}", kids);
        break;
    }
}

/* ---- scalars: YAML 1.2 core-schema resolution of plain scalars; quoted ones are always strings ---- */

enum { SC_NULL, SC_BOOL, SC_INT, SC_FLOAT, SC_STR };
typedef struct scalar {
    int kind;
    const char *text;
    size_t len;
    int64_t i;
    double f;
    bool b;
} scalar;

static bool is_one_of(const char *t, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(t, *set))
            return true;
    return false;
}

static size_t span(const char *t, size_t i, size_t n, const char *set)
{
    while (i < n && t[i] && strchr(set, t[i]))
        i++;
    return i;
}

static bool is_float_text(const char *t, size_t n)
{
    static const char *dig = "0123456789";
    size_t i = (n && (t[0] == '+' || t[0] == '-')) ? 1 : 0, j = span(t, i, n, dig), nint = j - i, nfrac = 0;
    i = j;
    if (i < n && t[i] == '.') {
        j = span(t, i + 1, n, dig);
        nfrac = j - i - 1;
        i = j;
    }
    if (!nint && !nfrac)
        return false;
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-'))
            i++;
        j = span(t, i, n, dig);
        if (j == i)
            return false;
        i = j;
    }
    return i == n;
}

static bool is_int_text(const char *t, size_t n)
{
    size_t i = (n && (t[0] == '+' || t[0] == '-')) ? 1 : 0;
    return n > i && span(t, i, n, "0123456789") == n;
}

static void scalar_resolve(const yaml_node_t *node, scalar *sc)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL}, *const falses[] = {"false", "False", "FALSE",
                                                                                          NULL};
    static const char *const infs[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", NULL};
    static const char *const ninfs[] = {"-.inf", "-.Inf", "-.INF", NULL}, *const nans[] = {".nan", ".NaN", ".NAN",
                                                                                            NULL};
    memset(sc, 0, sizeof *sc);
    sc->text = (const char *)node->data.scalar.value;
    sc->len = node->data.scalar.length;
    sc->kind = SC_STR;
    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || strlen(sc->text) != sc->len)
        return;
    const char *t = sc->text;
    size_t n = sc->len;
    char *end;
    if (is_one_of(t, nulls)) {
        sc->kind = SC_NULL;
    } else if (is_one_of(t, trues) || is_one_of(t, falses)) {
        sc->kind = SC_BOOL, sc->b = is_one_of(t, trues);
    } else if (is_one_of(t, infs) || is_one_of(t, ninfs) || is_one_of(t, nans)) {
        sc->kind = SC_FLOAT, sc->f = is_one_of(t, nans) ? NAN : is_one_of(t, infs) ? INFINITY : -INFINITY;
    } else if (n > 2 && t[0] == '0' && (t[1] == 'x' || t[1] == 'o') &&
               span(t, 2, n, t[1] == 'x' ? "0123456789abcdefABCDEF" : "01234567") == n) {
        errno = 0;
        unsigned long long u = strtoull(t + 2, &end, t[1] == 'x' ? 16 : 8);
        sc->kind = (errno || u > INT64_MAX) ? SC_FLOAT : SC_INT;
        sc->i = (int64_t)u, sc->f = (double)u;
    } else if (is_int_text(t, n)) {
        errno = 0;
        long long v = strtoll(t, &end, 10);
        sc->kind = errno ? SC_FLOAT : SC_INT;
        sc->i = v, sc->f = errno ? strtod(t, &end) : (double)v;
    } else if (is_float_text(t, n)) {
        sc->kind = SC_FLOAT, sc->f = strtod(t, &end);
    }
}

/* "int 5", "string 'abc'", "a sequence": what was found, for "got ..." */
static void describe(const yaml_node_t *node, char *buf, size_t cap)
{
    if (!node) {
        snprintf(buf, cap, "nothing");
        return;
    }
    if (node->type != YAML_SCALAR_NODE) {
        snprintf(buf, cap, node->type == YAML_SEQUENCE_NODE ? "a sequence" : "a mapping");
        return;
    }
    scalar sc;
    scalar_resolve(node, &sc);
    int n = sc.len > 60 ? 57 : (int)sc.len;
    const char *more = sc.len > 60 ? "..." : "";
    switch (sc.kind) {
    case SC_NULL: snprintf(buf, cap, "null"); break;
    case SC_BOOL: snprintf(buf, cap, "bool %.*s", n, sc.text); break;
    case SC_INT: snprintf(buf, cap, "int %.*s%s", n, sc.text, more); break;
    case SC_FLOAT: snprintf(buf, cap, "float %.*s%s", n, sc.text, more); break;
    default: snprintf(buf, cap, "string '%.*s%s'", n, sc.text, more); break;
    }
}

static int type_error(const walk *w, const yaml_node_t *node, const char *path, const apt_config_key *k)
{
    char exp[200], got[100];
    expected(k, exp, sizeof exp);
    describe(node, got, sizeof got);
    return werr(w, node, path, "expected %s, got %s", exp, got);
}

/* A string value: bounded, no NUL inside; plain scalars that resolve to numbers/bools/null are not strings. */
static int to_string(const walk *w, const yaml_node_t *node, const char *path, const apt_config_key *k, char **out)
{
    scalar sc;
    if (!node || node->type != YAML_SCALAR_NODE)
        return type_error(w, node, path, k);
    scalar_resolve(node, &sc);
    if (sc.kind != SC_STR) {
        char exp[200], got[100];
        expected(k, exp, sizeof exp);
        describe(node, got, sizeof got);
        return werr(w, node, path, "expected %s, got %s (quote it to make it a string)", exp, got);
    }
    if (sc.len > APT_CONFIG_MAX_STR)
        return werr(w, node, path, "string of %zu bytes is longer than %d", sc.len, APT_CONFIG_MAX_STR);
    if (memchr(sc.text, '\0', sc.len))
        return werr(w, node, path, "string contains a NUL character");
    if (!sc.len && (k->flags & APT_CFG_NONEMPTY))
        return type_error(w, node, path, k);
    if (!(*out = strndup(sc.text, sc.len)))
        return apt_err(w->err, APT_ENOMEM, "config: out of memory");
    return APT_OK;
}

static bool in_range(const apt_config_key *k, double v)
{
    return isfinite(v) && ((k->flags & APT_CFG_MIN_OPEN) ? v > k->min : v >= k->min) && v <= k->max;
}

static int to_number(const walk *w, const yaml_node_t *node, const char *path, const apt_config_key *k, bool integer,
                     int64_t *iv, double *fv)
{
    scalar sc;
    if (!node || node->type != YAML_SCALAR_NODE)
        return type_error(w, node, path, k);
    scalar_resolve(node, &sc);
    bool ok = sc.kind == SC_INT || (sc.kind == SC_FLOAT && (!integer || (isfinite(sc.f) && floor(sc.f) == sc.f &&
                                                                          fabs(sc.f) <= 9007199254740992.0)));
    if (!ok)
        return type_error(w, node, path, k);
    double v = sc.kind == SC_INT ? (double)sc.i : sc.f;
    if (!in_range(k, v)) {
        char exp[200];
        expected(k, exp, sizeof exp);
        return werr(w, node, path, "expected %s, got %s", exp, sc.text);
    }
    if (iv)
        *iv = sc.kind == SC_INT ? sc.i : (int64_t)sc.f;
    if (fv)
        *fv = v;
    return APT_OK;
}

/* A list: length checked before anything is allocated; each entry named "key[i]" in errors. */
static int to_list(const walk *w, yaml_node_t *node, const char *path, const apt_config_key *k, cfg_val *out)
{
    if (!node || node->type != YAML_SEQUENCE_NODE)
        return type_error(w, node, path, k);
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    bool len_ok = (k->flags & APT_CFG_LEN_0_OR_MAX) ? (n == 0 || n == (size_t)k->max)
                                                    : (n >= (size_t)k->min && n <= (size_t)k->max);
    if (n > APT_CONFIG_MAX_LIST || !len_ok) {
        char exp[200];
        expected(k, exp, sizeof exp);
        return werr(w, node, path, "expected %s, got %zu entries", exp, n);
    }
    bool strs = k->type == APT_CFG_STR_LIST;
    out->n = n;
    if (strs ? !(out->sv = calloc(n ? n : 1, sizeof *out->sv)) : !(out->fv = calloc(n ? n : 1, sizeof *out->fv)))
        return apt_err(w->err, APT_ENOMEM, "config: out of memory");
    apt_config_key ek = *k; /* an entry: a string, or any finite number */
    ek.type = strs ? APT_CFG_STR : APT_CFG_FLOAT;
    ek.min = -INFINITY, ek.max = INFINITY, ek.flags &= APT_CFG_NONEMPTY;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(w->doc, node->data.sequence.items.start[i]);
        char epath[300];
        snprintf(epath, sizeof epath, "%s[%zu]", path, i);
        int rc = strs ? to_string(w, item, epath, &ek, &out->sv[i]) : to_number(w, item, epath, &ek, false, NULL,
                                                                                  &out->fv[i]);
        if (rc)
            return rc;
        if (!strs && !isfinite(out->fv[i]))
            return werr(w, item, epath, "expected a finite number, got %s", (char *)item->data.scalar.value);
    }
    return APT_OK;
}

/* Convert one node to the value of key k (a union given a mapping only records its form here). */
static int convert(const walk *w, yaml_node_t *node, const char *path, const apt_config_key *k, cfg_val *out)
{
    scalar sc;
    memset(out, 0, sizeof *out);
    switch (k->type) {
    case APT_CFG_STR: return to_string(w, node, path, k, &out->s);
    case APT_CFG_INT: return to_number(w, node, path, k, true, &out->i, NULL);
    case APT_CFG_FLOAT: return to_number(w, node, path, k, false, NULL, &out->f);
    case APT_CFG_BOOL:
        if (!node || node->type != YAML_SCALAR_NODE)
            return type_error(w, node, path, k);
        scalar_resolve(node, &sc);
        if (sc.kind != SC_BOOL)
            return type_error(w, node, path, k);
        out->b = sc.b;
        return APT_OK;
    case APT_CFG_ENUM: {
        if (!node || node->type != YAML_SCALAR_NODE)
            return type_error(w, node, path, k);
        const char *t = (const char *)node->data.scalar.value, *c = k->choices;
        size_t tn = node->data.scalar.length;
        for (int idx = 0; *c; idx++) {
            size_t cn = strcspn(c, "|");
            if (cn == tn && !memcmp(c, t, tn) && tn) {
                out->i = idx;
                if (!(out->s = strndup(c, cn)))
                    return apt_err(w->err, APT_ENOMEM, "config: out of memory");
                return APT_OK;
            }
            c += cn + (c[cn] == '|');
        }
        return type_error(w, node, path, k);
    }
    case APT_CFG_STR_LIST:
    case APT_CFG_FLOAT_LIST: {
        int rc = to_list(w, node, path, k, out);
        if (rc)
            apt_cfg_val_free(out);
        return rc;
    }
    case APT_CFG_UNION:
        if (node && node->type == YAML_MAPPING_NODE) {
            out->i = APT_CFG_FORM_MAPPING;
            return (out->s = strdup("")) ? APT_OK : apt_err(w->err, APT_ENOMEM, "config: out of memory");
        }
        out->i = APT_CFG_FORM_STRING;
        return to_string(w, node, path, k, &out->s);
    }
    return apt_err(w->err, APT_EINVAL, "config: key '%s' has a bad schema type", path);
}

/* ---- parsing text with libyaml ---- */

static int yaml_fail(const yaml_parser_t *p, const char *text, const char *name, const char *setkey, apt_error *err)
{
    if (p->error == YAML_MEMORY_ERROR)
        return apt_err(err, APT_ENOMEM, "%s: out of memory while parsing YAML", name ? name : "--set");
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
    if (p->error == YAML_READER_ERROR) { /* only a byte offset: count lines up to it */
        line = 1, col = 1;
        for (size_t i = 0; i < p->problem_offset && text[i]; i++)
            text[i] == '\n' ? (line++, col = 1) : col++;
    }
    char ctx[160] = "";
    const char *prob = p->problem ? p->problem : "unknown problem";
    if (!name) { /* one short value: quote it rather than point into it */
        if (p->context)
            snprintf(ctx, sizeof ctx, " (%s)", p->context);
        return apt_err(err, APT_EINVAL, "--set %s: bad YAML value '%.60s': %s%s", setkey, text, prob, ctx);
    }
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at line %zu)", p->context, p->context_mark.line + 1);
    return apt_err(err, APT_EINVAL, "%s:%zu:%zu: YAML syntax error: %s%s", name, line, col, prob, ctx);
}

/* Parse exactly one YAML document from text; name (file) or setkey (--set) label the messages. */
static int parse_text(const char *text, size_t len, const char *name, const char *setkey, yaml_document_t *doc,
                      apt_error *err)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return apt_err(err, APT_ENOMEM, "config: out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    int rc = APT_OK;
    if (!yaml_parser_load(&p, doc)) {
        rc = yaml_fail(&p, text, name, setkey, err);
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_document_t extra;
    if (!yaml_parser_load(&p, &extra)) {
        rc = yaml_fail(&p, text, name, setkey, err);
    } else {
        yaml_node_t *r = yaml_document_get_root_node(&extra);
        if (r && name)
            rc = apt_err(err, APT_EINVAL, "%s:%zu:%zu: only one YAML document is allowed", name,
                         r->start_mark.line + 1, r->start_mark.column + 1);
        else if (r)
            rc = apt_err(err, APT_EINVAL, "--set %s: bad YAML value: more than one document", setkey);
        yaml_document_delete(&extra);
    }
    if (rc)
        yaml_document_delete(doc);
    yaml_parser_delete(&p);
    return rc;
}

/* The schema default of key k (the same parser as files, so a bad default fails the tests, not a user). */
static int default_val(const apt_config_key *k, cfg_val *out, apt_error *err)
{
    yaml_document_t doc;
    int rc = parse_text(k->def, strlen(k->def), "(schema default)", NULL, &doc, err);
    if (rc)
        return rc;
    walk w = {NULL, "(schema default)", &doc, err, 0, 0};
    rc = convert(&w, yaml_document_get_root_node(&doc), k->key, k, out);
    yaml_document_delete(&doc);
    return rc;
}

static int config_defaults(apt_config **out, apt_error *err)
{
    apt_config *cfg = calloc(1, sizeof *cfg);
    size_t n = apt_config_key_count();
    if (!cfg || !(cfg->v = calloc(n, sizeof *cfg->v))) {
        free(cfg);
        return apt_err(err, APT_ENOMEM, "config: out of memory");
    }
    cfg->n = n;
    for (size_t i = 0; i < n; i++) {
        int rc = default_val(apt_config_key_at(i), &cfg->v[i], err);
        if (rc) {
            apt_config_destroy(&cfg);
            return rc;
        }
    }
    *out = cfg;
    return APT_OK;
}

/* ---- walking the document ---- */

static int set_value(walk *w, const yaml_node_t *node, const apt_config_key *k, cfg_val *v)
{
    char src[300];
    if (w->name)
        snprintf(src, sizeof src, "%s:%zu:%zu", w->name,
                 w->keyline ? w->keyline : node ? node->start_mark.line + 1 : 1,
                 w->keyline ? w->keycol : node ? node->start_mark.column + 1 : 1);
    if (!(v->src = strdup(w->name ? src : "--set"))) {
        apt_cfg_val_free(v);
        return apt_err(w->err, APT_ENOMEM, "config: out of memory");
    }
    cfg_val *dst = &w->cfg->v[apt_cfg_index(k)];
    apt_cfg_val_free(dst);
    *dst = *v;
    return APT_OK;
}

static int unknown_key(const walk *w, const yaml_node_t *node, const char *path)
{
    char parent[300], kids[320];
    snprintf(parent, sizeof parent, "%s", path);
    do { /* the nearest enclosing section */
        char *dot = strrchr(parent, '.');
        *(dot ? dot : parent) = '\0';
    } while (*parent && !is_section(parent));
    children(parent, kids, sizeof kids);
    return werr(w, node, path, "unknown key (%s has: %s)", *parent ? parent : "top level", kids);
}

static int walk_mapping(walk *w, const char *path, yaml_node_t *node)
{
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start, *top = node->data.mapping.pairs.top;
    for (yaml_node_pair_t *pr = pairs; pr < top; pr++) {
        yaml_node_t *kn = yaml_document_get_node(w->doc, pr->key), *vn = yaml_document_get_node(w->doc, pr->value);
        char got[100], child[300];
        if (!kn || kn->type != YAML_SCALAR_NODE) {
            describe(kn, got, sizeof got);
            return werr(w, kn, path, "mapping keys must be names, got %s", got);
        }
        const char *name = (const char *)kn->data.scalar.value;
        size_t len = kn->data.scalar.length;
        snprintf(child, sizeof child, "%s%s%.*s", path, *path ? "." : "", MAX_NAME, name);
        if (!len || len > MAX_NAME || strlen(name) != len)
            return werr(w, kn, child, "not a key name (1 to %d characters)", MAX_NAME);
        if (strchr(name, '.') && w->name)
            return werr(w, kn, child, "dotted keys are for --set; write nested mappings in a file");
        /* earlier keys here were all valid and distinct, so this scan is bounded by the schema */
        for (yaml_node_pair_t *q = pairs; q < pr; q++) {
            yaml_node_t *qn = yaml_document_get_node(w->doc, q->key);
            if (qn->data.scalar.length == len && !memcmp(qn->data.scalar.value, name, len))
                return werr(w, kn, child, "duplicate key (first at line %zu)", qn->start_mark.line + 1);
        }
        if (!apt_config_key_find(child) && !is_section(child))
            return unknown_key(w, kn, child);
        w->keyline = kn->start_mark.line + 1;
        w->keycol = kn->start_mark.column + 1;
        int rc = walk_node(w, child, vn);
        if (rc)
            return rc;
    }
    return APT_OK;
}

/* The keys below a union start from their defaults whenever it takes the mapping form. */
static int reset_below(walk *w, const char *path)
{
    size_t pl = strlen(path);
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const apt_config_key *sub = apt_config_key_at(i);
        if (strncmp(sub->key, path, pl) || sub->key[pl] != '.')
            continue;
        cfg_val d;
        int rc = default_val(sub, &d, w->err);
        if (rc)
            return rc;
        apt_cfg_val_free(&w->cfg->v[i]);
        w->cfg->v[i] = d;
    }
    return APT_OK;
}

/* The union above path, if any (physics.probe for physics.probe.defocus_m). */
static const apt_config_key *parent_union(const char *path)
{
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const apt_config_key *u = apt_config_key_at(i);
        size_t ul = strlen(u->key);
        if (u->type == APT_CFG_UNION && !strncmp(path, u->key, ul) && path[ul] == '.')
            return u;
    }
    return NULL;
}

static int walk_node(walk *w, const char *path, yaml_node_t *node)
{
    const apt_config_key *k = apt_config_key_find(path);
    if (k) {
        cfg_val v;
        int rc;
        /* `--set physics.probe.defocus_m=...` while the probe is a file path switches it to the inline model */
        const apt_config_key *u = parent_union(path);
        if (u && w->cfg->v[apt_cfg_index(u)].i != APT_CFG_FORM_MAPPING) {
            cfg_val uv = {.i = APT_CFG_FORM_MAPPING, .s = strdup("")};
            if (!uv.s)
                return apt_err(w->err, APT_ENOMEM, "config: out of memory");
            if ((rc = set_value(w, node, u, &uv)) || (rc = reset_below(w, u->key)))
                return rc;
        }
        if ((rc = convert(w, node, path, k, &v)) || (rc = set_value(w, node, k, &v)))
            return rc;
        if (k->type != APT_CFG_UNION)
            return APT_OK;
        /* either form starts the keys below from their defaults: a path leaves them unused, a mapping sets some */
        if ((rc = reset_below(w, path)) || v.i != APT_CFG_FORM_MAPPING)
            return rc;
        return walk_mapping(w, path, node);
    }
    if (!is_section(path))
        return unknown_key(w, node, path);
    scalar sc;
    if (node && node->type == YAML_SCALAR_NODE)
        scalar_resolve(node, &sc);
    if (!node || (node->type == YAML_SCALAR_NODE && sc.kind == SC_NULL))
        return APT_OK; /* an empty section ("detector:" with its keys commented out) */
    if (node->type != YAML_MAPPING_NODE) {
        char kids[320], got[100];
        children(path, kids, sizeof kids);
        describe(node, got, sizeof got);
        if (!*path)
            return werr(w, node, NULL, "expected a mapping of sections (%s) at top level, got %s", kids, got);
        return werr(w, node, path, "expected a mapping of {%s}, got %s", kids, got);
    }
    return walk_mapping(w, path, node);
}

/* ---- public: load, set, clone, destroy ---- */

int apt_config_load_string(const char *text, size_t len, const char *name, apt_config **out, apt_error *err)
{
    if (!out)
        return apt_err(err, APT_EINVAL, "apt_config_load_string: out is NULL");
    *out = NULL;
    name = name ? name : "(config)";
    if (len > APT_CONFIG_MAX_FILE_BYTES)
        return apt_err(err, APT_ERANGE, "%s: %zu bytes, larger than the %u-byte bound for a config", name, len,
                       APT_CONFIG_MAX_FILE_BYTES);
    apt_config *cfg;
    int rc = config_defaults(&cfg, err);
    if (rc)
        return rc;
    if (len) {
        yaml_document_t doc;
        if (!text) {
            rc = apt_err(err, APT_EINVAL, "%s: no text", name);
        } else if (!(rc = parse_text(text, len, name, NULL, &doc, err))) {
            walk w = {cfg, name, &doc, err, 0, 0};
            rc = walk_node(&w, "", yaml_document_get_root_node(&doc));
            yaml_document_delete(&doc);
        }
    }
    if (!rc && !(cfg->name = strdup(name)))
        rc = apt_err(err, APT_ENOMEM, "config: out of memory");
    if (rc)
        apt_config_destroy(&cfg);
    *out = cfg;
    return rc;
}

int apt_config_load(const char *path, apt_config **out, apt_error *err)
{
    if (!out)
        return apt_err(err, APT_EINVAL, "apt_config_load: out is NULL");
    *out = NULL;
    if (!path)
        return config_defaults(out, err);
    FILE *f = fopen(path, "rb");
    if (!f)
        return apt_err(err, APT_EIO, "%s: %s", path, strerror(errno));
    struct stat st; /* fopen opens a directory; only the read would fail, with a less helpful message */
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return apt_err(err, APT_EINVAL, "%s: is a directory, not a YAML configuration file", path);
    }
    char *buf = malloc(APT_CONFIG_MAX_FILE_BYTES + 1);
    if (!buf) {
        fclose(f);
        return apt_err(err, APT_ENOMEM, "config: out of memory");
    }
    size_t len = fread(buf, 1, APT_CONFIG_MAX_FILE_BYTES + 1, f);
    int bad = ferror(f), bad_errno = errno;
    fclose(f);
    int rc;
    if (bad)
        rc = apt_err(err, APT_EIO, "%s: read error: %s", path, strerror(bad_errno));
    else if (len > APT_CONFIG_MAX_FILE_BYTES)
        rc = apt_err(err, APT_ERANGE, "%s: larger than the %u-byte bound for a config file", path,
                     APT_CONFIG_MAX_FILE_BYTES);
    else
        rc = apt_config_load_string(buf, len, path, out, err);
    free(buf);
    return rc;
}

int apt_config_set_value(apt_config *cfg, const char *key, const char *value, apt_error *err)
{
    if (!cfg || !key || !value)
        return apt_err(err, APT_EINVAL, "apt_config_set_value: NULL argument");
    size_t kl = strlen(key);
    bool ok = kl > 0 && kl < 256 && key[0] != '.' && key[kl - 1] != '.' && !strstr(key, "..");
    for (size_t i = 0; ok && i < kl; i++)
        ok = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.", key[i]) != NULL;
    if (!ok)
        return apt_err(err, APT_EINVAL, "--set '%.100s': not a dotted key (expected e.g. tomo.n_star=31)", key);
    size_t vl = strnlen(value, APT_CONFIG_MAX_FILE_BYTES + 1);
    if (vl > APT_CONFIG_MAX_FILE_BYTES)
        return apt_err(err, APT_ERANGE, "--set %s: value longer than %u bytes", key, APT_CONFIG_MAX_FILE_BYTES);
    const apt_config_key *k = apt_config_key_find(key);
    if (!vl && k && k->type == APT_CFG_STR)
        value = "\"\"", vl = 2; /* `--set metadata.endpoint=` turns it off */

    apt_config *tmp;
    int rc = apt_config_clone(cfg, &tmp, err);
    if (rc)
        return rc;
    yaml_document_t doc;
    if ((rc = parse_text(value, vl, NULL, key, &doc, err))) {
        apt_config_destroy(&tmp);
        return rc;
    }
    walk w = {tmp, NULL, &doc, err, 0, 0};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root && k)
        rc = type_error(&w, NULL, key, k);
    else
        rc = walk_node(&w, key, root);
    yaml_document_delete(&doc);
    if (!rc) { /* commit: swap the contents, free the old ones */
        apt_config old = *cfg;
        *cfg = *tmp;
        *tmp = old;
    }
    apt_config_destroy(&tmp);
    return rc;
}

int apt_config_set(apt_config *cfg, const char *assignment, apt_error *err)
{
    if (!cfg || !assignment)
        return apt_err(err, APT_EINVAL, "apt_config_set: NULL argument");
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment || eq - assignment >= 256)
        return apt_err(err, APT_EINVAL, "--set '%.100s': expected dotted.key=VALUE (e.g. tomo.n_star=31)",
                       assignment);
    char key[256];
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = '\0';
    return apt_config_set_value(cfg, key, eq + 1, err);
}

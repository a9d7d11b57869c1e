/* config_access.c - typed reads of a loaded configuration, plus clone/compare/destroy. Decision: asking for an
 * unknown key or the wrong type is a programming error that is reported (err or stderr) with a zero value, never an
 * abort, because these run inside the daemon; values themselves were range-checked when loaded. */
#include "config_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int val_copy(const cfg_val *a, cfg_val *b)
{
    memset(b, 0, sizeof *b);
    b->i = a->i, b->f = a->f, b->b = a->b, b->n = a->n;
    if ((a->s && !(b->s = strdup(a->s))) || (a->src && !(b->src = strdup(a->src))))
        goto oom;
    if (a->sv) {
        if (!(b->sv = calloc(a->n ? a->n : 1, sizeof *b->sv)))
            goto oom;
        for (size_t i = 0; i < a->n; i++)
            if (!(b->sv[i] = strdup(a->sv[i])))
                goto oom;
    }
    if (a->fv) {
        if (!(b->fv = malloc((a->n ? a->n : 1) * sizeof *b->fv)))
            goto oom;
        memcpy(b->fv, a->fv, a->n * sizeof *b->fv);
    }
    return APT_OK;
oom:
    apt_cfg_val_free(b);
    return APT_ENOMEM;
}

static bool val_equal(const apt_config_key *k, const cfg_val *a, const cfg_val *b)
{
    switch (k->type) {
    case APT_CFG_STR:
    case APT_CFG_ENUM: return !strcmp(a->s, b->s);
    case APT_CFG_UNION: return a->i == b->i && !strcmp(a->s, b->s);
    case APT_CFG_INT: return a->i == b->i;
    case APT_CFG_FLOAT: return a->f == b->f;
    case APT_CFG_BOOL: return a->b == b->b;
    case APT_CFG_STR_LIST:
        if (a->n != b->n)
            return false;
        for (size_t i = 0; i < a->n; i++)
            if (strcmp(a->sv[i], b->sv[i]))
                return false;
        return true;
    case APT_CFG_FLOAT_LIST:
        return a->n == b->n && (a->n == 0 || !memcmp(a->fv, b->fv, a->n * sizeof *a->fv));
    }
    return false;
}

int apt_config_clone(const apt_config *cfg, apt_config **out, apt_error *err)
{
    if (!cfg || !out)
        return apt_err(err, APT_EINVAL, "apt_config_clone: NULL argument");
    *out = NULL;
    apt_config *c = calloc(1, sizeof *c);
    if (!c || !(c->v = calloc(cfg->n, sizeof *c->v))) {
        free(c);
        return apt_err(err, APT_ENOMEM, "config: out of memory");
    }
    c->n = cfg->n;
    if (cfg->name && !(c->name = strdup(cfg->name))) {
        apt_config_destroy(&c);
        return apt_err(err, APT_ENOMEM, "config: out of memory");
    }
    for (size_t i = 0; i < cfg->n; i++)
        if (val_copy(&cfg->v[i], &c->v[i])) {
            apt_config_destroy(&c);
            return apt_err(err, APT_ENOMEM, "config: out of memory");
        }
    *out = c;
    return APT_OK;
}

void apt_config_destroy(apt_config **cfg)
{
    if (!cfg || !*cfg)
        return;
    for (size_t i = 0; (*cfg)->v && i < (*cfg)->n; i++)
        apt_cfg_val_free(&(*cfg)->v[i]);
    free((*cfg)->v);
    free((*cfg)->name);
    free(*cfg);
    *cfg = NULL;
}

static const char *type_name(apt_config_type t)
{
    static const char *names[] = {"string", "int", "float", "bool", "enum", "list of strings", "list of floats",
                                  "string-or-mapping"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

/* ---- public: accessors ---- */

static const cfg_val *get(const apt_config *cfg, const char *key, unsigned types, const char *want, apt_error *err,
                          const apt_config_key **kout)
{
    const apt_config_key *k = apt_config_key_find(key);
    char msg[300];
    if (!cfg)
        snprintf(msg, sizeof msg, "config: %s of '%s' from a NULL config", want, key ? key : "(null)");
    else if (!k)
        snprintf(msg, sizeof msg, "config: %s of unknown key '%s'", want, key ? key : "(null)");
    else if (!(types & (1u << k->type)))
        snprintf(msg, sizeof msg, "config: %s of key '%s', which is of type %s", want, key, type_name(k->type));
    else {
        if (kout)
            *kout = k;
        return &cfg->v[apt_cfg_index(k)];
    }
    if (err) /* a programming error: report it, never abort */
        apt_err(err, APT_EINVAL, "%s", msg);
    else
        fprintf(stderr, "aptomo: %s\n", msg);
    return NULL;
}

#define T(t) (1u << (t))

const char *apt_config_str(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_STR) | T(APT_CFG_ENUM) | T(APT_CFG_UNION), "string", err, NULL);
    return v ? v->s : "";
}

int64_t apt_config_int(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_INT), "int", err, NULL);
    return v ? v->i : 0;
}

double apt_config_float(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_FLOAT), "float", err, NULL);
    return v ? v->f : 0.0;
}

bool apt_config_bool(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_BOOL), "bool", err, NULL);
    return v ? v->b : false;
}

int apt_config_enum(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_ENUM), "enum", err, NULL);
    return v ? (int)v->i : -1;
}

size_t apt_config_list_len(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_STR_LIST) | T(APT_CFG_FLOAT_LIST), "list", err, NULL);
    return v ? v->n : 0;
}

const char *apt_config_list_str(const apt_config *cfg, const char *key, size_t i, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_STR_LIST), "list of strings", err, NULL);
    if (v && i >= v->n) {
        apt_err(err, APT_ERANGE, "config: index %zu of '%s', which has %zu entries", i, key, v->n);
        return "";
    }
    return v ? v->sv[i] : "";
}

double apt_config_list_float(const apt_config *cfg, const char *key, size_t i, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_FLOAT_LIST), "list of floats", err, NULL);
    if (v && i >= v->n) {
        apt_err(err, APT_ERANGE, "config: index %zu of '%s', which has %zu entries", i, key, v->n);
        return 0.0;
    }
    return v ? v->fv[i] : 0.0;
}

int apt_config_union_form(const apt_config *cfg, const char *key, apt_error *err)
{
    const cfg_val *v = get(cfg, key, T(APT_CFG_UNION), "union form", err, NULL);
    return v ? (int)v->i : APT_CFG_FORM_NONE;
}

const char *apt_config_source(const apt_config *cfg, const char *key)
{
    const apt_config_key *k = apt_config_key_find(key);
    if (!cfg || !k)
        return NULL;
    const char *src = cfg->v[apt_cfg_index(k)].src;
    return src ? src : "default";
}

bool apt_config_is_set(const apt_config *cfg, const char *key)
{
    const apt_config_key *k = apt_config_key_find(key);
    return cfg && k && cfg->v[apt_cfg_index(k)].src;
}

bool apt_config_equal(const apt_config *a, const apt_config *b, const char *key)
{
    if (!a || !b)
        return false;
    if (key) {
        const apt_config_key *k = apt_config_key_find(key);
        return k && val_equal(k, &a->v[apt_cfg_index(k)], &b->v[apt_cfg_index(k)]);
    }
    return apt_config_first_diff(a, b) == NULL;
}

const char *apt_config_first_diff(const apt_config *a, const apt_config *b)
{
    for (size_t i = 0; i < apt_config_key_count(); i++)
        if (!val_equal(apt_config_key_at(i), &a->v[i], &b->v[i]))
            return apt_config_key_at(i)->key;
    return NULL;
}

/* Sources are "FILE:LINE:COL" (the key in the file), "--set" or NULL (default): the message then reads like the
   loader's own, so an operator finds the line whatever stage refused the value. */
static int blame(const apt_config *cfg, const char *key, apt_error *err, int code, const char *msg)
{
    size_t kl = strlen(key);
    char sub[256];
    const char *colon = strstr(msg, ": ");
    if (!strncmp(msg, key, kl) && msg[kl] == ':' && msg[kl + 1] == ' ') {
        msg += kl + 2; /* the refusing code named the key already */
    } else if (!strncmp(msg, key, kl) && msg[kl] == '.' && colon && (size_t)(colon - msg) < sizeof sub) {
        memcpy(sub, msg, (size_t)(colon - msg)); /* it named a key below this one (physics.probe.coherence) */
        sub[colon - msg] = '\0';
        if (apt_config_key_find(sub))
            key = sub, msg = colon + 2;
    }
    const apt_config_key *k = apt_config_key_find(key);
    const char *src = cfg && k ? cfg->v[apt_cfg_index(k)].src : NULL;
    char text[sizeof err->msg];
    if (src && !strcmp(src, "--set"))
        snprintf(text, sizeof text, "--set %s: %s", key, msg);
    else if (src)
        snprintf(text, sizeof text, "%s: key '%s': %s", src, key, msg);
    else if (cfg && cfg->name)
        snprintf(text, sizeof text, "%s: key '%s' (not set, default): %s", cfg->name, key, msg);
    else
        snprintf(text, sizeof text, "key '%s' (default): %s", key, msg);
    return apt_err(err, code, "%s", text);
}

int apt_config_fail(const apt_config *cfg, const char *key, apt_error *err, int code, const char *fmt, ...)
{
    char msg[sizeof ((apt_error *)0)->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return blame(cfg, key, err, code, msg);
}

int apt_config_blame(const apt_config *cfg, const char *key, apt_error *err)
{
    if (!err)
        return APT_EINVAL;
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return blame(cfg, key, err, err->code ? err->code : APT_EINVAL, msg);
}

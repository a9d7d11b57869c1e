/* config_dump.c - the effective configuration as YAML text, for result files and `aptomod --print-config`.
 * Decision: emitted with libyaml's event emitter (escaping and quoting are its job), strings double-quoted and
 * floats in their shortest exact form, so the text loads back to a config equal to the one dumped. */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static int sbuf_write(void *data, unsigned char *buf, size_t size)
{
    sbuf *b = data;
    if (b->len + size + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + size + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, buf, size);
    b->len += size;
    b->p[b->len] = '\0';
    return 1;
}

static int emit(yaml_emitter_t *e, yaml_event_t *ev, int made)
{
    return made && yaml_emitter_emit(e, ev);
}

static int scalar(yaml_emitter_t *e, const char *s, size_t n, yaml_scalar_style_t style)
{
    yaml_event_t ev;
    return emit(e, &ev, yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style));
}

static int plain(yaml_emitter_t *e, const char *s)
{
    return scalar(e, s, strlen(s), YAML_PLAIN_SCALAR_STYLE);
}

static int quoted(yaml_emitter_t *e, const char *s)
{
    return scalar(e, s, strlen(s), YAML_DOUBLE_QUOTED_SCALAR_STYLE);
}

static int map_start(yaml_emitter_t *e)
{
    yaml_event_t ev;
    return emit(e, &ev, yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

static int map_end(yaml_emitter_t *e)
{
    yaml_event_t ev;
    return emit(e, &ev, yaml_mapping_end_event_initialize(&ev));
}

/* Shortest "%.Ng" that reads back to exactly v, always with a '.' or exponent so YAML sees a float. */
static void fmt_double(double v, char *buf, size_t cap)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    if (!strpbrk(buf, ".eEn") && strlen(buf) + 3 <= cap)
        strcat(buf, ".0");
}

static int value(yaml_emitter_t *e, const apt_config_key *k, const cfg_val *v)
{
    char num[64];
    yaml_event_t ev;
    switch (k->type) {
    case APT_CFG_STR:
    case APT_CFG_UNION: return quoted(e, v->s);
    case APT_CFG_ENUM: return plain(e, v->s);
    case APT_CFG_BOOL: return plain(e, v->b ? "true" : "false");
    case APT_CFG_INT: snprintf(num, sizeof num, "%lld", (long long)v->i); return plain(e, num);
    case APT_CFG_FLOAT: fmt_double(v->f, num, sizeof num); return plain(e, num);
    case APT_CFG_STR_LIST:
    case APT_CFG_FLOAT_LIST:
        if (!emit(e, &ev, yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE)))
            return 0;
        for (size_t i = 0; i < v->n; i++) {
            if (k->type == APT_CFG_FLOAT_LIST)
                fmt_double(v->fv[i], num, sizeof num);
            if (!(k->type == APT_CFG_STR_LIST ? quoted(e, v->sv[i]) : plain(e, num)))
                return 0;
        }
        return emit(e, &ev, yaml_sequence_end_event_initialize(&ev));
    }
    return 0;
}

/* Walk the table in order, keeping a stack of open mappings: close what the next key leaves, open what it enters. */
static int body(yaml_emitter_t *e, const apt_config *cfg)
{
    const char *open[MAX_DEPTH];
    size_t openlen[MAX_DEPTH], depth = 0;
    const char *skip = NULL; /* a union in string form: the keys below it are not dumped */
    size_t skiplen = 0;
    for (size_t i = 0; i < apt_config_key_count(); i++) {
        const apt_config_key *k = apt_config_key_at(i);
        const cfg_val *v = &cfg->v[i];
        if (skip && !strncmp(k->key, skip, skiplen) && k->key[skiplen] == '.')
            continue;
        if (k->type == APT_CFG_UNION) {
            if (v->i == APT_CFG_FORM_MAPPING)
                continue; /* its keys open the mapping */
            skip = k->key, skiplen = strlen(k->key);
        }
        const char *comp[MAX_DEPTH];
        size_t clen[MAX_DEPTH], nc = 0;
        for (const char *c = k->key; nc < MAX_DEPTH; c += clen[nc++] + 1) {
            comp[nc] = c;
            clen[nc] = strcspn(c, ".");
            if (!c[clen[nc]]) {
                nc++;
                break;
            }
        }
        size_t common = 0;
        while (common < depth && common + 1 < nc && clen[common] == openlen[common] &&
               !strncmp(comp[common], open[common], clen[common]))
            common++;
        for (; depth > common; depth--)
            if (!map_end(e))
                return 0;
        for (; depth + 1 < nc; depth++) {
            if (!scalar(e, comp[depth], clen[depth], YAML_PLAIN_SCALAR_STYLE) || !map_start(e))
                return 0;
            open[depth] = comp[depth], openlen[depth] = clen[depth];
        }
        if (!scalar(e, comp[nc - 1], clen[nc - 1], YAML_PLAIN_SCALAR_STYLE) || !value(e, k, v))
            return 0;
    }
    for (; depth > 0; depth--)
        if (!map_end(e))
            return 0;
    return 1;
}

char *apt_config_dump_yaml(const apt_config *cfg)
{
    if (!cfg)
        return NULL;
    sbuf b = {0};
    yaml_emitter_t e;
    yaml_event_t ev;
    if (!yaml_emitter_initialize(&e))
        return NULL;
    yaml_emitter_set_output(&e, sbuf_write, &b);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    int ok = emit(&e, &ev, yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING)) &&
             emit(&e, &ev, yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1)) && map_start(&e) &&
             body(&e, cfg) && map_end(&e) && emit(&e, &ev, yaml_document_end_event_initialize(&ev, 1)) &&
             emit(&e, &ev, yaml_stream_end_event_initialize(&ev)) && yaml_emitter_flush(&e);
    yaml_emitter_delete(&e);
    if (!ok) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

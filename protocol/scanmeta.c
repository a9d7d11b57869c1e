/* scanmeta.c - angle and scan positions from JSON text: v1 appendix / v2 user_data, per-frame {"pos_m": [y, x]}, and
 * the scan-metadata channel (aptomo-scan-1.0, aptomo-pos-1.0). jansson parses (duplicates refused); the position
 * array is bounded before allocating, every number must be finite, unknown keys are ignored. */
#include "aptomo/scanmeta.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SCANMETA_MAX_JSON (64u << 20) /* text beyond this is refused before parsing */

static int num(json_t *v, double *out)
{
    if (!json_is_number(v))
        return -1;
    *out = json_number_value(v);
    return isfinite(*out) ? 0 : -1;
}

static int u64_key(json_t *o, const char *key, int required, int *has, uint64_t *out, apt_error *err)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return required ? apt_err(err, APT_EPROTO, "scan metadata: missing \"%s\"", key) : APT_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return apt_err(err, APT_EPROTO, "scan metadata: \"%s\" is not a non-negative integer", key);
    *out = (uint64_t)json_integer_value(v);
    if (has)
        *has = 1;
    return APT_OK;
}

static int pair(json_t *v, double out[2])
{
    return json_is_array(v) && json_array_size(v) == 2 && !num(json_array_get(v, 0), &out[0]) &&
                   !num(json_array_get(v, 1), &out[1])
               ? 0
               : -1;
}

static int positions(json_t *o, int required, size_t max, apt_scanmeta *m, apt_error *err)
{
    json_t *a = json_object_get(o, "positions_m");
    if (!a)
        return required ? apt_err(err, APT_EPROTO, "scan metadata: missing \"positions_m\"") : APT_OK;
    if (!json_is_array(a))
        return apt_err(err, APT_EPROTO, "scan metadata: \"positions_m\" is not an array of [y, x]");
    size_t n = json_array_size(a);
    if (n > max)
        return apt_err(err, APT_ERANGE, "scan metadata: \"positions_m\" holds %zu positions, more than the %zu "
                       "allowed", n, max);
    if (n == 0)
        return APT_OK;
    m->positions_m = malloc(n * 2 * sizeof(double));
    if (!m->positions_m)
        return apt_err(err, APT_ENOMEM, "scan metadata: out of memory for %zu positions", n);
    for (size_t i = 0; i < n; i++)
        if (pair(json_array_get(a, i), &m->positions_m[2 * i]))
            return apt_err(err, APT_EPROTO, "scan metadata: \"positions_m\"[%zu] is not [y, x] finite numbers", i);
    m->n_positions = n;
    return APT_OK;
}

static int angle(json_t *o, int required, apt_scanmeta *m, apt_error *err)
{
    json_t *v = json_object_get(o, "angle_deg");
    if (!v)
        return required ? apt_err(err, APT_EPROTO, "scan metadata: missing \"angle_deg\"") : APT_OK;
    if (num(v, &m->angle_deg))
        return apt_err(err, APT_EPROTO, "scan metadata: \"angle_deg\" is not a finite number");
    m->has_angle = 1;
    return APT_OK;
}

static int parse_obj(json_t *o, size_t max, apt_scanmeta *m, apt_error *err)
{
    json_t *h = json_object_get(o, "htype");
    int rc;
    if (h) {
        if (!json_is_string(h))
            return apt_err(err, APT_EPROTO, "scan metadata: \"htype\" is not a string");
        const char *t = json_string_value(h);
        if (!strcmp(t, "aptomo-scan-1.0")) {
            m->kind = APT_META_SERIES;
            if ((rc = u64_key(o, "series", 1, &m->has_series, &m->series, err)) || (rc = angle(o, 1, m, err)) ||
                (rc = u64_key(o, "n_frames", 0, &m->has_n_frames, &m->n_frames, err)) ||
                (rc = positions(o, 0, max, m, err)))
                return rc;
            if (m->has_n_frames && m->n_positions > m->n_frames)
                return apt_err(err, APT_EPROTO, "scan metadata: %zu positions for n_frames %llu", m->n_positions,
                               (unsigned long long)m->n_frames);
            return APT_OK;
        }
        if (!strcmp(t, "aptomo-pos-1.0")) {
            m->kind = APT_META_POSITIONS;
            if ((rc = u64_key(o, "series", 1, &m->has_series, &m->series, err)) ||
                (rc = u64_key(o, "frame0", 1, NULL, &m->frame0, err)) || (rc = positions(o, 1, max, m, err)))
                return rc;
            if (m->frame0 > UINT64_MAX - m->n_positions)
                return apt_err(err, APT_ERANGE, "scan metadata: \"frame0\" + positions overflows");
            return APT_OK;
        }
        return apt_err(err, APT_EPROTO, "scan metadata: unknown \"htype\" \"%.64s\"", t);
    }
    /* user_data / appendix: any of angle_deg, positions_m, pos_m; a lone pos_m is a frame's own position */
    json_t *p = json_object_get(o, "pos_m");
    if (p && pair(p, m->pos_m))
        return apt_err(err, APT_EPROTO, "scan metadata: \"pos_m\" is not [y, x] finite numbers");
    m->has_pos = p != NULL;
    m->kind = p ? APT_META_FRAME : APT_META_SERIES;
    if ((rc = angle(o, 0, m, err)) || (rc = positions(o, 0, max, m, err)))
        return rc;
    return APT_OK;
}

int apt_scanmeta_parse(const char *json, size_t len, size_t max_positions, apt_scanmeta *out, apt_error *err)
{
    memset(out, 0, sizeof *out);
    if (!json || len == 0)
        return apt_err(err, APT_EPROTO, "scan metadata: empty");
    if (len > SCANMETA_MAX_JSON)
        return apt_err(err, APT_ERANGE, "scan metadata: %zu bytes of JSON, more than %u", len, SCANMETA_MAX_JSON);
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return apt_err(err, APT_EPROTO, "scan metadata: invalid JSON at column %d: %s", je.column, je.text);
    int rc = json_is_object(o) ? parse_obj(o, max_positions, out, err)
                               : apt_err(err, APT_EPROTO, "scan metadata: JSON is not an object");
    json_decref(o);
    if (rc)
        apt_scanmeta_clear(out);
    return rc;
}

void apt_scanmeta_clear(apt_scanmeta *m)
{
    free(m->positions_m);
    memset(m, 0, sizeof *m);
}

static json_t *pos_array(const double *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_pack("[f,f]", p[2 * i], p[2 * i + 1]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Sets key to v (stolen); a NULL v (non-finite number, allocation failure) marks the whole object bad. */
static void put(json_t *o, const char *key, json_t *v, int *bad)
{
    if (!v || json_object_set_new(o, key, v))
        *bad = 1;
}

static json_t *uint_json(uint64_t v) { return v > (uint64_t)INT64_MAX ? NULL : json_integer((json_int_t)v); }

char *apt_scanmeta_format(const apt_scanmeta *m, const char *htype)
{
    json_t *o = json_object();
    int bad = !o;
    if (!o)
        return NULL;
    switch (m->kind) {
    case APT_META_SERIES:
        if (htype) {
            put(o, "htype", json_string(htype), &bad);
            put(o, "series", uint_json(m->series), &bad);
        }
        if (m->has_angle)
            put(o, "angle_deg", json_real(m->angle_deg), &bad);
        if (htype && m->has_n_frames)
            put(o, "n_frames", uint_json(m->n_frames), &bad);
        if (m->n_positions)
            put(o, "positions_m", pos_array(m->positions_m, m->n_positions), &bad);
        break;
    case APT_META_POSITIONS:
        put(o, "htype", json_string("aptomo-pos-1.0"), &bad);
        put(o, "series", uint_json(m->series), &bad);
        put(o, "frame0", uint_json(m->frame0), &bad);
        put(o, "positions_m", pos_array(m->positions_m, m->n_positions), &bad);
        break;
    case APT_META_FRAME: put(o, "pos_m", json_pack("[f,f]", m->pos_m[0], m->pos_m[1]), &bad); break;
    default: bad = 1;
    }
    char *s = bad ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* dataset_plan.c - the content of an `aptomo dataset` directory as data: IC i's simulation seed, layer count and
 * pitch scale derived from --seed and i alone, and the manifest dataset.json (parameters, pairs, command line).
 * Decision: seeds are a bijection of (base + i) on the 53 bits sim.seed holds, so ICs never share a seed whatever
 * --count is; the one i whose seed would be the configuration's own (the held-out demo scan) takes the image of an
 * input no i reaches instead. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/config.h"
#include "aptomo/sim.h"
#include "dataset.h"

#define STREAM_BASE 0xDA7A5E7ull        /* the set's own RNG streams, apart from the simulator's */
#define STREAM_IC(i) (STREAM_BASE + 1 + (uint64_t)(i))
#define SPARE_INPUT (1ull << 52)        /* base + SPARE_INPUT is never base + i (i < DS_MAX_COUNT) */
#define JSON_FLAGS (JSON_INDENT(1) | JSON_REAL_PRECISION(15))

/* A bijection of [0, 2^53): xor-shifts and multiplications by odd constants, each invertible modulo 2^53. */
static uint64_t mix53(uint64_t x)
{
    x &= DS_SEED_MAX;
    x ^= x >> 27;
    x = (x * 0x1B873593A2D5B7ull) & DS_SEED_MAX;
    x ^= x >> 25;
    x = (x * 0x0CC9E2D51C6E3Bull) & DS_SEED_MAX;
    x ^= x >> 29;
    return x;
}

void ds_plan_ic(const ds_params *p, int i, ds_ic *ic)
{
    memset(ic, 0, sizeof *ic);
    apt_sim_rng r;
    apt_sim_rng_seed(&r, p->seed, STREAM_BASE);
    uint64_t base = apt_sim_rng_next(&r);
    ic->index = i;
    ic->seed = mix53(base + (uint64_t)i);
    if (ic->seed == p->held_out)
        ic->seed = mix53(base + SPARE_INPUT);
    apt_sim_rng_seed(&r, p->seed, STREAM_IC(i));
    int span = p->layers[1] - p->layers[0] + 1;
    int dl = (int)(apt_sim_rng_uniform(&r) * span);
    ic->layers = p->layers[0] + (dl < span ? dl : span - 1);
    /* a multiple of 0.001: short in the manifest, and the same double after a trip through "%.15g" text */
    double s = p->pitch[0] + (p->pitch[1] - p->pitch[0]) * apt_sim_rng_uniform(&r);
    s = round(s * 1000) / 1000;
    ic->pitch_scale = fmin(fmax(s, p->pitch[0]), p->pitch[1]);
    snprintf(ic->name, sizeof ic->name, "ic-%03d", i);
    snprintf(ic->sets[0], sizeof ic->sets[0], "sim.seed=%llu", (unsigned long long)ic->seed);
    snprintf(ic->sets[1], sizeof ic->sets[1], "sim.layers=%d", ic->layers);
    snprintf(ic->sets[2], sizeof ic->sets[2], "sim.pitch_scale=%.15g", ic->pitch_scale);
}

static json_t *pair2(json_t *a, json_t *b)
{
    json_t *l = json_array();
    json_array_append_new(l, a);
    json_array_append_new(l, b);
    return l;
}

static json_t *triple(double a, double b, double c, int integral)
{
    json_t *l = json_array();
    double v[3] = {a, b, c};
    for (int i = 0; i < 3; i++)
        json_array_append_new(l, integral ? json_integer((json_int_t)v[i]) : json_real(v[i]));
    return l;
}

static json_t *params_json(const ds_params *p)
{
    const apt_grid3 *g = &p->grid;
    return json_pack("{s:I, s:o, s:o, s:i, s:f, s:o, s:o, s:I, s:s}", "seed", (json_int_t)p->seed, "layers",
                     pair2(json_integer(p->layers[0]), json_integer(p->layers[1])), "pitch_scale",
                     pair2(json_real(p->pitch[0]), json_real(p->pitch[1])), "angles", p->angles, "range_deg",
                     p->range_deg, "grid", triple(g->Z, g->Y, g->X, 1), "voxel_size_m",
                     triple(g->vz, g->vy, g->vx, 0), "held_out_seed", (json_int_t)p->held_out, "config",
                     p->config ? p->config : "");
}

json_t *ds_manifest(const ds_params *p, const ds_ic *ics, int count, int keep_scans, int complete, int argc,
                    char **argv)
{
    json_t *cmd = json_array(), *pairs = json_array();
    if (cmd)
        json_array_append_new(cmd, json_string("aptomo"));
    for (int i = 0; cmd && i < argc; i++)
        json_array_append_new(cmd, json_string(argv[i]));
    for (int i = 0; pairs && i < count; i++) {
        const ds_ic *c = &ics[i];
        char a[64], t[64];
        snprintf(a, sizeof a, "%s/approximant.h5", c->name);
        snprintf(t, sizeof t, "%s/truth.h5", c->name);
        json_t *sets = json_array();
        for (int k = 0; sets && k < 3; k++)
            json_array_append_new(sets, json_string(c->sets[k]));
        json_array_append_new(pairs, json_pack("{s:i, s:s, s:s, s:s, s:I, s:i, s:f, s:o}", "index", c->index,
                                               "dir", c->name, "approximant", a, "truth", t, "seed",
                                               (json_int_t)c->seed, "layers", c->layers, "pitch_scale",
                                               c->pitch_scale, "set", sets));
    }
    if (!cmd || !pairs || json_array_size(pairs) != (size_t)count) {
        json_decref(cmd);
        json_decref(pairs);
        return NULL;
    }
    return json_pack("{s:s, s:i, s:o, s:i, s:b, s:b, s:o, s:o}", "format", "aptomo-dataset", "version", 1, "params",
                     params_json(p), "count", count, "keep_scans", keep_scans, "complete", complete, "command", cmd,
                     "pairs", pairs);
}

int ds_manifest_write(const char *dir, const json_t *m, apt_error *err)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, DS_MANIFEST);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(m, tmp, JSON_FLAGS) != 0) {
        int e = errno;
        unlink(tmp);
        return apt_err(err, APT_EIO, "%s: cannot write (%s)", tmp, strerror(e));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return apt_err(err, APT_EIO, "rename %s -> %s failed (%s)", tmp, path, strerror(e));
    }
    return APT_OK;
}

/* What a user changes to change each parameter. */
static const char *param_option(const char *key)
{
    static const char *const map[][2] = {{"seed", "--seed"},          {"layers", "--layers"},
                                         {"pitch_scale", "--pitch-scale"}, {"angles", "--angles (sim.angles)"},
                                         {"range_deg", "--range-deg (sim.range_deg)"}, {"grid", "sim.grid"},
                                         {"voxel_size_m", "sim.voxel_size_m"}, {"held_out_seed", "sim.seed"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(map[i][0], key))
            return map[i][1];
    return key;
}

/* A parameter as its option takes it: ranges "LO:HI", reals in %.15g, the rest as JSON. malloc'd. */
static char *show(const json_t *v)
{
    if (json_is_array(v) && json_array_size(v) == 2 && json_is_number(json_array_get(v, 0)) &&
        json_is_number(json_array_get(v, 1))) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.15g:%.15g", json_number_value(json_array_get(v, 0)),
                 json_number_value(json_array_get(v, 1)));
        return strdup(buf);
    }
    if (json_is_real(v)) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.15g", json_real_value(v));
        return strdup(buf);
    }
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
}

/* The configurations differ: name the first key (both texts load: they were dumped by apt_config_dump_yaml). */
static int config_diff(const char *path, const char *old, const char *now, apt_error *err)
{
    apt_config *a = NULL, *b = NULL;
    apt_error e = {0};
    const char *key = NULL;
    if (!apt_config_load_string(old, strlen(old), path, &a, &e) &&
        !apt_config_load_string(now, strlen(now), "configuration", &b, &e))
        key = apt_config_first_diff(a, b);
    int rc = key ? apt_err(err, APT_EINVAL, "%s: made with another configuration: key %s differs (use another -o "
                           "DIR, or the same --config and --set)", path, key)
                 : apt_err(err, APT_EINVAL, "%s: made with another configuration (use another -o DIR, or the same "
                           "--config and --set)", path);
    apt_config_destroy(&a);
    apt_config_destroy(&b);
    return rc;
}

int ds_manifest_check(const char *dir, const ds_params *p, apt_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, DS_MANIFEST);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m)
        return access(path, R_OK) ? apt_err(err, APT_EIO, "%s: cannot read (%s)", path, strerror(errno))
                                   : apt_err(err, APT_EINVAL, "%s:%d: not JSON: %s", path, je.line, je.text);
    /* the new parameters as the file would hold them (reals through the same text form) */
    json_t *now = params_json(p);
    char *text = now ? json_dumps(now, JSON_FLAGS) : NULL;
    json_decref(now);
    now = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_t *old = json_object_get(m, "params");
    const char *fmt = json_string_value(json_object_get(m, "format"));
    int rc = APT_OK;
    if (!now) {
        rc = apt_err(err, APT_ENOMEM, "%s: out of memory", path);
    } else if (!fmt || strcmp(fmt, "aptomo-dataset") || !json_is_object(old)) {
        rc = apt_err(err, APT_EINVAL, "%s: not an aptomo dataset manifest (no \"format\": \"aptomo-dataset\" with "
                     "\"params\")", path);
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(now, key, v) {
            json_t *o = json_object_get(old, key);
            if (o && json_equal(o, v))
                continue;
            if (!strcmp(key, "config") && json_is_string(o)) {
                rc = config_diff(path, json_string_value(o), json_string_value(v), err);
                break;
            }
            char *was = o ? show(o) : NULL, *is = show(v);
            rc = apt_err(err, APT_EINVAL, "%s: made with %s %s, not %s (use another -o DIR, or the same "
                         "parameters)", path, param_option(key), was ? was : "(missing)", is ? is : "?");
            free(was);
            free(is);
            break;
        }
    }
    json_decref(now);
    json_decref(m);
    return rc;
}

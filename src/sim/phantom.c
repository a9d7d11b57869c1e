/* phantom.c - the integrated-circuit phantom: a SiO2 block with metal layers stacked along z (the IC thickness,
 * the beam direction at 0 deg), each layer Manhattan Cu lines alternating along x and y with several pitches and
 * widths and random cuts, Cu vias where lines of neighbouring layers cross, and optionally a Si substrate with W
 * contacts. Decision: build a label volume first (material per voxel), then map labels to delta/beta, so tests can
 * check the structure (metal fractions, via connectivity) independently of the optics. Also: loading and
 * resampling a given delta/beta volume (the --phantom file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/sim.h"
#include "aptomo/volume.h"

#define VIA_PROB 0.25      /* chance that a crossing of two uncut lines carries a via */
#define CONTACT_PROB 0.3   /* chance per contact site along a first-layer line */

typedef struct line {
    int c0, c1;            /* across-coordinate range [c0, c1) in voxels */
} line;

typedef struct layer {
    int along_x, pitch, n;
    line *lines;
    uint8_t *mask;         /* [Y,X] metal footprint */
} layer;

static const int pitch_table[] = {6, 8, 10, 12, 16, 20, 24, 32, 40, 48};
#define N_PITCH ((int)(sizeof pitch_table / sizeof pitch_table[0]))

/* Lines of one layer: across the lines' normal axis (length `across`), cut into segments along `along`. Widths and
   cuts follow the pitch, so scaling the pitch scales every lateral feature. */
static int build_layer(layer *ly, int k, int Y, int X, double pitch_scale, apt_sim_rng *r)
{
    ly->along_x = (k % 2) == 0;
    int across = ly->along_x ? Y : X, along = ly->along_x ? X : Y;
    int pi = k + (int)(apt_sim_rng_uniform(r) * 2.0); /* coarser going up, two neighbouring pitches possible */
    ly->pitch = (int)lround(pitch_table[pi < N_PITCH ? pi : N_PITCH - 1] * pitch_scale); /* x 1.0: exact */
    if (ly->pitch < 2)
        ly->pitch = 2;
    if (ly->pitch > across / 2)
        ly->pitch = across / 2 > 2 ? across / 2 : 2;
    ly->n = across / ly->pitch + 1;
    ly->lines = calloc((size_t)ly->n, sizeof *ly->lines);
    ly->mask = calloc((size_t)Y * X, 1);
    if (!ly->lines || !ly->mask)
        return APT_ENOMEM;
    int off = (int)(apt_sim_rng_uniform(r) * ly->pitch);
    for (int i = 0; i < ly->n; i++) {
        static const double frac[] = {0.35, 0.5, 0.65}; /* several widths per layer */
        int w = (int)lround(ly->pitch * frac[apt_sim_rng_next(r) % 3]);
        w = w < 1 ? 1 : w;
        int c0 = off + i * ly->pitch, c1 = c0 + w;
        c1 = c1 > across ? across : c1;
        ly->lines[i] = (line){c0, c1};
        /* segments of 2..10 pitches separated by cuts of about half a pitch (at least 2 voxels) */
        double pos = -apt_sim_rng_uniform(r) * 4.0 * ly->pitch;
        while (pos < along) {
            double seg = ly->pitch * (2.0 + 8.0 * apt_sim_rng_uniform(r));
            int a0 = (int)fmax(0, floor(pos)), a1 = (int)fmin(along, floor(pos + seg));
            for (int c = c0; c < c1; c++)
                for (int a = a0; a < a1; a++)
                    ly->mask[ly->along_x ? (size_t)c * X + a : (size_t)a * X + c] = 1;
            pos += seg + fmax(2.0, ly->pitch * (0.3 + 0.5 * apt_sim_rng_uniform(r)));
        }
    }
    return APT_OK;
}

static int rect_full(const uint8_t *m, int X, int y0, int y1, int x0, int x1)
{
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if (!m[(size_t)y * X + x])
                return 0;
    return 1;
}

static void fill_box(uint8_t *lab, int Y, int X, int z0, int z1, int y0, int y1, int x0, int x1, uint8_t v)
{
    for (int z = z0; z < z1; z++)
        for (int y = y0; y < y1; y++)
            memset(lab + ((size_t)z * Y + y) * X + x0, v, (size_t)(x1 - x0));
}

/* z bands: cap oxide at z = 0, layers from the substrate (high z) upward, upper bands thicker (weight 1 + k/4);
   within a band the lines sit on top (low z) and the via level below them. */
static int plan_bands(const apt_grid3 *g, const apt_sim_ic_opts *o, apt_sim_ic_info *in, apt_error *err)
{
    int Z = g->Z, L = o->layers;
    in->n_layers = L;
    in->substrate_z0 = o->substrate ? Z - (int)fmax(1, lround(0.15 * Z)) : Z;
    int cap = (int)fmax(1, lround(0.05 * Z));
    int avail = in->substrate_z0 - cap;
    if (avail < 2 * L)
        return apt_err(err, APT_EINVAL, "sim.layers: %d metal layers need at least %d voxels of sim.grid Z "
                       "(have %d)", L, 2 * L + (Z - avail), Z);
    double wsum = 0;
    for (int k = 0; k < L; k++)
        wsum += 1.0 + 0.25 * k;
    double acc = 0;
    int zb = in->substrate_z0; /* bottom (exclusive) of band k */
    for (int k = 0; k < L; k++) {
        acc += (1.0 + 0.25 * k) / wsum;
        int zt = in->substrate_z0 - (int)lround(acc * avail);
        if (k == L - 1)
            zt = cap;
        if (zb - zt < 2)
            zt = zb - 2; /* every band holds a line and a via level */
        int lt = (int)lround(0.6 * (zb - zt));
        lt = lt < 1 ? 1 : (lt > zb - zt - 1 ? zb - zt - 1 : lt);
        in->line_z0[k] = zt;
        in->line_z1[k] = zt + lt;
        in->via_z0[k] = zt + lt;
        in->via_z1[k] = zb;
        zb = zt;
    }
    if (zb < 0)
        return apt_err(err, APT_EINVAL, "sim.layers: %d metal layers do not fit sim.grid Z = %d", L, Z);
    return APT_OK;
}

int apt_sim_phantom_ic(const apt_grid3 *g, const apt_sim_ic_opts *o, float *delta, float *beta, uint8_t *labels,
                       apt_sim_ic_info *info, apt_error *err)
{
    if (!g || !o || !delta)
        return apt_err(err, APT_EINVAL, "phantom: NULL argument");
    if (g->Z < 4 || g->Y < 8 || g->X < 8 || (double)g->Z * g->Y * g->X > (double)(1ull << 32))
        return apt_err(err, APT_EINVAL, "sim.grid: %dx%dx%d out of range (Z >= 4, Y, X >= 8, <= 2^32 voxels)",
                       g->Z, g->Y, g->X);
    if (o->layers < 1 || o->layers > APT_SIM_MAX_LAYERS)
        return apt_err(err, APT_EINVAL, "sim.layers: %d out of range 1..%d", o->layers, APT_SIM_MAX_LAYERS);
    if (!(o->pitch_scale >= 0.25 && o->pitch_scale <= 4))
        return apt_err(err, APT_EINVAL, "sim.pitch_scale: %g out of range [0.25, 4]", o->pitch_scale);
    double d_mat[APT_MAT_COUNT], b_mat[APT_MAT_COUNT];
    for (int m = 0; m < APT_MAT_COUNT; m++) {
        int rc = apt_sim_material_index((apt_material)m, o->energy_keV, &d_mat[m], &b_mat[m], err);
        if (rc)
            return rc;
    }
    apt_sim_ic_info in;
    memset(&in, 0, sizeof in);
    int rc = plan_bands(g, o, &in, err);
    if (rc)
        return rc;

    int Y = g->Y, X = g->X, L = o->layers;
    size_t n = (size_t)g->Z * Y * X;
    uint8_t *lab = labels ? labels : malloc(n);
    layer ly[APT_SIM_MAX_LAYERS];
    memset(ly, 0, sizeof ly);
    if (!lab) {
        rc = apt_err(err, APT_ENOMEM, "phantom: out of memory for %zu voxels", n);
        goto out;
    }
    memset(lab, APT_MAT_SIO2, n);
    if (in.substrate_z0 < g->Z)
        fill_box(lab, Y, X, in.substrate_z0, g->Z, 0, Y, 0, X, APT_MAT_SI);

    apt_sim_rng r;
    apt_sim_rng_seed(&r, o->seed, 0x1C0);
    for (int k = 0; k < L; k++) {
        if (build_layer(&ly[k], k, Y, X, o->pitch_scale, &r)) {
            rc = apt_err(err, APT_ENOMEM, "phantom: out of memory for layer %d", k);
            goto out;
        }
        in.along_x[k] = ly[k].along_x;
        in.pitch_vox[k] = ly[k].pitch;
        for (int z = in.line_z0[k]; z < in.line_z1[k]; z++)
            for (size_t p = 0; p < (size_t)Y * X; p++)
                if (ly[k].mask[p])
                    lab[(size_t)z * Y * X + p] = APT_MAT_CU;
    }
    /* vias: at crossings of layer k's and layer k-1's lines (orthogonal), where neither is cut */
    for (int k = 1; k < L; k++) {
        const layer *a = &ly[k], *b = &ly[k - 1];
        for (int i = 0; i < a->n; i++)
            for (int j = 0; j < b->n; j++) {
                const line *ya = a->along_x ? &a->lines[i] : &b->lines[j]; /* the one varying in y */
                const line *xa = a->along_x ? &b->lines[j] : &a->lines[i];
                if (ya->c0 >= ya->c1 || xa->c0 >= xa->c1 || apt_sim_rng_uniform(&r) >= VIA_PROB)
                    continue;
                if (a->along_x == b->along_x || !rect_full(a->mask, X, ya->c0, ya->c1, xa->c0, xa->c1) ||
                    !rect_full(b->mask, X, ya->c0, ya->c1, xa->c0, xa->c1))
                    continue;
                fill_box(lab, Y, X, in.via_z0[k], in.via_z1[k], ya->c0, ya->c1, xa->c0, xa->c1, APT_MAT_CU);
                in.vias++;
            }
    }
    /* W contacts from the substrate up to the first layer's lines */
    if (in.substrate_z0 < g->Z) {
        const layer *a = &ly[0];
        for (int i = 0; i < a->n; i++) {
            int w = a->lines[i].c1 - a->lines[i].c0, along = a->along_x ? X : Y;
            for (int s = 0; w > 0 && s + w <= along; s += 3 * a->pitch) {
                if (apt_sim_rng_uniform(&r) >= CONTACT_PROB)
                    continue;
                int y0 = a->along_x ? a->lines[i].c0 : s, x0 = a->along_x ? s : a->lines[i].c0;
                if (rect_full(a->mask, X, y0, y0 + w, x0, x0 + w))
                    fill_box(lab, Y, X, in.via_z0[0], in.via_z1[0], y0, y0 + w, x0, x0 + w, APT_MAT_W);
            }
        }
    }
    for (size_t p = 0; p < n; p++) {
        delta[p] = (float)d_mat[lab[p]];
        if (beta)
            beta[p] = (float)b_mat[lab[p]];
    }
    if (info)
        *info = in;
out:
    for (int k = 0; k < L; k++) {
        free(ly[k].lines);
        free(ly[k].mask);
    }
    if (lab != labels)
        free(lab);
    return rc;
}

/* Source coordinate of destination index i along one axis (both centred). */
static double src_coord(int i, int nd, double vd, int ns, double vs)
{
    return (i - (nd - 1) / 2.0) * vd / vs + (ns - 1) / 2.0;
}

/* Linear interpolation weights along one axis: i0 and w1 (weight of i0+1); 0 outside [-0.5, n-0.5]. */
static int lin(double f, int n, int *i0, double *w1)
{
    if (f < -0.5 || f > n - 0.5)
        return 0;
    f = fmin(fmax(f, 0), n - 1);
    *i0 = (int)floor(f);
    if (*i0 >= n - 1) {
        *i0 = n - 1;
        *w1 = 0;
    } else {
        *w1 = f - *i0;
    }
    return 1;
}

int apt_sim_resample(const apt_grid3 *gs, const float *src, const apt_grid3 *gd, float *dst, apt_error *err)
{
    if (gs->Z < 1 || gs->Y < 1 || gs->X < 1 || gd->Z < 1 || gd->Y < 1 || gd->X < 1 || !(gs->vz > 0) ||
        !(gs->vy > 0) || !(gs->vx > 0) || !(gd->vz > 0) || !(gd->vy > 0) || !(gd->vx > 0))
        return apt_err(err, APT_EINVAL, "resample: empty grid or non-positive voxel size");
    size_t sy = (size_t)gs->X, sz = (size_t)gs->Y * gs->X;
    for (int k = 0; k < gd->Z; k++) {
        int z0 = 0, y0 = 0, x0 = 0; /* y0/wy stay unset when okz short-circuits lin() */
        double wz = 0, wy = 0, wx = 0;
        int okz = lin(src_coord(k, gd->Z, gd->vz, gs->Z, gs->vz), gs->Z, &z0, &wz);
        for (int j = 0; j < gd->Y; j++) {
            int oky = okz && lin(src_coord(j, gd->Y, gd->vy, gs->Y, gs->vy), gs->Y, &y0, &wy);
            float *out = dst + ((size_t)k * gd->Y + j) * gd->X;
            for (int i = 0; i < gd->X; i++) {
                if (!oky || !lin(src_coord(i, gd->X, gd->vx, gs->X, gs->vx), gs->X, &x0, &wx)) {
                    out[i] = 0;
                    continue;
                }
                double acc = 0;
                for (int a = 0; a < 2; a++)
                    for (int b = 0; b < 2; b++)
                        for (int c = 0; c < 2; c++) {
                            double w = (a ? wz : 1 - wz) * (b ? wy : 1 - wy) * (c ? wx : 1 - wx);
                            if (w > 0)
                                acc += w * src[(size_t)(z0 + a) * sz + (size_t)(y0 + b) * sy + (size_t)(x0 + c)];
                        }
                out[i] = (float)acc;
            }
        }
    }
    return APT_OK;
}

static int load_one(const char *path, const char *ds, const apt_grid3 *g, float **out, apt_volume *meta,
                    apt_error *err)
{
    apt_volume v;
    int rc = apt_volume_read(path, ds, &v, err);
    if (rc)
        return rc;
    if (meta && meta->data == NULL && meta->Z) { /* beta: must match delta's shape */
        if (v.Z != meta->Z || v.Y != meta->Y || v.X != meta->X) {
            rc = apt_err(err, APT_EINVAL, "%s: %s: shape %dx%dx%d differs from /exchange/data %dx%dx%d", path, ds,
                         v.Z, v.Y, v.X, meta->Z, meta->Y, meta->X);
            apt_volume_free(&v);
            return rc;
        }
    }
    size_t n = (size_t)g->Z * g->Y * g->X;
    int have_vox = isfinite(v.voxel_m[0]) && isfinite(v.voxel_m[1]) && isfinite(v.voxel_m[2]);
    if (have_vox && !(v.voxel_m[0] > 0 && v.voxel_m[1] > 0 && v.voxel_m[2] > 0)) {
        rc = apt_err(err, APT_EINVAL, "%s: /exchange/voxel_size_m: must be positive", path);
        goto fail;
    }
    int same_shape = v.Z == g->Z && v.Y == g->Y && v.X == g->X;
    int same_vox = !have_vox || (fabs(v.voxel_m[0] / g->vz - 1) < 1e-6 && fabs(v.voxel_m[1] / g->vy - 1) < 1e-6 &&
                                 fabs(v.voxel_m[2] / g->vx - 1) < 1e-6);
    if (!have_vox && !same_shape) {
        rc = apt_err(err, APT_EINVAL, "%s: %s is %dx%dx%d but sim.grid is %dx%dx%d and the file has no "
                     "/exchange/voxel_size_m to resample with", path, ds, v.Z, v.Y, v.X, g->Z, g->Y, g->X);
        goto fail;
    }
    if (meta) {
        meta->Z = v.Z, meta->Y = v.Y, meta->X = v.X;
        memcpy(meta->voxel_m, v.voxel_m, sizeof v.voxel_m);
    }
    if (same_shape && same_vox) {
        *out = v.data; /* already on the simulation grid */
        return APT_OK;
    }
    *out = malloc(n * sizeof **out);
    if (!*out) {
        rc = apt_err(err, APT_ENOMEM, "%s: out of memory resampling %s", path, ds);
        goto fail;
    }
    apt_grid3 gs = {v.Z, v.Y, v.X, v.voxel_m[0], v.voxel_m[1], v.voxel_m[2]};
    rc = apt_sim_resample(&gs, v.data, g, *out, err);
    if (rc) {
        free(*out);
        *out = NULL;
    }
fail:
    apt_volume_free(&v);
    return rc;
}

int apt_sim_phantom_load(const char *path, const apt_grid3 *g, float **delta_out, float **beta_out, apt_error *err)
{
    *delta_out = NULL;
    if (beta_out)
        *beta_out = NULL;
    apt_volume meta;
    memset(&meta, 0, sizeof meta);
    int rc = load_one(path, "/exchange/data", g, delta_out, &meta, err);
    if (rc || !beta_out)
        return rc;
    /* /exchange/beta is optional: probe for it by reading; a missing dataset is not an error */
    apt_error e2 = {0};
    apt_volume probe;
    if (apt_volume_read(path, "/exchange/beta", &probe, &e2) != APT_OK) {
        if (strstr(e2.msg, "missing"))
            return APT_OK;
        free(*delta_out);
        *delta_out = NULL;
        if (err)
            *err = e2;
        return e2.code ? e2.code : APT_EINVAL;
    }
    apt_volume_free(&probe);
    rc = load_one(path, "/exchange/beta", g, beta_out, &meta, err);
    if (rc) {
        free(*delta_out);
        *delta_out = NULL;
    }
    return rc;
}

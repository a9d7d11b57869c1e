/* trainset.c - training pairs, the patch grid and the test split of `aptomo train` (docs/TRAINING.md "Training
 * data"). Lateral axes use the inference tiler's grid (50 % overlap), so training sees patches where inference cuts
 * them; Z is tiled without overlap (for the full-size arch one patch holds the whole IC thickness). Short axes are
 * reflection-padded like the tiler does, the target following its Approximant voxel by voxel at any scale. The test
 * split is checked, not trusted: a test patch may not share a voxel with a training patch of the same source. */
#include "trainset.h"

#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aptomo/sim.h"
#include "aptomo/tile.h"
#include "aptomo/volume.h"

#define TS_MAX_STARTS 4096
#define TS_SPLIT_STREAM 0x73706c6974ULL /* "split": the PRNG stream that picks test pairs */

void nn_ts_init(nn_trainset *s, const int patch[3], const int scale[3])
{
    memset(s, 0, sizeof *s);
    for (int a = 0; a < 3; a++)
        s->patch[a] = patch[a], s->scale[a] = scale[a];
    s->band_x0 = -1;
}

void nn_ts_free(nn_trainset *s)
{
    for (int i = 0; i < s->npairs; i++) {
        free(s->pairs[i].approx_path);
        free(s->pairs[i].truth_path);
        free(s->pairs[i].a);
        free(s->pairs[i].t);
    }
    free(s->pairs);
    free(s->train);
    free(s->test);
    free(s->test_pairs);
    memset(s, 0, sizeof *s);
}

/* ---- pairs ---- */

int nn_ts_add_pair(nn_trainset *s, const char *approx, const char *truth, apt_error *err)
{
    if (s->npairs >= NN_TS_MAX_PAIRS)
        return apt_err(err, APT_ERANGE, "more than %d training pairs", NN_TS_MAX_PAIRS);
    if (s->npairs == s->cap) {
        int nc = s->cap ? 2 * s->cap : 16;
        nn_ts_pair *np = realloc(s->pairs, (size_t)nc * sizeof *np);
        if (!np)
            return apt_err(err, APT_ENOMEM, "out of memory for the pair list");
        s->pairs = np, s->cap = nc;
    }
    apt_volume va = {0}, vt = {0};
    int rc = apt_volume_read(approx, "/exchange/data", &va, err);
    if (!rc)
        rc = apt_volume_read(truth, "/exchange/data", &vt, err);
    int want[3] = {va.Z * s->scale[0], va.Y * s->scale[1], va.X * s->scale[2]};
    if (!rc && (vt.Z != want[0] || vt.Y != want[1] || vt.X != want[2]))
        rc = apt_err(err, APT_EINVAL,
                     "%s: /exchange/data is %dx%dx%d, but the network's output for %s (%dx%dx%d, output scale "
                     "%dx%dx%d) is %dx%dx%d: the target must have that shape",
                     truth, vt.Z, vt.Y, vt.X, approx, va.Z, va.Y, va.X, s->scale[0], s->scale[1], s->scale[2],
                     want[0], want[1], want[2]);
    size_t na = (size_t)va.Z * va.Y * va.X, nt = (size_t)vt.Z * vt.Y * vt.X;
    for (size_t i = 0; !rc && i < na; i++)
        if (!isfinite(va.data[i]))
            rc = apt_err(err, APT_EINVAL, "%s: /exchange/data: non-finite value at voxel %zu", approx, i);
    for (size_t i = 0; !rc && i < nt; i++)
        if (!isfinite(vt.data[i]))
            rc = apt_err(err, APT_EINVAL, "%s: /exchange/data: non-finite value at voxel %zu", truth, i);
    if (!rc && s->voxels + na + nt > NN_TS_MAX_VOXELS)
        rc = apt_err(err, APT_ENOMEM, "%s: the training pairs exceed %zu voxels in all", approx,
                     (size_t)NN_TS_MAX_VOXELS);
    nn_ts_pair *p = &s->pairs[s->npairs];
    memset(p, 0, sizeof *p);
    if (!rc && (!(p->approx_path = strdup(approx)) || !(p->truth_path = strdup(truth))))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    if (rc) {
        free(p->approx_path);
        free(p->truth_path);
        apt_volume_free(&va);
        apt_volume_free(&vt);
        return rc;
    }
    p->a = va.data, p->t = vt.data;
    p->Z = va.Z, p->Y = va.Y, p->X = va.X;
    p->source = s->npairs;
    for (int i = 0; i < s->npairs; i++) /* the same voxels under another name are the same source */
        if (s->pairs[i].Z == p->Z && s->pairs[i].Y == p->Y && s->pairs[i].X == p->X &&
            !memcmp(s->pairs[i].a, p->a, na * sizeof(float))) {
            p->source = s->pairs[i].source;
            break;
        }
    s->voxels += na + nt;
    s->npairs++;
    return APT_OK;
}

/* "dir/rel" unless rel is absolute; malloc'd. */
static char *join(const char *dir, const char *rel)
{
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s%s%s", rel[0] == '/' ? "" : dir, rel[0] == '/' ? "" : "/", rel);
    return out;
}

int nn_ts_add_manifest(nn_trainset *s, const char *path, apt_error *err)
{
    struct stat st;
    char *file = !stat(path, &st) && S_ISDIR(st.st_mode) ? join(path, "dataset.json") : strdup(path);
    char *dircopy = file ? strdup(file) : NULL;
    if (!file || !dircopy) {
        free(file);
        free(dircopy);
        return apt_err(err, APT_ENOMEM, "out of memory");
    }
    const char *dir = dirname(dircopy);
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je), *pairs = json_object_get(root, "pairs");
    int rc = APT_OK;
    if (!root)
        rc = apt_err(err, APT_EINVAL, "%s: line %d: %s", file, je.line, je.text);
    else if (!json_is_array(pairs) || json_array_size(pairs) == 0)
        rc = apt_err(err, APT_EINVAL, "%s: \"pairs\": expected a non-empty list of {\"approximant\", \"truth\"}",
                     file);
    for (size_t i = 0; !rc && i < json_array_size(pairs); i++) {
        json_t *e = json_array_get(pairs, i);
        const char *ra = json_string_value(json_object_get(e, "approximant"));
        const char *rt = json_string_value(json_object_get(e, "truth"));
        if (!ra || !rt || !*ra || !*rt) {
            rc = apt_err(err, APT_EINVAL, "%s: pairs[%zu].%s: missing or not a string", file, i,
                         !ra || !*ra ? "approximant" : "truth");
            break;
        }
        char *pa = join(dir, ra), *pt = join(dir, rt);
        rc = pa && pt ? nn_ts_add_pair(s, pa, pt, err) : apt_err(err, APT_ENOMEM, "out of memory");
        if (rc)
            apt_err_prefix(err, rc, "%s: pairs[%zu]: ", file, i);
        free(pa);
        free(pt);
    }
    json_decref(root);
    free(file);
    free(dircopy);
    return rc;
}

/* ---- grid ---- */

int nn_ts_starts(int n, int p, int overlap, int *starts, int cap, int *count)
{
    if (n < 1 || p < 1 || cap < 1)
        return APT_EINVAL;
    if (overlap)
        return apt_tile_starts(n, p, starts, cap, count);
    int k = 0;
    starts[k++] = 0;
    for (int s = p; s + p <= n && k < cap; s += p)
        starts[k++] = s;
    if (n > p && starts[k - 1] + p < n && k < cap) /* the remainder: one more patch ending at n */
        starts[k++] = n - p;
    *count = k;
    return n > p && starts[k - 1] + p < n ? APT_ERANGE : APT_OK;
}

int nn_ts_reflect(int i, int n, int *flipped)
{
    int f = 0;
    if (n == 1) {
        f = i < 0 ? -i & 1 : i & 1; /* every voxel mirrors the one voxel: each step flips */
        i = 0;
    } else {
        int period = 2 * (n - 1);
        i %= period;
        if (i < 0)
            i += period;
        if (i >= n)
            i = period - i, f = 1;
    }
    if (flipped)
        *flipped = f;
    return i;
}

void nn_ts_box(const nn_ts_patch *p, const int patch[3], int b0[3], int b1[3])
{
    for (int a = 0; a < 3; a++) {
        int end = p->start[a] + patch[a];
        b0[a] = p->lo[a] + p->start[a];
        b1[a] = p->lo[a] + (end < p->n[a] ? end : p->n[a]);
    }
}

/* Append the grid of region [lo, lo+n) of pair k to *list. */
/* Is the target of patch p constant? 0, or APT_ENOMEM. */
static int target_constant(const nn_trainset *s, const nn_ts_patch *p, int *flat)
{
    size_t nq = (size_t)s->patch[0] * s->patch[1] * s->patch[2] * s->scale[0] * s->scale[1] * s->scale[2];
    float *y = malloc(nq * sizeof *y);
    if (!y || nn_ts_extract(s, p, 0, 0, 0.0, 1.0, NULL, y)) {
        free(y);
        return APT_ENOMEM;
    }
    size_t i = 1;
    while (i < nq && y[i] == y[0])
        i++;
    *flat = i == nq;
    free(y);
    return APT_OK;
}

static int cut_region(nn_trainset *s, int k, const int lo[3], const int n[3], nn_ts_patch **list, size_t *count,
                      size_t *dropped, apt_error *err)
{
    int st[3][TS_MAX_STARTS], ns[3];
    for (int a = 0; a < 3; a++)
        if (nn_ts_starts(n[a], s->patch[a], a > 0, st[a], TS_MAX_STARTS, &ns[a]))
            return apt_err(err, APT_ERANGE, "%s: more than %d patches along axis %c", s->pairs[k].approx_path,
                           TS_MAX_STARTS, "ZYX"[a]);
    size_t add = (size_t)ns[0] * ns[1] * ns[2];
    if (*count + add > NN_TS_MAX_PATCHES)
        return apt_err(err, APT_ERANGE, "more than %zu patches in all", (size_t)NN_TS_MAX_PATCHES);
    nn_ts_patch *nl = realloc(*list, (*count + add) * sizeof *nl);
    if (!nl)
        return apt_err(err, APT_ENOMEM, "out of memory for the patch list");
    *list = nl;
    for (int z = 0; z < ns[0]; z++)
        for (int y = 0; y < ns[1]; y++)
            for (int x = 0; x < ns[2]; x++) {
                nn_ts_patch *p = &nl[(*count)++];
                p->pair = k;
                for (int a = 0; a < 3; a++)
                    p->lo[a] = lo[a], p->n[a] = n[a];
                p->start[0] = st[0][z], p->start[1] = st[1][y], p->start[2] = st[2][x];
                int flat = 0;
                if (target_constant(s, p, &flat))
                    return apt_err(err, APT_ENOMEM, "out of memory for a patch");
                if (flat) /* NPCC is undefined against a constant target: such a patch teaches nothing */
                    (*count)--, *dropped += 1;
            }
    return APT_OK;
}

int nn_ts_check_disjoint(const nn_ts_pair *pairs, const nn_ts_patch *train, size_t ntrain, const nn_ts_patch *test,
                         size_t ntest, const int patch[3], apt_error *err)
{
    for (size_t i = 0; i < ntest; i++) {
        int t0[3], t1[3];
        nn_ts_box(&test[i], patch, t0, t1);
        for (size_t j = 0; j < ntrain; j++) {
            if (pairs[train[j].pair].source != pairs[test[i].pair].source)
                continue;
            int r0[3], r1[3], hit = 1;
            nn_ts_box(&train[j], patch, r0, r1);
            for (int a = 0; a < 3 && hit; a++)
                hit = t0[a] < r1[a] && r0[a] < t1[a];
            if (hit)
                return apt_err(err, APT_EINVAL,
                               "test patch [%d:%d, %d:%d, %d:%d] of %s overlaps training patch [%d:%d, %d:%d, "
                               "%d:%d] of %s (the same source volume): the test set would not be held out",
                               t0[0], t1[0], t0[1], t1[1], t0[2], t1[2], pairs[test[i].pair].approx_path, r0[0],
                               r1[0], r0[1], r1[1], r0[2], r1[2], pairs[train[j].pair].approx_path);
        }
    }
    return APT_OK;
}

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

int nn_ts_split(nn_trainset *s, int test_pairs, double test_fraction, uint64_t seed, apt_error *err)
{
    if (s->npairs < 1)
        return apt_err(err, APT_EINVAL, "no training pairs");
    int rc = APT_OK;
    if (s->npairs == 1) {
        nn_ts_pair *p = &s->pairs[0];
        if (test_pairs > 0)
            return apt_err(err, APT_EINVAL, "--test-pairs needs at least 2 pairs (one pair is split by a band)");
        int w = (int)lround(test_fraction * p->X);
        w = w < 1 ? 1 : w;
        if (p->X - w < 1)
            return apt_err(err, APT_EINVAL, "%s: X = %d is too narrow to split into a training part and a test band",
                           p->approx_path, p->X);
        s->band_x0 = p->X - w;
        int lo[3] = {0, 0, 0}, n[3] = {p->Z, p->Y, s->band_x0};
        rc = cut_region(s, 0, lo, n, &s->train, &s->ntrain, &s->dropped, err);
        lo[2] = s->band_x0, n[2] = w;
        if (!rc)
            rc = cut_region(s, 0, lo, n, &s->test, &s->ntest, &s->dropped, err);
    } else {
        int nt = test_pairs > 0 ? test_pairs : (int)lround(test_fraction * s->npairs);
        nt = nt < 1 ? 1 : nt;
        if (nt >= s->npairs)
            return apt_err(err, APT_EINVAL, "%d test pairs of %d leave none to train on", nt, s->npairs);
        int *order = malloc((size_t)s->npairs * sizeof *order);
        unsigned char *is_test = calloc((size_t)s->npairs, 1);
        s->test_pairs = malloc((size_t)nt * sizeof *s->test_pairs);
        if (!order || !is_test || !s->test_pairs) {
            free(order);
            free(is_test);
            return apt_err(err, APT_ENOMEM, "out of memory");
        }
        apt_sim_rng r;
        apt_sim_rng_seed(&r, seed, TS_SPLIT_STREAM);
        for (int i = 0; i < s->npairs; i++)
            order[i] = i;
        for (int i = s->npairs - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)(apt_sim_rng_next(&r) % (uint64_t)(i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        for (int i = 0; i < nt; i++)
            s->test_pairs[i] = order[i], is_test[order[i]] = 1;
        qsort(s->test_pairs, (size_t)nt, sizeof *s->test_pairs, cmp_int);
        s->ntest_pairs = nt;
        for (int k = 0; !rc && k < s->npairs; k++) {
            int lo[3] = {0, 0, 0}, n[3] = {s->pairs[k].Z, s->pairs[k].Y, s->pairs[k].X};
            rc = is_test[k] ? cut_region(s, k, lo, n, &s->test, &s->ntest, &s->dropped, err)
                            : cut_region(s, k, lo, n, &s->train, &s->ntrain, &s->dropped, err);
        }
        free(order);
        free(is_test);
    }
    if (!rc && (!s->ntrain || !s->ntest))
        rc = apt_err(err, APT_EINVAL, "no %s patch left: every one has a constant target",
                     s->ntrain ? "test" : "training");
    if (!rc)
        rc = nn_ts_check_disjoint(s->pairs, s->train, s->ntrain, s->test, s->ntest, s->patch, err);
    return rc;
}

/* ---- extraction ---- */

/* Per-axis source index of each patch voxel (Approximant) and of each output voxel (target). */
static void axis_maps(const nn_ts_patch *p, int a, int P, int f, int flip, int *src, int *tsrc)
{
    for (int i = 0; i < P; i++) {
        int fl, r = nn_ts_reflect(p->start[a] + i, p->n[a], &fl);
        int o = flip ? P - 1 - i : i;
        src[o] = p->lo[a] + r;
        for (int k = 0; tsrc && k < f; k++) {
            int sub = fl ? f - 1 - k : k;
            tsrc[flip ? f * P - 1 - (f * i + k) : f * i + k] = (p->lo[a] + r) * f + sub;
        }
    }
}

int nn_ts_extract(const nn_trainset *s, const nn_ts_patch *p, int flip_y, int flip_x, double mean, double std,
                  float *x, float *y)
{
    const nn_ts_pair *pr = &s->pairs[p->pair];
    const int *P = s->patch, *f = s->scale;
    int *m = malloc(sizeof(int) * (size_t)(P[0] * (1 + f[0]) + P[1] * (1 + f[1]) + P[2] * (1 + f[2])));
    if (!m)
        return APT_ENOMEM;
    int *sz = m, *sy = sz + P[0], *sx = sy + P[1], *tz = sx + P[2], *ty = tz + f[0] * P[0], *tx = ty + f[1] * P[1];
    axis_maps(p, 0, P[0], f[0], 0, sz, tz);
    axis_maps(p, 1, P[1], f[1], flip_y, sy, ty);
    axis_maps(p, 2, P[2], f[2], flip_x, sx, tx);
    double inv = 1.0 / std;
    if (x)
        for (int z = 0; z < P[0]; z++)
            for (int yy = 0; yy < P[1]; yy++) {
                const float *row = pr->a + ((size_t)sz[z] * pr->Y + sy[yy]) * pr->X;
                float *dst = x + ((size_t)z * P[1] + yy) * P[2];
                for (int xx = 0; xx < P[2]; xx++)
                    dst[xx] = (float)((row[sx[xx]] - mean) * inv);
            }
    int QZ = P[0] * f[0], QY = P[1] * f[1], QX = P[2] * f[2], TY = pr->Y * f[1], TX = pr->X * f[2];
    if (y)
        for (int z = 0; z < QZ; z++)
            for (int yy = 0; yy < QY; yy++) {
                const float *row = pr->t + ((size_t)tz[z] * TY + ty[yy]) * TX;
                float *dst = y + ((size_t)z * QY + yy) * QX;
                for (int xx = 0; xx < QX; xx++)
                    dst[xx] = row[tx[xx]];
            }
    free(m);
    return APT_OK;
}

int nn_ts_input_stats(const nn_trainset *s, double *mean, double *std, apt_error *err)
{
    size_t np = (size_t)s->patch[0] * s->patch[1] * s->patch[2];
    float *x = malloc(np * sizeof *x);
    if (!x)
        return apt_err(err, APT_ENOMEM, "out of memory for a patch");
    double sum = 0, ss = 0, n = (double)np * (double)s->ntrain;
    int rc = APT_OK;
    for (size_t i = 0; !rc && i < s->ntrain; i++) { /* two passes: the mean, then the squares about it */
        rc = nn_ts_extract(s, &s->train[i], 0, 0, 0.0, 1.0, x, NULL);
        for (size_t k = 0; !rc && k < np; k++)
            sum += x[k];
    }
    double mu = sum / n;
    for (size_t i = 0; !rc && i < s->ntrain; i++) {
        rc = nn_ts_extract(s, &s->train[i], 0, 0, 0.0, 1.0, x, NULL);
        for (size_t k = 0; !rc && k < np; k++)
            ss += (x[k] - mu) * (x[k] - mu);
    }
    free(x);
    if (rc)
        return apt_err(err, rc, "out of memory for a patch");
    double sd = sqrt(ss / n);
    if (!s->ntrain || !(sd > 0) || !isfinite(sd))
        return apt_err(err, APT_EINVAL, "the training Approximants are constant (std %g): nothing to learn from", sd);
    *mean = mu, *std = sd;
    return APT_OK;
}

/* ---- moments ---- */

void nn_ts_moments_add(nn_ts_moments *m, const float *y, const float *t, size_t n)
{
    if (!n)
        return;
    double sy = 0, st = 0;
    for (size_t i = 0; i < n; i++)
        sy += y[i], st += t[i];
    nn_ts_moments c = {(double)n, sy / (double)n, st / (double)n, 0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        double dy = y[i] - c.my, dt = t[i] - c.mt;
        c.syy += dy * dy, c.stt += dt * dt, c.syt += dy * dt;
    }
    double N = m->n + c.n, dy = c.my - m->my, dt = c.mt - m->mt, w = m->n * c.n / N;
    m->syy += c.syy + dy * dy * w;
    m->stt += c.stt + dt * dt * w;
    m->syt += c.syt + dy * dt * w;
    m->my += dy * c.n / N;
    m->mt += dt * c.n / N;
    m->n = N;
}

double nn_ts_moments_pcc(const nn_ts_moments *m)
{
    if (!(m->syy > 0) || !(m->stt > 0))
        return NAN;
    return m->syt / sqrt(m->syy * m->stt);
}

void nn_ts_moments_fit(const nn_ts_moments *m, double *scale, double *offset)
{
    *scale = m->syy > 0 ? m->syt / m->syy : 0.0;
    *offset = m->mt - *scale * m->my;
}

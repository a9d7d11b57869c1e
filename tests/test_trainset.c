/* test_trainset.c - the data side of aptomo train (tools/trainset.c) against independent references: the patch
 * grid (lateral starts = the inference tiler's, Z without overlap, every voxel covered), numpy-style reflection
 * against an explicitly mirrored sequence, padding and flips that keep a scale-2 target aligned with its
 * Approximant (a target that IS the nearest-upsampled Approximant stays so patch by patch), the input statistics
 * against a brute-force sum, the test split (band and whole pairs, seeded) and its no-overlap check on constructed
 * overlapping cases (same source under another name included), and the pooled moments against direct formulas. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "apt_test.h"
#include "aptomo/metrics.h"
#include "aptomo/tile.h"
#include "trainset.h"

/* numpy.pad(mode="reflect") index, built the slow way: walk the mirrored sequence 0..n-1, n-2..1, 0.. from 0. */
static int walk_reflect(int i, int n)
{
    if (n == 1)
        return 0;
    int pos = 0, dir = i >= 0 ? 1 : -1;
    for (int k = 0; k < abs(i); k++) {
        if (pos + dir < 0 || pos + dir > n - 1)
            dir = -dir;
        pos += dir;
    }
    return pos;
}

/* The same with a mirrored-ness where it is defined: the sequence runs backwards at i (away from turning points,
   where the edge voxel's two neighbours coincide and either orientation is a mirror image). -1: undefined. */
static int ref_reflect(int i, int n, int *flipped)
{
    int r = walk_reflect(i, n), prev = walk_reflect(i - 1, n), next = walk_reflect(i + 1, n);
    *flipped = prev == next ? -1 : next < r;
    return r;
}

static void test_reflect(void)
{
    int bad = 0;
    for (int n = 1; n <= 7; n++)
        for (int i = -20; i < 30; i++) {
            int f1, f2, r1 = nn_ts_reflect(i, n, &f1), r2 = ref_reflect(i, n, &f2);
            if (r1 != r2 || (f2 >= 0 && f1 != f2))
                bad++, fprintf(stderr, "reflect(%d, %d) = %d/%d, want %d/%d\n", i, n, r1, f1, r2, f2);
        }
    CHECK(bad == 0);
    int f;
    CHECK(nn_ts_reflect(5, 5, &f) == 3 && f == 1); /* numpy reflect: the edge voxel is not repeated */
    CHECK(nn_ts_reflect(-1, 5, &f) == 1 && f == 1);
}

static void test_starts(void)
{
    int st[256], n, tile[256], nt;
    for (int len = 1; len <= 70; len++)
        for (int p = 2; p <= 16; p += 2) {
            CHECK(nn_ts_starts(len, p, 1, st, 256, &n) == APT_OK);
            apt_tile_starts(len, p, tile, 256, &nt);
            CHECK(n == nt && !memcmp(st, tile, (size_t)n * sizeof(int))); /* lateral: the tiler's grid */
            for (int k = 1; k < n - 1; k++)
                CHECK(st[k] - st[k - 1] == p / 2); /* 50 % overlap: step half a patch */
            CHECK(nn_ts_starts(len, p, 0, st, 256, &n) == APT_OK);
            int covered = 0, overlap = 0;
            unsigned char *hit = calloc((size_t)len, 1);
            for (int k = 0; k < n; k++)
                for (int i = st[k]; i < st[k] + p && i < len; i++)
                    overlap += hit[i]++ > 0;
            for (int i = 0; i < len; i++)
                covered += hit[i] > 0;
            CHECK_MSG(covered == len, "Z grid n=%d p=%d leaves voxels out", len, p);
            /* Z: no overlap, except the one patch that ends at n when p does not divide n */
            int expect = len > p && len % p ? p - len % p : 0;
            CHECK_MSG(overlap == expect, "Z grid n=%d p=%d: %d voxels overlap, want %d", len, p, overlap, expect);
            CHECK(n == 1 || st[n - 1] + p == len);
            free(hit);
        }
    CHECK(nn_ts_starts(100000, 2, 0, st, 256, &n) == APT_ERANGE); /* bounded */
}

static float *noise(size_t n, unsigned seed)
{
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(((i + 1) * 2654435761u ^ seed * 40503u) % 10007) / 10007.0f;
    return v;
}

/* A pair whose target is the nearest-upsampled Approximant (scale f). */
static void add_pair(nn_trainset *s, int Z, int Y, int X, unsigned seed, const char *name)
{
    s->pairs = realloc(s->pairs, (size_t)(s->npairs + 1) * sizeof *s->pairs);
    nn_ts_pair *p = &s->pairs[s->npairs];
    memset(p, 0, sizeof *p);
    p->Z = Z, p->Y = Y, p->X = X;
    p->a = noise((size_t)Z * Y * X, seed);
    const int *f = s->scale;
    int TZ = Z * f[0], TY = Y * f[1], TX = X * f[2];
    p->t = malloc((size_t)TZ * TY * TX * sizeof(float));
    for (int z = 0; z < TZ; z++)
        for (int y = 0; y < TY; y++)
            for (int x = 0; x < TX; x++)
                p->t[((size_t)z * TY + y) * TX + x] = p->a[((size_t)(z / f[0]) * Y + y / f[1]) * X + x / f[2]];
    p->approx_path = strdup(name);
    p->truth_path = strdup(name);
    p->source = s->npairs;
    for (int i = 0; i < s->npairs; i++) /* what nn_ts_add_pair does */
        if (s->pairs[i].Z == Z && s->pairs[i].Y == Y && s->pairs[i].X == X &&
            !memcmp(s->pairs[i].a, p->a, (size_t)Z * Y * X * sizeof(float))) {
            p->source = s->pairs[i].source;
            break;
        }
    s->npairs++;
}

/* Target indices along an axis for output voxel o of a patch (scale f): the reflected Approximant voxel's sub-voxel,
   mirrored when the reflection mirrors; both orientations at a turning point. Returns the count (1 or 2). */
static int target_candidates(const nn_ts_patch *p, int a, int o, int f, int *out)
{
    int fl, r = ref_reflect(p->start[a] + o / f, p->n[a], &fl), sub = o % f;
    int base = (p->lo[a] + r) * f;
    if (fl < 0) {
        out[0] = base + sub, out[1] = base + f - 1 - sub;
        return 2;
    }
    out[0] = base + (fl ? f - 1 - sub : sub);
    return 1;
}

/* A target with detail inside each Approximant voxel: every output voxel comes from the right sub-voxel. */
static void test_subvoxels(int Z, int Y, int X)
{
    int patch[3] = {8, 6, 6}, scale[3] = {1, 2, 2};
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, Z, Y, X, 5, "a");
    free(s.pairs[0].t);
    int TY = 2 * Y, TX = 2 * X;
    s.pairs[0].t = noise((size_t)Z * TY * TX, 99);
    apt_error err = {0};
    CHECK_OK(nn_ts_split(&s, 0, 0.25, 1, &err), &err);
    float y[8 * 12 * 12];
    int bad = 0;
    for (size_t i = 0; i < s.ntrain + s.ntest; i++)
        for (int fl = 0; fl < 4; fl++) {
            const nn_ts_patch *p = i < s.ntrain ? &s.train[i] : &s.test[i - s.ntrain];
            nn_ts_extract(&s, p, fl & 1, fl >> 1, 0.0, 1.0, NULL, y);
            for (int z = 0; z < 8; z++)
                for (int yy = 0; yy < 12; yy++)
                    for (int xx = 0; xx < 12; xx++) {
                        int cz[2], cy[2], cx[2], nz = target_candidates(p, 0, z, 1, cz);
                        int ny = target_candidates(p, 1, yy, 2, cy), nx = target_candidates(p, 2, xx, 2, cx);
                        float got = y[((size_t)z * 12 + (fl & 1 ? 11 - yy : yy)) * 12 + (fl >> 1 ? 11 - xx : xx)];
                        int ok = 0;
                        for (int a = 0; a < nz; a++)
                            for (int b = 0; b < ny; b++)
                                for (int c = 0; c < nx; c++)
                                    ok |= got == s.pairs[0].t[((size_t)cz[a] * TY + cy[b]) * TX + cx[c]];
                        bad += !ok;
                    }
        }
    CHECK_MSG(bad == 0, "volume %dx%dx%d: %d target voxels from the wrong sub-voxel", Z, Y, X, bad);
    nn_ts_free(&s);
}

/* Every extracted target equals the nearest upsample of the extracted Approximant, with padding and flips. */
static void test_extract_aligned(int Z, int Y, int X)
{
    int patch[3] = {8, 6, 6}, scale[3] = {1, 2, 2};
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, Z, Y, X, 7, "a");
    apt_error err = {0};
    CHECK_OK(nn_ts_split(&s, 0, 0.25, 1, &err), &err);
    size_t np = 8 * 6 * 6, nq = np * 4;
    float *x = malloc(np * sizeof *x), *y = malloc(nq * sizeof *y);
    int bad = 0;
    for (size_t i = 0; i < s.ntrain + s.ntest; i++)
        for (int fl = 0; fl < 4; fl++) {
            const nn_ts_patch *p = i < s.ntrain ? &s.train[i] : &s.test[i - s.ntrain];
            CHECK(nn_ts_extract(&s, p, fl & 1, fl >> 1, 0.0, 1.0, x, y) == APT_OK);
            for (int z = 0; z < 8; z++)
                for (int yy = 0; yy < 12; yy++)
                    for (int xx = 0; xx < 12; xx++)
                        bad += y[((size_t)z * 12 + yy) * 12 + xx] != x[((size_t)z * 6 + yy / 2) * 6 + xx / 2];
            /* and x itself: the flip of the unflipped patch, each voxel the reflected source voxel */
            float *x0 = malloc(np * sizeof *x0);
            nn_ts_extract(&s, p, 0, 0, 0.0, 1.0, x0, NULL);
            for (int z = 0; z < 8; z++)
                for (int yy = 0; yy < 6; yy++)
                    for (int xx = 0; xx < 6; xx++) {
                        int f, sz = p->lo[0] + ref_reflect(p->start[0] + z, p->n[0], &f);
                        int sy = p->lo[1] + ref_reflect(p->start[1] + yy, p->n[1], &f);
                        int sx = p->lo[2] + ref_reflect(p->start[2] + xx, p->n[2], &f);
                        int fy = fl & 1 ? 5 - yy : yy, fx = fl >> 1 ? 5 - xx : xx;
                        bad += x0[((size_t)z * 6 + yy) * 6 + xx] != s.pairs[0].a[((size_t)sz * Y + sy) * X + sx];
                        bad += x[((size_t)z * 6 + fy) * 6 + fx] != x0[((size_t)z * 6 + yy) * 6 + xx];
                    }
            free(x0);
        }
    CHECK_MSG(bad == 0, "volume %dx%dx%d: %d misaligned voxels", Z, Y, X, bad);
    /* the band: training boxes left of it, test boxes inside it, and every voxel covered by its side */
    int b0[3], b1[3], outside = 0;
    unsigned char *hit = calloc((size_t)Z * Y * X, 1);
    for (size_t i = 0; i < s.ntrain + s.ntest; i++) {
        int test = i >= s.ntrain;
        nn_ts_box(test ? &s.test[i - s.ntrain] : &s.train[i], patch, b0, b1);
        outside += test ? b0[2] < s.band_x0 : b1[2] > s.band_x0;
        for (int z = b0[0]; z < b1[0]; z++)
            for (int yy = b0[1]; yy < b1[1]; yy++)
                for (int xx = b0[2]; xx < b1[2]; xx++)
                    hit[((size_t)z * Y + yy) * X + xx] = 1;
    }
    size_t covered = 0;
    for (size_t i = 0; i < (size_t)Z * Y * X; i++)
        covered += hit[i];
    CHECK(outside == 0);
    CHECK_MSG(covered == (size_t)Z * Y * X, "volume %dx%dx%d: %zu of %d voxels covered", Z, Y, X, covered, Z * Y * X);
    CHECK(s.band_x0 == X - (int)lround(0.25 * X));
    free(hit);
    free(x);
    free(y);
    nn_ts_free(&s);
}

static void test_input_stats(void)
{
    int patch[3] = {4, 6, 6}, scale[3] = {1, 1, 1};
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, 3, 14, 9, 3, "a"); /* Z padded, Y overlapping, X overlapping + band */
    apt_error err = {0};
    CHECK_OK(nn_ts_split(&s, 0, 0.3, 0, &err), &err);
    double mean, std, sum = 0, ss = 0, n = 0;
    CHECK_OK(nn_ts_input_stats(&s, &mean, &std, &err), &err);
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < s.ntrain; i++) {
            const nn_ts_patch *p = &s.train[i];
            for (int z = 0; z < 4; z++)
                for (int y = 0; y < 6; y++)
                    for (int x = 0; x < 6; x++) {
                        int f, sz = p->lo[0] + ref_reflect(p->start[0] + z, p->n[0], &f);
                        int sy = p->lo[1] + ref_reflect(p->start[1] + y, p->n[1], &f);
                        int sx = p->lo[2] + ref_reflect(p->start[2] + x, p->n[2], &f);
                        double v = s.pairs[0].a[((size_t)sz * 14 + sy) * 9 + sx];
                        if (pass == 0)
                            sum += v, n++;
                        else
                            ss += (v - sum / n) * (v - sum / n);
                    }
        }
    CHECK_MSG(fabs(mean - sum / n) < 1e-12 && fabs(std - sqrt(ss / n)) < 1e-12, "stats %g %g vs %g %g", mean, std,
              sum / n, sqrt(ss / n));
    /* normalised patches have the training mean and std */
    float x[144];
    nn_ts_extract(&s, &s.train[0], 0, 0, mean, std, x, NULL);
    float raw[144];
    nn_ts_extract(&s, &s.train[0], 0, 0, 0.0, 1.0, raw, NULL);
    int bad = 0;
    for (int i = 0; i < 144; i++)
        bad += fabs(x[i] - (raw[i] - mean) / std) > 1e-5;
    CHECK(bad == 0);
    nn_ts_free(&s);
}

static void test_split_check(void)
{
    int patch[3] = {4, 4, 4}, scale[3] = {1, 1, 1};
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, 4, 8, 8, 1, "p0.h5");
    add_pair(&s, 4, 8, 8, 2, "p1.h5");
    add_pair(&s, 4, 8, 8, 1, "copy-of-p0.h5"); /* the same voxels under another name: the same source */
    CHECK(s.pairs[2].source == 0 && s.pairs[1].source == 1);
    nn_ts_patch a = {.pair = 0, .lo = {0, 0, 0}, .n = {4, 8, 8}, .start = {0, 0, 0}};
    nn_ts_patch b = a, c = a, d = a;
    b.start[2] = 2; /* overlaps a in X by 2 */
    c.start[2] = 4; /* touches a, shares no voxel */
    d.pair = 1;     /* same place, another volume */
    apt_error err = {0};
    CHECK(nn_ts_check_disjoint(s.pairs, &a, 1, &b, 1, patch, &err) == APT_EINVAL);
    CHECK(strstr(err.msg, "overlaps") && strstr(err.msg, "p0.h5"));
    CHECK(nn_ts_check_disjoint(s.pairs, &a, 1, &c, 1, patch, &err) == APT_OK);
    CHECK(nn_ts_check_disjoint(s.pairs, &c, 1, &a, 1, patch, &err) == APT_OK);
    CHECK(nn_ts_check_disjoint(s.pairs, &a, 1, &d, 1, patch, &err) == APT_OK);
    nn_ts_patch e = a;
    e.pair = 2;
    CHECK(nn_ts_check_disjoint(s.pairs, &a, 1, &e, 1, patch, &err) == APT_EINVAL);
    /* a patch box is clipped to its region: a padded patch of a narrow band reads only the band */
    nn_ts_patch band = {.pair = 0, .lo = {0, 0, 6}, .n = {4, 8, 2}, .start = {0, 0, 0}}, left = a;
    left.start[2] = 2; /* reads X 2..5, the band is 6..7 */
    CHECK(nn_ts_check_disjoint(s.pairs, &left, 1, &band, 1, patch, &err) == APT_OK);
    /* whole-pair splits: a copy of a training pair in the test set is refused, whichever pair was drawn */
    int refused = 0, seeds = 0;
    for (uint64_t seed = 0; seed < 8; seed++) {
        free(s.train), free(s.test), free(s.test_pairs);
        s.train = s.test = NULL, s.test_pairs = NULL, s.ntrain = s.ntest = 0;
        int rc = nn_ts_split(&s, 1, 0, seed, &err);
        seeds++;
        refused += rc == APT_EINVAL && strstr(err.msg, "overlaps") != NULL;
        CHECK(rc != APT_OK || s.test_pairs[0] == 1); /* only holding out p1 is clean */
        CHECK(rc == APT_OK || s.test_pairs[0] != 1);
    }
    CHECK(refused > 0 && refused < seeds); /* the seed decides, and both outcomes occur over 8 seeds */
    nn_ts_free(&s);
}

static void test_split_pairs(void)
{
    int patch[3] = {4, 4, 4}, scale[3] = {1, 2, 2};
    int first[2] = {-1, -1}, same = 1, differ = 0;
    for (int rep = 0; rep < 2; rep++)
        for (uint64_t seed = 0; seed < 6; seed++) {
            nn_trainset s;
            nn_ts_init(&s, patch, scale);
            for (int k = 0; k < 5; k++) {
                char name[16];
                snprintf(name, sizeof name, "p%d", k);
                add_pair(&s, 4, 8 + k, 8, 10u + (unsigned)k, name);
            }
            apt_error err = {0};
            CHECK_OK(nn_ts_split(&s, 0, 0.4, seed, &err), &err);
            CHECK(s.ntest_pairs == 2 && s.band_x0 == -1 && s.test_pairs[0] < s.test_pairs[1]);
            size_t want_test = 0, want_train = 0;
            for (int k = 0; k < 5; k++) {
                int st[64], ny;
                nn_ts_starts(8 + k, 4, 1, st, 64, &ny);
                size_t np = (size_t)ny * 3; /* X: 8 -> starts 0, 2, 4; Z one */
                if (k == s.test_pairs[0] || k == s.test_pairs[1])
                    want_test += np;
                else
                    want_train += np;
            }
            CHECK(s.ntest == want_test && s.ntrain == want_train);
            int code = s.test_pairs[0] * 8 + s.test_pairs[1];
            if (seed == 0) {
                if (rep == 0)
                    first[0] = code;
                else
                    same &= first[0] == code;
            } else
                differ += code != first[0];
            nn_ts_free(&s);
        }
    CHECK(same);       /* the same seed draws the same test pairs */
    CHECK(differ > 0); /* and other seeds draw others */
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, 4, 8, 8, 1, "p0");
    add_pair(&s, 4, 8, 8, 2, "p1");
    apt_error err = {0};
    CHECK(nn_ts_split(&s, 2, 0, 0, &err) == APT_EINVAL && strstr(err.msg, "none to train on"));
    nn_ts_free(&s);
    nn_ts_init(&s, patch, scale);
    add_pair(&s, 4, 8, 1, 1, "narrow");
    CHECK(nn_ts_split(&s, 0, 0.2, 0, &err) == APT_EINVAL && strstr(err.msg, "too narrow"));
    nn_ts_free(&s);
}

static void test_constant_target(void)
{
    int patch[3] = {4, 4, 4}, scale[3] = {1, 1, 1};
    nn_trainset s;
    nn_ts_init(&s, patch, scale);
    add_pair(&s, 4, 8, 16, 1, "p0");
    for (int z = 0; z < 4; z++) /* X 0..3 constant: the patches at X 0..3 (and only they) have a flat target */
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 4; x++)
                s.pairs[0].t[((size_t)z * 8 + y) * 16 + x] = 0.5f;
    apt_error err = {0};
    CHECK_OK(nn_ts_split(&s, 0, 0.25, 0, &err), &err);
    /* training region X 0..11: starts 0, 2, 4, 6, 8 over 3 Y starts; the 3 at X 0 are flat */
    CHECK(s.dropped == 3 && s.ntrain == 12);
    for (size_t i = 0; i < s.ntrain; i++)
        CHECK(s.train[i].start[2] != 0);
    nn_ts_free(&s);
}

static void test_moments(void)
{
    size_t n = 5000;
    float *y = noise(n, 3), *t = noise(n, 4);
    for (size_t i = 0; i < n; i++)
        t[i] = 3.0f * y[i] - 1.0f + 0.5f * t[i] + 1000.0f; /* a large offset tests the centring */
    nn_ts_moments m = {0};
    for (size_t at = 0; at < n; at += 777) /* uneven chunks */
        nn_ts_moments_add(&m, y + at, t + at, n - at < 777 ? n - at : 777);
    double pcc = apt_metric_pcc(y, t, n, NULL);
    CHECK_MSG(fabs(nn_ts_moments_pcc(&m) - pcc) < 1e-10, "pcc %.15g vs %.15g", nn_ts_moments_pcc(&m), pcc);
    double sy = 0, st = 0, syy = 0, syt = 0; /* normal equations, directly */
    for (size_t i = 0; i < n; i++)
        sy += y[i], st += t[i];
    for (size_t i = 0; i < n; i++)
        syy += (y[i] - sy / n) * (y[i] - sy / n), syt += (y[i] - sy / n) * (t[i] - st / n);
    double a, b;
    nn_ts_moments_fit(&m, &a, &b);
    CHECK_MSG(fabs(a - syt / syy) < 1e-9 && fabs(b - (st / n - syt / syy * sy / n)) < 1e-7, "fit %g %g", a, b);
    nn_ts_moments c = {0};
    float k[4] = {2, 2, 2, 2};
    nn_ts_moments_add(&c, k, t, 4);
    CHECK(isnan(nn_ts_moments_pcc(&c)));
    nn_ts_moments_fit(&c, &a, &b);
    CHECK(a == 0 && fabs(b - (t[0] + t[1] + t[2] + t[3]) / 4.0) < 1e-9);
    free(y);
    free(t);
}

int main(void)
{
    test_reflect();
    test_starts();
    test_extract_aligned(5, 4, 3);    /* smaller than a patch on every axis: all padding */
    test_extract_aligned(8, 6, 12);   /* exactly a patch in Z and Y */
    test_extract_aligned(20, 17, 29); /* larger: overlap, remainders, a band wider than a patch */
    test_subvoxels(5, 4, 3);
    test_subvoxels(20, 17, 29);
    test_input_stats();
    test_split_check();
    test_split_pairs();
    test_constant_target();
    test_moments();
    APT_TEST_DONE();
}

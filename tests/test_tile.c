/* test_tile.c - the volume tiler with exact mock networks: a nearest-upsampling "identity" must give back the
 * upsampled input exactly for constant, ramp and random volumes of sizes below, at and above the patch (so padding,
 * overlap and the window normalisation leave no seam), normalisation is applied, starts cover every voxel with 50 %
 * overlap, and errors from the network propagate. */
#include <math.h>
#include <stdlib.h>

#include "apt_test.h"
#include "aptomo/tile.h"

typedef struct mock {
    int pz, py, px, fz, fy, fx;
    int calls, fail_at;
} mock;

/* y = nearest upsample of x by (fz, fy, fx) */
static int upsample(void *ctx, const float *x, int B, float *y, apt_error *err)
{
    mock *m = ctx;
    if (++m->calls == m->fail_at)
        return apt_err(err, APT_EIO, "mock network failed");
    int qz = m->pz * m->fz, qy = m->py * m->fy, qx = m->px * m->fx;
    for (int b = 0; b < B; b++)
        for (int z = 0; z < qz; z++)
            for (int yy = 0; yy < qy; yy++)
                for (int xx = 0; xx < qx; xx++)
                    y[(((size_t)b * qz + z) * qy + yy) * qx + xx] =
                        x[(((size_t)b * m->pz + z / m->fz) * m->py + yy / m->fy) * m->px + xx / m->fx];
    return APT_OK;
}

static void check_volume(int Z, int Y, int X, int kind)
{
    mock m = {8, 6, 6, 1, 2, 2, 0, 0};
    apt_tile_spec sp = {m.pz, m.py, m.px, m.fz, m.fy, m.fx, 3, 0.0, 1.0};
    size_t n = (size_t)Z * Y * X, no = n * 4;
    float *v = malloc(n * sizeof *v), *o = malloc(no * sizeof *o);
    for (int z = 0; z < Z; z++)
        for (int y = 0; y < Y; y++)
            for (int x = 0; x < X; x++) {
                size_t i = ((size_t)z * Y + y) * X + x;
                v[i] = kind == 0 ? 3.25f : kind == 1 ? (float)(0.5 * z - 0.25 * y + 0.125 * x)
                                                     : (float)((i * 2654435761u) % 1000) / 1000.0f;
            }
    apt_error err = {0};
    CHECK_OK(apt_tile_run(v, Z, Y, X, &sp, upsample, &m, NULL, NULL, o, &err), &err);
    double worst = 0;
    for (int z = 0; z < Z; z++)
        for (int y = 0; y < 2 * Y; y++)
            for (int x = 0; x < 2 * X; x++) {
                double want = v[((size_t)z * Y + y / 2) * X + x / 2];
                double d = fabs(o[((size_t)z * 2 * Y + y) * 2 * X + x] - want);
                worst = d > worst ? d : worst;
            }
    CHECK_MSG(worst < 1e-5, "volume %dx%dx%d kind %d: max error %g (seam or padding fault)", Z, Y, X, kind, worst);
    free(v);
    free(o);
}

static void test_starts(void)
{
    int s[64], n;
    for (int len = 1; len < 40; len++)
        for (int p = 2; p < 12; p++) {
            CHECK_OK(apt_tile_starts(len, p, s, 64, &n), &(apt_error){0});
            int covered = 1;
            for (int i = 0; i < len && len >= p; i++) {
                int hit = 0;
                for (int k = 0; k < n; k++)
                    hit |= i >= s[k] && i < s[k] + p;
                covered &= hit;
            }
            CHECK_MSG(covered, "len %d patch %d: a voxel is not covered", len, p);
            if (len > p) {
                CHECK(s[0] == 0 && s[n - 1] == len - p);
                for (int k = 1; k < n; k++)
                    CHECK_MSG(s[k] - s[k - 1] <= p / 2 && s[k] > s[k - 1], "len %d patch %d: gap", len, p);
            } else {
                CHECK(n == 1 && s[0] == 0);
            }
        }
}

static void test_norm_and_errors(void)
{
    mock m = {4, 4, 4, 1, 1, 1, 0, 0};
    apt_tile_spec sp = {4, 4, 4, 1, 1, 1, 2, 10.0, 4.0};
    float v[6 * 5 * 7], o[6 * 5 * 7];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        v[i] = (float)i;
    apt_error err = {0};
    CHECK_OK(apt_tile_run(v, 6, 5, 7, &sp, upsample, &m, NULL, NULL, o, &err), &err);
    int ok = 1;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ok &= fabs(o[i] - (v[i] - 10.0) / 4.0) < 1e-5;
    CHECK_MSG(ok, "input normalisation (x - mean) / std not applied");
    m.calls = 0;
    m.fail_at = 2;
    CHECK(apt_tile_run(v, 6, 5, 7, &sp, upsample, &m, NULL, NULL, o, &err) == APT_EIO);
    CHECK(strstr(err.msg, "mock network failed") != NULL);
    sp.batch = 0;
    CHECK(apt_tile_run(v, 6, 5, 7, &sp, upsample, &m, NULL, NULL, o, &err) == APT_EINVAL);
}

int main(void)
{
    test_starts();
    const int sizes[][3] = {{8, 6, 6}, {3, 4, 5}, {8, 13, 9}, {20, 6, 17}, {17, 23, 11}, {1, 1, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int kind = 0; kind < 3; kind++)
            check_volume(sizes[i][0], sizes[i][1], sizes[i][2], kind);
    test_norm_and_errors();
    APT_TEST_DONE();
}

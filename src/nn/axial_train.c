/* axial_train.c - the axial attention core (docs/NETWORK.md) in training mode: batch-statistics BatchNorm for sim_bn
 * and out_bn, running statistics, and the exact backward (through the batch statistics, the softmax and the
 * relative embeddings' gather). Same per-line math as axial.c; what training adds is that every BatchNorm needs a
 * sum over ALL lines before any line can go on, so fwd and bwd run as phases over the lines with a reduction in
 * between. Determinism: lines are cut into fixed blocks of AXT_BLOCK lines; a phase gives each block its own
 * partial sums (double), a worker takes whole blocks, and the partials are added in block order afterwards, so no
 * sum depends on the thread count. Per line, everything is single-threaded in a fixed order.
 *
 * saved, per line: sim x^ [3][G][K][K] (qk, qr, kr normalised), softmax p [G][K][K], out x^ [2P][K] (channel 2n =
 * sv of plane n, 2n+1 = sve); after the lines: the inverse std (double) of sim_bn [3G] and out_bn [2P].
 * scratch: block partials (double), then ds = dL/d(summed logits) [lines][G][K][K] (bwd), coefficients (double),
 * then one tile of line buffers per worker. */
#include "aptomo/axial_train.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "aptomo/parallel.h"

#define AXT_BLOCK 32 /* lines per reduction block: fixed, so no sum depends on the thread count */
#define AXT_TILE 8   /* lines gathered / scattered together (divides AXT_BLOCK) */
#define AXT_MAX (1 << 24) /* planes and K: the unchecked size products below then stay far below 2^64 */
#define AXT_EPS 1e-5
#define AXT_MOMENTUM 0.1

typedef struct axt_geo {
    int P, G, gp, c2, K, L;
    size_t KK, lines, nblocks;
    size_t sp, ps, n1, n2, s1, s2; /* NCDHW addressing of a line (as axial.c) */
    size_t line_saved, worker, part, coef, ds;
} axt_geo;

static int mul_ok(size_t *acc, size_t v)
{
    return !__builtin_mul_overflow(*acc, v, acc);
}

static int add_ok(size_t *acc, size_t v)
{
    return !__builtin_add_overflow(*acc, v, acc);
}

/* Shapes and sizes; 0 on success, -1 for invalid parameters or sizes that overflow size_t. */
static int geo_init(const apt_nn_axial_train *a, int B, int D, int H, int W, axt_geo *g)
{
    if (!a || a->heads < 1 || a->planes < 1 || a->planes % a->heads || (a->planes / a->heads) % 2 || a->K < 1 ||
        a->axis < 0 || a->axis > 2 || B < 1 || D < 1 || H < 1 || W < 1 || a->planes > AXT_MAX || a->K > AXT_MAX)
        return -1;
    int ext = a->axis == 0 ? D : a->axis == 1 ? H : W;
    if (ext != a->K)
        return -1;
    g->P = a->planes, g->G = a->heads, g->gp = g->P / g->G, g->c2 = g->gp / 2, g->K = a->K, g->L = 2 * a->K - 1;
    const size_t K = (size_t)g->K, P = (size_t)g->P, G = (size_t)g->G, gp = (size_t)g->gp, L = (size_t)g->L;
    g->KK = K * K;
    g->sp = (size_t)D;
    if (!mul_ok(&g->sp, (size_t)H) || !mul_ok(&g->sp, (size_t)W))
        return -1;
    g->ps = a->axis == 0 ? (size_t)H * W : a->axis == 1 ? (size_t)W : 1;
    g->n1 = a->axis == 0 ? (size_t)H : (size_t)D, g->n2 = a->axis == 2 ? (size_t)H : (size_t)W;
    g->s1 = a->axis == 0 ? (size_t)W : (size_t)H * W, g->s2 = a->axis == 2 ? (size_t)W : 1;
    g->lines = (size_t)B;
    if (!mul_ok(&g->lines, g->sp / K))
        return -1;
    g->nblocks = (g->lines + AXT_BLOCK - 1) / AXT_BLOCK;
    size_t t = 4 * G, u = 2 * P; /* per line saved: 4G*K*K + 2P*K */
    if (!mul_ok(&t, g->KK) || !mul_ok(&u, K) || !add_ok(&t, u))
        return -1;
    g->line_saved = t;
    g->worker = AXT_TILE * 5 * P * K + 2 * gp * K + 4 * g->KK; /* tiles col, dy, dcol; dsv+dsve; dp; dX x3 */
    g->part = 4 * G + gp * L > 3 * P ? 4 * G + gp * L : 3 * P;
    g->coef = 7 * G + 5 * P;
    g->ds = g->lines;
    return mul_ok(&g->ds, G) && mul_ok(&g->ds, g->KK) ? 0 : -1;
}

size_t apt_nn_axial_train_saved(const apt_nn_axial_train *a, int B, int D, int H, int W)
{
    axt_geo g;
    size_t n;
    if (geo_init(a, B, D, H, W, &g))
        return 0;
    n = g.lines;
    return mul_ok(&n, g.line_saved) && add_ok(&n, 2 * (3 * (size_t)g.G + 2 * (size_t)g.P)) ? n : 0;
}

size_t apt_nn_axial_train_scratch(const apt_nn_axial_train *a, int B, int D, int H, int W, int threads)
{
    axt_geo g;
    if (geo_init(a, B, D, H, W, &g))
        return 0;
    size_t nt = threads < 1 ? 1 : threads > APT_PAR_MAX_THREADS ? APT_PAR_MAX_THREADS : (size_t)threads;
    size_t parts = g.nblocks, w = g.worker, n = 2; /* 2: room to align the double region */
    if (!mul_ok(&parts, g.part) || !mul_ok(&parts, 2) || !mul_ok(&w, nt) || !add_ok(&n, parts) ||
        !add_ok(&n, 2 * g.coef) || !add_ok(&n, g.ds) || !add_ok(&n, w))
        return 0;
    return n;
}

/* ---- one pass over the lines ---- */

enum { F_SIM_SUM, F_SIM_VAR, F_SOFTMAX, F_OUT_VAR, F_OUTPUT, B_OUT_SUM, B_SOFTMAX, B_SIM };

typedef struct axt_run {
    const apt_nn_axial_train *a;
    const axt_geo *g;
    int phase, nt;
    const float *qkv, *dy;
    float *y, *saved, *dqkv, *ds, *wscr;
    double *part, *coef;
} axt_run;

static size_t line_base(const axt_geo *g, size_t l, size_t C)
{
    size_t b = l / (g->n1 * g->n2), r = l % (g->n1 * g->n2);
    return b * C * g->sp + (r / g->n2) * g->s1 + (r % g->n2) * g->s2;
}

/* dst[m][c][i] = channels [0, C) of lines l0 + m, m < n, of an NCDHW tensor with C channels. Gathered together
   because along axes 0 and 1 neighbouring lines are neighbouring floats (one cache line serves the whole tile). */
static void tile_get(const axt_geo *g, const float *t, size_t C, size_t l0, size_t n, float *dst)
{
    size_t base[AXT_TILE], K = (size_t)g->K, CK = C * K;
    for (size_t m = 0; m < n; m++)
        base[m] = line_base(g, l0 + m, C);
    if (g->ps == 1) { /* axis 2: each line is contiguous already */
        for (size_t m = 0; m < n; m++)
            for (size_t c = 0; c < C; c++)
                memcpy(dst + m * CK + c * K, t + base[m] + c * g->sp, K * sizeof *dst);
        return;
    }
    for (size_t c = 0; c < C; c++)
        for (size_t i = 0; i < K; i++) {
            size_t off = c * g->sp + i * g->ps;
            for (size_t m = 0; m < n; m++)
                dst[m * CK + c * K + i] = t[base[m] + off];
        }
}

/* Channels [c0, c1) of src [n][C][K] into lines l0 .. l0 + n - 1 of an NCDHW tensor with C channels. */
static void tile_put(const axt_geo *g, float *t, size_t C, size_t l0, size_t n, const float *src, size_t c0,
                     size_t c1)
{
    size_t base[AXT_TILE], K = (size_t)g->K, CK = C * K;
    for (size_t m = 0; m < n; m++)
        base[m] = line_base(g, l0 + m, C);
    if (g->ps == 1) {
        for (size_t m = 0; m < n; m++)
            for (size_t c = c0; c < c1; c++)
                memcpy(t + base[m] + c * g->sp, src + m * CK + c * K, K * sizeof *src);
        return;
    }
    for (size_t c = c0; c < c1; c++)
        for (size_t i = 0; i < K; i++) {
            size_t off = c * g->sp + i * g->ps;
            for (size_t m = 0; m < n; m++)
                t[base[m] + off] = src[m * CK + c * K + i];
        }
}

/* Sums of each of n rows of len values into acc[n] (double). */
static void rows_sum(const float *x, size_t n, size_t len, double *acc)
{
    for (size_t r = 0; r < n; r++) {
        double s = 0;
        for (size_t e = 0; e < len; e++)
            s += x[r * len + e];
        acc[r] += s;
    }
}

static void rows_sqdev(const float *x, size_t n, size_t len, const double *mean, double *acc)
{
    for (size_t r = 0; r < n; r++) {
        double s = 0;
        for (size_t e = 0; e < len; e++) {
            double d = x[r * len + e] - mean[r];
            s += d * d;
        }
        acc[r] += s;
    }
}

static void rows_normalise(float *x, size_t n, size_t len, const double *mean, const double *inv)
{
    for (size_t r = 0; r < n; r++)
        for (size_t e = 0; e < len; e++)
            x[r * len + e] = (float)((x[r * len + e] - mean[r]) * inv[r]);
}

/* The three raw logits of every group: qk = q^T k, qr[i][j] = sum_c q[c][i] R[c][i-j+K-1],
   kr[i][j] = sum_c k[c][j] R[c2+c][j-i+K-1], into xs [3][G][K][K]. */
static void fwd_logits(const axt_run *r, const float *col, float *xs)
{
    const axt_geo *g = r->g;
    const int K = g->K, G = g->G, c2 = g->c2, L = g->L;
    for (int h = 0; h < G; h++) {
        const float *q = col + (size_t)h * 2 * g->gp * K, *k = q + (size_t)c2 * K;
        float *qk = xs + (size_t)h * g->KK, *qr = qk + (size_t)G * g->KK, *kr = qr + (size_t)G * g->KK;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, c2, 1.0f, q, K, k, K, 0.0f, qk, K);
        memset(qr, 0, g->KK * sizeof *qr);
        memset(kr, 0, g->KK * sizeof *kr);
        for (int c = 0; c < c2; c++) {
            const float *rq = r->a->rel + (size_t)c * L, *rk = r->a->rel + (size_t)(c2 + c) * L;
            const float *qc = q + (size_t)c * K, *kc = k + (size_t)c * K;
            for (int i = 0; i < K; i++) {
                float *qri = qr + (size_t)i * K, *kri = kr + (size_t)i * K;
                const float aq = qc[i], *r1 = rq + i + K - 1, *r2 = rk + K - 1 - i;
                for (int j = 0; j < K; j++) {
                    qri[j] += aq * r1[-j];
                    kri[j] += kc[j] * r2[j];
                }
            }
        }
    }
}

/* sim_bn (x^ in place), sum of the three, softmax -> p; sv = p v and sve = p Ev, raw, into xo [2P][K]. */
static void fwd_softmax(const axt_run *r, const float *col, float *xs, float *p, float *xo)
{
    const axt_geo *g = r->g;
    const int K = g->K, G = g->G, gp = g->gp, L = g->L;
    const double *mean = r->coef, *inv = mean + 3 * G;
    rows_normalise(xs, 3 * (size_t)G, g->KK, mean, inv);
    for (int h = 0; h < G; h++) {
        const float *z0 = xs + (size_t)h * g->KK, *z1 = z0 + (size_t)G * g->KK, *z2 = z1 + (size_t)G * g->KK;
        const float w0 = r->a->sim_w[h], w1 = r->a->sim_w[G + h], w2 = r->a->sim_w[2 * G + h];
        const float b0 = r->a->sim_b[h], b1 = r->a->sim_b[G + h], b2 = r->a->sim_b[2 * G + h];
        float *S = p + (size_t)h * g->KK;
        for (int i = 0; i < K; i++) {
            float *Si = S + (size_t)i * K, mx = -INFINITY, sum = 0;
            for (int j = 0; j < K; j++) {
                size_t e = (size_t)i * K + j;
                Si[j] = (z0[e] * w0 + b0) + (z1[e] * w1 + b1) + (z2[e] * w2 + b2);
                mx = fmaxf(mx, Si[j]);
            }
            for (int j = 0; j < K; j++)
                sum += Si[j] = expf(Si[j] - mx);
            for (int j = 0; j < K; j++)
                Si[j] /= sum;
        }
        const float *v = col + ((size_t)h * 2 * gp + gp) * K;
        float *sv = xo + (size_t)h * gp * 2 * K; /* out_bn channel 2n: row stride 2K */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, gp, K, K, 1.0f, v, K, S, K, 0.0f, sv, 2 * K);
        for (int c = 0; c < gp; c++) {
            const float *rv = r->a->rel + (size_t)(gp + c) * L + K - 1;
            float *sve = sv + (size_t)c * 2 * K + K;
            for (int i = 0; i < K; i++) {
                const float *Si = S + (size_t)i * K, *rr = rv + i;
                float e = 0;
                for (int j = 0; j < K; j++)
                    e += Si[j] * rr[-j];
                sve[i] = e;
            }
        }
    }
}

/* Backward to the summed logits: out_bn, p v and p Ev, softmax. dv into dqkv, ds into r->ds, and the partials
   sum ds [G], sum ds x^ [3G], drel rows gp..2gp [gp][L]. */
static void bwd_softmax(const axt_run *r, size_t l, const float *col, const float *dyl, float *dcol, float *buf,
                        double *part)
{
    const axt_geo *g = r->g;
    const int K = g->K, G = g->G, gp = g->gp, L = g->L;
    const float *sl = r->saved + l * g->line_saved, *xs = sl, *p = xs + 3 * (size_t)G * g->KK,
                *xo = p + (size_t)G * g->KK;
    const double *mdy = r->coef, *mdyx = mdy + g->P, *oc = mdyx + 2 * g->P;
    float *dsv = buf, *dsve = dsv + (size_t)gp * K, *dp = dsve + (size_t)gp * K;
    double *sds = part, *sdsx = sds + G, *drel = sdsx + 3 * G;
    for (int h = 0; h < G; h++) {
        for (int c = 0; c < gp; c++) { /* out_bn backward: both channels of plane n receive dy[n] */
            size_t n = (size_t)h * gp + c;
            const float *dn = dyl + n * K, *x0 = xo + 2 * n * K, *x1 = x0 + K;
            for (int i = 0; i < K; i++) {
                dsv[(size_t)c * K + i] = (float)(oc[2 * n] * (dn[i] - mdy[n] - x0[i] * mdyx[2 * n]));
                dsve[(size_t)c * K + i] = (float)(oc[2 * n + 1] * (dn[i] - mdy[n] - x1[i] * mdyx[2 * n + 1]));
            }
        }
        const float *v = col + ((size_t)h * 2 * gp + gp) * K, *S = p + (size_t)h * g->KK;
        float *dv = dcol + ((size_t)h * 2 * gp + gp) * K;
        /* dp[i][j] = sum_c dsv[c][i] v[c][j] + dsve[c][i] R[gp+c][i-j+K-1];  dv = dsv p */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, gp, 1.0f, dsv, K, v, K, 0.0f, dp, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, gp, K, K, 1.0f, dsv, K, S, K, 0.0f, dv, K);
        for (int c = 0; c < gp; c++) {
            const float *rv = r->a->rel + (size_t)(gp + c) * L + K - 1;
            double *dr = drel + (size_t)c * L;
            for (int i = 0; i < K; i++) { /* separate loops: each vectorises */
                const float a = dsve[(size_t)c * K + i], *rr = rv + i;
                float *dpi = dp + (size_t)i * K;
                for (int j = 0; j < K; j++)
                    dpi[j] += a * rr[-j];
            }
            for (int i = 0; i < K; i++) { /* relative[gp+c][i-j+K-1] for j = K-1-t: ascending stores */
                const double a = dsve[(size_t)c * K + i];
                const float *Si = S + (size_t)i * K + K - 1;
                double *d = dr + i;
                for (int t = 0; t < K; t++)
                    d[t] += a * Si[-t];
            }
        }
        float *ds = r->ds + (l * G + (size_t)h) * g->KK;
        const float *z0 = xs + (size_t)h * g->KK, *z1 = z0 + (size_t)G * g->KK, *z2 = z1 + (size_t)G * g->KK;
        double s = 0, s0 = 0, s1 = 0, s2 = 0;
        for (int i = 0; i < K; i++) { /* softmax backward */
            const float *Si = S + (size_t)i * K, *dpi = dp + (size_t)i * K;
            float dot = 0;
            for (int j = 0; j < K; j++)
                dot += Si[j] * dpi[j];
            for (int j = 0; j < K; j++) {
                size_t e = (size_t)i * K + j;
                float d = ds[e] = Si[j] * (dpi[j] - dot);
                s += d, s0 += (double)d * z0[e], s1 += (double)d * z1[e], s2 += (double)d * z2[e];
            }
        }
        sds[h] += s, sdsx[h] += s0, sdsx[G + h] += s1, sdsx[2 * G + h] += s2;
    }
}

/* Backward through sim_bn to q, k and the q/k rows of relative (partials drel rows 0..gp). */
static void bwd_sim(const axt_run *r, size_t l, const float *col, float *dcol, float *buf, double *drel)
{
    const axt_geo *g = r->g;
    const int K = g->K, G = g->G, gp = g->gp, c2 = g->c2, L = g->L;
    const float *xs = r->saved + l * g->line_saved;
    const double *mds = r->coef, *mdsx = mds + G, *sc = mdsx + 3 * G;
    float *dX = buf; /* [3][K][K]: d qk, d qr, d kr of one group */
    for (int h = 0; h < G; h++) {
        const float *ds = r->ds + (l * G + (size_t)h) * g->KK;
        for (int t = 0; t < 3; t++) {
            const int ch = t * G + h;
            const float *z = xs + (size_t)ch * g->KK;
            float *d = dX + (size_t)t * g->KK;
            for (size_t e = 0; e < g->KK; e++)
                d[e] = (float)(sc[ch] * (ds[e] - mds[h] - z[e] * mdsx[ch]));
        }
        const float *q = col + (size_t)h * 2 * gp * K, *k = q + (size_t)c2 * K;
        float *dq = dcol + (size_t)h * 2 * gp * K, *dk = dq + (size_t)c2 * K;
        const float *dqk = dX, *dqr = dX + g->KK, *dkr = dqr + g->KK;
        /* dq[c][i] = sum_j k[c][j] dqk[i][j];  dk[c][j] = sum_i q[c][i] dqk[i][j] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c2, K, K, 1.0f, k, K, dqk, K, 0.0f, dq, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c2, K, K, 1.0f, q, K, dqk, K, 0.0f, dk, K);
        for (int c = 0; c < c2; c++) {
            const float *rq = r->a->rel + (size_t)c * L, *rk = r->a->rel + (size_t)(c2 + c) * L;
            const float *qc = q + (size_t)c * K, *kc = k + (size_t)c * K;
            float *dqc = dq + (size_t)c * K, *dkc = dk + (size_t)c * K;
            double *drq = drel + (size_t)c * L, *drk = drel + (size_t)(c2 + c) * L;
            for (int i = 0; i < K; i++) { /* dq += dqr . Eq, dk += dkr^T . Ek (separate loops: each vectorises) */
                const float *dqri = dqr + (size_t)i * K, *r1 = rq + i + K - 1;
                float e = 0;
                for (int j = 0; j < K; j++)
                    e += dqri[j] * r1[-j];
                dqc[i] += e;
            }
            for (int i = 0; i < K; i++) {
                const float *dkri = dkr + (size_t)i * K, *r2 = rk + K - 1 - i;
                for (int j = 0; j < K; j++)
                    dkc[j] += dkri[j] * r2[j];
            }
            for (int i = 0; i < K; i++) { /* drel of the q rows, then of the k rows */
                const float *dqri = dqr + (size_t)i * K;
                const double aq = qc[i];
                double *d1 = drq + i; /* [i-j+K-1] for j = K-1-t */
                for (int t = 0; t < K; t++)
                    d1[t] += dqri[K - 1 - t] * aq;
            }
            for (int i = 0; i < K; i++) {
                const float *dkri = dkr + (size_t)i * K;
                double *d2 = drk + K - 1 - i;
                for (int j = 0; j < K; j++)
                    d2[j] += (double)dkri[j] * kc[j];
            }
        }
    }
}

/* One line of the current phase; col [2P][K] (qkv), dyl [P][K] (dy, or y out), dcol [2P][K] (dqkv out). */
static void run_line(const axt_run *r, size_t l, double *part, const float *col, float *dyl, float *dcol, float *buf)
{
    const axt_geo *g = r->g;
    const size_t P = (size_t)g->P, G = (size_t)g->G, K = (size_t)g->K;
    float *sl = r->saved + l * g->line_saved, *xs = sl, *p = xs + 3 * G * g->KK, *xo = p + G * g->KK;
    switch (r->phase) {
    case F_SIM_SUM:
        fwd_logits(r, col, xs);
        rows_sum(xs, 3 * G, g->KK, part);
        break;
    case F_SIM_VAR: rows_sqdev(xs, 3 * G, g->KK, r->coef, part); break;
    case F_SOFTMAX:
        fwd_softmax(r, col, xs, p, xo);
        rows_sum(xo, 2 * P, K, part);
        break;
    case F_OUT_VAR: rows_sqdev(xo, 2 * P, K, r->coef, part); break;
    case F_OUTPUT:
        rows_normalise(xo, 2 * P, K, r->coef, r->coef + 2 * P);
        for (size_t n = 0; n < P; n++)
            for (size_t i = 0; i < K; i++)
                dyl[n * K + i] = (xo[2 * n * K + i] * r->a->out_w[2 * n] + r->a->out_b[2 * n]) +
                                 (xo[(2 * n + 1) * K + i] * r->a->out_w[2 * n + 1] + r->a->out_b[2 * n + 1]);
        break;
    case B_OUT_SUM:
        for (size_t n = 0; n < P; n++) {
            double s = 0, s0 = 0, s1 = 0;
            for (size_t i = 0; i < K; i++) {
                float d = dyl[n * K + i];
                s += d, s0 += (double)d * xo[2 * n * K + i], s1 += (double)d * xo[(2 * n + 1) * K + i];
            }
            part[n] += s, part[P + 2 * n] += s0, part[P + 2 * n + 1] += s1;
        }
        break;
    case B_SOFTMAX: bwd_softmax(r, l, col, dyl, dcol, buf, part); break;
    case B_SIM: bwd_sim(r, l, col, dcol, buf, part); break;
    }
}

/* Lines [l0, l0 + n) of the current phase: gather what it reads, run each line in order, scatter what it writes. */
static void run_tile(const axt_run *r, size_t l0, size_t n, double *part, float *ws)
{
    const axt_geo *g = r->g;
    const size_t P = (size_t)g->P, K = (size_t)g->K, gp = (size_t)g->gp, T = AXT_TILE;
    float *col = ws, *dyl = col + T * 2 * P * K, *dcol = dyl + T * P * K, *buf = dcol + T * 2 * P * K;
    const int ph = r->phase;
    if (ph == F_SIM_SUM || ph == F_SOFTMAX || ph == B_SOFTMAX || ph == B_SIM)
        tile_get(g, r->qkv, 2 * P, l0, n, col);
    if (ph == B_OUT_SUM || ph == B_SOFTMAX)
        tile_get(g, r->dy, P, l0, n, dyl);
    for (size_t m = 0; m < n; m++)
        run_line(r, l0 + m, part, col + m * 2 * P * K, dyl + m * P * K, dcol + m * 2 * P * K, buf);
    if (ph == F_OUTPUT)
        tile_put(g, r->y, P, l0, n, dyl, 0, P);
    const size_t v = ph == B_SOFTMAX; /* B_SOFTMAX wrote each group's v rows, B_SIM its q and k rows */
    for (size_t h = 0; (ph == B_SOFTMAX || ph == B_SIM) && h < (size_t)g->G; h++)
        tile_put(g, r->dqkv, 2 * P, l0, n, dcol, (2 * h + v) * gp, (2 * h + 1 + v) * gp);
}

/* Worker w of nt takes blocks [nb*w/nt, nb*(w+1)/nt) with its own buffers. */
static void run_worker(void *ctx, long lo, long hi)
{
    const axt_run *r = ctx;
    const axt_geo *g = r->g;
    for (long w = lo; w < hi; w++) {
        size_t b0 = g->nblocks * (size_t)w / (size_t)r->nt, b1 = g->nblocks * ((size_t)w + 1) / (size_t)r->nt;
        float *ws = r->wscr + (size_t)w * g->worker;
        for (size_t b = b0; b < b1; b++) {
            double *part = r->part + b * g->part;
            memset(part, 0, g->part * sizeof *part);
            size_t l1 = (b + 1) * AXT_BLOCK < g->lines ? (b + 1) * AXT_BLOCK : g->lines;
            for (size_t l = b * AXT_BLOCK; l < l1; l += AXT_TILE)
                run_tile(r, l, l1 - l < AXT_TILE ? l1 - l : AXT_TILE, part, ws);
        }
    }
}

static void run_phase(axt_run *r, int phase)
{
    r->phase = phase;
    apt_par_for(run_worker, r, r->nt, r->nt);
}

/* Partial i of every block, added in block order. */
static double block_sum(const axt_run *r, size_t i)
{
    double s = 0;
    for (size_t b = 0; b < r->g->nblocks; b++)
        s += r->part[b * r->g->part + i];
    return s;
}

/* out[i] = the block sum of partial i0 + i. */
static void reduce(const axt_run *r, size_t i0, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = block_sum(r, i0 + i);
}

/* acc[i] += the block sum of partial i0 + i (a parameter gradient, float). */
static void reduce_add(const axt_run *r, size_t i0, size_t n, float *acc)
{
    for (size_t i = 0; i < n; i++)
        acc[i] = (float)(acc[i] + block_sum(r, i0 + i));
}

/* Scratch regions; the double region is aligned inside the 2 spare floats. */
static void run_init(axt_run *r, const apt_nn_axial_train *a, const axt_geo *g, float *saved, float *scratch,
                     int threads)
{
    uintptr_t s = (uintptr_t)scratch;
    double *d = (double *)((s + sizeof(double) - 1) & ~(uintptr_t)(sizeof(double) - 1));
    int nt = threads < 1 ? 1 : threads > APT_PAR_MAX_THREADS ? APT_PAR_MAX_THREADS : threads;
    *r = (axt_run){.a = a, .g = g, .saved = saved, .part = d, .coef = d + g->nblocks * g->part};
    r->nt = (size_t)nt > g->nblocks ? (int)g->nblocks : nt;
    r->ds = (float *)(r->coef + g->coef);
    r->wscr = r->ds + g->ds;
}

static int check_args(const apt_nn_axial_train *a, int B, int D, int H, int W, axt_geo *g, apt_error *err)
{
    if (geo_init(a, B, D, H, W, g))
        return apt_err(err, APT_EINVAL,
                       "axial attention (training): bad shape: planes %d, heads %d, K %d, axis %d for input [%d, %d, "
                       "%d, %d, %d] (planes / heads must be even and the extent along the axis K)",
                       a ? a->planes : 0, a ? a->heads : 0, a ? a->K : 0, a ? a->axis : 0, B, a ? 2 * a->planes : 0,
                       D, H, W);
    if (g->lines * (size_t)g->K < 2)
        return apt_err(err, APT_EINVAL,
                       "axial attention (training): BatchNorm needs more than one value per channel (%zu line(s) "
                       "of length %d)",
                       g->lines, g->K);
    return APT_OK;
}

/* x[i] *= f (sums to means) */
static void scale(double *x, size_t n, double f)
{
    for (size_t i = 0; i < n; i++)
        x[i] *= f;
}

/* var (biased, in place) -> inverse std; running stats updated with the unbiased variance. */
static void bn_finish(double *var_inv, const double *mean, size_t n, double count, float *rm, float *rv)
{
    for (size_t i = 0; i < n; i++) {
        double var = var_inv[i] / count;
        rm[i] = (float)((1 - AXT_MOMENTUM) * rm[i] + AXT_MOMENTUM * mean[i]);
        rv[i] = (float)((1 - AXT_MOMENTUM) * rv[i] + AXT_MOMENTUM * var * count / (count - 1));
        var_inv[i] = 1 / sqrt(var + AXT_EPS);
    }
}

int apt_nn_axial_train_fwd(const apt_nn_axial_train *a, const float *qkv, int B, int D, int H, int W, float *y,
                           float *saved, float *scratch, int threads, apt_error *err)
{
    axt_geo g;
    int rc = check_args(a, B, D, H, W, &g, err);
    if (rc)
        return rc;
    axt_run r;
    run_init(&r, a, &g, saved, scratch, threads);
    r.qkv = qkv, r.y = y;
    const size_t G3 = 3 * (size_t)g.G, P2 = 2 * (size_t)g.P;
    const double n_sim = (double)g.lines * (double)g.KK, n_out = (double)g.lines * g.K;
    float *tail = saved + g.lines * g.line_saved; /* inverse stds as doubles: sim [3G], out [2P] */
    double *mean = r.coef, *inv = mean + G3;      /* coef during sim_bn: mean [3G], inv [3G] */

    run_phase(&r, F_SIM_SUM);
    reduce(&r, 0, G3, mean);
    scale(mean, G3, 1 / n_sim);
    run_phase(&r, F_SIM_VAR);
    reduce(&r, 0, G3, inv);
    bn_finish(inv, mean, G3, n_sim, a->sim_rm, a->sim_rv);
    memcpy(tail, inv, G3 * sizeof(double));
    run_phase(&r, F_SOFTMAX);
    reduce(&r, 0, P2, mean); /* coef during out_bn: mean [2P], inv [2P] */
    scale(mean, P2, 1 / n_out);
    inv = mean + P2;
    run_phase(&r, F_OUT_VAR);
    reduce(&r, 0, P2, inv);
    bn_finish(inv, mean, P2, n_out, a->out_rm, a->out_rv);
    memcpy(tail + 2 * G3, inv, P2 * sizeof(double));
    run_phase(&r, F_OUTPUT);
    return APT_OK;
}

int apt_nn_axial_train_bwd(const apt_nn_axial_train *a, const float *qkv, int B, int D, int H, int W,
                           const float *saved, const float *dy, float *dqkv, float *drel, float *dsim_w, float *dsim_b,
                           float *dout_w, float *dout_b, float *scratch, int threads, apt_error *err)
{
    axt_geo g;
    int rc = check_args(a, B, D, H, W, &g, err);
    if (rc)
        return rc;
    axt_run r;
    run_init(&r, a, &g, (float *)saved, scratch, threads); /* the backward phases only read saved */
    r.qkv = qkv, r.dy = dy, r.dqkv = dqkv;
    const size_t G = (size_t)g.G, P = (size_t)g.P, vrows = (size_t)g.gp * (size_t)g.L;
    const double n_sim = (double)g.lines * (double)g.KK, n_out = (double)g.lines * g.K;
    double inv; /* one inverse std, copied out of saved's tail (doubles, maybe unaligned) */
    const float *tail = saved + g.lines * g.line_saved;

    /* out_bn: coef = mean dy [P], mean dy x^ [2P], weight * inv std [2P] */
    run_phase(&r, B_OUT_SUM);
    reduce(&r, 0, 3 * P, r.coef);
    for (size_t n = 0; n < P; n++) {
        dout_b[2 * n] = (float)(dout_b[2 * n] + r.coef[n]);
        dout_b[2 * n + 1] = (float)(dout_b[2 * n + 1] + r.coef[n]);
    }
    for (size_t ch = 0; ch < 2 * P; ch++) {
        dout_w[ch] = (float)(dout_w[ch] + r.coef[P + ch]);
        memcpy(&inv, tail + 2 * (3 * G + ch), sizeof inv);
        r.coef[3 * P + ch] = a->out_w[ch] * inv;
    }
    scale(r.coef, 3 * P, 1 / n_out);
    run_phase(&r, B_SOFTMAX);
    reduce_add(&r, 4 * G, vrows, drel + vrows); /* relative rows gp..2gp (v) */

    /* sim_bn: coef = mean ds [G], mean ds x^ [3G], weight * inv std [3G] */
    reduce(&r, 0, 4 * G, r.coef);
    for (size_t ch = 0; ch < 3 * G; ch++) {
        dsim_b[ch] = (float)(dsim_b[ch] + r.coef[ch % G]);
        dsim_w[ch] = (float)(dsim_w[ch] + r.coef[G + ch]);
        memcpy(&inv, tail + 2 * ch, sizeof inv);
        r.coef[4 * G + ch] = a->sim_w[ch] * inv;
    }
    scale(r.coef, 4 * G, 1 / n_sim);
    run_phase(&r, B_SIM);
    reduce_add(&r, 0, vrows, drel); /* relative rows 0..gp (q, k) */
    return APT_OK;
}

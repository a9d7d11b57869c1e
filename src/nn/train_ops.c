/* train_ops.c - the host-side pieces of a training step: BatchNorm in training mode (forward with batch statistics
 * and the running-statistics update, exact backward), the ReLU mask, the NPCC loss and its gradient, and Adam as
 * PyTorch writes it. Every reduction is per channel (or per sample) in a fixed order in double, and channels are
 * what the threads split, so the bytes do not depend on the thread count. oneDNN's batch-norm would split the same
 * reductions by thread count, which DESIGN's determinism rules out for training. */
#include "nn/train_int.h"

#include <math.h>
#include <string.h>

#include "aptomo/parallel.h"

typedef struct bn_job {
    const apt_nn_tensor *x;
    apt_nn_tensor *y, *dx;
    const float *gamma, *beta, *res, *dy;
    const float *cmean, *cinvstd;
    float *mean, *invstd, *rm, *rv, *dgamma, *dbeta;
    int relu;
} bn_job;

static void bn_fwd_ch(void *ctx, long c0, long c1)
{
    bn_job *j = ctx;
    const apt_nn_tensor *x = j->x;
    size_t sp = (size_t)x->d * x->h * x->w, cs = sp * x->c;
    double n = (double)sp * x->n;
    for (long c = c0; c < c1; c++) {
        double s = 0, s2 = 0;
        for (int b = 0; b < x->n; b++) {
            const float *p = x->data + b * cs + c * sp;
            for (size_t i = 0; i < sp; i++)
                s += p[i];
        }
        double mu = s / n;
        for (int b = 0; b < x->n; b++) {
            const float *p = x->data + b * cs + c * sp;
            for (size_t i = 0; i < sp; i++)
                s2 += (p[i] - mu) * (p[i] - mu);
        }
        double var = s2 / n, is = 1.0 / sqrt(var + APT_NN_BN_EPS);
        j->mean[c] = (float)mu, j->invstd[c] = (float)is;
        j->rm[c] = (float)(0.9 * j->rm[c] + 0.1 * mu);
        j->rv[c] = (float)(0.9 * j->rv[c] + 0.1 * (n > 1 ? s2 / (n - 1) : var));
        float a = (float)(j->gamma[c] * is), bb = (float)(j->beta[c] - j->gamma[c] * is * mu);
        for (int b = 0; b < x->n; b++) {
            const float *p = x->data + b * cs + c * sp, *r = j->res ? j->res + b * cs + c * sp : NULL;
            float *q = j->y->data + b * cs + c * sp;
            for (size_t i = 0; i < sp; i++) {
                float v = a * p[i] + bb + (r ? r[i] : 0.0f);
                q[i] = j->relu && v < 0 ? 0.0f : v;
            }
        }
    }
}

void nn_bn_train_fwd(const apt_nn_tensor *x, const float *gamma, const float *beta, float *rm, float *rv,
                     const float *res, int relu, apt_nn_tensor *y, float *mean, float *invstd, int threads)
{
    bn_job j = {.x = x, .y = y, .gamma = gamma, .beta = beta, .res = res, .mean = mean, .invstd = invstd, .rm = rm,
                .rv = rv, .relu = relu};
    apt_par_for(bn_fwd_ch, &j, x->c, threads);
}

/* dy is dL/d(BN output) with the ReLU mask already applied; dx += dL/dx; dgamma, dbeta += their gradients. */
static void bn_bwd_ch(void *ctx, long c0, long c1)
{
    bn_job *j = ctx;
    const apt_nn_tensor *x = j->x;
    size_t sp = (size_t)x->d * x->h * x->w, cs = sp * x->c;
    double n = (double)sp * x->n;
    for (long c = c0; c < c1; c++) {
        double sdy = 0, sdyx = 0, mu = j->cmean[c], is = j->cinvstd[c];
        for (int b = 0; b < x->n; b++) {
            const float *p = x->data + b * cs + c * sp, *g = j->dy + b * cs + c * sp;
            for (size_t i = 0; i < sp; i++)
                sdy += g[i], sdyx += g[i] * ((p[i] - mu) * is);
        }
        j->dbeta[c] += (float)sdy, j->dgamma[c] += (float)sdyx;
        double k = j->gamma[c] * is;
        for (int b = 0; b < x->n; b++) {
            const float *p = x->data + b * cs + c * sp, *g = j->dy + b * cs + c * sp;
            float *q = j->dx->data + b * cs + c * sp;
            for (size_t i = 0; i < sp; i++)
                q[i] += (float)(k * (g[i] - sdy / n - (p[i] - mu) * is * sdyx / n));
        }
    }
}

void nn_bn_train_bwd(const apt_nn_tensor *x, const float *gamma, const float *mean, const float *invstd,
                     const float *dy, apt_nn_tensor *dx, float *dgamma, float *dbeta, int threads)
{
    bn_job j = {.x = x, .dx = dx, .gamma = gamma, .dy = dy, .cmean = mean, .cinvstd = invstd, .dgamma = dgamma,
                .dbeta = dbeta};
    apt_par_for(bn_bwd_ch, &j, x->c, threads);
}

void nn_relu_mask(const float *y, float *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(y[i] > 0))
            g[i] = 0;
}

void nn_add(float *dst, const float *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] += src[i];
}

double nn_npcc(const float *x, const float *y, int B, size_t per, float *dx)
{
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const float *p = x + (size_t)b * per, *t = y + (size_t)b * per;
        double sx = 0, sy = 0;
        for (size_t i = 0; i < per; i++)
            sx += p[i], sy += t[i];
        double mx = sx / (double)per, my = sy / (double)per, sxy = 0, sxx = 0, syy = 0;
        for (size_t i = 0; i < per; i++) {
            double a = p[i] - mx, c = t[i] - my;
            sxy += a * c, sxx += a * a, syy += c * c;
        }
        double den = sqrt(sxx * syy), r = den > 0 ? sxy / den : 0;
        loss += -r / B;
        /* d(-r)/dx_i = -(yc_i / den - r xc_i / sxx) / B; a constant prediction has no defined gradient: 0 */
        float *g = dx + (size_t)b * per;
        for (size_t i = 0; i < per; i++)
            g[i] = den > 0 && sxx > 0 ? (float)(-((t[i] - my) / den - r * (p[i] - mx) / sxx) / B) : 0.0f;
    }
    return loss;
}

void nn_adam(float *p, const float *g, float *m, float *v, size_t n, long long step, double lr,
             const apt_nn_adam *a)
{
    /* torch.optim.Adam (single-tensor path): m, v in float32; step size and bias corrections as Python floats */
    double bc1 = 1 - pow(a->beta1, (double)step), bc2s = sqrt(1 - pow(a->beta2, (double)step));
    float b1 = (float)a->beta1, b2 = (float)a->beta2, ss = (float)(lr / bc1), eps = (float)a->eps;
    float wd = (float)a->weight_decay, c2 = (float)bc2s;
    for (size_t i = 0; i < n; i++) {
        float gi = wd != 0 ? g[i] + wd * p[i] : g[i];
        m[i] = m[i] * b1 + gi * (1 - b1);
        v[i] = v[i] * b2 + gi * gi * (1 - b2);
        float den = sqrtf(v[i]) / c2 + eps;
        p[i] -= ss * (m[i] / den);
    }
}

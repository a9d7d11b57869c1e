/* axial.c - the axial self-attention core of docs/NETWORK.md (Axial-DeepLab form) on the CPU: for every line along the
 * attention axis, similarity = sim_bn(qk, q·Eq, k·Ek) summed over the three terms, softmax, then out_bn(s·v, s·Ev)
 * with the row-major [G, gp, 2K] -> [2P, K] view folded into "channel n gets out_bn[2n](sv) + out_bn[2n+1](sve)".
 * The two content products are GEMMs (OpenBLAS); the position-dependent relative terms are short loops. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn/nn_backend.h"

size_t apt_nn_axial_scratch(const apt_nn_axial_params *p)
{
    size_t K = (size_t)p->K, P = (size_t)p->planes, gp = P / (size_t)p->heads;
    return 2 * P * K + P * K + K * K + gp * K;
}

/* col [2P][K] (qkv of one line, qkv_bn applied) -> out [P][K]. scratch: K*K + gp*K floats. */
static void line(const apt_nn_axial_params *p, const float *col, float *out, int relu, float *S, float *sv)
{
    const int K = p->K, G = p->heads, P = p->planes, gp = P / G, c2 = gp / 2, L = 2 * K - 1;
    for (int g = 0; g < G; g++) {
        const float *q = col + (size_t)g * 2 * gp * K, *k = q + (size_t)c2 * K, *v = k + (size_t)c2 * K;
        const float a0 = p->sim_a[g], a1 = p->sim_a[G + g], a2 = p->sim_a[2 * G + g];
        const float b = p->sim_b[g] + p->sim_b[G + g] + p->sim_b[2 * G + g];
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, K, c2, a0, q, K, k, K, 0.0f, S, K);
        for (int c = 0; c < c2; c++) {
            const float *rq = p->rel + (size_t)c * L, *rk = p->rel + (size_t)(c2 + c) * L;
            const float *qc = q + (size_t)c * K, *kc = k + (size_t)c * K;
            for (int i = 0; i < K; i++) {
                float *Si = S + (size_t)i * K;
                const float aq = a1 * qc[i], *r1 = rq + i + K - 1, *r2 = rk + K - 1 - i;
                for (int j = 0; j < K; j++)
                    Si[j] += aq * r1[-j] + a2 * kc[j] * r2[j];
            }
        }
        for (int i = 0; i < K; i++) { /* softmax over j */
            float *Si = S + (size_t)i * K, mx = -INFINITY, sum = 0;
            for (int j = 0; j < K; j++)
                mx = fmaxf(mx, Si[j] += b);
            for (int j = 0; j < K; j++)
                sum += Si[j] = expf(Si[j] - mx);
            for (int j = 0; j < K; j++)
                Si[j] /= sum;
        }
        /* sv[c][i] = sum_j v[c][j] S[i][j] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, gp, K, K, 1.0f, v, K, S, K, 0.0f, sv, K);
        for (int c = 0; c < gp; c++) {
            const float *rv = p->rel + (size_t)(gp + c) * L + K - 1;
            int n = g * gp + c;
            float oa0 = p->out_a[2 * n], oa1 = p->out_a[2 * n + 1], ob = p->out_b[2 * n] + p->out_b[2 * n + 1];
            float *o = out + (size_t)n * K;
            for (int i = 0; i < K; i++) {
                const float *Si = S + (size_t)i * K, *r = rv + i;
                float e = 0;
                for (int j = 0; j < K; j++)
                    e += Si[j] * r[-j];
                float val = oa0 * sv[(size_t)c * K + i] + oa1 * e + ob;
                o[i] = relu && val < 0 ? 0 : val;
            }
        }
    }
}

void apt_nn_axial_line(const apt_nn_axial_params *p, const float *col, float *out, int relu, float *scratch)
{
    size_t K = (size_t)p->K;
    line(p, col, out, relu, scratch, scratch + K * K);
}

/* Lines [l0, l1) of the whole tensor; scratch holds apt_nn_axial_scratch(p) floats. channels_last: memory is
 * [N, D, H, W, C] (the CPU backend's layout) instead of [N, C, D, H, W]. */
int apt_nn_axial_cpu_range(const apt_nn_axial_params *p, const apt_nn_tensor *qkv, int relu, apt_nn_tensor *y,
                           float *scratch, size_t l0, size_t l1, int channels_last)
{
    const size_t K = (size_t)p->K, P = (size_t)p->planes, D = (size_t)qkv->d, H = (size_t)qkv->h,
                 W = (size_t)qkv->w, sp = D * H * W;
    size_t ps = p->axis == 0 ? H * W : p->axis == 1 ? W : 1;
    size_t n1 = p->axis == 0 ? H : D, n2 = p->axis == 2 ? H : W; /* the two folded axes, outer and inner */
    size_t s1 = p->axis == 0 ? W : H * W, s2 = p->axis == 2 ? W : 1;
    float *col = scratch, *out = col + 2 * P * K, *rest = out + P * K;
    for (size_t l = l0; l < l1; l++) {
        size_t b = l / (n1 * n2), r = l % (n1 * n2), off = (r / n2) * s1 + (r % n2) * s2;
        if (channels_last) {
            const float *src = qkv->data + (b * sp + off) * 2 * P;
            for (size_t i = 0; i < K; i++)
                for (size_t c = 0; c < 2 * P; c++)
                    col[c * K + i] = src[i * ps * 2 * P + c];
        } else {
            const float *src = qkv->data + b * 2 * P * sp + off;
            for (size_t c = 0; c < 2 * P; c++)
                for (size_t i = 0; i < K; i++)
                    col[c * K + i] = src[c * sp + i * ps];
        }
        line(p, col, out, relu, rest, rest + K * K);
        if (channels_last) {
            float *dst = y->data + (b * sp + off) * P;
            for (size_t i = 0; i < K; i++)
                for (size_t c = 0; c < P; c++)
                    dst[i * ps * P + c] = out[c * K + i];
        } else {
            float *dst = y->data + b * P * sp + off;
            for (size_t c = 0; c < P; c++)
                for (size_t i = 0; i < K; i++)
                    dst[c * sp + i * ps] = out[c * K + i];
        }
    }
    return APT_OK;
}

int apt_nn_axial_cpu(const apt_nn_axial_params *p, const apt_nn_tensor *qkv, int relu, apt_nn_tensor *y,
                     float *scratch, int channels_last)
{
    int K = p->axis == 0 ? qkv->d : p->axis == 1 ? qkv->h : qkv->w;
    if (K != p->K || qkv->c != 2 * p->planes || y->c != p->planes || y->n != qkv->n || y->d != qkv->d ||
        y->h != qkv->h || y->w != qkv->w)
        return APT_EINVAL;
    size_t lines = (size_t)qkv->n * qkv->d * qkv->h * qkv->w / (size_t)K;
    return apt_nn_axial_cpu_range(p, qkv, relu, y, scratch, 0, lines, channels_last);
}

/* ---- loading one layer: names and shapes exactly as docs/NETWORK.md ---- */
#include <stdio.h>
#include <stdlib.h>

#include "nn/arch.h"
#include "nn/nn_int.h"

int nn_attn_load(nn_loader *L, const char *prefix, int planes, int heads, int K, int axis, nn_attn *a, apt_error *err)
{
    char n1[256], n2[256];
    int gp = planes / heads, G = heads, rc = APT_OK;
    const float *rel = NULL;
    snprintf(n1, sizeof n1, "%s.%s", prefix, nn_attn_part[0]);
    int64_t rs[2] = {2 * gp, 2 * K - 1};
    if (!rc)
        rc = nn_need(L, n1, 2, rs, &rel, err);
    float *h = rc ? NULL : malloc(sizeof(float) * (6 * (size_t)G + 4 * (size_t)planes));
    if (!rc && !h)
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    snprintf(n1, sizeof n1, "%s.%s", prefix, nn_attn_part[1]);
    snprintf(n2, sizeof n2, "%s.%s", prefix, nn_attn_part[2]);
    if (!rc)
        rc = nn_bn_fold(L, n1, 3 * G, h, h + 3 * G, err);
    if (!rc)
        rc = nn_bn_fold(L, n2, 2 * planes, h + 6 * G, h + 6 * G + 2 * planes, err);
    float *dev_rel = NULL, *dev_bn = NULL;
    if (!rc)
        rc = nn_upload(L, rel, (size_t)rs[0] * (size_t)rs[1], &dev_rel, err);
    if (!rc)
        rc = nn_upload(L, h, 6 * (size_t)G + 4 * (size_t)planes, &dev_bn, err);
    free(h);
    if (rc)
        return rc;
    a->p = (apt_nn_axial_params){.planes = planes, .heads = heads, .K = K, .axis = axis, .rel = dev_rel,
                                 .sim_a = dev_bn, .sim_b = dev_bn + 3 * G, .out_a = dev_bn + 6 * G,
                                 .out_b = dev_bn + 6 * G + 2 * planes};
    return APT_OK;
}

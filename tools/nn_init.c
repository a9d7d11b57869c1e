/* nn_init.c - random initial weights for an arch, written by aptomo's safetensors writer (the PyTorch reference in
 * tests/ loads them with strict=True). One PRNG stream walks the tensors in PyTorch's order, so a seed fixes the
 * file for `aptomo kernel nn-init` and `aptomo train --arch` alike. */
#include "nn_init.h"

#include <math.h>
#include <stdlib.h>

#include "aptomo/nn.h"
#include "aptomo/safetensors.h"
#include "aptomo/sim.h"

typedef struct init_ctx {
    apt_st_writer *w;
    apt_sim_rng rng;
    void **bufs;
    size_t n, cap;
    apt_error *err;
} init_ctx;

static int init_tensor(const char *name, apt_nn_kind kind, int rank, const long long *shape, void *user)
{
    init_ctx *c = user;
    size_t count = 1;
    int64_t sh[8];
    for (int i = 0; i < rank; i++)
        count *= (size_t)shape[i], sh[i] = shape[i];
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 128;
        void **nb = realloc(c->bufs, nc * sizeof(*nb));
        if (!nb)
            return apt_err(c->err, APT_ENOMEM, "out of memory");
        c->bufs = nb, c->cap = nc;
    }
    void *buf = calloc(count ? count : 1, 8);
    if (!buf)
        return apt_err(c->err, APT_ENOMEM, "out of memory for %s", name);
    c->bufs[c->n++] = buf;
    float *f = buf;
    double fan_in = rank >= 2 ? (double)count / (double)shape[0] : 1;
    for (size_t i = 0; i < count && kind != APT_NN_BN_COUNT; i++) {
        switch (kind) {
        case APT_NN_CONV: /* kaiming_normal_(mode=fan_in, nonlinearity=relu) */
            f[i] = (float)(apt_sim_rng_normal(&c->rng) * sqrt(2.0 / fan_in));
            break;
        case APT_NN_BN_WEIGHT: f[i] = 1.0f; break;
        case APT_NN_BN_BIAS: f[i] = 0.0f; break;
        case APT_NN_BN_MEAN: f[i] = (float)(0.1 * apt_sim_rng_normal(&c->rng)); break;
        case APT_NN_BN_VAR: f[i] = (float)(0.75 + 0.5 * apt_sim_rng_uniform(&c->rng)); break;
        case APT_NN_RELATIVE: /* Axial-DeepLab: normal, std sqrt(1 / group planes) */
            f[i] = (float)(apt_sim_rng_normal(&c->rng) * sqrt(2.0 / (double)shape[0]));
            break;
        default: break;
        }
    }
    return apt_st_writer_add(c->w, name, kind == APT_NN_BN_COUNT ? APT_ST_I64 : APT_ST_F32, rank, sh, buf, c->err);
}

int nn_init_write(const char *arch_json, uint64_t seed, const char *input_json, const char *out, int *arch_fault,
                  apt_error *err)
{
    init_ctx c = {.err = err};
    apt_sim_rng_seed(&c.rng, seed, 6);
    int rc = apt_st_writer_new(&c.w, err);
    if (!rc)
        rc = apt_nn_arch_tensors(arch_json, init_tensor, &c, err);
    if (arch_fault)
        *arch_fault = rc == APT_EINVAL;
    if (!rc)
        rc = apt_st_writer_meta(c.w, "aptomo.arch", arch_json, err);
    if (!rc && input_json)
        rc = apt_st_writer_meta(c.w, "aptomo.input", input_json, err);
    if (!rc)
        rc = apt_st_writer_save(c.w, out, err);
    apt_st_writer_destroy(&c.w);
    for (size_t i = 0; i < c.n; i++)
        free(c.bufs[i]);
    free(c.bufs);
    return rc;
}

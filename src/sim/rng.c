/* rng.c - the simulator's seeded randomness: xoshiro256** seeded through splitmix64 from (seed, stream), so each
 * angle and frame draws from its own reproducible stream, and an exact Poisson sampler for photon counts
 * (inversion for small means, Hoermann's PTRS transformed rejection above: exact, O(1) for any mean). */
#include <math.h>

#include "aptomo/sim.h"

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void apt_sim_rng_seed(apt_sim_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    x = splitmix(&x) ^ stream;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t apt_sim_rng_next(apt_sim_rng *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double apt_sim_rng_uniform(apt_sim_rng *r)
{
    return (double)(apt_sim_rng_next(r) >> 11) * 0x1.0p-53;
}

double apt_sim_rng_normal(apt_sim_rng *r)
{
    double u = apt_sim_rng_uniform(r), v = apt_sim_rng_uniform(r);
    return sqrt(-2.0 * log(1.0 - u)) * cos(2.0 * M_PI * v);
}

uint64_t apt_sim_rng_poisson(apt_sim_rng *r, double mean)
{
    if (!(mean > 0))
        return 0;
    if (mean < 10) { /* inversion by sequential search */
        double p = exp(-mean), c = p, u = apt_sim_rng_uniform(r);
        uint64_t k = 0;
        while (u > c && k < 1000) {
            k++;
            p *= mean / (double)k;
            c += p;
        }
        return k;
    }
    /* PTRS (W. Hoermann, "The transformed rejection method for generating Poisson random variables", 1993). */
    double slam = sqrt(mean), loglam = log(mean);
    double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b, inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    double vr = 0.9277 - 3.6224 / (b - 2);
    int sign; /* lgamma_r: lgamma's global signgam is not thread-safe */
    for (;;) {
        double u = apt_sim_rng_uniform(r) - 0.5, v = apt_sim_rng_uniform(r);
        double us = 0.5 - fabs(u);
        double k = floor((2 * a / us + b) * u + mean + 0.43);
        if (us >= 0.07 && v <= vr)
            return (uint64_t)k;
        if (k < 0 || (us < 0.013 && v > us))
            continue;
        if (log(v) + log(inv_alpha) - log(a / (us * us) + b) <= -mean + k * loglam - lgamma_r(k + 1, &sign))
            return (uint64_t)k;
    }
}

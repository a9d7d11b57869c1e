/* backend_cmp.h - how the backend comparison tests measure a device result against the CPU's: relative L2 error and
 * the largest absolute error, also relative to the reference's largest magnitude (a NaN counts as the largest). */
#ifndef APT_BACKEND_CMP_H
#define APT_BACKEND_CMP_H

#include <math.h>
#include <stddef.h>

/* Returns the relative L2 error of got against ref; *mx the max abs error, *mrel that over max |ref|. */
static double cmp_errors(const float *got, const float *ref, size_t n, double *mx, double *mrel)
{
    double num = 0, den = 0, big = 0;
    *mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d, den += (double)ref[i] * ref[i];
        *mx = fabs(d) > *mx || isnan(d) ? fabs(d) : *mx;
        big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
    }
    *mrel = *mx / (big > 0 ? big : 1);
    return sqrt(num / (den > 0 ? den : 1));
}

#endif

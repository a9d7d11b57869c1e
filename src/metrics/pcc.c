/* pcc.c - Pearson correlation, two-pass in double so large volumes of small deltas (1e-6) keep their precision. */
#include <math.h>

#include "aptomo/metrics.h"

double apt_metric_pcc(const float *a, const float *b, size_t n, const unsigned char *mask)
{
    double sa = 0, sb = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            sa += a[i];
            sb += b[i];
            m++;
        }
    if (m < 2)
        return NAN;
    double ma = sa / (double)m, mb = sb / (double)m, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i]) {
            double x = a[i] - ma, y = b[i] - mb;
            sab += x * y;
            saa += x * x;
            sbb += y * y;
        }
    return saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
}

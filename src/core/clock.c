/* clock.c - CLOCK_MONOTONIC in seconds: immune to NTP steps, so timeouts and throughput figures stay right. */
#include "aptomo/clock.h"

#include <time.h>

double apt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* clock.h - monotonic seconds for durations, timeouts and rates (never wall-clock time). */
#ifndef APTOMO_CLOCK_H
#define APTOMO_CLOCK_H

#include "aptomo/export.h"

APT_API_BEGIN

double apt_now(void);

APT_API_END

#endif

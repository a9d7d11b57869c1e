/* clock.h - monotonic seconds for durations, timeouts and rates (never wall-clock time). */
#ifndef APTOMO_CLOCK_H
#define APTOMO_CLOCK_H

double apt_now(void);

#endif

/* fftw_lock.h - the one process-wide lock around FFTW's planner, plan destruction and wisdom (none of which is
 * thread-safe). Every module that plans with FFTW directly (FBP's row filter, the FSC metric) takes this lock, not
 * one of its own: two private locks would still let two planners run at once. */
#ifndef APTOMO_FFT_FFTW_LOCK_H
#define APTOMO_FFT_FFTW_LOCK_H

void apt_fftw_lock(void);
void apt_fftw_unlock(void);

#endif

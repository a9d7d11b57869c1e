/* parallel.c - apt_par_for: split [0, n) into one contiguous chunk per thread (the calling thread takes the first)
 * so neighbouring iterations stay on one core's cache. */
#include "aptomo/parallel.h"

#include <pthread.h>
#include <unistd.h>

typedef struct par_job {
    apt_par_fn fn;
    void *ctx;
    long lo, hi;
} par_job;

static void *par_run(void *p)
{
    par_job *j = p;
    j->fn(j->ctx, j->lo, j->hi);
    return NULL;
}

void apt_par_for(apt_par_fn fn, void *ctx, long n, int threads)
{
    long nt = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nt < 1)
        nt = 1;
    if (nt > APT_PAR_MAX_THREADS)
        nt = APT_PAR_MAX_THREADS;
    if (nt > n)
        nt = n;
    if (nt <= 1) {
        if (n > 0)
            fn(ctx, 0, n);
        return;
    }
    pthread_t th[APT_PAR_MAX_THREADS];
    par_job jobs[APT_PAR_MAX_THREADS];
    int started[APT_PAR_MAX_THREADS];
    for (long t = 0; t < nt; t++) {
        jobs[t] = (par_job){fn, ctx, n * t / nt, n * (t + 1) / nt};
        started[t] = t > 0 && pthread_create(&th[t], NULL, par_run, &jobs[t]) == 0;
    }
    for (long t = 0; t < nt; t++)
        if (!started[t])
            par_run(&jobs[t]);
    for (long t = 1; t < nt; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}

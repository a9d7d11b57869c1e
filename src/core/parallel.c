/* parallel.c - apt_par_for / apt_par_tasks: one thread per task, the calling thread takes the first, a thread that
 * cannot start runs inline (the work is the same either way). apt_par_for splits [0, n) into one contiguous chunk
 * per thread so neighbouring iterations stay on one core's cache. */
#include "aptomo/parallel.h"

#include <pthread.h>
#include <unistd.h>

int apt_par_threads(int threads)
{
    long nt = threads > 0 ? threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (nt < 1)
        nt = 1;
    return nt > APT_PAR_MAX_THREADS ? APT_PAR_MAX_THREADS : (int)nt;
}

typedef struct par_task {
    apt_par_task_fn fn;
    void *ctx;
    int t;
} par_task;

static void *task_main(void *p)
{
    par_task *j = p;
    j->fn(j->ctx, j->t);
    return NULL;
}

void apt_par_tasks(apt_par_task_fn fn, void *ctx, int tasks)
{
    if (tasks > APT_PAR_MAX_THREADS)
        tasks = APT_PAR_MAX_THREADS;
    if (tasks <= 1) {
        if (tasks == 1)
            fn(ctx, 0);
        return;
    }
    pthread_t th[APT_PAR_MAX_THREADS];
    par_task jobs[APT_PAR_MAX_THREADS];
    int started[APT_PAR_MAX_THREADS];
    for (int t = 0; t < tasks; t++) {
        jobs[t] = (par_task){fn, ctx, t};
        started[t] = t > 0 && pthread_create(&th[t], NULL, task_main, &jobs[t]) == 0;
    }
    for (int t = 0; t < tasks; t++)
        if (!started[t])
            task_main(&jobs[t]);
    for (int t = 1; t < tasks; t++)
        if (started[t])
            pthread_join(th[t], NULL);
}

typedef struct par_range {
    apt_par_fn fn;
    void *ctx;
    long n;
    int nt;
} par_range;

static void range_task(void *p, int t)
{
    par_range *r = p;
    r->fn(r->ctx, r->n * t / r->nt, r->n * (t + 1) / r->nt);
}

void apt_par_for(apt_par_fn fn, void *ctx, long n, int threads)
{
    if (n <= 0)
        return;
    long nt = apt_par_threads(threads);
    if (nt > n)
        nt = n;
    par_range r = {fn, ctx, n, (int)nt};
    apt_par_tasks(range_task, &r, (int)nt);
}

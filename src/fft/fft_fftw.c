/* fft_fftw.c - the CPU FFT backend on libfftw3f: one fftwf_plan_many_dft per direction, planned in place on a
 * scratch array, executed on the caller's arrays with the new-array interface (thread-safe). FFTW's planner (and
 * plan destruction, and wisdom) is not thread-safe, so all of it runs under one process-wide mutex.
 * Wisdom cache: the first measured plan of a process imports the per-user wisdom file (APTOMO_FFTW_WISDOM=off|PATH,
 * default $XDG_CACHE_HOME/aptomo/fftw-wisdom); a FFTW_MEASURE plan that wisdom did not hold is measured and the file
 * rewritten (tmp + rename), so the next process plans in microseconds and gets the very same plan. A missing,
 * corrupt or foreign file only costs the measurement again: never an error. */
#include <errno.h>
#include <fftw3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptomo/log.h"
#include "fft/fft_backend.h"
#include "fft/fftw_lock.h"

static pthread_mutex_t planner_lock = PTHREAD_MUTEX_INITIALIZER;

void apt_fftw_lock(void) { pthread_mutex_lock(&planner_lock); }
void apt_fftw_unlock(void) { pthread_mutex_unlock(&planner_lock); }

typedef struct cpu_impl {
    fftwf_plan fwd, inv;
} cpu_impl;

/* --- wisdom cache (all under planner_lock) ---------------------------------------------------------------- */

#define WISDOM_MAX_BYTES ((long)16 << 20) /* FFTW's own files are kilobytes; anything bigger is not wisdom */

static int wisdom_state;            /* 0 not resolved yet, 1 on, -1 off */
static char wisdom_path[4096];

/* APTOMO_FFTW_WISDOM: "off" disables, another non-empty value is the file; else the XDG cache directory. */
static int wisdom_resolve(void)
{
    const char *env = getenv("APTOMO_FFTW_WISDOM"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n = -1;
    if (env && *env)
        n = strcmp(env, "off") ? snprintf(wisdom_path, sizeof wisdom_path, "%s", env) : -1;
    else if (xdg && *xdg == '/')
        n = snprintf(wisdom_path, sizeof wisdom_path, "%s/aptomo/fftw-wisdom", xdg);
    else if (home && *home == '/')
        n = snprintf(wisdom_path, sizeof wisdom_path, "%s/.cache/aptomo/fftw-wisdom", home);
    return n > 0 && (size_t)n < sizeof wisdom_path ? 1 : -1;
}

/* Whole file into memory (bounded), imported as a string: FFTW restores its tables when an import fails. */
static int wisdom_import(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return snprintf(why, whylen, "%s", strerror(errno)), 0;
    char *buf = NULL;
    long len = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    int ok = 0;
    if (len < 0 || len > WISDOM_MAX_BYTES)
        snprintf(why, whylen, "size %ld is not that of FFTW wisdom", len);
    else if (!(buf = malloc((size_t)len + 1)) || fseek(f, 0, SEEK_SET) || fread(buf, 1, (size_t)len, f) != (size_t)len)
        snprintf(why, whylen, "cannot read it");
    else if (buf[len] = 0, !(ok = fftwf_import_wisdom_from_string(buf)))
        snprintf(why, whylen, "not FFTW single-precision wisdom of this FFTW");
    free(buf);
    fclose(f);
    return ok;
}

/* Wisdom into path.tmp.PID, then renamed over path: readers see the old file or the new one, never half. */
static int wisdom_export(const char *path, char *why, size_t whylen)
{
    char tmp[sizeof wisdom_path + 32];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return snprintf(why, whylen, "path too long"), 0;
    char *s = fftwf_export_wisdom_to_string();
    FILE *f = s ? fopen(tmp, "wb") : NULL;
    int ok = f && fputs(s, f) >= 0;
    ok = f && fclose(f) == 0 && ok;
    if (ok && rename(tmp, path) != 0)
        ok = 0;
    if (!ok) {
        snprintf(why, whylen, "%s", s ? strerror(errno) : "out of memory");
        unlink(tmp);
    }
    free(s);
    return ok;
}

/* mkdir -p of the file's directory (the cache directory may not exist yet; private, as XDG asks). */
static void wisdom_mkdirs(const char *path)
{
    char d[sizeof wisdom_path];
    snprintf(d, sizeof d, "%s", path);
    for (char *p = d + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(d, 0700);
            *p = '/';
        }
}

static void wisdom_first_plan(void)
{
    if (wisdom_state)
        return;
    wisdom_state = wisdom_resolve();
    if (wisdom_state < 0) {
        apt_debug("fftw wisdom: off");
        return;
    }
    char why[160];
    if (wisdom_import(wisdom_path, why, sizeof why))
        apt_debug("fftw wisdom: loaded %s", wisdom_path);
    else
        apt_debug("fftw wisdom: %s not used (%s)", wisdom_path, why);
}

static void wisdom_after_measure(int batch, int h, int w)
{
    if (wisdom_state < 0)
        return;
    char why[160];
    wisdom_mkdirs(wisdom_path);
    if (wisdom_export(wisdom_path, why, sizeof why))
        apt_debug("fftw wisdom: saved %s (measured %d x %d x %d)", wisdom_path, batch, h, w);
    else
        apt_debug("fftw wisdom: cannot save %s (%s)", wisdom_path, why);
}

static int cpu_plan(apt_fft_plan *p, apt_error *err)
{
    size_t n = (size_t)p->batch * p->h * p->w;
    cpu_impl *im = calloc(1, sizeof *im);
    float *scratch = apt_fft_alloc(n);
    if (!im || !scratch) {
        free(im);
        apt_fft_free(scratch);
        return apt_err(err, APT_ENOMEM, "fftw: out of memory planning %d x %d x %d", p->batch, p->h, p->w);
    }
    int dims[2] = {p->h, p->w}, dist = p->h * p->w;
    unsigned fl = p->flags & APT_FFT_MEASURE ? FFTW_MEASURE : FFTW_ESTIMATE;
    fftwf_complex *a = (fftwf_complex *)scratch;
    pthread_mutex_lock(&planner_lock);
    /* a measured plan comes from wisdom when it holds it (no timing, the same plan as the run that measured it) */
    int measured = 0;
    if (fl == FFTW_MEASURE) {
        wisdom_first_plan(); /* only processes that measure read the file: estimated plans stay as they were */
        im->fwd = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_FORWARD,
                                      fl | FFTW_WISDOM_ONLY);
        im->inv = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_BACKWARD,
                                      fl | FFTW_WISDOM_ONLY);
        measured = !im->fwd || !im->inv;
    }
    if (!im->fwd)
        im->fwd = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_FORWARD, fl);
    if (!im->inv)
        im->inv = fftwf_plan_many_dft(2, dims, p->batch, a, NULL, 1, dist, a, NULL, 1, dist, FFTW_BACKWARD, fl);
    if (measured && im->fwd && im->inv)
        wisdom_after_measure(p->batch, p->h, p->w);
    pthread_mutex_unlock(&planner_lock);
    apt_fft_free(scratch);
    if (!im->fwd || !im->inv) {
        p->impl = im;
        p->ops->destroy(p);
        p->impl = NULL;
        return apt_err(err, APT_ENOTSUP, "fftw: cannot plan %d x %d x %d", p->batch, p->h, p->w);
    }
    p->impl = im;
    return APT_OK;
}

static int cpu_forward(const apt_fft_plan *p, float *data, apt_error *err)
{
    (void)err;
    const cpu_impl *im = p->impl;
    fftwf_execute_dft(im->fwd, (fftwf_complex *)data, (fftwf_complex *)data);
    return APT_OK;
}

static int cpu_inverse(const apt_fft_plan *p, float *data, int scale, apt_error *err)
{
    (void)err;
    const cpu_impl *im = p->impl;
    fftwf_execute_dft(im->inv, (fftwf_complex *)data, (fftwf_complex *)data);
    if (scale) {
        size_t n = 2 * (size_t)p->batch * p->h * p->w;
        float s = 1.0f / ((float)p->h * (float)p->w);
        for (size_t i = 0; i < n; i++)
            data[i] *= s;
    }
    return APT_OK;
}

static void cpu_destroy(apt_fft_plan *p)
{
    cpu_impl *im = p->impl;
    if (!im)
        return;
    pthread_mutex_lock(&planner_lock);
    if (im->fwd)
        fftwf_destroy_plan(im->fwd);
    if (im->inv)
        fftwf_destroy_plan(im->inv);
    pthread_mutex_unlock(&planner_lock);
    free(im);
    p->impl = NULL;
}

const struct apt_fft_ops apt_fft_fftw_ops = {
    .name = "fftw",
    .plan = cpu_plan,
    .forward = cpu_forward,
    .inverse = cpu_inverse,
    .destroy = cpu_destroy,
};

int apt_fft_wisdom_load(const char *path, apt_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return APT_OK; /* no wisdom yet: plans are simply measured again */
    pthread_mutex_lock(&planner_lock);
    int ok = fftwf_import_wisdom_from_file(f);
    pthread_mutex_unlock(&planner_lock);
    fclose(f);
    return ok ? APT_OK : apt_err(err, APT_EINVAL, "%s: not FFTW single-precision wisdom", path);
}

int apt_fft_wisdom_save(const char *path, apt_error *err)
{
    char why[160];
    if (strlen(path) >= sizeof wisdom_path)
        return apt_err(err, APT_EINVAL, "%s: path too long for FFTW wisdom", path);
    pthread_mutex_lock(&planner_lock);
    int ok = wisdom_export(path, why, sizeof why);
    pthread_mutex_unlock(&planner_lock);
    return ok ? APT_OK : apt_err(err, APT_EIO, "%s: cannot write FFTW wisdom (%s)", path, why);
}

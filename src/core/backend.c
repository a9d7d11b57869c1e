/* backend.c - the backend rule of backend.h: one resolver for every module, one fallback counter for all. */
#include "aptomo/backend.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "aptomo/gpu.h"
#include "aptomo/log.h"

static pthread_mutex_t fb_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long fb_count;
static char fb_last[256];
/* modules already told (once each, at debug level) that auto chose the CPU: a small fixed set of string literals */
static const char *told[16];

int apt_backend_parse(const char *s, apt_backend *out, apt_error *err)
{
    static const char *const names[] = {"auto", "cpu", "gpu"};
    for (int i = 0; s && i < 3; i++)
        if (!strcmp(s, names[i])) {
            *out = (apt_backend)i;
            return APT_OK;
        }
    return apt_err(err, APT_EINVAL, "backend \"%s\": expected auto, cpu or gpu", s ? s : "(null)");
}

const char *apt_backend_name(apt_backend b)
{
    return b == APT_BACKEND_CPU ? "cpu" : b == APT_BACKEND_GPU ? "gpu" : "auto";
}

static void tell_once(const char *module, const char *why)
{
    pthread_mutex_lock(&fb_lock);
    int seen = 0, slot = -1;
    for (int i = 0; i < 16 && !seen; i++) {
        if (told[i] && !strcmp(told[i], module))
            seen = 1;
        else if (!told[i] && slot < 0)
            slot = i;
    }
    if (!seen && slot >= 0)
        told[slot] = module; /* module names are string literals */
    pthread_mutex_unlock(&fb_lock);
    if (!seen) /* a resolution, not a fallback: the daemon states its choice at start, commands stay quiet */
        apt_debug("%s: backend auto runs on the cpu (%s)", module, why);
}

int apt_backend_resolve(apt_backend want, const char *module, int has_twin, apt_backend *got, apt_error *err)
{
    if (want != APT_BACKEND_AUTO && want != APT_BACKEND_CPU && want != APT_BACKEND_GPU)
        return apt_err(err, APT_EINVAL, "%s: backend %d is not auto, cpu or gpu", module, (int)want);
    *got = APT_BACKEND_CPU;
    if (want == APT_BACKEND_CPU)
        return APT_OK;
    apt_error e = {0};
    const char *why = NULL;
    if (!apt_gpu_compiled())
        why = "built without CUDA";
    else if (!has_twin)
        why = "no GPU implementation of this module in this build";
    else if (apt_gpu_count(&e) < 1)
        why = e.msg[0] ? e.msg : "no CUDA device";
    if (!why) {
        *got = APT_BACKEND_GPU;
        return APT_OK;
    }
    if (want == APT_BACKEND_GPU)
        return apt_err(err, APT_ENODEV, "%s: backend gpu requested but %s", module, why);
    tell_once(module, why);
    return APT_OK;
}

void apt_backend_fallback(const char *module, const char *why)
{
    pthread_mutex_lock(&fb_lock);
    fb_count++;
    snprintf(fb_last, sizeof fb_last, "%s: %s", module, why);
    pthread_mutex_unlock(&fb_lock);
    apt_warn("%s: GPU operation failed, redone on the cpu (%s)", module, why);
}

unsigned long apt_backend_fallbacks(char *last, size_t len)
{
    pthread_mutex_lock(&fb_lock);
    unsigned long n = fb_count;
    if (last && len)
        snprintf(last, len, "%s", fb_last);
    pthread_mutex_unlock(&fb_lock);
    return n;
}

/* backend.h - the one backend rule (docs/ARCHITECTURE.md). Every constructor that has a device twin (FFT plan,
 * ptychography model, tomography projector, network) takes an apt_backend:
 *   cpu   - always the CPU implementation;
 *   gpu   - the CUDA implementation, or APT_ENODEV saying why not (never a quiet CPU run);
 *   auto  - the GPU when this build has the module's CUDA twin and a device answers, else the CPU, logged.
 * Each object answers what it runs on (apt_<module>_backend). A GPU operation that fails at run time and is redone
 * on the CPU is a fallback: logged as a warning and counted here, so the daemon's status shows it. */
#ifndef APTOMO_BACKEND_H
#define APTOMO_BACKEND_H

#include <stddef.h>

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef enum apt_backend { APT_BACKEND_AUTO = 0, APT_BACKEND_CPU = 1, APT_BACKEND_GPU = 2 } apt_backend;

/* "auto" | "cpu" | "gpu" (APT_EINVAL naming the value otherwise). */
int apt_backend_parse(const char *s, apt_backend *out, apt_error *err);
const char *apt_backend_name(apt_backend b);

/* Decide where one module runs. has_twin: this build has the module's GPU implementation. got is CPU or GPU. auto
   without a GPU logs once per module (debug) why it runs on the CPU; gpu without one fails with the reason. */
int apt_backend_resolve(apt_backend want, const char *module, int has_twin, apt_backend *got, apt_error *err);

/* A GPU operation failed and the CPU redid it: warning in the log, counted. */
void apt_backend_fallback(const char *module, const char *why);
/* Fallbacks so far in this process, with the latest one's "module: why" in last (may be NULL). */
unsigned long apt_backend_fallbacks(char *last, size_t len);

APT_API_END

#endif

/* approx_scan.h - the offline Approximant of a scan file (apt_angle_cfg_from_scan, apt_angle_reconstruct_scan,
 * apt_approx_add, apt_result_write), shared by `aptomo approximant` and `aptomo dataset` so a training set's
 * Approximants are made by the very code that makes `aptomo approximant -o` files (the daemon's per-angle path). */
#ifndef APTOMO_TOOLS_APPROX_SCAN_H
#define APTOMO_TOOLS_APPROX_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "aptomo/angle.h"
#include "aptomo/approximant.h"
#include "aptomo/config.h"
#include "aptomo/error.h"
#include "aptomo/geometry.h"
#include "aptomo/scanfile.h"

typedef struct approx_scan {
    apt_angle_cfg ac;      /* grid = the scan's ground-truth grid, else tomo.grid */
    apt_angle_ctx *ctx;
    apt_approx *ap;
    float *probe;          /* the scan's probe [M, crop, crop] complex */
    float *truth;          /* the scan's ground truth [Z,Y,X], NULL when it has none */
    float *vol;            /* the Approximant so far [Z,Y,X] (after approx_scan_add with truth, or _write) */
    size_t nvox;
    double pcc;            /* PCC of the Approximant vs the truth after the last angle; NaN without truth */
} approx_scan;

/* Set up from an open scan file and a configuration (physics.*, tomo.*); threads 0 = one per core. Returns an
   apt error code (APT_ENOMEM/APT_EIO: runtime, others: input), message in err; approx_scan_close after a failure. */
int approx_scan_open(approx_scan *s, apt_scanfile *sf, const apt_config *cfg, int threads, apt_error *err);
/* Reconstruct angle idx and add it to the Approximant (and update pcc). *res is the caller's to read and free
   (apt_angle_result_free), also after a failed add; a failed reconstruction leaves res->object NULL. *J = the
   frames used. */
int approx_scan_add(approx_scan *s, apt_scanfile *sf, uint32_t idx, apt_angle_result *res, uint32_t *J,
                    apt_error *err);
/* The result file of `aptomo approximant -o`: the Approximant as /exchange/data, theta (degrees, processing
   order), the configuration as YAML, pcc_vs_truth when there is a truth. Written to PATH.tmp and renamed. */
int approx_scan_write(approx_scan *s, const char *path, const double *theta, size_t n_theta, const apt_config *cfg,
                      apt_error *err);
void approx_scan_close(approx_scan *s);

#endif

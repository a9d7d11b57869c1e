/* approx_scan.c - the offline Approximant of a scan file, one angle at a time (approx_scan.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "approx_scan.h"
#include "aptomo/metrics.h"
#include "aptomo/volume.h"

int approx_scan_open(approx_scan *s, apt_scanfile *sf, const apt_config *cfg, int threads, apt_error *err)
{
    memset(s, 0, sizeof *s);
    s->pcc = NAN;
    int rc = apt_angle_cfg_from_scan(sf, cfg, &s->ac, &s->probe, &s->truth, err);
    if (rc)
        return rc;
    s->ac.threads = threads;
    if ((rc = apt_angle_ctx_new(&s->ac, s->probe, &s->ctx, err)) || (rc = apt_approx_new(&s->ac.grid, &s->ap, err)))
        return rc;
    s->nvox = (size_t)s->ac.grid.Z * s->ac.grid.Y * s->ac.grid.X;
    if (!(s->vol = malloc(s->nvox * sizeof *s->vol)))
        return apt_err(err, APT_ENOMEM, "out of memory for the %dx%dx%d Approximant", s->ac.grid.Z, s->ac.grid.Y,
                       s->ac.grid.X);
    return APT_OK;
}

int approx_scan_add(approx_scan *s, apt_scanfile *sf, uint32_t idx, apt_angle_result *res, uint32_t *J,
                    apt_error *err)
{
    memset(res, 0, sizeof *res);
    int rc = apt_angle_reconstruct_scan(s->ctx, sf, idx, s->ac.crop, res, J, err);
    if (rc)
        return apt_err_prefix(err, rc, "angle %u: ", idx);
    if ((rc = apt_approx_add(s->ap, &res->sg, apt_angle_wavelength(s->ctx), res->object, res->weight, err)))
        return rc;
    if (s->truth && !(rc = apt_approx_get(s->ap, s->vol, err)))
        s->pcc = apt_metric_pcc(s->vol, s->truth, s->nvox, NULL);
    return rc;
}

int approx_scan_write(approx_scan *s, const char *path, const double *theta, size_t n_theta, const apt_config *cfg,
                      apt_error *err)
{
    int rc = apt_approx_get(s->ap, s->vol, err);
    if (rc)
        return rc;
    const apt_grid3 *g = &s->ac.grid;
    apt_volume v = {g->Z, g->Y, g->X, {g->vz, g->vy, g->vx}, s->vol};
    const char *names[] = {"pcc_vs_truth"};
    char *yaml = apt_config_dump_yaml(cfg);
    if (!yaml)
        return apt_err(err, APT_ENOMEM, "%s: out of memory", path);
    apt_result res = {NULL, &v, theta, n_theta, yaml, names, &s->pcc, s->truth ? 1 : 0};
    rc = apt_result_write(path, &res, err);
    free(yaml);
    return rc;
}

void approx_scan_close(approx_scan *s)
{
    apt_approx_destroy(&s->ap);
    apt_angle_ctx_destroy(&s->ctx);
    free(s->probe);
    free(s->truth);
    free(s->vol);
    memset(s, 0, sizeof *s);
}

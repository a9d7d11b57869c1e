/* angle_load.c - one angle of a scan file as the per-angle pipeline's input: decoded frames cropped around the
 * beam centre with the daemon's crop rule (apt_crop_place + apt_frame_decode_crop), so offline commands
 * (`aptomo approximant`, `aptomo tomo` on scan files) see exactly the patterns the live daemon sees. */
#include <stdlib.h>

#include "aptomo/angle.h"
#include "aptomo/config.h"
#include "aptomo/frame.h"
#include "aptomo/scanfile.h"

int apt_angle_cfg_from_config(const apt_config *cfg, apt_angle_cfg *a, apt_error *err)
{
    *a = (apt_angle_cfg){0};
    a->energy_keV = apt_config_float(cfg, "physics.energy_keV", err);
    a->distance_m = apt_config_float(cfg, "physics.detector_distance_m", err);
    a->det_pixel_m = apt_config_float(cfg, "physics.pixel_size_m", err);
    a->crop = (int)apt_config_int(cfg, "detector.crop", err);
    a->L = (int)apt_config_int(cfg, "physics.slices", err);
    a->M = (int)apt_config_int(cfg, "physics.modes", err);
    a->iterations = (int)apt_config_int(cfg, "physics.iterations", err);
    a->batches = (int)apt_config_int(cfg, "physics.batches", err);
    a->pad_px = -1;
    a->backend = (apt_backend)apt_config_enum(cfg, "compute.backend", err); /* auto|cpu|gpu = APT_BACKEND_* */
    a->grid = (apt_grid3){(int)apt_config_list_float(cfg, "tomo.grid", 0, err),
                          (int)apt_config_list_float(cfg, "tomo.grid", 1, err),
                          (int)apt_config_list_float(cfg, "tomo.grid", 2, err),
                          apt_config_list_float(cfg, "tomo.voxel_size_m", 0, err),
                          apt_config_list_float(cfg, "tomo.voxel_size_m", 1, err),
                          apt_config_list_float(cfg, "tomo.voxel_size_m", 2, err)};
    return err && err->code ? err->code : APT_OK;
}

int apt_angle_cfg_from_scan(apt_scanfile *sf, const apt_config *cfg, apt_angle_cfg *ac, float **probe,
                            float **truth, apt_error *err)
{
    *probe = NULL;
    if (truth)
        *truth = NULL;
    const apt_scan_header *h = apt_scanfile_header(sf);
    uint32_t M, PH, PW, Z, Y, X;
    int rc = apt_scanfile_probe_dims(sf, &M, &PH, &PW, err);
    if (rc)
        return rc;
    if (PH != PW)
        return apt_err(err, APT_EINVAL, "%s: probe %ux%u is not square", apt_scanfile_path(sf), PH, PW);
    if (!(*probe = malloc((size_t)M * PH * PW * 2 * sizeof **probe)))
        return apt_err(err, APT_ENOMEM, "out of memory for the %ux%ux%u probe", M, PH, PW);
    if ((rc = apt_scanfile_read_probe(sf, *probe, NULL, err)))
        goto fail;
    apt_angle_cfg_from_config(cfg, ac, NULL);
    ac->energy_keV = h->energy_keV; /* the instrument is the scan file's */
    ac->distance_m = h->detector_distance_m;
    ac->det_pixel_m = h->pixel_size_m;
    ac->crop = (int)PH;
    ac->M = ac->M < (int)M ? ac->M : (int)M;
    /* the ground truth's grid when there is one (its voxel size comes with the data), else tomo.grid */
    if (!apt_scanfile_has_ground_truth(sf) || apt_scanfile_ground_truth_dims(sf, &Z, &Y, &X, NULL))
        return APT_OK;
    double vs[3];
    float *t = malloc((size_t)Z * Y * X * sizeof *t);
    if (!t) {
        rc = apt_err(err, APT_ENOMEM, "out of memory for the %ux%ux%u ground truth", Z, Y, X);
        goto fail;
    }
    if ((rc = apt_scanfile_read_ground_truth(sf, t, vs, err))) {
        free(t);
        goto fail;
    }
    ac->grid = (apt_grid3){(int)Z, (int)Y, (int)X, vs[0], vs[1], vs[2]};
    if (truth)
        *truth = t;
    else
        free(t);
    return APT_OK;
fail:
    free(*probe);
    *probe = NULL;
    return rc;
}

int apt_angle_reconstruct_scan(apt_angle_ctx *ctx, apt_scanfile *sf, uint32_t idx, int crop, apt_angle_result *res,
                               uint32_t *J, apt_error *err)
{
    float **pats = NULL;
    double *pos = NULL;
    *J = 0;
    int rc = apt_angle_load(sf, idx, crop, &pats, &pos, J, err);
    if (!rc)
        rc = apt_angle_reconstruct(ctx, apt_scanfile_header(sf)->angles_deg[idx], (const float *const *)pats, pos,
                                   *J, res, err);
    apt_angle_patterns_free(pats, *J);
    free(pos);
    return rc;
}

void apt_angle_patterns_free(float **pats, uint32_t J)
{
    for (uint32_t j = 0; pats && j < J; j++)
        free(pats[j]);
    free(pats);
}

int apt_angle_load(apt_scanfile *sf, uint32_t idx, int crop, float ***pats, double **pos, uint32_t *Jout,
                   apt_error *err)
{
    uint32_t J, H, W, es;
    *pats = NULL;
    *pos = NULL;
    *Jout = 0;
    int rc = apt_scanfile_angle_dims(sf, idx, &J, &H, &W, &es, err);
    if (rc)
        return rc;
    const apt_scan_header *h = apt_scanfile_header(sf);
    apt_crop c;
    if ((rc = apt_crop_place(W, H, h->beam_center_px[0], h->beam_center_px[1], (uint32_t)crop, &c, err)))
        return rc;
    uint8_t *frame = malloc((size_t)H * W * es);
    *pats = calloc(J ? J : 1, sizeof **pats);
    *pos = malloc((J ? J : 1) * 2 * sizeof **pos);
    *Jout = J;
    if (!frame || !*pats || !*pos) {
        free(frame);
        return apt_err(err, APT_ENOMEM, "out of memory for angle %u", idx);
    }
    apt_bytes scratch = {0};
    rc = apt_scanfile_read_positions(sf, idx, *pos, err);
    for (uint32_t j = 0; !rc && j < J; j++) {
        (*pats)[j] = malloc((size_t)crop * crop * sizeof(float));
        apt_pixels px = {"", W, H, es, APT_ENC_NONE, frame, (size_t)H * W * es};
        if (!(*pats)[j])
            rc = apt_err(err, APT_ENOMEM, "out of memory");
        else if (!(rc = apt_scanfile_read_frames(sf, idx, j, 1, frame, err)))
            rc = apt_frame_decode_crop(&px, &c, NULL, (*pats)[j], &scratch, err);
    }
    apt_bytes_free(&scratch);
    free(frame);
    return rc;
}

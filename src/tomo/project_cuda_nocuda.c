/* project_cuda_nocuda.c - CPU-only twin of project_cuda.cu: this build has no CUDA projector, so apt_proj_new
 * keeps the threaded CPU path whatever the flags say. */
#include "tomo/project_int.h"

int apt_proj_cuda_usable(void) { return 0; }

int apt_proj_cuda_forward(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                          const float *vol, float *sino, apt_error *err)
{
    (void)sh, (void)ang, (void)idx, (void)n, (void)vol, (void)sino;
    return apt_err(err, APT_ENODEV, "tomo projector: built without CUDA");
}

int apt_proj_cuda_back(const apt_proj_shape *sh, const apt_proj_angle *ang, const int *idx, int n,
                       const float *sino, float *vol, apt_error *err)
{
    (void)sh, (void)ang, (void)idx, (void)n, (void)sino, (void)vol;
    return apt_err(err, APT_ENODEV, "tomo projector: built without CUDA");
}

/* patch.c - the network's natural input patch, from the arch: axial.size is the spatial size after the last stage,
 * so the input is that size times the stem stride and every stage stride, per axis. */
#include <jansson.h>

#include "aptomo/nn.h"

int apt_nn_patch_shape(const apt_nn_model *m, int patch[3], int scale[3], apt_error *err)
{
    json_t *arch = json_loads(apt_nn_arch_json(m), 0, NULL);
    json_t *size = json_object_get(json_object_get(arch, "axial"), "size");
    json_t *stem = json_object_get(arch, "stem_stride"), *stages = json_object_get(arch, "stages");
    int f[3];
    for (int a = 0; a < 3; a++)
        f[a] = (int)json_integer_value(json_array_get(stem, (size_t)a));
    for (size_t i = 0; i < json_array_size(stages); i++) {
        int st = (int)json_integer_value(json_object_get(json_array_get(stages, i), "stride"));
        for (int a = 0; a < 3; a++)
            f[a] *= st > 0 ? st : 1;
    }
    for (int a = 0; a < 3; a++)
        patch[a] = (int)json_integer_value(json_array_get(size, (size_t)a)) * f[a];
    json_decref(arch);
    if (patch[0] < 1 || patch[1] < 1 || patch[2] < 1)
        return apt_err(err, APT_EINVAL, "weights: aptomo.arch has no usable axial.size / strides");
    int out[3];
    int rc = apt_nn_output_shape(m, patch[0], patch[1], patch[2], &out[0], &out[1], &out[2], err);
    for (int a = 0; !rc && a < 3; a++)
        scale[a] = out[a] / patch[a];
    return rc;
}

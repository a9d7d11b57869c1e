/* nn_train.h - training the APT network (docs/NETWORK.md) on the CPU: BatchNorm in training mode (batch statistics,
 * running statistics updated with momentum 0.1 and the unbiased variance), NPCC loss, Adam. Unlike the inference
 * path (nn.h) nothing is folded: the trainer holds every state_dict tensor as the file names it. A step gives the same
 * bytes for any thread count and on every run (docs/TRAINING.md says how). */
#ifndef APTOMO_NN_TRAIN_H
#define APTOMO_NN_TRAIN_H

#include "aptomo/error.h"
#include "aptomo/export.h"

APT_API_BEGIN

typedef struct apt_nn_train apt_nn_train;

/* Adam and the NPCC loss (docs/NETWORK.md "Training"). */
typedef struct apt_nn_adam {
    double beta1, beta2, eps, weight_decay;
} apt_nn_adam;
#define APT_NN_ADAM_DEFAULT ((apt_nn_adam){0.9, 0.999, 1e-8, 0.0})

/* Load a weights file (same checks as apt_nn_load) or a checkpoint written with with_optimizer = 1 (Adam moments and
   step count restored). threads 0 = one per core. */
int apt_nn_train_load(const char *safetensors_path, int threads, apt_nn_train **out, apt_error *err);
void apt_nn_train_destroy(apt_nn_train **t);

void apt_nn_train_set_adam(apt_nn_train *t, const apt_nn_adam *adam);

/* Network output shape for an input patch (refuses patches that do not divide through the strides). */
int apt_nn_train_output_shape(const apt_nn_train *t, int Z, int Y, int X, int *oz, int *oy, int *ox, apt_error *err);

/* One step: forward in training mode on x [B,1,Z,Y,X] (already normalised), NPCC loss against y [B,1,oz,oy,ox]
   (mean over the batch), backward, Adam update with learning rate lr. *loss is the loss before the update. */
int apt_nn_train_step(apt_nn_train *t, const float *x, const float *y, int B, int Z, int Y, int X, double lr,
                      double *loss, apt_error *err);

/* Adam steps taken so far (0 after loading plain weights). */
long long apt_nn_train_steps(const apt_nn_train *t);

/* __metadata__[key] of the loaded file (NULL if absent). */
const char *apt_nn_train_meta(const apt_nn_train *t, const char *key);

/* Write the state_dict (num_batches_tracked only when the loaded file had it) with the loaded file's metadata, where
   meta (key, value pairs, NULL-terminated; may be NULL) adds or replaces keys. with_optimizer adds the Adam moments
   and step count (a checkpoint: PyTorch's strict load would refuse it, apt_nn_train_load resumes from it). Atomic. */
int apt_nn_train_save(const apt_nn_train *t, const char *path, int with_optimizer, const char *const *meta,
                      apt_error *err);

/* The loss-curve PNG of `aptomo train` (cairo): train[i], test[i] are the losses after epoch i + 1 (non-finite
   values are skipped); best: the epoch (1-based) to mark, 0 for none. Written to PATH.tmp then renamed, so a reader
   never sees half a picture. */
int apt_nn_train_plot(const char *png_path, const double *train, const double *test, int n, int best,
                      const char *title, apt_error *err);

APT_API_END

#endif

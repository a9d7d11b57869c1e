/* trainplot.h - the loss-curve PNG of `aptomo train` (cairo): train and test loss per epoch, the best epoch marked. */
#ifndef APTOMO_NN_TRAINPLOT_H
#define APTOMO_NN_TRAINPLOT_H

#include "aptomo/error.h"

/* train[i], test[i]: the losses after epoch i + 1 (non-finite values are skipped); best: the epoch (1-based) to
   mark, 0 for none. Written to PATH.tmp then renamed, so a reader never sees half a picture. */
int nn_train_plot(const char *png_path, const double *train, const double *test, int n, int best, const char *title,
                  apt_error *err);

#endif

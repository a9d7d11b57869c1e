/* train.h - `aptomo train`, shared by cmd_train.c (options, start, data, resume checks) and train_loop.c (epochs,
 * evaluation, checkpoints, the best weights and their output fit). docs/CLI.md and docs/TRAINING.md describe it. */
#ifndef APTOMO_TOOLS_TRAIN_H
#define APTOMO_TOOLS_TRAIN_H

#include <jansson.h>
#include <stdint.h>

#include "aptomo/nn_train.h"
#include "cli.h"
#include "trainset.h"

#define TRAIN_MAX_DATASETS 64
#define TRAIN_PATH_MAX 4096

typedef struct train_opts {
    const char *out, *arch, *init, *resume, *ckpt, *log, *plot;
    const char *pairs[CLI_MAX_ARGS]; /* APPROX.h5:TARGET.h5 as given */
    int npairs;
    const char *datasets[TRAIN_MAX_DATASETS];
    int ndatasets;
    uint64_t seed, epochs, batch, T, test_pairs, threads;
    double lr0, lr_end, power, test_fraction;
    int patch[3], flip;
    unsigned set; /* TRAIN_SET_* bits: options given on the command line (a resumed run checks them) */
    char ckpt_buf[TRAIN_PATH_MAX], plot_buf[TRAIN_PATH_MAX];
} train_opts;

enum {
    TRAIN_SET_SEED = 1u << 0, TRAIN_SET_EPOCHS = 1u << 1, TRAIN_SET_BATCH = 1u << 2, TRAIN_SET_LR0 = 1u << 3,
    TRAIN_SET_LR_END = 1u << 4, TRAIN_SET_POWER = 1u << 5, TRAIN_SET_T = 1u << 6, TRAIN_SET_PATCH = 1u << 7,
    TRAIN_SET_TEST_FRACTION = 1u << 8, TRAIN_SET_TEST_PAIRS = 1u << 9, TRAIN_SET_FLIP = 1u << 10
};

typedef struct train_run {
    const train_opts *o;
    apt_nn_train *t;
    nn_trainset *s;
    double mean, std;
    char input_json[128];  /* aptomo.input */
    json_t *options;       /* the run's options as the checkpoint records them */
    json_t *split;         /* which pairs / band are the test set */
    json_t *history;       /* one object per completed epoch */
    int done;              /* epochs completed */
    int best;              /* best epoch by test loss (1-based), 0 before the first */
    double best_loss;
    char tmpdir[TRAIN_PATH_MAX]; /* scratch: the eval weights of each epoch */
    char eval_path[TRAIN_PATH_MAX + 64];
} train_run;

/* lr(t) = (lr0 - lr_end)(1 - t/T)^p + lr_end, t the epoch index (from 0), clamped at t >= T. */
double train_lr(const train_opts *o, int t);

/* Save the trainer's weights (no optimizer state) to r->eval_path and load them for inference. */
int train_eval_model(train_run *r, struct apt_nn_model **m, apt_error *err);

/* The epochs r->done + 1 .. o->epochs, then the output fit and the final OUT. Exit status (CLI_*). */
int train_loop(train_run *r);

#endif

/* cmd_train.c - `aptomo train`: the APT network trained from volume pairs (docs/TRAINING.md). This file reads the
 * options, starts the trainer (random init as kernel nn-init, given weights, or a checkpoint), loads and splits the
 * data (tools/trainset.c) and, on --resume, makes sure the run continued is the run that wrote the checkpoint:
 * same data, same split, same options, since only then does a resumed run end with the same bytes as an
 * uninterrupted one. The epochs themselves are train_loop.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptomo/nn.h"
#include "nn_init.h"
#include "train.h"

static const char HELP[] =
    "usage: aptomo train (--arch ARCH.json [--seed S] | --init W.safetensors | --resume CKPT)\n"
    "                    [APPROX.h5:TARGET.h5]... [--dataset DIR/dataset.json]... -o OUT.safetensors [options]\n"
    "Trains the network of docs/NETWORK.md on pairs of Data Exchange volumes (/exchange/data of both): the\n"
    "Approximant and the target on the network's output grid. Patches of the arch's input shape (50% lateral\n"
    "overlap, Z without overlap, reflection padding), random Y/X flips, NPCC loss, Adam with the poly learning-rate\n"
    "schedule by epoch; the test set is held out as whole pairs (or a band of X for a single pair). After each\n"
    "epoch: test NPCC and PCC in eval mode, one JSON line on stdout (and --log), a checkpoint, the loss plot; the\n"
    "best weights by test loss go to OUT with aptomo.input and aptomo.output (the affine map from the network's\n"
    "output to the target, fitted on the training pairs). A run resumed from its checkpoint ends with the same\n"
    "bytes as an uninterrupted one. Progress bar on stderr when it is a terminal.\n"
    "  -o OUT.safetensors   the best weights, required\n"
    "  --arch ARCH.json     start from random weights for this arch (those of aptomo kernel nn-init --seed S)\n"
    "  --init W.safetensors start from these weights\n"
    "  --resume CKPT        continue the run that wrote this checkpoint: its options and pairs apply (given\n"
    "                       ones must match), --epochs may grow\n"
    "  --dataset PATH       the pairs of an aptomo dataset manifest (DIR/dataset.json or DIR); repeatable\n"
    "  --seed S             initialisation, test split, shuffling and flips (default 0)\n"
    "  --epochs E           epochs (default 200)\n"
    "  --batch B            patches per step, 1..256 (default 4)\n"
    "  --lr0 LR             initial learning rate (default 2e-4)\n"
    "  --lr-end LR          final learning rate (default 2e-6)\n"
    "  --power P            schedule power (default 0.9): lr(t) = (lr0 - lr_end)(1 - t/T)^P + lr_end\n"
    "  --schedule-steps T   schedule length in epochs (default 200; lr_end from epoch T on)\n"
    "  --patch Z,Y,X        training patch (default: the arch's input patch)\n"
    "  --test-fraction F    share of the pairs (or of X, for one pair) held out for testing (default 0.2)\n"
    "  --test-pairs N       hold out exactly N pairs instead\n"
    "  --no-flip            no random flips\n"
    "  --checkpoint PATH    written after each epoch (default: OUT without .safetensors + .ckpt.safetensors)\n"
    "  --log FILE.jsonl     the epoch lines (appended on --resume)\n"
    "  --plot FILE.png      train and test loss per epoch (default: OUT without .safetensors + .png)\n"
    "  --threads T          threads, 0 = one per core (default 0)\n";

enum { OPT_ARCH = 256, OPT_INIT, OPT_RESUME, OPT_DATASET, OPT_SEED, OPT_EPOCHS, OPT_BATCH, OPT_LR0, OPT_LR_END,
       OPT_POWER, OPT_T, OPT_PATCH, OPT_TEST_FRACTION, OPT_TEST_PAIRS, OPT_NO_FLIP, OPT_CKPT, OPT_LOG, OPT_PLOT,
       OPT_THREADS };

static int parse_patch(cli_parser *p, int patch[3])
{
    int used = 0;
    if (sscanf(p->arg, "%d,%d,%d%n", &patch[0], &patch[1], &patch[2], &used) == 3 && !p->arg[used] &&
        patch[0] >= 1 && patch[1] >= 1 && patch[2] >= 1 && patch[0] <= 65536 && patch[1] <= 65536 &&
        patch[2] <= 65536)
        return 0;
    return cli_fail(p, "%s: '%s' must be Z,Y,X (three integers in [1, 65536])", p->opt, p->arg);
}

static int parse_options(train_opts *o, cli_parser *p, int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},           {"arch", required_argument, NULL, OPT_ARCH},
        {"init", required_argument, NULL, OPT_INIT},        {"resume", required_argument, NULL, OPT_RESUME},
        {"dataset", required_argument, NULL, OPT_DATASET},  {"seed", required_argument, NULL, OPT_SEED},
        {"epochs", required_argument, NULL, OPT_EPOCHS},    {"batch", required_argument, NULL, OPT_BATCH},
        {"lr0", required_argument, NULL, OPT_LR0},          {"lr-end", required_argument, NULL, OPT_LR_END},
        {"power", required_argument, NULL, OPT_POWER},      {"schedule-steps", required_argument, NULL, OPT_T},
        {"patch", required_argument, NULL, OPT_PATCH},      {"no-flip", no_argument, NULL, OPT_NO_FLIP},
        {"test-fraction", required_argument, NULL, OPT_TEST_FRACTION},
        {"test-pairs", required_argument, NULL, OPT_TEST_PAIRS},
        {"checkpoint", required_argument, NULL, OPT_CKPT},  {"log", required_argument, NULL, OPT_LOG},
        {"plot", required_argument, NULL, OPT_PLOT},        {"threads", required_argument, NULL, OPT_THREADS},
        {0}};
    *o = (train_opts){.epochs = 200, .batch = 4, .T = 200, .lr0 = 2e-4, .lr_end = 2e-6, .power = 0.9,
                      .test_fraction = 0.2, .flip = 1};
    int c;
    cli_init(p, "train", HELP, "o:", opts, argc, argv);
    while ((c = cli_next(p)) > 0) {
        switch (c) {
        case 'o': o->out = p->arg; break;
        case OPT_ARCH: o->arch = p->arg; break;
        case OPT_INIT: o->init = p->arg; break;
        case OPT_RESUME: o->resume = p->arg; break;
        case OPT_DATASET:
            if (o->ndatasets == TRAIN_MAX_DATASETS)
                return cli_fail(p, "--dataset: at most %d manifests", TRAIN_MAX_DATASETS);
            o->datasets[o->ndatasets++] = p->arg;
            break;
        case OPT_SEED: o->set |= TRAIN_SET_SEED, cli_uint(p, 0, UINT64_MAX, &o->seed); break;
        case OPT_EPOCHS: o->set |= TRAIN_SET_EPOCHS, cli_uint(p, 1, 1000000, &o->epochs); break;
        case OPT_BATCH: o->set |= TRAIN_SET_BATCH, cli_uint(p, 1, 256, &o->batch); break;
        case OPT_LR0: o->set |= TRAIN_SET_LR0, cli_real(p, 0, 1, CLI_OPEN_LO, &o->lr0); break;
        case OPT_LR_END: o->set |= TRAIN_SET_LR_END, cli_real(p, 0, 1, 0, &o->lr_end); break;
        case OPT_POWER: o->set |= TRAIN_SET_POWER, cli_real(p, 0, 100, 0, &o->power); break;
        case OPT_T: o->set |= TRAIN_SET_T, cli_uint(p, 1, 1000000, &o->T); break;
        case OPT_PATCH: o->set |= TRAIN_SET_PATCH, parse_patch(p, o->patch); break;
        case OPT_TEST_FRACTION:
            o->set |= TRAIN_SET_TEST_FRACTION, cli_real(p, 0, 1, CLI_OPEN_LO | CLI_OPEN_HI, &o->test_fraction);
            break;
        case OPT_TEST_PAIRS: o->set |= TRAIN_SET_TEST_PAIRS, cli_uint(p, 1, NN_TS_MAX_PAIRS, &o->test_pairs); break;
        case OPT_NO_FLIP: o->set |= TRAIN_SET_FLIP, o->flip = 0; break;
        case OPT_CKPT: o->ckpt = p->arg; break;
        case OPT_LOG: o->log = p->arg; break;
        case OPT_PLOT: o->plot = p->arg; break;
        case OPT_THREADS: cli_uint(p, 0, 256, &o->threads); break;
        }
    }
    int rc = cli_done(p, c, 0, -1, "APPROX.h5:TARGET.h5");
    if (rc != CLI_GO)
        return rc;
    for (int i = 0; i < p->nargs; i++) {
        const char *colon = strrchr(p->args[i], ':');
        if (!colon || colon == p->args[i] || !colon[1])
            return cli_fail(p, "'%s': a pair is APPROX.h5:TARGET.h5", p->args[i]);
        o->pairs[o->npairs++] = p->args[i];
    }
    if (!o->out)
        return cli_fail(p, "-o OUT.safetensors is required");
    if (!!o->arch + !!o->init + !!o->resume != 1)
        return cli_fail(p, "give exactly one of --arch ARCH.json, --init W.safetensors, --resume CKPT");
    if (!o->resume && !o->npairs && !o->ndatasets)
        return cli_fail(p, "no training data: give APPROX.h5:TARGET.h5 pairs or --dataset");
    if ((o->set & TRAIN_SET_TEST_PAIRS) && (o->set & TRAIN_SET_TEST_FRACTION))
        return cli_fail(p, "--test-pairs and --test-fraction exclude each other");
    if (o->lr_end > o->lr0)
        return cli_fail(p, "--lr-end %g exceeds --lr0 %g", o->lr_end, o->lr0);
    /* OUT.safetensors -> OUT.ckpt.safetensors, OUT.png */
    size_t n = strlen(o->out), sfx = strlen(".safetensors");
    int cut = n > sfx && !strcmp(o->out + n - sfx, ".safetensors") ? (int)(n - sfx) : (int)n;
    if (!o->ckpt) {
        snprintf(o->ckpt_buf, sizeof o->ckpt_buf, "%.*s.ckpt.safetensors", cut, o->out);
        o->ckpt = o->ckpt_buf;
    }
    if (!o->plot) {
        snprintf(o->plot_buf, sizeof o->plot_buf, "%.*s.png", cut, o->out);
        o->plot = o->plot_buf;
    }
    if (!strcmp(o->ckpt, o->out) || (o->resume && !strcmp(o->resume, o->out)))
        return cli_fail(p, "the checkpoint and -o must be different files");
    return CLI_GO;
}

/* ---- resume: the checkpoint's record of its run ---- */

static int need(json_t *o, const char *key, int (*is)(const json_t *), const char *ckpt, json_t **out)
{
    *out = json_object_get(o, key);
    if (is(*out))
        return 0;
    cli_error("%s: aptomo.train: \"%s\" is missing or of the wrong type (not a checkpoint of aptomo train?)", ckpt,
              key);
    return -1;
}

static int is_object(const json_t *j) { return json_is_object(j); }
static int is_array(const json_t *j) { return json_is_array(j); }
static int is_number(const json_t *j) { return json_is_number(j); }
static int is_integer(const json_t *j) { return json_is_integer(j); }
static int is_bool(const json_t *j) { return json_is_boolean(j); }

/* Take an option from the checkpoint, or check the given one against it. */
static int merge_real(train_opts *o, json_t *opt, const char *key, const char *name, unsigned bit, double *v)
{
    json_t *j;
    if (need(opt, key, is_number, o->resume, &j))
        return -1;
    if (!(o->set & bit)) {
        *v = json_number_value(j);
        return 0;
    }
    if (*v == json_number_value(j))
        return 0;
    cli_error("%s %.17g differs from the checkpoint's %.17g: a resumed run repeats the run it continues", name, *v,
              json_number_value(j));
    return -1;
}

static int merge_uint(train_opts *o, json_t *opt, const char *key, const char *name, unsigned bit, uint64_t *v)
{
    json_t *j;
    if (need(opt, key, is_integer, o->resume, &j))
        return -1;
    if (json_integer_value(j) < 0) {
        cli_error("%s: aptomo.train: options.%s is negative", o->resume, key);
        return -1;
    }
    if (!(o->set & bit) || bit == TRAIN_SET_EPOCHS) {
        if (!(o->set & bit))
            *v = (uint64_t)json_integer_value(j);
        return 0;
    }
    if (*v == (uint64_t)json_integer_value(j))
        return 0;
    cli_error("%s %llu differs from the checkpoint's %lld: a resumed run repeats the run it continues", name,
              (unsigned long long)*v, (long long)json_integer_value(j));
    return -1;
}

static int merge_options(train_opts *o, json_t *opt)
{
    json_t *j;
    if (merge_uint(o, opt, "seed", "--seed", TRAIN_SET_SEED, &o->seed) ||
        merge_uint(o, opt, "epochs", "--epochs", TRAIN_SET_EPOCHS, &o->epochs) ||
        merge_uint(o, opt, "batch", "--batch", TRAIN_SET_BATCH, &o->batch) ||
        merge_real(o, opt, "lr0", "--lr0", TRAIN_SET_LR0, &o->lr0) ||
        merge_real(o, opt, "lr_end", "--lr-end", TRAIN_SET_LR_END, &o->lr_end) ||
        merge_real(o, opt, "power", "--power", TRAIN_SET_POWER, &o->power) ||
        merge_uint(o, opt, "schedule_steps", "--schedule-steps", TRAIN_SET_T, &o->T) ||
        merge_real(o, opt, "test_fraction", "--test-fraction", TRAIN_SET_TEST_FRACTION, &o->test_fraction) ||
        merge_uint(o, opt, "test_pairs", "--test-pairs", TRAIN_SET_TEST_PAIRS, &o->test_pairs) ||
        need(opt, "flip", is_bool, o->resume, &j))
        return -1;
    if ((o->set & TRAIN_SET_FLIP) && o->flip != json_is_true(j)) {
        cli_error("--no-flip: the checkpoint's run used flips: a resumed run repeats the run it continues");
        return -1;
    }
    o->flip = json_is_true(j);
    if (need(opt, "patch", is_array, o->resume, &j) || json_array_size(j) != 3)
        return -1;
    for (int a = 0; a < 3; a++) {
        int v = (int)json_integer_value(json_array_get(j, (size_t)a));
        if ((o->set & TRAIN_SET_PATCH) && o->patch[a] != v) {
            cli_error("--patch differs from the checkpoint's %lld,%lld,%lld",
                      (long long)json_integer_value(json_array_get(j, 0)),
                      (long long)json_integer_value(json_array_get(j, 1)),
                      (long long)json_integer_value(json_array_get(j, 2)));
            return -1;
        }
        o->patch[a] = v;
    }
    o->set |= TRAIN_SET_PATCH;
    return 0;
}

/* The checkpoint's state: epochs done, best, history, options (merged into o). 0, or an exit status. */
static int read_state(train_run *r, train_opts *o, json_t **state)
{
    const char *text = apt_nn_train_meta(r->t, "aptomo.train");
    json_error_t je;
    json_t *j, *st = text ? json_loads(text, 0, &je) : NULL;
    *state = st;
    if (!st || !apt_nn_train_steps(r->t)) {
        cli_error("%s: %s: not a checkpoint of aptomo train", o->resume,
                  st ? "plain weights without optimizer state" : "no aptomo.train record");
        return CLI_USAGE;
    }
    if (need(st, "epoch", is_integer, o->resume, &j))
        return CLI_USAGE;
    r->done = (int)json_integer_value(j);
    json_t *history;
    if (need(st, "history", is_array, o->resume, &history) || need(st, "options", is_object, o->resume, &j) ||
        merge_options(o, j))
        return CLI_USAGE;
    if ((int)json_array_size(history) != r->done) {
        cli_error("%s: aptomo.train: %zu history entries for %d epochs", o->resume, json_array_size(history),
                  r->done);
        return CLI_USAGE;
    }
    r->history = json_incref(history);
    json_t *best = json_object_get(st, "best");
    if (json_is_object(best)) {
        r->best = (int)json_integer_value(json_object_get(best, "epoch"));
        r->best_loss = json_number_value(json_object_get(best, "test_npcc"));
    }
    if (o->epochs < (uint64_t)r->done) {
        cli_error("--epochs %llu: the checkpoint has already done %d", (unsigned long long)o->epochs, r->done);
        return CLI_USAGE;
    }
    return 0;
}

/* ---- data ---- */

static int load_pairs(train_opts *o, nn_trainset *s, json_t *stored, apt_error *err)
{
    int rc = APT_OK;
    for (int i = 0; !rc && i < o->npairs; i++) {
        const char *colon = strrchr(o->pairs[i], ':');
        char *a = strndup(o->pairs[i], (size_t)(colon - o->pairs[i]));
        rc = a ? nn_ts_add_pair(s, a, colon + 1, err) : apt_err(err, APT_ENOMEM, "out of memory");
        free(a);
    }
    for (int i = 0; !rc && i < o->ndatasets; i++)
        rc = nn_ts_add_manifest(s, o->datasets[i], err);
    if (!o->npairs && !o->ndatasets && stored) /* --resume alone: the checkpoint's pairs */
        for (size_t i = 0; !rc && i < json_array_size(stored); i++) {
            json_t *e = json_array_get(stored, i);
            const char *a = json_string_value(json_array_get(e, 0)), *t = json_string_value(json_array_get(e, 1));
            rc = a && t ? nn_ts_add_pair(s, a, t, err)
                        : apt_err(err, APT_EINVAL, "%s: aptomo.train: options.pairs[%zu] is not [approximant, "
                                  "target]", o->resume, i);
        }
    return rc;
}

/* The pairs as absolute paths (what the checkpoint records and a resumed run compares). */
static json_t *pair_list(const nn_trainset *s)
{
    json_t *l = json_array();
    for (int i = 0; i < s->npairs; i++) {
        char *a = realpath(s->pairs[i].approx_path, NULL), *t = realpath(s->pairs[i].truth_path, NULL);
        json_array_append_new(l, json_pack("[s, s]", a ? a : s->pairs[i].approx_path,
                                           t ? t : s->pairs[i].truth_path));
        free(a);
        free(t);
    }
    return l;
}

static json_t *options_json(const train_opts *o, const nn_trainset *s)
{
    return json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:[i,i,i], s:f, s:I, s:b, s:o}", "seed",
                     (json_int_t)o->seed, "epochs", (json_int_t)o->epochs, "batch", (json_int_t)o->batch, "lr0",
                     o->lr0, "lr_end", o->lr_end, "power", o->power, "schedule_steps", (json_int_t)o->T, "patch",
                     o->patch[0], o->patch[1], o->patch[2], "test_fraction", o->test_fraction, "test_pairs",
                     (json_int_t)o->test_pairs, "flip", o->flip, "pairs", pair_list(s));
}

static json_t *split_json(const nn_trainset *s)
{
    json_t *sp = json_pack("{s:I, s:I, s:I}", "train_patches", (json_int_t)s->ntrain, "test_patches",
                           (json_int_t)s->ntest, "constant_target_patches", (json_int_t)s->dropped);
    if (s->band_x0 >= 0) {
        json_object_set_new(sp, "test_band_x", json_pack("[i, i]", s->band_x0, s->pairs[0].X));
        return sp;
    }
    json_t *l = json_array();
    for (int i = 0; i < s->ntest_pairs; i++)
        json_array_append_new(l, json_integer(s->test_pairs[i]));
    json_object_set_new(sp, "test_pairs", l);
    return sp;
}

/* ---- start ---- */

static int start_trainer(train_opts *o, train_run *r, apt_error *err)
{
    if (o->resume || o->init)
        return apt_nn_train_load(o->resume ? o->resume : o->init, (int)o->threads, &r->t, err);
    json_error_t je;
    json_t *arch = json_load_file(o->arch, 0, &je);
    if (!arch)
        return apt_err(err, APT_EINVAL, "%s: line %d: %s", o->arch, je.line, je.text);
    char *text = json_dumps(arch, JSON_COMPACT | JSON_PRESERVE_ORDER), path[TRAIN_PATH_MAX + 32];
    json_decref(arch);
    snprintf(path, sizeof path, "%s/init.safetensors", r->tmpdir);
    int bad = 0, rc = text ? nn_init_write(text, o->seed, NULL, path, &bad, err)
                           : apt_err(err, APT_ENOMEM, "out of memory");
    free(text);
    if (rc && bad)
        apt_err_prefix(err, rc, "%s: ", o->arch);
    if (!rc)
        rc = apt_nn_train_load(path, (int)o->threads, &r->t, err);
    unlink(path);
    return rc;
}

/* The patch (the arch's unless --patch) and the output/input scale per axis. */
static int patch_shape(train_opts *o, train_run *r, int scale[3], apt_error *err)
{
    apt_nn_model *m = NULL;
    int natural[3], out[3];
    int rc = train_eval_model(r, &m, err);
    if (!rc)
        rc = apt_nn_patch_shape(m, natural, scale, err);
    apt_nn_destroy(&m);
    if (rc)
        return rc;
    if (!(o->set & TRAIN_SET_PATCH))
        memcpy(o->patch, natural, sizeof natural);
    rc = apt_nn_train_output_shape(r->t, o->patch[0], o->patch[1], o->patch[2], &out[0], &out[1], &out[2], err);
    if (rc)
        return apt_err_prefix(err, rc, "patch %d,%d,%d: ", o->patch[0], o->patch[1], o->patch[2]);
    for (int a = 0; a < 3; a++)
        if (out[a] % o->patch[a] || (scale[a] = out[a] / o->patch[a]) < 1)
            return apt_err(err, APT_EINVAL, "patch %d,%d,%d: the output %dx%dx%d is not a whole multiple of it",
                           o->patch[0], o->patch[1], o->patch[2], out[0], out[1], out[2]);
    return APT_OK;
}

int cmd_train(int argc, char **argv)
{
    train_opts o;
    cli_parser p;
    int rc = parse_options(&o, &p, argc, argv);
    if (rc != CLI_GO)
        return rc;
    if ((rc = cli_check_output("-o", o.out)) || (rc = cli_check_output("--checkpoint", o.ckpt)) ||
        (rc = cli_check_output("--plot", o.plot)) || (rc = cli_check_output("--log", o.log)))
        return rc;
    train_run r = {.o = &o, .best_loss = NAN};
    nn_trainset s = {0};
    json_t *state = NULL;
    apt_error err = {0};
    const char *tmp = getenv("TMPDIR");
    snprintf(r.tmpdir, sizeof r.tmpdir, "%s/aptomo-train-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(r.tmpdir)) {
        cli_error("%s: cannot create a scratch folder: %s", r.tmpdir, strerror(errno));
        return CLI_FAIL;
    }
    snprintf(r.eval_path, sizeof r.eval_path, "%s/eval.safetensors", r.tmpdir);
    int scale[3];
    if ((rc = start_trainer(&o, &r, &err)) || (o.resume && (rc = read_state(&r, &o, &state)) != 0)) {
        rc = rc < 0 ? cli_report(rc, &err, CLI_SETUP) : rc; /* before the first epoch: what was given */
        goto out;
    }
    if ((rc = patch_shape(&o, &r, scale, &err))) {
        rc = cli_report(rc, &err, CLI_SETUP);
        goto out;
    }
    nn_ts_init(&s, o.patch, scale);
    r.s = &s;
    json_t *stored = o.resume ? json_object_get(json_object_get(state, "options"), "pairs") : NULL;
    if ((rc = load_pairs(&o, &s, stored, &err)) ||
        (rc = nn_ts_split(&s, (int)o.test_pairs, o.test_fraction, o.seed, &err)) ||
        (rc = nn_ts_input_stats(&s, &r.mean, &r.std, &err))) {
        rc = cli_report(rc, &err, CLI_SETUP);
        goto out;
    }
    snprintf(r.input_json, sizeof r.input_json, "{\"mean\":%.17g,\"std\":%.17g}", r.mean, r.std);
    r.options = options_json(&o, &s);
    r.split = split_json(&s);
    if (o.resume) { /* the same data, split and statistics, or the continuation would be another run */
        json_t *was = json_object_get(json_object_get(state, "options"), "pairs");
        const char *in = apt_nn_train_meta(r.t, "aptomo.input");
        if (!json_equal(was, json_object_get(r.options, "pairs"))) {
            cli_error("the training pairs differ from those of the checkpoint %s (give the same pairs, or none)",
                      o.resume);
            rc = CLI_USAGE;
        } else if (!json_equal(json_object_get(state, "split"), r.split)) {
            cli_error("the test split differs from that of the checkpoint %s", o.resume);
            rc = CLI_USAGE;
        } else if (!in || strcmp(in, r.input_json)) {
            cli_error("the training Approximants' mean/std %s differ from the checkpoint's %s: the data changed",
                      r.input_json, in ? in : "(none)");
            rc = CLI_USAGE;
        }
        if (rc)
            goto out;
    }
    if (!r.history)
        r.history = json_array();
    char *sp = json_dumps(r.split, JSON_COMPACT);
    printf("{\"pairs\":%d,\"patch\":[%d,%d,%d],\"scale\":[%d,%d,%d],\"split\":%s,\"input\":%s,\"resumed_at\":%d}\n",
           s.npairs, o.patch[0], o.patch[1], o.patch[2], scale[0], scale[1], scale[2], sp ? sp : "null",
           r.input_json, r.done);
    fflush(stdout);
    free(sp);
    rc = train_loop(&r);
out:
    unlink(r.eval_path);
    rmdir(r.tmpdir);
    json_decref(state);
    json_decref(r.options);
    json_decref(r.split);
    json_decref(r.history);
    apt_nn_train_destroy(&r.t);
    nn_ts_free(&s);
    return rc;
}

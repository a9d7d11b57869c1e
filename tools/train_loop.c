/* train_loop.c - the epochs of `aptomo train`: shuffled, flipped batches through the trainer, then the test set in
 * eval mode through the inference library (the exact path aptomo infer runs), a checkpoint, one JSON line, the plot.
 * Every random choice of an epoch comes from a PRNG seeded by (seed, epoch), and OUT is written by our own writer
 * with metadata that holds no timing, so a run resumed from its checkpoint ends with the same OUT bytes as an
 * uninterrupted one. Order per epoch: OUT (if best), checkpoint, log line, plot: an interruption anywhere leaves a
 * checkpoint whose best weights are in OUT, or an OUT from an epoch the resumed run repeats exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aptomo/nn.h"
#include "aptomo/safetensors.h"
#include "aptomo/sim.h"
#include "train.h"

#define TRAIN_STREAM 0x747261696e000000ULL /* "train" + epoch: the PRNG stream of an epoch's shuffle and flips */

double train_lr(const train_opts *o, int t)
{
    double u = t >= (double)o->T ? 1.0 : t / (double)o->T;
    return (o->lr0 - o->lr_end) * pow(1.0 - u, o->power) + o->lr_end;
}

int train_eval_model(train_run *r, apt_nn_model **m, apt_error *err)
{
    const char *meta[] = {"aptomo.input", r->input_json[0] ? r->input_json : "{\"mean\":0,\"std\":1}", NULL};
    int rc = apt_nn_train_save(r->t, r->eval_path, 0, meta, err);
    apt_nn_destroy(m);
    return rc ? rc : apt_nn_load(r->eval_path, (int)r->o->threads, m, err);
}

/* ---- OUT: the best weights, copied tensor by tensor in PyTorch's order with metadata we choose ---- */

typedef struct copy_ctx {
    apt_st_file *f;
    apt_st_writer *w;
    const char *src;
    apt_error *err;
} copy_ctx;

static int copy_tensor(const char *name, apt_nn_kind kind, int rank, const long long *shape, void *user)
{
    (void)rank, (void)shape;
    copy_ctx *c = user;
    const apt_st_tensor *t = apt_st_find(c->f, name);
    if (!t)
        return kind == APT_NN_BN_COUNT ? APT_OK : apt_err(c->err, APT_EINVAL, "%s: no tensor %s", c->src, name);
    return apt_st_writer_add(c->w, name, t->dtype, t->rank, t->shape, t->data, c->err);
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* The run's record without timings (OUT's aptomo.train): the weights' epoch, options, split, history. */
static char *record(const train_run *r, int epoch, int with_seconds)
{
    json_t *h = json_array();
    for (size_t i = 0; i < json_array_size(r->history); i++) {
        json_t *e = json_deep_copy(json_array_get(r->history, i));
        if (!with_seconds)
            json_object_del(e, "seconds");
        json_array_append_new(h, e);
    }
    json_t *best = r->best ? json_pack("{s:i, s:o}", "epoch", r->best, "test_npcc", num(r->best_loss)) : json_null();
    json_t *j = json_pack("{s:i, s:o, s:O, s:O, s:o}", "epoch", epoch, "best", best, "options", r->options, "split",
                          r->split, "history", h);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static int write_out(const train_run *r, const char *src, const char *output_json, int epoch, apt_error *err)
{
    copy_ctx c = {.src = src, .err = err};
    char *rec = record(r, epoch, 0);
    int rc = rec ? apt_st_open(src, &c.f, err) : apt_err(err, APT_ENOMEM, "out of memory");
    const char *arch = rc ? NULL : apt_st_meta(c.f, "aptomo.arch");
    if (!rc && !arch)
        rc = apt_err(err, APT_EINVAL, "%s: no aptomo.arch", src);
    if (!rc)
        rc = apt_st_writer_new(&c.w, err);
    if (!rc)
        rc = apt_nn_arch_tensors(arch, copy_tensor, &c, err);
    if (!rc)
        rc = apt_st_writer_meta(c.w, "aptomo.arch", arch, err);
    if (!rc)
        rc = apt_st_writer_meta(c.w, "aptomo.input", r->input_json, err);
    if (!rc && output_json)
        rc = apt_st_writer_meta(c.w, "aptomo.output", output_json, err);
    if (!rc)
        rc = apt_st_writer_meta(c.w, "aptomo.train", rec, err);
    if (!rc)
        rc = apt_st_writer_save(c.w, r->o->out, err);
    apt_st_writer_destroy(&c.w);
    apt_st_close(&c.f);
    free(rec);
    return rc;
}

/* On resume: OUT must hold the checkpoint's best epoch, or one the resumed run will repeat (written just before an
   interruption that lost its checkpoint). */
static int check_out(const train_run *r)
{
    if (!r->best)
        return 0;
    apt_st_file *f = NULL;
    apt_error err = {0};
    int epoch = -1;
    if (!apt_st_open(r->o->out, &f, &err)) {
        const char *rec = apt_st_meta(f, "aptomo.train");
        json_t *j = rec ? json_loads(rec, 0, NULL) : NULL, *e = json_object_get(j, "epoch");
        epoch = json_is_integer(e) ? (int)json_integer_value(e) : -1;
        json_decref(j);
        apt_st_close(&f);
    }
    if (epoch == r->best || epoch > r->done)
        return 0;
    cli_error("%s: %s; the checkpoint's best weights (epoch %d) are not there: resume with the -o of the "
              "interrupted run", r->o->out, epoch < 0 ? "missing or not written by aptomo train" : "another epoch",
              r->best);
    return CLI_USAGE;
}

/* ---- one epoch ---- */

typedef struct bufs {
    float *x, *y, *out;
    size_t np, nq; /* floats per input / output patch */
} bufs;

static int train_epoch(train_run *r, int e, bufs *b, cli_progress *prog, double *loss, apt_error *err)
{
    const nn_trainset *s = r->s;
    size_t n = s->ntrain, B = r->o->batch;
    size_t *perm = malloc(n * sizeof *perm);
    unsigned char *flips = malloc(n);
    if (!perm || !flips) {
        free(perm);
        free(flips);
        return apt_err(err, APT_ENOMEM, "out of memory for the epoch's order");
    }
    apt_sim_rng rng;
    apt_sim_rng_seed(&rng, r->o->seed, TRAIN_STREAM + (uint64_t)e);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        size_t j = (size_t)(apt_sim_rng_next(&rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (size_t i = 0; i < n; i++) /* drawn even with --no-flip, so the stream does not depend on it */
        flips[i] = (unsigned char)(apt_sim_rng_next(&rng) >> 62) & (r->o->flip ? 3 : 0);
    double lr = train_lr(r->o, e), sum = 0;
    int rc = APT_OK;
    for (size_t b0 = 0; !rc && b0 < n; b0 += B) {
        size_t nb = n - b0 < B ? n - b0 : B;
        for (size_t k = 0; !rc && k < nb; k++)
            if (nn_ts_extract(s, &s->train[perm[b0 + k]], flips[b0 + k] & 1, flips[b0 + k] >> 1, r->mean, r->std,
                              b->x + k * b->np, b->y + k * b->nq))
                rc = apt_err(err, APT_ENOMEM, "out of memory for a patch");
        double l = 0;
        if (!rc)
            rc = apt_nn_train_step(r->t, b->x, b->y, (int)nb, s->patch[0], s->patch[1], s->patch[2], lr, &l, err);
        sum += l * (double)nb;
        cli_progress_update(prog, b0 / B + 1);
    }
    *loss = sum / (double)n;
    free(perm);
    free(flips);
    return rc;
}

/* Eval-mode pass over a patch list: the mean per-patch NPCC (a patch whose output is constant counts 0) and the
   pooled moments of (output, target). */
static int evaluate(train_run *r, apt_nn_model *m, const nn_ts_patch *list, size_t n, bufs *b, double *npcc,
                    nn_ts_moments *pooled, apt_error *err)
{
    const nn_trainset *s = r->s;
    size_t B = r->o->batch;
    double sum = 0;
    int rc = APT_OK;
    *pooled = (nn_ts_moments){0};
    for (size_t b0 = 0; !rc && b0 < n; b0 += B) {
        size_t nb = n - b0 < B ? n - b0 : B;
        for (size_t k = 0; !rc && k < nb; k++)
            if (nn_ts_extract(s, &list[b0 + k], 0, 0, r->mean, r->std, b->x + k * b->np, b->y + k * b->nq))
                rc = apt_err(err, APT_ENOMEM, "out of memory for a patch");
        if (!rc)
            rc = apt_nn_forward(m, b->x, (int)nb, s->patch[0], s->patch[1], s->patch[2], b->out, err);
        for (size_t k = 0; !rc && k < nb; k++) {
            nn_ts_moments one = {0};
            nn_ts_moments_add(&one, b->out + k * b->nq, b->y + k * b->nq, b->nq);
            double pcc = nn_ts_moments_pcc(&one);
            sum += isfinite(pcc) ? -pcc : 0.0;
            nn_ts_moments_add(pooled, b->out + k * b->nq, b->y + k * b->nq, b->nq);
        }
    }
    *npcc = n ? sum / (double)n : NAN;
    return rc;
}

static double hist(const train_run *r, size_t i, const char *key)
{
    json_t *v = json_object_get(json_array_get(r->history, i), key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static void plot(const train_run *r)
{
    size_t n = json_array_size(r->history);
    double *tr = malloc((n + 1) * sizeof *tr), *te = malloc((n + 1) * sizeof *te);
    apt_error err = {0};
    for (size_t i = 0; tr && te && i < n; i++)
        tr[i] = hist(r, i, "train_loss"), te[i] = hist(r, i, "test_npcc");
    if (tr && te && apt_nn_train_plot(r->o->plot, tr, te, (int)n, r->best, "aptomo train: NPCC loss", &err))
        cli_error("%s (training goes on)", err.msg); /* a picture is not worth the run */
    free(tr);
    free(te);
}

static int one_epoch(train_run *r, int e, bufs *b, apt_nn_model **m, apt_error *err)
{
    char label[48];
    snprintf(label, sizeof label, "epoch %d/%d", e + 1, (int)r->o->epochs);
    cli_progress prog;
    cli_progress_start(&prog, label, (r->s->ntrain + r->o->batch - 1) / r->o->batch);
    double t0 = apt_now(), train_loss = NAN, npcc = NAN;
    nn_ts_moments pooled;
    int rc = train_epoch(r, e, b, &prog, &train_loss, err);
    cli_progress_clear(&prog);
    if (!rc)
        rc = train_eval_model(r, m, err);
    if (!rc)
        rc = evaluate(r, *m, r->s->test, r->s->ntest, b, &npcc, &pooled, err);
    if (rc)
        return rc;
    json_t *line = json_pack("{s:i, s:f, s:o, s:o, s:o, s:f}", "epoch", e + 1, "lr", train_lr(r->o, e), "train_loss",
                             num(train_loss), "test_npcc", num(npcc), "test_pcc", num(nn_ts_moments_pcc(&pooled)),
                             "seconds", apt_now() - t0);
    int better = !r->best || (isfinite(npcc) && !(npcc >= r->best_loss));
    json_object_set_new(line, "best", json_boolean(better));
    json_array_append(r->history, line);
    r->done = e + 1;
    if (better) {
        r->best = e + 1, r->best_loss = npcc;
        rc = write_out(r, r->eval_path, NULL, r->best, err);
    }
    char *rec = rc ? NULL : record(r, r->done, 1);
    const char *meta[] = {"aptomo.input", r->input_json, "aptomo.train", rec, NULL};
    if (!rc)
        rc = rec ? apt_nn_train_save(r->t, r->o->ckpt, 1, meta, err) : apt_err(err, APT_ENOMEM, "out of memory");
    free(rec);
    char *txt = rc ? NULL : json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (txt) {
        printf("%s\n", txt);
        fflush(stdout);
        FILE *f = r->o->log ? fopen(r->o->log, "a") : NULL;
        if (r->o->log && (!f || fprintf(f, "%s\n", txt) < 0 || fclose(f))) {
            free(txt);
            return apt_err(err, APT_EIO, "--log %s: cannot append", r->o->log);
        }
        free(txt);
        plot(r);
    }
    return rc;
}

/* ---- the run ---- */

/* aptomo.output: least squares target ~ scale * output + offset over every training patch, with the best weights. */
static int fit_output(train_run *r, bufs *b, char *json, size_t cap, double *scale, double *offset, apt_error *err)
{
    apt_nn_model *m = NULL;
    nn_ts_moments mo;
    double npcc;
    int rc = apt_nn_load(r->o->out, (int)r->o->threads, &m, err);
    if (!rc)
        rc = evaluate(r, m, r->s->train, r->s->ntrain, b, &npcc, &mo, err);
    apt_nn_destroy(&m);
    if (rc)
        return rc;
    nn_ts_moments_fit(&mo, scale, offset);
    if (!(mo.syy > 0))
        cli_error("warning: the best weights' output is constant on the training patches; aptomo.output maps it "
                  "to the mean target");
    snprintf(json, cap, "{\"scale\":%.17g,\"offset\":%.17g}", *scale, *offset);
    return APT_OK;
}

int train_loop(train_run *r)
{
    const nn_trainset *s = r->s;
    size_t B = r->o->batch;
    bufs b = {.np = (size_t)s->patch[0] * s->patch[1] * s->patch[2]};
    b.nq = b.np * (size_t)s->scale[0] * s->scale[1] * s->scale[2];
    apt_error err = {0};
    apt_nn_model *m = NULL;
    int rc = check_out(r);
    if (rc)
        return rc;
    if (r->o->log && !r->o->resume) { /* a new run starts a new log */
        FILE *f = fopen(r->o->log, "w");
        if (!f || fclose(f)) {
            cli_error("--log %s: cannot write", r->o->log);
            return CLI_FAIL;
        }
    }
    b.x = malloc(B * b.np * sizeof(float));
    b.y = malloc(B * b.nq * sizeof(float));
    b.out = malloc(B * b.nq * sizeof(float));
    rc = b.x && b.y && b.out ? APT_OK : apt_err(&err, APT_ENOMEM, "out of memory for a batch of %zu patches", B);
    for (int e = r->done; !rc && e < (int)r->o->epochs; e++)
        rc = one_epoch(r, e, &b, &m, &err);
    apt_nn_destroy(&m);
    char output[128];
    double scale = NAN, offset = NAN;
    if (!rc)
        rc = fit_output(r, &b, output, sizeof output, &scale, &offset, &err);
    if (!rc)
        rc = write_out(r, r->o->out, output, r->best, &err);
    free(b.x);
    free(b.y);
    free(b.out);
    if (rc) {
        return cli_report(rc, &err, CLI_RUN);
    }
    json_t *fin = json_pack("{s:s, s:i, s:o, s:{s:o, s:o}, s:s}", "output", r->o->out, "best_epoch", r->best,
                            "test_npcc", num(r->best_loss), "output_fit", "scale", num(scale), "offset", num(offset),
                            "checkpoint", r->o->ckpt);
    char *txt = fin ? json_dumps(fin, JSON_COMPACT) : NULL;
    json_decref(fin);
    printf("%s\n", txt ? txt : "{}");
    free(txt);
    return CLI_OK;
}

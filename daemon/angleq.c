/* angleq.c - complete angles waiting for reconstruction: in memory up to storage.queue_memory_mb, beyond that in
 * sealed files under storage.dir/queue, so a reconstruction slower than acquisition neither drops an angle nor
 * blocks ingest. An angle on disk also survives a crash: the next start queues it again (aptd_angleq_resume).
 * If the disk refuses the file the angle stays in memory (over the bound, reported): memory is the last resort,
 * losing the angle is not an option. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aptd_int.h"
#include "aptomo/fsutil.h"
#include "aptomo/log.h"
#include "aptomo/sealed.h"

static size_t angle_bytes(const aptd_angle *a)
{
    return a->n_frames * ((size_t)a->n * a->n * sizeof(float) + 2 * sizeof(double));
}

static json_t *header_of(const aptd_angle *a)
{
    return json_pack("{s:s,s:I,s:s,s:I,s:b,s:f,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:f}", "kind", "queued_angle",
                     "series", (json_int_t)a->series_id, "unique_id", a->unique_id, "index", (json_int_t)a->index,
                     "has_angle", a->has_angle, "angle_deg", a->angle_deg, "crop", (int)a->n, "frames",
                     (json_int_t)a->n_frames, "received", (json_int_t)a->frames_received, "dropped",
                     (json_int_t)a->frames_dropped, "dup", (json_int_t)a->dup, "undecodable",
                     (json_int_t)a->undecodable, "nopos", (json_int_t)a->nopos, "overflow",
                     (json_int_t)a->overflow, "reason", a->reason, "seconds_acquire", a->seconds_acquire);
}

/* Header -> the angle's fields (frames not loaded). */
int aptd_angleq_parse(const char *text, aptd_angle *a, uint64_t payload, apt_error *err, const char *path)
{
    json_error_t je;
    json_t *h = json_loads(text, 0, &je);
    const char *kind = "", *uid = "", *reason = "";
    json_int_t series = 0, index = 0, frames = 0, rec = 0, drop = 0, dup = 0, und = 0, nopos = 0, over = 0;
    int has_angle = 0, crop = 0;
    int rc = APT_OK;
    if (!h || json_unpack(h, "{s:s,s:I,s:s,s:I,s:b,s:F,s:i,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s,s:F}", "kind", &kind,
                          "series", &series, "unique_id", &uid, "index", &index, "has_angle", &has_angle,
                          "angle_deg", &a->angle_deg, "crop", &crop, "frames", &frames, "received", &rec, "dropped",
                          &drop, "dup", &dup, "undecodable", &und, "nopos", &nopos, "overflow", &over, "reason",
                          &reason, "seconds_acquire", &a->seconds_acquire) ||
        strcmp(kind, "queued_angle") || crop < 8 || crop > 4096 || frames < 1 || series < 0 || index < 0)
        rc = apt_err(err, APT_ECORRUPT, "%s: header is not a queued angle's", path);
    else {
        a->series_id = (uint64_t)series;
        a->index = (uint64_t)index;
        a->has_angle = has_angle;
        a->n = (uint32_t)crop;
        a->n_frames = (size_t)frames;
        a->frames_received = (uint64_t)rec;
        a->frames_dropped = (uint64_t)drop;
        a->dup = (uint64_t)dup;
        a->undecodable = (uint64_t)und;
        a->nopos = (uint64_t)nopos;
        a->overflow = (uint64_t)over;
        snprintf(a->unique_id, sizeof a->unique_id, "%s", uid);
        snprintf(a->reason, sizeof a->reason, "%s", reason);
        if (payload != angle_bytes(a))
            rc = apt_err(err, APT_ECORRUPT, "%s: payload of %llu bytes does not match %zu frames of %d x %d", path,
                         (unsigned long long)payload, a->n_frames, crop, crop);
    }
    json_decref(h);
    return rc;
}

static int spill(aptd *d, aptd_angle *a, apt_error *err)
{
    char path[1200];
    uint64_t k = atomic_fetch_add(&d->store.spill_seq, 1);
    snprintf(path, sizeof path, "%s/queue", d->s.storage_dir);
    int rc = apt_mkdir_p(path, 0750, err); /* made when first needed: most runs never queue on disk */
    if (rc)
        return rc;
    snprintf(path, sizeof path, "%s/queue/q_%012llu.bin", d->s.storage_dir, (unsigned long long)k);
    apt_sealed_part *parts = malloc((a->n_frames + 1) * sizeof *parts);
    json_t *h = header_of(a);
    char *text = h ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (!parts || !text || !(a->spill_path = strdup(path)))
        rc = apt_err(err, APT_ENOMEM, "out of memory");
    if (!rc) {
        parts[0] = (apt_sealed_part){a->pos, a->n_frames * 2 * sizeof(double)};
        for (size_t i = 0; i < a->n_frames; i++)
            parts[i + 1] = (apt_sealed_part){a->frames[i], (size_t)a->n * a->n * sizeof(float)};
        rc = apt_sealed_write(path, text, parts, a->n_frames + 1, err);
    }
    free(parts);
    free(text);
    if (rc) {
        free(a->spill_path);
        a->spill_path = NULL;
        return rc;
    }
    for (size_t i = 0; i < a->n_frames; i++)
        aptd_pool_put(d->patterns, a->frames[i]);
    free(a->frames);
    free(a->pos);
    a->frames = NULL;
    a->pos = NULL;
    atomic_fetch_add(&d->store.spilled, 1);
    atomic_fetch_add(&d->store.on_disk, 1);
    return APT_OK;
}

/* The angle leaves the queue's accounting (its file, if any, is left alone: at shutdown it stays for the next
   start). */
static void forget(aptd *d, aptd_angle *a)
{
    if (a->spill_path) {
        atomic_fetch_sub(&d->store.on_disk, 1);
        free(a->spill_path);
        a->spill_path = NULL;
    }
    if (a->mem_bytes) {
        atomic_fetch_sub(&d->store.mem_bytes, a->mem_bytes);
        a->mem_bytes = 0;
    }
}

int aptd_angleq_push(aptd *d, aptd_angle *a)
{
    size_t bytes = angle_bytes(a);
    uint64_t bound = (uint64_t)d->s.queue_memory_mb << 20;
    if (a->n_frames && !a->finalize && atomic_load(&d->store.mem_bytes) + bytes > bound) {
        apt_error err = {0};
        if (spill(d, a, &err) == APT_OK)
            apt_info("series %llu: reconstruction is behind (%.0f MiB of angles queued in memory): queued on "
                     "disk as %s", (unsigned long long)a->series_id,
                     (double)atomic_load(&d->store.mem_bytes) / 1048576.0, a->spill_path);
        else
            aptd_state_error(d, err.msg), apt_error_log("series %llu: %s; kept in memory over "
                                                         "storage.queue_memory_mb", (unsigned long long)a->series_id,
                                                         err.msg);
    }
    if (!a->spill_path) {
        a->mem_bytes = bytes;
        atomic_fetch_add(&d->store.mem_bytes, bytes);
    }
    if (aptd_queue_push(d->recon_q, a) != 0) {
        forget(d, a);
        return -1;
    }
    return 0;
}

int aptd_angleq_load(aptd *d, aptd_angle *a, apt_error *err)
{
    if (!a->spill_path || a->frames)
        return APT_OK;
    apt_sealed *s = NULL;
    const char *text;
    uint64_t pl;
    int rc = apt_sealed_open(a->spill_path, &s, &text, &pl, err);
    aptd_angle h = {0};
    if (!rc)
        rc = aptd_angleq_parse(text, &h, pl, err, a->spill_path);
    if (!rc && (h.n != a->n || h.n_frames != a->n_frames || h.series_id != a->series_id))
        rc = apt_err(err, APT_ECORRUPT, "%s: not the angle that was queued", a->spill_path);
    if (!rc && (!(a->frames = calloc(a->n_frames, sizeof *a->frames)) ||
                !(a->pos = malloc(a->n_frames * 2 * sizeof *a->pos))))
        rc = apt_err(err, APT_ENOMEM, "out of memory for %zu queued frames", a->n_frames);
    if (!rc)
        rc = apt_sealed_read(s, a->pos, a->n_frames * 2 * sizeof *a->pos, err);
    for (size_t i = 0; !rc && i < a->n_frames; i++) {
        if (!(a->frames[i] = aptd_pool_get(d->patterns)))
            rc = apt_err(err, APT_ENOMEM, "out of memory for %zu queued frames", a->n_frames);
        else
            rc = apt_sealed_read(s, a->frames[i], (size_t)a->n * a->n * sizeof(float), err);
    }
    apt_sealed_close(&s);
    if (rc && a->frames) {
        for (size_t i = 0; i < a->n_frames; i++)
            aptd_pool_put(d->patterns, a->frames[i]);
        free(a->frames);
        a->frames = NULL;
    }
    return rc;
}

void aptd_angleq_done(aptd *d, aptd_angle *a)
{
    if (a->spill_path && unlink(a->spill_path) && errno != ENOENT)
        apt_warn("%s: cannot remove: %s", a->spill_path, strerror(errno));
    forget(d, a);
}

int aptd_angleq_resume(aptd *d, apt_error *err)
{
    (void)err; /* nothing here stops the start: a bad file is reported and moved aside */
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/queue", d->s.storage_dir);
    aptd_state_remove_tmp(dir);
    char **names;
    size_t n = aptd_state_list(dir, "q_", &names), queued = 0;
    for (size_t i = 0; i < n; i++) {
        char path[1300];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unsigned long long k = strtoull(names[i] + 2, NULL, 10);
        if (k >= atomic_load(&d->store.spill_seq))
            atomic_store(&d->store.spill_seq, k + 1);
        free(names[i]);
        apt_sealed *s = NULL;
        const char *text;
        uint64_t pl;
        apt_error e = {0};
        aptd_angle *a = calloc(1, sizeof *a);
        int lrc = !a ? apt_err(&e, APT_ENOMEM, "out of memory") : apt_sealed_open(path, &s, &text, &pl, &e);
        if (!lrc)
            lrc = aptd_angleq_parse(text, a, pl, &e, path);
        apt_sealed_close(&s);
        if (!lrc && !(a->spill_path = strdup(path)))
            lrc = apt_err(&e, APT_ENOMEM, "out of memory");
        if (lrc) {
            char dst[1400];
            snprintf(dst, sizeof dst, "%s.corrupt", path);
            apt_error_log("queue: %s: not used (%s); kept as %s", path, e.msg, dst);
            rename(path, dst);
            atomic_fetch_add(&d->store.corrupt, 1);
            aptd_state_error(d, e.msg);
            free(a);
            continue;
        }
        atomic_fetch_add(&d->store.on_disk, 1);
        if (aptd_queue_push(d->recon_q, a) != 0) {
            forget(d, a);
            free(a);
            continue;
        }
        queued++;
    }
    free(names);
    if (queued)
        apt_info("queue: %zu complete angles from before the restart queued for reconstruction", queued);
    return APT_OK;
}

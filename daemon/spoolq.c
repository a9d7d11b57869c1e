/* spoolq.c - the spool thread: every accepted frame, as received (no decode), into one HDF5 file per series under
 * storage.dir. One thread owns all HDF5 writes (HDF5 serialises calls behind one lock anyway; one writer keeps
 * each file's state in one place). Frames of a series come
 * through the queue before its "series done" marker, so the file is closed only after its last frame. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "aptd_int.h"
#include "aptomo/log.h"
#include "aptomo/spool.h"

/* The marker is a frame with no pixels: it carries only the series reference. */
void aptd_spool_series_done(aptd *d, aptd_series *s)
{
    aptd_frame *f = calloc(1, sizeof *f);
    if (!f)
        return;
    atomic_init(&f->refs, 1);
    atomic_fetch_add(&s->refs, 1);
    f->series = s;
    f->image_id = UINT64_MAX;
    zmq_msg_init(&f->msg);
    if (aptd_queue_push(d->spool_q, f) != 0)
        aptd_frame_unref(&f);
}

static void close_spool(aptd *d, apt_spool **sp, aptd_series *s)
{
    apt_error err = {0};
    if (s) {
        pthread_mutex_lock(&s->mu);
        int rc = s->has_angle ? apt_spool_set_angle(*sp, s->angle_deg, &err) : APT_OK;
        /* positions of every frame that has one, in runs (rows without one stay NaN) */
        for (size_t i = 0; rc == APT_OK && i < s->cap;) {
            if (!(s->flags[i] & SF_HAS_POS)) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < s->cap && (s->flags[j] & SF_HAS_POS))
                j++;
            rc = apt_spool_set_positions(*sp, i, j - i, s->pos + 2 * i, &err);
            i = j;
        }
        pthread_mutex_unlock(&s->mu);
        if (rc) {
            apt_warn("spool %s: %s", apt_spool_path(*sp), err.msg);
            atomic_fetch_add(&d->spool_errors, 1);
        }
    }
    char path[1200];
    snprintf(path, sizeof path, "%s", apt_spool_path(*sp));
    uint64_t n = apt_spool_frames(*sp);
    if (apt_spool_close(sp, &err) != APT_OK) {
        apt_error_log("spool %s: %s", path, err.msg);
        atomic_fetch_add(&d->spool_errors, 1);
    } else {
        apt_info("spool %s: %llu frames", path, (unsigned long long)n);
    }
}

static void *spool_main(void *arg)
{
    aptd *d = arg;
    apt_spool *sp = NULL;
    aptd_series *open_for = NULL; /* borrowed identity only: compared, never dereferenced after close */
    uint64_t errors_logged = 0;
    aptd_frame *f;
    while ((f = aptd_queue_pop(d->spool_q, -1))) {
        aptd_series *s = f->series;
        if (f->image_id == UINT64_MAX) {
            if (sp && open_for == s) {
                close_spool(d, &sp, s);
                open_for = NULL;
            }
        } else {
            apt_error err = {0};
            int rc = APT_OK;
            if (!sp || open_for != s) {
                if (sp)
                    close_spool(d, &sp, NULL);
                open_for = NULL;
                rc = apt_spool_open(d->s.storage_dir, s->id, s->unique_id, s->width, s->height, s->elem_size, &sp,
                                    &err);
                if (rc == APT_OK)
                    open_for = s;
            }
            if (rc == APT_OK)
                rc = apt_spool_write(sp, f->image_id, f->px.enc,
                                     (const uint8_t *)zmq_msg_data(&f->msg) + f->blob_off, f->px.blob_len, &err);
            if (rc == APT_OK) {
                atomic_fetch_add(&d->spooled, 1);
            } else {
                atomic_fetch_add(&d->spool_errors, 1);
                if (++errors_logged <= 10 || errors_logged % 1000 == 0)
                    apt_error_log("spool: series %llu frame %llu: %s", (unsigned long long)s->id,
                                  (unsigned long long)f->image_id, err.msg);
            }
        }
        aptd_frame_unref(&f);
        aptd_queue_done(d->spool_q);
    }
    if (sp)
        close_spool(d, &sp, NULL);
    return NULL;
}

int aptd_spool_start(aptd *d, apt_error *err)
{
    if (pthread_create(&d->spooler, NULL, spool_main, d))
        return apt_err(err, APT_ENOMEM, "cannot start spool thread");
    d->spool_running = 1;
    apt_info("spooling frames to %s", d->s.storage_dir);
    return APT_OK;
}

void aptd_spool_stop(aptd *d)
{
    aptd_queue_wait_idle(d->spool_q);
    aptd_queue_close(d->spool_q);
    pthread_join(d->spooler, NULL);
    d->spool_running = 0;
}

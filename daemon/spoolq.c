/* spoolq.c - the spool thread: every accepted frame, as received (no decode), into one HDF5 file per series under
 * storage.dir. One thread owns all HDF5 writes (HDF5 serialises calls behind one lock anyway; one writer keeps
 * each file's state in one place). Frames of a series come
 * through the queue before its "series done" marker, so the file is closed only after its last frame.
 * A full disk must not cost the scan: when free space on storage.dir falls below storage.spool_min_free_mb, or a
 * write fails for lack of space, quota or file size, spooling goes off (status "spool"), once, and the frames still
 * go to reconstruction; it is tried again at a later series. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

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

#define SPOOL_CHECK_S 1.0  /* free-space check period while writing */
#define SPOOL_RETRY_S 30.0 /* after a failed write, the next try waits for a series this much later */

typedef struct spool_health {
    double last_check, off_since;
    int off_by_write;      /* off because a write failed (retried after SPOOL_RETRY_S), else for low space */
    uint64_t last_index;   /* the series of the previous frame (aptd_series.index + 1; 0 = none yet) */
} spool_health;

/* MiB free for an unprivileged writer on dir's file system, or -1 when it cannot be read. */
static double free_mib(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return -1;
    return (double)v.f_bavail * (double)v.f_frsize / 1048576.0;
}

/* A failure that a full disk, a quota or a file size limit causes. HDF5 reports its driver's errno in the message
   text as well, in case a later call inside HDF5 overwrote errno. */
static int is_space_error(int e, const char *msg)
{
    static const int codes[] = {ENOSPC, EFBIG, EDQUOT};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char k[32];
        snprintf(k, sizeof k, "errno = %d,", codes[i]);
        if (e == codes[i] || strstr(msg, k))
            return 1;
    }
    return 0;
}

static void spool_set_off(aptd *d, spool_health *h, int by_write, const char *why)
{
    pthread_mutex_lock(&d->mu);
    snprintf(d->spool_error, sizeof d->spool_error, "%s", why);
    pthread_mutex_unlock(&d->mu);
    atomic_store(&d->spool_off, 1);
    atomic_fetch_add(&d->spool_disabled, 1);
    h->off_since = apt_now();
    h->off_by_write = by_write;
    apt_error_log("spool disabled: %s; frames are no longer written, reconstruction goes on", why);
}

/* Free space against storage.spool_min_free_mb: 0 enough (or not checked), -1 too little (why filled). */
static int space_check(aptd *d, spool_health *h, char *why, size_t cap)
{
    h->last_check = apt_now();
    if (!d->s.spool_min_free_mb)
        return 0;
    double mib = free_mib(d->s.storage_dir);
    pthread_mutex_lock(&d->mu);
    d->spool_free_mb = mib;
    pthread_mutex_unlock(&d->mu);
    if (mib < 0 || mib >= (double)d->s.spool_min_free_mb)
        return 0;
    snprintf(why, cap, "storage.dir %.200s has %.0f MiB free, below storage.spool_min_free_mb %llu", d->s.storage_dir,
             mib, (unsigned long long)d->s.spool_min_free_mb);
    return -1;
}

/* Before a frame is written: a new series may switch a disabled spool back on (space back, retry time passed);
   the periodic check may switch it off. Returns 1 to write the frame, 0 to skip it. */
static int spool_gate(aptd *d, spool_health *h, const aptd_series *s)
{
    char why[512];
    double now = apt_now();
    int off = atomic_load(&d->spool_off);
    if (s->index + 1 != h->last_index) {
        h->last_index = s->index + 1;
        if (off && (!h->off_by_write || now - h->off_since >= SPOOL_RETRY_S) &&
            space_check(d, h, why, sizeof why) == 0) {
            atomic_store(&d->spool_off, 0);
            apt_info("spool enabled again at series %llu", (unsigned long long)s->id);
            return 1;
        }
        if (!off)
            h->last_check = 0; /* every series' file starts with a check */
    }
    if (!off && now - h->last_check >= SPOOL_CHECK_S && space_check(d, h, why, sizeof why) != 0) {
        spool_set_off(d, h, 0, why);
        off = 1;
    }
    return !off;
}

static void *spool_main(void *arg)
{
    aptd *d = arg;
    apt_spool *sp = NULL;
    aptd_series *open_for = NULL; /* borrowed identity only: compared, never dereferenced after close */
    uint64_t errors_logged = 0;
    spool_health h = {0};
    aptd_frame *f;
    while ((f = aptd_queue_pop(d->spool_q, -1))) {
        aptd_series *s = f->series;
        if (f->image_id == UINT64_MAX) {
            if (sp && open_for == s) {
                close_spool(d, &sp, s);
                open_for = NULL;
            }
        } else if (!spool_gate(d, &h, s)) {
            atomic_fetch_add(&d->spool_skipped, 1);
            if (sp) { /* what was written so far stays readable */
                close_spool(d, &sp, open_for == s ? s : NULL);
                open_for = NULL;
            }
        } else {
            apt_error err = {0};
            int rc = APT_OK;
            errno = 0;
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
            int e = errno;
            if (rc == APT_OK) {
                atomic_fetch_add(&d->spooled, 1);
            } else if (is_space_error(e, err.msg)) {
                atomic_fetch_add(&d->spool_errors, 1);
                atomic_fetch_add(&d->spool_skipped, 1);
                char why[512];
                snprintf(why, sizeof why, "series %llu frame %llu: %.300s%s%.60s", (unsigned long long)s->id,
                         (unsigned long long)f->image_id, err.msg, e ? ": " : "", e ? strerror(e) : "");
                spool_set_off(d, &h, 1, why);
                if (sp) {
                    close_spool(d, &sp, s);
                    open_for = NULL;
                }
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
    /* Past a file size limit (RLIMIT_FSIZE) write() then fails with EFBIG, which is handled like a full disk,
       instead of SIGXFSZ killing the daemon in the middle of a scan. */
    signal(SIGXFSZ, SIG_IGN);
    d->spool_free_mb = free_mib(d->s.storage_dir);
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
